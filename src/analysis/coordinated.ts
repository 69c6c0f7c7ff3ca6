/**
 * Coordinated representations of images and labels (lecture 002) as one workflow: fit CCA, kernel
 * CCA, Deep CCA or a DeViSE-style embedding on a dataset's training split (without held-out
 * classes, if any), then annotate the test images by the nearest label in the shared space and,
 * with held-out classes, report zero-shot accuracies with the same definitions as the generative
 * models (`zeroShotAccuracy`). Shared by the CLI and the library. It lives in analysis/, not runs/,
 * because it builds on cca.ts and kcca.ts and analysis/ sits below runs/ in the layers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../core/files.js';
import { Rng } from '../core/random.js';
import { type Dataset, type Split, imagesToFloat, pixelsOf, withoutClasses } from '../data/dataset.js';
import { loadDataset } from '../data/registry.js';
import type { ImageModel } from '../models/base.js';
import { createDcca } from '../models/dcca.js';
import { type DeviseSimilarity, createDevise } from '../models/devise.js';
import { BimodalAe, BimodalAeConfigSchema } from '../models/bimodal-ae.js';
import type { Trainable } from '../models/base.js';
import { createUse } from '../models/use.js';
import { type ClassHierarchy, datasetHierarchy, wordNetHierarchy } from '../text/ontology.js';
import { type LabelEncodingInfo, type LabelEncodingSpec, buildLabelEncoding, classInputRows, labelInputWidth, labelPhrases } from '../text/labels.js';
import type { OovPolicy } from '../text/word-vectors.js';
import { type EngineChoice, train } from '../train/trainer.js';
import { type ZeroShotResult, annotationAccuracy, zeroShotAccuracy } from '../eval/metrics.js';
import {
  type Matrix,
  type SharedScoring,
  type Whitening,
  SHARED_SCORINGS,
  columnCorrelations,
  fitCca,
  readTensor,
  projectX,
  projectY,
  sharedSpaceScores,
  totalCorrelation,
} from './cca.js';
import { type LabelKernel, fitKcca, kccaProjectX, kccaProjectY } from './kcca.js';
import { resolveHoldout } from '../runs/runs.js';

export const COORDINATE_METHODS = ['cca', 'kcca', 'dcca', 'devise', 'use', 'bimodal-ae'] as const;
export type CoordinateMethod = (typeof COORDINATE_METHODS)[number];

/** Checks a method name, or fails listing the known ones. */
export function coordinateMethod(name: string): CoordinateMethod {
  const m = name.trim().toLowerCase();
  if (!(COORDINATE_METHODS as readonly string[]).includes(m)) {
    throw new ProbsemError(`unknown method '${name}': choose one of ${COORDINATE_METHODS.join(', ')}`, 'BAD_OPTION');
  }
  return m as CoordinateMethod;
}

export interface CoordinateProgress {
  stage: string;
  done: number;
  total: number;
  info?: string;
}

export interface CoordinateOptions {
  method: CoordinateMethod | string;
  dataset?: string;
  dataDir?: string;
  labels?: LabelEncodingSpec;
  labelPhrases?: Record<string, string> | string;
  oov?: OovPolicy;
  /** Classes left out of training (zero-shot); needs word-vector labels. */
  holdout?: string[];
  seed?: number;
  /** Canonical pairs used for annotation (cca, kcca, dcca; default: training classes − 1). */
  components?: number;
  /** How the shared space matches images to labels (cca, kcca, dcca; default gaussian). */
  scoring?: SharedScoring;
  /** Ridges: cca and kcca (r1 on images, r2 on labels), dcca (on its outputs). */
  r1?: number;
  r2?: number;
  whitening?: Whitening;
  /** kcca: subsample size, RBF bandwidth (default: median heuristic), label-side kernel. */
  subsample?: number;
  bandwidth?: number;
  labelKernel?: LabelKernel;
  labelBandwidth?: number;
  /** dcca and devise training. */
  steps?: number;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  /** Hidden layers of the image net (dcca default [512, 128]; devise default [512]). */
  hidden?: number[];
  /** dcca: output width (default: training classes − 1), label-net hidden layers, top-k in the objective. */
  outDim?: number;
  labelHidden?: number[];
  topK?: number;
  /** dcca and devise: 'auto' (probsem's kernels; default), 'fast' or 'tfjs'. */
  engine?: EngineChoice;
  /** devise, use: hinge margin; devise: similarity. */
  margin?: number;
  similarity?: DeviseSimilarity;
  /**
   * use: embedding width (default 64); the taxonomy — 'auto' (default: the dataset's own, such as
   * CIFAR-100's superclasses, else WordNet's), 'dataset', 'wordnet' or 'none' — and its two weights.
   */
  embedDim?: number;
  ontology?: 'auto' | 'dataset' | 'wordnet' | 'none';
  ontologyWeight?: number;
  residualWeight?: number;
  /** bimodal-ae: shared code width (default 64) and the label reconstruction's weight (default 50). */
  latent?: number;
  labelWeight?: number;
  /** Writes report.json here (and, for dcca/devise, the training log). */
  out?: string;
  onProgress?: (p: CoordinateProgress) => void;
  onNotice?: (msg: string) => void;
  /**
   * cca, kcca, dcca: called once the shared space is fitted, with maps of new images and label
   * vectors to their canonical variates (for plots); the space is valid until it resolves.
   */
  onFitted?: (space: SharedSpace) => void | Promise<void>;
}

