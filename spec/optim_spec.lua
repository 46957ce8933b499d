-- Optimizer behaviour beyond the golden trajectories (spec/optim_golden_spec.lua): parameter
-- groups, settable learning rates, skipped parameters, zero_grad, maximize, float32 training,
-- Adamax/NAdam/RAdam/Adadelta against scalar equations with every option set, validation
-- messages, save/resume bit for bit, and gradient clipping.
--
-- Hand-computed expectations use gradients set directly (p.grad = ...) so each update can be
-- written out from PyTorch's equations in a line.
local lg = require "luagrad"
local nn = lg.nn
local utils = require "luagrad.nn.utils"
local O = lg.optim
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local raises = util.raises

local F64 = { dtype = "float64" }

local function t64(x) return lg.tensor(x, F64) end
local function param(x) return lg.tensor(x, { dtype = "float64", requires_grad = true }) end

-- |got - want| <= rel |want| + abs for every element; the message names the index and values.
local function close(got, want, rel, abs, what)
  rel, abs = rel or 1e-14, abs or 1e-15
  if type(got) == "userdata" then got = got:tolist() end
  if type(got) ~= "table" then got, want = { got }, { want } end
  assert.are.equal(#want, #got, (what or "") .. " length")
  for i = 1, #want do
    local err = math.abs(got[i] - want[i])
    assert.is_true(err <= rel * math.abs(want[i]) + abs,
      string.format("%s[%d]: got %.17g, want %.17g", what or "value", i, got[i], want[i]))
  end
end

describe("optim: parameter groups", function()
  it("applies per-group options (lr, momentum) and the top-level defaults elsewhere", function()
    local a, b = param({ 1, 2 }), param({ 3, 4 })
    local opt = O.SGD({ { params = { a } }, { params = { b }, lr = 0.01, momentum = 0.9 } }, { lr = 0.1 })
    assert.are.equal(0.1, opt.param_groups[1].lr)
    assert.are.equal(0, opt.param_groups[1].momentum)
    assert.are.equal(0.01, opt.param_groups[2].lr)
    assert.are.equal(0.9, opt.param_groups[2].momentum)
    local ga, gb = { 0.5, -1 }, { 2, 1 }
    for _ = 1, 2 do
      a.grad, b.grad = t64(ga), t64(gb)
      opt:step()
    end
    -- group 1: plain SGD twice; group 2: buf = g, then buf = 0.9 g + g
    close(a, { 1 - 0.2 * 0.5, 2 + 0.2 }, 1e-15, 0, "a")
    close(b, { 3 - 0.01 * 2 - 0.01 * 1.9 * 2, 4 - 0.01 * 1 - 0.01 * 1.9 * 1 }, 1e-15, 0, "b")
  end)

  it("takes a change of param_groups[i].lr between steps", function()
    local p = param({ 1.0, -1.0 })
    local opt = O.SGD({ p }, { lr = 0.1 })
    p.grad = t64({ 1, 1 })
    opt:step()
    close(p, { 0.9, -1.1 }, 1e-15, 0, "after lr 0.1")
    opt.param_groups[1].lr = 0.5
    opt:step()
    close(p, { 0.4, -1.6 }, 1e-15, 0, "after lr 0.5")
    -- Adam: the step size is lr itself on the first step with a constant gradient
    local q = param({ 0.0 })
    local adam = O.Adam({ q }, { lr = 0.25 })
    adam.param_groups[1].lr = 0.125
    q.grad = t64({ 3 })
    adam:step()
    close(q, { -0.125 * 3 / (3 + 1e-8) }, 1e-15, 0, "Adam with changed lr")
  end)

  it("skips parameters whose grad is nil: state stays empty, values unchanged", function()
    for _, case in ipairs({ { "SGD", { lr = 0.1, momentum = 0.9 } }, { "Adam", {} }, { "AdamW", {} },
      { "RMSprop", { momentum = 0.5, centered = true } }, { "Adamax", {} }, { "NAdam", {} }, { "RAdam", {} },
      { "Adadelta", {} } }) do
      local a, b = param({ 1, 2, 3 }), param({ 4, 5 })
      local opt = O[case[1]]({ a, b }, case[2])
      a.grad = t64({ 1, 1, 1 })
      opt:step()
      opt:step()
      close(b, { 4, 5 }, 0, 0, case[1] .. " b")
      assert.is_nil(b.grad)
      assert.is_true(opt.state[b] == nil or next(opt.state[b]) == nil, case[1] .. ": state of b not empty")
      assert.is_true(a:tolist()[1] < 1, case[1] .. ": a did not move")
      assert.is_not_nil(next(opt.state[a]), case[1] .. ": a has no state")
    end
    -- Adagrad, as PyTorch, makes its accumulator at construction; a skipped parameter keeps it as made
    local a, b = param({ 1 }), param({ 2 })
    local ada = O.Adagrad({ a, b }, { lr = 0.1, initial_accumulator_value = 0.5 })
    a.grad = t64({ 1 })
    ada:step()
    close(b, { 2 }, 0, 0, "Adagrad b")
    assert.are.equal(0, ada.state[b].step)
    close(ada.state[b].sum, { 0.5 }, 0, 0, "Adagrad b sum")
    assert.are.equal(1, ada.state[a].step)
  end)

  it("takes gradients that are strided views, as their contiguous copies", function()
    for _, case in ipairs({ { "SGD", { lr = 0.1, momentum = 0.9 } }, { "Adam", { amsgrad = true } }, { "AdamW", {} },
      { "RMSprop", { momentum = 0.5 } }, { "Adagrad", {} }, { "Adamax", {} }, { "NAdam", {} }, { "RAdam", {} },
      { "Adadelta", {} } }) do
      lg.manual_seed(3)
      local g1, g2 = lg.randn(4, 3, F64), lg.randn(4, 3, F64)
      local a = lg.randn(3, 4, F64):requires_grad_()
      local b = a:detach():clone():requires_grad_()
      local oa, ob = O[case[1]]({ a }, case[2]), O[case[1]]({ b }, case[2])
      for _, g in ipairs({ g1, g2 }) do
        a.grad = g:t()                 -- a transposed view
        b.grad = g:t():contiguous()
        oa:step()
        ob:step()
      end
      assert.are.equal(0, (a - b):abs():max():item(), case[1] .. ": strided gradient")
    end
  end)

  it("refuses a .grad of another dtype than its parameter (as PyTorch)", function()
    local c = lg.randn(5, { dtype = "float32" }):requires_grad_()
    assert.matches("grad: assigned gradient is float64, but the tensor is float32",
      util.error_of(function() c.grad = lg.randn(5, F64) end))
  end)

  it("makes max_exp_avg_sq when amsgrad is switched on after the first steps", function()
    local a = param({ 1, -2 })
    local opt = O.Adam({ a }, { lr = 0.1 })
    a.grad = t64({ 0.5, 0.25 })
    opt:step()
    assert.is_nil(opt.state[a].max_exp_avg_sq)
    opt.param_groups[1].amsgrad = true
    opt:step()
    assert.are.equal(2, opt.state[a].step)
    -- made as zeros on this step, then max(0, v) = v
    close(opt.state[a].max_exp_avg_sq, opt.state[a].exp_avg_sq:tolist(), 0, 0, "max_exp_avg_sq")
  end)

  it("refuses a damaged Adam state: a missing moment, a non-tensor entry, an out-of-range step", function()
    local p = param({ 1, 2 })
    local opt = O.Adam({ p }, { lr = 0.1 })
    p.grad = t64({ 1, 1 })
    opt:step()
    local st = opt.state[p]
    local m = st.exp_avg
    st.exp_avg = nil
    raises("has a step but no 'exp_avg'", opt.step, opt)
    st.exp_avg = "x"
    raises("state entry 'exp_avg' of a parameter {2} is a string, not a tensor", opt.step, opt)
    st.exp_avg = m
    st.step = math.maxinteger
    raises("state step 9223372036854775807 is out of range", opt.step, opt)
    st.step = 1
    opt:step()
    assert.are.equal(2, st.step)
  end)

  it("zero_grad() sets gradients to nil, zero_grad(false) zeroes them in place", function()
    local a, b = param({ 1, 2 }), param({ 3 })
    local opt = O.SGD({ a, b }, { lr = 0.1 })
    ;((a * a):sum() + (b * 3):sum()):backward()
    local ga = a.grad
    close(ga, { 2, 4 }, 0, 0, "a.grad")
    opt:zero_grad(false)
    assert.is_not_nil(a.grad)
    close(a.grad, { 0, 0 }, 0, 0, "zeroed a.grad")
    close(b.grad, { 0 }, 0, 0, "zeroed b.grad")
    close(ga, { 0, 0 }, 0, 0, "the same tensor, zeroed in place")
    opt:zero_grad()
    assert.is_nil(a.grad)
    assert.is_nil(b.grad)
    -- and after a nil reset, backward starts afresh
    ;(a * 5):sum():backward()
    close(a.grad, { 5, 5 }, 0, 0, "a.grad after reset")
  end)

  it("maximize ascends for SGD (with momentum and weight decay)", function()
    local p = param({ 1.0, 2.0 })
    local opt = O.SGD({ p }, { lr = 0.1, momentum = 0.9, weight_decay = 0.1, maximize = true })
    p.grad = t64({ 1, -1 })
    opt:step()
    -- d = -g + wd p = {-0.9, 1.2}; buf = d; p -= lr d
    close(p, { 1.09, 1.88 }, 1e-15, 0, "after step 1")
    p.grad = t64({ 1, -1 })
    opt:step()
    local d1, d2 = -1 + 0.1 * 1.09, 1 + 0.1 * 1.88
    local b1, b2 = 0.9 * -0.9 + d1, 0.9 * 1.2 + d2
    close(p, { 1.09 - 0.1 * b1, 1.88 - 0.1 * b2 }, 1e-15, 0, "after step 2")
    -- plain gradient ascent on f(p) = -(p - 3)^2 climbs to 3
    local q = param({ 0.0 })
    local asc = O.SGD({ q }, { lr = 0.1, maximize = true })
    for _ = 1, 100 do
      asc:zero_grad()
      local f = -((q - 3) ^ 2):sum()
      f:backward()
      asc:step()
    end
    close(q, { 3 }, 1e-6, 0, "argmax")
  end)
end)

describe("optim: float32 training", function()
  local cases = {
    { "SGD", { lr = 0.05, momentum = 0.9 } },
    { "SGD", { lr = 0.05, momentum = 0.9, nesterov = true } },
    { "Adam", { lr = 0.05 } },
    { "Adam", { lr = 0.05, amsgrad = true, weight_decay = 1e-3 } },
    { "AdamW", { lr = 0.05 } },
    { "RMSprop", { lr = 0.01 } },
    { "RMSprop", { lr = 0.005, momentum = 0.5, centered = true } },
    { "Adagrad", { lr = 0.3 } },
    { "Adamax", { lr = 0.05 } },
    { "NAdam", { lr = 0.05, weight_decay = 1e-3 } },
    { "RAdam", { lr = 0.1 } },
    { "Adadelta", { lr = 10 } },
  }
  for _, c in ipairs(cases) do
    local name, o = c[1], c[2]
    local label = name
    for k, v in pairs(o) do if k ~= "lr" then label = label .. " " .. k .. "=" .. tostring(v) end end
    it(label .. " brings a float32 regression loss down by 10x in 100 steps", function()
      lg.manual_seed(7)
      local X = lg.randn(32, 4)
      local Wt = lg.randn(4, 3)
      local Y = X:matmul(Wt) + 0.5
      local model = nn.Linear(4, 3)
      local oo = {}
      for k, v in pairs(o) do oo[k] = v end
      local opt = O[name](model:parameters(), oo)
      local first, last
      for s = 1, 100 do
        opt:zero_grad()
        local loss = ((model(X) - Y) ^ 2):mean()
        if s == 1 then first = loss:item() end
        last = loss:item()
        loss:backward()
        opt:step()
      end
      assert.are.equal("float32", model.weight.dtype)
      for _, st in pairs(opt.state) do
        for k, v in pairs(st) do
          if type(v) == "userdata" then assert.are.equal("float32", v.dtype, k) end
        end
      end
      assert.is_true(last == last and last < first / 10,
        string.format("%s: loss %.4g -> %.4g", label, first, last))
    end)
  end
end)

describe("optim: Adam's fused step against its equations op by op", function()
  -- The fused kernel divides by the step's constant sqrt(1 - b2^t) with a reciprocal and an FMA
  -- correction where the CPU has FMA; the result must be the correctly rounded quotient that
  -- PyTorch's division gives. Here the same update is written with one tensor op per operation
  -- (each rounds to the dtype, scalars first cast to it, as in PyTorch) and compared bit for bit,
  -- over gradients from 1e-20 to 1e10 and zeros, for several steps.
  local function round_to(dt, x)
    if dt == "float32" then return (string.unpack("f", string.pack("f", x))) end
    return x
  end
  for _, c in ipairs({ { "float32", false }, { "float32", true }, { "float64", false }, { "float64", true } }) do
    local dt, ams = c[1], c[2]
    it(string.format("%s%s: 5 steps over 100,000 values agree bit for bit", dt, ams and " amsgrad" or ""), function()
      lg.manual_seed(11)
      local n = 100000
      local scale = (lg.rand(n, { dtype = dt }) * 30 - 20):exp() * 2.3 -- 1e-20 .. 1e10
      local p = (lg.randn(n, { dtype = dt })):requires_grad_()
      local q = p:detach():clone()
      local m, v, vmax = lg.zeros(n, { dtype = dt }), lg.zeros(n, { dtype = dt }), lg.zeros(n, { dtype = dt })
      local lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
      local opt = O.Adam({ p }, { lr = lr, betas = { b1, b2 }, eps = eps, amsgrad = ams })
      local f = function(x) return round_to(dt, x) end
      for t = 1, 5 do
        local g = lg.randn(n, { dtype = dt }) * scale
        g:narrow(1, 1, 1000):zero_()
        p.grad = g
        opt:step()
        local bc1, bc2 = 1 - b1 ^ t, 1 - b2 ^ t
        m = m * f(b1) + g * f(f(1) - f(b1))
        v = v * f(b2) + g * f(f(1) - f(b2)) * g
        local vv = v
        if ams then vmax = lg.maximum(vmax, v); vv = vmax end
        local denom = vv:sqrt() / f(math.sqrt(bc2)) + f(eps)
        q = q + (m / denom) * f(-f(lr / bc1))
        local diff = (p:detach() - q):abs():max():item()
        assert.are.equal(0, diff, string.format("step %d: largest difference %.3g", t, diff))
        assert.are.equal(0, (p:detach():ne(p:detach())):sum():item(), "NaN in the parameters")
      end
    end)
  end
end)

-- ---- Adamax, NAdam, RAdam, Adadelta: each update written out in scalars ---------------------
-- PyTorch 1.13's equations element by element in plain Lua (st: this element's state, t: the
-- step from 1), against the fused C kernels, with every option away from its default.

