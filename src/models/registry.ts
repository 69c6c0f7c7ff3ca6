/** Model registry: name → config schema and factory. */
import type { ZodTypeAny } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import type { Trainable } from './base.js';
import { Vae, VaeConfigSchema } from './vae.js';
import { Pse, PseConfigSchema } from './pse.js';
import { PseStar, PseStarConfigSchema } from './pse-star.js';
import { Classifier, ClassifierConfigSchema } from './classifier.js';

export interface ModelEntry {
  schema: ZodTypeAny;
  create(config: unknown, rng: Rng): Trainable;
  description: string;
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
});
registerModel('pse-star', {
  schema: PseStarConfigSchema,
  create: (c, rng) => new PseStar(c as never, rng),
  description: 'PSE*: PSE plus a classifier on the reconstruction',
});
registerModel('classifier', {
  schema: ClassifierConfigSchema,
  create: (c, rng) => new Classifier(c as never, rng),
  description: 'MLP image classifier (the generation-accuracy judge)',
});
