/*
** host.c: a C program that embeds Lua and uses luagrad from it.
**
** The one call is lg_preload(L): after it, `require "luagrad"` works in this lua_State with no
** LUA_PATH or LUA_CPATH, because the C core and the Lua library are linked into the program.
** The snippet below builds a tensor in Lua, returns a result, and C reads the result back
** through lg_lua_totensor and the engine's header (luagrad.h).
**
**   a = [[1, 2], [3, 4]]    a @ a = [[7, 10], [15, 22]]    sum = 54
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lg_lua.h"

static const char *snippet = "local lg = require 'luagrad'\n"
                             "local a = lg.tensor({{1, 2}, {3, 4}})\n"
                             "return a:matmul(a):sum()\n";

int main(void) {
  const double expected = 54.0;
  lua_State *L = luaL_newstate();
  lg_tensor *t;
  double value;
  int ok;
  if (L == NULL) {
    fprintf(stderr, "host: cannot create a Lua state\n");
    return EXIT_FAILURE;
  }
  luaL_openlibs(L);
  lg_preload(L); /* the one call: require "luagrad" now works */

  if (luaL_loadbuffer(L, snippet, strlen(snippet), "=snippet") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return EXIT_FAILURE;
  }

  t = lg_lua_totensor(L, -1); /* owned by Lua: valid while the value is on the stack */
  if (t == NULL || lg_numel(t) != 1) {
    fprintf(stderr, "host: the snippet did not return a one-element tensor\n");
    lua_close(L);
    return EXIT_FAILURE;
  }
  value = lg_get_flat(t, 0);
  printf("sum of a @ a = %g\n", value);
  ok = fabs(value - expected) < 1e-9;
  if (!ok) fprintf(stderr, "host: expected %g, got %g\n", expected, value);

  lua_close(L);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
