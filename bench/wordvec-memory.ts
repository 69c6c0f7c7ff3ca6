/**
 * Memory of loading a large word-vector file through a small vocabulary filter.
 *
 *   npx tsx bench/wordvec-memory.ts [--size-gb 1] [--dim 300] [--json]
 *
 * Streams a synthetic word2vec text file (seeded, so the same bytes every run) of about
 * --size-gb × 10⁹ bytes to a temporary folder, then loads it in a child process with a 10-word
 * vocabulary spread over the file (the last row included, so the whole file is read) and prints
 * JSON with the child's peak RSS, the load time and the words found. The file is deleted at the
 * end. The child is a fresh process so its peak RSS measures the reader, not the generator.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, promises as fs } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Rng } from '../src/core/random.js';
import { readWordVectors } from '../src/text/readers.js';

const HERE = fileURLToPath(import.meta.url);
const TARGET_RSS_MB = 300;
const VOCABULARY_SIZE = 10;

const { values: opt } = parseArgs({
  options: {
    'size-gb': { type: 'string', default: '1' },
    dim: { type: 'string', default: '300' },
    json: { type: 'boolean' },
    child: { type: 'string' },
    vocab: { type: 'string' },
  },
});

const log = (m: string) => {
  if (!opt.json) process.stderr.write(m + '\n');
};

if (opt.child) await childMain(opt.child, (opt.vocab ?? '').split(','));
else await parentMain();

/** In the child: load the file through the filter and report this process's own figures. */
async function childMain(path: string, vocabulary: string[]): Promise<void> {
  const baselineRssMB = process.memoryUsage().rss / 2 ** 20;
  const t0 = performance.now();
  const wv = await readWordVectors(path, { vocabulary });
  const loadSeconds = (performance.now() - t0) / 1000;
  const peakRssMB = process.resourceUsage().maxRSS / 1024; // maxRSS is in KB
  process.stdout.write(JSON.stringify({ loadSeconds, peakRssMB, baselineRssMB, wordsFound: wv.size, found: wv.words }) + '\n');
}

async function parentMain(): Promise<void> {
  const sizeBytes = Number(opt['size-gb']) * 1e9;
  const dim = Number(opt.dim);
  const dir = await fs.mkdtemp(join(tmpdir(), 'probsem-wordvec-bench-'));
  const path = join(dir, 'vectors.txt');
  try {
    const t0 = performance.now();
    const file = await writeSyntheticFile(path, sizeBytes, dim);
    const generateSeconds = (performance.now() - t0) / 1000;
    log(`wrote ${(file.bytes / 1e9).toFixed(2)} GB, ${file.rows} words × ${dim} in ${generateSeconds.toFixed(1)} s; loading in a child process…`);
    const child = spawnSync(process.execPath, ['--import', 'tsx', HERE, '--child', path, '--vocab', file.vocabulary.join(',')], {
      cwd: join(dirname(HERE), '..'),
      encoding: 'utf8',
    });
    if (child.status !== 0) throw new Error(`child failed (${child.status}): ${child.stderr}`);
    const r = JSON.parse(child.stdout.trim().split('\n').pop()!);
    const result = {
      fileBytes: file.bytes,
      words: file.rows,
      dim,
      generateSeconds: round(generateSeconds),
      loadSeconds: round(r.loadSeconds),
      loadMBPerSecond: round(file.bytes / 1e6 / r.loadSeconds),
      vocabulary: file.vocabulary.length,
      wordsFound: r.wordsFound,
      allFound: r.wordsFound === file.vocabulary.length,
      peakRssMB: round(r.peakRssMB),
      baselineRssMB: round(r.baselineRssMB),
      targetRssMB: TARGET_RSS_MB,
      targetMet: r.peakRssMB < TARGET_RSS_MB,
      node: process.version,
      cpus: cpus().length,
    };
    process.stdout.write(JSON.stringify(result, null, opt.json ? undefined : 2) + '\n');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

interface SyntheticFile {
  bytes: number;
  rows: number;
  vocabulary: string[];
}

/**
 * Writes "COUNT DIM" then rows of a random word and `dim` fixed-width values (8 characters each),
 * so the row count that gives `sizeBytes` is known before writing. Values are windows into one
 * seeded pool: cheap to produce, still different on every row.
 */
async function writeSyntheticFile(path: string, sizeBytes: number, dim: number): Promise<SyntheticFile> {
  const rng = new Rng(20261122);
  const poolSize = 8192;
  const pool = Array.from({ length: poolSize + dim }, () => {
    const u = rng.uniform();
    return rng.uniform() < 0.5 ? u.toFixed(6) : `-${u.toFixed(5)}`;
  }).join(' ');
  const approxRowBytes = dim * 9 + 12;
  const rows = Math.max(VOCABULARY_SIZE, Math.round(sizeBytes / approxRowBytes));
  const chosen = new Set(Array.from({ length: VOCABULARY_SIZE }, (_, k) => Math.round(((k + 1) * (rows - 1)) / VOCABULARY_SIZE)));
  const vocabulary: string[] = [];

  const out = createWriteStream(path);
  let bytes = 0;
  let batch = `${rows} ${dim}\n`;
  for (let i = 0; i < rows; i++) {
    const word = randomWord(rng, i);
    if (chosen.has(i)) vocabulary.push(word);
    const start = rng.int(poolSize) * 9;
    batch += `${word} ${pool.slice(start, start + dim * 9 - 1)}\n`;
    if (batch.length >= 1 << 20) {
      bytes += batch.length;
      if (!out.write(batch)) await once(out, 'drain'); // keep the generator's own memory small
      batch = '';
    }
  }
  bytes += batch.length;
  out.end(batch);
  await once(out, 'finish');
  return { bytes, rows, vocabulary };
}

/** 3–9 random letters plus the row number, so words are unique. */
function randomWord(rng: Rng, i: number): string {
  const n = 3 + rng.int(7);
  let w = '';
  for (let k = 0; k < n; k++) w += String.fromCharCode(97 + rng.int(26));
  return `${w}_${i.toString(36)}`;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
