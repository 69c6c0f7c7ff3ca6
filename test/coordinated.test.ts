/** Coordinated representations: linear algebra helpers, CCA, kernel CCA, Deep CCA, DeViSE, the runner and the CLI. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { assertTapeMatchesTfjs, setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import {
  cholesky,
  inverseSqrtSymmetric,
  matmul,
  solveLowerMatrix,
  solveLowerTransposeMatrix,
  svdViaGram,
  symmetricEigen,
  symmetricEigenQR,
  transpose,
} from '../src/core/linalg.js';
import { columnCorrelations, fitCca, projectX, projectY, sharedSpaceScores, totalCorrelation } from '../src/analysis/cca.js';
import { fitKcca, kccaProjectX, kccaProjectY } from '../src/analysis/kcca.js';
import { correlationObjective, createDcca } from '../src/models/dcca.js';
import { createDevise } from '../src/models/devise.js';
import { type Trainable, lossOf } from '../src/models/base.js';
import { batchGradients } from '../src/train/gradients.js';
import { Stepper, train } from '../src/train/trainer.js';
import { loadDataset } from '../src/data/registry.js';
import { type Dataset, imagesToFloat } from '../src/data/dataset.js';
import { WordVectors } from '../src/text/word-vectors.js';
import { writeWordVectors } from '../src/text/readers.js';
import { coordinateRun } from '../src/analysis/coordinated.js';
import { coordinateCommand } from '../src/cli/commands/coordinate.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-coord-'));
let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A Householder reflection I − 2uuᵀ/uᵀu (n×n): a known orthogonal matrix. */
function reflection(u: number[]): Float64Array {
  const n = u.length;
  const uu = u.reduce((s, x) => s + x * x, 0);
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) q[i * n + j] = (i === j ? 1 : 0) - (2 * u[i] * u[j]) / uu;
  return q;
}

/** Q diag(λ) Qᵀ. */
function fromEigen(q: Float64Array, lambda: number[]): Float64Array {
  const n = lambda.length;
  const ql = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) ql[i * n + j] = q[i * n + j] * lambda[j];
  return matmul(ql, transpose(q, n, n), n, n, n);
}

test('symmetricEigenQR: a matrix built from known eigenpairs (one repeated), agreement with Jacobi, edge cases', () => {
  const lambda = [5, 3, 3, -1, 0.5];
  const q = reflection([1, -2, 0.5, 3, 1]);
  const a = fromEigen(q, lambda);
  const { values, vectors } = symmetricEigenQR(a, 5);
  assert.ok(maxAbsDiff(values, [5, 3, 3, 0.5, -1]) < 1e-12, `eigenvalues ${values}`);
  // A V = V Λ and VᵀV = I.
  const av = matmul(a, vectors, 5, 5, 5);
  for (let i = 0; i < 5; i++) for (let c = 0; c < 5; c++) assert.ok(Math.abs(av[i * 5 + c] - vectors[i * 5 + c] * values[c]) < 1e-12);
  const vtv = matmul(transpose(vectors, 5, 5), vectors, 5, 5, 5);
  for (let i = 0; i < 5; i++) for (let c = 0; c < 5; c++) assert.ok(Math.abs(vtv[i * 5 + c] - (i === c ? 1 : 0)) < 1e-12);
  // The top eigenvector is ±the first column of Q.
  let cos = 0;
  for (let i = 0; i < 5; i++) cos += vectors[i * 5] * q[i * 5];
  assert.ok(Math.abs(Math.abs(cos) - 1) < 1e-12);

  const rng = new Rng(4);
  const n = 30;
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) r[i * n + j] = r[j * n + i] = rng.normal();
  assert.ok(maxAbsDiff(symmetricEigenQR(r, n).values, symmetricEigen(r, n).values) < 1e-10);
  assert.deepEqual(Array.from(symmetricEigenQR(new Float64Array([7]), 1).values), [7]);
  assert.deepEqual(Array.from(symmetricEigenQR(new Float64Array(4), 2).values), [0, 0]);
  assert.throws(() => symmetricEigenQR(new Float64Array([1, NaN, NaN, 1]), 2), /entry 1 is NaN/);
});

