/*
** ops.c: the op table. Every operation is one row of lg_ops[] (at the end of this file): its
** name, arity, outputs, forward function with per-dtype kernels, reverse-mode rule (the
** vector-Jacobian product: output gradient g -> input gradients) and forward-mode rule (the
** Jacobian-vector product: input tangents -> output tangent). Each section holds one family's
** kernels with their rules beside them:
**
**   1. unary elementwise     y = f(x)               rules from f'(x)
**   2. binary elementwise    z = f(x, y)            numpy broadcasting
**   3. where, clamp
**   4. reductions            over everything, or one dimension with keepdim; softmax
**   5. matmul                (the forward and its BLAS driver live in matmul.c)
**   6. indexing              index_select, gather, cat, and their adjoints index_add, scatter_add
**   7. views and copies      reshape, expand, permute, narrow, select, clone, cast
**
** Rules are written with ordinary ops, so under create_graph the backward pass is recorded too
** and can be differentiated again. The tape sums every input gradient back to the input's shape
** (undoing broadcasting), so rules may return gradients of the output's shape.
**
** Kernels are plain loops over one row of elements with element strides (the strided iterator
** in tensor.c hands them rows; contiguous operands arrive as one long row with stride 1).
** dtype rules: binary ops compute in the promoted dtype (int64 < float32 < float64); an op with
** no int64 kernel computes int64 inputs in the default float dtype.
*/
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef void (*unary_k)(int64_t n, char *o, int64_t so, const char *x, int64_t sx);
typedef void (*binary_k)(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b,
                         int64_t sb);
/* reduction over rows: x is rows x R contiguous; out (and idx) hold one value per row */
typedef void (*reduce_k)(const char *x, int64_t rows, int64_t R, char *out, int64_t *idx, const lg_args *a);

#define K(f) ((lg_kernel)(f))

#include "compose.h"

/* The loop shapes of binary kernels (section 2), used by the fused backward kernels of section
** 1 too. */
#define BINARY(name, T, expr)                                                                                \
  static void name(int64_t n, char *o_, int64_t so, const char *a_, int64_t sa, const char *b_,              \
                   int64_t sb) {                                                                             \
    T *restrict o = (T *)o_;                                                                                 \
    const T *restrict ap = (const T *)a_, *restrict bp = (const T *)b_;                                      \
    if (so == 1 && sa == 1 && sb == 1)                                                                       \
      for (int64_t i = 0; i < n; i++) {                                                                      \
        T x = ap[i], y = bp[i];                                                                              \
        o[i] = (expr);                                                                                       \
      }                                                                                                      \
    else if (so == 1 && sa == 1 && sb == 0) {                                                                \
      T y = bp[0];                                                                                           \
      for (int64_t i = 0; i < n; i++) {                                                                      \
        T x = ap[i];                                                                                         \
        o[i] = (expr);                                                                                       \
      }                                                                                                      \
    } else                                                                                                   \
      for (int64_t i = 0; i < n; i++) {                                                                      \
        T x = ap[i * sa], y = bp[i * sb];                                                                    \
        o[i * so] = (expr);                                                                                  \
      }                                                                                                      \
  }

static void binary_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  ((binary_k)ctx)(n, p[0], s[0], p[1], s[1], p[2], s[2]);
}

/* ==== 1. unary elementwise ==== */

#define UNARY_W(name, T, expr) LG_WIDE UNARY(name, T, expr)

#define UNARY(name, T, expr)                                                                                 \
  static void name(int64_t n, char *o_, int64_t so, const char *x_, int64_t sx) {                            \
    T *restrict o = (T *)o_;                                                                                 \
    const T *restrict xp = (const T *)x_;                                                                    \
    if (so == 1 && sx == 1)                                                                                  \
      for (int64_t i = 0; i < n; i++) {                                                                      \
        T x = xp[i];                                                                                         \
        o[i] = (expr);                                                                                       \
      }                                                                                                      \
    else                                                                                                     \
      for (int64_t i = 0; i < n; i++) {                                                                      \
        T x = xp[i * sx];                                                                                    \
        o[i * so] = (expr);                                                                                  \
      }                                                                                                      \
  }

/* integer negation and abs wrap around at INT64_MIN instead of overflowing */
static inline int64_t neg_i(int64_t x) { return (int64_t)(0 - (uint64_t)x); }
/* float32 exp and tanh as straight-line code the compiler vectorizes (glibc's expf and tanhf
** are scalar calls, and they dominated small models). Cephes' polynomials, about 1 ulp; NaN stays
** NaN, exp overflows to inf and underflows to 0 as IEEE says. float64 keeps libm. */
static inline float exp_fast(float x) {
  float c = x > 88.72283935546875f ? 88.72283935546875f : x;
  c = c < -103.972084f ? -103.972084f : c;
  c = x != x ? 0.0f : c; /* converting NaN to an integer would be undefined */
  float t = c * 1.44269504088896341f + 0.5f;
  int32_t k = (int32_t)t;
  k -= t < (float)k; /* floor without floorf, which is a library call before SSE4.1 */
  float n = (float)k;
  float r = c - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  /* 2^k as two normal factors, so results down in the denormal range still come out right */
  int32_t k1 = k / 2, k2 = k - k1;
  union {
    uint32_t u;
    float f;
  } s1 = {(uint32_t)(k1 + 127) << 23}, s2 = {(uint32_t)(k2 + 127) << 23};
  float y = p * s1.f * s2.f;
  y = x > 88.72283935546875f ? INFINITY : y;
  y = x < -103.972084f ? 0.0f : y;
  return x != x ? x : y;
}
/* The same exp and sigmoid eight floats at a time with AVX2 and FMA, written with intrinsics
** (GCC does not vectorize exp_fast's selects for AVX2 by itself); chosen at run time when the CPU
** has them, for every element of every row (run8), so that a value's result never depends on
** where a thread's share of a row begins or on the layout. Results may differ from the portable
** path in the last bit (FMA): that is a difference between machines, not between runs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(LG_NO_CLONES)
#include <immintrin.h>
#define LG_HAVE_AVX2_PATH 1

static int have_avx2(void) {
  static int known = -1;
  if (known < 0) known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return known;
}

const char *lg_wide_kernel(void) {
  return have_avx2() ? "AVX2 (x86-64-v3 clones and AVX2 kernels)" : "portable (x86-64 baseline)";
}

__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.72283935546875f), lo = _mm256_set1_ps(-103.972084f);
  __m256 c = _mm256_min_ps(_mm256_max_ps(x, lo), hi); /* NaN becomes lo here; fixed below */
  __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(c, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), c);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i k = _mm256_cvtps_epi32(n), k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
  const __m256i bias = _mm256_set1_epi32(127);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

__attribute__((target("avx2,fma"))) static int64_t exp_avx2(int64_t n, float *o, const float *x) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, exp8(_mm256_loadu_ps(x + i)));
  return i;
}

/* Runs an eight-wide kernel k over n floats at any strides (in elements): whole blocks straight
** from memory when both sides are contiguous, the rest (a tail, or strided elements) through
** buffers of eight, so every element goes through the same arithmetic. */
__attribute__((target("avx2,fma"))) static void run8(int64_t (*k)(int64_t, float *, const float *), int64_t n,
                                                     char *o_, int64_t so, const char *x_, int64_t sx) {
  float *o = (float *)o_, bo[8];
  const float *x = (const float *)x_;
  float bx[8];
  int64_t i = so == 1 && sx == 1 ? k(n, o, x) : 0;
  for (; i < n; i += 8) {
    int m = n - i < 8 ? (int)(n - i) : 8;
    for (int j = 0; j < 8; j++) bx[j] = j < m ? x[(i + j) * sx] : 0.0f;
    k(8, bo, bx);
    for (int j = 0; j < m; j++) o[(i + j) * so] = bo[j];
  }
}

/* sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below, with e = exp(-|x|) */
__attribute__((target("avx2,fma"))) static int64_t sigmoid_avx2(int64_t n, float *o, const float *x) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 e = exp8(_mm256_or_ps(v, sign)); /* exp(-|v|) */
    __m256 d = _mm256_add_ps(one, e);
    __m256 y = _mm256_blendv_ps(_mm256_div_ps(e, d), _mm256_div_ps(one, d),
                                _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ));
    _mm256_storeu_ps(o + i, _mm256_blendv_ps(y, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }
  return i;
}
#else
const char *lg_wide_kernel(void) { return "portable (no AVX2 path in this build)"; }
#endif

/* tanh as Eigen's rational approximation on [-7.9, 7.9] (odd degree 13 over even degree 6, one
** division; a few ulp), exactly +-1 beyond, x itself near 0 where x is tanh(x) to float precision. */
static inline float tanh_fast(float x) {
  float c = x > 7.90531110763549805f ? 7.90531110763549805f
                                     : (x < -7.90531110763549805f ? -7.90531110763549805f : x);
  float z = c * c;
  float p = -2.76076847742355e-16f;
  p = p * z + 2.00018790482477e-13f;
  p = p * z + -8.60467152213735e-11f;
  p = p * z + 5.12229709037114e-08f;
  p = p * z + 1.48572235717979e-05f;
  p = p * z + 6.37261928875436e-04f;
  p = p * z + 4.89352455891786e-03f;
  p = p * c;
  float q = 1.19825839466702e-06f;
  q = q * z + 1.18534705686654e-04f;
  q = q * z + 2.26843463243900e-03f;
  q = q * z + 4.89352518554385e-03f;
  float y = p / q;
  y = fabsf(x) < 0.0004f ? x : y;
  return x != x ? x : y;
}
static inline float sigmoid_f(float x) {
  float e = exp_fast(-fabsf(x));
  float y = x >= 0 ? 1 / (1 + e) : e / (1 + e);
  return x != x ? x : y;
}
static inline double sigmoid_d(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

UNARY(neg_f32, float, -x)
UNARY(neg_f64, double, -x)
UNARY(neg_i64, int64_t, neg_i(x))
UNARY(exp_scalar_f32, float, exp_fast(x))
static void exp_f32(int64_t n, char *o, int64_t so, const char *x, int64_t sx) {
#ifdef LG_HAVE_AVX2_PATH
  if (have_avx2()) {
    run8(exp_avx2, n, o, so, x, sx);
    return;
  }
#endif
  exp_scalar_f32(n, o, so, x, sx);
}
void lg_exp_f32(int64_t n, float *o, const float *x) { exp_f32(n, (char *)o, 1, (const char *)x, 1); }
UNARY(exp_f64, double, exp(x))
UNARY(log_f32, float, logf(x))
UNARY(log_f64, double, log(x))
UNARY(sqrt_f32, float, sqrtf(x))
UNARY(sqrt_f64, double, sqrt(x))
UNARY(rsqrt_f32, float, 1 / sqrtf(x))
UNARY(rsqrt_f64, double, 1 / sqrt(x))
UNARY(abs_f32, float, fabsf(x))
UNARY(abs_f64, double, fabs(x))
UNARY(abs_i64, int64_t, x < 0 ? neg_i(x) : x)
UNARY(sin_f32, float, sinf(x))
UNARY(sin_f64, double, sin(x))
UNARY(cos_f32, float, cosf(x))
UNARY(cos_f64, double, cos(x))
/* tanh's polynomial may fuse into FMAs in the wide clone (an approximation either way, a few ulp) */
/* clang-format off */
__attribute__((optimize("fp-contract=fast"))) UNARY_W(tanh_f32, float, tanh_fast(x))
UNARY(tanh_f64, double, tanh(x))
UNARY(sigmoid_scalar_f32, float, sigmoid_f(x))
static void sigmoid_f32(int64_t n, char *o, int64_t so, const char *x, int64_t sx) {
#ifdef LG_HAVE_AVX2_PATH
  if (have_avx2()) {
    run8(sigmoid_avx2, n, o, so, x, sx);
    return;
  }
#endif
  sigmoid_scalar_f32(n, o, so, x, sx);
}
/* clang-format on */
UNARY(sigmoid_f64, double, sigmoid_d(x))
UNARY(relu_f32, float, x < 0 ? 0 : x) /* NaN stays NaN */
UNARY(relu_f64, double, x < 0 ? 0 : x)
UNARY(relu_i64, int64_t, x < 0 ? 0 : x)
UNARY(sign_f32, float, isnan(x) ? x : (float)((x > 0) - (x < 0)))
UNARY(sign_f64, double, isnan(x) ? x : (double)((x > 0) - (x < 0)))
UNARY(sign_i64, int64_t, (x > 0) - (x < 0))
UNARY(floor_f32, float, floorf(x))
UNARY(floor_f64, double, floor(x))
UNARY(ceil_f32, float, ceilf(x))
UNARY(ceil_f64, double, ceil(x))
UNARY(round_f32, float, nearbyintf(x)) /* half to even, as PyTorch */
UNARY(round_f64, double, nearbyint(x))
UNARY(copy_i64, int64_t, x) /* floor, ceil, round of integers */
UNARY(log1p_f32, float, log1pf(x))
UNARY(log1p_f64, double, log1p(x))
UNARY(expm1_f32, float, expm1f(x))
UNARY(expm1_f64, double, expm1(x))
UNARY(reciprocal_f32, float, 1 / x)
UNARY(reciprocal_f64, double, 1 / x)
UNARY(square_f32, float, x *x)
UNARY(square_f64, double, x *x)
UNARY(square_i64, int64_t, (int64_t)((uint64_t)x *(uint64_t)x))
UNARY(erf_f32, float, erff(x))
UNARY(erf_f64, double, erf(x))
UNARY(tan_f32, float, tanf(x))
UNARY(tan_f64, double, tan(x))
UNARY(atan_f32, float, atanf(x))
UNARY(atan_f64, double, atan(x))
UNARY(sinh_f32, float, sinhf(x))
UNARY(sinh_f64, double, sinh(x))
UNARY(cosh_f32, float, coshf(x))
UNARY(cosh_f64, double, cosh(x))
UNARY(log2_f32, float, log2f(x))
UNARY(log2_f64, double, log2(x))
UNARY(log10_f32, float, log10f(x))
UNARY(log10_f64, double, log10(x))
UNARY(trunc_f32, float, truncf(x))
UNARY(trunc_f64, double, trunc(x))

static void unary_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  ((unary_k)ctx)(n, p[0], s[0], p[1], s[1]);
}

/* Activations with parameters read args: gelu (mode 1 = tanh approximation), leaky_relu
** (s[0] = negative slope), elu (s[0] = alpha), softplus (s[0] = beta, s[1] = threshold), silu. */
typedef void (*unary_p_k)(int64_t n, char *o, int64_t so, const char *x, int64_t sx, const lg_args *a);

#define UNARY_P(name, T, expr)                                                                               \
  static void name(int64_t n, char *o_, int64_t so, const char *x_, int64_t sx, const lg_args *a) {          \
    T *restrict o = (T *)o_;                                                                                 \
    const T *restrict xp = (const T *)x_;                                                                    \
    const T p0 = (T)a->s[0], p1 = (T)a->s[1];                                                                \
    const int mode = a->mode;                                                                                \
    (void)p0, (void)p1, (void)mode;                                                                          \
    for (int64_t i = 0; i < n; i++) {                                                                        \
      T x = xp[i * sx];                                                                                      \
      o[i * so] = (expr);                                                                                    \
    }                                                                                                        \
  }

#define SQRT_2_OVER_PI 0.7978845608028654
#define GELU_C 0.044715
/* gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + c x^3))) */
/* float32's tanh form through tanh_fast (a few ulp) in a loop the wide clone vectorizes, as tanh_f32:
** with libm's tanhf a GPT's MLP activation cost more than its GEMMs (bench W6, --breakdown). */
__attribute__((optimize("fp-contract=fast")))
UNARY_W(gelu_tanh_f32, float,
        0.5f * x * (1 + tanh_fast((float)SQRT_2_OVER_PI * (x + (float)GELU_C * x * x * x))))
    UNARY(gelu_erf_f32, float,
          0.5f * x * (1 + erff(x * (float)M_SQRT1_2))) static void gelu_f32(int64_t n, char *o, int64_t so,
                                                                            const char *x, int64_t sx,
                                                                            const lg_args *a) {
  if (a->mode)
    gelu_tanh_f32(n, o, so, x, sx);
  else
    gelu_erf_f32(n, o, so, x, sx);
}
UNARY_P(gelu_f64, double,
        mode ? 0.5 * x *(1 + tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)))
             : 0.5 * x * (1 + erf(x * M_SQRT1_2)))
