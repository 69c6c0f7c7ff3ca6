/**
 * Load test of `probsem serve`: N concurrent POST /api/annotate requests (PNG uploads of test
 * images) against a server started on the loopback interface, with latency percentiles; then the
 * backlog test: N annotate requests and --big uploads of a 2048×2048 16-bit RGBA PNG all at once
 * while /api/health is polled, reporting health p50/p99, 5xx answers and the server's RSS before,
 * right after and a while after.
 *
 *   npx tsx bench/serve-load.ts [--run DIR] [--requests 200] [--big 20] [--generate 0] [--rounds 1] [--json] [--out FILE]
 *
 * --generate N adds N `generate n=64` requests (heavy model work) to the backlog.
 *
 * --retrieve N measures POST /api/retrieve (k 10, a class name per request) for --distances
 * (default kl,w2): idle, N requests per distance from --clients concurrent clients (default 50,
 * each sending its next request when the last is answered); and under the backlog, the same
 * clients alternating the distances for as long as the flood lasts. --root DIR serves from another
 * checkout (e.g. main before a change: `git archive COMMIT | tar -x -C DIR`, node_modules linked),
 * so before and after are measured by one script. --deadline S (default 300) bounds the whole run.
 *
 * Without --run it trains a small PSE* (latent 10, 300 steps on the shipped subset, ~40 s) first.
 * Bounded: every request has a 60 s timeout, the whole run a 5-minute deadline, and the server
 * (a child process) is stopped with SIGTERM at the end. Exits 1 on any error.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/core/backend.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { encodeGridPng } from '../src/data/png.js';
import { trainRun } from '../src/runs/runs.js';
import sharp from 'sharp';

const { values: v } = parseArgs({
  options: {
    run: { type: 'string' },
    requests: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '1' },
    big: { type: 'string', default: '20' },
    generate: { type: 'string', default: '0' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    retrieve: { type: 'string', default: '0' },
    clients: { type: 'string', default: '50' },
    distances: { type: 'string', default: 'kl,w2' },
    root: { type: 'string' },
    deadline: { type: 'string', default: '300' },
  },
});
const RETRIEVE = Number(v.retrieve);
if (!Number.isInteger(RETRIEVE) || RETRIEVE < 0 || RETRIEVE > 100000) throw new Error('--retrieve must be an integer in [0, 100000]');
const CLIENTS = Number(v.clients);
if (!Number.isInteger(CLIENTS) || CLIENTS < 1 || CLIENTS > 500) throw new Error('--clients must be an integer in [1, 500]');
const DISTANCES = String(v.distances).split(',').map((d) => d.trim()).filter(Boolean);
const DEADLINE_S = Number(v.deadline);
if (!(DEADLINE_S >= 10 && DEADLINE_S <= 3600)) throw new Error('--deadline must be in [10, 3600] seconds');
const N = Number(v.requests);
const ROUNDS = Number(v.rounds);
const BIG = Number(v.big);
if (!Number.isInteger(BIG) || BIG < 0 || BIG > 200) throw new Error('--big must be an integer in [0, 200]');
const GEN = Number(v.generate);
if (!Number.isInteger(GEN) || GEN < 0 || GEN > 1000) throw new Error('--generate must be an integer in [0, 1000]');
if (!Number.isInteger(N) || N < 1 || N > 2000) throw new Error('--requests must be an integer in [1, 2000]');
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 10) throw new Error('--rounds must be an integer in [1, 10]');
const deadline = setTimeout(() => {
  process.stderr.write(`serve-load: ${DEADLINE_S} s deadline passed; stopping\n`);
  process.exit(1);
}, DEADLINE_S * 1000);
deadline.unref();

const log = (s: string) => process.stderr.write(`serve-load: ${s}\n`);

let run = v.run;
if (!run) {
  await initBackend();
  run = join(mkdtempSync(join(tmpdir(), 'probsem-load-')), 'run');
  log(`training a small model into ${run}`);
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 10, steps: 300, batchSize: 100, lr: 1e-3, seed: 0, out: run });
}

// Payloads: N different test images as 28×28 PNG files.
const ds = await loadDataset('fashion-mnist-subset');
const payloads = Array.from({ length: N }, (_, i) => {
  const idx = i % ds.test.count;
  return encodeGridPng(imagesToFloat(ds.test, [idx], 784), 1, { cols: 1, height: 28, width: 28, scale: 1, pad: 0 });
});

const serverStart = performance.now();
const server = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--run', run, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'], cwd: v.root ?? process.cwd() });
const stopServer = async () => {
  if (server.exitCode !== null) return server.exitCode;
  const exited = new Promise<number | null>((r) => server.once('exit', r));
  server.kill('SIGTERM');
  return exited;
};
process.on('exit', () => {
  if (server.exitCode === null) server.kill('SIGKILL');
});
const base = await new Promise<string>((resolve, reject) => {
  let out = '';
  const t = setTimeout(() => reject(new Error(`the server did not start: ${out}`)), 60_000);
  server.stdout!.on('data', (d) => {
    out += d;
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
    if (m) {
      clearTimeout(t);
      resolve(m[1]);
    }
  });
  server.once('exit', (c) => reject(new Error(`the server exited (${c}): ${out}`)));
});
const serverStartS = Number(((performance.now() - serverStart) / 1000).toFixed(2));
log(`server at ${base} (up in ${serverStartS} s)`);

/** The server's resident memory in MiB (Linux: /proc; elsewhere null). */
function serverRssMiB(): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'));
    return m ? Number((Number(m[1]) / 1024).toFixed(1)) : null;
  } catch {
    return null;
  }
}

