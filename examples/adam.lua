-- adam.lua: Adam's bias correction, and AdamW against Adam with L2 weight decay (chapter 5 of
-- the reference text).
--
--   build/luagrad examples/adam.lua [--quick] [--out DIR]
--
-- What it shows:
--   (a) Adam written by hand in tensor ops, step for step as lg.optim.Adam computes it, matches
--       lg.optim.Adam to 1e-12 in float64 (and with weight decay, Adam's coupled L2 and AdamW's
--       decoupled form). On a constant gradient g the raw first moment is
--       m_t = (1 - beta1^t) g, biased toward zero; the corrected m_hat_t = g from step 1. A table
--       for t = 1..10 and beyond gives m, m_hat, v, v_hat and the step size with and without
--       correction: corrected, every step is lr; uncorrected, it is
--       lr (1 - beta1^t)/sqrt(1 - beta2^t), i.e. 3.2 lr at step 1, peaking near 6.6 lr, because
--       v's bias (beta2 = 0.999) is stronger and lasts far longer than m's.
--   (b) A problem where the gradient scale differs a lot between coordinates (a gradient
--       s_i (-1)^t that averages to zero, s from 0 to 100). Adam with L2 (grad + wd w) divides
--       the decay term by sqrt(v_hat), so coordinates with large gradients barely decay and
--       those with small ones decay faster than wd asks; AdamW multiplies every weight by
--       (1 - lr wd) each step, whatever its gradient.
-- Ends with "claim holds: ..." or an error. --quick runs fewer steps in the matching check;
-- --out DIR is where adam.svg and adam_weight_decay.svg go.
local lg = require "luagrad"

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "adam")
lg.manual_seed(0)
local f64 = { dtype = "float64" }
local TOL = 1e-12
local claim = lg.cli.claim() -- check(ok, what) collects failures; claim.verify() raises them
local check = claim.check

