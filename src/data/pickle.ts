/**
 * A small, restricted reader for Python pickles (protocols 2–5) holding plain data: dicts, lists,
 * tuples, strings, bytes, ints, floats, booleans, None and numpy arrays of integers. It is enough
 * for the CIFAR python files (written by Python 2's cPickle at protocol 2: str as BINSTRING, numpy
 * arrays through `numpy.core.multiarray._reconstruct` and a BUILD with the raw bytes) and for the
 * same data pickled again by Python 3 (bytes through `_codecs.encode`, numpy 2's `numpy._core`,
 * protocol 5's `_frombuffer`). No other global is ever resolved: a pickle naming one is refused,
 * so reading a file never runs code. Errors name the source and the byte offset.
 */
import { DataFormatError } from '../core/errors.js';

/** A numpy array: row-major (or Fortran-order) elements of an integer dtype. */
export interface NdArray {
  kind: 'ndarray';
  shape: number[];
  /** numpy's type string without byte order: 'u1', 'i4', 'i8'… */
  dtype: string;
  fortran: boolean;
  /** The elements: the raw bytes for u1, numbers otherwise. */
  data: Uint8Array | number[];
}

/** A Python bytes object (Python 2 str), kept apart from text. */
export class PyBytes {
  constructor(readonly bytes: Uint8Array) {}
  /** The bytes read as Latin-1, as Python 2 strings usually hold ASCII. */
  text(): string {
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength).toString('latin1');
  }
}

export type PyValue = null | boolean | number | bigint | string | PyBytes | PyValue[] | Map<PyValue, PyValue> | NdArray | PyOpaque;

/** Intermediate objects: a global reference, a dtype, an array before its BUILD. */
interface PyOpaque {
  kind: 'global' | 'dtype' | 'ndarray-pending';
  name?: string;
  dtype?: string;
  byteOrder?: string;
}

const ALLOWED_GLOBALS = new Set([
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.ndarray',
  'numpy.dtype',
  '_codecs.encode',
  'numpy.core.numeric._frombuffer',
  'numpy._core.numeric._frombuffer',
]);


const ITEM_SIZE: Record<string, number> = { u1: 1, i1: 1, b1: 1, u2: 2, i2: 2, u4: 4, i4: 4, u8: 8, i8: 8 };

