/**
 * The bimodal deep autoencoder of lecture 002 (Ngiam et al. 2011, "Multimodal deep learning"): an
 * image path and a label path meet in one shared code layer, and two decoders reconstruct both
 * modalities from it. Training zeroes one modality's input in part of every batch — a third of the
 * rows see the image alone, a third the label alone, the rest both — while the targets are always
 * both, so the shared code learns to stand for the pair from either half:
 *
 *   code = act(E_x(m_x · x) + E_l(m_l · l)),   loss = −log p(x | D_x(code)) + w · ℓ(D_l(code), l).
 *
 * The sum of two linear projections of the two paths' last hidden layers is one dense layer on
 * their concatenation (Ngiam's shared layer), with the bias split in two. ℓ is the softmax cross
 * entropy for one-hot labels and the squared error for word vectors. The code is a point, served
 * as the autoencoders' point-mass Gaussian: the image alone gives `encodeImage`, the label alone
 * `encodeLabels` (and so generation); annotation decodes the label from the image alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { Mlp } from '../nn/mlp.js';
import type { Objective, Ops } from '../ops/types.js';
import { Autoencoder, AutoencoderConfigSchema, POINT_MASS_LOG_VAR } from './autoencoder.js';

const sizes = z.array(z.number().int().positive());
const fraction = z.number().min(0).max(1);

export const BimodalAeConfigSchema = AutoencoderConfigSchema.extend({
  latent: z.number().int().min(1, 'latent must be at least 1').max(1024).default(64),
  encoderHidden: sizes.default([512]),
  decoderHidden: sizes.default([512]),
  codeActivation: z.enum(['relu', 'sigmoid', 'linear']).default('sigmoid'),
  /** Hidden layers of the label path into the shared code. */
  labelHidden: sizes.default([64]),
  /** Hidden layers of the label decoder. */
  labelDecoderHidden: sizes.default([64]),
  /** 'onehot': softmax cross entropy on the label; 'words': squared error on the word vector (set by the run). */
  labelKind: z.enum(['onehot', 'words']).default('onehot'),
  /** Weight w of the label's reconstruction loss against the image's (hundreds of nats). */
  labelWeight: z.number().nonnegative().default(50),
  /** Shares of each batch's rows that see only the image, and only the label (the rest see both). */
  imageOnlyFraction: fraction.default(1 / 3),
  labelOnlyFraction: fraction.default(1 / 3),
}).strict();
export type BimodalAeConfig = z.infer<typeof BimodalAeConfigSchema>;

/** Sets the label loss from the run's label inputs (one-hot rows or word vectors). */
export function prepareBimodalRun(config: Record<string, unknown>, run: { classInputs?: { kind: string } }): Record<string, unknown> {
  if (config.labelKind !== undefined) return config;
  return { ...config, labelKind: run.classInputs?.kind === 'words' ? 'words' : 'onehot' };
}

export class BimodalAe extends Autoencoder<BimodalAeConfig> {
  override readonly name: string = 'bimodal-ae';
  private readonly labelEncoder: Mlp;
  private readonly labelDecoder: Mlp;
  private readonly labelDim: number;

  constructor(config: BimodalAeConfig, rng: Rng) {
    super(config, rng);
    // Checked here, not by a schema refinement, so the registry can still read the schema's fields.
    if (config.imageOnlyFraction + config.labelOnlyFraction > 1) {
      throw new ProbsemError(`imageOnlyFraction + labelOnlyFraction must be at most 1, got ${config.imageOnlyFraction} + ${config.labelOnlyFraction}`, 'BAD_OPTION');
    }
    this.labelDim = config.labelDim ?? config.numClasses;
    this.labelEncoder = new Mlp(this.params, 'labelEncoder', [this.labelDim, ...config.labelHidden, config.latent], rng);
    this.labelDecoder = new Mlp(this.params, 'labelDecoder', [config.latent, ...config.labelDecoderHidden, this.labelDim], rng);
  }

  private activate<T>(o: Ops<T>, pre: T): T {
    const act = this.config.codeActivation;
    return act === 'linear' ? pre : o.unary(act, pre);
  }

  override objective<T>(o: Ops<T>): Objective<T> {
    const { imageOnlyFraction: fi, labelOnlyFraction: fl } = this.config;
    // Per row [m_x, m_l]: which inputs it sees, drawn from the step's stream.
    const seen = o.host([o.rows, 2], [], (_v, ctx) => {
      const m = new Float32Array(ctx.rows * 2);
      for (let r = 0; r < ctx.rows; r++) {
        const u = ctx.rng.uniform();
        m[2 * r] = u < fi + fl && u >= fi ? 0 : 1;
        m[2 * r + 1] = u < fi ? 0 : 1;
      }
      return m;
    });
    const x = o.input('x');
    const y = o.input('y');
    const pre = o.add(this.encoder.run(o, o.mul(x, o.sliceCols(seen, 0, 1))), this.labelEncoder.run(o, o.mul(y, o.sliceCols(seen, 1, 1))));
    const code = this.activate(o, pre);
    const recon = this.pixelNll(o, this.decoder.run(o, code));
    const out = this.labelDecoder.run(o, code);
    const labelLoss =
      this.config.labelKind === 'onehot'
        ? o.mean(o.softmaxCrossEntropy(out, y))
        : o.affine(o.sum(o.unary('square', o.sub(out, y))), 1 / o.rows);
    return { total: o.add(recon, o.affine(labelLoss, this.config.labelWeight)), terms: { recon, labelLoss } };
  }

  /** The shared code of images and label inputs, either of which may be all zeros (absent). */
  private sharedCode(x: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const pre = tf.add(this.encoder.apply(x, false), this.labelEncoder.apply(y, false)) as tf.Tensor2D;
      const act = this.config.codeActivation;
      return act === 'relu' ? tf.relu(pre) : act === 'sigmoid' ? tf.sigmoid(pre) : pre;
    });
  }

  /** The code of images alone (label input zeroed). */
  override encode(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.sharedCode(x, tf.zeros([x.shape[0], this.labelDim])));
  }

  /** The code of label inputs alone (image zeroed), as a point mass: what generation decodes. */
  encodeLabels(y: tf.Tensor2D): DiagGaussian {
    const code = tf.tidy(() => this.sharedCode(tf.zeros([y.shape[0], this.config.inputDim]), y));
    return new DiagGaussian(code, tf.fill(code.shape, POINT_MASS_LOG_VAR) as tf.Tensor2D);
  }

  /** The label decoded from each image alone, [N, labelDim]: logits (one-hot) or a word vector. */
  decodeLabel(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const code = this.encode(x);
      return this.labelDecoder.apply(code, false);
    });
  }

  /**
   * Scores [N, C] of every label for images alone: log softmax of the decoded logits against the
   * one-hot rows (the log-probability of each class), or the cosine between the decoded word
   * vector and each label's vector — which scores labels never trained on as well (zero-shot).
   */
  scoreLabels(x: tf.Tensor2D, labelInputs: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const out = this.decodeLabel(x);
      if (this.config.labelKind === 'onehot') return tf.matMul(tf.logSoftmax(out), labelInputs, false, true);
      const unit = (t: tf.Tensor2D) => tf.div(t, tf.add(tf.norm(t, 2, 1, true), 1e-8)) as tf.Tensor2D;
      return tf.matMul(unit(out), unit(labelInputs), false, true);
    });
  }
}
