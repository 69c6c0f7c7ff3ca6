/**
 * Package-internal access to an index's Gaussians, for adapters that store an index elsewhere
 * (clickhouse.ts), without widening KlIndex's public API.
 */
import type { Distance } from './distances.js';
import type { ItemGaussians, QueryGaussian } from './kl-math.js';

/** KlIndex → its own copy of the item Gaussians (filled by the KlIndex constructor). */
export const INDEX_ITEMS = new WeakMap<object, ItemGaussians>();

/**
 * Counters for benchmarks and tests: in-process queries answered, second passes (a query scanned
 * again alone because its candidate list overflowed), full rescans, candidates rescored;
 * candidates ClickHouse searches returned for rescoring.
 */
export const SCAN_STATS = { queries: 0, collectPasses: 0, fullRescans: 0, rescored: 0, clickhouseCandidates: 0 };

/** Test-only tuning of the scan: `cap`, when positive, replaces the candidate list's length per query (kl-index.ts). */
export const SCAN_TUNING = { cap: 0 };

/**
 * KlIndex → its kernel's lower and upper bounds of every item's score for one query (sign −1 for
 * `largest`: of minus the score), by item position, NaN for an excluded item; null where the query
 * is rescored in full instead. For the tests, which check them against the exact scores.
 */
export const INDEX_BOUNDS = new WeakMap<object, (q: QueryGaussian, opts?: { largest?: boolean; exclude?: number; distance?: Distance }) => { lower: Float64Array; upper: Float64Array } | null>();
