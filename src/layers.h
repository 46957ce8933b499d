/*
** layers.h: the direction of includes between src/'s layers, checked by the compiler.
**
** CMake forces this header into every C file of a layer (-include src/layers.h) with the layer's
** macro defined. A poisoned name may not appear in any code compiled after it, including inside
** a header included later, so a wrong-way include fails to build wherever the system keeps its
** headers (Debian's lua.h sits in /usr/include/lua5.4, off the engine's include path, but another
** system may have it in /usr/include):
**
**   engine   plain C over include/luagrad.h: no Lua API (lua.h, lauxlib.h) at all
**   binding  the only C that touches a lua_State; sees the engine through include/ only (not
**            src/engine/internal.h) and never the CLI (src/cli/cli.h)
**   cli      the executable; uses the public headers, not the binding's or the engine's own
*/
#ifndef LG_LAYERS_H
#define LG_LAYERS_H

#if defined(LG_LAYER_ENGINE)
#pragma GCC poison lua_State luaL_Reg luaL_Buffer
#elif defined(LG_LAYER_BINDING)
#pragma GCC poison lg_iter_init lg_tape_record lg_cli_docall lg_repl_run
#elif defined(LG_LAYER_CLI)
#pragma GCC poison lg_iter_init lg_tape_record lgL_newslot lgL_check
#else
#error "layers.h: define LG_LAYER_ENGINE, LG_LAYER_BINDING or LG_LAYER_CLI"
#endif

#endif
