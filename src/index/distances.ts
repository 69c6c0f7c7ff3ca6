/**
 * Distances between a query Gaussian q = N(μq, Σq) and an item x = N(μx, Σx), in double precision,
 * as the index ranks them (smaller is closer for every one; d = μx − μq, K the dimension):
 *
 * - `kl`            KL(q ‖ x) = ½ [tr(Σx⁻¹Σq) + dᵀΣx⁻¹d − K + log|Σx| − log|Σq|]
 * - `kl-reverse`    KL(x ‖ q) = ½ [tr(Σq⁻¹Σx) + dᵀΣq⁻¹d − K + log|Σq| − log|Σx|]
 * - `kl-sym`        KL(q ‖ x) + KL(x ‖ q) (Jeffreys' divergence)
 * - `bhattacharyya` ⅛ dᵀΣ⁻¹d + ½ log(|Σ| / √(|Σq||Σx|)) with Σ = (Σq + Σx)/2
 * - `w2`            the squared 2-Wasserstein distance ‖d‖² + tr Σq + tr Σx − 2 tr((Σx^½ Σq Σx^½)^½);
 *                   for diagonal pairs Σ_j d_j² + (σq_j − σx_j)². The trace term is the nuclear norm
 *                   of Lqᵀ Lx (Σ = L Lᵀ), the sum of the square roots of the eigenvalues of Lxᵀ Σq Lx.
 * - `elk`           minus the log expected likelihood kernel: −log ∫ N(z; μq, Σq) N(z; μx, Σx) dz
 *                   = −log N(μq; μx, Σq + Σx) = ½ [K log 2π + log|Σq + Σx| + dᵀ(Σq + Σx)⁻¹d]
 * - `csd`           PCME++'s closed-form sampled distance (Chun, ICLR 2024, eq. 1-2; naver-ai/pcmepp
 *                   `_compute_closed_form_loss`): ‖μq − μx‖² + ‖σq² + σx²‖₁, which is
 *                   E‖zq − zx‖² for independent samples; for full covariances ‖d‖² + tr Σq + tr Σx.
 *
 * Which admit an inner-product rewrite ⟨a(x), b(q)⟩ + c(x) (+ a query constant), what the fast scan
 * of kl-index.ts needs: `kl` (kl-math.ts); `kl-reverse` too, in principle for both kinds, since it
 * is linear in the item's moments: 2 KL(x ‖ q) = tr(Σq⁻¹ (Σx + μxμxᵀ)) − 2 μqᵀΣq⁻¹μx − log|Σx| +
 * (query terms); hence `kl-sym` (the two vectors side by side); `csd` (a = μx, c = ‖μx‖² + tr Σx,
 * b = −2μq); `w2` for diagonal pairs (a = [μx, σx], c = ‖μx‖² + Σσx², b = [−2μq, −2σq]) but not
 * for full ones (the matrix square root couples them). `bhattacharyya` and `elk` have
 * (σq² + σx²)⁻¹ and log(σq² + σx²) per dimension: no finite rewrite. The index scans the rewrites
 * that rewrites.ts implements (KL(x ‖ q) and symmetric KL for full items and any query, or diagonal
 * items and diagonal queries; W2 for diagonal items and queries; CSD for all) and scores
 * everything else exactly by brute force (`DISTANCE_INFO`).
 */
import { ProbsemError } from '../core/errors.js';
import { cholesky, invertLower, symmetricEigen } from '../core/linalg.js';
import { exactKl, FullScratch, type ItemGaussians, type PreparedQuery } from './kl-math.js';

export const DISTANCES = ['kl', 'kl-reverse', 'kl-sym', 'bhattacharyya', 'w2', 'elk', 'csd'] as const;
export type Distance = (typeof DISTANCES)[number];

export interface DistanceInfo {
  title: string;
  /** Whether score(q, x) = ⟨a(x), b(q)⟩ + c(x) + const(q) exactly, per kind of item. */
  innerProduct: { diag: boolean; full: boolean };
}

