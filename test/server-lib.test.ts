/** The library parts behind `probsem serve`: word queries and KL retrieval, PCA, the limiter (pictures: image-decode.test.ts). */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { createModel } from '../src/models/registry.js';
import type { ImageModel } from '../src/models/base.js';
import type { ModelFile } from '../src/models/persist.js';
import type { Split } from '../src/data/dataset.js';
import { classLabelInputs } from '../src/runs/runs.js';
import {
  UnknownWordError,
  decodeInterpolation,
  encodeSplit,
  generateFromQuery,
  queryDistribution,
  resolveWords,
  retrieveImages,
} from '../src/runs/retrieval.js';
import { pca2d, sampleIndices } from '../src/server/latent.js';
import { HttpError, Limiter } from '../src/server/limits.js';

const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const meta = { model: 'pse-star', classNames: CLASSES, labelEncoding: 'onehot' } as unknown as ModelFile;
let model: ImageModel;
let split: Split;

before(async () => {
  await setupBackend();
  // An untrained model is enough to check the arithmetic.
  model = createModel('pse-star', { inputDim: 16, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8], classifierHidden: [8] }, 1) as unknown as ImageModel;
  const count = 37;
  const images = new Uint8Array(count * 16);
  for (let i = 0; i < images.length; i++) images[i] = (i * 97 + 13) % 256;
  split = { images, labels: Uint8Array.from({ length: count }, (_, i) => i % 10), count };
});

test('resolveWords: names, phrases, slash parts, greedy reading, unknown words', () => {
  assert.deepEqual(resolveWords(meta, ['Ankle Boot']), { indices: [9], unknown: [] });
  assert.deepEqual(resolveWords(meta, ['  ankle   boot ']), { indices: [9], unknown: [] });
  assert.deepEqual(resolveWords(meta, ['t-shirt']).indices, [0]);
  assert.deepEqual(resolveWords(meta, ['top']).indices, [0]);
  assert.deepEqual(resolveWords(meta, ['ankle boot sneaker, bag']).indices, [9, 7, 8]);
  assert.deepEqual(resolveWords(meta, ['bag', 'BAG', 'sneaker']).indices, [8, 7]);
  assert.deepEqual(resolveWords(meta, ['frog sneaker boot']), { indices: [7], unknown: ['frog', 'boot'] });
});

test('queryDistribution: one label is exactly q(z|l); several are moment-matched; unknown words throw UNKNOWN_WORD', () => {
  const [m, lv] = tf.tidy(() => {
    const q = model.encodeLabels!(classLabelInputs(meta));
    return [q.mean.arraySync() as number[][], q.logVar.arraySync() as number[][]];
  });
  const one = queryDistribution(model, meta, ['sneaker']);
  for (let d = 0; d < 3; d++) {
    assert.ok(Math.abs(one.mean[d] - m[7][d]) < 1e-6);
    assert.ok(Math.abs(one.logVar[d] - lv[7][d]) < 1e-6);
  }
  const two = queryDistribution(model, meta, ['trouser', 'bag']);
  for (let d = 0; d < 3; d++) {
    const mu = (m[1][d] + m[8][d]) / 2;
    const v = (Math.exp(lv[1][d]) + Math.exp(lv[8][d])) / 2 + ((m[1][d] - mu) ** 2 + (m[8][d] - mu) ** 2) / 2;
    assert.ok(Math.abs(two.mean[d] - mu) < 1e-5);
    assert.ok(Math.abs(Math.exp(two.logVar[d]) - v) < 1e-4 * v);
    // The variance covers each label's own.
    assert.ok(Math.exp(two.logVar[d]) >= Math.min(Math.exp(lv[1][d]), Math.exp(lv[8][d])));
  }
  assert.throws(
    () => queryDistribution(model, meta, ['frog', 'sneaker', 'toad']),
    (e: unknown) => e instanceof UnknownWordError && e.code === 'UNKNOWN_WORD' && e.words.join() === 'frog,toad' && /'frog', 'toad'/.test(e.message),
  );
  assert.throws(() => queryDistribution(model, meta, ['  ']), /no words given/);
});

