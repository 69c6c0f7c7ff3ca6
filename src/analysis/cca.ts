/**
 * Linear canonical correlation analysis between two views (image features X, n×p, and label or
 * word vectors Y, n×q), as lecture 002 states it: regularised covariances Σ11 + r1·I and
 * Σ22 + r2·I, T = Σ11^-1/2 Σ12 Σ22^-1/2 and its SVD T = U D Vᵀ, canonical directions
 * W1 = Σ11^-1/2 U, W2 = Σ22^-1/2 V, canonical correlations diag(D), total correlation at k the
 * sum of the first k. Also the shared-space scoring every coordinated method annotates with.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import {
  cholesky,
  inverseSqrtSymmetric,
  matmul,
  solveLowerMatrix,
  solveLowerTransposeMatrix,
  svdViaGram,
  transpose,
} from '../core/linalg.js';

export type Matrix = Float32Array | Float64Array;

/**
 * How Σ^-1/2 is formed: 'symmetric' is the lecture's inverse square root (an eigen-decomposition:
 * ~5 s for 784 pixels); 'cholesky' whitens with L⁻¹ (Σ = LLᵀ, well under a second). Both give the
 * same correlations and directions: L⁻¹ and Σ^-1/2 differ by a rotation that the SVD absorbs.
 */
export type Whitening = 'symmetric' | 'cholesky';

export interface CcaOptions {
  /** Ridge on the X covariance (≥ 0; default 1e-4). */
  r1?: number;
  /** Ridge on the Y covariance (≥ 0; default 1e-4). One-hot rows need > 0: they sum to one. */
  r2?: number;
  whitening?: Whitening;
}

export interface CcaFit {
  p: number;
  q: number;
  /** Number of canonical pairs, min(p, q). */
  k: number;
  meanX: Float64Array;
  meanY: Float64Array;
  /** Canonical directions as columns: p×k (X side) and q×k (Y side), row-major. */
  wx: Float64Array;
  wy: Float64Array;
  /** Canonical correlations (the singular values of T), descending, in [0, 1]. */
  correlations: Float64Array;
  r1: number;
  r2: number;
}

/** Checks a regulariser: a finite number ≥ 0 (or > 0 where `strict`). */
export function checkRegulariser(r: number, name: string, strict = false): number {
  if (typeof r !== 'number' || !Number.isFinite(r) || r < 0 || (strict && r === 0)) {
    throw new ProbsemError(`${name} must be a finite number ${strict ? '> 0' : '≥ 0'}, got ${r}`, 'BAD_OPTION');
  }
  return r;
}

/** Fails clearly on a malformed view: wrong size or a non-finite entry (naming its row and column). */
export function checkView(data: Matrix, n: number, d: number, name: string): void {
  if (!Number.isInteger(d) || d < 1) throw new ProbsemError(`${name} must have at least one column, got ${d}`, 'BAD_OPTION');
  if (data.length !== n * d) {
    const rows = data.length / d;
    throw new ProbsemError(
      Number.isInteger(rows)
        ? `${name} has ${rows} rows but the other view has ${n}: the two views must describe the same ${n} examples`
        : `${name} holds ${data.length} values, not a multiple of its ${d} columns`,
      'BAD_OPTION',
    );
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new ProbsemError(`${name} has a non-finite value (${data[i]}) at row ${Math.floor(i / d)}, column ${i % d}`, 'BAD_OPTION');
    }
  }
}

