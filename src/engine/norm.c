/*
** norm.c: batch normalization and layer normalization as fused ops.
**
** Both normalize groups of M values with their mean and biased variance, then scale and shift:
**   xhat = (x - mean) * rstd,   rstd = 1 / sqrt(var + eps),   y = xhat * w + b
** BatchNorm's groups are the channels of (N, C) or (N, C, L) input (M = N * L values each, w and
** b per channel); LayerNorm's groups are the rows over the last D values (w and b per value).
**
** Backward, by hand (the reference text's BatchNorm formula). With dxhat = dy * w:
**   dx = rstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
**   dw = sum(dy * xhat),   db = sum(dy)             (sums over the group's values)
** The forward saves the batch mean and variance (outputs 2 and 3); the backward recomputes xhat
** from them and x in one pass. Under create_graph, and in forward mode, the same formulas are
** written with ordinary ops instead (a differentiable fallback), so second derivatives and
** tangents flow through them.
**
** Running statistics (BatchNorm in training) and eval mode are handled by the nn module: eval
** mode is an affine map of the running statistics, written with ops.
*/
#include "compose.h"

#include <math.h>
#include <stdlib.h>

/* ---- kernels ----
** x, y: N x C x L contiguous (L = 1 for 2-d input), or R x D for layer norm. Statistics are
** accumulated in double. */

/* Per-channel sums over the N rows of an N x C block, in double. Channels go 16 at a time with
** the rows inside, so the 16 accumulators stay in registers while x streams through once:
**   colsum:  s[c] = sum_n x[n, c]
**   coldev:  with d = x[n, c] - m[c]:  s1[c] = sum_n g[n, c] (g = d when g is NULL), s2[c] = sum_n g d */
#define BN_COLS 16
/* float32 column sums with AVX2 (FMA for the products), 16 channels per block as above; they
** return how many leading channels they did (a multiple of 16), the portable loops do the rest. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LG_NO_CLONES)
#include <immintrin.h>
static int bn_have_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

/* the 16 floats at p as four vectors of 4 doubles */
#define BN_LOAD16(v, p)                                                                                      \
  do {                                                                                                       \
    __m256 lo_ = _mm256_loadu_ps(p), hi_ = _mm256_loadu_ps((p) + 8);                                         \
    v[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(lo_)),                                                     \
    v[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(lo_, 1));                                                   \
    v[2] = _mm256_cvtps_pd(_mm256_castps256_ps128(hi_)),                                                     \
    v[3] = _mm256_cvtps_pd(_mm256_extractf128_ps(hi_, 1));                                                   \
  } while (0)

__attribute__((target("avx2,fma"))) static int64_t colsum_f32_fast(const float *x, int64_t N, int64_t C,
                                                                   double *s) {
  if (!bn_have_avx2()) return 0;
  int64_t c0 = 0;
  for (; c0 + BN_COLS <= C; c0 += BN_COLS) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()}, v[4];
    for (int64_t n = 0; n < N; n++) {
      BN_LOAD16(v, x + n * C + c0);
      for (int j = 0; j < 4; j++) a[j] = _mm256_add_pd(a[j], v[j]);
    }
    for (int j = 0; j < 4; j++) _mm256_storeu_pd(s + c0 + 4 * j, a[j]);
  }
  return c0;
}

__attribute__((target("avx2,fma"))) static int64_t coldev_f32_fast(const float *g, const float *x,
                                                                   const double *m, int64_t N, int64_t C,
                                                                   double *s1, double *s2) {
  if (!bn_have_avx2()) return 0;
  int64_t c0 = 0;
  for (; c0 + BN_COLS <= C; c0 += BN_COLS) {
    __m256d a[4], b[4], mm[4], v[4], w[4];
    for (int j = 0; j < 4; j++) a[j] = b[j] = _mm256_setzero_pd(), mm[j] = _mm256_loadu_pd(m + c0 + 4 * j);
    for (int64_t n = 0; n < N; n++) {
      BN_LOAD16(v, x + n * C + c0);
      for (int j = 0; j < 4; j++) v[j] = _mm256_sub_pd(v[j], mm[j]);
      if (g)
        BN_LOAD16(w, g + n * C + c0);
      else
        for (int j = 0; j < 4; j++) w[j] = v[j];
      for (int j = 0; j < 4; j++) a[j] = _mm256_add_pd(a[j], w[j]), b[j] = _mm256_fmadd_pd(w[j], v[j], b[j]);
    }
    for (int j = 0; j < 4; j++)
      _mm256_storeu_pd(s1 + c0 + 4 * j, a[j]), _mm256_storeu_pd(s2 + c0 + 4 * j, b[j]);
  }
  return c0;
}
#else
static int64_t colsum_f32_fast(const float *x, int64_t N, int64_t C, double *s) { return 0; }
static int64_t coldev_f32_fast(const float *g, const float *x, const double *m, int64_t N, int64_t C,
                               double *s1, double *s2) {
  return 0;
}
#endif
static int64_t colsum_f64_fast(const double *x, int64_t N, int64_t C, double *s) { return 0; }
static int64_t coldev_f64_fast(const double *g, const double *x, const double *m, int64_t N, int64_t C,
                               double *s1, double *s2) {
  return 0;
}

