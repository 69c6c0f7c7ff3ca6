/**
 * Exact KL retrieval stored in ClickHouse, over its HTTP interface (Node's fetch, no client library).
 *
 * Address: `clickhouse://[user[:password]@]host:port/db.table` (port: the HTTP port, default 8123;
 * `/table` alone means the database `default`). An upload writes two tables:
 *
 * - `db.table`: one row per item — pos UInt32 (item position), id Int32, c Float64, vec
 *   Array(Float32) (a_i of kl-math.ts), w Float64 (‖a_i‖), mean Array(Float32), spread
 *   Array(Float32) (the variances, or the dim × dim row-major scale_tril), labels Array(Int32);
 *   MergeTree ordered by pos;
 * - `db.table_klmeta`: key/value strings (format, kind, dim, count, labels per item, the index's
 *   meta JSON), written last, so a table without it is an unfinished upload.
 *
 * A search is one SQL statement. S_i = c + arraySum(arrayMap((x, y) -> x * y, vec, [b…])) (18.16
 * has no dotProduct; the products are Float32 × Float64 → Float64) is off only by the float32
 * storage of a_i, at most E_i = 2⁻²³ ‖a_i‖ ‖b‖ (twice the bound, plus a double-precision term in
 * |c_i|). The inner query keeps the m = k + max(32, k) positions with the smallest lower bound
 * ±S_i − E_i; the outer query returns those rows with the bounds and the Gaussians. As in the
 * in-process index (kl-index.ts), if the largest lower bound exceeds τ, the k-th smallest upper
 * bound ±S_i + E_i, the rows hold every candidate; otherwise a second statement fetches every item
 * with a lower bound ≤ τ (rare). The candidates are rescored by the exact double-precision KL, so
 * the hits equal the in-process index's and the brute force's, ties aside.
 */
import { ProbsemError } from '../core/errors.js';
import { KlIndex, type SearchHit, type SearchOptions } from './kl-index.js';
import { INDEX_ITEMS, SCAN_STATS } from './internal.js';
import { exactKl, FullScratch, itemVector, prepareQuery, vectorLength, type ItemGaussians, type QueryGaussian } from './kl-math.js';

export interface ClickHouseAddress {
  host: string;
  port: number;
  database: string;
  table: string;
  user?: string;
  password?: string;
}

export interface ClickHouseOptions {
  /** Per-request timeout in ms (default 300,000). */
  timeoutMs?: number;
  /** ClickHouse settings sent with every request, e.g. { max_threads: 1 }. */
  settings?: Record<string, string | number>;
}

export interface ClickHouseTableInfo {
  kind: 'diag' | 'full';
  dim: number;
  count: number;
  labelsPerItem: number;
  meta: Record<string, unknown>;
}

const FORMAT = 1;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses `clickhouse://[user[:password]@]host[:port]/[db.]table`. */
export function parseClickHouseUrl(url: string): ClickHouseAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ProbsemError(`not a ClickHouse address: ${url} (expected clickhouse://host:port/db.table)`, 'BAD_OPTION');
  }
  if (u.protocol !== 'clickhouse:') throw new ProbsemError(`not a ClickHouse address: ${url} (expected clickhouse://host:port/db.table)`, 'BAD_OPTION');
  if (!u.hostname) throw new ProbsemError(`ClickHouse address ${url} has no host`, 'BAD_OPTION');
  const path = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  const parts = path.split('.');
  if (parts.length > 2 || parts.some((p) => !IDENT.test(p))) {
    throw new ProbsemError(`ClickHouse address ${url}: the path must be /db.table or /table (letters, digits, _), got "/${path}"`, 'BAD_OPTION');
  }
  const port = u.port ? Number(u.port) : 8123;
  return {
    host: u.hostname,
    port,
    database: parts.length === 2 ? parts[0] : 'default',
    table: parts[parts.length - 1],
    user: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
  };
}

export class ClickHouseStore {
  private info_: ClickHouseTableInfo | null = null;

  private constructor(
    readonly address: ClickHouseAddress,
    private readonly opts: ClickHouseOptions,
  ) {}

  /** Connects (checks the server answers); the table need not exist yet. */
  static async open(url: string, opts: ClickHouseOptions = {}): Promise<ClickHouseStore> {
    const store = new ClickHouseStore(parseClickHouseUrl(url), opts);
    await store.sql('SELECT 1');
    return store;
  }

  /** `db.table`, quoted. */
  private get tableName(): string {
    return `\`${this.address.database}\`.\`${this.address.table}\``;
  }

  private get metaName(): string {
    return `\`${this.address.database}\`.\`${this.address.table}_klmeta\``;
  }

