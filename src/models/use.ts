/**
 * The unified semantic embedding of lecture 002 (Hwang & Sigal 2014, "A unified semantic
 * embedding: relating taxonomies and attributes"): images and categories share one space where
 * an image z = W·f(x) sits nearer its own category than any other by a margin, and the taxonomy
 * shapes the space — each image is also nearer its parent category than any of the parent's other
 * children, and each category is its parent plus a sparse residual:
 *
 *   Σ_{c ≠ y} [m + d(z, u_y) − d(z, u_c)]₊  +  ω Σ_{s ∈ children(p(y)), s ≠ y} [m + d(z, u_p) − d(z, u_s)]₊
 *     + λ Σ_c ‖u_c − u_{p(c)}‖₁,      d = squared Euclidean distance.
 *
 * A category's embedding is a learned linear map of its label input, u_c = Vᵀ v_c: with one-hot
 * rows V holds one free vector per class (the paper's setting); with word vectors, categories never
 * trained on are embedded too, which is how `use` does zero-shot. A parent's embedding is the mean
 * of its (training) children's, so the taxonomy needs no vectors of its own. The hierarchy comes
 * from WordNet hypernyms or a dataset's coarse labels (text/ontology.ts). The paper's attribute
 * bases (categories as sparse combinations of attribute vectors) are not built here.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';
import { Mlp } from '../nn/mlp.js';
import { ParamSet } from '../nn/params.js';
import { accuracyTerm } from '../distributions/objective.js';
import type { Objective, Ops } from '../ops/types.js';
import { type Trainable, parseModelConfig } from './base.js';
import { ClassVectorFields, ownClassMask, squaredDistanceMatrix } from './devise.js';

const positiveInt = z.number().int().positive();

export const UseConfigSchema = z
  .object({
    /** The class label inputs are fixed; the map V from them is trained. */
    ...ClassVectorFields,
    /** Hidden layers of f; the last layer is the linear W into the embedding. */
    hidden: z.array(positiveInt).default([512]),
    embedDim: positiveInt.default(64),
    /** Margin m of both hinge losses, in squared distance. */
    margin: z.number().positive().default(1),
    /** Parent of each class (−1: none) and every parent's classes; absent: no taxonomy terms. */
    hierarchy: z
      .object({ parentOf: z.array(z.number().int().min(-1)), members: z.array(z.array(z.number().int().nonnegative())) })
      .optional(),
    /** ω: weight of the parent-versus-siblings hinge. */
    ontologyWeight: z.number().nonnegative().default(1),
    /** λ: weight of the L1 norm of each category's residual from its parent. */
    residualWeight: z.number().nonnegative().default(1e-3),
  })
  .strict();
export type UseConfig = z.infer<typeof UseConfigSchema>;

/** The taxonomy restricted to the training classes: what the two taxonomy terms read. */
interface TrainTaxonomy {
  /** Parents that keep at least two training children, each with those children's positions. */
  children: number[][];
  /** Per training position, its parent among `children` (−1: none). */
  parentOfPosition: Int32Array;
}

export class Use implements Trainable {
  readonly name = 'use';
  readonly params = new ParamSet();
  readonly trainClasses: number[];
  private readonly imageNet: Mlp;
  /** Position of each class in the training table (−1: held out). */
  private readonly position: Int32Array;
  private readonly trainVectors: Float32Array;
  private readonly taxonomy: TrainTaxonomy | null;

  constructor(
    readonly config: UseConfig,
    rng: Rng,
  ) {
    const { numClasses: c, labelDim: d } = config;
    if (config.classVectors.length !== c * d) throw new ProbsemError(`use: classVectors must hold numClasses × labelDim = ${c * d} numbers, got ${config.classVectors.length}`, 'BAD_OPTION');
    this.trainClasses = config.trainClasses ?? Array.from({ length: c }, (_, i) => i);
    if (this.trainClasses.length < 2 || this.trainClasses.some((k) => k >= c) || new Set(this.trainClasses).size !== this.trainClasses.length) {
      throw new ProbsemError('use: trainClasses must be at least two distinct class indices below numClasses', 'BAD_OPTION');
    }
    this.position = new Int32Array(c).fill(-1);
    this.trainClasses.forEach((k, i) => (this.position[k] = i));
    this.trainVectors = new Float32Array(this.trainClasses.length * d);
    this.trainClasses.forEach((k, i) => this.trainVectors.set(config.classVectors.slice(k * d, (k + 1) * d), i * d));
    this.taxonomy = config.hierarchy ? this.restrict(config.hierarchy) : null;
    this.imageNet = new Mlp(this.params, 'image', [config.inputDim, ...config.hidden, config.embedDim], rng);
    this.params.add('labelMap.w', [d, config.embedDim], 'glorot', rng);
  }

