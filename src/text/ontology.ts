/**
 * A class hierarchy for the unified semantic embedding (`use`): each class's parent category and
 * the classes under each parent. From WordNet hypernyms, or from a dataset's own coarse labels.
 *
 * WordNet gives a deep tree, far deeper than a dataset's ten or a hundred classes need. The parent
 * of a class here is the most specific proper ancestor it shares with at least one other class
 * (specificity = information content), so the hierarchy has exactly the groupings the class set can
 * tell apart: for Fashion-MNIST, sandal, sneaker and ankle boot meet at `footwear`, while `bag`
 * shares nothing specific and gets no parent. The children of a parent are every class below it.
 */
import { ProbsemError } from '../core/errors.js';
import { type ParsedWordNet, parseWordNet } from './wordnet.js';

export interface ClassHierarchy {
  /** Names of the parent categories (WordNet lemmas, or a dataset's coarse class names). */
  parents: string[];
  /** Parent index of every class, −1 where it has none. */
  parentOf: number[];
  /** Classes under each parent (every class whose ancestors include it), ascending. */
  members: number[][];
  /** Where it came from: 'wordnet-3.1' or 'dataset'. */
  source: string;
}

/** Proper hypernym ancestors of a synset (by number), each once. */
function ancestorsOf(wn: ParsedWordNet, synset: number): Set<number> {
  const seen = new Set<number>();
  const stack = [...wn.graph.hypernyms[synset]];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    stack.push(...wn.graph.hypernyms[s]);
  }
  return seen;
}

/** The synset a class phrase names: its first (most frequent) noun sense; a compound falls back to its head noun. */
function synsetOf(wn: ParsedWordNet, phrase: string, byLemma: Map<string, number>, byOffset: Map<number, number>): number {
  const words = phrase.toLowerCase().trim().split(/[\s_]+/).filter(Boolean);
  for (const lemma of [words.join('_'), words.join('-'), words[words.length - 1]]) {
    const row = byLemma.get(lemma);
    if (row === undefined) continue;
    const s = byOffset.get(wn.index.senses[row][0]);
    if (s !== undefined) return s;
  }
  throw new ProbsemError(`'${phrase}' is not a WordNet noun: give the class a phrase WordNet knows (--label-phrases)`, 'UNKNOWN_WORD');
}

/** The hierarchy of classes named by `phrases` (one per class) in WordNet's hypernym tree. */
export function wordNetHierarchy(phrases: string[], wn: ParsedWordNet = parseWordNet()): ClassHierarchy {
  const byLemma = new Map(wn.index.lemmas.map((l, i) => [l, i]));
  const byOffset = new Map(Array.from(wn.graph.offsets, (o, i) => [o, i]));
  const ancestors = phrases.map((p) => ancestorsOf(wn, synsetOf(wn, p, byLemma, byOffset)));
  const parentSynset = ancestors.map((mine, c) => {
    let best = -1;
    for (const a of mine) {
      if (!ancestors.some((theirs, d) => d !== c && theirs.has(a))) continue;
      if (best < 0 || wn.ic[a] > wn.ic[best]) best = a;
    }
    // The root (`entity`) and near-root categories say nothing: no parent below a minimal specificity.
    return best >= 0 && wn.ic[best] > MIN_PARENT_IC ? best : -1;
  });
  const parentIds = [...new Set(parentSynset.filter((s) => s >= 0))];
  const lemmaOf = synsetLemmas(wn);
  return {
    parents: parentIds.map((s) => lemmaOf.get(s) ?? `synset ${wn.graph.offsets[s]}`),
    parentOf: parentSynset.map((s) => (s < 0 ? -1 : parentIds.indexOf(s))),
    members: parentIds.map((s) => ancestors.map((a, c) => (a.has(s) ? c : -1)).filter((c) => c >= 0)),
    source: 'wordnet-3.1',
  };
}

/**
 * Information content (1 − log(synsets below) / log(all synsets), as `informationContent`
 * computes it) below which an ancestor is too general to be a parent category: `entity` 0,
 * `object` 0.07, `artifact` 0.18 fall below; `container` 0.42, `clothing` 0.44, `footwear` 0.76 pass.
 */
const MIN_PARENT_IC = 0.3;

/** A readable name per synset: the lemma for which it is the most frequent sense (ties: the first). */
function synsetLemmas(wn: ParsedWordNet): Map<number, string> {
  const byOffset = new Map(Array.from(wn.graph.offsets, (o, i) => [o, i]));
  const best = new Map<number, { lemma: string; rank: number }>();
  wn.index.lemmas.forEach((lemma, row) => {
    wn.index.senses[row].forEach((off, rank) => {
      const s = byOffset.get(off);
      const seen = s === undefined ? undefined : best.get(s);
      if (s !== undefined && (!seen || rank < seen.rank)) best.set(s, { lemma: lemma.replace(/_/g, ' '), rank });
    });
  });
  return new Map([...best].map(([s, b]) => [s, b.lemma]));
}

/** The hierarchy a dataset states itself: each class's coarse label (e.g. CIFAR-100's 20 superclasses). */
export function datasetHierarchy(coarseOf: number[], coarseNames: string[]): ClassHierarchy {
  coarseOf.forEach((p, c) => {
    if (!Number.isInteger(p) || p < -1 || p >= coarseNames.length) {
      throw new ProbsemError(`class ${c} has coarse label ${p}, outside 0…${coarseNames.length - 1}`, 'BAD_OPTION');
    }
  });
  return {
    parents: [...coarseNames],
    parentOf: [...coarseOf],
    members: coarseNames.map((_, p) => coarseOf.map((q, c) => (q === p ? c : -1)).filter((c) => c >= 0)),
    source: 'dataset',
  };
}
