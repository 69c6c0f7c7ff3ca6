/**
 * The task-level library API: one typed call per task, each accepting what the previous one
 * returns — `createModel` → `train` → `saveModel` → `loadRun` → `run.embed / annotate / generate /
 * retrieve / similar` and `evaluate`. The lower layers (registry, trainer, runs/) stay available
 * for people who need their knobs; this file only composes them.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import type { z } from 'zod';
import { currentBackend } from './core/backend.js';
import { ProbsemError } from './core/errors.js';
import { type Dataset, type Split, datasetHash, pixelsOf } from './data/dataset.js';
import { loadDataset } from './data/registry.js';
import { decodeImage } from './data/image-decode.js';
import { encodeGridPng } from './data/png.js';
import { type ImageModel, type Trainable, needsImageShape } from './models/base.js';
import type { Autoencoder, AutoencoderConfigSchema } from './models/autoencoder.js';
import type { BetaVae, BetaVaeConfigSchema } from './models/beta-vae.js';
import type { Classifier, ClassifierConfigSchema } from './models/classifier.js';
import type { Cvae, CvaeConfigSchema } from './models/cvae.js';
import type { DenoisingAe, DenoisingAeConfigSchema } from './models/denoising-ae.js';
import type { Informed, InformedConfigSchema } from './models/informed.js';
import type { Jmvae, JmvaeConfigSchema } from './models/jmvae.js';
import type { Poe, PoeConfigSchema } from './models/poe.js';
import type { Mopoe, MopoeConfigSchema } from './models/mopoe.js';
import type { Mmvae, MmvaeConfigSchema } from './models/mmvae.js';
import type { PseStar, PseStarConfigSchema } from './models/pse-star.js';
import type { Pse, PseConfigSchema } from './models/pse.js';
import type { Scan, ScanConfigSchema } from './models/scan.js';
import type { SparseAe, SparseAeConfigSchema } from './models/sparse-ae.js';
import type { BimodalAe, BimodalAeConfigSchema } from './models/bimodal-ae.js';
import type { Trelbo, TrelboConfigSchema } from './models/trelbo.js';
import type { Tvae, TvaeConfigSchema } from './models/tvae.js';
import type { Vae, VaeConfigSchema } from './models/vae.js';
import { type ModelFile, type ModelProvenance, loadModel, saveModel as saveModelFiles } from './models/persist.js';
import { createModel as createRegisteredModel, getModelEntry } from './models/registry.js';
import { type EvalOptions, type EvalReport, annotateImage, evaluateRun, runImageShape } from './runs/runs.js';
import { encodeSplitGaussians, imageQuery, indexQuery, queryDistribution, rankByDistance, retrieveImages, similarImages } from './runs/retrieval.js';
import type { KlIndex } from './index/kl-index.js';
import { searchIndex } from './runs/search-index.js';
import { parseDistance, type Distance } from './index/distances.js';
import { generateForPhrases, runWordVectors } from './runs/words.js';
import type { LabelEncodingInfo } from './text/labels.js';
import { type EngineChoice, type TrainProgress, type TrainResult, train as trainOnSplit } from './train/trainer.js';
import type { LrSchedule } from './train/schedule.js';

/** Every registered model: its class and the config it accepts (defaults may be left out). */
export interface ModelTypes {
  vae: { model: Vae; config: z.input<typeof VaeConfigSchema> };
  'beta-vae': { model: BetaVae; config: z.input<typeof BetaVaeConfigSchema> };
  pse: { model: Pse; config: z.input<typeof PseConfigSchema> };
  'pse-star': { model: PseStar; config: z.input<typeof PseStarConfigSchema> };
  cvae: { model: Cvae; config: z.input<typeof CvaeConfigSchema> };
  jmvae: { model: Jmvae; config: z.input<typeof JmvaeConfigSchema> };
  trelbo: { model: Trelbo; config: z.input<typeof TrelboConfigSchema> };
  scan: { model: Scan; config: z.input<typeof ScanConfigSchema> };
  informed: { model: Informed; config: z.input<typeof InformedConfigSchema> };
  tvae: { model: Tvae; config: z.input<typeof TvaeConfigSchema> };
  poe: { model: Poe; config: z.input<typeof PoeConfigSchema> };
  mopoe: { model: Mopoe; config: z.input<typeof MopoeConfigSchema> };
  mmvae: { model: Mmvae; config: z.input<typeof MmvaeConfigSchema> };
  ae: { model: Autoencoder; config: z.input<typeof AutoencoderConfigSchema> };
  'denoising-ae': { model: DenoisingAe; config: z.input<typeof DenoisingAeConfigSchema> };
  'sparse-ae': { model: SparseAe; config: z.input<typeof SparseAeConfigSchema> };
  'bimodal-ae': { model: BimodalAe; config: z.input<typeof BimodalAeConfigSchema> };
  classifier: { model: Classifier; config: z.input<typeof ClassifierConfigSchema> };
}
export type ModelName = keyof ModelTypes;

