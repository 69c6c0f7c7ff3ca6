/**
 * The main job on the shipped data: train PSE* briefly on the Fashion-MNIST subset, evaluate it
 * and write a report folder. Where no judge is shipped or cached, the judge classifier trains in a
 * child process at the same time, so both cores work.
 */
import { spawn } from 'node:child_process';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { currentBackend } from '../../core/backend.js';
import { ProbsemError } from '../../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { imagesToFloat, pixelsOf } from '../../data/dataset.js';
import { loadDataset } from '../../data/registry.js';
import { encodeGridPng } from '../../data/png.js';
import { findJudge } from '../../eval/judge.js';
import { type EvalReport, evaluateRun, generateForLabel, loadImageModel, reconstruct, trainRun } from '../../runs/runs.js';
import { intOption, parse, strOption } from '../args.js';
import { ProgressBar, fmtTime } from '../progress.js';
import type { Command } from './index.js';

const DATASET = 'fashion-mnist-subset';

export const demoCommand: Command = {
  summary: 'train PSE* on the shipped Fashion-MNIST subset, evaluate, and write a report',
  help: `probsem demo [--out reports/demo] [--steps 1200] [--latent 10] [--seed 0]`,
  // The judge trains in a child process on the other core.
  threads: 1,
  async run(argv) {
    const { values: v } = parse(argv, { out: { type: 'string' }, steps: { type: 'string' }, latent: { type: 'string' }, seed: { type: 'string' } });
    const out = strOption(v.out, 'out', 'reports/demo');
    const steps = intOption(v.steps, 'steps', 1200);
    const latent = intOption(v.latent, 'latent', 10, 1, 1024);
    const seed = intOption(v.seed, 'seed', 0, 0);
    const t0 = Date.now();
    await ensureDir(out);
    const ds = await loadDataset(DATASET);
    const pixels = pixelsOf(ds);

    // Shipped judges need nothing; another dataset's judge trains beside the model on the other core (once; cached).
    const haveJudge = findJudge(ds) !== null;
    const judgeReady = haveJudge ? Promise.resolve() : runChild(['judge', '--dataset', DATASET, '--epochs', '6', '--quiet', '--backend', currentBackend()]);
    if (!haveJudge) process.stderr.write('training the judge classifier in the background\n');

    const runDir = join(out, 'model');
    let bar: ProgressBar | null = null;
    await trainRun({
      model: 'pse-star',
      dataset: DATASET,
      latent,
      steps,
      batchSize: 100,
      lr: 1e-3,
      seed,
      out: runDir,
      checkpointEvery: 0,
      force: true,
      onProgress: (p) => {
        bar ??= new ProgressBar('train pse-star', p.steps);
        bar.update(p.step, `${p.msPerStep.toFixed(0)} ms/step · loss ${p.terms.loss?.toFixed(1) ?? "…"}`);
      },
    });
    if (!haveJudge) process.stderr.write('waiting for the judge…\n');
    await judgeReady;
    process.stderr.write('evaluating…\n');
    const report = await evaluateRun(runDir, { samplesPerLabel: 500, repeats: 3, seed, save: true });

    // Pictures: generated images per label, and test images above their reconstructions.
    const { model, meta } = loadImageModel(runDir);
    const perLabel = 10;
    const gen = new Float32Array(ds.classNames.length * perLabel * pixels);
    ds.classNames.forEach((c, i) => gen.set(generateForLabel(model, meta, c, perLabel, seed), i * perLabel * pixels));
    writeFileAtomicSync(join(out, 'generated.png'), encodeGridPng(gen, ds.classNames.length * perLabel, { cols: perLabel, height: ds.height, width: ds.width, channels: ds.channels, rowLabels: ds.classNames }));
    const idx = Int32Array.from({ length: 16 }, (_, i) => i);
    const originals = imagesToFloat(ds.test, idx, pixels);
    const recons = reconstruct(model, originals, pixels);
    const pairs = new Float32Array(32 * pixels);
    pairs.set(originals, 0);
    pairs.set(recons, 16 * pixels);
    writeFileAtomicSync(join(out, 'reconstructions.png'), encodeGridPng(pairs, 32, { cols: 16, height: ds.height, width: ds.width, channels: ds.channels, rowLabels: ['test', 'recon.'] }));

    const seconds = (Date.now() - t0) / 1000;
    writeFileAtomicSync(join(out, 'metrics.json'), JSON.stringify({ ...report, trainSteps: steps, latent, seed, totalSeconds: seconds }, null, 2) + '\n');
    writeFileAtomicSync(join(out, 'summary.md'), summary(report, ds.classNames, { steps, latent, seed, seconds, backend: currentBackend() }));
    process.stdout.write(
      `demo done in ${fmtTime(seconds)}: annotation ${(100 * report.annotationAccuracy!).toFixed(1)}%, ` +
        `generation ${(100 * report.generationAccuracy!).toFixed(1)}% (judge ${(100 * report.judgeAccuracy!).toFixed(1)}%), ` +
        `reconstruction ${report.reconstructionError.toFixed(1)} nats. Report: ${out}/summary.md\n`,
    );
    return 0;
  },
};

function summary(r: EvalReport, classes: string[], o: { steps: number; latent: number; seed: number; seconds: number; backend: string }): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
  return `# probsem demo: PSE* on the Fashion-MNIST subset

PSE* (latent ${o.latent}, the PSE paper's MLP architecture) trained for ${o.steps} steps (batch 100,
Adam 1e-3, seed ${o.seed}) on the 10,000-image subset shipped with probsem, evaluated on its 2,000
test images. Backend: ${o.backend}. Total time ${fmtTime(o.seconds)}.

| metric | value |
|---|---|
| reconstruction error (Bernoulli NLL, nats) | ${r.reconstructionError.toFixed(1)} |
| annotation accuracy | ${pct(r.annotationAccuracy)} |
| generation accuracy (${r.generationSamplesPerLabel}/label × ${r.generationRepeats}) | ${pct(r.generationAccuracy)} ± ${((r.generationSd ?? 0) * 100).toFixed(1)} |
| judge classifier's test accuracy | ${pct(r.judgeAccuracy)} |

Generation accuracy per label: ${classes.map((c) => `${c} ${pct(r.generationPerLabel?.[c] ?? null)}`).join(', ')}.

![generated](generated.png)

\`generated.png\`: one row per label, top to bottom: ${classes.join(', ')}; ten samples z ~ q(z|label) each.

![reconstructions](reconstructions.png)

\`reconstructions.png\`: sixteen test images (top row) and their reconstructions from the posterior mean (bottom row).

The model is in \`model/\`; try \`probsem generate --run <this folder>/model --label Sneaker --out sneakers.png\`.
`;
}

/** Runs this CLI in a child process (same loader and flags), resolving when it exits 0. */
function runChild(args: string[]): Promise<void> {
  const here = fileURLToPath(import.meta.url);
  const mainFile = fileURLToPath(new URL(`../main${extname(here)}`, import.meta.url));
  return new Promise((resolve, reject) => {
    // One compute thread for the child: the parent trains on the other core.
    const child = spawn(process.execPath, [...process.execArgv, mainFile, ...args], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, PROBSEM_THREADS: '1' },
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new ProbsemError(`'probsem ${args.join(' ')}' failed (exit ${code})`))));
  });
}
