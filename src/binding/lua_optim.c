/*
** lua_optim.c: the optimizer updates for lua/luagrad/optim (the Lua classes keep the state and
** the parameter groups; each call here is one fused C pass over one parameter, or, for SGD and
** Adam, over every parameter of a group in one call: the loop over the group, the state-table
** bookkeeping and the kernels all run here, which takes the per-parameter cost of a step from
** about 0.6 us to 0.1 us for small models).
*/
#include "lua_binding.h"

static lg_tensor *opt_tensor(lua_State *L, int idx) {
  return lua_isnil(L, idx) ? NULL : lgL_checktensor(L, idx);
}

/* The gradient (nil: the parameter's own .grad, read here without making a Lua value for it),
** contiguous and of the parameter's dtype; *tmp is a copy to release, if one was made. */
static lg_tensor *grad_arg(lua_State *L, int idx, lg_tensor *p, lg_tensor **tmp) {
  lg_tensor *g = lua_isnil(L, idx) ? p->grad : lgL_checktensor(L, idx);
  *tmp = NULL;
  if (!g) return (lgL_error(L, "optimizer: the parameter %s has no gradient", LG_SHAPE(p)), NULL);
  if (lg_is_contiguous(g) && g->dtype == p->dtype) return g;
  lgL_check(L, lg_copy_as(g, p->dtype, tmp));
  lgL_pushnew(L, *tmp); /* owned by Lua from here, so an error below leaks nothing */
  return *tmp;
}

/* _rmsprop_step(p, g, square_avg, grad_avg|nil, buf|nil, lr, alpha, eps, weight_decay, momentum, maximize) */
static int m_rmsprop_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_rmsprop_opts o = {lgL_checknumber(L, 6, NULL), lgL_checknumber(L, 7, NULL),  lgL_checknumber(L, 8, NULL),
                       lgL_checknumber(L, 9, NULL), lgL_checknumber(L, 10, NULL), lua_toboolean(L, 11)};
  lgL_check(L, lg_rmsprop_step(p, g, lgL_checktensor(L, 3), opt_tensor(L, 4), opt_tensor(L, 5), &o));
  return 0;
}

/* _adagrad_step(p, g, sum, step, lr, lr_decay, weight_decay, eps, maximize) */
static int m_adagrad_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_adagrad_opts o = {lgL_checknumber(L, 5, NULL), lgL_checknumber(L, 6, NULL), lgL_checknumber(L, 7, NULL),
                       lgL_checknumber(L, 8, NULL), lua_toboolean(L, 9)};
  lgL_check(L, lg_adagrad_step(p, g, lgL_checktensor(L, 3), lgL_checkinteger(L, 4, NULL), &o));
  return 0;
}

/* _adamax_step(p, g, exp_avg, exp_inf, step, lr, beta1, beta2, eps, weight_decay, maximize) */
static int m_adamax_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_adamax_opts o = {lgL_checknumber(L, 6, NULL), lgL_checknumber(L, 7, NULL),  lgL_checknumber(L, 8, NULL),
                      lgL_checknumber(L, 9, NULL), lgL_checknumber(L, 10, NULL), lua_toboolean(L, 11)};
  lgL_check(L, lg_adamax_step(p, g, lgL_checktensor(L, 3), lgL_checktensor(L, 4),
                              lgL_checkinteger(L, 5, NULL), &o));
  return 0;
}

/* _nadam_step(p, g, exp_avg, exp_avg_sq, step, mu_product, lr, beta1, beta2, eps, weight_decay,
** momentum_decay) -> the new mu_product */
static int m_nadam_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  double mu_product = lgL_checknumber(L, 6, NULL);
  lg_nadam_opts o = {lgL_checknumber(L, 7, NULL),  lgL_checknumber(L, 8, NULL),
                     lgL_checknumber(L, 9, NULL),  lgL_checknumber(L, 10, NULL),
                     lgL_checknumber(L, 11, NULL), lgL_checknumber(L, 12, NULL)};
  lgL_check(L, lg_nadam_step(p, g, lgL_checktensor(L, 3), lgL_checktensor(L, 4), lgL_checkinteger(L, 5, NULL),
                             &mu_product, &o));
  lua_pushnumber(L, mu_product);
  return 1;
}

