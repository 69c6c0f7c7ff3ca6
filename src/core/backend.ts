/**
 * Backend choice: the only module that knows which TensorFlow.js backend runs.
 *
 * Order for `auto`: `tensorflow` (from @tensorflow/tfjs-node, when the user has it installed),
 * then `wasm` (the default here: SIMD, single-threaded in Node), then the pure-JS `cpu`.
 */
import * as tf from '@tensorflow/tfjs-core';
// Gradients are registered separately from ops in tfjs-core.
import './gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { ProbsemError } from './errors.js';

export type BackendName = 'auto' | 'wasm' | 'cpu' | 'tensorflow';
export const BACKENDS: readonly BackendName[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

let tfjsNodeTried = false;

async function tryLoadTfjsNode(): Promise<boolean> {
  if (tf.findBackend('tensorflow')) return true;
  if (tfjsNodeTried) return false;
  tfjsNodeTried = true;
  try {
    // Optional peer: registers the 'tensorflow' backend on the shared tfjs-core engine.
    const name = '@tensorflow/tfjs-node';
    await import(name);
    return tf.findBackend('tensorflow') != null;
  } catch {
    return false;
  }
}

function normalise(name: string): BackendName {
  const n = name.trim().toLowerCase();
  const alias: Record<string, BackendName> = { node: 'tensorflow', 'tfjs-node': 'tensorflow' };
  const v = (alias[n] ?? n) as BackendName;
  if (!BACKENDS.includes(v)) {
    throw new ProbsemError(`unknown backend '${name}': choose one of ${BACKENDS.join(', ')}`, 'BAD_OPTION');
  }
  return v;
}

/**
 * Selects and initialises a backend. `requested` wins over the PROBSEM_BACKEND variable, which
 * wins over `auto`. Returns the name of the backend in use.
 */
export async function initBackend(requested?: string): Promise<string> {
  const choice = normalise(requested ?? process.env.PROBSEM_BACKEND ?? 'auto');
  const order: BackendName[] =
    choice === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [choice];
  for (const name of order) {
    if (name === 'tensorflow' && !(await tryLoadTfjsNode())) {
      if (choice === 'tensorflow') {
        throw new ProbsemError(
          "backend 'tensorflow' needs @tensorflow/tfjs-node, which is not installed",
          'BAD_OPTION',
        );
      }
      continue;
    }
    if (tf.getBackend() === name) return name;
    let ok = false;
    try {
      ok = await tf.setBackend(name);
      await tf.ready();
    } catch {
      ok = false;
    }
    if (ok && tf.getBackend() === name) return name;
    if (choice !== 'auto') throw new ProbsemError(`backend '${name}' failed to initialise`, 'BACKEND');
  }
  throw new ProbsemError('no TensorFlow.js backend could be initialised', 'BACKEND');
}

export function currentBackend(): string {
  return tf.getBackend();
}
