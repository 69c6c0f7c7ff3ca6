/**
 * Datasets from a user's own pictures: `folder:DIR` (a subfolder per class) and `manifest:FILE`
 * (CSV or JSONL naming each picture and its class, optionally its split and its tags). Pictures are decoded by
 * the shared decoder (PNG, JPEG, WebP, GIF; grey, fitted and padded to the size asked for,
 * dark-on-light pictures inverted), split train/test with a seeded shuffle unless the manifest
 * says, and cached as IDX files keyed by the content of every picture and the options, so the
 * next command on the same pictures starts at once (where every file keeps its size and
 * modification time, without reading the pictures again). A picture that cannot be read is skipped and
 * listed (or, with `onBadImage: 'error'`, stops the load naming it).
 *
 * Specs carry their options so a run records exactly what it trained on:
 * `folder:DIR?size=32x32&test=0.2&seed=0&channels=3&adjust=none` (defaults 28×28, 0.2, 0, 1, auto
 * are left out of the name). With `channels=3` pictures are kept in colour as they are (RGB per pixel, transparency
 * on white, never inverted); grey pictures (the default) are luminance, made light-on-dark.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/files.js';
import { Rng } from '../core/random.js';
import { type Dataset, type Split, packTags, tagsOf, validateSplit } from './dataset.js';
import { encodeIdx, parseIdx } from './idx.js';

export const FOLDER_PREFIX = 'folder:';
export const MANIFEST_PREFIX = 'manifest:';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif']);
/** Class indices are stored in one byte, as in IDX label files. */
const MAX_CLASSES = 256;

export interface ImageSetSpec {
  kind: 'folder' | 'manifest';
  path: string;
  height: number;
  width: number;
  /** Share of each class held out for testing (when the manifest gives no split). */
  testFraction: number;
  seed: number;
  /** 1: grey (luminance), 3: RGB. */
  channels: 1 | 3;
  /**
   * Grey pictures only. 'auto': made light-on-dark like the built-in data (dark-on-light pictures
   * inverted, grey backgrounds levelled to black); 'none': pixels as they are, for pictures already
   * light on dark (exported IDX data, where 'auto' misjudges 0.3 % of Fashion-MNIST's bright garments).
   */
  adjust: 'auto' | 'none';
}

export interface ImageSetOptions {
  /** 'skip' (default): leave unreadable pictures out and list them; 'error': stop at the first. */
  onBadImage?: 'skip' | 'error';
  /** Where decoded datasets are cached (default $PROBSEM_CACHE or ~/.cache/probsem). */
  cacheDir?: string;
  onNotice?: (msg: string) => void;
  onProgress?: (done: number, total: number) => void;
}

/** A picture the load left out, and why. */
export interface SkippedImage {
  path: string;
  reason: string;
}

export interface ImageDataset extends Dataset {
  skipped: SkippedImage[];
}

interface Entry {
  path: string;
  label: string;
  split?: 'train' | 'test';
  /** The picture's tags (manifests with a `tags` column; empty where its row gives none). */
  tags?: string[];
}

/** Tags are indexed by 16-bit integers (`Split.tagIds`). */
const MAX_TAGS = 65536;

