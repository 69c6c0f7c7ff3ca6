/**
 * Prints, as Markdown, the nearest neighbours in the built-in WordNet embedding of the ten
 * Fashion-MNIST class names and of a few clothing words no Fashion-MNIST class is named by.
 *
 *   npx tsx scripts/wordnet-neighbours.ts [--k 8] [--dim 256] [word ...]
 */
import { loadWordNetVectors, WORDNET_DEFAULT_DIM } from '../src/text/wordnet.js';
import type { WordVectors } from '../src/text/word-vectors.js';

const FASHION_CLASSES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'];
const UNSEEN = ['loafer', 'jeans', 'sweater', 'jacket', 'boot', 'heel', 'handbag', 'blouse'];

function parseArgs(argv: string[]): { k: number; dim: number; words: string[] } {
  let k = 8;
  let dim = WORDNET_DEFAULT_DIM;
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--k') k = Number(argv[++i]);
    else if (argv[i] === '--dim') dim = Number(argv[++i]);
    else words.push(argv[i]);
  }
  return { k, dim, words };
}

/** The query's own entries: the phrase as one lemma, or each of its words. */
function ownEntries(wv: WordVectors, phrase: string): string[] {
  return wv.has(phrase) ? [phrase] : phrase.split(/\s+/);
}

function table(wv: WordVectors, title: string, phrases: string[], k: number): string {
  const rows = phrases.map((p) => {
    const near = wv.nearest(wv.phrase(p), k, ownEntries(wv, p));
    return `| ${p} | ${near.map((n) => `${n.word} ${n.similarity.toFixed(2)}`).join(', ')} |`;
  });
  return [`### ${title}`, '', `| word | ${k} nearest nouns (cosine) |`, '|---|---|', ...rows, ''].join('\n');
}

function main(): void {
  const { k, dim, words } = parseArgs(process.argv.slice(2));
  const wv = loadWordNetVectors({ dim, onProgress: (msg) => process.stderr.write(`${msg}\n`) });
  console.log(`Nearest neighbours in \`${wv.source}\` (${wv.size} nouns).\n`);
  if (words.length > 0) {
    console.log(table(wv, 'Requested words', words, k));
    return;
  }
  console.log(table(wv, 'Fashion-MNIST classes', FASHION_CLASSES, k));
  console.log(table(wv, 'Words no class is named by', UNSEEN, k));
}

main();
