/**
 * Adam over one flat float32 parameter vector: the kernel engine's optimizer state (its moments in
 * kernel memory, the update itself a kernel call) serialised exactly like `Adam`'s, so checkpoints
 * move between the engines.
 */
import { ProbsemError } from '../core/errors.js';
import type { Segment } from '../ops/flat-params.js';
import { readEntry, type TensorEntry, validateManifest } from '../nn/params.js';

export type { Segment } from '../ops/flat-params.js';

export class FlatAdam {
  t = 0;
  /** The learning-rate schedule's factor for the next update (the trainer sets it each step). */
  lrFactor = 1;
  readonly m: Float32Array;
  readonly v: Float32Array;
  private readonly beta1 = 0.9;
  private readonly beta2 = 0.999;
  private readonly eps = 1e-8;

  constructor(
    readonly layout: Segment[],
    readonly lr: number,
    readonly lrScale: (name: string) => number = () => 1,
    /** Moment arrays to use in place (the fast path keeps them in kernel memory). */
    state?: { m: Float32Array; v: Float32Array },
  ) {
    const n = layout.reduce((s, g) => s + g.length, 0);
    if (state && (state.m.length !== n || state.v.length !== n)) throw new ProbsemError(`Adam state must hold ${n} values`, 'SHAPE');
    this.m = state?.m ?? new Float32Array(n);
    this.v = state?.v ?? new Float32Array(n);
  }

  /** Step size and bias corrections of the next update (t + 1), per the Adam paper. */
  nextStep(): { bc1: number; sqrtBc2: number } {
    const t = this.t + 1;
    return { bc1: 1 - this.beta1 ** t, sqrtBc2: Math.sqrt(1 - this.beta2 ** t) };
  }

  get hyper(): { beta1: number; beta2: number; eps: number } {
    return { beta1: this.beta1, beta2: this.beta2, eps: this.eps };
  }

  apply(params: Float32Array, grad: Float32Array): void {
    this.t += 1;
    const { beta1: b1, beta2: b2, eps } = this;
    const bc1 = 1 - b1 ** this.t;
    const sqrtBc2 = Math.sqrt(1 - b2 ** this.t);
    const m = this.m;
    const v = this.v;
    for (const seg of this.layout) {
      const step = ((this.lr * this.lrFactor) / bc1) * this.lrScale(seg.name);
      const end = seg.offset + seg.length;
      for (let i = seg.offset; i < end; i++) {
        const g = grad[i];
        const mi = b1 * m[i] + (1 - b1) * g;
        const vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] -= (step * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
      }
    }
  }

  serialize(): { t: number; manifest: TensorEntry[]; blob: Uint8Array } {
    const manifest: TensorEntry[] = [];
    const total = this.m.length * 2;
    const out = new Float32Array(total);
    let off = 0;
    for (const seg of this.layout) {
      for (const [key, src] of [[`m:${seg.name}`, this.m], [`v:${seg.name}`, this.v]] as const) {
        out.set(src.subarray(seg.offset, seg.offset + seg.length), off);
        manifest.push({ name: key, shape: seg.shape, dtype: 'float32', offset: off, length: seg.length });
        off += seg.length;
      }
    }
    return { t: this.t, manifest, blob: new Uint8Array(out.buffer) };
  }

  load(t: number, manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    validateManifest(manifest, source);
    if (!Number.isSafeInteger(t) || t < 0) throw new ProbsemError(`${source}: optimizer step count ${t} is invalid`, 'MODEL_FORMAT');
    const byName = new Map(manifest.map((e) => [e.name, e]));
    for (const seg of this.layout) {
      for (const [key, dst] of [[`m:${seg.name}`, this.m], [`v:${seg.name}`, this.v]] as const) {
        const e = byName.get(key);
        if (!e || e.length !== seg.length) throw new ProbsemError(`${source}: optimizer state ${key} missing or wrong size`, 'MODEL_FORMAT');
        dst.set(readEntry(e, blob, source), seg.offset);
      }
    }
    this.t = t;
  }
}
