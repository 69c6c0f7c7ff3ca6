/**
 * The one decoder for user pictures (CLI and server): PNG, JPEG (baseline and progressive), WebP
 * and GIF (first frame) to the model's input, on sharp/libvips. sharp is a native module, so it is
 * imported on first use only: `import 'probsem'` stays light and works where sharp does not load.
 */
import { DataFormatError, ProbsemError } from '../core/errors.js';
import { type Polarity, detectPolarity } from './polarity.js';

export type ImageFormat = 'PNG' | 'JPEG' | 'WebP' | 'GIF';

export interface DecodeImageOptions {
  /** The model's input size. */
  height: number;
  width: number;
  /** 1: grey (luma), 3: RGB, interleaved per pixel (default 1). */
  channels?: 1 | 3;
  /** true or false force it; absent: invert when the picture is dark-on-light (the data are light-on-dark). */
  invert?: boolean;
  /**
   * Keep the picture's own look (colour photographs, emoji): never inverted or levelled, transparent
   * pixels composited on white. Without it the picture is made light-on-dark like the grey datasets.
   */
  asIs?: boolean;
  /** Refuse pictures with more pixels than this (default 4096×4096), before decoding them. */
  maxPixels?: number;
  /** How messages name the input ("photo.jpg", "the upload"). */
  source?: string;
  /**
   * Refuse pictures whose decoded pixels (width × height × channels × bytes per sample, as the
   * header declares them) would take more bytes than this, before decoding (default: unbounded).
   */
  maxDecodeBytes?: number;
}

/** What was done to a picture to make it model input. */
export interface ImageConversion {
  format: ImageFormat;
  /** The picture as stored (after EXIF orientation). */
  width: number;
  height: number;
  /** Whether its pixels carry colour (a grey picture stored as RGB counts as grey). */
  colour: boolean;
  /** Whether it has transparent pixels. */
  transparent: boolean;
  bitDepth: number;
  /** Frames in the file; only the first is used. */
  frames: number;
  progressive: boolean;
  /** Transparent pixels were composited on this; null when there were none. */
  alphaOn: 'white' | 'black' | null;
  colourDropped: boolean;
  /** Scaled to fit the model's size (aspect kept). */
  resized: boolean;
  /** Borders added to keep the aspect ratio, filled with the picture's own background. */
  padded: boolean;
  /** The polarity detected before any inversion. */
  polarity: Polarity;
  inverted: boolean;
  /** 'auto': decided by detection; 'asked': forced by the caller. */
  invertDecision: 'auto' | 'asked';
  /** Brightness stretched so the (grey) background became black. */
  levelled: boolean;
  output: { height: number; width: number; channels: 1 | 3 };
}

export interface DecodedImage {
  /** height×width×channels values in [0, 1], row-major, channels interleaved. */
  pixels: Float32Array;
  conversion: ImageConversion;
}

export const DEFAULT_MAX_PIXELS = 4096 * 4096;
const READABLE = 'PNG, JPEG, WebP and GIF';

type SharpFn = (typeof import('sharp'))['default'];
let sharpPromise: Promise<SharpFn> | undefined;

function loadSharp(): Promise<SharpFn> {
  sharpPromise ??= import('sharp').then(
    (m) => m.default,
    (e: Error) => {
      sharpPromise = undefined;
      throw new ProbsemError(`reading pictures needs the sharp package, which did not load here: ${String(e.message).split('\n')[0]}`, 'SHARP_UNAVAILABLE');
    },
  );
  return sharpPromise;
}

const ascii = (b: Uint8Array, o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));

/** The format from the file's first bytes: one we read, one we name but refuse, or null. */
export function sniffImageFormat(b: Uint8Array): { format: ImageFormat } | { other: string } | null {
  if (b.length >= 8 && ascii(b, 0, 8) === '\x89PNG\r\n\x1a\n') return { format: 'PNG' };
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return { format: 'JPEG' };
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return { format: 'WebP' };
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) return { format: 'GIF' };
  // Named so the refusal can say what the file is; SVG and TIFF are never handed to libvips.
  if (ascii(b, 0, 2) === 'BM') return { other: 'BMP' };
  if (ascii(b, 0, 4) === 'II*\0' || ascii(b, 0, 4) === 'MM\0*') return { other: 'TIFF' };
  if (ascii(b, 4, 4) === 'ftyp') return { other: /^(avi[fs])/.test(ascii(b, 8, 4)) ? 'AVIF' : 'HEIC/HEIF' };
  if ((b[0] === 0xff && b[1] === 0x0a) || ascii(b, 4, 4) === 'JXL ') return { other: 'JPEG XL' };
  if (ascii(b, 0, 4) === '%PDF') return { other: 'PDF' };
  if (/^\s*(<\?xml[^>]*>\s*)?<svg[\s>]/i.test(new TextDecoder().decode(b.subarray(0, 512)).replace(/^\ufeff/, ''))) return { other: 'SVG' };
  return null;
}