#define BN_COLSUMS(sfx, T)                                                                                   \
  LG_WIDE static void colsum_##sfx(const T *restrict x, int64_t N, int64_t C, double *restrict s) {          \
    int64_t c0 = colsum_##sfx##_fast(x, N, C, s);                                                            \
    for (; c0 + BN_COLS <= C; c0 += BN_COLS) {                                                               \
      double a[BN_COLS] = {0};                                                                               \
      for (int64_t n = 0; n < N; n++)                                                                        \
        for (int j = 0; j < BN_COLS; j++) a[j] += x[n * C + c0 + j];                                         \
      for (int j = 0; j < BN_COLS; j++) s[c0 + j] = a[j];                                                    \
    }                                                                                                        \
    for (int64_t c = c0; c < C; c++) {                                                                       \
      double a = 0;                                                                                          \
      for (int64_t n = 0; n < N; n++) a += x[n * C + c];                                                     \
      s[c] = a;                                                                                              \
    }                                                                                                        \
  }                                                                                                          \
  LG_WIDE static void coldev_##sfx(const T *restrict g, const T *restrict x, const double *restrict m,       \
                                   int64_t N, int64_t C, double *restrict s1, double *restrict s2) {         \
    int64_t c0 = coldev_##sfx##_fast(g, x, m, N, C, s1, s2);                                                 \
    for (; c0 + BN_COLS <= C; c0 += BN_COLS) {                                                               \
      double a[BN_COLS] = {0}, b[BN_COLS] = {0};                                                             \
      if (g)                                                                                                 \
        for (int64_t n = 0; n < N; n++)                                                                      \
          for (int j = 0; j < BN_COLS; j++) {                                                                \
            double d = x[n * C + c0 + j] - m[c0 + j], gg = g[n * C + c0 + j];                                \
            a[j] += gg, b[j] += gg * d;                                                                      \
          }                                                                                                  \
      else                                                                                                   \
        for (int64_t n = 0; n < N; n++)                                                                      \
          for (int j = 0; j < BN_COLS; j++) {                                                                \
            double d = x[n * C + c0 + j] - m[c0 + j];                                                        \
            a[j] += d, b[j] += d * d;                                                                        \
          }                                                                                                  \
      for (int j = 0; j < BN_COLS; j++) s1[c0 + j] = a[j], s2[c0 + j] = b[j];                                \
    }                                                                                                        \
    for (int64_t c = c0; c < C; c++) {                                                                       \
      double a = 0, b = 0;                                                                                   \
      for (int64_t n = 0; n < N; n++) {                                                                      \
        double d = x[n * C + c] - m[c], gg = g ? (double)g[n * C + c] : d;                                   \
        a += gg, b += gg * d;                                                                                \
      }                                                                                                      \
      s1[c] = a, s2[c] = b;                                                                                  \
    }                                                                                                        \
  }
BN_COLSUMS(f32, float)
BN_COLSUMS(f64, double)

/* Sums over one channel's row of L values (the (N, C, L) layout), eight partial sums in double so
** that the loop vectorizes without reassociating:
**   row_sum:  s += sum x            row_dev:  s1 += sum g, s2 += sum g (x - m)  (g = x - m when NULL) */
#define BN_ROWSUMS(sfx, T)                                                                                   \
  LG_WIDE static double row_sum_##sfx(const T *restrict x, int64_t L) {                                      \
    double a[8] = {0};                                                                                       \
    int64_t l = 0;                                                                                           \
    for (; l + 8 <= L; l += 8)                                                                               \
      for (int k = 0; k < 8; k++) a[k] += x[l + k];                                                          \
    double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));                            \
    for (; l < L; l++) s += x[l];                                                                            \
    return s;                                                                                                \
  }                                                                                                          \
  LG_WIDE static void row_dev_##sfx(const T *restrict g, const T *restrict x, double m, int64_t L,           \
                                    double *s1, double *s2) {                                                \
    double a[8] = {0}, b[8] = {0};                                                                           \
    int64_t l = 0;                                                                                           \
    for (; l + 8 <= L; l += 8)                                                                               \
      for (int k = 0; k < 8; k++) {                                                                          \
        double d = x[l + k] - m, gg = g ? (double)g[l + k] : d;                                              \
        a[k] += gg, b[k] += gg * d;                                                                          \
      }                                                                                                      \
    double sa = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));                           \
    double sb = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));                           \
    for (; l < L; l++) {                                                                                     \
      double d = x[l] - m, gg = g ? (double)g[l] : d;                                                        \
      sa += gg, sb += gg * d;                                                                                \
    }                                                                                                        \
    *s1 += sa, *s2 += sb;                                                                                    \
  }
BN_ROWSUMS(f32, float)
BN_ROWSUMS(f64, double)

/* (N, C, L) with L > 1: each channel on its own (its sums over n in order, so the result never
** depends on how the channels are shared among threads), the channels split across threads. */
typedef struct {
  const void *x, *dy, *w, *b, *mean, *var;
  void *y, *mean_out, *var_out, *dx, *dw, *db;
  int64_t N, C, L;
  double eps;
} bn_job;