/** Config fields `createModel` fills from its options: the dataset's sizes, SCAN's stage split from `steps`. */
type FromDataset = 'inputDim' | 'numClasses' | 'height' | 'imageHeight' | 'imageChannels' | 'stage1Steps';
type Optional<T, K extends PropertyKey> = Omit<T, K & keyof T> & Partial<Pick<T, K & keyof T>>;

export interface CreateModelOptions {
  /** Seeds the initial weights (default 0). */
  seed?: number;
  /** Fills the image size and class count from this dataset, so the config need not repeat them. */
  dataset?: Dataset;
  /** Steps the model will train for, where its config depends on the run's length (SCAN's stages). */
  steps?: number;
}

/**
 * Builds a registered model, its config checked against the model's schema (missing options take
 * their defaults). With `{ dataset }` the image size and class count come from the dataset.
 *
 * ```ts
 * const data = await loadDataset('fashion-mnist-subset');
 * const model = createModel('pse-star', { latent: 10 }, { dataset: data });
 * ```
 */
export function createModel<N extends ModelName>(name: N, config: ModelTypes[N]['config'], options?: CreateModelOptions): ModelTypes[N]['model'];
export function createModel<N extends ModelName>(
  name: N,
  config: Optional<ModelTypes[N]['config'], FromDataset>,
  options: CreateModelOptions & { dataset: Dataset },
): ModelTypes[N]['model'];
export function createModel(name: ModelName, config: object, o: CreateModelOptions = {}): Trainable {
  let full = { ...(config as Record<string, unknown>) };
  const ds = o.dataset;
  if (ds) {
    const shape = (getModelEntry(name).schema as { shape?: Record<string, unknown> }).shape ?? {};
    const fill: Record<string, unknown> = { inputDim: pixelsOf(ds), numClasses: ds.classNames.length };
    // Only the fields this model's schema has: the schemas are strict.
    if ('imageHeight' in shape && needsImageShape(full)) {
      fill.imageHeight = ds.height;
      if ((ds.channels ?? 1) !== 1) fill.imageChannels = ds.channels;
    }
    if ('height' in shape) fill.height = ds.height;
    full = { ...fill, ...full };
  }
  const prepare = getModelEntry(name).prepareRun;
  if (prepare) {
    const steps = o.steps ?? Number.NaN;
    if (name === 'scan' && full.stage1Steps === undefined && !Number.isFinite(steps)) {
      throw new ProbsemError("scan: give stage1Steps in the config, or the run's length as createModel(..., { steps })", 'BAD_OPTION');
    }
    if (ds || name !== 'informed') {
      const c = ds?.classNames.length ?? Number(full.numClasses);
      full = prepare(full, { steps, classInputs: { rows: oneHotRows(c), width: c, kind: 'onehot' } });
    }
  }
  return createRegisteredModel(name, full, o.seed ?? 0);
}

function oneHotRows(c: number): Float32Array {
  const rows = new Float32Array(c * c);
  for (let i = 0; i < c; i++) rows[i * c + i] = 1;
  return rows;
}

export interface TrainOptions {
  /** Optimiser steps; or give `epochs`. */
  steps?: number;
  /** Passes over the training split (each floor(count / batchSize) steps). */
  epochs?: number;
  /** Default 100. */
  batchSize?: number;
  /** Adam's learning rate, default 1e-3. */
  lr?: number;
  /** Seeds batching and noise (default 0): the same seed and backend give the same weights. */
  seed?: number;
  /** 'auto' (default): probsem's wasm kernels where they apply; 'tfjs': tfjs with autodiff. */
  engine?: EngineChoice;
  lrSchedule?: LrSchedule;
  /** Where to write the training log and checkpoints (none: nothing is written). */
  outDir?: string;
  onProgress?: (p: TrainProgress) => void;
  onNotice?: (msg: string) => void;
}

