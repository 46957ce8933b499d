-- luagrad.nn.utils: gradient clipping, the reference text's cure for exploding gradients:
-- g <- g * min(1, c / ||g||), with ||g|| the norm of all gradients taken together.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"

local M = {}

local function grads_of(params, name)
  if core.is_tensor(params) then params = { params } end
  if type(params) ~= "table" then errors.raise(name .. ": params must be a tensor or a list of tensors") end
  local gs = {}
  for i, p in ipairs(params) do
    if not core.is_tensor(p) then errors.raisef("%s: params[%d] is a %s, not a tensor", name, i, type(p)) end
    local g = p.grad
    if g ~= nil then gs[#gs + 1] = g end
  end
  return gs
end

---clip_grad_norm_(params, max_norm, {norm_type = 2, error_if_nonfinite = false}) scales every
---gradient in place by min(1, max_norm / (total + 1e-6)) and returns the total norm before
---clipping (a 0-d tensor). norm_type may be math.huge (the largest |g|).
---@param params luagrad.Tensor|luagrad.Tensor[] parameters; those without a gradient are skipped
---@param max_norm number
---@param opts? {norm_type?: number, error_if_nonfinite?: boolean}
---@return luagrad.Tensor total_norm
function M.clip_grad_norm_(params, max_norm, opts)
  opts = errors.options("clip_grad_norm_", opts, { "norm_type", "error_if_nonfinite" })
  local p = opts.norm_type or 2
  if type(max_norm) ~= "number" then errors.raise("clip_grad_norm_: max_norm must be a number, got " .. type(max_norm)) end
  if type(p) ~= "number" then errors.raise("clip_grad_norm_: norm_type must be a number, got " .. type(p)) end
  local gs = grads_of(params, "clip_grad_norm_")
  if #gs == 0 then return core.tensor(0.0) end
  return autograd.no_grad(function()
    local total
    if p == math.huge then
      local norms = {}
      for i, g in ipairs(gs) do norms[i] = g:abs():max():to(gs[1].dtype) end
      total = core.stack(norms):max()
    else
      local norms = {}
      for i, g in ipairs(gs) do norms[i] = g:norm(p):to(gs[1].dtype) end
      total = core.stack(norms):norm(p)
    end
    local t = total:item()
    if opts.error_if_nonfinite and (t ~= t or t == math.huge or t == -math.huge) then
      errors.raisef("clip_grad_norm_: the total norm of order %s of the gradients is %s, so it cannot be clipped; "
        .. "pass {error_if_nonfinite = false} to clip anyway", tostring(p), tostring(t))
    end
    local coef = ((total + 1e-6):reciprocal() * max_norm):clamp(nil, 1.0) -- max_norm / (total + 1e-6), at most 1
    for _, g in ipairs(gs) do g:mul_(coef:to(g.dtype)) end
    return total
  end)
end

---clip_grad_value_(params, v) clamps every gradient element into [-v, v] in place.
---@param params luagrad.Tensor|luagrad.Tensor[]
---@param clip_value number non-negative
function M.clip_grad_value_(params, clip_value)
  if type(clip_value) ~= "number" or clip_value < 0 then
    errors.raise("clip_grad_value_: clip_value must be a non-negative number, got " .. tostring(clip_value))
  end
  local gs = grads_of(params, "clip_grad_value_")
  autograd.no_grad(function()
    for _, g in ipairs(gs) do g:clamp_(-clip_value, clip_value) end
  end)
end

return M
