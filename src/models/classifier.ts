/**
 * An MLP image classifier. probsem trains one per dataset as the "judge" of generation accuracy:
 * it decides whether an image generated for a label shows that label.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { Rng } from '../core/random.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { type Batch, type LossResult, type Trainable, batchMean } from './base.js';

export const ClassifierConfigSchema = z
  .object({
    inputDim: z.number().int().positive(),
    numClasses: z.number().int().positive(),
    hidden: z.array(z.number().int().positive()).default([1024, 512]),
    /** Dropout rate on the input and hidden layers during training. */
    dropout: z.number().min(0).max(0.9).default(0.2),
    /** Random translation of training images by up to this many pixels (0: none). */
    augmentShift: z.number().int().min(0).max(8).default(2),
    /** Image height (for translation); width = inputDim / height. */
    height: z.number().int().positive().default(28),
  })
  .strict();
export type ClassifierConfig = z.infer<typeof ClassifierConfigSchema>;

export class Classifier implements Trainable {
  readonly name = 'classifier';
  readonly params = new ParamSet();
  private readonly layers: Mlp[];

  constructor(
    readonly config: ClassifierConfig,
    rng: Rng,
  ) {
    const sizes = [config.inputDim, ...config.hidden, config.numClasses];
    // One Mlp per layer so dropout can sit between them.
    this.layers = sizes.slice(0, -1).map(
      (s, i) => new Mlp(this.params, `layer${i}`, [s, sizes[i + 1]], rng, 'relu', i === sizes.length - 2 ? 'linear' : 'relu'),
    );
  }

  /** Class logits (no dropout: evaluation). */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    return this.forward(x, null);
  }

  private forward(x: tf.Tensor2D, rng: Rng | null): tf.Tensor2D {
    let h = x;
    this.layers.forEach((layer, i) => {
      if (rng && this.config.dropout > 0) h = dropout(h, this.config.dropout, rng);
      h = layer.apply(h, i > 0);
    });
    return h;
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
