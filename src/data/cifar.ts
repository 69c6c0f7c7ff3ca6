/**
 * CIFAR-10 and CIFAR-100 from the files their authors distribute, in either format:
 *
 * - binary: CIFAR-10 `data_batch_{1..5}.bin`, `test_batch.bin` (records of 1 label byte + 3072
 *   pixel bytes) and `batches.meta.txt`; CIFAR-100 `train.bin`, `test.bin` (coarse byte, fine byte,
 *   3072 pixel bytes), `fine_label_names.txt`, `coarse_label_names.txt`;
 * - python: the same batches as pickled dicts (`data_batch_N`, `test_batch`, `batches.meta`;
 *   `train`, `test`, `meta`), read by the restricted reader of ./pickle.ts.
 *
 * Pixels are stored channel-planar (1024 red, 1024 green, 1024 blue, rows top to bottom); the
 * dataset holds them per pixel (height × width × channels, as the decoder of ./image-decode.ts and
 * the NHWC convolutions of ../nn/conv.ts expect), or as luminance with `channels=1`.
 *
 * Specs: `cifar10:DIR`, `cifar100:DIR` (fine labels), `cifar100:DIR?labels=coarse` (also written
 * `cifar100-coarse:DIR`), each with `&channels=1` for grey. DIR is the extracted folder
 * (`cifar-10-batches-bin`, `cifar-100-python`…) or the folder holding it. The official train/test
 * split is used.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { DataFormatError, ProbsemError } from '../core/errors.js';
import type { Dataset, Split } from './dataset.js';
import { type PyValue, dictGet, isNdArray, pyText, readPickle } from './pickle.js';

export const CIFAR_PREFIXES = ['cifar10:', 'cifar100:', 'cifar100-coarse:'] as const;
const SIDE = 32;
const PIXELS = SIDE * SIDE;
const IMAGE_BYTES = 3 * PIXELS;

export interface CifarSpec {
  variant: 'cifar10' | 'cifar100';
  path: string;
  /** CIFAR-100's label set (CIFAR-10 has one). */
  labels: 'fine' | 'coarse';
  channels: 1 | 3;
}

export function isCifarSpec(spec: string): boolean {
  return CIFAR_PREFIXES.some((p) => spec.startsWith(p));
}

/** Parses `cifar10:DIR[?channels=1|3]`, `cifar100:DIR[?labels=fine|coarse&channels=1|3]`, `cifar100-coarse:DIR[?…]`. */
export function parseCifarSpec(spec: string): CifarSpec {
  const prefix = [...CIFAR_PREFIXES].sort((a, b) => b.length - a.length).find((p) => spec.startsWith(p));
  if (!prefix) throw new ProbsemError(`not a CIFAR spec: ${spec}`, 'BAD_OPTION');
  const kind = prefix.slice(0, -1);
  const rest = spec.slice(prefix.length);
  const q = rest.lastIndexOf('?');
  const path = q >= 0 ? rest.slice(0, q) : rest;
  if (!path) throw new ProbsemError(`${kind}: needs a directory after '${prefix}' (the extracted CIFAR folder or the one holding it)`, 'BAD_OPTION');
  const out: CifarSpec = { variant: kind === 'cifar10' ? 'cifar10' : 'cifar100', path: resolve(path), labels: kind === 'cifar100-coarse' ? 'coarse' : 'fine', channels: 3 };
  for (const part of q >= 0 ? rest.slice(q + 1).split('&').filter(Boolean) : []) {
    const [key, value = ''] = part.split('=');
    if (key === 'channels') {
      if (value !== '1' && value !== '3') throw new ProbsemError(`${kind}: channels must be 1 (grey) or 3 (RGB), got '${value}'`, 'BAD_OPTION');
      out.channels = Number(value) as 1 | 3;
    } else if (key === 'labels' && out.variant === 'cifar100') {
      if (value !== 'fine' && value !== 'coarse') throw new ProbsemError(`${kind}: labels must be fine (100 classes) or coarse (20 superclasses), got '${value}'`, 'BAD_OPTION');
      out.labels = value;
    } else {
      throw new ProbsemError(`${kind}: unknown option '${key}' (${out.variant === 'cifar100' ? 'labels, channels' : 'channels'})`, 'BAD_OPTION');
    }
  }
  return out;
}

