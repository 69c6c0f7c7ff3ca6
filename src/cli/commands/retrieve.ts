import { dirname } from 'node:path';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { imagesToFloat, pixelsOf } from '../../data/dataset.js';
import { encodeGridPng } from '../../data/png.js';
import { loadDataset } from '../../data/registry.js';
import { indexQuery, rankByDistance, type RetrievalResult, retrieveAnyOf, retrieveImages } from '../../runs/retrieval.js';
import { parseDistance } from '../../index/distances.js';
import { DISTANCE_HELP, scoreText } from './kl-index.js';
import { checkCompatible, loadImageModel } from '../../runs/runs.js';
import { searchIndex } from '../../runs/search-index.js';
import * as tf from '@tensorflow/tfjs-core';
import { classOfPhrase, phraseGaussians, phraseInputs, queryForWords, runWordVectors, splitQuery } from '../../runs/words.js';
import { labelInputWidth } from '../../text/labels.js';
import { ProbsemError } from '../../core/errors.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

export const retrieveCommand: Command = {
  summary: 'find the test images that best match some words (KL ranking)',
  help: `probsem retrieve --run DIR --words "sneaker, ankle boot" [--any] [--k 20] [--out grid.png] [--json]

  --words SET    a set query: commas separate its members, the words between two commas are one
                 phrase ("ankle boot"; on runs trained with --labels words any phrase, its words'
                 vectors averaged as in generate). Plural and inflected words are read as their
                 lemma ("boots" → boot), with a note.
                 Several members make one Gaussian covering all of them (their mixture's moments),
                 which favours images between them; --any returns images of any member instead.
  --any          "A or B": each member ranks the images by its own KL(q(z|member) ‖ q(z|x)) and
                 the members take turns (best of each, then second best of each, …), so "sneaker,
                 boot" returns sneakers and boots; prints the member that chose each image
  --k N          images to return (default 20)
  --rank kl|posterior|margin  kl (default): ascending KL(q(z|words) ‖ q(z|x)); posterior: the
                 images most probably of the query against the run's classes (the annotation
                 rule), often the more precise (docs/results.md); margin: the images whose most
                 likely labels are the query's words, most clearly (for label pairs on two-object
                 images: "trouser, bag")
  ${DISTANCE_HELP}
                 (with --rank kl, without --any)
                 Every ranking searches the split's exact index, encoded once and kept in the run
                 directory (index-cache/; PROBSEM_INDEX_CACHE=DIR keeps it elsewhere, =off in memory
                 only), so later searches of the same run and dataset skip encoding the images
  --dataset D    images to search (default: the test split of the run's dataset)
  --out FILE     write the images as a PNG grid, best first
  --json         print ids, labels and KL(q(z|words) ‖ q(z|x)) as JSON (and score, the
                 --distance value, where one is given)`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      words: { type: 'string' },
      k: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      rank: { type: 'string' },
      any: { type: 'boolean' },
      distance: { type: 'string' },
    });
    const distance = parseDistance(v.distance);
    const rank = strOption(v.rank, 'rank', 'kl');
    if (rank !== 'kl' && rank !== 'posterior' && rank !== 'margin') throw new ProbsemError(`--rank must be kl, posterior or margin, got '${rank}'`, 'BAD_OPTION');
    if (v.any && rank !== 'kl') throw new ProbsemError("--any ranks by each member's own KL; it does not combine with --rank posterior or margin", 'BAD_OPTION');
    if (distance !== 'kl' && (v.any || rank !== 'kl')) throw new ProbsemError(`--distance ${distance} ranks one query by that distance; it does not combine with --any or --rank ${rank}`, 'BAD_OPTION');
    const runDir = strOption(v.run, 'run');
    const { model, meta } = loadImageModel(runDir);
    const words = [strOption(v.words, 'words')];
    const k = intOption(v.k, 'k', 20, 1, 10000);
    const entries = splitQuery(meta, words);
    if (entries.length === 0) throw new ProbsemError('--words is empty', 'BAD_OPTION');
    const vectors = await runWordVectors(meta, entries, { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
    // Every member is placed (and its words checked) before the images are loaded.
    const members = v.any ? entries.map((e) => queryForWords(model, meta, [e], vectors)) : [];
    const query = v.any ? null : queryForWords(model, meta, words, vectors);
    const ds = await loadDataset(strOption(v.dataset, 'dataset', meta.dataset?.name ?? 'fashion-mnist'), { dataDir: v.data as string | undefined });
    checkCompatible(meta, ds);
    const pixels = pixelsOf(ds);
    const index = searchIndex(runDir, model, meta, ds, { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
    const competitors = rank === 'posterior' ? phraseGaussians(model, meta, meta.classNames, vectors).filter((_, c) => !entries.some((e) => classOfPhrase(meta, e) === c)) : [];
    const others = meta.classNames.filter((_, c) => !entries.some((e) => classOfPhrase(meta, e) === c));
    const marginLabels =
      rank === 'margin'
        ? { inputs: tf.tensor2d(phraseInputs(meta, [...entries, ...others], vectors), [entries.length + others.length, labelInputWidth(meta.labels ?? { kind: 'onehot' }, meta.classNames.length)]), queryCount: entries.length }
        : undefined;
    const r: RetrievalResult & { members?: number[] } =
      distance !== 'kl'
        ? rankByDistance(model, ds.test, pixels, indexQuery(query!), k, distance, { index })
        : query
          ? retrieveImages(model, ds.test, pixels, query, k, { rank, competitors, marginLabels, index })
          : retrieveAnyOf(model, ds.test, pixels, members, k, { index });
    marginLabels?.inputs.dispose();
    if (v.out !== undefined) {
      const out = String(v.out);
      await ensureDir(dirname(out));
      writeFileAtomicSync(out, encodeGridPng(imagesToFloat(ds.test, r.ids, pixels), r.ids.length, { cols: Math.min(10, r.ids.length), height: ds.height, width: ds.width, channels: ds.channels }));
    }
    const l2 = ds.test.labels2;
    const rows = r.ids.map((id, i) => ({
      id,
      label: ds.classNames[r.labels[i]] + (l2 ? ` + ${ds.classNames[l2[id]]}` : ''),
      kl: r.kl[i],
      ...(r.score ? { score: r.score[i] } : {}),
      ...(r.members ? { member: entries[r.members[i]] } : {}),
    }));
    if (v.json) {
      process.stdout.write(JSON.stringify({ query: entries, mode: v.any ? 'any' : 'set', k, distance, results: rows }) + '\n');
    } else {
      process.stdout.write(`query: ${entries.join(v.any ? ' or ' : ' + ')}\n`);
      for (const row of rows) process.stdout.write(`${String(row.id).padStart(6)}  ${row.label.padEnd(14)} ${scoreText(distance, row)}${row.member !== undefined ? `  (${row.member})` : ''}\n`);
      if (v.out !== undefined) process.stdout.write(`wrote ${rows.length} images to ${v.out}\n`);
    }
    return 0;
  },
};
