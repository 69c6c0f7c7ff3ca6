/**
 * Exact top-k retrieval of item Gaussians by KL(query ‖ item).
 *
 * 2 KL(p ‖ q_i) = S_i − K − log|Σp| with S_i = c_i + ⟨a_i, b_p⟩ (kl-math.ts), so ranking the items
 * for a query is ranking S_i: one pass of n-long dot products. The index keeps the a_i in float32
 * in the memory of probsem's wasm kernels, 16 items interleaved per block for SIMD, and `kl_scan`
 * scores every item and keeps the best m = k + max(32, k) per query in a heap, for up to 64
 * queries per pass (each block of items is read from memory once and serves all of them).
 *
 * Exactness. Summed in float32, S_i is off by at most about (n + 4) 2⁻²⁴ (|c_i| + Σ_j |a_ij b_j|)
 * (the usual γ bound, with the rounding of a, b and c to float32). Each item carries its own bound
 * E_i = γ (|c_i| + ‖a_i‖ ‖b‖) with γ = (n + 6) 2⁻²³ (Cauchy–Schwarz, and a margin of two), folded
 * into the float32 score itself: the kernel's rows are [a_i, ‖a_i‖] with constant ±c_i − γ|c_i|,
 * the query's row is [±b, −γ‖b‖] (sign − for the largest KL), so what the kernel computes,
 * L_i = ±S_i − E_i + (its own rounding, < E_i), is a guaranteed lower bound of ±S_i, and
 * L_i + 2 E_i an upper bound. With τ the k-th smallest upper bound in the heap, every item with
 * L_i > τ is provably outside the top k; if the heap's largest L exceeds τ the heap holds every
 * candidate, otherwise a second pass (`kl_collect`) gathers every item with L_i ≤ τ (rare). The
 * candidates are rescored by the exact double-precision KL (the same function as `bruteForceKl`)
 * and sorted, so the hits and their `kl` values equal the brute force, ties aside (equal KL values
 * are ordered by item position). Per-item bounds keep the candidate pool at about k even when a
 * few items are badly conditioned (a global bound would be set by the worst of them).
 *
 * Other distances (`search(q, k, { distance })`, distances.ts) reuse the same scan where they have
 * an inner-product rewrite (rewrites.ts), each with its own table in a kernel instance of its own,
 * built on first use, and rescore by their exact double-precision value; the others are scored by
 * brute force (`scanExact`).
 */
import { createHash } from 'node:crypto';
import { ProbsemError } from '../core/errors.js';
import { RegularFile, writeFileAtomicSync } from '../core/files.js';
import { Kernels, type Buf } from '../core/wasm/kernels.js';
import { INDEX_ITEMS, SCAN_STATS } from './internal.js';
import { DistanceScorer, parseDistance, type Distance } from './distances.js';
import { isDiagonal, rewriteFor, type Rewrite } from './rewrites.js';
import { exactKl, FullScratch, itemVector, prepareQuery, validateItems, vectorLength, type ItemGaussians, type PreparedQuery, type QueryGaussian } from './kl-math.js';

export type { ItemGaussians, QueryGaussian } from './kl-math.js';

export interface SearchHit {
  /** Item position. */
  index: number;
  /** Stored id (defaults to the position). */
  id: number;
  /** The exact KL(query ‖ item) in nats. */
  kl: number;
  /** The distance searched by (distances.ts; smaller is closer), in double precision: `kl` for the default. */
  score: number;
}

export interface SearchOptions {
  /** Most dissimilar instead of most similar. */
  largest?: boolean;
  /** Item position to skip, e.g. the query image itself. */
  exclude?: number;
  /** What to rank by (default `kl`, KL(query ‖ item)); distances.ts lists them. */
  distance?: Distance;
}

export interface Labels {
  perItem: number;
  values: Int32Array;
}

/** Queries scored per pass over the items. */
const QUERY_CHUNK = 64;
const BLOCK = 16;
/** Kernel memory is at most 1 GiB; leave room for the query buffers. */
const MAX_INDEX_BYTES = 1000 * 2 ** 20;

