-- nn layers and losses: values against formulas written out here, gradcheck of every layer in
-- training and eval mode (float64), options, and the errors bad input raises.
local lg = require "luagrad"
local nn = lg.nn
local F = nn.functional
local gradcheck = lg.autograd.gradcheck
package.path = "spec/?.lua;" .. package.path

local message_of = require("helpers.util").message_of

local F64 = { dtype = "float64" }

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

local function assert_close(got, want, tol, what)
  local d = max_abs_diff(got, want)
  assert(d <= tol, string.format("%s: max |difference| %.3g exceeds %.3g", what or "values", d, tol))
end

-- gradcheck of m(x) with respect to the input and the named parameters. In the numeric passes
-- gradcheck hands over detached copies, which are made parameters again for the assignment.
local function check_module(m, x, names)
  local inputs = { x:detach():clone():requires_grad_(true) }
  for i, n in ipairs(names) do inputs[i + 1] = m[n]:detach():clone():requires_grad_(true) end
  local function f(xx, ...)
    local ps = { ... }
    for i, n in ipairs(names) do
      local p = ps[i]
      m[n] = p.requires_grad and p or p:detach():requires_grad_(true)
    end
    return m(xx)
  end
  return gradcheck(f, inputs)
end

-- Every layer: a constructor, an input (float64), and the parameters to check.
local function warmed_bn(...)
  local bn = nn.BatchNorm1d(...)
  lg.manual_seed(5)
  for _ = 1, 3 do bn(lg.randn(6, bn.num_features, F64) * 2 + 1) end   -- non-trivial running stats
  return bn
end

local function warmed_bn2d(...)
  local bn = nn.BatchNorm2d(...)
  lg.manual_seed(5)
  for _ = 1, 3 do bn(lg.randn(4, bn.num_features, 3, 2, F64) * 2 + 1) end
  return bn
end

local layers = {
  { "Linear (N, in)", function() return nn.Linear(4, 3, { dtype = "float64" }) end, { 5, 4 }, { "weight", "bias" } },
  { "Linear (in)", function() return nn.Linear(4, 3, { dtype = "float64" }) end, { 4 }, { "weight", "bias" } },
  { "Linear (B, N, in)", function() return nn.Linear(3, 2, { dtype = "float64" }) end, { 2, 3, 3 }, { "weight", "bias" } },
  { "Linear without bias", function() return nn.Linear(4, 3, { bias = false, dtype = "float64" }) end, { 3, 4 }, { "weight" } },
  { "BatchNorm1d (N, C)", function() return warmed_bn(3, { dtype = "float64" }) end, { 5, 3 }, { "weight", "bias" } },
  { "BatchNorm1d (N, C), C = 37: 16-channel blocks and a remainder",
    function() return warmed_bn(37, { dtype = "float64" }) end, { 6, 37 }, { "weight", "bias" } },
  { "BatchNorm1d (N, C, L)", function() return warmed_bn(3, { dtype = "float64" }) end, { 3, 3, 2 }, { "weight", "bias" } },
  { "BatchNorm1d affine=false", function() return warmed_bn(3, { affine = false, dtype = "float64" }) end, { 4, 3 }, {} },
  { "BatchNorm1d track_running_stats=false",
    function() return nn.BatchNorm1d(3, { track_running_stats = false, dtype = "float64" }) end, { 4, 3 }, { "weight", "bias" } },
  { "BatchNorm1d momentum=false", function() return warmed_bn(2, { momentum = false, dtype = "float64" }) end, { 4, 2, 2 },
    { "weight", "bias" } },
  { "BatchNorm2d (N, C, H, W)", function() return warmed_bn2d(3, { dtype = "float64" }) end, { 2, 3, 3, 2 },
    { "weight", "bias" } },
  { "Conv2d", function() return nn.Conv2d(3, 4, { 3, 2 }, { padding = 1, dtype = "float64" }) end, { 2, 3, 5, 4 },
    { "weight", "bias" } },
  { "Conv2d groups, stride, dilation, no bias", function()
    return nn.Conv2d(4, 2, 3, { groups = 2, stride = { 2, 1 }, dilation = { 1, 2 }, bias = false, dtype = "float64" })
  end, { 1, 4, 7, 6 }, { "weight" } },
  { "Conv2d padding \"same\", padding_mode reflect", function()
    return nn.Conv2d(2, 3, { 2, 3 }, { padding = "same", padding_mode = "reflect", dtype = "float64" })
  end, { 2, 2, 4, 5 }, { "weight", "bias" } },
  { "Conv2d padding_mode circular, unbatched", function()
    return nn.Conv2d(2, 2, 3, { padding = { 1, 2 }, padding_mode = "circular", dtype = "float64" })
  end, { 2, 4, 3 }, { "weight", "bias" } },
  { "Conv1d depthwise, padding_mode replicate", function()
    return nn.Conv1d(3, 3, 3, { groups = 3, padding = 2, padding_mode = "replicate", dtype = "float64" })
  end, { 2, 3, 6 }, { "weight", "bias" } },
  { "MaxPool2d", function() return nn.MaxPool2d(3, { stride = 2, padding = 1, ceil_mode = true }) end, { 2, 2, 5, 6 }, {} },
  { "MaxPool1d", function() return nn.MaxPool1d(2) end, { 2, 3, 7 }, {} },
  { "AvgPool2d", function() return nn.AvgPool2d(3, { stride = 2, padding = 1, count_include_pad = false }) end,
    { 2, 2, 5, 6 }, {} },
  { "AvgPool1d", function() return nn.AvgPool1d(3, { stride = 1, padding = 1 }) end, { 2, 3, 5 }, {} },
  { "AdaptiveAvgPool2d", function() return nn.AdaptiveAvgPool2d({ 2, 3 }) end, { 2, 2, 5, 4 }, {} },
  { "LayerNorm(5)", function() return nn.LayerNorm(5, { dtype = "float64" }) end, { 3, 5 }, { "weight", "bias" } },
  { "LayerNorm({2, 3})", function() return nn.LayerNorm({ 2, 3 }, { dtype = "float64" }) end, { 2, 2, 3 }, { "weight", "bias" } },
  { "LayerNorm without affine", function() return nn.LayerNorm(4, { elementwise_affine = false }) end, { 3, 4 }, {} },
  { "GroupNorm(3, 6) (N, C, L)", function() return nn.GroupNorm(3, 6, { dtype = "float64" }) end, { 2, 6, 3 },
    { "weight", "bias" } },
  { "GroupNorm(2, 4) (N, C, H, W)", function() return nn.GroupNorm(2, 4, { dtype = "float64" }) end, { 2, 4, 2, 3 },
    { "weight", "bias" } },
  { "GroupNorm without affine", function() return nn.GroupNorm(1, 4, { affine = false }) end, { 3, 4 }, {} },
  { "ReLU", function() return nn.ReLU() end, { 3, 4 }, {} },
  { "Sigmoid", function() return nn.Sigmoid() end, { 3, 4 }, {} },
  { "Tanh", function() return nn.Tanh() end, { 3, 4 }, {} },
  { "GELU", function() return nn.GELU() end, { 3, 4 }, {} },
  { "GELU tanh", function() return nn.GELU({ approximate = "tanh" }) end, { 3, 4 }, {} },
  { "LeakyReLU", function() return nn.LeakyReLU(0.2) end, { 3, 4 }, {} },
  { "ELU", function() return nn.ELU({ alpha = 1.5 }) end, { 3, 4 }, {} },
  { "SiLU", function() return nn.SiLU() end, { 3, 4 }, {} },
  { "Softplus", function() return nn.Softplus({ beta = 2, threshold = 3 }) end, { 3, 4 }, {} },
  { "Softmax(2)", function() return nn.Softmax(2) end, { 3, 4 }, {} },
  { "LogSoftmax(1)", function() return nn.LogSoftmax(1) end, { 3, 4 }, {} },
  { "Identity", function() return nn.Identity() end, { 3, 4 }, {} },
  { "Flatten", function() return nn.Flatten() end, { 2, 3, 2 }, {} },
  { "Residual", function() return nn.Residual(nn.Linear(4, 4, { dtype = "float64" })) end, { 3, 4 }, {} },
  { "Sequential", function()
    return nn.Sequential(nn.Linear(4, 5, { dtype = "float64" }), nn.Tanh(), nn.Linear(5, 2, { dtype = "float64" }))
  end, { 3, 4 }, {} },
}

