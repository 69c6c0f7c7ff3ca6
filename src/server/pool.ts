/**
 * The pool of model workers: worker threads that each load the run once and then run model jobs
 * (annotation, image decoding, generation, retrieval, interpolation) one at a time, so the server's
 * event loop only parses, validates and queues, and /api/health answers under any backlog.
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../core/module-worker.js';
import { ProbsemError } from '../core/errors.js';
import { UnknownWordError } from '../runs/retrieval.js';
import { HttpError } from './limits.js';

/** What every worker is told at start: the run to load and how. */
export interface WorkerSetup {
  runDir: string;
  dataset?: string;
  dataDir?: string;
  backend?: string;
  maxDecodeBytes: number;
}

export type JobOp = 'annotateId' | 'annotateUpload' | 'annotatePixels' | 'generate' | 'retrieve' | 'similar' | 'interpolate' | 'reconstructionPng';

export interface JobMessage {
  id: number;
  op: JobOp;
  args: unknown[];
}

/** An error as it crosses the thread boundary (structured clone keeps only an Error's message). */
export interface WireError {
  kind: 'http' | 'unknownWord' | 'probsem' | 'other';
  message: string;
  code?: string;
  statusCode?: number;
  extra?: Record<string, unknown>;
  headers?: Record<string, string>;
  words?: string[];
}

export type WorkerReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: WireError } | { ready: true } | { failed: WireError };

export function toWire(e: unknown): WireError {
  if (e instanceof HttpError) return { kind: 'http', message: e.message, code: e.code, statusCode: e.statusCode, extra: e.extra, headers: e.headers };
  if (e instanceof UnknownWordError) return { kind: 'unknownWord', message: e.message, words: e.words };
  if (e instanceof ProbsemError) return { kind: 'probsem', message: e.message, code: e.code };
  return { kind: 'other', message: e instanceof Error ? e.message : String(e) };
}

export function fromWire(w: WireError): Error {
  if (w.kind === 'http') return new HttpError(w.statusCode!, w.code!, w.message, w.extra, w.headers);
  if (w.kind === 'unknownWord') {
    // Rebuilt with the message as sent: the constructor would compose it again.
    const e = Object.create(UnknownWordError.prototype) as UnknownWordError;
    Object.assign(e, { name: 'UnknownWordError', message: w.message, code: 'UNKNOWN_WORD', words: w.words, suggestions: {} });
    return e;
  }
  if (w.kind === 'probsem') return new ProbsemError(w.message, w.code);
  return new Error(w.message);
}

interface Slot {
  worker: Worker;
  busy: { id: number; resolve: (v: unknown) => void; reject: (e: unknown) => void } | null;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly waiting: { msg: JobMessage; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  private nextId = 1;
  private closed = false;
  /** Jobs handed to a worker so far (tests check that dropped work never started). */
  started = 0;

  private constructor(
    readonly size: number,
    private readonly setup: WorkerSetup,
  ) {}

  /** Starts `size` workers and waits until each has loaded the run (a load failure fails the start). */
  static async start(size: number, setup: WorkerSetup): Promise<WorkerPool> {
    const pool = new WorkerPool(Math.max(1, size), setup);
    try {
      await Promise.all(Array.from({ length: pool.size }, () => pool.spawn()));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  private spawn(): Promise<void> {
    const worker = startModuleWorker(import.meta.url, 'model-worker', { workerData: this.setup });
    const slot: Slot = { worker, busy: null };
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (m: WorkerReply) => {
        if ('ready' in m) {
          this.slots.push(slot);
          resolve();
          this.pump();
        } else if ('failed' in m) {
          reject(fromWire(m.failed));
        } else if (slot.busy && slot.busy.id === m.id) {
          const job = slot.busy;
          slot.busy = null;
          if (m.ok) job.resolve(m.result);
          else job.reject(fromWire(m.error));
          this.pump();
        }
      });
      worker.on('error', (e) => reject(new ProbsemError(`a model worker failed to start: ${e.message}`, 'WORKER')));
      worker.once('exit', (code) => {
        const i = this.slots.indexOf(slot);
        if (i >= 0) this.slots.splice(i, 1);
        reject(new ProbsemError(`a model worker stopped while loading the run (exit code ${code})`, 'WORKER'));
        if (slot.busy) slot.busy.reject(new HttpError(500, 'WORKER_CRASHED', 'the model worker running this request stopped'));
        slot.busy = null;
        // A worker lost while serving is replaced, so the pool keeps its size.
        if (!this.closed && i >= 0) this.spawn().catch(() => {});
      });
    });
  }

  /** Runs a job on the first idle worker (in arrival order when all are busy). */
  run(op: JobOp, ...args: unknown[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new HttpError(503, 'SHUTTING_DOWN', 'the server is shutting down'));
    return new Promise((resolve, reject) => {
      this.waiting.push({ msg: { id: this.nextId++, op, args }, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (!this.waiting.length) return;
      if (slot.busy) continue;
      const job = this.waiting.shift()!;
      slot.busy = { id: job.msg.id, resolve: job.resolve, reject: job.reject };
      this.started++;
      slot.worker.postMessage(job.msg);
    }
  }

  /** Terminates every worker; jobs not yet answered fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.reject(new HttpError(503, 'SHUTTING_DOWN', 'the server is shutting down'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
