/**
 * Evaluation metrics as small functions: reconstruction error, annotation, generation accuracy
 * (judged by a separately trained classifier) and classifier accuracy. All are seeded.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { FeatureMoments, frechetDistance } from './fid.js';
import { normalTensor, tidyRead } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { imagesToFloat, oneHot, type Split } from '../data/dataset.js';
import { imageLogLikelihood } from '../distributions/pixel-likelihood.js';
import { DiagGaussian, type Gaussian, pairwiseLogProb, tidyGaussian, withInverseFactor } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import type { ImageModel } from '../models/base.js';
import type { Classifier } from '../models/classifier.js';

const EVAL_BATCH = 500;

function range(start: number, end: number): Int32Array {
  const a = new Int32Array(end - start);
  for (let i = 0; i < a.length; i++) a[i] = start + i;
  return a;
}

/** Runs `fn` over the split in batches of grey-value images. */
function forBatches(split: Split, pixels: number, fn: (x: tf.Tensor2D, idx: Int32Array) => void, limit = split.count): void {
  for (let s = 0; s < limit; s += EVAL_BATCH) {
    const idx = range(s, Math.min(limit, s + EVAL_BATCH));
    const x = tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels]);
    fn(x, idx);
    x.dispose();
  }
}

/**
 * Mean negative log-likelihood of the images under the model's own likelihood (Bernoulli unless
 * its config says `likelihood`; nats, summed over pixels). `sample`: z
 * drawn once from q(z|x) per image (the ELBO's reconstruction term); `mean`: z = the posterior
 * mean (the deterministic reconstruction a user sees).
 */
export function reconstructionError(
  model: ImageModel,
  split: Split,
  pixels: number,
  seed = 0,
  mode: 'sample' | 'mean' = 'sample',
  /** Per-class label inputs [C, labelDim]; needed by models that reconstruct given the label (CVAE). */
  labelInputs?: tf.Tensor2D,
): number {
  const rng = Rng.for(seed, 'eval-recon');
  if (model.reconstructLogits && !labelInputs) {
    throw new ProbsemError(`${model.name} reconstructs an image given its label: pass the label inputs`, 'BAD_OPTION');
  }
  let total = 0;
  forBatches(split, pixels, (x, idx) => {
    total += tf.tidy(() => {
      if (model.reconstructLogits) {
        const eps = mode === 'mean' ? null : (normalTensor(rng, [x.shape[0], model.latentDim]) as tf.Tensor2D);
        const y = tf.gather(labelInputs!, tf.tensor1d(Int32Array.from(idx, (i) => split.labels[i]), 'int32')) as tf.Tensor2D;
        return tf.sum(imageLogLikelihood(model, model.reconstructLogits(x, y, eps), x)).dataSync()[0];
      }
      const q = model.encodeImage(x);
      const zs = mode === 'mean' ? q.mean : q.sample(normalTensor(rng, [x.shape[0], model.latentDim]) as tf.Tensor2D);
      return tf.sum(imageLogLikelihood(model, model.decode(zs), x)).dataSync()[0];
    });
  });
  return -total / split.count;
}

/** Label inputs for every class, [C, labelDim] (one-hot identity for one-hot labels). */
export function oneHotLabelInputs(numClasses: number): tf.Tensor2D {
  return tf.tensor2d(oneHot(range(0, numClasses), numClasses), [numClasses, numClasses]);
}

/**
 * log q(μ_x | l) for every image and label: the posterior mean scored under each label's
 * Gaussian. Returns [N, C].
 */
export function labelLogLikelihoods(model: ImageModel, x: tf.Tensor2D, labelInputs: tf.Tensor2D): tf.Tensor2D {
  // Models with their own classification rule (informed priors: log N(w_l; μ_x, Σ_x)) use it.
  if (model.scoreLabels) return model.scoreLabels(x, labelInputs);
  if (!model.encodeLabels) throw new ProbsemError(`${model.name} has no label encoder`, 'BAD_OPTION');
  return tf.tidy(() => pairwiseLogProb(model.encodeImage(x).mean, model.encodeLabels!(labelInputs)));
}

