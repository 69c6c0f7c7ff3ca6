import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProbsemError } from '../src/core/errors.js';
import { INDEX_ITEMS, SCAN_STATS, SCAN_TUNING } from '../src/index/internal.js';
import { bruteForceKl, KlIndex, type ItemGaussians, type QueryGaussian, type SearchHit } from '../src/index/kl-index.js';
import { itemVector, prepareQuery, vectorLength } from '../src/index/kl-math.js';
import { randomDiagItems, randomFullItems, randomQueries, topK } from '../bench/index.js';
import { setupBackend } from './helpers.js';
import { datasetHash } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import type { Trainable } from '../src/models/base.js';
import { createModel } from '../src/models/registry.js';
import { saveModel } from '../src/models/persist.js';

/** KL(p ‖ q) from explicit matrices: Gauss–Jordan inverse and LU determinants, in double precision. */
function naiveKl(muP: ArrayLike<number>, covP: ArrayLike<number>, muQ: ArrayLike<number>, covQ: ArrayLike<number>, d: number): number {
  const inv = (m: ArrayLike<number>) => {
    const a = Array.from({ length: d }, (_, r) => [...Array.from({ length: d }, (_, c) => m[r * d + c]), ...Array.from({ length: d }, (_, c) => (r === c ? 1 : 0))]);
    for (let c = 0; c < d; c++) {
      let p = c;
      for (let r = c + 1; r < d; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
      [a[c], a[p]] = [a[p], a[c]];
      const piv = a[c][c];
      for (let j = 0; j < 2 * d; j++) a[c][j] /= piv;
      for (let r = 0; r < d; r++) {
        if (r === c) continue;
        const f = a[r][c];
        for (let j = 0; j < 2 * d; j++) a[r][j] -= f * a[c][j];
      }
    }
    return a.map((row) => row.slice(d));
  };
  const logDet = (m: ArrayLike<number>) => {
    const a = Array.from({ length: d }, (_, r) => Array.from({ length: d }, (_, c) => m[r * d + c]));
    let s = 0;
    for (let c = 0; c < d; c++) {
      let p = c;
      for (let r = c + 1; r < d; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
      [a[c], a[p]] = [a[p], a[c]];
      s += Math.log(Math.abs(a[c][c]));
      for (let r = c + 1; r < d; r++) {
        const f = a[r][c] / a[c][c];
        for (let j = c; j < d; j++) a[r][j] -= f * a[c][j];
      }
    }
    return s;
  };
  const qi = inv(covQ);
  let tr = 0;
  let maha = 0;
  for (let r = 0; r < d; r++) {
    for (let c = 0; c < d; c++) {
      tr += qi[r][c] * covP[c * d + r];
      maha += (muQ[r] - muP[r]) * qi[r][c] * (muQ[c] - muP[c]);
    }
  }
  return 0.5 * (tr + maha - d + logDet(covQ) - logDet(covP));
}

/** Item i's covariance as a dense matrix. */
function itemCov(items: ItemGaussians, i: number): Float64Array {
  const d = items.dim;
  const out = new Float64Array(d * d);
  if (items.kind === 'diag') {
    for (let j = 0; j < d; j++) out[j * d + j] = items.variance[i * d + j];
  } else {
    const l = items.scaleTril.subarray(i * d * d, (i + 1) * d * d);
    for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) for (let k = 0; k <= Math.min(r, c); k++) out[r * d + c] += l[r * d + k] * l[c * d + k];
  }
  return out;
}

function assertRanking(hits: SearchHit[], kl: Float64Array, k: number, opts: { largest?: boolean; exclude?: number } = {}, what = '') {
  const want = topK(kl, k, opts.largest, opts.exclude ?? -1);
  assert.equal(hits.length, want.length, `${what}: number of hits`);
  for (let r = 0; r < want.length; r++) {
    // Ties aside: the same KL at every rank, and the same item unless another has exactly that KL.
    assert.equal(hits[r].kl, kl[want[r]], `${what}: kl at rank ${r}`);
    if (hits[r].index !== want[r]) assert.equal(kl[hits[r].index], kl[want[r]], `${what}: item at rank ${r}`);
  }
}

const throwsCode = (fn: () => unknown, code: string, re: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof ProbsemError && e.code === code && re.test(e.message));

test('the inner-product rewrite matches KL by hand on a 2-D example (diagonal and full items)', () => {
  const q: QueryGaussian = { mean: [1, 0], covariance: [2, 0.5, 0.5, 1] };
  // Diagonal item μ = (0, 1), σ² = (1, 2): tr = 2/1 + 1/2 = 2.5, Mahalanobis = 1/1 + 1/2 = 1.5,
  // log|Σ| = log 2, log|Σp| = log 1.75, so KL = ½ (2.5 + 1.5 − 2 + log 2 − log 1.75) = 1 + ½ log(8/7).
  const diag: ItemGaussians = { kind: 'diag', dim: 2, count: 1, mean: Float32Array.of(0, 1), variance: Float32Array.of(1, 2) };
  const wantDiag = 1 + 0.5 * Math.log(8 / 7);
  const a = new Float64Array(vectorLength('diag', 2));
  const c = itemVector(diag, 0, a);
  assert.deepEqual(Array.from(a), [1, 0.5, 0, 0.5]); // [1/σ², μ/σ²]
  assert.ok(Math.abs(c - (0.5 + Math.log(2))) < 1e-15); // Σ μ²/σ² + Σ log σ²
  const p = prepareQuery('diag', 2, q);
  assert.deepEqual(Array.from(p.b), [3, 1, -2, -0]); // [diag Σp + μp², −2μp]
  const dot = a.reduce((s, v, j) => s + v * p.b[j], 0);
  assert.ok(Math.abs(0.5 * (dot + c - 2 - p.logDet) - wantDiag) < 1e-14);
  assert.ok(Math.abs(bruteForceKl(diag, q)[0] - wantDiag) < 1e-14);
  assert.ok(Math.abs(naiveKl(q.mean, q.covariance, [0, 1], [1, 0, 0, 2], 2) - wantDiag) < 1e-14);

  // Full item L = [[1, 0], [1, 1]]: Σ = [[1, 1], [1, 2]], Σ⁻¹ = [[2, −1], [−1, 1]], |Σ| = 1.
  // tr(Σ⁻¹Σp) = 4 − 1 + 1 = 4, d = (−1, 1): dᵀΣ⁻¹d = 2 + 2 + 1 = 5, so KL = ½ (4 + 5 − 2 − log 1.75).
  const full: ItemGaussians = { kind: 'full', dim: 2, count: 1, mean: Float32Array.of(0, 1), scaleTril: Float32Array.of(1, 0, 1, 1) };
  const wantFull = 0.5 * (7 - Math.log(1.75));
  const af = new Float64Array(vectorLength('full', 2));
  const cf = itemVector(full, 0, af);
  assert.deepEqual(Array.from(af), [2, -2, 1, -1, 1]); // [P11, 2 P12, P22, Pμ]
  assert.ok(Math.abs(cf - 1) < 1e-15); // μᵀPμ + log|Σ|
  const pf = prepareQuery('full', 2, q);
  assert.deepEqual(Array.from(pf.b), [3, 0.5, 1, -2, -0]); // [M11, M12, M22, −2μp], M = Σp + μp μpᵀ
  const dotf = af.reduce((s, v, j) => s + v * pf.b[j], 0);
  assert.ok(Math.abs(0.5 * (dotf + cf - 2 - pf.logDet) - wantFull) < 1e-14);
  assert.ok(Math.abs(bruteForceKl(full, q)[0] - wantFull) < 1e-14);

  // The index reports the same values.
  assert.ok(Math.abs(KlIndex.build(diag).search(q, 1)[0].kl - wantDiag) < 1e-14);
  assert.ok(Math.abs(KlIndex.build(full).search(q, 1)[0].kl - wantFull) < 1e-14);
});

test('the rewrite equals an explicit-matrix KL on random diagonal and full Gaussians (1e-9 relative)', () => {
  for (const [items, seed] of [
    [randomDiagItems(30, 5, 3), 3],
    [randomFullItems(30, 4, 4), 4],
  ] as const) {
    const qs = randomQueries(3, items.dim, seed);
    const n = vectorLength(items.kind, items.dim);
    const a = new Float64Array(n);
    for (const q of qs) {
      const p = prepareQuery(items.kind, items.dim, q);
      const brute = bruteForceKl(items, q);
      for (let i = 0; i < items.count; i++) {
        const c = itemVector(items, i, a);
        const viaDot = 0.5 * (a.reduce((s, v, j) => s + v * p.b[j], 0) + c - items.dim - p.logDet);
        const naive = naiveKl(q.mean, q.covariance, items.mean.subarray(i * items.dim, (i + 1) * items.dim), itemCov(items, i), items.dim);
        assert.ok(Math.abs(viaDot - naive) <= 1e-9 * Math.abs(naive), `${items.kind} item ${i}: ${viaDot} vs ${naive}`);
        assert.ok(Math.abs(brute[i] - naive) <= 1e-9 * Math.abs(naive), `${items.kind} brute ${i}: ${brute[i]} vs ${naive}`);
      }
    }
  }
});

test('search equals the brute-force ranking and KL values on random diagonal and full Gaussians', () => {
  const cases: ItemGaussians[] = [
    randomDiagItems(3000, 1, 10),
    randomDiagItems(3000, 2, 11),
    randomDiagItems(2500, 7, 12),
    randomDiagItems(2000, 20, 13),
    randomFullItems(600, 1, 14),
    randomFullItems(600, 3, 15),
    randomFullItems(400, 6, 16),
  ];
  for (const items of cases) {
    const index = KlIndex.build(items);
    const what = `${items.kind} dim ${items.dim}`;
    for (const [qi, q] of randomQueries(3, items.dim, items.dim * 7 + items.count).entries()) {
      const kl = bruteForceKl(items, q);
      for (const k of [1, 10, 57]) assertRanking(index.search(q, k), kl, k, {}, `${what} query ${qi} k ${k}`);
      // Spot-check the values against the explicit-matrix KL (1e-6 relative).
      const hit = index.search(q, 1)[0];
      const naive = naiveKl(q.mean, q.covariance, items.mean.subarray(hit.index * items.dim, (hit.index + 1) * items.dim), itemCov(items, hit.index), items.dim);
      assert.ok(Math.abs(hit.kl - naive) <= 1e-6 * Math.abs(naive), `${what}: ${hit.kl} vs ${naive}`);
    }
  }
});

test('largest, exclude, ids and k beyond the item count', () => {
  const items = randomDiagItems(1500, 6, 20);
  const ids = Int32Array.from({ length: items.count }, (_, i) => 1000 + 3 * i);
  const index = KlIndex.build(items, { ids });
  const [q] = randomQueries(1, 6, 21);
  const kl = bruteForceKl(items, q);
  const best = index.search(q, 5);
  assert.deepEqual(best.map((h) => h.id), best.map((h) => 1000 + 3 * h.index));
  assertRanking(index.search(q, 12, { largest: true }), kl, 12, { largest: true }, 'largest');
  assert.ok(index.search(q, 3, { largest: true })[0].kl >= index.search(q, 3, { largest: true })[2].kl);
  assertRanking(index.search(q, 8, { exclude: best[0].index }), kl, 8, { exclude: best[0].index }, 'exclude');
  assert.ok(!index.search(q, 8, { exclude: best[0].index }).some((h) => h.index === best[0].index));
  assertRanking(index.search(q, 8, { exclude: best[0].index, largest: true }), kl, 8, { exclude: best[0].index, largest: true }, 'both');
  // k ≥ count: every item, sorted.
  const small = KlIndex.build(randomDiagItems(7, 3, 22));
  const [q3] = randomQueries(1, 3, 23);
  assert.equal(small.search(q3, 100).length, 7);
  assert.equal(small.search(q3, 1e9).length, 7);
  assert.equal(small.search(q3, 100, { exclude: 2 }).length, 6);
  assertRanking(small.search(q3, 7), bruteForceKl(randomDiagItems(7, 3, 22), q3), 7);
  // An empty index answers nothing.
  assert.deepEqual(KlIndex.build({ kind: 'diag', dim: 3, count: 0, mean: new Float32Array(0), variance: new Float32Array(0) }).search(q3, 3), []);
});

test('batched search equals single searches (more queries than one pass takes)', () => {
  for (const items of [randomDiagItems(2000, 9, 30), randomFullItems(300, 4, 31)]) {
    const index = KlIndex.build(items);
    const qs = randomQueries(70, items.dim, 32);
    for (const opts of [{}, { largest: true, exclude: 5 }]) {
      const batch = index.searchBatch(qs, 10, opts);
      assert.equal(batch.length, qs.length);
      qs.forEach((q, i) => assert.deepEqual(batch[i], index.search(q, 10, opts), `${items.kind} query ${i}`));
    }
  }
});

test('near-ties under float32 cancellation: a second pass keeps the result exact', () => {
  // Items clustered far from the origin with small variances: c_i ~ 1e6 while the KL differences
  // between items are far below float32 resolution of the scores, so the first pass cannot separate them.
  const count = 3000;
  const dim = 4;
  const base = randomDiagItems(count, dim, 40);
  const mean = Float32Array.from(base.mean, (v) => 100 + 1e-3 * v);
  const variance = Float32Array.from(base.variance, (v) => 0.01 + 0.001 * v);
  const items: ItemGaussians = { kind: 'diag', dim, count, mean, variance };
  const index = KlIndex.build(items);
  const before = SCAN_STATS.collectPasses;
  SCAN_TUNING.cap = 256; // candidate lists shorter than the near-tied pool: the second pass runs
  try {
    for (const q of randomQueries(3, dim, 41)) {
      const near: QueryGaussian = { mean: Array.from(q.mean, (v) => 100 + 1e-3 * v), covariance: Array.from(q.covariance, (v) => 0.01 * v) };
      const kl = bruteForceKl(items, near);
      assertRanking(index.search(near, 10), kl, 10, {}, 'near-ties');
      assertRanking(index.search(near, 10, { largest: true }), kl, 10, { largest: true }, 'near-ties largest');
    }
  } finally {
    SCAN_TUNING.cap = 0;
  }
  assert.ok(SCAN_STATS.collectPasses > before, 'the second pass was exercised');
  // A query so far away that its float32 query vector overflows: everything is rescored exactly.
  const far: QueryGaussian = { mean: [1e20, 0, 0, 0], covariance: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] };
  const fullBefore = SCAN_STATS.fullRescans;
  assertRanking(index.search(far, 5), bruteForceKl(items, far), 5, {}, 'overflow');
  assert.equal(SCAN_STATS.fullRescans, fullBefore + 1);
});

