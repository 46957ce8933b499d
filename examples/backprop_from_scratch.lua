-- backprop_from_scratch.lua: deriving backpropagation (chapter 2 of the reference text).
--
--   build/luagrad examples/backprop_from_scratch.lua [--quick] [--out DIR]
--
-- What it shows: for a 3-layer tanh MLP in float64, the error signals computed with the text's
-- recursion, in plain tensor ops and without the tape,
--     delta^(L) = h^(L) - y                          (MSE with the text's 1/2, identity output)
--     delta^(L) = softmax(z^(L)) - y                 (softmax cross-entropy, y one-hot)
--     delta^(l) = (W^(l+1)^T delta^(l+1)) (.) phi'(z^(l)),   phi' = 1 - tanh^2
--     dL/dW^(l) = delta^(l) h^(l-1)^T,   dL/db^(l) = delta^(l)
-- equal the gradients backward() leaves in .grad, to 1e-12. A table per loss gives each
-- layer's max |difference|. Then a model is trained with the hand-derived gradients while the
-- tape's gradients are compared at every step; the plot shows the loss falling and the
-- difference staying at rounding level. Ends with "claim holds: ..." or an error.
-- --quick trains for fewer steps; --out DIR is where backprop_from_scratch.svg goes.
--
-- Layout: the text writes one sample as a column vector, z = W h + b. A batch of N samples is
-- kept the same way, as the N columns of a matrix, so the formulas read exactly as in the text;
-- the gradient of a batch-mean loss is the mean over samples, and delta H^T is the sum over the
-- columns of the outer products delta_n h_n^T.
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "backprop_from_scratch")
lg.manual_seed(0)
local TOL = 1e-12
local sizes = { 5, 16, 12, 3 } -- input, two hidden layers, output: three Linear layers
local N = 32
local f64 = { dtype = "float64" }

local function mlp()
  return nn.Sequential(nn.Linear(sizes[1], sizes[2]), nn.Tanh(), nn.Linear(sizes[2], sizes[3]), nn.Tanh(),
    nn.Linear(sizes[3], sizes[4])):to("float64")
end
local function linears(model) return { model[1], model[3], model[5] } end

-- ---- backprop by hand: forward saving z and h, then the delta recursion ----
-- x: (N, in) rows as the data comes; target: (N, 3) for "mse", 1-based labels (N) for "ce".
-- Returns the loss, the deltas and the gradients {dW, db} per layer, all without the tape.
local function hand_backprop(model, x, target, kind)
  return lg.no_grad(function()
    local layers = linears(model)
    local L = #layers
    local h, z = { [0] = x:t() }, {} -- h[l], z[l]: (size_l, N), one column per sample
    for l = 1, L do
      local W, b = layers[l].weight, layers[l].bias
      z[l] = W:matmul(h[l - 1]) + b:unsqueeze(2)
      h[l] = l < L and z[l]:tanh() or z[l] -- identity output layer
    end
    local delta, loss = {}
    if kind == "mse" then
      -- L = (1/N) sum_n 1/2 ||y_n - h_n||^2  ->  delta^(L) = (h^(L) - y) / N
      local diff = h[L] - target:t()
      loss = (diff ^ 2):sum():item() * 0.5 / N
      delta[L] = diff / N
    else
      -- L = (1/N) sum_n -log p_n[y_n]  ->  delta^(L) = (p - onehot(y)) / N
      local zl = z[L] - z[L]:max(1, true) -- softmax over each column, stabilised
      local p = zl:exp() / zl:exp():sum(1, true)
      local onehot = lg.zeros(sizes[L + 1], N, f64)
      for n = 1, N do onehot[target[n]][n] = 1 end
      loss = -(p:log() * onehot):sum():item() / N
      delta[L] = (p - onehot) / N
    end
    for l = L - 1, 1, -1 do
      local phi_prime = 1 - h[l] ^ 2 -- tanh'(z) = 1 - tanh(z)^2
      delta[l] = layers[l + 1].weight:t():matmul(delta[l + 1]) * phi_prime
    end
    local grads = {}
    for l = 1, L do
      -- sum over samples of the outer products delta_n h_n^T, and of delta_n
      grads[l] = { W = delta[l]:matmul(h[l - 1]:t()), b = delta[l]:sum(2) }
    end
    return loss, delta, grads
  end)
end

-- The same losses on the tape. lg.nn's MSELoss is the mean of squares over all N*K entries with
-- no 1/2, so the text's loss is mse_loss * K / 2.
local function tape_loss(model, x, target, kind)
  local out = model(x)
  if kind == "mse" then return F.mse_loss(out, target) * (sizes[4] / 2) end
  return F.cross_entropy(out, target)
end

local function compare_at(model, x, target, kind)
  model:zero_grad()
  local loss = tape_loss(model, x, target, kind)
  loss:backward()
  local hloss, delta, grads = hand_backprop(model, x, target, kind)
  local rows, worst = {}, 0
  for l, layer in ipairs(linears(model)) do
    local dW = (grads[l].W - layer.weight.grad):abs():max():item()
    local db = (grads[l].b - layer.bias.grad):abs():max():item()
    rows[l] = { l = l, dW = dW, db = db, delta_norm = delta[l]:norm():item(), grad_norm = layer.weight.grad:norm():item() }
    worst = math.max(worst, dW, db)
  end
  return rows, worst, hloss, loss:item(), grads, delta