/* _radam_step(p, g, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay) */
static int m_radam_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_radam_opts o = {lgL_checknumber(L, 6, NULL), lgL_checknumber(L, 7, NULL), lgL_checknumber(L, 8, NULL),
                     lgL_checknumber(L, 9, NULL), lgL_checknumber(L, 10, NULL)};
  lgL_check(
      L, lg_radam_step(p, g, lgL_checktensor(L, 3), lgL_checktensor(L, 4), lgL_checkinteger(L, 5, NULL), &o));
  return 0;
}

/* _adadelta_step(p, g, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize) */
static int m_adadelta_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_adadelta_opts o = {lgL_checknumber(L, 5, NULL), lgL_checknumber(L, 6, NULL), lgL_checknumber(L, 7, NULL),
                        lgL_checknumber(L, 8, NULL), lua_toboolean(L, 9)};
  lgL_check(L, lg_adadelta_step(p, g, lgL_checktensor(L, 3), lgL_checktensor(L, 4), &o));
  return 0;
}

/* ---- group steps ----
** _sgd_group / _adam_group(params, state, options...) update every tensor of the list params
** that has a gradient, with its state table state[p] (made when missing), exactly as the Lua
** loop with _sgd_step / _adam_step would: the same state keys (momentum_buffer; step, exp_avg,
** exp_avg_sq, max_exp_avg_sq), created as zeros of p's shape and dtype. */

/* The state table of the parameter at the top of the stack, pushed (made and stored if missing). */
static void push_state(lua_State *L, int state) {
  lua_pushvalue(L, -1);
  if (lua_rawget(L, state) != LUA_TNIL) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -2); /* p */
  lua_pushvalue(L, -2); /* the new table */
  lua_rawset(L, state);
}

/* How state_tensor treats a missing entry */
enum { MAKE_IF_MISSING, MUST_EXIST, MAKE_FRESH };

/* st[key] (st at index st) as a tensor. A missing one is made as zeros like p and stored
** (MAKE_IF_MISSING), or is an error (MUST_EXIST: a damaged state); MAKE_FRESH always makes it.
** *made tells whether it was made here. */
static lg_tensor *state_tensor(lua_State *L, int st, const char *key, lg_tensor *p, int mode, int *made) {
  lg_tensor *t = NULL;
  if (mode != MAKE_FRESH) {
    lua_getfield(L, st, key);
    if (!lua_isnil(L, -1) && !(t = lg_lua_totensor(L, -1)))
      lgL_error(L, "optimizer: state entry '%s' of a parameter %s is a %s, not a tensor", key, LG_SHAPE(p),
                luaL_typename(L, -1));
    lua_pop(L, 1);
    if (!t && mode == MUST_EXIST)
      lgL_error(L, "optimizer: the state of a parameter %s has a step but no '%s' (a damaged state dict?)",
                LG_SHAPE(p), key);
  }
  if (made) *made = t == NULL;
  if (t) return t;
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_tensor_zeros(p->shape, p->ndim, p->dtype, slot));
  t = *slot;
  lua_setfield(L, st, key); /* the table now owns it */
  return t;
}

/* params[i] of the list at index 1, pushed; an error unless it is a tensor */
static lg_tensor *push_param(lua_State *L, lua_Integer i) {
  lua_rawgeti(L, 1, i);
  lg_tensor *p = lg_lua_totensor(L, -1);
  if (!p) lgL_error(L, "optimizer: params[%d] is a %s, not a tensor", (int)i, luaL_typename(L, -1));
  return p;
}

/* Calls visit for each parameter of the list at index 1 that has a gradient, with the parameter
** and its state table on the stack top (state tables in the table at index 2). */
static void each_param(lua_State *L,
                       void (*visit)(lua_State *L, lg_tensor *p, lg_tensor *g, int st, void *ud), void *ud) {
  lgL_checktype(L, 1, LUA_TTABLE, NULL);
  lgL_checktype(L, 2, LUA_TTABLE, NULL);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lg_tensor *p = push_param(L, i);
    if (p->grad) {
      int top = lua_gettop(L);
      push_state(L, 2);
      lg_tensor *tmp, *g;
      lua_pushnil(L);
      g = grad_arg(L, lua_gettop(L), p, &tmp); /* a converted copy stays on the stack until settop */
      visit(L, p, g, top + 1, ud);
      lua_settop(L, top);
    }
    lua_pop(L, 1);
  }
}

