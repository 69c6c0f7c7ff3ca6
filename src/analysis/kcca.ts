/**
 * Kernel CCA between images and label vectors: an RBF kernel on the image side, fitted on a seeded
 * subsample S of m examples; the label side is linear in its inputs, or in RBF features against
 * the distinct label vectors of S ('rbf').
 *
 * Image-side functions are f(x) = k̃(x, S) α (k̃ the kernel centred in feature space), regularised
 * as var(f) + r1·‖f‖²_H = αᵀ(K̃²/(m−1) + r1·K̃)α. For a fixed label direction β the best α is then
 * the kernel ridge regression α = (K̃ + κI)⁻¹ Ỹβ with κ = (m−1)·r1, so the problem reduces to the
 * eigenproblem of Σ22^-1/2 B Σ22^-1/2 with B = Ỹᵀ K̃ (K̃ + κI)⁻¹ Ỹ / (m−1) = (ỸᵀỸ − κ ỸᵀA)/(m−1),
 * A = (K̃ + κI)⁻¹ Ỹ: one m×m Cholesky (κ > 0 makes it positive definite) and a q×q eigenproblem,
 * instead of the 2m×2m generalised eigenproblem. Its eigenvalues are the squared (regularised)
 * canonical correlations. New images are projected through the kernel against S.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { cholesky, matmul, solveLowerMatrix, solveLowerTransposeMatrix, symmetricEigenQR, inverseSqrtSymmetric, transpose } from '../core/linalg.js';
import { Rng } from '../core/random.js';
import { type Matrix, checkRegulariser, checkView, columnMeans, readTensor } from './cca.js';

export type LabelKernel = 'linear' | 'rbf';

export interface KccaOptions {
  /** Examples in the kernel subsample (default 2000; all if fewer). */
  subsample?: number;
  /** RBF bandwidth σ of k(x, x') = exp(−‖x − x'‖² / 2σ²); default the median pairwise distance in S. */
  bandwidth?: number;
  /** Ridge on the image side, as a weight on the RKHS norm (> 0; default 1e-3). */
  r1?: number;
  /** Ridge on the label-side covariance (≥ 0; default 1e-4). */
  r2?: number;
  labelKernel?: LabelKernel;
  /** Bandwidth of the label-side RBF; default the median distance between distinct label vectors. */
  labelBandwidth?: number;
  seed?: number;
  /** Called between the stages of the fit (kernel, solve, eigen). */
  onStage?: (stage: string) => void;
}

export interface KccaFit {
  m: number;
  p: number;
  q: number;
  k: number;
  /** The subsample's images, m×p (float32), and their indices in the training data. */
  landmarks: Float32Array;
  indices: Int32Array;
  gamma: number;
  bandwidth: number;
  /** Row means of the subsample kernel and its grand mean, for centring new rows. */
  kernelRowMeans: Float64Array;
  kernelMean: number;
  /** Image-side coefficients, m×k. */
  alpha: Float64Array;
  /** Label side: feature map, feature mean and directions (features×k). */
  labelKernel: LabelKernel;
  labelCentres: Float64Array | null;
  labelGamma: number;
  labelFeatureMean: Float64Array;
  wy: Float64Array;
  labelFeatures: number;
  correlations: Float64Array;
  r1: number;
  r2: number;
}

const CHUNK = 1024;

/** Squared row norms of a row-major n×p matrix. */
function rowNorms(a: Matrix, n: number, p: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < p; j++) s += a[i * p + j] * a[i * p + j];
    out[i] = s;
  }
  return out;
}

/**
 * Squared distances ‖a‖² + ‖b‖² − 2abᵀ between the rows of A (na×p) and B (given transposed,
 * p×nb): the product in tfjs, the rest in one JavaScript pass (elementwise tfjs ops each cost a
 * dispatch and a full pass on wasm). Clamped at 0 against rounding.
 */
function squaredDistances(a: Float32Array, na: number, bT: tf.Tensor2D, bNorms: Float64Array, p: number): Float64Array {
  const nb = bNorms.length;
  const g = readTensor(() => tf.matMul(tf.tensor2d(a, [na, p]), bT));
  const an = rowNorms(a, na, p);
  const out = new Float64Array(na * nb);
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      const d = an[i] + bNorms[j] - 2 * g[i * nb + j];
      out[i * nb + j] = d > 0 ? d : 0;
    }
  }
  return out;
}