#define BN_CHANNELS(sfx, T)                                                                                  \
  LG_WIDE static void bn_forward_channels_##sfx(void *j_, int64_t lo, int64_t hi) {                          \
    const bn_job *j = j_;                                                                                    \
    const T *x = j->x, *w = j->w, *b = j->b;                                                                 \
    T *y = j->y;                                                                                             \
    int64_t N = j->N, C = j->C, L = j->L;                                                                    \
    double M = (double)(N * L);                                                                              \
    for (int64_t c = lo; c < hi; c++) {                                                                      \
      double mean = 0, var = 0, unused = 0;                                                                  \
      for (int64_t n = 0; n < N; n++) mean += row_sum_##sfx(x + (n * C + c) * L, L);                         \
      mean /= M;                                                                                             \
      for (int64_t n = 0; n < N; n++) row_dev_##sfx(NULL, x + (n * C + c) * L, mean, L, &unused, &var);      \
      var /= M;                                                                                              \
      ((T *)j->mean_out)[c] = (T)mean;                                                                       \
      ((T *)j->var_out)[c] = (T)var;                                                                         \
      double kd = 1 / sqrt(var + j->eps) * (w ? w[c] : 1); /* y = x k + sh: k = w rstd, sh = b - mean k */   \
      const T k = (T)kd, sh = (T)((b ? b[c] : 0) - mean * kd);                                               \
      for (int64_t n = 0; n < N; n++) {                                                                      \
        const T *p = x + (n * C + c) * L;                                                                    \
        T *q = y + (n * C + c) * L;                                                                          \
        for (int64_t l = 0; l < L; l++) q[l] = p[l] * k + sh;                                                \
      }                                                                                                      \
    }                                                                                                        \
  }                                                                                                          \
  /* dx = k M dy - k rstd sdyx (x - mean) - k sdy per channel, k = w rstd / M, as for (N, C) */              \
  LG_WIDE static void bn_backward_channels_##sfx(void *j_, int64_t lo, int64_t hi) {                         \
    const bn_job *j = j_;                                                                                    \
    const T *x = j->x, *dy = j->dy, *w = j->w, *mean = j->mean, *var = j->var;                               \
    T *dx = j->dx, *dw = j->dw, *db = j->db;                                                                 \
    int64_t N = j->N, C = j->C, L = j->L;                                                                    \
    double M = (double)(N * L);                                                                              \
    for (int64_t c = lo; c < hi; c++) {                                                                      \
      double sdy = 0, sdyx = 0, rstd = 1 / sqrt((double)var[c] + j->eps);                                    \
      for (int64_t n = 0; n < N; n++)                                                                        \
        row_dev_##sfx(dy + (n * C + c) * L, x + (n * C + c) * L, mean[c], L, &sdy, &sdyx);                   \
      sdyx *= rstd;                                                                                          \
      if (dx) {                                                                                              \
        double k = (w ? w[c] : 1) * rstd / M;                                                                \
        const T ka = (T)(k * M), kb = (T)(-k * rstd * sdyx), kc = (T)(-k * sdy), m = mean[c];                \
        for (int64_t n = 0; n < N; n++) {                                                                    \
          const T *restrict p = x + (n * C + c) * L, *restrict g = dy + (n * C + c) * L;                     \
          T *restrict q = dx + (n * C + c) * L;                                                              \
          for (int64_t l = 0; l < L; l++) q[l] = ka * g[l] + kb * (p[l] - m) + kc;                           \
        }                                                                                                    \
      }                                                                                                      \
      if (dw) dw[c] = (T)sdyx;                                                                               \
      if (db) db[c] = (T)sdy;                                                                                \
    }                                                                                                        \
  }
BN_CHANNELS(f32, float)
BN_CHANNELS(f64, double)

