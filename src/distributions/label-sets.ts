/**
 * Gaussians built from sets of label vectors (the informed-priors paper): the set's mean and its
 * sample covariance shrunk towards the identity, Σ = (1 − λ)Ŝ + λI. A single vector has Ŝ = 0, so
 * Σ = λI. An optional spread s ∈ [0, 1] scales the sample covariance, Σ = (1 − λ)sŜ + λI: s = 1 is
 * the paper's prior, s = 0 an isotropic λI around the set's mean. For a dataset's label sets
 * (every class, every pair of classes) the Cholesky factors, their inverses and log-determinants
 * are computed once, in float64, and kept as tables.
 */
import { ProbsemError } from '../core/errors.js';
import { cholesky, invertLower, logDetFromCholesky } from '../core/linalg.js';

/** (1 − λ)sŜ + λI for vectors of length `dim` (Ŝ with the 1/(M − 1) normalisation; 0 for M = 1). */
export function shrunkCovariance(vectors: ArrayLike<number>[], dim: number, lambda: number, spread = 1): Float64Array {
  if (!(lambda > 0 && lambda <= 1)) throw new ProbsemError(`λ must be in (0, 1] (λ = 0 leaves single labels a singular prior), got ${lambda}`, 'BAD_OPTION');
  if (!(spread >= 0 && spread <= 1)) throw new ProbsemError(`spread must be in [0, 1], got ${spread}`, 'BAD_OPTION');
  if (vectors.length === 0) throw new ProbsemError('a label set needs at least one vector', 'BAD_OPTION');
  for (const v of vectors) {
    if (v.length !== dim) throw new ProbsemError(`label vector of length ${v.length}, expected ${dim}`, 'SHAPE');
    for (let i = 0; i < dim; i++) if (!Number.isFinite(v[i])) throw new ProbsemError(`label vector has a non-finite value at ${i}`, 'BAD_INPUT');
  }
  const m = vectors.length;
  const mean = meanOf(vectors, dim);
  const cov = new Float64Array(dim * dim);
  if (m > 1) {
    for (const v of vectors) {
      for (let r = 0; r < dim; r++) {
        const dr = v[r] - mean[r];
        for (let c = 0; c < dim; c++) cov[r * dim + c] += (dr * (v[c] - mean[c])) / (m - 1);
      }
    }
  }
  for (let i = 0; i < cov.length; i++) cov[i] *= (1 - lambda) * spread;
  for (let i = 0; i < dim; i++) cov[i * dim + i] += lambda;
  return cov;
}

export function meanOf(vectors: ArrayLike<number>[], dim: number): Float64Array {
  const mean = new Float64Array(dim);
  for (const v of vectors) for (let i = 0; i < dim; i++) mean[i] += v[i] / vectors.length;
  return mean;
}

/** The query distribution of a set of label vectors: their mean and shrunk covariance. */
export function labelSetGaussian(vectors: ArrayLike<number>[], dim: number, lambda: number, spread = 1): { mean: Float64Array; covariance: Float64Array } {
  return { mean: meanOf(vectors, dim), covariance: shrunkCovariance(vectors, dim, lambda, spread) };
}

/**
 * Priors for every label set of size one or two over C classes: set s = a for {a}, and
 * C + index of the unordered pair for {a, b} with a < b ({a, a} is {a}). Each set's covariance is
 * factorised once: L (Σ = LLᵀ), L⁻¹ and log|Σ|, row-major float32 tables [S, K, K].
 */
export class LabelSetPriors {
  readonly numSets: number;
  readonly scaleTril: Float32Array;
  readonly inverseTril: Float32Array;
  readonly logDet: Float32Array;

  constructor(
    /** Class vectors [C][K]. */
    readonly classVectors: number[][],
    readonly lambda: number,
    readonly spread = 1,
  ) {
    const c = classVectors.length;
    const k = this.dim;
    this.numSets = c + (c * (c - 1)) / 2;
    this.scaleTril = new Float32Array(this.numSets * k * k);
    this.inverseTril = new Float32Array(this.numSets * k * k);
    this.logDet = new Float32Array(this.numSets);
    for (let s = 0; s < this.numSets; s++) {
      const cov = shrunkCovariance(this.members(s).map((i) => classVectors[i]), k, lambda, spread);
      const l = cholesky(cov, k);
      this.scaleTril.set(l, s * k * k);
      this.inverseTril.set(invertLower(l, k), s * k * k);
      this.logDet[s] = logDetFromCholesky(l, k);
    }
  }

