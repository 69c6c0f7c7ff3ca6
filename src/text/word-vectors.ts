/**
 * A table of word vectors: lookup, phrase averaging (the PSE paper's rule for multi-word labels),
 * an out-of-vocabulary policy, and nearest words by cosine similarity.
 */
import { ProbsemError } from '../core/errors.js';

export type OovPolicy = 'error' | 'skip';

/**
 * Unknown words (in a phrase, a query, a label); `words` lists them all so a user can fix them at
 * once, `detail` says what knew them not (a vector source, a run's classes).
 */
export class UnknownWordError extends ProbsemError {
  constructor(
    readonly words: string[],
    detail: string,
  ) {
    super(`unknown word${words.length > 1 ? 's' : ''} ${words.map((w) => `'${w}'`).join(', ')}: ${detail}`, 'UNKNOWN_WORD');
    this.name = 'UnknownWordError';
  }
}

export interface Neighbour {
  word: string;
  similarity: number;
}

/**
 * Words are matched exactly first, then case-folded, then with spaces/hyphens as underscores
 * (WordNet's spelling of multi-word lemmas, e.g. `ankle_boot`).
 */
export class WordVectors {
  readonly size: number;
  private readonly index = new Map<string, number>();
  private readonly folded = new Map<string, number>();
  private norms: Float32Array | null = null;

  /**
   * @param words one entry per row, unique
   * @param data row-major [words.length × dim]
   * @param source a human-readable name for messages and provenance (file path, "wordnet", …)
   */
  constructor(
    readonly words: string[],
    readonly data: Float32Array,
    readonly dim: number,
    readonly source: string,
  ) {
    if (!Number.isInteger(dim) || dim < 1) throw new ProbsemError(`word vectors from ${source}: dimension must be a positive integer, got ${dim}`);
    if (data.length !== words.length * dim) {
      throw new ProbsemError(`word vectors from ${source}: ${words.length} words × ${dim} dims needs ${words.length * dim} values, got ${data.length}`);
    }
    this.size = words.length;
    words.forEach((w, i) => {
      if (this.index.has(w)) throw new ProbsemError(`word vectors from ${source}: duplicate word '${w}'`);
      this.index.set(w, i);
      const f = foldWord(w);
      if (!this.folded.has(f)) this.folded.set(f, i);
    });
  }

  /** Row index of a word, or -1. */
  indexOf(word: string): number {
    const exact = this.index.get(word);
    if (exact !== undefined) return exact;
    return this.folded.get(foldWord(word)) ?? -1;
  }

  has(word: string): boolean {
    return this.indexOf(word) >= 0;
  }

  /** The vector of one word (a copy), or throws UnknownWordError. */
  get(word: string): Float32Array {
    const i = this.indexOf(word);
    if (i < 0) throw new UnknownWordError([word], `not in the word vectors ${this.source}`);
    return this.data.slice(i * this.dim, (i + 1) * this.dim);
  }

  /**
   * The vector of a phrase: the word itself if known as one entry ("ankle boot" → `ankle_boot`),
   * else the mean of its tokens' vectors. Tokens split on spaces, '/', ',' and '+'; hyphenated
   * tokens are tried whole before being split ("t-shirt" is one WordNet lemma).
   */
  phrase(text: string, oov: OovPolicy = 'error'): Float32Array {
    const whole = this.indexOf(text.trim());
    if (whole >= 0) return this.data.slice(whole * this.dim, (whole + 1) * this.dim);
    const tokens = tokenize(text);
    if (tokens.length === 0) throw new ProbsemError(`empty phrase '${text}'`, 'UNKNOWN_WORD');
    const rows: number[] = [];
    const unknown: string[] = [];
    for (const t of tokens) {
      const i = this.indexOf(t);
      if (i >= 0) {
        rows.push(i);
        continue;
      }
      const parts = t.split('-').filter(Boolean);
      const partRows = parts.map((p) => this.indexOf(p));
      if (parts.length > 1 && partRows.every((r) => r >= 0)) rows.push(...partRows);
      else unknown.push(t);
    }
    if (unknown.length > 0 && (oov === 'error' || rows.length === 0)) throw new UnknownWordError(unknown, `not in the word vectors ${this.source}`);
    return this.meanOfRows(rows);
  }

  /** Cosine similarity of two words or phrases. */
  similarity(a: string, b: string): number {
    return cosine(this.phrase(a), this.phrase(b));
  }

  /** The k words most similar (cosine) to `vector`, excluding `exclude`. */
  nearest(vector: Float32Array, k: number, exclude: Iterable<string> = []): Neighbour[] {
    if (vector.length !== this.dim) throw new ProbsemError(`query vector has ${vector.length} dims, word vectors have ${this.dim}`);
    const skip = new Set<number>();
    for (const w of exclude) {
      const i = this.indexOf(w);
      if (i >= 0) skip.add(i);
    }
    const norms = this.rowNorms();
    let qn = 0;
    for (let j = 0; j < this.dim; j++) qn += vector[j] * vector[j];
    qn = Math.sqrt(qn) || 1;
    const best: Neighbour[] = [];
    for (let i = 0; i < this.size; i++) {
      if (skip.has(i)) continue;
      let dot = 0;
      const off = i * this.dim;
      for (let j = 0; j < this.dim; j++) dot += this.data[off + j] * vector[j];
      const s = dot / (qn * (norms[i] || 1));
      if (best.length < k || s > best[best.length - 1].similarity) {
        best.push({ word: this.words[i], similarity: s });
        best.sort((p, q) => q.similarity - p.similarity);
        if (best.length > k) best.pop();
      }
    }
    return best;
  }

  /** A new table holding only `keep` (in that order); unknown words are an error. */
  subset(keep: string[]): WordVectors {
    const out = new Float32Array(keep.length * this.dim);
    keep.forEach((w, r) => out.set(this.get(w), r * this.dim));
    return new WordVectors(keep, out, this.dim, this.source);
  }

  private meanOfRows(rows: number[]): Float32Array {
    const out = new Float32Array(this.dim);
    for (const i of rows) for (let j = 0; j < this.dim; j++) out[j] += this.data[i * this.dim + j];
    for (let j = 0; j < this.dim; j++) out[j] /= rows.length;
    return out;
  }

  private rowNorms(): Float32Array {
    if (!this.norms) {
      const n = new Float32Array(this.size);
      for (let i = 0; i < this.size; i++) {
        let s = 0;
        for (let j = 0; j < this.dim; j++) s += this.data[i * this.dim + j] ** 2;
        n[i] = Math.sqrt(s);
      }
      this.norms = n;
    }
    return this.norms;
  }
}

/** The spelling used for loose matching: trimmed, lower-case, spaces/hyphens as underscores. */
export function foldWord(w: string): string {
  return w.trim().toLowerCase().replace(/[\s-]+/g, '_');
}

/** The tokens `phrase` averages over: split on spaces, slashes, commas and plus signs. */
export function tokenize(text: string): string[] {
  return text
    .split(/[\s/,+]+/)
    .map((t) => t.trim())
    .filter(Boolean);
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na * nb) || 1);
}
