-- luagrad as a rock: `luarocks make --lua-version 5.4` from the checkout builds it with CMake and
-- installs the module (luagrad/*.lua and luagrad/core.so) and the `luagrad` command into the
-- tree, where `eval "$(luarocks --lua-version 5.4 path)"` lets a stock lua5.4 require it.
rockspec_format = "3.0"
package = "luagrad"
version = "scm-1"
source = {
  url = "git+file://.", -- no public repository yet: `luarocks make` builds the checkout it runs in
}
-- No license field: the project has not chosen one yet (luarocks lint asks for it).
description = {
  summary = "A deep-learning engine in C driven from Lua 5.4",
  detailed = [[
n-d tensors, OpenBLAS matrix products, a define-by-run autodiff tape with forward mode and
higher-order gradients, fused normalization, loss and optimizer kernels; models and training loops
are Lua. Release 0.1.0 (LG_VERSION in include/luagrad.h).]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  -- only the library: Debian keeps cblas.h in /usr/include/x86_64-linux-gnu, where LuaRocks
  -- does not look for headers; CMake's find_path does
  OPENBLAS = { library = "openblas" },
  ZLIB = { header = "zlib.h", library = "z" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "$(BINDIR)",
    LG_INSTALL_LMOD = "$(LUADIR)", -- luagrad/*.lua
    LG_INSTALL_CMOD = "$(LIBDIR)", -- luagrad/core.so
    LG_INSTALL_DEV = "OFF", -- no headers, static libraries or pkg-config files in the rock
    LG_BLAS_INCDIR = "$(OPENBLAS_INCDIR)",
    LG_EXPECT_VERSION = "0.1.0", -- CMake stops if include/luagrad.h says otherwise
  },
}
