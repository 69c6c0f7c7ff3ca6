/**
 * The CLI with real pictures, on a small PSE* run trained here: a dark-on-light sneaker saved as
 * PNG, JPEG and WebP is annotated as a sneaker with one note line; bad pictures give one error
 * line and exit 2; `generate` grids are captioned and `similar --out` frames the query.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { PNG } from 'pngjs';
import { imagesToFloat } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { annotateImage, loadImageModel } from '../src/runs/runs.js';
import { trainTinyRun } from './server.fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'probsem-image-cli-'));
let run: string;
/** Test-split id of a sneaker the run labels correctly as it is (light on dark, 28×28). */
let sneakerId: number;
let sneakerPixels: Float32Array;

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, PROBSEM_CACHE: dir } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(async () => {
  run = await trainTinyRun();
  const { model, meta } = loadImageModel(run);
  const ds = await loadDataset('fashion-mnist-subset');
  const sneaker = meta.classNames.indexOf('Sneaker');
  for (let id = 0; id < ds.test.count; id++) {
    if (ds.test.labels[id] !== sneaker) continue;
    const pixels = imagesToFloat(ds.test, [id], 784);
    const top = annotateImage(model, meta, pixels)[0];
    if (top.label === 'Sneaker' && top.probability > 0.6) {
      sneakerId = id;
      sneakerPixels = pixels;
      break;
    }
  }
  assert.ok(sneakerPixels, 'the run recognises some test sneaker');
});

/** The sneaker dark on light, 84×84 RGB, as a photo or scan would be. */
function darkOnLight() {
  const raw = Buffer.alloc(84 * 84 * 3);
  for (let i = 0; i < 84 * 84; i++) raw.fill(Math.round(255 * (1 - sneakerPixels[Math.floor(i / 84 / 3) * 28 + Math.floor((i % 84) / 3)])), 3 * i, 3 * i + 3);
  return sharp(raw, { raw: { width: 84, height: 84, channels: 3 } });
}

const sneakerProbability = (out: string) => (JSON.parse(out).labels as { label: string; probability: number }[]).find((l) => l.label === 'Sneaker')?.probability ?? 0;

test('annotate: a dark-on-light sneaker as PNG, JPEG and WebP is a sneaker; one note says what was converted', async () => {
  const files: [string, Buffer][] = [
    ['sneaker.png', await darkOnLight().png().toBuffer()],
    ['sneaker.jpg', await darkOnLight().jpeg({ quality: 90 }).toBuffer()],
    ['sneaker.webp', await darkOnLight().webp({ quality: 90 }).toBuffer()],
  ];
  for (const [name, buf] of files) {
    const file = join(dir, name);
    writeFileSync(file, buf);
    const r = cli('annotate', '--run', run, file, '--json');
    assert.equal(r.code, 0, r.err);
    const labels = JSON.parse(r.out).labels as { label: string }[];
    assert.equal(labels[0].label, 'Sneaker', `${name}: ${r.out}`);
    assert.equal(r.err, `note: ${file} is 84×84 grey; converted to 28×28 grey, inverted (dark-on-light detected)\n`);
  }
  // Forced off, the same picture is far less of a sneaker: the inversion is what makes it work.
  const jpg = join(dir, 'sneaker.jpg');
  const auto = sneakerProbability(cli('annotate', '--run', run, jpg, '--json', '--top', '10').out);
  const off = cli('annotate', '--run', run, jpg, '--json', '--top', '10', '--no-invert');
  assert.equal(off.code, 0, off.err);
  assert.match(off.err, /not inverted although dark-on-light \(as asked\)/);
  assert.ok(sneakerProbability(off.out) < auto - 0.3, `Sneaker ${sneakerProbability(off.out)} with --no-invert vs ${auto} detected`);
});