/** Parses one pickle from `buf`; `source` names it in errors. */
export function readPickle(buf: Uint8Array, source: string): PyValue {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: PyValue[] = [];
  /** Stack heights at each MARK not yet popped to. */
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opAt = 0;
  const fail = (what: string): never => {
    throw new DataFormatError(`${source}: not a readable pickle: ${what} (at byte ${opAt})`);
  };
  const need = (n: number) => {
    if (pos + n > buf.length) fail(`truncated: ${n} more bytes needed, the file ends ${buf.length - pos} bytes later`);
  };
  const u8 = () => (need(1), buf[pos++]);
  /** An n-byte value read at the current position by `read`. */
  const fixed = <T>(n: number, read: (at: number) => T): T => {
    need(n);
    pos += n;
    return read(pos - n);
  };
  const u16 = () => fixed(2, (at) => dv.getUint16(at, true));
  const u32 = () => fixed(4, (at) => dv.getUint32(at, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(buf.length)) fail(`a length of ${v} bytes, longer than the file`);
    return Number(v);
  };
  const bytes = (n: number) => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const utf8 = (n: number) => Buffer.from(bytes(n)).toString('utf8');
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('truncated: a GLOBAL name without its newline');
    const s = Buffer.from(buf.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1])) fail('the stack is empty');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1])) fail('the stack is empty');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail('no mark to pop to');
    return stack.splice(m!);
  };
  const global = (module: string, name: string): PyValue => {
    const full = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(full)) fail(`it refers to ${full}, which this reader does not load (it reads plain data and numpy arrays only)`);
    return { kind: 'global', name: full };
  };

  for (;;) {
    opAt = pos;
    if (pos >= buf.length) fail('truncated: the file ends before the STOP opcode');
    const op = buf[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(`pickle protocol ${buf[pos - 1]} is newer than 5`);
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length > 0) fail(`${stack.length} values left on the stack at STOP`);
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const d = new Map<PyValue, PyValue>();
        for (let i = 0; i + 1 < items.length; i += 2) d.set(items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x4a: // BININT
        stack.push(fixed(4, (at) => dv.getInt32(at, true)));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const n = u8();
        const b = bytes(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT
        stack.push(fixed(8, (at) => dv.getFloat64(at, false)));
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x54: // BINSTRING (Python 2 str)
      case 0x42: // BINBYTES
        stack.push(new PyBytes(bytes(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
      case 0x43: // SHORT_BINBYTES
        stack.push(new PyBytes(bytes(u8())));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(new PyBytes(bytes(u64())));
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8(u64()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`memo entry ${k} was never stored`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof name !== 'string' || typeof module !== 'string') fail('STACK_GLOBAL without two names');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args, fail));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        build(top(), state, fail);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        const d = top();
        if (!(d instanceof Map)) fail('SETITEM on something that is not a dict');
        (d as Map<PyValue, PyValue>).set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        const d = top();
        if (!(d instanceof Map)) fail('SETITEMS on something that is not a dict');
        if (items.length % 2 !== 0) fail('SETITEMS with an odd number of values');
        for (let i = 0; i < items.length; i += 2) (d as Map<PyValue, PyValue>).set(items[i], items[i + 1]);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) fail('APPEND on something that is not a list');
        (l as PyValue[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail('APPENDS on something that is not a list');
        for (const v of items) (l as PyValue[]).push(v);
        break;
      }
      default:
        fail(`opcode 0x${op.toString(16).padStart(2, '0')} is not one this reader handles (plain data and numpy arrays only)`);
    }
  }
}

const isOpaque = (v: PyValue, kind: PyOpaque['kind']): v is PyOpaque =>
  v !== null && typeof v === 'object' && !(v instanceof Map) && !(v instanceof PyBytes) && !Array.isArray(v) && v.kind === kind;

function reduce(fn: PyValue, args: PyValue, fail: (what: string) => never): PyValue {
  if (!isOpaque(fn, 'global') || !Array.isArray(args)) return fail('REDUCE of something that is not a known global');
  const name = fn.name!;
  if (name === '_codecs.encode') {
    // Python 3 pickles bytes at protocol 2 as _codecs.encode(text, 'latin1'): one char per byte.
    const [text, enc] = args;
    if (typeof text !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) fail("_codecs.encode with arguments other than (str, 'latin1')");
    return new PyBytes(Uint8Array.from(Buffer.from(text as string, 'latin1')));
  }
  if (name === 'numpy.dtype') {
    const [descr] = args;
    const d = descr instanceof PyBytes ? descr.text() : descr;
    if (typeof d !== 'string') fail('numpy.dtype without a type string');
    return { kind: 'dtype', dtype: d as string, byteOrder: '|' };
  }
  if (name.endsWith('._reconstruct')) {
    const [cls] = args;
    if (!isOpaque(cls, 'global') || cls.name !== 'numpy.ndarray') fail('_reconstruct of something other than numpy.ndarray');
    return { kind: 'ndarray-pending' };
  }
  if (name.endsWith('._frombuffer')) {
    // Protocol 5: _frombuffer(buffer, dtype, shape, order).
    const [data, dtype, shape, order] = args;
    if (!(data instanceof PyBytes) || !isOpaque(dtype as PyValue, 'dtype')) fail('_frombuffer without bytes and a dtype');
    return makeArray(shape, dtype as PyOpaque, order === 'F', data as PyBytes, fail);
  }
  return fail(`REDUCE of ${name}`);
}

function build(target: PyValue, state: PyValue, fail: (what: string) => never): void {
  if (isOpaque(target, 'dtype')) {
    // (version, byte order, subarray, names, fields, elsize, alignment, flags)
    if (Array.isArray(state) && typeof state[1] === 'string') target.byteOrder = state[1];
    return;
  }
  if (isOpaque(target, 'ndarray-pending')) {
    // (version, shape, dtype, is_fortran, raw data)
    if (!Array.isArray(state) || state.length < 5) return fail('a numpy array without its (version, shape, dtype, order, data) state');
    const [, shape, dtype, fortran, raw] = state;
    if (!isOpaque(dtype, 'dtype')) fail('a numpy array without a dtype');
    if (!(raw instanceof PyBytes)) fail('a numpy array whose data are not raw bytes (object arrays are not read)');
    const arr = makeArray(shape, dtype as PyOpaque, fortran === true, raw as PyBytes, fail);
    Object.assign(target as object, arr);
    return;
  }
  fail('BUILD on an object this reader does not construct');
}

function makeArray(shape: PyValue, dtype: PyOpaque, fortran: boolean, raw: PyBytes, fail: (what: string) => never): NdArray {
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) fail('a numpy array with a bad shape');
  const dims = shape as number[];
  const m = /^([<>|=]?)([a-z]\d+)$/.exec(dtype.dtype!);
  const code = m?.[2] ?? dtype.dtype!;
  const size = ITEM_SIZE[code];
  if (!size) fail(`numpy dtype '${dtype.dtype}' is not read (integer arrays only)`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (raw.bytes.length !== count * size) fail(`a numpy array of shape (${dims.join(', ')}) and dtype ${code} needs ${count * size} bytes of data, the pickle holds ${raw.bytes.length}`);
  const order = m?.[1] === '>' || dtype.byteOrder === '>' ? 'big' : 'little';
  let data: Uint8Array | number[];
  if (code === 'u1' || code === 'b1') data = raw.bytes;
  else {
    const dv = new DataView(raw.bytes.buffer, raw.bytes.byteOffset, raw.bytes.byteLength);
    const le = order === 'little';
    const signed = code[0] === 'i';
    data = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const o = i * size;
      if (size === 1) data[i] = signed ? dv.getInt8(o) : dv.getUint8(o);
      else if (size === 2) data[i] = signed ? dv.getInt16(o, le) : dv.getUint16(o, le);
      else if (size === 4) data[i] = signed ? dv.getInt32(o, le) : dv.getUint32(o, le);
      else data[i] = Number(signed ? dv.getBigInt64(o, le) : dv.getBigUint64(o, le));
    }
  }
  return { kind: 'ndarray', shape: dims, dtype: code, fortran, data };
}

/** The value under `key` in a pickled dict, whether its keys are text or (Python 2) bytes. */
export function dictGet(d: PyValue, key: string): PyValue | undefined {
  if (!(d instanceof Map)) return undefined;
  for (const [k, v] of d) {
    if (k === key || (k instanceof PyBytes && k.text() === key)) return v;
  }
  return undefined;
}

/** Text of a pickled str or bytes value, or undefined. */
export function pyText(v: PyValue | undefined): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof PyBytes) return Buffer.from(v.bytes).toString('utf8');
  return undefined;
}

export const isNdArray = (v: PyValue | undefined): v is NdArray =>
  v !== null && v !== undefined && typeof v === 'object' && !(v instanceof Map) && !(v instanceof PyBytes) && !Array.isArray(v) && v.kind === 'ndarray';