local REF = {
  Adamax = function(o, st, p, g, t)
    if o.maximize then g = -g end
    g = g + o.weight_decay * p
    st.m = o.betas[1] * (st.m or 0) + (1 - o.betas[1]) * g
    st.u = math.max(o.betas[2] * (st.u or 0), math.abs(g) + o.eps)
    return p - o.lr / (1 - o.betas[1] ^ t) * st.m / st.u
  end,
  NAdam = function(o, st, p, g, t)
    local b1, b2, psi = o.betas[1], o.betas[2], o.momentum_decay
    g = g + o.weight_decay * p
    local mu, mu_next = b1 * (1 - 0.5 * 0.96 ^ (t * psi)), b1 * (1 - 0.5 * 0.96 ^ ((t + 1) * psi))
    st.P = (st.P or 1) * mu
    local P_next = st.P * mu * mu_next -- PyTorch 1.13's product (mu counted twice)
    st.m = b1 * (st.m or 0) + (1 - b1) * g
    st.v = b2 * (st.v or 0) + (1 - b2) * g * g
    local d = math.sqrt(st.v / (1 - b2 ^ t)) + o.eps
    p = p - o.lr * (1 - mu) / (1 - st.P) * g / d
    return p - o.lr * mu_next / (1 - P_next) * st.m / d
  end,
  RAdam = function(o, st, p, g, t)
    local b1, b2 = o.betas[1], o.betas[2]
    g = g + o.weight_decay * p
    st.m = b1 * (st.m or 0) + (1 - b1) * g
    st.v = b2 * (st.v or 0) + (1 - b2) * g * g
    local rho_inf = 2 / (1 - b2) - 1
    local rho_t = rho_inf - 2 * t * b2 ^ t / (1 - b2 ^ t)
    local mhat = st.m / (1 - b1 ^ t)
    if rho_t <= 5 then return p - mhat * o.lr end
    local r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return p - mhat * o.lr * math.sqrt(1 - b2 ^ t) / (math.sqrt(st.v) + o.eps) * r
  end,
  Adadelta = function(o, st, p, g)
    if o.maximize then g = -g end
    g = g + o.weight_decay * p
    st.s = o.rho * (st.s or 0) + (1 - o.rho) * g * g
    local delta = math.sqrt((st.a or 0) + o.eps) / math.sqrt(st.s + o.eps) * g
    st.a = o.rho * (st.a or 0) + (1 - o.rho) * delta * delta
    return p - o.lr * delta
  end,
}

