// Lecture 002's two joint embeddings: the bimodal deep autoencoder (Ngiam et al.) and the unified
// semantic embedding with a taxonomy (Hwang & Sigal), and the WordNet hierarchy the latter uses.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import { type Dataset, oneHot } from '../src/data/dataset.js';
import { createModel } from '../src/models/registry.js';
import { type ImageModel, type Trainable, lossOf } from '../src/models/base.js';
import { createUse } from '../src/models/use.js';
import { train } from '../src/train/trainer.js';
import { annotationAccuracy, generationAccuracy, oneHotLabelInputs } from '../src/eval/metrics.js';
import { getJudge } from '../src/eval/judge.js';
import { coordinateRun } from '../src/analysis/coordinated.js';
import { datasetHierarchy, wordNetHierarchy } from '../src/text/ontology.js';
import { parseWordNet } from '../src/text/wordnet.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

test('WordNet hierarchy of the Fashion-MNIST classes: footwear and garments grouped, bag alone; errors name the word', () => {
  const wn = parseWordNet();
  const phrases = ['t-shirt', 'trousers', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'];
  const h = wordNetHierarchy(phrases, wn);
  const parentName = (c: number) => (h.parentOf[c] < 0 ? null : h.parents[h.parentOf[c]]);
  assert.equal(parentName(8), null, 'bag shares nothing specific with the other classes');
  assert.equal(parentName(0), 'garment');
  assert.equal(parentName(5), parentName(7), 'sandal and sneaker share a parent');
  // Ankle boot (a boot) meets the shoes one level up, at footwear: its parent's classes hold all three.
  assert.deepEqual(h.members[h.parentOf[9]], [5, 7, 9]);
  for (const [p, members] of h.members.entries()) {
    assert.ok(members.length >= 2, `parent ${h.parents[p]} groups at least two classes`);
    for (const c of h.parentOf.flatMap((q, c) => (q === p ? [c] : []))) assert.ok(members.includes(c), 'a class is among its parent\'s members');
  }
  assert.throws(() => wordNetHierarchy(['sneaker', 'qwzx'], wn), /'qwzx' is not a WordNet noun/);
  const coarse = datasetHierarchy([0, 0, 1, -1], ['vehicles', 'plants']);
  assert.deepEqual(coarse.members, [[0, 1], [2]]);
  assert.throws(() => datasetHierarchy([0, 2], ['a', 'b']), /class 1 has coarse label 2, outside 0…1/);
});

test('use: the objective equals its closed form (class hinge, parent-versus-sibling hinge, L1 residual)', () => {
  // Two-pixel images, a linear map into 2-D (no hidden layer), one-hot labels: u_c = row c of V.
  const m = createUse(
    { inputDim: 2, numClasses: 3, labelDim: 3, classVectors: Array.from(oneHot(Int32Array.from([0, 1, 2]), 3)), hidden: [], embedDim: 2, margin: 1, hierarchy: { parentOf: [0, 0, -1], members: [[0, 1]] }, ontologyWeight: 2, residualWeight: 0.5 },
    new Rng(1),
  );
  const W = [[1, 0], [0, 1]];
  const V = [[0, 0], [1, 0], [0, 2]];
  m.params.get('image.0.w').assign(tf.tensor2d(W));
  m.params.get('image.0.b').assign(tf.zeros([2]));
  m.params.get('labelMap.w').assign(tf.tensor2d(V));
  const xs = [[0.2, 0.1], [0.9, 0.3]];
  const labels = Int32Array.from([0, 1]);
  const d2 = (a: number[], b: number[]) => (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2;
  const parent = [(V[0][0] + V[1][0]) / 2, (V[0][1] + V[1][1]) / 2];
  let classHinge = 0;
  let ontology = 0;
  xs.forEach((z, i) => {
    const y = labels[i];
    for (let c = 0; c < 3; c++) if (c !== y) classHinge += Math.max(0, 1 + d2(z, V[y]) - d2(z, V[c]));
    ontology += Math.max(0, 1 + d2(z, parent) - d2(z, V[1 - y]));
  });
  const residual = [0, 1].reduce((s, c) => s + Math.abs(V[c][0] - parent[0]) + Math.abs(V[c][1] - parent[1]), 0);
  const x = tf.tensor2d(xs);
  const y = tf.tensor2d(oneHot(labels, 3), [2, 3]);
  const r = tf.tidy(() => {
    const l = lossOf(m, { x, y, labels, rng: new Rng(0) }, 0);
    return { total: l.total.dataSync()[0], c: l.terms.classHinge.dataSync()[0], o: l.terms.ontologyHinge.dataSync()[0], res: l.terms.residualL1.dataSync()[0] };
  });
  assert.ok(Math.abs(r.c - classHinge / 2) < 1e-5, `class hinge ${r.c} vs ${classHinge / 2}`);
  assert.ok(Math.abs(r.o - ontology / 2) < 1e-5, `ontology hinge ${r.o} vs ${ontology / 2}`);
  assert.ok(Math.abs(r.res - residual) < 1e-5, `residual ${r.res} vs ${residual}`);
  assert.ok(Math.abs(r.total - (classHinge / 2 + 2 * (ontology / 2) + 0.5 * residual)) < 1e-5);
  // Scores are negative squared distances to Vᵀv for any label inputs.
  const s = m.scoreLabels(x, tf.tensor2d([[0, 1, 0]])).dataSync();
  assert.ok(Math.abs(s[0] + d2(xs[0], V[1])) < 1e-5 && Math.abs(s[1] + d2(xs[1], V[1])) < 1e-5);
  assert.throws(() => m.scoreLabels(x, tf.zeros([1, 4]) as tf.Tensor2D), /label inputs are 4-wide but this embedding maps 3-wide ones/);
  assert.throws(() => createUse({ inputDim: 2, numClasses: 3, labelDim: 3, classVectors: [1, 2] }, new Rng(1)), /classVectors must hold numClasses × labelDim = 9 numbers, got 2/);
  assert.throws(
    () => createUse({ inputDim: 2, numClasses: 3, labelDim: 3, classVectors: Array(9).fill(0), hierarchy: { parentOf: [0], members: [[0, 1]] } }, new Rng(1)),
    /hierarchy.parentOf has 1 entries for 3 classes/,
  );
  tf.dispose([x, y]);
  m.dispose();
});

test('bimodal-ae: 300 steps annotate from the image alone (≥ 0.75) and generate recognisable images from the label alone', async () => {
  const m = createModel('bimodal-ae', { inputDim: 784, numClasses: 10 }, 0) as unknown as ImageModel & Trainable;
  const r = await train(m, ds.train, { pixels: 784, numClasses: 10 }, { steps: 300, batchSize: 100, lr: 1e-3, seed: 0, engine: 'fast' });
  const labels = oneHotLabelInputs(10);
  try {
    const acc = annotationAccuracy(m, ds.test, 784, labels);
    assert.ok(acc >= 0.75, `annotation from the image alone ${acc}`);
    assert.ok(r.finalTerms.labelLoss < 0.5, `label reconstruction ${r.finalTerms.labelLoss}`);
    // The label alone gives one code per label (a point): the judge must recognise most of the ten images.
    const judge = await getJudge(ds);
    const gen = generationAccuracy(m, judge.classifier, labels, { samplesPerLabel: 10, repeats: 1, seed: 0 });
    assert.ok(gen.accuracy >= 0.6, `generation from the label alone ${gen.accuracy} (${gen.perLabel})`);
  } finally {
    labels.dispose();
  }
  assert.throws(() => createModel('bimodal-ae', { inputDim: 784, numClasses: 10, imageOnlyFraction: 0.7, labelOnlyFraction: 0.5 }, 0), /imageOnlyFraction \+ labelOnlyFraction must be at most 1, got 0.7 \+ 0.5/);
});

test('coordinate: use and bimodal-ae annotate the subset, use reports its WordNet taxonomy; unknown options are named', async () => {
  const u = await coordinateRun({ method: 'use', dataset: 'fashion-mnist-subset', steps: 400, hidden: [64], seed: 0 });
  assert.ok(u.annotationAccuracy >= 0.78, `use annotation ${u.annotationAccuracy}`);
  assert.equal(u.hierarchy?.source, 'wordnet-3.1');
  assert.ok(u.hierarchy!.parents.some((p) => p.classes.includes('Sandal') && p.classes.includes('Sneaker')));
  assert.ok(u.training!.finalTerms.ontologyHinge >= 0);
  // Mistakes are counted over the classes with a parent (all but Bag): at most all wrong annotations, and most of them.
  const t = u.taxonomyErrors!;
  const wrong = Math.round((1 - u.annotationAccuracy) * u.testImages);
  const bags = ds.test.labels.filter((c) => c === 8).length;
  assert.ok(t.errors <= wrong && t.errors >= wrong - bags, `${t.errors} of ${wrong}`);
  assert.ok(t.siblingShare > 0.5 && t.siblingShare <= 1, `sibling share ${t.siblingShare}`);
  const flat = await coordinateRun({ method: 'use', dataset: 'fashion-mnist-subset', steps: 50, hidden: [16], ontology: 'none' });
  assert.equal(flat.hierarchy, null);
  assert.equal(flat.taxonomyErrors?.source, 'wordnet-3.1', 'a run without a taxonomy is still measured against one');
  assert.equal(flat.training!.finalTerms.ontologyHinge, undefined);
  const b = await coordinateRun({ method: 'bimodal-ae', dataset: 'fashion-mnist-subset', steps: 400, hidden: [128], seed: 0 });
  assert.ok(b.annotationAccuracy >= 0.72, `bimodal-ae annotation ${b.annotationAccuracy}`);
  assert.equal(b.options.labelKind, 'onehot');
  await assert.rejects(coordinateRun({ method: 'bimodal-ae', dataset: 'fashion-mnist-subset', embedDim: 3 }), /option embedDim does not apply to bimodal-ae/);
  await assert.rejects(coordinateRun({ method: 'devise', dataset: 'fashion-mnist-subset', ontology: 'none' }), /option ontology does not apply to devise/);
});
