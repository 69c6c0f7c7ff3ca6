// The two interpreters of the op vocabulary agree: every op's value and gradient on the tape
// (wasm kernels) matches tfjs's autodiff, and the Gaussian terms match their closed forms.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend, gradientDifference, assertClose } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { Kernels } from '../src/core/wasm/kernels.js';
import { ParamSet } from '../src/nn/params.js';
import { Mlp } from '../src/nn/mlp.js';
import { ConvStack } from '../src/nn/conv.js';
import { FlatParams } from '../src/ops/flat-params.js';
import { TapeOps } from '../src/ops/tape.js';
import { TfOps, tfObjective } from '../src/ops/tfjs.js';
import type { Objective, Ops } from '../src/ops/types.js';
import { diagFromMoments, fullFromMoments, klTerm, meanKl, sampleTerm } from '../src/distributions/objective.js';
import { DiagGaussian, fullMomentsWidth } from '../src/distributions/gaussian.js';
import { kl } from '../src/distributions/kl.js';

let kernels: Kernels;
before(async () => {
  await setupBackend();
  kernels = await Kernels.create({ threads: 1 });
});
after(async () => {
  await kernels.dispose();
});

type AnyObjective = <T>(o: Ops<T>) => Objective<T>;

interface Case {
  rows: number;
  pixels: number;
  labelDim: number;
  x?: Float32Array;
}

function batchFor(c: Case, seed: number) {
  const r = new Rng(seed);
  const x = c.x ?? Float32Array.from({ length: c.rows * c.pixels }, () => r.uniform());
  const y = Float32Array.from({ length: c.rows * c.labelDim }, () => r.normal());
  const labels = Int32Array.from({ length: c.rows }, (_, i) => i % 3);
  return { x, y, labels, rows: c.rows, pixels: c.pixels, labelDim: c.labelDim };
}

/** Runs an objective on both engines from the same weights and noise; returns terms and gradients of each. */
function bothEngines(params: ParamSet, objective: AnyObjective, c: Case, step = 3) {
  const b = batchFor(c, 7);
  // tfjs autodiff
  const xs = tf.tensor2d(b.x, [b.rows, b.pixels]);
  const ys = tf.tensor2d(b.y, [b.rows, b.labelDim]);
  const byVar = new Map(params.entries().map(([n, v]) => [v.name, n]));
  let terms: Record<string, number> = {};
  const { value, grads } = tf.variableGrads(() => {
    const r = tfObjective((o: TfOps) => objective(o), params, { x: xs, y: ys, labels: b.labels, rng: Rng.for(11, 'step', step) }, step);
    terms = Object.fromEntries(Object.entries(r.terms).map(([k, t]) => [k, t.dataSync()[0]]));
    return r.total;
  });
  const tfTerms = { loss: value.dataSync()[0], ...terms };
  const tfGrads = new Map<string, Float32Array>();
  for (const [vn, g] of Object.entries(grads)) tfGrads.set(byVar.get(vn)!, g.dataSync() as Float32Array);
  tf.dispose([xs, ys, value, ...Object.values(grads)]);
  // tape
  const flat = new FlatParams(kernels, params);
  const ops = new TapeOps(kernels, flat, b.rows, { pixels: b.pixels, labelDim: b.labelDim });
  const tape = ops.compile(objective(ops));
  // Garbage in the gradient buffer: the tape must overwrite every gradient it reports, not add to it.
  kernels.view(flat.grads).fill(123);
  const tapeTerms = tape.run(b, Rng.for(11, 'step', step), step);
  const tapeGrads = new Map(tape.trained.map((n) => [n, kernels.view(flat.grad(n)).slice()]));
  // A second run gives the same numbers (no state carried between steps).
  const again = tape.run(b, Rng.for(11, 'step', step), step);
  assert.deepEqual(again, tapeTerms);
  return { tfTerms, tfGrads, tapeTerms, tapeGrads, trained: tape.trained };
}

/**
 * Central finite differences of the tape's loss against its gradient, for a few entries of every
 * parameter (float32 forward passes, so h is large and the tolerance loose; smooth objectives only).
 */
