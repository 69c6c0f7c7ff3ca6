/**
 * Model directories and checkpoints where every byte that matters is checked: model.json's
 * content checksum, a manifest that must tile the weights exactly, and reads that accept only
 * regular files of the declared size (a FIFO, a directory or /dev/zero is refused, never read).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setupBackend } from './helpers.js';
import { ProbsemError } from '../src/core/errors.js';
import { createModel } from '../src/models/registry.js';
import { loadModel, readModelMeta, saveModel, updateModelMeta, type ModelFile } from '../src/models/persist.js';
import type { Trainable } from '../src/models/base.js';
import { readCheckpoint, writeCheckpoint } from '../src/train/checkpoint.js';

before(async () => {
  await setupBackend();
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-modelfiles-'));
const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

function saved(): { dir: string; meta: ModelFile } {
  const m = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, 1) as Trainable & { config: object };
  const dir = tmp();
  const meta = saveModel(dir, m, { classNames: CLASSES });
  m.params.dispose();
  return { dir, meta };
}

const readMeta = (dir: string) => JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as ModelFile & Record<string, unknown>;
const writeMeta = (dir: string, meta: object) => writeFileSync(join(dir, 'model.json'), JSON.stringify(meta, null, 2));
/** The file as an older probsem wrote it: no content checksum. */
const withoutContentHash = ({ contentSha256: _, ...rest }: ModelFile) => rest;

function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ProbsemError, `a ProbsemError, got ${(e as Error)?.stack}`);
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /\n/, 'one line');
    return true;
  });
}

const CHANGED = /model\.json was changed after saving: its content does not match its contentSha256/;

test('saveModel records a content checksum, and an untouched, re-indented or evaluated model still loads', () => {
  const { dir, meta } = saved();
  assert.match(meta.contentSha256 ?? '', /^[0-9a-f]{64}$/);
  const notices: string[] = [];
  const a = loadModel(dir, { onNotice: (m) => notices.push(m) });
  assert.deepEqual(notices, [], 'nothing to say about a current file');
  const blob = a.model.params.serialize().blob;
  // Key order and whitespace are not content; metrics and createdAt may change after saving.
  const m = readMeta(dir);
  const reordered = Object.fromEntries(Object.entries({ ...m, createdAt: '2020-01-01T00:00:00Z' }).reverse());
  writeFileSync(join(dir, 'model.json'), JSON.stringify(reordered));
  updateModelMeta(dir, { ...readModelMeta(dir), metrics: { annotationAccuracy: 0.777 } });
  const b = loadModel(dir);
  assert.equal(b.meta.metrics?.annotationAccuracy, 0.777);
  assert.deepEqual(b.model.params.serialize().blob, blob);
  // A bug that changed a covered field on the way would leave a file that no longer loads: refused.
  rejects(() => updateModelMeta(dir, { ...b.meta, classNames: [...CLASSES].reverse() }), /refusing to rewrite .*fields its content checksum covers/);
});

test('an edited model.json is refused: reversed class names, an edited config, shifted offsets, another holdout', () => {
  const { dir, meta } = saved();
  const edits: [string, (m: ModelFile) => object][] = [
    ['reversed classNames', (m) => ({ ...m, classNames: [...m.classNames].reverse() })],
    ['edited config', (m) => ({ ...m, config: { ...m.config, beta: 3 } })],
    ['shifted offsets', (m) => ({ ...m, weights: { ...m.weights, tensors: m.weights.tensors.map((e, i) => (i === 0 ? e : { ...e, offset: e.offset + 1 })) } })],
    ['holdout added', (m) => ({ ...m, holdout: ['Shirt'] })],
    ['dataset provenance', (m) => ({ ...m, dataset: { name: 'mnist', source: 'x', hash: 'y', height: 28, width: 28, trainCount: 1 } })],
    ['checksum itself', (m) => ({ ...m, contentSha256: 'f'.repeat(64) })],
    ['checksum not a string', (m) => ({ ...m, contentSha256: 7 })],
  ];
  for (const [what, edit] of edits) {
    writeMeta(dir, edit(meta));
    rejects(() => loadModel(dir), CHANGED);
    rejects(() => readModelMeta(dir), CHANGED);
    assert.ok(what);
  }
});