/** Column means (float64). */
export function columnMeans(data: Matrix, n: number, d: number): Float64Array {
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += data[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  return mean;
}

/**
 * The values of a tensor computed in a tidy scope, read after the scope closes. (Returning a
 * typed array from tf.tidy makes tfjs walk every element looking for tensors: ~9 µs each, seconds
 * for a kernel block.)
 */
export function readTensor(make: () => tf.Tensor): Float32Array {
  const t = tf.tidy(make);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

/** Below this many multiply-adds the whole covariance is accumulated in float64 on the host. */
const HOST_FLOPS = 3e8;
/**
 * Rows per float32 product on the tfjs path. The product accumulates in float32 over its rows, so
 * short chunks keep its rounding small; the chunks are summed in float64.
 */
const PRODUCT_ROWS = 256;

/**
 * The unbiased covariance (divisor n − 1) of the columns of [X Y] as one (p+q)×(p+q) float64
 * matrix. Every block with a side of at most 64 (YᵀY and XᵀY for label vectors, all of it for
 * latent codes) is accumulated in float64 on the host: float32 rounding there put the canonical
 * correlations ~1e-4 off and gave a spurious 0.017 where the truth is 0 (pixels against one-hot
 * labels, whose covariance is singular). Only a large XᵀX (pixels) runs in tfjs, on centred
 * float32 chunks of 256 rows whose products are summed in float64.
 */
export function jointCovariance(x: Matrix, y: Matrix, n: number, p: number, q: number, meanX: Float64Array, meanY: Float64Array): Float64Array {
  const d = p + q;
  const cov = new Float64Array(d * d);
  const hostAll = n * d * d <= HOST_FLOPS || p <= 64;
  const zx = new Float64Array(p);
  const zy = new Float64Array(q);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < p; j++) zx[j] = x[r * p + j] - meanX[j];
    for (let j = 0; j < q; j++) zy[j] = y[r * q + j] - meanY[j];
    // Upper triangle only; mirrored below.
    if (hostAll) {
      for (let a = 0; a < p; a++) {
        const va = zx[a];
        if (va === 0) continue;
        const row = a * d;
        for (let b = a; b < p; b++) cov[row + b] += va * zx[b];
      }
    }
    for (let a = 0; a < p; a++) {
      const va = zx[a];
      if (va === 0) continue;
      const row = a * d + p;
      for (let b = 0; b < q; b++) cov[row + b] += va * zy[b];
    }
    for (let a = 0; a < q; a++) {
      const row = (p + a) * d + p;
      for (let b = a; b < q; b++) cov[row + b] += zy[a] * zy[b];
    }
  }
  if (!hostAll) {
    for (let s = 0; s < n; s += PRODUCT_ROWS) {
      const rows = Math.min(PRODUCT_ROWS, n - s);
      const z = new Float32Array(rows * p);
      for (let r = 0; r < rows; r++) for (let j = 0; j < p; j++) z[r * p + j] = x[(s + r) * p + j] - meanX[j];
      const prod = readTensor(() => {
        const zt = tf.tensor2d(z, [rows, p]);
        // An explicit transpose: matMul with a transposed operand takes a slow path on wasm.
        return tf.matMul(tf.transpose(zt), zt);
      });
      for (let a = 0; a < p; a++) for (let b = a; b < p; b++) cov[a * d + b] += prod[a * p + b];
    }
  }
  for (let a = 0; a < d; a++) for (let b = 0; b < a; b++) cov[a * d + b] = cov[b * d + a];
  for (let i = 0; i < d * d; i++) cov[i] /= Math.max(1, n - 1);
  return cov;
}

/** Extracts the block [r0, r0+rows) × [c0, c0+cols) of a row-major d×d matrix. */
function block(a: Float64Array, d: number, r0: number, rows: number, c0: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = a[(r0 + i) * d + c0 + j];
  return out;
}

/**
 * Canonical directions and correlations of the regularised covariance blocks Σ11 (p×p), Σ12
 * (p×q), Σ22 (q×q), ridges already added. Shared by linear CCA and Deep CCA's final layer.
 */