type Outcome = { ms: number; ok: boolean; status: number; err?: string };

/** One timed POST; `good` judges a 200's JSON body. */
async function timedPost(path: string, type: string, body: BodyInit, good: (b: Record<string, unknown>) => boolean): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': type }, body, signal: AbortSignal.timeout(60_000) });
    const b = (await res.json()) as Record<string, unknown>;
    const ok = res.status === 200 && good(b);
    return { ms: performance.now() - t0, ok, status: res.status, err: ok ? undefined : String(b.message) };
  } catch (e) {
    return { ms: performance.now() - t0, ok: false, status: 0, err: (e as Error).message };
  }
}

const annotate = (png: Buffer) =>
  timedPost('/api/annotate', 'image/png', png as unknown as BodyInit, (b) => Array.isArray(b.labels) && b.labels.length === ds.classNames.length);
const generate = (seed: number) =>
  timedPost('/api/generate', 'application/json', JSON.stringify({ label: ds.classNames[seed % ds.classNames.length], n: 64, seed }), (b) => Array.isArray(b.images) && b.images.length === 64);

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

let retrieveSeq = 0;
const retrieve = (distance: string) => {
  const label = ds.classNames[retrieveSeq++ % ds.classNames.length];
  return timedPost('/api/retrieve', 'application/json', JSON.stringify({ words: [label], k: 10, distance }), (b) => Array.isArray(b.results) && b.results.length === 10);
};

/**
 * CLIENTS clients, each sending its next retrieve when the last is answered: until `total`
 * requests have gone out, or (total null) until `stop()` says so; `pick` chooses each distance.
 */
async function retrieveClients(total: number | null, pick: (n: number) => string, stop: () => boolean = () => false) {
  const out: { distance: string; r: Outcome }[] = [];
  let sent = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while ((total === null || sent < total) && !stop()) {
        const distance = pick(sent++);
        out.push({ distance, r: await retrieve(distance) });
      }
    }),
  );
  return out;
}

function latencySummary(rs: Outcome[]) {
  const ms = rs.map((x) => x.ms).sort((a, b) => a - b);
  return {
    requests: rs.length,
    errors: rs.filter((x) => !x.ok).length,
    statuses: [...new Set(rs.map((x) => x.status))],
    p50_ms: ms.length ? Number(pct(ms, 50).toFixed(1)) : null,
    p99_ms: ms.length ? Number(pct(ms, 99).toFixed(1)) : null,
    max_ms: ms.length ? Number(ms[ms.length - 1].toFixed(1)) : null,
  };
}

// Idle retrieval latency, per distance (a first request each warms the workers' index tables).
const retrieveIdle: Record<string, ReturnType<typeof latencySummary> & { wall_s: number; loadavg: number[] }> = {};
if (RETRIEVE > 0) {
  for (const d of DISTANCES) for (let i = 0; i < 2 * CLIENTS; i++) await retrieve(d);
  for (const d of DISTANCES) {
    const t = performance.now();
    const rs = await retrieveClients(RETRIEVE, () => d);
    retrieveIdle[d] = { ...latencySummary(rs.map((x) => x.r)), wall_s: Number(((performance.now() - t) / 1000).toFixed(2)), loadavg: os.loadavg().map((x) => Number(x.toFixed(2))) };
    if (retrieveIdle[d].errors) log(`retrieve ${d} errors: ${rs.filter((x) => !x.r.ok).slice(0, 3).map((x) => `${x.r.status} ${x.r.err}`).join('; ')}`);
  }
}