/*
 * File format, version 1 (little-endian):
 *
 *   offset  size  field
 *        0     8  magic "PSKLINDX"
 *        8     4  u32 format version (1)
 *       12     4  u32 kind: 1 diagonal, 2 full covariance
 *       16     4  u32 dim
 *       20     4  u32 count
 *       24     4  u32 labels per item (0: no labels)
 *       28     4  u32 byte length of the meta JSON
 *       32    32  SHA-256 of bytes 0..31 followed by the whole payload
 *       64     …  payload:
 *                   mean        f32[count·dim]
 *                   variance    f32[count·dim]        (diag)  or
 *                   scaleTril   f32[count·dim·dim]    (full, row-major lower-triangular)
 *                   ids         i32[count]
 *                   labels      i32[count·perItem]
 *                   meta        UTF-8 JSON
 *
 * The file is exactly 64 bytes plus the payload. Only the Gaussians are stored: a_i and c_i are
 * derived deterministically on load, so a loaded index returns exactly what the saved one did.
 */
const MAGIC = 'PSKLINDX';
const VERSION = 1;
const HEADER_BYTES = 64;

export class KlIndex {
  readonly kind: 'diag' | 'full';
  readonly dim: number;
  readonly count: number;
  readonly ids: Int32Array;
  readonly labels: Labels | null;
  readonly meta: Record<string, unknown>;
  /** The KL(query ‖ item) table, built with the index. */
  private readonly klTable: ScanTable;
  /**
   * Tables of the other distances with an inner-product rewrite (rewrites.ts), built on first use,
   * each in its own kernel instance (kernel memory is capped at 1 GiB and never freed, so sharing
   * one would let the first distance asked for crowd out the rest); null: brute force.
   */
  private readonly tables = new Map<Distance, ScanTable | null>();
  private readonly scratch: FullScratch | undefined;

  private constructor(
    private readonly items: ItemGaussians,
    ids: Int32Array,
    labels: Labels | null,
    meta: Record<string, unknown>,
  ) {
    this.kind = items.kind;
    this.dim = items.dim;
    this.count = items.count;
    this.ids = ids;
    this.labels = labels;
    this.meta = meta;
    this.scratch = items.kind === 'full' ? new FullScratch(items.dim) : undefined;
    INDEX_ITEMS.set(this, items);
    const n = vectorLength(items.kind, items.dim);
    const bytes = tableBytes(items.count, n);
    if (bytes > MAX_INDEX_BYTES) {
      throw new ProbsemError(
        `an index of ${items.count} ${items.kind} Gaussians of dimension ${items.dim} needs ${Math.ceil(bytes / 2 ** 20)} MiB of kernel memory (at most ${MAX_INDEX_BYTES / 2 ** 20} MiB)`,
        'TOO_LARGE',
      );
    }
    this.klTable = this.buildTable(Kernels.createSync(), n, (i, row) => itemVector(items, i, row, this.scratch));
  }

  /**
   * Lays out one table in kernel memory: rows [a_i, ‖a_i‖] (16 items interleaved per block) and
   * the constants c_i − γ|c_i| and −c_i − γ|c_i| (module comment). Throws a ProbsemError where a
   * value overflows float32.
   */
  private buildTable(kernels: Kernels, n: number, vector: (i: number, row: Float64Array) => number): ScanTable {
    const count = this.count;
    const blocks = Math.ceil(count / BLOCK);
    const rowLen = n + 1;
    const gamma = (n + 6) * 2 ** -23;
    const aBuf = kernels.alloc(blocks * BLOCK * rowLen);
    const cSmall = kernels.alloc(blocks * BLOCK);
    const cLarge = kernels.alloc(blocks * BLOCK);
    const t: ScanTable = { kernels, work: null, collect: null, n, rowLen, gamma, aPtr: aBuf.ptr, cPtr: { smallest: cSmall.ptr, largest: cLarge.ptr }, errC: new Float64Array(count), normA: new Float32Array(count) };
    const heap = kernels.heap();
    const a0 = aBuf.ptr >> 2;
    const cs0 = cSmall.ptr >> 2;
    const cl0 = cLarge.ptr >> 2;
    const row = new Float64Array(n);
    for (let i = 0; i < count; i++) {
      const c = vector(i, row);
      const base = a0 + (i >> 4) * BLOCK * rowLen + (i & 15);
      let norm2 = 0;
      for (let j = 0; j < n; j++) {
        const v = Math.fround(row[j]);
        if (!Number.isFinite(v)) throw new ProbsemError(`item ${i}: its precision (inverse covariance) overflows float32 (a[${j}] = ${row[j]}); variances must be above ~1e-38`, 'BAD_INPUT');
        heap[base + j * BLOCK] = v;
        norm2 += row[j] * row[j];
      }
      const norm = roundUp32(Math.sqrt(norm2));
      const err = gamma * Math.abs(c);
      if (!Number.isFinite(norm) || !Number.isFinite(Math.fround(c - err)) || !Number.isFinite(Math.fround(-c - err))) {
        throw new ProbsemError(`item ${i}: its precision or constant μᵀΣ⁻¹μ + log|Σ| = ${c} overflows float32`, 'BAD_INPUT');
      }
      heap[base + n * BLOCK] = norm;
      heap[cs0 + i] = c - err;
      heap[cl0 + i] = -c - err;
      t.errC[i] = err;
      t.normA[i] = norm;
    }
    for (let i = count; i < blocks * BLOCK; i++) heap[cs0 + i] = heap[cl0 + i] = NaN; // padding: never kept
    return t;
  }

