/**
 * Whole workflows on a run directory — train, evaluate, annotate, generate — shared by the CLI,
 * the demo and (later) the server, so those stay thin.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { currentBackend } from '../core/backend.js';
import { ProbsemError } from '../core/errors.js';
import { normalTensor } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { type Dataset, datasetHash, pixelsOf } from '../data/dataset.js';
import { loadDataset } from '../data/registry.js';
import type { ImageModel, Trainable } from '../models/base.js';
import { type ModelFile, loadModel, saveModel, updateModelMeta } from '../models/persist.js';
import { createModel } from '../models/registry.js';
import { type TrainProgress, CHECKPOINT_FILE, train } from '../train/trainer.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { getJudge } from '../eval/judge.js';
import {
  annotationAccuracy,
  generationAccuracy,
  labelLogLikelihoods,
  oneHotLabelInputs,
  reconstructionError,
} from '../eval/metrics.js';

export interface TrainRunOptions {
  model: string;
  dataset: string;
  dataDir?: string;
  latent: number;
  /** Exactly one of steps / epochs. */
  steps?: number;
  epochs?: number;
  batchSize: number;
  lr: number;
  seed: number;
  out: string;
  checkpointEvery?: number;
  resume?: boolean;
  /** Replace an existing run in `out`. */
  force?: boolean;
  /** Data-parallel replicas (1: single thread). */
  workers?: number;
  /** Extra model options (e.g. beta for the VAE). */
  modelOptions?: Record<string, unknown>;
  onProgress?: (p: TrainProgress) => void;
  onNotice?: (msg: string) => void;
}

export interface TrainRunResult {
  dir: string;
  meta: ModelFile;
  dataset: Dataset;
  model: Trainable;
}

export async function trainRun(o: TrainRunOptions): Promise<TrainRunResult> {
  const ds = await loadDataset(o.dataset, { dataDir: o.dataDir, onNotice: o.onNotice });
  const pixels = pixelsOf(ds);
  const stepsPerEpoch = Math.floor(ds.train.count / o.batchSize);
  if (o.batchSize > ds.train.count) {
    throw new ProbsemError(`--batch ${o.batchSize} exceeds the ${ds.train.count} training images`, 'BAD_OPTION');
  }
  const steps = o.steps ?? (o.epochs ?? 0) * stepsPerEpoch;
  if (!(steps >= 1)) throw new ProbsemError('give --steps N or --epochs N (at least one step)', 'BAD_OPTION');
  let config: unknown = { inputDim: pixels, numClasses: ds.classNames.length, latent: o.latent, ...(o.modelOptions ?? {}) };
  const ckptPath = join(o.out, CHECKPOINT_FILE);
  if (!o.resume && !o.force && (existsSync(ckptPath) || existsSync(join(o.out, 'model.json')))) {
    throw new ProbsemError(`${o.out} already holds a run: use --resume to continue it, --force to replace it, or another --out`, 'BAD_OPTION');
  }
  if (o.resume) {
    if (!existsSync(ckptPath)) throw new ProbsemError(`cannot resume: ${ckptPath} does not exist`, 'NOT_FOUND');
    const h = readCheckpoint(ckptPath).header;
    if (h.model !== o.model) {
      throw new ProbsemError(`cannot resume: ${o.out} holds a ${h.model} run, not ${o.model}`, 'BAD_OPTION');
    }
    config = h.config;
  }
  const model = createModel(o.model, config, o.seed) as Trainable & { config: Record<string, unknown> };
  const result = await train(model, ds.train, { pixels, numClasses: ds.classNames.length }, {
    steps,
    batchSize: o.batchSize,
    lr: o.lr,
    seed: o.seed,
    outDir: o.out,
    checkpointEvery: o.checkpointEvery ?? 500,
    resume: o.resume,
    workers: o.workers,
    config: model.config,
    onProgress: o.onProgress,
  });
  const meta = saveModel(o.out, model, {
    classNames: ds.classNames,
    dataset: {
      name: ds.name,
      source: ds.source,
      hash: datasetHash(ds),
      height: ds.height,
      width: ds.width,
      trainCount: ds.train.count,
    },
    training: {
      seed: o.seed,
      steps,
      batchSize: o.batchSize,
      lr: o.lr,
      backend: currentBackend(),
      seconds: result.seconds,
      finalTerms: result.finalTerms,
    },
  });
  return { dir: o.out, meta, dataset: ds, model };
}