#define BN_FORWARD(name, sfx, T)                                                                             \
  LG_WIDE static void name(const T *x, T *y, const T *w, const T *b, T *mean_out, T *var_out, double *acc,   \
                           int64_t N, int64_t C, int64_t L, double eps) {                                    \
    double *mean = acc, *var = acc + C, M = (double)(N * L);                                                 \
    for (int64_t c = 0; c < 2 * C; c++) acc[c] = 0;                                                          \
    if (L == 1) { /* (N, C): channels are contiguous */                                                      \
      colsum_##sfx(x, N, C, mean);                                                                           \
      for (int64_t c = 0; c < C; c++) mean[c] /= M;                                                          \
      coldev_##sfx(NULL, x, mean, N, C, acc + 2 * C, var); /* acc + 2C: sum of d, unused */                  \
      T *k = (T *)(acc + 2 * C), *sh = k + C;              /* scratch after the statistics */                \
      for (int64_t c = 0; c < C; c++) {                                                                      \
        var[c] /= M;                                                                                         \
        mean_out[c] = (T)mean[c];                                                                            \
        var_out[c] = (T)var[c];                                                                              \
        double kk = 1 / sqrt(var[c] + eps) * (w ? w[c] : 1);                                                 \
        k[c] = (T)kk;                                                                                        \
        sh[c] = (T)((b ? b[c] : 0) - mean[c] * kk);                                                          \
      }                                                                                                      \
      for (int64_t n = 0; n < N; n++)                                                                        \
        for (int64_t c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * k[c] + sh[c];                          \
      return;                                                                                                \
    }                                                                                                        \
    bn_job j = {.x = x,                                                                                      \
                .w = w,                                                                                      \
                .b = b,                                                                                      \
                .y = y,                                                                                      \
                .mean_out = mean_out,                                                                        \
                .var_out = var_out,                                                                          \
                .N = N,                                                                                      \
                .C = C,                                                                                      \
                .L = L,                                                                                      \
                .eps = eps};                                                                                 \
    lg_parallel_for_cost(C, 3 * N * L, bn_forward_channels_##sfx, &j);                                       \
  }
BN_FORWARD(bn_forward_f32, f32, float)
BN_FORWARD(bn_forward_f64, f64, double)

#define BN_BACKWARD(name, sfx, T)                                                                            \
  LG_WIDE static void name(const T *x, const T *dy, const T *w, const T *mean, const T *var, T *dx, T *dw,   \
                           T *db, double *acc, int64_t N, int64_t C, int64_t L, double eps) {                \
    double *sdy = acc, *sdyx = acc + C, *rstd = acc + 2 * C, M = (double)(N * L);                            \
    for (int64_t c = 0; c < C; c++) sdy[c] = sdyx[c] = 0, rstd[c] = 1 / sqrt((double)var[c] + eps);          \
    if (L == 1) { /* (N, C): channels innermost; dx is affine in dy and x - mean per channel */              \
      double *md = acc + 3 * C;                                                                              \
      for (int64_t c = 0; c < C; c++) md[c] = mean[c];                                                       \
      coldev_##sfx(dy, x, md, N, C, sdy, sdyx);                                                              \
      for (int64_t c = 0; c < C; c++) sdyx[c] *= rstd[c];                                                    \
      if (dx) { /* dx = k M dy - k rstd sdyx (x - mean) - k sdy,  k = w rstd / M */                          \
        T *ka = (T *)(acc + 4 * C), *kb = ka + C, *kc = kb + C; /* scratch after the sums */                 \
        for (int64_t c = 0; c < C; c++) {                                                                    \
          double k = (w ? w[c] : 1) * rstd[c] / M;                                                           \
          ka[c] = (T)(k * M), kb[c] = (T)(-k * rstd[c] * sdyx[c]), kc[c] = (T)(-k * sdy[c]);                 \
        }                                                                                                    \
        for (int64_t n = 0; n < N; n++)                                                                      \
          for (int64_t c = 0; c < C; c++)                                                                    \
            dx[n * C + c] = ka[c] * dy[n * C + c] + kb[c] * (x[n * C + c] - mean[c]) + kc[c];                \
      }                                                                                                      \
      for (int64_t c = 0; c < C; c++) {                                                                      \
        if (dw) dw[c] = (T)sdyx[c];                                                                          \
        if (db) db[c] = (T)sdy[c];                                                                           \
      }                                                                                                      \
      return;                                                                                                \
    }                                                                                                        \
    bn_job j = {.x = x,                                                                                      \
                .dy = dy,                                                                                    \
                .w = w,                                                                                      \
                .mean = mean,                                                                                \
                .var = var,                                                                                  \
                .dx = dx,                                                                                    \
                .dw = dw,                                                                                    \
                .db = db,                                                                                    \
                .N = N,                                                                                      \
                .C = C,                                                                                      \
                .L = L,                                                                                      \
                .eps = eps};                                                                                 \
    lg_parallel_for_cost(C, 3 * N * L, bn_backward_channels_##sfx, &j);                                      \
  }
BN_BACKWARD(bn_backward_f32, f32, float)
BN_BACKWARD(bn_backward_f64, f64, double)

#define LN_FORWARD(name, T)                                                                                  \
  static void name(const T *x, T *y, const T *w, const T *b, T *mean_out, T *var_out, int64_t R, int64_t D,  \
                   double eps) {                                                                             \
    for (int64_t r = 0; r < R; r++, x += D, y += D) {                                                        \
      double m = 0, v = 0;                                                                                   \
      for (int64_t d = 0; d < D; d++) m += x[d];                                                             \
      m /= (double)D;                                                                                        \
      for (int64_t d = 0; d < D; d++) v += ((double)x[d] - m) * ((double)x[d] - m);                          \
      v /= (double)D;                                                                                        \
      mean_out[r] = (T)m;                                                                                    \
      var_out[r] = (T)v;                                                                                     \
      double rs = 1 / sqrt(v + eps);                                                                         \
      for (int64_t d = 0; d < D; d++) y[d] = (T)(((double)x[d] - m) * rs * (w ? w[d] : 1) + (b ? b[d] : 0)); \
    }                                                                                                        \
  }
LN_FORWARD(ln_forward_f64, double)

/* float32 LayerNorm in loops that vectorize: the same double arithmetic as LN_FORWARD/LN_BACKWARD,
** but the row sums in eight partial sums (row_sum_f32, row_dev_f32, ln_dxh_sums_f32) and the
** elementwise loops free of per-element branches. The order of a row's additions differs from the
** plain loops', so a result may differ from them in the last bit of a double before rounding to
** float. */
LG_WIDE static void ln_apply_f32(const float *restrict x, float *restrict y, const float *restrict w,
                                 const float *restrict b, double m, double rs, int64_t D) {
  if (w && b)
    for (int64_t d = 0; d < D; d++) y[d] = (float)(((double)x[d] - m) * rs * w[d] + b[d]);
  else if (w)
    for (int64_t d = 0; d < D; d++) y[d] = (float)(((double)x[d] - m) * rs * w[d]);
  else if (b)
    for (int64_t d = 0; d < D; d++) y[d] = (float)(((double)x[d] - m) * rs + b[d]);
  else
    for (int64_t d = 0; d < D; d++) y[d] = (float)(((double)x[d] - m) * rs);
}
static void ln_forward_f32(const float *x, float *y, const float *w, const float *b, float *mean_out,
                           float *var_out, int64_t R, int64_t D, double eps) {
  for (int64_t r = 0; r < R; r++, x += D, y += D) {
    double m = row_sum_f32(x, D) / (double)D, s1 = 0, v = 0;
    row_dev_f32(NULL, x, m, D, &s1, &v); /* v = sum (x - m)^2 */
    v /= (double)D;
    mean_out[r] = (float)m;
    var_out[r] = (float)v;
    ln_apply_f32(x, y, w, b, m, 1 / sqrt(v + eps), D);
  }
}

/* one row's sums for the backward pass: s1 = sum dxh, s2 = sum dxh (x - m), dxh = dy w */
LG_WIDE static void ln_dxh_sums_f32(const float *restrict dy, const float *restrict w,
                                    const float *restrict x, double m, int64_t D, double *s1, double *s2) {
  double a[8] = {0}, c[8] = {0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int k = 0; k < 8; k++) {
      double g = (double)dy[d + k] * (w ? (double)w[d + k] : 1);
      a[k] += g, c[k] += g * ((double)x[d + k] - m);
    }
  double sa = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  double sd = ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7]));
  for (; d < D; d++) {
    double g = (double)dy[d] * (w ? (double)w[d] : 1);
    sa += g, sd += g * ((double)x[d] - m);
  }
  *s1 = sa, *s2 = sd;
}
/* dx = rs / D (D dxh - s1 - xhat s2), xhat = (x - m) rs; dw += dy xhat, db += dy (in double) */
LG_WIDE static void ln_row_grads_f32(const float *restrict x, const float *restrict dy,
                                     const float *restrict w, float *restrict dx, double *restrict dw,
                                     double *restrict db, double m, double rs, double s1, double s2,
                                     int64_t D) {
  double k = rs / (double)D;
  if (dx)
    for (int64_t d = 0; d < D; d++) {
      double xhat = ((double)x[d] - m) * rs, dxh = (double)dy[d] * (w ? (double)w[d] : 1);
      dx[d] = (float)(k * ((double)D * dxh - s1 - xhat * s2));
    }
  if (dw)
    for (int64_t d = 0; d < D; d++) dw[d] += (double)dy[d] * (((double)x[d] - m) * rs);
  if (db)
    for (int64_t d = 0; d < D; d++) db[d] += dy[d];
}
static void ln_backward_f32(const float *x, const float *dy, const float *w, const float *mean,
                            const float *var, float *dx, double *dw, double *db, int64_t R, int64_t D,
                            double eps) {
  for (int64_t r = 0; r < R; r++, x += D, dy += D) {
    double rs = 1 / sqrt((double)var[r] + eps), m = mean[r], s1, s2;
    ln_dxh_sums_f32(dy, w, x, m, D, &s1, &s2);
    ln_row_grads_f32(x, dy, w, dx ? dx + r * D : NULL, dw, db, m, rs, s1, s2 * rs, D);
  }
}

