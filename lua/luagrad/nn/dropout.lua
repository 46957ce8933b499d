-- luagrad.nn.dropout: Dropout(p = 0.5) (or Dropout({p =})). Inverted dropout in training (each
-- element zeroed with probability p, the rest scaled by 1 / (1 - p)); the identity in eval.
-- p must lie in [0, 1]; p = 1 gives zeros.
local Module = require("luagrad.nn.module").Module
local F = require "luagrad.nn.functional"
local errors = require "luagrad.errors"

---@class luagrad.nn.Dropout: luagrad.nn.Module
---@field p number the probability of zeroing an element
---@overload fun(x: luagrad.Tensor): luagrad.Tensor
local Dropout = Module:extend("Dropout")

---@param p? number|{p?: number} in [0, 1] (default 0.5)
function Dropout:init(p)
  if type(p) == "table" then p = F._check_opts("Dropout", p, { "p" }).p end
  if p == nil then p = 0.5 end
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    errors.raisef("Dropout: p must be a probability between 0 and 1, got %s", tostring(p))
  end
  self.p = p
end

function Dropout:forward(x) return F.dropout(x, self.p, { training = self.training }) end

function Dropout:extra_repr() return string.format("p=%g", self.p) end

return { Dropout = Dropout }
