/**
 * The training loop: seeded batches, Adam, JSONL metric log, atomic checkpoints and exact resume.
 * It knows nothing of any specific model: it runs the model's objective (on the tape, or on tfjs
 * through `lossOf`) and follows the gradients.
 */
import * as tf from '@tensorflow/tfjs-core';
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../core/files.js';
import { Rng } from '../core/random.js';
import { Batcher, imagesToFloat, meanImage, oneHot, type Split, tagsOf } from '../data/dataset.js';
import { type Batch, type Trainable, lossOf } from '../models/base.js';
import { Kernels } from '../core/wasm/kernels.js';
import { FlatParams } from '../ops/flat-params.js';
import { Adam } from './adam.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { type NonFinitePolicy, NonFiniteError, batchGradients, nonFiniteGradient, nonFiniteGrads, nonFiniteLoss } from './gradients.js';
import { TapeStepper } from './tape-stepper.js';
import { type LrSchedule, lrFactor, lrSchedule } from './schedule.js';
import type { HostBatch as RawBatch } from '../models/base.js';

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
  /** Messages worth showing a user (skipped batches). */
  onNotice?: (msg: string) => void;
  /** Label inputs for the label encoder from class indices (default: one-hot). */
  labelInputs?: (labels: Int32Array) => { data: Float32Array; width: number };
  /**
   * Label inputs of the tag vocabulary, row-major [tags × width] (word vectors of `Dataset.tagNames`):
   * when given and the split carries tag sets, an image's label input is the mean of its tags'
   * rows (its class's input where its set is empty), the PSE paper's rule for phrases.
   */
  tagInputs?: { rows: Float32Array; width: number };
  /** Model config recorded in checkpoints. */
  config?: unknown;
  /** Stop early after this step (for tests of resume); the run stays resumable. */
  stopAfter?: number;
  /**
   * Must be 1 where given: data-parallel training over worker threads was removed (the kernel
   * engine uses both cores itself and was faster); kept so old invocations fail with a reason.
   */
  workers?: number;
  /**
   * A batch with a non-finite loss or gradient: 'stop' (default) ends training with an error and
   * a checkpoint of the last good weights; 'skip' leaves the weights alone, logs it and goes on.
   */
  onNonFinite?: NonFinitePolicy;
  /**
   * 'auto' (default) and 'fast': the model's objective recorded as a tape on probsem's wasm kernels;
   * 'tfjs': the same objective on tfjs ops with autodiff (the reference; tfjs-node or WebGPU where a user has them).
   */
  engine?: EngineChoice;
  /** Learning-rate schedule over the run's `steps` (default 'constant'). */
  lrSchedule?: LrSchedule;
  /**
   * Aborting it (Ctrl-C) ends training before the next step: the steps done are checkpointed
   * (when outDir is set) and TrainingInterrupted is thrown. While one is given the loop yields to
   * the event loop between steps, since a signal handler cannot run during a synchronous loop.
   */
  signal?: AbortSignal;
}

/** Training was stopped through TrainOptions.signal; `checkpoint` resumes it (null: no outDir). */
export class TrainingInterrupted extends ProbsemError {
  constructor(
    readonly step: number,
    readonly checkpoint: string | null,
  ) {
    super(`training stopped at step ${step}${checkpoint ? `; checkpoint in ${checkpoint}` : ''}`, 'INTERRUPTED');
  }
}

export type EngineChoice = 'auto' | 'fast' | 'tfjs';

/** What the loop needs from a step implementation. */
export interface StepEngine {
  readonly kind: 'fast' | 'tfjs';
  stepRaw(batch: RawBatch, step: number): Record<string, number>;
  /** Multiplies the learning rate of the following steps (the schedule's factor). */
  setLrFactor(f: number): void;
  optimizerState(): { t: number; manifest: import('../nn/params.js').TensorEntry[]; blob: Uint8Array };
  loadOptimizerState(t: number, manifest: import('../nn/params.js').TensorEntry[], blob: Uint8Array, source: string): void;
  /** Re-reads the model's variables (after a checkpoint was loaded into them). */
  syncFromModel(): void;
  /** Writes the engine's current weights into the model's variables (before checkpoints and at the end). */
  syncToModel(): void;
  dispose(): void | Promise<void>;
}

