/** Datasets from a user's own pictures: folder:DIR and manifest:FILE (src/data/image-folder.ts). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { datasetHash, type Dataset, tagsOf as tagsOfSplit, validateSplit } from '../src/data/dataset.js';
import { imageSetName, parseImageSetSpec, splitCsvLine, type ImageDataset } from '../src/data/image-folder.js';
import { loadDataset } from '../src/data/registry.js';

const root = mkdtempSync(join(tmpdir(), 'probsem-folder-'));
const cache = join(root, 'cache');
let fm: Dataset;
const PER_CLASS = 30;
const CLASSES: [string, number][] = [['bag', 8], ['sneaker', 7], ['trouser', 1]];

/** Test image i of a Fashion-MNIST class as an 8-bit grey picture, light on dark (or inverted). */
function picture(cls: number, k: number, invert = false) {
  let seen = -1;
  for (let i = 0; i < fm.test.count; i++) {
    if (fm.test.labels[i] === cls && ++seen === k) {
      const px = fm.test.images.slice(i * 784, (i + 1) * 784);
      return sharp(invert ? px.map((v) => 255 - v) : px, { raw: { width: 28, height: 28, channels: 1 } });
    }
  }
  throw new Error('not enough images');
}

before(async () => {
  process.env.PROBSEM_CACHE = cache;
  fm = await loadDataset('fashion-mnist-subset');
  const dir = join(root, 'pics');
  for (const [name, cls] of CLASSES) {
    mkdirSync(join(dir, name, 'sub'), { recursive: true });
    for (let k = 0; k < PER_CLASS; k++) {
      // Mixed formats and sizes, some dark-on-light, some in a nested folder.
      const p = picture(cls, k, k % 5 === 0).resize(56, 56);
      const file = join(dir, name, k % 7 === 0 ? 'sub' : '', `${k}`);
      if (k % 3 === 0) await p.jpeg({ quality: 95 }).toFile(`${file}.jpg`);
      else if (k % 3 === 1) await p.webp({ lossless: true }).toFile(`${file}.webp`);
      else await p.png().toFile(`${file}.png`);
    }
  }
  writeFileSync(join(dir, 'bag', 'broken.png'), Buffer.from('not a picture at all'));
  writeFileSync(join(dir, 'bag', 'notes.txt'), 'ignored');
  writeFileSync(join(dir, 'bag', '.hidden.png'), 'ignored');
});
after(() => {
  delete process.env.PROBSEM_CACHE;
  rmSync(root, { recursive: true, force: true });
});