test('save and load: identical results, ids, labels and meta; the same bytes when saved again', () => {
  const dir = mkdtempSync(join(tmpdir(), 'probsem-index-'));
  for (const items of [randomDiagItems(700, 5, 50), randomFullItems(200, 3, 51)]) {
    const ids = Int32Array.from({ length: items.count }, (_, i) => i * 7 - 3);
    const labels = { perItem: 2, values: Int32Array.from({ length: items.count * 2 }, (_, i) => i % 10) };
    const index = KlIndex.build(items, { ids, labels, meta: { model: 'pse', run: 'x/y', latent: items.dim } });
    const path = join(dir, `${items.kind}.klindex`);
    index.save(path);
    const loaded = KlIndex.load(path);
    assert.equal(loaded.kind, items.kind);
    assert.equal(loaded.dim, items.dim);
    assert.equal(loaded.count, items.count);
    assert.deepEqual(loaded.ids, ids);
    assert.deepEqual(loaded.labels, labels);
    assert.deepEqual(loaded.meta, { model: 'pse', run: 'x/y', latent: items.dim });
    const qs = randomQueries(5, items.dim, 52);
    assert.deepEqual(loaded.searchBatch(qs, 9), index.searchBatch(qs, 9));
    assert.deepEqual(loaded.search(qs[0], 4, { largest: true, exclude: 1 }), index.search(qs[0], 4, { largest: true, exclude: 1 }));
    const again = join(dir, `${items.kind}-again.klindex`);
    loaded.save(again);
    assert.deepEqual(readFileSync(again), readFileSync(path));
  }
});

