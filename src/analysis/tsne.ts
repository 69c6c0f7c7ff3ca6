/**
 * Barnes–Hut t-SNE (van der Maaten 2014, "Accelerating t-SNE using tree-based algorithms"):
 * input similarities P from a perplexity-calibrated Gaussian over each point's 3·perplexity
 * nearest neighbours (exact kNN), symmetrised and sparse; the gradient's attraction summed over
 * those neighbours and its repulsion over a quadtree whose far cells count as their centre of
 * mass (θ = 0.5); early exaggeration, momentum and per-coordinate gains as in that paper. The
 * gradient is written without its constant factor 4, as in bhtsne and openTSNE, so the step size
 * means what it means there.
 *
 * Written here because none of the npm packages looked at fits: druidjs's t-SNE (like tsne-js)
 * is exact, O(n²) time and memory per step — at 10,000 points it fails, its n×n wasm buffers
 * passing a 2 GiB offset — and @tensorflow/tfjs-tsne needs WebGL. This one costs O(n²·d) once
 * for the neighbours and O(n log n) per step.
 */
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import { pca } from './projection.js';

export interface TsneOptions {
  /** Effective number of neighbours (default 30), lowered to (n − 1)/3 for small inputs. */
  perplexity?: number;
  /** Barnes–Hut accuracy: a cell of side s at distance r counts as one point when s/r < θ (default 0.5; 0: exact repulsion). */
  theta?: number;
  /** Gradient steps in all (default 750: 250 exaggerated, then 500). */
  iterations?: number;
  /** Steps with the attraction multiplied by `exaggeration` and momentum 0.5 (default 250). */
  exaggerationIterations?: number;
  /** Early exaggeration factor (default 12). */
  exaggeration?: number;
  /** Step size (default max(n / exaggeration, 200): Belkina et al. 2019, so large maps converge in the same steps). */
  learningRate?: number;
  /** Start: 'pca' (default: the first two principal components scaled to std 1e-4, which keeps the global layout) or 'random' (seeded N(0, 1e-4²)). */
  init?: 'pca' | 'random';
  /** Seed of the random start (default 0). */
  seed?: number;
  /** Called after each step (1-based) with the total; for progress reports. */
  onIteration?: (iteration: number, total: number) => void;
}

export interface TsneResult {
  /** n×2 coordinates, row-major, centred. */
  coords: Float64Array;
  /** KL(P ‖ Q) of the final map (Z estimated by the same tree). */
  kl: number;
  /** The perplexity used (after lowering for small n) and the neighbours per point. */
  perplexity: number;
  neighbours: number;
}

/** Each point's k nearest neighbours (squared Euclidean, self excluded), nearest first. */
export interface Neighbours {
  n: number;
  k: number;
  /** n×k indices. */
  index: Int32Array;
  /** n×k squared distances, ascending per row. */
  dist2: Float64Array;
}

/**
 * Exact k nearest neighbours by one pass over the pairs (each pair's distance computed once and
 * offered to both points' bounded max-heaps). O(n²·d): about a second for 10,000 × 20.
 * (Exact up to rounding: two candidates whose distances differ by ~1e-15 relative may swap.)
 */
