/**
 * The Gaussian maths of training objectives, written once against the op vocabulary (ops/types.ts)
 * so the tfjs interpreter and the tape run the same formulas: posteriors from encoder outputs,
 * reparameterised samples, and KL(p ‖ q) dispatched on the pair of kinds (`klTerm`), one value
 * per row, [rows, 1].
 */
import { ProbsemError } from '../core/errors.js';
import type { Ops } from '../ops/types.js';
import { fullMomentsWidth } from './gaussian.js';

/** N(μ, diag(exp(logVar))), rows [B, K]. */
export interface DiagTerm<T> {
  kind: 'diag';
  mean: T;
  logVar: T;
}

/** N(0, I) in K dimensions. */
export interface StandardTerm {
  kind: 'standard';
  dim: number;
}

/** N(μ, L Lᵀ): rows μ [B, K], L [B, K·K] row-major lower-triangular, log|Σ| [B, 1]. */
export interface FullTerm<T> {
  kind: 'full';
  mean: T;
  scaleTril: T;
  logDet: T;
}

/** A fixed full-covariance Gaussian given by its inverse factor U = L⁻¹ [B, K·K] and log|Σ| [B, 1]. */
export interface InverseFullTerm<T> {
  kind: 'inverse-full';
  mean: T;
  inverseTril: T;
  logDet: T;
}

export type GaussianTerm<T> = DiagTerm<T> | StandardTerm | FullTerm<T> | InverseFullTerm<T>;

/** The diagonal Gaussian of encoder outputs [B, 2K] laid out μ | log σ². */
export function diagFromMoments<T>(o: Ops<T>, h: T, k: number): DiagTerm<T> {
  const width = o.shape(h)[1];
  if (width !== 2 * k) throw new ProbsemError(`diagonal moments: expected ${2 * k} outputs per row for latent ${k}, got ${width}`, 'SHAPE');
  return { kind: 'diag', mean: o.sliceCols(h, 0, k), logVar: o.sliceCols(h, k, k) };
}

/**
 * The full-covariance Gaussian of encoder outputs [B, fullMomentsWidth(K)]: μ (K), s (K) with
 * L_ii = exp(s_i), then the strictly lower entries of L row by row (as `fullGaussianFromMoments`).
 * Entries are placed by constant 0/1 products, so no scatter is needed.
 */
export function fullFromMoments<T>(o: Ops<T>, h: T, k: number): FullTerm<T> {
  const width = o.shape(h)[1];
  if (width !== fullMomentsWidth(k)) throw new ProbsemError(`full moments: expected ${fullMomentsWidth(k)} outputs per row for latent ${k}, got ${width}`, 'SHAPE');
  const s = o.sliceCols(h, k, k);
  const diagPlace = new Float32Array(k * k * k);
  for (let i = 0; i < k; i++) diagPlace[i * k * k + i * k + i] = 1;
  let scaleTril = o.matMul(o.unary('exp', s), o.constant(diagPlace, [k, k * k], `diag-placement-${k}`));
  const off = (k * (k - 1)) / 2;
  if (off > 0) {
    const lowerPlace = new Float32Array(off * k * k);
    let j = 0;
    for (let r = 1; r < k; r++) for (let c = 0; c < r; c++) lowerPlace[j++ * k * k + r * k + c] = 1;
    scaleTril = o.add(scaleTril, o.matMul(o.sliceCols(h, 2 * k, off), o.constant(lowerPlace, [off, k * k], `lower-placement-${k}`)));
  }
  return { kind: 'full', mean: o.sliceCols(h, 0, k), scaleTril, logDet: o.affine(o.sum(s, 1), 2) };
}

/** z = μ + S ε for noise ε [B, K] (S = diag(σ) or L). */
export function sampleTerm<T>(o: Ops<T>, g: DiagTerm<T> | FullTerm<T>, eps: T): T {
  if (g.kind === 'diag') return o.add(g.mean, o.mul(o.unary('exp', o.affine(g.logVar, 0.5)), eps));
  const k = o.shape(g.mean)[1];
  return o.add(g.mean, o.batchMatMul(g.scaleTril, eps, k, k, 1));
}

type KlFn = <T>(o: Ops<T>, p: GaussianTerm<T>, q: GaussianTerm<T>) => T;
const registry = new Map<string, KlFn>();

/** Registers KL(p ‖ q) for a pair of kinds. */
export function registerKlTerm(pKind: GaussianTerm<unknown>['kind'], qKind: GaussianTerm<unknown>['kind'], fn: KlFn): void {
  registry.set(`${pKind}|${qKind}`, fn);
}

/** KL(p ‖ q) per row, [rows, 1]. */
export function klTerm<T>(o: Ops<T>, p: GaussianTerm<T>, q: GaussianTerm<T>): T {
  const fn = registry.get(`${p.kind}|${q.kind}`);
  if (!fn) throw new ProbsemError(`kl: no divergence registered for ${p.kind} ‖ ${q.kind}`);
  return fn(o, p, q);
}

