/**
 * Model directories: `model.json` (name, config, vocabulary, provenance, weight manifest with a
 * checksum) and `weights.bin` (float32 blob). Both are written atomically, weights first, so
 * model.json never points at weights that are not complete; a mismatch is caught by the checksum.
 * `contentSha256` covers model.json itself (all but the fields that change after saving), so an
 * edited class list, config or manifest is refused rather than loaded silently wrong.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { canonicalJson, readExactFileSync, readSmallFileSync, sha256, writeFileAtomicSync } from '../core/files.js';
import { readZip } from '../core/zip.js';
import { type TensorEntry, validateManifest, withParameterBudget } from '../nn/params.js';
import type { LabelEncodingInfo } from '../text/labels.js';
import type { Trainable } from './base.js';
import { createModel, getModelEntry } from './registry.js';

export const MODEL_FORMAT = 'probsem-model';
export const MODEL_FORMAT_VERSION = 1;

export interface ModelProvenance {
  dataset?: {
    name: string;
    source: string;
    hash: string;
    height: number;
    width: number;
    /** 3 for RGB runs; absent for grey. */
    channels?: number;
    trainCount: number;
    /** Pictures of a folder:/manifest: dataset left out as unreadable, with the reason. */
    skipped?: { path: string; reason: string }[];
  };
  training?: {
    seed: number;
    steps: number;
    batchSize: number;
    lr: number;
    backend: string;
    /** The training engine: 'fast' (probsem's kernels), 'tfjs', or 'parallel' (tfjs replicas). Absent in older runs. */
    engine?: string;
    /** Learning-rate schedule (absent: constant). */
    lrSchedule?: string;
    /** 'tag-set-mean': an image's label input was the mean word vector of its tag set (absent: its class's). */
    labelInput?: 'tag-set-mean';
    seconds: number;
    finalTerms: Record<string, number>;
  };
  metrics?: Record<string, unknown>;
}

export interface ModelFile extends ModelProvenance {
  format: typeof MODEL_FORMAT;
  formatVersion: number;
  model: string;
  config: Record<string, unknown>;
  /** Class names, in label-index order. */
  classNames: string[];
  /** How labels are fed to label encoders (details in `labels`). */
  labelEncoding: 'onehot' | 'words';
  /** The label encoding with the class input vectors (absent in older files: one-hot). */
  labels?: LabelEncodingInfo;
  /** Classes left out of training (zero-shot runs). */
  holdout?: string[];
  library: { name: 'probsem'; version: string };
  createdAt: string;
  weights: { file: string; bytes: number; sha256: string; tensors: TensorEntry[] };
  /** SHA-256 of the canonical JSON of every field but those in UNHASHED (absent in older files). */
  contentSha256?: string;
}

/** Left out of `contentSha256`: eval records metrics after saving; createdAt is not content. */
const UNHASHED = new Set(['metrics', 'createdAt', 'contentSha256']);
/** model.json is small (word vectors included); anything far larger is not one. */
const MAX_MODEL_JSON_BYTES = 256 * 2 ** 20;

/** The checksum `contentSha256` should hold for `meta` (as parsed from, or about to be written to, JSON). */
export function modelContentSha256(meta: object, hash: (data: Uint8Array | string) => string = sha256): string {
  const fields = Object.fromEntries(Object.entries(meta).filter(([k]) => !UNHASHED.has(k)));
  // Through JSON first, so the value hashed at saving is the one read back (-0, NaN, undefined).
  return hash(canonicalJson(JSON.parse(JSON.stringify(fields))));
}

export interface ModelReadOptions {
  /** Told (one line) when model.json predates `contentSha256`, so only its weights are verified. */
  onNotice?: (message: string) => void;
}

export interface LoadedModel<T extends Trainable = Trainable> {
  model: T;
  meta: ModelFile;
  dir: string;
}

export const LIBRARY_VERSION = '0.1.0';

export type ModelInfo = { classNames: string[]; labels?: LabelEncodingInfo; holdout?: string[] } & ModelProvenance;

/**
 * model.json's content and the weights blob of a model, in memory (`saveModel` writes them; the
 * explorer page's training worker zips them). `hash`: a SHA-256 hex digest (node:crypto by
 * default; the page passes a plain-JavaScript one, as a browser has no node:crypto).
 */
