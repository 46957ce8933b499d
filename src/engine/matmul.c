/*
** matmul.c: matrix products through OpenBLAS (blas.c), small float32 ones through gemm_small.c.
**
**   matmul(x, y): 1-d . 1-d -> 0-d (dot); 2-d . 2-d -> (m, n); a 1-d argument is a row (left)
**   or column (right) vector whose size-1 dimension is dropped afterwards; more dimensions are
**   batches that broadcast against each other, as numpy's and PyTorch's matmul.
**
** Each batch is one row-major GEMM call (gemm below: cblas_sgemm/cblas_dgemm, or the small-product
** kernel for float32 products up to 2^20 multiply-adds). A transposed view is not
** copied: a matrix whose elements sit at i*ld + j is passed as NoTrans, one whose elements sit at
** j*ld + i as Trans. Only layouts BLAS cannot express (e.g. a column step with a gap, or an
** expanded matrix) are copied to contiguous memory first. int64 products use a plain loop.
*/
#include "blas.h"
#include "compose.h"

#include <limits.h>
#include <string.h>

/* BLAS threads per call: waking a second thread costs more than it saves on small products
** (a W2-sized step ran 4x slower with two threads), so products under about 64 MFLOP run on one
** thread and larger ones on lg_get_num_threads(). OpenBLAS is told only when the count changes
** (per thread; while several contexts exist, e.g. lua_States in several threads, every product
** runs on one BLAS thread: OpenBLAS's count is one global, which threads must not fight over). */
#define PARALLEL_GEMM_FLOPS 6.4e7
static _Thread_local int blas_threads_now = -1;

void lg_blas_threads_reset(void) { blas_threads_now = -1; }

/* The threads for a product, told to OpenBLAS; 0 when OpenBLAS must not run it (lg_blas_room). */
static int blas_threads_for(double m, double n, double k) {
  int want = 2 * m * n * k >= PARALLEL_GEMM_FLOPS && lg_contexts_alive() <= 1 ? lg_get_num_threads() : 1;
  if (!lg_blas_room(&want)) return 0;
  if (want != blas_threads_now) {
    lg_blas_set_threads(want);
    blas_threads_now = want;
  }
  return want;
}

/* C = beta C + op(A) op(B), row-major, in plain loops: for products OpenBLAS may not run (too
** little address space for its buffers). Row i of C accumulates A(i,p) times row p of op(B). */
#define GEMM_PLAIN(name, T)                                                                                  \
  static void name(int ta, int tb, int64_t m, int64_t n, int64_t k, const T *A, int64_t lda, const T *B,     \
                   int64_t ldb, double beta, T *C, int64_t ldc) {                                            \
    for (int64_t i = 0; i < m; i++) {                                                                        \
      T *c = C + i * ldc;                                                                                    \
      for (int64_t j = 0; j < n; j++) c[j] = beta == 0 ? 0 : c[j];                                           \
      for (int64_t p = 0; p < k; p++) {                                                                      \
        T a = ta ? A[p * lda + i] : A[i * lda + p];                                                          \
        if (tb)                                                                                              \
          for (int64_t j = 0; j < n; j++) c[j] += a * B[j * ldb + p];                                        \
        else                                                                                                 \
          for (int64_t j = 0; j < n; j++) c[j] += a * B[p * ldb + j];                                        \
      }                                                                                                      \
    }                                                                                                        \
  }
GEMM_PLAIN(gemm_plain_f32, float)
GEMM_PLAIN(gemm_plain_f64, double)

/* How BLAS can read a rows x cols matrix with strides (rs, cs), if it can at all. */
static int blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CBLAS_TRANSPOSE *tr, int64_t *ld) {
  int64_t mc = cols > 1 ? cols : 1, mr = rows > 1 ? rows : 1;
  if ((cols == 1 || cs == 1) && (rows == 1 || rs >= mc)) {
    *tr = CblasNoTrans;
    *ld = rows == 1 ? mc : rs;
    return *ld <= INT_MAX;
  }
  if ((rows == 1 || rs == 1) && (cols == 1 || cs >= mr)) {
    *tr = CblasTrans;
    *ld = cols == 1 ? mr : cs;
    return *ld <= INT_MAX;
  }
  return 0;
}

/* int64: C[m,n] = A . B with arbitrary strides */
static void gemm_i64(int64_t m, int64_t n, int64_t k, const int64_t *A, int64_t ars, int64_t acs,
                     const int64_t *B, int64_t brs, int64_t bcs, int64_t *C) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      uint64_t acc = 0;
      for (int64_t p = 0; p < k; p++) acc += (uint64_t)A[i * ars + p * acs] * (uint64_t)B[p * brs + j * bcs];
      C[i * n + j] = (int64_t)acc;
    }
}

