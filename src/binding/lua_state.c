/*
** lua_state.c: what each lua_State has of its own.
**
** Every lua_State that loads luagrad gets an engine context (grad mode, forward-mode level,
** anomaly detection, the default dtype, the random generator: lg_context in luagrad.h) and its
** own pacing of the garbage collector. Whenever Lua calls into luagrad, the state's context is
** made the thread's current one (lgL_enter): so two states on one thread, or states on several
** threads, never see each other's settings. Every C function luagrad registers goes through
** lgL_setfuncs, which wraps it in a closure that does this first; the op closures of lua_ops.c
** and the tensor metatable's __index do it themselves.
*/
#include "lua_binding.h"

#include <stdatomic.h>
#include <string.h>

static const char state_key = 0; /* the registry holds the state's lgL_state under &state_key */
static _Atomic uint64_t next_id = 1;

_Thread_local lgL_state *lgL_cur;
_Thread_local uint64_t lgL_cur_id;

static int state_gc(lua_State *L) {
  lgL_state *s = lua_touserdata(L, 1);
  if (lgL_cur_id == s->id) lgL_cur = NULL, lgL_cur_id = 0;
  lg_context_free(s->ctx); /* also stops being this thread's current context */
  s->ctx = NULL;
  return 0;
}

lgL_state *lgL_state_of(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key) == LUA_TUSERDATA) {
    lgL_state *s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
  }
  lua_pop(L, 1);
  lgL_state *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->id = atomic_fetch_add(&next_id, 1);
  s->gc_threshold = 64u << 20;
  if (!(s->ctx = lg_context_new())) return (luaL_error(L, "luagrad: out of memory"), NULL);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
  return s;
}

void lgL_enter_L(lua_State *L) { lgL_enter(lgL_state_of(L)); }

/* The closure lgL_setfuncs makes: upvalues 1 the name (for errors), 2 the state, 3 the entry. */
static int entry(lua_State *L) {
  lgL_enter(lua_touserdata(L, lua_upvalueindex(2)));
  const luaL_Reg *r = lua_touserdata(L, lua_upvalueindex(3));
  return r->func(L);
}

void lgL_setfuncs(lua_State *L, const luaL_Reg *l) {
  lgL_state *s = lgL_state_of(L);
  for (; l->name; l++) {
    lua_pushstring(L, l->name);
    lua_pushlightuserdata(L, s);
    lua_pushlightuserdata(L, (void *)l);
    lua_pushcclosure(L, entry, 3);
    lua_setfield(L, -2, l->name);
  }
}

void lgL_gcpace(lua_State *L) {
  /* The collector does not see tensor memory (it is malloc'd by the engine), so pace it here:
  ** every allocation is reported as a step of that many KB, and when storage in use doubles
  ** since the last full collection, collect. A loop of allocations stays bounded without the
  ** user calling collectgarbage(). The counts are this thread's allocations (the state runs here). */
  lgL_state *s = lgL_cur;
  if (!s) return;
  size_t total = lg_bytes_allocated_total();
  if (total - s->gc_last_total >= (256u << 10)) {
    lua_gc(L, LUA_GCSTEP, (int)((total - s->gc_last_total) >> 10));
    s->gc_last_total = total;
  }
  size_t used = lg_bytes_in_use();
  if (used > s->gc_threshold) {
    lua_gc(L, LUA_GCCOLLECT);
    used = lg_bytes_in_use();
    s->gc_threshold = used * 2 > (64u << 20) ? used * 2 : (64u << 20);
  }
}
