/**
 * Colour datasets end to end: folder:DIR?channels=3 pictures kept as they are (RGB per pixel,
 * transparency on white), cached and reloaded, and models trained on them (MLP and convolutional
 * encoders, inputDim = H·W·3), on classes that only colour tells apart; CIFAR fixtures through a run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { Rng } from '../src/core/random.js';
import { datasetHash, pixelsOf } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { evaluateRun, trainRun } from '../src/runs/runs.js';
import { ModelService } from '../src/server/service.js';
import { setupBackend } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'probsem-colour-'));
const cache = join(root, 'cache');
const PICS = join(root, 'pics');
const PER_CLASS = 40;
const SIDE = 20;
/** Three colours of the same luminance (116 of 255): grey pictures cannot tell the classes apart. */
const COLOURS: [string, [number, number, number]][] = [['red', [200, 80, 80]], ['green', [60, 155, 60]], ['blue', [60, 120, 241]]];

before(async () => {
  await setupBackend();
  process.env.PROBSEM_CACHE = cache;
  const rng = new Rng(7);
  for (const [name, rgb] of COLOURS) {
    mkdirSync(join(PICS, name), { recursive: true });
    for (let k = 0; k < PER_CLASS; k++) {
      // A noisy rectangle of random size and place on white; every fourth picture has a transparent background.
      const px = Buffer.alloc(SIDE * SIDE * 4);
      const [h, w] = [10 + Math.floor(rng.uniform() * 6), 10 + Math.floor(rng.uniform() * 6)];
      const [y0, x0] = [Math.floor(rng.uniform() * (SIDE - h)), Math.floor(rng.uniform() * (SIDE - w))];
      const clear = k % 4 === 0;
      for (let y = 0; y < SIDE; y++) {
        for (let x = 0; x < SIDE; x++) {
          const inside = y >= y0 && y < y0 + h && x >= x0 && x < x0 + w;
          const o = (y * SIDE + x) * 4;
          for (let c = 0; c < 3; c++) px[o + c] = inside ? Math.max(0, Math.min(255, rgb[c] + Math.round((rng.uniform() - 0.5) * 20))) : clear ? 0 : 255;
          px[o + 3] = inside || !clear ? 255 : 0;
        }
      }
      await sharp(px, { raw: { width: SIDE, height: SIDE, channels: 4 } }).png().toFile(join(PICS, name, `${k}.png`));
    }
  }
});
after(() => {
  delete process.env.PROBSEM_CACHE;
  rmSync(root, { recursive: true, force: true });
});

test('folder:?channels=3 keeps colour as it is (white backgrounds, transparency on white), cached with its channels', async () => {
  const spec = `folder:${PICS}?size=16&channels=3`;
  const ds = await loadDataset(spec);
  assert.equal(ds.name, spec);
  assert.equal(ds.channels, 3);
  assert.equal(pixelsOf(ds), 16 * 16 * 3);
  assert.equal(ds.train.images.length, ds.train.count * 768);
  // Three corners at least are white in every picture, opaque or transparent: nothing inverted or levelled.
  for (const split of [ds.train, ds.test]) {
    for (let i = 0; i < split.count; i++) {
      const white = [0, 15, 16 * 15, 16 * 16 - 1].filter((p) => [0, 1, 2].every((c) => split.images[i * 768 + p * 3 + c] > 240));
      assert.ok(white.length >= 3, `picture ${i}: white corners ${white.join(',')}`);
    }
  }
  const again = await loadDataset(spec, { onProgress: () => assert.fail('decoded again') });
  assert.equal(again.channels, 3);
  assert.equal(datasetHash(again), datasetHash(ds));
  const grey = await loadDataset(`folder:${PICS}?size=16`);
  assert.equal(grey.channels, undefined);
  assert.equal(pixelsOf(grey), 256);
  assert.notEqual(datasetHash(grey), datasetHash(ds));
});

/** Trains PSE* for 400 steps and returns the annotation accuracy on the held-out fifth. */
async function annotation(dataset: string, out: string, modelOptions: Record<string, unknown> = {}): Promise<number> {
  await trainRun({ model: 'pse-star', dataset, latent: 4, steps: 400, batchSize: 16, lr: 1e-3, seed: 0, out, checkpointEvery: 0, modelOptions });
  const r = await evaluateRun(out, { skipGeneration: true, triplets: 0 });
  return r.annotationAccuracy!;
}

