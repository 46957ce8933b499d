-- luagrad.nn.loss: the loss modules, each calling its nn.functional form with the options
-- given at construction: loss = nn.CrossEntropyLoss({label_smoothing = 0.1}); loss(logits, y).
--
--   CrossEntropyLoss({reduction = "mean", label_smoothing = 0})   F.cross_entropy
--   NLLLoss({reduction})                                          F.nll_loss
--   MSELoss({reduction})                                          F.mse_loss
--   BCEWithLogitsLoss({reduction, pos_weight, weight})            F.binary_cross_entropy_with_logits
--     (pos_weight and weight are buffers, as in PyTorch, so they follow to() and state_dict)
--   L1Loss({reduction})                                           F.l1_loss
--   SmoothL1Loss({reduction, beta = 1})                           F.smooth_l1_loss
--   HuberLoss({reduction, delta = 1})                             F.huber_loss
--   BCELoss({weight, reduction})                                  F.binary_cross_entropy (weight a buffer)
--   KLDivLoss({reduction, log_target = false})                    F.kl_div (reduction may be "batchmean")
--   CosineEmbeddingLoss({margin = 0, reduction})                  F.cosine_embedding_loss;
--     loss(input1, input2, target)
local Module = require("luagrad.nn.module").Module
local F = require "luagrad.nn.functional"
local errors = require "luagrad.errors"

local M = {}

---A loss module: loss(input, target) calls its nn.functional form with the options given at
---construction.
---@class luagrad.nn.Loss: luagrad.nn.Module
---@field reduction luagrad.nn.Reduction
---@overload fun(input: luagrad.Tensor, target: luagrad.Tensor|integer[]): luagrad.Tensor

-- three_args: forward(input1, input2, target) (CosineEmbeddingLoss); batchmean: KLDivLoss's
-- extra reduction
local function loss_class(name, fn, allowed, three_args, batchmean)
  local cls = Module:extend(name)
  function cls:init(opts)
    local o = errors.options(name, opts, allowed)
    self.reduction = o.reduction or "mean"
    local r = self.reduction
    if r ~= "mean" and r ~= "sum" and r ~= "none" and not (batchmean and r == "batchmean") then
      errors.raisef('%s: reduction must be "mean", %s"sum" or "none", got %s', name,
        batchmean and '"batchmean", ' or "", tostring(r))
    end
    for _, k in ipairs(allowed) do
      if k ~= "reduction" and o[k] ~= nil then
        if k == "pos_weight" or k == "weight" then self:register_buffer(k, o[k]) else self[k] = o[k] end
      end
    end
  end
  if three_args then
    function cls:forward(input1, input2, target)
      local o = {}
      for _, k in ipairs(allowed) do o[k] = self[k] end
      return fn(input1, input2, target, o)
    end
  else
    function cls:forward(input, target)
      local o = {}
      for _, k in ipairs(allowed) do o[k] = self[k] end
      return fn(input, target, o)
    end
  end
  function cls:extra_repr()
    local parts = {}
    if self.reduction ~= "mean" then parts[#parts + 1] = string.format('reduction="%s"', self.reduction) end
    if self.label_smoothing and self.label_smoothing ~= 0 then
      parts[#parts + 1] = string.format("label_smoothing=%g", self.label_smoothing)
    end
    for _, k in ipairs({ "beta", "delta", "margin" }) do
      if self[k] ~= nil then parts[#parts + 1] = string.format("%s=%g", k, self[k]) end
    end
    if self.log_target then parts[#parts + 1] = "log_target=true" end
    return table.concat(parts, ", ")
  end
  M[name] = cls
end

loss_class("CrossEntropyLoss", F.cross_entropy, { "reduction", "label_smoothing" })
loss_class("NLLLoss", F.nll_loss, { "reduction" })
loss_class("MSELoss", F.mse_loss, { "reduction" })
loss_class("BCEWithLogitsLoss", F.binary_cross_entropy_with_logits, { "reduction", "pos_weight", "weight" })
loss_class("L1Loss", F.l1_loss, { "reduction" })
loss_class("SmoothL1Loss", F.smooth_l1_loss, { "reduction", "beta" })
loss_class("HuberLoss", F.huber_loss, { "reduction", "delta" })
loss_class("BCELoss", F.binary_cross_entropy, { "weight", "reduction" })
loss_class("KLDivLoss", F.kl_div, { "reduction", "log_target" }, false, true)
loss_class("CosineEmbeddingLoss", F.cosine_embedding_loss, { "margin", "reduction" }, true)

return M
