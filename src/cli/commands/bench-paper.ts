import { ProbsemError } from '../../core/errors.js';
import { type BenchModelSpec, benchPaper, benchableModels, defaultBenchModels } from '../../runs/bench-paper.js';
import { intOption, numOption, parse, strOption } from '../args.js';
import { ProgressBar } from '../progress.js';
import type { Command } from './index.js';
import { lrSchedule } from '../../train/schedule.js';
import { setOptions } from './train.js';
import { loadDataset } from '../../data/registry.js';
import { convArchitecture } from '../../models/base.js';
import { hasModelOption } from '../../models/registry.js';

const PAPER_HELP = `probsem bench paper --dataset <fashion-mnist|mnist|DIR> [options]

Re-runs the PSE paper's Tables 1/2: trains CVAE, JMVAE, TrELBO, SCAN, PSE, PSE* and PSE* at twice
the latent size for every seed, evaluates each (reconstruction error, annotation accuracy,
generation accuracy judged by the dataset's judge, judge accuracy) and writes
<out>/paper-<dataset>-<date>.md (mean ± sd over seeds beside the paper's numbers) and .json.
Finished cells are kept in --runs; an interrupted bench continues where it stopped.

  --dataset NAME|DIR   fashion-mnist (default), fashion-mnist-subset, mnist, or a folder of IDX files
  --data DIR           where to look for the dataset's IDX files
  --latent N           latent size of the 10-D rows (default 10)
  --seeds N            seeds 0..N-1 (default 3)
  --steps N            training steps per run (default 2000)
  --batch N            minibatch size (default 100)
  --lr X               Adam learning rate (default 0.001)
  --lr-schedule S      constant (default, the paper's) or cosine decay over the steps
  --models LIST        comma-separated NAME or NAME@LATENT (default ${defaultBenchModels(10).join(',')});
                       models: ${benchableModels().join(', ')}
  --set MODEL.KEY=VAL  a model option for every cell of that model, repeatable (value as JSON, else a
                       string), e.g. --set pse-star.classifierWeight=100; it names the cells' run
                       directories and shows in the report
  --arch mlp|conv      conv: every model gets train --arch conv's convolutions for the dataset's image
                       size, as --set options (so the cells are named by them; --set wins)
  --out DIR            where the report goes (default reports)
  --runs DIR           where the cells' runs go (default runs/bench-paper/<dataset>)
  --samples N          generated images per label per repeat (default 1000)
  --repeats N          generation repeats per run (default 10)
  --no-generation      skip generation accuracy (no judge)
  --judge-epochs N     epochs for the judge if it must be trained first (default 8)
  --quiet              no progress bars`;

export const benchCommand: Command = {
  summary: "benchmarks: 'bench paper' re-runs the PSE paper's model comparison",
  help: `probsem bench <subcommand>: 'paper' is the one there is.\n\n${PAPER_HELP}`,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub !== 'paper') {
      throw new ProbsemError(`${sub ? `unknown bench '${sub}'` : 'name a bench'}: probsem bench paper [options]`, 'BAD_OPTION');
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(PAPER_HELP + '\n');
      return 0;
    }
    return runPaper(rest);
  },
};

