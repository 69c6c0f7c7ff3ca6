/**
 * `probsem bench paper`: the PSE paper's Tables 1/2 re-run. Every model of the tables (CVAE, JMVAE,
 * TrELBO, SCAN, PSE 10-D, PSE* 10-D, PSE* 20-D) is trained per seed with `trainRun` and evaluated
 * with `evaluateRun` (reconstruction error, annotation accuracy, generation accuracy judged by the
 * dataset's shared judge, repeated for its standard deviation), and the means ± sd over seeds are
 * written as a Markdown table beside the paper's numbers, plus a JSON file.
 *
 * Resumable: each cell (model × seed) is a run directory under `runsDir` holding the run and its
 * `eval.json`. A finished cell is kept; a trained but unevaluated run is only evaluated; a run with
 * a checkpoint short of the end resumes from it (trainRun's exact resume).
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../core/files.js';
import { datasetHash } from '../data/dataset.js';
import { loadDataset } from '../data/registry.js';
import { getJudge } from '../eval/judge.js';
import { readModelMeta } from '../models/persist.js';
import { getModelEntry, trainableModelNames } from '../models/registry.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { CHECKPOINT_FILE, type TrainProgress } from '../train/trainer.js';
import { type EvalReport, evaluateRun, trainRun } from './runs.js';
import { type LrSchedule, lrSchedule } from '../train/schedule.js';

/** One row of the bench: a model at a latent size. */
export interface BenchModelSpec {
  /** `model@latent`, e.g. `pse-star@20`. */
  key: string;
  model: string;
  latent: number;
  /** Display name, e.g. `PSE* (20D)`. */
  label: string;
}

/** A row of the paper's tables; annotation null where the paper says N/A. */
export interface PaperRow {
  reconstructionError: number;
  annotationAccuracy: number | null;
  generationAccuracy: number;
  generationSd: number;
}

/** The PSE paper's Table 2 (Fashion-MNIST) and Table 1 (MNIST), keyed by `model@latent`; percentages as fractions. */
export const PAPER_TABLES: Record<string, { table: string; judge: string; rows: Record<string, PaperRow> }> = {
  'fashion-mnist': {
    table: 'Table 2 (Fashion-MNIST)',
    judge: 'ResNet-18, 92.4 % validation accuracy',
    rows: {
      'cvae@10': { reconstructionError: 219.7, annotationAccuracy: null, generationAccuracy: 0.813, generationSd: 0.003 },
      'jmvae@10': { reconstructionError: 225.4, annotationAccuracy: 0.803, generationAccuracy: 0.712, generationSd: 0.005 },
      'trelbo@10': { reconstructionError: 220.3, annotationAccuracy: 0.73, generationAccuracy: 0.475, generationSd: 0.004 },
      'pse@10': { reconstructionError: 219.1, annotationAccuracy: 0.812, generationAccuracy: 0.759, generationSd: 0.003 },
      'pse-star@10': { reconstructionError: 219.6, annotationAccuracy: 0.813, generationAccuracy: 0.761, generationSd: 0.004 },
      'pse-star@20': { reconstructionError: 219.0, annotationAccuracy: 0.816, generationAccuracy: 0.762, generationSd: 0.004 },
    },
  },
  mnist: {
    table: 'Table 1 (MNIST)',
    judge: 'MLP, 96.86 % validation accuracy',
    rows: {
      'cvae@10': { reconstructionError: 79.8, annotationAccuracy: null, generationAccuracy: 0.976, generationSd: 0.001 },
      'jmvae@10': { reconstructionError: 87.7, annotationAccuracy: 0.954, generationAccuracy: 0.922, generationSd: 0.003 },
      'trelbo@10': { reconstructionError: 83.1, annotationAccuracy: 0.903, generationAccuracy: 0.611, generationSd: 0.005 },
      'pse@10': { reconstructionError: 82.8, annotationAccuracy: 0.96, generationAccuracy: 0.939, generationSd: 0.002 },
      'pse-star@10': { reconstructionError: 82.3, annotationAccuracy: 0.963, generationAccuracy: 0.949, generationSd: 0.002 },
      'pse-star@20': { reconstructionError: 75.0, annotationAccuracy: 0.971, generationAccuracy: 0.956, generationSd: 0.002 },
    },
  },
};

/** The tables' models: the baselines at `latent`, PSE and PSE* at `latent`, PSE* at twice it. */
export function defaultBenchModels(latent: number): string[] {
  return ['cvae', 'jmvae', 'trelbo', 'scan', 'pse', 'pse-star', `pse-star@${2 * latent}`];
}

