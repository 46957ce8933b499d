-- spec/helpers/fuzz.lua: the API fuzzer behind spec/fuzz_spec.lua and spec/helpers/run_fuzz.lua.
--
-- It enumerates every public function reachable from require "luagrad" (lg and its submodules,
-- the tensor methods, the classes' methods through their __index chains, and the methods of
-- objects only functions return), plans calls with hostile arguments, and runs them. Every
-- argument is written as Lua source (evaluated fresh for each call), so a call prints as a
-- self-contained reproducer. A call's only acceptable outcomes are a normal return or a Lua
-- error whose value is a string; the spec runs the calls in child processes, so a crash, a
-- hang or a sanitizer report is seen too.
--
-- Arguments come from pools chosen by the parameter's name in the reference's signature
-- (docs/reference/*.md: `dim` draws integers, `opts` option tables, `t` tensors, ...) seven
-- times in ten, otherwise from the pool of everything: nil, booleans, hostile numbers (NaN,
-- inf, sizes near math.maxinteger and negative), strings, tables (ragged, with hostile
-- metatables, 16 and 17 sizes), functions, coroutines, file handles, and tensors (zero-size,
-- 0-d, non-contiguous views, stride-0, 16-d, NaN/inf, int64 extremes, requiring grad).
local M = {}

-- ---- random numbers (splitmix64) -------------------------------------------------------------
local Rng = {}
Rng.__index = Rng
function M.rng(seed) return setmetatable({ s = math.tointeger(seed) or 0 }, Rng) end
function Rng:next()
  self.s = self.s + 0x9E3779B97F4A7C15
  local z = self.s
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end
function Rng:int(a, b) return a + (self:next() >> 11) % (b - a + 1) end
function Rng:float() return (self:next() >> 11) / 2 ^ 53 end
function Rng:chance(p) return self:float() < p end
function Rng:pick(list) return list[self:int(1, #list)] end

-- ---- the pools: Lua source of argument values ------------------------------------------------

local function ones(n) return "{" .. string.rep("1, ", n - 1) .. "1}" end
local function ones_args(n) return string.rep("1, ", n - 1) .. "1" end

local P = {}
M.POOLS = P

P.int = { "0", "1", "2", "3", "-1", "-2", "4", "16", "17", "-17", "math.maxinteger", "math.mininteger",
  "math.maxinteger - 1", "1 << 62", "-(1 << 62)", "1 << 40", "2^53", "1.5", "-0.5", "0/0", "math.huge",
  "-math.huge", "1e300", "'1'", "nil" }
P.num = { "0", "1", "-1", "0.5", "-0.5", "2", "1e-8", "1e308", "-1e308", "math.huge", "-math.huge", "0/0", "-0.0",
  "math.maxinteger", "math.mininteger", "1e-320", "'0.5'", "nil" }
P.bool = { "true", "false", "nil", "1", "0", "'yes'" }
P.str = { "''", "'abc'", "'float64'", "'int64'", "'float32'", "'mean'", "'sum'", "'none'", "'fro'", "'tanh'",
  "'forward'", "'reverse'", "'relu'", "'linear'", "'leaky_relu'", "'fan_in'", "'fan_out'", "'1'", "'-1'", "'nan'",
  "string.rep('x', 5000)", "'\\0x'", "'%s%s%n%d'", "'--help'", "'weight'", "'0.weight'", "'train'", "'test'",
  "'constant'", "'max'", "'min'" }
P.dtype = { "'float32'", "'float64'", "'int64'", "'double'", "'float'", "'long'", "'bogus'", "''", "lg.ones(1)",
  "lg.ones(1, {dtype = 'int64'})", "{dtype = 'float64'}", "{dtype = 'int64'}", "{}", "nil", "1", "'Float64'" }
P.path = { "'fuzz.safetensors'", "''", "'no/such/dir/x.safetensors'", "string.rep('p', 5000)", "'.'", "'fuzz.svg'",
  "'fuzz dir'", "'\\0'", "nil", "1", "{}" }

P.size = { "0", "1", "3", "-1", "math.maxinteger", "1 << 40", "{}", "{2, 3}", "{0, 3}", "{3, 0}", "{-1}", "{-1, 2}",
  "{0}", "{math.maxinteger}", "{math.maxinteger, math.maxinteger}", "{1 << 32, 1 << 32}", "{1 << 62, 4}",
  "{1.5}", "{0/0}", "{'a'}", "{2, nil, 3}", ones(16), ones(17), "{2, " .. ones_args(15) .. "}", ones(100),
  "{1 << 40}", "{1 << 20, 1 << 20}", "{-(1 << 62), -(1 << 62)}", "{3, -2}", "lg.ones(2, 3)" }

P.tensor = {
  "lg.zeros(0)", "lg.zeros(0, 3)", "lg.zeros(3, 0)", "lg.zeros(2, 0, 3)", "lg.tensor(1.5)", "lg.tensor(2, {dtype = 'int64'})",
  "lg.ones(3)", "lg.ones(2, 3)", "lg.randn(2, 3, 4)", "lg.ones(2, 3, {dtype = 'float64'})", "lg.arange(6):view(2, 3)",
  "lg.arange(12):view(3, 4):t()", "lg.randn(3, 4):t()", "lg.randn(4, 1):expand(4, 5)", "lg.randn(1):expand(0)",
  "lg.randn(5, 6):narrow(2, 2, 3)", "lg.randn(2, 3, 4):permute(3, 1, 2)", "lg.randn(6):narrow(1, 2, 3)",
  "lg.ones(" .. ones_args(16) .. ")", "lg.ones(2, " .. ones_args(15) .. ")", "lg.ones(" .. ones_args(15) .. ", 2)",
  "lg.ones(" .. ones_args(16) .. "):expand(" .. ones_args(15) .. ", 3)",
  "lg.tensor({0/0, math.huge, -math.huge, 1})", "lg.tensor({0/0, math.huge}, {dtype = 'float64'})",
  "lg.tensor({math.maxinteger, math.mininteger, 0}, {dtype = 'int64'})",
  "lg.randn(3, {requires_grad = true})", "lg.randn(3, {requires_grad = true}) * 2",
  "lg.ones(2, 2, {dtype = 'float64', requires_grad = true})", "lg.tensor({1, 2, 3}, {dtype = 'int64'})",
  "lg.tensor({-1, 5, 0}, {dtype = 'int64'})", "lg.tensor({math.maxinteger}, {dtype = 'int64'})",
  "lg.tensor({{2, 1}, {1, 3}}, {dtype = 'int64'})", "lg.tensor({3, 1}, {dtype = 'int64'})", "lg.ones(3, 3) * 1e30",
  "lg.tensor({1e-40, -1e-40})", "lg.zeros(0, {requires_grad = true})",
}
P.list = { "{}", "{lg.ones(2)}", "{lg.ones(2), lg.ones(2)}", "{lg.ones(2), lg.zeros(3)}", "{lg.ones(2, 3), lg.ones(2, 3, 4)}",
  "{lg.ones(2), 'x'}", "{lg.ones(2), nil, lg.ones(2)}", "{lg.zeros(0), lg.zeros(0)}", "{1, 2}",
  "{lg.ones(2, {requires_grad = true}), lg.ones(2, {dtype = 'int64'})}", "{lg.ones(" .. ones_args(16) .. ")}",
  "{lg.ones(" .. ones_args(16) .. "), lg.ones(" .. ones_args(16) .. ")}", "{[2] = lg.ones(2)}",
  "setmetatable({}, {__len = function() return math.maxinteger end})", "{lg.ones(2, {requires_grad = true})}" }
P.func = { "function() end", "function() error('fuzz: hostile callback') end", "function() return {} end",
  "function(...) return ... end", "function(x) return x end", "function() return lg.ones(2) end",
  "function(x) return x * 2 end", "function(x) return (x * x):sum() end", "function() return 0/0 end",
  "function() while false do end return 'x' end" }
P.opts = { "nil", "{}", "{dtype = 'float64'}", "{dtype = 'int64'}", "{dtype = 'bogus'}", "{requires_grad = true}",
  "{dim = 1}", "{dim = 99}", "{dim = math.maxinteger}", "{keepdim = true}", "{reduction = 'sum'}", "{reduction = 'bogus'}",
  "{mode = 'forward'}", "{mode = 'bogus'}", "{lr = 0.1}", "{lr = -1}", "{lr = 0/0}", "{momentum = 0.9, nesterov = true}",
  "{betas = {0.9, 1.5}}", "{p = 2}", "{eps = 0}", "{weight = lg.ones(3)}", "{bias = lg.zeros(3)}", "{training = true}",
  "{label_smoothing = 2}", "{step_size = 0}", "{gamma = 0.5}", "{T_max = 0}", "{max_lr = 1, total_steps = 0}",
  "{milestones = {3, 1}}", "{batch_size = 0}", "{batch_size = math.maxinteger}", "{shuffle = true}",
  "{file = {write = function() end}}", "{mode = 'off'}", "{width = math.maxinteger}", "{path = 'fuzz.svg'}",
  "{retain_graph = true}", "{create_graph = true}", "{grad_outputs = lg.ones(3)}", "{allow_unused = true}",
  "{unbiased = false}", "{correction = math.maxinteger}", "{approximate = 'bogus'}", "{negative_slope = 0/0}",
  "{alpha = math.huge}", "{beta = 0, threshold = 0}", "{min = 1, max = -1}", "{value = 0/0}",
  "setmetatable({}, {__index = function(t, k) error('fuzz: hostile __index') end})",
  "setmetatable({}, {__index = function(t, k) return 1 end})", "{[1] = 2, dim = 'x'}", "{strict = false}",
  "{split = 'bogus'}", "{root = '.'}", "{normalize = {0, 0}}", "{xlim = {1, 0}}", "{total = -1}" }
P.params = { "{lg.ones(2, {requires_grad = true})}", "{lg.ones(2, {requires_grad = true, dtype = 'float64'})}", "{}",
  "{1}", "{lg.ones(2)}", "lg.nn.Linear(2, 2):parameters()", "{{params = {lg.ones(2, {requires_grad = true})}, lr = 0.1}}",
  "{{params = {}}}", "{lg.ones(2, {requires_grad = true}), lg.ones(2, {requires_grad = true})}", "lg.ones(2)" }
P.series = { "{{1, 2, 3}}", "{y = {1, 2, 3}}", "{{name = 'a', y = {1, 0/0, math.huge}}}", "{{x = {1, 2}, y = {1}}}",
  "{{y = {}}}", "{{y = lg.ones(3)}}", "{}", "{{y = {1e308, -1e308}}}" }
P.module = { "lg.nn.Linear(3, 2)", "lg.nn.Sequential(lg.nn.Linear(3, 2), lg.nn.ReLU())", "lg.nn.ReLU()",
  "lg.nn.BatchNorm1d(3)", "lg.nn.LayerNorm(3)", "lg.nn.Identity()" }
P.optimizer = { "lg.optim.SGD({lg.ones(2, {requires_grad = true})}, {lr = 0.1})",
  "lg.optim.Adam({lg.ones(2, {requires_grad = true})})", "lg.optim.AdamW({lg.ones(2, {requires_grad = true})})" }
P.dataset = { "lg.data.TensorDataset(lg.zeros(4, 2), lg.zeros(4))", "lg.data.TensorDataset(lg.zeros(0, 2))", "{}",
  "{1, 2, 3}" }
P.args = { "{}", "{'--help'}", "{'--x', '1'}", "{'--flag'}", "{'--x'}", "{'--x', 'abc'}", "{[0] = 'script.lua'}",
  "{'-', '--'}", "{1, 2}" }
P.defaults = { "{}", "{x = 1, flag = false, name = 's'}", "{help = true}", "{[1] = 2}" }
P.key = { "'grad'", "'requires_grad'", "'shape'", "'dtype'", "'is_leaf'", "'T'", "'sum'", "'nope'", "'__index'", "1", "2",
  "-1", "0", "3", "math.maxinteger", "math.mininteger", "0.5", "0/0", "true", "{}", "lg.ones(1)", "''" }
P.misc = { "coroutine.create(function() end)", "io.open('/dev/null', 'w')", "setmetatable({}, {__tostring = function() " ..
  "error('fuzz: hostile __tostring') end})", "setmetatable({}, {__len = function() return -1 end})",
  "setmetatable({}, {__call = function() return 1 end})", "setmetatable({}, {__pairs = function() " ..
  "error('fuzz: hostile __pairs') end})", "{{1, 2}, {3}}", "{{}}", "{1, 2, 3}", "{-1}", "{0/0}", "lg", "lg.Tensor",
  "lg.nn.Module", "string", "{__index = 1}" }

-- the pool of everything
local ALL = {}
for _, name in ipairs({ "int", "num", "bool", "str", "size", "tensor", "tensor", "list", "func", "opts", "misc" }) do
  for _, v in ipairs(P[name]) do ALL[#ALL + 1] = v end
end
P.all = ALL

-- parameter name -> pool
local BY_NAME = {
  dim = "int", d1 = "int", d2 = "int", start_dim = "int", end_dim = "int", index = "tensor_or_int", start = "int",
  length = "int", n = "int", m = "int_or_module", k = "int", seed = "int", low = "int", high = "int", stop = "num", step = "num",
  num_features = "int", in_features = "int", out_features = "int", input_size = "int", hidden_size = "int",
  hx = "tensor", epoch = "int", total = "int", chunks = "int",
  ["dims..."] = "int", ["size..."] = "size", size = "size", shape = "size", normalized_shape = "size", pads = "size",
  opts = "opts", more = "opts",
  t = "tensor", x = "tensor", input = "tensor", other = "tensor_or_num", a = "tensor_or_num", b = "tensor_or_num",
  target = "tensor", src = "tensor", source = "tensor", weight = "tensor", bias = "tensor", grad = "tensor",
  mask = "tensor", condition = "tensor", running_mean = "tensor", running_var = "tensor", v = "tensor", data = "tensor",
  tensors = "list", inputs = "list", outputs = "list", primals = "list", tangents = "list", cotangents = "list",
  fn = "func", f = "func", closure = "func", dtype = "dtype", path = "path", name = "str", nonlinearity = "str",
  mode = "str", what = "str", value = "num", p = "num", alpha = "num", negative_slope = "num", mean = "num", std = "num",
  min = "num", max = "num", param = "num", max_norm = "num", clip_value = "num", metric = "num", best = "num",
  keepdim = "bool", on = "bool", set_to_none = "bool", ok = "bool", params = "params", series = "series",
  block = "module", key = "key", optimizer = "optimizer", dataset = "dataset", args = "args", defaults = "defaults",
  iterable = "misc", metrics = "opts", state = "opts", sd = "opts", group = "opts", bad = "opts", cls = "misc",
  model = "module", input_shape = "size",
}
P.tensor_or_int = {}
for _, v in ipairs(P.tensor) do P.tensor_or_int[#P.tensor_or_int + 1] = v end
for _, v in ipairs(P.int) do P.tensor_or_int[#P.tensor_or_int + 1] = v end
P.int_or_module = {}
for _, v in ipairs(P.int) do P.int_or_module[#P.int_or_module + 1] = v end
for _, v in ipairs(P.module) do P.int_or_module[#P.int_or_module + 1] = v end
P.tensor_or_num = {}
for _, v in ipairs(P.tensor) do P.tensor_or_num[#P.tensor_or_num + 1] = v end
for _, v in ipairs(P.num) do P.tensor_or_num[#P.tensor_or_num + 1] = v end

-- ---- receivers: fresh objects for methods ----------------------------------------------------

local SGD = "lg.optim.SGD({lg.ones(2, {requires_grad = true})}, {lr = 0.1})"
-- class path -> sources of valid instances (the first that builds is used)
local FACTORY = {
  ["lg.nn.Module"] = { "lg.nn.Module()" },
  ["lg.nn.Linear"] = { "lg.nn.Linear(3, 2)" },
  ["lg.nn.Embedding"] = { "lg.nn.Embedding(4, 3)" },
  ["lg.nn.RNN"] = { "lg.nn.RNN(3, 2)" },
  ["lg.nn.LSTM"] = { "lg.nn.LSTM(3, 2)" },
  ["lg.nn.GRU"] = { "lg.nn.GRU(3, 2)" },
  ["lg.nn.RNNCell"] = { "lg.nn.RNNCell(3, 2)" },
  ["lg.nn.LSTMCell"] = { "lg.nn.LSTMCell(3, 2)" },
  ["lg.nn.GRUCell"] = { "lg.nn.GRUCell(3, 2)" },
  ["lg.nn.Sequential"] = { "lg.nn.Sequential(lg.nn.Linear(3, 2), lg.nn.ReLU())" },
  ["lg.nn.Residual"] = { "lg.nn.Residual(lg.nn.Linear(3, 3))" },
  ["lg.nn.BatchNorm1d"] = { "lg.nn.BatchNorm1d(3)" },
  ["lg.nn.LayerNorm"] = { "lg.nn.LayerNorm(3)" },
  ["lg.nn.GroupNorm"] = { "lg.nn.GroupNorm(2, 4)" },
  ["lg.nn.Flatten"] = { "lg.nn.Flatten()" },
  ["lg.nn.Softmax"] = { "lg.nn.Softmax(2)" },
  ["lg.nn.LogSoftmax"] = { "lg.nn.LogSoftmax(2)" },
  ["lg.optim.Optimizer"] = { SGD },
  ["lg.optim.lr_scheduler.LRScheduler"] = { "lg.optim.lr_scheduler.StepLR(" .. SGD .. ", {step_size = 2})" },
  ["lg.optim.lr_scheduler.StepLR"] = { "lg.optim.lr_scheduler.StepLR(" .. SGD .. ", {step_size = 2})" },
  ["lg.optim.lr_scheduler.MultiStepLR"] = { "lg.optim.lr_scheduler.MultiStepLR(" .. SGD .. ", {milestones = {2, 4}})" },
  ["lg.optim.lr_scheduler.ExponentialLR"] = { "lg.optim.lr_scheduler.ExponentialLR(" .. SGD .. ", {gamma = 0.9})" },
  ["lg.optim.lr_scheduler.CosineAnnealingLR"] = { "lg.optim.lr_scheduler.CosineAnnealingLR(" .. SGD .. ", {T_max = 10})" },
  ["lg.optim.lr_scheduler.CosineAnnealingWarmRestarts"] = {
    "lg.optim.lr_scheduler.CosineAnnealingWarmRestarts(" .. SGD .. ", {T_0 = 3})" },
  ["lg.optim.lr_scheduler.OneCycleLR"] = { "lg.optim.lr_scheduler.OneCycleLR(" .. SGD .. ", {max_lr = 1, total_steps = 10})" },
  ["lg.optim.lr_scheduler.LinearLR"] = { "lg.optim.lr_scheduler.LinearLR(" .. SGD .. ")" },
  ["lg.optim.lr_scheduler.PolynomialLR"] = { "lg.optim.lr_scheduler.PolynomialLR(" .. SGD .. ")" },
  ["lg.optim.lr_scheduler.LambdaLR"] = {
    "lg.optim.lr_scheduler.LambdaLR(" .. SGD .. ", {lr_lambda = function(e) return 1 / (e + 1) end})" },
  ["lg.optim.lr_scheduler.FunctionLR"] = { "lg.optim.lr_scheduler.FunctionLR(" .. SGD .. ", {lr = function(t) return 0.1 end})" },
  ["lg.optim.lr_scheduler.SequentialLR"] = {
    "(function() local o = " .. SGD .. "; local S = lg.optim.lr_scheduler; return S.SequentialLR(o, {schedulers = " ..
    "{S.LinearLR(o), S.ExponentialLR(o, {gamma = 0.9})}, milestones = {2}}) end)()" },
  ["lg.optim.lr_scheduler.ReduceLROnPlateau"] = { "lg.optim.lr_scheduler.ReduceLROnPlateau(" .. SGD .. ")" },
  ["lg.data.TensorDataset"] = { "lg.data.TensorDataset(lg.zeros(4, 2), lg.zeros(4))" },
  ["lg.data.Dataset"] = { "lg.data.TensorDataset(lg.zeros(4, 2))" },
  ["lg.data.DataLoader"] = { "lg.data.DataLoader(lg.data.TensorDataset(lg.zeros(4, 2)), {batch_size = 2})" },
  ["lg.data.Generator"] = { "lg.data.Generator(0)" },
  ["lg.progress.Bar"] = { "lg.progress(10, {file = {write = function() end}})" },
  HookHandle = { "lg.ones(1, {requires_grad = true}):register_hook(function() end)" },
  Claim = { "lg.cli.claim('fuzz')" },
}
M.FACTORY = FACTORY

-- Objects no table of the library holds: {type name, source}
local PROBES = {
  { "HookHandle", "lg.ones(1, {requires_grad = true}):register_hook(function() end)" },
  { "Claim", "lg.cli.claim('fuzz')" },
  { "lg.data.DataLoader", "lg.data.DataLoader(lg.data.TensorDataset(lg.zeros(2, 1)))" },
  { "lg.data.DistributedSampler", "lg.data.DistributedSampler(4, {num_replicas = 2, rank = 1})" },
  { "lg.data.Generator", "lg.data.Generator(0)" },
  { "lg.progress.Bar", "lg.progress(10, {file = {write = function() end}})" },
}

-- Functions that touch the world, and how the fuzzer keeps them inside its sandbox instead of
-- skipping them (nothing is skipped): `route` rewrites a call's arguments; the others are
-- handled by where and how the child runs (spec/helpers/run_fuzz.lua). The spec prints this list.
M.SKIP = {
  ["lg.datasets.fashion_mnist"] = { route = "root", reason = "reads 55 MB of Fashion-MNIST per call: root is routed " ..
    "to the temporary directory (where no data is) unless the call gives one" },
  ["lg.save"] = { reason = "writes files: paths in the pools are relative and the child runs in a fresh temporary " ..
    "directory, removed afterwards" },
  ["lg.load"] = { reason = "reads files: as lg.save, relative paths inside the temporary directory" },
  ["lg.save_npy"] = { reason = "writes files: as lg.save" },
  ["lg.load_npy"] = { reason = "reads files: as lg.load" },
  ["lg.load_npz"] = { reason = "reads files: as lg.load" },
  ["lg.plot.line"] = { reason = "writes an SVG when given a path: as lg.save" },
  ["lg.progress"] = { reason = "draws on stdout: the child's stdout is /dev/null (bars in the pools write to a sink)" },
  ["lg.cli.options"] = { reason = "--help prints and calls os.exit: the child turns os.exit and io.read into errors" },
  ["lg.set_num_threads"] = { reason = "changes a setting for every later call: the child restores the thread count, " ..
    "the default dtype, grad mode and anomaly detection after each call" },
  ["lg.empty_cache"] = { reason = "runs a full collection: called as is" },
  ["lg.distributed.init"] = { reason = "starts MPI (and lg.distributed.abort ends the job): the child's luagrad.mpi " ..
    "is a stub that refuses to load, so init raises its 'unavailable' error and abort calls the child's os.exit" },
  ["lg.arange"] = { route = "count", reason = "arange(-17, 0, 1e-8) is a valid request for 1.7e9 elements (7 GB): " ..
    "calls asking for 1e8 to 2^40 elements are refused before the call (larger counts go through: they must fail)" },
  ["lg.linspace"] = { route = "count", reason = "as lg.arange: 1e8 to 2^40 elements are refused before the call" },
}


-- ---- enumeration -----------------------------------------------------------------------------

local function is_public(k) return type(k) == "string" and k:sub(1, 1) ~= "_" end

local function sorted_keys(t)
  local keys = {}
  for k in next, t do if is_public(k) then keys[#keys + 1] = k end end
  table.sort(keys)
  return keys
end

local function parent_of(t)
  local mt = getmetatable(t)
  if type(mt) ~= "table" then return nil end
  local idx = rawget(mt, "__index")
  return type(idx) == "table" and idx or nil
end

local function is_class(t)
  if rawget(t, "__index") ~= nil then return true end
  local mt = getmetatable(t)
  return type(mt) == "table" and type(rawget(mt, "__index")) == "table"
end

-- Every public callable: a list of {name, get (source of the function), kind, recv (the
-- class path whose instances are receivers, or "Tensor"), callable_table}, sorted by name.
function M.enumerate(lg)
  local entries, seen_fn = {}, {}
  local function add(name, get, kind, recv)
    entries[#entries + 1] = { name = name, get = get, kind = kind, recv = recv }
  end
  -- tensor methods
  local methods = lg.Tensor
  for _, k in ipairs(sorted_keys(methods)) do
    if type(methods[k]) == "function" then
      add("Tensor:" .. k, "lg.Tensor." .. k, "tensor method", "Tensor")
      seen_fn[methods[k]] = true
    end
  end
  -- the tensor metatable's metamethods (operators, indexing, field assignment, __gc, __close)
  local tmt = getmetatable(lg.ones(1))
  if type(tmt) == "table" then
    local mkeys = {}
    for k, v in pairs(tmt) do if type(k) == "string" and type(v) == "function" then mkeys[#mkeys + 1] = k end end
    table.sort(mkeys)
    for _, k in ipairs(mkeys) do add("Tensor:" .. k, "getmetatable(lg.ones(1))." .. k, "tensor method", "Tensor") end
  end
  local walked = { [methods] = true }
  local classes = {}
  local function walk(t, path)
    walked[t] = true
    for _, k in ipairs(sorted_keys(t)) do
      local ok, v = pcall(function() return t[k] end)
      local p = path .. "." .. k
      if ok and type(v) == "function" then
        if not (path == "lg" and seen_fn[v]) then add(p, p, "function") end
      elseif ok and type(v) == "table" and not walked[v] and k ~= "ops" and k ~= "Tensor"
        and not (k == "F" and rawget(t, "functional") == v) then -- lg.nn.F is lg.nn.functional
        if is_class(v) then
          walked[v] = true
          classes[#classes + 1] = { t = v, path = p }
          local mt = getmetatable(v)
          if type(mt) == "table" and mt.__call then add(p, p, "constructor") end
        else
          local mt = getmetatable(v)
          if type(mt) == "table" and mt.__call then add(p, p, "callable module") end
          walk(v, p)
        end
      end
    end
  end
  walk(lg, "lg")
  -- class methods: each function once, named after the class that defines it (the first table
  -- on the __index chain holding it), with the instances of every class that has it as receivers
  local path_of = {}
  for _, c in ipairs(classes) do path_of[c.t] = c.path end
  local by_fn = {}
  for _, c in ipairs(classes) do
    local seen_keys, seen_tables, cur = {}, {}, c.t
    while cur and not seen_tables[cur] do
      seen_tables[cur] = true
      for _, k in ipairs(sorted_keys(cur)) do
        local v = rawget(cur, k)
        if type(v) == "function" and not seen_keys[k] then
          seen_keys[k] = true
          local e = by_fn[v]
          if not e then
            local owner = path_of[cur] or c.path
            e = { name = owner .. ":" .. k, get = owner .. "." .. k, kind = "method", recvs = {} }
            by_fn[v] = e
            entries[#entries + 1] = e
          end
          e.recvs[#e.recvs + 1] = c.path
        end
      end
      cur = parent_of(cur)
    end
  end
  for _, e in pairs(by_fn) do
    table.sort(e.recvs)
    e.recv = e.recvs[1]
  end
  for _, probe in ipairs(PROBES) do
    local ok, obj = pcall(load("local lg = ...; return " .. probe[2]), lg)
    if ok and type(obj) == "table" then
      local keys = {}
      for k, v in next, obj do if is_public(k) and type(v) == "function" then keys[#keys + 1] = k end end
      local mt = getmetatable(obj)
      local cur, guard = mt and rawget(mt, "__index"), 0
      while type(cur) == "table" and guard < 10 do
        for k, v in next, cur do if is_public(k) and type(v) == "function" then keys[#keys + 1] = k end end
        cur, guard = parent_of(cur), guard + 1
      end
      table.sort(keys)
      local have = {}
      for _, e in ipairs(entries) do have[e.name] = true end
      for _, k in ipairs(keys) do
        local name = probe[1] .. ":" .. k
        if not have[name] then
          have[name] = true
          add(name, "(" .. probe[2] .. ")." .. k, "method", probe[1])
        end
      end
    end
  end
  table.sort(entries, function(a, b) return a.name < b.name end)
  return entries
end

-- ---- signatures from the reference -----------------------------------------------------------

-- normalized entry name ("Tensor.narrow", "lg.nn.Module.parameters") -> parameter names
function M.signatures(dir)
  local sigs = {}
  local p = io.popen("ls -1 " .. (dir or "docs/reference") .. "/*.md 2>/dev/null")
  if not p then return sigs end
  for path in p:lines() do
    local f = io.open(path, "rb")
    if f then
      for line in f:lines() do
        local name, params = line:match("^###%s+`([%w_.:]+)%(([^)]*)%)`")
        if name then
          local list = {}
          for param in params:gmatch("[^,]+") do list[#list + 1] = (param:gsub("^%s+", ""):gsub("%s+$", "")) end
          sigs[(name:gsub(":", "."))] = list
        end
      end
      f:close()
    end
  end
  p:close()
  return sigs
end

-- parameters of the metamethods (after the tensor itself)
local META = { __index = { "key" }, __newindex = { "key", "value" }, __add = { "other" }, __sub = { "other" },
  __mul = { "other" }, __div = { "other" }, __mod = { "other" }, __pow = { "other" }, __idiv = { "other" },
  __unm = {}, __len = {}, __tostring = {}, __gc = {}, __close = {}, __eq = { "other" }, __lt = { "other" },
  __le = { "other" }, __concat = { "other" }, __call = { "..." } }

function M.params_for(entry, sigs)
  local meta = entry.name:match("^Tensor:(__[%w_]+)$")
  if meta then return META[meta] or {} end
  local key = entry.name:gsub(":", ".")
  if sigs[key] then return sigs[key] end
  local short = key:match("([%w_]+)$")
  -- a method documented under the class that defines it
  for _, owner in ipairs({ "lg.nn.Module", "lg.optim.Optimizer", "lg.optim.lr_scheduler.LRScheduler", "Tensor", "lg" }) do
    if sigs[owner .. "." .. short] then return sigs[owner .. "." .. short] end
  end
  return nil
end

-- ---- planning calls --------------------------------------------------------------------------

local function draw(rng, pname)
  if pname and rng:chance(0.7) then
    local pool = P[BY_NAME[pname] or ""]
    if pool then return rng:pick(pool) end
  end
  return rng:pick(ALL)
end

-- The calls for one entry: a list of {name, get, args (sources), nargs}.
local function plan_entry(rng, entry, sigs, count)
  local params = M.params_for(entry, sigs) or {}
  local calls = {}
  for _ = 1, count do
    local args = {}
    local nparams = #params
    local recv_ok = true -- whether a method's receiver is a valid object (self of the right class)
    if entry.kind == "tensor method" or entry.kind == "method" then
      -- the receiver: a valid object nine times in ten
      if rng:chance(0.9) then
        local recv = entry.recvs and rng:pick(entry.recvs) or entry.recv
        if recv == "Tensor" then
          args[1] = rng:pick(P.tensor)
        else
          local f = FACTORY[recv]
          if f then
            args[1] = f[1]
          elseif recv:find("^lg%.optim%.[%w_]+$") then
            args[1] = recv .. "({lg.ones(2, {requires_grad = true})}, {lr = 0.1})"
          else
            args[1] = recv .. "()"
          end
        end
      else
        args[1] = rng:pick(ALL)
        recv_ok = false
      end
    end
    local n = rng:int(0, math.max(nparams, 1) + 1)
    if rng:chance(0.5) then n = nparams end
    for i = 1, n do
      local pname = params[i]
      if pname == "..." then pname = nil end
      args[#args + 1] = draw(rng, pname)
    end
    local skip = M.SKIP[entry.name]
    if skip and skip.route == "root" then
      -- keep the call inside the temporary directory: no root given means root = "."
      if #args == 0 or args[1] == "nil" then
        args[1] = "{root = '.'}"
      else
        args[1] = "(function(o) if type(o) == 'table' and rawget(o, 'root') == nil then rawset(o, 'root', '.') end " ..
          "return o end)(" .. args[1] .. ")"
      end
    end
    local get = entry.get
    if skip and skip.route == "count" then
      -- M.requested_count, inlined so that the reproducer stands alone
      local counting = entry.name == "lg.linspace" and "local n = math.type(c) == 'integer' and c or nil"
        or ("local n; if type(a) == 'number' then local s0, s1, st = 0, a, 1; if type(b) == 'number' then s0, s1 = a, b end; " ..
          "if type(c) == 'number' then st = c end; if st ~= 0 and st == st then local q = (s1 - s0) / st; " ..
          "if q == q then n = math.ceil(q) end end end")
      get = "(function(...) local a, b, c = ...; " .. counting .. "; if n and n > 1e8 and n < 2^40 then " ..
        "error('fuzz: refused, a valid request for ' .. n .. ' elements', 0) end return " .. entry.get .. "(...) end)"
    end
    calls[#calls + 1] = { name = entry.name, get = get, args = args, nargs = #args, kind = entry.kind, recv_ok = recv_ok }
  end
  return calls
end

-- The whole plan: `per_fn` calls for each entry, in entry order. Deterministic in seed.
function M.plan(lg, seed, per_fn, sigs)
  sigs = sigs or M.signatures()
  local entries = M.enumerate(lg)
  local rng = M.rng(seed)
  local calls = {}
  for _, e in ipairs(entries) do
    -- the C binding (tensor methods, lg's own functions) is where memory bugs live: twice the calls
    local n = (e.kind == "tensor method" or (e.kind == "function" and e.name:match("^lg%.[%w_]+$"))) and 2 * per_fn
      or per_fn
    for _, c in ipairs(plan_entry(rng, e, sigs, n)) do calls[#calls + 1] = c end
  end
  return calls, entries
end

-- ---- running a call --------------------------------------------------------------------------

-- The call as a self-contained script (run with build/luagrad from any directory).
function M.reproducer(c, note)
  local args = {}
  for i = 1, c.nargs do args[i] = c.args[i] or "nil" end
  local lines = {
    "-- luagrad API fuzzer reproducer" .. (note and (": " .. note) or ""),
    "local lg = require \"luagrad\"",
    "local fn = " .. c.get,
    "print(pcall(fn" .. (#args > 0 and (", " .. table.concat(args, ", ")) or "") .. "))",
  }
  return table.concat(lines, "\n") .. "\n"
end

-- ---- whether an error message names its function -------------------------------------------
--
-- The rule (spec/argument_errors_spec.lua requires it of every error a public function raises
-- on a wrong-typed argument; spec/fuzz_spec.lua of every error the fuzzer sees): the message,
-- after its position ("file:line: "), contains as a whole word (not inside a longer identifier:
-- "add" is not named by "add_: ..." nor "zeros" by "zeros_like: ...")
--   1. the function's own short name, ignoring case: "narrow" for Tensor:narrow, "zeros" for
--      lg.zeros, "step" for lg.optim.Optimizer:step, "Linear" for the constructor lg.nn.Linear,
--      "add" for the metamethod __add; or
--   2. for a method of a class (a name with ":"), the name of the class that defines it, ignoring
--      case: "Linear: expected a tensor input" names lg.nn.Linear:forward; or
--   3. one of the names in STANDS_FOR, exactly: an operator may name the op it computes (// is
--      floor_divide), a module class that computes one function of lg.nn.functional may name it
--      (nn.CrossEntropyLoss raises F.cross_entropy's errors, as PyTorch's does).
-- A method's own name is enough when the receiver is of a subclass ("Linear:parameters: ..."
-- names lg.nn.Module:parameters). Not judged: a method called on a receiver that is not a valid
-- object of its class (`lg.optim.SGD.step(3)`: PyTorch does not name itself there either, and
-- guarding every method costs every call), and an error raised inside a function the caller
-- passed (from_callback), which is the caller's own error passed on unchanged.

-- the other names a function, or the methods of a class, may go by (rule 3)
M.STANDS_FOR = {
  ["Tensor:__idiv"] = { "floor_divide" }, ["Tensor:__mod"] = { "remainder" }, ["Tensor:__unm"] = { "neg" },
  ["Tensor:__close"] = { "__gc" }, -- one function with __gc: the tensor is released
  -- t.T on a tensor of more than 2 dimensions
  ["Tensor:__index"] = { "T" },
  -- t[i] = v (index assignment), t.grad = g, t.requires_grad = b, t.name = v (a field that cannot be set)
  ["Tensor:__newindex"] = { "index", "grad", "requires_grad", "field" },
  ["lg.progress.new"] = { "progress" }, -- lg.progress(total, opts) is lg.progress.new(total, opts)
  ["lg.nn.CrossEntropyLoss"] = { "cross_entropy" }, ["lg.nn.NLLLoss"] = { "nll_loss" },
  ["lg.nn.MSELoss"] = { "mse_loss" }, ["lg.nn.BCEWithLogitsLoss"] = { "binary_cross_entropy_with_logits" },
  ["lg.nn.LeakyReLU"] = { "leaky_relu" }, ["lg.nn.LogSoftmax"] = { "log_softmax" },
  ["lg.nn.L1Loss"] = { "l1_loss" }, ["lg.nn.SmoothL1Loss"] = { "smooth_l1_loss" }, ["lg.nn.HuberLoss"] = { "huber_loss" },
  ["lg.nn.BCELoss"] = { "binary_cross_entropy" }, ["lg.nn.KLDivLoss"] = { "kl_div" },
  ["lg.nn.CosineEmbeddingLoss"] = { "cosine_embedding_loss" }, ["lg.nn.GroupNorm"] = { "group_norm" },
}

local function has_word(s, word)
  return s:find("%f[%w_]" .. word:gsub("%p", "%%%0") .. "%f[^%w_]") ~= nil
end

---names_itself(name, msg): whether msg names the function called name (the rule above).
---@param name string the function as fuzz.enumerate names it ("Tensor:narrow", "lg.optim.SGD:step")
---@param msg string the error message, with or without its position
---@return boolean
function M.names_itself(name, msg)
  msg = msg:gsub("^[^\n]-:%d+: ", "")
  local lower = msg:lower()
  local last = name:match("([%w_]+)$")
  if last then last = last:gsub("^__", "") end -- a metamethod: the operator's name (add for __add)
  if last and has_word(lower, last:lower()) then return true end
  if name:find(":__[%w_]+$") and has_word(msg, name:match("(__[%w_]+)$")) then return true end -- "__gc: ..."
  local class = name:match("^(.-):[%w_]+$")
  local owner = class and class:match("([%w_]+)$")
  if owner and owner ~= "Tensor" and has_word(lower, owner:lower()) then return true end
  for _, key in ipairs({ name, class }) do
    for _, alias in ipairs(M.STANDS_FOR[key] or {}) do
      if has_word(msg, alias) then return true end
    end
  end
  -- a method several classes share (AvgPool1d:forward is AvgPool2d:forward) called on another of
  -- them names that class: "AvgPool2d: expected ..."
  local ns, method = name:match("^(lg%.[%w_.]+)%.[%w_]+:([%w_]+)$")
  local other = msg:match("^(%u[%w_]*)[: ]")
  if ns and other then
    local lg = require "luagrad"
    local t = lg
    for part in ns:gsub("^lg%.", ""):gmatch("[%w_]+") do t = type(t) == "table" and rawget(t, part) or nil end
    local mine, theirs = t and rawget(t, owner), t and rawget(t, other)
    if type(mine) == "table" and type(theirs) == "table" and mine[method] ~= nil and mine[method] == theirs[method] then
      return true
    end
  end
  return false
end

-- ---- what need not name itself ----------------------------------------------------------------
--
-- The exemptions from the rule above, for spec/argument_errors_spec.lua and spec/fuzz_spec.lua
-- alike. An entry names functions (patterns on their names) and says why; with allow(msg), only
-- the messages it allows are excused (the function's other errors must still name it); without,
-- every error of those functions is.

-- "Linear: expected a tensor input, got nil": a message in the name of one of lg.nn's layers
local function names_a_layer(msg)
  local class = msg:match("^(%u[%w_]*): ")
  local nn = require("luagrad").nn
  return class ~= nil and class ~= "Module" and nn.is_module ~= nil and type(rawget(nn, class)) == "table"
end
-- "SGD: params must be ...": a message in the name of one of lg.optim's optimizer classes
local function names_an_optimizer(msg)
  local class = msg:match("^(%u[%w_]*): ")
  local optim = require("luagrad").optim
  return class ~= nil and type(rawget(optim, class)) == "table" and rawget(optim, class).defaults ~= nil
end

M.EXEMPT = {
  { names = { "^lg%.distributed%.init$", "^lg%.distributed%.abort$", "^lg%.distributed%.finalize$",
    "^lg%.nn%.DistributedDataParallel:" },
    reason = "MPI: init, finalize and abort would start or end MPI, or end the process, in the process that runs " ..
      "the specs, and a DistributedDataParallel (whose own methods these are) is made only after init; " ..
      "spec/distributed_spec.lua drives them all in jobs of 2 ranks, and the fuzzer calls them against a stub" },
  { names = { "^lg%.optim%.[%w_]+:validate$", "^lg%.optim%.[%w_]+:update$", "^lg%.optim%.[%w_]+:init_state$" },
    reason = "an optimizer class's hooks, SGD.validate(group, bad), SGD.update(group, state), " ..
      "Adagrad.init_state(p, group): the optimizer calls them with its own arguments; found on the class, they " ..
      "are walked as methods with an optimizer for `group` (a wrong self, out of scope)" },
  { names = { "^lg%.nn%.Sequential:forward$" }, allow = names_a_layer,
    reason = "passes its input to its first layer, which may take anything: an input a layer refuses is refused " ..
      "in that layer's name (Linear: ...), as in PyTorch" },
  { names = { "^lg%.nn%.Residual:forward$" }, allow = names_a_layer,
    reason = "checks that its input is a tensor (naming Residual), then passes it to its block: a tensor the " ..
      "block refuses is refused in the block's name" },
  { names = { "^lg%.optim%.Optimizer:new$" }, allow = names_an_optimizer,
    reason = "Optimizer.new(cls, params, opts) is what calling an optimizer class does: its errors name the " ..
      "class made (SGD: ...), as lg.optim.SGD(...)'s do" },
  { names = { "^lg%.cli%.options$" },
    allow = function(msg) return msg:find("needs a value", 1, true) or msg:find("needs a number", 1, true)
      or msg:find("unknown argument", 1, true) end,
    reason = "an error in the command line (--x needs a value, unknown argument) is meant for whoever runs the " ..
      "script and names the script (the name argument); wrong arguments to cli.options itself name it" },
}

---exemption(name): the entry of M.EXEMPT for a function, or nil.
function M.exemption(name)
  for _, x in ipairs(M.EXEMPT) do
    for _, pat in ipairs(x.names) do
      if name:find(pat) then return x end
    end
  end
  return nil
end

---excused(name, msg): whether an error of the function that does not name it is excused.
function M.excused(name, msg)
  local x = M.exemption(name)
  return x ~= nil and (x.allow == nil or x.allow((msg:gsub("^[^\n]-:%d+: ", ""))) and true or false)
end

---from_callback(msg): whether an error was raised inside a function the call passed as an
---argument (arguments are built in the chunk "=arg", so such an error is positioned there): the
---callback's own error, which the library passes on unchanged.
function M.from_callback(msg) return msg:match("^arg:%d+: ") ~= nil end

-- Runs one call in this process: returns outcome ("ok", "error", "bad-error"), the message (for
-- errors) and the time it took.
function M.run_call(lg, c)
  local env = setmetatable({ lg = lg }, { __index = _G })
  local function eval(src)
    local chunk = assert(load("return " .. src, "=arg", "t", env))
    return chunk()
  end
  local ok0, fn = pcall(eval, c.get)
  if not ok0 then return "setup", tostring(fn) end
  local args = {}
  for i = 1, c.nargs do
    local ok, v = pcall(eval, c.args[i])
    if not ok then return "setup", "argument " .. i .. " (" .. c.args[i] .. ") could not be built: " .. tostring(v) end
    args[i] = v
  end
  local ok, err = pcall(fn, table.unpack(args, 1, c.nargs))
  if ok then return "ok" end
  if type(err) ~= "string" then
    return "bad-error", "error value is a " .. type(err) .. " (" .. tostring(err) .. "), not a string"
  end
  return "error", err
end

return M