#define LN_BACKWARD(name, T)                                                                                 \
  static void name(const T *x, const T *dy, const T *w, const T *mean, const T *var, T *dx, double *dw,      \
                   double *db, int64_t R, int64_t D, double eps) {                                           \
    for (int64_t r = 0; r < R; r++, x += D, dy += D) {                                                       \
      double rs = 1 / sqrt((double)var[r] + eps), m = mean[r], s1 = 0, s2 = 0;                               \
      for (int64_t d = 0; d < D; d++) {                                                                      \
        double xhat = ((double)x[d] - m) * rs, dxh = dy[d] * (w ? (double)w[d] : 1);                         \
        s1 += dxh;                                                                                           \
        s2 += dxh * xhat;                                                                                    \
        if (dw) dw[d] += dy[d] * xhat;                                                                       \
        if (db) db[d] += dy[d];                                                                              \
      }                                                                                                      \
      if (dx)                                                                                                \
        for (int64_t d = 0; d < D; d++) {                                                                    \
          double xhat = ((double)x[d] - m) * rs, dxh = dy[d] * (w ? (double)w[d] : 1);                       \
          dx[r * D + d] = (T)(rs / (double)D * ((double)D * dxh - s1 - xhat * s2));                          \
        }                                                                                                    \
    }                                                                                                        \
  }
LN_BACKWARD(ln_backward_f64, double)

/* ---- shared checks ---- */

static lg_status float_contig(const char *op, lg_tensor *t, lg_dtype dt, lg_tensor **out) {
  if (!t) {
    *out = NULL;
    return LG_OK;
  }
  if (lg_is_contiguous(t) && t->dtype == dt) {
    *out = lg_tensor_retain(t);
    return LG_OK;
  }
  return lg_copy_as(t, dt, out);
}

static lg_status check_param(const char *op, const char *what, lg_tensor *p, int64_t n) {
  if (p && lg_numel(p) != n)
    return lg_error(LG_ESHAPE, "%s: %s has shape %s, expected %lld elements", op, what, SHAPE(p),
                    (long long)n);
  return LG_OK;
}

/* The working set of a fused backward pass (batch_norm, layer_norm): x, g and the weight as
** contiguous tensors of x's dtype, and the gradients the node wants (NULL where not), dweight and
** dbias of shape pshape. norm_bw_end hands the gradients out on success, releases them otherwise,
** and releases the inputs either way. */
typedef struct {
  lg_tensor *xc, *gc, *wc, *dx, *dw, *db;
} norm_bw;

static lg_status norm_bw_begin(const char *op, lg_node *n, lg_tensor *g, const int64_t *pshape, int pndim,
                               norm_bw *b) {
  lg_tensor *x = n->args.in[0], *w = n->nin > 1 ? n->args.in[1] : NULL;
  lg_dtype dt = x->dtype;
  *b = (norm_bw){0};
  lg_status st = float_contig(op, x, dt, &b->xc);
  if (st == LG_OK) st = float_contig(op, g, dt, &b->gc);
  if (st == LG_OK) st = float_contig(op, w, dt, &b->wc);
  if (st == LG_OK && n->needs[0]) st = lg_new(x->shape, x->ndim, dt, &b->dx);
  if (st == LG_OK && n->nin > 1 && n->needs[1]) st = lg_new(pshape, pndim, dt, &b->dw);
  if (st == LG_OK && n->nin > 2 && n->needs[2]) st = lg_new(pshape, pndim, dt, &b->db);
  return st;
}

static lg_status norm_bw_end(lg_status st, lg_node *n, lg_tensor **gin, norm_bw *b) {
  if (st == LG_OK) {
    gin[0] = b->dx;
    if (n->nin > 1) gin[1] = b->dw;
    if (n->nin > 2) gin[2] = b->db;
  } else {
    lg_tensor *grads[3] = {b->dx, b->dw, b->db};
    lg_release_all(grads, 3);
  }
  lg_tensor *inputs[3] = {b->xc, b->gc, b->wc};
  lg_release_all(inputs, 3);
  return st;
}

/* ==== batch_norm(x, weight, bias; eps) -> y, batch mean, batch variance (biased) ==== */

lg_status lg_batch_norm_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *w = a->nin > 1 ? a->in[1] : NULL, *b = a->nin > 2 ? a->in[2] : NULL;
  if (x->ndim != 2 && x->ndim != 3)
    return lg_error(LG_ESHAPE, "batch_norm: expected (N, C) or (N, C, L) input, got %s", SHAPE(x));
  int64_t N = x->shape[0], C = x->shape[1], L = x->ndim == 3 ? x->shape[2] : 1;
  LG_TRY(check_param("batch_norm", "weight", w, C));
  LG_TRY(check_param("batch_norm", "bias", b, C));
  lg_dtype dt = lg_dtype_is_float(x->dtype) ? x->dtype : lg_default_dtype();
  lg_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *var = NULL;
  double *acc = malloc(sizeof(double) * (size_t)(4 * C + 1)); /* statistics, then scale and shift */
  lg_status st = acc ? LG_OK : lg_error(LG_ENOMEM, "batch_norm: out of memory");
  if (st == LG_OK) st = float_contig("batch_norm", x, dt, &xc);
  if (st == LG_OK) st = float_contig("batch_norm", w, dt, &wc);
  if (st == LG_OK) st = float_contig("batch_norm", b, dt, &bc);
  if (st == LG_OK) st = lg_new(x->shape, x->ndim, dt, &y);
  if (st == LG_OK) st = lg_new(&C, 1, dt, &mean);
  if (st == LG_OK) st = lg_new(&C, 1, dt, &var);
  if (st == LG_OK) {
    if (dt == LG_FLOAT32)
      bn_forward_f32(lg_data(xc), lg_data(y), wc ? lg_data(wc) : NULL, bc ? lg_data(bc) : NULL, lg_data(mean),
                     lg_data(var), acc, N, C, L, a->s[0]);
    else
      bn_forward_f64(lg_data(xc), lg_data(y), wc ? lg_data(wc) : NULL, bc ? lg_data(bc) : NULL, lg_data(mean),
                     lg_data(var), acc, N, C, L, a->s[0]);
    out[0] = y, out[1] = mean, out[2] = var;
  } else {
    lg_tensor_release(y);
    lg_tensor_release(mean);
    lg_tensor_release(var);
  }
  free(acc);
  lg_tensor_release(xc);
  lg_tensor_release(wc);
  lg_tensor_release(bc);
  return st;
}

