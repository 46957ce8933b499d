-- luagrad.nn.containers: Sequential, ModuleList, ModuleDict, Residual, Identity, Flatten.
--
-- Sequential(m1, m2, ...) (or Sequential({m1, m2, ...})) runs its layers in order. Its children
-- are named "0", "1", ... as in PyTorch, so state-dict keys line up with PyTorch's
-- ("0.weight", "2.bias"); Lua indexing is 1-based: seq[1] is the first layer (named "0"),
-- seq[-1] the last, #seq the count. seq:append(m) adds a layer; seq[i] = m replaces one.
--
-- ModuleList({m1, m2, ...}) holds modules without running them (it has no forward): children
-- "0", "1", ... as Sequential's, ml[i] (1-based, negative from the end), #ml, ipairs(ml),
-- append, extend, insert, pop. ModuleDict({name = m, ...}) holds modules by name: md[name],
-- keys(), values(), items(), update, pop, clear, #md. Its order is the order of insertion; a
-- Lua table of names gives none, so a table's entries are added in sorted name order (a list of
-- {name, module} pairs keeps its own).
local core = require "luagrad.core"
local base = require "luagrad.nn.module"
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

-- ---- ModuleList ------------------------------------------------------------------------------

---A list of modules, registered as children "0", "1", ...; it has no forward.
---@class luagrad.nn.ModuleList: luagrad.nn.Module
---@field [integer] luagrad.nn.Module
local ModuleList = Module:extend("ModuleList")

-- the children in order
local function module_list(self)
  local C, out = self._modules, {}
  for i, name in ipairs(C.names) do out[i] = C.values[name] end
  return out
end

-- registers mods (checked already) as the children "0", "1", ..., replacing the previous ones
local function set_module_list(self, mods)
  local C = self._modules
  for _, name in ipairs(C.names) do C.values[name] = nil end
  C.names = {}
  for i, m in ipairs(mods) do
    local name = tostring(i - 1)
    C.names[i], C.values[name] = name, m
  end
end

---ModuleList(modules): modules is a Lua list of modules, or another ModuleList or Sequential.
---@param modules? luagrad.nn.Module[]|luagrad.nn.ModuleList|luagrad.nn.Sequential
function ModuleList:init(modules)
  if modules ~= nil then self:extend(modules) end
end

function ModuleList.__len(self) return #self._modules.names end

function ModuleList:_item(i)
  local j = position(self, i)
  local name = self._modules.names[j]
  return name and self._modules.values[name]
end

function ModuleList:_setitem(i, m)
  local j, n = position(self, i)
  if j < 1 or j > n then errors.raisef("ModuleList: index %d is out of range for %d modules", i, n) end
  if not is_module(m) then errors.raisef("ModuleList: element %d must be a module, got %s", i, type(m)) end
  self:add_module(self._modules.names[j], m)
end

