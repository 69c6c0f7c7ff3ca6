/**
 * β-VAE (Higgins et al. 2017) under its own name: the `vae` model with β = 4 by default
 * (−log p(x|z) + β·KL(q(z|x) ‖ N(0, I))). `vae --beta X` trains the same objective; this entry
 * exists so runs and benches can name the baseline, and its runs resume and load as `beta-vae`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { DiagGaussian } from '../distributions/gaussian.js';
import { type Batch, type LossResult, ImageModelConfigSchema } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const BetaVaeConfigSchema = ImageModelConfigSchema.extend({
  beta: z.number().positive().default(4),
}).strict();
export type BetaVaeConfig = z.infer<typeof BetaVaeConfigSchema>;

export class BetaVae extends EncoderDecoderModel<BetaVaeConfig> {
  readonly name = 'beta-vae';

  protected prior(_batch: Batch): DiagGaussian {
    return DiagGaussian.standard(this.latentDim);
  }

  loss(batch: Batch, _step: number): LossResult {
    const { recon, kl } = this.elbo(batch);
    return { total: tf.add(recon, tf.mul(kl, this.config.beta)) as tf.Scalar, terms: { recon, kl } };
  }
}