test('symmetricEigenQR converges on a graded, rank-deficient matrix where the neighbour-relative test alone stalls', () => {
  // From a small judge's FID (√C₁ C₂ √C₁ over near-dead features): entries from 1e-3 down to 1e-124.
  // Stored as the upper triangle in float64; the old stopping rule gave up after 60·n QR steps on it.
  const k = 117;
  const upper = new Float64Array(new Uint8Array(readFileSync(new URL('./fixtures/eigen-graded-117.f64', import.meta.url))).buffer);
  const a = new Float64Array(k * k);
  let t = 0;
  for (let i = 0; i < k; i++) for (let j = i; j < k; j++) a[i * k + j] = a[j * k + i] = upper[t++];
  const { values, vectors } = symmetricEigenQR(a, k);
  // numpy.linalg.eigvalsh: the three leading eigenvalues; the rest are below 1e-18.
  const numpy = [0.0013018284685366976, 1.0578587903578873e-5, 3.86697353765348e-8];
  numpy.forEach((v, i) => assert.ok(Math.abs(values[i] - v) < 1e-15, `λ${i + 1} = ${values[i]}, numpy ${v}`));
  assert.ok(Math.max(...values.slice(3).map(Math.abs)) < 1e-17);
  const av = matmul(a, vectors, k, k, k);
  for (let i = 0; i < k; i++) assert.ok(Math.abs(av[i * k] - values[0] * vectors[i * k]) < 1e-16);
});

test('svdViaGram and inverseSqrtSymmetric against closed forms; triangular solves', () => {
  // A = U diag(4, 2, 0.5) Vᵀ with U the first 3 columns of a 5×5 reflection and V a 3×3 one.
  const u5 = reflection([2, 1, -1, 0.5, 1]);
  const v3 = reflection([1, 3, -2]);
  const s0 = [4, 2, 0.5];
  const u0 = new Float64Array(15);
  for (let i = 0; i < 5; i++) for (let c = 0; c < 3; c++) u0[i * 3 + c] = u5[i * 5 + c] * s0[c];
  const a = matmul(u0, transpose(v3, 3, 3), 5, 3, 3);
  for (const [m, n, mat] of [[5, 3, a], [3, 5, transpose(a, 5, 3)]] as const) {
    const { u, s, v } = svdViaGram(mat, m, n);
    assert.ok(maxAbsDiff(s, s0) < 1e-12, `singular values ${s}`);
    const r = 3;
    const us = new Float64Array(m * r);
    for (let i = 0; i < m; i++) for (let c = 0; c < r; c++) us[i * r + c] = u[i * r + c] * s[c];
    assert.ok(maxAbsDiff(matmul(us, transpose(v, n, r), m, r, n), mat) < 1e-12, 'U S Vᵀ = A');
  }
  // Rank one: the zero singular value's left vector still completes an orthonormal U.
  const rank1 = new Float64Array([1, 2, 2, 4, 3, 6]); // [1 2; 2 4; 3 6] = (1,2,3)ᵀ(1,2)
  const { u, s } = svdViaGram(rank1, 3, 2);
  assert.ok(Math.abs(s[0] - Math.sqrt(14 * 5)) < 1e-12 && s[1] < 1e-7);
  const utu = matmul(transpose(u, 3, 2), u, 2, 3, 2);
  assert.ok(maxAbsDiff(utu, [1, 0, 0, 1]) < 1e-12, `UᵀU = I, got ${utu}`);

  // A^-1/2 of [[4,1],[1,3]] squares to A⁻¹, and is symmetric.
  const spd = new Float64Array([4, 1, 1, 3]);
  const isq = inverseSqrtSymmetric(spd, 2);
  assert.ok(maxAbsDiff(matmul(matmul(isq, isq, 2, 2, 2), spd, 2, 2, 2), [1, 0, 0, 1]) < 1e-12);
  assert.ok(Math.abs(isq[1] - isq[2]) < 1e-15);
  // diag(4, 9)^-1/2 = diag(1/2, 1/3).
  assert.ok(maxAbsDiff(inverseSqrtSymmetric(new Float64Array([4, 0, 0, 9]), 2), [0.5, 0, 0, 1 / 3]) < 1e-15);
  assert.throws(() => inverseSqrtSymmetric(new Float64Array([1, 2, 2, 1]), 2, 'Σ11 + r1·I'), /Σ11 \+ r1·I is not positive definite.*increase its regulariser/);

  const l = cholesky(spd, 2);
  const b = new Float64Array([1, 2, 3, 4, 5, 6]); // 2×3
  const x = solveLowerMatrix(l, b, 2, 3);
  assert.ok(maxAbsDiff(matmul(l, x, 2, 2, 3), b) < 1e-14, 'L X = B');
  const xt = solveLowerTransposeMatrix(l, b, 2, 3);
  assert.ok(maxAbsDiff(matmul(transpose(l, 2, 2), xt, 2, 2, 3), b) < 1e-14, 'Lᵀ X = B');
});