test('a damaged index file gives a clear error naming the file and the problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'probsem-index-bad-'));
  const path = join(dir, 'good.klindex');
  KlIndex.build(randomDiagItems(100, 4, 60), { meta: { a: 1 } }).save(path);
  const good = readFileSync(path);
  const variant = (name: string, bytes: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  const flipped = Buffer.from(good);
  flipped[64 + 123] ^= 0x10;
  const p1 = variant('flipped.klindex', flipped);
  throwsCode(() => KlIndex.load(p1), 'DATA_FORMAT', new RegExp(`${p1.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*checksum`));
  const p2 = variant('truncated.klindex', good.subarray(0, good.length - 10));
  throwsCode(() => KlIndex.load(p2), 'DATA_FORMAT', /truncated\.klindex.*file has \d+.*\(truncated\)/);
  const p3 = variant('short.klindex', good.subarray(0, 20));
  throwsCode(() => KlIndex.load(p3), 'DATA_FORMAT', /short\.klindex.*header/);
  const magic = Buffer.from(good);
  magic.write('NOTANIDX', 0, 'latin1');
  throwsCode(() => KlIndex.load(variant('magic.klindex', magic)), 'DATA_FORMAT', /magic\.klindex.*bad magic/);
  const dim = Buffer.from(good);
  dim.writeUInt32LE(5, 16);
  throwsCode(() => KlIndex.load(variant('dim.klindex', dim)), 'DATA_FORMAT', /dim\.klindex.*dim 5.*implies/);
  const version = Buffer.from(good);
  version.writeUInt32LE(9, 8);
  throwsCode(() => KlIndex.load(variant('version.klindex', version)), 'DATA_FORMAT', /version 9/);
  const header = Buffer.from(good);
  header.writeUInt32LE(1, 24); // labels per item: sizes then disagree
  throwsCode(() => KlIndex.load(variant('labels.klindex', header)), 'DATA_FORMAT', /implies/);
  throwsCode(() => KlIndex.load(join(dir, 'missing.klindex')), 'IO', /missing\.klindex.*ENOENT/);
});