/** The canonical spec: absolute path, non-default options only. */
export function cifarName(s: CifarSpec): string {
  const opts: string[] = [];
  if (s.variant === 'cifar100' && s.labels === 'coarse') opts.push('labels=coarse');
  if (s.channels !== 3) opts.push(`channels=${s.channels}`);
  return `${s.variant}:${s.path}${opts.length ? `?${opts.join('&')}` : ''}`;
}

interface Layout {
  format: 'binary' | 'python';
  dir: string;
  train: string[];
  test: string;
  /** Class-name files: the text files of the binary format, or the pickled meta dict. */
  meta: string;
}

function layouts(variant: CifarSpec['variant']): Omit<Layout, 'dir'>[] {
  const batches = [1, 2, 3, 4, 5].map((b) => `data_batch_${b}`);
  return variant === 'cifar10'
    ? [
        { format: 'binary', train: batches.map((b) => `${b}.bin`), test: 'test_batch.bin', meta: 'batches.meta.txt' },
        { format: 'python', train: batches, test: 'test_batch', meta: 'batches.meta' },
      ]
    : [
        { format: 'binary', train: ['train.bin'], test: 'test.bin', meta: 'fine_label_names.txt' },
        { format: 'python', train: ['train'], test: 'test', meta: 'meta' },
      ];
}

const SUBFOLDERS: Record<CifarSpec['variant'], Record<Layout['format'], string>> = {
  cifar10: { binary: 'cifar-10-batches-bin', python: 'cifar-10-batches-py' },
  cifar100: { binary: 'cifar-100-binary', python: 'cifar-100-python' },
};

/** Where the files are and in which format: DIR itself, else its standard subfolder; binary first. */
function findLayout(s: CifarSpec): Layout {
  if (!existsSync(s.path)) throw new ProbsemError(`no such directory: ${s.path}`, 'NOT_FOUND');
  if (!statSync(s.path).isDirectory()) throw new ProbsemError(`not a directory: ${s.path} (${s.variant}: takes the extracted CIFAR folder)`, 'NOT_FOUND');
  const tried: string[] = [];
  for (const l of layouts(s.variant)) {
    for (const dir of [s.path, join(s.path, SUBFOLDERS[s.variant][l.format])]) {
      if ([...l.train, l.test].some((f) => existsSync(join(dir, f)))) {
        const missing = [...l.train, l.test, l.meta].filter((f) => !existsSync(join(dir, f)));
        if (missing.length > 0) throw new ProbsemError(`${dir}: ${s.variant} (${l.format} format) lacks ${missing.join(', ')}`, 'NOT_FOUND');
        return { ...l, dir };
      }
    }
    tried.push(`${[...l.train.slice(0, 1), l.test].join(', ')} (${l.format})`);
  }
  const sub = Object.values(SUBFOLDERS[s.variant]).join(' or ');
  throw new ProbsemError(`${s.path} holds no ${s.variant} files: expected ${tried.join('; or ')}, there or in ${sub}`, 'NOT_FOUND');
}

/** Loads a CIFAR-10 or CIFAR-100 dataset (`cifar10:DIR`, `cifar100:DIR?labels=coarse&channels=1`…). */
export function loadCifar(spec: string): Dataset {
  const s = parseCifarSpec(spec);
  const layout = findLayout(s);
  const classNames = classNamesOf(s, layout);
  const fineToCoarse = new Map<number, number>();
  const read = (files: string[]): Split => {
    const parts = files.map((f) => (layout.format === 'binary' ? readBinaryBatch : readPickledBatch)(join(layout.dir, f), s));
    parts.forEach((p, k) => p.coarse && noteSuperclasses(fineToCoarse, p, join(layout.dir, files[k])));
    const split = toSplit(parts, s.channels);
    for (let i = 0; i < split.count; i++) {
      if (split.labels[i] >= classNames.length) {
        const where = locate(parts, files, i);
        throw new DataFormatError(`${join(layout.dir, where.file)}: image ${where.index} has ${s.labels === 'coarse' ? 'coarse ' : ''}label ${split.labels[i]}, but there are ${classNames.length} classes`);
      }
    }
    return split;
  };
  const train = read(layout.train);
  const test = read([layout.test]);
  return {
    name: cifarName(s),
    source: layout.dir,
    height: SIDE,
    width: SIDE,
    channels: s.channels,
    classNames,
    train,
    test,
    ...(fineToCoarse.size > 0 ? { hierarchy: superclassHierarchy(s, layout, classNames.length, fineToCoarse) } : {}),
  };
}

