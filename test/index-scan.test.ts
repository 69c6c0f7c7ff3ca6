/**
 * The index's quantised scan (kl-index.ts, kl_scan16 in kernels.c): its per-item bounds hold
 * against the exact scores, its integer sums cannot overflow, and its hits equal the brute force
 * for every distance it scans, both signs, exclude, batches of 1 to 130 queries, ties, adversarial
 * dynamic range, overflowing candidate lists and queries too large for float32.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/core/random.js';
import type { Distance } from '../src/index/distances.js';
import { INDEX_BOUNDS, INDEX_ITEMS, SCAN_STATS, SCAN_TUNING } from '../src/index/internal.js';
import { bruteForceScores, KlIndex, quantLimits, type ItemGaussians, type QueryGaussian, type SearchOptions } from '../src/index/kl-index.js';
import { itemVector, prepareQuery, vectorLength } from '../src/index/kl-math.js';
import { isDiagonal, rewriteFor } from '../src/index/rewrites.js';
import { randomDiagItems, randomFullItems, randomQueries, topK } from '../bench/index.js';

/** Distances the scan answers: for diagonal items (diagonal queries) and for full items (any query). */
const SCANNED_DIAG: Distance[] = ['kl', 'kl-reverse', 'kl-sym', 'w2', 'csd'];
const SCANNED_FULL: Distance[] = ['kl', 'kl-reverse', 'kl-sym', 'csd'];

function diagonalOf(q: QueryGaussian, dim: number): QueryGaussian {
  return { mean: q.mean, covariance: Float64Array.from({ length: dim * dim }, (_, t) => (t % (dim + 1) === 0 ? q.covariance[t] : 0)) };
}

/** Diagonal Gaussians whose variances span 1e-6 … 1e6 (log-uniform) and means spread over ±1e3. */
function wideDiagItems(count: number, dim: number, seed: number): ItemGaussians & { kind: 'diag' } {
  const rng = Rng.for(seed, 'wide-diag');
  const mean = Float32Array.from({ length: count * dim }, () => rng.normal() * 10 ** (3 * rng.uniform()));
  const variance = Float32Array.from({ length: count * dim }, () => 10 ** (12 * rng.uniform() - 6));
  return { kind: 'diag', dim, count, mean, variance };
}

/** Full Gaussians whose factor's diagonal spans 1e-3 … 1e3 (variances 1e-6 … 1e6). */
function wideFullItems(count: number, dim: number, seed: number): ItemGaussians & { kind: 'full' } {
  const rng = Rng.for(seed, 'wide-full');
  const mean = Float32Array.from({ length: count * dim }, () => rng.normal() * 10 ** (2 * rng.uniform()));
  const scaleTril = new Float32Array(count * dim * dim);
  for (let i = 0; i < count; i++) {
    for (let r = 0; r < dim; r++) {
      const d = 10 ** (6 * rng.uniform() - 3);
      scaleTril[i * dim * dim + r * dim + r] = d;
      for (let c = 0; c < r; c++) scaleTril[i * dim * dim + r * dim + c] = 0.3 * d * rng.normal();
    }
  }
  return { kind: 'full', dim, count, mean, scaleTril };
}

/** Queries with variances spanning 1e-4 … 1e4 (diagonal unless `full`). */
function wideQueries(count: number, dim: number, seed: number, full = false): QueryGaussian[] {
  const rng = Rng.for(seed, 'wide-queries');
  return Array.from({ length: count }, () => {
    const mean = Float64Array.from({ length: dim }, () => rng.normal() * 10 ** (2 * rng.uniform()));
    const cov = new Float64Array(dim * dim);
    const u = Float64Array.from({ length: dim }, () => (full ? 0.3 * rng.normal() : 0));
    for (let r = 0; r < dim; r++) {
      for (let c = 0; c < dim; c++) cov[r * dim + c] = u[r] * u[c];
      cov[r * dim + r] += 10 ** (8 * rng.uniform() - 4);
    }
    return { mean, covariance: cov };
  });
}

