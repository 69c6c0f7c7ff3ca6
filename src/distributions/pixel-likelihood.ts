/**
 * p(x|z) on pixel intensities x ∈ [0, 1], chosen by an image model's `likelihood` option. The
 * decoder always outputs logits l; the image's mean is sigmoid(l) under every likelihood, so
 * generation and reconstructions read the same decoder output whatever was trained.
 *
 * - `bernoulli` (default, the papers'): x·l − softplus(l) per value, a cross-entropy on intensities.
 * - `gaussian`: N(x; sigmoid(l), σ_c²), a density on [0, 1] (so its NLL can go below 0), with a
 *   learned log-variance per channel `decoder.logScale` clamped to [−10, 1] (σ ≥ 0.0067, about
 *   1.7/255: a continuous density on 8-bit data otherwise rewards σ → 0 without bound).
 * - `logistic`: the discretised logistic of PixelCNN++ on the 256 levels k/255, per channel: the
 *   mass of a logistic(sigmoid(l), s_c) on the bin [x − ½/255, x + ½/255], the end bins taking the
 *   tails, so the 256 bins sum to 1; learned log-scale per channel clamped to [−7, 0].
 *
 * Written once in the op vocabulary: training runs it on either engine, and evaluation
 * (`imageLogLikelihood`) runs the same function on tfjs.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import type { ParamSet } from '../nn/params.js';
import { TfOps } from '../ops/tfjs.js';
import type { Ops } from '../ops/types.js';
import { bernoulliLogLikelihood } from './bernoulli.js';

export const PIXEL_LIKELIHOODS = ['bernoulli', 'gaussian', 'logistic'] as const;
export type PixelLikelihood = (typeof PIXEL_LIKELIHOODS)[number];
export const PixelLikelihoodSchema = z.enum(PIXEL_LIKELIHOODS);

/** The per-channel scale parameter of the gaussian (log σ²) and logistic (log s) likelihoods. */
export const SCALE_PARAM = 'decoder.logScale';
/** Clamp and starting value of that parameter, per likelihood (starts near a well-fit model's, so Adam need not travel far). */
export const SCALE_BOUNDS: Record<Exclude<PixelLikelihood, 'bernoulli'>, { lo: number; hi: number; init: number }> = {
  gaussian: { lo: -10, hi: 1, init: -4 },
  logistic: { lo: -7, hi: 0, init: -3 },
};
const LOG_2PI = Math.log(2 * Math.PI);
/** Half a bin of the 8-bit levels on [0, 1]. */
const HALF_BIN = 0.5 / 255;

export function parseLikelihood(s: string): PixelLikelihood {
  if ((PIXEL_LIKELIHOODS as readonly string[]).includes(s)) return s as PixelLikelihood;
  throw new ProbsemError(`unknown likelihood '${s}': choose one of ${PIXEL_LIKELIHOODS.join(', ')}`, 'BAD_OPTION');
}

/** A channel's [1, 1] or [1, C] per-channel row spread over the interleaved pixel values (r, g, b, r, …): [1, D]. */
function perValue<T>(o: Ops<T>, row: T, channels: number, values: number): T {
  if (channels === 1) return row;
  const spread = new Float32Array(channels * values);
  for (let j = 0; j < values; j++) spread[(j % channels) * values + j] = 1;
  return o.matMul(row, o.constant(spread, [channels, values], `pixel-spread-${channels}x${values}`));
}

/** 0/1 masks of the values above the lowest level and below the highest (the discretised logistic's open bins). */
function levelMask<T>(o: Ops<T>, x: T, edge: 'low' | 'high'): T {
  return o.host(o.shape(x), [x], ([v]) => {
    const m = new Float32Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const k = Math.round(v[i] * 255);
      m[i] = (edge === 'low' ? k > 0 : k < 255) ? 1 : 0;
    }
    return m;
  });
}

