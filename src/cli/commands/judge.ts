import { loadDataset } from '../../data/registry.js';
import { getJudge } from '../../eval/judge.js';
import { intOption, parse, strOption } from '../args.js';
import { ProgressBar } from '../progress.js';
import type { Command } from './index.js';

export const judgeCommand: Command = {
  summary: "train (or show) the dataset's generation-accuracy judge classifier",
  help: `probsem judge [--dataset NAME|DIR] [--data DIR] [--epochs 8] [--quiet]

Judges for fashion-mnist and fashion-mnist-subset ship with probsem (data/judges, made by
scripts/train-judges.ts). For other data the judge is trained once per dataset content and kept in
$PROBSEM_CACHE (default ~/.cache/probsem).`,
  async run(argv) {
    const { values: v } = parse(argv, { dataset: { type: 'string' }, data: { type: 'string' }, epochs: { type: 'string' }, quiet: { type: 'boolean' } });
    const ds = await loadDataset(strOption(v.dataset, 'dataset', 'fashion-mnist'), { dataDir: v.data as string | undefined });
    let bar: ProgressBar | null = null;
    const j = await getJudge(ds, {
      epochs: intOption(v.epochs, 'epochs', 8, 1, 1000),
      onNotice: (m) => process.stderr.write(`note: ${m}\n`),
      onProgress: (p) => {
        bar ??= new ProgressBar('train judge', p.steps, process.stderr, !v.quiet);
        bar.update(p.step, `${p.msPerStep.toFixed(0)} ms/step`);
      },
    });
    const origin = { shipped: 'shipped with probsem', cache: 'cached', trained: 'trained now' }[j.origin];
    process.stdout.write(`judge for ${ds.name}: test accuracy ${(100 * j.testAccuracy).toFixed(2)}% (${origin}: ${j.dir})\n`);
    return 0;
  },
};
