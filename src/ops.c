/*
** ops.c: the op table. Every computing operation is one row of lg_ops[] (at the end of this
** file): its name, arity, number of outputs, forward function and per-dtype kernels. Sections
** below hold each family's kernels and the forward function they share:
**
**   1. unary elementwise     y = f(x)
**   2. binary elementwise    z = f(x, y), numpy broadcasting
**   3. where, clamp
**   4. reductions            over everything, or one dimension with keepdim
**   5. indexing              index_select, gather, cat
**   (matmul's forward lives in matmul.c, beside its BLAS driver)
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
typedef void (*reduce_k)(const char *x, int64_t rows, int64_t R, char *out, int64_t *idx,
                         const lg_args *a);

#define K(f) ((lg_kernel)(f))

/* ==== 1. unary elementwise ==== */

#define UNARY(name, T, expr)                                                                       \
  static void name(int64_t n, char *o_, int64_t so, const char *x_, int64_t sx) {                 \
    T *restrict o = (T *)o_;                                                                       \
    const T *restrict xp = (const T *)x_;                                                          \
    if (so == 1 && sx == 1)                                                                        \
      for (int64_t i = 0; i < n; i++) {                                                            \
        T x = xp[i];                                                                               \
        o[i] = (expr);                                                                             \
      }                                                                                            \
    else                                                                                           \
      for (int64_t i = 0; i < n; i++) {                                                            \
        T x = xp[i * sx];                                                                          \
        o[i * so] = (expr);                                                                        \
      }                                                                                            \
  }

/* integer negation and abs wrap around at INT64_MIN instead of overflowing */
static inline int64_t neg_i(int64_t x) { return (int64_t)(0 - (uint64_t)x); }
static inline float sigmoid_f(float x) { return x >= 0 ? 1 / (1 + expf(-x)) : expf(x) / (1 + expf(x)); }
static inline double sigmoid_d(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

UNARY(neg_f32, float, -x)
UNARY(neg_f64, double, -x)
UNARY(neg_i64, int64_t, neg_i(x))
UNARY(exp_f32, float, expf(x))
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
UNARY(tanh_f32, float, tanhf(x))
UNARY(tanh_f64, double, tanh(x))
UNARY(sigmoid_f32, float, sigmoid_f(x))
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
UNARY(copy_i64, int64_t, x)          /* floor, ceil, round of integers */
UNARY(log1p_f32, float, log1pf(x))
UNARY(log1p_f64, double, log1p(x))
UNARY(expm1_f32, float, expm1f(x))
UNARY(expm1_f64, double, expm1(x))
UNARY(reciprocal_f32, float, 1 / x)
UNARY(reciprocal_f64, double, 1 / x)
UNARY(square_f32, float, x * x)
UNARY(square_f64, double, x * x)
UNARY(square_i64, int64_t, (int64_t)((uint64_t)x * (uint64_t)x))

static void unary_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  ((unary_k)ctx)(n, p[0], s[0], p[1], s[1]);
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

/* ==== 2. binary elementwise, broadcasting ==== */

#define BINARY(name, T, expr)                                                                      \
  static void name(int64_t n, char *o_, int64_t so, const char *a_, int64_t sa, const char *b_,   \
                   int64_t sb) {                                                                   \
    T *restrict o = (T *)o_;                                                                       \
    const T *restrict ap = (const T *)a_, *restrict bp = (const T *)b_;                           \
    if (so == 1 && sa == 1 && sb == 1)                                                             \
      for (int64_t i = 0; i < n; i++) {                                                            \
        T x = ap[i], y = bp[i];                                                                    \
        o[i] = (expr);                                                                             \
      }                                                                                            \
    else if (so == 1 && sa == 1 && sb == 0) {                                                      \
      T y = bp[0];                                                                                 \
      for (int64_t i = 0; i < n; i++) {                                                            \
        T x = ap[i];                                                                               \
        o[i] = (expr);                                                                             \
      }                                                                                            \
    } else                                                                                         \
      for (int64_t i = 0; i < n; i++) {                                                            \
        T x = ap[i * sa], y = bp[i * sb];                                                          \
        o[i * so] = (expr);                                                                        \
      }                                                                                            \
  }

/* integer arithmetic wraps (two's complement) rather than overflowing */
#define WRAP(op) ((int64_t)((uint64_t)x op (uint64_t)y))
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
BINARY(mul_f32, float, x * y)
BINARY(mul_f64, double, x * y)
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

static void binary_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  ((binary_k)ctx)(n, p[0], s[0], p[1], s[1], p[2], s[2]);
}