describe("optim: Adamax, NAdam, RAdam, Adadelta against their equations in scalars", function()
  local cases = {
    { "Adamax", { lr = 0.1, betas = { 0.8, 0.99 }, eps = 1e-3, weight_decay = 0.5, maximize = false } },
    { "Adamax", { lr = 0.1, betas = { 0.8, 0.99 }, eps = 1e-3, weight_decay = 0.5, maximize = true } },
    { "NAdam", { lr = 0.1, betas = { 0.8, 0.99 }, eps = 1e-3, weight_decay = 0.5, momentum_decay = 0.05 } },
    -- beta2 = 0.5: rho_inf = 3, never above 5, so every step is the unrectified one
    { "RAdam", { lr = 0.1, betas = { 0.8, 0.5 }, eps = 1e-3, weight_decay = 0.5 } },
    -- beta2 = 0.9: rho_t passes 5 at step 6, so both branches run
    { "RAdam", { lr = 0.1, betas = { 0.8, 0.9 }, eps = 1e-3, weight_decay = 0.5 } },
    { "Adadelta", { lr = 0.7, rho = 0.6, eps = 1e-3, weight_decay = 0.5, maximize = false } },
    { "Adadelta", { lr = 0.7, rho = 0.6, eps = 1e-3, weight_decay = 0.5, maximize = true } },
  }
  for _, c in ipairs(cases) do
    local name, o = c[1], c[2]
    local label = name
    for _, k in ipairs({ "betas", "maximize", "rho" }) do
      local v = o[k]
      if v ~= nil then label = label .. " " .. k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v)) end
    end
    it(label .. ": 10 steps agree to 1e-13", function()
      local p0 = { 1, -2, 0.25, 0 }
      local p = param(p0)
      local oo = {}
      for k, v in pairs(o) do oo[k] = v end
      local opt = O[name]({ p }, oo)
      local want, states = { table.unpack(p0) }, { {}, {}, {}, {} }
      for t = 1, 10 do
        local g = { 0.3 * t, -0.4, 1 / t, -0.05 * t * t }
        p.grad = t64(g)
        opt:step()
        for i = 1, #want do want[i] = REF[name](o, states[i], want[i], g[i], t) end
        close(p, want, 1e-13, 1e-15, string.format("%s step %d", label, t))
      end
      assert.are.equal(10, opt.state[p].step)
    end)
  end

  it("keep PyTorch's state keys, and refuse a damaged state", function()
    local keys = { Adamax = { "exp_avg", "exp_inf", "step" }, NAdam = { "exp_avg", "exp_avg_sq", "mu_product", "step" },
      RAdam = { "exp_avg", "exp_avg_sq", "step" }, Adadelta = { "acc_delta", "square_avg", "step" } }
    for name, want in pairs(keys) do
      local p = param({ 1, 2 })
      local opt = O[name]({ p })
      p.grad = t64({ 1, -1 })
      opt:step()
      local got = {}
      for k in pairs(opt.state[p]) do got[#got + 1] = k end
      table.sort(got)
      assert.are.same(want, got, name)
      local st = opt.state[p]
      local first = want[1]
      local saved = st[first]
      st[first] = nil
      raises(name .. ": the state of a parameter has a step but no tensor '" .. first .. "'", opt.step, opt)
      st[first] = saved
      st.step = -1
      raises(name .. ": state step must be a non%-negative integer, got %-1", opt.step, opt)
      st.step = 1
      opt:step()
      assert.are.equal(2, st.step, name)
    end
  end)
end)

