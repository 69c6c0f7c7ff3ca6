import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DISTANCES, DistanceScorer, parseDistance, type Distance } from '../src/index/distances.js';
import { bruteForceScores, KlIndex, type ItemGaussians, type QueryGaussian } from '../src/index/kl-index.js';
import { prepareQuery } from '../src/index/kl-math.js';
import { SCAN_STATS } from '../src/index/internal.js';
import { randomDiagItems, randomFullItems, randomQueries } from '../bench/index.js';

interface FixtureCase {
  kind: 'diag' | 'full';
  dim: number;
  queryMean: number[];
  queryCov: number[];
  itemMean: number[];
  itemVariance?: number[];
  itemScaleTril?: number[];
  expected: Record<Distance, number>;
}

const close = (got: number, want: number, what: string, rel = 1e-9) => assert.ok(Math.abs(got - want) <= rel * Math.max(1, Math.abs(want)), `${what}: got ${got}, want ${want}`);

/** The exact top k of a brute-force score vector, ties by position: what every search must return. */
function reference(scores: Float64Array, k: number, largest = false, exclude = -1): number[] {
  const idx = Array.from(scores.keys()).filter((i) => i !== exclude);
  idx.sort((a, b) => (scores[a] === scores[b] ? a - b : largest ? scores[b] - scores[a] : scores[a] - scores[b]));
  return idx.slice(0, k);
}

/** Diagonal queries: the covariance of randomQueries with its off-diagonal entries dropped. */
function diagonalOf(q: QueryGaussian, dim: number): QueryGaussian {
  return { mean: q.mean, covariance: Float64Array.from({ length: dim * dim }, (_, t) => (t % (dim + 1) === 0 ? q.covariance[t] : 0)) };
}

/** The same diagonal Gaussians as full ones with factor diag(σ): sends them through the full-covariance formulas. */
function asFull(items: ItemGaussians & { kind: 'diag' }): ItemGaussians {
  const { dim, count } = items;
  const scaleTril = new Float32Array(count * dim * dim);
  for (let i = 0; i < count; i++) for (let j = 0; j < dim; j++) scaleTril[i * dim * dim + j * dim + j] = Math.sqrt(items.variance[i * dim + j]);
  return { kind: 'full', dim, count, mean: items.mean, scaleTril };
}