export const DISTANCE_INFO: Record<Distance, DistanceInfo> = {
  kl: { title: 'KL(query ‖ item)', innerProduct: { diag: true, full: true } },
  'kl-reverse': { title: 'KL(item ‖ query)', innerProduct: { diag: true, full: true } },
  'kl-sym': { title: 'KL(query ‖ item) + KL(item ‖ query)', innerProduct: { diag: true, full: true } },
  bhattacharyya: { title: 'Bhattacharyya distance', innerProduct: { diag: false, full: false } },
  w2: { title: 'squared 2-Wasserstein distance', innerProduct: { diag: true, full: false } },
  elk: { title: '−log expected likelihood kernel', innerProduct: { diag: false, full: false } },
  csd: { title: "PCME++ closed-form sampled distance", innerProduct: { diag: true, full: true } },
};

/** `--distance NAME` → a Distance, with the list of names in the error. */
export function parseDistance(name: unknown, what = '--distance'): Distance {
  if (name === undefined) return 'kl';
  if (typeof name !== 'string' || !(DISTANCES as readonly string[]).includes(name)) {
    throw new ProbsemError(`${what} must be one of ${DISTANCES.join(', ')}; got ${JSON.stringify(name)}`, 'BAD_OPTION');
  }
  return name as Distance;
}

const LOG_2PI = Math.log(2 * Math.PI);

/**
 * Scores one query against items by one distance. Diagonal items against a diagonal query take a
 * per-dimension loop; anything else goes through the full-covariance formulas (a diagonal item is a
 * full one with factor diag(σ)).
 */
export class DistanceScorer {
  private readonly dim: number;
  private readonly diagPath: boolean;
  /** Query variances, their logs and square roots (diagonal path). */
  private readonly qv: Float64Array;
  private readonly qlog: Float64Array;
  private readonly qsd: Float64Array;
  private readonly qTrace: number;
  private readonly qLogSum: number;
  /** Per-dimension σq² + σx² of the item being scored (diagonal path). */
  private readonly sums: Float64Array;
  /** Lq⁻¹ (full path). */
  private qInvChol: Float64Array | null = null;
  private readonly scratch: FullScratch;
  private readonly lx: Float64Array;
  private readonly sx: Float64Array;
  private readonly m: Float64Array;
  private readonly d: Float64Array;

  constructor(
    private readonly items: ItemGaussians,
    readonly distance: Distance,
    private readonly q: PreparedQuery,
  ) {
    const dim = items.dim;
    this.dim = dim;
    let offDiag = false;
    for (let r = 0; r < dim && !offDiag; r++) for (let c = 0; c < dim; c++) if (r !== c && q.cov[r * dim + c] !== 0) offDiag = true;
    this.diagPath = items.kind === 'diag' && !offDiag;
    this.qv = new Float64Array(dim);
    this.qlog = new Float64Array(dim);
    this.qsd = new Float64Array(dim);
    let tr = 0;
    for (let j = 0; j < dim; j++) {
      const v = q.cov[j * dim + j];
      this.qv[j] = v;
      this.qlog[j] = Math.log(v);
      this.qsd[j] = Math.sqrt(v);
      tr += v;
    }
    this.qTrace = tr;
    this.qLogSum = this.qlog.reduce((a, b) => a + b, 0);
    this.sums = new Float64Array(dim);
    this.scratch = new FullScratch(dim);
    this.lx = new Float64Array(dim * dim);
    this.sx = new Float64Array(dim * dim);
    this.m = new Float64Array(dim * dim);
    this.d = new Float64Array(dim);
  }

  /** The distance from the query to item i. */
  score(i: number): number {
    if (this.distance === 'kl') return exactKl(this.items, i, this.q, this.scratch);
    return this.diagPath ? this.diagScore(i) : this.fullScore(i);
  }

