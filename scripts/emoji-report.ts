/**
 * Cross-style figures of an emoji run (docs/results.md): for each test picture (one style), the
 * training pictures (other styles) ranked by KL(q_test ‖ q_train); top-1 and top-10 hit rates of
 * the same emoji, and of the same subgroup. Also the subgroup accuracy balanced over classes
 * beside the plain one, since a few subgroups (country flags: 259 of 1,906) dominate the test split.
 *
 *   npx tsx scripts/emoji-report.ts --run DIR [--json OUT]
 */
import { parseArgs } from 'node:util';
import { writeFileAtomicSync } from '../src/core/files.js';
import { initBackend } from '../src/core/backend.js';
import { imagesToFloat, pixelsOf } from '../src/data/dataset.js';
import type { EmojiDataset } from '../src/data/emoji.js';
import { loadDataset } from '../src/data/registry.js';
import { KlIndex } from '../src/index/kl-index.js';
import { splitLabelScores } from '../src/eval/metrics.js';
import { classLabelInputs, loadImageModel, runDatasetName } from '../src/runs/runs.js';
import { encodeSplitGaussians, imageQuery } from '../src/runs/retrieval.js';

const { values: v } = parseArgs({ options: { run: { type: 'string' }, json: { type: 'string' } } });
if (!v.run) throw new Error('--run DIR is required');
await initBackend('wasm');
const { model, meta } = loadImageModel(v.run);
const ds = (await loadDataset(runDatasetName(meta, undefined))) as EmojiDataset;
if (!ds.emoji) throw new Error(`${v.run} was not trained on the emoji dataset`);
const pixels = pixelsOf(ds);

const train = encodeSplitGaussians(model, ds.train, pixels);
const index = KlIndex.build(train);
let emoji1 = 0;
let emoji10 = 0;
let sub1 = 0;
let sub10 = 0;
let withTwin = 0;
const trainCodes = new Set(ds.emoji.train.hexcode);
for (let i = 0; i < ds.test.count; i++) {
  const hits = index.search(imageQuery(model, imagesToFloat(ds.test, [i], pixels), pixels), 10);
  const code = ds.emoji.test.hexcode[i];
  const cls = ds.test.labels[i];
  if (trainCodes.has(code)) {
    withTwin++;
    if (ds.emoji.train.hexcode[hits[0].id] === code) emoji1++;
    if (hits.some((h) => ds.emoji.train.hexcode[h.id] === code)) emoji10++;
  }
  if (ds.train.labels[hits[0].id] === cls) sub1++;
  if (hits.some((h) => ds.train.labels[h.id] === cls)) sub10++;
}

// Subgroup annotation, plain and balanced over the classes present in the test split.
const inputs = classLabelInputs(meta);
const scores = splitLabelScores(model, ds.test, pixels, inputs);
inputs.dispose();
const k = ds.classNames.length;
const correct = new Float64Array(k);
const total = new Float64Array(k);
for (let i = 0; i < ds.test.count; i++) {
  let best = 0;
  for (let c = 1; c < k; c++) if (scores[i * k + c] > scores[i * k + best]) best = c;
  total[ds.test.labels[i]]++;
  if (best === ds.test.labels[i]) correct[ds.test.labels[i]]++;
}
let balanced = 0;
let present = 0;
for (let c = 0; c < k; c++) if (total[c] > 0) {
  balanced += correct[c] / total[c];
  present++;
}
const report = {
  run: v.run,
  dataset: ds.name,
  testImages: ds.test.count,
  annotationAccuracy: correct.reduce((a, b) => a + b, 0) / ds.test.count,
  balancedAccuracy: balanced / present,
  sameEmoji: { queries: withTwin, top1: emoji1 / withTwin, top10: emoji10 / withTwin },
  sameSubgroup: { top1: sub1 / ds.test.count, top10: sub10 / ds.test.count },
};
const text = JSON.stringify(report, null, 2);
if (v.json) writeFileAtomicSync(v.json, text + '\n');
process.stdout.write(text + '\n');
