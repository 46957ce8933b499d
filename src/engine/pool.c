/*
** pool.c: 2-d pooling over (N, C, H, W) (the 1-d forms are these over a height of 1, in the Lua
** library): max pooling, average pooling (with padding, ceil_mode, count_include_pad, a divisor
** override) and adaptive average pooling.
**
**   max_pool2d(x) -> y, idx      y[n,c,i,j] = max over the window of x[n,c]; idx its 1-based position
**                                in the H W plane (the first maximum; padding never wins)
**                                backward: g scattered to idx (scatter_add); forward mode: the
**                                tangent gathered at idx. Saved: idx.
**   avg_pool2d(x)                y[n,c,i,j] = sum over the window / divisor
**   avg_pool2d_backward(g)       its adjoint: g[n,c,i,j] / divisor spread over the window. The two
**                                are each other's backward; both are linear (forward mode: the same
**                                op on the tangent).
**
** Windows along H (likewise W), for output row i:
**   regular   start = i sh - ph, end = min(start + kh, H + ph), then clipped to [0, H); the
**             divisor counts the clipped window, or the padded one with count_include_pad
**   adaptive  start = floor(i H / Ho), end = ceil((i + 1) H / Ho)
** Output size (regular): Ho = (H + 2 ph - dh (kh - 1) - 1) / sh + 1, rounded up with ceil_mode,
** less one if the last window would start in the right padding (as PyTorch).
**
** Arguments: max_pool2d shape[0..7] = kernel h, w, stride h, w, padding h, w, dilation h, w;
** mode = ceil_mode. avg_pool2d(_backward) shape[0..5] = kernel (or, adaptive, the output size)
** h, w, stride h, w, padding h, w; shape[6..7] = the input's H, W (the backward's output); mode
** bits 1 ceil_mode, 2 count_include_pad, 4 adaptive; s[0] the divisor override (0: none).
*/
#include "compose.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AVG_CEIL 1
#define AVG_COUNT_PAD 2
#define AVG_ADAPTIVE 4

/* Output size along one dimension of a regular window. */
static lg_status pool_out_size(const char *op, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d,
                               int ceil_mode, int64_t *out) {
  if (k < 1 || s < 1 || d < 1 || p < 0)
    return lg_error(LG_EVALUE, "%s: kernel, stride and dilation must be positive and padding non-negative",
                    op);
  if (p > k / 2)
    return lg_error(LG_EVALUE, "%s: padding %lld must be at most half the kernel size %lld", op, (long long)p,
                    (long long)k);
  int64_t span = in + 2 * p - d * (k - 1) - 1;
  if (span < 0)
    return lg_error(LG_ESHAPE, "%s: the kernel (%lld, dilation %lld) is larger than the padded input (%lld)",
                    op, (long long)k, (long long)d, (long long)(in + 2 * p));
  int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (o - 1) * s >= in + p)
    o--; /* the last window must start inside the input or left padding */
  *out = o;
  return LG_OK;
}

/* ---- max pooling ---- */

/* The window of output (i, j) clipped to the input, then a plain scan of it; NaN wins (as PyTorch)
** and the first of equal maxima gives the index. The common 2 x 2, stride 2 window without padding
** has its own loop. */
/* The common 2 x 2, stride 2 window without padding, one output row at a time, written with
** selects only so that the compiler vectorizes it: the larger of each pair, then of the pairs; a
** NaN wins (as PyTorch), and of equal maxima the first (row-major) gives the index. */
#define MAX_POOL2X2(name, T)                                                                                 \
  LG_WIDE static void name(const T *restrict r0, const T *restrict r1, T *restrict y, int64_t *restrict idx, \
                           int64_t Wo, int64_t base, int64_t W) {                                            \
    for (int64_t j = 0; j < Wo; j++) {                                                                       \
      T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];                                  \
      int tb = (b > a) | ((b != b) & (a == a)), td = (d > c) | ((d != d) & (c == c));                        \
      T m0 = tb ? b : a, m1 = td ? d : c;                                                                    \
      int64_t i0 = base + 2 * j + tb, i1 = base + W + 2 * j + td;                                            \
      int t1 = (m1 > m0) | ((m1 != m1) & (m0 == m0));                                                        \
      y[j] = t1 ? m1 : m0;                                                                                   \
      idx[j] = (t1 ? i1 : i0) + 1;                                                                           \
    }                                                                                                        \
  }
