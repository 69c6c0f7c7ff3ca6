/**
 * Finds and loads datasets by name or directory.
 *
 * `fashion-mnist` is looked for in: --data DIR, $PROBSEM_DATA, Debian's dataset-fashion-mnist
 * package, then the compact real subset shipped in this repository. `fashion-mnist-subset` is
 * that subset (the demo's default). `mnist` needs a directory (--data or $PROBSEM_DATA). Any other
 * spec is a directory holding IDX files with the standard names (optionally a classes.txt), or a
 * user's pictures: `folder:DIR` and `manifest:FILE` (./image-folder.ts), or the CIFAR files:
 * `cifar10:DIR`, `cifar100:DIR` (./cifar.ts), or `emoji[?…]` built from npm packages (./emoji.ts).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProbsemError } from '../core/errors.js';
import { readIdxImagesAndLabels } from './idx.js';
import { FOLDER_PREFIX, MANIFEST_PREFIX, loadImageSet } from './image-folder.js';
import { isCifarSpec, loadCifar } from './cifar.js';
import { isEmojiSpec, loadEmoji } from './emoji.js';
import { PAIRED_PREFIX, makePairedDataset, parsePairedSpec } from './paired.js';
import { type Dataset, FASHION_MNIST_CLASSES, MNIST_CLASSES, validateSplit } from './dataset.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository's data folder (src/data → ../../data, also from dist/data). */
export const SHIPPED_DATA_DIR = resolve(HERE, '..', '..', 'data');
export const SHIPPED_SUBSET_DIR = join(SHIPPED_DATA_DIR, 'fashion-mnist-subset');
export const DEBIAN_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** The IDX datasets found by name alone (emoji and the folder, manifest and CIFAR specs are named in the error's hint). */
export const DATASET_NAMES = ['fashion-mnist', 'fashion-mnist-subset', 'mnist'] as const;

export interface LoadOptions {
  /** Directory given by the user (--data). */
  dataDir?: string;
  /** Called with notices such as a fallback to the shipped subset. */
  onNotice?: (msg: string) => void;
  /** folder:/manifest: datasets: skip unreadable pictures and list them (default), or stop. */
  onBadImage?: 'skip' | 'error';
  /** folder:/manifest: datasets: pictures decoded so far, on a first load. */
  onProgress?: (done: number, total: number) => void;
}

interface IdxFiles {
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
}

// Accept both the dash (Fashion-MNIST) and dot (original MNIST) spellings, gzipped or raw.
const PATTERNS: Record<keyof IdxFiles, RegExp> = {
  trainImages: /^train-images[.-]idx3-ubyte(\.gz)?$/,
  trainLabels: /^train-labels[.-]idx1-ubyte(\.gz)?$/,
  testImages: /^t10k-images[.-]idx3-ubyte(\.gz)?$/,
  testLabels: /^t10k-labels[.-]idx1-ubyte(\.gz)?$/,
};

/** The four IDX files in `dir`, or null (with what is missing) if it does not hold them. */
export function findIdxFiles(dir: string): { files: IdxFiles | null; missing: string[] } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return { files: null, missing: ['(directory)'] };
  const names = readdirSync(dir);
  const found: Partial<IdxFiles> = {};
  const missing: string[] = [];
  for (const key of Object.keys(PATTERNS) as (keyof IdxFiles)[]) {
    // Prefer the raw file over the gzipped one when both exist (faster to read).
    const match = names.filter((n) => PATTERNS[key].test(n)).sort((a, b) => a.length - b.length)[0];
    if (match) found[key] = join(dir, match);
    else missing.push(PATTERNS[key].source);
  }
  return { files: missing.length === 0 ? (found as IdxFiles) : null, missing };
}

/** Loads the four IDX files of `dir`. */
export async function loadIdxDirectory(dir: string, name: string, classNames?: string[]): Promise<Dataset> {
  const { files, missing } = findIdxFiles(dir);
  if (!files) {
    throw new ProbsemError(
      missing[0] === '(directory)'
        ? `dataset directory ${dir} does not exist`
        : `dataset directory ${dir} lacks IDX files matching ${missing.join(', ')}`,
      'NOT_FOUND',
    );
  }
  const train = await readIdxImagesAndLabels(files.trainImages, files.trainLabels);
  const test = await readIdxImagesAndLabels(files.testImages, files.testLabels);
  if (train.height !== test.height || train.width !== test.width) {
    throw new ProbsemError(
      `${dir}: train images are ${train.height}×${train.width} but test images are ${test.height}×${test.width}`,
      'DATA_FORMAT',
    );
  }
  let maxLabel = 0;
  for (const l of train.labels) maxLabel = Math.max(maxLabel, l);
  const classesFile = join(dir, 'classes.txt');
  let classes = classNames;
  if (!classes && existsSync(classesFile)) {
    classes = readFileSync(classesFile, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);
  }
  classes ??= Array.from({ length: maxLabel + 1 }, (_, i) => String(i));
  const ds: Dataset = {
    name,
    source: dir,
    height: train.height,
    width: train.width,
    classNames: classes,
    train: { images: train.images, labels: train.labels, count: train.count },
    test: { images: test.images, labels: test.labels, count: test.count },
  };
  validateSplit(ds.train, classes.length, `${files.trainLabels}`);
  validateSplit(ds.test, classes.length, `${files.testLabels}`);
  return ds;
}

