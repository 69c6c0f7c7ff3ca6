/** Small helpers for strict, friendly option parsing. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ProbsemError } from '../core/errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command accepts. */
export const COMMON: Options = {
  backend: { type: 'string' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export function parse(argv: string[], options: Options, allowPositionals = false) {
  const all = { ...COMMON, ...options };
  try {
    return parseArgs({ args: argv, options: all, allowPositionals, strict: true });
  } catch (e) {
    const message = String((e as Error).message);
    const unknown = (e as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /^Unknown option '([^']+)'/.exec(message) : null;
    if (unknown) {
      const near = nearest(unknown[1].replace(/^-+/, ''), Object.keys(all));
      throw new ProbsemError(`unknown option '${unknown[1]}'${near ? ` (did you mean --${near}?)` : ''}`, 'BAD_OPTION');
    }
    // node's other messages are clear; strip its advice about positionals.
    throw new ProbsemError(message.replace(/\. To specify a positional.*$/s, ''), 'BAD_OPTION');
  }
}

/** Optimal string alignment distance: edits, with a swap of neighbours counting as one. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate a mistyped word most likely meant, or undefined when none is close: within a third
 * of the word's length in edits (at least one), or the only candidate it abbreviates (3+ letters).
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (best) return best;
  const prefixed = word.length >= 3 ? candidates.filter((c) => c.startsWith(word)) : [];
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

export function intOption(v: unknown, name: string, def: number | undefined, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) {
    if (def === undefined) throw new ProbsemError(`--${name} is required`, 'BAD_OPTION');
    return def;
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ProbsemError(`--${name} must be an integer in [${min}, ${max}], got '${v}'`, 'BAD_OPTION');
  }
  return n;
}

export function numOption(v: unknown, name: string, def: number, min = -Infinity, max = Infinity, exclusiveMin = false): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n > max || (exclusiveMin ? n <= min : n < min)) {
    throw new ProbsemError(`--${name} must be a number ${exclusiveMin ? '>' : '≥'} ${min}${max < Infinity ? ` and ≤ ${max}` : ''}, got '${v}'`, 'BAD_OPTION');
  }
  return n;
}

export function strOption(v: unknown, name: string, def?: string): string {
  if (v === undefined || v === '') {
    if (def === undefined) throw new ProbsemError(`--${name} is required`, 'BAD_OPTION');
    return def;
  }
  return String(v);
}
