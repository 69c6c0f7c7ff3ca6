/**
 * Strided convolutions for image encoders, trainable on every backend. A layer is an im2col
 * product: the k×k patches of every output position are gathered in JavaScript into one matrix
 * and multiplied by the filters, and the input gradient is the product with the filters scattered
 * back onto the image (col2im).
 *
 * Why not tf.conv2d: on the wasm backend the filter gradient has no kernel, and the input gradient
 * (Conv2DBackpropInput) and the 3-D convolutions that could stand in are plain loops: a two-layer
 * encoder step on a batch of 28×56 images took 2.4–7.5 s with them, against ~0.4 s this way
 * (measured 2026-11-22). Without a gradient tape the backend's conv2d runs instead (2.5× faster).
 *
 * Layout: activations are NHWC, flattened per image to rows of h·w·c; a patch row lists
 * (ky, kx, channel) in row-major order, so the filters [k·k·c, filters] are conv2d's
 * [k, k, c, filters] flattened.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { ParamSet } from './params.js';

/** One convolution's input and window: zero padding `pad` on every side. */
export interface ConvGeometry {
  height: number;
  width: number;
  channels: number;
  kernel: number;
  stride: number;
  pad: number;
}

/** Output height and width of a convolution. */
export function convOutputShape(g: ConvGeometry): [number, number] {
  const oh = Math.floor((g.height + 2 * g.pad - g.kernel) / g.stride) + 1;
  const ow = Math.floor((g.width + 2 * g.pad - g.kernel) / g.stride) + 1;
  return [oh, ow];
}

/**
 * Calls `visit(imageOffset, colOffset, length)` for every run of values a patch shares with an
 * image: for each output position and window row, the columns inside the image are k·c contiguous
 * values in both (fewer at the borders), so patches move a row segment at a time.
 */
function forEachSegment(n: number, g: ConvGeometry, visit: (imageOffset: number, colOffset: number, length: number) => void): void {
  const { height: h, width: w, channels: c, kernel: k, stride: s, pad: p } = g;
  const [oh, ow] = convOutputShape(g);
  const width = k * k * c;
  let r = 0;
  for (let i = 0; i < n; i++) {
    const base = i * h * w * c;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++, r++) {
        const x0 = x * s - p;
        const lo = Math.max(0, -x0);
        const hi = Math.min(k, w - x0);
        if (hi <= lo) continue;
        for (let ky = 0; ky < k; ky++) {
          const iy = y * s + ky - p;
          if (iy >= 0 && iy < h) visit(base + (iy * w + x0 + lo) * c, r * width + (ky * k + lo) * c, (hi - lo) * c);
        }
      }
    }
  }
}

/** Patch rows [n·oh·ow, k·k·c] of n images [n, h·w·c]; positions outside the image read 0. */
export function im2col(src: Float32Array, n: number, g: ConvGeometry): Float32Array {
  const [oh, ow] = convOutputShape(g);
  const cols = new Float32Array(n * oh * ow * g.kernel * g.kernel * g.channels);
  forEachSegment(n, g, (from, to, len) => cols.set(src.subarray(from, from + len), to));
  return cols;
}

/** The adjoint of im2col: adds every patch row's entries back onto the images, [n, h·w·c]. */
export function col2im(cols: Float32Array, n: number, g: ConvGeometry): Float32Array {
  const [oh, ow] = convOutputShape(g);
  const rows = n * oh * ow;
  const width = g.kernel * g.kernel * g.channels;
  if (cols.length !== rows * width) throw new ProbsemError(`col2im: ${cols.length} values for ${rows}×${width} patches`, 'SHAPE');
  const out = new Float32Array(n * g.height * g.width * g.channels);
  forEachSegment(n, g, (to, from, len) => {
    for (let j = 0; j < len; j++) out[to + j] += cols[from + j];
  });
  return out;
}

/** A [rows, cols] row-major matrix transposed, in JavaScript (a large transpose is slow on wasm). */
export function transposeRows(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let j = 0; j < cols; j++) out[j * rows + r] = src[off + j];
  }
  return out;
}

/**
 * One convolution with bias and ReLU on rows [n, h·w·c], giving rows [n, oh·ow·filters].
 * `inputGrad: false` skips the gradient with respect to x (a first layer on data).
 */
