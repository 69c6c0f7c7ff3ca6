/**
 * The ClickHouse adapter against a real server: starts `clickhouse-server` on loopback (temporary
 * config and data folder, a random free port), uploads random Gaussians and checks every search
 * equals the in-process index and the brute force; stops the server by its pid in any case.
 * Skipped when no server binary is installed (Debian: apt-get install clickhouse-server).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { ProbsemError } from '../src/core/errors.js';
import { ClickHouseStore, parseClickHouseUrl } from '../src/index/clickhouse.js';
import { SCAN_STATS } from '../src/index/internal.js';
import type { SearchOptions } from '../src/index/kl-index.js';
import { checkIndexRun } from '../src/cli/commands/kl-index.js';
import type { ModelFile } from '../src/models/persist.js';
import { findClickHouseServer, startLocalClickHouseCluster, type LocalClickHouseCluster } from '../src/index/clickhouse-server.js';
import { bruteForceKl, bruteForceScores, KlIndex, type ItemGaussians, type QueryGaussian } from '../src/index/kl-index.js';
import { DISTANCES } from '../src/index/distances.js';
import { randomDiagItems, randomFullItems, randomQueries, topK } from '../bench/index.js';

const rejectsCode = (p: Promise<unknown>, code: string, re: RegExp) =>
  assert.rejects(p, (e: unknown) => e instanceof ProbsemError && e.code === code && re.test(e.message));

test('ClickHouse addresses parse into host, HTTP port, database and table', () => {
  assert.deepEqual(parseClickHouseUrl('clickhouse://127.0.0.1:8124/probsem.items'), { host: '127.0.0.1', port: 8124, database: 'probsem', table: 'items', user: undefined, password: undefined });
  assert.deepEqual(parseClickHouseUrl('clickhouse://bob:s%3Acret@db.example:9999/t'), { host: 'db.example', port: 9999, database: 'default', table: 't', user: 'bob', password: 's:cret' });
  assert.equal(parseClickHouseUrl('clickhouse://h/d.t').port, 8123);
  for (const bad of ['http://h:1/d.t', 'clickhouse://h:1/d.t.x', 'clickhouse://h:1/d;drop', 'clickhouse://h:1/', 'nonsense']) {
    assert.throws(() => parseClickHouseUrl(bad), (e: unknown) => e instanceof ProbsemError && e.code === 'BAD_OPTION', bad);
  }
});

test('credentials travel in the X-ClickHouse-User and X-ClickHouse-Key headers, never in the URL', async () => {
  const { createServer } = await import('node:http');
  const seen: { url: string; user?: string; key?: string }[] = [];
  const fake = createServer((req, res) => {
    seen.push({ url: req.url ?? '', user: req.headers['x-clickhouse-user'] as string, key: req.headers['x-clickhouse-key'] as string });
    res.end('1\n');
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (fake.address() as { port: number }).port;
    await ClickHouseStore.open(`clickhouse://bob:s%3Acret@127.0.0.1:${port}/d.t`, { settings: { max_threads: 1 } });
    assert.equal(seen.length, 1);
    assert.equal(seen[0].user, 'bob');
    assert.equal(seen[0].key, 's:cret');
    assert.doesNotMatch(seen[0].url, /bob|cret|password|user/);
    assert.match(seen[0].url, /max_threads=1/);
  } finally {
    fake.close();
  }
});

test('an unreachable ClickHouse server is a clear error', async () => {
  // A port nothing listens on: find one by binding and closing it.
  const { createServer } = await import('node:net');
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  await rejectsCode(ClickHouseStore.open(`clickhouse://127.0.0.1:${port}/probsem.items`), 'UNREACHABLE', new RegExp(`127\\.0\\.0\\.1:${port} is unreachable`));
});

test('ClickHouse store: upload, count and exact search equal the in-process index and the brute force', async (t) => {
  const command = findClickHouseServer();
  if (!command) {
    t.skip('clickhouse-server is not installed (Debian: apt-get install clickhouse-server): ClickHouse integration skipped');
    return;
  }
  let cluster: LocalClickHouseCluster | null = null;
  try {
    // Two servers that know each other as the shards of cluster "probsem"; the first also serves
    // the unsharded tables. A user with a password checks the header credentials against 18.16.
    cluster = await startLocalClickHouseCluster({ shards: 2, users: [{ name: 'bob', password: 's:cret<&>' }] });
    const local = cluster.servers[0];
    assert.ok(existsSync(local.dir));

    const check = async (store: ClickHouseStore, index: KlIndex, items: ItemGaussians, qs: QueryGaussian[], k: number) => {
      for (const [i, q] of qs.entries()) {
        const kl = bruteForceKl(items, q);
        for (const opts of [{}, { largest: true }, { exclude: topK(kl, 1)[0] }, { largest: true, exclude: 3 }] as SearchOptions[]) {
          const got = await store.search(q, k, opts);
          assert.deepEqual(got, index.search(q, k, opts), `query ${i} ${JSON.stringify(opts)}: ClickHouse vs index`);
          const want = topK(kl, k, 'largest' in opts, 'exclude' in opts ? opts.exclude : -1);
          assert.deepEqual(got.map((h) => h.kl), want.map((j) => kl[j]), `query ${i}: ClickHouse vs brute force`);
        }
      }
    };

    await t.test('5,000 diagonal Gaussians with ids and labels', async () => {
      const items = randomDiagItems(5000, 8, 100);
      const ids = Int32Array.from({ length: items.count }, (_, i) => 10 * i + 1);
      const labels = { perItem: 1, values: Int32Array.from({ length: items.count }, (_, i) => i % 10) };
      const index = KlIndex.build(items, { ids, labels, meta: { note: 'test' } });
      const store = await ClickHouseStore.open(local.url('probsem_test.diag'));
      assert.equal(await store.exists(), false);
      const up = await store.upload(index, { batchRows: 1500 }); // several insert batches
      assert.equal(up.rows, 5000);
      assert.equal(await store.count(), 5000);
      const info = await store.info();
      assert.deepEqual([info.kind, info.dim, info.count, info.labelsPerItem, info.meta], ['diag', 8, 5000, 1, { note: 'test' }]);
      await check(store, index, items, randomQueries(4, 8, 101), 10);
      // Another connection sees the same table.
      const again = await ClickHouseStore.open(local.url('probsem_test.diag'), { settings: { max_threads: 1 } });
      assert.deepEqual(await again.search(randomQueries(1, 8, 102)[0], 25), index.search(randomQueries(1, 8, 102)[0], 25));
    });

    await t.test('full-covariance Gaussians', async () => {
      const items = randomFullItems(800, 4, 110);
      const index = KlIndex.build(items);
      const store = await ClickHouseStore.open(local.url('probsem_test.full'));
      await store.upload(index);
      await check(store, index, items, randomQueries(3, 4, 111), 7);
    });

    await t.test('near-ties: every item within the bounds is a candidate, so the result stays exact', async () => {
      const base = randomDiagItems(2000, 3, 120);
      const items: ItemGaussians = { kind: 'diag', dim: 3, count: 2000, mean: Float32Array.from(base.mean, (v) => 100 + 1e-4 * v), variance: Float32Array.from(base.variance, (v) => 1e-4 + 1e-5 * v) };
      const index = KlIndex.build(items);
      const store = await ClickHouseStore.open(local.url('probsem_test.ties'));
      await store.upload(index);
      const qs = randomQueries(2, 3, 121).map((q) => ({ mean: Array.from(q.mean, (v) => 100 + 1e-4 * v), covariance: Array.from(q.covariance, (v) => 1e-4 * v) }));
      const before = SCAN_STATS.clickhouseCandidates;
      await check(store, index, items, qs, 10);
      assert.ok(SCAN_STATS.clickhouseCandidates - before > 8 * 10 * 10, 'near-ties widen the candidate pool beyond k per query');
    });

    await t.test('two shards behind a Distributed table: every distance and batches of queries equal the in-process index and the brute force', async () => {
      const items = randomDiagItems(6000, 6, 150);
      const ids = Int32Array.from({ length: items.count }, (_, i) => 7 * i);
      const index = KlIndex.build(items, { ids });
      // Uploaded with bob's credentials (headers) to both shards; items alternate between them.
      const url = `clickhouse://bob:${encodeURIComponent('s:cret<&>')}@127.0.0.1:${local.httpPort}/probsem_test.sharded`;
      const sharded = await ClickHouseStore.open(url, { cluster: { name: cluster!.name, shards: cluster!.shardHosts } });
      await sharded.upload(index, { batchRows: 1000 });
      for (const [i, s] of cluster!.servers.entries()) {
        const r = await fetch(`http://127.0.0.1:${s.httpPort}/`, { method: 'POST', body: 'SELECT count(), min(pos % 2), max(pos % 2) FROM probsem_test.sharded_local FORMAT TSV' });
        assert.equal((await r.text()).trim(), `3000\t${i}\t${i}`, `shard ${i} holds the items at positions ≡ ${i} (mod 2)`);
      }
      // A reader needs only the address: the Distributed table finds the shards.
      const reader = await ClickHouseStore.open(url);
      assert.equal(await reader.count(), 6000);
      const qs = randomQueries(5, 6, 151).map((q) => ({ mean: q.mean, covariance: Array.from(q.covariance, (v, j) => (j % 7 === 0 ? v : 0)) }));
      for (const distance of DISTANCES) {
        for (const opts of [{ distance }, { distance, largest: true, exclude: 11 }] as SearchOptions[]) {
          const got = await reader.searchBatch(qs, 8, opts);
          assert.deepEqual(got, index.searchBatch(qs, 8, opts), `${JSON.stringify(opts)}: ClickHouse batch vs index`);
          for (const [i, q] of qs.entries()) {
            const sc = bruteForceScores(items, q, distance);
            const want = topK(sc, 8, !!opts.largest, opts.exclude ?? -1);
            assert.deepEqual(got[i].map((h) => h.index), want, `${distance} query ${i}: ClickHouse vs brute force`);
          }
        }
        assert.deepEqual(await reader.search(qs[0], 3, { distance }), index.search(qs[0], 3, { distance }), `${distance}: one query`);
      }
      await rejectsCode(reader.search(randomQueries(1, 6, 152)[0], 3, { distance: 'w2' }), 'BAD_OPTION', /w2 for diagonal query covariances only/);
      const wrong = await ClickHouseStore.open(`clickhouse://bob:nope@127.0.0.1:${local.httpPort}/probsem_test.sharded`).catch((e) => e);
      assert.ok(wrong instanceof ProbsemError && wrong.code === 'AUTH' && /refused the credentials/.test(wrong.message), String(wrong));
      await sharded.drop();
      for (const s of cluster!.servers) {
        const r = await fetch(`http://127.0.0.1:${s.httpPort}/`, { method: 'POST', body: "EXISTS TABLE probsem_test.sharded_local" });
        assert.equal((await r.text()).trim(), '0', 'drop removes every shard\'s table');
      }
    });

    await t.test('the table records the run and dataset hashes; a query from a retrained run is refused', async () => {
      const run = { weights: { sha256: 'a'.repeat(64) }, contentSha256: 'b'.repeat(64) } as ModelFile;
      const meta = { run: '/runs/r', runWeightsSha256: run.weights.sha256, runContentSha256: run.contentSha256, datasetHash: 'c'.repeat(16) };
      const store = await ClickHouseStore.open(local.url('probsem_test.hashes'));
      await store.upload(KlIndex.build(randomDiagItems(20, 3, 140), { meta }));
      const fresh = await ClickHouseStore.open(local.url('probsem_test.hashes'));
      const recorded = (await fresh.info()).meta;
      assert.deepEqual(recorded, meta);
      const notes: string[] = [];
      checkIndexRun(recorded, run, '/runs/r', 'the table', (m) => notes.push(m));
      assert.deepEqual(notes, []);
      const retrained = { ...run, weights: { sha256: 'd'.repeat(64) } } as ModelFile;
      assert.throws(() => checkIndexRun(recorded, retrained, '/runs/r', 'the table', () => {}), (e: unknown) => e instanceof ProbsemError && e.code === 'STALE_INDEX' && /a{64}, but \/runs\/r has d{64}/.test(e.message));
      await store.drop();
    });

    await t.test('clear errors: missing table, wrong dimension, existing table', async () => {
      const missing = await ClickHouseStore.open(local.url('probsem_test.nothing_here'));
      await rejectsCode(missing.search(randomQueries(1, 8, 130)[0], 5), 'NOT_FOUND', /probsem_test\.nothing_here does not exist/);
      await rejectsCode(missing.count(), 'NOT_FOUND', /does not exist/);
      const noDb = await ClickHouseStore.open(local.url('no_such_db.t'));
      await rejectsCode(noDb.info(), 'NOT_FOUND', /no_such_db\.t does not exist/);
      const store = await ClickHouseStore.open(local.url('probsem_test.diag'));
      await rejectsCode(store.search(randomQueries(1, 5, 131)[0], 5), 'SHAPE', /dimension 5.*probsem_test\.diag holds dimension 8/);
      await rejectsCode(store.search(randomQueries(1, 8, 132)[0], 0), 'BAD_OPTION', /k must be a positive integer/);
      const other = KlIndex.build(randomDiagItems(10, 5, 133));
      await rejectsCode(store.upload(other), 'EXISTS', /already exists \(5000 diag Gaussians of dimension 8; this index: 10 of dimension 5\)/);
      await rejectsCode(store.uploadGaussians({ kind: 'diag', dim: 2, count: 2, mean: new Float32Array(4), variance: Float32Array.of(1, 1, 0, 1) }), 'BAD_INPUT', /item 1: variance\[0\] is 0 \(must be positive/);
      await rejectsCode(store.uploadGaussians({ kind: 'diag', dim: 2, count: 2, mean: new Float32Array(3), variance: new Float32Array(4) }), 'SHAPE', /mean has 3 values for 2 items of dimension 2/);
      await store.upload(other, { replace: true });
      assert.equal(await store.count(), 10);
      assert.equal((await store.info()).dim, 5);
      await store.drop();
      assert.equal(await store.exists(), false);
    });
  } finally {
    if (cluster) {
      const gone = cluster.servers.map((s) => ({ dir: s.dir, pid: s.pid }));
      await cluster.stop();
      for (const { dir, pid } of gone) {
        assert.equal(existsSync(dir), false, 'server folder removed');
        assert.throws(() => process.kill(pid, 0), 'server process gone');
      }
    }
  }
});
