-- luagrad.nn.module: nn.Module, the base class of every layer, and nn.Parameter.
--
-- Classes are small: a class is a table that is also the metatable of its instances;
-- `Module:extend(name)` makes a subclass, calling a class makes an instance and runs its
-- `init(...)`, calling an instance runs `forward(...)`.
--
--   local Net = nn.Module:extend("Net")
--   function Net:init(d) self.fc = nn.Linear(d, 1) end      -- registered as child "fc"
--   function Net:forward(x) return self.fc(x) end
--   local net = Net(10); local y = net(lg.randn(4, 10))
--
-- Registration by assignment (PyTorch's __setattr__): an instance is a proxy, and assigning a
-- field routes the value by what it is:
--   * a name registered with self:register_buffer(name, t)  -> the buffers (later assignments of
--     a tensor to that name replace the buffer)
--   * a leaf tensor that requires grad (nn.Parameter(t))     -> the parameters
--   * a Module                                               -> the children
--   * anything else                                          -> a plain field
-- A tensor that requires grad but is the result of an operation (has a grad_fn) is not a
-- parameter: it becomes a plain field, so caching an activation in forward registers nothing.
-- Assigning nil removes the name from wherever it is. As in PyTorch, assigning something that
-- is not a parameter to a parameter's name (or a non-module to a child's name) raises.
-- Everything keeps registration order, so parameters() is deterministic.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"

local is_tensor = core.is_tensor

-- ---- ordered registries: names in registration order, name -> value ----------------------

local function registry() return { names = {}, values = {} } end

