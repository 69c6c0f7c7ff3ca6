/** Aggregates `eval.json` files of run directories into a Markdown table of mean ± sd per model. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2] ?? 'runs/paper';
type Row = Record<string, number | string | null>;
const groups = new Map<string, Row[]>();
for (const d of readdirSync(root).sort()) {
  const f = join(root, d, 'eval.json');
  if (!existsSync(f)) continue;
  const e = JSON.parse(readFileSync(f, 'utf8').trim().split('\n').pop()!) as Row;
  const meta = JSON.parse(readFileSync(join(root, d, 'model.json'), 'utf8'));
  const key = `${e.model} ${meta.config.latent}-D`;
  groups.set(key, [...(groups.get(key) ?? []), { ...e, seed: meta.training.seed }]);
}
const stat = (xs: number[], scale = 1, digits = 1) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
  return `${(m * scale).toFixed(digits)} ± ${(sd * scale).toFixed(digits)}`;
};
const col = (rows: Row[], k: string) => rows.map((r) => r[k]).filter((v): v is number => typeof v === 'number');
console.log('| model | seeds | reconstruction (sampled z) | reconstruction (posterior mean) | annotation % | generation % | judge % |');
console.log('|---|---|---|---|---|---|---|');
for (const [key, rows] of groups) {
  console.log(
    `| ${key} | ${rows.map((r) => r.seed).join(', ')} | ${stat(col(rows, 'reconstructionError'))} | ${stat(col(rows, 'reconstructionErrorMean'))} | ` +
      `${stat(col(rows, 'annotationAccuracy'), 100, 2)} | ${stat(col(rows, 'generationAccuracy'), 100, 2)} | ${stat(col(rows, 'judgeAccuracy'), 100, 2)} |`,
  );
}
