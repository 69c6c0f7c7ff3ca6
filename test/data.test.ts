import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Batcher, FASHION_MNIST_CLASSES, datasetHash, imagesToFloat, oneHot, packTags, tagsOf, validateSplit, withoutClasses } from '../src/data/dataset.js';
import { loadDataset, SHIPPED_SUBSET_DIR } from '../src/data/registry.js';
import { writeIdxFile } from '../src/data/idx.js';
import { encodeGridPng } from '../src/data/png.js';
import { decodeImage } from '../src/data/image-decode.js';
import { Rng, deriveSeed } from '../src/core/random.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-data-'));

test('the shipped subset loads: 10k/2k real 28×28 images, balanced classes, Fashion-MNIST names', async () => {
  const ds = await loadDataset('fashion-mnist-subset');
  assert.equal(ds.train.count, 10000);
  assert.equal(ds.test.count, 2000);
  assert.equal(ds.height, 28);
  assert.deepEqual(ds.classNames, FASHION_MNIST_CLASSES);
  const counts = new Array(10).fill(0);
  for (const l of ds.train.labels) counts[l]++;
  assert.deepEqual(counts, new Array(10).fill(1000));
  // Real images: mostly dark background with a bright object, not noise.
  const x = imagesToFloat(ds.train, [0], 784);
  const mean = x.reduce((a, b) => a + b, 0) / 784;
  assert.ok(mean > 0.05 && mean < 0.7, `mean grey ${mean}`);
});

test('a directory of IDX files loads with classes.txt; bad directories give clear errors', async () => {
  const dir = tmp();
  const mk = (n: number, h = 4, w = 4) => ({ dims: [n, h, w], data: new Uint8Array(n * h * w).map((_, i) => i % 256) });
  await writeIdxFile(join(dir, 'train-images-idx3-ubyte'), mk(6), { gzip: false });
  await writeIdxFile(join(dir, 'train-labels-idx1-ubyte'), { dims: [6], data: Uint8Array.from([0, 1, 2, 0, 1, 2]) }, { gzip: true });
  await writeIdxFile(join(dir, 't10k-images.idx3-ubyte'), mk(3), { gzip: false });
  await writeIdxFile(join(dir, 't10k-labels.idx1-ubyte'), { dims: [3], data: Uint8Array.from([2, 1, 0]) }, { gzip: false });
  writeFileSync(join(dir, 'classes.txt'), 'cat\ndog\nbird\n');
  const ds = await loadDataset(dir);
  assert.deepEqual(ds.classNames, ['cat', 'dog', 'bird']);
  assert.equal(ds.train.count, 6);
  assert.equal(ds.width, 4);

  writeFileSync(join(dir, 'classes.txt'), 'cat\ndog\n');
  await assert.rejects(loadDataset(dir), /label 2 at index 2 is outside the 2 known classes/);

  const partial = tmp();
  copyFileSync(join(dir, 'train-images-idx3-ubyte'), join(partial, 'train-images-idx3-ubyte'));
  await assert.rejects(loadDataset(partial), /lacks IDX files matching .*train-labels/);
  await assert.rejects(loadDataset('no-such-dataset'), /unknown dataset 'no-such-dataset'/);
  await assert.rejects(loadDataset('mnist', { dataDir: tmp() }), /--data .*: no mnist IDX files there/);
  await assert.rejects(loadDataset('mnist'), /MNIST not found: pass --data DIR/);
});

test('fashion-mnist falls back to the shipped subset with a notice when the full set is absent', async () => {
  const prev = process.env.PROBSEM_DATA;
  process.env.PROBSEM_DATA = tmp();
  try {
    const notices: string[] = [];
    const ds = await loadDataset('fashion-mnist', { onNotice: (m) => notices.push(m) });
    // Either the Debian package is installed (full set) or the subset is used with a notice.
    if (ds.name === 'fashion-mnist-subset') assert.match(notices.join(' '), /using the shipped subset/);
    else assert.equal(ds.train.count, 60000);
  } finally {
    if (prev === undefined) delete process.env.PROBSEM_DATA;
    else process.env.PROBSEM_DATA = prev;
  }
  assert.ok(readdirSync(SHIPPED_SUBSET_DIR).length >= 4);
  // A directory the user names explicitly must hold the data: no silent fallback.
  await assert.rejects(loadDataset('fashion-mnist', { dataDir: tmp() }), /--data .*: no fashion-mnist IDX files there/);
});

