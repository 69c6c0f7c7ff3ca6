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
 */
import { z } from 'zod';
import { meanKl } from '../distributions/objective.js';
import type { Objective, Ops } from '../ops/types.js';
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

  objective<T>(o: Ops<T>): Objective<T> {
    const prior = this.priorTerm(o);
    // Joint ELBO.
    const joint = this.jointTerm(o);
    const zj = this.sample(o, joint);
    const recon = this.imageNll(o, zj);
    const labelNll = this.labelNll(o, zj);
    const klJoint = meanKl(o, joint, prior);
    // Image-only ELBO.
    const qx = this.posteriorTerm(o);
    const zx = this.sample(o, qx);
    const imageRecon = this.imageNll(o, zx);
    const imageKl = meanKl(o, qx, prior);
    // Label-only ELBO.
    const ql = this.labelTerm(o);
    const zl = this.sample(o, ql);
    const labelOnlyNll = this.labelNll(o, zl);
    const labelKl = meanKl(o, ql, prior);
    const { lambda1, lambda2 } = this.config;
    const total = [o.affine(labelNll, lambda1), klJoint, imageRecon, imageKl, o.affine(labelOnlyNll, lambda2), labelKl].reduce((acc, t) => o.add(acc, t), recon);
    return { total, terms: { recon, labelNll, kl: klJoint, imageRecon, imageKl, labelOnlyNll, labelKl } };
  }
}
