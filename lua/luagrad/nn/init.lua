-- luagrad.nn (lg.nn): neural-network modules written in Lua over the engine.
--
--   nn.Module, nn.Parameter                          (module.lua: the class, registration,
--                                                     state dicts, printing)
--   nn.Linear                                        (linear.lua)
--   nn.Embedding                                     (embedding.lua)
--   nn.Conv1d, nn.Conv2d                             (conv.lua)
--   nn.RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell    (recurrent.lua)
--   nn.MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, AdaptiveAvgPool2d  (pooling.lua)
--   nn.Sequential, ModuleList, ModuleDict, Residual, Identity, Flatten  (containers.lua)
--   nn.ReLU, Sigmoid, Tanh, GELU, LeakyReLU, ELU, SiLU, Softplus, Softmax, LogSoftmax
--                                                    (activation.lua)
--   nn.Dropout, nn.Dropout2d                         (dropout.lua)
--   nn.MultiheadAttention                            (attention.lua)
--   nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm     (normalization.lua)
--   nn.CrossEntropyLoss, NLLLoss, MSELoss, BCEWithLogitsLoss, L1Loss, SmoothL1Loss, HuberLoss,
--     BCELoss, KLDivLoss, CosineEmbeddingLoss  (loss.lua)
--   nn.DistributedDataParallel                       (parallel.lua: over lg.distributed)
--   nn.functional (also nn.F)                        (functional.lua)
--   nn.init                                          (initializers.lua)
--   nn.utils: clip_grad_norm_, clip_grad_value_      (utils.lua)
--   nn.summary(model, input_shape)                   (summary.lua: a table of the layers, with
--                                                     output shapes and parameter counts)
--
-- Sequential names its children "0", "1", ... so that state-dict keys match PyTorch's
-- ("0.weight"), while seq[1] (Lua's 1-based indexing) is the first layer.
local base = require "luagrad.nn.module"

---lg.nn. The layer classes are copied in from their files below; their fields here say how to
---make one (calling a class runs its init).
---@class luagrad.nn
---@field Linear fun(in_features: integer, out_features: integer, opts?: luagrad.nn.LinearOptions): luagrad.nn.Linear
---@field Embedding fun(num_embeddings: integer, embedding_dim: integer, opts?: luagrad.nn.EmbeddingOptions): luagrad.nn.Embedding
---@field Conv1d fun(in_ch: integer, out_ch: integer, kernel: integer|integer[], opts?: luagrad.nn.ConvOptions): luagrad.nn.Conv1d
---@field Conv2d fun(in_ch: integer, out_ch: integer, kernel: integer|integer[], opts?: luagrad.nn.ConvOptions): luagrad.nn.Conv2d
---@field RNN fun(input_size: integer, hidden_size: integer, opts?: luagrad.nn.RNNOptions): luagrad.nn.RNN
---@field LSTM fun(input_size: integer, hidden_size: integer, opts?: luagrad.nn.RNNOptions): luagrad.nn.LSTM
---@field GRU fun(input_size: integer, hidden_size: integer, opts?: luagrad.nn.RNNOptions): luagrad.nn.GRU
---@field RNNCell fun(input_size: integer, hidden_size: integer, opts?: luagrad.nn.RNNCellOptions): luagrad.nn.RNNCell
---@field LSTMCell fun(input_size: integer, hidden_size: integer, opts?: luagrad.nn.RNNCellOptions): luagrad.nn.LSTMCell
---@field GRUCell fun(input_size: integer, hidden_size: integer, opts?: luagrad.nn.RNNCellOptions): luagrad.nn.GRUCell
---@field MaxPool1d fun(kernel_size: integer|integer[]|table, opts?: luagrad.nn.MaxPoolOptions): luagrad.nn.MaxPool1d
---@field MaxPool2d fun(kernel_size: integer|integer[]|table, opts?: luagrad.nn.MaxPoolOptions): luagrad.nn.MaxPool2d
---@field AvgPool1d fun(kernel_size: integer|integer[]|table, opts?: luagrad.nn.AvgPoolOptions): luagrad.nn.AvgPool1d
---@field AvgPool2d fun(kernel_size: integer|integer[]|table, opts?: luagrad.nn.AvgPoolOptions): luagrad.nn.AvgPool2d
---@field AdaptiveAvgPool2d fun(output_size: integer|integer[]): luagrad.nn.AdaptiveAvgPool2d
---@field Sequential fun(...: luagrad.nn.Module|luagrad.nn.Module[]): luagrad.nn.Sequential
---@field ModuleList fun(modules?: luagrad.nn.Module[]): luagrad.nn.ModuleList
---@field ModuleDict fun(modules?: table<string, luagrad.nn.Module>): luagrad.nn.ModuleDict
---@field Residual fun(block: luagrad.nn.Module): luagrad.nn.Residual
---@field Identity fun(): luagrad.nn.Identity
---@field Flatten fun(start_dim?: integer|{start_dim?: integer, end_dim?: integer}, end_dim?: integer): luagrad.nn.Flatten
---@field ReLU fun(): luagrad.nn.Module
---@field Sigmoid fun(): luagrad.nn.Module
---@field Tanh fun(): luagrad.nn.Module
---@field SiLU fun(): luagrad.nn.Module
---@field GELU fun(opts?: "none"|"tanh"|{approximate?: "none"|"tanh"}): luagrad.nn.GELU
---@field LeakyReLU fun(opts?: number|{negative_slope?: number}): luagrad.nn.LeakyReLU
---@field ELU fun(opts?: number|{alpha?: number}): luagrad.nn.ELU
---@field Softplus fun(opts?: number|{beta?: number, threshold?: number}, threshold?: number): luagrad.nn.Softplus
---@field Softmax fun(dim: integer|{dim: integer}): luagrad.nn.Module
---@field LogSoftmax fun(dim: integer|{dim: integer}): luagrad.nn.Module
---@field Dropout fun(p?: number|{p?: number}): luagrad.nn.Dropout
---@field Dropout2d fun(p?: number|{p?: number}): luagrad.nn.Dropout2d
---@field MultiheadAttention fun(embed_dim: integer, heads: integer, opts?: luagrad.nn.MHAOptions): luagrad.nn.MultiheadAttention
---@field BatchNorm1d fun(num_features: integer, opts?: luagrad.nn.BatchNormOptions): luagrad.nn.BatchNorm1d
---@field BatchNorm2d fun(num_features: integer, opts?: luagrad.nn.BatchNormOptions): luagrad.nn.BatchNorm2d
---@field LayerNorm fun(normalized_shape: integer|integer[], opts?: luagrad.nn.LayerNormOptions): luagrad.nn.LayerNorm
---@field GroupNorm fun(num_groups: integer, num_channels: integer, opts?: luagrad.nn.GroupNormOptions): luagrad.nn.GroupNorm
---@field CrossEntropyLoss fun(opts?: luagrad.nn.CrossEntropyOptions): luagrad.nn.Loss
---@field NLLLoss fun(opts?: luagrad.nn.ReductionOptions): luagrad.nn.Loss
---@field MSELoss fun(opts?: luagrad.nn.ReductionOptions): luagrad.nn.Loss
---@field BCEWithLogitsLoss fun(opts?: luagrad.nn.BCEWithLogitsOptions): luagrad.nn.Loss
---@field L1Loss fun(opts?: luagrad.nn.ReductionOptions): luagrad.nn.Loss
---@field SmoothL1Loss fun(opts?: {reduction?: luagrad.nn.Reduction, beta?: number}): luagrad.nn.Loss
---@field HuberLoss fun(opts?: {reduction?: luagrad.nn.Reduction, delta?: number}): luagrad.nn.Loss
---@field BCELoss fun(opts?: {reduction?: luagrad.nn.Reduction, weight?: luagrad.Tensor}): luagrad.nn.Loss
---@field KLDivLoss fun(opts?: {reduction?: "mean"|"batchmean"|"sum"|"none", log_target?: boolean}): luagrad.nn.Loss
---@field CosineEmbeddingLoss fun(opts?: {reduction?: luagrad.nn.Reduction, margin?: number}): luagrad.nn.Module
---@field summary fun(model: luagrad.nn.Module, input_shape: integer[]|luagrad.Tensor|table, opts?: {dtype?: string}): table
local nn = {
  Module = base.Module,
  Parameter = base.Parameter,
  is_module = base.is_module,
  functional = require "luagrad.nn.functional",
  init = require "luagrad.nn.initializers",
  utils = require "luagrad.nn.utils",
}
nn.F = nn.functional

local FILES = { "linear", "embedding", "conv", "recurrent", "pooling", "containers", "activation", "dropout", "attention",
  "normalization", "loss", "parallel", "summary" }
for _, name in ipairs(FILES) do
  for k, v in pairs(require("luagrad.nn." .. name)) do nn[k] = v end
end

return nn