/** Parses `folder:DIR[?size=HxW|N&test=F&seed=S&channels=1|3]` or `manifest:FILE[?…]`. */
export function parseImageSetSpec(spec: string): ImageSetSpec {
  const kind = spec.startsWith(FOLDER_PREFIX) ? 'folder' : spec.startsWith(MANIFEST_PREFIX) ? 'manifest' : null;
  if (!kind) throw new ProbsemError(`not an image-set spec: ${spec}`, 'BAD_OPTION');
  const rest = spec.slice(kind === 'folder' ? FOLDER_PREFIX.length : MANIFEST_PREFIX.length);
  const q = rest.lastIndexOf('?');
  const path = q >= 0 ? rest.slice(0, q) : rest;
  if (!path) throw new ProbsemError(`${kind}: needs a ${kind === 'folder' ? 'directory' : 'file'} after '${kind}:'`, 'BAD_OPTION');
  const out: ImageSetSpec = { kind, path: resolve(path), height: 28, width: 28, testFraction: 0.2, seed: 0, channels: 1, adjust: 'auto' };
  for (const part of q >= 0 ? rest.slice(q + 1).split('&').filter(Boolean) : []) {
    const [key, value = ''] = part.split('=');
    if (key === 'size') {
      const m = /^(\d+)(?:x(\d+))?$/.exec(value);
      const h = m ? Number(m[1]) : NaN;
      const w = m ? Number(m[2] ?? m[1]) : NaN;
      if (!(h >= 8 && h <= 256 && w >= 8 && w <= 256)) throw new ProbsemError(`${kind}: size must be N or HxW with sides from 8 to 256, got '${value}'`, 'BAD_OPTION');
      out.height = h;
      out.width = w;
    } else if (key === 'test') {
      const f = Number(value);
      if (!(f > 0 && f < 1)) throw new ProbsemError(`${kind}: test must be a fraction in (0, 1), got '${value}'`, 'BAD_OPTION');
      out.testFraction = f;
    } else if (key === 'seed') {
      const s = Number(value);
      if (!Number.isSafeInteger(s) || s < 0) throw new ProbsemError(`${kind}: seed must be a non-negative integer, got '${value}'`, 'BAD_OPTION');
      out.seed = s;
    } else if (key === 'channels') {
      if (value !== '1' && value !== '3') throw new ProbsemError(`${kind}: channels must be 1 (grey) or 3 (RGB), got '${value}'`, 'BAD_OPTION');
      out.channels = Number(value) as 1 | 3;
    } else if (key === 'adjust') {
      if (value !== 'auto' && value !== 'none') throw new ProbsemError(`${kind}: adjust must be auto (make pictures light on dark) or none (pixels as they are), got '${value}'`, 'BAD_OPTION');
      out.adjust = value;
    } else {
      throw new ProbsemError(`${kind}: unknown option '${key}' (size, test, seed, channels, adjust)`, 'BAD_OPTION');
    }
  }
  return out;
}

/** The canonical spec: absolute path, non-default options only, so equal datasets get equal names. */
export function imageSetName(s: ImageSetSpec): string {
  const opts: string[] = [];
  if (s.height !== 28 || s.width !== 28) opts.push(`size=${s.height === s.width ? s.height : `${s.height}x${s.width}`}`);
  if (s.testFraction !== 0.2) opts.push(`test=${s.testFraction}`);
  if (s.seed !== 0) opts.push(`seed=${s.seed}`);
  if (s.channels !== 1) opts.push(`channels=${s.channels}`);
  if (s.adjust !== 'auto') opts.push(`adjust=${s.adjust}`);
  return `${s.kind}:${s.path}${opts.length ? `?${opts.join('&')}` : ''}`;
}

