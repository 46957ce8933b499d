/*
** lua_sources.h: the Lua library embedded in the binary. tools/embed_lua.c generates
** lua_sources.c (a table of these rows, ended by a row of NULLs); lua_preload.c reads it.
*/
#ifndef LG_LUA_SOURCES_H
#define LG_LUA_SOURCES_H

#include <stddef.h>

struct lg_lua_source {
  const char *module;    /* "luagrad.nn.linear" */
  const char *chunkname; /* "@lua/luagrad/nn/linear.lua" */
  const unsigned char *bytes;
  size_t len;
};

extern const struct lg_lua_source lg_lua_sources[];

#endif