test('annotate: bad pictures and flags give one error line and exit 2', async () => {
  const png = await darkOnLight().png().toBuffer();
  const cases: [string, Buffer | null, string[], RegExp][] = [
    ['cut.png', png.subarray(0, png.length - 30), [], /^probsem: \S+cut\.png is not a readable image \(corrupt or truncated PNG\)\n$/],
    ['photo.jpg', Buffer.from('this is a text file'), [], /^probsem: \S+photo\.jpg is not an image: it starts with none of the PNG, JPEG, WebP and GIF signatures\n$/],
    ['scan.bmp', Buffer.from('BM\0\0\0\0\0\0\0\0'), [], /^probsem: \S+scan\.bmp is a BMP image; probsem reads PNG, JPEG, WebP and GIF \(convert it to one of those\)\n$/],
    ['ok.png', png, ['--invert', '--no-invert'], /^probsem: give at most one of --invert and --no-invert\n$/],
  ];
  for (const [name, buf, flags, re] of cases) {
    const file = join(dir, name);
    if (buf) writeFileSync(file, buf);
    const r = cli('annotate', '--run', run, file, ...flags);
    assert.equal(r.code, 2, `${name}: exit ${r.code}, ${r.err}`);
    assert.match(r.err, re);
  }
});

test('generate: rows are captioned with the label or phrase; similar --out frames the query tile', () => {
  const scan = (file: string) => PNG.sync.read(readFileSync(file));
  const ink = (p: PNG, x0: number, x1: number, y0: number, y1: number) => {
    let n = 0;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (p.data[(y * p.width + x) * 4] === 255 && p.data[(y * p.width + x) * 4 + 2] === 255) n++;
    return n;
  };
  // 28×28 at scale 2 with 2-pixel padding: tiles 56 wide, captions at scale 2 (12 pixels a character).
  const byWords = join(dir, 'words.png');
  let r = cli('generate', '--run', run, '--words', 'Sneaker, Bag', '--n', '3', '--out', byWords);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /one row each, captioned/);
  const words = scan(byWords);
  const captionW = 'Sneaker'.length * 12 - 2 + 2 * 12;
  assert.deepEqual([words.width, words.height], [captionW + 3 * 56 + 4 * 2, 2 * 56 + 3 * 2]);
  assert.ok(ink(words, 0, captionW, 2, 58) > 50, 'row 1 caption');
  assert.ok(ink(words, 0, captionW, 60, 116) > 30, 'row 2 caption');
  // 'Bag' is shorter than 'Sneaker': its row's caption ends well before the column does.
  assert.equal(ink(words, 12 + 3 * 12, captionW, 60, 116), 0);

  const byLabel = join(dir, 'label.png');
  r = cli('generate', '--run', run, '--label', 'Trouser', '--n', '4', '--cols', '2', '--out', byLabel);
  assert.equal(r.code, 0, r.err);
  const label = scan(byLabel);
  const trouserW = 'Trouser'.length * 12 - 2 + 2 * 12;
  assert.deepEqual([label.width, label.height], [trouserW + 2 * 56 + 3 * 2, 2 * 56 + 3 * 2]);
  for (const y0 of [2, 60]) assert.ok(ink(label, 0, trouserW, y0, y0 + 56) > 50, `caption in the row at ${y0}`);

  const grid = join(dir, 'similar.png');
  r = cli('similar', '--run', run, '--image', join(dir, 'sneaker.png'), '--k', '4', '--out', grid);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^note: \S+sneaker\.png is 84×84 grey; converted to 28×28 grey, inverted \(dark-on-light detected\)\n$/);
  assert.match(r.out, /wrote the query \(framed\) and 4 images/);
  const sim = scan(grid);
  assert.deepEqual([sim.width, sim.height], [5 * 56 + 6 * 2, 56 + 2 * 2]);
  const px = (x: number, y: number) => Array.from(sim.data.subarray((y * sim.width + x) * 4, (y * sim.width + x) * 4 + 3));
  assert.deepEqual(px(0, 0), [255, 150, 0], 'the query is framed');
  assert.deepEqual(px(30, 59), [255, 150, 0]);
  assert.deepEqual(px(58 + 30, 59), [96, 96, 96], 'the first result is not');
  // The query tile is the picture as the model saw it: the sneaker light on black again.
  let err = 0;
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) err += Math.abs(px(2 + 2 * x, 2 + 2 * y)[0] / 255 - sneakerPixels[y * 28 + x]);
  assert.ok(err / 784 < 0.03, `query tile vs test image ${sneakerId}: mean error ${err / 784}`);
});