export function modelFileOf(model: Trainable & { config: object }, info: ModelInfo, hash: (data: Uint8Array | string) => string = sha256): { meta: ModelFile; blob: Uint8Array } {
  const { manifest, blob } = model.params.serialize();
  const meta: ModelFile = {
    format: MODEL_FORMAT,
    formatVersion: MODEL_FORMAT_VERSION,
    model: model.name,
    config: { ...model.config },
    classNames: info.classNames,
    labelEncoding: info.labels?.kind ?? 'onehot',
    labels: info.labels ?? { kind: 'onehot' },
    ...(info.holdout && info.holdout.length > 0 ? { holdout: info.holdout } : {}),
    dataset: info.dataset,
    training: info.training,
    metrics: info.metrics,
    library: { name: 'probsem', version: LIBRARY_VERSION },
    createdAt: new Date().toISOString(),
    weights: { file: 'weights.bin', bytes: blob.byteLength, sha256: hash(blob), tensors: manifest },
  };
  meta.contentSha256 = modelContentSha256(meta, hash);
  return { meta, blob };
}

/** model.json as written to disk. */
export function modelJsonText(meta: ModelFile): string {
  return JSON.stringify(meta, null, 2) + '\n';
}

export function saveModel(dir: string, model: Trainable & { config: object }, info: ModelInfo): ModelFile {
  const { meta, blob } = modelFileOf(model, info);
  mkdirSync(dir, { recursive: true });
  writeFileAtomicSync(join(dir, 'weights.bin'), blob);
  writeFileAtomicSync(join(dir, 'model.json'), modelJsonText(meta));
  return meta;
}

/** Rewrites model.json only (e.g. to record evaluation metrics), keeping the weights. */
export function updateModelMeta(dir: string, meta: ModelFile): void {
  if (isRunZip(dir)) throw new ProbsemError(`${dir} is a run archive, which probsem does not rewrite: unzip it and give the folder`, 'BAD_OPTION');
  // Only unhashed fields may change here; anything else would leave a file that no longer loads.
  if (meta.contentSha256 !== undefined && meta.contentSha256 !== modelContentSha256(meta)) {
    throw new ProbsemError(`refusing to rewrite ${join(dir, 'model.json')}: the update changes fields its content checksum covers`, 'MODEL_FORMAT');
  }
  writeFileAtomicSync(join(dir, 'model.json'), modelJsonText(meta));
}

/** Whether `path` names a run packed as a ZIP archive (the explorer page's download) rather than a folder. */
export function isRunZip(path: string): boolean {
  return /\.zip$/i.test(path) && existsSync(path) && statSync(path).isFile();
}

/** A run archive's model.json (at its root or in one folder) and the entries beside it. */
function zipRun(path: string): { jsonName: string; text: string; entry: (name: string) => Uint8Array | undefined } {
  if (statSync(path).size > 4 * 2 ** 30) throw new ProbsemError(`${path} is larger than a run archive can be (4 GiB)`, 'MODEL_FORMAT');
  const entries = readZip(readFileSync(path), path);
  const json = entries.find((e) => /^([^/]+\/)?model\.json$/.test(e.name));
  if (!json) throw new ProbsemError(`${path} holds no model.json (at its root or in one folder): it is not a probsem run archive`, 'NOT_FOUND');
  if (json.data.length > MAX_MODEL_JSON_BYTES) throw new ProbsemError(`${path}: its model.json is larger than a model file can be`, 'MODEL_FORMAT');
  const prefix = json.name.slice(0, -'model.json'.length);
  const byName = new Map(entries.map((e) => [e.name, e.data]));
  return { jsonName: `${path}:${json.name}`, text: new TextDecoder().decode(json.data), entry: (name) => byName.get(prefix + name) };
}

export function readModelMeta(dir: string, opts: ModelReadOptions = {}): ModelFile {
  if (isRunZip(dir)) {
    const z = zipRun(dir);
    return parseModelMeta(z.text, z.jsonName, opts);
  }
  const jsonPath = join(dir, 'model.json');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ProbsemError(`model directory ${dir} does not exist`, 'NOT_FOUND');
  }
  if (!existsSync(jsonPath)) {
    throw new ProbsemError(`${dir} is not a model directory: model.json is missing`, 'NOT_FOUND');
  }
  let text: string;
  try {
    text = readSmallFileSync(jsonPath, MAX_MODEL_JSON_BYTES, 'model file', 'MODEL_FORMAT').toString('utf8');
  } catch (e) {
    if (e instanceof ProbsemError) throw e;
    throw new ProbsemError(`${jsonPath} is not readable as text: ${(e as Error).message}`, 'MODEL_FORMAT');
  }
  return parseModelMeta(text, jsonPath, opts);
}

