/** The picture decoder (src/data/image-decode.ts), polarity detection, the bitmap font and PNG grids. Fixtures are made with sharp here. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { PNG } from 'pngjs';
import { ProbsemError } from '../src/core/errors.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { loadDataset } from '../src/data/registry.js';
import { decodeImage, describeConversion, sniffImageFormat } from '../src/data/image-decode.js';
import { detectPolarity } from '../src/data/polarity.js';
import { GLYPH_HEIGHT, GLYPH_WIDTH, drawText, fontText, textWidth } from '../src/data/font.js';
import { encodeGridPng } from '../src/data/png.js';
import { JPEG_COLOUR_45x37, JPEG_GREY_56 } from './server.jpegs.js';

/** A Fashion-MNIST test sneaker (light on dark, 28×28, values in [0, 1]). */
let sneaker: Float32Array;

before(async () => {
  const ds = await loadDataset('fashion-mnist-subset');
  const id = Array.from(ds.test.labels).indexOf(7);
  sneaker = imagesToFloat(ds.test, [id], 784);
});

/** The 28×28 image as an RGB picture: scaled up `k`× (nearest), optionally dark-on-light and tinted. */
function picture(img: Float32Array, o: { k?: number; darkOnLight?: boolean; tint?: [number, number, number] } = {}) {
  const k = o.k ?? 1;
  const tint = o.tint ?? [1, 1, 1];
  const side = 28 * k;
  const raw = Buffer.alloc(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const v = img[Math.floor(y / k) * 28 + Math.floor(x / k)];
      const p = o.darkOnLight ? 1 - v : v;
      for (let c = 0; c < 3; c++) raw[(y * side + x) * 3 + c] = Math.round(255 * (o.darkOnLight ? 1 - (1 - p) * tint[c] : p * tint[c]));
    }
  }
  return sharp(raw, { raw: { width: side, height: side, channels: 3 } });
}

const meanAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
};

async function rejects(buf: Uint8Array, code: string, re: RegExp, max?: number) {
  await assert.rejects(decodeImage(buf, { height: 28, width: 28, source: 'photo.x', maxPixels: max }), (e: Error) => {
    assert.ok(e instanceof ProbsemError, `a ProbsemError, got ${e}`);
    assert.equal(e.code, code);
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /vips|libpng|gifload|webp:|Input buffer|\n/i, 'no library internals, one line');
    return true;
  });
}

test('a 28×28 grey light-on-dark PNG goes in unchanged, with nothing to report', async () => {
  const png = await picture(sneaker).greyscale().png().toBuffer();
  const r = await decodeImage(png, { height: 28, width: 28, source: 'item.png' });
  assert.ok(meanAbs(r.pixels, sneaker) < 1 / 255, `max error ${meanAbs(r.pixels, sneaker)}`);
  assert.equal(r.conversion.format, 'PNG');
  assert.equal(r.conversion.polarity, 'light-on-dark');
  assert.equal(r.conversion.inverted, false);
  assert.equal(r.conversion.resized, false);
  assert.equal(describeConversion('item.png', r.conversion), null);
});

test('every format read: a dark-on-light 84×84 sneaker comes back as the light-on-dark 28×28 original', async () => {
  const base = picture(sneaker, { k: 3, darkOnLight: true });
  const cases: [string, Promise<Buffer>, number][] = [
    ['PNG', base.clone().png().toBuffer(), 0.02],
    ['PNG', base.clone().png().toColourspace('rgb16').toBuffer(), 0.02],
    ['JPEG', base.clone().jpeg({ quality: 85 }).toBuffer(), 0.04],
    ['JPEG', base.clone().jpeg({ quality: 85, progressive: true }).toBuffer(), 0.04],
    ['WebP', base.clone().webp({ lossless: true }).toBuffer(), 0.02],
    ['WebP', base.clone().webp({ quality: 80 }).toBuffer(), 0.05],
    ['GIF', base.clone().gif().toBuffer(), 0.04],
  ];
  for (const [format, pending, tol] of cases) {
    const buf = await pending;
    assert.deepEqual(sniffImageFormat(buf), { format });
    const r = await decodeImage(buf, { height: 28, width: 28, source: `sneaker.${format}` });
    const c = r.conversion;
    assert.equal(c.format, format);
    assert.deepEqual([c.width, c.height], [84, 84]);
    assert.equal(c.polarity, 'dark-on-light', format);
    assert.equal(c.inverted, true);
    assert.equal(c.resized, true);
    assert.equal(c.padded, false);
    assert.equal(c.colour, false, `${format}: a grey picture is grey`);
    assert.ok(r.pixels.every((v) => v >= 0 && v <= 1));
    const err = meanAbs(r.pixels, sneaker);
    assert.ok(err < tol, `${format}: mean error ${err.toFixed(4)} ≥ ${tol}`);
  }
  const png16 = await base.clone().png().toColourspace('rgb16').toBuffer();
  assert.equal((await decodeImage(png16, { height: 28, width: 28 })).conversion.bitDepth, 16);
  const prog = await base.clone().jpeg({ progressive: true }).toBuffer();
  assert.equal((await decodeImage(prog, { height: 28, width: 28 })).conversion.progressive, true);
});

