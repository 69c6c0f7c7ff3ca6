/** Shared by the browser tests: where Debian's Chromium is, or the reason the tests are skipped. */
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

export function findChromium(): string | null {
  if (process.env.PROBSEM_CHROMIUM === 'none') return null;
  const candidates = [process.env.PROBSEM_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  for (const c of candidates) if (c && existsSync(c)) return c;
  try {
    const p = execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
    return p || null;
  } catch {
    return null;
  }
}

export const CHROMIUM = findChromium();
/** false where Chromium is found, else the message node:test prints for each skipped test. */
export const SKIP_BROWSER: false | string = CHROMIUM
  ? false
  : 'no Chromium found (install it with `apt-get install -y chromium`, or set PROBSEM_CHROMIUM=/path/to/chromium): browser test skipped';

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

export interface WatchedPage {
  browser: import('playwright-core').Browser;
  page: import('playwright-core').Page;
  /** Requests to anywhere but `base` (refused). */
  external: string[];
  /** Uncaught errors and console errors not matching `expectedConsole`. */
  pageErrors: string[];
}

/** Headless Chromium with one page that may reach only `base` (and data:/blob: URLs); everything else is recorded and refused. */
export async function openWatchedPage(base: string, o: { expectedConsole?: RegExp; args?: string[] } = {}): Promise<WatchedPage> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM!, headless: true, args: [...CHROMIUM_ARGS, ...(o.args ?? [])] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const external: string[] = [];
  const pageErrors: string[] = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    external.push(url);
    return route.abort();
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !(o.expectedConsole && o.expectedConsole.test(m.text()))) pageErrors.push(m.text());
  });
  return { browser, page, external, pageErrors };
}

/** A drawn point of the page's latent map in CSS pixels from its corner (the first pixel that is not background), or null. */
export function mapPoint(page: import('playwright-core').Page): Promise<{ x: number; y: number } | null> {
  return page.evaluate(() => {
    const c = document.getElementById('map') as HTMLCanvasElement;
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    const scale = c.width / c.getBoundingClientRect().width;
    for (let y = 0; y < c.height; y += 2) for (let x = 0; x < c.width; x += 2) if (d[(y * c.width + x) * 4 + 3] > 200) return { x: x / scale, y: y / scale };
    return null;
  });
}

/** Clicks the map's first drawn point; resolves once the clicked image's annotation bars show. */
export async function clickMapPoint(page: import('playwright-core').Page): Promise<void> {
  const pt = await mapPoint(page);
  if (!pt) throw new Error('the map has no points');
  const box = (await page.locator('#map').boundingBox())!;
  await page.mouse.click(box.x + pt.x + 1, box.y + pt.y + 1);
  await page.waitForFunction(() => document.querySelectorAll('#detail-bars .bar').length === 5, undefined, { timeout: 10_000 });
}

/**
 * The benches' two timed interactions on a ready page: a map click until the clicked image's
 * annotation shows, then a words query until its 8 generated and 8 retrieved images have loaded.
 */
export async function timeInteractions(page: import('playwright-core').Page, words: string): Promise<{ annotateMs: number; wordsMs: number }> {
  let t = performance.now();
  await clickMapPoint(page);
  const annotateMs = performance.now() - t;
  t = performance.now();
  await page.fill('#words', words);
  await page.press('#words', 'Enter');
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll<HTMLImageElement>('#retrieved img, #generated img')];
    return imgs.length === 16 && imgs.every((im) => im.complete);
  });
  return { annotateMs, wordsMs: performance.now() - t };
}

/** The RGBA pixels of every loaded <img> matching `selector`, read back through a canvas. */
export function readImages(page: import('playwright-core').Page, selector: string): Promise<{ width: number; height: number; rgba: number[] }[]> {
  return page.$$eval(selector, (imgs) =>
    (imgs as HTMLImageElement[]).map((img) => {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d')!;
      ctx.drawImage(img, 0, 0);
      return { width: c.width, height: c.height, rgba: Array.from(ctx.getImageData(0, 0, c.width, c.height).data) };
    }),
  );
}

export interface StaticSite {
  url: string;
  /** Paths asked for, in order. */
  served: string[];
  close(): Promise<void>;
}

const STATIC_TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm' };

/** A plain static file server over `dir` on a free loopback port: GET of a file, index.html for a folder, 404 otherwise. */
export async function serveFolder(dir: string): Promise<StaticSite> {
  const { createServer } = await import('node:http');
  const { existsSync, readFileSync, statSync } = await import('node:fs');
  const { extname, join, normalize, resolve } = await import('node:path');
  const root = resolve(dir);
  const served: string[] = [];
  const srv = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    let file = join(root, path);
    if (!file.startsWith(root)) return void res.writeHead(403).end();
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if (!existsSync(file)) return void res.writeHead(404).end();
    served.push(path);
    const type = STATIC_TYPES[extname(file)];
    res.writeHead(200, type ? { 'content-type': type } : {}).end(readFileSync(file));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as import('node:net').AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, served, close: () => new Promise((r) => srv.close(() => r())) };
}
