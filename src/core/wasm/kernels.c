/*
 * probsem's compute kernels, compiled to WebAssembly with 128-bit SIMD (scripts/build-kernels.sh).
 *
 * Matrices are row-major float32. Every function works on plain pointers into one linear memory
 * that JavaScript allocates; nothing here allocates, recurses or uses the shadow stack, so two
 * instances can share one memory from two threads. Column ranges [n0, n1) let two threads split a
 * product without changing any element's summation order: results do not depend on the split.
 */
#include <wasm_simd128.h>

#ifndef KBLOCK
#define KBLOCK 784
#endif

typedef float f32;
#define EXPORT __attribute__((visibility("default")))

enum { NR = 16, KB = KBLOCK, MB = 128 };

/* c + a * b: one fused multiply-add in the relaxed-SIMD build, a multiply and an add otherwise. */
#ifdef PROBSEM_FMA
#define MADD(a, b, c) __builtin_wasm_fma_f32x4(a, b, c)
#else
#define MADD(a, b, c) wasm_f32x4_add(c, wasm_f32x4_mul(a, b))
#endif
enum { FLAG_ACCUMULATE = 1, FLAG_RELU = 2 };

/*
 * C rows r0 (and r1 when two) += a(r, k) * Bp[k][0..15] over kc values of k, where a(r, k) =
 * ar[k * csa] and Bp is the packed panel. init: 0 zeros, 1 the current C, 2 the bias row.
 */
static inline void kernel2(int kc, const f32* a0, const f32* a1, int csa, const f32* bp, f32* c0, f32* c1,
                           int init, const f32* bias, int relu) {
  v128_t x0, x1, x2, x3, y0, y1, y2, y3;
  if (init == 1) {
    x0 = wasm_v128_load(c0); x1 = wasm_v128_load(c0 + 4); x2 = wasm_v128_load(c0 + 8); x3 = wasm_v128_load(c0 + 12);
    y0 = wasm_v128_load(c1); y1 = wasm_v128_load(c1 + 4); y2 = wasm_v128_load(c1 + 8); y3 = wasm_v128_load(c1 + 12);
  } else if (init == 2) {
    x0 = y0 = wasm_v128_load(bias); x1 = y1 = wasm_v128_load(bias + 4);
    x2 = y2 = wasm_v128_load(bias + 8); x3 = y3 = wasm_v128_load(bias + 12);
  } else {
    x0 = x1 = x2 = x3 = y0 = y1 = y2 = y3 = wasm_f32x4_splat(0.0f);
  }
  for (int k = 0; k < kc; k++) {
    v128_t b0 = wasm_v128_load(bp), b1 = wasm_v128_load(bp + 4), b2 = wasm_v128_load(bp + 8), b3 = wasm_v128_load(bp + 12);
    v128_t a = wasm_f32x4_splat(*a0);
    x0 = MADD(a, b0, x0); x1 = MADD(a, b1, x1);
    x2 = MADD(a, b2, x2); x3 = MADD(a, b3, x3);
    a = wasm_f32x4_splat(*a1);
    y0 = MADD(a, b0, y0); y1 = MADD(a, b1, y1);
    y2 = MADD(a, b2, y2); y3 = MADD(a, b3, y3);
    a0 += csa; a1 += csa; bp += NR;
  }
  if (relu) {
    v128_t zero = wasm_f32x4_splat(0.0f);
    x0 = wasm_f32x4_max(x0, zero); x1 = wasm_f32x4_max(x1, zero); x2 = wasm_f32x4_max(x2, zero); x3 = wasm_f32x4_max(x3, zero);
    y0 = wasm_f32x4_max(y0, zero); y1 = wasm_f32x4_max(y1, zero); y2 = wasm_f32x4_max(y2, zero); y3 = wasm_f32x4_max(y3, zero);
  }
  wasm_v128_store(c0, x0); wasm_v128_store(c0 + 4, x1); wasm_v128_store(c0 + 8, x2); wasm_v128_store(c0 + 12, x3);
  wasm_v128_store(c1, y0); wasm_v128_store(c1 + 4, y1); wasm_v128_store(c1 + 8, y2); wasm_v128_store(c1 + 12, y3);
}

/*
 * C[M x N] = op(A) op(B) (+ bias, + C with FLAG_ACCUMULATE, then ReLU with FLAG_RELU), for the
 * columns [n0, n1) only. Element a(i, k) = A[i * rsa + k * csa], b(k, j) = B[k * rsb + j * csb],
 * so one routine covers A B, Aᵀ B and A Bᵀ. n0 must be a multiple of 16. work: 16 * (256 + 4)
 * floats of scratch owned by the calling thread.
 */
