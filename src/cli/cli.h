/*
** cli.h: what the luagrad executable's two files (main.c, repl.c) share.
*/
#ifndef LG_CLI_H
#define LG_CLI_H

#include <lua.h>

/* Calls the function on the stack with narg arguments under a traceback handler, as lua.c's
** docall; reports nothing. */
int lg_cli_docall(lua_State *L, int narg, int nres);
/* Sets the global lg = require "luagrad" unless lg is set already; returns the status, leaving
** the error message on the stack when it is not LUA_OK. */
int lg_cli_global_lg(lua_State *L);
/* Registers the reference pages compiled into the executable as package.preload's
** "luagrad.reference_pages", which luagrad.help (the REPL's help(x)) reads. */
void lg_cli_preload_reference(lua_State *L);
/* The interactive loop (readline, history, completion, pretty printing). */
void lg_repl_run(lua_State *L);

#endif
