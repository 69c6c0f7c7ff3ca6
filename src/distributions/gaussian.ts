/**
 * Batched Gaussian distributions over a K-dimensional latent space, as TensorFlow.js tensors.
 * Rows are independent distributions; a batch of 1 broadcasts against any batch.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';

const LOG_2PI = Math.log(2 * Math.PI);

export interface Gaussian {
  readonly kind: 'diag' | 'full';
  readonly mean: tf.Tensor2D;
  /** Number of rows (distributions). */
  readonly batch: number;
  /** Latent dimension. */
  readonly dim: number;
  /** z = μ + S ε for standard-normal ε of shape [batch, dim] (reparameterised). */
  sample(eps: tf.Tensor2D): tf.Tensor2D;
  /** log N(z; μ, Σ) per row, shape [batch]. */
  logProb(z: tf.Tensor2D): tf.Tensor1D;
  /** Covariance diagonal, shape [batch, dim]. */
  variance(): tf.Tensor2D;
  dispose(): void;
}

/** N(μ, diag(exp(logVar))). */
export class DiagGaussian implements Gaussian {
  readonly kind = 'diag' as const;
  constructor(
    readonly mean: tf.Tensor2D,
    readonly logVar: tf.Tensor2D,
  ) {
    checkSameShape('DiagGaussian', mean.shape, logVar.shape);
  }

  /** N(0, I) as a batch of one, for broadcasting. */
  static standard(dim: number): DiagGaussian {
    return new DiagGaussian(tf.zeros([1, dim]), tf.zeros([1, dim]));
  }

  get batch(): number {
    return this.mean.shape[0];
  }
  get dim(): number {
    return this.mean.shape[1];
  }

  sample(eps: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.add(this.mean, tf.mul(tf.exp(tf.mul(this.logVar, 0.5)), eps)));
  }

  logProb(z: tf.Tensor2D): tf.Tensor1D {
    return tf.tidy(() => {
      const d = tf.sub(z, this.mean);
      const quad = tf.mul(tf.square(d), tf.exp(tf.neg(this.logVar)));
      const perDim = tf.add(tf.add(quad, this.logVar), LOG_2PI);
      return tf.mul(tf.sum(perDim, 1), -0.5) as tf.Tensor1D;
    });
  }

  variance(): tf.Tensor2D {
    return tf.exp(this.logVar);
  }

  /** The same distribution with an explicit (diagonal) Cholesky factor. */
  toFull(): FullGaussian {
    const scale = tf.tidy(() => tf.mul(tf.expandDims(tf.exp(tf.mul(this.logVar, 0.5)), 2), tf.eye(this.dim)));
    // Own copy of the mean, so disposing one distribution leaves the other intact.
    return new FullGaussian(tf.clone(this.mean), scale as tf.Tensor3D);
  }

  dispose(): void {
    tf.dispose([this.mean, this.logVar]);
  }
}

/**
 * The inverse factor U = L⁻¹ (so Σ⁻¹ = UᵀU) and log|Σ| of a Gaussian whose factorisation was
 * computed once (fixed priors): KL against it then needs matrix products only, no solves.
 */
export interface InverseFactor {
  /** [batch, K, K] lower-triangular. */
  inverseTril: tf.Tensor3D;
  /** log|Σ| per row, [batch]. */
  logDet: tf.Tensor1D;
}

/** N(μ, L Lᵀ) with L lower-triangular with a positive diagonal. */
export class FullGaussian implements Gaussian {
  readonly kind = 'full' as const;
  constructor(
    readonly mean: tf.Tensor2D,
    readonly scaleTril: tf.Tensor3D,
    /** Optional precomputed inverse factor (see InverseFactor). */
    readonly inverse: InverseFactor | null = null,
  ) {
    const [b, k] = mean.shape;
    const [lb, r, c] = scaleTril.shape;
    if (lb !== b || r !== k || c !== k) {
      throw new ProbsemError(
        `FullGaussian: scale factor of shape [${scaleTril.shape}] does not fit mean of shape [${mean.shape}]`,
      );
    }
    if (inverse && (inverse.inverseTril.shape.some((d, i) => d !== scaleTril.shape[i]) || inverse.logDet.shape[0] !== lb)) {
      throw new ProbsemError(`FullGaussian: inverse factor of shape [${inverse.inverseTril.shape}] does not fit [${scaleTril.shape}]`);
    }
  }