test('folder: a class per subfolder, a seeded per-class split, unreadable pictures skipped and listed', async () => {
  const progress: number[] = [];
  const ds = (await loadDataset(`folder:${join(root, 'pics')}`, { onProgress: (d) => progress.push(d) })) as ImageDataset;
  assert.deepEqual(ds.classNames, ['bag', 'sneaker', 'trouser']);
  assert.equal(ds.name, `folder:${join(root, 'pics')}`);
  assert.equal(ds.height, 28);
  assert.equal(ds.train.count + ds.test.count, 3 * PER_CLASS, 'every readable picture, and only pictures');
  for (let c = 0; c < 3; c++) assert.equal(ds.test.labels.filter((l) => l === c).length, 6, 'a fifth of each class is test');
  assert.equal(ds.skipped.length, 1);
  assert.match(ds.skipped[0].path, /broken\.png$/);
  assert.match(ds.skipped[0].reason, /not an image/);
  assert.ok(progress.length > 0);
  // Dark-on-light pictures were inverted: backgrounds are dark everywhere.
  for (let i = 0; i < ds.train.count; i++) assert.ok(ds.train.images[i * 784] < 60, `corner of training picture ${i}`);

  // The second load comes from the cache (no decoding) and is identical.
  const again = (await loadDataset(`folder:${join(root, 'pics')}`, { onProgress: () => assert.fail('decoded again') })) as ImageDataset;
  assert.equal(datasetHash(again), datasetHash(ds));
  assert.deepEqual(again.skipped, ds.skipped);
  const cacheEntries = readdirSync(join(cache, 'datasets'));
  assert.equal(cacheEntries.filter((f) => !f.endsWith('.key')).length, 1, 'one decoded dataset');
  // The files' sizes and mtimes point at it, so the next load reads no picture; a damaged pointer is ignored.
  const pointers = cacheEntries.filter((f) => f.startsWith('files-') && f.endsWith('.key'));
  assert.equal(pointers.length, 1);
  assert.equal(readFileSync(join(cache, 'datasets', pointers[0]), 'utf8').trim(), cacheEntries.find((f) => !f.endsWith('.key')));
  // A pointer that is not a cache key (here a path to a look-alike decode elsewhere) is never followed.
  const decoy = join(cache, 'decoy');
  cpSync(join(cache, 'datasets', cacheEntries.find((f) => !f.endsWith('.key'))!), decoy, { recursive: true });
  const decoyMeta = JSON.parse(readFileSync(join(decoy, 'dataset.json'), 'utf8'));
  writeFileSync(join(decoy, 'dataset.json'), JSON.stringify({ ...decoyMeta, classNames: [...decoyMeta.classNames].reverse() }));
  writeFileSync(join(cache, 'datasets', pointers[0]), '../decoy');
  const viaContent = (await loadDataset(`folder:${join(root, 'pics')}`, { onProgress: () => assert.fail('decoded again') })) as ImageDataset;
  assert.equal(datasetHash(viaContent), datasetHash(ds));
  assert.match(readFileSync(join(cache, 'datasets', pointers[0]), 'utf8'), /^[0-9a-f]{24}\n$/, 'the pointer is rewritten');

  // Another seed splits otherwise; another size is another dataset.
  const seeded = await loadDataset(`folder:${join(root, 'pics')}?seed=3`);
  assert.notEqual(datasetHash(seeded), datasetHash(ds));
  const big = await loadDataset(`folder:${join(root, 'pics')}?size=32x20`);
  assert.equal(big.height, 32);
  assert.equal(big.width, 20);
  assert.equal(big.name, `folder:${join(root, 'pics')}?size=32x20`);

  // A changed picture is noticed (its bytes are in the key).
  writeFileSync(join(root, 'pics', 'bag', 'broken.png'), await picture(8, 29).png().toBuffer());
  const fixed = (await loadDataset(`folder:${join(root, 'pics')}`)) as ImageDataset;
  assert.equal(fixed.skipped.length, 0);
  assert.equal(fixed.train.count + fixed.test.count, 3 * PER_CLASS + 1);
  writeFileSync(join(root, 'pics', 'bag', 'broken.png'), Buffer.from('not a picture at all'));
});

test('folder: with adjust=none keeps every picture as it is: dark-on-light ones stay light, the others equal the auto decode', async () => {
  const auto = await loadDataset(`folder:${join(root, 'pics')}`);
  const asIs = await loadDataset(`folder:${join(root, 'pics')}?adjust=none`);
  assert.equal(asIs.name, `folder:${join(root, 'pics')}?adjust=none`);
  assert.equal(asIs.train.count, auto.train.count);
  let light = 0;
  for (let i = 0; i < asIs.train.count; i++) if (asIs.train.images[i * 784] > 200) light++;
  assert.ok(light > 0, 'the dark-on-light pictures were left as they are');
  assert.ok(light < asIs.train.count / 2);
});

test('folder: with onBadImage error stops at the first unreadable picture, naming it', async () => {
  await assert.rejects(loadDataset(`folder:${join(root, 'pics')}?seed=9`, { onBadImage: 'error' }), /broken\.png is not an image/);
  await assert.rejects(loadDataset(`folder:${join(root, 'nope')}`), /no such directory: .*nope/);
  mkdirSync(join(root, 'flat'), { recursive: true });
  writeFileSync(join(root, 'flat', 'a.png'), await picture(1, 0).png().toBuffer());
  await assert.rejects(loadDataset(`folder:${join(root, 'flat')}`), /has no subfolders: folder: takes a subfolder per class/);
  await assert.rejects(loadDataset(`folder:${join(root, 'pics')}?size=2`), /size must be N or HxW with sides from 8 to 256/);
  await assert.rejects(loadDataset(`folder:${join(root, 'pics')}?colour=1`), /unknown option 'colour'/);
});

