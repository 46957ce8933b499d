-- Learning-rate schedules (lg.optim.lr_scheduler): PyTorch 1.13's semantics beyond the golden
-- file (spec/optim_golden_spec.lua). Expected values are written from the closed forms in
-- PyTorch's documentation, not from the implementation: the learning rate in force after t calls
-- of sched:step() (t = 0 right after construction).
local lg = require "luagrad"
local O = lg.optim
local S = lg.optim.lr_scheduler
package.path = "spec/?.lua;" .. package.path
local raises = require("helpers.util").raises

local pi, cos = math.pi, math.cos

local function new_opt(kind, lrs, extra)
  local groups = {}
  for i, lr in ipairs(lrs) do
    local g = { params = { lg.zeros(1, { requires_grad = true }) }, lr = lr }
    for k, v in pairs(extra or {}) do g[k] = v end
    groups[i] = g
  end
  return O[kind or "SGD"](groups, kind == "SGD" and { lr = 1, momentum = 0.9 } or {})
end

local function sgd(lr) return new_opt("SGD", { lr or 1 }) end

-- |got - want| <= rel |want| + abs
local function close(got, want, rel, what, abs)
  rel = rel or 1e-12
  assert.is_true(math.abs(got - want) <= rel * math.abs(want) + (abs or 1e-300),
    string.format("%s: got %.17g, want %.17g", what or "value", got, want))
end

-- Steps sched n times, checking lr(t) against want(t) for t = 0..n.
local function follow(opt, sched, n, want, what, group)
  group = group or 1
  for t = 0, n do
    close(opt.param_groups[group].lr, want(t), 1e-12, string.format("%s lr at t=%d", what, t))
    if t < n then sched:step() end
  end
end

