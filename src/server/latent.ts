/**
 * 2-D maps of the latent space for the server. The projections themselves (PCA, t-SNE and UMAP in
 * a worker thread) live in the library, `src/analysis/projection.ts`; this module keeps the names
 * the server uses.
 */
export {
  PROJECTION_METHODS as LATENT_METHODS,
  type ProjectionMethod as Method,
  type DrRequest,
  pca2d,
  sampleIndices,
  embedInWorker,
  stopProjectionWorkers as stopLatentWorkers,
} from '../analysis/projection.js';