/** A model after `train`, with what `saveModel` records beside it. */
export interface TrainedModel<M extends Trainable = Trainable> {
  model: M;
  classNames: string[];
  labels: LabelEncodingInfo;
  dataset: NonNullable<ModelProvenance['dataset']>;
  training: NonNullable<ModelProvenance['training']>;
  result: TrainResult;
}

/**
 * Trains a model on a dataset's training split with one-hot labels (word-vector labels, held-out
 * classes and resumable runs: `trainRun`, which the CLI uses). Returns the model with the
 * provenance `saveModel` records.
 */
export async function train<M extends Trainable>(model: M, dataset: Dataset, options?: TrainOptions): Promise<TrainedModel<M>>;
/** The trainer's own signature: one split, its sizes, and every trainer option. */
export async function train(model: Trainable, split: Split, dims: { pixels: number; numClasses: number }, options: Parameters<typeof trainOnSplit>[3]): Promise<TrainResult>;
export async function train(
  model: Trainable,
  data: Dataset | Split,
  a?: TrainOptions | { pixels: number; numClasses: number },
  b?: Parameters<typeof trainOnSplit>[3],
): Promise<TrainedModel | TrainResult> {
  if (!('classNames' in data)) return trainOnSplit(model, data, a as { pixels: number; numClasses: number }, b!);
  const o = (a ?? {}) as TrainOptions;
  const batchSize = o.batchSize ?? Math.min(100, data.train.count);
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > data.train.count) {
    throw new ProbsemError(`batchSize must be an integer in [1, ${data.train.count}] (the training images), got ${batchSize}`, 'BAD_OPTION');
  }
  const steps = o.steps ?? (o.epochs ?? 1) * Math.floor(data.train.count / batchSize);
  if (!Number.isInteger(steps) || steps < 1) throw new ProbsemError(`give steps or epochs (at least one step), got ${steps}`, 'BAD_OPTION');
  const lr = o.lr ?? 1e-3;
  const seed = o.seed ?? 0;
  const config = (model as { config?: unknown }).config;
  const result = await trainOnSplit(model, data.train, { pixels: pixelsOf(data), numClasses: data.classNames.length }, {
    steps,
    batchSize,
    lr,
    seed,
    engine: o.engine,
    lrSchedule: o.lrSchedule,
    outDir: o.outDir,
    config,
    onProgress: o.onProgress,
    onNotice: o.onNotice,
  });
  return {
    model,
    classNames: data.classNames,
    labels: { kind: 'onehot' },
    dataset: datasetRecord(data),
    training: {
      seed,
      steps,
      batchSize,
      lr,
      backend: currentBackend(),
      engine: result.engine,
      ...(o.lrSchedule && o.lrSchedule !== 'constant' ? { lrSchedule: o.lrSchedule } : {}),
      seconds: result.seconds,
      finalTerms: result.finalTerms,
    },
    result,
  };
}

function datasetRecord(ds: Dataset): NonNullable<ModelProvenance['dataset']> {
  return { name: ds.name, source: ds.source, hash: datasetHash(ds), height: ds.height, width: ds.width, ...((ds.channels ?? 1) !== 1 ? { channels: ds.channels } : {}), trainCount: ds.train.count };
}

/**
 * Writes a trained model as a run directory (model.json and weights.bin, atomically) that the CLI,
 * the server and `loadRun` read; it records the dataset, so evaluation finds it again.
 */
export function saveModel(dir: string, trained: TrainedModel): ModelFile;
export function saveModel(dir: string, model: Trainable, info: { classNames: string[]; labels?: LabelEncodingInfo; holdout?: string[] } & ModelProvenance): ModelFile;
export function saveModel(dir: string, what: TrainedModel | Trainable, info?: { classNames: string[]; labels?: LabelEncodingInfo; holdout?: string[] } & ModelProvenance): ModelFile {
  if ('model' in what && 'classNames' in what && !info) {
    const t = what as TrainedModel;
    return saveModelFiles(dir, withConfig(t.model), { classNames: t.classNames, labels: t.labels, dataset: t.dataset, training: t.training });
  }
  if (!info) throw new ProbsemError('saveModel: give the result of train(), or a model with its class names', 'BAD_OPTION');
  return saveModelFiles(dir, withConfig(what as Trainable), info);
}

