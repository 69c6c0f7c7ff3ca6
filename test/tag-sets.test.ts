// Label sets of any size: informed priors from whole tag sets (closed form, one factorisation per
// distinct set, both engines), tag-set mean label inputs, tag ranking measures, and a run on a
// tagged manifest with word vectors from training through eval to retrieval by tag words.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { assertTapeMatchesTfjs, setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { type Dataset, type Split, imagesToFloat, packTags } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { FullGaussian } from '../src/distributions/gaussian.js';
import { kl } from '../src/distributions/kl.js';
import { lossOf } from '../src/models/base.js';
import { type Informed } from '../src/models/informed.js';
import { createModel } from '../src/models/registry.js';
import { makeRawBatch, train } from '../src/train/trainer.js';
import { averagePrecision, precisionAtK, tagRankingMeasures, tagScores } from '../src/eval/tag-ranking.js';
import { evaluateRun, loadImageModel, trainRun } from '../src/runs/runs.js';
import { queryDistribution, retrieveImages } from '../src/runs/retrieval.js';
import { runWordVectors } from '../src/runs/words.js';
import { writeWordVectors } from '../src/text/readers.js';
import { WordVectors } from '../src/text/word-vectors.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-tags-'));

function gaussianVectors(n: number, k: number, rng: Rng): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: k }, () => rng.normal()));
}

/** log det of a symmetric positive definite matrix by Gaussian elimination, in float64. */
function logDet64(a: Float64Array, k: number): number {
  const m = Float64Array.from(a);
  let s = 0;
  for (let i = 0; i < k; i++) {
    const p = m[i * k + i];
    s += Math.log(p);
    for (let r = i + 1; r < k; r++) {
      const f = m[r * k + i] / p;
      for (let c = i; c < k; c++) m[r * k + c] -= f * m[i * k + c];
    }
  }
  return s;
}

test('informed tag-set priors for sets of sizes 1–12 equal the float64 closed form N(mean, (1 − λ)s·Ŝ + λI)', () => {
  const k = 8;
  const c = 3;
  const rng = new Rng(21);
  const lambda = 0.05;
  const spread = 0.7;
  const tagVectors = gaussianVectors(14, k, rng);
  const m = createModel('informed', { inputDim: 16, numClasses: c, latent: k, classVectors: gaussianVectors(c, k, rng), tagVectors, lambda, spread, encoderHidden: [8], decoderHidden: [8] }, 0) as Informed;
  const cache = m.tagSetPriors!;
  for (let size = 1; size <= 12; size++) {
    const tags = Array.from(rng.permutation(14)).slice(0, size);
    const slot = cache.slot(tags.map((t) => c + t));
    const { mean, scaleTril, inverseTril, logDet } = cache.get(slot);
    // Ŝ = (Σ v vᵀ − M μμᵀ)/(M − 1), written independently of shrunkCovariance's centred sum.
    const vs = tags.map((t) => tagVectors[t]);
    const mu = Array.from({ length: k }, (_, j) => vs.reduce((s, v) => s + v[j], 0) / size);
    const sigma = new Float64Array(k * k);
    for (let r = 0; r < k; r++) {
      for (let q = 0; q < k; q++) {
        const scatter = vs.reduce((s, v) => s + v[r] * v[q], 0) - size * mu[r] * mu[q];
        sigma[r * k + q] = (size > 1 ? ((1 - lambda) * spread * scatter) / (size - 1) : 0) + (r === q ? lambda : 0);
      }
    }
    for (let j = 0; j < k; j++) assert.ok(Math.abs(mean[j] - mu[j]) < 1e-6, `size ${size}: mean[${j}]`);
    for (let r = 0; r < k; r++) {
      for (let q = 0; q < k; q++) {
        let llt = 0;
        let inv = 0;
        for (let t = 0; t < k; t++) {
          llt += scaleTril[r * k + t] * scaleTril[q * k + t];
          inv += inverseTril[r * k + t] * scaleTril[t * k + q];
        }
        assert.ok(Math.abs(llt - sigma[r * k + q]) < 2e-5 * Math.max(1, Math.abs(sigma[r * k + q])), `size ${size}: (LLᵀ)[${r},${q}] ${llt} vs Σ ${sigma[r * k + q]}`);
        assert.ok(Math.abs(inv - (r === q ? 1 : 0)) < 1e-4, `size ${size}: (L⁻¹L)[${r},${q}] = ${inv}`);
      }
    }
    assert.ok(Math.abs(logDet - logDet64(sigma, k)) < 1e-4 * Math.max(1, Math.abs(logDet)), `size ${size}: log|Σ| ${logDet} vs ${logDet64(sigma, k)}`);
    // The same set in another order, with a repeat, is the same slot (no new factorisation).
    assert.equal(cache.slot([...tags].reverse().concat(tags[0]).map((t) => c + t)), slot);
  }
  assert.equal(cache.computed, 12);
  assert.throws(() => cache.slot([]), /needs at least one member/);
  assert.throws(() => cache.slot([c + 14]), /member 17 is outside the 17 vectors/);
  assert.throws(() => createModel('informed', { inputDim: 16, numClasses: c, latent: k, classVectors: gaussianVectors(c, k, rng), tagVectors: [[1, 2]] }, 0), /tagVectors must be vectors of length 8/);
});