test('retrieveImages: top-k by KL(query ‖ q(z|x)) equals a brute-force ranking, with or without cached posteriors', () => {
  const q = queryDistribution(model, meta, ['coat']);
  const post = encodeSplit(model, split, 16);
  const kls: number[] = [];
  for (let i = 0; i < split.count; i++) {
    let v = 0;
    for (let d = 0; d < 3; d++) {
      const lx = post.logVar[i * 3 + d];
      v += 0.5 * (lx - q.logVar[d] + (Math.exp(q.logVar[d]) + (q.mean[d] - post.mean[i * 3 + d]) ** 2) / Math.exp(lx) - 1);
    }
    kls.push(v);
  }
  const want = kls.map((v, i) => [v, i]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).slice(0, 5);
  const a = retrieveImages(model, split, 16, q, 5);
  const b = retrieveImages(model, split, 16, q, 5, { posteriors: post });
  assert.deepEqual(a.ids, want.map((w) => w[1]));
  assert.deepEqual(b.ids, a.ids);
  a.kl.forEach((v, i) => assert.ok(Math.abs(v - want[i][0]) < 1e-3 * Math.max(1, want[i][0])));
  assert.deepEqual(a.labels, a.ids.map((i) => split.labels[i]));
  assert.equal(retrieveImages(model, split, 16, q, 1000).ids.length, split.count);
  assert.throws(() => retrieveImages(model, split, 16, q, 0), /k must be a positive integer/);
  assert.throws(() => retrieveImages(model, split, 16, { mean: new Float32Array(2), logVar: new Float32Array(2) }, 3), /2 dimensions/);
});

test('generateFromQuery and decodeInterpolation: seeded images in [0, 1]; interpolation ends at its end points', () => {
  const q = queryDistribution(model, meta, ['bag']);
  const g1 = generateFromQuery(model, q, 4, 7);
  assert.equal(g1.length, 4 * 16);
  assert.deepEqual(g1, generateFromQuery(model, q, 4, 7));
  assert.notDeepEqual(g1, generateFromQuery(model, q, 4, 8));
  assert.ok(g1.every((v) => v >= 0 && v <= 1));
  const a = queryDistribution(model, meta, ['bag']).mean;
  const b = queryDistribution(model, meta, ['trouser']).mean;
  const strip = decodeInterpolation(model, a, b, 5);
  const ends = decodeInterpolation(model, a, b, 2);
  assert.deepEqual(strip.subarray(0, 16), ends.subarray(0, 16));
  assert.deepEqual(strip.subarray(4 * 16), ends.subarray(16));
});

test('pca2d: recovers the main axes of an elongated cloud, deterministically; sampleIndices is seeded and sorted', () => {
  // Points (a/√2, a/√2, b) with a on a grid of spread ~5.8 and b = ±1 for each a: uncorrelated,
  // so the components are (1, 1, 0)/√2 and (0, 0, 1) and the projections are exactly a and b.
  const pts: [number, number][] = [];
  for (let k = -10; k <= 10; k++) for (const b of [-1, 1]) pts.push([k, b]);
  const n = pts.length;
  const data = new Float64Array(n * 3);
  pts.forEach(([a, b], i) => data.set([a / Math.SQRT2, a / Math.SQRT2, b], i * 3));
  const y = pca2d(data, n, 3);
  pts.forEach(([a, b], i) => {
    assert.ok(Math.abs(y[i * 2] - a) < 1e-6, `x[${i}] = ${y[i * 2]}, want ${a}`);
    assert.ok(Math.abs(y[i * 2 + 1] - b) < 1e-6, `y[${i}] = ${y[i * 2 + 1]}, want ${b}`);
  });
  assert.deepEqual(pca2d(data, n, 3), y);
  const s = sampleIndices(1000, 50);
  assert.equal(new Set(s).size, 50);
  assert.deepEqual(s, [...s].sort((a, b) => a - b));
  assert.deepEqual(sampleIndices(1000, 50), s);
  assert.deepEqual(sampleIndices(10, 50), [...Array(10).keys()]);
});

test('Limiter: runs at most maxActive jobs in order, refuses beyond the queue (BUSY), times out waiting jobs (QUEUE_TIMEOUT)', async () => {
  const lim = new Limiter(2, 2, 200);
  const order: number[] = [];
  let running = 0;
  let peak = 0;
  const job = (i: number, ms: number) => async () => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, ms));
    running--;
    order.push(i);
    return i;
  };
  const ps = [lim.run(job(1, 40)), lim.run(job(2, 40)), lim.run(job(3, 10)), lim.run(job(4, 10))];
  await assert.rejects(lim.run(job(5, 10)), (e: unknown) => e instanceof HttpError && e.statusCode === 503 && e.code === 'BUSY');
  assert.deepEqual(await Promise.all(ps), [1, 2, 3, 4]);
  assert.equal(peak, 2);
  assert.deepEqual(lim.stats, { active: 0, queued: 0, maxActive: 2, maxQueue: 2 });

  const slow = new Limiter(1, 5, 100);
  const first = slow.run(job(6, 300));
  await assert.rejects(slow.run(job(7, 1)), (e: unknown) => e instanceof HttpError && e.code === 'QUEUE_TIMEOUT');
  await first;
  // Errors thrown by a job reach its caller and free the slot.
  await assert.rejects(slow.run(() => { throw new Error('boom'); }), /boom/);
  assert.equal(await slow.run(() => 42), 42);
  slow.close();
  await assert.rejects(slow.run(() => 1), (e: unknown) => e instanceof HttpError && e.code === 'SHUTTING_DOWN');
});
