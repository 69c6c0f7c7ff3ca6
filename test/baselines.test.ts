/** The baseline models (β-VAE, CVAE, JMVAE, TrELBO, SCAN) and `probsem bench paper`. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { loadDataset } from '../src/data/registry.js';
import type { Dataset } from '../src/data/dataset.js';
import { Rng } from '../src/core/random.js';
import { createModel } from '../src/models/registry.js';
import { type ImageModel, type Trainable, lossOf } from '../src/models/base.js';
import { saveModel, loadModel, readModelMeta } from '../src/models/persist.js';
import type { Classifier } from '../src/models/classifier.js';
import type { Scan } from '../src/models/scan.js';
import type { Jmvae } from '../src/models/jmvae.js';
import type { PseStar } from '../src/models/pse-star.js';
import { CHECKPOINT_FILE, makeRawBatch, train } from '../src/train/trainer.js';
import { readCheckpoint } from '../src/train/checkpoint.js';
import { readEntry } from '../src/nn/params.js';
import { batchGradients } from '../src/train/gradients.js';
import { annotationAccuracy, generationAccuracy, oneHotLabelInputs, reconstructionError } from '../src/eval/metrics.js';
import { shippedJudgeDir } from '../src/eval/judge.js';
import { evaluateRun, generateForLabel, loadImageModel, trainRun } from '../src/runs/runs.js';
import { type BenchSummary, benchPaper, parseBenchModel } from '../src/runs/bench-paper.js';
import { setOptions } from '../src/cli/commands/train.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const SHAPE = { pixels: 784, numClasses: 10 };
const small = { inputDim: 784, numClasses: 10, latent: 4, encoderHidden: [32], decoderHidden: [32] };
const configs: Record<string, Record<string, unknown>> = {
  'beta-vae': small,
  cvae: small,
  jmvae: { ...small, jointHidden: [32] },
  trelbo: { ...small, jointHidden: [32] },
  scan: { ...small, stage1Steps: 2 },
  tvae: { ...small, margin: 1, mining: 'semi-hard' },
};
/** Tiny networks for runs made through trainRun / the bench (inputDim, numClasses, latent come from the run). */
const tinyOptions: Record<string, Record<string, unknown>> = {
  cvae: { encoderHidden: [32], decoderHidden: [32] },
  jmvae: { encoderHidden: [32], decoderHidden: [32], jointHidden: [32] },
  trelbo: { encoderHidden: [32], decoderHidden: [32], jointHidden: [32] },
  scan: { encoderHidden: [32], decoderHidden: [32] },
};

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-baselines-'));
const weights = (m: Trainable) => new Float32Array(m.params.serialize().blob.buffer.slice(0));
const snapshot = (m: Trainable) => new Map(m.params.entries().map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
const changed = (a: Float32Array, b: Float32Array) => a.some((x, i) => x !== b[i]);

/** An empty judge cache: the subset's judge ships with probsem (data/judges), so evaluation trains none. */
const emptyJudgeCache = tmp;

/** Everything a model computes for fixed inputs, for comparing a model with its reloaded copy. */
function outputs(m: ImageModel): number[] {
  return tf.tidy(() => {
    const x = tf.tensor2d(new Float32Array(2 * 784).map((_, i) => (i % 7) / 7), [2, 784]);
    const y = tf.slice(oneHotLabelInputs(10), [3, 0], [2, -1]) as tf.Tensor2D;
    const eps = tf.tensor2d(new Float32Array(2 * m.latentDim).map((_, i) => Math.sin(i)), [2, m.latentDim]);
    if (m.reconstructLogits) {
      return [...m.reconstructLogits(x, y, eps).dataSync(), ...m.reconstructLogits(x, y, null).dataSync(), ...m.generateLogits!(y, eps).dataSync()];
    }
    const out = [...m.encodeImage(x).mean.dataSync(), ...m.encodeImage(x).logVar.dataSync(), ...m.decode(eps).dataSync()];
    if (m.encodeLabels) out.push(...m.encodeLabels(y).mean.dataSync(), ...m.encodeLabels(y).logVar.dataSync());
    return out;
  });
}

for (const name of Object.keys(configs)) {
  test(`${name}: one training step changes the weights; evaluation changes none`, async () => {
    const m = createModel(name, configs[name], 1) as Trainable & ImageModel;
    const before = snapshot(m);
    await train(m, ds.train, SHAPE, { steps: 1, batchSize: 32, lr: 1e-3, seed: 1 });
    for (const [n, v] of m.params.entries()) {
      // SCAN's first step is stage 1: its label encoder is not part of that stage's loss.
      const expectChange = !(name === 'scan' && n.startsWith('labelEncoder.'));
      assert.equal(changed(v.dataSync() as Float32Array, before.get(n)!), expectChange, `parameter ${n} ${expectChange ? 'did not change' : 'changed'}`);
    }
    const w0 = weights(m);
    const labels = oneHotLabelInputs(10);
    const judge = createModel('classifier', { inputDim: 784, numClasses: 10, arch: 'mlp', hidden: [8], dropout: 0 }, 0) as Classifier;
    const start = tf.memory().numTensors;
    reconstructionError(m, ds.test, 784, 0, 'sample', labels);
    reconstructionError(m, ds.test, 784, 0, 'mean', labels);
    if (m.encodeLabels) annotationAccuracy(m, ds.test, 784, labels);
    if (m.encodeLabels || m.generateLogits) generationAccuracy(m, judge, labels, { samplesPerLabel: 10, repeats: 2, seed: 0 });
    assert.equal(tf.memory().numTensors, start, 'evaluation leaves no tensors behind');
    assert.deepEqual(weights(m), w0, 'evaluation must not change weights');
    labels.dispose();
    judge.params.dispose();
  });

  test(`${name}: loss terms are finite on a tiny batch; save/load round-trips weights and outputs exactly`, async () => {
    const m = createModel(name, configs[name], 2) as Trainable & ImageModel;
    const r = await train(m, ds.train, SHAPE, { steps: 4, batchSize: 4, lr: 1e-3, seed: 3, logEvery: 1 });
    assert.ok(Object.keys(r.finalTerms).length >= 3, `terms: ${Object.keys(r.finalTerms)}`);
    for (const [k, v] of Object.entries(r.finalTerms)) assert.ok(Number.isFinite(v), `${k} = ${v}`);
    const dir = tmp();
    saveModel(dir, m, { classNames: ds.classNames });
    const { model: loaded, meta } = loadModel(dir);
    assert.equal(meta.model, name);
    assert.deepEqual(weights(loaded), weights(m));
    assert.deepEqual(outputs(loaded as unknown as ImageModel), outputs(m));
  });
}

test('cvae: annotation is n/a; generation decodes N(0, I) noise with the label; encodeImage alone fails clearly', async () => {
  const m = createModel('cvae', configs.cvae, 0) as Trainable & ImageModel;
  assert.equal(m.encodeLabels, undefined);
  assert.throws(() => m.encodeImage(tf.zeros([1, 784])), /cvae encodes an image only together with its label/);
  assert.throws(() => reconstructionError(m, ds.test, 784), /reconstructs an image given its label: pass the label inputs/);
  const dir = tmp();
  await trainRun({ model: 'cvae', dataset: 'fashion-mnist-subset', latent: 4, steps: 3, batchSize: 20, lr: 1e-3, seed: 0, out: dir, modelOptions: tinyOptions.cvae });
  const report = await evaluateRun(dir, { samplesPerLabel: 10, repeats: 2, judgeCacheDir: emptyJudgeCache() });
  assert.equal(report.annotationAccuracy, null);
  assert.equal(report.tripletAccuracy, null, 'no label-free embedding to measure triplets on');
  assert.ok(report.generationAccuracy !== null && report.generationAccuracy >= 0, 'generation accuracy is measured');
  assert.ok(Number.isFinite(report.reconstructionError) && Number.isFinite(report.reconstructionErrorMean));
  const { model, meta } = loadImageModel(dir);
  const images = generateForLabel(model, meta, 'sneaker', 3, 0);
  assert.equal(images.length, 3 * 784);
  assert.ok(images.every((p) => p >= 0 && p <= 1));
  assert.deepEqual(generateForLabel(model, meta, 'Sneaker', 3, 0), images, 'seeded');
  assert.throws(() => generateForLabel(model, meta, 'Jacket', 3, 0), /label 'Jacket' is not in the model's vocabulary: T-shirt\/top, Trouser/);
});

test('pse-star: a KL warm-up weighs the KL term by min(1, step/klWarmupSteps) in the total, and reports it unweighted', () => {
  const cfg = { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [16], decoderHidden: [16], classifierHidden: [8] };
  const m = createModel('pse-star', { ...cfg, klWarmupSteps: 10 }, 0) as unknown as PseStar;
  assert.deepEqual([0, 5, 10, 50].map((s) => m.klWeight(s)), [0, 0.5, 1, 1]);
  assert.equal((createModel('pse-star', cfg, 0) as unknown as PseStar).klWeight(0), 1, 'no warm-up by default (the paper)');
  const rows = 4;
  const x = tf.tensor2d(Float32Array.from({ length: rows * 784 }, (_, i) => (i % 7) / 7), [rows, 784]);
  const labels = Int32Array.from([1, 3, 5, 7]);
  const y = tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), 10), 'float32') as tf.Tensor2D;
  for (const step of [0, 5, 20]) {
    const r = lossOf(m, { x, y, labels, rng: new Rng(1) }, step);
    const [total, recon, kl, ce] = [r.total, r.terms.recon, r.terms.kl, r.terms.classifier].map((t) => t.dataSync()[0]);
    assert.ok(kl > 0);
    assert.ok(Math.abs(total - (recon + m.klWeight(step) * kl + m.config.classifierWeight * ce)) < 1e-3 * Math.abs(total), `step ${step}`);
  }
  assert.throws(() => createModel('pse-star', { ...cfg, klWarmupSteps: -1 }, 0), /klWarmupSteps/);
});

