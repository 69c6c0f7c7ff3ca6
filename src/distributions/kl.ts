/**
 * KL(p ‖ q) looked up by the pair of distribution kinds, so a new distribution registers its
 * divergences here without touching callers. All functions return one value per row, [batch],
 * and broadcast a batch of one against a larger batch.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import {
  DiagGaussian,
  FullGaussian,
  type Gaussian,
  broadcastBatch,
  logDetFromTril,
  solveLowerTriangular,
} from './gaussian.js';

type KlFn = (p: Gaussian, q: Gaussian) => tf.Tensor1D;
const registry = new Map<string, KlFn>();

export function registerKl(pKind: string, qKind: string, fn: KlFn): void {
  registry.set(`${pKind}|${qKind}`, fn);
}

export function kl(p: Gaussian, q: Gaussian): tf.Tensor1D {
  if (p.dim !== q.dim) {
    throw new ProbsemError(`kl: dimensions differ (${p.dim} vs ${q.dim})`);
  }
  if (p.batch !== q.batch && p.batch !== 1 && q.batch !== 1) {
    throw new ProbsemError(`kl: batch sizes ${p.batch} and ${q.batch} do not broadcast`);
  }
  const fn = registry.get(`${p.kind}|${q.kind}`);
  if (!fn) throw new ProbsemError(`kl: no divergence registered for ${p.kind} ‖ ${q.kind}`);
  return fn(p, q);
}

/**
 * 0.5 Σ [log σq² − log σp² + (σp² + (μp − μq)²)/σq² − 1], written per dimension as
 * (eˣ − 1 − x) + (μp − μq)²/σq² with x = log σp² − log σq²: each part is ≥ 0, so rounding cannot
 * make a divergence negative (summed as written, KL(p ‖ p) came out near −4e-7), and the first
 * part is clamped at 0 where expm1's rounding dips below x.
 */
function klDiagDiag(p: Gaussian, q: Gaussian): tf.Tensor1D {
  const pd = p as DiagGaussian;
  const qd = q as DiagGaussian;
  return tf.tidy(() => {
    const x = tf.sub(pd.logVar, qd.logVar);
    const t = tf.add(tf.relu(tf.sub(tf.expm1(x), x)), tf.mul(tf.squaredDifference(pd.mean, qd.mean), tf.exp(tf.neg(qd.logVar))));
    let out = tf.mul(tf.sum(t, 1), 0.5) as tf.Tensor1D;
    // A broadcast pair of single rows still yields one value per row of the larger batch.
    const batch = Math.max(p.batch, q.batch);
    if (out.shape[0] !== batch) out = tf.tile(out, [batch]);
    return out;
  });
}

/**
 * 0.5 [tr(Σq⁻¹Σp) + (μq−μp)ᵀΣq⁻¹(μq−μp) − K + log|Σq| − log|Σp|], via triangular solves, or by
 * matrix products alone when q carries its inverse factor U (Σq⁻¹ = UᵀU): tr = ‖U Lp‖²_F and the
 * Mahalanobis term is ‖U(μq − μp)‖².
 */
function klFullFull(p: Gaussian, q: Gaussian): tf.Tensor1D {
  return tf.tidy(() => {
    const pf = asFull(p);
    const qf = asFull(q);
    const batch = Math.max(p.batch, q.batch);
    const lp = broadcastBatch(pf.scaleTril, batch);
    if (qf.inverse) {
      const u = broadcastBatch(qf.inverse.inverseTril, batch);
      const diff = tf.expandDims(tf.sub(broadcastBatch(qf.mean, batch), broadcastBatch(pf.mean, batch)), 2) as tf.Tensor3D;
      const trace = tf.sum(tf.square(tf.matMul(u, lp)), [1, 2]);
      const maha = tf.sum(tf.square(tf.matMul(u, diff)), [1, 2]);
      const logDet = tf.sub(broadcastBatch(qf.inverse.logDet, batch), logDetFromTril(lp));
      return tf.mul(tf.add(tf.add(trace, maha), tf.sub(logDet, p.dim)), 0.5) as tf.Tensor1D;
    }
    const lq = broadcastBatch(qf.scaleTril, batch);
    const diff = tf.expandDims(tf.sub(broadcastBatch(qf.mean, batch), broadcastBatch(pf.mean, batch)), 2);
    const a = solveLowerTriangular(lq, lp);
    const m = solveLowerTriangular(lq, diff as tf.Tensor3D);
    const trace = tf.sum(tf.square(a), [1, 2]);
    const maha = tf.sum(tf.square(m), [1, 2]);
    const logDet = tf.sub(logDetFromTril(lq), logDetFromTril(lp));
    return tf.mul(tf.add(tf.add(trace, maha), tf.sub(logDet, p.dim)), 0.5) as tf.Tensor1D;
  });
}

function asFull(g: Gaussian): FullGaussian {
  return g.kind === 'full' ? (g as FullGaussian) : (g as DiagGaussian).toFull();
}

registerKl('diag', 'diag', klDiagDiag);
registerKl('full', 'full', klFullFull);
// Mixed pairs: a diagonal Gaussian is a full one with a diagonal factor.
registerKl('full', 'diag', klFullFull);
registerKl('diag', 'full', klFullFull);
