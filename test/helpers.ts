import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/core/backend.js';
import { registerGradients } from '../src/core/gradients.js';
import { Rng } from '../src/core/random.js';
import { Kernels } from '../src/core/wasm/kernels.js';
import type { Trainable } from '../src/models/base.js';
import { FlatParams } from '../src/ops/flat-params.js';
import { TapeOps } from '../src/ops/tape.js';
import { batchGradients } from '../src/train/gradients.js';

/** Tests run on the backend a user would get (wasm by default; PROBSEM_BACKEND overrides). */
export async function setupBackend(): Promise<string> {
  // Tests take tfjs gradients directly (tf.grad), as only the trainer does in the library.
  registerGradients();
  return initBackend();
}

export function assertClose(actual: number, expected: number, tol: number, what = 'value'): void {
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(`${what}: expected ${expected} ± ${tol}, got ${actual}`);
  }
}

/** Σ(a − b)² and Σa² over two gradient vectors, for a relative-difference check against a reference a. */
export function gradientDifference(a: ArrayLike<number>, b: ArrayLike<number>): { num: number; den: number } {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += a[i] ** 2;
  }
  return { num, den };
}

/**
 * Records the model's objective on the tape and checks it against tfjs autodiff on one batch:
 * the same loss terms, the same trained parameters, gradients within `tol` relative difference.
 * `vanishing` names parameters whose gradient is zero in theory (compared in absolute terms).
 */
export async function assertTapeMatchesTfjs(
  model: Trainable,
  b: { x: Float32Array; y: Float32Array; labels: Int32Array; tagSets?: ArrayLike<number>[]; rows: number; labelDim: number },
  step: number,
  o: { tol?: number; termTol?: number; vanishing?: RegExp } = {},
): Promise<void> {
  const tol = o.tol ?? 5e-5;
  const pixels = b.x.length / b.rows;
  const xt = tf.tensor2d(b.x, [b.rows, pixels]);
  const yt = tf.tensor2d(b.y, [b.rows, b.labelDim]);
  const want = batchGradients(model, { x: xt, y: yt, labels: b.labels, tagSets: b.tagSets, rng: new Rng(9) }, step);
  const k = await Kernels.create({ threads: 2 });
  try {
    const flat = new FlatParams(k, model.params);
    const ops = new TapeOps(k, flat, b.rows, { pixels, labelDim: b.labelDim });
    const tape = ops.compile(model.objective(ops, model.phase?.(step) ?? 'train'));
    const got = tape.run({ ...b, pixels }, new Rng(9), step);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want.terms).sort(), 'same loss terms');
    for (const [term, v] of Object.entries(want.terms)) {
      assert.ok(Math.abs(got[term] - v) <= (o.termTol ?? 2e-5) * Math.max(1, Math.abs(v)), `${term}: tape ${got[term]} vs tfjs ${v}`);
    }
    // The tape trains exactly the parameters tfjs's loss reaches (its Adam skips the others).
    assert.deepEqual([...tape.trained].sort(), [...want.grads.keys()].sort(), 'trained parameters');
    for (const s of tape.trained) {
      const { num, den } = gradientDifference(want.grads.get(s)!.dataSync(), k.view(flat.grad(s)));
      if (o.vanishing?.test(s) && Math.sqrt(den) < 1e-5) {
        assert.ok(Math.sqrt(num) < 1e-5, `${s}: gradient ${Math.sqrt(num)} where it should vanish`);
        continue;
      }
      assert.ok(den > 0, `${s}: the reference gradient is not zero`);
      assert.ok(Math.sqrt(num / den) < tol, `${s}: relative gradient difference ${Math.sqrt(num / den)}`);
    }
    assert.throws(() => tape.run({ ...b, rows: b.rows + 1, pixels }, new Rng(9), step), /tape recorded for/);
  } finally {
    want.dispose();
    tf.dispose([xt, yt]);
    await k.dispose();
  }
}
