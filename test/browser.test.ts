/**
 * The explorer page in a real browser: Debian's Chromium driven by playwright-core. Skipped, with
 * a message, where no Chromium is installed (`apt-get install -y chromium`; .ci/run installs it).
 * Screenshots go to reports/screenshots/ (or $PROBSEM_SCREENSHOTS) and their paths are printed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { SKIP_BROWSER as SKIP, mapPoint as mapPointOf, openWatchedPage } from './chromium.fixture.js';
import { join, resolve } from 'node:path';
import type net from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { createServer, type ProbsemServer } from '../src/server/app.js';
import { trainTinyRun } from './server.fixture.js';
import { JPEG_GREY_56 } from './server.jpegs.js';

if (SKIP) process.stdout.write(`${SKIP}\n`);

const SHOTS = resolve(process.env.PROBSEM_SCREENSHOTS ?? join('reports', 'screenshots'));
let srv: ProbsemServer;
let base: string;
let browser: Browser;
let run: string;
let page: Page;
let external: string[] = [];
let pageErrors: string[] = [];

before(async () => {
  if (SKIP) return;
  run = await trainTinyRun(300);
  srv = await createServer({ runDir: run, limits: { latentSample: 600 } });
  await srv.app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(srv.app.server.address() as net.AddressInfo).port}`;
  // The unknown-word test's 400 answers are expected; the browser logs them as failed loads.
  ({ browser, page, external, pageErrors } = await openWatchedPage(base, { expectedConsole: /status of 400 \(Bad Request\)/, args: ['--disable-gpu'] }));
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await srv?.close();
});

async function shot(name: string, what: 'page' | string = 'page'): Promise<string> {
  const file = join(SHOTS, name);
  if (what === 'page') await page.screenshot({ path: file, fullPage: true });
  else await page.locator(what).screenshot({ path: file });
  process.stdout.write(`screenshot: ${file}\n`);
  return file;
}

/** Every <img> under the selector has loaded with a real size. */
async function imagesLoaded(selector: string, count: number): Promise<void> {
  await page.waitForFunction(
    ([sel, n]) => {
      const imgs = [...document.querySelectorAll<HTMLImageElement>(`${sel} img`)];
      return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
    },
    [selector, count] as const,
    { timeout: 20_000 },
  );
}

const mapPoint = () => mapPointOf(page);

test('the explorer loads, draws the latent map, and hovering/clicking a point shows its image, reconstruction and annotation', { skip: SKIP }, async () => {
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  assert.match(await page.textContent('#model-info') ?? '', /pse-star · latent 6 · 10 classes · fashion-mnist-subset/);
  await page.waitForFunction(() => /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 20_000 });
  const pt = await mapPoint();
  assert.ok(pt, 'the map has points');
  const box = (await page.locator('#map').boundingBox())!;
  await page.mouse.move(box.x + pt.x + 1, box.y + pt.y + 1);
  await page.waitForSelector('#tooltip:not([hidden]) img', { timeout: 10_000 });
  await imagesLoaded('#tooltip', 1);
  assert.match(await page.textContent('#tooltip') ?? '', /#\d+ \S/);
  await shot('1-latent-hover.png', '#map-section');
  await page.mouse.click(box.x + pt.x + 1, box.y + pt.y + 1);
  await page.waitForSelector('#detail:not([hidden])');
  await page.waitForFunction(() => document.querySelectorAll('#detail-bars .bar').length === 5);
  await imagesLoaded('#detail', 2);
  await shot('2-latent-click.png', '#map-section');
});

