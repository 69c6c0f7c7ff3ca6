/**
 * The shared model interface. Models own their losses; the trainer owns the loop and knows
 * nothing of any specific model.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';
import type { DiagGaussian, FullGaussian, Gaussian } from '../distributions/gaussian.js';
import type { ParamSet } from '../nn/params.js';
import { PixelLikelihoodSchema } from '../distributions/pixel-likelihood.js';
import { tfObjective } from '../ops/tfjs.js';
import type { Objective, Ops } from '../ops/types.js';

/** One minibatch. `rng` is the step's own noise stream (reparameterisation, dropout). */
export interface Batch {
  /** Grey values in [0, 1], [B, pixels]. */
  x: tf.Tensor2D;
  /** Label inputs for label encoders, [B, labelDim] (one-hot rows for one-hot labels). */
  y: tf.Tensor2D;
  /** Class indices, length B. */
  labels: Int32Array;
  /** Second class of two-object (paired) images, length B; absent for single-label data. */
  labels2?: Int32Array;
  /** Tag indices of each image, for datasets whose images carry tag sets. */
  tagSets?: ReadonlyArray<ArrayLike<number>>;
  rng: Rng;
}

export interface LossResult {
  /** The quantity minimised. */
  total: tf.Scalar;
  /** Named terms for logging (each a scalar, already in the units reported). */
  terms: Record<string, tf.Scalar>;
}

/** One minibatch as plain arrays (what the tape takes). */
export type { TapeBatch as HostBatch } from '../ops/tape.js';

/** Anything the trainer can optimise. */
export interface Trainable {
  readonly name: string;
  readonly params: ParamSet;
  /**
   * The training objective, written once in the op vocabulary (ops/types.ts): the tape runs it on
   * probsem's kernels and `lossOf` on tfjs with autodiff. `phase` is `this.phase(step)`.
   */
  objective<T>(o: Ops<T>, phase: string): Objective<T>;
  /** A name for the objective's structure at a step, where it changes over training (SCAN's stages). */
  phase?(step: number): string;
  /** Optional data-dependent initialisation before the first step (not on resume). */
  initFromData?(stats: DataStats): void;
}

/** Training-set statistics a model may use to initialise itself. */
export interface DataStats {
  /** Mean grey value of every pixel over the training images. */
  meanImage: Float32Array;
}

/** A generative image model with a Gaussian image encoder and a Bernoulli decoder. */
export interface ImageModel extends Trainable {
  readonly config: ImageModelConfig;
  readonly latentDim: number;
  /** q(z|x); for full-covariance models its marginals (same means and variances). */
  encodeImage(x: tf.Tensor2D): DiagGaussian;
  /** The exact full-covariance q(z|x), for models whose posterior has one. */
  encodeImageFull?(x: tf.Tensor2D): FullGaussian;
  /**
   * Log-likelihood score of every label for every image, [N, C] (label inputs [C, labelDim]),
   * for models that classify by their own rule; otherwise the posterior mean is scored under q(z|l).
   */
  scoreLabels?(x: tf.Tensor2D, labelInputs: tf.Tensor2D): tf.Tensor2D;
  /**
   * The query distribution of a set of labels (label inputs [M, labelDim]) as a batch of one, for
   * models with their own rule (informed priors: the vectors' mean and shrunk covariance);
   * otherwise q(z|l) of the mean label input is used.
   */
  encodeLabelSet?(y: tf.Tensor2D): Gaussian;
  /** Logits of p(x|z): the image is their sigmoid (Bernoulli, or the mean of the `likelihood` chosen). */
  decode(z: tf.Tensor2D): tf.Tensor2D;
  /** q(z|l) for label inputs [N, labelDim], where the model has a label encoder. */
  encodeLabels?(y: tf.Tensor2D): DiagGaussian;
  /**
   * Bernoulli logits of images generated for label inputs y [N, labelDim] from standard-normal
   * noise eps [N, latent], for models that generate from labels without a label encoder (CVAE:
   * z = eps decoded together with y). Generation uses it when present, else z ~ q(z|l) decoded.
   */
  generateLogits?(y: tf.Tensor2D, eps: tf.Tensor2D): tf.Tensor2D;
  /**
   * Bernoulli logits reconstructing x [N, pixels] given its label inputs y [N, labelDim], for
   * models whose encoder and decoder both take the label (CVAE); eps [N, latent] draws z from
   * q(z|x,l), null uses its mean. Reconstruction error uses it when present.
   */
  reconstructLogits?(x: tf.Tensor2D, y: tf.Tensor2D, eps: tf.Tensor2D | null): tf.Tensor2D;
}

const positiveInt = z.number().int().positive();

