-- The module loads from a stock lua5.4 and from the luagrad executable; it sets no globals;
-- module-level settings round-trip.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"
local util = require "helpers.util"

local function stock_lua(code)
  return util.run(util.stock_lua() .. " -e " .. util.shell_quote(code) .. " 2>&1")
end

describe("require", function()
  it("lua5.4 -e 'print(require(\"luagrad\").ones(3):sum():item())' prints 3", function()
    local out, ok = stock_lua('print(require("luagrad").ones(3):sum():item())')
    assert.is_true(ok == true, out)
    assert.are.equal("3", out)
  end)

  it("the luagrad executable runs the issue's matmul example and prints 10", function()
    local code = 'local lg=require"luagrad"; print(lg.tensor{{1,2},{3,4}}:matmul(lg.eye(2)):sum():item())'
    local out, ok = util.run(util.LUAGRAD .. " -e " .. util.shell_quote(code) .. " 2>&1")
    assert.is_true(ok == true, out)
    assert.are.equal("10", out)
  end)

  it("require sets no globals, in lua5.4 and in the executable", function()
    local code = "local before = {} for k in pairs(_G) do before[k] = true end " ..
      "local lg = require 'luagrad' local t = lg.ones(2) + 1 " ..
      "local new = {} for k in pairs(_G) do if not before[k] then new[#new + 1] = k end end " ..
      "table.sort(new) print('new globals: [' .. table.concat(new, ',') .. ']')"
    local out, ok = stock_lua(code)
    assert.is_true(ok == true, out)
    assert.are.equal("new globals: []", out)
    local out2, ok2 = util.run(util.LUAGRAD .. " -e " .. util.shell_quote(code) .. " 2>&1")
    assert.is_true(ok2 == true, out2)
    assert.are.equal("new globals: []", out2)
  end)

  it("returns the same table on a second require, with the tensor API on it", function()
    assert.are.equal(lg, require("luagrad"))
    for _, name in ipairs({ "tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye",
      "rand", "randn", "randint", "zeros_like", "ones_like", "randn_like", "rand_like", "full_like",
      "matmul", "cat", "stack", "where", "maximum", "minimum", "manual_seed", "set_num_threads",
      "get_num_threads", "set_default_dtype", "memory_in_use", "exp", "eq" }) do
      assert.are.equal("function", type(lg[name]), "lg." .. name)
    end
  end)
end)

describe("threads", function()
  it("set_num_threads / get_num_threads round-trip", function()
    local n0 = lg.get_num_threads()
    assert.is_true(math.type(n0) == "integer" and n0 >= 1, "get_num_threads() = " .. tostring(n0))
    lg.set_num_threads(1)
    assert.are.equal(1, lg.get_num_threads())
    lg.set_num_threads(2)
    assert.are.equal(2, lg.get_num_threads())
    lg.set_num_threads(n0)
    assert.are.equal(n0, lg.get_num_threads())
  end)

  it("results do not depend on the thread count", function()
    local n0 = lg.get_num_threads()
    local x = lg.arange(200000):to("float64"):view(400, 500)
    lg.set_num_threads(1)
    local a, b = (x * 2 + 1):sum():item(), (x / 200000):t():exp():mean(1)
    lg.set_num_threads(2)
    local c, d = (x * 2 + 1):sum():item(), (x / 200000):t():exp():mean(1)
    lg.set_num_threads(n0)
    assert.are.equal(a, c)
    assert.are.equal(200000 * 199999 + 200000, a)
    ref.assert_close(d, b, 1e-13, 0)
  end)

  describe("the embedded library (tools/embed_lua.c)", function()
    local embed = util.BUILD .. "/lg_embed_lua"

    it("is compiled to bytecode with its debug information: tracebacks name the file and line", function()
      local dir = util.tmpdir()
      os.execute("mkdir -p " .. util.shell_quote(dir .. "/lua/m"))
      util.write_file(dir .. "/lua/m/init.lua", "return function() error('boom') end\n")
      local out, ok = util.run(util.shell_quote(embed) .. " " .. util.shell_quote(dir .. "/lua") .. " " ..
        util.shell_quote(dir .. "/out.c") .. " " .. util.shell_quote(dir .. "/lua/m/init.lua") .. " 2>&1")
      local c = util.read_file(dir .. "/out.c") or ""
      util.remove_dir(dir)
      assert.is_true(ok == true, out)
      -- the array starts with Lua's bytecode signature, ESC "Lua" (27, 76, 117, 97), not the source
      assert.is_truthy(c:find("= {%s*27,76,117,97,"), c:sub(1, 300))
      local tb = util.run(util.LUAGRAD .. [[ -e 'lg.nn.Linear(2, 2)(lg.ones(3))' 2>&1]])
      assert.matches("lua/luagrad/[%w_/]+%.lua:%d+:", tb)
    end)

    it("refuses a file that does not compile, naming it, and writes no output", function()
      local dir = util.tmpdir()
      os.execute("mkdir -p " .. util.shell_quote(dir .. "/lua/bad"))
      util.write_file(dir .. "/lua/bad/init.lua", "return function( end\n")
      local out, ok = util.run(util.shell_quote(embed) .. " " .. util.shell_quote(dir .. "/lua") .. " " ..
        util.shell_quote(dir .. "/out.c") .. " " .. util.shell_quote(dir .. "/lua/bad/init.lua") .. " 2>&1")
      local written = util.file_exists(dir .. "/out.c")
      util.remove_dir(dir)
      assert.is_false(ok == true, out)
      assert.matches("lg_embed_lua: lua/bad/init%.lua:1:", out)
      assert.is_false(written)
    end)
  end)
end)
