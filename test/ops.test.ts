import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { dense, tidyRead } from '../src/core/ops.js';
import { Rng } from '../src/core/random.js';

before(async () => {
  await setupBackend();
});

const rand = (rng: Rng, shape: number[]) => tf.tensor(rng.fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1))), shape as [number]) as unknown as tf.Tensor2D;
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];

for (const act of ['linear', 'relu', 'sigmoid'] as const) {
  test(`dense (${act}) matches the stock ops in value and in every gradient`, () => {
    const rng = new Rng(3);
    const x = rand(rng, [7, 5]);
    const w = rand(rng, [5, 4]);
    const b = rand(rng, [4]) as unknown as tf.Tensor1D;
    const stock = (xx: tf.Tensor2D, ww: tf.Tensor2D, bb: tf.Tensor1D) => {
      const y = tf.add(tf.matMul(xx, ww), bb);
      return act === 'relu' ? tf.relu(y) : act === 'sigmoid' ? tf.sigmoid(y) : y;
    };
    const weight = rand(rng, [7, 4]);
    const loss = (f: typeof stock) => (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(f(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D), weight)) as tf.Scalar;
    assert.ok(maxDiff(dense(x, w, b, act), stock(x, w, b)) < 1e-5);
    const g1 = tf.grads(loss((xx, ww, bb) => dense(xx, ww, bb, act)))([x, w, b]);
    const g2 = tf.grads(loss(stock))([x, w, b]);
    g1.forEach((g, i) => assert.ok(maxDiff(g, g2[i]) < 1e-4, `gradient ${i} differs by ${maxDiff(g, g2[i])}`));
  });
}

test('tidyRead returns the values and leaves no tensor behind, also when the function throws', () => {
  const before = tf.memory().numTensors;
  const values = tidyRead(() => tf.mul(tf.range(0, 5), 2));
  assert.deepEqual(Array.from(values), [0, 2, 4, 6, 8]);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => tidyRead(() => {
    tf.ones([3]);
    throw new Error('inner failure');
  }), /inner failure/);
  assert.equal(tf.memory().numTensors, before);
});
