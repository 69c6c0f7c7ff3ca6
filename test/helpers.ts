import { initBackend } from '../src/core/backend.js';

/** Tests run on the backend a user would get (wasm by default; PROBSEM_BACKEND overrides). */
export async function setupBackend(): Promise<string> {
  return initBackend();
}

export function assertClose(actual: number, expected: number, tol: number, what = 'value'): void {
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new Error(`${what}: expected ${expected} ± ${tol}, got ${actual}`);
  }
}

/** Σ(a − b)² and Σa² over two gradient vectors, for a relative-difference check against a reference a. */
export function gradientDifference(a: ArrayLike<number>, b: ArrayLike<number>): { num: number; den: number } {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += a[i] ** 2;
  }
  return { num, den };
}
