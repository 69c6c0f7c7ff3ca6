import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend, gradientDifference } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { Kernels } from '../src/core/wasm/kernels.js';
import { loadDataset } from '../src/data/registry.js';
import type { Dataset } from '../src/data/dataset.js';
import { oneHot } from '../src/data/dataset.js';
import { createModel } from '../src/models/registry.js';
import type { ImageModel, Trainable } from '../src/models/base.js';
import { FastParams, slice } from '../src/nn/fast.js';
import { batchGradients } from '../src/train/gradients.js';
import { train } from '../src/train/trainer.js';
import { annotationAccuracy, oneHotLabelInputs } from '../src/eval/metrics.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});
const SHAPE = { pixels: 784, numClasses: 10 };

function weights(m: Trainable): Float32Array {
  return new Float32Array(m.params.serialize().blob.buffer.slice(0));
}

// Odd sizes on purpose: ragged panels, odd rows, a label encoder with a hidden layer, word-vector
// label inputs (width 7) instead of one-hot.
const cases: [string, object, number][] = [
  ['vae', { latent: 5, encoderHidden: [33, 17], decoderHidden: [17, 40] }, 10],
  ['beta-vae', { latent: 3, beta: 4 }, 10],
  ['pse', { latent: 6, labelHidden: [9] }, 7],
  ['pse-star', { latent: 10 }, 10],
  ['jmvae', { latent: 5, warmupSteps: 4 }, 10],
  ['jmvae', { latent: 3, labelHidden: [6], labelDecoderHidden: [5] }, 7],
  ['cvae', { latent: 4, encoderHidden: [30, 12], decoderHidden: [12, 30] }, 10],
  ['cvae', { latent: 2 }, 7],
  ['pse-star', { latent: 4, encoderHidden: [20], decoderHidden: [24], classifierHidden: [18, 5], classifierWeight: 3 }, 7],
  ['trelbo', { latent: 5 }, 10],
  ['trelbo', { latent: 3, lambda1: 7, lambda2: 0.3, labelHidden: [6], labelDecoderHidden: [5], jointHidden: [20, 9], encoderHidden: [25], decoderHidden: [19] }, 7],
  // The test runs step 2: SCAN's stage 1 (label encoder frozen), then stage 2 (image model frozen).
  ['tvae', { latent: 5 }, 10],
  ['tvae', { latent: 4, mining: 'semi-hard', margin: 2, tripletWeight: 3, beta: 0.5 }, 7],
  ['scan', { latent: 4, stage1Steps: 5 }, 10],
  ['scan', { latent: 3, stage1Steps: 1, labelHidden: [9], labelLrScale: 3, encoderHidden: [30, 12], decoderHidden: [12, 30] }, 7],
];

for (const [name, extra, labelDim] of cases) {
  test(`${name} ${JSON.stringify(extra)}: the fast path's loss and gradients equal tfjs autodiff`, async () => {
    const model = createModel(name, { inputDim: 784, numClasses: 10, labelDim: labelDim === 10 ? undefined : labelDim, ...extra }, 3);
    const rng = new Rng(5);
    const rows = 37;
    const labels = Int32Array.from({ length: rows }, () => rng.int(10));
    const x = rng.fillUniform(new Float32Array(rows * 784), 0, 1);
    const y = labelDim === 10 ? oneHot(labels, 10) : rng.fillUniform(new Float32Array(rows * labelDim), -1, 1);
    const xt = tf.tensor2d(x, [rows, 784]);
    const yt = tf.tensor2d(y, [rows, labelDim]);
    // Step 2: inside JMVAE's warm-up, so its KL weight is neither 0 nor 1.
    const want = batchGradients(model, { x: xt, y: yt, labels, rng: new Rng(9) }, 2);
    const k = await Kernels.create({ threads: 2 });
    try {
      const fp = new FastParams(k, model.params);
      const program = model.fastProgram!(fp, 50);
      const got = program.run({ x, y, labels, rows, pixels: 784, labelDim }, new Rng(9), 2);
      assert.deepEqual(Object.keys(got).sort(), Object.keys(want.terms).sort(), 'same loss terms');
      for (const [term, v] of Object.entries(want.terms)) {
        assert.ok(Math.abs(got[term] - v) <= 1e-5 * Math.max(1, Math.abs(v)), `${term}: fast ${got[term]} vs tfjs ${v}`);
      }
      // Frozen parameters are exactly those tfjs's loss does not reach (its Adam skips them).
      const frozen = program.frozen?.(2) ?? [];
      for (const s of fp.layout) {
        const isFrozen = frozen.some((p) => s.name.startsWith(p));
        assert.equal(want.grads.has(s.name), !isFrozen, `${s.name}: ${isFrozen ? 'frozen, yet the tfjs loss reaches it' : 'trains, yet the tfjs loss does not reach it'}`);
        if (isFrozen) continue;
        const a = want.grads.get(s.name)!.dataSync();
        const b = k.view(slice(fp.grads, s.offset, s.length));
        const { num, den } = gradientDifference(a, b);
        assert.ok(den > 0, `${s.name}: the reference gradient is not zero`);
        assert.ok(Math.sqrt(num / den) < 2e-5, `${s.name}: relative gradient difference ${Math.sqrt(num / den)}`);
      }
      assert.throws(() => model.fastProgram!(fp, 50).run({ x, y, labels, rows: 51, pixels: 784, labelDim }, new Rng(9), 0), /at most 50/);
    } finally {
      want.dispose();
      tf.dispose([xt, yt]);
      await k.dispose();
    }
  });
}

