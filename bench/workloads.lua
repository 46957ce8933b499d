-- bench/workloads.lua: the training workloads W1-W5 of the performance issues, in luagrad.
--
--   W1 tiny regression   MLP 1-64-64-1, tanh, MSE, batch 64, Adam lr 1e-3
--   W2 Fashion-MNIST MLP 784-256-128-10, Linear-BatchNorm1d-ReLU hidden layers, cross-entropy,
--                        batch 128, AdamW lr 1e-3 wd 1e-2
--   W3 wide MLP          1024-4096-4096-1024, ReLU, MSE, batch 256, SGD lr 1e-3 momentum 0.9
--   W4 deep sigmoid      20 x Linear(128, 128), sigmoid between, MSE, batch 64, SGD lr 0.1
--   W5 Fashion-MNIST CNN input (128, 1, 28, 28): Conv2d(1,32,3,pad 1) BatchNorm2d ReLU MaxPool2d(2)
--                        Conv2d(32,64,3,pad 1) BatchNorm2d ReLU MaxPool2d(2) Flatten
--                        Linear(3136,128) ReLU Linear(128,10); cross-entropy; AdamW lr 1e-3 wd 1e-2
--   W6 GPT               vocab 128, context 64, 4 pre-LayerNorm blocks (causal self-attention with
--                        one fused qkv Linear and 4 heads, MLP 4x tanh-GELU), width 128, learned
--                        positions, final LayerNorm, head tied to the token embedding (embeddings
--                        N(0, 0.02^2), Linear layers PyTorch's default init), no dropout; batch 32,
--                        cross-entropy over all 2048 tokens; AdamW lr 3e-4 betas (0.9, 0.95) wd 0.1
--                        (needs F.embedding and F.scaled_dot_product_attention: until luagrad has
--                        them W6 prints {"name": "W6", "skipped": reason})
--
-- One step = zero_grad + forward + loss + backward + optimizer step, on synthetic data with a
-- fixed seed. For each workload: median ms per step after warm-up at 1 and 2 threads, the GEMM
-- floor (exactly the matrix products one step needs, run back to back: forward, weight gradient
-- and input gradient per layer; a convolution counts as the one product im2col makes of it over
-- the whole batch: (N Ho Wo) x (Cin kh kw) by (Cin kh kw) x Cout; attention as its two batched
-- products per head, Q K^T and P V), and a check that the run's final loss is finite and lower than
-- its first. Prints one JSON line per workload for bench/run.sh, or a table with --table.
--
--   build/luagrad bench/workloads.lua [--table] [--only W2[,W6...]] [--threads 1,2] [--steps-scale 1]
--   build/luagrad bench/workloads.lua --rss W2 200     (runs 200 steps of W2 and prints VmHWM)
--   build/luagrad bench/workloads.lua --breakdown W6   (where W6's 1-thread step goes, one JSON line)
--
-- The breakdown (W6): the step's forward (with the loss), backward and optimizer step, each timed
-- inside real steps; then the parts timed alone at W6's shapes, forward + backward: the Linear
-- layers' GEMMs (the floor without attention), attention (the fused op on (32, 4, 64, 32), four
-- times), LayerNorm (nine), tanh-GELU (four), the two embeddings, cross-entropy, and AdamW's step.
-- What the parts leave of the step is the rest: residual adds, views and copies, per-op overhead.
-- bench/torch_ref.py --breakdown W6 measures the same parts in PyTorch.
local lg = require "luagrad"
local nn, F = lg.nn, lg.nn.functional

local args = { table = false, only = nil, threads = { 1, 2 }, scale = 1 }
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--table" then args.table = true
  elseif a == "--only" then args.only = arg[i + 1]; i = i + 1
  elseif a == "--threads" then
    args.threads = {}
    for t in arg[i + 1]:gmatch("%d+") do args.threads[#args.threads + 1] = tonumber(t) end
    i = i + 1
  elseif a == "--steps-scale" then args.scale = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--rss" then args.rss = { arg[i + 1], tonumber(arg[i + 2]) }; i = i + 2
  elseif a == "--breakdown" then args.breakdown = arg[i + 1]; i = i + 1
  else error("workloads: unknown argument " .. a, 0) end
  i = i + 1
end

-- W6's GPT (the same in bench/torch_ref.py). Block: x + attn(ln_1(x)), then + mlp(ln_2(x)).
local function gpt(vocab, context, width, layers, heads)
  local Attn = nn.Module:extend("W6Attention")
  function Attn:init()
    self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
  end
  function Attn:forward(x)
    local B, T = x:size(1), x:size(2)
    local qkv = self.c_attn(x):split(width, 3)
    local function h(t) return t:view(B, T, heads, width // heads):transpose(2, 3) end
    local y = F.scaled_dot_product_attention(h(qkv[1]), h(qkv[2]), h(qkv[3]), { is_causal = true })
    return self.c_proj(y:transpose(2, 3):reshape(B, T, width))
  end
  local Block = nn.Module:extend("W6Block")
  function Block:init()
    self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(width), Attn(), nn.LayerNorm(width)
    self.c_fc, self.c_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
  end
  function Block:forward(x)
    x = x + self.attn(self.ln_1(x))
    return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), { approximate = "tanh" }))
  end
  local GPT = nn.Module:extend("W6GPT")
  function GPT:init()
    self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
    nn.init.normal_(self.wte.weight, 0, 0.02)
    nn.init.normal_(self.wpe.weight, 0, 0.02)
    local blocks = {}
    for k = 1, layers do blocks[k] = Block() end
    self.h, self.ln_f = nn.ModuleList(blocks), nn.LayerNorm(width)
  end
  function GPT:forward(idx)
    local x = self.wte(idx) + self.wpe(lg.arange(1, idx:size(2) + 1))
    for _, b in ipairs(self.h) do x = b(x) end
    return F.linear(self.ln_f(x), self.wte.weight)
  end
  return GPT()
