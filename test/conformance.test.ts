// The conformance suite: every model in the registry (and the coordinated-embedding models),
// each objective recorded on the tape, must give tfjs autodiff's loss terms and gradients, train
// exactly the parameters tfjs's loss reaches, and train to the same place on both engines.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend, assertTapeMatchesTfjs } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import type { Dataset } from '../src/data/dataset.js';
import { oneHot } from '../src/data/dataset.js';
import { createModel, modelNames } from '../src/models/registry.js';
import { createDcca } from '../src/models/dcca.js';
import { createDevise } from '../src/models/devise.js';
import { createUse } from '../src/models/use.js';
import { type ImageModel, type Trainable, lossOf } from '../src/models/base.js';
import { loadModel, saveModel } from '../src/models/persist.js';
import { makeRawBatch, train } from '../src/train/trainer.js';
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

const WORDS = Array.from({ length: 10 * 7 }, (_, i) => Math.sin(1.7 * i + 0.3));

/** Models outside the image-model registry, built by their own factories. */
const FACTORIES: Record<string, (extra: object, labelDim: number) => Trainable> = {
  devise: (extra, labelDim) =>
    createDevise({ inputDim: 784, numClasses: 10, labelDim, classVectors: labelDim === 10 ? Array.from(oneHot(Int32Array.from({ length: 10 }, (_, i) => i), 10)) : WORDS, hidden: [20], ...extra }, new Rng(3)),
  dcca: (extra, labelDim) => createDcca({ inputDim: 784, labelDim, outDim: 4, imageHidden: [24], ...extra }, new Rng(3)),
  use: (extra, labelDim) =>
    createUse({ inputDim: 784, numClasses: 10, labelDim, classVectors: labelDim === 10 ? Array.from(oneHot(Int32Array.from({ length: 10 }, (_, i) => i), 10)) : WORDS, hidden: [20], embedDim: 6, ...extra }, new Rng(3)),
};

function build(name: string, extra: object, labelDim: number): Trainable {
  const f = FACTORIES[name];
  return f ? f(extra, labelDim) : createModel(name, { inputDim: 784, numClasses: 10, ...(labelDim === 10 ? {} : { labelDim }), ...extra }, 3);
}

