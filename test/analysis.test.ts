/** Projections, plots (Vega-Lite → SVG → PNG) and the figure commands: plot latent, plot curves, interpolate. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { setupBackend } from './helpers.js';
import { pca, project2d, projectionMethod } from '../src/analysis/projection.js';
import { curvesSpec, renderPng, scatterPanelsSpec, scatterSpec, specToSvg, type ScatterPoint } from '../src/analysis/plot.js';
import { logTerms, parseTrainLog } from '../src/analysis/train-log.js';
import { interpolationImages, latentMap } from '../src/analysis/figures.js';
import { interpolateCommand, plotCommand } from '../src/cli/commands/plot.js';
import { createModel } from '../src/models/registry.js';
import type { ImageModel } from '../src/models/base.js';
import type { ModelFile } from '../src/models/persist.js';
import { loadDataset } from '../src/data/registry.js';
import { pixelsOf } from '../src/data/dataset.js';
import { decodeInterpolation, encodeSplit, queryDistribution } from '../src/runs/retrieval.js';
import { loadImageModel, trainRun } from '../src/runs/runs.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-analysis-'));
let runDir: string;

/** The trained tiny run (PSE*, latent 4, 20 steps on the shipped subset) the command tests share. */
before(async () => {
  await setupBackend();
  runDir = join(tmp(), 'run');
  await trainRun({
    model: 'pse-star',
    dataset: 'fashion-mnist-subset',
    latent: 4,
    steps: 20,
    batchSize: 50,
    lr: 1e-3,
    seed: 0,
    out: runDir,
    modelOptions: { encoderHidden: [32], decoderHidden: [32], classifierHidden: [16] },
  });
});

const readPng = (file: string | Buffer) => PNG.sync.read(Buffer.isBuffer(file) ? file : readFileSync(file));

/** Pixels of exactly this colour (opaque). */
function countColour(png: PNG, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < png.width * png.height; i++) {
    if (png.data[i * 4] === r && png.data[i * 4 + 1] === g && png.data[i * 4 + 2] === b && png.data[i * 4 + 3] === 255) n++;
  }
  return n;
}

function countNonWhite(png: PNG): number {
  let n = 0;
  for (let i = 0; i < png.width * png.height; i++) if (png.data[i * 4] < 250 || png.data[i * 4 + 1] < 250 || png.data[i * 4 + 2] < 250) n++;
  return n;
}

const svgSize = (svg: string) => {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  assert.ok(m, 'the SVG declares its size');
  return [Number(m[1]), Number(m[2])];
};

test('pca: variances and their share; project2d titles PCA axes with it and runs t-SNE in a worker', async () => {
  // Three clusters in 5-D, far apart along dimension 0 (spread 10) and 1 (spread 3), tight elsewhere.
  const n = 60;
  const d = 5;
  const data = new Float64Array(n * d);
  const centres = [
    [-10, 0],
    [0, 3],
    [10, 0],
  ];
  for (let i = 0; i < n; i++) {
    const c = centres[i % 3];
    for (let j = 0; j < d; j++) data[i * d + j] = (j < 2 ? c[j] : 0) + 0.1 * Math.sin(i * 7.3 + j * 1.9);
  }
  const p = pca(data, n, d, 2);
  assert.equal(p.variances.length, 2);
  assert.ok(p.variances[0] >= p.variances[1]);
  assert.ok(p.variances[0] / p.totalVariance > 0.9, `PC1 carries most of the variance: ${p.variances[0] / p.totalVariance}`);
  assert.ok(Math.abs(p.components[0][0]) > 0.99, 'PC1 is the axis the clusters spread along');
  const mapped = await project2d(data, n, d, 'pca');
  assert.match(mapped.axes[0], /^PC1 \(9\d % of variance\)$/);
  const ts = await project2d(data, n, d, 'tsne', 1);
  assert.deepEqual(ts.axes, ['t-SNE 1', 't-SNE 2']);
  assert.equal(ts.coords.length, n * 2);
  // t-SNE keeps the clusters apart: each point's nearest neighbour is in its own cluster.
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestD = Infinity;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const dd = (ts.coords[i * 2] - ts.coords[j * 2]) ** 2 + (ts.coords[i * 2 + 1] - ts.coords[j * 2 + 1]) ** 2;
      if (dd < bestD) [best, bestD] = [j, dd];
    }
    assert.equal(best % 3, i % 3, `point ${i}'s nearest neighbour ${best} is in its cluster`);
  }
  assert.throws(() => projectionMethod('isomap'), /unknown projection method 'isomap': choose one of pca, tsne, umap/);
  assert.equal(projectionMethod('TSNE'), 'tsne');
});

