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
  if (!lua_istable(L, idx))
    return (
        lgL_error(L, "%s: %s must be a tensor or a list of tensors, got %s", op, what, luaL_typename(L, idx)),
        NULL);
  int len = (int)lua_rawlen(L, idx);
  lg_tensor **arr = lua_newuserdatauv(L, sizeof *arr * (size_t)(len ? len : 1), 0);
  for (int i = 0; i < len; i++) {
    lua_rawgeti(L, idx, i + 1);
    arr[i] = lg_lua_totensor(L, -1);
    if (!arr[i])
      return (lgL_error(L, "%s: %s[%d] is a %s, not a tensor", op, what, i + 1, luaL_typename(L, -1)), NULL);
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

/* ---- callbacks at the end of a backward pass ----
** lg.autograd.queue_callback(fn) (PyTorch's queue_callback on its execution engine): fn runs
** once the outermost backward pass running now (t:backward or autograd.grad) has finished, after
** every gradient has landed; DDP waits for its all-reduces there. The queue and the depth of
** nested passes live in the state's registry. */
#define CALLBACKS_KEY "luagrad.autograd.callbacks"

static void callbacks_table(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CALLBACKS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CALLBACKS_KEY);
  }
}

static void pass_begin(lua_State *L) {
  callbacks_table(L);
  lua_getfield(L, -1, "depth");
  lua_Integer d = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_pushinteger(L, d + 1);
  lua_setfield(L, -2, "depth");
  lua_pop(L, 1);
}

/* Ends a pass; the outermost one runs the queued callbacks in order when it succeeded (and drops
** them when it failed). A callback's error propagates. */
static void pass_end(lua_State *L, int ok) {
  callbacks_table(L);
  lua_getfield(L, -1, "depth");
  lua_Integer d = lua_tointeger(L, -1) - 1;
  lua_pop(L, 1);
  lua_pushinteger(L, d > 0 ? d : 0);
  lua_setfield(L, -2, "depth");
  if (d > 0) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "queue");
  lua_pushnil(L);
  lua_setfield(L, -3, "queue");
  lua_remove(L, -2);
  if (ok && lua_istable(L, -1)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_call(L, 0, 0);
    }
  }
  lua_pop(L, 1);
}

