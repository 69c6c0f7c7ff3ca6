/**
 * A mixture-of-experts multimodal VAE (Shi, Siddharth, Paige & Torr 2019, "MMVAE"): the joint
 * posterior is the equal-weight mixture of the unimodal experts, q(z | x, l) = ½ q(z|x) + ½ q(z|l),
 * with no product and no prior expert. Training takes one sample from each expert (the paper's
 * stratified estimator with K = 1, its ELBO rather than its IWAE/DReG bound) and asks each to
 * explain both modalities:
 *
 *   ½ Σ_{m ∈ {x, l}} [ −log p(x|z_m) − w · log p(l|z_m) + log q_mix(z_m) − log p(z_m) ],  z_m ~ q(z|m).
 *
 * The last two terms are a one-sample estimate of KL(q_mix ‖ N(0, I)), taken through the mixture's
 * density (log-sum-exp of the two experts), so each expert is pulled towards the region the other
 * explains. Evaluation uses the experts themselves: q(z|x) to annotate, q(z|l) to generate.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { type DiagTerm, diagFromMoments, sampleTerm } from '../distributions/objective.js';
import { plainTfOps } from '../ops/tfjs.js';
import type { Objective, Ops } from '../ops/types.js';
import { Poe, PoeConfigSchema, type PoeConfig } from './poe.js';

export const MmvaeConfigSchema = PoeConfigSchema;
export type MmvaeConfig = PoeConfig;

/**
 * log N(z; μ, diag σ²) per row without the −K/2 · log 2π that every density here shares (it
 * cancels between the mixture and the prior), [rows, 1].
 */
function diagLogDensity<T>(o: Ops<T>, q: DiagTerm<T>, z: T): T {
  const scaled = o.mul(o.unary('square', o.sub(z, q.mean)), o.unary('exp', o.unary('neg', q.logVar)));
  return o.affine(o.sum(o.add(scaled, q.logVar), 1), -0.5);
}

export class Mmvae extends Poe {
  override readonly name = 'mmvae';

  constructor(config: MmvaeConfig, rng: Rng) {
    super(config, rng);
  }

  protected override posteriorTerm<T>(o: Ops<T>): DiagTerm<T> {
    return diagFromMoments(o, this.runEncoder(o, o.input('x')), this.latentDim);
  }

  override objective<T>(o: Ops<T>): Objective<T> {
    const k = this.latentDim;
    const experts = [diagFromMoments(o, this.runEncoder(o, o.input('x')), k), diagFromMoments(o, this.labelEncoder.run(o, o.input('y')), k)];
    const parts = experts.map((q) => {
      const zs = sampleTerm(o, q, o.normal(k));
      // log q_mix(z) = log ½ + log(e^a + e^b), with log(e^a + e^b) = a + softplus(b − a).
      const [a, b] = experts.map((e) => diagLogDensity(o, e, zs));
      const logMix = o.affine(o.add(a, o.unary('softplus', o.sub(b, a))), 1, -Math.LN2);
      const logPrior = o.affine(o.sum(o.unary('square', zs), 1), -0.5);
      return { kl: o.mean(o.sub(logMix, logPrior)), ...this.reconstructBoth(o, zs) };
    });
    // Cross-modal terms: the image from the label's sample, the label from the image's.
    return this.mixtureObjective(o, parts, { imageFromLabel: parts[1].recon, labelFromImage: parts[0].labelNll });
  }

  /** q(z|l): the label expert alone. */
  override encodeLabels(y: tf.Tensor2D): DiagGaussian {
    return this.expert(() => this.labelEncoder.apply(y, false));
  }

  /** q(z|x): the image expert alone. */
  override encodeImage(x: tf.Tensor2D): DiagGaussian {
    return this.expert(() => this.encoderOutput(x));
  }

  private expert(moments: () => tf.Tensor2D): DiagGaussian {
    const [mean, logVar] = tf.tidy(() => {
      const q = diagFromMoments(plainTfOps(), moments(), this.latentDim);
      return [q.mean as tf.Tensor2D, q.logVar as tf.Tensor2D];
    });
    return new DiagGaussian(mean, logVar);
  }
}
