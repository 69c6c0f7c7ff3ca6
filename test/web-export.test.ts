/**
 * `probsem export-web` in a real browser: the exported folder is served by a plain static file
 * server (no probsem behind it) and Debian's Chromium computes everything in the tab.
 * Skipped, with a message, where no Chromium is installed. Also: the exporter's refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { initBackend } from '../src/core/backend.js';
import { loadDataset } from '../src/data/registry.js';
import { encodeGridPng } from '../src/data/png.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { annotateImage, loadImageModel, trainRun } from '../src/runs/runs.js';
import { exportWeb, type ExportWebResult } from '../src/server/export-web.js';
import type { SiteManifest } from '../src/server/types.js';
import { SKIP_BROWSER as SKIP, type StaticSite, clickMapPoint, openWatchedPage, readImages, serveFolder } from './chromium.fixture.js';

if (SKIP) process.stdout.write(`${SKIP}\n`);

const root = mkdtempSync(join(tmpdir(), 'probsem-web-export-'));
const run = join(root, 'run');
const site = join(root, 'site');
const SHOTS = resolve(process.env.PROBSEM_SCREENSHOTS ?? join('reports', 'screenshots'));
let exported: ExportWebResult;
let files: StaticSite;
let base: string;
let browser: Browser;
let page: Page;
let external: string[] = [];
let pageErrors: string[] = [];

before(async () => {
  await initBackend();
  // PSE* on the shipped subset: 1000 steps (~8 s) is enough for "trouser" to retrieve trousers.
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 6, steps: 1000, batchSize: 50, lr: 1e-3, seed: 0, out: run, checkpointEvery: 0 });
  exported = await exportWeb({ runDir: run, out: site, sample: 400, maps: ['pca'] });
  if (SKIP) return;
  files = await serveFolder(site);
  base = files.url;
  ({ browser, page, external, pageErrors } = await openWatchedPage(base));
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await files?.close();
});

test('the exported folder holds the page, its script, the wasm binaries, the model, the sample and site.json', () => {
  const names = exported.files.map((f) => f.path).sort();
  for (const f of ['index.html', 'site.json', 'static/app.js', 'static/style.css', 'static/tfjs-backend-wasm-simd.wasm', 'model/model.json', 'model/weights.bin', 'sample/images.bin', 'sample/posteriors.bin']) {
    assert.ok(names.includes(f), `${f} is exported`);
  }
  assert.equal(exported.bytes, exported.files.reduce((a, f) => a + statSync(join(site, f.path)).size, 0), 'the stated size is the files on disk');
  const m = JSON.parse(readFileSync(join(site, 'site.json'), 'utf8')) as SiteManifest;
  assert.equal(m.sample!.count, 400);
  assert.equal(statSync(join(site, 'sample/images.bin')).size, 400 * 784);
  assert.equal(statSync(join(site, 'sample/posteriors.bin')).size, 400 * 6 * 2 * 4);
  assert.deepEqual(Object.keys(m.maps), ['pca']);
  assert.match(readFileSync(join(site, 'index.html'), 'utf8'), /<meta name="probsem-site" content="site.json">/);
  // The model copy is a run directory the library reads.
  assert.equal(loadImageModel(join(site, 'model')).meta.model, 'pse-star');
});

test('export-web refuses a missing run and a folder that is not empty, and leaves nothing behind', async () => {
  await assert.rejects(exportWeb({ runDir: join(root, 'nothing'), out: join(root, 'x') }), /model directory .*nothing does not exist/);
  assert.ok(!existsSync(join(root, 'x')));
  const full = join(root, 'full');
  mkdirSync(full);
  writeFileSync(join(full, 'keep.txt'), 'mine');
  await assert.rejects(exportWeb({ runDir: run, out: full }), /--out .*full is not empty/);
  assert.deepEqual(readdirSync(full), ['keep.txt']);
  await assert.rejects(exportWeb({ runDir: run, out: join(root, 'no', 'such', 'parent') }), /its parent folder .* does not exist/);
  assert.ok(!readdirSync(root).some((n) => n.includes('.tmp-')), 'no temporary folder is left');
});

test('from a static server: the page computes in the tab, annotates a dropped test image as its label, retrieves trousers, draws generated images', { skip: SKIP }, async () => {
  const t0 = Date.now();
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  await page.waitForFunction(() => /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 30_000 });
  process.stdout.write(`time to first interaction: ${Date.now() - t0} ms\n`);
  assert.match((await page.textContent('#model-info')) ?? '', /pse-star · latent 6 · 10 classes · fashion-mnist-subset \(400 of 2000 test images, 28×28\).*computed in this tab \(TensorFlow\.js, (webgl|wasm|cpu)\)/);

  // A sampled test image the model annotates correctly in Node, dropped as a PNG: the tab agrees.
  const m = JSON.parse(readFileSync(join(site, 'site.json'), 'utf8')) as SiteManifest;
  const ds = await loadDataset('fashion-mnist-subset');
  const { model, meta } = loadImageModel(run);
  const id = m.sample!.ids.find((i) => annotateImage(model, meta, imagesToFloat(ds.test, [i], 784))[0].label === meta.classNames[ds.test.labels[i]])!;
  const label = meta.classNames[ds.test.labels[id]];
  const png = encodeGridPng(imagesToFloat(ds.test, [id], 784), 1, { cols: 1, height: 28, width: 28, scale: 10, pad: 0 });
  const dt = await page.evaluateHandle((b64) => {
    const bin = atob(b64);
    const d = new DataTransfer();
    d.items.add(new File([Uint8Array.from(bin, (c) => c.charCodeAt(0))], 'test.png', { type: 'image/png' }));
    return d;
  }, png.toString('base64'));
  await page.dispatchEvent('#draw', 'drop', { dataTransfer: dt });
  await page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length === 10, undefined, { timeout: 20_000 });
  assert.equal(await page.textContent('#annotation .bar span'), label, `test image ${id} is annotated ${label}`);

  await page.fill('#words', 'trouser');
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => document.querySelectorAll('#retrieved img').length === 8 && document.querySelectorAll('#generated img').length === 8, undefined, { timeout: 20_000 });
  const captions = await page.locator('#retrieved figcaption').allTextContents();
  for (const c of captions) assert.match(c, /^Trouser · KL \d/, `retrieved: ${captions.join(', ')}`);
  // Generated images are not blank: each has bright and dark pixels.
  const spread = (await readImages(page, '#generated img')).map(({ rgba }) => {
    const grey = rgba.filter((_, i) => i % 4 === 0);
    return Math.max(...grey) - Math.min(...grey);
  });
  for (const s of spread) assert.ok(s > 100, `a generated image spans ${s} grey levels`);
  await page.screenshot({ path: join(SHOTS, 'export-0-page.png'), fullPage: true });
});

test('from a static server: the map answers the pointer, interpolation draws its strip, an unknown word is named; nothing leaves the site', { skip: SKIP }, async () => {
  await clickMapPoint(page);
  await page.fill('#interp-from', 'Trouser');
  await page.fill('#interp-to', 'bag');
  await page.press('#interp-to', 'Enter');
  await page.waitForFunction(() => {
    const img = document.getElementById('interp-strip') as HTMLImageElement;
    return /Trouser → bag/.test(document.getElementById('interp-status')?.textContent ?? '') && img.complete && img.naturalWidth === 11 * 56;
  }, undefined, { timeout: 10_000 });
  await page.fill('#words', 'purple frog');
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => /unknown words 'purple', 'frog'/.test(document.getElementById('words-status')?.textContent ?? ''), undefined, { timeout: 10_000 });
  assert.deepEqual(external, [], 'no request leaves the site');
  assert.deepEqual(pageErrors, [], 'no errors in the page');
  assert.ok(!files.served.some((p) => p.startsWith('/api/')), 'the page never asks for the server API');
  assert.ok(files.served.includes('/model/weights.bin'));
});
