-- luagrad.nn.conv: Conv1d and Conv2d, PyTorch's layers over F.conv1d / F.conv2d.
--
--   Conv2d(in_channels, out_channels, kernel_size, {stride = 1, padding = 0, dilation = 1,
--          groups = 1, bias = true, padding_mode = "zeros", dtype})
--   Conv1d(...)  the same over (N, C, L)
--
-- kernel_size, stride, padding and dilation are numbers or tables of one number per spatial
-- dimension ({h, w}); padding may also be "same" (the output keeps the input's size; stride 1
-- only) or "valid" (no padding). padding_mode "zeros" pads with zeros; "reflect", "replicate"
-- and "circular" pad through F.pad first, as PyTorch does. weight (out, in / groups, k...) starts as
-- kaiming_uniform_ with a = sqrt(5), bias (out) as U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
-- fan_in = in / groups * prod(k): PyTorch's reset_parameters. Input is batched (N, C, ...) or
-- unbatched (C, ...).
local core = require "luagrad.core"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"
local init = require "luagrad.nn.initializers"
local F = require "luagrad.nn.functional"

local Parameter = base.Parameter
local tuple, tuple_str = F._tuple, F._tuple_str

---@class luagrad.nn.ConvOptions
---@field stride? integer|integer[] (default 1)
---@field padding? integer|integer[]|"same"|"valid" (default 0)
---@field dilation? integer|integer[] (default 1)
---@field groups? integer in_channels and out_channels must be divisible by it (default 1)
---@field bias? boolean whether to learn an additive bias (default true)
---@field padding_mode? "zeros"|"reflect"|"replicate"|"circular" (default "zeros")
---@field dtype? "float32"|"float64" the parameters' dtype (default lg.get_default_dtype())

---The convolution layers' base class (not exported): Conv1d (n = 1) and Conv2d (n = 2).
---@class luagrad.nn.ConvNd: luagrad.nn.Module
---@field in_channels integer
---@field out_channels integer
---@field kernel_size integer[]
---@field stride integer[]
---@field padding integer[]|"same"|"valid"
---@field dilation integer[]
---@field groups integer
---@field padding_mode "zeros"|"reflect"|"replicate"|"circular"
---@field weight luagrad.Tensor (out_channels, in_channels / groups, kernel_size...)
---@field bias luagrad.Tensor|nil (out_channels), nil with {bias = false}
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local ConvNd = base.Module:extend("ConvNd")

local PADDING_MODES = { zeros = true, reflect = true, replicate = true, circular = true }

local function check_channels(name, what, v)
  if math.type(v) ~= "integer" or v < 1 then
    errors.raisef("%s: %s must be a positive integer, got %s", name, what, tostring(v))
  end
end

