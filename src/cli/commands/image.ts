import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ProbsemError } from '../../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { decodePngToGrey, encodeGridPng } from '../../data/png.js';
import { annotateImage, generateForLabel, loadImageModel } from '../../runs/runs.js';
import { generateForPhrases, runWordVectors } from '../../runs/words.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

export const annotateCommand: Command = {
  summary: 'rank the labels of an image (PNG) under a trained model',
  help: `probsem annotate --run DIR image.png [--top 5] [--invert] [--json]

  --invert   for dark-on-light pictures (the training data are light-on-dark)`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, { run: { type: 'string' }, top: { type: 'string' }, invert: { type: 'boolean' }, json: { type: 'boolean' } }, true);
    if (positionals.length !== 1) throw new ProbsemError('give exactly one image file', 'BAD_OPTION');
    const file = positionals[0];
    if (!existsSync(file)) throw new ProbsemError(`image ${file} not found`, 'NOT_FOUND');
    if (!statSync(file).isFile()) throw new ProbsemError(`image ${file} is not a file`, 'BAD_OPTION');
    const { model, meta } = loadImageModel(strOption(v.run, 'run'));
    const h = meta.dataset?.height ?? 28;
    const w = meta.dataset?.width ?? 28;
    const image = decodePngToGrey(readFileSync(file), h, w, file, { invert: Boolean(v.invert) });
    const top = intOption(v.top, 'top', 5, 1, meta.classNames.length);
    const ranked = annotateImage(model, meta, image).slice(0, top);
    if (v.json) {
      process.stdout.write(JSON.stringify({ image: file, labels: ranked }) + '\n');
    } else {
      for (const r of ranked) {
        const bar = '█'.repeat(Math.round(r.probability * 30));
        process.stdout.write(`${r.label.padEnd(14)} ${(100 * r.probability).toFixed(1).padStart(5)}% ${bar}\n`);
      }
    }
    return 0;
  },
};

export const generateCommand: Command = {
  summary: 'generate images for a label or any words and write them as a PNG grid',
  help: `probsem generate --run DIR (--label NAME | --words "w1[, w2 …]") [--n 16] [--cols 8] [--seed 0] --out grid.png

  --label NAME   one of the run's classes, or two joined by '+' ("Trouser+Sneaker"): images from
                 that label set's distribution (informed priors: the prior the model trained with)
  --words LIST   comma-separated words or phrases, one row of --n images each; a run trained with
                 --labels words takes any word its vectors know ("loafer, jeans, ankle boot")`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      label: { type: 'string' },
      words: { type: 'string' },
      n: { type: 'string' },
      cols: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
    });
    if ((v.label === undefined) === (v.words === undefined)) throw new ProbsemError('give exactly one of --label or --words', 'BAD_OPTION');
    const n = intOption(v.n, 'n', 16, 1, 10000);
    const out = strOption(v.out, 'out');
    const seed = intOption(v.seed, 'seed', 0, 0);
    const { model, meta } = loadImageModel(strOption(v.run, 'run'));
    const h = meta.dataset?.height ?? 28;
    const w = meta.dataset?.width ?? 28;
    await ensureDir(dirname(out));
    if (v.label !== undefined) {
      const images = generateForLabel(model, meta, strOption(v.label, 'label'), n, seed);
      writeFileAtomicSync(out, encodeGridPng(images, n, { cols: intOption(v.cols, 'cols', Math.min(n, 8), 1, 1000), height: h, width: w }));
      process.stdout.write(`wrote ${n} images of '${v.label}' to ${out}\n`);
      return 0;
    }
    const phrases = String(v.words).split(',').map((p) => p.trim()).filter(Boolean);
    if (phrases.length === 0 || phrases.length > 100) throw new ProbsemError('--words needs 1 to 100 comma-separated words or phrases', 'BAD_OPTION');
    const vectors = await runWordVectors(meta, phrases, { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
    const images = generateForPhrases(model, meta, phrases, vectors, n, seed);
    writeFileAtomicSync(out, encodeGridPng(images, n * phrases.length, { cols: intOption(v.cols, 'cols', n, 1, 1000), height: h, width: w }));
    process.stdout.write(`wrote ${n} images each of ${phrases.map((p) => `'${p}'`).join(', ')} (one row each) to ${out}\n`);
    return 0;
  },
};
