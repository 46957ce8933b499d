-- luagrad.nn.pooling: the pooling layers, PyTorch's, over the nn.functional forms.
--
--   MaxPool2d(kernel_size, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false,
--             return_indices = false})                 forward returns values[, 1-based indices]
--   AvgPool2d(kernel_size, {stride = kernel_size, padding = 0, ceil_mode = false,
--             count_include_pad = true, divisor_override})
--   MaxPool1d, AvgPool1d                                the same over (N, C, L) (no divisor_override)
--   AdaptiveAvgPool2d(output_size)                      a number or {h, w}
--
-- Sizes are numbers or tables of one number per spatial dimension, kept as given (so the layer
-- prints as PyTorch's does); the options may also come as one table with kernel_size in it.
-- Input is batched (N, C, ...) or unbatched (C, ...).
local core = require "luagrad.core"
local errors = require "luagrad.errors"
local Module = require("luagrad.nn.module").Module
local F = require "luagrad.nn.functional"

local tuple, tuple_str = F._tuple, F._tuple_str

---@class luagrad.nn.MaxPoolOptions
---@field stride? integer|integer[] (default kernel_size)
---@field padding? integer|integer[] at most half the kernel (default 0)
---@field dilation? integer|integer[] (default 1)
---@field ceil_mode? boolean round the output size up (default false)
---@field return_indices? boolean forward also returns the 1-based positions of the maxima (default false)

---@class luagrad.nn.AvgPoolOptions
---@field stride? integer|integer[] (default kernel_size)
---@field padding? integer|integer[] at most half the kernel (default 0)
---@field ceil_mode? boolean round the output size up (default false)
---@field count_include_pad? boolean count the zero padding in the divisor (default true)
---@field divisor_override? integer divide by this instead (AvgPool2d only)

local function fmt(v) return type(v) == "table" and tuple_str(v) or tostring(v) end

-- the class's name and spatial dimensions
local function class_of(self)
  local cls = getmetatable(self)
  return cls.__name, cls.dims
end

-- (kernel_size, opts) or ({kernel_size = ..., ...}) -> the options with kernel_size among them
local function read_options(name, kernel_size, opts, allowed)
  local o
  if type(kernel_size) == "table" and kernel_size[1] == nil and opts == nil then
    o = errors.options(name, kernel_size, allowed)
  else
    local given = errors.options(name, opts, allowed)
    if given.kernel_size ~= nil then errors.raisef("%s: kernel_size is given twice", name) end
    o = { kernel_size = kernel_size }
    for k, v in pairs(given) do o[k] = v end
  end
  if o.kernel_size == nil then errors.raisef("%s: kernel_size is needed", name) end
  for _, key in ipairs({ "ceil_mode", "return_indices", "count_include_pad" }) do
    errors.check(name, key, o[key], "boolean?")
  end
  return o
end

local function check_input(name, x)
  if not core.is_tensor(x) then errors.raisef("%s: expected a tensor input, got %s", name, type(x)) end
end

---The max-pooling layers' base class (not exported): MaxPool1d (dims 1) and MaxPool2d (dims 2).
---@class luagrad.nn.MaxPoolNd: luagrad.nn.Module
---@field kernel_size integer|integer[]
---@field stride integer|integer[]
---@field padding integer|integer[]
---@field dilation integer|integer[]
---@field ceil_mode boolean
---@field return_indices boolean
---@overload fun(x: luagrad.Tensor): luagrad.Tensor, luagrad.Tensor?
local MaxPoolNd = Module:extend("MaxPoolNd")

---@param kernel_size integer|integer[]|table the window, or every option in one table
---@param opts? luagrad.nn.MaxPoolOptions
function MaxPoolNd:init(kernel_size, opts)
  local name, n = class_of(self)
  local o = read_options(name, kernel_size, opts,
    { "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices" })
  tuple(name, "kernel_size", o.kernel_size, n, nil, 1)
  if o.stride ~= nil then tuple(name, "stride", o.stride, n, nil, 1) end
  tuple(name, "padding", o.padding, n, 0, 0)
  tuple(name, "dilation", o.dilation, n, 1, 1)
  self.kernel_size = o.kernel_size
  self.stride = o.stride == nil and o.kernel_size or o.stride
  self.padding = o.padding == nil and 0 or o.padding
  self.dilation = o.dilation == nil and 1 or o.dilation
  self.ceil_mode = o.ceil_mode == true
  self.return_indices = o.return_indices == true
end

---@param x luagrad.Tensor (N, C, ...) or (C, ...)
---@return luagrad.Tensor values
---@return luagrad.Tensor|nil indices with return_indices: 1-based positions in each input plane
function MaxPoolNd:forward(x)
  local name, n = class_of(self)
  check_input(name, x)
  local y, idx = F._max_pool(name, n, x, tuple(name, "kernel_size", self.kernel_size, n),
    tuple(name, "stride", self.stride, n), tuple(name, "padding", self.padding, n),
    tuple(name, "dilation", self.dilation, n), self.ceil_mode)
  if self.return_indices then return y, idx end
  return y
end

---"kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=false", as PyTorch.
---@return string
function MaxPoolNd:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", fmt(self.kernel_size),
    fmt(self.stride), fmt(self.padding), fmt(self.dilation), tostring(self.ceil_mode))
