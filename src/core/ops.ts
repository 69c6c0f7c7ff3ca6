/**
 * Fast ops for the wasm backend.
 *
 * On tfjs-backend-wasm a matMul with a transposed operand takes a slow path (measured: ~12-20x
 * slower than the plain product for 100x784 by 784x512), and the stock gradient of matMul uses
 * exactly those. `dense` therefore has its own gradient built from explicit transposes.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from './random.js';

export type Activation = 'linear' | 'relu' | 'sigmoid';

/**
 * y = act(x W + b). With `inputGrad: false` the gradient with respect to x is not computed (a
 * zero tensor is returned instead), which saves one large product for a network's first layer.
 */
export function dense(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  b: tf.Tensor1D,
  activation: Activation = 'linear',
  inputGrad = true,
): tf.Tensor2D {
  // customGrad's typing cannot express (tensor, tensor, tensor, save); the cast is local.
  const body = (xIn: tf.Tensor, wIn: tf.Tensor, bIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const xx = xIn as tf.Tensor2D;
    const ww = wIn as tf.Tensor2D;
    const y = tf.fused.matMul({
      a: xx,
      b: ww,
      bias: bIn as tf.Tensor1D,
      activation: activation === 'sigmoid' ? 'linear' : activation,
    });
    const out = activation === 'sigmoid' ? tf.sigmoid(y) : y;
    save([xx, ww, out]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, ys] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
        let g = dy as tf.Tensor2D;
        if (activation === 'relu') g = tf.mul(g, tf.step(ys, 0)) as tf.Tensor2D;
        else if (activation === 'sigmoid') g = tf.mul(g, tf.mul(ys, tf.sub(1, ys))) as tf.Tensor2D;
        // dX = g Wᵀ computed as (W gᵀ)ᵀ: two transposes of batch-sized matrices are cheaper on
        // wasm than one of the (large) weight matrix.
        const dx = inputGrad ? tf.transpose(tf.matMul(ws, tf.transpose(g))) : tf.zerosLike(xs);
        const dw = tf.matMul(tf.transpose(xs), g);
        const db = tf.sum(g, 0);
        return [dx, dw, db];
      },
    };
  };
  const f = tf.customGrad(body as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, w, b) as tf.Tensor2D;
}

/** A standard-normal tensor drawn from a seeded stream (backend-independent noise). */
export function normalTensor(rng: Rng, shape: number[]): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(rng.fillNormal(new Float32Array(size)), shape, 'float32');
}

/**
 * Runs `fn` in a tidy scope and returns its tensor's values, freeing everything. Reading after the
 * scope matters: `tf.tidy` walks a returned container element by element looking for tensors,
 * which costs microseconds per element for a typed array.
 */
export function tidyRead(fn: () => tf.Tensor): Float32Array | Int32Array | Uint8Array {
  const t = tf.tidy(fn);
  try {
    return t.dataSync() as Float32Array | Int32Array | Uint8Array;
  } finally {
    t.dispose();
  }
}