/* C = A B (+ beta C) in float32 or float64, row-major, through OpenBLAS (loaded on first use) */
static lg_status gemm(lg_dtype dt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k,
                      const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                      int64_t ldc);
lg_status lg_gemm(lg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                  const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
  return gemm(dt, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, A, lda, B, ldb,
              beta, C, ldc);
}
static lg_status gemm(lg_dtype dt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k,
                      const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                      int64_t ldc) {
  if (m == 0 || n == 0) return LG_OK;
  if (k == 0) { /* an empty sum: C = beta C, without asking BLAS about a zero dimension */
    if (beta == 0)
      for (int64_t i = 0; i < m; i++)
        memset((char *)C + i * ldc * (int64_t)lg_dtype_size(dt), 0, (size_t)n * lg_dtype_size(dt));
    return LG_OK;
  }
  if (dt == LG_FLOAT32 &&
      lg_gemm_small_f32(ta == CblasTrans, tb == CblasTrans, m, n, k, A, lda, B, ldb, (float)beta, C, ldc))
    return LG_OK;
  if (!lg_blas_fns.loaded && !lg_blas_room(&(int){1})) { /* not even room to load OpenBLAS */
    if (dt == LG_FLOAT32)
      gemm_plain_f32(ta == CblasTrans, tb == CblasTrans, m, n, k, A, lda, B, ldb, beta, C, ldc);
    else
      gemm_plain_f64(ta == CblasTrans, tb == CblasTrans, m, n, k, A, lda, B, ldb, beta, C, ldc);
    return LG_OK;
  }
  LG_TRY(lg_blas_load());
  if (!blas_threads_for((double)m, (double)n, (double)k)) {
    if (dt == LG_FLOAT32)
      gemm_plain_f32(ta == CblasTrans, tb == CblasTrans, m, n, k, A, lda, B, ldb, beta, C, ldc);
    else
      gemm_plain_f64(ta == CblasTrans, tb == CblasTrans, m, n, k, A, lda, B, ldb, beta, C, ldc);
    return LG_OK;
  }
  if (dt == LG_FLOAT32)
    lg_blas_fns.sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, A, (int)lda, B, (int)ldb,
                      (float)beta, C, (int)ldc);
  else
    lg_blas_fns.dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0, A, (int)lda, B, (int)ldb, beta, C,
                      (int)ldc);
  return LG_OK;
}

/* Products that the engine's own workers run side by side (lg_parallel_for), one thread each:
** the thread that starts the loop calls lg_gemm_serial_prepare, which sets OpenBLAS to one thread
** (the workers must not change OpenBLAS's threads while others multiply); then each worker calls
** lg_gemm_serial. Prepare returns 0 when OpenBLAS cannot run (the products then take plain loops). */
int lg_gemm_serial_prepare(void) {
  if (!lg_blas_fns.loaded && !lg_blas_room(&(int){1})) return 0;
  if (lg_blas_load() != LG_OK) return 0;
  return blas_threads_for(1, 1, 1) > 0; /* a tiny product: one thread */
}

