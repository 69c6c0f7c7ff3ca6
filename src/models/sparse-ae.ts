/**
 * Sparse autoencoder (lecture 003): sigmoid code units kept inactive most of the time by the
 * penalty β · Σ_j KL(ρ ‖ ρ̂_j), where ρ̂_j is unit j's mean activation over the batch and both are
 * read as Bernoulli means: KL(ρ ‖ ρ̂) = ρ log(ρ/ρ̂) + (1 − ρ) log((1 − ρ)/(1 − ρ̂)).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Autoencoder, AutoencoderConfigSchema } from './autoencoder.js';
import { plainTfOps } from '../ops/tfjs.js';
import type { Ops } from '../ops/types.js';

/** ρ̂ is kept this far inside (0, 1) so a saturated unit cannot make the penalty infinite. */
const RHO_HAT_EPS = 1e-6;

export const SparseAeConfigSchema = AutoencoderConfigSchema.extend({
  /** Target mean activation ρ of every code unit. */
  rho: z
    .number({ invalid_type_error: 'rho must be a number' })
    .gt(0, 'rho (the target mean activation) must be in (0, 1)')
    .lt(1, 'rho (the target mean activation) must be in (0, 1)')
    .default(0.05),
  /** Weight β of the sparsity penalty. */
  beta: z.number({ invalid_type_error: 'beta must be a number' }).min(0, 'beta (the sparsity weight) must be ≥ 0').default(3),
  /** Activations are read as probabilities of firing, so the code must be sigmoid. */
  codeActivation: z
    .literal('sigmoid', { errorMap: () => ({ message: "the sparse autoencoder's code is sigmoid (its penalty reads activations as probabilities)" }) })
    .default('sigmoid'),
}).strict();
export type SparseAeConfig = z.infer<typeof SparseAeConfigSchema>;

/**
 * Σ_j KL(ρ ‖ ρ̂_j) for code activations a [B, units] in (0, 1), with ρ̂_j the mean of column j
 * (clipped into (0, 1), where it then has no gradient), and the mean of the ρ̂_j (for logging).
 */
export function sparsityTerms<T>(o: Ops<T>, a: T, rho: number): { penalty: T; meanActivation: T } {
  const rhoHat = o.clip(o.mean(a, 0), RHO_HAT_EPS, 1 - RHO_HAT_EPS);
  // ρ (log ρ − log ρ̂) + (1 − ρ)(log(1 − ρ) − log(1 − ρ̂))
  const on = o.affine(o.unary('log', rhoHat), -rho, rho * Math.log(rho));
  const off = o.affine(o.unary('log', o.affine(rhoHat, -1, 1)), -(1 - rho), (1 - rho) * Math.log(1 - rho));
  return { penalty: o.sum(o.add(on, off)), meanActivation: o.mean(rhoHat) };
}

/** `sparsityTerms` on tensors, as scalars. */
export function sparsityPenalty(a: tf.Tensor2D, rho: number): { penalty: tf.Scalar; meanActivation: tf.Scalar } {
  return tf.tidy(() => {
    const { penalty, meanActivation } = sparsityTerms(plainTfOps(), a, rho);
    return { penalty: tf.reshape(penalty, []) as tf.Scalar, meanActivation: tf.reshape(meanActivation, []) as tf.Scalar };
  });
}

export class SparseAe extends Autoencoder<SparseAeConfig> {
  override readonly name: string = 'sparse-ae';

  protected override codePenalty<T>(o: Ops<T>, code: T) {
    const { penalty, meanActivation } = sparsityTerms(o, code, this.config.rho);
    return { total: o.affine(penalty, this.config.beta), terms: { sparsity: penalty, meanActivation } };
  }
}
