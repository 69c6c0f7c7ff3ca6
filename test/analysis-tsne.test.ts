/** Barnes–Hut t-SNE (src/analysis/tsne.ts), k-means with NMI and purity (src/analysis/clustering.ts) and `probsem cluster`. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TSNE } from '@saehrimnir/druidjs';
import { setupBackend } from './helpers.js';
import { attraction, exactNeighbours, knnAccuracy, perplexityAffinities, repulsion, trustworthiness, tsne } from '../src/analysis/tsne.js';
import { kmeans, normalizedMutualInformation, purity } from '../src/analysis/clustering.js';
import { agglomerative } from '../src/analysis/agglomerative.js';
import { project2d } from '../src/analysis/projection.js';
import { clusterCommand } from '../src/cli/commands/cluster.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import { pixelsOf } from '../src/data/dataset.js';
import { encodeSplit } from '../src/runs/retrieval.js';
import { loadImageModel, trainRun } from '../src/runs/runs.js';

/** Ten Gaussian clusters (centres ~ N(0, sep²·I), unit spread) in d dimensions; label i mod 10. */
function clusters(n: number, d: number, sep: number, seed: number, k = 10): { data: Float64Array; labels: Int32Array } {
  const rng = new Rng(seed);
  const centres = Array.from({ length: k }, () => Array.from({ length: d }, () => sep * rng.normal()));
  const data = new Float64Array(n * d);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = i % k;
    for (let j = 0; j < d; j++) data[i * d + j] = centres[i % k][j] + rng.normal();
  }
  return { data, labels };
}

const uniform2d = (n: number, seed: number, scale = 30) => {
  const rng = new Rng(seed);
  return Float64Array.from({ length: 2 * n }, () => scale * (rng.uniform() - 0.5));
};

test('exact neighbours: the k nearest by squared distance, nearest first, self excluded', () => {
  const n = 150;
  const d = 7;
  const rng = new Rng(3);
  const data = Float64Array.from({ length: n * d }, () => rng.normal());
  const k = 12;
  const nb = exactNeighbours(data, n, d, k);
  for (const i of [0, 17, 149]) {
    const all = Array.from({ length: n }, (_, j) => j)
      .filter((j) => j !== i)
      .map((j) => ({ j, s: Array.from({ length: d }, (_, t) => (data[i * d + t] - data[j * d + t]) ** 2).reduce((a, b) => a + b, 0) }))
      .sort((a, b) => a.s - b.s);
    assert.deepEqual(Array.from(nb.index.subarray(i * k, (i + 1) * k)), all.slice(0, k).map((e) => e.j), `point ${i}'s neighbours`);
    for (let t = 0; t < k; t++) assert.ok(Math.abs(nb.dist2[i * k + t] - all[t].s) < 1e-12);
  }
  assert.throws(() => exactNeighbours(data, n, d, n), /k must be an integer in \[1, 149\], got 150/);
});

test('affinities: every row calibrated to the perplexity; P symmetric, summing to 1', () => {
  const n = 300;
  const d = 5;
  const { data } = clusters(n, d, 3, 4);
  const perplexity = 20;
  const k = 60;
  const nb = exactNeighbours(data, n, d, k);
  const p = perplexityAffinities(nb, perplexity);
  for (let i = 0; i < n; i++) {
    // The conditional row p(j|i) ∝ exp(−β_i d²) has entropy log(perplexity).
    const w = Array.from(nb.dist2.subarray(i * k, (i + 1) * k), (s) => Math.exp(-p.beta[i] * (s - nb.dist2[i * k])));
    const z = w.reduce((a, b) => a + b, 0);
    const h = -w.reduce((a, v) => a + (v / z) * Math.log(v / z || 1), 0);
    assert.ok(Math.abs(h - Math.log(perplexity)) < 1e-4, `row ${i}: entropy ${h} vs ${Math.log(perplexity)}`);
  }
  let total = 0;
  const at = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    for (let e = p.rowStart[i]; e < p.rowStart[i + 1]; e++) {
      total += p.val[e];
      assert.ok(!at.has(`${i},${p.col[e]}`), 'no duplicate entries');
      at.set(`${i},${p.col[e]}`, p.val[e]);
    }
  }
  assert.ok(Math.abs(total - 1) < 1e-12, `P sums to ${total}`);
  for (const [key, v] of at) {
    const [i, j] = key.split(',');
    assert.equal(at.get(`${j},${i}`), v, `p_${i},${j} = p_${j},${i}`);
  }
  assert.throws(() => perplexityAffinities(nb, 0.5), /perplexity must be ≥ 1, got 0.5/);
});