test('scatter plot: a PNG of the SVG size × scale, with the points drawn in a distinct colour per label', async () => {
  const points: ScatterPoint[] = [];
  for (let i = 0; i < 40; i++) points.push({ x: i % 10, y: Math.floor(i / 10), label: 'a' }, { x: i % 10, y: 10 + Math.floor(i / 10), label: 'b' });
  const spec = scatterSpec({ title: 'two labels', points, axes: ['u', 'v'] }, ['a', 'b'], { width: 200, height: 200, pointSize: 200, opacity: 1 });
  const svg = await specToSvg(spec);
  assert.match(svg, /two labels/);
  const [w, h] = svgSize(svg);
  assert.ok(w > 200 && h > 200, `the figure holds the 200×200 plot, axes and legend: ${w}×${h}`);
  for (const scale of [1, 2]) {
    const png = readPng(await renderPng(spec, { scale }));
    assert.equal(png.width, Math.round(w * scale));
    assert.equal(png.height, Math.round(h * scale));
    assert.ok(countNonWhite(png) > 0.05 * png.width * png.height, 'something is drawn on the white background');
    // tableau10's first two colours; the legend's two symbols alone cover far fewer pixels.
    const blue = countColour(png, '#4c78a8');
    const orange = countColour(png, '#f58518');
    assert.ok(blue > 1500 * scale * scale && orange > 1500 * scale * scale, `label a is blue (${blue} px), label b orange (${orange} px)`);
  }
  // A panel of two maps is one figure about twice as wide, with one shared legend.
  const panel = scatterPanelsSpec(
    [
      { title: 'left', points },
      { title: 'right', points: points.filter((p) => p.label === 'b') },
    ],
    ['a', 'b'],
    { width: 200, height: 200 },
  );
  const psvg = await specToSvg(panel);
  assert.match(psvg, /left/);
  assert.match(psvg, /right/);
  assert.ok(svgSize(psvg)[0] > w + 200, 'the panel is wider than one map');
  assert.throws(() => scatterSpec({ title: 't', points: [{ x: 0, y: 0, label: 'c' }] }, ['a', 'b']), /labelled 'c', which is not one of the classes/);
});

