/**
 * Small dense linear algebra on Float64Array (row-major n×n), for priors, tests and index
 * constants. Batched, differentiable versions for training live in distributions/.
 */
import { ProbsemError } from './errors.js';

/** Lower-triangular L with A = L Lᵀ. Throws if A is not symmetric positive definite. */
export function cholesky(a: Float64Array, n: number): Float64Array {
  if (a.length !== n * n) throw new ProbsemError(`cholesky: expected ${n * n} entries, got ${a.length}`);
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) {
          throw new ProbsemError(`cholesky: matrix is not positive definite (pivot ${i} is ${s})`);
        }
        l[i * n + i] = Math.sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  return l;
}

/** Solves L x = b for lower-triangular L (forward substitution). */
export function solveLower(l: Float64Array, b: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[i * n + k] * x[k];
    x[i] = s / l[i * n + i];
  }
  return x;
}

/** Inverse of a lower-triangular matrix (itself lower-triangular). */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  const e = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    e.fill(0);
    e[c] = 1;
    const col = solveLower(l, e, n);
    for (let r = 0; r < n; r++) inv[r * n + c] = col[r];
  }
  return inv;
}

/** log det(L Lᵀ) from the Cholesky factor L. */
export function logDetFromCholesky(l: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.log(l[i * n + i]);
  return 2 * s;
}

/** C = A B for row-major A (m×k) and B (k×n). */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      if (av === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += av * b[p * n + j];
    }
  }
  return c;
}

/** Aᵀ for row-major A (m×n). */
export function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

/**
 * Eigen-decomposition of a symmetric n×n matrix by cyclic Jacobi rotations (n is a class count or
 * latent size here, so O(n³) sweeps are instant). Returns eigenvalues in descending order and the
 * matching unit eigenvectors as the columns of a row-major n×n matrix.
 */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  if (a.length !== n * n) throw new ProbsemError(`symmetricEigen: expected ${n * n} entries, got ${a.length}`);
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        // Rotation angle that zeroes m[p][q] (Golub & Van Loan's symmetric Schur step).
        const theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k * n + p];
          const mkq = m[k * n + q];
          m[k * n + p] = c * mkp - s * mkq;
          m[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p * n + k];
          const mqk = m[q * n + k];
          m[p * n + k] = c * mpk - s * mqk;
          m[q * n + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => m[j * n + j] - m[i * n + i]);
  const values = Float64Array.from(order, (i) => m[i * n + i]);
  const vectors = new Float64Array(n * n);
  for (let r = 0; r < n; r++) order.forEach((src, c) => (vectors[r * n + c] = v[r * n + src]));
  return { values, vectors };
}

/**
 * Eigen-decomposition of a symmetric n×n matrix by Householder reduction to tridiagonal form and
 * implicit QR steps with Wilkinson shifts (Golub & Van Loan §8.3): O(n³) with a small constant, so
 * a 784×784 pixel covariance takes seconds where the Jacobi sweeps of `symmetricEigen` take
 * minutes. Same contract: eigenvalues descending, unit eigenvectors as the columns of a
 * row-major n×n matrix.
 */
