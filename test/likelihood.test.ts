/** Importance-sampled NLL (src/eval/likelihood.ts) against numerical integration. */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { createModel } from '../src/api.js';
import { Rng } from '../src/core/random.js';
import { importanceSampledNll } from '../src/eval/likelihood.js';
import type { Split } from '../src/data/dataset.js';
import { setupBackend } from './helpers.js';

before(setupBackend);

const P = 16;

/** log p(x) = log ∫ N(z; prior) Π_p Bernoulli(x_p | σ(decode(z)_p)) dz by the trapezoid rule on a fine 1-D grid. */
function quadrature(model: ReturnType<typeof createModel<'vae'>>, x: Float32Array, logPrior: (z: number) => number): number {
  const zs = Float32Array.from({ length: 8001 }, (_, i) => -10 + (20 * i) / 8000);
  const logLik = tf.tidy(() => {
    const logits = model.decode(tf.tensor2d(zs, [zs.length, 1]));
    return tf.sum(tf.sub(tf.mul(tf.tensor2d(x, [1, P]), logits), tf.softplus(logits)), 1).dataSync();
  });
  const terms = Array.from(zs, (z, i) => logLik[i] + logPrior(z));
  const max = Math.max(...terms);
  let s = 0;
  terms.forEach((t, i) => (s += Math.exp(t - max) * (i === 0 || i === terms.length - 1 ? 0.5 : 1)));
  return max + Math.log(s * (20 / 8000));
}

test('with a 1-D latent, the estimate converges to the integral and stays below it; the ELBO is looser', () => {
  const model = createModel('vae', { inputDim: P, numClasses: 2, latent: 1, encoderHidden: [8], decoderHidden: [8] }, { seed: 4 });
  const rng = Rng.for(2, 'nll-test');
  const count = 6;
  const images = Uint8Array.from({ length: count * P }, () => (rng.uniform() < 0.4 ? 255 : rng.uniform() < 0.5 ? 128 : 0));
  const split: Split = { images, labels: new Uint8Array(count), count };
  let exact = 0;
  for (let i = 0; i < count; i++) {
    const x = Float32Array.from(images.subarray(i * P, (i + 1) * P), (v) => v / 255);
    exact -= quadrature(model, x, (z) => -0.5 * (z * z + Math.log(2 * Math.PI)));
  }
  exact /= count;
  const k1 = importanceSampledNll(model, split, P, { samples: 1, seed: 1 });
  const k5000 = importanceSampledNll(model, split, P, { samples: 5000, seed: 1 });
  assert.ok(Math.abs(k5000.nll - exact) < 0.02, `K=5000: ${k5000.nll} vs the integral ${exact}`);
  assert.ok(k5000.nll >= exact - 0.02, 'a lower bound on log p(x): the NLL estimate is not below the truth');
  assert.ok(k5000.negativeElbo > k5000.nll, `−ELBO ${k5000.negativeElbo} > NLL ${k5000.nll}`);
  assert.ok(k1.nll > k5000.nll, 'more samples, a tighter bound');
  assert.equal(k5000.images, count);
  // The same seed gives the same estimate.
  assert.equal(importanceSampledNll(model, split, P, { samples: 50, seed: 7 }).nll, importanceSampledNll(model, split, P, { samples: 50, seed: 7 }).nll);
});

test('label-mixture priors (PSE*) and models without an NLL', () => {
  const model = createModel('pse-star', { inputDim: P, numClasses: 3, latent: 1, encoderHidden: [8], decoderHidden: [8], labelHidden: [8], classifierHidden: [8] }, { seed: 5 });
  const classInputs = tf.eye(3) as tf.Tensor2D;
  const rng = Rng.for(3, 'nll-test');
  const images = Uint8Array.from({ length: 4 * P }, () => (rng.uniform() < 0.5 ? 255 : 0));
  const split: Split = { images, labels: new Uint8Array(4), count: 4 };
  const { mean, logVar } = tf.tidy(() => {
    const g = model.encodeLabels(classInputs);
    return { mean: g.mean.dataSync(), logVar: g.logVar.dataSync() };
  });
  const logPrior = (z: number) => {
    const comps = [0, 1, 2].map((c) => -0.5 * ((z - mean[c]) ** 2 / Math.exp(logVar[c]) + logVar[c] + Math.log(2 * Math.PI)));
    const m = Math.max(...comps);
    return m + Math.log(comps.reduce((s, v) => s + Math.exp(v - m), 0) / 3);
  };
  let exact = 0;
  for (let i = 0; i < 4; i++) exact -= quadrature(model as never, Float32Array.from(images.subarray(i * P, (i + 1) * P), (v) => v / 255), logPrior);
  exact /= 4;
  const r = importanceSampledNll(model, split, P, { samples: 5000, classInputs, seed: 2 });
  assert.equal(r.prior, 'label-mixture');
  assert.ok(Math.abs(r.nll - exact) < 0.03, `PSE* K=5000: ${r.nll} vs ${exact}`);
  classInputs.dispose();
  assert.throws(() => importanceSampledNll(createModel('ae', { inputDim: P, numClasses: 2 }) as never, split, P, { samples: 5 }), /not defined here for a ae model/);
  assert.throws(() => importanceSampledNll(model, split, P, { samples: 5 }), /needs its class inputs/);
});

test('eval reports the NLL beside the ELBO when asked, and says why a model has none', { timeout: 300_000 }, async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadDataset } = await import('../src/data/registry.js');
  const { saveModel, train, evaluate } = await import('../src/api.js');
  const dir = mkdtempSync(join(tmpdir(), 'probsem-nll-'));
  try {
    const data = await loadDataset('fashion-mnist-subset');
    saveModel(join(dir, 'vae'), await train(createModel('vae', { latent: 4, encoderHidden: [32], decoderHidden: [32] }, { dataset: data }), data, { steps: 100 }));
    const r = await evaluate(join(dir, 'vae'), { skipGeneration: true, triplets: 0, nllSamples: 50, nllImages: 20 });
    assert.ok(r.nll, 'an NLL');
    assert.equal(r.nll.images, 20);
    assert.equal(r.nll.samples, 50);
    assert.ok(r.nll.nll > 50 && r.nll.nll < r.nll.negativeElbo, `NLL ${r.nll.nll}, −ELBO ${r.nll.negativeElbo}`);
    assert.equal((await evaluate(join(dir, 'vae'), { skipGeneration: true, triplets: 0 })).nll, undefined, 'not measured unless asked');
    saveModel(join(dir, 'ae'), await train(createModel('ae', { latent: 4, encoderHidden: [32], decoderHidden: [32] }, { dataset: data }), data, { steps: 10 }));
    const notes: string[] = [];
    const ae = await evaluate(join(dir, 'ae'), { skipGeneration: true, triplets: 0, nllSamples: 5, onNotice: (m) => notes.push(m) });
    assert.equal(ae.nll, null);
    assert.ok(notes.some((m) => /NLL is not defined here for a ae model/.test(m)), notes.join('; '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