/** Loads a run's model and checks it is an image model. */
export function loadImageModel(dir: string): { model: ImageModel; meta: ModelFile } {
  const { model, meta } = loadModel(dir);
  if (!('encodeImage' in model)) {
    throw new ProbsemError(`${dir} holds a ${meta.model}, not an image model`, 'BAD_OPTION');
  }
  return { model: model as unknown as ImageModel, meta };
}

/** Fails clearly when a model and a dataset do not fit each other. */
export function checkCompatible(meta: ModelFile, ds: Dataset): void {
  const inputDim = Number(meta.config.inputDim);
  if (inputDim !== pixelsOf(ds)) {
    const h = meta.dataset?.height;
    const w = meta.dataset?.width;
    throw new ProbsemError(
      `the model expects ${h && w ? `${h}×${w} images` : `${inputDim}-pixel images`} but dataset ${ds.name} has ${ds.height}×${ds.width} images`,
      'BAD_OPTION',
    );
  }
  if (meta.classNames.length !== ds.classNames.length) {
    throw new ProbsemError(
      `the model knows ${meta.classNames.length} classes but dataset ${ds.name} has ${ds.classNames.length}`,
      'BAD_OPTION',
    );
  }
}

export interface EvalOptions {
  dataset?: string;
  dataDir?: string;
  seed?: number;
  samplesPerLabel?: number;
  repeats?: number;
  /** Skip generation accuracy (no judge needed). */
  skipGeneration?: boolean;
  judgeCacheDir?: string;
  judgeEpochs?: number;
  /** Record the metrics in model.json. */
  save?: boolean;
  onJudgeProgress?: (p: TrainProgress) => void;
  /** Generation progress: label-repeats done of total. */
  onGenerationProgress?: (done: number, total: number) => void;
  onNotice?: (msg: string) => void;
}

export interface EvalReport {
  model: string;
  dataset: string;
  testImages: number;
  /** Bernoulli NLL (nats) with z drawn from q(z|x): the ELBO's reconstruction term. */
  reconstructionError: number;
  /** Bernoulli NLL (nats) of the deterministic reconstruction from the posterior mean. */
  reconstructionErrorMean: number;
  annotationAccuracy: number | null;
  generationAccuracy: number | null;
  generationSd: number | null;
  generationPerLabel: Record<string, number> | null;
  generationSamplesPerLabel: number | null;
  generationRepeats: number | null;
  judgeAccuracy: number | null;
  seconds: number;
}

