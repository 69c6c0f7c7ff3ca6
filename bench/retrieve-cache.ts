/**
 * The phases of one `probsem retrieve` in a fresh process, wall and CPU ms each: backend start,
 * model, dataset, dataset hash, the split's index (built, or read from the run's index cache) and
 * the query. Run it twice (the first after removing RUN/index-cache) to see what the cache saves.
 *
 *   npx tsx bench/retrieve-cache.ts --run DIR [--dataset fashion-mnist] [--words trouser]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/core/backend.js';
import { datasetHash, pixelsOf } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { queryDistribution, retrieveImages } from '../src/runs/retrieval.js';
import { loadImageModel } from '../src/runs/runs.js';
import { lastIndexSource, searchIndex } from '../src/runs/search-index.js';

const { values: v } = parseArgs({ options: { run: { type: 'string' }, dataset: { type: 'string' }, words: { type: 'string', default: 'trouser' } } });
if (!v.run) throw new Error('give --run DIR');
const out: Record<string, unknown> = {};
async function phase<T>(name: string, f: () => T | Promise<T>): Promise<T> {
  const c = process.cpuUsage();
  const t = performance.now();
  const r = await f();
  const u = process.cpuUsage(c);
  out[name] = { wall_ms: Math.round(performance.now() - t), cpu_ms: Math.round((u.user + u.system) / 1000) };
  return r;
}
await phase('backend', () => initBackend());
const { model, meta } = await phase('model', () => loadImageModel(v.run!));
const ds = await phase('dataset', () => loadDataset(v.dataset ?? meta.dataset?.name ?? 'fashion-mnist'));
// Hashed here once more than the search needs, so the index phase shows the cost it pays too.
await phase('datasetHash', () => datasetHash(ds));
const index = await phase('index', () => searchIndex(v.run!, model, meta, ds, { onNotice: (m) => process.stderr.write(`note: ${m}\n`) }));
out.source = lastIndexSource();
await phase('query', () => retrieveImages(model, ds.test, pixelsOf(ds), queryDistribution(model, meta, [v.words!]), 20, { index }));
out.loadavg1 = Number(os.loadavg()[0].toFixed(2));
process.stdout.write(JSON.stringify(out) + '\n');