  private get where(): string {
    return `${this.address.host}:${this.address.port}`;
  }

  /**
   * One HTTP request: the statement in the body, or, with `data`, in the URL and the data as the
   * body (INSERT … FORMAT RowBinary). Returns the response body.
   */
  private async sql(statement: string, data?: Uint8Array<ArrayBuffer>): Promise<Buffer> {
    const params = new URLSearchParams();
    if (this.address.user !== undefined) params.set('user', this.address.user);
    if (this.address.password !== undefined) params.set('password', this.address.password);
    for (const [key, v] of Object.entries(this.opts.settings ?? {})) params.set(key, String(v));
    if (data) params.set('query', statement);
    else params.set('wait_end_of_query', '1'); // errors arrive as an HTTP status, not mid-stream
    const url = `http://${this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host}:${this.address.port}/?${params}`;
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', body: data ?? statement, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 300_000) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      if (e.name === 'TimeoutError' || e.name === 'AbortError') throw new ProbsemError(`ClickHouse at ${this.where} did not answer within ${this.opts.timeoutMs ?? 300_000} ms`, 'TIMEOUT');
      throw new ProbsemError(`ClickHouse at ${this.where} is unreachable: ${e.cause?.code ?? e.cause?.message ?? e.message}`, 'UNREACHABLE');
    }
    const body = Buffer.from(await res.arrayBuffer());
    if (!res.ok) {
      const text = body.toString('utf8').trim();
      const code = Number(/Code: (\d+)/.exec(text)?.[1]);
      if (code === 60 || code === 81) {
        throw new ProbsemError(`ClickHouse at ${this.where}: table ${this.address.database}.${this.address.table} does not exist (upload an index to it first): ${shortError(text)}`, 'NOT_FOUND');
      }
      if (res.status === 401 || res.status === 403 || code === 192 || code === 193 || code === 516) {
        throw new ProbsemError(`ClickHouse at ${this.where} refused the credentials: ${shortError(text)}`, 'AUTH');
      }
      throw new ProbsemError(`ClickHouse at ${this.where} failed (HTTP ${res.status}): ${shortError(text)}`, 'CLICKHOUSE');
    }
    return body;
  }

  /** Whether the item table exists. */
  async exists(): Promise<boolean> {
    return (await this.sql(`EXISTS TABLE ${this.tableName}`)).toString().trim() === '1';
  }

  /** Number of item rows. */
  async count(): Promise<number> {
    const r = await this.sql(`SELECT count() FROM ${this.tableName}`);
    return Number(r.toString().trim());
  }

  /** The stored index's kind, dimension, count and meta; clear errors for a missing or foreign table. */
  async info(): Promise<ClickHouseTableInfo> {
    if (this.info_) return this.info_;
    const name = `${this.address.database}.${this.address.table}`;
    if (!(await this.exists())) throw new ProbsemError(`ClickHouse at ${this.where}: table ${name} does not exist (upload an index to it first)`, 'NOT_FOUND');
    const cols = (await this.sql(`SELECT name, type FROM system.columns WHERE database = '${this.address.database}' AND table = '${this.address.table}' FORMAT TSV`))
      .toString()
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    const types = new Map(cols.map(([n, t]) => [n, t]));
    const want: Record<string, string> = { pos: 'UInt32', id: 'Int32', c: 'Float64', vec: 'Array(Float32)', w: 'Float64', mean: 'Array(Float32)', spread: 'Array(Float32)', labels: 'Array(Int32)' };
    for (const [col, type] of Object.entries(want)) {
      if (types.get(col) !== type) {
        throw new ProbsemError(`ClickHouse table ${name} is not a probsem KL table: column ${col} is ${types.get(col) ?? 'missing'}, expected ${type}`, 'DATA_FORMAT');
      }
    }
    const metaExists = (await this.sql(`EXISTS TABLE ${this.metaName}`)).toString().trim() === '1';
    if (!metaExists) throw new ProbsemError(`ClickHouse table ${name} has no ${this.address.table}_klmeta table: an upload did not finish; upload again with replace`, 'DATA_FORMAT');
    const rows = (await this.sql(`SELECT key, value FROM ${this.metaName} FORMAT JSONEachRow`)).toString().trim().split('\n').filter(Boolean);
    const kv = new Map<string, string>();
    for (const r of rows) {
      const o = JSON.parse(r) as { key: string; value: string };
      kv.set(o.key, o.value);
    }
    if (Number(kv.get('format')) !== FORMAT) throw new ProbsemError(`ClickHouse table ${name}: metadata format ${kv.get('format')}, this probsem reads ${FORMAT}`, 'DATA_FORMAT');
    const kind = kv.get('kind');
    if (kind !== 'diag' && kind !== 'full') throw new ProbsemError(`ClickHouse table ${name}: unknown kind ${kind}`, 'DATA_FORMAT');
    const info: ClickHouseTableInfo = {
      kind,
      dim: Number(kv.get('dim')),
      count: Number(kv.get('count')),
      labelsPerItem: Number(kv.get('labelsPerItem') ?? 0),
      meta: parseJson(kv.get('meta') ?? '{}', name),
    };
    if (!(info.dim >= 1) || !(info.count >= 0)) {
      throw new ProbsemError(`ClickHouse table ${name}: damaged metadata ${JSON.stringify(Object.fromEntries(kv))}`, 'DATA_FORMAT');
    }
    const rowsNow = await this.count();
    if (rowsNow !== info.count) throw new ProbsemError(`ClickHouse table ${name} has ${rowsNow} rows but its metadata says ${info.count}`, 'DATA_FORMAT');
    this.info_ = info;
    return info;
  }

  /** Drops the item and metadata tables (if present). */
  async drop(): Promise<void> {
    await this.sql(`DROP TABLE IF EXISTS ${this.tableName}`);
    await this.sql(`DROP TABLE IF EXISTS ${this.metaName}`);
    this.info_ = null;
  }

  /**
   * Stores an index: creates the tables and inserts the items in RowBinary batches of `batchRows`
   * (default 50,000), then the metadata. An existing table is an error unless `replace`.
   */
  async upload(index: KlIndex, opts: { replace?: boolean; batchRows?: number } = {}): Promise<{ rows: number; ms: number }> {
    const t0 = performance.now();
    const items = INDEX_ITEMS.get(index);
    if (!items) throw new ProbsemError('upload expects a KlIndex', 'BAD_INPUT');
    const name = `${this.address.database}.${this.address.table}`;
    if (await this.exists()) {
      if (!opts.replace) {
        let what = '';
        try {
          const i = await this.info();
          what = ` (${i.count} ${i.kind} Gaussians of dimension ${i.dim}; this index: ${index.count} of dimension ${index.dim})`;
        } catch {
          /* described well enough */
        }
        throw new ProbsemError(`ClickHouse table ${name} already exists${what}; upload with replace to overwrite it`, 'EXISTS');
      }
    }
    await this.drop();
    await this.sql(`CREATE DATABASE IF NOT EXISTS \`${this.address.database}\``);
    await this.sql(
      `CREATE TABLE ${this.tableName} (pos UInt32, id Int32, c Float64, vec Array(Float32), w Float64, mean Array(Float32), spread Array(Float32), labels Array(Int32)) ENGINE = MergeTree ORDER BY pos SETTINGS index_granularity = 1024`,
    );
    const batch = opts.batchRows ?? 50_000;
    const n = vectorLength(items.kind, items.dim);
    const row = new Float64Array(n);
    const scratch = items.kind === 'full' ? new FullScratch(items.dim) : undefined;
    const spreadN = items.kind === 'diag' ? items.dim : items.dim * items.dim;
    const spread = items.kind === 'diag' ? items.variance : items.scaleTril;
    const perItem = index.labels?.perItem ?? 0;
    for (let s = 0; s < items.count; s += batch) {
      const e = Math.min(items.count, s + batch);
      const w = new RowWriter((e - s) * (4 + 4 + 8 + 8 + 4 * 5 + 4 * (n + items.dim + spreadN + perItem)));
      for (let i = s; i < e; i++) {
        const c = itemVector(items, i, row, scratch);
        let norm2 = 0;
        for (let j = 0; j < n; j++) norm2 += row[j] * row[j];
        w.u32(i);
        w.i32(index.ids[i]);
        w.f64(c);
        w.f32array(row, 0, n);
        w.f64(Math.sqrt(norm2) * (1 + 2 ** -50));
        w.f32array(items.mean, i * items.dim, items.dim);
        w.f32array(spread, i * spreadN, spreadN);
        w.i32array(index.labels?.values ?? new Int32Array(0), i * perItem, perItem);
      }
      await this.sql(`INSERT INTO ${this.tableName} FORMAT RowBinary`, w.bytes());
    }
    await this.sql(`CREATE TABLE ${this.metaName} (key String, value String) ENGINE = TinyLog`);
    const meta: [string, string][] = [
      ['format', String(FORMAT)],
      ['kind', items.kind],
      ['dim', String(items.dim)],
      ['count', String(items.count)],
      ['labelsPerItem', String(perItem)],
      ['meta', JSON.stringify(index.meta)],
    ];
    const mw = new RowWriter(meta.reduce((s, [k, v]) => s + 10 + 3 * (k.length + v.length), 0));
    for (const [k, v] of meta) {
      mw.str(k);
      mw.str(v);
    }
    await this.sql(`INSERT INTO ${this.metaName} FORMAT RowBinary`, mw.bytes());
    this.info_ = null;
    return { rows: items.count, ms: performance.now() - t0 };
  }

  /** Exact top-k by KL(q ‖ item), like KlIndex.search, computed by the server in one statement. */
  async search(q: QueryGaussian, k: number, opts: SearchOptions = {}): Promise<SearchHit[]> {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw new ProbsemError(`k must be a positive integer, got ${k}`, 'BAD_OPTION');
    if (opts.distance !== undefined && opts.distance !== 'kl') {
      throw new ProbsemError(`the ClickHouse store ranks by KL(query ‖ item) only; --distance ${opts.distance} needs an index file (probsem index build --out)`, 'BAD_OPTION');
    }
    const info = await this.info();
    const name = `${this.address.database}.${this.address.table}`;
    if (q?.mean?.length !== info.dim) throw new ProbsemError(`query has dimension ${q?.mean?.length}, ClickHouse table ${name} holds dimension ${info.dim}`, 'SHAPE');
    let exclude = -1;
    if (opts.exclude !== undefined) {
      if (!Number.isInteger(opts.exclude) || opts.exclude < 0 || opts.exclude >= info.count) {
        throw new ProbsemError(`exclude must be an item position in [0, ${info.count}), got ${opts.exclude}`, 'BAD_OPTION');
      }
      exclude = opts.exclude;
    }
    const p = prepareQuery(info.kind, info.dim, q);
    const sign = opts.largest ? -1 : 1;
    const n = p.b.length;
    let bNorm = 0;
    for (let j = 0; j < n; j++) bNorm += p.b[j] * p.b[j];
    bNorm = Math.sqrt(bNorm);
    // Per-item error bound e = G w + H |c| (float32 a, double-precision sums, decimal b), and the lower bound ±s − e.
    const h = (n + 8) * 2 ** -50;
    const gw = (2 ** -23 + h) * bNorm;
    const score = `c + arraySum(arrayMap((x, y) -> x * y, vec, [${Array.from(p.b, floatLiteral).join(', ')}]))`;
    const err = `(${floatLiteral(gw)} * w + ${floatLiteral(h)} * abs(c))`;
    const lower = `${sign > 0 ? '' : '-'}(${score}) - ${err}`;
    const skip = exclude >= 0 ? `WHERE pos != ${exclude}` : '';
    const m = k + Math.max(32, k);
    const valid = info.count - (exclude >= 0 ? 1 : 0);
    const select = `SELECT pos, id, ${lower} AS lo, ${err} AS e, mean, spread FROM ${this.tableName}`;
    let rows = parseRows(await this.sql(`${select} WHERE pos IN (SELECT pos FROM ${this.tableName} ${skip} ORDER BY ${lower} LIMIT ${m}) ORDER BY lo, pos FORMAT RowBinary`), info);
    if (rows.length < Math.min(m, valid) || rows.some((r) => !Number.isFinite(r.lo) || !Number.isFinite(r.e))) {
      throw new ProbsemError(`ClickHouse table ${name} returned ${rows.length} candidates for ${Math.min(m, valid)} expected (non-finite scores?)`, 'CLICKHOUSE');
    }
    if (rows.length === m && rows.length < valid) {
      const upper = rows.map((r) => r.lo + 2 * (1 + 1e-9) * r.e).sort((x, y) => x - y);
      const tau = upper[k - 1];
      if (rows[m - 1].lo > tau) {
        rows = rows.filter((r) => r.lo <= tau);
      } else {
        // The m-th lower bound is within reach of the k-th upper bound: fetch every item that close.
        SCAN_STATS.clickhouseSecondStatements++;
        rows = parseRows(await this.sql(`SELECT * FROM (${select} ${skip}) WHERE lo <= ${floatLiteral(tau + Math.abs(tau) * 1e-12)} FORMAT RowBinary`), info);
      }
    }
    const pool: ItemGaussians =
      info.kind === 'diag'
        ? { kind: 'diag', dim: info.dim, count: rows.length, mean: concat(rows.map((r) => r.mean)), variance: concat(rows.map((r) => r.spread)) }
        : { kind: 'full', dim: info.dim, count: rows.length, mean: concat(rows.map((r) => r.mean)), scaleTril: concat(rows.map((r) => r.spread)) };
    const scratch = info.kind === 'full' ? new FullScratch(info.dim) : undefined;
    const hits = rows.map((r, j) => {
      const kl = exactKl(pool, j, p, scratch);
      return { index: r.pos, id: r.id, kl, score: kl };
    });
    hits.sort((x, y) => (x.kl === y.kl ? x.index - y.index : sign > 0 ? x.kl - y.kl : y.kl - x.kl));
    return hits.slice(0, k);
  }
}

