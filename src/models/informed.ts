/**
 * Informed priors (Bütepage et al.): a VAE with a full-covariance posterior q(z|x) = N(μ, LLᵀ)
 * (z = μ + Lε) whose KL term is taken against a prior built from the vectors of the image's labels:
 *
 *   E[log p(x|z)] − KL(q(z|x) ‖ N(μ_W, Σ_W)),   μ_W ~ Uniform(W) each step (or the mean of W),
 *   Σ_W = (1 − λ)Ŝ_W + λI   (optionally (1 − λ)sŜ_W + λI, `spread`),
 *
 * where W are the label vectors of the image (one for single-label data, two for paired images,
 * its whole tag set — any size — for tag-set data with `tagVectors`) and Ŝ_W their sample
 * covariance (0 for one vector). The latent space is the label-vector space:
 * one-hot labels put class c at the c-th unit vector (latent = number of classes); word vectors
 * are projected onto the span of the class vectors (see `prepareInformedRun`) and scaled so that
 * classes sit as far apart as one-hot vectors do (mean pairwise distance √2). The priors' Cholesky
 * factors and inverses are computed once per model (distributions/label-sets.ts), not per step;
 * tag sets, too many to enumerate, once per distinct set as training meets them (`SetPriorCache`).
 *
 * Classification ranks label vectors by their likelihood under the posterior, log N(w_c; μ, Σ)
 * (`scoreLabels`); for paired images the two most likely labels are the prediction. `encodeLabels`
 * returns a label's prior N(w, λI), so generation, retrieval and the web explorer work as for PSE.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ProbsemError } from '../core/errors.js';
import { cholesky, symmetricEigen } from '../core/linalg.js';
import { normalTensor } from '../core/ops.js';
import type { Rng } from '../core/random.js';
import { type FullTerm, type InverseFullTerm, fullFromMoments } from '../distributions/objective.js';
import type { HostContext, Objective, Ops } from '../ops/types.js';
import { DiagGaussian, FullGaussian, fullGaussianFromMoments, fullMomentsWidth, logDetFromTril, solveLowerTriangular } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import { LabelSetPriors, SetPriorCache, labelSetGaussian } from '../distributions/label-sets.js';
import { type DataStats, ConvEncoderFields, ImageModelConfigSchema } from './base.js';
import { EncoderDecoderModel } from './encoder-decoder.js';

const LOG_2PI = Math.log(2 * Math.PI);

export const InformedConfigSchema = ImageModelConfigSchema.extend({
  ...ConvEncoderFields,
  /** Shrinkage towards the identity, Σ = (1 − λ)Ŝ + λI (the paper's figures: 0.01). */
  lambda: z.number().gt(0, 'lambda must be > 0 (single labels would get a singular prior)').max(1).default(0.01),
  /** The prior mean of a multi-label image: one of its label vectors drawn each step (paper), or their mean. */
  priorMean: z.enum(['sample', 'mean']).default('sample'),
  /**
   * Scale s of the labels' sample covariance in a multi-label prior, Σ = (1 − λ)sŜ + λI. 1 is the
   * paper. That Ŝ is wider along a pair (standard deviation ‖w_a − w_b‖/√2) than the way from its
   * midpoint to either label, so the KL lets a posterior mean slide to one label, where it says
   * nothing of the other (docs/results.md); s = 0 with priorMean 'mean' holds it at the midpoint.
   */
  spread: z.number().min(0, 'spread must be in [0, 1]').max(1, 'spread must be in [0, 1]').default(1),
  /** Class vectors in the latent space, [numClasses][latent]; default one-hot (latent = numClasses). */
  classVectors: z.array(z.array(z.number())).optional(),
  /**
   * Tag vectors in the latent space, [tags][latent], for runs on datasets whose images carry tag
   * sets (filled by `prepareInformedRun` from the tags' word vectors). With them an image's prior
   * is built from its whole tag set (its class alone where the set is empty); absent: from its
   * class (or pair of classes), as before tag sets existed.
   */
  tagVectors: z.array(z.array(z.number())).optional(),
  /** Linear map from a label input (labelDim) to a latent mean (latent), row-major; default: classVectors. */
  labelMap: z.array(z.number()).optional(),
  /**
   * How labels are ranked for an image. 'prior': by KL(q(z|x) ‖ N(w_l, λI)), the label prior that
   * best explains the posterior (for equal λI priors, the nearest label vector to μ). 'posterior':
   * by log N(w_l; μ, Σ), the label vector's likelihood under the posterior, as the paper words it.
   * On full Fashion-MNIST 'prior' classified 86.0 % of test images and 'posterior' 72.4 %
   * (docs/results.md): the learned posterior covariance is a poor metric between classes.
   */
  classify: z.enum(['prior', 'posterior']).default('prior'),
}).strict();
export type InformedConfig = z.infer<typeof InformedConfigSchema>;

