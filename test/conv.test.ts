/** Strided im2col convolutions (nn/conv.ts) and convolutional encoders on the encoder–decoder models. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { type ConvGeometry, ConvStack, col2im, convOutputShape, im2col } from '../src/nn/conv.js';
import { TfOps, conv2dOp } from '../src/ops/tfjs.js';

const conv2dRelu = (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, g: ConvGeometry, inputGrad: boolean) => conv2dOp(x, w, b, g, inputGrad, 'relu');
import { ParamSet } from '../src/nn/params.js';
import { loadDataset } from '../src/data/registry.js';
import { createModel } from '../src/models/registry.js';
import type { Informed } from '../src/models/informed.js';
import { loadModel } from '../src/models/persist.js';
import { evaluateRun, trainRun } from '../src/runs/runs.js';
import { oneHotLabelInputs } from '../src/eval/metrics.js';

before(async () => {
  await setupBackend();
});

const randn = (rng: Rng, n: number) => rng.fillNormal(new Float32Array(n));
const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];

/**
 * The same convolution from stock differentiable ops: zero padding, a stride-1 convolution as one
 * slice and product per window offset, then the strided positions picked one by one.
 */
function referenceConv(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, g: ConvGeometry): tf.Tensor2D {
  const n = x.shape[0];
  const [oh, ow] = convOutputShape(g);
  const f = w.shape[1];
  const padded = tf.pad(tf.reshape(x, [n, g.height, g.width, g.channels]), [[0, 0], [g.pad, g.pad], [g.pad, g.pad], [0, 0]]) as tf.Tensor4D;
  const fh = padded.shape[1] - g.kernel + 1;
  const fw = padded.shape[2] - g.kernel + 1;
  let full: tf.Tensor = tf.zeros([n * fh * fw, f]);
  for (let ky = 0; ky < g.kernel; ky++) {
    for (let kx = 0; kx < g.kernel; kx++) {
      const window = tf.reshape(tf.slice(padded, [0, ky, kx, 0], [n, fh, fw, g.channels]), [n * fh * fw, g.channels]) as tf.Tensor2D;
      const wk = tf.slice(w, [(ky * g.kernel + kx) * g.channels, 0], [g.channels, f]) as tf.Tensor2D;
      full = tf.add(full, tf.matMul(window, wk));
    }
  }
  const grid = tf.reshape(full, [n, fh, fw, f]);
  const picked: tf.Tensor[] = [];
  for (let y = 0; y < oh; y++) for (let xx = 0; xx < ow; xx++) picked.push(tf.slice(grid, [0, y * g.stride, xx * g.stride, 0], [n, 1, 1, f]));
  return tf.reshape(tf.relu(tf.add(tf.concat(picked, 1), b)), [n, oh * ow * f]) as tf.Tensor2D;
}

test('im2col lays out k×k patches row by row, (ky, kx, channel) within a patch, zeros outside the image', () => {
  // One 3×3 image with values 0..8, k = 2, stride 1: 4 patches of 4 values.
  const valid = im2col(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8]), 1, { height: 3, width: 3, channels: 1, kernel: 2, stride: 1, pad: 0 });
  assert.deepEqual(Array.from(valid), [0, 1, 3, 4, 1, 2, 4, 5, 3, 4, 6, 7, 4, 5, 7, 8]);
  // Two channels (pixel p holds 10p and 10p + 1), k = 3, stride 2, padding 1 on a 3×3 image: 2×2 outputs.
  const src = Float32Array.from({ length: 18 }, (_, i) => 10 * Math.floor(i / 2) + (i % 2));
  const padded = im2col(src, 1, { height: 3, width: 3, channels: 2, kernel: 3, stride: 2, pad: 1 });
  const px = (p: number | null) => (p === null ? [0, 0] : [10 * p, 10 * p + 1]);
  const patch = (cells: (number | null)[]) => cells.flatMap(px);
  assert.deepEqual(Array.from(padded), [
    ...patch([null, null, null, null, 0, 1, null, 3, 4]),
    ...patch([null, null, null, 1, 2, null, 4, 5, null]),
    ...patch([null, 3, 4, null, 6, 7, null, null, null]),
    ...patch([4, 5, null, 7, 8, null, null, null, null]),
  ]);
});

