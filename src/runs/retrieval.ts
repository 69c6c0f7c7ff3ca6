/**
 * Words → a Gaussian query in the latent space, and images ranked by KL(query ‖ q(z|x)).
 *
 * Words are resolved to the model's class labels by name for now (case-insensitive; label
 * phrases such as "ankle boot" and the parts of slash-joined names such as "T-shirt/top" →
 * "t-shirt" or "top"). `queryDistribution` is the one place that turns words into a query, so word
 * vectors plug in here later without touching callers (the CLI, the server).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { normalTensor, tidyRead } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { imagesToFloat, type Split } from '../data/dataset.js';
import { cholesky } from '../core/linalg.js';
import { DiagGaussian, FullGaussian, type Gaussian, tidyGaussian } from '../distributions/gaussian.js';
import { klToImages, setMargins, splitLabelScores, topK } from '../eval/metrics.js';
import type { Distance } from '../index/distances.js';
import { KlIndex, type ItemGaussians, type QueryGaussian as IndexQuery, type SearchHit } from '../index/kl-index.js';
import { kl } from '../distributions/kl.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import { UnknownWordError, type WordVectors } from '../text/word-vectors.js';
import { queryForWords } from './words.js';

/** A Gaussian over the latent space as plain arrays (one row): diagonal, or full with `covariance`. */
export interface QueryGaussian {
  mean: Float32Array;
  /** Log of the marginal variances. */
  logVar: Float32Array;
  /** The full covariance, K×K row-major, where the query has one (informed priors' label sets). */
  covariance?: Float32Array;
}

/** The query as a distribution object (batch of one). */
export function queryToGaussian(q: QueryGaussian): Gaussian {
  const k = q.mean.length;
  if (!q.covariance) return new DiagGaussian(tf.tensor2d(q.mean, [1, k]), tf.tensor2d(q.logVar, [1, k]));
  const l = cholesky(Float64Array.from(q.covariance), k);
  return new FullGaussian(tf.tensor2d(q.mean, [1, k]), tf.tensor3d(Float32Array.from(l), [1, k, k]));
}

/** Thrown when some words name nothing the run knows (code 'UNKNOWN_WORD'); re-exported for callers. */
export { UnknownWordError };

const norm = (s: string) => s.trim().toLowerCase().replace(/\s+/g, ' ');

/** Every phrase that names a class: its full name and, for "a/b" names, each part. */
function labelPhrases(classNames: string[]): Map<string, number> {
  const m = new Map<string, number>();
  classNames.forEach((c, i) => {
    const full = norm(c);
    if (!m.has(full)) m.set(full, i);
    for (const part of full.split('/')) {
      const p = part.trim();
      if (p && !m.has(p)) m.set(p, i);
    }
  });
  return m;
}

/**
 * Resolves words to class indices. Each entry is tried whole ("ankle boot"); otherwise it is split
 * on whitespace and commas and read greedily, longest label phrase first ("ankle boot sneaker" →
 * Ankle boot, Sneaker). Duplicates are kept once, in order of appearance.
 */
export function resolveWords(meta: Pick<ModelFile, 'classNames'>, words: string[]): { indices: number[]; unknown: string[] } {
  const phrases = labelPhrases(meta.classNames);
  const maxLen = Math.max(...[...phrases.keys()].map((p) => p.split(' ').length));
  const indices: number[] = [];
  const unknown: string[] = [];
  const add = (i: number) => {
    if (!indices.includes(i)) indices.push(i);
  };
  for (const w of words) {
    const whole = norm(w);
    if (!whole) continue;
    const direct = phrases.get(whole);
    if (direct !== undefined) {
      add(direct);
      continue;
    }
    const tokens = whole.split(/[\s,]+/).filter(Boolean);
    for (let t = 0; t < tokens.length; ) {
      let matched = 0;
      for (let len = Math.min(maxLen, tokens.length - t); len >= 1; len--) {
        const i = phrases.get(tokens.slice(t, t + len).join(' '));
        if (i !== undefined) {
          add(i);
          matched = len;
          break;
        }
      }
      if (matched) t += matched;
      else {
        if (!unknown.includes(tokens[t])) unknown.push(tokens[t]);
        t++;
      }
    }
  }
  return { indices, unknown };
}

/**
 * The query Gaussian for some words: resolved to labels, each label l giving q(z|l) = N(μ_l, σ_l²).
 * One label: exactly q(z|l). Several labels: the moment-matched Gaussian of their equal-weight
 * mixture — mean μ̄ = mean of the μ_l, and per dimension σ² = mean(σ_l²) + mean((μ_l − μ̄)²), so
 * the query's variance covers every label's own spread and the distance between them.
 * Unknown words throw an `UnknownWordError` (code 'UNKNOWN_WORD') listing them all.
 */
