/**
 * What a loaded image model answers about classes and single images: label inputs, annotation,
 * generation for a label, reconstruction. Kept free of file and process APIs (no node: imports,
 * nothing that loads datasets), so the explorer page runs exactly these functions in the browser
 * while the CLI and the server run them in Node; `runs.ts` re-exports them.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { classInputRows, labelInputWidth } from '../text/labels.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import { Informed } from '../models/informed.js';
import { labelLogLikelihoods, labelSetQuery } from '../eval/metrics.js';

/**
 * The label-encoder inputs of a run's classes, one row per class (one-hot rows for one-hot
 * labels). Every caller that scores or samples classes goes through this, so word-vector labels
 * need changing only here.
 */
export function classLabelInputs(meta: ModelFile): tf.Tensor2D {
  const c = meta.classNames.length;
  const info = meta.labels ?? { kind: 'onehot' as const };
  return tf.tensor2d(classInputRows(info, c), [c, labelInputWidth(info, c)]);
}

/** Finds a class by name (case-insensitive), or fails listing the known ones. */
export function labelIndex(meta: ModelFile, label: string): number {
  const i = meta.classNames.findIndex((c) => c.toLowerCase() === label.trim().toLowerCase());
  if (i < 0) {
    throw new ProbsemError(`label '${label}' is not in the model's vocabulary: ${meta.classNames.join(', ')}`, 'BAD_OPTION');
  }
  return i;
}

/** Label probabilities for one image (grey values): normalised likelihoods of its posterior mean. */
export function annotateImage(model: ImageModel, meta: ModelFile, image: Float32Array): { label: string; probability: number; logLikelihood: number }[] {
  if (!model.encodeLabels) throw new ProbsemError(`a ${meta.model} model has no label encoder and cannot annotate`, 'BAD_OPTION');
  const [ll, probs] = tf.tidy(() => {
    const l = labelLogLikelihoods(model, tf.tensor2d(image, [1, image.length]), classLabelInputs(meta));
    return [l.dataSync(), tf.softmax(l).dataSync()];
  });
  return meta.classNames
    .map((label, i) => ({ label, probability: probs[i], logLikelihood: ll[i] }))
    .sort((a, b) => b.probability - a.probability);
}

/**
 * n images (pixel probabilities) decoded from z ~ q(z|label) (CVAE: z ~ N(0, I) decoded with the
 * label). "A+B" names a label set: informed priors draw from the set's training prior, other
 * models from the set's query distribution (q(z|l) of the mean label input).
 */
export function generateForLabel(model: ImageModel, meta: ModelFile, label: string, n: number, seed: number): Float32Array {
  if (!model.encodeLabels && !model.generateLogits) {
    throw new ProbsemError(`a ${meta.model} model has no label encoder and cannot generate from labels`, 'BAD_OPTION');
  }
  if (label.includes('+')) {
    const set = label.split('+').map((l) => labelIndex(meta, l));
    if (set.length !== 2) throw new ProbsemError(`a label set is two labels joined by '+', got '${label}'`, 'BAD_OPTION');
    const rng = Rng.for(seed, 'generate-set', set[0], set[1]);
    if (model instanceof Informed) return model.samplePrior(set[0], set[1], n, rng);
    if (!model.encodeLabels) throw new ProbsemError(`a ${meta.model} model cannot generate from label sets`, 'BAD_OPTION');
    return tf.tidy(() => {
      const q = labelSetQuery(model, tf.gather(classLabelInputs(meta), tf.tensor1d(set, 'int32')) as tf.Tensor2D);
      return tf.sigmoid(model.decode(q.sample(normalTensor(rng, [n, model.latentDim]) as tf.Tensor2D))).dataSync() as Float32Array;
    });
  }
  const li = labelIndex(meta, label);
  return tf.tidy(() => {
    if (model.generateLogits) {
      const y = tf.tile(tf.slice(classLabelInputs(meta), [li, 0], [1, -1]), [n, 1]) as tf.Tensor2D;
      return tf.sigmoid(model.generateLogits(y, normalTensor(Rng.for(seed, 'generate', li), [n, model.latentDim]) as tf.Tensor2D)).dataSync() as Float32Array;
    }
    const q = model.encodeLabels!(tf.slice(classLabelInputs(meta), [li, 0], [1, -1]) as tf.Tensor2D);
    const zs = tf.add(q.mean, tf.mul(tf.exp(tf.mul(q.logVar, 0.5)), normalTensor(Rng.for(seed, 'generate', li), [n, model.latentDim]))) as tf.Tensor2D;
    return tf.sigmoid(model.decode(zs)).dataSync() as Float32Array;
  });
}

/** Posterior-mean reconstructions (pixel probabilities) of the given images. */
export function reconstruct(model: ImageModel, images: Float32Array, pixels: number): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor2d(images, [images.length / pixels, pixels]);
    return tf.sigmoid(model.decode(model.encodeImage(x).mean)).dataSync() as Float32Array;
  });
}