describe("every layer passes gradcheck", function()
  for _, case in ipairs(layers) do
    local name, make, shape, params = case[1], case[2], case[3], case[4]
    for _, mode in ipairs({ "training", "eval" }) do
      it(name .. " in " .. mode .. " mode", function()
        lg.manual_seed(2)
        local m = make()
        if mode == "eval" then m:eval() end
        local x = lg.randn(shape, F64)
        assert.is_true(check_module(m, x, params))
      end)
    end
  end

  it("Sequential and Residual: the parameters of their children too", function()
    lg.manual_seed(4)
    local lin = nn.Linear(3, 3, { dtype = "float64" })
    local res = nn.Residual(nn.Sequential(lin, nn.Tanh()))
    local x = lg.randn(2, 3, F64)
    local f = function(xx, w, b)
      lin.weight = w.requires_grad and w or w:detach():requires_grad_(true)
      lin.bias = b.requires_grad and b or b:detach():requires_grad_(true)
      return res(xx)
    end
    assert.is_true(gradcheck(f, { x:requires_grad_(true), lin.weight:detach():clone():requires_grad_(true),
      lin.bias:detach():clone():requires_grad_(true) }))
  end)

  for _, mode in ipairs({ "training", "eval" }) do
    it("Dropout2d in " .. mode .. " mode (the mask fixed by seeding before each call)", function()
      local d = nn.Dropout2d(0.4)
      if mode == "eval" then d:eval() end
      local x = lg.randn({ 2, 5, 2, 3 }, F64):requires_grad_(true)
      assert.is_true(gradcheck(function(xx)
        lg.manual_seed(11)
        return d(xx)
      end, { x }))
    end)
    it("Dropout in " .. mode .. " mode (the mask fixed by seeding before each call)", function()
      local d = nn.Dropout(0.4)
      if mode == "eval" then d:eval() end
      local x = lg.randn({ 4, 5 }, F64):requires_grad_(true)
      assert.is_true(gradcheck(function(xx)
        lg.manual_seed(11)
        return d(xx)
      end, { x }))
    end)
  end

  local losses = {
    { "CrossEntropyLoss", nn.CrossEntropyLoss({ label_smoothing = 0.2 }), function() return { 2, 1, 4 } end },
    { "CrossEntropyLoss, probability targets", nn.CrossEntropyLoss(),
      function() return lg.randn(3, 4, F64):softmax(2) end },
    { "NLLLoss", nn.NLLLoss({ reduction = "sum" }), function() return lg.tensor({ 3, 3, 1 }, { dtype = "int64" }) end },
    { "MSELoss", nn.MSELoss(), function() return lg.randn(3, 4, F64) end },
    { "BCEWithLogitsLoss", nn.BCEWithLogitsLoss({ pos_weight = lg.tensor({ 1, 2, 0.5, 3 }, F64) }),
      function() return lg.rand(3, 4, F64) end },
  }
  for _, case in ipairs(losses) do
    it(case[1] .. " (input gradient)", function()
      lg.manual_seed(6)
      local target = case[3]()
      local x = lg.randn({ 3, 4 }, F64):requires_grad_(true)
      assert.is_true(gradcheck(function(xx) return case[2](xx, target) end, { x }))
    end)
  end
end)

