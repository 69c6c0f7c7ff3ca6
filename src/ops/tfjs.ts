/**
 * The reference interpreter of the op vocabulary: every op is a TensorFlow.js op and gradients come
 * from tfjs's autodiff (`tf.variableGrads`). It runs on whatever backend tfjs has (wasm here,
 * tfjs-node or WebGPU where a user has them) and is what the tape is tested against.
 *
 * Dense layers and convolutions keep probsem's own gradients (core/ops.ts `dense`, `conv2dOp`
 * below): on tfjs-backend-wasm the stock ones take slow transposed paths.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { dense, normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { type ConvGeometry, col2im, convOutputShape, im2col } from './im2col.js';
import type { CustomOp, DenseActivation, HostContext, Objective, Ops, UnaryOp } from './types.js';

type T = tf.Tensor;

/** The batch as tensors, plus what host functions read. */
export interface TfBatchInputs {
  x: tf.Tensor2D;
  y: tf.Tensor2D;
  labels: Int32Array;
  labels2?: Int32Array;
  tagSets?: ReadonlyArray<ArrayLike<number>>;
  rng: Rng;
}

/** Something with named variables (a ParamSet). */
export interface VariableSource {
  get(name: string): tf.Variable;
}

export class TfOps implements Ops<T> {
  readonly rows: number;
  /** Tensors no gradient flows into (data, noise, constants, host values): dense layers skip their input gradient. */
  private readonly data = new Set<T>();
  private readonly ctx: HostContext;

  constructor(
    private readonly params: VariableSource,
    private readonly batch: TfBatchInputs,
    step: number,
  ) {
    this.rows = batch.x.shape[0];
    this.ctx = { labels: batch.labels, labels2: batch.labels2, tagSets: batch.tagSets, rows: this.rows, rng: batch.rng, step };
  }

  shape(t: T): [number, number] {
    if (t.rank === 2) return [t.shape[0] as number, t.shape[1] as number];
    if (t.rank === 1) return [1, t.shape[0] as number];
    if (t.rank === 0) return [1, 1];
    throw new ProbsemError(`ops work on matrices, got a tensor of rank ${t.rank}`, 'SHAPE');
  }

  private asMatrix(t: T): tf.Tensor2D {
    return (t.rank === 2 ? t : tf.reshape(t, this.shape(t))) as tf.Tensor2D;
  }

  private mark<U extends T>(t: U): U {
    this.data.add(t);
    return t;
  }

  param(name: string): T {
    return this.params.get(name);
  }

  input(name: 'x' | 'y'): T {
    return this.mark(name === 'x' ? this.batch.x : this.batch.y);
  }

  constant(values: Float32Array, shape: [number, number]): T {
    return this.mark(tf.tensor2d(values, shape));
  }

  normal(cols: number, rows = this.rows): T {
    return this.mark(normalTensor(this.batch.rng, [rows, cols]));
  }

  host(shape: [number, number], inputs: T[], fn: (values: Float32Array[], ctx: HostContext) => Float32Array): T {
    const out = fn(inputs.map((t) => t.dataSync() as Float32Array), this.ctx);
    if (out.length !== shape[0] * shape[1]) throw new ProbsemError(`host op returned ${out.length} values for shape [${shape}]`, 'SHAPE');
    return this.mark(tf.tensor2d(out, shape));
  }

  schedule(fn: (step: number) => number): T {
    return this.mark(tf.tensor2d([fn(this.ctx.step)], [1, 1]));
  }

  custom(op: CustomOp, inputs: T[], shape: [number, number]): T {
    const shapes = inputs.map((t) => this.shape(t));
    const body = (...args: unknown[]) => {
      const xs = args.slice(0, inputs.length) as T[];
      const r = op.forward(xs.map((t) => t.dataSync() as Float32Array), shapes, this.ctx);
      if (r.value.length !== shape[0] * shape[1]) throw new ProbsemError(`${op.name}: returned ${r.value.length} values for shape [${shape}]`, 'SHAPE');
      return {
        value: tf.tensor2d(r.value, shape),
        gradFunc: (dy: T) => {
          const gs = r.backward(dy.dataSync() as Float32Array);
          return xs.map((x, i) => (gs[i] ? tf.tensor(gs[i]!, x.shape) : tf.zerosLike(x)));
        },
      };
    };
    const f = tf.customGrad(body as unknown as Parameters<typeof tf.customGrad>[0]);
    return f(...inputs) as T;
  }