test('bad inputs: dimension mismatch, k, exclude, NaN and non-positive-definite inputs', () => {
  const items = randomDiagItems(50, 4, 70);
  const index = KlIndex.build(items);
  const [q] = randomQueries(1, 4, 71);
  const [q3] = randomQueries(1, 3, 72);
  throwsCode(() => index.search(q3, 5), 'SHAPE', /dimension 3.*index has dimension 4/);
  throwsCode(() => index.searchBatch([q, q3], 5), 'SHAPE', /query 1 has dimension 3/);
  throwsCode(() => index.search({ mean: q.mean, covariance: [1, 0, 0, 1] }, 5), 'SHAPE', /covariance has 4 values, expected 4 × 4/);
  throwsCode(() => bruteForceKl(items, q3), 'SHAPE', /dimension 3/);
  for (const k of [0, -1, 2.5, NaN]) throwsCode(() => index.search(q, k), 'BAD_OPTION', /k must be a positive integer/);
  throwsCode(() => index.search(q, 3, { exclude: 50 }), 'BAD_OPTION', /exclude/);
  throwsCode(() => index.search(q, 3, { exclude: 1.5 }), 'BAD_OPTION', /exclude/);
  const nanMean = { mean: Array.from(q.mean, (v, j) => (j === 2 ? NaN : v)), covariance: q.covariance };
  throwsCode(() => index.search(nanMean, 3), 'BAD_INPUT', /mean\[2\] is NaN/);
  const nanCov = { mean: q.mean, covariance: Array.from(q.covariance, (v, j) => (j === 5 ? NaN : v)) };
  throwsCode(() => index.search(nanCov, 3), 'BAD_INPUT', /covariance\[1\]\[1\] is NaN/);
  throwsCode(() => index.search({ mean: q.mean, covariance: [1, 2, 0, 0, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] }, 3), 'BAD_INPUT', /not positive definite/);
  throwsCode(() => index.search({ mean: q.mean, covariance: [1, 0.5, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1] }, 3), 'BAD_INPUT', /not symmetric/);
  const badMean = items.mean.slice();
  badMean[13] = NaN;
  throwsCode(() => KlIndex.build({ ...items, mean: badMean }), 'BAD_INPUT', /item 3: mean\[1\] is NaN/);
  const badVar = items.variance.slice();
  badVar[6] = 0;
  throwsCode(() => KlIndex.build({ ...items, variance: badVar }), 'BAD_INPUT', /item 1: variance\[2\] is 0/);
  throwsCode(() => bruteForceKl({ ...items, variance: badVar }, q), 'BAD_INPUT', /variance/);
  throwsCode(() => KlIndex.build({ ...items, count: 51 }), 'SHAPE', /items\.mean has 200 values/);
  const full = randomFullItems(3, 2, 73);
  const badL = full.scaleTril.slice();
  badL[4 + 3] = -1;
  throwsCode(() => KlIndex.build({ ...full, scaleTril: badL }), 'BAD_INPUT', /item 1: scaleTril\[1\]\[1\].*positive/);
  throwsCode(() => KlIndex.build(items, { ids: new Int32Array(3) }), 'SHAPE', /ids has 3 entries/);
  throwsCode(() => KlIndex.build(items, { labels: { perItem: 2, values: new Int32Array(5) } }), 'SHAPE', /labels\.values has 5/);
});

