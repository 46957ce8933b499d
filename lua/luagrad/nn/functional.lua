-- luagrad.nn.functional (nn.functional, also nn.F): the stateless forms of the layers and
-- losses. Tensor arguments come first and PyTorch's keyword options last, as one table; a
-- dimension or a single scalar option may be given plainly:
--
--   F.softmax(x, 2)  F.softmax(x, {dim = 2})  F.gelu(x, {approximate = "tanh"})
--   F.leaky_relu(x, 0.2)  F.dropout(x, 0.5, {training = true})  F.dropout(x, {p = 0.5})
--   F.cross_entropy(logits, {3, 1, 2}, {reduction = "sum", label_smoothing = 0.1})
--
-- Unknown option names raise (an option PyTorch has and luagrad lacks, such as
-- cross_entropy's `weight`, is an error rather than silently ignored).
--
-- Losses (reduction = "mean" | "sum" | "none"; class labels are 1-based):
--   cross_entropy(input (N, C) or (C), target, {reduction, label_smoothing})
--       target: int64 labels (N) or a Lua list of integers -> the fused C kernel
--               (log-softmax + NLL, labels checked with the bad label and the range named);
--               a float tensor of input's shape -> class probabilities:
--               -(t' * log_softmax(input, -1)):sum(-1), t' = t (1 - ls) + ls / C
--   nll_loss(input (N, C) or (C), target, {reduction})     -input[i, target[i]]
--   mse_loss(input, target, {reduction})                    (input - target)^2, no one-half
--   binary_cross_entropy_with_logits(x, y, {reduction, pos_weight, weight})
--       PyTorch's loss, -w [p y log s(x) + (1 - y) log(1 - s(x))] with p = pos_weight, written
--       as w [p y softplus(-x) + (1 - y) softplus(x)]: the stable form
--       max(x, 0) - x y + log(1 + exp(-|x|)) regrouped as a sum of two non-negative terms, so
--       nothing cancels, and its gradient is w [(1 - y + p y) s(x) - p y] everywhere,
--       including at x = 0 (the max/abs form's kinks give a wrong subgradient there).
--   l1_loss(input, target, {reduction})                     |input - target|
--   smooth_l1_loss(input, target, {reduction, beta = 1})    0.5 z^2 / beta if z < beta, else z - 0.5 beta
--   huber_loss(input, target, {reduction, delta = 1})       0.5 z^2 if z < delta, else delta (z - 0.5 delta)
--   binary_cross_entropy(x, y, {weight, reduction})         -w [y log x + (1 - y) log(1 - x)], logs >= -100
--   kl_div(input, target, {reduction, log_target})          target (log target - input); "batchmean"
--   cosine_embedding_loss(x1, x2, y, {margin, reduction})   1 - cos (y = 1), max(0, cos - margin) (y = -1)
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"

---@alias luagrad.nn.Reduction "mean"|"sum"|"none"

---@class luagrad.nn.ReductionOptions
---@field reduction? luagrad.nn.Reduction (default "mean")

---@class luagrad.nn.CrossEntropyOptions: luagrad.nn.ReductionOptions
---@field label_smoothing? number in [0, 1] (default 0)

---@class luagrad.nn.BCEWithLogitsOptions: luagrad.nn.ReductionOptions
---@field pos_weight? luagrad.Tensor the weight of positive examples, broadcast against the target
---@field weight? luagrad.Tensor a weight per element, broadcast against the loss

---@class luagrad.nn.functional.BatchNormOptions
---@field weight? luagrad.Tensor (C)
---@field bias? luagrad.Tensor (C)
---@field training? boolean use and update the batch statistics (default false)
---@field momentum? number the running statistics' update factor (default 0.1)
---@field eps? number added to the variance (default 1e-5)

---@class luagrad.nn.functional.LayerNormOptions
---@field weight? luagrad.Tensor of normalized_shape
---@field bias? luagrad.Tensor of normalized_shape
---@field eps? number added to the variance (default 1e-5)

local F = {}

local is_tensor = core.is_tensor

local function shape_str(t)
  local s = {}
  for i, d in ipairs(t.shape) do s[i] = tostring(d) end
  return "{" .. table.concat(s, ",") .. "}"
end
F._shape_str = shape_str

local function same_shape(a, b)
  local sa, sb = a.shape, b.shape -- each .shape is a fresh table: read once
  if #sa ~= #sb then return false end
  for i, d in ipairs(sa) do
    if sb[i] ~= d then return false end
  end
  return true
end

-- whether the shapes of a and b broadcast against each other
local function broadcasts(a, b)
  local sa, sb = a.shape, b.shape
  for i = 1, math.min(#sa, #sb) do
    local x, y = sa[#sa + 1 - i], sb[#sb + 1 - i]
    if x ~= y and x ~= 1 and y ~= 1 then return false end
  end
  return true
end

local function check_tensor(t, fname, what)
  if not is_tensor(t) then
    errors.raisef("%s: %s must be a tensor, got %s", fname, what or "input", type(t))
  end
end

-- opts must be nil or a table whose keys are among `allowed`; returns a table. The one checker
-- of the Lua library (errors.options; the C core's is lgL_checkoptions, with the same message).
local check_opts = errors.options

-- A plain value for the first option, or an options table: plain(x, "p", {...}).
local function plain_or_opts(fname, v, key, allowed)
  if type(v) == "table" then return check_opts(fname, v, allowed) end
  return { [key] = v }
end

-- ---- activations --------------------------------------------------------------------------

---@param x luagrad.Tensor
---@return luagrad.Tensor
function F.relu(x) check_tensor(x, "relu"); return x:relu() end
---@param x luagrad.Tensor
---@return luagrad.Tensor
function F.sigmoid(x) check_tensor(x, "sigmoid"); return x:sigmoid() end
---@param x luagrad.Tensor
---@return luagrad.Tensor
function F.tanh(x) check_tensor(x, "tanh"); return x:tanh() end
---@param x luagrad.Tensor
---@return luagrad.Tensor
function F.silu(x) check_tensor(x, "silu"); return x:silu() end

---gelu(x, {approximate = "none" | "tanh"}) or gelu(x, "tanh")
---@param x luagrad.Tensor
---@param opts? "none"|"tanh"|{approximate?: "none"|"tanh"}
---@return luagrad.Tensor
function F.gelu(x, opts)
  check_tensor(x, "gelu")
  local o = plain_or_opts("gelu", opts, "approximate", { "approximate" })
  return x:gelu({ approximate = o.approximate or "none" })
end

---leaky_relu(x, negative_slope = 0.01) or leaky_relu(x, {negative_slope = })
---@param x luagrad.Tensor
---@param opts? number|{negative_slope?: number}
---@return luagrad.Tensor
function F.leaky_relu(x, opts)
  check_tensor(x, "leaky_relu")
  local o = plain_or_opts("leaky_relu", opts, "negative_slope", { "negative_slope" })
  return x:leaky_relu(o.negative_slope or 0.01)
end

---elu(x, alpha = 1) or elu(x, {alpha = })
---@param x luagrad.Tensor
---@param opts? number|{alpha?: number}
---@return luagrad.Tensor
function F.elu(x, opts)
  check_tensor(x, "elu")
  local o = plain_or_opts("elu", opts, "alpha", { "alpha" })
  return x:elu({ alpha = o.alpha or 1 })
end

---softplus(x, {beta = 1, threshold = 20}) or softplus(x, beta, threshold)
---@param x luagrad.Tensor
---@param opts? number|{beta?: number, threshold?: number}
---@param threshold? number
---@return luagrad.Tensor
function F.softplus(x, opts, threshold)
  check_tensor(x, "softplus")
  local o = plain_or_opts("softplus", opts, "beta", { "beta", "threshold" })
  return x:softplus({ beta = o.beta or 1, threshold = o.threshold or threshold or 20 })
end

local function softmax_like(method, fname)
  return function(x, opts)
    check_tensor(x, fname)
    local o = plain_or_opts(fname, opts, "dim", { "dim" })
    if o.dim == nil then errors.raisef("%s: a dimension is needed, e.g. %s(x, -1)", fname, fname) end
    return x[method](x, o.dim)
  end
end
---softmax(x, dim) or softmax(x, {dim = }): the dimension is required.
---@type fun(x: luagrad.Tensor, dim: integer|{dim: integer}): luagrad.Tensor
F.softmax = softmax_like("softmax", "softmax")
---log_softmax(x, dim) or log_softmax(x, {dim = }): the dimension is required.
---@type fun(x: luagrad.Tensor, dim: integer|{dim: integer}): luagrad.Tensor
F.log_softmax = softmax_like("log_softmax", "log_softmax")

-- ---- linear, dropout ----------------------------------------------------------------------

---linear(x, weight (out, in), bias (out) | nil) = x W^T + b, for x (.., in)
---@param x luagrad.Tensor
---@param weight luagrad.Tensor
---@param bias? luagrad.Tensor
---@return luagrad.Tensor
function F.linear(x, weight, bias)
  check_tensor(x, "linear")
  check_tensor(weight, "linear", "weight")
  if bias ~= nil then check_tensor(bias, "linear", "bias") end
  -- one fused op: x W^T + b as a single GEMM with a fused backward (src/matmul.c); it checks
  -- the shapes and names them in its errors
  return core._linear(x, weight, bias)
end

-- dropout's and dropout2d's arguments: p = 0.5 and {training} or one table {p, training}; the
-- options and the probability, checked
local function dropout_opts(fname, p, opts)
  local o
  if type(p) == "table" then
    o = check_opts(fname, p, { "p", "training" })
  else
    o = check_opts(fname, opts, { "training" })
    o = { p = p, training = o.training }
  end
  local prob = o.p == nil and 0.5 or o.p
  if type(prob) ~= "number" or not (prob >= 0 and prob <= 1) then
    errors.raisef("%s: p must be a probability between 0 and 1, got %s", fname, tostring(prob))
  end
  return o, prob
end

-- ---- embedding, one_hot ----------------------------------------------------------------------

---embedding(indices, weight (num, dim), {padding_idx}): the rows of weight at int64 1-based
---indices of any shape, giving indices.shape .. {dim}. The weight's gradient sums the rows'
---gradients over repeated indices; the row padding_idx (1-based, or negative from the end) gets
---no gradient.
---@param indices luagrad.Tensor int64
---@param weight luagrad.Tensor (num_embeddings, embedding_dim)
---@param opts? {padding_idx?: integer}
---@return luagrad.Tensor
function F.embedding(indices, weight, opts)
  check_tensor(indices, "embedding", "indices")
  check_tensor(weight, "embedding", "weight")
  local o = check_opts("embedding", opts, { "padding_idx" })
  local pad = o.padding_idx
  if pad ~= nil then
    local num = weight:dim() == 2 and weight:size(1) or 0
    if math.type(pad) ~= "integer" then
      errors.raisef("embedding: padding_idx must be an integer, got %s", tostring(pad))
    end
    if pad < 0 then pad = pad + num + 1 end
    if pad < 1 or pad > num then
      errors.raisef("embedding: padding_idx %d out of range for %d embeddings (1..%d or -%d..-1)",
        o.padding_idx, num, num, num)
    end
  end
  return core._embedding(indices, weight, pad)
end

---one_hot(indices, num_classes = -1): int64 indices (1-based) of any shape -> int64 tensor of
---shape indices.shape .. {num_classes}, 1 at each index and 0 elsewhere; num_classes = -1 takes the
---largest index.
---@param indices luagrad.Tensor int64
---@param num_classes? integer
---@return luagrad.Tensor
function F.one_hot(indices, num_classes)
  check_tensor(indices, "one_hot", "indices")
  if indices.dtype ~= "int64" then
    errors.raisef("one_hot: indices must be int64, got %s", indices.dtype)
  end
  local C = num_classes
  if C == nil then C = -1 end
  if math.type(C) ~= "integer" or C < -1 then
    errors.raisef("one_hot: num_classes must be a non-negative integer or -1, got %s", tostring(num_classes))
  end
  local n = indices:numel()
  if C == -1 then
    if n == 0 then errors.raise("one_hot: cannot infer num_classes from empty indices; give it") end
    C = indices:max():item()
  end
  if n > 0 then
    local lo, hi = indices:min():item(), indices:max():item()
    if lo < 1 or hi > C then
      errors.raisef("one_hot: index %d out of range 1..%d (indices of shape %s)", lo < 1 and lo or hi, C,
        shape_str(indices))
    end
  end
  local shape = indices.shape
  shape[#shape + 1] = C
  local out = errors.call_as("one_hot", core.zeros, shape, { dtype = "int64" })
  if n == 0 or C == 0 then return out end
  local at = indices:unsqueeze(-1)
  return out:scatter_add(-1, at, core.ones(at.shape, { dtype = "int64" }))
end

---dropout(x, p = 0.5, {training = true}) or dropout(x, {p =, training =}): inverted dropout,
---each element zeroed with probability p and the rest scaled by 1 / (1 - p); the identity when
---not training. p = 1 gives zeros.
---@param x luagrad.Tensor
---@param p? number|{p?: number, training?: boolean}
---@param opts? {training?: boolean}
---@return luagrad.Tensor
function F.dropout(x, p, opts)
  check_tensor(x, "dropout")
  local o, prob = dropout_opts("dropout", p, opts)
  if o.training == false or prob == 0 then return x end
  if prob == 1 then return x * 0 end
  local keep = autograd.no_grad(function()
    local dtype = (x.dtype == "int64") and core.get_default_dtype() or x.dtype
    return core.empty(x.shape, { dtype = dtype }):bernoulli_(1 - prob):mul_(1 / (1 - prob))
  end)
  return x * keep
end

-- ---- attention ----------------------------------------------------------------------------

---@class luagrad.nn.functional.AttentionOptions
---@field attn_mask? luagrad.Tensor broadcastable to (..., T, S): int64 = may attend where nonzero, float = added to the scores
---@field is_causal? boolean query i sees keys j <= i (default false; not with attn_mask)
---@field dropout_p? number dropout on the attention weights (default 0; runs the composite path)
---@field scale? number the scores' factor (default 1 / sqrt(d))

local SDPA = "scaled_dot_product_attention"

-- keep[i, j] = 1 where query i may see key j (j <= i), an int64 (T, S) tensor
local function causal_keep(T, S)
  return autograd.no_grad(function()
    local i = core.arange(1, T + 1, { dtype = "int64" }):reshape(T, 1)
    local j = core.arange(1, S + 1, { dtype = "int64" }):reshape(1, S)
    return j:le(i)
  end)
end
F._causal_keep = causal_keep

-- The attention weights softmax(scale q k^T + mask) written with ordinary ops: the composite
-- path (dropout, MultiheadAttention's returned weights, the specs' reference).
function F._attention_weights(q, k, mask, is_causal, scale)
  local s = q:matmul(k:transpose(-2, -1)) * scale
  if mask ~= nil then
    if mask.dtype == "int64" then
      s = core.where(mask, s, -math.huge)
    else
      s = s + mask
    end
  end
  if is_causal then s = core.where(causal_keep(s:size(-2), s:size(-1)), s, -math.huge) end
  return s:softmax(-1)
end

-- the options of scaled_dot_product_attention, checked: mask, causal, dropout p, scale
local function sdpa_options(q, k, v, opts)
  check_tensor(q, SDPA, "q")
  check_tensor(k, SDPA, "k")
  check_tensor(v, SDPA, "v")
  local o = check_opts(SDPA, opts, { "attn_mask", "is_causal", "dropout_p", "scale" })
  local mask = o.attn_mask
  if mask ~= nil then check_tensor(mask, SDPA, "attn_mask") end
  if o.is_causal ~= nil and type(o.is_causal) ~= "boolean" then
    errors.raisef("%s: is_causal must be a boolean, got %s", SDPA, type(o.is_causal))
  end
  if o.is_causal and mask ~= nil then
    errors.raisef("%s: give attn_mask or is_causal, not both (attn_mask %s)", SDPA, shape_str(mask))
  end
  local p = o.dropout_p or 0
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    errors.raisef("%s: dropout_p must be a probability between 0 and 1, got %s", SDPA, tostring(p))
  end
  local qs = q.shape
  if #qs < 2 then
    errors.raisef("%s: q, k and v must be at least 2-d (..., T, d), got q %s, k %s, v %s", SDPA, shape_str(q),
      shape_str(k), shape_str(v))
  end
  local scale = o.scale
  if scale == nil then
    scale = qs[#qs] > 0 and 1 / math.sqrt(qs[#qs]) or 1
  elseif type(scale) ~= "number" then
    errors.raisef("%s: scale must be a number, got %s", SDPA, type(scale))
  end
  return mask, o.is_causal == true, p, scale
end

---scaled_dot_product_attention(q (..., T, d), k (..., S, d), v (..., S, dv), opts) -> (..., T, dv)
---softmax(scale q k^T + mask) v, the leading dimensions broadcasting. One fused op (src/engine/
---attention.c) unless dropout_p > 0, which runs the same math with ordinary ops and F.dropout.
---@param q luagrad.Tensor
---@param k luagrad.Tensor
---@param v luagrad.Tensor
---@param opts? luagrad.nn.functional.AttentionOptions
---@return luagrad.Tensor
function F.scaled_dot_product_attention(q, k, v, opts)
  local mask, causal, p, scale = sdpa_options(q, k, v, opts)
  if p > 0 then
    -- the composite path; the fused op checks the shapes first, so the errors are the same
    autograd.no_grad(core._scaled_dot_product_attention, q:detach(), k:detach(), v:detach(),
      mask and mask:detach(), scale, causal)
    return F.dropout(F._attention_weights(q, k, mask, causal, scale), p):matmul(v)
  end
  return core._scaled_dot_product_attention(q, k, v, mask, scale, causal)
end

-- ---- normalization ------------------------------------------------------------------------

local function channel_shape(x)
  local shape = { 1, x:size(2) }
  for _ = 3, x:dim() do shape[#shape + 1] = 1 end
  return shape
end

-- batch_norm's training path with its arguments checked (BatchNorm1d calls it directly): batch
-- statistics, then the running ones updated in place with factor f.
function F._batch_norm_train(x, running_mean, running_var, w, b, f, eps)
  if (w == nil) ~= (b == nil) then
    w = w or core.ones({ x:size(2) }, { dtype = x.dtype })
    b = b or core.zeros({ x:size(2) }, { dtype = x.dtype })
  end
  -- (N, C, H, W, ...) runs through the same fused kernel as (N, C, L): a view as (N, C, H W ...)
  local shape = x.shape
  if #shape > 3 then x = x:reshape(shape[1], shape[2], -1) end
  local y, mean, var = core._batch_norm(x, w, b, eps)
  if #shape > 3 then y = y:view(shape) end
  if running_mean ~= nil or running_var ~= nil then
    local M = x:numel() // x:size(2)
    if not core._bn_update_stats(running_mean, running_var, mean, var, f, M) then
      autograd.no_grad(function() -- buffers the fused update does not take (another dtype, a strided view)
        if running_mean ~= nil then running_mean:copy_(running_mean * (1 - f) + mean * f) end
        if running_var ~= nil then running_var:copy_(running_var * (1 - f) + var * (f * M / (M - 1))) end
      end)
    end
  end
  return y
end

-- batch_norm's per-channel tensors: nil, or C elements
local function check_channels(v, what, x, C)
  if v == nil then return end
  if not is_tensor(v) then errors.raisef("batch_norm: %s must be a tensor, got %s", what, type(v)) end
  if v:numel() ~= C then
    errors.raisef("batch_norm: %s has shape %s, expected %d elements (one per channel of %s)", what, shape_str(v), C,
      shape_str(x))
  end
end

---batch_norm(x (N, C), (N, C, L) or (N, C, H, W, ...), running_mean | nil, running_var | nil,
---           {weight, bias, training = false, momentum = 0.1, eps = 1e-5})
---Training: batch statistics (the fused C kernel, biased variance); running statistics, when
---given, are updated in place under no_grad with the unbiased variance:
---  running = (1 - momentum) running + momentum batch_stat.
---Not training: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
---@param x luagrad.Tensor
---@param running_mean luagrad.Tensor|nil (C)
---@param running_var luagrad.Tensor|nil (C)
---@param opts? luagrad.nn.functional.BatchNormOptions
---@return luagrad.Tensor
function F.batch_norm(x, running_mean, running_var, opts)
  check_tensor(x, "batch_norm")
  local o = check_opts("batch_norm", opts, { "weight", "bias", "training", "momentum", "eps" })
  errors.check("batch_norm", "opts.eps", o.eps, "number?")
  errors.check("batch_norm", "opts.momentum", o.momentum, "number?")
  local eps = o.eps or 1e-5
  local w, b = o.weight, o.bias
  if x:dim() < 2 then
    errors.raisef("batch_norm: expected input of at least 2 dimensions (N, C, ...), got shape %s", shape_str(x))
  end
  local C = x:size(2)
  check_channels(running_mean, "running_mean", x, C)
  check_channels(running_var, "running_var", x, C)
  check_channels(w, "opts.weight", x, C)
  check_channels(b, "opts.bias", x, C)
  if o.training then
    if x:numel() // C <= 1 then
      errors.raisef("batch_norm: expected more than 1 value per channel when training, got input of shape %s",
        shape_str(x))
    end
    return F._batch_norm_train(x, running_mean, running_var, w, b, o.momentum == nil and 0.1 or o.momentum, eps)
  end
  if running_mean == nil or running_var == nil then
    errors.raise("batch_norm: running_mean and running_var are needed when not training")
  end
  local shape = channel_shape(x)
  local y = (x - running_mean:view(shape)) * (running_var:view(shape) + eps):rsqrt()
  if w ~= nil then y = y * w:view(shape) end
  if b ~= nil then y = y + b:view(shape) end
  return y
end

---layer_norm(x, normalized_shape (number or table), {weight, bias, eps = 1e-5}): normalizes
---over the trailing dimensions given by normalized_shape (the fused C kernel).
---@param x luagrad.Tensor
---@param normalized_shape integer|integer[]
---@param opts? luagrad.nn.functional.LayerNormOptions
---@return luagrad.Tensor
function F.layer_norm(x, normalized_shape, opts)
  check_tensor(x, "layer_norm")
  local o = check_opts("layer_norm", opts, { "weight", "bias", "eps" })
  local ns = type(normalized_shape) == "number" and { normalized_shape } or normalized_shape
  if type(ns) ~= "table" or #ns == 0 then
    errors.raise("layer_norm: normalized_shape must be a number or a non-empty table of sizes")
  end
  for i = 1, #ns do
    local v = ns[i]
    if type(v) ~= "number" or v ~= math.floor(v) then
      errors.raisef("layer_norm: normalized_shape[%d] must be an integer size, got %s", i, errors.describe(ns[i]))
    end
  end
  local nd, k = x:dim(), #ns
  local fits = nd >= k
  for i = 1, k do
    if fits and x:size(nd - k + i) ~= ns[i] then fits = false end
  end
  if not fits then
    errors.raisef("layer_norm: expected input with trailing dimensions {%s}, got shape %s",
      table.concat(ns, ","), shape_str(x))
  end
  local w, b = o.weight, o.bias
  if (w == nil) ~= (b == nil) then
    w = w or core.ones(ns, { dtype = x.dtype })
    b = b or core.zeros(ns, { dtype = x.dtype })
  end
  return core._layer_norm(x, ns, w, b, o.eps or 1e-5)
end

---group_norm(x (N, C, *), num_groups, {weight, bias, eps = 1e-5}): splits the C channels into
---num_groups groups of C / num_groups consecutive channels and normalizes each sample's group
---over its channels and positions (mean 0, biased variance 1), then scales and shifts each
---channel by weight (C) and bias (C). Each group is one row of the fused layer-norm kernel.
---@param x luagrad.Tensor
---@param num_groups integer
---@param opts? {weight?: luagrad.Tensor, bias?: luagrad.Tensor, eps?: number}
---@return luagrad.Tensor
function F.group_norm(x, num_groups, opts)
  local fname = "group_norm"
  check_tensor(x, fname)
  local o = check_opts(fname, opts, { "weight", "bias", "eps" })
  local groups = type(num_groups) == "number" and math.tointeger(num_groups) or nil
  if groups == nil or groups < 1 then
    errors.raisef("%s: num_groups must be a positive integer, got %s", fname,
      type(num_groups) == "number" and tostring(num_groups) or errors.describe(num_groups))
  end
  num_groups = groups
  if x:dim() < 2 then
    errors.raisef("%s: expected input of shape (N, C, *) with at least 2 dimensions, got shape %s", fname, shape_str(x))
  end
  local N, C = x:size(1), x:size(2)
  if C % num_groups ~= 0 then
    errors.raisef("%s: the %d channels of input shape %s are not divisible into num_groups = %d groups", fname, C,
      shape_str(x), num_groups)
  end
  local eps = o.eps or 1e-5
  if type(eps) ~= "number" or not (eps >= 0) then
    errors.raisef("%s: eps must be a non-negative number, got %s", fname, tostring(eps))
  end
  for _, k in ipairs({ "weight", "bias" }) do
    local v = o[k]
    if v ~= nil then
      check_tensor(v, fname, k)
      if v:dim() ~= 1 or v:size(1) ~= C then
        errors.raisef("%s: %s must have shape {%d} (one value per channel), got %s", fname, k, C, shape_str(v))
      end
    end
  end
  local y
  if x:numel() == 0 then
    y = x * 1
  else
    local M = x:numel() // (N * num_groups)
    y = core._layer_norm(x:reshape(N, num_groups, M), { M }, nil, nil, eps):reshape(x.shape)
  end
  local shape = channel_shape(x)
  if o.weight ~= nil then y = y * o.weight:view(shape) end
  if o.bias ~= nil then y = y + o.bias:view(shape) end
  return y
end

-- ---- losses -------------------------------------------------------------------------------

local REDUCTIONS = { mean = true, sum = true, none = true }

-- raises unless reduction is nil, "mean", "sum" or "none"
local function check_reduction(reduction, fname)
  if reduction ~= nil and not REDUCTIONS[reduction] then
    errors.raisef('%s: reduction must be "mean", "sum" or "none", got %s', fname, tostring(reduction))
  end
end

local function reduce(loss, reduction, fname)
  check_reduction(reduction, fname)
  if reduction == nil or reduction == "mean" then return loss:mean() end
  if reduction == "sum" then return loss:sum() end
  return loss
end

-- Class labels: an int64 tensor, or a Lua list of integers (made into one).
local function labels(target, fname)
  if is_tensor(target) then return target end
  if type(target) ~= "table" then
    errors.raisef("%s: target must be an int64 tensor or a list of 1-based integer labels, got %s", fname, type(target))
  end
  -- raw reads, as lg.tensor reads the list (a table whose __index answers every key is not endless)
  for i = 1, rawlen(target) do
    local v = rawget(target, i)
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
      errors.raisef("%s: target[%d] = %s is not an integer class label", fname, i, tostring(v))
    end
    if math.type(v) == "float" and not (v >= -2 ^ 63 and v < 2 ^ 63) then
      errors.raisef("%s: target[%d] = %g is not a class label (it does not fit int64)", fname, i, v)
    end
  end
  return core.tensor(target, { dtype = "int64" })
end

local function check_logits(input, fname)
  if input:dim() ~= 1 and input:dim() ~= 2 then
    errors.raisef("%s: expected input of shape (N, C) or (C), got shape %s", fname, shape_str(input))
  end
end

local function check_label_range(target, C, fname)
  if target:numel() == 0 then return end
  if target:min():item() >= 1 and target:max():item() <= C then return end
  for i, v in ipairs(target:reshape(-1):tolist()) do
    if v < 1 or v > C then
      errors.raisef("%s: label %d at position %d is out of range 1..%d (labels are 1-based)", fname, v, i, C)
    end
  end
end

---cross_entropy(input (N, C) or (C) logits, target, {reduction, label_smoothing}); target is
---int64 labels (N) or a Lua list of 1-based integers, or class probabilities of input's shape.
---@param input luagrad.Tensor
---@param target luagrad.Tensor|integer[]
---@param opts? luagrad.nn.CrossEntropyOptions
---@return luagrad.Tensor
function F.cross_entropy(input, target, opts)
  check_tensor(input, "cross_entropy")
  local o = check_opts("cross_entropy", opts, { "reduction", "label_smoothing" })
  check_reduction(o.reduction, "cross_entropy")
  local reduction, ls = o.reduction or "mean", o.label_smoothing or 0
  errors.check("cross_entropy", "opts.reduction", reduction, "string")
  if type(ls) ~= "number" or not (ls >= 0 and ls <= 1) then
    errors.raisef("cross_entropy: label_smoothing must be between 0 and 1, got %s", tostring(ls))
  end
  check_logits(input, "cross_entropy")
  target = labels(target, "cross_entropy")
  if target.dtype == "int64" then
    check_label_range(target, input:size(-1), "cross_entropy")
    return core._cross_entropy(input, target, ls, reduction)
  end
  -- class probabilities
  if not same_shape(input, target) then
    errors.raisef("cross_entropy: a float target is read as class probabilities and must have the input's shape %s, " ..
      "got %s; for class labels pass an int64 tensor or a Lua list of 1-based integers", shape_str(input), shape_str(target))
  end
  if ls > 0 then target = target * (1 - ls) + ls / input:size(-1) end
  local loss = -(target * input:log_softmax(-1)):sum(-1)
  return reduce(loss, reduction, "cross_entropy")
end

---nll_loss(input (N, C) or (C) log-probabilities, target labels, {reduction})
---@param input luagrad.Tensor
---@param target luagrad.Tensor|integer[] int64 labels or a Lua list of 1-based integers
---@param opts? luagrad.nn.ReductionOptions
---@return luagrad.Tensor
function F.nll_loss(input, target, opts)
  check_tensor(input, "nll_loss")
  local o = check_opts("nll_loss", opts, { "reduction" })
  check_logits(input, "nll_loss")
  target = labels(target, "nll_loss")
  if target.dtype ~= "int64" then
    errors.raisef("nll_loss: class labels must be int64, got %s", target.dtype)
  end
  local C = input:size(-1)
  local loss
  if input:dim() == 2 then
    local N = input:size(1)
    if target:dim() ~= 1 or target:size(1) ~= N then
      errors.raisef("nll_loss: expected %d labels (shape {%d}) for input of shape %s, got shape %s",
        N, N, shape_str(input), shape_str(target))
    end
    check_label_range(target, C, "nll_loss")
    loss = -input:gather(2, target:view(N, 1)):view(N)
  else
    if target:numel() ~= 1 or target:dim() > 1 then
      errors.raisef("nll_loss: expected one label for input of shape %s, got shape %s", shape_str(input),
        shape_str(target))
    end
    check_label_range(target, C, "nll_loss")
    loss = -input:gather(1, target:reshape(1)):sum()
  end
  return reduce(loss, o.reduction, "nll_loss")
end

local warned = {}
local function warn_broadcast(fname, a, b)
  if warned[fname] then return end
  warned[fname] = true
  io.stderr:write(string.format("luagrad warning: %s: target shape %s differs from input shape %s; they are " ..
    "broadcast, which is rarely intended\n", fname, shape_str(b), shape_str(a)))
end

---mse_loss(input, target, {reduction}): mean (or sum) of (input - target)^2. Shapes that differ
---are broadcast with a warning, as PyTorch does.
---@param input luagrad.Tensor
---@param target luagrad.Tensor
---@param opts? luagrad.nn.ReductionOptions
---@return luagrad.Tensor
function F.mse_loss(input, target, opts)
  check_tensor(input, "mse_loss")
  check_tensor(target, "mse_loss", "target")
  local o = check_opts("mse_loss", opts, { "reduction" })
  if not same_shape(input, target) then
    if not broadcasts(input, target) then
      errors.raisef("mse_loss: target shape %s does not broadcast against input shape %s", shape_str(target),
        shape_str(input))
    end
    warn_broadcast("mse_loss", input, target)
  end
  return reduce((input - target):square(), o.reduction, "mse_loss")
end

-- softplus with a threshold where it is exact to rounding: log1p(exp(z)) for z <= 40, and z
-- above (log1p(exp(-40)) = 4e-18 is below double precision relative to 40).
local function softplus(z) return z:softplus({ beta = 1, threshold = 40 }) end

---binary_cross_entropy_with_logits(x, y, {reduction, pos_weight, weight}): see the top of this file.
---@param input luagrad.Tensor logits
---@param target luagrad.Tensor of input's shape, in [0, 1]
---@param opts? luagrad.nn.BCEWithLogitsOptions
---@return luagrad.Tensor
function F.binary_cross_entropy_with_logits(input, target, opts)
  local fname = "binary_cross_entropy_with_logits"
  check_tensor(input, fname)
  check_tensor(target, fname, "target")
  local o = check_opts(fname, opts, { "reduction", "pos_weight", "weight" })
  if not same_shape(input, target) then
    errors.raisef("%s: target shape %s must equal input shape %s", fname, shape_str(target), shape_str(input))
  end
  for _, key in ipairs({ "pos_weight", "weight" }) do
    local w = o[key]
    if w ~= nil and type(w) ~= "number" and not is_tensor(w) then
      errors.raisef("%s: %s must be a number or a tensor, got %s", fname, key, errors.describe(w))
    end
    if is_tensor(w) and not broadcasts(w, input) then
      errors.raisef("%s: %s shape %s does not broadcast against input shape %s", fname, key, shape_str(w),
        shape_str(input))
    end
  end
  local pos = target
  if o.pos_weight ~= nil then pos = target * o.pos_weight end
  local loss = pos * softplus(-input) + (1 - target) * softplus(input)
  if o.weight ~= nil then loss = loss * o.weight end
  return reduce(loss, o.reduction, fname)
end

-- ---- regression, probability and embedding losses -------------------------------------------
-- Composites of differentiable ops, as PyTorch's l1, smooth L1, Huber, KL and cosine embedding
-- losses are, so each has a gradient, a double backward and a forward-mode rule for free.

-- input and target tensors of one shape, or shapes that broadcast (with mse_loss's warning)
local function pair_of(fname, input, target)
  check_tensor(input, fname)
  check_tensor(target, fname, "target")
  if not same_shape(input, target) then
    if not broadcasts(input, target) then
      errors.raisef("%s: target shape %s does not broadcast against input shape %s", fname, shape_str(target),
        shape_str(input))
    end
    warn_broadcast(fname, input, target)
  end
end

---l1_loss(input, target, {reduction}): |input - target|, reduced. Its gradient at input ==
---target is 0, as PyTorch's.
---@param input luagrad.Tensor
---@param target luagrad.Tensor
---@param opts? luagrad.nn.ReductionOptions
---@return luagrad.Tensor
function F.l1_loss(input, target, opts)
  pair_of("l1_loss", input, target)
  local o = check_opts("l1_loss", opts, { "reduction" })
  return reduce((input - target):abs(), o.reduction, "l1_loss")
end

-- beta (or delta) from the options: a number, > 0 (or >= 0 when zero_ok)
local function positive(fname, key, v, default, zero_ok)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or (v == 0 and not zero_ok) then
    errors.raisef("%s: %s must be a %s number, got %s", fname, key, zero_ok and "non-negative" or "positive",
      type(v) == "number" and tostring(v) or errors.describe(v))
  end
  return v
end

-- z = |input - target|: quad z^2 below the threshold t, (z - 0.5 t) lin above (smooth L1:
-- quad = 0.5 / beta, lin = 1; Huber: quad = 0.5, lin = delta)
local function smooth_abs(input, target, t, quad, lin)
  local z = (input - target):abs()
  local above = lin == 1 and (z - 0.5 * t) or (z - 0.5 * t) * lin
  return core.where(z:lt(t), z:square() * quad, above)
end

---smooth_l1_loss(input, target, {reduction, beta = 1}): 0.5 z^2 / beta where z = |input -
---target| < beta, z - 0.5 beta elsewhere; beta = 0 is l1_loss.
---@param input luagrad.Tensor
---@param target luagrad.Tensor
---@param opts? {reduction?: luagrad.nn.Reduction, beta?: number}
---@return luagrad.Tensor
function F.smooth_l1_loss(input, target, opts)
  pair_of("smooth_l1_loss", input, target)
  local o = check_opts("smooth_l1_loss", opts, { "reduction", "beta" })
  local beta = positive("smooth_l1_loss", "beta", o.beta, 1.0, true)
  if beta == 0 then return reduce((input - target):abs(), o.reduction, "smooth_l1_loss") end
  return reduce(smooth_abs(input, target, beta, 0.5 / beta, 1), o.reduction, "smooth_l1_loss")
end

---huber_loss(input, target, {reduction, delta = 1}): 0.5 z^2 where z = |input - target| < delta,
---delta (z - 0.5 delta) elsewhere; delta must be positive.
---@param input luagrad.Tensor
---@param target luagrad.Tensor
---@param opts? {reduction?: luagrad.nn.Reduction, delta?: number}
---@return luagrad.Tensor
function F.huber_loss(input, target, opts)
  pair_of("huber_loss", input, target)
  local o = check_opts("huber_loss", opts, { "reduction", "delta" })
  local delta = positive("huber_loss", "delta", o.delta, 1.0, false)
  return reduce(smooth_abs(input, target, delta, 0.5, delta), o.reduction, "huber_loss")
end

-- log(x) clamped below at -100, as PyTorch's binary_cross_entropy: the clamp is on x (at e^-100)
-- rather than on the logarithm, so that at x = 0 the gradient is 0 instead of 0 * inf = NaN
local LOG_FLOOR = math.exp(-100)
local function clamped_log(x) return x:clamp(LOG_FLOOR, nil):log() end

---binary_cross_entropy(input, target, {weight, reduction}): -w [y log x + (1 - y) log(1 - x)]
---for probabilities x in [0, 1], each logarithm clamped to >= -100 as PyTorch's.
---@param input luagrad.Tensor probabilities
---@param target luagrad.Tensor of input's shape
---@param opts? {reduction?: luagrad.nn.Reduction, weight?: luagrad.Tensor}
---@return luagrad.Tensor
function F.binary_cross_entropy(input, target, opts)
  local fname = "binary_cross_entropy"
  check_tensor(input, fname)
  check_tensor(target, fname, "target")
  local o = check_opts(fname, opts, { "weight", "reduction" })
  if not same_shape(input, target) then
    errors.raisef("%s: target shape %s must equal input shape %s", fname, shape_str(target), shape_str(input))
  end
  if o.weight ~= nil then
    check_tensor(o.weight, fname, "weight")
    if not broadcasts(o.weight, input) then
      errors.raisef("%s: weight shape %s does not broadcast against input shape %s", fname, shape_str(o.weight),
        shape_str(input))
    end
  end
  if input:numel() > 0 then
    local lo, hi = input:min():item(), input:max():item()
    if not (lo >= 0 and hi <= 1) then
      errors.raisef("%s: every element of input must be a probability in [0, 1], got values from %s to %s " ..
        "(for logits use binary_cross_entropy_with_logits)", fname, tostring(lo), tostring(hi))
    end
  end
  local loss = -(target * clamped_log(input) + (1 - target) * clamped_log(1 - input))
  if o.weight ~= nil then loss = loss * o.weight end
  return reduce(loss, o.reduction, fname)
end

---kl_div(input, target, {reduction, log_target = false}): the pointwise KL divergence
---target (log target - input) for log-probabilities input (0 where target is 0), or
---exp(target) (target - input) with log_target. reduction "batchmean" divides the sum by the
---batch size (input's first dimension), which is the true KL divergence per sample; "mean"
---divides by the number of elements, as PyTorch does.
---@param input luagrad.Tensor log-probabilities
---@param target luagrad.Tensor probabilities (log-probabilities with log_target)
---@param opts? {reduction?: "mean"|"batchmean"|"sum"|"none", log_target?: boolean}
---@return luagrad.Tensor
function F.kl_div(input, target, opts)
  pair_of("kl_div", input, target)
  local o = check_opts("kl_div", opts, { "reduction", "log_target" })
  if o.log_target ~= nil and type(o.log_target) ~= "boolean" then
    errors.raisef("kl_div: log_target must be a boolean, got %s", errors.describe(o.log_target))
  end
  local loss
  if o.log_target then
    loss = target:exp() * (target - input)
  else
    -- target log target with 0 log 0 = 0 (PyTorch's xlogy); a negative target still gives NaN
    loss = target * core.where(target:eq(0), 1, target):log() - target * input
  end
  if o.reduction == "batchmean" then
    local s = loss:sum()
    if input:dim() == 0 then return s end
    return s / input:size(1)
  end
  if o.reduction ~= nil and o.reduction ~= "mean" and o.reduction ~= "sum" and o.reduction ~= "none" then
    errors.raisef('kl_div: reduction must be "mean", "batchmean", "sum" or "none", got %s', tostring(o.reduction))
  end
  return reduce(loss, o.reduction, "kl_div")
end

---cosine_embedding_loss(input1, input2, target, {margin = 0, reduction}): for rows x1, x2 of
---(N, D) inputs (or single vectors of (D)) and target 1 or -1 per row: 1 - cos(x1, x2) where the
---target is 1, max(0, cos(x1, x2) - margin) where it is -1 (0 for any other target value).
---The cosine is x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)), as PyTorch computes it.
---@param input1 luagrad.Tensor
---@param input2 luagrad.Tensor
---@param target luagrad.Tensor|number[] (N) of 1 and -1 (a number or a 0-d tensor for 1-d inputs)
---@param opts? {reduction?: luagrad.nn.Reduction, margin?: number}
---@return luagrad.Tensor
function F.cosine_embedding_loss(input1, input2, target, opts)
  local fname = "cosine_embedding_loss"
  check_tensor(input1, fname, "input1")
  check_tensor(input2, fname, "input2")
  local o = check_opts(fname, opts, { "margin", "reduction" })
  local margin = o.margin or 0
  if type(margin) ~= "number" then errors.raisef("%s: margin must be a number, got %s", fname, errors.describe(margin)) end
  if input1:dim() ~= 1 and input1:dim() ~= 2 then
    errors.raisef("%s: inputs must be 1-d (D) or 2-d (N, D), got input1 of shape %s", fname, shape_str(input1))
  end
  if not same_shape(input1, input2) then
    errors.raisef("%s: input2 shape %s must equal input1 shape %s", fname, shape_str(input2), shape_str(input1))
  end
  if type(target) == "number" then target = core.tensor(target, { dtype = input1.dtype }) end
  if type(target) == "table" and not is_tensor(target) then
    local ok, t = pcall(core.tensor, target, { dtype = input1.dtype })
    if not ok then errors.raisef("%s: target must be a tensor or a list of 1 and -1, got a table that is not one", fname) end
    target = t
  end
  check_tensor(target, fname, "target")
  local batched = input1:dim() == 2
  local want = batched and { input1:size(1) } or {}
  local ts = target.shape
  local fits = #ts == #want and (not batched or ts[1] == want[1])
  if not batched and target:numel() == 1 and #ts <= 1 then
    target = target:reshape({})
    fits = true
  end
  if not fits then
    errors.raisef("%s: target must have shape %s for inputs of shape %s, got %s", fname,
      batched and ("{" .. want[1] .. "}") or "{} (or one element)", shape_str(input1), shape_str(target))
  end
  local d = batched and 2 or 1
  local EPS = 1e-12
  local prod = (input1 * input2):sum(d)
  local mag1 = (input1 * input1):sum(d) + EPS
  local mag2 = (input2 * input2):sum(d) + EPS
  local cos = prod / (mag1 * mag2):sqrt()
  local zeros = core.zeros_like(cos)
  local pos = core.where(target:eq(1), 1 - cos, zeros)
  local neg = core.where(target:eq(-1), (cos - margin):clamp(0, nil), zeros)
  return reduce(pos + neg, o.reduction, fname)
end

-- ---- padding ------------------------------------------------------------------------------

local PAD_MODES = { constant = true, reflect = true, replicate = true, circular = true }

-- The 1-based source of every position of a dimension of size n padded by a in front and b
-- behind, for the modes that repeat the input's own values: an int64 index for index_select.
local function pad_source(mode, n, a, b)
  local idx = {}
  for i = -a, n - 1 + b do -- 0-based positions in the unpadded dimension
    local j
    if mode == "reflect" then -- mirrored about the edge element, which is not repeated
      j = i < 0 and -i or (i >= n and 2 * (n - 1) - i or i)
    elseif mode == "replicate" then
      j = math.min(math.max(i, 0), n - 1)
    else -- circular
      j = i % n
    end
    idx[#idx + 1] = j + 1
  end
  return core.tensor(idx, { dtype = "int64" })
end

---pad(x, pads, {mode = "constant", value = 0}): pads = {before, after} pairs from the last
---dimension backwards, as PyTorch's F.pad ({1, 1, 2, 0} pads the last dimension by one on each
---side and the one before it by two in front). mode "constant" fills with value (negative amounts
---crop); "reflect" mirrors the input about its edge elements (each amount below the size),
---"replicate" repeats the edge elements, "circular" wraps around (each amount at most the size).
---@param x luagrad.Tensor
---@param pads integer[]
---@param opts? {mode?: "constant"|"reflect"|"replicate"|"circular", value?: number}
---@return luagrad.Tensor
function F.pad(x, pads, opts)
  check_tensor(x, "pad")
  if type(pads) ~= "table" then errors.raisef("pad: padding must be a table of integers, got %s", type(pads)) end
  local o = check_opts("pad", opts, { "mode", "value" })
  local mode = o.mode == nil and "constant" or o.mode
  if not PAD_MODES[mode] then
    errors.raisef('pad: mode must be "constant", "reflect", "replicate" or "circular", got %s', tostring(mode))
  end
  if o.value ~= nil and type(o.value) ~= "number" then
    errors.raisef("pad: value must be a number, got %s", type(o.value))
  end
  if mode == "constant" then return core._pad(x, pads, o.value or 0) end
  if o.value ~= nil then errors.raisef('pad: value is only for mode "constant", not "%s"', mode) end
  local nd, padded = x:dim(), false
  if #pads % 2 ~= 0 or #pads > 2 * nd then
    errors.raisef("pad: padding must hold a (before, after) pair for each of at most %d dimensions of input %s, " ..
      "got %d numbers", nd, shape_str(x), #pads)
  end
  for i = 1, #pads // 2 do
    local dim, a, b = nd + 1 - i, pads[2 * i - 1], pads[2 * i]
    local n = x:size(dim)
    for _, v in ipairs({ a, b }) do
      local iv = type(v) == "number" and math.tointeger(v)
      if not iv or iv < 0 then
        errors.raisef('pad: mode "%s" needs non-negative integer amounts, got %s', mode, tostring(v))
      end
    end
    a, b = math.tointeger(a), math.tointeger(b)
    if (mode == "reflect" and (a >= n or b >= n)) or (mode == "circular" and (a > n or b > n))
      or (mode == "replicate" and n == 0 and a + b > 0) then
      errors.raisef("pad: %s padding {%d,%d} of dimension %d needs %s (input %s)", mode, a, b, dim,
        mode == "reflect" and "amounts smaller than its size" or mode == "circular" and "amounts at most its size"
        or "a non-empty dimension", shape_str(x))
    end
    if a > 0 or b > 0 then x, padded = x:index_select(dim, pad_source(mode, n, a, b)), true end
  end
  return padded and x or x:clone() -- a new tensor even when nothing was padded, as PyTorch
end

-- ---- convolution and pooling ---------------------------------------------------------------
--
-- The 1-d forms run the 2-d kernels over a height of 1. Each form also takes unbatched input,
-- (C, L) or (C, H, W), as PyTorch does. F._conv, F._max_pool and F._avg_pool take the options
-- already read and check every shape, so that their errors name the caller (the functional
-- form, or the layer: "Conv2d: ...") and the shapes involved; the layers call them directly.

local LAYOUT = { "(N, C, L)", "(N, C, H, W)" }
local UNBATCHED = { "(C, L)", "(C, H, W)" }
local WEIGHT_LAYOUT = { "(out, in/groups, k)", "(out, in/groups, kH, kW)" }

-- {1,2}, or a string option quoted
local function tuple_str(t)
  if type(t) == "string" then return '"' .. t .. '"' end
  local s = {}
  for i, v in ipairs(t) do s[i] = tostring(v) end
  return "{" .. table.concat(s, ",") .. "}"
end
F._tuple_str = tuple_str

-- tuple(fname, what, v, n, default, min): an option given as an integer or a table of n of them,
-- as a table of n integers, each at least min (1: positive, 0: non-negative).
local function tuple(fname, what, v, n, default, min)
  if v == nil then v = default end
  local kind = n == 1 and "an integer" or string.format("an integer or a table of %d integers", n)
  local t = {}
  if type(v) == "table" then
    if #v ~= n then errors.raisef("%s: %s must be %s, got a table of %d", fname, what, kind, #v) end
    for i = 1, n do t[i] = v[i] end
  elseif type(v) == "number" then
    for i = 1, n do t[i] = v end
  else
    errors.raisef("%s: %s must be %s, got %s", fname, what, kind, type(v))
  end
  for i = 1, n do
    local e = type(t[i]) == "number" and math.tointeger(t[i]) or nil
    if e == nil then errors.raisef("%s: %s must be %s, got %s", fname, what, kind, tostring(t[i])) end
    if min and e < min then
      errors.raisef("%s: %s must be %s, got %s", fname, what, min == 1 and "positive" or "non-negative", tostring(v))
    end
    t[i] = e
  end
  return t
end
F._tuple = tuple

-- x must be (n + 1)-d unbatched or (n + 2)-d batched; returns whether it is batched
local function check_spatial(fname, x, n)
  local nd = x:dim()
  if nd ~= n + 1 and nd ~= n + 2 then
    errors.raisef("%s: expected %d-d %s or %d-d %s input, got shape %s", fname, n + 1, UNBATCHED[n], n + 2, LAYOUT[n],
      shape_str(x))
  end
  if x.dtype == "int64" then errors.raisef("%s: needs a float input, got int64 of shape %s", fname, shape_str(x)) end
  return nd == n + 2
end

-- the sizes of the last n dimensions of x
local function spatial(x, n)
  local s = {}
  for d = 1, n do s[d] = x:size(x:dim() - n + d) end
  return s
end

---_conv(fname, n, x, weight, bias, stride, padding, dilation, groups): the n-d convolution (n = 1
---or 2) with its options read: stride and dilation tables of n positive integers, padding such a
---table of non-negative ones or "same" or "valid", groups a positive integer.
---@param fname string the name errors start with
---@param n integer
---@param x luagrad.Tensor
---@param weight luagrad.Tensor
---@param bias? luagrad.Tensor
---@param stride integer[]
---@param padding integer[]|"same"|"valid"
---@param dilation integer[]
---@param groups integer
---@return luagrad.Tensor
function F._conv(fname, n, x, weight, bias, stride, padding, dilation, groups)
  local batched = check_spatial(fname, x, n)
  if weight:dim() ~= n + 2 then
    errors.raisef("%s: expected a %d-d weight %s, got shape %s", fname, n + 2, WEIGHT_LAYOUT[n], shape_str(weight))
  end
  if weight.dtype == "int64" then errors.raisef("%s: needs a float weight, got int64", fname) end
  local C, O = x:size(batched and 2 or 1), weight:size(1)
  if C % groups ~= 0 then
    errors.raisef("%s: %d input channels (input %s) are not divisible by %d groups", fname, C, shape_str(x), groups)
  end
  if O % groups ~= 0 then
    errors.raisef("%s: %d output channels (weight %s) are not divisible by %d groups", fname, O, shape_str(weight), groups)
  end
  if weight:size(2) * groups ~= C then
    errors.raisef("%s: weight %s with %d group%s expects %d input channels, got input of shape %s", fname,
      shape_str(weight), groups, groups == 1 and "" or "s", weight:size(2) * groups, shape_str(x))
  end
  if bias ~= nil and (bias:dim() ~= 1 or bias:size(1) ~= O) then
    errors.raisef("%s: bias of shape %s does not match the %d output channels of weight %s", fname, shape_str(bias), O,
      shape_str(weight))
  end
  local size, kernel = spatial(x, n), spatial(weight, n)
  local before, after = {}, {}
  for d = 1, n do
    if kernel[d] < 1 then errors.raisef("%s: the kernel %s is empty (weight %s)", fname, tuple_str(kernel), shape_str(weight)) end
    if padding == "same" then
      if stride[d] ~= 1 then
        errors.raisef('%s: padding = "same" needs stride 1, got stride %s', fname, tuple_str(stride))
      end
      local total = dilation[d] * (kernel[d] - 1) -- an odd total puts the extra element after, as PyTorch
      before[d], after[d] = total // 2, total - total // 2
    elseif padding == "valid" then
      before[d], after[d] = 0, 0
    else
      before[d], after[d] = padding[d], padding[d]
    end
  end
  for d = 1, n do
    if dilation[d] * (kernel[d] - 1) + 1 > size[d] + before[d] + after[d] then
      local padded = {}
      for e = 1, n do padded[e] = size[e] + before[e] + after[e] end
      errors.raisef("%s: the kernel %s with dilation %s is larger than the padded input %s (input %s, padding %s)",
        fname, tuple_str(kernel), tuple_str(dilation), tuple_str(padded), shape_str(x), tuple_str(padding))
    end
  end
  if not batched then x = x:unsqueeze(1) end
  local extra = {} -- "same" with an odd total: the element after, padded here
  for d = n, 1, -1 do
    extra[#extra + 1] = 0
    extra[#extra + 1] = after[d] - before[d]
  end
  for d = 1, n do
    if after[d] ~= before[d] then
      x = core._pad(x, extra, 0)
      break
    end
  end
  local y
  if n == 2 then
    y = core._conv2d(x, weight, bias, stride, before, dilation, groups)
  else
    y = core._conv2d(x:unsqueeze(3), weight:unsqueeze(3), bias, { 1, stride[1] }, { 0, before[1] }, { 1, dilation[1] },
      groups):squeeze(3)
  end
  if not batched then y = y:squeeze(1) end
  return y
end

-- conv1d and conv2d from their options; a bias that is an options table is the options
local function conv(fname, n, x, weight, bias, opts)
  check_tensor(x, fname)
  check_tensor(weight, fname, "weight")
  if opts == nil and type(bias) == "table" then bias, opts = nil, bias end
  if bias ~= nil then check_tensor(bias, fname, "bias") end
  local o = check_opts(fname, opts, { "stride", "padding", "dilation", "groups" })
  local groups = o.groups == nil and 1 or o.groups
  if math.type(groups) ~= "integer" or groups < 1 then
    errors.raisef("%s: groups must be a positive integer, got %s", fname, tostring(groups))
  end
  local padding = o.padding
  if padding ~= "same" and padding ~= "valid" then
    if type(padding) == "string" then
      errors.raisef('%s: padding must be %s, "same" or "valid", got "%s"', fname,
        n == 1 and "an integer" or "an integer, a pair", padding)
    end
    padding = tuple(fname, "padding", padding, n, 0, 0)
  end
  return F._conv(fname, n, x, weight, bias, tuple(fname, "stride", o.stride, n, 1, 1), padding,
    tuple(fname, "dilation", o.dilation, n, 1, 1), groups)
end

---@class luagrad.nn.functional.ConvOptions
---@field stride? integer|integer[] (default 1)
---@field padding? integer|integer[]|"same"|"valid" (default 0)
---@field dilation? integer|integer[] (default 1)
---@field groups? integer (default 1)

---conv2d(x (N, C, H, W) or (C, H, W), weight (O, C/groups, kH, kW), bias (O) | nil,
---        {stride = 1, padding = 0 | "same" | "valid", dilation = 1, groups = 1}): numbers or {h, w}
---pairs; "same" pads so the output has the input's size (stride 1), an odd total padding putting the
---extra element after, as PyTorch. The options may take bias's place when there is no bias.
---@param x luagrad.Tensor
---@param weight luagrad.Tensor
---@param bias? luagrad.Tensor|luagrad.nn.functional.ConvOptions
---@param opts? luagrad.nn.functional.ConvOptions
---@return luagrad.Tensor
function F.conv2d(x, weight, bias, opts) return conv("conv2d", 2, x, weight, bias, opts) end

---conv1d(x (N, C, L) or (C, L), weight (O, C/groups, k), bias (O) | nil, {stride, padding, dilation,
---groups}): conv2d over a height of 1.
---@param x luagrad.Tensor
---@param weight luagrad.Tensor
---@param bias? luagrad.Tensor|luagrad.nn.functional.ConvOptions
---@param opts? luagrad.nn.functional.ConvOptions
---@return luagrad.Tensor
function F.conv1d(x, weight, bias, opts) return conv("conv1d", 1, x, weight, bias, opts) end

-- the pooling windows' checks (PyTorch's): padding at most half the kernel, a kernel that fits
-- the padded input (d: the dilation, nil for average pooling)
local function check_window(fname, x, n, k, p, d)
  local size = spatial(x, n)
  for i = 1, n do
    if p[i] > k[i] // 2 then
      errors.raisef("%s: padding %s must be at most half the kernel size %s", fname, tuple_str(p), tuple_str(k))
    end
  end
  for i = 1, n do
    if (d and d[i] or 1) * (k[i] - 1) + 1 > size[i] + 2 * p[i] then
      local padded = {}
      for e = 1, n do padded[e] = size[e] + 2 * p[e] end
      errors.raisef("%s: the kernel %s%s is larger than the padded input %s (input %s, padding %s)", fname,
        tuple_str(k), d and " with dilation " .. tuple_str(d) or "", tuple_str(padded), shape_str(x), tuple_str(p))
    end
  end
end

-- x as a 4-d (N, C, H, W) tensor for the 2-d kernels, and the function undoing that
local function as4d(x, n, batched)
  if not batched then x = x:unsqueeze(1) end
  if n == 1 then x = x:unsqueeze(3) end
  return x, function(y)
    if y == nil then return nil end
    if n == 1 then y = y:squeeze(3) end
    if not batched then y = y:squeeze(1) end
    return y
  end
end
local function pair(n, t, one) return n == 2 and t or { one, t[1] } end

---_max_pool(fname, n, x, kernel_size, stride, padding, dilation, ceil_mode) -> values, indices:
---n-d max pooling with its options read (tables of n integers).
---@return luagrad.Tensor values
---@return luagrad.Tensor indices 1-based positions in each input plane
function F._max_pool(fname, n, x, k, s, p, d, ceil_mode)
  local batched = check_spatial(fname, x, n)
  check_window(fname, x, n, k, p, d)
  local x4, back = as4d(x, n, batched)
  local y, idx = core._max_pool2d(x4, pair(n, k, 1), pair(n, s, 1), pair(n, p, 0), pair(n, d, 1), ceil_mode)
  return back(y), back(idx)
end

---_avg_pool(fname, n, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
---@return luagrad.Tensor
function F._avg_pool(fname, n, x, k, s, p, ceil_mode, count_include_pad, divisor_override)
  local batched = check_spatial(fname, x, n)
  check_window(fname, x, n, k, p, nil)
  local x4, back = as4d(x, n, batched)
  return back(core._avg_pool2d(x4, pair(n, k, 1), pair(n, s, 1), pair(n, p, 0), ceil_mode, count_include_pad,
    divisor_override))
end

-- The pools' options: pool(x, kernel_size, opts) or pool(x, opts) with opts.kernel_size.
local function pool_options(fname, kernel_size, opts, allowed)
  local o
  if type(kernel_size) == "table" and kernel_size[1] == nil then
    if opts ~= nil then errors.raisef("%s: expected (x, kernel_size, opts) or (x, opts), got two option tables", fname) end
    o = check_opts(fname, kernel_size, allowed)
  else
    o = check_opts(fname, opts, allowed)
    if kernel_size ~= nil then
      if o.kernel_size ~= nil then errors.raisef("%s: kernel_size is given twice", fname) end
      local copy = { kernel_size = kernel_size }
      for key, v in pairs(o) do copy[key] = v end
      o = copy
    end
  end
  if o.kernel_size == nil then errors.raisef("%s: kernel_size is needed", fname) end
  errors.check(fname, "ceil_mode", o.ceil_mode, "boolean?")
  return o
end

local function max_pool(fname, n, x, kernel_size, opts)
  check_tensor(x, fname)
  local o = pool_options(fname, kernel_size, opts,
    { "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices" })
  errors.check(fname, "return_indices", o.return_indices, "boolean?")
  local k = tuple(fname, "kernel_size", o.kernel_size, n, nil, 1)
  local y, idx = F._max_pool(fname, n, x, k, tuple(fname, "stride", o.stride, n, k, 1),
    tuple(fname, "padding", o.padding, n, 0, 0), tuple(fname, "dilation", o.dilation, n, 1, 1), o.ceil_mode == true)
  if o.return_indices then return y, idx end
  return y
end

local function avg_pool(fname, n, x, kernel_size, opts)
  check_tensor(x, fname)
  local allowed = { "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad" }
  if n == 2 then allowed[#allowed + 1] = "divisor_override" end
  local o = pool_options(fname, kernel_size, opts, allowed)
  errors.check(fname, "count_include_pad", o.count_include_pad, "boolean?")
  local div = o.divisor_override
  if div ~= nil and (math.type(div) ~= "integer" or div < 1) then
    errors.raisef("%s: divisor_override must be a positive integer, got %s", fname, tostring(div))
  end
  local k = tuple(fname, "kernel_size", o.kernel_size, n, nil, 1)
  return F._avg_pool(fname, n, x, k, tuple(fname, "stride", o.stride, n, k, 1), tuple(fname, "padding", o.padding, n, 0, 0),
    o.ceil_mode == true, o.count_include_pad ~= false, div)
end

---@class luagrad.nn.functional.MaxPoolOptions
---@field kernel_size? integer|integer[] the window (required, here or as the second argument)
---@field stride? integer|integer[] (default kernel_size)
---@field padding? integer|integer[] implicit -inf on each side, at most half the kernel (default 0)
---@field dilation? integer|integer[] (default 1)
---@field ceil_mode? boolean round the output size up (default false)
---@field return_indices? boolean also return the 1-based positions of the maxima (default false)

---@class luagrad.nn.functional.AvgPoolOptions
---@field kernel_size? integer|integer[] the window (required, here or as the second argument)
---@field stride? integer|integer[] (default kernel_size)
---@field padding? integer|integer[] implicit zeros on each side, at most half the kernel (default 0)
---@field ceil_mode? boolean round the output size up (default false)
---@field count_include_pad? boolean count the padding in the divisor (default true)
---@field divisor_override? integer divide by this instead (2-d only)

---max_pool2d(x (N, C, H, W) or (C, H, W), kernel_size, {stride = kernel_size, padding = 0,
---dilation = 1, ceil_mode = false, return_indices = false}) -> values[, 1-based indices into each
---H W plane]; also max_pool2d(x, {kernel_size = ..., ...}).
---@param x luagrad.Tensor
---@param kernel_size integer|integer[]|luagrad.nn.functional.MaxPoolOptions
---@param opts? luagrad.nn.functional.MaxPoolOptions
---@return luagrad.Tensor values
---@return luagrad.Tensor|nil indices
function F.max_pool2d(x, kernel_size, opts) return max_pool("max_pool2d", 2, x, kernel_size, opts) end

---max_pool1d(x (N, C, L) or (C, L), kernel_size, {stride, padding, dilation, ceil_mode,
---return_indices}): max_pool2d over a height of 1 (indices into each L).
---@param x luagrad.Tensor
---@param kernel_size integer|integer[]|luagrad.nn.functional.MaxPoolOptions
---@param opts? luagrad.nn.functional.MaxPoolOptions
---@return luagrad.Tensor values
---@return luagrad.Tensor|nil indices
function F.max_pool1d(x, kernel_size, opts) return max_pool("max_pool1d", 1, x, kernel_size, opts) end

---avg_pool2d(x (N, C, H, W) or (C, H, W), kernel_size, {stride = kernel_size, padding = 0,
---ceil_mode = false, count_include_pad = true, divisor_override}); also avg_pool2d(x, {kernel_size, ...}).
---@param x luagrad.Tensor
---@param kernel_size integer|integer[]|luagrad.nn.functional.AvgPoolOptions
---@param opts? luagrad.nn.functional.AvgPoolOptions
---@return luagrad.Tensor
function F.avg_pool2d(x, kernel_size, opts) return avg_pool("avg_pool2d", 2, x, kernel_size, opts) end

---avg_pool1d(x (N, C, L) or (C, L), kernel_size, {stride, padding, ceil_mode, count_include_pad})
---@param x luagrad.Tensor
---@param kernel_size integer|integer[]|luagrad.nn.functional.AvgPoolOptions
---@param opts? luagrad.nn.functional.AvgPoolOptions
---@return luagrad.Tensor
function F.avg_pool1d(x, kernel_size, opts) return avg_pool("avg_pool1d", 1, x, kernel_size, opts) end

---adaptive_avg_pool2d(x (N, C, H, W) or (C, H, W), output_size (a number or {h, w})): output
---row i averages the input rows floor((i - 1) H / h) + 1 to ceil(i H / h) (likewise columns).
---@param x luagrad.Tensor
---@param output_size integer|integer[]
---@return luagrad.Tensor
function F.adaptive_avg_pool2d(x, output_size)
  local fname = "adaptive_avg_pool2d"
  check_tensor(x, fname)
  return F._adaptive_avg_pool(fname, x, tuple(fname, "output_size", output_size, 2, nil, 1))
end

---_adaptive_avg_pool(fname, x, output_size): adaptive_avg_pool2d with its size read.
---@return luagrad.Tensor
function F._adaptive_avg_pool(fname, x, size)
  local batched = check_spatial(fname, x, 2)
  local x4, back = as4d(x, 2, batched)
  return back(core._avg_pool2d(x4, size, nil, nil, false, false, nil, true))
end

---dropout2d(x (N, C, H, W) or (C, H, W), p = 0.5, {training = true}): zeroes whole channels with
---probability p, scaling the rest by 1 / (1 - p).
---@param x luagrad.Tensor
---@param p? number|table
---@param opts? {training?: boolean}
---@return luagrad.Tensor
function F.dropout2d(x, p, opts)
  check_tensor(x, "dropout2d")
  local o, prob = dropout_opts("dropout2d", p, opts)
  if x:dim() ~= 3 and x:dim() ~= 4 then
    errors.raisef("dropout2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape %s", shape_str(x))
  end
  if o.training == false or prob == 0 then return x end
  if prob == 1 then return x * 0 end
  local mask_shape = {}
  for d = 1, x:dim() do mask_shape[d] = d <= x:dim() - 2 and x:size(d) or 1 end
  local keep = autograd.no_grad(function()
    return core.empty(mask_shape, { dtype = x.dtype }):bernoulli_(1 - prob):mul_(1 / (1 - prob))
  end)
  return x * keep
end

return F
