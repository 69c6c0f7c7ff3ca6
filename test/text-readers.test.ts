import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';

import { readWordVectors, writeWordVectors, shortestFloat32 } from '../src/text/readers.js';
import { WordVectors } from '../src/text/word-vectors.js';
import { DataFormatError, ProbsemError } from '../src/core/errors.js';

let dir: string;
before(async () => {
  dir = await fs.mkdtemp(join(tmpdir(), 'probsem-readers-test-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function put(name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name);
  await fs.writeFile(path, content);
  return path;
}

/** Rejects with a DataFormatError whose message names `path` and matches every pattern. */
async function rejectsWith(p: Promise<unknown>, path: string, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DataFormatError, `expected DataFormatError, got ${String(err)}`);
    assert.ok(err.message.includes(path), `message should name ${path}: ${err.message}`);
    for (const re of patterns) assert.match(err.message, re);
    return true;
  });
}

/** Four words, three dims, values exactly representable in float32. */
function sample(): WordVectors {
  const words = ['cat', 'dog', 'ankle_boot', 'café'];
  const data = Float32Array.from([0.5, -1, 2, 0.25, 3.5, -0.125, 1e-3, 7, 100, -2.75, 0, 6.5]);
  return new WordVectors(words, data, 3, 'sample');
}

function assertSameTable(actual: WordVectors, expected: WordVectors): void {
  assert.deepEqual(actual.words, expected.words);
  assert.equal(actual.dim, expected.dim);
  assert.deepEqual(Array.from(actual.data), Array.from(expected.data));
}

