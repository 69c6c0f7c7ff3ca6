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
import { type Dataset, datasetHash, pixelsOf, withoutClasses, withoutTags } from '../data/dataset.js';
import { type LabelEncodingSpec, buildLabelEncoding, classInputRows, labelInputWidth } from '../text/labels.js';
import { classLabelInputs } from './model-use.js';
import type { OovPolicy } from '../text/word-vectors.js';
import { loadDataset } from '../data/registry.js';
import { type ImageModel, type Trainable, convArchitecture, needsImageShape } from '../models/base.js';
import { type ModelFile, loadModel, saveModel, updateModelMeta } from '../models/persist.js';
import { createModel, getModelEntry, hasModelOption, modelsWithOption } from '../models/registry.js';
import { Informed } from '../models/informed.js';
import { type EngineChoice, type TrainProgress, CHECKPOINT_FILE, train } from '../train/trainer.js';
import { readCheckpoint } from '../train/checkpoint.js';
import type { LrSchedule } from '../train/schedule.js';
import { type JudgeNoticeKind, getJudge } from '../eval/judge.js';
import { type NllResult, generativePrior, importanceSampledNll } from '../eval/likelihood.js';
import { type PixelLikelihood, likelihoodOf } from '../distributions/pixel-likelihood.js';
import { FeatureMoments } from '../eval/fid.js';
import { type RetrievalMeasures, type TripletAccuracy, retrievalMeasures, tripletAccuracy } from '../eval/metric-learning.js';
import { sampleTriplets } from '../data/triplets.js';
import { encodeSplit } from './retrieval.js';
import { type TagRankingMeasures, tagRankingMeasures, tagScores } from '../eval/tag-ranking.js';
import {
  annotationAccuracy,
  generationAccuracy,
  type JudgeFid,
  judgeFid,
  labelSetQuery,
  pairedAccuracy,
  pairRetrievalPrecisionAtK,
  type PairRetrievalPrecision,
  labelLogLikelihoods,
  reconstructionError,
  type ZeroShotResult,
  type RetrievalPrecision,
  retrievalPrecisionAtK,
  zeroShotAccuracy,
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
  /** Training engine: 'auto' (default: probsem's wasm kernels where the model has them), 'fast' or 'tfjs'. */
  engine?: EngineChoice;
  /** Extra model options (e.g. beta for the VAE). */
  modelOptions?: Record<string, unknown>;
  /** conv: `convArchitecture` for the dataset's image size under modelOptions (which win); mlp (default): the models' own. */
  arch?: 'mlp' | 'conv';
  onProgress?: (p: TrainProgress) => void;
  onNotice?: (msg: string) => void;
  /** What a non-finite loss or gradient does: stop (default) or skip the batch. */
  onNonFinite?: 'stop' | 'skip';
  /** Label-encoder inputs: one-hot (default) or word vectors of the class phrases. */
  labels?: LabelEncodingSpec;
  /** Overrides of the class → phrase table (`{ "Ankle boot": "boot" }` or `Ankle boot=boot,…`). */
  labelPhrases?: Record<string, string> | string;
  /** Unknown words in a class phrase: an error (default) or skipped. */
  oov?: OovPolicy;
  /**
   * On tag-set data with word-vector labels: 'use' (default) trains on each picture's tags (the
   * tag-set mean as label input, tag-set priors); 'ignore' trains on its class alone, as on data
   * without tags.
   */
  tags?: 'use' | 'ignore';
  /** Classes to leave out of training, for zero-shot evaluation. */
  holdout?: string[];
  /** Learning-rate schedule over the run (default constant). */
  lrSchedule?: LrSchedule;
  /** Stops training with a checkpoint of the current step (see TrainOptions.signal). */
  signal?: AbortSignal;
  /** folder:/manifest: datasets: skip unreadable pictures (default, listed in model.json) or stop. */
  onBadImage?: 'skip' | 'error';
  /** folder:/manifest: datasets: pictures decoded so far on a first load. */
  onDecodeProgress?: (done: number, total: number) => void;
}