export function conv2dRelu(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, g: ConvGeometry, inputGrad: boolean): tf.Tensor2D {
  const n = x.shape[0];
  const [oh, ow] = convOutputShape(g);
  const filters = w.shape[1];
  if (x.shape[1] !== g.height * g.width * g.channels) {
    throw new ProbsemError(`convolution: rows of ${x.shape[1]} values, expected ${g.height}×${g.width}×${g.channels}`, 'SHAPE');
  }
  const body = (xIn: tf.Tensor, wIn: tf.Tensor, bIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const cols = im2col(xIn.dataSync() as Float32Array, n, g);
    const rows = n * oh * ow;
    const width = cols.length / rows;
    const colsTensor = tf.tensor2d(cols, [rows, width]);
    const out = tf.fused.matMul({ a: colsTensor, b: wIn as tf.Tensor2D, bias: bIn as tf.Tensor1D, activation: 'relu' });
    // The patches are kept for the filter gradient; their transpose is only built if it is asked for.
    save([out, colsTensor, wIn]);
    return {
      value: tf.reshape(out, [n, oh * ow * filters]),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ys, xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        const gOut = tf.mul(tf.reshape(dy, [rows, filters]), tf.step(ys, 0)) as tf.Tensor2D;
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
 * A stack of stride-2 k×k convolutions with ReLU ("same" padding, so each layer halves the image),
 * as the front of an image encoder. Parameters `${prefix}.conv${i}.w|b`.
 */
export class ConvStack {
  private readonly layers: { w: tf.Variable; b: tf.Variable; geometry: ConvGeometry }[] = [];
  /** Values per image after the last layer. */
  readonly outputSize: number;

  constructor(params: ParamSet, prefix: string, image: { height: number; width: number }, filters: number[], kernel: number, rng: Rng) {
    if (filters.length === 0) throw new ProbsemError('a convolution stack needs at least one layer', 'BAD_OPTION');
    if (!(kernel >= 1 && kernel % 2 === 1)) throw new ProbsemError(`convolution kernel must be an odd size, got ${kernel}`, 'BAD_OPTION');
    let h = image.height;
    let w = image.width;
    let c = 1;
    filters.forEach((f, i) => {
      const geometry: ConvGeometry = { height: h, width: w, channels: c, kernel, stride: 2, pad: (kernel - 1) / 2 };
      [h, w] = convOutputShape(geometry);
      if (h < 1 || w < 1) throw new ProbsemError(`${filters.length} stride-2 convolutions shrink a ${image.height}×${image.width} image to nothing`, 'BAD_OPTION');
      this.layers.push({
        w: params.add(`${prefix}.conv${i}.w`, [kernel * kernel * c, f], 'glorot', rng),
        b: params.add(`${prefix}.conv${i}.b`, [f], 'zeros', rng),
        geometry,
      });
      c = f;
    });
    this.outputSize = h * w * c;
  }

  /**
   * Features [n, outputSize] of images [n, h·w]; `inputGrad` as for conv2dRelu. Outside a gradient
   * tape (evaluation, retrieval) the backend's convolution computes the same values faster.
   */
  apply(x: tf.Tensor2D, inputGrad = false): tf.Tensor2D {
    if (!tf.engine().isTapeOn()) return this.infer(x);
    let h = x;
    this.layers.forEach((l, i) => {
      h = conv2dRelu(h, l.w as tf.Tensor2D, l.b as tf.Tensor1D, l.geometry, i > 0 || inputGrad);
    });
    return h;
  }

  /** The same features without a gradient, on the backend's own convolution. */
  infer(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const n = x.shape[0];
      const g0 = this.layers[0].geometry;
      let h = tf.reshape(x, [n, g0.height, g0.width, 1]) as tf.Tensor4D;
      for (const l of this.layers) {
        const g = l.geometry;
        const filter = tf.reshape(l.w, [g.kernel, g.kernel, g.channels, l.w.shape[1] as number]) as tf.Tensor4D;
        const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [g.pad, g.pad], [g.pad, g.pad], [0, 0]];
        h = tf.fused.conv2d({ x: h, filter, strides: g.stride, pad, bias: l.b, activation: 'relu' });
      }
      return tf.reshape(h, [n, -1]) as tf.Tensor2D;
    });
  }
}
