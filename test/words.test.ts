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
import { UnknownWordError, WordVectors, boundedEditDistance, suggestAmong } from '../src/text/word-vectors.js';
import { lemmaCandidates } from '../src/text/wordnet.js';
import type { ImageModel } from '../src/models/base.js';
import { writeWordVectors } from '../src/text/readers.js';
import { classLabelInputs, evaluateRun, loadImageModel, trainRun } from '../src/runs/runs.js';
import { classOfPhrase, generateForPhrases, phraseGaussians, phraseInputs, phraseNeighbours, runWordVectors, splitQuery } from '../src/runs/words.js';
import { WORD_LABEL_LR_SCALE } from '../src/models/pse.js';
import { encodeSplit, retrieveAnyOf, retrieveImages } from '../src/runs/retrieval.js';
import { loadDataset } from '../src/data/registry.js';
import { createServer } from '../src/server/app.js';

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

  // A streamed vector file keeps the lemmas of the words asked for: "boots" is read as "boot", once said.
  const notes: string[] = [];
  const inflected = await runWordVectors(meta, ['boots', 'ankle boots'], { onNotice: (m) => notes.push(m) });
  assert.deepEqual(phraseInputs(meta, ['boots'], inflected), phraseInputs(meta, ['boot'], inflected));
  assert.deepEqual(phraseInputs(meta, ['ankle boots'], inflected), phraseInputs(meta, ['Ankle boot'], inflected));
  phraseInputs(meta, ['boots'], inflected);
  assert.deepEqual(notes, ["'boots' read as 'boot'"]);
  // The explorer's interpolation takes any word the run's vectors know, and names near misses.
  const srv = await createServer({ runDir: out, limits: { latentSample: 100 } });
  try {
    const strip = await srv.app.inject({ method: 'POST', url: '/api/interpolate', payload: { from: 'jeans', to: 'sweaters', steps: 3, scale: 1 } });
    assert.equal(strip.statusCode, 200, strip.body);
    assert.equal(strip.headers['content-type'], 'image/png');
    const asClasses = await srv.app.inject({ method: 'POST', url: '/api/interpolate', payload: { from: 'Trouser', to: 'Pullover', steps: 3, scale: 1 } });
    assert.notDeepEqual(strip.rawPayload, asClasses.rawPayload, 'unseen words are placed by their own vectors');
    const typo = await srv.app.inject({ method: 'POST', url: '/api/interpolate', payload: { from: 'jeanz', to: 'bag' } });
    assert.equal(typo.statusCode, 400);
    assert.equal(typo.json().code, 'UNKNOWN_WORD');
    assert.match(typo.json().message, /unknown word 'jeanz' \(did you mean 'jeans'\?\)/);
  } finally {
    await srv.close();
  }
  // A misspelt class is suggested even where the vectors were streamed for other words.
  assert.throws(() => phraseInputs(meta, ['sneakr'], wv), /unknown word 'sneakr' \(did you mean 'sneaker'\?\)/);

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
  // Near misses of class names are suggested; words that are no class are named one by one.
  assert.throws(() => phraseInputs(meta, ['sneakr', 'Trouserz'], null), /unknown words 'sneakr' \(did you mean 'sneaker'\?\), 'trouserz' \(did you mean 'trouser' or 'trousers'\?\)/);
  assert.throws(
    () => phraseInputs(meta, ['purple frog sneaker'], null),
    (e: unknown) => e instanceof UnknownWordError && e.words.join() === 'purple,frog',
  );
  // Two class names with no comma between them are one phrase, which names nothing: say so.
  assert.throws(() => phraseInputs(meta, ['sneaker  bag'], null), /unknown word 'sneaker bag'.*separate several labels with commas \('sneaker, bag'\)/);
  assert.throws(() => phraseInputs(meta, ['ankle boot sneaker'], null), /\('ankle boot, sneaker'\)/);
});

test('set queries: commas separate the members, the words between them are one phrase', () => {
  const meta = { classNames: [...FASHION_MNIST_CLASSES], labels: undefined };
  assert.deepEqual(splitQuery(meta, ['ankle  boot, sneaker', 'Sneaker']), ['Ankle boot', 'Sneaker']);
  assert.deepEqual(splitQuery(meta, ['running shoe, top , ,bag']), ['running shoe', 'T-shirt/top', 'Bag']);
  // Spaces no longer split a query into members: "sneaker boot" is one phrase.
  assert.deepEqual(splitQuery(meta, ['sneaker boot']), ['sneaker boot']);
  assert.deepEqual(splitQuery(meta, [' , ']), []);
});

