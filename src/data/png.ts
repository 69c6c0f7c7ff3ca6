/** PNG in and out: image grids for reports, and user images decoded to model input. */
import { PNG } from 'pngjs';
import { DataFormatError } from '../core/errors.js';

export interface GridOptions {
  /** Images per row. */
  cols: number;
  height: number;
  width: number;
  /** Pixels between tiles. */
  pad?: number;
  /** Integer upscaling factor. */
  scale?: number;
}

/**
 * Tiles grey images (values in [0, 1], row-major, `height*width` each) into one PNG, row by row.
 * Padding is mid-grey so black-background images stay distinguishable.
 */
export function encodeGridPng(images: Float32Array, count: number, opts: GridOptions): Buffer {
  const { cols, height: h, width: w } = opts;
  const pad = opts.pad ?? 2;
  const scale = opts.scale ?? 2;
  const rows = Math.max(1, Math.ceil(count / cols));
  const tileW = w * scale;
  const tileH = h * scale;
  const W = cols * tileW + (cols + 1) * pad;
  const H = rows * tileH + (rows + 1) * pad;
  const png = new PNG({ width: W, height: H, colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  const data = Buffer.alloc(W * H, 96);
  for (let i = 0; i < count; i++) {
    const r = Math.floor(i / cols);
    const c = i % cols;
    const ox = pad + c * (tileW + pad);
    const oy = pad + r * (tileH + pad);
    for (let y = 0; y < tileH; y++) {
      for (let x = 0; x < tileW; x++) {
        const v = images[i * h * w + Math.floor(y / scale) * w + Math.floor(x / scale)];
        data[(oy + y) * W + ox + x] = Math.max(0, Math.min(255, Math.round(v * 255)));
      }
    }
  }
  png.data = data;
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, inputHasAlpha: false });
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export interface DecodeOptions {
  /** Invert grey values (for dark-on-light pictures; the datasets are light-on-dark). */
  invert?: boolean;
  /** Refuse images with more pixels than this (default 4096×4096). */
  maxPixels?: number;
}

/**
 * Decodes a PNG to grey values in [0, 1], resized (area average) to height×width. Alpha is
 * composited over black, matching the datasets' black background.
 */
export function decodePngToGrey(buf: Uint8Array, height: number, width: number, source: string, opts: DecodeOptions = {}): Float32Array {
  if (buf.length < 8 || PNG_MAGIC.some((b, i) => buf[i] !== b)) {
    throw new DataFormatError(`${source} is not a PNG image (wrong signature)`);
  }
  // Read the declared size from the IHDR chunk before decoding, so a hostile header cannot make
  // the decoder allocate gigabytes.
  if (buf.length >= 24) {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const w = dv.getUint32(16);
    const h = dv.getUint32(20);
    const max = opts.maxPixels ?? 4096 * 4096;
    if (w === 0 || h === 0 || w * h > max) {
      throw new DataFormatError(`${source} declares ${w}×${h} pixels; at most ${max} are accepted`);
    }
  }
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(buf));
  } catch (e) {
    throw new DataFormatError(`${source} is not a valid PNG: ${(e as Error).message}`);
  }
  const { width: W, height: H, data } = png;
  const grey = new Float32Array(W * H);
  for (let i = 0; i < W * H; i++) {
    const a = data[i * 4 + 3] / 255;
    const lum = (0.299 * data[i * 4] + 0.587 * data[i * 4 + 1] + 0.114 * data[i * 4 + 2]) / 255;
    const v = lum * a;
    grey[i] = opts.invert ? a * (1 - lum) : v;
  }
  return resizeArea(grey, H, W, height, width);
}

/** Area-average resize (good for downscaling photos or drawings to 28×28). */
export function resizeArea(src: Float32Array, sh: number, sw: number, dh: number, dw: number): Float32Array {
  if (sh === dh && sw === dw) return src;
  const out = new Float32Array(dh * dw);
  const fy = sh / dh;
  const fx = sw / dw;
  for (let y = 0; y < dh; y++) {
    const y0 = y * fy;
    const y1 = (y + 1) * fy;
    for (let x = 0; x < dw; x++) {
      const x0 = x * fx;
      const x1 = (x + 1) * fx;
      let sum = 0;
      let area = 0;
      for (let sy = Math.floor(y0); sy < Math.min(sh, Math.ceil(y1)); sy++) {
        const wy = Math.min(y1, sy + 1) - Math.max(y0, sy);
        for (let sx = Math.floor(x0); sx < Math.min(sw, Math.ceil(x1)); sx++) {
          const wx = Math.min(x1, sx + 1) - Math.max(x0, sx);
          sum += src[sy * sw + sx] * wx * wy;
          area += wx * wy;
        }
      }
      out[y * dw + x] = area > 0 ? sum / area : 0;
    }
  }
  return out;
}
