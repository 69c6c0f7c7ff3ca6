/**
 * Two-object datasets (the informed-priors paper's "Paired MNIST"): two images of a base dataset
 * side by side, labelled with both classes. The spec names everything that shapes the data, so a
 * run's recorded dataset name rebuilds exactly the same images at evaluation:
 *
 *   paired:<base>[?train=N&test=N&equal=allow|forbid&seed=S]
 *
 * Train pairs are drawn from the base train split and test pairs from the base test split, so no
 * test image is ever seen in training. Defaults: as many pairs as the base split has images,
 * equal pairs allowed (as in the paper, whose dissimilarity figure shows pairs of one digit),
 * seed 0. The left image's class is `labels`, the right one's `labels2`.
 */
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';
import type { Dataset, Split } from './dataset.js';

export const PAIRED_PREFIX = 'paired:';

export interface PairedOptions {
  base: string;
  /** Pairs in the train / test split (default: the base split's size). */
  train?: number;
  test?: number;
  /** Whether both images of a pair may show the same class. */
  equal: 'allow' | 'forbid';
  seed: number;
}

/** Parses `paired:<base>?…`; throws naming the bad part. */
export function parsePairedSpec(spec: string): PairedOptions {
  if (!spec.startsWith(PAIRED_PREFIX)) throw new ProbsemError(`'${spec}' is not a paired dataset spec (paired:<dataset>)`, 'BAD_OPTION');
  const rest = spec.slice(PAIRED_PREFIX.length);
  const q = rest.indexOf('?');
  const base = q < 0 ? rest : rest.slice(0, q);
  if (!base) throw new ProbsemError(`'${spec}': name the base dataset, e.g. paired:fashion-mnist`, 'BAD_OPTION');
  if (base.startsWith(PAIRED_PREFIX)) throw new ProbsemError(`'${spec}': pairs of pairs are not supported`, 'BAD_OPTION');
  const o: PairedOptions = { base, equal: 'allow', seed: 0 };
  if (q < 0) return o;
  for (const part of rest.slice(q + 1).split('&').filter(Boolean)) {
    const [key, value = ''] = part.split('=');
    const count = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new ProbsemError(`'${spec}': ${key} must be a positive integer, got '${value}'`, 'BAD_OPTION');
      return n;
    };
    if (key === 'train') o.train = count();
    else if (key === 'test') o.test = count();
    else if (key === 'seed') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) throw new ProbsemError(`'${spec}': seed must be a non-negative integer, got '${value}'`, 'BAD_OPTION');
      o.seed = n;
    } else if (key === 'equal') {
      if (value !== 'allow' && value !== 'forbid') throw new ProbsemError(`'${spec}': equal must be allow or forbid, got '${value}'`, 'BAD_OPTION');
      o.equal = value;
    } else throw new ProbsemError(`'${spec}': unknown option '${key}' (train, test, equal, seed)`, 'BAD_OPTION');
  }
  return o;
}

/** Builds the two-object dataset from its loaded base. */
export function makePairedDataset(base: Dataset, o: PairedOptions, name: string): Dataset {
  if (base.train.labels2 || base.test.labels2) throw new ProbsemError(`${base.name} is already a two-object dataset`, 'BAD_OPTION');
  // Colour images hold their channels per pixel: a row is width × channels values.
  const rowValues = base.width * (base.channels ?? 1);
  const pairs = (split: Split, count: number, purpose: string): Split => pairSplit(split, base.height, rowValues, count, o, purpose);
  return {
    name,
    source: base.source,
    height: base.height,
    width: 2 * base.width,
    ...((base.channels ?? 1) !== 1 ? { channels: base.channels } : {}),
    classNames: base.classNames,
    train: pairs(base.train, o.train ?? base.train.count, 'paired-train'),
    test: pairs(base.test, o.test ?? base.test.count, 'paired-test'),
  };
}

/** Pairs images of h rows of w values each (w = width × channels), side by side. */
function pairSplit(src: Split, h: number, w: number, count: number, o: PairedOptions, purpose: string): Split {
  if (src.count < 2) throw new ProbsemError(`cannot pair a split of ${src.count} image(s)`, 'BAD_OPTION');
  if (o.equal === 'forbid') {
    const classes = new Set(src.labels);
    if (classes.size < 2) throw new ProbsemError('equal=forbid needs at least two classes in every split', 'BAD_OPTION');
  }
  const rng = Rng.for(o.seed, purpose);
  const pixels = h * w;
  const images = new Uint8Array(count * 2 * pixels);
  const labels = new Uint8Array(count);
  const labels2 = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const i = rng.int(src.count);
    let j = rng.int(src.count);
    while (j === i || (o.equal === 'forbid' && src.labels[j] === src.labels[i])) j = rng.int(src.count);
    labels[n] = src.labels[i];
    labels2[n] = src.labels[j];
    const out = n * 2 * pixels;
    for (let r = 0; r < h; r++) {
      images.set(src.images.subarray(i * pixels + r * w, i * pixels + (r + 1) * w), out + r * 2 * w);
      images.set(src.images.subarray(j * pixels + r * w, j * pixels + (r + 1) * w), out + r * 2 * w + w);
    }
  }
  return { images, labels, labels2, count };
}