test('jmvae: the KL warm-up weight rises linearly to 1', () => {
  const m = createModel('jmvae', { ...configs.jmvae, warmupSteps: 10 }, 0) as unknown as Jmvae;
  assert.deepEqual([0, 5, 10, 50].map((s) => m.warmupWeight(s)), [0, 0.5, 1, 1]);
  assert.equal((createModel('jmvae', configs.jmvae, 0) as unknown as Jmvae).warmupWeight(0), 1);
  assert.throws(() => createModel('jmvae', { ...configs.jmvae, alpha: -1 }, 0), /invalid jmvae config: alpha/);
});

test('scan: stage 1 never reaches the label encoder; stage 2 reaches only it and leaves the image model bit-identical', async () => {
  const stage1Steps = 3;
  const m = createModel('scan', { ...configs.scan, stage1Steps }, 4) as unknown as Scan & Trainable;
  // Which parameters each stage's loss reaches.
  const raw = makeRawBatch(ds.train, Int32Array.from({ length: 16 }, (_, i) => i), 784, 10);
  const batch = { x: tf.tensor2d(raw.x, [16, 784]), y: tf.tensor2d(raw.y, [16, 10]), labels: raw.labels, rng: new Rng(1) };
  for (const [step, stage] of [[0, 1], [stage1Steps - 1, 1], [stage1Steps, 2], [stage1Steps + 10, 2]] as const) {
    assert.equal(m.stageOf(step), stage);
    const g = batchGradients(m, { ...batch, rng: new Rng(step) }, step);
    const names = [...g.grads.keys()];
    g.dispose();
    const label = names.filter((n) => n.startsWith('labelEncoder.'));
    if (stage === 1) assert.deepEqual(label, [], `step ${step}: stage 1 must not reach the label encoder`);
    else assert.deepEqual(names, label, `step ${step}: stage 2 reaches only the label encoder`);
    assert.ok(names.length > 0);
  }
  tf.dispose([batch.x, batch.y]);

  // Through the trainer on each engine, and across them (their checkpoints are interchangeable):
  // stop after stage 1, then resume into stage 2. The frozen networks keep their weights and their
  // Adam moments bit for bit; Adam's step count is shared and advances every step.
  const isLabel = (n: string) => n.startsWith('labelEncoder.');
  for (const [first, second] of [['fast', 'fast'], ['tfjs', 'tfjs'], ['fast', 'tfjs'], ['tfjs', 'fast']] as const) {
    const what = `${first} then ${second}`;
    const mm = createModel('scan', { ...configs.scan, stage1Steps }, 4) as unknown as Scan & Trainable;
    const dir = tmp();
    const init = snapshot(mm);
    const opts = { steps: 9, batchSize: 20, lr: 1e-3, seed: 4, outDir: dir, config: mm.config };
    assert.equal((await train(mm, ds.train, SHAPE, { ...opts, stopAfter: stage1Steps, engine: first })).engine, first);
    const afterStage1 = snapshot(mm);
    const adam1 = adamState(dir);
    assert.equal(adam1.t, stage1Steps);
    for (const [n, v] of afterStage1) {
      assert.equal(changed(v, init.get(n)!), !isLabel(n), `${what}, stage 1: ${n}`);
      if (isLabel(n)) assert.ok(adam1.moments.get(`m:${n}`)!.every((x) => x === 0) && adam1.moments.get(`v:${n}`)!.every((x) => x === 0), `${what}: stage 1 leaves ${n}'s Adam moments at zero`);
    }
    const r = await train(mm, ds.train, SHAPE, { ...opts, resume: true, logEvery: 1, engine: second });
    assert.equal(r.engine, second);
    assert.equal(r.startStep, stage1Steps);
    const adam2 = adamState(dir);
    assert.equal(adam2.t, 9, `${what}: Adam counts every step`);
    for (const [n, v] of snapshot(mm)) {
      const moments = [`m:${n}`, `v:${n}`].map((key) => [adam1.moments.get(key)!, adam2.moments.get(key)!] as const);
      if (isLabel(n)) {
        assert.ok(changed(v, afterStage1.get(n)!), `${what}: stage 2 must train ${n}`);
        assert.ok(moments.every(([a, b]) => changed(a, b)), `${what}: stage 2 must update ${n}'s Adam moments`);
      } else {
        assert.deepEqual(v, afterStage1.get(n), `${what}: stage 2 must leave ${n} bit-identical`);
        for (const [a, b] of moments) assert.deepEqual(b, a, `${what}: stage 2 must leave ${n}'s Adam moments bit-identical`);
      }
    }
    assert.ok(Number.isFinite(r.finalTerms.labelKl) && Number.isFinite(r.finalTerms.recon));
    assert.equal(r.finalTerms.loss, r.finalTerms.labelKl, 'stage 2 minimises the label KL alone');
  }
});

