import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import {
  encodeIdx,
  parseIdx,
  readIdxFile,
  readIdxImagesAndLabels,
  writeIdxFile,
  type IdxArray,
} from '../src/data/idx.js';
import { DataFormatError, ProbsemError } from '../src/core/errors.js';

/** Build a raw IDX buffer by hand, so tests can craft malformed headers. */
function rawIdx(type: number, dims: number[], dataLength: number, ndim = dims.length): Uint8Array {
  const header = 4 + 4 * dims.length;
  const buf = new Uint8Array(header + dataLength);
  const view = new DataView(buf.buffer);
  view.setUint8(2, type);
  view.setUint8(3, ndim);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < dataLength; i++) buf[header + i] = (i * 37) & 0xff;
  return buf;
}

/** assert.throws validator: a DataFormatError whose message matches `re`. */
function dataFormatError(re: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof DataFormatError, `expected DataFormatError, got ${String(err)}`);
    assert.equal(err.code, 'DATA_FORMAT');
    assert.match(err.message, re);
    return true;
  };
}

function sample(dims: number[]): IdxArray {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 97 + 13) & 0xff;
  return { dims, data };
}

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'probsem-idx-test-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('IDX round trip', () => {
  test('encodeIdx / parseIdx in memory, 1-D to 4-D', () => {
    for (const dims of [[5], [3, 4], [2, 3, 4], [2, 1, 3, 2]]) {
      const arr = sample(dims);
      const enc = encodeIdx(arr);
      assert.deepEqual([...enc.subarray(0, 4)], [0, 0, 0x08, dims.length]);
      assert.deepEqual(parseIdx(enc, 'mem'), arr);
    }
  });

  test('parseIdx copies the data rather than aliasing the input', () => {
    const enc = encodeIdx(sample([4]));
    const parsed = parseIdx(enc, 'mem');
    enc[enc.length - 1] = 255 - (enc[enc.length - 1] ?? 0);
    assert.notEqual(parsed.data[3], enc[enc.length - 1]);
    assert.equal(parsed.data.byteOffset, 0);
  });

  test('raw file', async () => {
    const path = join(dir, 'raw-idx3-ubyte');
    const arr = sample([7, 3, 2]);
    await writeIdxFile(path, arr, { gzip: false });
    const bytes = await fs.readFile(path);
    assert.deepEqual([...bytes.subarray(0, 4)], [0, 0, 0x08, 3]);
    assert.deepEqual(await readIdxFile(path), arr);
    // The atomic write must not leave its temporary file behind.
    assert.deepEqual((await fs.readdir(dir)).filter((f) => f.includes('.tmp-')), []);
  });

  test('gzipped file', async () => {
    const path = join(dir, 'gz-idx3-ubyte.gz');
    const arr = sample([10, 28, 28]);
    await writeIdxFile(path, arr, { gzip: true });
    const bytes = await fs.readFile(path);
    assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b]);
    assert.deepEqual(await readIdxFile(path), arr);
  });

  test('writing over an existing file replaces it', async () => {
    const path = join(dir, 'overwrite-idx1-ubyte');
    await writeIdxFile(path, sample([100]), { gzip: false });
    const arr = sample([3]);
    await writeIdxFile(path, arr, { gzip: false });
    assert.deepEqual(await readIdxFile(path), arr);
  });

  test('images and labels pair', async () => {
    const imagesPath = join(dir, 'pair-images.gz');
    const labelsPath = join(dir, 'pair-labels.gz');
    const images = sample([6, 4, 5]);
    const labels = { dims: [6], data: Uint8Array.from([0, 1, 2, 3, 4, 9]) };
    await writeIdxFile(imagesPath, images, { gzip: true });
    await writeIdxFile(labelsPath, labels, { gzip: false });
    const ds = await readIdxImagesAndLabels(imagesPath, labelsPath);
    assert.equal(ds.count, 6);
    assert.equal(ds.height, 4);
    assert.equal(ds.width, 5);
    assert.deepEqual(ds.images, images.data);
    assert.deepEqual(ds.labels, labels.data);
  });
});

