/**
 * Start-up cost: wall time of `import 'probsem'` (the built main entry) and of `probsem --help`,
 * median of N fresh processes each, alternating between this tree and another (`--against DIR`, a
 * built checkout of an older commit) so machine drift hits both. Needs `npm run build` first.
 *
 *   npm run build && tsx bench/startup.ts --runs 11 [--against /tmp/old-tree]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values: v } = parseArgs({ options: { runs: { type: 'string' }, against: { type: 'string' }, json: { type: 'boolean' } } });
const runs = Number(v.runs ?? 11);
const trees = [resolve(HERE, '..'), ...(v.against ? [resolve(v.against)] : [])];
for (const t of trees) {
  if (!existsSync(join(t, 'dist', 'index.js'))) throw new Error(`${t}/dist/index.js is missing: run npm run build there`);
}

function wallMs(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const samples = trees.map(() => ({ importMs: [] as number[], helpMs: [] as number[] }));
for (let i = 0; i < runs; i++) {
  trees.forEach((t, k) => {
    samples[k].importMs.push(wallMs(['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(join(t, 'dist', 'index.js')).href)})`]));
    samples[k].helpMs.push(wallMs([join(t, 'dist', 'cli', 'main.js'), '--help']));
  });
}
const result = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
  runs,
  trees: trees.map((t, k) => ({ tree: t, importMedianMs: median(samples[k].importMs), helpMedianMs: median(samples[k].helpMs), ...samples[k] })),
};
mkdirSync(join(HERE, 'results'), { recursive: true });
writeFileSync(join(HERE, 'results', `startup-${result.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2) + '\n');
process.stdout.write(JSON.stringify(result, null, v.json ? undefined : 2) + '\n');