/** Adam's step count and moments in a run directory's checkpoint. */
function adamState(dir: string): { t: number; moments: Map<string, Float32Array> } {
  const path = join(dir, CHECKPOINT_FILE);
  const ck = readCheckpoint(path);
  return { t: ck.header.optimizer.t, moments: new Map(ck.header.optimizer.tensors.map((e) => [e.name, readEntry(e, ck.optimizer, path)])) };
}

test('scan through trainRun: stage 1 is 60% of the steps unless given; bad splits and data-parallel runs are refused', async () => {
  const dir = tmp();
  const run = await trainRun({ model: 'scan', dataset: 'fashion-mnist-subset', latent: 3, steps: 5, batchSize: 20, lr: 1e-3, seed: 0, out: dir, modelOptions: tinyOptions.scan });
  assert.equal(run.meta.config.stage1Steps, 3);
  assert.equal(run.meta.training?.engine, 'fast', 'auto picks the kernel engine (the tape) for scan, and model.json records it');
  assert.equal(run.meta.config.beta, 10);
  const base = { model: 'scan', dataset: 'fashion-mnist-subset', latent: 3, batchSize: 20, lr: 1e-3, seed: 0, force: true };
  await assert.rejects(trainRun({ ...base, steps: 5, out: tmp(), modelOptions: { ...tinyOptions.scan, stage1Steps: 5 } }), /scan: stage1Steps is 5 but must be in \[1, 4\]/);
  await assert.rejects(trainRun({ ...base, steps: 5, out: tmp(), workers: 2, modelOptions: tinyOptions.scan }), /data-parallel training \(--workers 2\) was removed/);
  assert.throws(() => createModel('scan', small, 0), /invalid scan config: stage1Steps: stage1Steps is required/);
});

