/**
 * TrELBO, the triple ELBO of Vedantam et al. (2018) (the PSE paper's eq. 6): the sum of three
 * ELBOs sharing one image decoder p(x|z) and one label decoder p(l|z), all with prior N(0, I):
 *
 *   joint:  E_q(z|x,l)[log p(x|z) + λ1 log p(l|z)] − KL(q(z|x,l) ‖ p(z))
 *   image:  E_q(z|x)[log p(x|z)]                   − KL(q(z|x)   ‖ p(z))
 *   label:  E_q(z|l)[λ2 log p(l|z)]                − KL(q(z|l)   ‖ p(z))
 *
 * trained jointly, every term in every step, as Vedantam et al.'s reference code does (not the
 * two-stage variant with frozen decoders of some re-implementations; the PSE paper also uses no
 * inference-network freeze). Each ELBO draws its own z.
 *
 * The joint encoder is a separate network, not a product of the unimodal experts: an MLP 512-64
 * on the image concatenated with the label input, as the PSE paper's appendix A describes for its
 * TrELBO (Vedantam et al. use products of experts only to handle missing attributes, which
 * one-hot single labels never have). Networks otherwise as JMVAE (`jmvae.ts`): unimodal image
 * encoder 512-64, label encoder one dense layer, image decoder 64-512, label decoder one dense
 * layer.
 *
 * λ1 = λ2 = 1 by default: the PSE paper sets hyper-parameters alike across models and reports
 * its TrELBO figures with λ1 = 1 (it notes larger λ1 generate better, as Vedantam et al. found;
 * they used label-likelihood weights far above 1).
 *
 * Evaluation uses q(z|x) (`encodeImage`) and q(z|l) (`encodeLabels`), as for PSE and JMVAE.
 *
 * On the fast engine (`fastProgram`) each shared decoder runs once per step on its two z batches
 * stacked row-wise, so one backward pass sums both ELBOs' gradients into its parameters.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';
import { kl } from '../distributions/kl.js';
import { diagKlRows, sampleRows, sampleRowsBackward, softmaxCrossEntropyRows } from '../distributions/rows.js';
import { FastMlp, type FastParams, checkRows, concatRowsInto, slice } from '../nn/fast.js';
import { type Batch, type FastProgram, type HostBatch, type LossResult, batchMean } from './base.js';
import { JointVae, JointVaeConfigSchema } from './jmvae.js';

export const TrelboConfigSchema = JointVaeConfigSchema.extend({
  /** Weight of log p(l|z) in the joint ELBO. */
  lambda1: z.number().nonnegative().default(1),
  /** Weight of log p(l|z) in the label-only ELBO. */
  lambda2: z.number().nonnegative().default(1),
}).strict();
export type TrelboConfig = z.infer<typeof TrelboConfigSchema>;

export class Trelbo extends JointVae<TrelboConfig> {
  readonly name = 'trelbo';

  loss(batch: Batch, _step: number): LossResult {
    const prior = this.prior(batch);
    // Joint ELBO.
    const joint = this.encodeJoint(batch.x, batch.y);
    const zj = joint.sample(this.noise(batch));
    const recon = this.imageNll(zj, batch.x);
    const labelNll = this.labelNll(zj, batch.labels);
    const klJoint = batchMean(kl(joint, prior));
    // Image-only ELBO.
    const qx = this.encodeImage(batch.x);
    const zx = qx.sample(this.noise(batch));
    const imageRecon = this.imageNll(zx, batch.x);
    const imageKl = batchMean(kl(qx, prior));
    // Label-only ELBO.
    const ql = this.encodeLabels(batch.y);
    const zl = ql.sample(this.noise(batch));
    const labelOnlyNll = this.labelNll(zl, batch.labels);
    const labelKl = batchMean(kl(ql, prior));

    const total = tf.addN([
      recon,
      tf.mul(labelNll, this.config.lambda1),
      klJoint,
      imageRecon,
      imageKl,
      tf.mul(labelOnlyNll, this.config.lambda2),
      labelKl,
    ]) as tf.Scalar;
    return { total, terms: { recon, labelNll, kl: klJoint, imageRecon, imageKl, labelOnlyNll, labelKl } };
  }

