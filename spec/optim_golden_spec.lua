-- Reproduces spec/golden/optim.json, spec/golden/optim_more.json and spec/golden/schedules.json
-- (PyTorch 1.13, float64, CPU): every case, every step.
--
-- optim.json: loss = mean((X W + b - Y)^2) + 0.1 sum(W^4). Each step: zero grads, loss (checked
-- against loss_before_step), backward, [clip_grad_norm_], optimizer step, [schedule step]; then W
-- and b are checked element by element against params_after_step, to 1e-9 relative
-- (|got - want| <= 1e-9 |want|, with an absolute floor of 1e-15 for entries that are zero up to
-- rounding).
--
-- optim_more.json: the same objective and tolerance for Adamax, NAdam, RAdam, Adadelta and
-- Nesterov SGD; trajectory[k] holds W and b after step k (no losses recorded).
--
-- schedules.json: lr_at_step[k] is the learning rate in force for the k-th optimizer step; the
-- schedule is stepped once after each step. Checked to 1e-12 relative. The textbook schedules
-- map to the API as the file's note describes: LinearWarmupDecay and InverseTime are LambdaLR
-- factors of base_lr, WarmupCosine is SequentialLR(LinearLR, CosineAnnealingLR).
local lg = require "luagrad"
local json = require "dkjson"
local utils = require "luagrad.nn.utils"
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"

local F64 = golden.F64
local load = golden.load

-- Fails with the case, step, name, index and both values at the first entry out of tolerance:
-- |got - want| <= max(rel |want|, abs). got and want are lists (nested or flat), counts must match.
local function close(what, got, want, rel, abs) golden.assert_close(got, want, what, rel, abs) end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function describe_case(c)
  return c.optimizer .. " " .. json.encode(c.options) .. (next(c.extra) and (" " .. json.encode(c.extra)) or "")
end

describe("optim golden (optim.json)", function()
  local d = load("optim.json")
  local X, Y = lg.tensor(d.X, F64), lg.tensor(d.Y, F64)

  it("has the cases the issue lists", function()
    assert.are.equal(11, #d.cases)
    assert.are.equal(30, d.steps)
  end)

  for ci, c in ipairs(d.cases) do
    it(string.format("case %d: %s, %d steps to 1e-9", ci, describe_case(c), d.steps), function()
      local W = lg.tensor(d.W0, F64):requires_grad_(true)
      local b = lg.tensor(d.b0, F64):requires_grad_(true)
      local opt = lg.optim[c.optimizer]({ W, b }, copy(c.options))
      local sched
      if c.extra.schedule then
        sched = lg.optim.lr_scheduler[c.extra.schedule[1]](opt, copy(c.extra.schedule[2]))
      end
      assert.are.equal(d.steps, #c.loss_before_step)
      assert.are.equal(d.steps, #c.params_after_step)
      for s = 1, d.steps do
        opt:zero_grad()
        local loss = ((X:matmul(W) + b - Y) ^ 2):mean() + (W ^ 4):sum() * 0.1
        local where = string.format("case %d step %d", ci, s)
        close(where .. " loss", { loss:item() }, { c.loss_before_step[s] }, 1e-9, 0)
        loss:backward()
        if c.extra.clip_grad_norm then utils.clip_grad_norm_({ W, b }, c.extra.clip_grad_norm) end
        opt:step()
        if sched then sched:step() end
        close(where .. " W", W:tolist(), c.params_after_step[s].W, 1e-9, 1e-15)
        close(where .. " b", b:tolist(), c.params_after_step[s].b, 1e-9, 1e-15)
      end
    end)
  end
end)

describe("optim golden (optim_more.json)", function()
  local d = load("optim_more.json")
  local X, Y = lg.tensor(d.X, F64), lg.tensor(d.Y, F64)

  it("has the cases the issue lists", function()
    local names = {}
    for i, c in ipairs(d.cases) do names[i] = c.optimizer end
    assert.are.same({ "Adamax", "NAdam", "RAdam", "Adadelta", "SGD" }, names)
  end)

  for ci, c in ipairs(d.cases) do
    local steps = #c.trajectory
    it(string.format("case %d: %s %s, %d steps to 1e-9", ci, c.optimizer, json.encode(c.options), steps), function()
      local W = lg.tensor(d.W0, F64):requires_grad_(true)
      local b = lg.tensor(d.b0, F64):requires_grad_(true)
      local opt = lg.optim[c.optimizer]({ W, b }, copy(c.options))
      assert.are.equal(25, steps)
      for s = 1, steps do
        opt:zero_grad()
        local loss = ((X:matmul(W) + b - Y) ^ 2):mean() + (W ^ 4):sum() * 0.1
        loss:backward()
        opt:step()
        local where = string.format("case %d (%s) step %d", ci, c.optimizer, s)
        close(where .. " W", W:tolist(), c.trajectory[s].W, 1e-9, 1e-15)
        close(where .. " b", b:tolist(), c.trajectory[s].b, 1e-9, 1e-15)
      end
    end)
  end
end)

describe("schedule golden (schedules.json)", function()
  local sd = load("schedules.json")
  local S = lg.optim.lr_scheduler

  local function build(c, opt)
    local o = c.options
    if c.schedule == "LinearWarmupDecay" then
      return S.LambdaLR(opt, { lr_lambda = function(t)
        return t < o.warmup and t / o.warmup or (o.total - t) / (o.total - o.warmup)
      end })
    elseif c.schedule == "InverseTime" then
      return S.LambdaLR(opt, { lr_lambda = function(t) return 1 / (1 + o.alpha * t) end })
    elseif c.schedule == "WarmupCosine" then
      local s1 = S.LinearLR(opt, { start_factor = o.start_factor, total_iters = o.warmup })
      local s2 = S.CosineAnnealingLR(opt, { T_max = o.total - o.warmup, eta_min = o.eta_min })
      return S.SequentialLR(opt, { schedulers = { s1, s2 }, milestones = { o.warmup } })
    end
    return S[c.schedule](opt, copy(o))
  end

  it("has every schedule the issue lists", function()
    assert.are.equal(10, #sd.cases)
    assert.are.equal(60, sd.steps)
  end)

  for _, c in ipairs(sd.cases) do
    it(string.format("%s %s, %d steps to 1e-12", c.schedule, json.encode(c.options), sd.steps), function()
      local W = lg.zeros(1, { requires_grad = true })
      local opt = lg.optim.SGD({ W }, { lr = sd.base_lr, momentum = 0.9 })
      local sched = build(c, opt)
      assert.are.equal(sd.steps, #c.lr_at_step)
      for k = 1, sd.steps do
        local lr = opt.param_groups[1].lr
        close(string.format("%s step %d lr", c.schedule, k), { lr }, { c.lr_at_step[k] }, 1e-12, 0)
        close(string.format("%s step %d get_last_lr", c.schedule, k), sched:get_last_lr(), { c.lr_at_step[k] }, 1e-12, 0)
        sched:step()
      end
    end)
  end
end)
