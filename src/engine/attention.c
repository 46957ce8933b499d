/*
** attention.c: scaled dot-product attention as one fused op.
**
** q (..., T, d), k (..., S, d), v (..., S, dv); the leading dimensions broadcast against each
** other (the batch shape, B blocks in all). Per block (one batch entry and head):
**   Z = scale Q K^T + M                  (T, S)  M: a float mask added, or -inf where an int64
**                                                mask is 0 or (is_causal) where j > i
**   lse_i = log sum_j exp(Z_ij),  P = exp(Z - lse)   the row softmax, stable (row max first)
**   O = P V                              (T, dv)
** args: in[3] the mask (optional, nin 4), s[0] the scale, mode 1 = causal (top left aligned:
** query i sees keys j <= i). A row with every key masked has no softmax: its P, O and gradients
** are NaN, as PyTorch's.
**
** Saved for backward: the inputs and lse (output 2, (batch..., T)), not P. The backward
** recomputes each block's P from Q, K, the mask and lse (one GEMM more), so a worker holds two
** (T, S) blocks at a time (P and dP) and the op never stores the (batch..., T, S) scores.
** Backward, by hand, with dO the output's gradient:
**   dV = P^T dO;   dP = dO V^T;   dS = P * (dP - rowsum(dP * P));
**   dQ = scale dS K;   dK = scale dS^T Q;   (a float mask: dM = dS)
** The blocks are split across the engine's threads; each GEMM goes through OpenBLAS on one thread
** (lg_gemm_serial). Strided q, k, v are read in place when each (rows, cols) block is a BLAS
** matrix (a (B, T, H, d) -> (B, H, T, d) transpose is: rows step H d apart), else copied.
**
** The composite fallback writes the same math with ops (matmul, where, softmax): it runs for the
** backward under create_graph (so double backward works), for a float mask whose gradient is
** wanted (dM has the scores' full shape anyway), and for forward mode.
*/
#include "compose.h"

#include <math.h>
#include <string.h>

#define OPNAME "scaled_dot_product_attention"

/* ---- geometry ---- */

/* One operand seen as B blocks of (rows, cols): block b starts at data + off(b); an element
** (i, j) of it sits at i * ld + j (tr 0) or j * ld + i (tr 1, a transposed BLAS matrix). */
typedef struct {
  lg_tensor *t; /* the tensor read (the input itself, or a contiguous copy): a reference */
  const char *data;
  int64_t bstride[LG_MAX_DIMS]; /* per batch dimension, 0 where broadcast */
  int tr;
  int64_t ld;
} operand;

typedef struct {
  int nb; /* batch dimensions */
  int64_t bshape[LG_MAX_DIMS], B, T, S, d, dv;
  lg_dtype dt;
  double scale;
  int causal;
  operand q, k, v;
  /* the mask broadcast to (batch..., T, S): strides, 0 where broadcast; NULL data: none */
  lg_tensor *mt;
  const char *mdata;
  int mint; /* an int64 (boolean) mask */
  int64_t mstride[LG_MAX_DIMS];
} attn_geom;

/* element offset of block b over the batch shape with strides bs */
static int64_t block_offset(const attn_geom *g, const int64_t *bs, int64_t b) {
  int64_t off = 0;
  for (int i = g->nb - 1; i >= 0; i--) {
    off += (b % g->bshape[i]) * bs[i];
    b /= g->bshape[i];
  }
  return off;
}

/* How BLAS reads a rows x cols block with strides (rs, cs), if it can. */
static int block_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int *tr, int64_t *ld) {
  int64_t mc = cols > 1 ? cols : 1, mr = rows > 1 ? rows : 1;
  if ((cols == 1 || cs == 1) && (rows == 1 || rs >= mc)) {
    *tr = 0;
    *ld = rows == 1 ? mc : rs;
    return 1;
  }
  if ((rows == 1 || rs == 1) && (cols == 1 || cs >= mr)) {
    *tr = 1;
    *ld = cols == 1 ? mr : cs;
    return 1;
  }
  return 0;
}

