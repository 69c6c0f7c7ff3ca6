/** The task-level library API (src/api.ts): typed creation, train → save → load → tasks, and its errors. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createModel, evaluate, loadRun, saveModel, train, type Run, type TrainedModel } from '../src/api.js';
import type { Dataset } from '../src/data/dataset.js';
import { encodeGridPng } from '../src/data/png.js';
import { loadDataset } from '../src/data/registry.js';
import type { PseStar } from '../src/models/pse-star.js';
import { setupBackend } from './helpers.js';

let dir: string;
let data: Dataset;
let trained: TrainedModel<PseStar>;
let run: Run;

before(async () => {
  await setupBackend();
  dir = mkdtempSync(join(tmpdir(), 'probsem-api-'));
  data = await loadDataset('fashion-mnist-subset');
  trained = await train(createModel('pse-star', { latent: 6 }, { dataset: data, seed: 3 }), data, { steps: 1000, seed: 3 });
  saveModel(join(dir, 'run'), trained);
  run = loadRun(join(dir, 'run'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const testImage = (i: number) => Float32Array.from(data.test.images.subarray(i * 784, (i + 1) * 784), (v) => v / 255);

test('createModel fills the image size and class count from a dataset, and checks the rest', () => {
  const m = createModel('vae', { latent: 4 }, { dataset: data });
  assert.equal(m.config.inputDim, 784);
  assert.equal(m.config.numClasses, 10);
  assert.equal(m.latentDim, 4);
  // @ts-expect-error: 'latnt' is not a VAE option (a type error, and at run time a clear one)
  assert.throws(() => createModel('vae', { latnt: 4 }, { dataset: data }), /invalid vae config: .*latnt/);
  assert.throws(() => createModel('scan', { latent: 4 }, { dataset: data }), /scan: give stage1Steps/);
  assert.equal(createModel('scan', { latent: 4 }, { dataset: data, steps: 100 }).config.stage1Steps, 60);
  // A conv encoder takes the image height from the dataset.
  assert.equal(createModel('pse-star', { encoderConv: [4] }, { dataset: data }).config.imageHeight, 28);
});

test('train returns what saveModel records: the dataset, its hash and the training', () => {
  const meta = JSON.parse(readFileSync(join(dir, 'run', 'model.json'), 'utf8'));
  assert.equal(meta.model, 'pse-star');
  assert.equal(meta.dataset.name, 'fashion-mnist-subset');
  assert.equal(meta.dataset.hash, trained.dataset.hash);
  assert.equal(meta.training.steps, 1000);
  assert.equal(meta.training.engine, 'fast');
  assert.deepEqual(run.classNames, data.classNames);
});

test('embed gives the same posterior for pixels and for the same image as a PNG file or its bytes', async () => {
  const x = testImage(1);
  const file = join(dir, 'one.png');
  writeFileSync(file, encodeGridPng(x, 1, { cols: 1, height: 28, width: 28, pad: 0, scale: 1 }));
  const a = await run.embed(x);
  const b = await run.embed(file);
  const c = await run.embed(readFileSync(file));
  assert.equal(a.count, 1);
  assert.equal(a.dim, 6);
  for (let d = 0; d < 6; d++) {
    assert.ok(Math.abs(a.mean[d] - b.mean[d]) < 1e-4, `mean ${d}: ${a.mean[d]} vs ${b.mean[d]}`);
    assert.equal(b.mean[d], c.mean[d]);
    assert.ok(a.variance[d] > 0);
  }
  const many = await run.embed([x, testImage(2), file]);
  assert.equal(many.count, 3);
  assert.deepEqual(many.mean.subarray(0, 6), a.mean);
});

test('annotate, retrieve, similar and generate answer correctly on a trained run', async () => {
  let right = 0;
  for (let i = 0; i < 50; i++) if ((await run.annotate(testImage(i), { top: 1 }))[0].label === data.classNames[data.test.labels[i]]) right++;
  assert.ok(right >= 35, `annotation: ${right}/50`);
  const hits = await run.retrieve('Trouser', { k: 10 });
  assert.equal(hits.length, 10);
  assert.ok(hits.filter((h) => h.label === 'Trouser').length >= 9, hits.map((h) => h.label).join(','));
  assert.ok(hits.every((h, i) => i === 0 || h.kl >= hits[i - 1].kl));
  const alike = await run.similar(5, { k: 5 });
  assert.ok(alike.every((h) => h.id !== 5), 'the query is left out');
  // Another distance: ranked by its score, KL alongside; the query still left out.
  const w2 = await run.retrieve('Trouser', { k: 10, distance: 'w2' });
  assert.ok(w2.every((h, i) => h.score !== undefined && h.kl >= 0 && (i === 0 || h.score >= w2[i - 1].score!)));
  const near = await run.similar(5, { k: 5, distance: 'bhattacharyya' });
  assert.ok(near.every((h, i) => h.id !== 5 && (i === 0 || h.score! >= near[i - 1].score!)));
  await assert.rejects(run.retrieve('Trouser', { distance: 'cosine' as never }), /distance must be one of/);
  const g = await run.generate('Sneaker, Bag', { n: 3 });
  assert.deepEqual(g.rows.map((r) => r.phrase), ['Sneaker', 'Bag']);
  assert.equal(g.rows[0].images.length, 3 * 784);
  assert.ok(g.png().length > 100);
});

test('the tasks refuse bad images and words clearly', async () => {
  await assert.rejects(run.embed(new Float32Array(10)), /has 10 values but the run takes 28×28/);
  await assert.rejects(run.embed(new Float32Array(784).fill(2)), /pixel 0 is 2; grey values must be in \[0, 1\]/);
  await assert.rejects(run.embed({ data: new Float32Array(100), height: 10, width: 10 }), /is 10×10 but the run takes 28×28/);
  await assert.rejects(run.embed(join(dir, 'nope.png')), /not found/);
  await assert.rejects(run.embed(new Uint8Array([1, 2, 3])), /the buffer is not an image/);
  await assert.rejects(run.retrieve('zebra'), /zebra/);
  await assert.rejects(run.similar(99999), /outside the test split/);
});

test('evaluate takes the loaded run; a run without a recorded dataset says what it assumes', async () => {
  const r = await evaluate(run, { skipGeneration: true, triplets: 0 });
  assert.equal(r.dataset, 'fashion-mnist-subset');
  assert.ok(r.annotationAccuracy! > 0.7, `annotation ${r.annotationAccuracy}`);
  // The older saveModel signature (no dataset) still works, and evaluation names its fallback.
  saveModel(join(dir, 'old'), trained.model, { classNames: data.classNames });
  const notes: string[] = [];
  await assert.rejects(evaluate(join(dir, 'old'), { skipGeneration: true, triplets: 0, dataDir: join(dir, 'no-data'), onNotice: (m) => notes.push(m) }));
  assert.ok(notes.some((m) => /records no dataset.*fashion-mnist/.test(m)), notes.join('\n'));
  await assert.rejects(loadRun(join(dir, 'old')).retrieve('Trouser'), /records no dataset/);
});
