import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../src/data/registry.js';
import { imagesToFloat } from '../src/data/dataset.js';
import { encodeGridPng } from '../src/data/png.js';
import { writeFileSync } from 'node:fs';
import { writeIdxFile } from '../src/data/idx.js';
import { readCheckpoint } from '../src/train/checkpoint.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-cli-'));
const cache = tmp();

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    encoding: 'utf8',
    env: { ...process.env, PROBSEM_CACHE: cache },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('bad options give a clear message, exit code 2 and no stack trace', () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'\. Commands: train, /],
    [['train', '--model', 'nope'], /unknown model 'nope': choose one of vae, pse, pse-star/],
    [['train', '--model', 'pse', '--latent', '0'], /--latent must be an integer in \[1, 1024\], got '0'/],
    [['train', '--model', 'pse', '--lr', 'fast'], /--lr must be a number > 0/],
    [['train', '--model', 'pse', '--bogus'], /unknown option '--bogus'$/m],
    // A near miss names the option or command meant; a far one suggests nothing.
    [['train', '--model', 'pse', '--step', '10'], /unknown option '--step' \(did you mean --steps\?\)$/m],
    [['eval', '--run', 'x', '--no-generaton'], /unknown option '--no-generaton' \(did you mean --no-generation\?\)$/m],
    [['trian', '--steps', '10'], /unknown command 'trian' \(did you mean train\?\)/],
    [['train', '--model', 'pse', '--dataset', '/tmp/probsem-no-such-dir'], /^probsem: no such directory: \/tmp\/probsem-no-such-dir$/m],
    [['train', '--model', 'pse', '--dataset', 'fashion-mnst'], /unknown dataset 'fashion-mnst': known datasets are fashion-mnist, fashion-mnist-subset, mnist;/],
    [['train', '--model', 'pse', '--steps', '5', '--epochs', '1'], /either --steps or --epochs/],
    // Model-option flags apply where the model's registered schema has the option.
    [['train', '--model', 'pse', '--beta', '2'], /--beta applies to --model vae, beta-vae, scan, tvae, sparse-ae$/m],
    [['train', '--model', 'vae', '--classifier-weight', '2'], /--classifier-weight applies to --model pse-star$/m],
    [['train', '--model', 'classifier'], /unknown model 'classifier': choose one of vae, pse, pse-star, .*poe/],
    [['train', '--model', 'pse', '--backend', 'gpu9000'], /unknown backend 'gpu9000'/],
    [['eval', '--run', '/nonexistent/run'], /model directory \/nonexistent\/run does not exist/],
    [['eval'], /--run is required/],
  ];
  for (const [args, re] of cases) {
    const r = cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')} → exit ${r.code}: ${r.err}`);
    assert.match(r.err, re);
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  }
});

