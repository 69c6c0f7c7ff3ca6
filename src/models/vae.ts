/** VAE and β-VAE: E[log p(x|z)] − β·KL(q(z|x) ‖ N(0, I)). */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { DiagGaussian } from '../distributions/gaussian.js';
import type { Rng } from '../core/random.js';
import type { FastParams } from '../nn/fast.js';
import { type Batch, type FastProgram, type HostBatch, type LossResult, ImageModelConfigSchema } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const VaeConfigSchema = ImageModelConfigSchema.extend({
  beta: z.number().positive().default(1),
}).strict();
export type VaeConfig = z.infer<typeof VaeConfigSchema>;

export class Vae extends EncoderDecoderModel<VaeConfig> {
  readonly name: string = 'vae';

  protected prior(_batch: Batch): DiagGaussian {
    return DiagGaussian.standard(this.latentDim);
  }

  loss(batch: Batch, _step: number): LossResult {
    const { recon, kl } = this.elbo(batch);
    const total = tf.add(recon, tf.mul(kl, this.config.beta)) as tf.Scalar;
    return { total, terms: { recon, kl } };
  }

  fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const elbo = this.fastElbo(fp, maxRows);
    const beta = this.config.beta;
    return {
      run: (batch: HostBatch, rng: Rng) => {
        const recon = elbo.forward(batch, rng);
        const kl = elbo.backward(batch.rows, null, beta, null);
        return { loss: recon + beta * kl, recon, kl };
      },
    };
  }
}