UNARY_P(leaky_relu_f32, float, x > 0 ? x : x * p0)
UNARY_P(leaky_relu_f64, double, x > 0 ? x : x * p0)
UNARY_P(elu_f32, float, x > 0 ? x : p0 * expm1f(x))
UNARY_P(elu_f64, double, x > 0 ? x : p0 * expm1(x))
/* softplus(x) = log(1 + exp(beta x)) / beta, and x itself once beta x > threshold */
UNARY_P(softplus_f32, float, x *p0 > p1 ? x : log1pf(expf(x * p0)) / p0)
UNARY_P(softplus_f64, double, x *p0 > p1 ? x : log1p(exp(x * p0)) / p0)
UNARY_P(silu_f32, float, x *sigmoid_f(x))
UNARY_P(silu_f64, double, x *sigmoid_d(x))

typedef struct {
  unary_p_k k;
  const lg_args *a;
} unary_p_ctx;

static void unary_p_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const unary_p_ctx *c = ctx;
  c->k(n, p[0], s[0], p[1], s[1], c->a);
}

/* Casts x to dt if it differs; *tmp receives the copy to release. */
static lg_status as_dtype(lg_tensor **x, lg_dtype dt, lg_tensor **tmp) {
  *tmp = NULL;
  if ((*x)->dtype == dt) return LG_OK;
  LG_TRY(lg_copy_as(*x, dt, tmp));
  *x = *tmp;
  return LG_OK;
}

/* The dtype an op computes in for input dtype dt. */
static lg_dtype compute_dtype(const lg_op *op, lg_dtype dt) {
  return op->kernel[dt] ? dt : lg_default_dtype();
}

static lg_status unary_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *tmp;
  LG_TRY(as_dtype(&x, compute_dtype(op, x->dtype), &tmp));
  lg_status st = lg_new(x->shape, x->ndim, x->dtype, out);
  if (st == LG_OK) {
    lg_iter it;
    lg_iter_init(&it, x->shape, x->ndim);
    lg_iter_add(&it, *out, NULL);
    lg_iter_add(&it, x, NULL);
    lg_iter_run(&it, unary_row, (void *)op->kernel[x->dtype]);
  }
  lg_tensor_release(tmp);
  return st;
}

static lg_status unary_p_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  if (op == &lg_ops[LG_OP_SOFTPLUS] && !(a->s[0] > 0))
    return lg_error(LG_EVALUE, "softplus: beta must be positive, got %g", a->s[0]);
  lg_tensor *x = a->in[0], *tmp;
  LG_TRY(as_dtype(&x, compute_dtype(op, x->dtype), &tmp));
  lg_status st = lg_new(x->shape, x->ndim, x->dtype, out);
  if (st == LG_OK) {
    lg_iter it;
    lg_iter_init(&it, x->shape, x->ndim);
    lg_iter_add(&it, *out, NULL);
    lg_iter_add(&it, x, NULL);
    unary_p_ctx c = {(unary_p_k)op->kernel[x->dtype], a};
    lg_iter_run(&it, unary_p_row, &c);
  }
  lg_tensor_release(tmp);
  return st;
}

/* ---- rules of unary ops: f'(x) from x (saved input) or y (saved output), then
**      backward  gin = g * f'(x)        forward  tout = tin * f'(x) ---- */

typedef lg_tensor *(*deriv_fn)(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a);

static lg_tensor *d_exp(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { return y; }
static lg_tensor *d_log(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_RECIPROCAL, x);
}
static lg_tensor *d_sqrt(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_sb(s, LG_OP_DIV, 0.5, y);
}
static lg_tensor *d_rsqrt(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* -y^3 / 2 */
  return sc_bs(s, LG_OP_MUL, sc_bs(s, LG_OP_POW, y, 3), -0.5);
}
static lg_tensor *d_abs(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_SIGN, x);
}
static lg_tensor *d_sin(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_COS, x);
}
static lg_tensor *d_cos(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_NEG, sc_un(s, LG_OP_SIN, x));
}
static lg_tensor *d_tanh(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 - y^2 */
  return sc_sb(s, LG_OP_SUB, 1, sc_un(s, LG_OP_SQUARE, y));
}
static lg_tensor *d_sigmoid(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* y (1 - y) */
  return sc_bin(s, LG_OP_MUL, y, sc_sb(s, LG_OP_SUB, 1, y));
}
static lg_tensor *d_relu(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_bs(s, LG_OP_GT, x, 0);
}
static lg_tensor *d_log1p(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_RECIPROCAL, sc_bs(s, LG_OP_ADD, x, 1));
}
static lg_tensor *d_expm1(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_bs(s, LG_OP_ADD, y, 1);
}
static lg_tensor *d_reciprocal(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* -y^2 */
  return sc_un(s, LG_OP_NEG, sc_un(s, LG_OP_SQUARE, y));
}
static lg_tensor *d_square(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_bs(s, LG_OP_MUL, x, 2);
}
static lg_tensor *d_erf(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 2/sqrt(pi) exp(-x^2) */
  return sc_bs(s, LG_OP_MUL, sc_un(s, LG_OP_EXP, sc_un(s, LG_OP_NEG, sc_un(s, LG_OP_SQUARE, x))), M_2_SQRTPI);
}
static lg_tensor *d_tan(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 + y^2 */
  return sc_bs(s, LG_OP_ADD, sc_un(s, LG_OP_SQUARE, y), 1);
}
static lg_tensor *d_atan(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 / (1 + x^2) */
  return sc_un(s, LG_OP_RECIPROCAL, sc_bs(s, LG_OP_ADD, sc_un(s, LG_OP_SQUARE, x), 1));
}
static lg_tensor *d_sinh(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_COSH, x);
}
static lg_tensor *d_cosh(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  return sc_un(s, LG_OP_SINH, x);
}
static lg_tensor *d_log2(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 / (x ln 2) */
  return sc_un(s, LG_OP_RECIPROCAL, sc_bs(s, LG_OP_MUL, x, M_LN2));
}
static lg_tensor *d_log10(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 / (x ln 10) */
  return sc_un(s, LG_OP_RECIPROCAL, sc_bs(s, LG_OP_MUL, x, M_LN10));
}
static lg_tensor *d_gelu(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) {
  if (a->mode) { /* 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3)) */
    lg_tensor *x2 = sc_un(s, LG_OP_SQUARE, x);
    lg_tensor *u =
        sc_bs(s, LG_OP_MUL, sc_bin(s, LG_OP_ADD, x, sc_bs(s, LG_OP_MUL, sc_bin(s, LG_OP_MUL, x2, x), GELU_C)),
              SQRT_2_OVER_PI);
    lg_tensor *t = sc_un(s, LG_OP_TANH, u);
    lg_tensor *left = sc_bs(s, LG_OP_MUL, sc_bs(s, LG_OP_ADD, t, 1), 0.5);
    lg_tensor *du =
        sc_bs(s, LG_OP_MUL, sc_bs(s, LG_OP_ADD, sc_bs(s, LG_OP_MUL, x2, 3 * GELU_C), 1), SQRT_2_OVER_PI);
    lg_tensor *right =
        sc_bin(s, LG_OP_MUL, sc_bs(s, LG_OP_MUL, x, 0.5), sc_bin(s, LG_OP_MUL, d_tanh(s, u, t, a), du));
    return sc_bin(s, LG_OP_ADD, left, right);
  }
  /* Phi(x) + x phi(x) */
  lg_tensor *Phi = sc_bs(s, LG_OP_MUL,
                         sc_bs(s, LG_OP_ADD, sc_un(s, LG_OP_ERF, sc_bs(s, LG_OP_MUL, x, M_SQRT1_2)), 1), 0.5);
  lg_tensor *phi =
      sc_bs(s, LG_OP_MUL, sc_un(s, LG_OP_EXP, sc_bs(s, LG_OP_MUL, sc_un(s, LG_OP_SQUARE, x), -0.5)),
            0.3989422804014327 /* 1/sqrt(2 pi) */);
  return sc_bin(s, LG_OP_ADD, Phi, sc_bin(s, LG_OP_MUL, x, phi));
}
static lg_tensor *d_leaky_relu(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 or slope */
  lg_tensor *one = x ? sc_scalar(s, 1, x->dtype) : NULL, *slope = x ? sc_scalar(s, a->s[0], x->dtype) : NULL;
  return sc_where(s, sc_bs(s, LG_OP_GT, x, 0), one, slope);
}
static lg_tensor *d_elu(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* 1 or alpha exp(x) */
  lg_tensor *one = x ? sc_scalar(s, 1, x->dtype) : NULL;
  return sc_where(s, sc_bs(s, LG_OP_GT, x, 0), one, sc_bs(s, LG_OP_MUL, sc_un(s, LG_OP_EXP, x), a->s[0]));
}
static lg_tensor *d_softplus(sc *s, lg_tensor *x, lg_tensor *y,
                             const lg_args *a) { /* sigmoid(beta x), 1 above threshold */
  lg_tensor *bx = sc_bs(s, LG_OP_MUL, x, a->s[0]), *one = x ? sc_scalar(s, 1, x->dtype) : NULL;
  return sc_where(s, sc_bs(s, LG_OP_GT, bx, a->s[1]), one, sc_un(s, LG_OP_SIGMOID, bx));
}
static lg_tensor *d_silu(sc *s, lg_tensor *x, lg_tensor *y, const lg_args *a) { /* s (1 + x (1 - s)) */
  lg_tensor *sg = sc_un(s, LG_OP_SIGMOID, x);
  return sc_bin(s, LG_OP_MUL, sg,
                sc_bs(s, LG_OP_ADD, sc_bin(s, LG_OP_MUL, x, sc_sb(s, LG_OP_SUB, 1, sg)), 1));
}

/* The hot activations also have a fused backward: gin = g * f' in one pass (the row's fused_bw),
** used when the backward pass is not itself recorded (no create_graph). x is g, y the tensor the
** row saves (the output with LG_F_SAVE_OUT, else the input). */
BINARY(exp_bw_f32, float, x *y)
BINARY(exp_bw_f64, double, x *y)
LG_WIDE BINARY(tanh_bw_f32, float, x *(1 - y * y)) BINARY(tanh_bw_f64, double, x *(1 - y * y))
    BINARY(sigmoid_bw_f32, float, x *(y *(1 - y))) BINARY(sigmoid_bw_f64, double, x *(y *(1 - y)))
        BINARY(relu_bw_f32, float, y > 0 ? x : 0) BINARY(relu_bw_f64, double, y > 0 ? x : 0)

            static lg_status
    fused_grad(binary_k f32, binary_k f64, lg_tensor *g, lg_tensor *y, lg_tensor **out) {
  LG_TRY(lg_new(y->shape, y->ndim, y->dtype, out));
  int64_t sg[LG_MAX_DIMS];
  lg_broadcast_strides(g, y->shape, y->ndim, sg);
  lg_iter it;
  lg_iter_init(&it, y->shape, y->ndim);
  lg_iter_add(&it, *out, NULL);
  lg_iter_add(&it, g, sg);
  lg_iter_add(&it, y, NULL);
  lg_iter_run(&it, binary_row, (void *)(y->dtype == LG_FLOAT32 ? f32 : f64));
  return LG_OK;
}

/* The two rules every unary row with a deriv shares:
**   backward  gin = g * f'(x)        forward  tout = tin * f'(x) */
static lg_status unary_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  const lg_op *op = &lg_ops[n->op];
  if (op->fused_bw[0] && !lg_grad_enabled()) {
    lg_tensor *saved = (op->flags & LG_F_SAVE_OUT) ? lg_node_saved_out(n) : n->args.in[0];
    if (g->dtype == saved->dtype && lg_dtype_is_float(g->dtype) && g->ndim <= saved->ndim)
      return fused_grad((binary_k)op->fused_bw[0], (binary_k)op->fused_bw[1], g, saved, &gin[0]);
  }
  sc s = {0};
  lg_tensor *d = op->deriv(&s, n->args.in[0], lg_node_saved_out(n), &n->args);
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, g, d), &gin[0]);
}
/* gelu's tanh form in one pass (x is g, y the input): with u = k (y + c y^3), t = tanh u,
**   gin = g (0.5 (1 + t) + 0.5 y (1 - t^2) k (1 + 3 c y^2))
** the same derivative d_gelu composes from about ten ops; the erf form and create_graph use that. */
static inline float gelu_tanh_grad_f32(float y) {
  const float k = (float)SQRT_2_OVER_PI, c = (float)GELU_C;
  float t = tanh_fast(k * (y + c * y * y * y));
  return 0.5f * (1 + t) + 0.5f * y * (1 - t * t) * k * (1 + 3 * c * y * y);
}
static inline double gelu_tanh_grad_f64(double y) {
  double t = tanh(SQRT_2_OVER_PI * (y + GELU_C * y * y * y));
  return 0.5 * (1 + t) + 0.5 * y * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_C * y * y);
}
/* clang-format off */
__attribute__((optimize("fp-contract=fast"))) LG_WIDE BINARY(gelu_tanh_bw_f32, float, x * gelu_tanh_grad_f32(y))
BINARY(gelu_tanh_bw_f64, double, x * gelu_tanh_grad_f64(y))
static lg_status gelu_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_tensor *x = n->args.in[0];
  if (n->args.mode == 1 && !lg_grad_enabled() && g->dtype == x->dtype && lg_dtype_is_float(g->dtype) &&
      g->ndim <= x->ndim)
    return fused_grad(gelu_tanh_bw_f32, gelu_tanh_bw_f64, g, x, &gin[0]);
  return unary_backward(n, g, gin);
}
/* clang-format on */
static lg_status unary_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout) {
  sc s = {0};
  lg_tensor *d = op->deriv(&s, a->in[0], out, a);
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, tin[0], d), tout);
}

/* neg: -g; sign, floor, ceil, round: derivative zero almost everywhere */
static lg_status neg_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  return lg_unary(LG_OP_NEG, g, &gin[0]);
}
static lg_status neg_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  return lg_unary(LG_OP_NEG, tin[0], tout);
}
static lg_status zero_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  return lg_tensor_zeros(g->shape, g->ndim, g->dtype, &gin[0]);
}
static lg_status zero_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                          lg_tensor **tout) {
  return lg_tensor_zeros(out->shape, out->ndim, out->dtype, tout);
}

/* ==== 2. binary elementwise, broadcasting ==== */

