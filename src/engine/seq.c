/*
** seq.c: the ops sequence models need, each a row of the op table (ops.c) with its kernels and
** rules here:
**
**   embedding(W, idx)       y[p, :] = W[idx[p], :]; idx int64 (1-based) of any shape
**   masked_fill(x, m, v)    y = v where m != 0, else x; m of any dtype, broadcast with x
**   tril(x, k) / triu(x, k) the lower / upper triangle of the last two dimensions, from diagonal k
**   sort(x, dim, desc)      values and 1-based indices, stable (NaN sorts as the largest)
**   topk(x, k, dim, large)  the k largest (smallest) along dim, in order, with their indices
**   cumsum(x, dim, rev)     running sums along dim (rev: from the end), in double for floats
**
** Rules, written with recorded ops (compose.h) so they can be differentiated again:
**   embedding    dW = index_add of g's rows at idx (repeated indices summed; the padding row
**                zeroed: it is treated as a constant, as PyTorch's padding_idx);
**                forward mode: embedding(tW, idx), zero at the padding positions
**   masked_fill  dx = masked_fill(g, m, 0); forward mode the same on the tangent
**   tril/triu    the same triangle of g (of the tangent)
**   sort/topk    dx = g scattered to the chosen positions (scatter_add); forward mode: the
**                tangent gathered at them
**   cumsum       dx = the reverse cumsum of g; forward mode: cumsum of the tangent
*/
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compose.h"

#define NEEDS(n, i) ((n)->needs[i])

static lg_status same_op(const lg_op *op, const lg_args *a, lg_tensor *t, lg_tensor **out) {
  lg_args b = *a;
  b.in[0] = t;
  return lg_apply((lg_opcode)(op - lg_ops), &b, out);
}

/* ==== embedding ====
** in[0] weight (num, D) float, in[1] indices int64 of any shape (1-based), args.start the padding
** row (0-based) or -1. Forward saves both inputs; the weight's gradient reads only the indices. */

static lg_status embedding_check(const lg_tensor *w, const lg_tensor *idx) {
  if (w->ndim != 2)
    return lg_error(LG_ESHAPE, "embedding: weight must be 2-d (num_embeddings, embedding_dim), got %s",
                    SHAPE(w));
  if (!lg_dtype_is_float(w->dtype))
    return lg_error(LG_EDTYPE, "embedding: weight must be float32 or float64, got %s",
                    lg_dtype_name(w->dtype));
  if (idx->dtype != LG_INT64)
    return lg_error(LG_EDTYPE, "embedding: indices must be int64, got %s", lg_dtype_name(idx->dtype));
  if (idx->ndim + 1 > LG_MAX_DIMS)
    return lg_error(LG_ESHAPE, "embedding: indices %s have too many dimensions", SHAPE(idx));
  return LG_OK;
}

/* rows of W copied to y: y is n x D, W num x D, both contiguous; every index already checked */
#define EMBED_ROWS(name, T)                                                                                  \
  static void name(T *restrict y, const T *restrict w, const int64_t *ip, int64_t n, int64_t D) {            \
    for (int64_t p = 0; p < n; p++) memcpy(y + p * D, w + (ip[p] - 1) * D, sizeof(T) * (size_t)D);           \
  }
EMBED_ROWS(embedding_f32, float)
EMBED_ROWS(embedding_f64, double)

lg_status lg_embedding_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *w = a->in[0], *idx = a->in[1], *wc = NULL, *ic = NULL;
  LG_TRY(embedding_check(w, idx));
  int64_t num = w->shape[0], D = w->shape[1], n = lg_numel(idx);
  lg_status st = lg_contiguous(idx, &ic);
  if (st != LG_OK) return st;
  const int64_t *ip = lg_data(ic);
  for (int64_t p = 0; p < n; p++)
    if (ip[p] < 1 || ip[p] > num) {
      lg_tensor_release(ic);
      return lg_error(LG_EINDEX, "embedding: index %lld out of range 1..%lld (weight %s)", (long long)ip[p],
                      (long long)num, SHAPE(w));
    }
  int64_t shape[LG_MAX_DIMS];
  memcpy(shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
  shape[idx->ndim] = D;
  st = lg_contiguous(w, &wc);
  if (st == LG_OK) st = lg_new(shape, idx->ndim + 1, w->dtype, out);
  if (st == LG_OK) {
    if (w->dtype == LG_FLOAT32)
      embedding_f32(lg_data(*out), lg_data(wc), ip, n, D);
    else
      embedding_f64(lg_data(*out), lg_data(wc), ip, n, D);
  }
  lg_tensor_release(ic);
  lg_tensor_release(wc);
  return st;
}

