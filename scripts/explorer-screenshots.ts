/**
 * Screenshots of each view of an exported explorer (docs/figures/explorer-*.png), taken in headless
 * Chromium from a plain static server. Usage: tsx scripts/explorer-screenshots.ts SITE [OUTDIR]
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, serveFolder } from '../test/chromium.fixture.js';

const site = resolve(process.argv[2] ?? '');
const out = resolve(process.argv[3] ?? join('docs', 'figures'));
if (!existsSync(join(site, 'site.json'))) throw new Error(`${site} has no site.json (write one with probsem export-web)`);
const files = await serveFolder(site);
const browser = await chromium.launch({ executablePath: CHROMIUM!, headless: true, args: CHROMIUM_ARGS });
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
await page.goto(`${files.url}/`);
await page.waitForFunction(() => document.body.dataset.ready === 'true' && /test images/.test(document.getElementById('map-status')?.textContent ?? ''));
const shot = async (name: string, sel: string) => {
  await page.locator(sel).screenshot({ path: join(out, name) });
  process.stdout.write(`${join(out, name)}\n`);
};
await page.selectOption('#map-method', 'tsne');
await page.waitForFunction(() => /test images/.test(document.getElementById('map-status')?.textContent ?? ''));
const box = (await page.locator('#map').boundingBox())!;
await page.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.5);
for (let r = 4; r < 200 && !(await page.isVisible('#detail')); r += 4) await page.mouse.click(box.x + box.width * 0.5 + r, box.y + box.height * 0.5);
await page.waitForFunction(() => document.querySelectorAll('#detail-bars .bar').length === 5);
await page.waitForTimeout(300);
await shot('explorer-map.png', '#map-section');
await page.fill('#words', 'ankle boot');
await page.press('#words', 'Enter');
await page.waitForFunction(() => document.querySelectorAll('#retrieved img').length === 8 && document.querySelectorAll('#generated img').length === 8);
await page.waitForTimeout(300);
await shot('explorer-words.png', '#words-section');
// The pointer reaches only what is on screen.
await page.locator('#annotate-section').scrollIntoViewIfNeeded();
const d = (await page.locator('#draw').boundingBox())!;
await page.mouse.move(d.x + 80, d.y + 60);
await page.mouse.down();
for (const [x, y] of [[80, 240], [200, 240], [200, 60]]) await page.mouse.move(d.x + x, d.y + y, { steps: 12 });
await page.mouse.up();
await page.waitForFunction(() => document.querySelectorAll('#annotation .bar').length > 0);
await shot('explorer-annotate.png', '#annotate-section');
await page.fill('#interp-from', 'Sandal');
await page.fill('#interp-to', 'Ankle boot');
await page.press('#interp-to', 'Enter');
await page.waitForFunction(() => /Sandal → Ankle boot/.test(document.getElementById('interp-status')?.textContent ?? ''));
await page.locator('#interp-slider').fill('5');
await page.waitForTimeout(300);
await shot('explorer-interpolate.png', '#interp-section');
await browser.close();
await files.close();
