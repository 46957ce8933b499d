/*
** lua_nn.c: the fused layers for lua/luagrad/nn: batch_norm, layer_norm, cross_entropy.
** The nn modules (written in Lua) check their own arguments and call these.
*/
#include "lua_binding.h"

#include <string.h>

/* core._batch_norm(x, weight|nil, bias|nil, eps) -> y, batch mean, batch variance (biased) */
static int m_batch_norm(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  lg_tensor *w = lua_isnil(L, 2) ? NULL : lgL_checktensor(L, 2);
  lg_tensor *b = lua_isnil(L, 3) ? NULL : lgL_checktensor(L, 3);
  if (!w != !b) return lgL_error(L, "batch_norm: give both weight and bias, or neither");
  lg_args a = {.in = {x, w, b}, .nin = w ? 3 : 1, .dim = -1, .s = {luaL_optnumber(L, 4, 1e-5)}};
  lg_tensor **y = lgL_newslot(L), **mean = lgL_newslot(L), **var = lgL_newslot(L);
  lg_tensor *o[3];
  lgL_check(L, lg_apply(LG_OP_BATCH_NORM, &a, o));
  *y = o[0], *mean = o[1], *var = o[2];
  return 3;
}

/* core._layer_norm(x, D, weight|nil, bias|nil, eps) -> y: normalizes over the last D values */
static int m_layer_norm(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1);
  lua_Integer D = luaL_checkinteger(L, 2);
  lg_tensor *w = lua_isnil(L, 3) ? NULL : lgL_checktensor(L, 3);
  lg_tensor *b = lua_isnil(L, 4) ? NULL : lgL_checktensor(L, 4);
  if (!w != !b) return lgL_error(L, "layer_norm: give both weight and bias, or neither");
  lg_args a = {.in = {x, w, b}, .nin = w ? 3 : 1, .dim = -1, .len = D, .s = {luaL_optnumber(L, 5, 1e-5)}};
  lg_tensor **y = lgL_newslot(L);
  lg_tensor *o[3];
  lgL_check(L, lg_apply(LG_OP_LAYER_NORM, &a, o));
  *y = o[0];
  lg_tensor_release(o[1]);
  lg_tensor_release(o[2]);
  return 1;
}

/* core._cross_entropy(logits, labels, label_smoothing, reduction) -> loss
** reduction: "mean" | "sum" | "none"; labels: 1-based int64 */
static int m_cross_entropy(lua_State *L) {
  lg_tensor *x = lgL_checktensor(L, 1), *t = lgL_checktensor(L, 2);
  double e = luaL_optnumber(L, 3, 0);
  const char *red = luaL_optstring(L, 4, "mean");
  int mode = strcmp(red, "none") == 0 ? 0 : strcmp(red, "mean") == 0 ? 1 : strcmp(red, "sum") == 0 ? 2 : -1;
  if (mode < 0) return lgL_error(L, "cross_entropy: reduction must be \"mean\", \"sum\" or \"none\", got \"%s\"", red);
  lg_args a = {.in = {x, t}, .nin = 2, .dim = -1, .s = {e}, .mode = mode};
  lg_tensor **loss = lgL_newslot(L);
  lg_tensor *o[2];
  lgL_check(L, lg_apply(LG_OP_CROSS_ENTROPY, &a, o));
  *loss = o[0];
  lg_tensor_release(o[1]);
  return 1;
}

static const luaL_Reg functions[] = {
  {"_batch_norm", m_batch_norm}, {"_layer_norm", m_layer_norm}, {"_cross_entropy", m_cross_entropy},
  {NULL, NULL}};

/* Adds the functions to the module table on top of the stack. */
void lgL_open_nn(lua_State *L) { luaL_setfuncs(L, functions, 0); }
