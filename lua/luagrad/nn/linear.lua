-- luagrad.nn.linear: Linear(in_features, out_features, {bias = true, dtype = default}).
--
-- y = x W^T + b for x of shape (.., in_features): (N, in), (in) and batched (B, N, in).
-- weight (out, in) starts as kaiming_uniform_ with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)),
-- and bias (out) as U(-1/sqrt(in), 1/sqrt(in)): PyTorch's default initialization.
local core = require "luagrad.core"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"
local init = require "luagrad.nn.initializers"
local F = require "luagrad.nn.functional"

local Parameter = base.Parameter

---@class luagrad.nn.LinearOptions
---@field bias? boolean whether to learn an additive bias (default true)
---@field dtype? "float32"|"float64" the parameters' dtype (default lg.get_default_dtype())

---y = x W^T + b over the last dimension of x.
---@class luagrad.nn.Linear: luagrad.nn.Module
---@field in_features integer
---@field out_features integer
---@field weight luagrad.Tensor (out_features, in_features)
---@field bias luagrad.Tensor|nil (out_features), nil with {bias = false}
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Linear = base.Module:extend("Linear")

local function check_size(v, what)
  if math.type(v) ~= "integer" or v < 0 then
    errors.raisef("Linear: %s must be a non-negative integer, got %s", what, tostring(v))
  end
end

---@param in_features integer
---@param out_features integer
---@param opts? luagrad.nn.LinearOptions
function Linear:init(in_features, out_features, opts)
  check_size(in_features, "in_features")
  check_size(out_features, "out_features")
  local o = errors.options("Linear", opts, { "bias", "dtype" })
  self.in_features, self.out_features = in_features, out_features
  local dtype = o.dtype or core.get_default_dtype()
  if dtype ~= "float32" and dtype ~= "float64" then
    errors.raisef('Linear: dtype must be "float32" or "float64", got %s', tostring(dtype))
  end
  self.weight = Parameter(errors.call_as("Linear", core.empty, { out_features, in_features }, { dtype = dtype }))
  if o.bias ~= false then
    self.bias = Parameter(errors.call_as("Linear", core.empty, { out_features }, { dtype = dtype }))
  end
  self:reset_parameters()
end

---Draws weight and bias again from PyTorch's default initialization.
function Linear:reset_parameters()
  init.kaiming_uniform_(self.weight, { a = math.sqrt(5) })
  if self.bias ~= nil then
    local bound = self.in_features > 0 and 1 / math.sqrt(self.in_features) or 0
    init.uniform_(self.bias, -bound, bound)
  end
end

---@param x luagrad.Tensor (..., in_features)
---@return luagrad.Tensor y (..., out_features)
function Linear:forward(x)
  if not core.is_tensor(x) then errors.raise("Linear: expected a tensor input, got " .. type(x)) end
  local fields, P = rawget(self, "_fields"), rawget(self, "_parameters").values
  if x:size(-1) ~= fields.in_features or x:dim() == 0 then
    errors.raisef("Linear: expected input with %d features in its last dimension, got shape %s",
      fields.in_features, F._shape_str(x))
  end
  return core._linear(x, P.weight, P.bias) -- the fused op (F.linear without its argument checks)
end

function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
    tostring(self.bias ~= nil))
end

return { Linear = Linear }
