import { ProbsemError } from '../../core/errors.js';
import { loadImageModel } from '../../runs/runs.js';
import { forgiveInflections, phraseNeighbours, runWordVectors } from '../../runs/words.js';
import { loadWordSource, unitPhraseVector } from '../../text/labels.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

export const neighboursCommand: Command = {
  summary: 'show where words land: nearest classes of a run and nearest words',
  help: `probsem neighbours --words "w1[, w2 …]" [--run DIR] [--vectors wordnet|FILE] [--k 10] [--json]

  --words LIST    comma-separated words or phrases, one result each (the words between two commas
                  are one phrase; plural and inflected words are read as their lemma, with a note)
  --run DIR       rank the run's classes by KL(q(z|word) ‖ q(z|class)); a one-hot run knows only
                  its class names, a run trained with --labels words knows every word its vectors do
  --vectors SRC   without --run: the word vectors to search (default wordnet)
  --k N           nearest words to list (default 10)`,
  async run(argv) {
    const { values: v } = parse(argv, {
      words: { type: 'string' },
      run: { type: 'string' },
      vectors: { type: 'string' },
      k: { type: 'string' },
      json: { type: 'boolean' },
    });
    const phrases = strOption(v.words, 'words')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    if (phrases.length === 0) throw new ProbsemError('--words is empty', 'BAD_OPTION');
    const k = intOption(v.k, 'k', 10, 1, 1000);
    const notice = (m: string) => process.stderr.write(`note: ${m}\n`);
    const results = [];
    if (v.run !== undefined) {
      if (v.vectors !== undefined) throw new ProbsemError('--vectors is for use without --run (a run uses its own vectors)', 'BAD_OPTION');
      const { model, meta } = loadImageModel(String(v.run));
      const vectors = await runWordVectors(meta, phrases, { neighbours: true, onNotice: notice });
      for (const p of phrases) results.push(phraseNeighbours(model, meta, p, vectors, k));
    } else {
      const wv = forgiveInflections(await loadWordSource(strOption(v.vectors, 'vectors', 'wordnet'), { maxWords: 200_000, onNotice: notice }), notice);
      for (const p of phrases) results.push({ phrase: p, classes: [], words: wv.nearest(unitPhraseVector(wv, p), k, [p]) });
    }
    if (v.json) {
      process.stdout.write(JSON.stringify({ results }) + '\n');
      return 0;
    }
    for (const r of results) {
      process.stdout.write(`${r.phrase}\n`);
      if (r.classes.length > 0) {
        process.stdout.write('  nearest classes (KL in the latent space, word cosine):\n');
        for (const c of r.classes.slice(0, 5)) {
          process.stdout.write(`    ${c.label.padEnd(14)} KL ${c.kl.toFixed(2).padStart(8)}${c.cosine === null ? '' : `   cos ${c.cosine.toFixed(3)}`}\n`);
        }
      }
      if (r.words.length > 0) process.stdout.write(`  nearest words: ${r.words.map((w) => `${w.word} (${w.similarity.toFixed(3)})`).join(', ')}\n`);
    }
    return 0;
  },
};
