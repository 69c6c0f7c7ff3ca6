/** PNG figures: image grids for reports and the CLI, with optional row captions and framed tiles. */
import { PNG } from 'pngjs';
import { ADVANCE, GLYPH_HEIGHT, drawText, fontText, textWidth } from './font.js';

export interface GridOptions {
  /** Images per row. */
  cols: number;
  height: number;
  width: number;
  /** Pixels between tiles. */
  pad?: number;
  /** Integer upscaling factor. */
  scale?: number;
  /** The grid cell of each image (default: image i in cell i), so a group can start on a new row. */
  cells?: number[];
  /** A caption per grid row, drawn in a column at the left ('' for none). */
  rowLabels?: string[];
  /** Images to frame in colour (the query of a similarity grid); makes the PNG RGB. */
  highlight?: number[];
  /** 3: the images are RGB (r, g, b per pixel) and the PNG is too; 1 (default): grey. */
  channels?: 1 | 3;
}

/** Captions longer than this are cut, so one long phrase cannot make the figure mostly margin. */
const MAX_LABEL_CHARS = 24;
const BACKGROUND = 96;
const LABEL_INK = 255;
/** Orange: visible against both black backgrounds and the grey padding. */
const FRAME_RGB = [255, 150, 0];

/**
 * Tiles images (values in [0, 1], row-major, `height*width*channels` each, grey by default) into
 * one PNG, row by row.
 * Padding is mid-grey so black-background images stay distinguishable.
 */
export function encodeGridPng(images: Float32Array, count: number, opts: GridOptions): Buffer {
  const { cols, height: h, width: w } = opts;
  const pad = opts.pad ?? 2;
  const scale = opts.scale ?? 2;
  const cells = opts.cells ?? Array.from({ length: count }, (_, i) => i);
  const lastCell = cells.slice(0, count).reduce((m, c) => Math.max(m, c), -1);
  const rows = Math.max(1, Math.ceil((lastCell + 1) / cols));
  const tileW = w * scale;
  const tileH = h * scale;
  // Captions scale with the tiles: 7-pixel capitals beside 28-pixel tiles, 14 beside 56.
  const textScale = Math.max(1, Math.round(tileH / 28));
  const labels = (opts.rowLabels ?? []).slice(0, rows).map((l) => fontText(l, MAX_LABEL_CHARS));
  const widest = Math.max(0, ...labels.map((l) => textWidth(l, textScale)));
  const labelW = widest > 0 ? widest + 2 * ADVANCE * textScale : 0;
  const W = labelW + cols * tileW + (cols + 1) * pad;
  const H = rows * tileH + (rows + 1) * pad;
  const grey = new Uint8Array(W * H).fill(BACKGROUND);
  const origin = (cell: number) => [labelW + pad + (cell % cols) * (tileW + pad), pad + Math.floor(cell / cols) * (tileH + pad)];
  const C = opts.channels ?? 1;
  /** Paints every tile into a canvas of `C` values per pixel. */
  const paintTiles = (canvas: Uint8Array) => {
    for (let i = 0; i < count; i++) {
      const [ox, oy] = origin(cells[i]);
      for (let y = 0; y < tileH; y++) {
        for (let x = 0; x < tileW; x++) {
          const src = (i * h * w + Math.floor(y / scale) * w + Math.floor(x / scale)) * C;
          const dst = ((oy + y) * W + ox + x) * C;
          for (let c = 0; c < C; c++) canvas[dst + c] = Math.max(0, Math.min(255, Math.round(images[src + c] * 255)));
        }
      }
    }
  };
  if (C === 1) paintTiles(grey);
  labels.forEach((text, r) => {
    const y = pad + r * (tileH + pad) + Math.floor((tileH - (GLYPH_HEIGHT - 2) * textScale) / 2);
    drawText(grey, W, ADVANCE * textScale, y, text, LABEL_INK, textScale);
  });
  if (C === 1 && !opts.highlight?.length) return writePng(grey, W, H, 1);

  const rgb = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) rgb.fill(grey[i], 3 * i, 3 * i + 3);
  if (C === 3) paintTiles(rgb);
  // The frame fills the padding around the tile, or lies over its edge when there is no padding.
  const t = pad > 0 ? pad : Math.max(1, scale);
  for (const i of opts.highlight ?? []) {
    if (!(i >= 0 && i < count)) continue;
    const [ox, oy] = origin(cells[i]);
    const x0 = pad > 0 ? ox - t : ox;
    const y0 = pad > 0 ? oy - t : oy;
    const x1 = pad > 0 ? ox + tileW + t : ox + tileW;
    const y1 = pad > 0 ? oy + tileH + t : oy + tileH;
    for (let y = Math.max(0, y0); y < Math.min(H, y1); y++) {
      for (let x = Math.max(labelW, x0); x < Math.min(W, x1); x++) {
        if (x >= x0 + t && x < x1 - t && y >= y0 + t && y < y1 - t) continue;
        rgb.set(FRAME_RGB, 3 * (y * W + x));
      }
    }
  }
  return writePng(rgb, W, H, 3);
}

function writePng(data: Uint8Array, width: number, height: number, channels: 1 | 3): Buffer {
  const colorType = channels === 1 ? 0 : 2;
  const png = new PNG({ width, height, colorType, inputColorType: colorType, bitDepth: 8, inputHasAlpha: false });
  png.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return PNG.sync.write(png, { colorType, inputColorType: colorType, inputHasAlpha: false });
}