test('repulsion: θ = 0 equals the O(n²) sum; θ = 0.5 stays within 2 % of it', () => {
  const n = 1200;
  const y = uniform2d(n, 5);
  // Some coincident points and a tight knot: the tree must not split them for ever.
  for (let i = 0; i < 20; i++) y.set([1.25, -3.5], 2 * i);
  const bx = new Float64Array(n);
  const by = new Float64Array(n);
  let zb = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      const dx = y[2 * i] - y[2 * j];
      const dy = y[2 * i + 1] - y[2 * j + 1];
      const w = 1 / (1 + dx * dx + dy * dy);
      zb += w;
      bx[i] += w * w * dx;
      by[i] += w * w * dy;
    }
  }
  const err = (fx: Float64Array, fy: Float64Array) => {
    let e = 0;
    let s = 0;
    for (let i = 0; i < n; i++) {
      e += (fx[i] - bx[i]) ** 2 + (fy[i] - by[i]) ** 2;
      s += bx[i] ** 2 + by[i] ** 2;
    }
    return Math.sqrt(e / s);
  };
  const fx = new Float64Array(n);
  const fy = new Float64Array(n);
  const z0 = repulsion(y, n, 0, fx, fy);
  assert.ok(Math.abs(z0 - zb) / zb < 1e-12, `exact Z ${z0} vs ${zb}`);
  assert.ok(err(fx, fy) < 1e-12, `exact forces, relative error ${err(fx, fy)}`);
  const z5 = repulsion(y, n, 0.5, fx, fy);
  assert.ok(Math.abs(z5 - zb) / zb < 0.01, `θ 0.5: Z relative error ${Math.abs(z5 - zb) / zb}`);
  const e5 = err(fx, fy);
  assert.ok(e5 > 0 && e5 < 0.02, `θ 0.5: force relative error ${e5}`);
  // The error grows with θ.
  repulsion(y, n, 0.25, fx, fy);
  const e25 = err(fx, fy);
  repulsion(y, n, 0.9, fx, fy);
  const e90 = err(fx, fy);
  assert.ok(e25 < e5 && e5 < e90, `errors at θ 0.25, 0.5, 0.9: ${e25}, ${e5}, ${e90}`);

  // The attraction is the plain sparse sum.
  const p = perplexityAffinities(exactNeighbours(y, n, 2, 9), 3);
  const ax = new Float64Array(n);
  const ay = new Float64Array(n);
  attraction(p, y, ax, ay);
  for (const i of [0, 500, n - 1]) {
    let sx = 0;
    let sy = 0;
    for (let e = p.rowStart[i]; e < p.rowStart[i + 1]; e++) {
      const j = p.col[e];
      const dx = y[2 * i] - y[2 * j];
      const dy = y[2 * i + 1] - y[2 * j + 1];
      sx += (p.val[e] * dx) / (1 + dx * dx + dy * dy);
      sy += (p.val[e] * dy) / (1 + dx * dx + dy * dy);
    }
    assert.ok(Math.abs(ax[i] - sx) < 1e-15 && Math.abs(ay[i] - sy) < 1e-15);
  }
});

test('t-SNE keeps well-separated clusters apart: 10-NN label agreement and trustworthiness near 1', () => {
  const n = 1500;
  const d = 20;
  const { data, labels } = clusters(n, d, 4, 1);
  const r = tsne(data, n, d, { seed: 0 });
  assert.equal(r.coords.length, 2 * n);
  assert.equal(r.perplexity, 30);
  assert.equal(r.neighbours, 90);
  assert.ok(r.coords.every(Number.isFinite));
  const acc = knnAccuracy(r.coords, n, 2, labels, 10);
  assert.ok(acc >= 0.99, `10-NN label agreement ${acc}`);
  const tw = trustworthiness(data, d, r.coords, 2, n, 10);
  assert.ok(tw > 0.95, `trustworthiness ${tw}`);
  assert.ok(r.kl > 0 && r.kl < 1.5, `KL ${r.kl}`);
  // Centred.
  let mx = 0;
  for (let i = 0; i < n; i++) mx += r.coords[2 * i];
  assert.ok(Math.abs(mx / n) < 1e-9);
  // A random 2-D scatter of the same points, for contrast, scores at chance.
  const noise = uniform2d(n, 9);
  assert.ok(knnAccuracy(noise, n, 2, labels, 10) < 0.3);
});

