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
import { type ImageModel, type Trainable, lossOf } from '../src/models/base.js';
import { makeRawBatch, train } from '../src/train/trainer.js';
import { Rng } from '../src/core/random.js';
import { readCheckpoint, writeCheckpoint } from '../src/train/checkpoint.js';
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
    /cannot resume: checkpoint was made .* batch 10, lr 0.001; this run asks for pse with seed 1, batch 20/,
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
  const saved = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...saved, config: { ...saved.config, latent: 5 } }));
  assert.throws(() => loadModel(dir), /model\.json was changed after saving/);
  // Without the content checksum (as older probsem wrote them) the checks behind it still hold.
  const { contentSha256: _, ...meta } = saved;
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

test('a checkpoint of a data-parallel run (an older probsem) still resumes, on one thread, with a notice', async () => {
  const cfg = configs['pse-star'];
  const dir = tmp();
  const first = createModel('pse-star', cfg, 11);
  await train(first, ds.train, SHAPE, { steps: 12, batchSize: 40, lr: 1e-3, seed: 11, outDir: dir, stopAfter: 5 });
  const path = join(dir, 'checkpoint.bin');
  const ck = readCheckpoint(path);
  writeCheckpoint(path, { ...ck.header, replicas: 2 }, ck.params, ck.optimizer);
  const notices: string[] = [];
  const resumed = createModel('pse-star', cfg, 11);
  const r = await train(resumed, ds.train, SHAPE, { steps: 12, batchSize: 40, lr: 1e-3, seed: 11, outDir: dir, resume: true, onNotice: (m) => notices.push(m) });
  assert.equal(r.steps, 12);
  assert.ok(notices.some((m) => /trained data-parallel on 2 workers/.test(m)), notices.join('; '));
  await assert.rejects(train(resumed, ds.train, SHAPE, { steps: 12, batchSize: 40, lr: 1e-3, seed: 11, workers: 2 }), /--workers 2\) was removed/);
});

test('training does not leak tensors: live tensor count is flat across steps', async () => {
  const m = createModel('pse-star', configs['pse-star'], 1);
  const before = tf.memory().numTensors;
  await train(m, ds.train, SHAPE, { steps: 3, batchSize: 20, lr: 1e-3, seed: 1 });
  const afterShort = tf.memory().numTensors;
  await train(m, ds.train, SHAPE, { steps: 30, batchSize: 20, lr: 1e-3, seed: 1 });
  assert.equal(tf.memory().numTensors, afterShort, 'a 30-step run leaves as many tensors as a 3-step run');
  assert.equal(afterShort, before, 'training leaves no tensors behind');
  // The tfjs engine, resume and evaluation leave nothing behind either.
  const dir = tmp();
  await train(m, ds.train, SHAPE, { steps: 6, batchSize: 20, lr: 1e-3, seed: 1, engine: 'tfjs', outDir: dir, stopAfter: 3 });
  await train(m, ds.train, SHAPE, { steps: 6, batchSize: 20, lr: 1e-3, seed: 1, engine: 'tfjs', outDir: dir, resume: true });
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

test('the CNN judge evaluates with conv2d exactly as it trains with im2col (same logits)', () => {
  const judge = createModel('classifier', { inputDim: 784, numClasses: 10, hidden: [16], filters: 6, dropout: 0 }, 3) as Classifier;
  const rng = new Rng(2);
  const x = tf.tensor2d(rng.fillUniform(new Float32Array(5 * 784), 0, 1), [5, 784]);
  const labels = Int32Array.from([0, 3, 5, 7, 9]);
  // Evaluation logits (the backend's conv2d) scored by hand, against the training objective's
  // cross-entropy (an im2col product); dropout 0 and no shift, so only the convolution differs.
  const logits = judge.logits(x);
  const byHand = tf.tidy(() => -tf.mean(tf.sum(tf.mul(tf.oneHot(tf.tensor1d(labels, 'int32'), 10), tf.logSoftmax(logits)), 1)).dataSync()[0]);
  const training = tf.tidy(() => lossOf(judge, { x, y: tf.zeros([5, 10]), labels, rng: new Rng(0) }, 0).terms.crossEntropy.dataSync()[0]);
  assert.ok(Math.abs(byHand - training) < 1e-4, `cross-entropy ${byHand} (conv2d) vs ${training} (im2col)`);
  assert.ok((logits.dataSync() as Float32Array).some((v) => Math.abs(v) > 1e-3), 'logits are not trivially zero');
  logits.dispose();
  x.dispose();
  judge.params.dispose();
});