void lg_gemm_serial(int blas, lg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                    int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0 || !blas) {
    if (dt == LG_FLOAT32)
      gemm_plain_f32(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc);
    else
      gemm_plain_f64(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (dt == LG_FLOAT32 && lg_gemm_small_f32(ta, tb, m, n, k, A, lda, B, ldb, (float)beta, C, ldc)) return;
  CBLAS_TRANSPOSE at = ta ? CblasTrans : CblasNoTrans, bt = tb ? CblasTrans : CblasNoTrans;
  if (dt == LG_FLOAT32)
    lg_blas_fns.sgemm(CblasRowMajor, at, bt, (int)m, (int)n, (int)k, 1.0f, A, (int)lda, B, (int)ldb,
                      (float)beta, C, (int)ldc);
  else
    lg_blas_fns.dgemm(CblasRowMajor, at, bt, (int)m, (int)n, (int)k, 1.0, A, (int)lda, B, (int)ldb, beta, C,
                      (int)ldc);
}

lg_status lg_matmul_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *y = a->in[1];
  if (x->ndim == 0 || y->ndim == 0)
    return lg_error(LG_ESHAPE, "matmul: both arguments must be at least 1-d, got %s and %s", SHAPE(x),
                    SHAPE(y));
  /* geometry of x as (batch..., m, k) and y as (batch..., k, n) */
  int64_t m, k, n, k2, xrs, xcs, yrs, ycs;
  int xb = x->ndim >= 2 ? x->ndim - 2 : 0, yb = y->ndim >= 2 ? y->ndim - 2 : 0;
  if (x->ndim == 1) {
    m = 1;
    k = x->shape[0];
    xrs = 0;
    xcs = x->stride[0];
  } else {
    m = x->shape[xb];
    k = x->shape[xb + 1];
    xrs = x->stride[xb];
    xcs = x->stride[xb + 1];
  }
  if (y->ndim == 1) {
    k2 = y->shape[0];
    n = 1;
    yrs = y->stride[0];
    ycs = 0;
  } else {
    k2 = y->shape[yb];
    n = y->shape[yb + 1];
    yrs = y->stride[yb];
    ycs = y->stride[yb + 1];
  }
  if (k != k2)
    return lg_error(LG_ESHAPE, "matmul: shapes %s and %s do not fit (%lld ~= %lld)", SHAPE(x), SHAPE(y),
                    (long long)k, (long long)k2);
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    return lg_error(LG_ESHAPE, "matmul: shapes %s and %s are too large for BLAS", SHAPE(x), SHAPE(y));
  int64_t bshape[LG_MAX_DIMS];
  int bn;
  if (lg_broadcast_shapes("matmul", x->shape, xb, y->shape, yb, bshape, &bn) != LG_OK)
    return lg_error(LG_ESHAPE, "matmul: batch dimensions of %s and %s do not broadcast", SHAPE(x), SHAPE(y));

  /* output shape: batch..., then m unless x was 1-d, then n unless y was 1-d */
  int64_t oshape[LG_MAX_DIMS];
  int ond = bn;
  memcpy(oshape, bshape, sizeof(int64_t) * (size_t)bn);
  if (x->ndim > 1) oshape[ond++] = m;
  if (y->ndim > 1) oshape[ond++] = n;

  lg_dtype dt = lg_promote(x->dtype, y->dtype);
  lg_tensor *tx = NULL, *ty = NULL;
  CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
  int64_t lda = 0, ldb = 0;
  lg_status st = LG_OK;
  /* cast, and copy layouts that BLAS cannot read; the copy is contiguous so it always can */
  if (x->dtype != dt || (dt != LG_INT64 && !blas_layout(m, k, xrs, xcs, &ta, &lda))) {
    st = lg_copy_as(x, dt, &tx);
    if (st == LG_OK) {
      x = tx;
      xrs = x->ndim == 1 ? 0 : x->stride[xb];
      xcs = x->ndim == 1 ? x->stride[0] : x->stride[xb + 1];
      blas_layout(m, k, xrs, xcs, &ta, &lda);
    }
  }
  if (st == LG_OK && (y->dtype != dt || (dt != LG_INT64 && !blas_layout(k, n, yrs, ycs, &tb, &ldb)))) {
    st = lg_copy_as(y, dt, &ty);
    if (st == LG_OK) {
      y = ty;
      yrs = y->ndim == 1 ? y->stride[0] : y->stride[yb];
      ycs = y->ndim == 1 ? 0 : y->stride[yb + 1];
      blas_layout(k, n, yrs, ycs, &tb, &ldb);
    }
  }
  /* BLAS writes every element (beta = 0); only an empty inner dimension needs the zeros */
  if (st == LG_OK) st = k == 0 ? lg_tensor_zeros(oshape, ond, dt, out) : lg_new(oshape, ond, dt, out);
  if (st != LG_OK) goto done;

  int64_t xbs[LG_MAX_DIMS], ybs[LG_MAX_DIMS], idx[LG_MAX_DIMS] = {0};
  { /* batch strides of x and y broadcast to bshape */
    lg_tensor xv = *x, yv = *y;
    xv.ndim = xb;
    yv.ndim = yb;
    lg_broadcast_strides(&xv, bshape, bn, xbs);
    lg_broadcast_strides(&yv, bshape, bn, ybs);
  }
  int64_t nbatch = lg_shape_numel(bshape, bn);
  size_t es = lg_dtype_size(dt);
  char *xd = lg_data(x), *yd = lg_data(y), *od = lg_data(*out);
  if (m == 0 || n == 0 || k == 0) goto done; /* empty, or zeros already */
  for (int64_t b = 0; b < nbatch && st == LG_OK; b++) {
    int64_t xo = 0, yo = 0;
    for (int d = 0; d < bn; d++) {
      xo += idx[d] * xbs[d];
      yo += idx[d] * ybs[d];
    }
    char *A = xd + xo * (int64_t)es, *B = yd + yo * (int64_t)es, *C = od + b * m * n * (int64_t)es;
    if (dt == LG_INT64)
      gemm_i64(m, n, k, (const int64_t *)A, xrs, xcs, (const int64_t *)B, yrs, ycs, (int64_t *)C);
    else
      st = gemm(dt, ta, tb, m, n, k, A, lda, B, ldb, 0, C, n);
    for (int d = bn - 1; d >= 0 && ++idx[d] == bshape[d]; d--) idx[d] = 0;
  }
done:
  lg_tensor_release(tx);
  lg_tensor_release(ty);
  return st;
}

