/**
 * `npm run bench`: times one PSE* training step (batch 100, latent 10, Adam) on probsem's default
 * backend and in the PyTorch reference (bench/pytorch_step.py) in the same run, alternating
 * A/B rounds, and prints JSON {probsemMsPerStep, pytorchMsPerStep, ratio, ...}. Results are also
 * written to bench/results/. Options: --json (JSON only), --rounds N, --steps N, --threads N (PyTorch),
 * --replicas 1,2 (probsem data-parallel replicas to time, default 1; the fastest is the headline),
 * --model, --batch, --latent.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initBackend } from '../src/core/backend.js';
import { Rng } from '../src/core/random.js';
import { createModel } from '../src/models/registry.js';
import { createStepEngine } from '../src/train/trainer.js';
import type { RawBatch } from '../src/train/parallel.js';
import { oneHot } from '../src/data/dataset.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    json: { type: 'boolean' },
    rounds: { type: 'string', default: '3' },
    steps: { type: 'string', default: '100' },
    threads: { type: 'string', default: '2' },
    backend: { type: 'string' },
    model: { type: 'string', default: 'pse-star' },
    batch: { type: 'string', default: '100' },
    latent: { type: 'string', default: '10' },
    replicas: { type: 'string', default: '1' },
  },
});
const log = (m: string) => {
  if (!opt.json) process.stderr.write(m + '\n');
};
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const backend = await initBackend(opt.backend);
const batch = Number(opt.batch);
const latent = Number(opt.latent);
const steps = Number(opt.steps);
const rounds = Number(opt.rounds);

/** ms per step of probsem's training step (as the trainer runs it) on a pool of synthetic batches. */
async function probsemRound(replicas: number): Promise<number> {
  const model = createModel(opt.model!, { inputDim: 784, numClasses: 10, latent }, 0);
  const rng = new Rng(1);
  const pool: RawBatch[] = Array.from({ length: 10 }, () => {
    const labels = Int32Array.from({ length: batch }, () => rng.int(10));
    return { x: rng.fillUniform(new Float32Array(batch * 784), 0, 1), y: oneHot(labels, 10), labels, rows: batch, pixels: 784, labelDim: 10 };
  });
  const engine = await createStepEngine(model, { lr: 1e-3, seed: 0, replicas, batchSize: batch, probe: pool[0] });
  const run = (n: number, from: number) => {
    for (let i = 0; i < n; i++) engine.stepRaw(pool[i % pool.length], from + i);
  };
  run(10, 0); // warm-up: kernel and XNNPACK operator caches
  const t0 = performance.now();
  run(steps, 10);
  const ms = (performance.now() - t0) / steps;
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

function pytorchRound(py: string): { ms: number; info: Record<string, unknown> } {
  const args = [join(HERE, 'pytorch_step.py'), '--model', opt.model!, '--batch', String(batch), '--latent', String(latent),
    '--steps', String(steps), '--warmup', '10', '--repeats', '1', '--threads', String(opt.threads)];
  const r = spawnSync(py, args, { encoding: 'utf8' });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  const j = JSON.parse(last || '{}') as Record<string, unknown>;
  if (r.status !== 0 || typeof j.msPerStep !== 'number') throw new Error(`pytorch_step.py failed: ${last || r.stderr}`);
  return { ms: j.msPerStep as number, info: j };
}

const py = findPython();
if (!py) log('python3 with torch not found: PyTorch reference skipped (Debian: apt-get install python3-torch libopenblas0-pthread)');
const replicaList = String(opt.replicas).split(',').map(Number);
const ours: Record<number, number[]> = Object.fromEntries(replicaList.map((r) => [r, []]));
const theirs: number[] = [];
let torchInfo: Record<string, unknown> = {};
// A/B alternation: every round runs each configuration once, so drift hits all alike.
for (let r = 0; r < rounds; r++) {
  for (const k of replicaList) {
    const ms = await probsemRound(k);
    ours[k].push(ms);
    log(`round ${r + 1}/${rounds}: probsem (${k} replica${k > 1 ? 's' : ''}) ${ms.toFixed(2)} ms/step`);
  }
  if (py) {
    const t = pytorchRound(py);
    theirs.push(t.ms);
    torchInfo = t.info;
    log(`round ${r + 1}/${rounds}: pytorch (${opt.threads} threads) ${t.ms.toFixed(2)} ms/step`);
  }
}
const medians = Object.fromEntries(replicaList.map((k) => [k, median(ours[k])]));
const best = replicaList.reduce((a, b) => (medians[b] < medians[a] ? b : a));
const probsemMsPerStep = medians[best];
const pytorchMsPerStep = theirs.length ? median(theirs) : null;
const result = {
  benchmark: `${opt.model} training step, batch ${batch}, latent ${latent}, Adam`,
  date: new Date().toISOString(),
  machine: { cpu: cpus()[0]?.model, cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  backend,
  probsemMsPerStep: +probsemMsPerStep.toFixed(3),
  probsemReplicas: best,
  pytorchMsPerStep: pytorchMsPerStep === null ? null : +pytorchMsPerStep.toFixed(3),
  ratio: pytorchMsPerStep === null ? null : +(probsemMsPerStep / pytorchMsPerStep).toFixed(3),
  probsemByReplicas: Object.fromEntries(replicaList.map((k) => [k, { medianMs: +medians[k].toFixed(3), rounds: ours[k].map((v) => +v.toFixed(3)) }])),
  pytorch: pytorchMsPerStep === null ? null : { torch: torchInfo.torch, threads: Number(opt.threads), rounds: theirs.map((v) => +v.toFixed(3)) },
};
mkdirSync(join(HERE, 'results'), { recursive: true });
writeFileSync(join(HERE, 'results', `bench-${result.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2) + '\n');
process.stdout.write(JSON.stringify(result, null, opt.json ? undefined : 2) + '\n');
