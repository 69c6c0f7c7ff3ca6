/**
 * The family every probsem generative model here belongs to: an MLP Gaussian image encoder
 * (optionally behind strided convolutions, `ConvEncoderFields`), an MLP Bernoulli decoder, and an
 * ELBO whose KL target (the "prior") each model chooses.
 */
import * as tf from '@tensorflow/tfjs-core';
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import { bernoulliLogLikelihood } from '../distributions/bernoulli.js';
import { diagKlRows, sampleRows, sampleRowsBackward } from '../distributions/rows.js';
import type { Buf } from '../core/wasm/kernels.js';
import { FastMlp, type FastParams, checkRows } from '../nn/fast.js';
import { ConvStack } from '../nn/conv.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { ProbsemError } from '../core/errors.js';
import { type Batch, type ConvEncoderConfig, type DataStats, type FastProgram, type HostBatch, type ImageModel, type ImageModelConfig, type LossResult, batchMean, splitMoments } from './base.js';

export interface ElboParts {
  /** Mean Bernoulli NLL of the batch (nats per image). */
  recon: tf.Scalar;
  /** Mean KL(q(z|x) ‖ prior). */
  kl: tf.Scalar;
  posterior: DiagGaussian;
  /** Decoder logits for the sampled z. */
  logits: tf.Tensor2D;
}

export abstract class EncoderDecoderModel<C extends ImageModelConfig> implements ImageModel {
  abstract readonly name: string;
  readonly params = new ParamSet();
  readonly latentDim: number;
  protected readonly encoder: Mlp;
  protected readonly decoder: Mlp;
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
    this.decoder = new Mlp(this.params, 'decoder', [k, ...config.decoderHidden, config.inputDim], rng);
  }

  /** The fast engine has no convolutions: a convolutional encoder trains on tfjs. */
  hasFastPath(): boolean {
    return this.encoderConv === null;
  }

  /** The image encoder's raw output for images x (moments before any split). */
  protected encoderOutput(x: tf.Tensor2D): tf.Tensor2D {
    if (!this.encoderConv) return this.encoder.apply(x, false);
    return this.encoder.apply(this.encoderConv.apply(x), true);
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

  /** The distribution the KL term pulls q(z|x) towards, for this batch. */
  protected abstract prior(batch: Batch): DiagGaussian;

  abstract loss(batch: Batch, step: number): LossResult;

  /** The fast path's ELBO machinery for this model (subclasses add their prior and terms). */
  protected fastElbo(fp: FastParams, maxRows: number): FastElbo {
    return new FastElbo(fp, this.encoder, this.decoder, this.latentDim, maxRows);
  }

  protected elbo(batch: Batch): ElboParts {
    const posterior = this.encodeImage(batch.x);
    const eps = normalTensor(batch.rng, [batch.x.shape[0], this.latentDim]) as tf.Tensor2D;
    const logits = this.decode(posterior.sample(eps));
    const recon = tf.neg(batchMean(bernoulliLogLikelihood(logits, batch.x))) as tf.Scalar;
    const klv = batchMean(kl(posterior, this.prior(batch)));
    return { recon, kl: klv, posterior, logits };
  }
}

/** The convolution stack a config asks for (`ConvEncoderFields`), or null. */
function convFront(params: ParamSet, config: ImageModelConfig & ConvEncoderConfig, rng: Rng): ConvStack | null {
  if (!config.encoderConv) return null;
  const height = config.imageHeight;
  if (!height || config.inputDim % height !== 0) {
    throw new ProbsemError(`a convolutional encoder needs imageHeight, a divisor of the ${config.inputDim} pixels (got ${String(height)})`, 'BAD_OPTION');
  }
  return new ConvStack(params, 'encoder', { height, width: config.inputDim / height }, config.encoderConv, config.encoderKernel ?? 5, rng);
}

/**
 * The ELBO of an encoder–decoder model on the fast path: image encoder, reparameterised sample,
 * decoder and Bernoulli reconstruction forward; then, once the caller has added any extra
 * gradient on the decoder's logits, decoder and encoder backward with the KL term against a
 * diagonal Gaussian prior. Losses are means over the batch, as in `elbo`.
 */