test("Chromium's JPEGs: the grey 56×56 one is light-on-dark and goes in uninverted; the colour 45×37 one is fitted and padded", async () => {
  const grey = await decodeImage(Buffer.from(JPEG_GREY_56, 'base64'), { height: 28, width: 28, source: 'five.jpg' });
  assert.deepEqual([grey.conversion.width, grey.conversion.height, grey.conversion.colour], [56, 56, false]);
  assert.equal(grey.conversion.inverted, false);
  assert.ok(grey.pixels[0] < 0.05, 'dark corner');
  const mid = grey.pixels.slice(10 * 28, 18 * 28).reduce((a, b) => a + b, 0) / (8 * 28);
  assert.ok(mid > 0.2, `middle rows are bright: ${mid}`);
  assert.equal(describeConversion('five.jpg', grey.conversion), 'five.jpg is 56×56 grey; converted to 28×28 grey');
  const colour = await decodeImage(Buffer.from(JPEG_COLOUR_45x37, 'base64'), { height: 28, width: 28 });
  assert.deepEqual([colour.conversion.width, colour.conversion.height, colour.conversion.colour, colour.conversion.padded], [45, 37, true, true]);
  assert.ok(colour.pixels.every((v) => v >= 0 && v <= 1));
});

test('invert: forced either way; the note says what happened', async () => {
  const jpg = await picture(sneaker, { k: 3, darkOnLight: true, tint: [1, 0.6, 0.3] }).jpeg().toBuffer();
  const auto = await decodeImage(jpg, { height: 28, width: 28, source: 'photo.jpg' });
  assert.equal(auto.conversion.colour, true);
  assert.equal(auto.conversion.colourDropped, true);
  assert.equal(describeConversion('photo.jpg', auto.conversion), 'photo.jpg is 84×84 RGB; converted to 28×28 grey, inverted (dark-on-light detected)');
  const kept = await decodeImage(jpg, { height: 28, width: 28, invert: false });
  assert.equal(kept.conversion.inverted, false);
  assert.match(describeConversion('photo.jpg', kept.conversion)!, /not inverted although dark-on-light \(as asked\)$/);
  // Not inverted, the background is light: the two are near complements of each other.
  assert.ok(meanAbs(kept.pixels, auto.pixels.map((v) => 1 - v)) < 0.05);
  const light = await picture(sneaker).png().toBuffer();
  const forced = await decodeImage(light, { height: 28, width: 28, invert: true });
  assert.equal(forced.conversion.inverted, true);
  assert.equal(forced.conversion.invertDecision, 'asked');
  assert.ok(meanAbs(forced.pixels, sneaker.map((v) => 1 - v)) < 1 / 255);
  assert.match(describeConversion('a.png', forced.conversion)!, /^a\.png is 28×28 grey; converted to 28×28 grey, inverted \(as asked\)$/);
});