-- ---- Adam by hand ----
-- The text's algorithm with PyTorch's placement of eps (after the bias-corrected square root):
--   g <- g + wd p                        (Adam's L2, "coupled")      or  p <- p (1 - lr wd)  (AdamW)
--   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
--   m_hat = m / (1 - beta1^t),      v_hat = v / (1 - beta2^t)
--   p <- p - lr m_hat / (sqrt(v_hat) + eps)
-- With correct = false the last line uses m and v themselves.
local HandAdam = {}
HandAdam.__index = HandAdam
local function hand_adam(p, o)
  return setmetatable({ p = p, lr = o.lr, b1 = o.betas and o.betas[1] or 0.9, b2 = o.betas and o.betas[2] or 0.999,
    eps = o.eps or 1e-8, wd = o.weight_decay or 0, decoupled = o.decoupled or false, correct = o.correct ~= false,
    t = 0, m = lg.zeros_like(p), v = lg.zeros_like(p) }, HandAdam)
end
function HandAdam:step(grad)
  lg.no_grad(function()
    self.t = self.t + 1
    local p = self.p
    if self.wd ~= 0 then
      if self.decoupled then p:copy_(p * (1 - self.lr * self.wd)) else grad = grad + p * self.wd end
    end
    self.m = self.m * self.b1 + grad * (1 - self.b1)
    self.v = self.v * self.b2 + grad * grad * (1 - self.b2)
    local update
    if self.correct then
      local bc1, bc2 = 1 - self.b1 ^ self.t, 1 - self.b2 ^ self.t
      update = (self.m / bc1) / ((self.v / bc2):sqrt() + self.eps)
    else
      update = self.m / (self.v:sqrt() + self.eps)
    end
    p:copy_(p - update * self.lr)
  end)
end

-- ---- (a1) hand Adam against lg.optim.Adam / AdamW on a nonconvex problem ----
-- Rosenbrock's function in 2-d pairs, f(w) = sum (1 - w_1)^2 + 100 (w_2 - w_1^2)^2, from (-1.2, 1).
local function rosenbrock(w)
  local a, b = w:select(2, 1), w:select(2, 2)
  return ((1 - a) ^ 2 + (b - a * a) ^ 2 * 100):sum()
end
local match_steps = opts.quick and 300 or 3000
local match_rows = {}
local worst_match = 0
for _, cfg in ipairs({
  { name = "Adam", cls = lg.optim.Adam, o = { lr = 0.02 } },
  { name = "Adam, weight_decay 0.1 (L2)", cls = lg.optim.Adam, o = { lr = 0.02, weight_decay = 0.1 } },
  { name = "AdamW, weight_decay 0.1", cls = lg.optim.AdamW, o = { lr = 0.02, weight_decay = 0.1 }, decoupled = true },
}) do
  local w0 = lg.tensor({ { -1.2, 1.0 }, { 0.5, -0.5 }, { 2.0, 2.0 } }, f64)
  local wl = w0:clone():requires_grad_(true)
  local wh = w0:clone():requires_grad_(true)
  local opt = cfg.cls({ wl }, cfg.o)
  local hand = hand_adam(wh, { lr = cfg.o.lr, weight_decay = cfg.o.weight_decay, decoupled = cfg.decoupled })
  local worst, f_first, f_last = 0, nil, nil
  local worst_state = 0
  for t = 1, match_steps do
    opt:zero_grad()
    local fl = rosenbrock(wl)
    fl:backward()
    opt:step()
    wh.grad = nil
    local fh = rosenbrock(wh)
    fh:backward()
    hand:step(wh.grad)
    worst = math.max(worst, (wl - wh):abs():max():item())
    -- m and v are in units of the gradient (up to ~1e3 here) and of its square: relative to their size
    worst_state = math.max(worst_state,
      (opt.state[wl].exp_avg - hand.m):abs():max():item() / hand.m:abs():max():item(),
      (opt.state[wl].exp_avg_sq - hand.v):abs():max():item() / hand.v:max():item())
    if t == 1 then f_first = fl:item() end
    f_last = fl:item()
  end
  worst_match = math.max(worst_match, worst)
  match_rows[#match_rows + 1] = { name = cfg.name, worst = worst, worst_state = worst_state, f_first = f_first,
    f_last = f_last }
end
print(string.format("(a) Adam by hand in tensor ops vs lg.optim on Rosenbrock's function (3 pairs, %d steps, lr 0.02)",
  match_steps))
print("optimizer                      f at step 1    f at the end   max |hand - lg.optim|, params   m, v (relative)")
for _, r in ipairs(match_rows) do
  print(string.format("%-30s %-14.6g %-14.6g %-31.1e %.1e", r.name, r.f_first, r.f_last, r.worst, r.worst_state))
end
check(worst_match <= TOL, string.format("hand Adam differs from lg.optim by %.3e (> %g)", worst_match, TOL))

-- ---- (a2) bias correction on a constant gradient ----
-- loss = g . w with g fixed: the gradient is g at every step. Three coordinates with very
-- different scales show the step is lr whatever the scale (with correction).
local g = lg.tensor({ 1e-3, 1.0, 1e3 }, f64)
local lr = 1e-3
local T = 5000
local wl = lg.zeros(3, { dtype = "float64", requires_grad = true })
local wr = lg.zeros(3, { dtype = "float64", requires_grad = true }) -- the hand, uncorrected run
local opt = lg.optim.Adam({ wl }, { lr = lr })
local raw = hand_adam(wr, { lr = lr, correct = false })
local b1, b2 = 0.9, 0.999
local rec = {}
local prev_l, prev_r = wl:clone(), wr:clone()
for t = 1, T do
  opt:zero_grad()
  ;(g * wl):sum():backward()
  opt:step()
  wr.grad = nil
  ;(g * wr):sum():backward()
  raw:step(wr.grad)
  local st = opt.state[wl]
  -- per unit of the gradient, on the middle coordinate (g = 1); steps measured on all three
  local step_c = ((prev_l - wl) / lr):detach()
  local step_u = ((prev_r - wr) / lr):detach()
  rec[t] = {
    m = st.exp_avg[2], v = st.exp_avg_sq[2],
    m_hat = st.exp_avg[2] / (1 - b1 ^ t), v_hat = st.exp_avg_sq[2] / (1 - b2 ^ t),
    step_c = step_c[2], step_u = step_u[2],
    step_c_min = step_c:min():item(), step_c_max = step_c:max():item(),
  }
  prev_l, prev_r = wl:detach():clone(), wr:detach():clone()
end
print(string.format("\n(a) constant gradient g = (1e-3, 1, 1e3), lr = %g, betas (0.9, 0.999); " ..
  "moments of the g = 1 coordinate", lr))
print("t      raw m_t     1-b1^t      m_hat_t     raw v_t     v_hat_t     " ..
  "step/lr corrected  step/lr uncorrected  (1-b1^t)/sqrt(1-b2^t)")
local show = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 44, 100, 1000, 4613, 5000 }
local worst_mhat, worst_raw, worst_unc = 0, 0, 0
for t = 1, T do
  local r = rec[t]
  local pred_u = (1 - b1 ^ t) / (math.sqrt(1 - b2 ^ t) + 1e-8) -- for g = 1, with eps
  worst_mhat = math.max(worst_mhat, math.abs(r.m_hat - 1), math.abs(r.v_hat - 1))
  worst_raw = math.max(worst_raw, math.abs(r.m - (1 - b1 ^ t)))
  worst_unc = math.max(worst_unc, math.abs(r.step_u - pred_u) / pred_u)
