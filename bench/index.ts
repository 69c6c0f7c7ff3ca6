/**
 * The exact KL index benchmark (`npm run bench -- --only index`): 1,000,000 diagonal Gaussians of
 * dimension 20 (seeded: means ~ N(0, 1), variances log-uniform in [0.01, 1]), exact top-10 by
 * KL(query ‖ item) for queries from the same distribution with a full covariance
 * (diag(v) + u uᵀ, u ~ N(0, 0.1²)).
 *
 * Reports the median and 90th-percentile ms per query of `KlIndex.search` on one thread, the
 * throughput of `searchBatch` (queries/s at 64 queries per batch), the straightforward per-item
 * KL loop (`bruteForceKl`) per query and the ratio, and checks the index's hits against the brute
 * force. When a ClickHouse server binary is installed it also starts a throwaway server on
 * loopback, uploads the same items and times `ClickHouseStore.search` (server default threads and
 * max_threads = 1), checking its hits equal the index's. When Debian's python3-faiss is installed it
 * times FAISS `IndexFlatIP` (bench/faiss_anchor.py) on the same rewrite, items and queries, one
 * thread, and reports probsem's single and batched ms per query as ratios to it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NpyWriter } from '../src/data/npy.js';
import { ClickHouseStore } from '../src/index/clickhouse.js';
import { itemVector, prepareQuery, vectorLength } from '../src/index/kl-math.js';
import { findClickHouseServer, startLocalClickHouse } from '../src/index/clickhouse-server.js';
import { SCAN_STATS } from '../src/index/internal.js';
import { bruteForceKl, bruteForceScores, KlIndex, topK as heapTopK, type ItemGaussians, type QueryGaussian, type SearchHit } from '../src/index/kl-index.js';
import { DISTANCES, type Distance } from '../src/index/distances.js';
import { Rng } from '../src/core/random.js';

export interface IndexBenchOptions {
  items?: number;
  dim?: number;
  k?: number;
  /** Single queries timed (after 5 warm-up queries). */
  queries?: number;
  batchSize?: number;
  batches?: number;
  bruteQueries?: number;
  /** Run the ClickHouse part when a server binary exists (default true). */
  clickhouse?: boolean;
  clickhouseQueries?: number;
  /** Run the FAISS anchor when python3-faiss imports (default true). */
  faiss?: boolean;
  /** Time every distance of distances.ts (default true), this many queries each (default 5). */
  distances?: boolean;
  distanceQueries?: number;
  seed?: number;
  log?: (m: string) => void;
}

export interface ClickHouseBenchResult {
  server: string;
  uploadSeconds: number;
  uploadRowsPerSecond: number;
  medianMsPerQuery: number;
  p90MsPerQuery: number;
  medianMsPerQueryMaxThreads1: number;
  queries: number;
  sameAsIndex: boolean;
}

export interface FaissAnchorResult {
  faiss: string;
  threads: number;
  singleMedianMsPerQuery: number;
  batchedMedianMsPerQuery: number;
  /** probsem's median ms per query divided by FAISS's (below 1: probsem faster). */
  singleRatio: number;
  batchedRatio: number;
  /** Share of FAISS's float32 top-k that equals the exact top-k (FAISS does not rescore). */
  recallOfExact: number;
}

export interface DistanceBenchRow {
  distance: Distance;
  /** Answered by the quantised scan of its rewrite (else exact brute force). */
  scan: boolean;
  /** The first query's time, which builds the distance's table. */
  firstQueryMs: number;
  medianMsPerQuery: number;
  /** Top-k indices and scores equal to the brute force (bruteForceScores) on two queries. */
  matchesBruteForce: boolean;
}

