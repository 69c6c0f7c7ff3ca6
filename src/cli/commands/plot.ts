import { basename, dirname, join, resolve } from 'node:path';
import { ProbsemError } from '../../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { type Dataset, datasetHash } from '../../data/dataset.js';
import { encodeGridPng } from '../../data/png.js';
import { loadDataset } from '../../data/registry.js';
import { checkCompatible, loadImageModel, runDatasetName, runImageShape } from '../../runs/runs.js';
import { runWordVectors, splitQuery } from '../../runs/words.js';
import { interpolationImages, latentMap, pointLabeller } from '../../analysis/figures.js';
import { projectionMethod } from '../../analysis/projection.js';
import { logCurves, logTerms, readTrainLog } from '../../analysis/train-log.js';
import { intOption, numOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

const note = (m: string) => process.stderr.write(`note: ${m}\n`);
const kb = (bytes: number) => `${Math.round(bytes / 1024)} KB`;

/** Names for several runs: `name(dir)`, made unique by adding the directory's base name. */
function runNames(dirs: string[], name: (dir: string, i: number) => string): string[] {
  const names = dirs.map(name);
  return names.map((n, i) => (names.filter((m) => m === n).length > 1 ? `${n} (${basename(resolve(dirs[i]))})` : n));
}

function listOption(v: unknown, name: string, count: number): string[] | undefined {
  if (v === undefined) return undefined;
  // One run takes the whole text, commas included.
  const items = count === 1 ? [String(v).trim()] : String(v).split(',').map((s) => s.trim());
  if (items.length !== count || items.some((s) => !s)) {
    throw new ProbsemError(`--${name} needs ${count} non-empty comma-separated name${count > 1 ? 's' : ''} (one per --run), got '${v}'`, 'BAD_OPTION');
  }
  return items;
}

const LATENT_HELP = `probsem plot latent --run DIR [--run DIR …] [--method pca|tsne|umap] --out map.png

  A 2-D map of the test images' posterior means q(z|x), coloured by label. Several --run values
  make a panel of maps (titled with each run's model name) sharing one legend.
  --method M       pca, tsne or umap (default: the latent coordinates themselves for latent 2, pca
                   otherwise)
  --points N       map a seeded sample of at most N images (default: all for pca, 2000 for tsne/umap)
  --seed N         seed of the sample and of t-SNE/UMAP (default 0)
  --split S        test (default) or train
  --colour-by B    class (default) or parent: the class's parent in the dataset's hierarchy
                   (emoji groups, CIFAR-100 superclasses)
  --dataset D      images to map (default: each run's own dataset); --data DIR where to find it
  --titles LIST    comma-separated panel titles, one per --run (one run: the whole text)
  --title TEXT     a title over the whole figure
  --columns N      panels per row (default: up to 3)
  --width PX       plot area of one panel (default 360); --height PX (default: = width)
  --point-size A   mark area in square pixels (default: by the number of points)
  --scale X        pixel density of the PNG (default 1.5: 10,000 points make large files)`;

const CURVES_HELP = `probsem plot curves --run DIR [--run DIR …] [--out curves.png]

  Training curves from the runs' train.jsonl: one panel per loss term, a colour per run.
  --out FILE       default DIR/curves.png for one run; required for several
  --terms LIST     comma-separated terms to show (default: all logged, total loss first)
  --log-y          logarithmic y axes (every value shown must be positive)
  --overlay        one chart with a colour per term (one run)
  --names LIST     comma-separated run names for the legend, one per --run (default: directory names)
  --title TEXT     a title over the figure
  --columns N      panels per row (default 2)
  --width PX, --height PX  plot area of one panel (default 300 × 200)
  --scale X        pixel density of the PNG (default 2)`;

async function plotLatent(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    run: { type: 'string', multiple: true },
    method: { type: 'string' },
    points: { type: 'string' },
    seed: { type: 'string' },
    split: { type: 'string' },
    dataset: { type: 'string' },
    data: { type: 'string' },
    titles: { type: 'string' },
    title: { type: 'string' },
    columns: { type: 'string' },
    width: { type: 'string' },
    height: { type: 'string' },
    'point-size': { type: 'string' },
    scale: { type: 'string' },
    out: { type: 'string' },
    'colour-by': { type: 'string' },
  });
  const dirs = (v.run as string[] | undefined) ?? [];
  if (dirs.length === 0) throw new ProbsemError('--run is required (repeat it for a panel of maps)', 'BAD_OPTION');
  const colourBy = strOption(v['colour-by'], 'colour-by', 'class');
  if (colourBy !== 'class' && colourBy !== 'parent') throw new ProbsemError(`--colour-by must be class or parent, got '${colourBy}'`, 'BAD_OPTION');
  if (dirs.length > 24) throw new ProbsemError(`at most 24 runs in one panel, got ${dirs.length}`, 'BAD_OPTION');
  const out = strOption(v.out, 'out');
  const method = v.method === undefined ? undefined : projectionMethod(String(v.method));
  const points = v.points === undefined ? undefined : intOption(v.points, 'points', undefined, 3, 1_000_000);
  const seed = intOption(v.seed, 'seed', 0, 0);
  const split = strOption(v.split, 'split', 'test');
  if (split !== 'test' && split !== 'train') throw new ProbsemError(`--split must be test or train, got '${split}'`, 'BAD_OPTION');
  const width = intOption(v.width, 'width', 360, 50, 4000);
  const height = intOption(v.height, 'height', width, 50, 4000);
  const columns = intOption(v.columns, 'columns', Math.min(dirs.length, 3), 1, 24);
  const pointSize = v['point-size'] === undefined ? undefined : numOption(v['point-size'], 'point-size', 10, 0, 10000, true);
  const scale = numOption(v.scale, 'scale', 1.5, 0, 8, true);
  const titlesGiven = listOption(v.titles, 'titles', dirs.length);

  const runs = dirs.map((dir) => ({ dir, ...loadImageModel(dir) }));
  const titles = titlesGiven ?? runNames(dirs, (_, i) => runs[i].meta.model);
  const datasets = new Map<string, Promise<Dataset>>();
  const panels = [];
  const classes: string[] = [];
  let used = '';
  for (const [i, r] of runs.entries()) {
    const name = runDatasetName(r.meta, v.dataset as string | undefined, note);
    if (!datasets.has(name)) datasets.set(name, loadDataset(name, { dataDir: v.data as string | undefined, onNotice: note }));
    const ds = await datasets.get(name)!;
    checkCompatible(r.meta, ds);
    if (r.meta.dataset?.hash && r.meta.dataset.hash !== datasetHash(ds)) {
      note(`${r.dir} was trained on ${r.meta.dataset.name} (${r.meta.dataset.source ?? 'another copy'}); mapping the ${split} split of ${ds.name} from ${ds.source}`);
    }
    const t0 = performance.now();
    const map = await latentMap(r.model, r.meta, ds, { method, points, seed, split, title: titles[i], colourBy });
    process.stderr.write(`${titles[i]}: ${map.ids.length} points by ${map.method} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    panels.push(map.panel);
    used = used && used !== map.method ? 'mixed' : map.method;
    const label = pointLabeller(ds, colourBy);
    for (let c = 0; c < ds.classNames.length; c++) if (!classes.includes(label(c))) classes.push(label(c));
  }
  // Vega and resvg load only when a figure is drawn: every other command starts faster.
  const { scatterPanelsSpec, writePlotPng } = await import('../../analysis/plot.js');
  const spec = scatterPanelsSpec(panels, classes, { title: v.title as string | undefined, columns, width, height, pointSize });
  await ensureDir(dirname(out));
  const bytes = await writePlotPng(out, spec, { scale });
  process.stdout.write(`wrote ${panels.length > 1 ? `${panels.length} latent maps` : 'a latent map'} (${used}) to ${out} (${kb(bytes)})\n`);
  return 0;
}

async function plotCurves(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    run: { type: 'string', multiple: true },
    out: { type: 'string' },
    terms: { type: 'string' },
    'log-y': { type: 'boolean' },
    overlay: { type: 'boolean' },
    names: { type: 'string' },
    title: { type: 'string' },
    columns: { type: 'string' },
    width: { type: 'string' },
    height: { type: 'string' },
    scale: { type: 'string' },
  });
  const dirs = (v.run as string[] | undefined) ?? [];
  if (dirs.length === 0) throw new ProbsemError('--run is required (repeat it to compare runs)', 'BAD_OPTION');
  if (dirs.length > 20) throw new ProbsemError(`at most 20 runs in one figure, got ${dirs.length}`, 'BAD_OPTION');
  if (dirs.length > 1 && v.out === undefined) throw new ProbsemError('--out is required with several runs', 'BAD_OPTION');
  const out = strOption(v.out, 'out', join(dirs[0], 'curves.png'));
  const names = listOption(v.names, 'names', dirs.length) ?? runNames(dirs, (d) => basename(resolve(d)));
  const logs = dirs.map((d) => readTrainLog(d));
  const terms =
    v.terms === undefined
      ? [...new Set(logs.flatMap(logTerms))]
      : String(v.terms).split(',').map((t) => t.trim()).filter(Boolean);
  if (terms.length === 0) throw new ProbsemError('--terms names no term', 'BAD_OPTION');
  const { curvesSpec, writePlotPng } = await import('../../analysis/plot.js');
  const spec = curvesSpec(
    logs.flatMap((l, i) => logCurves(l, names[i])),
    {
      terms,
      logY: Boolean(v['log-y']),
      overlay: Boolean(v.overlay),
      title: v.title as string | undefined,
      columns: intOption(v.columns, 'columns', 2, 1, 20),
      width: v.width === undefined ? undefined : intOption(v.width, 'width', undefined, 50, 4000),
      height: v.height === undefined ? undefined : intOption(v.height, 'height', undefined, 50, 4000),
    },
  );
  await ensureDir(dirname(out));
  const bytes = await writePlotPng(out, spec, { scale: numOption(v.scale, 'scale', 2, 0, 8, true) });
  process.stdout.write(`wrote training curves (${terms.join(', ')}) of ${dirs.length} run${dirs.length > 1 ? 's' : ''} to ${out} (${kb(bytes)})\n`);
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = { latent: plotLatent, curves: plotCurves };

export const plotCommand: Command = {
  summary: 'figures as PNG: latent maps of runs (plot latent), training curves (plot curves)',
  help: `${LATENT_HELP}\n\n${CURVES_HELP}`,
  async run(argv) {
    const [sub, ...rest] = argv;
    const fn = sub === undefined ? undefined : SUBCOMMANDS[sub];
    if (!fn) {
      throw new ProbsemError(`${sub === undefined || sub.startsWith('-') ? 'plot needs a subcommand' : `unknown plot subcommand '${sub}'`}: choose one of ${Object.keys(SUBCOMMANDS).join(', ')}`, 'BAD_OPTION');
    }
    return fn(rest);
  },
};

export const interpolateCommand: Command = {
  summary: 'decode images along the line between two labels in the latent space (PNG strip)',
  help: `probsem interpolate --run DIR --from LABEL --to LABEL [--steps 8] --out strip.png

  Decodes --steps evenly spaced points from the mean of q(z|from) to the mean of q(z|to), one row
  of images. Repeat --from/--to for more rows (paired in order).
  --from, --to   class names or parts of them ("sneaker", "ankle boot", "t-shirt"); runs trained
                 with --labels words take any words their vectors know
  --steps N      images per row, end points included (default 8)
  --scale N      pixel upscaling of each image (default 2)`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      from: { type: 'string', multiple: true },
      to: { type: 'string', multiple: true },
      steps: { type: 'string' },
      scale: { type: 'string' },
      out: { type: 'string' },
    });
    const from = (v.from as string[] | undefined) ?? [];
    const to = (v.to as string[] | undefined) ?? [];
    if (from.length === 0 || to.length === 0) throw new ProbsemError('give --from LABEL and --to LABEL', 'BAD_OPTION');
    if (from.length !== to.length) throw new ProbsemError(`--from and --to pair up in order: got ${from.length} --from and ${to.length} --to`, 'BAD_OPTION');
    if (from.length > 50) throw new ProbsemError(`at most 50 pairs, got ${from.length}`, 'BAD_OPTION');
    const steps = intOption(v.steps, 'steps', 8, 2, 100);
    const scale = intOption(v.scale, 'scale', 2, 1, 16);
    const out = strOption(v.out, 'out');
    const { model, meta } = loadImageModel(strOption(v.run, 'run'));
    const pairs = from.map((f, i) => ({ from: f, to: to[i] }));
    const vectors = await runWordVectors(meta, splitQuery(meta, [...from, ...to]), { onNotice: note });
    const images = interpolationImages(model, meta, pairs, steps, vectors);
    const { height: h, width: w, channels } = runImageShape(meta);
    await ensureDir(dirname(out));
    writeFileAtomicSync(out, encodeGridPng(images, steps * pairs.length, { cols: steps, height: h, width: w, channels, scale, rowLabels: pairs.map((p) => `${p.from} > ${p.to}`) }));
    process.stdout.write(`wrote ${pairs.map((p) => `'${p.from}' → '${p.to}'`).join(', ')} in ${steps} steps${pairs.length > 1 ? ' (one row each)' : ''} to ${out}\n`);
    return 0;
  },
};
