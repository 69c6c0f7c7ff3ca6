/**
 * IDX file format (the format MNIST and Fashion-MNIST ship in): reader and writer.
 *
 * Layout: two zero bytes, a type byte, a dimension count `ndim`, then `ndim`
 * big-endian uint32 dimension sizes, then the elements in row-major order.
 * Only unsigned bytes (type 0x08) are supported, which covers the image and
 * label files this library uses. Files may be gzipped (detected by magic bytes).
 *
 * Parsing is defensive: headers are validated before any allocation, so a
 * corrupt or hostile file yields a DataFormatError naming the file and the
 * problem rather than a crash or a huge allocation.
 */
import { promises as fs } from 'node:fs';
import { gunzipSync, gzipSync, constants as zlibConstants } from 'node:zlib';
import { DataFormatError, ProbsemError } from '../core/errors.js';

/** An n-dimensional array of unsigned bytes, row-major. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Options for {@link readIdxFile}. */
export interface ReadIdxOptions {
  /** Upper bound on the decompressed size of a gzipped file (default 512 MiB). */
  maxDecompressedBytes?: number;
}

/** Options for {@link writeIdxFile}. */
export interface WriteIdxOptions {
  /** Gzip the output (as the standard `*.gz` distribution files are). */
  gzip: boolean;
}

const UBYTE_TYPE = 0x08;
const MAX_NDIM = 4;
/** Largest single dimension accepted; far above any real dataset axis. */
const MAX_DIM = 10_000_000;
/** Largest total element count accepted (2^31), checked before allocating. */
const MAX_ELEMENTS = 2 ** 31;
/** Default gunzip output cap, so a gzip bomb fails fast instead of exhausting memory. */
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 512 * 1024 * 1024;

/** IDX type codes, for readable error messages about unsupported types. */
const TYPE_NAMES: Readonly<Record<number, string>> = {
  0x08: 'unsigned byte',
  0x09: 'signed byte',
  0x0b: 'int16',
  0x0c: 'int32',
  0x0d: 'float32',
  0x0e: 'float64',
};

function hex2(byte: number): string {
  return '0x' + byte.toString(16).toUpperCase().padStart(2, '0');
}

/**
 * Parse an (uncompressed) IDX buffer. `source` names the input (usually a file
 * path) and prefixes every error message. The returned `data` is a fresh copy,
 * so it does not alias `buf` and always starts at byte offset 0.
 */
export function parseIdx(buf: Uint8Array, source: string): IdxArray {
  if (buf.length < 4) {
    throw new DataFormatError(
      `${source} is too short to be an IDX file: ${buf.length} bytes, the header needs at least 4`,
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic0 = view.getUint8(0);
  const magic1 = view.getUint8(1);
  if (magic0 !== 0 || magic1 !== 0) {
    throw new DataFormatError(
      `${source} is not an IDX file: bad magic bytes ${hex2(magic0)} ${hex2(magic1)} (expected 0x00 0x00)`,
    );
  }
  const type = view.getUint8(2);
  if (type !== UBYTE_TYPE) {
    const name = TYPE_NAMES[type] ?? 'unknown type';
    throw new DataFormatError(
      `${source}: IDX type ${hex2(type)} (${name}) is not supported; only unsigned byte (0x08)`,
    );
  }
  const ndim = view.getUint8(3);
  if (ndim < 1 || ndim > MAX_NDIM) {
    throw new DataFormatError(
      `${source} has an invalid number of dimensions: ${ndim} (must be 1 to ${MAX_NDIM})`,
    );
  }
  const headerLength = 4 + 4 * ndim;
  if (buf.length < headerLength) {
    throw new DataFormatError(
      `${source} is truncated: header declares ${ndim} dimensions and needs ${headerLength} bytes, found ${buf.length}`,
    );
  }

  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) {
    const d = view.getUint32(4 + 4 * i, false); // IDX is big-endian
    if (d < 1 || d > MAX_DIM) {
      throw new DataFormatError(
        `${source} has invalid dimension ${i} of size ${d} (each dimension must be 1 to ${MAX_DIM})`,
      );
    }
    dims.push(d);
  }

  // Each dim is <= 1e7 and ndim <= 4, so the product is <= 1e28: a double holds
  // it approximately, which is all we need to compare against the 2^31 cap.
  const count = dims.reduce((a, b) => a * b, 1);
  if (count > MAX_ELEMENTS) {
    throw new DataFormatError(
      `${source} declares ${dims.join('×')} = ${count} elements, more than the limit of ${MAX_ELEMENTS}`,
    );
  }

  const found = buf.length - headerLength;
  if (found < count) {
    throw new DataFormatError(
      `${source} is truncated: expected ${count} bytes of data, found ${found}`,
    );
  }
  if (found > count) {
    throw new DataFormatError(
      `${source} has ${found - count} trailing bytes after the ${count} bytes of data declared by its header`,
    );
  }

  // Copy (rather than subarray) so callers own the data and a Node Buffer
  // from readFile is not retained or exposed.
  const data = new Uint8Array(count);
  data.set(buf.subarray(headerLength));
  return { dims, data };
}

function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/**
 * Read an IDX file from disk, gunzipping it first if it is gzip-compressed.
 * A missing file is a ProbsemError (code NOT_FOUND); bad contents are
 * DataFormatErrors.
 */
export async function readIdxFile(path: string, options: ReadIdxOptions = {}): Promise<IdxArray> {
  let raw: Uint8Array;
  try {
    raw = await fs.readFile(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new ProbsemError(`${path} not found`, 'NOT_FOUND');
    }
    throw new ProbsemError(`${path} could not be read: ${e.message}`, 'IO');
  }

  if (isGzip(raw)) {
    const maxOutputLength = options.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES;
    try {
      raw = gunzipSync(raw, { maxOutputLength });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ERR_BUFFER_TOO_LARGE') {
        throw new DataFormatError(
          `${path} decompresses to more than ${maxOutputLength} bytes; refusing to read it (corrupt file or gzip bomb?)`,
        );
      }
      throw new DataFormatError(`${path} is not a valid gzip stream: ${e.message}`);
    }
  }
  return parseIdx(raw, path);
}