/**
 * Two views sharing one latent z: x = a z + noise (σ² = 1/3), y = b z + noise (σ² = 1/4), unit a
 * and b. The first canonical correlation is corr(a·x, z)·corr(b·y, z) = √(3/4)·√(4/5), along a
 * and b; the others are zero.
 */
function plantedViews(n: number, seed: number) {
  const rng = new Rng(seed);
  const p = 6;
  const q = 4;
  const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));
  const a = unit([0.6, -0.3, 0.5, 0.2, -0.4, 0.3]);
  const b = unit([0.2, 0.7, -0.5, 0.46]);
  const x = new Float64Array(n * p);
  const y = new Float64Array(n * q);
  for (let i = 0; i < n; i++) {
    const z = rng.normal();
    for (let j = 0; j < p; j++) x[i * p + j] = a[j] * z + Math.sqrt(1 / 3) * rng.normal();
    for (let j = 0; j < q; j++) y[i * q + j] = b[j] * z + 0.5 * rng.normal();
  }
  return { x, y, p, q, a, b, rho: Math.sqrt(0.75 * 0.8) };
}

function columnCosine(w: Float64Array, rows: number, cols: number, col: number, dir: number[]): number {
  let dot = 0;
  let nn = 0;
  for (let i = 0; i < rows; i++) {
    dot += w[i * cols + col] * dir[i];
    nn += w[i * cols + col] ** 2;
  }
  return dot / Math.sqrt(nn);
}

test('CCA recovers a planted correlated direction (correlation within 0.02, direction cosine > 0.99); both whitenings agree', () => {
  const n = 20000;
  const { x, y, p, q, a, b, rho } = plantedViews(n, 3);
  const sym = fitCca(x, y, n, p, q, { r1: 0, r2: 0 });
  assert.equal(sym.k, 4);
  assert.ok(Math.abs(sym.correlations[0] - rho) < 0.02, `first canonical correlation ${sym.correlations[0]} vs planted ${rho}`);
  assert.ok(sym.correlations[1] < 0.06, `no second correlated pair, got ${sym.correlations[1]}`);
  assert.ok(Math.abs(columnCosine(sym.wx, p, sym.k, 0, a)) > 0.99, 'X direction ∥ a');
  assert.ok(Math.abs(columnCosine(sym.wy, q, sym.k, 0, b)) > 0.99, 'Y direction ∥ b');
  assert.ok(Math.abs(totalCorrelation(sym.correlations) - sym.correlations.reduce((s, c) => s + c, 0)) < 1e-12);
  // The canonical variates have unit variance and correlate by exactly the canonical correlations.
  const u = projectX(sym, x, n);
  const v = projectY(sym, y, n);
  assert.ok(maxAbsDiff(columnCorrelations(u, v, n, sym.k), sym.correlations) < 1e-6);
  let var0 = 0;
  for (let i = 0; i < n; i++) var0 += u[i * sym.k] ** 2 / (n - 1);
  assert.ok(Math.abs(var0 - 1) < 1e-6, `variate variance ${var0}`);
  const chol = fitCca(x, y, n, p, q, { r1: 0, r2: 0, whitening: 'cholesky' });
  assert.ok(maxAbsDiff(chol.correlations, sym.correlations) < 1e-9);
  assert.ok(maxAbsDiff(chol.wx, sym.wx) < 1e-6 * 10, 'same directions (same sign convention)');
  // Ridges shrink the correlations.
  const ridge = fitCca(x, y, n, p, q, { r1: 1, r2: 1 });
  assert.ok(ridge.correlations[0] < sym.correlations[0] - 0.1);
});

