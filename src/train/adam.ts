/**
 * Adam (PyTorch's form of the update) with its state exposed for checkpoints, so a resumed run
 * continues bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { readEntry, serializeTensors, type TensorEntry, validateManifest } from '../nn/params.js';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

export class Adam {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** Number of updates applied so far. */
  t = 0;
  /** The learning-rate schedule's factor for the next update (the trainer sets it each step). */
  lrFactor = 1;
  private readonly m = new Map<string, tf.Tensor>();
  private readonly v = new Map<string, tf.Tensor>();

  constructor(
    private readonly vars: [string, tf.Variable][],
    readonly opts: AdamOptions,
    /** Per-parameter learning-rate multipliers (default 1). */
    private readonly lrScale: (name: string) => number = () => 1,
  ) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    for (const [name, v] of vars) {
      this.m.set(name, tf.zerosLike(v));
      this.v.set(name, tf.zerosLike(v));
    }
  }

  /** Applies one update; `grads` maps parameter names to gradients (missing → no update). */
  apply(grads: Map<string, tf.Tensor>): void {
    this.t += 1;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    const stepSize = (this.opts.lr * this.lrFactor) / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of this.vars) {
      const g = grads.get(name);
      if (!g) continue;
      const lrStep = stepSize * this.lrScale(name);
      const mOld = this.m.get(name)!;
      const vOld = this.v.get(name)!;
      const [mNew, vNew] = tf.tidy(() => {
        const mN = tf.add(tf.mul(mOld, this.beta1), tf.mul(g, 1 - this.beta1));
        const vN = tf.add(tf.mul(vOld, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const denom = tf.add(tf.div(tf.sqrt(vN), sqrtBc2), this.eps);
        p.assign(tf.sub(p, tf.mul(tf.div(mN, denom), lrStep)));
        return [mN, vN];
      });
      mOld.dispose();
      vOld.dispose();
      this.m.set(name, mNew);
      this.v.set(name, vNew);
    }
  }

  serialize(): { t: number; manifest: TensorEntry[]; blob: Uint8Array } {
    const list: [string, tf.Tensor][] = [];
    for (const [name] of this.vars) {
      list.push([`m:${name}`, this.m.get(name)!], [`v:${name}`, this.v.get(name)!]);
    }
    return { t: this.t, ...serializeTensors(list) };
  }

  load(t: number, manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    validateManifest(manifest, source);
    if (!Number.isSafeInteger(t) || t < 0) throw new ProbsemError(`${source}: optimizer step count ${t} is invalid`, 'MODEL_FORMAT');
    const byName = new Map(manifest.map((e) => [e.name, e]));
    for (const [name, p] of this.vars) {
      for (const [key, store] of [[`m:${name}`, this.m], [`v:${name}`, this.v]] as const) {
        const e = byName.get(key);
        if (!e || e.length !== p.size) throw new ProbsemError(`${source}: optimizer state ${key} missing or wrong size`, 'MODEL_FORMAT');
        store.get(name)!.dispose();
        store.set(name, tf.tensor(readEntry(e, blob, source), p.shape, 'float32'));
      }
    }
    this.t = t;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}
