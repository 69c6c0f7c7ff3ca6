/**
 * Load test of `probsem serve`: N concurrent POST /api/annotate requests (PNG uploads of test
 * images) against a server started on the loopback interface, with latency percentiles.
 *
 *   npx tsx bench/serve-load.ts [--run DIR] [--requests 200] [--rounds 1] [--json]
 *
 * Without --run it trains a small PSE* (latent 10, 300 steps on the shipped subset, ~40 s) first.
 * Bounded: every request has a 60 s timeout, the whole run a 5-minute deadline, and the server
 * (a child process) is stopped with SIGTERM at the end. Exits 1 on any error.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/core/backend.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { encodeGridPng } from '../src/data/png.js';
import { trainRun } from '../src/runs/runs.js';

const { values: v } = parseArgs({
  options: {
    run: { type: 'string' },
    requests: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(v.requests);
const ROUNDS = Number(v.rounds);
if (!Number.isInteger(N) || N < 1 || N > 2000) throw new Error('--requests must be an integer in [1, 2000]');
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 10) throw new Error('--rounds must be an integer in [1, 10]');
const deadline = setTimeout(() => {
  process.stderr.write('serve-load: 5-minute deadline passed; stopping\n');
  process.exit(1);
}, 300_000);
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

const server = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--run', run, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
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
log(`server at ${base}`);

async function annotate(png: Buffer): Promise<{ ms: number; ok: boolean; status: number; err?: string }> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${base}/api/annotate`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: png as unknown as BodyInit,
      signal: AbortSignal.timeout(60_000),
    });
    const body = (await res.json()) as { labels?: unknown[]; message?: string };
    const ok = res.status === 200 && Array.isArray(body.labels) && body.labels.length === ds.classNames.length;
    return { ms: performance.now() - t0, ok, status: res.status, err: ok ? undefined : body.message };
  } catch (e) {
    return { ms: performance.now() - t0, ok: false, status: 0, err: (e as Error).message };
  }
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

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

const health = (await (await fetch(`${base}/api/health`)).json()) as object;
const code = await stopServer();
clearTimeout(deadline);
const result = { node: process.version, run, rounds, serverExit: code, healthAfter: health };
if (v.json) process.stdout.write(JSON.stringify(result) + '\n');
else {
  process.stdout.write('| round | requests (all at once) | errors | p50 ms | p95 ms | p99 ms | max ms | wall s | req/s |\n|---|---|---|---|---|---|---|---|---|\n');
  for (const s of rounds) {
    process.stdout.write(`| ${s.round} | ${s.requests} | ${s.errors} | ${s.p50_ms} | ${s.p95_ms} | ${s.p99_ms} | ${s.max_ms} | ${s.wall_s} | ${s.requests_per_s} |\n`);
  }
}
process.exitCode = rounds.some((r) => r.errors > 0) || code !== 0 ? 1 : 0;