test('kernel CCA finds a nonlinear relation that linear CCA cannot (held-out correlation)', () => {
  // y = x1² + noise: uncorrelated with every linear function of x on a symmetric domain.
  const rng = new Rng(5);
  const make = (n: number) => {
    const x = new Float32Array(n * 2);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      x[i * 2] = 2 * rng.uniform() - 1;
      x[i * 2 + 1] = 2 * rng.uniform() - 1;
      y[i] = x[i * 2] ** 2 + 0.05 * rng.normal();
    }
    return { x, y, n };
  };
  const tr = make(1500);
  const te = make(800);
  const lin = fitCca(tr.x, tr.y, tr.n, 2, 1);
  const linTest = columnCorrelations(projectX(lin, te.x, te.n), projectY(lin, te.y, te.n), te.n, 1)[0];
  const ker = fitKcca(tr.x, tr.y, tr.n, 2, 1, { subsample: 400, seed: 1 });
  assert.equal(ker.m, 400);
  assert.ok(ker.bandwidth > 0.3 && ker.bandwidth < 2, `median-distance bandwidth ${ker.bandwidth}`);
  const kerTest = columnCorrelations(kccaProjectX(ker, te.x, te.n), kccaProjectY(ker, te.y, te.n), te.n, 1)[0];
  assert.ok(Math.abs(linTest) < 0.15, `linear CCA test correlation ${linTest}`);
  assert.ok(kerTest > 0.9, `kernel CCA test correlation ${kerTest}`);
  assert.ok(ker.correlations[0] > 0.9 && ker.correlations[0] <= 1);
  // The same subsample for the same seed; an RBF label side works too.
  assert.deepEqual(fitKcca(tr.x, tr.y, tr.n, 2, 1, { subsample: 400, seed: 1 }).indices, ker.indices);
  const rbf = fitKcca(tr.x, tr.y, tr.n, 2, 1, { subsample: 400, seed: 1, labelKernel: 'rbf' });
  assert.equal(rbf.labelKernel, 'rbf');
  assert.ok(Number.isFinite(rbf.correlations[0]));
});

test('shared-space scoring: the Gaussian rule, Euclidean distance and cosine on hand-made variates', () => {
  // Two labels at v = ±(1, 0) with ρ = (0.8, 0): an image variate u = (0.7, 5) is nearer +.
  const v = [1, 0, -1, 0];
  const s = sharedSpaceScores([0.7, 5], v, 1, 2, 2, [0.8, 0], 'gaussian');
  // −½[(0.7 − 0.8)² / (1 − 0.64) + 25]  and  −½[(0.7 + 0.8)² / 0.36 + 25].
  assert.ok(Math.abs(s[0] - -0.5 * (0.01 / 0.36 + 25)) < 1e-5 && Math.abs(s[1] - -0.5 * (2.25 / 0.36 + 25)) < 1e-5);
  const e = sharedSpaceScores([0.7, 5], v, 1, 2, 2, [0.8, 0], 'euclidean');
  assert.ok(Math.abs(e[0] - -0.5 * (0.09 + 25)) < 1e-5);
  const c = sharedSpaceScores([1, 1], [1, 1, 1, -1], 1, 2, 2, [0.5, 0.5], 'cosine');
  assert.ok(Math.abs(c[0] - 1) < 1e-6 && Math.abs(c[1]) < 1e-6);
});

test('Deep CCA: the closed-form gradient of the total correlation matches finite differences', () => {
  const rng = new Rng(1);
  const n = 40;
  const o1 = 3;
  const o2 = 4;
  const h1 = new Float64Array(n * o1).map(() => rng.normal());
  const h2 = new Float64Array(n * o2).map(() => rng.normal());
  for (let i = 0; i < n; i++) {
    h2[i * o2] += h1[i * o1];
    h2[i * o2 + 1] += 0.5 * h1[i * o1 + 1];
  }
  for (const k of [1, 2, 3]) {
    const f = correlationObjective(h1, h2, n, o1, o2, 1e-3, 1e-2, k);
    assert.ok(Math.abs(f.corr - totalCorrelation(f.correlations, k)) < 1e-12);
    const eps = 1e-6;
    let worst = 0;
    let scale = 0;
    for (const [h, g] of [[h1, f.grad1], [h2, f.grad2]] as const) {
      for (let i = 0; i < h.length; i++) {
        const keep = h[i];
        h[i] = keep + eps;
        const up = correlationObjective(h1, h2, n, o1, o2, 1e-3, 1e-2, k).corr;
        h[i] = keep - eps;
        const down = correlationObjective(h1, h2, n, o1, o2, 1e-3, 1e-2, k).corr;
        h[i] = keep;
        const fd = (up - down) / (2 * eps);
        worst = Math.max(worst, Math.abs(fd - g[i]));
        scale = Math.max(scale, Math.abs(fd));
      }
    }
    assert.ok(scale > 1e-3, 'the gradient is not trivially zero');
    assert.ok(worst < 1e-7, `k=${k}: largest |analytic − finite difference| ${worst} (gradient scale ${scale})`);
  }
  assert.throws(() => correlationObjective(h1, h2.subarray(0, 39 * o2), n, o1, o2, 1e-3, 1e-3), /must have 40 rows/);
});