/** −log p(x|logits) per row, [rows, 1], under a gaussian or logistic likelihood (bernoulli: use `pixelNll`/`bernoulliLogLikelihood`). */
export function pixelNllRows<T>(o: Ops<T>, kind: Exclude<PixelLikelihood, 'bernoulli'>, logits: T, x: T, channels: number): T {
  const values = o.shape(x)[1];
  const { lo, hi } = SCALE_BOUNDS[kind];
  const scale = o.clip(o.param(SCALE_PARAM), lo, hi);
  const diff = o.sub(x, o.unary('sigmoid', logits));
  if (kind === 'gaussian') {
    // ½ Σ_j [(x − μ)² / σ² + log σ² + log 2π]
    const logVar = perValue(o, scale, channels, values);
    const quad = o.sum(o.mul(o.unary('square', diff), o.unary('exp', o.unary('neg', logVar))), 1);
    // Σ_j log σ²_c(j): each channel's log-variance counts once per pixel.
    return o.affine(o.add(quad, o.affine(o.sum(scale), values / channels)), 0.5, 0.5 * values * LOG_2PI);
  }
  // Bin mass σ(a) − σ(b), a = (x + h − μ)/s, b = (x − h − μ)/s, is σ(a)·σ(−b)·(1 − e^{−(a−b)}) with
  // a − b = 2h/s a constant per channel: −log = softplus(−a) + softplus(b) − log(1 − e^{−2h/s});
  // the lowest bin keeps only softplus(−a) (b = −∞), the highest only softplus(b) (a = +∞).
  const inv = o.unary('exp', o.unary('neg', scale));
  const logWidth = o.unary('log', o.affine(o.unary('exp', o.affine(inv, -2 * HALF_BIN)), -1, 1));
  const invV = perValue(o, inv, channels, values);
  const a = o.mul(o.affine(diff, 1, HALF_BIN), invV);
  const b = o.mul(o.affine(diff, 1, -HALF_BIN), invV);
  const low = levelMask(o, x, 'low');
  const high = levelMask(o, x, 'high');
  const tails = o.add(o.mul(o.unary('softplus', o.unary('neg', a)), high), o.mul(o.unary('softplus', b), low));
  const width = o.mul(o.mul(low, high), perValue(o, logWidth, channels, values));
  return o.sum(o.sub(tails, width), 1);
}

/** Mean over the batch of −log p(x|logits): the reconstruction term of an objective, [1, 1]. */
export function pixelNll<T>(o: Ops<T>, kind: PixelLikelihood, logits: T, x: T, channels: number): T {
  if (kind === 'bernoulli') return o.bernoulliNll(logits, x);
  return o.mean(pixelNllRows(o, kind, logits, x, channels));
}

/** Adds the likelihood's per-channel scale parameter where it has one (none for bernoulli: older runs load unchanged). */
export function addScaleParam(params: ParamSet, kind: PixelLikelihood, channels: number, rng: Rng): void {
  if (kind === 'bernoulli') return;
  const v = params.add(SCALE_PARAM, [channels], 'zeros', rng);
  const init = SCALE_BOUNDS[kind].init;
  tf.tidy(() => v.assign(tf.fill([channels], init)));
}

/** What an image model's config says about its likelihood (absent fields: bernoulli, grey). */
interface LikelihoodConfig {
  likelihood?: PixelLikelihood;
  imageChannels?: number;
}

/** The likelihood a model was trained with, by name (for reports). */
export function likelihoodOf(model: { config: object }): PixelLikelihood {
  return (model.config as LikelihoodConfig).likelihood ?? 'bernoulli';
}

/**
 * log p(x|logits) per image, [N], under the model's own likelihood, on tfjs (evaluation: the
 * reconstruction error and the importance-sampled NLL). Call inside tf.tidy.
 */
export function imageLogLikelihood(model: { config: object; params: ParamSet }, logits: tf.Tensor2D, x: tf.Tensor2D): tf.Tensor1D {
  const kind = likelihoodOf(model);
  if (kind === 'bernoulli') return bernoulliLogLikelihood(logits, x);
  const n = logits.shape[0];
  // One image against k decodings of it (the NLL's importance samples), as the Bernoulli broadcasts.
  const xs = x.shape[0] === n ? x : (tf.tile(x, [n, 1]) as tf.Tensor2D);
  // Only `param`, `constant` and `host` read the batch: labels and noise are never drawn here.
  const o = new TfOps(model.params, { x: xs, y: xs, labels: new Int32Array(n), rng: new Rng(0) }, 0);
  const rows = pixelNllRows(o, kind, logits, xs, (model.config as LikelihoodConfig).imageChannels ?? 1);
  return tf.neg(tf.reshape(rows, [n])) as tf.Tensor1D;
}
