import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';

/** Runs the fixture with `env` over this process's environment; an undefined value unsets a variable (npm test sets PROBSEM_THREADS=1). */
function run(env: Record<string, string | undefined>) {
  const merged: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/train-hash.ts'], {
    encoding: 'utf8',
    env: merged,
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { backend: string; threads: number; hash: string };
}

test('multi-threaded wasm starts in Node, exits cleanly, and trains bit-identically to one thread', () => {
  const one = run({ PROBSEM_THREADS: '1', PROBSEM_BACKEND: 'wasm' });
  const two = run({ PROBSEM_THREADS: '2', PROBSEM_BACKEND: 'wasm' });
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2, 'the threaded build really runs two XNNPACK threads');
  assert.equal(two.hash, one.hash, 'thread count does not change results');
  const dflt = run({ PROBSEM_BACKEND: 'wasm', PROBSEM_THREADS: undefined });
  assert.equal(dflt.threads, Math.min(8, cpus().length));
});

test('bad PROBSEM_THREADS and PROBSEM_BACKEND values are refused clearly', () => {
  for (const [env, re] of [
    [{ PROBSEM_THREADS: '0' }, /PROBSEM_THREADS must be an integer from 1 to 8, got '0'/],
    [{ PROBSEM_BACKEND: 'gpu' }, /unknown backend 'gpu'/],
  ] as const) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/train-hash.ts'], { encoding: 'utf8', env: { ...process.env, ...env } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, re);
  }
});
