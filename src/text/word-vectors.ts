/**
 * A table of word vectors: lookup, phrase averaging (the PSE paper's rule for multi-word labels),
 * an out-of-vocabulary policy, and nearest words by cosine similarity.
 */
import { ProbsemError } from '../core/errors.js';

export type OovPolicy = 'error' | 'skip';

/**
 * Unknown words (in a phrase, a query, a label); `words` lists them all so a user can fix them at
 * once, `detail` says what knew them not (a vector source, a run's classes), and `suggestions`
 * the near misses per word: "unknown word 'sneakr' (did you mean 'sneaker'?): …".
 */
export class UnknownWordError extends ProbsemError {
  constructor(
    readonly words: string[],
    detail: string,
    readonly suggestions: Readonly<Record<string, string[]>> = {},
  ) {
    const named = words.map((w) => {
      const s = suggestions[w] ?? [];
      return s.length === 0 ? `'${w}'` : `'${w}' (did you mean ${orList(s.map((x) => `'${x}'`))}?)`;
    });
    super(`unknown word${words.length > 1 ? 's' : ''} ${named.join(', ')}: ${detail}`, 'UNKNOWN_WORD');
    this.name = 'UnknownWordError';
  }
}

const orList = (xs: string[]) => (xs.length < 2 ? xs.join('') : `${xs.slice(0, -1).join(', ')} or ${xs[xs.length - 1]}`);

/** Candidate lemmas of an inflected word, most likely first ('boots' → ['boot']). */
export type Lemmatizer = (word: string) => string[];

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
  private lemmatizer: Lemmatizer | null = null;
  private onLemma: ((word: string, lemma: string) => void) | null = null;
  private readonly noted = new Set<string>();
  /** Folded words with their rows, by length: built on the first suggestion. */
  private byLength: Map<number, { folded: string; row: number }[]> | null = null;

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

  /**
   * From now on phrases read an unknown inflected word as the first of its lemmas the table knows
   * ('boots' → 'boot'), calling `onLemma` once per word so the user hears of it.
   */
  forgive(lemmatizer: Lemmatizer, onLemma?: (word: string, lemma: string) => void): this {
    this.lemmatizer = lemmatizer;
    this.onLemma = onLemma ?? null;
    return this;
  }

  /** Row of a word, else (with `forgive`) of its first known lemma, else -1. */
  lookup(word: string): number {
    const i = this.indexOf(word);
    if (i >= 0 || !this.lemmatizer) return i;
    for (const lemma of this.lemmatizer(word)) {
      const j = this.indexOf(lemma);
      if (j < 0) continue;
      const key = word.trim().toLowerCase();
      if (!this.noted.has(key)) {
        this.noted.add(key);
        this.onLemma?.(word.trim(), this.words[j].replace(/_/g, ' '));
      }
      return j;
    }
    return -1;
  }

  /**
   * Up to `max` words of the table within a small edit distance of `word` (1 up to 4 letters, 2 up
   * to 8, else 3; a swap of neighbours counts 1), the closest first, spelled with spaces. Only words
   * of a near length are compared and each comparison stops once the distance is exceeded, so a
   * 100,000-word table answers in milliseconds.
   */
  suggest(word: string, max = 3): string[] {
    if (!this.byLength) {
      const m = new Map<number, { folded: string; row: number }[]>();
      this.words.forEach((w, row) => {
        const folded = foldWord(w);
        const list = m.get(folded.length);
        if (list) list.push({ folded, row });
        else m.set(folded.length, [{ folded, row }]);
      });
      this.byLength = m;
    }
    const target = foldWord(word);
    const limit = editLimit(target.length);
    const found: { word: string; d: number; order: number }[] = [];
    for (let len = target.length - limit; len <= target.length + limit; len++) {
      for (const { folded, row } of this.byLength.get(len) ?? []) {
        const d = boundedEditDistance(target, folded, limit);
        if (d <= limit && d > 0) found.push({ word: this.words[row], d, order: row });
      }
    }
    return rankSuggestions(target, found, max);
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
    const whole = this.lookup(text.trim());
    if (whole >= 0) return this.data.slice(whole * this.dim, (whole + 1) * this.dim);
    const tokens = tokenize(text);
    if (tokens.length === 0) throw new ProbsemError(`empty phrase '${text}'`, 'UNKNOWN_WORD');
    const rows: number[] = [];
    const unknown: string[] = [];
    for (const t of tokens) {
      const i = this.lookup(t);
      if (i >= 0) {
        rows.push(i);
        continue;
      }
      const parts = t.split('-').filter(Boolean);
      const partRows = parts.map((p) => this.lookup(p));
      if (parts.length > 1 && partRows.every((r) => r >= 0)) rows.push(...partRows);
      else unknown.push(t);
    }
    if (unknown.length > 0 && (oov === 'error' || rows.length === 0)) {
      throw new UnknownWordError(unknown, `not in the word vectors ${this.source}`, Object.fromEntries(unknown.map((u) => [u, this.suggest(u)])));
    }
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

/** The largest edit distance a suggestion may have: short words allow fewer typos. */
function editLimit(length: number): number {
  return length <= 4 ? 1 : length <= 8 ? 2 : 3;
}

/**
 * Edit distance of a and b (insert, delete, substitute, swap two neighbours: each 1), or limit + 1
 * as soon as it must exceed `limit` (every cell of a row is above it).
 */
export function boundedEditDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev2 = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let cur = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, prev2[j - 2] + 1);
      cur[j] = v;
      if (v < rowMin) rowMin = v;
    }
    if (rowMin > limit) return limit + 1;
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return Math.min(prev[b.length], limit + 1);
}

/**
 * Orders near misses: smallest distance, then one word before a collocation ('sneaker' before
 * 'snake_eater'), then the most letters shared at both ends ('sneakr': 'sneaker' before 'sneak'),
 * then the table's order (word2vec and fastText files list frequent words first). Keeps the best
 * distance only, spelled with spaces.
 */
function rankSuggestions(target: string, found: { word: string; d: number; order: number }[], max: number): string[] {
  if (found.length === 0) return [];
  const multi = (w: string) => (/[_\s]/.test(w) ? 1 : 0);
  const ends = (w: string) => {
    const f = foldWord(w);
    let p = 0;
    while (p < f.length && p < target.length && f[p] === target[p]) p++;
    let q = 0;
    while (q < f.length - p && q < target.length - p && f[f.length - 1 - q] === target[target.length - 1 - q]) q++;
    return p + q;
  };
  found.sort((a, b) => a.d - b.d || multi(a.word) - multi(b.word) || ends(b.word) - ends(a.word) || a.order - b.order);
  const best = found[0].d;
  const out: string[] = [];
  for (const f of found) {
    const w = f.word.replace(/_/g, ' ');
    if (f.d === best && !out.some((o) => o.toLowerCase() === w.toLowerCase())) out.push(w);
    if (out.length === max) break;
  }
  return out;
}

/** Near misses of `word` among a short list (a one-hot run's class phrases), as `WordVectors.suggest`. */
export function suggestAmong(word: string, vocabulary: string[], max = 3): string[] {
  const target = foldWord(word);
  const limit = editLimit(target.length);
  const found = vocabulary
    .map((w, order) => ({ word: w, d: boundedEditDistance(target, foldWord(w), limit), order }))
    .filter((f) => f.d > 0 && f.d <= limit);
  return rankSuggestions(target, found, max);
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
