-- luagrad.nn.loss: the loss modules, each calling its nn.functional form with the options
-- given at construction: loss = nn.CrossEntropyLoss({label_smoothing = 0.1}); loss(logits, y).
--
--   CrossEntropyLoss({reduction = "mean", label_smoothing = 0})   F.cross_entropy
--   NLLLoss({reduction})                                          F.nll_loss
--   MSELoss({reduction})                                          F.mse_loss
--   BCEWithLogitsLoss({reduction, pos_weight, weight})            F.binary_cross_entropy_with_logits
--     (pos_weight and weight are buffers, as in PyTorch, so they follow to() and state_dict)
local Module = require("luagrad.nn.module").Module
local F = require "luagrad.nn.functional"
local errors = require "luagrad.errors"

local M = {}

---A loss module: loss(input, target) calls its nn.functional form with the options given at
---construction.
---@class luagrad.nn.Loss: luagrad.nn.Module
---@field reduction luagrad.nn.Reduction
---@overload fun(input: luagrad.Tensor, target: luagrad.Tensor|integer[]): luagrad.Tensor

local function loss_class(name, fn, allowed)
  local cls = Module:extend(name)
  function cls:init(opts)
    local o = errors.options(name, opts, allowed)
    self.reduction = o.reduction or "mean"
    if self.reduction ~= "mean" and self.reduction ~= "sum" and self.reduction ~= "none" then
      errors.raisef('%s: reduction must be "mean", "sum" or "none", got %s', name, tostring(self.reduction))
    end
    for _, k in ipairs(allowed) do
      if k ~= "reduction" and o[k] ~= nil then
        if k == "pos_weight" or k == "weight" then self:register_buffer(k, o[k]) else self[k] = o[k] end
      end
    end
  end
  function cls:forward(input, target)
    local o = {}
    for _, k in ipairs(allowed) do o[k] = self[k] end
    return fn(input, target, o)
  end
  function cls:extra_repr()
    local parts = {}
    if self.reduction ~= "mean" then parts[#parts + 1] = string.format('reduction="%s"', self.reduction) end
    if self.label_smoothing and self.label_smoothing ~= 0 then
      parts[#parts + 1] = string.format("label_smoothing=%g", self.label_smoothing)
    end
    return table.concat(parts, ", ")
  end
  M[name] = cls
end

loss_class("CrossEntropyLoss", F.cross_entropy, { "reduction", "label_smoothing" })
loss_class("NLLLoss", F.nll_loss, { "reduction" })
loss_class("MSELoss", F.mse_loss, { "reduction" })
loss_class("BCEWithLogitsLoss", F.binary_cross_entropy_with_logits, { "reduction", "pos_weight", "weight" })

return M