/** Width and height from the header, read by hand where that is trivial, so a hostile header is refused before libvips parses it. */
function headerSize(b: Uint8Array, format: ImageFormat): [number, number] | null {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (format === 'PNG' && b.length >= 24) return [dv.getUint32(16), dv.getUint32(20)];
  if (format === 'GIF' && b.length >= 10) return [dv.getUint16(6, true), dv.getUint16(8, true)];
  return null;
}

function checkSize(w: number, h: number, max: number, source: string): void {
  if (w * h > max) throw new DataFormatError(`${source} declares ${w}×${h} pixels; at most ${max} are accepted (scale it down first)`);
}

/** Bytes per decoded sample: 1 up to 8 bits, 2 for 16. */
const sampleBytes = (bits: number) => Math.max(1, Math.ceil(bits / 8));
const MiB = (n: number) => `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0)} MiB`;

function checkBudget(w: number, h: number, channels: number, bits: number, max: number, source: string): void {
  const bytes = w * h * channels * sampleBytes(bits);
  if (bytes > max) {
    throw new ProbsemError(
      `${source} declares ${w}×${h} pixels × ${channels} channel${channels > 1 ? 's' : ''} × ${bits} bits: ${MiB(bytes)} to decode, ` +
        `over the decode budget of ${MiB(max)} (send a smaller or 8-bit picture)`,
      'DECODE_BUDGET',
    );
  }
}

/** PNG colour types → decoded channels (a palette expands to RGBA). */
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 4, 4: 2, 6: 4 };

/**
 * The pixel limit (PNG, GIF) and the decode budget (PNG) checked from the header alone, so a
 * server can refuse an oversized picture before queueing it; decodeImage checks the rest once
 * libvips has read the header. DATA_FORMAT over the pixel limit, DECODE_BUDGET over the budget;
 * anything else passes, for decodeImage to judge.
 */
export function checkImageHeader(b: Uint8Array, o: { maxPixels?: number; maxDecodeBytes?: number; source?: string }): void {
  const source = o.source ?? 'the image';
  const sniffed = sniffImageFormat(b);
  if (!sniffed || !('format' in sniffed)) return;
  const declared = headerSize(b, sniffed.format);
  if (declared) checkSize(declared[0], declared[1], o.maxPixels ?? DEFAULT_MAX_PIXELS, source);
  const channels = PNG_CHANNELS[b[25]];
  if (sniffed.format !== 'PNG' || b.length < 26 || !channels || o.maxDecodeBytes === undefined) return;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  checkBudget(dv.getUint32(16), dv.getUint32(20), channels, b[25] === 3 ? 8 : b[24], o.maxDecodeBytes, source);
}

const unreadable = (source: string, format: ImageFormat) => new DataFormatError(`${source} is not a readable image (corrupt or truncated ${format})`);

/**
 * Decodes a picture to model input: EXIF-oriented, transparent pixels composited (on white, or on
 * black when the visible content is light, so it stays visible), scaled to fit height×width with
 * the aspect kept and the rest padded with the picture's own background, grey or RGB, and inverted
 * when dark-on-light (or as asked). Bad input is a ProbsemError in plain words: DATA_FORMAT for
 * non-images, corrupt or oversized ones, UNSUPPORTED_IMAGE for formats recognised but not read.
 */