/** q(z|x) for a batch of images: the exact full-covariance posterior where the model has one. */
export function posteriorOf(model: ImageModel, x: tf.Tensor2D): Gaussian {
  return model.encodeImageFull ? withInverseFactor(model.encodeImageFull(x)) : model.encodeImage(x);
}

/** The query distribution of a set of labels (label inputs [M, labelDim]), a batch of one. */
export function labelSetQuery(model: ImageModel, y: tf.Tensor2D): Gaussian {
  if (model.encodeLabelSet) return model.encodeLabelSet(y);
  if (!model.encodeLabels) throw new ProbsemError(`${model.name} has no label encoder`, 'BAD_OPTION');
  return tidyGaussian(() => model.encodeLabels!(tf.mean(y, 0, true) as tf.Tensor2D));
}

/**
 * KL(query ‖ q(z|x)) of one query distribution (a batch of one) against every image of a split,
 * through the KL registry (full-covariance posteriors where the model has them).
 */
export function klToImages(model: ImageModel, query: Gaussian, split: Split, pixels: number): Float32Array {
  return klToImagesMany(model, [query], split, pixels)[0];
}

/** `klToImages` for several queries, encoding each image once (the encoder dominates the cost). */
export function klToImagesMany(model: ImageModel, queries: readonly Gaussian[], split: Split, pixels: number): Float32Array[] {
  const out = queries.map(() => new Float32Array(split.count));
  forBatches(split, pixels, (x, idx) => {
    const post = tidyGaussian(() => posteriorOf(model, x));
    queries.forEach((query, q) => out[q].set(tidyRead(() => kl(query, post)) as Float32Array, idx[0]));
    post.dispose();
  });
  return out;
}

export interface PairedAccuracy {
  /** Share of two-object images whose two most likely labels are their two labels (an image of one class twice: its top label). */
  top2Accuracy: number;
  /** Share whose most likely label is one of their labels. */
  top1InSetAccuracy: number;
}

/** Classification of two-object images: the two most likely labels are the prediction, in any order. */
export function pairedAccuracy(model: ImageModel, split: Split, pixels: number, labelInputs: tf.Tensor2D): PairedAccuracy {
  if (!split.labels2) throw new ProbsemError('paired accuracy needs a two-object (paired) dataset', 'BAD_OPTION');
  const labels2 = split.labels2;
  const c = labelInputs.shape[0];
  let top2 = 0;
  let top1 = 0;
  const scores = splitLabelScores(model, split, pixels, labelInputs);
  for (let r = 0; r < split.count; r++) {
    const row = scores.subarray(r * c, (r + 1) * c);
    let first = 0;
    for (let k = 1; k < c; k++) if (row[k] > row[first]) first = k;
    let second = first === 0 ? 1 : 0;
    for (let k = 0; k < c; k++) if (k !== first && row[k] > row[second]) second = k;
    const a = split.labels[r];
    const b = labels2[r];
    if (first === a || first === b) top1++;
    if (a === b ? first === a : (first === a && second === b) || (first === b && second === a)) top2++;
  }
  return { top2Accuracy: top2 / split.count, top1InSetAccuracy: top1 / split.count };
}

export interface PairRetrievalPrecision {
  k: number;
  ranking: PairRanking;
  /** Precision@k per unordered pair of distinct classes, keyed "a,b" (class indices, a < b). */
  perPair: Record<string, number>;
  mean: number;
}

/**
 * How two-object images are ranked for a pair query {a, b}. 'kl': ascending KL(query ‖ q(z|x)),
 * the query being the label set's distribution (`labelSetQuery`). 'margin': descending
 * min(s_a, s_b) − max over the other labels of s_c, with s the model's label scores (the
 * classification rule): the images whose two most likely labels are a and b most clearly. It is
 * the top-2 classification rule turned into a ranking, and unlike a softmax it does not depend on
 * the scale of the scores (which for tight priors spans thousands of nats).
 */