/**
 * Every item's score by its rewrite, c + ⟨a, b⟩, summed in double precision, with a bound on that
 * sum's own rounding (what the kernel's bounds must contain).
 */
function rewriteScores(items: ItemGaussians, q: QueryGaussian, distance: Distance): { score: Float64Array; slack: Float64Array } {
  const p = prepareQuery(items.kind, items.dim, q);
  let n = vectorLength(items.kind, items.dim);
  let item = (i: number, a: Float64Array) => itemVector(items, i, a);
  let b = p.b;
  if (distance !== 'kl') {
    const rw = rewriteFor(distance, items.kind, items.dim, isDiagonal(p))!;
    n = rw.n;
    item = (i, a) => rw.item(items, i, a);
    b = new Float64Array(n);
    rw.query(p, b);
  }
  const a = new Float64Array(n);
  const score = new Float64Array(items.count);
  const slack = new Float64Array(items.count);
  for (let i = 0; i < items.count; i++) {
    const c = item(i, a);
    let s = c;
    let mag = Math.abs(c);
    for (let j = 0; j < n; j++) {
      s += a[j] * b[j];
      mag += Math.abs(a[j] * b[j]);
    }
    score[i] = s;
    slack[i] = 1e-12 * mag;
  }
  return { score, slack };
}

/**
 * The kernel's bounds contain every item's exact score (minus it for largest), and they are not
 * vacuous: the widest is a small fraction of the spread of the scores. Returns the largest
 * |score − midpoint| / half-width seen, to show the bounds are approached.
 */
function checkBounds(index: KlIndex, items: ItemGaussians, q: QueryGaussian, distance: Distance, opts: SearchOptions, what: string): number {
  const bounds = INDEX_BOUNDS.get(index)!(q, { ...opts, distance });
  assert.ok(bounds, `${what}: scanned`);
  const { score, slack } = rewriteScores(items, q, distance);
  const sign = opts.largest ? -1 : 1;
  let reach = 0;
  for (let i = 0; i < items.count; i++) {
    const { lower, upper } = { lower: bounds.lower[i], upper: bounds.upper[i] };
    if (i === opts.exclude) {
      assert.ok(Number.isNaN(lower) && Number.isNaN(upper), `${what}: excluded item ${i} has no bounds`);
      continue;
    }
    const s = sign * score[i];
    assert.ok(lower <= s + slack[i], `${what}: item ${i}: lower bound ${lower} above the score ${s}`);
    assert.ok(upper >= s - slack[i], `${what}: item ${i}: upper bound ${upper} below the score ${s}`);
    reach = Math.max(reach, Math.abs(s - (lower + upper) / 2) / ((upper - lower) / 2));
  }
  return reach;
}

function expectExact(index: KlIndex, items: ItemGaussians, qs: QueryGaussian[], k: number, opts: SearchOptions, what: string) {
  const batch = index.searchBatch(qs, k, opts);
  assert.equal(batch.length, qs.length);
  qs.forEach((q, u) => {
    const scores = bruteForceScores(items, q, opts.distance ?? 'kl');
    const want = topK(scores, k, opts.largest, opts.exclude ?? -1);
    assert.deepEqual(batch[u].map((h) => h.index), want, `${what}: query ${u}`);
    batch[u].forEach((h, r) => assert.equal(h.score, scores[want[r]], `${what}: query ${u} rank ${r}`));
  });
}

test('quantisation limits: n P R < 2³¹ and P, R ≤ 32767 for every row length up to 100,000', () => {
  for (let n = 1; n <= 100_000; n++) {
    const { P, R } = quantLimits(n);
    assert.ok(P >= 1 && R >= 1 && P <= 32767 && R <= 32767, `n ${n}: P ${P}, R ${R}`);
    assert.ok(n * P * R <= 2 ** 31 - 1, `n ${n}: ${n} × ${P} × ${R} overflows int32`);
  }
  assert.deepEqual(quantLimits(40), { P: 7327, R: 7327 }); // the benchmark's d = 20
  assert.deepEqual(quantLimits(128), { P: 4095, R: 4097 }); // d = 64
});

