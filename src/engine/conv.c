/*
** conv.c: 2-d convolution (conv1d is conv2d over a height of 1, in the Lua library) and its two
** adjoints, three rows of the op table that close under differentiation:
**
**   conv2d(x, w, b)              y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x[n, g(o)C/G + c, i sh - ph + p
*dh,
**                                                                              j sw - pw + q dw]
**   conv2d_grad_input(g, w)      the adjoint of conv2d in x: dx = conv2d^T(g) (a transposed convolution)
**   conv2d_grad_weight(x, g)     the adjoint of conv2d in w: dw[o,c,p,q] = sum_{n,i,j} g[n,o,i,j] x[...]
**
**   x (N, C, H, W), w (O, C/G, kh, kw), b (O), y and g (N, O, Ho, Wo), G groups,
**   Ho = (H + 2 ph - dh (kh - 1) - 1) / sh + 1 (floor), likewise Wo.
**
** Reverse mode: conv2d's rule gives (grad_input(g, w), grad_weight(x, g), g summed over n, i, j);
** grad_input's gives (conv2d(gg, w), grad_weight(gg, g)); grad_weight's (grad_input(g, gg),
** conv2d(x, gg)). All three are bilinear, so forward mode is the sum of the two one-sided terms.
** Saved: the inputs (x and w, g and w, x and g).
**
** Kernels: per sample and group, im2col then one GEMM through OpenBLAS (matmul.c's lg_gemm):
**   cols (C/G kh kw, Ho Wo) = im2col(x[n, group])      y[n, group] = W_group (O/G, C/G kh kw) cols
**   dcols = W_group^T g[n, group]; dx[n, group] += col2im(dcols)
**   dW_group += g[n, group] cols^T  (summed over the samples)
** The column buffer holds one sample's group at a time, so memory stays bounded by the batch.
**
** Arguments (lg_args): shape[0..5] = stride h, w, padding h, w, dilation h, w; mode = groups;
** shape[6..7] = the input's H, W (grad_input) or the kernel's kh, kw (grad_weight); nshape = 8.
*/
#include "compose.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, G;
} conv_geom;

static lg_status fill_geom(const char *op, const lg_args *a, int64_t N, int64_t C, int64_t H, int64_t W,
                           int64_t O, int64_t kh, int64_t kw, conv_geom *g) {
  *g = (conv_geom){N, C,           H,           W,           O,           kh,          kw,          0,
                   0, a->shape[0], a->shape[1], a->shape[2], a->shape[3], a->shape[4], a->shape[5], a->mode};
  if (a->nshape != 8 || g->sh < 1 || g->sw < 1 || g->ph < 0 || g->pw < 0 || g->dh < 1 || g->dw < 1 ||
      g->G < 1)
    return lg_error(LG_EVALUE,
                    "%s: stride and dilation must be positive, padding non-negative, groups positive", op);
  if (C % g->G || O % g->G)
    return lg_error(LG_ESHAPE, "%s: %lld input and %lld output channels are not divisible by %lld groups", op,
                    (long long)C, (long long)O, (long long)g->G);
  int64_t eh, ew, ph2, pw2; /* the kernels' extent, the padded input's size */
  if (lg_mul_ovf(g->dh, kh - 1, &eh) || lg_mul_ovf(g->dw, kw - 1, &ew) || lg_mul_ovf(g->ph, 2, &ph2) ||
      lg_mul_ovf(g->pw, 2, &pw2) || lg_add_ovf(ph2, H, &ph2) || lg_add_ovf(pw2, W, &pw2))
    return lg_error(LG_ESHAPE, "%s: sizes overflow", op);
  if (kh < 1 || kw < 1 || eh + 1 > ph2 || ew + 1 > pw2)
    return lg_error(
        LG_ESHAPE,
        "%s: the kernel (%lld x %lld, dilation %lld x %lld) is larger than the padded input (%lld x %lld)",
        op, (long long)kh, (long long)kw, (long long)g->dh, (long long)g->dw, (long long)ph2, (long long)pw2);
  g->Ho = (ph2 - eh - 1) / g->sh + 1;
  g->Wo = (pw2 - ew - 1) / g->sw + 1;
  return LG_OK;
}

/* ---- im2col / col2im for one sample's group: x (Cg, H, W) <-> cols (Cg kh kw, Ho Wo) ---- */