static void sgd_visit(lua_State *L, lg_tensor *p, lg_tensor *g, int st, void *ud) {
  const lg_sgd_opts *o = ud;
  lg_tensor *buf = NULL;
  int first = 0;
  if (o->momentum != 0) buf = state_tensor(L, st, "momentum_buffer", p, MAKE_IF_MISSING, &first);
  lgL_check(L, lg_sgd_step(p, g, buf, first, o));
}

/* _sgd_group(params, state, lr, momentum, dampening, weight_decay, nesterov, maximize) */
static int m_sgd_group(lua_State *L) {
  lg_sgd_opts o = {lgL_checknumber(L, 3, NULL), lgL_checknumber(L, 4, NULL), lgL_checknumber(L, 5, NULL),
                   lgL_checknumber(L, 6, NULL), lua_toboolean(L, 7),         lua_toboolean(L, 8)};
  each_param(L, sgd_visit, &o);
  return 0;
}

typedef struct {
  lg_adam_opts o;
  int amsgrad;
} adam_group;

static void adam_visit(lua_State *L, lg_tensor *p, lg_tensor *g, int st, void *ud) {
  const adam_group *a = ud;
  lua_getfield(L, st, "step");
  int isnum;
  lua_Integer step = lua_tointegerx(L, -1, &isnum);
  if (!isnum && !lua_isnil(L, -1))
    lgL_error(L, "optimizer: state step must be an integer, got %s", luaL_typename(L, -1));
  lua_pop(L, 1);
  if (isnum && (step < 0 || step == LUA_MAXINTEGER))
    lgL_error(L, "optimizer: state step %lld is out of range", (long long)step);
  /* the first step makes both moments; later ones need them (max_exp_avg_sq may start late:
  ** amsgrad switched on between steps) */
  int mode = isnum ? MUST_EXIST : MAKE_FRESH;
  lg_tensor *m = state_tensor(L, st, "exp_avg", p, mode, NULL);
  lg_tensor *v = state_tensor(L, st, "exp_avg_sq", p, mode, NULL);
  lg_tensor *vmax = a->amsgrad
                        ? state_tensor(L, st, "max_exp_avg_sq", p, isnum ? MAKE_IF_MISSING : MAKE_FRESH, NULL)
                        : NULL;
  step = (isnum ? step : 0) + 1;
  lua_pushinteger(L, step);
  lua_setfield(L, st, "step");
  lgL_check(L, lg_adam_step(p, g, m, v, vmax, step, &a->o));
}

/* _adam_group(params, state, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled) */
static int m_adam_group(lua_State *L) {
  adam_group a = {{lgL_checknumber(L, 3, NULL), lgL_checknumber(L, 4, NULL), lgL_checknumber(L, 5, NULL),
                   lgL_checknumber(L, 6, NULL), lgL_checknumber(L, 7, NULL), lua_toboolean(L, 9),
                   lua_toboolean(L, 10)},
                  lua_toboolean(L, 8)};
  each_param(L, adam_visit, &a);
  return 0;
}

/* _clear_grads(params): p.grad = nil for every tensor of the list (zero_grad's default) */
static int m_clear_grads(lua_State *L) {
  lgL_checktype(L, 1, LUA_TTABLE, NULL);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lg_tensor *p = push_param(L, i);
    lg_tensor_release(p->grad);
    p->grad = NULL;
    lua_pop(L, 1);
  }
  return 0;
}

/* p:_has_grad(): whether p.grad is set, without making a Lua value for it */
static int t_has_grad(lua_State *L) {
  lua_pushboolean(L, lgL_checktensor(L, 1)->grad != NULL);
  return 1;
}

static const luaL_Reg functions[] = {{"_has_grad", t_has_grad},
                                     {"_clear_grads", m_clear_grads},
                                     {"_sgd_group", m_sgd_group},
                                     {"_adam_group", m_adam_group},
                                     {"_rmsprop_step", m_rmsprop_step},
                                     {"_adagrad_step", m_adagrad_step},
                                     {"_adamax_step", m_adamax_step},
                                     {"_nadam_step", m_nadam_step},
                                     {"_radam_step", m_radam_step},
                                     {"_adadelta_step", m_adadelta_step},
                                     {NULL, NULL}};

/* Adds the functions to the module table on top of the stack. */
void lgL_open_optim(lua_State *L) { lgL_setfuncs(L, functions); }
