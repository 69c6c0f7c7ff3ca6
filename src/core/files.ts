/** Crash-safe file writing: a file is either the old one or the complete new one, never half. */
import { createHash } from 'node:crypto';
import { promises as fs, constants, openSync, readSync, statSync, fstatSync, writeSync, fsyncSync, closeSync, renameSync, unlinkSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { ProbsemError } from './errors.js';

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * JSON with object keys sorted at every level and no whitespace: the same value gives the same
 * text whatever order its keys were written in, so a checksum over it survives a re-indent or a
 * key reorder but nothing that changes a value. Undefined members are left out, as JSON does.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    const rec = value as Record<string, unknown>;
    return `{${keys.filter((k) => rec[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(rec[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Writes `data` to `path` through a temporary sibling, fsyncs it, then renames it over the
 * target. A write error (e.g. a full disk) leaves the previous file untouched.
 */
export function writeFileAtomicSync(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  let fd = -1;
  try {
    fd = openSync(tmp, 'w');
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
    fsyncDir(dirname(path));
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
    const e = err as NodeJS.ErrnoException;
    throw new ProbsemError(`could not write ${path}: ${e.code ? `${e.code} ` : ''}${e.message}`, 'IO');
  }
}

/** Makes the rename durable (best effort: not every file system allows opening a directory). */
function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* ignore */
  }
}

/**
 * A file opened for bounded reads, after checking it is a regular file (a symlink to one is
 * fine). A FIFO would block the read forever, a device such as /dev/zero never ends, and a
 * directory throws EISDIR; all three, and anything else that is not a plain file, are refused
 * by name. The type is checked before opening (so a FIFO is never opened for a blocking read) and
 * again on the opened descriptor (O_NONBLOCK, fstat), so a file swapped in between is caught too.
 */
export class RegularFile {
  readonly size: number;
  private constructor(
    readonly path: string,
    private fd: number,
    size: number,
  ) {
    this.size = size;
  }

  /** `what` names the file in messages ("weights file", "checkpoint"); `code` tags the errors. */
  static open(path: string, what: string, code: string): RegularFile {
    const fail = (e: unknown): never => {
      const err = e as NodeJS.ErrnoException;
      throw new ProbsemError(`cannot read ${what} ${path}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' '), 'IO');
    };
    let st: Stats;
    try {
      st = statSync(path);
    } catch (e) {
      return fail(e);
    }
    refuseIrregular(st, path, what, code);
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      return fail(e);
    }
    try {
      const fst = fstatSync(fd);
      refuseIrregular(fst, path, what, code);
      return new RegularFile(path, fd, fst.size);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Up to `length` bytes from `position` (fewer only at the end of the file). */
  read(position: number, length: number): Buffer {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, buf, got, length - got, position + got);
      if (n === 0) break;
      got += n;
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function refuseIrregular(st: Stats, path: string, what: string, code: string): void {
  if (st.isFile()) return;
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'not a plain file';
  throw new ProbsemError(`${what} ${path} is ${kind}, not a regular file`, code);
}

/**
 * Reads a regular file expected to hold exactly `bytes` bytes, reading at most one byte more (to
 * tell a longer file) whatever the file claims, so a wrong or hostile size never costs memory.
 */
export function readExactFileSync(path: string, bytes: number, what: string, code: string, expectedBy: string): Uint8Array {
  const f = RegularFile.open(path, what, code);
  try {
    // The size as found: fstat's, or what the read saw if the file changed since (bytes + 1: longer).
    const data = f.size === bytes ? f.read(0, bytes + 1) : null;
    const got = data?.length ?? f.size;
    if (data === null || got !== bytes) {
      const longer = got > bytes;
      throw new ProbsemError(
        `${path} is ${longer && data ? `more than ${bytes}` : got} bytes but ${expectedBy} expects ${bytes} (${longer ? 'longer than saved' : 'truncated'} or replaced)`,
        code,
      );
    }
    return new Uint8Array(data.buffer, data.byteOffset, data.length);
  } finally {
    f.close();
  }
}

/** Reads a whole regular file of at most `maxBytes` bytes (a larger one is refused unread). */
export function readSmallFileSync(path: string, maxBytes: number, what: string, code: string): Buffer {
  const f = RegularFile.open(path, what, code);
  try {
    if (f.size > maxBytes) throw new ProbsemError(`${what} ${path} is ${f.size} bytes, more than the ${maxBytes} a ${what} may have`, code);
    const data = f.read(0, maxBytes + 1);
    if (data.length > maxBytes) throw new ProbsemError(`${what} ${path} grew past ${maxBytes} bytes while being read`, code);
    return data;
  } finally {
    f.close();
  }
}

export async function ensureDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
}
