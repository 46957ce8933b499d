-- luagrad.nn (lg.nn): neural-network modules written in Lua over the engine.
--
--   nn.Module, nn.Parameter                          (module.lua: the class, registration,
--                                                     state dicts, printing)
--   nn.Linear                                        (linear.lua)
--   nn.Sequential, nn.Residual, nn.Identity, nn.Flatten  (containers.lua)
--   nn.ReLU, Sigmoid, Tanh, GELU, LeakyReLU, ELU, SiLU, Softplus, Softmax, LogSoftmax
--                                                    (activation.lua)
--   nn.Dropout                                       (dropout.lua)
--   nn.BatchNorm1d, nn.LayerNorm                     (normalization.lua)
--   nn.CrossEntropyLoss, NLLLoss, MSELoss, BCEWithLogitsLoss  (loss.lua)
--   nn.functional (also nn.F)                        (functional.lua)
--   nn.init                                          (initializers.lua)
--   nn.utils: clip_grad_norm_, clip_grad_value_      (utils.lua)
--
-- Sequential names its children "0", "1", ... so that state-dict keys match PyTorch's
-- ("0.weight"), while seq[1] (Lua's 1-based indexing) is the first layer.
local base = require "luagrad.nn.module"

local nn = {
  Module = base.Module,
  Parameter = base.Parameter,
  is_module = base.is_module,
  functional = require "luagrad.nn.functional",
  init = require "luagrad.nn.initializers",
  utils = require "luagrad.nn.utils",
}
nn.F = nn.functional

for _, name in ipairs({ "linear", "containers", "activation", "dropout", "normalization", "loss" }) do
  for k, v in pairs(require("luagrad.nn." .. name)) do nn[k] = v end
end

return nn