function assertFiniteDifferences(params: ParamSet, objective: AnyObjective, c: Case, step = 3): void {
  const b = batchFor(c, 7);
  const flat = new FlatParams(kernels, params);
  const ops = new TapeOps(kernels, flat, b.rows, { pixels: b.pixels, labelDim: b.labelDim });
  const tape = ops.compile(objective(ops));
  const run = () => tape.run(b, Rng.for(11, 'step', step), step).loss;
  run();
  const grads = new Map(tape.trained.map((n) => [n, kernels.view(flat.grad(n)).slice()]));
  const pick = new Rng(4);
  const h = 1e-2;
  for (const [name, g] of grads) {
    const seg = flat.segment(name);
    for (let t = 0; t < Math.min(4, seg.length); t++) {
      const i = pick.int(seg.length);
      const at = (flat.values.ptr >> 2) + seg.offset + i;
      const v = kernels.heap()[at];
      kernels.heap()[at] = v + h;
      const up = run();
      kernels.heap()[at] = v - h;
      const down = run();
      kernels.heap()[at] = v;
      const fd = (up - down) / (2 * h);
      assert.ok(Math.abs(fd - g[i]) <= 2e-2 * Math.max(Math.abs(g[i]), 0.05), `${name}[${i}]: finite difference ${fd} against gradient ${g[i]}`);
    }
  }
}

function assertAgree(r: ReturnType<typeof bothEngines>, tol = 1e-4): void {
  assert.deepEqual(Object.keys(r.tapeTerms).sort(), Object.keys(r.tfTerms).sort());
  for (const [k, v] of Object.entries(r.tfTerms)) assertClose(r.tapeTerms[k], v, tol * Math.max(1, Math.abs(v)), `term ${k}`);
  assert.deepEqual([...r.tapeGrads.keys()].sort(), [...r.tfGrads.keys()].sort(), 'the same parameters get gradients');
  for (const [name, g] of r.tfGrads) {
    const { num, den } = gradientDifference(g, r.tapeGrads.get(name)!);
    assert.ok(den > 0, `${name}: reference gradient is zero (the case tests nothing)`);
    assert.ok(Math.sqrt(num / den) < tol, `${name}: relative gradient difference ${Math.sqrt(num / den)}`);
  }
}

function paramsWith(spec: Record<string, number[]>, seed = 1): ParamSet {
  const p = new ParamSet();
  const r = new Rng(seed);
  for (const [name, shape] of Object.entries(spec)) {
    const v = p.add(name, shape, 'glorot', r);
    // Non-zero biases too, so their gradients are exercised.
    if (shape.length === 1) v.assign(tf.tensor1d(Array.from({ length: shape[0] }, () => 0.3 * r.normal())));
  }
  return p;
}

test('tape: a PSE*-shaped objective (MLPs, sample, diagonal KL, Bernoulli, classifier on the sigmoid) matches tfjs autodiff', () => {
  const params = new ParamSet();
  const r = new Rng(3);
  const K = 4;
  const enc = new Mlp(params, 'enc', [12, 9, 2 * K], r);
  const dec = new Mlp(params, 'dec', [K, 7, 12], r);
  const lab = new Mlp(params, 'lab', [5, 2 * K], r);
  const cls = new Mlp(params, 'cls', [12, 6, 3], r);
  const objective: AnyObjective = (o) => {
    const q = diagFromMoments(o, enc.run(o, o.input('x')), K);
    const p = diagFromMoments(o, lab.run(o, o.input('y')), K);
    const logits = dec.run(o, sampleTerm(o, q, o.normal(K)));
    const recon = o.bernoulliNll(logits, o.input('x'));
    const klv = meanKl(o, q, p);
    const onehot = o.host([o.rows, 3], [], (_v, ctx) => {
      const t = new Float32Array(ctx.rows * 3);
      ctx.labels.forEach((l, i) => (t[i * 3 + l] = 1));
      return t;
    });
    const ce = o.mean(o.softmaxCrossEntropy(cls.run(o, o.unary('sigmoid', logits)), onehot));
    return { total: o.add(o.add(recon, klv), o.affine(ce, 5)), terms: { recon, kl: klv, classifier: ce } };
  };
  assertAgree(bothEngines(params, objective, { rows: 6, pixels: 12, labelDim: 5 }));
});

