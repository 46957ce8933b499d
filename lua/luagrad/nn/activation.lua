-- luagrad.nn.activation: the activation layers, each a thin module over nn.functional.
--
--   ReLU() Sigmoid() Tanh() SiLU()
--   GELU({approximate = "none" | "tanh"})       (or GELU("tanh"))
--   LeakyReLU(negative_slope = 0.01)            (or LeakyReLU({negative_slope =}))
--   ELU(alpha = 1)                              (or ELU({alpha =}))
--   Softplus({beta = 1, threshold = 20})
--   Softmax(dim), LogSoftmax(dim)               (the dimension is required)
local Module = require("luagrad.nn.module").Module
local F = require "luagrad.nn.functional"
local errors = require "luagrad.errors"

local M = {}

local function simple(name, fn)
  local cls = Module:extend(name)
  function cls.forward(_, x) return fn(x) end
  M[name] = cls
end
simple("ReLU", F.relu)
simple("Sigmoid", F.sigmoid)
simple("Tanh", F.tanh)
simple("SiLU", F.silu)

local function fmt(v) return string.format("%g", v) end

-- Reads an options table or a plain first option into self.
local function options(self, name, v, key, allowed)
  local o = type(v) == "table" and errors.options(name, v, allowed) or { [key] = v }
  for _, k in ipairs(allowed) do self[k] = o[k] end
end

---@class luagrad.nn.GELU: luagrad.nn.Module
---@field approximate "none"|"tanh"
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local GELU = Module:extend("GELU")
---@param opts? "none"|"tanh"|{approximate?: "none"|"tanh"}
function GELU:init(opts)
  options(self, "GELU", opts, "approximate", { "approximate" })
  self.approximate = self.approximate or "none"
  if self.approximate ~= "none" and self.approximate ~= "tanh" then
    errors.raisef('GELU: approximate must be "none" or "tanh", got %s', tostring(self.approximate))
  end
end
function GELU:forward(x) return F.gelu(x, { approximate = self.approximate }) end
function GELU:extra_repr() return self.approximate == "none" and "" or 'approximate="tanh"' end
M.GELU = GELU

---@class luagrad.nn.LeakyReLU: luagrad.nn.Module
---@field negative_slope number
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local LeakyReLU = Module:extend("LeakyReLU")
---@param opts? number|{negative_slope?: number} the slope for x < 0 (default 0.01)
function LeakyReLU:init(opts)
  options(self, "LeakyReLU", opts, "negative_slope", { "negative_slope" })
  self.negative_slope = self.negative_slope or 0.01
end
function LeakyReLU:forward(x) return F.leaky_relu(x, self.negative_slope) end
function LeakyReLU:extra_repr() return "negative_slope=" .. fmt(self.negative_slope) end
M.LeakyReLU = LeakyReLU

---@class luagrad.nn.ELU: luagrad.nn.Module
---@field alpha number
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local ELU = Module:extend("ELU")
---@param opts? number|{alpha?: number} alpha (default 1)
function ELU:init(opts)
  options(self, "ELU", opts, "alpha", { "alpha" })
  self.alpha = self.alpha or 1
end
function ELU:forward(x) return F.elu(x, self.alpha) end
function ELU:extra_repr() return "alpha=" .. fmt(self.alpha) end
M.ELU = ELU

---@class luagrad.nn.Softplus: luagrad.nn.Module
---@field beta number
---@field threshold number
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Softplus = Module:extend("Softplus")
---@param opts? number|{beta?: number, threshold?: number} beta (default 1), or the options
---@param threshold? number where beta * x exceeds it the result is x (default 20)
function Softplus:init(opts, threshold)
  options(self, "Softplus", opts, "beta", { "beta", "threshold" })
  self.beta, self.threshold = self.beta or 1, self.threshold or threshold or 20
end
function Softplus:forward(x) return F.softplus(x, { beta = self.beta, threshold = self.threshold }) end
function Softplus:extra_repr() return "beta=" .. fmt(self.beta) .. ", threshold=" .. fmt(self.threshold) end
M.Softplus = Softplus

local function softmax_class(name, fn)
  local cls = Module:extend(name)
  ---@param dim integer|{dim: integer}
  function cls:init(dim)
    if type(dim) == "table" then dim = errors.options(name, dim, { "dim" }).dim end
    if math.type(dim) ~= "integer" then
      errors.raisef("%s: a dimension is needed, e.g. nn.%s(-1) or nn.%s(2)", name, name, name)
    end
    self.dim = dim
  end
  function cls:forward(x) return fn(x, self.dim) end
  function cls:extra_repr() return "dim=" .. self.dim end
  M[name] = cls
end
softmax_class("Softmax", F.softmax)
softmax_class("LogSoftmax", F.log_softmax)

return M