test('t-SNE maps as well as druidjs’s exact t-SNE on the same 500 points', () => {
  // Overlapping clusters, so neither map is trivially perfect.
  const n = 500;
  const d = 20;
  const { data, labels } = clusters(n, d, 0.8, 2);
  const ours = tsne(data, n, d, { seed: 0 }).coords;
  const rows = Array.from({ length: n }, (_, i) => Array.from(data.subarray(i * d, (i + 1) * d)));
  const theirs = Float64Array.from((new TSNE(rows, { perplexity: 30, d: 2, seed: 0 }).transform(500) as unknown as number[][]).flat());
  const score = (y: Float64Array) => ({ knn: knnAccuracy(y, n, 2, labels, 10), tw: trustworthiness(data, d, y, 2, n, 10) });
  const a = score(ours);
  const b = score(theirs);
  assert.ok(a.tw >= b.tw - 0.01, `trustworthiness: ours ${a.tw}, druidjs ${b.tw}`);
  assert.ok(a.knn >= b.knn - 0.05, `10-NN accuracy: ours ${a.knn}, druidjs ${b.knn}`);
});

test('t-SNE is seeded: the same seed gives the same map; the random start depends on it', () => {
  const n = 200;
  const d = 6;
  const { data } = clusters(n, d, 3, 6);
  const opts = { iterations: 200, init: 'random' as const };
  const a = tsne(data, n, d, { ...opts, seed: 1 }).coords;
  assert.deepEqual(tsne(data, n, d, { ...opts, seed: 1 }).coords, a);
  assert.notDeepEqual(tsne(data, n, d, { ...opts, seed: 2 }).coords, a);
  // The default PCA start needs no seed.
  assert.deepEqual(tsne(data, n, d, { iterations: 100, seed: 1 }).coords, tsne(data, n, d, { iterations: 100, seed: 2 }).coords);
});

test('t-SNE on tiny and degenerate inputs: perplexity lowered, coincident points, one dimension', () => {
  const five = tsne(Float64Array.from([0, 0, 1, 0, 0, 1, 5, 5, 5, 6]), 5, 2, { iterations: 100 });
  assert.equal(five.perplexity, 4 / 3);
  assert.equal(five.neighbours, 4);
  assert.ok(five.coords.every(Number.isFinite));
  const same = tsne(new Float64Array(40 * 3).fill(2), 40, 3, { iterations: 60 });
  assert.ok(same.coords.every(Number.isFinite), 'identical points do not produce NaN');
  const line = Float64Array.from({ length: 60 }, (_, i) => (i < 30 ? 0 : 50) + (i % 30) * 0.01);
  const oneD = tsne(line, 60, 1);
  const labels = Int32Array.from({ length: 60 }, (_, i) => (i < 30 ? 0 : 1));
  assert.equal(knnAccuracy(oneD.coords, 60, 2, labels, 5), 1);
  assert.ok(oneD.kl < 0.1, `two tight groups far apart: KL ${oneD.kl}`);
});

test('t-SNE refuses bad input with clear messages', () => {
  const ok = new Float64Array(30);
  assert.throws(() => tsne(ok, 2, 15), /t-SNE needs at least 3 points, got 2/);
  assert.throws(() => tsne(ok, 10, 4), /t-SNE: expected 10×4 = 40 values, got 30/);
  const nan = new Float64Array(30);
  nan[7] = NaN;
  assert.throws(() => tsne(nan, 10, 3), /t-SNE: value 7 \(point 2, dimension 1\) is NaN/);
  assert.throws(() => tsne(ok, 10, 3, { perplexity: 0 }), /perplexity must be a number ≥ 1, got 0/);
  assert.throws(() => tsne(ok, 10, 3, { theta: 1.5 }), /theta must be in \[0, 1\], got 1.5/);
  assert.throws(() => tsne(ok, 10, 3, { iterations: -1 }), /iterations must be an integer/);
  assert.throws(() => tsne(ok, 10, 3, { learningRate: 0 }), /learningRate must be > 0/);
  assert.throws(() => knnAccuracy(ok, 15, 2, [1, 2], 3), /15 points but 2 labels/);
});

test('project2d runs the Barnes–Hut t-SNE in its worker', async () => {
  const n = 300;
  const { data, labels } = clusters(n, 8, 4, 7);
  const viaWorker = await project2d(data, n, 8, 'tsne', 3);
  assert.deepEqual(viaWorker.coords, tsne(data, n, 8, { seed: 3 }).coords);
  assert.ok(knnAccuracy(viaWorker.coords, n, 2, labels, 10) > 0.98);
});

