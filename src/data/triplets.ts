/**
 * Triplet sampling for metric learning (TVAE): an anchor, a positive of the anchor's class and a
 * negative of another class, as index triplets into one set of labels. Two uses:
 *  - `sampleTriplets`: a fixed, seeded set drawn uniformly from a split (triplet accuracy);
 *  - `batchTriplets`: one triplet per usable anchor of a training minibatch, with random or
 *    semi-hard negatives.
 * Every triplet returned is valid by construction (anchor ≠ positive, same class; negative of another
 * class); data that admits none is refused with a clear error.
 */
import { ProbsemError } from '../core/errors.js';
import type { Rng } from '../core/random.js';

export interface Triplets {
  anchor: Int32Array;
  positive: Int32Array;
  negative: Int32Array;
}

export const TRIPLET_MINING = ['random', 'semi-hard'] as const;
export type TripletMining = (typeof TRIPLET_MINING)[number];

/** Row indices of each class, in order. */
function membersByClass(labels: ArrayLike<number>): Map<number, number[]> {
  const m = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    if (!Number.isInteger(c) || c < 0) throw new ProbsemError(`triplets: label ${c} at row ${i} is not a class index`, 'BAD_INPUT');
    let list = m.get(c);
    if (!list) m.set(c, (list = []));
    list.push(i);
  }
  return m;
}

/** Draws a row of another class than `c` uniformly (n rows in all, `own` of them of class c). */
function drawNegative(labels: ArrayLike<number>, c: number, own: number, rng: Rng): number {
  // The k-th row not of class c, k uniform: one pass, no per-class lists needed.
  let k = rng.int(labels.length - own);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === c) continue;
    if (k-- === 0) return i;
  }
  throw new Error('unreachable: negative index out of range');
}

/**
 * `count` triplets drawn uniformly and independently: the anchor uniformly among rows whose class
 * has another member, the positive uniformly among the other members of its class, the negative
 * uniformly among the rows of the other classes. The same labels, count and rng state give the same
 * triplets.
 */
export function sampleTriplets(labels: ArrayLike<number>, count: number, rng: Rng): Triplets {
  if (!Number.isInteger(count) || count < 1) throw new ProbsemError(`triplets: count must be a positive integer, got ${count}`, 'BAD_OPTION');
  const byClass = membersByClass(labels);
  const anchors: number[] = [];
  for (const rows of byClass.values()) if (rows.length >= 2) anchors.push(...rows);
  anchors.sort((a, b) => a - b);
  if (anchors.length === 0) throw new ProbsemError('triplets: no class has two images, so no anchor has a positive', 'BAD_INPUT');
  if (byClass.size < 2) throw new ProbsemError('triplets: the images are all of one class, so there is no negative', 'BAD_INPUT');
  const out: Triplets = { anchor: new Int32Array(count), positive: new Int32Array(count), negative: new Int32Array(count) };
  for (let t = 0; t < count; t++) {
    const a = anchors[rng.int(anchors.length)];
    const own = byClass.get(labels[a])!;
    // Uniform over the other members: draw among own.length − 1 and skip the anchor.
    let j = rng.int(own.length - 1);
    if (own[j] === a) j = own.length - 1;
    out.anchor[t] = a;
    out.positive[t] = own[j];
    out.negative[t] = drawNegative(labels, labels[a], own.length, rng);
  }
  return out;
}

/** Squared Euclidean distance between rows i and j of a row-major [n, dim] matrix. */
function squaredDistance(points: Float32Array, dim: number, i: number, j: number): number {
  let s = 0;
  for (let d = 0; d < dim; d++) {
    const v = points[i * dim + d] - points[j * dim + d];
    s += v * v;
  }
  return s;
}

export interface BatchTripletOptions {
  mining: TripletMining;
  /** Semi-hard mining: the embedded rows, [rows, dim] row-major, and the margin. */
  points?: Float32Array;
  dim?: number;
  margin?: number;
}

/**
 * One triplet for every row of a minibatch that can anchor one (its class has another row and some
 * row is of another class), in row order. The positive is a uniformly drawn other row of the
 * anchor's class. The negative is drawn uniformly from the other classes ('random'), or ('semi-hard',
 * FaceNet's rule) uniformly from the negatives farther than the positive but within the margin of it,
 * D(a,p) < D(a,n) < D(a,p) + m, falling back to a uniform negative when there is none. A batch with no
 * usable anchor gives no triplets (the caller's loss term is then zero), not an error: small or
 * unlucky minibatches happen.
 */
export function batchTriplets(labels: ArrayLike<number>, rng: Rng, o: BatchTripletOptions): Triplets {
  const byClass = membersByClass(labels);
  const a: number[] = [];
  const p: number[] = [];
  const n: number[] = [];
  if (byClass.size >= 2) {
    const semiHard = o.mining === 'semi-hard';
    if (semiHard && (!o.points || !o.dim || o.margin === undefined)) {
      throw new ProbsemError('semi-hard triplet mining needs the embedded points, their dimension and the margin', 'BAD_OPTION');
    }
    for (let i = 0; i < labels.length; i++) {
      const own = byClass.get(labels[i])!;
      if (own.length < 2) continue;
      // The anchor's position in its class list, to draw uniformly among the others.
      let j = rng.int(own.length - 1);
      if (own[j] === i) j = own.length - 1;
      const pos = own[j];
      let neg = -1;
      if (semiHard) {
        const pts = o.points!;
        const dim = o.dim!;
        const dap = Math.sqrt(squaredDistance(pts, dim, i, pos));
        const candidates: number[] = [];
        for (let r = 0; r < labels.length; r++) {
          if (labels[r] === labels[i]) continue;
          const dan = Math.sqrt(squaredDistance(pts, dim, i, r));
          if (dan > dap && dan < dap + o.margin!) candidates.push(r);
        }
        if (candidates.length > 0) neg = candidates[rng.int(candidates.length)];
      }
      if (neg < 0) neg = drawNegative(labels, labels[i], own.length, rng);
      a.push(i);
      p.push(pos);
      n.push(neg);
    }
  }
  return { anchor: Int32Array.from(a), positive: Int32Array.from(p), negative: Int32Array.from(n) };
}

/** Checks that every triplet is valid for these labels (used by tests and by callers given triplets). */
export function checkTriplets(labels: ArrayLike<number>, t: Triplets): void {
  const n = t.anchor.length;
  if (t.positive.length !== n || t.negative.length !== n) throw new ProbsemError('triplets: anchor, positive and negative lists differ in length', 'BAD_INPUT');
  for (let i = 0; i < n; i++) {
    const [a, p, q] = [t.anchor[i], t.positive[i], t.negative[i]];
    for (const r of [a, p, q]) {
      if (!(r >= 0 && r < labels.length)) throw new ProbsemError(`triplet ${i}: row ${r} is outside 0..${labels.length - 1}`, 'BAD_INPUT');
    }
    if (a === p) throw new ProbsemError(`triplet ${i}: the positive is the anchor itself (row ${a})`, 'BAD_INPUT');
    if (labels[a] !== labels[p]) throw new ProbsemError(`triplet ${i}: the positive (row ${p}) is not of the anchor's class`, 'BAD_INPUT');
    if (labels[a] === labels[q]) throw new ProbsemError(`triplet ${i}: the negative (row ${q}) is of the anchor's class`, 'BAD_INPUT');
  }
}
