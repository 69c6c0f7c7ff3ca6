/**
 * A small JPEG reader for uploads: baseline (and extended sequential 8-bit) Huffman JPEGs, decoded
 * to their luminance only — the models see grey images, so chroma blocks are entropy-decoded (to
 * advance the stream) but never transformed. Progressive, lossless, arithmetic-coded, 12-bit and
 * CMYK files are refused with code 'UNSUPPORTED_IMAGE'; malformed ones with a DataFormatError
 * naming the problem.
 */
import { DataFormatError, ProbsemError } from '../core/errors.js';
import { resizeArea } from '../data/png.js';

export function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

const unsupported = (what: string) => new ProbsemError(`${what} JPEGs are not read; send a baseline JPEG or a PNG`, 'UNSUPPORTED_IMAGE');
const bad = (what: string) => new DataFormatError(`the upload is not a valid JPEG: ${what}`);

/** Natural (row-major) position of the k-th coefficient in zig-zag order. */
const ZIGZAG = new Uint8Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57,
  50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]);

/** cos((2x+1)uπ/16) · c(u), with c(0) = 1/√2, for the 8-point inverse DCT. */
const IDCT_COS = (() => {
  const t = new Float64Array(64);
  for (let x = 0; x < 8; x++) for (let u = 0; u < 8; u++) t[x * 8 + u] = (u === 0 ? Math.SQRT1_2 : 1) * Math.cos(((2 * x + 1) * u * Math.PI) / 16);
  return t;
})();

interface Huffman {
  maxcode: Int32Array;
  valptr: Int32Array;
  mincode: Int32Array;
  values: Uint8Array;
}

function buildHuffman(counts: Uint8Array, values: Uint8Array): Huffman {
  const maxcode = new Int32Array(18).fill(-1);
  const valptr = new Int32Array(17);
  const mincode = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let l = 1; l <= 16; l++) {
    const n = counts[l - 1];
    if (n) {
      valptr[l] = k;
      mincode[l] = code;
      code += n;
      k += n;
      maxcode[l] = code - 1;
    }
    if (code > 1 << l) throw bad('a Huffman table has more codes than fit');
    code <<= 1;
  }
  maxcode[17] = 0x7fffffff;
  return { maxcode, valptr, mincode, values };
}

interface Component {
  id: number;
  h: number;
  v: number;
  tq: number;
  dcPred: number;
  dc?: Huffman;
  ac?: Huffman;
}

export function decodeJpegToGrey(buf: Uint8Array, height: number, width: number, opts: { invert?: boolean; maxPixels?: number } = {}): Float32Array {
  const { grey, h, w } = decodeJpegLuma(buf, opts.maxPixels ?? 4096 * 4096);
  if (opts.invert) for (let i = 0; i < grey.length; i++) grey[i] = 1 - grey[i];
  return resizeArea(grey, h, w, height, width);
}

