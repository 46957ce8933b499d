-- bench/run.lua: the performance table of the performance issue, in one command.
--
--   build/luagrad bench/run.lua [--quick]
--
-- Prints the machine first (CPU model, vendor, family, the vector flags that choose kernels, and
-- lg.blas_info(): which kernels run and why). Runs bench/workloads.lua (luagrad) and
-- bench/torch_ref.py (PyTorch, when /usr/bin/python3 can import torch) on the workloads W1-W6 at
-- 1 and 2 threads, the per-op cost (bench/overhead.lua and bench/overhead_torch.py), then peak
-- resident memory of 200 steps of W2 and of 50 steps of W5, and the start-up time of each, and
-- prints markdown tables: luagrad ms/step, PyTorch ms/step, their ratio (PyTorch / luagrad,
-- 1 thread), the goal, the GEMM floor and the fraction of luagrad's step that the floor accounts
-- for. --quick shortens every run (for a smoke test).
-- A workload luagrad cannot run yet (W6 before F.scaled_dot_product_attention exists) is listed
-- as skipped with the reason, beside PyTorch's time.
local lg = require "luagrad"
local json = require "luagrad.json"

local quick = arg[1] == "--quick"
local exe = arg[-1] or "build/luagrad"
local scale = quick and " --steps-scale 0.1" or ""

