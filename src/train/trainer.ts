/**
 * The training loop: seeded batches, Adam, JSONL metric log, atomic checkpoints and exact resume.
 * It knows nothing of any specific model: it calls `model.loss` and follows the gradients.
 */
import * as tf from '@tensorflow/tfjs-core';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { ensureDir } from '../core/files.js';
import { Rng } from '../core/random.js';
import { Batcher, imagesToFloat, oneHot, type Split } from '../data/dataset.js';
import type { Trainable } from '../models/base.js';
import { Adam } from './adam.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';

export interface TrainProgress {
  step: number;
  steps: number;
  terms: Record<string, number>;
  msPerStep: number;
}

export interface TrainOptions {
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  /** Run directory for the log and checkpoints; none → nothing written. */
  outDir?: string;
  /** Checkpoint every N steps (and always at the end) when outDir is set; 0 → only at the end. */
  checkpointEvery?: number;
  /** Continue from outDir/checkpoint.bin. */
  resume?: boolean;
  /** Average and log the loss terms every N steps. */
  logEvery?: number;
  onProgress?: (p: TrainProgress) => void;
  /** Label inputs for the label encoder from class indices (default: one-hot). */
  labelInputs?: (labels: Int32Array) => { data: Float32Array; width: number };
  /** Model config recorded in checkpoints. */
  config?: unknown;
  /** Stop early after this step (for tests of resume); the run stays resumable. */
  stopAfter?: number;
}

export interface TrainResult {
  steps: number;
  startStep: number;
  seconds: number;
  finalTerms: Record<string, number>;
}

export const CHECKPOINT_FILE = 'checkpoint.bin';
export const LOG_FILE = 'train.jsonl';

/** Builds the batch tensors for a set of example indices. */
export function makeBatch(split: Split, idx: Int32Array, pixels: number, numClasses: number, labelInputs?: TrainOptions['labelInputs']) {
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) labels[i] = split.labels[idx[i]];
  const x = tf.tensor2d(imagesToFloat(split, idx, pixels), [idx.length, pixels]);
  const li = labelInputs ? labelInputs(labels) : { data: oneHot(labels, numClasses), width: numClasses };
  const y = tf.tensor2d(li.data, [idx.length, li.width]);
  return { x, y, labels };
}