/** A fitted canonical space: k pairs, their training correlations, and the two projections (n×k). */
export interface SharedSpace {
  k: number;
  correlations: number[];
  images(x: Matrix, n: number): Float64Array;
  labels(y: Matrix, n: number): Float64Array;
}

export interface CoordinateReport {
  method: CoordinateMethod;
  dataset: string;
  labels: 'onehot' | 'words';
  /** Provenance of the word vectors (e.g. `wordnet-3.1:ancestors-v1:256`). */
  labelVectors: string | null;
  seed: number;
  trainImages: number;
  testImages: number;
  heldOut: string[];
  /** Test images (all classes) annotated with the best-scoring of all labels. */
  annotationAccuracy: number;
  /** With held-out classes: zeroShotAccuracy's numbers, plus the unseen accuracy of each held-out class. */
  zeroShot: (ZeroShotResult & { heldOut: string[]; unseenPerClass: Record<string, number> }) | null;
  /** cca, kcca, dcca: canonical correlations of the pairs used (training data, regularised). */
  canonicalCorrelations: number[] | null;
  totalCorrelation: number | null;
  /** The same pairs' correlations on the test images of the training classes. */
  testCorrelations: number[] | null;
  totalTestCorrelation: number | null;
  /** use: the taxonomy its terms used (parents and their classes), or null. */
  hierarchy: { source: string; parents: { name: string; classes: string[] }[] } | null;
  /**
   * use: of the test images annotated wrongly whose class has a parent, the share given a class
   * under the same parent (a sibling: a "semantic" mistake); measured with the taxonomy even when
   * training used none (--ontology none), so the two can be compared.
   */
  taxonomyErrors: { siblingShare: number; errors: number; source: string } | null;
  /** dcca, devise, use, bimodal-ae: what training did. */
  training: { steps: number; batchSize: number; lr: number; engine: string; seconds: number; finalTerms: Record<string, number> } | null;
  /** Every option that shaped the result, defaults filled in. */
  options: Record<string, unknown>;
  seconds: { fit: number; evaluate: number };
}

/** Scores [N, C] of images [N, pixels] against label vectors [C, labelDim]: how each method annotates. */
type Scorer = (x: tf.Tensor2D, labelInputs: tf.Tensor2D) => tf.Tensor2D;

interface Fitted {
  scorer: Scorer;
  /** Canonical variates of images (n×k) and of label vectors, for test correlations. */
  variates?: SharedSpace;
  training?: CoordinateReport['training'];
  hierarchy?: CoordinateReport['hierarchy'];
  /** The taxonomy mistakes are measured against (use). */
  measuredBy?: ClassHierarchy | null;
  options: Record<string, unknown>;
  dispose?: () => void;
}

const OPTIONS_OF: Record<CoordinateMethod, readonly (keyof CoordinateOptions)[]> = {
  cca: ['components', 'scoring', 'r1', 'r2', 'whitening'],
  kcca: ['components', 'scoring', 'r1', 'r2', 'subsample', 'bandwidth', 'labelKernel', 'labelBandwidth'],
  dcca: ['components', 'scoring', 'r1', 'r2', 'steps', 'epochs', 'batchSize', 'lr', 'hidden', 'outDim', 'labelHidden', 'topK', 'engine'],
  devise: ['steps', 'epochs', 'batchSize', 'lr', 'hidden', 'margin', 'similarity', 'engine'],
  use: ['steps', 'epochs', 'batchSize', 'lr', 'hidden', 'margin', 'embedDim', 'ontology', 'ontologyWeight', 'residualWeight', 'engine'],
  'bimodal-ae': ['steps', 'epochs', 'batchSize', 'lr', 'hidden', 'labelHidden', 'latent', 'labelWeight', 'engine'],
};
const METHOD_OPTIONS = new Set(Object.values(OPTIONS_OF).flat());

