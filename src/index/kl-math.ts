/**
 * The Gaussian KL divergence with the item in the second slot, written as an inner product.
 *
 * For a query p = N(μp, Σp) and an item q = N(μ, Σ) in K dimensions, with P = Σ⁻¹ and d = μ − μp,
 *
 *   2 KL(p ‖ q) = tr(P Σp) + dᵀ P d − K + log|Σ| − log|Σp|
 *              = tr(P (Σp + μp μpᵀ)) − 2 μpᵀ P μ + μᵀ P μ + log|Σ| − K − log|Σp|
 *              = ⟨a, b⟩ + c − K − log|Σp|,
 *
 * since dᵀ P d = μᵀPμ − 2 μpᵀ P μ + tr(P μp μpᵀ) for symmetric P. The item alone gives
 * a = [entries of P, P μ] and c = μᵀ P μ + log|Σ|; the query alone gives b = [matching entries of
 * Σp + μp μpᵀ, −2 μp]. For a symmetric pair tr(P M) = Σ_j P_jj M_jj + 2 Σ_{j<l} P_jl M_jl, so:
 *
 * - diagonal items (P = diag(1/σ²)): a = [1/σ² (K), μ/σ² (K)], b = [diag(Σp) + μp² (K), −2 μp],
 *   c = Σ μ²/σ² + Σ log σ²; n = 2K values;
 * - full items (Σ = L Lᵀ): a = [P_jl for j ≤ l, row by row, off-diagonals doubled; P μ],
 *   b = [M_jl for j ≤ l with M = Σp + μp μpᵀ; −2 μp], c = μᵀ P μ + log|Σ|; n = K(K+1)/2 + K.
 *
 * So the exact top-k of one query is one pass of n-long dot products over the items (kl-index.ts).
 * This file holds that rewrite, the exact per-item KL in double precision (what results report
 * and what the brute-force reference computes), and the validation of items and queries.
 */
import { ProbsemError } from '../core/errors.js';
import { cholesky, logDetFromCholesky } from '../core/linalg.js';

export type ItemGaussians =
  | { kind: 'diag'; dim: number; count: number; mean: Float32Array; variance: Float32Array }
  | { kind: 'full'; dim: number; count: number; mean: Float32Array; scaleTril: Float32Array };

export interface QueryGaussian {
  mean: ArrayLike<number>;
  /** dim × dim, row-major, symmetric positive definite. */
  covariance: ArrayLike<number>;
}

/** Length of a and b for a kind and dimension. */
export function vectorLength(kind: 'diag' | 'full', dim: number): number {
  return kind === 'diag' ? 2 * dim : (dim * (dim + 1)) / 2 + dim;
}

/** Checks shapes and values of a set of item Gaussians; throws a ProbsemError naming the first problem. */
export function validateItems(items: ItemGaussians): void {
  if (items === null || typeof items !== 'object') throw new ProbsemError('items must be an object { kind, dim, count, ... }', 'BAD_INPUT');
  const { kind, dim, count } = items;
  if (kind !== 'diag' && kind !== 'full') throw new ProbsemError(`items.kind must be 'diag' or 'full', got ${String(kind)}`, 'BAD_INPUT');
  if (!Number.isInteger(dim) || dim < 1) throw new ProbsemError(`items.dim must be a positive integer, got ${dim}`, 'SHAPE');
  if (!Number.isInteger(count) || count < 0 || count > 0x7fffffff) throw new ProbsemError(`items.count must be a non-negative integer, got ${count}`, 'SHAPE');
  if (!(items.mean instanceof Float32Array)) throw new ProbsemError('items.mean must be a Float32Array', 'BAD_INPUT');
  if (items.mean.length !== count * dim) {
    throw new ProbsemError(`items.mean has ${items.mean.length} values, expected count × dim = ${count} × ${dim} = ${count * dim}`, 'SHAPE');
  }
  for (let i = 0; i < items.mean.length; i++) {
    if (!Number.isFinite(items.mean[i])) throw new ProbsemError(`item ${Math.floor(i / dim)}: mean[${i % dim}] is ${items.mean[i]} (must be finite)`, 'BAD_INPUT');
  }
  if (kind === 'diag') {
    const v = items.variance;
    if (!(v instanceof Float32Array)) throw new ProbsemError('items.variance must be a Float32Array', 'BAD_INPUT');
    if (v.length !== count * dim) throw new ProbsemError(`items.variance has ${v.length} values, expected count × dim = ${count * dim}`, 'SHAPE');
    for (let i = 0; i < v.length; i++) {
      if (!(v[i] > 0) || v[i] === Infinity) {
        throw new ProbsemError(`item ${Math.floor(i / dim)}: variance[${i % dim}] is ${v[i]} (must be positive and finite)`, 'BAD_INPUT');
      }
    }
  } else {
    const l = items.scaleTril;
    if (!(l instanceof Float32Array)) throw new ProbsemError('items.scaleTril must be a Float32Array', 'BAD_INPUT');
    if (l.length !== count * dim * dim) throw new ProbsemError(`items.scaleTril has ${l.length} values, expected count × dim × dim = ${count * dim * dim}`, 'SHAPE');
    const dd = dim * dim;
    for (let i = 0; i < count; i++) {
      for (let r = 0; r < dim; r++) {
        for (let c = 0; c <= r; c++) {
          const x = l[i * dd + r * dim + c];
          if (!Number.isFinite(x)) throw new ProbsemError(`item ${i}: scaleTril[${r}][${c}] is ${x} (must be finite)`, 'BAD_INPUT');
          if (r === c && !(x > 0)) throw new ProbsemError(`item ${i}: scaleTril[${r}][${r}] is ${x} (the diagonal must be positive)`, 'BAD_INPUT');
        }
      }
    }
  }
}