export type PairRanking = 'kl' | 'margin';

/**
 * Retrieval by pairs of labels on a two-object split: for every pair {a, b} of distinct classes
 * the test images are ranked (`PairRanking`) and precision@k is the share of the top k showing
 * both a and b.
 */
export function pairRetrievalPrecisionAtK(
  model: ImageModel,
  split: Split,
  pixels: number,
  labelInputs: tf.Tensor2D,
  k = 20,
  ranking: PairRanking = 'kl',
): PairRetrievalPrecision {
  if (!split.labels2) throw new ProbsemError('pair retrieval needs a two-object (paired) dataset', 'BAD_OPTION');
  const labels2 = split.labels2;
  const c = labelInputs.shape[0];
  if (c < 3 && ranking === 'margin') throw new ProbsemError('margin ranking of pairs needs at least three labels', 'BAD_OPTION');
  const labelScores = ranking === 'margin' ? splitLabelScores(model, split, pixels, labelInputs) : null;
  const pairs: [number, number][] = [];
  for (let a = 0; a < c; a++) for (let b = a + 1; b < c; b++) pairs.push([a, b]);
  let pairKl: Float32Array[] | null = null;
  if (!labelScores) {
    const queries = pairs.map(([a, b]) => tidyGaussian(() => labelSetQuery(model, tf.gather(labelInputs, tf.tensor1d([a, b], 'int32')) as tf.Tensor2D)));
    pairKl = klToImagesMany(model, queries, split, pixels);
    queries.forEach((q) => q.dispose());
  }
  const perPair: Record<string, number> = {};
  pairs.forEach(([a, b], p) => {
    // Lower is better for topK: KL, or the negated margin.
    const scores = pairKl ? pairKl[p] : setMargins(labelScores!, c, [a, b]).map((m) => -m);
    const top = topK(scores, k);
    let hit = 0;
    for (const i of top) {
      const l1 = split.labels[i];
      const l2 = labels2[i];
      if ((l1 === a && l2 === b) || (l1 === b && l2 === a)) hit++;
    }
    perPair[`${a},${b}`] = hit / top.length;
  });
  const values = Object.values(perPair);
  return { k, ranking, perPair, mean: values.reduce((x, y) => x + y, 0) / Math.max(1, values.length) };
}

/**
 * For every image (label scores row-major [count × c]): the smallest score among the labels of
 * `inSet` minus the largest among the others. Positive where the set's labels are the image's most
 * likely ones; larger, the more clearly.
 */
export function setMargins(labelScores: Float32Array, c: number, inSet: readonly number[]): Float32Array {
  if (inSet.length === 0 || inSet.length >= c || inSet.some((l) => !Number.isInteger(l) || l < 0 || l >= c)) {
    throw new ProbsemError(`a label set for margins needs 1 to ${c - 1} labels in [0, ${c}), got [${inSet}]`, 'BAD_OPTION');
  }
  const member = new Uint8Array(c);
  for (const l of inSet) member[l] = 1;
  const count = labelScores.length / c;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let weakest = Infinity;
    let other = -Infinity;
    for (let l = 0; l < c; l++) {
      const v = labelScores[i * c + l];
      if (member[l]) weakest = Math.min(weakest, v);
      else other = Math.max(other, v);
    }
    out[i] = weakest - other;
  }
  return out;
}

/** The model's label scores (`labelLogLikelihoods`) for every image of a split, row-major [count × labels]. */
export function splitLabelScores(model: ImageModel, split: Split, pixels: number, labelInputs: tf.Tensor2D): Float32Array {
  const c = labelInputs.shape[0];
  const out = new Float32Array(split.count * c);
  forBatches(split, pixels, (x, idx) => {
    out.set(tidyRead(() => labelLogLikelihoods(model, x, labelInputs)), idx[0] * c);
  });
  return out;
}