describe("nn.Linear", function()
  it("computes x W^T + b for (in), (N, in) and (B, N, in)", function()
    local lin = nn.Linear(2, 3, { dtype = "float64" })
    lg.no_grad(function()
      lin.weight:copy_(lg.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, F64))
      lin.bias:copy_(lg.tensor({ 0.5, -1, 2 }, F64))
    end)
    assert.are.same({ 3.5, 6, 13 }, lin(lg.tensor({ 1, 1 }, F64)):tolist())
    assert.are.same({ { 3.5, 6, 13 }, { 1.5, 2, 7 } }, lin(lg.tensor({ { 1, 1 }, { 1, 0 } }, F64)):tolist())
    local xb = lg.randn(2, 4, 2, F64)
    local yb = lin(xb)
    assert.are.same({ 2, 4, 3 }, yb.shape)
    assert_close(yb[2], lin(xb[2]), 1e-14, "batched rows")
    assert.are.same({ 3, 3 }, nn.Linear(2, 3, { bias = false })(lg.ones(3, 2)).shape)
    assert.is_nil(nn.Linear(2, 3, { bias = false }).bias)
  end)

  it("float32 and float64 agree with a float64 product on small and large shapes, with and without bias", function()
    -- batch x in x out: small float32 products run in gemm_small.c (W^T packed in 8 x 8 blocks
    -- plus edges, tiles of 6 x 16 plus partial ones, the bias added as beta = 1), narrow or large
    -- ones in OpenBLAS; shapes that reach every edge of both
    lg.manual_seed(12)
    for _, s in ipairs({ { 64, 64, 64 }, { 7, 13, 11 }, { 128, 128, 10 }, { 5, 17, 24 }, { 3, 64, 1 }, { 9, 40, 33 },
      { 1, 8, 8 }, { 300, 200, 100 }, { 50, 20, 37 }, { 48, 16, 16 }, { 53, 9, 70 }, { 64, 128, 128 } }) do
      for _, dt in ipairs({ "float32", "float64" }) do
        local o = { dtype = dt }
        local x, w, b = lg.randn(s[1], s[2], o), lg.randn(s[3], s[2], o), lg.randn(s[3], o)
        local ref = x:double():matmul(w:double():t())
        local tol = dt == "float32" and 2e-6 * s[2] or 1e-13
        assert_close(F.linear(x, w, b):double(), ref + b:double(), tol, string.format("%s %dx%dx%d", dt, s[1], s[2], s[3]))
        assert_close(F.linear(x, w):double(), ref, tol, string.format("%s %dx%dx%d without bias", dt, s[1], s[2], s[3]))
      end
    end
  end)

  it("initializes as PyTorch: weight and bias in U(-1/sqrt(in), 1/sqrt(in))", function()
    lg.manual_seed(0)
    local lin = nn.Linear(400, 300)
    local bound = 1 / math.sqrt(400)
    assert.is_true(lin.weight:abs():max():item() <= bound)
    assert.is_true(lin.weight:abs():max():item() > 0.99 * bound)
    assert.is_true(lin.bias:abs():max():item() <= bound)
    assert.is_true(lin.bias:abs():max():item() > 0.9 * bound)     -- 300 draws: P(all below) = 0.9^300
    -- variance bound^2 / 3 from 120,000 draws: relative sd sqrt(0.8 / n) = 0.26%; allow 5 sd
    local var = lin.weight:to("float64"):var():item()
    assert.is_true(math.abs(var / (bound * bound / 3) - 1) < 5 * math.sqrt(0.8 / 120000))
    assert.is_true(lin.weight.requires_grad and lin.weight:grad_fn() == nil)
    assert.are.equal("float64", nn.Linear(2, 2, { dtype = "float64" }).weight.dtype)
  end)

  it("names the expected and actual shapes on bad input", function()
    assert.are.equal("Linear: expected input with 4 features in its last dimension, got shape {2,5}",
      message_of(nn.Linear(4, 3), lg.randn(2, 5)))
    assert.matches("Linear: in_features must be a non%-negative integer, got 2.5", message_of(nn.Linear, 2.5, 3))
    assert.matches("Linear: unknown option 'biass'", message_of(nn.Linear, 2, 3, { biass = false }))
  end)
end)

