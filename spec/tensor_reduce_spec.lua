-- Reductions over everything and along a dim (1-based, negative from the end), keepdim,
-- on every layout, against a slow Lua reference; dtypes; options; NaN.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"

local F = ref.fold
-- name, reference fold, extra args after (dim, keepdim)
local OPS = {
  { "sum", F.sum }, { "mean", F.mean }, { "var", F.var }, { "std", F.std },
  { "prod", F.prod }, { "norm", F.norm }, { "logsumexp", F.logsumexp },
  { "max", F.max }, { "min", F.min }, { "argmax", F.argmax }, { "argmin", F.argmin },
}
local TOL = { float32 = { 1e-5, 1e-5 }, float64 = { 1e-12, 1e-12 } }

-- values with few ties: multiples of 1/8 in [-3, 3]
local function gen(idx)
  local h = 0
  for d, i in ipairs(idx) do h = h * 7 + i * (2 * d + 1) end
  return ((h * 29) % 49 - 24) / 8
end

local function call(t, name, dim, keepdim)
  if name == "norm" then
    if dim == nil then return t:norm() end
    return t:norm(2, dim, keepdim)
  end
  if dim == nil then return t[name](t) end
  return t[name](t, dim, keepdim)
end

describe("reductions", function()
  for _, o in ipairs(OPS) do
    local name, fold = o[1], o[2]
    for _, dtype in ipairs({ "float32", "float64" }) do
      it(name .. " " .. dtype .. " over everything and each dim, keepdim, on every layout", function()
        for _, shape in ipairs({ { 3, 4 }, { 2, 3, 4 } }) do
          for _, v in ipairs(ref.variants(lg, shape, gen, dtype)) do
            local dims = { false, 1, 2, -1 }
            if #shape == 3 then dims[#dims + 1] = 3 end
            for _, dim in ipairs(dims) do
              for _, keepdim in ipairs({ false, true }) do
                local d = dim or nil
                if d ~= nil or not keepdim then
                  local what = string.format("%s %s %s %s dim=%s keepdim=%s", name, dtype, v.name,
                    ref.shape_str(shape), tostring(d), tostring(keepdim))
                  local got = call(v.t, name, d, keepdim)
                  local want = ref.reduce(v.want, d, keepdim, fold)
                  local isarg = name == "argmax" or name == "argmin"
                  assert.are.equal(isarg and "int64" or dtype, got.dtype, what)
                  ref.assert_close(got, want, TOL[dtype][1], TOL[dtype][2], what)
                end
              end
            end
          end
        end
      end)
    end
  end

  it("max and min with a dim return values and 1-based int64 indices", function()
    for _, v in ipairs(ref.variants(lg, { 3, 4 }, gen)) do
      for _, dim in ipairs({ 1, 2, -1 }) do
        for _, keepdim in ipairs({ false, true }) do
          local what = v.name .. " dim " .. dim .. " keepdim " .. tostring(keepdim)
          local mv, mi = v.t:max(dim, keepdim)
          ref.assert_equal(mv, ref.reduce(v.want, dim, keepdim, F.max), "max values " .. what)
          assert.are.equal("int64", mi.dtype)
          ref.assert_equal(mi, ref.reduce(v.want, dim, keepdim, F.argmax), "max indices " .. what)
          local nv, ni = v.t:min(dim, keepdim)
          ref.assert_equal(nv, ref.reduce(v.want, dim, keepdim, F.min), "min values " .. what)
          ref.assert_equal(ni, ref.reduce(v.want, dim, keepdim, F.argmin), "min indices " .. what)
        end
      end
    end
  end)

  it("max and min without a dim give a single 0-d value", function()
    local t = lg.tensor({ { 1, 5 }, { -2, 3 } })
    local m, extra = t:max()
    assert.are.same({}, m.shape)
    assert.are.equal(5, m:item())
    assert.is_nil(extra)
    assert.are.equal(-2, t:min():item())
  end)

  it("sums of ones give integers when read", function()
    local s = lg.ones(3):sum():item()
    assert.are.equal(3, s)
    assert.are.equal("integer", math.type(s))
    assert.are.same({ 2, 2, 2 }, lg.ones(2, 3):sum(1):tolist())
  end)

  it("argmax and argmin pick the first occurrence", function()
    assert.are.equal(2, lg.tensor({ 1, 3, 3 }):argmax():item())
    assert.are.equal(2, lg.tensor({ 2, 1, 1 }):argmin():item())
    local t = lg.tensor({ { 1, 1 }, { 0, 2 }, { 2, 2 } })
    assert.are.same({ 3, 2 }, t:argmax(1):tolist())
    assert.are.same({ 1, 2, 1 }, t:argmax(2):tolist())
    assert.are.same({ { 1 }, { 1 }, { 1 } }, t:argmin(2, true):tolist())
    local _, i = t:max(2)
    assert.are.same({ 1, 2, 1 }, i:tolist())
    assert.are.equal("int64", t:argmax().dtype)
  end)
end)

