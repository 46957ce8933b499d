/*
** lua_module.c: the module luagrad.core: creation functions, joins, random seeds, runtime
** settings, and luaopen_luagrad_core. Tensor methods are in lua_tensor.c. The module sets no
** globals.
*/
#include "lua_binding.h"

#include <math.h>
#include <string.h>
#include <time.h>

int lgL_where(lua_State *L); /* lua_tensor.c */

/* ---- tensor(data, opts) ---- */

/* Walks first elements to find the nested table's shape. */
static int nested_shape(lua_State *L, int idx, int64_t *shape) {
  int nd = 0;
  lua_pushvalue(L, idx);
  while (lua_istable(L, -1)) {
    if (nd == LG_MAX_DIMS) lgL_error(L, "tensor: nested more than %d levels deep", LG_MAX_DIMS);
    int64_t n = (int64_t)lua_rawlen(L, -1);
    shape[nd++] = n;
    if (n == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return nd;
}

static void nested_fill(lua_State *L, int depth, const int64_t *shape, int nd, lg_tensor *t, int64_t *pos,
                        char *path, size_t pathlen) {
  /* the table to read is on top of the stack */
  int64_t n = (int64_t)lua_rawlen(L, -1);
  if (n != shape[depth])
    lgL_error(L, "tensor: ragged nested table: %s has %lld elements, expected %lld",
              depth ? path : "the table", (long long)n, (long long)shape[depth]);
  luaL_checkstack(L, 4, "tensor: nested too deep");
  for (int64_t i = 1; i <= n; i++) {
    int ty = lua_rawgeti(L, -1, i);
    size_t k = pathlen + (size_t)snprintf(path + pathlen, 256 - pathlen > 0 ? 256 - pathlen : 0, "[%lld]",
                                          (long long)i);
    if (k > 255) k = 255;
    if (depth == nd - 1) {
      if (ty != LUA_TNUMBER)
        lgL_error(L, "tensor: element %s is a %s, expected a number", path, lua_typename(L, ty));
      if (t->dtype == LG_INT64) {
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        double d = lua_tonumber(L, -1);
        if (!isint && !lg_fits_i64(d))
          lgL_error(L, "tensor: element %s is %g, which does not fit int64", path, d);
        ((int64_t *)lg_data(t))[*pos] = isint ? (int64_t)v : (int64_t)d;
      } else {
        lg_set_flat(t, *pos, lua_tonumber(L, -1));
      }
      (*pos)++;
    } else {
      if (ty != LUA_TTABLE)
        lgL_error(L, "tensor: element %s is a %s, expected a table of %lld elements", path,
                  lua_typename(L, ty), (long long)shape[depth + 1]);
      nested_fill(L, depth + 1, shape, nd, t, pos, path, k);
    }
    path[pathlen] = 0;
    lua_pop(L, 1);
  }
}

static void set_requires_grad(lua_State *L, lg_tensor *t, int rg) {
  if (!rg) return;
  if (!lg_dtype_is_float(t->dtype))
    lgL_error(L, "requires_grad: only float tensors can require gradients, got %s", lg_dtype_name(t->dtype));
  t->requires_grad = 1;
}

static int m_tensor(lua_State *L) {
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, 2, &dt, &rg);
  lg_tensor **slot = lgL_newslot(L);
  lg_tensor *src = lg_lua_totensor(L, 1);
  if (src) {
    if (!lua_istable(L, 2)) dt = src->dtype;
    lgL_check(L, lg_copy_as(src, dt, slot));
  } else if (lua_type(L, 1) == LUA_TNUMBER) {
    lgL_check(L, lg_tensor_empty(NULL, 0, dt, slot));
    if (dt == LG_INT64 && lua_isinteger(L, 1)) {
      *(int64_t *)lg_data(*slot) = (int64_t)lua_tointeger(L, 1);
    } else {
      double v = lua_tonumber(L, 1);
      if (dt == LG_INT64 && !lg_fits_i64(v)) return lgL_error(L, "tensor: %g does not fit int64", v);
      lg_set_flat(*slot, 0, v);
    }
  } else if (lua_istable(L, 1)) {
    int64_t shape[LG_MAX_DIMS], pos = 0;
    int nd = nested_shape(L, 1, shape);
    lgL_check(L, lg_tensor_empty(shape, nd, dt, slot));
    char path[260] = {0};
    lua_pushvalue(L, 1);
    if (lg_numel(*slot) > 0) nested_fill(L, 0, shape, nd, *slot, &pos, path, 0);
    lua_pop(L, 1);
  } else {
    return lgL_error(L, "tensor: expected a number, a nested table of numbers or a tensor, got %s",
                     luaL_typename(L, 1));
  }
  set_requires_grad(L, *slot, rg);
  return 1;
}

/* ---- shapes + options creation ---- */

/* Creation needs real sizes (view and reshape also take -1). */
static void check_sizes(lua_State *L, const char *op, const int64_t *shape, int nd) {
  for (int i = 0; i < nd; i++)
    if (shape[i] < 0)
      lgL_error(L, "%s: invalid size %lld in shape %s", op, (long long)shape[i], LG_SHAPEV(shape, nd));
}

typedef enum { FILL_EMPTY, FILL_ZEROS, FILL_ONES, FILL_RAND, FILL_RANDN } fill_kind;

static int create(lua_State *L, fill_kind kind, const char *op) {
  int64_t shape[LG_MAX_DIMS];
  int nd;
  int optidx = lgL_checkshape(L, 1, op, shape, &nd);
  check_sizes(L, op, shape, nd);
  if (!lua_isnoneornil(L, optidx) && !lua_istable(L, optidx))
    return lgL_error(L, "%s: expected sizes then an options table, got %s at argument #%d", op,
                     luaL_typename(L, optidx), optidx);
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, optidx, &dt, &rg);
  if ((kind == FILL_RAND || kind == FILL_RANDN) && !lg_dtype_is_float(dt))
    return lgL_error(L, "%s: needs a float dtype, got %s", op, lg_dtype_name(dt));
  lg_tensor **slot = lgL_newslot(L);
  switch (kind) {
  case FILL_EMPTY:
    lgL_checkop(L, lg_tensor_empty(shape, nd, dt, slot), op);
    break;
  case FILL_ZEROS:
    lgL_checkop(L, lg_tensor_zeros(shape, nd, dt, slot), op);
    break;
  case FILL_ONES:
    lgL_checkop(L, lg_tensor_full(shape, nd, dt, 1, slot), op);
    break;
  case FILL_RAND:
    lgL_checkop(L, lg_tensor_empty(shape, nd, dt, slot), op);
    lgL_check(L, lg_uniform_(*slot, 0, 1));
    break;
  case FILL_RANDN:
    lgL_checkop(L, lg_tensor_empty(shape, nd, dt, slot), op);
    lgL_check(L, lg_normal_(*slot, 0, 1));
    break;
  }
  set_requires_grad(L, *slot, rg);
  return 1;
}

