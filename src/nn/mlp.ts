/** Multi-layer perceptrons built from the fast dense op. */
import * as tf from '@tensorflow/tfjs-core';
import { dense, type Activation } from '../core/ops.js';
import { Rng } from '../core/random.js';
import type { Ops } from '../ops/types.js';
import { ParamSet } from './params.js';

export class Mlp {
  private readonly layers: { w: tf.Variable; b: tf.Variable }[] = [];

  /**
   * sizes = [input, hidden..., output]; hidden layers use `hidden`, the last `output`
   * activation. Parameters are named `${prefix}.${i}.w|b`.
   */
  constructor(
    params: ParamSet,
    readonly prefix: string,
    readonly sizes: number[],
    rng: Rng,
    readonly hidden: Activation = 'relu',
    readonly output: Activation = 'linear',
  ) {
    for (let i = 0; i + 1 < sizes.length; i++) {
      this.layers.push({
        w: params.add(`${prefix}.${i}.w`, [sizes[i], sizes[i + 1]], 'glorot', rng),
        b: params.add(`${prefix}.${i}.b`, [sizes[i + 1]], 'zeros', rng),
      });
    }
  }

  /** The last layer's bias variable. */
  outputBias(): tf.Variable {
    return this.layers[this.layers.length - 1].b;
  }

  /** The last layer's weight variable, [in, out]. */
  outputWeights(): tf.Variable {
    return this.layers[this.layers.length - 1].w;
  }

  /** The same layers in an objective (ops/types.ts): what training runs, on either engine. */
  run<T>(o: Ops<T>, x: T): T {
    let h = x;
    this.layers.forEach((_, i) => {
      const act = i === this.layers.length - 1 ? this.output : this.hidden;
      h = o.dense(h, o.param(`${this.prefix}.${i}.w`), o.param(`${this.prefix}.${i}.b`), act === 'relu' ? 'relu' : 'linear');
      if (act === 'sigmoid') h = o.unary('sigmoid', h);
    });
    return h;
  }

  /** `inputGrad: false` skips the gradient with respect to x (first layer on data). */
  apply(x: tf.Tensor2D, inputGrad = true): tf.Tensor2D {
    let h = x;
    this.layers.forEach((l, i) => {
      const last = i === this.layers.length - 1;
      h = dense(h, l.w as tf.Tensor2D, l.b as tf.Tensor1D, last ? this.output : this.hidden, i > 0 || inputGrad);
    });
    return h;
  }
}
