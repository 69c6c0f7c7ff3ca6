// Property-based fuzzing of every reader of user-supplied files: each random or mutated input must
// either give valid output or a ProbsemError naming the problem — never a crash, a hang, another
// error type or a huge allocation. PROBSEM_FUZZ_RUNS (default 150 per target) and PROBSEM_FUZZ_SEED
// scale it up for a long run.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { setupBackend } from './helpers.js';
import { ProbsemError } from '../src/core/errors.js';
import { encodeIdx, parseIdx, readIdxFile } from '../src/data/idx.js';
import { encodeGridPng } from '../src/data/png.js';
import { decodeImage } from '../src/data/image-decode.js';
import { createModel } from '../src/models/registry.js';
import { loadModel, saveModel } from '../src/models/persist.js';
import type { Trainable } from '../src/models/base.js';
import { readCheckpoint, writeCheckpoint } from '../src/train/checkpoint.js';
import { Adam } from '../src/train/adam.js';
import { Kernels } from '../src/core/wasm/kernels.js';
import { FlatParams } from '../src/ops/flat-params.js';
import { gzipSync } from 'node:zlib';
import { Rng } from '../src/core/random.js';
import { readWordVectors, writeWordVectors } from '../src/text/readers.js';
import { decodeCache, encodeCache } from '../src/text/wordnet.js';
import { WordVectors } from '../src/text/word-vectors.js';
import sharp from 'sharp';
import { JPEG_COLOUR_45x37, JPEG_GREY_56 } from './server.jpegs.js';

const RUNS = Number(process.env.PROBSEM_FUZZ_RUNS ?? 150);
const SEED = Number(process.env.PROBSEM_FUZZ_SEED ?? 20261122);
/** No single case may take longer than this (a hang or a giant allocation would). */
const MAX_CASE_MS = 2000;

before(async () => {
  await setupBackend();
});

const tmp = () => mkdtempSync(join(tmpdir(), 'probsem-fuzz-'));

/** A mutation of `base`: truncation, bit flips, extreme 32-bit words, inserted bytes, or noise. */
function mutated(base: Uint8Array): fc.Arbitrary<Uint8Array> {
  const n = base.length;
  const word = fc.oneof(fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000), fc.nat({ max: 0xffffffff }));
  return fc.oneof(
    fc.nat({ max: n }).map((k) => base.slice(0, k)),
    fc.array(fc.tuple(fc.nat({ max: n - 1 }), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }).map((flips) => {
      const b = base.slice();
      for (const [i, bit] of flips) b[i] ^= 1 << bit;
      return b;
    }),
    fc.tuple(fc.nat({ max: Math.max(0, n - 4) }), word, fc.boolean()).map(([off, w, bigEndian]) => {
      const b = base.slice();
      new DataView(b.buffer).setUint32(off, w, !bigEndian);
      return b;
    }),
    fc.tuple(fc.nat({ max: n }), fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([at, ins]) => {
      const b = new Uint8Array(n + ins.length);
      b.set(base.subarray(0, at));
      b.set(ins, at);
      b.set(base.subarray(at), at + ins.length);
      return b;
    }),
    fc.uint8Array({ maxLength: 512 }),
  );
}

/** fast-check's default report prints whole counterexamples (megabytes of bytes): keep the error. */
function shortReport<T>(d: fc.RunDetails<T>): void {
  if (!d.failed) return;
  const err = d.errorInstance as Error | undefined;
  throw new Error(`property failed after ${d.numRuns} cases (seed ${d.seed}, path ${d.counterexamplePath}): ${err?.message ?? 'no message'}`);
}

interface Tally {
  ok: number;
  rejected: number;
}

/** Runs `f`: a ProbsemError counts as a clean rejection, any other throw fails the property. */
function expectCleanly<T>(tally: Tally, f: () => T, validate: (r: T) => void): void {
  const t0 = performance.now();
  let r: T;
  try {
    r = f();
  } catch (e) {
    if (!(e instanceof ProbsemError)) throw new Error(`not a ProbsemError: ${(e as Error)?.stack ?? String(e)}`);
    assert.ok(e.message.length > 10, 'the message says something');
    tally.rejected++;
    return;
  } finally {
    const ms = performance.now() - t0;
    assert.ok(ms < MAX_CASE_MS, `a case took ${ms.toFixed(0)} ms`);
  }
  validate(r);
  tally.ok++;
}

async function expectCleanlyAsync<T>(tally: Tally, f: () => Promise<T>, validate: (r: T) => void): Promise<void> {
  let r: T;
  try {
    r = await f();
  } catch (e) {
    if (!(e instanceof ProbsemError)) throw new Error(`not a ProbsemError: ${(e as Error)?.stack ?? String(e)}`);
    tally.rejected++;
    return;
  }
  validate(r);
  tally.ok++;
}