/** Indices of the k smallest scores (ties by index); `largest` for the k largest. */
export function topK(scores: ArrayLike<number>, k: number, largest = false, exclude = -1): number[] {
  const order: number[] = [];
  for (let i = 0; i < scores.length; i++) if (i !== exclude) order.push(i);
  const sign = largest ? -1 : 1;
  order.sort((a, b) => sign * (scores[a] - scores[b]) || a - b);
  return order.slice(0, k);
}

/** Share of images whose most likely label is their own. */
export function annotationAccuracy(model: ImageModel, split: Split, pixels: number, labelInputs: tf.Tensor2D): number {
  let correct = 0;
  forBatches(split, pixels, (x, idx) => {
    const pred = tidyRead(() => tf.argMax(labelLogLikelihoods(model, x, labelInputs), 1));
    for (let i = 0; i < idx.length; i++) if (pred[i] === split.labels[idx[i]]) correct++;
  });
  return correct / split.count;
}

/** Classifier accuracy on a split. */
export function classifierAccuracy(clf: Classifier, split: Split, pixels: number): number {
  let correct = 0;
  forBatches(split, pixels, (x, idx) => {
    const pred = tidyRead(() => tf.argMax(clf.logits(x), 1));
    for (let i = 0; i < idx.length; i++) if (pred[i] === split.labels[idx[i]]) correct++;
  });
  return correct / split.count;
}

export interface GenerationResult {
  /** Mean over repeats of the share of generated images the judge assigns to their label. */
  accuracy: number;
  /** Standard deviation over repeats. */
  sd: number;
  repeats: number;
  samplesPerLabel: number;
  /** Mean accuracy per label. */
  perLabel: number[];
}

/**
 * Samples z ~ q(z|l) for every label, decodes (pixel probabilities), and asks the judge whether
 * each image shows its label (models with `generateLogits`, e.g. CVAE: z ~ N(0, I) decoded with
 * the label). Repeated `repeats` times for a standard deviation.
 */
export function generationAccuracy(
  model: ImageModel,
  judge: Classifier,
  labelInputs: tf.Tensor2D,
  opts: {
    samplesPerLabel: number;
    repeats: number;
    seed: number;
    onProgress?: (done: number, total: number) => void;
    /** One per label: the judge's features of the first repeat's images are added (for its Fréchet distance). */
    features?: FeatureMoments[];
  },
): GenerationResult {
  if (!model.encodeLabels && !model.generateLogits) throw new ProbsemError(`${model.name} cannot generate from labels`, 'BAD_OPTION');
  const numClasses = labelInputs.shape[0];
  // Models with generateLogits (CVAE) decode N(0, I) noise together with the label input.
  const conditional = typeof model.generateLogits === 'function';
  // Keep only the label Gaussians' moments; the encoder's intermediates are freed.
  const [ldMean, ldLogVar] = tf.tidy(() => {
    if (conditional) return [tf.zeros([numClasses, model.latentDim]), tf.zeros([numClasses, model.latentDim])];
    const g = model.encodeLabels!(labelInputs);
    return [g.mean, g.logVar];
  });
  const labelDists = { mean: ldMean, logVar: ldLogVar, dispose: () => tf.dispose([ldMean, ldLogVar]) };
  const accs: number[] = [];
  const perLabel = new Array<number>(numClasses).fill(0);
  for (let r = 0; r < opts.repeats; r++) {
    const rng = Rng.for(opts.seed, 'eval-generation', r);
    let correct = 0;
    for (let c = 0; c < numClasses; c++) {
      let labelCorrect = 0;
      for (let s = 0; s < opts.samplesPerLabel; s += EVAL_BATCH) {
        const n = Math.min(EVAL_BATCH, opts.samplesPerLabel - s);
        labelCorrect += tf.tidy(() => {
          const eps = normalTensor(rng, [n, model.latentDim]) as tf.Tensor2D;
          let logits: tf.Tensor2D;
          if (conditional) {
            logits = model.generateLogits!(tf.tile(tf.slice(labelInputs, [c, 0], [1, -1]), [n, 1]) as tf.Tensor2D, eps);
          } else {
            const mean = tf.slice(labelDists.mean, [c, 0], [1, -1]);
            const std = tf.exp(tf.mul(tf.slice(labelDists.logVar, [c, 0], [1, -1]), 0.5));
            logits = model.decode(tf.add(mean, tf.mul(std, eps)) as tf.Tensor2D);
          }
          const images = tf.sigmoid(logits) as tf.Tensor2D;
          if (r === 0 && opts.features) opts.features[c].add(judge.features(images).dataSync(), n);
          return tf.sum(tf.cast(tf.equal(tf.argMax(judge.logits(images), 1), c), 'float32')).dataSync()[0];
        });
      }
      correct += labelCorrect;
      perLabel[c] += labelCorrect / opts.samplesPerLabel / opts.repeats;
      opts.onProgress?.(r * numClasses + c + 1, opts.repeats * numClasses);
    }
    accs.push(correct / (numClasses * opts.samplesPerLabel));
  }
  labelDists.dispose();
  const mean = accs.reduce((a, b) => a + b, 0) / accs.length;
  const sd = accs.length > 1 ? Math.sqrt(accs.reduce((a, b) => a + (b - mean) ** 2, 0) / (accs.length - 1)) : 0;
  return { accuracy: mean, sd, repeats: opts.repeats, samplesPerLabel: opts.samplesPerLabel, perLabel };
}