EXPORT void gemm(int M, int N, int K, const f32* A, int rsa, int csa, const f32* B, int rsb, int csb, f32* C, int ldc,
                 const f32* bias, int flags, f32* work, int n0, int n1) {
  (void)N;
  f32* panel = work;
  f32* tmp = work + NR * KB; /* 2 x 16 rows for a ragged last panel */
  f32* tbias = tmp + 2 * NR;
  int relu = flags & FLAG_RELU;
  if (K == 0) { /* degenerate: C = bias or 0 (or unchanged) */
    for (int i = 0; i < M; i++)
      for (int j = n0; j < n1; j++) {
        f32 v = (flags & FLAG_ACCUMULATE) ? C[i * ldc + j] : (bias ? bias[j] : 0.0f);
        C[i * ldc + j] = relu && v < 0 ? 0 : v;
      }
    return;
  }
  /* K in equal blocks of at most KB (784 → 2 × 392, not 3 × 256 + 16), each block's panel in L1 */
  int blocks = (K + KB - 1) / KB;
  int kb = (K + blocks - 1) / blocks;
  for (int k0 = 0; k0 < K; k0 += kb) {
    int kc = K - k0 < kb ? K - k0 : kb;
    int firstBlock = k0 == 0, lastBlock = k0 + kc == K;
    int init = !firstBlock || (flags & FLAG_ACCUMULATE) ? 1 : (bias ? 2 : 0);
    int doRelu = lastBlock && relu;
    /* Rows in blocks of MB, so the block of A being multiplied stays in cache across all panels. */
    for (int i0 = 0; i0 < M; i0 += MB) {
      int i1 = i0 + MB < M ? i0 + MB : M;
      for (int j = n0; j < n1; j += NR) {
        int w = n1 - j < NR ? n1 - j : NR;
        /* pack b(k0.., j..j+w) into panel[k][0..15], zero-padded */
        for (int k = 0; k < kc; k++) {
          const f32* src = B + (k0 + k) * rsb + j * csb;
          f32* dst = panel + k * NR;
          if (w == NR && csb == 1) {
            wasm_v128_store(dst, wasm_v128_load(src)); wasm_v128_store(dst + 4, wasm_v128_load(src + 4));
            wasm_v128_store(dst + 8, wasm_v128_load(src + 8)); wasm_v128_store(dst + 12, wasm_v128_load(src + 12));
          } else {
            int q = 0;
            for (; q < w; q++) dst[q] = src[q * csb];
            for (; q < NR; q++) dst[q] = 0.0f;
          }
        }
        const f32* bj = bias ? bias + j : 0;
        if (w < NR && init == 2) {
          int q = 0;
          for (; q < w; q++) tbias[q] = bj[q];
          for (; q < NR; q++) tbias[q] = 0.0f;
          bj = tbias;
        }
        for (int i = i0; i < i1; i += 2) {
          int two = i + 1 < i1;
          const f32* a0 = A + i * rsa + k0 * csa;
          const f32* a1 = two ? a0 + rsa : a0;
          f32* c0 = C + i * ldc + j;
          f32* c1 = two ? c0 + ldc : c0;
          if (w == NR && two) {
            kernel2(kc, a0, a1, csa, panel, c0, c1, init, bj, doRelu);
          } else {
            /* ragged: go through tmp so the arithmetic is the same as in full panels */
            for (int q = 0; q < NR; q++) {
              tmp[q] = init == 1 && q < w ? c0[q] : 0.0f;
              tmp[NR + q] = init == 1 && q < w && two ? c1[q] : 0.0f;
            }
            kernel2(kc, a0, a1, csa, panel, tmp, tmp + NR, init, bj, doRelu);
            for (int q = 0; q < w; q++) c0[q] = tmp[q];
            if (two) for (int q = 0; q < w; q++) c1[q] = tmp[NR + q];
          }
        }
      }
    }
  }
}

/* g[i] = 0 where y[i] <= 0 (ReLU backward, y the layer's output). */
EXPORT void relu_backward(f32* g, const f32* y, int n) {
  int i = 0;
  v128_t zero = wasm_f32x4_splat(0.0f);
  for (; i + 4 <= n; i += 4) {
    v128_t m = wasm_f32x4_gt(wasm_v128_load(y + i), zero);
    wasm_v128_store(g + i, wasm_v128_and(wasm_v128_load(g + i), m));
  }
  for (; i < n; i++) if (!(y[i] > 0)) g[i] = 0.0f;
}