static lg_status operand_init(operand *o, lg_tensor *x, const attn_geom *g) {
  int nd = x->ndim;
  int64_t rows = x->shape[nd - 2], cols = x->shape[nd - 1];
  if (x->dtype == g->dt && block_layout(rows, cols, x->stride[nd - 2], x->stride[nd - 1], &o->tr, &o->ld)) {
    o->t = lg_tensor_retain(x);
  } else {
    LG_TRY(lg_copy_as(x, g->dt, &o->t));
    block_layout(rows, cols, o->t->stride[nd - 2], o->t->stride[nd - 1], &o->tr, &o->ld);
  }
  o->data = lg_data(o->t);
  lg_tensor v = *o->t;
  v.ndim = nd - 2;
  lg_broadcast_strides(&v, g->bshape, g->nb, o->bstride);
  return LG_OK;
}

static void geom_release(attn_geom *g) {
  lg_tensor_release(g->q.t);
  lg_tensor_release(g->k.t);
  lg_tensor_release(g->v.t);
  lg_tensor_release(g->mt);
  g->q.t = g->k.t = g->v.t = g->mt = NULL;
}

/* Checks the arguments and fills g (shapes only when data is 0: the composite paths). */
static lg_status attn_check(const lg_args *a, attn_geom *g, int data) {
  lg_tensor *q = a->in[0], *k = a->in[1], *v = a->in[2], *m = a->nin > 3 ? a->in[3] : NULL;
  memset(g, 0, sizeof *g);
  if (q->ndim < 2 || k->ndim < 2 || v->ndim < 2)
    return lg_error(LG_ESHAPE, OPNAME ": q, k and v must be at least 2-d (..., T, d), got q %s, k %s, v %s",
                    SHAPE(q), SHAPE(k), SHAPE(v));
  lg_dtype dt = lg_promote(lg_promote(q->dtype, k->dtype), v->dtype);
  if (!lg_dtype_is_float(dt))
    return lg_error(LG_EDTYPE, OPNAME ": q, k and v must be float tensors, got q %s %s, k %s %s and v %s %s",
                    lg_dtype_name(q->dtype), SHAPE(q), lg_dtype_name(k->dtype), SHAPE(k),
                    lg_dtype_name(v->dtype), SHAPE(v));
  g->dt = dt;
  g->T = q->shape[q->ndim - 2];
  g->d = q->shape[q->ndim - 1];
  g->S = k->shape[k->ndim - 2];
  g->dv = v->shape[v->ndim - 1];
  if (k->shape[k->ndim - 1] != g->d)
    return lg_error(LG_ESHAPE, OPNAME ": q %s and k %s differ in the last dimension (d: %lld ~= %lld)",
                    SHAPE(q), SHAPE(k), (long long)g->d, (long long)k->shape[k->ndim - 1]);
  if (v->shape[v->ndim - 2] != g->S)
    return lg_error(LG_ESHAPE, OPNAME ": k %s and v %s differ in the sequence length (S: %lld ~= %lld)",
                    SHAPE(k), SHAPE(v), (long long)g->S, (long long)v->shape[v->ndim - 2]);
  int64_t s1[LG_MAX_DIMS];
  int n1;
  if (lg_broadcast_shapes(OPNAME, q->shape, q->ndim - 2, k->shape, k->ndim - 2, s1, &n1) != LG_OK ||
      lg_broadcast_shapes(OPNAME, s1, n1, v->shape, v->ndim - 2, g->bshape, &g->nb) != LG_OK)
    return lg_error(LG_ESHAPE, OPNAME ": the leading dimensions of q %s, k %s and v %s do not broadcast",
                    SHAPE(q), SHAPE(k), SHAPE(v));
  if (g->nb + 2 > LG_MAX_DIMS) return lg_error(LG_ESHAPE, OPNAME ": too many dimensions (q %s)", SHAPE(q));
  g->B = lg_shape_numel(g->bshape, g->nb);
  g->scale = a->s[0];
  g->causal = a->mode & 1;
  if (m) {
    int64_t full[LG_MAX_DIMS];
    memcpy(full, g->bshape, sizeof(int64_t) * (size_t)g->nb);
    full[g->nb] = g->T, full[g->nb + 1] = g->S;
    int ok = m->ndim <= g->nb + 2;
    for (int i = 1; ok && i <= m->ndim; i++) {
      int64_t ms = m->shape[m->ndim - i], fs = full[g->nb + 2 - i];
      ok = ms == fs || ms == 1;
    }
    if (!ok)
      return lg_error(LG_ESHAPE, OPNAME ": attn_mask %s does not broadcast to the scores' shape %s", SHAPE(m),
                      SHAPEV(full, g->nb + 2));
    if (g->causal) return lg_error(LG_EVALUE, OPNAME ": give attn_mask or is_causal, not both");
    g->mint = m->dtype == LG_INT64;
    if (!g->mint && !lg_dtype_is_float(m->dtype))
      return lg_error(LG_EDTYPE,
                      OPNAME ": attn_mask must be int64 (nonzero: may attend) or float (added), got %s",
                      lg_dtype_name(m->dtype));
    if (data) {
      lg_dtype mdt = g->mint ? LG_INT64 : dt;
      if (m->dtype == mdt)
        g->mt = lg_tensor_retain(m);
      else
        LG_TRY(lg_copy_as(m, mdt, &g->mt));
      g->mdata = lg_data(g->mt);
      lg_broadcast_strides(g->mt, full, g->nb + 2, g->mstride);
    }
  }
  if (!data) return LG_OK;
  lg_status st = operand_init(&g->q, q, g);
  if (st == LG_OK) st = operand_init(&g->k, k, g);
  if (st == LG_OK) st = operand_init(&g->v, v, g);
  if (st != LG_OK) geom_release(g);
  return st;
}