export function queryDistribution(model: ImageModel, meta: ModelFile, words: string[], vectors: WordVectors | null = null): QueryGaussian {
  if (!model.encodeLabels) {
    throw new ProbsemError(`a ${meta.model} model has no label encoder and cannot turn words into a query`, 'BAD_OPTION');
  }
  // One rule for every run (words.ts): class phrases, and for word-vector runs any word they know.
  return queryForWords(model, meta, words, vectors);
}

/** Posterior moments q(z|x) of every image of a split, row-major [count, latent]. */
export interface SplitPosteriors {
  count: number;
  dim: number;
  mean: Float32Array;
  logVar: Float32Array;
}

const BATCH = 500;

/** A split's posterior moments read from its index (searchIndex), not encoded again. */
export function posteriorsOf(index: KlIndex): SplitPosteriors {
  const { mean, variance } = index.moments();
  return { count: index.count, dim: index.dim, mean, logVar: variance.map(Math.log) };
}

/** Hits of an index search as a RetrievalResult of the split (positions are the split's image ids). */
function fromHits(split: Split, hits: SearchHit[], withScore: boolean): RetrievalResult {
  const ids = hits.map((h) => h.index);
  return { ids, labels: ids.map((i) => split.labels[i]), kl: hits.map((h) => h.kl), ...(withScore ? { score: hits.map((h) => h.score) } : {}) };
}

/** k for an index search: at most the split's size, and at least 1 (an empty split answers nothing). */
const searchK = (k: number, split: Split) => Math.max(1, Math.min(k, split.count));

function checkIndex(index: KlIndex, split: Split, dim: number): void {
  if (index.count !== split.count || index.dim !== dim) {
    throw new ProbsemError(`the index holds ${index.count} posteriors of dimension ${index.dim}, the split ${split.count} images in a latent space of ${dim}`, 'BAD_OPTION');
  }
}

/** Encodes a whole split in batches (each under tf.tidy). */
export function encodeSplit(model: ImageModel, split: Split, pixels: number): SplitPosteriors {
  const dim = model.latentDim;
  const mean = new Float32Array(split.count * dim);
  const logVar = new Float32Array(split.count * dim);
  for (let s = 0; s < split.count; s += BATCH) {
    const e = Math.min(split.count, s + BATCH);
    const idx = Array.from({ length: e - s }, (_, i) => s + i);
    tf.tidy(() => {
      const q = model.encodeImage(tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels]));
      mean.set(q.mean.dataSync(), s * dim);
      logVar.set(q.logVar.dataSync(), s * dim);
    });
  }
  return { count: split.count, dim, mean, logVar };
}

/**
 * Every image's posterior as plain arrays for the KL index (src/index/): the full covariance
 * factor where the model has one, else the diagonal variances.
 */
export function encodeSplitGaussians(model: ImageModel, split: Split, pixels: number): ItemGaussians {
  const dim = model.latentDim;
  const mean = new Float32Array(split.count * dim);
  if (!model.encodeImageFull) {
    const p = encodeSplit(model, split, pixels);
    return { kind: 'diag', dim, count: split.count, mean: p.mean, variance: Float32Array.from(p.logVar, Math.exp) };
  }
  const scaleTril = new Float32Array(split.count * dim * dim);
  for (let s = 0; s < split.count; s += BATCH) {
    const e = Math.min(split.count, s + BATCH);
    const idx = Array.from({ length: e - s }, (_, i) => s + i);
    tf.tidy(() => {
      const q = model.encodeImageFull!(tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels]));
      mean.set(q.mean.dataSync(), s * dim);
      scaleTril.set(q.scaleTril.dataSync(), s * dim * dim);
    });
  }
  return { kind: 'full', dim, count: split.count, mean, scaleTril };
}

export interface RetrievalResult {
  /** Image indices in the split, best first. */
  ids: number[];
  /** Their class indices. */
  labels: number[];
  /** KL(query ‖ q(z|x)) in nats, ascending. */
  kl: number[];
  /** Where ranked by another distance (`rankByDistance`): its values, best first. */
  score?: number[];
}

/** A query as the index takes it: the covariance, diagonal from the log-variances where it has none. */
export function indexQuery(q: QueryGaussian): IndexQuery {
  const dim = q.mean.length;
  const covariance = q.covariance ?? Float64Array.from({ length: dim * dim }, (_, i) => (i % (dim + 1) === 0 ? Math.exp(q.logVar[i / (dim + 1)]) : 0));
  return { mean: q.mean, covariance };
}