test('informed with tag sets: each distinct set is factorised once; the KL term is the closed-form KL to its set prior; empty sets use the class', () => {
  const rng = new Rng(4);
  const m = createModel('informed', { inputDim: 784, numClasses: 10, latent: 10, tagVectors: gaussianVectors(6, 10, rng).map((v) => v.map((x) => 0.3 * x)), priorMean: 'mean', encoderHidden: [16], decoderHidden: [16] }, 2) as Informed;
  const tagSets = [[0, 1], [1, 0], [2], [], [], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2], [5], []];
  const labels = Int32Array.from([0, 0, 1, 2, 2, 0, 1, 1, 2, 0]);
  const x = tf.tensor2d(imagesToFloat(ds.test, labels.map((_, i) => i), 784), [10, 784]);
  const y = tf.zeros([10, 10]) as tf.Tensor2D;
  const klTerm = () => tf.tidy(() => lossOf(m, { x, y, labels, tagSets, rng: new Rng(1) }, 0).terms.kl.dataSync()[0]);
  const got = klTerm();
  klTerm();
  // {0,1}, {2}, {0..4}, {5} of the tags, and classes 2 and 0 for the empty sets.
  assert.equal(m.tagSetPriors!.computed, 6, 'six distinct sets, each factorised once over two passes');
  const want = tf.tidy(() => {
    const cache = m.tagSetPriors!;
    const parts = m.setMembers({ labels, tagSets }).map((members) => cache.get(cache.slot(members)));
    const prior = new FullGaussian(tf.tensor2d(parts.flatMap((p) => Array.from(p.mean)), [10, 10]), tf.tensor3d(parts.flatMap((p) => Array.from(p.scaleTril)), [10, 10, 10]));
    return tf.mean(kl(m.encodeImageFull(x), prior)).dataSync()[0];
  });
  assert.ok(Math.abs(got - want) < 1e-4 * Math.abs(want), `kl term ${got} vs closed form ${want}`);
  tf.dispose([x, y]);
});

test('informed with tag sets of sizes 0–12: the tape equals tfjs autodiff (sampled and mean prior means)', async () => {
  for (const priorMean of ['sample', 'mean']) {
    const rng = new Rng(8);
    const m = createModel('informed', { inputDim: 784, numClasses: 10, latent: 10, tagVectors: gaussianVectors(15, 10, rng), priorMean, encoderHidden: [30, 16], decoderHidden: [16, 30] }, 3);
    const rows = 37;
    const labels = Int32Array.from({ length: rows }, () => rng.int(10));
    const tagSets = Array.from({ length: rows }, (_, i) => Array.from(rng.permutation(15)).slice(0, i % 13));
    const x = rng.fillUniform(new Float32Array(rows * 784), 0, 1);
    const y = new Float32Array(rows * 10);
    await assertTapeMatchesTfjs(m, { x, y, labels, tagSets, rows, labelDim: 10 }, 2);
  }
});

test('tag-set label inputs: a batch from a tagged split carries the sets; word-vector inputs become the mean of the set (the class where empty)', () => {
  const split: Split = { images: new Uint8Array(3 * 4), labels: Uint8Array.from([0, 1, 1]), count: 3, ...packTags([[1, 0], [], [2]]) };
  const classInputs = (ls: Int32Array) => ({ data: Float32Array.from(Array.from(ls).flatMap((c) => [c, 10 + c])), width: 2 });
  const tags = { rows: Float32Array.from([1, 2, 3, 4, 5, 6]), width: 2 };
  const b = makeRawBatch(split, Int32Array.from([0, 1, 2]), 4, 2, classInputs, tags);
  assert.deepEqual(b.tagSets!.map((s) => Array.from(s)), [[0, 1], [], [2]]);
  assert.deepEqual(Array.from(b.y), [2, 3, 1, 11, 5, 6]);
  // Without tag inputs (one-hot runs) the inputs stay the classes'.
  assert.deepEqual(Array.from(makeRawBatch(split, Int32Array.from([0, 1, 2]), 4, 2).y), [1, 0, 0, 1, 0, 1]);
});

