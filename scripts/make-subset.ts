/**
 * Build the compact Fashion-MNIST subset shipped in data/fashion-mnist-subset/.
 *
 * Usage: npx tsx scripts/make-subset.ts
 *
 * Reads the full dataset from the Debian package `dataset-fashion-mnist`
 * (/usr/share/datasets/fashion-mnist/) and writes a class-balanced, seeded
 * random subset (1,000 train + 200 test images per class) as gzipped IDX files
 * with the standard file names, so code that reads the full dataset reads the
 * subset unchanged. The output is deterministic: rerunning gives identical bytes.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readIdxImagesAndLabels, writeIdxFile, type IdxImageDataset } from '../src/data/idx.js';

const SOURCE_DIR = '/usr/share/datasets/fashion-mnist';
const OUT_DIR = fileURLToPath(new URL('../data/fashion-mnist-subset/', import.meta.url));
const SEED = 20261122;
const NUM_CLASSES = 10;
const TRAIN_PER_CLASS = 1000;
const TEST_PER_CLASS = 200;
const CLASS_NAMES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
  'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];

const SPLITS = [
  { name: 'train', perClass: TRAIN_PER_CLASS, images: 'train-images-idx3-ubyte.gz', labels: 'train-labels-idx1-ubyte.gz' },
  { name: 'test', perClass: TEST_PER_CLASS, images: 't10k-images-idx3-ubyte.gz', labels: 't10k-labels-idx1-ubyte.gz' },
] as const;

/** mulberry32: tiny, well-known seeded PRNG; good enough for sampling and stable across platforms. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** In-place Fisher–Yates shuffle driven by `rand`. */
function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function exists(path: string): Promise<boolean> {
  return fs.access(path).then(() => true, () => false);
}

/** The source files may still be being installed by apt: poll for up to 10 minutes. */
async function waitForSourceFiles(): Promise<void> {
  const files = SPLITS.flatMap((s) => [s.images, s.labels]).map((f) => join(SOURCE_DIR, f));
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    const missing: string[] = [];
    for (const f of files) if (!(await exists(f))) missing.push(f);
    if (missing.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(`source files still missing after 10 minutes: ${missing.join(', ')} (install the dataset-fashion-mnist package)`);
    }
    console.log(`waiting for ${missing.length} source file(s), e.g. ${missing[0]}; retrying in 30 s`);
    await sleep(30_000);
  }
}

/**
 * Pick `perClass` random indices of each class, then shuffle the union so the
 * classes are interleaved (consumers can take a prefix and still be roughly balanced).
 */
function selectBalanced(labels: Uint8Array, perClass: number, rand: () => number): number[] {
  const byClass: number[][] = Array.from({ length: NUM_CLASSES }, () => []);
  labels.forEach((label, i) => {
    const bucket = byClass[label];
    if (bucket === undefined) throw new Error(`unexpected label ${label} at index ${i}`);
    bucket.push(i);
  });
  const chosen: number[] = [];
  byClass.forEach((indices, c) => {
    if (indices.length < perClass) {
      throw new Error(`class ${c} has only ${indices.length} examples, need ${perClass}`);
    }
    chosen.push(...shuffle(indices, rand).slice(0, perClass));
  });
  return shuffle(chosen, rand);
}

/** Copy the selected examples out of the full dataset. */
function gather(ds: IdxImageDataset, indices: number[]): { images: Uint8Array; labels: Uint8Array } {
  const pixels = ds.height * ds.width;
  const images = new Uint8Array(indices.length * pixels);
  const labels = new Uint8Array(indices.length);
  indices.forEach((src, dst) => {
    images.set(ds.images.subarray(src * pixels, (src + 1) * pixels), dst * pixels);
    labels[dst] = ds.labels[src]!;
  });
  return { images, labels };
}

function readme(sizes: Map<string, number>): string {
  const fileRows = [...sizes].map(([name, bytes]) => `| \`${name}\` | ${bytes.toLocaleString('en-US')} |`).join('\n');
  return `# Fashion-MNIST subset

A small, class-balanced random subset of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist)
(28×28 grayscale images of clothing in 10 classes), shipped with probsem so the
demo and tests run on real data without a download.

| split | images per class | total |
|-------|------------------|-------|
| train | ${TRAIN_PER_CLASS.toLocaleString('en-US')} | ${(TRAIN_PER_CLASS * NUM_CLASSES).toLocaleString('en-US')} |
| test  | ${TEST_PER_CLASS} | ${(TEST_PER_CLASS * NUM_CLASSES).toLocaleString('en-US')} |

The files are gzipped IDX files with the same names and layout as the original
distribution, so anything that reads Fashion-MNIST reads them unchanged:

| file | bytes |
|------|-------|
${fileRows}

Labels: ${CLASS_NAMES.map((n, i) => `${i} ${n}`).join(', ')}.

## How it was made

\`\`\`sh
npx tsx scripts/make-subset.ts
\`\`\`

The script reads the full dataset from the Debian package \`dataset-fashion-mnist\`
(\`${SOURCE_DIR}/\`: 60,000 train and 10,000 test images), picks
${TRAIN_PER_CLASS.toLocaleString('en-US')} training and ${TEST_PER_CLASS} test images of each class at random
(mulberry32 PRNG, seed ${SEED}; test images come only from the original test set),
and stores them in shuffled order, so the classes are interleaved. The output is
deterministic: rerunning the script reproduces these files byte for byte.

## License

Fashion-MNIST is Copyright (c) 2017 Zalando SE (Zalando Research) and is released
under the MIT License. See https://github.com/zalandoresearch/fashion-mnist/blob/master/LICENSE.

Reference: Han Xiao, Kashif Rasul, Roland Vollgraf. *Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms.* arXiv:1708.07747, 2017.
`;
}

async function main(): Promise<void> {
  await waitForSourceFiles();
  await fs.mkdir(OUT_DIR, { recursive: true });
  const sizes = new Map<string, number>();

  for (const [splitIndex, split] of SPLITS.entries()) {
    const full = await readIdxImagesAndLabels(join(SOURCE_DIR, split.images), join(SOURCE_DIR, split.labels));
    // One generator per split, so each split's selection depends only on the seed.
    const rand = mulberry32(SEED + splitIndex);
    const indices = selectBalanced(full.labels, split.perClass, rand);
    const { images, labels } = gather(full, indices);

    await writeIdxFile(join(OUT_DIR, split.images), { dims: [indices.length, full.height, full.width], data: images }, { gzip: true });
    await writeIdxFile(join(OUT_DIR, split.labels), { dims: [indices.length], data: labels }, { gzip: true });

    // Read back what was written, to catch any encoding problem before shipping it.
    const check = await readIdxImagesAndLabels(join(OUT_DIR, split.images), join(OUT_DIR, split.labels));
    const counts = new Array<number>(NUM_CLASSES).fill(0);
    check.labels.forEach((l) => { counts[l] = (counts[l] ?? 0) + 1; });
    if (check.count !== indices.length || counts.some((n) => n !== split.perClass)) {
      throw new Error(`${split.name}: read-back check failed (count ${check.count}, per class ${counts.join(',')})`);
    }

    for (const name of [split.images, split.labels]) {
      sizes.set(name, (await fs.stat(join(OUT_DIR, name))).size);
    }
    console.log(`${split.name}: ${check.count} of ${full.count} images (${split.perClass} per class), ${check.height}×${check.width}`);
  }

  await fs.writeFile(join(OUT_DIR, 'README.md'), readme(sizes));
  for (const [name, bytes] of sizes) console.log(`  ${join(OUT_DIR, name)}: ${bytes} bytes`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