/* Running statistics, each updated in double and rounded once, as PyTorch's kernel does. */
static lg_status bn_stat_check(lg_tensor *run, lg_tensor *stat) {
  if (run && (run->dtype != stat->dtype || lg_numel(run) != lg_numel(stat) || !lg_is_contiguous(run) ||
              !lg_is_contiguous(stat) || !lg_dtype_is_float(run->dtype)))
    return lg_error(LG_EVALUE,
                    "batch_norm: running statistic %s (%s) does not match the batch statistic %s (%s)",
                    SHAPE(run), lg_dtype_name(run->dtype), SHAPE(stat), lg_dtype_name(stat->dtype));
  return LG_OK;
}
static void bn_stat_update(lg_tensor *run, lg_tensor *stat, double f, double scale) {
  if (!run) return;
  int64_t C = lg_numel(stat);
  if (run->dtype == LG_FLOAT32) {
    float *r = lg_data(run);
    const float *s = lg_data(stat);
    for (int64_t c = 0; c < C; c++) r[c] = (float)((1 - f) * r[c] + f * scale * s[c]);
  } else {
    double *r = lg_data(run);
    const double *s = lg_data(stat);
    for (int64_t c = 0; c < C; c++) r[c] = (1 - f) * r[c] + f * scale * s[c];
  }
}

lg_status lg_batch_norm_update_stats(lg_tensor *running_mean, lg_tensor *running_var, lg_tensor *mean,
                                     lg_tensor *var, double f, int64_t M) {
  LG_TRY(bn_stat_check(running_mean, mean));
  LG_TRY(bn_stat_check(running_var, var));
  bn_stat_update(running_mean, mean, f, 1);
  bn_stat_update(running_var, var, f, M > 1 ? (double)M / (double)(M - 1) : 1);
  return LG_OK;
}

/* The per-channel parameter or statistic t (C) shaped to broadcast against x: (1, C[, 1]). */
static lg_tensor *bn_bcast(sc *s, lg_tensor *t, const lg_tensor *x) {
  int64_t shape[3] = {1, x->shape[1], 1};
  return t ? sc_reshape(s, t, shape, x->ndim) : NULL;
}
/* sum or mean over every dimension but the channel one, keeping dims */
static lg_tensor *bn_reduce(sc *s, lg_opcode op, lg_tensor *t) {
  if (t && t->ndim == 3) t = sc_reduce(s, op, t, 2, 1);
  return sc_reduce(s, op, t, 0, 1);
}
/* composite statistics: xhat and rstd written with ops, so gradients flow through them */
static lg_tensor *bn_xhat(sc *s, lg_tensor *x, double eps, lg_tensor **rstd) {
  lg_tensor *xm = sc_bin(s, LG_OP_SUB, x, bn_reduce(s, LG_OP_MEAN, x));
  lg_tensor *var = bn_reduce(s, LG_OP_MEAN, sc_un(s, LG_OP_SQUARE, xm));
  *rstd = sc_un(s, LG_OP_RSQRT, sc_bs(s, LG_OP_ADD, var, eps));
  return sc_bin(s, LG_OP_MUL, xm, *rstd);
}
static lg_tensor *flat_c(sc *s, lg_tensor *t) { /* (1, C[, 1]) -> (C) */
  return t ? sc_reshape(s, t, &t->shape[1], 1) : NULL;
}

lg_status lg_batch_norm_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_tensor *x = n->args.in[0], *w = n->nin > 1 ? n->args.in[1] : NULL;
  double eps = n->args.s[0];
  int64_t N = x->shape[0], C = x->shape[1], L = x->ndim == 3 ? x->shape[2] : 1;
  if (lg_grad_enabled()) { /* create_graph: the formulas with ops */
    sc s = {0};
    lg_tensor *rstd, *xhat = bn_xhat(&s, x, eps, &rstd);
    lg_tensor *dxh = w ? sc_bin(&s, LG_OP_MUL, g, bn_bcast(&s, w, x)) : g;
    lg_tensor *dx = NULL, *dw = NULL, *db = NULL;
    if (n->needs[0]) {
      double M = (double)(N * L);
      lg_tensor *t = sc_bin(&s, LG_OP_SUB, sc_bs(&s, LG_OP_MUL, dxh, M), bn_reduce(&s, LG_OP_SUM, dxh));
      t = sc_bin(&s, LG_OP_SUB, t,
                 sc_bin(&s, LG_OP_MUL, xhat, bn_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, dxh, xhat))));
      dx = sc_bs(&s, LG_OP_DIV, sc_bin(&s, LG_OP_MUL, t, rstd), M);
    }
    if (n->nin > 1 && n->needs[1]) dw = flat_c(&s, bn_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, g, xhat)));
    if (n->nin > 2 && n->needs[2]) db = flat_c(&s, bn_reduce(&s, LG_OP_SUM, g));
    if (s.st == LG_OK && db) gin[2] = lg_tensor_retain(db);
    return sc_done2(&s, dx, &gin[0], dw, &gin[1]);
  }
  norm_bw b = {0};
  double *acc = malloc(sizeof(double) * (size_t)(7 * C + 1)); /* sums, rstd, then 3 T coefficients */
  lg_status st =
      acc ? norm_bw_begin("batch_norm", n, g, &C, 1, &b) : lg_error(LG_ENOMEM, "batch_norm: out of memory");
  if (st == LG_OK) {
    lg_tensor *mean = n->saved_aux[0], *var = n->saved_aux[1];
    if (x->dtype == LG_FLOAT32)
      bn_backward_f32(lg_data(b.xc), lg_data(b.gc), b.wc ? lg_data(b.wc) : NULL, lg_data(mean), lg_data(var),
                      b.dx ? lg_data(b.dx) : NULL, b.dw ? lg_data(b.dw) : NULL, b.db ? lg_data(b.db) : NULL,
                      acc, N, C, L, eps);
    else
      bn_backward_f64(lg_data(b.xc), lg_data(b.gc), b.wc ? lg_data(b.wc) : NULL, lg_data(mean), lg_data(var),
                      b.dx ? lg_data(b.dx) : NULL, b.dw ? lg_data(b.dw) : NULL, b.db ? lg_data(b.db) : NULL,
                      acc, N, C, L, eps);
  }
  free(acc);
  return norm_bw_end(st, n, gin, &b);
}