test('tape: elementwise ops with broadcasting, reductions, slices, concatenation, gather and clip match tfjs', () => {
  const params = paramsWith({ a: [5, 4], b: [4], c: [5, 1], s: [1, 1], t: [3, 4] });
  const objective: AnyObjective = (o) => {
    const a = o.param('a');
    const b = o.param('b');
    const c = o.param('c');
    const s = o.param('s');
    const x = o.sliceCols(o.input('x'), 0, 4);
    let h = o.add(a, b); // [5,4] + [1,4]
    h = o.mul(h, c); // · [5,1]
    h = o.sub(h, o.unary('square', s)); // − [1,1]
    h = o.div(h, o.affine(o.unary('exp', x), 1, 0.5)); // ÷ data
    const pos = o.unary('softplus', h);
    const parts = [
      o.sum(o.unary('log', o.affine(pos, 1, 1e-3))),
      o.mean(o.unary('sqrt', o.affine(pos, 1, 0.1)), 0),
      o.sum(o.unary('sigmoid', h), 1),
      o.mean(o.unary('relu', h)),
      o.sum(o.unary('neg', o.clip(h, -0.5, 0.5))),
    ];
    const cols = o.concatCols([o.sliceCols(h, 1, 2), o.sliceCols(h, 0, 1)]);
    const rowsCat = o.concatRows([o.sliceRows(h, 2, 3), o.param('t')]);
    const idx = o.host([4, 1], [], () => Float32Array.from([5, 0, 5, 2]));
    const gathered = o.gatherRows(rowsCat, idx);
    const total = o.add(
      o.add(o.add(parts[0], o.sum(parts[1])), o.add(o.mean(parts[2]), parts[3])),
      o.add(o.add(parts[4], o.mean(o.unary('square', cols))), o.sum(o.mul(gathered, gathered))),
    );
    return { total, terms: { first: parts[0] } };
  };
  assertAgree(bothEngines(params, objective, { rows: 5, pixels: 6, labelDim: 2 }));
});

test('tape: matMul in every transposition and row-wise batchMatMul match tfjs', () => {
  const params = paramsWith({ a: [3, 4], b: [4, 5], bt: [5, 4], at: [4, 3], m: [3, 6], v: [3, 3], one: [1, 6] });
  const objective: AnyObjective = (o) => {
    const p = (n: string) => o.param(n);
    const r1 = o.matMul(p('a'), p('b'));
    const r2 = o.matMul(p('a'), p('bt'), false, true);
    const r3 = o.matMul(p('at'), p('b'), true, false);
    const r4 = o.matMul(p('at'), p('bt'), true, true);
    // 3 rows of 2×3 matrices times 3×1 vectors; a shared single-row left operand; transA.
    const b1 = o.batchMatMul(p('m'), p('v'), 2, 3, 1);
    const b2 = o.batchMatMul(p('one'), p('v'), 2, 3, 1);
    const b3 = o.batchMatMul(p('m'), o.sliceCols(p('m'), 0, 4), 3, 2, 2, true);
    const sq = (t: (typeof r1)) => o.sum(o.unary('square', t));
    const total = o.add(o.add(o.add(sq(r1), sq(r2)), o.add(sq(r3), sq(r4))), o.add(o.add(sq(b1), sq(b2)), sq(b3)));
    return { total, terms: {} };
  };
  assertAgree(bothEngines(params, objective, { rows: 3, pixels: 2, labelDim: 1 }));
});

test('tape: strided convolutions, max-pooling and a dense head match tfjs', () => {
  const params = new ParamSet();
  const r = new Rng(5);
  const conv = new ConvStack(params, 'enc', { height: 8, width: 6 }, [3, 4], 3, r);
  const head = new Mlp(params, 'head', [conv.outputSize / 4, 2], r);
  const objective: AnyObjective = (o) => {
    // 8×6 → 4×3×3 → 2×2×4 = 16 values; pool 2×2 → 1×1×4.
    const h = conv.run(o, o.input('x'));
    const pooled = o.maxPool2(h, 2, 2, 4);
    const out = head.run(o, pooled);
    return { total: o.mean(o.unary('square', o.affine(out, 1, -0.3))), terms: {} };
  };
  assertAgree(bothEngines(params, objective, { rows: 3, pixels: 48, labelDim: 1 }));
});

