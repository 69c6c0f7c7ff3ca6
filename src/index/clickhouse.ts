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
 * Sharded: with `cluster` ({ name, shards }), `db.table` is a `Distributed` table over a
 * MergeTree `db.table_local` on every shard (created over each shard's own HTTP address; 18.16 has
 * no ON CLUSTER without ZooKeeper), and item i is inserted into shard i mod S directly. Searches
 * only name `db.table`, so a reader needs no cluster option.
 *
 * A search of B queries is one SQL statement, a UNION ALL of one SELECT per query. Per item a
 * score S with an error bound E: for `kl`, S = c + arraySum(arrayMap((x, y) -> x * y, vec, [b…]))
 * (18.16 has no dotProduct), off only by
 * the float32 storage of a_i, E = 2⁻²³ ‖a_i‖ ‖b‖ (twice it, plus a double-precision term in |c|);
 * for every other distance (diagonal items and query covariances), the distance itself summed per
 * dimension from the stored mean and variances in double precision, E a generous rounding bound on
 * the sum of the terms' magnitudes. Each SELECT (1) takes τ, the k-th smallest upper bound ±S + E
 * over a sample (the items with pos < s, s ≈ N/64, a range of the primary key): k sampled items
 * are within τ, so every item of the exact top k has a lower bound ±S − E ≤ τ; (2) keeps every
 * item with lower bound ≤ τ — no sort of the table — and returns those rows with their Gaussians. The
 * candidates are rescored by the exact double-precision distance (kl-math.ts, distances.ts), so
 * the hits equal the in-process index's and the brute force's, ties aside. The pool is about
 * k N / s rows per query.
 */
