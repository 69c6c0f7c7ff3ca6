import { resolve } from 'node:path';
import { ProbsemError } from '../../core/errors.js';
import { datasetHash, pixelsOf } from '../../data/dataset.js';
import { loadDataset } from '../../data/registry.js';
import { EMBED_FORMATS, embedFormatOf, embedSplit, type EmbedFormat } from '../../runs/embed.js';
import { checkCompatible, loadImageModel, runDatasetName } from '../../runs/runs.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

export const embedCommand: Command = {
  summary: "write a run's posteriors of a dataset (means, variances or Cholesky factors, ids, labels) as .npy, JSON lines or Parquet",
  help: `probsem embed --run DIR --out PATH [--dataset SPEC] [--split test|train] [--format npy|jsonl|parquet] [--batch 500]

Encodes every image of a split and writes its posterior q(z|x), streamed one batch at a time (the
output never sits in memory), under a temporary name renamed into place at the end.

  --run DIR        the model
  --dataset SPEC   the images (default: the run's dataset); any dataset of the run's image size
  --split S        test (default) or train
  --out PATH       npy: a directory of mean.npy [N, K], variance.npy [N, K] (diagonal models) or
                   scale_tril.npy [N, K, K] (full covariance, Σ = L Lᵀ), ids.npy [N], labels.npy
                   [N] or [N, 2], all little-endian float32/int32, and meta.json; jsonl: one
                   {"id", "labels", "label_names", "mean", "variance"|"scale_tril"} per line;
                   parquet: the same columns (lists; scale_tril flattened row by row to K·K
                   values), written a row group at a time, meta.json's object under the
                   file's key-value metadata key "probsem".
                   An existing PATH is replaced only if probsem embed wrote it.
  --format F       npy, jsonl or parquet (default: by PATH's extension, .jsonl or .parquet, else npy)
  --batch N        images per step (default 500)

In Python: numpy.load("PATH/mean.npy"), pandas.read_json("PATH", lines=True) or
pandas.read_parquet("PATH") (docs/embed.md).`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      split: { type: 'string' },
      out: { type: 'string' },
      format: { type: 'string' },
      batch: { type: 'string' },
    });
    const out = strOption(v.out, 'out');
    const format = strOption(v.format, 'format', embedFormatOf(out)) as EmbedFormat;
    if (!EMBED_FORMATS.includes(format)) throw new ProbsemError(`--format must be npy, jsonl or parquet, got '${format}'`, 'BAD_OPTION');
    const split = strOption(v.split, 'split', 'test');
    if (split !== 'test' && split !== 'train') throw new ProbsemError(`--split must be test or train, got '${split}'`, 'BAD_OPTION');
    const batch = intOption(v.batch, 'batch', 500, 1, 100000);
    const dir = strOption(v.run, 'run');
    const { model, meta } = loadImageModel(dir);
    const ds = await loadDataset(runDatasetName(meta, v.dataset as string | undefined, (m) => process.stderr.write(`note: ${m}\n`)), { dataDir: v.data as string | undefined });
    checkCompatible(meta, ds);
    const t0 = performance.now();
    const r = await embedSplit(model, ds[split], pixelsOf(ds), {
      out,
      format,
      batch,
      classNames: ds.classNames,
      meta: { run: resolve(dir), model: meta.model, runWeightsSha256: meta.weights.sha256, dataset: ds.name, datasetHash: datasetHash(ds), split },
    });
    process.stdout.write(
      `embedded ${r.count} ${r.kind === 'full' ? 'full-covariance' : 'diagonal'} posteriors (latent ${r.dim}) of ${ds.name} ${split} in ${((performance.now() - t0) / 1000).toFixed(1)} s; wrote ${out}` +
        (format === 'npy' ? ` (${r.files.join(', ')})` : '') +
        '\n',
    );
    return 0;
  },
};