export interface TrainRunResult {
  dir: string;
  meta: ModelFile;
  dataset: Dataset;
  model: Trainable;
}

export async function trainRun(o: TrainRunOptions): Promise<TrainRunResult> {
  const ds = await loadDataset(o.dataset, { dataDir: o.dataDir, onNotice: o.onNotice, onBadImage: o.onBadImage, onProgress: o.onDecodeProgress });
  const pixels = pixelsOf(ds);
  const stepsPerEpoch = Math.floor(ds.train.count / o.batchSize);
  if (o.batchSize > ds.train.count) {
    throw new ProbsemError(`--batch ${o.batchSize} exceeds the ${ds.train.count} training images`, 'BAD_OPTION');
  }
  const steps = o.steps ?? (o.epochs ?? 0) * stepsPerEpoch;
  if (!(steps >= 1)) throw new ProbsemError('give --steps N or --epochs N (at least one step)', 'BAD_OPTION');
  const heldOut = resolveHoldout(ds.classNames, o.holdout ?? []);
  // Word-vector runs on tag-set data also read every tag's vector: priors and label inputs use them.
  const tagged = ds.tagNames !== undefined && ds.train.tagStart !== undefined && (o.labels?.kind ?? 'onehot') === 'words' && o.tags !== 'ignore';
  const { info: labels } = await buildLabelEncoding(o.labels ?? { kind: 'onehot' }, ds.classNames, {
    phrases: o.labelPhrases,
    oov: o.oov,
    onNotice: o.onNotice,
    ...(tagged ? { tags: ds.tagNames } : {}),
  });
  const tagInfo = labels.kind === 'words' ? labels.tags : undefined;
  const numClasses = ds.classNames.length;
  const labelDim = labelInputWidth(labels, numClasses);
  const classRows = classInputRows(labels, numClasses);
  const labelInputs = (ls: Int32Array) => {
    const data = new Float32Array(ls.length * labelDim);
    ls.forEach((c, i) => data.set(classRows.subarray(c * labelDim, (c + 1) * labelDim), i * labelDim));
    return { data, width: labelDim };
  };
  const unknownTags = new Set((tagInfo?.unknown ?? []).map((t) => tagInfo!.names.indexOf(t)));
  const trainSplit = withoutTags(heldOut.length > 0 ? withoutClasses(ds.train, new Set(heldOut), pixels) : ds.train, unknownTags);
  const tagInputs = tagInfo ? { rows: Float32Array.from(tagInfo.vectors), width: labelDim } : undefined;
  // --arch conv sets what the model has: CVAE and the autoencoders take the decoder, not encoder convolutions.
  const arch = o.arch === 'conv' ? Object.fromEntries(Object.entries(convArchitecture(ds.height, ds.width)).filter(([k]) => hasModelOption(o.model, k))) : {};
  const modelOptions = { ...arch, ...(o.modelOptions ?? {}) };
  if (o.arch === 'conv' && !hasModelOption(o.model, 'decoderConv')) {
    throw new ProbsemError(`--arch conv applies to --model ${modelsWithOption('decoderConv').join(', ')}`, 'BAD_OPTION');
  }
  let config: unknown = {
    inputDim: pixels,
    numClasses,
    ...(labels.kind === 'words' ? { labelDim } : {}),
    latent: o.latent,
    // Convolutions and per-channel likelihood scales need the image's shape, which only the dataset knows.
    ...(needsImageShape(modelOptions) ? { imageHeight: ds.height, ...((ds.channels ?? 1) !== 1 ? { imageChannels: ds.channels } : {}) } : {}),
    ...modelOptions,
  };
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
    const savedLabelDim = Number((h.config as { labelDim?: number } | null)?.labelDim ?? numClasses);
    if (savedLabelDim !== labelDim) {
      throw new ProbsemError(
        `cannot resume: the checkpoint's label encoder takes ${savedLabelDim}-wide inputs but --labels ${labels.kind} gives ${labelDim}; resume with the run's own --labels`,
        'BAD_OPTION',
      );
    }
  }
  // Models that need the run's length in their config (SCAN's stage split) complete it here.
  const prepare = getModelEntry(o.model).prepareRun;
  if (prepare) {
    config = prepare(config as Record<string, unknown>, { steps, workers: o.workers, classInputs: { rows: classRows, width: labelDim, kind: labels.kind }, tagInputs });
  }
  const model = createModel(o.model, config, o.seed) as Trainable & { config: Record<string, unknown> };
  const result = await train(model, trainSplit, { pixels, numClasses }, {
    labelInputs,
    tagInputs,
    steps,
    batchSize: o.batchSize,
    lr: o.lr,
    seed: o.seed,
    outDir: o.out,
    checkpointEvery: o.checkpointEvery ?? 500,
    resume: o.resume,
    workers: o.workers,
    engine: o.engine,
    lrSchedule: o.lrSchedule,
    config: model.config,
    onProgress: o.onProgress,
    onNotice: o.onNotice,
    onNonFinite: o.onNonFinite,
    signal: o.signal,
  });
  const meta = saveModel(o.out, model, {
    classNames: ds.classNames,
    labels,
    holdout: heldOut.map((c) => ds.classNames[c]),
    dataset: {
      name: ds.name,
      source: ds.source,
      hash: datasetHash(ds),
      height: ds.height,
      width: ds.width,
      ...((ds.channels ?? 1) !== 1 ? { channels: ds.channels } : {}),
      trainCount: trainSplit.count,
      ...('skipped' in ds && Array.isArray(ds.skipped) && ds.skipped.length > 0 ? { skipped: ds.skipped as { path: string; reason: string }[] } : {}),
    },
    training: {
      seed: o.seed,
      steps,
      batchSize: o.batchSize,
      lr: o.lr,
      backend: currentBackend(),
      engine: result.engine,
      ...(o.lrSchedule && o.lrSchedule !== 'constant' ? { lrSchedule: o.lrSchedule } : {}),
      ...(tagInputs ? { labelInput: 'tag-set-mean' as const } : {}),
      seconds: result.seconds,
      finalTerms: result.finalTerms,
    },
  });
  return { dir: o.out, meta, dataset: ds, model };
}
export { annotateImage, classLabelInputs, generateForLabel, labelIndex, reconstruct } from './model-use.js';

