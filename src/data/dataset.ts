/** In-memory labelled image datasets and the seeded batcher the trainer draws from. */
import { createHash } from 'node:crypto';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';

/** One split: `count` images of height×width×channels bytes (channels interleaved per pixel) and one class index per image. */
export interface Split {
  images: Uint8Array;
  labels: Uint8Array;
  /** Second class of each image in two-object (paired) datasets. */
  labels2?: Uint8Array;
  count: number;
}

export interface Dataset {
  /** Registry name or the directory it came from. */
  name: string;
  /** Where the files were found. */
  source: string;
  height: number;
  width: number;
  /** 3 for RGB (stored per pixel: r, g, b), absent or 1 for grey. */
  channels?: 1 | 3;
  classNames: string[];
  train: Split;
  test: Split;
  /** A taxonomy the dataset states itself (CIFAR-100's superclasses): each class's parent, −1 for none. */
  hierarchy?: { parents: string[]; parentOf: number[] };
}

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];
export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** Values per image: height × width × channels (a model's inputDim). */
export function pixelsOf(ds: Pick<Dataset, 'height' | 'width' | 'channels'>): number {
  return ds.height * ds.width * (ds.channels ?? 1);
}

/** Content hash of a dataset (both splits), recorded in model provenance. */
export function datasetHash(ds: Dataset): string {
  const h = createHash('sha256');
  for (const s of [ds.train, ds.test]) {
    h.update(s.images);
    h.update(s.labels);
    if (s.labels2) h.update(s.labels2);
  }
  // Grey datasets keep the hash they had before colour existed.
  h.update(JSON.stringify((ds.channels ?? 1) === 1 ? [ds.height, ds.width, ds.classNames] : [ds.height, ds.width, ds.channels, ds.classNames]));
  return h.digest('hex').slice(0, 16);
}

/** Checks labels are class indices in range, naming the first offender. */
export function validateSplit(split: Split, numClasses: number, what: string): void {
  for (const labels of split.labels2 ? [split.labels, split.labels2] : [split.labels]) {
    for (let i = 0; i < split.count; i++) {
      if (labels[i] >= numClasses) {
        throw new ProbsemError(
          `${what}: label ${labels[i]} at index ${i} is outside the ${numClasses} known classes`,
          'DATA_FORMAT',
        );
      }
    }
  }
}

/** Grey values in [0, 1] of the given images, row-major [indices.length, pixels]. */
export function imagesToFloat(split: Split, indices: ArrayLike<number>, pixels: number): Float32Array {
  const out = new Float32Array(indices.length * pixels);
  for (let r = 0; r < indices.length; r++) {
    const base = indices[r] * pixels;
    const o = r * pixels;
    for (let p = 0; p < pixels; p++) out[o + p] = split.images[base + p] / 255;
  }
  return out;
}

export function oneHot(labels: ArrayLike<number>, numClasses: number): Float32Array {
  const out = new Float32Array(labels.length * numClasses);
  for (let i = 0; i < labels.length; i++) out[i * numClasses + labels[i]] = 1;
  return out;
}

/**
 * Seeded shuffling batcher. The batch for a step is a pure function of (seed, step): each epoch
 * is a fresh permutation and an epoch has floor(n / batchSize) full batches. A resumed run
 * therefore sees exactly the batches the uninterrupted run would have.
 */
export class Batcher {
  readonly stepsPerEpoch: number;
  private epoch = -1;
  private perm: Int32Array = new Int32Array(0);

  constructor(
    readonly count: number,
    readonly batchSize: number,
    readonly seed: number,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new ProbsemError(`batch size must be a positive integer, got ${batchSize}`, 'BAD_OPTION');
    }
    if (batchSize > count) {
      throw new ProbsemError(`batch size ${batchSize} exceeds the ${count} training examples`, 'BAD_OPTION');
    }
    this.stepsPerEpoch = Math.floor(count / batchSize);
  }

  indices(step: number): Int32Array {
    const epoch = Math.floor(step / this.stepsPerEpoch);
    if (epoch !== this.epoch) {
      this.perm = Rng.for(this.seed, 'shuffle', epoch).permutation(this.count);
      this.epoch = epoch;
    }
    const start = (step % this.stepsPerEpoch) * this.batchSize;
    return this.perm.subarray(start, start + this.batchSize);
  }
}

/** Mean grey value per pixel over a split. */
export function meanImage(split: Split, pixels: number): Float32Array {
  const sum = new Float64Array(pixels);
  for (let i = 0; i < split.count; i++) {
    const base = i * pixels;
    for (let p = 0; p < pixels; p++) sum[p] += split.images[base + p];
  }
  return Float32Array.from(sum, (v) => v / (255 * Math.max(1, split.count)));
}

/** The images of a split whose class is not in `drop` (for training without held-out classes). */
export function withoutClasses(split: Split, drop: ReadonlySet<number>, pixels: number): Split {
  let count = 0;
  for (let i = 0; i < split.count; i++) if (!drop.has(split.labels[i])) count++;
  const images = new Uint8Array(count * pixels);
  const labels = new Uint8Array(count);
  let j = 0;
  for (let i = 0; i < split.count; i++) {
    if (drop.has(split.labels[i])) continue;
    images.set(split.images.subarray(i * pixels, (i + 1) * pixels), j * pixels);
    labels[j++] = split.labels[i];
  }
  return { images, labels, count };
}
