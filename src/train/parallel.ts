/**
 * Data-parallel training over worker_threads: each replica computes the gradient of its shard of
 * the batch, the main thread averages them (weighted by shard size, so the result is the full
 * batch's gradient up to float rounding), applies Adam once in shared memory, and every replica
 * reads the new parameters. Same seed, backend and worker count → identical results.
 *
 * Synchronisation is through SharedArrayBuffers and Atomics (the main thread blocks in
 * Atomics.wait while the workers compute), so a step stays a synchronous call.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Worker } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { currentBackend } from '../core/backend.js';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import type { HostBatch, Trainable } from '../models/base.js';
import { flatLayout, type Segment } from '../nn/fast.js';
import { FlatAdam } from './flat-adam.js';
import { batchGradients, nonFiniteFlatGrads, nonFiniteGradient, nonFiniteLoss } from './gradients.js';

export type RawBatch = HostBatch;

/** Control words in the shared Int32Array. */
export const CTRL = { REQUEST: 0, DONE: 1, COMMAND: 2, ERROR: 3, ROWS: 4, STEP: 5 } as const;
export const CMD = { STEP: 1, EXIT: 2 } as const;
export const MAX_TERMS = 16;
const ERROR_BYTES = 4096;
const WAIT_MS = 120_000;

/** Shared buffers of one worker. */
export interface WorkerShared {
  ctrl: SharedArrayBuffer;
  params: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  x: SharedArrayBuffer;
  y: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  terms: SharedArrayBuffer;
  error: SharedArrayBuffer;
}

export interface WorkerInit {
  shared: WorkerShared;
  backend: string;
  model: string;
  config: unknown;
  layout: Segment[];
  termNames: string[];
  pixels: number;
  labelDim: number;
  seed: number;
  shard: number;
}

export function layoutOf(model: Trainable): Segment[] {
  return flatLayout(model.params);
}

/** Computes one shard's loss terms and flat gradient (mean over the shard's rows). */
export function shardGradient(
  model: Trainable,
  layout: Segment[],
  x: Float32Array,
  y: Float32Array,
  labels: Int32Array,
  rows: number,
  pixels: number,
  labelDim: number,
  rng: Rng,
  step: number,
  gradOut: Float32Array,
): Record<string, number> {
  const xt = tf.tensor2d(x.subarray(0, rows * pixels), [rows, pixels]);
  const yt = tf.tensor2d(y.subarray(0, rows * labelDim), [rows, labelDim]);
  gradOut.fill(0); // parameters without a gradient must not keep a stale one
  try {
    const g = batchGradients(model, { x: xt, y: yt, labels: labels.subarray(0, rows), rng }, step);
    try {
      for (const seg of layout) {
        const t = g.grads.get(seg.name);
        if (t) gradOut.set(t.dataSync() as Float32Array, seg.offset);
      }
      return g.terms;
    } finally {
      g.dispose();
    }
  } finally {
    tf.dispose([xt, yt]);
  }
}

/** Copies a flat parameter vector into the model's variables. */
export function assignParams(model: Trainable, layout: Segment[], flat: Float32Array): void {
  for (const seg of layout) {
    const v = model.params.get(seg.name);
    const t = tf.tensor(flat.slice(seg.offset, seg.offset + seg.length), seg.shape, 'float32');
    v.assign(t);
    t.dispose();
  }
}

export class ParallelStepper {
  readonly adam: FlatAdam;
  private readonly layout: Segment[];
  private readonly params: Float32Array;
  private readonly ownGrad: Float32Array;
  private seq = 0;
  private closed = false;

  private constructor(
    private readonly model: Trainable,
    private readonly seed: number,
    private readonly workers: { worker: Worker; init: WorkerInit; views: ReturnType<typeof views> }[],
    paramsSab: SharedArrayBuffer,
    lr: number,
  ) {
    this.layout = layoutOf(model);
    this.params = new Float32Array(paramsSab);
    this.ownGrad = new Float32Array(this.params.length);
    this.adam = new FlatAdam(this.layout, lr, (n) => model.params.lrScale(n));
    this.syncFromModel();
  }

