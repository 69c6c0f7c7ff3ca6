import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { datasetHash, pixelsOf, type Split } from '../src/data/dataset.js';
import { npyHeader, NpyWriter, readNpy } from '../src/data/npy.js';
import { loadDataset } from '../src/data/registry.js';
import type { ImageModel, Trainable } from '../src/models/base.js';
import { saveModel } from '../src/models/persist.js';
import { createModel } from '../src/models/registry.js';
import { embedSplit } from '../src/runs/embed.js';
import { encodeSplitGaussians } from '../src/runs/retrieval.js';
import { setupBackend } from './helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-embed-'));

/** Debian's numpy (python3-numpy), where installed: the reader the format is for. */
const PYTHON = '/usr/bin/python3';
const hasNumpy = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import numpy'], { encoding: 'utf8' }).status === 0;
/** pandas with a Parquet engine (pyarrow or fastparquet), where installed: Debian 12 packages neither engine. */
const hasPandasParquet =
  existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import pandas, importlib.util as u, sys; sys.exit(0 if u.find_spec("pyarrow") or u.find_spec("fastparquet") else 1)'], { encoding: 'utf8' }).status === 0;

/** A Parquet file's rows and metadata, read by hyparquet (the reader paired with the writer). */
async function readParquet(path: string) {
  const { parquetMetadata, parquetReadObjects } = await import('hyparquet');
  const b = readFileSync(path);
  const file = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  const md = parquetMetadata(file);
  const rows = (await parquetReadObjects({ file })) as { id: number; labels: number[]; label_names: string[]; mean: number[]; variance?: number[]; scale_tril?: number[] }[];
  const meta = JSON.parse(md.key_value_metadata?.find((kv) => kv.key === 'probsem')?.value ?? 'null');
  return { rows, meta, rowGroups: md.row_groups.length, schema: md.schema.map((e) => e.name) };
}

/** The first n images of a split, so the tests encode little. */
function head(s: Split, n: number, pixels: number): Split {
  return { images: s.images.subarray(0, n * pixels), labels: s.labels.subarray(0, n), count: n, ...(s.labels2 ? { labels2: s.labels2.subarray(0, n) } : {}) };
}

test('npy header: numpy\'s dict, 64-byte aligned, a trailing comma for one dimension; readNpy reads what NpyWriter wrote', () => {
  const h = npyHeader('<f4', [3, 2]);
  assert.equal(h.length % 64, 0);
  assert.equal(h.subarray(0, 8).toString('latin1'), '\x93NUMPY\x01\x00');
  assert.equal(h.readUInt16LE(8), h.length - 10);
  assert.match(h.toString('latin1', 10), /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(3, 2\), \} *\n$/);
  assert.match(npyHeader('<i4', [7]).toString('latin1'), /'shape': \(7,\)/);
  const dir = tmp();
  const w = new NpyWriter(join(dir, 'a.npy'), '<f4', [3, 2]);
  w.append(Float32Array.of(1, 2));
  w.append(Float32Array.of(3, 4.5, -6, 1e-30));
  w.close();
  const r = readNpy(join(dir, 'a.npy'));
  assert.deepEqual(r.shape, [3, 2]);
  assert.deepEqual(Array.from(r.data), [1, 2, 3, 4.5, -6, Math.fround(1e-30)]);
  const short = new NpyWriter(join(dir, 'b.npy'), '<i4', [4]);
  short.append(Int32Array.of(1, 2));
  assert.throws(() => short.close(), /got 2 of its 4 values/);
  const over = new NpyWriter(join(dir, 'c.npy'), '<i4', [1]);
  assert.throws(() => over.append(Int32Array.of(1, 2)), /overflows it/);
  assert.throws(() => over.append(Float32Array.of(1) as unknown as Int32Array), /holds <i4, got a Float32Array/);
  over.abort();
});