/** Records each fine class's superclass, refusing a file where one fine class has two. */
function noteSuperclasses(fineToCoarse: Map<number, number>, b: Batch, file: string): void {
  for (let i = 0; i < b.count; i++) {
    const known = fineToCoarse.get(b.labels[i]);
    if (known === undefined) fineToCoarse.set(b.labels[i], b.coarse![i]);
    else if (known !== b.coarse![i]) throw new DataFormatError(`${file}: image ${i} puts fine class ${b.labels[i]} in superclass ${b.coarse![i]}, earlier images in ${known}`);
  }
}

/** CIFAR-100's own taxonomy: the 20 superclasses over the fine classes (a class never seen gets none). */
function superclassHierarchy(s: CifarSpec, l: Layout, classes: number, fineToCoarse: Map<number, number>): NonNullable<Dataset['hierarchy']> {
  const parents = classNamesOf({ ...s, labels: 'coarse' }, l);
  const parentOf = Array.from({ length: classes }, (_, c) => fineToCoarse.get(c) ?? -1);
  const bad = parentOf.findIndex((p) => p >= parents.length);
  if (bad >= 0) throw new DataFormatError(`${l.dir}: fine class ${bad} has superclass ${parentOf[bad]}, but there are ${parents.length} superclass names`);
  return { parents, parentOf };
}

interface Batch {
  /** Channel-planar images, [count, 3072]. */
  planar: Uint8Array;
  labels: Uint8Array;
  /** CIFAR-100 with fine labels: each image's superclass too. */
  coarse?: Uint8Array;
  count: number;
}

function locate(parts: Batch[], files: string[], i: number): { file: string; index: number } {
  for (let p = 0; p < parts.length; p++) {
    if (i < parts[p].count) return { file: files[p], index: i };
    i -= parts[p].count;
  }
  return { file: files[files.length - 1], index: i };
}

function readBinaryBatch(file: string, s: CifarSpec): Batch {
  const buf = readFileSync(file);
  const head = s.variant === 'cifar10' ? 1 : 2;
  const record = head + IMAGE_BYTES;
  if (buf.length === 0) throw new DataFormatError(`${file} is empty`);
  if (buf.length % record !== 0) {
    throw new DataFormatError(
      `${file} is ${buf.length} bytes, not a whole number of ${record}-byte ${s.variant} records (${Math.floor(buf.length / record)} records and ${buf.length % record} bytes over: truncated, or ${s.variant === 'cifar10' ? 'a CIFAR-100 file?' : 'a CIFAR-10 file?'})`,
    );
  }
  const count = buf.length / record;
  const planar = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  // CIFAR-100 records start with the coarse label, then the fine one.
  const fine = s.variant === 'cifar100' && s.labels === 'fine';
  const coarse = fine ? new Uint8Array(count) : undefined;
  for (let i = 0; i < count; i++) {
    labels[i] = buf[i * record + (fine ? 1 : 0)];
    if (coarse) coarse[i] = buf[i * record];
    planar.set(buf.subarray(i * record + head, (i + 1) * record), i * IMAGE_BYTES);
  }
  return { planar, labels, coarse, count };
}

