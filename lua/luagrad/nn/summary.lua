-- luagrad.nn.summary: lg.nn.summary(model, input_shape), a table of a model's layers like
-- torchinfo's summary.
--
--   local s = lg.nn.summary(model, {2, 1, 28, 28})   -- the batch dimension included
--   print(s)                                         -- the table below
--   s.rows[2].output_shape, s.total_params           -- the same as data
--
--   Layer         Class    Output shape      Params
--   (model)       Net      {2, 10}           --
--   conv          Conv2d   {2, 8, 28, 28}    80
--   ...
--
-- One forward pass on a zero input of that shape, in evaluation mode and without recording for
-- autograd, with a forward hook on every module (Module:register_forward_hook) that notes the
-- shape of what the module returned. The modules are listed once each, in state-dict order
-- (named_modules: a parent before its children); a row's parameter count is the parameters the
-- module holds itself (not through its children), each tensor counted at the first module that
-- holds it, so the column sums to the total. Afterwards the hooks are removed and every module is
-- back in the mode it was in, also when the forward pass fails.
local core = require "luagrad.core"
local autograd = require "luagrad.autograd"
local errors = require "luagrad.errors"
local base = require "luagrad.nn.module"

local M = {}

local DTYPES = { float32 = true, float64 = true, int64 = true }

-- "1234567" -> "1,234,567"
local function commas(n)
  local s = tostring(n)
  local head, digits = s:match("^(%-?)(%d+)$")
  if not digits then return s end
  return head .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

local function shape_text(shape)
  if shape == nil then return "--" end
  local parts = {}
  for i, d in ipairs(shape) do parts[i] = tostring(d) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function shape_of(t)
  local s = {}
  for i, d in ipairs(t.shape) do s[i] = d end
  return s
end

-- a plain copy of a list's items, read raw (a table answering every index through __index, or
-- a lying __len, must not make the check loop for ever)
local function raw_list(t)
  local out = {}
  for i = 1, rawlen(t) do out[i] = rawget(t, i) end
  return out
end

-- one shape: a list of non-negative integers
local function check_shape(what, shape)
  local list = raw_list(shape)
  for i, d in ipairs(list) do
    local n = type(d) == "number" and math.tointeger(d)
    if not n or n < 0 then
      errors.raisef("summary: %s[%d] must be a non-negative integer, got %s", what, i, errors.describe(d))
    end
    list[i] = n
  end
  return list
end

local function shapes_text(shapes)
  local parts = {}
  for i, shape in ipairs(shapes) do parts[i] = shape_text(shape) end
  return table.concat(parts, ", ")
end

-- The inputs of the forward pass: input_shape is one shape (a list of integers), a tensor (the
-- input itself), or a list of shapes or tensors (several inputs).
local function make_inputs(input_shape, dtype)
  local function make(shape)
    -- zeros; int64 inputs are ones, the first index, since indices are 1-based
    if dtype == "int64" then return errors.call_as("summary", core.ones, shape, { dtype = dtype }) end
    return errors.call_as("summary", core.zeros, shape, { dtype = dtype })
  end
  if core.is_tensor(input_shape) then return { input_shape }, { shape_of(input_shape) } end
  if type(input_shape) ~= "table" then
    errors.raisef("summary: input_shape must be a list of integers (the batch dimension included), a tensor, or a " ..
      "list of those, got %s", errors.describe(input_shape))
  end
  local items = raw_list(input_shape)
  local several = #items > 0 and (type(items[1]) == "table" or core.is_tensor(items[1]))
  if not several then
    local shape = check_shape("input_shape", input_shape)
    return { make(shape) }, { shape }
  end
  local inputs, shapes = {}, {}
  for i, item in ipairs(items) do
    if core.is_tensor(item) then
      inputs[i], shapes[i] = item, shape_of(item)
    elseif type(item) == "table" then
      shapes[i] = check_shape(string.format("input_shape[%d]", i), item)
      inputs[i] = make(shapes[i])
    else
      errors.raisef("summary: input_shape[%d] must be a shape (a list of integers) or a tensor, got %s", i,
        errors.describe(item))
    end
  end
  return inputs, shapes
end