export function exactNeighbours(data: ArrayLike<number>, n: number, d: number, k: number): Neighbours {
  checkData(data, n, d, 'neighbours');
  if (!Number.isInteger(k) || k < 1 || k > n - 1) throw new ProbsemError(`neighbours: k must be an integer in [1, ${n - 1}], got ${k}`, 'BAD_OPTION');
  const x = Float64Array.from(data as ArrayLike<number>);
  const hd = new Float64Array(n * k).fill(Infinity);
  const hi = new Int32Array(n * k).fill(-1);
  // Each heap's root (its k-th smallest so far) also in one dense array: the test that rejects
  // almost every pair then reads contiguous memory instead of a cache line per point.
  const top = new Float64Array(n).fill(Infinity);
  // Sift-down of point p's max-heap of k entries, after its root was replaced by (dist, j).
  const offer = (p: number, dist: number, j: number) => {
    const base = p * k;
    let at = 0;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= k) break;
      const r = l + 1;
      const big = r < k && hd[base + r] > hd[base + l] ? r : l;
      if (hd[base + big] <= dist) break;
      hd[base + at] = hd[base + big];
      hi[base + at] = hi[base + big];
      at = big;
    }
    hd[base + at] = dist;
    hi[base + at] = j;
    top[p] = hd[base];
  };
  // ‖xi − xj‖² = ‖xi‖² + ‖xj‖² − 2 xi·xj on centred data (small norms, so little cancellation),
  // four j at a time so each xi[t] loaded serves four products. The chosen neighbours' distances
  // are recomputed exactly below.
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) mean[t] += x[i * d + t] / n;
  for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) x[i * d + t] -= mean[t];
  const norm = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += x[i * d + t] ** 2;
    norm[i] = s;
  }
  const near = (i: number, j: number, dot: number) => {
    const s = Math.max(0, norm[i] + norm[j] - 2 * dot);
    if (s < top[i]) offer(i, s, j);
    if (s < top[j]) offer(j, s, i);
  };
  for (let i = 0; i < n; i++) {
    const oi = i * d;
    let j = i + 1;
    for (; j + 3 < n; j += 4) {
      const o0 = j * d;
      const o1 = o0 + d;
      const o2 = o1 + d;
      const o3 = o2 + d;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let t = 0; t < d; t++) {
        const v = x[oi + t];
        s0 += v * x[o0 + t];
        s1 += v * x[o1 + t];
        s2 += v * x[o2 + t];
        s3 += v * x[o3 + t];
      }
      near(i, j, s0);
      near(i, j + 1, s1);
      near(i, j + 2, s2);
      near(i, j + 3, s3);
    }
    for (; j < n; j++) {
      let s0 = 0;
      for (let t = 0; t < d; t++) s0 += x[oi + t] * x[j * d + t];
      near(i, j, s0);
    }
  }
  // Heaps to ascending rows.
  const order = Array.from({ length: k }, (_, t) => t);
  const index = new Int32Array(n * k);
  const dist2 = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    const base = i * k;
    for (let t = 0; t < k; t++) {
      const j = hi[base + t];
      let s = 0;
      for (let u = 0; u < d; u++) s += (x[i * d + u] - x[j * d + u]) ** 2;
      hd[base + t] = s;
    }
    order.sort((a, b) => hd[base + a] - hd[base + b] || hi[base + a] - hi[base + b]);
    for (let t = 0; t < k; t++) {
      index[base + t] = hi[base + order[t]];
      dist2[base + t] = hd[base + order[t]];
    }
  }
  return { n, k, index, dist2 };
}

/** A symmetric sparse matrix in compressed rows: row i's entries are col/val[rowStart[i] .. rowStart[i+1]). */
export interface SparseAffinities {
  n: number;
  rowStart: Int32Array;
  col: Int32Array;
  val: Float64Array;
  /** Each point's calibrated precision β_i (of squared distances). */
  beta: Float64Array;
}

/**
 * t-SNE's input similarities: p(j|i) ∝ exp(−β_i‖x_i − x_j‖²) over i's neighbours, β_i found by
 * bisection so the row's perplexity 2^H equals `perplexity`; then p_ij = (p(j|i) + p(i|j)) / 2n,
 * which sums to 1.
 */
