/**
 * One cached index behind every search (src/runs/search-index.ts): the results equal the searches
 * that encode the split themselves, and the cache file is used when valid, rebuilt with a notice
 * when corrupt, truncated or stale, and never needed for a correct answer.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Dataset } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { loadRun } from '../src/api.js';
import { KlIndex } from '../src/index/kl-index.js';
import { indexQuery, queryDistribution, rankByDistance, retrieveAnyOf, retrieveImages, similarImages, encodeSplit } from '../src/runs/retrieval.js';
import { loadImageModel, trainRun } from '../src/runs/runs.js';
import { clearSearchIndexMemory, lastIndexSource, searchIndex, searchIndexPath } from '../src/runs/search-index.js';
import { ModelService } from '../src/server/service.js';
import { setupBackend } from './helpers.js';

let root: string;
let diag: string;
let full: string;
let ds: Dataset;

before(async () => {
  await setupBackend();
  delete process.env.PROBSEM_INDEX_CACHE;
  root = mkdtempSync(join(tmpdir(), 'probsem-sidx-'));
  diag = join(root, 'diag');
  full = join(root, 'full');
  ds = await loadDataset('fashion-mnist-subset');
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 6, steps: 150, batchSize: 100, lr: 1e-3, seed: 2, out: diag });
  // Full-covariance posteriors (Σ = L Lᵀ): the index keeps the Cholesky factors.
  await trainRun({ model: 'informed', dataset: 'fashion-mnist-subset', latent: 10, steps: 60, batchSize: 64, lr: 2e-3, seed: 1, out: full, modelOptions: { encoderHidden: [64], decoderHidden: [64] } });
});
after(() => rmSync(root, { recursive: true, force: true }));

const notices = () => {
  const got: string[] = [];
  return { got, onNotice: (m: string) => got.push(m) };
};
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 + 1e-4 * Math.abs(b), `${what}: ${a} vs ${b}`);
const image = (i: number) => Float32Array.from(ds.test.images.subarray(i * 784, (i + 1) * 784), (v) => v / 255);

for (const which of ['diag', 'full'] as const) {
  test(`${which}: every search through the index returns what the split-encoding search did (ids equal, KL to float tolerance)`, () => {
    const dir = which === 'diag' ? diag : full;
    const { model, meta } = loadImageModel(dir);
    clearSearchIndexMemory();
    const index = searchIndex(dir, model, meta, ds);
    assert.equal(index.kind, which);
    const split = ds.test;
    for (const words of [['Trouser'], ['Sneaker', 'Ankle boot'], ['Bag']]) {
      const q = queryDistribution(model, meta, words);
      for (const rank of ['kl', 'posterior'] as const) {
        const was = retrieveImages(model, split, 784, q, 20, { rank, posteriors: rank === 'posterior' ? encodeSplit(model, split, 784) : undefined });
        const now = retrieveImages(model, split, 784, q, 20, { rank, index });
        assert.deepEqual(now.ids, was.ids, `${words} ${rank}: same ids`);
        now.kl.forEach((v, i) => close(v, was.kl[i], `${words} ${rank} KL ${i}`));
      }
    }
    const members = [queryDistribution(model, meta, ['Sneaker']), queryDistribution(model, meta, ['Bag'])];
    const anyWas = retrieveAnyOf(model, split, 784, members, 12);
    const anyNow = retrieveAnyOf(model, split, 784, members, 12, { index });
    assert.deepEqual(anyNow.ids, anyWas.ids);
    assert.deepEqual(anyNow.members, anyWas.members);
    anyNow.kl.forEach((v, i) => close(v, anyWas.kl[i], `any-of KL ${i}`));
    for (const dissimilar of [false, true]) {
      const was = similarImages(model, split, 784, image(7), 15, { dissimilar, exclude: 7 });
      const now = similarImages(model, split, 784, image(7), 15, { dissimilar, exclude: 7, index });
      assert.deepEqual(now.ids, was.ids, `similar dissimilar=${dissimilar}`);
      assert.ok(!now.ids.includes(7));
      now.kl.forEach((v, i) => close(v, was.kl[i], `similar KL ${i}`));
    }
    // Another distance: the cached index ranks as a freshly built one.
    const w2Fresh = rankByDistance(model, split, 784, indexQuery(members[0]), 10, 'w2');
    const w2 = rankByDistance(model, split, 784, indexQuery(members[0]), 10, 'w2', { index });
    assert.deepEqual(w2.ids, w2Fresh.ids);
    assert.deepEqual(w2.score, w2Fresh.score);
  });
}

test('an empty split answers nothing through the index; an index of another split is refused by name', () => {
  const { model, meta } = loadImageModel(diag);
  const empty = { ...ds.test, count: 0, images: new Uint8Array(0), labels: new Uint8Array(0) };
  const none = KlIndex.build({ kind: 'diag', dim: 6, count: 0, mean: new Float32Array(0), variance: new Float32Array(0) });
  const q = queryDistribution(model, meta, ['Bag']);
  assert.deepEqual(retrieveImages(model, empty, 784, q, 5, { index: none }).ids, []);
  assert.deepEqual(retrieveAnyOf(model, empty, 784, [q], 5, { index: none }).ids, []);
  assert.deepEqual(similarImages(model, empty, 784, image(0), 5, { index: none }).ids, []);
  assert.throws(() => retrieveImages(model, ds.test, 784, q, 5, { index: none }), /the index holds 0 posteriors of dimension 6, the split 2000 images/);
});

test('cache: built and saved once, then from memory, then from the file with identical results', () => {
  const { model, meta } = loadImageModel(diag);
  const path = searchIndexPath(diag, ds)!;
  rmSync(dirname(path), { recursive: true, force: true });
  clearSearchIndexMemory();
  const n = notices();
  const built = searchIndex(diag, model, meta, ds, n);
  assert.equal(lastIndexSource(), 'built');
  assert.ok(path.startsWith(join(diag, 'index-cache')) && existsSync(path), path);
  assert.deepEqual(n.got, []);
  const mtime = statSync(path).mtimeMs;
  assert.equal(searchIndex(diag, model, meta, ds), built);
  assert.equal(lastIndexSource(), 'memory');
  clearSearchIndexMemory();
  const loaded = searchIndex(diag, model, meta, ds, n);
  assert.equal(lastIndexSource(), 'file');
  assert.notEqual(loaded, built);
  assert.equal(statSync(path).mtimeMs, mtime, 'a valid file is not rewritten');
  assert.deepEqual(n.got, []);
  const q = indexQuery(queryDistribution(model, meta, ['Pullover']));
  assert.deepEqual(loaded.search(q, 25), built.search(q, 25));
  // The test split of another dataset gets a file of its own.
  assert.notEqual(searchIndexPath(diag, ds, 'train'), path);
});

test('cache: a corrupted or truncated file is detected, reported and rebuilt, never used', () => {
  const { model, meta } = loadImageModel(diag);
  clearSearchIndexMemory();
  const good = searchIndex(diag, model, meta, ds);
  const path = searchIndexPath(diag, ds)!;
  const q = indexQuery(queryDistribution(model, meta, ['Coat']));
  const expected = good.search(q, 10);
  const bytes = readFileSync(path);
  const flipped = Buffer.from(bytes);
  flipped[200] ^= 0x40; // a mean value: still a well-formed file, only the checksum can tell
  for (const [what, write, reason] of [
    ['flipped byte', () => writeFileSync(path, flipped), /checksum mismatch/],
    ['truncated', () => truncateSync(path, bytes.length - 100), /truncated/],
    ['empty', () => writeFileSync(path, ''), /shorter than the 64-byte header/],
    ['not an index', () => writeFileSync(path, 'x'.repeat(100)), /bad magic/],
  ] as const) {
    write();
    clearSearchIndexMemory();
    const n = notices();
    const ix = searchIndex(diag, model, meta, ds, n);
    assert.equal(lastIndexSource(), 'built', what);
    assert.equal(n.got.length, 1, what);
    assert.match(n.got[0], /cannot be used/);
    assert.match(n.got[0], reason);
    assert.match(n.got[0], /rebuilding it/);
    assert.deepEqual(ix.search(q, 10), expected, what);
    assert.deepEqual(readFileSync(path), bytes, `${what}: the file is whole again`);
  }
});

test('cache: stale files (another run\'s weights, another dataset) are rebuilt with a notice', async () => {
  const { model, meta } = loadImageModel(diag);
  clearSearchIndexMemory();
  searchIndex(diag, model, meta, ds);
  const path = searchIndexPath(diag, ds)!;
  // The same run directory retrained in place: new weights, the old cache file.
  const copy = join(root, 'retrained');
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 6, steps: 20, batchSize: 100, lr: 1e-3, seed: 9, out: copy });
  const other = loadImageModel(copy);
  const target = searchIndexPath(copy, ds)!;
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(path, target);
  clearSearchIndexMemory();
  let n = notices();
  const fresh = searchIndex(copy, other.model, other.meta, ds, n);
  assert.equal(lastIndexSource(), 'built');
  assert.match(n.got.join('\n'), /built from weights [0-9a-f]{12}, the run now has [0-9a-f]{12}: retrained or replaced/);
  const q = indexQuery(queryDistribution(other.model, other.meta, ['Trouser']));
  assert.deepEqual(
    fresh.search(q, 8).map((h) => h.id),
    retrieveImages(other.model, ds.test, 784, queryDistribution(other.model, other.meta, ['Trouser']), 8).ids,
  );
  // A dataset whose content changed (one label) hashes differently: its own file; a copy of the old
  // one under the new name is refused by its recorded hash.
  const changed: Dataset = { ...ds, test: { ...ds.test, labels: ds.test.labels.slice() } };
  changed.test.labels[0] = (changed.test.labels[0] + 1) % 10;
  const changedPath = searchIndexPath(diag, changed)!;
  assert.notEqual(changedPath, path);
  copyFileSync(path, changedPath);
  clearSearchIndexMemory();
  n = notices();
  const ix = searchIndex(diag, model, meta, changed, n);
  assert.equal(lastIndexSource(), 'built');
  assert.match(n.got.join('\n'), /built from dataset hash [0-9a-f]{16}, the dataset now hashes to [0-9a-f]{16}/);
  assert.equal(ix.labels!.values[0], changed.test.labels[0]);
});

test('cache: PROBSEM_INDEX_CACHE=off writes nothing; a directory that cannot be written is searched from memory with a notice', () => {
  const { model, meta } = loadImageModel(diag);
  const blocker = join(root, 'a-file');
  writeFileSync(blocker, 'not a directory');
  try {
    process.env.PROBSEM_INDEX_CACHE = 'off';
    clearSearchIndexMemory();
    assert.equal(searchIndexPath(diag, ds), null);
    const n = notices();
    const ix = searchIndex(diag, model, meta, ds, n);
    assert.equal(lastIndexSource(), 'built');
    assert.deepEqual(n.got, []);
    process.env.PROBSEM_INDEX_CACHE = join(blocker, 'sub');
    clearSearchIndexMemory();
    const n2 = notices();
    const ix2 = searchIndex(diag, model, meta, ds, n2);
    assert.equal(n2.got.length, 1);
    assert.match(n2.got[0], /could not keep the index .* used from memory/);
    const q = indexQuery(queryDistribution(model, meta, ['Dress']));
    assert.deepEqual(ix2.search(q, 5), ix.search(q, 5));
    // Elsewhere: a folder per run under the given directory.
    process.env.PROBSEM_INDEX_CACHE = join(root, 'elsewhere');
    clearSearchIndexMemory();
    searchIndex(diag, model, meta, ds);
    assert.ok(searchIndexPath(diag, ds)!.startsWith(join(root, 'elsewhere')) && existsSync(searchIndexPath(diag, ds)!));
  } finally {
    delete process.env.PROBSEM_INDEX_CACHE;
  }
});

test('library Run and the server service search the same cached index as the CLI', async () => {
  clearSearchIndexMemory();
  const path = searchIndexPath(diag, ds)!;
  rmSync(path, { force: true });
  const run = loadRun(diag);
  const hits = await run.retrieve('Sandal', { k: 12 });
  assert.ok(existsSync(path), 'the library writes the cache');
  assert.equal(await run.searchIndex(), await run.searchIndex());
  const { model, meta } = loadImageModel(diag);
  const old = retrieveImages(model, ds.test, 784, queryDistribution(model, meta, ['Sandal']), 12);
  assert.deepEqual(hits.map((h) => h.id), old.ids);
  const alike = await run.similar(4, { k: 6 });
  assert.deepEqual(alike.map((h) => h.id), similarImages(model, ds.test, 784, image(4), 6, { exclude: 4 }).ids);
  clearSearchIndexMemory();
  const service = await ModelService.load(diag, { saveIndex: false });
  const before = statSync(path).mtimeMs;
  const r = service.retrieve(['Sandal'], 12);
  assert.equal(lastIndexSource(), 'file');
  assert.equal(statSync(path).mtimeMs, before);
  assert.deepEqual(r.results.map((x) => x.id), old.ids);
  const w2 = service.retrieve(['Sandal'], 5, 'w2');
  assert.deepEqual(w2.results.map((x) => x.id), (await run.retrieve('Sandal', { k: 5, distance: 'w2' })).map((h) => h.id));
  run.dispose();
});

test('CLI: the second retrieve reads the cache the first wrote, with the same output; a corrupt cache is rebuilt with a note', () => {
  const cache = mkdtempSync(join(root, 'pc-'));
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: cache } });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const path = searchIndexPath(full, ds)!;
  rmSync(path, { force: true });
  const first = cli('retrieve', '--run', full, '--words', 'trouser', '--k', '10', '--json');
  assert.equal(first.code, 0, first.err);
  assert.ok(existsSync(path));
  const mtime = statSync(path).mtimeMs;
  const second = cli('retrieve', '--run', full, '--words', 'trouser', '--k', '10', '--json');
  assert.equal(second.code, 0, second.err);
  assert.equal(second.out, first.out);
  assert.equal(statSync(path).mtimeMs, mtime);
  assert.doesNotMatch(second.err, /rebuilding/);
  const sim = cli('similar', '--run', full, '--image', '3', '--k', '5', '--json');
  assert.equal(sim.code, 0, sim.err);
  assert.equal(statSync(path).mtimeMs, mtime, 'similar reads the same file');
  truncateSync(path, 1000);
  const third = cli('retrieve', '--run', full, '--words', 'trouser', '--k', '10', '--json');
  assert.equal(third.code, 0, third.err);
  assert.match(third.err, /note: the cached index .* cannot be used \(.*truncated.*\); rebuilding it/);
  assert.equal(third.out, first.out);
  const built = cli('index', 'build', '--run', full, '--out', join(root, 'full.idx'));
  assert.equal(built.code, 0, built.err);
  assert.match(built.out, /from the run's index cache/);
});