/* dW = index_add(g as (n, D), idx as (n), dim 1, shape (num, D)), the padding row zeroed */
lg_status lg_embedding_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  if (!NEEDS(n, 0)) return LG_OK;
  sc s = {0};
  const lg_edge *e = &n->edges[0];
  lg_tensor *idx = n->args.in[1];
  int64_t flat = lg_numel(idx), g2[2] = {flat, e->shape[1]};
  lg_tensor *gi = sc_reshape(&s, idx, &flat, 1);
  lg_args ia = {.in = {sc_reshape(&s, g, g2, 2), gi},
                .nin = 2,
                .dim = 0,
                .nshape = 2,
                .shape = {e->shape[0], e->shape[1]}};
  lg_tensor *gw = sc_op(&s, LG_OP_INDEX_ADD, ia);
  if (n->args.start >= 0 && gw) { /* no gradient for the padding row */
    int64_t ms[2] = {e->shape[0], 1};
    lg_tensor *m = NULL;
    lg_status st = lg_tensor_zeros(ms, 2, LG_INT64, &m);
    if (st == LG_OK) ((int64_t *)lg_data(m))[n->args.start] = 1;
    sc_keep(&s, st, m);
    lg_args fa = {.in = {gw, m}, .nin = 2, .dim = -1};
    gw = sc_op(&s, LG_OP_MASKED_FILL, fa);
  }
  return sc_done(&s, gw, &gin[0]);
}
/* the padding row counts as a constant in forward mode too: its positions get a zero tangent */
lg_status lg_embedding_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout) {
  if (a->start < 0) return same_op(op, a, tin[0], tout);
  sc s = {0};
  lg_tensor *idx = a->in[1];
  lg_tensor *t =
      sc_op(&s, LG_OP_EMBEDDING, (lg_args){.in = {tin[0], idx}, .nin = 2, .dim = -1, .start = a->start});
  lg_tensor *pad = sc_unsqueeze(&s, sc_bs(&s, LG_OP_EQ, idx, (double)(a->start + 1)), idx->ndim);
  return sc_done(&s, sc_op(&s, LG_OP_MASKED_FILL, (lg_args){.in = {t, pad}, .nin = 2, .dim = -1}), tout);
}

/* ==== masked_fill ====
** in[0] x, in[1] mask (any dtype, nonzero = fill), broadcast together; args.s[0] the value. */

#define MASKED_FILL(name, T)                                                                                 \
  static void name(int64_t n, char *o_, int64_t so, const char *x_, int64_t sx, const char *m, int64_t sm,   \
                   lg_dtype mdt, double v) {                                                                 \
    T *o = (T *)o_, fill = (T)v;                                                                             \
    const T *x = (const T *)x_;                                                                              \
    size_t ms = lg_dtype_size(mdt);                                                                          \
    for (int64_t i = 0; i < n; i++)                                                                          \
      o[i * so] = lg_load(m + i * sm * (int64_t)ms, mdt) != 0 ? fill : x[i * sx];                            \
  }
MASKED_FILL(masked_fill_f32, float)
MASKED_FILL(masked_fill_f64, double)
MASKED_FILL(masked_fill_i64, int64_t)

typedef void (*masked_fill_k)(int64_t n, char *o, int64_t so, const char *x, int64_t sx, const char *m,
                              int64_t sm, lg_dtype mdt, double v);
static const masked_fill_k masked_fill_kernels[LG_NDTYPES] = {masked_fill_f32, masked_fill_f64,
                                                              masked_fill_i64};
typedef struct {
  masked_fill_k k;
  lg_dtype mdt;
  double v;
} masked_fill_ctx;

static void masked_fill_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  const masked_fill_ctx *c = ctx;
  c->k(n, p[0], s[0], p[1], s[1], p[2], s[2], c->mdt, c->v);
}

