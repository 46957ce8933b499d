/*
** gemm_small.c: small float32 matrix products with AVX2 and FMA, beside OpenBLAS.
**
** luagrad runs OpenBLAS with its Haswell kernels on Zen 4 (blas.c), which are faster there for
** every product but the small ones: the AVX-512 kernels' small-matrix path, which skips OpenBLAS's
** packing, made 64x64x64 take 4.6 us against the Haswell kernels' 5.6-6.3. This file is such a
** path for small products (1 thread, Zen 4, 64x64x64: 4.6 us A B, 5.0 us A B^T; 64x128x128:
** 19-23 us against OpenBLAS's 22); how small depends on OpenBLAS's kernels (small_limit below).
**
** C (m x n, row-major, ldc) = beta C + op(A) op(B), beta 0 or 1 (anything else is refused),
** op(A)[i][p] = A[i lda + p] or (ta) A[p lda + i], op(B)[p][j] = B[p ldb + j] or (tb) B[j ldb + p].
** op(B) is copied into rows of 16 (zero-padded) unless it already is such rows; then each 6 x 16
** tile of C is 12 vector accumulators over p, with op(A)'s elements broadcast from wherever they
** are. The sum over p runs in order from 0 with one FMA per term, then C is added if beta is 1:
** the results match such a loop with fmaf() exactly.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Which tiles, and the largest product (m n k) done here, depend on which kernels OpenBLAS runs
** (blas.c):
** - its AVX2 (Haswell) kernels, as on Zen 4: the AVX2 tiles, up to 2^20 (64x128x128 ran 5% faster
**   here);
** - its AVX-512 kernels, on a core that runs them at full width (AMD Zen 5; Intel with AVX-512 by
**   the same rule, not measured): the AVX-512 tiles, up to 2^21. Measured on Zen 5, 1 thread,
**   against OpenBLAS's Cooperlake kernels: 64x64x64 2.8 against 5.2 us, 64x128x128 10.3 against
**   15.2, 64x256x128 22.9 against 25.6, 128x256x128 46.1 against 48.1 (even). The AVX2 tiles
**   there lost above 2^18 (64x128x128: 20.1 us). */
#ifndef SMALL_FLOPS
#define SMALL_FLOPS 1048576.0
#endif
#ifndef SMALL_FLOPS_AVX512
#define SMALL_FLOPS_AVX512 2097152.0
#endif
#define SMALL_BPACK 65536 /* floats of packed op(B) at most */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LG_NO_CLONES)
#include <immintrin.h>
#define HAVE_SMALL_GEMM 1

/* One row of a tile's result: 16 values (nj of them valid) added to or stored into c. */
__attribute__((target("avx2,fma"), always_inline)) static inline void put_row(__m256 lo, __m256 hi,
                                                                              float beta, float *c, int nj) {
  if (nj == 16) {
    if (beta != 0) lo = _mm256_add_ps(lo, _mm256_loadu_ps(c)), hi = _mm256_add_ps(hi, _mm256_loadu_ps(c + 8));
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
  } else {
    float t[16];
    _mm256_storeu_ps(t, lo);
    _mm256_storeu_ps(t + 8, hi);
    for (int j = 0; j < nj; j++) c[j] = beta != 0 ? c[j] + t[j] : t[j];
  }
}

/* One tile: MR (1-6) rows of C from row a of op(A), 16 columns (nj valid) from bp. The twelve
** accumulators are named variables: GCC keeps an array of them in memory. */
#define ROW_FMA(r, lo, hi)                                                                                   \
  if (MR > r) {                                                                                              \
    __m256 av = _mm256_broadcast_ss(a + r * ai + p * ap);                                                    \
    lo = _mm256_fmadd_ps(av, b0, lo);                                                                        \
    hi = _mm256_fmadd_ps(av, b1, hi);                                                                        \
  }