/** Kernel rows exp(−γ‖x − s‖²) of n images against the landmarks, in chunks (float64 n×m). */
export function kernelRows(x: Matrix, n: number, p: number, landmarks: Float32Array, m: number, gamma: number): Float64Array {
  const out = new Float64Array(n * m);
  const sT = tf.tidy(() => tf.transpose(tf.tensor2d(landmarks, [m, p])) as tf.Tensor2D);
  const sNorms = rowNorms(landmarks, m, p);
  try {
    for (let s = 0; s < n; s += CHUNK) {
      const rows = Math.min(CHUNK, n - s);
      const chunk = x instanceof Float32Array ? x.subarray(s * p, (s + rows) * p) : Float32Array.from(x.subarray(s * p, (s + rows) * p));
      const d2 = squaredDistances(chunk, rows, sT, sNorms, p);
      for (let i = 0; i < rows * m; i++) out[s * m + i] = Math.exp(-gamma * d2[i]);
    }
  } finally {
    sT.dispose();
  }
  return out;
}

/** Median of the positive pairwise distances between the first (at most 1000) rows: the bandwidth heuristic. */
function medianDistance(points: Float32Array, n: number, p: number): number {
  const r = Math.min(n, 1000);
  const sub = points.subarray(0, r * p);
  const sT = tf.tidy(() => tf.transpose(tf.tensor2d(sub, [r, p])) as tf.Tensor2D);
  const d2 = squaredDistances(sub, r, sT, rowNorms(sub, r, p), p);
  sT.dispose();
  const ds: number[] = [];
  for (let i = 0; i < r; i++) for (let j = i + 1; j < r; j++) if (d2[i * r + j] > 0) ds.push(Math.sqrt(d2[i * r + j]));
  if (ds.length === 0) throw new ProbsemError('KCCA: every image in the subsample is the same: no bandwidth can be chosen', 'BAD_OPTION');
  ds.sort((a, b) => a - b);
  return ds[Math.floor(ds.length / 2)];
}

/** Distinct rows of a matrix (exact equality), in order of first appearance. */
function distinctRows(y: Float64Array, n: number, q: number): Float64Array {
  const seen = new Map<string, number>();
  const rows: number[] = [];
  for (let i = 0; i < n; i++) {
    const key = Array.from(y.subarray(i * q, (i + 1) * q)).join(',');
    if (!seen.has(key)) {
      seen.set(key, i);
      rows.push(i);
    }
  }
  const out = new Float64Array(rows.length * q);
  rows.forEach((r, j) => out.set(y.subarray(r * q, (r + 1) * q), j * q));
  return out;
}

/** Label-side features: the rows themselves (linear) or RBF similarities to the centres. */
function labelFeaturesOf(y: Matrix, n: number, q: number, centres: Float64Array | null, gamma: number): Float64Array {
  if (!centres) return Float64Array.from(y);
  const c = centres.length / q;
  const out = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      let d2 = 0;
      for (let t = 0; t < q; t++) d2 += (y[i * q + t] - centres[j * q + t]) ** 2;
      out[i * c + j] = Math.exp(-gamma * d2);
    }
  }
  return out;
}