test('every distance matches the torch.distributions fixture (KL by kl_divergence, the rest by torch tensor algebra)', () => {
  const fx = JSON.parse(readFileSync(new URL('./fixtures/distances-torch.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };
  assert.ok(fx.cases.some((c) => c.kind === 'diag') && fx.cases.some((c) => c.kind === 'full'));
  for (const [n, c] of fx.cases.entries()) {
    const items: ItemGaussians =
      c.kind === 'diag'
        ? { kind: 'diag', dim: c.dim, count: 1, mean: Float32Array.from(c.itemMean), variance: Float32Array.from(c.itemVariance!) }
        : { kind: 'full', dim: c.dim, count: 1, mean: Float32Array.from(c.itemMean), scaleTril: Float32Array.from(c.itemScaleTril!) };
    // The fixture's item values are float32 already: the conversion is exact.
    assert.deepEqual(Array.from(items.mean), c.itemMean);
    for (const d of DISTANCES) {
      const got = bruteForceScores(items, { mean: c.queryMean, covariance: c.queryCov }, d)[0];
      // The matrix square roots of w2 go through eigenvalues of a Gram matrix: a looser tolerance.
      close(got, c.expected[d], `case ${n} (${c.kind}) ${d}`, d === 'w2' ? 1e-6 : 1e-9);
    }
  }
});

test('one-dimensional values by hand', () => {
  // q = N(0, 1), x = N(2, 4): d = 2.
  const items: ItemGaussians = { kind: 'diag', dim: 1, count: 1, mean: Float32Array.of(2), variance: Float32Array.of(4) };
  const q = { mean: [0], covariance: [1] };
  const want: Record<Distance, number> = {
    kl: 0.5 * (1 / 4 + 4 / 4 - 1 + Math.log(4)),
    'kl-reverse': 0.5 * (4 + 4 - 1 - Math.log(4)),
    'kl-sym': 0.5 * (1 / 4 + 4 / 4 - 1 + Math.log(4)) + 0.5 * (4 + 4 - 1 - Math.log(4)),
    bhattacharyya: 4 / (8 * 2.5) + 0.5 * Math.log(2.5 / Math.sqrt(4)),
    w2: 4 + (2 - 1) ** 2,
    elk: 0.5 * (Math.log(2 * Math.PI * 5) + 4 / 5),
    csd: 4 + 1 + 4,
  };
  for (const d of DISTANCES) close(bruteForceScores(items, q, d)[0], want[d], d, 1e-12);
});

test('the diagonal and the full-covariance formulas agree on diagonal Gaussians', () => {
  const dim = 6;
  const items = randomDiagItems(40, dim, 3);
  // σ a multiple of 1/64: σ² is exact in float32, so the two forms hold the same Gaussians.
  items.variance.forEach((v, t) => (items.variance[t] = (Math.max(1, Math.round(64 * Math.sqrt(v))) / 64) ** 2));
  const full = asFull(items);
  for (const q of randomQueries(3, dim, 4).map((q) => diagonalOf(q, dim))) {
    for (const d of DISTANCES) {
      const a = bruteForceScores(items, q, d);
      const b = bruteForceScores(full, q, d);
      for (let i = 0; i < a.length; i++) close(a[i], b[i], `${d} item ${i}`, d === 'w2' ? 1e-7 : 1e-9);
    }
  }
});

test('searches by every distance equal brute force: diagonal and full items, smallest and largest, exclude', () => {
  const cases: [string, ItemGaussians, QueryGaussian[]][] = [
    ['diag, diagonal queries', randomDiagItems(700, 8, 11), randomQueries(4, 8, 12).map((q) => diagonalOf(q, 8))],
    ['diag, full queries', randomDiagItems(300, 5, 13), randomQueries(2, 5, 14)],
    ['full', randomFullItems(300, 5, 15), randomQueries(3, 5, 16)],
  ];
  for (const [name, items, queries] of cases) {
    const index = KlIndex.build(items);
    for (const d of DISTANCES) {
      const batch = index.searchBatch(queries, 7, { distance: d });
      queries.forEach((q, n) => {
        const scores = bruteForceScores(items, q, d);
        assert.deepEqual(batch[n].map((h) => h.index), reference(scores, 7), `${name} ${d} query ${n}`);
        for (const h of batch[n]) assert.equal(h.score, scores[h.index]);
        const far = index.search(q, 5, { distance: d, largest: true, exclude: 3 });
        assert.deepEqual(far.map((h) => h.index), reference(scores, 5, true, 3), `${name} ${d} largest`);
      });
    }
  }
});

test('hits carry KL(query ‖ item) whatever the distance, and kl equals score for the default', () => {
  const items = randomDiagItems(200, 4, 21);
  const q = diagonalOf(randomQueries(1, 4, 22)[0], 4);
  const index = KlIndex.build(items);
  const kl = bruteForceScores(items, q, 'kl');
  for (const h of index.search(q, 5, { distance: 'bhattacharyya' })) assert.equal(h.kl, kl[h.index]);
  for (const h of index.search(q, 5)) assert.equal(h.kl, h.score);
  const viaScorer = new DistanceScorer(items, 'kl', prepareQuery('diag', 4, q));
  assert.equal(viaScorer.score(0), kl[0]);
});

test('ties are ordered by position; k beyond the count returns every item', () => {
  const dim = 3;
  const mean = new Float32Array(5 * dim);
  const variance = new Float32Array(5 * dim).fill(0.5);
  const index = KlIndex.build({ kind: 'diag', dim, count: 5, mean, variance });
  const q = { mean: [1, 0, 0], covariance: [1, 0, 0, 0, 1, 0, 0, 0, 1] };
  for (const d of DISTANCES) assert.deepEqual(index.search(q, 9, { distance: d }).map((h) => h.index), [0, 1, 2, 3, 4], d);
});

test('an unknown distance is refused with the list of names', () => {
  assert.throws(() => parseDistance('hellinger'), /--distance must be one of kl, kl-reverse, kl-sym, bhattacharyya, w2, elk, csd/);
  const index = KlIndex.build(randomDiagItems(10, 2, 1));
  assert.throws(() => index.search({ mean: [0, 0], covariance: [1, 0, 0, 1] }, 3, { distance: 'cosine' as Distance }), /distance must be one of/);
});

test('distances with an inner-product rewrite are answered by the quantised scan and a small rescored pool; the rest by brute force', () => {
  const dim = 6;
  const items = randomDiagItems(2000, dim, 31);
  const index = KlIndex.build(items);
  const q = diagonalOf(randomQueries(1, dim, 32)[0], dim);
  const viaScan: Distance[] = ['kl', 'kl-reverse', 'kl-sym', 'w2', 'csd'];
  for (const d of DISTANCES) {
    const before = { ...SCAN_STATS };
    const hits = index.search(q, 10, { distance: d });
    assert.deepEqual(hits.map((h) => h.index), reference(bruteForceScores(items, q, d), 10), d);
    const full = SCAN_STATS.fullRescans - before.fullRescans;
    if (viaScan.includes(d)) {
      assert.equal(full, 0, `${d}: no full rescan`);
      assert.ok(SCAN_STATS.rescored - before.rescored < 200, `${d}: ${SCAN_STATS.rescored - before.rescored} rescored`);
    } else {
      assert.equal(full, 1, `${d}: brute force`);
    }
  }
  // A query with off-diagonal covariance: KL(x ‖ q) and W2 need K² item features, so brute force; CSD still scans.
  const general = randomQueries(1, dim, 33)[0];
  for (const [d, scans] of [['kl-reverse', false], ['w2', false], ['csd', true]] as [Distance, boolean][]) {
    const before = SCAN_STATS.fullRescans;
    assert.deepEqual(index.search(general, 10, { distance: d }).map((h) => h.index), reference(bruteForceScores(items, general, d), 10), d);
    assert.equal(SCAN_STATS.fullRescans - before, scans ? 0 : 1, d);
  }
  // Full-covariance items: KL(x ‖ q), symmetric KL and CSD scan whatever the query; the others are brute force.
  const fullItems = randomFullItems(800, 4, 34);
  const fullIndex = KlIndex.build(fullItems);
  for (const q of randomQueries(2, 4, 35)) {
    for (const d of DISTANCES) {
      const before = { ...SCAN_STATS };
      assert.deepEqual(fullIndex.search(q, 10, { distance: d }).map((h) => h.index), reference(bruteForceScores(fullItems, q, d), 10), `full ${d}`);
      const scans = ['kl', 'kl-reverse', 'kl-sym', 'csd'].includes(d);
      assert.equal(SCAN_STATS.fullRescans - before.fullRescans, scans ? 0 : 1, `full ${d}`);
      if (scans) assert.ok(SCAN_STATS.rescored - before.rescored < 200, `full ${d}: ${SCAN_STATS.rescored - before.rescored} rescored`);
    }
  }
});

test('the scan stays exact on near-ties: clustered items, large k, smallest and largest', () => {
  const dim = 4;
  const items = randomDiagItems(600, dim, 41);
  // Means within 1e-3 of each other and variances within 1 %: scores differ in their last digits.
  items.mean.forEach((m, t) => (items.mean[t] = 0.5 + 1e-3 * m));
  items.variance.forEach((v, t) => (items.variance[t] = 0.3 * (1 + 0.01 * v)));
  const index = KlIndex.build(items);
  const q = diagonalOf(randomQueries(1, dim, 42)[0], dim);
  for (const d of ['kl-reverse', 'kl-sym', 'w2', 'csd'] as Distance[]) {
    const scores = bruteForceScores(items, q, d);
    assert.deepEqual(index.search(q, 60, { distance: d }).map((h) => h.index), reference(scores, 60), `${d} smallest`);
    assert.deepEqual(index.search(q, 60, { distance: d, largest: true }).map((h) => h.index), reference(scores, 60, true), `${d} largest`);
  }
});
