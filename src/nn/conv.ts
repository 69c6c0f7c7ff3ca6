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
import { Mlp } from './mlp.js';
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

/** What an image decoder offers its model: the objective's layers, evaluation, and the bias initFromData sets. */
export interface ImageDecoder {
  run<T>(o: Ops<T>, z: T): T;
  apply(z: tf.Tensor2D): tf.Tensor2D;
  /** The bias added last, one per output value (initialised to the mean image's logits). */
  outputBias(): tf.Variable;
}

/**
 * A convolutional image decoder: z → the `hidden` dense layers → a dense ReLU layer to a start map
 * ⌈H/2^L⌉×⌈W/2^L⌉×filters[0] → L stride-2 k×k transposed convolutions (ReLU; the last one linear
 * to the image's channels) → the top-left H×W window where 2^L does not divide the image (the
 * crop is explicit: the extra rows and columns are dropped) → plus a bias per output value.
 * Each upsampling layer is the adjoint of the encoder's "same" convolution (ops/types.ts
 * `conv2dTranspose`), so an encoder's [32, 64] mirrors a decoder's [64, 32].
 * Parameters `${prefix}.fc.*`, `${prefix}.up${i}.w|b`, `${prefix}.out.b`.
 */
export class ConvDecoder implements ImageDecoder {
  private readonly head: Mlp;
  private readonly layers: { geometry: ConvGeometry; name: string; relu: boolean; w: tf.Variable; b: tf.Variable }[] = [];
  private readonly bias: tf.Variable;
  /** The upsampled size before the crop. */
  private readonly full: { height: number; width: number };
  private readonly start: { height: number; width: number; channels: number };

  constructor(
    params: ParamSet,
    private readonly prefix: string,
    inputSize: number,
    hidden: number[],
    private readonly image: { height: number; width: number; channels: number },
    filters: number[],
    kernel: number,
    rng: Rng,
  ) {
    const L = filters.length;
    if (L === 0) throw new ProbsemError('a convolutional decoder needs at least one layer (decoderConv)', 'BAD_OPTION');
    if (!(kernel >= 1 && kernel % 2 === 1)) throw new ProbsemError(`decoder kernel must be an odd size, got ${kernel}`, 'BAD_OPTION');
    const { height: H, width: W, channels: C } = image;
    const scale = 2 ** L;
    // From 1×1, L − 1 layers would already cover the image: the last layer could only be cropped away.
    if (scale / 2 >= H && scale / 2 >= W) {
      throw new ProbsemError(`a convolutional decoder of ${L} stride-2 layers (decoderConv=[${filters}]) cannot reach a ${H}×${W} image: it doubles a 1×1 map past the image; use at most ${Math.max(1, Math.ceil(Math.log2(Math.max(H, W))))} layers`, 'BAD_OPTION');
    }
    this.start = { height: Math.ceil(H / scale), width: Math.ceil(W / scale), channels: filters[0] };
    this.full = { height: this.start.height * scale, width: this.start.width * scale };
    this.head = new Mlp(params, `${prefix}.fc`, [inputSize, ...hidden, this.start.height * this.start.width * filters[0]], rng, 'relu', 'relu');
    let [h, w] = [this.start.height, this.start.width];
    filters.forEach((fin, i) => {
      const fout = i + 1 < L ? filters[i + 1] : C;
      const geometry: ConvGeometry = { height: 2 * h, width: 2 * w, channels: fout, kernel, stride: 2, pad: (kernel - 1) / 2 };
      const [oh, ow] = convOutputShape(geometry);
      if (oh !== h || ow !== w) throw new ProbsemError(`decoder layer ${i}: a ${2 * h}×${2 * w} map does not convolve back to ${h}×${w}`, 'INTERNAL');
      const wv = params.add(`${prefix}.up${i}.w`, [kernel * kernel * fout, fin], 'glorot', rng);
      const bv = params.add(`${prefix}.up${i}.b`, [fout], 'zeros', rng);
      this.layers.push({ geometry, name: `${prefix}.up${i}`, relu: i + 1 < L, w: wv, b: bv });
      [h, w] = [2 * h, 2 * w];
    });
    this.bias = params.add(`${prefix}.out.b`, [H * W * C], 'zeros', rng);
  }

  outputBias(): tf.Variable {
    return this.bias;
  }

  run<T>(o: Ops<T>, z: T): T {
    let h = this.head.run(o, z);
    for (const l of this.layers) h = o.conv2dTranspose(h, o.param(`${l.name}.w`), o.param(`${l.name}.b`), l.geometry, l.relu ? 'relu' : 'linear');
    if (this.full.height !== this.image.height || this.full.width !== this.image.width) {
      // Keep the top-left H×W: each kept image row is W·C contiguous values of a full row.
      const { height, width, channels } = this.image;
      const rowLen = this.full.width * channels;
      h = o.concatCols(Array.from({ length: height }, (_, r) => o.sliceCols(h, r * rowLen, width * channels)));
    }
    return o.add(h, o.param(`${this.prefix}.out.b`));
  }

  /** Logits [n, H·W·C] for z [n, input], on the backend's own transposed convolution (evaluation). */
  apply(z: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const n = z.shape[0];
      let h = tf.reshape(this.head.apply(z), [n, this.start.height, this.start.width, this.start.channels]) as tf.Tensor4D;
      for (const l of this.layers) {
        const g = l.geometry;
        const inC = h.shape[3];
        const filter = tf.reshape(l.w, [g.kernel, g.kernel, g.channels, inC]) as tf.Tensor4D;
        const up = tf.conv2dTranspose(h, filter, [n, g.height, g.width, g.channels], 2, g.pad);
        const biased = tf.add(up, l.b) as tf.Tensor4D;
        h = l.relu ? tf.relu(biased) : biased;
      }
      if (this.full.height !== this.image.height || this.full.width !== this.image.width) {
        h = tf.slice(h, [0, 0, 0, 0], [n, this.image.height, this.image.width, this.image.channels]);
      }
      return tf.add(tf.reshape(h, [n, -1]), this.bias) as tf.Tensor2D;
    });
  }
}
