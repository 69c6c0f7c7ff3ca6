import { evaluateRun } from '../../runs/runs.js';
import { intOption, numOption, parse, strOption } from '../args.js';
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
  --judge-epochs N     epochs for the judge if it must be trained first (default 8; judges for
                       fashion-mnist and fashion-mnist-subset ship with probsem)
  --seed N             evaluation seed (default 0)
  --triplets N         seeded test triplets for triplet accuracy (default 10000; 0 skips it and the
                       retrieval measures below)
  --triplet-margin M   margin of triplet accuracy (default: the run's triplet margin, else 1)
  --retrieval-queries N  test means (a seeded sample) ranked against the training means for
                       precision@1, R-precision and MAP@R (default 1000)
  --nll                importance-sampled negative log-likelihood of the test images with K = 1000
                       draws from q(z|x) each, and the negative ELBO from the same draws (models
                       with a plain prior and decoder: the VAE family, the joint models, PSE, PSE*;
                       it costs K decoder passes per image: ~30 s per 1,000 images at K = 1000, latent 10, two cores)
  --nll-samples K      that, with K draws (implies --nll)
  --nll-images N       only the first N test images (default all)
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
      triplets: { type: 'string' },
      'triplet-margin': { type: 'string' },
      'retrieval-queries': { type: 'string' },
      nll: { type: 'boolean' },
      'nll-samples': { type: 'string' },
      'nll-images': { type: 'string' },
      json: { type: 'boolean' },
    });
    const dir = strOption(v.run, 'run');
    let bar: ProgressBar | null = null;
    let genBar: ProgressBar | null = null;
    let nllBar: ProgressBar | null = null;
    const r = await evaluateRun(dir, {
      dataset: v.dataset as string | undefined,
      dataDir: v.data as string | undefined,
      samplesPerLabel: intOption(v.samples, 'samples', 1000, 1, 100000),
      repeats: intOption(v.repeats, 'repeats', 5, 1, 100),
      skipGeneration: Boolean(v['no-generation']),
      judgeEpochs: intOption(v['judge-epochs'], 'judge-epochs', 8, 1, 1000),
      seed: intOption(v.seed, 'seed', 0, 0),
      triplets: intOption(v.triplets, 'triplets', 10000, 0, 10_000_000),
      tripletMargin: v['triplet-margin'] === undefined ? undefined : numOption(v['triplet-margin'], 'triplet-margin', 1, 0),
      retrievalQueries: intOption(v['retrieval-queries'], 'retrieval-queries', 1000, 1, 10_000_000),
      nllSamples: v.nll || v['nll-samples'] !== undefined ? intOption(v['nll-samples'], 'nll-samples', 1000, 1, 1_000_000) : undefined,
      nllImages: v['nll-images'] === undefined ? undefined : intOption(v['nll-images'], 'nll-images', undefined, 1),
      onNllProgress: (done, total) => {
        nllBar ??= new ProgressBar('nll', total);
        nllBar.update(done);
      },
      save: true,
      // Training a judge takes minutes where none is shipped or cached: say how to skip it before it starts.
      onNotice: (m, kind) => process.stderr.write(`note: ${m}${kind === 'judge-training' ? '; skip generation accuracy with --no-generation' : ''}\n`),
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
          `  reconstruction error  ${r.reconstructionError.toFixed(2)} nats, ${r.likelihood} likelihood (z sampled from q(z|x)); ${r.reconstructionErrorMean.toFixed(2)} from the posterior mean`,
          `  annotation accuracy   ${pct(r.annotationAccuracy)}`,
          `  generation accuracy   ${pct(r.generationAccuracy)}${r.generationSd !== null ? ` ± ${(100 * r.generationSd).toFixed(2)}` : ''}` +
            (r.generationRepeats ? ` (${r.generationSamplesPerLabel}/label × ${r.generationRepeats})` : ''),
          `  judge test accuracy   ${pct(r.judgeAccuracy)}`,
          ...(r.judgeFid ? [`  judge FID             ${r.judgeFid.overall.toFixed(2)} (judge features of ${r.judgeFid.generatedPerLabel}/label generated against ${r.judgeFid.realImages} test images; per label in --json)`] : []),
          ...(r.pairedTop2Accuracy !== undefined
            ? [
                `  paired top-2 accuracy ${pct(r.pairedTop2Accuracy ?? null)} (annotation above: top label among the two)`,
                `  pair retrieval P@20   ${pct(r.pairRetrievalPrecisionAt20?.mean ?? null)} by KL(query ‖ q(z|x)), ${pct(r.pairRetrievalPrecisionAt20Margin?.mean ?? null)} by the pair's classification margin (mean over all pairs of classes)`,
              ]
            : []),
          ...(r.nll
            ? [`  NLL (importance-sampled) ${r.nll.nll.toFixed(2)} nats (${r.likelihood}), −ELBO ${r.nll.negativeElbo.toFixed(2)} (K = ${r.nll.samples}, ${r.nll.images} images)`]
            : []),
          ...(r.metricLearning
            ? [
                `  triplet accuracy      ${pct(r.metricLearning.triplet.accuracy)} at margin ${r.metricLearning.triplet.margin}; ${pct(r.metricLearning.triplet.accuracyNoMargin)} at margin 0 (${r.metricLearning.triplet.triplets} test triplets)`,
                `  test → train means    precision@1 ${pct(r.metricLearning.retrieval.precisionAt1)}, R-precision ${pct(r.metricLearning.retrieval.rPrecision)}, MAP@R ${pct(r.metricLearning.retrieval.mapAtR)} (${r.metricLearning.retrieval.queries} queries)`,
              ]
            : []),
          ...(r.tagAnnotation
            ? [
                `  tag ranking           precision@1 ${pct(r.tagAnnotation.precisionAt1)}, precision@5 ${pct(r.tagAnnotation.precisionAt5)}, mAP ${pct(r.tagAnnotation.meanAveragePrecision)} (${r.tagAnnotation.images} images, ${r.tagAnnotation.tags} tags${r.tagAnnotation.skippedEmpty ? `; ${r.tagAnnotation.skippedEmpty} without tags skipped` : ''})`,
              ]
            : []),
        ].join('\n') + '\n',
      );
    }
    return 0;
  },
};
