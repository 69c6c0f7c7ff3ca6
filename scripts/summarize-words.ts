// Summarises scripts/words-protocol.sh runs: Table 3 (one-hot vs word-vector labels, mean ± sd over
// seeds, Welch's t-test on annotation accuracy), zero-shot runs and retrieval precision@20.
// Usage: npx tsx scripts/summarize-words.ts runs/words [runs/paper]   (the second folder adds
// one-hot runs named <model>-10d-s<seed> from the paper protocol)
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { welchTTest } from '../src/eval/stats.js';

interface Eval {
  reconstructionError: number;
  reconstructionErrorMean: number;
  annotationAccuracy: number;
  retrievalPrecisionAt20?: { mean: number; perLabel: Record<string, number> } | null;
  retrievalPrecisionAt20Posterior?: { mean: number; perLabel: Record<string, number> } | null;
  zeroShot?: { heldOut: string[]; unseenAccuracy: number; generalizedAccuracy: number; seenAccuracy: number } | null;
}

const [dir, extra] = process.argv.slice(2);
const runs = new Map<string, Map<number, Eval>>();
const add = (key: string, seed: number, e: Eval) => {
  if (!runs.has(key)) runs.set(key, new Map());
  if (!runs.get(key)!.has(seed)) runs.get(key)!.set(seed, e);
};
for (const name of readdirSync(dir)) {
  const f = join(dir, name, 'eval.json');
  if (!existsSync(f)) continue;
  const m = /^(.*)-s(\d+)$/.exec(name);
  if (m) add(m[1], Number(m[2]), JSON.parse(readFileSync(f, 'utf8')) as Eval);
}
if (extra) {
  for (const name of readdirSync(extra)) {
    const m = /^(pse|pse-star)-10d-s(\d+)$/.exec(name);
    const f = join(extra, name, 'eval.json');
    // Older evaluations lack the retrieval metrics: a later `eval --no-generation` adds them.
    const later = join(extra, name, 'eval-retrieval.json');
    if (m && existsSync(f)) {
      const e = JSON.parse(readFileSync(f, 'utf8')) as Eval;
      add(`${m[1]}-onehot`, Number(m[2]), existsSync(later) ? { ...e, ...(JSON.parse(readFileSync(later, 'utf8')) as Eval) } : e);
    }
  }
}

const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
const sd = (a: number[]) => (a.length > 1 ? Math.sqrt(a.reduce((s, x) => s + (x - mean(a)) ** 2, 0) / (a.length - 1)) : 0);
const fmt = (a: number[], scale = 1, digits = 1) => `${(mean(a) * scale).toFixed(digits)} ± ${(sd(a) * scale).toFixed(digits)}`;

console.log('| labels | model | seeds | recon, sampled z (nats) | recon, posterior mean | annotation % | retrieval P@20, KL rank | retrieval P@20, posterior rank |');
console.log('|---|---|---|---|---|---|---|---|');
for (const model of ['pse', 'pse-star']) {
  for (const enc of ['onehot', 'words']) {
    const r = runs.get(`${model}-${enc}`);
    if (!r || r.size === 0) continue;
    const es = [...r.values()];
    const ret = es.filter((e) => e.retrievalPrecisionAt20).map((e) => e.retrievalPrecisionAt20!.mean);
    const retP = es.filter((e) => e.retrievalPrecisionAt20Posterior).map((e) => e.retrievalPrecisionAt20Posterior!.mean);
    console.log(
      `| ${enc === 'words' ? 'WordNet vectors' : 'one-hot'} | ${model === 'pse' ? 'PSE' : 'PSE*'} | ${[...r.keys()].sort().join(', ')} | ${fmt(es.map((e) => e.reconstructionError))} | ${fmt(es.map((e) => e.reconstructionErrorMean))} | ${fmt(es.map((e) => e.annotationAccuracy), 100, 2)} | ${ret.length ? fmt(ret, 100, 1) : '–'} | ${retP.length ? fmt(retP, 100, 1) : '–'} |`,
    );
  }
}
console.log();
for (const model of ['pse', 'pse-star']) {
  const a = runs.get(`${model}-words`);
  const b = runs.get(`${model}-onehot`);
  if (!a || !b || a.size < 2 || b.size < 2) continue;
  const w = welchTTest([...a.values()].map((e) => e.annotationAccuracy), [...b.values()].map((e) => e.annotationAccuracy));
  console.log(`${model}: annotation, words − one-hot: Welch t = ${w.t.toFixed(2)}, df = ${w.df.toFixed(1)}, two-sided p = ${w.p.toFixed(4)}`);
}
console.log();
console.log('| held out | unseen-pair accuracy % | generalised % | seen % |');
console.log('|---|---|---|---|');
for (const [key, r] of runs) {
  if (!key.startsWith('zeroshot')) continue;
  for (const [, e] of r) {
    const z = e.zeroShot!;
    console.log(`| ${z.heldOut.join(' + ')} | ${(100 * z.unseenAccuracy).toFixed(1)} | ${(100 * z.generalizedAccuracy).toFixed(1)} | ${(100 * z.seenAccuracy).toFixed(1)} |`);
  }
}
console.log();
const perLabel = (k: 'retrievalPrecisionAt20' | 'retrievalPrecisionAt20Posterior') => {
  for (const [key, r] of runs) {
    if (key.startsWith('zeroshot')) continue;
    const es = [...r.values()].filter((e) => e[k]);
    if (es.length === 0) continue;
    const labels = Object.keys(es[0][k]!.perLabel);
    console.log(`${key} ${k}: ${labels.map((l) => `${l} ${(100 * mean(es.map((e) => e[k]!.perLabel[l]))).toFixed(0)}`).join(', ')}`);
  }
};
perLabel('retrievalPrecisionAt20');
perLabel('retrievalPrecisionAt20Posterior');
