/*
** tape.c: define-by-run automatic differentiation.
**
** Recording. lg_apply (ops.c) runs an op's forward kernel and, when grad mode is on and an input
** requires grad, calls tape_record: a node (from a pool) keeps the op's arguments, the tensors
** its backward rule reads (LG_F_SAVE_IN / LG_F_SAVE_OUT, with their storage versions), and one
** edge per input. The output points at the node (grad_fn); the node points back at the output
** only weakly (for hooks and retain_grad), so there are no reference cycles.
**
** The reverse pass (lg_backward) is the chain rule as an algorithm:
**   1. walk the graph from the roots and count, for each node, the edges that reach it;
**   2. seed the roots with dL/dL = 1 (or the given gradients);
**   3. take a node whose consumers have all delivered (Kahn's order), run its backward rule
**      (the op's vector-Jacobian product), sum each input gradient back to the input's shape
**      (undoing broadcasting, in this one place), and add it into the input's node or leaf;
**   4. free the saved tensors unless retain_graph.
** With create_graph the backward rules run with grad mode on: they are ordinary ops, so the
** backward pass is itself recorded and can be differentiated again.
**
** Forward mode needs no tape: while lg_fw_level() > 0, lg_apply pairs each output with the
** tangent its op's JVP rule computes from the input tangents.
*/
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* grad mode, anomaly detection and the forward-mode level are the current context's */
int lg_grad_enabled(void) { return lg_ctx()->grad_enabled; }
void lg_set_grad_enabled(int on) { lg_ctx()->grad_enabled = on != 0; }
void lg_set_anomaly(int on) { lg_ctx()->anomaly = on != 0; }
int lg_anomaly_enabled(void) { return lg_ctx()->anomaly; }
void lg_fw_level_push(void) { lg_ctx()->fw_level++; }
void lg_fw_level_pop(void) {
  if (lg_ctx()->fw_level > 0) lg_ctx()->fw_level--;
}
int lg_fw_level(void) { return lg_ctx()->fw_level; }
void lg_fw_level_set(int level) { lg_ctx()->fw_level = level; }

/* ---- the node pool ---- */

/* as tensor.c's pool of tensor objects, and for the same reason (bursts of a collection's garbage):
** a recorded 1-element add costs about 400 instructions more at 16384 */
#define POOL_MAX 65536
static _Thread_local lg_node *pool;
static _Thread_local int pool_n;

void lg_node_pool_empty(void) {
  while (pool) {
    lg_node *n = pool;
    pool = n->next;
    free(n);
  }
  pool_n = 0;
}

static lg_node *node_alloc(void) {
  lg_node *n = pool;
  if (n) {
    pool = n->next;
    pool_n--;
    memset(n, 0, sizeof *n);
  } else {
    n = calloc(1, sizeof *n);
    if (!n) return NULL;
  }
  n->refcount = 1;
  n->edges = n->inline_edges;
  return n;
}

static void node_release_saved(lg_node *n) {
  for (int i = 0; i < LG_MAX_INPUTS; i++) {
    lg_tensor_release(n->args.in[i]);
    n->args.in[i] = NULL;
  }
  lg_tensor_release(n->saved_out);
  n->saved_out = NULL;
  for (int i = 0; i < 2; i++) {
    lg_tensor_release(n->saved_aux[i]);
    n->saved_aux[i] = NULL;
  }
}

/* Releasing a node may release its inputs' nodes, and so on down a long chain: done with a work
** list rather than recursion, so a graph of any depth frees without exhausting the C stack. */
static _Thread_local lg_node *dying;
static _Thread_local int releasing;

void lg_node_release(lg_node *n) {
  if (!n || --n->refcount > 0) return;
  n->next = dying;
  dying = n;
  if (releasing) return;
  releasing = 1;
  while (dying) {
    lg_node *d = dying;
    dying = d->next;
    node_release_saved(d); /* may release tensors, whose grad_fn joins the list */
    for (int i = 0; i < d->nin; i++) {
      lg_node_release(d->edges[i].fn);
      lg_weak_release(d->edges[i].leaf);
    }
    lg_tensor_release(d->grad);
    lg_hooks_free(d->hooks);
    if (d->edges != d->inline_edges) free(d->edges);
    if (pool_n < POOL_MAX) {
      d->next = pool;
      pool = d;
      pool_n++;
    } else {
      free(d);
    }
  }
  releasing = 0;
}

/* ---- recording ---- */

static int wants_grad(const lg_tensor *t) { return t && t->requires_grad; }