test('the largest integer dot the limits allow does not overflow: every x̂ = P against every q̂ = ±R', () => {
  // μ = 1, σ² = 1: a = [1/σ², μ/σ²] is all ones, so every x̂ is P. The query μ = −1/2, σ² = 3/4 has
  // b = [σ² + μ², −2μ] all ones, so every q̂ is R (−R for largest): the dot is ±n P R, the most
  // an int32 sum must hold. A wrapped sum would put the lower bound far above the score.
  for (const dim of [1, 2, 20, 64, 100]) {
    const count = 40;
    const items: ItemGaussians = { kind: 'diag', dim, count, mean: new Float32Array(count * dim).fill(1), variance: new Float32Array(count * dim).fill(1) };
    const index = KlIndex.build(items);
    const q: QueryGaussian = { mean: new Float64Array(dim).fill(-0.5), covariance: Float64Array.from({ length: dim * dim }, (_, t) => (t % (dim + 1) === 0 ? 0.75 : 0)) };
    for (const largest of [false, true]) {
      checkBounds(index, items, q, 'kl', { largest }, `dim ${dim} largest ${largest}`);
      expectExact(index, items, [q], 5, { largest }, `dim ${dim} largest ${largest}`);
    }
  }
});

test('the bounds contain every exact score, for every scanned distance, diagonal and full, both signs, with exclude', () => {
  const cases: { items: ItemGaussians; queries: QueryGaussian[]; distances: Distance[]; label: string }[] = [
    { items: randomDiagItems(700, 6, 1), queries: randomQueries(2, 6, 2).map((q) => diagonalOf(q, 6)), distances: SCANNED_DIAG, label: 'diag' },
    { items: wideDiagItems(700, 5, 3), queries: wideQueries(2, 5, 4), distances: SCANNED_DIAG, label: 'wide diag' },
    { items: randomFullItems(300, 4, 5), queries: randomQueries(2, 4, 6), distances: SCANNED_FULL, label: 'full' },
    { items: wideFullItems(300, 3, 7), queries: wideQueries(2, 3, 8, true), distances: SCANNED_FULL, label: 'wide full' },
  ];
  let reach = 0;
  for (const { items, queries, distances, label } of cases) {
    const index = KlIndex.build(items);
    for (const d of distances) {
      for (const [u, q] of queries.entries()) {
        for (const opts of [{}, { largest: true }, { exclude: 17 }, { largest: true, exclude: 0 }]) {
          reach = Math.max(reach, checkBounds(index, items, q, d, opts, `${label} ${d} query ${u} ${JSON.stringify(opts)}`));
        }
      }
    }
  }
  // The bounds are reached to within a small factor somewhere: they are not padded into vacuity.
  assert.ok(reach > 0.2 && reach <= 1, `largest |score − midpoint| / half-width ${reach}`);
});

test('bounds are tight on the benchmark distribution: a few candidates per query at k = 10', () => {
  const items = randomDiagItems(20_000, 20, 9);
  const index = KlIndex.build(items);
  const qs = randomQueries(20, 20, 10);
  const before = { ...SCAN_STATS };
  expectExact(index, items, qs, 10, {}, 'benchmark distribution');
  const perQuery = (SCAN_STATS.rescored - before.rescored) / qs.length;
  assert.ok(perQuery < 20, `${perQuery} candidates rescored per query`);
  assert.equal(SCAN_STATS.collectPasses - before.collectPasses, 0, 'no second pass');
  assert.equal(SCAN_STATS.fullRescans - before.fullRescans, 0, 'no full rescan');
});