/** A model file's text, parsed and checked; `jsonPath` names it in errors. */
function parseModelMeta(text: string, jsonPath: string, opts: ModelReadOptions): ModelFile {
  let meta: ModelFile;
  try {
    meta = JSON.parse(text) as ModelFile;
  } catch (e) {
    throw new ProbsemError(`${jsonPath} is not valid JSON: ${(e as Error).message}`, 'MODEL_FORMAT');
  }
  if (meta === null || typeof meta !== 'object' || meta.format !== MODEL_FORMAT) {
    throw new ProbsemError(`${jsonPath} is not a probsem model file (format field missing or wrong)`, 'MODEL_FORMAT');
  }
  if (meta.formatVersion !== MODEL_FORMAT_VERSION) {
    throw new ProbsemError(
      `${jsonPath} has format version ${meta.formatVersion}; this probsem reads version ${MODEL_FORMAT_VERSION}`,
      'MODEL_FORMAT',
    );
  }
  checkContent(meta, jsonPath, opts);
  if (!meta.weights || typeof meta.weights !== 'object' || typeof meta.weights.sha256 !== 'string' || !Number.isSafeInteger(meta.weights.bytes)) {
    throw new ProbsemError(`${jsonPath} lacks a valid weights manifest`, 'MODEL_FORMAT');
  }
  if (meta.weights.bytes % 4 !== 0) throw new ProbsemError(`${jsonPath}: the weights size ${meta.weights.bytes} is not a whole number of float32 values`, 'MODEL_FORMAT');
  validateManifest(meta.weights.tensors, jsonPath, meta.weights.bytes / 4);
  if (!Array.isArray(meta.classNames) || !meta.classNames.every((c) => typeof c === 'string')) {
    throw new ProbsemError(`${jsonPath} lacks classNames`, 'MODEL_FORMAT');
  }
  const l = meta.labels as (Omit<Partial<Extract<LabelEncodingInfo, { kind: 'words' }>>, 'kind'> & { kind?: unknown }) | undefined;
  if (l !== undefined && (l === null || typeof l !== 'object' || (l.kind !== 'onehot' && l.kind !== 'words'))) {
    throw new ProbsemError(`${jsonPath}: labels must be a onehot or words encoding`, 'MODEL_FORMAT');
  }
  if (
    l?.kind === 'words' &&
    !(Number.isSafeInteger(l.dim) && l.dim! > 0 && Array.isArray(l.vectors) && l.vectors.length === l.dim! * meta.classNames.length &&
      l.vectors.every((x) => typeof x === 'number' && Number.isFinite(x)) && Array.isArray(l.phrases) && typeof l.source === 'string')
  ) {
    throw new ProbsemError(`${jsonPath}: the word-vector label encoding is malformed (needs dim, source, phrases and ${meta.classNames.length} class vectors)`, 'MODEL_FORMAT');
  }
  const tags = l?.kind === 'words' ? l.tags : undefined;
  if (
    tags !== undefined &&
    !(tags !== null && Array.isArray(tags.names) && tags.names.every((t) => typeof t === 'string') && Array.isArray(tags.vectors) &&
      tags.vectors.length === l!.dim! * tags.names.length && tags.vectors.every((x) => typeof x === 'number' && Number.isFinite(x)))
  ) {
    throw new ProbsemError(`${jsonPath}: the tag vectors of the word-vector label encoding are malformed (needs a vector of ${l!.dim} numbers per tag name)`, 'MODEL_FORMAT');
  }
  if (meta.holdout !== undefined && !(Array.isArray(meta.holdout) && meta.holdout.every((h) => typeof h === 'string' && meta.classNames.includes(h)))) {
    throw new ProbsemError(`${jsonPath}: holdout must list class names`, 'MODEL_FORMAT');
  }
  return meta;
}