/** A word2vec binary buffer built by hand (independent of the writer); `newline` after each vector. */
function binFile(header: string, rows: [string, number[]][], newline = true): Buffer {
  const parts: Buffer[] = [Buffer.from(header)];
  for (const [w, v] of rows) {
    parts.push(Buffer.from(`${w} `, 'utf8'));
    const f = Buffer.alloc(4 * v.length);
    v.forEach((x, j) => f.writeFloatLE(x, 4 * j));
    parts.push(f);
    if (newline) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

describe('round trips', () => {
  for (const [name, format, header] of [
    ['vectors.bin', 'word2vec-bin', true],
    ['vectors.txt', 'text', true],
    ['glove.txt', 'text', false],
    ['fasttext.vec', 'text', true],
    ['vectors.bin.gz', 'word2vec-bin', true],
    ['glove.txt.gz', 'text', false],
  ] as const) {
    test(`${name} (${format}, header ${header}) reads back exactly`, async () => {
      const path = join(dir, name);
      writeWordVectors(path, sample(), format, { header });
      const wv = await readWordVectors(path);
      assertSameTable(wv, sample());
      assert.equal(wv.source, path);
      assert.deepEqual(Array.from(wv.get('café')), [-2.75, 0, 6.5]);
    });
  }

  test('GloVe text has no header line and the .vec file has one', async () => {
    writeWordVectors(join(dir, 'g.txt'), sample(), 'text', { header: false });
    writeWordVectors(join(dir, 'f.vec'), sample(), 'text');
    assert.equal((await fs.readFile(join(dir, 'g.txt'), 'utf8')).split('\n')[0], 'cat 0.5 -1 2');
    assert.equal((await fs.readFile(join(dir, 'f.vec'), 'utf8')).split('\n')[0], '4 3');
  });

  test('hand-written fastText .vec with trailing spaces and CRLF', async () => {
    const path = await put('hand.vec', '2 3\r\n, 0.5 -1 2 \r\nthe 1e-1 +3 -.5\r\n');
    const wv = await readWordVectors(path);
    assert.deepEqual(wv.words, [',', 'the']);
    assert.deepEqual(Array.from(wv.data), [0.5, -1, 2, Math.fround(0.1), 3, -0.5]);
  });

  test('text values read exactly as Math.fround(Number(s)), on the fast path and off it', async () => {
    const values = ['0.1', '-0.000123', '123456789012345', '0.1234567890123456789', '1e-3', '-2.5E+2', '.5', '7.', '-0', '3.4028235e38', '1.17549435e-38', '0000.25'];
    const path = await put('exact.txt', `w ${values.join(' ')}\n`);
    const wv = await readWordVectors(path);
    assert.deepEqual(Array.from(wv.data), values.map((s) => Math.fround(Number(s))));
    assert.ok(Object.is(wv.data[8], -0));
  });

  test('hand-built word2vec binary without the optional newline after vectors', async () => {
    const path = await put('hand.bin', binFile('2 2\n', [['héllo', [1.5, -2]], ['x', [0.25, 8]]], false));
    const wv = await readWordVectors(path);
    assert.deepEqual(wv.words, ['héllo', 'x']);
    assert.deepEqual(Array.from(wv.data), [1.5, -2, 0.25, 8]);
  });

  test('auto detection sniffs binary and text when the extension says nothing', async () => {
    const bin = await put('model.w2v', binFile('2 2\n', [['a', [1, 2]], ['b', [3, 4]]]));
    const txt = await put('model.emb', '2 2\na 1 2\nb 3 4\n');
    const glove = await put('glove.emb', 'a 1 2\nb 3 4\n');
    for (const path of [bin, txt, glove]) {
      const wv = await readWordVectors(path);
      assert.deepEqual(wv.words, ['a', 'b'], path);
      assert.deepEqual(Array.from(wv.data), [1, 2, 3, 4], path);
    }
    // An explicit format wins over the extension.
    const misnamed = await put('really-binary.txt', binFile('1 2\n', [['z', [5, 6]]]));
    assert.deepEqual(Array.from((await readWordVectors(misnamed, { format: 'word2vec-bin' })).data), [5, 6]);
  });

  test('tables spanning many read chunks (text and binary) read back exactly', async () => {
    const n = 1000;
    const dim = 300;
    const data = new Float32Array(n * dim);
    let x = 12345;
    for (let i = 0; i < data.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      data[i] = Math.fround((x / 2 ** 32 - 0.5) * 3);
    }
    const big = new WordVectors(Array.from({ length: n }, (_, i) => `w${i}`), data, dim, 'big');
    for (const name of ['big.txt', 'big.bin', 'big.bin.gz']) {
      const path = join(dir, name);
      writeWordVectors(path, big, name.includes('.bin') ? 'word2vec-bin' : 'text');
      if (!name.endsWith('.gz')) assert.ok((await fs.stat(path)).size > 1 << 20, 'file must exceed one 1 MiB read chunk');
      assertSameTable(await readWordVectors(path), big);
    }
  });

  test('onProgress reports increasing byte counts ending at the file size', async () => {
    const path = join(dir, 'progress.bin');
    writeWordVectors(path, sample(), 'word2vec-bin');
    const size = (await fs.stat(path)).size;
    const calls: [number, number][] = [];
    await readWordVectors(path, { onProgress: (read, total) => calls.push([read, total]) });
    assert.ok(calls.length >= 1);
    assert.deepEqual(calls[calls.length - 1], [size, size]);
    for (let i = 1; i < calls.length; i++) assert.ok(calls[i][0] >= calls[i - 1][0]);
  });

  test('shortestFloat32 writes the shortest decimal that reads back exactly', () => {
    assert.equal(shortestFloat32(Math.fround(0.1)), '0.1');
    assert.equal(shortestFloat32(-2.75), '-2.75');
    assert.equal(shortestFloat32(Math.fround(1 / 3)), '0.33333334');
    assert.equal(shortestFloat32(Math.fround(3e-40)), '3e-40');
  });

  test('fuzz: random tables round-trip through every format', async () => {
    // Words start with a letter: a 1-dim GloVe row like "0 5" cannot be told from a header.
    const word = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_éü'.,-]{0,11}$/);
    const values = fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 40, maxLength: 40 });
    let k = 0;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(word, { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 5 }), values, async (words, dim, pool) => {
        const data = Float32Array.from({ length: words.length * dim }, (_, i) => pool[i % pool.length]);
        const wv = new WordVectors(words, data, dim, 'fuzz');
        for (const [ext, format, header] of [['bin', 'word2vec-bin', true], ['txt', 'text', true], ['txt', 'text', false]] as const) {
          const path = join(dir, `fuzz-${k++}.${ext}`);
          writeWordVectors(path, wv, format, { header });
          const back = await readWordVectors(path);
          assert.deepEqual(back.words, words);
          // Text writes -0 as 0, hence === rather than deepEqual.
          back.data.forEach((v, i) => assert.ok(v === data[i], `${path} value ${i}: ${v} vs ${data[i]}`));
        }
      }),
      { numRuns: 60, seed: 7 },
    );
  });
});