export async function decodeImage(buf: Uint8Array, o: DecodeImageOptions): Promise<DecodedImage> {
  const source = o.source ?? 'the image';
  const channels = o.channels ?? 1;
  const max = o.maxPixels ?? DEFAULT_MAX_PIXELS;
  const { height: H, width: W } = o;
  if (buf.length === 0) throw new DataFormatError(`${source} is empty`);
  const sniffed = sniffImageFormat(buf);
  if (!sniffed) throw new DataFormatError(`${source} is not an image: it starts with none of the ${READABLE} signatures`);
  if ('other' in sniffed) throw new ProbsemError(`${source} is a ${sniffed.other} image; probsem reads ${READABLE} (convert it to one of those)`, 'UNSUPPORTED_IMAGE');
  const format = sniffed.format;
  checkImageHeader(buf, { maxPixels: max, maxDecodeBytes: o.maxDecodeBytes, source });
  const budget = o.maxDecodeBytes ?? Infinity;

  const sharp = await loadSharp();
  let meta: Awaited<ReturnType<ReturnType<SharpFn>['metadata']>>;
  try {
    // Header only: no pixel limit needed for this call.
    meta = await sharp(buf, { limitInputPixels: false }).metadata();
  } catch {
    throw unreadable(source, format);
  }
  if (!meta.width || !meta.height) throw unreadable(source, format);
  checkSize(meta.width, meta.height, max, source);
  const bits = meta.bitsPerSample ?? (meta.depth === 'ushort' ? 16 : 8);
  checkBudget(meta.width, meta.height, meta.channels ?? 4, bits, budget, source);
  const swapped = (meta.orientation ?? 1) >= 5;
  const width = swapped ? meta.height : meta.width;
  const height = swapped ? meta.width : meta.height;

  let rgba: Buffer;
  let rw: number;
  let rh: number;
  try {
    // 'error' rather than sharp's default 'warning': a decoder warning alone does not refuse a
    // picture that displays elsewhere; truncation and decode errors still fail.
    const { data, info } = await sharp(buf, { limitInputPixels: max, failOn: 'error' })
      .autoOrient()
      .resize({ width: W, height: H, fit: 'inside' })
      .ensureAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error('expected RGBA');
    rgba = data;
    rw = info.width;
    rh = info.height;
  } catch {
    throw unreadable(source, format);
  }

  const n = rw * rh;
  // Transparency, and whether what is visible is light: pick the compositing background from it.
  let transparent = false;
  let alphaSum = 0;
  let lightSum = 0;
  let colour = false;
  for (let i = 0; i < n; i++) {
    const r = rgba[4 * i];
    const g = rgba[4 * i + 1];
    const b = rgba[4 * i + 2];
    const a = rgba[4 * i + 3] / 255;
    if (a < 1) transparent = true;
    alphaSum += a;
    lightSum += (a * (0.299 * r + 0.587 * g + 0.114 * b)) / 255;
    // JPEG chroma noise on a grey picture stays within a few levels.
    if (a > 0 && Math.max(Math.abs(r - g), Math.abs(g - b), Math.abs(r - b)) > 12) colour = true;
  }
  const alphaOn = !transparent ? null : !o.asIs && alphaSum > 0 && lightSum / alphaSum > 0.5 ? 'black' : 'white';
  const bg = alphaOn === 'black' ? 0 : 1;
  const rgb = new Float32Array(n * 3);
  const luma = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3] / 255;
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = (rgba[4 * i + c] / 255) * a + bg * (1 - a);
    luma[i] = 0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2];
  }

  const guess = detectPolarity(luma, rh, rw);
  const inverted = o.asIs ? false : (o.invert ?? guess.polarity === 'dark-on-light');
  const plane = channels === 1 ? luma : rgb;
  if (inverted) for (let i = 0; i < plane.length; i++) plane[i] = 1 - plane[i];
  let fill = inverted ? 1 - guess.background : guess.background;
  // Paper and walls are grey, not white: stretch so the background is black, as in the datasets.
  // Not when it is still light (inversion refused), which would wash the picture out.
  const levelled = !o.asIs && fill > 0.02 && fill < 0.5;
  if (levelled) {
    for (let i = 0; i < plane.length; i++) plane[i] = Math.max(0, (plane[i] - fill) / (1 - fill));
    fill = 0;
  }
  const pixels = new Float32Array(H * W * channels).fill(fill);
  const top = Math.floor((H - rh) / 2);
  const left = Math.floor((W - rw) / 2);
  for (let y = 0; y < rh; y++) pixels.set(plane.subarray(y * rw * channels, (y + 1) * rw * channels), ((top + y) * W + left) * channels);

  return {
    pixels,
    conversion: {
      format,
      width,
      height,
      colour,
      transparent,
      bitDepth: meta.bitsPerSample ?? (meta.depth === 'ushort' ? 16 : 8),
      frames: meta.pages ?? 1,
      progressive: Boolean(meta.isProgressive),
      alphaOn,
      colourDropped: colour && channels === 1,
      resized: width !== W || height !== H,
      padded: rw !== W || rh !== H,
      polarity: guess.polarity,
      inverted,
      invertDecision: o.invert === undefined && !o.asIs ? 'auto' : 'asked',
      levelled,
      output: { height: H, width: W, channels },
    },
  };
}

/**
 * One line saying what was converted ("photo.jpg is 640×480 RGB; converted to 28×28 grey, inverted
 * (dark-on-light detected)"), or null when the picture went in as it was.
 */
export function describeConversion(source: string, c: ImageConversion): string | null {
  const notes: string[] = [];
  if (c.frames > 1) notes.push(`first of ${c.frames} frames`);
  if (c.alphaOn) notes.push(`transparency on ${c.alphaOn}`);
  if (c.padded) notes.push('padded to keep the aspect ratio');
  if (c.inverted) notes.push(c.invertDecision === 'auto' ? 'inverted (dark-on-light detected)' : 'inverted (as asked)');
  else if (c.polarity === 'dark-on-light') notes.push('not inverted although dark-on-light (as asked)');
  if (c.levelled) notes.push('background darkened to black');
  if (!c.resized && !c.colourDropped && notes.length === 0) return null;
  const kind = (c.colour ? 'RGB' : 'grey') + (c.transparent ? ' with transparency' : '') + (c.bitDepth > 8 ? ` ${c.bitDepth}-bit` : '');
  const out = `${c.output.width}×${c.output.height} ${c.output.channels === 1 ? 'grey' : 'RGB'}`;
  return `${source} is ${c.width}×${c.height} ${kind}; converted to ${[out, ...notes].join(', ')}`;
}