/* integer arithmetic wraps (two's complement) rather than overflowing */
#define WRAP(op) ((int64_t)((uint64_t)x op(uint64_t) y))
static inline int64_t ipow(int64_t b, int64_t e) {
  if (e < 0) return b == 1 ? 1 : b == -1 ? (e & 1 ? -1 : 1) : 0;
  uint64_t r = 1, x = (uint64_t)b;
  while (e) {
    if (e & 1) r *= x;
    x *= x;
    e >>= 1;
  }
  return (int64_t)r;
}
/* Python's floor division and modulo; the forward pass has ruled out y == 0 */
static inline int64_t ifloordiv(int64_t x, int64_t y) {
  if (y == -1) return neg_i(x);
  int64_t q = x / y;
  return (x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q;
}
static inline int64_t iremainder(int64_t x, int64_t y) {
  if (y == -1) return 0;
  int64_t r = x % y;
  return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
}
static inline double fremainder(double x, double y) {
  double r = fmod(x, y);
  return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;
}
/* maximum/minimum propagate NaN, as PyTorch */
#define FMAX(x, y) ((x) != (x) || (x) > (y) ? (x) : (y))
#define FMIN(x, y) ((x) != (x) || (x) < (y) ? (x) : (y))

BINARY(add_f32, float, x + y)
BINARY(add_f64, double, x + y)
BINARY(add_i64, int64_t, WRAP(+))
BINARY(sub_f32, float, x - y)
BINARY(sub_f64, double, x - y)
BINARY(sub_i64, int64_t, WRAP(-))
BINARY(mul_f32, float, x *y)
BINARY(mul_f64, double, x *y)
BINARY(mul_i64, int64_t, WRAP(*))
BINARY(div_f32, float, x / y)
BINARY(div_f64, double, x / y)
BINARY(pow_f32, float, powf(x, y))
BINARY(pow_f64, double, pow(x, y))
BINARY(pow_i64, int64_t, ipow(x, y))
BINARY(maximum_f32, float, y != y ? y : FMAX(x, y))
BINARY(maximum_f64, double, y != y ? y : FMAX(x, y))
BINARY(maximum_i64, int64_t, x > y ? x : y)
BINARY(minimum_f32, float, y != y ? y : FMIN(x, y))
BINARY(minimum_f64, double, y != y ? y : FMIN(x, y))
BINARY(minimum_i64, int64_t, x < y ? x : y)
BINARY(floor_divide_f32, float, floorf(x / y))
BINARY(floor_divide_f64, double, floor(x / y))
BINARY(floor_divide_i64, int64_t, ifloordiv(x, y))
BINARY(remainder_f32, float, (float)fremainder(x, y))
BINARY(remainder_f64, double, fremainder(x, y))
BINARY(remainder_i64, int64_t, iremainder(x, y))
BINARY(atan2_f32, float, atan2f(x, y))
BINARY(atan2_f64, double, atan2(x, y))
BINARY(eq_f32, float, (float)(x == y))
BINARY(eq_f64, double, (double)(x == y))
BINARY(eq_i64, int64_t, x == y)
BINARY(ne_f32, float, (float)(x != y))
BINARY(ne_f64, double, (double)(x != y))
BINARY(ne_i64, int64_t, x != y)
BINARY(lt_f32, float, (float)(x < y))
BINARY(lt_f64, double, (double)(x < y))
BINARY(lt_i64, int64_t, x < y)
BINARY(le_f32, float, (float)(x <= y))
BINARY(le_f64, double, (double)(x <= y))
BINARY(le_i64, int64_t, x <= y)
BINARY(gt_f32, float, (float)(x > y))
BINARY(gt_f64, double, (double)(x > y))
BINARY(gt_i64, int64_t, x > y)
BINARY(ge_f32, float, (float)(x >= y))
BINARY(ge_f64, double, (double)(x >= y))
BINARY(ge_i64, int64_t, x >= y)

static int has_zero_i64(lg_tensor *t) {
  int64_t n = lg_numel(t);
  for (int64_t i = 0; i < n; i++)
    if (lg_get_flat_i64(t, i) == 0) return 1;
  return 0;
}

/* Both operands of one dtype, one shape and contiguous, and too few elements to split across
** threads: one call of the kernel, without broadcasting or the iterator (the per-op cost of
** small tensors). Returns 0 when it does not apply. */
static int binary_plain(const lg_op *op, lg_tensor *x, lg_tensor *y, lg_tensor **out, lg_status *st) {
  lg_dtype dt = x->dtype;
  if (y->dtype != dt || x->ndim != y->ndim || compute_dtype(op, dt) != dt || (op->flags & LG_F_INT_DIVIDES) ||
      memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim) != 0 || !lg_is_contiguous(x) ||
      !lg_is_contiguous(y))
    return 0;
  int64_t n = lg_shape_numel(x->shape, x->ndim);
  if (n >= 65536) return 0; /* lg_iter_run splits long rows across threads */
  if ((*st = lg_new(x->shape, x->ndim, dt, out)) == LG_OK && n > 0)
    ((binary_k)op->kernel[dt])(n, lg_data(*out), 1, lg_data(x), 1, lg_data(y), 1);
  return 1;
}

static lg_status binary_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *y = a->in[1], *tx = NULL, *ty = NULL;
  lg_status plain;
  if (binary_plain(op, x, y, out, &plain)) return plain;
  int64_t shape[LG_MAX_DIMS];
  int nd;
  LG_TRY(lg_broadcast_shapes(op->name, x->shape, x->ndim, y->shape, y->ndim, shape, &nd));
  lg_dtype dt = compute_dtype(op, lg_promote(x->dtype, y->dtype));
  lg_status st = as_dtype(&x, dt, &tx);
  if (st == LG_OK) st = as_dtype(&y, dt, &ty);
  if (st == LG_OK && dt == LG_INT64 && (op->flags & LG_F_INT_DIVIDES) && has_zero_i64(y))
    st = lg_error(LG_EVALUE, "%s: integer division by zero", op->name);
  if (st == LG_OK) st = lg_new(shape, nd, dt, out);
  if (st == LG_OK) {
    int64_t sx[LG_MAX_DIMS], sy[LG_MAX_DIMS];
    lg_broadcast_strides(x, shape, nd, sx);
    lg_broadcast_strides(y, shape, nd, sy);
    lg_iter it;
    lg_iter_init(&it, shape, nd);
    lg_iter_add(&it, *out, NULL);
    lg_iter_add(&it, x, sx);
    lg_iter_add(&it, y, sy);
    lg_iter_run(&it, binary_row, (void *)op->kernel[dt]);
  }
  lg_tensor_release(tx);
  lg_tensor_release(ty);
  return st;
}

/* ---- rules of binary ops: z = f(a, b); backward gives g dz/da and g dz/db (the tape sums them
**      back to the operands' shapes); forward gives ta dz/da + tb dz/db ---- */

#define NEEDS(n, i) ((n)->needs[i])
#define A(n) ((n)->args.in[0])
#define B_(n) ((n)->args.in[1])

static lg_status add_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  gin[0] = NEEDS(n, 0) ? lg_tensor_retain(g) : NULL;
  gin[1] = NEEDS(n, 1) ? lg_tensor_retain(g) : NULL;
  return LG_OK;
}
static lg_status add_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  sc s = {0};
  return sc_done(&s, sc_add0(&s, tin[0], tin[1]), tout);
}

static lg_status sub_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  gin[0] = NEEDS(n, 0) ? lg_tensor_retain(g) : NULL;
  return NEEDS(n, 1) ? lg_unary(LG_OP_NEG, g, &gin[1]) : LG_OK;
}
static lg_status sub_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  sc s = {0};
  return sc_done(&s, tin[1] ? sc_add0(&s, tin[0], sc_un(&s, LG_OP_NEG, tin[1])) : tin[0], tout);
}

/* mul: d(ab) = b da + a db */
static lg_status mul_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  if (NEEDS(n, 0)) LG_TRY(lg_binary(LG_OP_MUL, g, B_(n), &gin[0]));
  if (NEEDS(n, 1)) LG_TRY(lg_binary(LG_OP_MUL, g, A(n), &gin[1]));
  return LG_OK;
}
static lg_status mul_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  sc s = {0};
  lg_tensor *l = tin[0] ? sc_bin(&s, LG_OP_MUL, tin[0], a->in[1]) : NULL;
  lg_tensor *r = tin[1] ? sc_bin(&s, LG_OP_MUL, a->in[0], tin[1]) : NULL;
  return sc_done(&s, sc_add0(&s, l, r), tout);
}

/* div: d(a/b) = da / b - a db / b^2 */
static lg_status div_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  if (NEEDS(n, 0) && (s.st = lg_binary(LG_OP_DIV, g, B_(n), &gin[0])) != LG_OK) return s.st;
  if (!NEEDS(n, 1)) return LG_OK;
  lg_tensor *r = sc_un(&s, LG_OP_NEG,
                       sc_bin(&s, LG_OP_DIV, sc_bin(&s, LG_OP_MUL, g, A(n)), sc_un(&s, LG_OP_SQUARE, B_(n))));
  return sc_done(&s, r, &gin[1]);
}
static lg_status div_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  sc s = {0};
  lg_tensor *l = tin[0] ? sc_bin(&s, LG_OP_DIV, tin[0], a->in[1]) : NULL;
  lg_tensor *r =
      tin[1] ? sc_un(&s, LG_OP_NEG, sc_bin(&s, LG_OP_DIV, sc_bin(&s, LG_OP_MUL, out, tin[1]), a->in[1]))
             : NULL;
  return sc_done(&s, sc_add0(&s, l, r), tout);
}

/* pow: d(a^b) = b a^(b-1) da + a^b log(a) db, with PyTorch's masks at the singular points: the
** first term is 0 where b = 0 (so d/da a^0 = 0 at a = 0, not 0 * inf), the second 0 where a = 0
** and b >= 0 */
static lg_tensor *pow_da(sc *s, lg_tensor *a, lg_tensor *b) {
  lg_tensor *d = sc_bin(s, LG_OP_MUL, b, sc_bin(s, LG_OP_POW, a, sc_bs(s, LG_OP_SUB, b, 1)));
  return sc_where(s, sc_bs(s, LG_OP_EQ, b, 0), d ? sc_scalar(s, 0, d->dtype) : NULL, d);
}
static lg_tensor *pow_db(sc *s, lg_tensor *a, lg_tensor *b, lg_tensor *out) {
  lg_tensor *r = sc_bin(s, LG_OP_MUL, out, sc_un(s, LG_OP_LOG, a));
  lg_tensor *zero = sc_bin(s, LG_OP_MUL, sc_bs(s, LG_OP_EQ, a, 0), sc_bs(s, LG_OP_GE, b, 0));
  return sc_where(s, zero, r ? sc_scalar(s, 0, r->dtype) : NULL, r);
}
static lg_status pow_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  if (NEEDS(n, 0) &&
      (s.st = sc_done(&s, sc_bin(&s, LG_OP_MUL, g, pow_da(&s, A(n), B_(n))), &gin[0])) != LG_OK)
    return s.st;
  if (!NEEDS(n, 1)) return LG_OK;
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, g, pow_db(&s, A(n), B_(n), lg_node_saved_out(n))), &gin[1]);
}
static lg_status pow_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  sc s = {0};
  lg_tensor *l = tin[0] ? sc_bin(&s, LG_OP_MUL, tin[0], pow_da(&s, a->in[0], a->in[1])) : NULL;
  lg_tensor *r = tin[1] ? sc_bin(&s, LG_OP_MUL, tin[1], pow_db(&s, a->in[0], a->in[1], out)) : NULL;
  return sc_done(&s, sc_add0(&s, l, r), tout);
}

/* maximum/minimum: the gradient goes to the larger (smaller) operand; ties split it in half */
static lg_tensor *extreme_share(sc *s, lg_tensor *a, lg_tensor *b, lg_opcode cmp) {
  return sc_bin(s, LG_OP_ADD, sc_bin(s, cmp, a, b), sc_bs(s, LG_OP_MUL, sc_bin(s, LG_OP_EQ, a, b), 0.5));
}
#define EXTREME_RULES(name, CMP, CMP_OTHER)                                                                  \
  static lg_status name##_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {                              \
    sc s = {0};                                                                                              \
    if (NEEDS(n, 0) && (s.st = sc_done(&s, sc_bin(&s, LG_OP_MUL, g, extreme_share(&s, A(n), B_(n), CMP)),    \
                                       &gin[0])) != LG_OK)                                                   \
      return s.st;                                                                                           \
    if (!NEEDS(n, 1)) return LG_OK;                                                                          \
    return sc_done(&s, sc_bin(&s, LG_OP_MUL, g, extreme_share(&s, B_(n), A(n), CMP)), &gin[1]);              \
  }                                                                                                          \
  static lg_status name##_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,      \
                              lg_tensor **tout) {                                                            \
    sc s = {0};                                                                                              \
    lg_tensor *l =                                                                                           \
        tin[0] ? sc_bin(&s, LG_OP_MUL, tin[0], extreme_share(&s, a->in[0], a->in[1], CMP)) : NULL;           \
    lg_tensor *r =                                                                                           \
        tin[1] ? sc_bin(&s, LG_OP_MUL, tin[1], extreme_share(&s, a->in[1], a->in[0], CMP)) : NULL;           \
    return sc_done(&s, sc_add0(&s, l, r), tout);                                                             \
  }
EXTREME_RULES(maximum, LG_OP_GT, LG_OP_LT)
EXTREME_RULES(minimum, LG_OP_LT, LG_OP_GT)

/* remainder: a - b floor(a/b), so da = g, db = -g floor(a/b); floor_divide: zero */
static lg_status remainder_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  gin[0] = NEEDS(n, 0) ? lg_tensor_retain(g) : NULL;
  if (!NEEDS(n, 1)) return LG_OK;
  return sc_done(&s,
                 sc_un(&s, LG_OP_NEG, sc_bin(&s, LG_OP_MUL, g, sc_bin(&s, LG_OP_FLOOR_DIVIDE, A(n), B_(n)))),
                 &gin[1]);
}
static lg_status remainder_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                               lg_tensor **tout) {
  sc s = {0};
  lg_tensor *r =
      tin[1] ? sc_un(&s, LG_OP_NEG,
                     sc_bin(&s, LG_OP_MUL, tin[1], sc_bin(&s, LG_OP_FLOOR_DIVIDE, a->in[0], a->in[1])))
             : NULL;
  return sc_done(&s, sc_add0(&s, tin[0], r), tout);
}
static lg_status zero2_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  for (int i = 0; i < 2; i++)
    if (NEEDS(n, i)) LG_TRY(lg_tensor_zeros(g->shape, g->ndim, g->dtype, &gin[i]));
  return LG_OK;
}

/* atan2(a, b): da = b / (a^2 + b^2), db = -a / (a^2 + b^2) */
static lg_status atan2_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *r2 = sc_bin(&s, LG_OP_ADD, sc_un(&s, LG_OP_SQUARE, A(n)), sc_un(&s, LG_OP_SQUARE, B_(n)));
  lg_tensor *gr = sc_bin(&s, LG_OP_DIV, g, r2);
  lg_tensor *ga = NEEDS(n, 0) ? sc_bin(&s, LG_OP_MUL, gr, B_(n)) : NULL;
  lg_tensor *gb = NEEDS(n, 1) ? sc_un(&s, LG_OP_NEG, sc_bin(&s, LG_OP_MUL, gr, A(n))) : NULL;
  return sc_done2(&s, ga, &gin[0], gb, &gin[1]);
}
static lg_status atan2_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout) {
  sc s = {0};
  lg_tensor *r2 = sc_bin(&s, LG_OP_ADD, sc_un(&s, LG_OP_SQUARE, a->in[0]), sc_un(&s, LG_OP_SQUARE, a->in[1]));
  lg_tensor *l = tin[0] ? sc_bin(&s, LG_OP_MUL, tin[0], a->in[1]) : NULL;
  lg_tensor *r = tin[1] ? sc_un(&s, LG_OP_NEG, sc_bin(&s, LG_OP_MUL, tin[1], a->in[0])) : NULL;
  return sc_done(&s, sc_bin(&s, LG_OP_DIV, sc_add0(&s, l, r), r2), tout);
}

/* ==== 3. where, clamp ==== */

/* where(mask, a, b): a where mask is nonzero, else b; all three broadcast together. */
typedef struct {
  lg_dtype mdt, dt;
} where_ctx;

static void where_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const where_ctx *c = ctx;
  size_t es = lg_dtype_size(c->dt), ms = lg_dtype_size(c->mdt);
  for (int64_t i = 0; i < n; i++) {
    int m = lg_load(p[1] + i * s[1] * (int64_t)ms, c->mdt) != 0;
    const char *src = m ? p[2] + i * s[2] * (int64_t)es : p[3] + i * s[3] * (int64_t)es;
    memcpy(p[0] + i * s[0] * (int64_t)es, src, es);
  }
}