/** One image's posterior q(z|x) as an index query (the full covariance L Lᵀ where the model has one). */
export function imageQuery(model: ImageModel, image: Float32Array, pixels: number): IndexQuery {
  const dim = model.latentDim;
  let out: IndexQuery | null = null;
  tf.tidy(() => {
    const x = tf.tensor2d(image, [1, pixels]);
    if (!model.encodeImageFull) {
      const g = model.encodeImage(x);
      out = indexQuery({ mean: Float32Array.from(g.mean.dataSync()), logVar: Float32Array.from(g.logVar.dataSync()) });
      return;
    }
    const g = model.encodeImageFull(x);
    const l = g.scaleTril.dataSync();
    const covariance = new Float64Array(dim * dim);
    for (let r = 0; r < dim; r++) {
      for (let c = 0; c < dim; c++) {
        let t = 0;
        for (let k = 0; k <= Math.min(r, c); k++) t += l[r * dim + k] * l[c * dim + k];
        covariance[r * dim + c] = t;
      }
    }
    out = { mean: Float32Array.from(g.mean.dataSync()), covariance };
  });
  return out!;
}

/**
 * The k images of a split ranked by one of the index's distances (distances.ts), exactly: the
 * split's posteriors are encoded (or taken from `index`, built once by a caller that serves many
 * queries) and searched by KlIndex.
 */
export function rankByDistance(
  model: ImageModel,
  split: Split,
  pixels: number,
  query: IndexQuery,
  k: number,
  distance: Distance,
  opts: { largest?: boolean; exclude?: number; index?: KlIndex } = {},
): RetrievalResult {
  const index = opts.index ?? KlIndex.build(encodeSplitGaussians(model, split, pixels));
  checkIndex(index, split, model.latentDim);
  const hits = index.search(query, searchK(k, split), { distance, largest: opts.largest, exclude: opts.exclude !== undefined && opts.exclude >= 0 ? opts.exclude : undefined });
  return fromHits(split, hits, true);
}

/**
 * The k images of `split` whose posteriors q(z|x) are closest to the query in KL(query ‖ q(z|x)),
 * best first (ties by index). KLs are computed in batches under tf.tidy; pass `posteriors` (from
 * `encodeSplit`) to skip re-encoding the split on every query.
 */
export function retrieveImages(
  model: ImageModel,
  split: Split,
  pixels: number,
  query: QueryGaussian,
  k: number,
  opts: {
    posteriors?: SplitPosteriors;
    /**
     * 'kl' (default): ascending KL(query ‖ q(z|x)). 'posterior': descending probability that the
     * image's posterior mean belongs to the query rather than to one of `competitors` (the run's
     * class Gaussians), the rule annotation uses; it retrieves the most typical images. 'margin':
     * descending margin by which every query label outscores every other label under the model's
     * classification rule (`setMargins`; `marginLabels` gives the inputs), the ranking for label
     * sets on multi-object images.
     */
    rank?: 'kl' | 'posterior' | 'margin';
    competitors?: QueryGaussian[];
    /** Label inputs [query labels first, then the others] and how many are query labels, for 'margin'. */
    marginLabels?: { inputs: tf.Tensor2D; queryCount: number };
    /**
     * The split's index (searchIndex): KL values come from it, exact in double precision, and
     * 'kl' is its exact top-k search; the split is not encoded again ('margin' still scores the
     * images through the model's classifier rule).
     */
    index?: KlIndex;
  } = {},
): RetrievalResult {
  const dim = model.latentDim;
  if (query.mean.length !== dim || query.logVar.length !== dim) {
    throw new ProbsemError(`the query has ${query.mean.length} dimensions but the model's latent space has ${dim}`, 'BAD_OPTION');
  }
  if (!Number.isInteger(k) || k < 1) throw new ProbsemError(`k must be a positive integer, got ${k}`, 'BAD_OPTION');
  const index = opts.index;
  if (index) {
    checkIndex(index, split, dim);
    if ((opts.rank ?? 'kl') === 'kl') return fromHits(split, index.search(indexQuery(query), searchK(k, split)), false);
  }
  const post = opts.posteriors ?? (index && opts.rank === 'posterior' ? posteriorsOf(index) : undefined);
  if (post && (post.count !== split.count || post.dim !== dim)) {
    throw new ProbsemError('the precomputed posteriors do not belong to this split and model', 'BAD_OPTION');
  }
  const kls = index ? index.scoreAll(indexQuery(query)) : klsToQuery(model, split, pixels, query, post);
  const order = Array.from({ length: split.count }, (_, i) => i);
  if (opts.rank === 'posterior') {
    const score = posteriorScores(query, opts.competitors ?? [], post ?? encodeSplit(model, split, pixels));
    order.sort((a, b) => score[b] - score[a] || a - b);
  } else if (opts.rank === 'margin') {
    const m = opts.marginLabels;
    if (!m) throw new ProbsemError('margin ranking needs the label inputs of the query and of the other labels', 'BAD_OPTION');
    const c = m.inputs.shape[0];
    const score = setMargins(splitLabelScores(model, split, pixels, m.inputs), c, Array.from({ length: m.queryCount }, (_, i) => i));
    order.sort((a, b) => score[b] - score[a] || a - b);
  } else {
    order.sort((a, b) => kls[a] - kls[b] || a - b);
  }
  const ids = order.slice(0, Math.min(k, split.count));
  return { ids, labels: ids.map((i) => split.labels[i]), kl: ids.map((i) => kls[i]) };
}