/* A saved input. A leaf that requires grad is not held: the node keeps an alias that shares its
** storage and its weak identity, so gradients through the saved value (create_graph) still reach
** the leaf, while a .grad that carries such a graph (backward with create_graph) does not keep
** the leaf alive through its own gradient. Other tensors are simply held. */
static lg_status save_input(lg_tensor *t, lg_tensor **slot) {
  if (t->grad_fn || !t->requires_grad || !t->weak) {
    *slot = lg_tensor_retain(t);
    return LG_OK;
  }
  LG_TRY(lg_alias(t, slot));
  (*slot)->requires_grad = 1;
  (*slot)->weak = t->weak;
  t->weak->refcount++;
  return LG_OK;
}

lg_status lg_tape_record(lg_opcode code, const lg_args *a, lg_tensor **outs) {
  const lg_op *op = &lg_ops[code];
  lg_tensor *out = outs[0];
  lg_tensor *const *ins = op->arity < 0 ? a->list : a->in;
  int nin = op->arity < 0 ? a->nlist : a->nin, any = 0;
  for (int i = 0; i < nin; i++) {
    lg_tensor *t = ins[i];
    if (t && t->base && t->base_gen != t->base->hist_gen)
      LG_TRY(lg_view_refresh(t)); /* its base was written */
    any |= wants_grad(t);
  }
  if (!any || !lg_dtype_is_float(out->dtype)) return LG_OK;
  lg_node *n = node_alloc();
  if (!n) return lg_error(LG_ENOMEM, "%s: out of memory recording the op", op->name);
  if (nin > LG_MAX_INPUTS) {
    n->edges = calloc((size_t)nin, sizeof(lg_edge));
    if (!n->edges) {
      n->edges = n->inline_edges;
      lg_node_release(n);
      return lg_error(LG_ENOMEM, "%s: out of memory recording the op", op->name);
    }
  }
  n->op = code;
  n->nin = nin;
  for (int i = 0; i < nin; i++) {
    lg_edge *e = &n->edges[i];
    lg_tensor *t = ins[i];
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->dtype = t->dtype;
    if (t->grad_fn) {
      e->fn = t->grad_fn;
      e->fn->refcount++;
    } else if (t->requires_grad) {
      if (!t->weak) { /* the leaf holds one reference to its handle, each edge another */
        if (!(t->weak = calloc(1, sizeof *t->weak))) {
          lg_node_release(n);
          return lg_error(LG_ENOMEM, "%s: out of memory recording the op", op->name);
        }
        t->weak->t = t;
        t->weak->refcount = 1;
      }
      t->weak->refcount++;
      e->leaf = t->weak;
    }
    if (i < LG_MAX_INPUTS) n->needs[i] = e->fn || e->leaf;
  }
  n->args = *a;
  n->args.list = NULL;
  n->args.nlist = 0;
  for (int i = 0; i < LG_MAX_INPUTS; i++) {
    n->args.in[i] = NULL;
    if ((op->flags & LG_F_SAVE_IN) && op->arity >= 0 && i < a->nin && a->in[i]) {
      lg_status st = save_input(a->in[i], &n->args.in[i]);
      if (st != LG_OK) {
        lg_node_release(n);
        return st;
      }
      n->versions[i] = a->in[i]->storage->version;
      n->storages[i] = a->in[i]->storage;
    }
  }
  if (op->flags & LG_F_SAVE_OUT) {
    lg_status st = lg_alias(out, &n->saved_out);
    if (st != LG_OK) {
      lg_node_release(n);
      return st;
    }
    n->versions[LG_MAX_INPUTS] = out->storage->version;
    n->storages[LG_MAX_INPUTS] = out->storage;
  }
  if (op->flags & LG_F_SAVE_AUX)
    for (int i = 1; i < op->nout && i <= 2; i++) n->saved_aux[i - 1] = lg_tensor_retain(outs[i]);
  out->grad_fn = n;
  out->requires_grad = 1;
  n->out = out;
  return LG_OK;
}

/* ---- in-place writes ----
** t:add_(u) computes r = t + u as usual (recorded) and then lg_assign_(t, r): t takes r's values and
** r's history, as if t had been made by r's op. Earlier users of t's old value keep their own
** history; the tape's version check catches one that saved the value now overwritten.
** A view v of a base b (v = b[1], b:narrow(...)) shares b's storage, so a write through v changes
** b too: b's history becomes strided_scatter(b_old, r) (r written into v's window), v's own
** as_strided(b), and every other view of b, seeing b->hist_gen move, takes its history from b
** again the next time an op records it (lg_view_refresh). */

/* t's history becomes n (a new reference; NULL: none, t is a constant now). */
static void take_history(lg_tensor *t, lg_node *n) {
  lg_node *old = t->grad_fn;
  if (n) {
    n->refcount++;
    n->out = t;
  }
  t->grad_fn = n;
  t->requires_grad = n != NULL;
  if (old) {
    if (old->out == t) old->out = NULL;
    lg_node_release(old);
  }
}

