import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { loadDataset } from '../src/data/registry.js';
import type { Dataset } from '../src/data/dataset.js';
import { createModel } from '../src/models/registry.js';
import type { ImageModel, Trainable } from '../src/models/base.js';
import { makeRawBatch, train } from '../src/train/trainer.js';
import { ParallelStepper, layoutOf, shardGradient } from '../src/train/parallel.js';
import { Rng } from '../src/core/random.js';
import { readCheckpoint } from '../src/train/checkpoint.js';
import { saveModel, loadModel } from '../src/models/persist.js';
import { annotationAccuracy, classifierAccuracy, generationAccuracy, oneHotLabelInputs, reconstructionError } from '../src/eval/metrics.js';
import type { Classifier } from '../src/models/classifier.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const SHAPE = { pixels: 784, numClasses: 10 };
const small = { inputDim: 784, numClasses: 10, latent: 4, encoderHidden: [32, 16], decoderHidden: [16, 32] };
const configs: Record<string, object> = {
  vae: small,
  pse: small,
  'pse-star': { ...small, classifierHidden: [32, 16] },
  classifier: { inputDim: 784, numClasses: 10, hidden: [32] },
};

function weights(m: Trainable): Float32Array {
  return new Float32Array(m.params.serialize().blob.buffer.slice(0));
}
const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-test-'));

for (const name of Object.keys(configs)) {
  test(`${name}: one training step changes every parameter tensor; evaluation changes none`, async () => {
    const m = createModel(name, configs[name], 1);
    const before = m.params.entries().map(([, v]) => v.dataSync().slice());
    await train(m, ds.train, SHAPE, { steps: 1, batchSize: 32, lr: 1e-3, seed: 1 });
    const after = m.params.entries().map(([n, v]) => [n, v.dataSync().slice()] as const);
    after.forEach(([n, a], i) => {
      const changed = a.some((x, j) => x !== before[i][j]);
      assert.ok(changed, `parameter ${n} did not change`);
    });
    const w0 = weights(m);
    if ('encodeImage' in m) {
      const im = m as unknown as ImageModel;
      reconstructionError(im, ds.test, 784, 0);
      if (im.encodeLabels) annotationAccuracy(im, ds.test, 784, oneHotLabelInputs(10));
    } else {
      classifierAccuracy(m as Classifier, ds.test, 784);
    }
    assert.deepEqual(weights(m), w0, 'evaluation must not change weights');
  });

  test(`${name}: loss terms are finite on a tiny batch and save/load round-trips exactly`, async () => {
    const m = createModel(name, configs[name], 2) as Trainable & { config: object };
    const r = await train(m, ds.train, SHAPE, { steps: 3, batchSize: 4, lr: 1e-3, seed: 3, logEvery: 1 });
    for (const [k, v] of Object.entries(r.finalTerms)) assert.ok(Number.isFinite(v), `${k} = ${v}`);
    const dir = tmp();
    saveModel(dir, m, { classNames: ds.classNames });
    const { model: loaded, meta } = loadModel(dir);
    assert.equal(meta.model, name);
    assert.deepEqual(weights(loaded), weights(m));
    if ('encodeImage' in m) {
      const x = tf.tensor2d(new Float32Array(2 * 784).fill(0.3), [2, 784]);
      const a = (m as unknown as ImageModel).encodeImage(x).mean.dataSync();
      const b = (loaded as unknown as ImageModel).encodeImage(x).mean.dataSync();
      assert.deepEqual(Array.from(b), Array.from(a));
    }
  });
}

test('resume from a checkpoint ends with the same weights as an uninterrupted run', async () => {
  const cfg = configs['pse-star'];
  const full = createModel('pse-star', cfg, 5);
  await train(full, ds.train, SHAPE, { steps: 30, batchSize: 50, lr: 1e-3, seed: 5 });

  const dir = tmp();
  const first = createModel('pse-star', cfg, 5);
  await train(first, ds.train, SHAPE, { steps: 30, batchSize: 50, lr: 1e-3, seed: 5, outDir: dir, checkpointEvery: 10, stopAfter: 17 });
  assert.equal(readCheckpoint(join(dir, 'checkpoint.bin')).header.step, 17);
  // A fresh process would build the model from scratch: do the same (different init seed even).
  const resumed = createModel('pse-star', cfg, 999);
  const r = await train(resumed, ds.train, SHAPE, { steps: 30, batchSize: 50, lr: 1e-3, seed: 5, outDir: dir, resume: true });
  assert.equal(r.startStep, 17);
  assert.deepEqual(weights(resumed), weights(full));
  const steps = readFileSync(join(dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
  assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b), 'log steps are increasing and unique');
});

