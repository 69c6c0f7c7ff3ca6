/**
 * The family every probsem generative model here belongs to: an MLP Gaussian image encoder
 * (optionally behind strided convolutions, `ConvEncoderFields`), a decoder (MLP, or transposed
 * convolutions with `decoderConv`) with its pixel likelihood (Bernoulli unless `likelihood` says
 * otherwise), and an ELBO whose KL target (the "prior") each model chooses.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { ConvDecoder, ConvStack, type ImageDecoder } from '../nn/conv.js';
import { type PixelLikelihood, addScaleParam, pixelNll } from '../distributions/pixel-likelihood.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { ProbsemError } from '../core/errors.js';
import { type DiagTerm, type FullTerm, type GaussianTerm, diagFromMoments, meanKl, sampleTerm } from '../distributions/objective.js';
import type { Objective, Ops } from '../ops/types.js';
import { type ConvEncoderConfig, type DataStats, type ImageModel, type ImageModelConfig, splitMoments } from './base.js';

/** The ELBO's parts in an objective (`elboTerms`). */
export interface ElboTerms<T> {
  q: DiagTerm<T> | FullTerm<T>;
  /** Decoder logits of the sampled z. */
  logits: T;
  /** Mean Bernoulli NLL of the batch (nats per image). */
  recon: T;
  /** Mean KL(q(z|x) ‖ prior). */
  kl: T;
}

export abstract class EncoderDecoderModel<C extends ImageModelConfig> implements ImageModel {
  abstract readonly name: string;
  readonly params = new ParamSet();
  readonly latentDim: number;
  protected readonly encoder: Mlp;
  protected readonly decoder: ImageDecoder;
  /** p(x|z) on intensities (`likelihood`, default bernoulli). */
  protected readonly likelihood: PixelLikelihood;
  /** Convolutions in front of the encoder MLP, where the config asks for them. */
  protected readonly encoderConv: ConvStack | null;

  constructor(
    readonly config: C,
    rng: Rng,
  ) {
    const k = config.latent;
    this.latentDim = k;
    this.encoderConv = convFront(this.params, config, rng);
    const features = this.encoderConv?.outputSize ?? config.inputDim;
    this.encoder = new Mlp(this.params, 'encoder', [features, ...config.encoderHidden, this.encoderOutputWidth(k)], rng);
    this.decoder = imageDecoder(this.params, config, k, rng);
    this.likelihood = (config as ConvEncoderConfig).likelihood ?? 'bernoulli';
    addScaleParam(this.params, this.likelihood, (config as ConvEncoderConfig).imageChannels ?? 1, rng);
  }

  /** Mean −log p(x|logits) of the batch's images under the model's likelihood, in an objective. */
  protected pixelNll<T>(o: Ops<T>, logits: T): T {
    return pixelNll(o, this.likelihood, logits, o.input('x'), (this.config as ConvEncoderConfig).imageChannels ?? 1);
  }

  /** The image encoder's raw output for images x (moments before any split). */
  protected encoderOutput(x: tf.Tensor2D): tf.Tensor2D {
    if (!this.encoderConv) return this.encoder.apply(x, false);
    return this.encoder.apply(this.encoderConv.apply(x), false);
  }

  /** Outputs of the image encoder: mean and log-variance (2K) unless a model's posterior needs more. */
  protected encoderOutputWidth(k: number): number {
    return 2 * k;
  }

  /**
   * Sets the decoder's output bias to the logit of the mean training image, so the decoder starts
   * from the average image instead of grey and spends its first steps on structure.
   */
  initFromData(stats: DataStats): void {
    const b = this.decoder.outputBias();
    if (b.size !== stats.meanImage.length) return;
    const logits = stats.meanImage.map((p) => {
      const q = Math.min(1 - 1e-3, Math.max(1e-3, p));
      return Math.log(q / (1 - q));
    });
    const t = tf.tensor1d(logits);
    b.assign(t);
    t.dispose();
  }

  encodeImage(x: tf.Tensor2D): DiagGaussian {
    const [m, lv] = splitMoments(this.encoderOutput(x), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  decode(zs: tf.Tensor2D): tf.Tensor2D {
    return this.decoder.apply(zs);
  }

  /** The encoder's raw output (moments before any split) in an objective. */
  protected runEncoder<T>(o: Ops<T>, x: T): T {
    return this.encoder.run(o, this.encoderConv ? this.encoderConv.run(o, x) : x);
  }

  /** q(z|x) of the batch's images in an objective: diagonal unless a model's posterior needs more. */
  protected posteriorTerm<T>(o: Ops<T>): DiagTerm<T> | FullTerm<T> {
    return diagFromMoments(o, this.runEncoder(o, o.input('x')), this.latentDim);
  }

  /** The distribution the KL term pulls q(z|x) towards, in an objective. */
  protected abstract priorTerm<T>(o: Ops<T>): GaussianTerm<T>;

  /**
   * The ELBO's parts: q(z|x), one reparameterised sample decoded to logits, the batch-mean
   * Bernoulli NLL and KL(q(z|x) ‖ prior). The noise is drawn right after encoding.
   */
  protected elboTerms<T>(o: Ops<T>): ElboTerms<T> {
    const q = this.posteriorTerm(o);
    const logits = this.decoder.run(o, sampleTerm(o, q, o.normal(this.latentDim)));
    const recon = this.pixelNll(o, logits);
    return { q, logits, recon, kl: meanKl(o, q, this.priorTerm(o)) };
  }

  abstract objective<T>(o: Ops<T>, phase: string): Objective<T>;
}

/** The image's height, width and channels from a config, for the convolutions `part` needs them for. */
function imageShape(config: ImageModelConfig & ConvEncoderConfig, part: string): { height: number; width: number; channels: number } {
  const height = config.imageHeight;
  const channels = config.imageChannels ?? 1;
  if (!height || config.inputDim % (height * channels) !== 0) {
    const what = channels === 1 ? `imageHeight, a divisor of the ${config.inputDim} pixels (got ${String(height)})` : `imageHeight × imageChannels (${String(height)} × ${channels}) to divide the ${config.inputDim} input values`;
    throw new ProbsemError(`a convolutional ${part} needs ${what}`, 'BAD_OPTION');
  }
  return { height, width: config.inputDim / (height * channels), channels };
}

/** The convolution stack a config asks for (`ConvEncoderFields`), or null. */
function convFront(params: ParamSet, config: ImageModelConfig & ConvEncoderConfig, rng: Rng): ConvStack | null {
  if (!config.encoderConv) return null;
  return new ConvStack(params, 'encoder', imageShape(config, 'encoder'), config.encoderConv, config.encoderKernel ?? 5, rng);
}

/** The MLP decoder from `inputs` values (z, or z ⊕ l), or the transposed-convolution one where the config has `decoderConv`. */
export function imageDecoder(params: ParamSet, config: ImageModelConfig & ConvEncoderConfig, inputs: number, rng: Rng): ImageDecoder {
  if (!config.decoderConv) return new Mlp(params, 'decoder', [inputs, ...config.decoderHidden, config.inputDim], rng);
  return new ConvDecoder(params, 'decoder', inputs, config.decoderHidden, imageShape(config, 'decoder'), config.decoderConv, config.decoderKernel ?? 5, rng);
}
