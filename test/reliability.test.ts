// Crash safety, full disks, non-finite numbers and determinism: a user's long runs must survive all four.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from './helpers.js';
import { Rng } from '../src/core/random.js';
import { loadDataset } from '../src/data/registry.js';
import type { Dataset } from '../src/data/dataset.js';
import { createModel } from '../src/models/registry.js';
import type { ImageModel, Trainable } from '../src/models/base.js';
import type { Ops } from '../src/ops/types.js';
import { train } from '../src/train/trainer.js';
import { readCheckpoint } from '../src/train/checkpoint.js';
import { annotationAccuracy, oneHotLabelInputs, reconstructionError } from '../src/eval/metrics.js';

let ds: Dataset;
before(async () => {
  await setupBackend();
  ds = await loadDataset('fashion-mnist-subset');
});

const SHAPE = { pixels: 784, numClasses: 10 };
const small = { inputDim: 784, numClasses: 10, latent: 4, encoderHidden: [32, 16], decoderHidden: [16, 32] };
const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-rel-'));
const weights = (m: Trainable) => Buffer.from(m.params.serialize().blob);

const FIXTURE = join('test', 'fixtures', 'train-killable.ts');
const STEPS = 120;

/** Runs the killable fixture; resolves with its stdout when it exits or after `killAtStep` (SIGKILL). */
function runFixture(dir: string, killAtStep: number | null, delayMs: number): Promise<{ out: string; killed: boolean; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir, String(STEPS)], {
      env: { ...process.env, PROBSEM_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = [...out.matchAll(/step (\d+)/g)].pop();
      if (!killed && killAtStep !== null && m && Number(m[1]) >= killAtStep) {
        killed = true;
        setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!killed && code !== 0) reject(new Error(`fixture exited ${code}: ${err}`));
      else resolve({ out, killed, code });
    });
  });
}

