/** The server's limits, its HTTP error type, and the concurrency limiter with a bounded queue. */
import { ProbsemError } from '../core/errors.js';

export interface ServeLimits {
  /** Largest request body (uploads, JSON) in bytes; beyond it: 413. */
  maxUploadBytes: number;
  /** Largest decoded image (width × height) accepted; beyond it: 400. */
  maxImagePixels: number;
  /** Most images per /api/generate. */
  maxN: number;
  /** Most results per /api/retrieve. */
  maxK: number;
  /** Most frames per /api/interpolate. */
  maxSteps: number;
  /** Model jobs run at once. */
  maxConcurrent: number;
  /** Model jobs waiting beyond the running ones; one more: 503. */
  maxQueue: number;
  /** Time to receive a whole request, and the longest a job may wait in the queue (ms). */
  requestTimeoutMs: number;
  /** Test images the latent map is computed on (t-SNE uses at most half, at most 1000). */
  latentSample: number;
}

export const DEFAULT_LIMITS: ServeLimits = {
  maxUploadBytes: 2 * 1024 * 1024,
  maxImagePixels: 2048 * 2048,
  maxN: 64,
  maxK: 100,
  maxSteps: 32,
  maxConcurrent: 1,
  maxQueue: 256,
  requestTimeoutMs: 30_000,
  latentSample: 2000,
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
}

/**
 * Runs at most `maxActive` jobs at once; up to `maxQueue` more wait in order, each for at most
 * `queueTimeoutMs`. A job beyond the queue, or one that waited too long, fails with a 503.
 * Jobs always start on a later turn of the event loop (setImmediate), so a burst of requests is
 * parsed and queued (or refused) while a synchronous model job runs, rather than each being run
 * to completion as it arrives.
 */
export class Limiter {
  private active = 0;
  private readonly queue: Job<unknown>[] = [];
  private closed = false;

  constructor(
    readonly maxActive: number,
    readonly maxQueue: number,
    readonly queueTimeoutMs: number,
  ) {
    if (!(maxActive >= 1) || !(maxQueue >= 0)) throw new ProbsemError('the limiter needs maxActive ≥ 1 and maxQueue ≥ 0', 'BAD_OPTION');
  }

  get stats() {
    return { active: this.active, queued: this.queue.length, maxActive: this.maxActive, maxQueue: this.maxQueue };
  }

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) {
        reject(new HttpError(503, 'SHUTTING_DOWN', 'the server is shutting down'));
        return;
      }
      const job: Job<T> = { fn, resolve, reject };
      if (this.active < this.maxActive && this.queue.length === 0) {
        this.start(job);
        return;
      }
      if (this.queue.length >= this.maxQueue) {
        reject(
          new HttpError(503, 'BUSY', `the server is busy: ${this.active} jobs running and ${this.queue.length} waiting (the queue holds ${this.maxQueue}); retry shortly`, {}, { 'retry-after': '1' }),
        );
        return;
      }
      job.timer = setTimeout(() => {
        const i = this.queue.indexOf(job as Job<unknown>);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new HttpError(503, 'QUEUE_TIMEOUT', `the request waited ${this.queueTimeoutMs} ms in the queue without being served; retry shortly`, {}, { 'retry-after': '1' }));
      }, this.queueTimeoutMs);
      this.queue.push(job as Job<unknown>);
    });
  }

  /** Refuses new jobs; queued and running ones still finish. */
  close(): void {
    this.closed = true;
  }

  private start<T>(job: Job<T>): void {
    this.active++;
    setImmediate(async () => {
      try {
        job.resolve(await job.fn());
      } catch (e) {
        job.reject(e);
      } finally {
        this.active--;
        this.next();
      }
    });
  }

  private next(): void {
    while (this.active < this.maxActive && this.queue.length) {
      const job = this.queue.shift()!;
      clearTimeout(job.timer);
      this.start(job);
    }
  }
}