export class Informed extends EncoderDecoderModel<InformedConfig> {
  readonly name = 'informed';
  readonly priors: LabelSetPriors;
  private readonly labelMap: tf.Tensor2D;
  private readonly classVectors: tf.Tensor2D;
  private readonly priorScale: tf.Tensor3D;
  private readonly priorInverse: tf.Tensor3D;
  private readonly priorLogDet: tf.Tensor1D;
  /** Class vectors [C, K] and the midpoint of every label set [S, K], for objectives. */
  private readonly classVectorValues: Float32Array;
  private readonly setMeans: Float32Array;
  /** Priors of tag sets (members: classes 0..C−1, then tag t as C + t), each factorised once; null without tagVectors. */
  readonly tagSetPriors: SetPriorCache | null;
  /** The class vectors followed by the tag vectors, [C + T, K], for drawing a set's mean. */
  private readonly memberVectors: Float32Array;

  constructor(config: InformedConfig, rng: Rng) {
    super(config, rng);
    const k = config.latent;
    const c = config.numClasses;
    const vectors = config.classVectors ?? oneHotVectors(c, k);
    if (vectors.length !== c || vectors.some((v) => v.length !== k)) {
      throw new ProbsemError(`informed: classVectors must be ${c} vectors of length ${k} (the latent size)`, 'BAD_OPTION');
    }
    const labelDim = config.labelDim ?? c;
    const map = config.labelMap ?? (labelDim === c ? vectors.flat() : null);
    if (!map || map.length !== labelDim * k) {
      throw new ProbsemError(`informed: labelMap must hold ${labelDim}×${k} numbers for ${labelDim}-wide label inputs`, 'BAD_OPTION');
    }
    this.priors = new LabelSetPriors(vectors, config.lambda, config.spread);
    const tagVectors = config.tagVectors ?? null;
    if (tagVectors?.some((v) => v.length !== k)) throw new ProbsemError(`informed: tagVectors must be vectors of length ${k} (the latent size)`, 'BAD_OPTION');
    const members = tagVectors ? [...vectors, ...tagVectors] : vectors;
    this.tagSetPriors = tagVectors ? new SetPriorCache(members, k, config.lambda, config.spread) : null;
    this.memberVectors = Float32Array.from(members.flat());
    const s = this.priors.numSets;
    // Constants, not parameters: they are not in this.params, so nothing trains or saves them.
    this.labelMap = tf.tensor2d(map, [labelDim, k]);
    this.classVectors = tf.tensor2d(vectors.flat(), [c, k]);
    this.priorScale = tf.tensor3d(this.priors.scaleTril, [s, k, k]);
    this.priorInverse = tf.tensor3d(this.priors.inverseTril, [s, k, k]);
    this.priorLogDet = tf.tensor1d(this.priors.logDet);
    this.classVectorValues = Float32Array.from(vectors.flat());
    this.setMeans = new Float32Array(s * k);
    for (let a = 0; a < c; a++) {
      for (let b = a; b < c; b++) {
        const at = this.priors.setIndex(a, b) * k;
        for (let j = 0; j < k; j++) this.setMeans[at + j] = 0.5 * (vectors[a][j] + vectors[b][j]);
      }
    }
  }