  stopGradient(x: T): T {
    return this.mark(tf.tensor2d((x.dataSync() as Float32Array).slice(), this.shape(x)));
  }

  dense(x: T, w: T, b: T | null, act: DenseActivation = 'linear'): T {
    const [, n] = this.shape(w);
    const bias = b ? (b.rank === 1 ? b : tf.reshape(b, [n])) : tf.zeros([n]);
    return dense(this.asMatrix(x), w as tf.Tensor2D, bias as tf.Tensor1D, act, !this.data.has(x));
  }

  matMul(a: T, b: T, transA = false, transB = false): T {
    return tf.matMul(this.asMatrix(a), this.asMatrix(b), transA, transB);
  }

  batchMatMul(a: T, b: T, m: number, k: number, n: number, transA = false): T {
    const [ra] = this.shape(a);
    const [rb] = this.shape(b);
    const r = Math.max(ra, rb);
    if ((ra !== r && ra !== 1) || (rb !== r && rb !== 1)) throw new ProbsemError(`batchMatMul: ${ra} and ${rb} rows do not broadcast`, 'SHAPE');
    let a3 = tf.reshape(a, transA ? [ra, k, m] : [ra, m, k]) as tf.Tensor3D;
    let b3 = tf.reshape(b, [rb, k, n]) as tf.Tensor3D;
    if (ra !== r) a3 = tf.tile(a3, [r, 1, 1]);
    if (rb !== r) b3 = tf.tile(b3, [r, 1, 1]);
    return tf.reshape(tf.matMul(a3, b3, transA, false), [r, m * n]);
  }

  conv2d(x: T, w: T, b: T, g: ConvGeometry, act: DenseActivation = 'relu'): T {
    const bias = b.rank === 1 ? b : tf.reshape(b, [this.shape(b)[1]]);
    return conv2dOp(this.asMatrix(x), w as tf.Tensor2D, bias as tf.Tensor1D, g, !this.data.has(x), act);
  }

  conv2dTranspose(x: T, w: T, b: T, g: ConvGeometry, act: DenseActivation = 'linear'): T {
    const bias = b.rank === 1 ? b : tf.reshape(b, [this.shape(b)[1]]);
    return conv2dTransposeOp(this.asMatrix(x), w as tf.Tensor2D, bias as tf.Tensor1D, g, !this.data.has(x), act);
  }

  maxPool2(x: T, height: number, width: number, channels: number): T {
    const n = this.shape(x)[0];
    const pooled = tf.maxPool(tf.reshape(x, [n, height, width, channels]) as tf.Tensor4D, 2, 2, 'valid');
    return tf.reshape(pooled, [n, -1]);
  }

  add(a: T, b: T): T {
    return tf.add(a, b);
  }

  sub(a: T, b: T): T {
    return tf.sub(a, b);
  }

  mul(a: T, b: T): T {
    return tf.mul(a, b);
  }

  div(a: T, b: T): T {
    return tf.div(a, b);
  }

  affine(x: T, s: number, t = 0): T {
    const y = s === 1 ? x : tf.mul(x, s);
    return t === 0 ? y : tf.add(y, t);
  }

  unary(op: UnaryOp, x: T): T {
    switch (op) {
      case 'neg':
        return tf.neg(x);
      case 'exp':
        return tf.exp(x);
      case 'log':
        return tf.log(x);
      case 'sqrt':
        return tf.sqrt(x);
      case 'square':
        return tf.square(x);
      case 'relu':
        return tf.relu(x);
      case 'sigmoid':
        return tf.sigmoid(x);
      case 'softplus':
        return tf.softplus(x);
    }
  }

  clip(x: T, lo: number, hi: number): T {
    return tf.clipByValue(x, lo, hi);
  }