export interface TrainResult {
  steps: number;
  startStep: number;
  seconds: number;
  finalTerms: Record<string, number>;
  /** Steps whose batch was skipped for a non-finite loss or gradient (onNonFinite: 'skip'). */
  skippedSteps: number[];
  /** Which step implementation ran ('fast': the tape on probsem's kernels). */
  engine: 'fast' | 'tfjs';
}

export const CHECKPOINT_FILE = 'checkpoint.bin';
export const LOG_FILE = 'train.jsonl';

/** Builds a batch (plain arrays) for a set of example indices. */
export function makeRawBatch(
  split: Split,
  idx: Int32Array,
  pixels: number,
  numClasses: number,
  labelInputs?: TrainOptions['labelInputs'],
  tagInputs?: TrainOptions['tagInputs'],
): RawBatch {
  const labels = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) labels[i] = split.labels[idx[i]];
  const inputsOf = (ls: Int32Array) => (labelInputs ? labelInputs(ls) : { data: oneHot(ls, numClasses), width: numClasses });
  const li = inputsOf(labels);
  const x = imagesToFloat(split, idx, pixels);
  if (split.tagStart) {
    const tagSets = Array.from(idx, (i) => tagsOf(split, i));
    if (tagInputs) meanTagInputs(li.data, tagSets, tagInputs);
    return { x, y: li.data, labels, tagSets, rows: idx.length, pixels, labelDim: li.width };
  }
  if (!split.labels2) return { x, y: li.data, labels, rows: idx.length, pixels, labelDim: li.width };
  // Two-object images: the label input is the mean of both labels' inputs (the PSE paper's rule for phrases).
  const labels2 = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) labels2[i] = split.labels2[idx[i]];
  const second = inputsOf(labels2).data;
  for (let i = 0; i < li.data.length; i++) li.data[i] = 0.5 * (li.data[i] + second[i]);
  return { x, y: li.data, labels, labels2, rows: idx.length, pixels, labelDim: li.width };
}

/** Overwrites each row of `y` whose tag set is not empty with the mean of its tags' input rows. */
function meanTagInputs(y: Float32Array, tagSets: ArrayLike<number>[], tags: { rows: Float32Array; width: number }): void {
  const w = tags.width;
  if (y.length !== tagSets.length * w) throw new ProbsemError(`tag inputs have width ${w}, the class inputs ${y.length / tagSets.length}`, 'SHAPE');
  tagSets.forEach((set, r) => {
    if (set.length === 0) return;
    const row = y.subarray(r * w, (r + 1) * w).fill(0);
    for (let j = 0; j < set.length; j++) {
      const t = set[j];
      if (t * w >= tags.rows.length) throw new ProbsemError(`tag ${t} has no label input (${tags.rows.length / w} tags)`, 'BAD_INPUT');
      for (let c = 0; c < w; c++) row[c] += tags.rows[t * w + c] / set.length;
    }
  });
}

/**
 * The tfjs engine's step: the objective under tfjs autodiff gives the loss and gradients; after
 * the non-finite guard, the gradients go into the flat gradient buffer and the one `Adam` (on
 * probsem's kernels) updates the parameters it has gradients for, whose new values are written
 * back into the tfjs variables. Separate from the loop so benchmarks time exactly what training does.
 */
export class Stepper implements StepEngine {
  readonly kind = 'tfjs';
  readonly adam: Adam;

  private constructor(
    readonly model: Trainable,
    private readonly kernels: Kernels,
    private readonly flat: FlatParams,
    lr: number,
    readonly seed: number,
  ) {
    this.adam = new Adam(kernels, flat, lr, (name) => model.params.lrScale(name));
  }

  static async create(model: Trainable, lr: number, seed = 0, threads?: number): Promise<Stepper> {
    const kernels = await Kernels.create({ threads });
    return new Stepper(model, kernels, new FlatParams(kernels, model.params), lr, seed);
  }

  setLrFactor(f: number): void {
    this.adam.lrFactor = f;
  }

  /** Runs one step and returns the loss terms; throws NonFiniteError (without updating) on a non-finite loss or gradient. */
  step(batch: Batch, step: number): Record<string, number> {
    const g = batchGradients(this.model, batch, step);
    try {
      if (!Number.isFinite(g.terms.loss)) throw nonFiniteLoss(step, g.terms);
      const badGrads = nonFiniteGrads(g.grads);
      if (badGrads.length > 0) throw nonFiniteGradient(step, badGrads);
      const segments = this.flat.layout.filter((seg) => g.grads.has(seg.name));
      for (const seg of segments) this.kernels.view(this.flat.grad(seg.name)).set(g.grads.get(seg.name)!.dataSync() as Float32Array);
      this.adam.update(segments);
      this.flat.push(segments.map((seg) => seg.name));
      return g.terms;
    } finally {
      g.dispose();
    }
  }

