-- Elementwise math against a slow Lua reference, on contiguous and non-contiguous inputs;
-- broadcasting; numbers on either side; dtype promotion; comparisons, where, clamp.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"

local TOL = { float32 = { 2e-6, 1e-6 }, float64 = { 1e-13, 1e-14 }, int64 = { 0, 0 } }

local function tanh(x)
  local e = math.exp(2 * x)
  return (e - 1) / (e + 1)
end
local function round_half_even(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 then return f + 1 elseif d < 0.5 then return f end
  return (f % 2 == 0) and f or f + 1
end
local function sign(x) return x > 0 and 1 or (x < 0 and -1 or 0) end
-- name, reference, input generator, stays int64 on int64 input
local UNARY = {
  { "exp", math.exp, ref.gen_signed },
  { "log", math.log, ref.gen_positive },
  { "sqrt", math.sqrt, ref.gen_positive },
  { "rsqrt", function(x) return 1 / math.sqrt(x) end, ref.gen_positive },
  { "abs", math.abs, ref.gen_signed, true },
  { "sin", math.sin, ref.gen_signed },
  { "cos", math.cos, ref.gen_signed },
  { "tanh", tanh, ref.gen_signed },
  { "sigmoid", function(x) return 1 / (1 + math.exp(-x)) end, ref.gen_signed },
  { "relu", function(x) return math.max(x, 0) end, ref.gen_signed, true },
  { "sign", sign, ref.gen_signed, true },
  { "floor", math.floor, ref.gen_signed },
  { "ceil", math.ceil, ref.gen_signed },
  { "round", round_half_even, ref.gen_signed },
  { "log1p", function(x) return math.log(1 + x) end, ref.gen_positive },
  { "expm1", function(x) return math.exp(x) - 1 end, ref.gen_signed },
  { "reciprocal", function(x) return 1 / x end, ref.gen_nonzero },
  { "square", function(x) return x * x end, ref.gen_signed, true },
  { "neg", function(x) return -x end, ref.gen_signed, true },
}

describe("unary ops", function()
  for _, u in ipairs(UNARY) do
    local name, f, gen = u[1], u[2], u[3]
    for _, dtype in ipairs({ "float32", "float64" }) do
      it(name .. " on " .. dtype .. " (contiguous, transposed, narrowed, expanded)", function()
        for _, shape in ipairs({ { 3, 4 }, { 2, 3, 5 } }) do
          for _, v in ipairs(ref.variants(lg, shape, gen, dtype)) do
            local what = name .. " " .. dtype .. " " .. v.name .. " " .. ref.shape_str(shape)
            ref.assert_equal(v.t, v.want, what .. " input")
            local want = ref.map(v.want, f)
            local got = v.t[name](v.t)
            assert.are.equal(dtype, got.dtype, what)
            ref.assert_close(got, want, TOL[dtype][1], TOL[dtype][2], what)
            if name ~= "neg" then
              ref.assert_close(lg[name](v.t), want, TOL[dtype][1], TOL[dtype][2], "lg." .. what)
            end
          end
        end
      end)
    end
  end

  it("on int64: float math gives the default float dtype, neg abs relu sign square stay int64",
    function()
      local x = lg.tensor({ { 1, 4 }, { 9, 2 } }, { dtype = "int64" })
      for _, u in ipairs(UNARY) do
        local name, f, keeps = u[1], u[2], u[4]
        if name ~= "floor" and name ~= "ceil" and name ~= "round" then
          local got = x[name](x)
          assert.are.equal(keeps and "int64" or "float32", got.dtype, name)
          ref.assert_close(got, ref.map(x, f), 2e-6, 1e-6, name .. " int64")
        end
      end
      local n = lg.tensor({ -3, 0, 2 }, { dtype = "int64" })
      assert.are.same({ 3, 0, -2 }, (-n):tolist())
      assert.are.same({ -1, 0, 1 }, n:sign():tolist())
      assert.are.same({ 0, 0, 2 }, n:relu():tolist())
    end)

  it("round is half to even, sign of zero is zero", function()
    ref.assert_equal(lg.tensor({ 0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6 }):round(),
      { 0, 2, 2, 0, -2, 2, -3 })
    assert.are.same({ -1, 0, 1 }, lg.tensor({ -2.5, 0, 3 }):sign():tolist())
  end)

  it("unary minus works on every layout", function()
    for _, v in ipairs(ref.variants(lg, { 3, 4 }, ref.gen_signed)) do
      ref.assert_equal(-v.t, ref.map(v.want, function(x) return -x end), v.name)
    end
  end)
end)

-- name, operator, reference, generator for the right operand
local BINARY = {
  { "add", function(a, b) return a + b end, ref.gen_signed },
  { "sub", function(a, b) return a - b end, ref.gen_signed },
  { "mul", function(a, b) return a * b end, ref.gen_signed },
  { "div", function(a, b) return a / b end, ref.gen_nonzero },
  { "floor_divide", function(a, b) return a // b end, ref.gen_nonzero },
  { "remainder", function(a, b) return a % b end, ref.gen_nonzero },
  { "maximum", lg.maximum, ref.gen_signed, math.max },
  { "minimum", lg.minimum, ref.gen_signed, math.min },
}
local POW = { "pow", function(a, b) return a ^ b end, ref.gen_signed }

local function lhs_gen(name) return name == "pow" and ref.gen_positive or ref.gen_signed end
local function reference(b) return b[4] or b[2] end
describe("binary ops", function()
  local all = { table.unpack(BINARY) }
  all[#all + 1] = POW
  for _, b in ipairs(all) do
    local name, op, rgen = b[1], b[2], b[3]
    it(name .. " on every layout pair, float32 and float64", function()
      for _, dtype in ipairs({ "float32", "float64" }) do
        local L = ref.variants(lg, { 3, 4 }, lhs_gen(name), dtype)
        local R = ref.variants(lg, { 3, 4 }, rgen, dtype)
        for _, l in ipairs(L) do
          for _, r in ipairs(R) do
            local what = name .. " " .. dtype .. " " .. l.name .. " x " .. r.name
            local got = op(l.t, r.t)
            assert.are.equal(dtype, got.dtype, what)
            ref.assert_close(got, ref.map2(l.want, r.want, reference(b)), TOL[dtype][1],
              TOL[dtype][2], what)
          end
        end
      end
    end)
  end

  local PAIRS = {
    { { 3, 1 }, { 1, 4 } }, { { 2, 3, 4 }, { 4 } }, { { 4 }, { 2, 3, 4 } }, { {}, { 2, 3 } },
    { { 2, 3 }, {} }, { { 2, 1, 4 }, { 3, 1 } }, { { 5 }, { 1 } }, { { 0, 3 }, { 3 } },
    { { 0, 3 }, { 1, 3 } }, { { 2, 0 }, { 2, 1 } }, { { 1 }, { 0 } },
  }
  for _, p in ipairs(PAIRS) do
    it("broadcasts " .. ref.shape_str(p[1]) .. " with " .. ref.shape_str(p[2]), function()
      local want_shape = ref.broadcast_shape(p[1], p[2])
      for _, b in ipairs(BINARY) do
        for _, l in ipairs(ref.variants(lg, p[1], ref.gen_signed)) do
          local r = ref.variants(lg, p[2], b[3])
          r = r[#r]
          local got = b[2](l.t, r.t)
          assert.are.same(want_shape, got.shape, b[1])
          ref.assert_close(got, ref.map2(l.want, r.want, reference(b)), 2e-6, 1e-6,
            b[1] .. " " .. l.name .. " x " .. r.name)
        end
      end
    end)
  end

  it("maximum and minimum are also methods and propagate NaN", function()
    local a, c = lg.tensor({ 1, 5, 0 / 0 }), lg.tensor({ 3, 2, 1 })
    ref.assert_equal(a:maximum(c), { 3, 5, 0 / 0 })
    ref.assert_equal(a:minimum(c), { 1, 2, 0 / 0 })
    ref.assert_equal(lg.minimum(c, a), { 1, 2, 0 / 0 })
  end)

  it("floor_divide and remainder follow Python's sign rules, also on int64", function()
    local a = lg.tensor({ 7, -7, 7, -7, 7.5 })
    local d = lg.tensor({ 2, 2, -2, -2, 2 })
    ref.assert_equal(a // d, { 3, -4, -4, 3, 3 })
    ref.assert_equal(a % d, { 1, 1, -1, -1, 1.5 })
    local ai = lg.tensor({ 7, -7, 7, -7 }, { dtype = "int64" })
    local di = lg.tensor({ 2, 2, -2, -2 }, { dtype = "int64" })
    assert.are.equal("int64", (ai // di).dtype)
    assert.are.same({ 3, -4, -4, 3 }, (ai // di):tolist())
    assert.are.equal("int64", (ai % di).dtype)
    assert.are.same({ 1, 1, -1, -1 }, (ai % di):tolist())
    assert.are.same({ 1, 2, 1, 2 }, (ai % 3):tolist())
  end)
end)

describe("numbers on either side", function()
  local CASES = {
    { "t + 2", function(t) return t + 2 end, function(x) return x + 2 end },
    { "2 + t", function(t) return 2 + t end, function(x) return 2 + x end },
    { "1 - t", function(t) return 1 - t end, function(x) return 1 - x end },
    { "t - 0.5", function(t) return t - 0.5 end, function(x) return x - 0.5 end },
    { "3 * t", function(t) return 3 * t end, function(x) return 3 * x end },
    { "t * 0.5", function(t) return t * 0.5 end, function(x) return x * 0.5 end },
    { "t / 4", function(t) return t / 4 end, function(x) return x / 4 end },
    { "8 / t", function(t) return 8 / t end, function(x) return 8 / x end, ref.gen_nonzero },
    { "t ^ 2", function(t) return t ^ 2 end, function(x) return x ^ 2 end },
    { "2 ^ t", function(t) return 2 ^ t end, function(x) return 2 ^ x end },
    { "t ^ 0.5", function(t) return t ^ 0.5 end, function(x) return x ^ 0.5 end, ref.gen_positive },
    { "t // 2", function(t) return t // 2 end, function(x) return x // 2 end },
    { "7 // t", function(t) return 7 // t end, function(x) return 7 // x end, ref.gen_nonzero },
    { "t % 1.5", function(t) return t % 1.5 end, function(x) return x % 1.5 end },
    { "5 % t", function(t) return 5 % t end, function(x) return 5 % x end, ref.gen_nonzero },
  }
  for _, c in ipairs(CASES) do
    it(c[1] .. " on every layout", function()
      for _, dtype in ipairs({ "float32", "float64" }) do
        for _, v in ipairs(ref.variants(lg, { 3, 4 }, c[4] or ref.gen_signed, dtype)) do
          local got = c[2](v.t)
          assert.are.equal(dtype, got.dtype, c[1])
          ref.assert_close(got, ref.map(v.want, c[3]), TOL[dtype][1], TOL[dtype][2],
            c[1] .. " " .. dtype .. " " .. v.name)
        end
      end
    end)
  end

  it("0-d tensors combine with numbers and tensors", function()
    local s = lg.tensor(3)
    assert.are.equal(5, (s + 2):item())
    assert.are.same({}, (2 * s).shape)
    ref.assert_equal(s * lg.tensor({ 1, 2 }), { 3, 6 })
  end)
end)

describe("dtype promotion", function()
  local f32 = lg.tensor({ 1, 2 })
  local f64 = lg.tensor({ 1, 2 }, { dtype = "float64" })
  local i64 = lg.tensor({ 7, 2 }, { dtype = "int64" })
  local CASES = {
    { "f32 + f64", function() return f32 + f64 end, "float64", { 2, 4 } },
    { "f64 * f32", function() return f64 * f32 end, "float64", { 1, 4 } },
    { "i64 + f32", function() return i64 + f32 end, "float32", { 8, 4 } },
    { "f32 - i64", function() return f32 - i64 end, "float32", { -6, 0 } },
    { "i64 + f64", function() return i64 + f64 end, "float64", { 8, 4 } },
    { "i64 + i64", function() return i64 + i64 end, "int64", { 14, 4 } },
    { "i64 / i64 (true division)", function() return i64 / lg.tensor({ 2, 4 }, { dtype = "int64" }) end,
      "float32", { 3.5, 0.5 } },
    { "f32 * 2.5", function() return f32 * 2.5 end, "float32", { 2.5, 5 } },
    { "f64 * 2", function() return f64 * 2 end, "float64", { 2, 4 } },
    { "i64 + 2", function() return i64 + 2 end, "int64", { 9, 4 } },
    { "2 * i64", function() return 2 * i64 end, "int64", { 14, 4 } },
    { "i64 * 0.5", function() return i64 * 0.5 end, "float32", { 3.5, 1 } },
    { "i64 / 2", function() return i64 / 2 end, "float32", { 3.5, 1 } },
    { "7 / i64", function() return 7 / i64 end, "float32", { 1, 3.5 } },
    { "i64 ^ 2", function() return i64 ^ 2 end, "int64", { 49, 4 } },
    { "i64 ^ 0.5", function() return i64 ^ 0.5 end, "float32", { math.sqrt(7), math.sqrt(2) } },
    { "i64 // 2", function() return i64 // 2 end, "int64", { 3, 1 } },
    { "maximum(i64, f32)", function() return lg.maximum(i64, f32) end, "float32", { 7, 2 } },
  }
  for _, c in ipairs(CASES) do
    it(c[1] .. " -> " .. c[3], function()
      local r = c[2]()
      assert.are.equal(c[3], r.dtype)
      ref.assert_close(r, c[4], 1e-6, 0, c[1])
    end)
  end

  it("numbers and int64 division follow the default dtype when it is float64", function()
    lg.set_default_dtype("float64")
    local ok, err = pcall(function()
      assert.are.equal("float64", (i64 * 0.5).dtype)
      assert.are.equal("float64", (i64 / i64).dtype)
      assert.are.equal("float64", i64:exp().dtype)
      assert.are.equal("float32", (f32 * 0.5).dtype)
    end)
    lg.set_default_dtype("float32")
    assert(ok, err)
  end)
end)

describe("comparisons", function()
  local OPS = {
    eq = function(a, b) return a == b end, ne = function(a, b) return a ~= b end,
    lt = function(a, b) return a < b end, le = function(a, b) return a <= b end,
    gt = function(a, b) return a > b end, ge = function(a, b) return a >= b end,
  }
  local function b01(f) return function(a, b) return f(a, b) and 1 or 0 end end
  local ints = function(idx) return ref.gen_int(idx) // 3 end
  for name, f in pairs(OPS) do
    it(name .. " gives 0/1 in the promoted dtype, on every layout and with numbers", function()
      for _, dtype in ipairs({ "float32", "float64", "int64" }) do
        local L = ref.variants(lg, { 3, 4 }, ints, dtype)
        local R = ref.variants(lg, { 3, 4 }, function(i) return ints({ i[2], i[1] }) end, dtype)
        for _, l in ipairs(L) do
          for _, r in ipairs(R) do
            local got = l.t[name](l.t, r.t)
            assert.are.equal(dtype, got.dtype)
            ref.assert_equal(got, ref.map2(l.want, r.want, b01(f)),
              name .. " " .. dtype .. " " .. l.name .. " x " .. r.name)
          end
          ref.assert_equal(l.t[name](l.t, 0), ref.map(l.want, function(x) return b01(f)(x, 0) end))
        end
        ref.assert_equal(lg[name](L[1].t, R[1].t), ref.map2(L[1].want, R[1].want, b01(f)))
      end
      local col = lg.tensor({ { 1 }, { 2 } })
      ref.assert_equal(col[name](col, lg.tensor({ 1, 2, 3 })),
        ref.map2({ { 1 }, { 2 } }, { 1, 2, 3 }, b01(f)), "broadcast")
    end)
  end

  it("mixed dtypes promote, and counting correct predictions works", function()
    local pred = lg.tensor({ 1, 2, 3, 3 }, { dtype = "int64" })
    local labels = lg.tensor({ 1, 3, 3, 2 }, { dtype = "int64" })
    local n = pred:eq(labels):sum():item()
    assert.are.equal(2, n)
    assert.are.equal("integer", math.type(n))
    assert.are.equal("float64", pred:lt(lg.tensor({ 2 }, { dtype = "float64" })).dtype)
    assert.are.equal("float32", pred:ge(lg.ones(4)).dtype)
  end)

  it("int64 compared with a fractional number compares exactly (no truncation)", function()
    local x = lg.tensor({ 2, 3 }, { dtype = "int64" })
    ref.assert_equal(x:lt(2.5), { 1, 0 })
    ref.assert_equal(x:eq(2.5), { 0, 0 })
    ref.assert_equal(x:ge(2.5), { 0, 1 })
    ref.assert_equal(x:eq(3), { 0, 1 })
    assert.are.equal("int64", x:eq(3).dtype)
  end)

  it("NaN compares unequal to everything", function()
    local x = lg.tensor({ 0 / 0, 1 })
    assert.are.same({ 0, 1 }, x:eq(x):tolist())
    assert.are.same({ 1, 0 }, x:ne(x):tolist())
    assert.are.same({ 0, 0 }, x:lt(0 / 0):tolist())
  end)
end)

describe("where and clamp", function()
  it("where picks by a nonzero mask of any dtype, tensors or numbers, with broadcasting", function()
    local a = lg.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    local b = lg.tensor({ { -1, -2, -3 }, { -4, -5, -6 } })
    local m = lg.tensor({ { 2, 0, -1 }, { 0, 0.5, 0 } })
    ref.assert_equal(lg.where(m, a, b), { { 1, -2, 3 }, { -4, 5, -6 } })
    local mi = lg.tensor({ { 1, 0, 1 }, { 0, 1, 0 } }, { dtype = "int64" })
    ref.assert_equal(lg.where(mi, a, 0), { { 1, 0, 3 }, { 0, 5, 0 } })
    ref.assert_equal(lg.where(mi, 9, b), { { 9, -2, 9 }, { -4, 9, -6 } })
    ref.assert_equal(lg.where(mi:t(), a:t(), b:t()), { { 1, -4 }, { -2, 5 }, { 3, -6 } })
    local col = lg.tensor({ { 1 }, { 0 } })
    ref.assert_equal(lg.where(col, lg.tensor({ 7, 8, 9 }), -1), { { 7, 8, 9 }, { -1, -1, -1 } })
    ref.assert_equal(lg.where(a:gt(3), 1, 0), { { 0, 0, 0 }, { 1, 1, 1 } })
    assert.are.equal("float64", lg.where(mi, a, b:to("float64")).dtype)
  end)

  it("clamp with both bounds, either one nil, on every layout", function()
    local CASES = {
      { -1, 1, function(x) return math.min(math.max(x, -1), 1) end },
      { nil, 0.5, function(x) return math.min(x, 0.5) end },
      { 0, nil, function(x) return math.max(x, 0) end },
    }
    for _, c in ipairs(CASES) do
      for _, v in ipairs(ref.variants(lg, { 3, 4 }, ref.gen_signed)) do
        local what = "clamp(" .. tostring(c[1]) .. "," .. tostring(c[2]) .. ") " .. v.name
        ref.assert_equal(v.t:clamp(c[1], c[2]), ref.map(v.want, c[3]), what)
      end
    end
    local i = lg.tensor({ -5, 0, 5 }, { dtype = "int64" })
    local c = i:clamp(-2, 2)
    assert.are.equal("int64", c.dtype)
    assert.are.same({ -2, 0, 2 }, c:tolist())
    assert.are.same({ 0, 0, 5 }, i:clamp(0):tolist())
  end)
end)

describe("extreme values", function()
  local inf, nan = math.huge, 0 / 0
  local CASES = {
    { "sigmoid saturates", function() return lg.tensor({ -1000, 1000, 0 }):sigmoid() end, { 0, 1, 0.5 } },
    { "tanh saturates", function() return lg.tensor({ -1000, 1000, 0 }):tanh() end, { -1, 1, 0 } },
    { "exp overflows to inf", function() return lg.tensor({ 1000, -1000 }):exp() end, { inf, 0 } },
    { "log of 0 and of a negative", function() return lg.tensor({ 0, -1 }):log() end, { -inf, nan } },
    { "sqrt of a negative", function() return lg.tensor({ -1, 4 }):sqrt() end, { nan, 2 } },
    { "reciprocal and rsqrt of 0", function() return lg.cat({ lg.zeros(1):reciprocal(), lg.zeros(1):rsqrt() }) end,
      { inf, inf } },
    { "float // 0", function() return lg.tensor({ 1, -1, 0 }) // 0.0 end, { inf, -inf, nan } },
    { "float % 0", function() return lg.tensor({ 1, -1 }) % 0.0 end, { nan, nan } },
    { "0 ^ 0", function() return lg.zeros(2) ^ 0 end, { 1, 1 } },
    { "abs keeps nan", function() return lg.tensor({ nan, -nan }):abs() end, { nan, nan } },
    { "inf - inf", function() return lg.tensor({ inf }) - lg.tensor({ inf }) end, { nan } },
  }
  for _, c in ipairs(CASES) do
    it(c[1], function() ref.assert_close(c[2](), c[3], 1e-6, 0, c[1]) end)
  end

  it("expm1 and log1p are accurate near 0 (float64)", function()
    local x = lg.tensor({ 1e-10, -1e-12 }, { dtype = "float64" })
    ref.assert_close(x:expm1(), { 1.00000000005e-10, -9.999999999995e-13 }, 1e-14, 0)
    ref.assert_close(x:log1p(), { 9.9999999995e-11, -1.0000000000005e-12 }, 1e-14, 0)
    ref.assert_close(lg.tensor({ -1 }):log1p(), { -inf }, 0, 0)
  end)
end)

describe("large non-contiguous inputs (the parallel path)", function()
  it("elementwise results match a Lua reference and do not depend on the thread count", function()
    local n0 = lg.get_num_threads()
    lg.manual_seed(11)
    local x, y = lg.randn(700, 600):t(), lg.randn(1, 700):expand(600, 700)
    local z = lg.randn(600, 710):narrow(2, 5, 700)
    local function f() return ((x * y + z):tanh() - x:abs():sqrt()) / (y:exp() + 1) end
    lg.set_num_threads(1); local r1 = f()
    lg.set_num_threads(2); local r2 = f()
    lg.set_num_threads(n0)
    ref.assert_equal(r2, r1, "1 vs 2 threads")
    local want = ref.mapn(function(a, b, c)
      return (tanh(a * b + c) - math.sqrt(math.abs(a))) / (math.exp(b) + 1)
    end, x, y, z)
    ref.assert_close(r1, want, 1e-5, 1e-6, "against the reference")
  end)
end)