__attribute__((target("avx2,fma"), always_inline)) static inline void
tile(const int MR, int64_t k, const float *a, int64_t ai, int64_t ap, const float *bp, int64_t bs, float beta,
     float *c, int64_t ldc, int nj) {
  __m256 z = _mm256_setzero_ps();
  __m256 c0l = z, c0h = z, c1l = z, c1h = z, c2l = z, c2h = z, c3l = z, c3h = z, c4l = z, c4h = z, c5l = z,
         c5h = z;
  for (int64_t p = 0; p < k; p++) {
    __m256 b0 = _mm256_loadu_ps(bp + p * bs), b1 = _mm256_loadu_ps(bp + p * bs + 8);
    ROW_FMA(0, c0l, c0h)
    ROW_FMA(1, c1l, c1h)
    ROW_FMA(2, c2l, c2h)
    ROW_FMA(3, c3l, c3h)
    ROW_FMA(4, c4l, c4h)
    ROW_FMA(5, c5l, c5h)
  }
  put_row(c0l, c0h, beta, c, nj);
  if (MR > 1) put_row(c1l, c1h, beta, c + ldc, nj);
  if (MR > 2) put_row(c2l, c2h, beta, c + 2 * ldc, nj);
  if (MR > 3) put_row(c3l, c3h, beta, c + 3 * ldc, nj);
  if (MR > 4) put_row(c4l, c4h, beta, c + 4 * ldc, nj);
  if (MR > 5) put_row(c5l, c5h, beta, c + 5 * ldc, nj);
}
#undef ROW_FMA

/* pack[p np + j] = B[j ldb + p] for j < n, p < k: 8 x 8 blocks transposed in registers, then the
** edges one by one */
__attribute__((target("avx2,fma"))) static void pack_transposed(const float *B, int64_t ldb, int64_t n,
                                                                int64_t k, float *pack, int64_t np) {
  int64_t n8 = n / 8 * 8, k8 = k / 8 * 8;
  for (int64_t j = 0; j < n8; j += 8)
    for (int64_t p = 0; p < k8; p += 8) {
      __m256 r[8], t[8];
      for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(B + (j + q) * ldb + p);
      for (int q = 0; q < 8; q += 2)
        t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]), t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
      for (int q = 0; q < 8; q += 4) {
        r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44), r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44),
              r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
      }
      for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(pack + (p + q) * np + j, _mm256_permute2f128_ps(r[q], r[q + 4], 0x20));
        _mm256_storeu_ps(pack + (p + q + 4) * np + j, _mm256_permute2f128_ps(r[q], r[q + 4], 0x31));
      }
    }
  for (int64_t j = 0; j < n; j++) /* the rest: p from k8 in the first n8 rows of B, then all of it */
    for (int64_t p = j < n8 ? k8 : 0; p < k; p++) pack[p * np + j] = B[j * ldb + p];
}