end

-- ---- data: a small regression and a 3-class problem from the same inputs ----
local x = lg.randn(N, sizes[1], f64)
local y_reg = (x:narrow(2, 1, 3) * 1.5):sin() + x:narrow(2, 4, 1) * 0.5 -- (N, 3)
local y_cls = (x:narrow(2, 1, 3) + x:narrow(2, 4, 2):sum(2, true) * 0.3):argmax(2) -- labels 1..3

-- ---- 1. one batch, both losses: the table per layer ----
local worst_all = 0
for _, kind in ipairs({ "mse", "ce" }) do
  local model = mlp()
  local rows, worst, hloss, tloss, grads, delta = compare_at(model, x, kind == "mse" and y_reg or y_cls, kind)
  worst_all = math.max(worst_all, worst, math.abs(hloss - tloss))
  -- the last layer's gradient once more as an explicit sum of per-sample outer products
  local h2 = lg.no_grad(function() return model[4](model[3](model[2](model[1](x))))  end) -- (N, 12) rows
  local outer_sum = lg.zeros(sizes[4], sizes[3], f64)
  for n = 1, N do outer_sum = outer_sum + delta[3]:select(2, n):unsqueeze(2) * h2[n]:unsqueeze(1) end
  local outer_diff = (outer_sum - grads[3].W):abs():max():item()
  worst_all = math.max(worst_all, outer_diff)
  print(string.format("\n%s: loss by hand %.15f, tape %.15f", kind == "mse" and
    "MSE with 1/2 (delta^(L) = h - y)" or "softmax cross-entropy (delta^(L) = p - y)", hloss, tloss))
  print("layer  W shape   ||delta^(l)||   ||dL/dW||     max|dW hand - tape|  max|db hand - tape|")
  for _, r in ipairs(rows) do
    print(string.format("%-6d %2dx%-6d %-15.6e %-13.6e %-20.1e %.1e", r.l, sizes[r.l + 1], sizes[r.l], r.delta_norm,
      r.grad_norm, r.dW, r.db))
  end
  print(string.format("layer 3: sum over the %d samples of delta_n h_n^T (a loop) vs delta H^T: max |diff| %.1e", N,
    outer_diff))
end

-- ---- 2. training with the hand-derived gradients, checked against the tape at every step ----
local steps = opts.quick and 60 or 400
local lr = 0.5
local series = {}
local final = {}
local all_train_worst = 0
for _, kind in ipairs({ "mse", "ce" }) do
  local model = mlp()
  local target = kind == "mse" and y_reg or y_cls
  local params = {}
  for _, layer in ipairs(linears(model)) do
    params[#params + 1] = layer.weight
    params[#params + 1] = layer.bias
  end
  local opt = lg.optim.SGD(params, { lr = lr })
  local losses, diffs = {}, {}
  local train_worst = 0
  for s = 1, steps do
    local _, worst, hloss, _, grads = compare_at(model, x, target, kind) -- fills .grad from the tape
    losses[s], diffs[s] = hloss, worst
    train_worst = math.max(train_worst, worst)
    -- step with the hand-derived gradients, not the tape's
    for l, layer in ipairs(linears(model)) do
      layer.weight.grad = grads[l].W
      layer.bias.grad = grads[l].b
    end
    opt:step()
  end
  final[kind] = { first = losses[1], last = losses[steps] }
  local label = kind == "mse" and "MSE" or "cross-entropy"
  all_train_worst = math.max(all_train_worst, train_worst)
  series[#series + 1] = { name = label .. " loss", y = losses }
  series[#series + 1] = { name = (kind == "mse" and "MSE" or "CE") .. " grads: max |hand - tape|", y = diffs }
  print(string.format("\ntrained %d SGD steps (lr %g) on hand-derived %s gradients: loss %.4f -> %.4f; " ..
    "max |gradient hand - tape| over all steps %.1e", steps, lr, label, losses[1], losses[steps], train_worst))
end
local svg = opts.out .. "/backprop_from_scratch.svg"
lg.plot.line(series, { title = "Training on hand-derived gradients; their difference from backward()",
  xlabel = "SGD step", ylabel = "loss / max |difference|", logy = true, path = svg })
print("wrote " .. svg)

-- ---- the claim ----
worst_all = math.max(worst_all, all_train_worst)
local trained = final.mse.last < final.mse.first and final.ce.last < final.ce.first
if not (worst_all <= TOL and trained) then
  error(string.format("claim fails: max |hand delta-recursion gradient - backward()| = %.3e (tolerance %g); " ..
    "losses MSE %.4f -> %.4f, CE %.4f -> %.4f", worst_all, TOL, final.mse.first, final.mse.last, final.ce.first,
    final.ce.last), 0)
end
print(string.format("claim holds: the delta recursion delta^(l) = (W^(l+1)^T delta^(l+1)) * phi'(z^(l)) with " ..
  "outer-product gradients equals backward() for MSE and softmax cross-entropy, max |diff| %.1e <= 1e-12 " ..
  "(one batch and %d training steps each)", worst_all, steps))
