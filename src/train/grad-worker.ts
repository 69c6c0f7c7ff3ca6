/** A data-parallel training replica: computes its shard's gradient on request (see parallel.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../core/backend.js';
import { Rng } from '../core/random.js';
import { createModel } from '../models/registry.js';
import { CMD, CTRL, type WorkerInit, assignParams, shardGradient, views } from './parallel.js';

const init = workerData as WorkerInit;
const v = views(init.shared);
const errorBytes = new Uint8Array(init.shared.error);

try {
  // Replicas already use every core between them: one compute thread each.
  await initBackend(init.backend, { threads: 1 });
  const model = createModel(init.model, init.config, 0);
  parentPort!.postMessage('ready');
  let seen = 0;
  for (;;) {
    Atomics.wait(v.ctrl, CTRL.REQUEST, seen);
    seen = Atomics.load(v.ctrl, CTRL.REQUEST);
    if (Atomics.load(v.ctrl, CTRL.COMMAND) === CMD.EXIT) break;
    try {
      assignParams(model, init.layout, v.params);
      const rows = Atomics.load(v.ctrl, CTRL.ROWS);
      const step = Atomics.load(v.ctrl, CTRL.STEP);
      const terms = shardGradient(model, init.layout, v.x, v.y, v.labels, rows, init.pixels, init.labelDim,
        Rng.for(init.seed, 'step', step, 'shard', init.shard), step, v.grads);
      init.termNames.forEach((name, i) => (v.terms[i] = terms[name] ?? NaN));
    } catch (e) {
      errorBytes.set(new TextEncoder().encode(String((e as Error).message ?? e)).subarray(0, errorBytes.length - 1));
      Atomics.store(v.ctrl, CTRL.ERROR, 1);
    }
    Atomics.store(v.ctrl, CTRL.DONE, seen);
    Atomics.notify(v.ctrl, CTRL.DONE);
  }
} catch (e) {
  parentPort!.postMessage(`error: ${(e as Error).message}`);
}
