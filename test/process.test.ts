/**
 * The process around the CLI: the bin wrapper passes signals on (the work stops with it), and an
 * evaluation whose run directory cannot be written still prints its measures.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createModel, saveModel, train } from '../src/api.js';
import { loadDataset } from '../src/data/registry.js';
import { setupBackend } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'probsem-process-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) {
    spawnSync('chattr', ['-R', '-i', d]);
    rmSync(d, { recursive: true, force: true });
  }
});

/** Pids whose command line mentions `marker`, other than this test's own processes. */
function processesWith(marker: string): number[] {
  const r = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l.includes(marker) && !l.includes('ps -eo'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

test('killing the bin wrapper stops the work: no orphan keeps training', { timeout: 120_000 }, async () => {
  // A copy of the package without dist/, so the wrapper takes its TypeScript path (the one that
  // used to run the CLI as an unsignalled child).
  const pkg = tmp();
  mkdirSync(join(pkg, 'bin'));
  copyFileSync(join(root, 'bin', 'probsem.js'), join(pkg, 'bin', 'probsem.js'));
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
  for (const d of ['src', 'node_modules', 'data']) symlinkSync(join(root, d), join(pkg, d));
  const out = join(pkg, `run-${process.pid}-wrapper-marker`);
  const child = spawn(process.execPath, [join(pkg, 'bin', 'probsem.js'), 'train', '--model', 'vae', '--dataset', 'fashion-mnist-subset', '--steps', '20000', '--batch', '10', '--set', 'encoderHidden=[8]', '--set', 'decoderHidden=[8]', '--out', out], {
    env: { ...process.env, PROBSEM_CACHE: tmp() },
  });
  let err = '';
  const running = new Promise<void>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (/train vae \d+\/20000/.test(err)) resolve();
    });
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (c, s) => resolve(s ?? c)));
  await Promise.race([running, exited]);
  assert.match(err, /train vae \d+\/20000/, `training did not start: ${err}`);
  assert.deepEqual(processesWith(out), [child.pid], 'one process: the CLI runs inside the wrapper');
  child.kill('SIGTERM');
  assert.equal(await exited, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(processesWith(out), [], 'nothing is left training');
});

test('eval prints its measures even when the run directory cannot be written, and says why', { timeout: 300_000 }, async (t) => {
  await setupBackend();
  const data = await loadDataset('fashion-mnist-subset');
  const dir = join(tmp(), 'run');
  saveModel(dir, await train(createModel('pse', { latent: 2, encoderHidden: [16], decoderHidden: [16] }, { dataset: data }), data, { steps: 50 }));
  // An immutable directory refuses writes even to root (as a read-only or full disk would).
  if (spawnSync('chattr', ['+i', dir]).status !== 0) {
    t.skip('chattr +i is not available on this file system');
    return;
  }
  const before = readFileSync(join(dir, 'model.json'), 'utf8');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'eval', '--run', dir, '--no-generation', '--triplets', '0', '--json'], { encoding: 'utf8', cwd: root });
  spawnSync('chattr', ['-i', dir]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.model, 'pse');
  assert.ok(report.annotationAccuracy >= 0 && report.annotationAccuracy <= 1, `annotation ${report.annotationAccuracy}`);
  assert.match(r.stderr, /note: the metrics are printed only: could not write .*model\.json: EPERM/);
  assert.equal(readFileSync(join(dir, 'model.json'), 'utf8'), before, 'model.json is untouched');
});