/* ---- kernels: the masked, scaled row softmax of one block ----
** z (T, S) holds Q K^T on entry; on exit, P. Row i of block b first becomes its scores over its
** live keys (all S, or the causal prefix j <= i): scale z + a float mask, or -inf where an
** int64 mask is zero. Keys past the prefix get P = 0 without an exp. */
#define ROW_SCORES(name, T)                                                                                  \
  static int64_t name(const attn_geom *g, int64_t moff, int64_t i, T *restrict r) {                          \
    int64_t live = g->causal && i + 1 < g->S ? i + 1 : g->S;                                                 \
    T f = (T)g->scale;                                                                                       \
    if (!g->mdata) {                                                                                         \
      for (int64_t j = 0; j < live; j++) r[j] *= f;                                                          \
      return live;                                                                                           \
    }                                                                                                        \
    int64_t ms = g->mstride[g->nb + 1];                                                                      \
    if (g->mint) {                                                                                           \
      const int64_t *m = (const int64_t *)g->mdata + moff + i * g->mstride[g->nb];                           \
      for (int64_t j = 0; j < live; j++) r[j] = m[j * ms] ? r[j] * f : -INFINITY;                            \
    } else {                                                                                                 \
      const T *m = (const T *)g->mdata + moff + i * g->mstride[g->nb];                                       \
      for (int64_t j = 0; j < live; j++) r[j] = r[j] * f + m[j * ms];                                        \
    }                                                                                                        \
    return live;                                                                                             \
  }
ROW_SCORES(row_scores_f32, float)
ROW_SCORES(row_scores_f64, double)