test('the manifest must tile the weights exactly, even in an older file without a content checksum', () => {
  const { dir, meta } = saved();
  const old = withoutContentHash(meta);
  const tensors = meta.weights.tensors;
  const last = tensors.length - 1;
  const cases: [typeof tensors, RegExp][] = [
    [tensors.map((e, i) => (i === 0 ? e : { ...e, offset: e.offset + 1 })), /starts at value \d+ but the previous one ends at \d+ \(gap\)/],
    [tensors.map((e, i) => (i === 1 ? { ...e, offset: e.offset - 1 } : e)), /\(overlap\)/],
    [tensors.map((e, i) => (i === 1 ? { ...e, name: tensors[0].name } : e)), /is listed twice/],
    [tensors.map((e, i) => (i === last ? { ...e, length: e.length - 1 } : e)), /has shape \[.*\] but length/],
    [tensors.slice(0, last), /the manifest covers \d+ values but the weights hold \d+/],
  ];
  for (const [t, re] of cases) {
    writeMeta(dir, { ...old, weights: { ...old.weights, tensors: t } });
    rejects(() => readModelMeta(dir), re);
    rejects(() => loadModel(dir), re);
  }
});

test('an older model directory (no content checksum) still loads, with a notice only when asked', () => {
  const { dir, meta } = saved();
  const want = loadModel(dir).model.params.serialize().blob;
  writeMeta(dir, withoutContentHash(meta));
  const notices: string[] = [];
  const r = loadModel(dir, { onNotice: (m) => notices.push(m) });
  assert.deepEqual(r.model.params.serialize().blob, want);
  assert.equal(notices.length, 1);
  assert.match(notices[0], /predates content checksums .*only its weights are verified/);
  assert.doesNotThrow(() => loadModel(dir), 'silent without a callback');
  // The shipped judges are such directories.
  for (const judge of ['fashion-mnist-subset-4fef71879c33c039', 'fashion-mnist-317ff7ef1d3be18a']) {
    assert.equal(loadModel(join('data', 'judges', judge)).meta.contentSha256, undefined);
  }
});

test('weights.bin must be a regular file of the declared size: FIFO, directory, /dev/zero, truncated, longer', { timeout: 30_000 }, () => {
  const { dir } = saved();
  const path = join(dir, 'weights.bin');
  const good = readFileSync(path);
  const replace = (make: () => void) => {
    rmSync(path, { recursive: true, force: true });
    make();
  };
  replace(() => assert.equal(spawnSync('mkfifo', [path]).status, 0, 'mkfifo'));
  rejects(() => loadModel(dir), /weights file .*weights\.bin is a FIFO, not a regular file/);
  replace(() => mkdirSync(path));
  rejects(() => loadModel(dir), /weights file .*weights\.bin is a directory, not a regular file/);
  replace(() => symlinkSync('/dev/zero', path));
  rejects(() => loadModel(dir), /weights file .*weights\.bin is a character device, not a regular file/);
  replace(() => writeFileSync(path, good.subarray(0, good.length - 8)));
  rejects(() => loadModel(dir), /weights\.bin is \d+ bytes but model\.json expects \d+ \(truncated or replaced\)/);
  replace(() => writeFileSync(path, Buffer.concat([good, Buffer.alloc(4)])));
  rejects(() => loadModel(dir), /weights\.bin is \d+ bytes but model\.json expects \d+ \(longer than saved or replaced\)/);
  rmSync(path);
  rejects(() => loadModel(dir), /weights\.bin is missing/);
  // A symlink to a regular file is an ordinary file.
  const elsewhere = join(tmp(), 'w.bin');
  writeFileSync(elsewhere, good);
  replace(() => symlinkSync(elsewhere, path));
  assert.doesNotThrow(() => loadModel(dir));
});

