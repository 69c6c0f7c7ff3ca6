import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ProbsemError } from '../../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { decodeImage, describeConversion } from '../../data/image-decode.js';
import { encodeGridPng } from '../../data/png.js';
import { annotateImage, generateForLabel, loadImageModel, runImageShape } from '../../runs/runs.js';
import { generateForPhrases, runWordVectors } from '../../runs/words.js';
import { type Options, intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

/** The polarity flags of every command that reads a picture. */
export const INVERT_OPTIONS: Options = { invert: { type: 'boolean' }, 'no-invert': { type: 'boolean' } };

export const INVERT_HELP = `  --invert       invert the picture (the training data are light-on-dark)
  --no-invert    never invert it
                 (default: invert when its border is light, i.e. dark-on-light)`;

/** --invert / --no-invert as decodeImage's `invert` (undefined: detect). */
export function invertChoice(v: Record<string, unknown>): boolean | undefined {
  if (v.invert && v['no-invert']) throw new ProbsemError('give at most one of --invert and --no-invert', 'BAD_OPTION');
  return v.invert ? true : v['no-invert'] ? false : undefined;
}

/**
 * Reads a picture file (PNG, JPEG, WebP, GIF) as model input, printing one note on stderr when it
 * had to be converted (colour, size, polarity), so a surprising answer can be traced to its input.
 */
export async function readPicture(file: string, height: number, width: number, invert: boolean | undefined, channels: 1 | 3 = 1): Promise<Float32Array> {
  // Colour runs take pictures as they are (as their datasets were read).
  const { pixels, conversion } = await decodeImage(readFileSync(file), { height, width, invert, channels, asIs: channels === 3, source: file });
  const note = describeConversion(file, conversion);
  if (note) process.stderr.write(`note: ${note}\n`);
  return pixels;
}

export const annotateCommand: Command = {
  summary: 'rank the labels of a picture (PNG, JPEG, WebP, GIF) under a trained model',
  help: `probsem annotate --run DIR picture [--top 5] [--invert | --no-invert] [--json]

  picture        PNG, JPEG, WebP or GIF (first frame), any size: converted to the model's
                 grey H×W with the aspect kept; a note on stderr says what was converted
${INVERT_HELP}`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, { run: { type: 'string' }, top: { type: 'string' }, ...INVERT_OPTIONS, json: { type: 'boolean' } }, true);
    if (positionals.length !== 1) throw new ProbsemError('give exactly one image file', 'BAD_OPTION');
    const file = positionals[0];
    const invert = invertChoice(v);
    if (!existsSync(file)) throw new ProbsemError(`image ${file} not found`, 'NOT_FOUND');
    if (!statSync(file).isFile()) throw new ProbsemError(`image ${file} is not a file`, 'BAD_OPTION');
    const { model, meta } = loadImageModel(strOption(v.run, 'run'));
    const { height: h, width: w, channels } = runImageShape(meta);
    const image = await readPicture(file, h, w, invert, channels);
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
                 --labels words takes any word its vectors know ("loafer, jeans, ankle boot")
  Each row is captioned at the left with its label or phrase.`,
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
    const { height: h, width: w, channels } = runImageShape(meta);
    await ensureDir(dirname(out));
    if (v.label !== undefined) {
      const label = strOption(v.label, 'label');
      const images = generateForLabel(model, meta, label, n, seed);
      const cols = intOption(v.cols, 'cols', Math.min(n, 8), 1, 1000);
      const rowLabels = Array<string>(Math.ceil(n / cols)).fill(label);
      writeFileAtomicSync(out, encodeGridPng(images, n, { cols, height: h, width: w, channels, rowLabels }));
      process.stdout.write(`wrote ${n} images of '${v.label}' to ${out}\n`);
      return 0;
    }
    const phrases = String(v.words).split(',').map((p) => p.trim()).filter(Boolean);
    if (phrases.length === 0 || phrases.length > 100) throw new ProbsemError('--words needs 1 to 100 comma-separated words or phrases', 'BAD_OPTION');
    const vectors = await runWordVectors(meta, phrases, { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
    const images = generateForPhrases(model, meta, phrases, vectors, n, seed);
    const cols = intOption(v.cols, 'cols', n, 1, 1000);
    // Each phrase starts a new row (and takes several when --cols < --n), captioned on its first.
    const rowsEach = Math.ceil(n / cols);
    const cells = phrases.flatMap((_, p) => Array.from({ length: n }, (_, j) => p * rowsEach * cols + j));
    const rowLabels = phrases.flatMap((p) => [p, ...Array<string>(rowsEach - 1).fill('')]);
    writeFileAtomicSync(out, encodeGridPng(images, n * phrases.length, { cols, height: h, width: w, channels, cells, rowLabels }));
    const layout = rowsEach === 1 ? 'one row each' : `${rowsEach} rows each`;
    process.stdout.write(`wrote ${n} images each of ${phrases.map((p) => `'${p}'`).join(', ')} (${layout}, captioned) to ${out}\n`);
    return 0;
  },
};