test('manifest: CSV and JSONL with paths relative to the manifest, a split column, and clear errors', async () => {
  const rows = ['path,label,split'];
  const lines: string[] = [];
  for (const [name] of CLASSES) {
    for (const f of readdirSync(join(root, 'pics', name)).filter((f) => /^\d+\.(png|jpg|webp)$/.test(f))) {
      const split = Number(f.split('.')[0]) < 5 ? 'test' : 'train';
      rows.push(`"pics/${name}/${f}","${name === 'bag' ? 'hand, bag' : name}",${split}`);
      lines.push(JSON.stringify({ image: `pics/${name}/${f}`, class: name, split }));
    }
  }
  writeFileSync(join(root, 'm.csv'), rows.join('\n') + '\n');
  writeFileSync(join(root, 'm.jsonl'), lines.join('\n') + '\n');
  const csv = await loadDataset(`manifest:${join(root, 'm.csv')}`);
  assert.deepEqual(csv.classNames, ['hand, bag', 'sneaker', 'trouser'], 'quoted fields keep their commas');
  const expectedTest = rows.slice(1).filter((r) => r.endsWith(',test')).length;
  assert.deepEqual((csv as ImageDataset).skipped, []);
  assert.equal(csv.test.count, expectedTest, 'the manifest decides the split');
  const jsonl = await loadDataset(`manifest:${join(root, 'm.jsonl')}`);
  assert.equal(jsonl.test.count, expectedTest);
  assert.deepEqual(jsonl.test.images, csv.test.images);

  const bad = (name: string, text: string) => {
    writeFileSync(join(root, name), text);
    return loadDataset(`manifest:${join(root, name)}`);
  };
  await assert.rejects(bad('a.csv', 'path,split\npics/bag/1.webp,train\n'), /a\.csv row 1: no class/);
  await assert.rejects(bad('b.csv', 'path,label,split\npics/bag/1.webp,bag,validation\n'), /split must be train or test, got 'validation'/);
  await assert.rejects(bad('c.csv', 'path,label\npics/bag/1.webp,bag,extra\n'), /c\.csv line 2: 3 fields, the header has 2/);
  await assert.rejects(bad('e.jsonl', '{"path": "x.png", "label": 1}\n[1]\n'), /e\.jsonl line 2: not a JSON object/);
  await assert.rejects(loadDataset(`manifest:${join(root, 'none.csv')}`), /no such file/);
});

test('manifest tags: JSONL arrays and CSV fields separated by ; give the same tag sets, kept by the cache; bad tags are named', async () => {
  // Bags are tagged "bag" and "leather" or "canvas"; sneakers "shoe"; trousers none (empty sets).
  const tagsOf = (name: string, k: number) => (name === 'bag' ? ['bag', k % 2 ? 'leather' : 'canvas'] : name === 'sneaker' ? ['shoe', 'shoe'] : []);
  const rows = ['path,label,tags,split'];
  const lines: string[] = [];
  const expected = new Map<string, string[]>();
  for (const [name] of CLASSES) {
    for (const f of readdirSync(join(root, 'pics', name)).filter((f) => /^\d+\.(png|jpg|webp)$/.test(f))) {
      const k = Number(f.split('.')[0]);
      const split = k < 5 ? 'test' : 'train';
      rows.push(`pics/${name}/${f},${name}, ${tagsOf(name, k).join(' ; ')} ,${split}`);
      lines.push(JSON.stringify({ path: `pics/${name}/${f}`, label: name, split, ...(name === 'trouser' && k % 2 ? {} : { tags: tagsOf(name, k) }) }));
      expected.set(`${name}/${k}`, [...new Set(tagsOf(name, k))].sort());
    }
  }
  writeFileSync(join(root, 't.csv'), rows.join('\n') + '\n');
  writeFileSync(join(root, 't.jsonl'), lines.join('\n') + '\n');
  const csv = await loadDataset(`manifest:${join(root, 't.csv')}`);
  const jsonl = await loadDataset(`manifest:${join(root, 't.jsonl')}`);
  assert.deepEqual(csv.tagNames, ['bag', 'canvas', 'leather', 'shoe']);
  for (const ds of [csv, jsonl]) {
    assert.deepEqual(ds.tagNames, csv.tagNames);
    for (const split of [ds.train, ds.test]) {
      validateSplit(split, 3, 'tagged', 4);
      for (let i = 0; i < split.count; i++) {
        const names = Array.from(tagsOfSplit(split, i), (t) => ds.tagNames![t]);
        const cls = ds.classNames[split.labels[i]];
        if (cls === 'sneaker') assert.deepEqual(names, ['shoe'], 'repeats are dropped');
        else if (cls === 'trouser') assert.deepEqual(names, [], 'no tags: an empty set');
        else assert.ok(names.length === 2 && names[0] === 'bag' && ['canvas', 'leather'].includes(names[1]), names.join());
      }
    }
  }
  assert.equal(datasetHash(jsonl), datasetHash(csv), 'the same pictures, classes, splits and tags');
  // The cache keeps the tags; an untagged manifest of the same pictures is another dataset.
  const again = await loadDataset(`manifest:${join(root, 't.csv')}`, { onProgress: () => assert.fail('decoded again') });
  assert.equal(datasetHash(again), datasetHash(csv));
  assert.deepEqual(again.test.tagIds, csv.test.tagIds);
  writeFileSync(join(root, 'u.csv'), rows.map((r) => r.split(',').filter((_, j) => j !== 2).join(',')).join('\n') + '\n');
  const untagged = await loadDataset(`manifest:${join(root, 'u.csv')}`);
  assert.equal(untagged.tagNames, undefined);
  assert.equal(untagged.train.tagStart, undefined);

  const bad = (name: string, text: string) => {
    writeFileSync(join(root, name), text);
    return loadDataset(`manifest:${join(root, name)}`);
  };
  await assert.rejects(bad('t1.jsonl', '{"path":"pics/bag/1.webp","label":"bag","tags":"bag;leather"}\n'), /t1\.jsonl line 1: tags must be an array of strings, got "bag;leather"/);
  await assert.rejects(bad('t2.jsonl', '{"path":"pics/bag/1.webp","label":"bag","tags":["bag",3]}\n'), /t2\.jsonl line 1: tags must be strings, got 3/);
  await assert.rejects(bad('t3.jsonl', '{"path":"pics/bag/1.webp","tags":["bag","leather"]}\n'), /t3\.jsonl line 1: no class .*a picture with tags still needs its class/);
  await assert.rejects(bad('t4.csv', 'path,tags\npics/bag/1.webp,bag;leather\n'), /t4\.csv row 1: no class .*a picture with tags still needs its class/);
  await assert.rejects(bad('t5.jsonl', '{"path":"pics/bag/1.webp","label":"bag","phrase":"a leather bag"}\n'), /phrases per picture are not supported yet/);
});