/* The window of v in its base, as as_strided/strided_scatter arguments (inputs left to set). */
static lg_status window_of(lg_tensor *v, const char *op, lg_args *a) {
  lg_tensor *b = v->base;
  if (!lg_is_contiguous(b))
    return lg_error(LG_EVALUE,
                    "%s: writing through a view of a non-contiguous tensor %s under autograd is not "
                    "supported (clone() it first)",
                    op, SHAPE(b));
  memset(a, 0, sizeof *a);
  a->dim = -1;
  a->nshape = v->ndim;
  a->start = v->offset - b->offset;
  memcpy(a->shape, v->shape, sizeof a->shape);
  memcpy(a->stride, v->stride, sizeof a->stride);
  return LG_OK;
}

/* A view whose base was re-pointed (set_) views something else now: it is no view of it any more. */
static int detached_view(lg_tensor *v) {
  if (v->base && v->storage != v->base->storage) {
    lg_tensor_release(v->base);
    v->base = NULL;
  }
  return v->base == NULL;
}

lg_status lg_view_refresh(lg_tensor *v) {
  lg_tensor *b = v->base;
  if (!b || v->base_gen == b->hist_gen || detached_view(v)) return LG_OK;
  if (v->requires_grad && !v->grad_fn) return LG_OK; /* a leaf of its own (a view made to require grad) */
  v->base_gen = b->hist_gen;
  if (!b->requires_grad) {
    take_history(v, NULL);
    return LG_OK;
  }
  lg_args a;
  LG_TRY(window_of(v, "view", &a));
  a.in[0] = b;
  a.nin = 1;
  lg_node *old = v->grad_fn;
  v->grad_fn = NULL;
  lg_status st = lg_tape_record(LG_OP_AS_STRIDED, &a, &v);
  if (old) {
    if (old->out == v) old->out = NULL;
    lg_node_release(old);
  }
  return st;
}

/* The tangent of t after the write (forward mode): r's, or zeros where r has none; through a view,
** written into the base's tangent. */
static lg_status assign_tangent(lg_tensor *t, lg_tensor *r) {
  lg_tensor *b = t->base, *tr = r->tangent, *z = NULL;
  if (!tr && !t->tangent && !(b && b->tangent)) return LG_OK;
  int level = lg_fw_level();
  lg_fw_level_set(0);
  lg_status st = LG_OK;
  if (!tr) st = lg_tensor_zeros(t->shape, t->ndim, t->dtype, &z), tr = z;
  if (st == LG_OK && tr->dtype != t->dtype) {
    lg_tensor *c = NULL;
    st = lg_to_dtype(tr, t->dtype, &c);
    lg_tensor_release(z);
    tr = z = c;
  }
  if (st == LG_OK && !b) {
    lg_tensor_release(t->tangent);
    t->tangent = lg_tensor_retain(tr);
    t->tan_gen++; /* views of t take their tangents from it again */
  } else if (st == LG_OK) {
    lg_args a;
    lg_tensor *bt = NULL, *nb = NULL, *nt = NULL;
    st = window_of(t, "forward mode", &a);
    if (st == LG_OK && !(bt = lg_tensor_retain(b->tangent)))
      st = lg_tensor_zeros(b->shape, b->ndim, b->dtype, &bt);
    if (st == LG_OK) {
      lg_tensor *btc = NULL;
      st = lg_contiguous(bt, &btc);
      lg_tensor_release(bt);
      bt = btc;
    }
    if (st == LG_OK) {
      a.in[0] = bt, a.in[1] = tr, a.nin = 2;
      st = lg_apply(LG_OP_STRIDED_SCATTER, &a, &nb);
    }
    if (st == LG_OK) {
      a.in[0] = nb, a.in[1] = NULL, a.nin = 1;
      st = lg_apply(LG_OP_AS_STRIDED, &a, &nt);
    }
    if (st == LG_OK) {
      lg_tensor_release(b->tangent);
      b->tangent = nb;
      nb = NULL;
      lg_tensor_release(t->tangent);
      t->tangent = nt;
      nt = NULL;
      t->base_tgen = ++b->tan_gen; /* the other views of b take their tangents from it again */
    }
    lg_tensor_release(bt);
    lg_tensor_release(nb);
    lg_tensor_release(nt);
  }
  lg_tensor_release(z);
  lg_fw_level_set(level);
  return st;
}

