-- optimizer_comparison.lua: section 8 of the reference text, "Backprop & Optimizer Comparison":
-- a nonlinear regression trained from the same initialisation with SGD, SGD + momentum,
-- Nesterov, Adam and AdamW.
--
--   build/luagrad examples/optimizer_comparison.lua [--quick] [--out DIR]
--
-- The task: y = sin(3x) + 0.1 noise for x uniform in [-2, 2] (512 points), fitted by an MLP
-- 1-64-64-1 with tanh, MSE loss, mini-batches of 32. Every optimizer starts from the same weights
-- (the same seed before the model is built) and sees the same batches in the same order (the
-- loader shuffles from the same generator state), so the curves differ only by the update rule.
-- The learning rates are each method's usual ones: 0.05 for the SGD family (momentum 0.9),
-- 0.01 for Adam and AdamW (weight decay 1e-2).
--
-- Prints a table (final full-data loss, steps to reach a loss threshold, wall time) and writes
-- DIR/optimizer_comparison.svg (full-data loss against step, log-scale y). Checks the text's
-- claims at equal step counts: Adam ends below plain SGD, and so does momentum.
-- --quick trains 400 steps instead of 3000 (the same claims hold; the threshold is looser).
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "optimizer_comparison")
local quick, out = opts.quick, opts.out
local steps = quick and 400 or 3000
local eval_every = quick and 10 or 25
local threshold = quick and 0.05 or 0.03 -- full-data MSE; the noise floor is 0.1^2 = 0.01

-- ---- data: y = sin(3x) + noise ----
lg.manual_seed(42)
local N = 512
local x = lg.rand(N, 1) * 4 - 2
local y = (x * 3):sin() + lg.randn(N, 1) * 0.1
print(string.format("data: %d points of y = sin(3x) + 0.1 N(0,1), x in [-2, 2]; noise floor MSE = %.4f", N, 0.01))

-- ---- one training run ----
local function make_model()
  return nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
end

local function full_loss(model)
  return lg.no_grad(function() return F.mse_loss(model(x), y):item() end)
end

local function train(make_opt)
  lg.manual_seed(0) -- the same initial weights and the same batch order for every optimizer
  local model = make_model()
  local opt = make_opt(model:parameters())
  local loader = lg.data.DataLoader(lg.data.TensorDataset(x, y), { batch_size = 32, shuffle = true, drop_last = true })
  local curve_x, curve_y = { 0 }, { full_loss(model) }
  local reached
  local step = 0
  local t0 = lg.clock()
  while step < steps do
    for xb, yb in loader do
      opt:zero_grad()
      local loss = F.mse_loss(model(xb), yb)
      loss:backward()
      opt:step()
      step = step + 1
      if step % eval_every == 0 or step == steps then
        local l = full_loss(model)
        curve_x[#curve_x + 1], curve_y[#curve_y + 1] = step, l
        if not reached and l < threshold then reached = step end
      end
      if step == steps then break end
    end
  end
  local wall = lg.clock() - t0
  return { x = curve_x, y = curve_y, final = curve_y[#curve_y], reached = reached, wall = wall,
    initial = curve_y[1], params = model:parameters() }
end

-- ---- the experiment ----
local O = lg.optim
local runs = {
  { name = "SGD", make = function(p) return O.SGD(p, { lr = 0.05 }) end },
  { name = "SGD+Momentum", make = function(p) return O.SGD(p, { lr = 0.05, momentum = 0.9 }) end },
  { name = "Nesterov", make = function(p) return O.SGD(p, { lr = 0.05, momentum = 0.9, nesterov = true }) end },
  { name = "Adam", make = function(p) return O.Adam(p, { lr = 0.01 }) end },
  { name = "AdamW", make = function(p) return O.AdamW(p, { lr = 0.01, weight_decay = 1e-2 }) end },
}
local series = {}
for _, r in ipairs(runs) do
  local res = train(r.make)
  for k, v in pairs(res) do r[k] = v end
  series[#series + 1] = { name = r.name, x = r.x, y = r.y }
end
-- the same initialisation, verified: every run started from the same loss
local init_spread = 0
for _, r in ipairs(runs) do init_spread = math.max(init_spread, math.abs(r.initial - runs[1].initial)) end

print(string.format("\n%d steps of batch 32 each, from the same initial weights (initial loss %.4f for every run)",
  steps, runs[1].initial))
print(string.format("%-14s %12s %22s %10s", "optimizer", "final loss", "steps to loss < " .. threshold, "wall (s)"))
for _, r in ipairs(runs) do
  print(string.format("%-14s %12.5f %22s %10.3f", r.name, r.final, r.reached and tostring(r.reached) or "never", r.wall))
end

lg.plot.line(series, { title = "sin(3x) regression, MLP 1-64-64-1 tanh",
  xlabel = "step", ylabel = "MSE", logy = true, path = out .. "/optimizer_comparison.svg" })

-- ---- the claims ----
local by = {}
for _, r in ipairs(runs) do by[r.name] = r end
local sgd, mom, adam = by["SGD"], by["SGD+Momentum"], by["Adam"]
local ok = init_spread == 0 and adam.final < sgd.final and mom.final < sgd.final
if not ok then
  error(string.format("optimizer_comparison: claim fails after %d steps: SGD %.5f, Momentum %.5f, Adam %.5f "
    .. "(initial losses differ by %g)", steps, sgd.final, mom.final, adam.final, init_spread), 0)
end
print(string.format("claim holds: after %d equal steps from the same initialisation, Adam's loss %.4f and "
  .. "momentum's %.4f are below plain SGD's %.4f (%.1fx and %.1fx lower)", steps, adam.final, mom.final, sgd.final,
  sgd.final / adam.final, sgd.final / mom.final))