describe('vocabulary and maxWords', () => {
  const rows = 'cat 1 1\ndog 2 2\nAnkle_Boot 3 3\nt-shirt 4 4\nankle 5 5\nboot 6 6\nbird 7 7\n';

  test('vocabulary keeps exact and folded matches and the tokens of phrases, in file order', async () => {
    const path = await put('vocab.txt', rows);
    const wv = await readWordVectors(path, { vocabulary: ['Cat', 'ankle boot', 'T-Shirt', 'unicorn'] });
    assert.deepEqual(wv.words, ['cat', 'Ankle_Boot', 't-shirt', 'ankle', 'boot']);
    assert.deepEqual(Array.from(wv.data), [1, 1, 3, 3, 4, 4, 5, 5, 6, 6]);
    assert.deepEqual(Array.from(wv.phrase('ankle boot')), [3, 3]);
  });

  test('vocabulary filter on a binary file', async () => {
    const path = join(dir, 'vocab.bin');
    writeWordVectors(path, sample(), 'word2vec-bin');
    const wv = await readWordVectors(path, { vocabulary: new Set(['café', 'DOG']) });
    assert.deepEqual(wv.words, ['dog', 'café']);
    assert.deepEqual(Array.from(wv.data), [0.25, 3.5, -0.125, -2.75, 0, 6.5]);
  });

  test('a vocabulary that matches nothing gives an empty table with the file dimension', async () => {
    const path = await put('none.txt', rows);
    const wv = await readWordVectors(path, { vocabulary: ['zebra'] });
    assert.equal(wv.size, 0);
    assert.equal(wv.dim, 2);
  });

  test('maxWords counts file rows before the filter', async () => {
    const path = await put('limit.txt', rows);
    assert.deepEqual((await readWordVectors(path, { maxWords: 2 })).words, ['cat', 'dog']);
    const wv = await readWordVectors(path, { maxWords: 3, vocabulary: ['dog', 'bird'] });
    assert.deepEqual(wv.words, ['dog']);
    assert.deepEqual(Array.from(wv.data), [2, 2]);
  });

  test('maxWords stops before a damaged tail (text and binary)', async () => {
    const txt = await put('limit-tail.vec', '5 2\na 1 2\nb 3 4\nc oops\n');
    assert.deepEqual((await readWordVectors(txt, { maxWords: 2 })).words, ['a', 'b']);
    const full = binFile('5 2\n', [['a', [1, 2]], ['b', [3, 4]], ['c', [5, 6]]]);
    const bin = await put('limit-tail.bin', full.subarray(0, full.length - 3));
    const wv = await readWordVectors(bin, { maxWords: 2 });
    assert.deepEqual(wv.words, ['a', 'b']);
    assert.deepEqual(Array.from(wv.data), [1, 2, 3, 4]);
  });

  test('maxWords must be a positive integer', async () => {
    const path = await put('limit-bad.txt', rows);
    await assert.rejects(readWordVectors(path, { maxWords: 0 }), ProbsemError);
    await assert.rejects(readWordVectors(path, { maxWords: 1.5 }), /positive integer/);
  });
});