test('tape: transposed convolutions (a decoder: dense, then two upsampling layers) match tfjs', () => {
  const params = paramsWith({ 'fc.w': [5, 2 * 2 * 4], 'fc.b': [16], 'up1.w': [3 * 3 * 3, 4], 'up1.b': [3], 'up2.w': [4 * 4 * 1, 3], 'up2.b': [1] }, 6);
  // 2×2×4 → 4×4×3 (kernel 3, stride 2, pad 1) → 8×8×1 (kernel 4, stride 2, pad 1).
  const g1 = { height: 4, width: 4, channels: 3, kernel: 3, stride: 2, pad: 1 };
  const g2 = { height: 8, width: 8, channels: 1, kernel: 4, stride: 2, pad: 1 };
  const objective: AnyObjective = (o) => {
    const h = o.dense(o.sliceCols(o.input('x'), 0, 5), o.param('fc.w'), o.param('fc.b'), 'relu');
    const up = o.conv2dTranspose(h, o.param('up1.w'), o.param('up1.b'), g1, 'relu');
    const logits = o.conv2dTranspose(up, o.param('up2.w'), o.param('up2.b'), g2, 'linear');
    return { total: o.bernoulliNll(logits, o.input('x')), terms: {} };
  };
  assertAgree(bothEngines(params, objective, { rows: 3, pixels: 64, labelDim: 1 }));
  assertFiniteDifferences(params, (o) => {
    const up = o.conv2dTranspose(o.dense(o.sliceCols(o.input('x'), 0, 5), o.param('fc.w'), o.param('fc.b')), o.param('up1.w'), o.param('up1.b'), g1);
    return { total: o.bernoulliNll(o.conv2dTranspose(up, o.param('up2.w'), o.param('up2.b'), g2), o.input('x')), terms: {} };
  }, { rows: 3, pixels: 64, labelDim: 1 });
});

test('tape: full-covariance posteriors (moments, sample, KL against a fixed inverse factor) match tfjs', () => {
  const K = 3;
  const params = new ParamSet();
  const r = new Rng(9);
  const enc = new Mlp(params, 'enc', [5, fullMomentsWidth(K)], r);
  const dec = new Mlp(params, 'dec', [K, 5], r);
  // A fixed prior per class: inverse factor U (lower triangular) and log-determinant.
  const U = Float32Array.from([1.2, 0, 0, 0.3, 0.8, 0, -0.2, 0.1, 1.5, 0.9, 0, 0, 0, 1.1, 0, 0.4, 0.2, 0.7]);
  const logDet = Float32Array.from([0.4, -0.1]);
  const objective: AnyObjective = (o) => {
    const q = fullFromMoments(o, enc.run(o, o.input('x')), K);
    const cls = o.host([o.rows, 1], [], (_v, ctx) => Float32Array.from(ctx.labels, (l) => l % 2));
    const prior = {
      kind: 'inverse-full' as const,
      mean: o.gatherRows(o.constant(Float32Array.from([0.5, -0.5, 0.1, 0, 0.3, -0.2]), [2, K]), cls),
      inverseTril: o.gatherRows(o.constant(U, [2, K * K]), cls),
      logDet: o.gatherRows(o.constant(logDet, [2, 1]), cls),
    };
    const klv = meanKl(o, q, prior);
    const recon = o.bernoulliNll(dec.run(o, sampleTerm(o, q, o.normal(K))), o.input('x'));
    return { total: o.add(recon, klv), terms: { kl: klv, recon } };
  };
  assertAgree(bothEngines(params, objective, { rows: 4, pixels: 5, labelDim: 1 }));
});