#define IM2COL(name, T)                                                                                      \
  static void name(const conv_geom *g, int64_t Cg, const T *x, T *cols) {                                    \
    for (int64_t c = 0; c < Cg; c++)                                                                         \
      for (int64_t p = 0; p < g->kh; p++)                                                                    \
        for (int64_t q = 0; q < g->kw; q++) {                                                                \
          T *row = cols + ((c * g->kh + p) * g->kw + q) * g->Ho * g->Wo;                                     \
          const T *plane = x + c * g->H * g->W;                                                              \
          for (int64_t i = 0; i < g->Ho; i++) {                                                              \
            int64_t h = i * g->sh - g->ph + p * g->dh;                                                       \
            T *r = row + i * g->Wo;                                                                          \
            if (h < 0 || h >= g->H) {                                                                        \
              memset(r, 0, sizeof(T) * (size_t)g->Wo);                                                       \
              continue;                                                                                      \
            }                                                                                                \
            const T *src = plane + h * g->W;                                                                 \
            int64_t w0 = q * g->dw - g->pw; /* input column of output column 0 */                            \
            if (g->sw == 1) { /* a contiguous run of the input row, zeros where it overhangs */              \
              int64_t lo = w0 < 0 ? -w0 : 0, hi = g->W - w0 < g->Wo ? g->W - w0 : g->Wo;                     \
              if (hi < lo) hi = lo;                                                                          \
              for (int64_t j = 0; j < lo; j++) r[j] = 0;                                                     \
              if (hi > lo) memcpy(r + lo, src + w0 + lo, sizeof(T) * (size_t)(hi - lo));                     \
              for (int64_t j = hi; j < g->Wo; j++) r[j] = 0;                                                 \
              continue;                                                                                      \
            }                                                                                                \
            for (int64_t j = 0; j < g->Wo; j++) {                                                            \
              int64_t w = j * g->sw + w0;                                                                    \
              r[j] = (w >= 0 && w < g->W) ? src[w] : 0;                                                      \
            }                                                                                                \
          }                                                                                                  \
        }                                                                                                    \
  }
IM2COL(im2col_f32, float)
IM2COL(im2col_f64, double)

#define COL2IM(name, T)                                                                                      \
  static void name(const conv_geom *g, int64_t Cg, const T *cols, T *x) {                                    \
    for (int64_t c = 0; c < Cg; c++)                                                                         \
      for (int64_t p = 0; p < g->kh; p++)                                                                    \
        for (int64_t q = 0; q < g->kw; q++) {                                                                \
          const T *row = cols + ((c * g->kh + p) * g->kw + q) * g->Ho * g->Wo;                               \
          T *plane = x + c * g->H * g->W;                                                                    \
          for (int64_t i = 0; i < g->Ho; i++) {                                                              \
            int64_t h = i * g->sh - g->ph + p * g->dh;                                                       \
            if (h < 0 || h >= g->H) continue;                                                                \
            const T *r = row + i * g->Wo;                                                                    \
            T *dst = plane + h * g->W;                                                                       \
            for (int64_t j = 0; j < g->Wo; j++) {                                                            \
              int64_t w = j * g->sw - g->pw + q * g->dw;                                                     \
              if (w >= 0 && w < g->W) dst[w] += r[j];                                                        \
            }                                                                                                \
          }                                                                                                  \
        }                                                                                                    \
  }
COL2IM(col2im_f32, float)
COL2IM(col2im_f64, double)

static void im2col(lg_dtype dt, const conv_geom *g, int64_t Cg, const void *x, void *cols) {
  if (dt == LG_FLOAT32)
    im2col_f32(g, Cg, x, cols);
  else
    im2col_f64(g, Cg, x, cols);
}
static void col2im(lg_dtype dt, const conv_geom *g, int64_t Cg, const void *cols, void *x) {
  if (dt == LG_FLOAT32)
    col2im_f32(g, Cg, cols, x);
  else
    col2im_f64(g, Cg, cols, x);
}

/* ---- argument checks and the three kernels ---- */

/* t as a contiguous tensor of dtype dt (a new reference) */
static lg_status as_contig(lg_tensor *t, lg_dtype dt, lg_tensor **out) {
  if (t->dtype == dt && lg_is_contiguous(t)) {
    *out = lg_tensor_retain(t);
    return LG_OK;
  }
  return lg_copy_as(t, dt, out);
}

static lg_status float_dtype(const char *op, lg_tensor *a, lg_tensor *b, lg_dtype *dt) {
  *dt = lg_promote(a->dtype, b->dtype);
  if (!lg_dtype_is_float(*dt))
    return lg_error(LG_EDTYPE, "%s: needs float tensors, got %s", op, lg_dtype_name(*dt));
  return LG_OK;
}

/* the working memory of one call: contiguous inputs and the column buffer */
typedef struct {
  lg_tensor *a, *b, *bias, *out;
  void *cols;
} conv_work;

