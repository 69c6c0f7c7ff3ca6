/**
 * probsem's own WebAssembly kernels (kernels.c): matrix products in every transpose form with
 * fused bias and ReLU, the ReLU and bias gradients, Adam, a finiteness check and the KL index's
 * scan, over buffers in one shared linear memory. A second thread (a worker running the same
 * module on the same memory) takes half of each large product's columns, which leaves every
 * result bit-identical to the single-threaded one.
 *
 * Why not tfjs ops: on the wasm backend every op is a separate dispatch with its own allocation,
 * transposed products take a slow path, and Adam costs 13 passes over the parameters. A training
 * step built from these kernels does each product once, in place, with no transposes.
 */
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { ProbsemError } from '../errors.js';
import { KERNELS_FMA_WASM_BASE64, KERNELS_WASM_BASE64 } from './kernels-binary.js';

/** A float32 array living in kernel memory: byte offset and length in elements. */
export interface Buf {
  readonly ptr: number;
  readonly length: number;
}

interface KernelExports {
  gemm(...a: number[]): void;
  relu_backward(g: number, y: number, n: number): void;
  column_sums(g: number, m: number, n: number, out: number, n0: number, n1: number): void;
  adam(p: number, g: number, m: number, v: number, n: number, step: number, b1: number, b2: number, sqrtBc2: number, eps: number): void;
  count_nonfinite(x: number, n: number): number;
  transpose(src: number, rows: number, cols: number, dst: number): void;
  bernoulli_logits(l: number, x: number, g: number, probs: number, n: number, scale: number): number;
  sigmoid_backward_add(g: number, gp: number, s: number, n: number): void;
  im2col(src: number, n: number, h: number, w: number, c: number, k: number, s: number, p: number, dst: number): void;
  col2im_add(cols: number, n: number, h: number, w: number, c: number, k: number, s: number, p: number, dst: number): void;
  kl_scan16(...a: number[]): void;
  __heap_base: WebAssembly.Global;
}

const FN_GEMM = 0;
const FN_ADAM = 1;
const FN_COUNT = 2;
const FN_EXIT = -1;
const PAGE = 65536;
const MAX_PAGES = 16384; // 1 GiB
const NR = 16;
/** Scratch per thread for gemm: one packed panel of up to 784 x 16 (KBLOCK in kernels.c), two ragged rows and a bias row. */
const WORK_FLOATS = NR * 784 + 3 * NR;
/** Below this many multiply-adds a product stays on one thread (handing it over costs more). */
const SPLIT_MIN_MACS = 150_000;

const compiled = new Map<boolean, WebAssembly.Module | null>();

/**
 * Node, as opposed to a browser (the explorer page's training worker). In a browser the kernels run
 * on one thread over unshared memory: without cross-origin isolation (COOP/COEP headers, which a
 * plain static server does not send) there is no SharedArrayBuffer.
 */
export const IN_NODE = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

