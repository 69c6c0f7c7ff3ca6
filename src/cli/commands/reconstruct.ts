import * as tf from '@tensorflow/tfjs-core';
import { dirname } from 'node:path';
import { ProbsemError } from '../../core/errors.js';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { Rng } from '../../core/random.js';
import { imagesToFloat, pixelsOf } from '../../data/dataset.js';
import { encodeGridPng } from '../../data/png.js';
import { loadDataset } from '../../data/registry.js';
import type { ImageModel } from '../../models/base.js';
import { corruptRows } from '../../models/denoising-ae.js';
import { checkCompatible, classLabelInputs, loadImageModel, reconstruct, runDatasetName } from '../../runs/runs.js';
import { intOption, numOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

/**
 * Reconstructions (pixel probabilities) of x [n, pixels]: from the posterior mean, or for models
 * that reconstruct given the label (CVAE) from q(z|x,l)'s mean with each image's label input.
 */
function reconstructImages(model: ImageModel, x: Float32Array, pixels: number, labelRows: tf.Tensor2D, labels: Int32Array): Float32Array {
  if (!model.reconstructLogits) return reconstruct(model, x, pixels);
  return tf.tidy(() => {
    const y = tf.gather(labelRows, tf.tensor1d(labels, 'int32')) as tf.Tensor2D;
    return tf.sigmoid(model.reconstructLogits!(tf.tensor2d(x, [labels.length, pixels]), y, null)).dataSync() as Float32Array;
  });
}

export const reconstructCommand: Command = {
  summary: 'write a PNG grid of images and their reconstructions (originals above, reconstructions below)',
  help: `probsem reconstruct --run DIR [--n 16] [--cols 16] [--split test|train] [--seed 0] [--noise SD] --out grid.png

  Draws --n images of the split at random (seeded), encodes them, decodes the posterior mean and
  writes one row of originals with the row of their reconstructions below, wrapped every --cols
  images. Works for every run with an image encoder and decoder (VAEs, PSE, autoencoders, CVAE).
  --noise SD       corrupt the inputs first with Gaussian noise of this sd, clipped to [0, 1] (as
                   the denoising autoencoder trains): the rows become noisy input, reconstruction,
                   clean original
  --dataset NAME|DIR   dataset to draw from (default: the one the run was trained on)
  --data DIR       where to look for the dataset's IDX files`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      n: { type: 'string' },
      cols: { type: 'string' },
      split: { type: 'string' },
      seed: { type: 'string' },
      noise: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
    });
    const out = strOption(v.out, 'out');
    const n = intOption(v.n, 'n', 16, 1, 1000);
    const cols = intOption(v.cols, 'cols', Math.min(n, 16), 1, 1000);
    const seed = intOption(v.seed, 'seed', 0, 0);
    const noise = numOption(v.noise, 'noise', 0, 0, 10);
    const splitName = strOption(v.split, 'split', 'test');
    if (splitName !== 'test' && splitName !== 'train') throw new ProbsemError(`--split must be test or train, got '${splitName}'`, 'BAD_OPTION');
    const { model, meta } = loadImageModel(strOption(v.run, 'run'));
    const ds = await loadDataset(runDatasetName(meta, v.dataset as string | undefined, (m) => process.stderr.write(`note: ${m}\n`)), {
      dataDir: v.data as string | undefined,
      onNotice: (m) => process.stderr.write(`note: ${m}\n`),
    });
    checkCompatible(meta, ds);
    const split = splitName === 'test' ? ds.test : ds.train;
    if (n > split.count) throw new ProbsemError(`--n ${n} exceeds the ${split.count} images of the ${splitName} split`, 'BAD_OPTION');
    const pixels = pixelsOf(ds);
    const idx = Rng.for(seed, 'reconstruct', splitName).permutation(split.count).subarray(0, n);
    const clean = imagesToFloat(split, idx, pixels);
    const input = noise > 0 ? corruptRows(clean, noise, Rng.for(seed, 'reconstruct-noise')) : clean;
    const labelRows = classLabelInputs(meta);
    let recon: Float32Array;
    try {
      recon = reconstructImages(model, input, pixels, labelRows, Int32Array.from(idx, (i) => split.labels[i]));
    } finally {
      labelRows.dispose();
    }
    // Blocks of `cols` images: a row of inputs, the row of their reconstructions (and the clean originals when noised).
    const rowsPerBlock = noise > 0 ? [input, recon, clean] : [input, recon];
    const blocks = Math.ceil(n / cols);
    // Slots past the last image of a block show the grid's padding grey.
    const tiles = new Float32Array(blocks * rowsPerBlock.length * cols * pixels).fill(96 / 255);
    for (let b = 0; b < blocks; b++) {
      const from = b * cols;
      const count = Math.min(cols, n - from);
      rowsPerBlock.forEach((images, r) => {
        tiles.set(images.subarray(from * pixels, (from + count) * pixels), ((b * rowsPerBlock.length + r) * cols) * pixels);
      });
    }
    await ensureDir(dirname(out));
    writeFileAtomicSync(out, encodeGridPng(tiles, tiles.length / pixels, { cols, height: ds.height, width: ds.width, channels: ds.channels }));
    process.stdout.write(
      `wrote ${n} ${splitName} images of ${ds.name} and their reconstructions by ${meta.model} to ${out} ` +
        `(rows: ${noise > 0 ? `input with noise sd ${noise}, reconstruction, clean original` : 'original, reconstruction'})\n`,
    );
    return 0;
  },
};