static int m_empty(lua_State *L) { return create(L, FILL_EMPTY, "empty"); }
static int m_zeros(lua_State *L) { return create(L, FILL_ZEROS, "zeros"); }
static int m_ones(lua_State *L) { return create(L, FILL_ONES, "ones"); }
static int m_rand(lua_State *L) { return create(L, FILL_RAND, "rand"); }
static int m_randn(lua_State *L) { return create(L, FILL_RANDN, "randn"); }

static int m_full(lua_State *L) {
  int64_t shape[LG_MAX_DIMS];
  int nd;
  if (!lua_istable(L, 1) && lua_type(L, 1) != LUA_TNUMBER)
    return lgL_error(L, "full: shape must be a table of sizes, got %s", luaL_typename(L, 1));
  if (lua_type(L, 1) == LUA_TNUMBER) { /* full(n, value): 1-d */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_replace(L, 1);
  }
  lgL_checkshape(L, 1, "full", shape, &nd);
  check_sizes(L, "full", shape, nd);
  double v = luaL_checknumber(L, 2);
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, 3, &dt, &rg);
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkop(L, lg_tensor_full(shape, nd, dt, v, slot), "full");
  set_requires_grad(L, *slot, rg);
  return 1;
}

/* zeros_like(t, opts) and friends: t's shape, t's dtype unless opts say otherwise */
static int like(lua_State *L, fill_kind kind, int has_value, const char *op) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int optidx = has_value ? 3 : 2;
  double v = has_value ? luaL_checknumber(L, 2) : 0;
  lg_dtype dt = t->dtype;
  int rg = 0;
  if (lua_istable(L, optidx)) lgL_creation_opts(L, optidx, &dt, &rg);
  if (lua_istable(L, optidx)) {
    lua_getfield(L, optidx, "dtype");
    if (lua_isnil(L, -1)) dt = t->dtype;
    lua_pop(L, 1);
  }
  if ((kind == FILL_RAND || kind == FILL_RANDN) && !lg_dtype_is_float(dt))
    return lgL_error(L, "%s: needs a float dtype, got %s", op, lg_dtype_name(dt));
  lg_tensor **slot = lgL_newslot(L);
  if (has_value) {
    lgL_checkop(L, lg_tensor_full(t->shape, t->ndim, dt, v, slot), op);
    set_requires_grad(L, *slot, rg);
    return 1;
  }
  lgL_check(L, lg_tensor_empty(t->shape, t->ndim, dt, slot));
  switch (kind) {
  case FILL_EMPTY:
    break;
  case FILL_ZEROS:
    lgL_check(L, lg_fill_(*slot, 0));
    break;
  case FILL_ONES:
    lgL_check(L, lg_fill_(*slot, 1));
    break;
  case FILL_RAND:
    lgL_check(L, lg_uniform_(*slot, 0, 1));
    break;
  case FILL_RANDN:
    lgL_check(L, lg_normal_(*slot, 0, 1));
    break;
  }
  set_requires_grad(L, *slot, rg);
  return 1;
}

