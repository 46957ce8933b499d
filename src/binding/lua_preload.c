/*
** lua_preload.c: lg_preload(L), the one call that makes `require "luagrad"` work in a C host.
**
** It registers in package.preload
**   - "luagrad.core" -> luaopen_luagrad_core (the binding, linked into this library), and
**   - one loader per Lua file under lua/, which tools/embed_lua.c compiled to bytecode (with its
**     debug information) into the generated lua_sources.c at build time ("luagrad",
**     "luagrad.nn", "luagrad.nn.linear"...).
**
** A loader loads its file's bytecode, compiled with the chunk name "@lua/<path>", so error
** messages and tracebacks name the source file and line, and calls the chunk with the module
** name and that path as Lua's own file searcher does. lg_preload sets no globals, and works before or after
** luaL_openlibs (package.preload is the registry's _PRELOAD table either way).
*/
#include <lauxlib.h>
#include <lua.h>

#include "lg_lua.h"

#include "lua_sources.h"

/* package.preload loader: require calls it as loader(modname, ":preload:"). Upvalue 1 is the
** light userdata of the lg_lua_source row. Returns what the chunk returns. */
static int load_embedded(lua_State *L) {
  const struct lg_lua_source *src = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, (const char *)src->bytes, src->len, src->chunkname, "b") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from embedded file '%s':\n\t%s", src->module,
                      src->chunkname + 1, lua_tostring(L, -1));
  lua_pushstring(L, src->module);        /* ... = modname, */
  lua_pushstring(L, src->chunkname + 1); /*       "lua/luagrad/nn/linear.lua" */
  lua_call(L, 2, 1);
  return 1;
}

void lg_preload(lua_State *L) {
  const struct lg_lua_source *src;
  luaL_checkstack(L, 3, "lg_preload");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_luagrad_core);
  lua_setfield(L, -2, "luagrad.core");
  for (src = lg_lua_sources; src->module != NULL; src++) {
    lua_pushlightuserdata(L, (void *)src);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, src->module);
  }
  lua_pop(L, 1);
}
