/**
 * tfjs-core registers its gradient functions only from an ESM entry that Node cannot load
 * (directory imports), so we take them from the union package's Node bundle, which registers
 * them into the shared global registry. Loading that bundle costs about a quarter of a second, and
 * only tfjs autodiff needs it (the tape engine has its own backward passes, inference none), so it
 * is loaded on first use.
 */
import { createRequire } from 'node:module';

let registered = false;

export function registerGradients(): void {
  if (registered) return;
  createRequire(import.meta.url)('@tensorflow/tfjs');
  registered = true;
}