lg_status lg_view_refresh_tangent(lg_tensor *v) {
  lg_tensor *b = v->base, *bt = NULL, *nt = NULL;
  if (!b || v->base_tgen == b->tan_gen || detached_view(v)) return LG_OK;
  v->base_tgen = b->tan_gen;
  lg_status st = LG_OK;
  if (b->tangent) {
    lg_args a;
    int level = lg_fw_level();
    lg_fw_level_set(0);
    st = window_of(v, "forward mode", &a);
    if (st == LG_OK) st = lg_contiguous(b->tangent, &bt);
    if (st == LG_OK) {
      a.in[0] = bt, a.nin = 1;
      st = lg_apply(LG_OP_AS_STRIDED, &a, &nt);
    }
    lg_fw_level_set(level);
    lg_tensor_release(bt);
  }
  if (st == LG_OK) {
    lg_tensor_release(v->tangent);
    v->tangent = nt;
  }
  return st;
}

lg_status lg_assign_(lg_tensor *t, lg_tensor *r, const char *op) {
  detached_view(t);
  lg_tensor *b = t->base;
  if (t->ndim != r->ndim || memcmp(t->shape, r->shape, sizeof(int64_t) * (size_t)t->ndim))
    return lg_error(LG_ESHAPE, "%s: the result's shape %s differs from the tensor's %s", op, SHAPE(r),
                    SHAPE(t));
  int grad_enabled = lg_grad_enabled();
  if (grad_enabled) {
    if (t->base) LG_TRY(lg_view_refresh(t));
    if (t->requires_grad && !t->grad_fn)
      return lg_error(LG_EGRAD,
                      "%s: cannot modify a leaf tensor that requires grad in place (shape %s); do it inside "
                      "lg.no_grad or on a detached tensor",
                      op, SHAPE(t));
    if (b && b->requires_grad && !b->grad_fn)
      return lg_error(
          LG_EGRAD,
          "%s: cannot write in place through a view of a leaf tensor that requires grad (shape %s); "
          "do it inside lg.no_grad",
          op, SHAPE(b));
  }
  LG_TRY(lg_copy_values(t, r));
  t->storage->version++;
  if (lg_fw_level() > 0) LG_TRY(assign_tangent(t, r));
  int history = r->requires_grad || t->requires_grad || (b && b->requires_grad);
  if (!grad_enabled || !history || !lg_dtype_is_float(t->dtype)) return LG_OK;

  /* r as a result of an op in t's dtype (a leaf r, or another dtype, goes through one more op) */
  lg_tensor *rr = lg_tensor_retain(r);
  lg_status st = LG_OK;
  if (rr->requires_grad && (!rr->grad_fn || rr->dtype != t->dtype)) {
    lg_args c = {.in = {rr}, .nin = 1, .dim = -1, .mode = (int)t->dtype};
    lg_tensor *cast = NULL;
    st = lg_apply(LG_OP_CAST, &c, &cast);
    lg_tensor_release(rr);
    rr = cast;
  }
  if (st == LG_OK && !b) {
    take_history(t, rr->requires_grad ? rr->grad_fn : NULL);
    t->hist_gen++;
  } else if (st == LG_OK) {
    lg_args a;
    st = window_of(t, op, &a);
    if (st == LG_OK) {
      a.in[0] = b, a.in[1] = rr, a.nin = 2;
      lg_node *old = b->grad_fn;
      st = lg_tape_record(LG_OP_STRIDED_SCATTER, &a, &b);
      if (st == LG_OK && old && b->grad_fn != old) {
        if (old->out == b) old->out = NULL;
        lg_node_release(old);
      }
    }
    if (st == LG_OK) {
      b->hist_gen++;
      st = lg_view_refresh(t);
    }
  }
  lg_tensor_release(rr);
  return st;
}

void lg_weak_release(lg_weak *w) {
  if (w && --w->refcount == 0) free(w);
}

/* ---- hooks ---- */

lg_status lg_tensor_add_hook(lg_tensor *t, const lg_hook *h) {
  lg_hook *c = malloc(sizeof *c), **p = t->grad_fn ? &t->grad_fn->hooks : &t->hooks;
  if (!c) return lg_error(LG_ENOMEM, "register_hook: out of memory");
  *c = *h;
  c->next = NULL;
  while (*p) p = &(*p)->next;
  *p = c;
  return LG_OK;
}

void lg_hooks_free(lg_hook *h) {
  while (h) {
    lg_hook *next = h->next;
    if (h->free) h->free(h->ud);
    free(h);
    h = next;
  }
}