describe("activations", function()
  local xs = { -3, -1.5, -0.25, 0.1, 0.7, 2, 25 }
  local function erf(x)   -- series, enough for |x| <= 2: compared at 1e-12
    local sum, term, n = x, x, 0
    repeat
      n = n + 1
      term = -term * x * x / n
      sum = sum + term / (2 * n + 1)
    until math.abs(term) < 1e-18
    return 2 / math.sqrt(math.pi) * sum
  end
  local function sigmoid(x) return 1 / (1 + math.exp(-x)) end
  local function tanh(x)
    local e = math.exp(-2 * math.abs(x))
    return (x < 0 and -1 or 1) * (1 - e) / (1 + e)
  end
  local cases = {
    { nn.ReLU(), function(x) return math.max(x, 0) end },
    { nn.Sigmoid(), sigmoid },
    { nn.Tanh(), tanh },
    { nn.GELU(), function(x) return math.abs(x) > 6 and math.max(x, 0) or 0.5 * x * (1 + erf(x / math.sqrt(2))) end },
    { nn.GELU("tanh"), function(x)
      local u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ^ 3)
      return 0.5 * x * (1 + tanh(u))
    end },
    { nn.LeakyReLU(0.2), function(x) return x > 0 and x or 0.2 * x end },
    { nn.LeakyReLU(), function(x) return x > 0 and x or 0.01 * x end },
    { nn.ELU({ alpha = 1.5 }), function(x) return x > 0 and x or 1.5 * (math.exp(x) - 1) end },
    { nn.SiLU(), function(x) return x * sigmoid(x) end },
    { nn.Softplus(), function(x) return x > 20 and x or math.log(1 + math.exp(x)) end },
    { nn.Softplus({ beta = 2, threshold = 1 }), function(x) return 2 * x > 1 and x or math.log(1 + math.exp(2 * x)) / 2 end },
  }
  for _, case in ipairs(cases) do
    it(tostring(case[1]) .. " matches its formula", function()
      local got = case[1](lg.tensor(xs, F64)):tolist()
      for i, x in ipairs(xs) do
        local want = case[2](x)
        assert(math.abs(got[i] - want) <= 1e-12 * math.max(1, math.abs(want)),
          string.format("%s at %g: %.17g, want %.17g", tostring(case[1]), x, got[i], want))
      end
    end)
  end

  it("Softmax and LogSoftmax along the given dimension", function()
    local x = lg.tensor({ { 1, 2, 3 }, { 0, 0, 0 } }, F64)
    local s = nn.Softmax(2)(x):tolist()
    local z = math.exp(1) + math.exp(2) + math.exp(3)
    assert.is_true(math.abs(s[1][3] - math.exp(3) / z) < 1e-15)
    assert.is_true(math.abs(s[2][1] - 1 / 3) < 1e-15)
    assert_close(nn.LogSoftmax(-1)(x), nn.Softmax(2)(x):log(), 1e-14, "log_softmax")
    assert_close(F.softmax(x, { dim = 1 }), F.softmax(x, 1), 0, "options table")
    local c = nn.Softmax(1)(x):sum(1)
    assert_close(c, lg.ones(3, F64), 1e-15, "columns sum to one")
    assert.matches("Softmax: a dimension is needed", message_of(nn.Softmax))
    assert.matches("softmax: a dimension is needed", message_of(F.softmax, x))
  end)

  it("tanh-GELU's fused backward equals its composite derivative, and float32 follows float64", function()
    -- backward() without create_graph runs the one-pass kernel; create_graph composes d_gelu from
    -- elementwise ops (the rule double backward and forward mode use)
    for _, dt in ipairs({ "float64", "float32" }) do
      lg.manual_seed(3)
      local x = (lg.randn(4, 1000, { dtype = dt }) * 4):requires_grad_()
      local g = lg.randn(4, 1000, { dtype = dt })
      F.gelu(x, "tanh"):backward(g)
      local fused = x.grad
      local composite = lg.autograd.grad(F.gelu(x, "tanh"), x, { grad_outputs = g, create_graph = true })
      composite = (type(composite) == "table" and composite[1] or composite):detach()
      assert_close(fused:double(), composite:double(), dt == "float64" and 1e-13 or 1e-5, dt)
    end
    local x64 = lg.randn(5000, F64) * 4
    local x32 = x64:float():requires_grad_()
    x64:requires_grad_()
    local g = lg.randn(5000, F64)
    F.gelu(x64, "tanh"):backward(g)
    F.gelu(x32, "tanh"):backward(g:float())
    assert_close(x32.grad:double(), x64.grad, 2e-5, "float32 gradient against float64")
    assert_close(F.gelu(x32:detach(), "tanh"):double(), F.gelu(x64:detach(), "tanh"), 2e-6, "float32 forward against float64")
  end)

  it("float32 LayerNorm (vectorized row sums) follows float64 forward and backward, with and without affine", function()
    for _, D in ipairs({ 128, 13 }) do -- 13: the rows' tails after the eight-wide sums
      for _, affine in ipairs({ true, false }) do
        lg.manual_seed(5)
        local x64 = (lg.randn(6, 7, D, F64) * 3 + 1):requires_grad_()
        local g64 = lg.randn(6, 7, D, F64)
        local w64 = affine and (lg.randn(D, F64) + 1):requires_grad_() or nil
        local b64 = affine and lg.randn(D, F64):requires_grad_() or nil
        local x32 = x64:detach():float():requires_grad_()
        local w32 = w64 and w64:detach():float():requires_grad_()
        local b32 = b64 and b64:detach():float():requires_grad_()
        local y64 = F.layer_norm(x64, { D }, { weight = w64, bias = b64 })
        local y32 = F.layer_norm(x32, { D }, { weight = w32, bias = b32 })
        y64:backward(g64)
        y32:backward(g64:float())
        local what = string.format("D %d, affine %s", D, tostring(affine))
        assert_close(y32:double(), y64, 3e-6, what .. ": y")
        assert_close(x32.grad:double(), x64.grad, 3e-6, what .. ": dx")
        if affine then
          assert_close(w32.grad:double(), w64.grad, 1e-4, what .. ": dweight")
          assert_close(b32.grad:double(), b64.grad, 1e-4, what .. ": dbias")
        end
      end
    end
  end)

  it("functional forms take plain or table options", function()
    local x = lg.tensor(xs, F64)
    assert_close(F.leaky_relu(x, 0.3), F.leaky_relu(x, { negative_slope = 0.3 }), 0)
    assert_close(F.elu(x, 2), F.elu(x, { alpha = 2 }), 0)
    assert_close(F.gelu(x, "tanh"), F.gelu(x, { approximate = "tanh" }), 0)
    assert_close(F.softplus(x, 2, 5), F.softplus(x, { beta = 2, threshold = 5 }), 0)
    assert.matches("gelu: unknown option 'approx'", message_of(F.gelu, x, { approx = "tanh" }))
    assert.matches('GELU: approximate must be "none" or "tanh", got fast', message_of(nn.GELU, { approximate = "fast" }))
  end)
