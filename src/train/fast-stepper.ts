/**
 * The fast training step: the model's FastProgram computes loss and gradients on probsem's wasm
 * kernels, and Adam updates the flat parameter region in place. The tfjs variables are only
 * written when the trainer asks (checkpoints, the end of training), so a step touches no tfjs op.
 * Optimizer state serialises exactly like `Adam`'s, so checkpoints move between the paths.
 */
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { type Buf, Kernels } from '../core/wasm/kernels.js';
import type { FastProgram, HostBatch, Trainable } from '../models/base.js';
import { FastParams, type Segment, slice } from '../nn/fast.js';
import type { TensorEntry } from '../nn/params.js';
import { FlatAdam } from './flat-adam.js';
import { nonFiniteGradient, nonFiniteLoss } from './gradients.js';

export interface FastStepperOptions {
  lr: number;
  seed: number;
  /** Largest batch the step will see. */
  maxRows: number;
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

/** What a step updates: its Adam runs and the parameters they cover. */
interface Trainables {
  runs: AdamRun[];
  segments: Segment[];
  /** Whether every parameter trains (the gradient check can then take the whole buffer at once). */
  all: boolean;
}

const NONE_FROZEN: readonly string[] = [];

export class FastStepper {
  readonly kind = 'fast';
  readonly adam: FlatAdam;
  private readonly m: Buf;
  private readonly v: Buf;
  /** Trainable parameters per frozen-prefix list (programs use one or a few lists). */
  private readonly trainables = new Map<string, Trainables>();

  private constructor(
    readonly model: Trainable,
    readonly kernels: Kernels,
    readonly fp: FastParams,
    private readonly program: FastProgram,
    private readonly opts: FastStepperOptions,
  ) {
    this.m = kernels.alloc(fp.size);
    this.v = kernels.alloc(fp.size);
    const scale = (name: string) => model.params.lrScale(name);
    this.adam = new FlatAdam(fp.layout, opts.lr, scale, { m: kernels.view(this.m), v: kernels.view(this.v) });
  }

  /** The parameters a step with these frozen prefixes updates (built once per distinct list). */
  private trainablesFor(frozen: readonly string[]): Trainables {
    const key = frozen.join('\n');
    let t = this.trainables.get(key);
    if (t) return t;
    for (const p of frozen) {
      if (!this.fp.layout.some((seg) => seg.name.startsWith(p))) {
        throw new ProbsemError(`${this.model.name}: frozen prefix '${p}' matches no parameter`, 'BAD_OPTION');
      }
    }
    const segments = this.fp.layout.filter((seg) => !frozen.some((p) => seg.name.startsWith(p)));
    const runs: AdamRun[] = [];
    for (const seg of segments) {
      const last = runs[runs.length - 1];
      const s = this.model.params.lrScale(seg.name);
      if (last && last.scale === s && last.offset + last.length === seg.offset) last.length += seg.length;
      else runs.push({ offset: seg.offset, length: seg.length, scale: s });
    }
    t = { runs, segments, all: segments.length === this.fp.layout.length };
    this.trainables.set(key, t);
    return t;
  }

  /** Whether `model` has a fast path. */
  static supports(model: Trainable): boolean {
    return typeof model.fastProgram === 'function' && (model.hasFastPath?.() ?? true);
  }

  static async create(model: Trainable, opts: FastStepperOptions): Promise<FastStepper> {
    if (!model.fastProgram || !FastStepper.supports(model)) throw new ProbsemError(`${model.name} has no fast training path; use the tfjs engine`, 'BAD_OPTION');
    const kernels = await Kernels.create({ threads: opts.threads, fma: opts.fma });
    try {
      const fp = new FastParams(kernels, model.params);
      const program = model.fastProgram(fp, opts.maxRows);
      return new FastStepper(model, kernels, fp, program, opts);
    } catch (e) {
      await kernels.dispose();
      throw e;
    }
  }

  /**
   * One step: loss and gradients, the non-finite guard, then Adam. Throws NonFiniteError without
   * updating. Parameters the program freezes for this step are skipped by both the guard and Adam
   * (as the tfjs engine's Adam skips parameters without a gradient); the step count still advances.
   */
  setLrFactor(f: number): void {
    this.adam.lrFactor = f;
  }

  stepRaw(batch: HostBatch, step: number): Record<string, number> {
    const { runs, segments, all } = this.trainablesFor(this.program.frozen?.(step) ?? NONE_FROZEN);
    const terms = this.program.run(batch, Rng.for(this.opts.seed, 'step', step), step);
    if (!Number.isFinite(terms.loss)) throw nonFiniteLoss(step, terms);
    const grads = this.fp.grads;
    if (all ? this.kernels.countNonFinite(grads) > 0 : runs.some((r) => this.kernels.countNonFinite(slice(grads, r.offset, r.length)) > 0)) {
      const bad = segments.filter((s) => this.kernels.countNonFinite(slice(grads, s.offset, s.length)) > 0).map((s) => s.name);
      throw nonFiniteGradient(step, bad);
    }
    const { bc1, sqrtBc2 } = this.adam.nextStep();
    const h = this.adam.hyper;
    for (const r of runs) {
      this.kernels.adam(this.fp.values, this.fp.grads, this.m, this.v, r.offset, r.length, {
        step: (this.opts.lr * this.adam.lrFactor * r.scale) / bc1,
        beta1: h.beta1,
        beta2: h.beta2,
        sqrtBc2,
        eps: h.eps,
      });
    }
    this.adam.t += 1;
    return terms;
  }

  optimizerState(): { t: number; manifest: TensorEntry[]; blob: Uint8Array } {
    return this.adam.serialize();
  }

  loadOptimizerState(t: number, manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    this.adam.load(t, manifest, blob, source);
  }

  syncFromModel(): void {
    this.fp.pull();
  }

  syncToModel(): void {
    this.fp.push();
  }

  async dispose(): Promise<void> {
    await this.kernels.dispose();
  }
}