/** Models a bench can train: every registered model but the judge. */
export function benchableModels(): string[] {
  return trainableModelNames();
}

/** Parses `NAME` or `NAME@LATENT` into a spec, failing clearly on an unknown model or a bad size. */
export function parseBenchModel(spec: string, latent: number): BenchModelSpec {
  const m = /^([A-Za-z0-9_-]+)(?:@(.*))?$/.exec(spec.trim());
  const known = benchableModels();
  if (!m || !known.includes(m[1])) {
    throw new ProbsemError(
      `unknown bench model '${spec}': choose from ${known.join(', ')} (NAME@DIM sets its latent size, e.g. pse-star@20)`,
      'BAD_OPTION',
    );
  }
  const model = m[1];
  const dim = m[2] === undefined ? latent : Number(m[2]);
  if (!Number.isInteger(dim) || dim < 1 || dim > 1024) {
    throw new ProbsemError(`bench model '${spec}': the latent size must be an integer in [1, 1024], got '${m[2]}'`, 'BAD_OPTION');
  }
  const entry = getModelEntry(model);
  return { key: `${model}@${dim}`, model, latent: dim, label: `${entry.displayName}${entry.kind === 'baseline' && dim === latent ? '' : ` (${dim}D)`}` };
}

export interface BenchPaperOptions {
  dataset: string;
  dataDir?: string;
  /** Latent size of the 10-D rows (default 10). */
  latent?: number;
  /** Number of seeds, 0..seeds−1 (default 3). */
  seeds?: number;
  steps?: number;
  batchSize?: number;
  lr?: number;
  /** Learning-rate schedule of every cell (default constant, the paper's). */
  lrSchedule?: LrSchedule;
  /** `NAME` or `NAME@LATENT` entries (default: the tables' seven models). */
  models?: string[];
  /** Where the report and JSON go (default `reports`). */
  out?: string;
  /** Where the cells' run directories go (default `runs/bench-paper/<dataset>`). */
  runsDir?: string;
  /** Extra config per model name (e.g. smaller networks for tests), not part of a cell's identity. */
  modelOptions?: Record<string, Record<string, unknown>>;
  /**
   * Chosen settings per model name (`--set pse-star.classifierWeight=100`): part of each affected
   * cell's identity, so they name its run directory, show in the report's row label and decide
   * whether a finished cell can be kept.
   */
  set?: Record<string, Record<string, unknown>>;
  samplesPerLabel?: number;
  /** Generation repeats per run, for its standard deviation (default 10, as the paper). */
  repeats?: number;
  skipGeneration?: boolean;
  judgeCacheDir?: string;
  judgeEpochs?: number;
  /** Evaluation seed (default 0, the same for every cell). */
  evalSeed?: number;
  checkpointEvery?: number;
  /** Date in the report's file name (default today). */
  date?: Date;
  onNotice?: (msg: string) => void;
  /** A cell's state as the bench reaches it. */
  onCell?: (e: { spec: BenchModelSpec; seed: number; seedIndex: number; state: 'kept' | 'train' | 'resume' | 'evaluate' }) => void;
  onTrainProgress?: (spec: BenchModelSpec, seedIndex: number, p: TrainProgress) => void;
  onGenerationProgress?: (spec: BenchModelSpec, seed: number, done: number, total: number) => void;
  onJudgeProgress?: (p: TrainProgress) => void;
}

/** mean ± sd (sample sd; null for one value) of a metric over seeds. */
export interface Stat {
  mean: number;
  sd: number | null;
  n: number;
  values: number[];
}

export interface BenchCellRun {
  seed: number;
  dir: string;
  report: EvalReport;
}

export interface BenchCell {
  key: string;
  model: string;
  latent: number;
  label: string;
  /** Chosen model options of this cell (`--set`), absent when none. */
  options?: Record<string, unknown>;
  seeds: number[];
  config: Record<string, unknown>;
  reconstructionError: Stat;
  reconstructionErrorMean: Stat;
  annotationAccuracy: Stat | null;
  generationAccuracy: Stat | null;
  /** Mean over seeds of each run's sd over its generation repeats (the paper's ±). */
  generationRepeatSd: number | null;
  paper: PaperRow | null;
  runs: { seed: number; dir: string; reconstructionError: number; reconstructionErrorMean: number; annotationAccuracy: number | null; generationAccuracy: number | null; generationSd: number | null }[];
}