/** A query reduced to what scoring and exact rescoring need, all in double precision. */
export interface PreparedQuery {
  dim: number;
  mean: Float64Array;
  /** The symmetrised covariance, row-major. */
  cov: Float64Array;
  /** Its Cholesky factor. */
  chol: Float64Array;
  logDet: number;
  /** The query side b of the inner product (for the index's kind). */
  b: Float64Array;
}

/** Validates a query against a dimension and precomputes its constants (Cholesky, log-det, b). */
export function prepareQuery(kind: 'diag' | 'full', dim: number, q: QueryGaussian, what = 'query'): PreparedQuery {
  if (q === null || typeof q !== 'object' || q.mean == null || q.covariance == null) {
    throw new ProbsemError(`${what} must be { mean, covariance }`, 'BAD_INPUT');
  }
  if (q.mean.length !== dim) throw new ProbsemError(`${what} has dimension ${q.mean.length}, the index has dimension ${dim}`, 'SHAPE');
  if (q.covariance.length !== dim * dim) {
    throw new ProbsemError(`${what} covariance has ${q.covariance.length} values, expected ${dim} × ${dim} = ${dim * dim} (row-major)`, 'SHAPE');
  }
  const mean = Float64Array.from(q.mean as ArrayLike<number>);
  const raw = Float64Array.from(q.covariance as ArrayLike<number>);
  for (let j = 0; j < dim; j++) if (!Number.isFinite(mean[j])) throw new ProbsemError(`${what} mean[${j}] is ${mean[j]} (must be finite)`, 'BAD_INPUT');
  let scale = 0;
  for (let j = 0; j < raw.length; j++) {
    if (!Number.isFinite(raw[j])) throw new ProbsemError(`${what} covariance[${Math.floor(j / dim)}][${j % dim}] is ${raw[j]} (must be finite)`, 'BAD_INPUT');
    scale = Math.max(scale, Math.abs(raw[j]));
  }
  const cov = new Float64Array(dim * dim);
  for (let r = 0; r < dim; r++) {
    for (let c = 0; c < dim; c++) {
      const x = raw[r * dim + c];
      const y = raw[c * dim + r];
      if (Math.abs(x - y) > 1e-5 * scale) throw new ProbsemError(`${what} covariance is not symmetric ([${r}][${c}] = ${x}, [${c}][${r}] = ${y})`, 'BAD_INPUT');
      cov[r * dim + c] = (x + y) / 2;
    }
  }
  let chol: Float64Array;
  try {
    chol = cholesky(cov, dim);
  } catch {
    throw new ProbsemError(`${what} covariance is not positive definite`, 'BAD_INPUT');
  }
  const logDet = logDetFromCholesky(chol, dim);
  const b = new Float64Array(vectorLength(kind, dim));
  if (kind === 'diag') {
    for (let j = 0; j < dim; j++) {
      b[j] = cov[j * dim + j] + mean[j] * mean[j];
      b[dim + j] = -2 * mean[j];
    }
  } else {
    let o = 0;
    for (let r = 0; r < dim; r++) for (let c = r; c < dim; c++) b[o++] = cov[r * dim + c] + mean[r] * mean[c];
    for (let j = 0; j < dim; j++) b[o++] = -2 * mean[j];
  }
  return { dim, mean, cov, chol, logDet, b };
}

/** Scratch for the full-covariance computations (reused across items). */
export class FullScratch {
  readonly linv: Float64Array;
  readonly p: Float64Array;
  readonly x: Float64Array;
  readonly y: Float64Array;
  constructor(readonly dim: number) {
    this.linv = new Float64Array(dim * dim);
    this.p = new Float64Array(dim * dim);
    this.x = new Float64Array(dim * dim);
    this.y = new Float64Array(dim);
  }
}

