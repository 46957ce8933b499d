/*
** matmul.c: matrix products through OpenBLAS.
**
**   matmul(x, y): 1-d . 1-d -> 0-d (dot); 2-d . 2-d -> (m, n); a 1-d argument is a row (left)
**   or column (right) vector whose size-1 dimension is dropped afterwards; more dimensions are
**   batches that broadcast against each other, as numpy's and PyTorch's matmul.
**
** Each batch is one cblas_sgemm/cblas_dgemm call in row-major order. A transposed view is not
** copied: a matrix whose elements sit at i*ld + j is passed as NoTrans, one whose elements sit at
** j*ld + i as Trans. Only layouts BLAS cannot express (e.g. a column step with a gap, or an
** expanded matrix) are copied to contiguous memory first. int64 products use a plain loop.
*/
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* How BLAS can read a rows x cols matrix with strides (rs, cs), if it can at all. */
static int blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CBLAS_TRANSPOSE *tr,
                       int64_t *ld) {
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

lg_status lg_matmul_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *y = a->in[1];
  if (x->ndim == 0 || y->ndim == 0)
    return lg_error(LG_ESHAPE, "matmul: both arguments must be at least 1-d, got %s and %s", SHAPE(x), SHAPE(y));
  /* geometry of x as (batch..., m, k) and y as (batch..., k, n) */
  int64_t m, k, n, k2, xrs, xcs, yrs, ycs;
  int xb = x->ndim >= 2 ? x->ndim - 2 : 0, yb = y->ndim >= 2 ? y->ndim - 2 : 0;
  if (x->ndim == 1) { m = 1; k = x->shape[0]; xrs = 0; xcs = x->stride[0]; }
  else { m = x->shape[xb]; k = x->shape[xb + 1]; xrs = x->stride[xb]; xcs = x->stride[xb + 1]; }
  if (y->ndim == 1) { k2 = y->shape[0]; n = 1; yrs = y->stride[0]; ycs = 0; }
  else { k2 = y->shape[yb]; n = y->shape[yb + 1]; yrs = y->stride[yb]; ycs = y->stride[yb + 1]; }
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
  if (st == LG_OK) st = lg_tensor_zeros(oshape, ond, dt, out);
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
  if (m == 0 || n == 0 || k == 0) goto done; /* zeros already */
  for (int64_t b = 0; b < nbatch; b++) {
    int64_t xo = 0, yo = 0;
    for (int d = 0; d < bn; d++) { xo += idx[d] * xbs[d]; yo += idx[d] * ybs[d]; }
    char *A = xd + xo * (int64_t)es, *B = yd + yo * (int64_t)es, *C = od + b * m * n * (int64_t)es;
    if (dt == LG_FLOAT32)
      cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, (const float *)A, (int)lda,
                  (const float *)B, (int)ldb, 0.0f, (float *)C, (int)n);
    else if (dt == LG_FLOAT64)
      cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0, (const double *)A, (int)lda,
                  (const double *)B, (int)ldb, 0.0, (double *)C, (int)n);
    else
      gemm_i64(m, n, k, (const int64_t *)A, xrs, xcs, (const int64_t *)B, yrs, ycs, (int64_t *)C);
    for (int d = bn - 1; d >= 0 && ++idx[d] == bshape[d]; d--) idx[d] = 0;
  }
done:
  lg_tensor_release(tx);
  lg_tensor_release(ty);
  return st;
}