describe('bad files', () => {
  test('a missing file', async () => {
    const path = join(dir, 'nope.bin');
    await rejectsWith(readWordVectors(path), path, /not found/);
  });

  test('an empty file, and one with only blank lines', async () => {
    const empty = await put('empty.txt', '');
    await rejectsWith(readWordVectors(empty), empty, /is empty/);
    const blank = await put('blank.txt', '\n  \n\n');
    await rejectsWith(readWordVectors(blank), blank, /no word vectors/);
    const emptyGz = await put('empty.txt.gz', gzipSync(Buffer.alloc(0)));
    await rejectsWith(readWordVectors(emptyGz), emptyGz, /empty/);
  });

  test('binary: fewer vector bytes than the header promises', async () => {
    const full = binFile('2 3\n', [['ab', [1, 2, 3]], ['cd', [4, 5, 6]]]);
    const path = await put('cut.bin', full.subarray(0, full.length - 6));
    // header 4 bytes, "ab " + 12 + "\n" = 16, then "cd " → the second vector starts at 4 + 16 + 3 = 23.
    await rejectsWith(readWordVectors(path), path, /byte offset 23\b/, /vector of word 'cd'/, /cut short/, /truncated/);
  });

  test('binary: fewer words than the header count', async () => {
    const path = await put('few.bin', binFile('3 1\n', [['a', [1]], ['b', [2]]]));
    await rejectsWith(readWordVectors(path), path, /byte offset 18\b/, /ends after 2 words but the header promises 3/);
  });

  test('binary: the file ends inside a word', async () => {
    const path = await put('cutword.bin', Buffer.concat([binFile('2 1\n', [['a', [1]]]), Buffer.from('wor')]));
    await rejectsWith(readWordVectors(path), path, /byte offset 11\b/, /ends inside a word/);
  });

  test('binary: data after the declared words', async () => {
    const path = await put('extra.bin', Buffer.concat([binFile('1 1\n', [['a', [1]]]), Buffer.from('b xxxx')]));
    await rejectsWith(readWordVectors(path), path, /byte offset 11\b/, /data after the 1 words/);
  });

  test('binary: NaN and infinite values of a kept word', async () => {
    const nan = await put('nan.bin', binFile('2 2\n', [['a', [1, 2]], ['b', [3, NaN]]]));
    // "b" vector starts at 4 + (2 + 8 + 1) + 2 = 17, value 2 at 21.
    await rejectsWith(readWordVectors(nan), nan, /byte offset 21\b/, /word 'b': value 2 is NaN/);
    const inf = await put('inf.bin', binFile('1 2\n', [['a', [-Infinity, 2]]]));
    await rejectsWith(readWordVectors(inf), inf, /byte offset 6\b/, /value 1 is -Infinity/);
    // The same values in a word the filter drops are never looked at.
    assert.deepEqual((await readWordVectors(nan, { vocabulary: ['a'] })).words, ['a']);
  });

  test('binary: duplicate words', async () => {
    const path = await put('dup.bin', binFile('2 1\n', [['a', [1]], ['a', [2]]]));
    await rejectsWith(readWordVectors(path), path, /byte offset 11\b/, /duplicate word 'a' \(first at byte offset 4\)/);
  });

  test('binary: bad headers', async () => {
    const cases: [string, RegExp][] = [
      ['abc def\n', /word count 'abc' is not a positive integer/],
      ['2.5 3\n', /word count '2.5'/],
      ['0 3\n', /word count '0'/],
      ['-4 3\n', /word count '-4'/],
      ['4 0\n', /dimension '0' is not a positive integer/],
      ['4 3.0\n', /dimension '3.0'/],
      ['4 200000\n', /dimension 200000 is over the limit of 100000/],
      ['4\n', /expected "COUNT DIM"/],
    ];
    for (const [i, [header, re]] of cases.entries()) {
      const path = await put(`badheader${i}.bin`, Buffer.concat([Buffer.from(header), Buffer.alloc(16)]));
      await rejectsWith(readWordVectors(path), path, /byte offset 0\b/, /bad header/, re);
    }
    const noLine = await put('noline.bin', Buffer.alloc(300, 0x41));
    await rejectsWith(readWordVectors(noLine), noLine, /no "COUNT DIM" line/);
  });

  test('binary: a fastText model is named as such', async () => {
    const head = Buffer.alloc(64);
    head.writeInt32LE(793712314, 0);
    const path = await put('model.bin', head);
    await rejectsWith(readWordVectors(path), path, /fastText model/, /\.vec/);
  });

  test('binary: a huge declared count allocates nothing up front', async () => {
    const path = await put('huge.bin', binFile('900000000000 300\n', [['a', Array(300).fill(1)]]));
    await rejectsWith(readWordVectors(path), path, /ends after 1 words but the header promises 900000000000/);
  });

  test('text: the last line is cut', async () => {
    const path = await put('cut.txt', 'a 1 2 3\nb 4 5 6\nc 7 8');
    await rejectsWith(readWordVectors(path), path, /line 3\b/, /last line is cut short/, /truncated/);
  });

  test('text: fewer rows than the header count', async () => {
    const path = await put('few.vec', '5 2\na 1 2\nb 3 4\n');
    await rejectsWith(readWordVectors(path), path, /line 3\b/, /ends after 2 words but the header promises 5/);
  });

  test('text: more rows than the header count', async () => {
    const path = await put('many.vec', '1 2\na 1 2\nb 3 4\n');
    await rejectsWith(readWordVectors(path), path, /line 3\b/, /more words than the header's count of 1/);
  });

  test('text: a line with the wrong number of values, kept or not', async () => {
    const path = await put('wrong.txt', 'a 1 2 3\nb 4 5\nc 7 8 9\n');
    await rejectsWith(readWordVectors(path), path, /line 2\b/, /word 'b' has 2 values, expected 3/);
    await rejectsWith(readWordVectors(path, { vocabulary: ['c'] }), path, /line 2\b/, /word 'b' has 2 values/);
    const hdr = await put('wrong.vec', '2 3\na 1 2\nb 1 2 3\n');
    await rejectsWith(readWordVectors(hdr), hdr, /line 2\b/, /word 'a' has 2 values, expected 3/);
  });

  test('text: non-numeric values', async () => {
    for (const [i, bad] of ['abc', 'NaN', 'nan', 'inf', '-Infinity', '0x10'].entries()) {
      const path = await put(`nonnum${i}.txt`, `a 1 2\nb 3 ${bad}\n`);
      await rejectsWith(readWordVectors(path), path, /line 2\b/, new RegExp(`word 'b': '${bad}' is not a number`));
      // Caught even when the word is filtered out.
      await rejectsWith(readWordVectors(path, { vocabulary: ['a'] }), path, /line 2\b/, /is not a number/);
    }
  });

  test('text: numbers that are malformed or outside float32', async () => {
    for (const [i, bad] of ['1e999', '1e39', '1.2.3', '--1', '1e'].entries()) {
      const path = await put(`nonfinite${i}.txt`, `a 1 2\nb ${bad} 3\n`);
      await rejectsWith(readWordVectors(path), path, /line 2\b/, new RegExp(`value 1 '${bad}' is not a finite float32 number`));
    }
  });

  test('text: duplicate words', async () => {
    const path = await put('dup.txt', 'a 1\nb 2\na 3\n');
    await rejectsWith(readWordVectors(path), path, /line 3\b/, /duplicate word 'a' \(first at line 1\)/);
    // Duplicates among dropped words do not matter.
    assert.deepEqual((await readWordVectors(path, { vocabulary: ['b'] })).words, ['b']);
  });

  test('text: bad headers', async () => {
    const cases: [string, RegExp][] = [
      ['2.5 3', /word count '2.5' is not a positive integer/],
      ['0 3', /word count '0'/],
      ['-1 3', /word count '-1'/],
      ['3 0', /dimension '0'/],
      ['3 -2', /dimension '-2'/],
      ['3 1e3', /dimension '1e3'/],
      ['3 100001', /dimension 100001 is over the limit of 100000/],
    ];
    for (const [i, [header, re]] of cases.entries()) {
      const path = await put(`badheader${i}.vec`, `${header}\na 1 2 3\n`);
      await rejectsWith(readWordVectors(path), path, /line 1\b/, /bad header/, re);
    }
  });

  test('text: a first row with no values, or absurdly many', async () => {
    const none = await put('novalues.txt', 'lonely\nb 1\n');
    await rejectsWith(readWordVectors(none), none, /line 1\b/, /word 'lonely' has no values/);
    const wide = await put('wide.txt', `w ${'0 '.repeat(100_001)}\n`);
    await rejectsWith(readWordVectors(wide), wide, /line 1\b/, /100001 values, over the limit of 100000/);
  });

  test('text: a line starting with whitespace has an empty word', async () => {
    const path = await put('space.txt', 'a 1 2\n 1 2 3\n');
    await rejectsWith(readWordVectors(path), path, /line 2\b/, /empty word/);
  });

  test('text: binary content read as text fails cleanly', async () => {
    const path = await put('junk.txt', binFile('2 3\n', [['a', [1.5, 2, 3]], ['b', [4, 5, 6]]]));
    await rejectsWith(readWordVectors(path), path, /line 2\b/, /is not a number/);
  });

  test('corrupt gzip data', async () => {
    const gz = gzipSync(Buffer.from('a 1 2\nb 3 4\n'.repeat(50)));
    const path = await put('broken.txt.gz', gz.subarray(0, gz.length - 20));
    await rejectsWith(readWordVectors(path), path, /corrupt or truncated gzip/);
  });

  test('fuzz: damaged files give a DataFormatError or a valid table, never another error', async () => {
    const good = binFile('3 2\n', [['a', [1, 2]], ['bb', [3, 4]], ['c', [5, 6]]]);
    const goodText = Buffer.from('3 2\na 1 2\nbb 3 4\nc 5 6\n');
    let k = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        async (binary, cut, edits) => {
          const src = Buffer.from(binary ? good : goodText);
          for (const [at, byte] of edits) src[at % src.length] = byte;
          const path = await put(`damaged-${k++}.${binary ? 'bin' : 'txt'}`, src.subarray(0, src.length - (cut % 4)));
          try {
            const wv = await readWordVectors(path);
            assert.equal(wv.data.length, wv.size * wv.dim);
          } catch (err) {
            assert.ok(err instanceof DataFormatError, `${path}: ${String(err)}`);
            assert.ok(err.message.includes(path));
          }
        },
      ),
      { numRuns: 300, seed: 11 },
    );
  });
});

describe('writer', () => {
  test('refuses words with whitespace, non-finite values and empty tables', () => {
    const spaced = new WordVectors(['a b'], Float32Array.from([1]), 1, 't');
    assert.throws(() => writeWordVectors(join(dir, 'w1.txt'), spaced, 'text'), /cannot write word 'a b'/);
    const nan = new WordVectors(['a'], Float32Array.from([NaN]), 1, 't');
    assert.throws(() => writeWordVectors(join(dir, 'w2.bin'), nan, 'word2vec-bin'), /value 1 is NaN/);
    const empty = new WordVectors([], new Float32Array(0), 3, 't');
    assert.throws(() => writeWordVectors(join(dir, 'w3.txt'), empty, 'text'), /no words/);
    assert.throws(() => writeWordVectors(join(dir, 'w4.bin'), sample(), 'word2vec-bin', { header: false }), /always have a header/);
  });
});
