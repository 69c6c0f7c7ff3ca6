/**
 * Inner-product rewrites of the distances that have one (distances.ts), for the index's quantised
 * scan: distance(q, x) = scale · (⟨a(x), b(q)⟩ + c(x) + k(q)), with scale > 0, so ranking by the
 * distance is ranking by S = ⟨a, b⟩ + c, and the scan's bound-and-rescore argument (kl-index.ts)
 * applies unchanged: its bounds on S depend on c, the norms of a, b and of their quantisation
 * residuals alone, and candidates are rescored by the exact double-precision distance.
 *
 * With d = μx − μq, per dimension j (σ² the variances; s = σq²):
 *
 * - kl-reverse, diagonal items, diagonal query:
 *     2 KL(x ‖ q) = Σ (σx² + μx²)/s − 2 μq μx / s + [μq²/s + log s − 1] − log σx²
 *     a = [σx² + μx², μx], c = −Σ log σx², b = [1/s, −2 μq/s]
 * - kl-sym, diagonal items, diagonal query: the KL(q ‖ x) rewrite of kl-math.ts beside the one
 *   above; the log-determinants cancel:
 *     2 (KL(q ‖ x) + KL(x ‖ q)) = ⟨[1/σx², μx/σx², σx² + μx², μx], [s + μq², −2μq, 1/s, −2μq/s]⟩ + Σ μx²/σx² + [Σ μq²/s − 2K]
 * - w2, diagonal items, diagonal query: Σ d² + (σx − σq)² = Σ μx² + σx² − 2 μq μx − 2 σq σx + [Σ μq² + s]
 *     a = [μx, σx], c = Σ μx² + σx², b = [−2μq, −2σq]
 * - csd, any items and query: ‖d‖² + tr Σq + tr Σx = ‖μx‖² + tr Σx − 2 ⟨μq, μx⟩ + [‖μq‖² + tr Σq]
 *     a = μx, c = ‖μx‖² + tr Σx, b = −2 μq
 *
 * - kl-reverse, full items, any query (Pq = Σq⁻¹; entries r ≤ c, row by row):
 *     2 KL(x ‖ q) = tr(Pq (Σx + μxμxᵀ)) − 2 μqᵀPqμx + [μqᵀPqμq − K + log|Σq|] − log|Σx|
 *     a = [(Σx + μxμxᵀ)_rc, μx], c = −log|Σx|, b = [Pq_rc (off-diagonal doubled), −2 Pq μq]
 * - kl-sym, full items, any query: the full KL(q ‖ x) rewrite of kl-math.ts beside the one above.
 *
 * A non-diagonal query against diagonal items would need the products μx_j μx_l (K² features) for
 * the KL and W2 rewrites; those queries, Bhattacharyya, the ELK and W2 between full Gaussians are
 * scored by exact brute force instead (kl-index.ts).
 */
import { invertLower } from '../core/linalg.js';
import type { Distance } from './distances.js';
import { FullScratch, itemVector, type ItemGaussians, type PreparedQuery } from './kl-math.js';

export interface Rewrite {
  /** Length of a and b. */
  n: number;
  /** Writes a(x) for item i into `a` and returns c(x), in double precision. */
  item(items: ItemGaussians, i: number, a: Float64Array): number;
  /** Writes b(q). */
  query(q: PreparedQuery, b: Float64Array): void;
}

/** Whether a query's covariance has no non-zero entry off the diagonal. */
export function isDiagonal(q: PreparedQuery): boolean {
  const k = q.dim;
  for (let r = 0; r < k; r++) for (let c = 0; c < k; c++) if (r !== c && q.cov[r * k + c] !== 0) return false;
  return true;
}

/** The rewrite of a distance other than kl for this kind of items and query, or null where none applies. */
export function rewriteFor(distance: Distance, kind: 'diag' | 'full', dim: number, diagonalQuery: boolean): Rewrite | null {
  if (distance === 'csd') return csd(dim);
  if (kind === 'full') {
    if (distance === 'kl-reverse') return klReverseFull(dim);
    if (distance === 'kl-sym') return klSymFull(dim);
    return null;
  }
  if (!diagonalQuery) return null;
  if (distance === 'kl-reverse') return klReverse(dim);
  if (distance === 'kl-sym') return klSym(dim);
  if (distance === 'w2') return w2(dim);
  return null;
}

const qVar = (q: PreparedQuery, j: number) => q.cov[j * q.dim + j];

/**
 * A rewrite for diagonal items and queries from its per-dimension parts: `item` fills dimension j
 * of each of the `blocks` K-long parts of a (a[j], a[K + j], …) and returns its share of c;
 * `query` fills b likewise from the query's mean and variance.
 */
