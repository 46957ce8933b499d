-- luagrad.optim: optimizers. The classes keep parameter groups and state in Lua; each update is
-- one fused C pass over a parameter, its gradient and its state (src/optim.c), with PyTorch's
-- update equations step for step:
--
--   SGD(params, {lr, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false})
--   Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false, maximize = false})
--   AdamW(params, {... as Adam, weight_decay = 1e-2})          decoupled: p <- p (1 - lr wd) first
--   RMSprop(params, {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false})
--   Adagrad(params, {lr = 1e-2, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0, eps = 1e-10})
--   Adamax(params, {lr = 2e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, maximize = false})
--   NAdam(params, {lr = 2e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, momentum_decay = 4e-3})
--   RAdam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0})
--   Adadelta(params, {lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0, maximize = false})
--
-- params is a list of tensors or a list of groups {{params = {...}, lr = ...}, ...}; a group's
-- options override the optimizer's. opt.param_groups[i].lr can be changed between steps.
-- Parameters whose .grad is nil are skipped. opt:zero_grad() sets gradients to nil
-- (opt:zero_grad(false) zeroes them instead). opt:state_dict() / opt:load_state_dict(sd) save
-- and restore everything, so a resumed run continues bit for bit.
local core = require "luagrad.core"
local errors = require "luagrad.errors"

---@class luagrad.optim.SGDOptions
---@field lr? number the learning rate: required here or in every parameter group
---@field momentum? number (default 0)
---@field dampening? number (default 0)
---@field weight_decay? number L2 penalty added to the gradient (default 0)
---@field nesterov? boolean (default false)
---@field maximize? boolean ascend instead of descend (default false)

---@class luagrad.optim.AdamOptions
---@field lr? number (default 1e-3)
---@field betas? number[] {beta1, beta2} (default {0.9, 0.999})
---@field eps? number (default 1e-8)
---@field weight_decay? number L2 penalty for Adam, decoupled decay for AdamW (default 0, AdamW 1e-2)
---@field amsgrad? boolean (default false)
---@field maximize? boolean (default false)

---@class luagrad.optim.RMSpropOptions
---@field lr? number (default 1e-2)
---@field alpha? number smoothing of the squared-gradient average (default 0.99)
---@field eps? number (default 1e-8)
---@field weight_decay? number (default 0)
---@field momentum? number (default 0)
---@field centered? boolean divide by the gradient's variance instead of its second moment (default false)
---@field maximize? boolean (default false)

---@class luagrad.optim.AdagradOptions
---@field lr? number (default 1e-2)
---@field lr_decay? number (default 0)
---@field weight_decay? number (default 0)
---@field initial_accumulator_value? number (default 0)
---@field eps? number (default 1e-10)
---@field maximize? boolean (default false)

---@class luagrad.optim.AdamaxOptions
---@field lr? number (default 2e-3)
---@field betas? number[] {beta1, beta2} (default {0.9, 0.999})
---@field eps? number (default 1e-8)
---@field weight_decay? number L2 penalty added to the gradient (default 0)
---@field maximize? boolean (default false)

---@class luagrad.optim.NAdamOptions
---@field lr? number (default 2e-3)
---@field betas? number[] {beta1, beta2} (default {0.9, 0.999})
---@field eps? number (default 1e-8)
---@field weight_decay? number L2 penalty added to the gradient (default 0)
---@field momentum_decay? number how fast the momentum coefficient approaches beta1 (default 4e-3)

---@class luagrad.optim.RAdamOptions
---@field lr? number (default 1e-3)
---@field betas? number[] {beta1, beta2} (default {0.9, 0.999})
---@field eps? number (default 1e-8)
---@field weight_decay? number L2 penalty added to the gradient (default 0)

---@class luagrad.optim.AdadeltaOptions
---@field lr? number scales the computed step (default 1.0)
---@field rho? number smoothing of the squared gradients and steps, in [0, 1] (default 0.9)
---@field eps? number (default 1e-6)
---@field weight_decay? number L2 penalty added to the gradient (default 0)
---@field maximize? boolean (default false)

