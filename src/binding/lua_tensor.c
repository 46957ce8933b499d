/*
** lua_tensor.c: tensors as Lua userdata ("luagrad.Tensor").
**
** The userdata holds one pointer to an engine tensor (lg_tensor *) and one reference to it;
** __gc and __close share one idempotent release. __index is a C function: integer keys select
** along dimension 1, string keys are fields (shape, dtype, requires_grad, grad) or methods.
** Lua comparison metamethods must return booleans, so elementwise comparisons are methods
** (t:gt(0)), never operators.
**
** Conventions at this boundary: dimensions and indices are 1-based (negative counts from the
** end); numbers read out of tensors are Lua floats, except whole values below 2^53, which come
** back as Lua integers (so `print(lg.ones(3):sum():item())` prints 3).
*/
#include "lua_binding.h"

#include <pthread.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- boundary helpers ---- */

/* Whether a chunk name is one of luagrad's Lua files (the rule of lua/luagrad/errors.lua): the
** executable's embedded copy and a source tree ("@lua/luagrad/..."), an installed or luarocks
** tree (".../lua/5.4/luagrad/..."). */
static int in_library(const char *source) {
  return source[0] == '@' && (strstr(source, "lua/luagrad/") || strstr(source, "/lua/5.4/luagrad/"));
}

/* Pushes the position of the user's line that called into luagrad: the first frame above this C
** function that is neither C nor one of the library's Lua files ("" when there is none). */
static void push_user_where(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "S", &ar);
    if (strcmp(ar.what, "C") != 0 && !in_library(ar.source)) {
      luaL_where(L, level);
      return;
    }
  }
  lua_pushliteral(L, "");
}

int lgL_error(lua_State *L, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  push_user_where(L);
  lua_pushstring(L, buf);
  lua_concat(L, 2);
  return lua_error(L);
}

/* Raises the engine's message, naming `name` where it names `engine` (the op run for name) or
** "tensor" (an allocation). */
static int raise_as(lua_State *L, const char *engine, const char *name) {
  const char *m = lg_errmsg();
  if (name && name[0] != '_') { /* a private function's name would tell the user nothing */
    size_t n = engine ? strlen(engine) : 0;
    if (engine && strncmp(m, engine, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
      return lgL_error(L, "%s: %s", name, m + n + 2);
    if (strncmp(m, "tensor: ", 8) == 0) return lgL_error(L, "%s: %s", name, m + 8);
  }
  return lgL_error(L, "%s", m);
}

int lgL_checkas(lua_State *L, lg_status st, const char *engine) {
  return st == LG_OK ? 0 : raise_as(L, engine, lgL_name(L, NULL));
}

int lgL_check(lua_State *L, lg_status st) { return st == LG_OK ? 0 : lgL_checkas(L, st, NULL); }

int lgL_checkop(lua_State *L, lg_status st, const char *op) {
  if (st == LG_OK) return 0;
  const char *m = lg_errmsg();
  if (strncmp(m, "tensor: ", 8) == 0) return lgL_error(L, "%s: %s", op, m + 8);
  return lgL_error(L, "%s", m);
}

/* The tensor metatable is also kept in the registry under the address of tensor_mt_key, and found
** with lua_rawgetp: a lookup by name (luaL_testudata, luaL_setmetatable) goes through Lua's string
** cache, a strcmp each time, and ran about 300 times per step of a small model. */
static const char tensor_mt_key = 0;
static const char tensor_methods_key = 0; /* the methods table, the same way */

static void push_tensor_mt(lua_State *L) { lua_rawgetp(L, LUA_REGISTRYINDEX, &tensor_mt_key); }

/* The slot of the tensor at idx, or NULL if the value there is not a tensor. Its metatable is
** compared by address with the running state's (two live tables never share an address); when
** the running state is not known to be this one's (a C host's call, a finalizer), by the registry. */
static lg_tensor **test_slot(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  const lgL_state *s = lgL_cur;
  int ok = s && lua_topointer(L, -1) == s->tensor_mt;
  if (!ok) {
    push_tensor_mt(L);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok ? lua_touserdata(L, idx) : NULL;
}

lg_tensor **lgL_newslot(lua_State *L) {
  lgL_gcpace(L); /* accounts for allocations up to now, before this slot gets filled */
  lg_tensor **slot = lua_newuserdatauv(L, sizeof(lg_tensor *), 0);
  *slot = NULL;
  push_tensor_mt(L);
  lua_setmetatable(L, -2);
  return slot;
}

void lgL_pushnew(lua_State *L, lg_tensor *t) {
  lg_tensor **slot = lua_newuserdatauv(L, sizeof(lg_tensor *), 0);
  *slot = t;
  push_tensor_mt(L);
  lua_setmetatable(L, -2);
  lgL_gcpace(L);
}

void lg_lua_pushtensor(lua_State *L, lg_tensor *t) {
  lgL_enter_L(L); /* a C host's call: the state's pacing */
  lgL_pushnew(L, lg_tensor_retain(t));
}

lg_tensor *lg_lua_totensor(lua_State *L, int idx) {
  lg_tensor **slot = test_slot(L, idx);
  return slot ? *slot : NULL;
}

/* The running C function's public name (its first upvalue, set by lgL_setfuncs and lua_ops.c: the
** same whatever the caller called it, pcall included), and the argument number as the user counts
** it (a method's self is not counted, as luaL_argerror). */
static const char *current_name(lua_State *L, int *idx) {
  lua_Debug ar;
  const char *name =
      lua_type(L, lua_upvalueindex(1)) == LUA_TSTRING ? lua_tostring(L, lua_upvalueindex(1)) : NULL;
  if (lua_getstack(L, 0, &ar)) {
    lua_getinfo(L, "n", &ar);
    if (ar.namewhat && strcmp(ar.namewhat, "method") == 0 && idx) (*idx)--;
    if (!name) name = ar.name;
  }
  return name ? name : "?";
}

const char *lgL_name(lua_State *L, const char *fallback) {
  return lua_type(L, lua_upvalueindex(1)) == LUA_TSTRING ? lua_tostring(L, lua_upvalueindex(1)) : fallback;
}

const char *lgL_typename(lua_State *L, int idx) {
  return test_slot(L, idx) ? "tensor" : luaL_typename(L, idx);
}

int lgL_argerror(lua_State *L, int idx, const char *what, const char *expected) {
  int n = idx;
  const char *name = current_name(L, &n);
  char got[64];
  if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx))
    snprintf(got, sizeof got, "number %.14g", lua_tonumber(L, idx));
  else
    snprintf(got, sizeof got, "%s", lgL_typename(L, idx));
  if (what) return lgL_error(L, "%s: argument #%d (%s) must be %s, got %s", name, n, what, expected, got);
  return lgL_error(L, "%s: argument #%d must be %s, got %s", name, n, expected, got);
}

lua_Number lgL_checknumber(lua_State *L, int idx, const char *what) {
  int ok;
  lua_Number v = lua_tonumberx(L, idx, &ok);
  if (!ok) lgL_argerror(L, idx, what, "a number");
  return v;
}

lua_Number lgL_optnumber(lua_State *L, int idx, const char *what, lua_Number def) {
  return lua_isnoneornil(L, idx) ? def : lgL_checknumber(L, idx, what);
}

lua_Integer lgL_checkinteger(lua_State *L, int idx, const char *what) {
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  if (!ok) lgL_argerror(L, idx, what, "an integer");
  return v;
}

lua_Integer lgL_optinteger(lua_State *L, int idx, const char *what, lua_Integer def) {
  return lua_isnoneornil(L, idx) ? def : lgL_checkinteger(L, idx, what);
}

const char *lgL_checklstring(lua_State *L, int idx, const char *what, size_t *len) {
  const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, len) : NULL;
  if (!s) lgL_argerror(L, idx, what, "a string");
  return s;
}

void lgL_checktype(lua_State *L, int idx, int type, const char *what) {
  if (lua_type(L, idx) != type) {
    char expected[32];
    snprintf(expected, sizeof expected, "a %s", lua_typename(L, type));
    lgL_argerror(L, idx, what, expected);
  }
}

lg_tensor *lgL_checktensor(lua_State *L, int idx) {
  lg_tensor **slot = test_slot(L, idx);
  if (!slot || !*slot) {
    int n = idx;
    const char *name = current_name(L, &n);
    if (!slot)
      return (lgL_error(L, "%s: argument #%d must be a tensor, got %s", name, n, luaL_typename(L, idx)),
              NULL);
    return (lgL_error(L, "%s: argument #%d is a closed tensor", name, n), NULL);
  }
  return *slot;
}

/* check with the op's name in the message */
static lg_tensor *checktensor_op(lua_State *L, int idx, const char *op) {
  lg_tensor **slot = test_slot(L, idx);
  if (!slot)
    return (lgL_error(L, "%s: argument #%d must be a tensor, got %s", op, idx, luaL_typename(L, idx)), NULL);
  if (!*slot) return (lgL_error(L, "%s: argument #%d is a closed tensor", op, idx), NULL);
  return *slot;
}

lg_tensor *lgL_totensor(lua_State *L, int idx, lg_dtype like, int *owned) {
  *owned = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lg_tensor *t;
    double v = lua_tonumber(L, idx);
    lgL_check(L, lg_scalar_like(v, like, &t));
    *owned = 1;
    return t;
  }
  return lgL_checktensor(L, idx);
}

void lgL_pushnumber(lua_State *L, double v, lg_dtype dt) {
  if (v == floor(v) && fabs(v) < 9007199254740992.0 && !(v == 0 && signbit(v)))
    lua_pushinteger(L, (lua_Integer)v);
  else
    lua_pushnumber(L, v);
}

static void push_element(lua_State *L, const lg_tensor *t, int64_t i) {
  if (t->dtype == LG_INT64)
    lua_pushinteger(L, (lua_Integer)lg_get_flat_i64(t, i));
  else
    lgL_pushnumber(L, lg_get_flat(t, i), t->dtype);
}

static int64_t check_int(lua_State *L, int idx, const char *op, const char *what) {
  int isint;
  lua_Integer v = lua_tointegerx(L, idx, &isint);
  if (!isint) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      return lgL_error(L, "%s: %s must be an integer, got %s", op, what, lua_tostring(L, idx));
    return lgL_error(L, "%s: %s must be an integer, got %s", op, what, luaL_typename(L, idx));
  }
  return (int64_t)v;
}

