/**
 * CIFAR-10/100 readers (src/data/cifar.ts) and the restricted pickle reader (src/data/pickle.ts),
 * on small files in exactly the distributed formats (test/fixtures/cifar/make-fixtures.py).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseCifarSpec, cifarName } from '../src/data/cifar.js';
import { type Dataset, datasetHash, pixelsOf } from '../src/data/dataset.js';
import { PyBytes, dictGet, isNdArray, readPickle } from '../src/data/pickle.js';
import { loadDataset } from '../src/data/registry.js';
import { coordinateRun } from '../src/analysis/coordinated.js';
import { setupBackend } from './helpers.js';

const FIX = join(import.meta.dirname, 'fixtures', 'cifar');
const tmp = mkdtempSync(join(tmpdir(), 'probsem-cifar-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** As make-fixtures.py. */
const pixel = (seed: number, i: number, c: number, y: number, x: number) => (seed * 31 + i * 17 + c * 85 + y * 5 + x * 3) % 256;

/** Checks image j of a split is image i of the fixture batch `seed`, per pixel RGB or luminance. */
function assertImage(ds: Dataset, split: 'train' | 'test', j: number, seed: number, i: number) {
  const C = ds.channels ?? 1;
  const px = ds[split].images.subarray(j * pixelsOf(ds), (j + 1) * pixelsOf(ds));
  for (const [y, x] of [[0, 0], [0, 31], [17, 5], [31, 31]]) {
    const rgb = [0, 1, 2].map((c) => pixel(seed, i, c, y, x));
    const at = (y * 32 + x) * C;
    if (C === 3) assert.deepEqual([...px.subarray(at, at + 3)], rgb, `${split} ${j} pixel (${y}, ${x})`);
    else assert.equal(px[at], Math.round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]));
  }
}

const CIFAR10 = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

