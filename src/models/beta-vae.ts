/**
 * β-VAE (Higgins et al. 2017) under its own name: the `vae` model with β = 4 by default
 * (−log p(x|z) + β·KL(q(z|x) ‖ N(0, I))). `vae --beta X` trains the same objective; this entry
 * exists so runs and benches can name the baseline, and its runs resume and load as `beta-vae`.
 */
import { z } from 'zod';
import { Vae, VaeConfigSchema } from './vae.js';

export const BetaVaeConfigSchema = VaeConfigSchema.extend({
  beta: z.number().positive().default(4),
}).strict();
export type BetaVaeConfig = z.infer<typeof BetaVaeConfigSchema>;

export class BetaVae extends Vae {
  override readonly name: string = 'beta-vae';
}