end

local function mlp(sizes, act, bn)
  local layers = {}
  for k = 1, #sizes - 1 do
    layers[#layers + 1] = nn.Linear(sizes[k], sizes[k + 1])
    if k < #sizes - 1 then
      if bn then layers[#layers + 1] = nn.BatchNorm1d(sizes[k + 1]) end
      layers[#layers + 1] = act()
    end
  end
  return nn.Sequential(table.unpack(layers))
end

-- Each workload: builds model, optimizer, data and a loss closure; steps = timed steps.
local W = {
  { name = "W1", desc = "tiny regression 1-64-64-1 tanh, Adam", steps = 2000, warm = 100,
    layers = { { 64, 1, 64 }, { 64, 64, 64 }, { 64, 64, 1 } },
    build = function()
      local model = mlp({ 1, 64, 64, 1 }, nn.Tanh)
      local x = lg.rand(64, 1) * 4 - 2
      local y = x:sin()
      return model, lg.optim.Adam(model:parameters(), { lr = 1e-3 }), function() return F.mse_loss(model(x), y) end
    end },
  { name = "W2", desc = "Fashion-MNIST MLP 784-256-128-10 BN ReLU, AdamW", steps = 300, warm = 20,
    layers = { { 128, 784, 256 }, { 128, 256, 128 }, { 128, 128, 10 } },
    build = function()
      local model = mlp({ 784, 256, 128, 10 }, nn.ReLU, true)
      local x = lg.randn(128, 784)
      local y = lg.randint(1, 11, { 128 })
      return model, lg.optim.AdamW(model:parameters(), { lr = 1e-3, weight_decay = 1e-2 }),
        function() return F.cross_entropy(model(x), y) end
    end },
  { name = "W3", desc = "wide MLP 1024-4096-4096-1024 ReLU, SGD momentum", steps = 8, warm = 2,
    layers = { { 256, 1024, 4096 }, { 256, 4096, 4096 }, { 256, 4096, 1024 } },
    build = function()
      local model = mlp({ 1024, 4096, 4096, 1024 }, nn.ReLU)
      local x = lg.randn(256, 1024)
      local y = lg.randn(256, 1024)
      return model, lg.optim.SGD(model:parameters(), { lr = 1e-3, momentum = 0.9 }),
        function() return F.mse_loss(model(x), y) end
    end },
  { name = "W4", desc = "deep sigmoid 20 x Linear(128,128), SGD", steps = 300, warm = 20,
    layers = (function() local l = {} for k = 1, 20 do l[k] = { 64, 128, 128 } end return l end)(),
    build = function()
      local layers = {}
      for k = 1, 20 do
        layers[#layers + 1] = nn.Linear(128, 128)
        if k < 20 then layers[#layers + 1] = nn.Sigmoid() end
      end
      local model = nn.Sequential(table.unpack(layers))
      local x = lg.randn(64, 128)
      local y = lg.randn(64, 128)
      return model, lg.optim.SGD(model:parameters(), { lr = 0.1 }), function() return F.mse_loss(model(x), y) end
    end },
  { name = "W5", desc = "Fashion-MNIST CNN 2 x (conv BN ReLU pool) 2 x Linear, AdamW", steps = 20, warm = 3,
    layers = { { 128 * 28 * 28, 9, 32 }, { 128 * 14 * 14, 32 * 9, 64 }, { 128, 3136, 128 }, { 128, 128, 10 } },
    build = function()
      local model = nn.Sequential(
        nn.Conv2d(1, 32, 3, { padding = 1 }), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, { padding = 1 }), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
      local x = lg.randn(128, 1, 28, 28)
      local y = lg.randint(1, 11, { 128 })
      return model, lg.optim.AdamW(model:parameters(), { lr = 1e-3, weight_decay = 1e-2 }),
        function() return F.cross_entropy(model(x), y) end
    end },
  { name = "W6", desc = "GPT 4 x (LN attn LN MLP) width 128, T 64, tied head, AdamW", steps = 40, warm = 5,
    -- the tokens' products per block: qkv, Q K^T and P V for the 32 x 4 heads, c_proj, c_fc,
    -- c_proj; then the tied head. Every input needs its gradient (the embeddings learn).
    layers = (function()
      local l = {}
      for _ = 1, 4 do
        for _, p in ipairs({ { 2048, 128, 384 }, { 64, 32, 64, 128 }, { 64, 64, 32, 128 }, { 2048, 128, 128 },
          { 2048, 128, 512 }, { 2048, 512, 128 } }) do l[#l + 1] = p end
      end
      l[#l + 1] = { 2048, 128, 128 }
      return l
    end)(), grad_first = true,
    missing = function()
      if not F.scaled_dot_product_attention then return "luagrad has no F.scaled_dot_product_attention yet" end
      if not nn.Embedding then return "luagrad has no nn.Embedding yet" end
    end,
    build = function()
      local model = gpt(128, 64, 128, 4, 4)
      local data = lg.randint(1, 129, { 32, 65 })
      local x, y = data:narrow(2, 1, 64), data:narrow(2, 2, 64)
      return model, lg.optim.AdamW(model:parameters(), { lr = 3e-4, betas = { 0.9, 0.95 }, weight_decay = 0.1 }),
        function() return F.cross_entropy(model(x):reshape(-1, 128), y:reshape(-1)) end
    end },
}

local function median(t)
  local c = { table.unpack(t) }
  table.sort(c)
  return c[(#c + 1) // 2]
end

local function step(opt, lossf)
  opt:zero_grad()
  local loss = lossf()
  loss:backward()
  opt:step()
  return loss
end

-- The GEMM floor: per layer (batch B, in K, out N) the forward X W^T (B x K . K x N), the
-- weight gradient G^T X (N x B . B x K) and, except for the first layer, the input gradient
-- G W (B x N . N x K): exactly the products a step needs, back to back. A fourth number is a
-- batch of that many independent products (attention's heads), done as one batched matmul.
local function gemm_floor(w, reps)
  local mats = {}
  for k, l in ipairs(w.layers) do
    local B, K, N, P = l[1], l[2], l[3], l[4]
    local function m(r, c) return P and lg.randn(P, r, c) or lg.randn(r, c) end
    local function tr(t) return t:transpose(-2, -1) end
    mats[k] = { x = m(B, K), wt = tr(m(N, K)), g = m(B, N), w = m(N, K), first = k == 1 and not w.grad_first }
  end
  local times = {}
  for r = 1, reps do
    local t0 = lg.clock()
    for _, m in ipairs(mats) do
      local _ = m.x:matmul(m.wt)
      _ = m.g:transpose(-2, -1):matmul(m.x)
      if not m.first then _ = m.g:matmul(m.w) end
    end
    times[r] = (lg.clock() - t0) * 1e3
  end
  return median(times)
end

local function run(w, threads)
  lg.set_num_threads(threads)
  lg.manual_seed(0)
  local model, opt, lossf = w.build()
  local steps = math.max(2, math.floor(w.steps * args.scale))
  local first = step(opt, lossf):item()
  for _ = 1, w.warm - 1 do step(opt, lossf) end
  local times, last = {}, nil
  local wall0, cpu0 = lg.clock(), os.clock()
  for s = 1, steps do
    local t0 = lg.clock()
    last = step(opt, lossf)
    times[s] = (lg.clock() - t0) * 1e3
  end
  local cores = (os.clock() - cpu0) / (lg.clock() - wall0) -- CPU seconds per wall second
  local final = last:item()
  local _ = model
  return median(times), first, final, cores
end

if args.rss then -- peak resident memory of a short run
  local name, n = args.rss[1], args.rss[2]
  for _, w in ipairs(W) do
    if w.name == name then
      lg.set_num_threads(1)
      lg.manual_seed(0)
      local _, opt, lossf = w.build()
      for _ = 1, n do step(opt, lossf) end
      for line in io.lines("/proc/self/status") do
        local v = line:match("^VmHWM:%s+(%d+)")
        if v then print(string.format('{"rss_kb": %d}', tonumber(v))) end
      end
    end
  end
  return
end

-- median milliseconds of fn() over reps runs after 2 warm-up runs
local function time_ms(fn, reps)
  for _ = 1, 2 do fn() end
  local ts = {}
  for r = 1, reps do
    local t0 = lg.clock()
    fn()
    ts[r] = (lg.clock() - t0) * 1e3
  end
  return median(ts)
end

-- forward + backward of f on inputs that require grad, with a random output gradient drawn once
-- (outside the timing: drawing it costs more than some of the ops timed)
local function fwd_bwd(f, ...)
  local xs = { ... }
  for k, x in ipairs(xs) do
    if x.dtype ~= "int64" then xs[k] = x:detach():requires_grad_() end
  end
  local g = lg.randn(table.unpack(f(table.unpack(xs)).shape))
  return function() f(table.unpack(xs)):backward(g) end
end

if args.breakdown then
  local w
  for _, c in ipairs(W) do if c.name == args.breakdown and c.name == "W6" then w = c end end
  if not w then error("workloads: --breakdown knows W6 only", 0) end
  local missing = w.missing()
  if missing then
    print(string.format('{"name": "W6", "skipped": "%s"}', missing))
    return
  end
  lg.set_num_threads(1)
  lg.manual_seed(0)
  local model, opt, lossf = w.build()
  for _ = 1, w.warm do step(opt, lossf) end
  local n = math.max(3, math.floor(w.steps * args.scale))
  local tf, tb, to, ts = {}, {}, {}, {}
  for s = 1, n do
    local t0 = lg.clock()
    opt:zero_grad()
    local loss = lossf()
    local t1 = lg.clock()
    loss:backward()
    local t2 = lg.clock()
    opt:step()
    local t3 = lg.clock()
    tf[s], tb[s], to[s], ts[s] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t3 - t0) * 1e3
  end
  local _ = model
  local reps = math.max(5, math.floor(20 * args.scale))
  local linears = { layers = {} }
  for _, l in ipairs(w.layers) do if not l[4] then linears.layers[#linears.layers + 1] = l end end
  linears.grad_first = true
  local attn = {}
  for _, l in ipairs(w.layers) do if l[4] then attn[#attn + 1] = l end end
  local q = lg.randn(32, 4, 64, 32)
  local ln = nn.LayerNorm(128)
  local parts = {
    gemm_linear = gemm_floor(linears, reps),
    gemm_attention = gemm_floor({ layers = attn, grad_first = true }, reps),
    attention = 4 * time_ms(fwd_bwd(function(a, b, c)
      return F.scaled_dot_product_attention(a, b, c, { is_causal = true })
    end, q, q, q), reps),
    layer_norm = 9 * time_ms(fwd_bwd(function(x) return ln(x) end, lg.randn(32, 64, 128)), reps),
    gelu = 4 * time_ms(fwd_bwd(function(x) return F.gelu(x, { approximate = "tanh" }) end, lg.randn(32, 64, 512)), reps),
    embedding = time_ms(fwd_bwd(function(e1, e2, i1, i2) return F.embedding(i1, e1) + F.embedding(i2, e2) end,
      lg.randn(128, 128), lg.randn(64, 128), lg.randint(1, 129, { 32, 64 }), lg.arange(1, 65)), reps),
    cross_entropy = time_ms(fwd_bwd(function(x, y) return F.cross_entropy(x, y) end, lg.randn(2048, 128),
      lg.randint(1, 129, { 2048 })), reps),
    optimizer = median(to),
  }
  local sum = 0
  for k, v in pairs(parts) do if k ~= "gemm_attention" then sum = sum + v end end
  local fields = {}
  for _, k in ipairs({ "gemm_linear", "gemm_attention", "attention", "layer_norm", "gelu", "embedding",
    "cross_entropy", "optimizer" }) do fields[#fields + 1] = string.format('"%s": %.4f', k, parts[k]) end
  print(string.format('{"name": "W6", "step": %.4f, "forward": %.4f, "backward": %.4f, "optimizer_step": %.4f, '
    .. '%s, "rest": %.4f}', median(ts), median(tf), median(tb), median(to), table.concat(fields, ", "),
    median(ts) - sum))
  return
end

-- sgemm peak: a large square product at 1 thread
lg.set_num_threads(1)
local n = 2048
local a, b = lg.randn(n, n), lg.randn(n, n)
local _ = a:matmul(b)
local best = math.huge
for _ = 1, 3 do
  local t0 = lg.clock()
  _ = a:matmul(b)
  best = math.min(best, lg.clock() - t0)
end
local peak = 2 * n ^ 3 / best / 1e9
if args.table then print(string.format("sgemm peak (1 thread, %dx%d): %.1f GFLOP/s", n, n, peak)) end
if not args.table then print(string.format('{"sgemm_gflops": %.2f}', peak)) end

for _, w in ipairs(W) do
  local missing = w.missing and w.missing()
  local chosen = not args.only or ("," .. args.only .. ","):find("," .. w.name .. ",", 1, true)
  if missing and chosen then
    if args.table then print(string.format("%-3s skipped: %s", w.name, missing))
    else print(string.format('{"name": "%s", "skipped": "%s"}', w.name, missing)) end
  elseif chosen then
    local res = { name = w.name }
    for _, t in ipairs(args.threads) do
      local ms, first, final, cores = run(w, t)
      res["ms" .. t], res["cores" .. t] = ms, cores
      res.ok = res.ok ~= false and final == final and math.abs(final) < math.huge and final < first
      res.first, res.final = first, final
    end
    lg.set_num_threads(1)
    res.floor = gemm_floor(w, math.max(5, math.min(50, w.steps)))
    if args.table then
      print(string.format("%-3s %-48s %9.3f ms (1 thr) %9.3f ms (2 thr)  floor %8.3f ms  loss %.4g -> %.4g %s",
        w.name, w.desc, res.ms1 or -1, res.ms2 or -1, res.floor, res.first, res.final, res.ok and "ok" or "NOT DECREASING"))
    else
      print(string.format('{"name": "%s", "ms1": %.4f, "ms2": %.4f, "cores1": %.3f, "cores2": %.3f, "floor": %.4f, '
        .. '"first": %.6g, "final": %.6g, "ok": %s}', w.name, res.ms1 or -1, res.ms2 or -1, res.cores1 or -1,
        res.cores2 or -1, res.floor, res.first, res.final, tostring(res.ok)))
    end
  end
end
