/** VAE and β-VAE: E[log p(x|z)] − β·KL(q(z|x) ‖ N(0, I)). */
import { z } from 'zod';
import type { GaussianTerm } from '../distributions/objective.js';
import type { Objective, Ops } from '../ops/types.js';
import { ConvEncoderFields, ImageModelConfigSchema } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

export const VaeConfigSchema = ImageModelConfigSchema.extend({
  ...ConvEncoderFields,
  beta: z.number().positive().default(1),
}).strict();
export type VaeConfig = z.infer<typeof VaeConfigSchema>;

export class Vae extends EncoderDecoderModel<VaeConfig> {
  readonly name: string = 'vae';

  protected priorTerm<T>(_o: Ops<T>): GaussianTerm<T> {
    return { kind: 'standard', dim: this.latentDim };
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const { recon, kl } = this.elboTerms(o);
    return { total: o.add(recon, o.affine(kl, this.config.beta)), terms: { recon, kl } };
  }
}
