import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ProbsemError } from '../../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { imagesToFloat, pixelsOf } from '../../data/dataset.js';
import { encodeGridPng } from '../../data/png.js';
import { loadDataset } from '../../data/registry.js';
import { imageQuery, rankByDistance, similarImages } from '../../runs/retrieval.js';
import { parseDistance } from '../../index/distances.js';
import { DISTANCE_HELP, scoreText } from './kl-index.js';
import { checkCompatible, loadImageModel } from '../../runs/runs.js';
import { searchIndex } from '../../runs/search-index.js';
import { intOption, parse, strOption } from '../args.js';
import { INVERT_HELP, INVERT_OPTIONS, invertChoice, readPicture } from './image.js';
import type { Command } from './index.js';

export const similarCommand: Command = {
  summary: 'find the test images most (or least) similar to an image: KL between posteriors',
  help: `probsem similar --run DIR --image <id|picture> [--k 20] [--dissimilar] [--out grid.png] [--json]

  --image ID|FILE  a test-split index of the run's dataset, or a picture (PNG, JPEG, WebP, GIF;
                   converted to the run's image size, with a note on stderr)
  --k N            images to return (default 20)
  --dissimilar     the largest KL(q(z|query) ‖ q(z|x)) first instead of the smallest
  ${DISTANCE_HELP}
  --dataset D      images to search (default: the test split of the run's dataset)
  --out FILE       a PNG grid: the query first, framed in orange, then the results in order
  --json           print ids, labels and KL values as JSON
${INVERT_HELP}`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      image: { type: 'string' },
      k: { type: 'string' },
      dissimilar: { type: 'boolean' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      distance: { type: 'string' },
      ...INVERT_OPTIONS,
    });
    const distance = parseDistance(v.distance);
    const invert = invertChoice(v);
    const runDir = strOption(v.run, 'run');
    const { model, meta } = loadImageModel(runDir);
    const k = intOption(v.k, 'k', 20, 1, 10000);
    const ds = await loadDataset(strOption(v.dataset, 'dataset', meta.dataset?.name ?? 'fashion-mnist'), { dataDir: v.data as string | undefined });
    checkCompatible(meta, ds);
    const pixels = pixelsOf(ds);
    const spec = strOption(v.image, 'image');
    let image: Float32Array;
    let exclude = -1;
    let label: string | null = null;
    if (/^\d+$/.test(spec)) {
      const id = Number(spec);
      if (id >= ds.test.count) throw new ProbsemError(`--image ${id}: the test split has ${ds.test.count} images (0 to ${ds.test.count - 1})`, 'BAD_OPTION');
      image = imagesToFloat(ds.test, [id], pixels);
      exclude = id;
      label = labelsOf(ds, id);
    } else {
      if (!existsSync(spec)) throw new ProbsemError(`--image ${spec}: neither a test index nor an existing file`, 'NOT_FOUND');
      if (!statSync(spec).isFile()) throw new ProbsemError(`--image ${spec} is not a file`, 'BAD_OPTION');
      image = await readPicture(spec, ds.height, ds.width, invert, ds.channels ?? 1);
    }
    // The split's exact index, from the run's cache where it has one (retrieve --help).
    const index = searchIndex(runDir, model, meta, ds, { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
    const r =
      distance === 'kl'
        ? similarImages(model, ds.test, pixels, image, k, { dissimilar: Boolean(v.dissimilar), exclude, index })
        : rankByDistance(model, ds.test, pixels, imageQuery(model, image, pixels), k, distance, { largest: Boolean(v.dissimilar), exclude, index });
    const rows = r.ids.map((id, i) => ({ id, label: labelsOf(ds, id), kl: r.kl[i], ...(r.score ? { score: r.score[i] } : {}) }));
    if (v.out !== undefined) {
      const out = String(v.out);
      await ensureDir(dirname(out));
      const tiles = new Float32Array((rows.length + 1) * pixels);
      tiles.set(image, 0);
      tiles.set(imagesToFloat(ds.test, r.ids, pixels), pixels);
      const cols = Math.min(ds.width > ds.height ? 7 : 11, rows.length + 1);
      writeFileAtomicSync(out, encodeGridPng(tiles, rows.length + 1, { cols, height: ds.height, width: ds.width, channels: ds.channels, highlight: [0] }));
    }
    if (v.json) {
      process.stdout.write(JSON.stringify({ query: { image: spec, label }, k, dissimilar: Boolean(v.dissimilar), distance, results: rows }) + '\n');
    } else {
      process.stdout.write(`query: ${spec}${label ? ` (${label})` : ''}; ${v.dissimilar ? 'most dissimilar' : 'most similar'} by ${distance === 'kl' ? 'KL(q(z|query) ‖ q(z|x))' : distance}\n`);
      for (const row of rows) process.stdout.write(`${String(row.id).padStart(6)}  ${row.label.padEnd(24)} ${scoreText(distance, row)}\n`);
      if (v.out !== undefined) process.stdout.write(`wrote the query (framed) and ${rows.length} images to ${v.out}\n`);
    }
    return 0;
  },
};

/** "Sneaker" or, for two-object images, "Sneaker + Bag". */
function labelsOf(ds: { classNames: string[]; test: { labels: Uint8Array; labels2?: Uint8Array } }, id: number): string {
  const a = ds.classNames[ds.test.labels[id]];
  return ds.test.labels2 ? `${a} + ${ds.classNames[ds.test.labels2[id]]}` : a;
}
