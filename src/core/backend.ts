/**
 * Backend choice: the only module that knows which TensorFlow.js backend runs.
 *
 * Order for `auto`: `tensorflow` (from @tensorflow/tfjs-node, when the user has it installed),
 * then `wasm` (the default here: SIMD, single-threaded in Node), then the pure-JS `cpu`.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { ProbsemError } from './errors.js';
import { writeFileAtomicSync } from './files.js';

export type BackendName = 'auto' | 'wasm' | 'cpu' | 'tensorflow';
export const BACKENDS: readonly BackendName[] = ['auto', 'wasm', 'cpu', 'tensorflow'];

let tfjsNodeTried = false;
/** The wasm module can be instantiated once per thread; its thread count is fixed then. */
let wasmStarted = false;

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
 * Number of XNNPACK threads for the wasm backend: PROBSEM_THREADS, else the machine's cores
 * (at most 8, the size of the backend's worker pool).
 */
export function wasmThreadsWanted(): number {
  const env = process.env.PROBSEM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > 8) {
      throw new ProbsemError(`PROBSEM_THREADS must be an integer from 1 to 8, got '${env}'`, 'BAD_OPTION');
    }
    return n;
  }
  return Math.max(1, Math.min(8, os.cpus().length));
}

/**
 * Prepares the multi-threaded wasm build in Node, which tfjs ships but only enables in browsers:
 * its pthread worker script is handed to emscripten as a Blob URL, which Node's worker_threads
 * cannot load, so we write it to a file (pointing its own Blob lookup at the factory file), and
 * the thread count is derived from `os.cpus().length / 2`, so the reported core count is raised
 * to 2·threads while the backend starts. Returns a function that undoes the patches.
 */
function prepareWasmThreads(threads: number): () => void {
  const require = createRequire(import.meta.url);
  const factoryFile = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as {
    wasmWorkerContents: string;
  };
  const workerFile = join(os.tmpdir(), `probsem-wasm-worker-${process.pid}.cjs`);
  // tfjs escapes newlines the same way before making its Blob.
  writeFileAtomicSync(
    workerFile,
    `URL.createObjectURL = () => ${JSON.stringify(factoryFile)}; URL.revokeObjectURL = () => {};\n` +
      wasmWorkerContents.replace(/\n/g, '\\n'),
  );
  process.once('exit', () => {
    try {
      unlinkSync(workerFile);
    } catch {
      /* already gone */
    }
  });
  const urlApi = URL as unknown as { createObjectURL: (b: Blob) => string };
  const origUrl = urlApi.createObjectURL;
  urlApi.createObjectURL = (b: Blob) => (b.type === 'application/javascript' ? workerFile : origUrl(b));
  const osMutable = os as unknown as { cpus: () => os.CpuInfo[] };
  const origCpus = osMutable.cpus;
  osMutable.cpus = () => {
    const c = origCpus();
    return Array.from({ length: 2 * threads }, (_, i) => c[i % c.length]);
  };
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  return () => {
    urlApi.createObjectURL = origUrl;
    osMutable.cpus = origCpus;
  };
}

/** Lets the process exit while the backend's pthread workers idle (emscripten leaves some ref'd). */
function unrefWasmWorkers(): void {
  const pthread = (tf.backend() as unknown as { wasm?: { PThread?: { unusedWorkers: { unref(): void }[]; runningWorkers: { unref(): void }[] } } })
    .wasm?.PThread;
  for (const w of [...(pthread?.unusedWorkers ?? []), ...(pthread?.runningWorkers ?? [])]) w.unref();
}

/** XNNPACK threads of the initialised wasm backend (1 for the single-threaded build). */
export function wasmThreads(): number {
  try {
    return getThreadsCount();
  } catch {
    return 1;
  }
}

/**
 * Selects and initialises a backend. `requested` wins over the PROBSEM_BACKEND variable, which
 * wins over `auto`. For wasm, `threads` (default: PROBSEM_THREADS or the number of cores) sets the
 * XNNPACK thread pool; it is fixed once the backend has started. Returns the backend's name.
 */
export async function initBackend(requested?: string, opts: { threads?: number } = {}): Promise<string> {
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
    const threads = name === 'wasm' && !wasmStarted ? (opts.threads ?? wasmThreadsWanted()) : 1;
    const restore = threads > 1 ? prepareWasmThreads(threads) : () => {};
    try {
      ok = await tf.setBackend(name);
      await tf.ready();
    } catch {
      ok = false;
    } finally {
      restore();
      if (name === 'wasm') wasmStarted = true;
    }
    if (ok && threads > 1) unrefWasmWorkers();
    if (ok && tf.getBackend() === name) return name;
    if (choice !== 'auto') throw new ProbsemError(`backend '${name}' failed to initialise`, 'BACKEND');
  }
  throw new ProbsemError('no TensorFlow.js backend could be initialised', 'BACKEND');
}

export function currentBackend(): string {
  return tf.getBackend();
}
