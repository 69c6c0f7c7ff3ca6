/**
 * In-tab training's pieces in Node: the session that the explorer page's worker runs takes the
 * steps `probsem train` takes (same weights), lowers the loss, and packs a run archive that the
 * CLI's loader reads back to the same model; the ZIP and SHA-256 helpers the page uses agree with
 * standard tools; the kernels' browser path (unshared memory) computes what the Node path does.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { sha256Hex } from '../src/core/sha256.js';
import { crc32, readZip, writeZip } from '../src/core/zip.js';
import { KERNELS_WASM_BASE64 } from '../src/core/wasm/kernels-binary.js';
import { unsharedMemoryModule } from '../src/core/wasm/kernels.js';
import { loadDataset } from '../src/data/registry.js';
import { datasetHash, type Dataset, pixelsOf } from '../src/data/dataset.js';
import type { ImageModel, Trainable } from '../src/models/base.js';
import { loadModel, modelJsonText } from '../src/models/persist.js';
import { createModel } from '../src/models/registry.js';
import { evaluateRun } from '../src/runs/runs.js';
import { TrainSession, sessionModelConfig } from '../src/train/session.js';
import { train } from '../src/train/trainer.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-tab-'));

test('sha256Hex matches node:crypto, across block boundaries', () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 100_003]) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);
    assert.equal(sha256Hex(b), createHash('sha256').update(b).digest('hex'), `${n} bytes`);
  }
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

test('writeZip output is read by readZip and by unzip; a flipped byte fails the CRC', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  const entries = [
    { name: 'run/model.json', data: new TextEncoder().encode('{"a":1}\n') },
    { name: 'run/weights.bin', data: Uint8Array.from({ length: 5000 }, (_, i) => i & 255) },
  ];
  const zip = writeZip(entries);
  assert.deepEqual(readZip(zip, 'x').map((e) => [e.name, Buffer.from(e.data).toString('hex')]), entries.map((e) => [e.name, Buffer.from(e.data).toString('hex')]));
  const dir = tmp();
  writeFileSync(join(dir, 'a.zip'), zip);
  const t = spawnSync('unzip', ['-t', join(dir, 'a.zip')], { encoding: 'utf8' });
  if (t.error) console.log('# unzip not installed: the archive is checked by readZip alone');
  else assert.equal(t.status, 0, t.stdout + t.stderr);
  const bad = Uint8Array.from(zip);
  bad[200] ^= 1; // inside weights.bin's data
  assert.throws(() => readZip(bad, 'bad.zip'), /CRC-32/);
  assert.throws(() => readZip(new Uint8Array(100), 'empty.zip'), /not a readable ZIP archive/);
});

test('the kernel module with unshared memory links against an ordinary memory', () => {
  const bytes = Buffer.from(KERNELS_WASM_BASE64, 'base64');
  const mod = new WebAssembly.Module(unsharedMemoryModule(bytes));
  const memory = new WebAssembly.Memory({ initial: 32, maximum: 16384 });
  const ex = new WebAssembly.Instance(mod, { env: { memory } }).exports as { count_nonfinite(p: number, n: number): number };
  const f = new Float32Array(memory.buffer, 1 << 20, 4);
  f.set([1, NaN, Infinity, 2]);
  assert.equal(ex.count_nonfinite(1 << 20, 4), 2);
  // The shared original does not link there: the flag is what changed.
  assert.throws(() => new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }));
});

test('a session takes the steps probsem train takes: identical weights', async () => {
  const o = { latent: 4, width: 64, batchSize: 50, lr: 1e-3, seed: 3, threads: 1 };
  const s = await TrainSession.create(ds, o);
  s.step(7);
  s.step(5);
  const mine = s.modelFile(datasetHash(ds)).blob;
  await s.dispose();
  const model = createModel('pse-star', sessionModelConfig(ds, o), o.seed) as Trainable;
  await train(model, ds.train, { pixels: pixelsOf(ds), numClasses: 10 }, { steps: 12, batchSize: 50, lr: 1e-3, seed: 3, engine: 'fast' });
  const theirs = model.params.serialize().blob;
  model.params.dispose();
  assert.equal(mine.byteLength, theirs.byteLength);
  assert.ok(Buffer.from(mine).equals(Buffer.from(theirs)), 'the session and train() end with different weights');
});

test('a session lowers the loss, and its run archive loads in the CLI to the same model', async () => {
  const s = await TrainSession.create(ds, { latent: 2, width: 128, seed: 1 });
  const terms = s.step(300);
  const mean = (a: Record<string, number>[]) => a.reduce((x, t) => x + t.loss, 0) / a.length;
  const first = mean(terms.slice(0, 20));
  const last = mean(terms.slice(-20));
  assert.ok(last < 0.8 * first, `loss ${first.toFixed(1)} → ${last.toFixed(1)}`);
  const { meta, blob } = s.modelFile(datasetHash(ds), sha256Hex);
  assert.equal(meta.training?.steps, 300);
  const zip = writeZip([
    { name: 'pse-star-2d/model.json', data: new TextEncoder().encode(modelJsonText(meta)) },
    { name: 'pse-star-2d/weights.bin', data: blob },
  ]);
  const path = join(tmp(), 'run.zip');
  writeFileSync(path, zip);
  const ids = [0, 1, 2, 3, 4];
  const want = s.encodeMeans(ids);
  await s.dispose();
  const { model } = loadModel<ImageModel & Trainable>(path);
  const got = tf.tidy(() => model.encodeImage(tf.tensor2d(Float32Array.from(ds.test.images.subarray(0, 5 * 784), (v) => v / 255), [5, 784])).mean.dataSync());
  assert.deepEqual(Array.from(got), Array.from(want));
  model.params.dispose();
  // The CLI's evaluation reads the archive too; it prints the metrics without rewriting the archive.
  const notices: string[] = [];
  const report = await evaluateRun(path, { skipGeneration: true, triplets: 0, retrievalQueries: 100, save: true, onNotice: (m) => notices.push(m) });
  assert.ok((report.annotationAccuracy ?? 0) > 0.5, `annotation accuracy ${report.annotationAccuracy}`);
  assert.ok(notices.some((m) => /metrics are printed only: .*run archive/.test(m)), notices.join('; '));
  // A damaged archive fails with the reason.
  const bad = readFileSync(path);
  bad[bad.length - 200] ^= 1;
  writeFileSync(path, bad);
  assert.throws(() => loadModel(path), /CRC-32|checksum/);
});

test('session options are checked', async () => {
  await assert.rejects(TrainSession.create(ds, { latent: 0 }), /latent must be/);
  await assert.rejects(TrainSession.create(ds, { batchSize: 20_000 }), /exceeds/);
  await assert.rejects(TrainSession.create(ds, { lr: -1 }), /learning rate/);
});
