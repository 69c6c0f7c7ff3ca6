/** Loss terms and parameter gradients of one batch: the piece every step implementation shares. */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import type { Batch, Trainable } from '../models/base.js';

export interface BatchGradients {
  /** `loss` (the total) and the model's named terms, as numbers. */
  terms: Record<string, number>;
  /** Gradient per parameter name (parameters the loss does not touch are absent). */
  grads: Map<string, tf.Tensor>;
  /** Frees the gradient and term tensors. */
  dispose(): void;
}

export function batchGradients(model: Trainable, batch: Batch, step: number): BatchGradients {
  const byVarName = new Map(model.params.entries().map(([n, v]) => [v.name, n]));
  let termTensors: Record<string, tf.Scalar> = {};
  const { value, grads } = tf.variableGrads(() => {
    const r = model.loss(batch, step);
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

/** The error a non-finite loss stops training with (raised before any update, so checkpoints stay good). */
export function nonFiniteLoss(step: number, terms: Record<string, number>): ProbsemError {
  const bad = Object.entries(terms)
    .filter(([, v]) => !Number.isFinite(v))
    .map(([k]) => k);
  return new ProbsemError(`non-finite loss at step ${step + 1} (terms: ${bad.join(', ')}); the last checkpoint is kept`, 'NAN');
}
