/** Model registry: name → config schema and factory. */
import type { ZodTypeAny } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { type Trainable, parseModelConfig } from './base.js';
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
import { Mopoe, MopoeConfigSchema } from './mopoe.js';
import { Mmvae, MmvaeConfigSchema } from './mmvae.js';
import { BimodalAe, BimodalAeConfigSchema, prepareBimodalRun } from './bimodal-ae.js';

/**
 * What a registered model is: 'model' (an image model of probsem's own), 'baseline' (a
 * comparison model of the PSE paper's Table 2, labelled without its latent size there) or
 * 'judge' (the generation-accuracy classifier: not trained by `probsem train` or benches).
 */
export type ModelKind = 'model' | 'baseline' | 'judge';

export interface ModelEntry {
  schema: ZodTypeAny;
  create(config: unknown, rng: Rng): Trainable;
  /** How tables and plots name it ('PSE*', 'β-VAE'). */
  displayName: string;
  kind: ModelKind;
  description: string;
  /**
   * Completes or checks a config for a training run of `steps` steps before the model is built
   * (e.g. SCAN's stage split); trainRun calls it when present.
   */
  prepareRun?(
    config: Record<string, unknown>,
    run: {
      steps: number;
      workers?: number;
      classInputs?: { rows: Float32Array; width: number; kind: string };
      /** Label inputs of the dataset's tags, [tags × width], for word-vector runs on tag-set data. */
      tagInputs?: { rows: Float32Array; width: number };
    },
  ): Record<string, unknown>;
}

const registry = new Map<string, ModelEntry>();

export function registerModel(name: string, entry: ModelEntry): void {
  registry.set(name, entry);
}

/** Models `probsem train` and the benches train: every registered model but the judge. */
export function trainableModelNames(): string[] {
  return modelNames().filter((n) => registry.get(n)!.kind !== 'judge');
}

/** Whether a model's config schema has an option (so a CLI flag for it applies). */
export function hasModelOption(name: string, option: string): boolean {
  const shape = (getModelEntry(name).schema as { shape?: Record<string, unknown> }).shape;
  return shape !== undefined && option in shape;
}

/** The registered models whose config has an option, for error messages. */
export function modelsWithOption(option: string): string[] {
  return trainableModelNames().filter((n) => hasModelOption(n, option));
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
  return entry.create(parseModelConfig(entry.schema, config, name), Rng.for(seed, 'init', name));
}