  /**
   * The same objective on probsem's kernels (see nn/fast.ts). The three z batches sit end to end
   * in one buffer, [zx | zj | zl]: the image decoder runs once on [zx; zj] and the label decoder
   * once on [zj; zl], as networks of twice the batch, so each backward pass sums the gradients of
   * both ELBOs that use the decoder (its dz for zj is then added across the two decoders).
   */
  fastProgram(fp: FastParams, maxRows: number): FastProgram {
    const k = fp.kernels;
    const K = this.latentDim;
    const D = this.config.inputDim;
    const L = this.labelDim;
    const C = this.config.numClasses;
    const { lambda1, lambda2 } = this.config;
    const joint = new FastMlp(fp, this.jointEncoder, maxRows);
    const image = new FastMlp(fp, this.encoder, maxRows);
    const label = new FastMlp(fp, this.labelEncoder, maxRows);
    const decoder = new FastMlp(fp, this.decoder, 2 * maxRows);
    const labelDecoder = new FastMlp(fp, this.labelDecoder, 2 * maxRows);
    const xy = k.alloc(maxRows * (D + L));
    const x = k.alloc(maxRows * D);
    const y = k.alloc(maxRows * L);
    const zs = k.alloc(3 * maxRows * K);
    const gLogits = k.alloc(2 * maxRows * D);
    const gLabelLogits = k.alloc(2 * maxRows * C);
    const gJoint = k.alloc(maxRows * 2 * K);
    const gImage = k.alloc(maxRows * 2 * K);
    const gLabel = k.alloc(maxRows * 2 * K);
    const noiseBuf = new Float32Array(3 * maxRows * K);
    return {
      run: (batch: HostBatch, rng: Rng) => {
        const rows = batch.rows;
        checkRows(rows, maxRows, this.name);
        if (batch.labelDim !== L) throw new ProbsemError(`label inputs have width ${batch.labelDim}, the model takes ${L}`, 'SHAPE');
        k.view(x).set(batch.x.subarray(0, rows * D));
        k.view(y).set(batch.y.subarray(0, rows * L));
        concatRowsInto(k, xy, batch.x, D, batch.y, L, rows);
        // Noise in the order `loss` draws it: joint, image, label.
        const n = rows * K;
        const epsJ = rng.fillNormal(noiseBuf.subarray(0, n));
        const epsX = rng.fillNormal(noiseBuf.subarray(n, 2 * n));
        const epsL = rng.fillNormal(noiseBuf.subarray(2 * n, 3 * n));
        const qj = joint.forward(xy, rows).ptr >> 2;
        const qx = image.forward(x, rows).ptr >> 2;
        const ql = label.forward(y, rows).ptr >> 2;
        const z0 = zs.ptr >> 2;
        let h = k.heap();
        sampleRows(h, qx, epsX, rows, K, z0);
        sampleRows(h, qj, epsJ, rows, K, z0 + n);
        sampleRows(h, ql, epsL, rows, K, z0 + 2 * n);
        const zImage = slice(zs, 0, 2 * n);
        const zLabel = slice(zs, n, 2 * n);
        // Image decoder on [zx; zj]: the image-only ELBO's reconstruction, then the joint one's.
        const logits = decoder.forward(zImage, 2 * rows);
        const m = rows * D;
        const imageRecon = k.bernoulliLogits(slice(logits, 0, m), x, slice(gLogits, 0, m), null, m, 1 / rows) / rows;
        const recon = k.bernoulliLogits(slice(logits, m, m), x, slice(gLogits, m, m), null, m, 1 / rows) / rows;
        // Label decoder on [zj; zl]: λ1 log p(l|zj) of the joint ELBO, λ2 log p(l|zl) of the label one.
        const labelOut = labelDecoder.forward(zLabel, 2 * rows).ptr >> 2;
        const gl = gLabelLogits.ptr >> 2;
        h = k.heap();
        const labelNll = softmaxCrossEntropyRows(h, labelOut, rows, C, batch.labels, lambda1 / rows, gl) / rows;
        const labelOnlyNll = softmaxCrossEntropyRows(h, labelOut + rows * C, rows, C, batch.labels, lambda2 / rows, gl + rows * C) / rows;
        const dzImage = decoder.backward(zImage, gLogits, 2 * rows, true)!.ptr >> 2;
        const dzLabel = labelDecoder.backward(zLabel, gLabelLogits, 2 * rows, true)!.ptr >> 2;
        h = k.heap();
        // zj reaches both decoders: its gradient is the sum.
        const dzj = dzImage + n;
        for (let i = 0; i < n; i++) h[dzj + i] += h[dzLabel + i];
        sampleRowsBackward(h, qj, epsJ, rows, K, dzj, gJoint.ptr >> 2);
        sampleRowsBackward(h, qx, epsX, rows, K, dzImage, gImage.ptr >> 2);
        sampleRowsBackward(h, ql, epsL, rows, K, dzLabel + n, gLabel.ptr >> 2);
        const klToPrior = (q: number, gq: number) =>
          diagKlRows(h, { rows, dim: K, q, p: null, weight: 1 / rows, gq: gq >> 2, gp: null, addToGq: true, addToGp: false }) / rows;
        const klJoint = klToPrior(qj, gJoint.ptr);
        const imageKl = klToPrior(qx, gImage.ptr);
        const labelKl = klToPrior(ql, gLabel.ptr);
        joint.backward(xy, gJoint, rows, false);
        image.backward(x, gImage, rows, false);
        label.backward(y, gLabel, rows, false);
        const loss = recon + lambda1 * labelNll + klJoint + imageRecon + imageKl + lambda2 * labelOnlyNll + labelKl;
        return { loss, recon, labelNll, kl: klJoint, imageRecon, imageKl, labelOnlyNll, labelKl };
      },
    };
  }
}
