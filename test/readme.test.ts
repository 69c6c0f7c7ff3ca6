/**
 * The README's library program, verbatim but for its import path and run directory: type-checked
 * with the project's compiler settings, then run, and its answers checked.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/registry.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function libraryProgram(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Library'));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(m, "README's Library section has a ```ts program");
  return m[1];
}

test("the README's library program type-checks and runs", { timeout: 300_000 }, async () => {
  // Inside the repository (scratch/ is ignored) so the program is an ES module with the project's types.
  mkdirSync(join(root, 'scratch'), { recursive: true });
  const dir = mkdtempSync(join(root, 'scratch', 'readme-'));
  try {
    const program = libraryProgram();
    assert.ok(program.includes("from 'probsem'"), 'the program imports the package by name');
    assert.ok(program.split('\n').filter((l) => l.trim()).length <= 22, 'the program stays about 20 lines');
    const runDir = join(dir, 'run');
    const file = join(dir, 'program.ts');
    writeFileSync(file, program.replace("from 'probsem'", `from ${JSON.stringify(join(root, 'src/index.js'))}`).replaceAll("'runs/lib-demo'", JSON.stringify(runDir)));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ extends: join(root, 'tsconfig.json'), compilerOptions: { noEmit: true, rootDir: root }, include: [file] }),
    );
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
    assert.equal(tsc.status, 0, `tsc:\n${tsc.stdout}${tsc.stderr}`);
    const run = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', cwd: root, env: { ...process.env, PROBSEM_CACHE: join(dir, 'cache') } });
    assert.equal(run.status, 0, `program:\n${run.stdout}${run.stderr}`);
    const out = run.stdout.trim().split('\n').at(-1)!;
    // The shipped subset's test image 0 is a coat; "trouser" retrieves trousers; its look-alikes are upper-body garments.
    const ds = await loadDataset('fashion-mnist-subset');
    assert.equal(ds.classNames[ds.test.labels[0]], 'Coat');
    assert.match(out, /^Coat /, out);
    const [hits, alike] = [...out.matchAll(/\[([^\]]*)\]/g)].map((g) => g[1].split(',').map((s) => s.trim().replace(/'/g, '')));
    assert.ok(hits.filter((h) => h === 'Trouser').length >= 4, `retrieve('trouser'): ${hits}`);
    assert.ok(alike.filter((h) => ['Coat', 'Pullover', 'Shirt'].includes(h)).length >= 4, `similar(0): ${alike}`);
    assert.match(out, / 10 10$/, 'ten means and ten variances');
    const meta = JSON.parse(readFileSync(join(runDir, 'model.json'), 'utf8'));
    assert.equal(meta.dataset.name, 'fashion-mnist-subset', 'saveModel records the dataset');
    assert.equal(meta.training.steps, 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
