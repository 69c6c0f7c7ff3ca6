import { readFileSync } from 'node:fs';
import { ProbsemError } from '../../core/errors.js';
import { loadDataset } from '../../data/registry.js';
import { ClickHouseStore } from '../../index/clickhouse.js';
import { KlIndex, type QueryGaussian, type SearchHit } from '../../index/kl-index.js';
import type { ModelFile } from '../../models/persist.js';
import { DISTANCES, parseDistance } from '../../index/distances.js';
import { indexQuery } from '../../runs/retrieval.js';
import { lastIndexSource, searchIndex } from '../../runs/search-index.js';
import { checkCompatible, loadImageModel, runDatasetName } from '../../runs/runs.js';
import { queryForWords, runWordVectors, splitQuery } from '../../runs/words.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

const HELP = `probsem index build --run DIR [--split test|train] [--dataset D] (--out IDX | --store URL | both)
probsem index query (IDX | --store URL) (--words "sneaker, ankle boot" | --queries FILE) [--k 10] [--distance NAME] [--run DIR] [--json]

Exact top-k retrieval by KL(query ‖ q(z|x)): every image's posterior is stored, and the KL is
rewritten as one inner product plus constants, so a query is one pass of dot products (the
ranking equals computing every KL; docs/architecture.md).

build
  --run DIR        the model whose posteriors q(z|x) are indexed (full covariance where it has one)
  --split S        which split of the run's dataset (default test)
  --dataset D      another dataset of the same image size
  --out IDX        write the index file (atomically)
  --store URL      also (or instead) upload to ClickHouse: clickhouse://[user:key@]host:port/db.table
                   (HTTP port; the table is replaced; credentials are sent in headers)
  --cluster NAME   with --store: a Distributed table over the shards of this cluster (the
                   server's remote_servers), each shard's part in db.table_local
  --shards LIST    with --cluster: every shard's HTTP host:port, comma-separated, in order
query
  --words SET      one set query, as retrieve's: commas separate its members, the words between
                   two commas are one phrase (a class name or, for word-vector runs, any phrase);
                   several members are one Gaussian covering them all
  --queries FILE   many queries, one per line, searched as one batch
  --k N            results per query (default 10)
  --distance NAME  what to rank by (default kl); exact for every one (docs/architecture.md):
                   kl             KL(query ‖ image posterior)
                   kl-reverse     KL(image posterior ‖ query)
                   kl-sym         the sum of both
                   bhattacharyya  the Bhattacharyya distance
                   w2             the squared 2-Wasserstein distance
                   elk            −log of the expected likelihood kernel ∫ q(z) p(z) dz
                   csd            PCME++'s closed-form sampled distance ‖μ − μ'‖² + ‖σ² + σ'²‖₁
                   (a --store: kl for every table, the others for diagonal models' tables)
  --run DIR        the model that turns words into a query (default: the one the index records);
                   it must be the run the index was built from (its weights' sha256 is checked:
                   a run retrained since is refused, rebuild the index)
  --json           print JSON: per query the words and [{id, labels, kl, score}] (score: the
                   distance ranked by; kl is always KL(query ‖ image posterior))`;

export const indexCommand: Command = {
  summary: 'build an exact KL index of a run\'s image posteriors, or query it by words',
  help: HELP,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === 'build') return build(rest);
    if (sub === 'query') return query(rest);
    throw new ProbsemError(`probsem index: expected 'build' or 'query', got ${sub === undefined ? 'nothing' : `'${sub}'`}`, 'BAD_OPTION');
  },
};