describe('IDX parse errors', () => {
  test('too short for a header', () => {
    assert.throws(() => parseIdx(Uint8Array.from([0, 0, 8]), 'mem.idx'),
      dataFormatError(/^mem\.idx is too short to be an IDX file: 3 bytes/));
  });

  test('truncated data', () => {
    const buf = rawIdx(0x08, [3, 4], 11);
    assert.throws(() => parseIdx(buf, 'mem.idx'),
      dataFormatError(/^mem\.idx is truncated: expected 12 bytes of data, found 11$/));
  });

  test('truncated header', () => {
    const buf = rawIdx(0x08, [3, 4], 0).subarray(0, 10);
    assert.throws(() => parseIdx(buf, 'mem.idx'),
      dataFormatError(/^mem\.idx is truncated: header declares 2 dimensions and needs 12 bytes, found 10$/));
  });

  test('trailing bytes', () => {
    const buf = rawIdx(0x08, [3, 4], 15);
    assert.throws(() => parseIdx(buf, 'mem.idx'),
      dataFormatError(/^mem\.idx has 3 trailing bytes after the 12 bytes of data/));
  });

  test('wrong magic', () => {
    const buf = rawIdx(0x08, [2], 2);
    buf[0] = 0x50; // e.g. a PNG or text file
    buf[1] = 0x4b;
    assert.throws(() => parseIdx(buf, 'mem.idx'),
      dataFormatError(/^mem\.idx is not an IDX file: bad magic bytes 0x50 0x4B \(expected 0x00 0x00\)/));
  });

  test('unsupported type', () => {
    const buf = rawIdx(0x0d, [2], 8);
    assert.throws(() => parseIdx(buf, 'mem.idx'),
      dataFormatError(/^mem\.idx: IDX type 0x0D \(float32\) is not supported; only unsigned byte \(0x08\)$/));
    assert.throws(() => parseIdx(rawIdx(0x42, [2], 2), 'mem.idx'),
      dataFormatError(/IDX type 0x42 \(unknown type\) is not supported/));
  });

  test('ndim 0 and ndim > 4', () => {
    assert.throws(() => parseIdx(rawIdx(0x08, [], 0), 'mem.idx'),
      dataFormatError(/^mem\.idx has an invalid number of dimensions: 0 \(must be 1 to 4\)$/));
    assert.throws(() => parseIdx(rawIdx(0x08, [1, 1, 1, 1, 1], 1), 'mem.idx'),
      dataFormatError(/^mem\.idx has an invalid number of dimensions: 5 /));
  });

  test('zero dimension', () => {
    assert.throws(() => parseIdx(rawIdx(0x08, [3, 0, 4], 0), 'mem.idx'),
      dataFormatError(/^mem\.idx has invalid dimension 1 of size 0 \(each dimension must be 1 to 10000000\)$/));
  });

  test('dimension above 10,000,000', () => {
    assert.throws(() => parseIdx(rawIdx(0x08, [10_000_001], 0), 'mem.idx'),
      dataFormatError(/^mem\.idx has invalid dimension 0 of size 10000001/));
  });

  test('huge declared dimensions are rejected before allocating', () => {
    // 100000^3 = 1e15 elements declared in a 20-byte file: must fail on the
    // element-count check (not attempt, or fail, a 1 PB allocation).
    const buf = rawIdx(0x08, [100_000, 100_000, 100_000], 4);
    assert.equal(buf.length, 20);
    assert.throws(() => parseIdx(buf, 'mem.idx'),
      dataFormatError(/^mem\.idx declares 100000×100000×100000 = 1000000000000000 elements, more than the limit of 2147483648$/));
  });
});

describe('IDX file errors', () => {
  test('corrupt gzip stream', async () => {
    const path = join(dir, 'corrupt.gz');
    await fs.writeFile(path, Uint8Array.from([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    await assert.rejects(readIdxFile(path), dataFormatError(/ is not a valid gzip stream: /));
    await assert.rejects(readIdxFile(path), (err: Error) => err.message.startsWith(path));
  });

  test('truncated gzip stream', async () => {
    const path = join(dir, 'truncated.gz');
    const gz = gzipSync(encodeIdx(sample([50, 10, 10])));
    await fs.writeFile(path, gz.subarray(0, gz.length - 20));
    await assert.rejects(readIdxFile(path), dataFormatError(/ is not a valid gzip stream: /));
  });

  test('gzip output above the decompression cap', async () => {
    const path = join(dir, 'bomb.gz');
    await fs.writeFile(path, gzipSync(new Uint8Array(1 << 20)));
    await assert.rejects(readIdxFile(path, { maxDecompressedBytes: 1 << 16 }),
      dataFormatError(/ decompresses to more than 65536 bytes/));
  });

  test('valid gzip of invalid IDX names the file', async () => {
    const path = join(dir, 'bad-inside.gz');
    await fs.writeFile(path, gzipSync(rawIdx(0x08, [3, 4], 11)));
    await assert.rejects(readIdxFile(path),
      dataFormatError(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is truncated`)));
  });

  test('label count differs from image count', async () => {
    const imagesPath = join(dir, 'mismatch-images');
    const labelsPath = join(dir, 'mismatch-labels');
    await writeIdxFile(imagesPath, sample([4, 2, 2]), { gzip: false });
    await writeIdxFile(labelsPath, sample([3]), { gzip: false });
    await assert.rejects(readIdxImagesAndLabels(imagesPath, labelsPath),
      dataFormatError(/^labels file .*mismatch-labels has 3 labels but images file .*mismatch-images has 4 images$/));
  });

  test('images not 3-D or labels not 1-D', async () => {
    const img2d = join(dir, 'img2d');
    const img3d = join(dir, 'img3d');
    const lab1d = join(dir, 'lab1d');
    const lab2d = join(dir, 'lab2d');
    await writeIdxFile(img2d, sample([4, 4]), { gzip: false });
    await writeIdxFile(img3d, sample([4, 2, 2]), { gzip: false });
    await writeIdxFile(lab1d, sample([4]), { gzip: false });
    await writeIdxFile(lab2d, sample([4, 1]), { gzip: false });
    await assert.rejects(readIdxImagesAndLabels(img2d, lab1d),
      dataFormatError(/img2d has shape 4×4, but an images file must be 3-D/));
    await assert.rejects(readIdxImagesAndLabels(img3d, lab2d),
      dataFormatError(/lab2d has shape 4×1, but a labels file must be 1-D/));
  });

  test('missing file', async () => {
    const path = join(dir, 'does-not-exist.gz');
    await assert.rejects(readIdxFile(path), (err: unknown) => {
      assert.ok(err instanceof ProbsemError);
      assert.ok(!(err instanceof DataFormatError));
      assert.equal(err.code, 'NOT_FOUND');
      assert.equal(err.message, `${path} not found`);
      return true;
    });
  });

  test('encodeIdx rejects data that does not match dims', () => {
    assert.throws(() => encodeIdx({ dims: [2, 3], data: new Uint8Array(5) }),
      dataFormatError(/dims 2×3 describe 6 elements but data has 5/));
    assert.throws(() => encodeIdx({ dims: [0], data: new Uint8Array(0) }),
      dataFormatError(/dimension 0 has size 0/));
  });
});
