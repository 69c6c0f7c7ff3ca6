/** Shared by the server, browser and load tests: a tiny trained run on the shipped subset. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/core/backend.js';
import { trainRun } from '../src/runs/runs.js';

/** Trains PSE* (latent 6, 150 steps of 50 images: ~10 s on two cores) into a fresh directory. */
export async function trainTinyRun(steps = 150): Promise<string> {
  await initBackend();
  const out = join(mkdtempSync(join(tmpdir(), 'probsem-serve-')), 'run');
  await trainRun({ model: 'pse-star', dataset: 'fashion-mnist-subset', latent: 6, steps, batchSize: 50, lr: 1e-3, seed: 0, out });
  return out;
}
