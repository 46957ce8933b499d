-- luagrad.nn.containers: Sequential, Residual, Identity, Flatten.
--
-- Sequential(m1, m2, ...) (or Sequential({m1, m2, ...})) runs its layers in order. Its children
-- are named "0", "1", ... as in PyTorch, so state-dict keys line up with PyTorch's
-- ("0.weight", "2.bias"); Lua indexing is 1-based: seq[1] is the first layer (named "0"),
-- seq[-1] the last, #seq the count. seq:append(m) adds a layer; seq[i] = m replaces one.
local core = require "luagrad.core"
local base = require "luagrad.nn.module"
local F = require "luagrad.nn.functional"
local errors = require "luagrad.errors"

local Module, is_module = base.Module, base.is_module

---Runs its layers in order; seq[1] is the first layer (named "0"), #seq the count.
---@class luagrad.nn.Sequential: luagrad.nn.Module
---@field [integer] luagrad.nn.Module
---@overload fun(x: any): any
local Sequential = Module:extend("Sequential")

---Sequential(m1, m2, ...) or Sequential({m1, m2, ...}).
---@param ... luagrad.nn.Module|luagrad.nn.Module[]
function Sequential:init(...)
  local n, mods = select("#", ...), { ... }
  if n == 1 and type(mods[1]) == "table" and not is_module(mods[1]) then
    mods = mods[1]
    n = #mods
  end
  for i = 1, n do
    if not is_module(mods[i]) then
      errors.raisef("Sequential: argument %d is not a module (got %s)", i, type(mods[i]))
    end
    self:add_module(tostring(i - 1), mods[i])
  end
end

---@param x any
---@return any
function Sequential:forward(x)
  local C = self._modules
  for _, name in ipairs(C.names) do x = C.values[name](x) end
  return x
end

function Sequential.__len(self) return #self._modules.names end

local function position(self, i)
  local n = #self._modules.names
  if i < 0 then i = n + 1 + i end
  return i, n
end

function Sequential:_item(i)
  local j = position(self, i)
  local name = self._modules.names[j]
  return name and self._modules.values[name]
end

function Sequential:_setitem(i, m)
  local j, n = position(self, i)
  if j < 1 or j > n then errors.raisef("Sequential: index %d is out of range for %d layers", i, n) end
  if not is_module(m) then errors.raisef("Sequential: layer %d must be a module, got %s", i, type(m)) end
  self._modules.values[self._modules.names[j]] = m
end

---Adds m as the last layer.
---@param m luagrad.nn.Module
---@return self
function Sequential:append(m)
  self:add_module(tostring(#self._modules.names), m)
  return self
end

---Residual(block): x + block(x).
---@class luagrad.nn.Residual: luagrad.nn.Module
---@field block luagrad.nn.Module
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Residual = Module:extend("Residual")

---@param block luagrad.nn.Module
function Residual:init(block)
  if not is_module(block) then errors.raise("Residual: expected a module, got " .. type(block)) end
  self.block = block
end

---@param x luagrad.Tensor
---@return luagrad.Tensor
function Residual:forward(x)
  if not core.is_tensor(x) then errors.raise("Residual: expected a tensor input, got " .. type(x)) end
  return x + self.block(x)
end

---Identity(): returns its input.
---@class luagrad.nn.Identity: luagrad.nn.Module
---@overload fun(x: any): any
local Identity = Module:extend("Identity")
function Identity.init() end
function Identity.forward(_, x) return x end

---Flatten(start_dim = 2, end_dim = -1) or Flatten({start_dim =, end_dim =}): flattens the
---dimensions start_dim..end_dim (1-based; the default keeps the batch dimension).
---@class luagrad.nn.Flatten: luagrad.nn.Module
---@field start_dim integer
---@field end_dim integer
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Flatten = Module:extend("Flatten")

---@param start_dim? integer|{start_dim?: integer, end_dim?: integer}
---@param end_dim? integer
function Flatten:init(start_dim, end_dim)
  if type(start_dim) == "table" then
    local o = F._check_opts("Flatten", start_dim, { "start_dim", "end_dim" })
    start_dim, end_dim = o.start_dim, o.end_dim
  end
  self.start_dim, self.end_dim = start_dim or 2, end_dim or -1
end

---@param x luagrad.Tensor
---@return luagrad.Tensor
function Flatten:forward(x)
  if not core.is_tensor(x) then errors.raise("Flatten: expected a tensor input, got " .. type(x)) end
  return x:flatten(self.start_dim, self.end_dim)
end

function Flatten:extra_repr() return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end

return { Sequential = Sequential, Residual = Residual, Identity = Identity, Flatten = Flatten }
