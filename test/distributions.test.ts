import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend, assertClose } from './helpers.js';
import {
  DiagGaussian,
  FullGaussian,
  kl,
  pairwiseLogProb,
  bernoulliLogLikelihood,
} from '../src/distributions/index.js';
import { cholesky, logDetFromCholesky, solveLower, invertLower, matmul, transpose } from '../src/core/linalg.js';
import { Rng } from '../src/core/random.js';
import { welchTTest } from '../src/eval/stats.js';

before(async () => {
  await setupBackend();
});

const num = (t: tf.Tensor) => Array.from(t.dataSync());

/** A random well-conditioned lower-triangular factor with positive diagonal. */
function randomTril(rng: Rng, k: number): number[][] {
  const l: number[][] = [];
  for (let i = 0; i < k; i++) {
    const row: number[] = [];
    for (let j = 0; j < k; j++) row.push(j < i ? 0.4 * rng.normal() : j === i ? 0.5 + rng.uniform() : 0);
    l.push(row);
  }
  return l;
}

function randomFull(rng: Rng, batch: number, k: number): FullGaussian {
  const means: number[][] = [];
  const ls: number[][][] = [];
  for (let b = 0; b < batch; b++) {
    means.push(Array.from({ length: k }, () => rng.normal()));
    ls.push(randomTril(rng, k));
  }
  return new FullGaussian(tf.tensor2d(means), tf.tensor3d(ls));
}

function randomDiag(rng: Rng, batch: number, k: number): DiagGaussian {
  const m = Array.from({ length: batch }, () => Array.from({ length: k }, () => rng.normal()));
  const lv = Array.from({ length: batch }, () => Array.from({ length: k }, () => rng.normal() * 0.7));
  return new DiagGaussian(tf.tensor2d(m), tf.tensor2d(lv));
}

test('diag KL matches a hand-computed value', () => {
  // p = N(1, 0.5²), q = N(0, 1): KL = 0.5 (0.25 + 1 − 1 − ln 0.25)
  const p = new DiagGaussian(tf.tensor2d([[1]]), tf.tensor2d([[Math.log(0.25)]]));
  const q = DiagGaussian.standard(1);
  assertClose(num(kl(p, q))[0], 0.5 * (0.25 + 1 - 1 - Math.log(0.25)), 1e-6, 'KL');
  // Two dimensions add up; q with its own variance: N(0,1) ‖ N(2, 4) = 0.5 (1/4 + 4/4 − 1 + ln 4)
  const p2 = new DiagGaussian(tf.tensor2d([[0, 0]]), tf.tensor2d([[0, 0]]));
  const q2 = new DiagGaussian(tf.tensor2d([[2, 2]]), tf.tensor2d([[Math.log(4), Math.log(4)]]));
  assertClose(num(kl(p2, q2))[0], 2 * 0.5 * (0.25 + 1 - 1 + Math.log(4)), 1e-5, 'KL 2-D');
});

test('KL(p‖p) = 0 and KL ≥ 0 for every registered pair', () => {
  const rng = new Rng(1);
  const d1 = randomDiag(rng, 6, 4);
  const d2 = randomDiag(rng, 6, 4);
  const f1 = randomFull(rng, 6, 4);
  const f2 = randomFull(rng, 6, 4);
  for (const v of num(kl(d1, d1))) assertClose(v, 0, 1e-5, 'KL diag self');
  for (const v of num(kl(f1, f1))) assertClose(v, 0, 1e-4, 'KL full self');
  for (const [p, q] of [[d1, d2], [f1, f2], [d1, f1], [f1, d1]] as const) {
    for (const v of num(kl(p, q))) assert.ok(v > 0, `KL ${p.kind}‖${q.kind} = ${v} should be > 0`);
  }
});

test('full‖full equals diag‖diag when the factors are diagonal, and mixed pairs agree', () => {
  const rng = new Rng(2);
  const p = randomDiag(rng, 5, 3);
  const q = randomDiag(rng, 5, 3);
  const ref = num(kl(p, q));
  const variants = [kl(p.toFull(), q.toFull()), kl(p, q.toFull()), kl(p.toFull(), q)];
  for (const v of variants) num(v).forEach((x, i) => assertClose(x, ref[i], 1e-4, `row ${i}`));
});

test('full‖full KL matches a Monte-Carlo estimate of E_p[log p − log q]', () => {
  const rng = new Rng(3);
  const k = 3;
  const p = randomFull(rng, 1, k);
  const q = randomFull(rng, 1, k);
  const exact = num(kl(p, q))[0];
  const n = 40000;
  const eps = tf.tensor2d(rng.fillNormal(new Float32Array(n * k)), [n, k]);
  const pb = new FullGaussian(tf.tile(p.mean, [n, 1]), tf.tile(p.scaleTril, [n, 1, 1]));
  const z = pb.sample(eps);
  const est = tf.mean(tf.sub(pb.logProb(z), new FullGaussian(tf.tile(q.mean, [n, 1]), tf.tile(q.scaleTril, [n, 1, 1])).logProb(z))).dataSync()[0];
  // The estimator's standard error is well under 2% of the value for these shapes.
  assertClose(est, exact, 0.03 * exact + 0.02, 'MC KL');
});

test('diag KL matches Monte Carlo too', () => {
  const rng = new Rng(4);
  const p = randomDiag(rng, 1, 4);
  const q = randomDiag(rng, 1, 4);
  const exact = num(kl(p, q))[0];
  const n = 40000;
  const eps = tf.tensor2d(rng.fillNormal(new Float32Array(n * 4)), [n, 4]);
  const pb = new DiagGaussian(tf.tile(p.mean, [n, 1]), tf.tile(p.logVar, [n, 1]));
  const z = pb.sample(eps);
  const est = tf.mean(tf.sub(pb.logProb(z), q.logProb(z))).dataSync()[0];
  assertClose(est, exact, 0.03 * exact + 0.02, 'MC KL');
});