/** Options every image model shares; each model's schema extends it. */
export const ImageModelConfigSchema = z
  .object({
    /** Pixels per image (784 for 28×28). */
    inputDim: positiveInt,
    /** Number of classes in the label vocabulary. */
    numClasses: positiveInt,
    /** Width of a label input (numClasses for one-hot labels). */
    labelDim: positiveInt.optional(),
    latent: z.number().int().min(1, 'latent must be at least 1').max(1024).default(10),
    encoderHidden: z.array(positiveInt).default([512, 64]),
    decoderHidden: z.array(positiveInt).default([64, 512]),
  })
  .strict();
export type ImageModelConfig = z.infer<typeof ImageModelConfigSchema>;

/**
 * Options of models whose image decoder may be convolutional and whose likelihood may be other
 * than Bernoulli (the encoder–decoder family, CVAE and the autoencoders).
 */
export const ConvDecoderFields = {
  /**
   * A convolutional decoder instead of the MLP's output layer: the channels of the start map and of
   * each stride-2 transposed convolution's input, e.g. [64, 32] (7×7×64 → 14×14×32 → 28×28×C);
   * `decoderHidden` then lists dense layers before the start map. Absent: the MLP decoder.
   */
  decoderConv: z.array(positiveInt).min(1).max(5).optional(),
  /** Kernel size of the transposed convolutions (odd); absent: 5. */
  decoderKernel: z.number().int().min(1).max(9).refine((k) => k % 2 === 1, 'decoderKernel must be odd').optional(),
  /** p(x|z) on intensities: bernoulli (absent: the papers'), gaussian or logistic (distributions/pixel-likelihood.ts). */
  likelihood: PixelLikelihoodSchema.optional(),
  /** Image height in pixels (width = inputDim / (height × channels)); filled from the dataset by `probsem train`. */
  imageHeight: positiveInt.optional(),
  /** Values per pixel: 3 for RGB (stored per pixel), absent or 1 for grey; filled from the dataset. */
  imageChannels: z.union([z.literal(1), z.literal(3)]).optional(),
};

/**
 * Options of models that can also put convolutions in front of their image encoder (models
 * extending their schema with these fields; the encoder–decoder family implements them).
 */
export const ConvEncoderFields = {
  ...ConvDecoderFields,
  /** Filters of each stride-2 convolution (with ReLU) before the encoder MLP, e.g. [32, 64]; absent: none. */
  encoderConv: z.array(positiveInt).min(1).max(4).optional(),
  /** Kernel size of those convolutions (odd; "same" padding). */
  encoderKernel: z.number().int().min(1).max(9).refine((k) => k % 2 === 1, 'encoderKernel must be odd').default(5),
};
export type ConvEncoderConfig = Partial<z.infer<z.ZodObject<typeof ConvEncoderFields>>>;

/**
 * `--arch conv`: a convolutional encoder and decoder sized to the image, as model options. Stride-2
 * 5×5 layers, 32 filters doubling per layer: two for images up to 28 pixels a side (28×28 →
 * 7×7×64), three up to 48 (32×32 → 4×4×128), four beyond (64×64 → 4×4×256); the decoder mirrors
 * the encoder from its start map, and sizes 2^L does not divide are cropped (ConvDecoder). One
 * dense layer on each side: encoderHidden [256], the decoder's dense layer straight from z.
 */
export function convArchitecture(height: number, width: number): Record<string, unknown> {
  const side = Math.max(height, width);
  const layers = side <= 28 ? 2 : side <= 48 ? 3 : 4;
  const filters = Array.from({ length: layers }, (_, i) => 32 * 2 ** i);
  return { encoderConv: filters, decoderConv: [...filters].reverse(), encoderHidden: [256], decoderHidden: [] };
}

/** Whether a config needs the image's height and channels from the dataset (convolutions, per-channel likelihood scales). */
export function needsImageShape(o: { encoderConv?: unknown; decoderConv?: unknown; likelihood?: unknown } | undefined): boolean {
  return o !== undefined && (o.encoderConv !== undefined || o.decoderConv !== undefined || (o.likelihood !== undefined && o.likelihood !== 'bernoulli'));
}

/** Splits an encoder output [B, 2K] into (mean, logVar). */
export function splitMoments(h: tf.Tensor2D, k: number): [tf.Tensor2D, tf.Tensor2D] {
  const [m, lv] = tf.split(h, [k, k], 1);
  return [m as tf.Tensor2D, lv as tf.Tensor2D];
}

/** The model's loss for a batch on tfjs, with autodiff: what the tfjs engine and evaluations differentiate. */
export function lossOf(model: Trainable, batch: Batch, step: number): LossResult {
  const phase = model.phase?.(step) ?? 'train';
  return tfObjective((o) => model.objective(o, phase), model.params, batch, step);
}

/** A model config checked against its schema (defaults filled in), or an error naming each bad field. */
export function parseModelConfig<S extends z.ZodTypeAny>(schema: S, config: unknown, name: string): z.infer<S> {
  const parsed = schema.safeParse(config);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`).join('; ');
    throw new ProbsemError(`invalid ${name} config: ${msg}`, 'BAD_OPTION');
  }
  return parsed.data;
}