/** The file's checksum recomputed after an edit, as a careful forger would. */
function resign(file: Buffer): Buffer {
  createHash('sha256').update(file.subarray(0, 32)).update(file.subarray(64)).digest().copy(file, 32);
  return file;
}

test('labels must be class indices: a label of -5 with a recomputed checksum is refused at load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'probsem-index-labels-'));
  const path = join(dir, 'l.klindex');
  const items = randomDiagItems(6, 2, 70);
  const labels = { perItem: 1, values: Int32Array.from([0, 1, 2, 0, 1, 2]) };
  KlIndex.build(items, { labels, meta: { classNames: ['a', 'b', 'c'] } }).save(path);
  assert.deepEqual(Array.from(KlIndex.load(path).labels!.values), [0, 1, 2, 0, 1, 2]);
  const file = readFileSync(path);
  const at = 64 + 4 * (6 * 2 + 6 * 2 + 6) + 4 * 4; // mean, variance, ids, then the fifth label
  for (const bad of [-5, 3]) {
    const edited = Buffer.from(file);
    edited.writeInt32LE(bad, at);
    writeFileSync(path, resign(edited));
    throwsCode(() => KlIndex.load(path), 'DATA_FORMAT', new RegExp(`l\\.klindex is not a valid KL index: label ${bad} \\(label entry 4\\) is not a class index in \\[0, 3\\)`));
  }
  throwsCode(() => KlIndex.build(items, { labels: { perItem: 1, values: Int32Array.from([0, 1, 2, 0, -5, 2]) }, meta: { classNames: ['a', 'b', 'c'] } }), 'BAD_INPUT', /label -5/);
  // Without a class list the labels are the caller's own integers.
  assert.doesNotThrow(() => KlIndex.build(items, { labels: { perItem: 1, values: Int32Array.from([0, 1, 2, 0, -5, 2]) } }));
});