---Adds m at the end.
---@param m luagrad.nn.Module
---@return self
function ModuleList:append(m)
  if not is_module(m) then errors.raisef("ModuleList.append: expected a module, got %s", type(m)) end
  self:add_module(tostring(#self._modules.names), m)
  return self
end

---Appends every module of a Lua list, a ModuleList or a Sequential, in order.
---@param modules luagrad.nn.Module[]|luagrad.nn.ModuleList|luagrad.nn.Sequential
---@return self
function ModuleList:extend(modules)
  local list
  if is_module(modules) then
    list = module_list(modules)
  elseif type(modules) == "table" then
    list = modules
  else
    errors.raisef("ModuleList.extend: expected a list of modules, got %s", type(modules))
  end
  for i = 1, #list do
    if not is_module(list[i]) then
      errors.raisef("ModuleList.extend: element %d is not a module (got %s)", i, type(list[i]))
    end
  end
  for i = 1, #list do self:append(list[i]) end
  return self
end

---insert(index, m): m becomes element index (1 to #ml + 1; a negative index counts from the end,
----1 inserting before the last), the later ones moving up, as table.insert.
---@param index integer
---@param m luagrad.nn.Module
---@return self
function ModuleList:insert(index, m)
  local n = #self._modules.names
  local j = math.type(index) == "integer" and (index < 0 and n + 1 + index or index) or nil
  if j == nil or j < 1 or j > n + 1 then
    errors.raisef("ModuleList.insert: index must be an integer from 1 to %d (or negative), got %s", n + 1, tostring(index))
  end
  self:append(m) -- checks m
  local mods = module_list(self)
  table.remove(mods)
  table.insert(mods, j, m)
  set_module_list(self, mods)
  return self
end

---pop(index = -1): removes element index (negative from the end) and returns it; the later ones
---move down.
---@param index? integer
---@return luagrad.nn.Module
function ModuleList:pop(index)
  local n = #self._modules.names
  if index == nil then index = -1 end
  local j = math.type(index) == "integer" and (index < 0 and n + 1 + index or index) or nil
  if j == nil or j < 1 or j > n then
    errors.raisef("ModuleList.pop: index %s is out of range for %d modules", tostring(index), n)
  end
  local mods = module_list(self)
  local m = table.remove(mods, j)
  set_module_list(self, mods)
  return m
end

-- ---- ModuleDict ------------------------------------------------------------------------------

---Modules by name, in insertion order; it has no forward.
---@class luagrad.nn.ModuleDict: luagrad.nn.Module
---@field [string] luagrad.nn.Module
local ModuleDict = Module:extend("ModuleDict")

---ModuleDict(modules): see ModuleDict:update.
---@param modules? table<string, luagrad.nn.Module>|{[1]: string, [2]: luagrad.nn.Module}[]|luagrad.nn.ModuleDict
function ModuleDict:init(modules)
  if modules ~= nil then self:update(modules) end
end

function ModuleDict.__len(self) return #self._modules.names end

-- md[name] = m, with PyTorch's checks on the name
local function dict_set(self, name, m)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    errors.raisef("ModuleDict: a key must be a non-empty string without '.', got %s", tostring(name))
  end
  if not is_module(m) then errors.raisef("ModuleDict: '%s' must be a module, got %s", name, type(m)) end
  if self._modules.values[name] == nil and self[name] ~= nil then
    errors.raisef("ModuleDict: key '%s' is already the name of a field or method of ModuleDict", name)
  end
  self:add_module(name, m)
end

---update(modules): adds or replaces modules from a ModuleDict (in its order), a list of
---{name, module} pairs (in that order) or a table name -> module (in sorted name order).
---@param modules table<string, luagrad.nn.Module>|{[1]: string, [2]: luagrad.nn.Module}[]|luagrad.nn.ModuleDict
---@return self
function ModuleDict:update(modules)
  if is_module(modules) then
    if getmetatable(modules) ~= ModuleDict then
      errors.raisef("ModuleDict.update: expected a table of modules or a ModuleDict, got a %s", getmetatable(modules).__name)
    end
    for name, m in modules:items() do dict_set(self, name, m) end
    return self
  end
  if type(modules) ~= "table" then
    errors.raisef("ModuleDict.update: expected a table of modules, got %s", type(modules))
  end
  if modules[1] ~= nil then
    for i, pair in ipairs(modules) do
      if type(pair) ~= "table" or is_module(pair) or #pair ~= 2 then
        errors.raisef("ModuleDict.update: element %d must be a {name, module} pair", i)
      end
      dict_set(self, pair[1], pair[2])
    end
    return self
  end
  local names = {}
  for k in pairs(modules) do
    if type(k) ~= "string" then errors.raisef("ModuleDict: a key must be a string, got %s", type(k)) end
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do dict_set(self, k, modules[k]) end
  return self
end

---The names, in order.
---@return string[]
function ModuleDict:keys() return { table.unpack(self._modules.names) } end

---The modules, in order.
---@return luagrad.nn.Module[]
function ModuleDict:values() return module_list(self) end

---for name, m in md:items() do ... end, in order.
---@return fun(): string, luagrad.nn.Module
function ModuleDict:items()
  local names, values, i = self:keys(), self._modules.values, 0
  return function()
    i = i + 1
    local name = names[i]
    if name then return name, values[name] end
  end
end

---Removes the module named key and returns it (nil if there is none).
---@param key string
---@return luagrad.nn.Module|nil
function ModuleDict:pop(key)
  local m = self._modules.values[key]
  if m ~= nil then self[key] = nil end
  return m
end

---Removes every module.
function ModuleDict:clear()
  for _, name in ipairs(self:keys()) do self[name] = nil end
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
    local o = errors.options("Flatten", start_dim, { "start_dim", "end_dim" })
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

return {
  Sequential = Sequential, ModuleList = ModuleList, ModuleDict = ModuleDict, Residual = Residual, Identity = Identity,
  Flatten = Flatten,
}