/** The fast program's loss terms and every gradient equal tfjs autodiff of `loss`. */
async function assertFastMatchesTfjs(model: Trainable, rows: number, labelDim: number, labels: Int32Array, y: Float32Array): Promise<void> {
  const x = new Rng(5).fillUniform(new Float32Array(rows * 784), 0, 1);
  // A correlation does not change when an output is shifted: DCCA's output biases have no gradient.
  await assertTapeMatchesTfjs(model, { x, y, labels, rows, labelDim }, 0, { tol: 1e-4, termTol: 1e-4, vanishing: /\.\d+\.b$/ });
}

test('Deep CCA: the loss is −(total correlation), the fast path equals tfjs autodiff, and a short run raises the correlation', async () => {
  const rng = new Rng(2);
  const rows = 60;
  const labels = Int32Array.from({ length: rows }, () => rng.int(10));
  const y = rng.fillUniform(new Float32Array(rows * 7), -1, 1);
  const small = createDcca({ inputDim: 784, labelDim: 7, outDim: 3, imageHidden: [20], labelHidden: [5] }, new Rng(3));
  await assertFastMatchesTfjs(small, rows, 7, labels, y);
  // Shifting an output does not change a correlation: the output biases get no gradient.
  const g = batchGradients(small, { x: tf.randomUniform([rows, 784], 0, 1, 'float32', 4) as tf.Tensor2D, y: tf.tensor2d(y, [rows, 7]), labels, rng }, 0);
  const norm = (name: string) => Math.hypot(...g.grads.get(name)!.dataSync());
  assert.ok(norm('image.1.b') < 1e-4 * norm('image.1.w') && norm('label.1.b') < 1e-4 * norm('label.1.w'), 'output-bias gradients vanish');
  g.dispose();
  const value = tf.tidy(() => {
    const r = lossOf(small, { x: tf.randomUniform([rows, 784], 0.3, 0.4, 'float32', 1) as tf.Tensor2D, y: tf.tensor2d(y, [rows, 7]), labels, rng }, 0);
    return [r.total.dataSync()[0], r.terms.correlation.dataSync()[0]];
  });
  assert.ok(Math.abs(value[0] + value[1]) < 1e-4 && value[1] > 0, `loss ${value[0]} = −correlation ${value[1]}`);
  small.dispose();

  // On real images with one-hot labels: the correlation of a fixed batch rises with training.
  const model = createDcca({ inputDim: 784, labelDim: 10, outDim: 4, imageHidden: [64] }, new Rng(0));
  const idx = Int32Array.from({ length: 1000 }, (_, i) => i);
  const x = imagesToFloat(ds.test, idx, 784);
  const yy = new Float32Array(1000 * 10);
  idx.forEach((i) => (yy[i * 10 + ds.test.labels[i]] = 1));
  const corr = () =>
    tf.tidy(() => {
      const h1 = model.imageOutputs(tf.tensor2d(x, [1000, 784])).dataSync();
      const h2 = model.labelOutputs(tf.tensor2d(yy, [1000, 10])).dataSync();
      return correlationObjective(h1, h2, 1000, 4, 4, 1e-3, 1e-3).corr;
    });
  const before = corr();
  const r = await train(model, ds.train, { pixels: 784, numClasses: 10 }, { steps: 40, batchSize: 500, lr: 1e-3, seed: 0 });
  assert.equal(r.engine, 'fast');
  const after = corr();
  assert.ok(after > before + 0.3 && after > 3, `test-batch total correlation ${before.toFixed(3)} → ${after.toFixed(3)}`);
  model.dispose();
});