/**
 * KL(query ‖ q(z|x)) for every image of the split. Precomputed diagonal posteriors skip
 * re-encoding; full-covariance models are always compared exactly through klToImages (their
 * precomputed marginals would not do).
 */
function klsToQuery(model: ImageModel, split: Split, pixels: number, query: QueryGaussian, post: SplitPosteriors | undefined): Float32Array {
  const dim = model.latentDim;
  const p = queryToGaussian(query);
  let kls: Float32Array;
  if (post && !model.encodeImageFull) {
    kls = new Float32Array(split.count);
    for (let s = 0; s < split.count; s += BATCH) {
      const e = Math.min(split.count, s + BATCH);
      tf.tidy(() => {
        const q = new DiagGaussian(
          tf.tensor2d(post.mean.subarray(s * dim, e * dim), [e - s, dim]),
          tf.tensor2d(post.logVar.subarray(s * dim, e * dim), [e - s, dim]),
        );
        kls.set(kl(p, q).dataSync(), s);
      });
    }
  } else {
    kls = klToImages(model, p, split, pixels);
  }
  p.dispose();
  return kls;
}

export interface AnyOfResult extends RetrievalResult {
  /** For each image, the index of the member query that chose it. */
  members: number[];
}

/**
 * Images of any of several queries ("sneaker, boot" as sneakers or boots). Each member ranks the
 * images by its own KL(member ‖ q(z|x)) and the members take turns, best first: every member's
 * best image, then every member's second best, … (an image already taken is skipped). KLs of
 * different words are not on one scale — a tight class Gaussian sits tens of nats closer to its
 * images than a broad unseen word does — so the smallest KL over members would return one word's
 * images only. `kl` is the KL to the member that chose the image.
 */
export function retrieveAnyOf(
  model: ImageModel,
  split: Split,
  pixels: number,
  members: QueryGaussian[],
  k: number,
  opts: { posteriors?: SplitPosteriors; index?: KlIndex } = {},
): AnyOfResult {
  if (members.length === 0) throw new ProbsemError('no words given', 'BAD_OPTION');
  const dim = model.latentDim;
  for (const m of members) {
    if (m.mean.length !== dim || m.logVar.length !== dim) throw new ProbsemError(`the query has ${m.mean.length} dimensions but the model's latent space has ${dim}`, 'BAD_OPTION');
  }
  if (!Number.isInteger(k) || k < 1) throw new ProbsemError(`k must be a positive integer, got ${k}`, 'BAD_OPTION');
  const want = Math.min(k, split.count);
  // Each member can only need `want` images of its own list; klOf[j] gives member j's KL of one.
  let lists: number[][];
  let klOf: ((i: number) => number)[];
  if (opts.index) {
    checkIndex(opts.index, split, dim);
    const hits = opts.index.searchBatch(members.map(indexQuery), searchK(k, split));
    lists = hits.map((h) => h.map((x) => x.index));
    klOf = hits.map((h) => {
      const byId = new Map(h.map((x) => [x.index, x.kl]));
      return (i: number) => byId.get(i)!;
    });
  } else {
    const post = opts.posteriors ?? (model.encodeImageFull ? undefined : encodeSplit(model, split, pixels));
    const kls = members.map((m) => klsToQuery(model, split, pixels, m, post));
    lists = kls.map((v) => topK(v, want));
    klOf = kls.map((v) => (i: number) => v[i]);
  }
  const taken = new Set<number>();
  const ids: number[] = [];
  const chosenBy: number[] = [];
  for (let r = 0; r < want && ids.length < want; r++) {
    for (let j = 0; j < members.length && ids.length < want; j++) {
      const id = lists[j][r];
      if (taken.has(id)) continue;
      taken.add(id);
      ids.push(id);
      chosenBy.push(j);
    }
  }
  return { ids, labels: ids.map((i) => split.labels[i]), kl: ids.map((i, n) => klOf[chosenBy[n]](i)), members: chosenBy };
}

