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
  /**
   * Tag sets of datasets whose images carry several words (emoji, tag manifests): image i's tags
   * are `tagIds[tagStart[i] .. tagStart[i + 1])`, indices into `Dataset.tagNames`, each set
   * sorted and without repeats. `tagStart` has count + 1 entries. Absent where images carry
   * only their class.
   */
  tagStart?: Uint32Array;
  tagIds?: Uint16Array;
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
  /** The words that `Split.tagIds` index, when the splits carry tag sets. */
  tagNames?: string[];
}

/** Image i's tag indices (a view; empty where the split has no tag sets). */
export function tagsOf(split: Split, i: number): Uint16Array {
  if (!split.tagStart || !split.tagIds) return new Uint16Array(0);
  return split.tagIds.subarray(split.tagStart[i], split.tagStart[i + 1]);
}

/** Packs per-image tag lists (indices into the tag vocabulary) into a split's tagStart/tagIds, sorted and de-duplicated. */
export function packTags(sets: ReadonlyArray<ArrayLike<number>>): { tagStart: Uint32Array; tagIds: Uint16Array } {
  const tagStart = new Uint32Array(sets.length + 1);
  const ids: number[] = [];
  sets.forEach((set, i) => {
    const sorted = [...new Set(Array.from(set))].sort((a, b) => a - b);
    for (const t of sorted) {
      if (!Number.isInteger(t) || t < 0 || t > 0xffff) throw new ProbsemError(`tag index ${t} of image ${i} is not an integer in [0, 65535]`, 'DATA_FORMAT');
      ids.push(t);
    }
    tagStart[i + 1] = ids.length;
  });
  return { tagStart, tagIds: Uint16Array.from(ids) };
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
    if (s.tagStart && s.tagIds) {
      h.update(new Uint8Array(s.tagStart.buffer, s.tagStart.byteOffset, s.tagStart.byteLength));
      h.update(new Uint8Array(s.tagIds.buffer, s.tagIds.byteOffset, s.tagIds.byteLength));
    }
  }
  if (ds.tagNames) h.update(JSON.stringify(ds.tagNames));
  // Grey datasets keep the hash they had before colour existed.
  h.update(JSON.stringify((ds.channels ?? 1) === 1 ? [ds.height, ds.width, ds.classNames] : [ds.height, ds.width, ds.channels, ds.classNames]));
  return h.digest('hex').slice(0, 16);
}

/** Checks labels are class indices in range (and tag sets, where given, are well formed), naming the first offender. */
export function validateSplit(split: Split, numClasses: number, what: string, numTags?: number): void {
  if (split.tagStart || split.tagIds) {
    const { tagStart, tagIds } = split;
    if (!tagStart || !tagIds || tagStart.length !== split.count + 1 || tagStart[0] !== 0 || tagStart[split.count] !== tagIds.length) {
      throw new ProbsemError(`${what}: tag sets are malformed (tagStart needs ${split.count + 1} offsets from 0 to the number of tags)`, 'DATA_FORMAT');
    }
    for (let i = 0; i < split.count; i++) {
      if (tagStart[i + 1] < tagStart[i]) throw new ProbsemError(`${what}: tag offsets decrease at image ${i}`, 'DATA_FORMAT');
      for (let j = tagStart[i]; j < tagStart[i + 1]; j++) {
        if (numTags !== undefined && tagIds[j] >= numTags) {
          throw new ProbsemError(`${what}: tag ${tagIds[j]} of image ${i} is outside the ${numTags} known tags`, 'DATA_FORMAT');
        }
      }
    }
  }
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
  const tags: Uint16Array[] = [];
  let j = 0;
  for (let i = 0; i < split.count; i++) {
    if (drop.has(split.labels[i])) continue;
    images.set(split.images.subarray(i * pixels, (i + 1) * pixels), j * pixels);
    if (split.tagStart) tags.push(tagsOf(split, i));
    labels[j++] = split.labels[i];
  }
  return split.tagStart ? { images, labels, count, ...packTags(tags) } : { images, labels, count };
}

/** The split with the tags in `drop` taken out of every image's set (tags a run has no vector for). */
export function withoutTags(split: Split, drop: ReadonlySet<number>): Split {
  if (!split.tagStart || drop.size === 0) return split;
  const sets = Array.from({ length: split.count }, (_, i) => Array.from(tagsOf(split, i)).filter((t) => !drop.has(t)));
  return { ...split, ...packTags(sets) };
}
