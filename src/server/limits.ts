/** The server's limits, its HTTP error type, and the concurrency limiter with a bounded queue. */
import os from 'node:os';
import { ProbsemError } from '../core/errors.js';

export interface ServeLimits {
  /** Largest request body (uploads, JSON) in bytes; beyond it: 413. */
  maxUploadBytes: number;
  /** Largest decoded image (width × height) accepted; beyond it: 400. */
  maxImagePixels: number;
  /** Largest decoded image in bytes (pixels × channels × bytes per sample, from its header); beyond it: 413. */
  maxDecodeBytes: number;
  /** Most images per /api/generate. */
  maxN: number;
  /** Most results per /api/retrieve. */
  maxK: number;
  /** Most frames per /api/interpolate. */
  maxSteps: number;
  /** Model jobs run at once: the size of the worker pool. */
  maxConcurrent: number;
  /** Model jobs one connection may have running or queued (pipelined requests); one more: 429. */
  maxPerConnection: number;
  /** Model jobs waiting beyond the running ones; one more: 503. */
  maxQueue: number;
  /** Time to receive a whole request, and the longest a job may wait in the queue (ms). */
  requestTimeoutMs: number;
  /** Test images the latent map is computed on (t-SNE uses at most half, at most 1000). */
  latentSample: number;
  /**
   * Largest test split (its images and posteriors, in bytes) sent to the explorer page, which then
   * annotates and searches it in the tab; a larger one stays here and the page asks for it. 0: never.
   */
  pageDataBytes: number;
}

export const DEFAULT_LIMITS: ServeLimits = {
  maxUploadBytes: 2 * 1024 * 1024,
  maxImagePixels: 2048 * 2048,
  // The largest picture at the deepest format: 2048×2048 RGBA at 16 bits.
  maxDecodeBytes: 2048 * 2048 * 4 * 2,
  maxN: 64,
  maxK: 100,
  maxSteps: 32,
  // One model worker per core: workers lower their priority, so the event loop still answers.
  maxConcurrent: Math.max(1, os.availableParallelism?.() ?? os.cpus().length),
  maxPerConnection: 4,
  maxQueue: 256,
  requestTimeoutMs: 30_000,
  latentSample: 2000,
  // The full Fashion-MNIST test split (7.8 MB of pixels, 0.8 MB of posteriors at latent 10) fits.
  pageDataBytes: 32 * 1024 * 1024,
};

/** An error with an HTTP status, a stable code and optional extra JSON fields. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

interface Job<T> {
  fn: () => T | Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
  timer?: NodeJS.Timeout;
  enqueued: number;
  owner?: object;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export interface RunOptions {
  /** Aborted when the client has gone: a queued job is dropped, never started. */
  signal?: AbortSignal;
  /** Whose job it is (the connection): at most `maxPerOwner` running or queued at once. */
  owner?: object;
}

const retry = { 'retry-after': '1' };

/**
 * Runs at most `maxActive` jobs at once; up to `maxQueue` more wait in order, each for at most
 * `queueTimeoutMs` counted from when it was queued. A job beyond the queue, or one that waited too
 * long, fails with a 503; one owner (a connection) beyond `maxPerOwner` jobs gets a 429. A queued
 * job whose signal aborts (its client disconnected) is dropped without being started.
 * Jobs always start on a later turn of the event loop (setImmediate), so a burst of requests is
 * parsed and queued (or refused) before any of them starts.
 */
export class Limiter {
  private active = 0;
  private readonly queue: Job<unknown>[] = [];
  private readonly perOwner = new WeakMap<object, number>();
  private closed = false;
  /** Jobs dropped because their client went away, and jobs that timed out in the queue. */
  readonly counts = { dropped: 0, timedOut: 0 };

  constructor(
    readonly maxActive: number,
    readonly maxQueue: number,
    readonly queueTimeoutMs: number,
    readonly maxPerOwner = Infinity,
  ) {
    if (!(maxActive >= 1) || !(maxQueue >= 0) || !(maxPerOwner >= 1)) {
      throw new ProbsemError('the limiter needs maxActive ≥ 1, maxQueue ≥ 0 and maxPerOwner ≥ 1', 'BAD_OPTION');
    }
  }