test('spec parsing and CSV fields', () => {
  const s = parseImageSetSpec('folder:/x/y?size=64&test=0.25&seed=2');
  assert.deepEqual(s, { kind: 'folder', path: '/x/y', height: 64, width: 64, testFraction: 0.25, seed: 2, channels: 1, adjust: 'auto' });
  assert.equal(imageSetName(s), 'folder:/x/y?size=64&test=0.25&seed=2');
  assert.equal(imageSetName(parseImageSetSpec('folder:/x/y?adjust=none')), 'folder:/x/y?adjust=none');
  assert.throws(() => parseImageSetSpec('folder:/x/y?adjust=invert'), /adjust must be auto .* or none/);
  assert.equal(imageSetName(parseImageSetSpec('manifest:/m.csv?size=28')), 'manifest:/m.csv');
  assert.deepEqual(splitCsvLine('a,"b, c","d ""e"""'), ['a', 'b, c', 'd "e"']);
});

test('train on a folder of pictures, then eval finds the same dataset from the run record', { timeout: 300_000 }, () => {
  const out = join(root, 'run');
  const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: cache } });
  const t = cli('train', '--model', 'pse-star', '--dataset', `folder:${join(root, 'pics')}`, '--image-size', '28', '--latent', '4', '--steps', '400', '--batch', '20', '--out', out, '--quiet');
  assert.equal(t.status, 0, t.stderr);
  const meta = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8'));
  assert.equal(meta.dataset.name, `folder:${join(root, 'pics')}`);
  assert.deepEqual(meta.classNames, ['bag', 'sneaker', 'trouser']);
  assert.equal(meta.dataset.skipped.length, 1);
  const e = cli('eval', '--run', out, '--no-generation', '--triplets', '0', '--json');
  assert.equal(e.status, 0, e.stderr);
  const r = JSON.parse(e.stdout);
  assert.equal(r.testImages, 18);
  assert.ok(r.annotationAccuracy >= 0.85, `annotation ${r.annotationAccuracy}`);
  const bad = cli('train', '--model', 'vae', '--dataset', 'fashion-mnist-subset', '--image-size', '32', '--steps', '1', '--out', join(root, 'x'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--image-size applies to folder:DIR and manifest:FILE datasets/);
});