test('hits equal the brute force: every scanned distance, adversarial dynamic range, both signs, exclude, batches of 1 to 130', () => {
  const diag = wideDiagItems(1500, 4, 11);
  const full = wideFullItems(400, 3, 12);
  const diagIndex = KlIndex.build(diag);
  const fullIndex = KlIndex.build(full);
  const diagQs = wideQueries(130, 4, 13);
  const fullQs = wideQueries(130, 3, 14, true);
  const before = { ...SCAN_STATS };
  for (const size of [1, 2, 3, 64, 65, 130]) {
    for (const opts of [{}, { largest: true }, { exclude: 7 }, { largest: true, exclude: 3 }] as SearchOptions[]) {
      for (const d of SCANNED_DIAG) expectExact(diagIndex, diag, diagQs.slice(0, size), 10, { ...opts, distance: d }, `diag ${d} ${size} ${JSON.stringify(opts)}`);
      for (const d of SCANNED_FULL) expectExact(fullIndex, full, fullQs.slice(0, size), 10, { ...opts, distance: d }, `full ${d} ${size} ${JSON.stringify(opts)}`);
    }
  }
  assert.equal(SCAN_STATS.fullRescans - before.fullRescans, 0, 'every query was scanned');
});

test('ties: duplicated items and all-equal items are ordered by position, whatever k', () => {
  const base = randomDiagItems(7, 5, 15);
  const count = 700;
  const mean = Float32Array.from({ length: count * 5 }, (_, t) => base.mean[t % 35]);
  const variance = Float32Array.from({ length: count * 5 }, (_, t) => base.variance[t % 35]);
  const items: ItemGaussians = { kind: 'diag', dim: 5, count, mean, variance };
  const index = KlIndex.build(items);
  const qs = randomQueries(3, 5, 16).map((q) => diagonalOf(q, 5));
  for (const d of SCANNED_DIAG) {
    for (const k of [1, 10, 100, 101, 699, 700]) {
      expectExact(index, items, qs, k, { distance: d }, `ties ${d} k ${k}`);
      expectExact(index, items, qs, k, { distance: d, largest: true, exclude: 100 }, `ties ${d} k ${k} largest`);
    }
  }
  const same: ItemGaussians = { kind: 'diag', dim: 2, count: 50, mean: new Float32Array(100), variance: new Float32Array(100).fill(0.3) };
  expectExact(KlIndex.build(same), same, [{ mean: [0.1, 0], covariance: [1, 0, 0, 1] }], 7, {}, 'all equal');
});

test('zero rows: zero means under csd, a zero-mean query', () => {
  const rng = Rng.for(17, 'zero');
  const count = 300;
  const items: ItemGaussians = { kind: 'diag', dim: 3, count, mean: new Float32Array(count * 3), variance: Float32Array.from({ length: count * 3 }, () => 0.1 + rng.uniform()) };
  const index = KlIndex.build(items);
  const q: QueryGaussian = { mean: [0, 0, 0], covariance: [1, 0, 0, 0, 1, 0, 0, 0, 1] };
  for (const d of SCANNED_DIAG) {
    checkBounds(index, items, q, d, {}, `zero ${d}`);
    expectExact(index, items, [q], 9, { distance: d }, `zero ${d}`);
    expectExact(index, items, [q], 9, { distance: d, largest: true }, `zero ${d} largest`);
  }
});

test('full candidate lists: compaction and a second pass keep the result exact', () => {
  const items = wideDiagItems(2000, 4, 18);
  const index = KlIndex.build(items);
  const qs = wideQueries(70, 4, 19);
  const want = (cap: number, opts: SearchOptions) => {
    SCAN_TUNING.cap = cap;
    try {
      expectExact(index, items, qs, 10, opts, `cap ${cap} ${JSON.stringify(opts)}`);
    } finally {
      SCAN_TUNING.cap = 0;
    }
  };
  for (const cap of [1, 4, 13, 40]) {
    const before = SCAN_STATS.collectPasses;
    want(cap, {});
    want(cap, { largest: true, exclude: 5, distance: 'kl-sym' });
    assert.ok(SCAN_STATS.collectPasses > before, `cap ${cap}: the second pass was exercised`);
  }
});

test('a query whose values would come near the float32 range is rescored in full, exactly', () => {
  const items = randomDiagItems(500, 4, 20);
  const index = KlIndex.build(items);
  // b = [σ² + μ², −2μ] ≈ 1e34: finite in float32, but ‖b‖ times the items' ‖a‖ is beyond 2¹²⁰.
  const q: QueryGaussian = { mean: [1e17, 0, 0, 0], covariance: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] };
  assert.equal(INDEX_BOUNDS.get(index)!(q), null);
  const before = SCAN_STATS.fullRescans;
  expectExact(index, items, [q, randomQueries(1, 4, 21)[0]], 6, {}, 'near overflow');
  assert.equal(SCAN_STATS.fullRescans - before, 1, 'only the large query was rescored in full');
});

