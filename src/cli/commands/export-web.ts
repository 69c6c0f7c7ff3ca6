import { ProbsemError } from '../../core/errors.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

const METHODS = ['pca', 'tsne', 'umap'] as const;

/** '1.2 MB' (decimal units, as file managers show sizes). */
export function formatBytes(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`;
}

export const exportWebCommand: Command = {
  summary: 'write the explorer as a static folder that computes in the browser',
  help: `probsem export-web --run DIR --out SITE [--sample 1000] [--maps pca,tsne,umap] [--no-train]

  Writes a folder any static file server can serve (no probsem behind it): the
  explorer page, its one script, the model's weights, a seeded sample of test
  images with their posteriors and latent maps, and for runs trained on word
  vectors a bounded word list with its vectors. The page computes with
  TensorFlow.js in the browser: annotate, generate, retrieve by words (exact KL
  over the sample), the latent map and interpolation (docs/explorer.md).
  SITE must be new or empty; it appears whole or not at all.

  --sample N         test images shipped (default 1000)
  --maps LIST        latent maps computed now (default pca,tsne,umap)
  --max-words N      word-vector runs: words shipped (default 10000)
  --dataset NAME|DIR images to sample (default: the model's dataset)
  --data DIR         where to look for the dataset
  --no-train         leave out in-tab training (the Fashion-MNIST subset, about
                     5.3 MB, and its worker); it ships by default with runs on
                     Fashion-MNIST's 28×28 grey pictures and classes`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      out: { type: 'string' },
      sample: { type: 'string' },
      maps: { type: 'string' },
      'max-words': { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      'no-train': { type: 'boolean' },
    });
    const runDir = strOption(v.run, 'run');
    const out = strOption(v.out, 'out');
    const maps = String(v.maps ?? 'pca,tsne,umap')
      .split(',')
      .map((m) => m.trim().toLowerCase())
      .filter(Boolean);
    const bad = maps.filter((m) => !(METHODS as readonly string[]).includes(m));
    if (bad.length > 0 || maps.length === 0) throw new ProbsemError(`--maps takes a comma-separated list of ${METHODS.join(', ')}, got '${v.maps}'`, 'BAD_OPTION');
    // The server side loads only for this command (fastify is not needed, but the service is).
    const { exportWeb } = await import('../../server/export-web.js');
    const r = await exportWeb({
      runDir,
      out,
      sample: intOption(v.sample, 'sample', 1000, 1, 1_000_000),
      maps: maps as (typeof METHODS)[number][],
      maxWords: intOption(v['max-words'], 'max-words', 10_000, 1, 10_000_000),
      dataset: v.dataset as string | undefined,
      dataDir: v.data as string | undefined,
      train: !v['no-train'],
      onNotice: (m) => process.stderr.write(`probsem: ${m}\n`),
      onProgress: (m) => process.stderr.write(`export-web: ${m}\n`),
    });
    const groups = new Map<string, number>();
    for (const f of r.files) {
      const g = f.path.startsWith('static/') ? (f.path.endsWith('.wasm') ? 'tfjs wasm binaries' : f.path.endsWith('train-worker.js') ? 'training worker' : 'page and script') : f.path.split('/')[0].replace('.json', '').replace('index.html', 'page and script');
      groups.set(g, (groups.get(g) ?? 0) + f.bytes);
    }
    process.stdout.write(`wrote ${r.dir}: ${r.files.length} files, ${formatBytes(r.bytes)} (${r.sample} test images)\n`);
    for (const [g, b] of groups) process.stdout.write(`  ${g.padEnd(20)} ${formatBytes(b)}\n`);
    process.stdout.write('serve it with any static file server, e.g. `python3 -m http.server -d SITE`\n');
    return 0;
  },
};