  /**
   * The scan table of a distance's rewrite, built on first use in a kernel instance of its own;
   * null (brute force) when it would not fit in one (1 GiB), or a value overflows float32.
   */
  private tableFor(distance: Distance, rw: Rewrite): ScanTable | null {
    if (this.tables.has(distance)) return this.tables.get(distance)!;
    let t: ScanTable | null = null;
    const bytes = tableBytes(this.count, rw.n);
    if (bytes <= MAX_INDEX_BYTES) {
      try {
        t = this.buildTable(Kernels.createSync(), rw.n, (i, row) => rw.item(this.items, i, row));
      } catch (err) {
        if (!(err instanceof ProbsemError)) throw err;
        t = null;
      }
    }
    this.tables.set(distance, t);
    return t;
  }

  static build(items: ItemGaussians, opts: { ids?: Int32Array; labels?: Labels; meta?: Record<string, unknown> } = {}): KlIndex {
    validateItems(items);
    const own: ItemGaussians =
      items.kind === 'diag'
        ? { kind: 'diag', dim: items.dim, count: items.count, mean: items.mean.slice(), variance: items.variance.slice() }
        : { kind: 'full', dim: items.dim, count: items.count, mean: items.mean.slice(), scaleTril: items.scaleTril.slice() };
    let ids: Int32Array;
    if (opts.ids !== undefined) {
      if (!(opts.ids instanceof Int32Array)) throw new ProbsemError('ids must be an Int32Array', 'BAD_INPUT');
      if (opts.ids.length !== items.count) throw new ProbsemError(`ids has ${opts.ids.length} entries, expected one per item (${items.count})`, 'SHAPE');
      ids = opts.ids.slice();
    } else {
      ids = Int32Array.from({ length: items.count }, (_, i) => i);
    }
    let labels: Labels | null = null;
    if (opts.labels !== undefined) {
      const { perItem, values } = opts.labels;
      if (!Number.isInteger(perItem) || perItem < 1) throw new ProbsemError(`labels.perItem must be a positive integer, got ${perItem}`, 'BAD_INPUT');
      if (!(values instanceof Int32Array)) throw new ProbsemError('labels.values must be an Int32Array', 'BAD_INPUT');
      if (values.length !== items.count * perItem) {
        throw new ProbsemError(`labels.values has ${values.length} entries, expected count × perItem = ${items.count} × ${perItem}`, 'SHAPE');
      }
      labels = { perItem, values: values.slice() };
    }
    const meta = opts.meta ?? {};
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new ProbsemError('meta must be a plain object', 'BAD_INPUT');
    let metaCopy: Record<string, unknown>;
    try {
      metaCopy = JSON.parse(JSON.stringify(meta)) as Record<string, unknown>;
    } catch (err) {
      throw new ProbsemError(`meta must be JSON-serialisable: ${(err as Error).message}`, 'BAD_INPUT');
    }
    if (labels) validateLabels(labels.values, metaCopy);
    return new KlIndex(own, ids, labels, metaCopy);
  }

  search(q: QueryGaussian, k: number, opts: SearchOptions = {}): SearchHit[] {
    return this.searchBatch([q], k, opts)[0];
  }