MAX_POOL2X2(max_pool2x2_f32_portable, float)
MAX_POOL2X2(max_pool2x2_f64, double)

/* The float32 2 x 2 window eight outputs at a time with AVX2: the scalar form above compiles to
** branches that the data mispredicts half the time (it was a seventh of a CNN's step). The same
** comparisons in the same order, so the results are the same bits; positions as int32 within the
** plane, widened to int64 for the stores (W below 2^29). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(LG_NO_CLONES)
#include <immintrin.h>
static int have_avx2(void) {
  static int known = -1;
  if (known < 0) known = __builtin_cpu_supports("avx2");
  return known;
}
/* the even and the odd elements of 16 floats at p, in order */
__attribute__((target("avx2"))) static inline void deinterleave(const float *p, __m256 *even, __m256 *odd) {
  __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  *even = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8));
  *odd = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8));
}
/* lanes where v beats m: v > m, or v is NaN and m is not */
__attribute__((target("avx2"))) static inline __m256 beats(__m256 v, __m256 m) {
  return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ),
                      _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(m, m, _CMP_ORD_Q)));
}
__attribute__((target("avx2"))) static int64_t max_pool2x2_f32_avx2(const float *restrict r0,
                                                                    const float *restrict r1,
                                                                    float *restrict y, int64_t *restrict idx,
                                                                    int64_t Wo, int64_t base, int64_t W) {
  const __m256i step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), w = _mm256_set1_epi32((int)W);
  const __m256i one = _mm256_set1_epi64x(base + 1);
  float t0[16], t1_[16], ty[8];
  int64_t ti[8];
  for (int64_t j = 0; j < Wo; j += 8) {
    /* the last, partial block of a row goes through buffers (a row of 7 outputs is common) */
    int64_t m = Wo - j < 8 ? Wo - j : 8;
    const float *p0 = r0 + 2 * j, *p1 = r1 + 2 * j;
    float *py = y + j;
    int64_t *pi = idx + j;
    if (m < 8) {
      memset(t0, 0, sizeof t0), memset(t1_, 0, sizeof t1_);
      memcpy(t0, p0, sizeof(float) * (size_t)(2 * m)), memcpy(t1_, p1, sizeof(float) * (size_t)(2 * m));
      p0 = t0, p1 = t1_, py = ty, pi = ti;
    }
    __m256 a, b, c, d;
    deinterleave(p0, &a, &b);
    deinterleave(p1, &c, &d);
    __m256 tb = beats(b, a), td = beats(d, c);
    __m256 m0 = _mm256_blendv_ps(a, b, tb), m1 = _mm256_blendv_ps(c, d, td);
    __m256 t1 = beats(m1, m0);
    _mm256_storeu_ps(py, _mm256_blendv_ps(m0, m1, t1));
    __m256i col = _mm256_add_epi32(_mm256_set1_epi32((int)(2 * j)), step);
    __m256i i0 = _mm256_sub_epi32(col, _mm256_castps_si256(tb)); /* a true mask is -1: +1 */
    __m256i i1 = _mm256_sub_epi32(_mm256_add_epi32(col, w), _mm256_castps_si256(td));
    __m256i at = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(i0), _mm256_castsi256_ps(i1), t1));
    _mm256_storeu_si256((__m256i *)pi,
                        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(at)), one));
    _mm256_storeu_si256((__m256i *)(pi + 4),
                        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(at, 1)), one));
    if (m < 8) memcpy(y + j, ty, sizeof(float) * (size_t)m), memcpy(idx + j, ti, sizeof(int64_t) * (size_t)m);
  }
  return Wo;
}
#endif

