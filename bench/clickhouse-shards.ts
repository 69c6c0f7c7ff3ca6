/**
 * ClickHouse on one shard against a Distributed table over two (`npm run bench -- --only clickhouse
 * [--ch-items N] [--ch-dim K]`): synthetic diagonal Gaussians (randomDiagItems, seeded), the same
 * items uploaded to a plain MergeTree table on one local server and to two local servers behind a
 * Distributed table (servers started on loopback, stopped by pid), then exact top-10 KL searches:
 * single queries and batches in one statement, median ms per query; every hit checked against the
 * in-process index. All servers run on this machine, so two shards share its cores: the figure says
 * what the statement and the Distributed fan-out cost here, not what two machines would give.
 */
import { ClickHouseStore } from '../src/index/clickhouse.js';
import { startLocalClickHouseCluster } from '../src/index/clickhouse-server.js';
import { bruteForceKl, KlIndex, type ItemGaussians, type QueryGaussian, type SearchHit } from '../src/index/kl-index.js';
import { median, randomDiagItems, randomQueries, topK, type IndexBenchOptions } from './index.js';

/** items, dim, k, queries (single queries timed after 2 warm-ups), batchSize, batches (timed after one warm-up batch), seed, log. */
export type ShardBenchOptions = Pick<IndexBenchOptions, 'items' | 'dim' | 'k' | 'queries' | 'batchSize' | 'batches' | 'seed' | 'log'>;

export interface ShardBenchRow {
  shards: number;
  uploadSeconds: number;
  singleMedianMs: number;
  singleMs: number[];
  batchedMedianMsPerQuery: number;
  batchMs: number[];
  meanCandidatesPerQuery: number;
  sameAsIndex: boolean;
}

export interface ShardBenchResult {
  server: string;
  items: number;
  dim: number;
  k: number;
  batchSize: number;
  buildSeconds: number;
  /** Queries whose hits were compared with the reference. */
  checkedQueries: number;
  reference: 'index' | 'brute force';
  rows: ShardBenchRow[];
}

const same = (a: SearchHit[], b: SearchHit[] | null) => b === null || (a.length === b.length && a.every((h, i) => h.index === b[i].index && h.kl === b[i].kl));

/** Exact top k by KL, ties by position, as the index orders them. */
function bruteTop(items: ItemGaussians, q: QueryGaussian, k: number): SearchHit[] {
  const kl = bruteForceKl(items, q);
  return topK(kl, k).map((index) => ({ index, id: index, kl: kl[index], score: kl[index] }));
}

export async function runShardBench(o: ShardBenchOptions = {}): Promise<ShardBenchResult> {
  const n = o.items ?? 1_000_000;
  const dim = o.dim ?? 20;
  const k = o.k ?? 10;
  const nq = o.queries ?? 10;
  const bs = o.batchSize ?? 16;
  const nb = o.batches ?? 2;
  const seed = o.seed ?? 1;
  const log = o.log ?? ((m: string) => process.stderr.write(m + '\n'));
  const t0 = performance.now();
  const items = randomDiagItems(n, dim, seed);
  // Queries as a diagonal model's: the covariance's diagonal only.
  const qs: QueryGaussian[] = randomQueries(2 + nq + bs * (nb + 1), dim, seed + 1).map((q) => ({ mean: q.mean, covariance: Array.from(q.covariance, (v, j) => (j % (dim + 1) === 0 ? v : 0)) }));
  // The reference: the in-process index where its kernel table fits (~6M items at d = 20), else
  // the brute force on 3 single queries and each batch's first query (seconds per query at 10M).
  const fits = n * (2 * dim + 1) * 4 <= 900 * 2 ** 20;
  const checked = fits ? qs.map((_, i) => i) : [2, 3, 4, ...Array.from({ length: nb + 1 }, (_, b) => 2 + nq + b * bs)];
  const want: (SearchHit[] | null)[] = qs.map(() => null);
  if (fits) KlIndex.build(items).searchBatch(qs, k).forEach((h, i) => (want[i] = h));
  else for (const i of checked) want[i] = bruteTop(items, qs[i], k);
  const buildSeconds = (performance.now() - t0) / 1000;
  log(`clickhouse shards: ${n} items of dimension ${dim}; reference hits of ${checked.length} queries (${fits ? 'index' : 'brute force'}) in ${buildSeconds.toFixed(1)} s`);
  const cluster = await startLocalClickHouseCluster({ shards: 2 });
  try {
    const head = cluster.servers[0];
    const server = (await (await fetch(`http://127.0.0.1:${head.httpPort}/`, { method: 'POST', body: 'SELECT version()' })).text()).trim();
    const rows: ShardBenchRow[] = [];
    for (const shards of [1, 2]) {
      const url = head.url(`probsem_bench.s${shards}`);
      const store = await ClickHouseStore.open(url, shards > 1 ? { cluster: { name: cluster.name, shards: cluster.shardHosts } } : {});
      const up = await store.uploadGaussians(items, { replace: true });
      log(`clickhouse shards: ${shards} shard(s): uploaded in ${(up.ms / 1000).toFixed(1)} s`);
      const reader = await ClickHouseStore.open(url);
      let ok = true;
      let cand = 0;
      const { SCAN_STATS } = await import('../src/index/internal.js');
      for (let i = 0; i < 2; i++) await reader.search(qs[i], k);
      const singleMs: number[] = [];
      const c0 = SCAN_STATS.clickhouseCandidates;
      for (let i = 2; i < 2 + nq; i++) {
        const t = performance.now();
        const hits = await reader.search(qs[i], k);
        singleMs.push(performance.now() - t);
        ok &&= same(hits, want[i]);
      }
      cand = (SCAN_STATS.clickhouseCandidates - c0) / nq;
      const batchMs: number[] = [];
      for (let b = 0; b <= nb; b++) {
        const from = 2 + nq + b * bs;
        const t = performance.now();
        const hits = await reader.searchBatch(qs.slice(from, from + bs), k);
        if (b > 0) batchMs.push(performance.now() - t);
        hits.forEach((h, i) => (ok &&= same(h, want[from + i])));
      }
      const row: ShardBenchRow = {
        shards,
        uploadSeconds: +(up.ms / 1000).toFixed(2),
        singleMedianMs: +median(singleMs).toFixed(1),
        singleMs: singleMs.map((x) => +x.toFixed(1)),
        batchedMedianMsPerQuery: +(median(batchMs) / bs).toFixed(1),
        batchMs: batchMs.map((x) => +x.toFixed(1)),
        meanCandidatesPerQuery: Math.round(cand),
        sameAsIndex: ok,
      };
      log(`clickhouse shards: ${shards} shard(s): single ${row.singleMedianMs} ms, batched (${bs}) ${row.batchedMedianMsPerQuery} ms per query; hits ${ok ? 'equal' : 'DIFFER FROM'} the reference's`);
      rows.push(row);
      await store.drop();
    }
    return { server, items: n, dim, k, batchSize: bs, buildSeconds: +buildSeconds.toFixed(2), checkedQueries: checked.length, reference: fits ? 'index' : 'brute force', rows };
  } finally {
    await cluster.stop();
  }
}