static void work_release(conv_work *w) {
  lg_tensor_release(w->a);
  lg_tensor_release(w->b);
  lg_tensor_release(w->bias);
  free(w->cols);
}

static lg_status alloc_cols(conv_work *w, const conv_geom *g, lg_dtype dt) {
  size_t n = (size_t)(g->C / g->G) * (size_t)(g->kh * g->kw) * (size_t)(g->Ho * g->Wo);
  w->cols = malloc((n ? n : 1) * lg_dtype_size(dt));
  return w->cols ? LG_OK : lg_error(LG_ENOMEM, "conv2d: out of memory for the column buffer");
}

lg_status lg_conv2d_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *wt = a->in[1], *b = a->nin > 2 ? a->in[2] : NULL;
  if (x->ndim != 4) return lg_error(LG_ESHAPE, "conv2d: expected 4-d input (N, C, H, W), got %s", SHAPE(x));
  if (wt->ndim != 4)
    return lg_error(LG_ESHAPE, "conv2d: expected 4-d weight (O, C/groups, kH, kW), got %s", SHAPE(wt));
  conv_geom g;
  LG_TRY(fill_geom("conv2d", a, x->shape[0], x->shape[1], x->shape[2], x->shape[3], wt->shape[0],
                   wt->shape[2], wt->shape[3], &g));
  if (wt->shape[1] * g.G != g.C)
    return lg_error(LG_ESHAPE,
                    "conv2d: weight %s expects %lld input channels (%lld groups), the input %s has %lld",
                    SHAPE(wt), (long long)(wt->shape[1] * g.G), (long long)g.G, SHAPE(x), (long long)g.C);
  if (b && (b->ndim != 1 || b->shape[0] != g.O))
    return lg_error(LG_ESHAPE, "conv2d: bias %s does not match %lld output channels", SHAPE(b),
                    (long long)g.O);
  lg_dtype dt;
  LG_TRY(float_dtype("conv2d", x, wt, &dt));
  conv_work w = {0};
  int64_t oshape[4] = {g.N, g.O, g.Ho, g.Wo};
  lg_status st = as_contig(x, dt, &w.a);
  if (st == LG_OK) st = as_contig(wt, dt, &w.b);
  if (st == LG_OK && b) st = as_contig(b, dt, &w.bias);
  if (st == LG_OK) st = alloc_cols(&w, &g, dt);
  if (st == LG_OK) st = lg_tensor_empty(oshape, 4, dt, out);
  if (st != LG_OK) {
    work_release(&w);
    return st;
  }
  int64_t Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, P = g.Ho * g.Wo;
  size_t es = lg_dtype_size(dt);
  char *xd = lg_data(w.a), *wd = lg_data(w.b), *yd = lg_data(*out);
  for (int64_t n = 0; n < g.N && st == LG_OK; n++)
    for (int64_t gi = 0; gi < g.G && st == LG_OK; gi++) {
      char *y = yd + ((n * g.O + gi * Og) * P) * (int64_t)es;
      im2col(dt, &g, Cg, xd + ((n * g.C + gi * Cg) * g.H * g.W) * (int64_t)es, w.cols);
      st = lg_gemm(dt, 0, 0, Og, P, K, wd + gi * Og * K * (int64_t)es, K, w.cols, P, 0, y, P);
      if (w.bias)
        for (int64_t o = 0; o < Og; o++) {
          double bv = lg_get_flat(w.bias, gi * Og + o);
          if (dt == LG_FLOAT32)
            for (int64_t p = 0; p < P; p++) ((float *)y)[o * P + p] += (float)bv;
          else
            for (int64_t p = 0; p < P; p++) ((double *)y)[o * P + p] += bv;
        }
    }
  work_release(&w);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