function parseJson(text: string, name: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new ProbsemError(`ClickHouse table ${name}: its meta is not JSON`, 'DATA_FORMAT');
  }
}

/** A number as a ClickHouse Float64 literal (always with a point or exponent, so never an integer type). */
function floatLiteral(x: number): string {
  if (!Number.isFinite(x)) throw new ProbsemError(`cannot send ${x} to ClickHouse`, 'BAD_INPUT');
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

function shortError(text: string): string {
  const m = /e\.displayText\(\) = (?:DB::Exception: )?(.*?)(?:, e\.what\(\)|$)/s.exec(text);
  return (m ? m[1] : text).slice(0, 500);
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

interface Row {
  pos: number;
  id: number;
  /** Lower bound of ±S and the error bound. */
  lo: number;
  e: number;
  mean: Float32Array;
  spread: Float32Array;
}

/** Rows of (pos UInt32, id Int32, lo Float64, e Float64, mean Array(Float32), spread Array(Float32)) in RowBinary. */
function parseRows(buf: Buffer, info: ClickHouseTableInfo): Row[] {
  const rows: Row[] = [];
  let o = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (o >= buf.length) throw new ProbsemError('ClickHouse sent a truncated RowBinary result', 'CLICKHOUSE');
      const byte = buf[o++];
      v += (byte & 0x7f) * 2 ** shift;
      if (!(byte & 0x80)) return v;
      shift += 7;
    }
  };
  const f32s = (want: number) => {
    const len = varint();
    if (len !== want || o + 4 * len > buf.length) throw new ProbsemError(`ClickHouse sent an array of ${len} values where ${want} were expected (wrong dimension in the table?)`, 'DATA_FORMAT');
    const out = new Float32Array(len);
    for (let j = 0; j < len; j++) out[j] = buf.readFloatLE(o + 4 * j);
    o += 4 * len;
    return out;
  };
  const spreadN = info.kind === 'diag' ? info.dim : info.dim * info.dim;
  while (o < buf.length) {
    if (o + 24 > buf.length) throw new ProbsemError('ClickHouse sent a truncated RowBinary result', 'CLICKHOUSE');
    const pos = buf.readUInt32LE(o);
    const id = buf.readInt32LE(o + 4);
    const lo = buf.readDoubleLE(o + 8);
    const e = buf.readDoubleLE(o + 16);
    o += 24;
    rows.push({ pos, id, lo, e, mean: f32s(info.dim), spread: f32s(spreadN) });
  }
  return rows;
}

