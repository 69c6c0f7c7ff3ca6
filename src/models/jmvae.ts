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
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { bernoulliLogLikelihood } from '../distributions/bernoulli.js';
import { DiagGaussian } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import { diagKlRows, sampleRows, sampleRowsBackward, softmaxCrossEntropyRows } from '../distributions/rows.js';
import { FastMlp, type FastParams, checkRows, concatRowsInto } from '../nn/fast.js';
import { Mlp } from '../nn/mlp.js';
import { type Batch, type FastProgram, type HostBatch, type LossResult, ImageModelConfigSchema, batchMean, splitMoments } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

const sizes = z.array(z.number().int().positive());

/** Options every joint (image + label) VAE here shares. */
export const JointVaeConfigSchema = ImageModelConfigSchema.extend({
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

/** Mean categorical negative log-likelihood of class indices under logits [B, C]. */
export function categoricalNll(logits: tf.Tensor2D, labels: Int32Array, numClasses: number): tf.Scalar {
  return tf.tidy(() => {
    const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses);
    return tf.neg(batchMean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1) as tf.Tensor1D)) as tf.Scalar;
  });
}

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

  protected prior(_batch: Batch): DiagGaussian {
    return DiagGaussian.standard(this.latentDim);
  }

  /** Mean Bernoulli NLL of the batch's images under decoder(z). */
  protected imageNll(zs: tf.Tensor2D, x: tf.Tensor2D): tf.Scalar {
    return tf.neg(batchMean(bernoulliLogLikelihood(this.decode(zs), x))) as tf.Scalar;
  }

  protected labelNll(zs: tf.Tensor2D, labels: Int32Array): tf.Scalar {
    return categoricalNll(this.decodeLabels(zs), labels, this.config.numClasses);
  }

  protected noise(batch: Batch): tf.Tensor2D {
    return normalTensor(batch.rng, [batch.x.shape[0], this.latentDim]) as tf.Tensor2D;
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

  loss(batch: Batch, step: number): LossResult {
    const joint = this.encodeJoint(batch.x, batch.y);
    const zs = joint.sample(this.noise(batch));
    const recon = this.imageNll(zs, batch.x);
    const labelNll = this.labelNll(zs, batch.labels);
    const klPrior = batchMean(kl(joint, this.prior(batch)));
    const klImage = batchMean(kl(joint, this.encodeImage(batch.x)));
    const klLabel = batchMean(kl(joint, this.encodeLabels(batch.y)));
    const total = tf.addN([
      recon,
      labelNll,
      tf.mul(klPrior, this.warmupWeight(step)),
      tf.mul(tf.add(klImage, klLabel), this.config.alpha),
    ]) as tf.Scalar;
    return { total, terms: { recon, labelNll, kl: klPrior, klImage, klLabel } };
  }

  /** The same objective on probsem's kernels (see nn/fast.ts). */
  fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const k = fp.kernels;
    const K = this.latentDim;
    const D = this.config.inputDim;
    const L = this.labelDim;
    const C = this.config.numClasses;
    const joint = new FastMlp(fp, this.jointEncoder, maxRows);
    const image = new FastMlp(fp, this.encoder, maxRows);
    const label = new FastMlp(fp, this.labelEncoder, maxRows);
    const decoder = new FastMlp(fp, this.decoder, maxRows);
    const labelDecoder = new FastMlp(fp, this.labelDecoder, maxRows);
    const xy = k.alloc(maxRows * (D + L));
    const x = k.alloc(maxRows * D);
    const y = k.alloc(maxRows * L);
    const zs = k.alloc(maxRows * K);
    const gLogits = k.alloc(maxRows * D);
    const gLabelLogits = k.alloc(maxRows * C);
    const gJoint = k.alloc(maxRows * 2 * K);
    const gImage = k.alloc(maxRows * 2 * K);
    const gLabel = k.alloc(maxRows * 2 * K);
    const noiseBuf = new Float32Array(maxRows * K);
    const alpha = this.config.alpha;
    return {
      run: (batch: HostBatch, rng: Rng, step: number) => {
        const rows = batch.rows;
        checkRows(rows, maxRows, this.name);
        if (batch.labelDim !== L) throw new ProbsemError(`label inputs have width ${batch.labelDim}, the model takes ${L}`, 'SHAPE');
        const xv = k.view(x);
        const yv = k.view(y);
        xv.set(batch.x.subarray(0, rows * D));
        yv.set(batch.y.subarray(0, rows * L));
        concatRowsInto(k, xy, batch.x, D, batch.y, L, rows);
        // z ~ q(z|x,l), drawn as `loss` draws it.
        const q = joint.forward(xy, rows).ptr >> 2;
        const eps = rng.fillNormal(noiseBuf.subarray(0, rows * K));
        sampleRows(k.heap(), q, eps, rows, K, zs.ptr >> 2);
        const recon = k.bernoulliLogits(decoder.forward(zs, rows), x, gLogits, null, rows * D, 1 / rows) / rows;
        const labelOut = labelDecoder.forward(zs, rows);
        const labelNll = softmaxCrossEntropyRows(k.heap(), labelOut.ptr >> 2, rows, C, batch.labels, 1 / rows, gLabelLogits.ptr >> 2) / rows;
        // dz from both decoders, then through the sample onto the joint encoder's moments.
        const dz = decoder.backward(zs, gLogits, rows, true)!;
        const dzLabel = labelDecoder.backward(zs, gLabelLogits, rows, true)!;
        const H = k.heap();
        const dzo = dz.ptr >> 2;
        const dlo = dzLabel.ptr >> 2;
        for (let i = 0; i < rows * K; i++) H[dzo + i] += H[dlo + i];
        sampleRowsBackward(H, q, eps, rows, K, dzo, gJoint.ptr >> 2);
        const qx = image.forward(x, rows).ptr >> 2;
        const ql = label.forward(y, rows).ptr >> 2;
        const w = this.warmupWeight(step);
        const common = { rows, dim: K, q, gq: gJoint.ptr >> 2, addToGq: true, addToGp: false };
        const h = k.heap();
        const klPrior = diagKlRows(h, { ...common, p: null, weight: w / rows, gp: null }) / rows;
        const klImage = diagKlRows(h, { ...common, p: qx, weight: alpha / rows, gp: gImage.ptr >> 2 }) / rows;
        const klLabel = diagKlRows(h, { ...common, p: ql, weight: alpha / rows, gp: gLabel.ptr >> 2 }) / rows;
        joint.backward(xy, gJoint, rows, false);
        image.backward(x, gImage, rows, false);
        label.backward(y, gLabel, rows, false);
        const loss = recon + labelNll + w * klPrior + alpha * (klImage + klLabel);
        return { loss, recon, labelNll, kl: klPrior, klImage, klLabel };
      },
    };
  }
}