test('batcher: each epoch is a seeded permutation; steps are a pure function of (seed, step)', () => {
  const b = new Batcher(50, 10, 3);
  assert.equal(b.stepsPerEpoch, 5);
  const epoch0 = new Set<number>();
  for (let s = 0; s < 5; s++) for (const i of b.indices(s)) epoch0.add(i);
  assert.equal(epoch0.size, 50);
  const fresh = new Batcher(50, 10, 3);
  assert.deepEqual(Array.from(fresh.indices(7)), Array.from(b.indices(7)));
  assert.deepEqual(Array.from(new Batcher(50, 10, 3).indices(2)), Array.from(b.indices(2)), 'going back an epoch works');
  assert.notDeepEqual(Array.from(new Batcher(50, 10, 4).indices(0)), Array.from(b.indices(0)));
  assert.throws(() => new Batcher(5, 10, 0), /exceeds the 5 training examples/);
  assert.throws(() => new Batcher(5, 0, 0), /positive integer/);
});

test('seeded random streams: reproducible, independent by purpose, standard normal moments', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  for (let i = 0; i < 10; i++) assert.equal(a.nextUint32(), b.nextUint32());
  assert.notEqual(deriveSeed(1, 'step', 2), deriveSeed(1, 'step', 3));
  assert.notEqual(deriveSeed(1, 'a'), deriveSeed(2, 'a'));
  const r = new Rng(7);
  const xs = r.fillNormal(new Float32Array(100000));
  const m = xs.reduce((s, v) => s + v, 0) / xs.length;
  const v = xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length;
  assert.ok(Math.abs(m) < 0.02 && Math.abs(v - 1) < 0.02, `mean ${m} var ${v}`);
  assert.deepEqual(Array.from(oneHot([2, 0], 3)), [0, 0, 1, 1, 0, 0]);
});

test('PNG grid round trip through the picture decoder (its own tests: image-decode.test.ts)', async () => {
  const img = new Float32Array(2 * 4 * 4);
  img[0] = 1; // top-left pixel of the first image is white
  img[16 + 15] = 1; // bottom-right of the second
  const png = encodeGridPng(img, 2, { cols: 2, height: 4, width: 4, pad: 0, scale: 1 });
  const back = (await decodeImage(png, { height: 4, width: 8, source: 'grid.png' })).pixels;
  assert.equal(back[0], 1);
  assert.equal(back[3 * 8 + 7], 1);
  assert.equal(back.reduce((a, b) => a + b, 0), 2);
  const inv = (await decodeImage(png, { height: 4, width: 8, source: 'grid.png', invert: true })).pixels;
  assert.equal(inv[1], 1);
  assert.equal(inv[0], 0);
});

test('tag sets: packed sorted without repeats, read back per image, kept by withoutClasses, hashed, and malformed sets refused', () => {
  const packed = packTags([[3, 1, 3], [], [0]]);
  assert.deepEqual([...packed.tagStart], [0, 2, 2, 3]);
  assert.deepEqual([...packed.tagIds], [1, 3, 0]);
  const split = { images: new Uint8Array([10, 20, 30]), labels: new Uint8Array([0, 1, 2]), count: 3, ...packed };
  assert.deepEqual([...tagsOf(split, 0)], [1, 3]);
  assert.deepEqual([...tagsOf(split, 1)], []);
  assert.deepEqual([...tagsOf({ images: split.images, labels: split.labels, count: 3 }, 0)], []);
  const kept = withoutClasses(split, new Set([1]), 1);
  assert.deepEqual([...kept.images], [10, 30]);
  assert.deepEqual([...kept.tagStart!], [0, 2, 3]);
  assert.deepEqual([...tagsOf(kept, 1)], [0]);
  validateSplit(split, 3, 'tagged', 4);
  assert.throws(() => validateSplit(split, 3, 'tagged', 3), /tag 3 of image 0 is outside the 3 known tags/);
  assert.throws(() => validateSplit({ ...split, tagStart: new Uint32Array([0, 2, 3]) }, 3, 'short'), /tag sets are malformed/);
  assert.throws(() => packTags([[70000]]), /tag index 70000/);
  const ds = (s: typeof split) => ({ name: 't', source: 't', height: 1, width: 1, classNames: ['a', 'b', 'c'], train: s, test: s, tagNames: ['w', 'x', 'y', 'z'] });
  const other = { ...split, ...packTags([[1, 3], [2], [0]]) };
  assert.notEqual(datasetHash(ds(split)), datasetHash(ds(other)));
});