  protected override encoderOutputWidth(k: number): number {
    return fullMomentsWidth(k);
  }

  /**
   * Besides the decoder's mean-image start, starts every posterior's factor at the single-label
   * prior's, L = √λ I (zero weights into L, bias log √λ on its diagonal): from the random start
   * the KL's trace term is hundreds of nats at λ = 0.01, and the first steps would go to shrinking
   * it while the decoder learns to ignore z.
   */
  override initFromData(stats: DataStats): void {
    super.initFromData(stats);
    const k = this.latentDim;
    const b = this.encoder.outputBias();
    const w = this.encoder.outputWeights();
    const [bias, weights] = tf.tidy(() => {
      const width = b.shape[0];
      const keep = tf.concat([tf.ones([k]), tf.zeros([width - k])]);
      const diag = new Float32Array(width).fill(0.5 * Math.log(this.config.lambda), k, 2 * k);
      return [tf.add(tf.mul(b, keep), tf.tensor1d(diag)), tf.mul(w, keep)];
    });
    b.assign(bias);
    w.assign(weights);
    tf.dispose([bias, weights]);
  }

  encodeImageFull(x: tf.Tensor2D): FullGaussian {
    const [mean, scale] = tf.tidy(() => {
      const g = fullGaussianFromMoments(this.encoderOutput(x), this.latentDim);
      return [g.mean, g.scaleTril];
    });
    return new FullGaussian(mean as tf.Tensor2D, scale as tf.Tensor3D);
  }

  /** The posterior's marginals (every consumer that only needs means and variances). */
  override encodeImage(x: tf.Tensor2D): DiagGaussian {
    const full = this.encodeImageFull(x);
    const marginals = full.marginals();
    full.dispose();
    return marginals;
  }

  /** A label input's prior as a single label: N(y·M, λI). */
  encodeLabels(y: tf.Tensor2D): DiagGaussian {
    const mean = tf.matMul(y, this.labelMap) as tf.Tensor2D;
    return new DiagGaussian(mean, tf.fill(mean.shape as [number, number], Math.log(this.config.lambda)));
  }

  /**
   * Label scores [N, C] for images x and label inputs [C, labelDim], higher is more likely:
   * −KL(q(z|x) ‖ N(w_c, λI)) or log N(w_c; μ_n, Σ_n), per `classify`.
   */
  scoreLabels(x: tf.Tensor2D, labelInputs: tf.Tensor2D): tf.Tensor2D {
    if (this.config.classify === 'prior') {
      return tf.tidy(() => {
        const q = this.encodeImageFull(x);
        const w = this.labelVectors(labelInputs);
        const logVar = tf.fill([1, this.latentDim], Math.log(this.config.lambda)) as tf.Tensor2D;
        const rows: tf.Tensor1D[] = [];
        for (let c = 0; c < w.shape[0]; c++) rows.push(tf.neg(kl(q, new DiagGaussian(tf.slice(w, [c, 0], [1, -1]), logVar))));
        return tf.stack(rows, 1) as tf.Tensor2D;
      });
    }
    return this.posteriorLikelihoods(x, labelInputs);
  }

