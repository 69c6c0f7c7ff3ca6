/**
 * Agglomerative (connectivity-based) clustering, lecture 003's other family beside k-means: every
 * point starts alone and the two closest clusters merge until one is left; cutting that tree gives
 * k clusters. Ward linkage merges the pair that least increases the within-cluster sum of
 * squares; average linkage uses the mean distance between members.
 *
 * The nearest-neighbour chain algorithm over a condensed distance matrix, updated by the
 * Lance–Williams formulas: O(n²) time and n(n−1)/2 float64s of memory (10,000 points: 400 MB,
 * a few seconds). Both linkages are reducible, so the chain finds exactly the merges of the naive
 * algorithm, and sorting them by height gives the dendrogram. Heights are in distance units, as
 * scipy's `linkage` reports them.
 */
import { ProbsemError } from '../core/errors.js';

export type Linkage = 'ward' | 'average';
export const LINKAGES: readonly Linkage[] = ['ward', 'average'];

export interface AgglomerativeResult {
  /** Cluster of each point, 0..k−1, numbered in order of each cluster's first point. */
  assignments: Int32Array;
  sizes: number[];
  /** The n−1 merges in increasing height: [a, b, height, size] rows, scipy's numbering (new clusters n, n+1, …). */
  merges: Float64Array;
}

const MAX_POINTS = 20_000;

export function agglomerative(data: ArrayLike<number>, n: number, d: number, o: { k: number; linkage: Linkage }): AgglomerativeResult {
  if (data.length !== n * d) throw new ProbsemError(`agglomerative: expected ${n}×${d} values, got ${data.length}`, 'BAD_OPTION');
  if (!LINKAGES.includes(o.linkage)) throw new ProbsemError(`unknown linkage '${o.linkage}': ${LINKAGES.join(' or ')}`, 'BAD_OPTION');
  if (!Number.isInteger(o.k) || o.k < 1 || o.k > n) throw new ProbsemError(`k must be an integer in [1, ${n}], got ${o.k}`, 'BAD_OPTION');
  if (n > MAX_POINTS) throw new ProbsemError(`agglomerative clustering keeps n² distances: at most ${MAX_POINTS} points, got ${n} (sample them)`, 'BAD_OPTION');
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw new ProbsemError(`agglomerative: value ${i} is ${data[i]}`, 'BAD_INPUT');
  const ward = o.linkage === 'ward';
  // Ward works on squared distances (its update is exact there); average on distances.
  const dist = new Float64Array((n * (n - 1)) / 2);
  const at = (i: number, j: number) => (i < j ? n * i - (i * (i + 1)) / 2 + j - i - 1 : n * j - (j * (j + 1)) / 2 + i - j - 1);
  for (let i = 0, p = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++, p++) {
      let s = 0;
      for (let t = 0; t < d; t++) {
        const diff = data[i * d + t] - data[j * d + t];
        s += diff * diff;
      }
      dist[p] = ward ? s : Math.sqrt(s);
    }
  }
  const size = new Float64Array(n).fill(1);
  const active = new Uint8Array(n).fill(1);
  // The cluster id (scipy numbering) each slot currently holds.
  const id = Int32Array.from({ length: n }, (_, i) => i);
  const raw: { a: number; b: number; h: number; size: number }[] = [];
  const chain: number[] = [];
  let nextId = n;
  for (let merged = 0; merged < n - 1; ) {
    if (chain.length === 0) {
      let first = 0;
      while (!active[first]) first++;
      chain.push(first);
    }
    const a = chain[chain.length - 1];
    const prev = chain.length >= 2 ? chain[chain.length - 2] : -1;
    // The nearest active slot; the previous chain element wins ties so the chain cannot cycle.
    let b = prev;
    let best = prev >= 0 ? dist[at(a, prev)] : Infinity;
    for (let c = 0; c < n; c++) {
      if (c === a || !active[c]) continue;
      const v = dist[at(a, c)];
      if (v < best) {
        best = v;
        b = c;
      }
    }
    if (b !== prev) {
      chain.push(b);
      continue;
    }
    chain.length -= 2;
    // Merge slot a into slot b; b keeps the new cluster.
    const na = size[a];
    const nb = size[b];
    const dab = best;
    for (let c = 0; c < n; c++) {
      if (c === a || c === b || !active[c]) continue;
      const dac = dist[at(a, c)];
      const dbc = dist[at(b, c)];
      const nc = size[c];
      dist[at(b, c)] = ward ? ((na + nc) * dac + (nb + nc) * dbc - nc * dab) / (na + nb + nc) : (na * dac + nb * dbc) / (na + nb);
    }
    active[a] = 0;
    size[b] = na + nb;
    raw.push({ a: Math.min(id[a], id[b]), b: Math.max(id[a], id[b]), h: ward ? Math.sqrt(Math.max(0, dab)) : dab, size: na + nb });
    id[b] = nextId++;
    merged++;
  }
  // Order by height and renumber the new clusters in that order (the chain finds merges out of order).
  const order = raw.map((_, i) => i).sort((x, y) => raw[x].h - raw[y].h || x - y);
  const rename = new Map<number, number>();
  order.forEach((r, i) => rename.set(n + r, n + i));
  const merges = new Float64Array((n - 1) * 4);
  order.forEach((r, i) => {
    const m = raw[r];
    const a = m.a < n ? m.a : rename.get(m.a)!;
    const b = m.b < n ? m.b : rename.get(m.b)!;
    merges.set([Math.min(a, b), Math.max(a, b), m.h, m.size], i * 4);
  });
  return { ...cutTree(merges, n, o.k), merges };
}

/** The k clusters left after the first n−k merges (by height). */
function cutTree(merges: Float64Array, n: number, k: number): { assignments: Int32Array; sizes: number[] } {
  const parent = Int32Array.from({ length: 2 * n - 1 }, (_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  };
  for (let i = 0; i < n - k; i++) {
    parent[find(merges[i * 4])] = n + i;
    parent[find(merges[i * 4 + 1])] = n + i;
  }
  const label = new Map<number, number>();
  const assignments = new Int32Array(n);
  const sizes: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = find(i);
    if (!label.has(r)) {
      label.set(r, label.size);
      sizes.push(0);
    }
    assignments[i] = label.get(r)!;
    sizes[assignments[i]]++;
  }
  return { assignments, sizes };
}