describe("lr_scheduler: construction and get_last_lr", function()
  it("sets the first learning rate at construction and records initial_lr", function()
    local opt = sgd(0.8)
    local s = S.LinearLR(opt, { start_factor = 0.25, total_iters = 4 })
    close(opt.param_groups[1].lr, 0.2, 1e-15, "LinearLR at construction")
    assert.are.equal(0.8, opt.param_groups[1].initial_lr)
    assert.are.same({ 0.2 }, s:get_last_lr())

    opt = new_opt("SGD", { 0.5 })
    S.OneCycleLR(opt, { max_lr = 2.5, total_steps = 10 })
    close(opt.param_groups[1].lr, 0.1, 1e-15, "OneCycleLR at construction: max_lr / div_factor")
    close(opt.param_groups[1].momentum, 0.95, 1e-15, "OneCycleLR momentum at construction")

    opt = sgd(0.3)
    S.CosineAnnealingWarmRestarts(opt, { T_0 = 4 })
    close(opt.param_groups[1].lr, 0.3, 1e-15, "warm restarts at construction")
  end)

  it("get_last_lr lists the rate of every group, as of the last step", function()
    local opt = new_opt("SGD", { 1, 0.1 })
    local s = S.StepLR(opt, { step_size = 2, gamma = 0.5 })
    assert.are.same({ 1, 0.1 }, s:get_last_lr())
    for _ = 1, 3 do s:step() end
    local last = s:get_last_lr()
    assert.are.equal(2, #last)
    close(last[1], 0.5, 1e-15, "group 1")
    close(last[2], 0.05, 1e-15, "group 2")
    opt.param_groups[1].lr = 7 -- a hand change is not a step
    close(s:get_last_lr()[1], 0.5, 1e-15, "after a hand change")
    s:step()
    close(s:get_last_lr()[1], 0.25 * 14, 1e-15, "StepLR is chainable: it scales the rate in force")
  end)
end)

describe("lr_scheduler: schedules against their closed forms", function()
  it("MultiStepLR applies gamma once per repetition of a milestone (given unsorted)", function()
    local opt = sgd(1)
    local s = S.MultiStepLR(opt, { milestones = { 5, 2, 2 }, gamma = 0.1 })
    follow(opt, s, 8, function(t)
      if t < 2 then return 1 elseif t < 5 then return 0.01 else return 0.001 end
    end, "MultiStepLR")
  end)

  it("ExponentialLR, StepLR, CosineAnnealingLR, LinearLR, PolynomialLR follow their formulas", function()
    local opt = sgd(0.5)
    follow(opt, S.ExponentialLR(opt, { gamma = 0.9 }), 30, function(t) return 0.5 * 0.9 ^ t end, "ExponentialLR")
    opt = sgd(0.5)
    follow(opt, S.StepLR(opt, { step_size = 3 }), 12, function(t) return 0.5 * 0.1 ^ (t // 3) end, "StepLR")
    opt = sgd(0.5)
    follow(opt, S.CosineAnnealingLR(opt, { T_max = 20, eta_min = 0.01 }), 20, function(t)
      return 0.01 + (0.5 - 0.01) * (1 + cos(pi * t / 20)) / 2
    end, "CosineAnnealingLR")
    opt = sgd(0.5)
    follow(opt, S.LinearLR(opt, { start_factor = 0.2, end_factor = 0.9, total_iters = 7 }), 12, function(t)
      return 0.5 * (0.2 + 0.7 * math.min(t, 7) / 7)
    end, "LinearLR")
    opt = sgd(0.5)
    follow(opt, S.PolynomialLR(opt, { total_iters = 8, power = 2 }), 12, function(t)
      return 0.5 * (1 - math.min(t, 8) / 8) ^ 2
    end, "PolynomialLR")
  end)

  -- OneCycleLR, two phases, cos: T = 20, pct_start = 0.25, so phase 1 ends at step 4
  -- (0.25 T - 1) and phase 2 at step 19 (T - 1); lr from max_lr / 25 up to max_lr, then down
  -- to max_lr / 25 / 1e4; momentum from 0.95 down to 0.85, then back up. The rates are compared
  -- to 1e-12 relative with an absolute floor of 1e-12 max_lr: the formula below loses digits to
  -- cancellation near the end of the cycle, where the rate is 2.5e5 times smaller than max_lr.
  local function ramp(a, b, pct) return a + (b - a) * (1 - cos(pi * pct)) / 2 end
  local function onecycle_lr(t)
    if t <= 4 then return ramp(0.08, 2, t / 4) end
    return ramp(2, 0.08 / 1e4, (t - 4) / 15)
  end
  local function onecycle_m(t)
    if t <= 4 then return ramp(0.95, 0.85, t / 4) end
    return ramp(0.85, 0.95, (t - 4) / 15)
  end

  it("OneCycleLR cycles lr and SGD momentum between 0.95 and 0.85", function()
    local opt = sgd(1)
    local s = S.OneCycleLR(opt, { max_lr = 2, total_steps = 20, pct_start = 0.25 })
    for t = 0, 19 do
      local g = opt.param_groups[1]
      close(g.lr, onecycle_lr(t), 1e-12, "lr at t=" .. t, 2e-12)
      close(g.momentum, onecycle_m(t), 1e-12, "momentum at t=" .. t)
      if t < 19 then s:step() end
    end
    close(onecycle_m(4), 0.85, 1e-15, "the formula's trough")
    close(onecycle_lr(4), 2, 1e-15, "the formula's peak")
  end)

  it("OneCycleLR cycles Adam's betas[1] and keeps betas[2]", function()
    local opt = new_opt("Adam", { 1 }, { betas = { 0.9, 0.99 } })
    local s = S.OneCycleLR(opt, { max_lr = 2, total_steps = 20, pct_start = 0.25 })
    for t = 0, 19 do
      local g = opt.param_groups[1]
      close(g.lr, onecycle_lr(t), 1e-12, "lr at t=" .. t, 2e-12)
      close(g.betas[1], onecycle_m(t), 1e-12, "beta1 at t=" .. t)
      assert.are.equal(0.99, g.betas[2])
      if t < 19 then s:step() end
    end
  end)

  it("OneCycleLR allows total_steps steps after construction and errors on the next (PyTorch: step_num > total_steps)", function()
    local opt = sgd(1)
    local s = S.OneCycleLR(opt, { max_lr = 2, total_steps = 20, pct_start = 0.25 })
    -- a loop of 20 optimizer steps, each followed by sched:step(), as PyTorch's docs show it
    local ok, err = pcall(function() for _ = 1, 20 do s:step() end end)
    assert.is_true(ok, "stepping total_steps times raised: " .. tostring(err))
    raises("OneCycleLR: tried to step 22 times; total steps is 20", s.step, s)
  end)

  it("OneCycleLR errors when stepped past total_steps", function()
    local opt = sgd(1)
    local s = S.OneCycleLR(opt, { max_lr = 2, total_steps = 5 })
    local ok = true
    for _ = 1, 10 do
      ok = pcall(s.step, s)
      if not ok then break end
    end
    assert.is_false(ok, "never raised")
    raises("OneCycleLR: tried to step %d+ times; total steps is 5", s.step, s)
  end)

  it("CosineAnnealingWarmRestarts with T_mult = 1 restarts every T_0 steps", function()
    local opt = sgd(1)
    local s = S.CosineAnnealingWarmRestarts(opt, { T_0 = 5, eta_min = 0.1 })
    follow(opt, s, 23, function(t) return 0.1 + 0.9 * (1 + cos(pi * (t % 5) / 5)) / 2 end, "T_mult=1")
  end)

  it("CosineAnnealingWarmRestarts with T_mult = 2 doubles each period (3, 6, 12)", function()
    local function want(t)
      local Tcur, Ti
      if t < 3 then Tcur, Ti = t, 3 elseif t < 9 then Tcur, Ti = t - 3, 6 else Tcur, Ti = t - 9, 12 end
      return 0.05 + 0.95 * (1 + cos(pi * Tcur / Ti)) / 2
    end
    local opt = sgd(1)
    local s = S.CosineAnnealingWarmRestarts(opt, { T_0 = 3, T_mult = 2, eta_min = 0.05 })
    follow(opt, s, 20, want, "T_mult=2")
    -- an explicit (fractional) epoch jumps to its place in the cycle
    s:step(4.5)
    close(opt.param_groups[1].lr, 0.05 + 0.95 * (1 + cos(pi * 1.5 / 6)) / 2, 1e-12, "step(4.5)")
    s:step(10)
    close(opt.param_groups[1].lr, want(10), 1e-12, "step(10)")
  end)

  it("LambdaLR takes one function per group", function()
    local opt = new_opt("SGD", { 1, 10 })
    local s = S.LambdaLR(opt, { lr_lambda = { function(t) return 0.5 ^ t end, function(t) return 1 / (t + 1) end } })
    for t = 0, 6 do
      close(opt.param_groups[1].lr, 0.5 ^ t, 1e-15, "group 1 at t=" .. t)
      close(opt.param_groups[2].lr, 10 / (t + 1), 1e-15, "group 2 at t=" .. t)
      s:step()
    end
  end)

  it("FunctionLR sets the rate to f(t) itself, and the optimizer uses it", function()
    local p = lg.zeros(1, { dtype = "float64", requires_grad = true })
    local opt = O.SGD({ p }, { lr = 123 })
    local s = S.FunctionLR(opt, { lr = function(t) return 0.1 * (t + 1) end })
    local sum = 0
    for t = 0, 4 do
      close(opt.param_groups[1].lr, 0.1 * (t + 1), 1e-15, "lr at t=" .. t)
      sum = sum + opt.param_groups[1].lr
      p.grad = lg.ones(1, { dtype = "float64" })
      opt:step()
      s:step()
    end
    close(p:item(), -sum, 1e-15, "p after five steps with rates 0.1 .. 0.5")
  end)
end)

describe("lr_scheduler: the reference text's one-liners through FunctionLR", function()
  -- The one-liners as the module documents them (the header of lua/luagrad/optim/lr_scheduler.lua),
  -- loaded verbatim, so the documentation is what is checked.
  local doc = {}
  local f = io.open("lua/luagrad/optim/lr_scheduler.lua", "r")
  if f then
    for line in f:lines() do
      local name, code = line:match("^%-%-%s+(%a[%a +]-%a)%s%s+(function%(t%).-end)%s*$")
      if name then doc[name] = code end
    end
    f:close()
  end
  local env = { math = math, eta0 = 0.4, eta_min = 0.01, gamma = 0.5, s = 7, T = 50, Tw = 10, alpha = 0.05 }
  local cases = {
    { "step decay", function(t) local v = 0.4 for _ = 1, math.floor(t / 7) do v = v * 0.5 end return v end },
    { "cosine annealing", function(t) return 0.4 - (0.4 - 0.01) * math.sin(pi * t / 100) ^ 2 end },
    { "warmup + decay", function(t) if t < 10 then return 0.04 * t end return 0.01 * (50 - t) end },
    { "exponential decay", function(t) return 0.4 / math.exp(0.05) ^ t end },
    { "inverse time", function(t) return 0.4 / (1 + t / 20) end },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " gives its closed-form value at every step", function()
      assert.is_string(doc[c[1]], "no one-liner for '" .. c[1] .. "' in the lr_scheduler docs")
      local fn = assert(load("return " .. doc[c[1]], c[1], "t", env))()
      local opt = sgd(1)
      local sched = S.FunctionLR(opt, { lr = fn })
      follow(opt, sched, 50, c[2], c[1])
    end)
  end

  it("the one-liners agree with the built-in StepLR, CosineAnnealingLR and ExponentialLR", function()
    local pairs_ = {
      { "step decay", function(o) return S.StepLR(o, { step_size = 7, gamma = 0.5 }) end },
      { "cosine annealing", function(o) return S.CosineAnnealingLR(o, { T_max = 50, eta_min = 0.01 }) end },
      { "exponential decay", function(o) return S.ExponentialLR(o, { gamma = math.exp(-0.05) }) end },
    }
    for _, pr in ipairs(pairs_) do
      local fn = assert(load("return " .. assert(doc[pr[1]], pr[1]), pr[1], "t", env))()
      local o1, o2 = sgd(1), sgd(0.4)
      local s1, s2 = S.FunctionLR(o1, { lr = fn }), pr[2](o2)
      for t = 0, 50 do
        close(o2.param_groups[1].lr, o1.param_groups[1].lr, 1e-12, pr[1] .. " at t=" .. t)
        s1:step()
        s2:step()
      end
    end
  end)
end)

describe("lr_scheduler: ReduceLROnPlateau", function()
  local function run(opts, metrics, lr0)
    local opt = sgd(lr0 or 1)
    local s = S.ReduceLROnPlateau(opt, opts)
    local lrs = {}
    for i, m in ipairs(metrics) do
      s:step(m)
      lrs[i] = opt.param_groups[1].lr
    end
    return lrs, s
  end
  local function rep(v, n) local t = {} for i = 1, n do t[i] = v end return t end

  it("waits patience bad steps, then multiplies by factor", function()
    local lrs = run({ factor = 0.5, patience = 2 }, rep(1.0, 10))
    assert.are.same({ 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125 }, lrs)
    -- an improvement resets the count
    lrs = run({ factor = 0.5, patience = 2 }, { 5, 5, 5, 4, 4, 4, 4 })
    assert.are.same({ 1, 1, 1, 1, 1, 1, 0.5 }, lrs)
  end)

  it("waits cooldown steps after a reduction before counting again", function()
    local lrs = run({ factor = 0.5, patience = 0, cooldown = 2 }, rep(1.0, 9))
    assert.are.same({ 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125, 0.125 }, lrs)
  end)

  it("never goes below min_lr, and skips reductions smaller than eps", function()
    local lrs = run({ factor = 0.1, patience = 0, min_lr = 0.005 }, rep(1.0, 6))
    assert.are.same(1, lrs[1])
    close(lrs[2], 0.1, 1e-15, "first reduction")
    close(lrs[3], 0.01, 1e-15, "second reduction")
    for i = 4, 6 do assert.are.equal(0.005, lrs[i]) end
    lrs = run({ factor = 0.5, patience = 0, eps = 0.1 }, rep(1.0, 5), 0.15)
    assert.are.same({ 0.15, 0.15, 0.15, 0.15, 0.15 }, lrs) -- 0.15 - 0.075 < eps
    -- a per-group min_lr list
    local opt = new_opt("SGD", { 1, 1 })
    local s = S.ReduceLROnPlateau(opt, { factor = 0.1, patience = 0, min_lr = { 0.5, 0 } })
    s:step(1); s:step(1)
    assert.are.same({ 0.5, 0.1 }, s:get_last_lr())
  end)

  it("mode = max treats a rising metric as improvement", function()
    local lrs = run({ mode = "max", factor = 0.5, patience = 1 }, { 1, 2, 3, 3, 3, 2, 4 })
    assert.are.same({ 1, 1, 1, 1, 0.5, 0.5, 0.5 }, lrs)
    -- the same rising metric in min mode is a plateau
    lrs = run({ mode = "min", factor = 0.5, patience = 1 }, { 1, 2, 3 })
    assert.are.same({ 1, 1, 0.5 }, lrs)
  end)

  it("threshold modes: rel needs best * (1 - threshold), abs needs best - threshold", function()
    -- best = 10; 9.5 beats it by 0.5: not by 10% (rel 0.1 needs < 9), but by more than abs 0.1
    local rel = run({ threshold = 0.1, threshold_mode = "rel", patience = 0, factor = 0.5 }, { 10, 9.5 })
    local abs = run({ threshold = 0.1, threshold_mode = "abs", patience = 0, factor = 0.5 }, { 10, 9.5 })
    assert.are.same({ 1, 0.5 }, rel)
    assert.are.same({ 1, 1 }, abs)
    -- and in max mode: 10.5 over 10 beats abs 0.1 but not rel 0.1 (needs > 11)
    rel = run({ mode = "max", threshold = 0.1, threshold_mode = "rel", patience = 0, factor = 0.5 }, { 10, 10.5 })
    abs = run({ mode = "max", threshold = 0.1, threshold_mode = "abs", patience = 0, factor = 0.5 }, { 10, 10.5 })
    assert.are.same({ 1, 0.5 }, rel)
    assert.are.same({ 1, 1 }, abs)
  end)

  it("accepts a 0-d tensor as the metric and tracks best", function()
    local _, s = run({ patience = 5 }, { 3, 2, 2.5 })
    assert.are.equal(2, s.best)
    s:step(lg.tensor(1.5))
    assert.are.equal(1.5, s.best)
  end)
end)

-- ---- state_dict round trip: stop at step k, load into a fresh optimizer and scheduler, continue ----

local function deep_copy(x, seen)
  if type(x) ~= "table" then return x end
  seen = seen or {}
  if seen[x] then return seen[x] end
  local c = {}
  seen[x] = c
  for k, v in pairs(x) do c[deep_copy(k, seen)] = deep_copy(v, seen) end
  return setmetatable(c, getmetatable(x))
end

local round_trip = {
  { "StepLR", "SGD", function(o) return S.StepLR(o, { step_size = 3, gamma = 0.5 }) end },
  { "MultiStepLR", "SGD", function(o) return S.MultiStepLR(o, { milestones = { 4, 9, 9 }, gamma = 0.3 }) end },
  { "ExponentialLR", "SGD", function(o) return S.ExponentialLR(o, { gamma = 0.9 }) end },
  { "CosineAnnealingLR", "SGD", function(o) return S.CosineAnnealingLR(o, { T_max = 7, eta_min = 0.01 }) end },
  { "CosineAnnealingWarmRestarts", "SGD", function(o)
    return S.CosineAnnealingWarmRestarts(o, { T_0 = 2, T_mult = 2, eta_min = 0.01 })
  end },
  { "OneCycleLR", "Adam", function(o) return S.OneCycleLR(o, { max_lr = 0.5, total_steps = 30 }) end },
  { "LinearLR", "SGD", function(o) return S.LinearLR(o, { start_factor = 0.1, total_iters = 10 }) end },
  { "PolynomialLR", "SGD", function(o) return S.PolynomialLR(o, { total_iters = 12, power = 2 }) end },
  { "LambdaLR", "SGD", function(o) return S.LambdaLR(o, { lr_lambda = function(t) return 1 / (1 + t) end }) end },
  { "FunctionLR", "SGD", function(o) return S.FunctionLR(o, { lr = function(t) return 0.1 / (1 + t) end }) end },
  { "SequentialLR", "SGD", function(o)
    local a = S.LinearLR(o, { start_factor = 0.1, total_iters = 5 })
    local b = S.CosineAnnealingLR(o, { T_max = 20, eta_min = 0.001 })
    return S.SequentialLR(o, { schedulers = { a, b }, milestones = { 5 } })
  end },
  { "ReduceLROnPlateau", "SGD", function(o) return S.ReduceLROnPlateau(o, { patience = 1, factor = 0.5, cooldown = 1 }) end },
}

describe("lr_scheduler: state_dict round trip", function()
  local K, N = 8, 14
  local function metric(t) return 1 / (1 + t % 3) + (t < 4 and -t or 0) end

  local function steps(sched, from, n, opt, trace)
    for t = from, from + n - 1 do
      if sched.mode then sched:step(metric(t)) else sched:step() end
      local g = opt.param_groups[1]
      trace[#trace + 1] = { g.lr, g.momentum or (g.betas and g.betas[1]) }
    end
  end

  local function check(name, mk, kind, transport)
    local function fresh(lr) return new_opt(kind, { lr }, kind == "SGD" and { momentum = 0.9 } or nil) end
    local o1 = fresh(0.3)
    local s1 = mk(o1)
    local ref = {}
    steps(s1, 1, K + N, o1, ref)

    local o2 = fresh(0.3)
    local s2 = mk(o2)
    local got = {}
    steps(s2, 1, K, o2, got)
    local osd, ssd = transport(o2:state_dict()), transport(s2:state_dict())

    local o3 = fresh(0.07)
    local s3 = mk(o3)
    o3:load_state_dict(osd)
    s3:load_state_dict(ssd)
    steps(s3, K + 1, N, o3, got)
    for i = 1, K + N do
      assert.is_true(got[i][1] == ref[i][1] and got[i][2] == ref[i][2],
        string.format("%s step %d: lr %.17g / momentum %s resumed, %.17g / %s uninterrupted", name, i, got[i][1],
          tostring(got[i][2]), ref[i][1], tostring(ref[i][2])))
    end
    -- the old optimizer must be untouched by the resumed scheduler
    assert.are.equal(got[K][1], o2.param_groups[1].lr, name .. ": the resumed scheduler drove the old optimizer")
  end

  for _, c in ipairs(round_trip) do
    it(c[1] .. " resumed mid-run (a deep copy of both state dicts) continues identically", function()
      check(c[1], c[3], c[2], deep_copy)
    end)
  end

  local function via_file(sd)
    local path = os.tmpname()
    lg.save(path, sd)
    local r = assert(lg.load(path))
    os.remove(path)
    return r
  end
  for _, c in ipairs(round_trip) do
    if c[1] ~= "FunctionLR" then -- FunctionLR is defined by its function; there is nothing else to save
      it(c[1] .. " state dicts survive lg.save / lg.load and the run continues identically", function()
        check(c[1], c[3], c[2], via_file)
      end)
    end
  end
end)

describe("lr_scheduler: bad options raise clear errors", function()
  local bad = {
    { "StepLR: the first argument must be an optimizer, got number", function() S.StepLR(5, { step_size = 1 }) end },
    { "StepLR: option 'step_size' is required", function() S.StepLR(sgd(), {}) end },
    { "StepLR: invalid step_size: 0", function() S.StepLR(sgd(), { step_size = 0 }) end },
    { "StepLR: option 'gamma' must be a number, got string", function() S.StepLR(sgd(), { step_size = 2, gamma = "x" }) end },
    { "MultiStepLR: option 'milestones' must be a list", function() S.MultiStepLR(sgd(), { milestones = 3 }) end },
    { "ExponentialLR: option 'gamma' is required", function() S.ExponentialLR(sgd(), {}) end },
    { "CosineAnnealingLR: invalid T_max: 0", function() S.CosineAnnealingLR(sgd(), { T_max = 0 }) end },
    { "CosineAnnealingWarmRestarts: invalid T_0: 0", function() S.CosineAnnealingWarmRestarts(sgd(), { T_0 = 0 }) end },
    { "CosineAnnealingWarmRestarts: invalid T_mult: 1.5", function()
      S.CosineAnnealingWarmRestarts(sgd(), { T_0 = 2, T_mult = 1.5 })
    end },
    { "OneCycleLR: option 'max_lr' is required", function() S.OneCycleLR(sgd(), { total_steps = 10 }) end },
    { "OneCycleLR: give total_steps, or epochs and steps_per_epoch", function() S.OneCycleLR(sgd(), { max_lr = 1 }) end },
    { "OneCycleLR: invalid total_steps: 0", function() S.OneCycleLR(sgd(), { max_lr = 1, total_steps = 0 }) end },
    { "OneCycleLR: invalid pct_start: 1.5", function()
      S.OneCycleLR(sgd(), { max_lr = 1, total_steps = 10, pct_start = 1.5 })
    end },
    { 'OneCycleLR: anneal_strategy must be "cos" or "linear", got "exp"', function()
      S.OneCycleLR(sgd(), { max_lr = 1, total_steps = 10, anneal_strategy = "exp" })
    end },
    { "OneCycleLR: .*momentum", function() -- PyTorch: "optimizer must support momentum ..."
      S.OneCycleLR(new_opt("Adagrad", { 1 }), { max_lr = 1, total_steps = 10 })
    end },
    { "LinearLR: invalid start_factor: 0", function() S.LinearLR(sgd(), { start_factor = 0 }) end },
    { "LinearLR: invalid start_factor: 1.5", function() S.LinearLR(sgd(), { start_factor = 1.5 }) end },
    { "LinearLR: invalid end_factor: 2", function() S.LinearLR(sgd(), { end_factor = 2 }) end },
    { "PolynomialLR: invalid total_iters: 0", function() S.PolynomialLR(sgd(), { total_iters = 0 }) end },
    { "LambdaLR: option 'lr_lambda' must be a function", function() S.LambdaLR(sgd(), {}) end },
    { "LambdaLR: .*2.*lr_lambda.*1", function() -- PyTorch: "Expected 2 lr_lambdas, but got 1"
      S.LambdaLR(new_opt("SGD", { 1, 1 }), { lr_lambda = { function() return 1 end } })
    end },
    { "FunctionLR: option 'lr' must be a function of the step", function() S.FunctionLR(sgd(), { lr = 0.1 }) end },
    { "SequentialLR: expected 1 milestones for 2 schedulers, got 0", function()
      local o = sgd()
      S.SequentialLR(o, { schedulers = { S.StepLR(o, { step_size = 1 }), S.StepLR(o, { step_size = 2 }) }, milestones = {} })
    end },
    { "SequentialLR: scheduler 2 belongs to a different optimizer", function()
      local o = sgd()
      local other = S.StepLR(sgd(), { step_size = 2 })
      S.SequentialLR(o, { schedulers = { S.StepLR(o, { step_size = 1 }), other }, milestones = { 3 } })
    end },
    { "ReduceLROnPlateau: invalid factor: 1", function() S.ReduceLROnPlateau(sgd(), { factor = 1.0 }) end },
    { 'ReduceLROnPlateau: mode must be "min" or "max", got "median"', function()
      S.ReduceLROnPlateau(sgd(), { mode = "median" })
    end },
    { 'ReduceLROnPlateau: threshold_mode must be "rel" or "abs", got "pct"', function()
      S.ReduceLROnPlateau(sgd(), { threshold_mode = "pct" })
    end },
    { "ReduceLROnPlateau:step: metric must be a number or a one%-element tensor, got nil", function()
      S.ReduceLROnPlateau(sgd(), {}):step()
    end },
  }
  for _, b in ipairs(bad) do
    it("raises " .. b[1]:gsub("%%", ""), function() raises(b[1], b[2]) end)
  end
end)