  stepRaw(b: RawBatch, step: number): Record<string, number> {
    const x = tf.tensor2d(b.x, [b.rows, b.pixels]);
    const y = tf.tensor2d(b.y, [b.rows, b.labelDim]);
    try {
      return this.step({ x, y, labels: b.labels, labels2: b.labels2, tagSets: b.tagSets, rng: Rng.for(this.seed, 'step', step) }, step);
    } finally {
      tf.dispose([x, y]);
    }
  }

  optimizerState() {
    return this.adam.serialize();
  }

  loadOptimizerState(t: number, manifest: import('../nn/params.js').TensorEntry[], blob: Uint8Array, source: string): void {
    this.adam.load(t, manifest, blob, source);
  }

  syncFromModel(): void {
    this.flat.pull();
  }

  syncToModel(): void {}

  async dispose(): Promise<void> {
    await this.kernels.dispose();
  }
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
  lrSchedule(opts.lrSchedule ?? 'constant');
  const batcher = new Batcher(split.count, opts.batchSize, opts.seed);
  if (opts.workers !== undefined && opts.workers !== 1) {
    throw new ProbsemError(
      `data-parallel training (--workers ${opts.workers}) was removed: the kernel engine runs both cores itself and was faster; drop --workers`,
      'BAD_OPTION',
    );
  }
  const engine = await createStepEngine(model, { lr: opts.lr, seed: opts.seed, engine: opts.engine });
  try {
    return await runLoop(model, split, shape, opts, batcher, engine);
  } finally {
    await engine.dispose();
  }
}

/** The step implementation an engine choice asks for. */
export async function createStepEngine(model: Trainable, o: { lr: number; seed: number; engine?: EngineChoice; threads?: number }): Promise<StepEngine> {
  const choice = o.engine ?? 'auto';
  if (!['auto', 'fast', 'tfjs'].includes(choice)) throw new ProbsemError(`engine must be auto, fast or tfjs, got ${String(choice)}`, 'BAD_OPTION');
  if (choice === 'tfjs') return Stepper.create(model, o.lr, o.seed, o.threads);
  return TapeStepper.create(model, { lr: o.lr, seed: o.seed, threads: o.threads });
}

