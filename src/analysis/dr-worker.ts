/** Worker thread: t-SNE (Barnes–Hut, ./tsne.ts) or UMAP (umap-js) of the points in workerData; posts n×2 coordinates. */
import { parentPort, workerData } from 'node:worker_threads';
import { UMAP } from 'umap-js';
import { Rng } from '../core/random.js';
import type { DrRequest } from './projection.js';
import { tsne } from './tsne.js';

function rows(req: DrRequest): number[][] {
  return Array.from({ length: req.n }, (_, i) => Array.from(req.data.subarray(i * req.d, (i + 1) * req.d)));
}

function run(req: DrRequest): Float64Array {
  // Barnes–Hut t-SNE at every size: against druidjs's exact t-SNE it maps 1000 points as well
  // and several times faster (scratch/results-tsne.md), and druidjs cannot hold 10,000 (n² matrices).
  if (req.method === 'tsne') return tsne(req.data, req.n, req.d, { seed: req.seed }).coords;
  const out = new Float64Array(req.n * 2);
  const rng = Rng.for(req.seed, 'umap');
  const umap = new UMAP({ nComponents: 2, nNeighbors: Math.max(2, Math.min(15, req.n - 1)), random: () => rng.uniform() });
  const y = umap.fit(rows(req));
  y.forEach((p, i) => out.set([p[0], p[1]], i * 2));
  return out;
}

try {
  const coords = run(workerData as DrRequest);
  parentPort!.postMessage({ coords }, [coords.buffer as ArrayBuffer]);
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message });
}