/** log p(query | μ_x) against the competitors, for every image: log N(μ_x; q) − logsumexp over all. */
function posteriorScores(query: QueryGaussian, competitors: QueryGaussian[], post: SplitPosteriors): Float64Array {
  const all = [query, ...competitors];
  const dim = post.dim;
  const out = new Float64Array(post.count);
  const ll = new Float64Array(all.length);
  for (let i = 0; i < post.count; i++) {
    for (let g = 0; g < all.length; g++) {
      let s = 0;
      for (let d = 0; d < dim; d++) {
        const lv = all[g].logVar[d];
        s += lv + (post.mean[i * dim + d] - all[g].mean[d]) ** 2 / Math.exp(lv);
      }
      ll[g] = -0.5 * s;
    }
    let m = -Infinity;
    for (const v of ll) m = Math.max(m, v);
    let z = 0;
    for (const v of ll) z += Math.exp(v - m);
    out[i] = ll[0] - m - Math.log(z);
  }
  return out;
}

/** n images (pixel probabilities) decoded from z drawn from a query Gaussian. */
export function generateFromQuery(model: ImageModel, query: QueryGaussian, n: number, seed: number): Float32Array {
  const dim = model.latentDim;
  return tf.tidy(() => {
    const eps = normalTensor(Rng.for(seed, 'generate-query'), [n, dim]) as tf.Tensor2D;
    return tf.sigmoid(model.decode(queryToGaussian(query).sample(eps))).dataSync() as Float32Array;
  });
}

/** Images (pixel probabilities) decoded from `steps` evenly spaced points on the segment a → b. */
export function decodeInterpolation(model: ImageModel, a: Float32Array, b: Float32Array, steps: number): Float32Array {
  const dim = model.latentDim;
  if (a.length !== dim || b.length !== dim) throw new ProbsemError(`interpolation end points must have ${dim} dimensions`, 'BAD_OPTION');
  if (!Number.isInteger(steps) || steps < 2) throw new ProbsemError(`steps must be an integer ≥ 2, got ${steps}`, 'BAD_OPTION');
  const z = new Float32Array(steps * dim);
  for (let s = 0; s < steps; s++) {
    const t = s / (steps - 1);
    for (let d = 0; d < dim; d++) z[s * dim + d] = (1 - t) * a[d] + t * b[d];
  }
  return tidyRead(() => tf.sigmoid(model.decode(tf.tensor2d(z, [steps, dim])))) as Float32Array;
}

/**
 * Images ranked by their semantic similarity to one image: KL(q(z|x_query) ‖ q(z|x_i)), the
 * informed-priors paper's image similarity (exact full-covariance posteriors where the model has
 * them). `dissimilar`: the largest KL first. `exclude`: an index of `split` to leave out (the
 * query itself when it comes from the split).
 */
export function similarImages(
  model: ImageModel,
  split: Split,
  pixels: number,
  image: Float32Array,
  k: number,
  opts: { dissimilar?: boolean; exclude?: number; index?: KlIndex } = {},
): RetrievalResult {
  if (image.length !== pixels) throw new ProbsemError(`the query image has ${image.length} pixels, the images searched have ${pixels}`, 'SHAPE');
  if (!Number.isInteger(k) || k < 1) throw new ProbsemError(`k must be a positive integer, got ${k}`, 'BAD_OPTION');
  for (let i = 0; i < image.length; i++) {
    if (!Number.isFinite(image[i])) throw new ProbsemError(`the query image has a non-finite value at pixel ${i}`, 'BAD_INPUT');
  }
  if (opts.index) {
    checkIndex(opts.index, split, model.latentDim);
    const exclude = opts.exclude !== undefined && opts.exclude >= 0 ? opts.exclude : undefined;
    return fromHits(split, opts.index.search(imageQuery(model, image, pixels), searchK(k, split), { largest: opts.dissimilar, exclude }), false);
  }
  const query = tidyGaussian(() => {
    const x = tf.tensor2d(image, [1, pixels]);
    return model.encodeImageFull ? model.encodeImageFull(x) : model.encodeImage(x);
  });
  const kls = klToImages(model, query, split, pixels);
  query.dispose();
  const ids = topK(kls, k, opts.dissimilar ?? false, opts.exclude ?? -1);
  return { ids, labels: ids.map((i) => split.labels[i]), kl: ids.map((i) => kls[i]) };
}