static void max_pool2x2_f32(const float *restrict r0, const float *restrict r1, float *restrict y,
                            int64_t *restrict idx, int64_t Wo, int64_t base, int64_t W) {
  int64_t j = 0;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(LG_NO_CLONES)
  if (have_avx2() && W < INT32_MAX / 4) j = max_pool2x2_f32_avx2(r0, r1, y, idx, Wo, base, W);
#endif
  max_pool2x2_f32_portable(r0 + 2 * j, r1 + 2 * j, y + j, idx + j, Wo - j, base + 2 * j, W);
}

/* The window of output (i, j) scanned in row-major order; NaN wins (as PyTorch) and the first of
** equal maxima gives the index. */
#define MAX_POOL(name, T, two)                                                                               \
  static void name(const T *x, T *y, int64_t *idx, int64_t planes, int64_t H, int64_t W, int64_t Ho,         \
                   int64_t Wo, const int64_t *k) {                                                           \
    int simple2 = k[0] == 2 && k[1] == 2 && k[2] == 2 && k[3] == 2 && k[4] == 0 && k[5] == 0 && k[6] == 1 && \
                  k[7] == 1 && 2 * Ho <= H && 2 * Wo <= W; /* whole windows */                               \
    for (int64_t pl = 0; pl < planes; pl++, x += H * W, y += Ho * Wo, idx += Ho * Wo) {                      \
      if (simple2) {                                                                                         \
        for (int64_t i = 0; i < Ho; i++)                                                                     \
          two(x + 2 * i * W, x + (2 * i + 1) * W, y + i * Wo, idx + i * Wo, Wo, 2 * i * W, W);               \
        continue;                                                                                            \
      }                                                                                                      \
      for (int64_t i = 0; i < Ho; i++)                                                                       \
        for (int64_t j = 0; j < Wo; j++) {                                                                   \
          T best = 0;                                                                                        \
          int64_t at = -1;                                                                                   \
          for (int64_t p = 0; p < k[0] && (at < 0 || best == best); p++) {                                   \
            int64_t h = i * k[2] - k[4] + p * k[6];                                                          \
            if (h < 0 || h >= H) continue;                                                                   \
            for (int64_t q = 0; q < k[1]; q++) {                                                             \
              int64_t w = j * k[3] - k[5] + q * k[7];                                                        \
              if (w < 0 || w >= W) continue;                                                                 \
              T v = x[h * W + w];                                                                            \
              if (at < 0 || v > best || v != v) {                                                            \
                best = v;                                                                                    \
                at = h * W + w;                                                                              \
                if (v != v) break;                                                                           \
              }                                                                                              \
            }                                                                                                \
          }                                                                                                  \
          y[i * Wo + j] = at < 0 ? (T)-INFINITY : best;                                                      \
          idx[i * Wo + j] = at + 1;                                                                          \
        }                                                                                                    \
    }                                                                                                        \
  }
MAX_POOL(max_pool_f32, float, max_pool2x2_f32)
MAX_POOL(max_pool_f64, double, max_pool2x2_f64)

/* planes [lo, hi) of a max pooling, for lg_parallel_for (each plane is independent) */
typedef struct {
  lg_dtype dt;
  const void *x;
  void *y;
  int64_t *idx, H, W, Ho, Wo;
  const int64_t *k;
} max_job;
static void max_planes(void *j_, int64_t lo, int64_t hi) {
  const max_job *j = j_;
  int64_t in = lo * j->H * j->W, on = lo * j->Ho * j->Wo;
  if (j->dt == LG_FLOAT32)
    max_pool_f32((const float *)j->x + in, (float *)j->y + on, j->idx + on, hi - lo, j->H, j->W, j->Ho, j->Wo,
                 j->k);
  else
    max_pool_f64((const double *)j->x + in, (double *)j->y + on, j->idx + on, hi - lo, j->H, j->W, j->Ho,
                 j->Wo, j->k);
}

