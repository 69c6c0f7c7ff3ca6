/**
 * JMVAE (Suzuki et al. 2016, "JMVAE-kl"; the PSE paper's eq. 5), and the joint-model family it
 * shares with TrELBO (`trelbo.ts`).
 *
 * Networks (PSE paper, appendix A): a joint encoder q(z|x,l), an MLP 512-64 on the image
 * concatenated with the label input; a unimodal image encoder q(z|x), MLP 512-64 (the
 * `encoder.*` parameters, as in PSE); a unimodal label encoder q(z|l), one dense layer (as PSE's);
 * an image decoder p(x|z), MLP 64-512, Bernoulli; and a label decoder p(l|z). Eq. 5 has the
 * term E_q(z|x,l)[log p(l|z)], so JMVAE decodes labels too. The paper does not give its size; it
 * mirrors the label encoder: one dense layer z → class logits (`labelDecoderHidden: []`), a
 * categorical likelihood over the classes (cross-entropy with one-hot labels).
 *
 * Minimised (eq. 5 negated, mean over the batch):
 *   −log p(x|z) − log p(l|z) + w(step)·KL(q(z|x,l) ‖ N(0, I))
 *     + α [KL(q(z|x,l) ‖ q(z|x)) + KL(q(z|x,l) ‖ q(z|l))],     z ~ q(z|x,l),
 * with α = 0.1 (Suzuki et al.'s value) and an optional linear warm-up w(step) = min(1,
 * step/warmupSteps) of the prior KL only (the α terms are what trains the unimodal encoders, so
 * they are never switched off); warmupSteps = 0 (the PSE paper uses no warm-up) gives w = 1.
 *
 * For evaluation the model is used like PSE: `encodeImage` is the unimodal q(z|x) (annotation
 * scores its mean under every q(z|l); reconstruction error decodes from it) and `encodeLabels` is
 * q(z|l) (generation decodes z ~ q(z|l)).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { type DiagTerm, type FullTerm, type GaussianTerm, categoricalNllTerm, diagFromMoments, meanKl, sampleTerm } from '../distributions/objective.js';
import { Mlp } from '../nn/mlp.js';
import type { Objective, Ops } from '../ops/types.js';
import { ConvEncoderFields, ImageModelConfigSchema, splitMoments } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

const sizes = z.array(z.number().int().positive());

/** Options every joint (image + label) VAE here shares. */
export const JointVaeConfigSchema = ImageModelConfigSchema.extend({
  ...ConvEncoderFields,
  /** Hidden layers of the joint encoder q(z|x,l) on x ⊕ l (paper: 512-64). */
  jointHidden: sizes.default([512, 64]),
  /** Hidden layers of the label encoder q(z|l) (paper: none, one dense layer). */
  labelHidden: sizes.default([]),
  /** Hidden layers of the label decoder p(l|z) (not in the paper; none mirrors the label encoder). */
  labelDecoderHidden: sizes.default([]),
  /** Learning-rate multiplier of the label encoder (1: the paper's single learning rate). */
  labelLrScale: z.number().positive().default(1),
}).strict();
export type JointVaeConfig = z.infer<typeof JointVaeConfigSchema>;

/** Joint encoder, unimodal encoders, image and label decoders; the prior is N(0, I). */
export abstract class JointVae<C extends JointVaeConfig> extends EncoderDecoderModel<C> {
  readonly labelDim: number;
  protected readonly jointEncoder: Mlp;
  protected readonly labelEncoder: Mlp;
  protected readonly labelDecoder: Mlp;

  constructor(config: C, rng: Rng) {
    super(config, rng);
    const k = config.latent;
    this.labelDim = config.labelDim ?? config.numClasses;
    this.jointEncoder = new Mlp(this.params, 'jointEncoder', [config.inputDim + this.labelDim, ...config.jointHidden, 2 * k], rng);
    this.labelEncoder = new Mlp(this.params, 'labelEncoder', [this.labelDim, ...config.labelHidden, 2 * k], rng);
    this.labelDecoder = new Mlp(this.params, 'labelDecoder', [k, ...config.labelDecoderHidden, config.numClasses], rng);
    this.params.setLrScale('labelEncoder.', config.labelLrScale);
  }

