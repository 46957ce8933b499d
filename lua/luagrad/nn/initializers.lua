-- luagrad.nn.initializers, exposed as nn.init: PyTorch's torch.nn.init, with its gain and fan
-- rules. Every function fills its tensor in place under no_grad (so it works on parameters)
-- and returns it.
--
-- Fans: a tensor of shape (out, in, k1, k2, ...) has receptive field r = k1 * k2 * ...,
-- fan_in = in * r and fan_out = out * r (a Linear weight (out, in): fan_in = in).
--
--   kaiming_uniform_(t, {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"})
--       U(-bound, bound), bound = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)
--   kaiming_normal_(t, {same options})        N(0, std^2), std = gain / sqrt(fan)
--   xavier_uniform_(t, {gain = 1})            U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))
--   xavier_normal_(t, {gain = 1})             N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))
--   uniform_(t, a = 0, b = 1), normal_(t, mean = 0, std = 1), constant_(t, v), zeros_, ones_
--   calculate_gain(nonlinearity, param)       linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2),
--                                             leaky_relu sqrt(2 / (1 + slope^2)) (slope 0.01
--                                             unless given), selu 3/4
-- Options may also be given plainly: kaiming_uniform_(t, math.sqrt(5)) is {a = math.sqrt(5)},
-- xavier_uniform_(t, 2) is {gain = 2}.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"

---@class luagrad.nn.init.KaimingOptions
---@field a? number the negative slope of the rectifier after this layer (default 0)
---@field mode? "fan_in"|"fan_out" which fan keeps the variance (default "fan_in")
---@field nonlinearity? string the name calculate_gain takes (default "leaky_relu")

---nn.init; the four below are made by std_pair. Each takes its options as a table or plainly
---(kaiming's a, xavier's gain) and returns t.
---@class luagrad.nn.init
---@field kaiming_uniform_ fun(t: luagrad.Tensor, opts?: number|luagrad.nn.init.KaimingOptions): luagrad.Tensor
---@field kaiming_normal_ fun(t: luagrad.Tensor, opts?: number|luagrad.nn.init.KaimingOptions): luagrad.Tensor
---@field xavier_uniform_ fun(t: luagrad.Tensor, opts?: number|{gain?: number}): luagrad.Tensor
---@field xavier_normal_ fun(t: luagrad.Tensor, opts?: number|{gain?: number}): luagrad.Tensor
local init = {}

local function check_tensor(t, fname)
  if not core.is_tensor(t) then errors.raisef("nn.init.%s: expected a tensor, got %s", fname, type(t)) end
end

local function check_float(t, fname)
  check_tensor(t, fname)
  if t.dtype ~= "float32" and t.dtype ~= "float64" then
    errors.raisef("nn.init.%s: expected a float32 or float64 tensor, got %s", fname, t.dtype)
  end
end

-- fn(t, ...) under no_grad; its errors name nn.init.<fname> ("fill_: value inf does not fit int64"
-- from constant_ reads "nn.init.constant_: value inf ...")
local function in_place(fname, t, fn, ...)
  errors.call_as("nn.init." .. fname, autograd.no_grad, fn, t, ...)
  return t
end

-- fan_in, fan_out for the public function fname
local function fans(t, fname)
  local d = t:dim()
  if d < 2 then
    errors.raisef("nn.init.%s: fan in and fan out cannot be computed for a tensor with fewer than 2 dimensions " ..
      "(shape {%s})", fname, table.concat(t.shape, ","))
  end
  local receptive = 1
  for i = 3, d do receptive = receptive * t:size(i) end
  return t:size(2) * receptive, t:size(1) * receptive
end

