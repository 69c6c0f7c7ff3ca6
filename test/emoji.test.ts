/** The emoji dataset (src/data/emoji.ts): fake packages in the real layout, then the real ones. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { datasetHash, tagsOf } from '../src/data/dataset.js';
import { type EmojiDataset, emojiName, loadEmoji, packageDir, parseEmojiSpec } from '../src/data/emoji.js';
import { loadDataset } from '../src/data/registry.js';
import { labelPhrases, loadWordSource } from '../src/text/labels.js';

const root = mkdtempSync(join(tmpdir(), 'probsem-emoji-'));

/** Six emoji in two groups and three subgroups; every style draws each emoji as a flat colour square with a transparent border. */
const EMOJI = [
  { hexcode: '1F600', label: 'grinning face', tags: ['face', 'grin'], group: 0, subgroup: 0, colour: [250, 200, 0] },
  { hexcode: '1F603', label: 'grinning face with big eyes', tags: ['face', 'mouth', 'open'], group: 0, subgroup: 0, colour: [240, 190, 10] },
  { hexcode: '1F60D', label: 'smiling face with heart-eyes', tags: ['eye', 'face', 'love'], group: 0, subgroup: 1, colour: [230, 60, 80] },
  { hexcode: '1F618', label: 'face blowing a kiss', tags: ['face', 'kiss'], group: 0, subgroup: 1, colour: [220, 70, 90] },
  { hexcode: '1F436', label: 'dog face', tags: ['Dog', 'face', 'pet'], group: 1, subgroup: 2, colour: [140, 90, 40] },
  { hexcode: '2764-FE0F', label: 'red heart', tags: ['heart'], group: 1, subgroup: 2, colour: [200, 0, 0] },
];

async function fakePackages(dir: string, styles: string[], opts: { skip?: Record<string, string> } = {}) {
  const nm = join(dir, 'node_modules');
  mkdirSync(join(nm, 'emojibase-data', 'en'), { recursive: true });
  mkdirSync(join(nm, 'emojibase-data', 'meta'), { recursive: true });
  writeFileSync(join(nm, 'emojibase-data', 'package.json'), JSON.stringify({ name: 'emojibase-data', version: '0.0.1' }));
  const data = [{ label: 'regional indicator A', hexcode: '1F1E6' }, ...EMOJI.map(({ colour: _, ...e }) => e), { label: 'light skin tone', hexcode: '1F3FB', group: 2, subgroup: 3 }];
  writeFileSync(join(nm, 'emojibase-data', 'en', 'data.json'), JSON.stringify(data));
  writeFileSync(
    join(nm, 'emojibase-data', 'meta', 'groups.json'),
    JSON.stringify({ groups: { 0: 'smileys-emotion', 1: 'animals-nature', 2: 'component' }, subgroups: { 0: 'face-smiling', 1: 'face-affection', 2: 'animal-mammal', 3: 'skin-tone' } }),
  );
  for (const [s, style] of styles.entries()) {
    const pkg = join(nm, `emoji-datasource-${style}`);
    mkdirSync(join(pkg, 'img', style, '64'), { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: `emoji-datasource-${style}`, version: '0.0.1' }));
    const list = [];
    for (const e of EMOJI) {
      // The datasource spells the heart without its presentation selector, as the real one does for some emoji.
      const unified = e.hexcode === '2764-FE0F' ? '2764' : e.hexcode;
      const image = `${unified.toLowerCase()}.png`;
      const has = opts.skip?.[style] !== e.hexcode;
      list.push({ unified, non_qualified: null, image, [`has_img_${style}`]: has });
      if (!has) continue;
      const [r, g, b] = e.colour.map((c) => Math.max(0, c - 20 * s));
      const px = Buffer.alloc(64 * 64 * 4);
      for (let y = 0; y < 64; y++) {
        for (let x = 0; x < 64; x++) {
          const o = (y * 64 + x) * 4;
          const inside = x >= 8 && x < 56 && y >= 8 && y < 56;
          px.set(inside ? [r, g, b, 255] : [0, 0, 0, 0], o);
        }
      }
      writeFileSync(join(pkg, 'img', style, '64', image), await sharp(px, { raw: { width: 64, height: 64, channels: 4 } }).png().toBuffer());
    }
    writeFileSync(join(pkg, 'emoji.json'), JSON.stringify(list));
  }
  return dir;
}