export interface IndexBenchResult {
  medianMsPerQuery: number;
  p90MsPerQuery: number;
  batchedQueriesPerSecond: number;
  batchSize: number;
  bruteForceMsPerQuery: number;
  speedupVsBruteForce: number;
  /** A stronger baseline: the diagonal KL loop in double precision with every item's log-determinant precomputed (no logs per query). */
  precomputedLoopMsPerQuery: number;
  speedupVsPrecomputedLoop: number;
  items: number;
  dim: number;
  k: number;
  threads: 1;
  buildSeconds: number;
  queries: number;
  bruteForceQueries: number;
  matchesBruteForce: boolean;
  /** Queries scanned a second time (their candidate list overflowed) or rescored in full. */
  secondPasses: number;
  meanCandidatesRescored: number;
  /** Batched ms per query (median batch / batch size). */
  batchedMsPerQuery: number;
  clickhouse: ClickHouseBenchResult | null;
  faiss: FaissAnchorResult | null;
  distances: DistanceBenchRow[] | null;
}

/** Diagonal Gaussians: means ~ N(0, 1), variances log-uniform in [0.01, 1]. */
export function randomDiagItems(count: number, dim: number, seed: number): ItemGaussians & { kind: 'diag' } {
  const rng = Rng.for(seed, 'index-items');
  const mean = rng.fillNormal(new Float32Array(count * dim));
  const variance = new Float32Array(count * dim);
  for (let i = 0; i < variance.length; i++) variance[i] = Math.exp(Math.log(0.01) * (1 - rng.uniform()));
  return { kind: 'diag', dim, count, mean, variance };
}

/** Full-covariance Gaussians: means ~ N(0, 1), L with log-uniform diagonal in [0.1, 1] and N(0, 0.2²) below it. */
export function randomFullItems(count: number, dim: number, seed: number): ItemGaussians & { kind: 'full' } {
  const rng = Rng.for(seed, 'index-full-items');
  const mean = rng.fillNormal(new Float32Array(count * dim));
  const scaleTril = new Float32Array(count * dim * dim);
  for (let i = 0; i < count; i++) {
    for (let r = 0; r < dim; r++) {
      for (let c = 0; c < r; c++) scaleTril[i * dim * dim + r * dim + c] = 0.2 * rng.normal();
      scaleTril[i * dim * dim + r * dim + r] = Math.exp(Math.log(0.1) * (1 - rng.uniform()));
    }
  }
  return { kind: 'full', dim, count, mean, scaleTril };
}

/** Queries: means ~ N(0, 1), covariance diag(v) + u uᵀ with v log-uniform in [0.01, 1], u ~ N(0, 0.1²). */
export function randomQueries(count: number, dim: number, seed: number): QueryGaussian[] {
  const rng = Rng.for(seed, 'index-queries');
  return Array.from({ length: count }, () => {
    const mean = Float64Array.from({ length: dim }, () => rng.normal());
    const u = Float64Array.from({ length: dim }, () => 0.1 * rng.normal());
    const covariance = new Float64Array(dim * dim);
    for (let r = 0; r < dim; r++) {
      for (let c = 0; c < dim; c++) covariance[r * dim + c] = u[r] * u[c];
      covariance[r * dim + r] += Math.exp(Math.log(0.01) * (1 - rng.uniform()));
    }
    return { mean, covariance };
  });
}

/** Indices of the k smallest (or largest) values, ties by position. */
export function topK(values: Float64Array, k: number, largest = false, exclude = -1): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (i !== exclude) idx.push(i);
  idx.sort((a, b) => (values[a] === values[b] ? a - b : largest ? values[b] - values[a] : values[a] - values[b]));
  return idx.slice(0, k);
}

export const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (a: number[], q: number) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};
const r3 = (v: number) => +v.toFixed(3);

const sameHits = (a: SearchHit[], b: SearchHit[]) => a.length === b.length && a.every((h, i) => h.index === b[i].index && h.id === b[i].id && h.kl === b[i].kl);