test('resume refuses a checkpoint made with other settings', async () => {
  const dir = tmp();
  const m = createModel('pse', configs.pse, 1);
  await train(m, ds.train, SHAPE, { steps: 2, batchSize: 10, lr: 1e-3, seed: 1, outDir: dir });
  await assert.rejects(
    train(createModel('pse', configs.pse, 1), ds.train, SHAPE, { steps: 4, batchSize: 20, lr: 1e-3, seed: 1, outDir: dir, resume: true }),
    /cannot resume: checkpoint was made .* batch 10, lr 0.001, 1 worker/,
  );
});

test('learning-rate schedules: the cosine factor in closed form; unknown names refused', async () => {
  const { lrFactor, lrSchedule } = await import('../src/train/schedule.js');
  assert.equal(lrFactor('constant', 7, 10), 1);
  assert.equal(lrFactor('cosine', 0, 10), 1);
  assert.ok(Math.abs(lrFactor('cosine', 5, 10) - 0.5) < 1e-15);
  assert.ok(Math.abs(lrFactor('cosine', 9, 10) - 0.5 * (1 + Math.cos((Math.PI * 9) / 10))) < 1e-15);
  assert.ok(lrFactor('cosine', 9, 10) < 0.025, 'the last step is small');
  assert.throws(() => lrSchedule('linear'), /unknown learning-rate schedule 'linear': choose one of constant, cosine/);
  await assert.rejects(
    train(createModel('pse', configs.pse, 1), ds.train, SHAPE, { steps: 2, batchSize: 10, lr: 1e-3, seed: 1, lrSchedule: 'step' as never }),
    /unknown learning-rate schedule 'step'/,
  );
});

for (const engine of ['fast', 'tfjs'] as const) {
  test(`cosine schedule (${engine} engine): it changes the updates, resumes exactly, and a resume must keep its length`, async () => {
    const cfg = configs['pse-star'];
    const opts = { steps: 12, batchSize: 40, lr: 1e-3, seed: 4, engine };
    const constant = createModel('pse-star', cfg, 4);
    await train(constant, ds.train, SHAPE, opts);
    const full = createModel('pse-star', cfg, 4);
    await train(full, ds.train, SHAPE, { ...opts, lrSchedule: 'cosine' });
    assert.notDeepEqual(weights(full), weights(constant), 'the schedule changes the weights');
    const dir = tmp();
    const first = createModel('pse-star', cfg, 4);
    await train(first, ds.train, SHAPE, { ...opts, lrSchedule: 'cosine', outDir: dir, stopAfter: 5 });
    assert.equal(readCheckpoint(join(dir, 'checkpoint.bin')).header.scheduleSteps, 12);
    await assert.rejects(
      train(createModel('pse-star', cfg, 4), ds.train, SHAPE, { ...opts, steps: 20, lrSchedule: 'cosine', outDir: dir, resume: true }),
      /schedule of the checkpoint spans 12 steps; resume with --steps 12/,
    );
    await assert.rejects(
      train(createModel('pse-star', cfg, 4), ds.train, SHAPE, { ...opts, outDir: dir, resume: true }),
      /checkpoint's learning-rate schedule is cosine, this run asks for constant/,
    );
    const resumed = createModel('pse-star', cfg, 99);
    await train(resumed, ds.train, SHAPE, { ...opts, lrSchedule: 'cosine', outDir: dir, resume: true });
    assert.deepEqual(weights(resumed), weights(full), 'resumed cosine run equals the uninterrupted one');
  });
}

test('same seed → byte-identical weights; another seed → different weights', async () => {
  const run = async (seed: number) => {
    const m = createModel('pse-star', configs['pse-star'], seed);
    await train(m, ds.train, SHAPE, { steps: 5, batchSize: 20, lr: 1e-3, seed });
    return weights(m);
  };
  const a = await run(7);
  assert.deepEqual(await run(7), a);
  assert.notDeepEqual(await run(8), a);
});

