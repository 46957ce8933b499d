/*
** lua_autograd.c: the tape from Lua: backward, autograd.grad, grad mode, hooks, retain_grad,
** anomaly detection, forward-mode tangents, and the activations as functions. The Lua module
** lua/luagrad/autograd.lua builds jvp, vjp, jacobian, hessian, hvp and gradcheck on these.
*/
#include "lua_binding.h"

#include <stdlib.h>
#include <string.h>

/* ---- tensors or lists of tensors ---- */

/* Reads a tensor or a list of tensors at idx into an array kept alive in a userdata on the
** stack. Returns the count; *single tells whether a lone tensor was given. */
static lg_tensor **tensors_arg(lua_State *L, int idx, const char *op, const char *what, int *n, int *single) {
  lg_tensor *t = lg_lua_totensor(L, idx);
  *single = t != NULL;
  if (t) {
    lg_tensor **arr = lua_newuserdatauv(L, sizeof *arr, 0);
    arr[0] = t;
    *n = 1;
    return arr;
  }
  if (!lua_istable(L, idx)) return (lgL_error(L, "%s: %s must be a tensor or a list of tensors, got %s", op, what, luaL_typename(L, idx)), NULL);
  int len = (int)lua_rawlen(L, idx);
  lg_tensor **arr = lua_newuserdatauv(L, sizeof *arr * (size_t)(len ? len : 1), 0);
  for (int i = 0; i < len; i++) {
    lua_rawgeti(L, idx, i + 1);
    arr[i] = lg_lua_totensor(L, -1);
    if (!arr[i]) return (lgL_error(L, "%s: %s[%d] is a %s, not a tensor", op, what, i + 1, luaL_typename(L, -1)), NULL);
    lua_pop(L, 1);
  }
  *n = len;
  return arr;
}

static int opt_bool(lua_State *L, int idx, const char *key, int def) {
  if (!lua_istable(L, idx)) return def;
  lua_getfield(L, idx, key);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* t:backward(grad, {retain_graph = false, create_graph = false}) */
static int t_backward(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int optidx = lua_istable(L, 2) && !lg_lua_totensor(L, 2) ? 2 : 3;
  lg_tensor *g = lua_isnoneornil(L, 2) || optidx == 2 ? NULL : lgL_checktensor(L, 2);
  lg_backward_opts o;
  o.create_graph = opt_bool(L, optidx, "create_graph", 0);
  o.retain_graph = opt_bool(L, optidx, "retain_graph", o.create_graph);
  lgL_check(L, lg_backward(&t, &g, 1, NULL, 0, o, NULL));
  lgL_gcpace(L);
  return 0;
}

/* lg.autograd.grad(outputs, inputs, {grad_outputs, retain_graph, create_graph, allow_unused})
** -> a list with the gradient of the outputs' sum with respect to each input */
static int m_grad(lua_State *L) {
  int nout, nin, s1, s2, ng = 0, s3;
  lua_settop(L, 3);
  lg_tensor **outs = tensors_arg(L, 1, "grad", "outputs", &nout, &s1);
  lg_tensor **ins = tensors_arg(L, 2, "grad", "inputs", &nin, &s2);
  lg_tensor **gouts = NULL;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "grad_outputs");
    int gi = lua_gettop(L);
    if (!lua_isnil(L, gi)) {
      gouts = tensors_arg(L, gi, "grad", "grad_outputs", &ng, &s3);
      if (ng != nout) return lgL_error(L, "grad: %d grad_outputs for %d outputs", ng, nout);
    }
  }
  lg_backward_opts o;
  o.create_graph = opt_bool(L, 3, "create_graph", 0);
  o.retain_graph = opt_bool(L, 3, "retain_graph", o.create_graph);
  int allow_unused = opt_bool(L, 3, "allow_unused", 0);
  for (int i = 0; i < nin; i++)
    if (!ins[i]->requires_grad)
      return lgL_error(L, "grad: input %d (shape %s) does not require grad", i + 1, SHAPE(ins[i]));
  lg_tensor **res = lua_newuserdatauv(L, sizeof *res * (size_t)(nin ? nin : 1), 0);
  lgL_check(L, lg_backward(outs, gouts, nout, ins, nin, o, res));
  for (int i = 0; i < nin; i++)
    if (!res[i] && !allow_unused) {
      lg_release_all(res, nin);
      return lgL_error(L, "grad: input %d was not used to compute the outputs (pass {allow_unused = true} "
                       "to get nil for it)", i + 1);
    }
  lua_createtable(L, nin, 0);
  for (int i = 0; i < nin; i++) /* unused inputs are nil holes */
    if (res[i]) {
      lgL_pushnew(L, res[i]);
      lua_rawseti(L, -2, i + 1);
    }
  return 1;
}

