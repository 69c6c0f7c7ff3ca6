/**
 * Deterministic autoencoders (lecture 003): an MLP encoder g(x) = z, an MLP decoder h(z) giving
 * Bernoulli logits, and the reconstruction loss −log p(x | h(g(x))) in nats per image, the same
 * unit as the VAEs' reconstruction term so the numbers compare. This file holds the compression
 * autoencoder (`ae`, 784-128-32 by default) and the base its denoising and sparse variants extend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import type { Objective, Ops } from '../ops/types.js';
import { ConvDecoderFields, type DataStats, type ImageModel, ImageModelConfigSchema } from './base.js';
import { imageDecoder } from './encoder-decoder.js';
import type { ImageDecoder } from '../nn/conv.js';
import { addScaleParam, pixelNll } from '../distributions/pixel-likelihood.js';

/**
 * The log-variance every code is reported with. An autoencoder's code is a point, not a
 * distribution; `encodeImage` still returns the ImageModel's Gaussian so evaluation, plots and
 * serving work unchanged, and a fixed, tiny variance (sd = e^-10 ≈ 4.5e-5, far below the code's
 * scale) makes it an honest stand-in for a point mass: every metric reads the mean, a sample
 * differs from it by a negligible amount, and the KL between two codes is ‖Δz‖² · e^20 / 2, a
 * monotone function of their Euclidean distance — which is how codes should be compared.
 * Not smaller, so that KL sums stay far inside float32.
 */
export const POINT_MASS_LOG_VAR = -20;

export const AutoencoderConfigSchema = ImageModelConfigSchema.extend({
  latent: z.number().int().min(1, 'latent must be at least 1').max(1024).default(32),
  encoderHidden: z.array(z.number().int().positive()).default([128]),
  decoderHidden: z.array(z.number().int().positive()).default([128]),
  /** Activation of the code layer: relu as the lecture's compression autoencoder, or sigmoid / linear. */
  codeActivation: z.enum(['relu', 'sigmoid', 'linear']).default('relu'),
  ...ConvDecoderFields,
}).strict();
export type AutoencoderConfig = z.infer<typeof AutoencoderConfigSchema>;

export class Autoencoder<C extends AutoencoderConfig = AutoencoderConfig> implements ImageModel {
  readonly name: string = 'ae';
  readonly params = new ParamSet();
  readonly latentDim: number;
  protected readonly encoder: Mlp;
  protected readonly decoder: ImageDecoder;

  constructor(
    readonly config: C,
    rng: Rng,
  ) {
    this.latentDim = config.latent;
    // Hidden layers are ReLU (the lecture's net). The encoder's last layer is linear and the code
    // activation is applied by `encode` (and the objective) on the linear output.
    this.encoder = new Mlp(this.params, 'encoder', [config.inputDim, ...config.encoderHidden, config.latent], rng);
    this.decoder = imageDecoder(this.params, config, config.latent, rng);
    addScaleParam(this.params, config.likelihood ?? 'bernoulli', config.imageChannels ?? 1, rng);
  }

  /** Mean −log p(x|logits) of the batch's clean images under the model's likelihood, in an objective. */
  protected pixelNll<T>(o: Ops<T>, logits: T): T {
    return pixelNll(o, this.config.likelihood ?? 'bernoulli', logits, o.input('x'), this.config.imageChannels ?? 1);
  }

  /** The code g(x), [B, latent]. */
  encode(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const pre = this.encoder.apply(x, false);
      const act = this.config.codeActivation;
      return act === 'relu' ? tf.relu(pre) : act === 'sigmoid' ? tf.sigmoid(pre) : pre;
    });
  }

  /** The code as a point mass (see POINT_MASS_LOG_VAR). */
  encodeImage(x: tf.Tensor2D): DiagGaussian {
    const code = this.encode(x);
    return new DiagGaussian(code, tf.fill(code.shape, POINT_MASS_LOG_VAR) as tf.Tensor2D);
  }

  decode(zs: tf.Tensor2D): tf.Tensor2D {
    return this.decoder.apply(zs);
  }

  /** Starts the decoder from the mean training image (its output bias set to the mean's logits), as the VAEs do. */
  initFromData(stats: DataStats): void {
    const b = this.decoder.outputBias();
    if (b.size !== stats.meanImage.length) return;
    const t = tf.tensor1d(stats.meanImage.map((p) => {
      const q = Math.min(1 - 1e-3, Math.max(1e-3, p));
      return Math.log(q / (1 - q));
    }));
    b.assign(t);
    t.dispose();
  }

  /** What the encoder sees during training: the clean images here; the denoising variant corrupts them. */
  protected trainingInput<T>(o: Ops<T>): T {
    return o.input('x');
  }

  /** Extra loss terms on the batch's codes (the sparse variant's penalty); none here. */
  protected codePenalty<T>(_o: Ops<T>, _code: T): { total: T; terms: Record<string, T> } | null {
    return null;
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const pre = this.encoder.run(o, this.trainingInput(o));
    const act = this.config.codeActivation;
    const code = act === 'relu' || act === 'sigmoid' ? o.unary(act, pre) : pre;
    // The target is always the clean image.
    const recon = this.pixelNll(o, this.decoder.run(o, code));
    const penalty = this.codePenalty(o, code);
    if (!penalty) return { total: recon, terms: { recon } };
    return { total: o.add(recon, penalty.total), terms: { recon, ...penalty.terms } };
  }
}
