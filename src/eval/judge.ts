/**
 * The generation-accuracy judge: a classifier trained by probsem on a dataset's training split,
 * saved once per dataset (keyed by its content hash) and reused by every evaluation.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { currentBackend } from '../core/backend.js';
import { type Dataset, datasetHash, pixelsOf } from '../data/dataset.js';
import type { Classifier } from '../models/classifier.js';
import { loadModel, saveModel } from '../models/persist.js';
import { createModel } from '../models/registry.js';
import { type TrainProgress, train } from '../train/trainer.js';
import { classifierAccuracy } from './metrics.js';

export interface JudgeOptions {
  /** Where judges are kept (default $PROBSEM_CACHE or ~/.cache/probsem). */
  cacheDir?: string;
  epochs?: number;
  seed?: number;
  onProgress?: (p: TrainProgress) => void;
  onNotice?: (msg: string) => void;
}

export interface Judge {
  classifier: Classifier;
  /** Accuracy on the dataset's test split. */
  testAccuracy: number;
  dir: string;
}

export function defaultCacheDir(): string {
  return process.env.PROBSEM_CACHE ?? join(homedir(), '.cache', 'probsem');
}

export function judgeDir(ds: Dataset, cacheDir = defaultCacheDir()): string {
  return join(cacheDir, 'judges', `${ds.name.replace(/[^A-Za-z0-9_-]+/g, '_')}-${datasetHash(ds)}`);
}

/** Loads the dataset's judge, training and saving it first if there is none. */
export async function getJudge(ds: Dataset, opts: JudgeOptions = {}): Promise<Judge> {
  const dir = judgeDir(ds, opts.cacheDir);
  if (existsSync(join(dir, 'model.json'))) {
    const { model, meta } = loadModel<Classifier>(dir);
    return { classifier: model, testAccuracy: Number(meta.metrics?.testAccuracy), dir };
  }
  const pixels = pixelsOf(ds);
  const epochs = opts.epochs ?? 8;
  const seed = opts.seed ?? 0;
  const batchSize = Math.min(100, ds.train.count);
  const steps = epochs * Math.floor(ds.train.count / batchSize);
  opts.onNotice?.(`training the judge classifier for ${ds.name} (${epochs} epochs, saved to ${dir} for reuse)`);
  const config = { inputDim: pixels, numClasses: ds.classNames.length, height: ds.height };
  const clf = createModel('classifier', config, seed) as Classifier;
  const r = await train(clf, ds.train, { pixels, numClasses: ds.classNames.length }, {
    steps,
    batchSize,
    lr: 1e-3,
    seed,
    logEvery: 100,
    onProgress: opts.onProgress,
  });
  const testAccuracy = classifierAccuracy(clf, ds.test, pixels);
  const trainAccuracy = classifierAccuracy(clf, ds.train, pixels);
  saveModel(dir, clf, {
    classNames: ds.classNames,
    dataset: { name: ds.name, source: ds.source, hash: datasetHash(ds), height: ds.height, width: ds.width, trainCount: ds.train.count },
    training: { seed, steps, batchSize, lr: 1e-3, backend: currentBackend(), seconds: r.seconds, finalTerms: r.finalTerms },
    metrics: { testAccuracy, trainAccuracy },
  });
  return { classifier: clf, testAccuracy, dir };
}
