-- Every bad argument raises a Lua error whose message starts with the operation name and
-- names the shapes, dims, indices or values involved. Nothing is left half-written.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"

local function i64(x) return lg.tensor(x, { dtype = "int64" }) end
local z23 = function() return lg.zeros(2, 3) end

-- description, function that must raise, op name the message starts with (nil: not checked),
-- literal substrings the message must contain
local CASES = {
  { "matmul inner sizes", function() return lg.zeros(3, 4):matmul(lg.zeros(5, 2)) end,
    "matmul", { "{3,4}", "{5,2}", "4", "5" } },
  { "lg.matmul inner sizes", function() return lg.matmul(lg.zeros(3), lg.zeros(4)) end,
    "matmul", { "{3}", "{4}" } },
  { "matmul batch dims", function() return lg.zeros(2, 3, 4):matmul(lg.zeros(3, 4, 5)) end,
    "matmul", { "{2,3,4}", "{3,4,5}" } },
  { "matmul of 0-d", function() return lg.matmul(lg.tensor(1), lg.tensor(2)) end, "matmul", {} },
  { "matmul with a string", function() return lg.matmul("x", lg.zeros(2)) end, "matmul", {} },
  { "narrow past the end", function() return lg.zeros(5):narrow(1, 4, 3) end,
    "narrow", { "4", "3", "5", "1" } },
  { "narrow start 0", function() return lg.zeros(5):narrow(1, 0, 2) end, "narrow", { "0" } },
  { "narrow bad dim", function() return z23():narrow(3, 1, 1) end, "narrow", { "3" } },
  { "view does not fit", function() return lg.zeros(6):view(7) end, "view", { "{7}", "6" } },
  { "view of a transposed tensor", function() return z23():t():view(6) end, "view", { "{6}" } },
  { "view with two -1", function() return lg.zeros(6):view(-1, -1) end, "view", { "-1" } },
  { "reshape does not fit", function() return lg.zeros(6):reshape(4) end, "reshape", { "{4}", "6" } },
  { "transpose dim out of range", function() return z23():transpose(1, 3) end, "transpose", { "3" } },
  { "t() on 3-d", function() return lg.zeros(2, 3, 4):t() end, nil, { "3" } },
  { "permute wrong count", function() return lg.zeros(2, 3, 4):permute(1, 2) end, "permute", {} },
  { "permute repeated dim", function() return lg.zeros(2, 3):permute(1, 1) end, "permute", {} },
  { "select index out of range", function() return lg.zeros(3, 4):select(1, 4) end,
    "select", { "4", "3" } },
  { "unsqueeze dim out of range", function() return z23():unsqueeze(5) end, "unsqueeze", { "5" } },
  { "squeeze dim out of range", function() return z23():squeeze(3) end, "squeeze", { "3" } },
  { "expand to a smaller size", function() return lg.zeros(3, 2):expand(3, 4) end,
    "expand", { "{3,2}", "{3,4}" } },
  { "expand with fewer dims", function() return z23():expand(3) end, "expand", { "{2,3}" } },
  { "flatten bad range", function() return lg.zeros(2, 3, 4):flatten(3, 1) end, "flatten", {} },
  { "sum dim out of range", function() return z23():sum(3) end, "sum", { "3" } },
  { "mean negative dim out of range", function() return z23():mean(-3) end, "mean", { "-3" } },
  { "max dim out of range", function() return z23():max(4) end, "max", { "4" } },
  { "argmax dim 0", function() return z23():argmax(0) end, "argmax", { "0" } },
  { "size dim out of range", function() return z23():size(3) end, "size", { "3" } },
  { "broadcast add", function() return z23() + lg.zeros(4) end, "add", { "{2,3}", "{4}" } },
  { "broadcast mul", function() return lg.zeros(2, 3) * lg.zeros(3, 2) end, "mul", { "{2,3}", "{3,2}" } },
  { "broadcast maximum", function() return lg.maximum(lg.zeros(2), lg.zeros(3)) end, "maximum",
    { "{2}", "{3}" } },
  { "broadcast eq", function() return lg.zeros(2):eq(lg.zeros(3)) end, "eq", { "{2}", "{3}" } },
  { "where shapes", function() return lg.where(lg.ones(2), lg.zeros(3), lg.zeros(4)) end,
    "where", { "{3}", "{4}" } },
  { "where with a string mask", function() return lg.where("yes", lg.zeros(2), 0) end, "where", {} },
  { "add a string", function() return lg.zeros(2) + {} end, nil, {} },
  { "copy_ shapes", function() return z23():copy_(lg.zeros(4)) end, "copy_", { "{2,3}", "{4}" } },
  { "copy_ from a string", function() return z23():copy_("abc") end, "copy_", {} },
  { "unknown dtype in zeros", function() return lg.zeros(2, { dtype = "float16" }) end,
    "zeros", { "float16" } },
  { "unknown dtype in tensor", function() return lg.tensor({ 1 }, { dtype = "bf16" }) end,
    "tensor", { "bf16" } },
  { "unknown dtype in to", function() return lg.zeros(2):to("complex") end, "to", { "complex" } },
  { "set_default_dtype int64", function() return lg.set_default_dtype("int64") end,
    "set_default_dtype", { "int64" } },
  { "negative size", function() return lg.zeros(-1, 3) end, "zeros", { "-1" } },
  { "negative size in a table", function() return lg.ones({ 2, -3 }) end, "ones", { "-3" } },
  { "negative size in full", function() return lg.full({ -2 }, 1) end, "full", { "-2" } },
  { "negative size in randn", function() return lg.randn(-4) end, "randn", { "-4" } },
  { "eye negative", function() return lg.eye(-2) end, "eye", { "-2" } },
  { "arange step 0", function() return lg.arange(0, 5, 0) end, "arange", {} },
  { "arange wrong direction", function() return lg.arange(0, 5, -1) end, "arange", {} },
  { "linspace negative count", function() return lg.linspace(0, 1, -1) end, "linspace", { "-1" } },
  { "randint low >= high", function() return lg.randint(5, 5, { 3 }) end, "randint", { "5" } },
  { "ragged nested table", function() return lg.tensor({ { 1, 2 }, { 3 } }) end, "tensor", {} },
  { "string in a nested table", function() return lg.tensor({ 1, "a" }) end, "tensor", {} },
  { "cat mismatched shapes", function() return lg.cat({ z23(), lg.zeros(2, 4) }, 1) end,
    "cat", { "{2,3}", "{2,4}" } },
  { "cat dim out of range", function() return lg.cat({ z23(), z23() }, 3) end, "cat", { "3" } },
  { "cat of nothing", function() return lg.cat({}) end, "cat", {} },
  { "cat with a string", function() return lg.cat({ z23(), "x" }) end, "cat", {} },
  { "stack mismatched shapes", function() return lg.stack({ lg.zeros(3), lg.zeros(2) }) end,
    "stack", { "{3}", "{2}" } },
  { "index_select out of range", function() return lg.zeros(3, 2):index_select(1, i64({ 4 })) end,
    "index_select", { "4", "3" } },
  { "index_select index 0", function() return lg.zeros(3, 2):index_select(1, { 0 }) end,
    "index_select", { "0" } },
  { "index_select float index", function() return lg.zeros(3):index_select(1, lg.tensor({ 1 })) end,
    "index_select", { "float32" } },
  { "index_select dim", function() return lg.zeros(3):index_select(2, { 1 }) end,
    "index_select", { "2" } },
  { "gather out of range", function() return z23():gather(2, i64({ { 4 }, { 1 } })) end,
    "gather", { "4", "3" } },
  { "gather index 0", function() return z23():gather(2, i64({ { 0 }, { 1 } })) end, "gather", { "0" } },
  { "gather index dims", function() return z23():gather(2, i64({ 1, 1 })) end, "gather", {} },
  { "split size 0", function() return lg.zeros(4):split(0) end, "split", { "0" } },
  { "split sizes do not add up", function() return lg.zeros(4):split({ 1, 2 }) end,
    "split", { "4" } },
  { "chunk 0", function() return lg.zeros(4):chunk(0) end, "chunk", { "0" } },
  { "item of many", function() return lg.zeros(3):item() end, "item", { "3" } },
  { "index out of range", function() return lg.zeros(3)[4] end, nil, { "4", "3" } },
  { "index 0", function() return lg.zeros(3, 2)[0] end, nil, { "0" } },
  { "index negative out of range", function() return lg.zeros(3)[-4] end, nil, { "-4" } },
  { "index a 0-d tensor", function() return lg.tensor(1)[1] end, nil, {} },
  { "write out of range", function() local t = lg.zeros(3); t[5] = 1 end, nil, { "5" } },
  { "write a bad shape", function() local t = z23(); t[1] = lg.zeros(4) end, nil, { "{4}" } },
  { "write a string", function() local t = z23(); t[1] = "x" end, nil, {} },
  { "unknown method", function() return lg.zeros(2):no_such_method() end, nil, {} },
  { "clamp with a string", function() return lg.zeros(2):clamp("a", 1) end, "clamp", {} },
  { "var with a bad option value", function() return lg.zeros(3):var({ correction = "x" }) end,
    "var", {} },
  { "manual_seed with a string", function() return lg.manual_seed("seed") end, "manual_seed", {} },
  { "set_num_threads 0", function() return lg.set_num_threads(0) end, "set_num_threads", { "0" } },
  { "int64 floor_divide by 0", function() return i64({ 7 }) // 0 end, "floor_divide", { "zero" } },
  { "int64 remainder by a 0 tensor", function() return i64({ 7 }) % i64({ 0 }) end, "remainder",
    { "zero" } },
  { "max of an empty tensor", function() return lg.zeros(0):max() end, "max", { "{0}" } },
  { "argmin over an empty dim", function() return lg.zeros(2, 0):argmin(2) end, "argmin", {} },
  { "too many elements", function() return lg.zeros(2 ^ 40, 2 ^ 40) end, "zeros", {} },
  { "more than 16 dims", function() return lg.zeros({ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }) end,
    "zeros", { "17" } },
  { "view to more than 16 dims", function() return lg.zeros(1):view({ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }) end,
    "view", {} },
  { "unsqueeze past 16 dims", function() return lg.zeros({ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }):unsqueeze(1) end,
    "unsqueeze", {} },
}

describe("errors", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      assert.has_error(c[2])
      local e = util.error_of(c[2])
      local msg = e:gsub("^[^\n]-:%d+: ", "")
      if c[3] then
        -- "op: ..." or, for a wrong argument type caught by luaL_check*, Lua's own
        -- "bad argument #n to 'op' (...)" (STYLE.md: check_tensor over luaL_checkudata)
        local starts = msg:sub(1, #c[3] + 1) == c[3] .. ":"
        local luastyle = (msg:find("^bad argument") or msg:find("^calling")) and
          msg:find(c[3] .. "'", 1, true)
        assert.is_truthy(starts or luastyle,
          "message should start with '" .. c[3] .. ":' but is: " .. e)
      end
      for _, s in ipairs(c[4]) do
        assert.is_truthy(msg:find(s, 1, true), "message lacks '" .. s .. "': " .. e)
      end
    end)
  end
end)

describe("out of memory", function()
  -- In a child process: under ASan a failed malloc aborts unless allocator_may_return_null=1.
  it("is an error naming the operation, not a crash", function()
    local script = "local lg = require 'luagrad'; local ok, e = pcall(lg.zeros, 1e15); " ..
      "print(ok, (tostring(e):gsub('^[^\\n]-:%d+: ', '')))"
    local out = util.run("timeout 60 " .. util.LUAGRAD .. " -e " .. util.shell_quote(script) .. " 2>&1")
    local last = out:match("[^\n]*$") -- ASan may warn on the lines before
    assert.matches("^false\tzeros: ", last, 1, false, out)
    assert.matches("memory", last, 1, true)
  end)
end)

describe("failed operations leave tensors as they were", function()
  it("copy_ with a bad shape writes nothing", function()
    local t = lg.ones(2, 3)
    assert.has_error(function() t:copy_(lg.zeros(2, 4)) end)
    assert.are.same({ { 1, 1, 1 }, { 1, 1, 1 } }, t:tolist())
  end)

  it("t[i] = bad tensor writes nothing", function()
    local t = lg.ones(2, 3)
    assert.has_error(function() t[2] = lg.zeros(5) end)
    assert.are.same({ { 1, 1, 1 }, { 1, 1, 1 } }, t:tolist())
  end)

  it("the engine keeps working after many errors", function()
    for _ = 1, 200 do
      pcall(function() return lg.zeros(3, 4):matmul(lg.zeros(5, 2)) end)
      pcall(function() return lg.cat({ lg.zeros(2), "x" }) end)
    end
    assert.are.equal(8, lg.ones(2, 4):matmul(lg.ones(4)):sum():item())
  end)
end)

-- Each snippet runs in a child process, so a crash shows as a failed expectation instead of
-- ending the suite. The snippet may raise (caught) or return; the process must finish normally.
describe("nothing a script passes crashes the process", function()
  local SNIPPETS = {
    "lg.tensor({math.mininteger}, {dtype='int64'}) // -1",
    "lg.tensor({math.mininteger}, {dtype='int64'}) % -1",
    "lg.tensor({7}, {dtype='int64'}) // 0",
    "lg.tensor({7}, {dtype='int64'}) % lg.tensor({0}, {dtype='int64'})",
    "lg.tensor({2, 3}, {dtype='int64'}) ^ -1",
    "lg.tensor({0, 1}):log():to('int64')",
    "lg.tensor({1e30, -1e30, 0/0}):to('int64')",
    "lg.zeros(1e15)",
    "lg.zeros(2^62, 4)",
    "lg.zeros(2, 3):view(-1, 0)",
    "lg.zeros(0, 3):view(-1)",
    "lg.zeros(0, 3):reshape(0, -1)",
    "lg.zeros(3):expand(2^62, 3):sum()",
    "lg.zeros(3):narrow(1, 2, -1)",
    "lg.zeros(3):narrow(1, math.maxinteger, 1)",
    "lg.zeros(3)[math.mininteger]",
    "lg.zeros(3):index_select(1, {math.maxinteger})",
    "lg.zeros(2, 2):gather(1, lg.tensor({{-1}}, {dtype='int64'}))",
    "lg.arange(0, 1e300, 1e-300)",
    "lg.linspace(0, 1, 2^62)",
    "lg.randint(math.mininteger, math.maxinteger, {4})",
    "lg.tensor(setmetatable({}, {__len = function() return 2^40 end}))",
    "lg.cat({lg.zeros(2), lg.zeros(2, 2)})",
    "lg.stack({})",
    "lg.zeros(2):split({-1, 3})",
    "lg.zeros(2):chunk(-1)",
    "lg.zeros(2):copy_(lg.zeros(2):t())",
    "getmetatable(lg.zeros(1)).__gc(lg.zeros(1))",
    "getmetatable(lg.zeros(1)).__index(1, 1)",
    "local t = lg.zeros(4); getmetatable(t).__close(t); getmetatable(t).__close(t); return t:sum()",
  }
  for _, code in ipairs(SNIPPETS) do
    it(code, function()
      local script = "local lg = require 'luagrad'; pcall(function() " ..
        (code:find("return") and code or ("return " .. code)) .. " end); " ..
        "print('survived ' .. lg.ones(2):sum():item())"
      local out, ok = util.run("timeout 60 " .. util.LUAGRAD .. " -e " .. util.shell_quote(script) .. " 2>&1")
      assert.are.equal("survived 2", out:match("survived %d+$") or out)
      assert.is_true(ok == true, "exit status not 0: " .. out)
    end)
  end
end)
