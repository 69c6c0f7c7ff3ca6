/** Model pixels (values in [0, 1], or bytes; RGB per pixel for colour) to and from canvases. */

export interface Shape {
  height: number;
  width: number;
  channels: 1 | 3;
}

/** Draws image `index` of `px` at (x, y), `scale` times its size, without smoothing. */
export function drawPixels(ctx: CanvasRenderingContext2D, px: ArrayLike<number>, index: number, s: Shape, x: number, y: number, scale: number, max = 1): void {
  const { height: h, width: w, channels: c } = s;
  const img = new ImageData(w, h);
  const base = index * h * w * c;
  const k = 255 / max;
  for (let p = 0; p < h * w; p++) {
    for (let j = 0; j < 3; j++) img.data[p * 4 + j] = px[base + p * c + (c === 3 ? j : 0)] * k;
    img.data[p * 4 + 3] = 255;
  }
  const tmp = document.createElement('canvas');
  tmp.width = w;
  tmp.height = h;
  tmp.getContext('2d')!.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, x, y, w * scale, h * scale);
}

/** `count` images of `px` in one row, as a canvas. */
export function stripCanvas(px: ArrayLike<number>, count: number, s: Shape, scale: number, max = 1): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = s.width * scale * count;
  c.height = s.height * scale;
  const ctx = c.getContext('2d')!;
  for (let i = 0; i < count; i++) drawPixels(ctx, px, i, s, i * s.width * scale, 0, scale, max);
  return c;
}

/** One image as a PNG data URL. */
export function pixelsUrl(px: ArrayLike<number>, index: number, s: Shape, scale: number, max = 1): string {
  const c = document.createElement('canvas');
  c.width = s.width * scale;
  c.height = s.height * scale;
  drawPixels(c.getContext('2d')!, px, index, s, 0, 0, scale, max);
  return c.toDataURL('image/png');
}

/**
 * A canvas's picture as model input: fitted into height × width (aspect kept, centred, the
 * margins the canvas's corner colour), grey as the mean of r, g, b or RGB; `invert` turns a
 * dark-on-light grey picture light-on-dark as the server's decoder does.
 */
export function canvasPixels(src: HTMLCanvasElement, s: Shape, invert: boolean): Float32Array {
  const c = document.createElement('canvas');
  c.width = s.width;
  c.height = s.height;
  const ctx = c.getContext('2d')!;
  const corner = src.getContext('2d')!.getImageData(0, 0, 1, 1).data;
  ctx.fillStyle = `rgb(${corner[0]}, ${corner[1]}, ${corner[2]})`;
  ctx.fillRect(0, 0, s.width, s.height);
  const f = Math.min(s.width / src.width, s.height / src.height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(src, (s.width - src.width * f) / 2, (s.height - src.height * f) / 2, src.width * f, src.height * f);
  const d = ctx.getImageData(0, 0, s.width, s.height).data;
  const out = new Float32Array(s.height * s.width * s.channels);
  for (let p = 0; p < s.height * s.width; p++) {
    if (s.channels === 3) for (let j = 0; j < 3; j++) out[p * 3 + j] = d[p * 4 + j] / 255;
    else {
      const g = (d[p * 4] + d[p * 4 + 1] + d[p * 4 + 2]) / 765;
      out[p] = invert ? 1 - g : g;
    }
  }
  return out;
}
