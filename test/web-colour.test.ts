/**
 * The explorer on a colour run whose images are not square (16×24 RGB), in both homes: exported
 * and served from a static file server, and under `probsem serve`. Skipped, with a message, where
 * no Chromium is installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type net from 'node:net';
import sharp from 'sharp';
import { initBackend } from '../src/core/backend.js';
import { Rng } from '../src/core/random.js';
import { trainRun } from '../src/runs/runs.js';
import { exportWeb } from '../src/server/export-web.js';
import { createServer, type ProbsemServer } from '../src/server/app.js';
import { SKIP_BROWSER as SKIP, type StaticSite, type WatchedPage, openWatchedPage, readImages, serveFolder } from './chromium.fixture.js';

if (SKIP) process.stdout.write(`${SKIP}\n`);

const root = mkdtempSync(join(tmpdir(), 'probsem-web-colour-'));
const PICS = join(root, 'pics');
const run = join(root, 'run');
const site = join(root, 'site');
const COLOURS: [string, [number, number, number]][] = [['red', [220, 40, 40]], ['green', [40, 170, 60]], ['blue', [40, 70, 230]]];
let files: StaticSite;
let srv: ProbsemServer;
let w: WatchedPage;

/** A rectangle of the colour at a random place on white, 16 high and 24 wide. */
function picture(rgb: [number, number, number], rng: Rng): Promise<Buffer> {
  const [H, W] = [16, 24];
  const px = Buffer.alloc(H * W * 3, 255);
  const [h, wd] = [6 + Math.floor(rng.uniform() * 6), 8 + Math.floor(rng.uniform() * 10)];
  const [y0, x0] = [Math.floor(rng.uniform() * (H - h)), Math.floor(rng.uniform() * (W - wd))];
  for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + wd; x++) for (let c = 0; c < 3; c++) px[(y * W + x) * 3 + c] = rgb[c];
  return sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}

before(async () => {
  await initBackend();
  process.env.PROBSEM_CACHE = join(root, 'cache');
  const rng = new Rng(3);
  for (const [name, rgb] of COLOURS) {
    mkdirSync(join(PICS, name), { recursive: true });
    for (let k = 0; k < 30; k++) await sharp(await picture(rgb, rng)).toFile(join(PICS, name, `${k}.png`));
  }
  const dataset = `folder:${PICS}?size=16x24&channels=3`;
  await trainRun({ model: 'pse-star', dataset, latent: 4, steps: 500, batchSize: 16, lr: 1e-3, seed: 0, out: run, checkpointEvery: 0 });
  await exportWeb({ runDir: run, out: site, maps: ['pca'] });
  if (SKIP) return;
  files = await serveFolder(site);
  srv = await createServer({ runDir: run, limits: { latentSample: 100 } });
  await srv.app.listen({ port: 0, host: '127.0.0.1' });
});

after(async () => {
  await w?.browser.close();
  await files?.close();
  await srv?.close();
  delete process.env.PROBSEM_CACHE;
  rmSync(root, { recursive: true, force: true });
});

/** Mean r, g, b of an <img>'s pixels that are not white, and its natural size. */
async function colourOf(selector: string) {
  return (await readImages(w.page, selector)).map(({ width, height, rgba: d }) => {
    const sum = [0, 0, 0];
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] + d[i + 1] + d[i + 2] > 600) continue;
      for (let j = 0; j < 3; j++) sum[j] += d[i + j];
      n++;
    }
    return { rgb: sum.map((s) => s / Math.max(1, n)), width, height };
  });
}

async function checkHome(url: string, home: RegExp, query = ''): Promise<void> {
  w ??= await openWatchedPage(url);
  if (!w.page.url().startsWith(url)) {
    await w.browser.close();
    w = await openWatchedPage(url);
  }
  await w.page.goto(url + '/' + query);
  await w.page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  assert.match((await w.page.textContent('#model-info')) ?? '', /3 classes .*16×24 RGB/);
  assert.match((await w.page.textContent('#model-info')) ?? '', home);
  // The drawing area has the images' shape.
  const draw = (await w.page.locator('#draw').boundingBox())!;
  assert.ok(Math.abs(draw.width / draw.height - 1.5) < 0.05, `the drawing area is ${draw.width}×${draw.height}`);
  for (const [name, rgb] of COLOURS) {
    await w.page.fill('#words', name);
    await w.page.press('#words', 'Enter');
    await w.page.waitForFunction((q) => new RegExp(`query: ${q}`).test(document.getElementById('words-status')?.textContent ?? '') && document.querySelectorAll('#retrieved img').length === 8 && [...document.querySelectorAll<HTMLImageElement>('#retrieved img, #generated img')].every((i) => i.complete && i.naturalWidth > 0), name, { timeout: 20_000 });
    const main = rgb.indexOf(Math.max(...rgb));
    if (name === 'red') await w.page.screenshot({ path: join('reports', 'screenshots', `colour-${home.source.includes('tab') ? 'export' : 'serve'}.png`), fullPage: true });
    // Every retrieved picture shows the colour its caption names (channels in order end to end),
    // and pictures of the word's colour are among them (the tiny model ranks them roughly).
    const captions = (await w.page.locator('#retrieved figcaption').allTextContents()).map((c) => c.split(' · ')[0]);
    assert.ok(captions.includes(name), `retrieved for '${name}': ${captions.join(', ')}`);
    const shown = await colourOf('#retrieved img');
    shown.forEach((im, i) => {
      const want = COLOURS.find(([n]) => n === captions[i])![1];
      assert.equal(im.rgb.indexOf(Math.max(...im.rgb)), want.indexOf(Math.max(...want)), `retrieved ${captions[i]} shows mean rgb ${im.rgb.map(Math.round)}`);
      assert.equal(im.width * 2, im.height * 3, `a retrieved picture keeps the 16×24 shape (${im.width}×${im.height})`);
    });
    // Generated pictures have the images' shape, most are in colour, and some of the word's colour.
    const made = await colourOf('#generated img');
    for (const im of made) assert.equal(im.width * 2, im.height * 3);
    const coloured = made.filter((im) => Math.max(...im.rgb) - Math.min(...im.rgb) > 30).length;
    assert.ok(coloured >= 4, `${coloured} of 8 pictures generated for '${name}' are coloured: ${made.map((im) => im.rgb.map(Math.round).join('/')).join(', ')}`);
    assert.ok(made.some((im) => im.rgb.indexOf(Math.max(...im.rgb)) === main), `some picture generated for '${name}' is ${name}`);
  }
  await w.page.waitForFunction(() => {
    const img = document.getElementById('interp-strip') as HTMLImageElement;
    return img.complete && img.naturalWidth === 11 * 48 && img.naturalHeight === 32;
  }, undefined, { timeout: 10_000 });
  assert.deepEqual(w.external, []);
  assert.deepEqual(w.pageErrors, []);
}

test('exported colour run from a static server: RGB images in their 16×24 shape, retrieval and generation by colour word', { skip: SKIP }, async () => {
  await checkHome(files.url, /computed in this tab/);
});

test('the same colour run under probsem serve: the same page shows the same, in the tab and on the server', { skip: SKIP }, async () => {
  const url = `http://127.0.0.1:${(srv.app.server.address() as net.AddressInfo).port}`;
  await checkHome(url, /computed in this tab \(TensorFlow\.js, wasm\); latent maps by the probsem server/);
  await checkHome(url, /computed by the probsem server$/, '?compute=server');
});
