/** Model registry: name → config schema and factory. */
import type { ZodTypeAny } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import type { Trainable } from './base.js';
import { Vae, VaeConfigSchema } from './vae.js';
import { Pse, PseConfigSchema, preparePseRun } from './pse.js';
import { PseStar, PseStarConfigSchema } from './pse-star.js';
import { Classifier, ClassifierConfigSchema } from './classifier.js';
import { BetaVae, BetaVaeConfigSchema } from './beta-vae.js';
import { Cvae, CvaeConfigSchema } from './cvae.js';
import { Jmvae, JmvaeConfigSchema } from './jmvae.js';
import { Trelbo, TrelboConfigSchema } from './trelbo.js';
import { Scan, ScanConfigSchema, prepareScanRun } from './scan.js';
import { Tvae, TvaeConfigSchema } from './tvae.js';
import { Informed, InformedConfigSchema, prepareInformedRun } from './informed.js';
import { Autoencoder, AutoencoderConfigSchema } from './autoencoder.js';
import { DenoisingAe, DenoisingAeConfigSchema } from './denoising-ae.js';
import { SparseAe, SparseAeConfigSchema } from './sparse-ae.js';
import { Poe, PoeConfigSchema } from './poe.js';

export interface ModelEntry {
  schema: ZodTypeAny;
  create(config: unknown, rng: Rng): Trainable;
  description: string;
  /**
   * Completes or checks a config for a training run of `steps` steps before the model is built
   * (e.g. SCAN's stage split); trainRun calls it when present.
   */
  prepareRun?(
    config: Record<string, unknown>,
    run: { steps: number; workers?: number; classInputs?: { rows: Float32Array; width: number; kind: string } },
  ): Record<string, unknown>;
}

const registry = new Map<string, ModelEntry>();

export function registerModel(name: string, entry: ModelEntry): void {
  registry.set(name, entry);
}

export function modelNames(): string[] {
  return [...registry.keys()];
}

export function getModelEntry(name: string): ModelEntry {
  const e = registry.get(name);
  if (!e) {
    throw new ProbsemError(`unknown model '${name}': choose one of ${modelNames().join(', ')}`, 'BAD_OPTION');
  }
  return e;
}

/** Validates `config` against the model's schema (filling defaults) and builds the model. */
export function createModel(name: string, config: unknown, seed: number): Trainable {
  const entry = getModelEntry(name);
  const parsed = entry.schema.safeParse(config);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ');
    throw new ProbsemError(`invalid ${name} config: ${msg}`, 'BAD_OPTION');
  }
  return entry.create(parsed.data, Rng.for(seed, 'init', name));
}

registerModel('vae', {
  schema: VaeConfigSchema,
  create: (c, rng) => new Vae(c as never, rng),
  description: 'VAE / β-VAE with an N(0, I) prior',
});
registerModel('pse', {
  schema: PseConfigSchema,
  create: (c, rng) => new Pse(c as never, rng),
  description: 'PSE: KL against the label encoder q(z|l)',
  prepareRun: preparePseRun,
});
registerModel('pse-star', {
  schema: PseStarConfigSchema,
  create: (c, rng) => new PseStar(c as never, rng),
  description: 'PSE*: PSE plus a classifier on the reconstruction',
  prepareRun: preparePseRun,
});
registerModel('beta-vae', {
  schema: BetaVaeConfigSchema,
  create: (c, rng) => new BetaVae(c as never, rng),
  description: 'β-VAE (β = 4 by default) with an N(0, I) prior',
});
registerModel('cvae', {
  schema: CvaeConfigSchema,
  create: (c, rng) => new Cvae(c as never, rng),
  description: 'CVAE: encoder on image ⊕ label, decoder on z ⊕ label, N(0, I) prior',
});
registerModel('jmvae', {
  schema: JmvaeConfigSchema,
  create: (c, rng) => new Jmvae(c as never, rng),
  description: 'JMVAE-kl: joint encoder q(z|x,l) tied to unimodal q(z|x), q(z|l) with weight alpha',
});
registerModel('trelbo', {
  schema: TrelboConfigSchema,
  create: (c, rng) => new Trelbo(c as never, rng),
  description: 'TrELBO: joint, image-only and label-only ELBOs trained together',
});
registerModel('scan', {
  schema: ScanConfigSchema,
  create: (c, rng) => new Scan(c as never, rng),
  prepareRun: prepareScanRun,
  description: 'SCAN: a β-VAE (β = 10), then label distributions fitted to the frozen image model',
});
registerModel('informed', {
  schema: InformedConfigSchema,
  create: (c, rng) => new Informed(c as never, rng),
  prepareRun: prepareInformedRun,
  description: 'Informed priors: full-covariance posterior, KL against priors built from the label vectors (shrinkage λ)',
});
registerModel('tvae', {
  schema: TvaeConfigSchema,
  create: (c, rng) => new Tvae(c as never, rng),
  description: 'TVAE: VAE plus a triplet loss on the posterior means (margin m, random or semi-hard negatives)',
});
registerModel('poe', {
  schema: PoeConfigSchema,
  create: (c, rng) => new Poe(c as never, rng),
  prepareRun: preparePseRun,
  description: 'PoE (MVAE): product-of-experts posterior of image and label experts; joint, image and label ELBOs',
});
registerModel('ae', {
  schema: AutoencoderConfigSchema,
  create: (c, rng) => new Autoencoder(c as never, rng),
  description: 'compression autoencoder (784-128-32 by default, ReLU code), Bernoulli reconstruction loss',
});
registerModel('denoising-ae', {
  schema: DenoisingAeConfigSchema,
  create: (c, rng) => new DenoisingAe(c as never, rng),
  description: 'denoising autoencoder: inputs get Gaussian noise (noiseSd, default 0.1) clipped to [0, 1], target the clean image',
});
registerModel('sparse-ae', {
  schema: SparseAeConfigSchema,
  create: (c, rng) => new SparseAe(c as never, rng),
  description: 'sparse autoencoder: sigmoid code, penalty beta·Σ KL(rho ‖ mean activation) (defaults rho 0.05, beta 3)',
});
registerModel('classifier', {
  schema: ClassifierConfigSchema,
  create: (c, rng) => new Classifier(c as never, rng),
  description: 'MLP image classifier (the generation-accuracy judge)',
});