test('NMI and purity: closed forms on hand-made labelings', () => {
  const a = [0, 0, 0, 1, 1, 1];
  assert.equal(normalizedMutualInformation(a, a), 1);
  assert.equal(normalizedMutualInformation(a, [5, 5, 5, 2, 2, 2]), 1, 'renaming clusters changes nothing');
  assert.equal(purity(a, [7, 7, 7, 3, 3, 3]), 1);
  // Independent: every (cluster, label) pair equally often.
  assert.equal(normalizedMutualInformation([0, 0, 1, 1], [0, 1, 0, 1]), 0);
  assert.equal(purity([0, 0, 1, 1], [0, 1, 0, 1]), 0.5);
  // Worked by hand: table [[2, 1, 0], [0, 1, 2]], n = 6. I = 2·(2/6)·ln 2 = (2/3) ln 2,
  // H(a) = ln 2, H(b) = ln 3, NMI = I / ((ln 2 + ln 3) / 2) = (4/3) ln 2 / ln 6 ≈ 0.5158.
  const b = [0, 0, 1, 1, 2, 2];
  const nmi = normalizedMutualInformation(a, b);
  assert.ok(Math.abs(nmi - (4 / 3) * (Math.log(2) / Math.log(6))) < 1e-12, `NMI ${nmi}`);
  assert.ok(Math.abs(nmi - 0.5158037429793889) < 1e-12);
  assert.equal(normalizedMutualInformation(b, a), nmi, 'symmetric');
  // Purity is not symmetric: clusters a → majorities 2 + 2 of 6; clusters b → 2 + 1 + 2 of 6.
  assert.equal(purity(a, b), 4 / 6);
  assert.equal(purity(b, a), 5 / 6);
  // One cluster against several labels: no information, purity = the largest label's share.
  assert.equal(normalizedMutualInformation([0, 0, 0, 0], [0, 1, 1, 2]), 0);
  assert.equal(purity([0, 0, 0, 0], [0, 1, 1, 2]), 0.5);
  assert.equal(normalizedMutualInformation([3, 3], [1, 1]), 1, 'two single-cluster labelings agree');
  assert.throws(() => normalizedMutualInformation([0, 1], [0]), /NMI: the two labelings have 2 and 1 items/);
  assert.throws(() => purity([], []), /purity: no items/);
  assert.throws(() => purity([0, 1.5], [0, 1]), /first label of item 1 is 1.5, not an integer/);
});

test('k-means recovers planted clusters; inertia is the sum of squared distances to the centroids', () => {
  const n = 600;
  const d = 5;
  const { data, labels } = clusters(n, d, 8, 11, 6);
  const r = kmeans(data, n, d, { k: 6, seed: 0 });
  assert.equal(normalizedMutualInformation(r.assignments, labels), 1);
  assert.equal(purity(r.assignments, labels), 1);
  assert.deepEqual([...r.sizes].sort(), [100, 100, 100, 100, 100, 100]);
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    const c = r.assignments[i];
    for (let t = 0; t < d; t++) inertia += (data[i * d + t] - r.centroids[c * d + t]) ** 2;
  }
  assert.ok(Math.abs(inertia - r.inertia) < 1e-9 * inertia);
  // Each centroid is the mean of its points.
  for (let c = 0; c < 6; c++) {
    const members = Array.from({ length: n }, (_, i) => i).filter((i) => r.assignments[i] === c);
    const m0 = members.reduce((s, i) => s + data[i * d], 0) / members.length;
    assert.ok(Math.abs(m0 - r.centroids[c * d]) < 1e-9);
  }
  // Restarts keep the best: never worse than any single start of the same seed.
  for (let s = 0; s < 4; s++) {
    const one = kmeans(data, n, d, { k: 9, seed: s, restarts: 1 });
    assert.ok(kmeans(data, n, d, { k: 9, seed: s, restarts: 8 }).inertia <= one.inertia + 1e-9);
  }
  // k = n: every point its own centroid.
  assert.equal(kmeans(data.subarray(0, 20 * d), 20, d, { k: 20, restarts: 2 }).inertia, 0);
});

