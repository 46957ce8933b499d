-- schedules.lua: chapter 6 of the reference text, "Learning Rate Schedules", and the convergence
-- condition of chapter 3.
--
--   build/luagrad examples/schedules.lua [--quick] [--out DIR]
--
-- What it shows:
--   1. Every schedule in lg.optim.lr_scheduler, stepped as in training (the first rate is set at
--      construction, sched:step() after each optimizer step), next to its closed form where one
--      exists. PyTorch's schedulers are "chainable" (each rate is computed from the previous one),
--      so agreement with the closed form to ~1e-12 is a real check, not a tautology.
--   2. The text's formulas (step decay, cosine annealing, linear warmup + linear decay,
--      exponential decay, inverse time eta0 / (1 + alpha t)) as one-line Lua functions driving an
--      optimizer through FunctionLR, and the library schedule each one coincides with.
--   3. The text's claim that eta_t = eta0 / (1 + alpha t) satisfies sum eta_t = infinity and
--      sum eta_t^2 < infinity, measured: partial sums of eta grow by the same amount every decade
--      of T (like (eta0/alpha) log T), partial sums of eta^2 settle (each decade adds ~10x less).
--
-- Writes DIR/schedules.svg (the library's schedules) and DIR/schedules_text.svg (the text's
-- formulas). --quick shortens the inverse-time horizon (10^5 steps instead of 10^6).
local lg = require "luagrad"
local S = lg.optim.lr_scheduler

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "schedules")
local quick, out = opts.quick, opts.out

-- ---- the setup: one parameter, SGD, a base rate eta0, T steps ----
local eta0, T = 0.1, 100

-- Runs a schedule for T steps on a fresh optimizer and returns the rates used at t = 0 .. T-1.
-- make(opt) builds the schedule; metric(t), if given, feeds ReduceLROnPlateau.
local function trace(make, metric)
  local p = lg.zeros(1, { requires_grad = true })
  local opt = lg.optim.SGD({ p }, { lr = eta0, momentum = 0.9 })
  local sched = make(opt)
  local lrs = {}
  for t = 0, T - 1 do
    lrs[t + 1] = opt.param_groups[1].lr -- the rate this step would use
    -- (an optimizer step would go here; the schedule does not depend on it)
    if metric then sched:step(metric(t)) else sched:step() end
  end
  return lrs
end

-- ---- 1. the library's schedules, each with its closed form ----
local cos, pi, exp, log = math.cos, math.pi, math.exp, math.log
local function cosine_between(hi, lo, frac) return lo + 0.5 * (hi - lo) * (1 + cos(pi * frac)) end

local Tw = 10 -- warmup length used by LinearLR / SequentialLR
local onecycle_T, pct = T, 0.3
local oc_max, oc_init = 0.5, 0.5 / 25
local oc_min = oc_init / 1e4
local onecycle_up = pct * onecycle_T - 1 -- PyTorch's phase boundary: step pct*T - 1 reaches max_lr

-- the plateau experiment: a metric that improves until t = 30 and then stays flat
local plateau_at, patience, factor = 30, 9, 0.5
local function metric(t) return t < plateau_at and 1 / (1 + t) or 1 / (1 + plateau_at) end