---fan_in, fan_out of a tensor with at least 2 dimensions (PyTorch's rules above).
---@param t luagrad.Tensor
---@return integer fan_in
---@return integer fan_out
function init.calculate_fan_in_and_fan_out(t)
  check_tensor(t, "calculate_fan_in_and_fan_out")
  return fans(t, "calculate_fan_in_and_fan_out")
end
init._calculate_fan_in_and_fan_out = init.calculate_fan_in_and_fan_out

local LINEAR = {
  linear = true, conv1d = true, conv2d = true, conv3d = true, sigmoid = true,
  conv_transpose1d = true, conv_transpose2d = true, conv_transpose3d = true,
}

---The recommended gain for a nonlinearity (see the top of this file).
---@param nonlinearity string "linear", "conv1d".., "sigmoid", "tanh", "relu", "leaky_relu" or "selu"
---@param param? number leaky_relu's negative slope (default 0.01)
---@return number
function init.calculate_gain(nonlinearity, param)
  if LINEAR[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "selu" then return 3 / 4 end
  if nonlinearity == "leaky_relu" then
    local slope = 0.01
    if param ~= nil then
      if type(param) ~= "number" then
        errors.raisef("nn.init.calculate_gain: negative_slope %s is not a valid number", tostring(param))
      end
      slope = param
    end
    return math.sqrt(2 / (1 + slope * slope))
  end
  errors.raisef("nn.init.calculate_gain: unsupported nonlinearity '%s'", tostring(nonlinearity))
end

local function options(opts, plain_key, fname, allowed)
  if opts == nil then return {} end
  if type(opts) == "number" then return { [plain_key] = opts } end
  if type(opts) ~= "table" then
    errors.raisef("nn.init.%s: options must be a table, got %s", fname, type(opts))
  end
  local names = {}
  for k in pairs(allowed) do names[#names + 1] = k end
  table.sort(names)
  return errors.options("nn.init." .. fname, opts, names)
end

local KAIMING = { a = true, mode = true, nonlinearity = true }

local function kaiming_std(t, opts, fname)
  local o = options(opts, "a", fname, KAIMING)
  local mode = o.mode or "fan_in"
  local fan_in, fan_out = fans(t, fname)
  local fan
  if mode == "fan_in" then
    fan = fan_in
  elseif mode == "fan_out" then
    fan = fan_out
  else
    errors.raisef('nn.init.%s: mode must be "fan_in" or "fan_out", got %s', fname, tostring(mode))
  end
  local gain = init.calculate_gain(o.nonlinearity or "leaky_relu", o.a or 0)
  return gain / math.sqrt(fan)
end

local function xavier_std(t, opts, fname)
  local o = options(opts, "gain", fname, { gain = true })
  local fan_in, fan_out = fans(t, fname)
  return (o.gain or 1) * math.sqrt(2 / (fan_in + fan_out))
end

-- init.<prefix>uniform_ and init.<prefix>normal_ from one standard deviation std(t, opts, fname):
-- U(-sqrt(3) std, sqrt(3) std) (the same variance) and N(0, std^2).
local function std_pair(prefix, std)
  local uname, nname = prefix .. "uniform_", prefix .. "normal_"
  init[uname] = function(t, opts)
    check_float(t, uname)
    if t:numel() == 0 then return t end
    local bound = math.sqrt(3) * std(t, opts, uname)
    return in_place(uname, t, t.uniform_, -bound, bound)
  end
  init[nname] = function(t, opts)
    check_float(t, nname)
    if t:numel() == 0 then return t end
    return in_place(nname, t, t.normal_, 0, std(t, opts, nname))
  end
end
std_pair("kaiming_", kaiming_std)
std_pair("xavier_", xavier_std)

---Fills t from U(a, b).
---@param t luagrad.Tensor
---@param a? number (default 0)
---@param b? number (default 1)
---@return luagrad.Tensor t
function init.uniform_(t, a, b)
  check_float(t, "uniform_")
  errors.check("nn.init.uniform_", "a", a, "number?")
  errors.check("nn.init.uniform_", "b", b, "number?")
  a, b = a or 0, b or 1
  if not (a <= b) then -- luacheck: ignore 581 (NaN fails too)
    errors.raisef("nn.init.uniform_: expected a <= b, got a = %g, b = %g", a, b)
  end
  return in_place("uniform_", t, t.uniform_, a, b)
end

---Fills t from N(mean, std^2).
---@param t luagrad.Tensor
---@param mean? number (default 0)
---@param std? number (default 1)
---@return luagrad.Tensor t
function init.normal_(t, mean, std)
  check_float(t, "normal_")
  errors.check("nn.init.normal_", "mean", mean, "number?")
  errors.check("nn.init.normal_", "std", std, "number?")
  mean, std = mean or 0, std or 1
  if not (std >= 0) then -- luacheck: ignore 581 (NaN fails too)
    errors.raisef("nn.init.normal_: std must be non-negative, got %g", std)
  end
  return in_place("normal_", t, t.normal_, mean, std)
end

---@param t luagrad.Tensor
---@param v number
---@return luagrad.Tensor t
function init.constant_(t, v)
  check_tensor(t, "constant_")
  if type(v) ~= "number" then errors.raise("nn.init.constant_: the value must be a number, got " .. type(v)) end
  return in_place("constant_", t, t.fill_, v)
end

---@param t luagrad.Tensor
---@return luagrad.Tensor t
function init.zeros_(t)
  check_tensor(t, "zeros_")
  return in_place("zeros_", t, t.fill_, 0)
end

---@param t luagrad.Tensor
---@return luagrad.Tensor t
function init.ones_(t)
  check_tensor(t, "ones_")
  return in_place("ones_", t, t.fill_, 1)
end

return init