/* Runs the hooks of a list on *g, replacing it when a hook returns a new gradient. The list's
** owner (a leaf, or a node of the pass) is held meanwhile, so a hook that drops the last other
** reference to it leaves the list alive (hooks are only freed with their owner; removing one
** only empties it). */
static lg_status run_hooks(lg_hook *hooks, lg_tensor **g) {
  lg_status st = LG_OK;
  for (lg_hook *h = hooks; h && st == LG_OK; h = h->next) {
    lg_tensor *r = NULL;
    if ((st = h->fn(h->ud, *g, &r)) != LG_OK) break;
    if (r) {
      if (r->ndim != (*g)->ndim || memcmp(r->shape, (*g)->shape, sizeof(int64_t) * (size_t)r->ndim)) {
        st = lg_error(LG_ESHAPE, "hook: returned a gradient of shape %s for a gradient of shape %s", SHAPE(r),
                      SHAPE(*g));
        lg_tensor_release(r);
        break;
      }
      lg_tensor_release(*g);
      *g = r;
    }
  }
  return st;
}

/* ---- the reverse pass ---- */

/* *acc += g (a new tensor; recorded when grad mode is on). Takes no reference to g. */
static lg_status accumulate(lg_tensor **acc, lg_tensor *g) {
  if (!*acc) {
    *acc = lg_tensor_retain(g);
    return LG_OK;
  }
  lg_tensor *s;
  LG_TRY(lg_binary(LG_OP_ADD, *acc, g, &s));
  lg_tensor_release(*acc);
  *acc = s;
  return LG_OK;
}

/* Sums g over the dimensions that broadcasting added or stretched, so it has the edge's shape,
** and casts it to the edge's dtype. Returns a new reference in *out. */
static lg_status sum_to_input(const char *opname, lg_tensor *g, const lg_edge *e, lg_tensor **out) {
  lg_tensor *cur = lg_tensor_retain(g), *next;
  lg_status st = LG_OK;
  if (cur->ndim < e->ndim) {
    st = lg_error(LG_ESHAPE, "backward of %s: gradient %s has fewer dimensions than its input %s", opname,
                  SHAPE(cur), SHAPEV(e->shape, e->ndim));
    goto fail;
  }
  while (cur->ndim > e->ndim) { /* leading dimensions added by broadcasting */
    if ((st = lg_reduce(LG_OP_SUM, cur, 0, 0, &next)) != LG_OK) goto fail;
    lg_tensor_release(cur);
    cur = next;
  }
  for (int d = 0; d < e->ndim; d++) {
    if (cur->shape[d] == e->shape[d]) continue;
    if (e->shape[d] != 1) {
      st = lg_error(LG_ESHAPE, "backward of %s: gradient %s does not fit its input %s", opname, SHAPE(cur),
                    SHAPEV(e->shape, e->ndim));
      goto fail;
    }
    if ((st = lg_reduce(LG_OP_SUM, cur, d, 1, &next)) != LG_OK) goto fail;
    lg_tensor_release(cur);
    cur = next;
  }
  if (cur->dtype != e->dtype) {
    lg_args a = {.in = {cur}, .nin = 1, .dim = -1, .mode = (int)e->dtype};
    if ((st = lg_apply(LG_OP_CAST, &a, &next)) != LG_OK) goto fail;
    lg_tensor_release(cur);
    cur = next;
  }
  *out = cur;
  return LG_OK;
fail:
  lg_tensor_release(cur);
  return st;
}

typedef struct {
  lg_dtype dt;
  int found;
} finite_ctx;

static void nonfinite_row(void *ctx, int64_t n, char **p, const int64_t *s) {
  finite_ctx *c = ctx;
  for (int64_t i = 0; i < n && !c->found; i++)
    c->found =
        !isfinite(c->dt == LG_FLOAT32 ? ((const float *)p[0])[i * s[0]] : ((const double *)p[0])[i * s[0]]);
}

/* Whether t holds a NaN or an infinity: each stored element once (an expanded view's stride-0
** dimensions are read as one element, so lg.zeros(1):expand(2^53) is checked in one step). */
static int has_nonfinite(lg_tensor *t) {
  if (!lg_dtype_is_float(t->dtype)) return 0;
  lg_tensor v = *t;
  for (int d = 0; d < v.ndim; d++)
    if (v.stride[d] == 0) v.shape[d] = v.shape[d] ? 1 : 0;
  finite_ctx c = {t->dtype, 0};
  lg_iter it;
  lg_iter_init(&it, v.shape, v.ndim);
  lg_iter_add(&it, &v, NULL);
  lg_iter_run(&it, nonfinite_row, &c);
  return c.found;
}

/* While a backward rule runs, the ops it is written with are not checked one by one: the tape
** checks the rule's results and names the op whose backward produced them. */
static _Thread_local int in_rule;

lg_status lg_check_anomaly(const char *what, const char *opname, lg_tensor *t) {
  if (in_rule && what[0] == 'f') return LG_OK;
  if (lg_anomaly_enabled() && t && has_nonfinite(t))
    return lg_error(LG_EVALUE, "anomaly: %s of '%s' produced NaN or Inf (shape %s)", what, opname, SHAPE(t));
  return LG_OK;
}