/** The height, width and channels of the images a run takes (28×28 grey where it records no dataset). */
export function runImageShape(meta: ModelFile): { height: number; width: number; channels: 1 | 3 } {
  const channels = meta.dataset?.channels === 3 ? 3 : 1;
  const height = meta.dataset?.height ?? 28;
  return { height, width: meta.dataset?.width ?? Number(meta.config.inputDim) / (height * channels), channels };
}

/** Loads a run's model and checks it is an image model. */
export function loadImageModel(dir: string): { model: ImageModel; meta: ModelFile } {
  const { model, meta } = loadModel(dir);
  if (!('encodeImage' in model)) {
    throw new ProbsemError(`${dir} holds a ${meta.model}, not an image model`, 'BAD_OPTION');
  }
  return { model: model as unknown as ImageModel, meta };
}

/**
 * The dataset a command on a run uses: the one given, else the one the run records. Runs saved by
 * older library code record none; they were Fashion-MNIST runs in practice, so that is used, but
 * said aloud rather than assumed silently.
 */
export function runDatasetName(meta: ModelFile, given: string | undefined, onNotice?: (m: string) => void): string {
  if (given !== undefined) return given;
  if (meta.dataset?.name) return meta.dataset.name;
  onNotice?.("this run records no dataset (saved by an older saveModel); using 'fashion-mnist' — pass --dataset to choose");
  return 'fashion-mnist';
}

