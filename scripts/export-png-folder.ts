/**
 * Writes a dataset out as PNG files, a subfolder per class, with a manifest.csv (path, label,
 * split) that keeps the original train/test split: the input for checking that `folder:` and
 * `manifest:` datasets train like the IDX files they came from (docs/results.md).
 *
 *   npx tsx scripts/export-png-folder.ts --dataset fashion-mnist --out /tmp/fm-png [--limit N]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { writeFileAtomicSync } from '../src/core/files.js';
import { loadDataset } from '../src/data/registry.js';

const { values: v } = parseArgs({ options: { dataset: { type: 'string', default: 'fashion-mnist' }, out: { type: 'string' }, limit: { type: 'string' } } });
if (!v.out) throw new Error('--out DIR is required');
const ds = await loadDataset(v.dataset!);
const channels = ds.channels ?? 1;
const pixels = ds.height * ds.width * channels;
const limit = v.limit ? Number(v.limit) : Infinity;
// Folder names cannot hold '/', which class names may ("T-shirt/top"); the manifest keeps the real name.
const folderOf = (c: number) => ds.classNames[c].replace(/[/\\]/g, '_');
for (let c = 0; c < ds.classNames.length; c++) mkdirSync(join(v.out, folderOf(c)), { recursive: true });
const rows = ['path,label,split'];
const quote = (s: string) => (/[",]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
let written = 0;
for (const name of ['train', 'test'] as const) {
  const split = ds[name];
  for (let i = 0; i < Math.min(split.count, limit); i++) {
    const rel = join(folderOf(split.labels[i]), `${name}-${String(i).padStart(5, '0')}.png`);
    const png = await sharp(split.images.subarray(i * pixels, (i + 1) * pixels), { raw: { width: ds.width, height: ds.height, channels } }).png().toBuffer();
    writeFileSync(join(v.out, rel), png);
    rows.push(`${quote(rel)},${quote(ds.classNames[split.labels[i]])},${name}`);
    if (++written % 5000 === 0) process.stderr.write(`${written} pictures\n`);
  }
}
writeFileAtomicSync(join(v.out, 'manifest.csv'), rows.join('\n') + '\n');
process.stdout.write(`wrote ${written} pictures and manifest.csv to ${v.out}\n`);