test('im2col and col2im are adjoint (⟨im2col x, y⟩ = ⟨x, col2im y⟩) and give the documented output shape', () => {
  const rng = new Rng(1);
  for (const g of [
    { height: 7, width: 9, channels: 3, kernel: 3, stride: 2, pad: 1 },
    { height: 6, width: 6, channels: 1, kernel: 5, stride: 1, pad: 0 },
    { height: 5, width: 8, channels: 2, kernel: 5, stride: 2, pad: 2 },
  ]) {
    const [oh, ow] = convOutputShape(g);
    assert.deepEqual([oh, ow], [Math.floor((g.height + 2 * g.pad - g.kernel) / g.stride) + 1, Math.floor((g.width + 2 * g.pad - g.kernel) / g.stride) + 1]);
    const n = 2;
    const x = randn(rng, n * g.height * g.width * g.channels);
    const cols = im2col(x, n, g);
    assert.equal(cols.length, n * oh * ow * g.kernel * g.kernel * g.channels);
    const y = randn(rng, cols.length);
    const back = col2im(y, n, g);
    let lhs = 0;
    let rhs = 0;
    for (let i = 0; i < cols.length; i++) lhs += cols[i] * y[i];
    for (let i = 0; i < x.length; i++) rhs += x[i] * back[i];
    assert.ok(Math.abs(lhs - rhs) < 1e-3 * (1 + Math.abs(lhs)), `${lhs} vs ${rhs}`);
  }
  assert.throws(() => col2im(new Float32Array(5), 1, { height: 4, width: 4, channels: 1, kernel: 3, stride: 1, pad: 0 }), /col2im: 5 values/);
});