  searchBatch(qs: QueryGaussian[], k: number, opts: SearchOptions = {}): SearchHit[][] {
    if (!Array.isArray(qs)) throw new ProbsemError('searchBatch expects an array of queries', 'BAD_INPUT');
    const { sign, exclude } = this.checkOptions(k, opts);
    const distance = parseDistance(opts.distance, 'distance');
    const prepared = qs.map((q, i) => prepareQuery(this.kind, this.dim, q, qs.length > 1 ? `query ${i}` : 'query'));
    // Per query: the table scan where the distance has a rewrite for it, else exact brute force.
    const out: SearchHit[][] = new Array(prepared.length);
    const scanned: { pos: number; q: PreparedQuery; b: Float64Array }[] = [];
    // One table per distance (tableFor caches it), so every scanned query uses the same one.
    let table: ScanTable | null = distance === 'kl' ? this.klTable : null;
    prepared.forEach((q, pos) => {
      if (distance === 'kl') return scanned.push({ pos, q, b: q.b });
      const rw = rewriteFor(distance, this.kind, this.dim, isDiagonal(q));
      const t = rw ? this.tableFor(distance, rw) : null;
      if (!rw || !t) return (out[pos] = this.scanExact(q, distance, k, sign, exclude));
      table = t;
      const b = new Float64Array(rw.n);
      rw.query(q, b);
      scanned.push({ pos, q, b });
    });
    for (let s = 0; s < scanned.length; s += QUERY_CHUNK) {
      const chunk = scanned.slice(s, s + QUERY_CHUNK);
      const hits = this.searchChunk(table!, chunk, k, sign, exclude, distance);
      chunk.forEach((c, t) => (out[c.pos] = hits[t]));
    }
    return out;
  }

  private checkOptions(k: number, opts: SearchOptions): { sign: number; exclude: number } {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw new ProbsemError(`k must be a positive integer, got ${k}`, 'BAD_OPTION');
    let exclude = -1;
    if (opts.exclude !== undefined) {
      if (!Number.isInteger(opts.exclude) || opts.exclude < 0 || opts.exclude >= this.count) {
        throw new ProbsemError(`exclude must be an item position in [0, ${this.count}), got ${opts.exclude}`, 'BAD_OPTION');
      }
      exclude = opts.exclude;
    }
    return { sign: opts.largest ? -1 : 1, exclude };
  }

  private ensureWork(t: ScanTable, queries: number, m: number): NonNullable<ScanTable['work']> {
    const w = t.work;
    if (w && w.queries >= queries && w.m >= m) return w;
    const qn = Math.max(queries, w?.queries ?? 0);
    const mm = Math.max(m, w?.m ?? 0);
    const k = t.kernels;
    t.work = { queries: qn, m: mm, b: k.alloc(qn * t.rowLen), hv: k.alloc(qn * mm), hi: k.alloc(qn * mm), hn: k.alloc(qn) };
    return t.work;
  }