/** Fails naming any option given that the method does not use. */
function checkApplicable(method: CoordinateMethod, o: CoordinateOptions): void {
  const bad = [...METHOD_OPTIONS].filter((k) => o[k] !== undefined && !OPTIONS_OF[method].includes(k));
  if (bad.length > 0) {
    throw new ProbsemError(`option${bad.length > 1 ? 's' : ''} ${bad.join(', ')} do${bad.length > 1 ? '' : 'es'} not apply to ${method}`, 'BAD_OPTION');
  }
}

export async function coordinateRun(o: CoordinateOptions): Promise<CoordinateReport> {
  const method = coordinateMethod(o.method);
  checkApplicable(method, o);
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0) throw new ProbsemError(`seed must be an integer ≥ 0, got ${seed}`, 'BAD_OPTION');
  if (o.scoring !== undefined && !SHARED_SCORINGS.includes(o.scoring)) {
    throw new ProbsemError(`scoring must be one of ${SHARED_SCORINGS.join(', ')}, got '${o.scoring}'`, 'BAD_OPTION');
  }
  if (o.steps !== undefined && o.epochs !== undefined) throw new ProbsemError('give either steps or epochs, not both', 'BAD_OPTION');
  const ds = await loadDataset(o.dataset ?? 'fashion-mnist', { dataDir: o.dataDir, onNotice: o.onNotice });
  const pixels = pixelsOf(ds);
  const heldOut = resolveHoldout(ds.classNames, o.holdout ?? []);
  const spec = o.labels ?? { kind: 'onehot' as const };
  if (heldOut.length > 0 && spec.kind === 'onehot') {
    throw new ProbsemError('--holdout needs word-vector labels (--labels words): the one-hot row of an unseen class says nothing about it', 'BAD_OPTION');
  }
  const { info } = await buildLabelEncoding(spec, ds.classNames, { phrases: o.labelPhrases, oov: o.oov, onNotice: o.onNotice });
  const numClasses = ds.classNames.length;
  const labelDim = labelInputWidth(info, numClasses);
  const classRows = classInputRows(info, numClasses);
  const seen = ds.classNames.map((_, i) => i).filter((i) => !heldOut.includes(i));
  const trainSplit = heldOut.length > 0 ? withoutClasses(ds.train, new Set(heldOut), pixels) : ds.train;

  const t0 = performance.now();
  const ctx: FitContext = { o, method, seed, pixels, labelDim, classRows, numClasses, seen, trainSplit, classNames: ds.classNames, labelKind: info.kind, datasetHierarchy: ds.hierarchy };
  const fitters: Partial<Record<CoordinateMethod, (c: FitContext) => Promise<Fitted>>> = { devise: fitDevise, dcca: fitDccaMethod, use: fitUse, 'bimodal-ae': fitBimodal };
  const fitted = await (fitters[method] ?? (async (c: FitContext) => fitLinearOrKernel(c)))(ctx);
  const fitSeconds = (performance.now() - t0) / 1000;

  try {
    if (fitted.variates) await o.onFitted?.(fitted.variates);
    return await evaluateAndReport(o, method, ds, fitted, { seed, pixels, heldOut, info, classRows, trainSplit, fitSeconds });
  } finally {
    fitted.dispose?.();
  }
}