test('PSE* learns classes only colour tells apart: RGB through the MLP and the convolutional encoder, not grey', { timeout: 600_000 }, async () => {
  const rgb = await annotation(`folder:${PICS}?size=16&channels=3`, join(root, 'rgb'));
  const meta = JSON.parse(readFileSync(join(root, 'rgb', 'model.json'), 'utf8'));
  assert.equal(meta.config.inputDim, 768);
  assert.equal(meta.dataset.channels, 3);
  const conv = await annotation(`folder:${PICS}?size=16&channels=3`, join(root, 'conv'), { encoderConv: [8, 16] });
  const convMeta = JSON.parse(readFileSync(join(root, 'conv', 'model.json'), 'utf8'));
  assert.deepEqual([convMeta.config.imageHeight, convMeta.config.imageChannels], [16, 3]);
  const grey = await annotation(`folder:${PICS}?size=16`, join(root, 'grey'));
  process.stdout.write(`# annotation on 24 test pictures: RGB mlp ${rgb.toFixed(3)}, RGB conv ${conv.toFixed(3)}, grey mlp ${grey.toFixed(3)}\n`);
  assert.ok(rgb >= 0.9, `RGB mlp annotation ${rgb}`);
  assert.ok(conv >= 0.9, `RGB conv annotation ${conv}`);
  assert.ok(grey <= 0.75, `grey annotation ${grey}: the classes differ only in colour`);
});

test('a CIFAR dataset trains and evaluates through a run (3072 inputs), grey on request', { timeout: 300_000 }, async () => {
  const dir = join(import.meta.dirname, 'fixtures', 'cifar', 'cifar-10-batches-py');
  const out = join(root, 'cifar');
  await trainRun({ model: 'vae', dataset: `cifar10:${dir}`, latent: 2, steps: 5, batchSize: 5, lr: 1e-3, seed: 0, out, checkpointEvery: 0 });
  const meta = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8'));
  assert.deepEqual([meta.config.inputDim, meta.dataset.channels, meta.dataset.name], [3072, 3, `cifar10:${dir}`]);
  const r = await evaluateRun(out, { skipGeneration: true, triplets: 0 });
  assert.ok(Number.isFinite(r.reconstructionError), JSON.stringify(r.reconstructionError));
  await assert.rejects(evaluateRun(out, { dataset: `cifar10:${dir}?channels=1`, skipGeneration: true, triplets: 0 }), /the model expects 32×32 RGB images but dataset cifar10:.*\?channels=1 has 32×32 images/);
});

test('train --channels: added to folder and CIFAR specs, refused for grey IDX datasets', () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: cache } });
  const bad = cli('train', '--model', 'vae', '--dataset', 'fashion-mnist-subset', '--channels', '3', '--steps', '1', '--out', join(root, 'x'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--channels applies to folder:DIR, manifest:FILE and cifar datasets; IDX datasets are grey/);
  const two = cli('train', '--model', 'vae', '--dataset', `folder:${PICS}`, '--channels', '2', '--steps', '1', '--out', join(root, 'x'));
  assert.match(two.stderr, /--channels must be 1 \(grey\) or 3 \(RGB\), got '2'/);
  const dir = join(import.meta.dirname, 'fixtures', 'cifar', 'cifar-100-binary');
  const out = join(root, 'cifar-grey');
  const ok = cli('train', '--model', 'vae', '--dataset', `cifar100-coarse:${dir}`, '--channels', '1', '--latent', '2', '--steps', '2', '--batch', '2', '--out', out, '--quiet');
  assert.equal(ok.status, 0, ok.stderr);
  const meta = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8'));
  assert.deepEqual([meta.dataset.name, meta.config.inputDim, meta.classNames.length], [`cifar100:${dir}?labels=coarse&channels=1`, 1024, 3]);
});

test('colour runs: annotate takes a picture in colour, generate and reconstruct write RGB grids', { timeout: 300_000 }, async () => {
  const run = join(root, 'rgb');
  assert.ok(existsSync(join(run, 'model.json')), 'needs the RGB run of the PSE* test');
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: cache } });
  for (const [name] of COLOURS) {
    const a = cli('annotate', '--run', run, join(PICS, name, '1.png'), '--json');
    assert.equal(a.status, 0, a.stderr);
    assert.equal(JSON.parse(a.stdout).labels[0].label, name);
  }
  const gen = join(root, 'gen.png');
  const g = cli('generate', '--run', run, '--label', 'green', '--n', '4', '--out', gen);
  assert.equal(g.status, 0, g.stderr);
  const rec = join(root, 'rec.png');
  const r = cli('reconstruct', '--run', run, '--n', '4', '--out', rec);
  assert.equal(r.status, 0, r.stderr);
  // The server's PNGs and uploads too.
  const service = await ModelService.load(run);
  const served = join(root, 'served.png');
  writeFileSync(served, service.reconstructionPng(0, 4));
  const upload = await service.decodeUpload(readFileSync(join(PICS, 'blue', '2.png')), { maxPixels: 1e6 });
  assert.equal(upload.pixels.length, 16 * 16 * 3);
  assert.equal(service.annotate(upload.pixels, {}).labels[0].label, 'blue');
  for (const file of [gen, rec, served]) {
    const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3, file);
    // Some pixels are clearly coloured (grey grids would have r = g = b everywhere).
    let coloured = 0;
    for (let i = 0; i < data.length; i += 3) if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 40) coloured++;
    assert.ok(coloured > 50, `${file}: ${coloured} coloured pixels`);
  }
});
