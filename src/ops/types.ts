/**
 * The op vocabulary a model writes its objective in, once. Two interpreters run it:
 * `TfOps` (ops/tfjs.ts) maps every op to TensorFlow.js with autodiff — the reference, and what a
 * user's tfjs-node or WebGPU backend runs — and `TapeOps` (ops/tape.ts) records the ops once per
 * batch shape and replays them every step on probsem's wasm kernels, each op with one backward.
 *
 * Every value is a 2-D matrix [rows, cols]; a scalar is [1, 1] and a bias vector [1, n].
 * Elementwise binary ops broadcast a [1, 1], [1, c] or [r, 1] operand against [r, c].
 *
 * Rules that keep both interpreters equal:
 * - The objective is straight-line code: no JavaScript decision may depend on data values. What
 *   depends on data goes through `host` (masks, indices, miners), whose function runs at that
 *   point of every step, on both engines.
 * - Randomness comes only from `normal` and from the `rng` handed to `host` functions, drawn in
 *   program order, so both engines see the same noise.
 * - Nothing may depend on the step number except through `schedule` (a value) and the model's
 *   `phase` (a change of structure, e.g. SCAN's stages): a tape is recorded per phase.
 */
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';
import type { ConvGeometry } from './im2col.js';

export type { ConvGeometry } from './im2col.js';

/** What host functions may read besides their inputs' values. */
export interface HostContext {
  /** Class index per row. */
  labels: Int32Array;
  /** Second class per row (two-object images). */
  labels2?: Int32Array;
  /** Tag indices of each row (datasets whose images carry tag sets; a row's set may be empty). */
  tagSets?: ReadonlyArray<ArrayLike<number>>;
  rows: number;
  /** The step's random stream (shared with `normal`, in program order). */
  rng: Rng;
  step: number;
}

/** A differentiable op computed on the host: its forward returns the value and a backward closure. */
export interface CustomOp {
  /** For error messages. */
  name: string;
  forward(inputs: Float32Array[], shapes: [number, number][], ctx: HostContext): { value: Float32Array; backward(grad: Float32Array): (Float32Array | null)[] };
}

export type DenseActivation = 'linear' | 'relu';
export type UnaryOp = 'neg' | 'exp' | 'log' | 'sqrt' | 'square' | 'relu' | 'sigmoid' | 'softplus';

export interface Ops<T> {
  /** Rows of the batch being computed. */
  readonly rows: number;
  shape(t: T): [number, number];

  // Sources.
  /** A model parameter by its ParamSet name (1-D biases come as [1, n]). */
  param(name: string): T;
  /** The batch's images 'x' [rows, pixels] or label inputs 'y' [rows, labelDim]. */
  input(name: 'x' | 'y'): T;
  /** A fixed matrix (no gradient). `key` lets an interpreter keep it between steps. */
  constant(values: Float32Array, shape: [number, number], key?: string): T;
  /** Standard-normal noise [rows ?? batch rows, cols] from the step's stream. */
  normal(cols: number, rows?: number): T;
  /** A non-differentiable value computed on the host from the inputs' values (masks, indices, miners). */
  host(shape: [number, number], inputs: T[], fn: (values: Float32Array[], ctx: HostContext) => Float32Array): T;
  /** A [1, 1] value that depends on the step (warm-up weights). */
  schedule(fn: (step: number) => number): T;
  /** An op with a hand-written gradient computed on the host. */
  custom(op: CustomOp, inputs: T[], shape: [number, number]): T;
  /** x itself, through which no gradient flows (the parameters behind it are not trained by this loss). */
  stopGradient(x: T): T;

  // Linear algebra.
  /** act(x W + b); b may be null. */
  dense(x: T, w: T, b: T | null, act?: DenseActivation): T;
  matMul(a: T, b: T, transA?: boolean, transB?: boolean): T;
  /**
   * Row-wise products of small matrices: row i of a holds an m×k matrix (row-major, or k×m when
   * transA), row i of b a k×n one; row i of the result is their m×n product. One side may have a
   * single row, shared by every row of the other.
   */
  batchMatMul(a: T, b: T, m: number, k: number, n: number, transA?: boolean): T;
  /** act(conv(x, W) + b) on images stored as rows [n, h·w·c] (NHWC), giving [n, oh·ow·filters]; W [k·k·c, filters]. */
  conv2d(x: T, w: T, b: T, g: ConvGeometry, act?: DenseActivation): T;
  /**
   * The transposed convolution (a decoder's upsampling layer): the adjoint of the convolution `g`
   * describes, which maps images [n, g.height·g.width·g.channels] to rows [n, oh·ow·f]; this maps
   * rows x [n, oh·ow·f] back to act(images + b) [n, g.height·g.width·g.channels]. W is that
   * convolution's filters [k·k·g.channels, f]; b [1, g.channels].
   */
  conv2dTranspose(x: T, w: T, b: T, g: ConvGeometry, act?: DenseActivation): T;
  /** 2×2 max-pooling, stride 2 (valid), of rows [n, h·w·c] → [n, ⌊h/2⌋·⌊w/2⌋·c]. */
  maxPool2(x: T, height: number, width: number, channels: number): T;

  // Elementwise.
  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T): T;
  div(a: T, b: T): T;
  /** x · s + t for numbers s, t. */
  affine(x: T, s: number, t?: number): T;
  unary(op: UnaryOp, x: T): T;
  /** Clipped to [lo, hi]; no gradient where it clips. */
  clip(x: T, lo: number, hi: number): T;

  // Reductions: all → [1, 1]; axis 0 (over rows) → [1, c]; axis 1 (over columns) → [r, 1].
  sum(x: T, axis?: 0 | 1): T;
  mean(x: T, axis?: 0 | 1): T;

  // Shape.
  sliceCols(x: T, start: number, width: number): T;
  sliceRows(x: T, start: number, count: number): T;
  concatCols(xs: T[]): T;
  concatRows(xs: T[]): T;
  /** Rows of `table` picked by `index` ([n, 1] integer values, e.g. from `host`). */
  gatherRows(table: T, index: T): T;

  // Likelihoods (fused: the tape computes value and gradient in one pass).
  /** Mean over rows of −log Bernoulli(target | sigmoid(logits)), summed over columns: [1, 1]. */
  bernoulliNll(logits: T, target: T): T;
  /** −log softmax(logits)[c] per row for one-hot (or soft) targets: [rows, 1]. */
  softmaxCrossEntropy(logits: T, targets: T): T;
}

/** What an objective returns: the quantity minimised and named [1, 1] terms for logging. */
export interface Objective<T> {
  total: T;
  terms: Record<string, T>;
}

/** Shape helpers shared by the interpreters. */
export function broadcastShape(a: [number, number], b: [number, number], op: string): [number, number] {
  const dim = (x: number, y: number, i: number) => {
    if (x === y || y === 1) return x;
    if (x === 1) return y;
    throw new ProbsemError(`${op}: shapes [${a}] and [${b}] do not broadcast (dimension ${i})`, 'SHAPE');
  };
  return [dim(a[0], b[0], 0), dim(a[1], b[1], 1)];
}