test('train --set parses KEY=VALUE pairs and refuses malformed ones', () => {
  assert.deepEqual(setOptions(['alpha=0.5', 'encoderHidden=[64,32]', 'name=x y']), { alpha: 0.5, encoderHidden: [64, 32], name: 'x y' });
  assert.throws(() => setOptions(['alpha']), /--set expects KEY=VALUE/);
  assert.throws(() => setOptions(['latent=3']), /use --latent N/);
});

test('bench paper: options are validated with clear errors', async () => {
  const base = { dataset: 'fashion-mnist-subset', runsDir: tmp(), out: tmp(), skipGeneration: true };
  await assert.rejects(benchPaper({ ...base, models: ['cvae', 'nope'] }), /unknown bench model 'nope': choose from vae, pse, pse-star, .*cvae, jmvae, trelbo, scan/);
  await assert.rejects(benchPaper({ ...base, latent: 0 }), /latent must be an integer in \[1, 1024\], got 0/);
  await assert.rejects(benchPaper({ ...base, seeds: 0 }), /seeds must be an integer/);
  await assert.rejects(benchPaper({ ...base, models: ['pse@0'] }), /latent size must be an integer in \[1, 1024\], got '0'/);
  await assert.rejects(benchPaper({ ...base, models: ['pse', 'pse@10'] }), /pse@10 is listed twice/);
  assert.deepEqual(parseBenchModel('pse-star@20', 10), { key: 'pse-star@20', model: 'pse-star', latent: 20, label: 'PSE* (20D)' });
  assert.equal(parseBenchModel('trelbo', 10).label, 'TrELBO');
});

