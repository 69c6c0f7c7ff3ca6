/**
 * Evaluation metrics as small functions: reconstruction error, annotation, generation accuracy
 * (judged by a separately trained classifier) and classifier accuracy. All are seeded.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { imagesToFloat, oneHot, type Split } from '../data/dataset.js';
import { bernoulliLogLikelihood } from '../distributions/bernoulli.js';
import { pairwiseLogProb } from '../distributions/gaussian.js';
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
 * Mean Bernoulli negative log-likelihood of the images (nats, summed over pixels). `sample`: z
 * drawn once from q(z|x) per image (the ELBO's reconstruction term); `mean`: z = the posterior
 * mean (the deterministic reconstruction a user sees).
 */
export function reconstructionError(model: ImageModel, split: Split, pixels: number, seed = 0, mode: 'sample' | 'mean' = 'sample'): number {
  const rng = Rng.for(seed, 'eval-recon');
  let total = 0;
  forBatches(split, pixels, (x) => {
    total += tf.tidy(() => {
      const q = model.encodeImage(x);
      const zs = mode === 'mean' ? q.mean : q.sample(normalTensor(rng, [x.shape[0], model.latentDim]) as tf.Tensor2D);
      return tf.sum(bernoulliLogLikelihood(model.decode(zs), x)).dataSync()[0];
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
  if (!model.encodeLabels) throw new ProbsemError(`${model.name} has no label encoder`, 'BAD_OPTION');
  return tf.tidy(() => pairwiseLogProb(model.encodeImage(x).mean, model.encodeLabels!(labelInputs)));
}

/** Share of images whose most likely label is their own. */
export function annotationAccuracy(model: ImageModel, split: Split, pixels: number, labelInputs: tf.Tensor2D): number {
  let correct = 0;
  forBatches(split, pixels, (x, idx) => {
    const pred = tf.tidy(() => tf.argMax(labelLogLikelihoods(model, x, labelInputs), 1).dataSync());
    for (let i = 0; i < idx.length; i++) if (pred[i] === split.labels[idx[i]]) correct++;
  });
  return correct / split.count;
}

/** Classifier accuracy on a split. */
export function classifierAccuracy(clf: Classifier, split: Split, pixels: number): number {
  let correct = 0;
  forBatches(split, pixels, (x, idx) => {
    const pred = tf.tidy(() => tf.argMax(clf.logits(x), 1).dataSync());
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
 * each image shows its label. Repeated `repeats` times for a standard deviation.
 */
export function generationAccuracy(
  model: ImageModel,
  judge: Classifier,
  labelInputs: tf.Tensor2D,
  opts: { samplesPerLabel: number; repeats: number; seed: number; onProgress?: (done: number, total: number) => void },
): GenerationResult {
  if (!model.encodeLabels) throw new ProbsemError(`${model.name} cannot generate from labels`, 'BAD_OPTION');
  const numClasses = labelInputs.shape[0];
  // Keep only the label Gaussians' moments; the encoder's intermediates are freed.
  const [ldMean, ldLogVar] = tf.tidy(() => {
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
          const mean = tf.slice(labelDists.mean, [c, 0], [1, -1]);
          const std = tf.exp(tf.mul(tf.slice(labelDists.logVar, [c, 0], [1, -1]), 0.5));
          const zs = tf.add(mean, tf.mul(std, normalTensor(rng, [n, model.latentDim]))) as tf.Tensor2D;
          const images = tf.sigmoid(model.decode(zs)) as tf.Tensor2D;
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
