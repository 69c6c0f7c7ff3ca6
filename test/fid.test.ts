/** The judge's Fréchet distance (src/eval/fid.ts): closed forms, and generated against real images. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { createModel, evaluate, saveModel, train } from '../src/api.js';
import { symmetricEigen } from '../src/core/linalg.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import { FeatureMoments, frechetDistance } from '../src/eval/fid.js';
import { setupBackend } from './helpers.js';

before(setupBackend);

test('Fréchet distance: 0 for equal Gaussians, the closed form for commuting covariances, symmetric', () => {
  const d = 6;
  const rng = Rng.for(5, 'fid');
  const a = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) a[i * d + j] = a[j * d + i] = rng.normal();
  const q = symmetricEigen(a, d).vectors;
  // Σ = Q diag(s²) Qᵀ for two spectra on the same basis: FD = ‖Δμ‖² + Σ (s1 − s2)².
  const build = (s: number[]) => {
    const c = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) c[i * d + j] += q[i * d + k] * s[k] ** 2 * q[j * d + k];
    return c;
  };
  const s1 = [3, 2, 1, 0.5, 0.2, 0];
  const s2 = [1, 2.5, 1, 0.1, 0.4, 0.3];
  const m1 = Float64Array.from({ length: d }, () => rng.normal());
  const m2 = Float64Array.from({ length: d }, () => rng.normal());
  const expected = m1.reduce((t, v, i) => t + (v - m2[i]) ** 2, 0) + s1.reduce((t, v, i) => t + (v - s2[i]) ** 2, 0);
  const fd = frechetDistance(m1, build(s1), m2, build(s2));
  assert.ok(Math.abs(fd - expected) < 1e-9 * (1 + expected), `${fd} vs ${expected}`);
  assert.ok(Math.abs(frechetDistance(m2, build(s2), m1, build(s1)) - fd) < 1e-9 * (1 + fd));
  assert.equal(frechetDistance(m1, build(s1), m1, build(s1)) < 1e-9, true);

  // Moments from samples: mean and the unbiased covariance.
  const fm = new FeatureMoments(2);
  fm.add([1, 2, 3, 6, 5, 10], 3);
  const { mean, cov } = fm.moments();
  assert.deepEqual(Array.from(mean), [3, 6]);
  assert.deepEqual(Array.from(cov), [4, 8, 8, 16]);
  assert.throws(() => fm.add([1, 2, 3], 2), /expected 2×2 values/);
});

test('eval reports the judge FID: generated images are farther from the real ones than real images are from each other', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'probsem-fid-'));
  try {
    const data = await loadDataset('fashion-mnist-subset');
    saveModel(join(dir, 'run'), await train(createModel('pse-star', { latent: 8 }, { dataset: data, seed: 1 }), data, { steps: 600, seed: 1 }));
    const r = await evaluate(join(dir, 'run'), { samplesPerLabel: 200, repeats: 1, triplets: 0 });
    assert.ok(r.judgeFid, 'a judge FID with generation');
    assert.equal(r.judgeFid.generatedPerLabel, 200);
    assert.equal(Object.keys(r.judgeFid.perLabel).length, 10);
    for (const [c, v] of Object.entries(r.judgeFid.perLabel)) assert.ok(Number.isFinite(v) && v > 0, `${c}: ${v}`);
    assert.ok(r.judgeFid.overall > 0);
    // The floor: real training images against real test images, through the same features.
    const { getJudge } = await import('../src/eval/judge.js');
    const judge = (await getJudge(data)).classifier;
    const tf = await import('@tensorflow/tfjs-core');
    const moments = (split: typeof data.train, n: number) => {
      const m = new FeatureMoments(256);
      const t = tf.tidy(() => judge.features(tf.div(tf.tensor2d(split.images.subarray(0, n * 784), [n, 784], 'float32'), 255) as never));
      m.add(t.dataSync(), n);
      t.dispose();
      return m.moments();
    };
    const a = moments(data.train, 2000);
    const b = moments(data.test, 2000);
    const floor = frechetDistance(a.mean, a.cov, b.mean, b.cov);
    assert.ok(floor < r.judgeFid.overall, `real vs real ${floor} < generated vs real ${r.judgeFid.overall}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
