/**
 * SCAN (Higgins et al. 2018), as the PSE paper trains it: two stages in one run.
 *
 *   Stage 1, steps [0, stage1Steps): a β-VAE on images (β = 10; encoder MLP 512-64, decoder
 *   64-512, Bernoulli):  −log p(x|z) + β·KL(q(z|x) ‖ N(0, I)).
 *   Stage 2, steps [stage1Steps, end): the image model is frozen and the label distributions
 *   q(z|l) (one dense layer, as PSE's label encoder) are fitted to it:  KL(q(z|x) ‖ q(z|l)).
 *
 * The switch is `loss(batch, step)` comparing the step with `stage1Steps`, a config value:
 * `trainRun` fills it from the run's length (`stage1Fraction`, default 60 %, of the steps) through
 * the registry's `prepareRun` hook (`prepareScanRun` below), so `probsem train --model scan` runs
 * both stages. Nothing else in the trainer knows about stages.
 *
 * Freezing is exact. In stage 2 the posterior q(z|x) is rebuilt from its values (copied out of the
 * tape), so the loss does not reach the image encoder or decoder: `tf.variableGrads` omits them
 * and Adam leaves them (and their moments) untouched — bit-identical weights. A zero gradient
 * would not do: Adam's momentum would still move them. Likewise stage 1 never reaches the label
 * encoder. The fast engine gets the same from `fastProgram`'s `frozen` list (the stage's
 * untouched networks), whose Adam ranges it skips. SCAN refuses data-parallel training
 * (`--workers` > 1), whose flat optimizer treats a missing gradient as zero.
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
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { bernoulliLogLikelihood } from '../distributions/bernoulli.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import { diagKlRows } from '../distributions/rows.js';
import { FastMlp, type FastParams } from '../nn/fast.js';
import { Mlp } from '../nn/mlp.js';
import { type Batch, type DataStats, type FastProgram, type HostBatch, type LossResult, ImageModelConfigSchema, batchMean, splitMoments } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const ScanConfigSchema = ImageModelConfigSchema.extend({
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
 * and checks that both stages get steps and that training is single-replica.
 */
export function prepareScanRun(config: Record<string, unknown>, run: { steps: number; workers?: number }): Record<string, unknown> {
  if ((run.workers ?? 1) > 1) {
    throw new ProbsemError(
      'scan cannot train data-parallel (--workers > 1): its second stage must leave the image model untouched, ' +
        'and the data-parallel optimizer would still move it by momentum; use --workers 1',
      'BAD_OPTION',
    );
  }
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

/** The same Gaussian, cut off from the gradient tape (its values copied into new tensors). */
function detached(g: DiagGaussian): DiagGaussian {
  const copy = (t: tf.Tensor2D) => tf.tensor2d((t.dataSync() as Float32Array).slice(), t.shape);
  return new DiagGaussian(copy(g.mean), copy(g.logVar));
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

  protected prior(_batch: Batch): DiagGaussian {
    return DiagGaussian.standard(this.latentDim);
  }

  loss(batch: Batch, step: number): LossResult {
    const frozen = this.stageOf(step) === 2;
    const live = this.encodeImage(batch.x);
    // Stage 2 sees the image model's posterior only as data.
    const posterior = frozen ? detached(live) : live;
    const eps = normalTensor(batch.rng, [batch.x.shape[0], this.latentDim]) as tf.Tensor2D;
    const logits = this.decode(posterior.sample(eps));
    const recon = tf.neg(batchMean(bernoulliLogLikelihood(logits, batch.x))) as tf.Scalar;
    const klPrior = batchMean(kl(posterior, this.prior(batch)));
    const labelKl = batchMean(kl(posterior, this.encodeLabels(batch.y)));
    const total = frozen ? labelKl : (tf.add(recon, tf.mul(klPrior, this.config.beta)) as tf.Scalar);
    return { total, terms: { recon, kl: klPrior, labelKl } };
  }

  /**
   * The same objective on probsem's kernels (see nn/fast.ts). `frozen` names the networks the
   * stage's loss does not reach (stage 1: the label encoder; stage 2: the image encoder and
   * decoder), and `run` writes no gradient for them: the fast engine skips their Adam update.
   */
  fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const k = fp.kernels;
    const K = this.latentDim;
    const elbo = this.fastElbo(fp, maxRows);
    const labels = new FastMlp(fp, this.labelEncoder, maxRows);
    const labelDim = this.labelEncoder.sizes[0];
    const y = k.alloc(maxRows * labelDim);
    const gLabel = k.alloc(maxRows * 2 * K);
    const beta = this.config.beta;
    const stage1Frozen: readonly string[] = ['labelEncoder.'];
    const stage2Frozen: readonly string[] = ['encoder.', 'decoder.'];
    return {
      frozen: (step: number) => (this.stageOf(step) === 1 ? stage1Frozen : stage2Frozen),
      run: (batch: HostBatch, rng: Rng, step: number) => {
        const rows = batch.rows;
        if (batch.labelDim !== labelDim) throw new ProbsemError(`label inputs have width ${batch.labelDim}, the label encoder takes ${labelDim}`, 'SHAPE');
        // Both stages encode, sample and decode (drawing the step's noise as `loss` does).
        const recon = elbo.forward(batch, rng);
        k.view(y).set(batch.y.subarray(0, rows * labelDim));
        const ql = labels.forward(y, rows).ptr >> 2;
        const klRows = (p: number | null, weight: number, gp: number | null) =>
          diagKlRows(k.heap(), { rows, dim: K, q: elbo.encoder.output.ptr >> 2, p, weight, gq: null, gp, addToGq: false, addToGp: false }) / rows;
        if (this.stageOf(step) === 1) {
          const kl = elbo.backward(rows, null, beta, null);
          return { loss: recon + beta * kl, recon, kl, labelKl: klRows(ql, 0, null) };
        }
        // Stage 2: q(z|x) is data; only the label encoder learns, from KL(q(z|x) ‖ q(z|l)).
        const kl = klRows(null, 0, null);
        const labelKl = klRows(ql, 1 / rows, gLabel.ptr >> 2);
        labels.backward(y, gLabel, rows, false);
        return { loss: labelKl, recon, kl, labelKl };
      },
    };
  }
}
