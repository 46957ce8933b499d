-- luagrad.nn.normalization: BatchNorm1d, BatchNorm2d, LayerNorm and GroupNorm over the fused C kernels.
--
-- BatchNorm1d(C, {eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true, dtype})
--   input (N, C) or (N, C, L); BatchNorm2d the same over (N, C, H, W).
--   Parameters weight (ones) and bias (zeros) when affine; buffers
--   running_mean (zeros), running_var (ones) and num_batches_tracked (an int64 0-d tensor)
--   when tracking. In training (or without tracking) it normalizes with the batch statistics
--   (biased variance; core._batch_norm, a hand-derived backward); with tracking it also
--   counts the batch and, under no_grad, updates
--     running_mean = (1 - f) running_mean + f mean,
--     running_var  = (1 - f) running_var  + f var * M / (M - 1)   (unbiased, M = N * L)
--   with f = momentum, or f = 1 / num_batches_tracked when momentum = false (a cumulative
--   average). In eval with tracking: (x - running_mean) / sqrt(running_var + eps) * w + b.
--
-- LayerNorm(normalized_shape, {eps = 1e-5, elementwise_affine = true, dtype})
--   normalizes over the trailing dimensions normalized_shape (a number or a table of sizes)
--   with weight (ones) and bias (zeros) of that shape; core._layer_norm.
--
-- GroupNorm(num_groups, num_channels, {eps = 1e-5, affine = true, dtype})
--   input (N, C, *): each sample's num_groups groups of C / num_groups consecutive channels
--   normalized over their channels and positions (each group a row of core._layer_norm), then
--   weight (ones) and bias (zeros), one per channel.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"
local F = require "luagrad.nn.functional"

local Module, Parameter = base.Module, base.Parameter
local shape_str = F._shape_str

-- a layer's dtype option: float32 or float64 (the default dtype when nil)
local function float_dtype(fname, dtype)
  if dtype == nil then return core.get_default_dtype() end
  if dtype ~= "float32" and dtype ~= "float64" then
    errors.raisef('%s: dtype must be "float32" or "float64", got %s', fname, tostring(dtype))
  end
  return dtype
end

---@class luagrad.nn.BatchNormOptions
---@field eps? number added to the variance (default 1e-5)
---@field momentum? number|false the running statistics' update factor, false for a cumulative average (default 0.1)
---@field affine? boolean learn weight and bias (default true)
---@field track_running_stats? boolean keep running_mean and running_var for eval (default true)
---@field dtype? "float32"|"float64" (default lg.get_default_dtype())

---The batch-normalization layers' base class (not exported); BatchNorm1d and BatchNorm2d differ
---only in the input ranks they accept (_check_input_dim).
---@class luagrad.nn.BatchNormNd: luagrad.nn.Module
---@field num_features integer
---@field eps number
---@field momentum number|false
---@field affine boolean
---@field track_running_stats boolean
---@field weight luagrad.Tensor|nil (C), when affine
---@field bias luagrad.Tensor|nil (C), when affine
---@field running_mean luagrad.Tensor|nil (C), when tracking
---@field running_var luagrad.Tensor|nil (C), when tracking
---@field num_batches_tracked luagrad.Tensor|nil an int64 0-d tensor, when tracking
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local BatchNormNd = Module:extend("BatchNormNd")

---@param num_features integer C, the channels (dimension 2) of the input
---@param opts? luagrad.nn.BatchNormOptions
function BatchNormNd:init(num_features, opts)
  local name = getmetatable(self).__name
  if math.type(num_features) ~= "integer" or num_features < 1 then
    errors.raisef("%s: num_features must be a positive integer, got %s", name, tostring(num_features))
  end
  local o = errors.options(name, opts, { "eps", "momentum", "affine", "track_running_stats", "dtype" })
  local momentum = o.momentum
  if momentum == nil then momentum = 0.1 end
  if momentum ~= false and type(momentum) ~= "number" then
    errors.raisef("%s: momentum must be a number, or false for a cumulative average, got %s", name, type(momentum))
  end
  self.num_features = num_features
  self.eps = o.eps or 1e-5
  self.momentum = momentum
  self.affine = o.affine ~= false
  self.track_running_stats = o.track_running_stats ~= false
  local dt = { dtype = float_dtype(name, o.dtype) }
  if self.affine then
    self.weight = Parameter(errors.call_as(name, core.ones, { num_features }, dt))
    self.bias = Parameter(errors.call_as(name, core.zeros, { num_features }, dt))
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", errors.call_as(name, core.zeros, { num_features }, dt))
    self:register_buffer("running_var", errors.call_as(name, core.ones, { num_features }, dt))
    self:register_buffer("num_batches_tracked", core.zeros({}, { dtype = "int64" }))
  end
