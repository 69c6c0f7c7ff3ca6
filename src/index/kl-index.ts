/**
 * Exact top-k retrieval of item Gaussians by KL(query ‖ item).
 *
 * 2 KL(p ‖ q_i) = S_i − K − log|Σp| with S_i = c_i + ⟨a_i, b_p⟩ (kl-math.ts), so ranking the items
 * for a query is ranking S_i: one pass of n-long dot products. The index keeps the a_i quantised to
 * int16 in the memory of probsem's wasm kernels, and `kl_scan16` (kernels.c) computes for every
 * item a guaranteed lower bound L_i and upper bound U_i of S_i (of −S_i for `largest`) from an
 * exact integer dot product, for up to 64 queries per pass (each block of items is read from
 * memory once and serves all of them). The candidates, every item with L_i ≤ τ where τ is the k-th
 * smallest U, are rescored by the exact double-precision KL (the same function as `bruteForceKl`)
 * and sorted, so the hits and their `kl` values equal the brute force (equal KL values are ordered
 * by item position).
 *
 * Quantisation. Item i's row is stored as x̂_i = round(a_i / s_i) with its own scale
 * s_i ≥ max_j |a_ij| / P (a float32), so |x̂_ij| ≤ P; a query's row ±b as q̂ = round(±b / t),
 * t ≥ max_j |b_j| / R, |q̂_j| ≤ R. P and R (`quantLimits`) satisfy n P R < 2³¹ and P, R ≤ 32767, so
 * the kernel's int32 sum D_i = Σ_j x̂_ij q̂_j (pairs of dimensions per i32x4.dot_i16x8_s lane) and
 * each of its partial sums is at most n P R < 2³¹ in magnitude: it is exact. With the residuals
 * e_i = a_i − s_i x̂_i and f = ±b − t q̂ (computed in double precision at build and query time),
 *
 *     ±⟨a_i, b⟩ = s_i t D_i + t ⟨e_i, q̂⟩ + ⟨a_i, f⟩,   so   |±⟨a_i, b⟩ − s_i t D_i| ≤ ‖e_i‖ ‖t q̂‖ + ‖a_i‖ ‖f‖ =: Q_i
 *
 * (Cauchy–Schwarz twice): per-item factors times per-query ones. Stored per item, float32: s_i;
 * c'_i = ±c_i − γ_c|c_i| rounded down (one per sign); with ê_i = (1 + κ)‖e_i‖ + κ(‖a_i‖ + ‖e_i‖)
 * and r_i = (1 + κ)‖a_i‖ + 2⁻⁵⁰, z_i ≥ ê_i + ρ r_i and m_i ≥ ê_i + r_i, rounded up (κ = γ_c = 2⁻¹⁸,
 * ρ = √n / 2R, about the ratio of the two residual terms). Per query: t, and A ≥ max((1 + κ)‖t q̂‖,
 * B / ρ) with B = (1 + κ)‖f‖ + 2⁻⁵⁰, rounded up, so that E_i := z_i A ≥ ê_i (1 + κ)‖t q̂‖ + r_i B.
 * The kernel computes in float32, and U in double,
 *
 *     v_i = c'_i + fl(D_i) (s_i t),   L_i = v_i − z_i A,   U_i = L_i + 2.001 E_i + 2⁻¹⁵ (|c'_i| + m_i A).
 *
 * Proof that L_i ≤ ±S_i ≤ U_i (dropping the i). Let M = ‖s x̂‖ ‖t q̂‖ ≥ |s t D| and u = 2⁻²⁴. L
 * takes six float32 roundings at most (the conversion of D, three products, a sum and a
 * difference; a fused multiply-add only removes one), each at most u times a value below
 * (1 + 2⁻²⁰)(|c'| + M + E), or 2⁻¹⁴⁹ absolutely (underflow: with s t ≥ 2⁻²⁰⁰ and |D| < 2³¹ that is
 * at most 2⁻¹¹⁸ in all), so |L − (c' + s t D − E)| ≤ 12u (|c'| + M + E) + 2⁻¹¹⁸. Also
 * E ≥ (1 + κ)² ‖e‖ ‖t q̂‖ + κ M + (1 + κ)² ‖a‖ ‖f‖ + 2⁻¹⁰⁰ ≥ (1 + κ)² Q + κ M + 2⁻¹⁰⁰.
 * Lower: ±S − L ≥ (±c − c') + E − Q − 12u (|c'| + M + E) − 2⁻¹¹⁸, where ±c − c' ≥ γ_c |c| ≥ 12u |c'|
 * and E (1 − 12u) − Q ≥ κ (1 − 12u) M + 2⁻¹⁰¹ ≥ 12u M + 2⁻¹⁰¹ (as (1 + κ)² (1 − 12u) ≥ 1), so
 * ±S − L ≥ 2⁻¹⁰¹ − 2⁻¹¹⁸ > 0. Upper: ±S − L ≤ (±c − c') + Q + E + 12u (|c'| + M + E) + 2⁻¹¹⁸, with
 * ±c − c' ≤ 2⁻¹⁶ |c'| and Q ≤ E, which is below 2.001 E + 2⁻¹⁵ (|c'| + M) (0.0009 E ≥ 2⁻¹¹⁰ covers
 * the 2⁻¹¹⁸), and M ≤ (‖a‖ + ‖e‖) ‖t q̂‖ ≤ m A, so ±S ≤ U; U's own double rounding is far inside
 * the 2⁻¹⁵ term. The margins, about 2⁻¹⁹ (|c| + ‖a‖ ‖b‖), also absorb the double-precision
 * rounding of a, b, c, of the residuals and norms, and of the exact distances themselves. Nothing
 * overflows: a query that could bring any of these values near 2¹²⁰ is rescored in full instead
 * (`quantiseQuery`), and a value that does not fit float32 at build time is an error for KL (brute
 * force for the other distances). Padding items have c' = NaN and never pass.
 *
 * Only v is computed for every item and query (a conversion, a product, a multiply-add and a
 * comparison per four items beside the integer dot): a test v ≤ z_max A' + τ' (z_max the largest
 * z of the item's block of 16, A' and τ' a little above A and the threshold τ; kernels.c) passes
 * every item with L ≤ τ, and only the items that pass get L and U, in scalar code.
 *
 * Staged check (KL(query ‖ item) with diagonal items, smallest, two or more queries). Each
 * dimension's share of S, (σq² + μq² − 2 μq μ + μ²)/σ² + log σ² = (σq² + (μq − μ)²)/σ² + log σ²
 * (σq² the query covariance's diagonal entry), is at least 1 + log σq² (a one-dimensional KL is
 * not negative), so S ≥ S_J + Σ_{j ∉ J} (1 + log σq_j²) for the share S_J of the first dimensions
 * J. The KL table stores each row in dimension order (pair p is dimension p's 1/σ², μ/σ²) and
 * each item's share c_J of the constant; after the first 80 % of the pairs the kernel bounds S_J
 * below exactly as L bounds S (the same E covers a partial dot) and skips the other pairs of a
 * block for a query when every item's bound plus that query-only sum (`restBound`) exceeds τ —
 * over nine tenths of the blocks on the benchmark's data. A skipped item has S > τ,
 * and τ only falls, so it is outside the final pool anyway. Single queries scan every pair: they
 * are memory-bound, and the data-dependent branch costs more than it saves.
 *
 * Candidates. Per query the kernel keeps a heap of the k smallest U (τ its top once full, else
 * +∞) and appends every item with L ≤ τ (the current τ, which only falls) to a list; the final
 * pool is the list filtered by L ≤ τ. Every item with ±S ≤ the k-th smallest ±S has L ≤ ±S ≤ τ, so
 * the pool holds the top k and every tie with it. A full list is compacted by the current τ; if
 * that frees too little the list stops and the query is scanned again alone with τ as its fixed
 * threshold and room for what was missed (`candidates`, counted in SCAN_STATS.collectPasses;
 * it happens with thousands of near-ties). On the benchmark's distribution the quantisation error
 * is well below the gaps between the best scores and the pool is about k (1M items, d = 20: ~11).
 *
 * Other distances (`search(q, k, { distance })`, distances.ts) reuse the same scan where they have
 * an inner-product rewrite (rewrites.ts), each with its own table in a kernel instance of its own,
 * built on first use, and rescore by their exact double-precision value; the others are scored by
 * brute force (`scanExact`).
 */