// Odd sizes on purpose: ragged panels, odd rows, a label encoder with a hidden layer, word-vector
// label inputs (width 7) instead of one-hot. Every model named by the registry must appear.
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
  // Step 2 of a 4-step KL warm-up: the KL enters at weight ½ on both engines.
  ['pse-star', { latent: 3, klWarmupSteps: 4 }, 7],
  ['trelbo', { latent: 5 }, 10],
  ['trelbo', { latent: 3, lambda1: 7, lambda2: 0.3, labelHidden: [6], labelDecoderHidden: [5], jointHidden: [20, 9], encoderHidden: [25], decoderHidden: [19] }, 7],
  // The test runs step 2: SCAN's stage 1 (label encoder frozen), then stage 2 (image model frozen).
  ['tvae', { latent: 5 }, 10],
  ['tvae', { latent: 4, mining: 'semi-hard', margin: 2, tripletWeight: 3, beta: 0.5 }, 7],
  ['scan', { latent: 4, stage1Steps: 5 }, 10],
  ['scan', { latent: 3, stage1Steps: 1, labelHidden: [9], labelLrScale: 3, encoderHidden: [30, 12], decoderHidden: [12, 30] }, 7],
  ['informed', { latent: 10, encoderHidden: [30, 16], decoderHidden: [16, 30] }, 10],
  ['informed', { latent: 10, encoderConv: [4, 6], encoderKernel: 3, imageHeight: 28, encoderHidden: [20], decoderHidden: [24], priorMean: 'mean' }, 10],
  ['vae', { latent: 3, encoderConv: [5], encoderKernel: 5, imageHeight: 28, encoderHidden: [12], decoderHidden: [14] }, 10],
  ['poe', { latent: 4, encoderHidden: [20], decoderHidden: [22] }, 10],
  ['mopoe', { latent: 4, encoderHidden: [20], decoderHidden: [22] }, 10],
  ['mopoe', { latent: 3, labelHidden: [6], labelDecoderHidden: [5], labelWeight: 5, encoderHidden: [10], decoderHidden: [12] }, 7],
  ['mmvae', { latent: 4, encoderHidden: [20], decoderHidden: [22] }, 10],
  ['mmvae', { latent: 3, labelHidden: [6], labelDecoderHidden: [5], labelWeight: 5, encoderConv: [3], encoderKernel: 3, imageHeight: 28, encoderHidden: [10], decoderHidden: [12] }, 7],
  ['poe', { latent: 3, labelHidden: [6], labelDecoderHidden: [5], labelWeight: 5, encoderConv: [3], encoderKernel: 3, imageHeight: 28, encoderHidden: [10], decoderHidden: [12] }, 7],
  // Transposed-convolution decoders and the gaussian and discretised-logistic likelihoods: 28×28
  // from 7×7 (two layers), and from 4×4 up to 32×32 cropped back to 28×28 (three layers).
  ['pse-star', { latent: 4, encoderConv: [3], encoderKernel: 3, imageHeight: 28, decoderConv: [4, 3], decoderKernel: 3, encoderHidden: [12], decoderHidden: [], classifierHidden: [8] }, 10],
  ['vae', { latent: 3, imageHeight: 28, decoderConv: [3], decoderHidden: [6], likelihood: 'gaussian' }, 10],
  ['pse', { latent: 3, imageHeight: 28, decoderConv: [4, 3, 2], decoderKernel: 3, decoderHidden: [], encoderHidden: [10], likelihood: 'logistic' }, 7],
  ['jmvae', { latent: 3, imageHeight: 28, decoderConv: [3, 2], decoderKernel: 3, decoderHidden: [], jointHidden: [10], encoderHidden: [10], likelihood: 'logistic' }, 10],
  ['scan', { latent: 3, stage1Steps: 5, imageHeight: 28, decoderConv: [2], decoderHidden: [], encoderHidden: [10], likelihood: 'gaussian' }, 10],
  ['cvae', { latent: 3, imageHeight: 28, decoderConv: [3, 2], decoderKernel: 3, decoderHidden: [], encoderHidden: [12], likelihood: 'logistic' }, 7],
  ['ae', { latent: 4, imageHeight: 28, decoderConv: [3], decoderHidden: [5], encoderHidden: [12], likelihood: 'gaussian' }, 10],
  ['bimodal-ae', { latent: 4, imageHeight: 28, decoderConv: [2, 2], decoderKernel: 3, decoderHidden: [], encoderHidden: [12], labelHidden: [5], labelDecoderHidden: [4] }, 10],
  ['bimodal-ae', { latent: 6, encoderHidden: [20], decoderHidden: [22], labelHidden: [5], labelDecoderHidden: [4] }, 10],
  ['bimodal-ae', { latent: 5, encoderHidden: [18], decoderHidden: [21], labelHidden: [], labelDecoderHidden: [], labelKind: 'words', codeActivation: 'relu', labelWeight: 3 }, 7],
  ['ae', { latent: 6, encoderHidden: [20], decoderHidden: [22] }, 10],
  ['denoising-ae', { latent: 5, encoderHidden: [20], decoderHidden: [22], noiseSd: 0.3 }, 10],
  ['sparse-ae', { latent: 5, encoderHidden: [20], decoderHidden: [22], rho: 0.1, beta: 2 }, 10],
  ['classifier', { arch: 'cnn', filters: 3, kernel: 5, hidden: [12], dropout: 0.3, augmentShift: 2 }, 10],
  ['classifier', { arch: 'mlp', hidden: [16, 9], dropout: 0 }, 10],
  ['devise', { similarity: 'cosine' }, 10],
  ['devise', { similarity: 'dot', margin: 0.5 }, 7],
  ['devise', { similarity: 'l2' }, 7],
  ['use', { hierarchy: { parentOf: [0, 0, -1, 1, 1, 1, 0, 2, 2, -1], members: [[0, 1, 6], [3, 4, 5], [7, 8]] } }, 10],
  ['use', { hierarchy: { parentOf: [0, 0, 0, -1, -1, 1, 0, 1, -1, 1], members: [[0, 1, 2, 6], [5, 7, 9]] }, margin: 0.5, residualWeight: 0.1 }, 7],
  ['use', { ontologyWeight: 0, residualWeight: 0 }, 7],
  ['dcca', {}, 10],
  ['dcca', { labelHidden: [5], topK: 2 }, 7],
];