/** Fits kernel CCA between images X (n×p) and label vectors Y (n×q), row-major. */
export function fitKcca(x: Matrix, y: Matrix, n: number, p: number, q: number, opts: KccaOptions = {}): KccaFit {
  if (!Number.isInteger(n) || n < 3) throw new ProbsemError(`KCCA needs at least 3 examples, got ${n}`, 'BAD_OPTION');
  checkView(x, n, p, 'X');
  checkView(y, n, q, 'Y');
  const r1 = checkRegulariser(opts.r1 ?? 1e-3, 'r1', true);
  const r2 = checkRegulariser(opts.r2 ?? 1e-4, 'r2');
  const want = opts.subsample ?? 2000;
  if (!Number.isInteger(want) || want < 3) throw new ProbsemError(`subsample must be an integer ≥ 3, got ${want}`, 'BAD_OPTION');
  if (want > 20000) throw new ProbsemError(`subsample ${want} is too large: KCCA factorises an m×m kernel (use ≤ 20000)`, 'BAD_OPTION');
  const labelKernel = opts.labelKernel ?? 'linear';
  if (labelKernel !== 'linear' && labelKernel !== 'rbf') {
    throw new ProbsemError(`label kernel must be linear or rbf, got '${String(labelKernel)}'`, 'BAD_OPTION');
  }
  for (const [name, v] of [['bandwidth', opts.bandwidth], ['label bandwidth', opts.labelBandwidth]] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) throw new ProbsemError(`${name} must be a number > 0, got ${v}`, 'BAD_OPTION');
  }
  const m = Math.min(want, n);
  const perm = Rng.for(opts.seed ?? 0, 'kcca-subsample').permutation(n);
  const indices = Int32Array.from(perm.subarray(0, m)).sort();
  const landmarks = new Float32Array(m * p);
  const ys = new Float64Array(m * q);
  indices.forEach((r, i) => {
    for (let j = 0; j < p; j++) landmarks[i * p + j] = x[r * p + j];
    for (let j = 0; j < q; j++) ys[i * q + j] = y[r * q + j];
  });

  opts.onStage?.('kernel');
  const bandwidth = opts.bandwidth ?? medianDistance(landmarks, m, p);
  const gamma = 1 / (2 * bandwidth * bandwidth);
  const kmat = kernelRows(landmarks, m, p, landmarks, m, gamma);
  // Centre in feature space: K̃ = HKH.
  const rowMeans = columnMeans(kmat, m, m); // K is symmetric: column means are row means
  let kernelMean = 0;
  for (let i = 0; i < m; i++) kernelMean += rowMeans[i] / m;
  const kappa = (m - 1) * r1;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) kmat[i * m + j] += kernelMean - rowMeans[i] - rowMeans[j];
    kmat[i * m + i] += kappa;
  }

  let labelCentres: Float64Array | null = null;
  let labelGamma = 0;
  if (labelKernel === 'rbf') {
    labelCentres = distinctRows(ys, m, q);
    const c = labelCentres.length / q;
    let bw = opts.labelBandwidth;
    if (bw === undefined) {
      const ds: number[] = [];
      for (let i = 0; i < c; i++) {
        for (let j = i + 1; j < c; j++) {
          let d2 = 0;
          for (let t = 0; t < q; t++) d2 += (labelCentres[i * q + t] - labelCentres[j * q + t]) ** 2;
          ds.push(Math.sqrt(d2));
        }
      }
      ds.sort((a, b) => a - b);
      bw = ds.length > 0 && ds[Math.floor(ds.length / 2)] > 0 ? ds[Math.floor(ds.length / 2)] : 1;
    }
    labelGamma = 1 / (2 * bw * bw);
  }
  const phiFull = labelFeaturesOf(ys, m, q, labelCentres, labelGamma);
  const features = phiFull.length / m;
  const labelFeatureMean = columnMeans(phiFull, m, features);
  for (let i = 0; i < m; i++) for (let j = 0; j < features; j++) phiFull[i * features + j] -= labelFeatureMean[j];
  // Label vectors of C classes span at most C − 1 centred directions (256-D word vectors: 9).
  // Directions outside that span have no covariance with anything, so dropping them is exact,
  // and the m×f solves below shrink to m×rank.
  const span = labelSpan(phiFull, m, features);
  const f = span.rank;
  const phi = matmul(phiFull, span.basis, m, features, f);

  opts.onStage?.('solve');
  let l: Float64Array;
  try {
    l = cholesky(kmat, m);
  } catch {
    throw new ProbsemError(`the regularised kernel K̃ + (m−1)·r1·I is not positive definite: increase r1 (now ${r1})`, 'BAD_OPTION');
  }
  // A = (K̃ + κI)⁻¹ Ỹ.
  const a = solveLowerTransposeMatrix(l, solveLowerMatrix(l, phi, m, f), m, f);

  opts.onStage?.('eigen');
  const yty = matmul(transpose(phi, m, f), phi, f, m, f);
  const yta = matmul(transpose(phi, m, f), a, f, m, f);
  const b = new Float64Array(f * f);
  const s22 = new Float64Array(f * f);
  for (let i = 0; i < f; i++) {
    for (let j = 0; j < f; j++) {
      // Symmetrised: ỸᵀA is symmetric in exact arithmetic.
      b[i * f + j] = (yty[i * f + j] - 0.5 * kappa * (yta[i * f + j] + yta[j * f + i])) / (m - 1);
      s22[i * f + j] = yty[i * f + j] / (m - 1) + (i === j ? r2 : 0);
    }
  }
  const isq = inverseSqrtSymmetric(s22, f, 'the label covariance + r2·I');
  const mmat = matmul(matmul(isq, b, f, f, f), isq, f, f, f);
  const { values, vectors } = symmetricEigenQR(mmat, f);
  const k = Math.min(f, m - 1);
  const correlations = Float64Array.from(values.subarray(0, k), (v) => Math.sqrt(Math.min(1, Math.max(0, v))));
  const wyReduced = matmul(isq, firstCols(vectors, f, f, k), f, f, k);
  // α_i = A β_i / ρ_i: unit regularised variance (pairs with ρ ≈ 0 are kept at zero).
  const alpha = matmul(a, wyReduced, m, f, k);
  const wy = matmul(span.basis, wyReduced, features, f, k);
  for (let c = 0; c < k; c++) {
    const inv = correlations[c] > 1e-9 ? 1 / correlations[c] : 0;
    for (let i = 0; i < m; i++) alpha[i * k + c] *= inv;
  }
  return {
    m,
    p,
    q,
    k,
    landmarks,
    indices,
    gamma,
    bandwidth,
    kernelRowMeans: rowMeans,
    kernelMean,
    alpha,
    labelKernel,
    labelCentres,
    labelGamma,
    labelFeatureMean,
    wy,
    labelFeatures: features,
    correlations,
    r1,
    r2,
  };
}