/* ---- grad mode ---- */

static int m_set_grad_enabled(lua_State *L) {
  lg_set_grad_enabled(lua_toboolean(L, 1));
  return 0;
}
static int m_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, lg_grad_enabled());
  return 1;
}
static int m_detect_anomaly(lua_State *L) {
  if (!lua_isnone(L, 1)) lg_set_anomaly(lua_toboolean(L, 1));
  lua_pushboolean(L, lg_anomaly_enabled());
  return 1;
}

/* ---- hooks and retain_grad ---- */

typedef struct { lua_State *L; int ref; } lua_hook;

static lg_status call_lua_hook(void *ud, lg_tensor *grad, lg_tensor **replace) {
  lua_hook *h = ud;
  lua_State *L = h->L;
  if (h->ref == LUA_NOREF) return LG_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
  lg_lua_pushtensor(L, grad);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lg_status st = lg_error(LG_EVALUE, "hook: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
    lua_pop(L, 1);
    return st;
  }
  if (!lua_isnil(L, -1)) {
    lg_tensor *r = lg_lua_totensor(L, -1);
    if (!r) {
      lg_status st = lg_error(LG_EVALUE, "hook: must return nil or a tensor, returned a %s", luaL_typename(L, -1));
      lua_pop(L, 1);
      return st;
    }
    *replace = lg_tensor_retain(r);
  }
  lua_pop(L, 1);
  return LG_OK;
}

static void free_lua_hook(void *ud) {
  lua_hook *h = ud;
  if (h->ref != LUA_NOREF) luaL_unref(h->L, LUA_REGISTRYINDEX, h->ref);
  free(h);
}

static int hook_remove(lua_State *L) {
  lua_hook *h = lua_touserdata(L, lua_upvalueindex(1));
  if (h->ref != LUA_NOREF) {
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->ref);
    h->ref = LUA_NOREF;
  }
  return 0;
}

/* t:register_hook(fn) -> handle with handle:remove(); fn(grad) may return a new gradient */
static int t_register_hook(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!t->requires_grad) return lgL_error(L, "register_hook: the tensor (shape %s) does not require grad", SHAPE(t));
  lua_hook *h = malloc(sizeof *h);
  if (!h) return lgL_error(L, "register_hook: out of memory");
  lua_State *main;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);
  h->L = main;
  lua_pushvalue(L, 2);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lg_hook hook = {call_lua_hook, free_lua_hook, h, NULL};
  lg_status st = lg_tensor_add_hook(t, &hook);
  if (st != LG_OK) {
    free_lua_hook(h);
    return lgL_check(L, st);
  }
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, hook_remove, 1);
  lua_setfield(L, -2, "remove");
  return 1;
}

static int t_retain_grad(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (!t->requires_grad) return lgL_error(L, "retain_grad: the tensor (shape %s) does not require grad", SHAPE(t));
  if (t->grad_fn) t->retains_grad = 1;
  return 0;
}

static int t_grad_fn(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->grad_fn) lua_pushstring(L, lg_ops[t->grad_fn->op].name);
  else lua_pushnil(L);
  return 1;
}

/* ---- forward mode ---- */

static int m_fw_push(lua_State *L) { lg_fw_level_push(); return 0; }
static int m_fw_pop(lua_State *L) { lg_fw_level_pop(); return 0; }

static int t_set_tangent(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_tensor *v = lua_isnoneornil(L, 2) ? NULL : lgL_checktensor(L, 2);
  if (v && (v->ndim != t->ndim || memcmp(v->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim)))
    return lgL_error(L, "jvp: tangent of shape %s for a primal of shape %s", SHAPE(v), SHAPE(t));
  lg_tensor *c = NULL;
  if (v) lgL_check(L, lg_to_dtype(v, t->dtype, &c));
  lg_tensor_release(t->tangent);
  t->tangent = c;
  return 0;
}

static int t_tangent(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->tangent) lg_lua_pushtensor(L, t->tangent);
  else lua_pushnil(L);
  return 1;
}

/* ---- flat element access for finite differences ---- */

static int t_get_flat(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 1 || i > lg_numel(t)) return lgL_error(L, "_get_flat: index %lld out of range 1..%lld", (long long)i, (long long)lg_numel(t));
  lua_pushnumber(L, lg_get_flat(t, i - 1));
  return 1;
}

static int t_set_flat(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 1 || i > lg_numel(t)) return lgL_error(L, "_set_flat: index %lld out of range 1..%lld", (long long)i, (long long)lg_numel(t));
  lg_set_flat(t, i - 1, luaL_checknumber(L, 3));
  return 0;
}