  private diagScore(i: number): number {
    const items = this.items as ItemGaussians & { kind: 'diag' };
    const dim = this.dim;
    const mu = items.mean;
    const v = items.variance;
    const qm = this.q.mean;
    const qv = this.qv;
    const o = i * dim;
    let s = 0;
    switch (this.distance) {
      case 'kl-reverse':
        for (let j = 0; j < dim; j++) {
          const vx = v[o + j];
          const d = mu[o + j] - qm[j];
          s += (vx + d * d) / qv[j] + this.qlog[j] - Math.log(vx) - 1;
        }
        return 0.5 * s;
      case 'kl-sym':
        // The log-determinants cancel: ½ Σ (σq² + d²)/σx² + (σx² + d²)/σq² − 2.
        for (let j = 0; j < dim; j++) {
          const vx = v[o + j];
          const d2 = (mu[o + j] - qm[j]) ** 2;
          s += (qv[j] + d2) / vx + (vx + d2) / qv[j] - 2;
        }
        return 0.5 * s;
      case 'bhattacharyya':
        // Σ ¼ d²/(σq² + σx²) + ½ log((σq² + σx²)/2) − ¼ log σq² − ¼ log σx², the logs summed by sumLog.
        s = this.pooled(o);
        return s / 4 + 0.5 * (sumLog(this.sums, 0, dim) - dim * Math.LN2) - 0.25 * (this.qLogSum + sumLog(v, o, dim));
      case 'w2':
        for (let j = 0; j < dim; j++) {
          const d = mu[o + j] - qm[j];
          const e = Math.sqrt(v[o + j]) - this.qsd[j];
          s += d * d + e * e;
        }
        return s;
      case 'elk':
        s = this.pooled(o);
        return 0.5 * (dim * LOG_2PI + sumLog(this.sums, 0, dim) + s);
      case 'csd':
        for (let j = 0; j < dim; j++) {
          const d = mu[o + j] - qm[j];
          s += d * d + qv[j] + v[o + j];
        }
        return s;
      default:
        throw new Error(`unreachable: ${this.distance}`);
    }
  }

  /** For the diagonal item at offset o: σq² + σx² per dimension into this.sums, and Σ d²/(σq² + σx²). */
  private pooled(o: number): number {
    const items = this.items as ItemGaussians & { kind: 'diag' };
    let s = 0;
    for (let j = 0; j < this.dim; j++) {
      const sum = this.qv[j] + items.variance[o + j];
      const d = items.mean[o + j] - this.q.mean[j];
      this.sums[j] = sum;
      s += (d * d) / sum;
    }
    return s;
  }

  /** Item i's lower factor Lx into this.lx, its covariance into this.sx, μx − μq into this.d; returns log|Σx|. */
  private loadItem(i: number): number {
    const dim = this.dim;
    const items = this.items;
    const lx = this.lx;
    lx.fill(0);
    if (items.kind === 'diag') {
      for (let j = 0; j < dim; j++) lx[j * dim + j] = Math.sqrt(items.variance[i * dim + j]);
    } else {
      const l0 = i * dim * dim;
      for (let r = 0; r < dim; r++) for (let c = 0; c <= r; c++) lx[r * dim + c] = items.scaleTril[l0 + r * dim + c];
    }
    let logDet = 0;
    for (let r = 0; r < dim; r++) logDet += 2 * Math.log(lx[r * dim + r]);
    for (let r = 0; r < dim; r++) {
      for (let c = 0; c <= r; c++) {
        let t = 0;
        for (let k = 0; k <= c; k++) t += lx[r * dim + k] * lx[c * dim + k];
        this.sx[r * dim + c] = t;
        this.sx[c * dim + r] = t;
      }
      this.d[r] = this.items.mean[i * dim + r] - this.q.mean[r];
    }
    return logDet;
  }

  private fullScore(i: number): number {
    const dim = this.dim;
    const logDetX = this.loadItem(i);
    const d = this.d;
    const q = this.q;
    let d2 = 0;
    for (let j = 0; j < dim; j++) d2 += d[j] * d[j];
    let trX = 0;
    for (let j = 0; j < dim; j++) trX += this.sx[j * dim + j];
    switch (this.distance) {
      case 'kl-reverse':
        return this.klReverseFull(logDetX);
      case 'kl-sym':
        return this.klReverseFull(logDetX) + exactKl(this.items, i, q, this.scratch);
      case 'bhattacharyya': {
        const { logDet, maha } = this.sumTerms(0.5);
        return maha / 8 + 0.5 * logDet - 0.25 * (q.logDet + logDetX);
      }
      case 'elk': {
        const { logDet, maha } = this.sumTerms(1);
        return 0.5 * (dim * LOG_2PI + logDet + maha);
      }
      case 'w2':
        return Math.max(0, d2 + this.qTrace + trX - 2 * this.nuclearQx());
      case 'csd':
        return d2 + this.qTrace + trX;
      default:
        throw new Error(`unreachable: ${this.distance}`);
    }
  }

