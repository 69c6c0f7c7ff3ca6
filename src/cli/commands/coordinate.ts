import { ProbsemError } from '../../core/errors.js';
import type { EngineChoice } from '../../train/trainer.js';
import { type CoordinateOptions, type CoordinateReport, coordinateMethod, coordinateRun } from '../../analysis/coordinated.js';
import { parseLabelEncoding } from '../../text/labels.js';
import { intOption, numOption, parse, strOption } from '../args.js';
import { ProgressBar } from '../progress.js';
import type { Command } from './index.js';

export const coordinateCommand: Command = {
  summary: 'coordinated image-label spaces: CCA, kernel CCA, Deep CCA, DeViSE, USE, bimodal AE; annotation and zero-shot accuracy',
  help: `probsem coordinate --method cca|kcca|dcca|devise|use|bimodal-ae [options]

Fits on the training split (without --holdout classes) and annotates the test images with the
nearest label in the shared space.

  --method M           cca, kcca, dcca, devise, use (unified semantic embedding with a WordNet
                       taxonomy) or bimodal-ae (Ngiam's bimodal deep autoencoder)
  --dataset NAME|DIR   fashion-mnist (default), fashion-mnist-subset, mnist, or a folder of IDX files
  --data DIR           where to look for the dataset's IDX files
  --labels ENC         onehot (default), words (built-in WordNet vectors) or words:FILE
  --label-phrases MAP  how classes read as words, e.g. 'Ankle boot=boot'
  --oov error|skip     unknown words in a class phrase (default error)
  --holdout A,B        train without these classes; reports zeroShot (needs --labels words)
  --seed N             random seed (default 0)
  --json               print the report as one JSON object
  --out DIR            also write DIR/report.json (trained methods: and the training log)
  --quiet              no progress output

 shared space (cca, kcca, dcca):
  --components K       canonical pairs used (default: training classes − 1)
  --scoring S          gaussian (default: log N(u; ρ⊙v, I − ρ²)), euclidean (‖u − v‖²) or cosine
  --r1 X, --r2 X       ridges on the image and label covariances (cca default 1e-4 each; kcca r1
                       weights the RKHS norm, default 1e-3, r2 1e-4; dcca: on its outputs, 1e-3)
 cca:
  --whitening W        symmetric (default: Σ^-1/2 as in the lecture) or cholesky (faster, same result)
 kcca:
  --subsample N        training examples in the kernel (default 2000)
  --bandwidth X        RBF σ on images (default: median pairwise distance in the subsample)
  --label-kernel K     linear (default) or rbf on the label side
  --label-bandwidth X  its σ (default: median distance between distinct label vectors)
 dcca, devise, use, bimodal-ae (trained with Adam):
  --steps N | --epochs N  training length (default 10 epochs)
  --batch N            minibatch (dcca default 1000, the others 100)
  --lr X               learning rate (default 0.001)
  --hidden A,B         image-net hidden layers (dcca default 512,128; devise, use, bimodal-ae 512;
                       bimodal-ae's image decoder mirrors them)
  --engine E           auto (default: probsem's kernels), fast or tfjs
 dcca:
  --out-dim N          output width of both nets (default: training classes − 1)
  --label-hidden A,B   hidden layers of the label net (default none: a linear map)
  --top-k K            canonical correlations summed in the objective (default: out-dim)
 devise:
  --similarity S       cosine (default), dot (DeViSE's) or l2 (negative squared distance)
  --margin X           hinge margin (default 0.1; use: 1, in squared distance)
 use:
  --embed-dim N        width of the shared space (default 64)
  --ontology O         auto (default: the dataset's own hierarchy, e.g. CIFAR-100's superclasses,
                       else WordNet's), dataset, wordnet (parents from WordNet hypernyms of the
                       class phrases) or none
  --ontology-weight X  weight of "nearer the parent than its other children" (default 1)
  --residual-weight X  weight of the L1 residual of each class from its parent (default 0.001)
 bimodal-ae:
  --latent N           width of the shared code (default 64)
  --label-hidden A,B   hidden layers of the label path and (mirrored) the label decoder (default 64)
  --label-weight X     weight of the label's reconstruction (default 50)`,
  async run(argv) {
    const { values: v } = parse(argv, {
      method: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      labels: { type: 'string' },
      'label-phrases': { type: 'string' },
      oov: { type: 'string' },
      holdout: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      quiet: { type: 'boolean' },
      components: { type: 'string' },
      scoring: { type: 'string' },
      r1: { type: 'string' },
      r2: { type: 'string' },
      whitening: { type: 'string' },
      subsample: { type: 'string' },
      bandwidth: { type: 'string' },
      'label-kernel': { type: 'string' },
      'label-bandwidth': { type: 'string' },
      steps: { type: 'string' },
      epochs: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      hidden: { type: 'string' },
      engine: { type: 'string' },
      'out-dim': { type: 'string' },
      'label-hidden': { type: 'string' },
      'top-k': { type: 'string' },
      similarity: { type: 'string' },
      margin: { type: 'string' },
      'embed-dim': { type: 'string' },
      ontology: { type: 'string' },
      'ontology-weight': { type: 'string' },
      'residual-weight': { type: 'string' },
      latent: { type: 'string' },
      'label-weight': { type: 'string' },
    });
    const method = coordinateMethod(strOption(v.method, 'method'));
    const labels = parseLabelEncoding(strOption(v.labels, 'labels', 'onehot'));
    const oov = strOption(v.oov, 'oov', 'error');
    if (oov !== 'error' && oov !== 'skip') throw new ProbsemError(`--oov must be error or skip, got '${oov}'`, 'BAD_OPTION');
    if (labels.kind === 'onehot' && (v['label-phrases'] !== undefined || v.oov !== undefined)) {
      throw new ProbsemError('--label-phrases and --oov apply to --labels words', 'BAD_OPTION');
    }
    const o: CoordinateOptions = {
      method,
      dataset: strOption(v.dataset, 'dataset', 'fashion-mnist'),
      dataDir: v.data as string | undefined,
      labels,
      labelPhrases: v['label-phrases'] as string | undefined,
      oov,
      holdout: v.holdout === undefined ? [] : String(v.holdout).split(',').map((h) => h.trim()).filter(Boolean),
      seed: intOption(v.seed, 'seed', 0, 0),
      out: v.out as string | undefined,
    };
    // Only the options given are passed on: the runner names any that do not apply to the method.
    const num = (key: string, min: number, exclusive: boolean) => (v[key] === undefined ? undefined : numOption(v[key], key, 0, min, Infinity, exclusive));
    const int = (key: string, min: number) => (v[key] === undefined ? undefined : intOption(v[key], key, undefined, min));
    const choice = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
      if (v[key] === undefined) return undefined;
      const s = String(v[key]);
      if (!(allowed as readonly string[]).includes(s)) throw new ProbsemError(`--${key} must be ${allowed.join(', ')}, got '${s}'`, 'BAD_OPTION');
      return s as T;
    };
    const layers = (key: string) => {
      if (v[key] === undefined) return undefined;
      const s = String(v[key]).trim();
      if (s === '' || s === 'none') return [];
      return s.split(',').map((p) => intOption(p.trim(), key, undefined, 1, 100000));
    };
    if (v.steps !== undefined && v.epochs !== undefined) throw new ProbsemError('give either --steps or --epochs, not both', 'BAD_OPTION');
    Object.assign(o, {
      components: int('components', 1),
      scoring: choice('scoring', ['gaussian', 'euclidean', 'cosine'] as const),
      r1: num('r1', 0, false),
      r2: num('r2', 0, false),
      whitening: choice('whitening', ['symmetric', 'cholesky'] as const),
      subsample: int('subsample', 3),
      bandwidth: num('bandwidth', 0, true),
      labelKernel: choice('label-kernel', ['linear', 'rbf'] as const),
      labelBandwidth: num('label-bandwidth', 0, true),
      steps: int('steps', 1),
      epochs: int('epochs', 1),
      batchSize: int('batch', 2),
      lr: num('lr', 0, true),
      hidden: layers('hidden'),
      engine: choice<EngineChoice>('engine', ['auto', 'fast', 'tfjs'] as const),
      outDim: int('out-dim', 1),
      labelHidden: layers('label-hidden'),
      topK: int('top-k', 1),
      similarity: choice('similarity', ['dot', 'cosine', 'l2'] as const),
      margin: num('margin', 0, true),
      embedDim: int('embed-dim', 1),
      ontology: choice('ontology', ['auto', 'dataset', 'wordnet', 'none'] as const),
      ontologyWeight: num('ontology-weight', 0, false),
      residualWeight: num('residual-weight', 0, false),
      latent: int('latent', 1),
      labelWeight: num('label-weight', 0, false),
    } satisfies Partial<CoordinateOptions>);
    let bar: ProgressBar | null = null;
    let lastInfo = '';
    const r = await coordinateRun({
      ...o,
      onNotice: (m) => process.stderr.write(`${bar ? '\n' : ''}note: ${m}\n`),
      onProgress: (p) => {
        if (v.quiet) return;
        if (p.stage === 'train') {
          bar ??= new ProgressBar(`train ${method}`, p.total);
          bar.update(p.done, p.info);
        } else if (p.info && p.info !== lastInfo) {
          process.stderr.write(`${p.info}\n`);
          lastInfo = p.info;
        }
      },
    });
    process.stdout.write(v.json ? JSON.stringify(r) + '\n' : summary(r));
    return 0;
  },
};

