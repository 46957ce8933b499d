-- luagrad.format: how tensors print.
--
-- The layout follows PyTorch's (four decimals, a shared column width, scientific notation when
-- magnitudes span too much, large tensors summarized by their first and last three entries along
-- each dimension) written with Lua braces, so a small tensor prints as an expression that
-- rebuilds it: tensor({{1., 2.}, {3., 4.}}).
local M = {}

local THRESHOLD = 1000 -- summarize above this many elements
local EDGE = 3         -- entries kept at each end of a summarized dimension

-- Indices shown along a dimension of size n ("..." marks the gap).
local function shown(n, summarize)
  local idx = {}
  if summarize and n > 2 * EDGE then
    for i = 1, EDGE do idx[#idx + 1] = i end
    idx[#idx + 1] = "..."
    for i = n - EDGE + 1, n do idx[#idx + 1] = i end
  else
    for i = 1, n do idx[i] = i end
  end
  return idx
end

-- Collects the numbers that will be shown, as a nested structure mirroring the layout.
local function collect(t, summarize, values)
  local nd = t:dim()
  if nd == 0 then
    local v = t:item()
    values[#values + 1] = v
    return v
  end
  local out = {}
  for _, i in ipairs(shown(t:size(1), summarize)) do
    if i == "..." then
      out[#out + 1] = "..."
    elseif nd == 1 then
      local v = t[i]
      values[#values + 1] = v
      out[#out + 1] = v
    else
      out[#out + 1] = collect(t:select(1, i), summarize, values)
    end
  end
  return out
end

-- Picks one number format for all shown values.
local function formatter(values, dtype)
  if dtype == "int64" then
    return function(v) return string.format("%d", v) end
  end
  local all_int, maxa, mina = true, 0, math.huge
  for _, v in ipairs(values) do
    if v == v and v ~= math.huge and v ~= -math.huge then
      local a = math.abs(v)
      if v ~= math.floor(v) then all_int = false end
      if a > maxa then maxa = a end
      if a > 0 and a < mina then mina = a end
    end
  end
  local function special(v)
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" end
    if v == -math.huge then return "-inf" end
  end
  if all_int and maxa < 1e8 then
    return function(v) return special(v) or string.format("%.0f.", v) end
  end
  if maxa >= 1e8 or (mina < 1e-4 and mina > 0) or (mina < math.huge and maxa / mina > 1000) then
    return function(v) return special(v) or string.format("%.4e", v) end
  end
  return function(v) return special(v) or string.format("%.4f", v) end
end

local function render(node, depth, nd, fmt, width, indent)
  if type(node) ~= "table" then
    local s = node == "..." and "..." or fmt(node)
    return string.rep(" ", width - #s) .. s
  end
  local parts = {}
  for i, child in ipairs(node) do
    parts[i] = render(child, depth + 1, nd, fmt, width, indent .. " ")
  end
  local sep
  if depth == nd - 1 then
    sep = ", "
  else
    sep = "," .. string.rep("\n", nd - depth - 1) .. indent .. " "
  end
  return "{" .. table.concat(parts, sep) .. "}"
end

---The text of a tensor, as tostring(t) prints it: tensor({{1., 2.}, {3., 4.}}).
---@param t luagrad.Tensor
---@return string
function M.tensor(t)
  local core = require "luagrad.core"
  if not core.is_tensor(t) then -- a closed tensor (`local t <close>`) is no tensor any more
    return getmetatable(t) == core._tensor_mt and "tensor(closed)" or tostring(t)
  end
  local ok, shape = pcall(function() return t.shape end)
  if not ok then return "tensor(closed)" end
  local dtype, numel, nd = t.dtype, t:numel(), t:dim()
  local opts = {}
  if dtype ~= "float32" then opts[#opts + 1] = string.format('dtype = "%s"', dtype) end
  local fn = t:grad_fn()
  if fn then
    opts[#opts + 1] = string.format('grad_fn = "%s"', fn)
  elseif t.requires_grad then
    opts[#opts + 1] = "requires_grad = true"
  end
  local body
  if numel == 0 then
    body = "{}"
    opts[#opts + 1] = "shape = {" .. table.concat(shape, ", ") .. "}"
  else
    local values = {}
    local tree = collect(t, numel > THRESHOLD, values)
    local fmt = formatter(values, dtype)
    local width = 0
    for _, v in ipairs(values) do width = math.max(width, #fmt(v)) end
    if nd == 0 then
      body = fmt(tree)
    else
      body = render(tree, 0, nd, fmt, width, string.rep(" ", #"tensor("))
    end
  end
  if #opts > 0 then
    return "tensor(" .. body .. ", {" .. table.concat(opts, ", ") .. "})"
  end
  return "tensor(" .. body .. ")"
end

return M
