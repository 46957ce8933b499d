-- luagrad: the Lua face of the engine. `require "luagrad"` loads the C core (luagrad.core)
-- and adds what is written in Lua. It sets no globals.
local core = require "luagrad.core"
local format = require "luagrad.format"
local autograd = require "luagrad.autograd"

local lg = {}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" then lg[k] = v end
end

---@alias luagrad.dtype "float32"|"float64"|"int64"

---A tensor, a userdata of the C core. Its methods (t:exp(), t:matmul(u), t:sum(2), ...) are
---the core's; the fields below are the ones read most.
---@class luagrad.Tensor
---@field shape integer[] the sizes (a fresh table on each read)
---@field dtype luagrad.dtype
---@field requires_grad boolean
---@field is_leaf boolean whether it was made by the user rather than computed by an operation
---@field grad luagrad.Tensor|nil the gradient accumulated by backward
---@field [string] any the core's methods

-- The methods table of tensors: methods written in Lua are added here.
local Tensor = core.Tensor
lg.Tensor = Tensor

-- Tensors print through the Lua formatter (PyTorch's layout, Lua's braces).
core._tensor_mt.__tostring = format.tensor

-- Functional forms of the tensor methods bound by hand: lg.sum(t, 2), lg.matmul(a, b), ... (the
-- op table's rows, lg.exp(t), lg.add(1, t), ..., are registered by the core itself; lg.ops lists them)
local functional = {
  "clamp", "sum", "mean", "norm", "max", "min",
  "matmul", "index_select", "gather", "index_add", "scatter_add", "split", "chunk", "transpose", "permute", "narrow", "select",
  "unsqueeze", "squeeze", "flatten", "reshape", "clone", "detach", "numel",
  "masked_fill", "masked_select", "tril", "triu", "sort", "topk", "cumsum", "multinomial",
}
for _, name in ipairs(functional) do
  if lg[name] == nil then lg[name] = Tensor[name] end
end

-- Autograd: lg.autograd.grad/jvp/vjp/jacobian/hessian/hvp/gradcheck/detect_anomaly;
-- lg.no_grad(fn, ...) runs fn without recording and returns its results.
lg.autograd = autograd
lg.no_grad = autograd.no_grad
lg.enable_grad = autograd.enable_grad
lg._grad = nil
lg._detect_anomaly = nil

lg.nn = require "luagrad.nn"
lg.save, lg.load = require("luagrad.serialize").save, require("luagrad.serialize").load

-- Optimizers (fused C updates) and learning-rate schedules.
lg.optim = require "luagrad.optim"

-- Data: datasets, loaders, Fashion-MNIST.
lg.data = require "luagrad.data"
lg.datasets = require "luagrad.datasets"

-- Seeing what happens: SVG line charts and progress bars.
lg.plot = require "luagrad.plot"
lg.progress = require "luagrad.progress"
lg.cli = require "luagrad.cli"

return lg