export function perplexityAffinities(nb: Neighbours, perplexity: number): SparseAffinities {
  const { n, k, index, dist2 } = nb;
  if (!(perplexity >= 1)) throw new ProbsemError(`perplexity must be ≥ 1, got ${perplexity}`, 'BAD_OPTION');
  const target = Math.log(perplexity);
  const cond = new Float64Array(n * k);
  const betas = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const base = i * k;
    // Distances relative to the nearest: the same normalised row, without exp underflow.
    const d0 = dist2[base];
    let beta = 1;
    let lo = 0;
    let hi = Infinity;
    // Scale the first guess to the row so the bisection starts near the answer.
    const spread = dist2[base + k - 1] - d0;
    if (spread > 0) beta = 1 / spread;
    for (let it = 0; it < 200; it++) {
      let sum = 0;
      let dsum = 0;
      for (let t = 0; t < k; t++) {
        const dd = dist2[base + t] - d0;
        const p = Math.exp(-beta * dd);
        cond[base + t] = p;
        sum += p;
        dsum += dd * p;
      }
      const h = Math.log(sum) + (beta * dsum) / sum;
      if (Math.abs(h - target) < 1e-5) break;
      if (h > target) {
        lo = beta;
        beta = hi === Infinity ? beta * 2 : (beta + hi) / 2;
      } else {
        hi = beta;
        beta = (beta + lo) / 2;
      }
    }
    betas[i] = beta;
    let sum = 0;
    for (let t = 0; t < k; t++) sum += cond[base + t];
    for (let t = 0; t < k; t++) cond[base + t] /= sum;
  }
  // Both directions of every neighbour pair, then duplicates merged row by row.
  const count = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < k; t++) {
      count[i]++;
      count[index[i * k + t]]++;
    }
  }
  const start = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) start[i + 1] = start[i] + count[i];
  const fill = start.slice(0, n);
  const rawCol = new Int32Array(start[n]);
  const rawVal = new Float64Array(start[n]);
  for (let i = 0; i < n; i++) {
    for (let t = 0; t < k; t++) {
      const j = index[i * k + t];
      const p = cond[i * k + t];
      rawCol[fill[i]] = j;
      rawVal[fill[i]++] = p;
      rawCol[fill[j]] = i;
      rawVal[fill[j]++] = p;
    }
  }
  const slot = new Int32Array(n).fill(-1);
  const rowStart = new Int32Array(n + 1);
  const col = new Int32Array(start[n]);
  const val = new Float64Array(start[n]);
  let nnz = 0;
  for (let i = 0; i < n; i++) {
    rowStart[i] = nnz;
    for (let e = start[i]; e < start[i + 1]; e++) {
      const j = rawCol[e];
      if (slot[j] < 0) {
        slot[j] = nnz;
        col[nnz] = j;
        val[nnz++] = rawVal[e] / (2 * n);
      } else {
        val[slot[j]] += rawVal[e] / (2 * n);
      }
    }
    for (let e = rowStart[i]; e < nnz; e++) slot[col[e]] = -1;
  }
  rowStart[n] = nnz;
  return { n, rowStart, col: col.slice(0, nnz), val: val.slice(0, nnz), beta: betas };
}

/** Points per leaf: a leaf is also the group of points that walk the tree together. */
const LEAF_SIZE = 16;

/**
 * A quadtree over 2-D positions, rebuilt every step by partitioning the points (O(n log n)). The
 * nodes are laid out in depth-first preorder — node p's subtree is the run [p, skip[p]), its first
 * child is p + 1 — and the points are permuted into the same order, so every node's points are
 * one contiguous run [first[p], last[p]) of (px, py). Leaves hold up to LEAF_SIZE points; below a
 * width of 1e-12 of the root's, coincident points stay in one leaf instead of splitting for ever.
 */
class QuadTree {
  nodes = 0;
  /** Position → point index. */
  order = new Int32Array(0);
  px = new Float64Array(0);
  py = new Float64Array(0);
  /** Per node, 4 numbers: centre of mass x, y; (side / θ)², far when below the squared distance; point count. */
  packed = new Float64Array(0);
  skip = new Int32Array(0);
  first = new Int32Array(0);
  last = new Int32Array(0);
  /** The leaves in preorder: the groups of points whose forces are computed together. */
  leaves = new Int32Array(0);
  leafCount = 0;
  private so = new Int32Array(0);
  private sx = new Float64Array(0);
  private sy = new Float64Array(0);
  private quad = new Uint8Array(0);
  private t2 = 0;
  private minHalf = 0;