export async function runIndexBench(o: IndexBenchOptions = {}): Promise<IndexBenchResult> {
  const log = o.log ?? (() => {});
  const count = o.items ?? 1_000_000;
  const dim = o.dim ?? 20;
  const k = o.k ?? 10;
  const nQueries = o.queries ?? 100;
  const batchSize = o.batchSize ?? 64;
  const batches = o.batches ?? 5;
  const nBrute = o.bruteQueries ?? 3;
  const seed = o.seed ?? 1;

  const items = randomDiagItems(count, dim, seed);
  let t0 = performance.now();
  const index = KlIndex.build(items);
  const buildSeconds = (performance.now() - t0) / 1000;
  log(`index: built ${count} × ${dim} diagonal Gaussians in ${buildSeconds.toFixed(1)} s`);

  const queries = randomQueries(5 + nQueries, dim, seed);
  for (const q of queries.slice(0, 5)) index.search(q, k); // warm-up
  const stats0 = { ...SCAN_STATS };
  const times: number[] = [];
  const results: SearchHit[][] = [];
  for (const q of queries.slice(5)) {
    t0 = performance.now();
    results.push(index.search(q, k));
    times.push(performance.now() - t0);
  }
  const medianMs = median(times);
  log(`index: median ${medianMs.toFixed(2)} ms per query, p90 ${quantile(times, 0.9).toFixed(2)} ms (${nQueries} queries)`);

  const batchQueries = randomQueries(batchSize * (batches + 1), dim, seed + 1);
  const batchMs: number[] = [];
  let batchSame = true;
  for (let b = 0; b <= batches; b++) {
    const qs = batchQueries.slice(b * batchSize, (b + 1) * batchSize);
    t0 = performance.now();
    const res = index.searchBatch(qs, k);
    const ms = performance.now() - t0;
    if (b > 0) batchMs.push(ms); // the first batch is a warm-up
    if (b === 1) batchSame = qs.slice(0, 4).every((q, i) => sameHits(index.search(q, k), res[i]));
  }
  const batchedQps = (batchSize / median(batchMs)) * 1000;
  const batchedMsPerQuery = median(batchMs) / batchSize;
  log(`index: batched ${batchedQps.toFixed(0)} queries/s (${batchSize} per batch, median of ${batches})`);
  const stats1 = { ...SCAN_STATS };

  const bruteMs: number[] = [];
  let matches = batchSame;
  for (let i = 0; i < 2; i++) bruteForceKl(items, queries[i]); // warm-up
  for (let i = 0; i < nBrute; i++) {
    t0 = performance.now();
    const kl = bruteForceKl(items, queries[5 + i]);
    bruteMs.push(performance.now() - t0);
    const want = topK(kl, k);
    matches &&= want.every((j, r) => results[i][r].index === j && results[i][r].kl === kl[j]);
  }
  const bruteMsPerQuery = median(bruteMs);
  log(`index: brute force ${bruteMsPerQuery.toFixed(0)} ms per query; hits ${matches ? 'equal' : 'DIFFER FROM'} the brute force`);
  const loopMs = precomputedLoop(items, queries.slice(5, 5 + Math.max(nBrute, 5)), k, results, (ok) => (matches &&= ok));
  log(`index: the loop with precomputed log-determinants ${loopMs.toFixed(0)} ms per query`);

  let clickhouse: ClickHouseBenchResult | null = null;
  if (o.clickhouse !== false) {
    const cmd = findClickHouseServer();
    if (!cmd) log('index: no clickhouse-server binary: ClickHouse skipped (Debian: apt-get install clickhouse-server)');
    else clickhouse = await clickhouseBench(index, queries.slice(5), results, k, o.clickhouseQueries ?? 20, log);
  }

  let faiss: FaissAnchorResult | null = null;
  if (o.faiss !== false) {
    const py = findFaissPython();
    if (!py) log('index: python3 with faiss not found: FAISS anchor skipped (Debian: apt-get install python3-faiss)');
    else {
      faiss = faissAnchor(py, items, queries, batchQueries, results, { k, batchSize, medianMs, batchedMsPerQuery }, log);
    }
  }

  const distances = o.distances === false ? null : distanceBench(index, items, queries.slice(5), k, o.distanceQueries ?? 5, log);

  const queriesAnswered = stats1.queries - stats0.queries;
  return {
    medianMsPerQuery: r3(medianMs),
    p90MsPerQuery: r3(quantile(times, 0.9)),
    batchedQueriesPerSecond: Math.round(batchedQps),
    batchSize,
    bruteForceMsPerQuery: r3(bruteMsPerQuery),
    speedupVsBruteForce: +(bruteMsPerQuery / medianMs).toFixed(1),
    precomputedLoopMsPerQuery: r3(loopMs),
    speedupVsPrecomputedLoop: +(loopMs / medianMs).toFixed(1),
    items: count,
    dim,
    k,
    threads: 1,
    buildSeconds: r3(buildSeconds),
    queries: nQueries,
    bruteForceQueries: nBrute,
    matchesBruteForce: matches,
    secondPasses: stats1.collectPasses - stats0.collectPasses + stats1.fullRescans - stats0.fullRescans,
    meanCandidatesRescored: +((stats1.rescored - stats0.rescored) / Math.max(1, queriesAnswered)).toFixed(1),
    batchedMsPerQuery: r3(batchedMsPerQuery),
    clickhouse,
    faiss,
    distances,
  };
}

