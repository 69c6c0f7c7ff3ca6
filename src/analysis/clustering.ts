/**
 * k-means (k-means++ seeding, Lloyd iterations, several restarts keeping the lowest inertia) and
 * two scores of a clustering against labels: normalised mutual information and purity.
 * Written here rather than taken from ml-kmeans so the seeding draws from probsem's seeded
 * streams (`Rng.for(seed, 'kmeans', restart)`) and the same seed gives the same clusters anywhere.
 */
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';

export interface KMeansOptions {
  /** Number of clusters (1 ≤ k ≤ n). */
  k: number;
  /** Independent k-means++ starts; the run with the lowest inertia is kept (default 10). */
  restarts?: number;
  /** Lloyd iterations at most per start (default 300). */
  maxIterations?: number;
  /** Stop when no centroid moves by more than this share of the data's total variance (default 1e-8). */
  tolerance?: number;
  /** Seed of the k-means++ draws (default 0). */
  seed?: number;
}

export interface KMeansResult {
  k: number;
  /** The cluster of every point, 0..k−1. */
  assignments: Int32Array;
  /** k×d centroids, row-major. */
  centroids: Float64Array;
  /** Sum over points of the squared distance to their centroid. */
  inertia: number;
  /** Lloyd iterations of the kept start, and which start it was (0-based). */
  iterations: number;
  restart: number;
  /** Points per cluster. */
  sizes: number[];
}

function checkData(data: ArrayLike<number>, n: number, d: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(d) || n < 1 || d < 1) throw new ProbsemError(`k-means: need positive integer sizes, got ${n}×${d}`, 'BAD_OPTION');
  if (data.length !== n * d) throw new ProbsemError(`k-means: expected ${n}×${d} = ${n * d} values, got ${data.length}`, 'BAD_OPTION');
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new ProbsemError(`k-means: value ${i} (point ${Math.floor(i / d)}, dimension ${i % d}) is ${data[i]}`, 'BAD_OPTION');
  }
}

const dist2 = (x: Float64Array, i: number, c: Float64Array, j: number, d: number) => {
  let s = 0;
  for (let t = 0; t < d; t++) {
    const v = x[i * d + t] - c[j * d + t];
    s += v * v;
  }
  return s;
};

/** Sets best[i] to the squared distance of point i to its nearest of k centroids; returns that centroid. */
function nearestCentroid(x: Float64Array, i: number, c: Float64Array, k: number, d: number, best: Float64Array): number {
  let bj = 0;
  let bs = Infinity;
  for (let j = 0; j < k; j++) {
    const s = dist2(x, i, c, j, d);
    if (s < bs) [bj, bs] = [j, s];
  }
  best[i] = bs;
  return bj;
}

/**
 * k-means++ (Arthur & Vassilvitskii 2007): the first centre a uniformly drawn point, each next one
 * a point drawn with probability proportional to its squared distance to the nearest centre so far.
 */
function seedCentres(x: Float64Array, n: number, d: number, k: number, rng: Rng): Float64Array {
  const c = new Float64Array(k * d);
  const near = new Float64Array(n).fill(Infinity);
  let pick = rng.int(n);
  for (let j = 0; j < k; j++) {
    c.set(x.subarray(pick * d, (pick + 1) * d), j * d);
    if (j === k - 1) break;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const s = dist2(x, i, c, j, d);
      if (s < near[i]) near[i] = s;
      total += near[i];
    }
    if (total === 0) {
      // Fewer distinct points than k: the rest start on uniformly drawn points (duplicates).
      pick = rng.int(n);
      continue;
    }
    let r = rng.uniform() * total;
    pick = n - 1;
    for (let i = 0; i < n; i++) {
      r -= near[i];
      if (r < 0) {
        pick = i;
        break;
      }
    }
  }
  return c;
}

/** One start: k-means++ seeding, then Lloyd iterations until the centroids stop moving. */
function lloyd(x: Float64Array, n: number, d: number, k: number, rng: Rng, maxIterations: number, tol: number) {
  const c = seedCentres(x, n, d, k, rng);
  const assign = new Int32Array(n).fill(-1);
  const best = new Float64Array(n);
  const sums = new Float64Array(k * d);
  const counts = new Int32Array(k);
  let iterations = 0;
  for (let it = 0; it < maxIterations; it++) {
    iterations = it + 1;
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const bj = nearestCentroid(x, i, c, k, d, best);
      if (assign[i] !== bj) changed++;
      assign[i] = bj;
    }
    sums.fill(0);
    counts.fill(0);
    for (let i = 0; i < n; i++) {
      counts[assign[i]]++;
      for (let t = 0; t < d; t++) sums[assign[i] * d + t] += x[i * d + t];
    }
    // An empty cluster takes the point farthest from its centroid (deterministic, and it lowers the inertia).
    for (let j = 0; j < k; j++) {
      if (counts[j] > 0) continue;
      let far = 0;
      for (let i = 1; i < n; i++) if (best[i] > best[far]) far = i;
      const from = assign[far];
      if (counts[from] <= 1) continue; // every point is its own cluster's only member
      counts[from]--;
      for (let t = 0; t < d; t++) sums[from * d + t] -= x[far * d + t];
      assign[far] = j;
      best[far] = 0;
      counts[j] = 1;
      for (let t = 0; t < d; t++) sums[j * d + t] = x[far * d + t];
      changed++;
    }
    let shift = 0;
    for (let j = 0; j < k; j++) {
      if (counts[j] === 0) continue;
      let s = 0;
      for (let t = 0; t < d; t++) {
        const v = sums[j * d + t] / counts[j];
        s += (v - c[j * d + t]) ** 2;
        c[j * d + t] = v;
      }
      if (s > shift) shift = s;
    }
    if (changed === 0 || shift <= tol) break;
  }
  // Final assignment and inertia against the final centroids.
  let inertia = 0;
  for (let i = 0; i < n; i++) {
    assign[i] = nearestCentroid(x, i, c, k, d, best);
    inertia += best[i];
  }
  return { assign, c, inertia, iterations };
}