/** The luminance plane in [0, 1] (row-major, h×w). */
export function decodeJpegLuma(data: Uint8Array, maxPixels: number): { grey: Float32Array; h: number; w: number } {
  if (!isJpeg(data)) throw bad('wrong signature');
  const qt: (Uint16Array | undefined)[] = [];
  const dcTables: (Huffman | undefined)[] = [];
  const acTables: (Huffman | undefined)[] = [];
  let comps: Component[] = [];
  let X = 0;
  let Y = 0;
  let hmax = 1;
  let vmax = 1;
  let mcusX = 0;
  let mcusY = 0;
  let restart = 0;
  let adobeTransform = -1;
  let plane: Float32Array | null = null;
  let planeW = 0;
  let scans = 0;
  let pos = 2;
  const u16 = (p: number) => {
    if (p + 1 >= data.length) throw bad('it ends inside a segment header');
    return (data[p] << 8) | data[p + 1];
  };

  for (;;) {
    if (pos >= data.length) {
      if (scans) break; // a missing end marker is tolerated once image data was read
      throw bad('it ends before any image data');
    }
    if (data[pos] !== 0xff) throw bad(`expected a marker at byte ${pos}`);
    const marker = data[pos + 1];
    pos += 2;
    if (marker === 0xff) {
      pos--; // fill byte
      continue;
    }
    if (marker === 0xd9) break; // EOI
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    const len = u16(pos);
    const end = pos + len;
    if (len < 2 || end > data.length) throw bad(`segment 0xFF${marker.toString(16).toUpperCase()} at byte ${pos - 2} runs past the end`);
    let p = pos + 2;
    switch (marker) {
      case 0xdb: // DQT
        while (p < end) {
          const pq = data[p] >> 4;
          const tq = data[p] & 15;
          if (tq > 3) throw bad(`quantisation table id ${tq}`);
          const t = new Uint16Array(64);
          p++;
          for (let k = 0; k < 64; k++) {
            t[k] = pq ? u16(p + 2 * k) : data[p + k];
          }
          p += pq ? 128 : 64;
          if (p > end) throw bad('a quantisation table runs past its segment');
          qt[tq] = t;
        }
        break;
      case 0xc4: // DHT
        while (p < end) {
          const tc = data[p] >> 4;
          const th = data[p] & 15;
          if (tc > 1 || th > 3) throw bad(`Huffman table class ${tc} id ${th}`);
          const counts = data.subarray(p + 1, p + 17);
          const total = counts.reduce((a, b) => a + b, 0);
          if (p + 17 + total > end) throw bad('a Huffman table runs past its segment');
          const table = buildHuffman(counts, data.slice(p + 17, p + 17 + total));
          (tc ? acTables : dcTables)[th] = table;
          p += 17 + total;
        }
        break;
      case 0xdd: // DRI
        restart = u16(p);
        break;
      case 0xee: // APP14 (Adobe): the colour transform
        if (len >= 14 && String.fromCharCode(...data.subarray(p, p + 5)) === 'Adobe') adobeTransform = data[p + 11];
        break;
      case 0xc0:
      case 0xc1: {
        if (plane) throw bad('more than one frame header');
        if (data[p] !== 8) throw unsupported(`${data[p]}-bit`);
        Y = u16(p + 1);
        X = u16(p + 3);
        const nf = data[p + 5];
        if (Y === 0) throw unsupported('DNL-sized');
        if (X === 0) throw bad('zero width');
        if (X * Y > maxPixels) throw bad(`it declares ${X}×${Y} pixels; at most ${maxPixels} are accepted`);
        if (nf !== 1 && nf !== 3) throw unsupported(`${nf}-component (CMYK)`);
        if (nf === 3 && adobeTransform === 0) throw unsupported('RGB-coded');
        if (p + 6 + 3 * nf > end) throw bad('the frame header is truncated');
        comps = [];
        for (let i = 0; i < nf; i++) {
          const o = p + 6 + 3 * i;
          const h = data[o + 1] >> 4;
          const v = data[o + 1] & 15;
          if (h < 1 || h > 4 || v < 1 || v > 4) throw bad(`sampling factors ${h}×${v}`);
          comps.push({ id: data[o], h, v, tq: data[o + 2], dcPred: 0 });
        }
        hmax = Math.max(...comps.map((c) => c.h));
        vmax = Math.max(...comps.map((c) => c.v));
        mcusX = Math.ceil(X / (8 * hmax));
        mcusY = Math.ceil(Y / (8 * vmax));
        planeW = mcusX * comps[0].h * 8;
        plane = new Float32Array(planeW * mcusY * comps[0].v * 8);
        break;
      }
      case 0xda: {
        // SOS
        if (!plane) throw bad('image data before the frame header');
        const ns = data[p];
        const scomps: Component[] = [];
        for (let i = 0; i < ns; i++) {
          const cid = data[p + 1 + 2 * i];
          const c = comps.find((q) => q.id === cid);
          if (!c) throw bad(`a scan names unknown component ${cid}`);
          c.dc = dcTables[data[p + 2 + 2 * i] >> 4];
          c.ac = acTables[data[p + 2 + 2 * i] & 15];
          if (!c.dc || !c.ac) throw bad('a scan uses an undefined Huffman table');
          if (!qt[c.tq]) throw bad('a component uses an undefined quantisation table');
          scomps.push(c);
        }
        pos = decodeScan(data, end, scomps, comps[0], plane, planeW, { X, Y, hmax, vmax, mcusX, mcusY, restart, qt });
        scans++;
        continue;
      }
      default:
        if (marker === 0xc2 || marker === 0xc6 || marker === 0xca || marker === 0xce) throw unsupported('progressive');
        if (marker === 0xc3 || marker === 0xc7 || marker === 0xcb || marker === 0xcf) throw unsupported('lossless');
        if (marker >= 0xc5 && marker <= 0xcf && marker !== 0xc8 && marker !== 0xcc) throw unsupported('arithmetic-coded or hierarchical');
      // APPn, COM and the rest: skipped.
    }
    pos = end;
  }
  if (!plane || !scans) throw bad('it holds no image data');
  const grey = new Float32Array(X * Y);
  for (let y = 0; y < Y; y++) for (let x = 0; x < X; x++) grey[y * X + x] = plane[y * planeW + x];
  return { grey, h: Y, w: X };
}

interface Frame {
  X: number;
  Y: number;
  hmax: number;
  vmax: number;
  mcusX: number;
  mcusY: number;
  restart: number;
  qt: (Uint16Array | undefined)[];
}