int lgL_checkshape(lua_State *L, int idx, const char *op, int64_t *shape, int *ndim) {
  int n = 0;
  if (lua_istable(L, idx)) { /* a list of sizes (a table with a metatable too: its __index and __len count) */
    lua_Integer len = luaL_len(L, idx);
    if (len < 0) return lgL_error(L, "%s: a shape table's length is %lld", op, (long long)len);
    if (len > LG_MAX_DIMS) return lgL_error(L, "%s: %d dimensions (at most %d)", op, (int)len, LG_MAX_DIMS);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      shape[n++] = check_int(L, -1, op, "a size");
      lua_pop(L, 1);
      if (shape[n - 1] < -1)
        return lgL_error(L, "%s: invalid size %lld in shape %s", op, (long long)shape[n - 1],
                         LG_SHAPEV(shape, n));
    }
    idx++;
  } else {
    while (lua_type(L, idx) == LUA_TNUMBER) {
      if (n >= LG_MAX_DIMS) return lgL_error(L, "%s: too many dimensions (at most %d)", op, LG_MAX_DIMS);
      shape[n++] = check_int(L, idx, op, "a size");
      if (shape[n - 1] < -1)
        return lgL_error(L, "%s: invalid size %lld in shape %s", op, (long long)shape[n - 1],
                         LG_SHAPEV(shape, n));
      idx++;
    }
  }
  *ndim = n;
  return idx;
}

int lgL_checkdims(lua_State *L, int idx, const char *op, const lg_tensor *t, int *dims) {
  int n = 0;
  int is_table = lua_istable(L, idx);
  lua_Integer len = is_table ? luaL_len(L, idx) : 0;
  if (is_table && (len < 0 || len > LG_MAX_DIMS))
    return lgL_error(L, "%s: %lld dimensions given (at most %d)", op, (long long)len, LG_MAX_DIMS);
  for (int k = 0; is_table ? k < len : lua_type(L, idx + k) == LUA_TNUMBER; k++) {
    if (n >= LG_MAX_DIMS) return lgL_error(L, "%s: more than %d dimensions given", op, LG_MAX_DIMS);
    if (is_table) lua_geti(L, idx, k + 1);
    dims[n++] = lgL_checkdim(L, is_table ? lua_gettop(L) : idx + k, t->ndim, op, t);
    if (is_table) lua_pop(L, 1);
  }
  return n;
}

int lgL_checkdim(lua_State *L, int idx, int ndim, const char *op, const lg_tensor *t) {
  int64_t d = check_int(L, idx, op, "dimension");
  int64_t lo = ndim > 0 ? -ndim : -1, hi = ndim > 0 ? ndim : 1;
  if (d == 0 || d < lo || d > hi) {
    char buf[sizeof(lg_shapebuf)];
    return lgL_error(
        L, "%s: dimension %lld out of range for a %d-d tensor %s (expected %lld..-1 or 1..%lld%s)", op,
        (long long)d, t ? t->ndim : ndim, t ? lg_shape_str(t->shape, t->ndim, buf, sizeof buf) : "",
        (long long)lo, (long long)hi, d == 0 ? "; dimensions are 1-based" : "");
  }
  if (ndim == 0) return 0;
  return (int)(d < 0 ? d + ndim : d - 1);
}

lg_dtype lgL_checkdtype(lua_State *L, int idx, lg_dtype def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) != LUA_TSTRING)
    return (lgL_error(L, "%s: dtype must be float32, float64 or int64, got %s", current_name(L, NULL),
                      lgL_typename(L, idx)),
            def);
  const char *name = lua_tostring(L, idx);
  lg_dtype dt;
  if (!lg_dtype_from_name(name, &dt))
    return (lgL_error(L, "%s: unknown dtype '%s' (expected float32, float64 or int64)", current_name(L, NULL),
                      name),
            def);
  return dt;
}

int lgL_checkoptions(lua_State *L, int idx, const char *op, const char *const *known) {
  if (!lua_istable(L, idx)) return 0;
  idx = lua_absindex(L, idx);
  lua_pushnil(L); /* every key must be an option, as PyTorch refuses an unknown keyword argument */
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int ok = 0;
    for (int i = 0; k && known[i] && !ok; i++) ok = strcmp(k, known[i]) == 0;
    if (!ok) {
      char key[96], list[256] = "";
      if (k)
        snprintf(key, sizeof key, "'%.80s'", k);
      else if (lua_type(L, -2) == LUA_TNUMBER)
        snprintf(key, sizeof key, "%.14g", lua_tonumber(L, -2));
      else
        snprintf(key, sizeof key, "of type %s", lgL_typename(L, -2));
      for (int i = 0; known[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", known[i]);
      return lgL_error(L, "%s: unknown option %s (accepted: %s)", op, key, known[0] ? list : "none");
    }
    lua_pop(L, 1);
  }
  return 1;
}

void lgL_creation_opts(lua_State *L, int idx, lg_dtype *dt, int *requires_grad) {
  static const char *const known[] = {"dtype", "requires_grad", NULL};
  *dt = lg_default_dtype();
  *requires_grad = 0;
  if (!lgL_checkoptions(L, idx, current_name(L, NULL), known)) return;
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, idx, "dtype") != LUA_TNIL) *dt = lgL_checkdtype(L, -1, *dt);
  lua_pop(L, 1);
  lua_getfield(L, idx, "requires_grad");
  *requires_grad = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

/* ---- lifecycle and fields ---- */

static int t_gc(lua_State *L) {
  lg_tensor **slot = test_slot(L, 1);
  if (!slot) return lgL_argerror(L, 1, NULL, "a tensor");
  lg_tensor_release(*slot);
  *slot = NULL;
  return 0;
}

static int t_shape(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int t_size(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (lua_isnoneornil(L, 2)) return t_shape(L);
  lua_pushinteger(L, t->shape[lgL_checkdim(L, 2, t->ndim, "size", t)]);
  return 1;
}

static int t_stride(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, t->stride[lgL_checkdim(L, 2, t->ndim, "stride", t)]);
    return 1;
  }
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->stride[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, lgL_checktensor(L, 1)->ndim);
  return 1;
}
static int t_numel(lua_State *L) {
  lua_pushinteger(L, lg_numel(lgL_checktensor(L, 1)));
  return 1;
}
static int t_is_contiguous(lua_State *L) {
  lua_pushboolean(L, lg_is_contiguous(lgL_checktensor(L, 1)));
  return 1;
}
static int t_element_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lg_dtype_size(lgL_checktensor(L, 1)->dtype));
  return 1;
}

static int t_len(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) return lgL_error(L, "len: a 0-d tensor has no length (use item())");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

static int t_item(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int64_t n = lg_numel(t);
  if (n != 1)
    return lgL_error(L, "item: a tensor with %lld elements %s cannot be converted to a number", (long long)n,
                     LG_SHAPE(t));
  push_element(L, t, 0);
  return 1;
}

static void tolist_rec(lua_State *L, const lg_tensor *t, int d, int64_t *flat) {
  if (d == t->ndim) {
    push_element(L, t, (*flat)++);
    return;
  }
  lua_createtable(L, (int)t->shape[d], 0);
  for (int64_t i = 0; i < t->shape[d]; i++) {
    tolist_rec(L, t, d + 1, flat);
    lua_rawseti(L, -2, i + 1);
  }
}

static int t_tolist(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int64_t flat = 0;
  luaL_checkstack(L, t->ndim + 5, "tolist: tensor too deep");
  tolist_rec(L, t, 0, &flat);
  return 1;
}

/* ---- views (recorded ops: autograd sees through them) ---- */

/* Pushes op(t) with shape-like arguments. */
static int apply_view(lua_State *L, lg_opcode op, lg_args a) {
  lg_tensor **slot = lgL_newslot(L);
  lg_status st = lg_apply(op, &a, slot);
  if (st != LG_OK) lgL_checkas(L, st, op == LG_OP_RESHAPE && a.mode ? "view" : lg_ops[op].name);
  return 1;
}

static int reshape_to(lua_State *L, lg_tensor *t, const int64_t *shape, int nd, int strict) {
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .nshape = nd, .mode = strict};
  if (nd) memcpy(a.shape, shape, sizeof(int64_t) * (size_t)nd);
  return apply_view(L, LG_OP_RESHAPE, a);
}

static int permute_to(lua_State *L, lg_tensor *t, const int *perm) {
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .nshape = t->ndim};
  for (int i = 0; i < t->ndim; i++) a.shape[i] = perm[i];
  return apply_view(L, LG_OP_PERMUTE, a);
}

static int narrow_to(lua_State *L, lg_tensor *t, int dim, int64_t start, int64_t len) {
  lg_args a = {.in = {t}, .nin = 1, .dim = dim, .start = start, .len = len};
  return apply_view(L, LG_OP_NARROW, a);
}

static int select_at(lua_State *L, lg_tensor *t, int dim, int64_t i) {
  lg_args a = {.in = {t}, .nin = 1, .dim = dim, .start = i};
  return apply_view(L, LG_OP_SELECT, a);
}

static int t_view_like(lua_State *L, int reshape) {
  const char *op = reshape ? "reshape" : "view";
  lg_tensor *t = lgL_checktensor(L, 1);
  int64_t shape[LG_MAX_DIMS];
  int nd;
  lgL_checkshape(L, 2, op, shape, &nd);
  return reshape_to(L, t, shape, nd, !reshape);
}
static int t_view(lua_State *L) { return t_view_like(L, 0); }
static int t_reshape(lua_State *L) { return t_view_like(L, 1); }

static int t_view_as(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1), *o = lgL_checktensor(L, 2);
  return reshape_to(L, t, o->shape, o->ndim, 1);
}

static int t_reshape_as(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1), *o = lgL_checktensor(L, 2);
  return reshape_to(L, t, o->shape, o->ndim, 0);
}

static int t_transpose(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int d1 = lgL_checkdim(L, 2, t->ndim, "transpose", t), d2 = lgL_checkdim(L, 3, t->ndim, "transpose", t);
  int perm[LG_MAX_DIMS];
  for (int i = 0; i < t->ndim; i++) perm[i] = i;
  if (t->ndim) perm[d1] = d2, perm[d2] = d1;
  return permute_to(L, t, perm);
}

static int t_t(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim > 2)
    return lgL_error(L, "t: expects a tensor with at most 2 dimensions, got %s (use transpose)", LG_SHAPE(t));
  int perm[2] = {t->ndim == 2 ? 1 : 0, 0};
  return permute_to(L, t, perm);
}

static int t_permute(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int perm[LG_MAX_DIMS];
  int n = lgL_checkdims(L, 2, "permute", t, perm);
  if (n != t->ndim)
    return lgL_error(L, "permute: %d dimensions given for a %d-d tensor %s", n, t->ndim, LG_SHAPE(t));
  int seen[LG_MAX_DIMS] = {0};
  for (int i = 0; i < n; i++)
    if (seen[perm[i]]++) return lgL_error(L, "permute: dimension %d repeated", perm[i] + 1);
  return permute_to(L, t, perm);
}