end

---Zeros the running statistics and the batch count.
function BatchNormNd:reset_running_stats()
  if not self.track_running_stats then return end
  autograd.no_grad(function()
    self.running_mean:zero_()
    self.running_var:fill_(1)
    self.num_batches_tracked:zero_()
  end)
end

---@param x luagrad.Tensor (N, C) or (N, C, L) for BatchNorm1d, (N, C, H, W) for BatchNorm2d
---@return luagrad.Tensor
function BatchNormNd:forward(x)
  local name = getmetatable(self).__name
  if not core.is_tensor(x) then errors.raisef("%s: expected a tensor input, got %s", name, type(x)) end
  self:_check_input_dim(x)
  if x:size(2) ~= self.num_features then
    errors.raisef("%s: expected %d channels in dimension 2, got input of shape %s", name, self.num_features,
      shape_str(x))
  end
  local batch_stats = self.training or not self.track_running_stats
  if batch_stats and x:numel() // x:size(2) <= 1 then
    errors.raisef("%s: expected more than 1 value per channel when training, got input of shape %s", name,
      shape_str(x))
  end
  if self.training and self.track_running_stats then -- count the batch, update the running statistics
    local nbt = self.num_batches_tracked
    nbt:add_(1) -- an int64 buffer: nothing for autograd to record
    local factor = self.momentum == false and 1 / nbt:item() or self.momentum
    return F._batch_norm_train(x, self.running_mean, self.running_var, self.weight, self.bias, factor, self.eps)
  end
  if batch_stats then return F._batch_norm_train(x, nil, nil, self.weight, self.bias, 0, self.eps) end
  return F.batch_norm(x, self.running_mean, self.running_var, {
    weight = self.weight, bias = self.bias, training = false, eps = self.eps,
  })
end

function BatchNormNd:extra_repr()
  return string.format("%d, eps=%g, momentum=%s, affine=%s, track_running_stats=%s", self.num_features, self.eps,
    self.momentum == false and "false" or string.format("%g", self.momentum), tostring(self.affine),
    tostring(self.track_running_stats))
end

---Batch normalization over (N, C) or (N, C, L) input.
---@class luagrad.nn.BatchNorm1d: luagrad.nn.BatchNormNd
local BatchNorm1d = BatchNormNd:extend("BatchNorm1d")
function BatchNorm1d._check_input_dim(_, x)
  if x:dim() ~= 2 and x:dim() ~= 3 then
    errors.raisef("BatchNorm1d: expected 2-d (N, C) or 3-d (N, C, L) input, got shape %s", shape_str(x))
  end
end

---Batch normalization over (N, C, H, W) input.
---@class luagrad.nn.BatchNorm2d: luagrad.nn.BatchNormNd
local BatchNorm2d = BatchNormNd:extend("BatchNorm2d")
function BatchNorm2d._check_input_dim(_, x)
  if x:dim() ~= 4 then errors.raisef("BatchNorm2d: expected 4-d (N, C, H, W) input, got shape %s", shape_str(x)) end
end

---@class luagrad.nn.LayerNormOptions
---@field eps? number added to the variance (default 1e-5)
---@field elementwise_affine? boolean learn weight and bias (default true)
---@field dtype? "float32"|"float64" (default lg.get_default_dtype())

---@class luagrad.nn.LayerNorm: luagrad.nn.Module
---@field normalized_shape integer[]
---@field eps number
---@field elementwise_affine boolean
---@field weight luagrad.Tensor|nil of normalized_shape, when elementwise_affine
---@field bias luagrad.Tensor|nil of normalized_shape, when elementwise_affine
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local LayerNorm = Module:extend("LayerNorm")

---@param normalized_shape integer|integer[] the trailing dimensions to normalize over
---@param opts? luagrad.nn.LayerNormOptions
function LayerNorm:init(normalized_shape, opts)
  local ns = type(normalized_shape) == "number" and { normalized_shape } or normalized_shape
  local ok = type(ns) == "table" and #ns > 0
  if ok then
    local copy = {}
    for i, d in ipairs(ns) do
      if math.type(d) ~= "integer" or d < 1 then ok = false end
      copy[i] = d
    end
    ns = copy
  end
  if not ok then
    errors.raise("LayerNorm: normalized_shape must be a positive integer or a table of them, got " .. tostring(normalized_shape))
  end
  local o = errors.options("LayerNorm", opts, { "eps", "elementwise_affine", "dtype" })
  self.normalized_shape = ns
  self.eps = o.eps or 1e-5
  self.elementwise_affine = o.elementwise_affine ~= false
  local dt = { dtype = float_dtype("LayerNorm", o.dtype) }
  if self.elementwise_affine then
    self.weight = Parameter(errors.call_as("LayerNorm", core.ones, ns, dt))
    self.bias = Parameter(errors.call_as("LayerNorm", core.zeros, ns, dt))
  end