  get stats() {
    return { active: this.active, queued: this.queue.length, maxActive: this.maxActive, maxQueue: this.maxQueue };
  }

  run<T>(fn: () => T | Promise<T>, o: RunOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(new HttpError(503, 'SHUTTING_DOWN', 'the server is shutting down'));
      if (o.signal?.aborted) {
        this.counts.dropped++;
        return reject(new HttpError(499, 'CLIENT_GONE', 'the client disconnected'));
      }
      const held = o.owner ? (this.perOwner.get(o.owner) ?? 0) : 0;
      if (held >= this.maxPerOwner) {
        return reject(
          new HttpError(429, 'CONNECTION_BUSY', `this connection already has ${held} requests running or queued (at most ${this.maxPerOwner}); wait for their answers`, {}, retry),
        );
      }
      const job: Job<T> = { fn, resolve, reject, enqueued: Date.now(), owner: o.owner, signal: o.signal };
      if (this.active < this.maxActive && this.queue.length === 0) {
        this.hold(job);
        this.start(job);
        return;
      }
      if (this.queue.length >= this.maxQueue) {
        return reject(
          new HttpError(503, 'BUSY', `the server is busy: ${this.active} jobs running and ${this.queue.length} waiting (the queue holds ${this.maxQueue}); retry shortly`, {}, retry),
        );
      }
      this.hold(job);
      job.timer = setTimeout(() => this.expire(job as Job<unknown>), this.queueTimeoutMs);
      if (o.signal) {
        job.onAbort = () => {
          if (!this.unqueue(job as Job<unknown>)) return;
          this.counts.dropped++;
          reject(new HttpError(499, 'CLIENT_GONE', 'the client disconnected'));
        };
        o.signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job as Job<unknown>);
    });
  }

  /** Refuses new jobs; queued and running ones still finish. */
  close(): void {
    this.closed = true;
  }

  private hold(job: { owner?: object }): void {
    if (job.owner) this.perOwner.set(job.owner, (this.perOwner.get(job.owner) ?? 0) + 1);
  }

  private release(job: Job<unknown>): void {
    if (job.signal && job.onAbort) job.signal.removeEventListener('abort', job.onAbort);
    clearTimeout(job.timer);
    if (job.owner) this.perOwner.set(job.owner, (this.perOwner.get(job.owner) ?? 1) - 1);
  }

  /** Takes a job out of the queue (false when it is not there any more). */
  private unqueue(job: Job<unknown>): boolean {
    const i = this.queue.indexOf(job);
    if (i < 0) return false;
    this.queue.splice(i, 1);
    this.release(job);
    return true;
  }

  private expire(job: Job<unknown>): void {
    if (!this.unqueue(job)) return;
    this.counts.timedOut++;
    const waited = Date.now() - job.enqueued;
    job.reject(new HttpError(503, 'QUEUE_TIMEOUT', `the request waited ${waited} ms in the queue (the limit is ${this.queueTimeoutMs} ms) without being served; retry shortly`, {}, retry));
  }

  private start<T>(job: Job<T>): void {
    this.active++;
    setImmediate(async () => {
      try {
        // The client may have gone while this job waited for its turn: nothing to compute for.
        if (job.signal?.aborted) {
          this.counts.dropped++;
          throw new HttpError(499, 'CLIENT_GONE', 'the client disconnected');
        }
        job.resolve(await job.fn());
      } catch (e) {
        job.reject(e);
      } finally {
        this.active--;
        this.release(job as Job<unknown>);
        this.next();
      }
    });
  }

  private next(): void {
    while (this.active < this.maxActive && this.queue.length) {
      const job = this.queue.shift()!;
      // Timers fire late on a busy loop: the wait is checked again here, from enqueue.
      if (Date.now() - job.enqueued >= this.queueTimeoutMs) {
        this.queue.unshift(job);
        this.expire(job);
        continue;
      }
      if (job.signal && job.onAbort) job.signal.removeEventListener('abort', job.onAbort);
      clearTimeout(job.timer);
      this.start(job);
    }
  }
}
