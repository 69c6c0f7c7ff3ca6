/**
 * `probsem embed`: every image's posterior q(z|x) written to disk for other tools, one batch at a
 * time, so the output never sits in memory whatever the dataset's size.
 *
 * Two layouts (docs/embed.md):
 * - npy, a directory: mean.npy f4 [N, K]; variance.npy f4 [N, K] (diagonal models) or
 *   scale_tril.npy f4 [N, K, K] (full-covariance models: the lower Cholesky factor L, Σ = L Lᵀ);
 *   ids.npy i4 [N] (the image's position in the split); labels.npy i4 [N] or [N, 2] (class
 *   indices; two per image on paired datasets); meta.json (what was embedded, class names, and
 *   the file names). `numpy.load(dir + '/mean.npy')` reads each array.
 * - jsonl, a file: one object per image, {"id", "labels", "label_names", "mean", "variance"} or
 *   "scale_tril" as nested rows; values printed with the 9 significant digits that round-trip a
 *   float32.
 *
 * - parquet, a file: the jsonl columns (id INT32; labels LIST<INT32>; label_names LIST<STRING>;
 *   mean and variance LIST<FLOAT>, or scale_tril LIST<FLOAT> of K·K values row by row), row groups
 *   of at most ~4M floats written as they fill, and the meta.json object under the file's
 *   key-value metadata key `probsem`. The writer (hyparquet-writer) is imported only for this format.
 *
 * All are written under a temporary sibling name and renamed into place at the end, so a reader
 * never sees a half-written embedding and an interrupted run leaves any previous one intact. An
 * existing --out is replaced only when it is an embedding written by probsem (its meta.json says
 * so), never an unrelated directory.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { imagesToFloat, type Split } from '../data/dataset.js';
import { NpyWriter } from '../data/npy.js';
import type { ImageModel } from '../models/base.js';

export const EMBED_FORMAT = 'probsem-embed';

export const EMBED_FORMATS = ['npy', 'jsonl', 'parquet'] as const;
export type EmbedFormat = (typeof EMBED_FORMATS)[number];

/** The format an --out path implies when --format is not given: its extension, else npy. */
export function embedFormatOf(out: string): EmbedFormat {
  return out.endsWith('.jsonl') ? 'jsonl' : out.endsWith('.parquet') ? 'parquet' : 'npy';
}

export interface EmbedOptions {
  out: string;
  format: EmbedFormat;
  /** Images encoded (and written) per step; the memory bound. */
  batch?: number;
  /** Parquet: rows per row group (default: as many as hold ~4M floats, at most 65,536). */
  rowGroupRows?: number;
  classNames: string[];
  /** Recorded in meta.json (run, model, dataset, split, …). */
  meta?: Record<string, unknown>;
  onProgress?: (done: number, total: number) => void;
}

export interface EmbedResult {
  count: number;
  dim: number;
  kind: 'diag' | 'full';
  out: string;
  /** Files written (inside `out` for npy). */
  files: string[];
}

/** One batch of posteriors, row-major. */
interface Rows {
  mean: Float32Array;
  /** Variances (diag) or lower factors K×K (full). */
  spread: Float32Array;
}

/** Refuses an --out that exists and is not something embed may replace (before any encoding). */
export function checkEmbedOut(out: string, format: EmbedFormat): void {
  if (!existsSync(out)) return;
  const st = statSync(out);
  if (format !== 'npy') {
    if (!st.isFile()) throw new ProbsemError(`--out ${out} exists and is not a file`, 'BAD_OPTION');
    return;
  }
  if (!st.isDirectory()) throw new ProbsemError(`--out ${out} exists and is not a directory (the npy layout writes a directory of .npy files; name a .jsonl or .parquet file for those formats)`, 'BAD_OPTION');
  let ours = false;
  try {
    ours = (JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as { format?: unknown }).format === EMBED_FORMAT;
  } catch {
    ours = false;
  }
  if (!ours) throw new ProbsemError(`--out ${out} is a directory that probsem embed did not write (no meta.json of format ${EMBED_FORMAT}); remove it or choose another --out`, 'BAD_OPTION');
}