static int m_empty_like(lua_State *L) { return like(L, FILL_EMPTY, 0, "empty_like"); }
static int m_zeros_like(lua_State *L) { return like(L, FILL_ZEROS, 0, "zeros_like"); }
static int m_ones_like(lua_State *L) { return like(L, FILL_ONES, 0, "ones_like"); }
static int m_full_like(lua_State *L) { return like(L, FILL_ZEROS, 1, "full_like"); }
static int m_rand_like(lua_State *L) { return like(L, FILL_RAND, 0, "rand_like"); }
static int m_randn_like(lua_State *L) { return like(L, FILL_RANDN, 0, "randn_like"); }

/* arange(stop) / arange(start, stop[, step]); integer arguments give int64 (PyTorch) */
static int m_arange(lua_State *L) {
  int nargs = 0, allint = 1;
  double v[3];
  while (nargs < 3 && lua_type(L, nargs + 1) == LUA_TNUMBER) {
    allint &= lua_isinteger(L, nargs + 1);
    v[nargs] = lua_tonumber(L, nargs + 1);
    nargs++;
  }
  if (nargs == 0) return lgL_error(L, "arange: expected (stop), (start, stop) or (start, stop, step)");
  double start = nargs == 1 ? 0 : v[0], stop = nargs == 1 ? v[0] : v[1], step = nargs == 3 ? v[2] : 1;
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, nargs + 1, &dt, &rg);
  if (allint && !(lua_istable(L, nargs + 1) && lua_getfield(L, nargs + 1, "dtype") != LUA_TNIL))
    dt = LG_INT64;
  lua_settop(L, nargs + 1);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_arange(start, stop, step, dt, slot));
  set_requires_grad(L, *slot, rg);
  return 1;
}