function withConfig(model: Trainable): Trainable & { config: object } {
  const config = (model as { config?: unknown }).config;
  if (config === null || typeof config !== 'object') throw new ProbsemError(`a ${model.name} model has no config to save`, 'BAD_OPTION');
  return model as Trainable & { config: object };
}

/**
 * An image for the one-call tasks: a file path or the bytes of an image file (PNG, JPEG, WebP, GIF:
 * made grey, fitted to the run's size, inverted when dark-on-light), or grey values in [0, 1] at
 * the run's size (row-major, light objects on a dark ground as in training), used as they are.
 */
export type ImageInput = string | Uint8Array | Float32Array | { data: ArrayLike<number>; height: number; width: number };

/** Posterior moments of images: row i is image i; `scaleTril` only for full-covariance models. */
export interface Embedding {
  count: number;
  dim: number;
  mean: Float32Array;
  variance: Float32Array;
  /** Cholesky factors L (Σ = L Lᵀ), [count, dim, dim], for models with full-covariance posteriors. */
  scaleTril?: Float32Array;
}

export interface Annotation {
  label: string;
  probability: number;
  logLikelihood: number;
}

export interface Hit {
  /** Index of the image in the searched split. */
  id: number;
  label: string;
  /** KL(q(z|query) ‖ q(z|x)), in nats. */
  kl: number;
  /** With a `distance` other than kl: its value, which ranked the hits. */
  score?: number;
}

export interface Generated {
  /** One entry per phrase, in the order given. */
  rows: { phrase: string; images: Float32Array }[];
  height: number;
  width: number;
  /** 3: each image is RGB per pixel; 1: grey. */
  channels: 1 | 3;
  /** The images as one PNG grid, a row per phrase. */
  png(): Uint8Array;
}

/**
 * A trained run loaded for use. Image tasks take `ImageInput`s; word tasks take a phrase or a
 * list of them (a run trained with word vectors knows any word its vectors know).
 */
export class Run {
  private searched: { split: Split; dataset: Dataset; index: KlIndex } | null = null;

  private constructor(
    readonly dir: string,
    readonly model: ImageModel,
    readonly meta: ModelFile,
  ) {}

  static load(dir: string): Run {
    const { model, meta } = loadModel(dir);
    if (!('encodeImage' in model)) throw new ProbsemError(`${dir} holds a ${meta.model}, not an image model`, 'BAD_OPTION');
    return new Run(dir, model as unknown as ImageModel, meta);
  }

  get classNames(): string[] {
    return this.meta.classNames;
  }

  get latentDim(): number {
    return this.model.latentDim;
  }

  /** Image height, width and channels (3: RGB per pixel, 1: grey) the model takes. */
  get imageSize(): { height: number; width: number; channels: 1 | 3 } {
    return runImageShape(this.meta);
  }

  /** q(z|x) of each image: means and variances (and Cholesky factors for full-covariance models). */
  async embed(images: ImageInput | ImageInput[]): Promise<Embedding> {
    const list = Array.isArray(images) ? images : [images];
    const { height, width, channels } = this.imageSize;
    const pixels = height * width * channels;
    const x = new Float32Array(list.length * pixels);
    for (let i = 0; i < list.length; i++) x.set(await this.pixels(list[i]), i * pixels);
    const count = list.length;
    return tf.tidy(() => {
      const xt = tf.tensor2d(x, [count, pixels]);
      const dim = this.latentDim;
      if (this.model.encodeImageFull) {
        const q = this.model.encodeImageFull(xt);
        const scaleTril = q.scaleTril.dataSync() as Float32Array;
        const variance = new Float32Array(count * dim);
        for (let n = 0; n < count; n++)
          for (let i = 0; i < dim; i++) {
            let s = 0;
            for (let j = 0; j <= i; j++) s += scaleTril[n * dim * dim + i * dim + j] ** 2;
            variance[n * dim + i] = s;
          }
        return { count, dim, mean: Float32Array.from(q.mean.dataSync()), variance, scaleTril: Float32Array.from(scaleTril) };
      }
      const q = this.model.encodeImage(xt);
      return { count, dim, mean: Float32Array.from(q.mean.dataSync()), variance: Float32Array.from(q.logVar.dataSync(), Math.exp) };
    });
  }

