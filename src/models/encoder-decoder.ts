/**
 * The family every probsem generative model here belongs to: an MLP Gaussian image encoder, an
 * MLP Bernoulli decoder, and an ELBO whose KL target (the "prior") each model chooses.
 */
import * as tf from '@tensorflow/tfjs-core';
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import { bernoulliLogLikelihood } from '../distributions/bernoulli.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { type Batch, type DataStats, type ImageModel, type ImageModelConfig, type LossResult, batchMean, splitMoments } from './base.js';

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

  constructor(
    readonly config: C,
    rng: Rng,
  ) {
    const k = config.latent;
    this.latentDim = k;
    this.encoder = new Mlp(this.params, 'encoder', [config.inputDim, ...config.encoderHidden, 2 * k], rng);
    this.decoder = new Mlp(this.params, 'decoder', [k, ...config.decoderHidden, config.inputDim], rng);
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
    const [m, lv] = splitMoments(this.encoder.apply(x, false), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  decode(zs: tf.Tensor2D): tf.Tensor2D {
    return this.decoder.apply(zs);
  }

  /** The distribution the KL term pulls q(z|x) towards, for this batch. */
  protected abstract prior(batch: Batch): DiagGaussian;

  abstract loss(batch: Batch, step: number): LossResult;

  protected elbo(batch: Batch): ElboParts {
    const posterior = this.encodeImage(batch.x);
    const eps = normalTensor(batch.rng, [batch.x.shape[0], this.latentDim]) as tf.Tensor2D;
    const logits = this.decode(posterior.sample(eps));
    const recon = tf.neg(batchMean(bernoulliLogLikelihood(logits, batch.x))) as tf.Scalar;
    const klv = batchMean(kl(posterior, this.prior(batch)));
    return { recon, kl: klv, posterior, logits };
  }
}
