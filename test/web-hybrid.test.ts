/**
 * One page, two homes: under `probsem serve` the explorer runs the model in the tab from the
 * server's /api/site (the export's format) and asks the server only for what needs its data — the
 * latent maps always, the test images and search when the split is larger than --page-data.
 * The manifest and its files are checked without a browser; the page in Debian's Chromium (skipped,
 * with a message, where none is installed).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/core/backend.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { encodeGridPng } from '../src/data/png.js';
import { modelContentSha256, type ModelFile } from '../src/models/persist.js';
import { annotateImage, trainRun } from '../src/runs/runs.js';
import { createServer, type ProbsemServer } from '../src/server/app.js';
import type { SiteManifest } from '../src/server/types.js';
import { SKIP_BROWSER as SKIP, type WatchedPage, clickMapPoint, openWatchedPage, readImages } from './chromium.fixture.js';

if (SKIP) process.stdout.write(`${SKIP}\n`);

const root = mkdtempSync(join(tmpdir(), 'probsem-web-hybrid-'));
const run = join(root, 'run');
const TOKEN = 'hybrid-test-token-0123456789';
/** The split sent to the page; the split kept on the server (--page-data 0); and a server with a token. */
let withSplit: ProbsemServer;
let noSplit: ProbsemServer;
let guarded: ProbsemServer;
const urls = new Map<ProbsemServer, string>();

async function start(o: Parameters<typeof createServer>[0]): Promise<ProbsemServer> {
  const s = await createServer(o);
  await s.app.listen({ port: 0, host: '127.0.0.1' });
  urls.set(s, `http://127.0.0.1:${(s.app.server.address() as net.AddressInfo).port}`);
  return s;
}

before(async () => {
  await initBackend();
  // As test/web-export.test.ts: 1000 steps (~8 s) is enough for "trouser" to retrieve trousers.
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 6, steps: 1000, batchSize: 50, lr: 1e-3, seed: 0, out: run, checkpointEvery: 0 });
  withSplit = await start({ runDir: run, limits: { latentSample: 300, maxConcurrent: 1 } });
  noSplit = await start({ runDir: run, limits: { latentSample: 300, maxConcurrent: 1, pageDataBytes: 0 } });
  guarded = await start({ runDir: run, limits: { latentSample: 300, maxConcurrent: 1 }, token: TOKEN });
});

after(async () => {
  for (const s of [withSplit, noSplit, guarded]) await s?.close();
  rmSync(root, { recursive: true, force: true });
});