export async function embedSplit(model: ImageModel, split: Split, pixels: number, o: EmbedOptions): Promise<EmbedResult> {
  const batch = o.batch ?? 500;
  if (!Number.isInteger(batch) || batch < 1) throw new ProbsemError(`batch must be a positive integer, got ${batch}`, 'BAD_OPTION');
  checkEmbedOut(o.out, o.format);
  const dim = model.latentDim;
  const kind = model.encodeImageFull ? 'full' : 'diag';
  const n = split.count;
  const perItem = split.labels2 ? 2 : 1;
  const tmp = `${o.out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  // Loaded here, not at module load: `import 'probsem'` never pays for the Parquet writer.
  const parquet = o.format === 'parquet' ? await import('hyparquet-writer') : null;
  const sink: Sink =
    o.format === 'npy' ? new NpySink(tmp, kind, n, dim, perItem) : parquet ? new ParquetSink(parquet, tmp, kind, dim, o.classNames, o.rowGroupRows) : new JsonlSink(tmp, kind, dim, o.classNames);
  try {
    for (let s = 0; s < n; s += batch) {
      const idx = Array.from({ length: Math.min(n, s + batch) - s }, (_, i) => s + i);
      const rows = encodeRows(model, split, pixels, idx);
      const labels = new Int32Array(idx.length * perItem);
      idx.forEach((id, i) => {
        labels[i * perItem] = split.labels[id];
        if (split.labels2) labels[i * perItem + 1] = split.labels2[id];
      });
      sink.write(Int32Array.from(idx), rows, labels, perItem);
      o.onProgress?.(s + idx.length, n);
    }
    sink.finish({ format: EMBED_FORMAT, version: 1, kind, count: n, dim, labelsPerItem: perItem, classNames: o.classNames, ...o.meta });
  } catch (err) {
    sink.abort();
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  replaceWith(tmp, o.out);
  return { count: n, dim, kind, out: o.out, files: sink.files };
}

function encodeRows(model: ImageModel, split: Split, pixels: number, idx: number[]): Rows {
  let rows: Rows | null = null;
  tf.tidy(() => {
    const x = tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels]);
    if (model.encodeImageFull) {
      const g = model.encodeImageFull(x);
      rows = { mean: Float32Array.from(g.mean.dataSync()), spread: Float32Array.from(g.scaleTril.dataSync()) };
    } else {
      const g = model.encodeImage(x);
      rows = { mean: Float32Array.from(g.mean.dataSync()), spread: Float32Array.from(g.logVar.dataSync(), Math.exp) };
    }
  });
  return rows!;
}

/** Renames tmp over out; an existing out (checked by checkEmbedOut) is moved aside first, then removed. */
function replaceWith(tmp: string, out: string): void {
  if (!existsSync(out) || statSync(out).isFile()) {
    renameSync(tmp, out);
    return;
  }
  const old = `${out}.old-${process.pid}`;
  renameSync(out, old);
  renameSync(tmp, out);
  rmSync(old, { recursive: true, force: true });
}

interface Sink {
  files: string[];
  write(ids: Int32Array, rows: Rows, labels: Int32Array, perItem: number): void;
  finish(meta: Record<string, unknown>): void;
  abort(): void;
}

class NpySink implements Sink {
  private readonly writers: Record<string, NpyWriter> = {};
  readonly files: string[];

  constructor(
    private readonly dir: string,
    kind: 'diag' | 'full',
    n: number,
    dim: number,
    perItem: number,
  ) {
    mkdirSync(dir);
    this.writers.mean = new NpyWriter(join(dir, 'mean.npy'), '<f4', [n, dim]);
    this.writers.spread = kind === 'diag' ? new NpyWriter(join(dir, 'variance.npy'), '<f4', [n, dim]) : new NpyWriter(join(dir, 'scale_tril.npy'), '<f4', [n, dim, dim]);
    this.writers.ids = new NpyWriter(join(dir, 'ids.npy'), '<i4', [n]);
    this.writers.labels = new NpyWriter(join(dir, 'labels.npy'), '<i4', perItem === 1 ? [n] : [n, perItem]);
    this.files = [...Object.values(this.writers).map((w) => w.path.slice(dir.length + 1)), 'meta.json'];
  }

  write(ids: Int32Array, rows: Rows, labels: Int32Array): void {
    this.writers.mean.append(rows.mean);
    this.writers.spread.append(rows.spread);
    this.writers.ids.append(ids);
    this.writers.labels.append(labels);
  }

  finish(meta: Record<string, unknown>): void {
    for (const w of Object.values(this.writers)) w.close();
    const files = Object.fromEntries(Object.entries(this.writers).map(([k, w]) => [k === 'spread' ? (w.path.endsWith('variance.npy') ? 'variance' : 'scaleTril') : k, w.path.slice(this.dir.length + 1)]));
    const path = join(this.dir, 'meta.json');
    writeFileSync(path, JSON.stringify({ ...meta, files }, null, 2) + '\n');
    const fd = openSync(path, 'r');
    fsyncSync(fd);
    closeSync(fd);
  }

  abort(): void {
    for (const w of Object.values(this.writers)) w.abort();
  }
}

class JsonlSink implements Sink {
  private fd: number;
  readonly files: string[] = [];

  constructor(
    path: string,
    private readonly kind: 'diag' | 'full',
    private readonly dim: number,
    private readonly classNames: string[],
  ) {
    this.fd = openSync(path, 'w');
  }

  write(ids: Int32Array, rows: Rows, labels: Int32Array, perItem: number): void {
    const k = this.dim;
    let text = '';
    for (let i = 0; i < ids.length; i++) {
      const l = Array.from(labels.subarray(i * perItem, (i + 1) * perItem));
      const mean = f32List(rows.mean.subarray(i * k, (i + 1) * k));
      const spread =
        this.kind === 'diag'
          ? `"variance":${f32List(rows.spread.subarray(i * k, (i + 1) * k))}`
          : `"scale_tril":[${Array.from({ length: k }, (_, r) => f32List(rows.spread.subarray(i * k * k + r * k, i * k * k + (r + 1) * k))).join(',')}]`;
      text += `{"id":${ids[i]},"labels":${JSON.stringify(l)},"label_names":${JSON.stringify(l.map((c) => this.classNames[c]))},"mean":${mean},${spread}}\n`;
    }
    const buf = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
  }

  finish(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
  }

  abort(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

type ParquetModule = typeof import('hyparquet-writer');
type ParquetSchema = ConstructorParameters<ParquetModule['ParquetWriter']>[0]['schema'];

/** A LIST column in Parquet's three-level layout (what pyarrow and pandas read as a list column). */
function parquetList(name: string, type: 'INT32' | 'FLOAT' | 'BYTE_ARRAY'): ParquetSchema {
  return [
    { name, repetition_type: 'REQUIRED', num_children: 1, converted_type: 'LIST' },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    { name: 'element', type, repetition_type: 'REQUIRED', ...(type === 'BYTE_ARRAY' ? { converted_type: 'UTF8' as const } : {}) },
  ];
}

/** At most this many floats of posteriors per row group: the rows buffered before a write. */
const PARQUET_GROUP_FLOATS = 1 << 22;

class ParquetSink implements Sink {
  readonly files: string[] = [];
  private writer: InstanceType<ParquetModule['ParquetWriter']> | null = null;
  private readonly spreadName: 'variance' | 'scale_tril';
  private readonly groupRows: number;
  /** Rows buffered for the next row group, column by column. */
  private ids: number[] = [];
  private labels: number[][] = [];
  private means: number[][] = [];
  private spreads: number[][] = [];

  constructor(
    private readonly pq: ParquetModule,
    private readonly path: string,
    kind: 'diag' | 'full',
    private readonly dim: number,
    private readonly classNames: string[],
    groupRows?: number,
  ) {
    this.spreadName = kind === 'diag' ? 'variance' : 'scale_tril';
    const perRow = dim + (kind === 'diag' ? dim : dim * dim);
    if (groupRows !== undefined && !(Number.isInteger(groupRows) && groupRows >= 1)) throw new ProbsemError(`rowGroupRows must be a positive integer, got ${groupRows}`, 'BAD_OPTION');
    this.groupRows = groupRows ?? Math.max(1, Math.min(65536, Math.floor(PARQUET_GROUP_FLOATS / perRow)));
    // Created on the first write, so that the key-value metadata (known at finish) can be set then.
  }

  private open(): InstanceType<ParquetModule['ParquetWriter']> {
    if (this.writer) return this.writer;
    const schema: ParquetSchema = [
      { name: 'schema', num_children: 5 },
      { name: 'id', type: 'INT32', repetition_type: 'REQUIRED' },
      ...parquetList('labels', 'INT32'),
      ...parquetList('label_names', 'BYTE_ARRAY'),
      ...parquetList('mean', 'FLOAT'),
      ...parquetList(this.spreadName, 'FLOAT'),
    ];
    this.writer = new this.pq.ParquetWriter({ writer: this.pq.fileWriter(this.path), schema, createdBy: 'probsem embed' });
    return this.writer;
  }

  write(ids: Int32Array, rows: Rows, labels: Int32Array, perItem: number): void {
    const k = this.dim;
    const s = rows.spread.length / ids.length;
    for (let i = 0; i < ids.length; i++) {
      this.ids.push(ids[i]);
      this.labels.push(Array.from(labels.subarray(i * perItem, (i + 1) * perItem)));
      this.means.push(Array.from(rows.mean.subarray(i * k, (i + 1) * k)));
      this.spreads.push(Array.from(rows.spread.subarray(i * s, (i + 1) * s)));
      if (this.ids.length === this.groupRows) this.flush();
    }
  }

  /** Writes the buffered rows as one row group. */
  private flush(): void {
    const w = this.open();
    if (this.ids.length === 0) return;
    w.write({
      columnData: [
        { name: 'id', data: Int32Array.from(this.ids) },
        { name: 'labels', data: this.labels },
        { name: 'label_names', data: this.labels.map((l) => l.map((c) => this.classNames[c] ?? String(c))) },
        // PLAIN: float posteriors never gain from a dictionary, so the writer need not try one.
        { name: 'mean', data: this.means, encoding: 'PLAIN' },
        { name: this.spreadName, data: this.spreads, encoding: 'PLAIN' },
      ],
      rowGroupSize: this.ids.length,
    });
    this.ids = [];
    this.labels = [];
    this.means = [];
    this.spreads = [];
  }

  finish(meta: Record<string, unknown>): void {
    this.flush();
    const w = this.open();
    // meta.json's object, for readers that want the class names and the run without a side file.
    w.kvMetadata = [{ key: 'probsem', value: JSON.stringify(meta) }];
    w.finish();
    const fd = openSync(this.path, 'r');
    fsyncSync(fd);
    closeSync(fd);
    this.writer = null;
  }

  abort(): void {
    this.writer = null;
  }
}

/** A float32 as the shortest of ≤ 9 significant digits that reads back as the same float32. */
function f32List(a: Float32Array): string {
  const parts: string[] = [];
  for (const x of a) {
    let s = String(x);
    for (let p = 6; p <= 9; p++) {
      const t = Number(x.toPrecision(p));
      if (Math.fround(t) === x) {
        s = String(t);
        break;
      }
    }
    parts.push(s);
  }
  return `[${parts.join(',')}]`;
}
