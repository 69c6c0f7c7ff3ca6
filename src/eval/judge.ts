/**
 * The generation-accuracy judge: a classifier trained by probsem on a dataset's training split,
 * kept once per dataset (keyed by its content hash) and reused by every evaluation.
 *
 * Judges are looked for in this package's data/judges (made by scripts/train-judges.ts, read only),
 * then in the user cache, and trained into the cache only when neither has one: training takes
 * minutes, loading a judge well under a second.
 */
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { currentBackend } from '../core/backend.js';
import { type Dataset, datasetHash, pixelsOf } from '../data/dataset.js';
import { SHIPPED_DATA_DIR } from '../data/registry.js';
import type { Classifier } from '../models/classifier.js';
import { loadModel, readModelMeta, saveModel } from '../models/persist.js';
import { createModel } from '../models/registry.js';
import { type TrainProgress, train } from '../train/trainer.js';
import { classifierAccuracy } from './metrics.js';

/** Judges shipped with probsem, one folder per dataset content hash. */
export const SHIPPED_JUDGES_DIR = join(SHIPPED_DATA_DIR, 'judges');

/** Tags the notice sent just before a judge is trained, so a caller can say how to skip it. */
export type JudgeNoticeKind = 'judge-training';

export interface JudgeTrainingOptions {
  epochs?: number;
  seed?: number;
  onProgress?: (p: TrainProgress) => void;
}

export interface JudgeOptions extends JudgeTrainingOptions {
  /** Where judges are kept (default $PROBSEM_CACHE or ~/.cache/probsem). */
  cacheDir?: string;
  /** Folder of shipped judges, looked in first (default data/judges; null: none). */
  shippedDir?: string | null;
  onNotice?: (msg: string, kind?: JudgeNoticeKind) => void;
}

export interface Judge {
  classifier: Classifier;
  /** Accuracy on the dataset's test split. */
  testAccuracy: number;
  dir: string;
  /** Where it came from: shipped with probsem, the user cache, or trained just now. */
  origin: 'shipped' | 'cache' | 'trained';
}

export function defaultCacheDir(): string {
  return process.env.PROBSEM_CACHE ?? join(homedir(), '.cache', 'probsem');
}

function judgeName(ds: Dataset, hash: string): string {
  return `${ds.name.replace(/[^A-Za-z0-9_-]+/g, '_')}-${hash}`;
}

/** The dataset's judge folder in the user cache (where it is trained to). */
export function judgeDir(ds: Dataset, cacheDir = defaultCacheDir(), hash = datasetHash(ds)): string {
  return join(cacheDir, 'judges', judgeName(ds, hash));
}

/**
 * The shipped judge for the dataset's content, or null. Matched by hash alone, so the subset loaded
 * as a directory path finds it too; the hash in model.json must agree, so a renamed folder cannot
 * hand a judge to the wrong data.
 */
export function shippedJudgeDir(ds: Dataset, root: string = SHIPPED_JUDGES_DIR, hash = datasetHash(ds)): string | null {
  if (!existsSync(root)) return null;
  for (const name of readdirSync(root).filter((n) => n.endsWith(`-${hash}`))) {
    const dir = join(root, name);
    if (existsSync(join(dir, 'model.json')) && readModelMeta(dir).dataset?.hash === hash) return dir;
  }
  return null;
}

/** Where the dataset's judge already is (shipped, then the cache), or null when it must be trained. */
export function findJudge(
  ds: Dataset,
  opts: Pick<JudgeOptions, 'cacheDir' | 'shippedDir'> = {},
  hash = datasetHash(ds),
): { dir: string; origin: 'shipped' | 'cache' } | null {
  const shipped = opts.shippedDir === null ? null : shippedJudgeDir(ds, opts.shippedDir, hash);
  if (shipped) return { dir: shipped, origin: 'shipped' };
  const cached = judgeDir(ds, opts.cacheDir, hash);
  return existsSync(join(cached, 'model.json')) ? { dir: cached, origin: 'cache' } : null;
}

/** Loads the dataset's judge, training and saving it to the cache first if there is none. */
export async function getJudge(ds: Dataset, opts: JudgeOptions = {}): Promise<Judge> {
  const hash = datasetHash(ds);
  const found = findJudge(ds, opts, hash);
  if (found) {
    const { model, meta } = loadModel<Classifier>(found.dir);
    return { classifier: model, testAccuracy: Number(meta.metrics?.testAccuracy), dir: found.dir, origin: found.origin };
  }
  const dir = judgeDir(ds, opts.cacheDir, hash);
  const epochs = opts.epochs ?? 8;
  opts.onNotice?.(
    `training the judge classifier for ${ds.name} first (${epochs} epochs over ${ds.train.count} images, minutes; saved to ${dir} for reuse)`,
    'judge-training',
  );
  return { ...(await trainJudge(ds, dir, opts, hash)), origin: 'trained' };
}

/**
 * Trains the judge (the default CNN, seeded, on the default engine) and saves it to `dir` with its
 * test accuracy. scripts/train-judges.ts makes the shipped judges with this same function.
 */
export async function trainJudge(
  ds: Dataset,
  dir: string,
  opts: JudgeTrainingOptions = {},
  hash = datasetHash(ds),
): Promise<Omit<Judge, 'origin'>> {
  const pixels = pixelsOf(ds);
  const epochs = opts.epochs ?? 8;
  const seed = opts.seed ?? 0;
  const batchSize = Math.min(100, ds.train.count);
  const steps = epochs * Math.floor(ds.train.count / batchSize);
  const lr = 1e-3;
  // The same CNN for grey and colour images: its first convolution reads every channel.
  const config = { inputDim: pixels, numClasses: ds.classNames.length, height: ds.height, ...((ds.channels ?? 1) !== 1 ? { channels: ds.channels } : {}) };
  const clf = createModel('classifier', config, seed) as Classifier;
  const r = await train(clf, ds.train, { pixels, numClasses: ds.classNames.length }, {
    steps,
    batchSize,
    lr,
    seed,
    logEvery: 100,
    onProgress: opts.onProgress,
  });
  const testAccuracy = classifierAccuracy(clf, ds.test, pixels);
  const trainAccuracy = classifierAccuracy(clf, ds.train, pixels);
  saveModel(dir, clf, {
    classNames: ds.classNames,
    dataset: { name: ds.name, source: ds.source, hash, height: ds.height, width: ds.width, trainCount: ds.train.count },
    training: { seed, steps, batchSize, lr, backend: currentBackend(), engine: r.engine, seconds: r.seconds, finalTerms: r.finalTerms },
    metrics: { testAccuracy, trainAccuracy },
  });
  return { classifier: clf, testAccuracy, dir };
}
