/*
** lua_binding.h: helpers shared by the binding's files (lua_tensor.c, lua_module.c).
** Only the binding touches lua_State; it turns engine statuses into Lua errors.
*/
#ifndef LG_LUA_BINDING_H
#define LG_LUA_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "luagrad.h"
#include "lg_lua.h"

#define LG_TENSOR_MT "luagrad.Tensor"

/* luaL_error with printf formats (%lld, %g, ...): lua_pushfstring knows only a few. */
int lgL_error(lua_State *L, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* What one lua_State has of its own (lua_state.c): its engine context and its GC pacing. */
typedef struct lgL_state {
  lg_context *ctx;
  uint64_t id; /* unique for the process's life: a state freed and another made at its address differ */
  size_t gc_last_total, gc_threshold;
  const void *tensor_mt; /* the address of this state's tensor metatable (a quick identity test) */
} lgL_state;
extern _Thread_local lgL_state *lgL_cur; /* the state that last called into luagrad on this thread */
extern _Thread_local uint64_t lgL_cur_id;
/* Makes s's context the thread's current one (cheap when it already is). */
static inline void lgL_enter(lgL_state *s) {
  if (lgL_cur_id != s->id) {
    lgL_cur = s;
    lgL_cur_id = s->id;
    lg_context_use(s->ctx);
  }
}
lgL_state *lgL_state_of(lua_State *L); /* made on first use */
void lgL_enter_L(lua_State *L);        /* lgL_enter(lgL_state_of(L)), for entries without upvalues */

/* Registers l's functions into the table on top, each a closure that enters the state and has
** the function's name as its first upvalue, so argument errors name the function however the
** caller reached it (through pcall, a local). */
void lgL_setfuncs(lua_State *L, const luaL_Reg *l);
/* Raises the engine's message if st is an error; where it names only "tensor" (an allocation), it
** names the running function instead (lgL_name; not a private one, "_name"). */
int lgL_check(lua_State *L, lg_status st);
/* The same, also naming the running function where the engine names `engine`, the op it ran for
** it: t:add_(u) fails as "add_: shapes ...", not "add: ...", and t:view_as(u) as "view_as: ...". */
int lgL_checkas(lua_State *L, lg_status st, const char *engine);
/* The same, naming op where the engine's message names only "tensor" (allocation). */
int lgL_checkop(lua_State *L, lg_status st, const char *op);
/* Argument checks that name the running function: its public name is the first upvalue of every
** C function luagrad registers (lgL_setfuncs, the op closures of lua_ops.c), so the message reads
** the same however the caller reached it (a method call, pcall, a local). Each raises
** "<name>: argument #k (<what>) must be <expected>, got <type>" (a method's self is not counted;
** what may be NULL). On success they cost what luaL_check* cost: no allocation, no lookup. */
int lgL_argerror(lua_State *L, int idx, const char *what, const char *expected);
lua_Number lgL_checknumber(lua_State *L, int idx, const char *what);
lua_Number lgL_optnumber(lua_State *L, int idx, const char *what, lua_Number def);
lua_Integer lgL_checkinteger(lua_State *L, int idx, const char *what);
lua_Integer lgL_optinteger(lua_State *L, int idx, const char *what, lua_Integer def);
const char *lgL_checklstring(lua_State *L, int idx, const char *what,
                             size_t *len); /* a string (not a number) */
#define lgL_checkstring(L, idx, what) lgL_checklstring(L, idx, what, NULL)
void lgL_checktype(lua_State *L, int idx, int type, const char *what);
/* The running C function's public name (its first upvalue), or fallback where it has none. */
const char *lgL_name(lua_State *L, const char *fallback);
/* luaL_typename, but "tensor" for a tensor. */
const char *lgL_typename(lua_State *L, int idx);
/* The tensor at idx (raises a type error naming the argument otherwise). */
lg_tensor *lgL_checktensor(lua_State *L, int idx);
/* A new, empty tensor value on the stack; fill *slot and it owns the tensor. Allocate it before
** doing the work, so an error midway leaks nothing. */
lg_tensor **lgL_newslot(lua_State *L);
/* Pushes t, taking over the caller's reference. */
void lgL_pushnew(lua_State *L, lg_tensor *t);
/* A tensor from a tensor or a number argument (numbers take dtype `like`); *owned is set when
** the result is a new reference the caller must release. */
lg_tensor *lgL_totensor(lua_State *L, int idx, lg_dtype like, int *owned);
/* Parses a shape: one table, or integers from idx on. Returns the index after the shape. */
int lgL_checkshape(lua_State *L, int idx, const char *op, int64_t *shape, int *ndim);
/* A list of dimensions (one table, or integers from idx on), each 1-based or negative from the
** end, into dims[] 0-based; returns how many. */
int lgL_checkdims(lua_State *L, int idx, const char *op, const lg_tensor *t, int *dims);
/* 1-based (negative from the end) dimension -> 0-based; ndim is the valid range's size. */
int lgL_checkdim(lua_State *L, int idx, int ndim, const char *op, const lg_tensor *t);
/* dtype from a name or nil (default). */
lg_dtype lgL_checkdtype(lua_State *L, int idx, lg_dtype def);
/* The one check of an options table at idx: every key must be among known (NULL-ended), as
** PyTorch refuses an unknown keyword argument; raises "op: unknown option 'k' (accepted: a, b)",
** the message of lua/luagrad/errors.lua's errors.options. Returns whether idx holds a table. */
int lgL_checkoptions(lua_State *L, int idx, const char *op, const char *const *known);
/* Options table at idx (or none): dtype and requires_grad. */
void lgL_creation_opts(lua_State *L, int idx, lg_dtype *dt, int *requires_grad);
/* Pushes a number read from a tensor: whole floats below 2^53 come back as Lua integers. */
void lgL_pushnumber(lua_State *L, double v, lg_dtype dt);
/* Tells the collector about tensor memory allocated since the last call. */
void lgL_gcpace(lua_State *L);

/* The calling forms of op-table rows (lua_tensor.c), used by lua_ops.c's closures and by
** methods bound by hand: t:op(), a op b (tensors or numbers), t:op_(u) in place, reductions. */
int lgL_unary(lua_State *L, lg_opcode op);
int lgL_binary(lua_State *L, lg_opcode op);
int lgL_inplace_binary(lua_State *L, lg_opcode op);
int lgL_reduce(lua_State *L, lg_opcode op);

void lgL_open_tensor(lua_State *L);   /* pushes the methods table; sets up the metatable */
void lgL_open_ops(lua_State *L);      /* methods table at -2, module at -1 */
void lgL_open_autograd(lua_State *L); /* methods table at -2, module at -1 */
void lgL_open_nn(lua_State *L);       /* module on top */
void lgL_open_optim(lua_State *L);    /* module on top */
void lgL_open_io(lua_State *L);       /* module on top */

#endif