  /** q(z|x,l) for images [N, pixels] and their label inputs [N, labelDim]. */
  encodeJoint(x: tf.Tensor2D, y: tf.Tensor2D): DiagGaussian {
    if (y.shape[0] !== x.shape[0] || y.shape[1] !== this.labelDim) {
      throw new ProbsemError(`${this.name}: label inputs of shape [${y.shape}] do not fit ${x.shape[0]} images (width ${this.labelDim})`, 'BAD_OPTION');
    }
    const [m, lv] = splitMoments(this.jointEncoder.apply(tf.concat([x, y], 1), false), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  /** q(z|l) */
  encodeLabels(y: tf.Tensor2D): DiagGaussian {
    const [m, lv] = splitMoments(this.labelEncoder.apply(y, false), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  /** Class logits of p(l|z). */
  decodeLabels(zs: tf.Tensor2D): tf.Tensor2D {
    return this.labelDecoder.apply(zs);
  }

  protected priorTerm<T>(_o: Ops<T>): GaussianTerm<T> {
    return { kind: 'standard', dim: this.latentDim };
  }

  /** q(z|x,l) of the batch in an objective. */
  protected jointTerm<T>(o: Ops<T>): DiagTerm<T> {
    return diagFromMoments(o, this.jointEncoder.run(o, o.concatCols([o.input('x'), o.input('y')])), this.latentDim);
  }

  /** q(z|l) of the batch's label inputs in an objective. */
  protected labelTerm<T>(o: Ops<T>): DiagTerm<T> {
    return diagFromMoments(o, this.labelEncoder.run(o, o.input('y')), this.latentDim);
  }

  /** A reparameterised sample of q, with fresh noise. */
  protected sample<T>(o: Ops<T>, q: DiagTerm<T> | FullTerm<T>): T {
    return sampleTerm(o, q, o.normal(this.latentDim));
  }

  /** Mean NLL of the batch's images under decoder(z), in the model's likelihood. */
  protected imageNll<T>(o: Ops<T>, zs: T): T {
    return this.pixelNll(o, this.decoder.run(o, zs));
  }

  /** Mean categorical NLL of the batch's labels under p(l|z). */
  protected labelNll<T>(o: Ops<T>, zs: T): T {
    return categoricalNllTerm(o, this.labelDecoder.run(o, zs), this.config.numClasses);
  }
}

export const JmvaeConfigSchema = JointVaeConfigSchema.extend({
  /** Weight of the two KL terms tying q(z|x,l) to the unimodal encoders. */
  alpha: z.number().nonnegative().default(0.1),
  /** Steps over which the prior KL's weight rises linearly from 0 to 1 (0: no warm-up). */
  warmupSteps: z.number().int().nonnegative().default(0),
}).strict();
export type JmvaeConfig = z.infer<typeof JmvaeConfigSchema>;

export class Jmvae extends JointVae<JmvaeConfig> {
  readonly name = 'jmvae';

  /** Weight of KL(q(z|x,l) ‖ N(0, I)) at a step. */
  warmupWeight(step: number): number {
    const w = this.config.warmupSteps;
    return w > 0 ? Math.min(1, step / w) : 1;
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const joint = this.jointTerm(o);
    const zs = this.sample(o, joint);
    const recon = this.imageNll(o, zs);
    const labelNll = this.labelNll(o, zs);
    const klPrior = meanKl(o, joint, this.priorTerm(o));
    const klImage = meanKl(o, joint, this.posteriorTerm(o));
    const klLabel = meanKl(o, joint, this.labelTerm(o));
    const total = o.add(
      o.add(recon, labelNll),
      o.add(o.mul(klPrior, o.schedule((step) => this.warmupWeight(step))), o.affine(o.add(klImage, klLabel), this.config.alpha)),
    );
    return { total, terms: { recon, labelNll, kl: klPrior, klImage, klLabel } };
  }
}
