/**
 * Image classifiers. probsem trains one per dataset as the "judge" of generation accuracy: it
 * decides whether an image generated for a label shows that label. The default is a small CNN
 * (one 5×5 convolution, 2×2 max-pool, a dense layer): its first layer is an im2col product, so it
 * needs no convolution gradient kernel (tfjs-backend-wasm has none for filters).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { accuracyTerm, classTargets } from '../distributions/objective.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import type { Objective, Ops } from '../ops/types.js';
import type { Trainable } from './base.js';

export const ClassifierConfigSchema = z
  .object({
    inputDim: z.number().int().positive(),
    numClasses: z.number().int().positive(),
    /** Image height; width = inputDim / (height × channels). */
    height: z.number().int().positive().default(28),
    /** Values per pixel: 3 for RGB stored per pixel (r, g, b); absent: grey (older judges have none). */
    channels: z.union([z.literal(1), z.literal(3)]).optional(),
    arch: z.enum(['cnn', 'mlp']).default('cnn'),
    /** cnn: convolution filters and kernel size. */
    filters: z.number().int().positive().default(32),
    kernel: z.number().int().min(1).max(9).default(5),
    /** Dense hidden layers (after the pooled convolution for cnn). Default: cnn [256], mlp [1024, 512]. */
    hidden: z.array(z.number().int().positive()).optional(),
    /** Dropout rate on dense-layer inputs during training. */
    dropout: z.number().min(0).max(0.9).default(0.3),
    /** Random translation of training images by up to this many pixels (0: none). */
    augmentShift: z.number().int().min(0).max(8).default(0),
  })
  .strict()
  .refine((c) => c.inputDim % (c.height * (c.channels ?? 1)) === 0, { message: 'inputDim must be a multiple of height × channels' })
  .refine((c) => c.arch !== 'cnn' || (c.kernel + 1 <= c.height && c.kernel + 1 <= c.inputDim / (c.height * (c.channels ?? 1))), {
    message: 'kernel too large for the image',
  });
export type ClassifierConfig = z.infer<typeof ClassifierConfigSchema>;

export class Classifier implements Trainable {
  readonly name = 'classifier';
  readonly params = new ParamSet();
  private readonly layers: Mlp[];
  private readonly conv: { w: tf.Variable; b: tf.Variable } | null = null;
  private readonly width: number;
  private readonly channels: number;

  constructor(
    readonly config: ClassifierConfig,
    rng: Rng,
  ) {
    this.channels = config.channels ?? 1;
    this.width = config.inputDim / (config.height * this.channels);
    const hidden = config.hidden ?? (config.arch === 'cnn' ? [256] : [1024, 512]);
    let features = config.inputDim;
    if (config.arch === 'cnn') {
      const k = config.kernel;
      this.conv = {
        w: this.params.add('conv.w', [k * k * this.channels, config.filters], 'glorot', rng),
        b: this.params.add('conv.b', [config.filters], 'zeros', rng),
      };
      const [ph, pw] = this.pooledSize();
      features = ph * pw * config.filters;
    }
    const sizes = [features, ...hidden, config.numClasses];
    // One Mlp per layer so dropout can sit between them.
    this.layers = sizes.slice(0, -1).map(
      (s, i) => new Mlp(this.params, `layer${i}`, [s, sizes[i + 1]], rng, 'relu', i === sizes.length - 2 ? 'linear' : 'relu'),
    );
  }

  private convSize(): [number, number] {
    return [this.config.height - this.config.kernel + 1, this.width - this.config.kernel + 1];
  }

  private pooledSize(): [number, number] {
    const [h, w] = this.convSize();
    return [Math.floor(h / 2), Math.floor(w / 2)];
  }

