-- Creation functions, dtypes, queries, reading numbers out, tostring, zero-size tensors.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"

local f32 = ref.f32

describe("lg.tensor", function()
  it("builds from a nested table with the default float dtype, integers included", function()
    local t = lg.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.are.same({ 2, 3 }, t.shape)
    assert.are.equal("float32", t.dtype)
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, t:tolist())
    assert.are.equal(2, t:dim())
    assert.are.equal(6, t:numel())
    assert.are.equal(2, #t)
  end)

  it("builds a 0-d tensor from a number", function()
    local t = lg.tensor(2.5)
    assert.are.same({}, t.shape)
    assert.are.equal(0, t:dim())
    assert.are.equal(1, t:numel())
    assert.are.equal(2.5, t:item())
    assert.are.equal(2.5, t:tolist())
    assert.are.equal("float32", lg.tensor(3).dtype)
  end)

  it("honours the dtype option", function()
    local a = lg.tensor({ 1, 2 }, { dtype = "int64" })
    assert.are.equal("int64", a.dtype)
    assert.are.equal("float64", lg.tensor({ 1, 2 }, { dtype = "float64" }).dtype)
    assert.are.same({ 1, 2 }, a:tolist())
  end)

  it("rounds to float32 but keeps float64 exactly", function()
    assert.are.equal(f32(0.1), lg.tensor(0.1):item())
    assert.are_not.equal(0.1, lg.tensor(0.1):item())
    assert.are.equal(0.1, lg.tensor(0.1, { dtype = "float64" }):item())
    assert.are.equal(1 / 3, lg.tensor({ 1 / 3 }, { dtype = "float64" })[1])
  end)

  it("holds any Lua integer exactly in int64", function()
    local big = (1 << 62) + 1
    local t = lg.tensor({ big, math.maxinteger, math.mininteger, -7 }, { dtype = "int64" })
    assert.are.same({ big, math.maxinteger, math.mininteger, -7 }, t:tolist())
    assert.are.equal(big, t[1])
  end)

  it("builds a 3-d tensor and reads it back", function()
    local nested = ref.build({ 2, 3, 4 }, ref.gen_signed)
    local t = lg.tensor(nested, { dtype = "float64" })
    assert.are.same({ 2, 3, 4 }, t.shape)
    ref.assert_equal(t, nested)
  end)
end)

describe("reading numbers out", function()
  it("gives Lua integers for int64", function()
    local t = lg.tensor({ 3, -4 }, { dtype = "int64" })
    assert.are.equal("integer", math.type(t[1]))
    assert.are.equal("integer", math.type(t:sum():item()))
    assert.are.equal("integer", math.type(t:tolist()[2]))
  end)

  it("gives integers for whole float values below 2^53 and floats otherwise", function()
    local s = lg.ones(3):sum():item()
    assert.are.equal(3, s)
    assert.are.equal("integer", math.type(s))
    assert.are.equal("3", tostring(s))
    assert.are.equal("float", math.type(lg.tensor(2.5):item()))
    assert.are.equal("integer", math.type(lg.tensor({ -6 }, { dtype = "float64" })[1]))
    assert.are.equal("integer", math.type(lg.tensor(2 ^ 53 - 1, { dtype = "float64" }):item()))
    assert.are.equal("float", math.type(lg.tensor(2 ^ 53, { dtype = "float64" }):item()))
    assert.are.equal("float", math.type(lg.tensor(1e300, { dtype = "float64" }):item()))
    local l = lg.tensor({ { 1, 0.5 } }):tolist()
    assert.are.equal("integer", math.type(l[1][1]))
    assert.are.equal("float", math.type(l[1][2]))
  end)

  it("keeps NaN, infinities and -0.0 as floats", function()
    local t = lg.tensor({ 0 / 0, math.huge, -math.huge, -0.0 })
    local nan, inf, ninf, nz = t[1], t[2], t[3], t[4]
    assert.is_true(nan ~= nan)
    assert.are.equal("float", math.type(nan))
    assert.are.equal(math.huge, inf)
    assert.are.equal(-math.huge, ninf)
    assert.are.equal("float", math.type(nz))
    assert.are.equal(-math.huge, 1 / nz)
  end)
end)