/** Clusters n points of dimension d (row-major) into k groups by k-means. */
export function kmeans(data: ArrayLike<number>, n: number, d: number, opts: KMeansOptions): KMeansResult {
  checkData(data, n, d);
  const { k } = opts;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new ProbsemError(`k-means: k must be an integer in [1, ${n}] (the number of points), got ${k}`, 'BAD_OPTION');
  const restarts = opts.restarts ?? 10;
  if (!Number.isInteger(restarts) || restarts < 1 || restarts > 10000) throw new ProbsemError(`k-means: restarts must be an integer in [1, 10000], got ${restarts}`, 'BAD_OPTION');
  const maxIterations = opts.maxIterations ?? 300;
  if (!Number.isInteger(maxIterations) || maxIterations < 1) throw new ProbsemError(`k-means: maxIterations must be a positive integer, got ${maxIterations}`, 'BAD_OPTION');
  const tolerance = opts.tolerance ?? 1e-8;
  if (!(tolerance >= 0)) throw new ProbsemError(`k-means: tolerance must be ≥ 0, got ${tolerance}`, 'BAD_OPTION');
  const seed = opts.seed ?? 0;
  const x = Float64Array.from(data);
  // The tolerance is relative to the data's scale: the mean per-dimension variance.
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) mean[t] += x[i * d + t] / n;
  let variance = 0;
  for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) variance += (x[i * d + t] - mean[t]) ** 2 / (n * d);
  let kept: ReturnType<typeof lloyd> | null = null;
  let restart = 0;
  for (let r = 0; r < restarts; r++) {
    const run = lloyd(x, n, d, k, Rng.for(seed, 'kmeans', r), maxIterations, tolerance * variance);
    if (!kept || run.inertia < kept.inertia) [kept, restart] = [run, r];
  }
  const sizes = new Array<number>(k).fill(0);
  for (const a of kept!.assign) sizes[a]++;
  return { k, assignments: kept!.assign, centroids: kept!.c, inertia: kept!.inertia, iterations: kept!.iterations, restart, sizes };
}

/** The contingency table of two labelings of the same items: counts[a][b] over dense ids. */
function contingency(a: ArrayLike<number>, b: ArrayLike<number>, what: string): { table: number[][]; n: number } {
  if (a.length !== b.length) throw new ProbsemError(`${what}: the two labelings have ${a.length} and ${b.length} items`, 'BAD_OPTION');
  if (a.length === 0) throw new ProbsemError(`${what}: no items`, 'BAD_OPTION');
  const ids = (v: ArrayLike<number>, side: string) => {
    const map = new Map<number, number>();
    const out = new Int32Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (!Number.isInteger(x)) throw new ProbsemError(`${what}: ${side} label of item ${i} is ${x}, not an integer`, 'BAD_OPTION');
      let id = map.get(x);
      if (id === undefined) map.set(x, (id = map.size));
      out[i] = id;
    }
    return { out, size: map.size };
  };
  const ia = ids(a, 'first');
  const ib = ids(b, 'second');
  const table = Array.from({ length: ia.size }, () => new Array<number>(ib.size).fill(0));
  for (let i = 0; i < a.length; i++) table[ia.out[i]][ib.out[i]]++;
  return { table, n: a.length };
}

const entropy = (counts: number[], n: number) => counts.reduce((h, c) => (c > 0 ? h - (c / n) * Math.log(c / n) : h), 0);

/**
 * Normalised mutual information of two labelings, I(A; B) / ((H(A) + H(B)) / 2): the arithmetic
 * mean of the entropies in the denominator, as scikit-learn's default. 1 for labelings equal up
 * to renaming, 0 for independent ones; two single-cluster labelings score 1 (as scikit-learn).
 */
export function normalizedMutualInformation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const { table, n } = contingency(a, b, 'NMI');
  const rows = table.map((r) => r.reduce((s, c) => s + c, 0));
  const cols = table[0].map((_, j) => table.reduce((s, r) => s + r[j], 0));
  if (rows.length === 1 && cols.length === 1) return 1;
  let mi = 0;
  for (let i = 0; i < rows.length; i++) {
    for (let j = 0; j < cols.length; j++) {
      const c = table[i][j];
      if (c > 0) mi += (c / n) * Math.log((c * n) / (rows[i] * cols[j]));
    }
  }
  const denom = (entropy(rows, n) + entropy(cols, n)) / 2;
  if (denom <= 0) return 0; // one side a single cluster, the other not: no information shared
  return Math.min(1, Math.max(0, mi / denom));
}

/**
 * Purity of a clustering against labels: each cluster counts its most frequent label, and the
 * counts are summed over clusters and divided by the number of items.
 */
export function purity(clusters: ArrayLike<number>, labels: ArrayLike<number>): number {
  const { table, n } = contingency(clusters, labels, 'purity');
  return table.reduce((s, row) => s + Math.max(...row), 0) / n;
}
