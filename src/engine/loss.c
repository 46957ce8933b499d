/*
** loss.c: cross-entropy as one fused op (log-softmax and negative log-likelihood in one pass).
**
** For logits x (N, C) and 1-based class labels t (N), with label smoothing e:
**   lse_i  = m_i + log sum_j exp(x_ij - m_i),   m_i = max_j x_ij      (stable)
**   loss_i = lse_i - (1 - e) x_{i,t_i} - (e / C) sum_j x_ij
** reduced by mode: 0 none (N), 1 mean over N, 2 sum. The forward saves lse (output 2).
** Backward: dx_ij = g_i (softmax_ij - (1 - e) [j = t_i] - e / C), g_i = g, g / N or g[i].
** float64 computes every exp with libm in double; float32 computes x - max and x - lse in float
** and their exps with the exp op's vectorized kernel (as PyTorch's float32 log-softmax does),
** accumulating the sums in double.
** Under create_graph, and in forward mode, the same formula is written with ops.
*/
#include "compose.h"

#include <math.h>

/* float64: each exp by libm, in double */
static void ce_forward_f64(const double *x, const int64_t *t, double *loss, double *lse, int64_t N, int64_t C,
                           double e) {
  for (int64_t i = 0; i < N; i++, x += C) {
    double m = -INFINITY, s = 0, sx = 0;
    for (int64_t j = 0; j < C; j++)
      if (x[j] > m) m = x[j];
    if (isinf(m)) m = 0;
    for (int64_t j = 0; j < C; j++) {
      s += exp(x[j] - m);
      sx += x[j];
    }
    double l = m + log(s);
    lse[i] = l;
    loss[i] = l - (1 - e) * x[t[i] - 1] - (e > 0 ? e / (double)C * sx : 0); /* -inf logits: no 0 * inf */
  }
}

/* float32, as PyTorch computes it in float: d = x - m in float, exp(d) by the exp op's kernel (8 at
** a time with AVX2) over the whole block into the scratch ex (N x C), sums in double. */
static void ce_forward_f32(const float *x, const int64_t *t, float *loss, float *lse, int64_t N, int64_t C,
                           double e, float *ex) {
  float *mx = ex + N * C; /* the row maxima, after the block */
  for (int64_t i = 0; i < N; i++) {
    float m = -INFINITY;
    for (int64_t j = 0; j < C; j++)
      if (x[i * C + j] > m) m = x[i * C + j];
    mx[i] = isinf(m) ? 0 : m;
    for (int64_t j = 0; j < C; j++) ex[i * C + j] = x[i * C + j] - mx[i];
  }
  lg_exp_f32(N * C, ex, ex);
  for (int64_t i = 0; i < N; i++) {
    double s = 0, sx = 0;
    for (int64_t j = 0; j < C; j++) s += ex[i * C + j], sx += x[i * C + j];
    double l = mx[i] + log(s);
    lse[i] = (float)l;
    loss[i] = (float)(l - (1 - e) * (double)x[i * C + t[i] - 1] - (e > 0 ? e / (double)C * sx : 0));
  }
}

/* dx_ij = g_i (exp(x_ij - lse_i) - e / C - (1 - e) [j = t_i]); float32's exps as in its forward,
** into dx itself first */
static void ce_backward_f64(const double *x, const int64_t *t, const double *lse, const double *g,
                            int64_t gstride, double gscale, double *dx, int64_t N, int64_t C, double e) {
  for (int64_t i = 0; i < N; i++, x += C, dx += C) {
    double gi = g[i * gstride] * gscale;
    for (int64_t j = 0; j < C; j++)
      dx[j] = gi * (exp(x[j] - lse[i]) - e / (double)C - (j == t[i] - 1 ? 1 - e : 0));
  }
}
static void ce_backward_f32(const float *x, const int64_t *t, const float *lse, const float *g,
                            int64_t gstride, double gscale, float *dx, int64_t N, int64_t C, double e) {
  for (int64_t i = 0; i < N; i++)
    for (int64_t j = 0; j < C; j++) dx[i * C + j] = x[i * C + j] - lse[i];
  lg_exp_f32(N * C, dx, dx);
  for (int64_t i = 0; i < N; i++, dx += C) {
    double gi = (double)g[i * gstride] * gscale;
    for (int64_t j = 0; j < C; j++)
      dx[j] = (float)(gi * ((double)dx[j] - e / (double)C - (j == t[i] - 1 ? 1 - e : 0)));
  }
}