static lg_status where_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *m = a->in[0], *x = a->in[1], *y = a->in[2], *tx = NULL, *ty = NULL;
  int64_t s1[LG_MAX_DIMS], shape[LG_MAX_DIMS];
  int n1, nd;
  LG_TRY(lg_broadcast_shapes("where", x->shape, x->ndim, y->shape, y->ndim, s1, &n1));
  LG_TRY(lg_broadcast_shapes("where", m->shape, m->ndim, s1, n1, shape, &nd));
  lg_dtype dt = lg_promote(x->dtype, y->dtype);
  lg_status st = as_dtype(&x, dt, &tx);
  if (st == LG_OK) st = as_dtype(&y, dt, &ty);
  if (st == LG_OK) st = lg_new(shape, nd, dt, out);
  if (st == LG_OK) {
    int64_t sm[LG_MAX_DIMS], sx[LG_MAX_DIMS], sy[LG_MAX_DIMS];
    lg_broadcast_strides(m, shape, nd, sm);
    lg_broadcast_strides(x, shape, nd, sx);
    lg_broadcast_strides(y, shape, nd, sy);
    lg_iter it;
    lg_iter_init(&it, shape, nd);
    lg_iter_add(&it, *out, NULL);
    lg_iter_add(&it, m, sm);
    lg_iter_add(&it, x, sx);
    lg_iter_add(&it, y, sy);
    where_ctx c = {m->dtype, dt};
    lg_iter_run(&it, where_row, &c);
  }
  lg_tensor_release(tx);
  lg_tensor_release(ty);
  return st;
}

/* clamp(x, lo, hi) = min(max(x, lo), hi); either bound may be absent; NaN stays NaN. */
typedef struct {
  double lo, hi;
  int has_lo, has_hi;
  lg_dtype dt;
} clamp_ctx;

#define CLAMP_ROW(name, T)                                                                                   \
  static void name(const clamp_ctx *c, int64_t n, char *o_, int64_t so, const char *x_, int64_t sx) {        \
    T *o = (T *)o_;                                                                                          \
    const T *xp = (const T *)x_;                                                                             \
    T lo = (T)c->lo, hi = (T)c->hi;                                                                          \
    for (int64_t i = 0; i < n; i++) {                                                                        \
      T x = xp[i * sx];                                                                                      \
      if (c->has_lo && x < lo) x = lo;                                                                       \
      if (c->has_hi && x > hi) x = hi;                                                                       \
      o[i * so] = x;                                                                                         \
    }                                                                                                        \
  }
CLAMP_ROW(clamp_f32, float)
CLAMP_ROW(clamp_f64, double)
CLAMP_ROW(clamp_i64, int64_t)

static void clamp_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const clamp_ctx *c = ctx;
  switch (c->dt) {
  case LG_FLOAT32:
    clamp_f32(c, n, p[0], s[0], p[1], s[1]);
    break;
  case LG_FLOAT64:
    clamp_f64(c, n, p[0], s[0], p[1], s[1]);
    break;
  default:
    clamp_i64(c, n, p[0], s[0], p[1], s[1]);
    break;
  }
}

static lg_status clamp_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *tmp;
  clamp_ctx c = {a->s[0], a->s[1], a->has_s[0], a->has_s[1], x->dtype};
  if (c.has_lo && c.has_hi && c.lo > c.hi) c.lo = c.hi; /* PyTorch: everything becomes hi */
  /* an int64 tensor clamped to fractional bounds computes in floats */
  int frac = (c.has_lo && c.lo != floor(c.lo)) || (c.has_hi && c.hi != floor(c.hi));
  LG_TRY(as_dtype(&x, x->dtype == LG_INT64 && frac ? lg_default_dtype() : x->dtype, &tmp));
  c.dt = x->dtype;
  lg_status st = lg_new(x->shape, x->ndim, x->dtype, out);
  if (st == LG_OK) {
    lg_iter it;
    lg_iter_init(&it, x->shape, x->ndim);
    lg_iter_add(&it, *out, NULL);
    lg_iter_add(&it, x, NULL);
    lg_iter_run(&it, clamp_row, &c);
  }
  lg_tensor_release(tmp);
  return st;
}

/* where: the gradient goes to a where the mask is set, to b elsewhere */
static lg_status where_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *m = n->args.in[0], *zero = sc_scalar(&s, 0, g->dtype);
  lg_tensor *ga = NEEDS(n, 1) ? sc_where(&s, m, g, zero) : NULL;
  lg_tensor *gb = NEEDS(n, 2) ? sc_where(&s, m, zero, g) : NULL;
  return sc_done2(&s, ga, &gin[1], gb, &gin[2]);
}
static lg_status where_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout) {
  sc s = {0};
  lg_tensor *zero = sc_scalar(&s, 0, out->dtype);
  return sc_done(&s, sc_where(&s, a->in[0], tin[1] ? tin[1] : zero, tin[2] ? tin[2] : zero), tout);
}

/* clamp: the gradient passes where lo <= x <= hi */
static lg_tensor *clamp_mask(sc *s, lg_tensor *x, const lg_args *a) {
  lg_tensor *m = NULL;
  if (a->has_s[0]) m = sc_bs(s, LG_OP_GE, x, a->s[0]);
  if (a->has_s[1]) {
    lg_tensor *h = sc_bs(s, LG_OP_LE, x, a->s[1]);
    m = m ? sc_bin(s, LG_OP_MUL, m, h) : h;
  }
  return m;
}
static lg_status clamp_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, g, clamp_mask(&s, n->args.in[0], &n->args)), &gin[0]);
}
static lg_status clamp_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout) {
  sc s = {0};
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, tin[0], clamp_mask(&s, a->in[0], a)), tout);
}

/* ==== 4. reductions ====
** The reduced dimension is moved last and the input made contiguous, so each kernel reduces
** `rows` contiguous rows of length R. Float32 sums accumulate in double. */

#define REDUCE(name, T, TO, init, step, fin)                                                                 \
  static void name(const char *x_, int64_t rows, int64_t R, char *o_, int64_t *idx, const lg_args *a) {      \
    const T *x = (const T *)x_;                                                                              \
    TO *o = (TO *)o_;                                                                                        \
    for (int64_t r = 0; r < rows; r++, x += R) {                                                             \
      init;                                                                                                  \
      for (int64_t i = 0; i < R; i++) {                                                                      \
        step;                                                                                                \
      }                                                                                                      \
      o[r] = (TO)(fin);                                                                                      \
    }                                                                                                        \
  }

/* Sums of contiguous rows in double with 16 running partial sums (one add chain would wait on
** the adder's latency for every element; 16 independent ones keep 4 vector adds in flight). */
#define SUM_ROW(name, T)                                                                                     \
  LG_WIDE static double name(const T *x, int64_t R) {                                                        \
    double part[16] = {0}, s = 0;                                                                            \
    int64_t i = 0;                                                                                           \
    for (; i + 16 <= R; i += 16)                                                                             \
      for (int j = 0; j < 16; j++) part[j] += x[i + j];                                                      \
    for (; i < R; i++) s += x[i];                                                                            \
    for (int w = 8; w >= 1; w /= 2) /* pairwise: 16 -> 1 */                                                  \
      for (int j = 0; j < w; j++) part[j] += part[j + w];                                                    \
    return part[0] + s;                                                                                      \
  }
SUM_ROW(sum_row_f32, float)
SUM_ROW(sum_row_f64, double)

REDUCE(sum_f32, float, float, (void)0, (void)0, sum_row_f32(x, R))
REDUCE(sum_f64, double, double, (void)0, (void)0, sum_row_f64(x, R))
REDUCE(sum_i64, int64_t, int64_t, uint64_t acc = 0, acc += (uint64_t)x[i], (int64_t)acc)
REDUCE(mean_f32, float, float, (void)0, (void)0, R ? sum_row_f32(x, R) / (double)R : NAN)
REDUCE(mean_f64, double, double, (void)0, (void)0, R ? sum_row_f64(x, R) / (double)R : NAN)
REDUCE(prod_f32, float, float, double acc = 1, acc *= x[i], acc)
REDUCE(prod_f64, double, double, double acc = 1, acc *= x[i], acc)
REDUCE(prod_i64, int64_t, int64_t, uint64_t acc = 1, acc *= (uint64_t)x[i], (int64_t)acc)

/* variance with a correction (1 = unbiased): two passes, mean first */
static double var_row_f64(const double *x, int64_t R, double corr) {
  double m = 0, ss = 0;
  for (int64_t i = 0; i < R; i++) m += x[i];
  m /= (double)R;
  for (int64_t i = 0; i < R; i++) ss += (x[i] - m) * (x[i] - m);
  return (double)R - corr > 0 ? ss / ((double)R - corr)
                              : (R ? (ss == 0 && R - corr == 0 ? NAN : INFINITY) : NAN);
}
static double var_row_f32(const float *x, int64_t R, double corr) {
  double m = 0, ss = 0;
  for (int64_t i = 0; i < R; i++) m += x[i];
  m /= (double)R;
  for (int64_t i = 0; i < R; i++) ss += ((double)x[i] - m) * ((double)x[i] - m);
  return (double)R - corr > 0 ? ss / ((double)R - corr)
                              : (R ? (ss == 0 && R - corr == 0 ? NAN : INFINITY) : NAN);
}
REDUCE(var_f32, float, float, (void)0, (void)0, var_row_f32(x, R, a->s[0]))
REDUCE(var_f64, double, double, (void)0, (void)0, var_row_f64(x, R, a->s[0]))
REDUCE(std_f32, float, float, (void)0, (void)0, sqrt(var_row_f32(x, R, a->s[0])))
REDUCE(std_f64, double, double, (void)0, (void)0, sqrt(var_row_f64(x, R, a->s[0])))

/* p-norm: p = inf gives max |x|, p = 0 counts nonzeros */
#define NORM_ROW(name, T)                                                                                    \
  static double name(const T *x, int64_t R, double p) {                                                      \
    double acc = 0;                                                                                          \
    if (isinf(p) && p > 0) {                                                                                 \
      for (int64_t i = 0; i < R; i++) {                                                                      \
        double v = fabs((double)x[i]);                                                                       \
        if (v > acc || v != v) acc = v;                                                                      \
      }                                                                                                      \
      return acc;                                                                                            \
    }                                                                                                        \
    if (isinf(p)) {                                                                                          \
      acc = INFINITY;                                                                                        \
      for (int64_t i = 0; i < R; i++) {                                                                      \
        double v = fabs((double)x[i]);                                                                       \
        if (v < acc || v != v) acc = v;                                                                      \
      }                                                                                                      \
      return acc;                                                                                            \
    }                                                                                                        \
    if (p == 0) {                                                                                            \
      for (int64_t i = 0; i < R; i++) acc += x[i] != 0;                                                      \
      return acc;                                                                                            \
    }                                                                                                        \
    if (p == 1) {                                                                                            \
      for (int64_t i = 0; i < R; i++) acc += fabs((double)x[i]);                                             \
      return acc;                                                                                            \
    }                                                                                                        \
    if (p == 2) {                                                                                            \
      for (int64_t i = 0; i < R; i++) acc += (double)x[i] * (double)x[i];                                    \
      return sqrt(acc);                                                                                      \
    }                                                                                                        \
    for (int64_t i = 0; i < R; i++) acc += pow(fabs((double)x[i]), p);                                       \
    return pow(acc, 1 / p);                                                                                  \
  }
NORM_ROW(norm_row_f32, float)
NORM_ROW(norm_row_f64, double)
REDUCE(norm_f32, float, float, (void)0, (void)0, norm_row_f32(x, R, a->s[0]))
REDUCE(norm_f64, double, double, (void)0, (void)0, norm_row_f64(x, R, a->s[0]))

/* logsumexp = m + log(sum exp(x - m)), m = max x; all -inf gives -inf */
#define LSE_ROW(name, T)                                                                                     \
  static double name(const T *x, int64_t R) {                                                                \
    double m = -INFINITY, s = 0;                                                                             \
    for (int64_t i = 0; i < R; i++)                                                                          \
      if (x[i] > m || x[i] != x[i]) m = x[i];                                                                \
    if (m != m) return m;                                                                                    \
    if (isinf(m)) return m;                                                                                  \
    for (int64_t i = 0; i < R; i++) s += exp((double)x[i] - m);                                              \
    return m + log(s);                                                                                       \
  }
LSE_ROW(lse_row_f32, float)
LSE_ROW(lse_row_f64, double)
REDUCE(logsumexp_f32, float, float, (void)0, (void)0, lse_row_f32(x, R))
REDUCE(logsumexp_f64, double, double, (void)0, (void)0, lse_row_f64(x, R))

/* max/min (values and 1-based indices) and argmax/argmin (indices only); the first NaN wins,
** then the first extreme value */
#define EXTREME(name, T, better, VALUES)                                                                     \
  static void name(const char *x_, int64_t rows, int64_t R, char *o_, int64_t *idx, const lg_args *a) {      \
    const T *x = (const T *)x_;                                                                              \
    for (int64_t r = 0; r < rows; r++, x += R) {                                                             \
      int64_t k = 0;                                                                                         \
      T v = x[0];                                                                                            \
      for (int64_t i = 1; i < R && v == v; i++)                                                              \
        if (x[i] != x[i] || x[i] better v) {                                                                 \
          v = x[i];                                                                                          \
          k = i;                                                                                             \
        }                                                                                                    \
      if (VALUES) {                                                                                          \
        ((T *)o_)[r] = v;                                                                                    \
        if (idx) idx[r] = k + 1;                                                                             \
      } else                                                                                                 \
        ((int64_t *)o_)[r] = k + 1;                                                                          \
    }                                                                                                        \
  }
EXTREME(max_f32, float, >, 1)
EXTREME(max_f64, double, >, 1)
EXTREME(max_i64, int64_t, >, 1)
EXTREME(min_f32, float, <, 1)
EXTREME(min_f64, double, <, 1)
EXTREME(min_i64, int64_t, <, 1)
EXTREME(argmax_f32, float, >, 0)
EXTREME(argmax_f64, double, >, 0)
EXTREME(argmax_i64, int64_t, >, 0)
EXTREME(argmin_f32, float, <, 0)
EXTREME(argmin_f64, double, <, 0)
EXTREME(argmin_i64, int64_t, <, 0)

static int is_extreme(const lg_op *op) {
  return op == &lg_ops[LG_OP_MAX] || op == &lg_ops[LG_OP_MIN] || (op->flags & LG_F_INDEX_OUT);
}

static lg_status reduce_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *moved = NULL, *xc = NULL;
  int dim = a->dim;
  if (dim >= 0 && x->ndim == 0) dim = -1; /* a 0-d tensor's one "dimension" is the whole of it */
  if (dim >= x->ndim)
    return lg_error(LG_EINDEX, "%s: dimension %d out of range for %s", op->name, dim + 1, SHAPE(x));
  int64_t oshape[LG_MAX_DIMS], R, rows;
  int ond = 0;
  if (dim >= 0) {
    R = x->shape[dim];
    for (int i = 0; i < x->ndim; i++)
      if (i != dim)
        oshape[ond++] = x->shape[i];
      else if (a->keepdim)
        oshape[ond++] = 1;
  } else {
    R = lg_numel(x);
    if (a->keepdim)
      for (int i = 0; i < x->ndim; i++) oshape[ond++] = 1;
  }
  rows = R ? lg_numel(x) / R : lg_shape_numel(oshape, ond);
  if (R == 0 && is_extreme(op) && rows > 0)
    return lg_error(LG_ESHAPE, "%s: cannot reduce over an empty dimension (tensor %s)", op->name, SHAPE(x));
  lg_dtype dt = compute_dtype(op, x->dtype);
  lg_status st = LG_OK;
  if (dim >= 0 && dim != x->ndim - 1) { /* move dim last */
    int perm[LG_MAX_DIMS], k = 0;
    for (int i = 0; i < x->ndim; i++)
      if (i != dim) perm[k++] = i;
    perm[k] = dim;
    st = lg_permute(x, perm, x->ndim, &moved);
    x = moved;
  }
  if (st == LG_OK)
    st = (lg_is_contiguous(x) && x->dtype == dt) ? (xc = lg_tensor_retain(x), LG_OK) : lg_copy_as(x, dt, &xc);
  lg_tensor *vals = NULL, *idx = NULL;
  int index_out = (op->flags & LG_F_INDEX_OUT) != 0;
  if (st == LG_OK) st = lg_new(oshape, ond, index_out ? LG_INT64 : dt, &vals);
  if (st == LG_OK && op->nout == 2) st = lg_new(oshape, ond, LG_INT64, &idx);
  if (st == LG_OK) {
    ((reduce_k)op->kernel[dt])((const char *)lg_data(xc), rows, R, (char *)lg_data(vals),
                               idx ? lg_data(idx) : NULL, a);
    out[0] = vals;
    if (op->nout == 2) out[1] = idx;
  } else {
    lg_tensor_release(vals);
    lg_tensor_release(idx);
  }
  lg_tensor_release(moved);
  lg_tensor_release(xc);
  return st;
}

