/*
** lg_lua.h: the Lua binding of luagrad, for programs that embed Lua.
**
**   lua_State *L = luaL_newstate();
**   luaL_openlibs(L);
**   lg_preload(L);               -- the one call: now `require "luagrad"` works
**
** lg_preload registers luagrad's C core (`luagrad.core`) and its Lua library (lua/, embedded in
** the binary) in package.preload. It sets no globals. A stock lua5.4 instead loads the core
** through luaopen_luagrad_core from build/luagrad/core.so (or the installed copy).
*/
#ifndef LG_LUA_H
#define LG_LUA_H

#include <lua.h>

#include "luagrad.h"

int luaopen_luagrad_core(lua_State *L);
void lg_preload(lua_State *L);

/* The engine tensor behind the value at idx, or NULL if it is not a luagrad tensor. The tensor
** stays owned by Lua: lg_tensor_retain it to keep it past the value's lifetime. */
lg_tensor *lg_lua_totensor(lua_State *L, int idx);
/* Pushes t as a Lua tensor value; the value takes its own reference. */
void lg_lua_pushtensor(lua_State *L, lg_tensor *t);

#endif