  /** log N(w_c; μ_n, Σ_n) for every image n and label input c: [N, C]. */
  posteriorLikelihoods(x: tf.Tensor2D, labelInputs: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const q = this.encodeImageFull(x);
      const w = tf.matMul(labelInputs, this.labelMap); // [C, K]
      const n = x.shape[0];
      // D[n, :, c] = w_c − μ_n; solve L_n M = D per image.
      const d = tf.sub(tf.expandDims(tf.transpose(w), 0), tf.expandDims(q.mean, 2)) as tf.Tensor3D; // [N, K, C]
      const m = solveLowerTriangular(q.scaleTril, d);
      const maha = tf.sum(tf.square(m), 1); // [N, C]
      const logDet = tf.reshape(logDetFromTril(q.scaleTril), [n, 1]);
      return tf.mul(tf.add(tf.add(maha, logDet), this.latentDim * LOG_2PI), -0.5) as tf.Tensor2D;
    });
  }

  /** Indices of the label sets of a batch. */
  private setsOf(labels: Int32Array, labels2?: Int32Array): Int32Array {
    return Int32Array.from(labels, (a, i) => this.priors.setIndex(a, labels2 ? labels2[i] : a));
  }

  /** The posterior in an objective: full covariance, N(μ, LLᵀ). */
  protected override posteriorTerm<T>(o: Ops<T>): FullTerm<T> {
    return fullFromMoments(o, this.runEncoder(o, o.input('x')), this.latentDim);
  }

  /**
   * The batch's label-set priors in an objective: fixed Gaussians given by their precomputed
   * inverse factors, gathered per row by set. A paired image's mean is one of its two vectors
   * drawn each step (`priorMean: 'sample'`, from the step's stream after the posterior's noise)
   * or their midpoint.
   */
  protected priorTerm<T>(o: Ops<T>): InverseFullTerm<T> {
    if (this.tagSetPriors) return this.tagSetPriorTerm(o, this.tagSetPriors);
    const k = this.latentDim;
    const s = this.priors.numSets;
    const sets = o.host([o.rows, 1], [], (_v, ctx) => Float32Array.from(this.setsOf(ctx.labels, ctx.labels2)));
    let mean: T;
    if (this.config.priorMean === 'mean') mean = o.gatherRows(o.constant(this.setMeans, [s, k], 'informed-set-means'), sets);
    else {
      const pick = o.host([o.rows, 1], [], (_v, { labels, labels2, rng }) =>
        Float32Array.from(labels, (a, i) => (labels2 ? (rng.uniform() < 0.5 ? a : labels2[i]) : a)),
      );
      mean = o.gatherRows(o.constant(this.classVectorValues, [this.config.numClasses, k], 'informed-class-vectors'), pick);
    }
    return {
      kind: 'inverse-full',
      mean,
      inverseTril: o.gatherRows(o.constant(this.priors.inverseTril, [s, k * k], 'informed-inverse'), sets),
      logDet: o.gatherRows(o.constant(this.priors.logDet, [s, 1], 'informed-logdet'), sets),
    };
  }

  /**
   * The members of each row's label set for tag-set priors: its tags (as C + t), else its class
   * and second class. Rows of a batch without tag sets fall back to their classes.
   */
  setMembers(ctx: Pick<HostContext, 'labels' | 'labels2' | 'tagSets'>): number[][] {
    const c = this.config.numClasses;
    return Array.from(ctx.labels, (a, i) => {
      const tags = ctx.tagSets?.[i];
      if (tags && tags.length > 0) return Array.from(tags, (t) => c + t);
      return ctx.labels2 && ctx.labels2[i] !== a ? [a, ctx.labels2[i]] : [a];
    });
  }

  /**
   * Priors of label sets of any size, read from the cache (each distinct set factorised once):
   * rows of its inverse factors and log-determinants, and its mean or, with priorMean 'sample', a
   * member's vector drawn uniformly each step (no draw for a set of one).
   */
  private tagSetPriorTerm<T>(o: Ops<T>, cache: SetPriorCache): InverseFullTerm<T> {
    const k = this.latentDim;
    const slots = o.host([o.rows, 1], [], (_v, ctx) => Float32Array.from(this.setMembers(ctx), (m) => cache.slot(m)));
    const rowsOf = (width: number, pick: (slot: number) => ArrayLike<number>) =>
      o.host([o.rows, width], [slots], ([s]) => {
        const out = new Float32Array(s.length * width);
        s.forEach((slot, r) => out.set(pick(slot), r * width));
        return out;
      });
    let mean: T;
    if (this.config.priorMean === 'mean') mean = rowsOf(k, (s) => cache.get(s).mean);
    else {
      mean = o.host([o.rows, k], [], (_v, ctx) => {
        const out = new Float32Array(ctx.rows * k);
        this.setMembers(ctx).forEach((m, r) => {
          const pick = m.length > 1 ? m[ctx.rng.int(m.length)] : m[0];
          out.set(this.memberVectors.subarray(pick * k, (pick + 1) * k), r * k);
        });
        return out;
      });
    }
    return { kind: 'inverse-full', mean, inverseTril: rowsOf(k * k, (s) => cache.get(s).inverseTril), logDet: rowsOf(1, (s) => [cache.get(s).logDet]) };
  }

  objective<T>(o: Ops<T>): Objective<T> {
    const { recon, kl: klv } = this.elboTerms(o);
    return { total: o.add(recon, klv), terms: { recon, kl: klv } };
  }

  /**
   * The priors of a batch's label sets, carrying their precomputed inverse factors. For two-label
   * images `rng` draws each image's mean from its two vectors (null: their mean).
   */
  fullPrior(labels: Int32Array, labels2: Int32Array | undefined, rng: Rng | null): FullGaussian {
    const sets = this.setsOf(labels, labels2);
    const [mean, scale, inverse, logDet] = tf.tidy(() => {
      let mean: tf.Tensor2D;
      if (!labels2) mean = tf.gather(this.classVectors, tf.tensor1d(labels, 'int32')) as tf.Tensor2D;
      else if (this.config.priorMean === 'mean' || !rng) {
        const a = tf.gather(this.classVectors, tf.tensor1d(labels, 'int32'));
        const c = tf.gather(this.classVectors, tf.tensor1d(labels2, 'int32'));
        mean = tf.mul(tf.add(a, c), 0.5) as tf.Tensor2D;
      } else {
        const pick = Int32Array.from(labels, (a, i) => (rng.uniform() < 0.5 ? a : labels2[i]));
        mean = tf.gather(this.classVectors, tf.tensor1d(pick, 'int32')) as tf.Tensor2D;
      }
      const idx = tf.tensor1d(sets, 'int32');
      return [mean, tf.gather(this.priorScale, idx), tf.gather(this.priorInverse, idx), tf.gather(this.priorLogDet, idx)];
    });
    return new FullGaussian(mean as tf.Tensor2D, scale as tf.Tensor3D, { inverseTril: inverse as tf.Tensor3D, logDet: logDet as tf.Tensor1D });
  }

  /**
   * n draws (pixel probabilities) from the prior of a label set {a} or {a, b}: the mean drawn
   * uniformly from the set's vectors (as in training), z = mean + L_W ε.
   */
  samplePrior(a: number, b: number, n: number, rng: Rng): Float32Array {
    const labels = new Int32Array(n).fill(a);
    const labels2 = a === b ? undefined : new Int32Array(n).fill(b);
    return tf.tidy(() => {
      const p = this.fullPrior(labels, labels2, this.config.priorMean === 'sample' ? rng : null);
      const zs = p.sample(normalTensor(rng, [n, this.latentDim]) as tf.Tensor2D);
      return tf.sigmoid(this.decode(zs)).dataSync() as Float32Array;
    });
  }

  /** N(mean of the set's vectors, (1 − λ)sŜ + λI) for label inputs [M, labelDim], as a batch of one: the model's own prior for the set. */
  encodeLabelSet(y: tf.Tensor2D): FullGaussian {
    const k = this.latentDim;
    const rows = tf.tidy(() => this.labelVectors(y).arraySync() as number[][]);
    const { mean, covariance } = labelSetGaussian(rows, k, this.config.lambda, this.config.spread);
    const l = cholesky(covariance, k);
    return new FullGaussian(tf.tensor2d(Float32Array.from(mean), [1, k]), tf.tensor3d(Float32Array.from(l), [1, k, k]));
  }

  /** Label inputs [N, labelDim] mapped into the latent space, [N, K]. */
  labelVectors(y: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(y, this.labelMap);
  }
}

