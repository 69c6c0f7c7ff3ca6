/**
 * The t-SNE benchmark (`npm run bench -- --only tsne`): 10,000 points of dimension 20 — ten
 * seeded Gaussian clusters (centres ~ N(0, 4²·I), unit spread), the shape of a latent space's
 * posterior means — mapped to 2-D by `project2d(…, 'tsne')`, the path `probsem plot latent`
 * and the server take (Barnes–Hut t-SNE in a worker thread: perplexity 30, θ = 0.5, 750 steps).
 *
 * Reports the wall-clock seconds (the figure the project promises under 60 s), the process's CPU
 * seconds (all threads; on a shared machine the wall clock also counts others' load), and the
 * map's 10-nearest-neighbour label agreement as a check that the map is a real one.
 */
import { cpus, loadavg } from 'node:os';
import { project2d } from '../src/analysis/projection.js';
import { knnAccuracy } from '../src/analysis/tsne.js';
import { Rng } from '../src/core/random.js';

export interface TsneBenchOptions {
  points?: number;
  dim?: number;
  seed?: number;
  log?: (m: string) => void;
}

export interface TsneBenchResult {
  /** Wall-clock seconds for the whole map (neighbours, affinities, 750 steps, worker start included). */
  secondsFor10000: number;
  cpuSeconds: number;
  points: number;
  dim: number;
  /** Leave-one-out 10-NN accuracy of the cluster labels in the 2-D map (1: every cluster kept apart). */
  knn10Accuracy: number;
  /** The 1-minute load average before and after: how busy the machine was. */
  loadAverage: [number, number];
  cores: number;
}

/** Ten Gaussian clusters in `dim` dimensions, `points` in all (labels: i mod 10). */
export function clusteredPoints(points: number, dim: number, seed: number): { data: Float64Array; labels: Int32Array } {
  const rng = Rng.for(seed, 'tsne-bench');
  const centres = Array.from({ length: 10 }, () => Float64Array.from({ length: dim }, () => 4 * rng.normal()));
  const data = new Float64Array(points * dim);
  const labels = new Int32Array(points);
  for (let i = 0; i < points; i++) {
    labels[i] = i % 10;
    for (let j = 0; j < dim; j++) data[i * dim + j] = centres[i % 10][j] + rng.normal();
  }
  return { data, labels };
}

export async function runTsneBench(o: TsneBenchOptions = {}): Promise<TsneBenchResult> {
  const log = o.log ?? (() => {});
  const points = o.points ?? 10_000;
  const dim = o.dim ?? 20;
  const { data, labels } = clusteredPoints(points, dim, o.seed ?? 1);
  const load0 = loadavg()[0];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { coords } = await project2d(data, points, dim, 'tsne', 0);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const knn10Accuracy = knnAccuracy(coords, points, 2, labels, 10);
  log(`tsne: ${points} × ${dim} in ${seconds.toFixed(1)} s (CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s), 10-NN label agreement ${knn10Accuracy.toFixed(4)}`);
  return {
    secondsFor10000: +seconds.toFixed(2),
    cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
    points,
    dim,
    knn10Accuracy: +knn10Accuracy.toFixed(4),
    loadAverage: [+load0.toFixed(2), +loadavg()[0].toFixed(2)],
    cores: cpus().length,
  };
}
