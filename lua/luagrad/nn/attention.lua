-- luagrad.nn.attention: MultiheadAttention(embed_dim, num_heads, {bias, batch_first, dropout, dtype}).
--
-- PyTorch's module, with its parameter names, so a state dict moves between the two:
--   in_proj_weight (3E, E)   the q, k and v projections stacked (rows 1..E project q, and so on)
--   in_proj_bias (3E)        (absent with bias = false)
--   out_proj.weight (E, E), out_proj.bias (E)
-- and its initialization: xavier_uniform_ on in_proj_weight, zero biases, out_proj.weight as a
-- Linear's (kaiming_uniform_ with a = sqrt(5)).
--
-- forward(query, key, value, opts) with query (B, T, E), key and value (B, S, E) when
-- batch_first (the default; (T, B, E) and (S, B, E) otherwise; (T, E) and (S, E) unbatched):
--   q, k, v = the three projections, split into H heads of E / H: (B, H, T, E / H), ...
--   o = scaled_dot_product_attention(q, k, v) per head, heads joined, then out_proj
-- Masks follow PyTorch's for this module: an int64 attn_mask (T, S) or (B H, T, S) or
-- key_padding_mask (B, S) hides the positions where it is nonzero (PyTorch's True); a float one
-- is added to the scores. Returns the output and, with need_weights (the default), the attention
-- weights averaged over the heads (B, T, S) (or per head, (B, H, T, S), with
-- average_attn_weights = false). need_weights = false returns nil weights and runs the fused op.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"
local init = require "luagrad.nn.initializers"
local F = require "luagrad.nn.functional"
local Linear = require("luagrad.nn.linear").Linear

local Parameter = base.Parameter
local NAME = "MultiheadAttention"

---@class luagrad.nn.MHAOptions
---@field bias? boolean learn the projections' biases (default true)
---@field batch_first? boolean inputs are (B, T, E) (default true); false: (T, B, E)
---@field dropout? number dropout on the attention weights in training (default 0)
---@field dtype? "float32"|"float64" the parameters' dtype (default lg.get_default_dtype())

---@class luagrad.nn.MultiheadAttentionForwardOptions
---@field attn_mask? luagrad.Tensor (T, S) or (B * num_heads, T, S): int64 nonzero = hidden, float = added
---@field key_padding_mask? luagrad.Tensor (B, S): int64 nonzero = a padded key, float = added
---@field need_weights? boolean return the attention weights (default true; false runs the fused op)
---@field average_attn_weights? boolean average the weights over the heads (default true)
---@field is_causal? boolean query i sees keys j <= i (not with attn_mask)

---Multi-head attention with PyTorch's parameters.
---@class luagrad.nn.MultiheadAttention: luagrad.nn.Module
---@field embed_dim integer
---@field num_heads integer
---@field head_dim integer
---@field batch_first boolean
---@field dropout number
---@field in_proj_weight luagrad.Tensor (3 embed_dim, embed_dim)
---@field in_proj_bias luagrad.Tensor|nil (3 embed_dim)
---@field out_proj luagrad.nn.Linear
---@alias luagrad.nn.MHAOpts luagrad.nn.MultiheadAttentionForwardOptions
---@overload fun(q: luagrad.Tensor, k: luagrad.Tensor, v: luagrad.Tensor, o?: luagrad.nn.MHAOpts): luagrad.Tensor, luagrad.Tensor?
local MultiheadAttention = base.Module:extend(NAME)

---@param embed_dim integer
---@param num_heads integer
---@param opts? luagrad.nn.MHAOptions
function MultiheadAttention:init(embed_dim, num_heads, opts)
  if math.type(embed_dim) ~= "integer" or embed_dim < 1 then
    errors.raisef("%s: embed_dim must be a positive integer, got %s", NAME, tostring(embed_dim))
  end
  if math.type(num_heads) ~= "integer" or num_heads < 1 then
    errors.raisef("%s: num_heads must be a positive integer, got %s", NAME, tostring(num_heads))
  end
  if embed_dim % num_heads ~= 0 then
    errors.raisef("%s: embed_dim %d is not divisible by num_heads %d", NAME, embed_dim, num_heads)
  end
  local o = errors.options(NAME, opts, { "bias", "batch_first", "dropout", "dtype" })
  local dtype = o.dtype or core.get_default_dtype()
  if dtype ~= "float32" and dtype ~= "float64" then
    errors.raisef('%s: dtype must be "float32" or "float64", got %s', NAME, tostring(dtype))
  end
  local p = o.dropout or 0
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    errors.raisef("%s: dropout must be a probability between 0 and 1, got %s", NAME, tostring(p))
  end
  self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
  self.batch_first = o.batch_first ~= false
  self.dropout = p
  self.in_proj_weight = Parameter(core.empty({ 3 * embed_dim, embed_dim }, { dtype = dtype }))
  if o.bias ~= false then self.in_proj_bias = Parameter(core.empty({ 3 * embed_dim }, { dtype = dtype })) end
  self.out_proj = Linear(embed_dim, embed_dim, { bias = o.bias ~= false, dtype = dtype })
  self:reset_parameters()
end

---Draws the parameters again: xavier_uniform_ in_proj_weight, zero biases, out_proj.weight as a
---Linear's weight.
function MultiheadAttention:reset_parameters()
  init.xavier_uniform_(self.in_proj_weight)
  if self.in_proj_bias ~= nil then init.zeros_(self.in_proj_bias) end
  self.out_proj:reset_parameters()
  if self.out_proj.bias ~= nil then init.zeros_(self.out_proj.bias) end
end

local shape_str = F._shape_str

local function check_input(x, what, E)
  if not core.is_tensor(x) then errors.raisef("%s: %s must be a tensor, got %s", NAME, what, type(x)) end
  if (x:dim() ~= 2 and x:dim() ~= 3) or x:size(-1) ~= E then
    errors.raisef("%s: %s must be (B, L, %d) or (L, %d), got shape %s", NAME, what, E, E, shape_str(x))
  end
end

-- an int64 mask (nonzero: hidden) as a float one to add: -inf where hidden, 0 elsewhere
local function additive(m, dtype)
  if m.dtype ~= "int64" then return m end
  return autograd.no_grad(function() return core.where(m, -math.huge, core.zeros(m.shape, { dtype = dtype })) end)
end

-- The mask added to the (B, H, T, S) scores from attn_mask, key_padding_mask and is_causal:
-- nil (none), or a float tensor broadcasting to that shape; and whether the fused op's own
-- causal mask does the job alone.
local function merged_mask(o, B, H, T, S, dtype)
  local am, kpm = o.attn_mask, o.key_padding_mask
  if o.is_causal and am ~= nil then
    errors.raisef("%s: give attn_mask or is_causal, not both (attn_mask %s)", NAME, shape_str(am))
  end
  if am ~= nil then
    if not core.is_tensor(am) then errors.raisef("%s: attn_mask must be a tensor, got %s", NAME, type(am)) end
    local s = am.shape
    if #s == 2 and s[1] == T and s[2] == S then
      am = additive(am, dtype)
    elseif #s == 3 and s[1] == B * H and s[2] == T and s[3] == S then
      am = additive(am, dtype):reshape(B, H, T, S)
    else
      errors.raisef("%s: attn_mask must be (%d, %d) or (%d, %d, %d) (B * num_heads, T, S), got shape %s", NAME, T, S,
        B * H, T, S, shape_str(am))
    end
  end
  if kpm ~= nil then
    if not core.is_tensor(kpm) then
      errors.raisef("%s: key_padding_mask must be a tensor, got %s", NAME, type(kpm))
    end
    local s = kpm.shape
    if not ((#s == 2 and s[1] == B and s[2] == S) or (B == 1 and #s == 1 and s[1] == S)) then
      errors.raisef("%s: key_padding_mask must be (%d, %d) (B, S), got shape %s", NAME, B, S, shape_str(kpm))
    end
    kpm = additive(kpm, dtype):reshape(B, 1, 1, S)
    if o.is_causal then am = additive(F._causal_keep(T, S):eq(0), dtype) end
    am = am and am + kpm or kpm
  end
  return am, o.is_causal == true and kpm == nil
end

---@param query luagrad.Tensor (B, T, E) ((T, B, E) unless batch_first; (T, E) unbatched)
---@param key luagrad.Tensor (B, S, E)
---@param value luagrad.Tensor (B, S, E)
---@param opts? luagrad.nn.MultiheadAttentionForwardOptions
---@return luagrad.Tensor output like query
---@return luagrad.Tensor|nil weights (B, T, S), or (B, H, T, S) per head; nil without need_weights
function MultiheadAttention:forward(query, key, value, opts)
  local E, H, hd = self.embed_dim, self.num_heads, self.head_dim
  check_input(query, "query", E)
  check_input(key, "key", E)
  check_input(value, "value", E)
  local o = errors.options(NAME .. ":forward", opts,
    { "attn_mask", "key_padding_mask", "need_weights", "average_attn_weights", "is_causal" })
  local batched = query:dim() == 3
  if key:dim() ~= query:dim() or value:dim() ~= query:dim() then
    errors.raisef("%s: query %s, key %s and value %s must all be batched (3-d) or all unbatched (2-d)", NAME,
      shape_str(query), shape_str(key), shape_str(value))
  end
  local self_attention = rawequal(query, key) and rawequal(key, value)
  if not batched then
    query, key, value = query:unsqueeze(1), key:unsqueeze(1), value:unsqueeze(1)
  elseif not self.batch_first then
    query, key, value = query:transpose(1, 2), key:transpose(1, 2), value:transpose(1, 2)
  end
  local B, T, S = query:size(1), query:size(2), key:size(2)
  if key:size(1) ~= B or value:size(1) ~= B or value:size(2) ~= S then
    errors.raisef("%s: query %s, key %s and value %s do not agree in batch size and key length", NAME,
      shape_str(query), shape_str(key), shape_str(value))
  end
  -- the projections: one GEMM for self-attention, three otherwise
  local W, b = self.in_proj_weight, self.in_proj_bias
  local q, k, v
  if self_attention then
    local qkv = F.linear(query, W, b)
    q, k, v = qkv:narrow(3, 1, E), qkv:narrow(3, E + 1, E), qkv:narrow(3, 2 * E + 1, E)
  else
    local function part(i) return W:narrow(1, i * E + 1, E), b and b:narrow(1, i * E + 1, E) end
    q, k, v = F.linear(query, part(0)), F.linear(key, part(1)), F.linear(value, part(2))
  end
  -- (B, L, E) -> (B, H, L, hd): a strided view the attention op reads in place
  local function heads(x, L) return x:reshape(B, L, H, hd):transpose(2, 3) end
  q, k, v = heads(q, T), heads(k, S), heads(v, S)
  local mask, causal = merged_mask(o, B, H, T, S, W.dtype)
  local p = self.training and self.dropout or 0
  local out, weights
  if o.need_weights == false then
    out = F.scaled_dot_product_attention(q, k, v, { attn_mask = mask, is_causal = causal, dropout_p = p })
  else
    weights = F._attention_weights(q, k, mask, causal, 1 / math.sqrt(hd))
    if p > 0 then weights = F.dropout(weights, p) end
    out = weights:matmul(v)
    if o.average_attn_weights ~= false then weights = weights:mean(2) end
    if not batched then weights = weights:squeeze(1) end
  end
  out = self.out_proj(out:transpose(2, 3):reshape(B, T, E))
  if not batched then
    out = out:squeeze(1)
  elseif not self.batch_first then
    out = out:transpose(1, 2)
  end
  return out, weights
end

function MultiheadAttention:extra_repr()
  return string.format("embed_dim=%d, num_heads=%d, bias=%s, batch_first=%s, dropout=%g", self.embed_dim,
    self.num_heads, tostring(self.in_proj_bias ~= nil), tostring(self.batch_first), self.dropout)
end

return { MultiheadAttention = MultiheadAttention }