test('training curves: one panel per term from a hand-written log; plot curves writes DIR/curves.png', async () => {
  const dir = tmp();
  const lines = [
    { step: 50, msPerStep: 80, loss: 400, recon: 340, kl: 6 },
    { step: 100, msPerStep: 80, loss: 330, recon: 285, kl: 8.5 },
    { step: 120, skipped: 'non-finite loss' },
    { step: 150, msPerStep: 75, loss: 300, recon: 268, kl: 9 },
  ];
  writeFileSync(join(dir, 'train.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n\n');
  const records = parseTrainLog(readFileSync(join(dir, 'train.jsonl'), 'utf8'), 'log');
  assert.equal(records.length, 3, 'the skipped-batch line and blank lines are left out');
  assert.deepEqual(logTerms(records), ['loss', 'recon', 'kl']);
  assert.throws(() => parseTrainLog('{"step": 1}\nnot json\n', 'x.jsonl'), /x.jsonl line 2 is not JSON/);

  assert.equal(await (plotCommand.run(['curves', '--run', dir])), 0);
  const png = readPng(join(dir, 'curves.png'));
  assert.ok(png.width > 2 * 300 && png.height > 2 * 2 * 200, `two columns, two rows of 300×200 panels at scale 2: ${png.width}×${png.height}`);
  assert.ok(countNonWhite(png) > 0.02 * png.width * png.height);
  const svg = await specToSvg(curvesSpec(records.flatMap((r) => Object.entries(r.terms).map(([term, value]) => ({ run: 'r', step: r.step, term, value })))));
  for (const t of ['loss', 'recon', 'kl']) assert.match(svg, new RegExp(`>${t}<`), `a panel titled ${t}`);

  const out = join(tmp(), 'sub', 'overlay.png');
  assert.equal(await (plotCommand.run(['curves', '--run', dir, '--terms', 'recon,kl', '--overlay', '--log-y', '--out', out])), 0);
  assert.ok(existsSync(out));
  await assert.rejects((plotCommand.run(['curves', '--run', dir, '--terms', 'recon,nope', '--out', out])), /no logged values for term nope; the log has loss, recon, kl/);
  writeFileSync(join(dir, 'train.jsonl'), JSON.stringify({ step: 50, loss: -3 }) + '\n');
  await assert.rejects((plotCommand.run(['curves', '--run', dir, '--log-y'])), /logarithmic y axis needs positive values, but loss has values ≤ 0/);
});

test('interpolate: a strip per --from/--to pair, from q(z|from)\'s mean to q(z|to)\'s', async () => {
  const out = join(tmp(), 'strip.png');
  assert.equal(await (interpolateCommand.run(['--run', runDir, '--from', 'sneaker', '--to', 'ankle boot', '--steps', '5', '--out', out])), 0);
  const png = readPng(out);
  // A caption column ("sneaker > ankle boot"), then 5 tiles of 28×2 pixels with 2-pixel padding, one row.
  const labelW = png.width - (5 * 56 + 6 * 2);
  assert.ok(labelW > 20 * 5, `a caption column: ${labelW} pixels`);
  assert.equal(png.height, 56 + 2 * 2);
  const { model, meta } = loadImageModel(runDir);
  const images = interpolationImages(model, meta, [{ from: 'sneaker', to: 'ankle boot' }], 5);
  const a = queryDistribution(model, meta, ['Sneaker']).mean;
  const b = queryDistribution(model, meta, ['Ankle boot']).mean;
  assert.deepEqual(images, decodeInterpolation(model, a, b, 5), 'the strip decodes the segment between the two label means');
  // The tile pixels are the decoded images (grey, scaled ×2, rounded to bytes).
  const tile0 = Array.from({ length: 28 * 28 }, (_, i) => png.data[((2 + 2 * Math.floor(i / 28)) * png.width + labelW + 2 + 2 * (i % 28)) * 4]);
  tile0.forEach((v, i) => assert.ok(Math.abs(v - Math.round(images[i] * 255)) <= 1, `pixel ${i}`));

  const two = join(tmp(), 'two.png');
  assert.equal(await (interpolateCommand.run(['--run', runDir, '--from', 'sneaker', '--to', 'ankle boot', '--from', 'T-shirt', '--to', 'shirt', '--out', two])), 0);
  const p2 = readPng(two);
  assert.equal(p2.width, labelW + 8 * 56 + 9 * 2, '8 steps by default, the longer caption as wide (both cut at 24 characters)');
  assert.equal(p2.height, 2 * 56 + 3 * 2, 'one row per pair');
});

test('plot latent: PCA map of a run, a panel of runs titled by model, t-SNE on a sample', async () => {
  const out = join(tmp(), 'map.png');
  assert.equal(await (plotCommand.run(['latent', '--run', runDir, '--out', out, '--scale', '1'])), 0);
  const one = readPng(out);
  assert.ok(one.width > 360 && one.height > 360);
  assert.ok(countNonWhite(one) > 0.05 * one.width * one.height);
  const panel = join(tmp(), 'panel.png');
  assert.equal(
    await (plotCommand.run(['latent', '--run', runDir, '--run', runDir, '--method', 'tsne', '--points', '80', '--titles', 'first,second', '--out', panel, '--scale', '1'])),
    0,
  );
  const two = readPng(panel);
  assert.ok(two.width > one.width + 360, `two maps side by side: ${two.width} vs ${one.width}`);
});

test('latentMap: a 2-D latent space is shown as it is; PCA and samples otherwise', async () => {
  const ds = await loadDataset('fashion-mnist-subset');
  const model = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 2, encoderHidden: [8], decoderHidden: [8], classifierHidden: [8] }, 3) as unknown as ImageModel;
  const meta = { model: 'pse-star', classNames: ds.classNames } as unknown as ModelFile;
  const post = encodeSplit(model, ds.test, pixelsOf(ds));
  const map = await latentMap(model, meta, ds, { posteriors: post });
  assert.equal(map.method, 'latent');
  assert.equal(map.panel.title, 'pse-star');
  assert.equal(map.panel.points.length, ds.test.count);
  assert.deepEqual(map.panel.axes, ['z₁', 'z₂']);
  const i = 17;
  assert.equal(map.panel.points[i].x, post.mean[i * 2]);
  assert.equal(map.panel.points[i].y, post.mean[i * 2 + 1]);
  assert.equal(map.panel.points[i].label, ds.classNames[ds.test.labels[i]]);
  const sampled = await latentMap(model, meta, ds, { method: 'pca', points: 300, seed: 4, posteriors: post });
  assert.equal(sampled.panel.points.length, 300);
  assert.deepEqual((await latentMap(model, meta, ds, { method: 'pca', points: 300, seed: 4, posteriors: post })).ids, sampled.ids, 'the sample is seeded');
  assert.match(sampled.panel.axes![0], /^PC1 \(\d+ % of variance\)$/);
  // Coloured by the dataset's hierarchy: each point takes its class's parent ("(none)" without one).
  const tree = { ...ds, hierarchy: { parents: ['tops', 'shoes'], parentOf: [0, -1, 0, 0, 0, 1, 0, 1, -1, 1] } };
  const byParent = await latentMap(model, meta, tree, { posteriors: post, colourBy: 'parent' });
  const expected = (c: number) => (tree.hierarchy.parentOf[c] < 0 ? '(none)' : tree.hierarchy.parents[tree.hierarchy.parentOf[c]]);
  assert.equal(byParent.panel.points[i].label, expected(ds.test.labels[i]));
  assert.deepEqual(new Set(byParent.panel.points.map((p) => p.label)), new Set(['tops', 'shoes', '(none)']));
  await assert.rejects(latentMap(model, meta, ds, { posteriors: post, colourBy: 'parent' }), /states no class hierarchy/);
});