test('emoji specs: defaults, styles, a test style or fraction, sizes; bad options are named', () => {
  assert.deepEqual(parseEmojiSpec('emoji'), { styles: ['google'], test: 'twitter', height: 32, width: 32, channels: 3, seed: 0 });
  const s = parseEmojiSpec('emoji?styles=google,apple&test=0.25&size=16x24&channels=1&seed=3');
  assert.deepEqual(s, { styles: ['google', 'apple'], test: 0.25, height: 16, width: 24, channels: 1, seed: 3 });
  assert.equal(emojiName(s), 'emoji?styles=google,apple&test=0.25&size=16x24&channels=1&seed=3');
  assert.equal(emojiName(parseEmojiSpec('emoji?size=32&test=twitter')), 'emoji');
  assert.throws(() => parseEmojiSpec('emoji?styles=noto'), /unknown style 'noto'/);
  assert.throws(() => parseEmojiSpec('emoji?test=google'), /test style 'google' is also a training style/);
  assert.throws(() => parseEmojiSpec('emoji?test=1.5'), /fraction in \(0, 1\)/);
  assert.throws(() => parseEmojiSpec('emoji?size=128'), /sides from 8 to 64/);
  assert.throws(() => parseEmojiSpec('emoji?colour=1'), /unknown option 'colour'/);
});

test('emoji from packages: subgroups as classes, tags as sets, groups as the hierarchy, cross-style split, cached; missing packages and pictures are named', async () => {
  const dir = await fakePackages(join(root, 'a'), ['google', 'twitter'], { skip: { twitter: '1F618' } });
  const cacheDir = join(root, 'cache-a');
  const notices: string[] = [];
  const ds = await loadEmoji('emoji?size=8', { roots: [dir], cacheDir, onNotice: (m) => notices.push(m) });
  assert.deepEqual(ds.classNames, ['face-smiling', 'face-affection', 'animal-mammal'], 'the component group (skin tones) and ungrouped entries are left out');
  assert.equal(ds.train.count, 6);
  assert.equal(ds.test.count, 5);
  assert.deepEqual(ds.missing, { twitter: 1 });
  assert.match(notices.join('\n'), /twitter 1/);
  assert.deepEqual([...ds.train.labels], [0, 0, 1, 1, 2, 2]);
  assert.deepEqual(ds.hierarchy, { parents: ['smileys-emotion', 'animals-nature'], parentOf: [0, 0, 1] });
  assert.equal(ds.channels, 3);
  // Tags are lower-cased, sorted into one vocabulary, and each picture carries its emoji's set.
  assert.ok(ds.tagNames!.includes('dog') && !ds.tagNames!.includes('Dog'));
  assert.deepEqual([...tagsOf(ds.train, 4)].map((t) => ds.tagNames![t]), ['dog', 'face', 'pet']);
  assert.deepEqual(ds.emoji.test.hexcode, ['1F600', '1F603', '1F60D', '1F436', '2764-FE0F']);
  assert.deepEqual(ds.emoji.test.style, Array(5).fill('twitter'));
  assert.equal(ds.labelOf['1F436'], 'dog face');
  // The border is transparent, composited on white; the square keeps its colour (google: as drawn).
  const px = (i: number, y: number, x: number) => [...ds.train.images.subarray((i * 64 + y * 8 + x) * 3, (i * 64 + y * 8 + x) * 3 + 3)];
  assert.ok(px(5, 0, 0).every((v) => v >= 250), `corner ${px(5, 0, 0)}`);
  px(5, 4, 4).forEach((v, c) => assert.ok(Math.abs(v - [200, 0, 0][c]) <= 3, `centre ${px(5, 4, 4)}`));
  // Cached: a second load decodes nothing and gives the same data.
  const files = readdirSync(join(cacheDir, 'datasets'));
  assert.equal(files.length, 2);
  const again = await loadEmoji('emoji?size=8', { roots: [dir], cacheDir });
  assert.equal(datasetHash(again), datasetHash(ds));
  // A damaged cache file is noticed and decoded again, never used.
  truncateSync(join(cacheDir, 'datasets', files[0]), 10);
  const damaged: string[] = [];
  const redone = await loadEmoji('emoji?size=8', { roots: [dir], cacheDir, onNotice: (m) => damaged.push(m) });
  assert.match(damaged.join('\n'), /wrong size/);
  assert.equal(datasetHash(redone), datasetHash(ds));
  assert.equal(statSync(join(cacheDir, 'datasets', files[0])).size, (files[0].includes('google') ? 6 : 5) * 8 * 8 * 3);
  // Without the packages the error names them and how to install them.
  const empty = mkdtempSync(join(tmpdir(), 'probsem-noemoji-'));
  await assert.rejects(loadEmoji('emoji?styles=apple&test=0.5', { roots: [empty], cacheDir }), (e: Error) => {
    if (packageDir('emoji-datasource-apple') !== null) return true; // installed beside probsem after all
    assert.match(e.message, /needs the npm package emoji-datasource-apple: run 'npm install --no-save emoji-datasource-apple'/);
    return true;
  });
});