test('damaged model directories fail with a clear error', async () => {
  const m = createModel('pse', configs.pse, 1) as Trainable & { config: object };
  const make = () => {
    const dir = tmp();
    saveModel(dir, m, { classNames: ds.classNames });
    return dir;
  };
  let dir = make();
  const w = readFileSync(join(dir, 'weights.bin'));
  writeFileSync(join(dir, 'weights.bin'), w.subarray(0, w.length - 8));
  assert.throws(() => loadModel(dir), /weights\.bin is \d+ bytes but model\.json expects \d+ \(truncated/);

  dir = make();
  const t = Buffer.from(readFileSync(join(dir, 'weights.bin')));
  t[100] ^= 0xff;
  writeFileSync(join(dir, 'weights.bin'), t);
  assert.throws(() => loadModel(dir), /does not match the checksum/);

  dir = make();
  const meta = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...meta, model: 'no-such-model' }));
  assert.throws(() => loadModel(dir), /unknown model 'no-such-model'/);

  dir = make();
  writeFileSync(join(dir, 'model.json'), '{"format": "probsem-model", ');
  assert.throws(() => loadModel(dir), /model\.json is not valid JSON/);

  dir = make();
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...meta, config: { ...meta.config, latent: 5 } }));
  assert.throws(() => loadModel(dir), /its config describes a larger model than .*weights\.bin holds/);
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...meta, config: { ...meta.config, latent: 3 } }));
  assert.throws(() => loadModel(dir), /has shape \[\d+(,\d+)*\] but the model expects/);

  assert.throws(() => loadModel(join(tmp(), 'missing')), /does not exist/);
  assert.throws(() => loadModel(tmp()), /model\.json is missing/);
  assert.ok(!existsSync(join(dir, 'weights.bin.tmp-' + process.pid)), 'no temporary files left behind');
});

test('a short real PSE* run on the shipped subset learns to annotate (≥ 70%, chance is 10%)', async () => {
  const m = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 10 }, 0) as unknown as ImageModel & Trainable;
  await train(m, ds.train, SHAPE, { steps: 300, batchSize: 100, lr: 1e-3, seed: 0 });
  const acc = annotationAccuracy(m, ds.test, 784, oneHotLabelInputs(10));
  const recon = reconstructionError(m, ds.test, 784, 0);
  assert.ok(acc >= 0.7, `annotation accuracy ${acc}`);
  assert.ok(recon < 300, `reconstruction error ${recon}`);
});

test('data-parallel training (2 replicas) is deterministic and resumable', async () => {
  const cfg = configs['pse-star'];
  const run = async (workers: number, extra: object = {}, seed = 11) => {
    const m = createModel('pse-star', cfg, seed);
    const r = await train(m, ds.train, SHAPE, { steps: 12, batchSize: 40, lr: 1e-3, seed, workers, ...extra });
    return { w: weights(m), r };
  };
  const a = await run(2);
  const b = await run(2);
  assert.deepEqual(b.w, a.w, 'same seed and worker count → identical weights');

  const dir = tmp();
  const first = createModel('pse-star', cfg, 11);
  await train(first, ds.train, SHAPE, { steps: 12, batchSize: 40, lr: 1e-3, seed: 11, workers: 2, outDir: dir, stopAfter: 5 });
  const resumed = createModel('pse-star', cfg, 11);
  await train(resumed, ds.train, SHAPE, { steps: 12, batchSize: 40, lr: 1e-3, seed: 11, workers: 2, outDir: dir, resume: true });
  assert.deepEqual(weights(resumed), a.w, 'resumed data-parallel run equals the uninterrupted one');
});