static int t_narrow(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) return lgL_error(L, "narrow: cannot narrow a 0-d tensor");
  int d = lgL_checkdim(L, 2, t->ndim, "narrow", t);
  int64_t start = check_int(L, 3, "narrow", "start"), len = check_int(L, 4, "narrow", "length");
  if (start < 0) start = start + t->shape[d] + 1;
  if (start < 1)
    return lgL_error(L, "narrow: start %lld out of range for dimension %d of size %lld",
                     (long long)check_int(L, 3, "narrow", "start"), d + 1, (long long)t->shape[d]);
  if (len < 0) return lgL_error(L, "narrow: length %lld must be non-negative", (long long)len);
  if (len > t->shape[d] - (start - 1))
    return lgL_error(L, "narrow: start %lld + length %lld exceeds size %lld of dimension %d",
                     (long long)start, (long long)len, (long long)t->shape[d], d + 1);
  return narrow_to(L, t, d, start - 1, len);
}

static int64_t check_index(lua_State *L, int idx, int64_t size, const char *op, int dim) {
  int64_t i = check_int(L, idx, op, "index");
  if (i < 0) i = i + size + 1; /* i + size first: no overflow when size is near math.maxinteger */
  if (i < 1 || i > size)
    return lgL_error(L, "%s: index %lld out of range for dimension %d of size %lld", op,
                     (long long)check_int(L, idx, op, "index"), dim + 1, (long long)size);
  return i - 1;
}

static int t_select(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) return lgL_error(L, "select: cannot select from a 0-d tensor");
  int d = lgL_checkdim(L, 2, t->ndim, "select", t);
  int64_t i = check_index(L, 3, t->shape[d], "select", d);
  return select_at(L, t, d, i);
}

static int t_unsqueeze(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int d = lgL_checkdim(L, 2, t->ndim + 1, "unsqueeze", t);
  if (t->ndim >= LG_MAX_DIMS) return lgL_error(L, "unsqueeze: tensor already has %d dimensions", t->ndim);
  int64_t shape[LG_MAX_DIMS];
  int n = 0;
  for (int i = 0; i <= t->ndim; i++) {
    if (i == d) shape[n++] = 1;
    if (i < t->ndim) shape[n++] = t->shape[i];
  }
  return reshape_to(L, t, shape, n, 1);
}

static int t_squeeze(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int d = lua_isnoneornil(L, 2) ? -1 : lgL_checkdim(L, 2, t->ndim, "squeeze", t);
  int64_t shape[LG_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < t->ndim; i++)
    if (!(t->shape[i] == 1 && (d < 0 || d == i))) shape[n++] = t->shape[i];
  return reshape_to(L, t, shape, n, 1);
}

static int t_expand(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int64_t shape[LG_MAX_DIMS];
  int nd;
  if (lg_lua_totensor(L, 2)) {
    lg_tensor *o = lg_lua_totensor(L, 2);
    nd = o->ndim;
    memcpy(shape, o->shape, sizeof shape);
  } else {
    lgL_checkshape(L, 2, "expand", shape, &nd);
  }
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .nshape = nd};
  memcpy(a.shape, shape, sizeof a.shape);
  return apply_view(L, LG_OP_EXPAND, a);
}

static int t_expand_as(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1), *o = lgL_checktensor(L, 2);
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .nshape = o->ndim};
  memcpy(a.shape, o->shape, sizeof a.shape);
  return apply_view(L, LG_OP_EXPAND, a);
}

static int t_flatten(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) {
    int64_t one = 1;
    return reshape_to(L, t, &one, 1, 0);
  }
  int s = lua_isnoneornil(L, 2) ? 0 : lgL_checkdim(L, 2, t->ndim, "flatten", t);
  int e = lua_isnoneornil(L, 3) ? t->ndim - 1 : lgL_checkdim(L, 3, t->ndim, "flatten", t);
  if (s > e) return lgL_error(L, "flatten: start dimension %d comes after end dimension %d", s + 1, e + 1);
  int64_t shape[LG_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i <= s || i > e)
      shape[nd++] = t->shape[i];
    else
      shape[nd - 1] *= t->shape[i];
  }
  return reshape_to(L, t, shape, nd, 0);
}

static int t_clone(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_args a = {.in = {t}, .nin = 1, .dim = -1};
  return apply_view(L, LG_OP_CLONE, a);
}

static int t_contiguous(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (lg_is_contiguous(t)) {
    lua_settop(L, 1);
    return 1;
  }
  return t_clone(L);
}

static int t_detach(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_alias(t, slot));
  return 1;
}

static lg_dtype dtype_arg(lua_State *L, int idx, const char *op) {
  lg_tensor *o = lg_lua_totensor(L, idx);
  if (o) return o->dtype;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "dtype");
    lg_dtype dt = lgL_checkdtype(L, -1, LG_NDTYPES);
    lua_pop(L, 1);
    if (dt == LG_NDTYPES) return (lgL_error(L, "%s: options need a dtype", op), dt);
    return dt;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    return (lgL_error(L, "%s: expected a dtype name, got %s", op, lgL_typename(L, idx)), LG_FLOAT32);
  return lgL_checkdtype(L, idx, LG_FLOAT32);
}

static int to_dtype(lua_State *L, lg_dtype dt) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->dtype == dt) {
    lua_settop(L, 1);
    return 1;
  }
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .mode = (int)dt};
  return apply_view(L, LG_OP_CAST, a);
}
static int t_to(lua_State *L) { return to_dtype(L, dtype_arg(L, 2, lgL_name(L, "to"))); }
static int t_float(lua_State *L) { return to_dtype(L, LG_FLOAT32); }
static int t_double(lua_State *L) { return to_dtype(L, LG_FLOAT64); }
static int t_long(lua_State *L) { return to_dtype(L, LG_INT64); }

static int t_type(lua_State *L) {
  if (lua_isnoneornil(L, 2)) {
    lua_pushstring(L, lg_dtype_name(lgL_checktensor(L, 1)->dtype));
    return 1;
  }
  return t_to(L);
}

/* ---- in-place ---- */

/* Whether an in-place write into t with operand u (or NULL) must be tracked (then lg_assign_
** writes it): grad mode is on and t, u or the tensor t views requires grad, or forward mode is on
** and one of them has a tangent. */
static int records_inplace(const lg_tensor *t, const lg_tensor *u) {
  const lg_tensor *b = t->base;
  if (lg_grad_enabled() && (t->requires_grad || (u && u->requires_grad) || (b && b->requires_grad))) return 1;
  return lg_fw_level() > 0 && (t->tangent || (u && u->tangent) || (b && b->tangent));
}

/* t (in place) = src broadcast to t's shape, or the number v when src is NULL */
static void write_into(lua_State *L, lg_tensor *t, lg_tensor *src, double v, const char *name) {
  if (!records_inplace(t, src)) {
    lg_status st = src ? lg_copy_(t, src) : lg_fill_(t, v);
    if (st != LG_OK) raise_as(L, src ? "copy_" : "fill_", name);
    return;
  }
  lg_tensor **r = lgL_newslot(L);
  if (src) {
    int fits = src->ndim <= t->ndim;
    for (int d = 0; fits && d < src->ndim; d++) {
      int64_t s = src->shape[src->ndim - 1 - d];
      fits = s == 1 || s == t->shape[t->ndim - 1 - d];
    }
    if (!fits)
      lgL_error(L, "%s: source %s does not broadcast to destination %s", name, LG_SHAPE(src), LG_SHAPE(t));
    lg_args a = {.in = {src}, .nin = 1, .dim = -1, .nshape = t->ndim};
    memcpy(a.shape, t->shape, sizeof a.shape);
    if (lg_apply(LG_OP_EXPAND, &a, r) != LG_OK) raise_as(L, "expand", name);
  } else {
    if (lg_tensor_full(t->shape, t->ndim, t->dtype, v, r) != LG_OK) raise_as(L, NULL, name);
  }
  lgL_check(L, lg_assign_(t, *r, name));
  lua_pop(L, 1);
}

static int t_copy_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1), *src = lgL_checktensor(L, 2);
  write_into(L, t, src, 0, "copy_");
  lua_settop(L, 1);
  return 1;
}

static int t_set_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1), *src = lgL_checktensor(L, 2);
  if (t->grad_fn)
    return lgL_error(L, "set_: cannot re-point a tensor that has a grad_fn (a result of %s)",
                     lg_ops[t->grad_fn->op].name);
  if (t->requires_grad && !lg_dtype_is_float(src->dtype))
    return lgL_error(L, "set_: a tensor that requires grad cannot take %s data", lg_dtype_name(src->dtype));
  lgL_check(L, lg_set_(t, src));
  lua_settop(L, 1);
  return 1;
}

static int t_fill_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  write_into(L, t, NULL, lgL_checknumber(L, 2, "value"), "fill_");
  lua_settop(L, 1);
  return 1;
}

static int t_zero_(lua_State *L) {
  write_into(L, lgL_checktensor(L, 1), NULL, 0, "zero_");
  lua_settop(L, 1);
  return 1;
}

static int t_uniform_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  double a = lgL_optnumber(L, 2, "a", 0), b = lgL_optnumber(L, 3, "b", 1);
  lgL_check(L, lg_uniform_(t, a, b));
  lua_settop(L, 1);
  return 1;
}

static int t_normal_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  double mean = lgL_optnumber(L, 2, "mean", 0), std = lgL_optnumber(L, 3, "std", 1);
  lgL_check(L, lg_normal_(t, mean, std));
  lua_settop(L, 1);
  return 1;
}

static int t_bernoulli_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lgL_checkas(L, lg_bernoulli_(t, lgL_optnumber(L, 2, "p", 0.5)), "random");
  lua_settop(L, 1);
  return 1;
}

/* ---- elementwise ops ---- */

int lgL_unary(lua_State *L, lg_opcode op) {
  lg_tensor *t = checktensor_op(L, 1, lg_ops[op].name);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_unary(op, t, slot));
  return 1;
}

