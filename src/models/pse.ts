/**
 * PSE: a VAE whose KL term is taken against the label encoder's Gaussian q(z|l) instead of
 * N(0, I):  E[log p(x|z)] − KL(q(z|x) ‖ q(z|l)).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { Mlp } from '../nn/mlp.js';
import { type Batch, type LossResult, ImageModelConfigSchema, splitMoments } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const PseConfigSchema = ImageModelConfigSchema.extend({
  /** Hidden layers of the label encoder; the paper uses none (one dense layer). */
  labelHidden: z.array(z.number().int().positive()).default([]),
  /**
   * Learning-rate multiplier for the label encoder. With one-hot inputs it is a lookup table whose
   * rows each see a tenth of the data and, under Adam, move at most ~lr per step, so they lag
   * behind the image encoder.
   */
  labelLrScale: z.number().positive().default(10),
}).strict();
export type PseConfig = z.infer<typeof PseConfigSchema>;

export class Pse<C extends PseConfig = PseConfig> extends EncoderDecoderModel<C> {
  readonly name: string = 'pse';
  protected readonly labelEncoder: Mlp;

  constructor(config: C, rng: Rng) {
    super(config, rng);
    const labelDim = config.labelDim ?? config.numClasses;
    this.labelEncoder = new Mlp(this.params, 'labelEncoder', [labelDim, ...config.labelHidden, 2 * config.latent], rng);
    this.params.setLrScale('labelEncoder.', config.labelLrScale);
  }

  encodeLabels(y: tf.Tensor2D): DiagGaussian {
    const [m, lv] = splitMoments(this.labelEncoder.apply(y, false), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  protected prior(batch: Batch): DiagGaussian {
    return this.encodeLabels(batch.y);
  }

  loss(batch: Batch, _step: number): LossResult {
    const { recon, kl } = this.elbo(batch);
    return { total: tf.add(recon, kl) as tf.Scalar, terms: { recon, kl } };
  }
}