  /** The run's labels ranked by probability for one image. */
  async annotate(image: ImageInput, options: { top?: number } = {}): Promise<Annotation[]> {
    const ranked = annotateImage(this.model, this.meta, await this.pixels(image));
    return ranked.slice(0, options.top ?? ranked.length);
  }

  /** `n` images per phrase drawn from q(z|phrase) (pixel probabilities). */
  async generate(phrases: string | string[], options: { n?: number; seed?: number; onNotice?: (m: string) => void } = {}): Promise<Generated> {
    const list = phraseList(phrases);
    const n = options.n ?? 8;
    const vectors = await runWordVectors(this.meta, list, { onNotice: options.onNotice });
    const all = generateForPhrases(this.model, this.meta, list, vectors, n, options.seed ?? 0);
    const { height, width, channels } = this.imageSize;
    const per = n * height * width * channels;
    const rows = list.map((phrase, i) => ({ phrase, images: all.slice(i * per, (i + 1) * per) }));
    return { rows, height, width, channels, png: () => encodeGridPng(all, n * list.length, { cols: n, height, width, channels }) };
  }

  /**
   * The `k` test images of the run's dataset closest to the words, by KL(q(z|words) ‖ q(z|x)). Several
   * words form one set query (the Gaussian covering all of them). The dataset is loaded once per
   * Run, and searched through the run's exact index of it, kept in the run directory
   * (`index-cache/`), so it is encoded once, not once per process.
   */
  async retrieve(words: string | string[], options: { k?: number; dataset?: string; distance?: Distance; onNotice?: (m: string) => void } = {}): Promise<Hit[]> {
    const distance = parseDistance(options.distance, 'distance');
    const list = phraseList(words);
    const vectors = await runWordVectors(this.meta, list, { onNotice: options.onNotice });
    const query = queryDistribution(this.model, this.meta, list, vectors);
    const s = await this.searchSplit(options.dataset, options.onNotice);
    const pixels = pixelsOf(s.dataset);
    if (distance !== 'kl') return this.hits(rankByDistance(this.model, s.split, pixels, indexQuery(query), options.k ?? 10, distance, { index: s.index }));
    return this.hits(retrieveImages(this.model, s.split, pixels, query, options.k ?? 10, { index: s.index }));
  }

  /**
   * The `k` test images most similar to an image by KL(q(z|query) ‖ q(z|x)) (`dissimilar`: least);
   * a number names a test image, which is then left out of its own results.
   */
  async similar(image: ImageInput | number, options: { k?: number; dissimilar?: boolean; dataset?: string; distance?: Distance; onNotice?: (m: string) => void } = {}): Promise<Hit[]> {
    const distance = parseDistance(options.distance, 'distance');
    const s = await this.searchSplit(options.dataset, options.onNotice);
    const pixels = pixelsOf(s.dataset);
    let query: Float32Array;
    let exclude = -1;
    if (typeof image === 'number') {
      if (!Number.isInteger(image) || image < 0 || image >= s.split.count) {
        throw new ProbsemError(`image id ${image} is outside the test split (0–${s.split.count - 1})`, 'BAD_OPTION');
      }
      query = Float32Array.from(s.split.images.subarray(image * pixels, (image + 1) * pixels), (v) => v / 255);
      exclude = image;
    } else {
      query = await this.pixels(image);
    }
    if (distance !== 'kl') {
      const q = imageQuery(this.model, query, pixels);
      return this.hits(rankByDistance(this.model, s.split, pixels, q, options.k ?? 10, distance, { largest: options.dissimilar, exclude, index: s.index }));
    }
    return this.hits(similarImages(this.model, s.split, pixels, query, options.k ?? 10, { dissimilar: options.dissimilar, exclude, index: s.index }));
  }

  /** The run's measures (see `evaluate`). */
  evaluate(options: EvalOptions = {}): Promise<EvalReport> {
    return evaluateRun(this.dir, options);
  }

