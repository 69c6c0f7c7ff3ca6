/**
 * PSE: a VAE whose KL term is taken against the label encoder's Gaussian q(z|l) instead of
 * N(0, I):  E[log p(x|z)] − KL(q(z|x) ‖ q(z|l)).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { FastMlp, type FastParams } from '../nn/fast.js';
import { Mlp } from '../nn/mlp.js';
import { type Batch, type FastProgram, type HostBatch, type LossResult, ImageModelConfigSchema, splitMoments } from './base.js';
import { EncoderDecoderModel, type FastElbo } from './encoder-decoder.js';

export const PseConfigSchema = ImageModelConfigSchema.extend({
  /** Hidden layers of the label encoder; the paper uses none (one dense layer). */
  labelHidden: z.array(z.number().int().positive()).default([]),
  /**
   * Learning-rate multiplier for the label encoder. With one-hot inputs it is a lookup table whose
   * rows each see a tenth of the data and, under Adam, move at most ~lr per step, so they lag
   * behind the image encoder. Word-vector inputs get `WORD_LABEL_LR_SCALE` unless set (`preparePseRun`).
   */
  labelLrScale: z.number().positive().default(10),
}).strict();
export type PseConfig = z.infer<typeof PseConfigSchema>;

/**
 * The label encoder's rate scale for word-vector inputs. A dense unit vector moves the encoder's
 * outputs under Adam by about ‖v‖₁ times what a one-hot row does (≈ 13 for the WordNet vectors),
 * so the one-hot scale of 10 overshoots; 3 measured best for PSE\* (docs/results.md, Table 3).
 */
export const WORD_LABEL_LR_SCALE = 3;

/** Fills in the label encoder's rate scale for word-vector runs where the user gave none. */
export function preparePseRun(config: Record<string, unknown>, run: { classInputs?: { kind: string } }): Record<string, unknown> {
  if (run.classInputs?.kind !== 'words' || config.labelLrScale !== undefined) return config;
  return { ...config, labelLrScale: WORD_LABEL_LR_SCALE };
}

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

  fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const parts = this.fastParts(fp, maxRows);
    return {
      run: (batch: HostBatch, rng: Rng) => {
        const recon = parts.elbo.forward(batch, rng);
        const kl = parts.klAgainstLabels(batch);
        return { loss: recon + kl, recon, kl };
      },
    };
  }

  /**
   * The fast ELBO plus the label encoder as its prior. `klAgainstLabels` runs after any extra
   * gradient has been put on the decoder's logits: it encodes the labels, backpropagates the
   * decoder, encoder and label encoder, and returns the mean KL.
   */
  protected fastParts(fp: FastParams, maxRows: number): { elbo: FastElbo; klAgainstLabels: (batch: HostBatch) => number } {
    const k = fp.kernels;
    const elbo = this.fastElbo(fp, maxRows);
    const labels = new FastMlp(fp, this.labelEncoder, maxRows);
    const labelDim = this.labelEncoder.sizes[0];
    const y = k.alloc(maxRows * labelDim);
    const gPrior = k.alloc(maxRows * 2 * this.latentDim);
    return {
      elbo,
      klAgainstLabels: (batch: HostBatch) => {
        if (batch.labelDim !== labelDim) throw new ProbsemError(`label inputs have width ${batch.labelDim}, the label encoder takes ${labelDim}`, 'SHAPE');
        k.view(y).set(batch.y.subarray(0, batch.rows * labelDim));
        const prior = labels.forward(y, batch.rows);
        const kl = elbo.backward(batch.rows, prior, 1, gPrior);
        labels.backward(y, gPrior, batch.rows, false);
        return kl;
      },
    };
  }
}
