/** The generation-accuracy judge: shipped judges are used as they are, keyed by the data's content; anything else is trained once. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setupBackend } from './helpers.js';
import { type Dataset, datasetHash } from '../src/data/dataset.js';
import { DEBIAN_FASHION_MNIST_DIR, SHIPPED_SUBSET_DIR, loadDataset } from '../src/data/registry.js';
import { SHIPPED_JUDGES_DIR, findJudge, getJudge, shippedJudgeDir } from '../src/eval/judge.js';
import { classifierAccuracy } from '../src/eval/metrics.js';
import { readModelMeta } from '../src/models/persist.js';

let subset: Dataset;
before(async () => {
  await setupBackend();
  subset = await loadDataset('fashion-mnist-subset');
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-judge-'));
/** Every file under the shipped folder with its size and mtime, to show nothing there is written. */
const snapshotShipped = () =>
  readdirSync(SHIPPED_JUDGES_DIR, { recursive: true, encoding: 'utf8' }).map((f) => {
    const st = statSync(join(SHIPPED_JUDGES_DIR, f));
    return `${f} ${st.size} ${st.mtimeMs}`;
  });
/** The subset with one test pixel changed: the same name and shape, other content. */
function withOnePixelChanged(ds: Dataset): Dataset {
  const images = ds.test.images.slice();
  images[100] ^= 0xff;
  return { ...ds, test: { ...ds.test, images } };
}

test('the subset uses its shipped judge: no training, nothing written, and the recorded accuracy is what it scores', async () => {
  const cacheDir = tmp();
  const before = snapshotShipped();
  const notices: string[] = [];
  let trainedSteps = 0;
  const j = await getJudge(subset, { cacheDir, onNotice: (m) => notices.push(m), onProgress: () => trainedSteps++ });
  assert.equal(j.origin, 'shipped');
  assert.equal(j.dir, join(SHIPPED_JUDGES_DIR, `fashion-mnist-subset-${datasetHash(subset)}`));
  assert.deepEqual(notices, []);
  assert.equal(trainedSteps, 0);
  assert.deepEqual(readdirSync(cacheDir), [], 'the user cache is untouched');
  assert.deepEqual(snapshotShipped(), before, 'the shipped folder is only read');

  const meta = readModelMeta(j.dir);
  assert.equal(meta.training?.engine, 'fast', 'made on the tape engine');
  assert.equal(meta.training?.seed, 0);
  assert.ok(j.testAccuracy > 0.85, `test accuracy ${j.testAccuracy}`);
  assert.equal(classifierAccuracy(j.classifier, subset.test, 784), j.testAccuracy, 'the weights score the recorded accuracy');
  j.classifier.params.dispose();
});

test('the shipped judge is found by content: a copy of the subset, with its class names, loaded as a directory finds it', async () => {
  const dir = tmp();
  for (const f of readdirSync(SHIPPED_SUBSET_DIR).filter((f) => f.endsWith('.gz'))) copyFileSync(join(SHIPPED_SUBSET_DIR, f), join(dir, f));
  writeFileSync(join(dir, 'classes.txt'), subset.classNames.join('\n') + '\n');
  const byPath = await loadDataset(dir);
  assert.equal(byPath.name, dir);
  assert.deepEqual(findJudge(byPath, { cacheDir: tmp() }), { dir: shippedJudgeDir(subset), origin: 'shipped' });
});

test('a dataset whose content hash differs never gets the shipped judge, even under its name', () => {
  const changed = withOnePixelChanged(subset);
  assert.equal(changed.name, subset.name);
  assert.notEqual(datasetHash(changed), datasetHash(subset));
  assert.equal(shippedJudgeDir(changed), null);
  assert.equal(findJudge(changed, { cacheDir: tmp() }), null, 'it would be trained');

  // A shipped folder renamed to the other hash is refused: model.json's own hash must agree.
  const root = tmp();
  const fake = join(root, `fashion-mnist-subset-${datasetHash(changed)}`);
  mkdirSync(fake);
  writeFileSync(join(fake, 'model.json'), readFileSync(join(shippedJudgeDir(subset)!, 'model.json')));
  assert.equal(shippedJudgeDir(changed, root), null);
});

test('without a shipped judge one is trained on the fast engine into the cache, with a notice first, then reused', async () => {
  // A 200-image slice: other content than any shipped judge, and two steps to train.
  const small: Dataset = { ...subset, train: { images: subset.train.images.subarray(0, 200 * 784), labels: subset.train.labels.subarray(0, 200), count: 200 } };
  const cacheDir = tmp();
  const notices: [string, string | undefined][] = [];
  let progress = 0;
  const j = await getJudge(small, { cacheDir, epochs: 1, onNotice: (m, kind) => notices.push([m, kind]), onProgress: () => progress++ });
  assert.equal(j.origin, 'trained');
  assert.equal(j.dir, join(cacheDir, 'judges', `fashion-mnist-subset-${datasetHash(small)}`));
  assert.equal(notices.length, 1);
  assert.equal(notices[0][1], 'judge-training');
  assert.match(notices[0][0], /training the judge classifier for fashion-mnist-subset first \(1 epochs over 200 images/);
  assert.ok(progress > 0);
  const meta = readModelMeta(j.dir);
  assert.equal(meta.training?.engine, 'fast');
  assert.equal(meta.training?.steps, 2);
  assert.equal(meta.dataset?.hash, datasetHash(small));
  assert.equal(meta.metrics?.testAccuracy, j.testAccuracy);
  j.classifier.params.dispose();

  notices.length = 0;
  const again = await getJudge(small, { cacheDir, onNotice: (m, kind) => notices.push([m, kind]) });
  assert.equal(again.origin, 'cache');
  assert.equal(again.dir, j.dir);
  assert.deepEqual(notices, []);
  again.classifier.params.dispose();
  // shippedDir: null turns the shipped judges off, so the subset itself would be trained.
  assert.equal(findJudge(subset, { cacheDir, shippedDir: null }), null);
});

test('the full Fashion-MNIST has a shipped judge', { skip: !existsSync(DEBIAN_FASHION_MNIST_DIR) && 'dataset-fashion-mnist is not installed' }, async () => {
  const full = await loadDataset('fashion-mnist');
  assert.equal(full.train.count, 60000);
  const found = findJudge(full, { cacheDir: tmp() });
  assert.equal(found?.origin, 'shipped');
  const meta = readModelMeta(found!.dir);
  assert.equal(meta.dataset?.hash, datasetHash(full));
  assert.equal(meta.training?.engine, 'fast');
  assert.ok(Number(meta.metrics?.testAccuracy) > 0.9, `test accuracy ${meta.metrics?.testAccuracy}`);
});