test('index files written before the quantised scan load and search exactly; saved again they are the same bytes', () => {
  // Written by probsem 7047b16, whose scan was float32: the format holds the Gaussians only, and
  // the quantised tables are derived on load.
  const dir = mkdtempSync(join(tmpdir(), 'probsem-index-v1-'));
  for (const name of ['klindex-v1-diag.klindex', 'klindex-v1-full.klindex']) {
    const path = join('test/fixtures', name);
    const index = KlIndex.load(path);
    const items = INDEX_ITEMS.get(index)!;
    assert.equal(index.count, name.includes('diag') ? 80 : 40);
    assert.equal(index.meta.written, 'probsem 7047b16 (float32 scan)');
    if (name.includes('diag')) assert.deepEqual(Array.from(index.ids.slice(0, 3)), [1000, 1001, 1002]);
    const qs = randomQueries(5, 3, 503);
    const distances: Distance[] = items.kind === 'diag' ? SCANNED_DIAG : SCANNED_FULL;
    for (const d of distances) {
      const queries = items.kind === 'diag' && d !== 'kl' && d !== 'csd' ? qs.map((q) => diagonalOf(q, 3)) : qs;
      expectExact(index, items, queries, 7, { distance: d }, `${name} ${d}`);
      expectExact(index, items, queries, 7, { distance: d, largest: true, exclude: 2 }, `${name} ${d} largest`);
    }
    const again = join(dir, name);
    index.save(again);
    assert.deepEqual(readFileSync(again), readFileSync(path));
  }
});

test('a large k takes fewer queries per pass (bounded buffers) and the same hits', () => {
  const items = randomDiagItems(40_000, 2, 22);
  const index = KlIndex.build(items);
  const qs = randomQueries(66, 2, 23);
  const k = 30_000;
  const batch = index.searchBatch(qs, k, { largest: true });
  for (const u of [0, 40, 65]) {
    const scores = bruteForceScores(items, qs[u], 'kl');
    assert.deepEqual(batch[u].map((h) => h.index), topK(scores, k, true), `query ${u}`);
  }
  assert.deepEqual(batch[41], index.search(qs[41], k, { largest: true }), 'the second pass of queries');
});

test('the staged check of the KL scan (diagonal items, batches): exact where the last dimensions decide', () => {
  // The check after the first 80 % of the dimensions adds the least the others can contribute,
  // Σ (1 + log σq²), which is negative for small query variances; items differ mostly in the last
  // dimensions, so a check that overestimated that bound would drop true neighbours.
  const dim = 10;
  const rng = Rng.for(24, 'staged');
  const count = 3000;
  const mean = Float32Array.from({ length: count * dim }, (_, t) => (t % dim >= 8 ? 2 * rng.normal() : 0.05 * rng.normal()));
  const variance = Float32Array.from({ length: count * dim }, (_, t) => (t % dim >= 8 ? 10 ** (-3 * rng.uniform()) : 0.5 + 0.1 * rng.uniform()));
  const items: ItemGaussians = { kind: 'diag', dim, count, mean, variance };
  const index = KlIndex.build(items);
  const qs = Array.from({ length: 9 }, () => ({
    mean: Float64Array.from({ length: dim }, (_, j) => (j >= 8 ? 2 * rng.normal() : 0)),
    covariance: Float64Array.from({ length: dim * dim }, (_, t) => (t % (dim + 1) === 0 ? (Math.floor(t / dim) >= 8 ? 1e-3 : 0.5) : 0)),
  }));
  for (const k of [1, 10, 40]) expectExact(index, items, qs, k, {}, `staged k ${k}`);
  expectExact(index, items, qs, 10, { exclude: 4 }, 'staged exclude');
});