// Warm-up, not counted.
for (let i = 0; i < 10; i++) await annotate(payloads[i]);

const rounds = [];
for (let r = 0; r < ROUNDS; r++) {
  const t0 = performance.now();
  const results = await Promise.all(payloads.map((p) => annotate(p)));
  const wall = (performance.now() - t0) / 1000;
  const ms = results.map((x) => x.ms).sort((a, b) => a - b);
  const errors = results.filter((x) => !x.ok);
  const summary = {
    round: r + 1,
    requests: N,
    concurrent: N,
    errors: errors.length,
    statuses: [...new Set(results.map((x) => x.status))],
    p50_ms: Number(pct(ms, 50).toFixed(1)),
    p95_ms: Number(pct(ms, 95).toFixed(1)),
    p99_ms: Number(pct(ms, 99).toFixed(1)),
    max_ms: Number(ms[ms.length - 1].toFixed(1)),
    min_ms: Number(ms[0].toFixed(1)),
    wall_s: Number(wall.toFixed(2)),
    requests_per_s: Number((N / wall).toFixed(1)),
  };
  if (errors.length) log(`first errors: ${errors.slice(0, 3).map((e) => `${e.status} ${e.err}`).join('; ')}`);
  rounds.push(summary);
}

// The backlog: every annotate request and every big upload at once, /api/health polled meanwhile.
// The big picture is constant, so it compresses to ~55 KB, but decodes to 32 MiB of samples.
const bigPng = await sharp({ create: { width: 2048, height: 2048, channels: 4, background: { r: 20, g: 20, b: 20, alpha: 1 } } })
  .toColourspace('rgb16')
  .png({ compressionLevel: 9 })
  .toBuffer();
const rssBefore = serverRssMiB();
const loadBefore = os.loadavg();
// Health is polled from a separate process, so the latencies are the server's and not those of this
// process's own event loop, busy with the flood's 200+ requests.
const pollerCode = `
  const base = process.argv[1]; const out = []; let on = true;
  process.stdin.on('data', () => (on = false)); process.stdin.resume();
  while (on) {
    const t = performance.now(); let status = 0;
    try { const r = await fetch(base + '/api/health', { signal: AbortSignal.timeout(10000) }); await r.arrayBuffer(); status = r.status; } catch {}
    out.push([Date.now(), performance.now() - t, status]);
    await new Promise((r) => setTimeout(r, 10));
  }
  process.stdout.write(JSON.stringify(out)); process.exit(0);`;
const poller = spawn(process.execPath, ['--input-type=module', '-e', pollerCode, base], { stdio: ['pipe', 'pipe', 'inherit'] });
let pollerOut = '';
poller.stdout!.on('data', (d) => (pollerOut += d));
const pollerDone = new Promise((r) => poller.once('exit', r));
await new Promise((r) => setTimeout(r, 500));
const floodStart = Date.now();
const t0 = performance.now();
let floodOver = false;
// Retrieval clients run beside the flood, alternating the distances, until it is answered.
const duringFlood = RETRIEVE > 0 ? retrieveClients(null, (n) => DISTANCES[n % DISTANCES.length], () => floodOver) : Promise.resolve([]);
const flood = await Promise.all([
  ...payloads.map((p) => annotate(p)),
  ...Array.from({ length: BIG }, () => annotate(bigPng)),
  ...Array.from({ length: GEN }, (_, i) => generate(i)),
]);
floodOver = true;
const floodWall = (performance.now() - t0) / 1000;
const floodRetrieves = await duringFlood;
const retrieveBacklog = Object.fromEntries(DISTANCES.map((d) => [d, latencySummary(floodRetrieves.filter((x) => x.distance === d).map((x) => x.r))]));
poller.stdin!.write('stop\n');
await pollerDone;
// [epoch ms when sent, latency ms, status] of each poll sent once the flood had started.
const polls = (JSON.parse(pollerOut) as [number, number, number][]).filter((p) => p[0] >= floodStart);
const healthMs = polls.map((p) => p[1]);
const healthStatuses = polls.map((p) => p[2]);
const rssAfter = serverRssMiB();
// Memory held by finished requests is returned to the OS once the collector has run.
await new Promise((r) => setTimeout(r, 10_000));
const rssSettled = serverRssMiB();
const hs = [...healthMs].sort((a, b) => a - b);
const statuses = [...flood.map((x) => x.status), ...healthStatuses];
const backlog = {
  annotate: N,
  bigUploads: BIG,
  generate64: GEN,
  bigPngBytes: bigPng.length,
  wall_s: Number(floodWall.toFixed(2)),
  errors: flood.filter((x) => !x.ok).length,
  status5xx: statuses.filter((c) => c >= 500).length,
  failedConnections: statuses.filter((c) => c === 0).length,
  healthPolls: hs.length,
  health_p50_ms: Number(pct(hs, 50).toFixed(1)),
  health_p99_ms: Number(pct(hs, 99).toFixed(1)),
  health_max_ms: Number(hs[hs.length - 1].toFixed(1)),
  // When the slow polls were sent, in seconds from the start of the flood.
  health_over_100ms_at_s: polls.filter((p) => p[1] > 100).map((p) => Number(((p[0] - floodStart) / 1000).toFixed(2))),
  rss_before_mib: rssBefore,
  rss_after_mib: rssAfter,
  rss_after_10s_mib: rssSettled,
  loadavg_before: loadBefore.map((x) => Number(x.toFixed(2))),
  loadavg_after: os.loadavg().map((x) => Number(x.toFixed(2))),
};
if (backlog.errors) log(`backlog errors: ${flood.filter((x) => !x.ok).slice(0, 3).map((e) => `${e.status} ${e.err}`).join('; ')}`);