test('an index path that is a FIFO, a directory or /dev/zero is refused without reading it', { timeout: 30_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'probsem-index-odd-'));
  const fifo = join(dir, 'fifo.klindex');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  throwsCode(() => KlIndex.load(fifo), 'DATA_FORMAT', /KL index .*fifo\.klindex is a FIFO, not a regular file/);
  throwsCode(() => KlIndex.load(dir), 'DATA_FORMAT', /is a directory, not a regular file/);
  const zero = join(dir, 'zero.klindex');
  symlinkSync('/dev/zero', zero);
  throwsCode(() => KlIndex.load(zero), 'DATA_FORMAT', /zero\.klindex is a character device, not a regular file/);
});

test('index query refuses a run retrained in place since the index was built, naming both hashes', async () => {
  await setupBackend();
  const dir = mkdtempSync(join(tmpdir(), 'probsem-index-stale-'));
  const run = join(dir, 'run');
  const idx = join(dir, 'run.klindex');
  const ds = await loadDataset('fashion-mnist-subset');
  const save = (seed: number) => {
    const m = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, seed) as Trainable & { config: object };
    const dataset = { name: ds.name, source: ds.source, hash: datasetHash(ds), height: 28, width: 28, trainCount: ds.train.count };
    return saveModel(run, m, { classNames: ds.classNames, dataset });
  };
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  const first = save(1);
  let r = cli('index', 'build', '--run', run, '--out', idx);
  assert.equal(r.status, 0, r.stderr);
  const recorded = KlIndex.load(idx).meta;
  assert.equal(recorded.runWeightsSha256, first.weights.sha256);
  assert.equal(recorded.runContentSha256, first.contentSha256);
  assert.equal(recorded.datasetHash, datasetHash(ds));
  r = cli('index', 'query', idx, '--words', 'Sneaker', '--k', '3');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');

  const second = save(2); // retrained in place: same directory, other weights
  r = cli('index', 'query', idx, '--words', 'Sneaker', '--k', '3');
  assert.equal(r.status, 2, r.stdout);
  assert.equal(r.stdout, '', 'no neighbours printed');
  assert.match(r.stderr, new RegExp(`was built from a run whose weights sha256 is ${first.weights.sha256}, but .*run has ${second.weights.sha256} \\(retrained or replaced\\); rebuild the index`));
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  r = cli('index', 'query', idx, '--words', 'Sneaker', '--run', run);
  assert.equal(r.status, 2, 'a run named on the command line is checked too');

  // An index from before these fields: used, with a notice that it cannot be checked.
  const { runWeightsSha256: _w, runContentSha256: _c, datasetHash: _d, ...oldMeta } = recorded;
  const stored = INDEX_ITEMS.get(KlIndex.load(idx))!;
  KlIndex.build(stored, { labels: KlIndex.load(idx).labels!, meta: oldMeta }).save(idx);
  r = cli('index', 'query', idx, '--words', 'Sneaker', '--k', '3');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^note: .*run\.klindex predates run checksums: it cannot tell whether .*run changed since it was built; rebuild it/m);
});
