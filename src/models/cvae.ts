/**
 * CVAE (Kingma et al. 2014; Sohn et al. 2015; the PSE paper's eq. 4): the encoder sees the image
 * concatenated with its label input, q(z|x,l); the decoder sees z concatenated with the label
 * input, p(x|z,l); every label shares the prior N(0, I). Minimised: Bernoulli NLL +
 * KL(q(z|x,l) ‖ N(0, I)). Sizes as in the paper's appendix A: encoder MLP 512-64 on x ⊕ l,
 * decoder MLP 64-512 on z ⊕ l, ReLU.
 *
 * The learned part of the latent space carries no label information, so there is no q(z|l) and no
 * annotation. It generates for a label by decoding z ~ N(0, I) with that label (`generateLogits`)
 * and reconstructs an image with the image's own label (`reconstructLogits`). The label-free
 * `encodeImage` / `decode` of the ImageModel interface cannot work and say so.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { diagFromMoments, meanKl, sampleTerm } from '../distributions/objective.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import type { Objective, Ops } from '../ops/types.js';
import { ConvDecoderFields, type DataStats, type ImageModel, ImageModelConfigSchema, splitMoments } from './base.js';
import { imageDecoder } from './encoder-decoder.js';
import type { ImageDecoder } from '../nn/conv.js';
import { addScaleParam, pixelNll } from '../distributions/pixel-likelihood.js';

export const CvaeConfigSchema = ImageModelConfigSchema.extend({ ...ConvDecoderFields }).strict();
export type CvaeConfig = z.infer<typeof CvaeConfigSchema>;

/** Sets a decoder's output bias to the logit of the mean training image (decoders start from the average image). */
export function initBiasFromMeanImage(bias: tf.Variable, meanImage: Float32Array): void {
  if (bias.size !== meanImage.length) return;
  const logits = meanImage.map((p) => {
    const q = Math.min(1 - 1e-3, Math.max(1e-3, p));
    return Math.log(q / (1 - q));
  });
  const t = tf.tensor1d(logits);
  bias.assign(t);
  t.dispose();
}

export class Cvae implements ImageModel {
  readonly name = 'cvae';
  readonly params = new ParamSet();
  readonly latentDim: number;
  readonly labelDim: number;
  private readonly encoder: Mlp;
  private readonly decoder: ImageDecoder;

  constructor(
    readonly config: CvaeConfig,
    rng: Rng,
  ) {
    const k = config.latent;
    this.latentDim = k;
    this.labelDim = config.labelDim ?? config.numClasses;
    this.encoder = new Mlp(this.params, 'encoder', [config.inputDim + this.labelDim, ...config.encoderHidden, 2 * k], rng);
    this.decoder = imageDecoder(this.params, config, k + this.labelDim, rng);
    addScaleParam(this.params, config.likelihood ?? 'bernoulli', config.imageChannels ?? 1, rng);
  }

  initFromData(stats: DataStats): void {
    initBiasFromMeanImage(this.decoder.outputBias(), stats.meanImage);
  }

  /** q(z|x,l) for images x [N, pixels] and their label inputs y [N, labelDim]. */
  encodeWithLabels(x: tf.Tensor2D, y: tf.Tensor2D): DiagGaussian {
    this.checkLabels(y, x.shape[0]);
    const [m, lv] = splitMoments(this.encoder.apply(tf.concat([x, y], 1), false), this.latentDim);
    return new DiagGaussian(m, lv);
  }

  /** Bernoulli logits of p(x|z,l). */
  decodeWithLabels(zs: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D {
    this.checkLabels(y, zs.shape[0]);
    return this.decoder.apply(tf.concat([zs, y], 1));
  }

  encodeImage(_x: tf.Tensor2D): DiagGaussian {
    throw new ProbsemError('a cvae encodes an image only together with its label (q(z|x,l)): use reconstructLogits(x, y, eps)', 'BAD_OPTION');
  }

  decode(_z: tf.Tensor2D): tf.Tensor2D {
    throw new ProbsemError('a cvae decodes z only together with a label (p(x|z,l)): use generateLogits(y, eps)', 'BAD_OPTION');
  }

  generateLogits(y: tf.Tensor2D, eps: tf.Tensor2D): tf.Tensor2D {
    return this.decodeWithLabels(eps, y);
  }

  reconstructLogits(x: tf.Tensor2D, y: tf.Tensor2D, eps: tf.Tensor2D | null): tf.Tensor2D {
    return tf.tidy(() => {
      const q = this.encodeWithLabels(x, y);
      return this.decodeWithLabels(eps ? q.sample(eps) : q.mean, y);
    });
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const y = o.input('y');
    const q = diagFromMoments(o, this.encoder.run(o, o.concatCols([o.input('x'), y])), this.latentDim);
    const zs = sampleTerm(o, q, o.normal(this.latentDim));
    const recon = pixelNll(o, this.config.likelihood ?? 'bernoulli', this.decoder.run(o, o.concatCols([zs, y])), o.input('x'), this.config.imageChannels ?? 1);
    const klv = meanKl(o, q, { kind: 'standard', dim: this.latentDim });
    return { total: o.add(recon, klv), terms: { recon, kl: klv } };
  }

  private checkLabels(y: tf.Tensor2D, rows: number): void {
    if (y.shape.length !== 2 || y.shape[1] !== this.labelDim || y.shape[0] !== rows) {
      throw new ProbsemError(`cvae: label inputs of shape [${y.shape}] do not fit ${rows} rows of width ${this.labelDim}`, 'BAD_OPTION');
    }
  }
}
