/**
 * ZIP archives with stored (uncompressed) entries: the explorer page packs a trained run into one
 * download, and the CLI reads such an archive as a run. Weights barely compress, so storing keeps
 * both sides small. The reader takes stored entries only and checks each entry's CRC-32.
 */
import { ProbsemError } from './errors.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipEntry {
  name: string;
  data: Uint8Array;
}

/** DOS date and time of a Date (the format's timestamp; 1980 at the earliest). */
function dosTime(d: Date): { time: number; date: number } {
  const y = Math.max(1980, d.getUTCFullYear());
  return { time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1), date: ((y - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate() };
}

/** One archive holding the entries as stored files (names in UTF-8). */
export function writeZip(entries: ZipEntry[], when = new Date()): Uint8Array {
  const enc = new TextEncoder();
  const { time, date } = dosTime(when);
  const names = entries.map((e) => enc.encode(e.name));
  const crcs = entries.map((e) => crc32(e.data));
  const localSize = entries.reduce((s, e, i) => s + 30 + names[i].length + e.data.length, 0);
  const centralSize = names.reduce((s, n) => s + 46 + n.length, 0);
  if (localSize + centralSize + 22 > 0xffffffff || entries.length > 0xffff) throw new ProbsemError('the archive is too large for a ZIP without ZIP64', 'BAD_INPUT');
  const out = new Uint8Array(localSize + centralSize + 22);
  const dv = new DataView(out.buffer);
  let p = 0;
  const offsets: number[] = [];
  const header = (sig: number, i: number, central: boolean) => {
    dv.setUint32(p, sig, true);
    p += 4;
    if (central) {
      dv.setUint16(p, 20, true); // made by: version 2.0
      p += 2;
    }
    dv.setUint16(p, 20, true); // version needed
    dv.setUint16(p + 2, 0x0800, true); // UTF-8 names
    dv.setUint16(p + 4, 0, true); // stored
    dv.setUint16(p + 6, time, true);
    dv.setUint16(p + 8, date, true);
    dv.setUint32(p + 10, crcs[i], true);
    dv.setUint32(p + 14, entries[i].data.length, true);
    dv.setUint32(p + 18, entries[i].data.length, true);
    dv.setUint16(p + 22, names[i].length, true);
    dv.setUint16(p + 24, 0, true);
    p += 26;
  };
  entries.forEach((e, i) => {
    offsets.push(p);
    header(0x04034b50, i, false);
    out.set(names[i], p);
    p += names[i].length;
    out.set(e.data, p);
    p += e.data.length;
  });
  const central = p;
  entries.forEach((_, i) => {
    header(0x02014b50, i, true);
    dv.setUint16(p, 0, true); // comment length
    dv.setUint16(p + 2, 0, true); // disk
    dv.setUint16(p + 4, 0, true); // internal attributes
    dv.setUint32(p + 6, 0, true); // external attributes
    dv.setUint32(p + 10, offsets[i], true);
    p += 14;
    out.set(names[i], p);
    p += names[i].length;
  });
  dv.setUint32(p, 0x06054b50, true);
  dv.setUint16(p + 8, entries.length, true);
  dv.setUint16(p + 10, entries.length, true);
  dv.setUint32(p + 12, p - central, true);
  dv.setUint32(p + 16, central, true);
  return out;
}

/** The entries of an archive of stored files, read through its central directory; `what` names it in errors. */
export function readZip(input: Uint8Array, what: string): ZipEntry[] {
  // A plain view: a Node Buffer's subarray and slice are both views, which later copies would not copy.
  const buf = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const bad = (why: string) => new ProbsemError(`${what} is not a readable ZIP archive: ${why}`, 'BAD_INPUT');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let eocd = -1;
  for (let p = buf.length - 22; p >= Math.max(0, buf.length - 22 - 0xffff); p--) {
    if (dv.getUint32(p, true) === 0x06054b50) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) throw bad('no end-of-archive record');
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const dec = new TextDecoder();
  const out: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || dv.getUint32(p, true) !== 0x02014b50) throw bad(`central directory entry ${i} is damaged`);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    const size = dv.getUint32(p + 20, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extra = dv.getUint16(p + 30, true);
    const comment = dv.getUint16(p + 32, true);
    const local = dv.getUint32(p + 42, true);
    const name = dec.decode(buf.subarray(p + 46, p + 46 + nameLen));
    p += 46 + nameLen + extra + comment;
    if (name.endsWith('/')) continue;
    if (method !== 0) throw bad(`${name} is compressed (method ${method}); probsem reads stored entries (re-pack with zip -0, or unzip it and give the folder)`);
    if (local + 30 > buf.length || dv.getUint32(local, true) !== 0x04034b50) throw bad(`the local header of ${name} is damaged`);
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    if (start + size > buf.length) throw bad(`${name} runs past the end of the file (truncated?)`);
    const data = buf.subarray(start, start + size);
    if (crc32(data) !== crc) throw bad(`${name} fails its CRC-32 check (corrupted)`);
    out.push({ name, data });
  }
  return out;
}