  /**
   * Starts `replicas - 1` workers (the main thread is a replica too). `maxRows` bounds a shard.
   */
  static async create(
    model: Trainable & { config?: unknown },
    opts: { replicas: number; lr: number; seed: number; pixels: number; labelDim: number; maxRows: number; termNames: string[] },
  ): Promise<ParallelStepper> {
    if (!Number.isInteger(opts.replicas) || opts.replicas < 2) {
      throw new ProbsemError(`data-parallel training needs at least 2 replicas, got ${opts.replicas}`, 'BAD_OPTION');
    }
    const layout = layoutOf(model);
    const n = layout.reduce((s, g) => s + g.length, 0);
    const paramsSab = new SharedArrayBuffer(n * 4);
    const here = fileURLToPath(import.meta.url);
    const workerFile = fileURLToPath(new URL(`./grad-worker${extname(here)}`, import.meta.url));
    if (opts.termNames.length > MAX_TERMS) {
      throw new ProbsemError(`a model with ${opts.termNames.length} loss terms exceeds the ${MAX_TERMS} data-parallel training supports`);
    }
    const list: { worker: Worker; init: WorkerInit; views: ReturnType<typeof views> }[] = [];
    try {
    for (let k = 1; k < opts.replicas; k++) {
      const shared: WorkerShared = {
        ctrl: new SharedArrayBuffer(8 * 4),
        params: paramsSab,
        grads: new SharedArrayBuffer(n * 4),
        x: new SharedArrayBuffer(opts.maxRows * opts.pixels * 4),
        y: new SharedArrayBuffer(opts.maxRows * opts.labelDim * 4),
        labels: new SharedArrayBuffer(opts.maxRows * 4),
        terms: new SharedArrayBuffer(MAX_TERMS * 8),
        error: new SharedArrayBuffer(ERROR_BYTES),
      };
      const init: WorkerInit = {
        shared,
        backend: currentBackend(),
        model: model.name,
        config: model.config,
        layout,
        termNames: opts.termNames,
        pixels: opts.pixels,
        labelDim: opts.labelDim,
        seed: opts.seed,
        shard: k,
      };
      // From TypeScript sources the worker must register tsx's loader itself before importing the
      // worker module; compiled JavaScript loads directly.
      const worker =
        extname(here) === '.ts'
          ? new Worker(
              `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((t) => { t.register(); return import(${JSON.stringify(pathToFileURL(workerFile).href)}); });`,
              { eval: true, workerData: init },
            )
          : new Worker(workerFile, { workerData: init });
      await new Promise<void>((resolve, reject) => {
        worker.once('message', (m) => (m === 'ready' ? resolve() : reject(new ProbsemError(`worker failed to start: ${String(m)}`))));
        worker.once('error', (e) => reject(new ProbsemError(`worker failed to start: ${e.message}`)));
      });
      list.push({ worker, init, views: views(shared) });
    }
    } catch (e) {
      // Do not leave started workers running: the process would never exit.
      await Promise.all(list.map((w) => w.worker.terminate()));
      throw e;
    }
    return new ParallelStepper(model, opts.seed, list, paramsSab, opts.lr);
  }

  get replicas(): number {
    return this.workers.length + 1;
  }

  /** Copies the model's variables into shared memory (after init or a checkpoint load). */
  syncFromModel(): void {
    for (const seg of this.layout) this.params.set(this.model.params.get(seg.name).dataSync() as Float32Array, seg.offset);
  }

  step(batch: RawBatch, step: number): Record<string, number> {
    const { terms, grad } = this.gradient(batch, step);
    if (!Number.isFinite(terms.loss)) throw nonFiniteLoss(step, terms);
    const badGrads = nonFiniteFlatGrads(grad, this.layout);
    if (badGrads.length > 0) throw nonFiniteGradient(step, badGrads);
    this.adam.apply(this.params, grad);
    assignParams(this.model, this.layout, this.params);
    return terms;
  }

