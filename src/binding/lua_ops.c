/*
** lua_ops.c: the engine's op table as Lua functions.
**
** Every row of lg_ops[] whose `call` names a calling form becomes a tensor method and an lg.*
** function of the row's name, registered here in one loop: one closure per row, the opcode as
** its upvalue (as Lua's own libraries share C functions through luaL_setfuncs upvalues). A new
** unary op therefore needs no edit here. The forms:
**
**   LG_CALL_UNARY       t:exp()                      lg.exp(t)
**   LG_CALL_ACTIVATION  t:elu(1.5), t:elu({alpha = 1.5}), t:gelu({approximate = "tanh"})
**   LG_CALL_BINARY      t:add(u), lg.add(2, t)       tensors or numbers; also name_ when the
**                                                    row has LG_F_INPLACE
**   LG_CALL_REDUCE      t:var(), t:var(2, true), t:var({dim = 2, keepdim = true, unbiased = false})
**   LG_CALL_DIM         t:softmax(2), t:softmax({dim = 2})
**
** lg.ops lists the rows (name, inputs, outputs, differentiable, forward_mode, call) for specs
** and tools: the autograd spec walks it and fails for a differentiable op it does not check.
*/
#include "lua_binding.h"

#include <string.h>

/* each closure's upvalues: 1 its public name (for errors, as lgL_setfuncs gives every function),
** 2 the opcode */
static lg_opcode upvalue_op(lua_State *L) { return (lg_opcode)lua_tointeger(L, lua_upvalueindex(2)); }
/* 3 the state, entered first (lua_state.c) */
static lg_opcode enter(lua_State *L) {
  lgL_enter(lua_touserdata(L, lua_upvalueindex(3)));
  return upvalue_op(L);
}

static int call_unary(lua_State *L) { return lgL_unary(L, enter(L)); }
static int call_binary(lua_State *L) { return lgL_binary(L, enter(L)); }
static int call_inplace(lua_State *L) { return lgL_inplace_binary(L, enter(L)); }
static int call_reduce(lua_State *L) { return lgL_reduce(L, enter(L)); }

/* t:name(p1, p2) or t:name({param = v, ...}) with the row's named parameters and mode */
static int call_activation(lua_State *L) {
  const lg_op *op = &lg_ops[enter(L)];
  const lg_params *p = &op->params;
  lg_tensor *t = lgL_checktensor(L, 1);
  lg_args a = {.in = {t}, .nin = 1, .dim = -1, .s = {p->def[0], p->def[1]}};
  if (lua_istable(L, 2)) {
    const char *known[4] = {NULL};
    int nk = 0;
    for (int i = 0; i < 2; i++)
      if (p->name[i]) known[nk++] = p->name[i];
    if (p->mode_key) known[nk++] = p->mode_key;
    lgL_checkoptions(L, 2, op->name, known);
    for (int i = 0; i < 2; i++) {
      if (!p->name[i]) continue;
      if (lua_getfield(L, 2, p->name[i]) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER)
          return lgL_error(L, "%s: option %s must be a number, got %s", op->name, p->name[i],
                           luaL_typename(L, -1));
        a.s[i] = lua_tonumber(L, -1);
      }
      lua_pop(L, 1);
    }
    if (p->mode_key && lua_getfield(L, 2, p->mode_key) != LUA_TNIL) {
      const char *m = lua_tostring(L, -1);
      int found = -1;
      for (int i = 0; i < 3 && p->modes[i] && m; i++)
        if (!strcmp(m, p->modes[i])) found = i;
      if (found < 0)
        return lgL_error(L, "%s: %s must be \"%s\" or \"%s\", got %s", op->name, p->mode_key, p->modes[0],
                         p->modes[1], m ? m : luaL_typename(L, -1));
      a.mode = found;
      lua_pop(L, 1);
    }
  } else if (p->mode_key && lua_type(L, 2) == LUA_TSTRING) { /* t:gelu("tanh") */
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, p->mode_key);
    lua_replace(L, 2);
    return call_activation(L);
  } else {
    for (int i = 0; i < 2; i++) { /* positional numbers */
      if (lua_isnoneornil(L, 2 + i)) continue;
      if (!p->name[i] || lua_type(L, 2 + i) != LUA_TNUMBER)
        return lgL_error(L, "%s: argument #%d must be %s, got %s", op->name, 1 + i,
                         p->name[i] ? "a number" : "an options table", luaL_typename(L, 2 + i));
      a.s[i] = lua_tonumber(L, 2 + i);
    }
  }
  lg_tensor **slot = lgL_newslot(L);
  lgL_check(L, lg_apply(upvalue_op(L), &a, slot));
  return 1;
}