static lg_status check4(const char *op, lg_tensor *x) {
  if (x->ndim != 4) return lg_error(LG_ESHAPE, "%s: expected 4-d input (N, C, H, W), got %s", op, SHAPE(x));
  if (!lg_dtype_is_float(x->dtype))
    return lg_error(LG_EDTYPE, "%s: needs a float tensor, got %s", op, lg_dtype_name(x->dtype));
  return LG_OK;
}

lg_status lg_max_pool2d_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *xc = NULL;
  LG_TRY(check4("max_pool2d", x));
  const int64_t *k = a->shape;
  int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], Ho, Wo;
  if (a->nshape != 8) return lg_error(LG_EVALUE, "max_pool2d: bad arguments");
  LG_TRY(pool_out_size("max_pool2d", H, k[0], k[2], k[4], k[6], a->mode, &Ho));
  LG_TRY(pool_out_size("max_pool2d", W, k[1], k[3], k[5], k[7], a->mode, &Wo));
  int64_t oshape[4] = {N, C, Ho, Wo};
  LG_TRY(lg_contiguous(x, &xc));
  lg_status st = lg_tensor_empty(oshape, 4, x->dtype, &out[0]);
  if (st == LG_OK && (st = lg_tensor_empty(oshape, 4, LG_INT64, &out[1])) != LG_OK) lg_tensor_release(out[0]);
  if (st == LG_OK) {
    max_job j = {x->dtype, lg_data(xc), lg_data(out[0]), lg_data(out[1]), H, W, Ho, Wo, k};
    lg_parallel_for_cost(N * C, H * W, max_planes, &j);
  }
  lg_tensor_release(xc);
  return st;
}

/* g (N, C, Ho, Wo) scattered to idx in a (N, C, H, W) of zeros, with recorded ops */
lg_status lg_max_pool2d_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  const lg_edge *e = &n->edges[0];
  lg_tensor *idx = n->saved_aux[0];
  int64_t N = e->shape[0], C = e->shape[1], P = g->shape[2] * g->shape[3];
  int64_t flat[3] = {N, C, P};
  lg_args a = {.in = {sc_reshape(&s, g, flat, 3), sc_reshape(&s, idx, flat, 3)},
               .nin = 2,
               .dim = 2,
               .nshape = 3,
               .shape = {N, C, e->shape[2] * e->shape[3]}};
  lg_tensor *r = a.in[0] && a.in[1] ? sc_op(&s, LG_OP_SCATTER_ADD, a) : NULL;
  return sc_done(&s, sc_reshape(&s, r, e->shape, 4), &gin[0]);
}
/* forward mode: the tangent gathered at the maxima (found again: a rule sees the first output only) */
lg_status lg_max_pool2d_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout) {
  lg_tensor *o[2] = {NULL, NULL};
  LG_TRY(lg_max_pool2d_forward(op, a, o));
  sc s = {0};
  sc_keep(&s, LG_OK, o[0]);
  lg_tensor *idx = sc_keep(&s, LG_OK, o[1]), *t = tin[0];
  int64_t N = t->shape[0], C = t->shape[1];
  int64_t tflat[3] = {N, C, t->shape[2] * t->shape[3]}, iflat[3] = {N, C, out->shape[2] * out->shape[3]};
  lg_args g = {.in = {sc_reshape(&s, t, tflat, 3), sc_reshape(&s, idx, iflat, 3)}, .nin = 2, .dim = 2};
  lg_tensor *r = g.in[0] && g.in[1] ? sc_op(&s, LG_OP_GATHER, g) : NULL;
  return sc_done(&s, sc_reshape(&s, r, out->shape, 4), tout);
}

/* ---- average pooling ---- */

typedef struct {
  int64_t *hs, *he, *ws, *we; /* clipped window bounds per output row / column */
  int64_t *hp, *wp;           /* padded window extents (count_include_pad) */
} windows;