export interface BenchSummary {
  format: 'probsem-bench-paper';
  formatVersion: 1;
  createdAt: string;
  dataset: { name: string; hash: string; trainCount: number; testCount: number };
  settings: BenchSettings;
  seeds: number[];
  judge: { accuracy: number; dir: string } | null;
  paperTable: string | null;
  cells: BenchCell[];
}

interface BenchSettings {
  steps: number;
  batchSize: number;
  lr: number;
  /** Absent: constant. */
  lrSchedule?: LrSchedule;
  samplesPerLabel: number | null;
  repeats: number | null;
  evalSeed: number;
}

export interface BenchPaperResult {
  reportPath: string;
  jsonPath: string;
  summary: BenchSummary;
}

const EVAL_FILE = 'eval.json';
const MANIFEST_FILE = 'bench.json';

function positiveInt(v: number | undefined, name: string, def: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = v ?? def;
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new ProbsemError(`${name} must be an integer in [1, ${max}], got ${String(v)}`, 'BAD_OPTION');
  }
  return n;
}

/** Validated options with defaults, before any work. */
export function resolveBenchOptions(o: BenchPaperOptions) {
  const latent = positiveInt(o.latent, 'latent', 10, 1024);
  const seeds = positiveInt(o.seeds, 'seeds', 3, 1000);
  const steps = positiveInt(o.steps, 'steps', 2000);
  const batchSize = positiveInt(o.batchSize, 'batch', 100);
  const lr = o.lr ?? 1e-3;
  if (!(lr > 0) || !Number.isFinite(lr)) throw new ProbsemError(`lr must be > 0, got ${lr}`, 'BAD_OPTION');
  const schedule = lrSchedule(o.lrSchedule ?? 'constant');
  const samplesPerLabel = positiveInt(o.samplesPerLabel, 'samples', 1000, 100000);
  const repeats = positiveInt(o.repeats, 'repeats', 10, 100);
  const names = o.models && o.models.length > 0 ? o.models : defaultBenchModels(latent);
  const specs = names.map((n) => parseBenchModel(n, latent));
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.key)) throw new ProbsemError(`bench model ${s.key} is listed twice`, 'BAD_OPTION');
    seen.add(s.key);
  }
  for (const name of Object.keys(o.set ?? {})) {
    if (!specs.some((s) => s.model === name)) {
      throw new ProbsemError(`options are set for ${name}, which is not among the bench's models (${specs.map((s) => s.key).join(', ')})`, 'BAD_OPTION');
    }
  }
  return { latent, seeds, steps, batchSize, lr, lrSchedule: schedule, samplesPerLabel, repeats, specs, evalSeed: o.evalSeed ?? 0 };
}

function stat(values: number[]): Stat {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : null;
  return { mean, sd, n, values };
}

function slug(name: string): string {
  return basename(name).replace(/[^A-Za-z0-9_-]+/g, '_') || 'dataset';
}

function isoDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export async function benchPaper(o: BenchPaperOptions): Promise<BenchPaperResult> {
  const r = resolveBenchOptions(o);
  const ds = await loadDataset(o.dataset, { dataDir: o.dataDir, onNotice: o.onNotice });
  const dsSlug = slug(ds.name);
  const runsDir = o.runsDir ?? join('runs', 'bench-paper', dsSlug);
  const outDir = o.out ?? 'reports';
  const settings: BenchSettings = {
    steps: r.steps,
    batchSize: r.batchSize,
    lr: r.lr,
    ...(r.lrSchedule !== 'constant' ? { lrSchedule: r.lrSchedule } : {}),
    samplesPerLabel: o.skipGeneration ? null : r.samplesPerLabel,
    repeats: o.skipGeneration ? null : r.repeats,
    evalSeed: r.evalSeed,
  };
  await ensureDir(runsDir);
  checkManifest(runsDir, {
    dataset: ds.name,
    datasetHash: datasetHash(ds),
    steps: r.steps,
    batchSize: r.batchSize,
    lr: r.lr,
    // Only a non-constant schedule is recorded, so manifests written before schedules existed still match.
    ...(r.lrSchedule !== 'constant' ? { lrSchedule: r.lrSchedule } : {}),
  });

  let judge: BenchSummary['judge'] = null;
  if (!o.skipGeneration) {
    const j = await getJudge(ds, { cacheDir: o.judgeCacheDir, epochs: o.judgeEpochs, onProgress: o.onJudgeProgress, onNotice: o.onNotice });
    judge = { accuracy: j.testAccuracy, dir: j.dir };
    j.classifier.params.dispose();
  }

  const seeds = Array.from({ length: r.seeds }, (_, i) => i);
  const cells: BenchCell[] = [];
  for (const spec of r.specs) {
    const runs: BenchCellRun[] = [];
    for (const [seedIndex, seed] of seeds.entries()) {
      runs.push(await runCell(o, r, settings, runsDir, spec, seed, seedIndex));
    }
    cells.push(summarizeCell(spec, runs, ds.name, o.set?.[spec.model] ?? {}));
  }

  const paper = PAPER_TABLES[ds.name];
  const summary: BenchSummary = {
    format: 'probsem-bench-paper',
    formatVersion: 1,
    createdAt: new Date().toISOString(),
    dataset: { name: ds.name, hash: datasetHash(ds), trainCount: ds.train.count, testCount: ds.test.count },
    settings,
    seeds,
    judge,
    paperTable: paper?.table ?? null,
    cells,
  };
  await ensureDir(outDir);
  const base = join(outDir, `paper-${dsSlug}-${isoDate(o.date ?? new Date())}`);
  const jsonPath = `${base}.json`;
  const reportPath = `${base}.md`;
  writeFileAtomicSync(jsonPath, JSON.stringify(summary, null, 2) + '\n');
  writeFileAtomicSync(reportPath, renderReport(summary, runsDir));
  return { reportPath, jsonPath, summary };
}

