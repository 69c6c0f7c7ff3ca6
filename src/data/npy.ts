/**
 * NumPy's .npy format, version 1.0, written and read without numpy: what `probsem embed` writes so
 * that `numpy.load` reads it (and what tests read back).
 *
 *   bytes 0-5   magic "\x93NUMPY"
 *   bytes 6-7   version 1, 0
 *   bytes 8-9   u16 LE header length H
 *   10 … 10+H   ASCII dict {'descr': '<f4', 'fortran_order': False, 'shape': (N, K), } padded with
 *               spaces and ended by '\n' so the data starts at a multiple of 64 bytes (numpy's
 *               own alignment; the format asks for 16)
 *   then        the array in C order, little-endian
 *
 * `NpyWriter` writes the header for the final shape first and then appends rows, so an array far
 * larger than memory streams through one batch at a time; `close` checks that exactly the
 * promised number of values arrived (a short file would load as garbage or fail in numpy).
 */
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { ProbsemError } from '../core/errors.js';

export type NpyDtype = '<f4' | '<i4';
type NpyArray = Float32Array | Int32Array;

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);

/** The header bytes (magic to the '\n') for an array of this dtype and shape. */
export function npyHeader(dtype: NpyDtype, shape: number[]): Buffer {
  for (const d of shape) if (!Number.isInteger(d) || d < 0) throw new ProbsemError(`npy: bad dimension ${d} in shape [${shape.join(', ')}]`, 'SHAPE');
  // A one-element tuple needs its trailing comma: (5,).
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${tuple}, }`;
  const unpadded = MAGIC.length + 2 + 2 + dict.length + 1;
  const total = Math.ceil(unpadded / 64) * 64;
  const headerLen = total - 10;
  if (headerLen > 0xffff) throw new ProbsemError(`npy: shape [${shape.join(', ')}] needs a header over 64 KiB (format 1.0 cannot hold it)`, 'SHAPE');
  const out = Buffer.alloc(total, 0x20);
  MAGIC.copy(out, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(headerLen, 8);
  out.write(dict, 10, 'latin1');
  out[total - 1] = 0x0a;
  return out;
}

/** Streams one array to a file: header for the full shape, then rows as they come. */
export class NpyWriter {
  private fd: number;
  private written = 0;
  readonly total: number;

  constructor(
    readonly path: string,
    readonly dtype: NpyDtype,
    readonly shape: number[],
  ) {
    this.total = shape.reduce((a, b) => a * b, 1);
    this.fd = openSync(path, 'w');
    writeAll(this.fd, npyHeader(dtype, shape));
  }

  /** Appends values in C order; their type must match the dtype. */
  append(values: NpyArray): void {
    const want = this.dtype === '<f4' ? Float32Array : Int32Array;
    if (!(values instanceof want)) throw new ProbsemError(`npy: ${this.path} holds ${this.dtype}, got a ${values.constructor.name}`, 'BAD_INPUT');
    if (this.written + values.length > this.total) {
      throw new ProbsemError(`npy: ${this.path} has shape [${this.shape.join(', ')}] (${this.total} values); appending ${values.length} after ${this.written} overflows it`, 'SHAPE');
    }
    // Typed arrays are little-endian on every platform Node runs on (x86, ARM).
    writeAll(this.fd, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    this.written += values.length;
  }

  /** Fsyncs and closes; throws if fewer values than the shape promised were written. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      if (this.written !== this.total) throw new ProbsemError(`npy: ${this.path} got ${this.written} of its ${this.total} values`, 'SHAPE');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Closes without checks (after an error elsewhere). */
  abort(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** Reads a whole .npy file of dtype <f4 or <i4 (C order): for tests and small files. */
export function readNpy(path: string): { dtype: NpyDtype; shape: number[]; data: NpyArray } {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(10);
    const bad = (why: string) => new ProbsemError(`${path} is not a .npy file probsem reads: ${why}`, 'DATA_FORMAT');
    if (readSync(fd, head, 0, 10, 0) !== 10 || !head.subarray(0, 6).equals(MAGIC)) throw bad('no NUMPY magic');
    if (head[6] !== 1) throw bad(`format version ${head[6]}.${head[7]} (reads 1.0)`);
    const hlen = head.readUInt16LE(8);
    const dictBuf = Buffer.alloc(hlen);
    if (readSync(fd, dictBuf, 0, hlen, 10) !== hlen) throw bad('truncated header');
    const dict = dictBuf.toString('latin1');
    const descr = /'descr':\s*'([^']+)'/.exec(dict)?.[1];
    if (descr !== '<f4' && descr !== '<i4') throw bad(`dtype ${descr} (reads <f4 and <i4)`);
    if (!/'fortran_order':\s*False/.test(dict)) throw bad('Fortran order');
    const shapeText = /'shape':\s*\(([^)]*)\)/.exec(dict)?.[1];
    if (shapeText === undefined) throw bad('no shape');
    const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    const n = shape.reduce((a, b) => a * b, 1);
    const bytes = Buffer.alloc(4 * n);
    if (readSync(fd, bytes, 0, bytes.length, 10 + hlen) !== bytes.length) throw bad(`data shorter than the shape [${shape.join(', ')}]`);
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
    return { dtype: descr, shape, data: descr === '<f4' ? new Float32Array(ab) : new Int32Array(ab) };
  } finally {
    closeSync(fd);
  }
}