/** Little-endian RowBinary encoder into a growable buffer. */
class RowWriter {
  private buf: Buffer<ArrayBuffer>;
  private o = 0;
  constructor(size: number) {
    this.buf = Buffer.alloc(Math.max(64, size));
  }
  private room(n: number): void {
    if (this.o + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(2 * this.buf.length, this.o + n));
    this.buf.copy(next, 0, 0, this.o);
    this.buf = next;
  }
  u32(v: number): void {
    this.room(4);
    this.o = this.buf.writeUInt32LE(v, this.o);
  }
  i32(v: number): void {
    this.room(4);
    this.o = this.buf.writeInt32LE(v, this.o);
  }
  f64(v: number): void {
    this.room(8);
    this.o = this.buf.writeDoubleLE(v, this.o);
  }
  varint(v: number): void {
    this.room(10);
    while (v >= 0x80) {
      this.buf[this.o++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.o++] = v;
  }
  f32array(a: ArrayLike<number>, from: number, len: number): void {
    this.varint(len);
    this.room(4 * len);
    for (let j = 0; j < len; j++) this.o = this.buf.writeFloatLE(a[from + j], this.o);
  }
  i32array(a: Int32Array, from: number, len: number): void {
    this.varint(len);
    this.room(4 * len);
    for (let j = 0; j < len; j++) this.o = this.buf.writeInt32LE(a[from + j], this.o);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.varint(b.length);
    this.room(b.length);
    b.copy(this.buf, this.o);
    this.o += b.length;
  }
  bytes(): Uint8Array<ArrayBuffer> {
    return this.buf.subarray(0, this.o);
  }
}