/* ---- rules of reductions. d = d out / d x has x's shape; the output (or its gradient) is
**      brought back to x's shape by "unreduce" (unsqueeze the reduced dim, then expand):
**      backward gin = unreduce(g) * d, forward tout = reduce_sum(tin * d). ---- */

/* d out / d x for each reduction: x the input, oe the output unreduced to x's shape */
typedef lg_tensor *(*rderiv_fn)(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a, double N);

static lg_tensor *centered(sc *s, lg_tensor *x, const lg_args *a) {
  return sc_bin(s, LG_OP_SUB, x, sc_reduce(s, LG_OP_MEAN, x, a->dim, 1));
}
static lg_tensor *rd_var(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a,
                         double N) { /* 2 (x - mean) / (N - c) */
  return sc_bs(s, LG_OP_MUL, centered(s, x, a), 2 / (N - a->s[0]));
}
static lg_tensor *
rd_std(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a,
       double N) { /* (x - mean) / ((N - c) std), 0 where std = 0 (as PyTorch, and norm's origin) */
  lg_tensor *d = sc_bin(s, LG_OP_DIV, centered(s, x, a), sc_bs(s, LG_OP_MUL, oe, N - a->s[0]));
  return sc_where(s, sc_bs(s, LG_OP_EQ, oe, 0), d ? sc_scalar(s, 0, d->dtype) : NULL, d);
}
static lg_tensor *rd_prod(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a,
                          double N) { /* prod / x (x nonzero) */
  return sc_bin(s, LG_OP_DIV, oe, x);
}
static lg_tensor *rd_norm(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a, double N) {
  double p = a->s[0];
  lg_tensor *zero = x ? sc_scalar(s, 0, x->dtype) : NULL;
  if (p == 0) return sc_bs(s, LG_OP_MUL, x, 0);
  if (p == 1) return sc_un(s, LG_OP_SIGN, x);
  if (isinf(p)) { /* the extreme |x| entries share the gradient */
    lg_tensor *m = sc_bin(s, LG_OP_EQ, sc_un(s, LG_OP_ABS, x), oe);
    lg_tensor *cnt =
        m ? sc_unreduce(s, sc_reduce(s, LG_OP_SUM, m, a->dim, 1), x->shape, x->ndim, a->dim, 1) : NULL;
    return sc_bin(s, LG_OP_DIV, sc_bin(s, LG_OP_MUL, m, sc_un(s, LG_OP_SIGN, x)), cnt);
  }
  lg_tensor *num = p == 2 ? x
                          : sc_bin(s, LG_OP_MUL, sc_un(s, LG_OP_SIGN, x),
                                   sc_bs(s, LG_OP_POW, sc_un(s, LG_OP_ABS, x), p - 1));
  lg_tensor *den = p == 2 ? oe : sc_bs(s, LG_OP_POW, oe, p - 1);
  return sc_where(s, sc_bs(s, LG_OP_EQ, oe, 0), zero, sc_bin(s, LG_OP_DIV, num, den)); /* 0 at the origin */
}
static lg_tensor *rd_logsumexp(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a, double N) { /* softmax */
  return sc_un(s, LG_OP_EXP, sc_bin(s, LG_OP_SUB, x, oe));
}
static lg_tensor *rd_extreme(sc *s, lg_tensor *x, lg_tensor *oe, const lg_args *a, double N) {
  /* max/min: the entries equal to the extreme share the gradient (one entry, unless ties) */
  lg_tensor *m = sc_bin(s, LG_OP_EQ, x, oe);
  lg_tensor *cnt =
      m ? sc_unreduce(s, sc_reduce(s, LG_OP_SUM, m, a->dim, 1), x->shape, x->ndim, a->dim, 1) : NULL;
  return sc_bin(s, LG_OP_DIV, m, cnt);
}

#define REDUCE_RULES(name, deriv)                                                                            \
  static lg_status name##_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {                              \
    sc s = {0};                                                                                              \
    const lg_edge *e = &n->edges[0];                                                                         \
    lg_tensor *x = n->args.in[0], *out = lg_node_saved_out(n);                                               \
    lg_tensor *oe = sc_unreduce(&s, out, e->shape, e->ndim, n->args.dim, n->args.keepdim);                   \
    lg_tensor *d = deriv(&s, x, oe, &n->args, reduced_count(e->shape, e->ndim, n->args.dim));                \
    lg_tensor *ge = sc_unreduce(&s, g, e->shape, e->ndim, n->args.dim, n->args.keepdim);                     \
    return sc_done(&s, sc_bin(&s, LG_OP_MUL, ge, d), &gin[0]);                                               \
  }                                                                                                          \
  static lg_status name##_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,      \
                              lg_tensor **tout) {                                                            \
    sc s = {0};                                                                                              \
    lg_tensor *x = a->in[0];                                                                                 \
    lg_tensor *oe = sc_unreduce(&s, out, x->shape, x->ndim, a->dim, a->keepdim);                             \
    lg_tensor *d = deriv(&s, x, oe, a, reduced_count(x->shape, x->ndim, a->dim));                            \
    return sc_done(&s, sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, tin[0], d), a->dim, a->keepdim),       \
                   tout);                                                                                    \
  }
REDUCE_RULES(var, rd_var)
REDUCE_RULES(std, rd_std)
REDUCE_RULES(prod, rd_prod)
REDUCE_RULES(norm, rd_norm)
REDUCE_RULES(logsumexp, rd_logsumexp)
REDUCE_RULES(max, rd_extreme)
REDUCE_RULES(min, rd_extreme)

/* sum: the gradient spreads unchanged; mean: divided by the count */
static lg_status sum_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  const lg_edge *e = &n->edges[0];
  return sc_done(&s, sc_unreduce(&s, g, e->shape, e->ndim, n->args.dim, n->args.keepdim), &gin[0]);
}
static lg_status sum_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  return lg_reduce(LG_OP_SUM, tin[0], a->dim, a->keepdim, tout);
}
static lg_status mean_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  const lg_edge *e = &n->edges[0];
  lg_tensor *ge = sc_unreduce(&s, g, e->shape, e->ndim, n->args.dim, n->args.keepdim);
  return sc_done(&s, sc_bs(&s, LG_OP_DIV, ge, reduced_count(e->shape, e->ndim, n->args.dim)), &gin[0]);
}
static lg_status mean_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                          lg_tensor **tout) {
  return lg_reduce(LG_OP_MEAN, tin[0], a->dim, a->keepdim, tout);
}

/* ---- softmax and log_softmax along a dimension ----
**   softmax:     y = exp(x - m) / sum exp(x - m),      m = max x (for stability)
**   log_softmax: y = x - m - log sum exp(x - m)
** Both save y. Backward: softmax gin = y (g - sum(g y)); log_softmax gin = g - exp(y) sum(g). */

/* One pass for the maximum, one computing e = exp(x - m) into y while summing it (in double),
** one scaling y by 1 / sum (softmax) or writing x - m - log sum (log_softmax). float32's exp is
** the vectorized one of the exp op (lg_exp_f32); float64 keeps libm. */
static void softmax_rows_f32(const float *x, float *y, int64_t rows, int64_t R, int logmode) {
  for (int64_t r = 0; r < rows; r++, x += R, y += R) {
    float m = -INFINITY;
    for (int64_t i = 0; i < R; i++)
      if (x[i] > m) m = x[i];
    if (isinf(m) && m < 0) m = 0;
    for (int64_t i = 0; i < R; i++) y[i] = x[i] - m;
    lg_exp_f32(R, y, y);
    double sum = 0;
    for (int64_t i = 0; i < R; i++) sum += y[i];
    if (logmode) {
      float ls = (float)log(sum);
      for (int64_t i = 0; i < R; i++) y[i] = (x[i] - m) - ls;
    } else {
      float inv = (float)(1 / sum);
      for (int64_t i = 0; i < R; i++) y[i] *= inv;
    }
  }
}
static void softmax_rows_f64(const double *x, double *y, int64_t rows, int64_t R, int logmode) {
  for (int64_t r = 0; r < rows; r++, x += R, y += R) {
    double m = -INFINITY, sum = 0;
    for (int64_t i = 0; i < R; i++)
      if (x[i] > m) m = x[i];
    if (isinf(m) && m < 0) m = 0;
    for (int64_t i = 0; i < R; i++) sum += y[i] = exp(x[i] - m);
    if (logmode) {
      double ls = log(sum);
      for (int64_t i = 0; i < R; i++) y[i] = x[i] - m - ls;
    } else {
      for (int64_t i = 0; i < R; i++) y[i] /= sum;
    }
  }
}

static lg_status softmax_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *moved = NULL, *xc = NULL, *y = NULL;
  int dim = a->dim, nd = x->ndim, perm[LG_MAX_DIMS], inv[LG_MAX_DIMS], k = 0;
  lg_dtype dt = compute_dtype(op, x->dtype);
  if (nd == 0) /* a single element: softmax 1, log_softmax 0 (NaN stays NaN, as the kernel would give) */
    return lg_tensor_full(NULL, 0, dt,
                          isnan(lg_get_flat(x, 0))           ? NAN
                          : op == &lg_ops[LG_OP_LOG_SOFTMAX] ? 0
                                                             : 1,
                          out);
  for (int i = 0; i < nd; i++)
    if (i != dim) perm[k++] = i;
  perm[k] = dim;
  for (int i = 0; i < nd; i++) inv[perm[i]] = i;
  lg_status st = lg_permute(x, perm, nd, &moved);
  if (st == LG_OK) /* the last dimension of a contiguous input: its rows are read in place */
    st = lg_is_contiguous(moved) && moved->dtype == dt ? (xc = lg_tensor_retain(moved), LG_OK)
                                                       : lg_copy_as(moved, dt, &xc);
  if (st == LG_OK) st = lg_new(xc->shape, nd, dt, &y);
  if (st == LG_OK) {
    int64_t R = x->shape[dim], rows = R ? lg_numel(x) / R : 0;
    int logmode = op == &lg_ops[LG_OP_LOG_SOFTMAX];
    if (dt == LG_FLOAT32)
      softmax_rows_f32(lg_data(xc), lg_data(y), rows, R, logmode);
    else
      softmax_rows_f64(lg_data(xc), lg_data(y), rows, R, logmode);
    if (dim == nd - 1) {
      *out = lg_tensor_retain(y);
    } else { /* back in the input's order, contiguous (a view of it could not be viewed as flat) */
      lg_tensor *back = NULL;
      st = lg_permute(y, inv, nd, &back);
      if (st == LG_OK) st = lg_copy_as(back, dt, out);
      lg_tensor_release(back);
    }
  }
  lg_tensor_release(moved);
  lg_tensor_release(xc);
  lg_tensor_release(y);
  return st;
}

static lg_status softmax_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *y = lg_node_saved_out(n);
  lg_tensor *dot = sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, g, y), n->args.dim, 1);
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, y, sc_bin(&s, LG_OP_SUB, g, dot)), &gin[0]);
}
static lg_status softmax_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                             lg_tensor **tout) {
  sc s = {0};
  lg_tensor *dot = sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, tin[0], out), a->dim, 1);
  return sc_done(&s, sc_bin(&s, LG_OP_MUL, out, sc_bin(&s, LG_OP_SUB, tin[0], dot)), tout);
}
static lg_status log_softmax_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *y = lg_node_saved_out(n);
  lg_tensor *gs = sc_reduce(&s, LG_OP_SUM, g, n->args.dim, 1);
  return sc_done(&s, sc_bin(&s, LG_OP_SUB, g, sc_bin(&s, LG_OP_MUL, sc_un(&s, LG_OP_EXP, y), gs)), &gin[0]);
}
static lg_status log_softmax_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                 lg_tensor **tout) {
  sc s = {0};
  lg_tensor *dot =
      sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, tin[0], sc_un(&s, LG_OP_EXP, out)), a->dim, 1);
  return sc_done(&s, sc_bin(&s, LG_OP_SUB, tin[0], dot), tout);
}

/* ==== 5. matmul ====
** forward in matmul.c. With 1-d operands promoted to matrices (a as a row, b as a column) and g
** reshaped to match: da = g b^T, db = a^T g; the tape sums broadcast batch dimensions away.
** Forward mode: t_out = ta b + a tb. */

static lg_status matmul_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *a = n->args.in[0], *b = n->args.in[1];
  int a1 = a->ndim == 1, b1 = b->ndim == 1;
  lg_tensor *a2 = a1 ? sc_unsqueeze(&s, a, 0) : a, *b2 = b1 ? sc_unsqueeze(&s, b, 1) : b, *g2 = g;
  if (a1) g2 = sc_unsqueeze(&s, g2, g2->ndim - (b1 ? 0 : 1));
  if (b1) g2 = sc_unsqueeze(&s, g2, g2 ? g2->ndim : 0);
  lg_tensor *ga = NULL, *gb = NULL;
  if (NEEDS(n, 0)) {
    ga = sc_bin(&s, LG_OP_MATMUL, g2, sc_swap_last2(&s, b2));
    if (a1 && ga) { /* drop the row dimension again */
      int64_t shape[LG_MAX_DIMS];
      int nd = 0;
      for (int i = 0; i < ga->ndim; i++)
        if (i != ga->ndim - 2) shape[nd++] = ga->shape[i];
      ga = sc_reshape(&s, ga, shape, nd);
    }
  }
  if (NEEDS(n, 1)) {
    gb = sc_bin(&s, LG_OP_MATMUL, sc_swap_last2(&s, a2), g2);
    if (b1 && gb) gb = sc_reshape(&s, gb, gb->shape, gb->ndim - 1);
  }
  return sc_done2(&s, ga, &gin[0], gb, &gin[1]);
}
static lg_status matmul_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                            lg_tensor **tout) {
  sc s = {0};
  lg_tensor *l = tin[0] ? sc_bin(&s, LG_OP_MATMUL, tin[0], a->in[1]) : NULL;
  lg_tensor *r = tin[1] ? sc_bin(&s, LG_OP_MATMUL, a->in[0], tin[1]) : NULL;
  return sc_done(&s, sc_add0(&s, l, r), tout);
}

/* ==== 6. indexing ==== */

/* Checks that every (1-based) index in idx lies in 1..n. */
static lg_status check_indices(const char *op, lg_tensor *idx, int64_t n, int dim) {
  if (idx->dtype != LG_INT64)
    return lg_error(LG_EDTYPE, "%s: indices must be int64, got %s", op, lg_dtype_name(idx->dtype));
  int64_t m = lg_numel(idx);
  const int64_t *p = lg_is_contiguous(idx) ? lg_data(idx) : NULL;
  for (int64_t i = 0; i < m; i++) {
    int64_t v = p ? p[i] : lg_get_flat_i64(idx, i);
    if (v < 1 || v > n)
      return lg_error(LG_EINDEX, "%s: index %lld out of range 1..%lld of dimension %d", op, (long long)v,
                      (long long)n, dim + 1);
  }
  return LG_OK;
}

/* index_select and index_add pair slices along dim: slice i of one side with slice idx[i] of the
** other. index_slices runs over the pairs: copying dst[i] = src[idx[i]] (add = 0, index_select)
** or adding dst[idx[i]] += src[i] (add = 1, index_add). dst and src have one dtype. */
typedef struct {
  lg_dtype dt;
  int add;
} slice_ctx;

#define SLICE_LOOP(T)                                                                                        \
  do {                                                                                                       \
    T *o = (T *)p[0];                                                                                        \
    const T *x = (const T *)p[1];                                                                            \
    if (c->add)                                                                                              \
      for (int64_t i = 0; i < n; i++) o[i * s[0]] += x[i * s[1]];                                            \
    else                                                                                                     \
      for (int64_t i = 0; i < n; i++) o[i * s[0]] = x[i * s[1]];                                             \
  } while (0)