/* float64: exps by libm in double. lse NaN marks a row with nothing to attend to (every key
** masked): its P is NaN, as PyTorch's softmax gives. */
static void softmax_block_f64(const attn_geom *g, int64_t b, double *z, double *lse) {
  int64_t S = g->S, moff = g->mdata ? block_offset(g, g->mstride, b) : 0;
  for (int64_t i = 0; i < g->T; i++) {
    double *r = z + i * S, mx = -INFINITY, s = 0;
    int64_t live = row_scores_f64(g, moff, i, r);
    for (int64_t j = 0; j < live; j++) mx = r[j] > mx ? r[j] : mx;
    if (mx == -INFINITY) {
      for (int64_t j = 0; j < S; j++) r[j] = NAN;
      lse[i] = NAN;
      continue;
    }
    for (int64_t j = 0; j < live; j++) s += r[j] = exp(r[j] - mx);
    for (int64_t j = 0; j < live; j++) r[j] /= s;
    for (int64_t j = live; j < S; j++) r[j] = 0;
    lse[i] = mx + log(s);
  }
}

/* float32: z - max in float, exps by the exp op's vectorized kernel, sums in double */
static void softmax_block_f32(const attn_geom *g, int64_t b, float *z, float *lse) {
  int64_t S = g->S, moff = g->mdata ? block_offset(g, g->mstride, b) : 0;
  for (int64_t i = 0; i < g->T; i++) {
    float *r = z + i * S, mx = -INFINITY;
    int64_t live = row_scores_f32(g, moff, i, r);
    for (int64_t j = 0; j < live; j++) mx = r[j] > mx ? r[j] : mx;
    if (mx == -INFINITY) {
      for (int64_t j = 0; j < S; j++) r[j] = NAN;
      lse[i] = NAN;
      continue;
    }
    for (int64_t j = 0; j < live; j++) r[j] -= mx;
    lg_exp_f32(live, r, r);
    double s = 0;
    for (int64_t j = 0; j < live; j++) s += r[j];
    float inv = (float)(1.0 / s);
    for (int64_t j = 0; j < live; j++) r[j] *= inv;
    for (int64_t j = live; j < S; j++) r[j] = 0;
    lse[i] = (float)(mx + log(s));
  }
}

/* P again from Q K^T (in z) and the saved lse: P = exp(scale z + M - lse) */
static void probs_block_f64(const attn_geom *g, int64_t b, double *z, const double *lse) {
  int64_t S = g->S, moff = g->mdata ? block_offset(g, g->mstride, b) : 0;
  for (int64_t i = 0; i < g->T; i++) {
    double *r = z + i * S;
    int64_t live = isnan(lse[i]) ? 0 : row_scores_f64(g, moff, i, r);
    for (int64_t j = 0; j < live; j++) r[j] = exp(r[j] - lse[i]);
    for (int64_t j = live; j < S; j++) r[j] = isnan(lse[i]) ? NAN : 0;
  }
}
static void probs_block_f32(const attn_geom *g, int64_t b, float *z, const float *lse) {
  int64_t S = g->S, moff = g->mdata ? block_offset(g, g->mstride, b) : 0;
  for (int64_t i = 0; i < g->T; i++) {
    float *r = z + i * S;
    int64_t live = isnan(lse[i]) ? 0 : row_scores_f32(g, moff, i, r);
    for (int64_t j = 0; j < live; j++) r[j] -= lse[i];
    lg_exp_f32(live, r, r);
    for (int64_t j = live; j < S; j++) r[j] = isnan(lse[i]) ? NAN : 0;
  }
}

/* dS = scale P * (dP - rowsum(dP * P)), into dp */
#define DSCORES(name, T)                                                                                     \
  LG_WIDE static void name(int64_t R, int64_t S, const T *restrict p, T *restrict dp, double scale) {        \
    T f = (T)scale;                                                                                          \
    for (int64_t i = 0; i < R; i++, p += S, dp += S) {                                                       \
      double D = 0;                                                                                          \
      for (int64_t j = 0; j < S; j++) D += (double)dp[j] * (double)p[j];                                     \
      T Dt = (T)D;                                                                                           \
      for (int64_t j = 0; j < S; j++) dp[j] = f * p[j] * (dp[j] - Dt);                                       \
    }                                                                                                        \
  }
