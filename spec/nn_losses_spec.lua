-- The regression, probability and embedding losses (L1, smooth L1, Huber, BCE, KL divergence,
-- cosine embedding) and GroupNorm: values against formulas written out here element by element,
-- the three reductions, gradcheck in float64 of the first derivatives (reverse mode), of the
-- second (double backward) and forward mode against reverse mode, PyTorch's edge cases, and the
-- errors bad arguments raise. spec/nn_golden_spec.lua reproduces PyTorch's own numbers.
local lg = require "luagrad"
local nn = lg.nn
local F = nn.functional
local autograd = lg.autograd
package.path = "spec/?.lua;" .. package.path
local message_of = require("helpers.util").message_of

local F64 = { dtype = "float64" }

local function flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then for i = 1, #x do walk(x[i]) end else out[#out + 1] = x end
  end
  walk(lg.is_tensor(t) and t:tolist() or t)
  return out
end

-- every element within rel |want| + abs
local function close(got, want, what, rel, abs)
  rel, abs = rel or 1e-13, abs or 1e-15
  local g, w = flat(got), flat(want)
  assert.are.equal(#w, #g, what .. ": element count")
  for i = 1, #w do
    assert.is_true(math.abs(g[i] - w[i]) <= rel * math.abs(w[i]) + abs,
      string.format("%s[%d]: got %.17g, want %.17g", what, i, g[i], w[i]))
  end
end

-- elementwise formulas of the unreduced losses (x, y: numbers; o: the options)
local function smooth(z, beta) if z < beta then return 0.5 * z * z / beta end return z - 0.5 * beta end
local ELEMENT = {
  l1_loss = function(x, y) return math.abs(x - y) end,
  smooth_l1_loss = function(x, y, o)
    local beta = o.beta or 1
    if beta == 0 then return math.abs(x - y) end
    return smooth(math.abs(x - y), beta)
  end,
  huber_loss = function(x, y, o)
    local d, z = o.delta or 1, math.abs(x - y)
    if z < d then return 0.5 * z * z end
    return d * (z - 0.5 * d)
  end,
  binary_cross_entropy = function(x, y)
    return -(y * math.max(math.log(x), -100) + (1 - y) * math.max(math.log(1 - x), -100))
  end,
  kl_div = function(x, y, o)
    if o.log_target then return math.exp(y) * (y - x) end
    return (y == 0 and 0 or y * math.log(y)) - y * x
  end,
}

-- inputs of each loss (float64, 3 x 4): input in its domain, target
local function inputs(fn)
  lg.manual_seed(21)
  if fn == "binary_cross_entropy" then return lg.rand(3, 4, F64) * 0.9 + 0.05, lg.rand(3, 4, F64) end
  if fn == "kl_div" then return lg.randn(3, 4, F64):log_softmax(2), lg.rand(3, 4, F64):softmax(2) end
  return lg.randn(3, 4, F64), lg.randn(3, 4, F64)
end

local CASES = {
  { "l1_loss", {} },
  { "smooth_l1_loss", {} },
  { "smooth_l1_loss", { beta = 0.5 } },
  { "smooth_l1_loss", { beta = 0 } },
  { "huber_loss", {} },
  { "huber_loss", { delta = 0.3 } },
  { "binary_cross_entropy", {} },
  { "kl_div", {} },
  { "kl_div", { log_target = true } },
}

local function label(fn, o)
  local parts = {}
  for k, v in pairs(o) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return fn .. (#parts > 0 and (" {" .. table.concat(parts, ", ") .. "}") or "")
end

local function with(o, extra)
  local c = {}
  for k, v in pairs(o) do c[k] = v end
  for k, v in pairs(extra) do c[k] = v end
  return c
end

describe("losses: values against the elementwise formulas", function()
  for _, c in ipairs(CASES) do
    local fn, o = c[1], c[2]
    it(label(fn, o) .. ": none, sum, mean" .. (fn == "kl_div" and ", batchmean" or ""), function()
      local x, y = inputs(fn)
      if fn == "kl_div" and o.log_target then y = y:log() end
      local xs, ys = flat(x), flat(y)
      local want, total = {}, 0
      for i = 1, #xs do
        want[i] = ELEMENT[fn](xs[i], ys[i], o)
        total = total + want[i]
      end
      local none = F[fn](x, y, with(o, { reduction = "none" }))
      assert.are.same({ 3, 4 }, none.shape)
      close(none, want, label(fn, o) .. " none")
      close(F[fn](x, y, with(o, { reduction = "sum" })), { total }, label(fn, o) .. " sum")
      close(F[fn](x, y, with(o, { reduction = "mean" })), { total / #xs }, label(fn, o) .. " mean")
      close(F[fn](x, y, o), { total / #xs }, label(fn, o) .. " default (mean)")
      if fn == "kl_div" then
        close(F[fn](x, y, with(o, { reduction = "batchmean" })), { total / 3 }, label(fn, o) .. " batchmean")
      end
    end)
  end

  it("binary_cross_entropy: weight multiplies each element (broadcast), and the module keeps it as a buffer", function()
    local x, y = inputs("binary_cross_entropy")
    local w = lg.tensor({ 1, 2, 0.5, 0 }, F64)
    local plain = flat(F.binary_cross_entropy(x, y, { reduction = "none" }))
    local weighted = flat(F.binary_cross_entropy(x, y, { reduction = "none", weight = w }))
    for i = 1, #plain do close({ weighted[i] }, { plain[i] * ({ 1, 2, 0.5, 0 })[(i - 1) % 4 + 1] }, "weighted " .. i) end
    local m = nn.BCELoss({ weight = w, reduction = "sum" })
    assert.are.same({ "weight" }, (function()
      local names = {}
      for k in pairs(m:state_dict()) do names[#names + 1] = k end
      return names
    end)())
    close(m(x, y), { F.binary_cross_entropy(x, y, { weight = w, reduction = "sum" }):item() }, "BCELoss module")
  end)

  it("binary_cross_entropy at 0 and 1: each log is clamped to -100, the gradient stays finite", function()
    local x = lg.tensor({ 0, 1, 0, 1 }, F64):requires_grad_(true)
    local y = lg.tensor({ 1, 0, 0, 1 }, F64)
    local l = F.binary_cross_entropy(x, y, { reduction = "none" })
    close(l, { 100, 100, 0, 0 }, "clamped logs")
    l:sum():backward()
    for i, g in ipairs(x.grad:tolist()) do assert.is_true(g == g and math.abs(g) < math.huge, "gradient " .. i) end
  end)

  it("kl_div: a zero target contributes 0 (0 log 0 = 0) and no NaN gradient", function()
    local x = lg.tensor({ -1, -2, -0.5 }, F64):requires_grad_(true)
    local y = lg.tensor({ 0, 0.5, 0.5 }, F64):requires_grad_(true)
    local l = F.kl_div(x, y, { reduction = "none" })
    close(l, { 0, 0.5 * math.log(0.5) + 1, 0.5 * math.log(0.5) + 0.25 }, "kl_div with a zero target")
    l:sum():backward()
    close(x.grad, { 0, -0.5, -0.5 }, "d/dinput = -target")
    for i, g in ipairs(y.grad:tolist()) do assert.is_true(g == g, "target gradient " .. i .. " is NaN") end
  end)

  it("huber_loss is delta times smooth_l1_loss with beta = delta; smooth_l1 with beta = 0 is l1_loss", function()
    local x, y = inputs("huber_loss")
    for _, d in ipairs({ 0.25, 1, 3 }) do
      close(F.huber_loss(x, y, { delta = d }), { d * F.smooth_l1_loss(x, y, { beta = d }):item() }, "delta " .. d, 1e-14)
    end
    close(F.smooth_l1_loss(x, y, { beta = 0 }), { F.l1_loss(x, y):item() }, "beta = 0", 0, 0)
  end)

  it("the modules call their functional forms with the options given at construction", function()
    local x, y = inputs("smooth_l1_loss")
    close(nn.L1Loss({ reduction = "sum" })(x, y), { F.l1_loss(x, y, { reduction = "sum" }):item() }, "L1Loss", 0, 0)
    close(nn.SmoothL1Loss({ beta = 0.4 })(x, y), { F.smooth_l1_loss(x, y, { beta = 0.4 }):item() }, "SmoothL1Loss", 0, 0)
    close(nn.HuberLoss({ delta = 0.4 })(x, y), { F.huber_loss(x, y, { delta = 0.4 }):item() }, "HuberLoss", 0, 0)
    local lx, ly = inputs("kl_div")
    close(nn.KLDivLoss({ reduction = "batchmean" })(lx, ly), { F.kl_div(lx, ly, { reduction = "batchmean" }):item() },
      "KLDivLoss", 0, 0)
    close(nn.KLDivLoss({ log_target = true })(lx, ly:log()), { F.kl_div(lx, ly:log(), { log_target = true }):item() },
      "KLDivLoss log_target", 0, 0)
    assert.are.equal("SmoothL1Loss(beta=0.4)", tostring(nn.SmoothL1Loss({ beta = 0.4 })))
    assert.are.equal('KLDivLoss(reduction="batchmean")', tostring(nn.KLDivLoss({ reduction = "batchmean" })))
  end)
end)

describe("cosine_embedding_loss", function()
  -- PyTorch's cosine: x1.x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))
  local function cos(a, b)
    local d, na, nb = 0, 1e-12, 1e-12
    for i = 1, #a do
      d, na, nb = d + a[i] * b[i], na + a[i] * a[i], nb + b[i] * b[i]
    end
    return d / math.sqrt(na * nb)
  end

  it("1 - cos for target 1, max(0, cos - margin) for -1, 0 for anything else; every reduction", function()
    lg.manual_seed(3)
    local a, b = lg.randn(5, 3, F64), lg.randn(5, 3, F64)
    local t = lg.tensor({ 1, -1, -1, 1, 0 }, { dtype = "int64" })
    local margin = -0.2
    local al, bl, tl = a:tolist(), b:tolist(), t:tolist()
    local want, total = {}, 0
    for i = 1, 5 do
      local c = cos(al[i], bl[i])
      want[i] = tl[i] == 1 and 1 - c or tl[i] == -1 and math.max(0, c - margin) or 0
      total = total + want[i]
    end
    close(F.cosine_embedding_loss(a, b, t, { margin = margin, reduction = "none" }), want, "none")
    close(F.cosine_embedding_loss(a, b, t, { margin = margin, reduction = "sum" }), { total }, "sum")
    close(F.cosine_embedding_loss(a, b, t, { margin = margin }), { total / 5 }, "mean")
    -- a Lua list of labels and a float target work alike
    close(F.cosine_embedding_loss(a, b, tl, { margin = margin }), { total / 5 }, "list target")
    close(nn.CosineEmbeddingLoss({ margin = margin })(a, b, t:double()), { total / 5 }, "module, float target")
  end)

  it("takes single vectors (D) with a number, a 0-d or a one-element target", function()
    local a, b = lg.tensor({ 1, 2, 0 }, F64), lg.tensor({ 0, 1, 1 }, F64)
    local c = cos({ 1, 2, 0 }, { 0, 1, 1 })
    close(F.cosine_embedding_loss(a, b, 1), { 1 - c }, "number target")
    close(F.cosine_embedding_loss(a, b, lg.tensor(-1, F64)), { c }, "0-d target")
    close(F.cosine_embedding_loss(a, b, lg.tensor({ -1 }, F64), { margin = 0.9 }), { 0 }, "margin above cos")
  end)

  it("refuses mismatched shapes, naming the shapes", function()
    local a = lg.randn(4, 3, F64)
    assert.matches("cosine_embedding_loss: input2 shape {4,2} must equal input1 shape {4,3}",
      message_of(F.cosine_embedding_loss, a, lg.randn(4, 2, F64), lg.ones(4)))
    assert.matches("cosine_embedding_loss: target must have shape {4} for inputs of shape {4,3}, got {3}",
      message_of(F.cosine_embedding_loss, a, a, lg.ones(3)))
    assert.matches("cosine_embedding_loss: inputs must be 1%-d %(D%) or 2%-d %(N, D%)",
      message_of(F.cosine_embedding_loss, lg.randn(2, 2, 2), lg.randn(2, 2, 2), lg.ones(2)))
    assert.matches("cosine_embedding_loss: margin must be a number, got string",
      message_of(F.cosine_embedding_loss, a, a, lg.ones(4), { margin = "x" }))
  end)
end)

-- ---- derivatives: reverse mode, double backward, forward mode --------------------------------

-- f(x, ...) -> a loss; checks gradcheck of f, gradcheck of its gradient with respect to the
-- first argument (double backward), and the forward-mode Jacobian against the reverse-mode one.
local function check_derivatives(f, args, what)
  assert.is_true(autograd.gradcheck(f, args), what .. ": gradcheck")
  local rest = { table.unpack(args, 2) }
  -- the gradient of sum(f) with respect to the first argument, recorded (create_graph); gradcheck
  -- also calls it with grad mode off and detached copies, so it turns grad mode on itself
  local function grad_of_first(x, ...)
    local others = table.pack(...)
    return autograd.enable_grad(function()
      local xr = x.requires_grad and x or x:detach():requires_grad_(true)
      return autograd.grad(f(xr, table.unpack(others, 1, others.n)):sum(), { xr }, { create_graph = true })[1]
    end)
  end
  assert.is_true(autograd.gradcheck(grad_of_first, args), what .. ": double backward")
  local function g1(x) return f(x, table.unpack(rest)) end
  local jf = autograd.jacobian(g1, args[1]:detach(), { mode = "forward" })
  local jr = autograd.jacobian(g1, args[1]:detach(), { mode = "reverse" })
  close(jf, jr:tolist(), what .. ": forward-mode Jacobian", 1e-12, 1e-14)
end

describe("losses: gradcheck, double backward and forward mode in float64", function()
  for _, c in ipairs(CASES) do
    local fn, o = c[1], c[2]
    for _, red in ipairs({ "mean", "sum", "none" }) do
      it(label(fn, o) .. ", reduction " .. red .. ", with respect to input and target", function()
        local x, y = inputs(fn)
        if fn == "kl_div" and o.log_target then y = y:log() end
        local oo = with(o, { reduction = red })
        check_derivatives(function(a, b) return F[fn](a, b, oo) end,
          { x:requires_grad_(true), y:requires_grad_(true) }, label(fn, o) .. " " .. red)
      end)
    end
  end

  it("kl_div batchmean", function()
    local x, y = inputs("kl_div")
    check_derivatives(function(a, b) return F.kl_div(a, b, { reduction = "batchmean" }) end,
      { x:requires_grad_(true), y:requires_grad_(true) }, "kl_div batchmean")
  end)

  it("binary_cross_entropy with weight", function()
    local x, y = inputs("binary_cross_entropy")
    local w = lg.tensor({ 1, 2, 0.5, 3 }, F64)
    check_derivatives(function(a, b) return F.binary_cross_entropy(a, b, { weight = w }) end,
      { x:requires_grad_(true), y:requires_grad_(true) }, "binary_cross_entropy weighted")
  end)

  for _, red in ipairs({ "mean", "sum", "none" }) do
    it("cosine_embedding_loss, reduction " .. red .. ", with respect to both inputs", function()
      lg.manual_seed(8)
      local a, b = lg.randn(4, 3, F64), lg.randn(4, 3, F64)
      local t = lg.tensor({ 1, -1, 1, -1 }, F64)
      check_derivatives(function(p, q) return F.cosine_embedding_loss(p, q, t, { margin = -0.5, reduction = red }) end,
        { a:requires_grad_(true), b:requires_grad_(true) }, "cosine_embedding_loss " .. red)
    end)
  end

  it("group_norm with respect to x, weight and bias", function()
    lg.manual_seed(9)
    local x = lg.randn(2, 6, 3, F64) * 2 + 1
    local w, b = lg.randn(6, F64), lg.randn(6, F64)
    check_derivatives(function(xx, ww, bb) return F.group_norm(xx, 3, { weight = ww, bias = bb }) end,
      { x:requires_grad_(true), w:requires_grad_(true), b:requires_grad_(true) }, "group_norm")
  end)
end)

describe("losses: errors name the function and the value at fault", function()
  local x, y = lg.randn(3, 4, F64), lg.randn(3, 4, F64)
  it("unknown options and bad reductions", function()
    assert.matches("l1_loss: unknown option 'beta'", message_of(F.l1_loss, x, y, { beta = 1 }))
    assert.matches("smooth_l1_loss: unknown option 'delta'", message_of(F.smooth_l1_loss, x, y, { delta = 1 }))
    assert.matches("huber_loss: unknown option 'beta'", message_of(F.huber_loss, x, y, { beta = 1 }))
    assert.matches("kl_div: unknown option 'weight'", message_of(F.kl_div, x, y, { weight = x }))
    assert.matches("L1Loss: unknown option 'size_average'", message_of(nn.L1Loss, { size_average = true }))
    assert.matches('huber_loss: reduction must be "mean", "sum" or "none", got avg',
      message_of(F.huber_loss, x, y, { reduction = "avg" }))
    assert.matches('kl_div: reduction must be "mean", "batchmean", "sum" or "none", got avg',
      message_of(F.kl_div, x, y, { reduction = "avg" }))
    assert.matches('KLDivLoss: reduction must be "mean", "batchmean", "sum" or "none", got avg',
      message_of(nn.KLDivLoss, { reduction = "avg" }))
    assert.matches('HuberLoss: reduction must be "mean", "sum" or "none", got batchmean',
      message_of(nn.HuberLoss, { reduction = "batchmean" }))
  end)

  it("beta, delta, log_target and shapes", function()
    assert.matches("smooth_l1_loss: beta must be a non%-negative number, got %-1", message_of(F.smooth_l1_loss, x, y,
      { beta = -1 }))
    assert.matches("huber_loss: delta must be a positive number, got 0", message_of(F.huber_loss, x, y, { delta = 0 }))
    assert.matches("kl_div: log_target must be a boolean, got number", message_of(F.kl_div, x, y, { log_target = 1 }))
    assert.matches("l1_loss: target shape {5} does not broadcast against input shape {3,4}",
      message_of(F.l1_loss, x, lg.randn(5, F64)))
    assert.matches("l1_loss: target must be a tensor, got table", message_of(F.l1_loss, x, {}))
  end)

  it("binary_cross_entropy: input outside [0, 1], a target of another shape, a weight that does not fit", function()
    local p = lg.rand(3, 4, F64)
    assert.matches("binary_cross_entropy: every element of input must be a probability in %[0, 1%], got values " ..
      "from %-?[%d.e-]+ to [%d.e-]+ %(for logits use binary_cross_entropy_with_logits%)",
      message_of(F.binary_cross_entropy, x, p))
    assert.matches("binary_cross_entropy: target shape {4} must equal input shape {3,4}",
      message_of(F.binary_cross_entropy, p, lg.rand(4, F64)))
    assert.matches("binary_cross_entropy: weight shape {3} does not broadcast against input shape {3,4}",
      message_of(F.binary_cross_entropy, p, p, { weight = lg.ones(3, F64) }))
    local nan = lg.tensor({ 0.5, 0 / 0 }, F64)
    assert.matches("binary_cross_entropy: every element of input must be a probability",
      message_of(F.binary_cross_entropy, nan, lg.tensor({ 1, 0 }, F64)))
  end)
end)

describe("GroupNorm", function()
  -- y[n, c, ...] = (x - mean) / sqrt(var + eps) * w[c] + b[c], mean and biased var over the group
  local function reference(x, G, w, b, eps)
    local N, C = x:size(1), x:size(2)
    local xl = x:reshape(N, C, -1):tolist()
    local out = {}
    for n = 1, N do
      out[n] = {}
      for g = 1, G do
        local cs = {}
        for c = (g - 1) * C // G + 1, g * C // G do cs[#cs + 1] = c end
        local s, s2, k = 0, 0, 0
        for _, c in ipairs(cs) do for _, v in ipairs(xl[n][c]) do s, k = s + v, k + 1 end end
        local mean = s / k
        for _, c in ipairs(cs) do for _, v in ipairs(xl[n][c]) do s2 = s2 + (v - mean) ^ 2 end end
        local r = 1 / math.sqrt(s2 / k + eps)
        for _, c in ipairs(cs) do
          out[n][c] = {}
          for i, v in ipairs(xl[n][c]) do out[n][c][i] = (v - mean) * r * (w and w[c] or 1) + (b and b[c] or 0) end
        end
      end
    end
    return out
  end

  it("normalizes each group of consecutive channels over its channels and positions", function()
    lg.manual_seed(5)
    local x = lg.randn(2, 6, 2, 3, F64) * 3 + 2
    local w, b = { 1, 2, 3, -1, 0.5, 0 }, { 0, 1, 2, 3, 4, 5 }
    for _, G in ipairs({ 1, 2, 3, 6 }) do
      local y = F.group_norm(x, G, { weight = lg.tensor(w, F64), bias = lg.tensor(b, F64), eps = 1e-3 })
      assert.are.same(x.shape, y.shape)
      close(y:reshape(2, 6, -1), reference(x, G, w, b, 1e-3), "groups " .. G, 1e-12, 1e-12)
    end
    close(F.group_norm(x, 2), reference(x, 2, nil, nil, 1e-5), "no affine", 1e-12, 1e-12)
  end)

  it("the module: parameters weight (ones) and bias (zeros), affine = false, (N, C) input, tostring", function()
    local gn = nn.GroupNorm(2, 4)
    assert.are.same({ 1, 1, 1, 1 }, gn.weight:tolist())
    assert.are.same({ 0, 0, 0, 0 }, gn.bias:tolist())
    assert.are.equal("float32", gn.weight.dtype)
    assert.are.equal("GroupNorm(2, 4, eps=1e-05, affine=true)", tostring(gn))
    local plain = nn.GroupNorm(2, 4, { affine = false, dtype = "float64" })
    assert.is_nil(plain.weight)
    assert.are.same({}, plain:parameters())
    local x = lg.randn(3, 4, F64)
    close(plain(x), reference(x, 2, nil, nil, 1e-5), "(N, C) input", 1e-12, 1e-12)
  end)

  it("refuses bad arguments, naming the function and the value", function()
    assert.matches("GroupNorm: num_channels = 6 is not divisible by num_groups = 4", message_of(nn.GroupNorm, 4, 6))
    assert.matches("GroupNorm: num_groups must be a positive integer, got 0", message_of(nn.GroupNorm, 0, 6))
    assert.matches("GroupNorm: unknown option 'momentum'", message_of(nn.GroupNorm, 2, 6, { momentum = 0.1 }))
    assert.matches("GroupNorm: expected input of shape %(N, 6, %*%), got shape {2,4}",
      message_of(nn.GroupNorm(2, 6), lg.randn(2, 4)))
    assert.matches("group_norm: the 5 channels of input shape {2,5} are not divisible into num_groups = 2 groups",
      message_of(F.group_norm, lg.randn(2, 5), 2))
    assert.matches("group_norm: weight must have shape {4} %(one value per channel%), got {2}",
      message_of(F.group_norm, lg.randn(2, 4), 2, { weight = lg.ones(2) }))
    assert.matches("group_norm: expected input of shape %(N, C, %*%) with at least 2 dimensions, got shape {4}",
      message_of(F.group_norm, lg.randn(4), 2))
  end)
end)