test('typing words shows generated and retrieved images side by side; an unknown word is named', { skip: SKIP }, async () => {
  await page.fill('#words', 'sneaker');
  await page.press('#words', 'Enter');
  await imagesLoaded('#generated', 8);
  await imagesLoaded('#retrieved', 8);
  assert.match(await page.textContent('#words-status') ?? '', /query: Sneaker/);
  const captions = await page.locator('#retrieved figcaption').allTextContents();
  assert.equal(captions.length, 8);
  for (const c of captions) assert.match(c, /· KL \d/);
  await shot('3-words.png', '#words-section');
  await page.fill('#words', 'purple frog');
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => /purple/.test(document.getElementById('words-status')?.textContent ?? ''));
  assert.match(await page.textContent('#words-status') ?? '', /unknown words 'purple', 'frog'/);
  assert.equal(await page.locator('#generated img').count(), 0);
  await page.fill('#words', 'ankle boot, bag');
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => /Ankle boot \+ Bag/.test(document.getElementById('words-status')?.textContent ?? ''));
  await imagesLoaded('#retrieved', 8);
});

/** Drops a file on the drawing square as a user would (a DataTransfer carrying a File). */
async function dropFile(bytes: Buffer, name: string, type: string): Promise<void> {
  const dt = await page.evaluateHandle(
    ([b64, n, t]) => {
      const bin = atob(b64);
      const arr = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) arr[i] = bin.charCodeAt(i);
      const d = new DataTransfer();
      d.items.add(new File([arr], n, { type: t }));
      return d;
    },
    [bytes.toString('base64'), name, type] as const,
  );
  await page.dispatchEvent('#draw', 'dragover', { dataTransfer: dt });
  await page.dispatchEvent('#draw', 'drop', { dataTransfer: dt });
}

async function bars(): Promise<{ label: string; pct: number }[]> {
  return page.$$eval('#annotation .bar', (rows) =>
    rows.map((r) => ({ label: r.querySelector('span')!.textContent!, pct: parseFloat(r.querySelector('.pct')!.textContent!) })),
  );
}