/** Check an IdxArray is encodable; throws DataFormatError otherwise. */
function validateForEncoding(arr: IdxArray): void {
  const { dims, data } = arr;
  if (dims.length < 1 || dims.length > MAX_NDIM) {
    throw new DataFormatError(
      `encodeIdx: ${dims.length} dimensions is not supported (must be 1 to ${MAX_NDIM})`,
    );
  }
  for (const [i, d] of dims.entries()) {
    if (!Number.isInteger(d) || d < 1 || d > MAX_DIM) {
      throw new DataFormatError(
        `encodeIdx: dimension ${i} has size ${d} (each dimension must be an integer 1 to ${MAX_DIM})`,
      );
    }
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new DataFormatError(
      `encodeIdx: dims ${dims.join('×')} describe ${count} elements but data has ${data.length}`,
    );
  }
}

/** Encode an IdxArray as an uncompressed unsigned-byte IDX buffer. */
export function encodeIdx(arr: IdxArray): Uint8Array {
  validateForEncoding(arr);
  const headerLength = 4 + 4 * arr.dims.length;
  const out = new Uint8Array(headerLength + arr.data.length);
  const view = new DataView(out.buffer);
  // Bytes 0 and 1 are the zero magic (already zero from allocation).
  view.setUint8(2, UBYTE_TYPE);
  view.setUint8(3, arr.dims.length);
  arr.dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(arr.data, headerLength);
  return out;
}

/**
 * Write an IdxArray to `path`, optionally gzipped. The write is atomic: data
 * goes to a temporary sibling file that is then renamed over `path`, so a
 * crash never leaves a half-written file under the final name.
 */
export async function writeIdxFile(path: string, arr: IdxArray, options: WriteIdxOptions): Promise<void> {
  const encoded = encodeIdx(arr);
  // Best compression: these files are shipped in the repo, so size matters
  // more than the one-off compression time. Node's gzip header has mtime 0,
  // so output is byte-for-byte reproducible.
  const bytes = options.gzip
    ? gzipSync(encoded, { level: zlibConstants.Z_BEST_COMPRESSION })
    : encoded;
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined); // don't leave debris
    const e = err as NodeJS.ErrnoException;
    throw new ProbsemError(`${path} could not be written: ${e.message}`, 'IO');
  }
}

/** Images and labels of an IDX image dataset (MNIST / Fashion-MNIST layout). */
export interface IdxImageDataset {
  /** count × height × width pixel bytes, row-major. */
  images: Uint8Array;
  /** One label byte per image. */
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

/**
 * Read a matching pair of IDX images (3-D: count × height × width) and labels
 * (1-D: count) files, checking their shapes agree.
 */
export async function readIdxImagesAndLabels(
  imagesPath: string,
  labelsPath: string,
): Promise<IdxImageDataset> {
  const [images, labels] = await Promise.all([readIdxFile(imagesPath), readIdxFile(labelsPath)]);
  const [count, height, width] = images.dims;
  if (images.dims.length !== 3 || count === undefined || height === undefined || width === undefined) {
    throw new DataFormatError(
      `${imagesPath} has shape ${images.dims.join('×')}, but an images file must be 3-D (count × height × width)`,
    );
  }
  const [labelCount] = labels.dims;
  if (labels.dims.length !== 1 || labelCount === undefined) {
    throw new DataFormatError(
      `${labelsPath} has shape ${labels.dims.join('×')}, but a labels file must be 1-D`,
    );
  }
  if (labelCount !== count) {
    throw new DataFormatError(
      `labels file ${labelsPath} has ${labelCount} labels but images file ${imagesPath} has ${count} images`,
    );
  }
  return { images: images.data, labels: labels.data, count, height, width };
}