function pct(x: number): string {
  return `${(100 * x).toFixed(2)} %`;
}

function summary(r: CoordinateReport): string {
  const lines = [
    `${r.method} on ${r.dataset} (${r.labels}${r.labelVectors ? `: ${r.labelVectors}` : ''} labels, seed ${r.seed}): ` +
      `${r.trainImages} training images${r.heldOut.length ? ` without ${r.heldOut.join(', ')}` : ''}, fitted in ${r.seconds.fit.toFixed(1)} s`,
    `annotation accuracy: ${pct(r.annotationAccuracy)} of ${r.testImages} test images`,
  ];
  if (r.zeroShot) {
    const z = r.zeroShot;
    lines.push(
      `zero-shot (${z.heldOut.join(', ')}): unseen ${pct(z.unseenAccuracy)} (among the held-out labels: ` +
        `${Object.entries(z.unseenPerClass).map(([c, a]) => `${c} ${pct(a)}`).join(', ')}), ` +
        `generalised ${pct(z.generalizedAccuracy)} (among all), seen classes ${pct(z.seenAccuracy)}`,
    );
  }
  if (r.canonicalCorrelations && r.testCorrelations) {
    lines.push(
      `canonical correlations (train): ${r.canonicalCorrelations.map((c) => c.toFixed(3)).join(' ')} — total ${r.totalCorrelation!.toFixed(3)}`,
      `same pairs on test images:      ${r.testCorrelations.map((c) => c.toFixed(3)).join(' ')} — total ${r.totalTestCorrelation!.toFixed(3)}`,
    );
  }
  if (r.hierarchy) {
    lines.push(`taxonomy (${r.hierarchy.source}): ` + r.hierarchy.parents.map((p) => `${p.name} ⊃ {${p.classes.join(', ')}}`).join('; '));
  }
  if (r.taxonomyErrors) {
    const t = r.taxonomyErrors;
    lines.push(`mistakes within the true class's parent (${t.source}): ${pct(t.siblingShare)} of ${t.errors} wrong annotations of classes with a parent`);
  }
  if (r.training) {
    lines.push(
      `training: ${r.training.steps} steps of ${r.training.batchSize} (${r.training.engine}) in ${r.training.seconds.toFixed(1)} s; final ` +
        Object.entries(r.training.finalTerms).map(([k, x]) => `${k} ${x.toFixed(4)}`).join(', '),
    );
  }
  return lines.join('\n') + '\n';
}