/**
 * Every distance on the same index, with the queries' covariances made diagonal (a diagonal
 * model's queries are; the rewrites other than CSD need that): ms per query after the first (which
 * builds the distance's table), and the top k checked against the brute force on two queries.
 */
function distanceBench(index: KlIndex, items: ItemGaussians, queries: QueryGaussian[], k: number, n: number, log: (m: string) => void): DistanceBenchRow[] {
  const dim = items.dim;
  const diag = queries.slice(0, n + 1).map((q) => ({ mean: q.mean, covariance: Float64Array.from({ length: dim * dim }, (_, t) => (t % (dim + 1) === 0 ? q.covariance[t] : 0)) }));
  return DISTANCES.map((distance) => {
    let t0 = performance.now();
    const before = SCAN_STATS.fullRescans;
    const first = index.search(diag[0], k, { distance });
    const firstQueryMs = performance.now() - t0;
    const scan = SCAN_STATS.fullRescans === before;
    const times: number[] = [];
    const hits: SearchHit[][] = [first];
    for (const q of diag.slice(1)) {
      t0 = performance.now();
      hits.push(index.search(q, k, { distance }));
      times.push(performance.now() - t0);
    }
    let matches = true;
    for (let i = 0; i < 2; i++) {
      const scores = bruteForceScores(items, diag[i], distance);
      const want = heapTopK(scores.length, k, (j) => scores[j]);
      matches &&= want.every((w, r) => hits[i][r].index === w.index && hits[i][r].score === w.value);
    }
    const row = { distance, scan, firstQueryMs: r3(firstQueryMs), medianMsPerQuery: r3(median(times)), matchesBruteForce: matches };
    log(`index: ${distance.padEnd(13)} ${scan ? 'scan ' : 'brute'} ${row.medianMsPerQuery} ms/query (first ${row.firstQueryMs} ms); ${matches ? 'equal to' : 'DIFFERS FROM'} the brute force`);
    return row;
  });
}

/** A python3 that imports faiss (Debian's python3-faiss installs for /usr/bin/python3). */
function findFaissPython(): string | null {
  for (const py of [process.env.PROBSEM_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]) {
    if (spawnSync(py, ['-c', 'import faiss'], { encoding: 'utf8' }).status === 0) return py;
  }
  return null;
}

/**
 * FAISS IndexFlatIP on the same rewrite: item rows [a_i, c_i] and query rows [−b, −1], so the
 * largest inner product is the smallest S_i = ⟨a_i, b⟩ + c_i (the smallest KL). The rows stream to
 * .npy files in a temporary directory; bench/faiss_anchor.py times the same single queries (same
 * 5 warm-ups) and the same batches (first one untimed) on one thread.
 */
