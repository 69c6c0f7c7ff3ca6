// Words as labels: label phrases, word-vector label encodings, unseen words, zero-shot runs.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { FASHION_MNIST_CLASSES } from '../src/data/dataset.js';
import { classInputRows, labelPhrases, parseLabelEncoding } from '../src/text/labels.js';
import { WordVectors } from '../src/text/word-vectors.js';
import { writeWordVectors } from '../src/text/readers.js';
import { classLabelInputs, evaluateRun, loadImageModel, trainRun } from '../src/runs/runs.js';
import { generateForPhrases, phraseGaussians, phraseInputs, phraseNeighbours, runWordVectors } from '../src/runs/words.js';
import { WORD_LABEL_LR_SCALE } from '../src/models/pse.js';
import { encodeSplit, retrieveImages } from '../src/runs/retrieval.js';
import { loadDataset } from '../src/data/registry.js';

before(async () => {
  await setupBackend();
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-words-'));

/** A small vector file: the class words plus unseen ones placed near a class (jeans ≈ trousers). */
function vectorFile(): string {
  const rng = new Rng(11);
  const base = ['t-shirt', 'trousers', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle', 'boot'];
  const words = [...base, 'jeans', 'sweater', 'purse'];
  const dim = 16;
  const data = new Float32Array(words.length * dim);
  for (let i = 0; i < base.length * dim; i++) data[i] = rng.normal();
  const near = (target: string, row: number) => {
    const t = base.indexOf(target);
    for (let j = 0; j < dim; j++) data[row * dim + j] = data[t * dim + j] + 0.1 * rng.normal();
  };
  near('trousers', base.length);
  near('pullover', base.length + 1);
  near('bag', base.length + 2);
  const path = join(tmp(), 'tiny.vec');
  writeWordVectors(path, new WordVectors(words, data, dim, 'tiny'), 'text', { header: true });
  return path;
}

test('label encodings and phrases: defaults, overrides and clear errors', () => {
  assert.deepEqual(parseLabelEncoding('onehot'), { kind: 'onehot' });
  assert.deepEqual(parseLabelEncoding('words'), { kind: 'words', source: 'wordnet' });
  assert.deepEqual(parseLabelEncoding('words:/x/y.vec'), { kind: 'words', source: '/x/y.vec' });
  assert.throws(() => parseLabelEncoding('glove'), /--labels must be onehot, words or words:/);
  const p = labelPhrases(FASHION_MNIST_CLASSES, 'Ankle boot=boot, bag=handbag');
  assert.equal(p[0], 't-shirt');
  assert.equal(p[8], 'handbag');
  assert.equal(p[9], 'boot');
  assert.throws(() => labelPhrases(FASHION_MNIST_CLASSES, 'Spaceship=rocket'), /overrides name unknown classes: Spaceship/);
  assert.throws(() => labelPhrases(FASHION_MNIST_CLASSES, 'Bag'), /not of the form Class=phrase/);
  const onehot = classInputRows({ kind: 'onehot' }, 3);
  assert.deepEqual([...onehot], [1, 0, 0, 0, 1, 0, 0, 0, 1]);
});

test('a run trained on word vectors places unseen words, generates for them, and round-trips', async () => {
  const vectors = vectorFile();
  const out = join(tmp(), 'run');
  await trainRun({
    model: 'pse-star',
    dataset: 'fashion-mnist-subset',
    latent: 4,
    steps: 40,
    batchSize: 50,
    lr: 1e-3,
    seed: 2,
    out,
    labels: { kind: 'words', source: vectors },
    modelOptions: { encoderHidden: [32], decoderHidden: [32], classifierHidden: [32] },
  });
  const { model, meta } = loadImageModel(out);
  assert.equal(meta.labelEncoding, 'words');
  assert.ok(meta.labels?.kind === 'words');
  assert.equal(meta.labels.dim, 16);
  assert.equal(meta.labels.phrases[9], 'ankle boot');
  assert.equal(meta.config.labelDim, 16);
  // Class inputs are unit vectors; "ankle boot" is the mean of its two words, rescaled.
  const rows = classLabelInputs(meta);
  const norms = tf.tidy(() => tf.norm(rows, 2, 1).dataSync());
  rows.dispose();
  for (const n of norms) assert.ok(Math.abs(n - 1) < 1e-5, `unit norm, got ${n}`);

  const wv = await runWordVectors(meta, ['jeans', 'sweater']);
  assert.ok(wv);
  const images = generateForPhrases(model, meta, ['jeans', 'sweater'], wv, 3, 0);
  assert.equal(images.length, 2 * 3 * 784);
  assert.ok(images.every((v) => v >= 0 && v <= 1));
  // jeans was planted next to trousers in the vector space: it lands nearest Trouser.
  const nb = phraseNeighbours(model, meta, 'jeans', wv, 3);
  assert.equal(nb.classes[0].label, 'Trouser');
  assert.ok(nb.classes[0].cosine! > 0.9);
  assert.throws(() => phraseInputs(meta, ['jeans', 'spaceship', 'warp drive'], wv), /unknown words 'spaceship', 'warp', 'drive'/);

  // Posterior ranking equals a brute-force p(query | μ_x) against the other classes.
  const ds = await loadDataset('fashion-mnist-subset');
  const post = encodeSplit(model, ds.test, 784);
  const gs = phraseGaussians(model, meta, meta.classNames, wv);
  const query = gs[7];
  const competitors = gs.filter((_, c) => c !== 7);
  const r = retrieveImages(model, ds.test, 784, query, 15, { rank: 'posterior', competitors, posteriors: post });
  const logN = (g: { mean: Float32Array; logVar: Float32Array }, i: number) =>
    -0.5 * Array.from(g.mean, (m, d) => g.logVar[d] + (post.mean[i * 4 + d] - m) ** 2 / Math.exp(g.logVar[d])).reduce((a, b) => a + b, 0);
  const score = (i: number) => {
    const ll = [query, ...competitors].map((g) => logN(g, i));
    const m = Math.max(...ll);
    return ll[0] - m - Math.log(ll.reduce((a, v) => a + Math.exp(v - m), 0));
  };
  const brute = Array.from({ length: ds.test.count }, (_, i) => i).sort((a, b) => score(b) - score(a) || a - b);
  assert.deepEqual(r.ids, brute.slice(0, 15));
});

test('a one-hot run knows only its classes and says how to use other words', async () => {
  const out = join(tmp(), 'run');
  await trainRun({ model: 'pse', dataset: 'fashion-mnist-subset', latent: 3, steps: 3, batchSize: 20, lr: 1e-3, seed: 0, out, modelOptions: { encoderHidden: [16], decoderHidden: [16] } });
  const { meta } = loadImageModel(out);
  const rows = phraseInputs(meta, ['ankle boot', 'T-shirt/top', 'top'], null);
  assert.equal(rows[9], 1);
  assert.equal(rows[10], 1);
  assert.equal(rows[20], 1);
  assert.throws(() => phraseInputs(meta, ['loafer'], null), /unknown word 'loafer': this run uses one-hot labels .* train with --labels words/);
});

test('--holdout trains without the named classes and eval reports zero-shot accuracies', async () => {
  const out = join(tmp(), 'run');
  const r = await trainRun({
    model: 'pse',
    dataset: 'fashion-mnist-subset',
    latent: 4,
    steps: 60,
    batchSize: 50,
    lr: 1e-3,
    seed: 1,
    out,
    labels: { kind: 'words', source: vectorFile() },
    holdout: ['sneaker', 'Trouser'],
    modelOptions: { encoderHidden: [32], decoderHidden: [32] },
  });
  assert.deepEqual(r.meta.holdout, ['Sneaker', 'Trouser']);
  assert.equal(r.meta.dataset?.trainCount, 8000, 'the 2,000 held-out training images are left out');
  const e = await evaluateRun(out, { skipGeneration: true });
  assert.ok(e.zeroShot);
  assert.equal(e.zeroShot.unseenImages, 400);
  assert.equal(e.zeroShot.seenImages, 1600);
  for (const k of ['unseenAccuracy', 'generalizedAccuracy', 'seenAccuracy'] as const) {
    assert.ok(e.zeroShot[k] >= 0 && e.zeroShot[k] <= 1, `${k} = ${e.zeroShot[k]}`);
  }
  assert.ok(e.retrievalPrecisionAt20 && e.retrievalPrecisionAt20.mean >= 0);
  await assert.rejects(
    trainRun({ model: 'pse', dataset: 'fashion-mnist-subset', latent: 3, steps: 1, batchSize: 20, lr: 1e-3, seed: 0, out: join(tmp(), 'x'), holdout: ['Spaceship'] }),
    /--holdout: 'Spaceship' is not a class of this dataset/,
  );
});

test('PSE and PSE* on word vectors default to the word-input label rate scale; one given by the user wins', async () => {
  const vectors = vectorFile();
  const base = { dataset: 'fashion-mnist-subset', latent: 3, steps: 2, batchSize: 20, lr: 1e-3, seed: 0, labels: { kind: 'words' as const, source: vectors } };
  const small = { encoderHidden: [16], decoderHidden: [16], classifierHidden: [16] };
  const words = join(tmp(), 'w');
  await trainRun({ ...base, model: 'pse-star', out: words, modelOptions: small });
  assert.equal(loadImageModel(words).meta.config.labelLrScale, WORD_LABEL_LR_SCALE);
  const given = join(tmp(), 'g');
  await trainRun({ ...base, model: 'pse', out: given, modelOptions: { encoderHidden: [16], decoderHidden: [16], labelLrScale: 7 } });
  assert.equal(loadImageModel(given).meta.config.labelLrScale, 7);
  const onehot = join(tmp(), 'o');
  await trainRun({ ...base, model: 'pse', labels: { kind: 'onehot' }, out: onehot, modelOptions: { encoderHidden: [16], decoderHidden: [16] } });
  assert.equal(loadImageModel(onehot).meta.config.labelLrScale, 10);
});
