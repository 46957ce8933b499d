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
** Kernels: per sample and group, im2col then one GEMM through OpenBLAS, with K = C/G kh kw and
** P = Ho Wo:
**   cols (K, P) = im2col(x[n, group])      y[n, group] = W_group (O/G, K) cols
**   dcols = W_group^T g[n, group]; dx[n, group] = col2im(dcols)
**   dW_group += g[n, group] cols^T  (summed over the samples)
** (see "the samples across threads" below for how threads share the work).
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

/* ---- im2col / col2im for one sample's group: x (Cg, H, W) <-> cols (Cg kh kw, Ho Wo), the rows
** of cols ld elements apart (a block of samples side by side: ld = nb Ho Wo) ---- */

#define IM2COL(name, T)                                                                                      \
  static void name(const conv_geom *g, int64_t Cg, const T *x, T *cols, int64_t ld) {                        \
    for (int64_t c = 0; c < Cg; c++)                                                                         \
      for (int64_t p = 0; p < g->kh; p++)                                                                    \
        for (int64_t q = 0; q < g->kw; q++) {                                                                \
          T *row = cols + ((c * g->kh + p) * g->kw + q) * ld;                                                \
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
  static void name(const conv_geom *g, int64_t Cg, const T *cols, T *x, int64_t ld) {                        \
    for (int64_t c = 0; c < Cg; c++)                                                                         \
      for (int64_t p = 0; p < g->kh; p++)                                                                    \
        for (int64_t q = 0; q < g->kw; q++) {                                                                \
          const T *row = cols + ((c * g->kh + p) * g->kw + q) * ld;                                          \
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

static void im2col(lg_dtype dt, const conv_geom *g, int64_t Cg, const void *x, void *cols, int64_t ld) {
  if (dt == LG_FLOAT32)
    im2col_f32(g, Cg, x, cols, ld);
  else
    im2col_f64(g, Cg, x, cols, ld);
}
static void col2im(lg_dtype dt, const conv_geom *g, int64_t Cg, const void *cols, void *x, int64_t ld) {
  if (dt == LG_FLOAT32)
    col2im_f32(g, Cg, cols, x, ld);
  else
    col2im_f64(g, Cg, cols, x, ld);
}

/* ---- the samples across threads ----
** Each sample's products are small (a (O/G, K) x (K, P) product), so rather than ask OpenBLAS to
** split each one, the engine's threads take whole samples: every worker runs its samples' im2col,
** GEMMs (OpenBLAS on one thread) and col2im with its own column buffer, and writes its samples'
** part of the result. The weight gradient sums over the samples: each fixed chunk of samples sums
** into its own (O, K) buffer and the chunks are added in order, so the result never depends on the
** number of threads. Column buffers hold one sample's group, from the engine's allocator. */
#define MAX_CHUNKS 64

typedef struct {
  const conv_geom *g;
  lg_dtype dt;
  size_t es;
  int blas; /* lg_gemm_serial_prepare's answer */
  int64_t Cg, Og, K, P, chunk;
  const char *x;    /* (N, C, H, W): the input (conv2d, grad_weight) */
  const char *w;    /* (O, Cg, kh, kw): the weight (conv2d, grad_input) */
  const char *nop;  /* (N, O, P): the incoming gradient (grad_input, grad_weight) */
  char *out;        /* the result: y (N, O, P), dx (N, C, H, W), or the chunks' (O, K) partial sums */
  const char *bias; /* (O) or NULL */
  lg_status st;     /* a worker's failure (out of memory for its buffer) */
} conv_job;

#define AT(p, i) ((p) + (i) * (int64_t)c->es)
/* a worker's column buffer: K P elements */
static char *cols_new(conv_job *c, lg_tensor **t) {
  int64_t n = c->K * c->P > 0 ? c->K * c->P : 1;
  if (lg_tensor_empty(&n, 1, c->dt, t) != LG_OK) {
    c->st = LG_ENOMEM;
    return NULL;
  }
  return lg_data(*t);
}

static void forward_samples(void *c_, int64_t lo, int64_t hi) {
  conv_job *c = c_;
  const conv_geom *g = c->g;
  lg_tensor *ct = NULL;
  char *cols = cols_new(c, &ct);
  for (int64_t n = lo; n < hi && cols; n++)
    for (int64_t gi = 0; gi < g->G; gi++) {
      char *y = AT(c->out, (n * g->O + gi * c->Og) * c->P);
      im2col(c->dt, g, c->Cg, AT(c->x, (n * g->C + gi * c->Cg) * g->H * g->W), cols, c->P);
      /* y[n, group] (Og, P) = W_group (Og, K) cols (K, P) */
      lg_gemm_serial(c->blas, c->dt, 0, 0, c->Og, c->P, c->K, AT(c->w, gi * c->Og * c->K), c->K, cols, c->P,
                     0, y, c->P);
      for (int64_t o = 0; c->bias && o < c->Og; o++) {
        if (c->dt == LG_FLOAT32) {
          float bv = ((const float *)c->bias)[gi * c->Og + o], *r = (float *)y + o * c->P;
          for (int64_t p = 0; p < c->P; p++) r[p] += bv;
        } else {
          double bv = ((const double *)c->bias)[gi * c->Og + o], *r = (double *)y + o * c->P;
          for (int64_t p = 0; p < c->P; p++) r[p] += bv;
        }
      }
    }
  lg_tensor_release(ct);
}

static void grad_input_samples(void *c_, int64_t lo, int64_t hi) {
  conv_job *c = c_;
  const conv_geom *g = c->g;
  lg_tensor *ct = NULL;
  char *cols = cols_new(c, &ct);
  for (int64_t n = lo; n < hi && cols; n++)
    for (int64_t gi = 0; gi < g->G; gi++) {
      /* dcols (K, P) = W_group^T (K, Og) g[n, group] (Og, P); dx[n, group] = col2im(dcols) */
      lg_gemm_serial(c->blas, c->dt, 1, 0, c->K, c->P, c->Og, AT(c->w, gi * c->Og * c->K), c->K,
                     AT(c->nop, (n * g->O + gi * c->Og) * c->P), c->P, 0, cols, c->P);
      col2im(c->dt, g, c->Cg, cols, AT(c->out, (n * g->C + gi * c->Cg) * g->H * g->W), c->P);
    }
  lg_tensor_release(ct);
}

/* chunk q sums samples q chunk .. (q + 1) chunk - 1 into out + q O K */
static void grad_weight_chunks(void *c_, int64_t lo, int64_t hi) {
  conv_job *c = c_;
  const conv_geom *g = c->g;
  lg_tensor *ct = NULL;
  char *cols = cols_new(c, &ct);
  for (int64_t q = lo; q < hi && cols; q++) {
    char *dw = AT(c->out, q * g->O * c->K);
    memset(dw, 0, (size_t)(g->O * c->K) * c->es);
    for (int64_t n = q * c->chunk; n < (q + 1) * c->chunk && n < g->N; n++)
      for (int64_t gi = 0; gi < g->G; gi++) {
        im2col(c->dt, g, c->Cg, AT(c->x, (n * g->C + gi * c->Cg) * g->H * g->W), cols, c->P);
        /* dW_group (Og, K) += g[n, group] (Og, P) cols^T (P, K) */
        lg_gemm_serial(c->blas, c->dt, 0, 1, c->Og, c->K, c->P, AT(c->nop, (n * g->O + gi * c->Og) * c->P),
                       c->P, cols, c->P, 1, dw + gi * c->Og * c->K * (int64_t)c->es, c->K);
      }
  }
  lg_tensor_release(ct);
}
#undef AT

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

static conv_job job_for(const conv_geom *g, lg_dtype dt) {
  conv_job c = {.g = g, .dt = dt, .es = lg_dtype_size(dt), .Cg = g->C / g->G, .Og = g->O / g->G};
  c.K = c.Cg * g->kh * g->kw;
  c.P = g->Ho * g->Wo;
  c.blas = lg_gemm_serial_prepare();
  return c;
}
static lg_status job_status(const char *op, const conv_job *c) {
  return c->st == LG_OK ? LG_OK : lg_error(LG_ENOMEM, "%s: out of memory for the column buffer", op);
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
  lg_tensor *xc = NULL, *wc = NULL, *bc = NULL;
  int64_t oshape[4] = {g.N, g.O, g.Ho, g.Wo};
  lg_status st = as_contig(x, dt, &xc);
  if (st == LG_OK) st = as_contig(wt, dt, &wc);
  if (st == LG_OK && b) st = as_contig(b, dt, &bc);
  if (st == LG_OK) st = lg_tensor_empty(oshape, 4, dt, out);
  if (st == LG_OK) {
    conv_job c = job_for(&g, dt);
    c.x = lg_data(xc), c.w = lg_data(wc), c.bias = bc ? lg_data(bc) : NULL, c.out = lg_data(*out);
    lg_parallel_for_cost(g.N, (c.K + c.Og) * c.P * g.G, forward_samples, &c);
    if ((st = job_status("conv2d", &c)) != LG_OK) lg_tensor_release(*out);
  }
  lg_tensor_release(xc);
  lg_tensor_release(wc);
  lg_tensor_release(bc);
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
  lg_tensor *gc = NULL, *wc = NULL;
  int64_t xshape[4] = {g.N, g.C, g.H, g.W};
  lg_status st = as_contig(gy, dt, &gc);
  if (st == LG_OK) st = as_contig(wt, dt, &wc);
  if (st == LG_OK) st = lg_tensor_zeros(xshape, 4, dt, out);
  if (st == LG_OK) {
    conv_job c = job_for(&g, dt);
    c.nop = lg_data(gc), c.w = lg_data(wc), c.out = lg_data(*out);
    lg_parallel_for_cost(g.N, (c.K + c.Og) * c.P * g.G, grad_input_samples, &c);
    if ((st = job_status("conv2d_grad_input", &c)) != LG_OK) lg_tensor_release(*out);
  }
  lg_tensor_release(gc);
  lg_tensor_release(wc);
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
  lg_tensor *xc = NULL, *gc = NULL, *parts = NULL;
  int64_t wshape[4] = {g.O, g.C / g.G, g.kh, g.kw};
  conv_job c = job_for(&g, dt);
  /* chunks of samples: 8 or more, at most MAX_CHUNKS of them (fixed by N alone) */
  c.chunk = g.N / MAX_CHUNKS + 1 > 8 ? g.N / MAX_CHUNKS + 1 : 8;
  int64_t nq = (g.N + c.chunk - 1) / c.chunk, pshape[2] = {nq > 0 ? nq : 1, g.O * c.K};
  lg_status st = as_contig(x, dt, &xc);
  if (st == LG_OK) st = as_contig(gy, dt, &gc);
  if (st == LG_OK) st = lg_tensor_empty(pshape, 2, dt, &parts);
  if (st == LG_OK) {
    c.x = lg_data(xc), c.nop = lg_data(gc), c.out = lg_data(parts);
    lg_parallel_for_cost(nq, (c.K + c.Og) * c.P * g.G * c.chunk, grad_weight_chunks, &c);
    st = job_status("conv2d_grad_weight", &c);
  }
  if (st == LG_OK && (st = lg_tensor_zeros(wshape, 4, dt, out)) == LG_OK) { /* the chunks' sums, in order */
    int64_t m = g.O * c.K;
    for (int64_t q = 0; q < nq; q++)
      if (dt == LG_FLOAT32) {
        float *d = lg_data(*out);
        const float *p = (const float *)lg_data(parts) + q * m;
        for (int64_t i = 0; i < m; i++) d[i] += p[i];
      } else {
        double *d = lg_data(*out);
        const double *p = (const double *)lg_data(parts) + q * m;
        for (int64_t i = 0; i < m; i++) d[i] += p[i];
      }
  }
  lg_tensor_release(xc);
  lg_tensor_release(gc);
  lg_tensor_release(parts);
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
    int64_t rows[3] = {g->shape[0], g->shape[1], g->shape[2] * g->shape[3]}; /* planes as rows: two sums */
    lg_tensor *db =
        sc_reduce(&s, LG_OP_SUM, sc_reduce(&s, LG_OP_SUM, sc_reshape(&s, g, rows, 3), 2, 0), 0, 0);
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