end

---The average-pooling layers' base class (not exported): AvgPool1d and AvgPool2d.
---@class luagrad.nn.AvgPoolNd: luagrad.nn.Module
---@field kernel_size integer|integer[]
---@field stride integer|integer[]
---@field padding integer|integer[]
---@field ceil_mode boolean
---@field count_include_pad boolean
---@field divisor_override integer|nil
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local AvgPoolNd = Module:extend("AvgPoolNd")

---@param kernel_size integer|integer[]|table the window, or every option in one table
---@param opts? luagrad.nn.AvgPoolOptions
function AvgPoolNd:init(kernel_size, opts)
  local name, n = class_of(self)
  local allowed = { "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad" }
  if n == 2 then allowed[#allowed + 1] = "divisor_override" end
  local o = read_options(name, kernel_size, opts, allowed)
  tuple(name, "kernel_size", o.kernel_size, n, nil, 1)
  if o.stride ~= nil then tuple(name, "stride", o.stride, n, nil, 1) end
  tuple(name, "padding", o.padding, n, 0, 0)
  local div = o.divisor_override
  if div ~= nil and (math.type(div) ~= "integer" or div < 1) then
    errors.raisef("%s: divisor_override must be a positive integer, got %s", name, tostring(div))
  end
  self.kernel_size = o.kernel_size
  self.stride = o.stride == nil and o.kernel_size or o.stride
  self.padding = o.padding == nil and 0 or o.padding
  self.ceil_mode = o.ceil_mode == true
  self.count_include_pad = o.count_include_pad ~= false
  self.divisor_override = div
end

---@param x luagrad.Tensor (N, C, ...) or (C, ...)
---@return luagrad.Tensor
function AvgPoolNd:forward(x)
  local name, n = class_of(self)
  check_input(name, x)
  return F._avg_pool(name, n, x, tuple(name, "kernel_size", self.kernel_size, n), tuple(name, "stride", self.stride, n),
    tuple(name, "padding", self.padding, n), self.ceil_mode, self.count_include_pad, self.divisor_override)
end

---"kernel_size=2, stride=2, padding=0", as PyTorch.
---@return string
function AvgPoolNd:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s", fmt(self.kernel_size), fmt(self.stride),
    fmt(self.padding))
end

---MaxPool2d(kernel_size, opts): max over windows of (N, C, H, W) or (C, H, W) input.
---@class luagrad.nn.MaxPool2d: luagrad.nn.MaxPoolNd
local MaxPool2d = MaxPoolNd:extend("MaxPool2d")
MaxPool2d.dims = 2
---MaxPool1d(kernel_size, opts): max over windows of (N, C, L) or (C, L) input.
---@class luagrad.nn.MaxPool1d: luagrad.nn.MaxPoolNd
local MaxPool1d = MaxPoolNd:extend("MaxPool1d")
MaxPool1d.dims = 1
---AvgPool2d(kernel_size, opts): the mean over windows of (N, C, H, W) or (C, H, W) input.
---@class luagrad.nn.AvgPool2d: luagrad.nn.AvgPoolNd
local AvgPool2d = AvgPoolNd:extend("AvgPool2d")
AvgPool2d.dims = 2
---AvgPool1d(kernel_size, opts): the mean over windows of (N, C, L) or (C, L) input.
---@class luagrad.nn.AvgPool1d: luagrad.nn.AvgPoolNd
local AvgPool1d = AvgPoolNd:extend("AvgPool1d")
AvgPool1d.dims = 1

---AdaptiveAvgPool2d(output_size): the mean over the windows that split the input into
---output_size (a number or {h, w}) cells.
---@class luagrad.nn.AdaptiveAvgPool2d: luagrad.nn.Module
---@field output_size integer|integer[]
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")

---@param output_size integer|integer[]|{output_size: integer|integer[]}
function AdaptiveAvgPool2d:init(output_size)
  if type(output_size) == "table" and output_size[1] == nil then
    output_size = errors.options("AdaptiveAvgPool2d", output_size, { "output_size" }).output_size
  end
  tuple("AdaptiveAvgPool2d", "output_size", output_size, 2, nil, 1)
  self.output_size = output_size
end

---@param x luagrad.Tensor (N, C, H, W) or (C, H, W)
---@return luagrad.Tensor
function AdaptiveAvgPool2d:forward(x)
  check_input("AdaptiveAvgPool2d", x)
  return F._adaptive_avg_pool("AdaptiveAvgPool2d", x, tuple("AdaptiveAvgPool2d", "output_size", self.output_size, 2))
end

---"output_size=1" or "output_size={3,2}".
---@return string
function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. fmt(self.output_size) end

return {
  MaxPool1d = MaxPool1d, MaxPool2d = MaxPool2d, AvgPool1d = AvgPool1d, AvgPool2d = AvgPool2d,
  AdaptiveAvgPool2d = AdaptiveAvgPool2d,
}