test('DeViSE: the fast path equals tfjs autodiff for every similarity; one step changes the weights with a finite loss', async () => {
  const rng = new Rng(7);
  const vectors = Array.from(rng.fillUniform(new Float32Array(10 * 7), -1, 1));
  const rows = 50;
  // Held-out classes 2 and 5 never appear in a training batch.
  const labels = Int32Array.from({ length: rows }, () => [0, 1, 3, 4, 6, 7, 8, 9][rng.int(8)]);
  const y = new Float32Array(rows * 7);
  labels.forEach((c, i) => y.set(vectors.slice(c * 7, c * 7 + 7), i * 7));
  for (const similarity of ['dot', 'cosine', 'l2'] as const) {
    const m = createDevise(
      { inputDim: 784, numClasses: 10, labelDim: 7, classVectors: vectors, trainClasses: [0, 1, 3, 4, 6, 7, 8, 9], hidden: [16], similarity, margin: 0.5 },
      new Rng(1),
    );
    await assertFastMatchesTfjs(m, rows, 7, labels, y);
    m.dispose();
  }
  const m = createDevise({ inputDim: 784, numClasses: 10, labelDim: 7, classVectors: vectors, hidden: [16] }, new Rng(1));
  const w0 = m.params.serialize().blob.slice();
  const stepper = await Stepper.create(m, 1e-2);
  const xt = tf.tensor2d(rng.fillUniform(new Float32Array(rows * 784), 0, 1), [rows, 784]);
  const yt = tf.tensor2d(y, [rows, 7]);
  const terms = stepper.step({ x: xt, y: yt, labels, rng }, 0);
  assert.ok(Number.isFinite(terms.loss) && terms.loss > 0, `loss ${terms.loss}`);
  const w1 = m.params.serialize().blob;
  assert.ok(w1.some((b, i) => b !== w0[i]), 'a step changes the weights');
  // A held-out class in a batch is a clear error, not a silent wrong target.
  const held = createDevise({ inputDim: 784, numClasses: 10, labelDim: 7, classVectors: vectors, trainClasses: [0, 1], hidden: [4] }, new Rng(1));
  assert.throws(() => tf.tidy(() => void lossOf(held, { x: xt, y: yt, labels, rng }, 0)), /class \d is held out but appears in a training batch/);
  assert.throws(() => createDevise({ inputDim: 784, numClasses: 10, labelDim: 7, classVectors: vectors.slice(1) }, new Rng(1)), /classVectors must hold numClasses × labelDim/);
  tf.dispose([xt, yt]);
  await stepper.dispose();
  m.dispose();
  held.dispose();
});

test('DeViSE on the shipped Fashion-MNIST subset: 400 steps reach ≥ 75 % test annotation', async () => {
  const r = await coordinateRun({ method: 'devise', dataset: 'fashion-mnist-subset', steps: 400, hidden: [64], seed: 0 });
  assert.equal(r.trainImages, 10000);
  assert.equal(r.training?.engine, 'fast');
  assert.ok(r.annotationAccuracy >= 0.75, `annotation ${r.annotationAccuracy}`);
  assert.ok(r.training!.finalTerms.hinge < 0.2);
});

/**
 * Word vectors that describe how classes look: v_c = R · (mean training image of c), R a fixed
 * random 16×784 projection. Held-out classes then sit where a linear image→vector map puts their
 * images, so zero-shot annotation must work (unlike with random vectors).
 */
