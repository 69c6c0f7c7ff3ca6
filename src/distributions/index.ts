export * from './gaussian.js';
export * from './kl.js';
export * from './bernoulli.js';
export * from './label-sets.js';