registerModel('vae', {
  displayName: 'VAE',
  kind: 'model',
  schema: VaeConfigSchema,
  create: (c, rng) => new Vae(c as never, rng),
  description: 'VAE / β-VAE with an N(0, I) prior',
});
registerModel('pse', {
  displayName: 'PSE',
  kind: 'model',
  schema: PseConfigSchema,
  create: (c, rng) => new Pse(c as never, rng),
  description: 'PSE: KL against the label encoder q(z|l)',
  prepareRun: preparePseRun,
});
registerModel('pse-star', {
  displayName: 'PSE*',
  kind: 'model',
  schema: PseStarConfigSchema,
  create: (c, rng) => new PseStar(c as never, rng),
  description: 'PSE*: PSE plus a classifier on the reconstruction',
  prepareRun: preparePseRun,
});
registerModel('beta-vae', {
  displayName: 'β-VAE',
  kind: 'model',
  schema: BetaVaeConfigSchema,
  create: (c, rng) => new BetaVae(c as never, rng),
  description: 'β-VAE (β = 4 by default) with an N(0, I) prior',
});
registerModel('cvae', {
  displayName: 'CVAE',
  kind: 'baseline',
  schema: CvaeConfigSchema,
  create: (c, rng) => new Cvae(c as never, rng),
  description: 'CVAE: encoder on image ⊕ label, decoder on z ⊕ label, N(0, I) prior',
});
registerModel('jmvae', {
  displayName: 'JMVAE',
  kind: 'baseline',
  schema: JmvaeConfigSchema,
  create: (c, rng) => new Jmvae(c as never, rng),
  description: 'JMVAE-kl: joint encoder q(z|x,l) tied to unimodal q(z|x), q(z|l) with weight alpha',
});
registerModel('trelbo', {
  displayName: 'TrELBO',
  kind: 'baseline',
  schema: TrelboConfigSchema,
  create: (c, rng) => new Trelbo(c as never, rng),
  description: 'TrELBO: joint, image-only and label-only ELBOs trained together',
});
registerModel('scan', {
  displayName: 'SCAN',
  kind: 'baseline',
  schema: ScanConfigSchema,
  create: (c, rng) => new Scan(c as never, rng),
  prepareRun: prepareScanRun,
  description: 'SCAN: a β-VAE (β = 10), then label distributions fitted to the frozen image model',
});
registerModel('informed', {
  displayName: 'Informed priors',
  kind: 'model',
  schema: InformedConfigSchema,
  create: (c, rng) => new Informed(c as never, rng),
  prepareRun: prepareInformedRun,
  description: 'Informed priors: full-covariance posterior, KL against priors built from the label vectors (shrinkage λ)',
});
registerModel('tvae', {
  displayName: 'TVAE',
  kind: 'model',
  schema: TvaeConfigSchema,
  create: (c, rng) => new Tvae(c as never, rng),
  description: 'TVAE: VAE plus a triplet loss on the posterior means (margin m, random or semi-hard negatives)',
});
registerModel('poe', {
  displayName: 'PoE (MVAE)',
  kind: 'model',
  schema: PoeConfigSchema,
  create: (c, rng) => new Poe(c as never, rng),
  prepareRun: preparePseRun,
  description: 'PoE (MVAE): product-of-experts posterior of image and label experts; joint, image and label ELBOs',
});
registerModel('mopoe', {
  displayName: 'MoPoE',
  kind: 'model',
  schema: MopoeConfigSchema,
  create: (c, rng) => new Mopoe(c as never, rng),
  prepareRun: preparePseRun,
  description: 'MoPoE: mixture over {image, label, both} of products of experts (PoE\'s experts and decoders); every subset reconstructs both modalities',
});
registerModel('mmvae', {
  displayName: 'MMVAE',
  kind: 'model',
  schema: MmvaeConfigSchema,
  create: (c, rng) => new Mmvae(c as never, rng),
  prepareRun: preparePseRun,
  description: 'MMVAE: equal-weight mixture of the image and label experts; each expert\'s sample reconstructs both modalities (stratified ELBO, one sample each)',
});
registerModel('ae', {
  displayName: 'Autoencoder',
  kind: 'model',
  schema: AutoencoderConfigSchema,
  create: (c, rng) => new Autoencoder(c as never, rng),
  description: 'compression autoencoder (784-128-32 by default, ReLU code), Bernoulli reconstruction loss',
});
registerModel('denoising-ae', {
  displayName: 'Denoising AE',
  kind: 'model',
  schema: DenoisingAeConfigSchema,
  create: (c, rng) => new DenoisingAe(c as never, rng),
  description: 'denoising autoencoder: inputs get Gaussian noise (noiseSd, default 0.1) clipped to [0, 1], target the clean image',
});
registerModel('sparse-ae', {
  displayName: 'Sparse AE',
  kind: 'model',
  schema: SparseAeConfigSchema,
  create: (c, rng) => new SparseAe(c as never, rng),
  description: 'sparse autoencoder: sigmoid code, penalty beta·Σ KL(rho ‖ mean activation) (defaults rho 0.05, beta 3)',
});
registerModel('bimodal-ae', {
  displayName: 'Bimodal AE',
  kind: 'model',
  schema: BimodalAeConfigSchema,
  create: (c, rng) => new BimodalAe(c as never, rng),
  prepareRun: prepareBimodalRun,
  description: 'bimodal deep autoencoder (Ngiam et al.): image and label paths into one shared code, both reconstructed; a third of each batch sees the image alone, a third the label alone',
});
registerModel('classifier', {
  displayName: 'Judge classifier',
  kind: 'judge',
  schema: ClassifierConfigSchema,
  create: (c, rng) => new Classifier(c as never, rng),
  description: 'MLP image classifier (the generation-accuracy judge)',
});