test('bad inputs give clear ProbsemErrors', async () => {
  const cases: [string[], RegExp, 'plot' | 'interpolate'][] = [
    [['--run', runDir, '--from', 'spaceship', '--to', 'sneaker', '--out', '/tmp/x.png'], /spaceship/, 'interpolate'],
    [['--run', runDir, '--from', 'sneaker', '--to', 'sandal', '--steps', '1', '--out', '/tmp/x.png'], /--steps must be an integer in \[2, 100\], got '1'/, 'interpolate'],
    [['--run', runDir, '--from', 'sneaker', '--from', 'bag', '--to', 'sandal', '--out', '/tmp/x.png'], /--from and --to pair up in order: got 2 --from and 1 --to/, 'interpolate'],
    [['latent', '--run', runDir, '--method', 'isomap', '--out', '/tmp/x.png'], /unknown projection method 'isomap': choose one of pca, tsne, umap/, 'plot'],
    [['latent', '--out', '/tmp/x.png'], /--run is required/, 'plot'],
    [['latent', '--run', runDir, '--colour-by', 'group', '--out', '/tmp/x.png'], /--colour-by must be class or parent, got 'group'/, 'plot'],
    [['latent', '--run', runDir, '--run', runDir, '--titles', 'only-one', '--out', '/tmp/x.png'], /--titles needs 2 non-empty comma-separated names \(one per --run\)/, 'plot'],
    [['curves', '--run', tmp()], /has no train.jsonl \(runs trained with 'probsem train --out DIR' write one\)/, 'plot'],
    [['curves', '--run', '/nonexistent/run'], /run directory \/nonexistent\/run does not exist/, 'plot'],
    [['curves', '--run', runDir, '--run', runDir], /--out is required with several runs/, 'plot'],
    [['scatter'], /unknown plot subcommand 'scatter': choose one of latent, curves/, 'plot'],
    [[], /plot needs a subcommand/, 'plot'],
  ];
  for (const [args, re, which] of cases) {
    const cmd = which === 'plot' ? plotCommand : interpolateCommand;
    await assert.rejects(
      (cmd.run(args)),
      (e: Error) => {
        assert.equal(e.name === 'ProbsemError' || e.name === 'UnknownWordError' || e.name === 'DataFormatError', true, `${args.join(' ')}: ${e.name}`);
        assert.match(e.message, re, args.join(' '));
        return true;
      },
    );
  }
});
