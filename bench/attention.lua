-- bench/attention.lua: the fused scaled_dot_product_attention against the same math written with
-- ordinary ops (matmul, where, softmax, matmul), forward and backward.
--
-- q, k, v (B, H, T, d) = (32, 4, 64, 32) by default, as the (B, T, H, d) -> (B, H, T, d)
-- transposed views a multi-head layer makes, causal, float32. Reported: the median forward,
-- backward and step times after 3 warm-up steps, the fastest step and the median CPU time of a
-- step (the machine may be shared: at 1 thread the CPU time moves least). A step is the
-- forward pass (recording the tape) and the backward of sum(y * g).
-- The composite builds the (B, H, T, T) scores, mask and probabilities as whole tensors; the
-- fused op keeps one (T, T) block per thread and the row log-sum-exp.
--
--   build/luagrad bench/attention.lua [--threads N] [--steps N] [--B N] [--H N] [--T N] [--d N]
--       [--dtype float32|float64] [--causal true|false]
local lg = require "luagrad"
local F = lg.nn.functional

local opts = lg.cli.options(arg, { threads = 1, steps = 30, B = 32, H = 4, T = 64, d = 32, dtype = "float32",
  causal = "true" }, "attention")
lg.set_num_threads(opts.threads)
lg.manual_seed(0)
local B, H, T, d = opts.B, opts.H, opts.T, opts.d
local causal = opts.causal == "true"
local dt = { dtype = opts.dtype }

local function heads() return lg.randn({ B, T, H, d }, dt):transpose(2, 3):requires_grad_(true) end
local q, k, v = heads(), heads(), heads()
local g = lg.randn({ B, H, T, d }, dt)

local function fused() return F.scaled_dot_product_attention(q, k, v, { is_causal = causal }) end
local function composite() return F._attention_weights(q, k, nil, causal, 1 / math.sqrt(d)):matmul(v) end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

local function measure(fn)
  local tf, tb, tt, tc = {}, {}, {}, {}
  for s = 1, opts.steps + 3 do
    q.grad, k.grad, v.grad = nil, nil, nil
    local c0, t0 = os.clock(), lg.clock()
    local y = fn()
    local t1 = lg.clock()
    y:backward(g)
    local t2, c2 = lg.clock(), os.clock()
    if s > 3 then
      tf[#tf + 1], tb[#tb + 1], tt[#tt + 1], tc[#tc + 1] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t2 - t0) * 1e3,
        (c2 - c0) * 1e3
    end
  end
  local m = median(tt)
  return median(tf), median(tb), m, tt[1], median(tc) -- median() sorts: tt[1] is the fastest step

end

-- the two agree before they are timed
local y1, y2 = fused(), composite()
local err = (y1 - y2):abs():max():item()

print(string.format("B %d, H %d, T %d, d %d, %s, causal %s, %d thread(s), median of %d steps; max |fused - composite| %.2g",
  B, H, T, d, opts.dtype, tostring(causal), opts.threads, opts.steps, err))
print(string.format("%-10s %12s %12s %12s %12s %12s", "", "forward ms", "backward ms", "step ms", "fastest ms",
  "CPU ms"))
local rows = {}
for _, c in ipairs({ { "fused", fused }, { "composite", composite } }) do
  local f, b, t, fastest, cpu = measure(c[2])
  rows[c[1]] = { t, fastest, cpu }
  print(string.format("%-10s %12.3f %12.3f %12.3f %12.3f %12.3f", c[1], f, b, t, fastest, cpu))
end
print(string.format("composite / fused: %.2fx (median steps), %.2fx (fastest steps), %.2fx (CPU time)",
  rows.composite[1] / rows.fused[1], rows.composite[2] / rows.fused[2], rows.composite[3] / rows.fused[3]))