  /**
   * The full batch's loss terms and gradient, computed shard by shard across the replicas. The
   * returned gradient is an internal buffer, valid until the next call.
   */
  gradient(batch: RawBatch, step: number): { terms: Record<string, number>; grad: Float32Array } {
    const r = this.replicas;
    const bounds = Array.from({ length: r + 1 }, (_, k) => Math.round((k * batch.rows) / r));
    this.seq++;
    // Hand shards 1..r-1 to the workers, then compute shard 0 here while they run.
    this.workers.forEach((w, i) => {
      const [a, b] = [bounds[i + 1], bounds[i + 2]];
      w.views.x.set(batch.x.subarray(a * batch.pixels, b * batch.pixels));
      w.views.y.set(batch.y.subarray(a * batch.labelDim, b * batch.labelDim));
      w.views.labels.set(batch.labels.subarray(a, b));
      Atomics.store(w.views.ctrl, CTRL.ROWS, b - a);
      Atomics.store(w.views.ctrl, CTRL.STEP, step);
      Atomics.store(w.views.ctrl, CTRL.COMMAND, CMD.STEP);
      Atomics.store(w.views.ctrl, CTRL.REQUEST, this.seq);
      Atomics.notify(w.views.ctrl, CTRL.REQUEST);
    });
    const rows0 = bounds[1];
    const own = shardGradient(
      this.model, this.layout, batch.x, batch.y, batch.labels.subarray(0, rows0), rows0, batch.pixels, batch.labelDim,
      Rng.for(this.seed, 'step', step, 'shard', 0), step, this.ownGrad,
    );
    const total = this.ownGrad;
    const termSums: Record<string, number> = {};
    for (const [k, v] of Object.entries(own)) termSums[k] = v * rows0;
    // Weighted average of shard gradients: each is a mean over its rows.
    const w0 = rows0 / batch.rows;
    for (let i = 0; i < total.length; i++) total[i] *= w0;
    this.workers.forEach((w, i) => {
      this.waitFor(w);
      const rows = bounds[i + 2] - bounds[i + 1];
      const wi = rows / batch.rows;
      const g = w.views.grads;
      for (let j = 0; j < total.length; j++) total[j] += wi * g[j];
      w.init.termNames.forEach((name, t) => (termSums[name] = (termSums[name] ?? 0) + w.views.terms[t] * rows));
    });
    const terms = Object.fromEntries(Object.entries(termSums).map(([k, v]) => [k, v / batch.rows]));
    return { terms, grad: total };
  }

  private waitFor(w: ParallelStepper['workers'][number]): void {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      // Read DONE once and wait on that value, so a notify between read and wait is not lost.
      const done = Atomics.load(w.views.ctrl, CTRL.DONE);
      if (done === this.seq || Atomics.load(w.views.ctrl, CTRL.ERROR) !== 0) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new ProbsemError(`training worker ${w.init.shard} stopped responding`, 'WORKER');
      Atomics.wait(w.views.ctrl, CTRL.DONE, done, Math.min(left, 1000));
    }
    if (Atomics.load(w.views.ctrl, CTRL.ERROR) !== 0) {
      const msg = new TextDecoder().decode(new Uint8Array(w.init.shared.error).slice()).replace(/\0+$/, '');
      throw new ProbsemError(`training worker ${w.init.shard} failed: ${msg}`, 'WORKER');
    }
  }

  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(
      this.workers.map(async (w) => {
        Atomics.store(w.views.ctrl, CTRL.COMMAND, CMD.EXIT);
        Atomics.store(w.views.ctrl, CTRL.REQUEST, ++this.seq);
        Atomics.notify(w.views.ctrl, CTRL.REQUEST);
        await w.worker.terminate();
      }),
    );
  }
}

export function views(s: WorkerShared) {
  return {
    ctrl: new Int32Array(s.ctrl),
    params: new Float32Array(s.params),
    grads: new Float32Array(s.grads),
    x: new Float32Array(s.x),
    y: new Float32Array(s.y),
    labels: new Int32Array(s.labels),
    terms: new Float64Array(s.terms),
  };
}