DSCORES(dscores_f32, float)
DSCORES(dscores_f64, double)

/* ---- the blocks, split across threads ---- */

typedef struct {
  const attn_geom *g;
  int blas;
  size_t es;
  char *o, *lse;      /* forward: the output (B, T, dv) and lse (B, T) */
  const char *go;     /* backward: dO, contiguous (B, T, dv) */
  char *dq, *dk, *dv; /* backward: (B, T, d), (B, S, d), (B, S, dv); NULL if not wanted */
  lg_status st;       /* a worker's failure (out of memory for its blocks) */
} attn_job;

#define AT(p, i) ((p) + (i) * (int64_t)j->es)
#define OPND(x, b) AT(j->g->x.data, block_offset(j->g, j->g->x.bstride, b))

static char *scratch_new(attn_job *j, int64_t n, lg_tensor **t) {
  if (n < 1) n = 1;
  if (lg_tensor_empty(&n, 1, j->g->dt, t) != LG_OK) {
    j->st = LG_ENOMEM;
    return NULL;
  }
  return lg_data(*t);
}

static void forward_blocks(void *j_, int64_t lo, int64_t hi) {
  attn_job *j = j_;
  const attn_geom *g = j->g;
  int64_t T = g->T, S = g->S, d = g->d, dv = g->dv;
  lg_tensor *zt = NULL;
  char *z = scratch_new(j, T * S, &zt);
  for (int64_t b = lo; b < hi && z; b++) {
    /* Z (T, S) = Q (T, d) K^T (d, S) */
    lg_gemm_serial(j->blas, g->dt, g->q.tr, !g->k.tr, T, S, d, OPND(q, b), g->q.ld, OPND(k, b), g->k.ld, 0, z,
                   S);
    if (g->dt == LG_FLOAT32)
      softmax_block_f32(g, b, (float *)z, (float *)AT(j->lse, b * T));
    else
      softmax_block_f64(g, b, (double *)z, (double *)AT(j->lse, b * T));
    /* O (T, dv) = P (T, S) V (S, dv) */
    lg_gemm_serial(j->blas, g->dt, 0, g->v.tr, T, dv, S, z, S, OPND(v, b), g->v.ld, 0, AT(j->o, b * T * dv),
                   dv);
  }
  lg_tensor_release(zt);
}

static void backward_blocks(void *j_, int64_t lo, int64_t hi) {
  attn_job *j = j_;
  const attn_geom *g = j->g;
  int64_t T = g->T, S = g->S, d = g->d, dv = g->dv;
  lg_tensor *pt = NULL, *dpt = NULL;
  char *p = scratch_new(j, T * S, &pt), *dp = p ? scratch_new(j, T * S, &dpt) : NULL;
  for (int64_t b = lo; b < hi && dp; b++) {
    const char *go = AT(j->go, b * T * dv);
    lg_gemm_serial(j->blas, g->dt, g->q.tr, !g->k.tr, T, S, d, OPND(q, b), g->q.ld, OPND(k, b), g->k.ld, 0, p,
                   S);
    if (g->dt == LG_FLOAT32)
      probs_block_f32(g, b, (float *)p, (const float *)AT(j->lse, b * T));
    else
      probs_block_f64(g, b, (double *)p, (const double *)AT(j->lse, b * T));
    /* dV (S, dv) = P^T (S, T) dO (T, dv) */
    if (j->dv) lg_gemm_serial(j->blas, g->dt, 1, 0, S, dv, T, p, S, go, dv, 0, AT(j->dv, b * S * dv), dv);
    if (!j->dq && !j->dk) continue;
    /* dP (T, S) = dO (T, dv) V^T (dv, S), then dS (scaled) in its place */
    lg_gemm_serial(j->blas, g->dt, 0, !g->v.tr, T, S, dv, go, dv, OPND(v, b), g->v.ld, 0, dp, S);
    if (g->dt == LG_FLOAT32)
      dscores_f32(T, S, (const float *)p, (float *)dp, g->scale);
    else
      dscores_f64(T, S, (const double *)p, (double *)dp, g->scale);
    /* dQ (T, d) = dS (T, S) K (S, d);  dK (S, d) = dS^T (S, T) Q (T, d) */
    if (j->dq)
      lg_gemm_serial(j->blas, g->dt, 0, g->k.tr, T, d, S, dp, S, OPND(k, b), g->k.ld, 0, AT(j->dq, b * T * d),
                     d);
    if (j->dk)
      lg_gemm_serial(j->blas, g->dt, 1, g->q.tr, S, d, T, dp, S, OPND(q, b), g->q.ld, 0, AT(j->dk, b * S * d),
                     d);
  }
  lg_tensor_release(pt);
  lg_tensor_release(dpt);
}
#undef OPND
#undef AT