describe("optim: validation", function()
  local p = lg.randn(3, { requires_grad = true })

  it("rejects a negative learning rate, naming the optimizer and the value", function()
    raises("SGD: invalid learning rate: %-0%.5", O.SGD, { p }, { lr = -0.5 })
    raises("Adam: invalid learning rate: %-1", O.Adam, { p }, { lr = -1 })
    raises("RMSprop: invalid learning rate: %-2", O.RMSprop, { p }, { lr = -2 })
    raises("Adagrad: invalid learning rate: %-3", O.Adagrad, { p }, { lr = -3 })
    raises("Adamax: invalid learning rate: %-4", O.Adamax, { p }, { lr = -4 })
    raises("NAdam: invalid learning rate: %-5", O.NAdam, { p }, { lr = -5 })
    raises("RAdam: invalid learning rate: %-6", O.RAdam, { p }, { lr = -6 })
    raises("Adadelta: invalid learning rate: %-7", O.Adadelta, { p }, { lr = -7 })
  end)

  it("requires lr for SGD", function()
    raises("SGD: a learning rate is required", O.SGD, { p })
    raises("SGD: a learning rate is required", O.SGD, { p }, { momentum = 0.9 })
  end)

  it("rejects betas outside [0, 1)", function()
    raises("Adam: invalid beta parameter at index 1: 1%.0", O.Adam, { p }, { betas = { 1.0, 0.999 } })
    raises("Adam: invalid beta parameter at index 2: %-0%.1", O.Adam, { p }, { betas = { 0.9, -0.1 } })
    raises("AdamW: invalid beta parameter at index 2: 1%.5", O.AdamW, { p }, { betas = { 0.9, 1.5 } })
    raises("Adam: betas must be a table of two numbers", O.Adam, { p }, { betas = { 0.9 } })
    raises("Adamax: invalid beta parameter at index 1: 1%.0", O.Adamax, { p }, { betas = { 1.0, 0.999 } })
    raises("NAdam: invalid beta parameter at index 2: %-0%.1", O.NAdam, { p }, { betas = { 0.9, -0.1 } })
    raises("RAdam: invalid beta parameter at index 2: 1%.5", O.RAdam, { p }, { betas = { 0.9, 1.5 } })
  end)

  it("rejects NAdam's negative momentum_decay and Adadelta's rho outside [0, 1]", function()
    raises("NAdam: invalid momentum_decay value: %-0%.01", O.NAdam, { p }, { momentum_decay = -0.01 })
    raises("Adadelta: invalid rho value: 1%.5 %(must be in %[0, 1%]%)", O.Adadelta, { p }, { rho = 1.5 })
    raises("Adadelta: invalid rho value: %-0%.1", O.Adadelta, { p }, { rho = -0.1 })
    O.Adadelta({ p }, { rho = 1 }) -- the ends are allowed, as in PyTorch
    O.Adadelta({ p }, { rho = 0 })
  end)

  it("rejects a negative eps", function()
    raises("Adam: invalid epsilon value: %-1e%-08", O.Adam, { p }, { eps = -1e-8 })
    raises("RMSprop: invalid epsilon value: %-0%.1", O.RMSprop, { p }, { eps = -0.1 })
    raises("Adagrad: invalid epsilon value: %-0%.1", O.Adagrad, { p }, { eps = -0.1 })
    raises("Adamax: invalid epsilon value: %-0%.1", O.Adamax, { p }, { eps = -0.1 })
    raises("Adadelta: invalid epsilon value: %-0%.1", O.Adadelta, { p }, { eps = -0.1 })
  end)

  it("rejects a negative weight decay", function()
    raises("SGD: invalid weight_decay value: %-0%.01", O.SGD, { p }, { lr = 0.1, weight_decay = -0.01 })
    raises("AdamW: invalid weight_decay value: %-0%.5", O.AdamW, { p }, { weight_decay = -0.5 })
    raises("Adam: invalid weight_decay value: %-0%.5", O.Adam, { p }, { weight_decay = -0.5 })
    raises("RMSprop: invalid weight_decay value: %-1", O.RMSprop, { p }, { weight_decay = -1 })
    raises("Adagrad: invalid weight_decay value: %-1", O.Adagrad, { p }, { weight_decay = -1 })
    raises("NAdam: invalid weight_decay value: %-1", O.NAdam, { p }, { weight_decay = -1 })
    raises("RAdam: invalid weight_decay value: %-1", O.RAdam, { p }, { weight_decay = -1 })
    raises("Adadelta: invalid weight_decay value: %-1", O.Adadelta, { p }, { weight_decay = -1 })
  end)

  it("rejects nesterov without momentum or with dampening, naming both values", function()
    raises("SGD: Nesterov momentum requires a momentum and zero dampening %(momentum = 0, dampening = 0%)",
      O.SGD, { p }, { lr = 0.1, nesterov = true })
    raises("SGD: Nesterov momentum requires .*dampening = 0%.1%)",
      O.SGD, { p }, { lr = 0.1, nesterov = true, momentum = 0.9, dampening = 0.1 })
  end)

  it("rejects an empty parameter list, a non-tensor and a non-leaf tensor", function()
    raises("SGD: optimizer got an empty parameter list", O.SGD, {}, { lr = 0.1 })
    raises("Adam: parameter group 1 is empty", O.Adam, { { params = {} } })
    raises("Adam: params%[2%] is a number, not a tensor", O.Adam, { p, 3 })
    -- a list whose first entry is not a tensor is read as a list of groups
    raises("AdamW: parameter group 1 must be a table with a params list", O.AdamW, { "w" })
    raises("Adam: params must be a list of tensors or of parameter groups, got number", O.Adam, 5)
    raises("Adam: params%[1%] is not a leaf tensor %(it was computed by mul%)", O.Adam, { p * 2 })
    raises("Adam: params%[1%] is int64; parameters must be float", O.Adam, { lg.zeros(2, { dtype = "int64" }) })
  end)

  it("rejects unknown options, at the top level and in a group", function()
    raises("Adam: unknown option 'lrr'", O.Adam, { p }, { lrr = 0.1 })
    raises("SGD: unknown option 'betas'", O.SGD, { p }, { lr = 0.1, betas = { 0.9, 0.99 } })
    -- options PyTorch 1.13 does not have for these classes are refused too
    raises("NAdam: unknown option 'maximize'", O.NAdam, { p }, { maximize = true })
    raises("RAdam: unknown option 'amsgrad'", O.RAdam, { p }, { amsgrad = true })
    raises("Adadelta: unknown option 'betas'", O.Adadelta, { p }, { betas = { 0.9, 0.99 } })
    raises("Adamax: unknown option 'momentum_decay'", O.Adamax, { p }, { momentum_decay = 0.1 })
    local q = lg.randn(2, { requires_grad = true })
    raises("Adam: unknown option 'foo' in parameter group 2", O.Adam, { { params = { p } }, { params = { q }, foo = 1 } })
  end)

  it("rejects a parameter given twice across groups (and within one)", function()
    raises("Adam: a parameter appears more than once", O.Adam, { { params = { p } }, { params = { p }, lr = 0.1 } })
    raises("SGD: a parameter appears more than once", O.SGD, { p, p }, { lr = 0.1 })
  end)

  it("re-checks options changed between steps", function()
    local q = param({ 1 })
    local opt = O.SGD({ q }, { lr = 0.1 })
    q.grad = t64({ 1 })
    opt.param_groups[1].lr = -0.1
    raises("SGD: invalid learning rate: %-0%.1", opt.step, opt)
    close(q, { 1 }, 0, 0, "no update on a rejected step")
  end)

  it("reports validation errors at the caller's line, not inside the library", function()
    -- every message above should point at this spec file, as the empty-list and non-tensor
    -- errors do; the option checks (lr, betas, eps, weight decay, nesterov) point into optim/init.lua.
    -- The constructors are called from closures written here, so their caller is this file.
    local e1 = raises("empty parameter list", function() O.SGD({}, { lr = 0.1 }) end)
    local e2 = raises("invalid learning rate", function() O.SGD({ p }, { lr = -1 }) end)
    assert.is_truthy(e1:find("optim_spec.lua", 1, true), e1)
    assert.is_truthy(e2:find("optim_spec.lua", 1, true), e2)
  end)
end)