  sum(x: T, axis?: 0 | 1): T {
    return axis === undefined ? tf.reshape(tf.sum(x), [1, 1]) : tf.sum(this.asMatrix(x), axis, true);
  }

  mean(x: T, axis?: 0 | 1): T {
    return axis === undefined ? tf.reshape(tf.mean(x), [1, 1]) : tf.mean(this.asMatrix(x), axis, true);
  }

  sliceCols(x: T, start: number, width: number): T {
    return tf.slice(this.asMatrix(x), [0, start], [-1, width]);
  }

  sliceRows(x: T, start: number, count: number): T {
    return tf.slice(this.asMatrix(x), [start, 0], [count, -1]);
  }

  concatCols(xs: T[]): T {
    return tf.concat(xs.map((x) => this.asMatrix(x)), 1);
  }

  concatRows(xs: T[]): T {
    return tf.concat(xs.map((x) => this.asMatrix(x)), 0);
  }

  gatherRows(table: T, index: T): T {
    const [s] = this.shape(table);
    const idx = Int32Array.from(index.dataSync() as Float32Array, (v) => Math.round(v));
    for (const i of idx) if (!(i >= 0 && i < s)) throw new ProbsemError(`gatherRows: index ${i} outside a table of ${s} rows`, 'SHAPE');
    if (this.data.has(table)) return this.mark(tf.gather(this.asMatrix(table), tf.tensor1d(idx, 'int32')));
    // A one-hot selection product: its gradient is a plain product (wasm has no gather gradient).
    const sel = new Float32Array(idx.length * s);
    idx.forEach((j, i) => (sel[i * s + j] = 1));
    return tf.matMul(tf.tensor2d(sel, [idx.length, s]), this.asMatrix(table));
  }

  bernoulliNll(logits: T, target: T): T {
    const perRow = tf.sum(tf.sub(tf.softplus(logits), tf.mul(target, logits)), 1);
    return tf.reshape(tf.mean(perRow), [1, 1]);
  }

  softmaxCrossEntropy(logits: T, targets: T): T {
    return tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(this.asMatrix(logits))), 1, true));
  }
}

/**
 * An interpreter for formulas on tensors outside training (no parameters, no batch): evaluating
 * an objective's building blocks, e.g. a penalty on given codes, with the same code training runs.
 */
export function plainTfOps(): TfOps {
  const none = tf.zeros([1, 1]) as tf.Tensor2D;
  return new TfOps({ get: (name) => { throw new ProbsemError(`no parameter ${name} here`, 'NOT_FOUND'); } }, { x: none, y: none, labels: new Int32Array(1), rng: new Rng(0) }, 0);
}

/** The loss of an objective under tfjs autodiff: total and terms as scalars, ready for `tf.variableGrads`. */
export function tfObjective(objective: (o: TfOps) => Objective<T>, params: VariableSource, batch: TfBatchInputs, step: number): { total: tf.Scalar; terms: Record<string, tf.Scalar> } {
  const r = objective(new TfOps(params, batch, step));
  const scalar = (t: T, what: string) => {
    if (t.size !== 1) throw new ProbsemError(`objective term ${what} has shape [${t.shape}], not a scalar`, 'SHAPE');
    return tf.reshape(t, []) as tf.Scalar;
  };
  return { total: scalar(r.total, 'total'), terms: Object.fromEntries(Object.entries(r.terms).map(([k, v]) => [k, scalar(v, k)])) };
}

/**
 * act(conv(x, W) + b) as an im2col product with its own gradient: the patches are gathered in
 * JavaScript and multiplied by the filters; the input gradient is the product with the filters
 * scattered back (col2im). On wasm tfjs's conv2d has no filter-gradient kernel and its input
 * gradient is a plain loop (2.4–7.5 s against ~0.4 s per encoder step this way, 2026-11-22).
 */
