-- Random numbers: reproducible by seed (also across thread counts and processes), in range,
-- with the right moments.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"
local util = require "helpers.util"

local N = 100000

local function moments(t)
  local l = t:to("float64"):flatten():tolist()
  local s, s2, lo, hi = 0, 0, math.huge, -math.huge
  for _, v in ipairs(l) do
    s = s + v
    s2 = s2 + v * v
    lo, hi = math.min(lo, v), math.max(hi, v)
  end
  local mean = s / #l
  return mean, math.sqrt(s2 / #l - mean * mean), lo, hi
end

local GENERATORS = {
  { "rand", function() return lg.rand(50) end },
  { "rand float64", function() return lg.rand({ 7, 3 }, { dtype = "float64" }) end },
  { "randn", function() return lg.randn(4, 5) end },
  { "randn float64", function() return lg.randn(33, { dtype = "float64" }) end },
  { "randint", function() return lg.randint(-5, 5, { 40 }) end },
  { "uniform_", function() return lg.empty(30):uniform_(-2, 3) end },
  { "normal_", function() return lg.empty(30, { dtype = "float64" }):normal_(1, 2) end },
  { "rand_like", function() return lg.rand_like(lg.zeros(2, 9)) end },
  { "randn_like", function() return lg.randn_like(lg.zeros(9, { dtype = "float64" })) end },
}

describe("manual_seed", function()
  for _, g in ipairs(GENERATORS) do
    it(g[1] .. ": the same seed gives bit-identical tensors, another seed differs", function()
      lg.manual_seed(1234)
      local a = g[2]()
      lg.manual_seed(1234)
      local b = g[2]()
      ref.assert_equal(b, a, g[1] .. " repeated")
      lg.manual_seed(1235)
      local c = g[2]()
      local ok = ref.close(c, a, 0, 0)
      assert.is_false(ok, g[1] .. ": seeds 1234 and 1235 gave the same numbers")
      local d = g[2]()
      assert.is_false((ref.close(d, c, 0, 0)), g[1] .. ": two draws in a row are equal")
    end)
  end

  it("gives the same numbers with 1 and 2 threads, for large tensors", function()
    local n0 = lg.get_num_threads()
    local function draw(threads)
      lg.set_num_threads(threads)
      lg.manual_seed(99)
      return { lg.rand(N), lg.randn(N, { dtype = "float64" }), lg.randint(0, 1000, { N }),
        lg.empty(N):normal_(0, 1) }
    end
    local one, two = draw(1), draw(2)
    lg.set_num_threads(n0)
    for i = 1, #one do
      assert.are.equal(0, (one[i] - two[i]):abs():sum():item(), "generator " .. i .. " differs")
    end
  end)

  it("gives the same numbers in a fresh process", function()
    local code = "local lg = require 'luagrad'; lg.manual_seed(2024); " ..
      "local t = lg.randn(5, {dtype='float64'}); " ..
      "for i = 1, 5 do io.write(string.format('%a ', t[i])) end"
    local out, ok = util.run(util.LUAGRAD .. " -e " .. util.shell_quote(code) .. " 2>&1")
    assert.is_true(ok == true, "child failed: " .. out)
    lg.manual_seed(2024)
    local t = lg.randn(5, { dtype = "float64" })
    local mine = {}
    for i = 1, 5 do mine[i] = string.format("%a", t[i]) end
    assert.are.equal(table.concat(mine, " "), out)
  end)
end)

describe("distributions", function()
  it("rand is in [0, 1) with mean 1/2 and std 1/sqrt(12)", function()
    lg.manual_seed(1)
    local t = lg.rand(N)
    assert.are.equal("float32", t.dtype)
    local mean, std, lo, hi = moments(t)
    assert.is_true(lo >= 0 and hi < 1, "range [" .. lo .. ", " .. hi .. "]")
    assert.is_true(math.abs(mean - 0.5) < 0.01, "mean " .. mean)
    assert.is_true(math.abs(std - 1 / math.sqrt(12)) < 0.005, "std " .. std)
    assert.is_true(lo < 0.001 and hi > 0.999, "range [" .. lo .. ", " .. hi .. "] too narrow")
  end)

  it("randn has mean 0 and std 1", function()
    lg.manual_seed(2)
    local mean, std, lo, hi = moments(lg.randn(N))
    assert.is_true(math.abs(mean) < 0.02, "mean " .. mean)
    assert.is_true(math.abs(std - 1) < 0.02, "std " .. std)
    assert.is_true(lo < -3.5 and hi > 3.5, "range [" .. lo .. ", " .. hi .. "]")
    local inside = lg.randn(N):abs():lt(1):sum():item() / N
    assert.is_true(math.abs(inside - 0.6827) < 0.01, "P(|x|<1) = " .. inside)
  end)

  it("randint is inclusive-exclusive, int64, and hits every value", function()
    lg.manual_seed(3)
    local t = lg.randint(-3, 4, { 100, 100 })
    assert.are.equal("int64", t.dtype)
    assert.are.same({ 100, 100 }, t.shape)
    assert.are.equal(-3, t:min():item())
    assert.are.equal(3, t:max():item())
    local counts = {}
    for _, v in ipairs(ref.flatten(t:tolist())) do
      assert.are.equal("integer", math.type(v))
      counts[v] = (counts[v] or 0) + 1
    end
    for v = -3, 3 do
      assert.is_true(math.abs(counts[v] / 10000 - 1 / 7) < 0.02, "frequency of " .. v)
    end
    assert.are.same({ 0, 0, 0 }, lg.randint(0, 1, { 3 }):tolist())
  end)

  it("uniform_ and normal_ fill in place with the given parameters", function()
    lg.manual_seed(4)
    local u = lg.empty(N, { dtype = "float64" })
    local r = u:uniform_(-2, 6)
    assert.are.same({ N }, r.shape)
    local mean, std, lo, hi = moments(u)
    assert.is_true(lo >= -2 and hi < 6, "range [" .. lo .. ", " .. hi .. "]")
    assert.is_true(math.abs(mean - 2) < 0.05, "mean " .. mean)
    assert.is_true(math.abs(std - 8 / math.sqrt(12)) < 0.03, "std " .. std)
    local n = lg.zeros(N)
    n:normal_(3, 0.5)
    mean, std = moments(n)
    assert.is_true(math.abs(mean - 3) < 0.01, "mean " .. mean)
    assert.is_true(math.abs(std - 0.5) < 0.01, "std " .. std)
  end)

  it("in-place random fills a non-contiguous view and nothing else", function()
    lg.manual_seed(5)
    local b = lg.zeros(4, 6)
    b:narrow(2, 2, 3):uniform_(1, 2)
    local l = b:tolist()
    for i = 1, 4 do
      for j = 1, 6 do
        if j >= 2 and j <= 4 then
          assert.is_true(l[i][j] >= 1 and l[i][j] < 2, "inside " .. i .. "," .. j)
        else
          assert.are.equal(0, l[i][j], "outside " .. i .. "," .. j)
        end
      end
    end
    b:t():normal_(0, 1)
    assert.is_true(b:eq(0):sum():item() == 0, "normal_ through a transposed view missed entries")
  end)

  it("shapes as varargs or a table; zero-size works", function()
    assert.are.same({ 2, 3 }, lg.rand(2, 3).shape)
    assert.are.same({ 2, 3 }, lg.randn({ 2, 3 }).shape)
    assert.are.same({ 0, 3 }, lg.rand(0, 3).shape)
    assert.are.same({ 0 }, lg.randint(0, 5, { 0 }).shape)
  end)
end)