local library = {
  { name = "StepLR", make = function(o) return S.StepLR(o, { step_size = 20, gamma = 0.5 }) end,
    closed = function(t) return eta0 * 0.5 ^ (t // 20) end },
  { name = "MultiStepLR", make = function(o) return S.MultiStepLR(o, { milestones = { 30, 60, 80 }, gamma = 0.3 }) end,
    closed = function(t) return eta0 * 0.3 ^ ((t >= 30 and 1 or 0) + (t >= 60 and 1 or 0) + (t >= 80 and 1 or 0)) end },
  { name = "ExponentialLR", make = function(o) return S.ExponentialLR(o, { gamma = 0.96 }) end,
    closed = function(t) return eta0 * 0.96 ^ t end },
  { name = "CosineAnnealingLR", make = function(o) return S.CosineAnnealingLR(o, { T_max = T, eta_min = 0.005 }) end,
    closed = function(t) return cosine_between(eta0, 0.005, t / T) end },
  { name = "CosineAnnealingWarmRestarts",
    make = function(o) return S.CosineAnnealingWarmRestarts(o, { T_0 = 10, T_mult = 2, eta_min = 0.002 }) end,
    closed = function(t) -- restarts after 10, 20, 40 ... steps
      local start, len = 0, 10
      while t >= start + len do start, len = start + len, len * 2 end
      return cosine_between(eta0, 0.002, (t - start) / len)
    end },
  { name = "OneCycleLR",
    make = function(o) return S.OneCycleLR(o, { max_lr = oc_max, total_steps = onecycle_T, pct_start = pct }) end,
    closed = function(t)
      if t <= onecycle_up then return cosine_between(oc_init, oc_max, t / onecycle_up) end
      return cosine_between(oc_max, oc_min, (t - onecycle_up) / (onecycle_T - 1 - onecycle_up))
    end },
  { name = "LinearLR", make = function(o) return S.LinearLR(o, { start_factor = 0.1, end_factor = 1.0, total_iters = 40 }) end,
    closed = function(t) return eta0 * (0.1 + 0.9 * math.min(t, 40) / 40) end },
  { name = "PolynomialLR", make = function(o) return S.PolynomialLR(o, { total_iters = 80, power = 2 }) end,
    closed = function(t) return eta0 * (1 - math.min(t, 80) / 80) ^ 2 end },
  { name = "LambdaLR", make = function(o) return S.LambdaLR(o, { lr_lambda = function(t) return 1 / (1 + 0.05 * t) end }) end,
    closed = function(t) return eta0 / (1 + 0.05 * t) end },
  { name = "SequentialLR (warmup + cosine)",
    make = function(o)
      return S.SequentialLR(o, { schedulers = { S.LinearLR(o, { start_factor = 0.01, total_iters = Tw }),
        S.CosineAnnealingLR(o, { T_max = T - Tw }) }, milestones = { Tw } })
    end,
    closed = function(t)
      if t < Tw then return eta0 * (0.01 + 0.99 * t / Tw) end
      return cosine_between(eta0, 0, (t - Tw) / (T - Tw))
    end },
  { name = "ReduceLROnPlateau", metric = metric,
    make = function(o) return S.ReduceLROnPlateau(o, { mode = "min", factor = factor, patience = patience }) end,
    -- the metric's last improvement is at t = plateau_at; after patience + 1 flat steps the bad-step
    -- count exceeds `patience` (at t = plateau_at + patience + 1), the rate is cut, the count
    -- restarts, and so on every patience + 1 steps; a cut takes effect from the next step.
    closed = function(t)
      local k = t > plateau_at and (t - plateau_at - 1) // (patience + 1) or 0
      return eta0 * factor ^ k
    end },
}

print(string.format("Every schedule, eta0 = %g, %d steps; max |library - closed form| over t = 0..%d", eta0, T, T - 1))
print(string.format("  %-32s %10s %10s %10s %12s", "schedule", "lr(0)", "lr(T/2)", "lr(T-1)", "max error"))
local series, worst, worst_name = {}, 0, ""
for _, s in ipairs(library) do
  local lrs = trace(s.make, s.metric)
  local err = 0
  for t = 0, T - 1 do err = math.max(err, math.abs(lrs[t + 1] - s.closed(t))) end
  s.err = err
  if err > worst then worst, worst_name = err, s.name end
  print(string.format("  %-32s %10.5f %10.5f %10.5f %12.2e", s.name, lrs[1], lrs[T // 2 + 1], lrs[T], err))
  series[#series + 1] = { name = s.name, x = lg.arange(0, T):tolist(), y = lrs }
end
lg.plot.line(series, { title = "Every lr_scheduler (eta0 0.1; OneCycle max 0.5)",
  xlabel = "step t", ylabel = "learning rate", logy = true, path = out .. "/schedules.svg" })

-- ---- 2. the text's formulas as one-line functions, through FunctionLR ----
local s, gamma, alpha, eta_min = 20, 0.5, 0.04, 0.005
local text = {
  { name = "step decay", f = function(t) return eta0 * gamma ^ (t // s) end,
    lib = function(o) return S.StepLR(o, { step_size = s, gamma = gamma }) end, lib_name = "StepLR" },
  { name = "cosine annealing", f = function(t) return eta_min + 0.5 * (eta0 - eta_min) * (1 + math.cos(math.pi * t / T)) end,
    lib = function(o) return S.CosineAnnealingLR(o, { T_max = T, eta_min = eta_min }) end, lib_name = "CosineAnnealingLR" },
  { name = "linear warmup + decay", f = function(t) return t < Tw and eta0 * t / Tw or eta0 * (T - t) / (T - Tw) end,
    -- LinearLR's start_factor must be > 0 (PyTorch's rule), so the library warmup starts at 1e-12 eta0
    lib = function(o)
      return S.SequentialLR(o, { schedulers = { S.LinearLR(o, { start_factor = 1e-12, total_iters = Tw }),
        S.LinearLR(o, { start_factor = 1, end_factor = 0, total_iters = T - Tw }) }, milestones = { Tw } })
    end, lib_name = "SequentialLR(LinearLR, LinearLR)" },
  { name = "exponential decay", f = function(t) return eta0 * math.exp(-alpha * t) end,
    lib = function(o) return S.ExponentialLR(o, { gamma = exp(-alpha) }) end, lib_name = "ExponentialLR" },
  { name = "inverse time", f = function(t) return eta0 / (1 + alpha * t) end,
    lib = function(o) return S.LambdaLR(o, { lr_lambda = function(t) return 1 / (1 + alpha * t) end }) end,
    lib_name = "LambdaLR" },
}
print()
print("The text's formulas through FunctionLR, against the library schedule they coincide with")
print(string.format("  %-24s %-34s %14s %14s", "formula", "library", "max|Fn - f|", "max|Fn - lib|"))
local tseries, worst_text = {}, 0
for _, e in ipairs(text) do
  local via_fn = trace(function(o) return S.FunctionLR(o, { lr = e.f }) end)
  local via_lib = trace(e.lib)
  local ef, el = 0, 0
  for t = 0, T - 1 do
    ef = math.max(ef, math.abs(via_fn[t + 1] - e.f(t)))
    el = math.max(el, math.abs(via_fn[t + 1] - via_lib[t + 1]))
  end
  e.err = math.max(ef, el)
  worst_text = math.max(worst_text, e.err)
  print(string.format("  %-24s %-34s %14.2e %14.2e", e.name, e.lib_name, ef, el))
  tseries[#tseries + 1] = { name = e.name, x = lg.arange(0, T):tolist(), y = via_fn }
end
lg.plot.line(tseries, { title = "The text's schedules via FunctionLR (eta0 0.1)", xlabel = "step t",
  ylabel = "learning rate", path = out .. "/schedules_text.svg" })

-- ---- 3. inverse time: sum eta = infinity, sum eta^2 < infinity ----
-- The FunctionLR schedule is stepped for real, decade by decade; the increments per decade of
-- sum eta approach (eta0/alpha) ln 10, those of sum eta^2 shrink ~10x per decade (the tail after
-- T is about eta0^2 / (alpha^2 T)).
local max_decade = quick and 5 or 6
local inv = text[5].f
local p = lg.zeros(1, { requires_grad = true })
local opt = lg.optim.SGD({ p }, { lr = eta0 })
local sched = S.FunctionLR(opt, { lr = inv })
local sum1, sum2, t = 0, 0, 0
local rows = {}
local limit2 = eta0 ^ 2 * (1 + 1 / alpha) -- sum eta^2 <= eta0^2 (1 + integral_0^inf dt/(1+alpha t)^2)
print()
print(string.format("Inverse time eta_t = %g / (1 + %g t), stepped through FunctionLR", eta0, alpha))
print(string.format("  %9s %12s %14s %16s %14s %16s", "T", "sum eta", "d(sum)/decade", "(eta0/a) ln(aT)",
  "sum eta^2", "d(sum^2)/decade"))
for d = 1, max_decade do
  local Td = 10 ^ d
  while t < Td do
    local lr = opt.param_groups[1].lr
    sum1, sum2 = sum1 + lr, sum2 + lr * lr
    sched:step()
    t = t + 1
  end
  local prev = rows[#rows]
  local r = { T = Td, s1 = sum1, s2 = sum2, d1 = prev and sum1 - prev.s1 or nil, d2 = prev and sum2 - prev.s2 or nil,
    approx = eta0 / alpha * log(alpha * Td) }
  rows[#rows + 1] = r
  print(string.format("  %9d %12.4f %14s %16.4f %14.8f %16s", Td, sum1, r.d1 and string.format("%.4f", r.d1) or "",
    r.approx, sum2, r.d2 and string.format("%.2e", r.d2) or ""))
end
local per_decade = eta0 / alpha * log(10)
print(string.format("  (eta0/alpha) ln 10 = %.4f; bound on sum eta^2 = eta0^2 (1 + 1/alpha) = %.4f", per_decade, limit2))

-- ---- the claims ----
local last, before = rows[#rows], rows[#rows - 1]
-- unbounded growth: the per-decade increments never shrink and the last one is (eta0/alpha) ln 10
local growth_ok = math.abs(last.d1 / per_decade - 1) < 0.01
for d = 3, #rows do growth_ok = growth_ok and rows[d].d1 >= rows[d - 1].d1 end
local shrink = last.d2 / before.d2 -- ~0.1 when the sum converges like 1/T
local converge_ok = shrink < 0.15 and last.s2 < limit2
local closed_ok = worst < 1e-12 and worst_text < 1e-10

if not (closed_ok and growth_ok and converge_ok) then
  error(string.format("schedules: claim fails: worst library error %.3g (%s), worst text error %.3g; "
    .. "sum eta per decade %.4f and %.4f vs (eta0/alpha) ln 10 = %.4f; sum eta^2 decade increments ratio %.3f, "
    .. "sum %.6f (bound %.4f)", worst, worst_name, worst_text, before.d1, last.d1, per_decade, shrink, last.s2, limit2), 0)
end
print(string.format("claim holds: all %d library schedules equal their closed forms (max error %.1e) and the text's "
  .. "formulas through FunctionLR match them (%.1e); inverse time adds %.4f to sum eta per decade up to T = 1e%d "
  .. "(log growth, (eta0/alpha) ln 10 = %.4f) while sum eta^2 = %.6f settles (last decade adds %.1e, %.2fx the one before)",
  #library, worst, worst_text, last.d1, max_decade, per_decade, last.s2, last.d2, shrink))