function visualVectorFile(): string {
  const phrases = ['t-shirt', 'trousers', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot'];
  const dim = 16;
  const rng = new Rng(21);
  const proj = rng.fillNormal(new Float32Array(dim * 784));
  const mean = new Float64Array(10 * 784);
  const count = new Float64Array(10);
  for (let i = 0; i < ds.train.count; i++) {
    const c = ds.train.labels[i];
    count[c]++;
    for (let p = 0; p < 784; p++) mean[c * 784 + p] += ds.train.images[i * 784 + p] / 255;
  }
  const data = new Float32Array(10 * dim);
  for (let c = 0; c < 10; c++) {
    for (let d = 0; d < dim; d++) {
      let s = 0;
      for (let p = 0; p < 784; p++) s += proj[d * 784 + p] * (mean[c * 784 + p] / count[c] - 0.3);
      data[c * dim + d] = s;
    }
  }
  const path = join(tmp(), 'visual.vec');
  writeWordVectors(path, new WordVectors(phrases, data, dim, 'visual'), 'text', { header: true });
  return path;
}

test('the runner: CCA annotation on the subset, zero-shot with word vectors for CCA and DeViSE, report.json', async () => {
  const out = tmp();
  const cca = await coordinateRun({ method: 'cca', dataset: 'fashion-mnist-subset', whitening: 'cholesky', out });
  assert.ok(cca.annotationAccuracy > 0.78, `CCA annotation ${cca.annotationAccuracy}`);
  assert.equal(cca.canonicalCorrelations!.length, 9);
  assert.ok(cca.canonicalCorrelations![0] > 0.9 && cca.testCorrelations![0] > 0.9);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).annotationAccuracy, cca.annotationAccuracy);

  // Ankle boot vs pullover (chance 50 %). (Sandal vs ankle boot is far harder for these vectors:
  // their difference lies mostly outside the span of the eight training classes' vectors.)
  const words = { kind: 'words' as const, source: visualVectorFile() };
  const holdout = ['Ankle boot', 'Pullover'];
  const zs = await coordinateRun({ method: 'cca', dataset: 'fashion-mnist-subset', labels: words, labelPhrases: 'Ankle boot=boot', holdout, whitening: 'cholesky', scoring: 'cosine' });
  const z = zs.zeroShot!;
  assert.deepEqual(z.heldOut, holdout);
  const unseenTest = ds.test.labels.filter((c) => c === 9 || c === 2).length;
  assert.equal(z.unseenImages, unseenTest);
  assert.equal(z.seenImages, ds.test.count - unseenTest);
  assert.equal(zs.trainImages, ds.train.count - ds.train.labels.filter((c) => c === 9 || c === 2).length);
  assert.equal(zs.canonicalCorrelations!.length, 7, 'eight training classes: seven canonical pairs');
  assert.ok(z.unseenAccuracy > 0.75, `CCA zero-shot (ankle boot vs pullover) ${z.unseenAccuracy}`);
  // Split by class, the unseen accuracy recombines to the overall one.
  const perClass = holdout.map((h, i) => z.unseenPerClass[h] * ds.test.labels.filter((c) => c === [9, 2][i]).length);
  assert.ok(Math.abs(perClass[0] + perClass[1] - z.unseenAccuracy * unseenTest) < 1e-9, JSON.stringify(z.unseenPerClass));
  assert.ok(z.seenAccuracy > 0.75, `seen-class accuracy ${z.seenAccuracy}`);

  const dv = await coordinateRun({ method: 'devise', dataset: 'fashion-mnist-subset', labels: words, labelPhrases: 'Ankle boot=boot', holdout, steps: 300, hidden: [64] });
  assert.ok(dv.zeroShot!.unseenAccuracy > 0.85, `DeViSE zero-shot ${dv.zeroShot!.unseenAccuracy}`);
});

test('zero-shot with word vectors: use (label map Vᵀv) and bimodal-ae (decoded vector) tell two held-out classes apart', async () => {
  const words = { kind: 'words' as const, source: visualVectorFile() };
  const holdout = ['Ankle boot', 'Pullover'];
  // The visual vectors are not WordNet nouns' phrases ('boot' is): the taxonomy still comes from WordNet.
  const u = await coordinateRun({ method: 'use', dataset: 'fashion-mnist-subset', labels: words, labelPhrases: 'Ankle boot=boot', holdout, steps: 400, hidden: [64] });
  assert.ok(u.zeroShot!.unseenAccuracy > 0.85, `use zero-shot ${u.zeroShot!.unseenAccuracy}`);
  assert.ok(u.hierarchy!.parents.every((p) => !p.classes.includes('Pullover') || p.classes.length >= 2));
  const b = await coordinateRun({ method: 'bimodal-ae', dataset: 'fashion-mnist-subset', labels: words, labelPhrases: 'Ankle boot=boot', holdout, steps: 400, hidden: [128] });
  assert.equal(b.options.labelKind, 'words');
  assert.ok(b.zeroShot!.unseenAccuracy > 0.75, `bimodal-ae zero-shot ${b.zeroShot!.unseenAccuracy}`);
});

test('the runner: kernel CCA and Deep CCA annotate in their canonical spaces', async () => {
  let seenSpace = 0;
  const k = await coordinateRun({
    method: 'kcca',
    dataset: 'fashion-mnist-subset',
    subsample: 500,
    r1: 1e-4,
    seed: 1,
    onFitted: (space) => {
      // Variates of two images and of two one-hot label rows, 9 canonical pairs each.
      assert.equal(space.k, 9);
      assert.equal(space.images(imagesToFloat(ds.test, [0, 1], 784), 2).length, 18);
      assert.equal(space.labels(Float32Array.from({ length: 20 }, (_, i) => (i === 3 || i === 15 ? 1 : 0)), 2).length, 18);
      seenSpace++;
    },
  });
  assert.equal(seenSpace, 1);
  assert.equal(k.options.subsample, 500);
  assert.ok((k.options.bandwidth as number) > 1, 'median-distance bandwidth of 784-pixel images');
  assert.ok(k.annotationAccuracy > 0.7, `KCCA annotation ${k.annotationAccuracy}`);
  assert.equal(k.testCorrelations!.length, 9);
  const d = await coordinateRun({ method: 'dcca', dataset: 'fashion-mnist-subset', steps: 20, batchSize: 500, hidden: [32], seed: 0 });
  assert.equal(d.training?.steps, 20);
  assert.equal(d.options.outDim, 9);
  assert.ok(d.annotationAccuracy > 0.6, `DCCA annotation after 20 steps ${d.annotationAccuracy}`);
  assert.ok(d.training!.finalTerms.correlation > 3);
});