test('conformance: every registered model has a case here', () => {
  const covered = new Set(cases.map(([n]) => n));
  for (const name of [...modelNames(), ...Object.keys(FACTORIES)]) assert.ok(covered.has(name), `${name} has no conformance case`);
});

for (const [name, extra, labelDim] of cases) {
  test(`${name} ${JSON.stringify(extra)}: the tape's loss terms, gradients and trained parameters equal tfjs autodiff`, async () => {
    const model = build(name, extra, labelDim);
    const rng = new Rng(5);
    // Dcca needs more rows than outputs for stable covariances.
    const rows = name === 'dcca' ? 60 : 37;
    const labels = Int32Array.from({ length: rows }, () => rng.int(10));
    const x = rng.fillUniform(new Float32Array(rows * 784), 0, 1);
    const y = labelDim === 10 ? oneHot(labels, 10) : rng.fillUniform(new Float32Array(rows * labelDim), -1, 1);
    // Step 2: inside JMVAE's warm-up, so its KL weight is neither 0 nor 1; SCAN's stage 1 or 2 by config.
    // A correlation does not change when an output is shifted: DCCA's output biases have no gradient.
    await assertTapeMatchesTfjs(model, { x, y, labels, rows, labelDim }, 2, { vanishing: name === 'dcca' ? /\.b$/ : undefined });
  });
}

// The lifecycle every model gets by being registered, on real images (one case per model): a
// step changes the weights it trains and evaluating the objective changes none; a saved model
// loads with identical outputs; a run stopped and resumed ends where the uninterrupted run ends.
const firstCase = new Map<string, [object, number]>();
for (const [name, extra] of cases) if (!firstCase.has(name)) firstCase.set(name, [extra, 10]);
// The same lifecycle for the convolutional decoders and the other likelihoods (their own parameters: transposed-convolution filters, a crop, logScale).
const decoderLifecycle: [string, [object, number]][] = cases
  .filter(([, extra]) => 'decoderConv' in extra || 'likelihood' in extra)
  .map(([name, extra]) => [`${name} ${JSON.stringify({ decoderConv: (extra as { decoderConv?: number[] }).decoderConv, likelihood: (extra as { likelihood?: string }).likelihood })}`, [extra, 10]]);
for (const [label, [extra, labelDim]] of [...firstCase, ...decoderLifecycle]) {
  const name = label.split(' ')[0];
  test(`${label}: a step trains, evaluation does not, save/load round trip and resume are exact`, async () => {
    const opts = { batchSize: 20, lr: 1e-3, seed: 5 };
    const idx = Int32Array.from({ length: 20 }, (_, i) => 7 * i);
    const batch = makeRawBatch(ds.train, idx, 784, 10);
    const xt = tf.tensor2d(batch.x, [20, 784]);
    const yt = tf.tensor2d(batch.y, [20, 10]);
    const lossTerms = (m: Trainable) =>
      tf.tidy(() => Object.fromEntries(Object.entries(lossOf(m, { x: xt, y: yt, labels: batch.labels, rng: new Rng(3) }, 0).terms).map(([k, v]) => [k, v.dataSync()[0]])));
    try {
      const model = build(name, extra, labelDim);
      const w0 = weights(model);
      lossTerms(model);
      assert.deepEqual(weights(model), w0, 'evaluating the objective leaves the weights');
      await train(model, ds.train, SHAPE, { ...opts, steps: 1 });
      const w1 = weights(model);
      assert.ok(w1.some((v, i) => v !== w0[i]), 'one step changes the weights');
      assert.ok(w1.every(Number.isFinite), 'finite weights');
      // Save/load: registered models through a model directory, the others through their parameters.
      const terms = lossTerms(model);
      let loaded: Trainable;
      if (FACTORIES[name]) {
        loaded = build(name, extra, labelDim);
        const { manifest, blob } = model.params.serialize();
        loaded.params.load(manifest, blob, 'memory');
      } else {
        const dir = mkdtempSync(join(tmpdir(), `probsem-conf-${name}-`));
        saveModel(dir, model as Trainable & { config: object }, { classNames: ds.classNames });
        loaded = loadModel(dir).model;
      }
      assert.deepEqual(weights(loaded), w1, 'the same weights after a round trip');
      assert.deepEqual(lossTerms(loaded), terms, 'the same outputs after a round trip');
      // Resume equals uninterrupted.
      const whole = build(name, extra, labelDim);
      await train(whole, ds.train, SHAPE, { ...opts, steps: 4 });
      const dir = mkdtempSync(join(tmpdir(), `probsem-resume-${name}-`));
      const first = build(name, extra, labelDim);
      await train(first, ds.train, SHAPE, { ...opts, steps: 4, outDir: dir, stopAfter: 2 });
      const resumed = build(name, extra, labelDim);
      await train(resumed, ds.train, SHAPE, { ...opts, steps: 4, outDir: dir, resume: true });
      assert.deepEqual(weights(resumed), weights(whole), 'resumed run equals the uninterrupted one');
    } finally {
      tf.dispose([xt, yt]);
    }
  });
}

