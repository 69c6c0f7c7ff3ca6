/**
 * PSE*: PSE plus a classifier on the reconstructed image, adding E[log p(l|z)] (cross-entropy for
 * one-hot labels) so the decoder gets a discriminative signal about the label it draws.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { softmaxCrossEntropyRows } from '../distributions/rows.js';
import { FastMlp, type FastParams } from '../nn/fast.js';
import { Mlp } from '../nn/mlp.js';
import { type Batch, type FastProgram, type HostBatch, type LossResult, batchMean } from './base.js';
import { Pse, PseConfigSchema } from './pse.js';

export const PseStarConfigSchema = PseConfigSchema.extend({
  classifierHidden: z.array(z.number().int().positive()).default([512, 64]),
  /**
   * Weight of the classification term. The paper's objective is weight 1; 30 gives the decoder a
   * signal comparable to the KL term and measurably better annotation and generation (docs/results.md).
   */
  classifierWeight: z.number().nonnegative().default(30),
}).strict();
export type PseStarConfig = z.infer<typeof PseStarConfigSchema>;

export class PseStar extends Pse<PseStarConfig> {
  override readonly name: string = 'pse-star';
  protected readonly classifier: Mlp;

  constructor(config: PseStarConfig, rng: Rng) {
    super(config, rng);
    this.classifier = new Mlp(this.params, 'classifier', [config.inputDim, ...config.classifierHidden, config.numClasses], rng);
  }

  /** Class logits for images (grey values in [0, 1]). */
  classify(x: tf.Tensor2D): tf.Tensor2D {
    return this.classifier.apply(x);
  }

  override loss(batch: Batch, _step: number): LossResult {
    const { recon, kl, logits } = this.elbo(batch);
    const classLogits = this.classify(tf.sigmoid(logits));
    const onehot = tf.oneHot(tf.tensor1d(batch.labels, 'int32'), this.config.numClasses);
    const ce = tf.neg(batchMean(tf.sum(tf.mul(onehot, tf.logSoftmax(classLogits)), 1) as tf.Tensor1D)) as tf.Scalar;
    const total = tf.add(tf.add(recon, kl), tf.mul(ce, this.config.classifierWeight)) as tf.Scalar;
    return { total, terms: { recon, kl, classifier: ce } };
  }

  override fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const k = fp.kernels;
    const { elbo, klAgainstLabels } = this.fastParts(fp, maxRows);
    const classifier = new FastMlp(fp, this.classifier, maxRows);
    const pixels = this.config.inputDim;
    const C = this.config.numClasses;
    const gClass = k.alloc(maxRows * C);
    const weight = this.config.classifierWeight;
    return {
      run: (batch: HostBatch, rng: Rng) => {
        const rows = batch.rows;
        const recon = elbo.forward(batch, rng, true);
        const probs = elbo.probs;
        const out = classifier.forward(probs, rows);
        // Cross-entropy of the classifier on the reconstruction, and its softmax gradient.
        const ce = softmaxCrossEntropyRows(k.heap(), out.ptr >> 2, rows, C, batch.labels, weight / rows, gClass.ptr >> 2) / rows;
        // Through the classifier to its input, then through the sigmoid onto the logits' gradient.
        const gProbs = classifier.backward(probs, gClass, rows, true) as typeof gClass;
        k.sigmoidBackwardAdd(elbo.gLogits, gProbs, probs, rows * pixels);
        const kl = klAgainstLabels(batch);
        return { loss: recon + kl + weight * ce, recon, kl, classifier: ce };
      },
    };
  }
}