const memoryMb = () => process.memoryUsage().rss / 2 ** 20;
const report = (t: { diagnostic(s: string): void }, name: string, tally: Tally) =>
  t.diagnostic(`${name}: ${tally.ok + tally.rejected} cases, ${tally.ok} valid, ${tally.rejected} rejected with a ProbsemError`);

test('IDX reader: mutated and random buffers give a valid array or a DataFormatError', (t) => {
  const images = new Uint8Array(3 * 5 * 4).map((_, i) => (i * 37) % 256);
  const base = encodeIdx({ dims: [3, 5, 4], data: images });
  const tally = { ok: 0, rejected: 0 };
  const rss0 = memoryMb();
  fc.assert(
    fc.property(mutated(base), (buf) =>
      expectCleanly(
        tally,
        () => parseIdx(buf, 'fuzz.idx'),
        (r) => {
          assert.ok(r.dims.length >= 1 && r.dims.length <= 4 && r.dims.every((d) => Number.isInteger(d) && d > 0));
          assert.equal(r.data.length, r.dims.reduce((a, b) => a * b, 1));
        },
      ),
    ),
    { numRuns: RUNS * 4, seed: SEED, reporter: shortReport },
  );
  assert.ok(memoryMb() - rss0 < 300, 'no large allocation');
  report(t, 'IDX parse', tally);
  assert.ok(tally.rejected > 0 && tally.ok > 0, `the generator reaches both outcomes (${tally.ok} valid, ${tally.rejected} rejected)`);
});

test('IDX files: mutated gzip streams are rejected cleanly', async (t) => {
  const base = gzipSync(encodeIdx({ dims: [4, 6], data: new Uint8Array(24).fill(7) }));
  const dir = tmp();
  const tally = { ok: 0, rejected: 0 };
  await fc.assert(
    fc.asyncProperty(mutated(new Uint8Array(base)), async (buf: Uint8Array): Promise<void> => {
      const path = join(dir, 'x.idx.gz');
      writeFileSync(path, buf);
      await expectCleanlyAsync(tally, () => readIdxFile(path, { maxDecompressedBytes: 1 << 20 }), (r) => {
        assert.equal(r.data.length, r.dims.reduce((a, b) => a * b, 1));
      });
    }),
    { numRuns: RUNS, seed: SEED, reporter: shortReport },
  );
  report(t, 'IDX gzip file', tally);
  rmSync(dir, { recursive: true, force: true });
});

/** A mutated picture decodes to 28×28 values in [0, 1] or is refused with a ProbsemError, in bounded time. */
async function decodesCleanly(tally: Tally, buf: Uint8Array): Promise<void> {
  const t0 = performance.now();
  await expectCleanlyAsync(
    tally,
    () => decodeImage(buf, { height: 28, width: 28, source: 'fuzz' }),
    (r) => {
      assert.equal(r.pixels.length, 784);
      assert.ok(r.pixels.every((v) => v >= 0 && v <= 1), 'values in [0, 1]');
    },
  );
  const ms = performance.now() - t0;
  assert.ok(ms < MAX_CASE_MS, `a case took ${ms.toFixed(0)} ms`);
}

test('image decoder: mutated PNGs give 28×28 values in [0, 1] or a ProbsemError', async (t) => {
  const img = new Float32Array(4 * 28 * 28).map((_, i) => (i % 97) / 96);
  const base = new Uint8Array(encodeGridPng(img, 4, { height: 28, width: 28, cols: 2 }));
  const tally = { ok: 0, rejected: 0 };
  await fc.assert(
    fc.asyncProperty(mutated(base), (buf) => decodesCleanly(tally, buf)),
    { numRuns: RUNS, seed: SEED, reporter: shortReport },
  );
  report(t, 'PNG decode', tally);
  // Nearly every mutation breaks a CRC, so valid outcomes are rare; the unmutated image must decode.
  assert.ok(tally.rejected > 0, 'some inputs were rejected');
  assert.equal((await decodeImage(base, { height: 28, width: 28 })).pixels.length, 784);
});

/** The small model every loader case starts from. */
function smallModel(): Trainable & { config: object } {
  return createModel('pse', { inputDim: 784, numClasses: 10, latent: 3, encoderHidden: [8], decoderHidden: [8] }, 1) as Trainable & {
    config: object;
  };
}

/** Replaces the value at a random path of a JSON value with `v`. */
function replaceAt(root: unknown, pick: number, v: unknown): unknown {
  const paths: (string | number)[][] = [];
  const walk = (x: unknown, p: (string | number)[]) => {
    paths.push(p);
    if (Array.isArray(x)) x.forEach((y, i) => walk(y, [...p, i]));
    else if (x && typeof x === 'object') for (const [k, y] of Object.entries(x)) walk(y, [...p, k]);
  };
  walk(root, []);
  const path = paths[pick % paths.length];
  if (path.length === 0) return v;
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur = copy;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  cur[path[path.length - 1]] = v;
  return copy;
}

