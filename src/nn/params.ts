/**
 * Named trainable parameters and their binary (de)serialisation. Weights are stored as
 * little-endian float32, concatenated in insertion order; the manifest names each one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { Rng } from '../core/random.js';

export interface TensorEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
  /** Offset in float32 elements into the blob. */
  offset: number;
  length: number;
}

/** Hard cap on one model's parameters (float32 values): 2^28 = 1 GiB. */
export const MAX_PARAMETERS = 2 ** 28;
let parameterBudget: number | null = null;

/**
 * Runs `build` with a tighter parameter cap, so a config read from a file cannot make probsem
 * allocate more than the file's own weights could fill (the model loader passes the weights size).
 */
export function withParameterBudget<T>(maxParameters: number, build: () => T): T {
  const saved = parameterBudget;
  parameterBudget = maxParameters;
  try {
    return build();
  } finally {
    parameterBudget = saved;
  }
}

export class ParamSet {
  private readonly vars = new Map<string, tf.Variable>();
  private total = 0;
  private readonly lrScales = new Map<string, number>();

  /** Multiplies the learning rate of every parameter whose name starts with `prefix`. */
  setLrScale(prefix: string, scale: number): void {
    for (const name of this.vars.keys()) if (name.startsWith(prefix)) this.lrScales.set(name, scale);
  }

  lrScale(name: string): number {
    return this.lrScales.get(name) ?? 1;
  }