test('RGB output keeps colour; grey output drops it and says so', async () => {
  const red = await sharp({ create: { width: 28, height: 28, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite([{ input: { create: { width: 10, height: 10, channels: 3, background: { r: 230, g: 20, b: 10 } } }, left: 9, top: 9 }])
    .png()
    .toBuffer();
  const rgb = await decodeImage(red, { height: 28, width: 28, channels: 3 });
  assert.equal(rgb.pixels.length, 28 * 28 * 3);
  const at = (y: number, x: number) => Array.from(rgb.pixels.subarray((y * 28 + x) * 3, (y * 28 + x) * 3 + 3)).map((v) => Math.round(v * 255));
  assert.deepEqual(at(14, 14), [230, 20, 10]);
  assert.deepEqual(at(0, 0), [0, 0, 0]);
  assert.equal(rgb.conversion.colourDropped, false);
  assert.deepEqual(rgb.conversion.output, { height: 28, width: 28, channels: 3 });
  const grey = await decodeImage(red, { height: 28, width: 28 });
  assert.ok(Math.abs(grey.pixels[14 * 28 + 14] - (0.299 * 230 + 0.587 * 20 + 0.114 * 10) / 255) < 1e-6);
  assert.match(describeConversion('red.png', grey.conversion)!, /^red\.png is 28×28 RGB; converted to 28×28 grey$/);
});

test('transparency: dark content is composited on white, light content on black; both end light-on-dark', async () => {
  // A 40×40 square in the middle of a transparent 56×56 canvas.
  const square = async (v: number) =>
    sharp({ create: { width: 56, height: 56, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .composite([{ input: { create: { width: 28, height: 28, channels: 4, background: { r: v, g: v, b: v, alpha: 1 } } }, left: 14, top: 14 }])
      .png()
      .toBuffer();
  for (const [v, on] of [[20, 'white'], [240, 'black']] as const) {
    const r = await decodeImage(await square(v), { height: 28, width: 28, source: 'cut-out.png' });
    assert.equal(r.conversion.transparent, true);
    assert.equal(r.conversion.alphaOn, on);
    assert.equal(r.conversion.inverted, on === 'white');
    assert.ok(r.pixels[0] < 0.02, `background dark (${r.pixels[0]})`);
    assert.ok(r.pixels[14 * 28 + 14] > 0.85, `content light (${r.pixels[14 * 28 + 14]})`);
    assert.match(describeConversion('cut-out.png', r.conversion)!, new RegExp(`grey with transparency; converted to 28×28 grey, transparency on ${on}`));
  }
});

test('aspect kept: a wide picture is fitted and padded with its own background; grey paper becomes black', async () => {
  // 120×60 grey paper (200) with a dark 30×30 square in the middle.
  const wide = await sharp({ create: { width: 120, height: 60, channels: 3, background: { r: 200, g: 200, b: 200 } } })
    .composite([{ input: { create: { width: 30, height: 30, channels: 3, background: { r: 10, g: 10, b: 10 } } }, left: 45, top: 15 }])
    .jpeg({ quality: 95 })
    .toBuffer();
  const r = await decodeImage(wide, { height: 28, width: 28, source: 'wide.jpg' });
  assert.equal(r.conversion.padded, true);
  assert.equal(r.conversion.levelled, true);
  // Fitted to 28×14, centred: rows 0–6 and 21–27 are padding.
  for (const y of [0, 6, 21, 27]) for (const x of [0, 13, 27]) assert.ok(r.pixels[y * 28 + x] === 0, `padding (${x}, ${y}) = ${r.pixels[y * 28 + x]}`);
  assert.ok(r.pixels[7 * 28 + 1] < 0.05, 'the paper is black');
  assert.ok(r.pixels[14 * 28 + 14] > 0.9, 'the square is white');
  assert.equal(
    describeConversion('wide.jpg', r.conversion),
    'wide.jpg is 120×60 grey; converted to 28×28 grey, padded to keep the aspect ratio, inverted (dark-on-light detected), background darkened to black',
  );
});

test('EXIF orientation is applied; an animated GIF gives its first frame', async () => {
  const tall = await sharp({ create: { width: 40, height: 20, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const r = await decodeImage(tall, { height: 28, width: 28 });
  assert.deepEqual([r.conversion.width, r.conversion.height], [20, 40]);
  const frame = (v: number) => sharp({ create: { width: 28, height: 28, channels: 3, background: { r: v, g: v, b: v } } }).png().toBuffer();
  const gif = await sharp([await frame(0), await frame(255)], { join: { animated: true } }).gif().toBuffer();
  const g = await decodeImage(gif, { height: 28, width: 28, invert: false });
  assert.equal(g.conversion.frames, 2);
  assert.ok(g.pixels.every((v) => v === 0), 'the first (black) frame');
  assert.match(describeConversion('anim.gif', g.conversion)!, /first of 2 frames/);
});

test('bad input: one plain ProbsemError line naming the file and the problem', async () => {
  const png = await picture(sneaker).png().toBuffer();
  const jpg = await picture(sneaker, { k: 2 }).jpeg().toBuffer();
  const webp = await picture(sneaker, { k: 2 }).webp().toBuffer();
  const gif = await picture(sneaker).gif().toBuffer();
  await rejects(new Uint8Array(0), 'DATA_FORMAT', /^photo\.x is empty$/);
  await rejects(Buffer.from('hello, I am text'), 'DATA_FORMAT', /^photo\.x is not an image: it starts with none of the PNG, JPEG, WebP and GIF signatures$/);
  await rejects(Buffer.from('BM\0\0\0\0\0\0'), 'UNSUPPORTED_IMAGE', /^photo\.x is a BMP image; probsem reads PNG, JPEG, WebP and GIF/);
  await rejects(Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'), 'UNSUPPORTED_IMAGE', /is a SVG image/);
  await rejects(Buffer.from('II*\0xxxxxxxx'), 'UNSUPPORTED_IMAGE', /is a TIFF image/);
  for (const [buf, format] of [[png, 'PNG'], [jpg, 'JPEG'], [webp, 'WebP'], [gif, 'GIF']] as const) {
    for (const cut of [0.3, 0.7]) {
      await rejects(buf.subarray(0, Math.floor(buf.length * cut)), 'DATA_FORMAT', new RegExp(`^photo\\.x is not a readable image \\(corrupt or truncated ${format}\\)$`));
    }
  }
  // pngjs's old complaint about a truncated stream must not come back.
  await rejects(png.subarray(0, png.length - 20), 'DATA_FORMAT', /corrupt or truncated PNG/);
  // A header declaring a huge picture is refused before decoding (CRC left wrong on purpose).
  const huge = Buffer.from(png);
  huge.writeUInt32BE(100_000, 16);
  huge.writeUInt32BE(100_000, 20);
  await rejects(huge, 'DATA_FORMAT', /^photo\.x declares 100000×100000 pixels; at most 16777216 are accepted/);
  await rejects(jpg, 'DATA_FORMAT', /declares 56×56 pixels; at most 1000 are accepted/, 1000);
  await rejects(webp, 'DATA_FORMAT', /declares 56×56 pixels; at most 1000 are accepted/, 1000);
});

test('sharp loads on first decode only: importing the library does not load it', () => {
  // sharp is a native addon: once loaded, its shared objects (sharp-*.node, libvips) are mapped.
  const probe = `const vips = () => process.report.getReport().sharedObjects.some((s) => /sharp|vips/.test(s));
    import('./src/index.ts').then(async (p) => { const before = vips(); await p.decodeImage(Buffer.from('GIF89a'), { height: 1, width: 1 }).catch(() => {}); console.log(before, vips()); })`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', probe], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'false true', 'not loaded by the import, loaded by the first decode');
});

test('polarity: the median of the border decides; one bright corner or an object at the edge does not flip it', () => {
  const img = new Float32Array(28 * 28);
  assert.deepEqual(detectPolarity(img, 28, 28), { polarity: 'light-on-dark', background: 0 });
  img[0] = img[27] = img[28 * 27] = 1; // three bright corners
  for (let y = 5; y < 28; y++) for (let x = 10; x < 18; x++) img[y * 28 + x] = 1; // a trouser leg touching the bottom edge
  assert.equal(detectPolarity(img, 28, 28).polarity, 'light-on-dark');
  const paper = img.map((v) => 1 - v);
  assert.equal(detectPolarity(paper, 28, 28).polarity, 'dark-on-light');
  assert.equal(detectPolarity(new Uint8Array(12).fill(200), 3, 4, 255).polarity, 'dark-on-light');
  assert.throws(() => detectPolarity(new Float32Array(3), 2, 2), /need 2×2 values/);
});

test('font: every glyph is 5 wide and at most 9 tall; text is folded to what it can draw', () => {
  for (const ch of 'AZaz09 -/+,.()?&') {
    const canvas = new Uint8Array(GLYPH_WIDTH * GLYPH_HEIGHT);
    drawText(canvas, GLYPH_WIDTH, 0, 0, ch, 1);
    assert.equal(canvas.some((v) => v === 1), ch !== ' ', `glyph '${ch}' ${ch === ' ' ? 'blank' : 'drawn'}`);
  }
  const wide = new Uint8Array(7 * GLYPH_HEIGHT);
  drawText(wide, 7, 0, 0, 'W', 1);
  for (let y = 0; y < GLYPH_HEIGHT; y++) assert.equal(wide[y * 7 + 5] + wide[y * 7 + 6], 0, 'nothing right of column 5');
  assert.equal(fontText('Café crème'), 'Cafe creme');
  assert.equal(fontText('日本'), '??');
  assert.equal(fontText('ankle boot and sandal', 10), 'ankle bo..');
  assert.equal(textWidth('ab', 2), 22);
  // Descenders reach the last rows.
  const g = new Uint8Array(GLYPH_WIDTH * GLYPH_HEIGHT);
  drawText(g, GLYPH_WIDTH, 0, 0, 'g', 1);
  assert.ok(g.subarray((GLYPH_HEIGHT - 1) * GLYPH_WIDTH).some((v) => v === 1));
});

test('PNG grid: row captions widen it and are drawn in each row; cells start groups on new rows; highlight frames a tile in orange', () => {
  const tiles = new Float32Array(5 * 4 * 4).fill(0);
  const plain = PNG.sync.read(encodeGridPng(tiles, 5, { cols: 3, height: 4, width: 4, scale: 7, pad: 2 }));
  assert.deepEqual([plain.width, plain.height], [3 * 28 + 4 * 2, 2 * 28 + 3 * 2]);

  const labelled = PNG.sync.read(encodeGridPng(tiles, 5, { cols: 3, height: 4, width: 4, scale: 7, pad: 2, rowLabels: ['Sneaker', ''], cells: [0, 1, 2, 3, 4] }));
  // 28-pixel tiles: captions at scale 1, 'Sneaker' is 7×6−1 = 41 wide, plus a glyph advance each side.
  const labelW = 41 + 2 * 6;
  assert.deepEqual([labelled.width, labelled.height], [labelW + plain.width, plain.height]);
  const white = (png: PNG, x0: number, x1: number, y0: number, y1: number) => {
    let n = 0;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) if (png.data[(y * png.width + x) * 4] === 255) n++;
    return n;
  };
  assert.ok(white(labelled, 0, labelW, 2, 30) > 20, 'row 0 has its caption');
  assert.equal(white(labelled, 0, labelW, 32, 60), 0, 'row 1 has none');
  assert.equal(white(labelled, labelW, labelled.width, 0, labelled.height), 0, 'no ink over the (black) tiles');

  // Two groups of two, three columns: the second group starts on row 1, leaving cell 2 empty.
  const grouped = PNG.sync.read(encodeGridPng(new Float32Array(4 * 16).fill(1), 4, { cols: 3, height: 4, width: 4, scale: 1, pad: 1, cells: [0, 1, 3, 4] }));
  assert.deepEqual([grouped.width, grouped.height], [3 * 4 + 4, 2 * 4 + 3]);
  const px = (png: PNG, x: number, y: number) => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3));
  assert.deepEqual(px(grouped, 1 + 2 * 5, 1), [96, 96, 96], 'cell 2 is empty');
  assert.deepEqual(px(grouped, 1, 6), [255, 255, 255], 'cell 3 holds image 2');

  const marked = PNG.sync.read(encodeGridPng(tiles, 5, { cols: 3, height: 4, width: 4, scale: 2, pad: 2, highlight: [0] }));
  assert.deepEqual(px(marked, 0, 0), [255, 150, 0], 'frame around tile 0');
  assert.deepEqual(px(marked, 5, 10), [255, 150, 0], 'frame below tile 0');
  assert.deepEqual(px(marked, 4, 4), [0, 0, 0], 'the tile itself');
  assert.deepEqual(px(marked, 2 + 8 + 2 + 3, 11), [96, 96, 96], 'no frame around tile 1');
});