test('embed streams diagonal and full-covariance posteriors to .npy, JSON lines and Parquet that read back exactly (and load in numpy and pandas where installed)', async (t) => {
  await setupBackend();
  const ds = await loadDataset('fashion-mnist-subset');
  const pixels = pixelsOf(ds);
  const split = head(ds.test, 230, pixels);
  const models: [string, ImageModel][] = [
    ['diag', createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, 1) as unknown as ImageModel],
    ['full', createModel('informed', { inputDim: 784, numClasses: 10, latent: 10, encoderHidden: [8], decoderHidden: [8] }, 2) as unknown as ImageModel],
  ];
  for (const [kind, model] of models) {
    const want = encodeSplitGaussians(model, split, pixels);
    assert.equal(want.kind, kind);
    const dir = join(tmp(), 'emb');
    // 230 images in batches of 100: the last batch is short.
    const r = await embedSplit(model, split, pixels, { out: dir, format: 'npy', batch: 100, classNames: ds.classNames, meta: { split: 'test' } });
    assert.equal(r.count, 230);
    const spreadFile = kind === 'diag' ? 'variance.npy' : 'scale_tril.npy';
    assert.deepEqual(readdirSync(dir).sort(), ['ids.npy', 'labels.npy', 'mean.npy', 'meta.json', spreadFile].sort());
    const mean = readNpy(join(dir, 'mean.npy'));
    assert.deepEqual(mean.shape, [230, want.dim]);
    assert.deepEqual(mean.data, want.mean);
    const spread = readNpy(join(dir, spreadFile));
    assert.deepEqual(spread.data, want.kind === 'diag' ? want.variance : want.scaleTril);
    assert.deepEqual(spread.shape, kind === 'diag' ? [230, want.dim] : [230, want.dim, want.dim]);
    assert.deepEqual(Array.from(readNpy(join(dir, 'ids.npy')).data), Array.from({ length: 230 }, (_, i) => i));
    assert.deepEqual(Array.from(readNpy(join(dir, 'labels.npy')).data), Array.from(split.labels));
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
    assert.equal(meta.format, 'probsem-embed');
    assert.equal(meta.kind, kind);
    assert.deepEqual(meta.classNames, ds.classNames);
    // JSON lines: every value reads back as the same float32.
    const file = join(tmp(), 'emb.jsonl');
    await embedSplit(model, split, pixels, { out: file, format: 'jsonl', batch: 64, classNames: ds.classNames });
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 230);
    lines.forEach((row, i) => {
      assert.equal(row.id, i);
      assert.deepEqual(row.labels, [split.labels[i]]);
      assert.deepEqual(row.label_names, [ds.classNames[split.labels[i]]]);
      assert.deepEqual(Float32Array.from(row.mean), want.mean.subarray(i * want.dim, (i + 1) * want.dim));
      const flat = kind === 'diag' ? row.variance : row.scale_tril.flat();
      const ref = want.kind === 'diag' ? want.variance.subarray(i * want.dim, (i + 1) * want.dim) : want.scaleTril.subarray(i * want.dim ** 2, (i + 1) * want.dim ** 2);
      assert.deepEqual(Float32Array.from(flat), ref);
    });
    // Parquet: 230 rows in row groups of 64 (the last short), read back exactly.
    const pq = join(tmp(), 'emb.parquet');
    await embedSplit(model, split, pixels, { out: pq, format: 'parquet', batch: 50, rowGroupRows: 64, classNames: ds.classNames, meta: { split: 'test' } });
    const got = await readParquet(pq);
    assert.equal(got.rowGroups, 4);
    assert.deepEqual(got.schema.filter((n) => !['list', 'element'].includes(n)), ['schema', 'id', 'labels', 'label_names', 'mean', kind === 'diag' ? 'variance' : 'scale_tril']);
    assert.deepEqual([got.meta.format, got.meta.kind, got.meta.count, got.meta.dim, got.meta.split], ['probsem-embed', kind, 230, want.dim, 'test']);
    assert.deepEqual(got.meta.classNames, ds.classNames);
    assert.equal(got.rows.length, 230);
    got.rows.forEach((row, i) => {
      assert.equal(row.id, i);
      assert.deepEqual(row.labels, [split.labels[i]]);
      assert.deepEqual(row.label_names, [ds.classNames[split.labels[i]]]);
      assert.deepEqual(Float32Array.from(row.mean), want.mean.subarray(i * want.dim, (i + 1) * want.dim));
      const ref = want.kind === 'diag' ? want.variance.subarray(i * want.dim, (i + 1) * want.dim) : want.scaleTril.subarray(i * want.dim ** 2, (i + 1) * want.dim ** 2);
      assert.deepEqual(Float32Array.from((kind === 'diag' ? row.variance : row.scale_tril)!), ref);
    });
    if (hasPandasParquet) {
      const py = `
import json, sys, numpy as np, pandas as pd
df = pd.read_parquet(sys.argv[1])
m = np.stack(df['mean'].to_numpy()).astype(np.float32)
print(json.dumps({'n': len(df), 'cols': list(df.columns), 'mean': float(m.astype(np.float64).sum()), 'ids': int(df['id'].sum())}))`;
      const out = spawnSync(PYTHON, ['-c', py, pq], { encoding: 'utf8' });
      assert.equal(out.status, 0, out.stderr);
      const r = JSON.parse(out.stdout);
      assert.equal(r.n, 230);
      assert.deepEqual(r.cols, ['id', 'labels', 'label_names', 'mean', kind === 'diag' ? 'variance' : 'scale_tril']);
      assert.ok(Math.abs(r.mean - want.mean.reduce((x, y) => x + y, 0)) < 1e-9 * (1 + Math.abs(r.mean)));
      assert.equal(r.ids, (229 * 230) / 2);
    }
    if (hasNumpy) {
      // numpy reads the directory and the lines; it prints the arrays' shapes and exact sums.
      const py = `
import json, sys, numpy as np
d, f = sys.argv[1], sys.argv[2]
m = np.load(d + '/mean.npy'); s = np.load(d + '/${spreadFile}'); ids = np.load(d + '/ids.npy'); lab = np.load(d + '/labels.npy')
rows = [json.loads(l) for l in open(f)]
jm = np.array([r['mean'] for r in rows], dtype=np.float32)
print(json.dumps({'dtypes': [str(m.dtype), str(s.dtype), str(ids.dtype), str(lab.dtype)], 'shapes': [m.shape, s.shape, ids.shape, lab.shape],
  'mean': float(m.astype(np.float64).sum()), 'spread': float(s.astype(np.float64).sum()), 'labels': int(lab.sum()), 'same': bool((jm == m).all())}))`;
      const out = spawnSync(PYTHON, ['-c', py, dir, file], { encoding: 'utf8' });
      assert.equal(out.status, 0, out.stderr);
      const got = JSON.parse(out.stdout);
      assert.deepEqual(got.dtypes, ['float32', 'float32', 'int32', 'int32']);
      assert.deepEqual(got.shapes, [[230, want.dim], kind === 'diag' ? [230, want.dim] : [230, want.dim, want.dim], [230], [230]]);
      const sum = (a: Float32Array) => a.reduce((x, y) => x + y, 0);
      assert.ok(Math.abs(got.mean - sum(want.mean)) < 1e-9 * (1 + Math.abs(got.mean)));
      assert.ok(Math.abs(got.spread - sum(want.kind === 'diag' ? want.variance : want.scaleTril)) < 1e-9 * (1 + Math.abs(got.spread)));
      assert.equal(got.labels, split.labels.reduce((x, y) => x + y, 0));
      assert.equal(got.same, true, 'numpy reads the same means from both layouts');
    }
  }
  if (!hasNumpy) t.diagnostic(`${PYTHON} with numpy (Debian python3-numpy) is not installed: loading in numpy skipped`);
  if (!hasPandasParquet) t.diagnostic(`${PYTHON} has no pandas with pyarrow or fastparquet (Debian 12 packages neither engine): pandas.read_parquet skipped; the file was read back by hyparquet`);
});