  /** Glorot-uniform weights or zeros, drawn from `rng` so initialisation is seeded. */
  add(name: string, shape: number[], init: 'glorot' | 'zeros', rng: Rng): tf.Variable {
    if (this.vars.has(name)) throw new ProbsemError(`parameter ${name} defined twice`);
    const size = shape.reduce((a, b) => a * b, 1);
    const cap = parameterBudget ?? MAX_PARAMETERS;
    if (!shape.every((d) => Number.isInteger(d) && d > 0) || this.total + size > cap) {
      throw new ProbsemError(
        `parameter ${name} of shape [${shape}] does not fit: a model may hold at most ${cap} values (has ${this.total})`,
        'MODEL_TOO_LARGE',
      );
    }
    this.total += size;
    const values = new Float32Array(size);
    if (init === 'glorot') {
      const fanIn = shape.length > 1 ? shape[0] : 1;
      const fanOut = shape[shape.length - 1];
      const lim = Math.sqrt(6 / (fanIn + fanOut));
      rng.fillUniform(values, -lim, lim);
    }
    const init0 = tf.tensor(values, shape, 'float32');
    const v = tf.variable(init0, true, `${name}_${uid()}`);
    init0.dispose(); // the variable holds its own reference to the data
    this.vars.set(name, v);
    return v;
  }

  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new ProbsemError(`no parameter named ${name}`);
    return v;
  }

  names(): string[] {
    return [...this.vars.keys()];
  }

  variables(): tf.Variable[] {
    return [...this.vars.values()];
  }

  entries(): [string, tf.Variable][] {
    return [...this.vars.entries()];
  }

  count(): number {
    let n = 0;
    for (const v of this.vars.values()) n += v.size;
    return n;
  }

  /** All values as one float32 blob plus its manifest. */
  serialize(): { manifest: TensorEntry[]; blob: Uint8Array } {
    return serializeTensors(this.entries());
  }

  /** Overwrites every parameter from a blob; names and shapes must match exactly. */
  load(manifest: TensorEntry[], blob: Uint8Array, source: string): void {
    validateManifest(manifest, source, blob.byteLength / 4);
    const byName = new Map(manifest.map((e) => [e.name, e]));
    for (const [name, v] of this.vars) {
      const e = byName.get(name);
      if (!e) throw new ProbsemError(`${source}: parameter ${name} is missing`, 'MODEL_FORMAT');
      if (e.shape.length !== v.shape.length || e.shape.some((d, i) => d !== v.shape[i])) {
        throw new ProbsemError(
          `${source}: parameter ${name} has shape [${e.shape}] but the model expects [${v.shape}]`,
          'MODEL_FORMAT',
        );
      }
      const t = tf.tensor(readEntry(e, blob, source), e.shape, 'float32');
      v.assign(t);
      t.dispose();
    }
    if (byName.size !== this.vars.size) {
      const extra = [...byName.keys()].filter((n) => !this.vars.has(n));
      throw new ProbsemError(`${source}: unexpected parameters ${extra.join(', ')}`, 'MODEL_FORMAT');
    }
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

let counter = 0;
function uid(): number {
  return counter++;
}

export function serializeTensors(list: [string, tf.Tensor][]): { manifest: TensorEntry[]; blob: Uint8Array } {
  const manifest: TensorEntry[] = [];
  let total = 0;
  for (const [name, t] of list) {
    manifest.push({ name, shape: [...t.shape], dtype: 'float32', offset: total, length: t.size });
    total += t.size;
  }
  const all = new Float32Array(total);
  list.forEach(([, t], i) => all.set(t.dataSync() as Float32Array, manifest[i].offset));
  return { manifest, blob: new Uint8Array(all.buffer) };
}

/**
 * Checks a manifest read from a file is an array of well-formed entries, before anything trusts it.
 * With `totalValues` (the blob's length in float32 values) the entries must also tile the blob
 * exactly: each length matches its shape, names are distinct, and sorted by offset they start at
 * 0, follow each other without gap or overlap and end at the blob's end. A shifted offset or a
 * stretched length would otherwise read a neighbour's values without any error.
 */
export function validateManifest(manifest: unknown, source: string, totalValues?: number): asserts manifest is TensorEntry[] {
  if (!Array.isArray(manifest)) throw new ProbsemError(`${source}: the tensor manifest is not a list`, 'MODEL_FORMAT');
  const nat = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  manifest.forEach((e: Partial<TensorEntry> | null, i) => {
    const ok =
      e !== null && typeof e === 'object' && typeof e.name === 'string' && e.dtype === 'float32' && nat(e.offset) && nat(e.length) &&
      Array.isArray(e.shape) && e.shape.length <= 8 && e.shape.every(nat);
    if (!ok) throw new ProbsemError(`${source}: tensor manifest entry ${i} is malformed`, 'MODEL_FORMAT');
  });
  if (totalValues === undefined) return;
  const entries = manifest as TensorEntry[];
  const names = new Set<string>();
  for (const e of entries) {
    if (names.has(e.name)) throw new ProbsemError(`${source}: tensor ${e.name} is listed twice in the manifest`, 'MODEL_FORMAT');
    names.add(e.name);
    if (e.shape.reduce((a, b) => a * b, 1) !== e.length) {
      throw new ProbsemError(`${source}: tensor ${e.name} has shape [${e.shape}] but length ${e.length}`, 'MODEL_FORMAT');
    }
  }
  let end = 0;
  for (const e of [...entries].sort((a, b) => a.offset - b.offset)) {
    if (e.offset !== end) {
      throw new ProbsemError(
        `${source}: tensor ${e.name} starts at value ${e.offset} but the previous one ends at ${end} (${e.offset < end ? 'overlap' : 'gap'}); the manifest does not match the weights`,
        'MODEL_FORMAT',
      );
    }
    end += e.length;
  }
  if (end !== totalValues) {
    throw new ProbsemError(`${source}: the manifest covers ${end} values but the weights hold ${totalValues}; the two do not match`, 'MODEL_FORMAT');
  }
}

export function readEntry(e: TensorEntry, blob: Uint8Array, source: string): Float32Array {
  const size = e.shape.reduce((a, b) => a * b, 1);
  if (e.dtype !== 'float32' || size !== e.length || e.offset < 0 || (e.offset + e.length) * 4 > blob.byteLength) {
    throw new ProbsemError(`${source}: entry ${e.name} does not fit the weights file`, 'MODEL_FORMAT');
  }
  // Copy: the blob's byte offset need not be 4-aligned.
  return new Float32Array(blob.slice(e.offset * 4, (e.offset + e.length) * 4).buffer);
}