local function lines(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  local ok = p:close()
  return out, ok
end

local function decode_all(ls)
  local rows = {}
  for _, l in ipairs(ls) do
    if l:sub(1, 1) == "{" then rows[#rows + 1] = json.decode(l) end
  end
  return rows
end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end

-- wall-clock time of a command, median of n runs
local function time_cmd(cmd, n)
  local ts = {}
  for k = 1, n do
    local t0 = lg.clock()
    os.execute(cmd .. " >/dev/null 2>&1")
    ts[k] = lg.clock() - t0
  end
  return median(ts)
end

-- The machine, printed first: every figure below belongs to it.
local function cpu_line()
  local f = io.open("/proc/cpuinfo")
  local info = f and f:read("a") or ""
  if f then f:close() end
  local function field(k)
    return info:match("\n" .. k .. "%s*:%s*([^\n]*)") or info:match("^" .. k .. "%s*:%s*([^\n]*)") or "?"
  end
  local flags = " " .. field("flags") .. " "
  local have = {}
  for _, fl in ipairs { "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile" } do
    if flags:find(" " .. fl .. " ", 1, true) then have[#have + 1] = fl end
  end
  local cores = 0
  for _ in info:gmatch("\nprocessor%s*:") do cores = cores + 1 end
  if info:match("^processor") then cores = cores + 1 end
  return string.format("%s (%s, family %s model %s), %d logical CPUs; flags: %s", field("model name"),
    field("vendor_id"), field("cpu family"), field("model"), cores, table.concat(have, " "))
end
print("CPU: " .. cpu_line())
print("date: " .. os.date("!%Y-%m-%d %H:%M UTC") .. (os.getenv("OPENBLAS_CORETYPE") and
  ("; OPENBLAS_CORETYPE=" .. os.getenv("OPENBLAS_CORETYPE") .. " is set and chooses OpenBLAS's kernels on both sides")
  or ""))
print("")

io.stderr:write("bench: luagrad workloads...\n")
local ours = decode_all((lines(exe .. " bench/workloads.lua" .. scale)))
local have_torch = os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1")
local theirs = {}
if have_torch then
  io.stderr:write("bench: PyTorch workloads...\n")
  for _, r in ipairs(decode_all((lines("/usr/bin/python3 bench/torch_ref.py" .. scale)))) do
    if r.blas then theirs.blas = r.blas else theirs[r.name] = r end
  end
end

local peak
local rows, skipped = {}, {}
for _, r in ipairs(ours) do
  if r.sgemm_gflops then peak = r.sgemm_gflops elseif r.skipped then skipped[#skipped + 1] = r else rows[#rows + 1] = r end
end

local goals = { W1 = 10, W2 = 2.3, W3 = 1.15, W4 = 1.6, W5 = 1.0, W6 = 1.3 }
print(string.format("sgemm peak, 1 thread (2048x2048): %.1f GFLOP/s", peak or 0))
print("luagrad's BLAS: " .. lg.blas_info())
if theirs.blas then print("PyTorch's BLAS: " .. theirs.blas) end
print("")
print("| workload | luagrad ms (1 thr) | luagrad ms (2 thr) | PyTorch ms (1 thr) | PyTorch ms (2 thr) "
  .. "| ratio (1 thr) | goal | GEMM floor ms | floor / luagrad | loss falls |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for _, r in ipairs(rows) do
  local t = theirs[r.name]
  local ratio = t and t.ms1 / r.ms1 or nil
  print(string.format("| %s | %.3f | %.3f | %s | %s | %s | %.2fx | %.3f | %.0f%% | %s |", r.name, r.ms1, r.ms2,
    t and string.format("%.3f", t.ms1) or "-", t and string.format("%.3f", t.ms2) or "-",
    ratio and string.format("%.2fx", ratio) or "-", goals[r.name], r.floor, 100 * r.floor / r.ms1,
    r.ok and "yes" or "NO"))
end
for _, r in ipairs(skipped) do
  local t = theirs[r.name]
  print(string.format("| %s | skipped | skipped | %s | %s | - | %.2fx | - | - | - |", r.name,
    t and string.format("%.3f", t.ms1) or "-", t and string.format("%.3f", t.ms2) or "-", goals[r.name]))
end
for _, r in ipairs(skipped) do print(string.format("(%s skipped in luagrad: %s)", r.name, r.skipped)) end
print("")
print("CPU seconds per wall second during the timed steps (1 thread / 2 threads), which shows that")
print("each side ran on the cores it was given:")
for _, r in ipairs(rows) do
  local t = theirs[r.name]
  print(string.format("  %s: luagrad %.2f / %.2f, PyTorch %s", r.name, r.cores1 or -1, r.cores2 or -1,
    t and string.format("%.2f / %.2f", t.cores1 or -1, t.cores2 or -1) or "-"))
end
local w3 = nil
for _, r in ipairs(rows) do if r.name == "W3" then w3 = r end end
if w3 then print(string.format("\nW3 at 2 threads is %.2fx faster than at 1 thread (goal 1.8x).", w3.ms1 / w3.ms2)) end
for _, r in ipairs(rows) do
  local t = theirs[r.name]
  if r.name == "W5" and t then
    print(string.format("W5 at 2 threads: PyTorch / luagrad = %.2fx (goal 1.0x).", t.ms2 / r.ms2))
  end
end

-- W6's step, part by part (bench/workloads.lua --breakdown), on both sides
io.stderr:write("bench: W6 breakdown...\n")
local bd_ours = decode_all((lines(exe .. " bench/workloads.lua --breakdown W6" .. scale)))[1] or {}
local bd_theirs = have_torch and decode_all((lines("/usr/bin/python3 bench/torch_ref.py --breakdown W6" .. scale)))[1]
  or {}
print("")
print("W6 at 1 thread, part by part (ms; parts timed alone at W6's shapes, forward + backward; the rest is")
print("the step minus the parts: residual adds, views, copies, per-op overhead)" ..
  (bd_ours.skipped and (": luagrad skipped, " .. bd_ours.skipped) or ""))
print("")
print("| | luagrad ms | share | PyTorch ms | share |")
print("|---|---:|---:|---:|---:|")
local function cell(r, k)
  if not r[k] then return "- | -" end
  return string.format("%.3f | %.0f%%", r[k], 100 * r[k] / r.step)
end
for _, k in ipairs({ "step", "forward", "backward", "gemm_linear", "gemm_attention", "attention",
  "layer_norm", "gelu", "embedding", "cross_entropy", "optimizer", "rest" }) do
  print(string.format("| %s | %s | %s |", k, cell(bd_ours, k), cell(bd_theirs, k)))
end
print("(gemm_attention, the products inside attention, is part of attention and not counted again.)")

-- per-op cost (bench/overhead.lua and its PyTorch twin), 1 thread
io.stderr:write("bench: per-op cost...\n")
local n_ops = quick and " --n 20000" or ""
local ov = {}
for _, r in ipairs(decode_all((lines(exe .. " bench/overhead.lua" .. n_ops)))) do ov[r.op] = { r.us } end
if have_torch then
  for _, r in ipairs(decode_all((lines("/usr/bin/python3 bench/overhead_torch.py" .. n_ops)))) do
    if ov[r.op] then ov[r.op][2] = r.us end
  end
end
print("")
print("Per-op cost, 1-element float32 tensors, 1 thread (microseconds per op, best of 5 loops):")
print("")
print("| op | luagrad us | PyTorch us | PyTorch / luagrad | goal |")
print("|---|---:|---:|---:|---:|")
for _, k in ipairs { "add", "add_rec", "add_" } do
  local o = ov[k] or {}
  local goal = ({ add = "<= 0.25", add_rec = "<= 0.50" })[k] or "-"
  print(string.format("| %s | %s | %s | %s | %s |", k, o[1] and string.format("%.3f", o[1]) or "-",
    o[2] and string.format("%.3f", o[2]) or "-", (o[1] and o[2]) and string.format("%.2fx", o[2] / o[1]) or "-", goal))
end
print("(add: c = a + b; add_rec: the same with a requiring gradients, so each add records a node; add_: a:add_(b))")

io.stderr:write("bench: memory and start-up...\n")
local rss_ours = decode_all((lines(exe .. " bench/workloads.lua --rss W2 200")))[1]
local rss_theirs = have_torch and decode_all((lines("/usr/bin/python3 bench/torch_ref.py --rss W2 200")))[1] or nil
local rss5_ours = decode_all((lines(exe .. " bench/workloads.lua --rss W5 50")))[1]
local rss5_theirs = have_torch and decode_all((lines("/usr/bin/python3 bench/torch_ref.py --rss W5 50")))[1] or nil
local start_ours = time_cmd(exe .. ' -e ""', 21)
local start_theirs = have_torch and time_cmd("/usr/bin/python3 -c 'import torch'", 5) or nil
print("")
print("| | luagrad | PyTorch |")
print("|---|---:|---:|")
print(string.format("| peak resident memory, 200 steps of W2 | %.1f MiB | %s |", rss_ours.rss_kb / 1024,
  rss_theirs and string.format("%.1f MiB", rss_theirs.rss_kb / 1024) or "-"))
print(string.format("| peak resident memory, 50 steps of W5 | %.1f MiB | %s |", rss5_ours.rss_kb / 1024,
  rss5_theirs and string.format("%.1f MiB", rss5_theirs.rss_kb / 1024) or "-"))
print(string.format("| start-up (`luagrad -e \"\"` / `python3 -c \"import torch\"`) | %.1f ms | %s |", start_ours * 1e3,
  start_theirs and string.format("%.0f ms", start_theirs * 1e3) or "-"))