static int m_linspace(lua_State *L) {
  double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, 4, &dt, &rg);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_linspace(a, b, n, dt, slot));
  set_requires_grad(L, *slot, rg);
  return 1;
}

static int m_eye(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Integer m = lua_type(L, 2) == LUA_TNUMBER ? luaL_checkinteger(L, 2) : n;
  if (n < 0 || m < 0)
    return lgL_error(L, "eye: sizes must be non-negative, got %lld x %lld", (long long)n, (long long)m);
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, lua_type(L, 2) == LUA_TNUMBER ? 3 : 2, &dt, &rg);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_eye(n, m, dt, slot));
  set_requires_grad(L, *slot, rg);
  return 1;
}

/* randint(low, high, shape, opts) or randint(high, shape, opts) */
static int m_randint(lua_State *L) {
  lua_Integer low = 0, high;
  int sidx;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    low = luaL_checkinteger(L, 1);
    high = luaL_checkinteger(L, 2);
    sidx = 3;
  } else {
    high = luaL_checkinteger(L, 1);
    sidx = 2;
  }
  int64_t shape[LG_MAX_DIMS];
  int nd;
  if (!lua_istable(L, sidx))
    return lgL_error(L, "randint: shape must be a table of sizes, got %s", luaL_typename(L, sidx));
  lgL_checkshape(L, sidx, "randint", shape, &nd);
  check_sizes(L, "randint", shape, nd);
  lg_dtype dt;
  int rg;
  lgL_creation_opts(L, sidx + 1, &dt, &rg);
  if (!(lua_istable(L, sidx + 1) && lua_getfield(L, sidx + 1, "dtype") != LUA_TNIL)) dt = LG_INT64;
  lua_settop(L, sidx + 1);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_tensor_empty(shape, nd, dt, slot));
  lgL_check(L, lg_randint_(*slot, low, high));
  return 1;
}

static int m_randperm(lua_State *L) {
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_randperm(luaL_checkinteger(L, 1), slot));
  return 1;
}

/* ---- joins ---- */

/* Reads a Lua list of tensors; the array lives in a userdata on the stack (freed by the GC). */
static lg_tensor **tensor_list(lua_State *L, int idx, const char *op, int *n) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int len = (int)lua_rawlen(L, idx);
  if (len == 0) return (lgL_error(L, "%s: expected a non-empty list of tensors", op), NULL);
  lg_tensor **list = lua_newuserdatauv(L, sizeof(lg_tensor *) * (size_t)len, 0);
  for (int i = 0; i < len; i++) {
    lua_rawgeti(L, idx, i + 1);
    list[i] = lg_lua_totensor(L, -1);
    if (!list[i] || !*(lg_tensor **)lua_touserdata(L, -1))
      return (
          lgL_error(L, "%s: element %d of the list is a %s, not a tensor", op, i + 1, luaL_typename(L, -1)),
          NULL);
    lua_pop(L, 1);
  }
  *n = len;
  return list;
}

static int m_cat(lua_State *L) {
  int n;
  lua_settop(L, 2);
  lg_tensor **list = tensor_list(L, 1, "cat", &n);
  int refnd = list[0]->ndim;
  for (int i = 0; i < n; i++)
    if (!(list[i]->ndim == 1 && list[i]->shape[0] == 0)) {
      refnd = list[i]->ndim;
      break;
    }
  if (refnd == 0) return lgL_error(L, "cat: zero-dimensional tensors cannot be concatenated (use stack)");
  int dim = lua_isnoneornil(L, 2) ? 0 : lgL_checkdim(L, 2, refnd, "cat", NULL);
  lg_args a = {.list = list, .nlist = n, .dim = dim};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(LG_OP_CAT, &a, slot));
  return 1;
}