/* ---- activations with parameters, softmax ---- */

static int activation(lua_State *L, lg_opcode op, double s0, double s1, int mode) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .s = {s0, s1}, .mode = mode};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(op, &a, slot));
  return 1;
}

static double opt_num(lua_State *L, int idx, const char *key, double def) {
  if (lua_type(L, idx) == LUA_TNUMBER) return lua_tonumber(L, idx);
  if (!lua_istable(L, idx)) return def;
  lua_getfield(L, idx, key);
  double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* t:gelu({approximate = "none" | "tanh"}) */
static int t_gelu(lua_State *L) {
  int mode = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "approximate");
    const char *ap = lua_isnil(L, -1) ? "none" : luaL_checkstring(L, -1);
    if (strcmp(ap, "tanh") == 0) mode = 1;
    else if (strcmp(ap, "none") != 0) return lgL_error(L, "gelu: approximate must be \"none\" or \"tanh\", got \"%s\"", ap);
    lua_pop(L, 1);
  } else if (lua_type(L, 2) == LUA_TSTRING) {
    mode = strcmp(lua_tostring(L, 2), "tanh") == 0;
  }
  return activation(L, LG_OP_GELU, 0, 0, mode);
}
static int t_leaky_relu(lua_State *L) { return activation(L, LG_OP_LEAKY_RELU, opt_num(L, 2, "negative_slope", 0.01), 0, 0); }
static int t_elu(lua_State *L) { return activation(L, LG_OP_ELU, opt_num(L, 2, "alpha", 1.0), 0, 0); }
static int t_silu(lua_State *L) { return activation(L, LG_OP_SILU, 0, 0, 0); }
static int t_erf(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_unary(LG_OP_ERF, t, slot));
  return 1;
}
static int t_softplus(lua_State *L) {
  double beta = opt_num(L, 2, "beta", 1.0), thr = lua_istable(L, 2) ? opt_num(L, 2, "threshold", 20.0) : luaL_optnumber(L, 3, 20.0);
  if (beta <= 0) return lgL_error(L, "softplus: beta must be positive, got %g", beta);
  return activation(L, LG_OP_SOFTPLUS, beta, thr, 0);
}

static int softmax_like(lua_State *L, lg_opcode op, const char *name) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->ndim == 0) return lgL_error(L, "%s: needs at least one dimension", name);
  int dim;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "dim");
    if (lua_isnil(L, -1)) return lgL_error(L, "%s: the options need a dim", name);
    dim = lgL_checkdim(L, lua_gettop(L), t->ndim, name, t);
  } else if (lua_isnoneornil(L, 2)) {
    return lgL_error(L, "%s: a dimension is needed, e.g. %s(x, -1)", name, name);
  } else {
    dim = lgL_checkdim(L, 2, t->ndim, name, t);
  }
  lg_args a = {.in = {t}, .nin = 1, .dim = dim};
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(op, &a, slot));
  return 1;
}
static int t_softmax(lua_State *L) { return softmax_like(L, LG_OP_SOFTMAX, "softmax"); }
static int t_log_softmax(lua_State *L) { return softmax_like(L, LG_OP_LOG_SOFTMAX, "log_softmax"); }

static const luaL_Reg tensor_methods[] = {
  {"backward", t_backward}, {"register_hook", t_register_hook}, {"retain_grad", t_retain_grad},
  {"grad_fn", t_grad_fn}, {"_set_tangent", t_set_tangent}, {"_tangent", t_tangent},
  {"_get_flat", t_get_flat}, {"_set_flat", t_set_flat},
  {"gelu", t_gelu}, {"leaky_relu", t_leaky_relu}, {"elu", t_elu}, {"silu", t_silu}, {"softplus", t_softplus},
  {"erf", t_erf}, {"softmax", t_softmax}, {"log_softmax", t_log_softmax},
  {NULL, NULL}};

static const luaL_Reg module_functions[] = {
  {"_grad", m_grad}, {"set_grad_enabled", m_set_grad_enabled}, {"is_grad_enabled", m_is_grad_enabled},
  {"_detect_anomaly", m_detect_anomaly}, {"_fw_push", m_fw_push}, {"_fw_pop", m_fw_pop},
  {NULL, NULL}};

/* Adds the autograd methods to the methods table at -2 and functions to the module at -1. */
void lgL_open_autograd(lua_State *L) {
  luaL_setfuncs(L, module_functions, 0);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, tensor_methods, 0);
  lua_pop(L, 1);
}
