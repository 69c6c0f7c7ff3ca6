/**
 * Label encodings: how a class (or any word or phrase) becomes the input of a label encoder.
 * One-hot rows, or the word vector of the class's phrase (the PSE paper's section 5), which lets a
 * model place words it never saw in training.
 */
import { ProbsemError } from '../core/errors.js';
import { readWordVectors } from './readers.js';
import { loadWordNetVectors } from './wordnet.js';
import { type OovPolicy, WordVectors, tokenize } from './word-vectors.js';

export type LabelEncodingSpec = { kind: 'onehot' } | { kind: 'words'; source: string };

/** What a run records about its labels, so it can be used later without the original options. */
export type LabelEncodingInfo =
  | { kind: 'onehot' }
  | {
      kind: 'words';
      /** 'wordnet' or the path of a word-vector file. */
      source: string;
      /** Provenance of the vectors (e.g. `wordnet-3.1:ancestors-v1:256`). */
      vectorsId: string;
      dim: number;
      /** The phrase each class was read as, in class order. */
      phrases: string[];
      /** The label-encoder input of each class (unit-length word vectors), row-major [classes × dim]. */
      vectors: number[];
      /**
       * Runs on datasets whose images carry tag sets: the tag vocabulary (`Dataset.tagNames`) and
       * each tag's unit word vector, row-major [tags × dim]; a tag with no vector (`unknown`,
       * with `--oov skip`) has a zero row and is left out of training and of tag ranking.
       */
      tags?: { names: string[]; vectors: number[]; unknown?: string[] };
    };

/** Parses `onehot`, `words` or `words:<wordnet|path>`. */
export function parseLabelEncoding(spec: string): LabelEncodingSpec {
  if (spec === 'onehot') return { kind: 'onehot' };
  if (spec === 'words') return { kind: 'words', source: 'wordnet' };
  if (spec.startsWith('words:') && spec.length > 'words:'.length) return { kind: 'words', source: spec.slice('words:'.length) };
  throw new ProbsemError(`--labels must be onehot, words or words:<wordnet|vectors file>, got '${spec}'`, 'BAD_OPTION');
}

/**
 * emoji subgroups (src/data/emoji.ts) whose names the WordNet vectors do not know as written
 * ("face-sleepy": WordNet's vectors have nouns, not "sleepy"); the rest read as their hyphen parts.
 */
const EMOJI_SUBGROUP_PHRASES: Readonly<Record<string, string>> = {
  'face-neutral-skeptical': 'neutral face doubt',
  'face-sleepy': 'face sleep',
  'face-unwell': 'face illness',
  'face-concerned': 'face worry',
  'hand-fingers-open': 'open hand palm',
  'hand-fingers-partial': 'hand finger gesture',
  'hand-fingers-closed': 'fist hand',
  'person-resting': 'person rest',
  'plant-other': 'plant',
  'food-prepared': 'food dish',
  'place-geographic': 'place geography',
  'place-other': 'place',
  'arts-crafts': 'art craft',
  'other-object': 'object',
  'other-symbol': 'symbol',
  keycap: 'key',
  alphanum: 'letter number',
  geometric: 'geometry shape',
};

/**
 * How each class of a known dataset reads as words. Compound names are spelled the way the word
 * vectors know them; users can override any entry.
 */
export const DEFAULT_LABEL_PHRASES: Readonly<Record<string, string>> = {
  ...EMOJI_SUBGROUP_PHRASES,
  'T-shirt/top': 't-shirt',
  Trouser: 'trousers',
  Pullover: 'pullover',
  Dress: 'dress',
  Coat: 'coat',
  Sandal: 'sandal',
  Shirt: 'shirt',
  Sneaker: 'sneaker',
  Bag: 'bag',
  'Ankle boot': 'ankle boot',
  '0': 'zero',
  '1': 'one',
  '2': 'two',
  '3': 'three',
  '4': 'four',
  '5': 'five',
  '6': 'six',
  '7': 'seven',
  '8': 'eight',
  '9': 'nine',
};

/**
 * The phrase for every class: an override, else the default table, else the class name itself.
 * `overrides` is `{ "Ankle boot": "boot" }` or the CLI form `Ankle boot=boot,Bag=handbag`.
 */
export function labelPhrases(classNames: string[], overrides: Record<string, string> | string = {}): string[] {
  const table = typeof overrides === 'string' ? parsePhraseOverrides(overrides) : overrides;
  const known = new Set(classNames.map((c) => c.toLowerCase()));
  const unknown = Object.keys(table).filter((k) => !known.has(k.toLowerCase()));
  if (unknown.length > 0) {
    throw new ProbsemError(`label phrase overrides name unknown classes: ${unknown.join(', ')} (classes: ${classNames.join(', ')})`, 'BAD_OPTION');
  }
  const lower = new Map(Object.entries(table).map(([k, v]) => [k.toLowerCase(), v]));
  return classNames.map((c) => lower.get(c.toLowerCase()) ?? DEFAULT_LABEL_PHRASES[c] ?? c);
}