export async function train(
  model: Trainable,
  split: Split,
  shape: { pixels: number; numClasses: number },
  opts: TrainOptions,
): Promise<TrainResult> {
  if (!Number.isInteger(opts.steps) || opts.steps < 1) {
    throw new ProbsemError(`steps must be a positive integer, got ${opts.steps}`, 'BAD_OPTION');
  }
  if (!(opts.lr > 0) || !Number.isFinite(opts.lr)) throw new ProbsemError(`learning rate must be > 0, got ${opts.lr}`, 'BAD_OPTION');
  const batcher = new Batcher(split.count, opts.batchSize, opts.seed);
  const vars = model.params.entries();
  const byVarName = new Map(vars.map(([n, v]) => [v.name, n]));
  const adam = new Adam(vars, { lr: opts.lr });
  const logEvery = Math.max(1, opts.logEvery ?? 50);
  const ckptPath = opts.outDir ? join(opts.outDir, CHECKPOINT_FILE) : null;
  const logPath = opts.outDir ? join(opts.outDir, LOG_FILE) : null;
  if (opts.outDir) await ensureDir(opts.outDir);

  let start = 0;
  if (opts.resume) {
    if (!ckptPath || !existsSync(ckptPath)) {
      throw new ProbsemError(`cannot resume: no ${CHECKPOINT_FILE} in ${opts.outDir ?? '(no run directory)'}`, 'NOT_FOUND');
    }
    const ck = readCheckpoint(ckptPath);
    const h = ck.header;
    if (h.model !== model.name || h.seed !== opts.seed || h.batchSize !== opts.batchSize || h.lr !== opts.lr) {
      throw new ProbsemError(
        `cannot resume: checkpoint was made by ${h.model} with seed ${h.seed}, batch ${h.batchSize}, lr ${h.lr}; ` +
          `this run asks for ${model.name} with seed ${opts.seed}, batch ${opts.batchSize}, lr ${opts.lr}`,
        'BAD_OPTION',
      );
    }
    model.params.load(h.params, ck.params, ckptPath);
    adam.load(h.optimizer.t, h.optimizer.tensors, ck.optimizer, ckptPath);
    start = h.step;
    if (logPath) truncateLog(logPath, start);
  } else if (logPath) {
    writeFileSync(logPath, '');
  }

  const saveCheckpoint = (step: number) => {
    if (!ckptPath) return;
    const p = model.params.serialize();
    const o = adam.serialize();
    writeCheckpoint(
      ckptPath,
      {
        step,
        model: model.name,
        config: opts.config ?? null,
        seed: opts.seed,
        batchSize: opts.batchSize,
        lr: opts.lr,
        params: p.manifest,
        optimizer: { t: o.t, tensors: o.manifest, bytes: o.blob.byteLength },
      },
      p.blob,
      o.blob,
    );
  };

  opts.onProgress?.({ step: start, steps: opts.steps, terms: {}, msPerStep: 0 });
  const t0 = performance.now();
  let windowStart = performance.now();
  const sums: Record<string, number> = {};
  let inWindow = 0;
  let lastTerms: Record<string, number> = {};
  const end = Math.min(opts.steps, opts.stopAfter ?? opts.steps);

  for (let step = start; step < end; step++) {
    const idx = batcher.indices(step);
    const { x, y, labels } = makeBatch(split, idx, shape.pixels, shape.numClasses, opts.labelInputs);
    const rng = Rng.for(opts.seed, 'step', step);
    let termTensors: Record<string, tf.Scalar> = {};
    const { value, grads } = tf.variableGrads(() => {
      const r = model.loss({ x, y, labels, rng }, step);
      termTensors = Object.fromEntries(Object.entries(r.terms).map(([k, t]) => [k, tf.keep(t)]));
      return r.total;
    });
    const gradMap = new Map<string, tf.Tensor>();
    for (const [vn, g] of Object.entries(grads)) gradMap.set(byVarName.get(vn) ?? vn, g);
    const total = value.dataSync()[0];
    const terms: Record<string, number> = { loss: total };
    for (const [k, t] of Object.entries(termTensors)) terms[k] = t.dataSync()[0];
    if (!Number.isFinite(total)) {
      const bad = Object.entries(terms).filter(([, v]) => !Number.isFinite(v)).map(([k]) => k);
      tf.dispose([x, y, value, ...Object.values(grads), ...Object.values(termTensors)]);
      throw new ProbsemError(
        `non-finite loss at step ${step + 1} (terms: ${bad.join(', ')}); the last checkpoint is kept`,
        'NAN',
      );
    }
    adam.apply(gradMap);
    tf.dispose([x, y, value, ...Object.values(grads), ...Object.values(termTensors)]);

    for (const [k, v] of Object.entries(terms)) sums[k] = (sums[k] ?? 0) + v;
    inWindow++;
    const done = step + 1;
    if (done % logEvery === 0 || done === opts.steps || done === end) {
      const now = performance.now();
      const msPerStep = (now - windowStart) / inWindow;
      lastTerms = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / inWindow]));
      if (logPath) appendFileSync(logPath, JSON.stringify({ step: done, msPerStep: round(msPerStep), ...roundAll(lastTerms) }) + '\n');
      opts.onProgress?.({ step: done, steps: opts.steps, terms: lastTerms, msPerStep });
      for (const k of Object.keys(sums)) delete sums[k];
      inWindow = 0;
      windowStart = now;
    }
    const every = opts.checkpointEvery ?? 0;
    if (every > 0 && done % every === 0 && done !== end) saveCheckpoint(done);
  }
  saveCheckpoint(end);
  adam.dispose();
  return { steps: end, startStep: start, seconds: (performance.now() - t0) / 1000, finalTerms: lastTerms };
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
function roundAll(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v)]));
}

/** Drops log lines past `step`, so a resumed run's log reads as one run. */
function truncateLog(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as { step: number }).step <= step;
      } catch {
        return false;
      }
    });
  writeFileSync(path, kept.map((l) => l + '\n').join(''));
}
