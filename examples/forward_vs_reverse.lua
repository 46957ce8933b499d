-- forward_vs_reverse.lua: chapters 1, 2 and 10 of the reference text on the cost of derivatives:
-- forward against reverse mode, finite differences against backprop, backward against forward.
--
--   build/luagrad examples/forward_vs_reverse.lua [--quick] [--out DIR]
--
-- What it shows:
--   (a) The full Jacobian of f: R^n -> R^m, f(x) = W2 tanh(W1 x) (hidden width 32, float64),
--       with lg.autograd.jacobian in forward mode (one JVP pass per input: n passes) and in
--       reverse mode (one VJP pass per output: m passes), as n varies with m = 64 and as m
--       varies with n = 64. Passes are counted (calls of f) and timed (median of repeats).
--       Claim: forward mode is faster when n << m, reverse mode when m << n.
--   (b) The gradient of an MLP's scalar loss (16 -> h -> 1, tanh, batch 256) by central
--       differences, 2P forward passes of O(P) each, against one forward and one backward pass,
--       as the parameter count P grows. Claim: O(P^2) against O(P): fitted log-log slopes ~2
--       and ~1 (overhead per pass flattens both at small P, so the check is that the slope of
--       finite differences exceeds backprop's by ~1, and each is in a band around 2 and 1).
--       The two gradients are also compared (they agree to ~1e-6 relative in float64).
--   (c) Backward time against forward time for an MLP 784-512-256-10 (ReLU, batch 256,
--       cross-entropy). The text says roughly 2x (each Linear's backward is two matmuls, dW and
--       dX, against one forward); here the first layer, the largest, needs no dX because the data
--       does not require grad, so the FLOP ratio is 1.25. The check is a band, 0.5x to 4x.
--
-- Timing is noisy on a shared machine: every time is a median of repeats, and the checks use
-- generous margins. Under AddressSanitizer (ASAN_OPTIONS set) the per-op overhead grows several
-- times while BLAS does not, so the timing checks are widened and the pass counts carry (a).
--
-- Writes DIR/forward_vs_reverse.svg (b: time against P, log-log) and
-- DIR/forward_vs_reverse_jacobian.svg (a: time against n and m). --quick uses smaller sizes.
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "forward_vs_reverse")
local quick, out = opts.quick, opts.out
local sanitized = os.getenv("ASAN_OPTIONS") ~= nil
-- One BLAS thread: these are small products, and with two threads a busy neighbour on the
-- machine stalls them far more often (the timings here are about per-pass cost, not speed).
lg.set_num_threads(1)

local function median(xs)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

-- median wall time of fn() over `reps` runs
local function time_median(reps, fn)
  local ts = {}
  for r = 1, reps do
    local t0 = lg.clock()
    fn()
    ts[r] = lg.clock() - t0
  end
  return median(ts)
end

-- least-squares slope of log y against log x
local function loglog_slope(xs, ys)
  local n, sx, sy, sxx, sxy = #xs, 0, 0, 0, 0
  for i = 1, n do
    local a, b = math.log(xs[i]), math.log(ys[i])
    sx, sy, sxx, sxy = sx + a, sy + b, sxx + a * a, sxy + a * b
  end
  return (n * sxy - sx * sy) / (n * sxx - sx * sx)
end

-- ==== (a) Jacobians: forward against reverse mode ====
local f64 = { dtype = "float64" }
local hidden, big = 32, 64
local reps_a = quick and 3 or 7

local function jacobian_case(n, m)
  lg.manual_seed(n * 1000 + m)
  local W1, W2 = lg.randn(hidden, n, f64) / math.sqrt(n), lg.randn(m, hidden, f64) / math.sqrt(hidden)
  local calls = 0
  local function f(x)
    calls = calls + 1
    return W2:matmul(W1:matmul(x):tanh())
  end
  local x = lg.randn(n, f64)
  local r = { n = n, m = m }
  calls = 0
  local Jf = lg.autograd.jacobian(f, x, { mode = "forward" })
  r.calls_fwd = calls
  calls = 0
  local Jr = lg.autograd.jacobian(f, x, { mode = "reverse" })
  r.calls_rev = calls
  r.diff = (Jf - Jr):abs():max():item()
  r.t_fwd = time_median(reps_a, function() lg.autograd.jacobian(f, x, { mode = "forward" }) end)
  r.t_rev = time_median(reps_a, function() lg.autograd.jacobian(f, x, { mode = "reverse" }) end)
  return r
end