/** The judge's Fréchet distance of generated images, overall and per label (see fid.ts). */
export interface JudgeFid {
  overall: number;
  perLabel: number[];
  /** Generated images per label, and the test images they are compared with. */
  generatedPerLabel: number;
  realImages: number;
}

/** Fréchet distances between the judge's features of generated images (per label) and of the split's real images of each class. */
export function judgeFid(judge: Classifier, generated: FeatureMoments[], split: Split, pixels: number): JudgeFid {
  const dim = generated[0].dim;
  const real = generated.map(() => new FeatureMoments(dim));
  const all = new FeatureMoments(dim);
  for (let s = 0; s < split.count; s += EVAL_BATCH) {
    const idx = Array.from({ length: Math.min(EVAL_BATCH, split.count - s) }, (_, i) => s + i);
    const t = tf.tidy(() => judge.features(tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels])));
    const f = t.dataSync() as Float32Array;
    t.dispose();
    all.add(f, idx.length);
    idx.forEach((i, r) => {
      const c = split.labels[i];
      if (c < real.length) real[c].add(f.subarray(r * dim, (r + 1) * dim), 1);
    });
  }
  const gAll = new FeatureMoments(dim);
  for (const g of generated) {
    // Pool the per-label sums: the overall generated distribution is their equal mixture.
    for (let i = 0; i < g.sum.length; i++) gAll.sum[i] += g.sum[i];
    for (let i = 0; i < g.outer.length; i++) gAll.outer[i] += g.outer[i];
    gAll.count += g.count;
  }
  const fd = (a: FeatureMoments, b: FeatureMoments) => {
    const x = a.moments();
    const y = b.moments();
    return frechetDistance(x.mean, x.cov, y.mean, y.cov);
  };
  return {
    overall: fd(gAll, all),
    perLabel: generated.map((g, c) => (real[c].count >= 2 ? fd(g, real[c]) : NaN)),
    generatedPerLabel: generated[0].count,
    realImages: split.count,
  };
}

export interface ZeroShotResult {
  /** Held-out-class test images, choosing among the held-out labels only. */
  unseenAccuracy: number;
  /** Held-out-class test images, choosing among all labels (generalised zero-shot). */
  generalizedAccuracy: number;
  /** Seen-class test images, choosing among all labels. */
  seenAccuracy: number;
  unseenImages: number;
  seenImages: number;
}

/**
 * Annotation accuracies for a model trained without the classes `heldOut`: every test image's
 * posterior mean is scored under every label's q(z|l) once, then read three ways.
 */
