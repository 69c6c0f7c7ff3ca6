/**
 * Strided convolutions for image encoders. In training (`run`, an objective's `conv2d` op) a layer
 * is an im2col product with its own gradient (ops/tfjs.ts `conv2dOp`, ops/tape.ts): on the wasm
 * backend tf.conv2d's filter gradient has no kernel and its input gradient is a plain loop (a
 * two-layer encoder step on 28×56 images took 2.4–7.5 s with them, against ~0.4 s as products,
 * measured 2026-11-22). Evaluation (`apply`) runs the backend's own conv2d (2.5× faster there).
 *
 * Layout: activations are NHWC, flattened per image to rows of h·w·c; a patch row lists
 * (ky, kx, channel) in row-major order, so the filters [k·k·c, filters] are conv2d's
 * [k, k, c, filters] flattened.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import type { Ops } from '../ops/types.js';
import { ParamSet } from './params.js';
import { type ConvGeometry, convOutputShape } from '../ops/im2col.js';

export { type ConvGeometry, col2im, convOutputShape, im2col } from '../ops/im2col.js';

/**
 * A stack of stride-2 k×k convolutions with ReLU ("same" padding, so each layer halves the image),
 * as the front of an image encoder. Parameters `${prefix}.conv${i}.w|b`.
 */
export class ConvStack {
  private readonly layers: { w: tf.Variable; b: tf.Variable; geometry: ConvGeometry; name: string }[] = [];
  /** Values per image after the last layer. */
  readonly outputSize: number;

  constructor(params: ParamSet, prefix: string, image: { height: number; width: number; channels?: number }, filters: number[], kernel: number, rng: Rng) {
    if (filters.length === 0) throw new ProbsemError('a convolution stack needs at least one layer', 'BAD_OPTION');
    if (!(kernel >= 1 && kernel % 2 === 1)) throw new ProbsemError(`convolution kernel must be an odd size, got ${kernel}`, 'BAD_OPTION');
    let h = image.height;
    let w = image.width;
    let c = image.channels ?? 1;
    filters.forEach((f, i) => {
      const geometry: ConvGeometry = { height: h, width: w, channels: c, kernel, stride: 2, pad: (kernel - 1) / 2 };
      [h, w] = convOutputShape(geometry);
      if (h < 1 || w < 1) throw new ProbsemError(`${filters.length} stride-2 convolutions shrink a ${image.height}×${image.width} image to nothing`, 'BAD_OPTION');
      this.layers.push({
        w: params.add(`${prefix}.conv${i}.w`, [kernel * kernel * c, f], 'glorot', rng),
        b: params.add(`${prefix}.conv${i}.b`, [f], 'zeros', rng),
        geometry,
        name: `${prefix}.conv${i}`,
      });
      c = f;
    });
    this.outputSize = h * w * c;
  }

  /** The same layers in an objective (ops/types.ts). */
  run<T>(o: Ops<T>, x: T): T {
    let h = x;
    for (const l of this.layers) h = o.conv2d(h, o.param(`${l.name}.w`), o.param(`${l.name}.b`), l.geometry, 'relu');
    return h;
  }

  /** Features [n, outputSize] of images [n, h·w·c], without a gradient, on the backend's own convolution (training runs `run`). */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const n = x.shape[0];
      const g0 = this.layers[0].geometry;
      let h = tf.reshape(x, [n, g0.height, g0.width, g0.channels]) as tf.Tensor4D;
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
