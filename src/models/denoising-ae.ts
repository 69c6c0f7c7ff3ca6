/**
 * Denoising autoencoder (lecture 003): the compression autoencoder's net, trained to reconstruct
 * the clean image from a corrupted copy — zero-mean Gaussian noise of sd σ added to every pixel,
 * the result clipped to [0, 1].
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { normalTensor } from '../core/ops.js';
import type { Rng } from '../core/random.js';
import { Autoencoder, AutoencoderConfigSchema } from './autoencoder.js';
import type { Ops } from '../ops/types.js';

export const DenoisingAeConfigSchema = AutoencoderConfigSchema.extend({
  /** Standard deviation σ of the input noise (grey values are in [0, 1]). */
  noiseSd: z
    .number({ invalid_type_error: 'noiseSd must be a number' })
    .min(0, 'noiseSd (the noise standard deviation) must be ≥ 0')
    .max(10, 'noiseSd above 10 would leave nothing of the image')
    .default(0.1),
}).strict();
export type DenoisingAeConfig = z.infer<typeof DenoisingAeConfigSchema>;

/** x + σ·ε clipped to [0, 1], ε ~ N(0, I) drawn from `rng` (so a step's corruption is seeded). */
export function corruptImages(x: tf.Tensor2D, noiseSd: number, rng: Rng): tf.Tensor2D {
  return tf.tidy(() => tf.clipByValue(tf.add(x, tf.mul(normalTensor(rng, x.shape), noiseSd)), 0, 1) as tf.Tensor2D);
}

/**
 * `corruptImages` on plain rows, drawing the same noise from `rng` and rounding as tfjs's float32
 * ops do (σ, σ·ε and the sum each to float32), so both training paths see the same input.
 */
export function corruptRows(x: Float32Array, noiseSd: number, rng: Rng, out = new Float32Array(x.length)): Float32Array {
  const noise = rng.fillNormal(out.subarray(0, x.length));
  const sd = Math.fround(noiseSd);
  for (let i = 0; i < x.length; i++) {
    const v = Math.fround(Math.fround(noise[i] * sd) + x[i]);
    noise[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return noise;
}

export class DenoisingAe extends Autoencoder<DenoisingAeConfig> {
  override readonly name: string = 'denoising-ae';

  /** `corruptImages` in an objective: the same draws from the step's stream, clipped to [0, 1]. */
  protected override trainingInput<T>(o: Ops<T>): T {
    const x = o.input('x');
    return o.clip(o.add(o.affine(o.normal(o.shape(x)[1]), this.config.noiseSd), x), 0, 1);
  }
}