export function symmetricEigenQR(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  if (a.length !== n * n) throw new ProbsemError(`symmetricEigenQR: expected ${n * n} entries, got ${a.length}`);
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) throw new ProbsemError(`symmetricEigenQR: entry ${i} is ${a[i]}`);
  }
  const m = Float64Array.from(a);
  // Householder vectors v_k (unit, acting on indices k+1..n-1), kept to accumulate Q afterwards.
  const reflectors: (Float64Array | null)[] = [];
  for (let k = 0; k + 2 < n; k++) {
    const len = n - k - 1;
    const v = new Float64Array(len);
    let norm2 = 0;
    for (let i = 0; i < len; i++) {
      v[i] = m[(k + 1 + i) * n + k];
      norm2 += v[i] * v[i];
    }
    const norm = Math.sqrt(norm2);
    if (norm === 0) {
      reflectors.push(null);
      continue;
    }
    // alpha has the sign opposite to x0, so v = x − alpha·e1 does not cancel.
    const alpha = v[0] > 0 ? -norm : norm;
    v[0] -= alpha;
    let vn = 0;
    for (let i = 0; i < len; i++) vn += v[i] * v[i];
    vn = Math.sqrt(vn);
    if (vn === 0) {
      reflectors.push(null);
      continue;
    }
    for (let i = 0; i < len; i++) v[i] /= vn;
    // Trailing block B ← H B H with H = I − 2vvᵀ, as B − v wᵀ − w vᵀ (p = 2Bv, w = p − (vᵀp)v).
    const p = new Float64Array(len);
    for (let i = 0; i < len; i++) {
      const row = (k + 1 + i) * n + k + 1;
      let s = 0;
      for (let j = 0; j < len; j++) s += m[row + j] * v[j];
      p[i] = 2 * s;
    }
    let vp = 0;
    for (let i = 0; i < len; i++) vp += v[i] * p[i];
    const w = new Float64Array(len);
    for (let i = 0; i < len; i++) w[i] = p[i] - vp * v[i];
    for (let i = 0; i < len; i++) {
      const row = (k + 1 + i) * n + k + 1;
      const vi = v[i];
      const wi = w[i];
      for (let j = 0; j < len; j++) m[row + j] -= vi * w[j] + wi * v[j];
    }
    m[(k + 1) * n + k] = alpha;
    m[k * n + k + 1] = alpha;
    for (let i = 1; i < len; i++) {
      m[(k + 1 + i) * n + k] = 0;
      m[k * n + k + 1 + i] = 0;
    }
    reflectors.push(v);
  }
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(0, n - 1));
  for (let i = 0; i < n; i++) d[i] = m[i * n + i];
  for (let i = 0; i + 1 < n; i++) e[i] = m[(i + 1) * n + i];
  // zt holds Qᵀ: its rows are the eigenvector estimates, so every rotation updates two contiguous rows.
  const zt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) zt[i * n + i] = 1;
  for (let k = reflectors.length - 1; k >= 0; k--) {
    const v = reflectors[k];
    if (!v) continue;
    // Q ← H_k Q, then zt = Qᵀ: apply H_k to the columns k+1.. of zt, i.e. zt ← zt H_k.
    const len = v.length;
    for (let r = 0; r < n; r++) {
      const row = r * n + k + 1;
      let s = 0;
      for (let j = 0; j < len; j++) s += zt[row + j] * v[j];
      if (s === 0) continue;
      s *= 2;
      for (let j = 0; j < len; j++) zt[row + j] -= s * v[j];
    }
  }
  tridiagonalQR(d, e, zt, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => d[j] - d[i]);
  const values = Float64Array.from(order, (i) => d[i]);
  const vectors = new Float64Array(n * n);
  order.forEach((src, c) => {
    for (let r = 0; r < n; r++) vectors[r * n + c] = zt[src * n + r];
  });
  return { values, vectors };
}

/**
 * Diagonalises the symmetric tridiagonal matrix (diagonal d, subdiagonal e) in place by implicit
 * shifted QR steps; every rotation R is also applied as zt ← Rᵀ zt (zt holds eigenvectors as rows).
 */