/** Verifies `contentSha256` where the file has one; older files load as before (with a notice). */
function checkContent(meta: ModelFile, jsonPath: string, opts: ModelReadOptions): void {
  if (meta.contentSha256 === undefined) {
    opts.onNotice?.(`${jsonPath} predates content checksums (an older probsem saved it): only its weights are verified`);
    return;
  }
  let actual: string;
  try {
    actual = modelContentSha256(meta);
  } catch (e) {
    // canonicalJson recurses: a pathologically nested file overflows the stack.
    throw new ProbsemError(`${jsonPath} cannot be checked: ${(e as Error).message}`, 'MODEL_FORMAT');
  }
  if (meta.contentSha256 !== actual) {
    throw new ProbsemError(
      `${jsonPath} was changed after saving: its content does not match its contentSha256 (model, config, class names, labels, holdout, provenance and the weights manifest are covered; only metrics and createdAt may change)`,
      'MODEL_FORMAT',
    );
  }
}

/**
 * A run's model from its folder, or from a ZIP archive of it (`dir` ending in .zip: the explorer
 * page's download, model.json and weights.bin at its root or in one folder; stored entries).
 */
export function loadModel<T extends Trainable = Trainable>(dir: string, opts: ModelReadOptions = {}): LoadedModel<T> {
  // An archive is read once, for model.json and the weights.
  const zip = isRunZip(dir) ? zipRun(dir) : null;
  const meta = zip ? parseModelMeta(zip.text, zip.jsonName, opts) : readModelMeta(dir, opts);
  getModelEntry(meta.model); // clear error for an unknown model name
  if (typeof meta.weights.file !== 'string' || /[\\/]/.test(meta.weights.file)) {
    throw new ProbsemError(`${dir}/model.json names an invalid weights file`, 'MODEL_FORMAT');
  }
  const { blob, weightsPath } = readWeights(dir, meta, zip);
  return { model: modelFromWeights<T>(meta, blob, weightsPath, dir), meta, dir };
}

/** The weights a run's model.json describes, from its folder or archive, size and SHA-256 checked. */
function readWeights(dir: string, meta: ModelFile, zip: ReturnType<typeof zipRun> | null): { blob: Uint8Array; weightsPath: string } {
  let blob: Uint8Array;
  let weightsPath: string;
  if (zip) {
    weightsPath = `${dir}:${meta.weights.file}`;
    const entry = zip.entry(meta.weights.file);
    if (!entry) throw new ProbsemError(`${dir} holds no ${meta.weights.file} beside its model.json`, 'NOT_FOUND');
    if (entry.byteLength !== meta.weights.bytes) throw new ProbsemError(`${dir}: ${meta.weights.file} holds ${entry.byteLength} bytes, model.json says ${meta.weights.bytes}`, 'MODEL_FORMAT');
    blob = entry;
  } else {
    weightsPath = join(dir, meta.weights.file);
    if (!existsSync(weightsPath)) throw new ProbsemError(`${weightsPath} is missing`, 'NOT_FOUND');
    blob = readExactFileSync(weightsPath, meta.weights.bytes, 'weights file', 'MODEL_FORMAT', 'model.json');
  }
  if (sha256(blob) !== meta.weights.sha256) {
    throw new ProbsemError(`${weightsPath} does not match the checksum in model.json (corrupted or tampered with)`, 'MODEL_FORMAT');
  }
  return { blob, weightsPath };
}

/**
 * A run's weights file as saved (verified against its model.json): what `probsem serve` sends the
 * explorer page, which builds the same model from it with `modelFromWeights`.
 */
export function readRunWeights(dir: string, meta: ModelFile): Uint8Array {
  return readWeights(dir, meta, isRunZip(dir) ? zipRun(dir) : null).blob;
}

/**
 * The model a verified model file and its weights describe. Free of file APIs, so the explorer
 * page builds its model with this same function from fetched bytes.
 */
export function modelFromWeights<T extends Trainable = Trainable>(meta: ModelFile, blob: Uint8Array, weightsName: string, dirName = 'the run'): T {
  // The weights file bounds the model's size: a hostile config cannot allocate beyond it.
  let model: T;
  try {
    model = withParameterBudget(blob.byteLength / 4, () => createModel(meta.model, meta.config, 0)) as T;
  } catch (e) {
    if (e instanceof ProbsemError && e.code === 'MODEL_TOO_LARGE') {
      throw new ProbsemError(`${dirName}/model.json: its config describes a larger model than ${weightsName} holds (${blob.byteLength / 4} values); the two do not match`, 'MODEL_FORMAT');
    }
    throw e;
  }
  model.params.load(meta.weights.tensors, blob, weightsName);
  return model;
}