/* a op b where either may be a number (numbers adapt to the other operand's dtype) */
int lgL_binary(lua_State *L, lg_opcode op) {
  const char *engine = lg_ops[op].name; /* the running function's name is looked up only for errors */
  lg_tensor *a = lg_lua_totensor(L, 1), *b = lg_lua_totensor(L, 2);
  if (!a && !b) {
    if (lua_type(L, 1) != LUA_TNUMBER) checktensor_op(L, 1, lgL_name(L, engine));
    checktensor_op(L, 2, lgL_name(L, engine));
  }
  lg_tensor **slot = lgL_newslot(L);
  if (a && b) {
    lgL_checkas(L, lg_binary(op, a, b, slot), engine);
  } else if (a) {
    if (lua_type(L, 2) != LUA_TNUMBER)
      return lgL_error(L, "%s: argument #2 must be a tensor or a number, got %s", lgL_name(L, engine),
                       lgL_typename(L, 2));
    double v = lua_tonumber(L, 2);
    if (op == LG_OP_POW && v == 2) /* t ^ 2: one multiply, not powf per element */
      return lgL_checkas(L, lg_unary(LG_OP_SQUARE, a, slot), "square"), 1;
    lgL_checkas(L, lg_binary_scalar(op, a, v, 0, slot), engine);
  } else {
    if (lua_type(L, 1) != LUA_TNUMBER)
      return lgL_error(L, "%s: argument #1 must be a tensor or a number, got %s", lgL_name(L, engine),
                       lgL_typename(L, 1));
    lgL_checkas(L, lg_binary_scalar(op, b, lua_tonumber(L, 1), 1, slot), engine);
  }
  return 1;
}

/* In-place arithmetic: compute, then copy into self (the result must have self's shape). */
/* min and max at idx, idx + 1: arguments, or the options' fields when opts */
static void clamp_bounds(lua_State *L, int idx, lg_args *a, int opts) {
  for (int k = 0; k < 2; k++) {
    if (!lua_isnoneornil(L, idx + k)) {
      if (opts && lua_type(L, idx + k) != LUA_TNUMBER)
        lgL_error(L, "%s: option %s must be a number, got %s", lgL_name(L, "clamp"), k ? "max" : "min",
                  lgL_typename(L, idx + k));
      a->s[k] = lgL_checknumber(L, idx + k, k ? "max" : "min");
      a->has_s[k] = 1;
    }
  }
}

static int t_clamp(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_args a = {.in = {t}, .nin = 1, .dim = -1};
  if (lua_istable(L, 2)) { /* clamp({min = lo, max = hi}) */
    static const char *const known[] = {"min", "max", NULL};
    lgL_checkoptions(L, 2, lgL_name(L, "clamp"), known);
    lua_getfield(L, 2, "min");
    lua_getfield(L, 2, "max");
    clamp_bounds(L, lua_gettop(L) - 1, &a, 1);
    lua_pop(L, 2);
  } else {
    clamp_bounds(L, 2, &a, 0);
  }
  if (!a.has_s[0] && !a.has_s[1])
    return lgL_error(L, "%s: at least one of min and max must be given", lgL_name(L, "clamp"));
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkas(L, lg_apply(LG_OP_CLAMP, &a, slot), "clamp");
  return 1;
}

/* Computes an in-place op as op(t, ...) and writes it into t (lg_assign_). When that records and
** the op saves its inputs (clamp, mul, ...), it runs on a clone of t: the value the tape keeps is
** then not the one the write overwrites. compute is called with the method's arguments (t or its
** clone first) and the opcode as its upvalue, and returns r. */
static int inplace(lua_State *L, lg_opcode op, lua_CFunction compute) {
  lg_tensor *t = lgL_checktensor(L, 1);
  char name[64];
  snprintf(name, sizeof name, "%s_", lg_ops[op].name);
  int n = lua_gettop(L);
  lua_pushstring(L, name);
  lua_pushinteger(L, op);
  lua_pushcclosure(L, compute, 2); /* upvalues: the name errors show, the opcode */
  if (records_inplace(t, lg_lua_totensor(L, 2)) && (lg_ops[op].flags & LG_F_SAVE_IN)) {
    lg_tensor **c = lgL_newslot(L);
    lg_args a = {.in = {t}, .nin = 1, .dim = -1};
    lgL_check(L, lg_apply(LG_OP_CLONE, &a, c));
  } else {
    lua_pushvalue(L, 1);
  }
  for (int k = 2; k <= n; k++) lua_pushvalue(L, k);
  lua_call(L, n, 1);
  lgL_check(L, lg_assign_(t, lgL_checktensor(L, -1), name));
  lua_settop(L, 1);
  return 1;
}

static int t_clamp_(lua_State *L) { return inplace(L, LG_OP_CLAMP, t_clamp); }

static int binary_upvalue(lua_State *L) {
  return lgL_binary(L, (lg_opcode)lua_tointeger(L, lua_upvalueindex(2)));
}

/* "add_", "mul_", ...: the in-place names, made once */
static char inplace_names[LG_NUM_OPS][32];
static pthread_once_t inplace_names_once = PTHREAD_ONCE_INIT;
static void make_inplace_names(void) {
  for (int i = 0; i < LG_NUM_OPS; i++)
    snprintf(inplace_names[i], sizeof inplace_names[i], "%s_", lg_ops[i].name);
}

/* t:add_(u) when nothing records (the common case: an optimizer's or a no_grad loop's update):
** r = t op u, then t takes r's values, with no closure, no Lua call and no Lua-owned temporary.
** Returns 0, having changed nothing, when it does not apply or fails: the general path then runs
** (and raises its own error). */
static int inplace_binary_fast(lua_State *L, lg_opcode op) {
  if (lua_gettop(L) != 2) return 0;
  lg_tensor *t = lg_lua_totensor(L, 1), *u = lg_lua_totensor(L, 2);
  if (!t || (!u && lua_type(L, 2) != LUA_TNUMBER) || records_inplace(t, u)) return 0;
  lg_tensor *r = NULL;
  lg_status st = u ? lg_binary(op, t, u, &r) : lg_binary_scalar(op, t, lua_tonumber(L, 2), 0, &r);
  if (st == LG_OK) {
    pthread_once(&inplace_names_once, make_inplace_names);
    st = lg_assign_(t, r, inplace_names[op]);
  }
  lg_tensor_release(r);
  if (st != LG_OK) return 0;
  lua_settop(L, 1);
  return 1;
}

int lgL_inplace_binary(lua_State *L, lg_opcode op) {
  return inplace_binary_fast(L, op) || inplace(L, op, binary_upvalue);
}

/* where(mask, a, b) with a, b tensors or numbers */
int lgL_where(lua_State *L) {
  lg_tensor *m = checktensor_op(L, 1, "where");
  lg_tensor *x = lg_lua_totensor(L, 2), *y = lg_lua_totensor(L, 3);
  if (!x && !y && !(lua_type(L, 2) == LUA_TNUMBER && lua_type(L, 3) == LUA_TNUMBER))
    return lgL_error(L, "where: arguments #2 and #3 must be tensors or numbers, got %s and %s",
                     luaL_typename(L, 2), luaL_typename(L, 3));
  lg_dtype like = x ? x->dtype : y ? y->dtype : lg_default_dtype();
  int ox, oy;
  x = lgL_totensor(L, 2, like, &ox);
  if (ox) lgL_pushnew(L, x); /* let Lua own the temporary */
  y = lgL_totensor(L, 3, like, &oy);
  if (oy) lgL_pushnew(L, y);
  lg_args a = {.in = {m, x, y}, .nin = 3, .dim = -1};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(LG_OP_WHERE, &a, slot));
  return 1;
}

/* t:where(cond, other) = where(cond, t, other), as PyTorch's Tensor.where */
static int t_where(lua_State *L) {
  lua_settop(L, 3);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 3);
  lua_replace(L, 3);
  lua_replace(L, 2);
  lua_replace(L, 1);
  return lgL_where(L);
}

/* ---- reductions ----
** t:op()  t:op(dim)  t:op(dim, keepdim)  t:op(dim, keepdim, opts)  t:op(opts) */

typedef struct {
  int has_dim, dim, keepdim;
  double correction;
} reduce_spec;

static reduce_spec reduce_args(lua_State *L, lg_tensor *t, int idx, const char *op) {
  reduce_spec r = {0, -1, 0, 1};
  int optidx = 0;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    r.has_dim = 1;
    r.dim = lgL_checkdim(L, idx, t->ndim, op, t);
    if (t->ndim == 0) r.dim = -1; /* still "along a dimension": max(1) of a 0-d tensor gives an index too */
    if (lua_istable(L, idx + 1))
      optidx = idx + 1;
    else {
      r.keepdim = lua_toboolean(L, idx + 1);
      if (lua_istable(L, idx + 2)) optidx = idx + 2;
    }
  } else if (lua_istable(L, idx)) {
    optidx = idx;
  } else if (!lua_isnoneornil(L, idx)) {
    lgL_error(L, "%s: dimension must be an integer, got %s", op, luaL_typename(L, idx));
  }
  if (optidx) {
    static const char *const plain[] = {"dim", "keepdim", NULL};
    static const char *const spread[] = {"dim", "keepdim", "unbiased", "correction", NULL};
    lgL_checkoptions(L, optidx, op, strcmp(op, "var") && strcmp(op, "std") ? plain : spread);
    if (lua_getfield(L, optidx, "dim") != LUA_TNIL) {
      r.has_dim = 1;
      r.dim = lgL_checkdim(L, lua_gettop(L), t->ndim, op, t);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, optidx, "keepdim") != LUA_TNIL) r.keepdim = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, optidx, "unbiased") != LUA_TNIL) r.correction = lua_toboolean(L, -1) ? 1 : 0;
    lua_pop(L, 1);
    if (lua_getfield(L, optidx, "correction") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TNUMBER)
        lgL_error(L, "%s: option correction must be a number, got %s", op, lgL_typename(L, -1));
      r.correction = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  return r;
}

int lgL_reduce(lua_State *L, lg_opcode op) {
  const char *name = lg_ops[op].name;
  lg_tensor *t = checktensor_op(L, 1, name);
  reduce_spec r = reduce_args(L, t, 2, name);
  lg_args a = {.in = {t}, .nin = 1, .dim = r.dim, .keepdim = r.keepdim, .s = {r.correction}};
  lg_tensor **slot = lgL_newslot(L);
  if (lg_ops[op].nout == 2) {
    lg_tensor **islot = lgL_newslot(L);
    lg_tensor *o[2];
    lgL_check(L, lg_apply(op, &a, o));
    *slot = o[0];
    *islot = o[1];
    return r.has_dim ? 2 : 1 + (lua_pop(L, 1), 0);
  }
  lgL_check(L, lg_apply(op, &a, slot));
  return 1;
}