/** Loads a `folder:` or `manifest:` dataset, from the cache when the pictures are unchanged. */
export async function loadImageSet(spec: string, o: ImageSetOptions = {}): Promise<ImageDataset> {
  const s = parseImageSetSpec(spec);
  const entries = s.kind === 'folder' ? folderEntries(s.path) : manifestEntries(s.path);
  if (entries.length === 0) throw new ProbsemError(`${s.path}: no pictures found (PNG, JPEG, WebP or GIF)`, 'DATA_FORMAT');
  const classNames = [...new Set(entries.map((e) => e.label))].sort((a, b) => a.localeCompare(b));
  if (classNames.length < 2) throw new ProbsemError(`${s.path}: needs at least two classes, found ${classNames.length}`, 'DATA_FORMAT');
  if (classNames.length > MAX_CLASSES) throw new ProbsemError(`${s.path}: ${classNames.length} classes; at most ${MAX_CLASSES} are supported`, 'DATA_FORMAT');

  // The cache key covers every picture's bytes, its class and split, and the options.
  const key = createHash('sha256');
  // Grey sets keep the keys they had before colour existed.
  const options = JSON.stringify({ v: 1, height: s.height, width: s.width, test: s.testFraction, seed: s.seed, onBad: o.onBadImage ?? 'skip', ...(s.channels === 1 ? {} : { channels: s.channels }), ...(s.adjust === 'auto' ? {} : { adjust: s.adjust }) });
  key.update(options);
  const datasetsDir = join(o.cacheDir ?? process.env.PROBSEM_CACHE ?? join(homedir(), '.cache', 'probsem'), 'datasets');
  const name = imageSetName(s);
  // Fast path: files with the sizes and modification times they had when the cache was written
  // (what make and rsync trust) lead straight to it, without reading every picture to hash it.
  const pointer = statPointer(datasetsDir, options, entries);
  const known = pointer && existsSync(pointer) ? readFileSync(pointer, 'utf8').trim() : '';
  if (/^[0-9a-f]{24}$/.test(known)) {
    const cached = readCached(join(datasetsDir, known), name, s.path);
    if (cached) return cached;
  }
  const contents: Buffer[] = [];
  for (const e of entries) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(e.path);
    } catch (err) {
      bytes = Buffer.alloc(0);
      if ((o.onBadImage ?? 'skip') === 'error') throw new ProbsemError(`cannot read ${e.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'NOT_FOUND');
    }
    contents.push(bytes);
    // Untagged manifests keep the keys they had before tags existed.
    key.update(entryKey(e)).update(createHash('sha256').update(bytes).digest());
  }
  const contentKey = key.digest('hex').slice(0, 24);
  const dir = join(datasetsDir, contentKey);
  const remember = () => {
    if (pointer) writeFileAtomicSync(pointer, contentKey + '\n');
  };
  const cached = readCached(dir, name, s.path);
  if (cached) {
    remember();
    return cached;
  }

  const { decodeImage } = await import('./image-decode.js');
  const pixels = s.height * s.width * s.channels;
  const decoded: { entry: Entry; pixels: Uint8Array }[] = [];
  const skipped: SkippedImage[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    try {
      if (contents[i].length === 0) throw new ProbsemError('the file is empty or unreadable', 'DATA_FORMAT');
      const img = await decodeImage(contents[i], { height: s.height, width: s.width, channels: s.channels, asIs: s.channels === 3 || s.adjust === 'none', source: e.path });
      decoded.push({ entry: e, pixels: Uint8Array.from(img.pixels, (v) => Math.round(v * 255)) });
    } catch (err) {
      if (!(err instanceof ProbsemError)) throw err;
      if ((o.onBadImage ?? 'skip') === 'error') throw err;
      skipped.push({ path: e.path, reason: err.message });
    }
    if ((i + 1) % 200 === 0 || i + 1 === entries.length) o.onProgress?.(i + 1, entries.length);
  }
  if (skipped.length > 0) o.onNotice?.(`${skipped.length} of ${entries.length} pictures could not be read and were skipped (listed in the run's record); the first: ${skipped[0].path}: ${skipped[0].reason}`);

  const byClass = new Map(classNames.map((c, i) => [c, i]));
  const tagNames = entries.some((e) => e.tags) ? [...new Set(entries.flatMap((e) => e.tags ?? []))].sort((a, b) => a.localeCompare(b)) : undefined;
  if (tagNames && tagNames.length > MAX_TAGS) throw new ProbsemError(`${s.path}: ${tagNames.length} distinct tags; at most ${MAX_TAGS} are supported`, 'DATA_FORMAT');
  const byTag = new Map((tagNames ?? []).map((t, i) => [t, i]));
  const isTest = splitAssignment(decoded.map((d) => d.entry), s, byClass);
  const build = (test: boolean): Split => {
    const chosen = decoded.filter((_, i) => isTest[i] === test);
    const images = new Uint8Array(chosen.length * pixels);
    const labels = new Uint8Array(chosen.length);
    chosen.forEach((d, i) => {
      images.set(d.pixels, i * pixels);
      labels[i] = byClass.get(d.entry.label)!;
    });
    const split: Split = { images, labels, count: chosen.length };
    return tagNames ? { ...split, ...packTags(chosen.map((d) => (d.entry.tags ?? []).map((t) => byTag.get(t)!))) } : split;
  };
  const ds: ImageDataset = {
    name,
    source: s.path,
    height: s.height,
    width: s.width,
    ...colour(s.channels),
    classNames,
    ...(tagNames ? { tagNames } : {}),
    train: build(false),
    test: build(true),
    skipped,
  };
  if (ds.train.count === 0 || ds.test.count === 0) {
    throw new ProbsemError(`${s.path}: the split left ${ds.train.count} training and ${ds.test.count} test pictures; both need at least one`, 'DATA_FORMAT');
  }
  writeCache(dir, ds);
  remember();
  return ds;
}

/** What a picture's row says (path, class, split, tags), as it enters the cache keys. */
function entryKey(e: Entry): string {
  return `${e.path}\0${e.label}\0${e.split ?? ''}\0${e.tags ? `${JSON.stringify(e.tags)}\0` : ''}`;
}

/** Where the content key of these files (as listed, with their sizes and mtimes) is remembered; null if one cannot be stat'ed. */
function statPointer(datasetsDir: string, options: string, entries: Entry[]): string | null {
  const h = createHash('sha256').update(options);
  for (const e of entries) {
    let st;
    try {
      st = statSync(e.path);
    } catch {
      return null;
    }
    h.update(`${entryKey(e)}${st.size}\0${st.mtimeMs}\0`);
  }
  return join(datasetsDir, `files-${h.digest('hex').slice(0, 24)}.key`);
}

/** A subfolder per class; pictures anywhere below it belong to it. Hidden files are ignored. */
function folderEntries(root: string): Entry[] {
  if (!existsSync(root)) throw new ProbsemError(`no such directory: ${root}`, 'NOT_FOUND');
  if (!statSync(root).isDirectory()) throw new ProbsemError(`not a directory: ${root} (folder: takes a directory with a subfolder per class)`, 'NOT_FOUND');
  const out: Entry[] = [];
  const walk = (dir: string, label: string) => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith('.')) continue;
      const p = join(dir, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, label);
      else if (st.isFile() && IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) out.push({ path: p, label });
    }
  };
  const classes = readdirSync(root).filter((n) => !n.startsWith('.') && statSync(join(root, n)).isDirectory());
  if (classes.length === 0) throw new ProbsemError(`${root} has no subfolders: folder: takes a subfolder per class (${root}/cat/…, ${root}/dog/…)`, 'DATA_FORMAT');
  for (const c of classes.sort()) walk(join(root, c), c);
  return out;
}