end

---@param x luagrad.Tensor (..., normalized_shape)
---@return luagrad.Tensor
function LayerNorm:forward(x)
  if not core.is_tensor(x) then errors.raise("LayerNorm: expected a tensor input, got " .. type(x)) end
  local ns, nd = self.normalized_shape, x:dim()
  local fits = nd >= #ns
  for i = 1, #ns do
    if fits and x:size(nd - #ns + i) ~= ns[i] then fits = false end
  end
  if not fits then
    errors.raisef("LayerNorm: expected input with trailing dimensions {%s}, got shape %s",
      table.concat(ns, ","), shape_str(x))
  end
  return F.layer_norm(x, ns, { weight = self.weight, bias = self.bias, eps = self.eps })
end

function LayerNorm:extra_repr()
  return string.format("{%s}, eps=%g, elementwise_affine=%s", table.concat(self.normalized_shape, ","), self.eps,
    tostring(self.elementwise_affine))
end

---@class luagrad.nn.GroupNormOptions
---@field eps? number added to the variance (default 1e-5)
---@field affine? boolean learn a weight and a bias per channel (default true)
---@field dtype? "float32"|"float64" (default lg.get_default_dtype())

---@class luagrad.nn.GroupNorm: luagrad.nn.Module
---@field num_groups integer
---@field num_channels integer
---@field eps number
---@field affine boolean
---@field weight luagrad.Tensor|nil (C), when affine
---@field bias luagrad.Tensor|nil (C), when affine
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local GroupNorm = Module:extend("GroupNorm")

---@param num_groups integer the number of groups the channels are split into
---@param num_channels integer C, the channels (dimension 2) of the input; a multiple of num_groups
---@param opts? luagrad.nn.GroupNormOptions
function GroupNorm:init(num_groups, num_channels, opts)
  for _, a in ipairs({ { "num_groups", num_groups }, { "num_channels", num_channels } }) do
    if math.type(a[2]) ~= "integer" or a[2] < 1 then
      errors.raisef("GroupNorm: %s must be a positive integer, got %s", a[1],
        type(a[2]) == "number" and tostring(a[2]) or errors.describe(a[2]))
    end
  end
  if num_channels % num_groups ~= 0 then
    errors.raisef("GroupNorm: num_channels = %d is not divisible by num_groups = %d", num_channels, num_groups)
  end
  local o = errors.options("GroupNorm", opts, { "eps", "affine", "dtype" })
  if o.eps ~= nil and (type(o.eps) ~= "number" or not (o.eps >= 0)) then
    errors.raisef("GroupNorm: eps must be a non-negative number, got %s", tostring(o.eps))
  end
  self.num_groups, self.num_channels = num_groups, num_channels
  self.eps = o.eps or 1e-5
  self.affine = o.affine ~= false
  local dt = { dtype = float_dtype("GroupNorm", o.dtype) }
  if self.affine then
    self.weight = Parameter(errors.call_as("GroupNorm", core.ones, num_channels, dt))
    self.bias = Parameter(errors.call_as("GroupNorm", core.zeros, num_channels, dt))
  end
end

---@param x luagrad.Tensor (N, C, *)
---@return luagrad.Tensor
function GroupNorm:forward(x)
  if not core.is_tensor(x) then errors.raise("GroupNorm: expected a tensor input, got " .. type(x)) end
  if x:dim() < 2 or x:size(2) ~= self.num_channels then
    errors.raisef("GroupNorm: expected input of shape (N, %d, *), got shape %s", self.num_channels, shape_str(x))
  end
  return F.group_norm(x, self.num_groups, { weight = self.weight, bias = self.bias, eps = self.eps })
end

function GroupNorm:extra_repr()
  return string.format("%d, %d, eps=%g, affine=%s", self.num_groups, self.num_channels, self.eps, tostring(self.affine))
end

return { BatchNorm1d = BatchNorm1d, BatchNorm2d = BatchNorm2d, LayerNorm = LayerNorm, GroupNorm = GroupNorm }