static void windows_free(windows *w) {
  free(w->hs);
  free(w->he);
  free(w->ws);
  free(w->we);
  free(w->hp);
  free(w->wp);
}

/* One dimension's windows: `in` input size, `on` output size. */
static void window_bounds(int adaptive, int64_t in, int64_t on, int64_t k, int64_t s, int64_t p, int64_t *st,
                          int64_t *en, int64_t *padded) {
  for (int64_t i = 0; i < on; i++) {
    if (adaptive) {
      st[i] = (i * in) / on;
      en[i] = ((i + 1) * in + on - 1) / on;
      padded[i] = en[i] - st[i];
    } else {
      int64_t a = i * s - p, b = a + k < in + p ? a + k : in + p;
      padded[i] = b - a;
      st[i] = a < 0 ? 0 : a;
      en[i] = b < in ? b : in;
    }
  }
}

/* The windows of an avg pool over (H, W) input with (Ho, Wo) output, from its arguments. */
static lg_status avg_windows(const char *op, const lg_args *a, int64_t H, int64_t W, int64_t *Ho, int64_t *Wo,
                             windows *w) {
  const int64_t *k = a->shape;
  int adaptive = (a->mode & AVG_ADAPTIVE) != 0;
  if (a->nshape != 8) return lg_error(LG_EVALUE, "%s: bad arguments", op);
  if (adaptive) {
    *Ho = k[0], *Wo = k[1];
    if (*Ho < 1 || *Wo < 1)
      return lg_error(LG_EVALUE, "%s: the output size must be positive, got {%lld,%lld}", op, (long long)*Ho,
                      (long long)*Wo);
  } else {
    LG_TRY(pool_out_size(op, H, k[0], k[2], k[4], 1, a->mode & AVG_CEIL, Ho));
    LG_TRY(pool_out_size(op, W, k[1], k[3], k[5], 1, a->mode & AVG_CEIL, Wo));
  }
  w->hs = malloc(sizeof(int64_t) * (size_t)*Ho), w->he = malloc(sizeof(int64_t) * (size_t)*Ho);
  w->hp = malloc(sizeof(int64_t) * (size_t)*Ho);
  w->ws = malloc(sizeof(int64_t) * (size_t)*Wo), w->we = malloc(sizeof(int64_t) * (size_t)*Wo);
  w->wp = malloc(sizeof(int64_t) * (size_t)*Wo);
  if (!w->hs || !w->he || !w->hp || !w->ws || !w->we || !w->wp) {
    windows_free(w);
    return lg_error(LG_ENOMEM, "%s: out of memory", op);
  }
  window_bounds(adaptive, H, *Ho, k[0], k[2], k[4], w->hs, w->he, w->hp);
  window_bounds(adaptive, W, *Wo, k[1], k[3], k[5], w->ws, w->we, w->wp);
  return LG_OK;
}

static double avg_divisor(const lg_args *a, const windows *w, int64_t i, int64_t j) {
  if (a->s[0] > 0) return a->s[0];
  if ((a->mode & AVG_COUNT_PAD) && !(a->mode & AVG_ADAPTIVE)) return (double)(w->hp[i] * w->wp[j]);
  return (double)((w->he[i] - w->hs[i]) * (w->we[j] - w->ws[j]));
}

#define AVG_POOL(name, T)                                                                                    \
  static void name(const T *x, T *y, int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo,           \
                   const windows *w, const lg_args *a, int backward) {                                       \
    for (int64_t pl = 0; pl < planes;                                                                        \
         pl++, x += backward ? Ho * Wo : H * W, y += backward ? H * W : Ho * Wo)                             \
      for (int64_t i = 0; i < Ho; i++)                                                                       \
        for (int64_t j = 0; j < Wo; j++) {                                                                   \
          double d = avg_divisor(a, w, i, j);                                                                \
          if (backward) {                                                                                    \
            T v = (T)(x[i * Wo + j] / d);                                                                    \
            for (int64_t h = w->hs[i]; h < w->he[i]; h++)                                                    \
              for (int64_t c = w->ws[j]; c < w->we[j]; c++) y[h * W + c] += v;                               \
          } else {                                                                                           \
            T sum = 0;                                                                                       \
            for (int64_t h = w->hs[i]; h < w->he[i]; h++)                                                    \
              for (int64_t c = w->ws[j]; c < w->we[j]; c++) sum += x[h * W + c];                             \
            y[i * Wo + j] = (T)(sum / d);                                                                    \
          }                                                                                                  \
        }                                                                                                    \
  }
