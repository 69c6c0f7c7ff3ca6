/**
 * In-tab training speed: ms per PSE* step (batch 100, latent 10, width 512: the default model) on
 * probsem's wasm kernels, in headless Chromium (the explorer's Train view, its worker, 1 thread)
 * and in Node (`TrainSession`, 1 and 2 threads), in one script on one machine. Each figure is the
 * median over `runs` fresh sessions of the mean over `steps` steps (tape recording included, as
 * a user sees it). Prints JSON. Usage: tsx bench/tab-train.ts [steps=300] [runs=3]
 */
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { initBackend } from '../src/core/backend.js';
import { loadDataset } from '../src/data/registry.js';
import { trainRun } from '../src/runs/runs.js';
import { exportWeb } from '../src/server/export-web.js';
import { TrainSession } from '../src/train/session.js';
import { CHROMIUM, CHROMIUM_ARGS, serveFolder } from '../test/chromium.fixture.js';

const steps = Number(process.argv[2] ?? 300);
const runs = Number(process.argv[3] ?? 3);
if (!CHROMIUM) throw new Error('no Chromium found (apt-get install -y chromium, or PROBSEM_CHROMIUM)');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (x: number) => Math.round(x * 10) / 10;

await initBackend();
const ds = await loadDataset('fashion-mnist-subset');
async function node(threads: number): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const s = await TrainSession.create(ds, { threads, seed: r });
    const t0 = performance.now();
    s.step(steps);
    out.push((performance.now() - t0) / steps);
    await s.dispose();
  }
  return out;
}

// A site to train in: any Fashion-MNIST run exports one.
const root = mkdtempSync(join(tmpdir(), 'probsem-bench-tab-'));
await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 4, steps: 10, batchSize: 50, lr: 1e-3, seed: 0, out: join(root, 'run'), checkpointEvery: 0 });
await exportWeb({ runDir: join(root, 'run'), out: join(root, 'site'), sample: 100, maps: ['pca'] });
const files = await serveFolder(join(root, 'site'));
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
const tab: number[] = [];
let tabFma = '';
for (let r = 0; r < runs; r++) {
  const page = await browser.newPage();
  await page.goto(`${files.url}/`);
  await page.waitForSelector('#train-section:not([hidden])', { timeout: 60_000 });
  await page.fill('#train-steps', String(steps));
  await page.fill('#train-seed', String(r));
  await page.click('#train-start');
  await page.waitForSelector('#train-section[data-state="done"], #train-section[data-state="error"]', { timeout: 600_000 });
  const d = await page.evaluate(() => ({ ...document.getElementById('train-section')!.dataset }));
  if (d.state !== 'done') throw new Error(`training in the tab failed: ${await page.textContent('#train-status')}`);
  tab.push(Number(d.msPerStep));
  tabFma = d.fma ?? '';
  await page.close();
}
const chromiumVersion = browser.version();
await browser.close();
await files.close();

const node1 = await node(1);
const node2 = await node(2);
const fig = (xs: number[]) => ({ msPerStep: round(median(xs)), runs: xs.map(round) });
process.stdout.write(
  JSON.stringify(
    {
      date: new Date().toISOString(),
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      model: 'pse-star latent 10, width 512, batch 100',
      steps,
      chromium: { version: chromiumVersion, worker1Thread: fig(tab), fusedMultiplyAdd: tabFma === 'true' },
      node: { version: process.version, fusedMultiplyAdd: (await TrainSession.create(ds, { threads: 1 }).then(async (s) => [s.fma, await s.dispose()][0])) as boolean, threads1: fig(node1), threads2: fig(node2) },
    },
    null,
    2,
  ) + '\n',
);
