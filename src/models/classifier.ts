/**
 * Image classifiers. probsem trains one per dataset as the "judge" of generation accuracy: it
 * decides whether an image generated for a label shows that label. The default is a small CNN
 * (one 5×5 convolution, 2×2 max-pool, a dense layer): its first layer is an im2col product, so it
 * needs no convolution gradient kernel (tfjs-backend-wasm has none for filters).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { denseConstInput } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { im2col, transposeRows } from '../nn/conv.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { type Batch, type LossResult, type Trainable, batchMean } from './base.js';

export const ClassifierConfigSchema = z
  .object({
    inputDim: z.number().int().positive(),
    numClasses: z.number().int().positive(),
    /** Image height; width = inputDim / height. */
    height: z.number().int().positive().default(28),
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
  .refine((c) => c.inputDim % c.height === 0, { message: 'inputDim must be a multiple of height (square-pixel images)' })
  .refine((c) => c.arch !== 'cnn' || (c.kernel + 1 <= c.height && c.kernel + 1 <= c.inputDim / c.height), {
    message: 'kernel too large for the image',
  });
export type ClassifierConfig = z.infer<typeof ClassifierConfigSchema>;

export class Classifier implements Trainable {
  readonly name = 'classifier';
  readonly params = new ParamSet();
  private readonly layers: Mlp[];
  private readonly conv: { w: tf.Variable; b: tf.Variable } | null = null;
  private readonly width: number;

  constructor(
    readonly config: ClassifierConfig,
    rng: Rng,
  ) {
    this.width = config.inputDim / config.height;
    const hidden = config.hidden ?? (config.arch === 'cnn' ? [256] : [1024, 512]);
    let features = config.inputDim;
    if (config.arch === 'cnn') {
      const k = config.kernel;
      this.conv = {
        w: this.params.add('conv.w', [k * k, config.filters], 'glorot', rng),
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
    return tf.tidy(() => this.forward(x, null));
  }

  private forward(x: tf.Tensor2D, rng: Rng | null): tf.Tensor2D {
    let h = this.conv ? (rng ? this.convolve(x) : this.convolveForInference(x)) : x;
    this.layers.forEach((layer, i) => {
      if (rng && this.config.dropout > 0 && (i > 0 || this.conv)) h = dropout(h, this.config.dropout, rng);
      h = layer.apply(h, i > 0 || this.conv !== null);
    });
    return h;
  }

  /** 5×5 valid convolution as an im2col product, ReLU, 2×2 max-pool, flattened. */
  private convolve(x: tf.Tensor2D): tf.Tensor2D {
    const n = x.shape[0];
    const [oh, ow] = this.convSize();
    const kk = this.config.kernel ** 2;
    const geometry = { height: this.config.height, width: this.width, channels: 1, kernel: this.config.kernel, stride: 1, pad: 0 };
    const patches = im2col(x.dataSync() as Float32Array, n, geometry);
    const cols = tf.tensor2d(patches, [n * oh * ow, kk]);
    const colsT = tf.tensor2d(transposeRows(patches, n * oh * ow, kk), [kk, n * oh * ow]);
    const act = denseConstInput(cols, colsT, this.conv!.w as tf.Tensor2D, this.conv!.b as tf.Tensor1D, 'relu');
    const pooled = tf.maxPool(tf.reshape(act, [n, oh, ow, this.config.filters]) as tf.Tensor4D, 2, 2, 'valid');
    return tf.reshape(pooled, [n, -1]) as tf.Tensor2D;
  }

  /**
   * The same convolution for evaluation, where no gradient is needed: the backend's own conv2d
   * (multi-threaded XNNPACK on wasm) instead of a JavaScript im2col and its transpose, which
   * dominated judging generated images. The filters' im2col layout [k·k, filters] is conv2d's
   * [k, k, 1, filters] row-major.
   */
  private convolveForInference(x: tf.Tensor2D): tf.Tensor2D {
    const n = x.shape[0];
    const k = this.config.kernel;
    const images = tf.reshape(x, [n, this.config.height, this.width, 1]) as tf.Tensor4D;
    const filters = tf.reshape(this.conv!.w, [k, k, 1, this.config.filters]) as tf.Tensor4D;
    const act = tf.fused.conv2d({ x: images, filter: filters, strides: 1, pad: 'valid', bias: this.conv!.b, activation: 'relu' });
    const pooled = tf.maxPool(act, 2, 2, 'valid');
    return tf.reshape(pooled, [n, -1]) as tf.Tensor2D;
  }

  loss(batch: Batch, _step: number): LossResult {
    const x = this.config.augmentShift > 0 ? translate(batch.x, this.config.height, this.config.augmentShift, batch.rng) : batch.x;
    const logits = this.forward(x, batch.rng);
    const onehot = tf.oneHot(tf.tensor1d(batch.labels, 'int32'), this.config.numClasses);
    const ce = tf.neg(batchMean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1) as tf.Tensor1D)) as tf.Scalar;
    const acc = tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(onehot, 1)), 'float32')) as tf.Scalar;
    return { total: ce, terms: { crossEntropy: ce, accuracy: acc } };
  }
}

/** Inverted dropout with a mask drawn from the step's seeded stream. */
function dropout(x: tf.Tensor2D, rate: number, rng: Rng): tf.Tensor2D {
  const mask = new Float32Array(x.size);
  const keep = 1 / (1 - rate);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.uniform() < rate ? 0 : keep;
  return tf.mul(x, tf.tensor2d(mask, x.shape)) as tf.Tensor2D;
}

/** Shifts each image by a random offset in [-max, max]² (zero fill): cheap augmentation. */
function translate(x: tf.Tensor2D, height: number, max: number, rng: Rng): tf.Tensor2D {
  const [n, d] = x.shape;
  const width = d / height;
  const src = x.dataSync();
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const dy = rng.int(2 * max + 1) - max;
    const dx = rng.int(2 * max + 1) - max;
    for (let r = 0; r < height; r++) {
      const sr = r - dy;
      if (sr < 0 || sr >= height) continue;
      for (let c = 0; c < width; c++) {
        const sc = c - dx;
        if (sc >= 0 && sc < width) out[i * d + r * width + c] = src[i * d + sr * width + sc];
      }
    }
  }
  return tf.tensor2d(out, [n, d]);
}