/** Batch mean of KL(p ‖ q), [1, 1]. */
export function meanKl<T>(o: Ops<T>, p: GaussianTerm<T>, q: GaussianTerm<T>): T {
  return o.mean(klTerm(o, p, q));
}

// 0.5 Σ [log σq² − log σp² + (σp² + (μp − μq)²)/σq² − 1]
registerKlTerm('diag', 'diag', (o, p, q) => {
  const pd = p as DiagTerm<never>;
  const qd = q as DiagTerm<never>;
  const d = o.sub(pd.mean, qd.mean);
  const ratio = o.mul(o.add(o.unary('exp', pd.logVar), o.unary('square', d)), o.unary('exp', o.unary('neg', qd.logVar)));
  return o.affine(o.sum(o.add(o.sub(qd.logVar, pd.logVar), ratio), 1), 0.5, -0.5 * o.shape(pd.mean)[1]);
});

// 0.5 Σ [σp² + μp² − 1 − log σp²]
registerKlTerm('diag', 'standard', (o, p) => {
  const pd = p as DiagTerm<never>;
  const t = o.sub(o.add(o.unary('exp', pd.logVar), o.unary('square', pd.mean)), pd.logVar);
  return o.affine(o.sum(t, 1), 0.5, -0.5 * o.shape(pd.mean)[1]);
});

// 0.5 [‖U Lp‖²_F + ‖U(μq − μp)‖² − K + log|Σq| − log|Σp|], with Σq⁻¹ = UᵀU precomputed.
registerKlTerm('full', 'inverse-full', (o, p, q) => {
  const pf = p as FullTerm<never>;
  const qf = q as InverseFullTerm<never>;
  const k = o.shape(pf.mean)[1];
  const trace = o.sum(o.unary('square', o.batchMatMul(qf.inverseTril, pf.scaleTril, k, k, k)), 1);
  const maha = o.sum(o.unary('square', o.batchMatMul(qf.inverseTril, o.sub(qf.mean, pf.mean), k, k, 1)), 1);
  return o.affine(o.add(o.add(trace, maha), o.sub(qf.logDet, pf.logDet)), 0.5, -0.5 * k);
});

/** One-hot rows [rows, numClasses] of the batch's class labels, made on the host each step. */
export function classTargets<T>(o: Ops<T>, numClasses: number): T {
  return o.host([o.rows, numClasses], [], (_v, ctx) => {
    const t = new Float32Array(ctx.rows * numClasses);
    for (let i = 0; i < ctx.rows; i++) {
      const c = ctx.labels[i];
      if (!(c >= 0 && c < numClasses)) throw new ProbsemError(`class label ${c} outside [0, ${numClasses})`, 'BAD_DATA');
      t[i * numClasses + c] = 1;
    }
    return t;
  });
}

/** Mean categorical NLL of the batch's class labels under logits [rows, numClasses], [1, 1]. */
export function categoricalNllTerm<T>(o: Ops<T>, logits: T, numClasses: number): T {
  return o.mean(o.softmaxCrossEntropy(logits, classTargets(o, numClasses)));
}

/**
 * The product of diagonal Gaussian experts and the prior expert N(0, I), renormalised: precision
 * τ = 1 + Σ exp(−log σᵢ²), mean = Σ exp(−log σᵢ²) μᵢ / τ, log-variance −log τ.
 */
export function productOfExperts<T>(o: Ops<T>, experts: DiagTerm<T>[]): DiagTerm<T> {
  if (experts.length === 0) throw new ProbsemError('productOfExperts needs at least one expert', 'BAD_OPTION');
  let precision: T | null = null;
  let weighted: T | null = null;
  for (const e of experts) {
    const tau = o.unary('exp', o.unary('neg', e.logVar));
    const tm = o.mul(tau, e.mean);
    precision = precision ? o.add(precision, tau) : tau;
    weighted = weighted ? o.add(weighted, tm) : tm;
  }
  const total = o.affine(precision!, 1, 1);
  return { kind: 'diag', mean: o.div(weighted!, total), logVar: o.unary('neg', o.unary('log', total)) };
}

/** The share of rows whose highest score (the first maximum, as argMax) falls on the one-hot target's class, [1, 1]; no gradient. */
export function accuracyTerm<T>(o: Ops<T>, scores: T, targets: T): T {
  const [rows, c] = o.shape(scores);
  return o.host([1, 1], [scores, targets], ([s, t]) => {
    let correct = 0;
    for (let i = 0; i < rows; i++) {
      let best = 0;
      for (let j = 1; j < c; j++) if (s[i * c + j] > s[i * c + best]) best = j;
      if (t[i * c + best] === 1) correct++;
    }
    return Float32Array.of(correct / rows);
  });
}