/* lg.autograd.queue_callback(fn) */
static int m_queue_callback(lua_State *L) {
  lgL_checktype(L, 1, LUA_TFUNCTION, "fn");
  callbacks_table(L);
  if (lua_getfield(L, -1, "queue") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "queue");
  }
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* t:backward(grad, {retain_graph = false, create_graph = false}) */
static int t_backward(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  int optidx = lua_istable(L, 2) && !lg_lua_totensor(L, 2) ? 2 : 3;
  lg_tensor *g = lua_isnoneornil(L, 2) || optidx == 2 ? NULL : lgL_checktensor(L, 2);
  static const char *const known[] = {"retain_graph", "create_graph", NULL};
  lgL_checkoptions(L, optidx, "backward", known);
  lg_backward_opts o;
  o.create_graph = opt_bool(L, optidx, "create_graph", 0);
  o.retain_graph = opt_bool(L, optidx, "retain_graph", o.create_graph);
  pass_begin(L);
  lg_status st = lg_backward(&t, &g, 1, NULL, 0, o, NULL);
  pass_end(L, st == LG_OK);
  lgL_check(L, st);
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
  static const char *const known[] = {"grad_outputs", "retain_graph", "create_graph", "allow_unused", NULL};
  lgL_checkoptions(L, 3, "grad", known);
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
      return lgL_error(L, "grad: input %d (shape %s) does not require grad", i + 1, LG_SHAPE(ins[i]));
  lg_tensor **res = lua_newuserdatauv(L, sizeof *res * (size_t)(nin ? nin : 1), 0);
  pass_begin(L);
  lg_status st = lg_backward(outs, gouts, nout, ins, nin, o, res);
  pass_end(L, st == LG_OK);
  if (st != LG_OK) {
    /* the tape speaks as backward; what the user called is grad */
    const char *m = lg_errmsg();
    if (strncmp(m, "backward: ", 10) == 0) return lgL_error(L, "grad: %s", m + 10);
    return lgL_check(L, st);
  }
  for (int i = 0; i < nin; i++)
    if (!res[i] && !allow_unused) {
      lg_release_all(res, nin);
      return lgL_error(L,
                       "grad: input %d was not used to compute the outputs (pass {allow_unused = true} "
                       "to get nil for it)",
                       i + 1);
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

/* A hook's state is a full userdata that Lua owns: the tensor's hook list keeps it alive through a
** registry reference (self_ref, dropped when the tensor dies), and so does the handle that
** register_hook returns (its remove closure's upvalue), so remove() after the tensor has died
** still finds valid memory. */
typedef struct {
  lua_State *L;
  int ref;      /* the Lua function, or LUA_NOREF once removed */
  int self_ref; /* this userdata, held for the tensor's hook list */
} lua_hook;

static lg_status call_lua_hook(void *ud, lg_tensor *grad, lg_tensor **replace) {
  lua_hook *h = ud;
  lua_State *L = h->L;
  if (h->ref == LUA_NOREF) return LG_OK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
  lg_lua_pushtensor(L, grad);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lg_status st = lg_error(LG_EVALUE, "hook: %s",
                            lua_tostring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
    lua_pop(L, 1);
    return st;
  }
  if (!lua_isnil(L, -1)) {
    lg_tensor *r = lg_lua_totensor(L, -1);
    if (!r) {
      lg_status st =
          lg_error(LG_EVALUE, "hook: must return nil or a tensor, returned a %s", luaL_typename(L, -1));
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
  h->ref = LUA_NOREF;
  luaL_unref(h->L, LUA_REGISTRYINDEX, h->self_ref); /* Lua frees h once the handle is gone too */
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
  lgL_checktype(L, 2, LUA_TFUNCTION, "fn");
  if (!t->requires_grad)
    return lgL_error(L, "register_hook: the tensor (shape %s) does not require grad", LG_SHAPE(t));
  lua_settop(L, 2);                                 /* extra arguments would move what index 3 names */
  lua_hook *h = lua_newuserdatauv(L, sizeof *h, 0); /* at 3 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  h->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lg_hook hook = {call_lua_hook, free_lua_hook, h, NULL};
  lg_status st = lg_tensor_add_hook(t, &hook);
  if (st != LG_OK) {
    free_lua_hook(h);
    return lgL_check(L, st);
  }
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, hook_remove, 1);
  lua_setfield(L, -2, "remove");
  return 1;
}

static int t_retain_grad(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (!t->requires_grad)
    return lgL_error(L, "retain_grad: the tensor (shape %s) does not require grad", LG_SHAPE(t));
  if (t->grad_fn) t->retains_grad = 1;
  return 0;
}

static int t_grad_fn(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->grad_fn)
    lua_pushstring(L, lg_ops[t->grad_fn->op].name);
  else
    lua_pushnil(L);
  return 1;
}

/* _graph_ops(t): the set {name = count} of the ops recorded in the graph that made t (every node
** reachable from t's grad_fn); the specs use it to see which op-table rows their checks reached. */
static int m_graph_ops(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lua_newtable(L); /* result */
  lua_newtable(L); /* visited nodes */
  lg_node *stack[4096];
  int top = 0;
  if (t->grad_fn) stack[top++] = t->grad_fn;
  while (top > 0) {
    lg_node *n = stack[--top];
    if (lua_rawgetp(L, -1, n) != LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_rawsetp(L, -2, n);
    const char *name = lg_ops[n->op].name;
    lua_getfield(L, -2, name);
    lua_Integer c = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushinteger(L, c + 1);
    lua_setfield(L, -3, name);
    for (int i = 0; i < n->nin; i++)
      if (n->edges[i].fn) {
        if (top == (int)(sizeof stack / sizeof stack[0])) return lgL_error(L, "_graph_ops: graph too wide");
        stack[top++] = n->edges[i].fn;
      }
  }
  lua_pop(L, 1);
  return 1;
}

/* ---- forward mode ---- */

static int m_fw_push(lua_State *L) {
  lg_fw_level_push();
  return 0;
}
static int m_fw_pop(lua_State *L) {
  lg_fw_level_pop();
  return 0;
}

static int t_set_tangent(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_tensor *v = lua_isnoneornil(L, 2) ? NULL : lgL_checktensor(L, 2);
  if (v && (v->ndim != t->ndim || memcmp(v->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim)))
    return lgL_error(L, "jvp: tangent of shape %s for a primal of shape %s", LG_SHAPE(v), LG_SHAPE(t));
  lg_tensor *c = NULL;
  if (v) lgL_check(L, lg_to_dtype(v, t->dtype, &c));
  lg_tensor_release(t->tangent);
  t->tangent = c;
  return 0;
}

static int t_tangent(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  if (t->tangent)
    lg_lua_pushtensor(L, t->tangent);
  else
    lua_pushnil(L);
  return 1;
}

/* ---- flat element access for finite differences ---- */

static int t_get_flat(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lua_Integer i = lgL_checkinteger(L, 2, "index");
  if (i < 1 || i > lg_numel(t))
    return lgL_error(L, "_get_flat: index %lld out of range 1..%lld", (long long)i, (long long)lg_numel(t));
  lua_pushnumber(L, lg_get_flat(t, i - 1));
  return 1;
}

static int t_set_flat(lua_State *L) {
  lg_tensor *t = lgL_checktensor(L, 1);
  lua_Integer i = lgL_checkinteger(L, 2, "index");
  if (i < 1 || i > lg_numel(t))
    return lgL_error(L, "_set_flat: index %lld out of range 1..%lld", (long long)i, (long long)lg_numel(t));
  lg_set_flat(t, i - 1, lgL_checknumber(L, 3, "value"));
  return 0;
}

static const luaL_Reg tensor_methods[] = {
    {"backward", t_backward},  {"register_hook", t_register_hook}, {"retain_grad", t_retain_grad},
    {"grad_fn", t_grad_fn},    {"_set_tangent", t_set_tangent},    {"_tangent", t_tangent},
    {"_get_flat", t_get_flat}, {"_set_flat", t_set_flat},          {NULL, NULL}};

static const luaL_Reg module_functions[] = {{"_grad", m_grad},
                                            {"_graph_ops", m_graph_ops},
                                            {"set_grad_enabled", m_set_grad_enabled},
                                            {"is_grad_enabled", m_is_grad_enabled},
                                            {"_detect_anomaly", m_detect_anomaly},
                                            {"_fw_push", m_fw_push},
                                            {"_fw_pop", m_fw_pop},
                                            {"_queue_callback", m_queue_callback},
                                            {NULL, NULL}};

/* Adds the autograd methods to the methods table at -2 and functions to the module at -1. */
void lgL_open_autograd(lua_State *L) {
  lgL_setfuncs(L, module_functions);
  lua_pushvalue(L, -2);
  lgL_setfuncs(L, tensor_methods);
  lua_pop(L, 1);
}
