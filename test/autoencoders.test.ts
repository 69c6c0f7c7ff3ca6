/** The autoencoders of lecture 003 (compression, denoising, sparse) and `probsem reconstruct`. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import * as tf from '@tensorflow/tfjs-core';
import { assertClose, assertTapeMatchesTfjs, setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import { type Dataset, imagesToFloat } from '../src/data/dataset.js';
import { createModel } from '../src/models/registry.js';
import { type ImageModel, type Trainable, lossOf } from '../src/models/base.js';
import { POINT_MASS_LOG_VAR } from '../src/models/autoencoder.js';
import { corruptImages, corruptRows } from '../src/models/denoising-ae.js';
import { sparsityPenalty } from '../src/models/sparse-ae.js';
import { bernoulliLogLikelihood } from '../src/distributions/bernoulli.js';
import { loadModel, saveModel } from '../src/models/persist.js';
import { train } from '../src/train/trainer.js';
import { reconstructionError } from '../src/eval/metrics.js';
import { evaluateRun, reconstruct, trainRun } from '../src/runs/runs.js';
import { reconstructCommand } from '../src/cli/commands/reconstruct.js';
import { setOptions } from '../src/cli/commands/train.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const SHAPE = { pixels: 784, numClasses: 10 };
const VARIANTS = ['ae', 'denoising-ae', 'sparse-ae'] as const;
const small = { inputDim: 784, numClasses: 10, latent: 8, encoderHidden: [24], decoderHidden: [24] };
const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-ae-'));
const weights = (m: Trainable) => new Float32Array(m.params.serialize().blob.buffer.slice(0));
const snapshot = (m: Trainable) => new Map(m.params.entries().map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
const changed = (a: Float32Array, b: Float32Array) => a.some((x, i) => x !== b[i]);
const testImages = (count: number) => imagesToFloat(ds.test, Int32Array.from({ length: count }, (_, i) => i), 784);

for (const name of VARIANTS) {
  test(`${name}: one training step changes every weight; evaluation changes none and leaks no tensors`, async () => {
    const m = createModel(name, small, 1) as Trainable & ImageModel;
    const before = snapshot(m);
    for (const engine of ['tfjs', 'fast'] as const) {
      const start = snapshot(m);
      const r = await train(m, ds.train, SHAPE, { steps: 1, batchSize: 32, lr: 1e-3, seed: 1, engine });
      assert.equal(r.engine, engine);
      for (const [n, v] of m.params.entries()) assert.ok(changed(v.dataSync() as Float32Array, start.get(n)!), `${engine}: parameter ${n} did not change`);
    }
    assert.ok(before.size === 8, `two layers each side: ${[...before.keys()]}`);
    const w0 = weights(m);
    const startTensors = tf.memory().numTensors;
    const sampled = reconstructionError(m, ds.test, 784, 0, 'sample');
    const mean = reconstructionError(m, ds.test, 784, 0, 'mean');
    reconstruct(m, testImages(5), 784);
    assert.equal(tf.memory().numTensors, startTensors, 'evaluation leaves no tensors behind');
    assert.deepEqual(weights(m), w0, 'evaluation must not change weights');
    // The code is a point mass: sampling from it moves nothing that matters.
    assert.ok(Number.isFinite(mean) && mean > 0, `reconstruction error ${mean}`);
    assertClose(sampled, mean, 1e-3 * mean, 'sampled vs mean reconstruction error');
  });

  test(`${name}: loss terms are finite; save/load reproduces the weights and reconstructions exactly`, async () => {
    const m = createModel(name, small, 2) as Trainable & ImageModel;
    const r = await train(m, ds.train, SHAPE, { steps: 4, batchSize: 8, lr: 1e-3, seed: 3 });
    const expected = name === 'sparse-ae' ? ['loss', 'meanActivation', 'recon', 'sparsity'] : ['loss', 'recon'];
    assert.deepEqual(Object.keys(r.finalTerms).sort(), expected);
    for (const [k, v] of Object.entries(r.finalTerms)) assert.ok(Number.isFinite(v), `${k} = ${v}`);
    const dir = tmp();
    saveModel(dir, m, { classNames: ds.classNames });
    const { model: loaded, meta } = loadModel(dir);
    assert.equal(meta.model, name);
    assert.deepEqual(weights(loaded), weights(m));
    const x = testImages(6);
    const a = reconstruct(loaded as unknown as ImageModel, x, 784);
    assert.deepEqual(a, reconstruct(m, x, 784));
    assert.ok(a.every((p) => p >= 0 && p <= 1));
    tf.tidy(() => {
      const q = (loaded as unknown as ImageModel).encodeImage(tf.tensor2d(x, [6, 784]));
      assert.deepEqual(q.mean.shape, [6, 8]);
      assert.ok((q.logVar.dataSync() as Float32Array).every((v) => v === POINT_MASS_LOG_VAR), 'fixed log-variance');
      const codes = q.mean.dataSync() as Float32Array;
      if (name === 'sparse-ae') assert.ok(codes.every((c) => c > 0 && c < 1), 'sigmoid code');
      else assert.ok(codes.every((c) => c >= 0), 'ReLU code');
    });
  });
}

// Odd sizes, a linear code, two hidden layers and noise σ that clips often.
const fastCases: [string, object][] = [
  ['ae', {}],
  ['ae', { latent: 5, encoderHidden: [33, 17], decoderHidden: [19], codeActivation: 'linear' }],
  ['ae', { latent: 3, codeActivation: 'sigmoid' }],
  ['denoising-ae', { noiseSd: 0.3 }],
  ['sparse-ae', {}],
  ['sparse-ae', { latent: 7, rho: 0.2, beta: 0.7, encoderHidden: [40, 12] }],
];
for (const [name, extra] of fastCases) {
  test(`${name} ${JSON.stringify(extra)}: the tape's loss and gradients equal tfjs autodiff on real images`, async () => {
    const model = createModel(name, { inputDim: 784, numClasses: 10, ...extra }, 3);
    const rows = 37;
    const idx = Int32Array.from({ length: rows }, (_, i) => 11 * i);
    const labels = Int32Array.from(idx, (i) => ds.train.labels[i]);
    await assertTapeMatchesTfjs(model, { x: imagesToFloat(ds.train, idx, 784), y: new Float32Array(rows * 10), labels, rows, labelDim: 10 }, 2);
  });
}

test('sparse penalty equals Σ_j KL(ρ ‖ ρ̂_j) on a hand-made activation matrix', () => {
  // Columns average to ρ̂ = (0.2, 0.6, 0.05).
  const a = tf.tensor2d([
    [0.1, 0.5, 0.04],
    [0.3, 0.7, 0.06],
  ]);
  const klb = (p: number, q: number) => p * Math.log(p / q) + (1 - p) * Math.log((1 - p) / (1 - q));
  const { penalty, meanActivation } = sparsityPenalty(a, 0.05);
  // By hand: KL(0.05‖0.2) = 0.05 ln 0.25 + 0.95 ln(0.95/0.8) = 0.0939430…,
  // KL(0.05‖0.6) = 0.05 ln(1/12) + 0.95 ln(0.95/0.4) = 0.6975022…, KL(0.05‖0.05) = 0.
  assertClose(klb(0.05, 0.2), 0.093943, 1e-6, 'KL(0.05‖0.2) by hand');
  assertClose(klb(0.05, 0.6), 0.6975022, 1e-6, 'KL(0.05‖0.6) by hand');
  assertClose(penalty.dataSync()[0], 0.093943 + 0.6975022, 1e-5, 'penalty');
  assertClose(meanActivation.dataSync()[0], (0.2 + 0.6 + 0.05) / 3, 1e-6, 'mean activation');
  // At ρ̂ = ρ the penalty vanishes; it is never negative.
  assertClose(sparsityPenalty(tf.fill([4, 3], 0.3) as tf.Tensor2D, 0.3).penalty.dataSync()[0], 0, 1e-6, 'penalty at ρ̂ = ρ');
  tf.dispose([a, penalty, meanActivation]);
});

test('sparse-ae: the training loss is recon + β · penalty of the batch codes', () => {
  const m = createModel('sparse-ae', { ...small, rho: 0.1, beta: 2.5 }, 0) as unknown as Trainable & ImageModel & { encode(x: tf.Tensor2D): tf.Tensor2D };
  tf.tidy(() => {
    const x = tf.tensor2d(testImages(20), [20, 784]);
    const r = lossOf(m, { x, y: tf.zeros([20, 10]), labels: new Int32Array(20), rng: new Rng(0) }, 0);
    const pen = sparsityPenalty(m.encode(x), 0.1).penalty.dataSync()[0];
    assertClose(r.terms.sparsity.dataSync()[0], pen, 1e-5, 'sparsity term');
    assertClose(r.total.dataSync()[0], r.terms.recon.dataSync()[0] + 2.5 * pen, 1e-3, 'total');
  });
});

test('denoising input: inside [0, 1], differs from the clean image, noise sd σ; fast and tfjs corruptions agree exactly', () => {
  // A mid-grey image: clipping (≥ 5σ away) is negligible, so input − clean has sd σ.
  const grey = new Float32Array(100 * 784).fill(0.5);
  for (const sd of [0.1, 0.04]) {
    const noisy = corruptRows(grey, sd, new Rng(4));
    let s = 0;
    let s2 = 0;
    for (const v of noisy) {
      assert.ok(v >= 0 && v <= 1);
      s += v - 0.5;
      s2 += (v - 0.5) ** 2;
    }
    const mean = s / noisy.length;
    // 78,400 draws: the sd's standard error is σ/√(2n) ≈ 0.0025σ.
    assertClose(Math.sqrt(s2 / noisy.length - mean * mean), sd, 0.01 * sd, `noise sd for σ = ${sd}`);
    assertClose(mean, 0, 0.02 * sd, 'noise mean');
  }
  // Clipping bites when the noise reaches the bounds: at σ = 0.5 around 0.5, a third of the draws clip.
  const wide = corruptRows(grey, 0.5, new Rng(4));
  assert.ok(wide.every((v) => v >= 0 && v <= 1));
  assertClose(wide.filter((v) => v === 0 || v === 1).length / wide.length, 0.3173, 0.01, 'share clipped (P(|ε| > 1))');
  // Real images: every value in [0, 1], most pixels moved, tfjs and plain-row versions bit-identical.
  const x = testImages(10);
  const rows = corruptRows(x, 0.1, new Rng(7));
  const t = tf.tidy(() => corruptImages(tf.tensor2d(x, [10, 784]), 0.1, new Rng(7)).dataSync() as Float32Array);
  assert.deepEqual(rows, t);
  assert.ok(rows.every((v) => v >= 0 && v <= 1));
  assert.ok(rows.filter((v, i) => v !== x[i]).length > 0.5 * x.length, 'most pixels change');
  assert.deepEqual(corruptRows(x, 0, new Rng(7)), x, 'σ = 0 leaves the image');
});

test('denoising-ae: the loss reconstructs the clean image from the noisy input (σ = 0: the plain reconstruction loss)', () => {
  type Ae = Trainable & ImageModel & { encode(x: tf.Tensor2D): tf.Tensor2D };
  const x = testImages(16);
  // Same name and seed: the same initial weights.
  const loss = (noiseSd: number) => {
    const m = createModel('denoising-ae', { ...small, noiseSd }, 5) as Ae;
    return tf.tidy(() => {
      const xt = tf.tensor2d(x, [16, 784]);
      const nll = (input: tf.Tensor2D) => -tf.mean(bernoulliLogLikelihood(m.decode(m.encode(input)), xt)).dataSync()[0];
      const total = lossOf(m, { x: xt, y: tf.zeros([16, 10]), labels: new Int32Array(16), rng: new Rng(1) }, 0).total.dataSync()[0];
      return { total, clean: nll(xt), noisy: nll(corruptImages(xt, noiseSd, new Rng(1))) };
    });
  };
  const zero = loss(0);
  assertClose(zero.total, zero.clean, 1e-4, 'σ = 0');
  const noisy = loss(0.1);
  assertClose(noisy.total, noisy.noisy, 1e-4, 'σ = 0.1: noisy input, clean target');
  assert.ok(Math.abs(noisy.total - noisy.clean) > 0.01, `the noise changes the loss (${noisy.total} vs ${noisy.clean})`);
});

test('bad options fail clearly', () => {
  const bad: [string, object, RegExp][] = [
    ['sparse-ae', { rho: 0 }, /invalid sparse-ae config: rho: rho \(the target mean activation\) must be in \(0, 1\)/],
    ['sparse-ae', { rho: 1 }, /rho \(the target mean activation\) must be in \(0, 1\)/],
    ['sparse-ae', { rho: 1.5 }, /must be in \(0, 1\)/],
    ['sparse-ae', { rho: 'low' }, /rho must be a number/],
    ['sparse-ae', { beta: -1 }, /beta \(the sparsity weight\) must be ≥ 0/],
    ['sparse-ae', { codeActivation: 'relu' }, /sparse autoencoder's code is sigmoid/],
    ['denoising-ae', { noiseSd: -0.1 }, /invalid denoising-ae config: noiseSd: noiseSd \(the noise standard deviation\) must be ≥ 0/],
    ['ae', { codeActivation: 'tanh' }, /codeActivation/],
    ['ae', { noiseSd: 0.1 }, /invalid ae config: .*noiseSd/],
  ];
  for (const [name, extra, re] of bad) assert.throws(() => createModel(name, { ...small, ...extra }, 0), re, `${name} ${JSON.stringify(extra)}`);
  // The CLI's --set route reaches the same checks.
  assert.throws(() => createModel('sparse-ae', { ...small, ...setOptions(['rho=2']) }, 0), /must be in \(0, 1\)/);
  const ok = createModel('sparse-ae', { ...small, ...setOptions(['rho=0.1', 'beta=1']) }, 0) as unknown as { config: { rho: number; beta: number } };
  assert.deepEqual([ok.config.rho, ok.config.beta], [0.1, 1]);
});

test('defaults: 784-128-32 nets, σ = 0.1, ρ = 0.05, β = 3', () => {
  const ae = createModel('ae', { inputDim: 784, numClasses: 10 }, 0);
  assert.deepEqual(ae.params.entries().map(([n, v]) => `${n}:${v.shape.join('x')}`), [
    'encoder.0.w:784x128', 'encoder.0.b:128', 'encoder.1.w:128x32', 'encoder.1.b:32',
    'decoder.0.w:32x128', 'decoder.0.b:128', 'decoder.1.w:128x784', 'decoder.1.b:784',
  ]);
  assert.equal((createModel('denoising-ae', { inputDim: 784, numClasses: 10 }, 0) as unknown as { config: { noiseSd: number } }).config.noiseSd, 0.1);
  const sp = (createModel('sparse-ae', { inputDim: 784, numClasses: 10 }, 0) as unknown as { config: { rho: number; beta: number; codeActivation: string } }).config;
  assert.deepEqual([sp.rho, sp.beta, sp.codeActivation], [0.05, 3, 'sigmoid']);
});

// 200 steps at batch 100 (2 epochs of the 10,000-image subset) on the fast engine, seed 0. Measured
// test reconstruction errors (nats per image, from the code): ae 248.1, denoising-ae 263.3 (it
// trained on noisy inputs and is scored on clean ones), sparse-ae 276.3. For scale: decoding the
// mean training image scores 385.5, and a perfect reconstruction 190.7 (the grey values' own entropy).
const realThresholds: Record<string, number> = { ae: 255, 'denoising-ae': 270, 'sparse-ae': 283 };
for (const name of VARIANTS) {
  test(`${name}: a short real run on fashion-mnist-subset reconstructs the test images to < ${realThresholds[name]} nats`, async () => {
    const dir = tmp();
    const r = await trainRun({ model: name, dataset: 'fashion-mnist-subset', latent: 32, steps: 200, batchSize: 100, lr: 1e-3, seed: 0, out: dir });
    assert.equal(r.meta.training?.engine, 'fast');
    const report = await evaluateRun(dir, { skipGeneration: true });
    assert.equal(report.annotationAccuracy, null, 'no label encoder: nothing to annotate');
    assert.equal(report.generationAccuracy, null, 'no label encoder: nothing to generate from');
    assert.ok(report.reconstructionErrorMean < realThresholds[name], `${name}: test reconstruction error ${report.reconstructionErrorMean}`);
    assertClose(report.reconstructionError, report.reconstructionErrorMean, 1e-4 * report.reconstructionErrorMean, 'sampled vs mean code');
    if (name === 'sparse-ae') {
      // The same untrained model (same name and seed) has its sigmoid units near 0.5 on average;
      // the penalty has pulled them well down (0.148 here).
      const init = createModel(name, { inputDim: 784, numClasses: 10, latent: 32 }, 0) as unknown as { encode(x: tf.Tensor2D): tf.Tensor2D };
      const start = tf.tidy(() => tf.mean(init.encode(tf.tensor2d(testImages(100), [100, 784]))).dataSync()[0]);
      assert.ok(start > 0.3, `initial mean activation ${start}`);
      assert.ok(r.meta.training!.finalTerms.meanActivation < 0.2, `mean activation ${r.meta.training!.finalTerms.meanActivation}`);
    }
  });
}

test('probsem reconstruct writes a grid of the right size (2 rows per block; 3 with --noise) and refuses bad options', async () => {
  const dir = tmp();
  await trainRun({ model: 'ae', dataset: 'fashion-mnist-subset', latent: 8, steps: 3, batchSize: 20, lr: 1e-3, seed: 0, out: dir, modelOptions: { encoderHidden: [16], decoderHidden: [16] } });
  const size = (file: string) => {
    const png = PNG.sync.read(readFileSync(file));
    return [png.width, png.height];
  };
  // Tiles are 28×28 at scale 2 (56 px) with 2 px padding.
  const side = (tiles: number) => tiles * 56 + (tiles + 1) * 2;
  const quiet = async (argv: string[]) => {
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      return await reconstructCommand.run(argv);
    } finally {
      process.stdout.write = write;
    }
  };
  const out = join(dir, 'grid.png');
  assert.equal(await quiet(['--run', dir, '--n', '5', '--seed', '2', '--out', out]), 0);
  assert.deepEqual(size(out), [side(5), side(2)]);
  // The first row holds the seeded choice of test images, the second their reconstructions.
  const png = PNG.sync.read(readFileSync(out));
  const idx = Rng.for(2, 'reconstruct', 'test').permutation(ds.test.count).subarray(0, 5);
  const originals = imagesToFloat(ds.test, idx, 784);
  const recon = reconstruct(loadModel(dir).model as unknown as ImageModel, originals, 784);
  const tile = (row: number, col: number, i: number) => {
    const [y, x] = [Math.floor(i / 28), i % 28];
    return png.data[((2 + row * 58 + 2 * y) * png.width + 2 + col * 58 + 2 * x) * 4];
  };
  for (const col of [0, 4]) {
    for (const i of [0, 300, 406, 783]) {
      assert.equal(tile(0, col, i), Math.round(originals[col * 784 + i] * 255), `original ${col}, pixel ${i}`);
      assert.equal(tile(1, col, i), Math.round(recon[col * 784 + i] * 255), `reconstruction ${col}, pixel ${i}`);
    }
  }
  assert.equal(await quiet(['--run', dir, '--n', '10', '--cols', '4', '--split', 'train', '--noise', '0.1', '--seed', '3', '--out', out]), 0);
  assert.deepEqual(size(out), [side(4), side(3 * 3)], 'three blocks of 4, 4 and 2 images, three rows each');
  await assert.rejects(quiet(['--run', dir, '--split', 'validation', '--out', out]), /--split must be test or train, got 'validation'/);
  await assert.rejects(quiet(['--run', dir, '--noise=-1', '--out', out]), /--noise must be a number ≥ 0/);
  await assert.rejects(quiet(['--run', dir, '--n', '5000', '--out', out]), /--n must be an integer in \[1, 1000\], got '5000'/);
  await assert.rejects(quiet(['--run', join(dir, 'nope'), '--out', out]), /does not exist/);
});