/* sum and mean also take a table of dimensions */
static int reduce_dims(lua_State *L, lg_opcode op) {
  if (!lua_istable(L, 2)) return lgL_reduce(L, op);
  lua_pushnil(L);
  if (!lua_next(L, 2)) { /* {}: every dimension, as PyTorch's sum(dim=[]); keepdim from argument 3 */
    lg_tensor *t = checktensor_op(L, 1, lg_ops[op].name);
    lg_args a = {.in = {t}, .nin = 1, .dim = -1, .keepdim = lua_toboolean(L, 3), .s = {1}};
    lg_tensor **slot = lgL_newslot(L);
    lgL_check(L, lg_apply(op, &a, slot));
    return 1;
  }
  lua_pop(L, 2);
  lua_getfield(L, 2, "dim");
  int isopts = !lua_isnil(L, -1) || lua_rawlen(L, 2) == 0;
  lua_pop(L, 1);
  if (isopts) return lgL_reduce(L, op);
  lg_tensor *t = checktensor_op(L, 1, lg_ops[op].name);
  int keepdim = lua_toboolean(L, 3), n = (int)lua_rawlen(L, 2), dims[LG_MAX_DIMS], seen[LG_MAX_DIMS] = {0};
  if (n > t->ndim)
    return lgL_error(L, "%s: %d dimensions given for a %d-d tensor", lg_ops[op].name, n, t->ndim);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    dims[i] = lgL_checkdim(L, -1, t->ndim, lg_ops[op].name, t);
    lua_pop(L, 1);
    if (seen[dims[i]]++) return lgL_error(L, "%s: dimension %d repeated", lg_ops[op].name, dims[i] + 1);
  }
  lg_tensor *cur = lg_tensor_retain(t);
  lg_tensor **slot = lgL_newslot(L);
  for (int d = t->ndim - 1; d >= 0; d--) { /* highest first, keepdim, so indices stay valid */
    if (!seen[d]) continue;
    lg_tensor *next;
    lg_status st = lg_reduce(op, cur, d, 1, &next);
    lg_tensor_release(cur);
    if (st != LG_OK) return lgL_check(L, st);
    cur = next;
  }
  if (!keepdim) {
    int64_t shape[LG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < t->ndim; d++)
      if (!seen[d]) shape[nd++] = t->shape[d];
    lg_args a = {.in = {cur}, .nin = 1, .dim = -1, .nshape = nd, .mode = 1};
    memcpy(a.shape, shape, sizeof a.shape);
    lg_tensor *v;
    lg_status st = lg_apply(LG_OP_RESHAPE, &a, &v);
    lg_tensor_release(cur);
    lgL_check(L, st);
    cur = v;
  }
  *slot = cur;
  return 1;
}

static int t_sum(lua_State *L) { return reduce_dims(L, LG_OP_SUM); }
static int t_mean(lua_State *L) { return reduce_dims(L, LG_OP_MEAN); }

/* t:max() / t:max(dim[, keepdim]) -> values, indices / t:max(other) = maximum */
static int t_max(lua_State *L) {
  return lg_lua_totensor(L, 2) ? lgL_binary(L, LG_OP_MAXIMUM) : lgL_reduce(L, LG_OP_MAX);
}
static int t_min(lua_State *L) {
  return lg_lua_totensor(L, 2) ? lgL_binary(L, LG_OP_MINIMUM) : lgL_reduce(L, LG_OP_MIN);
}

/* t:norm(p, dim, keepdim): p = 2 by default, "fro" = 2, math.huge = max |x| */
static int t_norm(lua_State *L) {
  lg_tensor *t = checktensor_op(L, 1, "norm");
  double p = 2;
  if (lua_type(L, 2) == LUA_TSTRING) {
    if (strcmp(lua_tostring(L, 2), "fro") != 0)
      return lgL_error(L, "norm: unknown norm '%s'", lua_tostring(L, 2));
  } else if (!lua_isnoneornil(L, 2)) {
    p = lgL_checknumber(L, 2, "p");
  }
  reduce_spec r = reduce_args(L, t, 3, "norm");
  lg_args a = {.in = {t}, .nin = 1, .dim = r.dim, .keepdim = r.keepdim, .s = {p}};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(LG_OP_NORM, &a, slot));
  return 1;
}

/* ---- matmul and indexing ---- */

static int t_matmul(lua_State *L) {
  lg_tensor *a = checktensor_op(L, 1, "matmul"), *b = checktensor_op(L, 2, "matmul");
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_matmul(a, b, slot));
  return 1;
}

static int t_index_select(lua_State *L) {
  lg_tensor *t = checktensor_op(L, 1, "index_select");
  if (t->ndim == 0) return lgL_error(L, "index_select: cannot index a 0-d tensor");
  int d = lgL_checkdim(L, 2, t->ndim, "index_select", t);
  lg_tensor *idx;
  if (lua_istable(L, 3)) { /* a Lua list of integers */
    int64_t n = (int64_t)lua_rawlen(L, 3);
    lg_tensor **tmp = lgL_newslot(L);
    lgL_check(L, lg_tensor_empty(&n, 1, LG_INT64, tmp));
    for (int64_t i = 0; i < n; i++) {
      lua_geti(L, 3, i + 1);
      ((int64_t *)lg_data(*tmp))[i] = check_int(L, -1, "index_select", "an index");
      lua_pop(L, 1);
    }
    idx = *tmp;
  } else {
    idx = checktensor_op(L, 3, "index_select");
  }
  lg_args a = {.in = {t, idx}, .nin = 2, .dim = d};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(LG_OP_INDEX_SELECT, &a, slot));
  return 1;
}

static int t_gather(lua_State *L) {
  lg_tensor *t = checktensor_op(L, 1, "gather");
  if (t->ndim == 0) return lgL_error(L, "gather: cannot index a 0-d tensor");
  int d = lgL_checkdim(L, 2, t->ndim, "gather", t);
  lg_tensor *idx = checktensor_op(L, 3, "gather");
  lg_args a = {.in = {t, idx}, .nin = 2, .dim = d};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(LG_OP_GATHER, &a, slot));
  return 1;
}

/* t:index_add(dim, index, source): t with source's slices added at the given (1-based) positions
** along dim, repeated positions summed; t:scatter_add(dim, index, src): t with src[p] added at
** position p with p[dim] replaced by index[p]. Out of place, as PyTorch's (the op is the adjoint
** of index_select / gather: zeros with the values added, then t + that). */
static int index_add_like(lua_State *L, lg_opcode op) {
  const char *name = lg_ops[op].name;
  lg_tensor *t = checktensor_op(L, 1, name);
  if (t->ndim == 0) return lgL_error(L, "%s: cannot index a 0-d tensor", name);
  int d = lgL_checkdim(L, 2, t->ndim, name, t);
  lg_tensor *idx = checktensor_op(L, 3, name), *src = checktensor_op(L, 4, name);
  if (src->dtype != t->dtype)
    return lgL_error(L, "%s: source is %s but the tensor is %s", name, lg_dtype_name(src->dtype),
                     lg_dtype_name(t->dtype));
  lg_args a = {.in = {src, idx}, .nin = 2, .dim = d, .nshape = t->ndim};
  memcpy(a.shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
  lg_tensor **added = lgL_newslot(L);
  lgL_check(L, lg_apply(op, &a, added));
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_binary(LG_OP_ADD, t, *added, slot));
  return 1;
}
static int t_index_add(lua_State *L) { return index_add_like(L, LG_OP_INDEX_ADD); }
static int t_scatter_add(lua_State *L) { return index_add_like(L, LG_OP_SCATTER_ADD); }

/* ---- sequence ops (src/engine/seq.c) ----
** Each takes its arguments positionally as PyTorch's do, or the optional ones as a table of
** PyTorch's keyword names: t:sort(2, true), t:sort({dim = 2, descending = true}). */

/* the option's value pushed (nil when absent) */
static int opt_field(lua_State *L, int opts, const char *key) {
  return opts ? lua_getfield(L, opts, key) : (lua_pushnil(L), LUA_TNIL);
}
static int opt_bool(lua_State *L, int opts, int pos, const char *key, int def) {
  int v = def;
  if (opts) {
    if (opt_field(L, opts, key) != LUA_TNIL) v = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, pos)) {
    if (!lua_isboolean(L, pos)) lgL_argerror(L, pos, key, "a boolean");
    v = lua_toboolean(L, pos);
  }
  return v;
}
/* a dimension (1-based, negative from the end) at pos or in opts, or def (0-based) if absent */
static int opt_dim(lua_State *L, int opts, int pos, lg_tensor *t, const char *op, int def) {
  int at = pos;
  if (opts) {
    if (opt_field(L, opts, "dim") == LUA_TNIL) {
      lua_pop(L, 1);
      return def;
    }
    at = lua_gettop(L);
  } else if (lua_isnoneornil(L, pos)) {
    return def;
  }
  int d = lgL_checkdim(L, at, t->ndim, op, t);
  if (opts) lua_pop(L, 1);
  return d;
}

/* t:masked_fill(mask, value): value where mask is nonzero (any dtype, broadcast with t) */
static int t_masked_fill(lua_State *L) {
  const char *name = lgL_name(L, "masked_fill");
  lg_tensor *t = checktensor_op(L, 1, name), *m = checktensor_op(L, 2, name);
  double v;
  lg_tensor *vt = lg_lua_totensor(L, 3);
  if (vt) { /* a 0-d tensor, as PyTorch takes (its value; no gradient flows to it) */
    if (lg_numel(vt) != 1 || vt->ndim != 0)
      return lgL_error(L, "%s: value must be a number or a 0-d tensor, got a tensor of shape %s", name,
                       LG_SHAPE(vt));
    v = lg_get_flat(vt, 0);
  } else {
    v = lgL_checknumber(L, 3, "value");
  }
  lg_args a = {.in = {t, m}, .nin = 2, .dim = -1, .s = {v}};
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkas(L, lg_apply(LG_OP_MASKED_FILL, &a, slot), "masked_fill");
  return 1;
}
static int t_masked_fill_(lua_State *L) { return inplace(L, LG_OP_MASKED_FILL, t_masked_fill); }

/* t:tril(diagonal = 0), t:triu(diagonal = 0), or ({diagonal = }) */
static int triangle(lua_State *L, lg_opcode op) {
  const char *name = lgL_name(L, lg_ops[op].name);
  static const char *const known[] = {"diagonal", NULL};
  lg_tensor *t = checktensor_op(L, 1, name);
  int opts = lgL_checkoptions(L, 2, name, known) ? 2 : 0;
  lua_Integer k = 0;
  if (opts) {
    if (opt_field(L, opts, "diagonal") != LUA_TNIL) k = lgL_checkinteger(L, -1, "diagonal");
    lua_pop(L, 1);
  } else {
    k = lgL_optinteger(L, 2, "diagonal", 0);
  }
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .start = (int64_t)k};
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkas(L, lg_apply(op, &a, slot), lg_ops[op].name);
  return 1;
}
static int t_tril(lua_State *L) { return triangle(L, LG_OP_TRIL); }
static int t_triu(lua_State *L) { return triangle(L, LG_OP_TRIU); }

/* values and indices of a sort or topk */
static int sort_like(lua_State *L, lg_opcode op, lg_args *a) {
  lg_tensor **v = lgL_newslot(L), **i = lgL_newslot(L), *o[2] = {NULL, NULL};
  lgL_checkas(L, lg_apply(op, a, o), lg_ops[op].name);
  *v = o[0];
  *i = o[1];
  return 2;
}

