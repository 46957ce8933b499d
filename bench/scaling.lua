-- bench/scaling.lua: how a step's cost grows, luagrad beside PyTorch 1.13.
--
--   build/luagrad bench/scaling.lua [--quick]
--
-- Three markdown tables, each luagrad against PyTorch (bench/scaling_torch.py, when
-- /usr/bin/python3 can import torch) in the same run:
--   1. an MLP step (width-width-width-width, ReLU, MSE, SGD with momentum; zero_grad, forward,
--      backward, step) as the batch grows from 8 to 4096 at width 512, at 1 and 2 threads;
--   2. the same step as the width grows from 8 to 4096 at batch 64, 1 thread;
--   3. c = a + b as the tensors grow from 1 to 10^7 float32 elements, 1 thread, with the memory
--      bandwidth that implies (12 bytes per element: two reads and a write).
-- Each figure is the median of the timed steps after two warm-up steps, in milliseconds (the
-- adds: microseconds). --quick runs fewer steps and sizes (a smoke test, not figures).
local lg = require "luagrad"
local json = require "luagrad.json"
local nn, F = lg.nn, lg.nn.functional

local quick = arg[1] == "--quick"
local own_only = arg[1] == "--json" -- one side only, as JSON lines (what the table is made of)

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- median ms per MLP step at width w, batch b, on nthreads threads
local function mlp_step(w, b, nthreads)
  lg.set_num_threads(nthreads)
  lg.manual_seed(0)
  local net = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w))
  local opt = lg.optim.SGD(net:parameters(), { lr = 1e-3, momentum = 0.9 })
  local x, y = lg.randn(b, w), lg.randn(b, w)
  local function step()
    opt:zero_grad()
    F.mse_loss(net(x), y):backward()
    opt:step()
  end
  step(); step()
  local times, spent = {}, 0
  local want = quick and 0.05 or 0.5
  while (#times < 3 or spent < want) and #times < 2000 do
    local t0 = lg.clock()
    step()
    local dt = lg.clock() - t0
    times[#times + 1], spent = dt, spent + dt
  end
  return median(times) * 1e3
end

local function add_us(k)
  lg.set_num_threads(1)
  local a, b = lg.ones(k), lg.ones(k)
  local reps = math.max(3, math.floor((quick and 2e4 or 2e5) / (1 + k / 100)))
  local best = math.huge
  for _ = 1, 5 do
    local t0 = lg.clock()
    for _ = 1, reps do local _ = a + b end
    best = math.min(best, (lg.clock() - t0) / reps)
  end
  return best * 1e6
end

local BATCHES = quick and { 8, 512 } or { 8, 32, 128, 512, 2048, 4096 }
local WIDTHS = quick and { 8, 512 } or { 8, 32, 128, 512, 1024, 2048, 4096 }
local SIZES = quick and { 1, 1000 } or { 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000 }

local rows = {}
for _, b in ipairs(BATCHES) do
  for _, t in ipairs { 1, 2 } do rows[#rows + 1] = { kind = "batch", w = 512, b = b, threads = t, ms = mlp_step(512, b, t) } end
end
for _, w in ipairs(WIDTHS) do rows[#rows + 1] = { kind = "width", w = w, b = 64, threads = 1, ms = mlp_step(w, 64, 1) } end
for _, k in ipairs(SIZES) do rows[#rows + 1] = { kind = "add", elements = k, threads = 1, us = add_us(k) } end

if own_only then
  for _, r in ipairs(rows) do print(json.encode(r)) end
  return
end

local theirs = {}
if os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") then
  local p = assert(io.popen("/usr/bin/python3 bench/scaling_torch.py" .. (quick and " --quick" or "")))
  for l in p:lines() do
    if l:sub(1, 1) == "{" then
      local r = json.decode(l)
      theirs[table.concat({ r.kind, r.w or "", r.b or "", r.elements or "", r.threads }, ":")] = r
    end
  end
  p:close()
end
local function twin(r) return theirs[table.concat({ r.kind, r.w or "", r.b or "", r.elements or "", r.threads }, ":")] end
local function ratio(a, b) return (a and b) and string.format("%.2fx", b / a) or "-" end
local function fmt(v, f) return v and string.format(f, v) or "-" end

print("MLP step (512-512-512-512, ReLU, MSE, SGD momentum) as the batch grows, ms:")
print("")
print("| batch | luagrad 1 thr | PyTorch 1 thr | ratio | luagrad 2 thr | PyTorch 2 thr | ratio | luagrad 2 thr / 1 thr |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for _, b in ipairs(BATCHES) do
  local r1, r2
  for _, r in ipairs(rows) do
    if r.kind == "batch" and r.b == b then if r.threads == 1 then r1 = r else r2 = r end end
  end
  local t1, t2 = twin(r1), twin(r2)
  print(string.format("| %d | %.3f | %s | %s | %.3f | %s | %s | %.2fx |", b, r1.ms, fmt(t1 and t1.ms, "%.3f"),
    ratio(r1.ms, t1 and t1.ms), r2.ms, fmt(t2 and t2.ms, "%.3f"), ratio(r2.ms, t2 and t2.ms), r1.ms / r2.ms))
end
print("")
print("MLP step (width-width-width-width) at batch 64 as the width grows, 1 thread, ms:")
print("")
print("| width | luagrad | PyTorch | ratio |")
print("|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  if r.kind == "width" then
    local t = twin(r)
    print(string.format("| %d | %.3f | %s | %s |", r.w, r.ms, fmt(t and t.ms, "%.3f"), ratio(r.ms, t and t.ms)))
  end
end
print("")
print("c = a + b, float32, 1 thread, microseconds per add (GB/s: 12 bytes per element over the time):")
print("")
print("| elements | luagrad us | GB/s | PyTorch us | GB/s | ratio |")
print("|---:|---:|---:|---:|---:|---:|")
for _, r in ipairs(rows) do
  if r.kind == "add" then
    local t = twin(r)
    print(string.format("| %d | %.3f | %.2f | %s | %s | %s |", r.elements, r.us, 12 * r.elements / r.us / 1e3,
      fmt(t and t.us, "%.3f"), fmt(t and 12 * r.elements / t.us / 1e3, "%.2f"), ratio(r.us, t and t.us)))
  end
end