function readPickledBatch(file: string, s: CifarSpec): Batch {
  const obj = readPickle(readFileSync(file), file);
  if (!(obj instanceof Map)) throw new DataFormatError(`${file}: the pickle holds no dict (a CIFAR batch is a dict with data and labels)`);
  const data = dictGet(obj, 'data');
  if (!isNdArray(data) || data.dtype !== 'u1' || data.shape.length !== 2 || data.shape[1] !== IMAGE_BYTES || data.fortran) {
    const got = isNdArray(data) ? `a ${data.dtype} array of shape (${data.shape.join(', ')})` : data === undefined ? 'nothing' : 'something else';
    throw new DataFormatError(`${file}: 'data' should be a uint8 array of shape (N, ${IMAGE_BYTES}), found ${got}`);
  }
  const count = data.shape[0];
  const labelsOf = (key: string): Uint8Array => {
    const raw = dictGet(obj, key);
    const list = isNdArray(raw) && raw.shape.length === 1 ? Array.from(raw.data) : Array.isArray(raw) ? raw : null;
    if (!list) throw new DataFormatError(`${file}: no '${key}' list (keys: ${[...obj.keys()].map((k) => pyText(k as PyValue) ?? String(k)).join(', ')})`);
    if (list.length !== count) throw new DataFormatError(`${file}: ${list.length} ${key} for ${count} images`);
    const labels = new Uint8Array(count);
    list.forEach((l, i) => {
      if (typeof l !== 'number' || !Number.isInteger(l) || l < 0 || l > 255) throw new DataFormatError(`${file}: ${key}[${i}] is ${String(l)}, not a class index`);
      labels[i] = l;
    });
    return labels;
  };
  const labels = labelsOf(s.variant === 'cifar10' ? 'labels' : `${s.labels}_labels`);
  const coarse = s.variant === 'cifar100' && s.labels === 'fine' ? labelsOf('coarse_labels') : undefined;
  return { planar: data.data as Uint8Array, labels, coarse, count };
}

/** Joins batches, converting channel-planar pixels to per-pixel RGB or to luminance. */
function toSplit(parts: Batch[], channels: 1 | 3): Split {
  const count = parts.reduce((n, p) => n + p.count, 0);
  const per = PIXELS * channels;
  const images = new Uint8Array(count * per);
  const labels = new Uint8Array(count);
  let j = 0;
  for (const p of parts) {
    labels.set(p.labels, j);
    for (let i = 0; i < p.count; i++, j++) {
      const src = i * IMAGE_BYTES;
      const dst = j * per;
      for (let k = 0; k < PIXELS; k++) {
        const r = p.planar[src + k];
        const g = p.planar[src + PIXELS + k];
        const b = p.planar[src + 2 * PIXELS + k];
        if (channels === 3) {
          images[dst + 3 * k] = r;
          images[dst + 3 * k + 1] = g;
          images[dst + 3 * k + 2] = b;
        } else images[dst + k] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
      }
    }
  }
  return { images, labels, count };
}

function classNamesOf(s: CifarSpec, l: Layout): string[] {
  let names: string[] | undefined;
  let file = join(l.dir, l.meta);
  if (l.format === 'binary') {
    if (s.labels === 'coarse') file = join(l.dir, 'coarse_label_names.txt');
    if (!existsSync(file)) throw new ProbsemError(`${l.dir}: lacks ${basename(file)} (the class names)`, 'NOT_FOUND');
    names = readFileSync(file, 'utf8').split(/\r?\n/).map((n) => n.trim()).filter(Boolean);
  } else {
    const meta = readPickle(readFileSync(file), file);
    const key = s.variant === 'cifar10' ? 'label_names' : `${s.labels}_label_names`;
    const list = dictGet(meta, key);
    if (!Array.isArray(list)) throw new DataFormatError(`${file}: no '${key}' list of class names`);
    names = list.map((n, i) => {
      const t = pyText(n);
      if (t === undefined) throw new DataFormatError(`${file}: ${key}[${i}] is not a string`);
      return t;
    });
  }
  // Subsets (and the test fixtures) may have fewer classes than the full sets; labels are checked against the names.
  if (names.length === 0) throw new DataFormatError(`${file}: no class names`);
  if (names.length > 256) throw new DataFormatError(`${file}: ${names.length} class names; at most 256 are supported`);
  return names;
}