lg_status lg_conv2d_grad_input_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *gy = a->in[0], *wt = a->in[1];
  if (gy->ndim != 4 || wt->ndim != 4)
    return lg_error(LG_ESHAPE, "conv2d_grad_input: expected 4-d gradient and weight, got %s and %s",
                    SHAPE(gy), SHAPE(wt));
  conv_geom g;
  LG_TRY(fill_geom("conv2d_grad_input", a, gy->shape[0], wt->shape[1] * a->mode, a->shape[6], a->shape[7],
                   wt->shape[0], wt->shape[2], wt->shape[3], &g));
  if (gy->shape[1] != g.O || gy->shape[2] != g.Ho || gy->shape[3] != g.Wo)
    return lg_error(LG_ESHAPE, "conv2d_grad_input: gradient %s does not fit the output {%lld,%lld,%lld,%lld}",
                    SHAPE(gy), (long long)g.N, (long long)g.O, (long long)g.Ho, (long long)g.Wo);
  lg_dtype dt;
  LG_TRY(float_dtype("conv2d_grad_input", gy, wt, &dt));
  conv_work w = {0};
  int64_t xshape[4] = {g.N, g.C, g.H, g.W};
  lg_status st = as_contig(gy, dt, &w.a);
  if (st == LG_OK) st = as_contig(wt, dt, &w.b);
  if (st == LG_OK) st = alloc_cols(&w, &g, dt);
  if (st == LG_OK) st = lg_tensor_zeros(xshape, 4, dt, out);
  if (st != LG_OK) {
    work_release(&w);
    return st;
  }
  int64_t Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, P = g.Ho * g.Wo;
  size_t es = lg_dtype_size(dt);
  char *gd = lg_data(w.a), *wd = lg_data(w.b), *xd = lg_data(*out);
  for (int64_t n = 0; n < g.N && st == LG_OK; n++)
    for (int64_t gi = 0; gi < g.G && st == LG_OK; gi++) {
      /* dcols (K, P) = W_group^T (K, Og) g (Og, P) */
      st = lg_gemm(dt, 1, 0, K, P, Og, wd + gi * Og * K * (int64_t)es, K,
                   gd + ((n * g.O + gi * Og) * P) * (int64_t)es, P, 0, w.cols, P);
      if (st == LG_OK) col2im(dt, &g, Cg, w.cols, xd + ((n * g.C + gi * Cg) * g.H * g.W) * (int64_t)es);
    }
  work_release(&w);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

lg_status lg_conv2d_grad_weight_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *gy = a->in[1];
  if (x->ndim != 4 || gy->ndim != 4)
    return lg_error(LG_ESHAPE, "conv2d_grad_weight: expected 4-d input and gradient, got %s and %s", SHAPE(x),
                    SHAPE(gy));
  conv_geom g;
  LG_TRY(fill_geom("conv2d_grad_weight", a, x->shape[0], x->shape[1], x->shape[2], x->shape[3], gy->shape[1],
                   a->shape[6], a->shape[7], &g));
  if (gy->shape[0] != g.N || gy->shape[2] != g.Ho || gy->shape[3] != g.Wo)
    return lg_error(LG_ESHAPE,
                    "conv2d_grad_weight: gradient %s does not fit the output {%lld,%lld,%lld,%lld}",
                    SHAPE(gy), (long long)g.N, (long long)g.O, (long long)g.Ho, (long long)g.Wo);
  lg_dtype dt;
  LG_TRY(float_dtype("conv2d_grad_weight", x, gy, &dt));
  conv_work w = {0};
  int64_t Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw, P = g.Ho * g.Wo;
  int64_t wshape[4] = {g.O, Cg, g.kh, g.kw};
  lg_status st = as_contig(x, dt, &w.a);
  if (st == LG_OK) st = as_contig(gy, dt, &w.b);
  if (st == LG_OK) st = alloc_cols(&w, &g, dt);
  if (st == LG_OK) st = lg_tensor_zeros(wshape, 4, dt, out);
  if (st != LG_OK) {
    work_release(&w);
    return st;
  }
  size_t es = lg_dtype_size(dt);
  char *xd = lg_data(w.a), *gd = lg_data(w.b), *wd = lg_data(*out);
  for (int64_t n = 0; n < g.N && st == LG_OK; n++)
    for (int64_t gi = 0; gi < g.G && st == LG_OK; gi++) {
      im2col(dt, &g, Cg, xd + ((n * g.C + gi * Cg) * g.H * g.W) * (int64_t)es, w.cols);
      /* dW_group (Og, K) += g (Og, P) cols^T (P, K) */
      st = lg_gemm(dt, 0, 1, Og, K, P, gd + ((n * g.O + gi * Og) * P) * (int64_t)es, P, w.cols, P, 1,
                   wd + gi * Og * K * (int64_t)es, K);
    }
  work_release(&w);
  if (st != LG_OK) lg_tensor_release(*out);
  return st;
}

/* ---- rules ---- */

/* one of the three ops with n's (or a's) geometry; slot 6..7 set for grad_input / grad_weight */
static lg_tensor *sc_conv(sc *s, lg_opcode code, const lg_args *geom, lg_tensor *p, lg_tensor *q, int64_t e0,
                          int64_t e1) {
  lg_args a = *geom;
  a.in[0] = p, a.in[1] = q, a.in[2] = NULL, a.nin = 2;
  a.list = NULL, a.nlist = 0;
  a.shape[6] = e0, a.shape[7] = e1;
  return sc_op(s, code, a);
}