end)

describe("nn.Dropout", function()
  it("zeroes about p of the elements and scales the rest by 1 / (1 - p)", function()
    lg.manual_seed(0)
    local n, p = 100000, 0.3
    local x = lg.rand(n, F64) + 1
    local y = nn.Dropout(p)(x)
    local dropped = y:eq(0):sum():item()
    -- binomial(n, p): sd sqrt(n p (1 - p)) = 145; allow 5 sd
    assert.is_true(math.abs(dropped - n * p) < 5 * math.sqrt(n * p * (1 - p)))
    local kept = y:ne(0)
    assert_close(y, x * kept / (1 - p), 1e-15, "survivors scaled")
  end)

  it("is the identity in eval mode and with p = 0; p = 1 gives zeros (and zero gradient)", function()
    local x = lg.randn(4, 5, F64):requires_grad_(true)
    local d = nn.Dropout(0.5)
    d:eval()
    assert.are.equal(0, max_abs_diff(d(x), x))
    assert.are.equal(0, max_abs_diff(nn.Dropout(0)(x), x))
    local z = nn.Dropout(1)(x)
    assert.are.equal(0, z:abs():max():item())
    z:sum():backward()
    assert.are.equal(0, x.grad:abs():max():item())
    assert.are.equal(0, max_abs_diff(F.dropout(x, 0.5, { training = false }), x))
  end)

  it("the same seed gives the same mask", function()
    local x = lg.ones(50, 4)
    lg.manual_seed(9)
    local a = nn.Dropout(0.5)(x)
    lg.manual_seed(9)
    local b = F.dropout(x, { p = 0.5 })
    assert.are.equal(0, max_abs_diff(a, b))
  end)

  it("checks p", function()
    assert.matches("Dropout: p must be a probability between 0 and 1, got 1.5", message_of(nn.Dropout, 1.5))
    assert.matches("Dropout: p must be a probability between 0 and 1, got %-0.1", message_of(nn.Dropout, -0.1))
    assert.matches("dropout: p must be a probability between 0 and 1, got 2", message_of(F.dropout, lg.ones(2), 2))
  end)
end)