/* t:sort(dim = -1, descending = false) or t:sort({dim =, descending =, stable =}) -> values, indices */
static int t_sort(lua_State *L) {
  const char *name = lgL_name(L, "sort");
  static const char *const known[] = {"dim", "descending", "stable", NULL};
  lg_tensor *t = checktensor_op(L, 1, name);
  int opts = lgL_checkoptions(L, 2, name, known) ? 2 : 0;
  int last = t->ndim ? t->ndim - 1 : 0;
  lg_args a = {.in = {t}, .nin = 1, .dim = opt_dim(L, opts, 2, t, name, last)};
  a.mode = opt_bool(L, opts, 3, "descending", 0);
  return sort_like(L, LG_OP_SORT, &a);
}

/* t:topk(k, dim = -1, largest = true, sorted = true) or t:topk(k, {dim =, largest =, sorted =}) */
static int t_topk(lua_State *L) {
  const char *name = lgL_name(L, "topk");
  static const char *const known[] = {"dim", "largest", "sorted", NULL};
  lg_tensor *t = checktensor_op(L, 1, name);
  lua_Integer k = lgL_checkinteger(L, 2, "k");
  int opts = lgL_checkoptions(L, 3, name, known) ? 3 : 0;
  int last = t->ndim ? t->ndim - 1 : 0;
  lg_args a = {.in = {t}, .nin = 1, .dim = opt_dim(L, opts, 3, t, name, last), .len = (int64_t)k};
  a.mode = opt_bool(L, opts, 4, "largest", 1);
  (void)opt_bool(L, opts, 5, "sorted", 1); /* the k values always come sorted */
  return sort_like(L, LG_OP_TOPK, &a);
}

/* t:cumsum(dim) or t:cumsum({dim = }) */
static int t_cumsum(lua_State *L) {
  const char *name = lgL_name(L, "cumsum");
  static const char *const known[] = {"dim", NULL};
  lg_tensor *t = checktensor_op(L, 1, name);
  int opts = lgL_checkoptions(L, 2, name, known) ? 2 : 0;
  int d = opt_dim(L, opts, 2, t, name, -1);
  if (d < 0) return lgL_error(L, "%s: a dimension is needed, e.g. t:cumsum(1)", name);
  lg_args a = {.in = {t}, .nin = 1, .dim = d};
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkas(L, lg_apply(LG_OP_CUMSUM, &a, slot), "cumsum");
  return 1;
}

/* probs:multinomial(n, replacement = false) or (n, {replacement = }) -> 1-based int64 indices */
static int t_multinomial(lua_State *L) {
  const char *name = lgL_name(L, "multinomial");
  static const char *const known[] = {"replacement", NULL};
  lg_tensor *p = checktensor_op(L, 1, name);
  lua_Integer n = lgL_checkinteger(L, 2, "num_samples");
  int opts = lgL_checkoptions(L, 3, name, known) ? 3 : 0;
  int replacement = opt_bool(L, opts, 3, "replacement", 0);
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkas(L, lg_multinomial(p, (int64_t)n, replacement, slot), "multinomial");
  return 1;
}

/* split(size or {sizes}, dim) -> list of views */
static int t_split(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) return lgL_error(L, "split: cannot split a 0-d tensor");
  int d = lua_isnoneornil(L, 3) ? 0 : lgL_checkdim(L, 3, t->ndim, "split", t);
  int64_t size = t->shape[d];
  lua_newtable(L);
  int out = lua_gettop(L), k = 0;
  if (lua_istable(L, 2)) {
    int64_t n = (int64_t)lua_rawlen(L, 2), at = 0;
    for (int64_t i = 1; i <= n; i++) {
      lua_geti(L, 2, i);
      int64_t len = check_int(L, -1, "split", "a size");
      lua_pop(L, 1);
      if (len < 0 || len > size - at)
        return lgL_error(L, "split: sizes exceed size %lld of dimension %d", (long long)size, d + 1);
      narrow_to(L, t, d, at, len);
      lua_rawseti(L, out, ++k);
      at += len;
    }
    if (at != size)
      return lgL_error(L, "split: sizes add up to %lld, but dimension %d has size %lld", (long long)at, d + 1,
                       (long long)size);
  } else {
    int64_t len = check_int(L, 2, "split", "split size");
    if (len <= 0 && size > 0)
      return lgL_error(L, "split: split size must be positive, got %lld", (long long)len);
    for (int64_t at = 0; at < size || (size == 0 && k == 0);) {
      int64_t piece = size - at < len ? size - at : len;
      narrow_to(L, t, d, at, piece);
      lua_rawseti(L, out, ++k);
      if (size == 0) break;
      at += piece; /* not at += len, which could overflow */
    }
  }
  return 1;
}

static int t_chunk(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) return lgL_error(L, "chunk: cannot chunk a 0-d tensor");
  int64_t n = check_int(L, 2, "chunk", "number of chunks");
  if (n <= 0) return lgL_error(L, "chunk: number of chunks must be positive, got %lld", (long long)n);
  int d = lua_isnoneornil(L, 3) ? 0 : lgL_checkdim(L, 3, t->ndim, "chunk", t);
  int64_t size = t->shape[d], len = size / n + (size % n != 0); /* ceil(size / n), without overflow */
  if (size == 0) {                                              /* n empty pieces, as PyTorch */
    if (n > (1 << 20)) return lgL_error(L, "chunk: %lld empty chunks is too many", (long long)n);
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 1; i <= n; i++) {
      narrow_to(L, t, d, 0, 0);
      lua_rawseti(L, -2, i);
    }
    return 1;
  }
  lua_settop(L, 3);
  lua_pushinteger(L, len > 0 ? len : 1);
  lua_replace(L, 2);
  if (lua_isnoneornil(L, 3)) {
    lua_pushinteger(L, 1);
    lua_replace(L, 3);
  }
  return t_split(L);
}

/* ---- autograd fields (the tape lands with the autograd issue) ---- */

static void set_requires_grad(lua_State *L, lg_tensor *t, int on, const char *name) {
  if (on && !lg_dtype_is_float(t->dtype))
    lgL_error(L, "%s: only float tensors can require gradients, got %s", name, lg_dtype_name(t->dtype));
  t->requires_grad = on;
}

static int t_requires_grad_(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  set_requires_grad(L, t, lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2), "requires_grad_");
  lua_settop(L, 1);
  return 1;
}

/* ---- indexing by tables and tensors ----
** t[{2, {1, 3}}] (Torch7's table indexing, 1-based): one entry per leading dimension, each an
** integer (select: the dimension goes), {} (the whole dimension), {i} (i alone, kept as a
** dimension), {first, last} (inclusive) or {first, last, step}; negative integers count from the
** end. Without a step the result is a chain of narrow/select views; with one, a window
** (as_strided) of a contiguous tensor, or of a contiguous copy of a strided one (reading only).
** t[mask] (a tensor of any dtype, nonzero = true, broadcast to t's shape) is masked_select;
** t[idx] (a 1-d int64 tensor) is index_select along dimension 1; a 0-d int64 tensor is an
** integer. Assignment writes through the same views (t[{...}] = v, t[idx] = v) or is
** masked_fill_ (t[mask] = v). */

typedef struct {
  int select;               /* 1: an integer (the dimension goes); 0: a range */
  int64_t first, len, step; /* 0-based first element, how many, the step */
} index_entry;

/* Reads the integer at the top of the stack (an entry of a table index); raises naming the entry. */
static int64_t index_integer(lua_State *L, const char *op, int entry, const char *what) {
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER) {
    if (lua_type(L, -1) == LUA_TNUMBER)
      return lgL_error(L, "%s: entry %d of the index table: %s must be an integer, got %s", op, entry, what,
                       lua_tostring(L, -1));
    return lgL_error(L, "%s: entry %d of the index table: %s must be an integer, got %s", op, entry, what,
                     lgL_typename(L, -1));
  }
  return (int64_t)v;
}

/* The number of keys of the table at idx (its length only counts 1..n) */
static int64_t count_keys(lua_State *L, int idx) {
  int64_t n = 0;
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) n++, lua_pop(L, 1);
  return n;
}

/* 1-based (negative from the end) position -> 0-based, checked against size */
static int64_t index_position(lua_State *L, const char *op, int64_t i, int64_t size, int d, int entry) {
  int64_t r = i < 0 ? i + size + 1 : i;
  if (r < 1 || r > size)
    return lgL_error(L,
                     "%s: entry %d of the index table: index %lld out of range for dimension %d of size %lld",
                     op, entry, (long long)i, d + 1, (long long)size);
  return r - 1;
}

