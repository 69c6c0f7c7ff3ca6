import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/core/random.js';
import { type Buf, Kernels } from '../src/core/wasm/kernels.js';

const pool: Kernels[] = [];
async function kernels(threads: number, fma = true): Promise<Kernels> {
  const k = await Kernels.create({ threads, fma });
  pool.push(k);
  return k;
}
after(async () => {
  for (const k of pool) await k.dispose();
});

function filled(k: Kernels, n: number, rng: Rng, lo = -1, hi = 1): Buf {
  const b = k.alloc(n);
  rng.fillUniform(k.view(b), lo, hi);
  return b;
}

/** op(A) op(B) + bias (+ C0), ReLU, in double precision. */
function reference(o: { a: Float32Array; b: Float32Array; c0: Float32Array | null; bias: Float32Array | null; m: number; n: number; k: number; transA: boolean; transB: boolean; relu: boolean }): Float64Array {
  const out = new Float64Array(o.m * o.n);
  for (let i = 0; i < o.m; i++) {
    for (let j = 0; j < o.n; j++) {
      let s = o.c0 ? o.c0[i * o.n + j] : o.bias ? o.bias[j] : 0;
      for (let q = 0; q < o.k; q++) s += (o.transA ? o.a[q * o.m + i] : o.a[i * o.k + q]) * (o.transB ? o.b[j * o.k + q] : o.b[q * o.n + j]);
      out[i * o.n + j] = o.relu ? Math.max(0, s) : s;
    }
  }
  return out;
}

test('matmul matches a double-precision reference in every transpose form, ragged shapes, bias, ReLU and accumulation', async () => {
  const rng = new Rng(1);
  for (const fma of [true, false]) {
    const k = await kernels(2, fma);
    // Shapes: tiny, odd rows, columns not a multiple of 16, K spanning several blocks (more than 784), and
    // large enough to be split over both threads and (for Aᵀ) to take the transposed copy.
    const shapes: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [37, 53, 29], [2, 17, 300], [101, 70, 513], [100, 64, 784], [130, 48, 100], [5, 33, 1700], [150, 40, 1600]];
    for (const [m, n, kk] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const mode of ['plain', 'bias-relu', 'accumulate'] as const) {
            const a = filled(k, m * kk, rng);
            const b = filled(k, kk * n, rng);
            const bias = mode === 'bias-relu' ? filled(k, n, rng) : null;
            const c = filled(k, m * n, rng);
            const c0 = mode === 'accumulate' ? k.view(c).slice() : null;
            k.matmul({ a, b, c, m, n, k: kk, transA, transB, bias, relu: mode === 'bias-relu', accumulate: mode === 'accumulate' });
            const want = reference({ a: k.view(a), b: k.view(b), c0, bias: bias ? k.view(bias) : null, m, n, k: kk, transA, transB, relu: mode === 'bias-relu' });
            const got = k.view(c);
            let worst = 0;
            for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
            const tol = 1e-5 * Math.sqrt(kk) * 4;
            assert.ok(worst <= tol, `fma=${fma} ${m}x${n}x${kk} transA=${transA} transB=${transB} ${mode}: max error ${worst}`);
          }
        }
      }
    }
  }
});

test('two threads give bit-identical products to one thread', async () => {
  const one = await kernels(1);
  const two = await kernels(2);
  for (const [m, n, kk, transA, transB] of [[100, 512, 784, false, false], [784, 512, 100, true, false], [100, 784, 512, false, true], [99, 333, 100, false, false]] as const) {
    const rng1 = new Rng(7);
    const rng2 = new Rng(7);
    const run = (k: Kernels, rng: Rng) => {
      const a = filled(k, m * kk, rng);
      const b = filled(k, kk * n, rng);
      const bias = filled(k, n, rng);
      const c = k.alloc(m * n);
      k.matmul({ a, b, c, m, n, k: kk, transA, transB, bias, relu: true });
      return k.view(c).slice();
    };
    assert.deepEqual(run(two, rng2), run(one, rng1), `${m}x${n}x${kk}`);
  }
});

test('matmul refuses buffers smaller than the shapes', async () => {
  const k = await kernels(1);
  assert.throws(() => k.matmul({ a: k.alloc(10), b: k.alloc(10), c: k.alloc(10), m: 4, n: 4, k: 4 }), /buffers too small for 4x4 by 4x4/);
  assert.throws(() => k.alloc(-1), /non-negative integer/);
});

test('the Adam kernel follows Adam in double precision (bias correction, learning-rate scale)', async () => {
  const k = await kernels(2);
  const n = 70001; // split over both threads, with a ragged end
  const rng = new Rng(3);
  const p = filled(k, n, rng);
  const m = k.alloc(n);
  const v = k.alloc(n);
  const refP = Float64Array.from(k.view(p));
  const refM = new Float64Array(n);
  const refV = new Float64Array(n);
  const [beta1, beta2, eps, lr] = [0.9, 0.999, 1e-8, 3e-3];
  for (let t = 1; t <= 5; t++) {
    const g = filled(k, n, rng);
    const gv = k.view(g);
    const bc1 = 1 - beta1 ** t;
    const sqrtBc2 = Math.sqrt(1 - beta2 ** t);
    for (let i = 0; i < n; i++) {
      refM[i] = beta1 * refM[i] + (1 - beta1) * gv[i];
      refV[i] = beta2 * refV[i] + (1 - beta2) * gv[i] * gv[i];
      refP[i] -= ((lr / bc1) * refM[i]) / (Math.sqrt(refV[i]) / sqrtBc2 + eps);
    }
    k.adam(p, g, m, v, 0, n, { step: lr / bc1, sqrtBc2, beta1, beta2, eps });
  }
  const got = k.view(p);
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - refP[i]));
  assert.ok(worst < 1e-6, `max |Δp| ${worst}`);
  assert.ok(Math.abs(k.view(m)[5] - refM[5]) < 1e-6 && Math.abs(k.view(v)[n - 1] - refV[n - 1]) < 1e-7);
});