static int has_zero_i64(lg_tensor *t) {
  int64_t n = lg_numel(t);
  for (int64_t i = 0; i < n; i++)
    if (lg_get_flat_i64(t, i) == 0) return 1;
  return 0;
}

static lg_status binary_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *y = a->in[1], *tx = NULL, *ty = NULL;
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

/* ==== 3. where, clamp ==== */

/* where(mask, a, b): a where mask is nonzero, else b; all three broadcast together. */
typedef struct { lg_dtype mdt, dt; } where_ctx;

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
typedef struct { double lo, hi; int has_lo, has_hi; lg_dtype dt; } clamp_ctx;

#define CLAMP_ROW(name, T)                                                                         \
  static void name(const clamp_ctx *c, int64_t n, char *o_, int64_t so, const char *x_, int64_t sx) { \
    T *o = (T *)o_;                                                                                \
    const T *xp = (const T *)x_;                                                                   \
    T lo = (T)c->lo, hi = (T)c->hi;                                                                \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T x = xp[i * sx];                                                                            \
      if (c->has_lo && x < lo) x = lo;                                                             \
      if (c->has_hi && x > hi) x = hi;                                                             \
      o[i * so] = x;                                                                               \
    }                                                                                              \
  }
CLAMP_ROW(clamp_f32, float)
CLAMP_ROW(clamp_f64, double)
CLAMP_ROW(clamp_i64, int64_t)

