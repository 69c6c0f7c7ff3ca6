/**
 * Deterministic autoencoders (lecture 003): an MLP encoder g(x) = z, an MLP decoder h(z) giving
 * Bernoulli logits, and the reconstruction loss −log p(x | h(g(x))) in nats per image, the same
 * unit as the VAEs' reconstruction term so the numbers compare. This file holds the compression
 * autoencoder (`ae`, 784-128-32 by default) and the base its denoising and sparse variants extend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { bernoulliLogLikelihood } from '../distributions/bernoulli.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { FastMlp, type FastParams, checkRows } from '../nn/fast.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { type Batch, type DataStats, type FastProgram, type HostBatch, type ImageModel, type LossResult, ImageModelConfigSchema, batchMean } from './base.js';

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
}).strict();
export type AutoencoderConfig = z.infer<typeof AutoencoderConfigSchema>;

export class Autoencoder<C extends AutoencoderConfig = AutoencoderConfig> implements ImageModel {
  readonly name: string = 'ae';
  readonly params = new ParamSet();
  readonly latentDim: number;
  protected readonly encoder: Mlp;
  protected readonly decoder: Mlp;

  constructor(
    readonly config: C,
    rng: Rng,
  ) {
    this.latentDim = config.latent;
    // Hidden layers are ReLU (the lecture's net). The encoder's last layer is linear and the code
    // activation is applied by `encode`, so the fast path's MLPs (ReLU/linear only) run it too.
    this.encoder = new Mlp(this.params, 'encoder', [config.inputDim, ...config.encoderHidden, config.latent], rng);
    this.decoder = new Mlp(this.params, 'decoder', [config.latent, ...config.decoderHidden, config.inputDim], rng);
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
  protected trainingInput(batch: Batch): tf.Tensor2D {
    return batch.x;
  }

  /** The same input as `trainingInput`, on plain rows for the fast path (same draws from `rng`). */
  protected hostTrainingInput(x: Float32Array, _rng: Rng): Float32Array {
    return x;
  }

  /** Extra loss terms on the batch's codes (the sparse variant's penalty); none here. */
  protected codePenalty(_code: tf.Tensor2D): { total: tf.Scalar; terms: Record<string, tf.Scalar> } | null {
    return null;
  }

  /**
   * `codePenalty` on the fast path: codes [rows, latent] as plain rows; adds d(weighted penalty)/d(code)
   * to `gCode` and returns the weighted penalty (added to the loss) and the same terms. Null: none.
   */
  protected hostCodePenalty(_code: Float32Array, _rows: number, _gCode: Float32Array): { total: number; terms: Record<string, number> } | null {
    return null;
  }

  loss(batch: Batch, _step: number): LossResult {
    const code = this.encode(this.trainingInput(batch));
    // The target is always the clean image.
    const recon = tf.neg(batchMean(bernoulliLogLikelihood(this.decode(code), batch.x))) as tf.Scalar;
    const penalty = this.codePenalty(code);
    if (!penalty) return { total: recon, terms: { recon } };
    return { total: tf.add(recon, penalty.total) as tf.Scalar, terms: { recon, ...penalty.terms } };
  }
  /**
   * The loss and its gradient on probsem's kernels: the encoder's and decoder's products run there;
   * the code activation, its gradient and any code penalty act on the small [rows, latent] code
   * in JavaScript.
   */
  fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const k = fp.kernels;
    const pixels = this.config.inputDim;
    const K = this.latentDim;
    const act = this.config.codeActivation;
    const encoder = new FastMlp(fp, this.encoder, maxRows);
    const decoder = new FastMlp(fp, this.decoder, maxRows);
    const input = k.alloc(maxRows * pixels);
    const target = k.alloc(maxRows * pixels);
    const code = k.alloc(maxRows * K);
    const gLogits = k.alloc(maxRows * pixels);
    const gCode = new Float32Array(maxRows * K);
    return {
      run: (batch: HostBatch, rng: Rng) => {
        const { rows } = batch;
        checkRows(rows, maxRows, this.name);
        const n = rows * pixels;
        const x = batch.x.subarray(0, n);
        k.view(target).set(x);
        k.view(input).set(this.hostTrainingInput(x, rng));
        const pre = encoder.forward(input, rows);
        // Views are taken after each kernel call: a call may grow kernel memory and detach them.
        const preV = k.view(pre).subarray(0, rows * K);
        const codeV = k.view(code).subarray(0, rows * K);
        for (let i = 0; i < preV.length; i++) {
          const v = preV[i];
          codeV[i] = act === 'relu' ? (v > 0 ? v : 0) : act === 'sigmoid' ? 1 / (1 + Math.exp(-v)) : v;
        }
        const g = gCode.subarray(0, rows * K);
        g.fill(0);
        const penalty = this.hostCodePenalty(codeV, rows, g);
        const logits = decoder.forward(code, rows);
        const recon = k.bernoulliLogits(logits, target, gLogits, null, n, 1 / rows) / rows;
        const dCode = decoder.backward(code, gLogits, rows, true)!;
        const dV = k.view(dCode).subarray(0, rows * K);
        const cV = k.view(code).subarray(0, rows * K);
        for (let i = 0; i < dV.length; i++) {
          const d = dV[i] + g[i];
          const c = cV[i];
          dV[i] = act === 'relu' ? (c > 0 ? d : 0) : act === 'sigmoid' ? d * c * (1 - c) : d;
        }
        encoder.backward(input, dCode, rows, false);
        if (!penalty) return { loss: recon, recon };
        return { loss: recon + penalty.total, recon, ...penalty.terms };
      },
    };
  }
}