local sizes = quick and { 2, 8, 64 } or { 2, 4, 8, 16, 32, 64 }
local rows_n, rows_m = {}, {}
for _, n in ipairs(sizes) do rows_n[#rows_n + 1] = jacobian_case(n, big) end
for _, m in ipairs(sizes) do rows_m[#rows_m + 1] = jacobian_case(big, m) end

print(string.format("(a) Jacobian of f: R^n -> R^m, f(x) = W2 tanh(W1 x), hidden %d, float64; median of %d runs",
  hidden, reps_a))
print("    (calls of f: one for the output's shape, then one per JVP or VJP pass)")
print(string.format("  %4s %4s %10s %10s %12s %12s %9s %10s", "n", "m", "calls fwd", "calls rev", "fwd (ms)",
  "rev (ms)", "faster", "|Jf - Jr|"))
local jac_diff = 0
local function print_row(r)
  jac_diff = math.max(jac_diff, r.diff)
  print(string.format("  %4d %4d %10d %10d %12.3f %12.3f %9s %10.1e", r.n, r.m, r.calls_fwd, r.calls_rev,
    r.t_fwd * 1e3, r.t_rev * 1e3, r.t_fwd < r.t_rev and "forward" or "reverse", r.diff))
end
for _, r in ipairs(rows_n) do print_row(r) end
for _, r in ipairs(rows_m) do print_row(r) end

do
  local xs, tf_n, tr_n, tf_m, tr_m = {}, {}, {}, {}, {}
  for i, r in ipairs(rows_n) do xs[i], tf_n[i], tr_n[i] = r.n, r.t_fwd * 1e3, r.t_rev * 1e3 end
  for i, r in ipairs(rows_m) do tf_m[i], tr_m[i] = r.t_fwd * 1e3, r.t_rev * 1e3 end
  lg.plot.line({
    { name = "forward, m = 64, x = n", x = xs, y = tf_n }, { name = "reverse, m = 64, x = n", x = xs, y = tr_n },
    { name = "forward, n = 64, x = m", x = xs, y = tf_m }, { name = "reverse, n = 64, x = m", x = xs, y = tr_m },
  }, { title = "Jacobian of R^n -> R^m: forward n passes, reverse m",
    xlabel = "n (or m) with the other fixed at 64", ylabel = "time (ms)", logy = true,
    path = out .. "/forward_vs_reverse_jacobian.svg" })
end

-- ==== (b) finite differences against backprop ====
-- For each width h: the gradient by backprop (one forward, one backward), and by central
-- differences (perturb each parameter by +-eps, two forward passes each, nothing recorded).
-- Every one of the 2P passes runs. To keep the machine's changing load from biasing one size
-- against another, the sizes are interleaved: the sweeps are cut into 16 chunks each, and
-- each round runs one chunk of every size, then 10 backprop steps of every size. Reported:
-- fd = 2P x the median time per pass over the chunks, fd wall = the chunks' total, backprop =
-- the median over rounds of the 10-step mean.
local din, B = 16, 256
lg.manual_seed(11)
local X, Y = lg.randn(B, din, f64), lg.randn(B, 1, f64)
local widths = quick and { 4, 8, 16, 32, 64 } or { 4, 8, 16, 32, 64, 128 }
local rounds, eps = 16, 1e-6
local fd_rows = {}
for _, h in ipairs(widths) do
  lg.manual_seed(h)
  local net = nn.Sequential(nn.Linear(din, h, f64), nn.Tanh(), nn.Linear(h, 1, f64))
  local params = net:parameters()
  local coords = {} -- every scalar parameter as {tensor, flat index}
  for _, p in ipairs(params) do
    for j = 1, p:numel() do coords[#coords + 1] = { p, j } end
  end
  local r = { h = h, P = #coords, net = net, coords = coords, cursor = 1, chunk = -(-#coords // rounds),
    per_pass = {}, bp = {}, t_wall = 0, passes = 0, max_err = 0, max_g = 0 }
  function r.backprop()
    net:zero_grad()
    F.mse_loss(net(X), Y):backward()
  end
  r.backprop()
  r.grads = {} -- backprop's gradient, to compare with the finite differences
  for k, c in ipairs(coords) do r.grads[k] = c[1].grad:_get_flat(c[2]) end
  fd_rows[#fd_rows + 1] = r
end

local function fd_chunk(r) -- the next chunk of r's sweep: two forward passes per parameter
  local first, last = r.cursor, math.min(r.cursor + r.chunk - 1, r.P)
  if first > last then return end
  local t0 = lg.clock()
  lg.no_grad(function()
    for k = first, last do
      local p, j = r.coords[k][1], r.coords[k][2]
      local orig = p:_get_flat(j)
      p:_set_flat(j, orig + eps)
      local lp = F.mse_loss(r.net(X), Y):item()
      p:_set_flat(j, orig - eps)
      local lm = F.mse_loss(r.net(X), Y):item()
      p:_set_flat(j, orig)
      local g = (lp - lm) / (2 * eps)
      r.max_err = math.max(r.max_err, math.abs(g - r.grads[k]))
      r.max_g = math.max(r.max_g, math.abs(g))
    end
  end)
  local dt = lg.clock() - t0
  local passes = 2 * (last - first + 1)
  r.passes, r.t_wall, r.cursor = r.passes + passes, r.t_wall + dt, last + 1
  r.per_pass[#r.per_pass + 1] = dt / passes
end

for _ = 1, rounds do
  for _, r in ipairs(fd_rows) do fd_chunk(r) end
  for _, r in ipairs(fd_rows) do
    local t0 = lg.clock()
    for _ = 1, 10 do r.backprop() end
    r.bp[#r.bp + 1] = (lg.clock() - t0) / 10
  end
end
for _, r in ipairs(fd_rows) do
  assert(r.cursor > r.P, "every parameter was perturbed")
  r.t_fd = median(r.per_pass) * r.passes
  r.t_bp = median(r.bp)
  r.rel_err = r.max_err / r.max_g
end

local Ps, tfd, tbp = {}, {}, {}
for i, r in ipairs(fd_rows) do Ps[i], tfd[i], tbp[i] = r.P, r.t_fd, r.t_bp end
-- slopes over the upper half of the sizes, where per-pass overhead matters least
local first = math.max(1, #fd_rows - 2)
local upP, upfd, upbp = {}, {}, {}
for i = first, #fd_rows do upP[#upP + 1], upfd[#upfd + 1], upbp[#upbp + 1] = Ps[i], tfd[i], tbp[i] end
local slope_fd, slope_bp = loglog_slope(upP, upfd), loglog_slope(upP, upbp)

print(string.format("\n(b) gradient of an MLP %d-h-1 (tanh, batch %d, float64) loss: central differences against backprop",
  din, B))
print("    (fd: 2P x the median time per pass over 16 interleaved chunks; fd wall: the sweep's total time)")
print(string.format("  %5s %7s %10s %12s %12s %14s %10s %12s", "h", "P", "fd passes", "fd (ms)", "fd wall (ms)",
  "backprop (ms)", "fd / bp", "fd rel err"))
local fd_err = 0
for _, r in ipairs(fd_rows) do
  fd_err = math.max(fd_err, r.rel_err)
  print(string.format("  %5d %7d %10d %12.2f %12.2f %14.4f %10.0f %12.1e", r.h, r.P, r.passes, r.t_fd * 1e3,
    r.t_wall * 1e3, r.t_bp * 1e3, r.t_fd / r.t_bp, r.rel_err))
end
print(string.format("  log-log slopes over P = %d..%d: finite differences %.2f, backprop %.2f (difference %.2f)",
  upP[1], upP[#upP], slope_fd, slope_bp, slope_fd - slope_bp))

do
  local logP = {}
  for i, P in ipairs(Ps) do logP[i] = math.log(P, 10) end
  -- lg.plot has a log-scale y only, so the x axis carries log10 P
  lg.plot.line({ { name = string.format("finite differences, slope %.2f", slope_fd), x = logP, y = tfd },
    { name = string.format("backprop, slope %.2f", slope_bp), x = logP, y = tbp } },
    { title = "Gradient cost: O(P^2) differences, O(P) backprop",
      xlabel = "log10 P (parameters)", ylabel = "time (s)", logy = true, path = out .. "/forward_vs_reverse.svg" })
end

-- ==== (c) backward against forward ====
lg.manual_seed(5)
local mlp = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
local Xc, Yc = lg.randn(256, 784), lg.randint(1, 11, { 256 })
local reps_c = quick and 25 or 41
local tf, tb = {}, {}
for r = 1, reps_c + 2 do
  mlp:zero_grad()
  local t0 = lg.clock()
  local loss = F.cross_entropy(mlp(Xc), Yc)
  local t1 = lg.clock()
  loss:backward()
  local t2 = lg.clock()
  if r > 2 then tf[#tf + 1], tb[#tb + 1] = t1 - t0, t2 - t1 end -- two warm-up runs
end
local t_forward, t_backward = median(tf), median(tb)
local bw_ratio = t_backward / t_forward
print(string.format("\n(c) MLP 784-512-256-10, batch 256, float32: median of %d steps", reps_c))
print(string.format("  %-10s %10s", "pass", "time (ms)"))
print(string.format("  %-10s %10.3f", "forward", t_forward * 1e3))
print(string.format("  %-10s %10.3f", "backward", t_backward * 1e3))
-- The matmul FLOPs, which dominate: forward does X W^T per layer; backward does dW = dY^T X per
-- layer and dX = dY W for every layer but the first (the data does not require grad), so the
-- expected ratio is below the text's 2 for a net whose first layer is its largest.
local sizes_c = { { 784, 512 }, { 512, 256 }, { 256, 10 } }
local fwd_flops, bwd_flops = 0, 0
for l, s in ipairs(sizes_c) do
  local f = 2 * 256 * s[1] * s[2]
  fwd_flops = fwd_flops + f
  bwd_flops = bwd_flops + f + (l > 1 and f or 0)
end
print(string.format("  backward / forward = %.2f (the text: roughly 2; matmul FLOPs here: %.2f, since the first "
  .. "layer needs no input gradient)", bw_ratio, bwd_flops / fwd_flops))

-- ---- the claims ----
local claim = lg.cli.claim("forward_vs_reverse") -- need(ok, fmt, ...) collects failures
local need = claim.check
-- (a) pass counts are exact; times: the cheaper mode wins by a clear margin at the extremes
local a_fwd, a_rev = rows_n[1], rows_m[1] -- n = 2, m = 64 and n = 64, m = 2
for _, rows in ipairs({ rows_n, rows_m }) do
  for _, r in ipairs(rows) do
    need(r.calls_fwd == r.n + 1 and r.calls_rev == r.m + 1, "passes n=%d m=%d: %d, %d", r.n, r.m, r.calls_fwd,
      r.calls_rev)
  end
end
need(jac_diff < 1e-12, "forward and reverse Jacobians differ by %.3g", jac_diff)
local margin_a = sanitized and 1.0 or 2.0 -- the faster mode must win by this factor (32x fewer passes)
need(a_fwd.t_fwd * margin_a < a_fwd.t_rev, "n=2, m=64: forward %.3f ms not %gx faster than reverse %.3f ms",
  a_fwd.t_fwd * 1e3, margin_a, a_fwd.t_rev * 1e3)
need(a_rev.t_rev * margin_a < a_rev.t_fwd, "n=64, m=2: reverse %.3f ms not %gx faster than forward %.3f ms",
  a_rev.t_rev * 1e3, margin_a, a_rev.t_fwd * 1e3)
-- (b) finite differences agree with backprop; 2P passes; slopes ~2 and ~1, differing by ~1
need(fd_err < 1e-5, "finite differences differ from backprop by %.3g (relative)", fd_err)
for _, r in ipairs(fd_rows) do need(r.passes == 2 * r.P, "P=%d: %d forward passes", r.P, r.passes) end
-- (the bands are wide because a shared machine under load slows the larger working sets more;
-- measured on an idle machine: 1.85-1.95 and 0.75-1.0)
local lo_d, hi_d = 0.5, 1.5
need(slope_fd - slope_bp > lo_d and slope_fd - slope_bp < hi_d, "slope difference %.2f outside (%g, %g)",
  slope_fd - slope_bp, lo_d, hi_d)
if not sanitized then
  need(slope_fd > 1.4 and slope_fd < 2.8, "finite-difference slope %.2f outside (1.4, 2.8)", slope_fd)
  need(slope_bp > 0.3 and slope_bp < 1.7, "backprop slope %.2f outside (0.3, 1.7)", slope_bp)
end
-- (c) a band around the text's 2x
local lo_c, hi_c = sanitized and 0.25 or 0.5, sanitized and 8 or 4
need(bw_ratio > lo_c and bw_ratio < hi_c, "backward/forward %.2f outside (%g, %g)", bw_ratio, lo_c, hi_c)

claim.verify()
print(string.format("claim holds: forward mode is %.1fx faster for n=2, m=64 (%d vs %d passes) and reverse mode %.1fx "
  .. "faster for n=64, m=2; central differences take 2P forward passes and scale with slope %.2f in P against "
  .. "backprop's %.2f (P = %d..%d); backward takes %.2fx the forward time (band %g-%gx)",
  a_fwd.t_rev / a_fwd.t_fwd, a_fwd.calls_fwd - 1, a_fwd.calls_rev - 1, a_rev.t_fwd / a_rev.t_rev, slope_fd, slope_bp,
  upP[1], upP[#upP], bw_ratio, lo_c, hi_c))