/** Refuses a runs directory that holds cells trained with other settings. */
function checkManifest(runsDir: string, m: { dataset: string; datasetHash: string; steps: number; batchSize: number; lr: number; lrSchedule?: LrSchedule }): void {
  const path = join(runsDir, MANIFEST_FILE);
  if (existsSync(path)) {
    let old: typeof m;
    try {
      old = JSON.parse(readFileSync(path, 'utf8')) as typeof m;
    } catch (e) {
      throw new ProbsemError(`${path} is not valid JSON: ${(e as Error).message}`, 'BAD_OPTION');
    }
    const diffs = (Object.keys(m) as (keyof typeof m)[]).filter((k) => old[k] !== m[k]).map((k) => `${k} ${String(old[k])} (now ${String(m[k])})`);
    if (diffs.length > 0) {
      throw new ProbsemError(`${runsDir} holds a bench trained with other settings: ${diffs.join(', ')}; choose another runs directory`, 'BAD_OPTION');
    }
    return;
  }
  writeFileAtomicSync(path, JSON.stringify(m, null, 2) + '\n');
}

interface StoredEval {
  settings: BenchSettings;
  model: string;
  latent: number;
  seed: number;
  /** The cell's chosen model options (`BenchPaperOptions.set`), absent when none. */
  options?: Record<string, unknown>;
  report: EvalReport;
}

async function runCell(
  o: BenchPaperOptions,
  r: ReturnType<typeof resolveBenchOptions>,
  settings: BenchSettings,
  runsDir: string,
  spec: BenchModelSpec,
  seed: number,
  seedIndex: number,
): Promise<BenchCellRun> {
  const chosen = o.set?.[spec.model] ?? {};
  const dir = join(runsDir, `${spec.model}-${spec.latent}d${optionsSlug(chosen)}-s${seed}`);
  const evalPath = join(dir, EVAL_FILE);
  const stored = readStoredEval(evalPath);
  if (
    stored &&
    JSON.stringify(stored.settings) === JSON.stringify(settings) &&
    stored.model === spec.model &&
    stored.latent === spec.latent &&
    sortedJson(stored.options ?? {}) === sortedJson(chosen)
  ) {
    o.onCell?.({ spec, seed, seedIndex, state: 'kept' });
    return { seed, dir, report: stored.report };
  }

  if (!isTrained(dir, spec, seed, r.steps)) {
    const resume = canResume(dir, spec, seed, r);
    o.onCell?.({ spec, seed, seedIndex, state: resume ? 'resume' : 'train' });
    await trainRun({
      model: spec.model,
      dataset: o.dataset,
      dataDir: o.dataDir,
      latent: spec.latent,
      steps: r.steps,
      batchSize: r.batchSize,
      lr: r.lr,
      lrSchedule: r.lrSchedule,
      seed,
      out: dir,
      checkpointEvery: o.checkpointEvery ?? 500,
      resume,
      force: !resume,
      modelOptions: { ...o.modelOptions?.[spec.model], ...chosen },
      onNotice: o.onNotice,
      onProgress: (p) => o.onTrainProgress?.(spec, seedIndex, p),
    });
  }
  o.onCell?.({ spec, seed, seedIndex, state: 'evaluate' });
  const report = await evaluateRun(dir, {
    dataset: o.dataset,
    dataDir: o.dataDir,
    seed: r.evalSeed,
    samplesPerLabel: r.samplesPerLabel,
    repeats: r.repeats,
    skipGeneration: o.skipGeneration,
    judgeCacheDir: o.judgeCacheDir,
    judgeEpochs: o.judgeEpochs,
    save: true,
    onNotice: o.onNotice,
    onGenerationProgress: (done, total) => o.onGenerationProgress?.(spec, seed, done, total),
  });
  const out: StoredEval = { settings, model: spec.model, latent: spec.latent, seed, ...(Object.keys(chosen).length > 0 ? { options: chosen } : {}), report };
  writeFileAtomicSync(evalPath, JSON.stringify(out, null, 2) + '\n');
  return { seed, dir, report };
}