-- the table as text: the columns, then the totals
local function render(s)
  local header = { "Layer", "Class", "Output shape", "Params" }
  local cells = {}
  for i, r in ipairs(s.rows) do
    local leaf_or_own = r.params > 0 or r.children == 0
    cells[i] = { r.name == "" and "(model)" or r.name, r.class, shape_text(r.output_shape),
      leaf_or_own and commas(r.params) or "--" }
  end
  local widths = {}
  for c = 1, 4 do
    widths[c] = #header[c]
    for _, row in ipairs(cells) do widths[c] = math.max(widths[c], #row[c]) end
  end
  local function line(row)
    return string.format("%-" .. widths[1] .. "s  %-" .. widths[2] .. "s  %-" .. widths[3] .. "s  %" .. widths[4] .. "s",
      row[1], row[2], row[3], row[4])
  end
  local width = widths[1] + widths[2] + widths[3] + widths[4] + 6
  local out = { line(header), string.rep("-", width) }
  for _, row in ipairs(cells) do out[#out + 1] = line(row) end
  out[#out + 1] = string.rep("=", width)
  out[#out + 1] = "Total params: " .. commas(s.total_params)
  out[#out + 1] = "Trainable params: " .. commas(s.trainable_params)
  out[#out + 1] = "Non-trainable params: " .. commas(s.non_trainable_params)
  out[#out + 1] = string.format("Params size (MB): %.2f", s.param_bytes / 1e6)
  out[#out + 1] = "Input shape: " .. shapes_text(s.input_shapes) .. " (" .. s.dtype .. ")"
  return table.concat(out, "\n")
end

local Summary = { __name = "Summary", __tostring = render }
Summary.__index = Summary

local ELEMENT_BYTES = { float32 = 4, float64 = 8, int64 = 8 }

---summary(model, input_shape, {dtype}): runs model once on a zero input of input_shape (the
---batch dimension included; int64 inputs are ones, the first 1-based index) and returns a table
---of its layers that prints as torchinfo's summary: rows (name (the state-dict path, "" for the
---model), class, output_shape (nil for a module not called), params (the parameters it holds
---itself), trainable, calls, children), total_params, trainable_params, non_trainable_params,
---param_bytes, input_shapes, output_shape, dtype. input_shape may also be a tensor (the input
---itself) or a list of shapes or tensors (several inputs).
---@param model luagrad.nn.Module
---@param input_shape integer[]|luagrad.Tensor|(integer[]|luagrad.Tensor)[]
---@param opts? {dtype?: "float32"|"float64"|"int64"}
---@return table
function M.summary(model, input_shape, opts)
  if not base.is_module(model) then
    errors.raisef("summary: model must be a module (an instance of nn.Module), got %s", errors.describe(model))
  end
  opts = errors.options("summary", opts, { "dtype" })
  local dtype = opts.dtype or core.get_default_dtype()
  if not DTYPES[dtype] then
    errors.raisef('summary: dtype must be "float32", "float64" or "int64", got %s',
      type(dtype) == "string" and string.format("%q", dtype) or errors.describe(dtype))
  end
  local inputs, input_shapes = make_inputs(input_shape, dtype)

  -- the rows, and the parameters each module holds itself (each tensor once)
  local rows, row_of, seen = {}, {}, {}
  local total, trainable, bytes = 0, 0, 0
  for name, m in model:named_modules() do
    local row = { name = name, class = getmetatable(m).__name, params = 0, trainable = 0, calls = 0,
      children = #m:children() }
    for _, p in ipairs(m:parameters({ recurse = false })) do
      if not seen[p] then
        seen[p] = true
        local n = p:numel()
        row.params = row.params + n
        if p.requires_grad then row.trainable = row.trainable + n end
        bytes = bytes + n * (ELEMENT_BYTES[p.dtype] or 4)
      end
    end
    total, trainable = total + row.params, trainable + row.trainable
    rows[#rows + 1] = row
    row_of[m] = row
  end

  -- one forward pass with a hook on every module, in eval mode, without recording
  local modes, handles = {}, {}
  for m in pairs(row_of) do modes[m] = m.training end
  local ok, err = pcall(function()
    for m, row in pairs(row_of) do
      handles[#handles + 1] = m:register_forward_hook(function(_, _, out)
        row.calls = row.calls + 1
        if row.calls == 1 and core.is_tensor(out) then row.output_shape = shape_of(out) end
      end)
    end
    model:eval()
    autograd.no_grad(function() model(table.unpack(inputs)) end)
  end)
  for _, h in ipairs(handles) do h.remove() end
  for m, mode in pairs(modes) do m.training = mode end
  if not ok then
    if type(err) ~= "string" then error(err, 0) end
    errors.raisef("summary: the forward pass of %s on %s (%s) failed: %s", getmetatable(model).__name,
      shapes_text(input_shapes), dtype, (err:gsub("^[^\n]-:%d+: ", "")))
  end
  return setmetatable({ rows = rows, total_params = total, trainable_params = trainable,
    non_trainable_params = total - trainable, param_bytes = bytes, input_shapes = input_shapes,
    output_shape = rows[1].output_shape, dtype = dtype }, Summary)
end

return M