lg_status lg_masked_fill_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *m = a->in[1];
  double v = a->s[0];
  if (x->dtype == LG_INT64 && !(lg_fits_i64(v) && v == floor(v)))
    return lg_error(LG_EVALUE, "masked_fill: value %g does not fit an int64 tensor %s", v, SHAPE(x));
  int64_t shape[LG_MAX_DIMS], sx[LG_MAX_DIMS], sm[LG_MAX_DIMS];
  int nd;
  if (lg_broadcast_shapes("masked_fill", x->shape, x->ndim, m->shape, m->ndim, shape, &nd) != LG_OK)
    return lg_error(LG_ESHAPE, "masked_fill: mask %s does not broadcast with the tensor %s", SHAPE(m),
                    SHAPE(x));
  LG_TRY(lg_new(shape, nd, x->dtype, out));
  lg_broadcast_strides(x, shape, nd, sx);
  lg_broadcast_strides(m, shape, nd, sm);
  masked_fill_ctx c = {masked_fill_kernels[x->dtype], m->dtype, v};
  lg_iter it;
  lg_iter_init(&it, shape, nd);
  lg_iter_add(&it, *out, NULL);
  lg_iter_add(&it, x, sx);
  lg_iter_add(&it, m, sm);
  lg_iter_run(&it, masked_fill_row, &c);
  return LG_OK;
}

/* the gradient and the tangent are masked the same way, with 0 */
static lg_status mask_zero(lg_tensor *t, lg_tensor *m, lg_tensor **out) {
  lg_args z = {.in = {t, m}, .nin = 2, .dim = -1, .s = {0}};
  return lg_apply(LG_OP_MASKED_FILL, &z, out);
}
lg_status lg_masked_fill_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  return NEEDS(n, 0) ? mask_zero(g, n->args.in[1], &gin[0]) : LG_OK;
}
lg_status lg_masked_fill_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                             lg_tensor **tout) {
  return tin[0] ? mask_zero(tin[0], a->in[1], tout) : LG_OK;
}

/* ==== tril, triu ====
** Over the last two dimensions (R rows, C columns) of each matrix: tril keeps (i, j) with
** j - i <= k, triu those with j - i >= k (k = args.start, the diagonal); the rest becomes 0. */

#define TRIANGLE(name, T)                                                                                    \
  static void name(T *restrict o, const T *restrict x, int64_t mats, int64_t R, int64_t C, int64_t k,        \
                   int lower) {                                                                              \
    for (int64_t b = 0; b < mats; b++)                                                                       \
      for (int64_t i = 0; i < R; i++, o += C, x += C)                                                        \
        for (int64_t j = 0; j < C; j++) o[j] = (lower ? j - i <= k : j - i >= k) ? x[j] : 0;                 \
  }
TRIANGLE(triangle_f32, float)
TRIANGLE(triangle_f64, double)
TRIANGLE(triangle_i64, int64_t)

lg_status lg_triangle_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *xc = NULL;
  if (x->ndim < 2)
    return lg_error(LG_ESHAPE, "%s: needs a tensor of at least 2 dimensions, got %s", op->name, SHAPE(x));
  int64_t R = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1], n = lg_numel(x);
  int64_t mats = R * C != 0 ? n / (R * C) : 0;
  LG_TRY(lg_contiguous(x, &xc));
  lg_status st = lg_new(x->shape, x->ndim, x->dtype, out);
  if (st == LG_OK) {
    int lower = op == &lg_ops[LG_OP_TRIL];
    void *o = lg_data(*out);
    const void *xp = lg_data(xc);
    if (x->dtype == LG_FLOAT32)
      triangle_f32(o, xp, mats, R, C, a->start, lower);
    else if (x->dtype == LG_FLOAT64)
      triangle_f64(o, xp, mats, R, C, a->start, lower);
    else
      triangle_i64(o, xp, mats, R, C, a->start, lower);
  }
  lg_tensor_release(xc);
  return st;
}
lg_status lg_triangle_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  return same_op(&lg_ops[n->op], &n->args, g, &gin[0]);
}
lg_status lg_triangle_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                          lg_tensor **tout) {
  return same_op(op, a, tin[0], tout);
}

/* ==== sort, topk ====
** Both sort each row along dim (moved last, made contiguous) by a stable merge sort of
** positions: ascending puts NaN last, descending first (NaN counts as the largest value), equal
** values keep their order. topk keeps the first k of the sorted row: its k largest (largest = 1)
** or smallest, in order. Outputs: values, and int64 1-based positions along dim. */

