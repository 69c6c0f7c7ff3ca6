import { evaluateRun } from '../../runs/runs.js';
import { intOption, parse, strOption } from '../args.js';
import { ProgressBar } from '../progress.js';
import type { Command } from './index.js';

export const evalCommand: Command = {
  summary: 'evaluate a trained model: reconstruction, annotation and generation accuracy',
  help: `probsem eval --run DIR [options]

  --run DIR            the run directory (model.json + weights.bin)
  --dataset NAME|DIR   dataset to evaluate on (default: the one it was trained on)
  --data DIR           where to look for the dataset's IDX files
  --samples N          generated images per label per repeat (default 1000)
  --repeats N          generation repeats, for the standard deviation (default 5)
  --no-generation      skip generation accuracy (no judge needed)
  --judge-epochs N     epochs for the judge if it must be trained first (default 8)
  --seed N             evaluation seed (default 0)
  --json               print one JSON object`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      samples: { type: 'string' },
      repeats: { type: 'string' },
      'no-generation': { type: 'boolean' },
      'judge-epochs': { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
    });
    const dir = strOption(v.run, 'run');
    let bar: ProgressBar | null = null;
    let genBar: ProgressBar | null = null;
    const r = await evaluateRun(dir, {
      dataset: v.dataset as string | undefined,
      dataDir: v.data as string | undefined,
      samplesPerLabel: intOption(v.samples, 'samples', 1000, 1, 100000),
      repeats: intOption(v.repeats, 'repeats', 5, 1, 100),
      skipGeneration: Boolean(v['no-generation']),
      judgeEpochs: intOption(v['judge-epochs'], 'judge-epochs', 8, 1, 1000),
      seed: intOption(v.seed, 'seed', 0, 0),
      save: true,
      onNotice: (m) => process.stderr.write(`note: ${m}\n`),
      onGenerationProgress: (done, total) => {
        genBar ??= new ProgressBar('generation', total);
        genBar.update(done);
      },
      onJudgeProgress: (p) => {
        bar ??= new ProgressBar('train judge', p.steps);
        bar.update(p.step, `${p.msPerStep.toFixed(0)} ms/step`);
      },
    });
    if (v.json) {
      process.stdout.write(JSON.stringify(r) + '\n');
    } else {
      const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(2)}%`);
      process.stdout.write(
        [
          `${r.model} on ${r.dataset} (${r.testImages} test images)`,
          `  reconstruction error  ${r.reconstructionError.toFixed(2)} nats (z sampled from q(z|x)); ${r.reconstructionErrorMean.toFixed(2)} from the posterior mean`,
          `  annotation accuracy   ${pct(r.annotationAccuracy)}`,
          `  generation accuracy   ${pct(r.generationAccuracy)}${r.generationSd !== null ? ` ± ${(100 * r.generationSd).toFixed(2)}` : ''}` +
            (r.generationRepeats ? ` (${r.generationSamplesPerLabel}/label × ${r.generationRepeats})` : ''),
          `  judge test accuracy   ${pct(r.judgeAccuracy)}`,
          ...(r.pairedTop2Accuracy !== undefined
            ? [
                `  paired top-2 accuracy ${pct(r.pairedTop2Accuracy ?? null)} (annotation above: top label among the two)`,
                `  pair retrieval P@20   ${pct(r.pairRetrievalPrecisionAt20?.mean ?? null)} (mean over all pairs of classes)`,
              ]
            : []),
        ].join('\n') + '\n',
      );
    }
    return 0;
  },
};