-- ---- state_dict / load_state_dict: save at step k, resume in fresh objects, compare with == ----

local function flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then for i = 1, #x do walk(x[i]) end else out[#out + 1] = x end
  end
  walk(t:tolist())
  return out
end

local function same_bits(got, want, what)
  local g, w = flat(got), flat(want)
  assert.are.equal(#w, #g)
  for i = 1, #w do
    if g[i] ~= w[i] then
      assert.is_true(false, string.format("%s[%d]: %.9g ~= %.9g (diff %.3g)", what, i, g[i], w[i], g[i] - w[i]))
    end
  end
end

describe("optim: state_dict and resume", function()
  local K, N = 6, 8
  local cases = {
    { "Adam", { lr = 0.05, amsgrad = true, weight_decay = 1e-3 } },
    { "AdamW", { lr = 0.05, weight_decay = 0.1 } },
    { "SGD", { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-3 } },
    { "RMSprop", { lr = 0.01, centered = true, momentum = 0.5, weight_decay = 1e-3 } },
    { "Adagrad", { lr = 0.2, lr_decay = 0.01, initial_accumulator_value = 0.1 } },
    { "Adamax", { lr = 0.05, weight_decay = 1e-3 } },
    { "NAdam", { lr = 0.05, momentum_decay = 0.01 } },
    { "RAdam", { lr = 0.05, weight_decay = 1e-3 } },
    { "Adadelta", { lr = 2, rho = 0.8, weight_decay = 1e-3 } },
  }
  lg.manual_seed(11)
  local X, Y = lg.randn(16, 4), lg.randn(16, 3)

  local function train(model, opt, steps, losses)
    for _ = 1, steps do
      opt:zero_grad()
      local loss = ((model(X) - Y) ^ 2):mean()
      losses[#losses + 1] = loss:item()
      loss:backward()
      opt:step()
    end
  end

  local function fresh(name, o, seed)
    lg.manual_seed(seed)
    local model = nn.Linear(4, 3)
    local oo = {}
    for k, v in pairs(o) do oo[k] = v end
    return model, O[name](model:parameters(), oo)
  end

  local have_save = type(lg.save) == "function" and type(lg.load) == "function"

  for _, c in ipairs(cases) do
    it(string.format("%s resumed after %d steps continues bit for bit for %d more", c[1], K, N), function()
      -- the uninterrupted run
      local m1, o1 = fresh(c[1], c[2], 3)
      local ref_losses = {}
      train(m1, o1, K + N, ref_losses)

      -- the interrupted run: K steps, save, then fresh objects load and continue
      local m2, o2 = fresh(c[1], c[2], 3)
      local losses = {}
      train(m2, o2, K, losses)
      local saved = { model = m2:state_dict(), optim = o2:state_dict() }
      if have_save then
        local path = os.tmpname()
        lg.save(path, saved)
        saved = assert(lg.load(path))
        os.remove(path)
      end
      -- the saved dict is a snapshot: another step of the old optimizer does not change it
      local st1 = saved.optim.state[1] or saved.optim.state["1"]
      local snapshot = {}
      for k, v in pairs(st1) do if type(v) == "userdata" then snapshot[k] = v:clone() end end
      train(m2, o2, 1, {})
      for k, v in pairs(snapshot) do same_bits(st1[k], v, "saved state " .. k) end

      local m3, o3 = fresh(c[1], c[2], 99)
      assert.are_not.equal(m1.weight:tolist()[1][1], m3.weight:tolist()[1][1])
      m3:load_state_dict(saved.model)
      o3:load_state_dict(saved.optim)
      train(m3, o3, N, losses)

      for i = 1, K + N do
        assert.is_true(losses[i] == ref_losses[i],
          string.format("loss at step %d: %.9g resumed vs %.9g uninterrupted", i, losses[i], ref_losses[i]))
      end
      same_bits(m3.weight, m1.weight, "weight")
      same_bits(m3.bias, m1.bias, "bias")
      local p1, p3 = m1:parameters(), m3:parameters()
      for i = 1, #p1 do
        for k, v in pairs(o1.state[p1[i]]) do
          if type(v) == "userdata" then same_bits(o3.state[p3[i]][k], v, c[1] .. " state " .. k)
          else assert.are.equal(v, o3.state[p3[i]][k]) end
        end
      end
    end)
  end

  it("restores group options (lr changed by hand) and rejects a mismatched dict", function()
    local a, b = param({ 1, 2 }), param({ 3 })
    local opt = O.SGD({ { params = { a } }, { params = { b }, lr = 0.2 } }, { lr = 0.1, momentum = 0.9 })
    opt.param_groups[2].lr = 0.05
    local sd = opt:state_dict()
    local a2, b2 = param({ 0, 0 }), param({ 0 })
    local opt2 = O.SGD({ { params = { a2 } }, { params = { b2 } } }, { lr = 1 })
    opt2:load_state_dict(sd)
    assert.are.equal(0.1, opt2.param_groups[1].lr)
    assert.are.equal(0.05, opt2.param_groups[2].lr)
    assert.are.equal(0.9, opt2.param_groups[2].momentum)
    assert.are.equal(a2, opt2.param_groups[1].params[1])
    raises("SGD: load_state_dict: 2 parameter groups saved, this optimizer has 1", opt.load_state_dict,
      O.SGD({ a2, b2 }, { lr = 1 }), sd)
    raises("load_state_dict: group 1 has 1 parameters saved and 2 here", opt.load_state_dict,
      O.SGD({ { params = { a2, b2 } }, { params = { param({ 1 }) } } }, { lr = 1 }), sd)
  end)
end)

describe("nn.utils.clip_grad_norm_ and clip_grad_value_", function()
  local function two()
    local a, b = param({ 0, 0 }), param({ 0 })
    a.grad, b.grad = t64({ 3, 4 }), t64({ 12 })
    return a, b
  end

  it("returns the total 2-norm before clipping and scales to max_norm / (total + 1e-6)", function()
    local a, b = two()
    local total = utils.clip_grad_norm_({ a, b }, 1.0)
    assert.are.equal(0, total:dim())
    close(total:item(), 13, 1e-15, 0, "total")
    local coef = 1.0 / (13 + 1e-6)
    close(a.grad, { 3 * coef, 4 * coef }, 1e-14, 0, "a.grad")
    close(b.grad, { 12 * coef }, 1e-14, 0, "b.grad")
    close(math.sqrt(a.grad:tolist()[1] ^ 2 + a.grad:tolist()[2] ^ 2 + b.grad:tolist()[1] ^ 2), 1.0, 1e-6, 0, "new norm")
  end)

  it("handles norm_type = math.huge (largest |g|) and 1 (sum of |g|)", function()
    local a, b = two()
    a.grad = t64({ -20, 4 })
    local total = utils.clip_grad_norm_({ a, b }, 2.0, { norm_type = math.huge })
    close(total:item(), 20, 0, 0, "inf-norm")
    local coef = 2.0 / (20 + 1e-6)
    close(a.grad, { -20 * coef, 4 * coef }, 1e-14, 0, "a.grad inf")
    close(b.grad, { 12 * coef }, 1e-14, 0, "b.grad inf")

    a, b = two()
    total = utils.clip_grad_norm_({ a, b }, 5.0, { norm_type = 1 })
    close(total:item(), 19, 1e-15, 0, "1-norm")
    coef = 5.0 / (19 + 1e-6)
    close(a.grad, { 3 * coef, 4 * coef }, 1e-14, 0, "a.grad 1")
    close(b.grad, { 12 * coef }, 1e-14, 0, "b.grad 1")
  end)

  it("leaves gradients below max_norm unchanged and skips nil gradients", function()
    local a, b = two()
    local c = param({ 7 })
    local total = utils.clip_grad_norm_({ a, b, c }, 100)
    close(total:item(), 13, 1e-15, 0, "total")
    close(a.grad, { 3, 4 }, 0, 0, "a.grad")
    close(b.grad, { 12 }, 0, 0, "b.grad")
    assert.is_nil(c.grad)
    -- works on float32 gradients too
    local f = lg.zeros(2, { requires_grad = true })
    f.grad = lg.tensor({ 30, 40 })
    close(utils.clip_grad_norm_(f, 5):item(), 50, 1e-7, 0, "float32 total")
    close(f.grad, { 3, 4 }, 1e-6, 0, "float32 clipped")
  end)

  it("raises on a non-finite total norm with error_if_nonfinite = true, and not by default", function()
    local a, b = two()
    b.grad = t64({ 0 / 0 })
    raises("clip_grad_norm_: the total norm of order 2 of the gradients is .*nan", utils.clip_grad_norm_, { a, b }, 1,
      { error_if_nonfinite = true })
    a, b = two()
    b.grad = t64({ math.huge })
    raises("clip_grad_norm_: the total norm of order inf of the gradients is inf", utils.clip_grad_norm_, { a, b }, 1,
      { error_if_nonfinite = true, norm_type = math.huge })
    a, b = two()
    b.grad = t64({ math.huge })
    local total = utils.clip_grad_norm_({ a, b }, 1)
    assert.are.equal(math.huge, total:item())
  end)

  it("clip_grad_value_ clamps every element into [-v, v]", function()
    local a, b = two()
    a.grad = t64({ -3, 0.25 })
    utils.clip_grad_value_({ a, b }, 0.5)
    close(a.grad, { -0.5, 0.25 }, 0, 0, "a.grad")
    close(b.grad, { 0.5 }, 0, 0, "b.grad")
    raises("clip_grad_value_: clip_value must be a non%-negative number, got %-1", utils.clip_grad_value_, { a }, -1)
  end)
end)