local function reg_set(r, name, v)
  if r.values[name] == nil then r.names[#r.names + 1] = name end
  r.values[name] = v
end

local function reg_remove(r, name)
  if r.values[name] == nil then return end
  r.values[name] = nil
  for i, n in ipairs(r.names) do
    if n == name then
      table.remove(r.names, i)
      break
    end
  end
end

local function shape_str(t)
  local s = {}
  for i, d in ipairs(t.shape) do s[i] = tostring(d) end
  return "{" .. table.concat(s, ",") .. "}"
end

-- ---- the class machinery ------------------------------------------------------------------

---The base class of every layer. An instance keeps its parameters, buffers and child modules
---in registries filled by assignment (see the top of this file); any field may be assigned.
---Calling an instance runs its forward.
---@class luagrad.nn.Module
---@field training boolean whether the module is in training mode (train()/eval())
---@field [string] any parameters, buffers, child modules and plain fields
---@overload fun(...: any): any
local Module = { __name = "Module", __luagrad_module = true }

---Whether v is a module instance (not a class).
---@param v any
---@return boolean
local function is_module(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__luagrad_module == true and rawget(v, "_parameters") ~= nil
end

local function class_name(m) return getmetatable(m).__name end

-- "Linear:method", the start of a method's messages
local function method_name(m, method) return class_name(m) .. ":" .. method end

-- A member's name: a non-empty string without '.' (state-dict keys join names with dots).
local function check_name(fname, name)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    errors.raisef("%s: name must be a non-empty string without '.', got %s", fname,
      type(name) == "string" and string.format("%q", name) or type(name))
  end
end

-- Field lookup on an instance: plain fields, parameters, buffers, children, then the class
-- (and its ancestors). Integer keys go to the class's _item(i) when it has one (Sequential).
function Module.__index(self, k)
  local v = self._fields[k]
  if v ~= nil then return v end
  v = self._parameters.values[k]
  if v ~= nil then return v end
  v = self._buffers.values[k]
  if v ~= nil then return v end
  v = self._modules.values[k]
  if v ~= nil then return v end
  local cls = getmetatable(self)
  if math.type(k) == "integer" then
    local item = cls._item
    if item then return item(self, k) end
  end
  return cls[k]
end

-- whether m is `target` or holds it among its descendants (the module graph so far is acyclic)
local function contains(m, target)
  if rawequal(m, target) then return true end
  local C = rawget(m, "_modules")
  if C then
    for _, child in pairs(C.values) do
      if contains(child, target) then return true end
    end
  end
  return false
end

function Module.__newindex(self, k, v)
  if type(k) ~= "string" then
    local setitem = getmetatable(self)._setitem
    if setitem and math.type(k) == "integer" then return setitem(self, k, v) end
    errors.raisef("%s: field names must be strings, got %s", class_name(self), type(k))
  end
  local P, B, C, F = self._parameters, self._buffers, self._modules, self._fields
  if v == nil then
    reg_remove(P, k); reg_remove(B, k); reg_remove(C, k); F[k] = nil
    return
  end
  if is_tensor(v) and B.values[k] ~= nil then
    reg_set(B, k, v)
    return
  end
  if is_tensor(v) and v.requires_grad and v:grad_fn() == nil then
    reg_remove(B, k); reg_remove(C, k); F[k] = nil
    reg_set(P, k, v)
    return
  end
  if is_module(v) then
    if contains(v, self) then -- the module tree must stay a tree (a cycle makes every walk endless)
      errors.raisef("%s: cannot add module '%s': it is %s, which would make a cycle", class_name(self), k,
        rawequal(v, self) and "the module itself" or "an ancestor of the module")
    end
    reg_remove(P, k); reg_remove(B, k); F[k] = nil
    reg_set(C, k, v)
    return
  end
  local what = is_tensor(v) and (v.requires_grad and "a non-leaf tensor" or "a tensor that does not require grad")
    or ("a " .. type(v))
  if P.values[k] ~= nil then
    errors.raisef("%s: cannot assign %s as parameter '%s' (use nn.Parameter(t), or nil to remove it)",
      class_name(self), what, k)
  elseif C.values[k] ~= nil then
    errors.raisef("%s: cannot assign %s as child module '%s' (a Module or nil expected)", class_name(self), what, k)
  elseif B.values[k] ~= nil then
    errors.raisef("%s: cannot assign %s as buffer '%s' (a tensor or nil expected)", class_name(self), what, k)
  end
  F[k] = v
end

-- ---- calling a module: forward, and the hooks around it ------------------------------------
--
-- A module's forward pre-hooks and forward hooks (PyTorch's) are raw fields of the instance,
-- _forward_pre_hooks and _forward_hooks, absent until one is registered: arrays of entries
-- {fn = fn}. Registering or removing one replaces the array by a new one, so a call already
-- running goes on with the hooks it started with (PyTorch iterates over a snapshot too), and the
-- last removal drops the field: a module without hooks costs two rawgets per call more.

-- forward(self, ...) between the hooks. inputs is a list with its count in n (table.pack's):
-- a pre-hook's result replaces it (a plain table is the new list, anything else the only input);
-- a forward hook's results replace the outputs unless the first is nil.
local function call_hooked(self, pre, post, ...)
  local inputs = table.pack(...)
  for _, e in ipairs(pre or {}) do
    local r = e.fn(self, inputs)
    if r ~= nil then
      if type(r) == "table" and getmetatable(r) == nil then
        inputs = table.pack(table.unpack(r, 1, math.tointeger(r.n) or #r))
      else
        inputs = table.pack(r)
      end
    end
  end
  local out = table.pack(getmetatable(self).forward(self, table.unpack(inputs, 1, inputs.n)))
  for _, e in ipairs(post or {}) do
    local r = table.pack(e.fn(self, inputs, table.unpack(out, 1, out.n)))
    if r[1] ~= nil then out = r end
  end
  return table.unpack(out, 1, out.n)
end

-- calling an instance runs its class's forward (looked up on the class directly: this runs for
-- every layer of every step), through its hooks when it has some
function Module.__call(self, ...)
  local pre, post = rawget(self, "_forward_pre_hooks"), rawget(self, "_forward_hooks")
  if pre == nil and post == nil then return getmetatable(self).forward(self, ...) end
  return call_hooked(self, pre, post, ...)
end

local function new_instance(cls, ...)
  local self = setmetatable({
    _parameters = registry(), _buffers = registry(), _modules = registry(),
    _fields = {}, _non_persistent = {},
  }, cls)
  self.training = true
  self:init(...)
  return self
end

local function describe_class(cls) return "class " .. cls.__name end

setmetatable(Module, { __call = new_instance, __tostring = describe_class })

---Module:extend(name) -> a subclass. Metamethods are copied (Lua reads them with rawget);
---everything else is inherited through the class's own metatable.
---@param parent luagrad.nn.Module the class to extend
---@param name? string the class name printed and used in messages (default: the parent's)
---@return luagrad.nn.Module
function Module.extend(parent, name)
  if name ~= nil and type(name) ~= "string" then
    errors.raise("Module:extend: the class name must be a string, got " .. type(name))
  end
  local cls = {}
  for k, v in pairs(parent) do
    if type(k) == "string" and k:sub(1, 2) == "__" then cls[k] = v end
  end
  cls.__name = name or parent.__name
  return setmetatable(cls, { __index = parent, __call = new_instance, __tostring = describe_class })
end

---Called with the class's arguments when an instance is made: nn.Linear(4, 3) runs init(self, 4, 3).
function Module.init() end

---What calling the module computes; subclasses define it.
---@return any
function Module:forward()
  errors.raise(class_name(self) .. ": forward is not implemented (define " .. class_name(self) .. ":forward)")
end

-- ---- explicit registration ----------------------------------------------------------------

---register_buffer(name, t, {persistent = true}): state that is not a parameter (running
---statistics). Non-persistent buffers are left out of state_dict.
---@param name string a non-empty name without '.'
---@param t luagrad.Tensor
---@param opts? {persistent?: boolean}
---@return luagrad.Tensor t
function Module:register_buffer(name, t, opts)
  local fname = method_name(self, "register_buffer")
  check_name(fname, name)
  if not is_tensor(t) then errors.raisef("%s: '%s' must be a tensor, got %s", fname, name, type(t)) end
  opts = errors.options(fname, opts, { "persistent" })
  reg_remove(self._parameters, name); reg_remove(self._modules, name); self._fields[name] = nil
  reg_set(self._buffers, name, t)
  self._non_persistent[name] = opts.persistent == false or nil
  return t
end

---Registers t as parameter `name` (nil removes it); t must be a leaf that requires grad.
---@param name string
---@param t luagrad.Tensor|nil
---@return luagrad.Tensor|nil t
function Module:register_parameter(name, t)
  local fname = method_name(self, "register_parameter")
  check_name(fname, name)
  if t ~= nil and not (is_tensor(t) and t.requires_grad and t:grad_fn() == nil) then
    errors.raisef("%s: '%s' must be a leaf tensor that requires grad (nn.Parameter(t)), got %s", fname, name,
      is_tensor(t) and "a tensor that is not" or type(t))
  end
  self[name] = t
  return t
end

---Registers m as child module `name` (also Module:register_module).
---@param name string
---@param m luagrad.nn.Module
---@return luagrad.nn.Module m
function Module:add_module(name, m)
  local fname = method_name(self, "add_module")
  check_name(fname, name)
  if not is_module(m) then errors.raisef("%s: '%s' is not a Module (got %s)", fname, name, type(m)) end
  self[name] = m
  return m
end
Module.register_module = Module.add_module

-- ---- forward hooks ------------------------------------------------------------------------

-- Adds fn to the hook array `key` of m (first when prepend); returns the handle. The handle
-- holds the module weakly: a handle kept somewhere does not keep a model alive.
local function add_hook(m, key, fn, prepend)
  local entry, old, new = { fn = fn }, rawget(m, key) or {}, {}
  if prepend then new[1] = entry end
  for _, e in ipairs(old) do new[#new + 1] = e end
  if not prepend then new[#new + 1] = entry end
  rawset(m, key, new)
  local owner = setmetatable({ m }, { __mode = "v" })
  return {
    remove = function()
      local mod = owner[1]
      local cur = mod and rawget(mod, key)
      if cur == nil then return end
      local kept = {}
      for _, e in ipairs(cur) do
        if e ~= entry then kept[#kept + 1] = e end
      end
      rawset(mod, key, #kept > 0 and kept or nil)
    end,
  }
end

local function check_hook(self, method, fn, opts)
  local fname = method_name(self, method)
  errors.check(fname, "fn", fn, "callable")
  opts = errors.options(fname, opts, { "prepend" })
  errors.check(fname, "opts.prepend", opts.prepend, "boolean?")
  return opts.prepend == true
end

---register_forward_pre_hook(fn, {prepend = false}): fn(module, inputs) runs each time the module
---is called, before its forward; inputs is the list of the call's arguments (with its count in
---inputs.n). fn returns nil to keep them, or replacement inputs: a plain table is the new list,
---any other value the only argument. Hooks run in registration order (prepend = true puts this
---one first), each seeing what the earlier ones left. Returns a handle whose remove() drops it.
---@param fn fun(module: luagrad.nn.Module, inputs: table): any
---@param opts? {prepend?: boolean}
---@return {remove: fun()}
function Module:register_forward_pre_hook(fn, opts)
  return add_hook(self, "_forward_pre_hooks", fn, check_hook(self, "register_forward_pre_hook", fn, opts))
end

---register_forward_hook(fn, {prepend = false}): fn(module, inputs, output, ...) runs each time
---the module is called, after its forward, with the inputs forward got and its results. fn
---returns nil to keep the results, or replacement results. Order and handle as for pre-hooks.
---@param fn fun(module: luagrad.nn.Module, inputs: table, output: any, ...: any): any
---@param opts? {prepend?: boolean}
---@return {remove: fun()}
function Module:register_forward_hook(fn, opts)
  return add_hook(self, "_forward_hooks", fn, check_hook(self, "register_forward_hook", fn, opts))
end

-- ---- traversal ----------------------------------------------------------------------------

-- A list-backed iterator: for name, v in iter(list) do ... end
local function iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

local function join(prefix, name) return prefix == "" and name or prefix .. "." .. name end

-- Depth-first, pre-order (self first), each module once: a list of {dotted name, module}.
local function collect_modules(m, prefix, memo, out)
  if memo[m] then return out end
  memo[m] = true
  out[#out + 1] = { prefix, m }
  local C = m._modules
  for _, name in ipairs(C.names) do collect_modules(C.values[name], join(prefix, name), memo, out) end
  return out
end

-- The members (parameters or buffers) of self (and its descendants), each tensor once; method is
-- the public method asked (its errors name it).
local function collect_members(m, which, opts, method)
  local fname = method_name(m, method)
  opts = errors.options(fname, opts, { "prefix", "recurse" })
  errors.check(fname, "opts.prefix", opts.prefix, "string?")
  local prefix, recurse = opts.prefix or "", opts.recurse ~= false
  local mods = recurse and collect_modules(m, prefix, {}, {}) or { { prefix, m } }
  local out, seen = {}, {}
  for _, e in ipairs(mods) do
    local r = e[2][which]
    for _, name in ipairs(r.names) do
      local t = r.values[name]
      if not seen[t] then
        seen[t] = true
        out[#out + 1] = { join(e[1], name), t }
      end
    end
  end
  return out
end

local function values_of(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e[2] end
  return out
end

---@class luagrad.nn.MembersOptions
---@field prefix? string prepended to every name, with a dot (default "")
---@field recurse? boolean include the descendants' members (default true)

---for name, p in m:named_parameters({prefix = "", recurse = true}) do ... end
---@param opts? luagrad.nn.MembersOptions
---@return fun(): string, luagrad.Tensor
function Module:named_parameters(opts) return iter(collect_members(self, "_parameters", opts, "named_parameters")) end
---The parameters of the module and its descendants, each once, in registration order.
---@param opts? luagrad.nn.MembersOptions
---@return luagrad.Tensor[]
function Module:parameters(opts) return values_of(collect_members(self, "_parameters", opts, "parameters")) end
---@param opts? luagrad.nn.MembersOptions
---@return fun(): string, luagrad.Tensor
function Module:named_buffers(opts) return iter(collect_members(self, "_buffers", opts, "named_buffers")) end
---@param opts? luagrad.nn.MembersOptions
---@return luagrad.Tensor[]
function Module:buffers(opts) return values_of(collect_members(self, "_buffers", opts, "buffers")) end

local function child_list(self)
  local out, seen = {}, {}
  for _, name in ipairs(self._modules.names) do
    local c = self._modules.values[name]
    if not seen[c] then
      seen[c] = true
      out[#out + 1] = { name, c }
    end
  end
  return out
end
---@return fun(): string, luagrad.nn.Module
function Module:named_children() return iter(child_list(self)) end
---@return luagrad.nn.Module[]
function Module:children() return values_of(child_list(self)) end

---named_modules() includes self, named "" (or the prefix).
---@param opts? {prefix?: string}
---@return fun(): string, luagrad.nn.Module
function Module:named_modules(opts)
  opts = errors.options(method_name(self, "named_modules"), opts, { "prefix" })
  errors.check(method_name(self, "named_modules"), "opts.prefix", opts.prefix, "string?")
  return iter(collect_modules(self, opts.prefix or "", {}, {}))
end
---Self and every descendant, depth-first, each once.
---@return luagrad.nn.Module[]
function Module:modules() return values_of(collect_modules(self, "", {}, {})) end

---apply(fn): fn(m) on every descendant, children before parents, then self. Returns self.
---@param fn fun(m: luagrad.nn.Module)
---@return self
function Module:apply(fn)
  errors.check(method_name(self, "apply"), "fn", fn, "callable")
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

-- ---- modes and gradients ------------------------------------------------------------------

---Sets training mode (mode = true, the default) or evaluation mode on self and its descendants.
---@param mode? boolean
---@return self
function Module:train(mode)
  if mode == nil then mode = true end
  if type(mode) ~= "boolean" then
    errors.raisef("%s: mode must be a boolean, got %s", method_name(self, "train"), type(mode))
  end
  for _, m in ipairs(self:modules()) do m.training = mode end
  return self
end

---@return self
function Module:eval() return self:train(false) end

---requires_grad_(requires_grad = true): sets requires_grad on every parameter of the module and
---its descendants (false freezes them: backward leaves them without gradients). Returns self.
---@param requires_grad? boolean
---@return self
function Module:requires_grad_(requires_grad)
  if requires_grad == nil then requires_grad = true end
  if type(requires_grad) ~= "boolean" then
    errors.raisef("%s: requires_grad must be a boolean, got %s", method_name(self, "requires_grad_"),
      errors.describe(requires_grad))
  end
  for _, p in ipairs(self:parameters()) do p:requires_grad_(requires_grad) end
  return self
end

---num_parameters({trainable_only = false}): the number of parameter elements of the module and
---its descendants, each tensor counted once; trainable_only counts only those requiring grad.
---@param opts? {trainable_only?: boolean}
---@return integer
function Module:num_parameters(opts)
  local fname = method_name(self, "num_parameters")
  opts = errors.options(fname, opts, { "trainable_only" })
  errors.check(fname, "opts.trainable_only", opts.trainable_only, "boolean?")
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if p.requires_grad or not opts.trainable_only then n = n + p:numel() end
  end
  return n
end

---zero_grad(): every parameter's .grad becomes nil (PyTorch's set_to_none = True).
function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

local FLOAT = { float32 = true, float64 = true }

---to(dtype): converts floating-point parameters and buffers in place (integer buffers such as
---num_batches_tracked stay int64). The tensors keep their identity (t:set_ re-points them at
---the converted data), so references held elsewhere (an optimizer's list) see the change.
---A gradient of the old dtype is dropped. Returns self.
---@param dtype "float32"|"float64"
---@return self
function Module:to(dtype)
  if not FLOAT[dtype] then
    errors.raisef('%s: dtype must be "float32" or "float64", got %s', method_name(self, "to"), tostring(dtype))
  end
  autograd.no_grad(function()
    for _, list in ipairs({ self:parameters(), self:buffers() }) do
      for _, t in ipairs(list) do
        if FLOAT[t.dtype] and t.dtype ~= dtype then t:set_(t:to(dtype)) end
      end
    end
  end)
  return self
end
---@return self
function Module:double() return self:to("float64") end
---@return self
function Module:float() return self:to("float32") end

-- ---- state dicts --------------------------------------------------------------------------

-- state_dict({prefix = "", keep_vars = false}) -> a plain table: dotted name -> tensor, for
-- every parameter and persistent buffer. The tensors are detached views sharing storage with
-- the module's (keep_vars = true gives the tensors themselves).
local function fill_state(m, prefix, keep, out)
  for _, which in ipairs({ "_parameters", "_buffers" }) do
    local r = m[which]
    for _, name in ipairs(r.names) do
      if not (which == "_buffers" and m._non_persistent[name]) then
        local t = r.values[name]
        out[prefix .. name] = keep and t or t:detach()
      end
    end
  end
  for _, name in ipairs(m._modules.names) do fill_state(m._modules.values[name], prefix .. name .. ".", keep, out) end
  return out
end

---@param opts? {prefix?: string, keep_vars?: boolean}
---@return table<string, luagrad.Tensor>
function Module:state_dict(opts)
  opts = errors.options(method_name(self, "state_dict"), opts, { "prefix", "keep_vars" })
  errors.check(method_name(self, "state_dict"), "opts.prefix", opts.prefix, "string?")
  local prefix = opts.prefix or ""
  if prefix ~= "" and prefix:sub(-1) ~= "." then prefix = prefix .. "." end
  return fill_state(self, prefix, opts.keep_vars, {})
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function same_shape(a, b)
  if #a.shape ~= #b.shape then return false end
  for i, d in ipairs(a.shape) do
    if b.shape[i] ~= d then return false end
  end
  return true
end

---load_state_dict(sd, {strict = true}) copies sd's tensors into the parameters and buffers
---(under no_grad, converting dtypes as copy_ does). Everything is checked before anything is
---written: a shape mismatch (always) or, when strict, missing or unexpected keys raise one
---error listing them all, and the module is left unchanged. Returns {missing_keys = {...},
---unexpected_keys = {...}} (sorted).
---@param sd table<string, luagrad.Tensor>
---@param opts? {strict?: boolean}
---@return {missing_keys: string[], unexpected_keys: string[]}
function Module:load_state_dict(sd, opts)
  local name = method_name(self, "load_state_dict")
  if type(sd) ~= "table" then errors.raisef("%s: expected a table of tensors, got %s", name, type(sd)) end
  local strict = errors.options(name, opts, { "strict" }).strict ~= false
  local given = {} -- what pairs lists is what is checked and copied (an object's __index is not asked)
  for k, v in pairs(sd) do given[k] = v end
  sd = given
  local own = self:state_dict({ keep_vars = true })
  local missing, unexpected, problems = {}, {}, {}
  for _, k in ipairs(sorted_keys(own)) do
    if sd[k] == nil then missing[#missing + 1] = k end
  end
  for _, k in ipairs(sorted_keys(sd)) do
    local v, dst = sd[k], own[k]
    if dst == nil then
      unexpected[#unexpected + 1] = tostring(k)
    elseif not is_tensor(v) then
      problems[#problems + 1] = string.format("'%s' is a %s, not a tensor", k, type(v))
    elseif not same_shape(v, dst) then
      problems[#problems + 1] = string.format("size mismatch for '%s': copying a tensor of shape %s into one of shape %s",
        k, shape_str(v), shape_str(dst))
    end
  end
  local function quoted(list)
    local q = {}
    for i, k in ipairs(list) do q[i] = "'" .. k .. "'" end
    return table.concat(q, ", ")
  end
  if strict and #missing > 0 then table.insert(problems, 1, "missing keys: " .. quoted(missing)) end
  if strict and #unexpected > 0 then
    table.insert(problems, (strict and #missing > 0) and 2 or 1, "unexpected keys: " .. quoted(unexpected))
  end
  if #problems > 0 then errors.raise(name .. ": " .. table.concat(problems, "; ")) end
  autograd.no_grad(function()
    for k, dst in pairs(own) do
      local v = sd[k]
      if v ~= nil and v ~= dst then dst:copy_(v) end
    end
  end)
  return { missing_keys = missing, unexpected_keys = unexpected }
end

-- ---- printing -----------------------------------------------------------------------------

---extra_repr(): what a layer prints between its parentheses ("in_features=784, ...").
---@return string
function Module.extra_repr() return "" end

-- tostring(module): PyTorch's tree layout, children as "(name): ..." indented two spaces.
function Module.__tostring(self)
  local lines = {}
  local extra = self:extra_repr()
  local n_extra = 0
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do
      lines[#lines + 1] = line
      n_extra = n_extra + 1
    end
  end
  for _, name in ipairs(self._modules.names) do
    local s = tostring(self._modules.values[name]):gsub("\n", "\n  ")
    lines[#lines + 1] = "(" .. name .. "): " .. s
  end
  local s = class_name(self) .. "("
  if #lines == 1 and n_extra == 1 then
    s = s .. lines[1]
  elseif #lines > 0 then
    s = s .. "\n  " .. table.concat(lines, "\n  ") .. "\n"
  end
  return s .. ")"
end

---nn.Parameter(t): a leaf that requires grad, sharing t's storage (t:detach():requires_grad_()).
---@param t luagrad.Tensor
---@return luagrad.Tensor
local function Parameter(t)
  if not is_tensor(t) then errors.raise("nn.Parameter: expected a tensor, got " .. type(t)) end
  if t.dtype ~= "float32" and t.dtype ~= "float64" then
    errors.raise("nn.Parameter: only float tensors can require gradients, got " .. t.dtype)
  end
  return t:detach():requires_grad_(true)
end

return { Module = Module, Parameter = Parameter, is_module = is_module, shape_str = shape_str }