  get numClasses(): number {
    return this.classVectors.length;
  }

  get dim(): number {
    return this.classVectors[0]?.length ?? 0;
  }

  /** The set index of {a} or {a, b}. */
  setIndex(a: number, b: number = a): number {
    const c = this.numClasses;
    if (!(a >= 0 && a < c && b >= 0 && b < c)) throw new ProbsemError(`label ${a < 0 || a >= c ? a : b} is outside the ${c} classes`, 'BAD_INPUT');
    if (a === b) return a;
    const [lo, hi] = a < b ? [a, b] : [b, a];
    // Pairs in order (0,1), (0,2), …, (0,C−1), (1,2), …
    return c + lo * c - (lo * (lo + 1)) / 2 + (hi - lo - 1);
  }

  /** The classes of set s. */
  members(s: number): number[] {
    const c = this.numClasses;
    if (s < c) return [s];
    let r = s - c;
    for (let lo = 0; lo < c; lo++) {
      const n = c - lo - 1;
      if (r < n) return [lo, lo + 1 + r];
      r -= n;
    }
    throw new ProbsemError(`label set ${s} does not exist (${this.numSets} sets)`, 'BAD_INPUT');
  }
}

/**
 * Priors of label sets of any size, for datasets whose images carry tag sets. Members index
 * `vectors` (the model's class vectors followed by its tag vectors); each distinct set gets its
 * mean, inverse Cholesky factor L⁻¹ (Σ = LLᵀ) and log|Σ| computed once, in float64, on first
 * use, and a slot in growing float32 tables (L itself is not kept: training needs only L⁻¹, and
 * a set costs K² floats). Training meets the same sets again and again, so a step only copies
 * rows of the tables.
 */
export class SetPriorCache {
  /** Slot of each set seen so far, keyed by its sorted members. */
  private readonly slots = new Map<string, number>();
  private means = new Float32Array(0);
  private inverses = new Float32Array(0);
  private logDets = new Float32Array(0);
  /** Sets factorised so far (each once). */
  computed = 0;

  constructor(
    readonly vectors: readonly ArrayLike<number>[],
    readonly dim: number,
    readonly lambda: number,
    readonly spread = 1,
  ) {}

  /** The slot of a set (members in any order, repeats ignored), factorising it on first sight. */
  slot(members: ArrayLike<number>): number {
    const sorted = [...new Set(Array.from(members))].sort((a, b) => a - b);
    if (sorted.length === 0) throw new ProbsemError('a label set needs at least one member', 'BAD_INPUT');
    const key = sorted.join(',');
    const known = this.slots.get(key);
    if (known !== undefined) return known;
    for (const m of sorted) {
      if (!(Number.isInteger(m) && m >= 0 && m < this.vectors.length)) throw new ProbsemError(`label set member ${m} is outside the ${this.vectors.length} vectors`, 'BAD_INPUT');
    }
    const k = this.dim;
    const rows = sorted.map((m) => this.vectors[m]);
    const { mean, covariance } = labelSetGaussian(rows, k, this.lambda, this.spread);
    const l = cholesky(covariance, k);
    const s = this.computed++;
    this.grow(s + 1);
    this.means.set(mean, s * k);
    this.inverses.set(invertLower(l, k), s * k * k);
    this.logDets[s] = logDetFromCholesky(l, k);
    this.slots.set(key, s);
    return s;
  }

  /** The set's mean [K], L⁻¹ [K·K] (row-major views) and log|Σ|. */
  get(slot: number): { mean: Float32Array; inverseTril: Float32Array; logDet: number } {
    const k = this.dim;
    if (!(slot >= 0 && slot < this.computed)) throw new ProbsemError(`no label set in slot ${slot}`, 'BAD_INPUT');
    return {
      mean: this.means.subarray(slot * k, (slot + 1) * k),
      inverseTril: this.inverses.subarray(slot * k * k, (slot + 1) * k * k),
      logDet: this.logDets[slot],
    };
  }

  /** Doubles the tables as sets arrive, so n sets cost O(n) copying in all. */
  private grow(count: number): void {
    if (count <= this.logDets.length) return;
    const cap = Math.max(count, 2 * this.logDets.length, 16);
    const k = this.dim;
    const widen = (a: Float32Array, width: number) => {
      const b = new Float32Array(cap * width);
      b.set(a);
      return b;
    };
    this.means = widen(this.means, k);
    this.inverses = widen(this.inverses, k * k);
    this.logDets = widen(this.logDets, 1);
  }
}
