/**
 * The kernel training step: the model's objective, recorded once per batch shape and phase as a
 * tape (ops/tape.ts), computes loss and gradients on probsem's wasm kernels, and Adam updates the
 * flat parameter region in place (`Adam`, the one optimizer of both engines). The tfjs variables
 * are only written when the trainer asks (checkpoints, the end of training), so a step touches
 * no tfjs op.
 */
import { Rng } from '../core/random.js';
import { Kernels } from '../core/wasm/kernels.js';
import type { HostBatch, Trainable } from '../models/base.js';
import { FlatParams, type Segment, slice } from '../ops/flat-params.js';
import { type Tape, TapeOps } from '../ops/tape.js';
import type { TensorEntry } from '../nn/params.js';
import { Adam } from './adam.js';
import { nonFiniteGradient, nonFiniteLoss } from './gradients.js';

export interface TapeStepperOptions {
  lr: number;
  seed: number;
  /** Kernel threads (1 or 2; default from the machine and PROBSEM_THREADS). */
  threads?: number;
  /** Fused multiply-adds (default: yes where available, unless PROBSEM_FMA=0). */
  fma?: boolean;
}

/** A recorded objective and what its step updates. */
interface Compiled {
  tape: Tape;
  /** The parameters the tape trains, in layout order. */
  segments: Segment[];
  /** Whether every parameter trains (the gradient check can then take the whole buffer at once). */
  all: boolean;
}

export class TapeStepper {
  readonly kind = 'fast';
  readonly adam: Adam;
  /** Tapes by phase and batch shape. */
  private readonly tapes = new Map<string, Compiled>();

  private constructor(
    readonly model: Trainable,
    readonly kernels: Kernels,
    readonly flat: FlatParams,
    private readonly opts: TapeStepperOptions,
  ) {
    this.adam = new Adam(kernels, flat, opts.lr, (n) => model.params.lrScale(n));
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
    c = { tape, segments, all: segments.length === this.flat.layout.length };
    this.tapes.set(key, c);
    return c;
  }

  setLrFactor(f: number): void {
    this.adam.lrFactor = f;
  }

  /**
   * One step: loss and gradients, the non-finite guard, then Adam. Throws NonFiniteError without
   * updating. Parameters the objective does not reach this step are skipped by both the guard and
   * Adam (as autodiff leaves parameters without a gradient); the step count still advances.
   */
  stepRaw(batch: HostBatch, step: number): Record<string, number> {
    const { tape, segments, all } = this.compiled(batch, step);
    const terms = tape.run(batch, Rng.for(this.opts.seed, 'step', step), step);
    if (!Number.isFinite(terms.loss)) throw nonFiniteLoss(step, terms);
    const k = this.kernels;
    const grads = this.flat.grads;
    const bad = (s: Segment) => k.countNonFinite(slice(grads, s.offset, s.length)) > 0;
    if (all ? k.countNonFinite(grads) > 0 : segments.some(bad)) throw nonFiniteGradient(step, segments.filter(bad).map((s) => s.name));
    this.adam.update(segments);
    return terms;
  }

  optimizerState(): { t: number; manifest: TensorEntry[]; blob: Uint8Array } {
    return this.adam.serialize();
  }

  loadOptimizerState(t: number, manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    this.adam.load(t, manifest, blob, source);
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
