/**
 * Sparse autoencoder (lecture 003): sigmoid code units kept inactive most of the time by the
 * penalty β · Σ_j KL(ρ ‖ ρ̂_j), where ρ̂_j is unit j's mean activation over the batch and both are
 * read as Bernoulli means: KL(ρ ‖ ρ̂) = ρ log(ρ/ρ̂) + (1 − ρ) log((1 − ρ)/(1 − ρ̂)).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Autoencoder, AutoencoderConfigSchema } from './autoencoder.js';

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
 * Σ_j KL(ρ ‖ ρ̂_j) for code activations a [B, units] in (0, 1), with ρ̂_j the mean of column j,
 * and the mean of the ρ̂_j (for logging).
 */
export function sparsityPenalty(a: tf.Tensor2D, rho: number): { penalty: tf.Scalar; meanActivation: tf.Scalar } {
  return tf.tidy(() => {
    const rhoHat = tf.clipByValue(tf.mean(a, 0), RHO_HAT_EPS, 1 - RHO_HAT_EPS);
    const kl = tf.add(
      tf.mul(rho, tf.sub(Math.log(rho), tf.log(rhoHat))),
      tf.mul(1 - rho, tf.sub(Math.log(1 - rho), tf.log(tf.sub(1, rhoHat)))),
    );
    return { penalty: tf.sum(kl) as tf.Scalar, meanActivation: tf.mean(rhoHat) as tf.Scalar };
  });
}

export class SparseAe extends Autoencoder<SparseAeConfig> {
  override readonly name: string = 'sparse-ae';

  protected override codePenalty(code: tf.Tensor2D) {
    const { penalty, meanActivation } = sparsityPenalty(code, this.config.rho);
    return { total: tf.mul(penalty, this.config.beta) as tf.Scalar, terms: { sparsity: penalty, meanActivation } };
  }

  protected override hostCodePenalty(code: Float32Array, rows: number, gCode: Float32Array) {
    const { rho, beta } = this.config;
    const units = this.latentDim;
    let penalty = 0;
    let meanActivation = 0;
    for (let j = 0; j < units; j++) {
      let sum = 0;
      for (let i = 0; i < rows; i++) sum += code[i * units + j];
      const raw = sum / rows;
      const r = Math.min(1 - RHO_HAT_EPS, Math.max(RHO_HAT_EPS, raw));
      penalty += rho * Math.log(rho / r) + (1 - rho) * Math.log((1 - rho) / (1 - r));
      meanActivation += r / units;
      // d/dρ̂ of the KL, spread over the batch (ρ̂ is a mean); zero where the clip holds ρ̂.
      const clipped = raw < RHO_HAT_EPS || raw > 1 - RHO_HAT_EPS;
      const d = clipped ? 0 : (beta * (-rho / r + (1 - rho) / (1 - r))) / rows;
      for (let i = 0; i < rows; i++) gCode[i * units + j] += d;
    }
    return { total: beta * penalty, terms: { sparsity: penalty, meanActivation } };
  }
}