import { ProbsemError } from '../core/errors.js';
import { KlIndex, type SearchHit, type SearchOptions } from './kl-index.js';
import { INDEX_ITEMS, SCAN_STATS } from './internal.js';
import { exactKl, FullScratch, itemVector, prepareQuery, vectorLength, type ItemGaussians, type PreparedQuery, type QueryGaussian } from './kl-math.js';
import { DistanceScorer, parseDistance, type Distance } from './distances.js';
import { isDiagonal } from './rewrites.js';

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
  /**
   * Upload to a Distributed table over these shards: `name` is a cluster of the server's
   * remote_servers config, `shards` every shard's HTTP address (`host:port`) in the cluster's order.
   */
  cluster?: { name: string; shards: string[] };
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

  /** The local tables' name on every shard. */
  private get localName(): string {
    return `\`${this.address.database}\`.\`${this.address.table}_local\``;
  }

  /** Every shard's HTTP address, parsed (empty without a cluster). */
  private get shards(): { host: string; port: number }[] {
    return (this.opts.cluster?.shards ?? []).map((hp) => {
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(hp);
      if (!m) throw new ProbsemError(`a shard address must be host:port (its HTTP port), got ${JSON.stringify(hp)}`, 'BAD_OPTION');
      return { host: m[1], port: Number(m[2]) };
    });
  }

  private get where(): string {
    return `${this.address.host}:${this.address.port}`;
  }

  /**
   * One HTTP request: the statement in the body, or, with `data`, in the URL and the data as the
   * body (INSERT … FORMAT RowBinary). Returns the response body.
   */
  private async sql(statement: string, data?: Uint8Array<ArrayBuffer>, on?: { host: string; port: number }): Promise<Buffer> {
    const params = new URLSearchParams();
    // Credentials in headers, never the URL (which proxies and server logs record).
    const headers: Record<string, string> = {};
    if (this.address.user !== undefined) headers['X-ClickHouse-User'] = this.address.user;
    if (this.address.password !== undefined) headers['X-ClickHouse-Key'] = this.address.password;
    for (const [key, v] of Object.entries(this.opts.settings ?? {})) params.set(key, String(v));
    if (data) params.set('query', statement);
    else params.set('wait_end_of_query', '1'); // errors arrive as an HTTP status, not mid-stream
    const host = on?.host ?? this.address.host;
    const where = on ? `${on.host}:${on.port}` : this.where;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${on?.port ?? this.address.port}/?${params}`;
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', body: data ?? statement, headers, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 300_000) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      if (e.name === 'TimeoutError' || e.name === 'AbortError') throw new ProbsemError(`ClickHouse at ${where} did not answer within ${this.opts.timeoutMs ?? 300_000} ms`, 'TIMEOUT');
      throw new ProbsemError(`ClickHouse at ${where} is unreachable: ${e.cause?.code ?? e.cause?.message ?? e.message}`, 'UNREACHABLE');
    }
    const body = Buffer.from(await res.arrayBuffer());
    if (!res.ok) {
      const text = body.toString('utf8').trim();
      const code = Number(/Code: (\d+)/.exec(text)?.[1]);
      if (code === 60 || code === 81) {
        throw new ProbsemError(`ClickHouse at ${where}: table ${this.address.database}.${this.address.table} does not exist (upload an index to it first): ${shortError(text)}`, 'NOT_FOUND');
      }
      if (res.status === 401 || res.status === 403 || code === 192 || code === 193 || code === 516) {
        throw new ProbsemError(`ClickHouse at ${where} refused the credentials: ${shortError(text)}`, 'AUTH');
      }
      throw new ProbsemError(`ClickHouse at ${where} failed (HTTP ${res.status}): ${shortError(text)}`, 'CLICKHOUSE');
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
    for (const shard of this.shards) await this.sql(`DROP TABLE IF EXISTS ${this.localName}`, undefined, shard);
    this.info_ = null;
  }

  /**
   * Stores an index: creates the tables and inserts the items in RowBinary batches of `batchRows`
   * (default 50,000), then the metadata. An existing table is an error unless `replace`.
   */
  async upload(index: KlIndex, opts: { replace?: boolean; batchRows?: number } = {}): Promise<{ rows: number; ms: number }> {
    const items = INDEX_ITEMS.get(index);
    if (!items) throw new ProbsemError('upload expects a KlIndex', 'BAD_INPUT');
    return this.uploadGaussians(items, { ...opts, ids: index.ids, labels: index.labels ?? undefined, meta: index.meta });
  }

  /**
   * Stores Gaussians without building a KlIndex first, whose kernel table caps it at ~1 GiB
   * (6M diagonal items of dimension 20): what a table larger than one process's index takes.
   * Checks shapes and that every value is finite and every variance (or factor diagonal) positive.
   */
  async uploadGaussians(
    items: ItemGaussians,
    opts: { replace?: boolean; batchRows?: number; ids?: Int32Array; labels?: { perItem: number; values: Int32Array }; meta?: Record<string, unknown> } = {},
  ): Promise<{ rows: number; ms: number }> {
    const t0 = performance.now();
    checkGaussians(items);
    const count = items.count;
    const ids = opts.ids ?? Int32Array.from({ length: count }, (_, i) => i);
    if (ids.length !== count) throw new ProbsemError(`ids has ${ids.length} values for ${count} items`, 'SHAPE');
    const labels = opts.labels;
    if (labels && labels.values.length !== count * labels.perItem) throw new ProbsemError(`labels has ${labels.values.length} values for ${count} items × ${labels.perItem}`, 'SHAPE');
    const index = { count, dim: items.dim, ids, labels, meta: opts.meta ?? {} };
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
    const shards = this.shards;
    if (this.opts.cluster && (!IDENT.test(this.opts.cluster.name) || shards.length === 0)) {
      throw new ProbsemError(`cluster must name a cluster (letters, digits, _) and at least one shard, got ${JSON.stringify(this.opts.cluster)}`, 'BAD_OPTION');
    }
    await this.drop();
    const columns = '(pos UInt32, id Int32, c Float64, vec Array(Float32), w Float64, mean Array(Float32), spread Array(Float32), labels Array(Int32))';
    const mergeTree = 'ENGINE = MergeTree ORDER BY pos SETTINGS index_granularity = 1024';
    await this.sql(`CREATE DATABASE IF NOT EXISTS \`${this.address.database}\``);
    if (shards.length === 0) {
      await this.sql(`CREATE TABLE ${this.tableName} ${columns} ${mergeTree}`);
    } else {
      for (const shard of shards) {
        await this.sql(`CREATE DATABASE IF NOT EXISTS \`${this.address.database}\``, undefined, shard);
        await this.sql(`CREATE TABLE ${this.localName} ${columns} ${mergeTree}`, undefined, shard);
      }
      await this.sql(`CREATE TABLE ${this.tableName} ${columns} ENGINE = Distributed(${this.opts.cluster!.name}, \`${this.address.database}\`, \`${this.address.table}_local\`, pos)`);
    }
    // Where each batch goes: item i to shard i mod S (so every shard holds part of any pos range).
    const parts = Math.max(1, shards.length);
    const batch = opts.batchRows ?? 50_000;
    const n = vectorLength(items.kind, items.dim);
    const row = new Float64Array(n);
    const scratch = items.kind === 'full' ? new FullScratch(items.dim) : undefined;
    const spreadN = items.kind === 'diag' ? items.dim : items.dim * items.dim;
    const spread = items.kind === 'diag' ? items.variance : items.scaleTril;
    const perItem = index.labels?.perItem ?? 0;
    for (let s = 0; s < items.count; s += batch * parts) {
      const e = Math.min(items.count, s + batch * parts);
      for (let part = 0; part < parts; part++) {
        const w = new RowWriter(Math.ceil((e - s) / parts) * (4 + 4 + 8 + 8 + 4 * 5 + 4 * (n + items.dim + spreadN + perItem)));
        for (let i = s + ((part - s) % parts + parts) % parts; i < e; i += parts) {
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
        if (shards.length === 0) await this.sql(`INSERT INTO ${this.tableName} FORMAT RowBinary`, w.bytes());
        else await this.sql(`INSERT INTO ${this.localName} FORMAT RowBinary`, w.bytes(), shards[part]);
      }
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

  /** Exact top-k by a distance (default KL(q ‖ item)), like KlIndex.search, computed by the server. */
  async search(q: QueryGaussian, k: number, opts: SearchOptions = {}): Promise<SearchHit[]> {
    return (await this.searchBatch([q], k, opts))[0];
  }

  /**
   * Exact top-k of every query, like KlIndex.searchBatch, in one SQL statement (see the file's
   * comment). `kl` works for every table and query; the other distances for diagonal items and
   * diagonal query covariances, as a diagonal model's posteriors are.
   */
  async searchBatch(qs: QueryGaussian[], k: number, opts: SearchOptions = {}): Promise<SearchHit[][]> {
    if (!Array.isArray(qs)) throw new ProbsemError('searchBatch expects an array of queries', 'BAD_INPUT');
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw new ProbsemError(`k must be a positive integer, got ${k}`, 'BAD_OPTION');
    const distance = parseDistance(opts.distance, 'distance');
    const info = await this.info();
    const name = `${this.address.database}.${this.address.table}`;
    qs.forEach((q, i) => {
      if (q?.mean?.length !== info.dim) throw new ProbsemError(`${qs.length > 1 ? `query ${i}` : 'query'} has dimension ${q?.mean?.length}, ClickHouse table ${name} holds dimension ${info.dim}`, 'SHAPE');
    });
    let exclude = -1;
    if (opts.exclude !== undefined) {
      if (!Number.isInteger(opts.exclude) || opts.exclude < 0 || opts.exclude >= info.count) {
        throw new ProbsemError(`exclude must be an item position in [0, ${info.count}), got ${opts.exclude}`, 'BAD_OPTION');
      }
      exclude = opts.exclude;
    }
    const ps = qs.map((q, i) => prepareQuery(info.kind, info.dim, q, qs.length > 1 ? `query ${i}` : 'query'));
    if (distance !== 'kl') {
      if (info.kind === 'full') throw new ProbsemError(`the ClickHouse store ranks full-covariance items by kl only; --distance ${distance} needs an index file (probsem index build --out)`, 'BAD_OPTION');
      const bad = ps.findIndex((p) => !isDiagonal(p));
      if (bad >= 0) throw new ProbsemError(`the ClickHouse store ranks by ${distance} for diagonal query covariances only (query ${bad} has off-diagonal entries); use kl or an index file`, 'BAD_OPTION');
    }
    const valid = info.count - (exclude >= 0 ? 1 : 0);
    if (ps.length === 0) return [];
    if (valid === 0) return ps.map(() => []);
    const sign = opts.largest ? -1 : 1;
    const skip = exclude >= 0 ? ` AND pos != ${exclude}` : '';
    const sample = Math.min(info.count, Math.max(4096, Math.ceil(info.count / 64)));
    // One SELECT per query, its constants inlined as literals (18.16 has no lambda that captures a
    // column, and an ARRAY JOIN over the queries with Q[qi] measured ~8× slower per query), joined
    // by UNION ALL into one statement that the server runs in parallel.
    const branches = ps.map((p, i) => {
      const { score, err } = distance === 'kl' ? klTerms(p) : dimTerms(distance, p, info.dim);
      const lo = `${sign > 0 ? '' : '-'}(${score}) - ${err}`;
      const up = `${sign > 0 ? '' : '-'}(${score}) + ${err}`;
      // τ: the k-th smallest upper bound of the sample; with fewer than k sampled items (a shard's
      // share of a small table), no bound.
      const tau = `(SELECT if(count() >= ${k}, arrayElement(arraySort(groupArray(${up})), ${k}), 1e308) FROM ${this.tableName} WHERE pos < ${sample}${skip})`;
      const pool = `SELECT pos FROM ${this.tableName} WHERE ${lo} <= ${tau} * (1 + 1e-12) + 1e-300${skip}`;
      return `SELECT toUInt32(${i + 1}) AS qi, pos, id, mean, spread FROM ${this.tableName} PREWHERE pos GLOBAL IN (${pool})`;
    });
    const statement = `${branches.join(' UNION ALL ')} FORMAT RowBinary`;
    const rows = parseRows(await this.sql(statement), info);
    const byQuery: Row[][] = ps.map(() => []);
    for (const r of rows) {
      if (!(r.qi >= 1 && r.qi <= ps.length)) throw new ProbsemError(`ClickHouse table ${name} returned a row for query ${r.qi} of ${ps.length}`, 'CLICKHOUSE');
      byQuery[r.qi - 1].push(r);
    }
    return byQuery.map((cand, qi) => {
      if (cand.length < Math.min(k, valid)) throw new ProbsemError(`ClickHouse table ${name} returned ${cand.length} candidates for query ${qi}, fewer than ${Math.min(k, valid)} (non-finite scores?)`, 'CLICKHOUSE');
      return this.rescore(info, cand, ps[qi], k, sign, distance);
    });
  }

  /** The candidates by their exact double-precision distance, best first, k of them. */
  private rescore(info: ClickHouseTableInfo, rows: Row[], p: PreparedQuery, k: number, sign: number, distance: Distance): SearchHit[] {
    const mean = concat(rows.map((r) => r.mean));
    const spread = concat(rows.map((r) => r.spread));
    const pool: ItemGaussians =
      info.kind === 'diag' ? { kind: 'diag', dim: info.dim, count: rows.length, mean, variance: spread } : { kind: 'full', dim: info.dim, count: rows.length, mean, scaleTril: spread };
    const scratch = info.kind === 'full' ? new FullScratch(info.dim) : undefined;
    const scorer = distance === 'kl' ? null : new DistanceScorer(pool, distance, p);
    SCAN_STATS.clickhouseCandidates += rows.length;
    const hits = rows.map((r, j) => {
      const kl = exactKl(pool, j, p, scratch);
      return { index: r.pos, id: r.id, kl, score: scorer ? scorer.score(j) : kl };
    });
    hits.sort((x, y) => (x.score === y.score ? x.index - y.index : sign > 0 ? x.score - y.score : y.score - x.score));
    return hits.slice(0, k);
  }
}

/** SQL array literal, each value a Float64 literal. */
function sqlArray(values: ArrayLike<number>): string {
  return `[${Array.from(values, floatLiteral).join(', ')}]`;
}

/**
 * KL(q ‖ x) through the stored rewrite (kl-math.ts): S = c + ⟨vec, b⟩. E covers the float32
 * storage of vec (2⁻²³ ‖a‖ ‖b‖, doubled) and double-precision sums ((n + 8) 2⁻⁵⁰ on ‖a‖ ‖b‖ and |c|).
 */
function klTerms(p: PreparedQuery): { score: string; err: string } {
  const n = p.b.length;
  const h = (n + 8) * 2 ** -50;
  let b2 = 0;
  for (let j = 0; j < n; j++) b2 += p.b[j] * p.b[j];
  const g = (2 ** -23 + h) * Math.sqrt(b2);
  return {
    score: `c + arraySum(arrayMap((x, y) -> x * y, vec, ${sqlArray(p.b)}))`,
    err: `(${floatLiteral(g)} * w + ${floatLiteral(h)} * abs(c))`,
  };
}

/**
 * The distances of distances.ts for diagonal items and queries, as a sum over dimensions of a
 * term in the item's mean m and variance v and the query's mean a and variance s (d = m − a), and
 * the sum of the magnitudes of each term's parts. Every part is a few correctly rounded operations
 * (log and sqrt within an ulp), so the sum is within (K + 32) 2⁻⁴⁸ of that magnitude: a generous
 * bound on the server's rounding and on the rescoring's.
 */
const DIM_TERMS: Record<Exclude<Distance, 'kl'>, { f: string; g: string }> = {
  'kl-reverse': { f: '0.5 * (v / s + (m - a) * (m - a) / s - 1 + log(s) - log(v))', g: 'v / s + (m - a) * (m - a) / s + 1 + abs(log(s)) + abs(log(v))' },
  'kl-sym': { f: '0.5 * (s / v + v / s + (m - a) * (m - a) * (1 / v + 1 / s)) - 1', g: 's / v + v / s + (m - a) * (m - a) * (1 / v + 1 / s) + 2' },
  bhattacharyya: {
    f: '(m - a) * (m - a) / (4 * (s + v)) + 0.5 * log((s + v) / 2) - 0.25 * log(s) - 0.25 * log(v)',
    g: '(m - a) * (m - a) / (s + v) + abs(log((s + v) / 2)) + abs(log(s)) + abs(log(v))',
  },
  w2: { f: '(m - a) * (m - a) + (sqrt(v) - sqrt(s)) * (sqrt(v) - sqrt(s))', g: '(m - a) * (m - a) + v + s' },
  elk: { f: `0.5 * (${floatLiteral(Math.log(2 * Math.PI))} + log(s + v) + (m - a) * (m - a) / (s + v))`, g: `2 + abs(log(s + v)) + (m - a) * (m - a) / (s + v)` },
  csd: { f: '(m - a) * (m - a) + s + v', g: '(m - a) * (m - a) + s + v' },
};

function dimTerms(distance: Distance, p: PreparedQuery, dim: number): { score: string; err: string } {
  const t = DIM_TERMS[distance as Exclude<Distance, 'kl'>];
  const h = (dim + 32) * 2 ** -48;
  const args = `mean, spread, ${sqlArray(p.mean)}, ${sqlArray(Array.from({ length: dim }, (_, j) => p.cov[j * dim + j]))}`;
  const sum = (body: string) => `arraySum(arrayMap((m, v, a, s) -> ${body}, ${args}))`;
  return { score: sum(t.f), err: `(${floatLiteral(h)} * ${sum(t.g)})` };
}

/** Shapes, finite values and positive variances (or Cholesky diagonals) of items to upload. */
function checkGaussians(items: ItemGaussians): void {
  const { kind, dim, count } = items ?? ({} as ItemGaussians);
  if ((kind !== 'diag' && kind !== 'full') || !(Number.isInteger(dim) && dim >= 1) || !(Number.isInteger(count) && count >= 0)) {
    throw new ProbsemError('items must be { kind: "diag" | "full", dim ≥ 1, count ≥ 0, mean, variance | scaleTril }', 'BAD_INPUT');
  }
  const spread = items.kind === 'diag' ? items.variance : items.scaleTril;
  const per = kind === 'diag' ? dim : dim * dim;
  if (items.mean?.length !== count * dim) throw new ProbsemError(`mean has ${items.mean?.length} values for ${count} items of dimension ${dim}`, 'SHAPE');
  if (spread?.length !== count * per) throw new ProbsemError(`${kind === 'diag' ? 'variance' : 'scaleTril'} has ${spread?.length} values, expected ${count * per}`, 'SHAPE');
  for (let i = 0; i < items.mean.length; i++) if (!Number.isFinite(items.mean[i])) throw new ProbsemError(`item ${Math.floor(i / dim)}: mean[${i % dim}] is ${items.mean[i]}`, 'BAD_INPUT');
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < dim; j++) {
      const v = kind === 'diag' ? spread[i * dim + j] : spread[i * per + j * dim + j];
      if (!(v > 0 && Number.isFinite(v))) throw new ProbsemError(`item ${i}: ${kind === 'diag' ? 'variance' : 'scale_tril diagonal'}[${j}] is ${v} (must be positive and finite)`, 'BAD_INPUT');
    }
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
  /** Which query (1-based) the row is a candidate for. */
  qi: number;
  pos: number;
  id: number;
  mean: Float32Array;
  spread: Float32Array;
}

/** Rows of (qi UInt32, pos UInt32, id Int32, mean Array(Float32), spread Array(Float32)) in RowBinary. */
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
    if (o + 12 > buf.length) throw new ProbsemError('ClickHouse sent a truncated RowBinary result', 'CLICKHOUSE');
    const qi = buf.readUInt32LE(o);
    const pos = buf.readUInt32LE(o + 4);
    const id = buf.readInt32LE(o + 8);
    o += 12;
    rows.push({ qi, pos, id, mean: f32s(info.dim), spread: f32s(spreadN) });
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
