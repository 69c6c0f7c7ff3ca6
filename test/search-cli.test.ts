import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-search-'));
const cache = tmp();

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: cache } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** One small run for the tests of this file (30 steps on the shipped subset). */
let runDir: string | null = null;
function run(): string {
  if (runDir) return runDir;
  runDir = join(tmp(), 'run');
  const r = cli('train', '--model', 'pse-star', '--dataset', 'fashion-mnist-subset', '--latent', '4', '--steps', '30', '--batch', '50', '--out', runDir, '--quiet');
  assert.equal(r.code, 0, r.err);
  return runDir;
}

type Row = { id: number; kl: number; score: number };
const ascending = (rows: Row[], key: 'kl' | 'score') => rows.every((x, i) => i === 0 || rows[i - 1][key] <= x[key]);

test('--distance on index query, retrieve and similar: the same exact ranking, scores in order, KL alongside', () => {
  const dir = run();
  const idx = join(tmp(), 'test.idx');
  let r = cli('index', 'build', '--run', dir, '--out', idx);
  assert.equal(r.code, 0, r.err);
  for (const distance of ['w2', 'bhattacharyya', 'kl-reverse']) {
    r = cli('index', 'query', idx, '--words', 'Sneaker', '--k', '6', '--distance', distance, '--json');
    assert.equal(r.code, 0, r.err);
    const viaIndex = JSON.parse(r.out) as { distance: string; queries: { results: Row[] }[] };
    assert.equal(viaIndex.distance, distance);
    const hits = viaIndex.queries[0].results;
    assert.equal(hits.length, 6);
    assert.ok(ascending(hits, 'score'), `${distance} scores ascending`);
    r = cli('retrieve', '--run', dir, '--words', 'Sneaker', '--k', '6', '--distance', distance, '--json');
    assert.equal(r.code, 0, r.err);
    const viaRetrieve = JSON.parse(r.out).results as Row[];
    assert.deepEqual(viaRetrieve.map((x) => x.id), hits.map((x) => x.id), `${distance}: retrieve and index query agree`);
    viaRetrieve.forEach((x, i) => assert.equal(x.score, hits[i].score));
  }
  r = cli('index', 'query', idx, '--words', 'Sneaker', '--k', '3', '--distance', 'elk');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /elk -?\d+\.\d\d {2}KL \d+\.\d\d/);
  r = cli('similar', '--run', dir, '--image', '3', '--k', '5', '--distance', 'csd', '--json');
  assert.equal(r.code, 0, r.err);
  const near = JSON.parse(r.out).results as Row[];
  assert.ok(near.every((x) => x.id !== 3) && ascending(near, 'score'));
  r = cli('similar', '--run', dir, '--image', '3', '--k', '5', '--distance', 'csd', '--dissimilar', '--json');
  const far = JSON.parse(r.out).results as Row[];
  assert.ok(far[0].score > near[4].score && far.every((x, i) => i === 0 || far[i - 1].score >= x.score));
});

test('--distance refusals: unknown names, combinations that rank otherwise', () => {
  const dir = run();
  const cases: [string[], RegExp][] = [
    [['retrieve', '--run', dir, '--words', 'Sneaker', '--distance', 'hellinger'], /--distance must be one of kl, kl-reverse, kl-sym, bhattacharyya, w2, elk, csd; got "hellinger"/],
    [['retrieve', '--run', dir, '--words', 'Sneaker, Bag', '--any', '--distance', 'w2'], /--distance w2 ranks one query by that distance; it does not combine with --any/],
    [['retrieve', '--run', dir, '--words', 'Sneaker', '--rank', 'posterior', '--distance', 'elk'], /does not combine with --any or --rank posterior/],
    [['index', 'build', '--run', dir, '--store', 'clickhouse://127.0.0.1:1/db.t', '--cluster', 'c'], /--cluster NAME and --shards host:port,… go together, with --store/],
  ];
  for (const [args, re] of cases) {
    const r = cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')} → exit ${r.code}: ${r.err}`);
    assert.match(r.err, re);
  }
});