async function evaluateAndReport(
  o: CoordinateOptions,
  method: CoordinateMethod,
  ds: Dataset,
  fitted: Fitted,
  c: { seed: number; pixels: number; heldOut: number[]; info: LabelEncodingInfo; classRows: Float32Array; trainSplit: Split; fitSeconds: number },
): Promise<CoordinateReport> {
  const { seed, pixels, heldOut, info, classRows, trainSplit, fitSeconds } = c;
  const numClasses = ds.classNames.length;
  const labelDim = labelInputWidth(info, numClasses);
  const t1 = performance.now();
  o.onProgress?.({ stage: 'evaluate', done: 0, total: 1 });
  const labelInputs = tf.tensor2d(classRows, [numClasses, labelDim]);
  // The annotation metrics rank labels by `scoreLabels` when a model has it; that is all they
  // read from the model, so the coordinated methods are scored by exactly the same definitions.
  const scoring = { name: method, scoreLabels: fitted.scorer } as unknown as ImageModel;
  let annotation: number;
  let zeroShot: CoordinateReport['zeroShot'] = null;
  let taxonomyErrors: CoordinateReport['taxonomyErrors'] = null;
  try {
    annotation = annotationAccuracy(scoring, ds.test, pixels, labelInputs);
    if (fitted.measuredBy) taxonomyErrors = siblingMistakes(fitted.scorer, ds, pixels, labelInputs, fitted.measuredBy);
    if (heldOut.length > 0) {
      zeroShot = {
        heldOut: heldOut.map((c) => ds.classNames[c]),
        ...zeroShotAccuracy(scoring, ds.test, pixels, labelInputs, heldOut),
        unseenPerClass: unseenPerClass(fitted.scorer, ds, pixels, labelInputs, heldOut),
      };
    }
  } finally {
    labelInputs.dispose();
  }
  let testCorrelations: number[] | null = null;
  if (fitted.variates) {
    const testSeen = heldOut.length > 0 ? withoutClasses(ds.test, new Set(heldOut), pixels) : ds.test;
    const { x, y } = viewsOf(testSeen, pixels, classRows, labelDim);
    const v = fitted.variates;
    testCorrelations = Array.from(columnCorrelations(v.images(x, testSeen.count), v.labels(y, testSeen.count), testSeen.count, v.k));
  }
  o.onProgress?.({ stage: 'evaluate', done: 1, total: 1 });

  const report: CoordinateReport = {
    method,
    dataset: ds.name,
    labels: info.kind,
    labelVectors: info.kind === 'words' ? info.vectorsId : null,
    seed,
    trainImages: trainSplit.count,
    testImages: ds.test.count,
    heldOut: heldOut.map((c) => ds.classNames[c]),
    annotationAccuracy: annotation,
    zeroShot,
    canonicalCorrelations: fitted.variates?.correlations ?? null,
    totalCorrelation: fitted.variates ? totalCorrelation(fitted.variates.correlations) : null,
    testCorrelations,
    totalTestCorrelation: testCorrelations ? totalCorrelation(testCorrelations) : null,
    training: fitted.training ?? null,
    hierarchy: fitted.hierarchy ?? null,
    taxonomyErrors,
    options: fitted.options,
    seconds: { fit: fitSeconds, evaluate: (performance.now() - t1) / 1000 },
  };
  if (o.out) {
    await ensureDir(o.out);
    writeFileAtomicSync(join(o.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  }
  return report;
}

/**
 * For each held-out class, the share of its test images whose best-scoring held-out label is
 * their own: unseenAccuracy split by class, which shows whether a pair is told apart or every
 * image goes to the same label.
 */
function unseenPerClass(scorer: Scorer, ds: Dataset, pixels: number, labelInputs: tf.Tensor2D, heldOut: number[]): Record<string, number> {
  const out: Record<string, number> = {};
  const c = labelInputs.shape[0];
  for (const cls of heldOut) {
    const rows: number[] = [];
    ds.test.labels.forEach((l, i) => l === cls && rows.push(i));
    const idx = Int32Array.from(rows);
    let ok = 0;
    for (let s = 0; s < idx.length; s += 500) {
      const part = idx.subarray(s, s + 500);
      const scores = readTensor(() => scorer(tf.tensor2d(imagesToFloat(ds.test, part, pixels), [part.length, pixels]), labelInputs));
      for (let r = 0; r < part.length; r++) {
        let best = heldOut[0];
        for (const h of heldOut) if (scores[r * c + h] > scores[r * c + best]) best = h;
        if (best === cls) ok++;
      }
    }
    out[ds.classNames[cls]] = idx.length ? ok / idx.length : NaN;
  }
  return out;
}

/** The best-scoring label of every test image, in batches of 500. */
function predictions(scorer: Scorer, split: Split, pixels: number, labelInputs: tf.Tensor2D): Int32Array {
  const c = labelInputs.shape[0];
  const out = new Int32Array(split.count);
  for (let s = 0; s < split.count; s += 500) {
    const part = Int32Array.from({ length: Math.min(500, split.count - s) }, (_, i) => s + i);
    const scores = readTensor(() => scorer(tf.tensor2d(imagesToFloat(split, part, pixels), [part.length, pixels]), labelInputs));
    for (let r = 0; r < part.length; r++) {
      let best = 0;
      for (let k = 1; k < c; k++) if (scores[r * c + k] > scores[r * c + best]) best = k;
      out[s + r] = best;
    }
  }
  return out;
}

/** Of the wrongly annotated test images whose class has a parent, the share labelled with one of its siblings. */
function siblingMistakes(scorer: Scorer, ds: Dataset, pixels: number, labelInputs: tf.Tensor2D, h: ClassHierarchy): NonNullable<CoordinateReport['taxonomyErrors']> {
  const pred = predictions(scorer, ds.test, pixels, labelInputs);
  let errors = 0;
  let sibling = 0;
  pred.forEach((p, i) => {
    const truth = ds.test.labels[i];
    const parent = h.parentOf[truth];
    if (p === truth || parent < 0) return;
    errors++;
    if (h.members[parent].includes(p)) sibling++;
  });
  return { siblingShare: errors ? sibling / errors : NaN, errors, source: h.source };
}

interface FitContext {
  o: CoordinateOptions;
  method: CoordinateMethod;
  seed: number;
  pixels: number;
  labelDim: number;
  classRows: Float32Array;
  numClasses: number;
  seen: number[];
  trainSplit: Split;
  classNames: string[];
  labelKind: 'onehot' | 'words';
  datasetHierarchy?: Dataset['hierarchy'];
}

/** Both views of a split: grey values (n×pixels) and each image's class row (n×labelDim). */
function viewsOf(split: Split, pixels: number, classRows: Float32Array, labelDim: number): { x: Float32Array; y: Float32Array } {
  const idx = Int32Array.from({ length: split.count }, (_, i) => i);
  const x = imagesToFloat(split, idx, pixels);
  const y = new Float32Array(split.count * labelDim);
  for (let i = 0; i < split.count; i++) y.set(classRows.subarray(split.labels[i] * labelDim, (split.labels[i] + 1) * labelDim), i * labelDim);
  return { x, y };
}

/**
 * The canonical pairs to annotate with: the option, else one fewer than the training classes (C
 * distinct label vectors span C − 1 centred directions, so further pairs carry nothing), at most
 * the `available` pairs.
 */
function componentsFor(ctx: FitContext, available: number): number {
  const k = ctx.o.components ?? Math.min(available, Math.max(1, ctx.seen.length - 1));
  if (!Number.isInteger(k) || k < 1 || k > available) {
    throw new ProbsemError(`components must be an integer in [1, ${available}] here (canonical pairs available), got ${k}`, 'BAD_OPTION');
  }
  return k;
}

/** A scorer from the two views' projections into a k-dimensional canonical space. */
function sharedScorer(
  images: (x: Matrix, n: number) => Float64Array,
  labels: (y: Matrix, n: number) => Float64Array,
  k: number,
  rho: number[],
  scoring: SharedScoring,
): Scorer {
  return (x, labelInputs) => {
    const n = x.shape[0];
    const c = labelInputs.shape[0];
    const u = images(x.dataSync() as Float32Array, n);
    const v = labels(labelInputs.dataSync() as Float32Array, c);
    return tf.tensor2d(sharedSpaceScores(u, v, n, c, k, rho, scoring), [n, c]);
  };
}

function fitLinearOrKernel(ctx: FitContext): Fitted {
  const { o, method, pixels, labelDim, trainSplit } = ctx;
  const n = trainSplit.count;
  o.onProgress?.({ stage: 'fit', done: 0, total: 1, info: `${method} on ${n} images` });
  const { x, y } = viewsOf(trainSplit, pixels, ctx.classRows, labelDim);
  const scoring = o.scoring ?? 'gaussian';
  let fitted: Fitted;
  if (method === 'cca') {
    const fit = fitCca(x, y, n, pixels, labelDim, { r1: o.r1, r2: o.r2, whitening: o.whitening });
    const k = componentsFor(ctx, fit.k);
    fitted = canonicalFit(
      k,
      fit.correlations,
      (a, m) => projectX(fit, a, m, k),
      (b, m) => projectY(fit, b, m, k),
      scoring,
      { r1: fit.r1, r2: fit.r2, whitening: o.whitening ?? 'symmetric' },
    );
  } else {
    const fit = fitKcca(x, y, n, pixels, labelDim, {
      subsample: o.subsample,
      bandwidth: o.bandwidth,
      r1: o.r1,
      r2: o.r2,
      labelKernel: o.labelKernel,
      labelBandwidth: o.labelBandwidth,
      seed: ctx.seed,
      onStage: (stage) => o.onProgress?.({ stage: 'fit', done: 0, total: 1, info: `kcca: ${stage}` }),
    });
    const k = componentsFor(ctx, fit.k);
    fitted = canonicalFit(
      k,
      fit.correlations,
      (a, m) => kccaProjectX(fit, a, m, k),
      (b, m) => kccaProjectY(fit, b, m, k),
      scoring,
      {
        r1: fit.r1,
        r2: fit.r2,
        subsample: fit.m,
        bandwidth: fit.bandwidth,
        labelKernel: fit.labelKernel,
        ...(fit.labelKernel === 'rbf' ? { labelBandwidth: Math.sqrt(1 / (2 * fit.labelGamma)) } : {}),
      },
    );
  }
  o.onProgress?.({ stage: 'fit', done: 1, total: 1 });
  return fitted;
}

/** A fitted CCA or KCCA: its first k canonical variates as the shared space, scored and reported alike. */
function canonicalFit(
  k: number,
  correlations: ArrayLike<number>,
  images: (a: Matrix, m: number) => Float64Array,
  labels: (b: Matrix, m: number) => Float64Array,
  scoring: SharedScoring,
  options: Record<string, unknown>,
): Fitted {
  const rho = Array.from(correlations).slice(0, k);
  return {
    scorer: sharedScorer(images, labels, k, rho, scoring),
    variates: { images, labels, k, correlations: rho },
    options: { components: k, scoring, ...options },
  };
}

/** Steps from steps/epochs (default `defSteps`), checked against the batch size. */
function trainingLength(o: CoordinateOptions, n: number, batchSize: number, defEpochs: number): number {
  if (!Number.isInteger(batchSize) || batchSize < 2) throw new ProbsemError(`batch size must be an integer ≥ 2, got ${batchSize}`, 'BAD_OPTION');
  if (batchSize > n) throw new ProbsemError(`batch size ${batchSize} exceeds the ${n} training images`, 'BAD_OPTION');
  const perEpoch = Math.floor(n / batchSize);
  const steps = o.steps ?? (o.epochs ?? defEpochs) * perEpoch;
  if (!Number.isInteger(steps) || steps < 1) throw new ProbsemError(`steps must be a positive integer, got ${steps}`, 'BAD_OPTION');
  return steps;
}

function labelInputsFor(classRows: Float32Array, labelDim: number) {
  return (ls: Int32Array) => {
    const data = new Float32Array(ls.length * labelDim);
    ls.forEach((c, i) => data.set(classRows.subarray(c * labelDim, (c + 1) * labelDim), i * labelDim));
    return { data, width: labelDim };
  };
}

/** Batch size, steps (default 10 epochs) and learning rate of a trained method. */
function minibatchSchedule(ctx: FitContext, defaultBatch: number): { batchSize: number; steps: number; lr: number } {
  const batchSize = ctx.o.batchSize ?? defaultBatch;
  return { batchSize, steps: trainingLength(ctx.o, ctx.trainSplit.count, batchSize, 10), lr: ctx.o.lr ?? 1e-3 };
}

/** Trains a coordinated model on the training split with the method's label inputs; disposes it on failure. */
async function trainCoordinated(
  ctx: FitContext,
  model: Trainable,
  run: { steps: number; batchSize: number; lr: number; config: unknown; term: string; dispose: () => void },
): Promise<NonNullable<CoordinateReport['training']>> {
  const { o } = ctx;
  try {
    const result = await train(model, ctx.trainSplit, { pixels: ctx.pixels, numClasses: ctx.numClasses }, {
      steps: run.steps,
      batchSize: run.batchSize,
      lr: run.lr,
      seed: ctx.seed,
      outDir: o.out,
      engine: o.engine,
      labelInputs: labelInputsFor(ctx.classRows, ctx.labelDim),
      config: run.config,
      onNotice: o.onNotice,
      onProgress: (p) => o.onProgress?.({ stage: 'train', done: p.step, total: p.steps, info: `${p.msPerStep.toFixed(0)} ms/step · ${run.term} ${p.terms[run.term]?.toFixed(3) ?? '…'}` }),
    });
    return { steps: run.steps, batchSize: run.batchSize, lr: run.lr, engine: result.engine, seconds: result.seconds, finalTerms: result.finalTerms };
  } catch (e) {
    run.dispose();
    throw e;
  }
}

async function fitDevise(ctx: FitContext): Promise<Fitted> {
  const { o, pixels, labelDim } = ctx;
  const { batchSize, steps, lr } = minibatchSchedule(ctx, 100);
  const model = createDevise(
    {
      inputDim: pixels,
      numClasses: ctx.numClasses,
      labelDim,
      classVectors: Array.from(ctx.classRows),
      trainClasses: ctx.seen,
      ...(o.hidden ? { hidden: o.hidden } : {}),
      ...(o.similarity ? { similarity: o.similarity } : {}),
      ...(o.margin !== undefined ? { margin: o.margin } : {}),
    },
    Rng.for(ctx.seed, 'init', 'devise'),
  );
  // The checkpoint records the config; the class vectors themselves are the label encoding's.
  const config = { ...model.config, classVectors: `[${ctx.numClasses}×${labelDim}]` };
  const training = await trainCoordinated(ctx, model, { steps, batchSize, lr, config, term: 'hinge', dispose: () => model.dispose() });
  const { classVectors: _omit, ...shown } = model.config;
  return {
    scorer: (x, labelInputs) => model.scoreLabels(x, labelInputs),
    training,
    options: { ...shown, steps, batchSize, lr },
    dispose: () => model.dispose(),
  };
}

/**
 * The taxonomy `use` trains with: the dataset's own where it has one (and `ontology` allows), else
 * WordNet's over the classes' phrases (as the word labels read them).
 */
function hierarchyFor(ctx: FitContext): ClassHierarchy | null {
  const choice = ctx.o.ontology ?? 'auto';
  if (choice === 'none') return null;
  const own = ctx.datasetHierarchy;
  if (choice === 'dataset' && !own) throw new ProbsemError('this dataset states no hierarchy of its own: use --ontology wordnet or none', 'BAD_OPTION');
  if (own && choice !== 'wordnet') return datasetHierarchy(own.parentOf, own.parents);
  try {
    return wordNetHierarchy(labelPhrases(ctx.classNames, ctx.o.labelPhrases ?? {}));
  } catch (e) {
    throw new ProbsemError(`${(e as Error).message}; or train without a taxonomy (--ontology none)`, 'BAD_OPTION');
  }
}

/** The taxonomy a run without one is measured against: what 'auto' would have trained with, if any. */
function measuringHierarchy(ctx: FitContext): ClassHierarchy | null {
  try {
    return hierarchyFor({ ...ctx, o: { ...ctx.o, ontology: 'auto' } });
  } catch {
    return null;
  }
}

async function fitUse(ctx: FitContext): Promise<Fitted> {
  const { o, pixels, labelDim } = ctx;
  const { batchSize, steps, lr } = minibatchSchedule(ctx, 100);
  const h = hierarchyFor(ctx);
  const model = createUse(
    {
      inputDim: pixels,
      numClasses: ctx.numClasses,
      labelDim,
      classVectors: Array.from(ctx.classRows),
      trainClasses: ctx.seen,
      ...(h ? { hierarchy: { parentOf: h.parentOf, members: h.members } } : {}),
      ...(o.hidden ? { hidden: o.hidden } : {}),
      ...(o.embedDim !== undefined ? { embedDim: o.embedDim } : {}),
      ...(o.margin !== undefined ? { margin: o.margin } : {}),
      ...(o.ontologyWeight !== undefined ? { ontologyWeight: o.ontologyWeight } : {}),
      ...(o.residualWeight !== undefined ? { residualWeight: o.residualWeight } : {}),
    },
    Rng.for(ctx.seed, 'init', 'use'),
  );
  const config = { ...model.config, classVectors: `[${ctx.numClasses}×${labelDim}]` };
  const training = await trainCoordinated(ctx, model, { steps, batchSize, lr, config, term: 'classHinge', dispose: () => model.dispose() });
  const { classVectors: _omit, hierarchy: _h, ...shown } = model.config;
  return {
    scorer: (x, labelInputs) => model.scoreLabels(x, labelInputs),
    training,
    hierarchy: h ? { source: h.source, parents: h.parents.map((name, p) => ({ name, classes: h.members[p].map((c) => ctx.classNames[c]) })) } : null,
    measuredBy: h ?? measuringHierarchy(ctx),
    options: { ...shown, ontology: h ? h.source : 'none', steps, batchSize, lr },
    dispose: () => model.dispose(),
  };
}

async function fitBimodal(ctx: FitContext): Promise<Fitted> {
  const { o, pixels, labelDim } = ctx;
  const { batchSize, steps, lr } = minibatchSchedule(ctx, 100);
  const config = BimodalAeConfigSchema.parse({
    inputDim: pixels,
    numClasses: ctx.numClasses,
    labelDim,
    labelKind: ctx.labelKind,
    ...(o.hidden ? { encoderHidden: o.hidden, decoderHidden: [...o.hidden].reverse() } : {}),
    ...(o.labelHidden ? { labelHidden: o.labelHidden, labelDecoderHidden: [...o.labelHidden].reverse() } : {}),
    ...(o.latent !== undefined ? { latent: o.latent } : {}),
    ...(o.labelWeight !== undefined ? { labelWeight: o.labelWeight } : {}),
  });
  const model = new BimodalAe(config, Rng.for(ctx.seed, 'init', 'bimodal-ae'));
  const dispose = () => model.params.dispose();
  const training = await trainCoordinated(ctx, model, { steps, batchSize, lr, config, term: 'labelLoss', dispose });
  return {
    scorer: (x, labelInputs) => model.scoreLabels(x, labelInputs),
    training,
    options: { ...config, steps, batchSize, lr },
    dispose,
  };
}

async function fitDccaMethod(ctx: FitContext): Promise<Fitted> {
  const { o, pixels, labelDim, trainSplit } = ctx;
  const { batchSize, steps, lr } = minibatchSchedule(ctx, 1000);
  const outDim = o.outDim ?? Math.max(1, ctx.seen.length - 1);
  const model = createDcca(
    {
      inputDim: pixels,
      labelDim,
      outDim,
      ...(o.hidden ? { imageHidden: o.hidden } : {}),
      ...(o.labelHidden ? { labelHidden: o.labelHidden } : {}),
      ...(o.r1 !== undefined ? { r1: o.r1 } : {}),
      ...(o.r2 !== undefined ? { r2: o.r2 } : {}),
      ...(o.topK !== undefined ? { topK: o.topK } : {}),
    },
    Rng.for(ctx.seed, 'init', 'dcca'),
  );
  try {
    const result = await train(model, trainSplit, { pixels, numClasses: ctx.numClasses }, {
      steps,
      batchSize,
      lr,
      seed: ctx.seed,
      outDir: o.out,
      engine: o.engine,
      labelInputs: labelInputsFor(ctx.classRows, labelDim),
      config: model.config,
      onNotice: o.onNotice,
      onProgress: (p) => o.onProgress?.({ stage: 'train', done: p.step, total: p.steps, info: `${p.msPerStep.toFixed(0)} ms/step · corr ${p.terms.correlation?.toFixed(3) ?? '…'}` }),
    });
    // The nets' outputs are then coordinated by linear CCA (Andrew et al.'s final step), fitted on
    // the whole training split; annotation and zero-shot work in that canonical space.
    const imagesOut = (a: Matrix, m: number) => outputsOf((t) => model.imageOutputs(t), a, m, pixels);
    const labelsOut = (b: Matrix, m: number) => outputsOf((t) => model.labelOutputs(t), b, m, labelDim);
    const { x, y } = viewsOf(trainSplit, pixels, ctx.classRows, labelDim);
    const h1 = imagesOut(x, trainSplit.count);
    const h2 = labelsOut(y, trainSplit.count);
    const fit = fitCca(h1, h2, trainSplit.count, outDim, outDim, { r1: model.config.r1, r2: model.config.r2 });
    const k = componentsFor(ctx, fit.k);
    const rho = Array.from(fit.correlations.subarray(0, k));
    const images = (a: Matrix, m: number) => projectX(fit, imagesOut(a, m), m, k);
    const labels = (b: Matrix, m: number) => projectY(fit, labelsOut(b, m), m, k);
    return {
      scorer: sharedScorer(images, labels, k, rho, o.scoring ?? 'gaussian'),
      variates: { images, labels, k, correlations: rho },
      training: { steps, batchSize, lr, engine: result.engine, seconds: result.seconds, finalTerms: result.finalTerms },
      options: { ...model.config, topK: model.topK, components: k, scoring: o.scoring ?? 'gaussian', steps, batchSize, lr },
      dispose: () => model.dispose(),
    };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** A net's outputs (float32 n×out) for n rows of width `width`, in batches. */
function outputsOf(net: (t: tf.Tensor2D) => tf.Tensor2D, data: Matrix, n: number, width: number): Float32Array {
  const parts: Float32Array[] = [];
  for (let s = 0; s < n; s += 2000) {
    const rows = Math.min(2000, n - s);
    const chunk = data instanceof Float32Array ? data.subarray(s * width, (s + rows) * width) : Float32Array.from(data.subarray(s * width, (s + rows) * width));
    parts.push(readTensor(() => net(tf.tensor2d(chunk, [rows, width]))));
  }
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