  /** ½ [‖Lq⁻¹ Lx‖²_F + ‖Lq⁻¹ d‖² − K + log|Σq| − log|Σx|] (loadItem first). */
  private klReverseFull(logDetX: number): number {
    const dim = this.dim;
    const inv = (this.qInvChol ??= invertLower(this.q.chol, dim));
    let tr = 0;
    let maha = 0;
    for (let r = 0; r < dim; r++) {
      // Row r of Lq⁻¹ Lx (both lower-triangular: columns c ≤ r).
      for (let c = 0; c <= r; c++) {
        let t = 0;
        for (let k = c; k <= r; k++) t += inv[r * dim + k] * this.lx[k * dim + c];
        tr += t * t;
      }
      let y = 0;
      for (let k = 0; k <= r; k++) y += inv[r * dim + k] * this.d[k];
      maha += y * y;
    }
    return 0.5 * (tr + maha - dim + this.q.logDet - logDetX);
  }

  /** log|s (Σq + Σx)| and dᵀ (s (Σq + Σx))⁻¹ d, by Cholesky (loadItem first). */
  private sumTerms(s: number): { logDet: number; maha: number } {
    const dim = this.dim;
    const m = this.m;
    for (let j = 0; j < dim * dim; j++) m[j] = s * (this.q.cov[j] + this.sx[j]);
    const l = cholesky(m, dim);
    let logDet = 0;
    let maha = 0;
    const y = new Float64Array(dim);
    for (let r = 0; r < dim; r++) {
      logDet += 2 * Math.log(l[r * dim + r]);
      let t = this.d[r];
      for (let k = 0; k < r; k++) t -= l[r * dim + k] * y[k];
      y[r] = t / l[r * dim + r];
      maha += y[r] * y[r];
    }
    return { logDet, maha };
  }

  /** tr((Σx^½ Σq Σx^½)^½) = Σ √λ(Lxᵀ Σq Lx) (loadItem first). */
  private nuclearQx(): number {
    const dim = this.dim;
    const lx = this.lx;
    const cov = this.q.cov;
    // T = Σq Lx, then G = Lxᵀ T.
    const t = new Float64Array(dim * dim);
    for (let r = 0; r < dim; r++) {
      for (let c = 0; c < dim; c++) {
        let acc = 0;
        for (let k = c; k < dim; k++) acc += cov[r * dim + k] * lx[k * dim + c];
        t[r * dim + c] = acc;
      }
    }
    const g = new Float64Array(dim * dim);
    for (let r = 0; r < dim; r++) {
      for (let c = r; c < dim; c++) {
        let acc = 0;
        for (let k = r; k < dim; k++) acc += lx[k * dim + r] * t[k * dim + c];
        g[r * dim + c] = acc;
        g[c * dim + r] = acc;
      }
    }
    const { values } = symmetricEigen(g, dim);
    let s = 0;
    for (const v of values) s += Math.sqrt(Math.max(0, v));
    return s;
  }
}

/**
 * Σ log x[o … o+n), positive x, with one log per four values: the product of four is taken and
 * logged where it stays a normal double (any float32 variance, and query variances within 1e±75,
 * keep it so), else each value is logged. A log costs far more than a product, and Bhattacharyya
 * and the ELK are scored for every item.
 */
function sumLog(x: ArrayLike<number>, o: number, n: number): number {
  let s = 0;
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const p = x[o + j] * x[o + j + 1] * x[o + j + 2] * x[o + j + 3];
    s += p > 1e-300 && p < 1e300 ? Math.log(p) : Math.log(x[o + j]) + Math.log(x[o + j + 1]) + Math.log(x[o + j + 2]) + Math.log(x[o + j + 3]);
  }
  for (; j < n; j++) s += Math.log(x[o + j]);
  return s;
}