/* C = beta C + op(A) op(B) in tiles of up to 6 rows and W columns (TILE): op(B) is used in rows
** of W floats, as it is when B is not transposed and n is a multiple of W, else packed (and
** zero-padded) into pack. The AVX2 and AVX-512 variants differ only in W and TILE. */
#define SMALL_SGEMM(name, W, TILE, targets)                                                                  \
  __attribute__((target(targets))) static void name(                                                         \
      int ta, int tb, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,          \
      int64_t ldb, float beta, float *C, int64_t ldc, float *pack) {                                         \
    int64_t np = (n + W - 1) / W * W, bs;                                                                    \
    const float *bp;                                                                                         \
    if (!tb && n % W == 0) {                                                                                 \
      bp = B, bs = ldb;                                                                                      \
    } else {                                                                                                 \
      if (tb)                                                                                                \
        pack_transposed(B, ldb, n, k, pack, np);                                                             \
      else                                                                                                   \
        for (int64_t p = 0; p < k; p++) memcpy(pack + p * np, B + p * ldb, sizeof(float) * (size_t)n);       \
      for (int64_t p = 0; p < k; p++)                                                                        \
        for (int64_t j = n; j < np; j++) pack[p * np + j] = 0;                                               \
      bp = pack, bs = np;                                                                                    \
    }                                                                                                        \
    int64_t ai = ta ? 1 : lda, ap = ta ? lda : 1; /* steps of op(A) between rows and along p */              \
    for (int64_t i0 = 0; i0 < m; i0 += 6) {                                                                  \
      int mr = m - i0 < 6 ? (int)(m - i0) : 6;                                                               \
      const float *a = A + i0 * ai;                                                                          \
      for (int64_t j0 = 0; j0 < n; j0 += W) {                                                                \
        int nj = n - j0 < W ? (int)(n - j0) : W;                                                             \
        float *c = C + i0 * ldc + j0;                                                                        \
        switch (mr) { /* MR a constant in each call, so each tile is compiled for its row count */           \
        case 6:                                                                                              \
          TILE(6, k, a, ai, ap, bp + j0, bs, beta, c, ldc, nj);                                              \
          break;                                                                                             \
        case 5:                                                                                              \
          TILE(5, k, a, ai, ap, bp + j0, bs, beta, c, ldc, nj);                                              \
          break;                                                                                             \
        case 4:                                                                                              \
          TILE(4, k, a, ai, ap, bp + j0, bs, beta, c, ldc, nj);                                              \
          break;                                                                                             \
        case 3:                                                                                              \
          TILE(3, k, a, ai, ap, bp + j0, bs, beta, c, ldc, nj);                                              \
          break;                                                                                             \
        case 2:                                                                                              \
          TILE(2, k, a, ai, ap, bp + j0, bs, beta, c, ldc, nj);                                              \
          break;                                                                                             \
        default:                                                                                             \
          TILE(1, k, a, ai, ap, bp + j0, bs, beta, c, ldc, nj);                                              \
          break;                                                                                             \
        }                                                                                                    \
      }                                                                                                      \
    }                                                                                                        \
  }

SMALL_SGEMM(small_sgemm, 16, tile, "avx2,fma")

/* ---- the AVX-512 variant: tiles of up to 6 rows and 32 columns (two 512-bit accumulators per
** row), op(B) in rows of 32. The same sums in the same order as the AVX2 tiles: the results are
** equal bit for bit. Used on cores that run 512-bit FMAs at full width (small_use512). */

__attribute__((target("avx512f"), always_inline)) static inline void
put_row512(__m512 lo, __m512 hi, float beta, float *c, int nj) {
  __mmask16 ml = nj >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nj) - 1);
  __mmask16 mh = nj >= 32 ? (__mmask16)0xFFFF : nj > 16 ? (__mmask16)((1u << (nj - 16)) - 1) : (__mmask16)0;
  if (beta != 0) {
    lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(ml, c));
    hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(mh, c + 16));
  }
  _mm512_mask_storeu_ps(c, ml, lo);
  _mm512_mask_storeu_ps(c + 16, mh, hi);
}

#define ROW_FMA512(r, lo, hi)                                                                                \
  if (MR > r) {                                                                                              \
    __m512 av = _mm512_set1_ps(a[r * ai + p * ap]);                                                          \
    lo = _mm512_fmadd_ps(av, b0, lo);                                                                        \
    hi = _mm512_fmadd_ps(av, b1, hi);                                                                        \
  }