function candidateDirs(name: string, opts: LoadOptions): string[] {
  // A directory the user names is the only place looked at.
  if (opts.dataDir) return [opts.dataDir, join(opts.dataDir, name)];
  const dirs: string[] = [];
  for (const base of [process.env.PROBSEM_DATA]) {
    if (!base) continue;
    dirs.push(base, join(base, name));
  }
  return dirs;
}

/** Resolves a dataset spec (registry name or directory) and loads it. */
export async function loadDataset(spec: string, opts: LoadOptions = {}): Promise<Dataset> {
  if (spec.startsWith(PAIRED_PREFIX)) {
    const o = parsePairedSpec(spec);
    return makePairedDataset(await loadDataset(o.base, opts), o, spec);
  }
  if (spec.startsWith(FOLDER_PREFIX) || spec.startsWith(MANIFEST_PREFIX)) {
    return loadImageSet(spec, { onBadImage: opts.onBadImage, onNotice: opts.onNotice, onProgress: opts.onProgress });
  }
  if (isCifarSpec(spec)) return loadCifar(spec);
  if (isEmojiSpec(spec)) return loadEmoji(spec, { onNotice: opts.onNotice, onProgress: opts.onProgress });
  if (spec === 'fashion-mnist-subset') {
    return loadIdxDirectory(SHIPPED_SUBSET_DIR, spec, FASHION_MNIST_CLASSES);
  }
  if (spec === 'fashion-mnist' || spec === 'mnist') {
    const classes = spec === 'mnist' ? MNIST_CLASSES : FASHION_MNIST_CLASSES;
    const dirs = candidateDirs(spec, opts);
    if (spec === 'fashion-mnist' && !opts.dataDir) dirs.push(DEBIAN_FASHION_MNIST_DIR);
    for (const d of dirs) {
      if (findIdxFiles(d).files) return loadIdxDirectory(d, spec, classes);
    }
    if (opts.dataDir) {
      throw new ProbsemError(`--data ${opts.dataDir}: no ${spec} IDX files there (nor in ${join(opts.dataDir, spec)})`, 'NOT_FOUND');
    }
    if (spec === 'fashion-mnist') {
      opts.onNotice?.(
        `full Fashion-MNIST not found (looked in ${dirs.join(', ') || 'no directory'}); ` +
          `using the shipped subset (10,000 train / 2,000 test). Install it with ` +
          `'apt-get install dataset-fashion-mnist' or pass --data DIR.`,
      );
      return loadIdxDirectory(SHIPPED_SUBSET_DIR, 'fashion-mnist-subset', FASHION_MNIST_CLASSES);
    }
    throw new ProbsemError(
      `MNIST not found: pass --data DIR (or set PROBSEM_DATA) to a directory with its four IDX files`,
      'NOT_FOUND',
    );
  }
  if (existsSync(spec)) {
    if (!statSync(spec).isDirectory()) throw new ProbsemError(`not a directory: ${spec} (a dataset is a directory of IDX files)`, 'NOT_FOUND');
    return loadIdxDirectory(resolve(spec), spec);
  }
  // Something written as a path is a missing directory, not a misspelt dataset name.
  if (/[\\/]|^\.|^~/.test(spec)) throw new ProbsemError(`no such directory: ${spec}`, 'NOT_FOUND');
  throw new ProbsemError(
    `unknown dataset '${spec}': known datasets are ${DATASET_NAMES.join(', ')}; or give a directory of IDX files, folder:DIR (a subfolder of pictures per class), manifest:FILE (CSV or JSONL), cifar10:DIR or cifar100:DIR (the CIFAR files), emoji[?styles=google&test=twitter&size=32] (the emoji packages), or paired:<dataset>`,
    'NOT_FOUND',
  );
}
