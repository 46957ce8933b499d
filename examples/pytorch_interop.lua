-- pytorch_interop.lua: a model moves from PyTorch to luagrad and back through safetensors files,
-- and both frameworks compute the same outputs from the same weights.
--
--   /usr/bin/python3 bench/pytorch_interop.py export /tmp/interop [--bf16]   # weights, input, output
--   build/luagrad examples/pytorch_interop.lua --dir /tmp/interop
--   /usr/bin/python3 bench/pytorch_interop.py check /tmp/interop   # PyTorch runs luagrad's copy
--
-- Without PyTorch, `--dir` defaults to spec/fixtures/interop, files laid out exactly as the export
-- writes them with --bf16 (made by spec/fixtures/make_interop.lua, without PyTorch), and `--out`
-- says where the files for the way back go (default: the --dir folder).
--
-- What it shows:
--   (a) A PyTorch state_dict saved with safetensors.torch.save_file is a flat table
--       name -> tensor for lg.load, under the names luagrad's own state_dict uses (nn.Sequential
--       numbers its layers from 0 in both, as PyTorch does: "0.weight", "2.bias"), so it goes
--       straight into load_state_dict. Weights stored as BF16, as most published checkpoints
--       are, load as float32, exactly.
--   (b) The same input through the loaded luagrad model gives PyTorch's output to float32
--       rounding (a table per output row, and the largest difference, checked below 1e-5).
--   (c) The way back: luagrad's state_dict written with lg.save is a file that
--       safetensors.torch.load_file reads (it ignores the luagrad metadata lg.save adds);
--       `pytorch_interop.py check` loads it into a fresh PyTorch model and compares.
-- Ends with "claim holds: ..." or an error.
local lg = require "luagrad"
local nn = lg.nn

local opts = lg.cli.options(arg, { dir = "spec/fixtures/interop", out = "" }, "pytorch_interop")
local out = opts.out ~= "" and opts.out or opts.dir
local claim = lg.cli.claim()
local check = claim.check
local TOL = 1e-5

-- ---- (a) PyTorch's files ----
local function must(path)
  local v, err = lg.load(path)
  if not v then error("pytorch_interop: " .. err .. " (run bench/pytorch_interop.py export first)", 0) end
  return v
end
local torch_state = must(opts.dir .. "/torch_model.safetensors")
local io_ = must(opts.dir .. "/torch_io.safetensors")

-- PyTorch's Sequential(Linear(4, 8), Tanh(), Linear(8, 3)), built the same way here
local model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
local names = {}
for name in pairs(torch_state) do names[#names + 1] = name end
table.sort(names)
print("name       shape  luagrad dtype")
for _, name in ipairs(names) do
  local t = torch_state[name]
  print(string.format("%-10s %-6s %s", name, table.concat(t.shape, "x"), t.dtype))
end
model:load_state_dict(torch_state)

-- ---- (b) the same outputs ----
local x, y_torch = io_.input, io_.output
local y = lg.no_grad(function() return model(x) end)
local diff = (y - y_torch):abs():max():item()
print()
print("row   PyTorch output                  luagrad output")
for r = 1, math.min(4, y.shape[1]) do
  local a, b = y_torch[r]:tolist(), y[r]:tolist()
  print(string.format("%3d   % .5f % .5f % .5f   % .5f % .5f % .5f", r, a[1], a[2], a[3], b[1], b[2], b[3]))
end
print(string.format("max |PyTorch - luagrad| over %d rows: %.3g", y.shape[1], diff))
check(diff < TOL, "outputs differ by %.3g (more than %g)", diff, TOL)

-- ---- (c) the way back ----
lg.save(out .. "/luagrad_model.safetensors", model:state_dict())
lg.save(out .. "/luagrad_io.safetensors", { input = x, output = y })
-- what PyTorch will read: a flat file under PyTorch's names, the tensors PyTorch sent
local reread = lg.load(out .. "/luagrad_model.safetensors")
for _, name in ipairs(names) do
  local a, b = reread[name], torch_state[name]
  check(a ~= nil and (a - b):abs():max():item() == 0, "%s did not come back unchanged", name)
end
print()
print("wrote " .. out .. "/luagrad_model.safetensors and luagrad_io.safetensors;")
print("PyTorch checks them with: /usr/bin/python3 bench/pytorch_interop.py check " .. out)
claim.verify()
print(string.format("claim holds: PyTorch's weights give PyTorch's outputs in luagrad (max difference %.3g)", diff))
