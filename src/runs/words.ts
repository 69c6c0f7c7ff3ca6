/**
 * Words on a trained run: a word or phrase becomes a label-encoder input (its class row, or for
 * runs trained on word vectors, the unit-length vector of any word the vectors know), then a
 * Gaussian q(z|words) to sample, compare or retrieve with.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { normalTensor, tidyRead } from '../core/ops.js';
import { Rng } from '../core/random.js';
import { DiagGaussian, type FullGaussian } from '../distributions/gaussian.js';
import { kl } from '../distributions/kl.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import { classInputRows, labelInputWidth, labelPhrases, loadWordSource, unitPhraseVector } from '../text/labels.js';
import { type Neighbour, UnknownWordError, type WordVectors, cosine, suggestAmong, tokenize } from '../text/word-vectors.js';
import { lemmaCandidates } from '../text/wordnet.js';

const fold = (s: string) => s.trim().toLowerCase().replace(/[\s_]+/g, ' ');

/**
 * The class a phrase names (class name, its word phrase, or a part of an "a/b" name), or -1. An
 * inflected form names the class of its lemma ("sneakers", "ankle boots"), so one-hot runs forgive
 * plurals as word-vector runs do; callers echo the class they resolved to.
 */
export function classOfPhrase(meta: Pick<ModelFile, 'classNames' | 'labels'>, phrase: string): number {
  const exact = exactClass(meta, fold(phrase));
  if (exact >= 0) return exact;
  for (const lemma of lemmaCandidates(phrase)) {
    const c = exactClass(meta, fold(lemma));
    if (c >= 0) return c;
  }
  return -1;
}

function exactClass(meta: Pick<ModelFile, 'classNames' | 'labels'>, p: string): number {
  const phrases = meta.labels?.kind === 'words' ? meta.labels.phrases : labelPhrases(meta.classNames);
  for (let c = 0; c < meta.classNames.length; c++) {
    const name = fold(meta.classNames[c]);
    if (p === name || p === fold(phrases[c]) || name.split('/').map((x) => x.trim()).includes(p)) return c;
  }
  return -1;
}

/**
 * Loads the run's word vectors (null for one-hot runs, which know only their classes). A vector file
 * is streamed keeping only `phrases`' words, or with `neighbours` its first 200,000 words (word2vec
 * and fastText files list the frequent words first) so nearest words can be searched.
 */
export async function runWordVectors(
  meta: ModelFile,
  phrases: string[],
  opts: { neighbours?: boolean; onNotice?: (m: string) => void } = {},
): Promise<WordVectors | null> {
  if (meta.labels?.kind !== 'words') return null;
  const wv = await loadWordSource(meta.labels.source, {
    vocabulary: opts.neighbours ? undefined : withLemmas(phrases),
    maxWords: opts.neighbours ? NEIGHBOUR_VOCABULARY : undefined,
    onNotice: opts.onNotice,
  });
  forgiveInflections(wv, opts.onNotice);
  // Vectors from another build (another WordNet method, a changed file) would place words where the
  // label encoder was never trained: refuse rather than mislead.
  if (meta.labels.source === 'wordnet' && wv.source !== meta.labels.vectorsId) {
    // Class phrases use the run's stored class vectors and need no source.
    if (phrases.length > 0 && phrases.every((p) => classOfPhrase(meta, p) >= 0)) return null;
    throw new ProbsemError(
      `this run was trained on word vectors ${meta.labels.vectorsId}, but this probsem builds ${wv.source}; its class labels still work, other words need the run retrained`,
      'WORD_VECTORS_MISMATCH',
    );
  }
  return wv;
}

const NEIGHBOUR_VOCABULARY = 200_000;

/** Lets `wv` read inflected words as their WordNet lemmas ('boots' → 'boot'), saying so through `onNotice`. */
export function forgiveInflections(wv: WordVectors, onNotice?: (m: string) => void): WordVectors {
  return wv.forgive(
    (w) => lemmaCandidates(w),
    (word, lemma) => onNotice?.(`'${word}' read as '${lemma}'`),
  );
}

/** Phrases plus the lemmas their words may be read as, so a streamed vector file keeps those rows too. */
function withLemmas(phrases: string[]): string[] {
  const out = new Set(phrases);
  for (const p of phrases) {
    for (const l of lemmaCandidates(p)) out.add(l);
    for (const t of tokenize(p)) for (const l of lemmaCandidates(t)) out.add(l);
  }
  return [...out];
}

/** Every spelling that names a class: names, their word phrases and "a/b" parts, lower-case. */
function classVocabulary(meta: Pick<ModelFile, 'classNames' | 'labels'>): string[] {
  const phrases = meta.labels?.kind === 'words' ? meta.labels.phrases : labelPhrases(meta.classNames);
  const out = new Set<string>();
  meta.classNames.forEach((c, i) => {
    for (const s of [c, phrases[i], ...c.split('/')]) if (s.trim()) out.add(s.trim().toLowerCase());
  });
  return [...out];
}