/* a block's work: (d + dv) T S multiply-adds for the two GEMMs, counted twice, and the softmax */
static int64_t block_cost(const attn_geom *g) { return (2 * g->d + 2 * g->dv + 8) * g->T * g->S; }

/* (batch..., r, c) */
static int batch_shape(const attn_geom *g, int64_t r, int64_t c, int64_t *shape) {
  memcpy(shape, g->bshape, sizeof(int64_t) * (size_t)g->nb);
  shape[g->nb] = r;
  shape[g->nb + 1] = c;
  return g->nb + 2;
}

lg_status lg_attention_forward(const lg_op *op, const lg_args *a, lg_tensor **out) {
  attn_geom g;
  LG_TRY(attn_check(a, &g, 1));
  int64_t oshape[LG_MAX_DIMS];
  int ond = batch_shape(&g, g.T, g.dv, oshape);
  lg_tensor *o = NULL, *lse = NULL;
  lg_status st = lg_new(oshape, ond, g.dt, &o);
  if (st == LG_OK) st = lg_new(oshape, ond - 1, g.dt, &lse);
  if (st == LG_OK && lg_numel(o) + lg_numel(lse) > 0) {
    attn_job j = {.g = &g,
                  .blas = lg_gemm_serial_prepare(),
                  .es = lg_dtype_size(g.dt),
                  .o = lg_data(o),
                  .lse = lg_data(lse)};
    if (g.S == 0) { /* no keys: O is an empty sum, as P V with S = 0 */
      st = lg_fill_(o, 0);
      if (st == LG_OK) st = lg_fill_(lse, -INFINITY);
    } else {
      lg_parallel_for_cost(g.B, block_cost(&g), forward_blocks, &j);
    }
    if (j.st != LG_OK) st = lg_error(LG_ENOMEM, OPNAME ": out of memory for the score blocks");
  }
  geom_release(&g);
  if (st != LG_OK) {
    lg_tensor_release(o);
    lg_tensor_release(lse);
    return st;
  }
  out[0] = o;
  out[1] = lse;
  return LG_OK;
}

/* ---- the composite: the same math with ops ---- */

/* the sums over the last dimension, kept (x may have more leading dimensions than P) */
static lg_tensor *rowsum(sc *s, lg_tensor *x) {
  return x ? sc_reduce(s, LG_OP_SUM, x, x->ndim - 1, 1) : NULL;
}