describe("nn.BatchNorm1d", function()
  -- reference statistics over every dimension but the channel one
  local function channel_stats(x)
    local xc = x:dim() == 3 and x:permute(1, 3, 2):reshape(-1, x:size(2)) or x
    return xc:mean(1), xc:var(1), xc:var(1) * ((xc:size(1) - 1) / xc:size(1))
  end

  it("has PyTorch's parameters and buffers", function()
    local bn = nn.BatchNorm1d(3)
    assert.are.same({ 1, 1, 1 }, bn.weight:tolist())
    assert.are.same({ 0, 0, 0 }, bn.bias:tolist())
    assert.are.same({ 0, 0, 0 }, bn.running_mean:tolist())
    assert.are.same({ 1, 1, 1 }, bn.running_var:tolist())
    assert.are.same({}, bn.num_batches_tracked.shape)
    assert.are.equal("int64", bn.num_batches_tracked.dtype)
    assert.are.equal(0, bn.num_batches_tracked:item())
    local plain = nn.BatchNorm1d(3, { affine = false, track_running_stats = false })
    assert.are.equal(0, #plain:parameters())
    assert.are.equal(0, #plain:buffers())
  end)

  it("training normalizes with the batch statistics and updates the running ones (N, C, L)", function()
    lg.manual_seed(1)
    local bn = nn.BatchNorm1d(3, { momentum = 0.25, dtype = "float64" })
    local rm, rv = lg.zeros(3, F64), lg.ones(3, F64)
    for step = 1, 3 do
      local x = lg.randn(4, 3, 5, F64) * step + step
      local y = bn(x)
      local mean, uvar, bvar = channel_stats(x)
      local want = (x - mean:view(1, 3, 1)) / (bvar:view(1, 3, 1) + 1e-5):sqrt()
      assert_close(y, want, 1e-12, "normalized output")
      rm = rm * 0.75 + mean * 0.25
      rv = rv * 0.75 + uvar * 0.25
      assert_close(bn.running_mean, rm, 1e-14, "running_mean")
      assert_close(bn.running_var, rv, 1e-13, "running_var")
      assert.are.equal(step, bn.num_batches_tracked:item())
    end
  end)

  it("float32 (N, C) with C = 37 matches the float64 formulas forward and backward", function()
    lg.manual_seed(9)
    local x64 = lg.randn(64, 37, F64) * 3 + 5
    local w64, b64 = lg.randn(37, F64), lg.randn(37, F64)
    local dy64 = lg.randn(64, 37, F64)
    local bn = nn.BatchNorm1d(37)
    lg.no_grad(function() bn.weight:copy_(w64); bn.bias:copy_(b64) end)
    local x = x64:float():requires_grad_()
    local y = bn(x)
    y:backward(dy64:float())
    -- reference in float64 from the float32 inputs, by the textbook formulas
    local xr = x:detach():double()
    local mean, var = xr:mean(1), xr:var(1, { correction = 0 })
    local rstd = (var + 1e-5):rsqrt()
    local xhat = (xr - mean) * rstd
    local dyr = dy64:float():double()
    local dxhat = dyr * w64:float():double()
    local dx = rstd / 64 * (dxhat * 64 - dxhat:sum(1) - xhat * (dxhat * xhat):sum(1))
    assert_close(y:double(), xhat * w64:float():double() + b64:float():double(), 2e-5, "y")
    assert_close(x.grad:double(), dx, 2e-5, "dx")
    assert_close(bn.weight.grad:double(), (dyr * xhat):sum(1), 1e-4, "dweight")
    assert_close(bn.bias.grad:double(), dyr:sum(1), 1e-4, "dbias")
    assert_close(bn.running_mean:double(), mean * 0.1, 1e-6, "running_mean")
    assert_close(bn.running_var:double(), var * (64 / 63) * 0.1 + 0.9, 1e-5, "running_var")
  end)

  it("updates running buffers that are strided views or of another dtype, in place", function()
    lg.manual_seed(4)
    local store = lg.zeros(3, 2, F64)
    local rm = store:select(2, 1)          -- every other element: not contiguous
    local rv = lg.ones(3)                  -- float32 beside a float64 input
    local x = lg.randn(6, 3, F64) * 2 + 1
    F.batch_norm(x, rm, rv, { training = true, momentum = 0.5 })
    local mean, uvar = x:mean(1), x:var(1)
    assert_close(store:select(2, 1), mean * 0.5, 1e-15, "strided running_mean")
    assert.are.equal(0, store:select(2, 2):abs():max():item(), "the other column is untouched")
    assert.are.equal("float32", rv.dtype)
    assert_close(rv:double(), uvar * 0.5 + 0.5, 1e-6, "float32 running_var")
  end)

  it("momentum = false keeps a cumulative average", function()
    lg.manual_seed(2)
    local bn = nn.BatchNorm1d(2, { momentum = false, dtype = "float64" })
    local means, vars = lg.zeros(2, F64), lg.zeros(2, F64)
    local k = 4
    for step = 1, k do
      local x = lg.randn(6, 2, F64) * step - step
      bn(x)
      local mean, uvar = channel_stats(x)
      means, vars = means + mean, vars + uvar
    end
    assert_close(bn.running_mean, means / k, 1e-14, "average of the batch means")
    assert_close(bn.running_var, vars / k, 1e-13, "average of the unbiased variances")
  end)

  it("eval uses the running statistics and does not update them", function()
    lg.manual_seed(3)
    local bn = nn.BatchNorm1d(3, { dtype = "float64" })
    bn(lg.randn(8, 3, F64) * 3 + 2)
    lg.no_grad(function()
      bn.weight:copy_(lg.tensor({ 2, -1, 0.5 }, F64))
      bn.bias:copy_(lg.tensor({ 0, 1, -2 }, F64))
    end)
    bn:eval()
    local rm, rv = bn.running_mean:clone(), bn.running_var:clone()
    local x = lg.randn(5, 3, F64)
    local want = (x - rm) / (rv + 1e-5):sqrt() * bn.weight + bn.bias
    assert_close(bn(x), want, 1e-14, "eval output")
    assert.are.equal(0, max_abs_diff(bn.running_mean, rm))
    assert.are.equal(1, bn.num_batches_tracked:item())
    -- one sample is fine in eval
    assert.are.same({ 1, 3 }, bn(lg.randn(1, 3, F64)).shape)
  end)

  it("without running statistics, eval normalizes with the batch statistics too", function()
    local bn = nn.BatchNorm1d(2, { track_running_stats = false, dtype = "float64" })
    local x = lg.randn(5, 2, F64)
    local y_train = bn(x)
    bn:eval()
    assert.are.equal(0, max_abs_diff(bn(x), y_train))
  end)

  it("raises on a batch of one in training, a wrong rank and a wrong channel count", function()
    local bn = nn.BatchNorm1d(4)
    assert.are.equal("BatchNorm1d: expected more than 1 value per channel when training, got input of shape {1,4}",
      message_of(bn, lg.randn(1, 4)))
    assert.are.equal("BatchNorm1d: expected more than 1 value per channel when training, got input of shape {1,4,1}",
      message_of(bn, lg.randn(1, 4, 1)))
    assert.are.equal(0, bn.num_batches_tracked:item(), "a failed call changes nothing")
    assert.are.equal("BatchNorm1d: expected 4 channels in dimension 2, got input of shape {3,5}", message_of(bn, lg.randn(3, 5)))
    assert.are.equal("BatchNorm1d: expected 2-d (N, C) or 3-d (N, C, L) input, got shape {4}", message_of(bn, lg.randn(4)))
    assert.are.equal("BatchNorm1d: expected 2-d (N, C) or 3-d (N, C, L) input, got shape {2,4,3,1}",
      message_of(bn, lg.randn(2, 4, 3, 1)))
    assert.matches("BatchNorm1d: momentum must be a number", message_of(nn.BatchNorm1d, 3, { momentum = "fast" }))
  end)
end)

describe("nn.LayerNorm", function()
  it("normalizes over the trailing dimensions", function()
    lg.manual_seed(4)
    local ln = nn.LayerNorm({ 2, 3 }, { dtype = "float64" })
    local x = lg.randn(4, 2, 3, F64) * 3 + 1
    local flat = x:reshape(4, 6)
    local mean = flat:mean(2, true)
    local bvar = flat:var(2, true) * (5 / 6)
    local want = ((flat - mean) / (bvar + 1e-5):sqrt()):reshape(4, 2, 3)
    assert_close(ln(x), want, 1e-13, "layer norm")
    assert.are.same({ 2, 3 }, ln.weight.shape)
    assert.are.same({ 2, 3 }, ln.bias.shape)
  end)

  it("names the shapes when the trailing dimensions do not match", function()
    assert.are.equal("LayerNorm: expected input with trailing dimensions {2,3}, got shape {3,4}",
      message_of(nn.LayerNorm({ 2, 3 }), lg.randn(3, 4)))
    assert.are.equal("LayerNorm: expected input with trailing dimensions {5}, got shape {}",
      message_of(nn.LayerNorm(5), lg.tensor(1)))
    assert.matches("LayerNorm: normalized_shape must be a positive integer", message_of(nn.LayerNorm, 0))
  end)
end)

describe("losses", function()
  local logits = lg.tensor({ { 1, 2, 0.5 }, { -1, 0, 3 } }, F64)

  it("cross_entropy takes a Lua list or an int64 tensor of 1-based labels", function()
    local a = F.cross_entropy(logits, { 2, 3 })
    local b = F.cross_entropy(logits, lg.tensor({ 2, 3 }, { dtype = "int64" }))
    local ls = logits:log_softmax(2):tolist()
    local want = -(ls[1][2] + ls[2][3]) / 2
    assert.is_true(math.abs(a:item() - want) < 1e-15)
    assert.are.equal(a:item(), b:item())
    local none = F.cross_entropy(logits, { 2, 3 }, { reduction = "none" })
    assert.are.same({ 2 }, none.shape)
    assert.is_true(math.abs(none:tolist()[1] + ls[1][2]) < 1e-15)
    -- a single sample: (C) logits and one label
    assert.is_true(math.abs(F.cross_entropy(logits[1], lg.tensor(2, { dtype = "int64" })):item() + ls[1][2]) < 1e-15)
  end)

  it("label smoothing matches the formula (1 - e) nll + e mean(-log p)", function()
    local e = 0.3
    local ls = logits:log_softmax(2)
    local want = ((1 - e) * -(ls:tolist()[1][1]) + e * -(ls[1]:mean():item())
      + (1 - e) * -(ls:tolist()[2][2]) + e * -(ls[2]:mean():item())) / 2
    assert.is_true(math.abs(F.cross_entropy(logits, { 1, 2 }, { label_smoothing = e }):item() - want) < 1e-15)
  end)

  it("float32 (vectorized exps) agrees with float64, with smoothing, reductions and -inf logits", function()
    lg.manual_seed(31)
    local x64 = lg.randn(37, 13, F64) * 4
    x64[3][5] = -math.huge -- a masked class: probability 0, gradient 0
    local y = lg.randint(1, 14, { 37 })
    if y[3] == 5 then y[3] = 6 end
    for _, ls in ipairs({ 0, 0.25 }) do
      for _, red in ipairs({ "mean", "sum", "none" }) do
        local a = x64:float():requires_grad_()
        local b = x64:clone():requires_grad_()
        local la = F.cross_entropy(a, y, { label_smoothing = ls, reduction = red })
        local lb = F.cross_entropy(b, y, { label_smoothing = ls, reduction = red })
        local what = string.format("smoothing %g, %s", ls, red)
        if ls == 0 then -- smoothing spreads over every class, the masked one too: an infinite loss
          assert_close(la:double(), lb, 2e-6 * math.max(1, lb:abs():max():item()), what .. ": loss")
          la:sum():backward()
          lb:sum():backward()
          assert_close(a.grad:double(), b.grad, 2e-7 * (red == "mean" and 1 or 37), what .. ": gradient")
          assert.are.equal(0, a.grad[3][5], "masked class gradient")
        else
          assert.are.equal(math.huge, lb:sum():item())
          assert.are.equal(math.huge, la:sum():item())
        end
      end
    end
  end)

  it("bad labels name the label and the range", function()
    assert.are.equal("cross_entropy: label 4 at position 2 is out of range 1..3 (labels are 1-based)",
      message_of(F.cross_entropy, logits, { 1, 4 }))
    assert.are.equal("cross_entropy: label 0 at position 1 is out of range 1..3 (labels are 1-based)",
      message_of(nn.CrossEntropyLoss(), logits, { 0, 1 }))
    assert.are.equal("nll_loss: label 7 at position 2 is out of range 1..3 (labels are 1-based)",
      message_of(F.nll_loss, logits, { 3, 7 }))
    assert.are.equal("nll_loss: label -1 at position 1 is out of range 1..3 (labels are 1-based)",
      message_of(nn.NLLLoss(), logits, lg.tensor({ -1, 2 }, { dtype = "int64" })))
    assert.are.equal("cross_entropy: target[2] = 1.5 is not an integer class label",
      message_of(F.cross_entropy, logits, { 1, 1.5 }))
    assert.matches("cross_entropy: a float target is read as class probabilities and must have the input's shape {2,3}, got {2}",
      message_of(F.cross_entropy, logits, lg.tensor({ 1, 2 })), 1, true)
    assert.matches("nll_loss: expected 2 labels (shape {2}) for input of shape {2,3}, got shape {3}",
      message_of(F.nll_loss, logits, { 1, 2, 3 }), 1, true)
  end)

  it("options are checked", function()
    assert.matches("cross_entropy: unknown option 'weight'", message_of(F.cross_entropy, logits, { 1, 2 }, { weight = logits }))
    assert.matches('reduction must be "mean", "sum" or "none", got avg',
      message_of(F.mse_loss, logits, logits, { reduction = "avg" }))
    assert.matches('CrossEntropyLoss: reduction must be', message_of(nn.CrossEntropyLoss, { reduction = "avg" }))
    -- the fused label path checks the reduction before the C kernel sees it
    assert.are.equal('cross_entropy: reduction must be "mean", "sum" or "none", got 3',
      message_of(F.cross_entropy, logits, { 1, 2 }, { reduction = 3 }))
    assert.matches("label_smoothing must be between 0 and 1, got 1.5",
      message_of(F.cross_entropy, logits, { 1, 2 }, { label_smoothing = 1.5 }))
  end)

  it("nll_loss gathers the labelled log-probabilities", function()
    local l = F.nll_loss(logits, { 3, 1 }, { reduction = "none" }):tolist()
    assert.are.same({ -0.5, 1 }, l)
    assert.are.equal(0.5, F.nll_loss(logits, { 3, 1 }, { reduction = "sum" }):item())
    assert.are.equal(0.25, F.nll_loss(logits, { 3, 1 }):item())
  end)

  it("mse_loss is the mean of squares, without one-half", function()
    local a, b = lg.tensor({ 1, 2, 3 }, F64), lg.tensor({ 1, 0, 0 }, F64)
    assert.is_true(math.abs(F.mse_loss(a, b):item() - 13 / 3) < 1e-15)
    assert.are.equal(13, nn.MSELoss({ reduction = "sum" })(a, b):item())
    assert.are.same({ 0, 4, 9 }, F.mse_loss(a, b, { reduction = "none" }):tolist())
  end)

  it("binary_cross_entropy_with_logits: formula, pos_weight, extreme logits, gradient at 0", function()
    local x = lg.tensor({ -2, -0.5, 0, 1, 3 }, F64)
    local y = lg.tensor({ 0, 1, 1, 0, 0.25 }, F64)
    local xs, ys = x:tolist(), y:tolist()
    local got = F.binary_cross_entropy_with_logits(x, y, { reduction = "none" }):tolist()
    local pw = { 2, 3, 0.5, 1, 4 }
    local gotw = F.binary_cross_entropy_with_logits(x, y, { reduction = "none", pos_weight = lg.tensor(pw, F64) }):tolist()
    for i = 1, 5 do
      local s = 1 / (1 + math.exp(-xs[i]))
      local want = -(ys[i] * math.log(s) + (1 - ys[i]) * math.log(1 - s))
      assert.is_true(math.abs(got[i] - want) < 1e-14)
      local wantw = -(pw[i] * ys[i] * math.log(s) + (1 - ys[i]) * math.log(1 - s))
      assert.is_true(math.abs(gotw[i] - wantw) < 1e-14)
    end
    -- extreme logits: finite, and tiny losses are exact (no cancellation)
    local big = lg.tensor({ 1000, -1000, -50, 50 }, F64)
    local l = F.binary_cross_entropy_with_logits(big, lg.tensor({ 0, 1, 0, 1 }, F64), { reduction = "none" }):tolist()
    assert.are.equal(1000, l[1])
    assert.are.equal(1000, l[2])
    assert.is_true(math.abs(l[3] / math.exp(-50) - 1) < 1e-14)
    assert.is_true(math.abs(l[4] / math.exp(-50) - 1) < 1e-14)
    -- the gradient is sigmoid(x) - y everywhere, including at x = 0
    local z = lg.zeros(3, F64):requires_grad_(true)
    F.binary_cross_entropy_with_logits(z, lg.tensor({ 0, 1, 0.5 }, F64), { reduction = "sum" }):backward()
    assert.are.same({ 0.5, -0.5, 0 }, z.grad:tolist())
    assert.matches("target shape {3} must equal input shape {5}", message_of(F.binary_cross_entropy_with_logits, x, lg.zeros(3)))
    local m = nn.BCEWithLogitsLoss({ pos_weight = lg.tensor(pw, F64) })
    assert.are.same({ "pos_weight" }, (function()
      local n = {}
      for k in m:named_buffers() do n[#n + 1] = k end
      return n
    end)())
  end)
end)

describe("forward mode and second order through the fused layers", function()
  -- jvp's output tangent must equal J t with J built by reverse mode.
  local cases = {
    { "BatchNorm1d (training)", function() return nn.BatchNorm1d(3, { dtype = "float64" }) end, { 4, 3 } },
    { "BatchNorm1d (N, C, L)", function() return nn.BatchNorm1d(2, { dtype = "float64" }) end, { 3, 2, 2 } },
    { "LayerNorm", function() return nn.LayerNorm(4, { dtype = "float64" }) end, { 3, 4 } },
    { "CrossEntropyLoss", function()
      local ce = nn.CrossEntropyLoss({ label_smoothing = 0.1 })
      return function(x) return ce(x, { 1, 3, 2 }) end
    end, { 3, 4 } },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. ": jvp equals the reverse-mode Jacobian times the tangent", function()
      lg.manual_seed(8)
      local m = case[2]()
      local f = function(x) return m(x) end
      local x, t = lg.randn(case[3], F64), lg.randn(case[3], F64)
      local _, jt = lg.autograd.jvp(f, x, t)
      local J = lg.autograd.jacobian(f, x)
      local n = x:numel()
      local want = J:reshape(-1, n):matmul(t:reshape(n)):reshape(jt.shape)
      assert_close(jt:detach(), want, 1e-12, "tangent")
    end)
  end

  it("cross_entropy's Hessian is symmetric and matches diag(p) - p p^T for one sample", function()
    local x = lg.tensor({ { 0.5, -1, 2 } }, F64)
    local H = lg.autograd.hessian(function(z) return F.cross_entropy(z, { 2 }) end, x):reshape(3, 3)
    local p = x:softmax(2):reshape(3)
    local want = lg.eye(3, F64) * p - p:view(3, 1):matmul(p:view(1, 3))
    assert_close(H, want, 1e-12, "Hessian")
  end)
end)
