/**
 * `npm run bench`: probsem's training step against the PyTorch reference (bench/pytorch_step.py,
 * same architecture and loss) on the same machine, in one run.
 *
 * - Training step (forward, backward, Adam, exactly as the trainer runs it, on a pool of synthetic
 *   batches) for PSE* at batch 100/500 and latent 10/20, for the VAE and JMVAE steps, and for a
 *   VAE with a convolutional encoder ('vae-conv': encoderConv [32, 64], 5×5). Every round runs
 *   each configuration once for probsem and once for PyTorch (A/B alternation), so drift on a
 *   shared machine hits both alike; the report gives medians. PyTorch runs with this machine's
 *   OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, in its own command only. 'informed' and
 *   'informed-conv' (no PyTorch twin) time probsem alone, e.g. against `--engine tfjs`.
 * - Evaluation throughput: images/s for encoding and for annotating 10,000 images.
 * - Resident memory before training and after 1,000 and 20,000 training steps.
 * - t-SNE (bench/tsne.ts; not with --quick): 10,000 points of dimension 20 mapped to 2-D,
 *   wall-clock and CPU seconds; under the result's `tsne` key (`tsne.secondsFor10000`).
 * - The exact KL index (bench/index.ts): 1M diagonal Gaussians of dimension 20, exact top-10 on one
 *   thread, batched throughput, the brute-force ratio and, where a clickhouse-server binary exists,
 *   the same search in ClickHouse; under the result's `index` key.
 *
 * Prints JSON (`--json`: one line) and writes it to bench/results/. The top-level `ratio` is
 * probsem/PyTorch for PSE* batch 100 latent 10 (below 1: probsem is faster).
 * Options: --rounds N (5), --steps N (100 per round), --threads N (PyTorch, 2), --configs
 * model:batch:latent,... , --quick (only the PSE* batch-100 latent-10 step; no index or t-SNE benchmark),
 * --engine auto|fast|tfjs, --memory-steps N (20000; 0 skips), --no-eval, --only index (only the
 * index benchmark), --only tsne (only the t-SNE benchmark), --index-items N (1000000), --index-dim K
 * (20; the issue's second anchor point is 64), --no-faiss (skip the FAISS anchor of the index),
 * --no-clickhouse (skip its ClickHouse part), --only clickhouse (one ClickHouse shard against two behind
 * a Distributed table, bench/clickhouse-shards.ts) with --ch-items N (1000000) and --ch-dim K (20).
 */
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/core/backend.js';
import { Rng } from '../src/core/random.js';
import { defaultKernelFma, defaultKernelThreads } from '../src/core/wasm/kernels.js';
import { oneHot, type Split } from '../src/data/dataset.js';
import type { HostBatch, ImageModel, Trainable } from '../src/models/base.js';
import { createModel } from '../src/models/registry.js';
import { annotationAccuracy, oneHotLabelInputs } from '../src/eval/metrics.js';
import { createStepEngine, type EngineChoice } from '../src/train/trainer.js';
import { runIndexBench } from './index.js';
import { runShardBench } from './clickhouse-shards.js';
import { runTsneBench } from './tsne.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    json: { type: 'boolean' },
    rounds: { type: 'string', default: '5' },
    steps: { type: 'string', default: '100' },
    threads: { type: 'string', default: '2' },
    backend: { type: 'string' },
    configs: { type: 'string' },
    quick: { type: 'boolean' },
    engine: { type: 'string', default: 'auto' },
    'memory-steps': { type: 'string', default: '20000' },
    'no-eval': { type: 'boolean' },
    only: { type: 'string' },
    'index-items': { type: 'string', default: '1000000' },
    'index-dim': { type: 'string', default: '20' },
    'ch-items': { type: 'string', default: '1000000' },
    'ch-dim': { type: 'string', default: '20' },
    'no-faiss': { type: 'boolean', default: false },
    'no-clickhouse': { type: 'boolean', default: false },
  },
});
const log = (m: string) => {
  if (!opt.json) process.stderr.write(m + '\n');
};
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r3 = (v: number) => +v.toFixed(3);

interface Config {
  model: string;
  batch: number;
  latent: number;
}
const HEADLINE: Config = { model: 'pse-star', batch: 100, latent: 10 };
const SUITE: Config[] = [
  HEADLINE,
  { model: 'pse-star', batch: 500, latent: 10 },
  { model: 'pse-star', batch: 100, latent: 20 },
  { model: 'pse-star', batch: 500, latent: 20 },
  { model: 'vae', batch: 100, latent: 10 },
  { model: 'jmvae', batch: 100, latent: 10 },
  // A convolutional encoder (encoderConv [32, 64], kernel 5) with the MLP decoder.
  { model: 'vae-conv', batch: 100, latent: 10 },
];
const configs: Config[] = opt.configs
  ? opt.configs.split(',').map((c) => {
      const [model, batch, latent] = c.split(':');
      return { model, batch: Number(batch ?? 100), latent: Number(latent ?? 10) };
    })
  : opt.quick
    ? [HEADLINE]
    : SUITE;