  private searchChunk(t: ScanTable, qs: { q: PreparedQuery; b: Float64Array }[], k: number, sign: number, exclude: number, distance: Distance): SearchHit[][] {
    const nq = qs.length;
    const { n, rowLen } = t;
    const valid = this.count - (exclude >= 0 ? 1 : 0);
    const m = Math.max(1, Math.min(k + Math.max(32, k), this.count));
    const w = this.ensureWork(t, nq, m);
    const kernels = t.kernels;
    const heap = kernels.heap();
    const cPtr = sign > 0 ? t.cPtr.smallest : t.cPtr.largest;
    // The query rows [±b, −γ‖b‖]; g = γ‖b‖ rounded up.
    const g = new Float64Array(nq);
    for (let q = 0; q < nq; q++) {
      const b = qs[q].b;
      const o = (w.b.ptr >> 2) + q * rowLen;
      let norm2 = 0;
      for (let j = 0; j < n; j++) {
        heap[o + j] = sign * b[j];
        norm2 += b[j] * b[j];
      }
      g[q] = roundUp32(t.gamma * Math.sqrt(norm2));
      heap[o + n] = -g[q];
    }
    const hn = new Int32Array(kernels.memory.buffer, w.hn.ptr, nq);
    hn.fill(0);
    if (this.count > 0) {
      kernels.klScan({ a: t.aPtr, c: cPtr, count: this.count, n: rowLen, b: w.b.ptr, queries: nq, exclude, hv: w.hv.ptr, hi: w.hi.ptr, hn: w.hn.ptr, m });
    }
    const results: SearchHit[][] = [];
    for (let q = 0; q < nq; q++) {
      const size = hn[q];
      const hv = new Float32Array(kernels.memory.buffer, w.hv.ptr + 4 * q * m, size);
      const hi = new Int32Array(kernels.memory.buffer, w.hi.ptr + 4 * q * m, size).slice();
      // Upper bounds L + 2E (E as stored, padded for the double-precision sum).
      const upper = Array.from(hv, (lo, u) => lo + 2 * (1 + 1e-9) * (t.errC[hi[u]] + t.normA[hi[u]] * g[q]));
      let pool: ArrayLike<number> | null;
      if (!Number.isFinite(g[q]) || upper.some((u) => !Number.isFinite(u))) {
        pool = null; // float32 overflow somewhere: rescore everything
      } else if (size < Math.min(m, valid)) {
        pool = null; // cannot happen with finite scores; be safe
      } else if (size <= k || size === valid) {
        pool = hi;
      } else {
        const tau = [...upper].sort((x, y) => x - y)[k - 1];
        let lowMax = -Infinity;
        for (let u = 0; u < size; u++) lowMax = Math.max(lowMax, hv[u]);
        if (lowMax > tau) {
          pool = hi.filter((_, u) => hv[u] <= tau);
        } else {
          pool = this.collectWithin(t, w.b.ptr + 4 * q * rowLen, cPtr, exclude, tau);
        }
      }
      results.push(this.rescore(qs[q].q, pool, k, sign, exclude, distance));
    }
    return results;
  }

  /** Every item whose float32 lower bound is at most `limit` (rounded up to float32). */
  private collectWithin(t: ScanTable, bPtr: number, cPtr: number, exclude: number, limit: number): Int32Array {
    SCAN_STATS.collectPasses++;
    const thr = roundUp32(limit);
    for (;;) {
      const cap = t.collect?.length ?? 0;
      const found = this.count === 0 ? 0 : t.kernels.klCollect({ a: t.aPtr, c: cPtr, count: this.count, n: t.rowLen, b: bPtr, exclude, thr, out: t.collect?.ptr ?? 0, cap });
      if (found <= cap) return new Int32Array(t.kernels.memory.buffer, t.collect!.ptr, found).slice();
      t.collect = t.kernels.alloc(Math.max(found, 2 * cap, 1024));
    }
  }

  /** The exact distance (and KL) of the candidates (all items when null), best first, k of them. */
  private rescore(q: PreparedQuery, pool: ArrayLike<number> | null, k: number, sign: number, exclude: number, distance: Distance): SearchHit[] {
    const cand: number[] = [];
    SCAN_STATS.queries++;
    if (pool === null) {
      SCAN_STATS.fullRescans++;
      for (let i = 0; i < this.count; i++) if (i !== exclude) cand.push(i);
    } else {
      for (let i = 0; i < pool.length; i++) cand.push(pool[i]);
    }
    SCAN_STATS.rescored += cand.length;
    const scorer = distance === 'kl' ? null : new DistanceScorer(this.items, distance, q);
    const hits = cand.map((index) => {
      const kl = exactKl(this.items, index, q, this.scratch);
      return { index, id: this.ids[index], kl, score: scorer ? scorer.score(index) : kl };
    });
    hits.sort((x, y) => (x.score === y.score ? x.index - y.index : sign > 0 ? x.score - y.score : y.score - x.score));
    return hits.slice(0, k);
  }

  /**
   * Every item scored by the exact double-precision distance, the best k kept in a heap: the path of
   * Bhattacharyya and the ELK, which have no inner-product rewrite (distances.ts), and of the other
   * distances where their rewrite does not apply (rewrites.ts) or its table does not fit.
   */
  private scanExact(q: PreparedQuery, distance: Distance, k: number, sign: number, exclude: number): SearchHit[] {
    SCAN_STATS.queries++;
    SCAN_STATS.fullRescans++;
    const scorer = new DistanceScorer(this.items, distance, q);
    const best = topK(this.count, k, (i) => (i === exclude ? NaN : sign * scorer.score(i)));
    SCAN_STATS.rescored += this.count;
    return best.map(({ index, value }) => ({ index, id: this.ids[index], kl: exactKl(this.items, index, q, this.scratch), score: sign * value }));
  }