static void slice_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const slice_ctx *c = ctx;
  switch (c->dt) {
  case LG_FLOAT32:
    SLICE_LOOP(float);
    break;
  case LG_FLOAT64:
    SLICE_LOOP(double);
    break;
  default:
    SLICE_LOOP(int64_t);
    break;
  }
}

/* Along dimension 1 of contiguous tensors a slice is a contiguous row of D elements: the pairs
** are whole rows (embedding's weight gradient takes this path). */
#define INDEX_ROWS(name, T)                                                                                  \
  static void name(T *restrict dst, const T *restrict src, const int64_t *ip, int64_t m, int64_t D,          \
                   int add) {                                                                                \
    for (int64_t i = 0; i < m; i++) {                                                                        \
      T *o = dst + (add ? ip[i] - 1 : i) * D;                                                                \
      const T *x = src + (add ? i : ip[i] - 1) * D;                                                          \
      if (add)                                                                                               \
        for (int64_t j = 0; j < D; j++) o[j] += x[j];                                                        \
      else                                                                                                   \
        memcpy(o, x, sizeof(T) * (size_t)D);                                                                 \
    }                                                                                                        \
  }
INDEX_ROWS(index_rows_f32, float)
INDEX_ROWS(index_rows_f64, double)
INDEX_ROWS(index_rows_i64, int64_t)

static lg_status index_slices(lg_tensor *dst, lg_tensor *src, int dim, lg_tensor *idx, int add) {
  slice_ctx c = {dst->dtype, add};
  int64_t m = lg_numel(idx);
  lg_status st = LG_OK;
  if (dim == 0 && dst->ndim > 0 && lg_is_contiguous(dst) && lg_is_contiguous(src) && lg_is_contiguous(idx)) {
    int64_t D = dst->shape[0] ? lg_numel(dst) / dst->shape[0] : 0;
    const int64_t *ip = lg_data(idx);
    if (dst->dtype == LG_FLOAT32)
      index_rows_f32(lg_data(dst), lg_data(src), ip, m, D, add);
    else if (dst->dtype == LG_FLOAT64)
      index_rows_f64(lg_data(dst), lg_data(src), ip, m, D, add);
    else
      index_rows_i64(lg_data(dst), lg_data(src), ip, m, D, add);
    return LG_OK;
  }
  for (int64_t i = 0; i < m && st == LG_OK; i++) {
    int64_t j = lg_get_flat_i64(idx, i) - 1;
    lg_tensor *d = NULL, *sv = NULL;
    st = lg_select(dst, dim, add ? j : i, &d);
    if (st == LG_OK) st = lg_select(src, dim, add ? i : j, &sv);
    if (st == LG_OK) {
      lg_iter it;
      lg_iter_init(&it, d->shape, d->ndim);
      lg_iter_add(&it, d, NULL);
      lg_iter_add(&it, sv, NULL);
      lg_iter_run(&it, slice_row, &c);
    }
    lg_tensor_release(d);
    lg_tensor_release(sv);
  }
  return st;
}

/* index_select(x, dim, idx): out[..., i, ...] = x[..., idx[i], ...] for a 1-d idx */
static lg_status index_select_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *idx = a->in[1];
  int dim = a->dim;
  if (idx->ndim > 1) return lg_error(LG_ESHAPE, "index_select: indices must be 1-d, got %s", SHAPE(idx));
  LG_TRY(check_indices("index_select", idx, x->shape[dim], dim));
  int64_t shape[LG_MAX_DIMS], m = lg_numel(idx);
  memcpy(shape, x->shape, sizeof shape);
  shape[dim] = m;
  LG_TRY(lg_new(shape, x->ndim, x->dtype, out));
  lg_status st = index_slices(*out, x, dim, idx, 0);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

/* gather(x, dim, idx): out[p] = x[p with p[dim] replaced by idx[p]]; out has idx's shape */
static lg_status gather_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *idx = a->in[1];
  int dim = a->dim;
  if (idx->ndim != x->ndim)
    return lg_error(LG_ESHAPE, "gather: index %s must have as many dimensions as the input %s", SHAPE(idx),
                    SHAPE(x));
  for (int d = 0; d < x->ndim; d++)
    if (d != dim && idx->shape[d] > x->shape[d])
      return lg_error(LG_ESHAPE, "gather: index %s is larger than the input %s at dimension %d", SHAPE(idx),
                      SHAPE(x), d + 1);
  LG_TRY(check_indices("gather", idx, x->shape[dim], dim));
  LG_TRY(lg_new(idx->shape, idx->ndim, x->dtype, out));
  int64_t n = lg_numel(idx), pos[LG_MAX_DIMS] = {0};
  size_t es = lg_dtype_size(x->dtype);
  const char *xb = lg_data(x);
  char *ob = lg_data(*out);
  for (int64_t i = 0; i < n; i++) {
    int64_t off = 0, ioff = 0;
    for (int d = 0; d < x->ndim; d++) ioff += pos[d] * idx->stride[d];
    int64_t k = ((const int64_t *)lg_data(idx))[ioff] - 1;
    for (int d = 0; d < x->ndim; d++) off += (d == dim ? k : pos[d]) * x->stride[d];
    memcpy(ob + i * (int64_t)es, xb + off * (int64_t)es, es);
    for (int d = x->ndim - 1; d >= 0 && ++pos[d] == idx->shape[d]; d--) pos[d] = 0;
  }
  return LG_OK;
}

/* cat(list, dim): join along dim; every other size must agree. 1-d empty tensors are skipped
** (PyTorch's legacy rule), so `cat({empty, x})` works. */
static lg_status cat_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  if (a->nlist < 1) return lg_error(LG_EVALUE, "cat: needs at least one tensor");
  lg_tensor *ref = NULL;
  lg_dtype dt = a->list[0]->dtype;
  for (int i = 0; i < a->nlist; i++) {
    lg_tensor *t = a->list[i];
    dt = i ? lg_promote(dt, t->dtype) : t->dtype;
    if (!(t->ndim == 1 && t->shape[0] == 0) && !ref) ref = t;
  }
  if (!ref) ref = a->list[0];
  int dim = a->dim;
  if (dim >= ref->ndim || ref->ndim == 0)
    return lg_error(LG_EINDEX, "cat: dimension %d out of range for %s", dim + 1, SHAPE(ref));
  int64_t shape[LG_MAX_DIMS];
  memcpy(shape, ref->shape, sizeof shape);
  shape[dim] = 0;
  for (int i = 0; i < a->nlist; i++) {
    lg_tensor *t = a->list[i];
    if (t->ndim == 1 && t->shape[0] == 0 && ref->ndim != 1) continue;
    if (t->ndim != ref->ndim)
      return lg_error(LG_ESHAPE, "cat: tensor %d has shape %s, expected %d dimensions like %s", i + 1,
                      SHAPE(t), ref->ndim, SHAPE(ref));
    for (int d = 0; d < t->ndim; d++)
      if (d != dim && t->shape[d] != ref->shape[d])
        return lg_error(LG_ESHAPE,
                        "cat: tensor %d has shape %s, which does not match %s except at dimension %d", i + 1,
                        SHAPE(t), SHAPE(ref), dim + 1);
    shape[dim] += t->shape[dim];
  }
  LG_TRY(lg_new(shape, ref->ndim, dt, out));
  int64_t at = 0;
  lg_status st = LG_OK;
  for (int i = 0; i < a->nlist && st == LG_OK; i++) {
    lg_tensor *t = a->list[i], *dst = NULL;
    if (t->ndim == 1 && t->shape[0] == 0 && ref->ndim != 1) continue;
    st = lg_narrow(*out, dim, at, t->shape[dim], &dst);
    if (st == LG_OK) st = lg_copy_(dst, t);
    lg_tensor_release(dst);
    at += t->shape[dim];
  }
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

/* index_add(src, dim, idx, shape): zeros of `shape`, then slice idx[i] of dim += slice i of src.
** The adjoint of index_select. */
static lg_status index_add_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *src = a->in[0], *idx = a->in[1];
  int dim = a->dim;
  int fits = a->nshape == src->ndim && idx->ndim == 1 && lg_numel(idx) == src->shape[dim];
  for (int d = 0; d < src->ndim && fits; d++) fits = d == dim || src->shape[d] == a->shape[d];
  if (!fits)
    return lg_error(LG_ESHAPE,
                    "index_add: source %s and indices %s do not fit the shape %s along dimension %d",
                    SHAPE(src), SHAPE(idx), SHAPEV(a->shape, a->nshape), dim + 1);
  LG_TRY(check_indices("index_add", idx, a->shape[dim], dim));
  LG_TRY(lg_tensor_zeros(a->shape, a->nshape, src->dtype, out));
  lg_status st = index_slices(*out, src, dim, idx, 1);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

/* scatter_add(src, dim, idx, shape): zeros of `shape`, then out[p with p[dim] = idx[p]] += src[p]
** for every position p of idx. The adjoint of gather. */
/* Position p of idx (row-major) adds src[p] at out[p with p[dim] = idx[p]]: the positions go row
** by row along the last dimension (one row is n contiguous elements of idx and src), and base is
** the offset in out of the row's first position with dim left out. */
#define SCATTER_ADD(name, T)                                                                                 \
  static void name(T *out, const T *src, const int64_t *ip, const int64_t *shape, int nd, int dim,           \
                   const int64_t *oshape) {                                                                  \
    int64_t ostride[LG_MAX_DIMS], pos[LG_MAX_DIMS] = {0}, base = 0;                                          \
    lg_contiguous_strides(oshape, nd, ostride);                                                              \
    int64_t n = nd ? shape[nd - 1] : 1, rows = n ? lg_shape_numel(shape, nd) / n : 0;                        \
    int last = dim == nd - 1 || nd == 0;                                                                     \
    for (int64_t r = 0; r < rows; r++, ip += n, src += n) {                                                  \
      if (last)                                                                                              \
        for (int64_t j = 0; j < n; j++) out[base + ip[j] - 1] += src[j];                                     \
      else                                                                                                   \
        for (int64_t j = 0; j < n; j++) out[base + (ip[j] - 1) * ostride[dim] + j] += src[j];                \
      for (int d = nd - 2; d >= 0; d--) { /* the next row; base follows it */                                \
        if (d != dim) base += ostride[d];                                                                    \
        if (++pos[d] < shape[d]) break;                                                                      \
        if (d != dim) base -= ostride[d] * pos[d];                                                           \
        pos[d] = 0;                                                                                          \
      }                                                                                                      \
    }                                                                                                        \
  }
SCATTER_ADD(scatter_add_f32, float)
SCATTER_ADD(scatter_add_f64, double)
SCATTER_ADD(scatter_add_i64, int64_t)

static lg_status scatter_add_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *src = a->in[0], *idx = a->in[1];
  int dim = a->dim;
  if (a->nshape != idx->ndim || src->ndim != idx->ndim ||
      memcmp(src->shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim))
    return lg_error(LG_ESHAPE, "scatter_add: source %s and indices %s must have one shape, of %d dimensions",
                    SHAPE(src), SHAPE(idx), a->nshape);
  for (int d = 0; d < idx->ndim; d++)
    if (d != dim && idx->shape[d] > a->shape[d])
      return lg_error(LG_ESHAPE, "scatter_add: indices %s are larger than the target %s at dimension %d",
                      SHAPE(idx), SHAPEV(a->shape, a->nshape), d + 1);
  LG_TRY(check_indices("scatter_add", idx, a->shape[dim], dim));
  lg_tensor *ic = NULL, *sc_ = NULL;
  lg_status st = lg_contiguous(idx, &ic);
  if (st == LG_OK) st = lg_contiguous(src, &sc_);
  if (st == LG_OK) st = lg_tensor_zeros(a->shape, a->nshape, src->dtype, out);
  if (st == LG_OK) {
    const int64_t *ip = lg_data(ic);
    void *o = lg_data(*out);
    const void *sp = lg_data(sc_);
    if (src->dtype == LG_FLOAT32)
      scatter_add_f32(o, sp, ip, idx->shape, idx->ndim, dim, a->shape);
    else if (src->dtype == LG_FLOAT64)
      scatter_add_f64(o, sp, ip, idx->shape, idx->ndim, dim, a->shape);
    else
      scatter_add_i64(o, sp, ip, idx->shape, idx->ndim, dim, a->shape);
  }
  lg_tensor_release(ic);
  lg_tensor_release(sc_);
  return st;
}

/* ---- rules: each of index_select/index_add and gather/scatter_add is the other's adjoint;
**      cat's gradient is g cut back into the inputs' pieces ---- */

static lg_tensor *sc_index_op(sc *s, lg_opcode op, lg_tensor *src, lg_tensor *idx, int dim,
                              const int64_t *shape, int nd) {
  lg_args a = {.in = {src, idx}, .nin = 2, .dim = dim, .nshape = nd};
  if (shape) memcpy(a.shape, shape, sizeof(int64_t) * (size_t)nd);
  return sc_op(s, op, a);
}
#define INDEX_RULES(name, ADJ, SHAPED)                                                                       \
  static lg_status name##_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {                              \
    sc s = {0};                                                                                              \
    const lg_edge *e = &n->edges[0];                                                                         \
    return sc_done(                                                                                          \
        &s,                                                                                                  \
        sc_index_op(&s, ADJ, g, n->args.in[1], n->args.dim, SHAPED ? e->shape : NULL, SHAPED ? e->ndim : 0), \
        &gin[0]);                                                                                            \
  }
#define index_select_jvp same_op_jvp
#define gather_jvp same_op_jvp
#define index_add_jvp same_op_jvp
#define scatter_add_jvp same_op_jvp
INDEX_RULES(index_select, LG_OP_INDEX_ADD, 1)
INDEX_RULES(gather, LG_OP_SCATTER_ADD, 1)
INDEX_RULES(index_add, LG_OP_INDEX_SELECT, 0)
INDEX_RULES(scatter_add, LG_OP_GATHER, 0)

static lg_status cat_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  int64_t at = 0;
  int dim = n->args.dim;
  for (int i = 0; i < n->nin; i++) {
    const lg_edge *e = &n->edges[i];
    if (e->ndim != g->ndim) continue; /* a skipped 1-d empty tensor */
    if (e->fn || e->leaf) {
      lg_args a = {.in = {g}, .nin = 1, .dim = dim, .start = at, .len = e->shape[dim]};
      LG_TRY(lg_apply(LG_OP_NARROW, &a, &gin[i]));
    }
    at += e->shape[dim];
  }
  return LG_OK;
}
static lg_status cat_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  lg_tensor **ts = calloc((size_t)a->nlist, sizeof *ts);
  if (!ts) return lg_error(LG_ENOMEM, "cat: out of memory");
  lg_status st = LG_OK;
  for (int i = 0; i < a->nlist && st == LG_OK; i++) {
    lg_tensor *x = a->list[i];
    ts[i] = tin[i] ? lg_tensor_retain(tin[i]) : NULL;
    if (!ts[i]) st = lg_tensor_zeros(x->shape, x->ndim, out->dtype, &ts[i]);
  }
  if (st == LG_OK) {
    lg_args b = {.list = ts, .nlist = a->nlist, .dim = a->dim};
    st = lg_apply(LG_OP_CAT, &b, tout);
  }
  lg_release_all(ts, a->nlist);
  free(ts);
  return st;
}

/* ==== 7. views and copies ====
** reshape (view when the layout allows, else a copy), expand, permute, narrow, select: the
** output shares the input's storage. Their rules apply the inverse shape change to g, and the
** same change to a tangent. pad (a constant, then x copied into a window along one dimension)
** is narrow's adjoint. clone and cast copy. */

/* reshape: mode 1 is view (an error when the layout needs a copy), mode 0 reshape */
static lg_status reshape_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return (a->mode ? lg_view : lg_reshape)(a->in[0], a->shape, a->nshape, out);
}
/* A tangent need not share its primal's layout (an input's tangent broadcast to the output is
** stride 0), so view's forward mode reshapes: it copies where a view of the tangent cannot be had. */
static lg_status reshape_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                             lg_tensor **tout) {
  lg_args b = *a;
  b.in[0] = tin[0];
  b.mode = 0;
  return lg_apply(LG_OP_RESHAPE, &b, tout);
}
static lg_status reshape_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  return sc_done(&s, sc_reshape(&s, g, n->edges[0].shape, n->edges[0].ndim), &gin[0]);
}