function readStoredEval(path: string): StoredEval | null {
  if (!existsSync(path)) return null;
  try {
    const e = JSON.parse(readFileSync(path, 'utf8')) as StoredEval;
    return e && typeof e === 'object' && e.report && typeof e.report.reconstructionError === 'number' ? e : null;
  } catch {
    return null; // a damaged eval file is simply redone
  }
}

function sortedJson(options: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(options).sort().map((k) => [k, options[k]]));
}

/** `-key=value` parts for a run directory's name, in key order; '' without options. */
export function optionsSlug(options: Record<string, unknown>): string {
  return Object.keys(options)
    .sort()
    .map((k) => `-${k}=${JSON.stringify(options[k]).replace(/[^A-Za-z0-9_.,=-]+/g, '')}`)
    .join('');
}

/** A finished run of this cell: model.json for the model, latent, seed and step count asked for. */
function isTrained(dir: string, spec: BenchModelSpec, seed: number, steps: number): boolean {
  if (!existsSync(join(dir, 'model.json'))) return false;
  try {
    const meta = readModelMeta(dir);
    return meta.model === spec.model && Number(meta.config.latent) === spec.latent && meta.training?.seed === seed && meta.training?.steps === steps;
  } catch {
    return false;
  }
}

/** A checkpoint of this cell's run that stops short of the end. */
function canResume(dir: string, spec: BenchModelSpec, seed: number, r: { steps: number; batchSize: number; lr: number; lrSchedule: LrSchedule }): boolean {
  const path = join(dir, CHECKPOINT_FILE);
  if (!existsSync(path)) return false;
  try {
    const h = readCheckpoint(path).header;
    const latent = (h.config as { latent?: unknown } | null)?.latent;
    return (
      h.model === spec.model &&
      latent === spec.latent &&
      h.seed === seed &&
      h.batchSize === r.batchSize &&
      h.lr === r.lr &&
      (h.lrSchedule ?? 'constant') === r.lrSchedule &&
      h.step < r.steps
    );
  } catch {
    return false; // a damaged checkpoint: train afresh
  }
}

function summarizeCell(spec: BenchModelSpec, runs: BenchCellRun[], datasetName: string, options: Record<string, unknown>): BenchCell {
  const pick = (f: (e: EvalReport) => number | null): Stat | null => {
    const v = runs.map((x) => f(x.report));
    return v.every((x): x is number => typeof x === 'number') ? stat(v) : null;
  };
  const repeatSds = runs.map((x) => x.report.generationSd);
  let config: Record<string, unknown> = {};
  try {
    config = readModelMeta(runs[0].dir).config;
  } catch {
    /* the config is informative only */
  }
  return {
    key: spec.key,
    model: spec.model,
    latent: spec.latent,
    label: spec.label + (Object.keys(options).length > 0 ? `, ${Object.entries(options).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(', ')}` : ''),
    ...(Object.keys(options).length > 0 ? { options } : {}),
    seeds: runs.map((x) => x.seed),
    config,
    reconstructionError: stat(runs.map((x) => x.report.reconstructionError)),
    reconstructionErrorMean: stat(runs.map((x) => x.report.reconstructionErrorMean)),
    annotationAccuracy: pick((e) => e.annotationAccuracy),
    generationAccuracy: pick((e) => e.generationAccuracy),
    generationRepeatSd: repeatSds.every((x): x is number => typeof x === 'number') ? repeatSds.reduce((a, b) => a + b, 0) / repeatSds.length : null,
    paper: PAPER_TABLES[datasetName]?.rows[spec.key] ?? null,
    runs: runs.map((x) => ({
      seed: x.seed,
      dir: x.dir,
      reconstructionError: x.report.reconstructionError,
      reconstructionErrorMean: x.report.reconstructionErrorMean,
      annotationAccuracy: x.report.annotationAccuracy,
      generationAccuracy: x.report.generationAccuracy,
      generationSd: x.report.generationSd,
    })),
  };
}

