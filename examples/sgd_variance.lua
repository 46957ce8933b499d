-- sgd_variance.lua: the mini-batch gradient's variance falls as 1/B (chapter 3 of the text).
--
--   build/luagrad examples/sgd_variance.lua [--quick] [--out DIR]
--
-- What it shows: on a fixed linear-regression dataset (n samples, loss_i = 1/2 (x_i . w - y_i)^2)
-- at a fixed w, the mini-batch gradient g_B = (1/B) sum_{i in batch} grad loss_i, with the batch
-- drawn uniformly with replacement, has
--     E[g_B] = g                   (unbiased: the full-batch gradient)
--     E||g_B - g||^2 = sigma^2 / B  with sigma^2 = (1/n) sum_i ||grad loss_i - g||^2,
-- the per-sample gradient variance (the trace of its covariance; for a vector gradient
-- "variance" means that). For B = 1, 4, 16, 64, 256 it draws many mini-batches, prints
-- B, the measured variance, sigma^2/B and their ratio, checks every ratio is within 25% of 1
-- and that the mean of the draws matches g within its standard error, and plots variance
-- against B (log scale). Ends with "claim holds: ..." or an error.
-- --quick draws fewer mini-batches per B; --out DIR is where sgd_variance.svg goes.
local lg = require "luagrad"

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "sgd_variance")
lg.manual_seed(3)
local f64 = { dtype = "float64" }
local n, d = 4096, 4
local draws = opts.quick and 4000 or 40000 -- mini-batches drawn per batch size
local batch_sizes = { 1, 4, 16, 64, 256 }
local RATIO_TOL = 0.25

-- ---- the dataset and the point where gradients are taken ----
local x = lg.randn(n, d, f64)
local w_true = lg.tensor({ 1.0, -2.0, 0.5, 3.0 }, f64)
local y = x:matmul(w_true) + lg.randn(n, f64) * 0.5
local w = lg.zeros(d, { dtype = "float64", requires_grad = true }) -- away from the optimum

-- Per-sample gradients in closed form: grad loss_i = x_i (x_i . w - y_i), one row per sample.
local G = lg.no_grad(function() return x * (x:matmul(w) - y):unsqueeze(2) end) -- (n, d)
local g = G:mean(1) -- the full gradient
-- ... checked against the tape on the full-batch loss
local full_loss = ((x:matmul(w) - y) ^ 2):mean() * 0.5
full_loss:backward()
local tape_diff = (w.grad - g):abs():max():item()
local sigma2 = ((G - g) ^ 2):sum(2):mean():item()
print(string.format("dataset: n = %d samples, d = %d; per-sample gradients at w = 0", n, d))
local g_str = {}
for j = 1, d do g_str[j] = string.format("%.4f", g[j]) end
print(string.format("full gradient g = (%s), the mean of the per-sample gradients; the tape's full-batch gradient " ..
  "differs by %.1e", table.concat(g_str, ", "), tape_diff))
print(string.format("per-sample gradient variance sigma^2 = (1/n) sum ||g_i - g||^2 = %.4f\n", sigma2))

-- One mini-batch on the tape, to show the rows of G are the gradients SGD actually uses.
local idx = lg.randint(1, n + 1, { 16 })
w.grad = nil
local xb, yb = x:index_select(1, idx), y:index_select(1, idx)
local mb_loss = ((xb:matmul(w) - yb) ^ 2):mean() * 0.5
mb_loss:backward()
local mb_diff = (w.grad - G:index_select(1, idx):mean(1)):abs():max():item()
print(string.format("a mini-batch of 16 on the tape vs the mean of its rows of G: max |diff| %.1e\n", mb_diff))

-- ---- the experiment: many mini-batches per B ----
-- Draws are made in chunks of at most 2^20 sampled rows to bound memory.
local rows = {}
print(string.format("%d mini-batches per B, sampled with replacement", draws))
print("B      measured E||g_B - g||^2   sigma^2/B      ratio    ||mean(g_B) - g||   std. error    bias/std.err")
for _, B in ipairs(batch_sizes) do
  local per_chunk = math.max(1, (1 << 20) // B)
  local sq_sum, mean_sum, done = 0, lg.zeros(d, f64), 0
  while done < draws do
    local k = math.min(per_chunk, draws - done)
    local ix = lg.randint(1, n + 1, { k * B })
    local gB = G:index_select(1, ix):view(k, B, d):mean(2) -- (k, d): k mini-batch gradients
    local dev = gB - g
    sq_sum = sq_sum + (dev ^ 2):sum():item()
    mean_sum = mean_sum + gB:sum(1)
    done = done + k
  end
  local var = sq_sum / draws
  local predicted = sigma2 / B
  local bias = (mean_sum / draws - g):norm():item()
  local stderr = math.sqrt(predicted / draws) -- sqrt(E||mean - g||^2) for an unbiased estimator
  local r = { B = B, var = var, predicted = predicted, ratio = var / predicted, bias = bias, stderr = stderr }
  rows[#rows + 1] = r
  print(string.format("%-6d %-25.6e %-14.6e %-8.4f %-19.3e %-13.3e %.2f", B, var, predicted, r.ratio, bias, stderr,
    bias / stderr))
end

-- ---- the plot: log variance against log2 B ----
local xs, meas, pred = {}, {}, {}
for i, r in ipairs(rows) do
  xs[i], meas[i], pred[i] = math.log(r.B, 2), r.var, r.predicted
end
local svg = opts.out .. "/sgd_variance.svg"
lg.plot.line({ { name = "measured E||g_B - g||^2", x = xs, y = meas }, { name = "sigma^2 / B", x = xs, y = pred } },
  { title = "Variance of the mini-batch gradient", xlabel = "log2 B   (B = 1, 4, 16, 64, 256)",
    ylabel = "variance", logy = true, path = svg })
print("wrote " .. svg)

-- ---- the claim ----
local worst_ratio, worst_bias = 0, 0
local ratios = {}
for i, r in ipairs(rows) do
  worst_ratio = math.max(worst_ratio, math.abs(r.ratio - 1))
  worst_bias = math.max(worst_bias, r.bias / r.stderr)
  ratios[i] = string.format("B=%d %.3f", r.B, r.ratio)
end
-- E||mean - g||^2 = stderr^2; 4 standard errors is far in the tail for d = 4.
if not (worst_ratio <= RATIO_TOL and worst_bias <= 4 and tape_diff <= 1e-12 and mb_diff <= 1e-12) then
  error(string.format("claim fails: variance / (sigma^2/B) = %s (tolerance 1 +- %g); largest ||mean - g|| is %.2f " ..
    "standard errors (tolerance 4); per-sample gradients vs tape %.1e, %.1e", table.concat(ratios, ", "), RATIO_TOL,
    worst_bias, tape_diff, mb_diff), 0)
end
print(string.format("claim holds: Var(g_B) = sigma^2/B (sigma^2 = %.3f): measured/predicted %s, all within %d%% of 1; " ..
  "unbiased: ||mean(g_B) - g|| <= %.2f standard errors", sigma2, table.concat(ratios, ", "), RATIO_TOL * 100, worst_bias))
