/**
 * Convolution patches (im2col) and their adjoint (col2im) on plain float arrays, for the tfjs
 * interpreter (the tape calls the same loops in wasm: kernels.c `im2col`, `col2im_add`). Layout: activations are NHWC, flattened per image to rows of
 * h·w·c; a patch row lists (ky, kx, channel) in row-major order, so filters [k·k·c, filters] are
 * conv2d's [k, k, c, filters] flattened.
 */
import { ProbsemError } from '../core/errors.js';

/** One convolution's input and window: zero padding `pad` on every side. */
export interface ConvGeometry {
  height: number;
  width: number;
  channels: number;
  kernel: number;
  stride: number;
  pad: number;
}

/** Output height and width of a convolution. */
export function convOutputShape(g: ConvGeometry): [number, number] {
  const oh = Math.floor((g.height + 2 * g.pad - g.kernel) / g.stride) + 1;
  const ow = Math.floor((g.width + 2 * g.pad - g.kernel) / g.stride) + 1;
  return [oh, ow];
}

/**
 * Calls `visit(imageOffset, colOffset, length)` for every run of values a patch shares with an
 * image: for each output position and window row, the columns inside the image are k·c contiguous
 * values in both (fewer at the borders), so patches move a row segment at a time.
 */
export function forEachSegment(n: number, g: ConvGeometry, visit: (imageOffset: number, colOffset: number, length: number) => void): void {
  const { height: h, width: w, channels: c, kernel: k, stride: s, pad: p } = g;
  const [oh, ow] = convOutputShape(g);
  const width = k * k * c;
  let r = 0;
  for (let i = 0; i < n; i++) {
    const base = i * h * w * c;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++, r++) {
        const x0 = x * s - p;
        const lo = Math.max(0, -x0);
        const hi = Math.min(k, w - x0);
        if (hi <= lo) continue;
        for (let ky = 0; ky < k; ky++) {
          const iy = y * s + ky - p;
          if (iy >= 0 && iy < h) visit(base + (iy * w + x0 + lo) * c, r * width + (ky * k + lo) * c, (hi - lo) * c);
        }
      }
    }
  }
}

/** Patch rows [n·oh·ow, k·k·c] of n images [n, h·w·c]; positions outside the image read 0. */
export function im2col(src: Float32Array, n: number, g: ConvGeometry): Float32Array {
  const [oh, ow] = convOutputShape(g);
  const cols = new Float32Array(n * oh * ow * g.kernel * g.kernel * g.channels);
  forEachSegment(n, g, (from, to, len) => cols.set(src.subarray(from, from + len), to));
  return cols;
}

/** The adjoint of im2col: adds every patch row's entries back onto the images, [n, h·w·c]. */
export function col2im(cols: Float32Array, n: number, g: ConvGeometry): Float32Array {
  const [oh, ow] = convOutputShape(g);
  const rows = n * oh * ow;
  const width = g.kernel * g.kernel * g.channels;
  if (cols.length !== rows * width) throw new ProbsemError(`col2im: ${cols.length} values for ${rows}×${width} patches`, 'SHAPE');
  const out = new Float32Array(n * g.height * g.width * g.channels);
  forEachSegment(n, g, (to, from, len) => {
    for (let j = 0; j < len; j++) out[to + j] += cols[from + j];
  });
  return out;
}