const PATH_COLUMNS = ['path', 'image', 'file', 'filename'];
const LABEL_COLUMNS = ['label', 'class', 'category'];

/**
 * CSV (with a header) or JSONL: a picture path (relative to the manifest) and its class; optionally
 * its split and its tags (JSONL: an array of strings; CSV: one field, tags separated by ';'). A
 * picture with tags still needs its class: annotation accuracy, generation and the judge use it.
 */
function manifestEntries(file: string): Entry[] {
  if (!existsSync(file)) throw new ProbsemError(`no such file: ${file}`, 'NOT_FOUND');
  if (!statSync(file).isFile()) throw new ProbsemError(`not a file: ${file} (manifest: takes a CSV or JSONL file)`, 'NOT_FOUND');
  const text = readFileSync(file, 'utf8');
  const base = dirname(file);
  const rows: Record<string, unknown>[] = [];
  const jsonl = extname(file).toLowerCase() === '.jsonl' || text.trimStart().startsWith('{');
  const lines = text.split(/\r?\n/);
  if (jsonl) {
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      try {
        const v = JSON.parse(line);
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        rows.push(v);
      } catch (e) {
        throw new ProbsemError(`${basename(file)} line ${i + 1}: not a JSON object (${(e as Error).message})`, 'DATA_FORMAT');
      }
    });
  } else {
    const header = splitCsvLine(lines[0] ?? '').map((h) => h.trim().toLowerCase());
    lines.slice(1).forEach((line, i) => {
      if (!line.trim()) return;
      const cells = splitCsvLine(line);
      if (cells.length !== header.length) throw new ProbsemError(`${basename(file)} line ${i + 2}: ${cells.length} fields, the header has ${header.length}`, 'DATA_FORMAT');
      rows.push(Object.fromEntries(header.map((h, j) => [h, cells[j]])));
    });
  }
  return rows.map((r, i) => {
    const where = `${basename(file)} ${jsonl ? 'line' : 'row'} ${i + 1}`;
    const lower = Object.fromEntries(Object.entries(r).map(([k, v]) => [k.toLowerCase(), v]));
    const p = PATH_COLUMNS.map((c) => lower[c]).find((v) => typeof v === 'string' && v.trim());
    if (typeof p !== 'string') throw new ProbsemError(`${where}: no picture path (a column named ${PATH_COLUMNS.join(', ')})`, 'DATA_FORMAT');
    if (lower.phrase !== undefined) {
      throw new ProbsemError(`${where}: phrases per picture are not supported yet; give its class (a column named ${LABEL_COLUMNS.join(', ')}) and its words as tags`, 'DATA_FORMAT');
    }
    const tags = lower.tags === undefined ? undefined : manifestTags(lower.tags, where, jsonl);
    const label = LABEL_COLUMNS.map((c) => lower[c]).find((v) => (typeof v === 'string' && v.trim()) || typeof v === 'number');
    if (label === undefined) {
      throw new ProbsemError(`${where}: no class (a column named ${LABEL_COLUMNS.join(', ')})${tags ? '; a picture with tags still needs its class' : ''}`, 'DATA_FORMAT');
    }
    const split = lower.split === undefined || lower.split === '' ? undefined : String(lower.split).trim().toLowerCase();
    if (split !== undefined && split !== 'train' && split !== 'test') throw new ProbsemError(`${where}: split must be train or test, got '${split}'`, 'DATA_FORMAT');
    return { path: isAbsolute(p) ? p : join(base, p.trim()), label: String(label).trim(), split: split as Entry['split'], ...(tags ? { tags } : {}) };
  });
}