function perDimension(
  k: number,
  blocks: number,
  item: (m: number, v: number, a: Float64Array, j: number) => number,
  query: (m: number, s: number, b: Float64Array, j: number) => void,
): Rewrite {
  return {
    n: blocks * k,
    item(items, i, a) {
      const { mean, variance } = items as ItemGaussians & { kind: 'diag' };
      let c = 0;
      for (let j = 0; j < k; j++) c += item(mean[i * k + j], variance[i * k + j], a, j);
      return c;
    },
    query(q, b) {
      for (let j = 0; j < k; j++) query(q.mean[j], qVar(q, j), b, j);
    },
  };
}

function klReverse(k: number): Rewrite {
  return perDimension(
    k,
    2,
    (m, v, a, j) => {
      a[j] = v + m * m;
      a[k + j] = m;
      return -Math.log(v);
    },
    (m, s, b, j) => {
      b[j] = 1 / s;
      b[k + j] = (-2 * m) / s;
    },
  );
}

function klSym(k: number): Rewrite {
  return perDimension(
    k,
    4,
    (m, v, a, j) => {
      a[j] = 1 / v;
      a[k + j] = m / v;
      a[2 * k + j] = v + m * m;
      a[3 * k + j] = m;
      return (m * m) / v;
    },
    (m, s, b, j) => {
      b[j] = s + m * m;
      b[k + j] = -2 * m;
      b[2 * k + j] = 1 / s;
      b[3 * k + j] = (-2 * m) / s;
    },
  );
}

function w2(k: number): Rewrite {
  return perDimension(
    k,
    2,
    (m, v, a, j) => {
      a[j] = m;
      a[k + j] = Math.sqrt(v);
      return m * m + v;
    },
    (m, s, b, j) => {
      b[j] = -2 * m;
      b[k + j] = -2 * Math.sqrt(s);
    },
  );
}

function klReverseFull(k: number): Rewrite {
  const tri = (k * (k + 1)) / 2;
  return {
    n: tri + k,
    item(items, i, a) {
      const { mean, scaleTril: l } = items as ItemGaussians & { kind: 'full' };
      const l0 = i * k * k;
      const m0 = i * k;
      let logDet = 0;
      for (let r = 0; r < k; r++) logDet += 2 * Math.log(l[l0 + r * k + r]);
      let o = 0;
      for (let r = 0; r < k; r++) {
        for (let c = r; c < k; c++) {
          // Σx[r][c] = Σ_t L[r][t] L[c][t], t ≤ r (r ≤ c).
          let sx = 0;
          for (let t = 0; t <= r; t++) sx += l[l0 + r * k + t] * l[l0 + c * k + t];
          a[o++] = sx + mean[m0 + r] * mean[m0 + c];
        }
      }
      for (let j = 0; j < k; j++) a[o++] = mean[m0 + j];
      return -logDet;
    },
    query(q, b) {
      // Pq = Lq⁻ᵀ Lq⁻¹: P[r][c] = Σ_t inv[t][r] inv[t][c], t ≥ max(r, c).
      const inv = invertLower(q.chol, k);
      const p = new Float64Array(k * k);
      for (let r = 0; r < k; r++) {
        for (let c = r; c < k; c++) {
          let t = 0;
          for (let u = c; u < k; u++) t += inv[u * k + r] * inv[u * k + c];
          p[r * k + c] = p[c * k + r] = t;
        }
      }
      let o = 0;
      for (let r = 0; r < k; r++) for (let c = r; c < k; c++) b[o++] = (r === c ? 1 : 2) * p[r * k + c];
      for (let j = 0; j < k; j++) {
        let t = 0;
        for (let u = 0; u < k; u++) t += p[j * k + u] * q.mean[u];
        b[o++] = -2 * t;
      }
    },
  };
}

function klSymFull(k: number): Rewrite {
  const reverse = klReverseFull(k);
  const half = reverse.n;
  const scratch = new FullScratch(k);
  return {
    n: 2 * half,
    item(items, i, a) {
      return itemVector(items, i, a.subarray(0, half), scratch) + reverse.item(items, i, a.subarray(half));
    },
    query(q, b) {
      b.set(q.b, 0);
      reverse.query(q, b.subarray(half));
    },
  };
}

function csd(k: number): Rewrite {
  return {
    n: k,
    item(items, i, a) {
      let c = 0;
      for (let j = 0; j < k; j++) {
        const m = items.mean[i * k + j];
        a[j] = m;
        c += m * m;
        if (items.kind === 'diag') {
          c += items.variance[i * k + j];
        } else {
          // tr Σx = ‖L‖²_F: row j of the lower factor.
          for (let t = 0; t <= j; t++) c += items.scaleTril[i * k * k + j * k + t] ** 2;
        }
      }
      return c;
    },
    query(q, b) {
      for (let j = 0; j < k; j++) b[j] = -2 * q.mean[j];
    },
  };
}
