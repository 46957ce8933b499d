-- Every public entry point names itself in its errors (issue 12, item 20). Every public function
-- and method that spec/helpers/fuzz.lua enumerates (lg and its submodules, the tensor methods
-- and metamethods, the classes' methods, the methods of objects only functions return) is called
-- with a wrong-typed value at each argument position 1..k, k the number of parameters of its
-- signature in docs/reference/*.md (at least 1): a string, a table, a function, a boolean, a
-- number (where a tensor may be expected), a tensor (where a number may be expected) and nil
-- (where the argument may be required). The other arguments are a valid example where VALID
-- below has one, else absent; a method gets a fresh valid receiver of every class that has it
-- (RECEIVERS). A call may succeed (a wrong-looking type can be valid); a call that raises must
-- raise a string that
--   * names the function, by the rule written at fuzz.names_itself (its own short name as a
--     word, or for a method its class's name, or a name in fuzz.STANDS_FOR), and
--   * is not a raw Lua error ("attempt to ...", "bad argument #2 to 'format'", "?: ...").
-- fuzz.EXEMPT (spec/helpers/fuzz.lua) lists the exemptions, each with its reason.
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local fuzz = require "helpers.fuzz"
local lg = require "luagrad"

local TMP = util.tmpdir()
local SINK = { write = function() end } -- a file for progress bars that draws nowhere

-- ---- what is not walked ---------------------------------------------------------------------

-- The exemptions are fuzz.EXEMPT (spec/helpers/fuzz.lua, shared with the fuzzer's table), each
-- with its reason: an entry without `allow` is not walked; one with `allow` is walked and an
-- error that does not name the function passes only when allow(message) is true.
local exemption = fuzz.exemption

-- ---- receivers: a valid instance of each class ----------------------------------------------

local function SGD() return lg.optim.SGD({ lg.ones(2, { requires_grad = true }) }, { lr = 0.1 }) end
local S = lg.optim.lr_scheduler
local nn = lg.nn

local RECEIVERS = {
  Tensor = function() return lg.ones(2, 3) end,
  HookHandle = function() return lg.ones(1, { requires_grad = true }):register_hook(function() end) end,
  Claim = function() return lg.cli.claim("spec") end,
  ["lg.data.DataLoader"] = function() return lg.data.DataLoader(lg.data.TensorDataset(lg.zeros(4, 2)), { batch_size = 2 }) end,
  ["lg.data.Generator"] = function() return lg.data.Generator(0) end,
  ["lg.progress.Bar"] = function() return lg.progress(10, { file = SINK }) end,
  ["lg.data.DistributedSampler"] = function() return lg.data.DistributedSampler(4, { num_replicas = 2, rank = 1 }) end,
  -- made without MPI (its constructor needs lg.distributed.init()): an empty module of the class, for
  -- the methods it inherits from Module; its own are exempt (fuzz.EXEMPT)
  ["lg.nn.DistributedDataParallel"] = function() return setmetatable(nn.Module(), nn.DistributedDataParallel) end,
  ["lg.nn.Module"] = function() return nn.Module() end,
  ["lg.nn.Linear"] = function() return nn.Linear(3, 2) end,
  ["lg.nn.Sequential"] = function() return nn.Sequential(nn.Linear(3, 2), nn.ReLU()) end,
  ["lg.nn.Residual"] = function() return nn.Residual(nn.Linear(3, 3)) end,
  ["lg.nn.Identity"] = function() return nn.Identity() end,
  ["lg.nn.Flatten"] = function() return nn.Flatten() end,
  ["lg.nn.ReLU"] = function() return nn.ReLU() end,
  ["lg.nn.Sigmoid"] = function() return nn.Sigmoid() end,
  ["lg.nn.Tanh"] = function() return nn.Tanh() end,
  ["lg.nn.SiLU"] = function() return nn.SiLU() end,
  ["lg.nn.GELU"] = function() return nn.GELU() end,
  ["lg.nn.LeakyReLU"] = function() return nn.LeakyReLU() end,
  ["lg.nn.ELU"] = function() return nn.ELU() end,
  ["lg.nn.Softplus"] = function() return nn.Softplus() end,
  ["lg.nn.Softmax"] = function() return nn.Softmax(2) end,
  ["lg.nn.LogSoftmax"] = function() return nn.LogSoftmax(2) end,
  ["lg.nn.Dropout"] = function() return nn.Dropout(0.5) end,
  ["lg.nn.BatchNorm1d"] = function() return nn.BatchNorm1d(3) end,
  ["lg.nn.BatchNorm2d"] = function() return nn.BatchNorm2d(3) end,
  ["lg.nn.Conv1d"] = function() return nn.Conv1d(2, 3, 3) end,
  ["lg.nn.Embedding"] = function() return nn.Embedding(4, 3) end,
  ["lg.nn.Conv2d"] = function() return nn.Conv2d(2, 3, 3) end,
  ["lg.nn.RNN"] = function() return nn.RNN(3, 2) end,
  ["lg.nn.LSTM"] = function() return nn.LSTM(3, 2) end,
  ["lg.nn.GRU"] = function() return nn.GRU(3, 2) end,
  ["lg.nn.RNNCell"] = function() return nn.RNNCell(3, 2) end,
  ["lg.nn.LSTMCell"] = function() return nn.LSTMCell(3, 2) end,
  ["lg.nn.GRUCell"] = function() return nn.GRUCell(3, 2) end,
  ["lg.nn.MaxPool1d"] = function() return nn.MaxPool1d(2) end,
  ["lg.nn.MaxPool2d"] = function() return nn.MaxPool2d(2) end,
  ["lg.nn.AvgPool1d"] = function() return nn.AvgPool1d(2) end,
  ["lg.nn.AvgPool2d"] = function() return nn.AvgPool2d(2) end,
  ["lg.nn.AdaptiveAvgPool2d"] = function() return nn.AdaptiveAvgPool2d(1) end,
  ["lg.nn.Dropout2d"] = function() return nn.Dropout2d(0.5) end,
  ["lg.nn.ModuleList"] = function() return nn.ModuleList({ nn.Linear(3, 2), nn.ReLU() }) end,
  ["lg.nn.ModuleDict"] = function() return nn.ModuleDict({ a = nn.Linear(3, 2), b = nn.ReLU() }) end,
  ["lg.nn.LayerNorm"] = function() return nn.LayerNorm(3) end,
  ["lg.nn.MultiheadAttention"] = function() return nn.MultiheadAttention(4, 2) end,
  ["lg.nn.CrossEntropyLoss"] = function() return nn.CrossEntropyLoss() end,
  ["lg.nn.NLLLoss"] = function() return nn.NLLLoss() end,
  ["lg.nn.MSELoss"] = function() return nn.MSELoss() end,
  ["lg.nn.BCEWithLogitsLoss"] = function() return nn.BCEWithLogitsLoss() end,
  ["lg.nn.L1Loss"] = function() return nn.L1Loss() end,
  ["lg.nn.SmoothL1Loss"] = function() return nn.SmoothL1Loss() end,
  ["lg.nn.HuberLoss"] = function() return nn.HuberLoss() end,
  ["lg.nn.BCELoss"] = function() return nn.BCELoss() end,
  ["lg.nn.KLDivLoss"] = function() return nn.KLDivLoss() end,
  ["lg.nn.CosineEmbeddingLoss"] = function() return nn.CosineEmbeddingLoss() end,
  ["lg.nn.GroupNorm"] = function() return nn.GroupNorm(2, 4) end,
  ["lg.optim.Optimizer"] = SGD,
  ["lg.optim.SGD"] = SGD,
  ["lg.optim.Adam"] = function() return lg.optim.Adam({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.AdamW"] = function() return lg.optim.AdamW({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.RMSprop"] = function() return lg.optim.RMSprop({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.Adagrad"] = function() return lg.optim.Adagrad({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.Adamax"] = function() return lg.optim.Adamax({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.NAdam"] = function() return lg.optim.NAdam({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.RAdam"] = function() return lg.optim.RAdam({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.Adadelta"] = function() return lg.optim.Adadelta({ lg.ones(2, { requires_grad = true }) }) end,
  ["lg.optim.lr_scheduler.LRScheduler"] = function() return S.StepLR(SGD(), { step_size = 2 }) end,
  ["lg.optim.lr_scheduler.StepLR"] = function() return S.StepLR(SGD(), { step_size = 2 }) end,
  ["lg.optim.lr_scheduler.MultiStepLR"] = function() return S.MultiStepLR(SGD(), { milestones = { 2, 4 } }) end,
  ["lg.optim.lr_scheduler.ExponentialLR"] = function() return S.ExponentialLR(SGD(), { gamma = 0.9 }) end,
  ["lg.optim.lr_scheduler.CosineAnnealingLR"] = function() return S.CosineAnnealingLR(SGD(), { T_max = 10 }) end,
  ["lg.optim.lr_scheduler.CosineAnnealingWarmRestarts"] = function()
    return S.CosineAnnealingWarmRestarts(SGD(), { T_0 = 3 })
  end,
  ["lg.optim.lr_scheduler.OneCycleLR"] = function() return S.OneCycleLR(SGD(), { max_lr = 1, total_steps = 10 }) end,
  ["lg.optim.lr_scheduler.LinearLR"] = function() return S.LinearLR(SGD()) end,
  ["lg.optim.lr_scheduler.PolynomialLR"] = function() return S.PolynomialLR(SGD()) end,
  ["lg.optim.lr_scheduler.LambdaLR"] = function()
    return S.LambdaLR(SGD(), { lr_lambda = function(e) return 1 / (e + 1) end })
  end,
  ["lg.optim.lr_scheduler.FunctionLR"] = function() return S.FunctionLR(SGD(), { lr = function() return 0.1 end }) end,
  ["lg.optim.lr_scheduler.SequentialLR"] = function()
    local o = SGD()
    return S.SequentialLR(o, { schedulers = { S.LinearLR(o), S.ExponentialLR(o, { gamma = 0.9 }) }, milestones = { 2 } })
  end,
  ["lg.optim.lr_scheduler.ReduceLROnPlateau"] = function() return S.ReduceLROnPlateau(SGD()) end,
}

-- tensor methods that need another receiver than a 2x3 float tensor
local TENSOR_RECEIVERS = {
  ["Tensor:backward"] = function() return (lg.ones(2, { requires_grad = true }) * 2):sum() end,
  ["Tensor:register_hook"] = function() return lg.ones(2, { requires_grad = true }) end,
  ["Tensor:retain_grad"] = function() return lg.ones(2, { requires_grad = true }) * 2 end,
  ["Tensor:index_add"] = function() return lg.ones(3, 2) end,
}

-- functions called without a receiver although the enumeration finds them on a class
local STATIC = { ["lg.optim.Optimizer:new"] = true }

-- ---- valid arguments ------------------------------------------------------------------------

local function i64(t) return lg.tensor(t, { dtype = "int64" }) end
local function leaf() return lg.ones(2, { requires_grad = true }) end
-- callbacks that never raise themselves (an error of the caller's own function is not the library's)
local function double(x) return lg.is_tensor(x) and x * 2 or lg.zeros(1, { dtype = "float64" }) end
local function square_sum(x) return lg.is_tensor(x) and (x * x):sum() or lg.zeros(1) end

-- name -> function(receiver) returning a valid argument list (after the receiver)
local VALID = {
  ["Tensor:__newindex"] = function() return { 1, 0 } end,
  ["Tensor:backward"] = function() return { lg.tensor(1.0), {} } end,
  ["Tensor:chunk"] = function() return { 2, 1 } end,
  ["Tensor:clamp"] = function() return { 0, 1 } end,
  ["Tensor:clamp_"] = function() return { 0, 1 } end,
  ["Tensor:flatten"] = function() return { 1, 2 } end,
  ["Tensor:index_add"] = function() return { 1, i64({ 1, 3 }), lg.ones(2, 2) } end,
  ["Tensor:index_select"] = function() return { 1, i64({ 1 }) } end,
  ["Tensor:gather"] = function() return { 1, lg.ones(2, 3, { dtype = "int64" }) } end,
  ["Tensor:scatter_add"] = function() return { 1, lg.ones(2, 3, { dtype = "int64" }), lg.ones(2, 3) } end,
  ["Tensor:narrow"] = function() return { 1, 1, 1 } end,
  ["Tensor:norm"] = function() return { 2, 1, false } end,
  ["Tensor:normal_"] = function() return { 0, 1 } end,
  ["Tensor:uniform_"] = function() return { 0, 1 } end,
  ["Tensor:select"] = function() return { 1, 1 } end,
  ["Tensor:split"] = function() return { 1, 1 } end,
  ["Tensor:transpose"] = function() return { 1, 2 } end,
  ["Tensor:where"] = function() return { lg.ones(2, 3), 0 } end,
  ["Tensor:std"] = function() return { 1, false, {} } end,
  ["Tensor:var"] = function() return { 1, false, {} } end,
  ["lg.arange"] = function() return { 0, 4, 1, {} } end,
  ["lg.eye"] = function() return { 2, 3, {} } end,
  ["lg.full"] = function() return { { 2 }, 1, {} } end,
  ["lg.full_like"] = function() return { lg.ones(2), 1, {} } end,
  ["lg.linspace"] = function() return { 0, 1, 3, {} } end,
  ["lg.randint"] = function() return { 0, 5, { 2 }, {} } end,
  ["lg.cat"] = function() return { { lg.ones(2), lg.ones(2) }, 1 } end,
  ["lg.stack"] = function() return { { lg.ones(2), lg.ones(2) }, 1 } end,
  ["lg.tensor"] = function() return { { 1, 2 }, {} } end,
  ["lg.where"] = function() return { lg.ones(2), 1, 0 } end,
  ["lg.save"] = function() return { TMP .. "/valid.safetensors", { w = lg.ones(2) } } end,
  ["lg.save_npy"] = function() return { TMP .. "/valid.npy", lg.ones(2) } end,
  ["lg.autograd.grad"] = function()
    local x = leaf()
    return { (x * 2):sum(), { x }, {} }
  end,
  ["lg.autograd.gradcheck"] = function()
    return { double, { lg.ones(2, { dtype = "float64", requires_grad = true }) }, {} }
  end,
  ["lg.autograd.hessian"] = function() return { square_sum, lg.ones(2) } end,
  ["lg.autograd.hvp"] = function() return { square_sum, lg.ones(2), lg.ones(2) } end,
  ["lg.autograd.jacobian"] = function() return { double, lg.ones(2), {} } end,
  ["lg.autograd.jvp"] = function() return { double, lg.ones(2), lg.ones(2) } end,
  ["lg.autograd.vjp"] = function() return { double, lg.ones(2), lg.ones(2) } end,
  ["lg.autograd.with_grad_mode"] = function() return { true, function() end } end,
  ["lg.cli.options"] = function() return { {}, { x = 1 }, "script", {} } end,
  ["Claim:check"] = function() return { true, "what" } end,
  ["lg.data.DataLoader"] = function() return { lg.data.TensorDataset(lg.zeros(4, 2)), { batch_size = 2 } } end,
  ["lg.nn.BatchNorm1d"] = function() return { 3, {} } end,
  ["lg.nn.LayerNorm"] = function() return { 3, {} } end,
  ["lg.nn.Linear"] = function() return { 3, 2, {} } end,
  ["lg.nn.Embedding"] = function() return { 4, 3, {} } end,
  ["lg.nn.Embedding:forward"] = function() return { i64({ 1, 2 }) } end,
  ["lg.nn.RNN:forward"] = function() return { lg.randn(4, 2, 3), lg.zeros(1, 2, 2) } end,
  ["lg.nn.GRU:forward"] = function() return { lg.randn(4, 2, 3), lg.zeros(1, 2, 2) } end,
  ["lg.nn.LSTM:forward"] = function() return { lg.randn(4, 2, 3), { lg.zeros(1, 2, 2), lg.zeros(1, 2, 2) } } end,
  ["lg.nn.RNNCell:forward"] = function() return { lg.randn(2, 3), lg.zeros(2, 2) } end,
  ["lg.nn.GRUCell:forward"] = function() return { lg.randn(2, 3), lg.zeros(2, 2) } end,
  ["lg.nn.LSTMCell:forward"] = function() return { lg.randn(2, 3), { lg.zeros(2, 2), lg.zeros(2, 2) } } end,
  ["lg.nn.functional.embedding"] = function() return { i64({ 1, 2 }), lg.ones(4, 3), {} } end,
  ["lg.nn.functional.one_hot"] = function() return { i64({ 1, 2 }), 3 } end,
  ["lg.nn.Flatten"] = function() return { 2, -1 } end,
  ["lg.nn.CrossEntropyLoss:forward"] = function() return { lg.randn(2, 3), i64({ 1, 2 }) } end,
  ["lg.nn.NLLLoss:forward"] = function() return { lg.randn(2, 3), i64({ 1, 2 }) } end,
  ["lg.nn.MSELoss:forward"] = function() return { lg.ones(2), lg.ones(2) } end,
  ["lg.nn.BCEWithLogitsLoss:forward"] = function() return { lg.ones(2), lg.ones(2) } end,
  ["lg.nn.L1Loss:forward"] = function() return { lg.ones(2), lg.zeros(2) } end,
  ["lg.nn.SmoothL1Loss:forward"] = function() return { lg.ones(2), lg.zeros(2) } end,
  ["lg.nn.HuberLoss:forward"] = function() return { lg.ones(2), lg.zeros(2) } end,
  ["lg.nn.BCELoss:forward"] = function() return { lg.full({ 2 }, 0.5), lg.ones(2) } end,
  ["lg.nn.KLDivLoss:forward"] = function() return { lg.full({ 2 }, -0.7), lg.full({ 2 }, 0.5) } end,
  ["lg.nn.CosineEmbeddingLoss:forward"] = function() return { lg.ones(2, 3), lg.ones(2, 3), lg.ones(2) } end,
  ["lg.nn.GroupNorm"] = function() return { 2, 4, {} } end,
  ["lg.nn.GroupNorm:forward"] = function() return { lg.ones(2, 4, 3) } end,
  ["lg.nn.functional.l1_loss"] = function() return { lg.ones(2), lg.zeros(2), {} } end,
  ["lg.nn.functional.smooth_l1_loss"] = function() return { lg.ones(2), lg.zeros(2), {} } end,
  ["lg.nn.functional.huber_loss"] = function() return { lg.ones(2), lg.zeros(2), {} } end,
  ["lg.nn.functional.binary_cross_entropy"] = function() return { lg.full({ 2 }, 0.5), lg.ones(2), {} } end,
  ["lg.nn.functional.kl_div"] = function() return { lg.full({ 2 }, -0.7), lg.full({ 2 }, 0.5), {} } end,
  ["lg.nn.functional.cosine_embedding_loss"] = function() return { lg.ones(2, 3), lg.ones(2, 3), lg.ones(2), {} } end,
  ["lg.nn.functional.group_norm"] = function() return { lg.ones(2, 4, 3), 2, {} } end,
  ["lg.nn.Module:add_module"] = function() return { "child", nn.ReLU() } end,
  ["lg.nn.Module:register_buffer"] = function() return { "buf", lg.ones(2), {} } end,
  ["lg.nn.Module:register_parameter"] = function() return { "p", nn.Parameter(lg.ones(2)) } end,
  ["lg.nn.Module:load_state_dict"] = function(m) return { m:state_dict(), {} } end,
  ["lg.nn.Module:register_forward_hook"] = function() return { function() end, {} } end,
  ["lg.nn.Module:register_forward_pre_hook"] = function() return { function() end, {} } end,
  ["lg.nn.Module:requires_grad_"] = function() return { true } end,
  ["lg.nn.Module:num_parameters"] = function() return { {} } end,
  ["lg.nn.summary"] = function() return { nn.Linear(3, 2), { 2, 3 }, {} } end,
  ["lg.data.FunctionDataset"] = function() return { 3, function(i) return i end } end,
  ["lg.nn.functional.batch_norm"] = function() return { lg.ones(2, 3), lg.zeros(3), lg.ones(3), {} } end,
  ["lg.nn.functional.binary_cross_entropy_with_logits"] = function() return { lg.ones(2), lg.ones(2), {} } end,
  ["lg.nn.functional.cross_entropy"] = function() return { lg.randn(2, 3), i64({ 1, 2 }), {} } end,
  ["lg.nn.functional.nll_loss"] = function() return { lg.randn(2, 3), i64({ 1, 2 }), {} } end,
  ["lg.nn.functional.mse_loss"] = function() return { lg.ones(2), lg.ones(2), {} } end,
  ["lg.nn.functional.dropout"] = function() return { lg.ones(2), 0.5, {} } end,
  ["lg.nn.functional.elu"] = function() return { lg.ones(2), 1 } end,
  ["lg.nn.functional.leaky_relu"] = function() return { lg.ones(2), 0.1 } end,
  ["lg.nn.functional.gelu"] = function() return { lg.ones(2), {} } end,
  ["lg.nn.functional.softplus"] = function() return { lg.ones(2), {} } end,
  ["lg.nn.functional.layer_norm"] = function() return { lg.ones(2, 3), { 3 }, {} } end,
  ["lg.nn.functional.linear"] = function() return { lg.ones(2, 3), lg.ones(4, 3), lg.ones(4) } end,
  ["lg.nn.functional.softmax"] = function() return { lg.ones(2, 3), 2 } end,
  ["lg.nn.functional.log_softmax"] = function() return { lg.ones(2, 3), 2 } end,
  ["lg.nn.functional.pad"] = function() return { lg.ones(2, 3), { 1, 1 }, {} } end,
  ["lg.nn.init.calculate_gain"] = function() return { "leaky_relu", 0.1 } end,
  ["lg.nn.init.constant_"] = function() return { lg.ones(2), 1 } end,
  ["lg.nn.init.kaiming_uniform_"] = function() return { lg.ones(2, 3), {} } end,
  ["lg.nn.init.kaiming_normal_"] = function() return { lg.ones(2, 3), {} } end,
  ["lg.nn.init.xavier_uniform_"] = function() return { lg.ones(2, 3), {} } end,
  ["lg.nn.init.xavier_normal_"] = function() return { lg.ones(2, 3), {} } end,
  ["lg.nn.init.normal_"] = function() return { lg.ones(2), 0, 1 } end,
  ["lg.nn.init.uniform_"] = function() return { lg.ones(2), 0, 1 } end,
  ["lg.nn.utils.clip_grad_norm_"] = function() return { { leaf() }, 1, {} } end,
  ["lg.nn.utils.clip_grad_value_"] = function() return { { leaf() }, 1 } end,
  ["lg.optim.Optimizer:new"] = function() return { lg.optim.SGD, { leaf() }, { lr = 0.1 } } end,
  ["lg.optim.lr_scheduler.ReduceLROnPlateau:is_better"] = function() return { 1, 2 } end,
  ["lg.progress.Bar:update"] = function() return { 1, { loss = 1 } } end,
  ["lg.progress"] = function() return { 10, { file = SINK } } end,
  ["lg.progress.new"] = function() return { 10, { file = SINK } } end,
  ["lg.progress.wrap"] = function() return { 3, { file = SINK } } end,
  ["lg.plot.line"] = function() return { { { 1, 2, 3 } }, {} } end,
}
for _, name in ipairs({ "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell" }) do
  VALID["lg.nn." .. name] = function() return { 3, 2, {} } end
end
for _, name in ipairs({ "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "Adadelta" }) do
  VALID["lg.optim." .. name] = function() return { { leaf() }, { lr = 0.1 } } end
end
local SCHEDULE_OPTS = {
  StepLR = { step_size = 2 }, MultiStepLR = { milestones = { 2 } }, ExponentialLR = { gamma = 0.9 },
  CosineAnnealingLR = { T_max = 10 }, CosineAnnealingWarmRestarts = { T_0 = 3 },
  OneCycleLR = { max_lr = 1, total_steps = 10 }, LinearLR = {}, PolynomialLR = {}, ReduceLROnPlateau = {},
  LambdaLR = { lr_lambda = function() return 1 end }, FunctionLR = { lr = function() return 0.1 end },
}
for name, o in pairs(SCHEDULE_OPTS) do
  VALID["lg.optim.lr_scheduler." .. name] = function()
    local copy = {}
    for k, v in pairs(o) do copy[k] = v end
    return { SGD(), copy }
  end
end
VALID["lg.optim.lr_scheduler.SequentialLR"] = function()
  local o = SGD()
  return { o, { schedulers = { S.LinearLR(o), S.ExponentialLR(o, { gamma = 0.9 }) }, milestones = { 2 } } }
end
for _, name in ipairs({ "lg.empty", "lg.zeros", "lg.ones", "lg.rand", "lg.randn" }) do
  VALID[name] = function() return { 2, {} } end
end
for _, name in ipairs({ "lg.empty_like", "lg.zeros_like", "lg.ones_like", "lg.rand_like", "lg.randn_like" }) do
  VALID[name] = function() return { lg.ones(2), {} } end
end
for _, name in ipairs({ "argmax", "argmin", "max", "min", "sum", "mean", "prod", "logsumexp" }) do
  VALID["Tensor:" .. name] = function() return { 1, false } end
end

-- ---- the wrong values -----------------------------------------------------------------------

local WRONG = {
  { "a string", function() return "x" end },
  { "a table", function() return {} end },
  { "a function", function() return function() end end },
  { "a boolean", function() return true end },
  { "a number", function() return 3 end },
  { "a tensor", function() return lg.ones(2) end },
  { "nil", function() return nil end },
}

-- Keeps a call inside the temporary directory: a string given as a path names a file there, and
-- fashion_mnist reads from there (where no data is) unless told otherwise.
local function route(name, pname, v)
  if pname == "path" and type(v) == "string" then return TMP .. "/" .. v end
  if name == "lg.datasets.fashion_mnist" and type(v) == "table" and rawget(v, "root") == nil then v.root = TMP end
  return v
end

-- ---- judging a call -------------------------------------------------------------------------

-- what a raw Lua error looks like (the library's own messages never read so)
local RAW = { "attempt to ", "bad argument #", "invalid value (at index", "no integer representation", "expected, got ",
  "'?'" }

local function judge(name, ok, err)
  if ok then return nil end
  if type(err) ~= "string" then return "raised a " .. type(err) .. " value, not a string" end
  local msg = err:gsub("^[^\n]-:%d+: ", "")
  for _, raw in ipairs(RAW) do
    if msg:find(raw, 1, true) then return "a raw Lua error: " .. msg end
  end
  if msg:sub(1, 2) == "?:" then return "names '?': " .. msg end
  if not fuzz.names_itself(name, msg) and not fuzz.excused(name, msg) then return "does not name it: " .. msg end
  return nil
end

local THREADS = lg.get_num_threads()
local function restore() -- what a call may have changed for the next
  lg.set_grad_enabled(true)
  lg.set_default_dtype("float32")
  lg.autograd.detect_anomaly(false)
  if lg.get_num_threads() ~= THREADS then lg.set_num_threads(THREADS) end
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if lg.is_tensor(v) then return "a tensor" end
  return tostring(v):gsub(": 0x%x+", "")
end

-- Walks one entry; appends a line per bad call to failures; returns the number of calls.
local function walk(e, sigs, failures)
  local fn = assert(load("local lg = ...; return " .. e.get))(lg)
  local params = fuzz.params_for(e, sigs) or {}
  local k = math.max(#params, 1)
  local recvs
  if STATIC[e.name] or (e.kind ~= "tensor method" and e.kind ~= "method") then
    recvs = { false }
  elseif e.kind == "tensor method" then
    recvs = { "Tensor" }
  else
    recvs = e.recvs or { e.recv }
  end
  local calls = 0
  for _, cls in ipairs(recvs) do
    local make = cls and (cls == "Tensor" and (TENSOR_RECEIVERS[e.name] or RECEIVERS.Tensor) or RECEIVERS[cls])
    if cls and not make then
      failures[#failures + 1] = string.format("%s: no receiver for class %s (add it to RECEIVERS)", e.name, cls)
    else
      for pos = 1, k do
        for _, w in ipairs(WRONG) do
          local recv = make and make() or nil
          local args = VALID[e.name] and VALID[e.name](recv) or {}
          local n = math.max(k, #args)
          args[pos] = route(e.name, params[pos], w[2]())
          local ok, err
          if make then
            ok, err = pcall(fn, recv, table.unpack(args, 1, n))
          else
            ok, err = pcall(fn, table.unpack(args, 1, n))
          end
          restore()
          calls = calls + 1
          local bad = judge(e.name, ok, err)
          if bad then
            local shown = {}
            for i = 1, n do shown[i] = show(args[i]) end
            failures[#failures + 1] = string.format("%s%s(%s) [argument %d %s]: %s", e.name,
              cls and cls ~= e.name:match("^(.-):") and (" on " .. cls) or "", table.concat(shown, ", "), pos, w[1], bad)
          end
        end
      end
    end
  end
  return calls
end

-- the areas, for one test each: a pattern on the name
local AREAS = {
  { "tensor methods and metamethods", "^Tensor:" },
  { "lg's own functions", "^lg%.[%w_]+$" },
  { "lg.autograd", "^lg%.autograd%." },
  { "lg.nn modules", "^lg%.nn%.[A-Z]" },
  { "lg.nn.functional, lg.nn.init, lg.nn.utils, lg.nn.is_module", "^lg%.nn%.[a-z]" },
  { "lg.optim (optimizers)", "^lg%.optim%.[A-Z]" },
  { "lg.optim.lr_scheduler", "^lg%.optim%.lr_scheduler%." },
  { "lg.data, lg.datasets", "^lg%.data" },
  { "lg.progress, lg.plot, lg.cli, hook handles, claims", "^[%w_.]*[%w_]" },
}

describe("every public function names itself when an argument has the wrong type", function()
  local entries = fuzz.enumerate(lg)
  local sigs = fuzz.signatures()
  local done = {}

  local saved_rng = lg.get_rng_state()
  teardown(function()
    lg.set_rng_state(saved_rng)
    util.remove_dir(TMP)
  end)

  for _, area in ipairs(AREAS) do
    it(area[1], function()
      local failures, calls, walked = {}, 0, 0
      for _, e in ipairs(entries) do
        if not done[e.name] and e.name:find(area[2]) then
          done[e.name] = true
          local x = exemption(e.name)
          if not x or x.allow then
            calls = calls + walk(e, sigs, failures)
            walked = walked + 1
          end
        end
      end
      assert.is_true(walked > 0, "no function in this area")
      if #failures > 0 then
        error(string.format("%d of %d calls (%d functions) raised errors that do not name the function or are raw " ..
          "Lua errors:\n  %s", #failures, calls, walked, table.concat(failures, "\n  ")), 0)
      end
    end)
  end

  it("walked every enumerated function (the areas cover them all)", function()
    local missed = {}
    for _, e in ipairs(entries) do
      if not done[e.name] then missed[#missed + 1] = e.name end
    end
    assert.are.same({}, missed)
    assert.is_true(#entries > 380, "only " .. #entries .. " functions enumerated")
  end)

  it("lists its exemptions, each with a reason, each matching an enumerated function", function()
    for _, x in ipairs(fuzz.EXEMPT) do
      assert.is_string(x.reason)
      for _, pat in ipairs(x.names) do
        local n = 0
        for _, e in ipairs(entries) do
          if e.name:find(pat) then n = n + 1 end
        end
        assert.is_true(n > 0, pat .. " matches no function")
        print(string.format("argument errors: exempt %s%s: %s", pat, x.allow and " (some messages)" or "", x.reason))
      end
    end
    -- (the sixth: what needs MPI, which the specs' own process does not start)
    assert.is_true(#fuzz.EXEMPT <= 6, "the exemption list should stay short")
  end)
end)