/* stack(list, dim): cat of unsqueezed tensors, which must all have the same shape */
static int m_stack(lua_State *L) {
  int n;
  lua_settop(L, 2);
  lg_tensor **list = tensor_list(L, 1, "stack", &n);
  if (list[0]->ndim >= LG_MAX_DIMS)
    return lgL_error(L, "stack: tensors of %d dimensions would stack to %d (at most %d)", list[0]->ndim,
                     list[0]->ndim + 1, LG_MAX_DIMS);
  int dim = lua_isnoneornil(L, 2) ? 0 : lgL_checkdim(L, 2, list[0]->ndim + 1, "stack", NULL);
  for (int i = 1; i < n; i++)
    if (list[i]->ndim != list[0]->ndim ||
        memcmp(list[i]->shape, list[0]->shape, sizeof(int64_t) * (size_t)list[0]->ndim)) {
      char b[sizeof(lg_shapebuf)];
      return lgL_error(L, "stack: tensor %d has shape %s, but tensor 1 has %s", i + 1, LG_SHAPE(list[i]),
                       lg_shape_str(list[0]->shape, list[0]->ndim, b, sizeof b));
    }
  lg_tensor **un = lua_newuserdatauv(L, sizeof(lg_tensor *) * (size_t)n, 0);
  memset(un, 0, sizeof(lg_tensor *) * (size_t)n);
  lg_status st = LG_OK;
  for (int i = 0; i < n && st == LG_OK; i++) { /* recorded, so stack is differentiable */
    lg_args a = {.in = {list[i]}, .nin = 1, .dim = -1, .mode = 1};
    lg_tensor *t = list[i];
    for (int k = 0, j = 0; k <= t->ndim; k++) {
      if (k == dim) a.shape[j++] = 1;
      if (k < t->ndim) a.shape[j++] = t->shape[k];
    }
    a.nshape = t->ndim + 1;
    st = lg_apply(LG_OP_RESHAPE, &a, &un[i]);
  }
  lg_tensor **slot = lgL_newslot(L);
  if (st == LG_OK) {
    lg_args a = {.list = un, .nlist = n, .dim = dim};
    st = lg_apply(LG_OP_CAT, &a, slot);
  }
  lg_release_all(un, n);
  return lgL_check(L, st), 1;
}

/* ---- settings ---- */

static int m_manual_seed(lua_State *L) {
  lua_Integer s = luaL_checkinteger(L, 1);
  lg_manual_seed((uint64_t)s);
  return 0;
}

/* lg.get_rng_state() -> an int64 tensor {seed, offset}: the generator's whole state */
static int m_get_rng_state(lua_State *L) {
  uint64_t st[2];
  lg_get_rng_state(&st[0], &st[1]);
  int64_t n = 2, v[2] = {(int64_t)st[0], (int64_t)st[1]};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_tensor_from_data(v, &n, 1, LG_INT64, slot));
  return 1;
}

/* lg.set_rng_state(state): the generator continues exactly where get_rng_state saw it */
static int m_set_rng_state(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->dtype != LG_INT64 || t->ndim != 1 || t->shape[0] != 2)
    return lgL_error(
        L, "set_rng_state: expected the int64 tensor of 2 elements get_rng_state returns, got %s %s",
        lg_dtype_name(t->dtype), LG_SHAPE(t));
  lg_set_rng_state((uint64_t)lg_get_flat_i64(t, 0), (uint64_t)lg_get_flat_i64(t, 1));
  return 0;
}

static int m_initial_seed(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lg_initial_seed());
  return 1;
}

static int m_set_default_dtype(lua_State *L) {
  lg_dtype dt = lgL_checkdtype(L, 1, LG_FLOAT32);
  if (!lg_dtype_is_float(dt))
    return lgL_error(L, "set_default_dtype: must be float32 or float64, got %s", lg_dtype_name(dt));
  lg_set_default_dtype(dt);
  return 0;
}

