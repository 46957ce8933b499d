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

-- t:masked_scatter(mask, source): t with the elements where mask is nonzero replaced, in
-- row-major order, by source's first elements. Composed of differentiable ops, so gradients
-- reach t (where the mask is zero) and source (its used elements):
--   masked_fill(t, mask, 0) flattened, + source's elements added at the selected positions.
local errors = require "luagrad.errors"
function Tensor.masked_scatter(t, mask, source)
  errors.check("masked_scatter", "self", t, "tensor")
  errors.check("masked_scatter", "mask", mask, "tensor")
  errors.check("masked_scatter", "source", source, "tensor")
  local n = t:numel()
  local pos = errors.call_as("masked_scatter", function()
    return core.arange(1, n + 1):reshape(t.shape):masked_select(mask)
  end)
  local count = pos:numel()
  if source:numel() < count then
    errors.raisef("masked_scatter: the mask selects %d elements, but source has %d", count, source:numel())
  end
  local src = source:reshape(-1):narrow(1, 1, count):to(t.dtype)
  return t:masked_fill(mask, 0):reshape(n):index_add(1, pos, src):reshape(t.shape)
end

-- t:masked_scatter_(mask, source): the same written into t (recorded as other in-place writes)
function Tensor.masked_scatter_(t, mask, source)
  errors.check("masked_scatter_", "self", t, "tensor")
  -- under autograd the ops read a copy: masked_fill saves its input, which the write changes
  -- (a mask that requires grad records too; source is copied as well: it may be t or a view of it.
  -- Reading t itself there made t's new node hold a node that holds t: a cycle nothing freed.)
  local function needs(v) return core.is_tensor(v) and v.requires_grad end
  local recorded = core.is_grad_enabled() and (needs(t) or needs(mask) or needs(source))
  if recorded and core.is_tensor(source) then source = source:clone() end
  local r = errors.call_as("masked_scatter_", Tensor.masked_scatter, recorded and t:clone() or t, mask, source)
  return errors.call_as("masked_scatter_", t.copy_, t, r)
end

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
lg.save_npy, lg.load_npy, lg.load_npz = require("luagrad.npy").save_npy, require("luagrad.npy").load_npy,
  require("luagrad.npy").load_npz

-- Optimizers (fused C updates) and learning-rate schedules.
lg.optim = require "luagrad.optim"

-- Data: datasets, loaders, Fashion-MNIST.
lg.data = require "luagrad.data"
lg.datasets = require "luagrad.datasets"

-- Seeing what happens: SVG line charts and progress bars.
lg.plot = require "luagrad.plot"
lg.progress = require "luagrad.progress"
lg.cli = require "luagrad.cli"

-- Data-parallel training over MPI; the MPI module itself loads on lg.distributed.init().
lg.distributed = require "luagrad.distributed"

return lg