/* ==== linear(x, W, b) = x W^T + b ====
** x (..., K), W (N, K), b (N) or absent; output (..., N). One GEMM: the output rows start as b
** and the product is added with beta = 1, W^T is a transpose flag. Backward (one pass each, with
** G the output gradient as (M, N) rows): dx = G W, dW = G^T X (written contiguous, so it becomes
** W's .grad without a copy), db = the column sums of G. Under create_graph and in forward mode
** the same formulas run as ordinary ops. Saves x and W. */

/* A view of t as an (M, K) matrix with unit column stride, copying only if it must. */
/* t (..., K) as an (M, K) matrix of dtype dt; M is the product of the leading sizes (so it stays
** right when K is 0) */
static lg_status as_rows(lg_tensor *t, int64_t K, lg_dtype dt, lg_tensor **out) {
  int64_t M = lg_shape_numel(t->shape, t->ndim - 1), shape[2] = {M, K};
  if (t->dtype == dt && lg_is_contiguous(t)) return lg_view(t, shape, 2, out);
  lg_tensor *c;
  LG_TRY(lg_copy_as(t, dt, &c));
  lg_status st = lg_view(c, shape, 2, out);
  lg_tensor_release(c);
  return st;
}

lg_status lg_linear_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *w = a->in[1], *b = a->nin > 2 ? a->in[2] : NULL;
  if (w->ndim != 2) return lg_error(LG_ESHAPE, "linear: weight must be 2-d (out, in), got %s", SHAPE(w));
  int64_t N = w->shape[0], K = w->shape[1];
  if (x->ndim < 1 || x->shape[x->ndim - 1] != K)
    return lg_error(LG_ESHAPE, "linear: input %s does not end in %lld features (weight %s)", SHAPE(x),
                    (long long)K, SHAPE(w));
  if (b && (b->ndim != 1 || b->shape[0] != N))
    return lg_error(LG_ESHAPE, "linear: bias %s does not match %lld output features", SHAPE(b), (long long)N);
  lg_dtype dt = lg_promote(x->dtype, w->dtype);
  if (!lg_dtype_is_float(dt))
    return lg_error(LG_EDTYPE, "linear: needs float tensors, got %s", lg_dtype_name(dt));
  if (N > INT_MAX || K > INT_MAX)
    return lg_error(LG_ESHAPE, "linear: weight %s is too large for BLAS", SHAPE(w));
  int64_t oshape[LG_MAX_DIMS];
  memcpy(oshape, x->shape, sizeof oshape);
  oshape[x->ndim - 1] = N;
  lg_tensor *xr = NULL, *wc = NULL, *bc = NULL, *y = NULL;
  lg_status st = as_rows(x, K, dt, &xr);
  if (st == LG_OK) st = as_rows(w, K, dt, &wc);
  if (st == LG_OK && b) st = lg_to_dtype(b, dt, &bc);
  if (st == LG_OK) st = lg_new(oshape, x->ndim, dt, &y);
  if (st == LG_OK) {
    int64_t M = xr->shape[0];
    size_t es = lg_dtype_size(dt);
    char *yd = lg_data(y);
    if (bc) { /* rows start as the bias */
      lg_tensor *bcc = NULL;
      st = lg_contiguous(bc, &bcc);
      if (st == LG_OK)
        for (int64_t i = 0; i < M; i++) memcpy(yd + i * N * (int64_t)es, lg_data(bcc), (size_t)N * es);
      lg_tensor_release(bcc);
    }
    if (st == LG_OK && M > INT_MAX)
      st = lg_error(LG_ESHAPE, "linear: input %s is too large for BLAS", SHAPE(x));
    if (st == LG_OK)
      st = gemm(dt, CblasNoTrans, CblasTrans, M, N, K, lg_data(xr), K, lg_data(wc), K, bc ? 1.0 : 0.0, yd, N);
  }
  if (st == LG_OK)
    *out = y;
  else
    lg_tensor_release(y);
  lg_tensor_release(xr);
  lg_tensor_release(wc);
  lg_tensor_release(bc);
  return st;
}