---Conv1d / Conv2d(in_channels, out_channels, kernel_size, opts); the class's `dims` is 1 or 2.
---@param in_channels integer
---@param out_channels integer
---@param kernel_size integer|integer[]
---@param opts? luagrad.nn.ConvOptions
function ConvNd:init(in_channels, out_channels, kernel_size, opts)
  local name, n = getmetatable(self).__name, getmetatable(self).dims
  check_channels(name, "in_channels", in_channels)
  check_channels(name, "out_channels", out_channels)
  local o = errors.options(name, opts, { "stride", "padding", "dilation", "groups", "bias", "padding_mode", "dtype" })
  local groups = o.groups == nil and 1 or o.groups
  if math.type(groups) ~= "integer" or groups < 1 then
    errors.raisef("%s: groups must be a positive integer, got %s", name, tostring(groups))
  end
  if in_channels % groups ~= 0 or out_channels % groups ~= 0 then
    errors.raisef("%s: in_channels (%d) and out_channels (%d) must be divisible by groups (%d)", name, in_channels,
      out_channels, groups)
  end
  local k = tuple(name, "kernel_size", kernel_size, n, nil, 1)
  local stride = tuple(name, "stride", o.stride, n, 1, 1)
  local dilation = tuple(name, "dilation", o.dilation, n, 1, 1)
  local padding = o.padding
  if padding == "same" then
    for d = 1, n do
      if stride[d] ~= 1 then
        errors.raisef('%s: padding = "same" needs stride 1, got stride %s', name, tuple_str(stride))
      end
    end
  elseif padding ~= "valid" then
    if type(padding) == "string" then
      errors.raisef('%s: padding must be a number, a table of %d, "same" or "valid", got "%s"', name, n, padding)
    end
    padding = tuple(name, "padding", padding, n, 0, 0)
  end
  local mode = o.padding_mode == nil and "zeros" or o.padding_mode
  if not PADDING_MODES[mode] then
    errors.raisef('%s: padding_mode must be "zeros", "reflect", "replicate" or "circular", got %s', name, tostring(mode))
  end
  if o.bias ~= nil and type(o.bias) ~= "boolean" then
    errors.raisef("%s: bias must be a boolean, got %s", name, type(o.bias))
  end
  self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
  self.stride, self.padding, self.dilation, self.groups, self.padding_mode = stride, padding, dilation, groups, mode
  -- F.pad's amounts for the padding modes other than zeros, last dimension first (PyTorch's
  -- _reversed_padding_repeated_twice); "same" splits an odd total with the extra element after
  local pads = {}
  for d = n, 1, -1 do
    local before, after
    if padding == "same" then
      local total = dilation[d] * (k[d] - 1)
      before, after = total // 2, total - total // 2
    elseif padding == "valid" then
      before, after = 0, 0
    else
      before, after = padding[d], padding[d]
    end
    pads[2 * (n - d) + 1], pads[2 * (n - d) + 2] = before, after
  end
  self._reversed_padding_repeated_twice = pads
  local wshape = { out_channels, in_channels // groups }
  for d = 1, n do wshape[2 + d] = k[d] end
  local dtype = o.dtype or core.get_default_dtype()
  self.weight = Parameter(core.empty(wshape, { dtype = dtype }))
  if o.bias ~= false then self.bias = Parameter(core.empty({ out_channels }, { dtype = dtype })) end
  self:reset_parameters()
end

---Draws weight and bias again from PyTorch's default initialization.
function ConvNd:reset_parameters()
  init.kaiming_uniform_(self.weight, { a = math.sqrt(5) })
  if self.bias ~= nil then
    local fan_in = init.calculate_fan_in_and_fan_out(self.weight)
    local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
    init.uniform_(self.bias, -bound, bound)
  end
end

---@param x luagrad.Tensor (N, C, ...) or (C, ...)
---@return luagrad.Tensor
function ConvNd:forward(x)
  local cls = getmetatable(self)
  local name, n = cls.__name, cls.dims
  if not core.is_tensor(x) then errors.raisef("%s: expected a tensor input, got %s", name, type(x)) end
  local fields, P = rawget(self, "_fields"), rawget(self, "_parameters").values
  local padding = fields.padding
  if fields.padding_mode ~= "zeros" then
    x = F.pad(x, fields._reversed_padding_repeated_twice, { mode = fields.padding_mode })
    padding = "valid"
  end
  return F._conv(name, n, x, P.weight, P.bias, fields.stride, padding, fields.dilation, fields.groups)
end

---PyTorch's extra_repr: the sizes, then the settings that differ from their defaults.
---@return string
function ConvNd:extra_repr()
  local n = getmetatable(self).dims
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
    tuple_str(self.kernel_size), tuple_str(self.stride))
  local function all(t, v)
    if type(t) == "string" then return false end
    for d = 1, n do
      if t[d] ~= v then return false end
    end
    return true
  end
  if not all(self.padding, 0) then s = s .. ", padding=" .. tuple_str(self.padding) end
  if not all(self.dilation, 1) then s = s .. ", dilation=" .. tuple_str(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=false" end
  if self.padding_mode ~= "zeros" then s = s .. ', padding_mode="' .. self.padding_mode .. '"' end
  return s
end

---Conv2d(in_channels, out_channels, kernel_size, opts): 2-d convolution over (N, C, H, W) or
---(C, H, W) input.
---@class luagrad.nn.Conv2d: luagrad.nn.ConvNd
local Conv2d = ConvNd:extend("Conv2d")
Conv2d.dims = 2

---Conv1d(in_channels, out_channels, kernel_size, opts): 1-d convolution over (N, C, L) or (C, L) input.
---@class luagrad.nn.Conv1d: luagrad.nn.ConvNd
local Conv1d = ConvNd:extend("Conv1d")
Conv1d.dims = 1

return { Conv1d = Conv1d, Conv2d = Conv2d }
