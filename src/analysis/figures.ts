/**
 * The data behind the figures of a trained run: a 2-D map of a split's posterior means, and images
 * decoded along the line between two labels' q(z|l) means. These combine `runs/` with the
 * projections, so this module sits above `runs/` (the rest of `analysis/` needs only `core/`).
 */
import { ProbsemError } from '../core/errors.js';
import { type Dataset, pixelsOf } from '../data/dataset.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import { decodeInterpolation, encodeSplit, queryDistribution, type SplitPosteriors } from '../runs/retrieval.js';
import type { WordVectors } from '../text/word-vectors.js';
import type { ScatterPanel } from './plot.js';
import { type ProjectionMethod, project2d, sampleIndices } from './projection.js';

/** Points t-SNE and UMAP map by default (a seeded sample; PCA takes the whole split). */
export const DEFAULT_EMBED_POINTS = 2000;

export interface LatentMapOptions {
  /** Default: the latent coordinates themselves for a 2-D latent space, PCA otherwise. */
  method?: ProjectionMethod;
  /** At most this many points, a seeded sample (default: all for PCA, 2000 for t-SNE/UMAP). */
  points?: number;
  /** Seed of the sample and of t-SNE/UMAP (default 0). */
  seed?: number;
  /** Which split (default 'test'). */
  split?: 'train' | 'test';
  /** Panel title (default: the model's name). */
  title?: string;
  /** Precomputed posteriors of that split (from `encodeSplit`). */
  posteriors?: SplitPosteriors;
  /** Colour the points by class (default) or by the class's parent in the dataset's hierarchy (emoji groups, CIFAR-100 superclasses). */
  colourBy?: 'class' | 'parent';
}

export interface LatentMap {
  panel: ScatterPanel;
  /** What placed the points: 'latent' when the 2-D latent coordinates are shown as they are. */
  method: ProjectionMethod | 'latent';
  /** The split's image indices that were mapped, ascending. */
  ids: number[];
}

/** A split's posterior means q(z|x) mapped to 2-D, each point labelled with its class name. */
export async function latentMap(model: ImageModel, meta: ModelFile, ds: Dataset, opts: LatentMapOptions = {}): Promise<LatentMap> {
  const split = ds[opts.split ?? 'test'];
  const k = model.latentDim;
  const method = opts.method ?? (k === 2 ? 'latent' : 'pca');
  const limit = opts.points ?? (method === 'tsne' || method === 'umap' ? DEFAULT_EMBED_POINTS : split.count);
  if (!Number.isInteger(limit) || limit < 1) throw new ProbsemError(`points must be a positive integer, got ${limit}`, 'BAD_OPTION');
  const seed = opts.seed ?? 0;
  const ids = sampleIndices(split.count, limit, seed);
  if ((method === 'tsne' || method === 'umap') && ids.length < 3) throw new ProbsemError(`${method} needs at least 3 points`, 'BAD_OPTION');
  const post = opts.posteriors ?? encodeSplit(model, split, pixelsOf(ds));
  if (post.count !== split.count || post.dim !== k) throw new ProbsemError('the precomputed posteriors do not belong to this split and model', 'BAD_OPTION');
  const data = new Float64Array(ids.length * k);
  ids.forEach((id, r) => data.set(post.mean.subarray(id * k, (id + 1) * k), r * k));
  let coords: Float64Array;
  let axes: [string, string];
  if (method === 'latent') {
    coords = new Float64Array(ids.length * 2);
    ids.forEach((_, r) => coords.set([data[r * k], k > 1 ? data[r * k + 1] : 0], r * 2));
    axes = ['z₁', k > 1 ? 'z₂' : '—'];
  } else {
    ({ coords, axes } = await project2d(data, ids.length, k, method, seed));
  }
  const label = pointLabeller(ds, opts.colourBy ?? 'class');
  const points = ids.map((id, r) => ({ x: coords[r * 2], y: coords[r * 2 + 1], label: label(split.labels[id]) }));
  return { panel: { title: opts.title ?? meta.model, points, axes }, method, ids };
}

/** What a point of class c is called on a map: its class, or its parent class ("(none)" for a class without one). */
export function pointLabeller(ds: Dataset, by: 'class' | 'parent'): (c: number) => string {
  if (by === 'class') return (c) => ds.classNames[c];
  const h = ds.hierarchy;
  if (!h) throw new ProbsemError(`${ds.name} states no class hierarchy to colour by (emoji and CIFAR-100 do); use --colour-by class`, 'BAD_OPTION');
  return (c) => (h.parentOf[c] >= 0 ? h.parents[h.parentOf[c]] : '(none)');
}

/** One row of an interpolation figure: from one label (or words) to another. */
export interface InterpolationPair {
  from: string;
  to: string;
}

/**
 * Images decoded at `steps` evenly spaced points on the segment between the means of q(z|from)
 * and q(z|to), one row per pair, row-major ([pairs × steps] images). `from` and `to` are class
 * names (or parts of them: "t-shirt"), or for runs trained on word vectors any words they know.
 */
export function interpolationImages(
  model: ImageModel,
  meta: ModelFile,
  pairs: InterpolationPair[],
  steps: number,
  vectors: WordVectors | null = null,
): Float32Array {
  if (pairs.length === 0) throw new ProbsemError('give at least one pair of labels to interpolate between', 'BAD_OPTION');
  if (!Number.isInteger(steps) || steps < 2) throw new ProbsemError(`steps must be an integer ≥ 2, got ${steps}`, 'BAD_OPTION');
  const rows = pairs.map(({ from, to }) => {
    const a = queryDistribution(model, meta, [from], vectors).mean;
    const b = queryDistribution(model, meta, [to], vectors).mean;
    return decodeInterpolation(model, a, b, steps);
  });
  const size = rows[0].length;
  const out = new Float32Array(size * rows.length);
  rows.forEach((r, i) => out.set(r, i * size));
  return out;
}