/** Decodes one scan from `start`; writes the luma component's pixels; returns the position after it. */
function decodeScan(data: Uint8Array, start: number, scomps: Component[], luma: Component, plane: Float32Array, planeW: number, f: Frame): number {
  let pos = start;
  let bitBuf = 0;
  let bitCnt = 0;
  const bit = (): number => {
    if (bitCnt === 0) {
      if (pos >= data.length) throw bad('the image data ends early');
      let b = data[pos++];
      if (b === 0xff) {
        const n = data[pos];
        if (n === 0) pos++;
        else throw bad(`the image data ends early (marker 0xFF${(n ?? 0).toString(16).toUpperCase()} inside a block)`);
      }
      bitBuf = b;
      bitCnt = 8;
      b = 0;
    }
    bitCnt--;
    return (bitBuf >> bitCnt) & 1;
  };
  const bits = (n: number): number => {
    let v = 0;
    for (let i = 0; i < n; i++) v = (v << 1) | bit();
    return v;
  };
  const decode = (t: Huffman): number => {
    let code = bit();
    let l = 1;
    while (code > t.maxcode[l]) {
      code = (code << 1) | bit();
      if (++l > 16) throw bad('an invalid Huffman code');
    }
    return t.values[t.valptr[l] + code - t.mincode[l]];
  };
  const extend = (s: number): number => {
    if (s === 0) return 0;
    if (s > 16) throw bad('a coefficient of impossible size');
    const v = bits(s);
    return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
  };
  const coef = new Float64Array(64);
  const tmp = new Float64Array(64);

  const block = (c: Component, row: number, col: number) => {
    const q = f.qt[c.tq]!;
    const isLuma = c === luma;
    if (isLuma) coef.fill(0);
    const t = decode(c.dc!);
    c.dcPred += extend(t);
    if (isLuma) coef[0] = c.dcPred * q[0];
    for (let k = 1; k < 64; ) {
      const rs = decode(c.ac!);
      const r = rs >> 4;
      const s = rs & 15;
      if (s === 0) {
        if (r !== 15) break;
        k += 16;
        continue;
      }
      k += r;
      if (k > 63) throw bad('a block has more than 64 coefficients');
      const v = extend(s);
      if (isLuma) coef[ZIGZAG[k]] = v * q[k];
      k++;
    }
    if (!isLuma) return;
    // Separable inverse DCT: rows, then columns.
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        let s = 0;
        for (let u = 0; u < 8; u++) s += IDCT_COS[x * 8 + u] * coef[y * 8 + u];
        tmp[y * 8 + x] = s / 2;
      }
    }
    const oy = row * 8;
    const ox = col * 8;
    for (let x = 0; x < 8; x++) {
      for (let y = 0; y < 8; y++) {
        let s = 0;
        for (let v = 0; v < 8; v++) s += IDCT_COS[y * 8 + v] * tmp[v * 8 + x];
        const val = Math.round(s / 2 + 128);
        plane[(oy + y) * planeW + ox + x] = Math.max(0, Math.min(255, val)) / 255;
      }
    }
  };

  for (const c of scomps) c.dcPred = 0;
  let total: number;
  let unit: (i: number) => void;
  if (scomps.length === 1) {
    const c = scomps[0];
    const perLine = Math.ceil(Math.ceil((f.X * c.h) / f.hmax) / 8);
    const perCol = Math.ceil(Math.ceil((f.Y * c.v) / f.vmax) / 8);
    total = perLine * perCol;
    unit = (i) => block(c, Math.floor(i / perLine), i % perLine);
  } else {
    total = f.mcusX * f.mcusY;
    unit = (i) => {
      const my = Math.floor(i / f.mcusX);
      const mx = i % f.mcusX;
      for (const c of scomps) for (let v = 0; v < c.v; v++) for (let h = 0; h < c.h; h++) block(c, my * c.v + v, mx * c.h + h);
    };
  }
  for (let i = 0; i < total; i++) {
    if (f.restart && i > 0 && i % f.restart === 0) {
      // Byte-align and expect RSTn.
      bitCnt = 0;
      if (data[pos] === 0xff && data[pos + 1] >= 0xd0 && data[pos + 1] <= 0xd7) pos += 2;
      else throw bad(`a restart marker is missing at byte ${pos}`);
      for (const c of scomps) c.dcPred = 0;
    }
    unit(i);
  }
  // Skip to the next marker (padding bits, stray bytes).
  while (pos < data.length && !(data[pos] === 0xff && data[pos + 1] !== 0 && !(data[pos + 1] >= 0xd0 && data[pos + 1] <= 0xd7))) pos++;
  return pos;
}