end
for _, t in ipairs(show) do
  local r = rec[t]
  print(string.format("%-6d %-11.6f %-11.6f %-11.8f %-11.6f %-11.8f %-18.8f %-20.6f %.6f", t, r.m, 1 - b1 ^ t, r.m_hat,
    r.v, r.v_hat, r.step_c, r.step_u, (1 - b1 ^ t) / math.sqrt(1 - b2 ^ t)))
end
local peak_t, peak = 1, 0
for t = 1, T do if rec[t].step_u > peak then peak_t, peak = t, rec[t].step_u end end
local step_c_lo, step_c_hi = math.huge, -math.huge
for t = 1, T do
  step_c_lo, step_c_hi = math.min(step_c_lo, rec[t].step_c_min), math.max(step_c_hi, rec[t].step_c_max)
end
print(string.format("first step: corrected %.6f lr, uncorrected %.6f lr (= (1-b1)/sqrt(1-b2) = %.6f); the uncorrected " ..
  "step peaks at %.3f lr at t = %d", rec[1].step_c, rec[1].step_u, (1 - b1) / math.sqrt(1 - b2), peak, peak_t))
print(string.format("corrected steps of all three coordinates (g = 1e-3, 1, 1e3) over %d steps lie in [%.6f, %.6f] lr", T,
  step_c_lo, step_c_hi))
-- the first t where a correction 1/(1 - beta^t) is within 1% of 1: beta^t < 1/101
local function negligible_after(beta) return math.ceil(math.log(1 / 101) / math.log(beta)) end
print(string.format("Both moments start biased toward zero, v more (1 - 0.999 vs 1 - 0.9), so without correction the " ..
  "early steps are too large,\nnot too small. m's correction 1/(1 - 0.9^t) is within 1%% of 1 from t = %d (raw m is " ..
  "still %.0f%% low at t = 10);\nv's 1/(1 - 0.999^t) only from t = %d: the text's \"significant for the first ~10 " ..
  "steps\" holds for m, not for v.", negligible_after(b1), 100 * b1 ^ 10, negligible_after(b2)))
check(worst_mhat <= 1e-12, string.format("m_hat or v_hat of a constant gradient differ from g, g^2 by %.3e", worst_mhat))
check(worst_raw <= 1e-12, string.format("raw m_t differs from (1 - beta1^t) g by %.3e", worst_raw))
check(worst_unc <= 1e-9, string.format("uncorrected step differs from lr (1-b1^t)/sqrt(1-b2^t) by %.3e relative", worst_unc))
check(step_c_lo >= 1 - 1e-5 and step_c_hi <= 1 + 1e-9,
  string.format("corrected steps range over [%.8f, %.8f] lr, not lr", step_c_lo, step_c_hi))

local xs, s_c, s_u, m_raw = {}, {}, {}, {}
local plot_T = 200
for t = 1, plot_T do
  xs[t], s_c[t], s_u[t], m_raw[t] = t, rec[t].step_c, rec[t].step_u, rec[t].m
