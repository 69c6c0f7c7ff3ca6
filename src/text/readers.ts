/**
 * Streaming readers (and small writers) for word-vector files: word2vec binary, word2vec/GloVe
 * text with or without a "COUNT DIM" header line, and fastText `.vec`, optionally gzipped.
 *
 * Files of several GB are read in chunks and only the kept words' vectors are stored, so memory
 * grows with the kept vocabulary, not with the file. Every malformed input is a DataFormatError
 * naming the file and the line (text) or byte offset (binary).
 */
import { createReadStream, promises as fs, type ReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import { DataFormatError, ProbsemError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/files.js';
import { WordVectors, foldWord, tokenize } from './word-vectors.js';

export type WordVectorFormat = 'word2vec-bin' | 'text';

export interface ReadWordVectorsOptions {
  /** 'auto' (default): `.bin` is binary, `.txt`/`.vec` text, anything else sniffed from its first bytes. */
  format?: 'auto' | WordVectorFormat;
  /**
   * Keep only these words, matched exactly or folded as WordVectors matches them (case, spaces and
   * hyphens as underscores). A multi-word entry also keeps its tokens, so `phrase()` can fall back
   * to averaging them ("ankle boot" keeps `ankle_boot`, `ankle` and `boot`).
   */
  vocabulary?: Iterable<string>;
  /** Read only the first N words of the file (counted before the vocabulary filter, like gensim's `limit`). */
  maxWords?: number;
  /** Called after each chunk with the bytes read from disk so far and the file's size. */
  onProgress?: (bytesRead: number, totalBytes: number) => void;
}

/** Dimensions beyond this are taken as a corrupt header, not a real embedding. */
export const MAX_DIM = 100_000;
const CHUNK_BYTES = 1 << 20;
/** A text line longer than this means the file is not a word-vector text file (or dim is absurd). */
const MAX_LINE_BYTES = 16 << 20;
/** No real token is this long; without a cap, a binary file without spaces would be buffered whole. */
const MAX_WORD_BYTES = 64 << 10;
const FASTTEXT_MAGIC = 793712314; // first int32 of a fastText .bin model
const NL = 0x0a;

/** Reads a word-vector file; see ReadWordVectorsOptions. */
export async function readWordVectors(path: string, opts: ReadWordVectorsOptions = {}): Promise<WordVectors> {
  const size = await fileSize(path);
  if (size === 0) throw new DataFormatError(`word vectors file ${path} is empty`);
  if (opts.maxWords !== undefined && !(Number.isInteger(opts.maxWords) && opts.maxWords >= 1)) {
    throw new ProbsemError(`maxWords must be a positive integer, got ${opts.maxWords}`);
  }
  const gzip = await startsWithGzipMagic(path);
  const cur = new ByteCursor(path, gzip, size, opts.onProgress);
  try {
    if (!(await cur.fill(1))) throw new DataFormatError(`word vectors file ${path} is empty (after decompression)`);
    const format = !opts.format || opts.format === 'auto' ? await detectFormat(path, cur) : opts.format;
    const ctx: ReadContext = {
      path,
      cur,
      keep: makeFilter(opts.vocabulary),
      maxWords: opts.maxWords ?? Infinity,
      gzip,
    };
    return format === 'word2vec-bin' ? await readBinary(ctx) : await readText(ctx);
  } finally {
    cur.close();
  }
}

interface ReadContext {
  path: string;
  cur: ByteCursor;
  keep: (word: string) => boolean;
  maxWords: number;
  gzip: boolean;
}

// ---------------------------------------------------------------------------------------------
// Input: a cursor over the (decompressed) byte stream

/**
 * A window onto a stream of chunks: `buf[pos..]` holds bytes not consumed yet. Reading more
 * appends a chunk to the unconsumed tail, so memory is one chunk plus the longest record.
 */
class ByteCursor {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  /** Stream offset of buf[0]. */
  private base = 0;
  private ended = false;
  private readonly raw: ReadStream;
  private readonly chunks: AsyncIterator<Buffer>;

  constructor(
    private readonly path: string,
    gzip: boolean,
    private readonly size: number,
    private readonly onProgress?: (bytesRead: number, totalBytes: number) => void,
  ) {
    this.raw = createReadStream(path, { highWaterMark: CHUNK_BYTES });
    let stream: Readable = this.raw;
    if (gzip) {
      // pipeline forwards a read error of the file to the gunzip stream we iterate.
      stream = pipeline(this.raw, createGunzip({ chunkSize: 256 << 10 }), () => {});
    }
    this.chunks = stream[Symbol.asyncIterator]();
  }

  get available(): number {
    return this.buf.length - this.pos;
  }

  /** Stream offset of buf[pos]. */
  get offset(): number {
    return this.base + this.pos;
  }

  /** Reads until `n` bytes are available or the input ends; says whether they are. */
  async fill(n: number): Promise<boolean> {
    while (this.available < n && !this.ended) await this.readChunk();
    return this.available >= n;
  }

  /** Reads one more chunk; false at the end of the input. */
  async more(): Promise<boolean> {
    if (this.ended) return false;
    return this.fill(this.available + 1);
  }

  /** Consumes `n` bytes without keeping them; false if the input ends first. */
  async skip(n: number): Promise<boolean> {
    while (n > this.available) {
      n -= this.available;
      this.pos = this.buf.length;
      if (!(await this.more())) return false;
    }
    this.pos += n;
    return true;
  }

  close(): void {
    void this.chunks.return?.();
    this.raw.destroy();
  }

  private async readChunk(): Promise<void> {
    let r: IteratorResult<Buffer>;
    try {
      r = await this.chunks.next();
    } catch (err) {
      throw this.wrapError(err);
    }
    if (this.onProgress) this.onProgress(r.done ? this.size : this.raw.bytesRead, this.size);
    if (r.done) {
      this.ended = true;
      return;
    }
    const rest = this.buf.subarray(this.pos);
    this.base += this.pos;
    this.buf = rest.length > 0 ? Buffer.concat([rest, r.value]) : r.value;
    this.pos = 0;
  }

  private wrapError(err: unknown): Error {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && e.code.startsWith('Z_')) {
      return new DataFormatError(`word vectors file ${this.path}: corrupt or truncated gzip data after ${this.raw.bytesRead} bytes (${e.message})`);
    }
    return new ProbsemError(`could not read ${this.path}: ${e.code ? `${e.code} ` : ''}${e.message}`, 'IO');
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    const st = await fs.stat(path);
    if (st.isDirectory()) throw new DataFormatError(`word vectors file ${path} is a directory, not a file`);
    return st.size;
  } catch (err) {
    if (err instanceof ProbsemError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new DataFormatError(`word vectors file not found: ${path}`);
    throw new ProbsemError(`could not open ${path}: ${e.code ? `${e.code} ` : ''}${e.message}`, 'IO');
  }
}

async function startsWithGzipMagic(path: string): Promise<boolean> {
  const fh = await fs.open(path, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** Extension first (`.bin`, `.txt`, `.vec`, before any `.gz`); otherwise a header followed by control bytes means binary. */
async function detectFormat(path: string, cur: ByteCursor): Promise<WordVectorFormat> {
  const name = path.toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.bin')) return 'word2vec-bin';
  if (name.endsWith('.txt') || name.endsWith('.vec')) return 'text';
  await cur.fill(4096);
  const head = cur.buf.subarray(cur.pos, cur.pos + 4096);
  if (head.length >= 4 && head.readInt32LE(0) === FASTTEXT_MAGIC) return 'word2vec-bin'; // for its clear error
  const nl = head.indexOf(NL);
  if (nl < 0 || !/^\s*\d+\s+\d+\s*$/.test(head.toString('latin1', 0, nl))) return 'text';
  return head.subarray(nl + 1).some((b) => (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b === 0x7f)
    ? 'word2vec-bin'
    : 'text';
}

// ---------------------------------------------------------------------------------------------
// Shared pieces: the vocabulary filter, the header, the table of kept rows

function makeFilter(vocabulary: Iterable<string> | undefined): (word: string) => boolean {
  if (vocabulary === undefined) return () => true;
  const exact = new Set<string>();
  for (const entry of vocabulary) {
    exact.add(entry);
    for (const token of tokenize(entry)) {
      exact.add(token);
      for (const part of token.split('-')) if (part) exact.add(part);
    }
  }
  const folded = new Set([...exact].map(foldWord));
  return (word) => exact.has(word) || folded.has(foldWord(word));
}

interface Header {
  count: number;
  dim: number;
}

/** Validates "COUNT DIM"; `where` locates it in messages. */
function parseHeader(line: string, where: string): Header {
  const fields = line.trim().split(/\s+/);
  const shown = line.trim().slice(0, 60);
  if (fields.length !== 2) throw new DataFormatError(`${where}: bad header '${shown}': expected "COUNT DIM"`);
  const [count, dim] = fields.map((f) => (/^\d+$/.test(f) ? Number(f) : NaN));
  const bad = (what: string, v: string) => new DataFormatError(`${where}: bad header '${shown}': ${what} '${v}' is not a positive integer`);
  if (!(Number.isSafeInteger(count) && count >= 1)) throw bad('word count', fields[0]);
  if (!(Number.isSafeInteger(dim) && dim >= 1)) throw bad('dimension', fields[1]);
  if (dim > MAX_DIM) throw new DataFormatError(`${where}: bad header '${shown}': dimension ${dim} is over the limit of ${MAX_DIM}`);
  return { count, dim };
}

/**
 * The kept rows, in a Float32Array that doubles as needed: a header's declared count never
 * decides an allocation, only words actually read do.
 */
class RowTable {
  readonly words: string[] = [];
  private data: Float32Array;
  private readonly seenAt = new Map<string, string>();

  constructor(
    readonly dim: number,
    private readonly source: string,
  ) {
    this.data = new Float32Array(64 * dim);
  }

  /** A row to fill for `word`; `where` ("line 7", "byte offset 123") is kept for duplicate messages. */
  add(word: string, where: string): Float32Array {
    const first = this.seenAt.get(word);
    if (first !== undefined) throw new DataFormatError(`${this.source}, ${where}: duplicate word '${word}' (first at ${first})`);
    this.seenAt.set(word, where);
    const r = this.words.length;
    if ((r + 1) * this.dim > this.data.length) {
      const bigger = new Float32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.words.push(word);
    return this.data.subarray(r * this.dim, (r + 1) * this.dim);
  }

  finish(path: string): WordVectors {
    const n = this.words.length * this.dim;
    const data = n === this.data.length ? this.data : this.data.slice(0, n);
    return new WordVectors(this.words, data, this.dim, path);
  }
}

// ---------------------------------------------------------------------------------------------
// Text: word2vec text, GloVe (no header), fastText .vec

const NUMERIC = 1;
const BLANK = 2;
/** Byte classes: what may appear in a number, and field separators. Anything else is an error. */
const BYTE_CLASS = new Uint8Array(256);
for (const c of '0123456789+-.eE') BYTE_CLASS[c.charCodeAt(0)] = NUMERIC;
BYTE_CLASS[0x20] = BLANK;
BYTE_CLASS[0x09] = BLANK;

/** Fields in buf[from, to), or -(i + 1) where byte i cannot be part of a number. */
function countNumericFields(buf: Buffer, from: number, to: number): number {
  let n = 0;
  let inField = false;
  for (let i = from; i < to; i++) {
    const c = BYTE_CLASS[buf[i]];
    if (c === NUMERIC) {
      if (!inField) n++;
      inField = true;
    } else if (c === BLANK) {
      inField = false;
    } else {
      return -(i + 1);
    }
  }
  return n;
}

/** The whitespace-delimited token around byte i, for messages. */
function tokenAt(buf: Buffer, i: number, from: number, to: number): string {
  let s = i;
  let e = i;
  while (s > from && BYTE_CLASS[buf[s - 1]] !== BLANK) s--;
  while (e < to && BYTE_CLASS[buf[e]] !== BLANK) e++;
  return buf.toString('utf8', s, Math.min(e, s + 40));
}

/** Powers of ten that are exact doubles. */
const POW10 = Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * The number in buf[from, to), equal to what Number() gives. Plain decimals of up to 15
 * significant digits take a fast path: m / 10^k with m and 10^k exact doubles is one correctly
 * rounded division. Exponents, long or malformed numbers go through Number().
 */
function parseDecimal(buf: Buffer, from: number, to: number): number {
  let i = from;
  const negative = buf[i] === 0x2d;
  if (negative || buf[i] === 0x2b) i++;
  let mantissa = 0;
  let significant = 0;
  let decimals = 0;
  let digits = 0;
  let dot = false;
  for (; i < to; i++) {
    const c = buf[i];
    if (c >= 0x30 && c <= 0x39) {
      mantissa = mantissa * 10 + (c - 0x30);
      if (mantissa > 0) significant++;
      if (dot) decimals++;
      digits++;
    } else if (c === 0x2e && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (i === to && digits > 0 && significant <= 15 && decimals < POW10.length) {
    const v = mantissa / POW10[decimals];
    return negative ? -v : v;
  }
  return Number(buf.toString('latin1', from, to));
}

class TextReader {
  private lineNo = 0;
  private header: Header | null = null;
  private table: RowTable | null = null;
  private rows = 0;
  private readonly label: string;

  constructor(private readonly ctx: ReadContext) {
    this.label = `word vectors ${ctx.path}`;
  }

  async read(): Promise<WordVectors> {
    const cur = this.ctx.cur;
    for (;;) {
      let nl = cur.buf.indexOf(NL, cur.pos);
      while (nl < 0) {
        if (cur.available > MAX_LINE_BYTES) throw this.error(this.lineNo + 1, `line longer than ${MAX_LINE_BYTES} bytes (not a word-vector text file?)`);
        const scanned = cur.available;
        if (!(await cur.more())) break;
        nl = cur.buf.indexOf(NL, cur.pos + scanned);
      }
      const end = nl < 0 ? cur.buf.length : nl;
      if (nl < 0 && end === cur.pos) break; // clean end of file
      const stop = this.handleLine(cur.buf, cur.pos, end, nl < 0);
      this.lineNo++;
      cur.pos = nl < 0 ? end : nl + 1;
      if (stop || nl < 0) break;
    }
    return this.finish();
  }

  /** Handles one line (without its '\n'); true when maxWords rows have been read. */
  private handleLine(buf: Buffer, start: number, end: number, lastWithoutNewline: boolean): boolean {
    const n = this.lineNo + 1;
    if (n === 1 && buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf) start += 3; // UTF-8 BOM
    while (end > start && (buf[end - 1] === 0x0d || BYTE_CLASS[buf[end - 1]] === BLANK)) end--;
    if (end === start) return false; // blank line
    let wordEnd = start;
    while (wordEnd < end && BYTE_CLASS[buf[wordEnd]] !== BLANK) wordEnd++;
    if (wordEnd === start) throw this.error(n, 'line starts with whitespace: empty word');
    const fields = countNumericFields(buf, wordEnd, end);
    if (n === 1 && this.isHeader(buf, start, wordEnd, fields)) {
      this.header = parseHeader(buf.toString('latin1', start, end), `${this.label}, line 1`);
      return false;
    }
    const word = buf.toString('utf8', start, wordEnd);
    if (fields < 0) throw this.error(n, `word '${word}': '${tokenAt(buf, -fields - 1, wordEnd, end)}' is not a number`);
    const dim = this.dimFor(n, word, fields);
    if (fields !== dim) {
      if (lastWithoutNewline) throw this.error(n, `last line is cut short (file truncated?): word '${word}' has ${fields} values, expected ${dim}`);
      throw this.error(n, `word '${word}' has ${fields} values, expected ${dim}`);
    }
    this.rows++;
    if (this.header && this.rows > this.header.count) throw this.error(n, `more words than the header's count of ${this.header.count}`);
    if (this.ctx.keep(word)) this.parseRow(buf, wordEnd, end, this.table!.add(word, `line ${n}`), word, n);
    return this.rows >= this.ctx.maxWords;
  }

  /** A first line of exactly two numbers is a "COUNT DIM" header (validated by parseHeader). */
  private isHeader(buf: Buffer, start: number, wordEnd: number, fields: number): boolean {
    return fields === 1 && countNumericFields(buf, start, wordEnd) === 1;
  }

  /** The dimension: the header's, or (GloVe) the first row's value count. */
  private dimFor(n: number, word: string, fields: number): number {
    if (!this.table) {
      const dim = this.header ? this.header.dim : fields;
      if (dim === 0) throw this.error(n, `word '${word}' has no values`);
      if (dim > MAX_DIM) throw this.error(n, `word '${word}' has ${dim} values, over the limit of ${MAX_DIM}`);
      this.table = new RowTable(dim, this.label);
    }
    return this.table.dim;
  }

  private parseRow(buf: Buffer, from: number, to: number, row: Float32Array, word: string, n: number): void {
    let i = from;
    for (let j = 0; j < row.length; j++) {
      while (BYTE_CLASS[buf[i]] === BLANK) i++;
      const start = i;
      while (i < to && BYTE_CLASS[buf[i]] !== BLANK) i++;
      const v = Math.fround(parseDecimal(buf, start, i));
      if (!Number.isFinite(v)) {
        throw this.error(n, `word '${word}': value ${j + 1} '${buf.toString('latin1', start, i)}' is not a finite float32 number`);
      }
      row[j] = v;
    }
  }

  private finish(): WordVectors {
    const stoppedEarly = this.rows >= this.ctx.maxWords;
    if (this.header && this.rows < this.header.count && !stoppedEarly) {
      throw this.error(this.lineNo, `file ends after ${this.rows} words but the header promises ${this.header.count} (file truncated?)`);
    }
    if (!this.table) {
      if (this.header) return new WordVectors([], new Float32Array(0), this.header.dim, this.ctx.path);
      throw new DataFormatError(`${this.label} contains no word vectors (only blank lines)`);
    }
    return this.table.finish(this.ctx.path);
  }

  private error(n: number, msg: string): DataFormatError {
    return new DataFormatError(`${this.label}, line ${n}: ${msg}`);
  }
}

function readText(ctx: ReadContext): Promise<WordVectors> {
  return new TextReader(ctx).read();
}

// ---------------------------------------------------------------------------------------------
// word2vec binary

// Read from a typed array rather than node:os, so this module also loads in the explorer page.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

async function readBinary(ctx: ReadContext): Promise<WordVectors> {
  const { cur, path } = ctx;
  const at = (offset: number) => `word vectors ${path}, byte offset ${offset}${ctx.gzip ? ' (uncompressed)' : ''}`;
  const header = await readBinaryHeader(ctx, at);
  const table = new RowTable(header.dim, `word vectors ${path}`);
  const vectorBytes = header.dim * 4;
  const total = Math.min(header.count, ctx.maxWords);
  for (let i = 0; i < total; i++) {
    const wordOffset = await skipNewlines(cur);
    if (cur.available === 0) {
      throw new DataFormatError(`${at(wordOffset)}: file ends after ${i} words but the header promises ${header.count} (file truncated?)`);
    }
    const word = await readWord(cur, at(wordOffset));
    const vectorOffset = cur.offset;
    const keep = ctx.keep(word);
    const complete = keep ? await cur.fill(vectorBytes) : await cur.skip(vectorBytes);
    if (!complete) {
      throw new DataFormatError(
        `${at(vectorOffset)}: vector of word '${word}' (word ${i + 1} of ${header.count}) is cut short: needs ${vectorBytes} bytes (file truncated?)`,
      );
    }
    if (keep) {
      copyFloats(cur.buf, cur.pos, table.add(word, `byte offset ${wordOffset}`), (j) => `${at(vectorOffset + 4 * j)}: word '${word}': value ${j + 1}`);
      cur.pos += vectorBytes;
    }
  }
  if (total === header.count) {
    const end = await skipNewlines(cur);
    if (cur.available > 0) throw new DataFormatError(`${at(end)}: data after the ${header.count} words the header declares`);
  }
  return table.finish(path);
}

async function readBinaryHeader(ctx: ReadContext, at: (offset: number) => string): Promise<Header> {
  const { cur } = ctx;
  await cur.fill(256);
  const head = cur.buf.subarray(cur.pos, cur.pos + 256);
  if (head.length >= 4 && head.readInt32LE(0) === FASTTEXT_MAGIC) {
    throw new DataFormatError(`${at(0)}: this is a fastText model (.bin), not word2vec binary vectors; use its .vec file`);
  }
  const nl = head.indexOf(NL);
  if (nl < 0) throw new DataFormatError(`${at(0)}: bad header: no "COUNT DIM" line in the first ${head.length} bytes`);
  const header = parseHeader(head.toString('latin1', 0, nl), at(0));
  cur.pos += nl + 1;
  return header;
}

/** Skips the optional '\n' after a vector; returns the offset reached. */
async function skipNewlines(cur: ByteCursor): Promise<number> {
  for (;;) {
    if (cur.available === 0 && !(await cur.more())) return cur.offset;
    if (cur.buf[cur.pos] !== NL) return cur.offset;
    cur.pos++;
  }
}

/** The bytes up to the next space, as UTF-8; consumes the space. */
async function readWord(cur: ByteCursor, where: string): Promise<string> {
  let sp = cur.buf.indexOf(0x20, cur.pos);
  while (sp < 0) {
    if (cur.available > MAX_WORD_BYTES) throw new DataFormatError(`${where}: no space after a word within ${MAX_WORD_BYTES} bytes (not word2vec binary?)`);
    const scanned = cur.available;
    if (!(await cur.more())) throw new DataFormatError(`${where}: file ends inside a word (file truncated?)`);
    sp = cur.buf.indexOf(0x20, cur.pos + scanned);
  }
  if (sp === cur.pos) throw new DataFormatError(`${where}: empty word`);
  if (sp - cur.pos > MAX_WORD_BYTES) throw new DataFormatError(`${where}: word longer than ${MAX_WORD_BYTES} bytes (not word2vec binary?)`);
  const word = cur.buf.toString('utf8', cur.pos, sp);
  cur.pos = sp + 1;
  return word;
}

/** Copies dim little-endian float32 values into `row`, rejecting NaN and infinities. */
function copyFloats(buf: Buffer, offset: number, row: Float32Array, where: (j: number) => string): void {
  if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(row.buffer, row.byteOffset, row.byteLength).set(buf.subarray(offset, offset + row.byteLength));
  } else {
    for (let j = 0; j < row.length; j++) row[j] = buf.readFloatLE(offset + 4 * j);
  }
  for (let j = 0; j < row.length; j++) {
    if (!Number.isFinite(row[j])) throw new DataFormatError(`${where(j)} is ${row[j]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Writers (whole table in memory: for tests, fixtures and small tables)

export interface WriteWordVectorsOptions {
  /** Text only: write the "COUNT DIM" line (word2vec/fastText style; default true). false gives GloVe style. */
  header?: boolean;
}

/** Writes `wv` atomically; a path ending in `.gz` is gzipped. */
export function writeWordVectors(path: string, wv: WordVectors, format: WordVectorFormat, opts: WriteWordVectorsOptions = {}): void {
  const header = opts.header ?? true;
  if (wv.size === 0) throw new ProbsemError(`cannot write ${path}: no words (a word-vector file needs at least one)`);
  if (format === 'word2vec-bin' && !header) throw new ProbsemError('word2vec binary files always have a header');
  for (let i = 0; i < wv.size; i++) checkWritable(wv, i);
  const body = format === 'word2vec-bin' ? encodeBinary(wv) : Buffer.from(encodeText(wv, header), 'utf8');
  writeFileAtomicSync(path, path.toLowerCase().endsWith('.gz') ? gzipSync(body) : body);
}

function checkWritable(wv: WordVectors, i: number): void {
  const w = wv.words[i];
  if (w === '' || /\s/.test(w)) throw new ProbsemError(`cannot write word '${w}': word-vector files separate words by whitespace`);
  for (let j = i * wv.dim; j < (i + 1) * wv.dim; j++) {
    if (!Number.isFinite(wv.data[j])) throw new ProbsemError(`cannot write word '${w}': value ${j - i * wv.dim + 1} is ${wv.data[j]}`);
  }
}

function encodeBinary(wv: WordVectors): Buffer {
  const head = Buffer.from(`${wv.size} ${wv.dim}\n`, 'latin1');
  const words = wv.words.map((w) => Buffer.from(w, 'utf8'));
  const total = head.length + words.reduce((s, w) => s + w.length + 2 + 4 * wv.dim, 0);
  const out = Buffer.alloc(total);
  let off = head.copy(out, 0);
  words.forEach((w, i) => {
    off += w.copy(out, off);
    out[off++] = 0x20;
    for (let j = 0; j < wv.dim; j++) off = out.writeFloatLE(wv.data[i * wv.dim + j], off);
    out[off++] = NL;
  });
  return out;
}

function encodeText(wv: WordVectors, header: boolean): string {
  const lines = header ? [`${wv.size} ${wv.dim}`] : [];
  for (let i = 0; i < wv.size; i++) {
    const values = Array.from(wv.data.subarray(i * wv.dim, (i + 1) * wv.dim), shortestFloat32);
    lines.push(`${wv.words[i]} ${values.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

/** The shortest decimal that reads back as exactly this float32. */
export function shortestFloat32(v: number): string {
  const fits = (p: number) => Math.fround(Number(v.toPrecision(p))) === v;
  // Random float32 values mostly need 8 or 9 digits, so start from 7 and go the short way.
  let p = 7;
  if (fits(p)) while (p > 1 && fits(p - 1)) p--;
  else while (p < 9 && !fits(p)) p++;
  return String(Number(v.toPrecision(p)));
}
