/**
 * Trains the generation-accuracy judges shipped in data/judges/<name>-<datasetHash>/, so that a
 * first `probsem eval` loads a judge instead of training one for minutes.
 *
 * Usage: npx tsx scripts/train-judges.ts [fashion-mnist-subset] [fashion-mnist]   (default: both)
 *
 * The full `fashion-mnist` comes from Debian's dataset-fashion-mnist package. Training is seeded
 * (seed 0, 8 epochs: what getJudge would train), so a rerun on the same backend gives the same
 * judge; model.json records the test accuracy under metrics. A folder for an older version of the
 * same dataset (another hash) is removed: getJudge could never pick it.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { initBackend } from '../src/core/backend.js';
import { datasetHash } from '../src/data/dataset.js';
import { SHIPPED_DATA_DIR, loadDataset } from '../src/data/registry.js';
import { SHIPPED_JUDGES_DIR, trainJudge } from '../src/eval/judge.js';

const NAMES = ['fashion-mnist-subset', 'fashion-mnist'];
const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : NAMES;
for (const n of names) if (!NAMES.includes(n)) throw new Error(`unknown judge '${n}': one of ${NAMES.join(', ')}`);

await initBackend();
for (const name of names) {
  const ds = await loadDataset(name, { onNotice: (m) => console.error(`note: ${m}`) });
  // The registry falls back to the subset when the full dataset is missing; that is not this judge.
  if (ds.name !== name) throw new Error(`${name} is not installed (apt-get install dataset-fashion-mnist)`);
  const hash = datasetHash(ds);
  const dir = join(SHIPPED_JUDGES_DIR, `${name}-${hash}`);
  const stale = existsSync(SHIPPED_JUDGES_DIR) ? readdirSync(SHIPPED_JUDGES_DIR).filter((d) => d.startsWith(`${name}-`) && /^[0-9a-f]{16}$/.test(d.slice(name.length + 1))) : [];
  for (const d of stale) if (join(SHIPPED_JUDGES_DIR, d) !== dir) rmSync(join(SHIPPED_JUDGES_DIR, d), { recursive: true });
  // Recorded relative to the repository when it lies inside it (no build machine's paths in the package).
  const source = ds.source.startsWith(SHIPPED_DATA_DIR) ? join('data', relative(SHIPPED_DATA_DIR, ds.source)) : ds.source;
  console.error(`training the judge for ${name} (${ds.train.count} images, hash ${hash})`);
  let last = 0;
  const j = await trainJudge({ ...ds, source }, dir, {
    onProgress: (p) => {
      if (p.step - last >= 200 || p.step === p.steps) {
        last = p.step;
        console.error(`  step ${p.step}/${p.steps}  ${p.msPerStep.toFixed(0)} ms/step  loss ${p.terms.loss?.toFixed(3)}`);
      }
    },
  }, hash);
  console.log(`${name}: test accuracy ${(100 * j.testAccuracy).toFixed(2)}% → ${relative(process.cwd(), dir)}`);
}