/* logits as (N, C) and labels as (N), both contiguous; checks every label */
static lg_status ce_inputs(const lg_args *a, lg_tensor **xc, lg_tensor **tc, int64_t *N, int64_t *C) {
  lg_tensor *x = a->in[0], *t = a->in[1];
  *xc = *tc = NULL;
  if (x->ndim != 1 && x->ndim != 2)
    return lg_error(LG_ESHAPE, "cross_entropy: expected logits of shape (N, C) or (C), got %s", SHAPE(x));
  *C = x->shape[x->ndim - 1];
  *N = x->ndim == 2 ? x->shape[0] : 1;
  if (t->dtype != LG_INT64)
    return lg_error(LG_EDTYPE, "cross_entropy: class labels must be int64, got %s", lg_dtype_name(t->dtype));
  if (lg_numel(t) != *N || t->ndim != x->ndim - 1)
    return lg_error(LG_ESHAPE, "cross_entropy: labels %s do not match logits %s (expected %lld labels)",
                    SHAPE(t), SHAPE(x), (long long)*N);
  for (int64_t i = 0; i < *N; i++) {
    int64_t v = lg_get_flat_i64(t, i);
    if (v < 1 || v > *C)
      return lg_error(
          LG_EINDEX,
          "cross_entropy: label %lld at position %lld is out of range 1..%lld (labels are 1-based)",
          (long long)v, (long long)i + 1, (long long)*C);
  }
  lg_dtype dt = lg_dtype_is_float(x->dtype) ? x->dtype : lg_default_dtype();
  LG_TRY(lg_is_contiguous(x) && x->dtype == dt ? (*xc = lg_tensor_retain(x), LG_OK) : lg_copy_as(x, dt, xc));
  lg_status st = lg_contiguous(t, tc);
  if (st != LG_OK) lg_tensor_release(*xc);
  return st;
}

lg_status lg_cross_entropy_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *xc, *tc, *loss = NULL, *lse = NULL, *red = NULL;
  int64_t N = 0, C = 0;
  double e = a->s[0];
  if (!(e >= 0 && e <= 1))
    return lg_error(LG_EVALUE, "cross_entropy: label_smoothing must be in [0, 1], got %g", e);
  LG_TRY(ce_inputs(a, &xc, &tc, &N, &C));
  lg_dtype dt = xc->dtype;
  lg_tensor *scratch = NULL; /* float32: the exps and the row maxima */
  int64_t nscratch = N * C + N;
  lg_status st = lg_new(&N, 1, dt, &loss);
  if (st == LG_OK) st = lg_new(&N, 1, dt, &lse);
  if (st == LG_OK && dt == LG_FLOAT32) st = lg_tensor_empty(&nscratch, 1, dt, &scratch);
  if (st == LG_OK) {
    if (dt == LG_FLOAT32)
      ce_forward_f32(lg_data(xc), lg_data(tc), lg_data(loss), lg_data(lse), N, C, e, lg_data(scratch));
    else
      ce_forward_f64(lg_data(xc), lg_data(tc), lg_data(loss), lg_data(lse), N, C, e);
    if (a->mode == 0) {
      if (a->in[0]->ndim == 1)
        st = lg_view(loss, NULL, 0, &red); /* one sample: a 0-d loss */
      else
        red = lg_tensor_retain(loss);
    } else {
      lg_args r = {.in = {loss}, .nin = 1, .dim = -1};
      st = lg_ops[a->mode == 1 ? LG_OP_MEAN : LG_OP_SUM].forward(
          &lg_ops[a->mode == 1 ? LG_OP_MEAN : LG_OP_SUM], &r, &red);
    }
  }
  if (st == LG_OK) {
    out[0] = red;
    out[1] = lse;
    lse = NULL;
  }
  lg_tensor_release(scratch);
  lg_tensor_release(loss);
  lg_tensor_release(lse);
  lg_tensor_release(xc);
  lg_tensor_release(tc);
  return st;
}

