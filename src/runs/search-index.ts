/**
 * The one index behind every search of a run: the exact `KlIndex` of a run's posteriors over one
 * split of a dataset, built once and reused — in memory within a process, and on disk beside the
 * run (`<run>/index-cache/`), so the next process starts without encoding the split again.
 *
 * A cache file is trusted only when everything it was built from still holds: its own SHA-256
 * (KlIndex.load: a truncated or corrupted file fails it), the run's weights hash, the dataset's
 * content hash, the split, its size and the posterior kind. Anything else is rebuilt, with a notice
 * saying why, and written back atomically (a reader sees the old file or the new one, never half).
 *
 * PROBSEM_INDEX_CACHE=off keeps indexes in memory only; PROBSEM_INDEX_CACHE=DIR keeps the files
 * under DIR (one folder per run) instead of inside run directories. A run directory that cannot be
 * written to (read-only) is searched all the same, with a notice, from an index kept in memory.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { sha256 } from '../core/files.js';
import { type Dataset, datasetHash, pixelsOf } from '../data/dataset.js';
import { KlIndex } from '../index/kl-index.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import { encodeSplitGaussians } from './retrieval.js';

export type SplitName = 'test' | 'train';

export interface SearchIndexOptions {
  /** Which split of the dataset (default test). */
  split?: SplitName;
  onNotice?: (msg: string) => void;
  /** false: never write a cache file (server workers: the main thread has written it). Default true. */
  save?: boolean;
}

/** How the last `searchIndex` call got its index: for tests, benchmarks and the CLI's notes. */
export type IndexSource = 'memory' | 'file' | 'built';

/** Indexes held by this process, most recently used last; a few runs at most stay in memory. */
const MEMORY = new Map<string, KlIndex>();
const MEMORY_LIMIT = 4;
/** Dataset hashes per loaded dataset object (hashing 70,000 images costs ~0.2 s; do it once). */
const HASHES = new WeakMap<Dataset, string>();
let lastSource: IndexSource = 'built';

export function lastIndexSource(): IndexSource {
  return lastSource;
}

/** Forgets the indexes held in memory (tests; a library user done with a run). Files stay. */
export function clearSearchIndexMemory(): void {
  MEMORY.clear();
}

function hashOf(ds: Dataset): string {
  let h = HASHES.get(ds);
  if (h === undefined) {
    h = datasetHash(ds);
    HASHES.set(ds, h);
  }
  return h;
}

/**
 * Where a run's index of a dataset split is kept: under the run directory, or under
 * $PROBSEM_INDEX_CACHE (a folder per run path); null when caching on disk is switched off.
 */
export function searchIndexPath(runDir: string, ds: Dataset, split: SplitName = 'test'): string | null {
  const env = process.env.PROBSEM_INDEX_CACHE;
  if (env === 'off') return null;
  const abs = resolve(runDir);
  const dir = env ? join(env, sha256(abs).slice(0, 16)) : join(abs, 'index-cache');
  // The name only helps a person find the file; the hash in it and the checks on load decide.
  const name = basename(ds.name).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 48) || 'dataset';
  return join(dir, `${name}-${split}-${hashOf(ds)}.pskl`);
}

/**
 * The run's index of `ds[split]`, from memory, from its cache file, or built (and saved). The
 * index records the run's weights hash and the dataset's hash (as `probsem index build` does), so
 * the same file also serves `probsem index query`.
 */
export function searchIndex(runDir: string, model: ImageModel, meta: ModelFile, ds: Dataset, o: SearchIndexOptions = {}): KlIndex {
  const split = o.split ?? 'test';
  const hash = hashOf(ds);
  const key = [resolve(runDir), meta.weights.sha256, hash, split].join('\0');
  const held = MEMORY.get(key);
  if (held) {
    MEMORY.delete(key);
    MEMORY.set(key, held);
    lastSource = 'memory';
    return held;
  }
  const path = searchIndexPath(runDir, ds, split);
  const kind = model.encodeImageFull ? 'full' : 'diag';
  let index: KlIndex | null = null;
  if (path !== null && existsSync(path)) {
    let why: string | null = null;
    try {
      const loaded = KlIndex.load(path);
      why = staleReason(loaded, meta, hash, split, ds[split].count, model.latentDim, kind);
      if (why === null) index = loaded;
    } catch (e) {
      if (!(e instanceof ProbsemError)) throw e;
      why = e.message;
    }
    if (why !== null) o.onNotice?.(`the cached index ${path} cannot be used (${why}); rebuilding it`);
  }
  if (index) {
    lastSource = 'file';
  } else {
    index = buildSearchIndex(runDir, model, meta, ds, split);
    lastSource = 'built';
    if (path !== null && o.save !== false) {
      try {
        mkdirSync(join(path, '..'), { recursive: true });
        index.save(path);
      } catch (e) {
        const why = e instanceof ProbsemError ? e.message : (e as Error).message;
        o.onNotice?.(`could not keep the index of ${ds.name} ${split} at ${path} (${why}); it is used from memory (PROBSEM_INDEX_CACHE=DIR keeps it elsewhere)`);
      }
    }
  }
  MEMORY.set(key, index);
  if (MEMORY.size > MEMORY_LIMIT) MEMORY.delete(MEMORY.keys().next().value!);
  return index;
}

/** Encodes the split and indexes it, with what a later load checks recorded in its meta. */
export function buildSearchIndex(runDir: string, model: ImageModel, meta: ModelFile, ds: Dataset, split: SplitName = 'test'): KlIndex {
  const s = ds[split];
  const items = encodeSplitGaussians(model, s, pixelsOf(ds));
  const perItem = s.labels2 ? 2 : 1;
  const labels = new Int32Array(s.count * perItem);
  for (let i = 0; i < s.count; i++) {
    labels[i * perItem] = s.labels[i];
    if (s.labels2) labels[i * perItem + 1] = s.labels2[i];
  }
  return KlIndex.build(items, {
    labels: { perItem, values: labels },
    meta: {
      run: resolve(runDir),
      model: meta.model,
      // What the index was built from, so a query can tell a run retrained in place (checkIndexRun).
      runWeightsSha256: meta.weights.sha256,
      ...(meta.contentSha256 ? { runContentSha256: meta.contentSha256 } : {}),
      dataset: ds.name,
      datasetHash: hashOf(ds),
      split,
      classNames: ds.classNames,
    },
  });
}

/** Why a loaded cache file does not belong to this run and split (null: it does). */
function staleReason(ix: KlIndex, meta: ModelFile, hash: string, split: SplitName, count: number, dim: number, kind: 'diag' | 'full'): string | null {
  const m = ix.meta;
  if (m.runWeightsSha256 !== meta.weights.sha256) return `built from weights ${short(m.runWeightsSha256)}, the run now has ${short(meta.weights.sha256)}: retrained or replaced`;
  if (m.runContentSha256 !== undefined && meta.contentSha256 !== undefined && m.runContentSha256 !== meta.contentSha256) return "the run's model.json changed since";
  if (m.datasetHash !== hash) return `built from dataset hash ${String(m.datasetHash)}, the dataset now hashes to ${hash}`;
  if (m.split !== split) return `it indexes the ${String(m.split)} split, not ${split}`;
  if (ix.count !== count || ix.dim !== dim || ix.kind !== kind) return `it holds ${ix.count} ${ix.kind} posteriors of dimension ${ix.dim}, expected ${count} ${kind} of dimension ${dim}`;
  return null;
}

const short = (h: unknown) => (typeof h === 'string' ? h.slice(0, 12) : String(h));
