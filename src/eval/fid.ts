/**
 * The judge's Fréchet distance (FID with probsem's own judge in place of Inception): the
 * Fréchet distance between Gaussians fitted to the judge's penultimate-layer features of generated
 * images and of real test images, overall and per label (generated for label c against real images
 * of class c). Lower is better; 0 when the two feature distributions share mean and covariance.
 */
import { ProbsemError } from '../core/errors.js';
import { matmul, symmetricEigen, symmetricEigenQR } from '../core/linalg.js';

/** Running float64 sums for a feature mean and covariance. */
export class FeatureMoments {
  readonly sum: Float64Array;
  readonly outer: Float64Array;
  count = 0;

  constructor(readonly dim: number) {
    this.sum = new Float64Array(dim);
    this.outer = new Float64Array(dim * dim);
  }

  /** Adds `rows` feature vectors (row-major). */
  add(features: ArrayLike<number>, rows: number): void {
    const d = this.dim;
    if (features.length !== rows * d) throw new ProbsemError(`FeatureMoments: expected ${rows}×${d} values, got ${features.length}`);
    for (let r = 0; r < rows; r++) {
      const o = r * d;
      for (let a = 0; a < d; a++) {
        const va = features[o + a];
        this.sum[a] += va;
        if (va === 0) continue; // ReLU features: mostly zeros
        const row = a * d;
        for (let b = a; b < d; b++) this.outer[row + b] += va * features[o + b];
      }
    }
    this.count += rows;
  }

  /** Mean and unbiased covariance. */
  moments(): { mean: Float64Array; cov: Float64Array } {
    const d = this.dim;
    const n = this.count;
    if (n < 2) throw new ProbsemError(`a feature covariance needs at least 2 vectors, got ${n}`);
    const mean = this.sum.map((s) => s / n);
    const cov = new Float64Array(d * d);
    for (let a = 0; a < d; a++) {
      for (let b = a; b < d; b++) {
        const v = (this.outer[a * d + b] - n * mean[a] * mean[b]) / (n - 1);
        cov[a * d + b] = v;
        cov[b * d + a] = v;
      }
    }
    return { mean, cov };
  }
}

const eigen = (a: Float64Array, d: number) => (d <= 64 ? symmetricEigen(a, d) : symmetricEigenQR(a, d));

/** The symmetric square root of a positive semi-definite matrix (negative rounding clamped to 0). */
function sqrtPsd(a: Float64Array, d: number): Float64Array {
  const { values, vectors } = eigen(a, d);
  const out = new Float64Array(d * d);
  for (let k = 0; k < d; k++) {
    const s = Math.sqrt(Math.max(0, values[k]));
    if (s === 0) continue;
    for (let i = 0; i < d; i++) {
      const vi = vectors[i * d + k] * s;
      for (let j = 0; j < d; j++) out[i * d + j] += vi * vectors[j * d + k];
    }
  }
  return out;
}

/**
 * ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½: the trace of the geometric-mean term taken
 * from the eigenvalues of the symmetric Σ1^½ Σ2 Σ1^½ (equal to tr (Σ1 Σ2)^½), so it stays real.
 */
export function frechetDistance(m1: Float64Array, c1: Float64Array, m2: Float64Array, c2: Float64Array): number {
  const d = m1.length;
  if (m2.length !== d || c1.length !== d * d || c2.length !== d * d) throw new ProbsemError('frechetDistance: mismatched dimensions');
  let dist = 0;
  for (let i = 0; i < d; i++) dist += (m1[i] - m2[i]) ** 2 + c1[i * d + i] + c2[i * d + i];
  // Features constant in both sets (dead ReLUs) add only their mean difference, counted above;
  // the matrix terms are taken over the others, which keeps them well-posed for small judges.
  const keep: number[] = [];
  for (let i = 0; i < d; i++) if (c1[i * d + i] > 0 || c2[i * d + i] > 0) keep.push(i);
  const e = keep.length;
  if (e === 0) return Math.max(0, dist);
  const sub = (c: Float64Array) => {
    const out = new Float64Array(e * e);
    keep.forEach((a, i) => keep.forEach((b, j) => (out[i * e + j] = c[a * d + b])));
    return out;
  };
  const s1 = sqrtPsd(sub(c1), e);
  const inner = matmul(matmul(s1, sub(c2), e, e, e), s1, e, e, e);
  // Symmetrise away the products' rounding before the eigen-decomposition.
  for (let i = 0; i < e; i++) for (let j = 0; j < i; j++) inner[i * e + j] = inner[j * e + i] = 0.5 * (inner[i * e + j] + inner[j * e + i]);
  const { values } = eigen(inner, e);
  let tr = 0;
  for (const v of values) tr += Math.sqrt(Math.max(0, v));
  return Math.max(0, dist - 2 * tr);
}