/* Parses the index table at idx against t into e[]; returns how many entries it has. */
static int parse_index_table(lua_State *L, int idx, const lg_tensor *t, const char *op, index_entry *e) {
  lua_Unsigned n = lua_rawlen(L, idx);
  if ((lua_Unsigned)count_keys(L, idx) != n)
    return lgL_error(L, "%s: an index table must be a list (entries 1..n), got a table with other keys", op);
  if (n > (lua_Unsigned)t->ndim)
    return lgL_error(L, "%s: %d entries in the index table for a %d-d tensor %s", op, (int)n, t->ndim,
                     LG_SHAPE(t));
  for (int k = 0; k < (int)n; k++) {
    int64_t size = t->shape[k];
    lua_rawgeti(L, idx, k + 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      e[k] = (index_entry){1, index_position(L, op, index_integer(L, op, k + 1, "an index"), size, k, k + 1),
                           1, 1};
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      lua_Unsigned m = lua_rawlen(L, -1);
      if ((lua_Unsigned)count_keys(L, -1) != m || m > 3)
        return lgL_error(L,
                         "%s: entry %d of the index table: a range is {}, {i}, {first, last} or "
                         "{first, last, step}, got a table with %lld keys",
                         op, k + 1, (long long)count_keys(L, -1));
      int64_t v[3] = {1, -1, 1};
      for (int j = 0; j < (int)m; j++) {
        lua_rawgeti(L, -1, j + 1);
        v[j] = index_integer(L, op, k + 1,
                             j == 0   ? "a range's first index"
                             : j == 1 ? "a range's last index"
                                      : "a range's step");
        lua_pop(L, 1);
      }
      if (m == 1) v[1] = v[0];
      if (v[2] < 1)
        return lgL_error(L, "%s: entry %d of the index table: step %lld must be positive", op, k + 1,
                         (long long)v[2]);
      if (m == 0) {
        e[k] = (index_entry){0, 0, size, 1};
      } else {
        int64_t first = index_position(L, op, v[0], size, k, k + 1),
                last = index_position(L, op, v[1], size, k, k + 1);
        if (last < first)
          return lgL_error(L, "%s: entry %d of the index table: range {%lld, %lld} ends before it starts", op,
                           k + 1, (long long)v[0], (long long)v[1]);
        e[k] = (index_entry){0, first, (last - first) / v[2] + 1, v[2]};
      }
    } else {
      return lgL_error(L, "%s: entry %d of the index table must be an integer or a range table, got %s", op,
                       k + 1, lgL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  return (int)n;
}

/* Pushes t[{...}] for the index table at idx: views (narrow/select) without a step; with one, a
** window of t (as_strided) when t is contiguous, else (reading only) of a contiguous copy. */
static int index_by_table(lua_State *L, lg_tensor *t, int idx, int writing) {
  const char *op = writing ? "index assignment" : "index";
  index_entry e[LG_MAX_DIMS];
  int n = parse_index_table(L, idx, t, op, e), stepped = 0;
  for (int k = 0; k < n; k++) stepped |= !e[k].select && e[k].step > 1;
  if (!stepped) {
    lg_tensor *cur = t;
    int d = 0, pushed = 0;
    for (int k = 0; k < n; k++) {
      if (e[k].select)
        select_at(L, cur, d, e[k].first);
      else if (e[k].first != 0 || e[k].len != cur->shape[d])
        narrow_to(L, cur, d++, e[k].first, e[k].len);
      else {
        d++;
        continue;
      }
      cur = *(lg_tensor **)lua_touserdata(L, -1), pushed = 1;
    }
    if (!pushed) reshape_to(L, t, t->shape, t->ndim, 1); /* t[{}]: a view of the whole */
    return 1;
  }
  lg_tensor *x = t;
  if (!lg_is_contiguous(t)) {
    if (writing)
      return lgL_error(L,
                       "%s: a range with a step over a non-contiguous tensor (strides %s) cannot be written "
                       "through; make it contiguous first",
                       op, LG_SHAPEV(t->stride, t->ndim));
    lg_args c = {.in = {t}, .nin = 1, .dim = -1};
    apply_view(L, LG_OP_CLONE, c);
    x = *(lg_tensor **)lua_touserdata(L, -1);
  }
  lg_args a = {.in = {x}, .nin = 1, .dim = -1};
  for (int d = 0; d < x->ndim; d++) {
    int64_t stride = lg_shape_numel(x->shape + d + 1, x->ndim - d - 1);
    if (d >= n) {
      a.shape[a.nshape] = x->shape[d], a.stride[a.nshape++] = stride;
      continue;
    }
    a.start += e[d].first * stride;
    if (!e[d].select) a.shape[a.nshape] = e[d].len, a.stride[a.nshape++] = stride * e[d].step;
  }
  return apply_view(L, LG_OP_AS_STRIDED, a);
}

/* The 1-based positions of the nonzero elements of the contiguous mask m, written to p unless it
** is NULL; returns how many. */
static int64_t mask_positions(const lg_tensor *m, int64_t n, int64_t *restrict p) {
  int64_t c = 0;
  switch (m->dtype) { /* counting is branch-free; writing branches on the mask */
  case LG_FLOAT32: {
    const float *restrict x = lg_data(m);
    if (!p)
      for (int64_t i = 0; i < n; i++) c += x[i] != 0;
    else
      for (int64_t i = 0; i < n; i++)
        if (x[i] != 0) p[c++] = i + 1;
    break;
  }
  case LG_FLOAT64: {
    const double *restrict x = lg_data(m);
    if (!p)
      for (int64_t i = 0; i < n; i++) c += x[i] != 0;
    else
      for (int64_t i = 0; i < n; i++)
        if (x[i] != 0) p[c++] = i + 1;
    break;
  }
  default: {
    const int64_t *restrict x = lg_data(m);
    if (!p)
      for (int64_t i = 0; i < n; i++) c += x[i] != 0;
    else
      for (int64_t i = 0; i < n; i++)
        if (x[i] != 0) p[c++] = i + 1;
    break;
  }
  }
  return c;
}

/* Pushes t[mask]: the elements of t where mask (broadcast to t's shape) is nonzero, in order, as
** a 1-d tensor: index_select of t flattened, so gradients flow back to the selected elements. */
static int masked_select_at(lua_State *L, lg_tensor *t, lg_tensor *m, const char *name) {
  lg_tensor **mb = lgL_newslot(L);
  if (lg_expand(m, t->shape, t->ndim, mb) != LG_OK)
    return lgL_error(L, "%s: mask of shape %s does not broadcast to the tensor's shape %s", name, LG_SHAPE(m),
                     LG_SHAPE(t));
  lg_tensor **mc = lgL_newslot(L); /* the mask contiguous, read with one loop per dtype */
  lgL_check(L, lg_contiguous(*mb, mc));
  int64_t numel = lg_numel(t), count = mask_positions(*mc, numel, NULL);
  lg_tensor **idx = lgL_newslot(L);
  lgL_check(L, lg_tensor_empty(&count, 1, LG_INT64, idx));
  mask_positions(*mc, numel, lg_data(*idx));
  reshape_to(L, t, &numel, 1, 0);
  lg_args a = {.in = {*(lg_tensor **)lua_touserdata(L, -1), *idx}, .nin = 2, .dim = 0};
  lg_tensor **slot = lgL_newslot(L);
  lgL_checkas(L, lg_apply(LG_OP_INDEX_SELECT, &a, slot), "index_select");
  return 1;
}

/* t:masked_select(mask) */
static int t_masked_select(lua_State *L) {
  const char *name = lgL_name(L, "masked_select");
  lg_tensor *t = checktensor_op(L, 1, name), *m = checktensor_op(L, 2, name);
  return masked_select_at(L, t, m, name);
}

/* Whether the tensor key k indexes positions along dimension 1 (a 1-d int64 tensor) rather than
** masking (any other tensor). */
static int is_index_tensor(const lg_tensor *k) { return k->dtype == LG_INT64 && k->ndim == 1; }

/* t[k] for a key that is neither a number nor a string */
static int index_other(lua_State *L, lg_tensor *t) {
  if (lua_type(L, 2) == LUA_TTABLE) return index_by_table(L, t, 2, 0);
  lg_tensor *k = lg_lua_totensor(L, 2);
  if (k && k->ndim == 0 && k->dtype == LG_INT64) { /* a 0-d int64 tensor: an integer */
    if (t->ndim == 0) return lgL_error(L, "index: a 0-d tensor cannot be indexed (use item())");
    lua_pushinteger(L, (lua_Integer)lg_get_flat_i64(k, 0));
    lua_replace(L, 2);
    int64_t i = check_index(L, 2, t->shape[0], "index", 0);
    return select_at(L, t, 0, i);
  }
  if (k && is_index_tensor(k)) {
    if (t->ndim == 0) return lgL_error(L, "index: a 0-d tensor cannot be indexed with an index tensor");
    lg_args a = {.in = {t, k}, .nin = 2, .dim = 0};
    lg_tensor **slot = lgL_newslot(L);
    if (lg_apply(LG_OP_INDEX_SELECT, &a, slot) != LG_OK) return raise_as(L, "index_select", "index");
    return 1;
  }
  if (k) return masked_select_at(L, t, k, "index");
  if (lua_type(L, 2) == LUA_TUSERDATA && lua_touserdata(L, 2) && test_slot(L, 2))
    return lgL_error(L, "index: cannot index with a closed tensor");
  return lgL_error(L,
                   "index: cannot index a tensor with %s (use an integer, a table such as {2, {1, 3}}, a "
                   "mask tensor or a 1-d int64 index tensor)",
                   lgL_typename(L, 2));
}

/* ---- __index / __newindex ---- */

static int t_index(lua_State *L) {
  lgL_enter(lua_touserdata(L, lua_upvalueindex(2))); /* t[i] records a select */
  lg_tensor *t = checktensor_op(L, 1, "index");
  if (lua_type(L, 2) == LUA_TNUMBER) {
    if (t->ndim == 0) return lgL_error(L, "index: a 0-d tensor cannot be indexed (use item())");
    int64_t i = check_index(L, 2, t->shape[0], "index", 0);
    if (t->ndim == 1) {
      char *p = (char *)lg_data(t) + i * t->stride[0] * (int64_t)lg_dtype_size(t->dtype);
      if (t->dtype == LG_INT64)
        lua_pushinteger(L, *(int64_t *)p);
      else
        lgL_pushnumber(L, lg_load(p, t->dtype), t->dtype);
      return 1;
    }
    return select_at(L, t, 0, i);
  }
  /* methods first: they are most lookups (x:matmul), and none is named like a field below */
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING) return index_other(L, t);
  const char *k = lua_tostring(L, 2);
  {
    switch (k[0]) {
    case 's':
      if (!strcmp(k, "shape")) return t_shape(L);
      break;
    case 'd':
      if (!strcmp(k, "dtype")) {
        lua_pushstring(L, lg_dtype_name(t->dtype));
        return 1;
      }
      break;
    case 'r':
      if (!strcmp(k, "requires_grad")) {
        lua_pushboolean(L, t->requires_grad);
        return 1;
      }
      break;
    case 'g':
      if (!strcmp(k, "grad")) {
        if (t->grad)
          lg_lua_pushtensor(L, t->grad);
        else
          lua_pushnil(L);
        return 1;
      }
      break;
    case 'i':
      if (!strcmp(k, "is_leaf")) {
        lua_pushboolean(L, t->grad_fn == NULL);
        return 1;
      }
      break;
    case 'T':
      if (!k[1]) {
        if (t->ndim > 2)
          return lgL_error(L, "T: expects a tensor with at most 2 dimensions, got %s (use transpose)",
                           LG_SHAPE(t));
        lua_settop(L, 1);
        return t_t(L);
      }
      break;
    }
  }
  return lgL_error(L, "index: a tensor has no field or method '%s'", k);
}

/* Whether two elements of t share memory (an expanded view: stride 0 over a size above 1). */
static int overlapping(const lg_tensor *t) {
  int order[LG_MAX_DIMS], n = 0;
  if (lg_numel(t) <= 1) return 0;
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] > 1) order[n++] = d;
  for (int i = 1; i < n; i++) /* by stride, smallest first */
    for (int j = i; j > 0 && t->stride[order[j]] < t->stride[order[j - 1]]; j--) {
      int x = order[j];
      order[j] = order[j - 1];
      order[j - 1] = x;
    }
  int64_t reach = 0; /* the farthest offset the dimensions so far reach */
  for (int i = 0; i < n; i++) {
    int d = order[i];
    if (t->stride[d] <= reach) return 1;
    reach += (t->shape[d] - 1) * t->stride[d];
  }
  return 0;
}