/* conv2d: dx = grad_input(g, w), dw = grad_weight(x, g), db = g summed over n, i, j */
lg_status lg_conv2d_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *x = n->args.in[0], *w = n->args.in[1];
  lg_tensor *dx =
      n->needs[0] ? sc_conv(&s, LG_OP_CONV2D_GRAD_INPUT, &n->args, g, w, x->shape[2], x->shape[3]) : NULL;
  lg_tensor *dw =
      n->needs[1] ? sc_conv(&s, LG_OP_CONV2D_GRAD_WEIGHT, &n->args, x, g, w->shape[2], w->shape[3]) : NULL;
  if (n->nin > 2 && n->needs[2] && s.st == LG_OK) {
    lg_tensor *db =
        sc_reduce(&s, LG_OP_SUM, sc_reduce(&s, LG_OP_SUM, sc_reduce(&s, LG_OP_SUM, g, 3, 0), 2, 0), 0, 0);
    if (db) gin[2] = lg_tensor_retain(db);
  }
  return sc_done2(&s, dx, &gin[0], dw, &gin[1]);
}
lg_status lg_conv2d_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                        lg_tensor **tout) {
  sc s = {0};
  lg_tensor *t = tin[0] ? sc_conv(&s, LG_OP_CONV2D, a, tin[0], a->in[1], 0, 0) : NULL;
  if (tin[1]) t = sc_add0(&s, t, sc_conv(&s, LG_OP_CONV2D, a, a->in[0], tin[1], 0, 0));
  if (a->nin > 2 && tin[2]) { /* the bias's tangent on every position: (O) -> (O, 1, 1) */
    int64_t shape[3] = {tin[2]->shape[0], 1, 1};
    t = sc_add0(&s, t, sc_reshape(&s, tin[2], shape, 3));
  }
  return sc_done(&s, t, tout);
}

/* grad_input(g, w): d/dg = conv2d(gg, w), d/dw = grad_weight(gg, g) */
lg_status lg_conv2d_grad_input_backward(lg_node *n, lg_tensor *gg, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *g = n->args.in[0], *w = n->args.in[1];
  lg_tensor *dg = n->needs[0] ? sc_conv(&s, LG_OP_CONV2D, &n->args, gg, w, 0, 0) : NULL;
  lg_tensor *dw =
      n->needs[1] ? sc_conv(&s, LG_OP_CONV2D_GRAD_WEIGHT, &n->args, gg, g, w->shape[2], w->shape[3]) : NULL;
  return sc_done2(&s, dg, &gin[0], dw, &gin[1]);
}
lg_status lg_conv2d_grad_input_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                   lg_tensor **tout) {
  sc s = {0};
  int64_t H = a->shape[6], W = a->shape[7];
  lg_tensor *t = tin[0] ? sc_conv(&s, LG_OP_CONV2D_GRAD_INPUT, a, tin[0], a->in[1], H, W) : NULL;
  if (tin[1]) t = sc_add0(&s, t, sc_conv(&s, LG_OP_CONV2D_GRAD_INPUT, a, a->in[0], tin[1], H, W));
  return sc_done(&s, t, tout);
}

/* grad_weight(x, g): d/dx = grad_input(g, gg), d/dg = conv2d(x, gg) */
lg_status lg_conv2d_grad_weight_backward(lg_node *n, lg_tensor *gg, lg_tensor **gin) {
  sc s = {0};
  lg_tensor *x = n->args.in[0], *g = n->args.in[1];
  lg_tensor *dx =
      n->needs[0] ? sc_conv(&s, LG_OP_CONV2D_GRAD_INPUT, &n->args, g, gg, x->shape[2], x->shape[3]) : NULL;
  lg_tensor *dg = n->needs[1] ? sc_conv(&s, LG_OP_CONV2D, &n->args, x, gg, 0, 0) : NULL;
  return sc_done2(&s, dx, &gin[0], dg, &gin[1]);
}
lg_status lg_conv2d_grad_weight_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                                    lg_tensor **tout) {
  sc s = {0};
  int64_t kh = a->shape[6], kw = a->shape[7];
  lg_tensor *t = tin[0] ? sc_conv(&s, LG_OP_CONV2D_GRAD_WEIGHT, a, tin[0], a->in[1], kh, kw) : NULL;
  if (tin[1]) t = sc_add0(&s, t, sc_conv(&s, LG_OP_CONV2D_GRAD_WEIGHT, a, a->in[0], tin[1], kh, kw));
  return sc_done(&s, t, tout);
}
