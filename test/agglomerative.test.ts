/** Agglomerative clustering (src/analysis/agglomerative.ts) against scipy's linkage, and the CLI. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { agglomerative } from '../src/analysis/agglomerative.js';
import { normalizedMutualInformation } from '../src/analysis/clustering.js';
import { Rng } from '../src/core/random.js';

const fixture = JSON.parse(readFileSync(new URL('./fixtures/scipy-linkage-400.json', import.meta.url), 'utf8')) as {
  points: number[][];
  ward: { heights: number[]; k3: number[] };
  average: { heights: number[]; k3: number[] };
};

test('merge heights and the 3-cluster cut equal scipy linkage (ward and average) on 400 points', () => {
  const data = Float64Array.from(fixture.points.flat());
  for (const linkage of ['ward', 'average'] as const) {
    const r = agglomerative(data, 400, 5, { k: 3, linkage });
    const heights = Array.from({ length: 399 }, (_, i) => r.merges[i * 4 + 2]);
    heights.forEach((h, i) => assert.ok(Math.abs(h - fixture[linkage].heights[i]) < 1e-9 * (1 + h), `${linkage} merge ${i}: ${h} vs ${fixture[linkage].heights[i]}`));
    assert.equal(r.merges[398 * 4 + 3], 400, 'the last merge holds every point');
    // The same partition (cluster numbers may differ): NMI 1.
    assert.equal(normalizedMutualInformation(r.assignments, fixture[linkage].k3), 1, linkage);
    assert.equal(r.sizes.reduce((a, b) => a + b, 0), 400);
  }
});

test('hand-checked small case, well-separated groups, and bad input', () => {
  // Two points at distance 1 and one far away: Ward merges the pair at height 1 (√(2·½·1²)).
  const r = agglomerative([0, 0, 1, 0, 10, 0], 3, 2, { k: 2, linkage: 'ward' });
  assert.deepEqual(Array.from(r.merges.subarray(0, 4)), [0, 1, 1, 2]);
  assert.deepEqual(Array.from(r.assignments), [0, 0, 1]);
  // Average linkage of {0, 1} to 10: (10 + 9) / 2.
  assert.equal(agglomerative([0, 0, 1, 0, 10, 0], 3, 2, { k: 1, linkage: 'average' }).merges[6], 9.5);

  const rng = Rng.for(1, 'agg');
  const n = 3000;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 5);
  const data = Float64Array.from({ length: n * 4 }, (_, j) => 0.5 * rng.normal() + 6 * (labels[Math.floor(j / 4)] === j % 4 ? 1 : 0) + (labels[Math.floor(j / 4)] === 4 ? -6 : 0));
  for (const linkage of ['ward', 'average'] as const) {
    assert.equal(normalizedMutualInformation(agglomerative(data, n, 4, { k: 5, linkage }).assignments, labels), 1, linkage);
  }
  assert.throws(() => agglomerative([0, NaN], 1, 2, { k: 1, linkage: 'ward' }), /value 1 is NaN/);
  assert.throws(() => agglomerative([0, 1], 2, 1, { k: 3, linkage: 'ward' }), /k must be an integer in \[1, 2\]/);
  assert.throws(() => agglomerative([0, 1], 2, 1, { k: 1, linkage: 'single' as never }), /unknown linkage 'single'/);
});