---A parameter group: its parameters and the options that override the optimizer's (lr, ...).
---@class luagrad.optim.ParamGroup
---@field params luagrad.Tensor[]|luagrad.Tensor
---@field [string] any

---What an optimizer updates: a tensor, a list of tensors, or a list of parameter groups.
---@alias luagrad.optim.Params luagrad.Tensor|luagrad.Tensor[]|luagrad.optim.ParamGroup[]

---lg.optim: the optimizer classes (called to make one) and lr_scheduler.
---@class luagrad.optim
---@field SGD fun(params: luagrad.optim.Params, opts: luagrad.optim.SGDOptions): luagrad.optim.Optimizer
---@field Adam fun(params: luagrad.optim.Params, opts?: luagrad.optim.AdamOptions): luagrad.optim.Optimizer
---@field AdamW fun(params: luagrad.optim.Params, opts?: luagrad.optim.AdamOptions): luagrad.optim.Optimizer
---@field RMSprop fun(params: luagrad.optim.Params, opts?: luagrad.optim.RMSpropOptions): luagrad.optim.Optimizer
---@field Adagrad fun(params: luagrad.optim.Params, opts?: luagrad.optim.AdagradOptions): luagrad.optim.Optimizer
---@field Adamax fun(params: luagrad.optim.Params, opts?: luagrad.optim.AdamaxOptions): luagrad.optim.Optimizer
---@field NAdam fun(params: luagrad.optim.Params, opts?: luagrad.optim.NAdamOptions): luagrad.optim.Optimizer
---@field RAdam fun(params: luagrad.optim.Params, opts?: luagrad.optim.RAdamOptions): luagrad.optim.Optimizer
---@field Adadelta fun(params: luagrad.optim.Params, opts?: luagrad.optim.AdadeltaOptions): luagrad.optim.Optimizer
local M = {}

local has_grad = core._has_grad

---The base class of the optimizers.
---@class luagrad.optim.Optimizer
---@field name string "SGD", "Adam", ...
---@field param_groups luagrad.optim.ParamGroup[] each with params and every option; lr may change between steps
---@field state table<luagrad.Tensor, table> per-parameter state (momentum buffers, moments, step counts)
local Optimizer = {}
Optimizer.__index = Optimizer
M.Optimizer = Optimizer

local function fail(name, fmt, ...)
  errors.raise(name .. ": " .. string.format(fmt, ...))
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