/** Fails clearly when a model and a dataset do not fit each other. */
export function checkCompatible(meta: ModelFile, ds: Dataset): void {
  const inputDim = Number(meta.config.inputDim);
  if (inputDim !== pixelsOf(ds)) {
    const h = meta.dataset?.height;
    const w = meta.dataset?.width;
    throw new ProbsemError(
      `the model expects ${h && w ? `${h}×${w}${meta.dataset?.channels === 3 ? ' RGB' : ''} images` : `${inputDim}-value images`} but dataset ${ds.name} has ${ds.height}×${ds.width}${ds.channels === 3 ? ' RGB' : ''} images`,
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
  /** Notices; `kind` tags the one sent before a judge is trained (passed through from getJudge). */
  onNotice?: (msg: string, kind?: JudgeNoticeKind) => void;
  /** Test triplets for triplet accuracy (default 10,000; 0 skips the metric-learning measures). */
  triplets?: number;
  /** Margin of triplet accuracy (default: the run's own triplet margin, else 1). */
  tripletMargin?: number;
  /** Test queries, a seeded sample, for precision@1 / R-precision / MAP@R against the training means (default 1000). */
  retrievalQueries?: number;
  /** Importance samples per test image for the NLL (`likelihood.ts`); absent or 0: not measured (it costs K decoder passes per image). */
  nllSamples?: number;
  /** Measure the NLL on the first N test images only (default all). */
  nllImages?: number;
  onNllProgress?: (done: number, total: number) => void;
}

/** Metric-learning measures of a run's posterior means (single-label datasets). */
export interface MetricLearningReport {
  triplet: TripletAccuracy & { seed: number };
  /** Test means (queries) against training means (references), Euclidean. */
  retrieval: RetrievalMeasures;
}

export interface EvalReport {
  model: string;
  dataset: string;
  testImages: number;
  /** NLL (nats) with z drawn from q(z|x) under the model's `likelihood`: the ELBO's reconstruction term. */
  reconstructionError: number;
  /** The p(x|z) the reconstruction error and NLL are in: bernoulli, gaussian or logistic. */
  likelihood: PixelLikelihood;
  /** NLL (nats) of the deterministic reconstruction from the posterior mean, same likelihood. */
  reconstructionErrorMean: number;
  annotationAccuracy: number | null;
  generationAccuracy: number | null;
  generationSd: number | null;
  generationPerLabel: Record<string, number> | null;
  generationSamplesPerLabel: number | null;
  generationRepeats: number | null;
  judgeAccuracy: number | null;
  /**
   * Fréchet distance between the judge's penultimate features of generated images (the first
   * repeat's) and of the real test images, overall and per label; null without generation.
   */
  judgeFid?: { overall: number; perLabel: Record<string, number>; generatedPerLabel: number; realImages: number } | null;
  /** Precision@20 of retrieving test images for each label, ranked by KL(q(z|l) ‖ q(z|x)). */
  retrievalPrecisionAt20?: { mean: number; perLabel: Record<string, number> } | null;
  /** The same, ranked by the annotation posterior p(l|x). */
  retrievalPrecisionAt20Posterior?: { mean: number; perLabel: Record<string, number> } | null;
  /** For runs trained with held-out classes: annotation of unseen and seen classes. */
  zeroShot?: (ZeroShotResult & { heldOut: string[] }) | null;
  /** Two-object (paired) datasets: share of test images whose two most likely labels are their two labels. */
  pairedTop2Accuracy?: number | null;
  /** Two-object datasets: share whose most likely label is one of their two (also reported as annotationAccuracy). */
  pairedTop1InSetAccuracy?: number | null;
  /** Two-object datasets: precision@20 of retrieving images showing both labels of a pair, per pair "A + B". */
  pairRetrievalPrecisionAt20?: { mean: number; perPair: Record<string, number> } | null;
  /** The same, ranked by the classification margin of the pair (`PairRanking` 'margin'). */
  pairRetrievalPrecisionAt20Margin?: { mean: number; perPair: Record<string, number> } | null;
  /** Share of seeded test triplets with zero triplet loss on the posterior means (TVAE's measure). */
  tripletAccuracy?: number | null;
  /** Importance-sampled NLL and the negative ELBO from the same draws, in nats (absent unless asked for; null where the model has none). */
  nll?: (NllResult & { seed: number }) | null;
  metricLearning?: MetricLearningReport | null;
  /**
   * Datasets whose images carry tag sets: precision@1, @5 and mean average precision of ranking
   * every tag of the vocabulary per test image (eval/tag-ranking.ts); null where the run cannot
   * rank tags (no label encoder, or not trained with word vectors on the tags).
   */
  tagAnnotation?: TagRankingMeasures | null;
  seconds: number;
}

/**
 * Triplet accuracy on a fixed seeded set of test triplets and retrieval measures of test means
 * against training means. The triplets depend only on the test labels and the seed, so every model
 * evaluated on one dataset meets the same triplets.
 */
export function metricLearningMeasures(model: ImageModel, ds: Dataset, o: { triplets: number; margin: number; queries: number; seed: number }): MetricLearningReport {
  const pixels = pixelsOf(ds);
  const k = model.latentDim;
  const test = encodeSplit(model, ds.test, pixels).mean;
  const t = sampleTriplets(ds.test.labels, o.triplets, Rng.for(o.seed, 'eval-triplets'));
  const triplet = { ...tripletAccuracy(test, ds.test.count, k, t, o.margin), seed: o.seed };
  const train = encodeSplit(model, ds.train, pixels).mean;
  const retrieval = retrievalMeasures(test, ds.test.labels, train, ds.train.labels, k, { maxQueries: o.queries, rng: Rng.for(o.seed, 'eval-retrieval-queries') });
  return { triplet, retrieval };
}

export async function evaluateRun(dir: string, o: EvalOptions = {}): Promise<EvalReport> {
  const t0 = performance.now();
  const { model, meta } = loadImageModel(dir);
  const ds = await loadDataset(runDatasetName(meta, o.dataset, o.onNotice), { dataDir: o.dataDir, onNotice: o.onNotice });
  checkCompatible(meta, ds);
  const pixels = pixelsOf(ds);
  const seed = o.seed ?? 0;
  const labels = classLabelInputs(meta);
  // Label inputs go along for models that reconstruct given the label (CVAE).
  const recon = reconstructionError(model, ds.test, pixels, seed, 'sample', labels);
  const reconMean = reconstructionError(model, ds.test, pixels, seed, 'mean', labels);
  const hasLabels = typeof model.encodeLabels === 'function';
  const paired = ds.test.labels2 !== undefined;
  // CVAE generates (decoding N(0, I) with the label) but has no q(z|l) to annotate with.
  let canGenerate = hasLabels || typeof model.generateLogits === 'function';
  if (canGenerate && paired && !o.skipGeneration) {
    o.onNotice?.('generation accuracy is not measured on two-object images (the judge classifies single objects)');
    canGenerate = false;
  }
  const pairAcc = hasLabels && paired ? pairedAccuracy(model, ds.test, pixels, labels) : null;
  const pairRetrieval = hasLabels && paired ? pairRetrievalPrecisionAtK(model, ds.test, pixels, labels, 20, 'kl') : null;
  const pairRetrievalMargin = hasLabels && paired && labels.shape[0] >= 3 ? pairRetrievalPrecisionAtK(model, ds.test, pixels, labels, 20, 'margin') : null;
  const byPairName = (r: PairRetrievalPrecision | null) =>
    r
      ? {
          mean: r.mean,
          perPair: Object.fromEntries(
            Object.entries(r.perPair).map(([key, v]) => {
              const [a, b] = key.split(',').map(Number);
              return [`${ds.classNames[a]} + ${ds.classNames[b]}`, v];
            }),
          ),
        }
      : null;
  const annotation = !hasLabels ? null : pairAcc ? pairAcc.top1InSetAccuracy : annotationAccuracy(model, ds.test, pixels, labels);
  const retrieval = hasLabels ? retrievalPrecisionAtK(model, ds.test, pixels, labels, 20, 'kl') : null;
  const retrievalPost = hasLabels ? retrievalPrecisionAtK(model, ds.test, pixels, labels, 20, 'posterior') : null;
  const perClass = (r: RetrievalPrecision | null) => (r ? { mean: r.mean, perLabel: Object.fromEntries(meta.classNames.map((c, i) => [c, r.perLabel[i]])) } : null);
  const heldOut = resolveHoldout(meta.classNames, meta.holdout ?? []);
  const zeroShot = hasLabels && heldOut.length > 0 ? { heldOut: meta.holdout!, ...zeroShotAccuracy(model, ds.test, pixels, labels, heldOut) } : null;
  const tripletCount = o.triplets ?? 10000;
  const runMargin = (meta.config as { margin?: unknown }).margin;
  // A model whose image encoder needs the label (CVAE's q(z|x,l)) has no label-free embedding to measure.
  const embedsImages = typeof model.reconstructLogits !== 'function';
  const metric =
    paired || tripletCount === 0 || !embedsImages
      ? null
      : metricLearningMeasures(model, ds, {
          triplets: tripletCount,
          margin: o.tripletMargin ?? (typeof runMargin === 'number' ? runMargin : 1),
          queries: o.retrievalQueries ?? 1000,
          seed,
        });
  let gen = null;
  let fid: JudgeFid | null = null;
  let judgeAccuracy: number | null = null;
  if (canGenerate && !o.skipGeneration) {
    const judge = await getJudge(ds, {
      cacheDir: o.judgeCacheDir,
      epochs: o.judgeEpochs,
      onProgress: o.onJudgeProgress,
      onNotice: o.onNotice,
    });
    judgeAccuracy = judge.testAccuracy;
    const featureDim = tf.tidy(() => judge.classifier.features(tf.zeros([1, pixels])).shape[1]);
    const features = ds.classNames.map(() => new FeatureMoments(featureDim));
    gen = generationAccuracy(model, judge.classifier, labels, {
      samplesPerLabel: o.samplesPerLabel ?? 1000,
      repeats: o.repeats ?? 5,
      seed,
      onProgress: o.onGenerationProgress,
      features,
    });
    try {
      fid = judgeFid(judge.classifier, features, ds.test, pixels);
    } catch (e) {
      // A degenerate judge (a few images, one epoch) can make the feature covariances ill-posed:
      // lose this one measure, not the evaluation.
      if (!(e instanceof ProbsemError)) throw e;
      o.onNotice?.(`the judge FID could not be computed: ${e.message}`);
    }
  }
  let nll: EvalReport['nll'];
  if (o.nllSamples) {
    const prior = generativePrior(meta.model);
    if (prior && !paired) {
      nll = { ...importanceSampledNll(model, ds.test, pixels, { samples: o.nllSamples, images: o.nllImages, classInputs: labels, seed, onProgress: o.onNllProgress }), seed };
    } else {
      nll = null;
      o.onNotice?.(paired ? 'the NLL is not measured on two-object images' : `the NLL is not defined here for a ${meta.model} model`);
    }
  }
  labels.dispose();
  const tagAnnotation = ds.test.tagStart && ds.tagNames ? runTagRanking(model, meta, ds, o.onNotice) : undefined;
  const report: EvalReport = {
    model: meta.model,
    dataset: ds.name,
    testImages: ds.test.count,
    reconstructionError: recon,
    likelihood: likelihoodOf(model),
    reconstructionErrorMean: reconMean,
    annotationAccuracy: annotation,
    generationAccuracy: gen?.accuracy ?? null,
    generationSd: gen?.sd ?? null,
    generationPerLabel: gen ? Object.fromEntries(ds.classNames.map((c, i) => [c, gen.perLabel[i]])) : null,
    generationSamplesPerLabel: gen?.samplesPerLabel ?? null,
    generationRepeats: gen?.repeats ?? null,
    judgeAccuracy,
    judgeFid: fid ? { overall: fid.overall, perLabel: Object.fromEntries(ds.classNames.map((c, i) => [c, fid!.perLabel[i]])), generatedPerLabel: fid.generatedPerLabel, realImages: fid.realImages } : null,
    retrievalPrecisionAt20: perClass(retrieval),
    retrievalPrecisionAt20Posterior: perClass(retrievalPost),
    zeroShot,
    ...(paired
      ? {
          pairedTop2Accuracy: pairAcc?.top2Accuracy ?? null,
          pairedTop1InSetAccuracy: pairAcc?.top1InSetAccuracy ?? null,
          pairRetrievalPrecisionAt20: byPairName(pairRetrieval),
          pairRetrievalPrecisionAt20Margin: byPairName(pairRetrievalMargin),
        }
      : {}),
    tripletAccuracy: metric?.triplet.accuracy ?? null,
    metricLearning: metric,
    ...(nll !== undefined ? { nll } : {}),
    ...(tagAnnotation !== undefined ? { tagAnnotation } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
  if (o.save) {
    // The measures are worth more than the record of them: a full or read-only disk costs only the record.
    try {
      updateModelMeta(dir, { ...meta, metrics: { ...(meta.metrics ?? {}), ...report } });
    } catch (e) {
      o.onNotice?.(`the metrics are printed only: ${(e as Error).message}`);
    }
  }
  return report;
}

/** Tag ranking of a tagged dataset's test split by a run that knows the tags' word vectors; null (said aloud) otherwise. */
function runTagRanking(model: ImageModel, meta: ModelFile, ds: Dataset, onNotice?: (m: string) => void): TagRankingMeasures | null {
  const tags = meta.labels?.kind === 'words' ? meta.labels.tags : undefined;
  if (!model.encodeLabels || !tags) {
    onNotice?.('tag ranking is not measured: it needs a label encoder trained with word vectors on the tag sets (--labels words)');
    return null;
  }
  const names = ds.tagNames!;
  if (names.length !== tags.names.length || names.some((t, i) => t !== tags.names[i])) {
    throw new ProbsemError(`the run was trained on ${tags.names.length} tags, dataset ${ds.name} has ${names.length} different ones`, 'BAD_OPTION');
  }
  const inputs = tf.tensor2d(Float32Array.from(tags.vectors), [names.length, tags.vectors.length / names.length]);
  try {
    const exclude = new Set((tags.unknown ?? []).map((t) => names.indexOf(t)));
    const r = tagRankingMeasures(tagScores(model, ds.test, pixelsOf(ds), inputs), ds.test, names.length, exclude);
    if (r.skippedEmpty > 0) onNotice?.(`tag ranking skips ${r.skippedEmpty} test images with no tags`);
    return r;
  } finally {
    inputs.dispose();
  }
}

/** Class indices of the held-out class names (case-insensitive), or a clear error. */
export function resolveHoldout(classNames: string[], names: string[]): number[] {
  const idx = names.map((n) => {
    const i = classNames.findIndex((c) => c.toLowerCase() === n.trim().toLowerCase());
    if (i < 0) throw new ProbsemError(`--holdout: '${n}' is not a class of this dataset (${classNames.join(', ')})`, 'BAD_OPTION');
    return i;
  });
  if (new Set(idx).size !== idx.length) throw new ProbsemError('--holdout names a class twice', 'BAD_OPTION');
  if (idx.length >= classNames.length) throw new ProbsemError('--holdout must leave at least one class to train on', 'BAD_OPTION');
  return idx;
}