test('embed output is atomic: an unrelated directory is refused, a previous embedding survives a failed run and is replaced by a good one', async () => {
  await setupBackend();
  const ds = await loadDataset('fashion-mnist-subset');
  const pixels = pixelsOf(ds);
  const split = head(ds.test, 50, pixels);
  const model = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 2, encoderHidden: [8], decoderHidden: [8] }, 3) as unknown as ImageModel;
  const base = tmp();
  const foreign = join(base, 'photos');
  mkdirSync(foreign);
  writeFileSync(join(foreign, 'keep.txt'), 'mine');
  await assert.rejects(embedSplit(model, split, pixels, { out: foreign, format: 'npy', classNames: ds.classNames }), /probsem embed did not write/);
  assert.equal(readFileSync(join(foreign, 'keep.txt'), 'utf8'), 'mine');
  const out = join(base, 'emb');
  await embedSplit(model, split, pixels, { out, format: 'npy', batch: 20, classNames: ds.classNames });
  const before = readFileSync(join(out, 'mean.npy'));
  // A model that fails on its second batch: the old embedding stays, no temporary is left.
  let calls = 0;
  const failing = { ...model, latentDim: model.latentDim, encodeImage: (x: never) => (++calls === 2 ? (() => { throw new Error('disk on fire'); })() : model.encodeImage(x)) } as unknown as ImageModel;
  await assert.rejects(embedSplit(failing, split, pixels, { out, format: 'npy', batch: 20, classNames: ds.classNames }), /disk on fire/);
  assert.deepEqual(readFileSync(join(out, 'mean.npy')), before);
  assert.deepEqual(readdirSync(base).sort(), ['emb', 'photos']);
  calls = 0;
  await assert.rejects(embedSplit(failing, split, pixels, { out: join(base, 'e.parquet'), format: 'parquet', batch: 20, classNames: ds.classNames }), /disk on fire/);
  assert.deepEqual(readdirSync(base).sort(), ['emb', 'photos'], 'a failed Parquet export leaves no file');
  const other = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 2, encoderHidden: [8], decoderHidden: [8] }, 4) as unknown as ImageModel;
  await embedSplit(other, split, pixels, { out, format: 'npy', batch: 20, classNames: ds.classNames });
  assert.notDeepEqual(readFileSync(join(out, 'mean.npy')), before);
  assert.deepEqual(readdirSync(base).sort(), ['emb', 'photos']);
});

