/**
 * Time to first interaction of an exported explorer (`probsem export-web`) in headless Chromium:
 * from navigation to the page marked ready with its latent map drawn, in a fresh browser context
 * each time (nothing cached), per TensorFlow.js backend; then the time of one in-tab annotation
 * and one words query. Usage: tsx bench/explorer-first-interaction.ts SITE [runs=3]
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, timeInteractions, serveFolder } from '../test/chromium.fixture.js';

const site = resolve(process.argv[2] ?? '');
const runs = Number(process.argv[3] ?? 3);
if (!existsSync(join(site, 'site.json'))) throw new Error(`usage: tsx bench/explorer-first-interaction.ts SITE [runs]: ${site} has no site.json`);
if (!CHROMIUM) throw new Error('no Chromium found (apt-get install -y chromium, or PROBSEM_CHROMIUM)');
const files = await serveFolder(site);
const base = `${files.url}/`;
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const backend of ['webgl', 'wasm']) {
  const ready: number[] = [];
  const annotate: number[] = [];
  const words: number[] = [];
  for (let i = 0; i < runs; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await ctx.newPage();
    const t0 = performance.now();
    await page.goto(`${base}?backend=${backend}`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true' && /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 60_000 });
    ready.push(performance.now() - t0);
    const info = (await page.textContent('#model-info')) ?? '';
    if (!info.includes(`TensorFlow.js, ${backend}`)) throw new Error(`asked for ${backend}, the page says: ${info}`);
    const timed = await timeInteractions(page, 'sneaker');
    annotate.push(timed.annotateMs);
    words.push(timed.wordsMs);
    await ctx.close();
  }
  const f = (xs: number[]) => `${median(xs).toFixed(0)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`;
  process.stdout.write(`${backend}: first interaction ${f(ready)}; map click → annotation ${f(annotate)}; words → 8 generated + 8 retrieved ${f(words)}\n`);
}
await browser.close();
await files.close();
