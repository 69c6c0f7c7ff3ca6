/**
 * A model's parameters and gradients as one flat region of kernel memory, mirrored from its tfjs
 * variables: what the tape reads and writes, and what one Adam call updates.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import type { Buf, Kernels } from '../core/wasm/kernels.js';

/** Where one named parameter lives in a flat vector. */
export interface Segment {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

/** Named variables in a fixed order (a ParamSet). */
export interface VariableList {
  entries(): [string, tf.Variable][];
}

/** Every parameter, in its insertion order, laid end to end. */
export function flatLayout(params: VariableList): Segment[] {
  let off = 0;
  return params.entries().map(([name, v]) => {
    const seg = { name, shape: [...v.shape], offset: off, length: v.size };
    off += v.size;
    return seg;
  });
}

/** A sub-buffer of `b` starting at element `offset`. */
export function slice(b: Buf, offset: number, length: number): Buf {
  if (offset < 0 || offset + length > b.length) throw new ProbsemError(`slice [${offset}, ${offset + length}) outside a buffer of ${b.length}`, 'SHAPE');
  return { ptr: b.ptr + 4 * offset, length };
}

export class FlatParams {
  readonly layout: Segment[];
  readonly values: Buf;
  readonly grads: Buf;
  private readonly byName: Map<string, Segment>;

  constructor(
    readonly kernels: Kernels,
    readonly params: VariableList,
  ) {
    this.layout = flatLayout(params);
    const n = this.layout.reduce((s, g) => s + g.length, 0);
    this.values = kernels.alloc(n);
    this.grads = kernels.alloc(n);
    this.byName = new Map(this.layout.map((s) => [s.name, s]));
    this.pull();
  }

  get size(): number {
    return this.values.length;
  }

  segment(name: string): Segment {
    const s = this.byName.get(name);
    if (!s) throw new ProbsemError(`no parameter ${name}`, 'NOT_FOUND');
    return s;
  }

  value(name: string): Buf {
    const s = this.segment(name);
    return slice(this.values, s.offset, s.length);
  }

  grad(name: string): Buf {
    const s = this.segment(name);
    return slice(this.grads, s.offset, s.length);
  }

  /** Copies the tfjs variables into kernel memory. */
  pull(): void {
    for (const [name, v] of this.params.entries()) {
      const s = this.segment(name);
      this.kernels.view(slice(this.values, s.offset, s.length)).set(v.dataSync() as Float32Array);
    }
  }

  /** Copies kernel memory back into the tfjs variables (all, or those named). */
  push(names?: string[]): void {
    const only = names ? new Set(names) : null;
    for (const [name, v] of this.params.entries()) {
      if (only && !only.has(name)) continue;
      const s = this.segment(name);
      const t = tf.tensor(this.kernels.view(slice(this.values, s.offset, s.length)).slice(), s.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
  }
}