async function runLoop(
  model: Trainable,
  split: Split,
  shape: { pixels: number; numClasses: number },
  opts: TrainOptions,
  batcher: Batcher,
  engine: StepEngine,
): Promise<TrainResult> {
  const logEvery = Math.max(1, opts.logEvery ?? 50);
  const ckptPath = opts.outDir ? join(opts.outDir, CHECKPOINT_FILE) : null;
  const logPath = opts.outDir ? join(opts.outDir, LOG_FILE) : null;
  if (opts.outDir) {
    await ensureDir(opts.outDir);
    removeStaleTemporaries(opts.outDir);
  }

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
    if ((h.replicas ?? 1) > 1) {
      opts.onNotice?.(`the checkpoint was trained data-parallel on ${h.replicas} workers; it continues on one (the noise of later steps differs from that run's)`);
    }
    const schedule = opts.lrSchedule ?? 'constant';
    if ((h.lrSchedule ?? 'constant') !== schedule) {
      throw new ProbsemError(`cannot resume: the checkpoint's learning-rate schedule is ${h.lrSchedule ?? 'constant'}, this run asks for ${schedule}`, 'BAD_OPTION');
    }
    if (schedule !== 'constant' && h.scheduleSteps !== opts.steps) {
      throw new ProbsemError(
        `cannot resume: the ${schedule} learning-rate schedule of the checkpoint spans ${h.scheduleSteps} steps; resume with --steps ${h.scheduleSteps}`,
        'BAD_OPTION',
      );
    }
    if (opts.config !== undefined && h.config !== null && JSON.stringify(h.config) !== JSON.stringify(opts.config)) {
      throw new ProbsemError(
        `cannot resume: the checkpoint's model config ${JSON.stringify(h.config)} differs from this run's ${JSON.stringify(opts.config)}`,
        'BAD_OPTION',
      );
    }
    model.params.load(h.params, ck.params, ckptPath);
    engine.syncFromModel();
    engine.loadOptimizerState(h.optimizer.t, h.optimizer.tensors, ck.optimizer, ckptPath);
    start = h.step;
    const end = Math.min(opts.steps, opts.stopAfter ?? opts.steps);
    if (start >= end) {
      throw new ProbsemError(`cannot resume: the checkpoint is already at step ${start}; ask for more than ${start} steps`, 'BAD_OPTION');
    }
    if (logPath) truncateLog(logPath, start);
  } else {
    model.initFromData?.({ meanImage: meanImage(split, shape.pixels) });
    engine.syncFromModel();
    if (logPath) writeFileSync(logPath, '');
  }

  const saveCheckpoint = (step: number) => {
    if (!ckptPath) return;
    engine.syncToModel();
    const p = model.params.serialize();
    const o = engine.optimizerState();
    writeCheckpoint(
      ckptPath,
      {
        step,
        model: model.name,
        config: opts.config ?? null,
        seed: opts.seed,
        batchSize: opts.batchSize,
        lr: opts.lr,
        replicas: 1,
        ...(opts.lrSchedule && opts.lrSchedule !== 'constant' ? { lrSchedule: opts.lrSchedule, scheduleSteps: opts.steps } : {}),
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
  const skipped: number[] = [];

  for (let step = start; step < end; step++) {
    if (opts.signal) {
      await new Promise((r) => setImmediate(r));
      if (opts.signal.aborted) {
        saveCheckpoint(step);
        throw new TrainingInterrupted(step, ckptPath);
      }
    }
    const idx = batcher.indices(step);
    let terms: Record<string, number> | null = null;
    try {
      engine.setLrFactor(lrFactor(opts.lrSchedule ?? 'constant', step, opts.steps));
      terms = engine.stepRaw(makeRawBatch(split, idx, shape.pixels, shape.numClasses, opts.labelInputs, opts.tagInputs), step);
    } catch (e) {
      if (!(e instanceof NonFiniteError)) throw e;
      if (opts.onNonFinite !== 'skip') {
        // The weights are still those before this step: keep them as the checkpoint to resume from.
        saveCheckpoint(step);
        throw new ProbsemError(
          `${e.message}; training stopped${ckptPath ? ` and the last good weights (step ${step}) are in ${ckptPath}` : ''}. ` +
            `Resume with a lower learning rate, or skip such batches with --on-nan skip.`,
          'NAN',
        );
      }
      // A skipped step still ends log windows and takes its checkpoint, so the schedule is unchanged.
      skipped.push(step + 1);
      if (logPath) appendFileSync(logPath, JSON.stringify({ step: step + 1, skipped: e.what }) + '\n');
      opts.onNotice?.(`${e.message}: batch skipped`);
    }

    if (terms) {
      for (const [k, v] of Object.entries(terms)) sums[k] = (sums[k] ?? 0) + v;
      inWindow++;
    }
    const done = step + 1;
    if (done % logEvery === 0 || done === opts.steps || done === end) {
      const now = performance.now();
      const msPerStep = (now - windowStart) / Math.max(1, inWindow);
      if (inWindow > 0) {
        lastTerms = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / inWindow]));
        if (logPath) appendFileSync(logPath, JSON.stringify({ step: done, msPerStep: round(msPerStep), ...roundAll(lastTerms) }) + '\n');
      }
      opts.onProgress?.({ step: done, steps: opts.steps, terms: lastTerms, msPerStep });
      for (const k of Object.keys(sums)) delete sums[k];
      inWindow = 0;
      windowStart = now;
    }
    const every = opts.checkpointEvery ?? 0;
    if (every > 0 && done % every === 0 && done !== end) saveCheckpoint(done);
  }
  engine.syncToModel();
  saveCheckpoint(end);
  return { steps: end, startStep: start, seconds: (performance.now() - t0) / 1000, finalTerms: lastTerms, skippedSteps: skipped, engine: engine.kind };
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
function roundAll(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v)]));
}

/** Half-written checkpoint temporaries left by a killed run (the run directory is this run's own). */
function removeStaleTemporaries(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (name.startsWith(`${CHECKPOINT_FILE}.tmp-`) && name !== `${CHECKPOINT_FILE}.tmp-${process.pid}`) rmSync(join(dir, name), { force: true });
  }
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
  writeFileAtomicSync(path, kept.map((l) => l + '\n').join(''));
}