#define SORT_ROW(name, T)                                                                                    \
  static int name##_before(T a, T b, int desc) { /* a strictly before b */                                   \
    if (desc) return (a != a && b == b) || a > b;                                                            \
    return (b != b && a == a) || a < b;                                                                      \
  }                                                                                                          \
  static void name(const T *x, int64_t *p, int64_t *tmp, int64_t R, int desc) {                              \
    for (int64_t i = 0; i < R; i++) p[i] = i;                                                                \
    for (int64_t w = 1; w < R; w *= 2) { /* bottom-up merge of runs of w */                                  \
      for (int64_t lo = 0; lo < R; lo += 2 * w) {                                                            \
        int64_t mid = lo + w < R ? lo + w : R, hi = lo + 2 * w < R ? lo + 2 * w : R, i = lo, j = mid,        \
                k = lo;                                                                                      \
        while (i < mid && j < hi) tmp[k++] = name##_before(x[p[j]], x[p[i]], desc) ? p[j++] : p[i++];        \
        while (i < mid) tmp[k++] = p[i++];                                                                   \
        while (j < hi) tmp[k++] = p[j++];                                                                    \
      }                                                                                                      \
      memcpy(p, tmp, sizeof(int64_t) * (size_t)R);                                                           \
    }                                                                                                        \
  }
SORT_ROW(sort_f32, float)
SORT_ROW(sort_f64, double)
SORT_ROW(sort_i64, int64_t)

typedef void (*sort_k)(const void *x, int64_t *p, int64_t *tmp, int64_t R, int desc);
static const sort_k sort_kernels[LG_NDTYPES] = {(sort_k)sort_f32, (sort_k)sort_f64, (sort_k)sort_i64};

/* args: dim, mode (descending / largest); topk: len = k */
lg_status lg_sort_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *moved = NULL, *xc = NULL, *vals = NULL, *idx = NULL;
  int topk = op == &lg_ops[LG_OP_TOPK], nd = x->ndim, dim = nd ? a->dim : 0;
  int64_t R = nd ? x->shape[dim] : 1, K = topk ? a->len : R;
  if (topk && (K < 0 || K > R))
    return lg_error(LG_EVALUE, "topk: k = %lld is out of range 0..%lld (size of dimension %d of %s)",
                    (long long)K, (long long)R, dim + 1, SHAPE(x));
  int perm[LG_MAX_DIMS] = {0}, inv[LG_MAX_DIMS] = {0}, k = 0;
  for (int i = 0; i < nd; i++)
    if (i != dim) perm[k++] = i;
  if (nd) perm[k] = dim;
  for (int i = 0; i < nd; i++) inv[perm[i]] = i;
  int64_t mshape[LG_MAX_DIMS];
  lg_status st = lg_permute(x, perm, nd, &moved);
  if (st == LG_OK) st = lg_contiguous(moved, &xc);
  for (int i = 0; i < nd; i++) mshape[i] = moved ? moved->shape[i] : 0;
  if (nd) mshape[nd - 1] = K;
  if (st == LG_OK) st = lg_new(mshape, nd, x->dtype, &vals);
  if (st == LG_OK) st = lg_new(mshape, nd, LG_INT64, &idx);
  int64_t *p = NULL;
  if (st == LG_OK && R > 0 && !(p = malloc(sizeof(int64_t) * 2 * (size_t)R)))
    st = lg_error(LG_ENOMEM, "%s: out of memory", op->name);
  if (st == LG_OK && R > 0) {
    int64_t rows = lg_numel(x) / R;
    size_t es = lg_dtype_size(x->dtype);
    const char *xb = lg_data(xc);
    char *vb = lg_data(vals);
    int64_t *ib = lg_data(idx);
    for (int64_t r = 0; r < rows; r++) {
      const char *row = xb + r * R * (int64_t)es;
      sort_kernels[x->dtype](row, p, p + R, R, a->mode);
      for (int64_t i = 0; i < K; i++) {
        memcpy(vb + (r * K + i) * (int64_t)es, row + p[i] * (int64_t)es, es);
        ib[r * K + i] = p[i] + 1;
      }
    }
  }
  free(p);
  /* back in the input's order, as tensors of their own (not views of the sorted rows) */
  lg_tensor *sorted[2] = {vals, idx};
  for (int o = 0; o < 2 && st == LG_OK; o++) {
    lg_tensor *back = NULL;
    if (dim == nd - 1 || nd == 0) {
      out[o] = lg_tensor_retain(sorted[o]);
      continue;
    }
    st = lg_permute(sorted[o], inv, nd, &back);
    if (st == LG_OK) st = lg_copy_as(back, sorted[o]->dtype, &out[o]);
    lg_tensor_release(back);
  }
  if (st != LG_OK) {
    lg_tensor_release(out[0]);
    out[0] = NULL;
  }
  lg_release_all((lg_tensor *[]){moved, xc, vals, idx}, 4);
  return st;
}

