/**
 * Deep CCA (Andrew et al. 2013): an MLP on images and a small net (by default one linear layer) on
 * label vectors, trained to maximise the total correlation of the top-k canonical correlations
 * between their outputs on large batches.
 *
 * tfjs has no differentiable eigen-decomposition, so the objective and its gradient with respect
 * to the two output matrices are computed in closed form on the host in float64
 * (`correlationObjective`), and backpropagated through both nets as the upstream gradient: the
 * objective's one custom op (ops/types.ts `custom`) returns −corr and that gradient, on either
 * engine. (The alternative, a Newton–Schulz
 * inverse square root built from tfjs ops, would give the square roots but not the SVD's top-k.)
 *
 * The lecture pretrains each side before fine-tuning with full-batch L-BFGS; here both nets start
 * from Glorot weights and Adam runs on large minibatches (1000 rows by default), which is known to
 * work for DCCA when the batch is large enough for stable covariance estimates.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { inverseSqrtSymmetric, matmul, svdViaGram, transpose } from '../core/linalg.js';
import type { Rng } from '../core/random.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import type { Objective, Ops } from '../ops/types.js';
import { type Trainable, parseModelConfig } from './base.js';

const positiveInt = z.number().int().positive();

export const DccaConfigSchema = z
  .object({
    /** Pixels per image. */
    inputDim: positiveInt,
    /** Width of a label vector (numClasses for one-hot rows). */
    labelDim: positiveInt,
    /** Width o of both nets' outputs. */
    outDim: positiveInt.default(10),
    imageHidden: z.array(positiveInt).default([512, 128]),
    /** Hidden layers of the label net; [] is a linear map. */
    labelHidden: z.array(positiveInt).default([]),
    /** Ridges added to the output covariances (> 0 keeps Σ^-1/2 finite). */
    r1: z.number().positive().default(1e-3),
    r2: z.number().positive().default(1e-3),
    /** Canonical correlations summed in the objective (default: all outDim). */
    topK: positiveInt.optional(),
  })
  .strict()
  .refine((c) => c.topK === undefined || c.topK <= c.outDim, { message: 'topK must be ≤ outDim' });
export type DccaConfig = z.infer<typeof DccaConfigSchema>;

export interface CorrelationObjective {
  /** Sum of the top-k canonical correlations of the two outputs. */
  corr: number;
  /** All min(o1, o2) canonical correlations, descending. */
  correlations: Float64Array;
  /** ∂corr/∂H1 (n×o1) and ∂corr/∂H2 (n×o2), row-major. */
  grad1: Float64Array;
  grad2: Float64Array;
}

/**
 * The total correlation of the top k canonical correlations between H1 (n×o1) and H2 (n×o2) and
 * its gradient. With centred H̄, S11 = H̄1ᵀH̄1/(n−1) + r1·I, S12 = H̄1ᵀH̄2/(n−1), S22 likewise,
 * T = S11^-1/2 S12 S22^-1/2 = U D Vᵀ and corr = Σ_{i≤k} Dᵢᵢ:
 *   ∇12 = S11^-1/2 U_k V_kᵀ S22^-1/2,   ∇11 = −½ S11^-1/2 U_k D_k U_kᵀ S11^-1/2  (∇22 likewise),
 *   ∂corr/∂H1 = (2 H̄1 ∇11 + H̄2 ∇12ᵀ)/(n−1),   ∂corr/∂H2 = (2 H̄2 ∇22 + H̄1 ∇12)/(n−1).
 * (dσᵢ = uᵢᵀ dT vᵢ; the S11^-1/2 term reduces to ∇11 because X = −½A⁻¹UDUᵀA⁻¹ solves the
 * Sylvester equation AX + XA = −sym(UDUᵀA⁻¹) of d(S^1/2).) The gradient is that of the sum of the
 * top k when σ_k > σ_{k+1}; tested against finite differences.
 */
