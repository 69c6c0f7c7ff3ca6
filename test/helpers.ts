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