export async function evaluateRun(dir: string, o: EvalOptions = {}): Promise<EvalReport> {
  const t0 = performance.now();
  const { model, meta } = loadImageModel(dir);
  const ds = await loadDataset(o.dataset ?? meta.dataset?.name ?? 'fashion-mnist', { dataDir: o.dataDir, onNotice: o.onNotice });
  checkCompatible(meta, ds);
  const pixels = pixelsOf(ds);
  const seed = o.seed ?? 0;
  const recon = reconstructionError(model, ds.test, pixels, seed, 'sample');
  const reconMean = reconstructionError(model, ds.test, pixels, seed, 'mean');
  const labels = classLabelInputs(meta);
  const hasLabels = typeof model.encodeLabels === 'function';
  const annotation = hasLabels ? annotationAccuracy(model, ds.test, pixels, labels) : null;
  let gen = null;
  let judgeAccuracy: number | null = null;
  if (hasLabels && !o.skipGeneration) {
    const judge = await getJudge(ds, {
      cacheDir: o.judgeCacheDir,
      epochs: o.judgeEpochs,
      onProgress: o.onJudgeProgress,
      onNotice: o.onNotice,
    });
    judgeAccuracy = judge.testAccuracy;
    gen = generationAccuracy(model, judge.classifier, labels, {
      samplesPerLabel: o.samplesPerLabel ?? 1000,
      repeats: o.repeats ?? 5,
      seed,
      onProgress: o.onGenerationProgress,
    });
  }
  labels.dispose();
  const report: EvalReport = {
    model: meta.model,
    dataset: ds.name,
    testImages: ds.test.count,
    reconstructionError: recon,
    reconstructionErrorMean: reconMean,
    annotationAccuracy: annotation,
    generationAccuracy: gen?.accuracy ?? null,
    generationSd: gen?.sd ?? null,
    generationPerLabel: gen ? Object.fromEntries(ds.classNames.map((c, i) => [c, gen.perLabel[i]])) : null,
    generationSamplesPerLabel: gen?.samplesPerLabel ?? null,
    generationRepeats: gen?.repeats ?? null,
    judgeAccuracy,
    seconds: (performance.now() - t0) / 1000,
  };
  if (o.save) updateModelMeta(dir, { ...meta, metrics: { ...(meta.metrics ?? {}), ...report } });
  return report;
}

/**
 * The label-encoder inputs of a run's classes, one row per class (one-hot rows for one-hot
 * labels). Every caller that scores or samples classes goes through this, so word-vector labels
 * need changing only here.
 */
export function classLabelInputs(meta: ModelFile): tf.Tensor2D {
  return oneHotLabelInputs(meta.classNames.length);
}

/** Finds a class by name (case-insensitive), or fails listing the known ones. */
export function labelIndex(meta: ModelFile, label: string): number {
  const i = meta.classNames.findIndex((c) => c.toLowerCase() === label.trim().toLowerCase());
  if (i < 0) {
    throw new ProbsemError(`label '${label}' is not in the model's vocabulary: ${meta.classNames.join(', ')}`, 'BAD_OPTION');
  }
  return i;
}

/** Label probabilities for one image (grey values): normalised likelihoods of its posterior mean. */
export function annotateImage(model: ImageModel, meta: ModelFile, image: Float32Array): { label: string; probability: number; logLikelihood: number }[] {
  if (!model.encodeLabels) throw new ProbsemError(`a ${meta.model} model has no label encoder and cannot annotate`, 'BAD_OPTION');
  const [ll, probs] = tf.tidy(() => {
    const l = labelLogLikelihoods(model, tf.tensor2d(image, [1, image.length]), classLabelInputs(meta));
    return [l.dataSync(), tf.softmax(l).dataSync()];
  });
  return meta.classNames
    .map((label, i) => ({ label, probability: probs[i], logLikelihood: ll[i] }))
    .sort((a, b) => b.probability - a.probability);
}

/** n images (pixel probabilities) decoded from z ~ q(z|label). */
export function generateForLabel(model: ImageModel, meta: ModelFile, label: string, n: number, seed: number): Float32Array {
  if (!model.encodeLabels) throw new ProbsemError(`a ${meta.model} model has no label encoder and cannot generate from labels`, 'BAD_OPTION');
  const li = labelIndex(meta, label);
  return tf.tidy(() => {
    const q = model.encodeLabels!(tf.slice(classLabelInputs(meta), [li, 0], [1, -1]) as tf.Tensor2D);
    const zs = tf.add(q.mean, tf.mul(tf.exp(tf.mul(q.logVar, 0.5)), normalTensor(Rng.for(seed, 'generate', li), [n, model.latentDim]))) as tf.Tensor2D;
    return tf.sigmoid(model.decode(zs)).dataSync() as Float32Array;
  });
}

/** Posterior-mean reconstructions (pixel probabilities) of the given images. */
export function reconstruct(model: ImageModel, images: Float32Array, pixels: number): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor2d(images, [images.length / pixels, pixels]);
    return tf.sigmoid(model.decode(model.encodeImage(x).mean)).dataSync() as Float32Array;
  });
}