/** An orthonormal basis (f×rank) of the span of centred rows (m×f): eigenvectors of their Gram matrix. */
function labelSpan(phi: Float64Array, m: number, f: number): { basis: Float64Array; rank: number } {
  const { values, vectors } = symmetricEigenQR(matmul(transpose(phi, m, f), phi, f, m, f), f);
  let rank = 0;
  while (rank < f && values[rank] > 1e-10 * Math.max(values[0], 1e-300)) rank++;
  if (rank === 0) throw new ProbsemError('KCCA: every label vector in the subsample is the same: there is nothing to correlate with', 'BAD_OPTION');
  return { basis: firstCols(vectors, f, f, rank), rank };
}

function firstCols(a: Float64Array, rows: number, cols: number, k: number): Float64Array {
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = a[i * cols + j];
  return out;
}

/** Image-side canonical variates (n×k) of new images, through the kernel against the subsample. */
export function kccaProjectX(fit: KccaFit, x: Matrix, n: number, k = fit.k): Float64Array {
  checkView(x, n, fit.p, 'X');
  checkComponents(k, fit.k);
  const kx = kernelRows(x, n, fit.p, fit.landmarks, fit.m, fit.gamma);
  const m = fit.m;
  for (let i = 0; i < n; i++) {
    let rm = 0;
    for (let j = 0; j < m; j++) rm += kx[i * m + j];
    rm /= m;
    for (let j = 0; j < m; j++) kx[i * m + j] += fit.kernelMean - rm - fit.kernelRowMeans[j];
  }
  return matmul(kx, k === fit.k ? fit.alpha : firstCols(fit.alpha, m, fit.k, k), n, m, k);
}

function checkComponents(k: number, max: number): void {
  if (!Number.isInteger(k) || k < 1 || k > max) throw new ProbsemError(`components must be an integer in [1, ${max}], got ${k}`, 'BAD_OPTION');
}

/** Label-side canonical variates (n×k) of label vectors. */
export function kccaProjectY(fit: KccaFit, y: Matrix, n: number, k = fit.k): Float64Array {
  checkView(y, n, fit.q, 'Y');
  checkComponents(k, fit.k);
  const phi = labelFeaturesOf(y, n, fit.q, fit.labelCentres, fit.labelGamma);
  const f = fit.labelFeatures;
  for (let i = 0; i < n; i++) for (let j = 0; j < f; j++) phi[i * f + j] -= fit.labelFeatureMean[j];
  return matmul(phi, k === fit.k ? fit.wy : firstCols(fit.wy, f, fit.k, k), n, f, k);
}