test('train → eval --json → generate → annotate, end to end on the shipped subset', async () => {
  const run = join(tmp(), 'run');
  let r = cli('train', '--model', 'pse-star', '--dataset', 'fashion-mnist-subset', '--latent', '4', '--steps', '30', '--batch', '50', '--out', run, '--quiet');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /saved pse-star \(latent 4\)/);
  assert.ok(existsSync(join(run, 'model.json')) && existsSync(join(run, 'weights.bin')) && existsSync(join(run, 'train.jsonl')));

  r = cli('eval', '--run', run, '--json', '--samples', '50', '--repeats', '2', '--judge-epochs', '1');
  assert.equal(r.code, 0, r.err);
  const m = JSON.parse(r.out.trim().split('\n').pop()!);
  for (const k of ['reconstructionError', 'annotationAccuracy', 'generationAccuracy', 'judgeAccuracy']) {
    assert.equal(typeof m[k], 'number', `${k} missing`);
  }
  for (const k of ['annotationAccuracy', 'generationAccuracy', 'judgeAccuracy']) assert.ok(m[k] >= 0 && m[k] <= 1, `${k} = ${m[k]}`);
  assert.ok(m.judgeAccuracy > 0.6, `a one-epoch judge still classifies: ${m.judgeAccuracy}`);
  assert.ok(m.reconstructionError > 0);
  const saved = JSON.parse(readFileSync(join(run, 'model.json'), 'utf8'));
  assert.equal(saved.metrics.annotationAccuracy, m.annotationAccuracy, 'metrics recorded in model.json');

  const grid = join(tmp(), 'grid.png');
  r = cli('generate', '--run', run, '--label', 'sneaker', '--n', '6', '--out', grid);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual([...readFileSync(grid).subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');

  r = cli('generate', '--run', run, '--label', 'spaceship', '--out', grid);
  assert.equal(r.code, 2);
  assert.match(r.err, /label 'spaceship' is not in the model's vocabulary: T-shirt\/top, Trouser/);

  const ds = await loadDataset('fashion-mnist-subset');
  const png = join(tmp(), 'item.png');
  writeFileSync(png, encodeGridPng(imagesToFloat(ds.test, [0], 784), 1, { cols: 1, height: 28, width: 28, pad: 0, scale: 1 }));
  r = cli('annotate', '--run', run, png, '--json');
  assert.equal(r.code, 0, r.err);
  const a = JSON.parse(r.out);
  assert.equal(a.labels.length, 5);
  const total = a.labels.reduce((s: number, l: { probability: number }) => s + l.probability, 0);
  assert.ok(total > 0 && total <= 1.0001);

  r = cli('annotate', '--run', run, join(tmp(), 'missing.png'));
  assert.equal(r.code, 2);
  assert.match(r.err, /missing\.png not found/);
});

test('input validation: out-of-range numbers, missing files, a dataset of another image size, --debug', async () => {
  const run = join(tmp(), 'run');
  let r = cli('train', '--model', 'pse', '--dataset', 'fashion-mnist-subset', '--latent', '2', '--steps', '3', '--batch', '20', '--out', run, '--quiet');
  assert.equal(r.code, 0, r.err);

  // A folder of 14×14 images: the run was trained on 28×28.
  const small = tmp();
  const n = 30;
  await writeIdxFile(join(small, 'train-images-idx3-ubyte'), { dims: [n, 14, 14], data: new Uint8Array(n * 196).fill(9) }, { gzip: false });
  await writeIdxFile(join(small, 't10k-images-idx3-ubyte'), { dims: [n, 14, 14], data: new Uint8Array(n * 196).fill(9) }, { gzip: false });
  const labels = { dims: [n], data: new Uint8Array(n).map((_, i) => i % 10) };
  await writeIdxFile(join(small, 'train-labels-idx1-ubyte'), labels, { gzip: false });
  await writeIdxFile(join(small, 't10k-labels-idx1-ubyte'), labels, { gzip: false });

  const cases: [string[], RegExp][] = [
    [['train', '--model', 'pse', '--batch', '0'], /--batch must be an integer in \[1, /],
    [['train', '--model', 'pse', '--steps=-3'], /--steps must be an integer in \[1, /],
    [['train', '--model', 'pse', '--steps', '-3'], /Option '--steps' argument is ambiguous/],
    [['train', '--model', 'pse', '--steps', '2.5'], /--steps must be an integer/],
    [['train', '--model', 'pse', '--workers', '100'], /--workers must be an integer in \[1, 64\]/],
    [['train', '--model', 'pse', '--lr=-1'], /--lr must be a number > 0/],
    [['train', '--model', 'pse', '--lr', 'NaN'], /--lr must be a number > 0/],
    [['train', '--model', 'pse', '--dataset', join(small, 'nope'), '--steps', '1', '--out', join(tmp(), 'x')], /nope/],
    [['train', '--model', 'pse', '--dataset', 'fashion-mnist-subset', '--batch', '20000', '--steps', '1', '--out', join(tmp(), 'x')], /--batch 20000 exceeds the 10000 training images/],
    [['eval', '--run', run, '--dataset', small, '--json'], /the model expects 28×28 images but dataset .* has 14×14 images/],
    [['eval', '--run', run, '--samples', '0'], /--samples must be an integer in \[1, /],
    [['generate', '--run', run, '--label', 'sneaker', '--n', '100000', '--out', join(tmp(), 'g.png')], /--n must be an integer in \[1, /],
    [['annotate', '--run', run], /image/i],
    [['train', '--model', 'pse', '--dataset', 'fashion-mnist-subset', '--steps', '3', '--out', run], /already holds a run: use --resume/],
    [['similar', '--run', run, '--image', '99999'], /--image 99999: the test split has 2000 images/],
    [['similar', '--run', run, '--image', join(small, 'nope.png')], /neither a test index nor an existing file/],
    [['index', 'rebuild'], /expected 'build' or 'query', got 'rebuild'/],
    [['index', 'build', '--run', run], /give --out IDX, --store URL or both/],
    [['index', 'query', join(small, 'train-labels-idx1-ubyte'), '--words', 'Sneaker'], /is not a valid KL index/],
    [['train', '--model', 'informed', '--dataset', 'paired:fashion-mnist-subset?equal=sometimes', '--steps', '1', '--out', join(tmp(), 'x')], /equal must be allow or forbid/],
    [['train', '--model', 'informed', '--dataset', 'fashion-mnist-subset', '--latent', '4', '--steps', '1', '--out', join(tmp(), 'x')], /use latent = 10/],
  ];
  for (const [args, re] of cases) {
    r = cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')} → exit ${r.code}: ${r.err}`);
    assert.match(r.err, re, args.join(' '));
    assert.doesNotMatch(r.err, /\n\s+at /, `no stack trace for ${args.join(' ')}`);
  }
  // similar and the KL index end to end: the index returns what retrieve computes image by image.
  r = cli('similar', '--run', run, '--image', '3', '--k', '5', '--json');
  assert.equal(r.code, 0, r.err);
  const sim = JSON.parse(r.out);
  assert.equal(sim.results.length, 5);
  assert.ok(sim.results.every((x: { id: number }) => x.id !== 3), 'the query image is left out');
  const idx = join(tmp(), 'test.idx');
  r = cli('index', 'build', '--run', run, '--out', idx);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /indexed 2000 diagonal posteriors/);
  r = cli('index', 'query', idx, '--words', 'Sneaker', '--k', '5', '--json');
  assert.equal(r.code, 0, r.err);
  const viaIndex = JSON.parse(r.out).queries[0].results;
  r = cli('retrieve', '--run', run, '--words', 'Sneaker', '--k', '5', '--json');
  const viaRetrieve = JSON.parse(r.out).results;
  assert.deepEqual(viaIndex.map((x: { id: number }) => x.id), viaRetrieve.map((x: { id: number }) => x.id));
  viaIndex.forEach((x: { kl: number }, i: number) => assert.ok(Math.abs(x.kl - viaRetrieve[i].kl) <= 1e-3 * (1 + x.kl), `KL ${x.kl} vs ${viaRetrieve[i].kl}`));
  // --debug adds the stack trace for a bug report.
  r = cli('eval', '--run', run, '--dataset', small, '--json', '--debug');
  assert.notEqual(r.code, 0);
  assert.match(r.err, /14×14/);
  assert.match(r.err, /\n\s+at /, 'stack trace with --debug');
});

test('Ctrl-C during train checkpoints the current step, says how to resume (exit 130), and that command finishes the run', async () => {
  const out = join(tmp(), 'run');
  const args = ['train', '--model', 'pse-star', '--dataset', 'fashion-mnist-subset', '--latent', '2', '--batch', '10', '--steps', '2000',
    '--set', 'encoderHidden=[16]', '--set', 'decoderHidden=[16]', '--set', 'classifierHidden=[16]', '--out', out];
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: { ...process.env, PROBSEM_CACHE: cache } });
  let err = '';
  let sent = false;
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    // The first progress line (10 %) means the loop is running; interrupt it there.
    if (!sent && /train pse-star \d+\/2000/.test(err)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  assert.ok(sent, `no progress seen: ${err}`);
  assert.equal(code, 130, err);
  const m = /^stopped at step (\d+); checkpoint in (\S+); resume with: (probsem train .* --resume)$/m.exec(err);
  assert.ok(m, err);
  const step = Number(m[1]);
  assert.ok(step >= 200 && step < 2000, `stopped at step ${step}`);
  assert.equal(m[2], join(out, 'checkpoint.bin'));
  assert.equal(readCheckpoint(m[2]).header.step, step, 'the checkpoint holds the step it names');
  assert.ok(!existsSync(join(out, 'model.json')), 'an interrupted run saves no final model');

  // The printed command, as a shell would run it, continues from that step to the end.
  const resumed = spawnSync('bash', ['-c', m[3].replace(/^probsem /, `'${process.execPath}' --import tsx src/cli/main.ts `) + ' --quiet'], {
    encoding: 'utf8',
    env: { ...process.env, PROBSEM_CACHE: cache },
  });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /saved pse-star \(latent 2\) to .*: 2000 steps/);
  assert.equal(readCheckpoint(m[2]).header.step, 2000);
});

test('eval on data with no shipped or cached judge says, before training one, how to skip it', async () => {
  // 100 real training images in a folder of their own: content no shipped judge was made for.
  const ds = await loadDataset('fashion-mnist-subset');
  const dir = tmp();
  const take = (n: number, split: typeof ds.train) => ({ images: split.images.subarray(0, n * 784), labels: split.labels.subarray(0, n) });
  for (const [prefix, n, split] of [['train', 100, ds.train], ['t10k', 20, ds.test]] as const) {
    const { images, labels } = take(n, split);
    await writeIdxFile(join(dir, `${prefix}-images-idx3-ubyte`), { dims: [n, 28, 28], data: images }, { gzip: false });
    await writeIdxFile(join(dir, `${prefix}-labels-idx1-ubyte`), { dims: [n], data: labels }, { gzip: false });
  }
  writeFileSync(join(dir, 'classes.txt'), ds.classNames.join('\n'));
  const run = join(tmp(), 'run');
  let r = cli('train', '--model', 'pse-star', '--dataset', dir, '--latent', '2', '--steps', '2', '--batch', '20', '--out', run, '--quiet');
  assert.equal(r.code, 0, r.err);
  r = cli('eval', '--run', run, '--judge-epochs', '1', '--samples', '5', '--repeats', '1', '--triplets', '0');
  assert.equal(r.code, 0, r.err);
  const lines = r.err.split('\n');
  const notice = lines.findIndex((l) => /^note: training the judge classifier for .* first \(1 epochs over 100 images.*; skip generation accuracy with --no-generation$/.test(l));
  assert.ok(notice >= 0, r.err);
  assert.ok(notice < lines.findIndex((l) => l.startsWith('train judge')), 'the notice comes before the training');
  assert.match(r.out, /judge test accuracy/);
});