export function ccaFromCovariances(
  s11: Float64Array,
  s12: Float64Array,
  s22: Float64Array,
  p: number,
  q: number,
  whitening: Whitening = 'symmetric',
): { wx: Float64Array; wy: Float64Array; correlations: Float64Array; k: number } {
  const k = Math.min(p, q);
  let t: Float64Array;
  let toWx: (u: Float64Array) => Float64Array;
  let toWy: (v: Float64Array) => Float64Array;
  if (whitening === 'symmetric') {
    const a = inverseSqrtSymmetric(s11, p, 'Σ11 + r1·I');
    const b = inverseSqrtSymmetric(s22, q, 'Σ22 + r2·I');
    t = matmul(matmul(a, s12, p, p, q), b, p, q, q);
    toWx = (u) => matmul(a, u, p, p, k);
    toWy = (v) => matmul(b, v, q, q, k);
  } else {
    const l1 = choleskyOrExplain(s11, p, 'Σ11 + r1·I', 'r1');
    const l2 = choleskyOrExplain(s22, q, 'Σ22 + r2·I', 'r2');
    // T = L1⁻¹ Σ12 L2⁻ᵀ = (L2⁻¹ (L1⁻¹ Σ12)ᵀ)ᵀ.
    const left = solveLowerMatrix(l1, s12, p, q);
    t = transpose(solveLowerMatrix(l2, transpose(left, p, q), q, p), q, p);
    toWx = (u) => solveLowerTransposeMatrix(l1, u, p, k);
    toWy = (v) => solveLowerTransposeMatrix(l2, v, q, k);
  }
  const { u, s, v } = svdViaGram(t, p, q);
  const wx = toWx(u);
  const wy = toWy(v);
  // A deterministic sign per pair: the largest-magnitude X loading is positive.
  for (let c = 0; c < k; c++) {
    let big = 0;
    for (let i = 0; i < p; i++) if (Math.abs(wx[i * k + c]) > Math.abs(wx[big * k + c])) big = i;
    if (wx[big * k + c] < 0) {
      for (let i = 0; i < p; i++) wx[i * k + c] = -wx[i * k + c];
      for (let i = 0; i < q; i++) wy[i * k + c] = -wy[i * k + c];
    }
  }
  return { wx, wy, correlations: Float64Array.from(s.subarray(0, k), (c) => Math.min(1, Math.max(0, c))), k };
}

function choleskyOrExplain(a: Float64Array, n: number, what: string, reg: string): Float64Array {
  try {
    return cholesky(a, n);
  } catch {
    throw new ProbsemError(`${what} is not positive definite (a constant or collinear column?): increase ${reg}`, 'BAD_OPTION');
  }
}

/** Fits regularised linear CCA between X (n×p) and Y (n×q), row-major. */
export function fitCca(x: Matrix, y: Matrix, n: number, p: number, q: number, opts: CcaOptions = {}): CcaFit {
  if (!Number.isInteger(n) || n < 2) throw new ProbsemError(`CCA needs at least 2 examples, got ${n}`, 'BAD_OPTION');
  checkView(x, n, p, 'X');
  checkView(y, n, q, 'Y');
  const r1 = checkRegulariser(opts.r1 ?? 1e-4, 'r1');
  const r2 = checkRegulariser(opts.r2 ?? 1e-4, 'r2');
  const whitening = opts.whitening ?? 'symmetric';
  if (whitening !== 'symmetric' && whitening !== 'cholesky') {
    throw new ProbsemError(`whitening must be symmetric or cholesky, got '${String(whitening)}'`, 'BAD_OPTION');
  }
  const meanX = columnMeans(x, n, p);
  const meanY = columnMeans(y, n, q);
  const cov = jointCovariance(x, y, n, p, q, meanX, meanY);
  const d = p + q;
  const s11 = block(cov, d, 0, p, 0, p);
  const s12 = block(cov, d, 0, p, p, q);
  const s22 = block(cov, d, p, q, p, q);
  for (let i = 0; i < p; i++) s11[i * p + i] += r1;
  for (let i = 0; i < q; i++) s22[i * q + i] += r2;
  const { wx, wy, correlations, k } = ccaFromCovariances(s11, s12, s22, p, q, whitening);
  return { p, q, k, meanX, meanY, wx, wy, correlations, r1, r2 };
}

/** Sum of the first k canonical correlations (all of them by default). */
export function totalCorrelation(correlations: ArrayLike<number>, k = correlations.length): number {
  let s = 0;
  for (let i = 0; i < Math.min(k, correlations.length); i++) s += correlations[i];
  return s;
}

/** (data − mean) W for row-major data (n×d) and directions W (d×k): n×k canonical variates. */
export function projectRows(data: Matrix, n: number, d: number, mean: Float64Array, w: Float64Array, k: number): Float64Array {
  const centred = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) centred[i * d + j] = data[i * d + j] - mean[j];
  return matmul(centred, w, n, d, k);
}

/** Canonical variates of X rows (first `k` pairs, default all). */
export function projectX(fit: CcaFit, x: Matrix, n: number, k = fit.k): Float64Array {
  checkView(x, n, fit.p, 'X');
  return projectRows(x, n, fit.p, fit.meanX, firstColumns(fit.wx, fit.p, fit.k, k), k);
}