  /** Class logits (no dropout: evaluation). */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.forward(x));
  }

  /** Penultimate-layer activations (the last layer's input), for the judge's Fréchet distance. */
  features(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let h = this.conv ? this.convolveForInference(x) : x;
      this.layers.slice(0, -1).forEach((layer, i) => {
        h = layer.apply(h, i > 0 || this.conv !== null);
      });
      return h;
    });
  }

  private forward(x: tf.Tensor2D): tf.Tensor2D {
    let h = this.conv ? this.convolveForInference(x) : x;
    this.layers.forEach((layer, i) => {
      h = layer.apply(h, i > 0 || this.conv !== null);
    });
    return h;
  }

  /**
   * The same convolution for evaluation, where no gradient is needed: the backend's own conv2d
   * (multi-threaded XNNPACK on wasm) instead of a JavaScript im2col and its transpose, which
   * dominated judging generated images. The filters' im2col layout [k·k·c, filters] is conv2d's
   * [k, k, c, filters] row-major.
   */
  private convolveForInference(x: tf.Tensor2D): tf.Tensor2D {
    const n = x.shape[0];
    const k = this.config.kernel;
    const images = tf.reshape(x, [n, this.config.height, this.width, this.channels]) as tf.Tensor4D;
    const filters = tf.reshape(this.conv!.w, [k, k, this.channels, this.config.filters]) as tf.Tensor4D;
    const act = tf.fused.conv2d({ x: images, filter: filters, strides: 1, pad: 'valid', bias: this.conv!.b, activation: 'relu' });
    const pooled = tf.maxPool(act, 2, 2, 'valid');
    return tf.reshape(pooled, [n, -1]) as tf.Tensor2D;
  }

  /**
   * Cross-entropy of the training images: shifted (`augmentShift`), then 5×5 valid convolution,
   * ReLU and 2×2 max-pool (cnn), and the dense layers with inverted dropout on their inputs, the
   * shifts and masks drawn from the step's stream in that order.
   */
  objective<T>(o: Ops<T>): Objective<T> {
    const { height, augmentShift, dropout, kernel, filters, numClasses } = this.config;
    let h = o.input('x');
    if (augmentShift > 0) h = o.host(o.shape(h), [h], ([x], { rng }) => translate(x, o.rows, height, this.channels, augmentShift, rng));
    if (this.conv) {
      const [ch, cw] = this.convSize();
      const g = { height, width: this.width, channels: this.channels, kernel, stride: 1, pad: 0 };
      h = o.maxPool2(o.conv2d(h, o.param('conv.w'), o.param('conv.b'), g, 'relu'), ch, cw, filters);
    }
    this.layers.forEach((layer, i) => {
      if (dropout > 0 && (i > 0 || this.conv)) {
        const keep = 1 / (1 - dropout);
        const shape = o.shape(h);
        const mask = o.host(shape, [], (_v, { rng }) => {
          const m = new Float32Array(shape[0] * shape[1]);
          for (let j = 0; j < m.length; j++) m[j] = rng.uniform() < dropout ? 0 : keep;
          return m;
        });
        h = o.mul(h, mask);
      }
      h = layer.run(o, h);
    });
    const targets = classTargets(o, numClasses);
    const ce = o.mean(o.softmaxCrossEntropy(h, targets));
    const accuracy = accuracyTerm(o, h, targets);
    return { total: ce, terms: { crossEntropy: ce, accuracy } };
  }
}

/** Shifts each image (c values per pixel) by a random offset in [-max, max]² (zero fill): cheap augmentation. */
function translate(src: Float32Array, n: number, height: number, c: number, max: number, rng: Rng): Float32Array {
  const d = src.length / n;
  const width = d / (height * c);
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const dy = rng.int(2 * max + 1) - max;
    const dx = rng.int(2 * max + 1) - max;
    for (let r = 0; r < height; r++) {
      const sr = r - dy;
      if (sr < 0 || sr >= height) continue;
      for (let col = 0; col < width; col++) {
        const sc = col - dx;
        if (sc < 0 || sc >= width) continue;
        for (let ch = 0; ch < c; ch++) out[i * d + (r * width + col) * c + ch] = src[i * d + (sr * width + sc) * c + ch];
      }
    }
  }
  return out;
}