static int m_get_default_dtype(lua_State *L) {
  lua_pushstring(L, lg_dtype_name(lg_default_dtype()));
  return 1;
}

static int m_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1) return lgL_error(L, "set_num_threads: needs at least 1 thread, got %lld", (long long)n);
  lg_set_num_threads((int)(n > 1024 ? 1024 : n));
  return 0;
}

static int m_get_num_threads(lua_State *L) {
  lua_pushinteger(L, lg_get_num_threads());
  return 1;
}

/* lg.blas_info(): which BLAS and which of its kernels run the matrix products */
static int m_blas_info(lua_State *L) {
  char buf[512];
  lua_pushstring(L, lg_blas_info(buf, sizeof buf));
  return 1;
}

static int m_memory_in_use(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lg_bytes_in_use());
  return 1;
}

/* lg.clock(): wall-clock seconds from a monotonic clock (os.clock counts CPU time of all threads) */
static int m_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

static int m_memory_cached(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lg_bytes_cached());
  return 1;
}

/* lg.empty_cache(): returns the allocator's cached buffers to the system (after a full GC, so
** that garbage tensors give theirs back first) */
static int m_empty_cache(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT);
  lg_empty_cache();
  return 0;
}

static int m_is_tensor(lua_State *L) {
  lua_pushboolean(L, lg_lua_totensor(L, 1) != NULL);
  return 1;
}

static const luaL_Reg functions[] = {{"tensor", m_tensor},
                                     {"empty", m_empty},
                                     {"zeros", m_zeros},
                                     {"ones", m_ones},
                                     {"full", m_full},
                                     {"rand", m_rand},
                                     {"randn", m_randn},
                                     {"randint", m_randint},
                                     {"randperm", m_randperm},
                                     {"empty_like", m_empty_like},
                                     {"zeros_like", m_zeros_like},
                                     {"ones_like", m_ones_like},
                                     {"full_like", m_full_like},
                                     {"rand_like", m_rand_like},
                                     {"randn_like", m_randn_like},
                                     {"arange", m_arange},
                                     {"linspace", m_linspace},
                                     {"eye", m_eye},
                                     {"cat", m_cat},
                                     {"stack", m_stack},
                                     {"where", lgL_where},
                                     {"manual_seed", m_manual_seed},
                                     {"initial_seed", m_initial_seed},
                                     {"get_rng_state", m_get_rng_state},
                                     {"set_rng_state", m_set_rng_state},
                                     {"set_default_dtype", m_set_default_dtype},
                                     {"get_default_dtype", m_get_default_dtype},
                                     {"set_num_threads", m_set_num_threads},
                                     {"get_num_threads", m_get_num_threads},
                                     {"blas_info", m_blas_info},
                                     {"memory_in_use", m_memory_in_use},
                                     {"memory_cached", m_memory_cached},
                                     {"empty_cache", m_empty_cache},
                                     {"is_tensor", m_is_tensor},
                                     {"clock", m_clock},
                                     {NULL, NULL}};

int luaopen_luagrad_core(lua_State *L) {
  lgL_enter_L(L); /* this state's context, made now */
  lua_newtable(L);
  lgL_setfuncs(L, functions);
  lgL_open_tensor(L);
  lua_pushvalue(L, -2);
  lgL_open_ops(L);
  lgL_open_autograd(L);
  lgL_open_nn(L);
  lgL_open_optim(L);
  lgL_open_io(L);
  lua_pop(L, 1);
  lua_setfield(L, -2, "Tensor");
  luaL_getmetatable(L, LG_TENSOR_MT);
  lua_setfield(L, -2, "_tensor_mt");
  lua_pushstring(L, LG_VERSION);
  lua_setfield(L, -2, "version");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  lua_pushboolean(L, 1); /* for specs that a sanitizer's reserved address space would defeat */
  lua_setfield(L, -2, "_sanitized");
#endif
  return 1;
}