/* Forward mode: with r = rstd, t_xhat = r (tx - mean(tx) - xhat mean(xhat tx));
** t_y = t_xhat w + xhat tw + tb. */
lg_status lg_batch_norm_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout) {
  sc s = {0};
  lg_tensor *x = a->in[0], *w = a->nin > 1 ? a->in[1] : NULL;
  lg_tensor *rstd, *xhat = bn_xhat(&s, x, a->s[0], &rstd), *ty = NULL;
  if (tin[0]) {
    lg_tensor *tx = tin[0];
    lg_tensor *t = sc_bin(&s, LG_OP_SUB, tx, bn_reduce(&s, LG_OP_MEAN, tx));
    t = sc_bin(&s, LG_OP_SUB, t,
               sc_bin(&s, LG_OP_MUL, xhat, bn_reduce(&s, LG_OP_MEAN, sc_bin(&s, LG_OP_MUL, xhat, tx))));
    t = sc_bin(&s, LG_OP_MUL, t, rstd);
    ty = w ? sc_bin(&s, LG_OP_MUL, t, bn_bcast(&s, w, x)) : t;
  }
  if (a->nin > 1 && tin[1]) ty = sc_add0(&s, ty, sc_bin(&s, LG_OP_MUL, xhat, bn_bcast(&s, tin[1], x)));
  if (a->nin > 2 && tin[2]) ty = sc_add0(&s, ty, bn_bcast(&s, tin[2], x));
  return sc_done(&s, ty, tout);
}

/* ==== layer_norm(x, weight, bias; normalized shape = a->shape (a->nshape trailing dimensions of
** x), eps) -> y, row mean, row variance: R rows (the leading sizes' product) of D values ==== */

static lg_status ln_geometry(const lg_args *a, int64_t *R, int64_t *D) {
  lg_tensor *x = a->in[0];
  int k = a->nshape, lead = x->ndim - k, fits = k >= 1 && lead >= 0;
  for (int i = 0; fits && i < k; i++) fits = x->shape[lead + i] == a->shape[i];
  if (!fits)
    return lg_error(LG_ESHAPE, "layer_norm: input %s does not end in the normalized shape %s", SHAPE(x),
                    SHAPEV(a->shape, k));
  *D = lg_shape_numel(a->shape, k);
  *R = lg_shape_numel(x->shape, lead);
  return LG_OK;
}

lg_status lg_layer_norm_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *w = a->nin > 1 ? a->in[1] : NULL, *b = a->nin > 2 ? a->in[2] : NULL;
  int64_t R = 0, D = 0;
  LG_TRY(ln_geometry(a, &R, &D));
  LG_TRY(check_param("layer_norm", "weight", w, D));
  LG_TRY(check_param("layer_norm", "bias", b, D));
  lg_dtype dt = lg_dtype_is_float(x->dtype) ? x->dtype : lg_default_dtype();
  lg_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *var = NULL;
  lg_status st = float_contig("layer_norm", x, dt, &xc);
  if (st == LG_OK) st = float_contig("layer_norm", w, dt, &wc);
  if (st == LG_OK) st = float_contig("layer_norm", b, dt, &bc);
  if (st == LG_OK) st = lg_new(x->shape, x->ndim, dt, &y);
  if (st == LG_OK) st = lg_new(&R, 1, dt, &mean);
  if (st == LG_OK) st = lg_new(&R, 1, dt, &var);
  if (st == LG_OK) {
    if (dt == LG_FLOAT32)
      ln_forward_f32(lg_data(xc), lg_data(y), wc ? lg_data(wc) : NULL, bc ? lg_data(bc) : NULL, lg_data(mean),
                     lg_data(var), R, D, a->s[0]);
    else
      ln_forward_f64(lg_data(xc), lg_data(y), wc ? lg_data(wc) : NULL, bc ? lg_data(bc) : NULL, lg_data(mean),
                     lg_data(var), R, D, a->s[0]);
    out[0] = y, out[1] = mean, out[2] = var;
  } else {
    lg_tensor_release(y);
    lg_tensor_release(mean);
    lg_tensor_release(var);
  }
  lg_tensor_release(xc);
  lg_tensor_release(wc);
  lg_tensor_release(bc);
  return st;
}