export function zeroShotAccuracy(model: ImageModel, split: Split, pixels: number, labelInputs: tf.Tensor2D, heldOut: number[]): ZeroShotResult {
  const c = labelInputs.shape[0];
  const unseen = new Set(heldOut);
  if (unseen.size === 0 || heldOut.some((h) => !Number.isInteger(h) || h < 0 || h >= c)) {
    throw new ProbsemError(`held-out classes must be distinct class indices in [0, ${c}), got [${heldOut}]`, 'BAD_OPTION');
  }
  let unseenN = 0;
  let unseenOk = 0;
  let generalOk = 0;
  let seenN = 0;
  let seenOk = 0;
  const scores = splitLabelScores(model, split, pixels, labelInputs);
  for (let r = 0; r < split.count; r++) {
    const truth = split.labels[r];
    const row = scores.subarray(r * c, (r + 1) * c);
    let best = 0;
    for (let k = 1; k < c; k++) if (row[k] > row[best]) best = k;
    if (unseen.has(truth)) {
      let bestUnseen = heldOut[0];
      for (const k of heldOut) if (row[k] > row[bestUnseen]) bestUnseen = k;
      unseenN++;
      if (bestUnseen === truth) unseenOk++;
      if (best === truth) generalOk++;
    } else {
      seenN++;
      if (best === truth) seenOk++;
    }
  }
  return {
    unseenAccuracy: unseenN ? unseenOk / unseenN : NaN,
    generalizedAccuracy: unseenN ? generalOk / unseenN : NaN,
    seenAccuracy: seenN ? seenOk / seenN : NaN,
    unseenImages: unseenN,
    seenImages: seenN,
  };
}

export type RetrievalRanking = 'kl' | 'posterior';

export interface RetrievalPrecision {
  k: number;
  ranking: RetrievalRanking;
  /** Share of the k retrieved test images that carry the query label, per label. */
  perLabel: number[];
  mean: number;
}

/**
 * Retrieval by label: for each label l the test images are ranked, and precision@k is the share of
 * the top k that carry l. Rankings: 'kl' by KL(q(z|l) ‖ q(z|x)), how well an image's posterior
 * covers the label's distribution; 'posterior' by the annotation posterior p(l|x) ∝ q(μ_x|l), the
 * images most confidently of label l against every other label.
 */
export function retrievalPrecisionAtK(
  model: ImageModel,
  split: Split,
  pixels: number,
  labelInputs: tf.Tensor2D,
  k = 20,
  ranking: RetrievalRanking = 'kl',
): RetrievalPrecision {
  if (!model.encodeLabels) throw new ProbsemError(`${model.name} has no label encoder`, 'BAD_OPTION');
  const c = labelInputs.shape[0];
  let scores: Float32Array[];
  if (ranking === 'kl') {
    // Encoded together, then one query per label.
    const all = tidyGaussian(() => model.encodeLabels!(labelInputs));
    const queries = Array.from({ length: c }, (_, l) => tidyGaussian(() => new DiagGaussian(tf.slice(all.mean, [l, 0], [1, -1]), tf.slice(all.logVar, [l, 0], [1, -1]))));
    all.dispose();
    scores = klToImagesMany(model, queries, split, pixels);
    queries.forEach((q) => q.dispose());
  } else {
    scores = Array.from({ length: c }, () => new Float32Array(split.count));
    forBatches(split, pixels, (x, idx) => {
      // Lower is better: [C, batch].
      const all = tidyRead(() => tf.neg(tf.transpose(tf.logSoftmax(labelLogLikelihoods(model, x, labelInputs), 1))));
      for (let l = 0; l < c; l++) scores[l].set(all.subarray(l * idx.length, (l + 1) * idx.length), idx[0]);
    });
  }
  // Multi-label images count as carrying either of their labels.
  const hasLabel = (i: number, l: number) => split.labels[i] === l || split.labels2?.[i] === l;
  const perLabel = scores.map((row, l) => {
    let hit = 0;
    for (const i of topK(row, k)) if (hasLabel(i, l)) hit++;
    return hit / Math.min(k, split.count);
  });
  return { k, ranking, perLabel, mean: perLabel.reduce((a, b) => a + b, 0) / c };
}