test('cifar10: binary, Python 2 pickles and Python 3 pickles read to the same RGB dataset', async () => {
  const bin = await loadDataset(`cifar10:${join(FIX, 'cifar-10-batches-bin')}`);
  assert.equal(bin.name, `cifar10:${join(FIX, 'cifar-10-batches-bin')}`);
  assert.deepEqual([bin.height, bin.width, bin.channels, pixelsOf(bin)], [32, 32, 3, 3072]);
  assert.deepEqual(bin.classNames, CIFAR10);
  assert.equal(bin.train.count, 10);
  assert.equal(bin.test.count, 3);
  // Five batches of two, in order; labels (seed + i) % 10.
  assert.deepEqual([...bin.train.labels], [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
  assert.deepEqual([...bin.test.labels], [6, 7, 8]);
  assertImage(bin, 'train', 0, 1, 0);
  assertImage(bin, 'train', 9, 5, 1);
  assertImage(bin, 'test', 2, 6, 2);
  for (const dir of ['cifar-10-batches-py', 'cifar-10-py3']) {
    const py = await loadDataset(`cifar10:${join(FIX, dir)}`);
    assert.deepEqual(py.classNames, CIFAR10, dir);
    assert.deepEqual(py.train, bin.train, dir);
    assert.deepEqual(py.test, bin.test, dir);
  }
  // The folder holding the extracted ones: binary is preferred.
  const parent = await loadDataset(`cifar10:${FIX}`);
  assert.equal(parent.source, join(FIX, 'cifar-10-batches-bin'));
  assert.equal(datasetHash(parent), datasetHash(bin));
});

test('cifar10?channels=1: luminance, one value per pixel', async () => {
  const grey = await loadDataset(`cifar10:${join(FIX, 'cifar-10-batches-py')}?channels=1`);
  assert.equal(grey.channels, 1);
  assert.equal(pixelsOf(grey), 1024);
  assert.equal(grey.train.images.length, 10 * 1024);
  assertImage(grey, 'train', 3, 2, 1);
  assertImage(grey, 'test', 0, 6, 0);
});

test('cifar100: fine labels by default, coarse as an option or cifar100-coarse:, both formats', async () => {
  const FINE = ['apple', 'aquarium_fish', 'baby', 'bear', 'beaver', 'bed'];
  for (const dir of ['cifar-100-binary', 'cifar-100-python']) {
    const fine = await loadDataset(`cifar100:${join(FIX, dir)}`);
    assert.deepEqual(fine.classNames, FINE, dir);
    assert.deepEqual([fine.train.count, fine.test.count], [4, 3]);
    // Fine labels (seed + 2i) % 6; coarse = fine % 3.
    assert.deepEqual([...fine.train.labels], [1, 3, 5, 1], dir);
    assert.deepEqual([...fine.test.labels], [2, 4, 0], dir);
    assertImage(fine, 'train', 2, 7, 2);
    assertImage(fine, 'test', 1, 8, 1);
    // The superclasses stay with the fine labels as the dataset's own hierarchy (fine % 3 here).
    assert.deepEqual(fine.hierarchy, { parents: ['aquatic_mammals', 'fish', 'flowers'], parentOf: [0, 1, 2, 0, 1, 2] }, dir);
    const coarse = await loadDataset(`cifar100:${join(FIX, dir)}?labels=coarse`);
    assert.equal(coarse.hierarchy, undefined);
    assert.deepEqual(coarse.classNames, ['aquatic_mammals', 'fish', 'flowers']);
    assert.deepEqual([...coarse.train.labels], [1, 0, 2, 1], dir);
    assert.deepEqual(coarse.train.images, fine.train.images);
    const alias = await loadDataset(`cifar100-coarse:${join(FIX, dir)}`);
    assert.equal(alias.name, coarse.name);
    assert.deepEqual(alias.train, coarse.train);
  }
});

test('paired:cifar10: colour images side by side, each row r, g, b per pixel', async () => {
  const base = await loadDataset(`cifar10:${join(FIX, 'cifar-10-batches-bin')}`);
  const p = await loadDataset(`paired:cifar10:${join(FIX, 'cifar-10-batches-bin')}?train=4&test=2`);
  assert.deepEqual([p.height, p.width, p.channels, pixelsOf(p)], [32, 64, 3, 6144]);
  // Row r of a paired image is row r of the first image (96 values), then row r of the second.
  const baseRow = (i: number, r: number) => base.train.images.subarray(i * 3072 + r * 96, i * 3072 + (r + 1) * 96).join();
  const pairRow = (n: number, r: number, half: 0 | 1) => p.train.images.subarray(n * 6144 + r * 192 + half * 96, n * 6144 + r * 192 + (half + 1) * 96).join();
  const sources = (label: number) => [...Array(base.train.count).keys()].filter((i) => base.train.labels[i] === label);
  for (let n = 0; n < p.train.count; n++) {
    assert.ok(sources(p.train.labels[n]).some((i) => [0, 5, 31].every((r) => baseRow(i, r) === pairRow(n, r, 0))), `pair ${n}, left half`);
    assert.ok(sources(p.train.labels2![n]).some((i) => [0, 7, 31].every((r) => baseRow(i, r) === pairRow(n, r, 1))), `pair ${n}, right half`);
  }
});

test('CIFAR specs: canonical names and clear refusals of bad options', () => {
  assert.equal(cifarName(parseCifarSpec('cifar100-coarse:/d?channels=1')), 'cifar100:/d?labels=coarse&channels=1');
  assert.equal(cifarName(parseCifarSpec('cifar10:/d?channels=3')), 'cifar10:/d');
  assert.throws(() => parseCifarSpec('cifar10:/d?channels=2'), /channels must be 1 \(grey\) or 3 \(RGB\), got '2'/);
  assert.throws(() => parseCifarSpec('cifar10:/d?labels=coarse'), /cifar10: unknown option 'labels' \(channels\)/);
  assert.throws(() => parseCifarSpec('cifar100:/d?labels=super'), /labels must be fine .* or coarse/);
  assert.throws(() => parseCifarSpec('cifar10:'), /needs a directory/);
});

/** A copy of a fixture folder to damage. */
function copy(dir: string): string {
  const to = mkdtempSync(join(tmp, 'c-'));
  cpSync(join(FIX, dir), to, { recursive: true });
  return to;
}

test('CIFAR: missing, truncated and corrupt files are refused naming the file and the problem', async () => {
  await assert.rejects(loadDataset(`cifar10:${join(tmp, 'nowhere')}`), /no such directory/);
  await assert.rejects(loadDataset(`cifar100:${join(FIX, 'cifar-10-batches-bin')}`), /holds no cifar100 files: expected train.bin, test.bin \(binary\); or train, test \(python\)/);

  let d = copy('cifar-10-batches-bin');
  rmSync(join(d, 'data_batch_4.bin'));
  await assert.rejects(loadDataset(`cifar10:${d}`), (e: Error) => e.message === `${d}: cifar10 (binary format) lacks data_batch_4.bin`);

  d = copy('cifar-10-batches-bin');
  truncateSync(join(d, 'data_batch_2.bin'), 3073 + 1000);
  await assert.rejects(loadDataset(`cifar10:${d}`), (e: Error) => e.message.startsWith(`${join(d, 'data_batch_2.bin')} is 4073 bytes, not a whole number of 3073-byte cifar10 records (1 records and 1000 bytes over`));

  // A CIFAR-100 file among CIFAR-10 ones: the record size says so.
  d = copy('cifar-10-batches-bin');
  cpSync(join(FIX, 'cifar-100-binary', 'test.bin'), join(d, 'test_batch.bin'));
  await assert.rejects(loadDataset(`cifar10:${d}`), /test_batch.bin is 9222 bytes, not a whole number of 3073-byte cifar10 records \(3 records and 3 bytes over: truncated, or a CIFAR-100 file\?\)/);

  d = copy('cifar-10-batches-bin');
  const b = readFileSync(join(d, 'test_batch.bin'));
  b[3073] = 12; // the second test image's label
  writeFileSync(join(d, 'test_batch.bin'), b);
  await assert.rejects(loadDataset(`cifar10:${d}`), (e: Error) => e.message === `${join(d, 'test_batch.bin')}: image 1 has label 12, but there are 10 classes`);

  d = copy('cifar-10-batches-py');
  const full = readFileSync(join(d, 'data_batch_3'));
  writeFileSync(join(d, 'data_batch_3'), full.subarray(0, full.length - 500));
  await assert.rejects(loadDataset(`cifar10:${d}`), (e: Error) => e.message.startsWith(`${join(d, 'data_batch_3')}: not a readable pickle: truncated`));

  d = copy('cifar-100-python');
  writeFileSync(join(d, 'meta'), Buffer.from('\x80\x02cos\nsystem\nq\x00.', 'latin1'));
  await assert.rejects(loadDataset(`cifar100:${d}`), /meta: not a readable pickle: it refers to os.system, which this reader does not load/);

  d = copy('cifar-100-python');
  writeFileSync(join(d, 'test'), Buffer.from('\x80\x02}q\x01(U\x04dataq\x02K\x07u.', 'latin1'));
  await assert.rejects(loadDataset(`cifar100:${d}`), /test: 'data' should be a uint8 array of shape \(N, 3072\), found something else/);

  d = copy('cifar-10-batches-py');
  writeFileSync(join(d, 'batches.meta'), 'label names\n');
  await assert.rejects(loadDataset(`cifar10:${d}`), /batches.meta: not a readable pickle: no mark to pop to \(at byte 0\)/);
});

test('pickle reader: the opcodes of CIFAR files and Python 3 re-pickles', () => {
  const p = (s: string) => readPickle(Buffer.from(s, 'latin1'), 'x');
  // {b'a': [1, 300, -1, 2**40], u'b': (None, True, 1.5)} at protocol 2.
  const v = p('\x80\x02}q\x00(U\x01aq\x01]q\x02(K\x01M,\x01J\xff\xff\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01eX\x01\x00\x00\x00bN\x88G?\xf8\x00\x00\x00\x00\x00\x00\x87u.');
  assert.deepEqual(dictGet(v, 'a'), [1, 300, -1, 2 ** 40]);
  assert.deepEqual(dictGet(v, 'b'), [null, true, 1.5]);
  assert.ok([...(v as Map<unknown, unknown>).keys()][0] instanceof PyBytes);
  // Memo: h\x01 fetches the list again.
  assert.deepEqual(p('\x80\x02]q\x01(K\x05eh\x01\x86.'), [[5], [5]]);
  assert.throws(() => p('\x80\x02K\x01K\x02.'), /x: not a readable pickle: 2 values left on the stack at STOP \(at byte 6\)/);
  assert.throws(() => p('\x80\x02h\x09.'), /memo entry 9 was never stored/);
  assert.throws(() => p(''), /truncated: the file ends before the STOP opcode/);
  const batch = readPickle(readFileSync(join(FIX, 'cifar-10-py3', 'data_batch_1')), 'b');
  const labels = dictGet(batch, 'labels');
  assert.ok(isNdArray(labels) && labels.dtype === 'i8');
  assert.deepEqual(labels.data, [1, 2]);
});

test('use on CIFAR-100 takes the superclasses as its taxonomy; --ontology dataset on a dataset without one is refused', async () => {
  await setupBackend();
  const r = await coordinateRun({ method: 'use', dataset: `cifar100:${join(FIX, 'cifar-100-binary')}`, steps: 2, batchSize: 2, hidden: [8], embedDim: 4 });
  assert.equal(r.hierarchy?.source, 'dataset');
  assert.deepEqual(r.hierarchy?.parents.map((p) => p.classes), [['apple', 'bear'], ['aquarium_fish', 'beaver'], ['baby', 'bed']]);
  await assert.rejects(
    coordinateRun({ method: 'use', dataset: `cifar10:${join(FIX, 'cifar-10-batches-bin')}`, steps: 1, batchSize: 2, ontology: 'dataset' }),
    /states no hierarchy of its own: use --ontology wordnet or none/,
  );
});
