/** Loss terms and parameter gradients of one batch: the piece every step implementation shares. */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { registerGradients } from '../core/gradients.js';
import { tidyRead } from '../core/ops.js';
import { type Batch, type Trainable, lossOf } from '../models/base.js';

export interface BatchGradients {
  /** `loss` (the total) and the model's named terms, as numbers. */
  terms: Record<string, number>;
  /** Gradient per parameter name (parameters the loss does not touch are absent). */
  grads: Map<string, tf.Tensor>;
  /** Frees the gradient and term tensors. */
  dispose(): void;
}

export function batchGradients(model: Trainable, batch: Batch, step: number): BatchGradients {
  registerGradients();
  const byVarName = new Map(model.params.entries().map(([n, v]) => [v.name, n]));
  let termTensors: Record<string, tf.Scalar> = {};
  const { value, grads } = tf.variableGrads(() => {
    const r = lossOf(model, batch, step);
    termTensors = Object.fromEntries(Object.entries(r.terms).map(([k, t]) => [k, tf.keep(t)]));
    return r.total;
  });
  const dispose = () => tf.dispose([value, ...Object.values(grads), ...Object.values(termTensors)]);
  try {
    const terms: Record<string, number> = { loss: value.dataSync()[0] };
    for (const [k, t] of Object.entries(termTensors)) terms[k] = t.dataSync()[0];
    const byName = new Map<string, tf.Tensor>();
    for (const [vn, g] of Object.entries(grads)) byName.set(byVarName.get(vn) ?? vn, g);
    return { terms, grads: byName, dispose };
  } catch (e) {
    dispose();
    throw e;
  }
}

/** What to do with a batch whose loss or gradient is not finite. */
export type NonFinitePolicy = 'stop' | 'skip';

/** A step produced a non-finite loss or gradient; raised before any update, so the weights are still good. */
export class NonFiniteError extends ProbsemError {
  constructor(
    readonly step: number,
    readonly what: string,
  ) {
    super(`non-finite ${what} at step ${step + 1}`, 'NAN');
    this.name = 'NonFiniteError';
  }
}

export function nonFiniteLoss(step: number, terms: Record<string, number>): NonFiniteError {
  const bad = Object.entries(terms)
    .filter(([, v]) => !Number.isFinite(v))
    .map(([k]) => k);
  return new NonFiniteError(step, `loss (terms: ${bad.join(', ')})`);
}

export function nonFiniteGradient(step: number, params: string[]): NonFiniteError {
  const shown = params.slice(0, 5).join(', ') + (params.length > 5 ? `, … (${params.length} in all)` : '');
  return new NonFiniteError(step, `gradient (parameters: ${shown})`);
}

/**
 * Names of the parameters whose gradient has a NaN or infinite entry. The common, all-finite case
 * costs one reduction and one read: a sum is finite only if every entry is.
 */
export function nonFiniteGrads(grads: Map<string, tf.Tensor>): string[] {
  if (grads.size === 0) return [];
  const total = tidyRead(() => tf.addN([...grads.values()].map((g) => tf.sum(g))))[0];
  if (Number.isFinite(total)) return [];
  return [...grads.entries()].filter(([, g]) => !g.dataSync().every(Number.isFinite)).map(([n]) => n);
}