describe("reduction dtypes", function()
  local x = lg.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "int64" })
  local CASES = {
    { "sum", "int64", 21 }, { "prod", "int64", 720 }, { "max", "int64", 6 }, { "min", "int64", 1 },
    { "mean", "float32", 3.5 }, { "var", "float32", 3.5 }, { "std", "float32", math.sqrt(3.5) },
    { "norm", "float32", math.sqrt(91) },
    { "logsumexp", "float32", F.logsumexp({ 1, 2, 3, 4, 5, 6 }) },
    { "argmax", "int64", 6 }, { "argmin", "int64", 1 },
  }
  for _, c in ipairs(CASES) do
    it(c[1] .. " of int64 gives " .. c[2], function()
      local r = x[c[1]](x)
      assert.are.equal(c[2], r.dtype)
      ref.assert_close(r, c[3], 1e-6, 0, c[1])
      local rd = x[c[1]](x, 2)
      assert.are.equal(c[2], rd.dtype)
    end)
  end

  it("int64 results read back as Lua integers", function()
    assert.are.equal("integer", math.type(x:sum():item()))
    assert.are.same({ 5, 7, 9 }, x:sum(1):tolist())
    assert.are.same({ 6, 120 }, x:prod(2):tolist())
  end)

  it("with float64 as default, int64 means are float64", function()
    lg.set_default_dtype("float64")
    local ok, err = pcall(function() assert.are.equal("float64", x:mean().dtype) end)
    lg.set_default_dtype("float32")
    assert(ok, err)
  end)
end)

describe("reduction options", function()
  local t = lg.tensor({ { 1, 2, 3, 4 }, { 2, 4, 6, 9 } }, { dtype = "float64" })

  it("var and std: unbiased by default, unbiased = false and correction = 0", function()
    ref.assert_close(t:var(2), ref.reduce(t, 2, false, F.var), 1e-12, 0)
    ref.assert_close(t:var(2, true, { unbiased = false }),
      ref.reduce(t, 2, true, function(l) return F.var(l, 0) end), 1e-12, 0)
    ref.assert_close(t:var({ correction = 0 }), F.var(ref.flatten(t:tolist()), 0), 1e-12, 0)
    ref.assert_close(t:std({ unbiased = false }), F.std(ref.flatten(t:tolist()), 0), 1e-12, 0)
    ref.assert_close(t:std(1, false, { correction = 0 }),
      ref.reduce(t, 1, false, function(l) return F.std(l, 0) end), 1e-12, 0)
    ref.assert_close(t:var(2, false, { correction = 2 }),
      ref.reduce(t, 2, false, function(l) return F.var(l, 2) end), 1e-12, 0)
  end)

  it("var of one element is NaN (unbiased), 0 with correction 0", function()
    local one = lg.tensor({ 5 })
    local v = one:var():item()
    assert.is_true(v ~= v, "expected nan, got " .. tostring(v))
    assert.are.equal(0, one:var({ correction = 0 }):item())
  end)

  it("norm with p = 1, 2, 3 and math.huge, over everything and along dims", function()
    local m = lg.tensor({ { 1, -2, 3 }, { -4, 5, -6 } }, { dtype = "float64" })
    for _, p in ipairs({ 1, 2, 3, math.huge }) do
      local fold = function(l) return F.norm(l, p) end
      ref.assert_close(m:norm(p), F.norm(ref.flatten(m:tolist()), p), 1e-12, 0, "p=" .. p)
      ref.assert_close(m:norm(p, 2), ref.reduce(m, 2, false, fold), 1e-12, 0, "p=" .. p)
      ref.assert_close(m:t():norm(p, 1, true), ref.reduce(m:t(), 1, true, fold), 1e-12, 0)
    end
    assert.are.equal(6, m:norm(math.huge):item())
    assert.are.equal(21, m:norm(1):item())
  end)

  it("logsumexp is stable for large values", function()
    local big = lg.tensor({ 1000, 1000 })
    ref.assert_close(big:logsumexp(), 1000 + math.log(2), 1e-6, 0)
    ref.assert_close(lg.tensor({ { -1000, -1000 } }):logsumexp(2), { -1000 + math.log(2) }, 1e-6, 0)
  end)
end)