  /**
   * The exact double-precision distance (default KL(query ‖ item)) of every item, by position:
   * what a ranking other than by distance (the posterior or margin rules of retrieve) reports
   * beside its own order.
   */
  scoreAll(q: QueryGaussian, distance: Distance = 'kl'): Float64Array {
    const p = prepareQuery(this.kind, this.dim, q);
    const d = parseDistance(distance, 'distance');
    const out = new Float64Array(this.count);
    if (d === 'kl') {
      for (let i = 0; i < this.count; i++) out[i] = exactKl(this.items, i, p, this.scratch);
    } else {
      const scorer = new DistanceScorer(this.items, d, p);
      for (let i = 0; i < this.count; i++) out[i] = scorer.score(i);
    }
    return out;
  }

  /**
   * Every item's mean and marginal variances (row-major [count, dim], copies): for a full
   * covariance the diagonal of L Lᵀ. Callers that map or interpolate posterior means read them here
   * rather than encoding the split again.
   */
  moments(): { mean: Float32Array; variance: Float32Array } {
    const it = this.items;
    if (it.kind === 'diag') return { mean: it.mean.slice(), variance: it.variance.slice() };
    const { dim, count } = it;
    const variance = new Float32Array(count * dim);
    for (let n = 0; n < count; n++) {
      for (let r = 0; r < dim; r++) {
        let s = 0;
        for (let c = 0; c <= r; c++) s += it.scaleTril[n * dim * dim + r * dim + c] ** 2;
        variance[n * dim + r] = s;
      }
    }
    return { mean: it.mean.slice(), variance };
  }

  /**
   * The items as stored (float32 means, and variances or Cholesky factors), not copied: what the
   * server sends the explorer page, whose own exact search then ranks the same numbers. Read only.
   */
  itemGaussians(): Readonly<ItemGaussians> {
    return this.items;
  }

  /** Writes the index atomically (temporary sibling + rename); format in the comment above. */
  save(path: string): void {
    const items = this.items;
    const spread = items.kind === 'diag' ? items.variance : items.scaleTril;
    const metaBytes = Buffer.from(JSON.stringify(this.meta), 'utf8');
    const perItem = this.labels?.perItem ?? 0;
    const parts: Uint8Array[] = [
      u8(items.mean),
      u8(spread),
      u8(this.ids),
      this.labels ? u8(this.labels.values) : new Uint8Array(0),
      metaBytes,
    ];
    const payloadBytes = parts.reduce((s, p) => s + p.length, 0);
    const file = Buffer.alloc(HEADER_BYTES + payloadBytes);
    file.write(MAGIC, 0, 'latin1');
    file.writeUInt32LE(VERSION, 8);
    file.writeUInt32LE(items.kind === 'diag' ? 1 : 2, 12);
    file.writeUInt32LE(this.dim, 16);
    file.writeUInt32LE(this.count, 20);
    file.writeUInt32LE(perItem, 24);
    file.writeUInt32LE(metaBytes.length, 28);
    let off = HEADER_BYTES;
    for (const p of parts) {
      file.set(p, off);
      off += p.length;
    }
    checksum(file).copy(file, 32);
    writeFileAtomicSync(path, file);
  }