const hostileValue = fc.oneof(
  fc.constantFrom(null, -1, 0, 1e9, 2 ** 31, -(2 ** 31), 1e308, Number.MAX_SAFE_INTEGER, '', 'x', [], {}, [1e9, 1e9], true),
  fc.jsonValue({ maxDepth: 2 }),
);

test('model directory loader: mutated model.json or weights.bin load correctly or fail with a ProbsemError', (t) => {
  const m = smallModel();
  const dir = tmp();
  saveModel(dir, m, { classNames: Array.from({ length: 10 }, (_, i) => `c${i}`) });
  const json = readFileSync(join(dir, 'model.json'), 'utf8');
  const weights = new Uint8Array(readFileSync(join(dir, 'weights.bin')));
  // Older files have no content checksum, so the checks behind it still face hostile input: fuzz both.
  const { contentSha256, ...meta } = JSON.parse(json) as Record<string, unknown>;
  const oldJson = JSON.stringify(meta, null, 2);
  const tally = { ok: 0, rejected: 0 };
  const rss0 = memoryMb();
  const check = (jsonText: string | Uint8Array, w: Uint8Array) => {
    const d = tmp();
    writeFileSync(join(d, 'model.json'), jsonText);
    writeFileSync(join(d, 'weights.bin'), w);
    expectCleanly(
      tally,
      () => loadModel(d),
      (r) => {
        assert.equal(r.model.params.serialize().blob.byteLength, r.meta.weights.bytes);
        r.model.params.dispose();
      },
    );
    rmSync(d, { recursive: true, force: true });
  };
  fc.assert(
    fc.property(
      fc.oneof(
        fc.tuple(fc.nat(), hostileValue, fc.boolean()).map(([pick, v, old]) => {
          const m = replaceAt(meta, pick, v);
          return { json: JSON.stringify(old || m === null || typeof m !== 'object' ? m : { ...m, contentSha256 }), w: weights };
        }),
        fc.constantFrom(json, oldJson).chain((base) => mutated(new TextEncoder().encode(base))).map((j) => ({ json: j as string | Uint8Array, w: weights })),
        fc.tuple(mutated(weights), fc.constantFrom(json, oldJson)).map(([w, j]) => ({ json: j as string | Uint8Array, w })),
      ),
      ({ json: j, w }) => check(j, w),
    ),
    { numRuns: RUNS * 2, seed: SEED, reporter: shortReport },
  );
  assert.ok(memoryMb() - rss0 < 500, `no large allocation (rss grew ${(memoryMb() - rss0).toFixed(0)} MB)`);
  report(t, 'model directory', tally);
  assert.ok(tally.rejected > 0 && tally.ok > 0, `both outcomes (${tally.ok} valid, ${tally.rejected} rejected)`);
});

test('checkpoint reader: mutated checkpoints are read and loaded correctly or rejected cleanly', async (t) => {
  const m = smallModel();
  const kernels = await Kernels.create({ threads: 1 });
  const adam = new Adam(kernels, new FlatParams(kernels, m.params), 1e-3);
  // One optimizer state reads every mutated file (its layout is the small model's).
  const loader = new Adam(kernels, new FlatParams(kernels, smallModel().params), 1e-3);
  const dir = tmp();
  const path = join(dir, 'checkpoint.bin');
  const p = m.params.serialize();
  const o = adam.serialize();
  writeCheckpoint(
    path,
    { step: 3, model: 'pse', config: m.config, seed: 1, batchSize: 10, lr: 1e-3, replicas: 1, params: p.manifest, optimizer: { t: o.t, tensors: o.manifest, bytes: o.blob.byteLength } },
    p.blob,
    o.blob,
  );
  const base = new Uint8Array(readFileSync(path));
  // Older checkpoints have no header checksum, so the header checks behind it still face hostile input.
  const hlen = Buffer.from(base).readUInt32LE(8);
  const { headerSha256: _, ...oldHeader } = JSON.parse(Buffer.from(base).toString('utf8', 12, 12 + hlen)) as Record<string, unknown>;
  const withHeader = (h: object) => {
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length);
    return new Uint8Array(Buffer.concat([base.subarray(0, 8), len, json, base.subarray(12 + hlen)]));
  };
  const tally = { ok: 0, rejected: 0 };
  const cases = fc.oneof(
    { arbitrary: fc.constantFrom(base, withHeader(oldHeader)).chain(mutated), weight: 9 },
    // An edit an older checkpoint cannot detect (and need not: any step is a step) must still read.
    { arbitrary: fc.nat({ max: 1e6 }).map((step) => withHeader({ ...oldHeader, step })), weight: 1 },
  );
  fc.assert(
    fc.property(cases, (buf) => {
      writeFileSync(path, buf);
      expectCleanly(
        tally,
        () => {
          const ck = readCheckpoint(path);
          const fresh = smallModel();
          fresh.params.load(ck.header.params, ck.params, path);
          loader.load(ck.header.optimizer.t, ck.header.optimizer.tensors, ck.optimizer, path);
          fresh.params.dispose();
          return ck;
        },
        (ck) => assert.ok(Number.isInteger(ck.header.step)),
      );
    }),
    { numRuns: RUNS * 2, seed: SEED, reporter: shortReport },
  );
  report(t, 'checkpoint', tally);
  await kernels.dispose();
  assert.ok(tally.rejected > 0 && tally.ok > 0, `both outcomes (${tally.ok} valid, ${tally.rejected} rejected)`);
});

