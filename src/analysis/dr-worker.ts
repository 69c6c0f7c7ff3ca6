/** Worker thread: t-SNE (druidjs) or UMAP (umap-js) of the points in workerData; posts n×2 coordinates. */
import { parentPort, workerData } from 'node:worker_threads';
import { TSNE } from '@saehrimnir/druidjs';
import { UMAP } from 'umap-js';
import { Rng } from '../core/random.js';
import type { DrRequest } from './projection.js';

function rows(req: DrRequest): number[][] {
  return Array.from({ length: req.n }, (_, i) => Array.from(req.data.subarray(i * req.d, (i + 1) * req.d)));
}

function run(req: DrRequest): Float64Array {
  const out = new Float64Array(req.n * 2);
  if (req.method === 'tsne') {
    const perplexity = Math.max(2, Math.min(30, Math.floor((req.n - 1) / 3)));
    const y = new TSNE(rows(req), { perplexity, d: 2, seed: req.seed }).transform(500) as unknown as number[][];
    y.forEach((p, i) => out.set([p[0], p[1]], i * 2));
  } else {
    const rng = Rng.for(req.seed, 'umap');
    const umap = new UMAP({ nComponents: 2, nNeighbors: Math.max(2, Math.min(15, req.n - 1)), random: () => rng.uniform() });
    const y = umap.fit(rows(req));
    y.forEach((p, i) => out.set([p[0], p[1]], i * 2));
  }
  return out;
}

try {
  const coords = run(workerData as DrRequest);
  parentPort!.postMessage({ coords }, [coords.buffer as ArrayBuffer]);
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message });
}