  static load(path: string): KlIndex {
    // Only a regular file, read no further than its header declares (+1 byte to tell a longer file).
    const f = RegularFile.open(path, 'KL index', 'DATA_FORMAT');
    let file: Buffer;
    try {
      file = f.read(0, HEADER_BYTES);
      const bad = (why: string) => new ProbsemError(`${path} is not a valid KL index: ${why}`, 'DATA_FORMAT');
      if (file.length < HEADER_BYTES) throw bad(`the file has ${file.length} bytes, shorter than the ${HEADER_BYTES}-byte header (truncated?)`);
      if (file.toString('latin1', 0, 8) !== MAGIC) throw bad(`bad magic ${JSON.stringify(file.toString('latin1', 0, 8))} (expected "${MAGIC}")`);
      const version = file.readUInt32LE(8);
      if (version !== VERSION) throw bad(`format version ${version}, this probsem reads version ${VERSION}`);
      let h: IndexHeader;
      try {
        h = parseHeader(file);
      } catch (err) {
        throw bad((err as Error).message);
      }
      if (f.size !== h.bytes) {
        throw bad(
          `the header (${h.kind}, dim ${h.dim}, count ${h.count}, ${h.perItem} labels per item, ${h.metaLen} meta bytes) implies ${h.bytes} bytes but the file has ${f.size}` +
            (f.size < h.bytes ? ' (truncated)' : ''),
        );
      }
      file = f.read(0, h.bytes + 1);
      if (file.length !== h.bytes) throw bad(`the file changed size while being read`);
      return KlIndex.fromBytes(file, h, bad);
    } finally {
      f.close();
    }
  }

  private static fromBytes(file: Buffer, h: IndexHeader, bad: (why: string) => ProbsemError): KlIndex {
    const { kind, dim, count, perItem, metaLen, meanN, spreadN } = h;
    if (!checksum(file).equals(file.subarray(32, 64))) throw bad('checksum mismatch (the file is corrupted)');
    let off = HEADER_BYTES;
    const take = <T>(ctor: { new (b: ArrayBuffer): T }, len: number): T => {
      const bytes = new Uint8Array(4 * len);
      bytes.set(file.subarray(off, off + 4 * len));
      off += 4 * len;
      return new ctor(bytes.buffer);
    };
    const mean = take(Float32Array, meanN);
    const spread = take(Float32Array, spreadN);
    const ids = take(Int32Array, count);
    const labelValues = take(Int32Array, count * perItem);
    let meta: Record<string, unknown>;
    try {
      meta = JSON.parse(file.toString('utf8', off, off + metaLen)) as Record<string, unknown>;
    } catch (err) {
      throw bad(`meta is not JSON: ${(err as Error).message}`);
    }
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw bad('meta is not a JSON object');
    const items: ItemGaussians = kind === 'diag' ? { kind, dim, count, mean, variance: spread } : { kind, dim, count, mean, scaleTril: spread };
    try {
      validateItems(items);
      if (perItem > 0) validateLabels(labelValues, meta);
    } catch (err) {
      throw bad((err as Error).message);
    }
    return new KlIndex(items, ids, perItem > 0 ? { perItem, values: labelValues } : null, meta);
  }
}

interface IndexHeader {
  kind: 'diag' | 'full';
  dim: number;
  count: number;
  perItem: number;
  metaLen: number;
  meanN: number;
  spreadN: number;
  /** The file size the fields imply, checked before anything of that size is read. */
  bytes: number;
}

function parseHeader(header: Buffer): IndexHeader {
  const kindCode = header.readUInt32LE(12);
  if (kindCode !== 1 && kindCode !== 2) throw new ProbsemError(`unknown kind code ${kindCode} (1 diag, 2 full)`, 'DATA_FORMAT');
  const kind = kindCode === 1 ? 'diag' : 'full';
  const dim = header.readUInt32LE(16);
  const count = header.readUInt32LE(20);
  const perItem = header.readUInt32LE(24);
  const metaLen = header.readUInt32LE(28);
  if (dim < 1) throw new ProbsemError('dim is 0', 'DATA_FORMAT');
  const meanN = count * dim;
  const spreadN = kind === 'diag' ? count * dim : count * dim * dim;
  return { kind, dim, count, perItem, metaLen, meanN, spreadN, bytes: HEADER_BYTES + 4 * (meanN + spreadN + count + count * perItem) + metaLen };
}

/**
 * Where the meta names the classes (`classNames`, as `probsem index build` records), every label
 * must be a class index: a label outside [0, classes) would print as a bare number, or as nothing.
 */
function validateLabels(values: Int32Array, meta: Record<string, unknown>): void {
  const names = meta.classNames;
  if (names === undefined) return;
  if (!Array.isArray(names) || !names.every((c) => typeof c === 'string')) throw new ProbsemError('meta.classNames must be a list of class names', 'BAD_INPUT');
  const bad = values.findIndex((c) => !(c >= 0 && c < names.length));
  if (bad >= 0) {
    throw new ProbsemError(`label ${values[bad]} (label entry ${bad}) is not a class index in [0, ${names.length})`, 'BAD_INPUT');
  }
}

