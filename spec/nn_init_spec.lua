-- nn.init: PyTorch's fan and gain rules, and the samples' bounds, means and variances against
-- the formulas for several fan sizes.
--
-- Tolerances come from the sample size n (every tensor here has n >= 18,000 elements) and
-- are 5 standard deviations of the statistic, so a correct initializer fails with
-- probability below 1e-6 per check:
--   sample variance s^2 of U(-b, b): sd(s^2) / sigma^2 = sqrt((mu4 / sigma^4 - 1) / n)
--                                    = sqrt((9/5 - 1) / n) = sqrt(0.8 / n)
--   sample variance of N(0, s^2):    sd(s^2) / sigma^2 = sqrt(2 / n)
--   sample mean:                     sd = sigma / sqrt(n)
--   largest |x| of U(-b, b):         P(max |x| < (1 - 20/n) b) = (1 - 20/n)^n ~ e^-20
--   fraction of N(0, s^2) within s:  0.682689..., sd sqrt(p (1 - p) / n)
local lg = require "luagrad"
local nn = lg.nn
local init = nn.init

local SHAPES = {
  { 256, 128 },          -- fan_in 128, fan_out 256
  { 64, 1024 },          -- fan_in 1024, fan_out 64
  { 1000, 30 },          -- fan_in 30, fan_out 1000
  { 64, 32, 3, 3 },      -- receptive field 9: fan_in 288, fan_out 576
}

local function fans(shape)
  local r = 1
  for i = 3, #shape do r = r * shape[i] end
  return shape[2] * r, shape[1] * r
end

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

local function stats(t)
  local d = t:to("float64")
  return d:mean():item(), d:var():item(), d:abs():max():item(), d
end

local function check_uniform(t, bound, what)
  local n = t:numel()
  local mean, var, maxabs = stats(t)
  local sigma2 = bound * bound / 3
  assert(maxabs <= bound, string.format("%s: max |x| %.6g exceeds the bound %.6g", what, maxabs, bound))
  assert(maxabs > (1 - 20 / n) * bound, string.format("%s: max |x| %.6g is short of the bound %.6g", what, maxabs, bound))
  assert(math.abs(mean) < 5 * math.sqrt(sigma2 / n), string.format("%s: mean %.3g", what, mean))
  assert(math.abs(var / sigma2 - 1) < 5 * math.sqrt(0.8 / n),
    string.format("%s: variance %.6g, formula %.6g", what, var, sigma2))
end

local function check_normal(t, std, what)
  local n = t:numel()
  local mean, var, _, d = stats(t)
  assert(math.abs(mean) < 5 * std / math.sqrt(n), string.format("%s: mean %.3g", what, mean))
  assert(math.abs(var / (std * std) - 1) < 5 * math.sqrt(2 / n),
    string.format("%s: variance %.6g, formula %.6g", what, var, std * std))
  local p = 0.6826894921370859
  local within = d:abs():le(std):mean():item()
  assert(math.abs(within - p) < 5 * math.sqrt(p * (1 - p) / n), string.format("%s: %.4f within one std", what, within))
end

describe("nn.init fans and gains", function()
  it("computes fans as PyTorch: 2-d (out, in), and receptive fields for more dimensions", function()
    assert.are.same({ 4, 3 }, { init.calculate_fan_in_and_fan_out(lg.empty(3, 4)) })
    assert.are.same({ 36, 72 }, { init.calculate_fan_in_and_fan_out(lg.empty(8, 4, 3, 3)) })
    assert.are.same({ 10, 25 }, { init.calculate_fan_in_and_fan_out(lg.empty(5, 2, 5)) })
    local ok, err = pcall(init.kaiming_uniform_, lg.empty(5))
    assert.is_false(ok)
    assert.matches("fewer than 2 dimensions", err)
  end)

  it("has PyTorch's gains", function()
    assert.are.equal(1, init.calculate_gain("linear"))
    assert.are.equal(1, init.calculate_gain("conv2d"))
    assert.are.equal(1, init.calculate_gain("sigmoid"))
    assert.are.equal(5 / 3, init.calculate_gain("tanh"))
    assert.are.equal(math.sqrt(2), init.calculate_gain("relu"))
    assert.are.equal(3 / 4, init.calculate_gain("selu"))
    assert.are.equal(math.sqrt(2 / (1 + 0.01 ^ 2)), init.calculate_gain("leaky_relu"))
    assert.are.equal(math.sqrt(2 / (1 + 0.2 ^ 2)), init.calculate_gain("leaky_relu", 0.2))
    assert.are.equal(math.sqrt(1 / 3), init.calculate_gain("leaky_relu", math.sqrt(5)))
    assert.has_error(function() init.calculate_gain("swish") end, "nn.init.calculate_gain: unsupported nonlinearity 'swish'")
  end)
end)