lg_tensor *lg_node_saved_out(lg_node *n) { return n->saved_out; }

typedef struct {
  lg_tensor **inputs;
  int ninputs;
  lg_tensor **results;
  int create_graph;
} pass;

/* A gradient reaching a leaf: its hooks run, then it lands in .grad, or in results[] when the
** leaf is one of autograd.grad's inputs. */
static lg_status deliver_leaf(pass *p, lg_tensor *leaf, lg_tensor *g) {
  int exclusive = g->refcount == 1; /* only the caller holds g: .grad may take it over */
  lg_tensor *gg = lg_tensor_retain(g);
  lg_tensor_retain(leaf); /* a hook may drop the last other reference */
  lg_status st = run_hooks(leaf->hooks, &gg);
  if (st != LG_OK) goto done;
  if (p->inputs) {
    for (int k = 0; k < p->ninputs; k++)
      if (p->inputs[k] == leaf && (st = accumulate(&p->results[k], gg)) != LG_OK) goto done;
    goto done;
  }
  if (p->create_graph) {
    st = accumulate(&leaf->grad, gg);
  } else if (!leaf->grad) {
    /* take the gradient over if nothing else holds it, else copy it */
    if (exclusive && gg->refcount == 2 && gg->storage->refcount == 1 && lg_is_contiguous(gg) &&
        !gg->grad_fn) {
      leaf->grad = lg_tensor_retain(gg);
    } else {
      st = lg_clone(gg, &leaf->grad);
    }
  } else {
    lg_tensor *s;
    if ((st = lg_binary(LG_OP_ADD, leaf->grad, gg, &s)) == LG_OK) {
      if (leaf->grad->grad_fn || leaf->grad->requires_grad) { /* a graph-carrying .grad: replace it */
        lg_tensor_release(leaf->grad);
        leaf->grad = s;
        s = NULL;
      } else {
        st = lg_copy_(leaf->grad, s); /* in place, as PyTorch: views of .grad see the sum */
      }
      lg_tensor_release(s);
    }
  }
done:
  lg_tensor_release(gg);
  lg_tensor_release(leaf);
  return st;
}

/* A node's output gradient is complete: its tensor's hooks run, retain_grad keeps it, and
** autograd.grad captures it when the output is one of the inputs. */
static lg_status node_ready(pass *p, lg_node *n) {
  LG_TRY(run_hooks(n->hooks, &n->grad)); /* the pass holds n */
  lg_tensor *out = lg_tensor_retain(n->out);
  if (out) {
    lg_status st = run_hooks(out->hooks, &n->grad);
    if (st == LG_OK && out->retains_grad && !p->inputs)
      st = out->grad ? accumulate(&out->grad, n->grad) : lg_clone(n->grad, &out->grad);
    lg_tensor_release(out);
    LG_TRY(st);
  }
  if (p->inputs)
    for (int k = 0; k < p->ninputs; k++)
      if (p->inputs[k]->grad_fn == n) LG_TRY(accumulate(&p->results[k], n->grad));
  return LG_OK;
}

static lg_status check_versions(lg_node *n) {
  const lg_op *op = &lg_ops[n->op];
  for (int i = 0; i < LG_MAX_INPUTS; i++) {
    lg_tensor *t = n->args.in[i];
    if (t && t->storage != n->storages[i])
      return lg_error(LG_EGRAD,
                      "backward: input %d of '%s' (shape %s) was replaced with set_ after the op saved it; "
                      "use a new tensor instead",
                      i + 1, op->name, SHAPE(t));
    if (t && t->storage->version != n->versions[i])
      return lg_error(LG_EGRAD,
                      "backward: input %d of '%s' (shape %s) was modified in place after the op saved it "
                      "(version %lld, now %lld); use an out-of-place op or clone() it first",
                      i + 1, op->name, SHAPE(t), (long long)n->versions[i], (long long)t->storage->version);
  }
  lg_tensor *o = n->saved_out;
  if (o && o->storage->version != n->versions[LG_MAX_INPUTS])
    return lg_error(LG_EGRAD,
                    "backward: the output of '%s' (shape %s) was modified in place after the op saved it "
                    "(version %lld, now %lld)",
                    op->name, SHAPE(o), (long long)n->versions[LG_MAX_INPUTS],
                    (long long)o->storage->version);
  return LG_OK;
}