test('bad inputs give clear errors', async () => {
  const x = new Float64Array(100 * 3).map((_, i) => Math.sin(i));
  const y = new Float64Array(100 * 2).map((_, i) => Math.cos(i));
  assert.throws(() => fitCca(x, y.subarray(0, 99 * 2), 100, 3, 2), /Y has 99 rows but the other view has 100/);
  assert.throws(() => fitCca(x, y, 100, 3, 2, { r1: -1 }), /r1 must be a finite number ≥ 0, got -1/);
  assert.throws(() => fitCca(x, y, 100, 3, 2, { r2: NaN }), /r2 must be a finite number ≥ 0, got NaN/);
  const bad = Float64Array.from(x);
  bad[3 * 3 + 1] = NaN;
  assert.throws(() => fitCca(bad, y, 100, 3, 2), /X has a non-finite value \(NaN\) at row 3, column 1/);
  // A constant column without a ridge: singular Σ11.
  const flat = Float64Array.from(x);
  for (let i = 0; i < 100; i++) flat[i * 3] = 1;
  assert.throws(() => fitCca(flat, y, 100, 3, 2, { r1: 0, whitening: 'cholesky' }), /Σ11 \+ r1·I is not positive definite.*increase r1/);
  assert.throws(() => fitCca(flat, y, 100, 3, 2, { r1: 0 }), /Σ11 \+ r1·I is not positive definite/);
  assert.throws(() => fitKcca(x, y, 100, 3, 2, { r1: 0 }), /r1 must be a finite number > 0, got 0/);
  assert.throws(() => fitKcca(x, y, 100, 3, 2, { bandwidth: -2 }), /bandwidth must be a number > 0/);
  await assert.rejects(coordinateRun({ method: 'pca', dataset: 'fashion-mnist-subset' }), /unknown method 'pca': choose one of cca, kcca, dcca, devise, use, bimodal-ae/);
  await assert.rejects(
    coordinateRun({ method: 'cca', dataset: 'fashion-mnist-subset', holdout: ['Sandal'] }),
    /--holdout needs word-vector labels/,
  );
  await assert.rejects(coordinateRun({ method: 'cca', dataset: 'fashion-mnist-subset', margin: 0.2 }), /option margin does not apply to cca/);
  await assert.rejects(coordinateRun({ method: 'cca', dataset: 'fashion-mnist-subset', holdout: ['Sandle'], labels: { kind: 'words', source: 'x.vec' } }), /'Sandle' is not a class/);
  await assert.rejects(coordinateCommand.run(['--method', 'lda', '--dataset', 'fashion-mnist-subset']), /unknown method 'lda'/);
  await assert.rejects(coordinateCommand.run(['--method', 'devise', '--similarity', 'hamming']), /--similarity must be dot, cosine, l2/);
});

test('probsem coordinate prints a JSON report and writes report.json', async () => {
  const out = tmp();
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  // Strings are the command's output; anything else (the test runner's own protocol) passes through.
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) =>
    typeof s === 'string' ? (chunks.push(s), true) : write(s, ...(rest as []))) as typeof process.stdout.write;
  let code: number;
  try {
    code = await coordinateCommand.run(['--method', 'devise', '--dataset', 'fashion-mnist-subset', '--steps', '30', '--hidden', '16', '--similarity', 'l2', '--json', '--quiet', '--out', out]);
  } finally {
    process.stdout.write = write;
  }
  assert.equal(code, 0);
  const r = JSON.parse(chunks.join(''));
  assert.equal(r.method, 'devise');
  assert.equal(r.options.similarity, 'l2');
  assert.deepEqual(r.options.hidden, [16]);
  assert.ok(r.annotationAccuracy > 0.3 && r.annotationAccuracy <= 1);
  assert.equal(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).training.steps, 30);
});