end
local svg_a = opts.out .. "/adam.svg"
lg.plot.line({
  { name = "step / lr, bias-corrected", x = xs, y = s_c },
  { name = "step / lr, uncorrected", x = xs, y = s_u },
  { name = "raw m_t / g = 1 - 0.9^t", x = xs, y = m_raw },
}, { title = "Adam on a constant gradient: what bias correction changes", xlabel = "step t", ylabel = "ratio",
  logy = true, path = svg_a })
print("wrote " .. svg_a)

-- ---- (b) AdamW against Adam with L2 on coordinates of very different gradient scale ----
-- loss_t = (-1)^t sum_i s_i w_i: a gradient s_i (-1)^t that averages to zero, so any steady
-- shrinking of w is the weight decay's doing. w starts at 1 everywhere.
local scales = { 0, 1e-2, 1e-1, 1, 10, 100 }
local lr_b, wd, T_b = 1e-3, 1.0, 1000
local s = lg.tensor(scales, f64)
local runs = {}
for _, cfg in ipairs({ { name = "AdamW", cls = lg.optim.AdamW, decoupled = true }, { name = "Adam+L2", cls = lg.optim.Adam } }) do
  local w = lg.ones(#scales, { dtype = "float64", requires_grad = true })
  local wh = lg.ones(#scales, { dtype = "float64", requires_grad = true })
  local o = cfg.cls({ w }, { lr = lr_b, weight_decay = wd })
  local hand = hand_adam(wh, { lr = lr_b, weight_decay = wd, decoupled = cfg.decoupled })
  local trace, worst = {}, 0
  for i = 1, #scales do trace[i] = {} end
  for t = 1, T_b do
    local sign = t % 2 == 0 and 1 or -1
    o:zero_grad()
    ;(s * w):sum():mul(sign):backward()
    o:step()
    wh.grad = nil
    ;(s * wh):sum():mul(sign):backward()
    hand:step(wh.grad)
    worst = math.max(worst, (w - wh):abs():max():item())
    for i = 1, #scales do trace[i][t] = math.abs(w[i]) end
  end
  -- the decay per step over the second half, after the start-up transient of m and v:
  -- w_T = w_{T/2} (1 - r lr wd)^(T/2)  ->  r, in units of AdamW's lr wd
  local rate = {}
  for i = 1, #scales do
    local per_step = (trace[i][T_b] / trace[i][T_b // 2]) ^ (1 / (T_b - T_b // 2))
    rate[i] = (1 - per_step) / (lr_b * wd)
  end
  local v_hat = o.state[w].exp_avg_sq / (1 - 0.999 ^ T_b)
  runs[cfg.name] = { w = w:detach(), trace = trace, v_hat = v_hat, worst = worst, rate = rate }
  worst_match = math.max(worst_match, worst)
  check(worst <= TOL, string.format("%s by hand differs from lg.optim by %.3e", cfg.name, worst))
end
local factor = (1 - lr_b * wd) ^ T_b
print(string.format("\n(b) gradient s_i (-1)^t, w_0 = 1, lr = %g, weight_decay = %g, %d steps; (1 - lr wd)^T = %.6f", lr_b, wd,
  T_b, factor))
print("decay rate: 1 - (w_T/w_{T/2})^(2/T), the shrinking per step over the second half, in units of lr wd")
print("coordinate  grad scale s   AdamW w_T/w_0   Adam+L2 w_T/w_0   AdamW decay rate   Adam+L2 decay rate   " ..
  "Adam+L2: 1/(sqrt(v_hat)+eps)")
local wrows = {}
for i, sc in ipairs(scales) do
  local aw, al = runs.AdamW.w[i], runs["Adam+L2"].w[i]
  local rate_w, rate_l = runs.AdamW.rate[i], runs["Adam+L2"].rate[i]
  local inv = 1 / (math.sqrt(runs["Adam+L2"].v_hat[i]) + 1e-8)
  wrows[i] = { s = sc, adamw = aw, l2 = al, rate_w = rate_w, rate_l = rate_l, inv = inv }
  print(string.format("%-11d %-14g %-15.6f %-17.6f %-18.4f %-20.4f %.4g", i, sc, aw, al, rate_w, rate_l, inv))
end
print("AdamW shrinks every weight by (1 - lr wd) per step whatever its gradient scale. Adam+L2's decay term wd w")
print("passes through the division by sqrt(v_hat): where the gradient dominates v (s >= 1) the decay per step is")
print("lr wd / sqrt(v_hat), so large-gradient weights hardly decay; where it does not (s <= 0.1), v is made of the")
print(string.format("decay term itself, the step is of order lr, and the weight decays %.2f times faster than AdamW's.",
  wrows[1].rate_l))

local series = {}
for _, i in ipairs({ 2, 4, 6 }) do
  series[#series + 1] = { name = string.format("AdamW, s = %g", scales[i]), y = runs.AdamW.trace[i] }
end
for _, i in ipairs({ 2, 4, 6 }) do
  series[#series + 1] = { name = string.format("Adam+L2, s = %g", scales[i]), y = runs["Adam+L2"].trace[i] }
end
local svg_b = opts.out .. "/adam_weight_decay.svg"
lg.plot.line(series, { title = "Weight decay: AdamW vs Adam with L2, gradient scale s per coordinate", xlabel = "step",
  ylabel = "|w|", logy = true, path = svg_b })
print("wrote " .. svg_b)

-- ---- the claim ----
local aw_lo, aw_hi, l2_lo, l2_hi = math.huge, -math.huge, math.huge, -math.huge
for _, r in ipairs(wrows) do
  aw_lo, aw_hi = math.min(aw_lo, r.adamw), math.max(aw_hi, r.adamw)
  l2_lo, l2_hi = math.min(l2_lo, math.abs(r.l2)), math.max(l2_hi, math.abs(r.l2))
end
check(math.abs(wrows[1].adamw - factor) <= 1e-12,
  string.format("AdamW on a coordinate with no gradient gives %.15f, not (1 - lr wd)^T = %.15f", wrows[1].adamw, factor))
check(aw_lo >= factor * 0.98 and aw_hi <= factor * 1.02,
  string.format("AdamW's w_T/w_0 range over [%.4f, %.4f], not within 2%% of %.4f", aw_lo, aw_hi, factor))
for i, r in ipairs(wrows) do
  check(math.abs(r.rate_w - 1) <= 0.01, string.format("AdamW decays coordinate %d (s = %g) at %.4f lr wd per step, not lr wd",
    i, r.s, r.rate_w))
  if r.s >= 1 then -- where the gradient dominates v, Adam+L2's decay is lr wd / sqrt(v_hat)
    check(math.abs(r.rate_l / r.inv - 1) <= 0.1, string.format("Adam+L2 decays coordinate %d (s = %g) at %.4g lr wd " ..
      "per step, not 1/sqrt(v_hat) = %.4g", i, r.s, r.rate_l, r.inv))
  end
end
check(l2_hi / l2_lo >= 3, string.format("Adam+L2's w_T/w_0 range only over [%.4f, %.4f]", l2_lo, l2_hi))
check(wrows[#wrows].l2 >= 0.9, string.format("Adam+L2 with the largest gradient scale kept %.4f, expected hardly any decay",
  wrows[#wrows].l2))
check(math.abs(wrows[2].l2) < factor, string.format("Adam+L2 with gradient scale %g kept %.4f, expected more decay " ..
  "than AdamW's %.4f", scales[2], wrows[2].l2, factor))
claim.verify()
print(string.format("claim holds: hand Adam/AdamW match lg.optim to %.1e; with bias correction m_hat = g from step 1 " ..
  "and every step is lr, without it the first step is %.3f lr (peak %.2f lr at t = %d); AdamW shrinks every weight " ..
  "to %.4f..%.4f (= (1 - lr wd)^T = %.4f) while Adam+L2 leaves %.4f (s = %g) to %.4f (s = %g)", worst_match, rec[1].step_u,
  peak, peak_t, aw_lo, aw_hi, factor, wrows[#wrows].l2, scales[#scales], math.abs(wrows[2].l2), scales[2]))