function tridiagonalQR(d: Float64Array, e: Float64Array, zt: Float64Array, n: number): void {
  const eps = 2.220446049250313e-16;
  // Relative to its neighbours keeps small eigenvalues accurate; the floor relative to the whole
  // matrix (what EISPACK's tql2 uses) ends the iteration on blocks many orders below the rest,
  // where shifts computed near underflow stop making progress.
  let norm = 0;
  for (let i = 0; i < n; i++) norm = Math.max(norm, Math.abs(d[i]) + (i > 0 ? Math.abs(e[i - 1]) : 0) + (i < n - 1 ? Math.abs(e[i]) : 0));
  const floor = eps * eps * norm;
  const negligible = (i: number) => Math.abs(e[i]) <= eps * (Math.abs(d[i]) + Math.abs(d[i + 1])) || Math.abs(e[i]) <= floor || Math.abs(e[i]) < 1e-300;
  let h = n - 1;
  let iterations = 0;
  while (h > 0) {
    if (negligible(h - 1)) {
      e[h - 1] = 0;
      h--;
      continue;
    }
    let l = h - 1;
    while (l > 0 && !negligible(l - 1)) l--;
    if (l > 0) e[l - 1] = 0;
    if (++iterations > 60 * n) throw new ProbsemError(`symmetricEigenQR: no convergence after ${iterations} QR steps`);
    // Wilkinson shift: the eigenvalue of the trailing 2×2 block nearer to d[h].
    const dd = (d[h - 1] - d[h]) / 2;
    const e2 = e[h - 1] * e[h - 1];
    const mu = d[h] - e2 / (dd + (dd >= 0 ? 1 : -1) * Math.sqrt(dd * dd + e2));
    let x = d[l] - mu;
    let z = e[l];
    let bulge = 0;
    for (let k = l; k < h; k++) {
      const r = Math.hypot(x, z);
      const c = r === 0 ? 1 : x / r;
      const s = r === 0 ? 0 : z / r;
      // T ← Rᵀ T R in the (k, k+1) plane, R = [[c, −s], [s, c]]: row k' = c·row k + s·row k+1.
      if (k > l) e[k - 1] = c * e[k - 1] + s * bulge; // the bulge below it is zeroed by this choice
      const akk = d[k];
      const ak1 = d[k + 1];
      const bk = e[k];
      d[k] = c * c * akk + 2 * c * s * bk + s * s * ak1;
      d[k + 1] = s * s * akk - 2 * c * s * bk + c * c * ak1;
      e[k] = c * s * (ak1 - akk) + (c * c - s * s) * bk;
      if (k + 1 < h) {
        // Entry (k+2, k+1) = e[k+1] is split between (k+2, k) (the new bulge) and (k+2, k+1).
        bulge = s * e[k + 1];
        e[k + 1] = c * e[k + 1];
        x = e[k];
        z = bulge;
      }
      const rk = k * n;
      const rk1 = (k + 1) * n;
      for (let j = 0; j < n; j++) {
        const a0 = zt[rk + j];
        const a1 = zt[rk1 + j];
        zt[rk + j] = c * a0 + s * a1;
        zt[rk1 + j] = -s * a0 + c * a1;
      }
    }
  }
}