  get batch(): number {
    return this.mean.shape[0];
  }
  get dim(): number {
    return this.mean.shape[1];
  }

  sample(eps: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.add(this.mean, tf.squeeze(tf.matMul(this.scaleTril, tf.expandDims(eps, 2)), [2])));
  }

  logProb(z: tf.Tensor2D): tf.Tensor1D {
    return tf.tidy(() => {
      const l = broadcastBatch(this.scaleTril, z.shape[0]);
      const d = tf.expandDims(tf.sub(z, this.mean), 2) as tf.Tensor3D;
      const m = solveLowerTriangular(l, d);
      const maha = tf.sum(tf.square(m), [1, 2]);
      const logDet = logDetFromTril(l);
      return tf.mul(tf.add(tf.add(maha, logDet), this.dim * LOG_2PI), -0.5) as tf.Tensor1D;
    });
  }

  covariance(): tf.Tensor3D {
    return tf.matMul(this.scaleTril, this.scaleTril, false, true);
  }

  variance(): tf.Tensor2D {
    return tf.tidy(() => tf.sum(tf.square(this.scaleTril), 2) as tf.Tensor2D);
  }

  /** The marginal (diagonal) Gaussian with the same means and variances. */
  marginals(): DiagGaussian {
    return new DiagGaussian(tf.clone(this.mean), tf.tidy(() => tf.log(this.variance())));
  }

  dispose(): void {
    tf.dispose([this.mean, this.scaleTril]);
    if (this.inverse) tf.dispose([this.inverse.inverseTril, this.inverse.logDet]);
  }
}

/**
 * The same distribution carrying its inverse factor, so that KL divergences *against* it (it in
 * the second slot) cost matrix products only: worth it when one set of Gaussians is compared with
 * many (retrieval). Shares the mean and factor tensors with `g`.
 */
export function withInverseFactor(g: FullGaussian): FullGaussian {
  if (g.inverse) return g;
  const [inv, logDet] = tf.tidy(() => {
    const eye = tf.tile(tf.expandDims(tf.eye(g.dim), 0), [g.batch, 1, 1]) as tf.Tensor3D;
    return [solveLowerTriangular(g.scaleTril, eye), logDetFromTril(g.scaleTril)];
  });
  return new FullGaussian(g.mean, g.scaleTril, { inverseTril: inv as tf.Tensor3D, logDet: logDet as tf.Tensor1D });
}

/** Encoder outputs per row for a K-dimensional full-covariance Gaussian: μ, log-diagonal of L, strictly lower entries. */
export function fullMomentsWidth(k: number): number {
  return 2 * k + (k * (k - 1)) / 2;
}

/**
 * N(μ, L Lᵀ) from raw encoder outputs h [B, fullMomentsWidth(K)] laid out as μ (K), s (K) with
 * L_ii = exp(s_i) (positive by construction), then the strictly lower entries of L row by row
 * (L_10, L_20, L_21, …). Differentiable: the entries are placed by a constant 0/1 matrix product.
 */
export function fullGaussianFromMoments(h: tf.Tensor2D, k: number): FullGaussian {
  const width = fullMomentsWidth(k);
  if (h.shape[1] !== width) {
    throw new ProbsemError(`fullGaussianFromMoments: expected ${width} outputs per row for latent ${k}, got ${h.shape[1]}`, 'SHAPE');
  }
  const b = h.shape[0];
  const off = (k * (k - 1)) / 2;
  const mean = tf.slice(h, [0, 0], [b, k]) as tf.Tensor2D;
  const scaleTril = tf.tidy(() => {
    const diag = tf.mul(tf.expandDims(tf.exp(tf.slice(h, [0, k], [b, k])), 2), tf.eye(k));
    if (off === 0) return diag as tf.Tensor3D;
    const lower = tf.reshape(tf.matMul(tf.slice(h, [0, 2 * k], [b, off]), strictLowerPlacement(k)), [b, k, k]);
    return tf.add(diag, lower) as tf.Tensor3D;
  });
  return new FullGaussian(mean, scaleTril);
}