AVG_POOL(avg_pool_f32, float)
AVG_POOL(avg_pool_f64, double)

/* forward (x -> y) or backward (g -> dx) */
static lg_status avg_pool(const char *op, const lg_args *a, int backward, lg_tensor **out) {
  lg_tensor *x = a->in[0], *xc = NULL;
  LG_TRY(check4(op, x));
  int64_t N = x->shape[0], C = x->shape[1], H = backward ? a->shape[6] : x->shape[2],
          W = backward ? a->shape[7] : x->shape[3], Ho, Wo;
  windows w = {0};
  LG_TRY(avg_windows(op, a, H, W, &Ho, &Wo, &w));
  if (backward && (x->shape[2] != Ho || x->shape[3] != Wo)) {
    windows_free(&w);
    return lg_error(LG_ESHAPE, "%s: gradient %s does not fit the output {%lld,%lld}", op, SHAPE(x),
                    (long long)Ho, (long long)Wo);
  }
  int64_t oshape[4] = {N, C, backward ? H : Ho, backward ? W : Wo};
  lg_status st = lg_contiguous(x, &xc);
  if (st == LG_OK)
    st = backward ? lg_tensor_zeros(oshape, 4, x->dtype, out) : lg_tensor_empty(oshape, 4, x->dtype, out);
  if (st == LG_OK) {
    if (x->dtype == LG_FLOAT32)
      avg_pool_f32(lg_data(xc), lg_data(*out), N * C, H, W, Ho, Wo, &w, a, backward);
    else
      avg_pool_f64(lg_data(xc), lg_data(*out), N * C, H, W, Ho, Wo, &w, a, backward);
  }
  windows_free(&w);
  lg_tensor_release(xc);
  return st;
}

lg_status lg_avg_pool2d_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return avg_pool("avg_pool2d", a, 0, out);
}
lg_status lg_avg_pool2d_backward_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return avg_pool("avg_pool2d_backward", a, 1, out);
}

/* the other of the pair on t, with a's arguments (and the input's H, W for the backward op) */
static lg_tensor *sc_avg(sc *s, lg_opcode code, const lg_args *geom, lg_tensor *t, int64_t H, int64_t W) {
  lg_args b = *geom;
  b.in[0] = t, b.in[1] = b.in[2] = NULL, b.nin = 1;
  b.shape[6] = H, b.shape[7] = W;
  return sc_op(s, code, b);
}
lg_status lg_avg_pool2d_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  const lg_edge *e = &n->edges[0];
  return sc_done(&s, sc_avg(&s, LG_OP_AVG_POOL2D_BACKWARD, &n->args, g, e->shape[2], e->shape[3]), &gin[0]);
}
lg_status lg_avg_pool2d_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout) {
  sc s = {0};
  return sc_done(&s, sc_avg(&s, LG_OP_AVG_POOL2D, a, tin[0], 0, 0), tout);
}
lg_status lg_avg_pool2d_backward_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  return sc_done(&s, sc_avg(&s, LG_OP_AVG_POOL2D, &n->args, g, 0, 0), &gin[0]);
}
lg_status lg_avg_pool2d_backward_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                     lg_tensor **tout) {
  sc s = {0};
  return sc_done(&s, sc_avg(&s, LG_OP_AVG_POOL2D_BACKWARD, a, tin[0], a->shape[6], a->shape[7]), tout);
}
