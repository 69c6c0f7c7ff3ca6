/**
 * The kernel training step: the model's objective, recorded once per batch shape and phase as a
 * tape (ops/tape.ts), computes loss and gradients on probsem's wasm kernels, and Adam updates the
 * flat parameter region in place. The tfjs variables are only written when the trainer asks
 * (checkpoints, the end of training), so a step touches no tfjs op. Optimizer state serialises
 * exactly like `Adam`'s, so checkpoints move between the engines.
 */
import { Rng } from '../core/random.js';
import { type Buf, Kernels } from '../core/wasm/kernels.js';
import type { HostBatch, Trainable } from '../models/base.js';
import { FlatParams, type Segment, slice } from '../ops/flat-params.js';
import { type Tape, TapeOps } from '../ops/tape.js';
import type { TensorEntry } from '../nn/params.js';
import { FlatAdam } from './flat-adam.js';
import { nonFiniteGradient, nonFiniteLoss } from './gradients.js';

export interface TapeStepperOptions {
  lr: number;
  seed: number;
  /** Kernel threads (1 or 2; default from the machine and PROBSEM_THREADS). */
  threads?: number;
  /** Fused multiply-adds (default: yes where available, unless PROBSEM_FMA=0). */
  fma?: boolean;
}

/** Consecutive parameters sharing a learning-rate scale, updated by one kernel call. */
interface AdamRun {
  offset: number;
  length: number;
  scale: number;
}

/** A recorded objective and what its step updates. */
interface Compiled {
  tape: Tape;
  runs: AdamRun[];
  segments: Segment[];
  /** Whether every parameter trains (the gradient check can then take the whole buffer at once). */
  all: boolean;
}

export class TapeStepper {
  readonly kind = 'fast';
  /** Adam's step count (shared by every parameter, trained this step or not, as in `Adam`). */
  private t = 0;
  private lrFactor = 1;
  private readonly m: Buf;
  private readonly v: Buf;
  private readonly hyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  /** Tapes by phase and batch shape. */
  private readonly tapes = new Map<string, Compiled>();

  private constructor(
    readonly model: Trainable,
    readonly kernels: Kernels,
    readonly flat: FlatParams,
    private readonly opts: TapeStepperOptions,
  ) {
    this.m = kernels.alloc(flat.size);
    this.v = kernels.alloc(flat.size);
  }

  static async create(model: Trainable, opts: TapeStepperOptions): Promise<TapeStepper> {
    const kernels = await Kernels.create({ threads: opts.threads, fma: opts.fma });
    try {
      return new TapeStepper(model, kernels, new FlatParams(kernels, model.params), opts);
    } catch (e) {
      await kernels.dispose();
      throw e;
    }
  }

  /** The tape for this step's phase and batch shape, recorded on first use. */
  private compiled(batch: HostBatch, step: number): Compiled {
    const phase = this.model.phase?.(step) ?? 'train';
    const key = `${phase}|${batch.rows}|${batch.pixels}|${batch.labelDim}`;
    let c = this.tapes.get(key);
    if (c) return c;
    const ops = new TapeOps(this.kernels, this.flat, batch.rows, { pixels: batch.pixels, labelDim: batch.labelDim });
    const tape = ops.compile(this.model.objective(ops, phase));
    const trained = new Set(tape.trained);
    const segments = this.flat.layout.filter((s) => trained.has(s.name));
    const runs: AdamRun[] = [];
    for (const seg of segments) {
      const last = runs[runs.length - 1];
      const s = this.model.params.lrScale(seg.name);
      if (last && last.scale === s && last.offset + last.length === seg.offset) last.length += seg.length;
      else runs.push({ offset: seg.offset, length: seg.length, scale: s });
    }
    c = { tape, runs, segments, all: segments.length === this.flat.layout.length };
    this.tapes.set(key, c);
    return c;
  }

  setLrFactor(f: number): void {
    this.lrFactor = f;
  }

  /**
   * One step: loss and gradients, the non-finite guard, then Adam. Throws NonFiniteError without
   * updating. Parameters the objective does not reach this step are skipped by both the guard and
   * Adam (as the tfjs engine's Adam skips parameters without a gradient); the step count still advances.
   */
  stepRaw(batch: HostBatch, step: number): Record<string, number> {
    const { tape, runs, segments, all } = this.compiled(batch, step);
    const terms = tape.run(batch, Rng.for(this.opts.seed, 'step', step), step);
    if (!Number.isFinite(terms.loss)) throw nonFiniteLoss(step, terms);
    const k = this.kernels;
    const grads = this.flat.grads;
    if (all ? k.countNonFinite(grads) > 0 : runs.some((r) => k.countNonFinite(slice(grads, r.offset, r.length)) > 0)) {
      throw nonFiniteGradient(
        step,
        segments.filter((s) => k.countNonFinite(slice(grads, s.offset, s.length)) > 0).map((s) => s.name),
      );
    }
    const t = this.t + 1;
    const bc1 = 1 - this.hyper.beta1 ** t;
    const sqrtBc2 = Math.sqrt(1 - this.hyper.beta2 ** t);
    for (const r of runs) {
      k.adam(this.flat.values, grads, this.m, this.v, r.offset, r.length, {
        step: (this.opts.lr * this.lrFactor * r.scale) / bc1,
        beta1: this.hyper.beta1,
        beta2: this.hyper.beta2,
        sqrtBc2,
        eps: this.hyper.eps,
      });
    }
    this.t = t;
    return terms;
  }

  /** Adam's moments as the serialiser sees them (fresh views: kernel memory may have grown since). */
  private flatAdam(): FlatAdam {
    const a = new FlatAdam(this.flat.layout, this.opts.lr, (n) => this.model.params.lrScale(n), { m: this.kernels.view(this.m), v: this.kernels.view(this.v) });
    a.t = this.t;
    return a;
  }

  optimizerState(): { t: number; manifest: TensorEntry[]; blob: Uint8Array } {
    return this.flatAdam().serialize();
  }

  loadOptimizerState(t: number, manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    const a = this.flatAdam();
    a.load(t, manifest, blob, source);
    this.t = a.t;
  }

  syncFromModel(): void {
    this.flat.pull();
  }

  syncToModel(): void {
    this.flat.push();
  }

  async dispose(): Promise<void> {
    await this.kernels.dispose();
  }
}
