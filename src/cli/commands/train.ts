import { ProbsemError } from '../../core/errors.js';
import { modelNames } from '../../models/registry.js';
import { trainRun } from '../../runs/runs.js';
import { intOption, numOption, parse, strOption } from '../args.js';
import { ProgressBar } from '../progress.js';
import type { Command } from './index.js';

export const trainCommand: Command = {
  summary: 'train a model on a dataset and save it to a run directory',
  help: `probsem train --model <vae|pse|pse-star> [options]

  --model NAME         ${modelNames().filter((n) => n !== 'classifier').join(', ')}
  --dataset NAME|DIR   fashion-mnist (default), fashion-mnist-subset, mnist, or a folder of IDX files
  --data DIR           where to look for the dataset's IDX files
  --latent N           latent dimension (default 10)
  --steps N            training steps (default 2000 unless --epochs is given)
  --epochs N           passes over the training set instead of --steps
  --batch N            minibatch size (default 100)
  --lr X               Adam learning rate (default 0.001)
  --beta X             KL weight for vae (β-VAE; default 1)
  --label-lr-scale X   learning-rate multiplier of the label encoder (pse, pse-star; default 10)
  --classifier-weight X  weight of PSE*'s classification term (default 30)
  --seed N             random seed (default 0)
  --out DIR            run directory (default runs/<model>-<latent>d-s<seed>)
  --checkpoint-every N checkpoint interval in steps (default 500; always at the end)
  --resume             continue the run in --out from its checkpoint
  --force              replace an existing run in --out
  --workers N          data-parallel replicas over worker threads (default 1; 2 uses both cores)
  --quiet              no progress bar`,
  async run(argv) {
    const { values: v } = parse(argv, {
      model: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      latent: { type: 'string' },
      steps: { type: 'string' },
      epochs: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      beta: { type: 'string' },
      'label-lr-scale': { type: 'string' },
      'classifier-weight': { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      resume: { type: 'boolean' },
      force: { type: 'boolean' },
      workers: { type: 'string' },
      quiet: { type: 'boolean' },
    });
    const model = strOption(v.model, 'model');
    if (!modelNames().includes(model) || model === 'classifier') {
      throw new ProbsemError(`unknown model '${model}': choose one of vae, pse, pse-star`, 'BAD_OPTION');
    }
    if (v.steps !== undefined && v.epochs !== undefined) {
      throw new ProbsemError('give either --steps or --epochs, not both', 'BAD_OPTION');
    }
    const latent = intOption(v.latent, 'latent', 10, 1, 1024);
    const seed = intOption(v.seed, 'seed', 0, 0);
    const modelOptions: Record<string, unknown> = {};
    if (v.beta !== undefined) {
      if (model !== 'vae') throw new ProbsemError('--beta applies to --model vae only', 'BAD_OPTION');
      modelOptions.beta = numOption(v.beta, 'beta', 1, 0, Infinity, true);
    }
    if (v['label-lr-scale'] !== undefined) {
      if (model === 'vae') throw new ProbsemError('--label-lr-scale applies to pse and pse-star', 'BAD_OPTION');
      modelOptions.labelLrScale = numOption(v['label-lr-scale'], 'label-lr-scale', 10, 0, Infinity, true);
    }
    if (v['classifier-weight'] !== undefined) {
      if (model !== 'pse-star') throw new ProbsemError('--classifier-weight applies to pse-star only', 'BAD_OPTION');
      modelOptions.classifierWeight = numOption(v['classifier-weight'], 'classifier-weight', 30, 0);
    }
    const out = strOption(v.out, 'out', `runs/${model}-${latent}d-s${seed}`);
    const steps = v.epochs === undefined ? intOption(v.steps, 'steps', 2000) : undefined;
    let bar: ProgressBar | null = null;
    const r = await trainRun({
      model,
      dataset: strOption(v.dataset, 'dataset', 'fashion-mnist'),
      dataDir: v.data as string | undefined,
      latent,
      steps,
      epochs: v.epochs === undefined ? undefined : intOption(v.epochs, 'epochs', 1),
      batchSize: intOption(v.batch, 'batch', 100),
      lr: numOption(v.lr, 'lr', 1e-3, 0, 10, true),
      seed,
      out,
      checkpointEvery: intOption(v['checkpoint-every'], 'checkpoint-every', 500, 0),
      resume: Boolean(v.resume),
      force: Boolean(v.force),
      workers: intOption(v.workers, 'workers', 1, 1, 64),
      modelOptions,
      onNotice: (m) => process.stderr.write(`note: ${m}\n`),
      onProgress: (p) => {
        bar ??= new ProgressBar(`train ${model}`, p.steps, process.stderr, !v.quiet);
        bar.update(p.step, `${p.msPerStep.toFixed(0)} ms/step · loss ${p.terms.loss?.toFixed(2) ?? "…"}`);
      },
    });
    const t = r.meta.training!;
    process.stdout.write(
      `saved ${model} (latent ${latent}) to ${out}: ${t.steps} steps in ${t.seconds.toFixed(1)} s on ${t.backend}; ` +
        `final ${Object.entries(t.finalTerms).map(([k, x]) => `${k} ${x.toFixed(3)}`).join(', ')}\n`,
    );
    return 0;
  },
};
