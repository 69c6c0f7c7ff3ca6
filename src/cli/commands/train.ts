import { ProbsemError } from '../../core/errors.js';
import { type EngineChoice, TrainingInterrupted } from '../../train/trainer.js';
import { hasModelOption, modelsWithOption, trainableModelNames } from '../../models/registry.js';
import { trainRun } from '../../runs/runs.js';
import { parseLabelEncoding } from '../../text/labels.js';
import { intOption, numOption, parse, strOption } from '../args.js';
import { ProgressBar } from '../progress.js';
import { FOLDER_PREFIX, MANIFEST_PREFIX, imageSetName, parseImageSetSpec } from '../../data/image-folder.js';
import { cifarName, isCifarSpec, parseCifarSpec } from '../../data/cifar.js';
import type { Command } from './index.js';
import { lrSchedule } from '../../train/schedule.js';
import { parseLikelihood } from '../../distributions/pixel-likelihood.js';

export const trainCommand: Command = {
  summary: 'train a model on a dataset and save it to a run directory',
  help: `probsem train --model <pse-star|pse|informed|vae|…> [options]

  --model NAME         ${trainableModelNames().join(', ')}
  --dataset NAME|DIR   fashion-mnist (default), fashion-mnist-subset, mnist, or a folder of IDX files;
                       paired:<dataset>[?train=N&test=N&equal=allow|forbid&seed=S] for two-object
                       images (two images side by side, labelled with both classes)
                       folder:DIR (a subfolder of PNG/JPEG/WebP/GIF pictures per class) or
                       manifest:FILE (CSV or JSONL: path,label[,split]) for your own pictures;
                       cifar10:DIR, cifar100:DIR (fine labels), cifar100-coarse:DIR for the CIFAR
                       files (binary or python format; DIR is the extracted folder or holds it)
  --image-size N|HxW   folder:/manifest: pictures are fitted to this size (default 28)
  --channels 1|3       folder:/manifest: grey (default) or RGB; cifar: RGB (default) or grey
  --on-bad-image P     folder:/manifest: skip (default; listed in model.json) or error
  --data DIR           where to look for the dataset's IDX files
  --latent N           latent dimension (default 10; the autoencoders' code size, 32 in lecture 003)
  --steps N            training steps (default 2000 unless --epochs is given)
  --epochs N           passes over the training set instead of --steps
  --batch N            minibatch size (default 100)
  --lr X               Adam learning rate (default 0.001)
  --lr-schedule S      constant (default) or cosine: the rate decays as ½(1 + cos(π·step/steps))
  --beta X             KL weight for vae and tvae (default 1), beta-vae (default 4), scan (stage 1;
                       default 10); sparsity weight for sparse-ae (default 3)
  --label-lr-scale X   learning-rate multiplier of the label encoder (pse, pse-star: default 10,
                       3 with --labels words; jmvae, trelbo, scan: default 1)
  --classifier-weight X  weight of PSE*'s classification term (default 30)
  --seed N             random seed (default 0)
  --out DIR            run directory (default runs/<model>-<latent>d-s<seed>)
  --checkpoint-every N checkpoint interval in steps (default 500; always at the end)
  --resume             continue the run in --out from its checkpoint
  --force              replace an existing run in --out
  --engine E           auto or fast (default): the model's objective on probsem's wasm kernels (a tape);
                       tfjs: the same objective on tfjs ops with autodiff (tfjs-node or WebGPU where installed)
  --arch mlp|conv      image encoder and decoder: mlp (default, the papers') or conv: stride-2 5×5
                       convolutions and transposed convolutions sized to the image (28×28: [32,64]
                       and [64,32]; 32×32: three layers; 64×64: four; other sizes cropped), for every
                       model with an image decoder (cvae and the autoencoders: the decoder only);
                       --set wins over its choices
  --likelihood L       p(x|z) on intensities: bernoulli (default, the papers'), gaussian (learned
                       log-variance per channel, clamped to [-10, 1]) or logistic (discretised, 256
                       levels, learned log-scale per channel); eval reports in the same likelihood
  --on-nan stop|skip   a batch with a non-finite loss or gradient stops training, keeping the last
                       good weights as the checkpoint (stop, default), or is skipped and logged (skip)
  --set KEY=VALUE      any other model option, repeatable (value as JSON, else a string), e.g.
                       --set alpha=0.1 (jmvae), --set lambda1=10 (trelbo), --set warmupSteps=500,
                       --set stage1Steps=1200 (scan; default 60% of the steps), --set encoderHidden=[256,64],
                       --set lambda=0.99 (informed: shrinkage; priorMean=sample|mean, classify=prior|posterior),
                       --set encoderConv=[32,64] (vae, beta-vae, tvae, pse, pse-star, jmvae, trelbo, scan,
                       poe, mopoe, mmvae, informed: stride-2 5×5 convolutions before the encoder MLP;
                       encoderKernel=3|5|7), --set decoderConv=[64,32] (those, cvae and the autoencoders:
                       a dense layer to a 7×7×64 map, then stride-2 transposed convolutions;
                       decoderKernel=3|5|7),
                       --set margin=1 --set tripletWeight=10 --set mining=semi-hard|random (tvae)
  --labels ENC         label-encoder inputs: onehot (default), words (the built-in WordNet vectors),
                       or words:FILE (word2vec .bin, word2vec/GloVe text, fastText .vec)
  --label-phrases MAP  how classes read as words, e.g. 'Ankle boot=boot,Bag=handbag'
                       (defaults: T-shirt/top=t-shirt, Trouser=trousers, Ankle boot=ankle boot, …)
  --oov error|skip     unknown words in a class phrase: fail listing them (default) or skip them
  --tags use|ignore    on data with tag sets (emoji, tagged manifests) and --labels words: train
                       on each picture's tags (default) or on its class alone
  --holdout A,B        train without these classes (zero-shot: eval reports zeroShot accuracies)
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
      'lr-schedule': { type: 'string' },
      beta: { type: 'string' },
      'label-lr-scale': { type: 'string' },
      'classifier-weight': { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      resume: { type: 'boolean' },
      force: { type: 'boolean' },
      workers: { type: 'string' },
      engine: { type: 'string' },
      quiet: { type: 'boolean' },
      'on-nan': { type: 'string' },
      arch: { type: 'string' },
      likelihood: { type: 'string' },
      'image-size': { type: 'string' },
      channels: { type: 'string' },
      'on-bad-image': { type: 'string' },
      set: { type: 'string', multiple: true },
      labels: { type: 'string' },
      'label-phrases': { type: 'string' },
      oov: { type: 'string' },
      tags: { type: 'string' },
      holdout: { type: 'string' },
    });
    const labels = parseLabelEncoding(strOption(v.labels, 'labels', 'onehot'));
    const oov = strOption(v.oov, 'oov', 'error');
    if (oov !== 'error' && oov !== 'skip') throw new ProbsemError(`--oov must be error or skip, got '${oov}'`, 'BAD_OPTION');
    if (labels.kind === 'onehot' && (v['label-phrases'] !== undefined || v.oov !== undefined || v.tags !== undefined)) {
      throw new ProbsemError('--label-phrases, --oov and --tags apply to --labels words', 'BAD_OPTION');
    }
    const tags = strOption(v.tags, 'tags', 'use');
    if (tags !== 'use' && tags !== 'ignore') throw new ProbsemError(`--tags must be use or ignore, got '${tags}'`, 'BAD_OPTION');
    const holdout = v.holdout === undefined ? [] : String(v.holdout).split(',').map((h) => h.trim()).filter(Boolean);
    const onNan = strOption(v['on-nan'], 'on-nan', 'stop');
    const engineOption = (e: unknown): EngineChoice => {
      const c = strOption(e, 'engine', 'auto');
      if (c !== 'auto' && c !== 'fast' && c !== 'tfjs') throw new ProbsemError(`--engine must be auto, fast or tfjs, got '${c}'`, 'BAD_OPTION');
      return c;
    };
    if (onNan !== 'stop' && onNan !== 'skip') throw new ProbsemError(`--on-nan must be stop or skip, got '${onNan}'`, 'BAD_OPTION');
    const onBadImage = strOption(v['on-bad-image'], 'on-bad-image', 'skip');
    if (onBadImage !== 'skip' && onBadImage !== 'error') throw new ProbsemError(`--on-bad-image must be skip or error, got '${onBadImage}'`, 'BAD_OPTION');
    const dataset = withImageOptions(strOption(v.dataset, 'dataset', 'fashion-mnist'), v['image-size'] as string | undefined, v.channels as string | undefined);
    const model = strOption(v.model, 'model');
    if (!trainableModelNames().includes(model)) {
      throw new ProbsemError(`unknown model '${model}': choose one of ${trainableModelNames().join(', ')}`, 'BAD_OPTION');
    }
    // A flag for a model option applies where the model's config schema has that option.
    const optionFlag = (flag: string, option: string) => {
      if (!hasModelOption(model, option)) throw new ProbsemError(`--${flag} applies to --model ${modelsWithOption(option).join(', ')}`, 'BAD_OPTION');
    };
    if (v.steps !== undefined && v.epochs !== undefined) {
      throw new ProbsemError('give either --steps or --epochs, not both', 'BAD_OPTION');
    }
    const latent = intOption(v.latent, 'latent', 10, 1, 1024);
    const seed = intOption(v.seed, 'seed', 0, 0);
    const modelOptions: Record<string, unknown> = {};
    if (v.beta !== undefined) {
      optionFlag('beta', 'beta');
      modelOptions.beta = numOption(v.beta, 'beta', 1, 0, Infinity, true);
    }
    if (v['label-lr-scale'] !== undefined) {
      optionFlag('label-lr-scale', 'labelLrScale');
      modelOptions.labelLrScale = numOption(v['label-lr-scale'], 'label-lr-scale', 10, 0, Infinity, true);
    }
    if (v['classifier-weight'] !== undefined) {
      optionFlag('classifier-weight', 'classifierWeight');
      modelOptions.classifierWeight = numOption(v['classifier-weight'], 'classifier-weight', 30, 0);
    }
    if (v.likelihood !== undefined) {
      const likelihood = parseLikelihood(String(v.likelihood));
      optionFlag('likelihood', 'likelihood');
      modelOptions.likelihood = likelihood;
    }
    const arch = strOption(v.arch, 'arch', 'mlp');
    if (arch !== 'mlp' && arch !== 'conv') throw new ProbsemError(`--arch must be mlp or conv, got '${arch}'`, 'BAD_OPTION');
    if (arch === 'conv') optionFlag('arch conv', 'decoderConv');
    Object.assign(modelOptions, setOptions(v.set as string[] | undefined));
    const out = strOption(v.out, 'out', `runs/${model}-${latent}d-s${seed}`);
    const steps = v.epochs === undefined ? intOption(v.steps, 'steps', 2000) : undefined;
    let bar: ProgressBar | null = null;
    let decodeBar: ProgressBar | null = null;
    // Ctrl-C: finish the current step, checkpoint it, and say how to resume; a second one quits at once.
    const stop = new AbortController();
    const onSigint = () => {
      process.stderr.write(`\nstopping: checkpointing the current step (Ctrl-C again to quit without it)\n`);
      stop.abort();
    };
    process.once('SIGINT', onSigint);
    const r = await trainRun({
      model,
      dataset,
      dataDir: v.data as string | undefined,
      onBadImage,
      onDecodeProgress: (done, total) => {
        decodeBar ??= new ProgressBar('decode pictures', total, process.stderr, !v.quiet);
        decodeBar.update(done);
      },
      latent,
      steps,
      epochs: v.epochs === undefined ? undefined : intOption(v.epochs, 'epochs', 1),
      batchSize: intOption(v.batch, 'batch', 100),
      lr: numOption(v.lr, 'lr', 1e-3, 0, 10, true),
      lrSchedule: lrSchedule(strOption(v['lr-schedule'], 'lr-schedule', 'constant')),
      seed,
      out,
      checkpointEvery: intOption(v['checkpoint-every'], 'checkpoint-every', 500, 0),
      resume: Boolean(v.resume),
      force: Boolean(v.force),
      workers: intOption(v.workers, 'workers', 1, 1, 64),
      engine: engineOption(v.engine),
      modelOptions,
      arch,
      onNonFinite: onNan,
      labels,
      labelPhrases: v['label-phrases'] as string | undefined,
      oov,
      tags,
      holdout,
      onNotice: (m) => process.stderr.write(`${bar ? '\n' : ''}note: ${m}\n`),
      onProgress: (p) => {
        bar ??= new ProgressBar(`train ${model}`, p.steps, process.stderr, !v.quiet);
        bar.update(p.step, `${p.msPerStep.toFixed(0)} ms/step · loss ${p.terms.loss?.toFixed(2) ?? "…"}`);
      },
      signal: stop.signal,
    })
      .catch((e: unknown) => {
        if (!(e instanceof TrainingInterrupted)) throw e;
        process.stderr.write(`stopped at step ${e.step}; checkpoint in ${e.checkpoint}; resume with: ${resumeCommand(argv, v.out === undefined ? out : null)}\n`);
        return null;
      })
      .finally(() => process.off('SIGINT', onSigint));
    // 130: the shell's code for a command ended by SIGINT.
    if (!r) return 130;
    const t = r.meta.training!;
    process.stdout.write(
      `saved ${model} (latent ${latent}) to ${out}: ${t.steps} steps in ${t.seconds.toFixed(1)} s on ${t.backend}; ` +
        `final ${Object.entries(t.finalTerms).map(([k, x]) => `${k} ${x.toFixed(3)}`).join(', ')}\n`,
    );
    return 0;
  },
};

/** The command line that resumes an interrupted run: the same options, --resume instead of --force. */
export function resumeCommand(argv: string[], defaultOut: string | null): string {
  const args = [...argv.filter((a) => a !== '--force' && a !== '--resume'), ...(defaultOut ? ['--out', defaultOut] : []), '--resume'];
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['probsem', 'train', ...args].map(quote).join(' ');
}

/** `--set KEY=VALUE` pairs as model options: VALUE parsed as JSON where it is JSON, else a string. */
export function setOptions(pairs: string[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs ?? []) {
    const m = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/s.exec(pair);
    if (!m) throw new ProbsemError(`--set expects KEY=VALUE (e.g. --set alpha=0.1), got '${pair}'`, 'BAD_OPTION');
    const [, key, raw] = m;
    if (key === 'inputDim' || key === 'numClasses') throw new ProbsemError(`--set ${key}: it comes from the dataset`, 'BAD_OPTION');
    if (key === 'latent') throw new ProbsemError('--set latent: use --latent N', 'BAD_OPTION');
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // not JSON: keep the string
    }
    out[key] = value;
  }
  return out;
}

/**
 * Adds --image-size (folder:/manifest:) and --channels (those and cifar) to the spec as its options,
 * so the run records them in its dataset name; other datasets have a fixed size and grey images.
 */
function withImageOptions(spec: string, size: string | undefined, channels: string | undefined): string {
  const imageSet = spec.startsWith(FOLDER_PREFIX) || spec.startsWith(MANIFEST_PREFIX);
  if (size !== undefined && !imageSet) {
    throw new ProbsemError('--image-size applies to folder:DIR and manifest:FILE datasets; IDX and CIFAR datasets keep their own size', 'BAD_OPTION');
  }
  if (channels !== undefined && channels !== '1' && channels !== '3') throw new ProbsemError(`--channels must be 1 (grey) or 3 (RGB), got '${channels}'`, 'BAD_OPTION');
  const c = channels === undefined ? {} : { channels: Number(channels) as 1 | 3 };
  if (isCifarSpec(spec)) return cifarName({ ...parseCifarSpec(spec), ...c });
  if (channels !== undefined && !imageSet) {
    throw new ProbsemError('--channels applies to folder:DIR, manifest:FILE and cifar datasets; IDX datasets are grey', 'BAD_OPTION');
  }
  if (!imageSet) return spec;
  return imageSetName({ ...parseImageSetSpec(spec), ...(size === undefined ? {} : sizeOption(size)), ...c });
}

function sizeOption(size: string): { height: number; width: number } {
  const s = parseImageSetSpec(`folder:x?size=${size}`);
  return { height: s.height, width: s.width };
}
