/**
 * Latent arithmetic (lecture 003): z = z(a) − z(minus) + z(plus), decoded. Each operand is a label
 * (or, for word-vector runs, any word the vectors know) or one test image, written `#ID`:
 *  - a label is the mean of q(z|l) where the model has a label encoder, otherwise the centroid of
 *    the posterior means of that class's test images (VAE, TVAE, autoencoders);
 *  - an image is its posterior mean.
 * "#17 − sneaker + ankle boot" thus asks for image 17's style carried over to another class.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { tidyRead } from '../core/ops.js';
import { type Dataset, imagesToFloat, pixelsOf } from '../data/dataset.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import type { WordVectors } from '../text/word-vectors.js';
import { encodeSplit, queryDistribution, resolveWords, type SplitPosteriors } from './retrieval.js';

export type Operand = { kind: 'label'; text: string } | { kind: 'image'; id: number };

/** `#ID` is a test image; anything else a label or words. */
export function parseOperand(text: string): Operand {
  const s = text.trim();
  if (!s) throw new ProbsemError('an arithmetic operand is empty: give a label or #ID (a test image)', 'BAD_OPTION');
  const m = /^#(\d+)$/.exec(s);
  if (m) return { kind: 'image', id: Number(m[1]) };
  if (s.startsWith('#')) throw new ProbsemError(`'${s}' is not an image id: write #ID with ID a test image index, e.g. #17`, 'BAD_OPTION');
  return { kind: 'label', text: s };
}

export interface ArithmeticContext {
  model: ImageModel;
  meta: ModelFile;
  /** Needed for image operands and for labels of models without a label encoder. */
  ds: Dataset | null;
  vectors?: WordVectors | null;
}

/** Test posteriors, computed once per context and only when an operand needs them. */
const posteriorCache = new WeakMap<ArithmeticContext, SplitPosteriors>();

function testPosteriors(ctx: ArithmeticContext, why: string): SplitPosteriors {
  if (!ctx.ds) throw new ProbsemError(`${why} needs the run's dataset`, 'BAD_OPTION');
  let p = posteriorCache.get(ctx);
  if (!p) {
    p = encodeSplit(ctx.model, ctx.ds.test, pixelsOf(ctx.ds));
    posteriorCache.set(ctx, p);
  }
  return p;
}

/** The latent point of one operand. */
export function operandPoint(ctx: ArithmeticContext, op: Operand): Float32Array {
  const { model, meta } = ctx;
  const k = model.latentDim;
  if (op.kind === 'image') {
    if (!ctx.ds) throw new ProbsemError(`image #${op.id} needs the run's dataset`, 'BAD_OPTION');
    const n = ctx.ds.test.count;
    if (!(op.id >= 0 && op.id < n)) throw new ProbsemError(`image #${op.id} is not a test image (0..${n - 1})`, 'BAD_OPTION');
    const px = pixelsOf(ctx.ds);
    return tidyRead(() => model.encodeImage(tf.tensor2d(imagesToFloat(ctx.ds!.test, [op.id], px), [1, px])).mean) as Float32Array;
  }
  if (model.encodeLabels) return Float32Array.from(queryDistribution(model, meta, [op.text], ctx.vectors ?? null).mean);
  const { indices, unknown } = resolveWords(meta, [op.text]);
  if (unknown.length > 0 || indices.length !== 1) {
    throw new ProbsemError(
      `'${op.text}' must name exactly one class of this run (${meta.classNames.join(', ')})${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`,
      'UNKNOWN_WORD',
    );
  }
  const c = indices[0];
  const post = testPosteriors(ctx, `the class centroid of '${op.text}' (a ${meta.model} model has no label encoder)`);
  const centroid = new Float64Array(k);
  let count = 0;
  for (let i = 0; i < post.count; i++) {
    if (ctx.ds!.test.labels[i] !== c) continue;
    count++;
    for (let d = 0; d < k; d++) centroid[d] += post.mean[i * k + d];
  }
  if (count === 0) throw new ProbsemError(`no test image of class '${meta.classNames[c]}' to average`, 'BAD_INPUT');
  return Float32Array.from(centroid, (v) => v / count);
}

export interface ArithmeticResult {
  /** Latent points a, minus, plus and a − minus + plus, [4, latent] row-major. */
  z: Float32Array;
  /** The four decoded images (pixel probabilities), [4, pixels]. */
  images: Float32Array;
  /** The class whose latent point (label mean or centroid) is nearest to the result, and its distance. */
  nearestClass: { label: string; distance: number };
}

/** Decodes a, minus, plus and a − minus + plus. */
export function latentArithmetic(ctx: ArithmeticContext, a: Operand, minus: Operand, plus: Operand): ArithmeticResult {
  const k = ctx.model.latentDim;
  const [za, zm, zp] = [a, minus, plus].map((op) => operandPoint(ctx, op));
  const z = new Float32Array(4 * k);
  z.set(za, 0);
  z.set(zm, k);
  z.set(zp, 2 * k);
  for (let d = 0; d < k; d++) z[3 * k + d] = za[d] - zm[d] + zp[d];
  const images = tidyRead(() => tf.sigmoid(ctx.model.decode(tf.tensor2d(z, [4, k])))) as Float32Array;
  let best = { label: '', distance: Infinity };
  for (const label of ctx.meta.classNames) {
    const c = operandPoint(ctx, { kind: 'label', text: label });
    let s = 0;
    for (let d = 0; d < k; d++) s += (c[d] - z[3 * k + d]) ** 2;
    if (Math.sqrt(s) < best.distance) best = { label, distance: Math.sqrt(s) };
  }
  return { z, images, nearestClass: best };
}