/** Canonical variates of Y rows (first `k` pairs, default all). */
export function projectY(fit: CcaFit, y: Matrix, n: number, k = fit.k): Float64Array {
  checkView(y, n, fit.q, 'Y');
  return projectRows(y, n, fit.q, fit.meanY, firstColumns(fit.wy, fit.q, fit.k, k), k);
}

/** The first k columns of a row-major rows×cols matrix. */
export function firstColumns(a: Float64Array, rows: number, cols: number, k: number): Float64Array {
  if (!Number.isInteger(k) || k < 1 || k > cols) throw new ProbsemError(`components must be an integer in [1, ${cols}], got ${k}`, 'BAD_OPTION');
  if (k === cols) return a;
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = a[i * cols + j];
  return out;
}

/** Sample correlation of each column pair of U and V (both n×k): how well pairs correlate on new data. */
export function columnCorrelations(u: Float64Array, v: Float64Array, n: number, k: number): Float64Array {
  const out = new Float64Array(k);
  const mu = columnMeans(u, n, k);
  const mv = columnMeans(v, n, k);
  for (let c = 0; c < k; c++) {
    let suv = 0;
    let suu = 0;
    let svv = 0;
    for (let i = 0; i < n; i++) {
      const a = u[i * k + c] - mu[c];
      const b = v[i * k + c] - mv[c];
      suv += a * b;
      suu += a * a;
      svv += b * b;
    }
    out[c] = suu > 0 && svv > 0 ? suv / Math.sqrt(suu * svv) : 0;
  }
  return out;
}

/**
 * How an image is matched to labels in a shared k-dimensional canonical space:
 *  - 'gaussian' (default): the image variate u given label variate v is modelled as
 *    N(ρ ⊙ v, I − ρ²) — the regression of one unit-variance view on the other — and labels are
 *    ranked by that log-likelihood, −½ Σᵢ (uᵢ − ρᵢvᵢ)² / (1 − ρᵢ²). Pairs with ρ ≈ 0 carry no
 *    information and drop out by themselves;
 *  - 'euclidean': the lecture's D(u, v) = ‖u − v‖² between the two variates;
 *  - 'cosine': the cosine of u and ρ ⊙ v.
 */
export type SharedScoring = 'gaussian' | 'euclidean' | 'cosine';
export const SHARED_SCORINGS: readonly SharedScoring[] = ['gaussian', 'euclidean', 'cosine'];

/** Scores [n, C] of n image variates u (n×k) against C label variates v (C×k), higher = nearer. */
export function sharedSpaceScores(
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  n: number,
  c: number,
  k: number,
  rho: ArrayLike<number>,
  scoring: SharedScoring = 'gaussian',
): Float32Array {
  if (!SHARED_SCORINGS.includes(scoring)) {
    throw new ProbsemError(`scoring must be one of ${SHARED_SCORINGS.join(', ')}, got '${String(scoring)}'`, 'BAD_OPTION');
  }
  const out = new Float32Array(n * c);
  const target = new Float64Array(c * k);
  const weight = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    const r = Math.min(rho[j], 1 - 1e-6);
    weight[j] = scoring === 'gaussian' ? 1 / (1 - r * r) : 1;
    for (let l = 0; l < c; l++) target[l * k + j] = scoring === 'euclidean' ? v[l * k + j] : r * v[l * k + j];
  }
  const tnorm = new Float64Array(c);
  for (let l = 0; l < c; l++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += target[l * k + j] ** 2;
    tnorm[l] = Math.sqrt(s) || 1;
  }
  for (let i = 0; i < n; i++) {
    let un = 0;
    for (let j = 0; j < k; j++) un += u[i * k + j] ** 2;
    un = Math.sqrt(un) || 1;
    for (let l = 0; l < c; l++) {
      let s = 0;
      if (scoring === 'cosine') {
        for (let j = 0; j < k; j++) s += u[i * k + j] * target[l * k + j];
        out[i * c + l] = s / (un * tnorm[l]);
      } else {
        for (let j = 0; j < k; j++) s += weight[j] * (u[i * k + j] - target[l * k + j]) ** 2;
        out[i * c + l] = -0.5 * s;
      }
    }
  }
  return out;
}
