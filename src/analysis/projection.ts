/**
 * 2-D maps of points in a latent space: PCA (computed here: a d×d covariance and its exact eigendecomposition —
 * latent spaces are small), t-SNE (Barnes–Hut, ./tsne.ts) and UMAP (umap-js), the last two in a
 * worker thread so a map being computed never blocks its caller (the server keeps answering; the
 * CLI keeps its progress output).
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../core/module-worker.js';
import { ProbsemError } from '../core/errors.js';
import { symmetricEigen, symmetricEigenQR } from '../core/linalg.js';
import { Rng } from '../core/random.js';

export const PROJECTION_METHODS = ['pca', 'tsne', 'umap'] as const;
export type ProjectionMethod = (typeof PROJECTION_METHODS)[number];

/** Checks a method name, or fails listing the known ones. */
export function projectionMethod(name: string): ProjectionMethod {
  const m = name.trim().toLowerCase();
  if (!(PROJECTION_METHODS as readonly string[]).includes(m)) {
    throw new ProbsemError(`unknown projection method '${name}': choose one of ${PROJECTION_METHODS.join(', ')}`, 'BAD_OPTION');
  }
  return m as ProjectionMethod;
}

export interface PcaResult {
  /** n×k coordinates, row-major. */
  coords: Float64Array;
  /** The components (unit vectors of dimension d), largest variance first. */
  components: Float64Array[];
  /** The variance along each component. */
  variances: number[];
  /** The total variance (trace of the covariance), so variances[i] / total is the share explained. */
  totalVariance: number;
}

/**
 * Projects n points of dimension d (row-major) onto their first k principal components (k ≤ d).
 * Deterministic: each component's sign makes its largest-magnitude loading positive.
 */
export function pca(data: Float32Array | Float64Array, n: number, d: number, k = 2): PcaResult {
  if (data.length !== n * d) throw new ProbsemError(`pca: expected ${n}×${d} values, got ${data.length}`, 'BAD_OPTION');
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += data[i * d + j] / n;
  const cov = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < d; a++) {
      const da = data[i * d + a] - mean[a];
      for (let b = a; b < d; b++) cov[a * d + b] += (da * (data[i * d + b] - mean[b])) / Math.max(1, n - 1);
    }
  }
  for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) cov[a * d + b] = cov[b * d + a];
  let totalVariance = 0;
  for (let a = 0; a < d; a++) totalVariance += cov[a * d + a];
  // The exact symmetric eigendecomposition, not power iteration: with eigenvalues within a fraction
  // of a percent of each other, power iteration neither converges nor keeps components orthogonal.
  const { values, vectors } = d <= 64 ? symmetricEigen(cov, d) : symmetricEigenQR(cov, d);
  const components: Float64Array[] = [];
  const variances: number[] = [];
  for (let c = 0; c < Math.min(k, d); c++) {
    let v = Float64Array.from({ length: d }, (_, a) => vectors[a * d + c]);
    let big = 0;
    for (let a = 0; a < d; a++) if (Math.abs(v[a]) > Math.abs(v[big])) big = a;
    if (v[big] < 0) v = v.map((x) => -x);
    components.push(v);
    variances.push(Math.max(0, values[c]));
  }
  const coords = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < components.length; c++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += (data[i * d + j] - mean[j]) * components[c][j];
      coords[i * k + c] = s;
    }
  }
  return { coords, components, variances, totalVariance };
}

/** Projects n points of dimension d (row-major) onto their first two principal components (n×2). */
export function pca2d(data: Float32Array | Float64Array, n: number, d: number): Float64Array {
  return pca(data, n, d, 2).coords;
}

/** n distinct indices of [0, count) in a seeded random order (all of them if n ≥ count), sorted. */
export function sampleIndices(count: number, n: number, seed = 0): number[] {
  const idx = Array.from({ length: count }, (_, i) => i);
  if (n >= count) return idx;
  const rng = Rng.for(seed, 'latent-sample');
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, n).sort((a, b) => a - b);
}

export interface DrRequest {
  method: 'tsne' | 'umap';
  data: Float64Array;
  n: number;
  d: number;
  seed: number;
}

const running = new Set<Worker>();

/** Runs t-SNE or UMAP in a worker thread; resolves to n×2 coordinates. */
export function embedInWorker(req: DrRequest): Promise<Float64Array> {
  if (req.n < 3) return Promise.reject(new ProbsemError(`${req.method} needs at least 3 points, got ${req.n}`, 'BAD_OPTION'));
  const worker = startModuleWorker(import.meta.url, 'dr-worker', { workerData: req });
  running.add(worker);
  return new Promise<Float64Array>((resolve, reject) => {
    worker.once('message', (m: { coords?: Float64Array; error?: string }) => {
      if (m.coords) resolve(m.coords);
      else reject(new ProbsemError(`${req.method} failed: ${m.error}`, 'LATENT'));
      void worker.terminate();
    });
    worker.once('error', (e) => reject(new ProbsemError(`${req.method} failed: ${e.message}`, 'LATENT')));
    worker.once('exit', (code) => {
      running.delete(worker);
      reject(new ProbsemError(`${req.method} worker stopped (exit code ${code})`, 'LATENT'));
    });
  });
}

/** Stops every running t-SNE/UMAP computation (on shutdown). */
export async function stopProjectionWorkers(): Promise<void> {
  await Promise.all([...running].map((w) => w.terminate()));
  running.clear();
}

export interface Projection2d {
  /** n×2 coordinates, row-major. */
  coords: Float64Array;
  /** Axis titles ("PC1 (41 % of variance)", "t-SNE 1", …). */
  axes: [string, string];
}

/**
 * n points of dimension d (row-major) mapped to 2-D by a method: PCA here, t-SNE or UMAP in a
 * worker. PCA's axis titles carry the share of variance each component explains.
 */
export async function project2d(data: Float32Array | Float64Array, n: number, d: number, method: ProjectionMethod, seed = 0): Promise<Projection2d> {
  if (method === 'pca') {
    const p = pca(data, n, d, 2);
    const share = (i: number) => (p.totalVariance > 0 && i < p.variances.length ? ` (${Math.round((100 * p.variances[i]) / p.totalVariance)} % of variance)` : '');
    return { coords: p.coords, axes: [`PC1${share(0)}`, `PC2${share(1)}`] };
  }
  const coords = await embedInWorker({ method, data: Float64Array.from(data), n, d, seed });
  const name = method === 'tsne' ? 't-SNE' : 'UMAP';
  return { coords, axes: [`${name} 1`, `${name} 2`] };
}