/* t:name(dim) or t:name({dim = d}): the dimension is required */
static int call_dim(lua_State *L) {
  lg_opcode code = enter(L);
  const char *name = lg_ops[code].name;
  lg_tensor *t = lgL_checktensor(L, 1);
  int dim;
  if (lua_istable(L, 2)) {
    static const char *const known[] = {"dim", NULL};
    lgL_checkoptions(L, 2, name, known);
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
  lgL_check(L, lg_apply(code, &a, slot));
  return 1;
}

static const lua_CFunction call_forms[] = {
    [LG_CALL_UNARY] = call_unary,   [LG_CALL_ACTIVATION] = call_activation,
    [LG_CALL_BINARY] = call_binary, [LG_CALL_REDUCE] = call_reduce,
    [LG_CALL_DIM] = call_dim,
};
static const char *const call_names[] = {
    [LG_CALL_NONE] = "none",     [LG_CALL_UNARY] = "unary",   [LG_CALL_ACTIVATION] = "activation",
    [LG_CALL_BINARY] = "binary", [LG_CALL_REDUCE] = "reduce", [LG_CALL_DIM] = "dim",
};

/* sets methods[name] and module[name] to the closure on top (popped); methods at mi, module at mo */
static void set_both(lua_State *L, int mi, int mo, const char *name) {
  lua_pushvalue(L, -1);
  lua_setfield(L, mi, name);
  lua_setfield(L, mo, name);
}

/* Operators are the methods of the same op. */
static const char *const metamethods[][2] = {
    {"__add", "add"}, {"__sub", "sub"},           {"__mul", "mul"},       {"__div", "div"},
    {"__pow", "pow"}, {"__idiv", "floor_divide"}, {"__mod", "remainder"}, {"__unm", "neg"},
};

/* Registers the rows into the methods table at -2 and the module at -1; sets the operators in the
** tensor metatable and lg.ops in the module. */
void lgL_open_ops(lua_State *L) {
  int mo = lua_gettop(L), mi = mo - 1;
  lgL_state *state = lgL_state_of(L);
  lua_createtable(L, LG_NUM_OPS, 0); /* lg.ops */
  for (int code = 0; code < LG_NUM_OPS; code++) {
    const lg_op *op = &lg_ops[code];
    if (op->call != LG_CALL_NONE) {
      lua_pushstring(L, op->name);
      lua_pushinteger(L, code);
      lua_pushlightuserdata(L, state);
      lua_pushcclosure(L, call_forms[op->call], 3);
      set_both(L, mi, mo, op->name);
      if (op->flags & LG_F_INPLACE) {
        char name[64];
        snprintf(name, sizeof name, "%s_", op->name);
        lua_pushstring(L, name);
        lua_pushinteger(L, code);
        lua_pushlightuserdata(L, state);
        lua_pushcclosure(L, call_inplace, 3);
        lua_setfield(L, mi, name);
      }
    }
    lua_createtable(L, 0, 6);
    lua_pushstring(L, op->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, op->arity);
    lua_setfield(L, -2, "inputs");
    lua_pushinteger(L, op->nout);
    lua_setfield(L, -2, "outputs");
    lua_pushboolean(L, op->backward != NULL);
    lua_setfield(L, -2, "differentiable");
    lua_pushboolean(L, op->jvp != NULL);
    lua_setfield(L, -2, "forward_mode");
    lua_pushstring(L, call_names[op->call]);
    lua_setfield(L, -2, "call");
    lua_rawseti(L, -2, code + 1);
  }
  lua_setfield(L, mo, "ops");
  luaL_getmetatable(L, LG_TENSOR_MT);
  for (size_t i = 0; i < sizeof metamethods / sizeof metamethods[0]; i++) {
    lua_getfield(L, mi, metamethods[i][1]);
    lua_setfield(L, -2, metamethods[i][0]);
  }
  lua_pop(L, 1);
}