export function conv2dOp(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, g: ConvGeometry, inputGrad: boolean, act: DenseActivation = 'relu'): tf.Tensor2D {
  const n = x.shape[0];
  const [oh, ow] = convOutputShape(g);
  const filters = w.shape[1];
  if (x.shape[1] !== g.height * g.width * g.channels) {
    throw new ProbsemError(`convolution: rows of ${x.shape[1]} values, expected ${g.height}×${g.width}×${g.channels}`, 'SHAPE');
  }
  const body = (xIn: tf.Tensor, wIn: tf.Tensor, bIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const cols = im2col(xIn.dataSync() as Float32Array, n, g);
    const rows = n * oh * ow;
    const colsTensor = tf.tensor2d(cols, [rows, cols.length / rows]);
    const out = tf.fused.matMul({ a: colsTensor, b: wIn as tf.Tensor2D, bias: bIn as tf.Tensor1D, activation: act });
    save([out, colsTensor, wIn]);
    return {
      value: tf.reshape(out, [n, oh * ow * filters]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ys, xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const flat = tf.reshape(dy, [rows, filters]) as tf.Tensor2D;
        const gOut = act === 'relu' ? (tf.mul(flat, tf.step(ys, 0)) as tf.Tensor2D) : flat;
        // dW = colsᵀ g computed as (gᵀ cols)ᵀ: transposing g and the small result is cheaper than the patches.
        const dw = tf.transpose(tf.matMul(tf.transpose(gOut), xs));
        const db = tf.sum(gOut, 0);
        let dx: tf.Tensor;
        if (inputGrad) {
          const dCols = tf.matMul(gOut, tf.transpose(ws));
          dx = tf.tensor2d(col2im(dCols.dataSync() as Float32Array, n, g), [n, g.height * g.width * g.channels]);
          dCols.dispose();
        } else dx = tf.zeros([n, g.height * g.width * g.channels]);
        return [dx, dw, db];
      },
    };
  };
  const f = tf.customGrad(body as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, w, b) as tf.Tensor2D;
}

/**
 * act(convᵀ(x, W) + b): rows of the convolution's output shape [n, oh·ow·f] become images
 * [n, h·w·c]. The patch values are one product, x as [n·oh·ow, f] times Wᵀ, scattered back onto
 * the images (col2im); the gradients are the same two steps reversed (im2col of the image
 * gradient, then products), with JavaScript patch moves as in `conv2dOp`.
 */
export function conv2dTransposeOp(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, g: ConvGeometry, inputGrad: boolean, act: DenseActivation = 'linear'): tf.Tensor2D {
  const n = x.shape[0];
  const [oh, ow] = convOutputShape(g);
  const filters = w.shape[1];
  const rows = n * oh * ow;
  const pixels = g.height * g.width * g.channels;
  if (x.shape[1] !== oh * ow * filters) {
    throw new ProbsemError(`transposed convolution: rows of ${x.shape[1]} values, expected ${oh}×${ow}×${filters}`, 'SHAPE');
  }
  const body = (xIn: tf.Tensor, wIn: tf.Tensor, bIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const xr = tf.reshape(xIn, [rows, filters]) as tf.Tensor2D;
    const cols = tf.matMul(xr, wIn as tf.Tensor2D, false, true);
    const images = tf.tensor2d(col2im(cols.dataSync() as Float32Array, n, g), [n, pixels]);
    cols.dispose();
    const pre = tf.add(tf.reshape(images, [n * g.height * g.width, g.channels]), bIn);
    const out = act === 'relu' ? tf.relu(pre) : pre;
    save([out, xr, wIn]);
    return {
      value: tf.reshape(out, [n, pixels]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ys, xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const flat = tf.reshape(dy, [n * g.height * g.width, g.channels]) as tf.Tensor2D;
        const gOut = act === 'relu' ? (tf.mul(flat, tf.step(ys, 0)) as tf.Tensor2D) : flat;
        const db = tf.sum(gOut, 0);
        const gCols = tf.tensor2d(im2col(gOut.dataSync() as Float32Array, n, g), [rows, g.kernel * g.kernel * g.channels]);
        const dw = tf.matMul(gCols, xs, true, false);
        const dx = inputGrad ? tf.reshape(tf.matMul(gCols, ws), [n, oh * ow * filters]) : tf.zeros([n, oh * ow * filters]);
        return [dx, dw, db];
      },
    };
  };
  const f = tf.customGrad(body as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, w, b) as tf.Tensor2D;
}
