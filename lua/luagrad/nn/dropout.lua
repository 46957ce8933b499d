-- luagrad.nn.dropout: Dropout(p = 0.5) (or Dropout({p =})). Inverted dropout in training (each
-- element zeroed with probability p, the rest scaled by 1 / (1 - p)); the identity in eval.
-- p must lie in [0, 1]; p = 1 gives zeros. Dropout2d(p) zeroes whole channels of (N, C, H, W)
-- or (C, H, W) input instead (F.dropout2d).
local core = require "luagrad.core"
local Module = require("luagrad.nn.module").Module
local F = require "luagrad.nn.functional"
local errors = require "luagrad.errors"

---@class luagrad.nn.Dropout: luagrad.nn.Module
---@field p number the probability of zeroing an element
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Dropout = Module:extend("Dropout")

---@param p? number|{p?: number} in [0, 1] (default 0.5)
function Dropout:init(p)
  local name = getmetatable(self).__name
  if type(p) == "table" then p = errors.options(name, p, { "p" }).p end
  if p == nil then p = 0.5 end
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    errors.raisef("%s: p must be a probability between 0 and 1, got %s", name, tostring(p))
  end
  self.p = p
end

function Dropout:forward(x) return F.dropout(x, self.p, { training = self.training }) end

function Dropout:extra_repr() return string.format("p=%g", self.p) end

---Dropout2d(p = 0.5): in training each channel of (N, C, H, W) or (C, H, W) input is zeroed
---with probability p, the rest scaled by 1 / (1 - p); the identity in eval.
---@class luagrad.nn.Dropout2d: luagrad.nn.Dropout
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Dropout2d = Dropout:extend("Dropout2d")

---@param x luagrad.Tensor (N, C, H, W) or (C, H, W)
---@return luagrad.Tensor
function Dropout2d:forward(x)
  if not core.is_tensor(x) then errors.raise("Dropout2d: expected a tensor input, got " .. type(x)) end
  if x:dim() ~= 3 and x:dim() ~= 4 then
    errors.raisef("Dropout2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape %s", F._shape_str(x))
  end
  return F.dropout2d(x, self.p, { training = self.training })
end

return { Dropout = Dropout, Dropout2d = Dropout2d }
