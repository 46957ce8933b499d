-- luagrad.optim.lr_scheduler: learning-rate schedules, in plain Lua, with PyTorch's (1.13)
-- constructor options and stepping: the first learning rate is set at construction, and
-- sched:step() follows each optimizer step (or epoch). sched:get_last_lr() lists the group rates.
--
--   StepLR(opt, {step_size, gamma = 0.1})          MultiStepLR(opt, {milestones, gamma = 0.1})
--   ExponentialLR(opt, {gamma})                    CosineAnnealingLR(opt, {T_max, eta_min = 0})
--   CosineAnnealingWarmRestarts(opt, {T_0, T_mult = 1, eta_min = 0})
--   OneCycleLR(opt, {max_lr, total_steps | epochs + steps_per_epoch, pct_start = 0.3,
--              anneal_strategy = "cos", div_factor = 25, final_div_factor = 1e4, three_phase = false,
--              cycle_momentum = true, base_momentum = 0.85, max_momentum = 0.95})
--   LinearLR(opt, {start_factor = 1/3, end_factor = 1, total_iters = 5})
--   PolynomialLR(opt, {total_iters = 5, power = 1})
--   LambdaLR(opt, {lr_lambda = function(step) return factor end})
--   SequentialLR(opt, {schedulers = {s1, s2}, milestones = {10}})
--   ReduceLROnPlateau(opt, {mode = "min", factor = 0.1, patience = 10, threshold = 1e-4,
--                     threshold_mode = "rel", cooldown = 0, min_lr = 0, eps = 1e-8}); step(metric)
--
-- A schedule is also just a Lua function of the step. The reference text's formulas, each a line:
--   step decay         function(t) return eta0 * gamma ^ (t // s) end
--   cosine annealing   function(t) return eta_min + 0.5 * (eta0 - eta_min) * (1 + math.cos(math.pi * t / T)) end
--   warmup + decay     function(t) return t < Tw and eta0 * t / Tw or eta0 * (T - t) / (T - Tw) end
--   exponential decay  function(t) return eta0 * math.exp(-alpha * t) end
--   inverse time       function(t) return eta0 / (1 + alpha * t) end
-- and FunctionLR(opt, {lr = f}) drives an optimizer with any of them.
local core = require "luagrad.core"
local errors = require "luagrad.errors"

---@alias luagrad.optim.LRLambda fun(step: integer): number

---@class luagrad.optim.OneCycleLROptions
---@field max_lr number|number[] the peak rate (one per parameter group, or one for all)
---@field total_steps? integer the cycle's length; or give epochs and steps_per_epoch
---@field epochs? integer
---@field steps_per_epoch? integer
---@field pct_start? number the part of the cycle spent rising (default 0.3)
---@field anneal_strategy? "cos"|"linear" (default "cos")
---@field div_factor? number the first rate is max_lr / div_factor (default 25)
---@field final_div_factor? number the last rate is the first / final_div_factor (default 1e4)
---@field three_phase? boolean (default false)
---@field cycle_momentum? boolean cycle momentum (or Adam's beta1) inversely (default true)
---@field base_momentum? number (default 0.85)
---@field max_momentum? number (default 0.95)

---@class luagrad.optim.ReduceLROnPlateauOptions
---@field mode? "min"|"max" whether the metric should fall or rise (default "min")
---@field factor? number the rate is multiplied by it (default 0.1)
---@field patience? number steps without improvement before lowering the rate (default 10)
---@field threshold? number the least change that counts as improvement (default 1e-4)
---@field threshold_mode? "rel"|"abs" (default "rel")
---@field cooldown? number steps to wait after lowering the rate (default 0)
---@field min_lr? number|number[] (default 0)
---@field eps? number a smaller change of the rate is skipped (default 1e-8)

-- luacheck: push ignore 631 (the types below are long lines)
---lg.optim.lr_scheduler: the schedules (called to make one); the first rate is set at construction.
---@class luagrad.optim.lr_scheduler
---@field StepLR fun(opt: luagrad.optim.Optimizer, opts: {step_size: integer, gamma?: number}): luagrad.optim.LRScheduler
---@field MultiStepLR fun(opt: luagrad.optim.Optimizer, opts: {milestones: integer[], gamma?: number}): luagrad.optim.LRScheduler
---@field ExponentialLR fun(opt: luagrad.optim.Optimizer, opts: {gamma: number}): luagrad.optim.LRScheduler
---@field CosineAnnealingLR fun(opt: luagrad.optim.Optimizer, opts: {T_max: number, eta_min?: number}): luagrad.optim.LRScheduler
---@field CosineAnnealingWarmRestarts fun(opt: luagrad.optim.Optimizer, opts: {T_0: integer, T_mult?: integer, eta_min?: number}): luagrad.optim.LRScheduler
---@field OneCycleLR fun(opt: luagrad.optim.Optimizer, opts: luagrad.optim.OneCycleLROptions): luagrad.optim.LRScheduler
---@field LinearLR fun(opt: luagrad.optim.Optimizer, opts?: {start_factor?: number, end_factor?: number, total_iters?: number}): luagrad.optim.LRScheduler
---@field PolynomialLR fun(opt: luagrad.optim.Optimizer, opts?: {total_iters?: number, power?: number}): luagrad.optim.LRScheduler
---@field LambdaLR fun(opt: luagrad.optim.Optimizer, opts: {lr_lambda: luagrad.optim.LRLambda|luagrad.optim.LRLambda[]}): luagrad.optim.LRScheduler
---@field FunctionLR fun(opt: luagrad.optim.Optimizer, opts: {lr: luagrad.optim.LRLambda}): luagrad.optim.LRScheduler
---@field SequentialLR fun(opt: luagrad.optim.Optimizer, opts: {schedulers: luagrad.optim.LRScheduler[], milestones: integer[]}): luagrad.optim.LRScheduler
---@field ReduceLROnPlateau fun(opt: luagrad.optim.Optimizer, opts?: luagrad.optim.ReduceLROnPlateauOptions): luagrad.optim.ReduceLROnPlateau
local M = {}
-- luacheck: pop

local pi, cos = math.pi, math.cos

---The base class of the schedules.
---@class luagrad.optim.LRScheduler
---@field optimizer luagrad.optim.Optimizer
---@field last_epoch integer the steps taken (0 after construction)
---@field base_lrs number[] each group's initial_lr
local Scheduler = {}
Scheduler.__index = Scheduler
M.LRScheduler = Scheduler

local function fail(name, fmt, ...)
  errors.raise(name .. ": " .. string.format(fmt, ...))
end

local function check_opt(name, opt)
  if type(opt) ~= "table" or type(opt.param_groups) ~= "table" then
    fail(name, "the first argument must be an optimizer, got %s", type(opt))
  end
end

local function number_opt(name, o, key, default, check)
  local v = o[key]
  if v == nil then v = default end
  if v == nil then fail(name, "option '%s' is required", key) end
  if type(v) ~= "number" then fail(name, "option '%s' must be a number, got %s", key, type(v)) end
  if check and not check(v) then fail(name, "invalid %s: %s", key, tostring(v)) end
  return v
end

-- A schedule class: get_lr(self) computes the group rates from group.lr (PyTorch's chainable
-- form); closed_form(self), where it exists, from the step alone (used by SequentialLR).
local function class(name, options, init, get_lr, closed_form)
  local C = setmetatable({ name = name }, {
    __index = Scheduler,
    __call = function(cls, opt, o)
      check_opt(name, opt)
      o = errors.options(name, o, options)
      local self = setmetatable({ optimizer = opt, last_epoch = -1, _step_count = 0 }, cls)
      for _, g in ipairs(opt.param_groups) do
        if g.initial_lr == nil then g.initial_lr = g.lr end
      end
      self.base_lrs = {}
      for i, g in ipairs(opt.param_groups) do self.base_lrs[i] = g.initial_lr end
      init(self, o)
      self:_initial_step()
      return self
    end,
  })
  C.__index = C
  C.get_lr = get_lr
  C.closed_form = closed_form
  M[name] = C
  return C
end

function Scheduler:_initial_step()
  self._step_count = 0
  self:step()
end

---Moves the schedule one step on (or, with epoch, to that step) and sets the groups' lr.
---@param epoch? integer
function Scheduler:step(epoch)
  errors.check((self.name or "scheduler") .. ":step", "epoch", epoch, "integer?")
  if epoch ~= nil then
    epoch = math.tointeger(epoch)
    if epoch == nil then fail((self.name or "scheduler") .. ":step", "epoch is too large to count") end
  end
  self._step_count = self._step_count + 1
  local values
  if epoch == nil then
    self.last_epoch = self.last_epoch + 1
    values = self:get_lr()
  else
    self.last_epoch = epoch
    values = self.closed_form and self:closed_form() or self:get_lr()
  end
  for i, g in ipairs(self.optimizer.param_groups) do g.lr = values[i] end
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do self._last_lr[i] = g.lr end
end

---The learning rate of each parameter group, as last set.
---@return number[]
function Scheduler:get_last_lr() return self._last_lr end

local function map_groups(self, f)
  local out = {}
  for i, g in ipairs(self.optimizer.param_groups) do out[i] = f(g, self.base_lrs[i], i) end
  return out
end

-- A deep copy of the schedule's state without functions (lr_lambda, FunctionLR's function):
-- those stay with the object, as PyTorch leaves plain functions out of its state dicts.
local function plain_copy(v, seen)
  if type(v) == "function" then return nil end
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end -- a table met again (a cycle) is copied once
  local c, any = {}, false
  seen[v] = c
  for k, x in pairs(v) do
    local y = plain_copy(x, seen)
    if y ~= nil then c[k], any = y, true end
  end
  if not any and next(v) ~= nil then return nil end -- a table of functions only
  return c
end

---@return table
function Scheduler:state_dict()
  local sd = {}
  for k, v in pairs(self) do
    if k ~= "optimizer" and k ~= "_schedulers" then sd[k] = plain_copy(v) end
  end
  if self._schedulers then
    sd._schedulers = {}
    for i, s in ipairs(self._schedulers) do sd._schedulers[i] = s:state_dict() end
  end
  return sd
end

---@param sd table what state_dict returned
function Scheduler:load_state_dict(sd)
  local fname = (self.name or "ReduceLROnPlateau") .. ":load_state_dict"
  errors.check(fname, "sd", sd, "table")
  if sd._schedulers ~= nil then
    if type(sd._schedulers) ~= "table" or not self._schedulers or #sd._schedulers ~= #self._schedulers then
      fail(fname, "sd._schedulers must list the state of each of the %d schedulers", self._schedulers and
        #self._schedulers or 0)
    end
  end
  for k, v in pairs(sd) do
    if k == "_schedulers" then
      for i, s in ipairs(v) do self._schedulers[i]:load_state_dict(s) end
    else
      self[k] = plain_copy(v)
    end
  end
end

-- ---- the schedules ----

class("StepLR", { "step_size", "gamma" }, function(self, o)
  self.step_size = number_opt("StepLR", o, "step_size", nil, function(v) return v >= 1 and v == math.floor(v) end)
  self.gamma = number_opt("StepLR", o, "gamma", 0.1)
end, function(self)
  if self.last_epoch == 0 or self.last_epoch % self.step_size ~= 0 then
    return map_groups(self, function(g) return g.lr end)
  end
  return map_groups(self, function(g) return g.lr * self.gamma end)
end, function(self)
  return map_groups(self, function(_, base) return base * self.gamma ^ (self.last_epoch // self.step_size) end)
end)

local function bisect_right(list, x)
  local n = 0
  for _, v in ipairs(list) do if v <= x then n = n + 1 end end
  return n
end

class("MultiStepLR", { "milestones", "gamma" }, function(self, o)
  if type(o.milestones) ~= "table" then fail("MultiStepLR", "option 'milestones' must be a list of steps") end
  self.milestones = {}
  for i, m in ipairs(o.milestones) do self.milestones[i] = m end
  table.sort(self.milestones)
  self.gamma = number_opt("MultiStepLR", o, "gamma", 0.1)
end, function(self)
  local count = 0
  for _, m in ipairs(self.milestones) do if m == self.last_epoch then count = count + 1 end end
  return map_groups(self, function(g) return count > 0 and g.lr * self.gamma ^ count or g.lr end)
end, function(self)
  return map_groups(self, function(_, base) return base * self.gamma ^ bisect_right(self.milestones, self.last_epoch) end)
end)

class("ExponentialLR", { "gamma" }, function(self, o)
  self.gamma = number_opt("ExponentialLR", o, "gamma")
end, function(self)
  if self.last_epoch == 0 then return map_groups(self, function(g) return g.lr end) end
  return map_groups(self, function(g) return g.lr * self.gamma end)
end, function(self)
  return map_groups(self, function(_, base) return base * self.gamma ^ self.last_epoch end)
end)

class("CosineAnnealingLR", { "T_max", "eta_min" }, function(self, o)
  self.T_max = number_opt("CosineAnnealingLR", o, "T_max", nil, function(v) return v > 0 end)
  self.eta_min = number_opt("CosineAnnealingLR", o, "eta_min", 0)
end, function(self)
  local e, T, emin = self.last_epoch, self.T_max, self.eta_min
  if e == 0 then return map_groups(self, function(g) return g.lr end) end
  if (e - 1 - T) % (2 * T) == 0 then
    return map_groups(self, function(g, base) return g.lr + (base - emin) * (1 - cos(pi / T)) / 2 end)
  end
  return map_groups(self, function(g)
    return (1 + cos(pi * e / T)) / (1 + cos(pi * (e - 1) / T)) * (g.lr - emin) + emin
  end)
end, function(self)
  return map_groups(self, function(_, base)
    return self.eta_min + (base - self.eta_min) * (1 + cos(pi * self.last_epoch / self.T_max)) / 2
  end)
end)

local Warm = class("CosineAnnealingWarmRestarts", { "T_0", "T_mult", "eta_min" }, function(self, o)
  self.T_0 = number_opt("CosineAnnealingWarmRestarts", o, "T_0", nil, function(v) return v >= 1 and v == math.floor(v) end)
  self.T_mult = number_opt("CosineAnnealingWarmRestarts", o, "T_mult", 1, function(v) return v >= 1 and v == math.floor(v) end)
  self.eta_min = number_opt("CosineAnnealingWarmRestarts", o, "eta_min", 0)
  self.T_i = self.T_0
  self.T_cur = -1
end, function(self)
  return map_groups(self, function(_, base)
    return self.eta_min + (base - self.eta_min) * (1 + cos(pi * self.T_cur / self.T_i)) / 2
  end)
end)

---@param epoch? number a fractional epoch is allowed
function Warm:step(epoch)
  errors.check("CosineAnnealingWarmRestarts:step", "epoch", epoch, "number?")
  if epoch == nil and self.last_epoch < 0 then epoch = 0 end
  if epoch == nil then
    epoch = self.last_epoch + 1
    self.T_cur = self.T_cur + 1
    if self.T_cur >= self.T_i then
      self.T_cur = self.T_cur - self.T_i
      self.T_i = self.T_i * self.T_mult
    end
  else
    if epoch < 0 then fail("CosineAnnealingWarmRestarts", "epoch must be non-negative, got %s", tostring(epoch)) end
    if epoch >= self.T_0 then
      if self.T_mult == 1 then
        self.T_cur = epoch % self.T_0
      else
        local n = math.floor(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        self.T_cur = epoch - self.T_0 * (self.T_mult ^ n - 1) / (self.T_mult - 1)
        self.T_i = self.T_0 * self.T_mult ^ n
      end
    else
      self.T_i = self.T_0
      self.T_cur = epoch
    end
  end
  self.last_epoch = math.floor(epoch)
  self._step_count = self._step_count + 1
  local values = self:get_lr()
  for i, g in ipairs(self.optimizer.param_groups) do g.lr = values[i] end
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do self._last_lr[i] = g.lr end
end

local function anneal(strategy, start, stop, pct)
  if strategy == "cos" then return stop + (start - stop) / 2.0 * (cos(pi * pct) + 1) end
  return (stop - start) * pct + start
end

class("OneCycleLR", { "max_lr", "total_steps", "epochs", "steps_per_epoch", "pct_start", "anneal_strategy",
  "div_factor", "final_div_factor", "three_phase", "cycle_momentum", "base_momentum", "max_momentum" }, function(self, o)
  local name = "OneCycleLR"
  if o.total_steps then
    self.total_steps = number_opt(name, o, "total_steps", nil, function(v) return v > 0 and v == math.floor(v) end)
  elseif o.epochs and o.steps_per_epoch then
    self.total_steps = o.epochs * o.steps_per_epoch
  else
    fail(name, "give total_steps, or epochs and steps_per_epoch")
  end
  local pct = number_opt(name, o, "pct_start", 0.3, function(v) return v >= 0 and v <= 1 end)
  self.anneal_strategy = o.anneal_strategy or "cos"
  if self.anneal_strategy ~= "cos" and self.anneal_strategy ~= "linear" then
    fail(name, 'anneal_strategy must be "cos" or "linear", got %q', tostring(self.anneal_strategy))
  end
  local div, final_div = number_opt(name, o, "div_factor", 25), number_opt(name, o, "final_div_factor", 1e4)
  local max_lr = o.max_lr
  if max_lr == nil then fail(name, "option 'max_lr' is required") end
  for i, g in ipairs(self.optimizer.param_groups) do
    local m = type(max_lr) == "table" and max_lr[i] or max_lr
    g.initial_lr = m / div
    g.max_lr = m
    g.min_lr = g.initial_lr / final_div
    self.base_lrs[i] = g.initial_lr
  end
  local T = self.total_steps
  if o.three_phase then
    self.phases = {
      { end_step = pct * T - 1, start_lr = "initial_lr", end_lr = "max_lr", start_m = "max_momentum", end_m = "base_momentum" },
      { end_step = 2 * pct * T - 2, start_lr = "max_lr", end_lr = "initial_lr",
        start_m = "base_momentum", end_m = "max_momentum" },
      { end_step = T - 1, start_lr = "initial_lr", end_lr = "min_lr", start_m = "max_momentum", end_m = "max_momentum" },
    }
  else
    self.phases = {
      { end_step = pct * T - 1, start_lr = "initial_lr", end_lr = "max_lr", start_m = "max_momentum", end_m = "base_momentum" },
      { end_step = T - 1, start_lr = "max_lr", end_lr = "min_lr", start_m = "base_momentum", end_m = "max_momentum" },
    }
  end
  self.cycle_momentum = o.cycle_momentum ~= false
  if self.cycle_momentum then
    for _, g in ipairs(self.optimizer.param_groups) do
      if g.momentum == nil and g.betas == nil then
        fail(name, "optimizer must support momentum (momentum or betas) with cycle_momentum = true; "
          .. "pass {cycle_momentum = false}")
      end
      g.base_momentum = o.base_momentum or 0.85
      g.max_momentum = o.max_momentum or 0.95
      if g.betas then g.betas = { g.max_momentum, g.betas[2] } else g.momentum = g.max_momentum end
    end
  end
end, function(self)
  local step = self.last_epoch
  if step > self.total_steps then
    fail("OneCycleLR", "tried to step %d times; total steps is %d", step + 1, self.total_steps)
  end
  return map_groups(self, function(g)
    local start_step = 0
    for i, ph in ipairs(self.phases) do
      if step <= ph.end_step or i == #self.phases then
        local pct = (step - start_step) / (ph.end_step - start_step)
        if self.cycle_momentum then
          local m = anneal(self.anneal_strategy, g[ph.start_m], g[ph.end_m], pct)
          if g.betas then g.betas = { m, g.betas[2] } else g.momentum = m end
        end
        return anneal(self.anneal_strategy, g[ph.start_lr], g[ph.end_lr], pct)
      end
      start_step = ph.end_step
    end
  end)
end)

class("LinearLR", { "start_factor", "end_factor", "total_iters" }, function(self, o)
  local name = "LinearLR"
  self.start_factor = number_opt(name, o, "start_factor", 1 / 3, function(v) return v > 0 and v <= 1 end)
  self.end_factor = number_opt(name, o, "end_factor", 1.0, function(v) return v >= 0 and v <= 1 end)
  self.total_iters = number_opt(name, o, "total_iters", 5, function(v) return v >= 0 end)
end, function(self)
  local e, s, f, T = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
  if e == 0 then return map_groups(self, function(g) return g.lr * s end) end
  if e > T then return map_groups(self, function(g) return g.lr end) end
  return map_groups(self, function(g) return g.lr * (1.0 + (f - s) / (T * s + (e - 1) * (f - s))) end)
end, function(self)
  local e = math.min(self.total_iters, self.last_epoch)
  return map_groups(self, function(_, base)
    return base * (self.start_factor + (self.end_factor - self.start_factor) * e / self.total_iters)
  end)
end)

class("PolynomialLR", { "total_iters", "power" }, function(self, o)
  self.total_iters = number_opt("PolynomialLR", o, "total_iters", 5, function(v) return v > 0 end)
  self.power = number_opt("PolynomialLR", o, "power", 1.0)
end, function(self)
  local e, T = self.last_epoch, self.total_iters
  if e == 0 or e > T then return map_groups(self, function(g) return g.lr end) end
  local f = ((1.0 - e / T) / (1.0 - (e - 1) / T)) ^ self.power
  return map_groups(self, function(g) return g.lr * f end)
end, function(self)
  local e = math.min(self.total_iters, self.last_epoch)
  return map_groups(self, function(_, base) return base * (1.0 - e / self.total_iters) ^ self.power end)
end)

class("LambdaLR", { "lr_lambda" }, function(self, o)
  local f = o.lr_lambda
  if type(f) ~= "function" and type(f) ~= "table" then fail("LambdaLR", "option 'lr_lambda' must be a function") end
  local ngroups = #self.optimizer.param_groups
  if type(f) == "table" and #f ~= ngroups then
    fail("LambdaLR", "expected %d lr_lambdas (one per parameter group), got %d", ngroups, #f)
  end
  self.lr_lambdas = {}
  for i = 1, ngroups do self.lr_lambdas[i] = type(f) == "table" and f[i] or f end
end, function(self)
  return map_groups(self, function(_, base, i) return base * self.lr_lambdas[i](self.last_epoch) end)
end)

-- FunctionLR(opt, {lr = f}): the learning rate is f(step) itself.
class("FunctionLR", { "lr" }, function(self, o)
  if type(o.lr) ~= "function" then fail("FunctionLR", "option 'lr' must be a function of the step") end
  self.fn = o.lr
end, function(self)
  return map_groups(self, function() return self.fn(self.last_epoch) end)
end)

local Seq = setmetatable({ name = "SequentialLR" }, { __index = Scheduler })
Seq.__index = Seq
M.SequentialLR = Seq
setmetatable(Seq, {
  __index = Scheduler,
  __call = function(cls, opt, o)
    check_opt("SequentialLR", opt)
    o = errors.options("SequentialLR", o, { "schedulers", "milestones" })
    local scheds, ms = o.schedulers, o.milestones
    if type(scheds) ~= "table" or #scheds < 1 then fail("SequentialLR", "option 'schedulers' must be a non-empty list") end
    if type(ms) ~= "table" or #ms ~= #scheds - 1 then
      fail("SequentialLR", "expected %d milestones for %d schedulers, got %d", #scheds - 1, #scheds,
        type(ms) == "table" and #ms or 0)
    end
    for i, s in ipairs(scheds) do
      if s.optimizer ~= opt then fail("SequentialLR", "scheduler %d belongs to a different optimizer", i) end
    end
    local self = setmetatable({ optimizer = opt, _schedulers = scheds, _milestones = ms, last_epoch = 0 }, cls)
    for _, g in ipairs(opt.param_groups) do g.lr = g.initial_lr end -- undo what the schedulers did
    for _, s in ipairs(scheds) do s.last_epoch = s.last_epoch - 1 end
    scheds[1]:_initial_step()
    self._last_lr = scheds[1]:get_last_lr()
    return self
  end,
})

---Steps the scheduler in charge, moving to the next one at each milestone.
function Seq:step()
  self.last_epoch = self.last_epoch + 1
  local idx = bisect_right(self._milestones, self.last_epoch)
  local s = self._schedulers[idx + 1]
  if idx > 0 and self._milestones[idx] == self.last_epoch then s:step(0) else s:step() end
  self._last_lr = s:get_last_lr()
end

---ReduceLROnPlateau: lowers the rate by `factor` once the metric stops improving for `patience`
---steps; sched:step(metric) after each evaluation.
---@class luagrad.optim.ReduceLROnPlateau
---@field optimizer luagrad.optim.Optimizer
---@field best number the best metric so far
---@field num_bad_epochs integer steps since the last improvement
local Plateau = {}
Plateau.__index = Plateau
M.ReduceLROnPlateau = setmetatable(Plateau, {
  __call = function(cls, opt, o)
    check_opt("ReduceLROnPlateau", opt)
    o = errors.options("ReduceLROnPlateau", o, { "mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
      "min_lr", "eps" })
    local name = "ReduceLROnPlateau"
    local self = setmetatable({ optimizer = opt, last_epoch = 0, num_bad_epochs = 0, cooldown_counter = 0 }, cls)
    self.mode = o.mode or "min"
    if self.mode ~= "min" and self.mode ~= "max" then fail(name, 'mode must be "min" or "max", got %q', tostring(self.mode)) end
    self.factor = number_opt(name, o, "factor", 0.1, function(v) return v < 1 end)
    self.patience = number_opt(name, o, "patience", 10)
    self.threshold = number_opt(name, o, "threshold", 1e-4)
    self.threshold_mode = o.threshold_mode or "rel"
    if self.threshold_mode ~= "rel" and self.threshold_mode ~= "abs" then
      fail(name, 'threshold_mode must be "rel" or "abs", got %q', tostring(self.threshold_mode))
    end
    self.cooldown = number_opt(name, o, "cooldown", 0)
    self.eps = number_opt(name, o, "eps", 1e-8)
    self.min_lrs = {}
    for i = 1, #opt.param_groups do self.min_lrs[i] = type(o.min_lr) == "table" and o.min_lr[i] or (o.min_lr or 0) end
    self.best = self.mode == "min" and math.huge or -math.huge
    self._last_lr = {}
    for i, g in ipairs(opt.param_groups) do self._last_lr[i] = g.lr end
    return self
  end,
})

---@param a number
---@param best number
---@return boolean
function Plateau:is_better(a, best)
  errors.check("ReduceLROnPlateau:is_better", "a", a, "number")
  errors.check("ReduceLROnPlateau:is_better", "best", best, "number")
  local rel = self.threshold_mode == "rel"
  if self.mode == "min" then return a < (rel and best * (1 - self.threshold) or best - self.threshold) end
  return a > (rel and best * (1 + self.threshold) or best + self.threshold)
end

---@param metric number|luagrad.Tensor a one-element tensor is read with :item()
function Plateau:step(metric)
  if type(metric) ~= "number" then
    if core.is_tensor(metric) and metric:numel() == 1 then
      metric = metric:item() -- a loss tensor, as PyTorch takes
    else
      fail("ReduceLROnPlateau:step", "metric must be a number or a one-element tensor, got %s",
        core.is_tensor(metric) and ("a tensor of shape {" .. table.concat(metric.shape, ",") .. "}") or type(metric))
    end
  end
  self.last_epoch = self.last_epoch + 1
  if self:is_better(metric, self.best) then
    self.best = metric
    self.num_bad_epochs = 0
  else
    self.num_bad_epochs = self.num_bad_epochs + 1
  end
  if self.cooldown_counter > 0 then
    self.cooldown_counter = self.cooldown_counter - 1
    self.num_bad_epochs = 0
  end
  if self.num_bad_epochs > self.patience then
    for i, g in ipairs(self.optimizer.param_groups) do
      local new = math.max(g.lr * self.factor, self.min_lrs[i])
      if g.lr - new > self.eps then g.lr = new end
    end
    self.cooldown_counter = self.cooldown
    self.num_bad_epochs = 0
  end
  for i, g in ipairs(self.optimizer.param_groups) do self._last_lr[i] = g.lr end
end

Plateau.get_last_lr = Scheduler.get_last_lr
Plateau.state_dict = Scheduler.state_dict
Plateau.load_state_dict = Scheduler.load_state_dict

return M