function faissAnchor(
  py: string,
  items: ItemGaussians,
  queries: QueryGaussian[],
  batchQueries: QueryGaussian[],
  exact: SearchHit[][],
  ours: { k: number; batchSize: number; medianMs: number; batchedMsPerQuery: number },
  log: (m: string) => void,
): FaissAnchorResult {
  const dir = mkdtempSync(join(tmpdir(), 'probsem-faiss-'));
  try {
    const n = vectorLength(items.kind, items.dim);
    const w = new NpyWriter(join(dir, 'items.npy'), '<f4', [items.count, n + 1]);
    const row = new Float64Array(n);
    const chunk = 10_000;
    for (let s = 0; s < items.count; s += chunk) {
      const e = Math.min(items.count, s + chunk);
      const out = new Float32Array((e - s) * (n + 1));
      for (let i = s; i < e; i++) {
        const c = itemVector(items, i, row);
        out.set(row, (i - s) * (n + 1));
        out[(i - s) * (n + 1) + n] = c;
      }
      w.append(out);
    }
    w.close();
    const writeQueries = (name: string, qs: QueryGaussian[]) => {
      const qw = new NpyWriter(join(dir, name), '<f4', [qs.length, n + 1]);
      const out = new Float32Array(qs.length * (n + 1));
      qs.forEach((q, t) => {
        const b = prepareQuery(items.kind, items.dim, q).b;
        for (let j = 0; j < n; j++) out[t * (n + 1) + j] = -b[j];
        out[t * (n + 1) + n] = -1;
      });
      qw.append(out);
      qw.close();
    };
    writeQueries('single.npy', queries);
    writeQueries('batch.npy', batchQueries);
    // This machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS: the anchor runs without them, in its own command only.
    const env: Record<string, string | undefined> = { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const script = join(dirname(fileURLToPath(import.meta.url)), 'faiss_anchor.py');
    const r = spawnSync(py, [script, dir, '--k', String(ours.k), '--warmup', '5', '--batch-size', String(ours.batchSize)], { encoding: 'utf8', env, maxBuffer: 64 * 2 ** 20 });
    const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !last) throw new Error(`faiss_anchor.py failed: ${r.stderr || last}`);
    const j = JSON.parse(last) as { faiss: string; threads: number; singleMedianMsPerQuery: number; batchedMedianMsPerQuery: number; ids: number[][] };
    let same = 0;
    let total = 0;
    j.ids.forEach((ids, q) => {
      const want = new Set(exact[q].map((h) => h.index));
      same += ids.filter((i) => want.has(i)).length;
      total += want.size;
    });
    const res: FaissAnchorResult = {
      faiss: j.faiss,
      threads: j.threads,
      singleMedianMsPerQuery: j.singleMedianMsPerQuery,
      batchedMedianMsPerQuery: j.batchedMedianMsPerQuery,
      singleRatio: +(ours.medianMs / j.singleMedianMsPerQuery).toFixed(2),
      batchedRatio: +(ours.batchedMsPerQuery / j.batchedMedianMsPerQuery).toFixed(2),
      recallOfExact: +(same / Math.max(1, total)).toFixed(4),
    };
    log(
      `index: FAISS ${res.faiss} IndexFlatIP (1 thread) ${res.singleMedianMsPerQuery} ms/query single, ${res.batchedMedianMsPerQuery} ms/query batched; ` +
        `probsem/FAISS ${res.singleRatio} single, ${res.batchedRatio} batched; FAISS top-${ours.k} recall of the exact ${res.recallOfExact}`,
    );
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Median ms per query of the diagonal KL loop (double precision) with Σ log σ² per item computed
 * once beforehand, keeping the k best in a small sorted list as it goes (after three untimed
 * warm-up queries); checks its top-k KL values against the index's.
 */
function precomputedLoop(items: ItemGaussians & { kind: 'diag' }, queries: QueryGaussian[], k: number, want: SearchHit[][], check: (ok: boolean) => void): number {
  const { count, dim, mean, variance } = items;
  const logDet = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += Math.log(variance[i * dim + j]);
    logDet[i] = s;
  }
  const ms: number[] = [];
  const warmUp = 3; // the loop reaches V8's optimising tier only after a few calls
  for (let qi = -warmUp; qi < queries.length; qi++) {
    const q = queries[(qi + queries.length * warmUp) % queries.length]; // qi < 0: untimed warm-up
    const t0 = performance.now();
    const mu = Float64Array.from(q.mean);
    const dv = Float64Array.from({ length: dim }, (_, j) => q.covariance[j * dim + j]);
    const logDetP = choleskyLogDet(q.covariance, dim);
    const bestKl = new Float64Array(k).fill(Infinity);
    const best = new Int32Array(k).fill(-1);
    for (let i = 0; i < count; i++) {
      let s = logDet[i];
      const o = i * dim;
      for (let j = 0; j < dim; j++) {
        const d = mean[o + j] - mu[j];
        s += (dv[j] + d * d) / variance[o + j];
      }
      const kl = 0.5 * (s - dim - logDetP);
      if (kl < bestKl[k - 1]) {
        let r = k - 1;
        for (; r > 0 && bestKl[r - 1] > kl; r--) {
          bestKl[r] = bestKl[r - 1];
          best[r] = best[r - 1];
        }
        bestKl[r] = kl;
        best[r] = i;
      }
    }
    if (qi < 0) continue;
    ms.push(performance.now() - t0);
    check(Array.from(bestKl).every((v, r) => Math.abs(v - want[qi][r].kl) <= 1e-9 * Math.abs(v)));
  }
  return median(ms);
}

function choleskyLogDet(a: ArrayLike<number>, n: number): number {
  const l = new Float64Array(n * n);
  let s = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let v = a[i * n + j];
      for (let k = 0; k < j; k++) v -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        l[i * n + i] = Math.sqrt(v);
        s += Math.log(l[i * n + i]);
      } else l[i * n + j] = v / l[j * n + j];
    }
  }
  return 2 * s;
}