test('tape: custom ops, stopGradient, schedules and parameters the loss does not reach', () => {
  const params = paramsWith({ w: [4, 3], frozen: [3, 3], unused: [2] });
  // y = x³ elementwise with its hand-written gradient.
  const cube = {
    name: 'cube',
    forward: (inputs: Float32Array[]) => ({
      value: inputs[0].map((v) => v * v * v),
      backward: (g: Float32Array) => [g.map((gi, i) => 3 * inputs[0][i] * inputs[0][i] * gi)],
    }),
  };
  const objective: AnyObjective = (o) => {
    const h = o.dense(o.input('x'), o.param('w'), null);
    const c = o.custom(cube, [h], o.shape(h));
    const fixed = o.matMul(h, o.stopGradient(o.param('frozen')));
    const weight = o.schedule((step) => Math.min(1, step / 10));
    const total = o.add(o.mul(weight, o.mean(c)), o.mean(o.unary('square', fixed)));
    return { total, terms: { weight } };
  };
  const r = bothEngines(params, objective, { rows: 3, pixels: 4, labelDim: 1 }, 4);
  assertAgree(r);
  assert.deepEqual(r.trained, ['w']);
  assertClose(r.tapeTerms.weight, 0.4, 1e-7);
});

test('tape: KL terms match the closed forms of distributions/kl.ts', () => {
  const K = 3;
  const rng = new Rng(2);
  const rows = 4;
  const mom = (w: number) => Float32Array.from({ length: rows * w }, () => 0.5 * rng.normal());
  const qm = mom(2 * K);
  const pm = mom(2 * K);
  const fm = mom(fullMomentsWidth(K));
  const ref = tf.tidy(() => {
    const split = (m: Float32Array) => {
      const t = tf.tensor2d(m, [rows, 2 * K]);
      return new DiagGaussian(tf.slice(t, [0, 0], [-1, K]) as tf.Tensor2D, tf.slice(t, [0, K], [-1, K]) as tf.Tensor2D);
    };
    const q = split(qm);
    const p = split(pm);
    const std = new DiagGaussian(tf.zeros([rows, K]), tf.zeros([rows, K]));
    return { dd: kl(q, p).dataSync().slice(), ds: kl(q, std).dataSync().slice() };
  });
  const o = tfOpsFor(rows);
  const q = diagFromMoments(o, o.constant(qm, [rows, 2 * K]), K);
  const p = diagFromMoments(o, o.constant(pm, [rows, 2 * K]), K);
  const dd = klTerm(o, q, p).dataSync();
  const ds = klTerm(o, q, { kind: 'standard', dim: K }).dataSync();
  for (let i = 0; i < rows; i++) {
    assertClose(dd[i], ref.dd[i], 1e-5, `diag‖diag row ${i}`);
    assertClose(ds[i], ref.ds[i], 1e-5, `diag‖N(0,I) row ${i}`);
  }
  // full ‖ inverse-full with U = I, log|Σ| = 0 is KL against N(0, I): ½(‖L‖² + ‖μ‖² − K − log|Σp|).
  const f = fullFromMoments(o, o.constant(fm, [rows, fullMomentsWidth(K)]), K);
  const eye = new Float32Array(K * K);
  for (let i = 0; i < K; i++) eye[i * K + i] = 1;
  const std = { kind: 'inverse-full' as const, mean: o.constant(new Float32Array(K), [1, K]), inverseTril: o.constant(eye, [1, K * K]), logDet: o.constant(new Float32Array(1), [1, 1]) };
  const fk = klTerm(o, f, std).dataSync();
  for (let i = 0; i < rows; i++) {
    const m = fm.subarray(i * fullMomentsWidth(K), (i + 1) * fullMomentsWidth(K));
    let l2 = 0;
    let mu2 = 0;
    let logDetP = 0;
    for (let j = 0; j < K; j++) {
      mu2 += m[j] ** 2;
      l2 += Math.exp(2 * m[K + j]);
      logDetP += 2 * m[K + j];
    }
    for (let j = 2 * K; j < m.length; j++) l2 += m[j] ** 2;
    assertClose(fk[i], 0.5 * (l2 + mu2 - K - logDetP), 1e-4, `full‖N(0,I) row ${i}`);
  }
});

function tfOpsFor(rows: number): TfOps {
  const x = tf.zeros([rows, 1]) as tf.Tensor2D;
  return new TfOps(new ParamSet(), { x, y: x, labels: new Int32Array(rows), rng: new Rng(0) }, 0);
}

