/**
 * Metric-learning measures of an embedding (posterior means): triplet accuracy (the TVAE paper's
 * measure) and the retrieval measures of "A Metric Learning Reality Check" (Musgrave et al. 2020):
 * precision@1, R-precision and MAP@R of queries against a labelled reference set. All Euclidean, on
 * plain arrays; float64 accumulation.
 */
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';
import type { Triplets } from '../data/triplets.js';

function checkPoints(name: string, points: Float32Array, n: number, dim: number): void {
  if (!(dim >= 1) || points.length !== n * dim) {
    throw new ProbsemError(`${name}: expected ${n}×${dim} values, got ${points.length}`, 'BAD_INPUT');
  }
  for (let i = 0; i < points.length; i++) {
    if (!Number.isFinite(points[i])) throw new ProbsemError(`${name}: value ${i} (row ${Math.floor(i / dim)}) is not finite`, 'BAD_INPUT');
  }
}

function distance(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let s = 0;
  for (let d = 0; d < dim; d++) {
    const v = a[i * dim + d] - b[j * dim + d];
    s += v * v;
  }
  return Math.sqrt(s);
}

export interface TripletAccuracy {
  /** Share of triplets with zero loss: D(a,n) ≥ D(a,p) + margin. */
  accuracy: number;
  /** Share with D(a,n) > D(a,p): the ordering alone, free of the embedding's scale. */
  accuracyNoMargin: number;
  margin: number;
  triplets: number;
}

/**
 * Triplet accuracy of an embedding [n, dim]: the share of triplets whose loss
 * max(0, D(a,p) − D(a,n) + margin) is zero, as the TVAE paper defines it.
 */
export function tripletAccuracy(points: Float32Array, n: number, dim: number, t: Triplets, margin: number): TripletAccuracy {
  checkPoints('triplet accuracy', points, n, dim);
  if (!(margin >= 0)) throw new ProbsemError(`triplet accuracy: margin must be ≥ 0, got ${margin}`, 'BAD_OPTION');
  const count = t.anchor.length;
  if (count === 0) throw new ProbsemError('triplet accuracy: no triplets', 'BAD_INPUT');
  let zeroLoss = 0;
  let ordered = 0;
  for (let i = 0; i < count; i++) {
    const dp = distance(points, t.anchor[i], points, t.positive[i], dim);
    const dn = distance(points, t.anchor[i], points, t.negative[i], dim);
    if (dp - dn + margin <= 0) zeroLoss++;
    if (dn > dp) ordered++;
  }
  return { accuracy: zeroLoss / count, accuracyNoMargin: ordered / count, margin, triplets: count };
}

export interface RetrievalMeasures {
  /** Share of queries whose nearest reference has the query's label. */
  precisionAt1: number;
  /** Mean over queries of the share of same-label references among the R nearest (R: the number of references with the query's label). */
  rPrecision: number;
  /** Mean over queries of (1/R) Σ_{i ≤ R, i-th nearest relevant} precision@i. */
  mapAtR: number;
  queries: number;
  references: number;
}

/**
 * Precision@1, R-precision and MAP@R of query points against reference points by Euclidean
 * distance. maxQueries, with rng, evaluates a seeded sample of the queries (each query costs a pass
 * over every reference and a sort). Queries whose label no reference has are refused.
 */
export function retrievalMeasures(
  queries: Float32Array,
  queryLabels: ArrayLike<number>,
  refs: Float32Array,
  refLabels: ArrayLike<number>,
  dim: number,
  o: { maxQueries?: number; rng?: Rng } = {},
): RetrievalMeasures {
  const nq = queryLabels.length;
  const nr = refLabels.length;
  checkPoints('retrieval queries', queries, nq, dim);
  checkPoints('retrieval references', refs, nr, dim);
  const perClass = new Map<number, number>();
  for (let i = 0; i < nr; i++) perClass.set(refLabels[i], (perClass.get(refLabels[i]) ?? 0) + 1);
  let order = Array.from({ length: nq }, (_, i) => i);
  if (o.maxQueries !== undefined && o.maxQueries < nq) {
    if (!o.rng) throw new ProbsemError('retrieval measures: a query sample needs an rng', 'BAD_OPTION');
    order = Array.from(o.rng.permutation(nq).subarray(0, o.maxQueries));
  }
  const d = new Float64Array(nr);
  const sorted = new Float64Array(nr);
  let p1 = 0;
  let rp = 0;
  let map = 0;
  for (const q of order) {
    const label = queryLabels[q];
    const R = perClass.get(label) ?? 0;
    if (R === 0) throw new ProbsemError(`retrieval measures: no reference has label ${label} (query ${q})`, 'BAD_INPUT');
    for (let r = 0; r < nr; r++) d[r] = distance(queries, q, refs, r, dim);
    sorted.set(d);
    sorted.sort();
    // The R nearest: everything up to the R-th smallest distance, ordered by distance.
    const cut = sorted[R - 1];
    const near: number[] = [];
    for (let r = 0; r < nr; r++) if (d[r] <= cut) near.push(r);
    near.sort((a, b) => d[a] - d[b] || a - b);
    let hits = 0;
    let ap = 0;
    for (let i = 0; i < R; i++) {
      if (refLabels[near[i]] !== label) continue;
      hits++;
      ap += hits / (i + 1);
    }
    if (refLabels[near[0]] === label) p1++;
    rp += hits / R;
    map += ap / R;
  }
  const n = order.length;
  return { precisionAt1: p1 / n, rPrecision: rp / n, mapAtR: map / n, queries: n, references: nr };
}