test('precision@k and average precision against hand-computed rankings, ties counted against the model, empty sets skipped', () => {
  // Scores of 6 tags; relevant {1, 4}. Order: 1 (0.9), 3 (0.8), 4 (0.5), 0, 2, 5.
  const s = [0.1, 0.9, 0.05, 0.8, 0.5, 0.0];
  const rel = new Set([1, 4]);
  assert.equal(precisionAtK(s, rel, 1), 1);
  assert.equal(precisionAtK(s, rel, 5), 2 / 5);
  assert.equal(averagePrecision(s, rel), (1 / 1 + 2 / 3) / 2);
  // A tie between relevant 4 and irrelevant 3 puts 3 first: ranks 1 (tag 1), 2 (tag 3), 3 (tag 4).
  const tied = [0.1, 0.9, 0.05, 0.5, 0.5, 0.0];
  assert.equal(averagePrecision(tied, rel), (1 + 2 / 3) / 2);
  // Constant scores earn the worst ranking: relevant tags last (ranks 5, 6 of 6).
  assert.equal(averagePrecision([0, 0, 0, 0, 0, 0], rel), (1 / 5 + 2 / 6) / 2);
  assert.equal(precisionAtK([0, 0, 0, 0, 0, 0], rel, 1), 0);
  // k beyond the vocabulary counts the vocabulary.
  assert.equal(precisionAtK([1, 0], new Set([0]), 5), 1 / 2);
  assert.throws(() => precisionAtK(s, rel, 0), /positive integer k/);

  // A split of three images: tags {1, 4}, {} (skipped), {0}; excluding tag 3 lifts tag 4 to rank 2.
  const split: Split = { images: new Uint8Array(3), labels: new Uint8Array(3), count: 3, ...packTags([[4, 1], [], [0]]) };
  const scores = Float32Array.from([...s, ...s, ...s]);
  const r = tagRankingMeasures(scores, split, 6);
  assert.equal(r.images, 2);
  assert.equal(r.skippedEmpty, 1);
  // Image 3: tag 0 (0.1) ranks 4th after 1, 3, 4.
  assert.ok(Math.abs(r.precisionAt1 - (1 + 0) / 2) < 1e-12);
  assert.ok(Math.abs(r.precisionAt5 - (2 / 5 + 1 / 5) / 2) < 1e-12);
  assert.ok(Math.abs(r.meanAveragePrecision - ((1 + 2 / 3) / 2 + 1 / 4) / 2) < 1e-12);
  const ex = tagRankingMeasures(scores, split, 6, new Set([3]));
  assert.equal(ex.tags, 5);
  assert.ok(Math.abs(ex.meanAveragePrecision - (1 + 1 / 3) / 2) < 1e-12);
  assert.throws(() => tagRankingMeasures(scores.subarray(1), split, 6), /17 values, expected 3 images × 6 tags/);
  assert.throws(() => tagRankingMeasures(scores, { ...split, tagStart: undefined, tagIds: undefined }, 6), /needs a split with tag sets/);
});

/** Fashion-MNIST with tag sets: each image's class word and its group (top, footwear, other). */
const GROUP = [10, 11, 10, 12, 10, 11, 10, 11, 12, 11];
function tagged(split: Split): Split {
  return { ...split, ...packTags(Array.from(split.labels, (c) => [c, GROUP[c]])) };
}

test('informed trained on tag sets of a class word and a group word learns to rank both tags (300 steps)', async (t) => {
  // One-hot class tags; a group tag sits at the mean of its classes' vectors.
  const oneHot = (c: number) => Array.from({ length: 10 }, (_, j) => (j === c ? 1 : 0));
  const group = (g: number) => Array.from({ length: 10 }, (_, j) => GROUP[j] === g ? 1 / GROUP.filter((x) => x === g).length : 0);
  const tagVectors = [...Array.from({ length: 10 }, (_, c) => oneHot(c)), group(10), group(11), group(12)];
  const m = createModel('informed', { inputDim: 784, numClasses: 10, latent: 10, tagVectors, encoderHidden: [128], decoderHidden: [128] }, 0) as Informed;
  const r = await train(m, tagged(ds.train), { pixels: 784, numClasses: 10 }, { steps: 300, batchSize: 100, lr: 1e-3, seed: 0 });
  assert.ok(Number.isFinite(r.finalTerms.loss));
  const test = tagged(ds.test);
  const inputs = tf.tensor2d(tagVectors.flat(), [13, 10]);
  const measured = tagRankingMeasures(tagScores(m, test, 784, inputs), test, 13);
  inputs.dispose();
  const chance = tagRankingMeasures(new Rng(1).fillUniform(new Float32Array(test.count * 13), 0, 1), test, 13);
  t.diagnostic(`tag ranking after 300 steps: ${JSON.stringify(measured)}; random scores: ${JSON.stringify(chance)}`);
  assert.equal(measured.images, test.count);
  // Measured 0.82, 0.89 and 0.36 (of at most 2/5); random scores 0.30, 0.15 and 0.15.
  assert.ok(measured.meanAveragePrecision >= 0.7, `mAP ${measured.meanAveragePrecision} (random ${chance.meanAveragePrecision})`);
  assert.ok(measured.precisionAt1 >= 0.75, `precision@1 ${measured.precisionAt1}`);
  assert.ok(measured.precisionAt5 >= 0.3, `precision@5 ${measured.precisionAt5}`);
  assert.ok(m.tagSetPriors!.computed <= 10, 'at most one prior per class-and-group set');
});
