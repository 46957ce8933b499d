-- bench/optim_step.lua: one optimizer step over a 10M-parameter float32 model, against memcpy.
--
-- An optimizer step is a streaming pass over memory: each parameter element is read with its
-- gradient and state and written back, with a handful of flops in between. So the figure of merit
-- is the effective memory bandwidth, bytes read + written per step divided by the step time,
-- against a plain copy of memory measured in the same run. Bytes per element (float32):
--
--   SGD, momentum   reads p, g, buf;    writes p, buf   5 x 4 bytes
--   Adam            reads p, g, m, v;   writes p, m, v  7 x 4 bytes
--   AdamW           as Adam (the decoupled decay is fused into the same loop)
--
-- The model is three large tensors (4000x1000, 4000x1000, 2000x1000: 10,000,000 parameters) with
-- random gradients set once. Each optimizer gets fresh parameters and 2 warm-up steps (the first
-- allocates its state), then the median of --steps timed steps. The memcpy stand-in is
-- dst:copy_(src) on two 10M-element float32 tensors (reads 4 bytes, writes 4 bytes per element).
--
--   build/luagrad bench/optim_step.lua [--threads N] [--steps N]
local lg = require "luagrad"

local opts = lg.cli.options(arg, { threads = 1, steps = 15 }, "optim_step")
local threads, steps = opts.threads, opts.steps
lg.set_num_threads(threads)
lg.manual_seed(0)

local SHAPES = { { 4000, 1000 }, { 4000, 1000 }, { 2000, 1000 } }
local N = 0
for _, s in ipairs(SHAPES) do N = N + s[1] * s[2] end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function timed(n, warm, f)
  local ts = {}
  for s = 1, n + warm do
    local t0 = lg.clock()
    f()
    local t1 = lg.clock()
    if s > warm then ts[#ts + 1] = t1 - t0 end
  end
  return median(ts)
end

-- memcpy stand-in: one 10M-element float32 copy
local src, dst = lg.randn(N), lg.zeros(N)
local copy_s = timed(steps, 2, function() dst:copy_(src) end)
local copy_bytes = 2 * 4 * N
local copy_bw = copy_bytes / copy_s
src, dst = nil, nil
collectgarbage()

local cases = {
  { "SGD momentum", "SGD", { lr = 0.01, momentum = 0.9 }, 5 },
  { "Adam", "Adam", { lr = 1e-3 }, 7 },
  { "AdamW", "AdamW", { lr = 1e-3, weight_decay = 1e-2 }, 7 },
}

print(string.format("%d parameters (float32), threads %d, median of %d steps after 2 warm-up steps", N, threads, steps))
print(string.format("memcpy stand-in (t:copy_(u), %d floats): %.2f ms, %.2f GB/s", N, copy_s * 1e3, copy_bw / 1e9))
print()
print(string.format("| %-12s | %8s | %9s | %8s | %14s | %10s |", "optimizer", "MB/step", "step ms", "GB/s",
  "memcpy same MB", "step/memcpy"))
print("|:---|---:|---:|---:|---:|---:|")
local function step_time(c)
  local params = {}
  for i, s in ipairs(SHAPES) do
    local p = lg.randn(s):requires_grad_(true)
    p.grad = lg.randn(s)
    params[i] = p
  end
  local opt = lg.optim[c[2]](params, c[3])
  return timed(steps, 2, function() opt:step() end)
end

for _, c in ipairs(cases) do
  local t = step_time(c)
  collectgarbage() -- the model and its optimizer state go before the next case
  local bytes = c[4] * 4 * N
  local same = bytes / copy_bw -- time memcpy would take to move the same bytes
  print(string.format("| %-12s | %8.0f | %9.2f | %8.2f | %11.2f ms | %9.2fx |", c[1], bytes / 1e6, t * 1e3,
    bytes / t / 1e9, same * 1e3, t / same))
end
