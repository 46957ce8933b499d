-- luagrad as others install it: a rock built by LuaRocks into a temporary tree and required by a
-- stock lua5.4; a `cmake --install` tree that a C host links through pkg-config or through
-- find_package(luagrad); one version everywhere.
--
-- Run from the repository root; LUAGRAD_BUILD names the build directory (default "build"). The
-- rock is built from a copy of the sources (about a minute on two cores); the C hosts link
-- against the build directory installed into a temporary prefix.
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local q, run, read_file, write_file = util.shell_quote, util.run, util.read_file, util.write_file

local ROOT, BUILD = util.ROOT, util.BUILD
local VERSION = read_file(ROOT .. "/include/luagrad.h"):match('#define LG_VERSION "([%d%.]+)"')
local ROCKSPEC = "luagrad-scm-1.rockspec"
-- what the build and its hosts need; the rest of the checkout (docs, spec, bench) stays behind
local SOURCES = { "CMakeLists.txt", ROCKSPEC, "README.md", "cmake", "include", "src", "lua", "tools", "tests",
  "examples", "docs" } -- docs/reference/ is compiled into the command for the REPL's help(x)

-- One training step, printing where the modules came from and the loss before and after.
local TRAIN = [[
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional
lg.manual_seed(0)
local model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
local opt = lg.optim.SGD(model:parameters(), { lr = 0.5 })
local x, y = lg.randn(16, 4), lg.randint(1, 4, { 16 })
local loss = F.cross_entropy(model(x), y)
opt:zero_grad()
loss:backward()
opt:step()
print(package.searchpath("luagrad", package.path) or "preloaded",
  package.searchpath("luagrad.core", package.cpath) or "preloaded")
print(string.format("%.9g %.9g", loss:item(), F.cross_entropy(model(x), y):item()))
]]

-- The losses a run of TRAIN printed, as numbers, and the module paths.
local function parse_train(out)
  local lua_path, core_path, before, after = out:match("^(%S+)\t(%S+)\n(%S+) (%S+)$")
  return lua_path, core_path, tonumber(before), tonumber(after)
end

-- A sanitized build's static libraries need the sanitizer runtimes in the host's link.
local function sanitizer_flags()
  local cache = read_file(BUILD .. "/CMakeCache.txt")
  return cache:find("LG_SANITIZE:BOOL=ON", 1, true) and "-fsanitize=address,undefined" or ""
end