/** A row's tags: a JSON array of strings, or a CSV field of tags separated by ';'; trimmed, blanks and repeats dropped. */
function manifestTags(value: unknown, where: string, jsonl: boolean): string[] {
  let raw: unknown[];
  if (jsonl) {
    if (!Array.isArray(value)) throw new ProbsemError(`${where}: tags must be an array of strings, got ${JSON.stringify(value)}`, 'DATA_FORMAT');
    raw = value;
  } else raw = String(value).split(';');
  const tags = raw.map((t) => {
    if (typeof t !== 'string') throw new ProbsemError(`${where}: tags must be strings, got ${JSON.stringify(t)}`, 'DATA_FORMAT');
    return t.trim();
  });
  return [...new Set(tags.filter(Boolean))];
}

/** One CSV line: commas separate fields; double quotes enclose fields with commas or quotes ("" is a quote). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((c) => c.trim());
}

/**
 * Test membership per entry: the manifest's split where it gives one; otherwise a seeded shuffle
 * within each class holding out round(fraction × count) of it (at least one when the class has two).
 */
function splitAssignment(entries: Entry[], s: ImageSetSpec, byClass: Map<string, number>): boolean[] {
  const isTest = entries.map((e) => e.split === 'test');
  const free = new Map<number, number[]>();
  entries.forEach((e, i) => {
    if (e.split !== undefined) return;
    const c = byClass.get(e.label)!;
    if (!free.has(c)) free.set(c, []);
    free.get(c)!.push(i);
  });
  for (const [c, idx] of free) {
    const rng = Rng.for(s.seed, 'image-set-split', c);
    const order = rng.permutation(idx.length);
    const n = idx.length >= 2 ? Math.max(1, Math.round(s.testFraction * idx.length)) : 0;
    for (let k = 0; k < n; k++) isTest[idx[order[k]]] = true;
  }
  return isTest;
}

