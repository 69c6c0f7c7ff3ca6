/**
 * Numerical faults an independent check against scikit-learn and scipy found: PCA with nearly
 * equal eigenvalues, CCA rounding in float32, and a negative KL(p ‖ p).
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { fitCca } from '../src/analysis/cca.js';
import { pca } from '../src/analysis/projection.js';
import { symmetricEigen } from '../src/core/linalg.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import { DiagGaussian } from '../src/distributions/gaussian.js';
import { kl } from '../src/distributions/kl.js';
import { setupBackend } from './helpers.js';

before(setupBackend);

test('PCA separates components whose variances differ by 0.1 %: exact, orthogonal, descending', () => {
  const d = 12;
  const rng = Rng.for(7, 'pca-test');
  // A random orthonormal basis: the eigenvectors of a random symmetric matrix.
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) a[i * d + j] = a[j * d + i] = rng.normal();
  const q = symmetricEigen(a, d).vectors;
  const lambda = [10, 9.99, 9.98, 9.97, 5, 4.995, 3, 2, 1, 0.5, 0.25, 0.125];
  // 2d points ±c_i q_i: mean 0 and sample covariance exactly Σ λ_i q_i q_iᵀ.
  const n = 2 * d;
  const data = new Float64Array(n * d);
  for (let i = 0; i < d; i++) {
    const c = Math.sqrt((lambda[i] * (n - 1)) / 2);
    for (let j = 0; j < d; j++) {
      data[2 * i * d + j] = c * q[j * d + i];
      data[(2 * i + 1) * d + j] = -c * q[j * d + i];
    }
  }
  const r = pca(data, n, d, d);
  for (let i = 0; i < d; i++) {
    assert.ok(Math.abs(r.variances[i] - lambda[i]) < 1e-9 * lambda[0], `variance ${i}: ${r.variances[i]} vs ${lambda[i]}`);
    let along = 0;
    for (let j = 0; j < d; j++) along += r.components[i][j] * q[j * d + i];
    assert.ok(Math.abs(Math.abs(along) - 1) < 1e-8, `component ${i} is ±q_${i} (|cos| ${Math.abs(along)})`);
    for (let k = 0; k < i; k++) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += r.components[i][j] * r.components[k][j];
      assert.ok(Math.abs(dot) < 1e-10, `components ${k} and ${i} are orthogonal (${dot})`);
    }
  }
  assert.ok(Math.abs(r.totalVariance - lambda.reduce((s, v) => s + v, 0)) < 1e-9);
});

test('CCA of pixels against one-hot labels matches float64 numpy, and its last correlation is 0', async () => {
  const ds = await loadDataset('fashion-mnist-subset');
  const n = 2000;
  const x = Float32Array.from(ds.test.images.subarray(0, n * 784), (v) => v / 255);
  const y = new Float32Array(n * 10);
  for (let i = 0; i < n; i++) y[i * 10 + ds.test.labels[i]] = 1;
  const f = fitCca(x, y, n, 784, 10, {});
  // numpy, float64: Σ11^-1/2 Σ12 Σ22^-1/2 with ridges 1e-4, its singular values (computed once
  // with python3-numpy 2.4 on these exact inputs).
  const reference = [0.9793426, 0.9519554, 0.9231944, 0.9023772, 0.877834, 0.8644191, 0.843167, 0.7269198, 0.7072338, 3.2e-12];
  for (let i = 0; i < 9; i++) assert.ok(Math.abs(f.correlations[i] - reference[i]) < 1e-5, `correlation ${i}: ${f.correlations[i]} vs ${reference[i]}`);
  // One-hot rows sum to one: the tenth direction carries no correlation at all (was 0.011–0.017).
  assert.ok(Math.abs(f.correlations[9]) < 1e-6, `last correlation ${f.correlations[9]}`);
});

test('a diagonal KL is never negative: KL(p ‖ p) is exactly 0 and KL(p ‖ q) ≥ 0', () => {
  const rng = Rng.for(3, 'kl-test');
  for (let t = 0; t < 20; t++) {
    const mean = Float32Array.from({ length: 200 * 16 }, () => 3 * rng.normal());
    const logVar = Float32Array.from({ length: 200 * 16 }, () => 3 * rng.normal());
    const v = tf.tidy(() => {
      const p = new DiagGaussian(tf.tensor2d(mean, [200, 16]), tf.tensor2d(logVar, [200, 16]));
      const q = new DiagGaussian(tf.tensor2d(mean, [200, 16]), tf.add(tf.tensor2d(logVar, [200, 16]), 1e-6) as tf.Tensor2D);
      return tf.concat([kl(p, p), kl(p, q)]);
    });
    const values = v.dataSync();
    v.dispose();
    for (let i = 0; i < 200; i++) assert.equal(values[i], 0, `KL(p ‖ p) row ${i}`);
    for (let i = 200; i < 400; i++) assert.ok(values[i] >= 0, `KL(p ‖ q) row ${i - 200}: ${values[i]}`);
  }
  // The closed form still holds: KL(N(1, e) ‖ N(0, 1)) per dimension = 0.5 (e + 1 − 1 − 1) = 0.5(e − 1).
  const one = tf.tidy(() => kl(new DiagGaussian(tf.tensor2d([[1]]), tf.tensor2d([[1]])), new DiagGaussian(tf.tensor2d([[0]]), tf.tensor2d([[0]]))).dataSync()[0]);
  assert.ok(Math.abs(one - 0.5 * (Math.E - 1)) < 1e-6, `${one}`);
});
