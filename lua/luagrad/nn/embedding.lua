-- luagrad.nn.embedding: Embedding(num_embeddings, embedding_dim, {padding_idx, dtype}).
--
-- A lookup table: y = weight[indices] for int64 (1-based) indices of any shape, giving
-- indices.shape .. {embedding_dim}. weight (num_embeddings, embedding_dim) starts as N(0, 1), as
-- PyTorch's, with the padding row (if any) zeroed; that row gets no gradient. The weight is an
-- ordinary Parameter, so it can be shared: a language model's output head may read it too
-- (F.linear(h, emb.weight)), and the gradients of both uses add up in its one .grad.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"
local init = require "luagrad.nn.initializers"

local Parameter = base.Parameter

---@class luagrad.nn.EmbeddingOptions
---@field padding_idx? integer the row (1-based, or negative from the end) kept at zero and given no gradient
---@field dtype? "float32"|"float64" the weight's dtype (default lg.get_default_dtype())

---@class luagrad.nn.Embedding: luagrad.nn.Module
---@field num_embeddings integer
---@field embedding_dim integer
---@field padding_idx integer|nil 1-based
---@field weight luagrad.Tensor (num_embeddings, embedding_dim)
---@overload fun(indices: luagrad.Tensor): luagrad.Tensor
local Embedding = base.Module:extend("Embedding")

---@param num_embeddings integer
---@param embedding_dim integer
---@param opts? luagrad.nn.EmbeddingOptions
function Embedding:init(num_embeddings, embedding_dim, opts)
  for what, v in pairs({ num_embeddings = num_embeddings, embedding_dim = embedding_dim }) do
    if math.type(v) ~= "integer" or v < 0 then
      errors.raisef("Embedding: %s must be a non-negative integer, got %s", what, tostring(v))
    end
  end
  local o = errors.options("Embedding", opts, { "padding_idx", "dtype" })
  local pad = o.padding_idx
  if pad ~= nil then
    if math.type(pad) ~= "integer" or pad == 0 or pad > num_embeddings or pad < -num_embeddings then
      errors.raisef("Embedding: padding_idx must be in 1..%d or -%d..-1, got %s", num_embeddings, num_embeddings,
        tostring(pad))
    end
    if pad < 0 then pad = pad + num_embeddings + 1 end
  end
  self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, pad
  local dtype = o.dtype or core.get_default_dtype()
  if dtype ~= "float32" and dtype ~= "float64" then
    errors.raisef('Embedding: dtype must be "float32" or "float64", got %s', tostring(dtype))
  end
  self.weight = Parameter(errors.call_as("Embedding", core.empty, { num_embeddings, embedding_dim }, { dtype = dtype }))
  self:reset_parameters()
end

---Draws the weight again from N(0, 1) and zeroes the padding row.
function Embedding:reset_parameters()
  init.normal_(self.weight)
  if self.padding_idx ~= nil then
    autograd.no_grad(function() self.weight[self.padding_idx]:zero_() end)
  end
end

---@param indices luagrad.Tensor int64, any shape
---@return luagrad.Tensor (..., embedding_dim)
function Embedding:forward(indices)
  if not core.is_tensor(indices) then errors.raise("Embedding: expected a tensor of indices, got " .. type(indices)) end
  local P = rawget(self, "_parameters").values
  return errors.call_as("Embedding", core._embedding, indices, P.weight, rawget(self, "_fields").padding_idx)
end

function Embedding:extra_repr()
  local s = string.format("%d, %d", self.num_embeddings, self.embedding_dim)
  if self.padding_idx ~= nil then s = s .. ", padding_idx=" .. self.padding_idx end
  return s
end

return { Embedding = Embedding }