test('word-vector readers: mutated .bin, .vec and .txt.gz files give a valid table or a DataFormatError', async (t) => {
  const words = ['sneaker', 'boot', 'ankle_boot', 't-shirt', 'bag'];
  const rng = new Rng(5);
  const wv = new WordVectors(words, rng.fillNormal(new Float32Array(words.length * 6)), 6, 'fuzz');
  const dir = tmp();
  const bases: { ext: string; bytes: Uint8Array }[] = [];
  for (const [ext, format, header] of [['bin', 'word2vec-bin', true], ['vec', 'text', true], ['txt', 'text', false], ['txt.gz', 'text', true]] as const) {
    const path = join(dir, `base.${ext}`);
    writeWordVectors(path, wv, format, { header });
    bases.push({ ext, bytes: new Uint8Array(readFileSync(path)) });
  }
  const tally = { ok: 0, rejected: 0 };
  let k = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: bases.length - 1 }).chain((b) => mutated(bases[b].bytes).map((bytes) => ({ ext: bases[b].ext, bytes }))),
      fc.boolean(),
      async ({ ext, bytes }, filtered): Promise<void> => {
        const path = join(dir, `case-${k++}.${ext}`);
        writeFileSync(path, bytes);
        const t0 = performance.now();
        await expectCleanlyAsync(tally, () => readWordVectors(path, filtered ? { vocabulary: ['boot', 'bag'] } : {}), (r) => {
          assert.equal(r.data.length, r.size * r.dim);
          assert.ok(r.data.every(Number.isFinite), 'finite values');
        });
        assert.ok(performance.now() - t0 < MAX_CASE_MS, 'no hang');
        rmSync(path, { force: true });
      },
    ),
    { numRuns: RUNS * 2, seed: SEED, reporter: shortReport },
  );
  report(t, 'word-vector files', tally);
  assert.ok(tally.rejected > 0 && tally.ok > 0, `both outcomes (${tally.ok} valid, ${tally.rejected} rejected)`);
});

test('WordNet vector cache: a mutated cache file is detected, never trusted', (t) => {
  const words = ['shoe', 'boot', 'sneaker'];
  const wv = new WordVectors(words, new Float32Array([1, 0, 0, 1, 0.5, 0.5]), 2, 'fuzz');
  const base = new Uint8Array(encodeCache(wv, 'key'));
  const tally = { ok: 0, rejected: 0 };
  fc.assert(
    fc.property(mutated(base), (buf) =>
      expectCleanly(
        tally,
        () => decodeCache(Buffer.from(buf), 'key', 'fuzz'),
        (r) => assert.deepEqual([...r.data], [...wv.data], 'a cache that decodes is the original'),
      ),
    ),
    { numRuns: RUNS * 2, seed: SEED, reporter: shortReport },
  );
  report(t, 'WordNet cache', tally);
  assert.ok(tally.rejected > 0);
});

test('image decoder: mutated JPEGs (baseline, progressive), WebPs and GIFs give 28×28 values in [0, 1] or a ProbsemError', async (t) => {
  const chromium = [JPEG_GREY_56, JPEG_COLOUR_45x37].map((b64) => new Uint8Array(Buffer.from(b64, 'base64')));
  const picture = sharp(Buffer.from(JPEG_COLOUR_45x37, 'base64'));
  const made = await Promise.all([picture.clone().jpeg({ progressive: true }).toBuffer(), picture.clone().webp().toBuffer(), picture.clone().gif().toBuffer()]);
  const bases = [...chromium, ...made.map((b) => new Uint8Array(b))];
  const tally = { ok: 0, rejected: 0 };
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: bases.length - 1 }).chain((i) => mutated(bases[i])),
      (buf) => decodesCleanly(tally, buf),
    ),
    { numRuns: RUNS, seed: SEED, reporter: shortReport },
  );
  report(t, 'JPEG/WebP/GIF decode', tally);
  assert.ok(tally.rejected > 0 && tally.ok > 0, `both outcomes (${tally.ok} valid, ${tally.rejected} rejected)`);
});
