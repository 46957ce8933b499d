-- bench/backward_ratio.lua: what a reverse pass costs next to its forward pass.
--
-- The reference text says backpropagation costs "roughly 2x" the forward pass. This measures
-- it for an MLP (784-256-128-10, ReLU, cross-entropy through log_softmax, float32), built from
-- plain tensor ops, at batch sizes 32, 128 and 512: median forward time (recording the tape)
-- and median backward time over repeated steps, in one run.
--
--   build/luagrad bench/backward_ratio.lua [--threads N] [--steps N]
local lg = require "luagrad"

local opts = lg.cli.options(arg, { threads = 1, steps = 30 }, "backward_ratio")
local threads, steps = opts.threads, opts.steps
lg.set_num_threads(threads)
lg.manual_seed(0)

local function param(...)
  return (lg.randn(...) * 0.05):requires_grad_(true)
end
local W1, b1 = param(784, 256), param(256)
local W2, b2 = param(256, 128), param(128)
local W3, b3 = param(128, 10), param(10)

local function forward(x, y)
  local h = (x:matmul(W1) + b1):relu()
  h = (h:matmul(W2) + b2):relu()
  local logp = (h:matmul(W3) + b3):log_softmax(2)
  return -logp:gather(2, y):mean()
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

print(string.format("threads %d, %d steps per size", threads, steps))
print(string.format("%6s %12s %12s %8s", "batch", "forward ms", "backward ms", "ratio"))
for _, B in ipairs({ 32, 128, 512 }) do
  local x = lg.randn(B, 784)
  local y = lg.randint(1, 11, { B, 1 })
  local tf, tb = {}, {}
  for s = 1, steps + 3 do
    for _, p in ipairs({ W1, b1, W2, b2, W3, b3 }) do p.grad = nil end
    local t0 = lg.clock()
    local loss = forward(x, y)
    local t1 = lg.clock()
    loss:backward()
    local t2 = lg.clock()
    if s > 3 then -- warm-up steps are not counted
      tf[#tf + 1], tb[#tb + 1] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
    end
  end
  local f, b = median(tf), median(tb)
  print(string.format("%6d %12.3f %12.3f %8.2f", B, f, b, b / f))
end