  build(y: Float64Array, n: number, theta: number): void {
    if (this.order.length !== n) {
      this.order = new Int32Array(n);
      this.px = new Float64Array(n);
      this.py = new Float64Array(n);
      this.so = new Int32Array(n);
      this.sx = new Float64Array(n);
      this.sy = new Float64Array(n);
      this.quad = new Uint8Array(n);
      this.leaves = new Int32Array(n);
      // Leaves hold ≥ 1 point and every split has ≥ 2 non-empty children: < 2n nodes, bar the
      // chains of single-child cells coincident points make (growNodes handles those).
      this.allocNodes(2 * n + 64);
    }
    this.t2 = theta * theta;
    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const a = y[2 * i];
      const b = y[2 * i + 1];
      this.order[i] = i;
      this.px[i] = a;
      this.py[i] = b;
      if (a < x0) x0 = a;
      if (a > x1) x1 = a;
      if (b < y0) y0 = b;
      if (b > y1) y1 = b;
    }
    const half = (Math.max(x1 - x0, y1 - y0) / 2) * (1 + 1e-9) + 1e-300;
    this.minHalf = half * 1e-12;
    this.nodes = 0;
    this.leafCount = 0;
    this.emit(0, n, (x0 + x1) / 2, (y0 + y1) / 2, half);
  }

  /** Emits the node over positions [lo, hi) in cell (cx, cy, half) and its subtree, in preorder. */
  private emit(lo: number, hi: number, cx: number, cy: number, half: number): void {
    const p = this.nodes++;
    if (p >= this.skip.length) this.allocNodes(2 * this.skip.length);
    const { px, py } = this;
    const c = hi - lo;
    const side = 2 * half;
    this.packed[4 * p + 2] = this.t2 > 0 ? (side * side) / this.t2 : Infinity;
    this.packed[4 * p + 3] = c;
    this.first[p] = lo;
    this.last[p] = hi;
    let mx = 0;
    let my = 0;
    if (c <= LEAF_SIZE || half < this.minHalf) {
      this.leaves[this.leafCount++] = p;
      for (let t = lo; t < hi; t++) {
        mx += px[t];
        my += py[t];
      }
    } else {
      // Counting sort of the run by quadrant (x ≥ cx: +1, y ≥ cy: +2), moving points with their positions.
      const { quad, order, so, sx, sy } = this;
      let c0 = 0;
      let c1 = 0;
      let c2 = 0;
      for (let t = lo; t < hi; t++) {
        const q = (px[t] >= cx ? 1 : 0) + (py[t] >= cy ? 2 : 0);
        quad[t] = q;
        if (q === 0) c0++;
        else if (q === 1) c1++;
        else if (q === 2) c2++;
      }
      const start = [lo, lo + c0, lo + c0 + c1, lo + c0 + c1 + c2, hi];
      const at = start.slice(0, 4);
      for (let t = lo; t < hi; t++) {
        const to = at[quad[t]]++;
        so[to] = order[t];
        sx[to] = px[t];
        sy[to] = py[t];
      }
      order.set(so.subarray(lo, hi), lo);
      px.set(sx.subarray(lo, hi), lo);
      py.set(sy.subarray(lo, hi), lo);
      const h = half / 2;
      for (let q = 0; q < 4; q++) {
        if (start[q + 1] === start[q]) continue;
        const child = this.nodes;
        this.emit(start[q], start[q + 1], cx + (q & 1 ? h : -h), cy + (q & 2 ? h : -h), h);
        const m = this.packed[4 * child + 3];
        mx += this.packed[4 * child] * m;
        my += this.packed[4 * child + 1] * m;
      }
    }
    this.packed[4 * p] = mx / c;
    this.packed[4 * p + 1] = my / c;
    this.skip[p] = this.nodes;
  }

  private allocNodes(cap: number): void {
    const grow = <T extends Float64Array | Int32Array>(a: T, size: number): T => {
      const b = new (a.constructor as new (n: number) => T)(size);
      b.set(a.subarray(0, Math.min(a.length, size)));
      return b;
    };
    this.packed = grow(this.packed, 4 * cap);
    this.skip = grow(this.skip, cap);
    this.first = grow(this.first, cap);
    this.last = grow(this.last, cap);
  }
}

/**
 * The repulsive part of the t-SNE gradient by Barnes–Hut: for every point i, Σ_j w_ij²(y_i − y_j)
 * into (fx, fy) with w_ij = 1/(1 + ‖y_i − y_j‖²), and returns Z = Σ_{i≠j} w_ij. θ = 0 is exact.
 */
export function repulsion(y: Float64Array, n: number, theta: number, fx: Float64Array, fy: Float64Array): number {
  return repulsionIn(new QuadTree(), y, n, theta, fx, fy);
}

/** Growable interaction list: positions and masses one group of points interacts with. */
let listX = new Float64Array(1024);
let listY = new Float64Array(1024);
let listM = new Float64Array(1024);