test('inflected words are read as their lemma, with one note each; near misses are suggested', () => {
  const words = ['boot', 'sneaker', 'sneak', 'dress', 'woman', 'ankle_boot', 'bus', 'glass', 'snake_eater'];
  const dim = 4;
  const data = new Float32Array(words.length * dim).map((_, i) => Math.sin(i + 1));
  const strict = new WordVectors(words, data, dim, 'tiny');
  assert.throws(() => strict.phrase('boots'), /unknown word 'boots'/, 'forgiving is asked for, not implied');

  const notes: string[] = [];
  const wv = new WordVectors(words, data, dim, 'tiny').forgive(lemmaCandidates, (w, l) => notes.push(`${w}→${l}`));
  assert.deepEqual(wv.phrase('boots'), wv.get('boot'));
  assert.deepEqual(wv.phrase('Boots'), wv.get('boot'));
  assert.deepEqual(wv.phrase('dresses'), wv.get('dress'));
  assert.deepEqual(wv.phrase('women'), wv.get('woman'));
  assert.deepEqual(wv.phrase('buses'), wv.get('bus'));
  // A collocation's last word is inflected: its lemma is the whole entry, not the mean of two words.
  assert.deepEqual(wv.phrase('ankle boots'), wv.get('ankle_boot'));
  assert.deepEqual(wv.phrase('glass'), wv.get('glass'));
  assert.deepEqual(notes, ['boots→boot', 'dresses→dress', 'women→woman', 'buses→bus', 'ankle boots→ankle boot']);
  assert.equal(wv.lookup('glasss'), -1, 'a double s is not a plural ending');

  // Suggestions: one edit (a swap counts one), words before collocations, most shared ends first.
  assert.deepEqual(wv.suggest('sneakr'), ['sneaker', 'sneak']);
  assert.deepEqual(wv.suggest('snaeker'), ['sneaker']);
  assert.deepEqual(wv.suggest('boto'), ['boot']);
  assert.deepEqual(wv.suggest('xyzzy'), []);
  assert.throws(
    () => wv.phrase('sneakr boot'),
    (e: unknown) => e instanceof UnknownWordError && e.words.join() === 'sneakr' && /unknown word 'sneakr' \(did you mean 'sneaker' or 'sneak'\?\): not in the word vectors tiny/.test(e.message),
  );
  assert.equal(boundedEditDistance('sneakr', 'sneaker', 2), 1);
  assert.equal(boundedEditDistance('kitten', 'sitting', 3), 3);
  assert.equal(boundedEditDistance('kitten', 'sitting', 1), 2, 'stops at limit + 1');
  assert.equal(boundedEditDistance('ab', 'abcdef', 2), 3, 'lengths too far apart');
  assert.deepEqual(suggestAmong('Trouserz', ['trouser', 'trousers', 'dress']), ['trouser', 'trousers']);
  assert.deepEqual(lemmaCandidates('boots'), ['boot']);
  assert.ok(lemmaCandidates('feet').includes('foot'));
  assert.ok(lemmaCandidates('boxes').includes('box'));
  assert.ok(lemmaCandidates('Running').includes('run') === false && lemmaCandidates('Running').includes('runn'));
});

test('--any: the members take turns, so a broad word is not crowded out by a tight class', () => {
  // Ten images near (0, 0) and ten near (6, 6); member 0 is tight at the first cluster, member 1
  // broad at the second, so its KLs are all larger and the smallest KL would pick member 0's only.
  const n = 20;
  const dim = 2;
  const mean = new Float32Array(n * dim);
  const logVar = new Float32Array(n * dim).fill(Math.log(0.01));
  for (let i = 0; i < n; i++) {
    const c = i < 10 ? 0 : 6;
    mean[i * dim] = c + 0.05 * i;
    mean[i * dim + 1] = c - 0.03 * i;
  }
  const post = { count: n, dim, mean, logVar };
  const split = { images: new Uint8Array(0), labels: Uint8Array.from({ length: n }, (_, i) => (i < 10 ? 0 : 1)), count: n };
  const model = { latentDim: dim } as unknown as ImageModel;
  const tight = { mean: new Float32Array([0, 0]), logVar: new Float32Array([Math.log(0.05), Math.log(0.05)]) };
  const broad = { mean: new Float32Array([6, 6]), logVar: new Float32Array([Math.log(4), Math.log(4)]) };
  const one = retrieveImages(model, split, 0, tight, 6, { posteriors: post });
  const other = retrieveImages(model, split, 0, broad, 6, { posteriors: post });
  assert.ok(one.kl[5] < other.kl[0], 'the tight member is closer to all its images than the broad one to any');
  const r = retrieveAnyOf(model, split, 0, [tight, broad], 6, { posteriors: post });
  assert.deepEqual(r.labels, [0, 1, 0, 1, 0, 1]);
  assert.deepEqual(r.members, [0, 1, 0, 1, 0, 1]);
  assert.deepEqual(r.ids, [one.ids[0], other.ids[0], one.ids[1], other.ids[1], one.ids[2], other.ids[2]]);
  assert.deepEqual(r.kl, [one.kl[0], other.kl[0], one.kl[1], other.kl[1], one.kl[2], other.kl[2]]);
  // An image two members share is taken once.
  const twice = retrieveAnyOf(model, split, 0, [tight, tight], 4, { posteriors: post });
  assert.deepEqual(twice.ids, one.ids.slice(0, 4));
  assert.throws(() => retrieveAnyOf(model, split, 0, [], 4, { posteriors: post }), /no words given/);
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

test('one-hot runs read inflected class names as their class', () => {
  const meta = { classNames: FASHION_MNIST_CLASSES, labels: { kind: 'onehot' as const } };
  assert.equal(classOfPhrase(meta, 'sneakers'), 7);
  assert.equal(classOfPhrase(meta, 'Ankle Boots'), 9);
  assert.equal(classOfPhrase(meta, 'dresses'), 3);
  assert.equal(classOfPhrase(meta, 'trousers'), 1);
  // "glass" is no plural of anything here, and an unknown word stays unknown.
  assert.equal(classOfPhrase(meta, 'bass'), -1);
  assert.equal(classOfPhrase(meta, 'zebras'), -1);
  assert.deepEqual(splitQuery(meta, ['sneakers, bags']), ['Sneaker', 'Bag']);
});