test('k-means is seeded: same seed, same clusters; bad input errors', () => {
  const n = 400;
  const d = 3;
  // Overlapping clusters, so starts can end in different local optima.
  const { data } = clusters(n, d, 1, 12, 8);
  const a = kmeans(data, n, d, { k: 8, seed: 5, restarts: 1 });
  const b = kmeans(data, n, d, { k: 8, seed: 5, restarts: 1 });
  assert.deepEqual(a.assignments, b.assignments);
  assert.deepEqual(a.centroids, b.centroids);
  const seeds = Array.from({ length: 6 }, (_, s) => kmeans(data, n, d, { k: 8, seed: s, restarts: 1 }).inertia);
  assert.ok(new Set(seeds).size > 1, 'different seeds start differently');
  assert.throws(() => kmeans(data, n, d, { k: 0 }), /k must be an integer in \[1, 400\] \(the number of points\), got 0/);
  assert.throws(() => kmeans(data, n, d, { k: 401 }), /got 401/);
  assert.throws(() => kmeans(data, n, 4, { k: 2 }), /expected 400×4 = 1600 values, got 1200/);
  assert.throws(() => kmeans([0, Infinity, 1, 2], 2, 2, { k: 1 }), /value 1 \(point 0, dimension 1\) is Infinity/);
  assert.throws(() => kmeans(data, n, d, { k: 2, restarts: 0 }), /restarts must be an integer in \[1, 10000\], got 0/);
  // Fewer distinct points than clusters still gives k centroids (some empty clusters refilled).
  const dup = kmeans([0, 0, 0, 0, 1, 1], 6, 1, { k: 3 });
  assert.equal(dup.inertia, 0);
});

let runDir: string;
before(async () => {
  await setupBackend();
  runDir = join(mkdtempSync(join(tmpdir(), 'probsem-cluster-')), 'run');
  await trainRun({
    model: 'pse-star',
    dataset: 'fashion-mnist-subset',
    latent: 4,
    steps: 40,
    batchSize: 50,
    lr: 1e-3,
    seed: 0,
    out: runDir,
    modelOptions: { encoderHidden: [32], decoderHidden: [32], classifierHidden: [16] },
  });
});

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  // Strings are the command's output; anything else (the test runner's own protocol) passes through.
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) =>
    typeof s === 'string' ? (chunks.push(s), true) : write(s, ...(rest as []))) as typeof process.stdout.write;
  try {
    return { code: await fn(), out: chunks.join('') };
  } finally {
    process.stdout.write = write;
  }
}

test('probsem cluster: k-means of a run’s test means, NMI and purity as the library computes them', async () => {
  const { code, out } = await capture(() => clusterCommand.run(['--run', runDir, '--seed', '3', '--restarts', '4', '--json']));
  assert.equal(code, 0);
  const r = JSON.parse(out);
  const ds = await loadDataset('fashion-mnist-subset');
  assert.equal(r.points, ds.test.count);
  assert.equal(r.k, 10, 'k defaults to the number of classes');
  assert.equal(r.latent, 4);
  const { model } = loadImageModel(runDir);
  const post = encodeSplit(model, ds.test, pixelsOf(ds));
  const km = kmeans(post.mean, post.count, post.dim, { k: 10, seed: 3, restarts: 4 });
  assert.equal(r.nmi, normalizedMutualInformation(km.assignments, ds.test.labels));
  assert.equal(r.purity, purity(km.assignments, ds.test.labels));
  assert.ok(r.nmi > 0.1 && r.nmi < 1, `NMI ${r.nmi}`);
  assert.equal(r.clusters.reduce((s: number, c: { size: number }) => s + c.size, 0), ds.test.count);
  const text = await capture(() => clusterCommand.run(['--run', runDir, '--k', '3', '--split', 'train', '--restarts', '1']));
  assert.match(text.out, /^k-means of \d+ train posterior means \(pse-star, latent 4\): k = 3, best of 1 starts/);
  assert.match(text.out, /NMI 0\.\d{4} \(arithmetic mean of entropies\) {3}purity 0\.\d{4}/);
  await assert.rejects(clusterCommand.run(['--run', runDir, '--split', 'val']), /--split must be test or train, got 'val'/);
  await assert.rejects(clusterCommand.run(['--run', runDir, '--k', '0']), /--k must be an integer in \[1, \d+\], got '0'/);
  await assert.rejects(clusterCommand.run(['--k', '3']), /--run is required/);
  // Agglomerative clustering of the same means, as the library computes it.
  const ward = JSON.parse((await capture(() => clusterCommand.run(['--run', runDir, '--method', 'ward', '--json']))).out);
  assert.equal(ward.method, 'ward');
  assert.equal(ward.nmi, normalizedMutualInformation(agglomerative(post.mean, post.count, post.dim, { k: 10, linkage: 'ward' }).assignments, ds.test.labels));
  assert.ok(ward.nmi > 0.1, `Ward NMI ${ward.nmi}`);
  await assert.rejects(clusterCommand.run(['--run', runDir, '--method', 'single']), /--method must be kmeans, ward or average, got 'single'/);
});