export function correlationObjective(
  h1: ArrayLike<number>,
  h2: ArrayLike<number>,
  n: number,
  o1: number,
  o2: number,
  r1: number,
  r2: number,
  k = Math.min(o1, o2),
): CorrelationObjective {
  if (!(n >= 2)) throw new ProbsemError(`the correlation objective needs at least 2 rows, got ${n}`, 'BAD_OPTION');
  if (h1.length !== n * o1 || h2.length !== n * o2) {
    throw new ProbsemError(`the two outputs must have ${n} rows: got ${h1.length / o1} and ${h2.length / o2}`, 'BAD_OPTION');
  }
  const kk = Math.min(o1, o2);
  if (!Number.isInteger(k) || k < 1 || k > kk) throw new ProbsemError(`k must be an integer in [1, ${kk}], got ${k}`, 'BAD_OPTION');
  const c1 = centred(h1, n, o1);
  const c2 = centred(h2, n, o2);
  const scale = 1 / (n - 1);
  const s11 = gram(c1, c1, n, o1, o1, scale);
  const s22 = gram(c2, c2, n, o2, o2, scale);
  const s12 = gram(c1, c2, n, o1, o2, scale);
  for (let i = 0; i < o1; i++) s11[i * o1 + i] += r1;
  for (let i = 0; i < o2; i++) s22[i * o2 + i] += r2;
  const a = inverseSqrtSymmetric(s11, o1, 'the image outputs\' covariance + r1·I');
  const b = inverseSqrtSymmetric(s22, o2, 'the label outputs\' covariance + r2·I');
  const t = matmul(matmul(a, s12, o1, o1, o2), b, o1, o2, o2);
  const { u, s, v } = svdViaGram(t, o1, o2);
  let corr = 0;
  for (let i = 0; i < k; i++) corr += s[i];
  // U_k (o1×k), V_k (o2×k), and U_k D_k, V_k D_k.
  const uk = new Float64Array(o1 * k);
  const ukd = new Float64Array(o1 * k);
  for (let i = 0; i < o1; i++) for (let j = 0; j < k; j++) (uk[i * k + j] = u[i * kk + j]), (ukd[i * k + j] = u[i * kk + j] * s[j]);
  const vk = new Float64Array(o2 * k);
  const vkd = new Float64Array(o2 * k);
  for (let i = 0; i < o2; i++) for (let j = 0; j < k; j++) (vk[i * k + j] = v[i * kk + j]), (vkd[i * k + j] = v[i * kk + j] * s[j]);
  const au = matmul(a, uk, o1, o1, k);
  const bv = matmul(b, vk, o2, o2, k);
  const d12 = matmul(au, transpose(bv, o2, k), o1, k, o2);
  const d11 = matmul(matmul(a, matmul(ukd, transpose(uk, o1, k), o1, k, o1), o1, o1, o1), a, o1, o1, o1);
  const d22 = matmul(matmul(b, matmul(vkd, transpose(vk, o2, k), o2, k, o2), o2, o2, o2), b, o2, o2, o2);
  for (let i = 0; i < d11.length; i++) d11[i] *= -0.5;
  for (let i = 0; i < d22.length; i++) d22[i] *= -0.5;
  const grad1 = matmul(c1, d11, n, o1, o1);
  const cross1 = matmul(c2, transpose(d12, o1, o2), n, o2, o1);
  for (let i = 0; i < grad1.length; i++) grad1[i] = (2 * grad1[i] + cross1[i]) * scale;
  const grad2 = matmul(c2, d22, n, o2, o2);
  const cross2 = matmul(c1, d12, n, o1, o2);
  for (let i = 0; i < grad2.length; i++) grad2[i] = (2 * grad2[i] + cross2[i]) * scale;
  return { corr, correlations: s, grad1, grad2 };
}

function centred(h: ArrayLike<number>, n: number, o: number): Float64Array {
  const out = Float64Array.from(h as ArrayLike<number>);
  for (let j = 0; j < o; j++) {
    let m = 0;
    for (let i = 0; i < n; i++) m += out[i * o + j];
    m /= n;
    for (let i = 0; i < n; i++) out[i * o + j] -= m;
  }
  return out;
}

/** scale · AᵀB for A (n×p), B (n×q). */
function gram(a: Float64Array, b: Float64Array, n: number, p: number, q: number, scale: number): Float64Array {
  const out = matmul(transpose(a, n, p), b, p, n, q);
  for (let i = 0; i < out.length; i++) out[i] *= scale;
  return out;
}

export class Dcca implements Trainable {
  readonly name = 'dcca';
  readonly params = new ParamSet();
  readonly imageNet: Mlp;
  readonly labelNet: Mlp;
  readonly topK: number;

  constructor(
    readonly config: DccaConfig,
    rng: Rng,
  ) {
    this.imageNet = new Mlp(this.params, 'image', [config.inputDim, ...config.imageHidden, config.outDim], rng);
    this.labelNet = new Mlp(this.params, 'label', [config.labelDim, ...config.labelHidden, config.outDim], rng);
    this.topK = config.topK ?? config.outDim;
  }

  /** Image-side outputs, [N, outDim]. */
  imageOutputs(x: tf.Tensor2D): tf.Tensor2D {
    return this.imageNet.apply(x, false);
  }

  /** Label-side outputs, [N, outDim]. */
  labelOutputs(y: tf.Tensor2D): tf.Tensor2D {
    return this.labelNet.apply(y, false);
  }

  /** −(total correlation of the top k) on the batch: a custom op with the closed-form gradient (see the file's note). */
  objective<T>(o: Ops<T>): Objective<T> {
    const out = this.config.outDim;
    const { r1, r2 } = this.config;
    const h1 = this.imageNet.run(o, o.input('x'));
    const h2 = this.labelNet.run(o, o.input('y'));
    const negCorr = o.custom(
      {
        name: 'dcca-correlation',
        forward: ([a, b], shapes) => {
          const n = shapes[0][0];
          const obj = correlationObjective(a, b, n, out, out, r1, r2, this.topK);
          return {
            value: Float32Array.of(-obj.corr),
            backward: (g) => [Float32Array.from(obj.grad1, (v) => -v * g[0]), Float32Array.from(obj.grad2, (v) => -v * g[0])],
          };
        },
      },
      [h1, h2],
      [1, 1],
    );
    return { total: negCorr, terms: { correlation: o.affine(negCorr, -1) } };
  }

  dispose(): void {
    this.params.dispose();
  }
}

/** Builds a Deep CCA from a config, with the schema's defaults and a clear error for a bad one. */
export function createDcca(config: unknown, rng: Rng): Dcca {
  return new Dcca(parseModelConfig(DccaConfigSchema, config, 'dcca'), rng);
}
