// Top-2 accuracy on paired Fashion-MNIST test images of the single-image judge CNN applied to each
// half on its own (docs/results.md, issue 5). Usage: npx tsx scripts/pair-ceiling.ts
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/core/backend.js';
import { loadDataset } from '../src/data/registry.js';
import { getJudge } from '../src/eval/judge.js';
await initBackend();
const ds = await loadDataset('fashion-mnist');
const pds = await loadDataset('paired:fashion-mnist');
const j = await getJudge(ds, {});
const clf = j.classifier;
const n = pds.test.count;
let both = 0, left = 0, right = 0, inSet = 0;
for (let s = 0; s < n; s += 500) {
  const m = Math.min(500, n - s);
  const L = new Float32Array(m * 784), R = new Float32Array(m * 784);
  for (let i = 0; i < m; i++) for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) {
    L[i * 784 + r * 28 + c] = pds.test.images[(s + i) * 1568 + r * 56 + c] / 255;
    R[i * 784 + r * 28 + c] = pds.test.images[(s + i) * 1568 + r * 56 + 28 + c] / 255;
  }
  const pl = tf.tidy(() => tf.argMax(clf.logits(tf.tensor2d(L, [m, 784])), 1)).dataSync();
  const pr = tf.tidy(() => tf.argMax(clf.logits(tf.tensor2d(R, [m, 784])), 1)).dataSync();
  for (let i = 0; i < m; i++) {
    const a = pds.test.labels[s + i], b = pds.test.labels2![s + i];
    if (pl[i] === a) left++;
    if (pr[i] === b) right++;
    const ok = (pl[i] === a && pr[i] === b) || (pl[i] === b && pr[i] === a);
    if (ok) both++;
  }
}
console.log(JSON.stringify({ n, judgeSingleTest: j.testAccuracy, leftAcc: left / n, rightAcc: right / n, top2: both / n }));