/* Runs n's backward rule and sends each input gradient along its edge. */
static lg_status node_backward(pass *p, lg_node *n, lg_node **ready) {
  const lg_op *op = &lg_ops[n->op];
  if (n->released)
    return lg_error(LG_EGRAD,
                    "backward: the graph through '%s' was already freed by an earlier backward; "
                    "pass {retain_graph = true} to the first backward to go through it twice",
                    op->name);
  LG_TRY(check_versions(n));
  lg_tensor *gin_inline[LG_MAX_INPUTS] = {NULL}, **gin = gin_inline;
  if (n->nin > LG_MAX_INPUTS && !(gin = calloc((size_t)n->nin, sizeof *gin)))
    return lg_error(LG_ENOMEM, "backward: out of memory");
  /* with create_graph the saved output is reconnected to this node, so second-order
  ** gradients flow through it */
  lg_tensor *saved = n->saved_out, *reconnected = NULL;
  lg_status st = LG_OK;
  if (saved && p->create_graph) {
    if ((st = lg_alias(saved, &reconnected)) != LG_OK) goto done;
    reconnected->grad_fn = n;
    reconnected->requires_grad = 1;
    n->refcount++;
    n->saved_out = reconnected;
  }
  in_rule++;
  st = op->backward(n, n->grad, gin);
  in_rule--;
  if (reconnected) {
    n->saved_out = saved;
    lg_tensor_release(reconnected);
  }
  if (st != LG_OK) goto done;
  for (int i = 0; i < n->nin && st == LG_OK; i++) {
    lg_edge *e = &n->edges[i];
    if (!gin[i] || (!e->fn && !(e->leaf && e->leaf->t))) continue;
    lg_tensor *g = NULL;
    if ((st = lg_check_anomaly("backward", op->name, gin[i])) != LG_OK) break;
    if ((st = sum_to_input(op->name, gin[i], e, &g)) != LG_OK) break;
    lg_tensor_release(gin[i]); /* so a fresh gradient reaches its leaf held once, and is taken over */
    gin[i] = NULL;
    if (e->fn)
      st = accumulate(&e->fn->grad, g);
    else
      st = deliver_leaf(p, e->leaf->t, g);
    lg_tensor_release(g);
  }
done:
  for (int i = 0; i < n->nin; i++) lg_tensor_release(gin[i]);
  if (gin != gin_inline) free(gin);
  (void)ready;
  return st;
}

/* Passes running now (a hook may start another backward): their generations. A nested pass
** through a graph that is disjoint from theirs runs; one that reaches a node of theirs would
** share the node's scratch (grad, deps) with them, and is refused. */
/* Appends n to the pass's node list, holding a reference to it. */
static lg_status push_node(lg_node ***nodes, size_t *count, size_t *cap, lg_node *n) {
  if (*count == *cap) {
    lg_node **bigger = realloc(*nodes, 2 * *cap * sizeof **nodes);
    if (!bigger) return lg_error(LG_ENOMEM, "backward: out of memory");
    *nodes = bigger;
    *cap *= 2;
  }
  n->refcount++;
  (*nodes)[(*count)++] = n;
  return LG_OK;
}

static lg_status reentrant_error(void) {
  return lg_error(LG_EGRAD, "backward: called from a hook while a backward pass through the same graph runs "
                            "(re-entrant backward is not supported; compute it after the outer pass)");
}

#define MAX_NESTED 32
static _Thread_local int active_gen[MAX_NESTED], nactive;

static int in_active_pass(const lg_node *n) {
  for (int i = 0; i < nactive; i++)
    if (n->mark == active_gen[i]) return 1;
  return 0;
}