test('emoji split by emoji: a seeded share of each subgroup held out in every style, disjoint from training', async () => {
  const dir = await fakePackages(join(root, 'b'), ['google', 'twitter']);
  const ds = await loadEmoji('emoji?styles=google,twitter&test=0.5&size=8&seed=1', { roots: [dir], cacheDir: join(root, 'cache-b') });
  const trainCodes = new Set(ds.emoji.train.hexcode);
  const testCodes = new Set(ds.emoji.test.hexcode);
  assert.equal(testCodes.size, 3, 'one emoji of each two-member subgroup');
  for (const c of testCodes) assert.ok(!trainCodes.has(c));
  assert.equal(ds.train.count, 6);
  assert.equal(ds.test.count, 6);
  assert.deepEqual([...new Set(ds.emoji.test.style)].sort(), ['google', 'twitter']);
  const other = await loadEmoji('emoji?styles=google,twitter&test=0.5&size=8&seed=2', { roots: [dir], cacheDir: join(root, 'cache-b') });
  const same = await loadEmoji('emoji?styles=google,twitter&test=0.5&size=8&seed=1', { roots: [dir], cacheDir: join(root, 'cache-b') });
  assert.deepEqual(same.emoji.test.hexcode, ds.emoji.test.hexcode, 'seeded');
  assert.ok(other.emoji.test.hexcode.length === 6);
});

test('the real emoji packages: about 1,900 emoji in 98 subgroups, google against twitter, every subgroup phrased in WordNet', { skip: packageDir('emoji-datasource-twitter') === null ? 'emoji-datasource-twitter is not installed (npm install in a clone of probsem installs it)' : false }, async () => {
  const ds = (await loadDataset('emoji?size=16')) as EmojiDataset;
  assert.ok(ds.train.count > 1800 && ds.test.count > 1800, `${ds.train.count} / ${ds.test.count}`);
  assert.equal(ds.classNames.length, 98);
  assert.ok(ds.tagNames!.length > 3000);
  const i = ds.emoji.train.hexcode.indexOf('1F436');
  assert.equal(ds.classNames[ds.train.labels[i]], 'animal-mammal');
  assert.ok([...tagsOf(ds.train, i)].map((t) => ds.tagNames![t]).includes('dog'));
  assert.equal(ds.hierarchy!.parents[ds.hierarchy!.parentOf[ds.classNames.indexOf('face-smiling')]], 'smileys-emotion');
  const wv = await loadWordSource('wordnet');
  for (const p of labelPhrases(ds.classNames)) assert.doesNotThrow(() => wv.phrase(p), p);
});
