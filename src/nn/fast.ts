/**
 * The fast training path's building blocks: a model's parameters and gradients as one flat region
 * of kernel memory, and MLPs whose forward and backward passes run on the kernels with no tfjs
 * ops. Models assemble their own loss and its gradient from these (see `FastProgram` in
 * models/base.ts); the trainer applies Adam to the flat region.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import type { Buf, Kernels } from '../core/wasm/kernels.js';
import type { Mlp } from './mlp.js';
import type { ParamSet } from './params.js';

/** Where one named parameter lives in a flat vector. */
export interface Segment {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

/** Every parameter of a ParamSet, in its insertion order, laid end to end. */
export function flatLayout(params: ParamSet): Segment[] {
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

/** Throws unless 1 ≤ rows ≤ maxRows (buffers on the fast path are sized once, for maxRows). */
export function checkRows(rows: number, maxRows: number, what: string): void {
  if (!Number.isInteger(rows) || rows < 1 || rows > maxRows) {
    throw new ProbsemError(`${what}: batch of ${rows} rows, this fast network holds at most ${maxRows}`, 'SHAPE');
  }
}

/**
 * Writes rows [a_i ⊕ b_i] (widths wa and wb) into `out` in kernel memory, for networks whose
 * input is two things side by side (an image and its label input).
 */
export function concatRowsInto(k: Kernels, out: Buf, a: Float32Array, wa: number, b: Float32Array, wb: number, rows: number): void {
  const v = k.view(out);
  for (let i = 0; i < rows; i++) {
    v.set(a.subarray(i * wa, (i + 1) * wa), i * (wa + wb));
    v.set(b.subarray(i * wb, (i + 1) * wb), i * (wa + wb) + wa);
  }
}

/** A ParamSet mirrored in kernel memory: values, gradients, and the copy to and from tfjs. */
export class FastParams {
  readonly layout: Segment[];
  readonly values: Buf;
  readonly grads: Buf;
  private readonly byName: Map<string, Segment>;

  constructor(
    readonly kernels: Kernels,
    readonly params: ParamSet,
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

  private segment(name: string): Segment {
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
    for (const s of this.layout) {
      const data = this.params.get(s.name).dataSync() as Float32Array;
      this.kernels.view(slice(this.values, s.offset, s.length)).set(data);
    }
  }

  /** Copies kernel memory back into the tfjs variables. */
  push(): void {
    for (const s of this.layout) {
      const t = tf.tensor(this.kernels.view(slice(this.values, s.offset, s.length)).slice(), s.shape, 'float32');
      this.params.get(s.name).assign(t);
      t.dispose();
    }
  }
}

interface FastLayer {
  inDim: number;
  outDim: number;
  w: Buf;
  b: Buf;
  dw: Buf;
  db: Buf;
  /** Layer output, [maxRows, outDim]. */
  out: Buf;
  /** Gradient with respect to the layer's input, [maxRows, inDim]. */
  gin: Buf;
}

/**
 * An `Mlp` on the kernels: ReLU hidden layers and a linear output (the only activations the
 * models' fast paths use), batches of at most `maxRows` rows.
 */
export class FastMlp {
  private readonly layers: FastLayer[];

  constructor(
    readonly fp: FastParams,
    readonly mlp: Mlp,
    readonly maxRows: number,
  ) {
    if (mlp.hidden !== 'relu' || mlp.output !== 'linear') {
      throw new ProbsemError(`the fast path supports ReLU MLPs with a linear output, not ${mlp.hidden}/${mlp.output} (${mlp.prefix})`, 'BAD_OPTION');
    }
    const k = fp.kernels;
    this.layers = [];
    for (let i = 0; i + 1 < mlp.sizes.length; i++) {
      const inDim = mlp.sizes[i];
      const outDim = mlp.sizes[i + 1];
      this.layers.push({
        inDim,
        outDim,
        w: fp.value(`${mlp.prefix}.${i}.w`),
        b: fp.value(`${mlp.prefix}.${i}.b`),
        dw: fp.grad(`${mlp.prefix}.${i}.w`),
        db: fp.grad(`${mlp.prefix}.${i}.b`),
        out: k.alloc(maxRows * outDim),
        gin: k.alloc(maxRows * inDim),
      });
    }
  }

  /** The output buffer of the last forward pass, [rows, outDim]. */
  get output(): Buf {
    return this.layers[this.layers.length - 1].out;
  }

  /** Runs the network on x [rows, inDim] and returns its output buffer. */
  forward(x: Buf, rows: number): Buf {
    this.checkRows(rows);
    const k = this.fp.kernels;
    let input = x;
    this.layers.forEach((l, i) => {
      const last = i === this.layers.length - 1;
      k.matmul({ a: input, b: l.w, c: l.out, m: rows, n: l.outDim, k: l.inDim, bias: l.b, relu: !last });
      input = l.out;
    });
    return input;
  }

  /**
   * Given x (the last forward pass's input) and g = dLoss/dOutput [rows, outDim] (overwritten),
   * writes the parameters' gradients and returns dLoss/dx, or null with `inputGrad: false`.
   */
  backward(x: Buf, g: Buf, rows: number, inputGrad: boolean): Buf | null {
    this.checkRows(rows);
    const k = this.fp.kernels;
    let grad = g;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const l = this.layers[i];
      if (i < this.layers.length - 1) k.reluBackward(grad, l.out, rows * l.outDim);
      const input = i === 0 ? x : this.layers[i - 1].out;
      k.columnSums(grad, rows, l.outDim, l.db);
      k.matmul({ a: input, b: grad, c: l.dw, m: l.inDim, n: l.outDim, k: rows, transA: true });
      if (i > 0 || inputGrad) {
        k.matmul({ a: grad, b: l.w, c: l.gin, m: rows, n: l.inDim, k: l.outDim, transB: true });
        grad = l.gin;
      }
    }
    return inputGrad ? grad : null;
  }

  private checkRows(rows: number): void {
    checkRows(rows, this.maxRows, this.mlp.prefix);
  }
}
