/**
 * SCAN (Higgins et al. 2018), as the PSE paper trains it: two stages in one run.
 *
 *   Stage 1, steps [0, stage1Steps): a β-VAE on images (β = 10; encoder MLP 512-64, decoder
 *   64-512, Bernoulli):  −log p(x|z) + β·KL(q(z|x) ‖ N(0, I)).
 *   Stage 2, steps [stage1Steps, end): the image model is frozen and the label distributions
 *   q(z|l) (one dense layer, as PSE's label encoder) are fitted to it:  KL(q(z|x) ‖ q(z|l)).
 *
 * The switch is the model's `phase(step)` comparing the step with `stage1Steps`, a config value:
 * `trainRun` fills it from the run's length (`stage1Fraction`, default 60 %, of the steps) through
 * the registry's `prepareRun` hook (`prepareScanRun` below), so `probsem train --model scan` runs
 * both stages. Nothing else in the trainer knows about stages.
 *
 * Freezing is exact. In stage 2 the posterior q(z|x) passes through `stopGradient`, so the loss
 * does not reach the image encoder or decoder: both engines leave them (and their Adam moments)
 * untouched — bit-identical weights. A zero gradient would not do: Adam's momentum would still
 * move them. Likewise stage 1 never reaches the label encoder.
 *
 * Unlike probsem's other models the decoder's output bias starts at zero, not at the mean image's
 * logits (`meanImageInit`): from that start a β = 10 VAE tends to collapse to ignoring z at once.
 *
 * The loss terms are the same in both stages (recon, kl, labelKl), whichever is minimised; in
 * stage 2 `recon` and `kl` show the frozen image model. Adam's step count is shared by all
 * parameters, so in stage 2 the label encoder starts with a bias-corrected step count of
 * stage1Steps: its first updates are a few times lr, settling to lr — harmless, and the same in a
 * resumed run.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { type DiagTerm, type GaussianTerm, diagFromMoments, meanKl, sampleTerm } from '../distributions/objective.js';
import { Mlp } from '../nn/mlp.js';
import type { Objective, Ops } from '../ops/types.js';
import { ConvEncoderFields, type DataStats, ImageModelConfigSchema, splitMoments } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const ScanConfigSchema = ImageModelConfigSchema.extend({
  ...ConvEncoderFields,
  /** KL weight of the stage-1 β-VAE (the PSE paper: 10). */
  beta: z.number().positive().default(10),
  /** Steps of stage 1 (the β-VAE); later steps fit the label distributions. */
  stage1Steps: z
    .number({ required_error: 'stage1Steps is required (trainRun sets it from stage1Fraction of the run\'s steps)' })
    .int()
    .nonnegative(),
  /** Share of a run's steps given to stage 1 when trainRun fills stage1Steps. */
  stage1Fraction: z.number().gt(0).lt(1).default(0.6),
  /** Hidden layers of the label encoder (paper: none, one dense layer). */
  labelHidden: z.array(z.number().int().positive()).default([]),
  /** Learning-rate multiplier of the label encoder (1: the paper's single learning rate). */
  labelLrScale: z.number().positive().default(1),
  /**
   * Start the decoder's output bias at the logit of the mean image, as probsem's other models do.
   * Off by default: with β = 10 that start is already the collapsed solution (z ignored), and the
   * β-VAE stays there — on full Fashion-MNIST its KL fell to 0 within 100 steps for one seed in
   * two, while a zero bias (the paper's frameworks' default) escaped for both.
   */
  meanImageInit: z.boolean().default(false),
}).strict();
export type ScanConfig = z.infer<typeof ScanConfigSchema>;

/**
 * Completes a SCAN config for a run of `steps` steps: stage1Steps from stage1Fraction unless given,
 * and checks that both stages get steps.
 */
export function prepareScanRun(config: Record<string, unknown>, run: { steps: number; workers?: number }): Record<string, unknown> {
  const out = { ...config };
  if (out.stage1Steps === undefined) {
    const fraction = out.stage1Fraction === undefined ? 0.6 : Number(out.stage1Fraction);
    if (!(fraction > 0 && fraction < 1)) {
      throw new ProbsemError(`scan: stage1Fraction must be in (0, 1), got ${String(out.stage1Fraction)}`, 'BAD_OPTION');
    }
    out.stage1Steps = Math.round(fraction * run.steps);
  }
  const s1 = Number(out.stage1Steps);
  if (!Number.isInteger(s1) || s1 < 1 || s1 >= run.steps) {
    throw new ProbsemError(
      `scan: stage1Steps is ${String(out.stage1Steps)} but must be in [1, ${run.steps - 1}] so that both stages of a ${run.steps}-step run get steps`,
      'BAD_OPTION',
    );
  }
  return out;
}

export class Scan extends EncoderDecoderModel<ScanConfig> {
  readonly name = 'scan';
  protected readonly labelEncoder: Mlp;

  constructor(config: ScanConfig, rng: Rng) {
    super(config, rng);
    const labelDim = config.labelDim ?? config.numClasses;
    this.labelEncoder = new Mlp(this.params, 'labelEncoder', [labelDim, ...config.labelHidden, 2 * config.latent], rng);
    this.params.setLrScale('labelEncoder.', config.labelLrScale);
  }

  override initFromData(stats: DataStats): void {
    if (this.config.meanImageInit) super.initFromData(stats);
  }

  /** 1 or 2: the stage a training step belongs to. */
  stageOf(step: number): 1 | 2 {
    return step < this.config.stage1Steps ? 1 : 2;
  }

  encodeLabels(y: tf.Tensor2D): DiagGaussian {
    const [m, lv] = splitMoments(this.labelEncoder.apply(y, false), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  /** 'stage1' or 'stage2': the stage's objective differs in what it trains. */
  phase(step: number): string {
    return `stage${this.stageOf(step)}`;
  }

  protected priorTerm<T>(_o: Ops<T>): GaussianTerm<T> {
    return { kind: 'standard', dim: this.latentDim };
  }

  /** Stage 2 reads the image model's posterior as data (`stopGradient`): the loss cannot reach it. */
  protected override posteriorTerm<T>(o: Ops<T>, phase = 'stage1'): DiagTerm<T> {
    const h = this.runEncoder(o, o.input('x'));
    return diagFromMoments(o, phase === 'stage2' ? o.stopGradient(h) : h, this.latentDim);
  }

  objective<T>(o: Ops<T>, phase: string): Objective<T> {
    if (phase !== 'stage1' && phase !== 'stage2') throw new ProbsemError(`scan: unknown phase ${phase}`, 'INTERNAL');
    const q = this.posteriorTerm(o, phase);
    // Both stages encode, sample and decode, so the step's noise is drawn alike.
    const recon = this.pixelNll(o, this.decoder.run(o, sampleTerm(o, q, o.normal(this.latentDim))));
    const klPrior = meanKl(o, q, this.priorTerm(o));
    const labelKl = meanKl(o, q, diagFromMoments(o, this.labelEncoder.run(o, o.input('y')), this.latentDim));
    const total = phase === 'stage2' ? labelKl : o.add(recon, o.affine(klPrior, this.config.beta));
    return { total, terms: { recon, kl: klPrior, labelKl } };
  }
}