#define COLSUM(name, T)                                                                                      \
  LG_WIDE static void name(const T *g, int64_t M, int64_t N, T *out) {                                       \
    for (int64_t j = 0; j < N; j++) out[j] = 0;                                                              \
    for (int64_t i = 0; i < M; i++, g += N)                                                                  \
      for (int64_t j = 0; j < N; j++) out[j] += g[j];                                                        \
  }
COLSUM(colsum_f32, float)
COLSUM(colsum_f64, double)

/* x and g as (M, K) and (M, N) rows, with ops (M from the leading sizes: K may be 0) */
static lg_tensor *sc_rows(sc *s, lg_tensor *t, int64_t K) {
  if (!t) return NULL;
  int64_t shape[2] = {lg_shape_numel(t->shape, t->ndim - 1), K};
  return sc_reshape(s, t, shape, 2);
}

static lg_status linear_backward_composite(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *x = n->args.in[0], *w = n->args.in[1];
  int64_t N = w->shape[0], K = w->shape[1];
  lg_tensor *dx = n->needs[0] ? sc_bin(&s, LG_OP_MATMUL, g, w) : NULL;
  lg_tensor *g2 = sc_rows(&s, g, N);
  lg_tensor *dw = n->needs[1] ? sc_bin(&s, LG_OP_MATMUL, sc_swap_last2(&s, g2), sc_rows(&s, x, K)) : NULL;
  if (n->nin > 2 && n->needs[2] && s.st == LG_OK) {
    lg_tensor *db = sc_reduce(&s, LG_OP_SUM, g2, 0, 0);
    if (db) gin[2] = lg_tensor_retain(db);
  }
  return sc_done2(&s, dx, &gin[0], dw, &gin[1]);
}

lg_status lg_linear_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                        lg_tensor **tout) {
  sc s = {0};
  lg_tensor *t = tin[0] ? sc_bin(&s, LG_OP_MATMUL, tin[0], sc_swap_last2(&s, a->in[1])) : NULL;
  if (tin[1]) t = sc_add0(&s, t, sc_bin(&s, LG_OP_MATMUL, a->in[0], sc_swap_last2(&s, tin[1])));
  if (a->nin > 2 && tin[2]) t = sc_add0(&s, t, tin[2]);
  return sc_done(&s, t, tout);
}

lg_status lg_linear_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  if (lg_grad_enabled()) return linear_backward_composite(n, g, gin);
  lg_tensor *x = n->args.in[0], *w = n->args.in[1];
  int64_t N = w->shape[0], K = w->shape[1];
  lg_dtype dt = g->dtype;
  lg_tensor *gr = NULL, *xr = NULL, *wc = NULL, *dx = NULL, *dw = NULL, *db = NULL;
  lg_status st = as_rows(g, N, dt, &gr);
  int64_t M = st == LG_OK ? gr->shape[0] : 0;
  if (st == LG_OK && n->needs[0]) { /* dx = G W: (M, N) (N, K) */
    st = as_rows(w, K, dt, &wc);
    if (st == LG_OK) st = lg_new(x->shape, x->ndim, dt, &dx);
    if (st == LG_OK)
      st = gemm(dt, CblasNoTrans, CblasNoTrans, M, K, N, lg_data(gr), N, lg_data(wc), K, 0.0, lg_data(dx), K);
  }
  if (st == LG_OK && n->needs[1]) { /* dW = G^T X: (N, M) (M, K) */
    st = as_rows(x, K, dt, &xr);
    if (st == LG_OK) st = lg_new(w->shape, 2, dt, &dw);
    if (st == LG_OK)
      st = gemm(dt, CblasTrans, CblasNoTrans, N, K, M, lg_data(gr), N, lg_data(xr), K, 0.0, lg_data(dw), K);
  }
  if (st == LG_OK && n->nin > 2 && n->needs[2]) { /* db = column sums of G */
    st = lg_new(&N, 1, dt, &db);
    if (st == LG_OK) {
      if (dt == LG_FLOAT32)
        colsum_f32(lg_data(gr), M, N, lg_data(db));
      else
        colsum_f64(lg_data(gr), M, N, lg_data(db));
    }
  }
  if (st == LG_OK) {
    gin[0] = dx;
    gin[1] = dw;
    if (n->nin > 2) gin[2] = db;
  } else {
    lg_tensor_release(dx);
    lg_tensor_release(dw);
    lg_tensor_release(db);
  }
  lg_tensor_release(gr);
  lg_tensor_release(xr);
  lg_tensor_release(wc);
  return st;
}