test('dropping a PNG or a JPEG shows annotation bars; drawing updates them', { skip: SKIP }, async () => {
  // Test image 0 at 4×, as a user's PNG file.
  const png = Buffer.from(await (await fetch(`${base}/api/images/0?scale=4`)).arrayBuffer());
  const want = (await (await fetch(`${base}/api/annotate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":0}' })).json()) as { labels: { label: string }[] };
  await page.locator('#annotate-section').scrollIntoViewIfNeeded();
  await dropFile(png, 'picture.png', 'image/png');
  await page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length === 10, undefined, { timeout: 10_000 });
  const b = await bars();
  assert.equal(b[0].label, want.labels[0].label, 'the dropped picture is annotated like the stored image');
  assert.ok(Math.abs(b.reduce((s, x) => s + x.pct, 0) - 100) < 1, 'bars sum to 100 %');
  assert.equal(await page.isChecked('#invert'), false, 'a dark picture is not inverted');
  await shot('4-annotate-drop.png', '#annotate-section');

  await page.click('#clear');
  assert.equal(await page.locator('#annotation .bar').count(), 0);
  await dropFile(Buffer.from(JPEG_GREY_56, 'base64'), 'picture.jpg', 'image/jpeg');
  await page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length === 10, undefined, { timeout: 10_000 });

  // Draw a stroke: the bars are recomputed for the drawing.
  await page.click('#clear');
  const box = (await page.locator('#draw').boundingBox())!;
  await page.mouse.move(box.x + 140, box.y + 40);
  await page.mouse.down();
  for (let y = 40; y <= 240; y += 20) await page.mouse.move(box.x + 140 + (y > 140 ? 40 : 0), box.y + y);
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length === 10, undefined, { timeout: 10_000 });
  await shot('5-annotate-draw.png', '#annotate-section');
});

test('the interpolation slider shows frames between two typed words; no request leaves the server and the page logs no errors', { skip: SKIP }, async () => {
  // Free text with the classes offered as suggestions; a near miss is named in the section.
  assert.equal(await page.locator('#interp-classes option').count(), 10);
  await page.fill('#interp-from', 'trousr');
  await page.press('#interp-from', 'Enter');
  await page.waitForFunction(() => /did you mean 'trouser'/.test(document.getElementById('interp-status')?.textContent ?? ''), undefined, { timeout: 10_000 });
  await page.fill('#interp-from', 'Trouser');
  await page.fill('#interp-to', 'bag');
  await page.press('#interp-to', 'Enter');
  await page.waitForFunction(() => /Trouser → bag/.test(document.getElementById('interp-status')?.textContent ?? ''), undefined, { timeout: 10_000 });
  await page.waitForFunction(() => {
    const img = document.getElementById('interp-strip') as HTMLImageElement;
    return img.complete && img.naturalWidth === 11 * 56;
  }, undefined, { timeout: 10_000 });
  const frameAt = async (v: string) => {
    await page.locator('#interp-slider').fill(v);
    return page.evaluate(() => (document.getElementById('interp-frame') as HTMLCanvasElement).toDataURL());
  };
  const first = await frameAt('0');
  const last = await frameAt('10');
  assert.notEqual(first, last, 'the frame follows the slider');
  await frameAt('5');
  await shot('6-interpolate.png', '#interp-section');
  await shot('0-explorer.png');
  assert.deepEqual(external, [], 'no requests to other hosts');
  assert.deepEqual(pageErrors, [], 'no errors in the page');
});

test('at 400 px wide the page fits without sideways scrolling, and the shrunken map still answers the pointer', { skip: SKIP }, async () => {
  await page.setViewportSize({ width: 400, height: 900 });
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
  await page.waitForFunction(() => /test images/.test(document.getElementById('map-status')?.textContent ?? ''), undefined, { timeout: 20_000 });
  await imagesLoaded('#interp-section', 1);
  const width = await page.evaluate(() => document.scrollingElement!.scrollWidth);
  assert.ok(width <= 400, `the page is ${width} px wide at a 400 px viewport`);
  // The map is drawn on 520 units and shown smaller: a point found in canvas units is hit on screen.
  const pt = await mapPoint();
  assert.ok(pt, 'the map has points');
  const box = (await page.locator('#map').boundingBox())!;
  assert.ok(box.width < 400, `the map shrank to ${box.width} px`);
  await page.mouse.move(box.x + pt.x + 1, box.y + pt.y + 1);
  await page.waitForSelector('#tooltip:not([hidden]) img', { timeout: 10_000 });
  assert.ok(await page.evaluate(() => document.scrollingElement!.scrollWidth) <= 400, 'the tooltip stays inside the page');
  const icon = await page.getAttribute('link[rel="icon"]', 'href');
  assert.match(icon ?? '', /^data:image\/svg\+xml,/, 'the page has a favicon');
  await shot('7-narrow.png');
  await page.setViewportSize({ width: 1280, height: 1000 });
  assert.deepEqual(pageErrors, [], 'no errors in the page');
});

test('a server with a token: the page opened as /#token=… keeps it in a cookie and works; without it the API refuses', { skip: SKIP }, async () => {
  const guarded = await createServer({ runDir: run, limits: { latentSample: 100, maxConcurrent: 1 }, token: 'page-token-0123456789' });
  await guarded.app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(guarded.app.server.address() as net.AddressInfo).port}`;
  const p = await browser.newPage();
  try {
    await p.goto(`${url}/#token=page-token-0123456789`);
    await p.waitForSelector('body[data-ready="true"]', { timeout: 20_000 });
    assert.match((await p.textContent('#model-info')) ?? '', /pse-star · latent 6/);
    assert.equal(await p.evaluate(() => location.hash), '', 'the token left the address bar');
    // An <img> (no headers of its own) loads through the cookie.
    const size = await p.evaluate(async (u) => {
      const img = new Image();
      img.src = `${u}/api/images/3`;
      await img.decode();
      return img.naturalWidth;
    }, url);
    assert.equal(size, 28);
    assert.equal((await fetch(`${url}/api/model`)).status, 401);
  } finally {
    await p.close();
    await guarded.close();
  }
});