test('tape: bad shapes are refused when the objective is recorded, naming the op', () => {
  const params = paramsWith({ w: [4, 3] });
  const flat = new FlatParams(kernels, params);
  const o = new TapeOps(kernels, flat, 2, { pixels: 5, labelDim: 1 });
  assert.throws(() => o.dense(o.input('x'), o.param('w'), null), /dense: input of width 5 into weights \[4,3\]/);
  assert.throws(() => o.add(o.param('w'), o.input('x')), /add: shapes \[4,3\] and \[2,5\] do not broadcast/);
  assert.throws(() => o.param('nope'), /no parameter nope/);
  assert.throws(() => o.compile({ total: o.param('w'), terms: {} }), /not a scalar/);
});

test('tape: the gradient of every op family matches central finite differences', () => {
  // Smooth objectives (no ReLU kinks or clipping edges near the sampled points).
  const params = paramsWith({ a: [5, 4], b: [4], c: [5, 1], s: [1, 1], m: [3, 6], v: [3, 3], w: [4, 3], t: [3, 4] }, 2);
  const objective: AnyObjective = (o) => {
    const x = o.sliceCols(o.input('x'), 0, 4);
    let h = o.add(o.param('a'), o.param('b'));
    h = o.mul(h, o.param('c'));
    h = o.sub(h, o.unary('square', o.param('s')));
    h = o.div(h, o.affine(o.unary('exp', x), 1, 0.5));
    const pos = o.unary('softplus', h);
    const smooth = o.add(o.mean(o.unary('log', o.affine(pos, 1, 0.1))), o.mean(o.unary('sqrt', o.affine(pos, 1, 0.1)), 0));
    const sig = o.mean(o.unary('sigmoid', o.matMul(h, o.param('w'))));
    const cat = o.concatRows([o.sliceRows(h, 1, 2), o.param('t')]);
    const gathered = o.gatherRows(cat, o.host([3, 1], [], () => Float32Array.from([4, 0, 2])));
    const bmm = o.batchMatMul(o.param('m'), o.param('v'), 2, 3, 1);
    const targets = o.host([5, 3], [], () => Float32Array.from({ length: 15 }, (_, i) => (i % 3 === 1 ? 1 : 0)));
    const ce = o.mean(o.softmaxCrossEntropy(o.sliceCols(h, 0, 3), targets));
    const bern = o.bernoulliNll(o.concatCols([h, o.sliceCols(h, 0, 1)]), o.sliceCols(o.input('x'), 0, 5));
    const total = [o.sum(smooth), sig, o.mean(o.unary('square', gathered)), o.mean(o.unary('square', bmm)), ce, o.affine(bern, 0.1)].reduce((acc, t) => o.add(acc, t));
    return { total, terms: {} };
  };
  assertFiniteDifferences(params, objective, { rows: 5, pixels: 6, labelDim: 2 });

  // A linear convolution, max-pooling and the full-covariance KL with a sample.
  const p2 = new ParamSet();
  const r = new Rng(8);
  const K = 3;
  const enc = new Mlp(p2, 'enc', [12, fullMomentsWidth(K)], r);
  p2.add('conv.w', [9, 2], 'glorot', r);
  p2.add('conv.b', [2], 'zeros', r);
  const conv: AnyObjective = (o) => {
    const g = { height: 6, width: 6, channels: 1, kernel: 3, stride: 2, pad: 1 };
    const features = o.maxPool2(o.conv2d(o.input('x'), o.param('conv.w'), o.param('conv.b'), g, 'linear'), 3, 3, 2);
    const q = fullFromMoments(o, enc.run(o, o.concatCols([features, o.sliceCols(o.input('x'), 0, 10)])), K);
    const eye = new Float32Array(K * K);
    for (let i = 0; i < K; i++) eye[i * K + i] = 1;
    const prior = { kind: 'inverse-full' as const, mean: o.constant(new Float32Array(K), [1, K]), inverseTril: o.constant(eye, [1, K * K]), logDet: o.constant(new Float32Array(1), [1, 1]) };
    const zs = sampleTerm(o, q, o.normal(K));
    return { total: o.add(meanKl(o, q, prior), o.mean(o.unary('square', zs))), terms: {} };
  };
  assertFiniteDifferences(p2, conv, { rows: 3, pixels: 36, labelDim: 1 });
});
