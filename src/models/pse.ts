/**
 * PSE: a VAE whose KL term is taken against the label encoder's Gaussian q(z|l) instead of
 * N(0, I):  E[log p(x|z)] − KL(q(z|x) ‖ q(z|l)).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { type GaussianTerm, diagFromMoments } from '../distributions/objective.js';
import { Mlp } from '../nn/mlp.js';
import type { Objective, Ops } from '../ops/types.js';
import { ConvEncoderFields, ImageModelConfigSchema, splitMoments } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const PseConfigSchema = ImageModelConfigSchema.extend({
  ...ConvEncoderFields,
  /** Hidden layers of the label encoder; the paper uses none (one dense layer). */
  labelHidden: z.array(z.number().int().positive()).default([]),
  /**
   * Learning-rate multiplier for the label encoder. With one-hot inputs it is a lookup table whose
   * rows each see a tenth of the data and, under Adam, move at most ~lr per step, so they lag
   * behind the image encoder. Word-vector inputs get `WORD_LABEL_LR_SCALE` unless set (`preparePseRun`).
   */
  labelLrScale: z.number().positive().default(10),
  /**
   * Steps over which the KL term's weight rises linearly from 0 to 1 (0: none, the paper). Where
   * the pictures are varied and few (emoji), the KL against a label prior that is itself being
   * learned can win before the decoder does: both encoders collapse onto one Gaussian, the KL is
   * 0 and the latent says nothing. A warm-up lets the image encoder carry information first.
   */
  klWarmupSteps: z.number().int().nonnegative().default(0),
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

  protected priorTerm<T>(o: Ops<T>): GaussianTerm<T> {
    return diagFromMoments(o, this.labelEncoder.run(o, o.input('y')), this.latentDim);
  }

  /** The KL term's weight at a step (`klWarmupSteps`). */
  klWeight(step: number): number {
    const w = this.config.klWarmupSteps;
    return w > 0 ? Math.min(1, step / w) : 1;
  }

  /** The KL term as it enters the total: weighted during a warm-up, as it is otherwise. */
  protected weightedKl<T>(o: Ops<T>, kl: T): T {
    return this.config.klWarmupSteps > 0 ? o.mul(kl, o.schedule((step) => this.klWeight(step))) : kl;
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const { recon, kl } = this.elboTerms(o);
    return { total: o.add(recon, this.weightedKl(o, kl)), terms: { recon, kl } };
  }
}