test('training does not leak tensors: live tensor count is flat across steps', async () => {
  const m = createModel('pse-star', configs['pse-star'], 1);
  const before = tf.memory().numTensors;
  await train(m, ds.train, SHAPE, { steps: 3, batchSize: 20, lr: 1e-3, seed: 1 });
  const afterShort = tf.memory().numTensors;
  await train(m, ds.train, SHAPE, { steps: 30, batchSize: 20, lr: 1e-3, seed: 1 });
  assert.equal(tf.memory().numTensors, afterShort, 'a 30-step run leaves as many tensors as a 3-step run');
  assert.equal(afterShort, before, 'training leaves no tensors behind');
  // Data-parallel training, resume and evaluation leave nothing behind either.
  const dir = tmp();
  await train(m, ds.train, SHAPE, { steps: 6, batchSize: 20, lr: 1e-3, seed: 1, workers: 2, outDir: dir, stopAfter: 3 });
  await train(m, ds.train, SHAPE, { steps: 6, batchSize: 20, lr: 1e-3, seed: 1, workers: 2, outDir: dir, resume: true });
  const im = m as unknown as ImageModel;
  const judge = createModel('classifier', { inputDim: 784, numClasses: 10, hidden: [8] }, 0) as Classifier;
  const labels = oneHotLabelInputs(10);
  const start = tf.memory().numTensors;
  annotationAccuracy(im, ds.test, 784, labels);
  reconstructionError(im, ds.test, 784, 0, 'mean');
  generationAccuracy(im, judge, labels, { samplesPerLabel: 20, repeats: 2, seed: 0 });
  classifierAccuracy(judge, ds.test, 784);
  assert.equal(tf.memory().numTensors, start, 'evaluation leaves no tensors behind');
  labels.dispose();
  judge.params.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('the data-parallel gradient equals the single-thread full-batch gradient', async () => {
  // A deterministic model (no dropout, no sampling) so both must agree up to float rounding.
  const cfg = { inputDim: 784, numClasses: 10, arch: 'mlp', hidden: [16], dropout: 0 };
  const model = createModel('classifier', cfg, 4);
  const idx = Int32Array.from({ length: 30 }, (_, i) => i * 7);
  const batch = makeRawBatch(ds.train, idx, 784, 10);
  const layout = layoutOf(model);
  const single = new Float32Array(layout.reduce((s, g) => s + g.length, 0));
  const t1 = shardGradient(model, layout, batch.x, batch.y, batch.labels, batch.rows, 784, 10, new Rng(0), 0, single);
  const par = await ParallelStepper.create(model as never, { replicas: 2, lr: 1e-3, seed: 0, pixels: 784, labelDim: 10, maxRows: 16, termNames: ['loss', 'crossEntropy', 'accuracy'] });
  try {
    const { terms, grad } = par.gradient(batch, 0);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < single.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(single[i]));
      maxDiff = Math.max(maxDiff, Math.abs(single[i] - grad[i]));
    }
    assert.ok(maxAbs > 1e-3, 'the gradient is not trivially zero');
    assert.ok(maxDiff < 1e-5 * Math.max(1, maxAbs), `max |Δgrad| = ${maxDiff} (max |grad| ${maxAbs})`);
    assert.ok(Math.abs(terms.loss - t1.loss) < 1e-5, `loss ${terms.loss} vs ${t1.loss}`);
  } finally {
    await par.dispose();
  }
});

test('the CNN judge evaluates with conv2d exactly as it trains with im2col (same logits)', () => {
  const judge = createModel('classifier', { inputDim: 784, numClasses: 10, hidden: [16], filters: 6, dropout: 0 }, 3) as Classifier;
  const rng = new Rng(2);
  const x = tf.tensor2d(rng.fillUniform(new Float32Array(5 * 784), 0, 1), [5, 784]);
  const viaConv2d = judge.logits(x).dataSync();
  // The training forward pass (im2col product); dropout 0 and no shift, so only the convolution differs.
  const viaIm2col = tf.tidy(() => (judge as unknown as { forward(x: tf.Tensor2D, rng: Rng): tf.Tensor2D }).forward(x, new Rng(0)).dataSync());
  let worst = 0;
  for (let i = 0; i < viaConv2d.length; i++) worst = Math.max(worst, Math.abs(viaConv2d[i] - viaIm2col[i]));
  assert.ok(worst < 1e-4, `max |Δlogit| ${worst}`);
  assert.ok(viaConv2d.some((v) => Math.abs(v) > 1e-3), 'logits are not trivially zero');
  x.dispose();
  judge.params.dispose();
});