__attribute__((target("avx512f"), always_inline)) static inline void
tile512(const int MR, int64_t k, const float *a, int64_t ai, int64_t ap, const float *bp, int64_t bs,
        float beta, float *c, int64_t ldc, int nj) {
  __m512 z = _mm512_setzero_ps();
  __m512 c0l = z, c0h = z, c1l = z, c1h = z, c2l = z, c2h = z, c3l = z, c3h = z, c4l = z, c4h = z, c5l = z,
         c5h = z;
  for (int64_t p = 0; p < k; p++) {
    __m512 b0 = _mm512_loadu_ps(bp + p * bs), b1 = _mm512_loadu_ps(bp + p * bs + 16);
    ROW_FMA512(0, c0l, c0h)
    ROW_FMA512(1, c1l, c1h)
    ROW_FMA512(2, c2l, c2h)
    ROW_FMA512(3, c3l, c3h)
    ROW_FMA512(4, c4l, c4h)
    ROW_FMA512(5, c5l, c5h)
  }
  put_row512(c0l, c0h, beta, c, nj);
  if (MR > 1) put_row512(c1l, c1h, beta, c + ldc, nj);
  if (MR > 2) put_row512(c2l, c2h, beta, c + 2 * ldc, nj);
  if (MR > 3) put_row512(c3l, c3h, beta, c + 3 * ldc, nj);
  if (MR > 4) put_row512(c4l, c4h, beta, c + 4 * ldc, nj);
  if (MR > 5) put_row512(c5l, c5h, beta, c + 5 * ldc, nj);
}
#undef ROW_FMA512

SMALL_SGEMM(small_sgemm512, 32, tile512, "avx512f,avx2,fma")
#endif

#ifdef HAVE_SMALL_GEMM
/* SMALL_FLOPS, or SMALL_FLOPS_AVX512 when OpenBLAS runs AVX-512 kernels (decided once) */
static _Atomic int small_use512 = -1; /* the AVX-512 tiles: decided with the limit */
static double small_limit(void) {
  static _Atomic double limit = 0;
  double l = limit;
  if (l == 0) {
    int wide = lg_blas_avx512_kernels() && __builtin_cpu_supports("avx512f");
    l = wide ? SMALL_FLOPS_AVX512 : SMALL_FLOPS;
    small_use512 = wide;
    limit = l;
  }
  return l;
}
#endif

int lg_gemm_small_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
#ifdef HAVE_SMALL_GEMM
  /* narrow outputs (n < 16) would waste most of each 16-wide tile, and a transposed op(B) is
  ** packed first, which few rows do not repay (32x256x128: 32 us against OpenBLAS's 25): OpenBLAS
  ** does those */
  double limit = small_limit();
  int64_t w = small_use512 == 1 ? 32 : 16; /* the tiles' width */
  int packed = tb || n % w != 0;
  int64_t npack = packed ? k * ((n + w - 1) / w * w) : 0;
  if ((double)m * (double)n * (double)k > limit || n < 16 || (tb && m < 48) || npack > SMALL_BPACK ||
      k == 0 || (beta != 0 && beta != 1))
    return 0;
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
  float stackbuf[4096], *pack = stackbuf; /* 16 KB on the stack covers most; larger packs malloc */
  if (npack > 4096 && !(pack = malloc(sizeof(float) * (size_t)npack))) return 0;
  if (w == 32)
    small_sgemm512(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc, pack);
  else
    small_sgemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc, pack);
  if (pack != stackbuf) free(pack);
  return 1;
#else
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)A, (void)lda, (void)B, (void)ldb, (void)beta, (void)C,
      (void)ldc;
  return 0;
#endif
}

double lg_gemm_small_limit(void) {
#ifdef HAVE_SMALL_GEMM
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? small_limit() : 0;
#else
  return 0;
#endif
}

const char *lg_gemm_small_kernel(void) {
#ifdef HAVE_SMALL_GEMM
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return small_limit() > 0 && small_use512 == 1
               ? "luagrad's AVX-512 kernel up to 2^21 multiply-adds, OpenBLAS above"
               : "luagrad's AVX2 kernel up to 2^20 multiply-adds, OpenBLAS above";
  return "OpenBLAS (this CPU lacks AVX2 and FMA for luagrad's kernel)";
#else
  return "OpenBLAS (luagrad's kernel is not built for this target)";
#endif
}