async function runPaper(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    dataset: { type: 'string' },
    data: { type: 'string' },
    latent: { type: 'string' },
    seeds: { type: 'string' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    lr: { type: 'string' },
    'lr-schedule': { type: 'string' },
    models: { type: 'string' },
    out: { type: 'string' },
    runs: { type: 'string' },
    samples: { type: 'string' },
    repeats: { type: 'string' },
    'no-generation': { type: 'boolean' },
    'judge-epochs': { type: 'string' },
    set: { type: 'string', multiple: true },
    arch: { type: 'string' },
    quiet: { type: 'boolean' },
  });
  const quiet = Boolean(v.quiet);
  const latent = intOption(v.latent, 'latent', 10, 1, 1024);
  const steps = intOption(v.steps, 'steps', 2000);
  const seeds = intOption(v.seeds, 'seeds', 3, 1, 1000);
  const models = v.models === undefined ? undefined : String(v.models).split(',').map((s) => s.trim()).filter(Boolean);
  if (models && models.length === 0) throw new ProbsemError('--models lists no model', 'BAD_OPTION');
  const dataset = strOption(v.dataset, 'dataset', 'fashion-mnist');
  const set = benchSetOptions(v.set as string[] | undefined);
  const arch = strOption(v.arch, 'arch', 'mlp');
  if (arch !== 'mlp' && arch !== 'conv') throw new ProbsemError(`--arch must be mlp or conv, got '${arch}'`, 'BAD_OPTION');
  if (arch === 'conv') {
    const ds = await loadDataset(dataset, { dataDir: v.data as string | undefined });
    Object.assign(set, convSetOptions(models ?? defaultBenchModels(latent), ds.height, ds.width, set));
  }
  const bars = new Map<string, ProgressBar>();
  const say = (m: string) => process.stderr.write(m + '\n');
  let judgeBar: ProgressBar | null = null;
  const label = (s: BenchModelSpec, seed: number) => `${s.label} seed ${seed}`;

  const r = await benchPaper({
    dataset,
    dataDir: v.data as string | undefined,
    latent,
    seeds,
    steps,
    batchSize: intOption(v.batch, 'batch', 100),
    lr: numOption(v.lr, 'lr', 1e-3, 0, 10, true),
    lrSchedule: lrSchedule(strOption(v['lr-schedule'], 'lr-schedule', 'constant')),
    models,
    set,
    out: strOption(v.out, 'out', 'reports'),
    runsDir: v.runs as string | undefined,
    samplesPerLabel: intOption(v.samples, 'samples', 1000, 1, 100000),
    repeats: intOption(v.repeats, 'repeats', 10, 1, 100),
    skipGeneration: Boolean(v['no-generation']),
    judgeEpochs: intOption(v['judge-epochs'], 'judge-epochs', 8, 1, 1000),
    onNotice: (m) => say(`note: ${m}`),
    onJudgeProgress: (p) => {
      judgeBar ??= new ProgressBar('train judge', p.steps, process.stderr, !quiet);
      judgeBar.update(p.step, `${p.msPerStep.toFixed(0)} ms/step`);
    },
    onCell: ({ spec, seed, state }) => {
      if (state === 'kept') say(`${label(spec, seed)}: finished earlier, kept`);
      else if (state === 'resume') say(`${label(spec, seed)}: resuming its checkpoint`);
      else if (state === 'evaluate') say(`${label(spec, seed)}: evaluating`);
    },
    // One bar per model, over all its seeds' steps.
    onTrainProgress: (spec, seedIndex, p) => {
      let bar = bars.get(spec.key);
      if (!bar) {
        bar = new ProgressBar(`train ${spec.label}`, seeds * p.steps, process.stderr, !quiet);
        bars.set(spec.key, bar);
      }
      bar.update(seedIndex * p.steps + p.step, `seed ${seedIndex} · ${p.msPerStep.toFixed(0)} ms/step · loss ${p.terms.loss?.toFixed(2) ?? '…'}`);
    },
  });
  process.stdout.write(`wrote ${r.reportPath} and ${r.jsonPath}\n`);
  return 0;
}

/** `--set MODEL.KEY=VALUE` pairs grouped by model, each parsed as `probsem train --set` parses it. */
export function benchSetOptions(pairs: string[] | undefined): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const pair of pairs ?? []) {
    const m = /^([A-Za-z0-9_-]+)\.(.*)$/s.exec(pair);
    if (!m || !benchableModels().includes(m[1])) {
      throw new ProbsemError(`--set expects MODEL.KEY=VALUE with MODEL one of ${benchableModels().join(', ')} (e.g. --set pse-star.classifierWeight=100), got '${pair}'`, 'BAD_OPTION');
    }
    out[m[1]] = { ...out[m[1]], ...setOptions([m[2]]) };
  }
  return out;
}

/**
 * `bench paper --arch conv`: `train --arch conv`'s options for the image size as each bench
 * model's --set options (those its schema has), under the explicit ones.
 */
export function convSetOptions(models: string[], height: number, width: number, set: Record<string, Record<string, unknown>>): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const model of new Set(models.map((m) => m.split('@')[0]))) {
    const chosen = Object.entries(convArchitecture(height, width)).filter(([k]) => hasModelOption(model, k));
    out[model] = { ...Object.fromEntries(chosen), ...set[model] };
  }
  return out;
}
