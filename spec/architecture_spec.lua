-- The layers of src/ hold, and the compiler keeps them so.
--
-- src/engine is plain C (no Lua API), src/binding is the only C that touches a lua_State and sees
-- the engine only through include/, src/cli is the executable. CMake forces src/layers.h into each
-- layer's files; it poisons the names a wrong-way include would bring in. These specs compile
-- small probe files with each layer's flags, with Lua's headers deliberately on the include path
-- (as on a system that keeps lua.h in /usr/include), and read the sources' include lines.
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close() -- true, or nil and the exit status
  return ok == true, out
end

local function lua_cflags()
  local ok, out = run("pkg-config --cflags lua5.4")
  assert.is_true(ok, "pkg-config lua5.4: " .. out)
  return (out:gsub("%s+$", ""))
end

-- compiles `source` (a C translation unit) as a file of `layer` would be; returns ok, messages
local function compile_as(layer, source)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local file = dir .. "/probe.c"
  local f = assert(io.open(file, "w"))
  f:write(source)
  f:close()
  local ok, out = run(string.format(
    "cc -fsyntax-only -include src/layers.h -DLG_LAYER_%s -Iinclude -Isrc/%s %s %s", layer, layer:lower(),
    lua_cflags(), file))
  os.execute("rm -rf " .. dir)
  return ok, out
end

local function sources(dir)
  local p = io.popen("ls " .. dir)
  local list = {}
  for name in p:lines() do
    if name:match("%.[ch]$") then list[#list + 1] = dir .. "/" .. name end
  end
  p:close()
  return list
end

local function includes(file)
  local list = {}
  for line in io.lines(file) do
    local h = line:match('^%s*#%s*include%s*[<"]([^>"]+)[>"]')
    if h then list[#list + 1] = h end
  end
  return list
end

describe("architecture: src/ by layer", function()
  it("an engine file that includes lua.h does not compile", function()
    local ok, out = compile_as("ENGINE", "#include <lua.h>\nint probe;\n")
    assert.is_false(ok, "the engine compiled a file including lua.h")
    assert.matches("poisoned", out)
  end)

  it("an engine file with only the engine's headers compiles (the probe's control)", function()
    local ok, out = compile_as("ENGINE", '#include "internal.h"\nint probe;\n')
    assert.is_true(ok, out)
  end)

  it("a binding file that includes the engine's internal.h or the CLI's cli.h does not compile", function()
    local ok, out = compile_as("BINDING", '#include "../engine/internal.h"\nint probe;\n')
    assert.is_false(ok, "the binding compiled a file including src/engine/internal.h")
    assert.matches("poisoned", out)
    ok, out = compile_as("BINDING", '#include "../cli/cli.h"\nint probe;\n')
    assert.is_false(ok, "the binding compiled a file including src/cli/cli.h")
    assert.matches("poisoned", out)
  end)

  it("a binding file with Lua's and luagrad's public headers compiles (the control)", function()
    local ok, out = compile_as("BINDING", '#include "lua_binding.h"\nint probe;\n')
    assert.is_true(ok, out)
  end)

  it("a CLI file that includes the binding's private header does not compile", function()
    local ok, out = compile_as("CLI", '#include "../binding/lua_binding.h"\nint probe;\n')
    assert.is_false(ok, "the CLI compiled a file including src/binding/lua_binding.h")
    assert.matches("poisoned", out)
  end)

  it("no engine file names a Lua header; no binding file names an engine-private one", function()
    local bad = {}
    for _, f in ipairs(sources("src/engine")) do
      for _, h in ipairs(includes(f)) do
        local lua_api = h == "lua.h" or h == "lauxlib.h" or h == "lualib.h" or h == "lg_lua.h" or h:match("^lua[%d.]+/")
        if lua_api or h:match("binding") or h:match("cli") then
          bad[#bad + 1] = f .. " includes " .. h
        end
      end
    end
    for _, f in ipairs(sources("src/binding")) do
      for _, h in ipairs(includes(f)) do
        if h:match("internal%.h") or h:match("compose%.h") or h:match("blas%.h") or h:match("cli%.h") then
          bad[#bad + 1] = f .. " includes " .. h
        end
      end
    end
    assert.are.equal("", table.concat(bad, "; "))
  end)

  it("every C file of src/ sits in one of the three layers", function()
    local ok, out = run("ls src")
    assert.is_true(ok)
    local stray = {}
    for name in out:gmatch("[^\n]+") do
      if name:match("%.c$") then stray[#stray + 1] = name end
    end
    assert.are.equal("", table.concat(stray, ", "), "C files directly under src/")
  end)

  it("the README's source layout table names every file of src/, include/, tests/c/ and tools/", function()
    local f = assert(io.open("README.md"))
    local readme = f:read("a")
    f:close()
    local section = readme:match("## Source layout(.-)\n## ") or readme:match("## Source layout(.*)$")
    assert.is_not_nil(section, "README.md has no 'Source layout' section")
    local missing = {}
    for _, dir in ipairs({ "src", "src/engine", "src/binding", "src/cli", "include", "tests/c", "tools" }) do
      local p = io.popen("ls " .. dir)
      for name in p:lines() do
        local path = dir .. "/" .. name
        if name:match("%.[ch]$") or name:match("%.sh$") then
          if not section:find("`" .. path .. "`", 1, true) then missing[#missing + 1] = path end
        end
      end
      p:close()
    end
    assert.are.equal("", table.concat(missing, ", "), "files the README's layout table does not name")
  end)
end)