function parsePhraseOverrides(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) throw new ProbsemError(`label phrase override '${part}' is not of the form Class=phrase`, 'BAD_OPTION');
    out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

/** Word vectors from a source; for a file, only the words of `vocabulary` are kept (streamed). */
export async function loadWordSource(
  source: string,
  opts: { vocabulary?: string[]; maxWords?: number; onNotice?: (m: string) => void } = {},
): Promise<WordVectors> {
  if (source === 'wordnet') return loadWordNetVectors({ onProgress: opts.onNotice });
  const vocabulary = opts.vocabulary ? expandVocabulary(opts.vocabulary) : undefined;
  return readWordVectors(source, { vocabulary, maxWords: opts.maxWords });
}

/** Every spelling a phrase's lookup may try: the whole phrase, its tokens and their hyphen parts. */
function expandVocabulary(phrases: string[]): string[] {
  const out = new Set<string>();
  for (const p of phrases) {
    out.add(p.trim());
    for (const t of tokenize(p)) {
      out.add(t);
      for (const part of t.split('-')) if (part) out.add(part);
    }
  }
  return [...out];
}

/** A phrase's vector scaled to unit length, the scale a one-hot row has. */
export function unitPhraseVector(wv: WordVectors, phrase: string, oov: OovPolicy = 'error'): Float32Array {
  const v = wv.phrase(phrase, oov);
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n);
  if (!(n > 0)) throw new ProbsemError(`the vector of '${phrase}' in ${wv.source} is zero`, 'UNKNOWN_WORD');
  return v.map((x) => x / n);
}

/** Builds the label-encoding record of a run for its classes. */
export async function buildLabelEncoding(
  spec: LabelEncodingSpec,
  classNames: string[],
  opts: { phrases?: Record<string, string> | string; oov?: OovPolicy; onNotice?: (m: string) => void; tags?: string[] } = {},
): Promise<{ info: LabelEncodingInfo; words: WordVectors | null }> {
  if (spec.kind === 'onehot') return { info: { kind: 'onehot' }, words: null };
  const phrases = labelPhrases(classNames, opts.phrases);
  const wv = await loadWordSource(spec.source, { vocabulary: [...phrases, ...(opts.tags ?? [])], onNotice: opts.onNotice });
  const vectors = phrases.flatMap((p) => Array.from(unitPhraseVector(wv, p, opts.oov), (x) => Math.fround(x)));
  const info: LabelEncodingInfo = { kind: 'words', source: spec.source, vectorsId: wv.source, dim: wv.dim, phrases, vectors };
  if (opts.tags) info.tags = tagVectors(wv, opts.tags, opts.oov ?? 'error', opts.onNotice);
  return { info, words: wv };
}

/** Unit word vectors of a tag vocabulary; unknown tags are an error (naming them all) or, with 'skip', zero rows listed in `unknown`. */
function tagVectors(wv: WordVectors, names: string[], oov: OovPolicy, onNotice?: (m: string) => void): { names: string[]; vectors: number[]; unknown?: string[] } {
  const vectors: number[] = [];
  const unknown: string[] = [];
  for (const name of names) {
    try {
      vectors.push(...Array.from(unitPhraseVector(wv, name, oov), (x) => Math.fround(x)));
    } catch (e) {
      if (!(e instanceof ProbsemError) || e.code !== 'UNKNOWN_WORD') throw e;
      unknown.push(name);
      vectors.push(...new Array<number>(wv.dim).fill(0));
    }
  }
  if (unknown.length === 0) return { names, vectors };
  const listed = `${unknown.slice(0, 10).map((t) => `'${t}'`).join(', ')}${unknown.length > 10 ? ` and ${unknown.length - 10} more` : ''}`;
  if (oov === 'error') throw new ProbsemError(`${unknown.length} of ${names.length} tags have no word vector in ${wv.source}: ${listed}; pass --oov skip to leave them out`, 'UNKNOWN_WORD');
  onNotice?.(`${unknown.length} of ${names.length} tags have no word vector and are left out: ${listed}`);
  return { names, vectors, unknown };
}

/** Label-encoder input width for an encoding. */
export function labelInputWidth(info: LabelEncodingInfo, numClasses: number): number {
  return info.kind === 'onehot' ? numClasses : info.dim;
}

/** The per-class input rows, row-major [classes × width]. */
export function classInputRows(info: LabelEncodingInfo, numClasses: number): Float32Array {
  if (info.kind === 'words') return Float32Array.from(info.vectors);
  const out = new Float32Array(numClasses * numClasses);
  for (let c = 0; c < numClasses; c++) out[c * numClasses + c] = 1;
  return out;
}
