/**
 * Inner-product rewrites of the distances that have one (distances.ts), for the index's float32
 * scan: distance(q, x) = scale · (⟨a(x), b(q)⟩ + c(x) + k(q)), with scale > 0, so ranking by the
 * distance is ranking by S = ⟨a, b⟩ + c, and the scan's bound-and-rescore argument (kl-index.ts)
 * applies unchanged: it only needs S's float32 error bound, which depends on |c|, ‖a‖ and ‖b‖
 * alone, and candidates are rescored by the exact double-precision distance.
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
 * A non-diagonal query against diagonal items would need the products μx_j μx_l (K² features) for
 * the KL and W2 rewrites; those queries, Bhattacharyya, the ELK and W2 between full Gaussians are
 * scored by exact brute force instead (kl-index.ts).
 */
import type { Distance } from './distances.js';
import type { ItemGaussians, PreparedQuery } from './kl-math.js';

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
  if (kind !== 'diag' || !diagonalQuery) return null;
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
