/**
 * A mixture of products of experts (Sutter, Daunhawer & Vogt 2021, "MoPoE"): the posterior of the
 * image and the label is the equal-weight mixture, over the subsets S ∈ {{x}, {l}, {x, l}}, of the
 * products of experts q_S(z) ∝ N(0, I) · Π_{i∈S} q̃(z | i) — the experts and decoders of `poe.ts`.
 * Its ELBO bounds the mixture's KL by the subsets' mean KL and, unlike MVAE's subsampled ELBOs,
 * reconstructs every modality from every subset's sample, so each unimodal posterior learns to
 * generate the other modality:
 *
 *   (1/3) Σ_S [ −log p(x|z_S) − w · log p(l|z_S) + KL(q_S ‖ N(0, I)) ],   z_S ~ q_S.
 *
 * Evaluation is PoE's: q(z|x) and q(z|l) are the single-expert subsets' products with the prior.
 */
import type { Rng } from '../core/random.js';
import { diagFromMoments, meanKl, productOfExperts, sampleTerm } from '../distributions/objective.js';
import type { Objective, Ops } from '../ops/types.js';
import { Poe, PoeConfigSchema, type PoeConfig } from './poe.js';

export const MopoeConfigSchema = PoeConfigSchema;
export type MopoeConfig = PoeConfig;

export class Mopoe extends Poe {
  override readonly name = 'mopoe';

  constructor(config: MopoeConfig, rng: Rng) {
    super(config, rng);
  }

  override objective<T>(o: Ops<T>): Objective<T> {
    const k = this.latentDim;
    const imageExpert = diagFromMoments(o, this.runEncoder(o, o.input('x')), k);
    const labelExpert = diagFromMoments(o, this.labelEncoder.run(o, o.input('y')), k);
    const prior = this.priorTerm(o);
    const subset = (experts: (typeof imageExpert)[]) => {
      const q = productOfExperts(o, experts);
      return { kl: meanKl(o, q, prior), ...this.reconstructBoth(o, sampleTerm(o, q, o.normal(k))) };
    };
    const parts = [subset([imageExpert, labelExpert]), subset([imageExpert]), subset([labelExpert])];
    // Cross-modal terms: the image from the label alone, the label from the image alone.
    return this.mixtureObjective(o, parts, { imageFromLabel: parts[2].recon, labelFromImage: parts[1].labelNll });
  }
}