static void clamp_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const clamp_ctx *c = ctx;
  switch (c->dt) {
  case LG_FLOAT32: clamp_f32(c, n, p[0], s[0], p[1], s[1]); break;
  case LG_FLOAT64: clamp_f64(c, n, p[0], s[0], p[1], s[1]); break;
  default: clamp_i64(c, n, p[0], s[0], p[1], s[1]); break;
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

/* ==== 4. reductions ====
** The reduced dimension is moved last and the input made contiguous, so each kernel reduces
** `rows` contiguous rows of length R. Float32 sums accumulate in double. */

#define REDUCE(name, T, TO, init, step, fin)                                                       \
  static void name(const char *x_, int64_t rows, int64_t R, char *o_, int64_t *idx,              \
                   const lg_args *a) {                                                             \
    const T *x = (const T *)x_;                                                                    \
    TO *o = (TO *)o_;                                                                              \
    for (int64_t r = 0; r < rows; r++, x += R) {                                                   \
      init;                                                                                        \
      for (int64_t i = 0; i < R; i++) {                                                            \
        step;                                                                                      \
      }                                                                                            \
      o[r] = (TO)(fin);                                                                            \
    }                                                                                              \
  }

REDUCE(sum_f32, float, float, double acc = 0, acc += x[i], acc)
REDUCE(sum_f64, double, double, double acc = 0, acc += x[i], acc)
REDUCE(sum_i64, int64_t, int64_t, uint64_t acc = 0, acc += (uint64_t)x[i], (int64_t)acc)
REDUCE(mean_f32, float, float, double acc = 0, acc += x[i], R ? acc / (double)R : NAN)
REDUCE(mean_f64, double, double, double acc = 0, acc += x[i], R ? acc / (double)R : NAN)
REDUCE(prod_f32, float, float, double acc = 1, acc *= x[i], acc)
REDUCE(prod_f64, double, double, double acc = 1, acc *= x[i], acc)
REDUCE(prod_i64, int64_t, int64_t, uint64_t acc = 1, acc *= (uint64_t)x[i], (int64_t)acc)

/* variance with a correction (1 = unbiased): two passes, mean first */
static double var_row_f64(const double *x, int64_t R, double corr) {
  double m = 0, ss = 0;
  for (int64_t i = 0; i < R; i++) m += x[i];
  m /= (double)R;
  for (int64_t i = 0; i < R; i++) ss += (x[i] - m) * (x[i] - m);
  return (double)R - corr > 0 ? ss / ((double)R - corr) : (R ? (ss == 0 && R - corr == 0 ? NAN : INFINITY) : NAN);
}
static double var_row_f32(const float *x, int64_t R, double corr) {
  double m = 0, ss = 0;
  for (int64_t i = 0; i < R; i++) m += x[i];
  m /= (double)R;
  for (int64_t i = 0; i < R; i++) ss += ((double)x[i] - m) * ((double)x[i] - m);
  return (double)R - corr > 0 ? ss / ((double)R - corr) : (R ? (ss == 0 && R - corr == 0 ? NAN : INFINITY) : NAN);
}
REDUCE(var_f32, float, float, (void)0, (void)0, var_row_f32(x, R, a->s[0]))
REDUCE(var_f64, double, double, (void)0, (void)0, var_row_f64(x, R, a->s[0]))
REDUCE(std_f32, float, float, (void)0, (void)0, sqrt(var_row_f32(x, R, a->s[0])))
REDUCE(std_f64, double, double, (void)0, (void)0, sqrt(var_row_f64(x, R, a->s[0])))

/* p-norm: p = inf gives max |x|, p = 0 counts nonzeros */
#define NORM_ROW(name, T)                                                                          \
  static double name(const T *x, int64_t R, double p) {                                            \
    double acc = 0;                                                                                \
    if (isinf(p) && p > 0) { for (int64_t i = 0; i < R; i++) { double v = fabs((double)x[i]); if (v > acc || v != v) acc = v; } return acc; } \
    if (isinf(p)) { acc = INFINITY; for (int64_t i = 0; i < R; i++) { double v = fabs((double)x[i]); if (v < acc || v != v) acc = v; } return acc; } \
    if (p == 0) { for (int64_t i = 0; i < R; i++) acc += x[i] != 0; return acc; }                \
    if (p == 1) { for (int64_t i = 0; i < R; i++) acc += fabs((double)x[i]); return acc; }        \
    if (p == 2) { for (int64_t i = 0; i < R; i++) acc += (double)x[i] * (double)x[i]; return sqrt(acc); } \
    for (int64_t i = 0; i < R; i++) acc += pow(fabs((double)x[i]), p);                             \
    return pow(acc, 1 / p);                                                                        \
  }
NORM_ROW(norm_row_f32, float)
NORM_ROW(norm_row_f64, double)
REDUCE(norm_f32, float, float, (void)0, (void)0, norm_row_f32(x, R, a->s[0]))
REDUCE(norm_f64, double, double, (void)0, (void)0, norm_row_f64(x, R, a->s[0]))

/* logsumexp = m + log(sum exp(x - m)), m = max x; all -inf gives -inf */
#define LSE_ROW(name, T)                                                                           \
  static double name(const T *x, int64_t R) {                                                      \
    double m = -INFINITY, s = 0;                                                                   \
    for (int64_t i = 0; i < R; i++) if (x[i] > m || x[i] != x[i]) m = x[i];                        \
    if (m != m) return m;                                                                          \
    if (isinf(m)) return m;                                                                        \
    for (int64_t i = 0; i < R; i++) s += exp((double)x[i] - m);                                    \
    return m + log(s);                                                                             \
  }
LSE_ROW(lse_row_f32, float)
LSE_ROW(lse_row_f64, double)
REDUCE(logsumexp_f32, float, float, (void)0, (void)0, lse_row_f32(x, R))
REDUCE(logsumexp_f64, double, double, (void)0, (void)0, lse_row_f64(x, R))

/* max/min (values and 1-based indices) and argmax/argmin (indices only); the first NaN wins,
** then the first extreme value */
#define EXTREME(name, T, better, VALUES)                                                           \
  static void name(const char *x_, int64_t rows, int64_t R, char *o_, int64_t *idx,               \
                   const lg_args *a) {                                                             \
    const T *x = (const T *)x_;                                                                    \
    for (int64_t r = 0; r < rows; r++, x += R) {                                                   \
      int64_t k = 0;                                                                               \
      T v = x[0];                                                                                  \
      for (int64_t i = 1; i < R && v == v; i++)                                                    \
        if (x[i] != x[i] || x[i] better v) { v = x[i]; k = i; }                                    \
      if (VALUES) { ((T *)o_)[r] = v; if (idx) idx[r] = k + 1; }                                   \
      else ((int64_t *)o_)[r] = k + 1;                                                             \
    }                                                                                              \
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

static int is_extreme(const lg_op *op) { return op == &lg_ops[LG_OP_MAX] || op == &lg_ops[LG_OP_MIN] || (op->flags & LG_F_INDEX_OUT); }

static lg_status reduce_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *moved = NULL, *xc = NULL;
  int dim = a->dim;
  int64_t oshape[LG_MAX_DIMS], R, rows;
  int ond = 0;
  if (dim >= 0) {
    R = x->shape[dim];
    for (int i = 0; i < x->ndim; i++)
      if (i != dim) oshape[ond++] = x->shape[i];
      else if (a->keepdim) oshape[ond++] = 1;
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
  if (st == LG_OK) st = (lg_is_contiguous(x) && x->dtype == dt) ? (xc = lg_tensor_retain(x), LG_OK) : lg_copy_as(x, dt, &xc);
  lg_tensor *vals = NULL, *idx = NULL;
  int index_out = (op->flags & LG_F_INDEX_OUT) != 0;
  if (st == LG_OK) st = lg_new(oshape, ond, index_out ? LG_INT64 : dt, &vals);
  if (st == LG_OK && op->nout == 2) st = lg_new(oshape, ond, LG_INT64, &idx);
  if (st == LG_OK) {
    ((reduce_k)op->kernel[dt])((const char *)lg_data(xc), rows, R, (char *)lg_data(vals), idx ? lg_data(idx) : NULL, a);
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

/* ==== 5. indexing ==== */

/* Checks that every (1-based) index in idx lies in 1..n. */
static lg_status check_indices(const char *op, lg_tensor *idx, int64_t n, int dim) {
  if (idx->dtype != LG_INT64)
    return lg_error(LG_EDTYPE, "%s: indices must be int64, got %s", op, lg_dtype_name(idx->dtype));
  int64_t m = lg_numel(idx);
  for (int64_t i = 0; i < m; i++) {
    int64_t v = lg_get_flat_i64(idx, i);
    if (v < 1 || v > n)
      return lg_error(LG_EINDEX, "%s: index %lld out of range 1..%lld of dimension %d", op, (long long)v,
                      (long long)n, dim + 1);
  }
  return LG_OK;
}

/* index_select(x, dim, idx): out[..., i, ...] = x[..., idx[i], ...] for a 1-d idx */
static lg_status index_select_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *idx = a->in[1];
  int dim = a->dim;
  if (idx->ndim > 1)
    return lg_error(LG_ESHAPE, "index_select: indices must be 1-d, got %s", SHAPE(idx));
  LG_TRY(check_indices("index_select", idx, x->shape[dim], dim));
  int64_t shape[LG_MAX_DIMS], m = lg_numel(idx);
  memcpy(shape, x->shape, sizeof shape);
  shape[dim] = m;
  LG_TRY(lg_new(shape, x->ndim, x->dtype, out));
  lg_status st = LG_OK;
  for (int64_t i = 0; i < m && st == LG_OK; i++) {
    lg_tensor *src = NULL, *dst = NULL;
    st = lg_select(x, dim, lg_get_flat_i64(idx, i) - 1, &src);
    if (st == LG_OK) st = lg_select(*out, dim, i, &dst);
    if (st == LG_OK) st = lg_copy_(dst, src);
    lg_tensor_release(src);
    lg_tensor_release(dst);
  }
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

/* gather(x, dim, idx): out[p] = x[p with p[dim] replaced by idx[p]]; out has idx's shape */
static lg_status gather_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *idx = a->in[1];
  int dim = a->dim;
  if (idx->ndim != x->ndim)
    return lg_error(LG_ESHAPE, "gather: index %s must have as many dimensions as the input %s", SHAPE(idx), SHAPE(x));
  for (int d = 0; d < x->ndim; d++)
    if (d != dim && idx->shape[d] > x->shape[d])
      return lg_error(LG_ESHAPE, "gather: index %s is larger than the input %s at dimension %d", SHAPE(idx), SHAPE(x), d + 1);
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
      return lg_error(LG_ESHAPE, "cat: tensor %d has shape %s, expected %d dimensions like %s", i + 1, SHAPE(t), ref->ndim, SHAPE(ref));
    for (int d = 0; d < t->ndim; d++)
      if (d != dim && t->shape[d] != ref->shape[d])
        return lg_error(LG_ESHAPE, "cat: tensor %d has shape %s, which does not match %s except at dimension %d", i + 1,
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

/* ==== the op table (ORDER OP: same order as lg_opcode in luagrad.h) ==== */

#define U(name, f32, f64, i64) {name, 1, 1, unary_forward, {K(f32), K(f64), K(i64)}, 0}
#define B(name, f32, f64, i64, fl) {name, 2, 1, binary_forward, {K(f32), K(f64), K(i64)}, fl}
#define RED(name, nout, f32, f64, i64, fl) {name, 1, nout, reduce_forward, {K(f32), K(f64), K(i64)}, fl}

const lg_op lg_ops[LG_NUM_OPS] = {
  U("neg", neg_f32, neg_f64, neg_i64),
  U("exp", exp_f32, exp_f64, NULL),
  U("log", log_f32, log_f64, NULL),
  U("sqrt", sqrt_f32, sqrt_f64, NULL),
  U("rsqrt", rsqrt_f32, rsqrt_f64, NULL),
  U("abs", abs_f32, abs_f64, abs_i64),
  U("sin", sin_f32, sin_f64, NULL),
  U("cos", cos_f32, cos_f64, NULL),
  U("tanh", tanh_f32, tanh_f64, NULL),
  U("sigmoid", sigmoid_f32, sigmoid_f64, NULL),
  U("relu", relu_f32, relu_f64, relu_i64),
  U("sign", sign_f32, sign_f64, sign_i64),
  U("floor", floor_f32, floor_f64, copy_i64),
  U("ceil", ceil_f32, ceil_f64, copy_i64),
  U("round", round_f32, round_f64, copy_i64),
  U("log1p", log1p_f32, log1p_f64, NULL),
  U("expm1", expm1_f32, expm1_f64, NULL),
  U("reciprocal", reciprocal_f32, reciprocal_f64, NULL),
  U("square", square_f32, square_f64, square_i64),

  B("add", add_f32, add_f64, add_i64, 0),
  B("sub", sub_f32, sub_f64, sub_i64, 0),
  B("mul", mul_f32, mul_f64, mul_i64, 0),
  B("div", div_f32, div_f64, NULL, 0),
  B("pow", pow_f32, pow_f64, pow_i64, 0),
  B("maximum", maximum_f32, maximum_f64, maximum_i64, 0),
  B("minimum", minimum_f32, minimum_f64, minimum_i64, 0),
  B("floor_divide", floor_divide_f32, floor_divide_f64, floor_divide_i64, LG_F_INT_DIVIDES),
  B("remainder", remainder_f32, remainder_f64, remainder_i64, LG_F_INT_DIVIDES),
  B("atan2", atan2_f32, atan2_f64, NULL, 0),
  B("eq", eq_f32, eq_f64, eq_i64, 0),
  B("ne", ne_f32, ne_f64, ne_i64, 0),
  B("lt", lt_f32, lt_f64, lt_i64, 0),
  B("le", le_f32, le_f64, le_i64, 0),
  B("gt", gt_f32, gt_f64, gt_i64, 0),
  B("ge", ge_f32, ge_f64, ge_i64, 0),

  {"where", 3, 1, where_forward, {NULL, NULL, NULL}, 0},
  {"clamp", 1, 1, clamp_forward, {NULL, NULL, NULL}, 0},

  RED("sum", 1, sum_f32, sum_f64, sum_i64, 0),
  RED("mean", 1, mean_f32, mean_f64, NULL, LG_F_FLOAT_OUT),
  RED("var", 1, var_f32, var_f64, NULL, LG_F_FLOAT_OUT),
  RED("std", 1, std_f32, std_f64, NULL, LG_F_FLOAT_OUT),
  RED("prod", 1, prod_f32, prod_f64, prod_i64, 0),
  RED("norm", 1, norm_f32, norm_f64, NULL, LG_F_FLOAT_OUT),
  RED("logsumexp", 1, logsumexp_f32, logsumexp_f64, NULL, LG_F_FLOAT_OUT),
  RED("max", 2, max_f32, max_f64, max_i64, 0),
  RED("min", 2, min_f32, min_f64, min_i64, 0),
  RED("argmax", 1, argmax_f32, argmax_f64, argmax_i64, LG_F_INDEX_OUT),
  RED("argmin", 1, argmin_f32, argmin_f64, argmin_i64, LG_F_INDEX_OUT),

  {"matmul", 2, 1, lg_matmul_forward, {NULL, NULL, NULL}, 0},

  {"index_select", 2, 1, index_select_forward, {NULL, NULL, NULL}, 0},
  {"gather", 2, 1, gather_forward, {NULL, NULL, NULL}, 0},
  {"cat", -1, 1, cat_forward, {NULL, NULL, NULL}, 0},
};
_Static_assert(sizeof lg_ops / sizeof lg_ops[0] == LG_NUM_OPS, "lg_ops must have a row per lg_opcode");

/* ==== applying ops ==== */

lg_status lg_apply(lg_opcode op, const lg_args *a, lg_tensor **out) {
  return lg_ops[op].forward(&lg_ops[op], a, out);
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