async function build(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    run: { type: 'string' },
    split: { type: 'string' },
    dataset: { type: 'string' },
    data: { type: 'string' },
    out: { type: 'string' },
    store: { type: 'string' },
    cluster: { type: 'string' },
    shards: { type: 'string' },
  });
  if ((v.cluster === undefined) !== (v.shards === undefined) || (v.cluster !== undefined && v.store === undefined)) {
    throw new ProbsemError('--cluster NAME and --shards host:port,… go together, with --store', 'BAD_OPTION');
  }
  const cluster = v.cluster !== undefined ? { name: String(v.cluster), shards: String(v.shards).split(',').map((x) => x.trim()).filter(Boolean) } : undefined;
  if (v.out === undefined && v.store === undefined) throw new ProbsemError('give --out IDX, --store URL or both', 'BAD_OPTION');
  const split = strOption(v.split, 'split', 'test');
  if (split !== 'test' && split !== 'train') throw new ProbsemError(`--split must be test or train, got '${split}'`, 'BAD_OPTION');
  const dir = strOption(v.run, 'run');
  const { model, meta } = loadImageModel(dir);
  const ds = await loadDataset(runDatasetName(meta, v.dataset as string | undefined, (m) => process.stderr.write(`note: ${m}\n`)), { dataDir: v.data as string | undefined });
  checkCompatible(meta, ds);
  const t0 = performance.now();
  // The run's own index of the split (search-index.ts): taken from its cache when still valid.
  const index = searchIndex(dir, model, meta, ds, { split, onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
  const encodeMs = performance.now() - t0;
  const how = lastIndexSource() === 'built' ? '' : ' (from the run\'s index cache)';
  if (v.out !== undefined) index.save(String(v.out));
  let uploaded = '';
  if (v.store !== undefined) {
    const store = await ClickHouseStore.open(String(v.store), { cluster });
    const r = await store.upload(index, { replace: true });
    uploaded = `; uploaded ${r.rows} rows to ${v.store} in ${(r.ms / 1000).toFixed(1)} s`;
  }
  process.stdout.write(
    `indexed ${index.count} ${index.kind === 'full' ? 'full-covariance' : 'diagonal'} posteriors (latent ${index.dim}) of ${ds.name} ${split} in ${(encodeMs / 1000).toFixed(1)} s${how}` +
      (v.out !== undefined ? `; wrote ${v.out}` : '') +
      uploaded +
      '\n',
  );
  return 0;
}

async function query(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(
    argv,
    {
      store: { type: 'string' },
      words: { type: 'string' },
      queries: { type: 'string' },
      k: { type: 'string' },
      distance: { type: 'string' },
      run: { type: 'string' },
      json: { type: 'boolean' },
    },
    true,
  );
  const distance = parseDistance(v.distance);
  if ((positionals.length === 1) === (v.store !== undefined) || positionals.length > 1) throw new ProbsemError('give exactly one of an index file or --store URL', 'BAD_OPTION');
  if ((v.words === undefined) === (v.queries === undefined)) throw new ProbsemError('give exactly one of --words or --queries', 'BAD_OPTION');
  const k = intOption(v.k, 'k', 10, 1, 100000);
  const texts = v.words !== undefined ? [String(v.words)] : readFileSync(String(v.queries), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  if (texts.length === 0) throw new ProbsemError(`${v.queries}: no queries (one per line)`, 'BAD_OPTION');
  const index = positionals.length === 1 ? KlIndex.load(positionals[0]) : null;
  const store = v.store !== undefined ? await ClickHouseStore.open(String(v.store)) : null;
  const info = index ? { meta: index.meta, dim: index.dim } : await store!.info();
  const runDir = strOption(v.run, 'run', typeof info.meta.run === 'string' ? info.meta.run : undefined);
  const { model, meta } = loadImageModel(runDir);
  checkIndexRun(info.meta, meta, runDir, index ? positionals[0] : String(v.store), (m) => process.stderr.write(`note: ${m}\n`));
  if (model.latentDim !== info.dim) throw new ProbsemError(`the run ${runDir} has latent ${model.latentDim} but the index holds ${info.dim}-dimensional Gaussians`, 'SHAPE');
  const vectors = await runWordVectors(meta, texts.flatMap((t) => splitQuery(meta, [t])), { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
  const queries: QueryGaussian[] = texts.map((t) => indexQuery(queryForWords(model, meta, [t], vectors)));
  const t0 = performance.now();
  const results: SearchHit[][] = index ? index.searchBatch(queries, k, { distance }) : await store!.searchBatch(queries, k, { distance });
  const ms = performance.now() - t0;
  const classNames = (info.meta.classNames as string[] | undefined) ?? meta.classNames;
  // KlIndex.load checks labels against the index's own class list; one without is checked here.
  const bad = index?.labels?.values.findIndex((c) => !(c >= 0 && c < classNames.length)) ?? -1;
  if (bad >= 0) throw new ProbsemError(`${positionals[0]}: label ${index!.labels!.values[bad]} is not a class of ${runDir} (${classNames.length} classes)`, 'DATA_FORMAT');
  const labelsOf = (hit: SearchHit): string[] => {
    const l = index?.labels;
    if (!l) return [];
    return Array.from(l.values.subarray(hit.index * l.perItem, (hit.index + 1) * l.perItem), (c) => classNames[c]);
  };
  if (v.json) {
    process.stdout.write(
      JSON.stringify({ k, distance, ms, queries: texts.map((t, i) => ({ words: t, results: results[i].map((h) => ({ id: h.id, labels: labelsOf(h), kl: h.kl, score: h.score })) })) }) + '\n',
    );
    return 0;
  }
  texts.forEach((t, i) => {
    process.stdout.write(`query: ${t}\n`);
    for (const h of results[i]) process.stdout.write(`${String(h.id).padStart(8)}  ${labelsOf(h).join(' + ').padEnd(26)} ${scoreText(distance, h)}\n`);
  });
  process.stdout.write(`${texts.length} quer${texts.length === 1 ? 'y' : 'ies'} in ${ms.toFixed(1)} ms\n`);
  return 0;
}

/** "KL 1.23", or for another distance its name and value beside the KL: "w2 0.41  KL 1.23". */
export function scoreText(distance: string, h: { kl: number; score?: number }): string {
  return distance === 'kl' || h.score === undefined ? `KL ${h.kl.toFixed(2)}` : `${distance} ${h.score.toFixed(2)}  KL ${h.kl.toFixed(2)}`;
}

/** The --distance help lines, shared by the search commands. */
export const DISTANCE_HELP = `--distance NAME  rank by ${DISTANCES.join(', ')} (default kl; probsem index --help says what each is)`;

/**
 * Refuses a run that is not the one the index was built from: same directory but retrained in
 * place, or another run altogether. The index stores posteriors in that run's latent space, so
 * queries from any other weights return confident nonsense. An index from before these fields were
 * recorded cannot be checked; it is used with a notice rather than refused, as it is not known to
 * be wrong and a rebuild is the remedy either way.
 */
export function checkIndexRun(recorded: Record<string, unknown>, run: ModelFile, runDir: string, where: string, onNotice: (m: string) => void): void {
  const weights = recorded.runWeightsSha256;
  if (weights === undefined) {
    onNotice(`${where} predates run checksums: it cannot tell whether ${runDir} changed since it was built; rebuild it with probsem index build to be sure`);
    return;
  }
  const stale = (what: string, was: unknown, now: string) =>
    new ProbsemError(
      `${where} was built from a run whose ${what} sha256 is ${String(was)}, but ${runDir} has ${now} (retrained or replaced); rebuild the index: probsem index build --run ${runDir}`,
      'STALE_INDEX',
    );
  if (weights !== run.weights.sha256) throw stale('weights', weights, run.weights.sha256);
  const content = recorded.runContentSha256;
  if (content !== undefined && run.contentSha256 !== undefined && content !== run.contentSha256) throw stale('model.json content', content, run.contentSha256);
}