/* Releases the tensors pushed above index `from` now, not at the next collection: a view holds
** its storage. */
static void release_pushed(lua_State *L, int from) {
  for (int i = lua_gettop(L); i > from; i--) {
    lg_tensor **slot = test_slot(L, i);
    if (slot && *slot) lg_tensor_release(*slot), *slot = NULL;
  }
  lua_settop(L, from);
}

/* t[k] = v for a key that is neither a number nor a string: a table (written through the view),
** an index tensor (each indexed slice), a mask (masked_fill_) */
static int newindex_other(lua_State *L, lg_tensor *t) {
  const char *op = "index assignment";
  lg_tensor *src = lg_lua_totensor(L, 3), *k = lg_lua_totensor(L, 2);
  if (!src && lua_type(L, 3) != LUA_TNUMBER)
    return lgL_error(L, "%s: can only assign a number or a tensor, got %s", op, lgL_typename(L, 3));
  double v = src ? 0 : lua_tonumber(L, 3);
  if (lua_type(L, 2) == LUA_TTABLE) {
    index_by_table(L, t, 2, 1);
    write_into(L, *(lg_tensor **)lua_touserdata(L, -1), src, v, op);
    release_pushed(L, 3);
    return 0;
  }
  if (k && is_index_tensor(k)) { /* t[idx] = v: v broadcast to (#idx, the rest of t's shape) */
    if (t->ndim == 0) return lgL_error(L, "%s: a 0-d tensor cannot be indexed with an index tensor", op);
    int64_t n = lg_numel(k);
    int rowwise = src && src->ndim == t->ndim;
    if (rowwise && src->shape[0] != n && src->shape[0] != 1)
      return lgL_error(L, "%s: value of shape %s does not fit the %lld indexed slices of %s", op,
                       LG_SHAPE(src), (long long)n, LG_SHAPE(t));
    for (int64_t i = 0; i < n; i++) {
      int64_t r = lg_get_flat_i64(k, i);
      if (r < 1 || r > t->shape[0])
        return lgL_error(L, "%s: index %lld out of range 1..%lld of dimension 1", op, (long long)r,
                         (long long)t->shape[0]);
    }
    for (int64_t i = 0; i < n; i++) {
      select_at(L, t, 0, lg_get_flat_i64(k, i) - 1);
      lg_tensor *row = *(lg_tensor **)lua_touserdata(L, -1), *s = src;
      if (rowwise) select_at(L, src, 0, src->shape[0] == 1 ? 0 : i), s = *(lg_tensor **)lua_touserdata(L, -1);
      write_into(L, row, s, v, op);
      release_pushed(L, 3);
    }
    return 0;
  }
  if (k && !(k->ndim == 0 && k->dtype == LG_INT64)) { /* t[mask] = v */
    int scatter = src && src->ndim != 0; /* a tensor of values: masked_scatter_ (lua/luagrad/init.lua) */
    lua_settop(L, 3);
    if (scatter) {
      lua_rawgetp(L, LUA_REGISTRYINDEX, &tensor_methods_key);
      lua_getfield(L, -1, "masked_scatter_");
      lua_remove(L, -2);
      if (!lua_isfunction(L, -1)) return lgL_error(L, "%s: masked_scatter_ is not loaded", op);
    } else {
      lua_pushcfunction(L, t_masked_fill_);
    }
    lua_insert(L, 1); /* its errors, renamed: "index assignment: ..." */
    if (lua_pcall(L, 3, 0, 0) != LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      luaL_gsub(L, lua_tostring(L, -1),
                scatter ? "masked_scatter_: " : "masked_fill_: ", "index assignment: t[mask] = v: ");
    return lua_gettop(L) ? lua_error(L) : 0;
  }
  if (k) { /* a 0-d int64 tensor: an integer */
    if (t->ndim == 0) return lgL_error(L, "%s: a 0-d tensor cannot be indexed (use fill_)", op);
    lua_pushinteger(L, (lua_Integer)lg_get_flat_i64(k, 0));
    select_at(L, t, 0, check_index(L, -1, t->shape[0], "index", 0));
    write_into(L, *(lg_tensor **)lua_touserdata(L, -1), src, v, op);
    release_pushed(L, 3);
    return 0;
  }
  return lgL_error(L,
                   "%s: cannot index a tensor with %s (use an integer, a table such as {2, {1, 3}}, a "
                   "mask tensor or a 1-d int64 index tensor)",
                   op, lgL_typename(L, 2));
}

static int t_newindex(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    if (t->ndim == 0) return lgL_error(L, "index: a 0-d tensor cannot be indexed (use fill_)");
    int64_t i = check_index(L, 2, t->shape[0], "index", 0);
    lg_tensor *src = lg_lua_totensor(L, 3);
    if (!src && lua_type(L, 3) != LUA_TNUMBER)
      return lgL_error(L, "index: can only assign a number or a tensor, got %s", luaL_typename(L, 3));
    lg_tensor **view = lgL_newslot(L);
    lgL_check(L, lg_select(t, 0, i, view));
    write_into(L, *view, src, src ? 0 : lua_tonumber(L, 3), "index assignment");
    lg_tensor_release(*view); /* now, not at the next collection: the view holds the storage */
    *view = NULL;
    return 0;
  }
  if (lua_type(L, 2) != LUA_TSTRING) return newindex_other(L, t);
  const char *k = lua_tostring(L, 2);
  if (k && !strcmp(k, "requires_grad")) {
    set_requires_grad(L, t, lua_toboolean(L, 3), "requires_grad");
    return 0;
  }
  if (k && !strcmp(k, "grad")) {
    lg_tensor **gs = lua_isnil(L, 3) ? NULL : test_slot(L, 3), *g = gs ? *gs : NULL;
    if (!lua_isnil(L, 3) && !gs)
      return lgL_error(L, "grad: can only assign a tensor or nil, got %s", luaL_typename(L, 3));
    if (gs && !g) return lgL_error(L, "grad: cannot assign a closed tensor");
    if (g && (g->ndim != t->ndim || memcmp(g->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim)))
      return lgL_error(L, "grad: assigned gradient has shape %s, but the tensor has shape %s", LG_SHAPE(g),
                       LG_SHAPE(t));
    if (g && g->dtype != t->dtype)
      return lgL_error(L, "grad: assigned gradient is %s, but the tensor is %s", lg_dtype_name(g->dtype),
                       lg_dtype_name(t->dtype));
    if (g && overlapping(g)) /* gradients accumulate into .grad in place */
      return lgL_error(L,
                       "grad: assigned gradient %s has elements sharing memory (strides %s); assign a "
                       "contiguous tensor (clone() it)",
                       LG_SHAPE(g), LG_SHAPEV(g->stride, g->ndim));
    lg_tensor_release(t->grad);
    t->grad = lg_tensor_retain(g);
    return 0;
  }
  return lgL_error(L, "tensor: cannot set field '%s' (the fields that can be set are grad and requires_grad)",
                   k ? k : luaL_typename(L, 2));
}

static int t_tostring_plain(lua_State *L) {
  lg_tensor **slot = test_slot(L, 1);
  if (!slot) return lgL_argerror(L, 1, NULL, "a tensor");
  if (!*slot)
    lua_pushstring(L, "tensor(closed)");
  else
    lua_pushfstring(L, "tensor(%s, %s)", LG_SHAPE(*slot), lg_dtype_name((*slot)->dtype));
  return 1;
}

static const luaL_Reg methods[] = {{"size", t_size},
                                   {"dim", t_dim},
                                   {"numel", t_numel},
                                   {"nelement", t_numel},
                                   {"stride", t_stride},
                                   {"is_contiguous", t_is_contiguous},
                                   {"element_size", t_element_size},
                                   {"item", t_item},
                                   {"tolist", t_tolist},
                                   {"view", t_view},
                                   {"reshape", t_reshape},
                                   {"view_as", t_view_as},
                                   {"reshape_as", t_reshape_as},
                                   {"transpose", t_transpose},
                                   {"t", t_t},
                                   {"permute", t_permute},
                                   {"narrow", t_narrow},
                                   {"select", t_select},
                                   {"unsqueeze", t_unsqueeze},
                                   {"squeeze", t_squeeze},
                                   {"expand", t_expand},
                                   {"expand_as", t_expand_as},
                                   {"flatten", t_flatten},
                                   {"contiguous", t_contiguous},
                                   {"clone", t_clone},
                                   {"detach", t_detach},
                                   {"to", t_to},
                                   {"float", t_float},
                                   {"double", t_double},
                                   {"long", t_long},
                                   {"type", t_type},
                                   {"copy_", t_copy_},
                                   {"set_", t_set_},
                                   {"fill_", t_fill_},
                                   {"zero_", t_zero_},
                                   {"uniform_", t_uniform_},
                                   {"normal_", t_normal_},
                                   {"bernoulli_", t_bernoulli_},
                                   {"clamp", t_clamp},
                                   {"clamp_", t_clamp_},
                                   {"where", t_where},
                                   {"sum", t_sum},
                                   {"mean", t_mean},
                                   {"norm", t_norm},
                                   {"max", t_max},
                                   {"min", t_min},
                                   {"matmul", t_matmul},
                                   {"index_select", t_index_select},
                                   {"gather", t_gather},
                                   {"index_add", t_index_add},
                                   {"scatter_add", t_scatter_add},
                                   {"masked_fill", t_masked_fill},
                                   {"masked_fill_", t_masked_fill_},
                                   {"masked_select", t_masked_select},
                                   {"tril", t_tril},
                                   {"triu", t_triu},
                                   {"sort", t_sort},
                                   {"topk", t_topk},
                                   {"cumsum", t_cumsum},
                                   {"multinomial", t_multinomial},
                                   {"split", t_split},
                                   {"chunk", t_chunk},
                                   {"requires_grad_", t_requires_grad_},
                                   {NULL, NULL}};

/* the arithmetic operators are set from the op table (lua_ops.c) */
static const luaL_Reg metamethods[] = {{"__len", t_len},           {"__gc", t_gc},
                                       {"__close", t_gc},          {"__tostring", t_tostring_plain},
                                       {"__newindex", t_newindex}, {NULL, NULL}};

void lgL_open_tensor(lua_State *L) {
  luaL_newmetatable(L, LG_TENSOR_MT);
  lgL_state_of(L)->tensor_mt = lua_topointer(L, -1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tensor_mt_key);
  lgL_setfuncs(L, metamethods);
  lua_newtable(L);
  lgL_setfuncs(L, methods);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tensor_methods_key);
  lua_pushvalue(L, -1);
  lua_pushlightuserdata(L, lgL_state_of(L));
  lua_pushcclosure(L, t_index, 2);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2); /* leave the methods table */
}