  private restrict(h: NonNullable<UseConfig['hierarchy']>): TrainTaxonomy | null {
    if (h.parentOf.length !== this.config.numClasses) {
      throw new ProbsemError(`use: hierarchy.parentOf has ${h.parentOf.length} entries for ${this.config.numClasses} classes`, 'BAD_OPTION');
    }
    const children: number[][] = [];
    const parentOfPosition = new Int32Array(this.trainClasses.length).fill(-1);
    h.members.forEach((members, p) => {
      const pos = members.map((k) => (k < this.position.length ? this.position[k] : -1)).filter((i) => i >= 0);
      if (pos.length < 2) return;
      const id = children.push(pos) - 1;
      this.trainClasses.forEach((k, i) => {
        if (h.parentOf[k] === p) parentOfPosition[i] = id;
      });
    });
    return children.length > 0 ? { children, parentOfPosition } : null;
  }

  /** z = W·f(x): images [N, pixels] → embeddings [N, embedDim]. */
  embed(x: tf.Tensor2D): tf.Tensor2D {
    return this.imageNet.apply(x, false);
  }

  /** Scores [N, C]: −d(z, Vᵀ v_c) for images [N, pixels] and label inputs [C, labelDim]. */
  scoreLabels(x: tf.Tensor2D, labelInputs: tf.Tensor2D): tf.Tensor2D {
    if (labelInputs.shape[1] !== this.config.labelDim) {
      throw new ProbsemError(`label inputs are ${labelInputs.shape[1]}-wide but this embedding maps ${this.config.labelDim}-wide ones`, 'BAD_OPTION');
    }
    return tf.tidy(() => {
      const zs = this.embed(x);
      const u = tf.matMul(labelInputs, this.params.get('labelMap.w') as tf.Tensor2D);
      const cross = tf.matMul(zs, u, false, true);
      return tf.neg(tf.add(tf.sub(tf.sum(tf.square(zs), 1, true), tf.mul(cross, 2)), tf.reshape(tf.sum(tf.square(u), 1), [1, -1]))) as tf.Tensor2D;
    });
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const cPrime = this.trainClasses.length;
    const { margin } = this.config;
    const zs = this.imageNet.run(o, o.input('x'));
    const u = o.matMul(o.constant(this.trainVectors, [cPrime, this.config.labelDim], 'use-train-vectors'), o.param('labelMap.w'));
    const dist = squaredDistanceMatrix(o, zs, u);
    const own = ownClassMask(o, this.position, cPrime, 'use');
    const dOwn = o.sum(o.mul(dist, own), 1);
    const hinge = (d: T, mask: T) => o.affine(o.sum(o.mul(o.unary('relu', o.affine(o.sub(d, dist), 1, margin)), mask)), 1 / o.rows);
    const classHinge = hinge(dOwn, o.affine(own, -1, 1));
    const accuracy = accuracyTerm(o, o.unary('neg', dist), own);
    const tax = this.taxonomy;
    if (!tax || (this.config.ontologyWeight === 0 && this.config.residualWeight === 0)) {
      return { total: classHinge, terms: { classHinge, accuracy } };
    }
    // Parents as the means of their training children: A [P, C'] averages rows of u.
    const p = tax.children.length;
    const avg = new Float32Array(p * cPrime);
    tax.children.forEach((kids, j) => kids.forEach((i) => (avg[j * cPrime + i] = 1 / kids.length)));
    const parents = o.matMul(o.constant(avg, [p, cPrime], 'use-parent-average'), u);
    const dParent = o.sum(o.mul(squaredDistanceMatrix(o, zs, parents), o.host([o.rows, p], [], (_v, ctx) => {
      const m = new Float32Array(ctx.rows * p);
      ctx.labels.forEach((k, i) => {
        const j = tax.parentOfPosition[this.position[k]];
        if (j >= 0) m[i * p + j] = 1;
      });
      return m;
    })), 1);
    const siblings = o.host([o.rows, cPrime], [], (_v, ctx) => {
      const m = new Float32Array(ctx.rows * cPrime);
      ctx.labels.forEach((k, i) => {
        const own = this.position[k];
        const j = tax.parentOfPosition[own];
        if (j >= 0) for (const s of tax.children[j]) if (s !== own) m[i * cPrime + s] = 1;
      });
      return m;
    });
    const ontologyHinge = hinge(dParent, siblings);
    // Residuals u_c − u_{p(c)} of the classes that have a parent: G [C', P] picks each one's parent.
    const pick = new Float32Array(cPrime * p);
    const hasParent = new Float32Array(cPrime);
    tax.parentOfPosition.forEach((j, i) => {
      if (j < 0) return;
      pick[i * p + j] = 1;
      hasParent[i] = 1;
    });
    const residual = o.mul(o.sub(u, o.matMul(o.constant(pick, [cPrime, p], 'use-parent-pick'), parents)), o.constant(hasParent, [cPrime, 1], 'use-has-parent'));
    const residualL1 = o.sum(o.add(o.unary('relu', residual), o.unary('relu', o.unary('neg', residual))));
    const total = o.add(o.add(classHinge, o.affine(ontologyHinge, this.config.ontologyWeight)), o.affine(residualL1, this.config.residualWeight));
    return { total, terms: { classHinge, ontologyHinge, residualL1, accuracy } };
  }

  dispose(): void {
    this.params.dispose();
  }
}

/** Builds a USE from a config, with the schema's defaults and a clear error for a bad one. */
export function createUse(config: unknown, rng: Rng): Use {
  return new Use(parseModelConfig(UseConfigSchema, config, 'use'), rng);
}