describe("queries", function()
  it("gives shape, size, dim, numel, #, dtype", function()
    local t = lg.zeros(2, 3, 4)
    assert.are.same({ 2, 3, 4 }, t.shape)
    assert.are.same({ 2, 3, 4 }, t:size())
    assert.are.equal(3, t:size(2))
    assert.are.equal(4, t:size(-1))
    assert.are.equal(2, t:size(-3))
    assert.are.equal(3, t:dim())
    assert.are.equal(24, t:numel())
    assert.are.equal(2, #t)
    assert.are.equal("float32", t.dtype)
  end)

  it("hands out a fresh shape table each time", function()
    local t = lg.zeros(2, 3)
    local s = t.shape
    s[1] = 99
    assert.are.same({ 2, 3 }, t.shape)
    local s2 = t:size()
    s2[2] = 99
    assert.are.same({ 2, 3 }, t:size())
  end)
end)

describe("creation functions", function()
  it("zeros, ones, empty accept varargs or one table and options", function()
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, lg.zeros(2, 3):tolist())
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, lg.zeros({ 2, 3 }):tolist())
    assert.are.same({ 1, 1 }, lg.ones(2):tolist())
    local o = lg.ones({ 2, 2 }, { dtype = "int64" })
    assert.are.equal("int64", o.dtype)
    assert.are.same({ { 1, 1 }, { 1, 1 } }, o:tolist())
    local e = lg.empty(3, 2, { dtype = "float64" })
    assert.are.same({ 3, 2 }, e.shape)
    assert.are.equal("float64", e.dtype)
    assert.are.same({ 4 }, lg.empty({ 4 }).shape)
    assert.are.same({}, lg.zeros({}).shape)
  end)

  it("full fills with a value", function()
    assert.are.same({ { 7, 7, 7 }, { 7, 7, 7 } }, lg.full({ 2, 3 }, 7):tolist())
    assert.are.equal("float32", lg.full({ 2 }, 7).dtype)
    local i = lg.full({ 2 }, -3, { dtype = "int64" })
    assert.are.equal("int64", i.dtype)
    assert.are.same({ -3, -3 }, i:tolist())
    assert.are.equal(f32(0.1), lg.full({ 1 }, 0.1)[1])
  end)

  it("requires_grad option", function()
    assert.is_true(lg.zeros(2, { requires_grad = true }).requires_grad)
    assert.is_false(lg.zeros(2).requires_grad)
  end)

  local arange_cases = {
    { args = { 5 }, want = { 0, 1, 2, 3, 4 }, dtype = "int64" },
    { args = { 1, 4 }, want = { 1, 2, 3 }, dtype = "int64" },
    { args = { 10, 0, -3 }, want = { 10, 7, 4, 1 }, dtype = "int64" },
    { args = { 0, 1, 0.25 }, want = { 0, 0.25, 0.5, 0.75 }, dtype = "float32" },
    { args = { 0.5, 3 }, want = { 0.5, 1.5, 2.5 }, dtype = "float32" },
    { args = { 1.0, 4 }, want = { 1, 2, 3 }, dtype = "float32" },
    { args = { 3, { dtype = "float64" } }, want = { 0, 1, 2 }, dtype = "float64" },
    { args = { 0, 0 }, want = {}, dtype = "int64" },
  }
  for _, c in ipairs(arange_cases) do
    local shown = {}
    for i, a in ipairs(c.args) do shown[i] = type(a) == "table" and "{dtype=...}" or tostring(a) end
    it("arange(" .. table.concat(shown, ",") .. ") gives " .. c.dtype, function()
      local t = lg.arange(table.unpack(c.args))
      assert.are.equal(c.dtype, t.dtype)
      assert.are.same({ #c.want }, t.shape)
      ref.assert_equal(t, { shape = { #c.want }, data = c.want })
    end)
  end

  it("arange with a fractional step has ceil((stop-start)/step) elements", function()
    local t = lg.arange(0, 1, 0.1)
    assert.are.equal(10, t:numel())
    ref.assert_close(t, ref.build({ 10 }, function(i) return (i[1] - 1) * 0.1 end), 1e-6, 1e-7)
  end)

  it("linspace includes both ends", function()
    local t = lg.linspace(0, 1, 5)
    assert.are.equal("float32", t.dtype)
    ref.assert_close(t, { 0, 0.25, 0.5, 0.75, 1 }, 0, 0)
    ref.assert_close(lg.linspace(-1, 1, 3, { dtype = "float64" }), { -1, 0, 1 }, 0, 0)
    assert.are.same({ 2 }, lg.linspace(2, 2, 1):tolist())
    assert.are.same({ 0 }, lg.linspace(0, 1, 0).shape)
  end)

  it("eye(n) and eye(n, m)", function()
    assert.are.same({ { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } }, lg.eye(3):tolist())
    assert.are.same({ { 1, 0, 0 }, { 0, 1, 0 } }, lg.eye(2, 3):tolist())
    assert.are.same({ { 1, 0 }, { 0, 1 }, { 0, 0 } }, lg.eye(3, 2):tolist())
    assert.are.equal("float32", lg.eye(2).dtype)
    assert.are.equal("int64", lg.eye(2, { dtype = "int64" }).dtype)
  end)

  it("*_like keep shape and dtype, and take a dtype override", function()
    local base = lg.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "float64" })
    local z, o, f = lg.zeros_like(base), lg.ones_like(base), lg.full_like(base, 2.5)
    for _, t in ipairs({ z, o, f, lg.rand_like(base), lg.randn_like(base) }) do
      assert.are.same({ 2, 3 }, t.shape)
      assert.are.equal("float64", t.dtype)
    end
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, z:tolist())
    assert.are.same({ { 1, 1, 1 }, { 1, 1, 1 } }, o:tolist())
    assert.are.same({ { 2.5, 2.5, 2.5 }, { 2.5, 2.5, 2.5 } }, f:tolist())
    assert.are.equal("int64", lg.zeros_like(base, { dtype = "int64" }).dtype)
    assert.are.same({ 3, 2 }, lg.ones_like(base:t()).shape)
  end)

  it("set_default_dtype changes what tensor, zeros and float arange give", function()
    lg.set_default_dtype("float64")
    local ok, err = pcall(function()
      assert.are.equal("float64", lg.tensor({ 1, 2 }).dtype)
      assert.are.equal("float64", lg.zeros(2).dtype)
      assert.are.equal("float64", lg.arange(0, 1, 0.5).dtype)
      assert.are.equal("int64", lg.arange(3).dtype)
      assert.are.equal(0.1, lg.tensor(0.1):item())
    end)
    lg.set_default_dtype("float32")
    assert(ok, err)
    assert.are.equal("float32", lg.zeros(2).dtype)
  end)
end)

describe("tostring", function()
  it("shows the values of a small tensor", function()
    local s = tostring(lg.tensor({ { 1.5, 2 }, { 3, -4.25 } }))
    for _, v in ipairs({ "1.5", "2", "3", "-4.25" }) do
      assert.is_truthy(s:find(v, 1, true), "missing " .. v .. " in " .. s)
    end
  end)

  it("names the dtype when it is not float32", function()
    assert.matches("float64", tostring(lg.ones(2, { dtype = "float64" })), 1, true)
    assert.matches("int64", tostring(lg.tensor({ 7, 8 }, { dtype = "int64" })), 1, true)
  end)

  it("elides a large tensor", function()
    local s = tostring(lg.arange(10000))
    assert.is_true(#s < 2000, "tostring length " .. #s)
    assert.matches("...", s, 1, true)
    assert.matches("0", s, 1, true)
    local s2 = tostring(lg.zeros(100, 100))
    assert.is_true(#s2 < 2000, "tostring length " .. #s2)
    assert.matches("...", s2, 1, true)
  end)

  it("shows nan, inf and -inf", function()
    local s = tostring(lg.tensor({ 0 / 0, math.huge, -math.huge, 1 }))
    assert.matches("nan", s, 1, true)
    assert.matches("-inf", s, 1, true)
    assert.is_truthy(s:gsub("-inf", ""):find("inf", 1, true), "no +inf in " .. s)
  end)

  it("prints 0-d and zero-size tensors", function()
    assert.matches("2.5", tostring(lg.tensor(2.5)), 1, true)
    assert.are.equal("string", type(tostring(lg.zeros(0, 3))))
  end)
end)

describe("zero-size tensors", function()
  it("are created with the right shape", function()
    local t = lg.zeros(0, 3)
    assert.are.same({ 0, 3 }, t.shape)
    assert.are.equal(0, t:numel())
    assert.are.equal(0, #t)
    assert.are.same({}, t:tolist())
    assert.are.same({ 3, 0 }, lg.ones(3, 0).shape)
    assert.are.same({ {}, {}, {} }, lg.ones(3, 0):tolist())
    assert.are.same({ 0 }, lg.tensor({}).shape)
  end)

  it("add, sum and mean", function()
    assert.are.same({ 0, 3 }, (lg.zeros(0, 3) + lg.ones(3)).shape)
    assert.are.same({ 2, 0 }, (lg.zeros(2, 0) + lg.zeros(2, 1)).shape)
    assert.are.equal(0, lg.zeros(0, 3):sum():item())
    local m = lg.zeros(0):mean():item()
    assert.is_true(m ~= m, "mean of nothing should be nan, got " .. tostring(m))
    assert.are.same({ 0, 0, 0 }, lg.zeros(0, 3):sum(1):tolist())
    assert.are.same({ 3 }, lg.zeros(3, 0):sum(2).shape)
  end)

  it("matmul with a zero inner dimension gives zeros", function()
    local r = lg.matmul(lg.ones(3, 0), lg.ones(0, 4))
    assert.are.same({ 3, 4 }, r.shape)
    assert.are.equal(0, r:abs():sum():item())
    assert.are.same({ 0, 4 }, lg.matmul(lg.ones(0, 2), lg.ones(2, 4)).shape)
  end)

  it("cat with an empty tensor", function()
    local a = lg.tensor({ { 1, 2, 3 } })
    assert.are.same({ { 1, 2, 3 } }, lg.cat({ a, lg.zeros(0, 3) }, 1):tolist())
    assert.are.same({ { 1, 2, 3 } }, lg.cat({ a, lg.zeros(1, 0) }, 2):tolist())
  end)
end)
