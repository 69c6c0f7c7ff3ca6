/**
 * A model worker of the server's pool (./pool.ts): loads the run once, then answers jobs one at a
 * time. It lowers its own scheduling priority where the OS allows, so on a machine with as many
 * workers as cores the event loop still gets the CPU it needs to answer at once.
 */
import { readlinkSync } from 'node:fs';
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../core/backend.js';
import type { Distance } from '../index/distances.js';
import { ModelService } from './service.js';
import { type JobMessage, type WorkerReply, type WorkerSetup, toWire } from './pool.js';

/**
 * Linux: a thread's own id from /proc/thread-self (…/task/TID), so only this thread is reniced.
 * Nice 10, not 19: at 19 the workers starve behind other busy processes (measured: the flood of
 * bench/serve-load.ts took 20 % longer with no gain for /api/health).
 */
function lowerPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) os.setPriority(tid, Math.max(os.getPriority(tid), 10));
  } catch {
    // Not Linux, or not allowed: the pool still works, only with less headroom for the event loop.
  }
}

const setup = workerData as WorkerSetup;
const port = parentPort!;
const send = (m: WorkerReply) => port.postMessage(m);

try {
  lowerPriority();
  // One thread per worker: the pool, not the backend, spreads work over the cores.
  await initBackend(setup.backend, { threads: 1 });
  // The main thread has loaded (or built and saved) the split's index before starting the pool, so
  // each worker reads the cache file instead of encoding the split again.
  const service = await ModelService.load(setup.runDir, { dataset: setup.dataset, dataDir: setup.dataDir, saveIndex: false });
  void service.index;
  const ops: Record<JobMessage['op'], (...a: never[]) => unknown> = {
    annotateId: (id: number, o: { top?: number; reconstruct?: boolean }) => service.annotateId(id, o),
    annotateUpload: (buf: Uint8Array, o: { invert?: boolean; maxPixels: number; top?: number; reconstruct?: boolean }) =>
      service.annotateUpload(buf, { ...o, maxDecodeBytes: setup.maxDecodeBytes }),
    annotatePixels: (grey: Float32Array, o: { top?: number; reconstruct?: boolean }) => service.annotate(grey, o),
    generate: (req: { words?: string[]; label?: string; n: number; seed: number }) => service.generate(req),
    retrieve: (words: string[], k: number, distance?: Distance) => service.retrieve(words, k, distance),
    similar: (id: number, k: number, distance?: Distance, dissimilar?: boolean) => service.similar(id, k, distance, dissimilar),
    interpolate: (from: string | number, to: string | number, steps: number, scale: number) => service.interpolate(from, to, steps, scale),
    reconstructionPng: (id: number, scale: number) => service.reconstructionPng(id, scale),
  };
  port.on('message', async (m: JobMessage) => {
    try {
      send({ id: m.id, ok: true, result: await ops[m.op](...(m.args as never[])) });
    } catch (e) {
      send({ id: m.id, ok: false, error: toWire(e) });
    }
  });
  send({ ready: true });
} catch (e) {
  send({ failed: toWire(e) });
}
