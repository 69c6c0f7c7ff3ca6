/** Triplet sampling, TVAE's triplet loss, triplet accuracy and the retrieval measures. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import type { Dataset } from '../src/data/dataset.js';
import { batchTriplets, checkTriplets, sampleTriplets, type Triplets } from '../src/data/triplets.js';
import { retrievalMeasures, tripletAccuracy } from '../src/eval/metric-learning.js';
import { tripletLossOnMeans, type Tvae } from '../src/models/tvae.js';
import { createModel } from '../src/models/registry.js';
import { lossOf } from '../src/models/base.js';
import { evaluateRun, trainRun } from '../src/runs/runs.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-metric-'));

test('sampleTriplets: 20,000 triplets from real labels are all valid, cover every class, and repeat under the same seed', () => {
  const labels = ds.test.labels;
  const t = sampleTriplets(labels, 20000, Rng.for(4, 'x'));
  checkTriplets(labels, t);
  const anchorClasses = new Set(Array.from(t.anchor, (a) => labels[a]));
  assert.equal(anchorClasses.size, 10);
  assert.deepEqual(sampleTriplets(labels, 20000, Rng.for(4, 'x')), t);
  assert.notDeepEqual(sampleTriplets(labels, 20000, Rng.for(5, 'x')).anchor, t.anchor);
});

test('sampleTriplets: positives are uniform over the other members of the class (chi-square on a small class)', () => {
  // Class 0 has 4 members; anchor 0's positive must be 1, 2 or 3 with equal chance, never itself.
  const labels = Int32Array.from([0, 0, 0, 0, 1, 1, 2]);
  const t = sampleTriplets(labels, 30000, new Rng(1));
  const counts = new Map<number, number>();
  for (let i = 0; i < t.anchor.length; i++) if (t.anchor[i] === 0) counts.set(t.positive[i], (counts.get(t.positive[i]) ?? 0) + 1);
  assert.deepEqual([...counts.keys()].sort(), [1, 2, 3]);
  const n = [...counts.values()].reduce((a, b) => a + b, 0);
  const chi2 = [...counts.values()].reduce((s, c) => s + (c - n / 3) ** 2 / (n / 3), 0);
  assert.ok(chi2 < 13.8, `chi-square ${chi2} (2 dof, p = 0.001 at 13.8)`);
  checkTriplets(labels, t);
});

test('triplet sampling refuses data with no valid triplet, and checkTriplets names the broken one', () => {
  assert.throws(() => sampleTriplets(Int32Array.from([0, 1, 2]), 5, new Rng(0)), /no class has two images/);
  assert.throws(() => sampleTriplets(Int32Array.from([3, 3, 3]), 5, new Rng(0)), /all of one class/);
  assert.throws(() => sampleTriplets(Int32Array.from([0, 0, 1]), 0, new Rng(0)), /positive integer/);
  assert.throws(() => sampleTriplets(Int32Array.from([0, -1, 1]), 5, new Rng(0)), /not a class index/);
  const labels = Int32Array.from([0, 0, 1]);
  const bad = (a: number, p: number, n: number): Triplets => ({ anchor: Int32Array.of(a), positive: Int32Array.of(p), negative: Int32Array.of(n) });
  assert.throws(() => checkTriplets(labels, bad(0, 0, 2)), /anchor itself/);
  assert.throws(() => checkTriplets(labels, bad(0, 2, 2)), /not of the anchor's class/);
  assert.throws(() => checkTriplets(labels, bad(0, 1, 1)), /of the anchor's class/);
  assert.throws(() => checkTriplets(labels, bad(0, 1, 7)), /outside/);
});

test('batchTriplets: every usable anchor gets one valid triplet; singletons and one-class batches get none', () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 200; trial++) {
    const rows = 2 + rng.int(40);
    const labels = Int32Array.from({ length: rows }, () => rng.int(1 + rng.int(6)));
    const points = rng.fillNormal(new Float32Array(rows * 3));
    for (const mining of ['random', 'semi-hard'] as const) {
      const t = batchTriplets(labels, rng, { mining, points, dim: 3, margin: 0.5 });
      checkTriplets(labels, t);
      const classes = new Set(labels);
      const usable = classes.size < 2 ? 0 : Array.from(labels).filter((c) => labels.filter((d) => d === c).length >= 2).length;
      assert.equal(t.anchor.length, usable, `rows ${rows}, ${classes.size} classes`);
    }
  }
  assert.throws(() => batchTriplets(Int32Array.from([0, 0, 1]), rng, { mining: 'semi-hard' }), /needs the embedded points/);
});

test('batchTriplets semi-hard: picks a negative in (D(a,p), D(a,p) + m) when there is one', () => {
  // 1-D points: anchor 0 at 0, positive 1 at 1; negatives at 0.5 (hard), 1.5 (semi-hard), 5 (easy).
  const labels = Int32Array.from([0, 0, 1, 1, 1]);
  const points = Float32Array.from([0, 1, 0.5, 1.5, 5]);
  for (let s = 0; s < 20; s++) {
    const t = batchTriplets(labels, new Rng(s), { mining: 'semi-hard', points, dim: 1, margin: 1 });
    assert.equal(t.anchor[0], 0);
    assert.equal(t.negative[0], 3, 'the only semi-hard negative of anchor 0');
  }
});

test('tripletAccuracy is exact on a hand-made embedding, at margin 0 and at a margin', () => {
  // Points on a line: class 0 at 0, 0.2; class 1 at 1, 3.
  const pts = Float32Array.from([0, 0.2, 1, 3]);
  const t: Triplets = {
    anchor: Int32Array.from([0, 1, 2, 3, 2]),
    positive: Int32Array.from([1, 0, 3, 2, 3]),
    negative: Int32Array.from([2, 3, 0, 1, 1]),
  };
  // D(a,p) − D(a,n): 0.2−1 = −0.8, 0.2−2.8 = −2.6, 2−1 = 1, 2−2.8 = −0.8, 2−0.8 = 1.2.
  const at0 = tripletAccuracy(pts, 4, 1, t, 0);
  assert.equal(at0.accuracyNoMargin, 3 / 5);
  assert.equal(at0.accuracy, 3 / 5);
  const at1 = tripletAccuracy(pts, 4, 1, t, 1);
  assert.equal(at1.accuracy, 1 / 5, 'only the −2.6 triplet clears a margin of 1');
  assert.equal(at1.accuracyNoMargin, 3 / 5);
  assert.equal(at1.triplets, 5);
  assert.throws(() => tripletAccuracy(Float32Array.from([0, NaN, 1, 3]), 4, 1, t, 0), /not finite/);
  assert.throws(() => tripletAccuracy(pts, 3, 1, t, 0), /expected 3×1/);
  assert.throws(() => tripletAccuracy(pts, 4, 1, t, -1), /margin/);
});

test('retrievalMeasures: precision@1, R-precision and MAP@R equal their hand-computed values', () => {
  // References on a line: class 0 at 0, 1, 5; class 1 at 2, 3.
  const refs = Float32Array.from([0, 1, 5, 2, 3]);
  const refLabels = Int32Array.from([0, 0, 0, 1, 1]);
  // Query A (class 0) at 0.1: order 0(0) 1(0) 2(1) 3(1) 5(0); R = 3: hits at ranks 1, 2 → RP 2/3, AP (1 + 1)/3.
  // Query B (class 1) at 3.2: order 3(1) 2(1) 5(0) …; R = 2: hits at ranks 1, 2 → RP 1, AP 1.
  const queries = Float32Array.from([0.1, 3.2]);
  const r = retrievalMeasures(queries, Int32Array.from([0, 1]), refs, refLabels, 1);
  assert.equal(r.precisionAt1, 1);
  assert.ok(Math.abs(r.rPrecision - (2 / 3 + 1) / 2) < 1e-12, `R-precision ${r.rPrecision}`);
  assert.ok(Math.abs(r.mapAtR - (2 / 3 + 1) / 2) < 1e-12, `MAP@R ${r.mapAtR}`);
  // A query whose first hit comes second: class 1 at 4.6 → order 5(0), 3(1), 2(1): P@1 0, RP 1/2, AP (1/2)/2.
  const q2 = retrievalMeasures(Float32Array.of(4.6), Int32Array.of(1), refs, refLabels, 1);
  assert.deepEqual([q2.precisionAt1, q2.rPrecision, q2.mapAtR], [0, 0.5, 0.25]);
  assert.throws(() => retrievalMeasures(Float32Array.of(1), Int32Array.of(7), refs, refLabels, 1), /no reference has label 7/);
  assert.throws(() => retrievalMeasures(queries, Int32Array.from([0, 1]), refs, refLabels, 1, { maxQueries: 1 }), /needs an rng/);
  assert.equal(retrievalMeasures(queries, Int32Array.from([0, 1]), refs, refLabels, 1, { maxQueries: 1, rng: new Rng(0) }).queries, 1);
});

test('tripletLossOnMeans equals its closed form, and its gradient equals finite differences', () => {
  const rng = new Rng(8);
  const dim = 3;
  const means = rng.fillNormal(new Float32Array(6 * dim));
  const labels = Int32Array.from([0, 0, 1, 1, 2, 2]);
  const t = batchTriplets(labels, rng, { mining: 'random' });
  const margin = 1.5;
  let want = 0;
  const d = (i: number, j: number) => Math.sqrt([0, 1, 2].reduce((s, k) => s + (means[i * dim + k] - means[j * dim + k]) ** 2, 0) + 1e-9);
  for (let i = 0; i < t.anchor.length; i++) want += Math.max(0, d(t.anchor[i], t.positive[i]) - d(t.anchor[i], t.negative[i]) + margin);
  want /= t.anchor.length;
  assert.ok(want > 0, 'some triplets are active');
  const grad = new Float32Array(means.length);
  const got = tripletLossOnMeans(means, dim, t, margin, 2, grad);
  assert.ok(Math.abs(got - want) < 1e-6, `${got} vs ${want}`);
  const f64 = Float64Array.from(means);
  for (let i = 0; i < means.length; i++) {
    const h = 1e-3;
    const at = (v: number) => {
      const m = Float32Array.from(f64);
      m[i] = v;
      return tripletLossOnMeans(m, dim, t, margin);
    };
    const fd = (2 * (at(f64[i] + h) - at(f64[i] - h))) / (2 * h);
    assert.ok(Math.abs(fd - grad[i]) < 2e-3, `grad[${i}]: ${grad[i]} vs finite difference ${fd}`);
  }
});

test('tvae: the loss carries the triplet term; bad options are refused', () => {
  const m = createModel('tvae', { inputDim: 784, numClasses: 10, latent: 4, encoderHidden: [16], decoderHidden: [16] }, 0) as Tvae;
  const x = tf.tensor2d(new Float32Array(8 * 784).map((_, i) => (i % 13) / 13), [8, 784]);
  const y = tf.zeros([8, 10]) as tf.Tensor2D;
  const r = lossOf(m, { x, y, labels: Int32Array.from([0, 0, 1, 1, 2, 2, 3, 3]), rng: new Rng(1) }, 0);
  const terms = Object.fromEntries(Object.entries(r.terms).map(([k, v]) => [k, v.dataSync()[0]]));
  assert.ok(terms.triplet > 0 && Number.isFinite(terms.triplet), `triplet ${terms.triplet}`);
  assert.ok(Math.abs(r.total.dataSync()[0] - (terms.recon + terms.kl + 10 * terms.triplet)) < 1e-2);
  tf.dispose([x, y, r.total, ...Object.values(r.terms)]);
  assert.throws(() => createModel('tvae', { inputDim: 784, numClasses: 10, margin: -1 }, 0), /margin/);
  assert.throws(() => createModel('tvae', { inputDim: 784, numClasses: 10, mining: 'hardest' }, 0), /mining/);
});

test('tvae trains its means into class clusters: triplet accuracy beats a VAE trained alike (real data, 400 steps)', async () => {
  const out: Record<string, number> = {};
  for (const model of ['vae', 'tvae']) {
    const dir = join(tmp(), model);
    await trainRun({ model, dataset: 'fashion-mnist-subset', out: dir, latent: 8, steps: 400, batchSize: 100, lr: 1e-3, seed: 1 });
    const r = await evaluateRun(dir, { skipGeneration: true, triplets: 4000, retrievalQueries: 300 });
    assert.ok(r.metricLearning, 'metric-learning measures are reported');
    assert.equal(r.tripletAccuracy, r.metricLearning!.triplet.accuracy);
    assert.equal(r.metricLearning!.triplet.triplets, 4000);
    out[model] = r.metricLearning!.triplet.accuracyNoMargin;
    out[`${model}AtMargin`] = r.metricLearning!.triplet.accuracy;
  }
  // Measured (seeds 1, 2): margin 0 vae 0.83/0.84, tvae 0.91/0.91; margin 1 vae 0.66/0.67, tvae 0.82/0.83.
  assert.ok(out.tvae >= out.vae + 0.05, `triplet accuracy (margin 0): tvae ${out.tvae} vs vae ${out.vae}`);
  assert.ok(out.tvaeAtMargin >= out.vaeAtMargin + 0.1, `triplet accuracy (margin 1): tvae ${out.tvaeAtMargin} vs vae ${out.vaeAtMargin}`);
  assert.ok(out.tvae >= 0.87, `tvae triplet accuracy ${out.tvae}`);
});

test('latent arithmetic: a − a + b is b; label operands use q(z|l) or class centroids; bad operands fail clearly', async () => {
  const { latentArithmetic, operandPoint, parseOperand } = await import('../src/runs/latent-arithmetic.js');
  const { saveModel, loadModel } = await import('../src/models/persist.js');
  assert.deepEqual(parseOperand(' #12 '), { kind: 'image', id: 12 });
  assert.deepEqual(parseOperand('ankle boot'), { kind: 'label', text: 'ankle boot' });
  assert.throws(() => parseOperand('#x'), /not an image id/);
  assert.throws(() => parseOperand('  '), /empty/);
  for (const name of ['pse', 'vae']) {
    const m = createModel(name, { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, 2);
    const dir = tmp();
    saveModel(dir, m as never, { classNames: ds.classNames, dataset: { name: ds.name, source: 'test', hash: 'x', height: 28, width: 28, trainCount: ds.train.count } });
    const { model, meta } = loadModel(dir);
    const ctx = { model: model as never, meta, ds };
    const r = latentArithmetic(ctx, { kind: 'image', id: 5 }, { kind: 'image', id: 5 }, { kind: 'label', text: 'sneaker' });
    const sneaker = operandPoint(ctx, { kind: 'label', text: 'Sneaker' });
    for (let d = 0; d < 3; d++) assert.ok(Math.abs(r.z[9 + d] - sneaker[d]) < 1e-5, `${name}: result = z(sneaker)`);
    assert.equal(r.nearestClass.label, 'Sneaker');
    assert.equal(r.images.length, 4 * 784);
    if (name === 'vae') {
      // No label encoder: the label is the centroid of its class's test posterior means.
      const c = ds.classNames.indexOf('Sneaker');
      const ids = Array.from(ds.test.labels.keys()).filter((i) => ds.test.labels[i] === c);
      const pts = ids.map((id) => operandPoint(ctx, { kind: 'image', id }));
      const mean = [0, 1, 2].map((d) => pts.reduce((s, p) => s + p[d], 0) / pts.length);
      for (let d = 0; d < 3; d++) assert.ok(Math.abs(sneaker[d] - mean[d]) < 1e-4, `centroid dim ${d}: ${sneaker[d]} vs ${mean[d]}`);
      assert.throws(() => operandPoint(ctx, { kind: 'label', text: 'sneaker bag' }), /exactly one class/);
      assert.throws(() => operandPoint({ ...ctx, ds: null }, { kind: 'label', text: 'bag' }), /needs the run's dataset/);
    }
    assert.throws(() => operandPoint(ctx, { kind: 'image', id: ds.test.count }), /not a test image/);
    assert.throws(() => operandPoint(ctx, { kind: 'label', text: 'spaceship' }), /spaceship/);
    m.params.dispose();
    (model as { params: { dispose(): void } }).params.dispose();
  }
});

test('probsem arithmetic writes a row of four images and names the nearest class; eval prints triplet accuracy', async () => {
  const { spawnSync } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  const { saveModel } = await import('../src/models/persist.js');
  const m = createModel('tvae', { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, 2);
  const dir = tmp();
  saveModel(dir, m as never, { classNames: ds.classNames, dataset: { name: ds.name, source: 'test', hash: 'x', height: 28, width: 28, trainCount: ds.train.count } });
  m.params.dispose();
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  const png = join(dir, 'row.png');
  const r = cli('arithmetic', '--run', dir, '--a', '#3', '--minus', 'sneaker', '--plus', 'ankle boot', '--out', png, '--scale', '1');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /#3 − 'sneaker' \+ 'ankle boot': nearest class /);
  const buf = readFileSync(png);
  const [w, h] = [buf.readUInt32BE(16), buf.readUInt32BE(20)];
  assert.ok(w >= 4 * 28 && w < 5 * 28 && h >= 28 && h < 2 * 28, `one row of four 28-pixel images (gutters aside): ${w}×${h}`);
  const bad = cli('arithmetic', '--run', dir, '--a', '#x', '--minus', 'sneaker', '--plus', 'bag');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /not an image id/);
  const e = cli('eval', '--run', dir, '--no-generation', '--triplets', '2000', '--retrieval-queries', '50');
  assert.equal(e.status, 0, e.stderr);
  assert.match(e.stdout, /triplet accuracy\s+\d+\.\d+% at margin 1; \d+\.\d+% at margin 0 \(2000 test triplets\)/);
  assert.match(e.stdout, /precision@1 \d+\.\d+%, R-precision \d+\.\d+%, MAP@R \d+\.\d+% \(50 queries\)/);
});