import { createHash } from 'node:crypto';
import { ProbsemError } from '../core/errors.js';
import { RegularFile, writeFileAtomicSync } from '../core/files.js';
import { Kernels } from '../core/wasm/kernels.js';
import { INDEX_BOUNDS, INDEX_ITEMS, SCAN_STATS, SCAN_TUNING } from './internal.js';
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

/** Queries scored per pass over the items (at most). */
const QUERY_CHUNK = 64;
/** Most bytes of heaps and candidate lists one pass may use (fewer queries per pass for a large k). */
const WORK_BYTES = 2 ** 26;
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
    INDEX_BOUNDS.set(this, (q, opts) => this.scanBounds(q, opts));
    const n = vectorLength(items.kind, items.dim);
    const bytes = tableBytes(items.count, n);
    if (bytes > MAX_INDEX_BYTES) {
      throw new ProbsemError(
        `an index of ${items.count} ${items.kind} Gaussians of dimension ${items.dim} needs ${Math.ceil(bytes / 2 ** 20)} MiB of kernel memory (at most ${MAX_INDEX_BYTES / 2 ** 20} MiB)`,
        'TOO_LARGE',
      );
    }
    this.klTable = this.buildTable(Kernels.createSync(), n, (i, row) => itemVector(items, i, row, this.scratch), items.kind === 'diag' ? stagedKl(items) : null);
  }

  /**
   * Lays out one table in kernel memory (module comment): each item's row a_i quantised to int16
   * with its own scale, [block][pair][16 items × 2] (16 items per block), and per item the scale
   * s_i, the constants for either sign, c_i − γ_c|c_i| and −c_i − γ_c|c_i| rounded down, and the
   * error coefficients ê_i, r_i rounded up. Throws a ProbsemError where a value overflows float32.
   */
  private buildTable(kernels: Kernels, n: number, vector: (i: number, row: Float64Array) => number, stage: Stage | null = null): ScanTable {
    const count = this.count;
    const blocks = Math.ceil(count / BLOCK);
    const np = Math.ceil(n / 2);
    const { P, R } = quantLimits(n);
    // A block: np pairs of 16 items × 2 int16 (16 floats' room each), then 16 floats each of s, c
    // (smallest), c (largest), z and m, then the block's largest z and three spare floats.
    const blockFloats = BLOCK * np + 5 * BLOCK + 4 + BLOCK;
    const xBuf = kernels.alloc(blocks * blockFloats);
    const t: ScanTable = { kernels, work: null, n, np, P, R, xPtr: xBuf.ptr, rho: Math.sqrt(n) / (2 * R), stage, maxS: 0, maxC: 0, maxZ: 0, maxM: 0 };
    const heap = kernels.heap();
    const h16 = new Int16Array(kernels.memory.buffer);
    const raw = new Float64Array(n);
    const row = stage ? new Float64Array(n) : raw;
    for (let i = 0; i < count; i++) {
      const c = vector(i, raw);
      if (stage) for (let j = 0; j < n; j++) row[j] = raw[stage.order[j]];
      let max = 0;
      let a2 = 0;
      for (let j = 0; j < n; j++) {
        if (!Number.isFinite(Math.fround(row[j]))) throw new ProbsemError(`item ${i}: its precision (inverse covariance) overflows float32 (a[${j}] = ${row[j]}); variances must be above ~1e-38`, 'BAD_INPUT');
        max = Math.max(max, Math.abs(row[j]));
        a2 += row[j] * row[j];
      }
      const s = Math.max(roundUp32(max / P), MIN_SCALE);
      const block = (xBuf.ptr >> 2) + (i >> 4) * blockFloats;
      const base = 2 * block + (i & 15) * 2;
      let e2 = 0;
      for (let j = 0; j < n; j++) {
        const x = Math.max(-P, Math.min(P, Math.round(row[j] / s)));
        h16[base + (j >> 1) * 2 * BLOCK + (j & 1)] = x;
        const e = row[j] - s * x;
        e2 += e * e;
      }
      const normA = Math.sqrt(a2);
      const normE = Math.sqrt(e2);
      const eHat = roundUp32((1 + KAPPA) * normE + KAPPA * (normA + normE));
      const r = roundUp32((1 + KAPPA) * normA + FLOOR);
      const z = roundUp32(eHat + t.rho * r * (1 + 2 ** -40));
      const m = roundUp32(eHat + r);
      const cS = roundDown32(c - GAMMA_C * Math.abs(c));
      const cL = roundDown32(-c - GAMMA_C * Math.abs(c));
      if (!Number.isFinite(z) || !Number.isFinite(m) || !Number.isFinite(cS) || !Number.isFinite(cL)) {
        throw new ProbsemError(`item ${i}: its precision or constant μᵀΣ⁻¹μ + log|Σ| = ${c} overflows float32`, 'BAD_INPUT');
      }
      const f = block + BLOCK * np + (i & 15);
      heap[f + F.S] = s;
      heap[f + F.C] = cS;
      heap[f + F.CL] = cL;
      heap[f + F.Z] = z;
      heap[f + F.M] = m;
      if (stage) {
        const cJ = stage.partial(i);
        heap[f + F.CJ] = roundDown32(cJ - GAMMA_C * Math.abs(cJ));
      }
      heap[f - (i & 15) + F.ZMAX] = Math.max(heap[f - (i & 15) + F.ZMAX], z);
      t.maxS = Math.max(t.maxS, s);
      t.maxC = Math.max(t.maxC, Math.abs(cS), Math.abs(cL));
      t.maxZ = Math.max(t.maxZ, z);
      t.maxM = Math.max(t.maxM, m);
    }
    for (let i = count; i < blocks * BLOCK; i++) {
      const f = (xBuf.ptr >> 2) + (i >> 4) * blockFloats + BLOCK * np + (i & 15);
      heap[f + F.C] = heap[f + F.CL] = NaN; // padding: its v is NaN, never a candidate
    }
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
    // The heap holds min(k, count) upper bounds per query, the candidate list cap entries (4096:
    // pools are about k, but symmetric KL at d = 64 keeps ~3,000); fewer queries per pass where
    // they are large, so the buffers stay within WORK_BYTES.
    const kk = Math.max(1, Math.min(k, this.count));
    const cap = SCAN_TUNING.cap > 0 ? SCAN_TUNING.cap : Math.max(4096, 2 * kk + 64);
    const perPass = Math.max(1, Math.min(QUERY_CHUNK, Math.floor(WORK_BYTES / (8 * kk + 16 * cap))));
    for (let s = 0; s < scanned.length; s += perPass) {
      const chunk = scanned.slice(s, s + perPass);
      const hits = this.searchChunk(table!, chunk, k, kk, cap, sign, exclude, distance);
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

  /** The table's query-side buffers, grown to hold `queries` queries with heaps of k and lists of cap. */
  private ensureWork(t: ScanTable, queries: number, k: number, cap: number): ScanWork {
    const w: ScanWork = t.work ?? { queries: 0, heap: 0, list: 0, qv: 0, qp: 0, tau: 0, tf: 0, tj: 0, hn: 0, on: 0, ov: 0, hu: 0, oi: 0, ol: 0, ou: 0 };
    const ptr = (floats: number) => t.kernels.alloc(floats).ptr;
    if (w.queries < queries) {
      Object.assign(w, { queries, qv: ptr(queries * t.np), qp: ptr(4 * queries), tau: ptr(queries), tf: ptr(queries), tj: ptr(queries), hn: ptr(queries), on: ptr(queries), ov: ptr(queries) });
    }
    if (w.heap < queries * k) Object.assign(w, { heap: queries * k, hu: ptr(2 * queries * k) });
    if (w.list < queries * cap) Object.assign(w, { list: queries * cap, oi: ptr(queries * cap), ol: ptr(queries * cap), ou: ptr(2 * queries * cap) });
    t.work = w;
    return w;
  }

  /**
   * One kernel pass over query rows (null: not scanned, its threshold −∞ so
   * nothing is kept): per query the final threshold τ (the k-th smallest upper bound; +∞ while
   * fewer than k items) and its candidates, or `missed` > 0 where its list ran out of room.
   */
  private scanPass(t: ScanTable, rows: (QueryRow | null)[], sign: number, exclude: number, k: number, cap: number, tau0: number[]): ScanOut[] {
    const nq = rows.length;
    const w = this.ensureWork(t, nq, k, cap);
    const m = t.kernels;
    const buf = m.memory.buffer;
    const i32 = new Int32Array(buf);
    const f32 = new Float32Array(buf);
    rows.forEach((row, q) => {
      i32.set(row ? row.words : new Int32Array(t.np), (w.qv >> 2) + q * t.np);
      f32.set(row ? [row.t, row.A, row.filterA, row.rest] : [0, 0, 0, 0], (w.qp >> 2) + 4 * q);
      f32[(w.tau >> 2) + q] = row ? tau0[q] : -Infinity;
    });
    for (const p of [w.hn, w.on, w.ov]) i32.fill(0, p >> 2, (p >> 2) + nq);
    if (this.count > 0) {
      m.klScan16({
        x: t.xPtr, count: this.count, np: t.np, cs: sign > 0 ? F.C : F.CL, h1: sign > 0 && t.stage ? t.stage.h1 : 0,
        qv: w.qv, qp: w.qp, queries: nq, exclude, tau: w.tau, tf: w.tf, tj: w.tj, hu: w.hu, hn: w.hn, k, oi: w.oi, ol: w.ol, ou: w.ou, on: w.on, ov: w.ov, cap,
      });
    }
    const f64 = new Float64Array(buf);
    return rows.map((_, q) => {
      const size = i32[(w.on >> 2) + q];
      const heapTop = f64[(w.hu >> 3) + q * k];
      return {
        tau: i32[(w.hn >> 2) + q] === k ? heapTop : Infinity,
        index: i32.slice((w.oi >> 2) + q * cap, (w.oi >> 2) + q * cap + size),
        lower: f32.slice((w.ol >> 2) + q * cap, (w.ol >> 2) + q * cap + size),
        upper: f64.slice((w.ou >> 3) + q * cap, (w.ou >> 3) + q * cap + size),
        missed: i32[(w.ov >> 2) + q],
      };
    });
  }

  /**
   * The candidates of one query row: every item whose lower bound is at most τ, the k-th smallest
   * upper bound (module comment), from a first pass, or from a second pass of that query alone
   * with τ as its starting threshold where the first pass's list ran out of room.
   */
  private candidates(t: ScanTable, row: QueryRow, first: ScanOut, sign: number, exclude: number, k: number): ScanOut {
    if (first.missed === 0) return first;
    SCAN_STATS.collectPasses++;
    const again = this.scanPass(t, [row], sign, exclude, k, first.index.length + first.missed, [roundUp32(first.tau)])[0];
    if (again.missed !== 0 || again.tau !== first.tau) throw new ProbsemError('KL index: the second pass disagrees with the first', 'INTERNAL');
    return again;
  }

  private searchChunk(t: ScanTable, qs: { q: PreparedQuery; b: Float64Array }[], k: number, kk: number, cap: number, sign: number, exclude: number, distance: Distance): SearchHit[][] {
    const rows = qs.map(({ q, b }) => quantiseQuery(t, b, sign, q));
    const out = this.scanPass(t, rows, sign, exclude, kk, cap, rows.map(() => Infinity));
    return qs.map(({ q }, u) => {
      const row = rows[u];
      let pool: ArrayLike<number> | null = null; // null: a value would overflow float32; rescore everything
      if (row) {
        const c = this.candidates(t, row, out[u], sign, exclude, kk);
        pool = c.index.filter((_, v) => c.lower[v] <= c.tau);
      }
      return this.rescore(q, pool, k, sign, exclude, distance);
    });
  }

  /**
   * The kernel's lower and upper bounds of every item's score for one query (sign −1: of minus the
   * score), by item position: what the tests check against the exact scores. Null where the
   * query's values would overflow float32 (such a query is rescored in full).
   */
  private scanBounds(q: QueryGaussian, opts: SearchOptions = {}): { lower: Float64Array; upper: Float64Array } | null {
    const { sign, exclude } = this.checkOptions(1, opts);
    const distance = parseDistance(opts.distance, 'distance');
    const p = prepareQuery(this.kind, this.dim, q);
    let t: ScanTable | null = this.klTable;
    let b = p.b;
    if (distance !== 'kl') {
      const rw = rewriteFor(distance, this.kind, this.dim, isDiagonal(p));
      t = rw ? this.tableFor(distance, rw) : null;
      if (!rw || !t) return null;
      b = new Float64Array(rw.n);
      rw.query(p, b);
    }
    const row = quantiseQuery(t, b, sign, p);
    if (!row || this.count === 0) return null;
    const valid = this.count - (exclude >= 0 ? 1 : 0);
    const o = this.scanPass(t, [row], sign, exclude, this.count, Math.max(1, valid), [Infinity])[0];
    const lower = new Float64Array(this.count).fill(NaN);
    const upper = new Float64Array(this.count).fill(NaN);
    o.index.forEach((i, v) => ((lower[i] = o.lower[v]), (upper[i] = o.upper[v])));
    return { lower, upper };
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

/** One distance's quantised rows in kernel memory (buildTable), with the instance's query buffers. */
interface ScanTable {
  kernels: Kernels;
  /** Query rows, heaps and candidate lists, grown as needed. */
  work: ScanWork | null;
  /** Length of a_i and b. */
  n: number;
  /** Pairs of dimensions per row: ⌈n / 2⌉. */
  np: number;
  /** Largest |x̂| of an item row and |q̂| of a query row (quantLimits). */
  P: number;
  R: number;
  /** Byte offset of the blocks (buildTable has their layout). */
  xPtr: number;
  /** ρ: z = ê + ρ r (module comment). */
  rho: number;
  /** The KL table of diagonal items: rows in dimension order and a check after the first dimensions. */
  stage: Stage | null;
  /** Largest s, |c| (either sign), z and m: a query checks that nothing it computes overflows. */
  maxS: number;
  maxC: number;
  maxZ: number;
  maxM: number;
}

/**
 * Byte offsets of a table's query-side buffers (kl_scan16 in kernels.c): room for `queries`
 * queries, `heap` upper bounds and `list` candidates in all.
 */
interface ScanWork {
  queries: number;
  heap: number;
  list: number;
  qv: number;
  qp: number;
  tau: number;
  tf: number;
  tj: number;
  hu: number;
  hn: number;
  oi: number;
  ol: number;
  ou: number;
  on: number;
  ov: number;
}

/**
 * The staged scan of KL(query ‖ item) for diagonal items (module comment): row position j holds
 * a[order[j]], so that pair p is dimension p's (1/σ², μ/σ²); the kernel checks each block after
 * the first h1 dimensions, whose share of each item's constant is partial(i).
 */
interface Stage {
  order: Int32Array;
  h1: number;
  partial: (i: number) => number;
}

/** The stage of a KL table of diagonal items: the check after 80 % of the dimensions (the fastest of 55–90 % at d = 20 and 64). */
function stagedKl(items: ItemGaussians & { kind: 'diag' }): Stage | null {
  const dim = items.dim;
  const h1 = Math.round(0.8 * dim);
  if (h1 < 1 || h1 >= dim) return null;
  const order = new Int32Array(2 * dim);
  for (let j = 0; j < dim; j++) {
    order[2 * j] = j;
    order[2 * j + 1] = dim + j;
  }
  const partial = (i: number) => {
    let c = 0;
    for (let j = 0; j < h1; j++) {
      const m = items.mean[i * dim + j];
      const v = items.variance[i * dim + j];
      c += (m * m) / v + Math.log(v);
    }
    return c;
  };
  return { order, h1, partial };
}

/**
 * The query-only lower bound of the dimensions after the check, each dimension's share of S being
 * at least 1 + log σp² (module comment), lowered past its own rounding to float32.
 */
function restBound(stage: Stage, q: PreparedQuery): number {
  let sum = 0;
  let mag = 0;
  for (let j = stage.h1; j < q.dim; j++) {
    const v = 1 + Math.log(q.cov[j * q.dim + j]);
    sum += v;
    mag += Math.abs(v);
  }
  return roundDown32(sum - 1e-9 * mag - 1e-30);
}

/** A query row quantised for one table (quantiseQuery). */
interface QueryRow {
  /** ⌈n / 2⌉ words, each two int16 q̂ (dimension 2p in the low half). */
  words: Int32Array;
  t: number;
  A: number;
  /** A (1 + 2⁻¹⁸), rounded up: the kernel's filter. */
  filterA: number;
  /** The staged check's lower bound of the other dimensions (restBound), or 0. */
  rest: number;
}

/** What one scan pass found for one query. */
interface ScanOut {
  tau: number;
  index: Int32Array;
  lower: Float32Array;
  upper: Float64Array;
  missed: number;
}

/** Offsets (floats) of s, c (smallest), c (largest), z, m, the largest z and c_J in a block's floats (F_S … in kernels.c). */
const F = { S: 0, C: 16, CL: 32, Z: 48, M: 64, ZMAX: 80, CJ: 84 } as const;

/** Relative widening of the error terms and of the constants (module comment). */
const KAPPA = 2 ** -18;
const GAMMA_C = 2 ** -18;
/** Floor of the error coefficients r and B: covers float32 underflow, absolute at most ~2⁻¹¹⁸. */
const FLOOR = 2 ** -50;
/** Smallest scale s or t, so that x / s never overflows. */
const MIN_SCALE = 2 ** -100;
/** Largest magnitude a kernel value may reach: far below float32's 2¹²⁸. */
const SAFE = 2 ** 120;

/**
 * Integer ranges for rows of length n: |x̂| ≤ P, |q̂| ≤ R with n P R < 2³¹, so that no int32 sum
 * of the kernel's dot products can overflow (each partial sum is at most n P R in magnitude), and
 * P, R ≤ 32767 (int16). P = R ≈ √(2³¹ / n): 7327 for n = 40, 4096 for n = 128.
 */
export function quantLimits(n: number): { P: number; R: number } {
  const lim = Math.floor((2 ** 31 - 1) / n);
  const P = Math.min(32767, Math.floor(Math.sqrt(lim)));
  return { P, R: Math.min(32767, Math.floor(lim / P)) };
}

/**
 * Query row b (times sign) quantised for a table: t ≥ max|b| / R, q̂ = round(b / t), and the error
 * coefficients A ≥ (1 + κ)‖t q̂‖, B ≥ (1 + κ)‖b − t q̂‖ + 2⁻⁵⁰, rounded up to float32. Null where a
 * kernel value could come near the float32 range (such a query is rescored in full).
 */
function quantiseQuery(t: ScanTable, b0: Float64Array, sign: number, q: PreparedQuery): QueryRow | null {
  const n = t.n;
  const stage = t.stage;
  const b = stage ? Float64Array.from(stage.order, (o) => b0[o]) : b0;
  let max = 0;
  for (let j = 0; j < n; j++) max = Math.max(max, Math.abs(b[j]));
  const scale = Math.max(roundUp32(max / t.R), MIN_SCALE);
  const words = new Int32Array(t.np);
  let tq2 = 0;
  let e2 = 0;
  for (let j = 0; j < n; j++) {
    const v = sign * b[j];
    const x = Math.max(-t.R, Math.min(t.R, Math.round(v / scale)));
    words[j >> 1] |= j & 1 ? x << 16 : x & 0xffff;
    tq2 += (scale * x) ** 2;
    e2 += (v - scale * x) ** 2;
  }
  const B = (1 + KAPPA) * Math.sqrt(e2) + FLOOR;
  const A = roundUp32(Math.max((1 + KAPPA) * Math.sqrt(tq2), (B / t.rho) * (1 + 2 ** -40)));
  const filterA = roundUp32(A * (1 + 2 ** -18));
  const biggest = 4 * (t.maxC + (t.maxM + t.maxZ) * filterA);
  if (!(scale * t.maxS < SAFE && biggest < SAFE)) return null;
  return { words, t: scale, A, filterA, rest: stage && sign > 0 ? restBound(stage, q) : 0 };
}

/** Kernel bytes of a table: per item ⌈n / 2⌉ int16 pairs and six floats, per block of 16 four more (buildTable). */
function tableBytes(count: number, n: number): number {
  return Math.ceil(count / BLOCK) * (BLOCK * (4 * Math.ceil(n / 2) + 24) + 16);
}

function u8(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function checksum(file: Buffer): Buffer {
  return createHash('sha256').update(file.subarray(0, 32)).update(file.subarray(HEADER_BYTES)).digest();
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
/** The largest float32 at or below x (−Infinity beyond the float32 range). */
function roundDown32(x: number): number {
  return -roundUp32(-x);
}

/** The smallest float32 at or above x (Infinity beyond the float32 range). */
function roundUp32(x: number): number {
  const r = Math.fround(x);
  if (r >= x || !Number.isFinite(r)) return r;
  if (r === 0) return x > 0 ? 1.401298464324817e-45 : -0;
  f32[0] = r;
  i32[0] += r > 0 ? 1 : -1;
  return f32[0];
}