function oneHotVectors(c: number, k: number): number[][] {
  if (c !== k) {
    throw new ProbsemError(`informed priors with one-hot labels put each class on its own latent axis: use latent = ${c} (the number of classes), not ${k}`, 'BAD_OPTION');
  }
  return Array.from({ length: c }, (_, i) => Array.from({ length: k }, (_, j) => (i === j ? 1 : 0)));
}

/**
 * Fills classVectors and labelMap from the run's label encoding. One-hot: the unit vectors
 * (latent must equal the number of classes). Word vectors W [C, D]: latent = D keeps them as they
 * are; latent ≤ C projects onto the top principal axes of the (uncentred) class vectors, which
 * for latent = C keeps every distance between classes exactly. Either way the map is scaled so
 * the mean distance between two classes is √2, as between one-hot vectors, so λ means the same
 * for both encodings. Other words (retrieval queries) go through the same map.
 */
export function prepareInformedRun(
  config: Record<string, unknown>,
  run: { classInputs?: { rows: Float32Array; width: number; kind: string }; tagInputs?: { rows: Float32Array; width: number } },
): Record<string, unknown> {
  const ci = run.classInputs;
  if (!ci || config.classVectors !== undefined) return config;
  const c = Number(config.numClasses);
  const k = Number(config.latent ?? 10);
  if (ci.kind === 'onehot') {
    const v = oneHotVectors(c, k);
    return { ...config, classVectors: v, labelMap: v.flat() };
  }
  const d = ci.width;
  const w = ci.rows;
  let map: Float64Array; // [D, K]
  if (k === d) {
    map = new Float64Array(d * d);
    for (let i = 0; i < d; i++) map[i * d + i] = 1;
  } else if (k <= c) {
    const gram = new Float64Array(c * c);
    for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += w[i * d + t] * w[j * d + t];
      gram[i * c + j] = s;
    }
    const { values, vectors } = symmetricEigen(gram, c);
    if (!(values[k - 1] > 1e-9 * values[0])) {
      throw new ProbsemError(`informed: the class vectors span only ${values.filter((x) => x > 1e-9 * values[0]).length} dimensions; use a smaller --latent`, 'BAD_OPTION');
    }
    // Right singular vectors V_K = Wᵀ U_K Λ_K^(−1/2): an orthonormal basis of the classes' span.
    map = new Float64Array(d * k);
    for (let t = 0; t < d; t++) for (let j = 0; j < k; j++) {
      let s = 0;
      for (let i = 0; i < c; i++) s += w[i * d + t] * vectors[i * c + j];
      map[t * k + j] = s / Math.sqrt(values[j]);
    }
  } else {
    throw new ProbsemError(`informed with ${d}-dimensional word vectors: use latent = ${d} or a projection with latent ≤ ${c} (the number of classes), not ${k}`, 'BAD_OPTION');
  }
  const projected = Array.from({ length: c }, (_, i) => mapRow(w.subarray(i * d, (i + 1) * d), map, k, 1));
  let dist = 0;
  let pairs = 0;
  for (let i = 0; i < c; i++) for (let j = i + 1; j < c; j++) {
    dist += Math.sqrt(projected[i].reduce((s, x, t) => s + (x - projected[j][t]) ** 2, 0));
    pairs++;
  }
  const scale = pairs > 0 && dist > 0 ? Math.SQRT2 / (dist / pairs) : 1;
  const ti = run.tagInputs;
  if (ti && ti.width !== d) throw new ProbsemError(`informed: tag inputs have width ${ti.width}, the class inputs ${d}`, 'BAD_OPTION');
  // Tags go through the same map as classes and queries, so a tag that names a class lands on it.
  const tagVectors = ti ? Array.from({ length: ti.rows.length / d }, (_, i) => mapRow(ti.rows.subarray(i * d, (i + 1) * d), map, k, scale)) : undefined;
  return {
    ...config,
    classVectors: projected.map((v) => v.map((x) => x * scale)),
    labelMap: Array.from(map, (x) => x * scale),
    ...(tagVectors ? { tagVectors } : {}),
  };
}

/** s · v M for an input row v [D] and a row-major map M [D, K]. */
function mapRow(v: ArrayLike<number>, map: Float64Array, k: number, s: number): number[] {
  const out = new Array<number>(k).fill(0);
  for (let t = 0; t < v.length; t++) for (let j = 0; j < k; j++) out[j] += v[t] * map[t * k + j];
  return out.map((x) => x * s);
}
