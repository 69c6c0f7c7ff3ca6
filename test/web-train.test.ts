/**
 * In-tab training in a real browser: a site exported by `probsem export-web` is served by a plain
 * static server, and Debian's Chromium trains a PSE* in the page's worker on probsem's wasm
 * kernels. Checked: the loss falls, the page switches to the trained model (which annotates a
 * test image as the CLI's copy of it does), the downloaded run is a ZIP the CLI loads, and no
 * request leaves the site. Skipped, with a message, where no Chromium is installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { initBackend } from '../src/core/backend.js';
import { readZip } from '../src/core/zip.js';
import { loadDataset } from '../src/data/registry.js';
import { encodeGridPng } from '../src/data/png.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { annotateImage, loadImageModel, trainRun } from '../src/runs/runs.js';
import { exportWeb, type ExportWebResult } from '../src/server/export-web.js';
import type { SiteManifest } from '../src/server/types.js';
import { SKIP_BROWSER as SKIP, type StaticSite, openWatchedPage, serveFolder } from './chromium.fixture.js';

if (SKIP) process.stdout.write(`${SKIP}\n`);

const root = mkdtempSync(join(tmpdir(), 'probsem-web-train-'));
const run = join(root, 'run');
const site = join(root, 'site');
const SHOTS = resolve(process.env.PROBSEM_SCREENSHOTS ?? join('reports', 'screenshots'));
const STEPS = 200;
let exported: ExportWebResult;
let files: StaticSite;
let browser: Browser;
let page: Page;
let external: string[] = [];
let pageErrors: string[] = [];

before(async () => {
  await initBackend();
  // Any Fashion-MNIST run will do: the site's own model is not what this test trains.
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 4, steps: 20, batchSize: 50, lr: 1e-3, seed: 0, out: run, checkpointEvery: 0 });
  exported = await exportWeb({ runDir: run, out: site, sample: 300, maps: ['pca'] });
  if (SKIP) return;
  files = await serveFolder(site);
  ({ browser, page, external, pageErrors } = await openWatchedPage(files.url));
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await files?.close();
});

test('export-web ships the Fashion-MNIST subset and the training worker; --no-train leaves them out', async () => {
  const m = JSON.parse(readFileSync(join(site, 'site.json'), 'utf8')) as SiteManifest;
  assert.ok(m.train, 'site.json describes the training data');
  const added = exported.files.filter((f) => f.path.startsWith('train/') || f.path === 'static/train-worker.js');
  assert.equal(added.length, 5);
  for (const f of added) assert.equal(statSync(join(site, f.path)).size, f.bytes);
  process.stdout.write(`in-tab training adds ${(added.reduce((a, f) => a + f.bytes, 0) / 1e6).toFixed(2)} MB\n`);
  const bare = await exportWeb({ runDir: run, out: join(root, 'bare'), sample: 50, maps: ['pca'], train: false });
  assert.ok(!bare.files.some((f) => f.path.startsWith('train/') || f.path.includes('train-worker')));
  assert.equal((JSON.parse(readFileSync(join(root, 'bare', 'site.json'), 'utf8')) as SiteManifest).train, null);
});

test('in the tab: training lowers the loss, the page explores the trained model, the run downloads as a ZIP the CLI loads', { skip: SKIP }, async () => {
  await page.goto(`${files.url}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  await page.waitForSelector('#train-section:not([hidden])');
  await page.fill('#train-steps', String(STEPS));
  await page.fill('#train-latent', '6');
  const t0 = Date.now();
  await page.click('#train-start');
  await page.waitForSelector('#train-section[data-state="done"], #train-section[data-state="error"]', { timeout: 60_000 });
  const d: Record<string, string | undefined> = await page.evaluate(() => ({ ...document.getElementById('train-section')!.dataset, status: document.getElementById('train-status')!.textContent ?? '' }));
  assert.equal(d.state, 'done', `training failed: ${d.status}`);
  process.stdout.write(`trained ${d.step} steps in the tab in ${Date.now() - t0} ms (${Number(d.msPerStep).toFixed(1)} ms/step; loss ${Number(d.firstLoss).toFixed(1)} → ${Number(d.lastLoss).toFixed(1)})\n`);
  assert.equal(Number(d.step), STEPS);
  assert.ok(Number(d.lastLoss) < 0.7 * Number(d.firstLoss), `the loss fell: ${d.firstLoss} → ${d.lastLoss}`);
  await page.locator('#train-section').screenshot({ path: join(SHOTS, 'explorer-train.png') });

  // The download: a ZIP holding model.json, weights.bin and train.jsonl, which the CLI loads.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
  const zipPath = join(root, download.suggestedFilename());
  await download.saveAs(zipPath);
  assert.match(download.suggestedFilename(), /^pse-star-6d-s0-tab\.zip$/);
  const names = readZip(readFileSync(zipPath), zipPath).map((e) => e.name).sort();
  assert.deepEqual(names, ['pse-star-6d-s0-tab/model.json', 'pse-star-6d-s0-tab/train.jsonl', 'pse-star-6d-s0-tab/weights.bin']);
  const { model, meta } = loadImageModel(zipPath);
  assert.equal(meta.training?.steps, STEPS);
  assert.equal(model.latentDim, 6);

  // Switch the page to the trained model; a test image dropped on the drawing area is annotated as
  // the CLI's copy of the model annotates it (a plausible label: one it gets right).
  await page.click('#train-use');
  await page.waitForFunction(() => /trained in this tab \(200 steps\)/.test(document.getElementById('model-info')?.textContent ?? ''), undefined, { timeout: 20_000 });
  await page.waitForFunction(() => /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 20_000 });
  const ds = await loadDataset('fashion-mnist-subset');
  const m = JSON.parse(readFileSync(join(site, 'site.json'), 'utf8')) as SiteManifest;
  const id = m.sample!.ids.find((i) => annotateImage(model, meta, imagesToFloat(ds.test, [i], 784))[0].label === meta.classNames[ds.test.labels[i]]);
  assert.ok(id !== undefined, 'the trained model annotates some sampled test image correctly');
  const label = meta.classNames[ds.test.labels[id]];
  const png = encodeGridPng(imagesToFloat(ds.test, [id], 784), 1, { cols: 1, height: 28, width: 28, scale: 10, pad: 0 });
  const dt = await page.evaluateHandle((b64) => {
    const bin = atob(b64);
    const t = new DataTransfer();
    t.items.add(new File([Uint8Array.from(bin, (c) => c.charCodeAt(0))], 'test.png', { type: 'image/png' }));
    return t;
  }, png.toString('base64'));
  await page.dispatchEvent('#draw', 'drop', { dataTransfer: dt });
  await page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length === 10, undefined, { timeout: 20_000 });
  assert.equal(await page.textContent('#annotation .bar span'), label, `test image ${id} is annotated ${label} by the trained model`);
  model.params.dispose();

  assert.deepEqual(external, [], 'no request leaves the site');
  assert.deepEqual(pageErrors, [], 'no errors in the page');
  for (const f of ['/static/train-worker.js', '/train/train-images-idx3-ubyte.gz']) assert.ok(files.served.includes(f), `${f} was fetched from the site`);
});

test('in the tab: Stop ends training early with a run of the steps taken', { skip: SKIP }, async () => {
  await page.fill('#train-steps', '100000');
  await page.click('#train-start');
  await page.waitForFunction(() => Number(document.getElementById('train-section')!.dataset.step ?? 0) >= 20 && document.getElementById('train-section')!.dataset.state === 'running', undefined, { timeout: 30_000 });
  assert.equal(await page.isEnabled('#train-use'), false, 'the previous model cannot be switched to while training');
  await page.click('#train-stop');
  await page.waitForSelector('#train-section[data-state="done"]', { timeout: 30_000 });
  const step = Number(await page.getAttribute('#train-section', 'data-step'));
  assert.ok(step >= 20 && step < 1000, `stopped at step ${step}`);
  assert.match((await page.textContent('#train-status')) ?? '', new RegExp(`^trained ${step} steps`));
  assert.ok(await page.isVisible('#train-download'));
  // Stopped while the data are still loading: no model, and the reason.
  await page.click('#train-start');
  await page.click('#train-stop');
  await page.waitForSelector('#train-section[data-state="error"]', { timeout: 30_000 });
  assert.match((await page.textContent('#train-status')) ?? '', /stopped before the first step/);
  // Bad settings are refused with the reason, before any worker starts.
  await page.fill('#train-latent', '0');
  await page.click('#train-start');
  assert.match((await page.textContent('#train-status')) ?? '', /Latent must be a whole number from 1 to 64/);
  assert.deepEqual(pageErrors, [], 'no errors in the page');
});
