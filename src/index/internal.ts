/**
 * Package-internal access to an index's Gaussians, for adapters that store an index elsewhere
 * (clickhouse.ts), without widening KlIndex's public API.
 */
import type { ItemGaussians } from './kl-math.js';

/** KlIndex → its own copy of the item Gaussians (filled by the KlIndex constructor). */
export const INDEX_ITEMS = new WeakMap<object, ItemGaussians>();

/**
 * Counters for benchmarks and tests: in-process queries answered, second passes (kl_collect), full
 * rescans, candidates rescored; candidates ClickHouse searches returned for rescoring.
 */
export const SCAN_STATS = { queries: 0, collectPasses: 0, fullRescans: 0, rescored: 0, clickhouseCandidates: 0 };