test('full-covariance sampling has covariance L Lᵀ and log-density matches the closed form', () => {
  const rng = new Rng(5);
  const k = 3;
  const g = randomFull(rng, 1, k);
  const n = 50000;
  const eps = tf.tensor2d(rng.fillNormal(new Float32Array(n * k)), [n, k]);
  const z = new FullGaussian(tf.tile(g.mean, [n, 1]), tf.tile(g.scaleTril, [n, 1, 1])).sample(eps);
  const centred = tf.sub(z, tf.mean(z, 0));
  const cov = num(tf.div(tf.matMul(centred, centred, true, false), n - 1));
  const expected = num(g.covariance());
  cov.forEach((c, i) => assertClose(c, expected[i], 0.05 * Math.max(1, Math.abs(expected[i])), `cov[${i}]`));

  // log N(x; μ, Σ) = −½ (k log 2π + log|Σ| + (x−μ)ᵀ Σ⁻¹ (x−μ)), computed in float64.
  const mu = num(g.mean);
  const sigma = Float64Array.from(expected);
  const l = cholesky(sigma, k);
  const x = [0.3, -1.2, 0.8];
  const m = solveLower(l, Float64Array.from(x.map((v, i) => v - mu[i])), k);
  const maha = m.reduce((s, v) => s + v * v, 0);
  const ref = -0.5 * (k * Math.log(2 * Math.PI) + logDetFromCholesky(l, k) + maha);
  assertClose(num(g.logProb(tf.tensor2d([x])))[0], ref, 1e-4, 'logProb');
});

test('diag log-density is the product of 1-D normals', () => {
  const g = new DiagGaussian(tf.tensor2d([[0, 1]]), tf.tensor2d([[0, Math.log(4)]]));
  const n1 = (x: number, m: number, s: number) => -0.5 * Math.log(2 * Math.PI * s * s) - ((x - m) ** 2) / (2 * s * s);
  assertClose(num(g.logProb(tf.tensor2d([[0.5, 2]])))[0], n1(0.5, 0, 1) + n1(2, 1, 2), 1e-5, 'logProb');
});

test('pairwiseLogProb equals row-by-row logProb', () => {
  const rng = new Rng(6);
  const g = randomDiag(rng, 4, 5);
  const z = tf.tensor2d(rng.fillNormal(new Float32Array(7 * 5)), [7, 5]);
  const m = pairwiseLogProb(z, g).arraySync();
  for (let c = 0; c < 4; c++) {
    const gc = new DiagGaussian(tf.slice(g.mean, [c, 0], [1, -1]), tf.slice(g.logVar, [c, 0], [1, -1]));
    const col = num(gc.logProb(z));
    col.forEach((v, i) => assertClose(m[i][c], v, 1e-3, `[${i},${c}]`));
  }
});

test('Bernoulli log-likelihood matches x log σ(l) + (1−x) log(1−σ(l)) and is finite for huge logits', () => {
  const logits = tf.tensor2d([[0, 2, -3, 80, -80]]);
  const x = tf.tensor2d([[1, 0.25, 0, 1, 0]]);
  const sig = (l: number) => 1 / (1 + Math.exp(-l));
  const ref = [0, 2, -3].map((l, i) => [1, 0.25, 0][i] * Math.log(sig(l)) + (1 - [1, 0.25, 0][i]) * Math.log(1 - sig(l))).reduce((a, b) => a + b, 0);
  const v = num(bernoulliLogLikelihood(logits, x))[0];
  assert.ok(Number.isFinite(v));
  assertClose(v, ref, 1e-4, 'Bernoulli');
});

test('Cholesky, triangular solve and inverse agree with hand values', () => {
  const l = cholesky(Float64Array.from([4, 2, 2, 3]), 2);
  assert.deepEqual(Array.from(l).map((v) => +v.toFixed(12)), [2, 0, 1, +Math.SQRT2.toFixed(12)]);
  assertClose(logDetFromCholesky(l, 2), Math.log(8), 1e-12, 'log det');
  const inv = invertLower(l, 2);
  const prod = matmul(l, inv, 2, 2, 2);
  assert.deepEqual(Array.from(prod).map((v) => Math.round(v * 1e9) / 1e9), [1, 0, 0, 1]);
  assert.deepEqual(Array.from(transpose(Float64Array.from([1, 2, 3, 4, 5, 6]), 2, 3)), [1, 4, 2, 5, 3, 6]);
  assert.throws(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2), /not positive definite/);
});

test('kl rejects mismatched dimensions', () => {
  assert.throws(() => kl(DiagGaussian.standard(2), DiagGaussian.standard(3)), /dimensions differ/);
});

test("Welch's t-test matches scipy.stats.ttest_ind(equal_var=False)", () => {
  let r = welchTTest([1, 2, 3, 4, 5], [2, 3, 4, 5, 6]);
  assertClose(r.t, -1, 1e-12, 't');
  assertClose(r.df, 8, 1e-9, 'df');
  assertClose(r.p, 0.34659350708733416, 1e-9, 'p');
  r = welchTTest([0.81, 0.82, 0.815, 0.83, 0.812], [0.8, 0.805, 0.79, 0.81, 0.8]);
  assertClose(r.t, 3.3645007534350957, 1e-9, 't');
  assertClose(r.df, 7.956343792633021, 1e-9, 'df');
  assertClose(r.p, 0.009944614964329095, 1e-9, 'p');
  assert.throws(() => welchTTest([1], [2, 3]), /at least two values/);
});