test('model.json itself: a FIFO or a directory is refused, not waited on', { timeout: 30_000 }, () => {
  const { dir } = saved();
  const path = join(dir, 'model.json');
  rmSync(path);
  assert.equal(spawnSync('mkfifo', [path]).status, 0);
  rejects(() => loadModel(dir), /model file .*model\.json is a FIFO, not a regular file/);
  rmSync(path);
  mkdirSync(path);
  rejects(() => readModelMeta(dir), /model\.json is a directory, not a regular file/);
});

test('the CLI reports a weights directory in one line with exit 2, no stack trace', () => {
  const { dir } = saved();
  rmSync(join(dir, 'weights.bin'));
  mkdirSync(join(dir, 'weights.bin'));
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'generate', '--run', dir, '--label', 'Shirt', '--out', join(tmp(), 'g.png')], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /weights\.bin is a directory, not a regular file/);
  assert.doesNotMatch(r.stderr, /EISDIR|\n\s+at /);
});

test('checkpoints: an edited header is refused, older ones still read, and only regular files are opened', { timeout: 30_000 }, () => {
  const dir = tmp();
  const path = join(dir, 'checkpoint.bin');
  const params = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
  const optimizer = new Uint8Array(new Float32Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).buffer);
  const tensors = [{ name: 'w', shape: [2, 3], dtype: 'float32' as const, offset: 0, length: 6 }];
  const opt = { t: 4, tensors: [{ ...tensors[0], name: 'm:w' }, { ...tensors[0], name: 'v:w', offset: 6 }], bytes: optimizer.byteLength };
  writeCheckpoint(path, { step: 4, model: 'pse', config: { latent: 3 }, seed: 1, batchSize: 10, lr: 1e-3, params: tensors, optimizer: opt }, params, optimizer);
  const ck = readCheckpoint(path);
  assert.equal(ck.header.step, 4);
  assert.match(ck.header.headerSha256 ?? '', /^[0-9a-f]{64}$/);
  // Edit the step in place (same length, so only the header checksum can tell).
  const file = readFileSync(path);
  const at = file.indexOf('"step":4');
  const edited = Buffer.from(file);
  edited.write('"step":9', at, 'latin1');
  writeFileSync(path, edited);
  rejects(() => readCheckpoint(path), /checkpoint .* is unreadable: header checksum mismatch/);
  // An older checkpoint has no header checksum: it still reads (its payload checksum holds).
  const hlen = file.readUInt32LE(8);
  const { headerSha256: _, ...oldHeader } = JSON.parse(file.toString('utf8', 12, 12 + hlen));
  const json = Buffer.from(JSON.stringify(oldHeader));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  writeFileSync(path, Buffer.concat([file.subarray(0, 8), len, json, file.subarray(12 + hlen)]));
  assert.deepEqual(readCheckpoint(path).params, params);
  // A manifest that does not tile its blob is refused.
  writeCheckpoint(path, { ...ck.header, params: [{ ...tensors[0], offset: 1 }] }, params, optimizer);
  rejects(() => readCheckpoint(path), /starts at value 1 but the previous one ends at 0 \(gap\)/);
  // Longer than the header says.
  writeCheckpoint(path, ck.header, params, optimizer);
  writeFileSync(path, Buffer.concat([readFileSync(path), Buffer.alloc(4)]));
  rejects(() => readCheckpoint(path), /payload has the wrong length/);
  rmSync(path);
  assert.equal(spawnSync('mkfifo', [path]).status, 0);
  rejects(() => readCheckpoint(path), /checkpoint .*checkpoint\.bin is a FIFO, not a regular file/);
  rmSync(path);
  symlinkSync('/dev/zero', path);
  rejects(() => readCheckpoint(path), /is a character device, not a regular file/);
  rmSync(path);
  mkdirSync(path);
  rejects(() => readCheckpoint(path), /is a directory, not a regular file/);
});
