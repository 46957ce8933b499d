-- Unknown option names are errors everywhere (issue 17, item 4). Every public function and
-- method whose signature in docs/reference/*.md has an `opts` parameter is called with valid
-- arguments and an options table holding one misspelled key; the error must name the function
-- and the key and list the accepted names (one checker gives the message: errors.options in
-- Lua, lgL_checkoptions in C). A function that gains an `opts` parameter in the reference and
-- has no valid call below fails the spec until one is added. The forms that take an options
-- table in place of positional arguments (t:sum({dim = 2}), t:clamp({min = 0}), ...) follow.
package.path = "spec/?.lua;" .. package.path
local fuzz = require "helpers.fuzz"
local lg = require "luagrad"
local nn = lg.nn

local BAD = "bogus_opton"
local SINK = { write = function() end }

local function leaf() return lg.ones(2, { requires_grad = true }) end
local function SGD() return lg.optim.SGD({ leaf() }, { lr = 0.1 }) end
local function i64(t) return lg.tensor(t, { dtype = "int64" }) end
local function x4() return lg.randn(2, 3, 8, 8) end
local function x3() return lg.randn(2, 3, 8) end

-- name -> a function returning the receiver (methods only, else nil) and the arguments before opts
local CALLS = {
  ["Tensor:backward"] = function() return (leaf() * 2):sum(), {} end,
  ["Tensor:gelu"] = function() return lg.ones(2), {} end,
  ["Tensor:softplus"] = function() return lg.ones(2), {} end,
  ["Tensor:std"] = function() return lg.ones(2, 3), {} end,
  ["Tensor:var"] = function() return lg.ones(2, 3), {} end,
  ["lg.arange"] = function() return nil, { 3 } end,
  ["lg.autograd.grad"] = function() local x = leaf() return nil, { { (x * x):sum() }, { x } } end,
  ["lg.autograd.gradcheck"] = function() return nil, { function(a) return a end, { lg.ones(2, { dtype = "float64" }) } } end,
  ["lg.autograd.jacobian"] = function() return nil, { function(a) return a end, lg.ones(2) } end,
  ["lg.data.DataLoader"] = function() return nil, { lg.data.TensorDataset(lg.ones(4, 2)) } end,
  ["lg.datasets.fashion_mnist"] = function() return nil, {} end,
  ["lg.empty"] = function() return nil, { 2 } end,
  ["lg.empty_like"] = function() return nil, { lg.ones(2) } end,
  ["lg.eye"] = function() return nil, { 2, 2 } end,
  ["lg.full"] = function() return nil, { { 2 }, 1 } end,
  ["lg.full_like"] = function() return nil, { lg.ones(2), 1 } end,
  ["lg.linspace"] = function() return nil, { 0, 1, 3 } end,
  ["lg.load"] = function()
    local path = os.tmpname()
    lg.save(path, lg.ones(2))
    return nil, { path }
  end,
  ["lg.nn.AvgPool1d"] = function() return nil, { 2 } end,
  ["lg.nn.AvgPool2d"] = function() return nil, { 2 } end,
  ["lg.nn.BCEWithLogitsLoss"] = function() return nil, {} end,
  ["lg.nn.BatchNorm1d"] = function() return nil, { 3 } end,
  ["lg.nn.BatchNorm2d"] = function() return nil, { 3 } end,
  ["lg.nn.Conv1d"] = function() return nil, { 3, 4, 3 } end,
  ["lg.nn.Conv2d"] = function() return nil, { 3, 4, 3 } end,
  ["lg.nn.CrossEntropyLoss"] = function() return nil, {} end,
  ["lg.nn.Embedding"] = function() return nil, { 5, 3 } end,
  ["lg.nn.GELU"] = function() return nil, {} end,
  ["lg.nn.LayerNorm"] = function() return nil, { 3 } end,
  ["lg.nn.Linear"] = function() return nil, { 3, 2 } end,
  ["lg.nn.MSELoss"] = function() return nil, {} end,
  ["lg.nn.MaxPool1d"] = function() return nil, { 2 } end,
  ["lg.nn.MaxPool2d"] = function() return nil, { 2 } end,
  ["lg.nn.NLLLoss"] = function() return nil, {} end,
  ["lg.nn.Softplus"] = function() return nil, {} end,
  ["lg.nn.Module:buffers"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.Module:load_state_dict"] = function() local m = nn.Linear(2, 2) return m, { m:state_dict() } end,
  ["lg.nn.Module:named_buffers"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.Module:named_modules"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.Module:named_parameters"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.Module:parameters"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.Module:register_buffer"] = function() return nn.Module(), { "b", lg.ones(2) } end,
  ["lg.nn.Module:state_dict"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.Module:register_forward_hook"] = function() return nn.Linear(2, 2), { function() end } end,
  ["lg.nn.Module:register_forward_pre_hook"] = function() return nn.Linear(2, 2), { function() end } end,
  ["lg.nn.Module:num_parameters"] = function() return nn.Linear(2, 2), {} end,
  ["lg.nn.summary"] = function() return nil, { nn.Linear(3, 2), { 2, 3 } } end,
  ["lg.nn.functional.avg_pool1d"] = function() return nil, { x3(), 2 } end,
  ["lg.nn.functional.avg_pool2d"] = function() return nil, { x4(), 2 } end,
  ["lg.nn.functional.batch_norm"] = function() return nil, { lg.randn(4, 3), lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.binary_cross_entropy_with_logits"] = function() return nil, { lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.conv1d"] = function() return nil, { x3(), lg.randn(4, 3, 3), nil } end,
  ["lg.nn.functional.conv2d"] = function() return nil, { x4(), lg.randn(4, 3, 3, 3), nil } end,
  ["lg.nn.functional.cross_entropy"] = function() return nil, { lg.randn(2, 3), i64({ 1, 3 }) } end,
  ["lg.nn.functional.dropout"] = function() return nil, { lg.ones(4), 0.5 } end,
  ["lg.nn.functional.dropout2d"] = function() return nil, { x4(), 0.5 } end,
  ["lg.nn.functional.embedding"] = function() return nil, { i64({ 1, 2 }), lg.randn(3, 2) } end,
  ["lg.nn.functional.gelu"] = function() return nil, { lg.ones(2) } end,
  ["lg.nn.functional.layer_norm"] = function() return nil, { lg.randn(2, 3), { 3 } } end,
  ["lg.nn.functional.max_pool1d"] = function() return nil, { x3(), 2 } end,
  ["lg.nn.functional.max_pool2d"] = function() return nil, { x4(), 2 } end,
  ["lg.nn.functional.mse_loss"] = function() return nil, { lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.nll_loss"] = function() return nil, { lg.randn(2, 3):log_softmax(2), i64({ 1, 3 }) } end,
  ["lg.nn.functional.pad"] = function() return nil, { lg.ones(2, 2), { 1, 1 } } end,
  ["lg.nn.functional.softplus"] = function() return nil, { lg.ones(2) } end,
  ["lg.nn.init.kaiming_normal_"] = function() return nil, { lg.empty(3, 2) } end,
  ["lg.nn.init.kaiming_uniform_"] = function() return nil, { lg.empty(3, 2) } end,
  ["lg.nn.init.xavier_normal_"] = function() return nil, { lg.empty(3, 2) } end,
  ["lg.nn.init.xavier_uniform_"] = function() return nil, { lg.empty(3, 2) } end,
  ["lg.nn.utils.clip_grad_norm_"] = function() return nil, { { leaf() }, 1 } end,
  ["lg.ones"] = function() return nil, { 2 } end,
  ["lg.ones_like"] = function() return nil, { lg.ones(2) } end,
  ["lg.optim.Optimizer:new"] = function() return lg.optim.SGD, { { leaf() } } end,
  ["lg.plot.line"] = function() return nil, { { { name = "a", x = { 1, 2 }, y = { 1, 2 } } } } end,
  ["lg.progress"] = function() return nil, { 10 } end,
  ["lg.progress.new"] = function() return nil, { 10 } end,
  ["lg.progress.wrap"] = function() return nil, { 10 } end,
  ["lg.rand"] = function() return nil, { 2 } end,
  ["lg.rand_like"] = function() return nil, { lg.ones(2) } end,
  ["lg.randint"] = function() return nil, { 1, 3, { 2 } } end,
  ["lg.randn"] = function() return nil, { 2 } end,
  ["lg.randn_like"] = function() return nil, { lg.ones(2) } end,
  ["lg.tensor"] = function() return nil, { { 1, 2 } } end,
  ["lg.zeros"] = function() return nil, { 2 } end,
  ["lg.zeros_like"] = function() return nil, { lg.ones(2) } end,
  ["lg.data.DistributedSampler"] = function() return nil, { 4 } end,
  ["lg.datasets.fortunes"] = function() return nil, {} end,
  ["lg.nn.DistributedDataParallel"] = function() return nil, { nn.Linear(2, 2) } end,
  ["lg.nn.GroupNorm"] = function() return nil, { 2, 4 } end,
  ["lg.nn.MultiheadAttention"] = function() return nil, { 4, 2 } end,
  ["lg.nn.MultiheadAttention:forward"] = function()
    local x = lg.randn(2, 3, 4)
    return nn.MultiheadAttention(4, 2), { x, x, x }
  end,
  ["lg.nn.functional.binary_cross_entropy"] = function() return nil, { lg.full({ 3 }, 0.5), lg.ones(3) } end,
  ["lg.nn.functional.cosine_embedding_loss"] = function() return nil, { lg.randn(2, 3), lg.randn(2, 3), lg.ones(2) } end,
  ["lg.nn.functional.group_norm"] = function() return nil, { lg.randn(2, 4), 2 } end,
  ["lg.nn.functional.huber_loss"] = function() return nil, { lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.kl_div"] = function() return nil, { lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.l1_loss"] = function() return nil, { lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.smooth_l1_loss"] = function() return nil, { lg.zeros(3), lg.ones(3) } end,
  ["lg.nn.functional.scaled_dot_product_attention"] = function()
    return nil, { lg.randn(2, 3, 4), lg.randn(2, 3, 4), lg.randn(2, 3, 4) }
  end,
}
for _, name in ipairs({ "all_reduce", "broadcast", "gather", "reduce", "scatter" }) do
  CALLS["lg.distributed." .. name] = function() return nil, { lg.ones(2) } end -- options are checked before MPI is asked
end
for _, name in ipairs({ "BCELoss", "CosineEmbeddingLoss", "HuberLoss", "KLDivLoss", "L1Loss", "SmoothL1Loss" }) do
  CALLS["lg.nn." .. name] = function() return nil, {} end
end
for _, name in ipairs({ "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell" }) do
  CALLS["lg.nn." .. name] = function() return nil, { 3, 2 } end
end
-- entries whose receiver cannot be made in this process, with where they are checked instead
local ELSEWHERE = {
  ["lg.nn.DistributedDataParallel:state_dict"] = "a DDP wrapper needs an initialized MPI world (spec/distributed_spec.lua)",
  ["lg.nn.DistributedDataParallel:load_state_dict"] = "a DDP wrapper needs an initialized MPI world (spec/distributed_spec.lua)",
}
for _, name in ipairs({ "Adagrad", "Adam", "AdamW", "RMSprop", "SGD", "Adamax", "NAdam", "RAdam", "Adadelta" }) do
  CALLS["lg.optim." .. name] = function() return nil, { { leaf() } } end
end
for _, name in ipairs({ "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "ExponentialLR", "FunctionLR", "LambdaLR",
  "LinearLR", "MultiStepLR", "OneCycleLR", "PolynomialLR", "ReduceLROnPlateau", "SequentialLR", "StepLR" }) do
  CALLS["lg.optim.lr_scheduler." .. name] = function() return nil, { SGD() } end
end

-- how a name is reached: lg.a.b -> lg.a.b; lg.nn.Module:state_dict, Tensor:var -> a method
local function resolve(name)
  local path = name:gsub("^Tensor:", "Tensor."):gsub(":", ".")
  local v = { lg = lg, Tensor = lg.Tensor }
  for part in path:gmatch("[%w_]+") do v = v[part] end
  return v
end

describe("an unknown option name", function()
  local sigs, entries = fuzz.signatures(), fuzz.enumerate(lg)
  local walked = {}
  for _, e in ipairs(entries) do
    local ps = fuzz.params_for(e, sigs)
    local at
    for i, p in ipairs(ps or {}) do
      if p == "opts" then at = i end
    end
    if at and not ELSEWHERE[e.name] then
      walked[#walked + 1] = e.name
      it("is an error in " .. e.name, function()
        local make = CALLS[e.name]
        assert(make, e.name .. " takes opts in the reference but has no valid call in spec/options_spec.lua's CALLS")
        local self, args = make()
        local n = 0
        for k in pairs(args) do n = math.max(n, k) end
        if select("#", make()) > 0 and #args < n then n = n end
        local opts = { [BAD] = 1 }
        if e.name:find("progress") then opts.file = SINK end
        args[n + 1] = opts
        local fn = resolve(e.name)
        local ok, err
        if self ~= nil then
          ok, err = pcall(fn, self, table.unpack(args, 1, n + 1))
        else
          ok, err = pcall(fn, table.unpack(args, 1, n + 1))
        end
        assert.is_false(ok, e.name .. " accepted an unknown option")
        err = tostring(err)
        assert.truthy(err:find("unknown option '" .. BAD .. "' (accepted: ", 1, true), e.name .. ": " .. err)
        assert.truthy(fuzz.names_itself(e.name, err), e.name .. " is not named in: " .. err)
        assert.truthy(err:find("options_spec.lua:%d+: "), "blames the caller's line: " .. err)
      end)
    end
  end

  it("is looked for in at least the 90 entries the reference gives an opts parameter", function()
    assert.is_true(#walked >= 90, #walked .. " walked")
  end)
end)

describe("options tables in place of positional arguments", function()
  local t = lg.randn(3, 4)
  local cases = {
    { "sum", function(o) return t:sum(o) end, { dim = 1 } },
    { "mean", function(o) return t:mean(o) end, { dim = 1 } },
    { "max", function(o) return t:max(o) end, { dim = 1 } },
    { "var", function(o) return t:var(o) end, { dim = 1, correction = 0 } },
    { "softmax", function(o) return t:softmax(o) end, { dim = 2 } },
    { "clamp", function(o) return t:clamp(o) end, { min = 0 } },
    { "clamp_", function(o) return t:clone():clamp_(o) end, { max = 0 } },
    { "sort", function(o) return t:sort(o) end, { dim = 2 } },
    { "topk", function(o) return t:topk(2, o) end, { dim = 2 } },
    { "cumsum", function(o) return t:cumsum(o) end, { dim = 2 } },
    { "tril", function(o) return t:tril(o) end, { diagonal = 1 } },
    { "leaky_relu", function(o) return t:leaky_relu(o) end, { negative_slope = 0.1 } },
    { "multinomial", function(o) return lg.ones(3):multinomial(2, o) end, { replacement = true } },
    { "DataLoader", function(o) return lg.data.DataLoader(lg.data.TensorDataset(lg.ones(4, 2)), o) end, { batch_size = 2 } },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " takes its valid options and refuses a misspelled one", function()
      assert.truthy(c[2](c[3]))
      local bad = {}
      for k, v in pairs(c[3]) do bad[k] = v end
      local key = next(c[3])
      bad[key] = nil
      bad[key:sub(1, 1) .. key:sub(3)] = c[3][key] -- a letter dropped: "bach_size"
      local ok, err = pcall(c[2], bad)
      assert.is_false(ok)
      assert.truthy(err:find(c[1] .. ": unknown option '" .. key:sub(1, 1) .. key:sub(3) .. "' (accepted: ", 1, true), err)
      assert.truthy(err:find(key, 1, true), "names the valid option " .. key .. ": " .. err)
    end)
  end
end)
