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
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals, strict: true });
  } catch (e) {
    // node's messages are clear ("Unknown option '--foo'"); strip its error-code suffix.
    throw new ProbsemError(String((e as Error).message).replace(/\. To specify a positional.*$/s, ''), 'BAD_OPTION');
  }
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