/**
 * A phrase of a one-hot run read greedily as class phrases ("ankle boot sneaker" → ankle boot,
 * sneaker), and the words that are part of none ("purple frog sneaker" → purple, frog): to say why
 * it names no class.
 */
function readAsClasses(meta: Pick<ModelFile, 'classNames' | 'labels'>, phrase: string): { classes: string[]; outside: string[] } {
  const tokens = phrase.trim().split(/\s+/).filter(Boolean);
  const classes: string[] = [];
  const outside: string[] = [];
  for (let t = 0; t < tokens.length; ) {
    let len = Math.min(3, tokens.length - t);
    while (len > 1 && classOfPhrase(meta, tokens.slice(t, t + len).join(' ')) < 0) len--;
    const piece = tokens.slice(t, t + len).join(' ');
    if (classOfPhrase(meta, piece) >= 0) classes.push(piece);
    else outside.push(piece);
    t += len;
  }
  return { classes, outside };
}

/**
 * Label-encoder inputs for phrases, [n × labelDim]. A class's own phrase uses the stored class row
 * (so it needs no vector file); other phrases need word vectors. Unknown phrases are listed in one error.
 */
export function phraseInputs(meta: ModelFile, phrases: string[], vectors: WordVectors | null): Float32Array {
  const c = meta.classNames.length;
  const info = meta.labels ?? { kind: 'onehot' as const };
  const width = labelInputWidth(info, c);
  const classRows = classInputRows(info, c);
  const out = new Float32Array(phrases.length * width);
  const unknown: string[] = [];
  let joined: string | null = null;
  for (const [i, p] of phrases.entries()) {
    const cls = classOfPhrase(meta, p);
    if (cls >= 0) {
      out.set(classRows.subarray(cls * width, (cls + 1) * width), i * width);
      continue;
    }
    if (!vectors) {
      const { classes, outside } = readAsClasses(meta, p);
      // Only class names, but no comma between them: name the phrase and show the commas.
      if (outside.length === 0) joined ??= classes.join(', ');
      unknown.push(...(outside.length > 0 ? outside : [classes.join(' ')]));
      continue;
    }
    try {
      out.set(unitPhraseVector(vectors, p), i * width);
    } catch (e) {
      if (e instanceof UnknownWordError) unknown.push(...e.words);
      else throw e;
    }
  }
  if (unknown.length > 0) {
    let hint =
      info.kind === 'onehot'
        ? `this run uses one-hot labels and knows only its classes (${meta.classNames.join(', ')}); train with --labels words to use any word`
        : `not in the word vectors ${info.kind === 'words' ? info.vectorsId : ''}`;
    if (joined !== null) hint += `; separate several labels with commas ('${joined}')`;
    // Matching ignores case, so name each unknown word once, in lower case.
    const named = [...new Set(unknown.map((w) => w.toLowerCase()))];
    // Near misses: the run's classes first (what a user most likely meant), then the vectors' words.
    const classes = classVocabulary(meta);
    const suggestions = Object.fromEntries(
      named.map((w) => [w, [...new Set([...suggestAmong(w, classes), ...(vectors ? vectors.suggest(w) : [])])].slice(0, 3)]),
    );
    throw new UnknownWordError(named, hint, suggestions);
  }
  return out;
}

/** q(z|phrase) for each phrase, as plain moments. */
export function phraseGaussians(model: ImageModel, meta: ModelFile, phrases: string[], vectors: WordVectors | null): { mean: Float32Array; logVar: Float32Array }[] {
  if (!model.encodeLabels) throw new ProbsemError(`a ${meta.model} model has no label encoder and cannot place words`, 'BAD_OPTION');
  const rows = phraseInputs(meta, phrases, vectors);
  const k = model.latentDim;
  // One row per phrase: mean | log-variance.
  const both = tidyRead(() => {
    const q = model.encodeLabels!(tf.tensor2d(rows, [phrases.length, rows.length / phrases.length]));
    return tf.concat([q.mean, q.logVar], 1);
  }) as Float32Array;
  return phrases.map((_, i) => ({ mean: both.slice(2 * i * k, (2 * i + 1) * k), logVar: both.slice((2 * i + 1) * k, (2 * i + 2) * k) }));
}

export interface PhraseNeighbours {
  phrase: string;
  /** Training classes by KL(q(z|phrase) ‖ q(z|class)) in the latent space, nearest first. */
  classes: { label: string; kl: number; cosine: number | null }[];
  /** Nearest words in the word-vector space (runs trained on word vectors only). */
  words: Neighbour[];
}