static lg_status expand_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return lg_expand(a->in[0], a->shape, a->nshape, out);
}
static lg_status pass_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) { /* the tape sums g back */
  gin[0] = lg_tensor_retain(g);
  return LG_OK;
}

static lg_status permute_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  int perm[LG_MAX_DIMS];
  for (int i = 0; i < a->nshape; i++) perm[i] = (int)a->shape[i];
  return lg_permute(a->in[0], perm, a->nshape, out);
}
static lg_status permute_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_args a = {.in = {g}, .nin = 1, .dim = -1, .nshape = n->args.nshape};
  for (int i = 0; i < a.nshape; i++) a.shape[n->args.shape[i]] = i;
  return lg_apply(LG_OP_PERMUTE, &a, &gin[0]);
}

static lg_status narrow_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return lg_narrow(a->in[0], a->dim, a->start, a->len, out);
}
static lg_status select_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return lg_select(a->in[0], a->dim, a->start, out);
}
/* pad(x, dim, start, shape, value): a tensor of `shape` filled with value (args.s[0]), x copied
** into the window that starts at `start` along dim. Backward: narrow g to the window. Forward
** mode: the tangent padded with zeros. */
static lg_status pad_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *win = NULL;
  if (a->nshape != x->ndim || a->dim < 0 || a->dim >= x->ndim || a->start < 0 ||
      a->shape[a->dim] - x->shape[a->dim] < a->start)
    return lg_error(LG_ESHAPE, "pad: %s does not fit into %s at %lld along dimension %d", SHAPE(x),
                    SHAPEV(a->shape, a->nshape), (long long)a->start + 1, a->dim + 1);
  for (int d = 0; d < x->ndim; d++)
    if (d != a->dim && a->shape[d] != x->shape[d])
      return lg_error(LG_ESHAPE, "pad: %s and %s differ in dimension %d", SHAPE(x),
                      SHAPEV(a->shape, a->nshape), d + 1);
  if (x->dtype == LG_INT64 && !(a->s[0] >= -9223372036854775808.0 && a->s[0] < 9223372036854775808.0))
    return lg_error(LG_EVALUE, "pad: value %g does not fit int64", a->s[0]);
  LG_TRY(lg_tensor_full(a->shape, a->nshape, x->dtype, a->s[0], out));
  lg_status st = lg_narrow(*out, a->dim, a->start, x->shape[a->dim], &win);
  if (st == LG_OK) st = lg_copy_(win, x);
  lg_tensor_release(win);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}
/* zeros of the input's shape (the edge's), g in the window at start along dim */
static lg_status pad_zeros(lg_tensor *g, const lg_edge *e, int dim, int64_t start, lg_tensor **out) {
  lg_args a = {.in = {g}, .nin = 1, .dim = dim, .start = start, .nshape = e->ndim};
  memcpy(a.shape, e->shape, sizeof a.shape);
  return lg_apply(LG_OP_PAD, &a, out);
}
static lg_status narrow_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  return pad_zeros(g, &n->edges[0], n->args.dim, n->args.start, &gin[0]);
}
static lg_status select_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *gu = sc_unsqueeze(&s, g, n->args.dim);
  if (s.st == LG_OK) s.st = pad_zeros(gu, &n->edges[0], n->args.dim, n->args.start, &gin[0]);
  lg_release_all(s.t, s.n);
  return s.st;
}
static lg_status pad_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_args a = {
      .in = {g}, .nin = 1, .dim = n->args.dim, .start = n->args.start, .len = n->edges[0].shape[n->args.dim]};
  return lg_apply(LG_OP_NARROW, &a, &gin[0]);
}
static lg_status pad_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                         lg_tensor **tout) {
  lg_args b = *a;
  b.in[0] = tin[0];
  b.s[0] = 0;
  return lg_apply(LG_OP_PAD, &b, tout);
}

/* as_strided(x, shape, stride, start) and strided_scatter(dst, src, shape, stride, start, mode):
** a window of a contiguous tensor, given as element strides and a start within it. In-place writes
** through views are recorded with these two (lg_assign_ in tape.c): the base becomes
** strided_scatter(base, r) (mode 0: the window replaced by r), the view as_strided(base).
**   as_strided       backward  strided_scatter(zeros(x), g, mode 1: added, so overlapping windows
**                              sum)                                forward mode  as_strided(t)
**   strided_scatter  backward  dst: g with the window replaced by zeros (mode 0) or g (mode 1);
**                              src: as_strided(g)                  forward mode  the same op on
**                                                                  the tangents */
static lg_status check_window(const char *op, const lg_tensor *x, const lg_args *a) {
  int64_t n = lg_numel(x), last = a->start, span;
  if (!lg_is_contiguous(x))
    return lg_error(LG_EVALUE, "%s: needs a contiguous tensor, got strides of %s", op, SHAPE(x));
  int empty = lg_shape_numel(a->shape, a->nshape) == 0, fits = a->nshape >= 0 && a->nshape <= LG_MAX_DIMS;
  for (int d = 0; d < a->nshape && fits; d++) {
    fits = a->shape[d] >= 0 && a->stride[d] >= 0;
    if (fits && !empty)
      fits = !lg_mul_ovf(a->shape[d] - 1, a->stride[d], &span) && !lg_add_ovf(last, span, &last);
  }
  if (!fits || a->start < 0 || (!empty && last >= n))
    return lg_error(LG_EINDEX, "%s: a window %s at %lld does not fit in %s", op,
                    fits ? SHAPEV(a->shape, a->nshape) : "(invalid)", (long long)a->start, SHAPE(x));
  return LG_OK;
}
static lg_status as_strided_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0];
  LG_TRY(check_window("as_strided", x, a));
  return lg_view_of(x, a->shape, a->stride, a->nshape, x->offset + a->start, out);
}
typedef struct {
  lg_dtype dt;
  int add;
} scatter_ctx;
static void scatter_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const scatter_ctx *c = ctx;
  for (int64_t i = 0; i < n; i++) {
    char *o = p[0] + i * s[0] * (int64_t)lg_dtype_size(c->dt);
    double v = lg_load(p[1] + i * s[1] * (int64_t)lg_dtype_size(c->dt), c->dt);
    lg_store(o, c->dt, c->add ? lg_load(o, c->dt) + v : v);
  }
}
static lg_status strided_scatter_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *dst = a->in[0], *src = a->in[1], *win = NULL;
  if (src->ndim != a->nshape || memcmp(src->shape, a->shape, sizeof(int64_t) * (size_t)src->ndim))
    return lg_error(LG_ESHAPE, "strided_scatter: source %s does not have the window's shape %s", SHAPE(src),
                    SHAPEV(a->shape, a->nshape));
  if (src->dtype != dst->dtype)
    return lg_error(LG_EDTYPE, "strided_scatter: source is %s, destination %s", lg_dtype_name(src->dtype),
                    lg_dtype_name(dst->dtype));
  LG_TRY(lg_copy_as(dst, dst->dtype, out));
  lg_status st = check_window("strided_scatter", *out, a);
  if (st == LG_OK) st = lg_view_of(*out, a->shape, a->stride, a->nshape, a->start, &win);
  if (st == LG_OK) { /* one pass in order, so that overlapping positions add up (mode 1) */
    lg_iter it;
    lg_iter_init(&it, win->shape, win->ndim);
    lg_iter_add(&it, win, NULL);
    lg_iter_add(&it, src, NULL);
    scatter_ctx c = {dst->dtype, a->mode};
    lg_iter_run(&it, scatter_row, &c);
  }
  lg_tensor_release(win);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}
static lg_tensor *sc_window(sc *s, lg_opcode code, lg_tensor *x, lg_tensor *src, const lg_args *geom,
                            int mode) {
  lg_args a = {.in = {x, src},
               .nin = src ? 2 : 1,
               .dim = -1,
               .nshape = geom->nshape,
               .start = geom->start,
               .mode = mode};
  memcpy(a.shape, geom->shape, sizeof a.shape);
  memcpy(a.stride, geom->stride, sizeof a.stride);
  return sc_op(s, code, a);
}
static lg_tensor *sc_contiguous(sc *s, lg_tensor *x) {
  return x ? sc_op(s, LG_OP_CLONE, (lg_args){.in = {x}, .nin = 1, .dim = -1}) : NULL;
}
static lg_tensor *sc_zeros(sc *s, const int64_t *shape, int nd, lg_dtype dt) {
  lg_tensor *z = NULL;
  if (s->st != LG_OK) return NULL;
  lg_status st = lg_tensor_zeros(shape, nd, dt, &z);
  return sc_keep(s, st, z);
}
static lg_status as_strided_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  const lg_edge *e = &n->edges[0];
  lg_tensor *z = sc_zeros(&s, e->shape, e->ndim, g->dtype);
  return sc_done(&s, sc_window(&s, LG_OP_STRIDED_SCATTER, z, g, &n->args, 1), &gin[0]);
}
static lg_status as_strided_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                lg_tensor **tout) {
  sc s = {0};
  return sc_done(&s, sc_window(&s, LG_OP_AS_STRIDED, sc_contiguous(&s, tin[0]), NULL, a, 0), tout);
}
static lg_status strided_scatter_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *gc = sc_contiguous(&s, g), *gd = NULL, *gs = NULL;
  if (n->needs[0])
    gd = n->args.mode ? gc
                      : sc_window(&s, LG_OP_STRIDED_SCATTER, gc,
                                  sc_zeros(&s, n->edges[1].shape, n->edges[1].ndim, g->dtype), &n->args, 0);
  if (n->needs[1]) gs = sc_window(&s, LG_OP_AS_STRIDED, gc, NULL, &n->args, 0);
  return sc_done2(&s, gd, &gin[0], gs, &gin[1]);
}
static lg_status strided_scatter_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                     lg_tensor **tout) {
  sc s = {0};
  lg_tensor *td = tin[0] ? tin[0] : sc_zeros(&s, a->in[0]->shape, a->in[0]->ndim, out->dtype);
  lg_tensor *ts = tin[1] ? tin[1] : sc_zeros(&s, a->in[1]->shape, a->in[1]->ndim, out->dtype);
  return sc_done(
      &s, sc_window(&s, LG_OP_STRIDED_SCATTER, sc_contiguous(&s, td), sc_contiguous(&s, ts), a, a->mode),
      tout);
}

static lg_status clone_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return lg_clone(a->in[0], out);
}
static lg_status cast_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  return lg_copy_as(a->in[0], (lg_dtype)a->mode, out);
}

/* Forward mode of every view and copy: the same op applied to the tangent. */
static lg_status same_op_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                             lg_tensor **tout) {
  lg_args b = *a;
  b.in[0] = tin[0];
  return lg_apply((lg_opcode)(op - lg_ops), &b, tout);
}

/* ==== the op table ====
** One row per lg_opcode, each under its own designator. The macros fill the fields a family
** shares; the row gives the rest. A unary row names its kernels and its derivative d_<name>:
** its backward and forward-mode rules are the shared unary_backward/unary_jvp. */