async function clickhouseBench(index: KlIndex, queries: QueryGaussian[], want: SearchHit[][], k: number, n: number, log: (m: string) => void): Promise<ClickHouseBenchResult> {
  const server = await startLocalClickHouse();
  try {
    const url = server.url('probsem_bench.items');
    const store = await ClickHouseStore.open(url);
    const version = (await (await fetch(`http://127.0.0.1:${server.httpPort}/?query=SELECT%20version()`)).text()).trim();
    const up = await store.upload(index, { replace: true });
    log(`clickhouse ${version}: uploaded ${index.count} items in ${(up.ms / 1000).toFixed(1)} s`);
    const time = async (s: ClickHouseStore) => {
      const ms: number[] = [];
      let same = true;
      for (let i = 0; i < 2; i++) await s.search(queries[i], k); // warm-up
      for (let i = 0; i < Math.min(n, queries.length); i++) {
        const t0 = performance.now();
        const hits = await s.search(queries[i], k);
        ms.push(performance.now() - t0);
        same &&= sameHits(hits, want[i]);
      }
      return { ms, same };
    };
    const dflt = await time(store);
    const one = await time(await ClickHouseStore.open(url, { settings: { max_threads: 1 } }));
    log(`clickhouse: median ${median(dflt.ms).toFixed(1)} ms per query (default threads), ${median(one.ms).toFixed(1)} ms (max_threads 1); hits ${dflt.same && one.same ? 'equal' : 'DIFFER FROM'} the index's`);
    return {
      server: version,
      uploadSeconds: +(up.ms / 1000).toFixed(2),
      uploadRowsPerSecond: Math.round(index.count / (up.ms / 1000)),
      medianMsPerQuery: r3(median(dflt.ms)),
      p90MsPerQuery: r3(quantile(dflt.ms, 0.9)),
      medianMsPerQueryMaxThreads1: r3(median(one.ms)),
      queries: dflt.ms.length,
      sameAsIndex: dflt.same && one.same,
    };
  } finally {
    await server.stop();
  }
}