export class FastElbo {
  readonly encoder: FastMlp;
  readonly decoder: FastMlp;
  /** The batch's images, [rows, pixels]. */
  readonly x: Buf;
  /** Sampled latents, [rows, latent]. */
  readonly z: Buf;
  /** d(loss)/d(decoder logits), [rows, pixels]; `forward` writes the reconstruction part. */
  readonly gLogits: Buf;
  /** Pixel probabilities sigmoid(logits) of the last forward pass that asked for them. */
  readonly probs: Buf;
  /** d(loss)/d(encoder output), [rows, 2·latent]. */
  private readonly gEncoder: Buf;
  private eps: Float32Array = new Float32Array(0);
  private readonly noise: Float32Array;

  constructor(
    readonly fp: FastParams,
    encoder: Mlp,
    decoder: Mlp,
    readonly latent: number,
    readonly maxRows: number,
  ) {
    const k = fp.kernels;
    this.encoder = new FastMlp(fp, encoder, maxRows);
    this.decoder = new FastMlp(fp, decoder, maxRows);
    const pixels = encoder.sizes[0];
    this.x = k.alloc(maxRows * pixels);
    this.z = k.alloc(maxRows * latent);
    this.gLogits = k.alloc(maxRows * pixels);
    this.probs = k.alloc(maxRows * pixels);
    this.gEncoder = k.alloc(maxRows * 2 * latent);
    this.noise = new Float32Array(maxRows * latent);
  }

  /**
   * Encodes, samples z (noise from rng as `elbo` draws it), decodes; returns the mean
   * reconstruction NLL. withProbs: also leave sigmoid(logits) in `probs`.
   */
  forward(batch: HostBatch, rng: Rng, withProbs = false): number {
    const k = this.fp.kernels;
    const { rows, pixels } = batch;
    const K = this.latent;
    checkRows(rows, this.maxRows, 'encoder');
    k.view(this.x).set(batch.x.subarray(0, rows * pixels));
    const h = this.encoder.forward(this.x, rows);
    this.eps = rng.fillNormal(this.noise.subarray(0, rows * K));
    sampleRows(k.heap(), h.ptr >> 2, this.eps, rows, K, this.z.ptr >> 2);
    const logits = this.decoder.forward(this.z, rows);
    // −log p(x|z) = softplus(l) − x·l and its gradient sigmoid(l) − x, as batch means.
    const nll = k.bernoulliLogits(logits, this.x, this.gLogits, withProbs ? this.probs : null, rows * pixels, 1 / rows);
    return nll / rows;
  }

  /**
   * Backward through decoder and encoder, with weight · KL(q(z|x) ‖ prior) added. prior: per-row
   * [rows, 2·latent] moments (mean | log-variance) in kernel memory, or null for N(0, I).
   * gPrior, when given, receives d(weight · KL)/d(prior moments). meanGrad, when given, is an
   * extra gradient on the posterior means, [rows, latent] (a loss on the means such as TVAE's
   * triplet term). Returns the mean KL.
   */
  backward(rows: number, prior: Buf | null, weight: number, gPrior: Buf | null, meanGrad: Float32Array | null = null): number {
    const k = this.fp.kernels;
    const K = this.latent;
    const dz = this.decoder.backward(this.z, this.gLogits, rows, true) as Buf;
    const H = k.heap();
    const q = this.encoder.output.ptr >> 2;
    sampleRowsBackward(H, q, this.eps, rows, K, dz.ptr >> 2, this.gEncoder.ptr >> 2);
    const klSum = diagKlRows(H, {
      rows,
      dim: K,
      q,
      p: prior ? prior.ptr >> 2 : null,
      weight: weight / rows,
      gq: this.gEncoder.ptr >> 2,
      gp: gPrior ? gPrior.ptr >> 2 : null,
      addToGq: true,
      addToGp: false,
    });
    if (meanGrad) {
      const g = k.view(this.gEncoder);
      for (let r = 0; r < rows; r++) for (let j = 0; j < K; j++) g[r * 2 * K + j] += meanGrad[r * K + j];
    }
    this.encoder.backward(this.x, this.gEncoder, rows, false);
    return klSum / rows;
  }
}
