/**
 * Importance-sampled log-likelihood of test images (Burda et al.'s estimator, the multimodal-VAE
 * libraries' NLL): with K draws z_k ~ q(z|x),
 *
 *   log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K,
 *
 * a lower bound on log p(x) that tightens as K grows; K = 1 gives the ELBO in expectation, and the
 * mean of the K log-weights is reported beside it as the ELBO estimate. p(x|z) is the model's
 * decoder under the likelihood it was trained with (Bernoulli on intensities unless `likelihood`
 * says gaussian or logistic; as in training and the reconstruction error). p(z) is the
 * model's generative prior: N(0, I) for the VAE family and the joint models, and for models whose
 * prior is the label encoder's (PSE, PSE*) the equal-weight mixture of the classes' q(z|l).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { imagesToFloat, type Split } from '../data/dataset.js';
import type { ImageModel } from '../models/base.js';
import { imageLogLikelihood } from '../distributions/pixel-likelihood.js';

export type GenerativePrior = 'standard' | 'label-mixture';

/** Each model's p(z); absent: no NLL (no decoder, a label-conditioned decoder, or a prior not modelled here). */
const PRIORS: Record<string, GenerativePrior> = {
  vae: 'standard',
  'beta-vae': 'standard',
  tvae: 'standard',
  jmvae: 'standard',
  trelbo: 'standard',
  scan: 'standard',
  poe: 'standard',
  mopoe: 'standard',
  mmvae: 'standard',
  pse: 'label-mixture',
  'pse-star': 'label-mixture',
};

export function generativePrior(modelName: string): GenerativePrior | null {
  return PRIORS[modelName] ?? null;
}

export interface NllOptions {
  /** Importance samples per image (K). */
  samples: number;
  /** Label-encoder inputs of the classes, [C, labelDim], for label-mixture priors. */
  classInputs?: tf.Tensor2D;
  seed?: number;
  /** Evaluate only the first `images` images of the split. */
  images?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface NllResult {
  /** −mean log p̂(x) over the images, in nats. */
  nll: number;
  /** −mean of the K log-weights: the negative ELBO estimated with the same draws, in nats (≥ nll). */
  negativeElbo: number;
  samples: number;
  images: number;
  prior: GenerativePrior;
}

const LOG_2PI = Math.log(2 * Math.PI);
/** Decoder rows per pass: bounds memory (rows × pixels floats) whatever K is. */
const ROWS = 2000;

export function importanceSampledNll(model: ImageModel, split: Split, pixels: number, o: NllOptions): NllResult {
  const prior = generativePrior(model.name);
  if (!prior) throw new ProbsemError(`importance-sampled NLL is not defined here for a ${model.name} model (its prior or decoder is not a plain p(z), p(x|z))`, 'BAD_OPTION');
  if (prior === 'label-mixture' && (!o.classInputs || !model.encodeLabels)) throw new ProbsemError(`a ${model.name} model's prior needs its class inputs`, 'BAD_OPTION');
  const K = o.samples;
  if (!Number.isInteger(K) || K < 1) throw new ProbsemError(`NLL samples must be a positive integer, got ${K}`, 'BAD_OPTION');
  const count = Math.min(split.count, o.images ?? split.count);
  const dim = model.latentDim;
  const priorMoments =
    prior === 'label-mixture'
      ? tf.tidy(() => {
          const g = model.encodeLabels!(o.classInputs!);
          return { mean: tf.keep(g.mean), logVar: tf.keep(g.logVar) };
        })
      : null;
  const perChunk = Math.min(K, ROWS);
  let sumLogP = 0;
  let sumW = 0;
  try {
    for (let i = 0; i < count; i++) {
      const x = imagesToFloat(split, [i], pixels);
      const rng = Rng.for(o.seed ?? 0, 'nll', i);
      let max = -Infinity;
      let acc = 0; // Σ exp(w − max), rescaled as max grows
      for (let s = 0; s < K; s += perChunk) {
        const k = Math.min(perChunk, K - s);
        const eps = rng.fillNormal(new Float32Array(k * dim));
        const w = logWeights(model, x, eps, k, priorMoments);
        for (const v of w) {
          sumW += v;
          if (v > max) {
            acc = acc * Math.exp(max - v) + 1;
            max = v;
          } else {
            acc += Math.exp(v - max);
          }
        }
      }
      sumLogP += max + Math.log(acc) - Math.log(K);
      o.onProgress?.(i + 1, count);
    }
  } finally {
    if (priorMoments) tf.dispose([priorMoments.mean, priorMoments.logVar]);
  }
  return { nll: -sumLogP / count, negativeElbo: -sumW / (count * K), samples: K, images: count, prior };
}

/** log p(x|z_k) + log p(z_k) − log q(z_k|x) for k draws z_k = μ + σ·eps_k of one image. */
function logWeights(model: ImageModel, x: Float32Array, eps: Float32Array, k: number, prior: { mean: tf.Tensor; logVar: tf.Tensor } | null): Float32Array {
  const dim = model.latentDim;
  const t = tf.tidy(() => {
    const xt = tf.tensor2d(x, [1, x.length]);
    const q = model.encodeImage(xt);
    const e = tf.tensor2d(eps, [k, dim]);
    const z = tf.add(q.mean, tf.mul(tf.exp(tf.mul(q.logVar, 0.5)), e)) as tf.Tensor2D;
    // log q(z|x) = Σ −½(ε² + log 2π + log σ²)
    const logQ = tf.mul(tf.sum(tf.add(tf.add(tf.square(e), LOG_2PI), q.logVar), 1), -0.5);
    const logits = model.decode(z);
    // The model's own p(x|z): Bernoulli on intensities unless its config chose another likelihood.
    const logPx = imageLogLikelihood(model, logits, xt);
    let logPz: tf.Tensor;
    if (!prior) {
      logPz = tf.mul(tf.sum(tf.add(tf.square(z), LOG_2PI), 1), -0.5);
    } else {
      // log (1/C) Σ_c N(z; μ_c, σ_c²): [k, C] component log-densities, then logsumexp.
      const c = prior.mean.shape[0]!;
      const diff = tf.sub(tf.expandDims(z, 1), tf.expandDims(prior.mean, 0));
      const comp = tf.mul(tf.sum(tf.add(tf.add(tf.div(tf.square(diff), tf.exp(tf.expandDims(prior.logVar, 0))), tf.expandDims(prior.logVar, 0)), LOG_2PI), 2), -0.5);
      logPz = tf.sub(tf.logSumExp(comp, 1), Math.log(c));
    }
    return tf.sub(tf.add(logPx, logPz), logQ);
  });
  const out = Float32Array.from(t.dataSync());
  t.dispose();
  return out;
}