lg_status lg_backward(lg_tensor **roots, lg_tensor **grads, int nroots, lg_tensor **inputs, int ninputs,
                      lg_backward_opts opts, lg_tensor **results) {
  static _Atomic int generation; /* unique across threads: a node's mark names one pass */
  if (nactive == MAX_NESTED)
    return lg_error(LG_EGRAD, "backward: more than %d passes nested in hooks", MAX_NESTED);
  int gen = ++generation;
  active_gen[nactive++] = gen;
  pass p = {inputs, ninputs, results, opts.create_graph};
  lg_tensor **seeds = calloc((size_t)(nroots > 0 ? nroots : 1), sizeof *seeds);
  size_t cap = 64, count = 0;
  lg_node **nodes = malloc(cap * sizeof *nodes);
  lg_status st = LG_OK;
  int saved_mode = lg_grad_enabled(), saved_fw = lg_fw_level();
  if (!seeds || !nodes) {
    st = lg_error(LG_ENOMEM, "backward: out of memory");
    goto out;
  }
  for (int k = 0; k < ninputs; k++) results[k] = NULL;

  /* seeds: dL/dL = 1 for a one-element root, else the given gradient */
  for (int i = 0; i < nroots; i++) {
    lg_tensor *r = roots[i];
    if (!r->requires_grad) {
      st = lg_error(LG_EGRAD, "backward: tensor %d (shape %s) does not require grad and has no grad_fn",
                    i + 1, SHAPE(r));
      goto out;
    }
    if (grads && grads[i]) {
      lg_tensor *g = grads[i];
      if (g->ndim != r->ndim || memcmp(g->shape, r->shape, sizeof(int64_t) * (size_t)r->ndim)) {
        st = lg_error(LG_ESHAPE, "backward: gradient %s does not match the shape %s of tensor %d", SHAPE(g),
                      SHAPE(r), i + 1);
        goto out;
      }
      if ((st = lg_to_dtype(g, r->dtype, &seeds[i])) != LG_OK) goto out;
    } else {
      if (lg_numel(r) != 1) {
        st = lg_error(LG_EGRAD,
                      "backward: tensor %d has shape %s; a gradient can be created implicitly only for "
                      "one-element outputs (pass the gradient: t:backward(grad))",
                      i + 1, SHAPE(r));
        goto out;
      }
      if ((st = lg_tensor_full(r->shape, r->ndim, r->dtype, 1, &seeds[i])) != LG_OK) goto out;
    }
  }

  /* 1. the graph reachable from the roots, with the number of edges into each node (each node
  ** held for the pass: a hook may drop what else holds it) */
  for (int i = 0; i < nroots && st == LG_OK; i++) {
    lg_node *n = roots[i]->grad_fn;
    if (n && n->mark != gen) {
      if (in_active_pass(n)) {
        st = reentrant_error();
        break;
      }
      if ((st = push_node(&nodes, &count, &cap, n)) != LG_OK) break;
      n->mark = gen;
      n->deps = 0;
    }
  }
  if (st != LG_OK) goto out;
  for (size_t k = 0; k < count; k++) {
    lg_node *n = nodes[k];
    for (int i = 0; i < n->nin; i++) {
      lg_node *c = n->edges[i].fn;
      if (!c) continue;
      if (c->mark != gen) {
        if (in_active_pass(c)) {
          st = reentrant_error();
          goto out;
        }
        if ((st = push_node(&nodes, &count, &cap, c)) != LG_OK) goto out;
        c->mark = gen;
        c->deps = 0;
      }
      c->deps++;
    }
  }
  for (size_t k = 0; k < count; k++) lg_tensor_release(nodes[k]->grad), nodes[k]->grad = NULL;

  lg_set_grad_enabled(opts.create_graph);
  lg_fw_level_set(0);
  /* 2. seed */
  for (int i = 0; i < nroots && st == LG_OK; i++) {
    if (roots[i]->grad_fn)
      st = accumulate(&roots[i]->grad_fn->grad, seeds[i]);
    else
      st = deliver_leaf(&p, roots[i], seeds[i]);
  }
  /* 3. Kahn's order: a node runs once every consumer has added its gradient */
  lg_node *ready = NULL;
  for (size_t k = 0; k < count; k++)
    if (nodes[k]->deps == 0) {
      nodes[k]->next = ready;
      ready = nodes[k];
    }
  while (ready && st == LG_OK) {
    lg_node *n = ready;
    ready = n->next;
    if (n->grad) {
      if ((st = node_ready(&p, n)) != LG_OK) break;
      if ((st = node_backward(&p, n, &ready)) != LG_OK) break;
    }
    lg_tensor_release(n->grad);
    n->grad = NULL;
    for (int i = 0; i < n->nin; i++) {
      lg_node *c = n->edges[i].fn;
      if (c && --c->deps == 0) {
        c->next = ready;
        ready = c;
      }
    }
  }
  /* 4. free what the backward rules needed, unless the graph is to be used again */
  if (st == LG_OK && !opts.retain_graph)
    for (size_t k = 0; k < count; k++) {
      node_release_saved(nodes[k]);
      nodes[k]->released = 1;
    }
  if (st == LG_OK && inputs)
    for (int k = 0; k < ninputs; k++)
      if (results[k] && results[k]->dtype != inputs[k]->dtype) {
        lg_tensor *c;
        if ((st = lg_to_dtype(results[k], inputs[k]->dtype, &c)) != LG_OK) break;
        lg_tensor_release(results[k]);
        results[k] = c;
      }
out:
  lg_set_grad_enabled(saved_mode);
  lg_fw_level_set(saved_fw);
  nactive--;
  for (size_t k = 0; k < count; k++) {
    lg_tensor_release(nodes[k]->grad);
    nodes[k]->grad = NULL;
    nodes[k]->mark = 0;
  }
  for (size_t k = 0; k < count; k++) lg_node_release(nodes[k]);
  if (st != LG_OK && inputs)
    for (int k = 0; k < ninputs; k++) {
      lg_tensor_release(results[k]);
      results[k] = NULL;
    }
  if (seeds) lg_release_all(seeds, nroots);
  free(seeds);
  free(nodes);
  return st;
}