/* P = softmax(scale q k^T + M) with recorded ops */
static lg_tensor *probs_ops(sc *s, const lg_args *a, const attn_geom *g) {
  lg_tensor *z = sc_bs(s, LG_OP_MUL, sc_bin(s, LG_OP_MATMUL, a->in[0], sc_swap_last2(s, a->in[1])), g->scale);
  lg_tensor *m = a->nin > 3 ? a->in[3] : NULL;
  if (z && z->dtype != g->dt) { /* the scores in q, k, v's common dtype */
    lg_args c = {.in = {z}, .nin = 1, .dim = -1, .mode = (int)g->dt};
    z = sc_op(s, LG_OP_CAST, c);
  }
  lg_tensor *ninf = sc_scalar(s, -INFINITY, g->dt);
  if (m && !g->mint) z = sc_bin(s, LG_OP_ADD, z, m);
  if (m && g->mint) z = sc_where(s, m, z, ninf);
  if (g->causal && s->st == LG_OK) { /* keep[i, j] = j <= i, int64 */
    int64_t shape[2] = {g->T, g->S};
    lg_tensor *keep = NULL;
    lg_status st = lg_new(shape, 2, LG_INT64, &keep);
    if (st == LG_OK) {
      int64_t *kd = lg_data(keep);
      for (int64_t i = 0; i < g->T; i++)
        for (int64_t j = 0; j < g->S; j++) kd[i * g->S + j] = j <= i;
    }
    z = sc_where(s, sc_keep(s, st, keep), z, ninf);
  }
  lg_args sm = {.in = {z}, .nin = 1, .dim = z ? z->ndim - 1 : 0};
  return sc_op(s, LG_OP_SOFTMAX, sm);
}

static lg_status attention_backward_composite(lg_node *n, lg_tensor *g, lg_tensor **gin,
                                              const attn_geom *geo) {
  sc s = {0};
  const lg_args *a = &n->args;
  lg_tensor *q = a->in[0], *k = a->in[1], *v = a->in[2];
  lg_tensor *p = probs_ops(&s, a, geo);
  lg_tensor *dv = n->needs[2] ? sc_bin(&s, LG_OP_MATMUL, sc_swap_last2(&s, p), g) : NULL;
  lg_tensor *ds = NULL;
  if (n->needs[0] || n->needs[1] || (a->nin > 3 && n->needs[3])) {
    lg_tensor *dp = sc_bin(&s, LG_OP_MATMUL, g, sc_swap_last2(&s, v));
    lg_tensor *rs = rowsum(&s, sc_bin(&s, LG_OP_MUL, dp, p));
    ds = sc_bin(&s, LG_OP_MUL, p, sc_bin(&s, LG_OP_SUB, dp, rs));
  }
  lg_tensor *dq = n->needs[0] ? sc_bs(&s, LG_OP_MUL, sc_bin(&s, LG_OP_MATMUL, ds, k), geo->scale) : NULL;
  lg_tensor *dk = n->needs[1]
                      ? sc_bs(&s, LG_OP_MUL, sc_bin(&s, LG_OP_MATMUL, sc_swap_last2(&s, ds), q), geo->scale)
                      : NULL;
  if (s.st == LG_OK && dv) gin[2] = lg_tensor_retain(dv);
  if (s.st == LG_OK && a->nin > 3 && n->needs[3] && ds) gin[3] = lg_tensor_retain(ds);
  lg_status st = sc_done2(&s, dq, &gin[0], dk, &gin[1]);
  if (st != LG_OK) {
    lg_tensor_release(gin[2]);
    lg_tensor_release(gin[3]);
    gin[2] = gin[3] = NULL;
  }
  return st;
}