describe("NaN in reductions", function()
  local nan = 0 / 0
  local t = lg.tensor({ { 1, nan, 3 }, { 4, 5, 6 } })

  it("propagates through max, min, sum", function()
    for _, name in ipairs({ "max", "min", "sum", "mean", "prod" }) do
      local v = t[name](t):item()
      assert.is_true(v ~= v, name .. " should be nan, got " .. tostring(v))
    end
    local mv, mi = t:max(2)
    ref.assert_equal(mv, { nan, 6 })
    assert.are.same({ 2, 3 }, mi:tolist())
    local nv, ni = t:min(2)
    ref.assert_equal(nv, { nan, 4 })
    assert.are.same({ 2, 1 }, ni:tolist())
    ref.assert_equal(t:max(1), { 4, nan, 6 })
    assert.are.same({ 2, 3 }, t:argmax(2):tolist())
  end)
end)

describe("reduction accuracy and edges", function()
  it("float32 sums of many elements are accurate (no naive float32 accumulation)", function()
    assert.are.equal(20000000, lg.ones(20000000):sum():item())
    ref.assert_close(lg.full({ 10000000 }, 0.1):mean(), 0.1, 1e-6, 0)
  end)

  it("sums and means of rows of every length 0-40 (16 partial sums and a tail) match a double loop", function()
    lg.manual_seed(21)
    for _, dt in ipairs({ "float32", "float64" }) do
      for R = 0, 40 do
        local x = lg.randn(3, R, { dtype = dt }) * 1e3
        local rows = x:tolist()
        local s, m = x:sum(2):tolist(), x:mean(2):tolist()
        for r = 1, 3 do
          local want, mag = 0, 0
          for i = 1, R do want, mag = want + rows[r][i], mag + math.abs(rows[r][i]) end
          -- double accumulation in any order: within a few ulp of the sum of |x|; float32 then
          -- rounds the result once
          local tol = 4e-16 * mag + (dt == "float32" and 6e-8 * math.abs(want) or 0)
          assert.is_true(math.abs(s[r] - want) <= tol, string.format("%s R=%d sum %.17g vs %.17g", dt, R, s[r], want))
          if R > 0 then
            assert.is_true(math.abs(m[r] - want / R) <= tol / R, string.format("%s R=%d mean", dt, R))
          else
            assert.is_true(m[r] ~= m[r], "mean of nothing is NaN")
          end
        end
      end
    end
  end)

  it("var is stable for data with a large offset", function()
    local x = lg.full({ 1000 }, 10000) + lg.arange(1000) % 2
    ref.assert_close(x:var(), 0.25 * 1000 / 999, 1e-4, 0)
  end)

  it("logsumexp handles infinities", function()
    local inf = math.huge
    ref.assert_close(lg.tensor({ -inf, -inf }):logsumexp(), -inf, 0, 0)
    ref.assert_close(lg.tensor({ -inf, 0 }):logsumexp(), 0, 0, 0)
    ref.assert_close(lg.tensor({ inf, 1 }):logsumexp(), inf, 0, 0)
    ref.assert_close(lg.tensor({ { -inf, -inf }, { 0, 0 } }):logsumexp(2), { -inf, math.log(2) }, 1e-6, 0)
  end)

  it("1-d reductions along dim 1 give 0-d or {1}", function()
    local t = lg.tensor({ 3, 1, 2 })
    assert.are.same({}, t:sum(1).shape)
    assert.are.same({ 1 }, t:sum(1, true).shape)
    assert.are.equal(6, t:sum(-1):item())
    local v, i = t:min(1)
    assert.are.equal(1, v:item())
    assert.are.equal(2, i:item())
  end)

  it("large transposed and narrowed inputs match the reference, any thread count", function()
    local n0 = lg.get_num_threads()
    lg.manual_seed(12)
    local x = lg.randn(500, 403, { dtype = "float64" }):t():narrow(1, 2, 400)
    for _, th in ipairs({ 1, 2 }) do
      lg.set_num_threads(th)
      ref.assert_close(x:sum(1), ref.reduce(x, 1, false, F.sum), 1e-12, 1e-12, "sum(1) threads " .. th)
      ref.assert_close(x:sum(2, true), ref.reduce(x, 2, true, F.sum), 1e-12, 1e-12, "sum(2) threads " .. th)
      ref.assert_equal(select(2, x:max(1)), ref.reduce(x, 1, false, F.argmax), "max(1) threads " .. th)
      ref.assert_close(x:var(2), ref.reduce(x, 2, false, F.var), 1e-10, 1e-12, "var(2) threads " .. th)
    end
    lg.set_num_threads(n0)
  end)
end)