/**
 * Item i's a (written to `a`, n = vectorLength values) and c, in double precision. For full items
 * P = L⁻ᵀ L⁻¹ from the inverse of the triangular factor.
 */
export function itemVector(items: ItemGaussians, i: number, a: Float64Array, scratch?: FullScratch): number {
  const dim = items.dim;
  const mu = items.mean;
  const m0 = i * dim;
  if (items.kind === 'diag') {
    const v = items.variance;
    let c = 0;
    for (let j = 0; j < dim; j++) {
      const prec = 1 / v[m0 + j];
      const mj = mu[m0 + j];
      a[j] = prec;
      a[dim + j] = mj * prec;
      c += mj * mj * prec + Math.log(v[m0 + j]);
    }
    return c;
  }
  const s = scratch ?? new FullScratch(dim);
  const l = items.scaleTril;
  const l0 = i * dim * dim;
  const linv = s.linv;
  // L⁻¹ column by column (forward substitution on the unit vectors), lower-triangular.
  linv.fill(0);
  let logDet = 0;
  for (let r = 0; r < dim; r++) logDet += Math.log(l[l0 + r * dim + r]);
  logDet *= 2;
  for (let col = 0; col < dim; col++) {
    for (let r = col; r < dim; r++) {
      let t = r === col ? 1 : 0;
      for (let k = col; k < r; k++) t -= l[l0 + r * dim + k] * linv[k * dim + col];
      linv[r * dim + col] = t / l[l0 + r * dim + r];
    }
  }
  // P = L⁻ᵀ L⁻¹: P[r][c] = Σ_k linv[k][r] linv[k][c], k ≥ max(r, c).
  const p = s.p;
  for (let r = 0; r < dim; r++) {
    for (let c = r; c < dim; c++) {
      let t = 0;
      for (let k = c; k < dim; k++) t += linv[k * dim + r] * linv[k * dim + c];
      p[r * dim + c] = t;
      p[c * dim + r] = t;
    }
  }
  let o = 0;
  for (let r = 0; r < dim; r++) for (let c = r; c < dim; c++) a[o++] = r === c ? p[r * dim + c] : 2 * p[r * dim + c];
  let c = logDet;
  for (let r = 0; r < dim; r++) {
    let t = 0;
    for (let k = 0; k < dim; k++) t += p[r * dim + k] * mu[m0 + k];
    a[o++] = t;
    c += t * mu[m0 + r];
  }
  return c;
}

/**
 * The exact KL(query ‖ item i) in nats, in double precision, computed the straightforward way:
 * for diagonal items Σ_j (Σp_jj + (μ_j − μp_j)²) / σ²_j + log σ²_j; for full items
 * ‖L⁻¹ Lp‖²_F + ‖L⁻¹ (μ − μp)‖² + log|Σ| by forward substitution.
 */
export function exactKl(items: ItemGaussians, i: number, q: PreparedQuery, scratch?: FullScratch): number {
  const dim = items.dim;
  const mu = items.mean;
  const m0 = i * dim;
  let sum = -dim - q.logDet;
  if (items.kind === 'diag') {
    const v = items.variance;
    for (let j = 0; j < dim; j++) {
      const vj = v[m0 + j];
      const d = mu[m0 + j] - q.mean[j];
      sum += (q.cov[j * dim + j] + d * d) / vj + Math.log(vj);
    }
    return 0.5 * sum;
  }
  const s = scratch ?? new FullScratch(dim);
  const l = items.scaleTril;
  const l0 = i * dim * dim;
  const x = s.x;
  const y = s.y;
  const lp = q.chol;
  // X = L⁻¹ Lp, column by column (Lp lower-triangular: column col is zero above row col).
  let tr = 0;
  for (let col = 0; col < dim; col++) {
    for (let r = 0; r < dim; r++) {
      let t = r >= col ? lp[r * dim + col] : 0;
      for (let k = 0; k < r; k++) t -= l[l0 + r * dim + k] * x[k * dim + col];
      const v = t / l[l0 + r * dim + r];
      x[r * dim + col] = v;
      tr += v * v;
    }
  }
  let maha = 0;
  for (let r = 0; r < dim; r++) {
    let t = mu[m0 + r] - q.mean[r];
    for (let k = 0; k < r; k++) t -= l[l0 + r * dim + k] * y[k];
    const v = t / l[l0 + r * dim + r];
    y[r] = v;
    maha += v * v;
  }
  let logDet = 0;
  for (let r = 0; r < dim; r++) logDet += Math.log(l[l0 + r * dim + r]);
  return 0.5 * (sum + tr + maha + 2 * logDet);
}