describe("nn.init distributions", function()
  for _, shape in ipairs(SHAPES) do
    local fan_in, fan_out = fans(shape)
    local label = string.format("shape {%s} (fan_in %d, fan_out %d, n %d)", table.concat(shape, ","), fan_in, fan_out,
      numel(shape))

    it("kaiming_uniform_ " .. label, function()
      lg.manual_seed(1)
      local t = lg.empty(shape)
      assert.are.equal(t, init.kaiming_uniform_(t))                                  -- a = 0, leaky_relu
      check_uniform(t, math.sqrt(2 / (1 + 0)) * math.sqrt(3 / fan_in), "default")
      init.kaiming_uniform_(t, { a = math.sqrt(5) })                                  -- Linear's init
      check_uniform(t, 1 / math.sqrt(fan_in), "a = sqrt(5)")
      init.kaiming_uniform_(t, { mode = "fan_out", nonlinearity = "relu" })
      check_uniform(t, math.sqrt(2) * math.sqrt(3 / fan_out), "fan_out, relu")
      init.kaiming_uniform_(t, 0.5)                                                   -- plain a
      check_uniform(t, math.sqrt(2 / 1.25) * math.sqrt(3 / fan_in), "a = 0.5")
    end)

    it("kaiming_normal_ " .. label, function()
      lg.manual_seed(2)
      local t = lg.empty(shape, { dtype = "float64" })
      assert.are.equal(t, init.kaiming_normal_(t, { nonlinearity = "relu" }))
      check_normal(t, math.sqrt(2) / math.sqrt(fan_in), "relu, fan_in")
      init.kaiming_normal_(t, { mode = "fan_out", nonlinearity = "tanh" })
      check_normal(t, 5 / 3 / math.sqrt(fan_out), "tanh, fan_out")
    end)

    it("xavier_uniform_ and xavier_normal_ " .. label, function()
      lg.manual_seed(3)
      local t = lg.empty(shape)
      assert.are.equal(t, init.xavier_uniform_(t))
      check_uniform(t, math.sqrt(6 / (fan_in + fan_out)), "xavier_uniform_")
      init.xavier_uniform_(t, { gain = init.calculate_gain("tanh") })
      check_uniform(t, 5 / 3 * math.sqrt(6 / (fan_in + fan_out)), "xavier_uniform_, tanh gain")
      assert.are.equal(t, init.xavier_normal_(t, 2))
      check_normal(t, 2 * math.sqrt(2 / (fan_in + fan_out)), "xavier_normal_, gain 2")
    end)
  end

  it("uniform_, normal_, constant_, zeros_, ones_", function()
    lg.manual_seed(4)
    local t = lg.empty(200, 200)
    assert.are.equal(t, init.uniform_(t, -0.5, 1.5))
    local d = t:to("float64")
    assert.is_true(d:min():item() >= -0.5 and d:max():item() <= 1.5)
    check_uniform(t - 0.5, 1, "uniform_(-0.5, 1.5) shifted")
    assert.are.equal(t, init.normal_(t, 3, 0.25))
    check_normal(t - 3, 0.25, "normal_(3, 0.25) shifted")
    assert.are.equal(t, init.constant_(t, 0.75))
    assert.are.equal(0.75, t:min():item())
    assert.are.equal(0.75, t:max():item())
    init.zeros_(t)
    assert.are.equal(0, t:abs():max():item())
    init.ones_(t)
    assert.are.equal(40000, t:sum():item())
  end)

  it("works in place on parameters, recording nothing", function()
    local lin = nn.Linear(50, 40)
    local w = lin.weight
    init.xavier_normal_(lin.weight)
    init.zeros_(lin.bias)
    assert.are.equal(w, lin.weight)
    assert.is_true(w.requires_grad)
    assert.is_nil(w:grad_fn())
    assert.are.equal(0, lin.bias:abs():max():item())
  end)

  it("rejects bad options and tensors", function()
    assert.has_error(function() init.kaiming_uniform_(lg.empty(3, 3), { mode = "fan_avg" }) end,
      'nn.init.kaiming_uniform_: mode must be "fan_in" or "fan_out", got fan_avg')
    assert.has_error(function() init.xavier_uniform_(lg.empty(3, 3), { gian = 2 }) end,
      "nn.init.xavier_uniform_: unknown option 'gian' (accepted: gain)")
    assert.has_error(function() init.normal_(lg.empty(3, 3, { dtype = "int64" })) end,
      "nn.init.normal_: expected a float32 or float64 tensor, got int64")
    assert.has_error(function() init.uniform_(lg.empty(3), 1, 0) end, "nn.init.uniform_: expected a <= b, got a = 1, b = 0")
  end)
end)