/**
 * The points of one leaf walk the tree together (Barnes 1990): a cell counts as one mass at its
 * centre for the whole group when side / (distance from the group's bounding box to the centre)
 * < θ — for each point that is the usual criterion with a distance no larger than its own, so the
 * approximation is at least as accurate as point-by-point Barnes–Hut — and the points of a near
 * leaf count one by one. The walk collects that interaction list once per group; each point of
 * the group then sums over it in registers (two points at a time, to overlap the divisions).
 */
function repulsionIn(tree: QuadTree, y: Float64Array, n: number, theta: number, fx: Float64Array, fy: Float64Array): number {
  tree.build(y, n, theta);
  const { packed, skip, first, last, nodes, px, py, order, leaves, leafCount } = tree;
  let z = 0;
  for (let gi = 0; gi < leafCount; gi++) {
    const g = leaves[gi];
    const g0 = first[g];
    const g1 = last[g];
    let bx0 = Infinity;
    let bx1 = -Infinity;
    let by0 = Infinity;
    let by1 = -Infinity;
    for (let t = g0; t < g1; t++) {
      if (px[t] < bx0) bx0 = px[t];
      if (px[t] > bx1) bx1 = px[t];
      if (py[t] < by0) by0 = py[t];
      if (py[t] > by1) by1 = py[t];
    }
    let len = 0;
    let p = 0;
    while (p < nodes) {
      const o = 4 * p;
      const cx = packed[o];
      const cy = packed[o + 1];
      const ddx = cx < bx0 ? bx0 - cx : cx > bx1 ? cx - bx1 : 0;
      const ddy = cy < by0 ? by0 - cy : cy > by1 ? cy - by1 : 0;
      const next = skip[p];
      if (packed[o + 2] < ddx * ddx + ddy * ddy) {
        if (len === listX.length) growList();
        listX[len] = cx;
        listY[len] = cy;
        listM[len++] = packed[o + 3];
        p = next;
      } else if (next === p + 1) {
        const s1 = last[p];
        while (len + (s1 - first[p]) > listX.length) growList();
        for (let s = first[p]; s < s1; s++) {
          listX[len] = px[s];
          listY[len] = py[s];
          listM[len++] = 1;
        }
        p = next;
      } else {
        p++;
      }
    }
    const lx = listX;
    const ly = listY;
    const lm = listM;
    let t = g0;
    for (; t + 1 < g1; t += 2) {
      const x0 = px[t];
      const y0 = py[t];
      const x1 = px[t + 1];
      const y1 = py[t + 1];
      let q0 = 0;
      let ax0 = 0;
      let ay0 = 0;
      let q1 = 0;
      let ax1 = 0;
      let ay1 = 0;
      for (let s = 0; s < len; s++) {
        const sx = lx[s];
        const sy = ly[s];
        const ms = lm[s];
        const dx0 = x0 - sx;
        const dy0 = y0 - sy;
        const w0 = 1 / (1 + dx0 * dx0 + dy0 * dy0);
        const m0 = ms * w0;
        q0 += m0;
        ax0 += m0 * w0 * dx0;
        ay0 += m0 * w0 * dy0;
        const dx1 = x1 - sx;
        const dy1 = y1 - sy;
        const w1 = 1 / (1 + dx1 * dx1 + dy1 * dy1);
        const m1 = ms * w1;
        q1 += m1;
        ax1 += m1 * w1 * dx1;
        ay1 += m1 * w1 * dy1;
      }
      // Each point met itself once in its own leaf, at distance 0 (w = 1).
      z += q0 + q1 - 2;
      fx[order[t]] = ax0;
      fy[order[t]] = ay0;
      fx[order[t + 1]] = ax1;
      fy[order[t + 1]] = ay1;
    }
    if (t < g1) {
      const x0 = px[t];
      const y0 = py[t];
      let q0 = 0;
      let ax0 = 0;
      let ay0 = 0;
      for (let s = 0; s < len; s++) {
        const dx0 = x0 - lx[s];
        const dy0 = y0 - ly[s];
        const w0 = 1 / (1 + dx0 * dx0 + dy0 * dy0);
        const m0 = lm[s] * w0;
        q0 += m0;
        ax0 += m0 * w0 * dx0;
        ay0 += m0 * w0 * dy0;
      }
      z += q0 - 1;
      fx[order[t]] = ax0;
      fy[order[t]] = ay0;
    }
  }
  return z;
}