  /** Every posterior of the searched split as the KL index takes them. */
  async searchGaussians(dataset?: string) {
    const s = await this.searchSplit(dataset);
    return encodeSplitGaussians(this.model, s.split, pixelsOf(s.dataset));
  }

  /** The exact index of the searched split (default: the test split of the run's dataset) that retrieve and similar search. */
  async searchIndex(options: { dataset?: string; onNotice?: (m: string) => void } = {}): Promise<KlIndex> {
    return (await this.searchSplit(options.dataset, options.onNotice)).index;
  }

  /** Frees the model's weights. */
  dispose(): void {
    this.model.params.dispose();
  }

  private hits(r: { ids: number[]; labels: number[]; kl: number[]; score?: number[] }): Hit[] {
    return r.ids.map((id, i) => ({ id, label: this.meta.classNames[r.labels[i]] ?? String(r.labels[i]), kl: r.kl[i], ...(r.score ? { score: r.score[i] } : {}) }));
  }

  private async searchSplit(dataset?: string, onNotice?: (m: string) => void) {
    const name = dataset ?? this.meta.dataset?.name;
    if (!name) throw new ProbsemError(`${this.dir} records no dataset: pass { dataset: NAME } to search one`, 'BAD_OPTION');
    if (this.searched?.dataset.name !== name) {
      const ds = await loadDataset(name, { onNotice });
      if (pixelsOf(ds) !== Number(this.model.config.inputDim)) {
        throw new ProbsemError(`dataset ${name} has ${ds.height}×${ds.width} images but the run takes ${this.model.config.inputDim} pixels`, 'SHAPE');
      }
      this.searched = { split: ds.test, dataset: ds, index: searchIndex(this.dir, this.model, this.meta, ds, { onNotice }) };
    }
    return this.searched!;
  }

  private async pixels(image: ImageInput): Promise<Float32Array> {
    const { height, width, channels } = this.imageSize;
    const pixels = height * width * channels;
    // Colour runs take pictures as they are, as their datasets were read.
    const decode = (bytes: Uint8Array, source: string) => decodeImage(bytes, { height, width, channels, asIs: channels === 3, source });
    if (typeof image === 'string') {
      if (!existsSync(image)) throw new ProbsemError(`image ${image} not found`, 'NOT_FOUND');
      if (!statSync(image).isFile()) throw new ProbsemError(`image ${image} is not a file`, 'BAD_OPTION');
      return (await decode(readFileSync(image), image)).pixels;
    }
    if (image instanceof Float32Array || !(image instanceof Uint8Array)) {
      const data = image instanceof Float32Array ? image : image.data;
      if (!(image instanceof Float32Array) && (image.height !== height || image.width !== width)) {
        throw new ProbsemError(`the image is ${image.height}×${image.width} but the run takes ${height}×${width}; pass a file or its bytes to have it resized`, 'SHAPE');
      }
      if (data.length !== pixels) throw new ProbsemError(`the image has ${data.length} values but the run takes ${height}×${width}${channels === 3 ? '×3 (RGB per pixel)' : ''} = ${pixels}`, 'SHAPE');
      const out = Float32Array.from(data);
      for (let i = 0; i < out.length; i++) {
        if (!(out[i] >= 0 && out[i] <= 1)) throw new ProbsemError(`pixel ${i} is ${out[i]}; grey values must be in [0, 1]`, 'BAD_INPUT');
      }
      return out;
    }
    return (await decode(image, 'the buffer')).pixels;
  }
}

function phraseList(words: string | string[]): string[] {
  const list = (Array.isArray(words) ? words : [words]).flatMap((w) => w.split(',')).map((w) => w.trim()).filter(Boolean);
  if (list.length === 0) throw new ProbsemError('no words given', 'BAD_OPTION');
  return list;
}

/** Loads a run directory (from `saveModel`, `probsem train` or `trainRun`) for the one-call tasks. */
export function loadRun(dir: string): Run {
  return Run.load(dir);
}

/**
 * A run's measures on its dataset's test split: reconstruction error, annotation, generation
 * accuracy judged by a classifier, retrieval and metric-learning figures (as `probsem eval`).
 */
export function evaluate(run: Run | string, options: EvalOptions = {}): Promise<EvalReport> {
  return evaluateRun(typeof run === 'string' ? run : run.dir, options);
}
