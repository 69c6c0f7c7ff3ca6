/**
 * Adam (Kingma & Ba), the one optimizer of both engines: the moments live beside the flat
 * parameters in kernel memory and an update is one kernel call per run of consecutive parameters
 * sharing a learning-rate scale. Only the parameters a step trains are updated — the others keep
 * their weights and moments, as autodiff leaves variables without a gradient — while the step
 * count t, shared by every parameter, advances every step. The state serialises as
 * `m:<name>` / `v:<name>` tensors (the format of every checkpoint probsem has written).
 */
import { ProbsemError } from '../core/errors.js';
import type { Buf, Kernels } from '../core/wasm/kernels.js';
import type { FlatParams, Segment } from '../ops/flat-params.js';
import { readEntry, type TensorEntry, validateManifest } from '../nn/params.js';

/** Consecutive parameters sharing a learning-rate scale, updated by one kernel call. */
interface AdamRun {
  offset: number;
  length: number;
  scale: number;
}

export class Adam {
  /** Steps taken. */
  t = 0;
  /** The learning-rate schedule's factor for the next update (the trainer sets it each step). */
  lrFactor = 1;
  readonly beta1 = 0.9;
  readonly beta2 = 0.999;
  readonly eps = 1e-8;
  private readonly m: Buf;
  private readonly v: Buf;
  /** Runs per set of trained parameters (a model has one or a few: SCAN's stages). */
  private readonly runs = new Map<string, AdamRun[]>();

  constructor(
    private readonly kernels: Kernels,
    private readonly flat: FlatParams,
    readonly lr: number,
    private readonly lrScale: (name: string) => number = () => 1,
  ) {
    this.m = kernels.alloc(flat.size);
    this.v = kernels.alloc(flat.size);
  }

  private runsFor(segments: Segment[]): AdamRun[] {
    const key = segments.map((s) => s.name).join('\n');
    let runs = this.runs.get(key);
    if (runs) return runs;
    runs = [];
    for (const seg of segments) {
      const last = runs[runs.length - 1];
      const s = this.lrScale(seg.name);
      if (last && last.scale === s && last.offset + last.length === seg.offset) last.length += seg.length;
      else runs.push({ offset: seg.offset, length: seg.length, scale: s });
    }
    this.runs.set(key, runs);
    return runs;
  }

  /** One update of `segments` (in layout order) from the gradients in the flat gradient buffer. */
  update(segments: Segment[]): void {
    const t = this.t + 1;
    const bc1 = 1 - this.beta1 ** t;
    const sqrtBc2 = Math.sqrt(1 - this.beta2 ** t);
    for (const r of this.runsFor(segments)) {
      this.kernels.adam(this.flat.values, this.flat.grads, this.m, this.v, r.offset, r.length, {
        step: (this.lr * this.lrFactor * r.scale) / bc1,
        beta1: this.beta1,
        beta2: this.beta2,
        sqrtBc2,
        eps: this.eps,
      });
    }
    this.t = t;
  }

  serialize(): { t: number; manifest: TensorEntry[]; blob: Uint8Array } {
    // Fresh views: kernel memory may have grown since the moments were allocated.
    const m = this.kernels.view(this.m);
    const v = this.kernels.view(this.v);
    const manifest: TensorEntry[] = [];
    const out = new Float32Array(2 * this.flat.size);
    let off = 0;
    for (const seg of this.flat.layout) {
      for (const [key, src] of [[`m:${seg.name}`, m], [`v:${seg.name}`, v]] as const) {
        out.set(src.subarray(seg.offset, seg.offset + seg.length), off);
        manifest.push({ name: key, shape: seg.shape, dtype: 'float32', offset: off, length: seg.length });
        off += seg.length;
      }
    }
    return { t: this.t, manifest, blob: new Uint8Array(out.buffer) };
  }

  load(t: number, manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    validateManifest(manifest, source, blob.byteLength / 4);
    if (!Number.isSafeInteger(t) || t < 0) throw new ProbsemError(`${source}: optimizer step count ${t} is invalid`, 'MODEL_FORMAT');
    const byName = new Map(manifest.map((e) => [e.name, e]));
    const m = this.kernels.view(this.m);
    const v = this.kernels.view(this.v);
    const entries = this.flat.layout.flatMap((seg) =>
      ([[`m:${seg.name}`, m], [`v:${seg.name}`, v]] as const).map(([key, dst]) => {
        const e = byName.get(key);
        if (!e || e.length !== seg.length) throw new ProbsemError(`${source}: optimizer state ${key} missing or wrong size`, 'MODEL_FORMAT');
        return { seg, dst, values: readEntry(e, blob, source) };
      }),
    );
    // Everything is read and checked before anything is written: a bad file leaves the state as it was.
    for (const { seg, dst, values } of entries) dst.set(values, seg.offset);
    this.t = t;
  }
}