function fmtStat(s: Stat | null, scale: number, digits: number): string {
  if (!s) return 'n/a';
  const m = (s.mean * scale).toFixed(digits);
  return s.sd === null ? m : `${m} ± ${(s.sd * scale).toFixed(digits)}`;
}

/** The Markdown report: our means ± sd over seeds beside the paper's table. */
export function renderReport(s: BenchSummary, runsDir: string): string {
  const paper = PAPER_TABLES[s.dataset.name];
  const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : (100 * x).toFixed(1));
  const lines: string[] = [];
  lines.push(`# The PSE paper's evaluation on ${s.dataset.name}`);
  lines.push('');
  lines.push(
    `${s.seeds.length} seed(s) (${s.seeds.join(', ')}), ${s.settings.steps} steps, batch ${s.settings.batchSize}, Adam lr ${s.settings.lr}; ` +
      `${s.dataset.trainCount} training and ${s.dataset.testCount} test images (dataset hash ${s.dataset.hash}). ` +
      `Written ${s.createdAt} by \`probsem bench paper\`; run directories in \`${runsDir}\`.`,
  );
  lines.push('');
  lines.push(
    `Ours: mean ± sd over seeds${s.seeds.length === 1 ? ' (one seed: no sd)' : ''}. ` +
      (paper ? `Paper: ${paper.table}; its ± on generation is the sd over 10 repeats of one model.` : 'The paper reports no figures for this dataset.'),
  );
  lines.push('');
  lines.push('| model | reconstruction error (nats) | paper | annotation accuracy (%) | paper | generation accuracy (%) | sd over repeats | paper |');
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const c of s.cells) {
    const p = c.paper;
    const cols = [
      c.label,
      fmtStat(c.reconstructionError, 1, 1),
      p ? p.reconstructionError.toFixed(1) : '—',
      fmtStat(c.annotationAccuracy, 100, 1),
      p ? (p.annotationAccuracy === null ? 'N/A' : pct(p.annotationAccuracy)) : '—',
      fmtStat(c.generationAccuracy, 100, 1),
      c.generationRepeatSd === null ? 'n/a' : (100 * c.generationRepeatSd).toFixed(2),
      p ? `${pct(p.generationAccuracy)} ± ${pct(p.generationSd)}` : '—',
    ];
    lines.push(`| ${cols.join(' | ')} |`);
  }
  lines.push('');
  lines.push('Notes:');
  lines.push('');
  lines.push(
    '- Reconstruction error is the Bernoulli negative log-likelihood of the test images with z drawn once from the image ' +
      'posterior (q(z|x); CVAE: q(z|x,l) with the true label); from the posterior mean instead: ' +
      s.cells.map((c) => `${c.label} ${fmtStat(c.reconstructionErrorMean, 1, 1)}`).join(', ') +
      '.',
  );
  lines.push(
    '- Annotation scores the image posterior mean under every label distribution q(z|l) (CVAE has none). Generation decodes ' +
      'z ~ q(z|l) (CVAE: z ~ N(0, I) decoded with the label) and asks the judge whether each image shows its label' +
      (s.settings.samplesPerLabel !== null ? ` (${s.settings.samplesPerLabel} images per label, ${s.settings.repeats} repeats, evaluation seed ${s.settings.evalSeed})` : '') +
      '.',
  );
  if (s.judge) {
    lines.push(
      `- Judge: probsem's classifier for this dataset, test accuracy ${(100 * s.judge.accuracy).toFixed(2)} %` +
        (paper ? `; the paper's judge: ${paper.judge}. Generation figures move with the judge.` : '.'),
    );
  } else {
    lines.push('- Generation was skipped (no judge).');
  }
  lines.push('- SCAN is discussed but not in the paper\'s tables.');
  lines.push('');
  lines.push('Model configurations (each cell\'s `model.json`):');
  lines.push('');
  for (const c of s.cells) {
    const { inputDim: _i, numClasses: _n, ...rest } = c.config;
    lines.push(`- ${c.label} (\`${c.model}\`): \`${JSON.stringify(rest)}\``);
  }
  lines.push('');
  return lines.join('\n');
}