const key = (c: Config) => `${c.model} b${c.batch} l${c.latent}`;
const machine = { cpu: cpus()[0]?.model, cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
const indexBench = () => runIndexBench({ items: Number(opt['index-items']), dim: Number(opt['index-dim']), faiss: !opt['no-faiss'], clickhouse: !opt['no-clickhouse'], log });
const save = (result: { date: string; [key: string]: unknown }, name: string) => {
  mkdirSync(join(HERE, 'results'), { recursive: true });
  writeFileSync(join(HERE, 'results', `${name}-${result.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(JSON.stringify(result, null, opt.json ? undefined : 2) + '\n');
};

if (opt.only !== undefined) {
  if (opt.only !== 'index' && opt.only !== 'tsne' && opt.only !== 'clickhouse') {
    process.stderr.write(`--only: unknown benchmark "${opt.only}" (known: index, tsne, clickhouse)\n`);
    process.exit(2);
  }
  const date = new Date().toISOString();
  if (opt.only === 'clickhouse') {
    const clickhouse = await runShardBench({ items: Number(opt['ch-items']), dim: Number(opt['ch-dim']), log });
    save({ benchmark: 'ClickHouse: one shard against a Distributed table over two', date, machine, clickhouse }, 'bench-clickhouse');
  } else if (opt.only === 'tsne') {
    const tsne = await runTsneBench({ log });
    save({ benchmark: 't-SNE of 10,000 points', date, machine, tsne }, 'bench-tsne');
  } else {
    const index = await indexBench();
    save({ benchmark: 'exact KL index', date, machine, index }, 'bench-index');
  }
  process.exit(0);
}

const backend = await initBackend(opt.backend);
const steps = Number(opt.steps);
const rounds = Number(opt.rounds);
const engineChoice = opt.engine as EngineChoice;

function syntheticPool(batch: number, seed: number): HostBatch[] {
  const rng = new Rng(seed);
  return Array.from({ length: 10 }, () => {
    const labels = Int32Array.from({ length: batch }, () => rng.int(10));
    return { x: rng.fillUniform(new Float32Array(batch * 784), 0, 1), y: oneHot(labels, 10), labels, rows: batch, pixels: 784, labelDim: 10 };
  });
}

/** The registry name and config of a benchmark configuration ('vae-conv': the VAE with a convolutional encoder). */
function modelFor(c: Config): [string, object, number] {
  const base = { inputDim: 784, numClasses: 10, latent: c.latent };
  const conv = { encoderConv: [32, 64], encoderKernel: 5, imageHeight: 28 };
  if (c.model === 'vae-conv') return ['vae', { ...base, ...conv }, 0];
  if (c.model === 'informed-conv') return ['informed', { ...base, ...conv }, 0];
  return [c.model, base, 0];
}

/** ms per step of probsem's training step on a pool of synthetic batches. */
async function probsemRound(c: Config): Promise<number> {
  const model = createModel(...modelFor(c));
  const pool = syntheticPool(c.batch, 1);
  const engine = await createStepEngine(model, { lr: 1e-3, seed: 0, engine: engineChoice });
  const run = (n: number, from: number) => {
    for (let i = 0; i < n; i++) engine.stepRaw(pool[i % pool.length], from + i);
  };
  run(10, 0); // warm-up: compilation tiers, thread start
  const n = Math.max(10, Math.round((steps * 100) / c.batch));
  const t0 = performance.now();
  run(n, 10);
  const ms = (performance.now() - t0) / n;
  await engine.dispose();
  model.params.dispose();
  return ms;
}

/** Finds a python3 that can import torch. */
function findPython(): string | null {
  for (const py of [process.env.PROBSEM_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]) {
    const r = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

function pytorchRound(py: string, c: Config): { ms: number; info: Record<string, unknown> } {
  const n = Math.max(10, Math.round((steps * 100) / c.batch));
  const args = [join(HERE, 'pytorch_step.py'), '--model', c.model, '--batch', String(c.batch), '--latent', String(c.latent),
    '--steps', String(n), '--warmup', '10', '--repeats', '1', '--threads', String(opt.threads)];
  // This machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE slow OpenBLAS: the anchor runs without them, in its own command only.
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync(py, args, { encoding: 'utf8', env });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  const j = JSON.parse(last || '{}') as Record<string, unknown>;
  if (r.status !== 0 || typeof j.msPerStep !== 'number') throw new Error(`pytorch_step.py failed: ${last || r.stderr}`);
  return { ms: j.msPerStep as number, info: j };
}

/** Configurations bench/pytorch_step.py implements. */
const TORCH_MODELS = new Set(['pse-star', 'pse', 'vae', 'jmvae', 'vae-conv']);
const py = findPython();
if (!py) log('python3 with torch not found: PyTorch reference skipped (Debian: apt-get install python3-torch libopenblas0-pthread)');
const ours = new Map<string, number[]>(configs.map((c) => [key(c), []]));
const theirs = new Map<string, number[]>(configs.map((c) => [key(c), []]));
let torchInfo: Record<string, unknown> = {};
for (let r = 0; r < rounds; r++) {
  for (const c of configs) {
    const ms = await probsemRound(c);
    ours.get(key(c))!.push(ms);
    let line = `round ${r + 1}/${rounds} ${key(c).padEnd(18)} probsem ${ms.toFixed(2)} ms/step`;
    if (py && TORCH_MODELS.has(c.model)) {
      const t = pytorchRound(py, c);
      theirs.get(key(c))!.push(t.ms);
      torchInfo = t.info;
      line += `, pytorch ${t.ms.toFixed(2)} ms/step`;
    }
    log(line);
  }
}

const perConfig = configs.map((c) => {
  const a = ours.get(key(c))!;
  const b = theirs.get(key(c))!;
  return {
    ...c,
    probsem: { medianMs: r3(median(a)), rounds: a.map(r3) },
    pytorch: b.length ? { medianMs: r3(median(b)), rounds: b.map(r3) } : null,
    ratio: b.length ? r3(median(a) / median(b)) : null,
  };
});

/** images/s for encoding (posterior means) and annotating 10,000 synthetic images. */
async function evalThroughput(): Promise<Record<string, number>> {
  const model = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 10 }, 0) as unknown as ImageModel & Trainable;
  const n = 10_000;
  const rng = new Rng(2);
  const split: Split = {
    images: Uint8Array.from({ length: n * 784 }, () => rng.int(256)),
    labels: Uint8Array.from({ length: n }, () => rng.int(10)),
    count: n,
  };
  const labelInputs = oneHotLabelInputs(10);
  const x = tf.tensor2d(Float32Array.from(split.images, (v) => v / 255), [n, 784]);
  const encode = () => {
    for (let s = 0; s < n; s += 1000) tf.tidy(() => model.encodeImage(tf.slice(x, [s, 0], [1000, 784])).mean.dataSync());
  };
  encode(); // warm-up
  annotationAccuracy(model, split, 784, labelInputs);
  const t0 = performance.now();
  encode();
  const t1 = performance.now();
  annotationAccuracy(model, split, 784, labelInputs);
  const t2 = performance.now();
  tf.dispose([x, labelInputs]);
  model.params.dispose();
  return { images: n, encodeImagesPerSec: Math.round(n / ((t1 - t0) / 1000)), annotateImagesPerSec: Math.round(n / ((t2 - t1) / 1000)) };
}

/** Resident set size before training and after 1,000 and `total` PSE* steps. */
async function memoryOverSteps(total: number): Promise<Record<string, unknown>> {
  const mib = () => +(process.memoryUsage().rss / 2 ** 20).toFixed(1);
  const model = createModel('pse-star', { inputDim: 784, numClasses: 10, latent: 10 }, 0);
  const pool = syntheticPool(100, 3);
  const start = mib();
  const engine = await createStepEngine(model, { lr: 1e-3, seed: 0, engine: engineChoice });
  const marks: Record<string, number> = { beforeTraining: start };
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    engine.stepRaw(pool[i % pool.length], i);
    if (i + 1 === 1000 || i + 1 === total || (i + 1) % 5000 === 0) {
      marks[`after${i + 1}`] = mib();
      log(`memory: ${i + 1} steps, RSS ${marks[`after${i + 1}`]} MiB`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  await engine.dispose();
  model.params.dispose();
  const a = marks.after1000;
  const b = marks[`after${total}`];
  return { steps: total, rssMiB: marks, growthPercentFrom1000: a && b ? +(((b - a) / a) * 100).toFixed(2) : null, seconds: +seconds.toFixed(1) };
}

const evalResult = opt['no-eval'] ? null : await evalThroughput();
if (evalResult) log(`evaluation: encode ${evalResult.encodeImagesPerSec} images/s, annotate ${evalResult.annotateImagesPerSec} images/s`);
const memorySteps = Number(opt['memory-steps']);
const memory = memorySteps > 0 && !opt.quick ? await memoryOverSteps(memorySteps) : null;
const index = opt.quick ? null : await indexBench();
const tsne = opt.quick ? null : await runTsneBench({ log });

const head = perConfig.find((c) => key(c) === key(HEADLINE)) ?? perConfig[0];
const result = {
  benchmark: 'training step vs PyTorch (forward, backward, Adam), evaluation throughput, memory over training',
  date: new Date().toISOString(),
  machine,
  backend,
  engine: engineChoice,
  kernels: { threads: defaultKernelThreads(), fma: defaultKernelFma() },
  headline: key(head),
  probsemMsPerStep: head.probsem.medianMs,
  pytorchMsPerStep: head.pytorch?.medianMs ?? null,
  ratio: head.ratio,
  configs: perConfig,
  pytorch: py ? { torch: torchInfo.torch, threads: Number(opt.threads) } : null,
  evaluation: evalResult,
  memory,
  index,
  tsne,
};
save(result, 'bench');