// PSE*, TrELBO (shared decoders), PoE, MoPoE and SCAN (frozen stages, 60 % of the steps in stage 1) on both engines.
// A label encoder at 10× the learning rate gets well past chance in 300 steps (at 1× both models
// still annotate at ~0.3, where a few test images decide the comparison).
// Layers a quarter of the defaults' width: the comparison is between engines, not of the models'
// capacity, and the tfjs engine at full width made these the suite's slowest tests.
const QUARTER_WIDTH = { encoderHidden: [128, 32], decoderHidden: [32, 128] };
const realRuns: [string, object, number][] = [
  ['pse-star', { classifierHidden: [128, 32] }, 0.7],
  ['trelbo', { labelLrScale: 10 }, 0.35],
  ['poe', {}, 0.35],
  ['mopoe', {}, 0.5],
  ['scan', { stage1Steps: 180, labelLrScale: 10 }, 0.4],
];
for (const [name, extra, minAcc] of realRuns) {
  test(`${name}: tape and tfjs engines train to the same place (same seed, 300 steps, annotation within 2 points)`, async () => {
    const run = async (engine: 'fast' | 'tfjs') => {
      const m = createModel(name, { inputDim: 784, numClasses: 10, latent: 10, ...QUARTER_WIDTH, ...extra }, 0) as unknown as ImageModel & Trainable;
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

test('mmvae: 300 steps on the tape annotate through the image expert alone (≥ 0.7), the mixture term stays finite', async () => {
  const m = createModel('mmvae', { inputDim: 784, numClasses: 10, latent: 10 }, 0) as unknown as ImageModel & Trainable;
  const r = await train(m, ds.train, SHAPE, { steps: 300, batchSize: 100, lr: 1e-3, seed: 0, engine: 'fast' });
  const acc = annotationAccuracy(m, ds.test, 784, oneHotLabelInputs(10));
  assert.ok(acc >= 0.7, `annotation ${acc}`);
  // A one-sample estimate of KL(q_mix ‖ N(0, I)) can dip below 0 on a batch, but not far.
  assert.ok(Number.isFinite(r.finalTerms.kl) && r.finalTerms.kl > -1, `kl ${r.finalTerms.kl}`);
});

test('the tape engine is reproducible for any thread count and resumes exactly', async () => {
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

test('engine choice: every model runs on the tape by default; data-parallel workers and unknown engines are refused', async () => {
  const judge = createModel('classifier', { inputDim: 784, numClasses: 10, arch: 'mlp', hidden: [8], dropout: 0 }, 0);
  const pse = createModel('pse', { inputDim: 784, numClasses: 10, latent: 2 }, 0);
  await assert.rejects(train(pse, ds.train, SHAPE, { steps: 1, batchSize: 10, lr: 1e-3, seed: 0, workers: 2 }), /data-parallel training \(--workers 2\) was removed/);
  await assert.rejects(train(pse, ds.train, SHAPE, { steps: 1, batchSize: 10, lr: 1e-3, seed: 0, engine: 'gpu' as never }), /engine must be auto, fast or tfjs/);
  const r = await train(judge, ds.train, SHAPE, { steps: 2, batchSize: 10, lr: 1e-3, seed: 0 });
  assert.ok(Number.isFinite(r.finalTerms.loss));
  assert.equal(r.engine, 'fast');
  for (const [name, extra] of [['trelbo', {}], ['scan', { stage1Steps: 1 }]] as const) {
    const m = createModel(name, { inputDim: 784, numClasses: 10, latent: 2, encoderHidden: [16], decoderHidden: [16], ...extra }, 0);
    assert.equal((await train(m, ds.train, SHAPE, { steps: 2, batchSize: 10, lr: 1e-3, seed: 0 })).engine, 'fast', name);
  }
});