test('probsem embed: the command writes the npy directory, JSON lines and Parquet; bad options are named', async () => {
  await setupBackend();
  const ds = await loadDataset('fashion-mnist-subset');
  const run = join(tmp(), 'run');
  const m = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, 5) as Trainable & { config: object };
  saveModel(run, m, { classNames: ds.classNames, dataset: { name: ds.name, source: ds.source, hash: datasetHash(ds), height: 28, width: 28, trainCount: ds.train.count } });
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
  const dir = join(tmp(), 'emb');
  let r = cli('embed', '--run', run, '--out', dir, '--batch', '700');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /embedded 2000 diagonal posteriors \(latent 3\) of fashion-mnist-subset test .* \(mean\.npy, variance\.npy, ids\.npy, labels\.npy, meta\.json\)/);
  assert.deepEqual(readNpy(join(dir, 'mean.npy')).shape, [2000, 3]);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  assert.equal(meta.datasetHash, datasetHash(ds));
  assert.equal(meta.runWeightsSha256.length, 64);
  const jl = join(tmp(), 'train.jsonl');
  r = cli('embed', '--run', run, '--split', 'train', '--out', jl);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(jl, 'utf8').trimEnd().split('\n').length, ds.train.count);
  // A .parquet --out picks the format; the file holds every row and the run's hashes.
  const pq = join(tmp(), 'test.parquet');
  r = cli('embed', '--run', run, '--out', pq);
  assert.equal(r.status, 0, r.stderr);
  const got = await readParquet(pq);
  assert.equal(got.rows.length, 2000);
  assert.equal(got.meta.datasetHash, datasetHash(ds));
  assert.deepEqual(got.rows[1999].mean.length, 3);
  for (const [args, re] of [
    [['--format', 'arrow'], /--format must be npy, jsonl or parquet, got 'arrow'/],
    [['--split', 'val'], /--split must be test or train/],
  ] as [string[], RegExp][]) {
    r = cli('embed', '--run', run, '--out', join(tmp(), 'x'), ...args);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, re);
  }
});
