-- bench/overhead.lua: the cost of one elementwise op on a small tensor, the floor of small models.
--
--   build/luagrad bench/overhead.lua [--n 1000000] [--sizes]     (prints JSON lines)
--   /usr/bin/python3 bench/overhead_torch.py [--n 1000000] [--sizes]   (PyTorch's same loops)
--
-- "add": c = a + b with a and b 1-element float32 tensors, in a loop of n iterations (the loop and
-- the call are part of it, as they are in a script); "add_rec": the same with a requiring
-- gradients, so each add records a tape node (the graph is dropped as c is overwritten);
-- "add_": a:add_(b) in place. Best of 5 runs, microseconds per op. --sizes adds the cost of
-- c = a + b as the tensors grow from 1 to 10^7 elements (1 thread), beside the bytes moved.
local lg = require "luagrad"
local n, sizes = 1000000, false
do
  local i = 1
  while arg[i] do
    if arg[i] == "--n" then n = tonumber(arg[i + 1]); i = i + 1
    elseif arg[i] == "--sizes" then sizes = true
    else error("bench/overhead.lua: unknown argument " .. arg[i]) end
    i = i + 1
  end
end
lg.set_num_threads(1)
local clock = os.clock

local function best(f, reps)
  local b = math.huge
  for _ = 1, 5 do
    local t0 = clock()
    f(reps)
    b = math.min(b, clock() - t0)
  end
  return b / reps * 1e6
end

local a, b = lg.ones(1), lg.ones(1)
local ar = lg.ones(1, { requires_grad = true })
local loops = {
  add = function(m) local c; for _ = 1, m do c = a + b end; return c end,
  add_rec = function(m) local c; for _ = 1, m do c = ar + b end; return c end,
  add_ = function(m) for _ = 1, m do a:add_(b) end end,
  empty = function(m) local c; for _ = 1, m do c = m end; return c end,
}
for _, name in ipairs { "empty", "add", "add_rec", "add_" } do
  print(string.format('{"engine": "luagrad", "op": "%s", "elements": 1, "us": %.4f}', name, best(loops[name], n)))
end
if sizes then
  for e = 0, 7 do
    local k = 10 ^ e
    local x, y = lg.ones(math.floor(k)), lg.ones(math.floor(k))
    local reps = math.max(3, math.floor(n / (1 + k / 100)))
    local us = best(function(m) local c; for _ = 1, m do c = x + y end; return c end, reps)
    print(string.format('{"engine": "luagrad", "op": "add", "elements": %d, "us": %.4f, "GB_per_s": %.2f}',
      math.floor(k), us, 12 * k / us / 1e3))
  end
end
