/*
** compose.h: writing backward and forward-mode rules with ordinary ops (ops.c, norm.c, loss.c).
**
** Rules are built from recorded ops, so under create_graph the backward pass is itself recorded
** and can be differentiated again. A scratch list owns a rule's temporaries: every helper returns
** NULL once something failed (or when given NULL), so a rule reads as straight-line math, and
** sc_done hands out the result and releases the rest.
*/
#ifndef LG_COMPOSE_H
#define LG_COMPOSE_H

#include <string.h>

#include "internal.h"

typedef struct lg_scratch {
  lg_tensor *t[32];
  int n;
  lg_status st;
} sc;

static inline lg_tensor *sc_keep(sc *s, lg_status st, lg_tensor *t) {
  if (st != LG_OK) {
    if (s->st == LG_OK) s->st = st;
    return NULL;
  }
  if (s->n == 32) {
    lg_tensor_release(t);
    s->st = lg_error(LG_ENOMEM, "rule: too many temporaries");
    return NULL;
  }
  return s->t[s->n++] = t;
}
#define SC_OK(s, ...) ((s)->st == LG_OK && !sc_null(__VA_ARGS__))
static inline int sc_null(lg_tensor *a, lg_tensor *b) { return !a || !b; }

/* (the status is computed first: C leaves the order of argument evaluation open) */
static inline lg_tensor *sc_un(sc *s, lg_opcode op, lg_tensor *x) {
  lg_tensor *o = NULL;
  if (!SC_OK(s, x, x)) return NULL;
  lg_status st = lg_unary(op, x, &o);
  return sc_keep(s, st, o);
}
static inline lg_tensor *sc_bin(sc *s, lg_opcode op, lg_tensor *x, lg_tensor *y) {
  lg_tensor *o = NULL;
  if (!SC_OK(s, x, y)) return NULL;
  lg_status st = lg_binary(op, x, y, &o);
  return sc_keep(s, st, o);
}
static inline lg_tensor *sc_bs(sc *s, lg_opcode op, lg_tensor *x, double v) { /* x op v */
  lg_tensor *o = NULL;
  if (!SC_OK(s, x, x)) return NULL;
  lg_status st = lg_binary_scalar(op, x, v, 0, &o);
  return sc_keep(s, st, o);
}
static inline lg_tensor *sc_sb(sc *s, lg_opcode op, double v, lg_tensor *x) { /* v op x */
  lg_tensor *o = NULL;
  if (!SC_OK(s, x, x)) return NULL;
  lg_status st = lg_binary_scalar(op, x, v, 1, &o);
  return sc_keep(s, st, o);
}
static inline lg_tensor *sc_op(sc *s, lg_opcode op, lg_args a) {
  lg_tensor *o[2] = {NULL, NULL};
  for (int i = 0; i < a.nin; i++)
    if (!a.in[i]) return NULL;
  if (s->st != LG_OK) return NULL;
  lg_status st = lg_apply(op, &a, o);
  if (st == LG_OK && lg_ops[op].nout == 2) lg_tensor_release(o[1]);
  return sc_keep(s, st, o[0]);
}
static inline lg_status sc_done(sc *s, lg_tensor *result, lg_tensor **out) {
  lg_status st = s->st;
  if (st == LG_OK && !result) st = lg_error(LG_EVALUE, "rule: no result");
  if (st == LG_OK) *out = lg_tensor_retain(result);
  lg_release_all(s->t, s->n);
  s->n = 0;
  return st;
}
/* Hands out two results (a NULL result leaves its slot NULL). */
static inline lg_status sc_done2(sc *s, lg_tensor *r0, lg_tensor **o0, lg_tensor *r1, lg_tensor **o1) {
  lg_status st = s->st;
  if (st == LG_OK) {
    *o0 = lg_tensor_retain(r0);
    *o1 = lg_tensor_retain(r1);
  }
  lg_release_all(s->t, s->n);
  s->n = 0;
  return st;
}
/* a + b where either may be NULL (a zero tangent) */
static inline lg_tensor *sc_add0(sc *s, lg_tensor *a, lg_tensor *b) {
  return !a ? b : !b ? a : sc_bin(s, LG_OP_ADD, a, b);
}

/* shape helpers, all recorded ops */
static inline lg_tensor *sc_reshape(sc *s, lg_tensor *x, const int64_t *shape, int nd) {
  lg_args a = {.in = {x}, .nin = 1, .dim = -1, .nshape = nd};
  if (nd) memcpy(a.shape, shape, sizeof(int64_t) * (size_t)nd);
  return sc_op(s, LG_OP_RESHAPE, a);
}
static inline lg_tensor *sc_unsqueeze(sc *s, lg_tensor *x, int dim) {
  if (!x) return NULL;
  int64_t shape[LG_MAX_DIMS];
  int n = 0;
  for (int i = 0; i <= x->ndim; i++) {
    if (i == dim) shape[n++] = 1;
    if (i < x->ndim) shape[n++] = x->shape[i];
  }
  return sc_reshape(s, x, shape, n);
}
static inline lg_tensor *sc_expand(sc *s, lg_tensor *x, const int64_t *shape, int nd) {
  lg_args a = {.in = {x}, .nin = 1, .dim = -1, .nshape = nd};
  if (nd) memcpy(a.shape, shape, sizeof(int64_t) * (size_t)nd);
  return sc_op(s, LG_OP_EXPAND, a);
}
static inline lg_tensor *sc_swap_last2(sc *s, lg_tensor *x) {
  if (!x) return NULL;
  lg_args a = {.in = {x}, .nin = 1, .dim = -1, .nshape = x->ndim};
  for (int i = 0; i < x->ndim; i++) a.shape[i] = i;
  a.shape[x->ndim - 1] = x->ndim - 2;
  a.shape[x->ndim - 2] = x->ndim - 1;
  return sc_op(s, LG_OP_PERMUTE, a);
}
static inline lg_tensor *sc_reduce(sc *s, lg_opcode op, lg_tensor *x, int dim, int keepdim) {
  lg_args a = {.in = {x}, .nin = 1, .dim = dim, .keepdim = keepdim, .s = {1}};
  return sc_op(s, op, a);
}

static inline lg_tensor *sc_scalar(sc *s, double v, lg_dtype dt) {
  lg_tensor *o = NULL;
  if (s->st != LG_OK) return NULL;
  lg_status st = lg_scalar_like(v, dt, &o);
  return sc_keep(s, st, o);
}

static inline lg_tensor *sc_where(sc *s, lg_tensor *m, lg_tensor *a, lg_tensor *b) {
  lg_args w = {.in = {m, a, b}, .nin = 3, .dim = -1};
  return sc_op(s, LG_OP_WHERE, w);
}

static inline lg_tensor *sc_unreduce(sc *s, lg_tensor *t, const int64_t *shape, int nd, int dim,
                                     int keepdim) {
  lg_tensor *k = t;
  if (!t) return NULL;
  if (!keepdim) {
    if (dim >= 0) {
      k = sc_unsqueeze(s, t, dim);
    } else {
      int64_t ones[LG_MAX_DIMS];
      for (int i = 0; i < nd; i++) ones[i] = 1;
      k = sc_reshape(s, t, ones, nd);
    }
  }
  return sc_expand(s, k, shape, nd);
}

static inline double reduced_count(const int64_t *shape, int nd, int dim) {
  return dim >= 0 ? (double)shape[dim] : (double)lg_shape_numel(shape, nd);
}

#endif