/* x as (R, D) rows, and back */
static lg_tensor *ln_rows(sc *s, lg_tensor *t, int64_t R, int64_t D) {
  int64_t shape[2] = {R, D};
  return sc_reshape(s, t, shape, 2);
}
static lg_tensor *ln_xhat(sc *s, lg_tensor *x2, double eps, lg_tensor **rstd) {
  lg_tensor *xm = sc_bin(s, LG_OP_SUB, x2, sc_reduce(s, LG_OP_MEAN, x2, 1, 1));
  lg_tensor *var = sc_reduce(s, LG_OP_MEAN, sc_un(s, LG_OP_SQUARE, xm), 1, 1);
  *rstd = sc_un(s, LG_OP_RSQRT, sc_bs(s, LG_OP_ADD, var, eps));
  return sc_bin(s, LG_OP_MUL, xm, *rstd);
}
static lg_tensor *ln_param(sc *s, lg_tensor *p, int64_t D) { return p ? sc_reshape(s, p, &D, 1) : NULL; }

lg_status lg_layer_norm_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_tensor *x = n->args.in[0], *w = n->nin > 1 ? n->args.in[1] : NULL;
  int64_t R = 0, D = 0;
  LG_TRY(ln_geometry(&n->args, &R, &D));
  double eps = n->args.s[0];
  if (lg_grad_enabled()) { /* create_graph: the formulas with ops */
    sc s = {0};
    lg_tensor *x2 = ln_rows(&s, x, R, D), *g2 = ln_rows(&s, g, R, D), *rstd;
    lg_tensor *xhat = ln_xhat(&s, x2, eps, &rstd);
    lg_tensor *dxh = w ? sc_bin(&s, LG_OP_MUL, g2, ln_param(&s, w, D)) : g2;
    lg_tensor *dx = NULL, *dw = NULL, *db = NULL;
    if (n->needs[0]) {
      lg_tensor *t =
          sc_bin(&s, LG_OP_SUB, sc_bs(&s, LG_OP_MUL, dxh, (double)D), sc_reduce(&s, LG_OP_SUM, dxh, 1, 1));
      t = sc_bin(
          &s, LG_OP_SUB, t,
          sc_bin(&s, LG_OP_MUL, xhat, sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, dxh, xhat), 1, 1)));
      dx = sc_reshape(&s, sc_bs(&s, LG_OP_DIV, sc_bin(&s, LG_OP_MUL, t, rstd), (double)D), x->shape, x->ndim);
    }
    if (n->nin > 1 && n->needs[1])
      dw = sc_reshape(&s, sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, g2, xhat), 0, 0), n->edges[1].shape,
                      n->edges[1].ndim);
    if (n->nin > 2 && n->needs[2])
      db = sc_reshape(&s, sc_reduce(&s, LG_OP_SUM, g2, 0, 0), n->edges[2].shape, n->edges[2].ndim);
    if (s.st == LG_OK && db) gin[2] = lg_tensor_retain(db);
    return sc_done2(&s, dx, &gin[0], dw, &gin[1]);
  }
  norm_bw b = {0};
  double *acc = calloc((size_t)(2 * D + 1), sizeof(double)); /* dweight, dbias sums in double */
  lg_status st = acc ? norm_bw_begin("layer_norm", n, g, n->nin > 1 ? n->edges[1].shape : NULL,
                                     n->nin > 1 ? n->edges[1].ndim : 0, &b)
                     : lg_error(LG_ENOMEM, "layer_norm: out of memory");
  if (st == LG_OK) {
    lg_tensor *mean = n->saved_aux[0], *var = n->saved_aux[1];
    if (x->dtype == LG_FLOAT32)
      ln_backward_f32(lg_data(b.xc), lg_data(b.gc), b.wc ? lg_data(b.wc) : NULL, lg_data(mean), lg_data(var),
                      b.dx ? lg_data(b.dx) : NULL, b.dw ? acc : NULL, b.db ? acc + D : NULL, R, D, eps);
    else
      ln_backward_f64(lg_data(b.xc), lg_data(b.gc), b.wc ? lg_data(b.wc) : NULL, lg_data(mean), lg_data(var),
                      b.dx ? lg_data(b.dx) : NULL, b.dw ? acc : NULL, b.db ? acc + D : NULL, R, D, eps);
    for (int64_t d = 0; d < D; d++) {
      if (b.dw) lg_set_flat(b.dw, d, acc[d]);
      if (b.db) lg_set_flat(b.db, d, acc[D + d]);
    }
  }
  free(acc);
  return norm_bw_end(st, n, gin, &b);
}

lg_status lg_layer_norm_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout) {
  sc s = {0};
  lg_tensor *x = a->in[0], *w = a->nin > 1 ? a->in[1] : NULL;
  int64_t R = 0, D = 0;
  LG_TRY(ln_geometry(a, &R, &D));
  lg_tensor *x2 = ln_rows(&s, x, R, D), *rstd, *xhat = ln_xhat(&s, x2, a->s[0], &rstd), *ty = NULL;
  if (tin[0]) {
    lg_tensor *tx = ln_rows(&s, tin[0], R, D);
    lg_tensor *t = sc_bin(&s, LG_OP_SUB, tx, sc_reduce(&s, LG_OP_MEAN, tx, 1, 1));
    t = sc_bin(&s, LG_OP_SUB, t,
               sc_bin(&s, LG_OP_MUL, xhat, sc_reduce(&s, LG_OP_MEAN, sc_bin(&s, LG_OP_MUL, xhat, tx), 1, 1)));
    t = sc_bin(&s, LG_OP_MUL, t, rstd);
    ty = w ? sc_bin(&s, LG_OP_MUL, t, ln_param(&s, w, D)) : t;
  }
  if (a->nin > 1 && tin[1]) ty = sc_add0(&s, ty, sc_bin(&s, LG_OP_MUL, xhat, ln_param(&s, tin[1], D)));
  if (a->nin > 2 && tin[2]) ty = sc_add0(&s, ty, ln_param(&s, tin[2], D));
  /* with a tangent on the bias alone, ty is one row: broadcast it to every row first */
  int64_t rows[2] = {R, D};
  if (ty) ty = sc_expand(&s, ty, rows, 2);
  return sc_done(&s, ty ? sc_reshape(&s, ty, x->shape, x->ndim) : NULL, tout);
}