test('the im2col convolution op (ReLU) equals a convolution built from stock ops, in value and in every gradient', () => {
  const rng = new Rng(2);
  const g: ConvGeometry = { height: 6, width: 10, channels: 3, kernel: 5, stride: 2, pad: 2 };
  const [oh, ow] = convOutputShape(g);
  const n = 3;
  const f = 4;
  const x = tf.tensor2d(randn(rng, n * 6 * 10 * 3), [n, 180]);
  const w = tf.tensor2d(randn(rng, 75 * f), [75, f]);
  const b = tf.tensor1d(randn(rng, f));
  const weight = tf.tensor2d(randn(rng, n * oh * ow * f), [n, oh * ow * f]);
  const ours = conv2dRelu(x, w, b, g, true);
  const ref = referenceConv(x, w, b, g);
  assert.ok(ours.dataSync().some((v) => v > 0.5), 'a non-trivial output');
  assert.ok(maxDiff(ours, ref) < 1e-4, `values differ by ${maxDiff(ours, ref)}`);
  const loss = (conv: typeof referenceConv) => (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(tf.mul(conv(xx as tf.Tensor2D, ww as tf.Tensor2D, bb as tf.Tensor1D, g), weight)) as tf.Scalar;
  const gOurs = tf.grads(loss((xx, ww, bb, gg) => conv2dRelu(xx, ww, bb, gg, true)))([x, w, b]);
  const gRef = tf.grads(loss(referenceConv))([x, w, b]);
  gOurs.forEach((gr, i) => {
    assert.ok(tf.max(tf.abs(gr)).dataSync()[0] > 0, `gradient ${i} is not all zero`);
    assert.ok(maxDiff(gr, gRef[i]) < 1e-3, `gradient ${i} differs by ${maxDiff(gr, gRef[i])}`);
  });
  // No input gradient asked for: zeros, the weight gradients unchanged.
  const gNoInput = tf.grads(loss((xx, ww, bb, gg) => conv2dRelu(xx, ww, bb, gg, false)))([x, w, b]);
  assert.equal(tf.max(tf.abs(gNoInput[0])).dataSync()[0], 0);
  assert.ok(maxDiff(gNoInput[1], gRef[1]) < 1e-3);
  assert.throws(() => conv2dRelu(tf.zeros([1, 10]) as tf.Tensor2D, w, b, g, true), /rows of 10 values, expected 6×10×3/);
});

test('ConvStack: stride-2 "same" layers halve the image; the im2col path (under a tape) equals the backend conv2d (without); bad shapes refused', () => {
  const ps = new ParamSet();
  const stack = new ConvStack(ps, 'enc', { height: 28, width: 56 }, [4, 6], 5, new Rng(3));
  assert.equal(stack.outputSize, 7 * 14 * 6);
  assert.deepEqual(ps.entries().map(([name, v]) => `${name}:${v.shape}`), ['enc.conv0.w:25,4', 'enc.conv0.b:4', 'enc.conv1.w:100,6', 'enc.conv1.b:6']);
  const x = tf.tensor2d(new Rng(4).fillUniform(new Float32Array(2 * 28 * 56), 0, 1), [2, 28 * 56]);
  // Training runs the stack in an objective (im2col products); evaluation the backend's conv2d.
  const a = stack.run(new TfOps(ps, { x, y: x, labels: new Int32Array(2), rng: new Rng(0) }, 0), x) as tf.Tensor2D;
  const b = stack.apply(x);
  assert.deepEqual(a.shape, [2, 7 * 14 * 6]);
  assert.ok(a.dataSync().some((v) => v > 0));
  assert.ok(maxDiff(a, b) < 1e-4, `training and inference paths differ by ${maxDiff(a, b)}`);
  assert.throws(() => new ConvStack(new ParamSet(), 'e', { height: 28, width: 28 }, [4], 4, new Rng(1)), /odd size, got 4/);
  assert.throws(() => new ConvStack(new ParamSet(), 'e', { height: 28, width: 28 }, [], 5, new Rng(1)), /at least one layer/);
});

test('a convolutional informed encoder: config checks, the tape engine, save/load round trip, and a real run that learns', async () => {
  const tiny = { inputDim: 784, numClasses: 10, latent: 10, encoderHidden: [64], decoderHidden: [64], encoderConv: [8, 16], imageHeight: 28 };
  const m = createModel('informed', tiny, 1) as Informed;
  assert.ok(m.params.entries().some(([name]) => name === 'encoder.conv1.w'));
  assert.throws(() => createModel('informed', { ...tiny, imageHeight: undefined }, 1), /needs imageHeight/);
  assert.throws(() => createModel('informed', { ...tiny, imageHeight: 27 }, 1), /needs imageHeight, a divisor of the 784 pixels/);
  assert.throws(() => createModel('informed', { ...tiny, encoderKernel: 4 }, 1), /encoderKernel must be odd/);
  // CVAE's encoder reads x ⊕ l through an MLP: it has no encoder convolutions to configure.
  assert.throws(() => createModel('cvae', { ...tiny, latent: 10 }, 1), /encoderConv|Unrecognized key/);

  const dir = mkdtempSync(join(tmpdir(), 'probsem-conv-'));
  const ds = await loadDataset('fashion-mnist-subset');
  const r = await trainRun({
    model: 'informed', dataset: 'fashion-mnist-subset', latent: 10, steps: 300, batchSize: 64, lr: 2e-3, seed: 2, out: dir,
    modelOptions: { encoderConv: [8, 16], encoderHidden: [64], decoderHidden: [128], lambda: 1e-3 },
  });
  assert.equal(r.meta.training?.engine, 'fast', 'a convolutional encoder trains on the tape');
  assert.equal((r.meta.config as { imageHeight?: number }).imageHeight, 28, 'the image height comes from the dataset');
  const { model } = loadModel(dir);
  const x = tf.tensor2d(Float32Array.from(ds.test.images.subarray(0, 3 * 784), (v) => v / 255), [3, 784]);
  const labels = oneHotLabelInputs(10);
  assert.deepEqual((model as Informed).scoreLabels(x, labels).arraySync(), (r.model as Informed).scoreLabels(x, labels).arraySync());
  const rep = await evaluateRun(dir, { skipGeneration: true });
  // 300 steps on the 6,000-image subset give 0.84 (seed 2); the MLP-encoder test above this one's
  // sibling in informed.test.ts asks 0.6 of an MLP after as many steps.
  assert.ok(rep.annotationAccuracy! > 0.75, `annotation ${rep.annotationAccuracy}`);
  tf.dispose([x, labels]);
});