lg_status lg_attention_backward(lg_node *n, lg_tensor *g, lg_tensor **gin) {
  attn_geom geo;
  const lg_args *a = &n->args;
  int mask_grad = a->nin > 3 && n->needs[3];
  if (lg_grad_enabled() || mask_grad) {
    LG_TRY(attn_check(a, &geo, 0));
    return attention_backward_composite(n, g, gin, &geo);
  }
  LG_TRY(attn_check(a, &geo, 1));
  int64_t shape[LG_MAX_DIMS];
  lg_tensor *gc = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
  lg_status st = g->dtype == geo.dt && lg_is_contiguous(g) ? (gc = lg_tensor_retain(g), LG_OK)
                                                           : lg_copy_as(g, geo.dt, &gc);
  int nd = batch_shape(&geo, geo.T, geo.d, shape);
  if (st == LG_OK && n->needs[0]) st = lg_new(shape, nd, geo.dt, &dq);
  batch_shape(&geo, geo.S, geo.d, shape);
  if (st == LG_OK && n->needs[1]) st = lg_new(shape, nd, geo.dt, &dk);
  batch_shape(&geo, geo.S, geo.dv, shape);
  if (st == LG_OK && n->needs[2]) st = lg_new(shape, nd, geo.dt, &dv);
  if (st == LG_OK && geo.B * geo.T * geo.S > 0) {
    attn_job j = {.g = &geo,
                  .blas = lg_gemm_serial_prepare(),
                  .es = lg_dtype_size(geo.dt),
                  .lse = lg_data(n->saved_aux[0]),
                  .go = lg_data(gc),
                  .dq = dq ? lg_data(dq) : NULL,
                  .dk = dk ? lg_data(dk) : NULL,
                  .dv = dv ? lg_data(dv) : NULL};
    lg_parallel_for_cost(geo.B, 2 * block_cost(&geo), backward_blocks, &j);
    if (j.st != LG_OK) st = lg_error(LG_ENOMEM, OPNAME ": out of memory for the score blocks");
  } else if (st == LG_OK) { /* an empty side: the gradients are sums of nothing */
    lg_tensor *all[3] = {dq, dk, dv};
    for (int i = 0; i < 3 && st == LG_OK; i++)
      if (all[i]) st = lg_fill_(all[i], 0);
  }
  geom_release(&geo);
  lg_tensor_release(gc);
  if (st != LG_OK) {
    lg_tensor_release(dq);
    lg_tensor_release(dk);
    lg_tensor_release(dv);
    return st;
  }
  gin[0] = dq, gin[1] = dk, gin[2] = dv;
  return LG_OK;
}

/* Forward mode: with tZ = scale (tq k^T + q tk^T) + tM,
**   tP = P * (tZ - rowsum(P * tZ)),   tO = tP v + P tv
** (masked entries have P = 0, so their tZ does not matter). */
lg_status lg_attention_jvp(const lg_op *op, const lg_args *a, lg_tensor *out, lg_tensor *const *tin,
                           lg_tensor **tout) {
  attn_geom geo;
  LG_TRY(attn_check(a, &geo, 0));
  sc s = {0};
  lg_tensor *q = a->in[0], *k = a->in[1], *v = a->in[2];
  lg_tensor *p = probs_ops(&s, a, &geo), *tz = NULL;
  if (tin[0]) tz = sc_bin(&s, LG_OP_MATMUL, tin[0], sc_swap_last2(&s, k));
  if (tin[1]) tz = sc_add0(&s, tz, sc_bin(&s, LG_OP_MATMUL, q, sc_swap_last2(&s, tin[1])));
  if (tz) tz = sc_bs(&s, LG_OP_MUL, tz, geo.scale);
  if (a->nin > 3 && !geo.mint && tin[3]) tz = sc_add0(&s, tz, tin[3]);
  lg_tensor *t = NULL;
  if (tz) {
    lg_tensor *rs = rowsum(&s, sc_bin(&s, LG_OP_MUL, p, tz));
    lg_tensor *tp = sc_bin(&s, LG_OP_MUL, p, sc_bin(&s, LG_OP_SUB, tz, rs));
    t = sc_bin(&s, LG_OP_MATMUL, tp, v);
  }
  if (tin[2]) t = sc_add0(&s, t, sc_bin(&s, LG_OP_MATMUL, p, tin[2]));
  if (!t) t = sc_bs(&s, LG_OP_MUL, out, 0); /* only the int64 mask's (zero) tangent */
  return sc_done(&s, t, tout);
}