/* out[j] = sum over rows of g[i][j] (bias gradient), columns [n0, n1). */
EXPORT void column_sums(const f32* g, int M, int N, f32* out, int n0, int n1) {
  int j = n0;
  for (; j + 4 <= n1; j += 4) {
    v128_t s = wasm_f32x4_splat(0.0f);
    for (int i = 0; i < M; i++) s = wasm_f32x4_add(s, wasm_v128_load(g + i * N + j));
    wasm_v128_store(out + j, s);
  }
  for (; j < n1; j++) {
    f32 s = 0.0f;
    for (int i = 0; i < M; i++) s += g[i * N + j];
    out[j] = s;
  }
}

/*
 * Adam over [0, n): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g²; p -= step m / (sqrt(v)/sqrtBc2 + eps),
 * with step = lr * scale / (1 - b1^t) computed by the caller.
 */
EXPORT void adam(f32* p, const f32* g, f32* m, f32* v, int n, f32 step, f32 b1, f32 b2, f32 sqrtBc2, f32 eps) {
  v128_t vb1 = wasm_f32x4_splat(b1), vb2 = wasm_f32x4_splat(b2), vc1 = wasm_f32x4_splat(1.0f - b1), vc2 = wasm_f32x4_splat(1.0f - b2);
  /* one division per value: sqrt(v) / sqrtBc2 becomes sqrt(v) * (1 / sqrtBc2) */
  v128_t vs = wasm_f32x4_splat(step), vbc = wasm_f32x4_splat(1.0f / sqrtBc2), ve = wasm_f32x4_splat(eps);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t gi = wasm_v128_load(g + i);
    v128_t mi = wasm_f32x4_add(wasm_f32x4_mul(vb1, wasm_v128_load(m + i)), wasm_f32x4_mul(vc1, gi));
    v128_t vi = wasm_f32x4_add(wasm_f32x4_mul(vb2, wasm_v128_load(v + i)), wasm_f32x4_mul(vc2, wasm_f32x4_mul(gi, gi)));
    wasm_v128_store(m + i, mi);
    wasm_v128_store(v + i, vi);
    v128_t den = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_sqrt(vi), vbc), ve);
    wasm_v128_store(p + i, wasm_f32x4_sub(wasm_v128_load(p + i), wasm_f32x4_div(wasm_f32x4_mul(vs, mi), den)));
  }
  for (; i < n; i++) {
    f32 gi = g[i];
    f32 mi = b1 * m[i] + (1.0f - b1) * gi;
    f32 vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step * mi / (__builtin_sqrtf(vi) * (1.0f / sqrtBc2) + eps);
  }
}

/* How many of x[0..n) are NaN or infinite. */
EXPORT int count_nonfinite(const f32* x, int n) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    f32 d = x[i] - x[i];
    bad += d != d;
  }
  return bad;
}

/* The 4 x 4 block at r0..r3 transposed: out[q] holds lane q of every row. */
static inline void transpose4(v128_t r0, v128_t r1, v128_t r2, v128_t r3, v128_t* out) {
  v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
  v128_t t2 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
  out[0] = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5); out[1] = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  out[2] = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5); out[3] = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

/* dst[c][r] = src[r][c] for a rows x cols matrix: 32 x 32 tiles of 4 x 4 SIMD transposes. */
EXPORT void transpose(const f32* src, int rows, int cols, f32* dst) {
  enum { T = 32 };
  for (int r0 = 0; r0 < rows; r0 += T)
    for (int c0 = 0; c0 < cols; c0 += T) {
      int r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
      int r = r0;
      for (; r + 4 <= r1; r += 4) {
        const f32* s = src + r * cols;
        int c = c0;
        for (; c + 4 <= c1; c += 4) {
          v128_t o[4];
          transpose4(wasm_v128_load(s + c), wasm_v128_load(s + cols + c), wasm_v128_load(s + 2 * cols + c), wasm_v128_load(s + 3 * cols + c), o);
          f32* d = dst + c * rows + r;
          wasm_v128_store(d, o[0]); wasm_v128_store(d + rows, o[1]);
          wasm_v128_store(d + 2 * rows, o[2]); wasm_v128_store(d + 3 * rows, o[3]);
        }
        for (; c < c1; c++)
          for (int q = 0; q < 4; q++) dst[c * rows + r + q] = s[q * cols + c];
      }
      for (; r < r1; r++)
        for (int c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c];
    }
}