test('fast and tfjs engines train to the same place (same seed, 300 steps, annotation within 2 points)', async () => {
  const run = async (engine: 'fast' | 'tfjs') => {
    const m = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 10 }, 0) as unknown as ImageModel & Trainable;
    const r = await train(m, ds.train, SHAPE, { steps: 300, batchSize: 100, lr: 1e-3, seed: 0, engine });
    return { r, acc: annotationAccuracy(m, ds.test, 784, oneHotLabelInputs(10)) };
  };
  const fast = await run('fast');
  const slow = await run('tfjs');
  assert.equal(fast.r.engine, 'fast');
  assert.equal(slow.r.engine, 'tfjs');
  assert.ok(fast.acc >= 0.7, `fast-path annotation accuracy ${fast.acc}`);
  assert.ok(Math.abs(fast.acc - slow.acc) <= 0.02, `fast ${fast.acc} vs tfjs ${slow.acc}`);
  assert.ok(Math.abs(fast.r.finalTerms.recon - slow.r.finalTerms.recon) < 5, `recon ${fast.r.finalTerms.recon} vs ${slow.r.finalTerms.recon}`);
});

// TrELBO (shared decoders) and SCAN (frozen stages, 60 % of the steps in stage 1) on both engines.
// A label encoder at 10× the learning rate gets well past chance in 300 steps (at 1× both models
// still annotate at ~0.3, where a few test images decide the comparison).
const realRuns: [string, object, number][] = [
  ['trelbo', { labelLrScale: 10 }, 0.5],
  ['scan', { stage1Steps: 180, labelLrScale: 10 }, 0.4],
];
for (const [name, extra, minAcc] of realRuns) {
  test(`${name}: fast and tfjs engines train to the same place (same seed, 300 steps, annotation within 2 points)`, async () => {
    const run = async (engine: 'fast' | 'tfjs') => {
      const m = createModel(name, { inputDim: 784, numClasses: 10, latent: 10, ...extra }, 0) as unknown as ImageModel & Trainable;
      const r = await train(m, ds.train, SHAPE, { steps: 300, batchSize: 100, lr: 1e-3, seed: 0, engine });
      return { r, acc: annotationAccuracy(m, ds.test, 784, oneHotLabelInputs(10)) };
    };
    const fast = await run('fast');
    const slow = await run('tfjs');
    assert.equal(fast.r.engine, 'fast');
    assert.equal(slow.r.engine, 'tfjs');
    assert.ok(fast.acc >= minAcc, `fast-path annotation accuracy ${fast.acc}`);
    assert.ok(Math.abs(fast.acc - slow.acc) <= 0.02, `fast ${fast.acc} vs tfjs ${slow.acc}`);
    for (const term of Object.keys(slow.r.finalTerms)) {
      const [a, b] = [fast.r.finalTerms[term], slow.r.finalTerms[term]];
      assert.ok(Math.abs(a - b) <= Math.max(5, 0.05 * Math.abs(b)), `${term}: fast ${a} vs tfjs ${b}`);
    }
  });
}

test('the fast engine is reproducible for any thread count and resumes exactly', async () => {
  const cfg = { inputDim: 784, numClasses: 10, latent: 4, encoderHidden: [40, 16], decoderHidden: [16, 40], classifierHidden: [24, 8] };
  const opts = { steps: 20, batchSize: 50, lr: 1e-3, seed: 4, engine: 'fast' as const };
  const prev = process.env.PROBSEM_THREADS;
  const withThreads = async (threads: string) => {
    process.env.PROBSEM_THREADS = threads;
    try {
      const m = createModel('pse-star', cfg, 4);
      await train(m, ds.train, SHAPE, opts);
      return weights(m);
    } finally {
      if (prev === undefined) delete process.env.PROBSEM_THREADS;
      else process.env.PROBSEM_THREADS = prev;
    }
  };
  const two = await withThreads('2');
  assert.deepEqual(await withThreads('1'), two, 'one and two threads give identical weights');
  assert.deepEqual(await withThreads('2'), two, 'same seed, same weights');
});

test('engine choice: fast refuses models without a fast path and data-parallel workers', async () => {
  const judge = createModel('classifier', { inputDim: 784, numClasses: 10, arch: 'mlp', hidden: [8], dropout: 0 }, 0);
  await assert.rejects(train(judge, ds.train, SHAPE, { steps: 1, batchSize: 10, lr: 1e-3, seed: 0, engine: 'fast' }), /classifier has no fast training path/);
  const pse = createModel('pse', { inputDim: 784, numClasses: 10, latent: 2 }, 0);
  await assert.rejects(train(pse, ds.train, SHAPE, { steps: 1, batchSize: 10, lr: 1e-3, seed: 0, engine: 'fast', workers: 2 }), /one replica/);
  await assert.rejects(train(pse, ds.train, SHAPE, { steps: 1, batchSize: 10, lr: 1e-3, seed: 0, engine: 'gpu' as never }), /engine must be auto, fast or tfjs/);
  // auto falls back to tfjs for a model without a fast path, and picks fast where there is one.
  const r = await train(judge, ds.train, SHAPE, { steps: 2, batchSize: 10, lr: 1e-3, seed: 0 });
  assert.ok(Number.isFinite(r.finalTerms.loss));
  assert.equal(r.engine, 'tfjs');
  for (const [name, extra] of [['trelbo', {}], ['scan', { stage1Steps: 1 }]] as const) {
    const m = createModel(name, { inputDim: 784, numClasses: 10, latent: 2, encoderHidden: [16], decoderHidden: [16], ...extra }, 0);
    assert.equal((await train(m, ds.train, SHAPE, { steps: 2, batchSize: 10, lr: 1e-3, seed: 0 })).engine, 'fast', name);
  }
});