async function get(s: ProbsemServer, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${urls.get(s)}${path}`, { headers });
}

test('/api/site: the model, its weights and the whole test split in the export format, each file checked', async () => {
  const m = (await (await get(withSplit, '/api/site')).json()) as SiteManifest;
  assert.equal(m.format, 'probsem-site');
  assert.equal(m.served, true);
  const test = withSplit.service.dataset.test;
  assert.equal(m.dataset.testImages, 2000);
  assert.ok(m.sample, 'a 2000-image split fits the default 32 MiB');
  assert.equal(m.sample.count, test.count);
  assert.deepEqual(m.sample.ids.slice(0, 3), [0, 1, 2]);
  assert.deepEqual(m.sample.labels, Array.from(test.labels));
  assert.deepEqual(m.maps, {}, 'the maps come from /api/latent');
  assert.equal(m.words, null, 'a one-hot run ships no words');

  const meta = (await (await get(withSplit, `/${m.model.json}`)).json()) as ModelFile;
  assert.equal(modelContentSha256(meta), meta.contentSha256, 'model.json is intact');
  const weights = new Uint8Array(await (await get(withSplit, `/${m.model.weights}`)).arrayBuffer());
  assert.equal(weights.byteLength, meta.weights.bytes);
  assert.equal(createHash('sha256').update(weights).digest('hex'), meta.weights.sha256);

  const images = new Uint8Array(await (await get(withSplit, `/${m.sample.images}`)).arrayBuffer());
  assert.deepEqual(images, test.images.subarray(0, test.count * 784));
  const post = await (await get(withSplit, `/${m.sample.posteriors}`)).arrayBuffer();
  const g = withSplit.service.index.itemGaussians();
  assert.equal(g.kind, 'diag');
  const f = new Float32Array(post);
  assert.deepEqual(f.subarray(0, test.count * 6), g.mean);
  if (g.kind === 'diag') assert.deepEqual(f.subarray(test.count * 6), g.variance);

  // Revalidation, and names outside the site.
  const first = await get(withSplit, `/${m.model.weights}`);
  const etag = first.headers.get('etag')!;
  assert.ok(etag);
  assert.equal((await get(withSplit, `/${m.model.weights}`, { 'if-none-match': etag })).status, 304);
  assert.equal((await get(withSplit, '/api/site/nothing.bin')).status, 404);
  assert.equal((await get(withSplit, '/api/site/..%2fmodel.json')).status, 400);
});

test('--page-data 0 keeps the split on the server; a token guards the site like the rest of /api', async () => {
  const m = (await (await get(noSplit, '/api/site')).json()) as SiteManifest;
  assert.equal(m.sample, null);
  assert.equal((await get(noSplit, '/api/site/images.bin')).status, 404);
  assert.equal((await get(noSplit, `/${m.model.weights}`)).status, 200, 'the model still goes to the page');
  assert.equal((await get(guarded, '/api/site')).status, 401);
  assert.equal((await get(guarded, '/api/site/model.json')).status, 401);
  assert.equal((await get(guarded, '/api/site', { authorization: `Bearer ${TOKEN}` })).status, 200);
});

test('the page may compile WebAssembly, and the server sends TensorFlow.js its wasm binaries', async () => {
  const html = await get(withSplit, '/');
  assert.match(html.headers.get('content-security-policy') ?? '', /script-src 'self' 'wasm-unsafe-eval';/);
  const wasm = await get(withSplit, '/static/tfjs-backend-wasm-simd.wasm');
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  assert.ok(WebAssembly.validate(new Uint8Array(await wasm.arrayBuffer())));
});

// ------------------------------------------------------------------ the page in Chromium

/** The page with every /api path it asks for recorded. */
async function openPage(s: ProbsemServer, query = ''): Promise<WatchedPage & { api: string[] }> {
  // An unknown word is answered 400 by the server, which the browser logs as a failed load.
  const w = await openWatchedPage(urls.get(s)!, { expectedConsole: /status of 400 \(Bad Request\)/ });
  const api: string[] = [];
  w.page.on('request', (r) => {
    const p = new URL(r.url()).pathname;
    if (p.startsWith('/api/')) api.push(p);
  });
  await w.page.goto(`${urls.get(s)}/${query}`);
  await w.page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
  await w.page.waitForFunction(() => /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 60_000 });
  return { ...w, api };
}

/**
 * A test image the model annotates correctly and confidently in Node (the canvas's resampling of a
 * borderline one may tip it), dropped on the drawing area as a PNG; the label shown.
 */
async function dropKnownImage(w: WatchedPage, s: ProbsemServer): Promise<{ shown: string; expected: string }> {
  const { model, meta, dataset } = s.service;
  const id = [...Array(dataset.test.count).keys()].find((i) => {
    const top = annotateImage(model, meta, imagesToFloat(dataset.test, [i], 784))[0];
    return top.label === meta.classNames[dataset.test.labels[i]] && top.probability > 0.9;
  })!;
  const png = encodeGridPng(imagesToFloat(dataset.test, [id], 784), 1, { cols: 1, height: 28, width: 28, scale: 10, pad: 0 });
  const dt = await w.page.evaluateHandle((b64) => {
    const bin = atob(b64);
    const d = new DataTransfer();
    d.items.add(new File([Uint8Array.from(bin, (c) => c.charCodeAt(0))], 'test.png', { type: 'image/png' }));
    return d;
  }, png.toString('base64'));
  await w.page.evaluate(() => document.getElementById('annotation')!.replaceChildren());
  await w.page.dispatchEvent('#draw', 'drop', { dataTransfer: dt });
  await w.page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length === 10, undefined, { timeout: 20_000 });
  return { shown: (await w.page.textContent('#annotation .bar span')) ?? '', expected: meta.classNames[dataset.test.labels[id]] };
}

async function searchWords(w: WatchedPage, words: string): Promise<{ captions: string[]; spread: number[] }> {
  await w.page.evaluate(() => document.getElementById('retrieved')!.replaceChildren());
  await w.page.fill('#words', words);
  await w.page.press('#words', 'Enter');
  await w.page.waitForFunction(() => document.querySelectorAll('#retrieved img').length === 8 && document.querySelectorAll('#generated img').length === 8, undefined, { timeout: 20_000 });
  const captions = await w.page.locator('#retrieved figcaption').allTextContents();
  const spread = (await readImages(w.page, '#generated img')).map(({ rgba }) => {
    const grey = rgba.filter((_, i) => i % 4 === 0);
    return Math.max(...grey) - Math.min(...grey);
  });
  return { captions, spread };
}

const MODEL_CALLS = /^\/api\/(annotate|generate|retrieve|similar|interpolate|images)/;

test('served with its split: the tab annotates, searches, generates and interpolates; the server only maps; the weights come from the cache on reload', { skip: SKIP }, async () => {
  const t0 = Date.now();
  const w = await openPage(withSplit);
  process.stdout.write(`served page, time to first interaction: ${Date.now() - t0} ms\n`);
  try {
    assert.match((await w.page.textContent('#model-info')) ?? '', /2000 test images.*computed in this tab \(TensorFlow\.js, wasm\); latent maps by the probsem server/);
    const a = await dropKnownImage(w, withSplit);
    assert.equal(a.shown, a.expected);
    const r = await searchWords(w, 'trouser');
    for (const c of r.captions) assert.match(c, /^Trouser · KL \d/, `retrieved: ${r.captions.join(', ')}`);
    for (const s of r.spread) assert.ok(s > 100, `a generated image spans ${s} grey levels`);
    // The tab's search ranks the server's posteriors by the same exact KL: the same KL values, to the shown digit.
    const server = withSplit.service.retrieve(['trouser'], 8);
    assert.deepEqual(r.captions.map((c) => c.split(' · KL ')[1]), server.results.map((h) => h.kl.toFixed(1)));
    await clickMapPoint(w.page);
    await w.page.fill('#interp-from', 'Trouser');
    await w.page.fill('#interp-to', 'bag');
    await w.page.press('#interp-to', 'Enter');
    await w.page.waitForFunction(() => /Trouser → bag/.test(document.getElementById('interp-status')?.textContent ?? ''), undefined, { timeout: 10_000 });
    assert.deepEqual(w.api.filter((p) => MODEL_CALLS.test(p)), [], 'no model call went to the server');
    assert.ok(w.api.includes('/api/latent'), 'the map came from the server');
    assert.equal(w.api.filter((p) => /^\/api\/site\/weights-/.test(p)).length, 1);

    // A word the tab cannot take is asked of the server, which names it.
    await w.page.fill('#words', 'purple frog');
    await w.page.press('#words', 'Enter');
    await w.page.waitForFunction(() => /unknown words 'purple', 'frog'/.test(document.getElementById('words-status')?.textContent ?? ''), undefined, { timeout: 10_000 });

    w.api.length = 0;
    await w.page.reload();
    await w.page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    assert.ok(w.api.includes('/api/site'));
    assert.deepEqual(w.api.filter((p) => /^\/api\/site\/weights-/.test(p)), [], 'the weights came from the Cache Storage');
    assert.equal(await w.page.textContent('#annotation'), '');
    const again = await dropKnownImage(w, withSplit);
    assert.equal(again.shown, again.expected, 'the cached weights give the same model');
    assert.deepEqual(w.external, []);
    assert.deepEqual(w.pageErrors, []);
  } finally {
    await w.browser.close();
  }
});

test('served without its split (--page-data 0): the tab still annotates and generates; search and stored images go to the server', { skip: SKIP }, async () => {
  const w = await openPage(noSplit);
  try {
    assert.match((await w.page.textContent('#model-info')) ?? '', /computed in this tab \(TensorFlow\.js, wasm\); latent maps, test images and search by the probsem server/);
    const a = await dropKnownImage(w, noSplit);
    assert.equal(a.shown, a.expected);
    const r = await searchWords(w, 'trouser');
    for (const c of r.captions) assert.match(c, /^Trouser · KL \d/);
    for (const s of r.spread) assert.ok(s > 100);
    await clickMapPoint(w.page);
    const calls = w.api.filter((p) => MODEL_CALLS.test(p));
    assert.ok(calls.includes('/api/retrieve'), `the search went to the server: ${calls.join(', ')}`);
    assert.ok(calls.includes('/api/annotate'), 'the clicked test image was annotated by the server');
    assert.ok(!calls.includes('/api/generate'), 'generation stayed in the tab');
    assert.deepEqual(w.external, []);
    assert.deepEqual(w.pageErrors, []);
  } finally {
    await w.browser.close();
  }
});

test('?compute=server: the same page with every computation on the server', { skip: SKIP }, async () => {
  const w = await openPage(withSplit, '?compute=server');
  try {
    assert.match((await w.page.textContent('#model-info')) ?? '', /computed by the probsem server$/);
    const r = await searchWords(w, 'trouser');
    for (const c of r.captions) assert.match(c, /^Trouser · KL \d/);
    assert.ok(w.api.includes('/api/generate') && w.api.includes('/api/retrieve'));
    assert.ok(!w.api.includes('/api/site'), 'the site is not downloaded');
  } finally {
    await w.browser.close();
  }
});