/* clang-format off */
#define SI LG_F_SAVE_IN
#define SO LG_F_SAVE_OUT
#define NG LG_F_NO_GRAD
#define K2(f32, f64) {K(f32), K(f64)}
#define RULES(name) .backward = name##_backward, .jvp = name##_jvp
/* y = f(x), f' given by d_<name>; exposed as t:name() and lg.name(t) */
#define UNARY_ROW(OP, nm, i64, fl, ...)                                                            \
  [LG_OP_##OP] = {.name = #nm, .arity = 1, .nout = 1, .forward = unary_forward,                    \
                  .kernel = {K(nm##_f32), K(nm##_f64), K(i64)}, .flags = fl,                       \
                  .backward = unary_backward, .jvp = unary_jvp, .deriv = d_##nm,                   \
                  .call = LG_CALL_UNARY, __VA_ARGS__}
/* the same with rules of its own (a derivative that is a constant or another op) */
#define UNARY_ROW_R(OP, nm, i64, fl, rules)                                                        \
  [LG_OP_##OP] = {.name = #nm, .arity = 1, .nout = 1, .forward = unary_forward,                    \
                  .kernel = {K(nm##_f32), K(nm##_f64), K(i64)}, .flags = fl, RULES(rules),         \
                  .call = LG_CALL_UNARY}
/* activations with named parameters (args.s, args.mode) */
#define ACTIVATION_ROW(OP, nm, ...)                                                                \
  [LG_OP_##OP] = {.name = #nm, .arity = 1, .nout = 1, .forward = unary_p_forward,                  \
                  .kernel = {K(nm##_f32), K(nm##_f64), NULL}, .flags = SI,                         \
                  .backward = unary_backward, .jvp = unary_jvp, .deriv = d_##nm,                   \
                  .call = LG_CALL_ACTIVATION, .params = __VA_ARGS__}
/* z = f(x, y) with broadcasting; exposed as t:name(u), lg.name(a, b) */
#define BINARY_ROW(OP, nm, i64, fl, ...)                                                           \
  [LG_OP_##OP] = {.name = #nm, .arity = 2, .nout = 1, .forward = binary_forward,                   \
                  .kernel = {K(nm##_f32), K(nm##_f64), K(i64)}, .flags = fl,                       \
                  .call = LG_CALL_BINARY, __VA_ARGS__}
/* reductions over everything or one dimension */
#define REDUCE_ROW(OP, nm, nout_, i64, fl, call_, ...)                                             \
  [LG_OP_##OP] = {.name = #nm, .arity = 1, .nout = nout_, .forward = reduce_forward,               \
                  .kernel = {K(nm##_f32), K(nm##_f64), K(i64)}, .flags = fl, .call = call_,        \
                  __VA_ARGS__}
/* views: the output shares the input's storage */
#define VIEW_ROW(OP, nm, bw, jvp_)                                                                 \
  [LG_OP_##OP] = {.name = #nm, .arity = 1, .nout = 1, .forward = nm##_forward,                     \
                  .flags = LG_F_VIEW, .backward = bw, .jvp = jvp_}
/* ops whose forward picks kernels itself */
#define ROW(OP, nm, arity_, nout_, forward_, fl, ...)                                              \
  [LG_OP_##OP] = {.name = #nm, .arity = arity_, .nout = nout_, .forward = forward_, .flags = fl,   \
                  __VA_ARGS__}

const lg_op lg_ops[LG_NUM_OPS] = {
  /* 1. unary elementwise */
  UNARY_ROW_R(NEG, neg, neg_i64, 0, neg),
  UNARY_ROW(EXP, exp, NULL, SO, .fused_bw = K2(exp_bw_f32, exp_bw_f64)),
  UNARY_ROW(LOG, log, NULL, SI),
  UNARY_ROW(SQRT, sqrt, NULL, SO),
  UNARY_ROW(RSQRT, rsqrt, NULL, SO),
  UNARY_ROW(ABS, abs, abs_i64, SI),
  UNARY_ROW(SIN, sin, NULL, SI),
  UNARY_ROW(COS, cos, NULL, SI),
  UNARY_ROW(TANH, tanh, NULL, SO, .fused_bw = K2(tanh_bw_f32, tanh_bw_f64)),
  UNARY_ROW(SIGMOID, sigmoid, NULL, SO, .fused_bw = K2(sigmoid_bw_f32, sigmoid_bw_f64)),
  UNARY_ROW(RELU, relu, relu_i64, SI, .fused_bw = K2(relu_bw_f32, relu_bw_f64)),
  UNARY_ROW_R(SIGN, sign, sign_i64, 0, zero),
  UNARY_ROW_R(FLOOR, floor, copy_i64, 0, zero),
  UNARY_ROW_R(CEIL, ceil, copy_i64, 0, zero),
  UNARY_ROW_R(ROUND, round, copy_i64, 0, zero),
  UNARY_ROW(LOG1P, log1p, NULL, SI),
  UNARY_ROW(EXPM1, expm1, NULL, SO),
  UNARY_ROW(RECIPROCAL, reciprocal, NULL, SO),
  UNARY_ROW(SQUARE, square, square_i64, SI),
  UNARY_ROW(ERF, erf, NULL, SI),
  UNARY_ROW(TAN, tan, NULL, SO),
  UNARY_ROW(ATAN, atan, NULL, SI),
  UNARY_ROW(SINH, sinh, NULL, SI),
  UNARY_ROW(COSH, cosh, NULL, SI),
  UNARY_ROW(LOG2, log2, NULL, SI),
  UNARY_ROW(LOG10, log10, NULL, SI),
  UNARY_ROW_R(TRUNC, trunc, copy_i64, 0, zero),

  /* gelu's row spelled out: its backward fuses the tanh form (gelu_backward) */
  [LG_OP_GELU] = {.name = "gelu", .arity = 1, .nout = 1, .forward = unary_p_forward,
                  .kernel = {K(gelu_f32), K(gelu_f64), NULL}, .flags = SI, .backward = gelu_backward,
                  .jvp = unary_jvp, .deriv = d_gelu, .call = LG_CALL_ACTIVATION,
                  .params = {.mode_key = "approximate", .modes = {"none", "tanh"}}},
  ACTIVATION_ROW(LEAKY_RELU, leaky_relu, {.name = {"negative_slope"}, .def = {0.01}}),
  ACTIVATION_ROW(ELU, elu, {.name = {"alpha"}, .def = {1.0}}),
  ACTIVATION_ROW(SOFTPLUS, softplus, {.name = {"beta", "threshold"}, .def = {1.0, 20.0}}),
  ACTIVATION_ROW(SILU, silu, {.name = {NULL}}),

  /* 2. binary elementwise */
  BINARY_ROW(ADD, add, add_i64, LG_F_INPLACE, RULES(add)),
  BINARY_ROW(SUB, sub, sub_i64, LG_F_INPLACE, RULES(sub)),
  BINARY_ROW(MUL, mul, mul_i64, SI | LG_F_INPLACE, RULES(mul)),
  BINARY_ROW(DIV, div, NULL, SI | LG_F_INPLACE, RULES(div)),
  BINARY_ROW(POW, pow, pow_i64, SI | SO | LG_F_INPLACE, RULES(pow)),
  BINARY_ROW(MAXIMUM, maximum, maximum_i64, SI, RULES(maximum)),
  BINARY_ROW(MINIMUM, minimum, minimum_i64, SI, RULES(minimum)),
  BINARY_ROW(FLOOR_DIVIDE, floor_divide, floor_divide_i64, LG_F_INT_DIVIDES, .backward = zero2_backward,
             .jvp = zero_jvp),
  BINARY_ROW(REMAINDER, remainder, remainder_i64, LG_F_INT_DIVIDES | SI, RULES(remainder)),
  BINARY_ROW(ATAN2, atan2, NULL, SI, RULES(atan2)),
  BINARY_ROW(EQ, eq, eq_i64, NG),
  BINARY_ROW(NE, ne, ne_i64, NG),
  BINARY_ROW(LT, lt, lt_i64, NG),
  BINARY_ROW(LE, le, le_i64, NG),
  BINARY_ROW(GT, gt, gt_i64, NG),
  BINARY_ROW(GE, ge, ge_i64, NG),

  /* 3. where, clamp */
  ROW(WHERE, where, 3, 1, where_forward, SI, RULES(where)),
  ROW(CLAMP, clamp, 1, 1, clamp_forward, SI, RULES(clamp)),

  /* 4. reductions (sum and mean also take several dimensions; max, min and norm are bound by hand) */
  REDUCE_ROW(SUM, sum, 1, sum_i64, 0, LG_CALL_NONE, RULES(sum)),
  REDUCE_ROW(MEAN, mean, 1, NULL, LG_F_FLOAT_OUT, LG_CALL_NONE, RULES(mean)),
  REDUCE_ROW(VAR, var, 1, NULL, LG_F_FLOAT_OUT | SI, LG_CALL_REDUCE, RULES(var)),
  REDUCE_ROW(STD, std, 1, NULL, LG_F_FLOAT_OUT | SI | SO, LG_CALL_REDUCE, RULES(std)),
  REDUCE_ROW(PROD, prod, 1, prod_i64, SI | SO, LG_CALL_REDUCE, RULES(prod)),
  REDUCE_ROW(NORM, norm, 1, NULL, LG_F_FLOAT_OUT | SI | SO, LG_CALL_NONE, RULES(norm)),
  REDUCE_ROW(LOGSUMEXP, logsumexp, 1, NULL, LG_F_FLOAT_OUT | SI | SO, LG_CALL_REDUCE, RULES(logsumexp)),
  REDUCE_ROW(MAX, max, 2, max_i64, SI | SO, LG_CALL_NONE, RULES(max)),
  REDUCE_ROW(MIN, min, 2, min_i64, SI | SO, LG_CALL_NONE, RULES(min)),
  REDUCE_ROW(ARGMAX, argmax, 1, argmax_i64, LG_F_INDEX_OUT | NG, LG_CALL_REDUCE),
  REDUCE_ROW(ARGMIN, argmin, 1, argmin_i64, LG_F_INDEX_OUT | NG, LG_CALL_REDUCE),
  ROW(SOFTMAX, softmax, 1, 1, softmax_forward, SO, .kernel = {K(softmax_rows_f32), K(softmax_rows_f64)},
      RULES(softmax), .call = LG_CALL_DIM),
  ROW(LOG_SOFTMAX, log_softmax, 1, 1, softmax_forward, SO,
      .kernel = {K(softmax_rows_f32), K(softmax_rows_f64)}, RULES(log_softmax), .call = LG_CALL_DIM),

  /* 5. matmul */
  ROW(MATMUL, matmul, 2, 1, lg_matmul_forward, SI, RULES(matmul)),

  /* 6. indexing */
  ROW(INDEX_SELECT, index_select, 2, 1, index_select_forward, SI, RULES(index_select)),
  ROW(GATHER, gather, 2, 1, gather_forward, SI, RULES(gather)),
  ROW(CAT, cat, -1, 1, cat_forward, 0, RULES(cat)),
  ROW(INDEX_ADD, index_add, 2, 1, index_add_forward, SI, RULES(index_add)),
  ROW(SCATTER_ADD, scatter_add, 2, 1, scatter_add_forward, SI, RULES(scatter_add)),

  /* 7. views and copies */
  VIEW_ROW(RESHAPE, reshape, reshape_backward, reshape_jvp),
  VIEW_ROW(EXPAND, expand, pass_backward, same_op_jvp),
  VIEW_ROW(PERMUTE, permute, permute_backward, same_op_jvp),
  VIEW_ROW(NARROW, narrow, narrow_backward, same_op_jvp),
  VIEW_ROW(SELECT, select, select_backward, same_op_jvp),
  ROW(PAD, pad, 1, 1, pad_forward, 0, RULES(pad)),
  ROW(AS_STRIDED, as_strided, 1, 1, as_strided_forward, LG_F_VIEW, RULES(as_strided)),
  ROW(STRIDED_SCATTER, strided_scatter, 2, 1, strided_scatter_forward, 0, RULES(strided_scatter)),
  ROW(CLONE, clone, 1, 1, clone_forward, 0, .backward = pass_backward, .jvp = same_op_jvp),
  ROW(CAST, cast, 1, 1, cast_forward, 0, .backward = pass_backward, .jvp = same_op_jvp),

  /* fused layers (norm.c, loss.c, matmul.c) */
  ROW(BATCH_NORM, batch_norm, 3, 3, lg_batch_norm_forward, SI | LG_F_SAVE_AUX, RULES(lg_batch_norm)),
  ROW(LAYER_NORM, layer_norm, 3, 3, lg_layer_norm_forward, SI | LG_F_SAVE_AUX, RULES(lg_layer_norm)),
  ROW(CROSS_ENTROPY, cross_entropy, 2, 2, lg_cross_entropy_forward, SI | LG_F_SAVE_AUX,
      RULES(lg_cross_entropy)),
  ROW(LINEAR, linear, 3, 1, lg_linear_forward, SI, RULES(lg_linear)),

  /* convolution (conv.c): shape[0..5] stride, padding, dilation (h, w); mode groups */
  ROW(CONV2D, conv2d, 3, 1, lg_conv2d_forward, SI, RULES(lg_conv2d)),
  ROW(CONV2D_GRAD_INPUT, conv2d_grad_input, 2, 1, lg_conv2d_grad_input_forward, SI, RULES(lg_conv2d_grad_input)),
  ROW(CONV2D_GRAD_WEIGHT, conv2d_grad_weight, 2, 1, lg_conv2d_grad_weight_forward, SI, RULES(lg_conv2d_grad_weight)),

  /* pooling (pool.c) */
  ROW(MAX_POOL2D, max_pool2d, 1, 2, lg_max_pool2d_forward, LG_F_SAVE_AUX, RULES(lg_max_pool2d)),
  ROW(AVG_POOL2D, avg_pool2d, 1, 1, lg_avg_pool2d_forward, 0, RULES(lg_avg_pool2d)),
  ROW(AVG_POOL2D_BACKWARD, avg_pool2d_backward, 1, 1, lg_avg_pool2d_backward_forward, 0,
      RULES(lg_avg_pool2d_backward)),

  /* sequence ops (seq.c) */
  ROW(EMBEDDING, embedding, 2, 1, lg_embedding_forward, SI, RULES(lg_embedding)),
  ROW(MASKED_FILL, masked_fill, 2, 1, lg_masked_fill_forward, SI, RULES(lg_masked_fill)),
  ROW(TRIL, tril, 1, 1, lg_triangle_forward, 0, RULES(lg_triangle)),
  ROW(TRIU, triu, 1, 1, lg_triangle_forward, 0, RULES(lg_triangle)),
  ROW(SORT, sort, 1, 2, lg_sort_forward, LG_F_SAVE_AUX, RULES(lg_sort)),
  ROW(TOPK, topk, 1, 2, lg_sort_forward, LG_F_SAVE_AUX, RULES(lg_sort)),
  ROW(CUMSUM, cumsum, 1, 1, lg_cumsum_forward, 0, RULES(lg_cumsum)),
  /* attention (attention.c): q, k, v and an optional mask; s[0] scale, mode 1 causal; saves lse */
  ROW(SCALED_DOT_PRODUCT_ATTENTION, scaled_dot_product_attention, 4, 2, lg_attention_forward,
      SI | LG_F_SAVE_AUX, RULES(lg_attention)),
};
/* clang-format on */

/* ==== applying ops ==== */

/* Forward mode: the output's tangent from the inputs' tangents, by the op's JVP rule (run with
** forward mode off, so the rule's own ops do not propagate tangents again). */
static lg_status propagate_tangent(const lg_op *op, const lg_args *a, lg_tensor *out) {
  lg_tensor *const *ins = op->arity < 0 ? a->list : a->in;
  int nin = op->arity < 0 ? a->nlist : a->nin, any = 0;
  lg_tensor *tin_inline[LG_MAX_INPUTS] = {NULL}, **tin = tin_inline;
  for (int i = 0; i < nin; i++) {
    if (ins[i] && ins[i]->base && ins[i]->base_tgen != ins[i]->base->tan_gen)
      LG_TRY(lg_view_refresh_tangent(ins[i]));
    any |= ins[i] && ins[i]->tangent;
  }
  if (!any || !lg_dtype_is_float(out->dtype)) return LG_OK;
  if (nin > LG_MAX_INPUTS && !(tin = calloc((size_t)nin, sizeof *tin)))
    return lg_error(LG_ENOMEM, "%s: out of memory", op->name);
  for (int i = 0; i < nin; i++) tin[i] = ins[i] ? ins[i]->tangent : NULL;
  /* A rule that reads the output (exp: t * out) may record ops that save it. While out has a
  ** history it sees an alias instead, which holds out's node but not out: out -> tangent -> node
  ** -> out would be a cycle that reference counts never free. */
  lg_tensor *o = out;
  lg_status st = LG_OK;
  if (out->grad_fn && (st = lg_alias(out, &o)) == LG_OK) {
    o->grad_fn = out->grad_fn;
    o->grad_fn->refcount++;
    o->requires_grad = 1;
  }
  int level = lg_fw_level();
  lg_fw_level_set(0);
  lg_tensor *t = NULL;
  if (st == LG_OK) st = op->jvp(op, a, o, tin, &t);
  lg_fw_level_set(level);
  if (o != out) lg_tensor_release(o);
  if (tin != tin_inline) free(tin);
  if (st == LG_OK && t && t->dtype != out->dtype) {
    lg_tensor *c;
    st = lg_to_dtype(t, out->dtype, &c);
    lg_tensor_release(t);
    t = st == LG_OK ? c : NULL;
  }
  /* a rule may return a tangent of an input's shape (a + b with tb = 0): broadcast it to the
  ** output's shape here, in one place, as the tape sums gradients back in one place */
  if (st == LG_OK && t &&
      (t->ndim != out->ndim || memcmp(t->shape, out->shape, sizeof(int64_t) * (size_t)out->ndim))) {
    lg_tensor *e;
    st = lg_expand(t, out->shape, out->ndim, &e);
    lg_tensor_release(t);
    t = st == LG_OK ? e : NULL;
  }
  if (st == LG_OK) st = lg_check_anomaly("forward-mode tangent", op->name, t);
  if (st == LG_OK)
    out->tangent = t;
  else
    lg_tensor_release(t);
  return st;
}

lg_status lg_apply(lg_opcode code, const lg_args *a, lg_tensor **out) {
  const lg_op *op = &lg_ops[code];
  /* args.dim is 0-based, or -1 where it means "all": never past the first input's dimensions (a
  ** 0-d tensor has the one dimension 0) */
  if (op->arity > 0 && a->nin > 0 && a->in[0] && a->dim >= (a->in[0]->ndim > 0 ? a->in[0]->ndim : 1))
    return lg_error(LG_EINDEX, "%s: dimension %d out of range for %s", op->name, a->dim + 1, SHAPE(a->in[0]));
  LG_TRY(op->forward(op, a, out));
  lg_status st = lg_check_anomaly("forward", op->name, out[0]);
  if (st == LG_OK && op->backward && lg_grad_enabled()) st = lg_tape_record(code, a, out);
  if (st == LG_OK && op->jvp && lg_fw_level() > 0) st = propagate_tangent(op, a, out[0]);
  if (st != LG_OK) /* the caller's slots must not keep what was freed */
    for (int i = 0; i < op->nout; i++) {
      lg_tensor_release(out[i]);
      out[i] = NULL;
    }
  return st;
}

lg_status lg_unary(lg_opcode op, lg_tensor *x, lg_tensor **out) {
  lg_args a = {.in = {x}, .nin = 1, .dim = -1};
  return lg_apply(op, &a, out);
}

lg_status lg_binary(lg_opcode op, lg_tensor *x, lg_tensor *y, lg_tensor **out) {
  lg_args a = {.in = {x, y}, .nin = 2, .dim = -1};
  return lg_apply(op, &a, out);
}

lg_status lg_binary_scalar(lg_opcode op, lg_tensor *x, double s, int scalar_first, lg_tensor **out) {
  lg_tensor *st;
  LG_TRY(lg_scalar_like(s, x->dtype, &st));
  lg_status r = scalar_first ? lg_binary(op, st, x, out) : lg_binary(op, x, st, out);
  lg_tensor_release(st);
  return r;
}

lg_status lg_reduce(lg_opcode op, lg_tensor *x, int dim, int keepdim, lg_tensor **out) {
  lg_args a = {.in = {x}, .nin = 1, .dim = dim, .keepdim = keepdim, .s = {op == LG_OP_NORM ? 2 : 1}};
  if (lg_ops[op].nout == 2) {
    lg_tensor *o[2];
    LG_TRY(lg_apply(op, &a, o));
    lg_tensor_release(o[1]);
    *out = o[0];
    return LG_OK;
  }
  return lg_apply(op, &a, out);
}

lg_status lg_matmul(lg_tensor *x, lg_tensor *y, lg_tensor **out) {
  lg_args a = {.in = {x, y}, .nin = 2, .dim = -1};
  return lg_apply(LG_OP_MATMUL, &a, out);
}
