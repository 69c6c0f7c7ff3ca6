/** Informed priors: full-covariance Gaussians, shrunk label-set priors, paired datasets, the model and its evaluation. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { assertClose, setupBackend } from './helpers.js';
import { cholesky, matmul, symmetricEigen, transpose } from '../src/core/linalg.js';
import { Rng } from '../src/core/random.js';
import { DiagGaussian, FullGaussian, fullGaussianFromMoments, fullMomentsWidth, withInverseFactor } from '../src/distributions/gaussian.js';
import { kl } from '../src/distributions/kl.js';
import { LabelSetPriors, labelSetGaussian, shrunkCovariance } from '../src/distributions/label-sets.js';
import { loadDataset } from '../src/data/registry.js';
import { makePairedDataset, parsePairedSpec } from '../src/data/paired.js';
import type { Dataset } from '../src/data/dataset.js';
import { createModel } from '../src/models/registry.js';
import { Informed, prepareInformedRun } from '../src/models/informed.js';
import { loadModel, saveModel } from '../src/models/persist.js';
import { train } from '../src/train/trainer.js';
import { annotationAccuracy, klToImages, labelSetQuery, oneHotLabelInputs, pairRetrievalPrecisionAtK, pairedAccuracy, setMargins, topK } from '../src/eval/metrics.js';
import { KlIndex } from '../src/index/kl-index.js';
import { evaluateRun, generateForLabel, loadImageModel, trainRun } from '../src/runs/runs.js';
import { encodeSplit, encodeSplitGaussians, retrieveImages, similarImages } from '../src/runs/retrieval.js';
import { imagesToFloat } from '../src/data/dataset.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-informed-'));

test('fullGaussianFromMoments: L is lower-triangular with a positive diagonal and samples have covariance LLᵀ (Monte Carlo)', () => {
  const k = 3;
  const h = tf.tensor2d([[0.5, -1, 2, Math.log(0.7), Math.log(1.3), Math.log(0.4), 0.9, -0.6, 0.3]]);
  assert.equal(fullMomentsWidth(k), 9);
  const g = fullGaussianFromMoments(h, k);
  const l = g.scaleTril.arraySync()[0];
  assert.deepEqual([l[0][1], l[0][2], l[1][2]], [0, 0, 0]);
  assertClose(l[0][0], 0.7, 1e-6, 'L00');
  assertClose(l[2][2], 0.4, 1e-6, 'L22');
  assert.deepEqual([l[1][0], l[2][0], l[2][1]].map((v) => Math.round(v * 10) / 10), [0.9, -0.6, 0.3]);
  const n = 200_000;
  const eps = tf.randomNormal([n, k], 0, 1, 'float32', 7) as tf.Tensor2D;
  const z = g.sample(eps);
  const zs = z.arraySync();
  const cov = g.covariance().arraySync()[0];
  const mean = [0.5, -1, 2];
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (const row of zs) s += (row[r] - mean[r]) * (row[c] - mean[c]);
      assertClose(s / n, cov[r][c], 0.02 * (1 + Math.abs(cov[r][c])), `cov[${r}][${c}]`);
    }
  }
  tf.dispose([h, eps, z]);
  g.dispose();
});

test('KL full‖full equals diag‖diag for diagonal factors, with and without a precomputed inverse factor', () => {
  const p = new DiagGaussian(tf.tensor2d([[0.3, -0.2, 1], [0, 0.5, -1]]), tf.tensor2d([[0.1, -0.4, 0.3], [-1, 0.2, 0]]));
  const q = new DiagGaussian(tf.tensor2d([[1, 0, -0.5], [0.2, 0.1, 0]]), tf.tensor2d([[-0.3, 0.5, 0], [0.4, -0.2, 0.1]]));
  const dd = kl(p, q).arraySync();
  const ff = kl(p.toFull(), q.toFull()).arraySync();
  const fi = kl(p.toFull(), withInverseFactor(q.toFull())).arraySync();
  for (let i = 0; i < 2; i++) {
    assertClose(ff[i], dd[i], 1e-5, `full row ${i}`);
    assertClose(fi[i], dd[i], 1e-5, `inverse-factor row ${i}`);
  }
});

test('KL with a precomputed inverse factor matches the closed form for correlated 2-D Gaussians', () => {
  // p = N([1, 0], [[2, 0.6], [0.6, 1]]), q = N([0, 1], [[1, -0.3], [-0.3, 0.5]]): closed form in float64.
  const sp = [2, 0.6, 0.6, 1];
  const sq = [1, -0.3, -0.3, 0.5];
  const detQ = sq[0] * sq[3] - sq[1] * sq[2];
  const detP = sp[0] * sp[3] - sp[1] * sp[2];
  const inv = [sq[3] / detQ, -sq[1] / detQ, -sq[2] / detQ, sq[0] / detQ];
  const tr = inv[0] * sp[0] + inv[1] * sp[2] + inv[2] * sp[1] + inv[3] * sp[3];
  const d = [0 - 1, 1 - 0];
  const maha = d[0] * (inv[0] * d[0] + inv[1] * d[1]) + d[1] * (inv[2] * d[0] + inv[3] * d[1]);
  const expected = 0.5 * (tr + maha - 2 + Math.log(detQ / detP));
  const lp = cholesky(Float64Array.from(sp), 2);
  const lq = cholesky(Float64Array.from(sq), 2);
  const p = new FullGaussian(tf.tensor2d([[1, 0]]), tf.tensor3d(Float32Array.from(lp), [1, 2, 2]));
  const q = new FullGaussian(tf.tensor2d([[0, 1]]), tf.tensor3d(Float32Array.from(lq), [1, 2, 2]));
  assertClose(kl(p, q).arraySync()[0], expected, 1e-5, 'solve path');
  assertClose(kl(p, withInverseFactor(q)).arraySync()[0], expected, 1e-5, 'inverse-factor path');
});

test('shrunk covariance: a pair gives (1 − λ)ddᵀ/2 + λI, a single vector λI; bad λ and NaN are refused', () => {
  const a = [1, 0, 0];
  const b = [0, 1, 0];
  const cov = shrunkCovariance([a, b], 3, 0.1);
  // d = a − b = (1, −1, 0); ddᵀ/2 = [[.5, −.5, 0], [−.5, .5, 0], [0, 0, 0]].
  const expected = [0.45 + 0.1, -0.45, 0, -0.45, 0.45 + 0.1, 0, 0, 0, 0.1];
  expected.forEach((e, i) => assertClose(cov[i], e, 1e-12, `cov[${i}]`));
  assert.deepEqual(Array.from(shrunkCovariance([a], 3, 0.01)), [0.01, 0, 0, 0, 0.01, 0, 0, 0, 0.01]);
  const g = labelSetGaussian([a, b], 3, 0.5);
  assert.deepEqual(Array.from(g.mean), [0.5, 0.5, 0]);
  assert.throws(() => shrunkCovariance([a], 3, 0), /λ must be in \(0, 1\]/);
  assert.throws(() => shrunkCovariance([[1, NaN, 0]], 3, 0.1), /non-finite/);
  assert.throws(() => shrunkCovariance([[1, 0]], 3, 0.1), /length 2, expected 3/);
});

test('shrunk covariance with a spread s: (1 − λ)s·ddᵀ/2 + λI; s = 0 leaves λI; s outside [0, 1] is refused', () => {
  const a = [1, 0, 0];
  const b = [0, 1, 0];
  const half = shrunkCovariance([a, b], 3, 0.1, 0.5);
  const expected = [0.225 + 0.1, -0.225, 0, -0.225, 0.225 + 0.1, 0, 0, 0, 0.1];
  expected.forEach((e, i) => assertClose(half[i], e, 1e-12, `cov[${i}]`));
  const isotropic = [0.1, 0, 0, 0, 0.1, 0, 0, 0, 0.1];
  shrunkCovariance([a, b], 3, 0.1, 0).forEach((x, i) => assertClose(x, isotropic[i], 1e-12, `spread 0: cov[${i}]`));
  const g = labelSetGaussian([a, b], 3, 0.1, 0);
  assert.deepEqual(Array.from(g.mean), [0.5, 0.5, 0]);
  g.covariance.forEach((x, i) => assertClose(x, isotropic[i], 1e-12, `query cov[${i}]`));
  assert.throws(() => shrunkCovariance([a, b], 3, 0.1, 1.5), /spread must be in \[0, 1\], got 1.5/);
  assert.throws(() => shrunkCovariance([a, b], 3, 0.1, NaN), /spread must be in \[0, 1\]/);
  const priors = new LabelSetPriors([a, b, [0, 0, 1]], 0.1, 0);
  const s = priors.setIndex(0, 2);
  // λI for every set: L = √λ I.
  Array.from(priors.scaleTril.subarray(s * 9, s * 9 + 9)).forEach((x, i) => assertClose(x, i % 4 === 0 ? Math.sqrt(0.1) : 0, 1e-7, `L[${i}]`));
});

test('informed with spread 0 and priorMean mean: the prior of a pair (training, sampling, retrieval query) is N(midpoint, λI)', () => {
  const m = createModel('informed', { ...tiny, priorMean: 'mean', spread: 0, lambda: 0.01 }, 1) as Informed;
  const p = m.fullPrior(Int32Array.from([1, 4]), Int32Array.from([5, 4]), new Rng(1));
  const mid = Array.from({ length: 10 }, (_, i) => (i === 1 || i === 5 ? 0.5 : 0));
  assert.deepEqual(p.mean.arraySync()[0], mid);
  assert.deepEqual(p.mean.arraySync()[1], Array.from({ length: 10 }, (_, i) => (i === 4 ? 1 : 0)));
  for (const cov of p.covariance().arraySync()) cov.forEach((row, i) => row.forEach((x, j) => assertClose(x, i === j ? 0.01 : 0, 1e-7, `Σ[${i}][${j}]`)));
  const q = m.encodeLabelSet(tf.gather(oneHotLabelInputs(10), tf.tensor1d([1, 5], 'int32')) as tf.Tensor2D);
  q.mean.arraySync()[0].forEach((x, i) => assertClose(x, mid[i], 1e-7, `query mean[${i}]`));
  q.covariance().arraySync()[0].forEach((row, i) => row.forEach((x, j) => assertClose(x, i === j ? 0.01 : 0, 1e-7, `query Σ[${i}][${j}]`)));
  // The paper's prior (spread 1) for the same pair is wide along it: variance (1 − λ)·1 + λ = 1 along (e₁ − e₅)/√2.
  const paper = createModel('informed', { ...tiny, priorMean: 'mean' }, 1) as Informed;
  const wide = paper.fullPrior(Int32Array.from([1]), Int32Array.from([5]), null).covariance().arraySync()[0];
  assertClose((wide[1][1] + wide[5][5] - 2 * wide[1][5]) / 2, 1, 1e-6, 'variance along the pair');
  assert.throws(() => createModel('informed', { ...tiny, spread: 2 }, 1), /spread must be in \[0, 1\]/);
  p.dispose();
  q.dispose();
});

test('LabelSetPriors: every set of one or two of C classes has an index, factors with LLᵀ = Σ and L⁻¹L = I', () => {
  const c = 5;
  const vectors = Array.from({ length: c }, (_, i) => Array.from({ length: c }, (_, j) => (i === j ? 1 : 0)));
  const priors = new LabelSetPriors(vectors, 0.01);
  assert.equal(priors.numSets, 5 + 10);
  const seen = new Set<number>();
  for (let a = 0; a < c; a++) {
    for (let b = 0; b < c; b++) {
      const s = priors.setIndex(a, b);
      assert.equal(s, priors.setIndex(b, a));
      assert.deepEqual(priors.members(s), a === b ? [a] : [Math.min(a, b), Math.max(a, b)]);
      seen.add(s);
    }
  }
  assert.equal(seen.size, priors.numSets);
  const k = c;
  for (let s = 0; s < priors.numSets; s++) {
    const l = Float64Array.from(priors.scaleTril.subarray(s * k * k, (s + 1) * k * k));
    const u = Float64Array.from(priors.inverseTril.subarray(s * k * k, (s + 1) * k * k));
    const sigma = shrunkCovariance(priors.members(s).map((i) => vectors[i]), k, 0.01);
    const llt = matmul(l, transpose(l, k, k), k, k, k);
    const ul = matmul(u, l, k, k, k);
    for (let i = 0; i < k * k; i++) {
      assertClose(llt[i], sigma[i], 1e-6, `set ${s} LLᵀ[${i}]`);
      assertClose(ul[i], i % (k + 1) === 0 ? 1 : 0, 1e-5, `set ${s} L⁻¹L[${i}]`);
    }
  }
  assert.throws(() => priors.setIndex(5), /outside the 5 classes/);
});

test('symmetricEigen reconstructs the matrix from orthonormal eigenvectors, values descending', () => {
  const n = 6;
  const rng = new Rng(3);
  const b = Float64Array.from({ length: n * n }, () => rng.normal());
  const a = matmul(b, transpose(b, n, n), n, n, n);
  const { values, vectors } = symmetricEigen(a, n);
  for (let i = 1; i < n; i++) assert.ok(values[i - 1] >= values[i]);
  const vt = transpose(vectors, n, n);
  const recon = matmul(matmul(vectors, Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? values[i / (n + 1)] : 0)), n, n, n), vt, n, n, n);
  for (let i = 0; i < n * n; i++) assertClose(recon[i], a[i], 1e-8 * (1 + Math.abs(a[i])), `A[${i}]`);
  const vtv = matmul(vt, vectors, n, n, n);
  for (let i = 0; i < n * n; i++) assertClose(vtv[i], i % (n + 1) === 0 ? 1 : 0, 1e-10, `VᵀV[${i}]`);
});

test('paired datasets: halves are the source images, labels match them, seeded, equal=forbid, clear errors', async () => {
  const o = parsePairedSpec('paired:fashion-mnist-subset?train=300&test=50&equal=forbid&seed=4');
  assert.deepEqual(o, { base: 'fashion-mnist-subset', train: 300, test: 50, equal: 'forbid', seed: 4 });
  const p = makePairedDataset(ds, o, 'x');
  assert.equal(p.width, 56);
  assert.equal(p.height, 28);
  assert.equal(p.train.count, 300);
  assert.equal(p.test.count, 50);
  for (let n = 0; n < p.train.count; n++) assert.notEqual(p.train.labels[n], p.train.labels2![n]);
  // Each half is some source image of the recorded class: find it by content.
  for (let n = 0; n < 20; n++) {
    for (const [half, labels] of [[0, p.test.labels], [1, p.test.labels2!]] as const) {
      const tile = new Uint8Array(784);
      for (let r = 0; r < 28; r++) tile.set(p.test.images.subarray(n * 1568 + r * 56 + half * 28, n * 1568 + r * 56 + half * 28 + 28), r * 28);
      let found = -1;
      for (let i = 0; i < ds.test.count && found < 0; i++) if (ds.test.images.subarray(i * 784, (i + 1) * 784).every((v, j) => v === tile[j])) found = i;
      assert.ok(found >= 0, `pair ${n} half ${half} is not a test image`);
      assert.equal(ds.test.labels[found], labels[n]);
    }
  }
  const again = makePairedDataset(ds, o, 'x');
  assert.deepEqual(again.train.images, p.train.images);
  const other = makePairedDataset(ds, { ...o, seed: 5 }, 'x');
  assert.notDeepEqual(other.train.labels, p.train.labels);
  const allowed = makePairedDataset(ds, parsePairedSpec('paired:fashion-mnist-subset?train=2000&test=10'), 'y');
  assert.ok(allowed.train.labels.some((l, i) => l === allowed.train.labels2![i]), 'equal pairs occur when allowed');
  const loaded = await loadDataset('paired:fashion-mnist-subset?train=100&test=20');
  assert.equal(loaded.name, 'paired:fashion-mnist-subset?train=100&test=20');
  assert.equal(loaded.train.count, 100);
  assert.throws(() => parsePairedSpec('paired:'), /name the base dataset/);
  assert.throws(() => parsePairedSpec('paired:mnist?equal=maybe'), /equal must be allow or forbid/);
  assert.throws(() => parsePairedSpec('paired:mnist?train=-3'), /train must be a positive integer/);
  assert.throws(() => parsePairedSpec('paired:mnist?size=3'), /unknown option 'size'/);
  assert.throws(() => parsePairedSpec('paired:paired:mnist'), /pairs of pairs/);
});

const tiny = { inputDim: 784, numClasses: 10, latent: 10, encoderHidden: [32], decoderHidden: [32] };

test('informed: one step changes every weight; loss finite; save/load round-trips outputs; one-hot needs latent = classes', async () => {
  const m = createModel('informed', tiny, 1) as Informed;
  const before = new Map(m.params.entries().map(([n, v]) => [n, v.dataSync().slice()]));
  const r = await train(m, ds.train, { pixels: 784, numClasses: 10 }, { steps: 2, batchSize: 16, lr: 1e-3, seed: 1, logEvery: 1 });
  for (const [k, v] of Object.entries(r.finalTerms)) assert.ok(Number.isFinite(v), `${k} = ${v}`);
  assert.deepEqual(Object.keys(r.finalTerms).sort(), ['kl', 'loss', 'recon']);
  for (const [n, v] of m.params.entries()) assert.ok((v.dataSync() as Float32Array).some((x, i) => x !== before.get(n)![i]), `${n} did not change`);
  const dir = tmp();
  saveModel(dir, m, { classNames: ds.classNames });
  const { model } = loadModel(dir);
  const loaded = model as Informed;
  const x = tf.tensor2d(imagesToFloat(ds.test, [0, 1, 2], 784), [3, 784]);
  const labels = oneHotLabelInputs(10);
  assert.deepEqual(loaded.scoreLabels(x, labels).arraySync(), m.scoreLabels(x, labels).arraySync());
  assert.deepEqual(loaded.encodeImageFull(x).scaleTril.arraySync(), m.encodeImageFull(x).scaleTril.arraySync());
  assert.throws(() => createModel('informed', { ...tiny, latent: 4 }, 1), /latent = 10/);
  assert.throws(() => createModel('informed', { ...tiny, lambda: 0 }, 1), /lambda must be > 0/);
  tf.dispose([x, labels]);
});

test('informed: label scores are −KL(q ‖ N(w_c, λI)) (default) or log N(w_c; μ, Σ) of the full posterior', () => {
  const x = tf.tensor2d(imagesToFloat(ds.test, [3, 4], 784), [2, 784]);
  const labels = oneHotLabelInputs(10);
  const post = createModel('informed', { ...tiny, classify: 'posterior' }, 2) as Informed;
  const prior = createModel('informed', tiny, 2) as Informed;
  const q = post.encodeImageFull(x);
  const byPosterior = post.scoreLabels(x, labels).arraySync();
  const byPrior = prior.scoreLabels(x, labels).arraySync();
  const mean = q.mean.arraySync();
  const cov = q.covariance().arraySync();
  for (let c = 0; c < 10; c++) {
    const w = tf.tile(tf.slice(labels, [c, 0], [1, -1]), [2, 1]) as tf.Tensor2D;
    const lp = q.logProb(w).arraySync();
    for (let n = 0; n < 2; n++) {
      assertClose(byPosterior[n][c], lp[n], 1e-3 * (1 + Math.abs(lp[n])), `posterior score[${n}][${c}]`);
      // Closed form: KL(N(μ, Σ) ‖ N(w, λI)) = ½[tr Σ/λ + ‖w − μ‖²/λ − K + K log λ − log|Σ|].
      const lambda = 0.01;
      const tr = cov[n].reduce((s, row, i) => s + row[i], 0);
      const d2 = mean[n].reduce((s, m, i) => s + ((i === c ? 1 : 0) - m) ** 2, 0);
      const logDet = Math.log(Math.abs(determinant(cov[n])));
      const expected = -0.5 * (tr / lambda + d2 / lambda - 10 + 10 * Math.log(lambda) - logDet);
      assertClose(byPrior[n][c], expected, 1e-3 * (1 + Math.abs(expected)), `prior score[${n}][${c}]`);
    }
  }
});

function determinant(m: number[][]): number {
  const n = m.length;
  const a = m.map((r) => r.slice());
  let det = 1;
  for (let i = 0; i < n; i++) {
    let p = i;
    for (let r = i + 1; r < n; r++) if (Math.abs(a[r][i]) > Math.abs(a[p][i])) p = r;
    if (p !== i) [a[p], a[i], det] = [a[i], a[p], -det];
    det *= a[i][i];
    for (let r = i + 1; r < n; r++) {
      const f = a[r][i] / a[i][i];
      for (let c = i; c < n; c++) a[r][c] -= f * a[i][c];
    }
  }
  return det;
}

test('informed with word vectors: the projection keeps class distances (up to one scale) and puts the mean class distance at √2', () => {
  const rng = new Rng(9);
  const c = 10;
  const d = 32;
  const rows = Float32Array.from({ length: c * d }, () => rng.normal());
  const cfg = prepareInformedRun({ inputDim: 784, numClasses: c, latent: 10, labelDim: d }, { classInputs: { rows, width: d, kind: 'words' } });
  const v = cfg.classVectors as number[][];
  const dist = (a: ArrayLike<number>, b: ArrayLike<number>, n: number) => Math.sqrt(Array.from({ length: n }, (_, i) => (a[i] - b[i]) ** 2).reduce((x, y) => x + y, 0));
  let sum = 0;
  const ratios: number[] = [];
  for (let i = 0; i < c; i++) {
    for (let j = i + 1; j < c; j++) {
      const dv = dist(v[i], v[j], 10);
      sum += dv;
      ratios.push(dv / dist(rows.subarray(i * d), rows.subarray(j * d), d));
    }
  }
  assertClose(sum / 45, Math.SQRT2, 1e-9, 'mean distance');
  for (const r of ratios) assertClose(r, ratios[0], 1e-4, 'distance ratio');
  const m = createModel('informed', cfg, 1) as Informed;
  // A class's word vector maps onto its class vector.
  const mapped = m.labelVectors(tf.tensor2d(rows.subarray(0, d), [1, d])).arraySync()[0];
  mapped.forEach((x, i) => assertClose(x, v[0][i], 1e-4, `mapped[${i}]`));
  assert.throws(() => prepareInformedRun({ numClasses: c, latent: 12 }, { classInputs: { rows, width: d, kind: 'words' } }), /latent = 32 or a projection with latent ≤ 10/);
});

test('informed on paired data: trains from the shipped subset, ranks label pairs above chance; similar images by KL', async () => {
  const dir = tmp();
  const spec = 'paired:fashion-mnist-subset?train=6000&test=300&equal=forbid';
  await trainRun({ model: 'informed', dataset: spec, latent: 10, steps: 400, batchSize: 64, lr: 2e-3, seed: 1, out: dir, modelOptions: { encoderHidden: [128], decoderHidden: [128] } });
  const rep = await evaluateRun(dir, { skipGeneration: true });
  // Chance for an unordered pair of 10 classes is 1/45 and for the top label being in the pair 1/5;
  // 400 steps on 6,000 pairs reach about 0.19 and 0.6 (the full runs: docs/results.md).
  assert.ok(rep.pairedTop2Accuracy! > 0.1, `paired top-2 ${rep.pairedTop2Accuracy}`);
  assert.ok(rep.annotationAccuracy! > 0.45, `top-1 in set ${rep.annotationAccuracy}`);
  assert.equal(Object.keys(rep.pairRetrievalPrecisionAt20!.perPair).length, 45);
  // Each pair occurs ~7 times among 300 test images, so precision@20 is small here by construction;
  // what must hold is that it is computed for every pair (the full runs measure it).
  assert.ok(Object.values(rep.pairRetrievalPrecisionAt20!.perPair).every((v) => v >= 0 && v <= 1));
  assert.equal(Object.keys(rep.pairRetrievalPrecisionAt20Margin!.perPair).length, 45);
  assert.ok(rep.pairRetrievalPrecisionAt20Margin!.perPair['Trouser + Bag'] !== undefined);
  const { model } = loadImageModel(dir);
  const pds = await loadDataset(spec);
  const img = imagesToFloat(pds.test, [0], 1568);
  const near = similarImages(model, pds.test, 1568, img, 10, { exclude: 0 });
  const far = similarImages(model, pds.test, 1568, img, 10, { dissimilar: true });
  assert.ok(!near.ids.includes(0));
  assert.ok(near.kl.every((v, i) => i === 0 || v >= near.kl[i - 1]), 'ascending KL');
  assert.ok(far.kl[0] > near.kl[9], 'the most dissimilar are farther than the most similar');
  // The exact index over the full-covariance posteriors ranks a label-pair query as computing every KL does.
  const items = encodeSplitGaussians(model, pds.test, 1568);
  assert.equal(items.kind, 'full');
  const index = KlIndex.build(items);
  const trouserSandal = tf.gather(oneHotLabelInputs(10), tf.tensor1d([1, 5], 'int32')) as tf.Tensor2D;
  const query = labelSetQuery(model, trouserSandal);
  const brute = klToImages(model, query, pds.test, 1568);
  const covariance = (query as FullGaussian).covariance().dataSync();
  const hits = index.search({ mean: query.mean.dataSync(), covariance }, 10);
  assert.deepEqual(hits.map((h) => h.index), topK(brute, 10));
  hits.forEach((h) => assertClose(h.kl, brute[h.index], 1e-3 * (1 + brute[h.index]), `KL of item ${h.index}`));
  const acc = pairedAccuracy(model, pds.test, 1568, oneHotLabelInputs(10));
  assert.equal(acc.top2Accuracy, rep.pairedTop2Accuracy);
  const grid = generateForLabel(model, (loadImageModel(dir)).meta, 'Trouser+Sneaker', 4, 0);
  assert.equal(grid.length, 4 * 1568);
  assert.throws(() => generateForLabel(model, loadImageModel(dir).meta, 'Trouser+Loafer', 4, 0), /'Loafer' is not in the model's vocabulary/);
});

test('informed with spread 0 on paired data: a short real run keeps posterior means near the pair midpoint and gets both labels', async () => {
  const spec = 'paired:fashion-mnist-subset?train=6000&test=300&equal=forbid';
  const pds = await loadDataset(spec);
  const m = createModel('informed', { ...tiny, inputDim: 1568, encoderHidden: [128], decoderHidden: [128], lambda: 1e-4, priorMean: 'mean', spread: 0 }, 1) as Informed;
  await train(m, pds.train, { pixels: 1568, numClasses: 10 }, { steps: 300, batchSize: 64, lr: 2e-3, seed: 1 });
  const mu = encodeSplit(m, pds.test, 1568).mean;
  // Where each posterior mean sits between its two one-hot label vectors: t = 0 at one, 1 at the other.
  let offCentre = 0;
  for (let i = 0; i < pds.test.count; i++) {
    const a = pds.test.labels[i];
    const b = pds.test.labels2![i];
    offCentre += Math.abs((mu[i * 10 + b] - mu[i * 10 + a] + 1) / 2 - 0.5) / pds.test.count;
  }
  // Measured: 0.085 and top-2 0.48; the paper's prior (spread 1, a vector drawn each step) gives
  // 0.185 and 0.44 with the same seed, and far apart on full runs (docs/results.md).
  assert.ok(offCentre < 0.12, `mean |t − ½| = ${offCentre}`);
  const top2 = pairedAccuracy(m, pds.test, 1568, oneHotLabelInputs(10)).top2Accuracy;
  assert.ok(top2 > 0.25, `top-2 ${top2} (chance 1/45)`);
});

test('informed single-label: a short real run annotates well above chance', async () => {
  const m = createModel('informed', { ...tiny, encoderHidden: [128], decoderHidden: [128] }, 3) as Informed;
  await train(m, ds.train, { pixels: 784, numClasses: 10 }, { steps: 300, batchSize: 64, lr: 2e-3, seed: 3 });
  const acc = annotationAccuracy(m, ds.test, 784, oneHotLabelInputs(10));
  assert.ok(acc > 0.6, `annotation ${acc}`);
});

test('pair retrieval by margin ranks images whose two most likely labels are the pair, exactly', () => {
  // A stand-in model whose label scores are the three pixels of each image (grey values / 255), one
  // per label; one-hot label inputs pick (and order) them.
  const images = Uint8Array.from([
    // image 0: labels {0, 1} clearly (0.8, 0.7 vs 0.1)
    200, 180, 20,
    // image 1: {0, 1} barely (0.5, 0.45 vs 0.4)
    130, 115, 100,
    // image 2: {0, 2}, but label 1 scores high too: wrong for the pair {0, 1}
    200, 150, 160,
    // image 3: {1, 2} clearly
    10, 220, 200,
  ]);
  const split = { images, labels: Uint8Array.from([0, 0, 0, 1]), labels2: Uint8Array.from([1, 1, 2, 2]), count: 4 };
  const model = {
    name: 'stand-in',
    latentDim: 1,
    encodeLabels: () => { throw new Error('not used by the margin ranking'); },
    encodeImage: (x: tf.Tensor2D) => new DiagGaussian(tf.zeros([x.shape[0], 1]), tf.zeros([x.shape[0], 1])),
    scoreLabels: (x: tf.Tensor2D, l: tf.Tensor2D) => tf.matMul(x, l, false, true),
  } as unknown as Parameters<typeof pairRetrievalPrecisionAtK>[0];
  const labels = oneHotLabelInputs(3);
  const at1 = pairRetrievalPrecisionAtK(model, split, 3, labels, 1, 'margin');
  assert.equal(at1.ranking, 'margin');
  // Margins min(s_a, s_b) − s_other. {0,1}: image 0 (0.71 − 0.08) is first → hit. {0,2}: image 2
  // (0.63 − 0.59) is the only positive margin → hit. {1,2}: image 3 (0.78 − 0.04) → hit.
  assert.deepEqual(at1.perPair, { '0,1': 1, '0,2': 1, '1,2': 1 });
  const at2 = pairRetrievalPrecisionAtK(model, split, 3, labels, 2, 'margin');
  // {0,1}: images 0 and 1 (margins 0.63, 0.06) above image 2 (0.59 − 0.63 < 0) → 2/2.
  assert.equal(at2.perPair['0,1'], 1);
  // {1,2}: image 3, then image 1 (0.39 − 0.51), which shows {0, 1}, ahead of image 2 (0.59 − 0.78) → 1/2.
  assert.equal(at2.perPair['1,2'], 0.5);
  assert.throws(() => pairRetrievalPrecisionAtK(model, { ...split, labels2: undefined }, 3, labels, 1, 'margin'), /two-object/);

  // The same margins by hand, and retrieval ranked by them (query labels first in the inputs).
  const scores = Float32Array.from(images, (v) => v / 255);
  const m = setMargins(scores, 3, [1, 2]);
  [0.078 - 0.784, 0.392 - 0.51, 0.588 - 0.784, 0.784 - 0.039].forEach((v, i) => assert.ok(Math.abs(m[i] - v) < 2e-3, `margin ${i}: ${m[i]}`));
  assert.throws(() => setMargins(scores, 3, [0, 1, 2]), /needs 1 to 2 labels/);
  const inputs = tf.tensor2d([0, 1, 0, 0, 0, 1, 1, 0, 0], [3, 3]); // labels 1, 2 (the query), then 0
  const query = { mean: new Float32Array(1), logVar: new Float32Array(1) };
  const r = retrieveImages(model, split, 3, query, 4, { rank: 'margin', marginLabels: { inputs, queryCount: 2 } });
  assert.deepEqual(r.ids, [3, 1, 2, 0]);
  assert.throws(() => retrieveImages(model, split, 3, query, 4, { rank: 'margin' }), /margin ranking needs the label inputs/);
});
