/*
** lua_optim.c: the optimizer updates for lua/luagrad/optim (the Lua classes keep the state and
** the parameter groups; each call here is one fused C pass over one parameter).
*/
#include "lua_binding.h"

static lg_tensor *opt_tensor(lua_State *L, int idx) { return lua_isnil(L, idx) ? NULL : lgL_checktensor(L, idx); }

/* The gradient (nil: the parameter's own .grad, read here without making a Lua value for it),
** contiguous and of the parameter's dtype; *tmp is a copy to release, if one was made. */
static lg_tensor *grad_arg(lua_State *L, int idx, lg_tensor *p, lg_tensor **tmp) {
  lg_tensor *g = lua_isnil(L, idx) ? p->grad : lgL_checktensor(L, idx);
  *tmp = NULL;
  if (!g) return (lgL_error(L, "optimizer: the parameter %s has no gradient", SHAPE(p)), NULL);
  if (lg_is_contiguous(g) && g->dtype == p->dtype) return g;
  lgL_check(L, lg_copy_as(g, p->dtype, tmp));
  lgL_pushnew(L, *tmp); /* owned by Lua from here, so an error below leaks nothing */
  return *tmp;
}

/* _sgd_step(p, g, buf|nil, first, lr, momentum, dampening, weight_decay, nesterov, maximize) */
static int m_sgd_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_sgd_opts o = {luaL_checknumber(L, 5), luaL_checknumber(L, 6), luaL_checknumber(L, 7), luaL_checknumber(L, 8),
                   lua_toboolean(L, 9), lua_toboolean(L, 10)};
  lgL_check(L, lg_sgd_step(p, g, opt_tensor(L, 3), lua_toboolean(L, 4), &o));
  return 0;
}

/* _adam_step(p, g, m, v, vmax|nil, step, lr, beta1, beta2, eps, weight_decay, maximize, decoupled) */
static int m_adam_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_adam_opts o = {luaL_checknumber(L, 7), luaL_checknumber(L, 8), luaL_checknumber(L, 9), luaL_checknumber(L, 10),
                    luaL_checknumber(L, 11), lua_toboolean(L, 12), lua_toboolean(L, 13)};
  lgL_check(L, lg_adam_step(p, g, lgL_checktensor(L, 3), lgL_checktensor(L, 4), opt_tensor(L, 5), luaL_checkinteger(L, 6), &o));
  return 0;
}

/* _rmsprop_step(p, g, square_avg, grad_avg|nil, buf|nil, lr, alpha, eps, weight_decay, momentum, maximize) */
static int m_rmsprop_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_rmsprop_opts o = {luaL_checknumber(L, 6), luaL_checknumber(L, 7), luaL_checknumber(L, 8), luaL_checknumber(L, 9),
                       luaL_checknumber(L, 10), lua_toboolean(L, 11)};
  lgL_check(L, lg_rmsprop_step(p, g, lgL_checktensor(L, 3), opt_tensor(L, 4), opt_tensor(L, 5), &o));
  return 0;
}

/* _adagrad_step(p, g, sum, step, lr, lr_decay, weight_decay, eps, maximize) */
static int m_adagrad_step(lua_State *L) {
  lg_tensor *p = lgL_checktensor(L, 1), *tmp, *g = grad_arg(L, 2, p, &tmp);
  lg_adagrad_opts o = {luaL_checknumber(L, 5), luaL_checknumber(L, 6), luaL_checknumber(L, 7), luaL_checknumber(L, 8),
                       lua_toboolean(L, 9)};
  lgL_check(L, lg_adagrad_step(p, g, lgL_checktensor(L, 3), luaL_checkinteger(L, 4), &o));
  return 0;
}

/* p:_has_grad(): whether p.grad is set, without making a Lua value for it */
static int t_has_grad(lua_State *L) {
  lua_pushboolean(L, lgL_checktensor(L, 1)->grad != NULL);
  return 1;
}

static const luaL_Reg functions[] = {
  {"_has_grad", t_has_grad}, {"_sgd_step", m_sgd_step}, {"_adam_step", m_adam_step}, {"_rmsprop_step", m_rmsprop_step},
  {"_adagrad_step", m_adagrad_step}, {NULL, NULL}};

/* Adds the functions to the module table on top of the stack. */
void lgL_open_optim(lua_State *L) { luaL_setfuncs(L, functions, 0); }