/**
 * The k smallest values of f(0 … count−1), ties by position, NaN skipped: a max-heap of the best k
 * so far (worst on top), so memory is O(k) whatever the count.
 */
export function topK(count: number, k: number, f: (i: number) => number): { index: number; value: number }[] {
  const hv = new Float64Array(k);
  const hi = new Int32Array(k);
  let size = 0;
  // a worse than b: larger value, or equal value and later position.
  const worse = (va: number, ia: number, vb: number, ib: number) => va > vb || (va === vb && ia > ib);
  for (let i = 0; i < count; i++) {
    const v = f(i);
    if (Number.isNaN(v)) continue;
    if (size < k) {
      let c = size++;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!worse(v, i, hv[p], hi[p])) break;
        hv[c] = hv[p];
        hi[c] = hi[p];
        c = p;
      }
      hv[c] = v;
      hi[c] = i;
    } else if (worse(hv[0], hi[0], v, i)) {
      let c = 0;
      for (;;) {
        const l = 2 * c + 1;
        if (l >= size) break;
        const r = l + 1;
        const m = r < size && worse(hv[r], hi[r], hv[l], hi[l]) ? r : l;
        if (!worse(hv[m], hi[m], v, i)) break;
        hv[c] = hv[m];
        hi[c] = hi[m];
        c = m;
      }
      hv[c] = v;
      hi[c] = i;
    }
  }
  const out = Array.from({ length: size }, (_, t) => ({ index: hi[t], value: hv[t] }));
  return out.sort((a, b) => a.value - b.value || a.index - b.index);
}

/** The reference for any distance: its exact value for every item, in double precision. */
export function bruteForceScores(items: ItemGaussians, q: QueryGaussian, distance: Distance): Float64Array {
  validateItems(items);
  const scorer = new DistanceScorer(items, parseDistance(distance, 'distance'), prepareQuery(items.kind, items.dim, q));
  const out = new Float64Array(items.count);
  for (let i = 0; i < items.count; i++) out[i] = scorer.score(i);
  return out;
}

/** The straightforward reference: KL(q ‖ item i) for every item, in double precision. */
export function bruteForceKl(items: ItemGaussians, q: QueryGaussian): Float64Array {
  validateItems(items);
  const p = prepareQuery(items.kind, items.dim, q);
  const scratch = items.kind === 'full' ? new FullScratch(items.dim) : undefined;
  const out = new Float64Array(items.count);
  for (let i = 0; i < items.count; i++) out[i] = exactKl(items, i, p, scratch);
  return out;
}

/** One distance's rows in kernel memory (buildTable), with the instance's query buffers. */
interface ScanTable {
  kernels: Kernels;
  /** Query rows and heaps, grown as needed. */
  work: { queries: number; m: number; b: Buf; hv: Buf; hi: Buf; hn: Buf } | null;
  /** Second-pass output. */
  collect: Buf | null;
  /** Length of a_i and b. */
  n: number;
  /** Row length in the kernel: n + 1 (a_i and ‖a_i‖). */
  rowLen: number;
  gamma: number;
  aPtr: number;
  /** Constants for the smallest score (c − γ|c|) and the largest (−c − γ|c|). */
  cPtr: { smallest: number; largest: number };
  /** γ |c_i| and ‖a_i‖ (as stored, rounded up), for the upper bounds. */
  errC: Float64Array;
  normA: Float32Array;
}

/** Kernel bytes of a table: rows of n + 1 floats and two constants per item, in blocks of 16. */
function tableBytes(count: number, n: number): number {
  return Math.ceil(count / BLOCK) * BLOCK * (n + 3) * 4;
}

function u8(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function checksum(file: Buffer): Buffer {
  return createHash('sha256').update(file.subarray(0, 32)).update(file.subarray(HEADER_BYTES)).digest();
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
/** The smallest float32 at or above x (Infinity beyond the float32 range). */
function roundUp32(x: number): number {
  const r = Math.fround(x);
  if (r >= x || !Number.isFinite(r)) return r;
  if (r === 0) return x > 0 ? 1.401298464324817e-45 : -0;
  f32[0] = r;
  i32[0] += r > 0 ? 1 : -1;
  return f32[0];
}