/** A^(-1/2) of a symmetric positive definite n×n matrix (V diag(λ^-1/2) Vᵀ); a clear error if A is not. */
export function inverseSqrtSymmetric(a: Float64Array, n: number, what = 'matrix'): Float64Array {
  const { values, vectors } = symmetricEigenQR(a, n);
  const out = new Float64Array(n * n);
  const smallest = values[n - 1];
  if (!(smallest > 0)) {
    throw new ProbsemError(`${what} is not positive definite (smallest eigenvalue ${smallest}): increase its regulariser`, 'BAD_OPTION');
  }
  for (let k = 0; k < n; k++) {
    const f = 1 / Math.sqrt(values[k]);
    for (let i = 0; i < n; i++) {
      const vik = vectors[i * n + k] * f;
      if (vik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += vik * vectors[j * n + k];
    }
  }
  return out;
}

/**
 * Thin singular value decomposition A = U diag(s) Vᵀ of a row-major m×n matrix, r = min(m, n),
 * from the eigen-decomposition of the smaller Gram matrix (AᵀA or AAᵀ) in float64: the singular
 * values come out as the square roots of its eigenvalues, so those below ~1e-8·s_max lose their
 * relative accuracy (harmless for correlations, which live in [0, 1]). Singular vectors of zero
 * singular values complete U (or V) to orthonormal columns. s is descending; U is m×r, V is n×r.
 */
export function svdViaGram(a: Float64Array, m: number, n: number): { u: Float64Array; s: Float64Array; v: Float64Array } {
  if (a.length !== m * n) throw new ProbsemError(`svdViaGram: expected ${m}×${n} = ${m * n} entries, got ${a.length}`);
  if (m < n) {
    const t = svdViaGram(transpose(a, m, n), n, m);
    return { u: t.v, s: t.s, v: t.u };
  }
  // m ≥ n: AᵀA = V diag(s²) Vᵀ, U = A V diag(1/s).
  const at = transpose(a, m, n);
  const gram = matmul(at, a, n, m, n);
  const { values, vectors: v } = symmetricEigenQR(gram, n);
  const s = Float64Array.from(values, (x) => Math.sqrt(Math.max(0, x)));
  const av = matmul(a, v, m, n, n);
  const u = new Float64Array(m * n);
  // s comes from sqrt(λ): below ~sqrt(ε)·s_max it is noise, and so would be U's column.
  const tol = Math.max(m, n) * 1.5e-8 * Math.max(s[0], 1e-300);
  const filled: number[] = [];
  for (let c = 0; c < n; c++) {
    if (!(s[c] > tol)) continue;
    for (let i = 0; i < m; i++) u[i * n + c] = av[i * n + c] / s[c];
    filled.push(c);
  }
  completeOrthonormalColumns(u, m, n, filled);
  return { u, s, v };
}

/**
 * Fills the columns of the row-major m×k matrix q not listed in `filled` with unit vectors
 * orthogonal to every other column (Gram–Schmidt against the standard basis, twice for accuracy).
 */
function completeOrthonormalColumns(q: Float64Array, m: number, k: number, filled: number[]): void {
  const done = [...filled];
  let basis = 0;
  for (let c = 0; c < k; c++) {
    if (filled.includes(c)) continue;
    for (; basis < m; basis++) {
      const x = new Float64Array(m);
      x[basis] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (const o of done) {
          let dot = 0;
          for (let i = 0; i < m; i++) dot += q[i * k + o] * x[i];
          for (let i = 0; i < m; i++) x[i] -= dot * q[i * k + o];
        }
      }
      const norm = Math.hypot(...x);
      if (norm > 1e-6) {
        for (let i = 0; i < m; i++) q[i * k + c] = x[i] / norm;
        done.push(c);
        basis++;
        break;
      }
    }
  }
}

/** Solves L X = B for lower-triangular L (n×n) and row-major B (n×k): forward substitution on k columns at once. */
export function solveLowerMatrix(l: Float64Array, b: Float64Array, n: number, k: number): Float64Array {
  if (b.length !== n * k) throw new ProbsemError(`solveLowerMatrix: expected ${n}×${k} right-hand sides, got ${b.length} entries`);
  const x = Float64Array.from(b);
  for (let i = 0; i < n; i++) {
    const xi = i * k;
    for (let p = 0; p < i; p++) {
      const lip = l[i * n + p];
      if (lip === 0) continue;
      const xp = p * k;
      for (let j = 0; j < k; j++) x[xi + j] -= lip * x[xp + j];
    }
    const inv = 1 / l[i * n + i];
    for (let j = 0; j < k; j++) x[xi + j] *= inv;
  }
  return x;
}

/** Solves Lᵀ X = B for lower-triangular L (n×n) and row-major B (n×k): back substitution. */
export function solveLowerTransposeMatrix(l: Float64Array, b: Float64Array, n: number, k: number): Float64Array {
  if (b.length !== n * k) throw new ProbsemError(`solveLowerTransposeMatrix: expected ${n}×${k} right-hand sides, got ${b.length} entries`);
  const x = Float64Array.from(b);
  for (let i = n - 1; i >= 0; i--) {
    const xi = i * k;
    const inv = 1 / l[i * n + i];
    for (let j = 0; j < k; j++) x[xi + j] *= inv;
    // Row i of X is final: remove its share, (Lᵀ)[p][i]·x_i = L[i][p]·x_i, from every row p above it.
    for (let p = 0; p < i; p++) {
      const lip = l[i * n + p];
      if (lip === 0) continue;
      const xp = p * k;
      for (let j = 0; j < k; j++) x[xp + j] -= lip * x[xi + j];
    }
  }
  return x;
}