function growList(): void {
  const grow = (a: Float64Array) => {
    const b = new Float64Array(2 * a.length);
    b.set(a);
    return b;
  };
  listX = grow(listX);
  listY = grow(listY);
  listM = grow(listM);
}

/** The attractive part: Σ_j p_ij w_ij (y_i − y_j) over the sparse P, into (fx, fy). */
export function attraction(p: SparseAffinities, y: Float64Array, fx: Float64Array, fy: Float64Array): void {
  const { n, rowStart, col, val } = p;
  for (let i = 0; i < n; i++) {
    const xi = y[2 * i];
    const yi = y[2 * i + 1];
    let ax = 0;
    let ay = 0;
    let bx = 0;
    let by = 0;
    const end = rowStart[i + 1];
    let e = rowStart[i];
    // Two entries at a time, into two sums, so consecutive divisions overlap.
    for (; e + 1 < end; e += 2) {
      const j = col[e];
      const k = col[e + 1];
      const dx = xi - y[2 * j];
      const dy = yi - y[2 * j + 1];
      const ex = xi - y[2 * k];
      const ey = yi - y[2 * k + 1];
      const pw = val[e] / (1 + dx * dx + dy * dy);
      const qw = val[e + 1] / (1 + ex * ex + ey * ey);
      ax += pw * dx;
      ay += pw * dy;
      bx += qw * ex;
      by += qw * ey;
    }
    if (e < end) {
      const j = col[e];
      const dx = xi - y[2 * j];
      const dy = yi - y[2 * j + 1];
      const pw = val[e] / (1 + dx * dx + dy * dy);
      ax += pw * dx;
      ay += pw * dy;
    }
    fx[i] = ax + bx;
    fy[i] = ay + by;
  }
}

/** KL(P ‖ Q) over P's non-zeros, q_ij = w_ij / Z. */
function klDivergence(p: SparseAffinities, y: Float64Array, z: number): number {
  let kl = 0;
  for (let i = 0; i < p.n; i++) {
    for (let e = p.rowStart[i]; e < p.rowStart[i + 1]; e++) {
      const j = p.col[e];
      const dx = y[2 * i] - y[2 * j];
      const dy = y[2 * i + 1] - y[2 * j + 1];
      const q = 1 / (1 + dx * dx + dy * dy) / z;
      const v = p.val[e];
      if (v > 0) kl += v * Math.log(v / Math.max(q, 1e-300));
    }
  }
  return kl;
}

function checkData(data: ArrayLike<number>, n: number, d: number, what: string): void {
  if (!Number.isInteger(n) || !Number.isInteger(d) || n < 1 || d < 1) throw new ProbsemError(`${what}: need positive integer sizes, got ${n}×${d}`, 'BAD_OPTION');
  if (data.length !== n * d) throw new ProbsemError(`${what}: expected ${n}×${d} = ${n * d} values, got ${data.length}`, 'BAD_OPTION');
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new ProbsemError(`${what}: value ${i} (point ${Math.floor(i / d)}, dimension ${i % d}) is ${data[i]}`, 'BAD_OPTION');
  }
}

/** Everything an optimisation needs, validated. */
interface Problem {
  n: number;
  p: SparseAffinities;
  y: Float64Array;
  theta: number;
  iterations: number;
  exIters: number;
  exaggeration: number;
  eta: number;
  perplexity: number;
  k: number;
  onIteration?: (iteration: number, total: number) => void;
}