const health = (await (await fetch(`${base}/api/health`)).json()) as object;
const code = await stopServer();
clearTimeout(deadline);
const retrieval = RETRIEVE > 0 ? { clients: CLIENTS, perDistanceIdle: RETRIEVE, idle: retrieveIdle, backlog: retrieveBacklog } : null;
const result = { node: process.version, cores: os.availableParallelism(), run, root: v.root ?? process.cwd(), serverStartS, rounds, retrieval, backlog, serverExit: code, healthAfter: health };
if (v.out) writeFileSync(v.out, JSON.stringify(result, null, 2) + '\n');
if (v.json) process.stdout.write(JSON.stringify(result) + '\n');
else {
  process.stdout.write('| round | requests (all at once) | errors | p50 ms | p95 ms | p99 ms | max ms | wall s | req/s |\n|---|---|---|---|---|---|---|---|---|\n');
  for (const s of rounds) {
    process.stdout.write(`| ${s.round} | ${s.requests} | ${s.errors} | ${s.p50_ms} | ${s.p95_ms} | ${s.p99_ms} | ${s.max_ms} | ${s.wall_s} | ${s.requests_per_s} |\n`);
  }
  const b = backlog;
  process.stdout.write(
    `\nbacklog: ${b.annotate} annotate + ${b.bigUploads} × 2048×2048 16-bit RGBA PNG + ${b.generate64} generate n=64 at once, ${b.wall_s} s; errors ${b.errors}, 5xx ${b.status5xx}\n` +
      `health over ${b.healthPolls} polls: p50 ${b.health_p50_ms} ms, p99 ${b.health_p99_ms} ms, max ${b.health_max_ms} ms\n` +
      `server RSS: ${b.rss_before_mib} MiB before, ${b.rss_after_mib} MiB right after, ${b.rss_after_10s_mib} MiB 10 s later; load average ${b.loadavg_before.join(' ')} → ${b.loadavg_after.join(' ')}\n`,
  );
  if (retrieval) {
    process.stdout.write(`\n/api/retrieve, ${CLIENTS} concurrent clients:\n| distance | when | requests | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n`);
    for (const d of DISTANCES) {
      for (const [when, x] of [['idle', retrieval.idle[d]], ['backlog', retrieval.backlog[d]]] as const) {
        process.stdout.write(`| ${d} | ${when} | ${x.requests} | ${x.errors} | ${x.p50_ms} | ${x.p99_ms} | ${x.max_ms} |\n`);
      }
    }
  }
}
const retrieveErrors = retrieval ? Object.values(retrieval.idle).some((x) => x.errors > 0) || Object.values(retrieval.backlog).some((x) => x.errors > 0) : false;
process.exitCode = rounds.some((r) => r.errors > 0) || backlog.errors > 0 || backlog.status5xx > 0 || retrieveErrors || code !== 0 ? 1 : 0;