/*
 * e^x for four floats (Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for
 * e^r, then 2^n put into the exponent). Relative error ~1e-7 over the clamped range.
 */
static inline v128_t exp4(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(-87.3f)), wasm_f32x4_splat(88.7f));
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(5.0000001201e-1f));
  v128_t r2 = wasm_f32x4_mul(r, r);
  p = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(p, r2), r), wasm_f32x4_splat(1.0f));
  v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}

/*
 * ln(u) for four floats u in [1, 2] (Cephes' logf: u = 2^k m with m in [sqrt(1/2), sqrt(2)),
 * ln(m) = t - t²/2 + t³ P(t) with t = m - 1). Absolute error ~1e-7.
 */
static inline v128_t log4_1to2(v128_t u) {
  v128_t big = wasm_f32x4_gt(u, wasm_f32x4_splat(1.41421356237f));
  v128_t m = wasm_v128_bitselect(wasm_f32x4_mul(u, wasm_f32x4_splat(0.5f)), u, big);
  v128_t k = wasm_v128_and(big, wasm_f32x4_splat(0.693147180559945f));
  v128_t t = wasm_f32x4_sub(m, wasm_f32x4_splat(1.0f));
  v128_t p = wasm_f32x4_splat(7.0376836292e-2f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(-1.1514610310e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(1.1676998740e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(-1.2420140846e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(1.4249322787e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(-1.6668057665e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(2.0000714765e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(-2.4999993993e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, t), wasm_f32x4_splat(3.3333331174e-1f));
  v128_t t2 = wasm_f32x4_mul(t, t);
  v128_t y = wasm_f32x4_mul(wasm_f32x4_mul(p, t2), t);
  y = wasm_f32x4_sub(y, wasm_f32x4_mul(t2, wasm_f32x4_splat(0.5f)));
  return wasm_f32x4_add(wasm_f32x4_add(y, t), k);
}

/* softplus(l) − x·l and sigmoid(l) for four logits. */
static inline void bernoulli4(v128_t li, v128_t xi, v128_t* nll, v128_t* sig) {
  v128_t zero = wasm_f32x4_splat(0.0f), one = wasm_f32x4_splat(1.0f);
  v128_t e = exp4(wasm_f32x4_neg(wasm_f32x4_abs(li)));
  v128_t onePlus = wasm_f32x4_add(one, e);
  *nll = wasm_f32x4_sub(wasm_f32x4_add(wasm_f32x4_max(li, zero), log4_1to2(onePlus)), wasm_f32x4_mul(xi, li));
  *sig = wasm_f32x4_div(wasm_v128_bitselect(one, e, wasm_f32x4_ge(li, zero)), onePlus);
}

/*
 * Bernoulli likelihood from logits l against targets x in [0, 1]: returns Σ softplus(l) − x·l
 * (the negative log-likelihood, summed in double precision), writes g = (sigmoid(l) − x) · scale,
 * and, when probs is not null, probs = sigmoid(l).
 */
EXPORT double bernoulli_logits(const f32* l, const f32* x, f32* g, f32* probs, int n, f32 scale) {
  v128_t vs = wasm_f32x4_splat(scale);
  v128_t acc = wasm_f64x2_splat(0.0);
  v128_t nll, sig;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t xi = wasm_v128_load(x + i);
    bernoulli4(wasm_v128_load(l + i), xi, &nll, &sig);
    acc = wasm_f64x2_add(acc, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(nll), wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(nll, nll, 2, 3, 0, 1))));
    wasm_v128_store(g + i, wasm_f32x4_mul(wasm_f32x4_sub(sig, xi), vs));
    if (probs) wasm_v128_store(probs + i, sig);
  }
  double total = wasm_f64x2_extract_lane(acc, 0) + wasm_f64x2_extract_lane(acc, 1);
  for (; i < n; i++) { /* the ragged end, one lane at a time through the same arithmetic */
    bernoulli4(wasm_f32x4_splat(l[i]), wasm_f32x4_splat(x[i]), &nll, &sig);
    f32 s0 = wasm_f32x4_extract_lane(sig, 0);
    total += wasm_f32x4_extract_lane(nll, 0);
    g[i] = (s0 - x[i]) * scale;
    if (probs) probs[i] = s0;
  }
  return total;
}

/* g += gp · s · (1 − s): the gradient through a sigmoid whose output is s, added onto g. */
EXPORT void sigmoid_backward_add(f32* g, const f32* gp, const f32* s, int n) {
  v128_t one = wasm_f32x4_splat(1.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v128_t si = wasm_v128_load(s + i);
    v128_t d = wasm_f32x4_mul(wasm_v128_load(gp + i), wasm_f32x4_mul(si, wasm_f32x4_sub(one, si)));
    wasm_v128_store(g + i, wasm_f32x4_add(wasm_v128_load(g + i), d));
  }
  for (; i < n; i++) g[i] += gp[i] * s[i] * (1.0f - s[i]);
}

/*
 * Convolution patches (src/ops/im2col.ts has the layout). For every output position and window
 * row, the columns inside the image are one run of values contiguous in both the image and the
 * patch row; im2col copies the runs (positions outside the image are left as they are: zero the
 * patch buffer once), col2im_add adds them back onto the images.
 */
static void patch_runs(f32* images, f32* cols, int n, int h, int w, int c, int k, int s, int p, int add) {
  int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1, width = k * k * c, r = 0;
  for (int i = 0; i < n; i++) {
    f32* img = images + (long)i * h * w * c;
    for (int y = 0; y < oh; y++) {
      for (int x = 0; x < ow; x++, r++) {
        int x0 = x * s - p, lo = x0 < 0 ? -x0 : 0, hi = w - x0 < k ? w - x0 : k;
        if (hi <= lo) continue;
        int len = (hi - lo) * c;
        for (int ky = 0; ky < k; ky++) {
          int iy = y * s + ky - p;
          if (iy < 0 || iy >= h) continue;
          f32* at = img + (iy * w + x0 + lo) * c;
          f32* patch = cols + (long)r * width + (ky * k + lo) * c;
          if (!add) {
            __builtin_memcpy(patch, at, (unsigned long)len * sizeof(f32));
            continue;
          }
          int j = 0;
          for (; j + 4 <= len; j += 4) wasm_v128_store(at + j, wasm_f32x4_add(wasm_v128_load(at + j), wasm_v128_load(patch + j)));
          for (; j < len; j++) at[j] += patch[j];
        }
      }
    }
  }
}

EXPORT void im2col(const f32* src, int n, int h, int w, int c, int k, int s, int p, f32* dst) {
  patch_runs((f32*)src, dst, n, h, w, c, k, s, p, 0);
}

EXPORT void col2im_add(const f32* cols, int n, int h, int w, int c, int k, int s, int p, f32* dst) {
  patch_runs(dst, (f32*)cols, n, h, w, c, k, s, p, 1);
}

/*
 * Exact KL retrieval (src/index/kl-index.ts, whose module comment proves the bounds). Each item i
 * has a row x(i, ·) of int16 values (|x| ≤ P) with a scale s[i], and float constants c[i] (one
 * per sign), z[i] and m[i]; a query is a row of int16 values (|q| ≤ R) with a scale t and an
 * error coefficient A. The integer dot D = Σ_j x(i, j) q(j) is exact (n P R < 2³¹, so no int32 sum
 * overflows), and, in float32,
 *
 *     v_i = c[i] + fl(D) · (s[i] t),   L_i = v_i − z[i] A
 *
 * is a guaranteed lower bound of item i's exact score, L_i + 2.001 z[i] A + 2⁻¹⁵ (|c[i]| + m[i] A)
 * (in double) an upper bound. Items are stored in blocks of 16, each block as n/2 pairs of
 * dimensions (j, j+1), each pair as 16 items × 2 int16: one i32x4.dot_i16x8_s multiplies two
 * dimensions of four items by the query's pair (a 32-bit splat) and adds them in each item's lane.
 * A block's floats follow its rows. A vector test v_i ≤ tf + zmax A' (zmax the block's largest z,
 * tf and A' slightly above the threshold and A) passes every item whose L_i is within the
 * threshold, and only those items get the scalar slow path. Padding items have c = NaN, so their v
 * is NaN and never passes a comparison. With h1 > 0 (KL, diagonal items) each pair of queries
 * checks a block after its first h1 pairs (check16) and skips the rest where no item can qualify.
 */
typedef short i16;
/* A block's floats after its int16 rows: offsets (in floats) of s, c (smallest), c (largest), z, m; their size in int16 words. */
enum { F_S = 0, F_C = 16, F_CL = 32, F_Z = 48, F_M = 64, F_ZMAX = 80, F_CJ = 84, F_WORDS = 200 };

/* The smallest float32 at or above x (beyond the float32 range: infinity). */
static f32 up32(double x) {
  f32 f = (f32)x;
  if ((double)f >= x || f != f) return f;
  union { f32 f; int i; } u = { f };
  if (f > 0) u.i++;
  else if (f < 0) u.i--;
  else u.i = 1;
  return u.f;
}

/*
 * The vector filter's threshold for threshold tau: any float32 L = fl(v − fl(z A)) ≤ tau has
 * v ≤ tau + 2u|tau| + 2⁻¹⁴⁹ + z A (1 + u) (u = 2⁻²⁴); fl(fl(zmax A') + tf), with zmax ≥ z,
 * A' ≥ A (1 + 2⁻¹⁸) and this tf, is above that.
 */
static f32 filter_tau(f32 tau) {
  return up32((double)tau + 0x1p-19 * __builtin_fabs((double)tau) + 0x1p-140);
}

/*
 * Offers upper bound u to query's max-heap of its k smallest upper bounds; once it holds k, the
 * query's threshold tau (and the filter's tf) falls to its top (rounded up to float32).
 */
/* A query's thresholds: tau, the filter's tf, and tj for the first pairs' check (rest: the lower bound of the other pairs). */
static void set_tau(f32* tau, f32* tf, f32* tj, f32 rest, f32 t) {
  *tau = t;
  *tf = filter_tau(t);
  *tj = filter_tau(up32((double)t - (double)rest));
}

static void heap_offer_up(double* h, int* hn, int k, double u, f32* tau, f32* tf, f32* tj, f32 rest) {
  int n = *hn, i;
  if (n < k) {
    i = n++;
    while (i > 0) {
      int p = (i - 1) >> 1;
      if (!(h[p] < u)) break;
      h[i] = h[p]; i = p;
    }
    h[i] = u; *hn = n;
  } else {
    if (!(u < h[0])) return;
    i = 0;
    for (;;) {
      int l = 2 * i + 1, r = l + 1, big = i;
      double bv = u;
      if (l < k && h[l] > bv) { big = l; bv = h[l]; }
      if (r < k && h[r] > bv) { big = r; }
      if (big == i) break;
      h[i] = h[big]; i = big;
    }
    h[i] = u;
  }
  if (n == k) {
    f32 t = up32(h[0]);
    if (t < *tau) set_tau(tau, tf, tj, rest, t);
  }
}

/*
 * Item i (lane l of a block whose floats are at f), whose v passed the filter: its L = v − z A;
 * within the threshold, it joins the query's candidates (indices oi, lower bounds ol, upper bounds
 * ou, on of them, at most cap) and offers its upper bound to the heap. A full list is compacted to
 * the entries still within the threshold; when that frees under a quarter of it the list stops
 * growing and ov counts what it missed (the caller then scans that query again with the final
 * threshold and a list of on + ov entries, which holds every candidate).
 */
static void take1(int i, int l, f32 v, const f32* f, int cs, f32 A, f32 rest, int count, int exclude, f32* tau, f32* tf, f32* tj,
                  double* hu, int* hn, int k, int* oi, f32* ol, double* ou, int* on, int* ov, int cap) {
  f32 c = f[cs + l], z = f[F_Z + l], m = f[F_M + l];
  f32 L = v - z * A;
  if (!(L <= *tau) || i >= count || i == exclude) return;
  double U = (double)L + 2.001 * ((double)z * A) + 0x1p-15 * (__builtin_fabs((double)c) + (double)m * A);
  if (*ov) {
    (*ov)++;
  } else {
    int n = *on;
    if (n == cap) {
      f32 th = *tau;
      int w = 0;
      for (int u = 0; u < n; u++)
        if (ol[u] <= th) { oi[w] = oi[u]; ol[w] = ol[u]; ou[w] = ou[u]; w++; }
      n = w;
      if (n == cap || n > cap - (cap >> 2)) *ov = 1; /* this item is the first one missed */
    }
    if (!*ov) { oi[n] = i; ol[n] = L; ou[n] = U; n++; }
    *on = n;
  }
  heap_offer_up(hu, hn, k, U, tau, tf, tj, rest);
}

#define TAKE_LANE(vec, thr, l, at) do { \
    if (wasm_f32x4_extract_lane(vec, l) <= wasm_f32x4_extract_lane(thr, l)) \
      take1(base + (at) + (l), (at) + (l), wasm_f32x4_extract_lane(vec, l), f, cs, A, rest, count, exclude, tau, tf, tj, hu, hn, k, oi, ol, ou, on, ov, cap); \
  } while (0)

/* The slow path of one query and one block: each item whose v passed the filter. */
static void take16(v128_t v0, v128_t v1, v128_t v2, v128_t v3, v128_t h, int base,
                   const f32* f, int cs, f32 A, f32 rest, int count, int exclude, f32* tau, f32* tf, f32* tj,
                   double* hu, int* hn, int k, int* oi, f32* ol, double* ou, int* on, int* ov, int cap) {
  TAKE_LANE(v0, h, 0, 0); TAKE_LANE(v0, h, 1, 0); TAKE_LANE(v0, h, 2, 0); TAKE_LANE(v0, h, 3, 0);
  TAKE_LANE(v1, h, 0, 4); TAKE_LANE(v1, h, 1, 4); TAKE_LANE(v1, h, 2, 4); TAKE_LANE(v1, h, 3, 4);
  TAKE_LANE(v2, h, 0, 8); TAKE_LANE(v2, h, 1, 8); TAKE_LANE(v2, h, 2, 8); TAKE_LANE(v2, h, 3, 8);
  TAKE_LANE(v3, h, 0, 12); TAKE_LANE(v3, h, 1, 12); TAKE_LANE(v3, h, 2, 12); TAKE_LANE(v3, h, 3, 12);
}

/* A block's 16 v = c + fl(D) (s t) (s at f, c at cb), and the lanes where v ≤ h (or-ed over the four vectors). */
static inline __attribute__((always_inline)) v128_t values16(v128_t d0, v128_t d1, v128_t d2, v128_t d3, const f32* f, const f32* cb, f32 t,
                                                              v128_t h, v128_t* v0, v128_t* v1, v128_t* v2, v128_t* v3) {
  v128_t w = wasm_f32x4_splat(t);
  *v0 = MADD(wasm_f32x4_convert_i32x4(d0), wasm_f32x4_mul(wasm_v128_load(f), w), wasm_v128_load(cb));
  *v1 = MADD(wasm_f32x4_convert_i32x4(d1), wasm_f32x4_mul(wasm_v128_load(f + 4), w), wasm_v128_load(cb + 4));
  *v2 = MADD(wasm_f32x4_convert_i32x4(d2), wasm_f32x4_mul(wasm_v128_load(f + 8), w), wasm_v128_load(cb + 8));
  *v3 = MADD(wasm_f32x4_convert_i32x4(d3), wasm_f32x4_mul(wasm_v128_load(f + 12), w), wasm_v128_load(cb + 12));
  return wasm_v128_or(wasm_v128_or(wasm_f32x4_le(*v0, h), wasm_f32x4_le(*v1, h)), wasm_v128_or(wasm_f32x4_le(*v2, h), wasm_f32x4_le(*v3, h)));
}

/*
 * One query's 16 integer dots of a block (floats at f) → v = c + fl(D) (s t), and the slow path
 * only where one v passes the filter, v ≤ zmax A' + tf. qp: t, A, A'.
 */
static inline __attribute__((always_inline)) void finish16(v128_t d0, v128_t d1, v128_t d2, v128_t d3, int base, const f32* f, int cs,
                            const f32* qp, int count, int exclude, f32* tau, f32* tf, f32* tj,
                            double* hu, int* hn, int k, int* oi, f32* ol, double* ou, int* on, int* ov, int cap) {
  v128_t h = wasm_f32x4_splat(f[F_ZMAX] * qp[2] + *tf), v0, v1, v2, v3;
  v128_t in = values16(d0, d1, d2, d3, f, f + cs, qp[0], h, &v0, &v1, &v2, &v3);
  if (!wasm_v128_any_true(in)) return;
  take16(v0, v1, v2, v3, h, base, f, cs, qp[1], qp[3], count, exclude, tau, tf, tj, hu, hn, k, oi, ol, ou, on, ov, cap);
}

/*
 * Whether any of a block's 16 items may still be a candidate after its first pairs (dots d): their
 * v_J = c_J + fl(D_J) (s t) against zmax A' + tj, where tj is the filter's threshold for tau
 * minus the query-only lower bound of the other pairs (kl-index.ts). Blocks that fail skip the
 * other pairs for this query.
 */
static inline __attribute__((always_inline)) int check16(v128_t d0, v128_t d1, v128_t d2, v128_t d3, const f32* f, const f32* qp, const f32* tj) {
  v128_t h = wasm_f32x4_splat(f[F_ZMAX] * qp[2] + *tj), v0, v1, v2, v3;
  return wasm_v128_any_true(values16(d0, d1, d2, d3, f, f + F_CJ, qp[0], h, &v0, &v1, &v2, &v3));
}

#define DOT_ADD(acc, a, w) acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(a, w))
#define FINISH(d0, d1, d2, d3, q) finish16(d0, d1, d2, d3, base, f, cs, qp + 4 * (q), count, exclude, tau + (q), tf + (q), tj + (q), \
                                           hu + (q) * k, hn + (q), k, oi + (q) * cap, ol + (q) * cap, ou + (q) * cap, on + (q), ov + (q), cap)

/*
 * Scans all count items for Q queries, skipping item `exclude`. X: blocks of 16 items, each np
 * pairs of 16 items × 2 int16, then the block's floats: s, c (smallest), c (largest), z and m,
 * 16 of each (F_S … F_M), and the largest z (F_ZMAX); cs selects the constant of the sign
 * searched (F_C or F_CL); h1: the pairs before the staged check (0: none). Qv: np int32 words per
 * query, each two int16; qp: t, A, A' and the check's lower bound of the other pairs per query.
 * Per query q: tau[q] is the threshold (the caller sets its start, +infinity or a known bound;
 * tf[q] and tj[q] are set here), hu[q·k..] and hn[q] the heap of the k smallest upper bounds
 * (hn zeroed by the caller), oi/ol/ou[q·cap..] and on[q] the candidates, ov[q] how many were
 * missed (on and ov zeroed by the caller). Queries go in pairs so each loaded row of a block
 * serves two of them; every block is read from memory once per call.
 */
EXPORT void kl_scan16(const i16* X, int count, int np, int cs, int h1, const int* Qv, const f32* qp, int Q, int exclude, f32* tau, f32* tf,
                      f32* tj, double* hu, int* hn, int k, int* oi, f32* ol, double* ou, int* on, int* ov, int cap) {
  int blocks = (count + 15) / 16;
  int staged = h1 > 0 && h1 < np;
  for (int q = 0; q < Q; q++) set_tau(tau + q, tf + q, tj + q, qp[4 * q + 3], tau[q]);
  for (int blk = 0; blk < blocks; blk++) {
    const i16* xb = X + blk * (np * 32 + F_WORDS);
    const f32* f = (const f32*)(xb + np * 32);
    int base = blk * 16, q = 0;
    for (; q + 2 <= Q; q += 2) {
      const int* q0 = Qv + q * np;
      const int* q1 = q0 + np;
      const i16* xr = xb;
      v128_t x0 = wasm_i32x4_splat(0), x1 = x0, x2 = x0, x3 = x0, y0 = x0, y1 = x0, y2 = x0, y3 = x0;
      int p = 0, gx = 1, gy = 1;
      for (int stop = staged ? h1 : np;;) {
        for (; p < stop; p++, xr += 32) {
          v128_t a0 = wasm_v128_load(xr), a1 = wasm_v128_load(xr + 8), a2 = wasm_v128_load(xr + 16), a3 = wasm_v128_load(xr + 24);
          v128_t w = wasm_v128_load32_splat(q0 + p);
          DOT_ADD(x0, a0, w); DOT_ADD(x1, a1, w); DOT_ADD(x2, a2, w); DOT_ADD(x3, a3, w);
          w = wasm_v128_load32_splat(q1 + p);
          DOT_ADD(y0, a0, w); DOT_ADD(y1, a1, w); DOT_ADD(y2, a2, w); DOT_ADD(y3, a3, w);
        }
        if (stop == np) break;
        gx = check16(x0, x1, x2, x3, f, qp + 4 * q, tj + q);
        gy = check16(y0, y1, y2, y3, f, qp + 4 * (q + 1), tj + q + 1);
        if (!gx && !gy) break;
        stop = np;
      }
      if (p < np) continue;
      if (gx) FINISH(x0, x1, x2, x3, q);
      if (gy) FINISH(y0, y1, y2, y3, q + 1);
    }
    if (q < Q) { /* one query: no check (memory-bound, where a data-dependent branch costs more than it saves) */
      const int* q0 = Qv + q * np;
      const i16* xr = xb;
      v128_t x0 = wasm_i32x4_splat(0), x1 = x0, x2 = x0, x3 = x0;
      for (int p = 0; p < np; p++, xr += 32) {
        v128_t w = wasm_v128_load32_splat(q0 + p);
        DOT_ADD(x0, wasm_v128_load(xr), w); DOT_ADD(x1, wasm_v128_load(xr + 8), w);
        DOT_ADD(x2, wasm_v128_load(xr + 16), w); DOT_ADD(x3, wasm_v128_load(xr + 24), w);
      }
      FINISH(x0, x1, x2, x3, q);
    }
  }
}