local function lines_set(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
  table.sort(t)
  return t
end

describe("one version", function()
  it("is LG_VERSION in luagrad.h, and the rockspec, luagrad -v and lg.version say the same", function()
    assert.is_string(VERSION)
    local spec = read_file(ROOT .. "/" .. ROCKSPEC)
    assert.are.equal(VERSION, spec:match('LG_EXPECT_VERSION%s*=%s*"([^"]+)"'))
    assert.are.equal("luagrad " .. VERSION, run(q(util.LUAGRAD) .. " --version"):match("^luagrad %S+"))
    assert.are.equal(VERSION, require("luagrad").version)
  end)
end)

describe("the rock (luarocks make --lua-version 5.4)", function()
  local dir, tree, src

  setup(function()
    dir = util.tmpdir()
    tree, src = dir .. "/tree", dir .. "/src"
  end)
  teardown(function() util.remove_dir(dir) end)

  it("builds from a copy of the sources, installs only the module and the command, and trains in lua5.4", function()
    if run("command -v luarocks") == "" then
      pending("luarocks is not installed (tools/setup.sh installs it)")
      return
    end
    local copy = { "mkdir -p " .. q(src) }
    for _, f in ipairs(SOURCES) do copy[#copy + 1] = "cp -r " .. q(ROOT .. "/" .. f) .. " " .. q(src) .. "/" end
    local _, ok = run(table.concat(copy, " && "))
    assert.is_true(ok, "copying the sources failed")
    local log, built = run(string.format("cd %s && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
      .. "CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks --lua-version 5.4 --tree %s make %s 2>&1", q(src), q(tree), ROCKSPEC))
    assert.is_true(built, log)
    assert.truthy(log:find("luagrad scm-1 is now installed in " .. tree, 1, true), log)

    -- luarocks show: every Lua file of lua/ and the C core as modules, the one command
    local show = run(string.format("luarocks --lua-version 5.4 --tree %s show luagrad --porcelain", q(tree)))
    local modules, commands = {}, {}
    for name, file in show:gmatch("\nmodule\t(%S+)\t(%S+)") do modules[#modules + 1] = name .. " " .. file end
    for name in show:gmatch("\ncommand\t(%S+)") do commands[#commands + 1] = name end
    local expect = {}
    for f in run("cd lua && find luagrad -name '*.lua'"):gmatch("[^\n]+") do
      expect[#expect + 1] = f:gsub("%.lua$", ""):gsub("/", ".") .. " " .. tree .. "/share/lua/5.4/" .. f
    end
    expect[#expect + 1] = "luagrad.core " .. tree .. "/lib/lua/5.4/luagrad/core.so"
    -- the MPI module comes with it where CMake finds MPI, as it did for this build
    local with_mpi = util.file_exists(BUILD .. "/lib/luagrad/mpi.so")
    if with_mpi then expect[#expect + 1] = "luagrad.mpi " .. tree .. "/lib/lua/5.4/luagrad/mpi.so" end
    table.sort(expect)
    table.sort(modules)
    assert.are.same(expect, modules)
    -- (LuaRocks 3.8 prints a command's name as its deployed path, and its file with the tree twice)
    assert.are.same({ tree .. "/bin/luagrad" }, commands)
    -- and nothing else in the tree: no headers, static libraries or pkg-config files
    local files = lines_set(run(string.format("cd %s && find . -type f ! -path './share/lua/5.4/luagrad/*' "
      .. "! -path './lib/luarocks/rocks-5.4/*'", q(tree))))
    local want = { "./bin/luagrad", "./lib/lua/5.4/luagrad/core.so" }
    if with_mpi then want[#want + 1] = "./lib/lua/5.4/luagrad/mpi.so" end
    assert.are.same(want, files)

    -- a stock lua5.4 with the tree's paths (luarocks path) runs a training step through the rock
    write_file(dir .. "/train.lua", TRAIN)
    local out, ran = run(string.format("cd %s && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
      .. "LUA_INIT= sh -c 'eval \"$(luarocks --lua-version 5.4 --tree %s path)\" && lua5.4 train.lua' 2>&1", q(dir),
      q(tree)))
    assert.is_true(ran, out)
    local lua_path, core_path, before, after = parse_train(out)
    assert.are.equal(tree .. "/share/lua/5.4/luagrad/init.lua", lua_path, out)
    assert.are.equal(tree .. "/lib/lua/5.4/luagrad/core.so", core_path, out)
    assert.is_true(after < before, out)
    -- the same step as the build's own executable computes it
    local ref = run(q(util.LUAGRAD) .. " " .. q(dir .. "/train.lua"))
    local _, _, ref_before, ref_after = parse_train(ref)
    assert.is_true(math.abs(before - ref_before) <= 1e-6 * ref_before, out .. "\n" .. ref)
    assert.is_true(math.abs(after - ref_after) <= 1e-6 * ref_after, out .. "\n" .. ref)

    -- the rock's command is the luagrad executable
    assert.are.equal("luagrad " .. VERSION, run(q(tree .. "/bin/luagrad") .. " --version"):match("^luagrad %S+"))
    -- and carries the reference for the REPL's help(x)
    local help = run(q(tree .. "/bin/luagrad") .. [[ -e 'require("luagrad.help")(lg.optim.AdamW)' 2>&1]])
    assert.truthy(help:match("^lg%.optim%.AdamW%(params, opts%)    %[docs/reference/optim%.md:%d+%]\n"), help)
  end)
end)

describe("an installed tree (cmake --install) for C hosts", function()
  local dir, prefix

  setup(function()
    dir = util.tmpdir()
    prefix = dir .. "/prefix"
    local log, ok = run(string.format("cmake --install %s --prefix %s 2>&1", q(BUILD), q(prefix)))
    assert(ok, log)
  end)
  teardown(function() util.remove_dir(dir) end)

  it("holds the headers, the static libraries, luagrad.pc and the CMake package", function()
    local files = lines_set(run(string.format("cd %s && find include lib/pkgconfig lib/cmake -type f; ls lib/*.a", q(prefix))))
    assert.are.same({ "include/lg_lua.h", "include/luagrad.h", "lib/cmake/luagrad/luagradConfig.cmake",
      "lib/cmake/luagrad/luagradConfigVersion.cmake", "lib/libluagrad_engine.a", "lib/libluagrad_lua.a",
      "lib/pkgconfig/luagrad.pc" }, files)
  end)

  it("builds examples/embed/host.c with pkg-config --cflags --libs luagrad, and it runs", function()
    local env = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig")
    assert.are.equal(VERSION, run(env .. " pkg-config --modversion luagrad"))
    local flags, ok = run(env .. " pkg-config --cflags --libs luagrad")
    assert.is_true(ok, flags)
    for _, lib in ipairs({ "-lluagrad_lua", "-lluagrad_engine", "-llua5.4", "-lz", "-lm" }) do
      assert.truthy(flags:find(lib, 1, true), lib .. " missing from: " .. flags)
    end
    local log, built = run(string.format("cc %s %s -o %s %s 2>&1", q(ROOT .. "/examples/embed/host.c"),
      sanitizer_flags(), q(dir .. "/host"), flags))
    assert.is_true(built, log)
    local out, ran = run("env -u LUA_PATH -u LUA_CPATH ASAN_OPTIONS=detect_leaks=1 " .. q(dir .. "/host") .. " 2>&1")
    assert.is_true(ran, out)
    assert.are.equal("sum of a @ a = 54", out)
  end)

  it("builds it in a CMake project with find_package(luagrad) and luagrad::luagrad, and it runs", function()
    local proj = dir .. "/proj"
    os.execute("mkdir -p " .. q(proj))
    write_file(proj .. "/CMakeLists.txt", [[
cmake_minimum_required(VERSION 3.18)
project(host C)
find_package(luagrad ]] .. VERSION:match("^%d+%.%d+") .. [[ REQUIRED)
add_executable(host ]] .. ROOT .. [[/examples/embed/host.c)
target_link_libraries(host PRIVATE luagrad::luagrad)
]])
    local san = sanitizer_flags()
    local log, ok = run(string.format("cmake -S %s -B %s -DCMAKE_PREFIX_PATH=%s -DCMAKE_C_FLAGS=%s 2>&1 && "
      .. "cmake --build %s 2>&1", q(proj), q(proj .. "/b"), q(prefix), q(san), q(proj .. "/b")))
    assert.is_true(ok, log)
    local out, ran = run("env -u LUA_PATH -u LUA_CPATH " .. q(proj .. "/b/host") .. " 2>&1")
    assert.is_true(ran, out)
    assert.are.equal("sum of a @ a = 54", out)
    -- a version the package does not provide is refused
    write_file(proj .. "/CMakeLists.txt", "cmake_minimum_required(VERSION 3.18)\nproject(host C)\n"
      .. "find_package(luagrad 99.0 REQUIRED)\n")
    log, ok = run(string.format("cmake -S %s -B %s -DCMAKE_PREFIX_PATH=%s 2>&1", q(proj), q(proj .. "/b2"), q(prefix)))
    assert.is_not_true(ok)
    assert.truthy(log:find("luagrad", 1, true), log)
  end)
end)