/** Where a phrase lands among the run's classes, and its nearest words. */
export function phraseNeighbours(model: ImageModel, meta: ModelFile, phrase: string, vectors: WordVectors | null, k = 10): PhraseNeighbours {
  const all = [phrase, ...meta.classNames];
  const gs = phraseGaussians(model, meta, all, vectors);
  const q = gs[0];
  const info = meta.labels ?? { kind: 'onehot' as const };
  const width = labelInputWidth(info, meta.classNames.length);
  const rows = classInputRows(info, meta.classNames.length);
  const phraseRow = phraseInputs(meta, [phrase], vectors);
  const kls = tf.tidy(() => {
    const p = new DiagGaussian(tf.tensor2d(q.mean, [1, q.mean.length]), tf.tensor2d(q.logVar, [1, q.logVar.length]));
    return gs.slice(1).map((g) => kl(p, new DiagGaussian(tf.tensor2d(g.mean, [1, g.mean.length]), tf.tensor2d(g.logVar, [1, g.logVar.length]))).dataSync()[0]);
  });
  const classes = meta.classNames
    .map((label, c) => ({
      label,
      kl: kls[c],
      cosine: info.kind === 'words' ? cosine(phraseRow, rows.subarray(c * width, (c + 1) * width)) : null,
    }))
    .sort((a, b) => a.kl - b.kl);
  const words = vectors ? vectors.nearest(phraseRow, k, [phrase]) : [];
  return { phrase, classes, words };
}

/** n images (pixel probabilities) per phrase, decoded from z ~ q(z|phrase); phrase after phrase. */
export function generateForPhrases(model: ImageModel, meta: ModelFile, phrases: string[], vectors: WordVectors | null, n: number, seed: number): Float32Array {
  const gs = phraseGaussians(model, meta, phrases, vectors);
  const k = model.latentDim;
  const parts = gs.map((g, i) =>
    tf.tidy(() => {
      const eps = normalTensor(Rng.for(seed, 'generate-words', i), [n, k]);
      const z = tf.add(tf.tensor2d(g.mean, [1, k]), tf.mul(tf.exp(tf.mul(tf.tensor2d(g.logVar, [1, k]), 0.5)), eps)) as tf.Tensor2D;
      return tf.sigmoid(model.decode(z)).dataSync() as Float32Array;
    }),
  );
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * The query Gaussian for a set of words: each class phrase or word gives q(z|·); one gives itself,
 * several give the moment-matched Gaussian of their equal-weight mixture (mean of the means; per
 * dimension the mean variance plus the spread of the means), which covers all of them.
 */
export function queryForWords(model: ImageModel, meta: ModelFile, words: string[], vectors: WordVectors | null): { mean: Float32Array; logVar: Float32Array; covariance?: Float32Array } {
  const entries = splitQuery(meta, words);
  if (entries.length === 0) throw new ProbsemError('no words given', 'BAD_OPTION');
  if (model.encodeLabelSet) {
    // Models with a rule for label sets (informed priors: the vectors' mean and shrunk covariance).
    const rows = phraseInputs(meta, entries, vectors);
    const k = model.latentDim;
    return tf.tidy(() => {
      const g = model.encodeLabelSet!(tf.tensor2d(rows, [entries.length, rows.length / entries.length]));
      const cov = g.kind === 'full' ? (g as FullGaussian).covariance() : tf.reshape(tf.mul(tf.eye(k), g.variance()), [1, k, k]);
      const variance = g.variance().dataSync() as Float32Array;
      return {
        mean: Float32Array.from(g.mean.dataSync()),
        logVar: Float32Array.from(variance, Math.log),
        covariance: Float32Array.from(cov.dataSync()),
      };
    });
  }
  const gs = phraseGaussians(model, meta, entries, vectors);
  if (gs.length === 1) return gs[0];
  const k = model.latentDim;
  const mean = new Float32Array(k);
  const logVar = new Float32Array(k);
  for (let d = 0; d < k; d++) {
    const m = gs.reduce((a, g) => a + g.mean[d], 0) / gs.length;
    const v = gs.reduce((a, g) => a + Math.exp(g.logVar[d]) + (g.mean[d] - m) ** 2, 0) / gs.length;
    mean[d] = m;
    logVar[d] = Math.log(v);
  }
  return { mean, logVar };
}

/**
 * Splits query text into the members of a set query: commas separate members, and the words
 * between two commas are one phrase ("sneaker, ankle boot" → Sneaker, Ankle boot; "running shoe"
 * stays one phrase, its words' vectors averaged as in `generate`). A phrase that names a class
 * becomes the class name, so "sneaker, Sneaker" is one member.
 */
export function splitQuery(meta: Pick<ModelFile, 'classNames' | 'labels'>, words: string[]): string[] {
  const out: string[] = [];
  for (const part of words.flatMap((w) => w.split(',')).map((w) => w.trim().replace(/\s+/g, ' ')).filter(Boolean)) {
    const c = classOfPhrase(meta, part);
    out.push(c >= 0 ? meta.classNames[c] : part);
  }
  return [...new Set(out)];
}
