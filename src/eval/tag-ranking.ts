/**
 * Annotation with tag sets: every image ranks the whole tag vocabulary by the model's annotation
 * score (`labelLogLikelihoods`: informed priors −KL(q(z|x) ‖ N(w_t, λI)), PSE log q(μ_x | t)), and
 * the ranking is scored against the image's own tags by precision@k and average precision.
 *
 * Ties are broken against the model: a tag tied with others is placed after the tied tags that
 * are not the image's, so a constant score earns nothing. Precision@k is hits among the first k
 * divided by k, even where an image has fewer than k tags. Images with an empty tag set have
 * nothing to find and are skipped (and counted).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { imagesToFloat, type Split, tagsOf } from '../data/dataset.js';
import type { ImageModel } from '../models/base.js';
import { labelLogLikelihoods } from './metrics.js';

/** The order in which one image's tags are ranked: by descending score, ties with irrelevant tags first. */
function rankOrder(scores: ArrayLike<number>, relevant: ReadonlySet<number>, candidates: number[]): number[] {
  return [...candidates].sort((a, b) => scores[b] - scores[a] || Number(relevant.has(a)) - Number(relevant.has(b)) || a - b);
}

/** Share of the first k ranked tags (of `candidates`, default all) that are relevant; k is capped at the number of candidates. */
export function precisionAtK(scores: ArrayLike<number>, relevant: ReadonlySet<number>, k: number, candidates = allTags(scores.length)): number {
  if (!(Number.isInteger(k) && k >= 1)) throw new ProbsemError(`precision@k needs a positive integer k, got ${k}`, 'BAD_OPTION');
  const top = rankOrder(scores, relevant, candidates).slice(0, k);
  return top.filter((t) => relevant.has(t)).length / Math.min(k, candidates.length);
}

/** Mean over the relevant tags of the precision at each one's rank (0 where nothing is relevant). */
export function averagePrecision(scores: ArrayLike<number>, relevant: ReadonlySet<number>, candidates = allTags(scores.length)): number {
  let hits = 0;
  let sum = 0;
  rankOrder(scores, relevant, candidates).forEach((t, i) => {
    if (!relevant.has(t)) return;
    hits++;
    sum += hits / (i + 1);
  });
  return hits === 0 ? 0 : sum / hits;
}

function allTags(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export interface TagRankingMeasures {
  /** Means over the images with at least one (rankable) tag. */
  precisionAt1: number;
  precisionAt5: number;
  meanAveragePrecision: number;
  /** Images scored, and images skipped for an empty tag set. */
  images: number;
  skippedEmpty: number;
  /** Tags ranked (the vocabulary less `exclude`). */
  tags: number;
}

/**
 * Precision@1, @5 and mean average precision of tag rankings, scores row-major [count, tags]
 * (higher ranks first). Tags in `exclude` (no word vector) are neither ranked nor sought.
 */
export function tagRankingMeasures(scores: ArrayLike<number>, split: Split, numTags: number, exclude: ReadonlySet<number> = new Set()): TagRankingMeasures {
  if (!split.tagStart) throw new ProbsemError('tag ranking needs a split with tag sets', 'BAD_OPTION');
  if (scores.length !== split.count * numTags) throw new ProbsemError(`tag scores hold ${scores.length} values, expected ${split.count} images × ${numTags} tags`, 'SHAPE');
  const candidates = allTags(numTags).filter((t) => !exclude.has(t));
  const sums = { p1: 0, p5: 0, ap: 0 };
  let images = 0;
  for (let i = 0; i < split.count; i++) {
    const relevant = new Set(Array.from(tagsOf(split, i)).filter((t) => !exclude.has(t)));
    if (relevant.size === 0) continue;
    const row = Array.prototype.slice.call(scores, i * numTags, (i + 1) * numTags) as number[];
    sums.p1 += precisionAtK(row, relevant, 1, candidates);
    sums.p5 += precisionAtK(row, relevant, 5, candidates);
    sums.ap += averagePrecision(row, relevant, candidates);
    images++;
  }
  const mean = (s: number) => (images === 0 ? Number.NaN : s / images);
  return { precisionAt1: mean(sums.p1), precisionAt5: mean(sums.p5), meanAveragePrecision: mean(sums.ap), images, skippedEmpty: split.count - images, tags: candidates.length };
}

/** The model's annotation score of every tag for every image of a split, row-major [count, tags], from the tags' label inputs [tags, labelDim]. */
export function tagScores(model: ImageModel, split: Split, pixels: number, tagInputs: tf.Tensor2D, batch = 500): Float32Array {
  const t = tagInputs.shape[0];
  const out = new Float32Array(split.count * t);
  for (let s = 0; s < split.count; s += batch) {
    const idx = Int32Array.from({ length: Math.min(batch, split.count - s) }, (_, i) => s + i);
    const scores = tf.tidy(() => labelLogLikelihoods(model, tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels]), tagInputs).dataSync());
    out.set(scores, s * t);
  }
  return out;
}