/* g scattered back to where the values came from (the positions along dim are distinct) */
lg_status lg_sort_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  const lg_edge *e = &n->edges[0];
  if (e->ndim == 0) {
    *gin = lg_tensor_retain(g);
    return LG_OK;
  }
  lg_args sa = {.in = {g, n->saved_aux[0]}, .nin = 2, .dim = n->args.dim, .nshape = e->ndim};
  memcpy(sa.shape, e->shape, sizeof(int64_t) * (size_t)e->ndim);
  return lg_apply(LG_OP_SCATTER_ADD, &sa, &gin[0]);
}
/* the tangent gathered at the chosen positions (found again: the rule sees only the values) */
lg_status lg_sort_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                      lg_tensor **tout) {
  if (a->in[0]->ndim == 0) {
    *tout = lg_tensor_retain(tin[0]);
    return LG_OK;
  }
  lg_tensor *o[2] = {NULL, NULL};
  LG_TRY(op->forward(op, a, o));
  lg_args ga = {.in = {tin[0], o[1]}, .nin = 2, .dim = a->dim};
  lg_status st = lg_apply(LG_OP_GATHER, &ga, tout);
  lg_release_all(o, 2);
  return st;
}

/* ==== cumsum ====
** y[.., i, ..] = sum of x[.., j, ..] over j <= i along dim (mode 1: j >= i). x is made
** contiguous and seen as (outer, n, inner); floats accumulate in double, int64 wraps. */

#define CUMSUM(name, T, ACC)                                                                                 \
  static void name(T *restrict y, const T *restrict x, int64_t outer, int64_t n, int64_t inner, int rev) {   \
    for (int64_t o = 0; o < outer; o++, x += n * inner, y += n * inner)                                      \
      for (int64_t i = 0; i < inner; i++) {                                                                  \
        ACC acc = 0;                                                                                         \
        for (int64_t k = 0; k < n; k++) {                                                                    \
          int64_t at = (rev ? n - 1 - k : k) * inner + i;                                                    \
          acc += (ACC)x[at];                                                                                 \
          y[at] = (T)acc;                                                                                    \
        }                                                                                                    \
      }                                                                                                      \
  }
CUMSUM(cumsum_f32, float, double)
CUMSUM(cumsum_f64, double, double)
CUMSUM(cumsum_i64, int64_t, uint64_t)

lg_status lg_cumsum_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  lg_tensor *x = a->in[0], *xc = NULL;
  int dim = x->ndim ? a->dim : 0;
  int64_t n = x->ndim ? x->shape[dim] : 1, outer = 1, inner = 1;
  for (int i = 0; i < dim; i++) outer *= x->shape[i];
  for (int i = dim + 1; i < x->ndim; i++) inner *= x->shape[i];
  LG_TRY(lg_contiguous(x, &xc));
  lg_status st = lg_new(x->shape, x->ndim, x->dtype, out);
  if (st == LG_OK) {
    void *o = lg_data(*out);
    const void *xp = lg_data(xc);
    if (x->dtype == LG_FLOAT32)
      cumsum_f32(o, xp, outer, n, inner, a->mode);
    else if (x->dtype == LG_FLOAT64)
      cumsum_f64(o, xp, outer, n, inner, a->mode);
    else
      cumsum_i64(o, xp, outer, n, inner, a->mode);
  }
  lg_tensor_release(xc);
  return st;
}
lg_status lg_cumsum_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  lg_args b = n->args;
  b.in[0] = g;
  b.mode = !n->args.mode;
  return lg_apply(LG_OP_CUMSUM, &b, &gin[0]);
}
lg_status lg_cumsum_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                        lg_tensor **tout) {
  return same_op(op, a, tin[0], tout);
}