-- Defines an optimizer class: defaults, a validator and the update of one parameter group,
-- update(g, state): every parameter of g with a gradient, its state table in state[p].
local function class(name, defaults, validate, update)
  local C = setmetatable({ name = name, defaults = defaults, validate = validate, update = update }, {
    __index = Optimizer,
    __call = function(cls, params, opts) return cls.new(cls, params, opts) end,
  })
  C.__index = C
  C.__tostring = function(self)
    local lines = { name .. " (" }
    for i, g in ipairs(self.param_groups) do
      local keys = {}
      for k in pairs(g) do if k ~= "params" then keys[#keys + 1] = k end end
      table.sort(keys)
      lines[#lines + 1] = string.format("Parameter Group %d", i - 1)
      for _, k in ipairs(keys) do
        local v = g[k]
        if type(v) == "table" then v = "{" .. table.concat(v, ", ") .. "}" end
        lines[#lines + 1] = string.format("    %s: %s", k, tostring(v))
      end
    end
    lines[#lines + 1] = ")"
    return table.concat(lines, "\n")
  end
  M[name] = C
  return C
end

---Makes an optimizer of class cls over params: what calling the class (lg.optim.SGD(...)) does.
---@param cls table an optimizer class
---@param params luagrad.optim.Params
---@param opts? table the class's options
---@return luagrad.optim.Optimizer
function Optimizer.new(cls, params, opts)
  if type(cls) ~= "table" or type(cls.name) ~= "string" or type(cls.defaults) ~= "table" then
    fail("Optimizer.new", "cls must be an optimizer class (lg.optim.SGD, ...), got %s", type(cls))
  end
  local name = cls.name
  if type(params) ~= "table" and not core.is_tensor(params) then
    fail(name, "params must be a list of tensors or of parameter groups, got %s", type(params))
  end
  if core.is_tensor(params) then params = { params } end
  opts = opts or {}
  if type(opts) ~= "table" then fail(name, "options must be a table, got %s", errors.describe(opts)) end
  local accepted = {} -- the class's options, the names errors.options lists
  for k in pairs(cls.defaults) do accepted[#accepted + 1] = k end
  table.sort(accepted)
  errors.options(name, opts, accepted)
  local self = setmetatable({ param_groups = {}, state = {} }, cls)
  if #params == 0 then fail(name, "optimizer got an empty parameter list") end
  local groups = core.is_tensor(params[1]) and { { params = params } } or params
  local seen = {}
  for gi, group in ipairs(groups) do
    if type(group) ~= "table" or type(group.params) ~= "table" and not core.is_tensor(group.params) then
      fail(name, "parameter group %d must be a table with a params list", gi)
    end
    local g = { params = {} }
    local plist = core.is_tensor(group.params) and { group.params } or group.params
    if #plist == 0 then fail(name, "parameter group %d is empty", gi) end
    for i, p in ipairs(plist) do
      if not core.is_tensor(p) then fail(name, "params[%d] is a %s, not a tensor", i, type(p)) end
      if not p.is_leaf then fail(name, "params[%d] is not a leaf tensor (it was computed by %s)", i, p:grad_fn()) end
      if p.dtype ~= "float32" and p.dtype ~= "float64" then
        fail(name, "params[%d] is %s; parameters must be float", i, p.dtype)
      end
      if seen[p] then fail(name, "a parameter appears more than once across the parameter groups") end
      seen[p] = true
      g.params[i] = p
    end
    for k, v in pairs(cls.defaults) do g[k] = copy(v) end
    for k, v in pairs(opts) do g[k] = copy(v) end
    for k, v in pairs(group) do
      if k ~= "params" then
        if cls.defaults[k] == nil then
          fail(name, "unknown option '%s' in parameter group %d (accepted: %s)", tostring(k), gi,
            table.concat(accepted, ", "))
        end
        g[k] = copy(v)
      end
    end
    if g.lr == false or g.lr == nil then fail(name, "a learning rate is required (lr = ...)") end
    cls.validate(g, function(fmt, ...) fail(name, fmt, ...) end)
    self.param_groups[gi] = g
  end
  if cls.init_state then
    for _, g in ipairs(self.param_groups) do
      for _, p in ipairs(g.params) do self.state[p] = cls.init_state(p, g) end
    end
  end
  return self
end

---One update of every parameter that has a gradient. A closure, if given, is called first
---(with gradients enabled) and its loss returned.
---@param closure? fun(): any
---@return any loss what the closure returned
function Optimizer:step(closure)
  errors.check(self.name .. ":step", "closure", closure, "callable?")
  local loss
  if closure then loss = closure() end
  local update = self.update
  local bad = self._bad
  if bad == nil then -- made once: step() runs every iteration
    bad = function(fmt, ...) fail(self.name, fmt, ...) end
    self._bad = bad
  end
  for _, g in ipairs(self.param_groups) do
    self.validate(g, bad) -- options may have changed since the last step
    update(g, self.state)
  end
  return loss
end

-- A group update from a per-parameter one, fn(p, st, g), called for each parameter with a
-- gradient (which the C step reads from p itself).
local function per_param(fn)
  return function(g, state)
    for _, p in ipairs(g.params) do
      if has_grad(p) then
        local st = state[p]
        if st == nil then
          st = {}
          state[p] = st
        end
        fn(p, st, g)
      end
    end
  end
end

---Sets every parameter's gradient to nil, or with set_to_none = false fills it with zeros.
---@param set_to_none? boolean (default true)
function Optimizer:zero_grad(set_to_none)
  for _, g in ipairs(self.param_groups) do
    if set_to_none == false then
      for _, p in ipairs(g.params) do
        local gr = p.grad
        if gr ~= nil then core.set_grad_enabled(false); gr:zero_(); core.set_grad_enabled(true) end
      end
    else
      core._clear_grads(g.params) -- p.grad = nil for each, in one call
    end
  end
end

---Parameters are numbered 1..n across groups in order; state tensors are cloned so the
---dictionary does not change under a running optimizer.
---@return {state: table<integer, table>, param_groups: table[]}
function Optimizer:state_dict()
  local state, groups, index = {}, {}, 0
  for gi, g in ipairs(self.param_groups) do
    local gd = { params = {} }
    for k, v in pairs(g) do if k ~= "params" then gd[k] = copy(v) end end
    for _, p in ipairs(g.params) do
      index = index + 1
      gd.params[#gd.params + 1] = index
      local st = self.state[p]
      if st ~= nil and next(st) ~= nil then
        local s = {}
        for k, v in pairs(st) do s[k] = core.is_tensor(v) and v:clone() or v end
        state[index] = s
      end
    end
    groups[gi] = gd
  end
  return { state = state, param_groups = groups }
end

---Restores what state_dict saved into an optimizer made over the same parameters.
---@param sd {state: table<integer, table>, param_groups: table[]}
function Optimizer:load_state_dict(sd)
  local name = self.name
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or (sd.state ~= nil and type(sd.state) ~= "table") then
    fail(name, "load_state_dict: not an optimizer state dict (a table with param_groups and state), got %s",
      errors.describe(sd))
  end
  if #sd.param_groups ~= #self.param_groups then
    fail(name, "load_state_dict: %d parameter groups saved, this optimizer has %d", #sd.param_groups, #self.param_groups)
  end
  local byindex = {}
  for gi, g in ipairs(self.param_groups) do
    local saved = sd.param_groups[gi]
    if type(saved) ~= "table" or type(saved.params) ~= "table" then
      fail(name, "load_state_dict: parameter group %d is not a table with a params list", gi)
    end
    if #saved.params ~= #g.params then
      fail(name, "load_state_dict: group %d has %d parameters saved and %d here", gi, #saved.params, #g.params)
    end
    for i, p in ipairs(g.params) do byindex[saved.params[i]] = p end
  end
  local state = {}
  for idx, s in pairs(sd.state or {}) do
    local p = byindex[tonumber(idx)]
    if p == nil then fail(name, "load_state_dict: state for unknown parameter %s", tostring(idx)) end
    if type(s) ~= "table" then fail(name, "load_state_dict: the state of parameter %s is not a table", tostring(idx)) end
    local st = {}
    for k, v in pairs(s) do
      if core.is_tensor(v) then
        if v:numel() ~= p:numel() and v:numel() ~= 1 then
          fail(name, "load_state_dict: state '%s' has %d elements, the parameter %d", k, v:numel(), p:numel())
        end
        st[k] = v:to(p.dtype):clone():reshape(p.shape)
      else
        st[k] = v
      end
    end
    state[p] = st
  end
  for gi, g in ipairs(self.param_groups) do
    for k, v in pairs(sd.param_groups[gi]) do if k ~= "params" then g[k] = copy(v) end end
  end
  self.state = state
end

---Adds a parameter group. Options it does not set take the class's defaults (Adam's lr = 1e-3),
---not the options the optimizer was made with; an SGD group needs its own lr.
---@param group luagrad.optim.ParamGroup
function Optimizer:add_param_group(group)
  local fname = self.name .. ":add_param_group"
  if type(group) ~= "table" or (type(group.params) ~= "table" and not core.is_tensor(group.params)) then
    fail(fname, "group must be a table with a params list, such as {params = {w}, lr = 0.1}, got %s",
      type(group) == "table" and "a table without params" or errors.describe(group))
  end
  local tmp = errors.call_as(fname, self.new, getmetatable(self), { group }, {})
  local seen = {}
  for _, g in ipairs(self.param_groups) do for _, p in ipairs(g.params) do seen[p] = true end end
  for _, p in ipairs(tmp.param_groups[1].params) do
    if seen[p] then fail(fname, "a parameter appears more than once across the parameter groups") end
  end
  self.param_groups[#self.param_groups + 1] = tmp.param_groups[1]
  for p, st in pairs(tmp.state) do self.state[p] = st end
end

-- ---- checks shared by the optimizers ----

local function nonneg(bad, g, key, what)
  local v = g[key]
  if type(v) ~= "number" then bad("%s must be a number, got %s", what or key, type(v)) end
  if not (v >= 0) then bad("invalid %s: %s (must be >= 0)", what or key, tostring(v)) end
end

local function betas_ok(bad, g)
  if type(g.betas) ~= "table" or #g.betas ~= 2 then bad("betas must be a table of two numbers") end
  for i = 1, 2 do
    local b = g.betas[i]
    if type(b) ~= "number" or not (b >= 0 and b < 1) then
      bad("invalid beta parameter at index %d: %s (must be in [0, 1))", i, tostring(b))
    end
  end
end

-- ---- SGD ----

class("SGD", { lr = false, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false },
  function(g, bad)
    nonneg(bad, g, "lr", "learning rate")
    nonneg(bad, g, "momentum")
    nonneg(bad, g, "weight_decay", "weight_decay value")
    if type(g.dampening) ~= "number" then bad("dampening must be a number") end
    if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
      bad("Nesterov momentum requires a momentum and zero dampening (momentum = %s, dampening = %s)",
        tostring(g.momentum), tostring(g.dampening))
    end
  end,
  function(g, state) -- the whole group in one C call: momentum_buffer is made on the first step
    core._sgd_group(g.params, state, g.lr, g.momentum, g.dampening, g.weight_decay, g.nesterov, g.maximize)
  end)

-- ---- Adam and AdamW ----

local function adam_validate(g, bad)
  nonneg(bad, g, "lr", "learning rate")
  nonneg(bad, g, "eps", "epsilon value")
  nonneg(bad, g, "weight_decay", "weight_decay value")
  betas_ok(bad, g)
end

-- The whole group in one C call; the state is step, exp_avg, exp_avg_sq (and max_exp_avg_sq
-- with amsgrad), made on a parameter's first step.
local function adam_update(decoupled)
  return function(g, state)
    core._adam_group(g.params, state, g.lr, g.betas[1], g.betas[2], g.eps, g.weight_decay, g.amsgrad, g.maximize,
      decoupled)
  end
end

class("Adam", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, amsgrad = false, maximize = false },
  adam_validate, adam_update(false))
class("AdamW", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2, amsgrad = false, maximize = false },
  adam_validate, adam_update(true))

-- ---- RMSprop ----

class("RMSprop", { lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false, maximize = false },
  function(g, bad)
    nonneg(bad, g, "lr", "learning rate")
    nonneg(bad, g, "eps", "epsilon value")
    nonneg(bad, g, "momentum", "momentum value")
    nonneg(bad, g, "weight_decay", "weight_decay value")
    nonneg(bad, g, "alpha", "alpha value")
  end,
  per_param(function(p, st, g)
    if st.step == nil then
      st.step = 0
      st.square_avg = core.zeros_like(p)
    end
    if g.momentum > 0 and st.momentum_buffer == nil then st.momentum_buffer = core.zeros_like(p) end
    if g.centered and st.grad_avg == nil then st.grad_avg = core.zeros_like(p) end
    st.step = st.step + 1
    core._rmsprop_step(p, nil, st.square_avg, g.centered and st.grad_avg or nil,
      g.momentum > 0 and st.momentum_buffer or nil, g.lr, g.alpha, g.eps, g.weight_decay, g.momentum, g.maximize)
  end))

-- ---- Adagrad ----

local Adagrad = class("Adagrad",
  { lr = 1e-2, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0, eps = 1e-10, maximize = false },
  function(g, bad)
    nonneg(bad, g, "lr", "learning rate")
    nonneg(bad, g, "lr_decay")
    nonneg(bad, g, "weight_decay", "weight_decay value")
    nonneg(bad, g, "initial_accumulator_value", "initial_accumulator_value")
    nonneg(bad, g, "eps", "epsilon value")
  end,
  per_param(function(p, st, g)
    st.step = st.step + 1
    core._adagrad_step(p, nil, st.sum, st.step, g.lr, g.lr_decay, g.weight_decay, g.eps, g.maximize)
  end))
-- as PyTorch, the accumulator exists from construction, filled with initial_accumulator_value
Adagrad.init_state = function(p, g)
  return { step = 0, sum = core.full_like(p, g.initial_accumulator_value) }
end

-- ---- Adamax, NAdam, RAdam, Adadelta ----
-- One C call per parameter (src/engine/optim.c has the equations). The state keys are PyTorch's;
-- a parameter's state is made on its first step, and a state with a step but without its
-- tensors (a damaged state dict) is refused rather than silently restarted.

-- st's tensors named in keys, made as zeros like p on the first step (st.step == nil)
local function moments(name, p, st, keys)
  if st.step == nil then
    for _, k in ipairs(keys) do st[k] = core.zeros_like(p) end
    return
  end
  for _, k in ipairs(keys) do
    if not core.is_tensor(st[k]) then
      fail(name, "the state of a parameter has a step but no tensor '%s' (a damaged state dict?)", k)
    end
  end
end

-- the next step count: st.step + 1 (stored by the caller once the update has run)
local function next_step(name, st)
  local t = st.step or 0
  if math.type(t) ~= "integer" and not (type(t) == "number" and t == math.floor(t)) or t < 0 then
    fail(name, "state step must be a non-negative integer, got %s", type(t) == "number" and tostring(t) or type(t))
  end
  return math.tointeger(t) + 1
end

local ADAMAX_KEYS = { "exp_avg", "exp_inf" }
class("Adamax", { lr = 2e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, maximize = false },
  adam_validate,
  per_param(function(p, st, g)
    local t = next_step("Adamax", st)
    moments("Adamax", p, st, ADAMAX_KEYS)
    core._adamax_step(p, nil, st.exp_avg, st.exp_inf, t, g.lr, g.betas[1], g.betas[2], g.eps, g.weight_decay,
      g.maximize)
    st.step = t
  end))

local ADAM_KEYS = { "exp_avg", "exp_avg_sq" }
class("NAdam", { lr = 2e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0, momentum_decay = 4e-3 },
  function(g, bad)
    adam_validate(g, bad)
    nonneg(bad, g, "momentum_decay", "momentum_decay value")
  end,
  per_param(function(p, st, g)
    local t = next_step("NAdam", st)
    if st.step == nil then st.mu_product = 1 end
    moments("NAdam", p, st, ADAM_KEYS)
    local mu = st.mu_product
    if core.is_tensor(mu) and mu:numel() == 1 then mu = mu:item() end -- as PyTorch saves it
    if type(mu) ~= "number" then fail("NAdam", "state mu_product must be a number, got %s", errors.describe(mu)) end
    st.mu_product = core._nadam_step(p, nil, st.exp_avg, st.exp_avg_sq, t, mu, g.lr, g.betas[1], g.betas[2], g.eps,
      g.weight_decay, g.momentum_decay)
    st.step = t
  end))

class("RAdam", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0 },
  adam_validate,
  per_param(function(p, st, g)
    local t = next_step("RAdam", st)
    moments("RAdam", p, st, ADAM_KEYS)
    core._radam_step(p, nil, st.exp_avg, st.exp_avg_sq, t, g.lr, g.betas[1], g.betas[2], g.eps, g.weight_decay)
    st.step = t
  end))

local ADADELTA_KEYS = { "square_avg", "acc_delta" }
class("Adadelta", { lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0, maximize = false },
  function(g, bad)
    nonneg(bad, g, "lr", "learning rate")
    nonneg(bad, g, "eps", "epsilon value")
    nonneg(bad, g, "weight_decay", "weight_decay value")
    if type(g.rho) ~= "number" or not (g.rho >= 0 and g.rho <= 1) then
      bad("invalid rho value: %s (must be in [0, 1])", tostring(g.rho))
    end
  end,
  per_param(function(p, st, g)
    local t = next_step("Adadelta", st)
    moments("Adadelta", p, st, ADADELTA_KEYS)
    core._adadelta_step(p, nil, st.square_avg, st.acc_delta, g.lr, g.rho, g.eps, g.weight_decay, g.maximize)
    st.step = t
  end))

M.lr_scheduler = require "luagrad.optim.lr_scheduler"

return M