test('Bernoulli likelihood kernel: loss, gradient and probabilities against a double-precision reference', async () => {
  const k = await kernels(1);
  const rng = new Rng(5);
  const n = 4 * 977 + 3; // ragged end
  const l = filled(k, n, rng, -30, 30);
  const lv = k.view(l);
  lv.set([0, -0, 100, -100, 1e-8, -88, 88], 0); // edge values
  const x = filled(k, n, rng, 0, 1);
  const g = k.alloc(n);
  const probs = k.alloc(n);
  const sum = k.bernoulliLogits(l, x, g, probs, n, 0.5);
  const xv = k.view(x);
  let want = 0;
  let worstG = 0;
  let worstP = 0;
  for (let i = 0; i < n; i++) {
    const li = lv[i];
    want += Math.max(li, 0) + Math.log1p(Math.exp(-Math.abs(li))) - xv[i] * li;
    const sig = 1 / (1 + Math.exp(-li));
    worstP = Math.max(worstP, Math.abs(k.view(probs)[i] - sig));
    worstG = Math.max(worstG, Math.abs(k.view(g)[i] - (sig - xv[i]) * 0.5));
  }
  assert.ok(Math.abs(sum - want) / want < 1e-6, `sum ${sum} vs ${want}`);
  assert.ok(worstP < 1e-6, `probabilities off by ${worstP}`);
  assert.ok(worstG < 1e-6, `gradient off by ${worstG}`);
  // Without the probabilities buffer the loss is the same.
  assert.equal(k.bernoulliLogits(l, x, g, null, n, 0.5), sum);
});

test('sigmoid backward adds gp·s·(1−s) onto the gradient', async () => {
  const k = await kernels(1);
  const rng = new Rng(6);
  const n = 1027;
  const g = filled(k, n, rng);
  const gp = filled(k, n, rng);
  const s = filled(k, n, rng, 0, 1);
  const g0 = k.view(g).slice();
  k.sigmoidBackwardAdd(g, gp, s, n);
  const [gv, gpv, sv] = [k.view(g), k.view(gp), k.view(s)];
  for (let i = 0; i < n; i++) assert.ok(Math.abs(gv[i] - (g0[i] + gpv[i] * sv[i] * (1 - sv[i]))) < 1e-6);
});

test('countNonFinite finds NaN and ±Infinity anywhere, on both threads', async () => {
  const k = await kernels(2);
  const n = 200003;
  const b = k.alloc(n);
  assert.equal(k.countNonFinite(b), 0);
  const v = k.view(b);
  v[0] = NaN;
  v[n - 1] = Infinity;
  v[150000] = -Infinity;
  v[7] = 3.4e38;
  assert.equal(k.countNonFinite(b), 3);
});

test('the committed kernel binary is built from the current kernels.c', (t) => {
  const tools = ['clang', 'wasm-ld', 'wasm2wat'].filter((c) => spawnSync('sh', ['-c', `command -v ${c} || command -v ${c}-14`]).status !== 0);
  if (tools.length > 0) {
    t.skip(`needs ${tools.join(', ')} (apt-get install clang lld wabt) to rebuild the kernels`);
    return;
  }
  const out = join(mkdtempSync(join(tmpdir(), 'probsem-kernels-')), 'kernels-binary.ts');
  const r = spawnSync('sh', ['scripts/build-kernels.sh'], { env: { ...process.env, KERNELS_OUT: out }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(out, 'utf8'), readFileSync('src/core/wasm/kernels-binary.ts', 'utf8'), 'run scripts/build-kernels.sh and commit the result');
});

test('a trap on the helper thread is reported, not waited on forever', async () => {
  const k = await kernels(2);
  const [m, n, kk] = [64, 64, 64];
  const a = k.alloc(m * kk);
  const b = k.alloc(kk * n);
  // A C whose last row ends past the memory: the main thread's columns (the first 32) fit, the
  // helper's do not, so only the helper traps.
  const size = k.memory.buffer.byteLength;
  const c = { ptr: size - 4 * ((m - 1) * n + 32) - 4, length: m * n };
  assert.throws(() => k.matmul({ a, b, c, m, n, k: kk }), /failed on the helper thread/);
  // The kernels still work afterwards.
  const ok = k.alloc(m * n);
  k.view(a).fill(1);
  k.view(b).fill(2);
  k.matmul({ a, b, c: ok, m, n, k: kk });
  assert.equal(k.view(ok)[m * n - 1], 2 * kk);
});
