/**
 * The explorer under `probsem serve` in headless Chromium, three ways in one script: the model in
 * the tab with the test split sent to it (the default), the model in the tab with the split kept on
 * the server (`--page-data 0`), and every computation on the server (`?compute=server`). Each run
 * opens a fresh browser context (nothing cached); it times navigation until the page is ready with
 * its map drawn, one map click (annotation and reconstruction of that test image) and one words
 * query (8 generated and 8 retrieved), and adds up the bytes the page received.
 * Usage: tsx bench/explorer-served.ts RUN [runs=3] [--json FILE]
 */
import type net from 'node:net';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { chromium } from 'playwright-core';
import { initBackend } from '../src/core/backend.js';
import { createServer } from '../src/server/app.js';
import { CHROMIUM, CHROMIUM_ARGS, timeInteractions } from '../test/chromium.fixture.js';

const args = process.argv.slice(2);
const jsonAt = args.indexOf('--json');
const jsonFile = jsonAt >= 0 ? args.splice(jsonAt, 2)[1] : null;
const run = args[0];
const runs = Number(args[1] ?? 3);
if (!run) throw new Error('usage: tsx bench/explorer-served.ts RUN [runs] [--json FILE]');
if (!CHROMIUM) throw new Error('no Chromium found (apt-get install -y chromium, or PROBSEM_CHROMIUM)');

await initBackend();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
const modes = [
  { name: 'tab, split sent', pageDataBytes: undefined as number | undefined, query: '' },
  { name: 'tab, split on the server', pageDataBytes: 0, query: '' },
  { name: 'server only (?compute=server)', pageDataBytes: undefined, query: '?compute=server' },
];
const results: Record<string, unknown>[] = [];
for (const mode of modes) {
  const srv = await createServer({ runDir: run, limits: { latentSample: 2000, ...(mode.pageDataBytes === undefined ? {} : { pageDataBytes: mode.pageDataBytes }) } });
  await srv.app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(srv.app.server.address() as net.AddressInfo).port}/`;
  const ready: number[] = [];
  const annotate: number[] = [];
  const words: number[] = [];
  const received: number[] = [];
  let info = '';
  for (let i = 0; i < runs; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await ctx.newPage();
    let bytes = 0;
    page.on('requestfinished', (r) => void r.sizes().then((s) => (bytes += s.responseBodySize)).catch(() => {}));
    const t0 = performance.now();
    await page.goto(`${base}${mode.query}`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true' && /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 120_000 });
    ready.push(performance.now() - t0);
    info = (await page.textContent('#model-info')) ?? '';
    const timed = await timeInteractions(page, 'sneaker');
    annotate.push(timed.annotateMs);
    words.push(timed.wordsMs);
    await new Promise((r) => setTimeout(r, 200));
    received.push(bytes);
    await ctx.close();
  }
  await srv.close();
  const f = (xs: number[]) => `${median(xs).toFixed(0)} ms (${xs.map((x) => x.toFixed(0)).join(', ')})`;
  process.stdout.write(`${mode.name}: first interaction ${f(ready)}; map click → annotation ${f(annotate)}; words → 8 + 8 ${f(words)}; received ${(median(received) / 1e6).toFixed(2)} MB\n  header: ${info}\n`);
  results.push({ mode: mode.name, readyMs: ready, annotateMs: annotate, wordsMs: words, receivedBytes: received, header: info });
}
await browser.close();
if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ date: new Date().toISOString(), machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version }, run, runs, results }, null, 2));