/* softmax - (1 - e) onehot - e / C, with ops: the derivative of each row's loss */
static lg_tensor *ce_coef(sc *s, lg_tensor *x2, lg_tensor *t, int64_t N, int64_t C, double e) {
  int64_t col[2] = {N, 1}, full[2] = {N, C};
  lg_tensor *tcol = sc_reshape(s, t, col, 2);
  lg_tensor *ones = sc_scalar(s, 1 - e, x2 ? x2->dtype : LG_FLOAT32);
  lg_tensor *src = sc_expand(s, ones, col, 2);
  lg_args sa = {.in = {src, tcol}, .nin = 2, .dim = 1, .nshape = 2, .shape = {N, C}};
  (void)full;
  lg_tensor *onehot = sc_op(s, LG_OP_SCATTER_ADD, sa);
  lg_args sm = {.in = {x2}, .nin = 1, .dim = 1};
  lg_tensor *p = sc_op(s, LG_OP_SOFTMAX, sm);
  return sc_bs(s, LG_OP_SUB, sc_bin(s, LG_OP_SUB, p, onehot), e / (double)C);
}

/* the upstream gradient as a column (N, 1) with the reduction's scale */
static lg_tensor *ce_gcol(sc *s, lg_tensor *g, int mode, int64_t N) {
  int64_t col[2] = {N, 1}, one[2] = {1, 1};
  if (mode == 0) return sc_reshape(s, g, col, 2);
  lg_tensor *g11 = sc_reshape(s, g, one, 2);
  return mode == 1 ? sc_bs(s, LG_OP_DIV, g11, (double)N) : g11;
}

lg_status lg_cross_entropy_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_tensor *x = n->args.in[0], *t = n->args.in[1];
  int64_t C = x->shape[x->ndim - 1], N = x->ndim == 2 ? x->shape[0] : 1;
  double e = n->args.s[0];
  if (!n->needs[0]) return LG_OK;
  if (lg_grad_enabled()) { /* create_graph: the formula with ops */
    sc s = {0};
    int64_t full[2] = {N, C};
    lg_tensor *x2 = sc_reshape(&s, x, full, 2);
    lg_tensor *dx = sc_bin(&s, LG_OP_MUL, ce_coef(&s, x2, t, N, C, e), ce_gcol(&s, g, n->args.mode, N));
    return sc_done(&s, sc_reshape(&s, dx, x->shape, x->ndim), &gin[0]);
  }
  lg_tensor *xc = NULL, *tc = NULL, *gc = NULL, *dx = NULL;
  lg_status st = lg_is_contiguous(x) ? (xc = lg_tensor_retain(x), LG_OK) : lg_copy_as(x, x->dtype, &xc);
  if (st == LG_OK) st = lg_contiguous(t, &tc);
  if (st == LG_OK) st = lg_copy_as(g, x->dtype, &gc);
  if (st == LG_OK) st = lg_new(x->shape, x->ndim, x->dtype, &dx);
  if (st == LG_OK) {
    int64_t gstride = n->args.mode == 0 ? 1 : 0;
    double gscale = n->args.mode == 1 ? 1.0 / (double)N : 1.0;
    if (x->dtype == LG_FLOAT32)
      ce_backward_f32(lg_data(xc), lg_data(tc), lg_data(n->saved_aux[0]), lg_data(gc), gstride, gscale,
                      lg_data(dx), N, C, e);
    else
      ce_backward_f64(lg_data(xc), lg_data(tc), lg_data(n->saved_aux[0]), lg_data(gc), gstride, gscale,
                      lg_data(dx), N, C, e);
    gin[0] = dx;
  } else {
    lg_tensor_release(dx);
  }
  lg_tensor_release(xc);
  lg_tensor_release(tc);
  lg_tensor_release(gc);
  return st;
}

/* Forward mode: t_loss_i = sum_j coef_ij tx_ij, then the reduction. */
lg_status lg_cross_entropy_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                               lg_tensor **tout) {
  sc s = {0};
  lg_tensor *x = a->in[0];
  int64_t C = x->shape[x->ndim - 1], N = x->ndim == 2 ? x->shape[0] : 1, full[2] = {N, C};
  lg_tensor *x2 = sc_reshape(&s, x, full, 2), *tx = sc_reshape(&s, tin[0], full, 2);
  lg_tensor *tl =
      sc_reduce(&s, LG_OP_SUM, sc_bin(&s, LG_OP_MUL, ce_coef(&s, x2, a->in[1], N, C, a->s[0]), tx), 1, 0);
  if (a->mode == 1)
    tl = sc_reduce(&s, LG_OP_MEAN, tl, -1, 0);
  else if (a->mode == 2)
    tl = sc_reduce(&s, LG_OP_SUM, tl, -1, 0);
  else if (x->ndim == 1)
    tl = sc_reshape(&s, tl, NULL, 0);
  return sc_done(&s, tl, tout);
}