/** [K(K−1)/2, K·K]: row j puts the j-th strictly lower entry (row-major order) at its place in a flat K×K matrix. */
function strictLowerPlacement(k: number): tf.Tensor2D {
  const off = (k * (k - 1)) / 2;
  const p = new Float32Array(off * k * k);
  let j = 0;
  for (let r = 1; r < k; r++) for (let c = 0; c < r; c++) p[j++ * k * k + r * k + c] = 1;
  return tf.tensor2d(p, [off, k * k]);
}

/** tf.tidy for a function returning a Gaussian: its tensors survive, every intermediate is freed. */
export function tidyGaussian<T extends Gaussian>(fn: () => T): T {
  // tidy keeps every tensor reachable through the returned object's fields.
  return tf.tidy(() => fn() as unknown as tf.TensorContainer) as unknown as T;
}

function checkSameShape(what: string, a: number[], b: number[]): void {
  if (a.length !== 2 || a.length !== b.length || a.some((v, i) => v !== b[i])) {
    throw new ProbsemError(`${what}: mean shape [${a}] and log-variance shape [${b}] differ or are not 2-D`);
  }
}

/** Repeats a batch-of-one tensor along axis 0 to `batch` rows. */
export function broadcastBatch<T extends tf.Tensor>(t: T, batch: number): T {
  const b = t.shape[0];
  if (b === batch) return t;
  if (b !== 1) throw new ProbsemError(`cannot broadcast a batch of ${b} distributions to ${batch}`);
  const reps = t.shape.map((_, i) => (i === 0 ? batch : 1));
  return tf.tile(t, reps) as T;
}

/** Diagonal of a batch of square matrices: [B, K, K] → [B, K]. */
export function batchDiag(m: tf.Tensor3D): tf.Tensor2D {
  return tf.tidy(() => tf.sum(tf.mul(m, tf.eye(m.shape[1])), 2) as tf.Tensor2D);
}

/** log det(L Lᵀ) per batch row. */
export function logDetFromTril(l: tf.Tensor3D): tf.Tensor1D {
  return tf.tidy(() => tf.mul(tf.sum(tf.log(batchDiag(l)), 1), 2) as tf.Tensor1D);
}

/**
 * Solves L X = B for batched lower-triangular L [N, K, K] and B [N, K, R] by forward
 * substitution, one row at a time (differentiable; K is a latent size, so K steps are cheap).
 */
export function solveLowerTriangular(l: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    const k = l.shape[1];
    const rows: tf.Tensor3D[] = [];
    for (let i = 0; i < k; i++) {
      let r = tf.slice(b, [0, i, 0], [-1, 1, -1]) as tf.Tensor3D;
      if (i > 0) {
        const li = tf.slice(l, [0, i, 0], [-1, 1, i]);
        const prev = rows.length === 1 ? rows[0] : tf.concat(rows, 1);
        r = tf.sub(r, tf.matMul(li as tf.Tensor3D, prev));
      }
      rows.push(tf.div(r, tf.slice(l, [0, i, i], [-1, 1, 1])) as tf.Tensor3D);
    }
    return (rows.length === 1 ? rows[0] : tf.concat(rows, 1)) as tf.Tensor3D;
  });
}

/**
 * log N(z_n; μ_c, diag σ²_c) for every pair: z [N, K] against a batch of C diagonal Gaussians,
 * giving [N, C]. Expanded into matrix products so it costs two matMuls, not N·C loops.
 */
export function pairwiseLogProb(z: tf.Tensor2D, g: DiagGaussian): tf.Tensor2D {
  return tf.tidy(() => {
    const prec = tf.exp(tf.neg(g.logVar)); // [C, K]
    const zz = tf.matMul(tf.square(z), prec, false, true); // Σ z² / σ²      [N, C]
    const zm = tf.matMul(z, tf.mul(g.mean, prec), false, true); // Σ z μ / σ²  [N, C]
    const mm = tf.sum(tf.mul(tf.square(g.mean), prec), 1); // Σ μ² / σ²    [C]
    const ld = tf.sum(g.logVar, 1); // [C]
    const quad = tf.add(tf.sub(zz, tf.mul(zm, 2)), mm);
    return tf.mul(tf.add(tf.add(quad, ld), g.dim * LOG_2PI), -0.5) as tf.Tensor2D;
  });
}
