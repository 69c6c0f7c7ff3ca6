/**
 * An exported run trained on word vectors: the shipped word list lets the static page take words
 * that are not class names (served from a plain static server, computed in Chromium). Skipped,
 * with a message, where no Chromium is installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/core/backend.js';
import { trainRun } from '../src/runs/runs.js';
import { exportWeb } from '../src/server/export-web.js';
import type { SiteManifest } from '../src/server/types.js';
import { SKIP_BROWSER as SKIP, type StaticSite, type WatchedPage, openWatchedPage, serveFolder } from './chromium.fixture.js';

if (SKIP) process.stdout.write(`${SKIP}\n`);

const root = mkdtempSync(join(tmpdir(), 'probsem-web-words-'));
const site = join(root, 'site');
let files: StaticSite;
let w: WatchedPage;

before(async () => {
  await initBackend();
  const run = join(root, 'run');
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', labels: { kind: 'words', source: 'wordnet' }, latent: 6, steps: 600, batchSize: 50, lr: 1e-3, seed: 0, out: run, checkpointEvery: 0 });
  await exportWeb({ runDir: run, out: site, sample: 300, maps: ['pca'], maxWords: 2000 });
  if (SKIP) return;
  files = await serveFolder(site);
  w = await openWatchedPage(files.url);
});

after(async () => {
  await w?.browser.close();
  await files?.close();
  rmSync(root, { recursive: true, force: true });
});

test('the word list: class phrases and their nearest words, bounded', () => {
  const m = JSON.parse(readFileSync(join(site, 'site.json'), 'utf8')) as SiteManifest;
  assert.ok(m.words, 'a word-vector run ships words');
  assert.equal(m.words.list.length, 2000);
  for (const word of ['trousers', 'sneaker', 'boot', 'handbag']) assert.ok(m.words.list.includes(word), `'${word}' is shipped`);
});

test('words that name no class are queries in the static page; words outside the list are named', { skip: SKIP }, async () => {
  const { page } = w;
  await page.goto(`${files.url}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  await page.fill('#words', 'handbag');
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => /query: handbag/.test(document.getElementById('words-status')?.textContent ?? '') && document.querySelectorAll('#retrieved img').length === 8 && document.querySelectorAll('#generated img').length === 8, undefined, { timeout: 20_000 });
  const labels = (await page.locator('#retrieved figcaption').allTextContents()).map((c) => c.split(' · ')[0]);
  assert.equal(labels[0], 'Bag', `'handbag' retrieves a bag first: ${labels.join(', ')}`);
  await page.fill('#interp-from', 'jeans');
  await page.fill('#interp-to', 'handbag');
  await page.press('#interp-to', 'Enter');
  await page.waitForFunction(() => /jeans → handbag/.test(document.getElementById('interp-status')?.textContent ?? ''), undefined, { timeout: 10_000 });
  await page.fill('#words', 'qqzzx');
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => /unknown word 'qqzzx'/.test(document.getElementById('words-status')?.textContent ?? ''), undefined, { timeout: 10_000 });
  assert.deepEqual(w.external, []);
  assert.deepEqual(w.pageErrors, []);
});