/** The dataset's channels field: present for colour only, so grey sets look as they always did. */
const colour = (channels: number): Pick<Dataset, 'channels'> => (channels === 3 ? { channels: 3 } : {});

const CACHE_FILES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];

function writeCache(dir: string, ds: ImageDataset): void {
  // Written to a sibling and renamed, so a cache folder is complete or absent.
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const [ti, tl, si, sl] = CACHE_FILES.map((f) => join(tmp, f));
  // Colour images as [n, h, w, 3]: IDX's row-major order is the per-pixel RGB the dataset holds.
  const shape = [ds.height, ds.width, ...((ds.channels ?? 1) === 3 ? [3] : [])];
  writeFileAtomicSync(ti, encodeIdx({ dims: [ds.train.count, ...shape], data: ds.train.images }));
  writeFileAtomicSync(tl, encodeIdx({ dims: [ds.train.count], data: ds.train.labels }));
  writeFileAtomicSync(si, encodeIdx({ dims: [ds.test.count, ...shape], data: ds.test.images }));
  writeFileAtomicSync(sl, encodeIdx({ dims: [ds.test.count], data: ds.test.labels }));
  const tagLists = (split: Split) => Array.from({ length: split.count }, (_, i) => Array.from(tagsOf(split, i)));
  const tags = ds.tagNames ? { tagNames: ds.tagNames, tags: { train: tagLists(ds.train), test: tagLists(ds.test) } } : {};
  writeFileAtomicSync(join(tmp, 'dataset.json'), JSON.stringify({ classNames: ds.classNames, skipped: ds.skipped, ...tags }, null, ds.tagNames ? undefined : 2) + '\n');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  renameSync(tmp, dir);
}

function readCached(dir: string, name: string, source: string): ImageDataset | null {
  if (!existsSync(join(dir, 'dataset.json'))) return null;
  try {
    const meta = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as {
      classNames: string[];
      skipped: SkippedImage[];
      tagNames?: string[];
      tags?: { train: number[][]; test: number[][] };
    };
    const [ti, tl, si, sl] = CACHE_FILES.map((f) => parseIdx(readFileSync(join(dir, f)), join(dir, f)));
    const [tn, h, w, c = 1] = ti.dims;
    const [sn] = si.dims;
    if (tl.dims[0] !== tn || sl.dims[0] !== sn || si.dims[1] !== h || si.dims[2] !== w || (si.dims[3] ?? 1) !== c) return null;
    if (![...tl.data, ...sl.data].every((c) => c < meta.classNames.length)) return null;
    const train: Split = { images: ti.data, labels: tl.data, count: tn };
    const test: Split = { images: si.data, labels: sl.data, count: sn };
    if (meta.tagNames) {
      if (meta.tags?.train.length !== tn || meta.tags.test.length !== sn) return null;
      Object.assign(train, packTags(meta.tags.train));
      Object.assign(test, packTags(meta.tags.test));
      validateSplit(train, meta.classNames.length, 'cached train split', meta.tagNames.length);
      validateSplit(test, meta.classNames.length, 'cached test split', meta.tagNames.length);
    }
    return { name, source, height: h, width: w, ...colour(c), classNames: meta.classNames, ...(meta.tagNames ? { tagNames: meta.tagNames } : {}), train, test, skipped: meta.skipped };
  } catch {
    // A damaged cache is rebuilt from the pictures.
    return null;
  }
}