function base64Bytes(b64: string): Uint8Array {
  if (IN_NODE) return Buffer.from(b64, 'base64');
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * The module bytes with the memory import's "shared" flag cleared, so it links against an ordinary
 * memory. The instructions are the same (atomics are not used on the single-thread path), so the
 * results are identical to the shared build's.
 */
export function unsharedMemoryModule(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const b = Uint8Array.from(bytes);
  let p = 8;
  const leb = (): number => {
    let r = 0;
    let shift = 0;
    for (;;) {
      const x = b[p++];
      r |= (x & 0x7f) << shift;
      if (x < 0x80) return r >>> 0;
      shift += 7;
    }
  };
  while (p < b.length) {
    const id = b[p++];
    const size = leb();
    const end = p + size;
    if (id !== 2) {
      p = end;
      continue;
    }
    for (let n = leb(); n > 0; n--) {
      for (let name = 0; name < 2; name++) {
        const len = leb(); // module, then field name
        p += len;
      }
      const kind = b[p++];
      if (kind === 2) {
        b[p] &= ~2;
        return b;
      }
      if (kind === 0) leb();
      else if (kind === 1) {
        p++;
        const flags = b[p++];
        leb();
        if (flags & 1) leb();
      } else if (kind === 3) p += 2;
      else throw new ProbsemError(`kernel module: unexpected import kind ${kind}`, 'INTERNAL');
    }
    break;
  }
  throw new ProbsemError('kernel module: no memory import found', 'INTERNAL');
}

function moduleBytes(b64: string): Uint8Array<ArrayBuffer> {
  const bytes = base64Bytes(b64);
  return IN_NODE ? (bytes as Uint8Array<ArrayBuffer>) : unsharedMemoryModule(bytes);
}

/**
 * The compiled kernels: with `fma`, the build whose multiply-adds are fused (relaxed SIMD; Node 20
 * has it behind a V8 flag, which is switched on here), falling back to the plain build where the
 * engine rejects it. Fused and plain products differ in the last bits, so a run's numbers are
 * reproducible for one choice (see `Kernels.fma`).
 */
function kernelModule(fma: boolean): WebAssembly.Module | null {
  if (!compiled.has(fma)) {
    let mod: WebAssembly.Module | null = null;
    if (fma) {
      try {
        if (IN_NODE) setFlagsFromString('--experimental-wasm-relaxed-simd');
        mod = new WebAssembly.Module(moduleBytes(KERNELS_FMA_WASM_BASE64));
      } catch {
        mod = null;
      }
    } else {
      mod = new WebAssembly.Module(moduleBytes(KERNELS_WASM_BASE64));
    }
    compiled.set(fma, mod);
  }
  return compiled.get(fma) ?? null;
}

/** Fused multiply-adds unless PROBSEM_FMA=0. */
export function defaultKernelFma(): boolean {
  return !IN_NODE || process.env.PROBSEM_FMA !== '0';
}

// The helper thread: waits for a task in the control block, runs it on its own instance of the
// same module and memory, and reports completion. It spins briefly before sleeping because the
// next task usually follows within microseconds.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctl, spin } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const fns = [ex.gemm, ex.adam, ex.count_nonfinite];
const i32 = new Int32Array(memory.buffer, ctl, 8);
const f64 = new Float64Array(memory.buffer, ctl + 32, 20);
let seen = 0;
Atomics.store(i32, 1, -1); Atomics.notify(i32, 1);
for (;;) {
  let n = 0;
  while (Atomics.load(i32, 0) === seen) { if (++n > spin) Atomics.wait(i32, 0, seen); }
  seen = Atomics.load(i32, 0);
  const fn = i32[2];
  if (fn < 0) break;
  const argc = i32[3];
  const a = new Array(argc);
  for (let k = 0; k < argc; k++) a[k] = f64[k];
  try {
    const r = fns[fn](...a);
    i32[4] = typeof r === 'number' ? r : 0;
    i32[5] = 0;
  } catch {
    i32[5] = 1; // a trap: reported by the main thread, which would otherwise wait forever
  }
  Atomics.store(i32, 1, seen);
  Atomics.notify(i32, 1);
}
`;

/** One product C = op(A) op(B) (+ bias) (+ C), ReLU optional; see `Kernels.matmul`. */
export interface MatmulArgs {
  a: Buf;
  b: Buf;
  c: Buf;
  m: number;
  n: number;
  k: number;
  /** A is stored k x m. */
  transA?: boolean;
  /** B is stored n x k. */
  transB?: boolean;
  bias?: Buf | null;
  accumulate?: boolean;
  relu?: boolean;
}

export interface KernelOptions {
  /** 1 or 2 (default: 2 where the machine has two cores, overridable by PROBSEM_THREADS). */
  threads?: number;
  /** Use fused multiply-adds where the engine has them (default: yes, unless PROBSEM_FMA=0). */
  fma?: boolean;
}

/** Threads the kernels use by default: PROBSEM_THREADS, else 2 if there are 2 cores. */
export function defaultKernelThreads(): number {
  if (!IN_NODE) return 1;
  const env = process.env.PROBSEM_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (Number.isInteger(n) && n >= 1) return Math.min(2, n);
  }
  return availableParallelism() >= 2 ? 2 : 1;
}

export class Kernels {
  readonly memory: WebAssembly.Memory;
  private readonly ex: KernelExports;
  private top: number;
  private readonly ctl: number;
  private readonly work: [number, number];
  private worker: Worker | null = null;
  private seq = 0;
  private i32!: Int32Array;
  private f64!: Float64Array;
  private f32cache: Float32Array | null = null;
  private scratchBuf: Buf | null = null;

  private constructor(
    readonly threads: number,
    private readonly module: WebAssembly.Module,
    /** Whether the products use fused multiply-adds. */
    readonly fma: boolean,
  ) {
    this.memory = new WebAssembly.Memory({ initial: 32, maximum: MAX_PAGES, shared: IN_NODE });
    this.ex = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports as unknown as KernelExports;
    this.top = align(this.ex.__heap_base.value as number);
    this.ctl = this.top;
    this.top = align(this.top + 32 + 20 * 8);
    this.work = [this.allocRaw(WORK_FLOATS), this.allocRaw(WORK_FLOATS)];
    this.i32 = new Int32Array(this.memory.buffer, this.ctl, 8);
    this.f64 = new Float64Array(this.memory.buffer, this.ctl + 32, 20);
  }

  /** Kernels with their helper thread started (threads: 1 starts none). */
  static async create(opts: KernelOptions = {}): Promise<Kernels> {
    const threads = opts.threads ?? defaultKernelThreads();
    if (threads !== 1 && threads !== 2) throw new ProbsemError(`kernel threads must be 1 or 2, got ${threads}`, 'BAD_OPTION');
    if (threads === 2 && !IN_NODE) throw new ProbsemError('kernel threads: a browser runs the kernels on 1 thread', 'BAD_OPTION');
    const fmaModule = (opts.fma ?? defaultKernelFma()) ? kernelModule(true) : null;
    const k = fmaModule ? new Kernels(threads, fmaModule, true) : new Kernels(threads, kernelModule(false)!, false);
    if (threads === 2) await k.startWorker();
    return k;
  }

  /** Single-threaded kernels, created synchronously (no helper thread to wait for). */
  static createSync(opts: { fma?: boolean } = {}): Kernels {
    const fmaModule = (opts.fma ?? defaultKernelFma()) ? kernelModule(true) : null;
    return fmaModule ? new Kernels(1, fmaModule, true) : new Kernels(1, kernelModule(false)!, false);
  }

  private async startWorker(): Promise<void> {
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module: this.module, memory: this.memory, ctl: this.ctl, spin: 20000 },
    });
    w.unref();
    this.worker = w;
    await new Promise<void>((resolve, reject) => {
      w.once('error', reject);
      const poll = () => (Atomics.load(this.i32, 1) === -1 ? resolve() : setTimeout(poll, 1));
      poll();
    });
    Atomics.store(this.i32, 1, 0);
  }

  /** Stops the helper thread. The memory is released with the object. */
  async dispose(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    this.i32[2] = FN_EXIT;
    Atomics.store(this.i32, 0, ++this.seq);
    Atomics.notify(this.i32, 0);
    await w.terminate();
  }

  /** A zeroed float32 buffer of n elements. Memory grows as needed; buffers are never freed. */
  alloc(n: number): Buf {
    return { ptr: this.allocRaw(n), length: n };
  }

  private allocRaw(n: number): number {
    if (!Number.isInteger(n) || n < 0) throw new ProbsemError(`kernel buffer size must be a non-negative integer, got ${n}`, 'BAD_OPTION');
    const ptr = this.top;
    const end = align(ptr + 4 * n);
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) throw new ProbsemError(`kernel memory would exceed ${MAX_PAGES / 16} MiB`, 'BAD_OPTION');
      this.memory.grow(pages);
      this.f32cache = null;
    }
    this.top = end;
    return ptr;
  }

  /** Float32Array view of a buffer (valid until the next alloc). */
  view(b: Buf): Float32Array {
    return new Float32Array(this.heap().buffer, b.ptr, b.length);
  }

  /** The whole memory as floats; index = ptr / 4. Refresh after any alloc. */
  heap(): Float32Array {
    if (!this.f32cache || this.f32cache.buffer.byteLength !== this.memory.buffer.byteLength) this.f32cache = new Float32Array(this.memory.buffer);
    return this.f32cache;
  }

  /**
   * C[M x N] = op(A) op(B) (+ bias) (+ C when accumulate), then ReLU when asked. transA: A is
   * stored K x M; transB: B is stored N x K. Large products are split over the two threads by
   * columns (results identical to one thread).
   */
  matmul(o: MatmulArgs): void {
    const args = this.gemmArgs(o);
    const n = o.n;
    const split = this.worker && o.m * n * o.k >= SPLIT_MIN_MACS && n >= 2 * NR ? Math.round(n / 2 / NR) * NR : 0;
    if (!split) {
      this.ex.gemm(...args, this.work[0], 0, n);
      return;
    }
    this.post(FN_GEMM, [...args, this.work[1], split, n]);
    this.ex.gemm(...args, this.work[0], 0, split);
    this.join();
  }

  /**
   * gemm's arguments up to the work buffer. Aᵀ B reads A down its columns; for large products a
   * copy of Aᵀ (m·k values against m·n·k products) keeps the inner loop on contiguous rows.
   */
  private gemmArgs(o: MatmulArgs): number[] {
    const { m, n, k } = o;
    if (o.a.length < m * k || o.b.length < k * n || o.c.length < m * n || (o.bias && o.bias.length < n)) {
      throw new ProbsemError(`matmul: buffers too small for ${m}x${k} by ${k}x${n}`, 'SHAPE');
    }
    let a = o.a;
    let transA = o.transA ?? false;
    if (transA && m >= 64 && m * n * k >= SPLIT_MIN_MACS) {
      const t = this.scratch(m * k);
      this.ex.transpose(a.ptr, k, m, t.ptr);
      a = t;
      transA = false;
    }
    const rsa = transA ? 1 : k;
    const csa = transA ? m : 1;
    const rsb = o.transB ? 1 : n;
    const csb = o.transB ? k : 1;
    const flags = (o.accumulate ? 1 : 0) | (o.relu ? 2 : 0);
    return [m, n, k, a.ptr, rsa, csa, o.b.ptr, rsb, csb, o.c.ptr, n, o.bias ? o.bias.ptr : 0, flags];
  }

  /** A reusable scratch buffer of at least n floats (contents undefined; one user at a time). */
  private scratch(n: number): Buf {
    if (!this.scratchBuf || this.scratchBuf.length < n) this.scratchBuf = this.alloc(n);
    return this.scratchBuf;
  }

  /**
   * Bernoulli negative log-likelihood of targets x under logits l (first n values): returns the
   * sum of softplus(l) − x·l, writes g = (sigmoid(l) − x) · scale and, if given, probs = sigmoid(l).
   */
  bernoulliLogits(l: Buf, x: Buf, g: Buf, probs: Buf | null, n: number, scale: number): number {
    return this.ex.bernoulli_logits(l.ptr, x.ptr, g.ptr, probs ? probs.ptr : 0, n, scale);
  }

  /**
   * Convolution patches of n images at element offset `src` into rows at element offset `dst`
   * (ops/im2col.ts's layout; positions outside the image are left as they are: zero them once).
   */
  im2col(src: number, n: number, g: { height: number; width: number; channels: number; kernel: number; stride: number; pad: number }, dst: number): void {
    this.ex.im2col(4 * src, n, g.height, g.width, g.channels, g.kernel, g.stride, g.pad, 4 * dst);
  }

  /** The adjoint of `im2col`: patch rows at element offset `cols` added onto the images at `dst`. */
  col2imAdd(cols: number, n: number, g: { height: number; width: number; channels: number; kernel: number; stride: number; pad: number }, dst: number): void {
    this.ex.col2im_add(4 * cols, n, g.height, g.width, g.channels, g.kernel, g.stride, g.pad, 4 * dst);
  }

  /** g += gp · s · (1 − s) over n values (backward through a sigmoid with output s). */
  sigmoidBackwardAdd(g: Buf, gp: Buf, s: Buf, n: number): void {
    this.ex.sigmoid_backward_add(g.ptr, gp.ptr, s.ptr, n);
  }

  /**
   * KL-index scan (see kl_scan16 in kernels.c): items in blocks of 16 at `x`, each block np pairs
   * of dimensions × 16 items × 2 int16, then 16 floats each of the scale s, the constants for
   * either sign, and the error coefficients z and m (`cs`: the offset, in floats, of the sign's
   * constants; h1: the pairs before the staged check, 0 for none); query rows of np int32 words
   * (two int16 each) at `qv`, and per query four floats (t, A, the filter's A', the check's bound of
   * the other pairs) at `qp`. Per query q: the threshold (float32) at tau + 4q, set by the caller,
   * and the filters' at tf + 4q and tj + 4q; the heap of the k smallest upper bounds (float64)
   * at hu + 8qk with its size (int32, zeroed) at hn + 4q; the candidates' indices (int32), lower
   * bounds (float32) and upper bounds (float64) at oi + 4q·cap, ol + 4q·cap and ou + 8q·cap, their
   * number (int32, zeroed) at on + 4q and the number missed (int32, zeroed) at ov + 4q. Skips item
   * `exclude` (-1: none). Arguments are byte offsets into kernel memory (kl-index.ts has the
   * bounds).
   */
  klScan16(o: {
    x: number; count: number; np: number; cs: number; h1: number; qv: number; qp: number; queries: number; exclude: number;
    tau: number; tf: number; tj: number; hu: number; hn: number; k: number; oi: number; ol: number; ou: number; on: number; ov: number; cap: number;
  }): void {
    this.ex.kl_scan16(o.x, o.count, o.np, o.cs, o.h1, o.qv, o.qp, o.queries, o.exclude, o.tau, o.tf, o.tj, o.hu, o.hn, o.k, o.oi, o.ol, o.ou, o.on, o.ov, o.cap);
  }

  /** g ← g where y > 0, else 0 (backward through a ReLU whose output is y). */
  reluBackward(g: Buf, y: Buf, n: number): void {
    this.ex.relu_backward(g.ptr, y.ptr, n);
  }

  /** out[j] = Σ_i g[i, j] for g of shape m x n. */
  columnSums(g: Buf, m: number, n: number, out: Buf): void {
    this.ex.column_sums(g.ptr, m, n, out.ptr, 0, n);
  }

  /** One Adam update of n values starting at element `offset` of p, g, m and v. */
  adam(p: Buf, g: Buf, mBuf: Buf, vBuf: Buf, offset: number, n: number, h: { step: number; beta1: number; beta2: number; sqrtBc2: number; eps: number }): void {
    const at = (b: Buf, from: number) => b.ptr + 4 * from;
    const run = (from: number, len: number) => [at(p, from), at(g, from), at(mBuf, from), at(vBuf, from), len, h.step, h.beta1, h.beta2, h.sqrtBc2, h.eps];
    if (!this.worker || n < 65536) {
      this.ex.adam(...(run(offset, n) as [number, number, number, number, number, number, number, number, number, number]));
      return;
    }
    const half = Math.floor(n / 8) * 4;
    this.post(FN_ADAM, run(offset + half, n - half));
    this.ex.adam(...(run(offset, half) as [number, number, number, number, number, number, number, number, number, number]));
    this.join();
  }

  /** Number of NaN or infinite values among the first n of b. */
  countNonFinite(b: Buf, n = b.length): number {
    if (!this.worker || n < 65536) return this.ex.count_nonfinite(b.ptr, n);
    const half = Math.floor(n / 8) * 4;
    this.post(FN_COUNT, [b.ptr + 4 * half, n - half]);
    const mine = this.ex.count_nonfinite(b.ptr, half);
    this.join();
    return mine + this.i32[4];
  }

  private post(fn: number, args: number[]): void {
    const i32 = this.i32;
    i32[2] = fn;
    i32[3] = args.length;
    for (let i = 0; i < args.length; i++) this.f64[i] = args[i];
    Atomics.store(i32, 0, ++this.seq);
    Atomics.notify(i32, 0);
  }

  private join(): void {
    const i32 = this.i32;
    const want = this.seq;
    let spins = 0;
    for (;;) {
      const done = Atomics.load(i32, 1);
      if (done === want) break;
      if (++spins > 200000) Atomics.wait(i32, 1, done, 1);
    }
    if (i32[5] !== 0) throw new ProbsemError('a kernel failed on the helper thread (memory out of bounds): the kernel buffers are inconsistent', 'INTERNAL');
  }
}

function align(n: number): number {
  return (n + 63) & ~63;
}