test('bench paper: every cell in the JSON and report; finished cells are kept; a half-trained run resumes', async () => {
  const runsDir = tmp();
  const out = tmp();
  const judgeCacheDir = emptyJudgeCache();
  const latent = 3;
  const steps = 5;
  // A run interrupted after 2 of its 5 steps, as trainRun would have left it.
  const halfDir = join(runsDir, `jmvae-${latent}d-s0`);
  const half = createModel('jmvae', { inputDim: 784, numClasses: 10, latent, ...tinyOptions.jmvae }, 0) as Trainable & { config: object };
  await train(half, ds.train, SHAPE, { steps, batchSize: 20, lr: 1e-3, seed: 0, outDir: halfDir, config: half.config, checkpointEvery: 1, stopAfter: 2 });

  const states: string[] = [];
  const opts = {
    dataset: 'fashion-mnist-subset',
    latent,
    seeds: 1,
    steps,
    batchSize: 20,
    models: ['cvae', 'jmvae'],
    runsDir,
    out,
    judgeCacheDir,
    samplesPerLabel: 10,
    repeats: 2,
    modelOptions: tinyOptions,
    date: new Date('2024-05-06T12:00:00Z'),
    onCell: (e: { spec: { key: string }; state: string }) => states.push(`${e.spec.key}:${e.state}`),
  };
  const r = await benchPaper(opts);
  assert.deepEqual(states, [`cvae@${latent}:train`, `cvae@${latent}:evaluate`, `jmvae@${latent}:resume`, `jmvae@${latent}:evaluate`]);
  assert.equal(r.jsonPath, join(out, 'paper-fashion-mnist-subset-2024-05-06.json'));
  const json = JSON.parse(readFileSync(r.jsonPath, 'utf8')) as BenchSummary;
  assert.deepEqual(json.seeds, [0]);
  assert.deepEqual(json.cells.map((c) => c.key), [`cvae@${latent}`, `jmvae@${latent}`]);
  for (const c of json.cells) {
    assert.equal(c.runs.length, 1);
    assert.ok(Number.isFinite(c.reconstructionError.mean) && c.reconstructionError.n === 1 && c.reconstructionError.sd === null);
    assert.ok(c.generationAccuracy !== null && Number.isFinite(c.generationAccuracy.mean));
    assert.ok(c.generationRepeatSd !== null);
    assert.ok(existsSync(join(c.runs[0].dir, 'eval.json')));
  }
  assert.equal(json.cells[0].annotationAccuracy, null, 'CVAE cannot annotate');
  assert.ok(json.cells[1].annotationAccuracy !== null);
  assert.deepEqual(json.judge, { accuracy: readModelMeta(shippedJudgeDir(ds)!).metrics?.testAccuracy, dir: shippedJudgeDir(ds) }, 'the shipped judge');
  assert.equal(loadModel(halfDir).meta.training?.steps, steps, 'the half-trained run was finished');
  const md = readFileSync(r.reportPath, 'utf8');
  assert.match(md, /\| CVAE \| [\d.]+ \| — \| n\/a \| — \| [\d.]+ \|/);
  assert.match(md, /\| JMVAE \| /);

  // Run again: every cell is kept, nothing is retrained, the same numbers come out.
  states.length = 0;
  const again = await benchPaper(opts);
  assert.deepEqual(states, [`cvae@${latent}:kept`, `jmvae@${latent}:kept`]);
  assert.deepEqual(again.summary.cells.map((c) => c.reconstructionError), json.cells.map((c) => c.reconstructionError));

  // A lost eval.json is re-evaluated without retraining; other settings in the same runs dir are refused.
  rmSync(join(json.cells[0].runs[0].dir, 'eval.json'));
  states.length = 0;
  await benchPaper(opts);
  assert.deepEqual(states, [`cvae@${latent}:evaluate`, `jmvae@${latent}:kept`]);
  await assert.rejects(benchPaper({ ...opts, steps: 6 }), /holds a bench trained with other settings: steps 5 \(now 6\)/);

  // A chosen option makes a cell of its own: its own run directory, trained with the option, labelled
  // with it, kept on a rerun; the cell without the option is untouched.
  states.length = 0;
  const withAlpha = { ...opts, set: { jmvae: { alpha: 0.5 } } };
  const r3 = await benchPaper(withAlpha);
  assert.deepEqual(states, [`cvae@${latent}:kept`, `jmvae@${latent}:train`, `jmvae@${latent}:evaluate`]);
  const cell = r3.summary.cells[1];
  assert.equal(cell.runs[0].dir, join(runsDir, `jmvae-${latent}d-alpha=0.5-s0`));
  assert.equal(loadModel(cell.runs[0].dir).meta.config.alpha, 0.5);
  assert.equal(cell.label, 'JMVAE, alpha 0.5');
  assert.deepEqual(cell.options, { alpha: 0.5 });
  assert.match(readFileSync(r3.reportPath, 'utf8'), /\| JMVAE, alpha 0\.5 \| /);
  states.length = 0;
  await benchPaper(withAlpha);
  assert.deepEqual(states, [`cvae@${latent}:kept`, `jmvae@${latent}:kept`]);
  states.length = 0;
  await benchPaper(opts);
  assert.deepEqual(states, [`cvae@${latent}:kept`, `jmvae@${latent}:kept`], 'the default cell is still there');
  await assert.rejects(benchPaper({ ...opts, set: { trelbo: { lambda1: 2 } } }), /options are set for trelbo, which is not among the bench's models \(cvae@3, jmvae@3\)/);
});

test('probsem bench paper: bad options exit with code 2 and one clear line', () => {
  const cases: [string[], RegExp][] = [
    [['bench', 'paper', '--models', 'cvae,nope', '--runs', tmp(), '--out', tmp()], /unknown bench model 'nope': choose from /],
    [['bench', 'paper', '--latent', '0'], /--latent must be an integer in \[1, 1024\], got '0'/],
    [['bench', 'speed'], /unknown bench 'speed': probsem bench paper/],
    [['bench', 'paper', '--set', 'classifierWeight=100'], /--set expects MODEL\.KEY=VALUE with MODEL one of .* got 'classifierWeight=100'/],
  ];
  for (const [args, re] of cases) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: tmp() } });
    assert.equal(r.status, 2, `${args.join(' ')} → exit ${r.status}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});