test('SIGKILL at random points, then resume: same final weights as an uninterrupted run, checkpoints always readable', async (t) => {
  const reference = await runFixture(tmp(), null, 0);
  const refHash = /hash (\w+)/.exec(reference.out)![1];

  const dir = tmp();
  const rng = new Rng(2026);
  const kills: number[] = [];
  let last = 0;
  for (let attempt = 0; attempt < 12; attempt++) {
    // Each kill lands a random number of steps after the last checkpoint we know of, plus 0-15 ms,
    // so some land mid-step and some mid-checkpoint-write.
    const target = Math.min(STEPS - 5, last + 3 + Math.floor(rng.uniform() * 25));
    const r = await runFixture(dir, kills.length < 5 ? target : null, Math.floor(rng.uniform() * 15));
    const ckpt = join(dir, 'checkpoint.bin');
    if (existsSync(ckpt)) {
      const h = readCheckpoint(ckpt).header; // throws if unreadable
      assert.ok(h.step % 7 === 0 || h.step === STEPS, `checkpoint at step ${h.step}`);
      last = h.step;
    }
    if (r.killed) {
      const seen = Math.max(...[...r.out.matchAll(/step (\d+)/g)].map((m) => Number(m[1])));
      t.diagnostic(`kill ${kills.length + 1}: after step ${seen} was reported; checkpoint on disk at step ${last}, readable`);
    }
    if (!r.killed) {
      assert.equal(r.code, 0);
      assert.equal(/hash (\w+)/.exec(r.out)![1], refHash, 'the resumed run ends with the uninterrupted weights');
      break;
    }
    kills.push(target);
  }
  assert.equal(kills.length, 5, `killed five times (at steps ≥ ${kills.join(', ')})`);
  assert.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp-')), [], 'no half-written temporaries are left');
  // The log reads as one run: every step once, in order.
  const steps = readFileSync(join(dir, 'train.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { step: number }).step);
  assert.deepEqual(steps, Array.from({ length: STEPS }, (_, i) => i + 1));
});

test('a full disk fails the checkpoint write with a clear message and keeps the previous checkpoint', async () => {
  const dir = tmp();
  const make = () => createModel('pse', small, 1);
  await train(make(), ds.train, SHAPE, { steps: 6, batchSize: 10, lr: 1e-3, seed: 1, outDir: dir, checkpointEvery: 2, stopAfter: 2 });
  const before = readFileSync(join(dir, 'checkpoint.bin'));
  // The checkpoint is written to a temporary sibling first; point that name at /dev/full (ENOSPC).
  const tmpName = join(dir, `checkpoint.bin.tmp-${process.pid}`);
  symlinkSync('/dev/full', tmpName);
  await assert.rejects(
    train(make(), ds.train, SHAPE, { steps: 6, batchSize: 10, lr: 1e-3, seed: 1, outDir: dir, checkpointEvery: 2, resume: true }),
    /could not write .*checkpoint\.bin: ENOSPC/,
  );
  assert.deepEqual(readFileSync(join(dir, 'checkpoint.bin')), before, 'the previous checkpoint is untouched');
  assert.equal(readCheckpoint(join(dir, 'checkpoint.bin')).header.step, 2);
  assert.ok(!existsSync(tmpName), 'the temporary file is removed');
});

const ENGINES = ['fast', 'tfjs'] as const;

/** A PSE whose objective is poisoned at the given steps: `kind` picks the loss or only a gradient. */
function poisoned(steps: number[], kind: 'loss' | 'gradient'): Trainable {
  const m = createModel('pse', small, 1);
  const orig = m.objective.bind(m);
  m.objective = <T,>(o: Ops<T>, phase: string) => {
    const r = orig(o, phase);
    if (kind === 'loss') {
      const kl = o.mul(r.terms.kl, o.schedule((step) => (steps.includes(step) ? NaN : 1)));
      return { total: o.add(r.total, o.affine(kl, 0)), terms: { ...r.terms, kl } };
    }
    // A finite zero term whose gradient into encoder.0.w is NaN at the poisoned steps.
    const poison = o.custom(
      {
        name: 'poison',
        forward: ([w], _shapes, ctx) => ({ value: new Float32Array(1), backward: () => [new Float32Array(w.length).fill(steps.includes(ctx.step) ? NaN : 0)] }),
      },
      [o.param('encoder.0.w')],
      [1, 1],
    );
    return { total: o.add(r.total, poison), terms: r.terms };
  };
  return m;
}

for (const engine of ENGINES) test(`${engine} engine: a non-finite loss stops training, naming the step and term, with the last good weights checkpointed`, async () => {
  const m = poisoned([2, 3, 4], 'loss');
  const dir = tmp();
  await assert.rejects(
    train(m, ds.train, SHAPE, { steps: 5, batchSize: 10, lr: 1e-3, seed: 1, outDir: dir, checkpointEvery: 100, engine }),
    /non-finite loss \(terms: loss, kl\) at step 3; training stopped and the last good weights \(step 2\) are in .*checkpoint\.bin/,
  );
  const ck = readCheckpoint(join(dir, 'checkpoint.bin'));
  assert.equal(ck.header.step, 2);
  assert.ok(m.params.variables().every((v) => v.dataSync().every(Number.isFinite)), 'weights were not updated with NaN');
});

for (const engine of ENGINES) test(`${engine} engine: a non-finite gradient with a finite loss is caught too, naming the parameter`, async () => {
  const m = poisoned([1], 'gradient');
  await assert.rejects(
    train(m, ds.train, SHAPE, { steps: 3, batchSize: 10, lr: 1e-3, seed: 1, engine }),
    /non-finite gradient \(parameters: encoder\.0\.w\) at step 2; training stopped/,
  );
});

for (const engine of ENGINES) test(`${engine} engine: --on-nan skip: bad batches are skipped and logged, the rest trains, and it is reproducible`, async () => {
  const run = async () => {
    const dir = tmp();
    const m = poisoned([1, 3], 'gradient');
    const notices: string[] = [];
    const r = await train(m, ds.train, SHAPE, {
      steps: 6,
      batchSize: 10,
      lr: 1e-3,
      seed: 1,
      outDir: dir,
      logEvery: 1,
      onNonFinite: 'skip',
      onNotice: (n) => notices.push(n),
      engine,
    });
    return { r, dir, notices, w: weights(m) };
  };
  const a = await run();
  assert.deepEqual(a.r.skippedSteps, [2, 4]);
  assert.equal(a.notices.length, 2);
  assert.match(a.notices[0], /non-finite gradient .* at step 2: batch skipped/);
  const log = readFileSync(join(a.dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    log.filter((l) => 'skipped' in l).map((l) => l.step),
    [2, 4],
  );
  assert.ok(new Float32Array(a.w.buffer, a.w.byteOffset, a.w.byteLength / 4).every(Number.isFinite));
  assert.deepEqual((await run()).w, a.w, 'skipping is deterministic');
  // A skipped step still closes its log window: step 4 is skipped, and the window 3-4 is logged at 4.
  const dir = tmp();
  await train(poisoned([3], 'gradient'), ds.train, SHAPE, { steps: 6, batchSize: 10, lr: 1e-3, seed: 1, outDir: dir, logEvery: 2, onNonFinite: 'skip' });
  const lines = readFileSync(join(dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.filter((l) => !('skipped' in l)).map((l) => l.step), [2, 4, 6]);
});

test('same seed, backend and workers: byte-identical weights and identical metrics', async () => {
  const run = async () => {
    const m = createModel('pse-star', { ...small, classifierHidden: [32, 16] }, 4) as Trainable & ImageModel;
    await train(m, ds.train, SHAPE, { steps: 40, batchSize: 50, lr: 1e-3, seed: 4 });
    const labels = oneHotLabelInputs(10);
    const metrics = [reconstructionError(m, ds.test, 784, 3), annotationAccuracy(m, ds.test, 784, labels)];
    labels.dispose();
    return { w: weights(m), metrics };
  };
  const a = await run();
  const b = await run();
  assert.ok(a.w.equals(b.w), 'weights are byte-identical');
  assert.deepEqual(a.metrics, b.metrics);
});

test('the CLI reports a non-finite stop without a stack trace and accepts --on-nan skip', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'train', '--model', 'pse', '--on-nan', 'sometimes'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--on-nan must be stop or skip, got 'sometimes'/);
});
