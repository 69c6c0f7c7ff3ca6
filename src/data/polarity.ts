/**
 * Which way round a picture is: the datasets are light objects on a dark background, while photos
 * and drawings are usually dark on light. Pure and dependency-free, so the CLI, the server and the
 * explorer page (which has canvas pixels, not sharp) can all decide the same way.
 */

export type Polarity = 'light-on-dark' | 'dark-on-light';

export interface PolarityGuess {
  polarity: Polarity;
  /** Median brightness of the picture's outer ring, in [0, 1]: the background estimate. */
  background: number;
}

/**
 * Guesses the polarity from the outer ring of pixels (about 1/14 of the shorter side deep, at least
 * one pixel). The median, not the mean or a few corners, so an object touching the edge or one
 * noisy corner does not flip the answer. `grey` is row-major brightness in [0, max].
 */
export function detectPolarity(grey: ArrayLike<number>, height: number, width: number, max = 1): PolarityGuess {
  if (height <= 0 || width <= 0 || grey.length < height * width) throw new RangeError(`detectPolarity: need ${height}×${width} values, got ${grey.length}`);
  const depth = Math.max(1, Math.floor(Math.min(height, width) / 14));
  const ring: number[] = [];
  for (let y = 0; y < height; y++) {
    const edgeRow = y < depth || y >= height - depth;
    for (let x = 0; x < width; x++) {
      if (edgeRow || x < depth || x >= width - depth) ring.push(grey[y * width + x] / max);
    }
  }
  ring.sort((a, b) => a - b);
  const background = ring[Math.floor(ring.length / 2)];
  return { polarity: background > 0.5 ? 'dark-on-light' : 'light-on-dark', background };
}