/** Checks the options (before any work, so a bad call fails at once). */
function settings(data: ArrayLike<number>, n: number, d: number, opts: TsneOptions) {
  checkData(data, n, d, 't-SNE');
  if (n < 3) throw new ProbsemError(`t-SNE needs at least 3 points, got ${n}`, 'BAD_OPTION');
  const requested = opts.perplexity ?? 30;
  if (!Number.isFinite(requested) || requested < 1) throw new ProbsemError(`t-SNE perplexity must be a number ≥ 1, got ${requested}`, 'BAD_OPTION');
  const theta = opts.theta ?? 0.5;
  if (!(theta >= 0 && theta <= 1)) throw new ProbsemError(`t-SNE theta must be in [0, 1], got ${theta}`, 'BAD_OPTION');
  const iterations = opts.iterations ?? 750;
  const exIters = opts.exaggerationIterations ?? Math.min(250, iterations);
  const exaggeration = opts.exaggeration ?? 12;
  for (const [name, v] of [['iterations', iterations], ['exaggerationIterations', exIters]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 1e6) throw new ProbsemError(`t-SNE ${name} must be an integer in [0, 1000000], got ${v}`, 'BAD_OPTION');
  }
  if (!(exaggeration >= 1 && Number.isFinite(exaggeration))) throw new ProbsemError(`t-SNE exaggeration must be ≥ 1, got ${exaggeration}`, 'BAD_OPTION');
  const eta = opts.learningRate ?? Math.max(n / exaggeration, 200);
  if (!(eta > 0 && Number.isFinite(eta))) throw new ProbsemError(`t-SNE learningRate must be > 0, got ${eta}`, 'BAD_OPTION');
  const init = opts.init ?? 'pca';
  if (init !== 'pca' && init !== 'random') throw new ProbsemError(`t-SNE init must be 'pca' or 'random', got '${String(init)}'`, 'BAD_OPTION');
  return { theta, iterations, exIters, exaggeration, eta, init, requested };
}

/** The affinities and the start: O(n²·d) neighbours, then the PCA (or seeded random) layout. */
function prepare(data: ArrayLike<number>, n: number, d: number, opts: TsneOptions): Problem {
  const { theta, iterations, exIters, exaggeration, eta, init, requested } = settings(data, n, d, opts);
  // Small inputs: fewer neighbours than 3·perplexity exist, so the perplexity comes down with them.
  const perplexity = Math.max(1, Math.min(requested, (n - 1) / 3));
  const k = Math.min(n - 1, Math.max(1, Math.floor(3 * perplexity)));
  const p = perplexityAffinities(exactNeighbours(data, n, d, k), perplexity);

  const y = new Float64Array(2 * n);
  if (init === 'pca') {
    const dims = Math.min(2, d);
    const c = pca(Float64Array.from(data), n, d, dims).coords;
    let sd = 0;
    for (let i = 0; i < n; i++) sd += c[i * dims] ** 2;
    sd = Math.sqrt(sd / n);
    const scale = sd > 0 ? 1e-4 / sd : 0;
    for (let i = 0; i < n; i++) for (let t = 0; t < dims; t++) y[2 * i + t] = c[i * dims + t] * scale;
    // A degenerate start (all points equal, or d = 1) gets seeded noise to break the tie.
    if (scale === 0 || dims < 2) {
      const rng = Rng.for(opts.seed ?? 0, 'tsne-init');
      for (let i = 0; i < 2 * n; i++) if (scale === 0 || i % 2 === 1) y[i] = rng.normal() * 1e-4;
    }
  } else {
    const rng = Rng.for(opts.seed ?? 0, 'tsne-init');
    for (let i = 0; i < 2 * n; i++) y[i] = rng.normal() * 1e-4;
  }
  return { n, p, y, theta, iterations, exIters, exaggeration, eta, perplexity, k, onIteration: opts.onIteration };
}

