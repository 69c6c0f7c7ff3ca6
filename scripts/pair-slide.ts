// Where the posterior means of paired test images sit along the segment between their two one-hot
// label vectors (docs/results.md, issue 5). Prints one JSON line per run; with --out, also draws
// the histograms of all runs as one PNG.
// Usage: npx tsx scripts/pair-slide.ts RUN_DIR [RUN_DIR…] [--out FIG.png]
import type { TopLevelSpec } from 'vega-lite';
import { writePlotPng, PLOT_FONT } from '../src/analysis/plot.js';
import { initBackend } from '../src/core/backend.js';
import { loadDataset } from '../src/data/registry.js';
import { loadImageModel } from '../src/runs/runs.js';
import { encodeSplit } from '../src/runs/retrieval.js';
await initBackend();
const args = process.argv.slice(2);
const outAt = args.indexOf('--out');
const out = outAt >= 0 ? args[outAt + 1] : undefined;
const dirs = outAt >= 0 ? args.filter((_, i) => i !== outAt && i !== outAt + 1) : args;
if (dirs.length === 0) throw new Error('usage: npx tsx scripts/pair-slide.ts RUN_DIR [RUN_DIR…] [--out FIG.png] (informed runs on paired:fashion-mnist)');
const pds = await loadDataset('paired:fashion-mnist');
const n = 3000;
const sub = { ...pds.test, count: n, images: pds.test.images.subarray(0, n * 1568), labels: pds.test.labels.subarray(0, n), labels2: pds.test.labels2!.subarray(0, n) };
const bars: { run: string; t: number; share: number }[] = [];
for (const dir of dirs) {
  const { model } = loadImageModel(dir);
  const mu = encodeSplit(model, sub, 1568).mean;
  const K = 10;
  const hist = new Array(11).fill(0);
  let perp = 0, n2 = 0, ok2 = 0, okMid = 0;
  for (let i = 0; i < n; i++) {
    const a = sub.labels[i], b = sub.labels2[i];
    if (a === b) continue;
    n2++;
    const m = mu.subarray(i * K, (i + 1) * K);
    // t: projection onto w_b − w_a (one-hot), 0 at w_a, 1 at w_b
    const t = (m[b] - m[a] + 1) / 2;
    hist[Math.max(0, Math.min(10, Math.round(t * 10)))]++;
    let off = 0; for (let j = 0; j < K; j++) if (j !== a && j !== b) off += m[j] ** 2; perp += Math.sqrt(off);
    const order = Array.from(m, (v, j) => [v, j]).sort((x, y) => y[0] - x[0]).slice(0, 2).map((x) => x[1]);
    const hit = (order[0] === a && order[1] === b) || (order[0] === b && order[1] === a);
    if (hit) ok2++;
    if (t > 0.2 && t < 0.8) { okMid += hit ? 1 : 0; }
  }
  const mid = hist.slice(2, 9).reduce((x, y) => x + y, 0);
  console.log(JSON.stringify({ run: dir, images: n2, tHistogram0to1: hist.map((h) => +(h / n2).toFixed(3)), top2ByLargestCoordinates: ok2 / n2, shareWithTin0_2to0_8: mid / n2, top2AmongThose: okMid / mid, meanOffSegmentNorm: perp / n2 }));
  hist.forEach((h, i) => bars.push({ run: dir.split('/').pop()!, t: i / 10, share: h / n2 }));
}
if (out) {
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    config: { font: PLOT_FONT, background: 'white' },
    title: 'Posterior means along the pair: 0 = one label vector, 1 = the other',
    width: 420,
    height: 240,
    data: { values: bars },
    mark: 'bar',
    encoding: {
      x: { field: 't', type: 'ordinal', title: 'position along the segment (rounded to 0.1)' },
      xOffset: { field: 'run', type: 'nominal' },
      y: { field: 'share', type: 'quantitative', title: 'share of test images', axis: { format: '%' } },
      color: { field: 'run', type: 'nominal', title: 'run', legend: { labelLimit: 400 } },
    },
  } as TopLevelSpec;
  await writePlotPng(out, spec);
  console.log(`wrote ${out}`);
}