/** Gradient descent with momentum and gains (van der Maaten 2014). */
function optimise(pr: Problem): TsneResult {
  const { n, p, y, theta, iterations, exIters, exaggeration, eta } = pr;
  const tree = new QuadTree();
  const rx = new Float64Array(n);
  const ry = new Float64Array(n);
  const repel = () => repulsionIn(tree, y, n, theta, rx, ry);
  const update = new Float64Array(2 * n);
  const gains = new Float64Array(2 * n).fill(1);
  const ax = new Float64Array(n);
  const ay = new Float64Array(n);
  for (let it = 0; it < iterations; it++) {
    const early = it < exIters;
    const ex = early ? exaggeration : 1;
    const momentum = early ? 0.5 : 0.8;
    attraction(p, y, ax, ay);
    const z = Math.max(repel(), 1e-300);
    let mx = 0;
    let my = 0;
    for (let i = 0; i < n; i++) {
      for (let t = 0; t < 2; t++) {
        const e = 2 * i + t;
        const g = t === 0 ? ex * ax[i] - rx[i] / z : ex * ay[i] - ry[i] / z;
        const u = update[e];
        // Gains (Jacobs 1988): grow while the gradient keeps reversing the step, shrink otherwise.
        const gain = (g > 0) !== (u > 0) ? gains[e] + 0.2 : Math.max(gains[e] * 0.8, 0.01);
        gains[e] = gain;
        const nu = momentum * u - eta * gain * g;
        update[e] = nu;
        y[e] += nu;
      }
      mx += y[2 * i];
      my += y[2 * i + 1];
    }
    mx /= n;
    my /= n;
    for (let i = 0; i < n; i++) {
      y[2 * i] -= mx;
      y[2 * i + 1] -= my;
    }
    pr.onIteration?.(it + 1, iterations);
  }
  // Z for the final positions (the loop's Z belongs to the positions before the last step).
  const z = Math.max(repel(), 1e-300);
  return { coords: y, kl: klDivergence(p, y, z), perplexity: pr.perplexity, neighbours: pr.k };
}

/** Maps n points of dimension d (row-major) to 2-D by Barnes–Hut t-SNE. */
export function tsne(data: ArrayLike<number>, n: number, d: number, opts: TsneOptions = {}): TsneResult {
  return optimise(prepare(data, n, d, opts));
}

/**
 * Leave-one-out k-nearest-neighbour accuracy of a map: the share of points whose k nearest others
 * (Euclidean, in `dim` dimensions) hold their label as the majority (a tie goes to the label that reached the count first).
 */
export function knnAccuracy(coords: ArrayLike<number>, n: number, dim: number, labels: ArrayLike<number>, k = 10): number {
  checkData(coords, n, dim, 'knnAccuracy');
  if (labels.length !== n) throw new ProbsemError(`knnAccuracy: ${n} points but ${labels.length} labels`, 'BAD_OPTION');
  const kk = Math.min(k, n - 1);
  const nb = exactNeighbours(coords, n, dim, kk);
  let right = 0;
  const votes = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    votes.clear();
    let best = -1;
    let bestVotes = 0;
    for (let t = 0; t < kk; t++) {
      const l = labels[nb.index[i * kk + t]];
      const v = (votes.get(l) ?? 0) + 1;
      votes.set(l, v);
      if (v > bestVotes) [best, bestVotes] = [l, v];
    }
    if (best === labels[i]) right++;
  }
  return right / n;
}

/**
 * Trustworthiness (Venna & Kaski 2001) of a map at k: 1 − 2/(nk(2n − 3k − 1)) Σ_i Σ_{j ∈ U_i} (r(i, j) − k),
 * U_i the map's k nearest neighbours of i that are not among its k nearest in the input, r their
 * rank in the input. 1: no false neighbours. O(n² log n): meant for a few thousand points.
 */
export function trustworthiness(high: ArrayLike<number>, d: number, low: ArrayLike<number>, dLow: number, n: number, k = 10): number {
  checkData(high, n, d, 'trustworthiness');
  checkData(low, n, dLow, 'trustworthiness');
  if (!Number.isInteger(k) || k < 1 || 2 * n - 3 * k - 1 <= 0) throw new ProbsemError(`trustworthiness: k must be an integer in [1, ${Math.floor((2 * n - 2) / 3)}] for ${n} points, got ${k}`, 'BAD_OPTION');
  const mapped = exactNeighbours(low, n, dLow, k);
  const rank = new Int32Array(n);
  const order = new Int32Array(n);
  const dist = new Float64Array(n);
  let penalty = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) {
        const v = high[i * d + t] - high[j * d + t];
        s += v * v;
      }
      dist[j] = j === i ? -1 : s;
      order[j] = j;
    }
    order.sort((a, b) => dist[a] - dist[b] || a - b);
    for (let r = 0; r < n; r++) rank[order[r]] = r; // rank 0 is i itself
    for (let t = 0; t < k; t++) {
      const r = rank[mapped.index[i * k + t]];
      if (r > k) penalty += r - k;
    }
  }
  return 1 - (2 / (n * k * (2 * n - 3 * k - 1))) * penalty;
}
