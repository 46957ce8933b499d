-- Helpers for the golden-value specs (autograd_golden, nn_golden, optim_golden): the PyTorch
-- reference files in spec/golden read as JSON, float64 tensor constructors, and the one
-- comparison they all use, |got - want| <= max(rel |want|, abs) element by element.
local lg = require "luagrad"
local json = require "dkjson"
local assert = require "luassert"
local ref = require "helpers.ref"
local util = require "helpers.util"

local golden = {}

-- spec/golden/, found from this file's own path (spec/helpers/golden.lua), so the files are read
-- whatever the current directory and wherever the repository is cloned.
local here = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
golden.DIR = (here:match("^(.*)/[^/]*$") or ".") .. "/../golden/"
golden.F64 = { dtype = "float64" }

-- the decoded JSON document spec/golden/NAME
function golden.load(name)
  local doc, _, err = json.decode(util.read_file(golden.DIR .. name))
  assert(doc, err)
  return doc
end

-- nested list -> flat row-major list (a number -> { number }); nested list -> its shape
golden.flatten = ref.flatten
golden.shape_of = ref.shape

-- float64 tensors from nested lists: a constant, and a leaf that requires grad
function golden.T(nested) return lg.tensor(nested, golden.F64) end
function golden.P(nested) return lg.tensor(nested, { dtype = "float64", requires_grad = true }) end

-- golden.assert_close(got, want, what, rel, abs): fails, naming `what`, the element and both
-- values, unless every element has |got - want| <= max(rel |want|, abs); a NaN on either side
-- fails. want: a nested list or a number. got:
--   a tensor  must be float64 and have want's shape;
--   a number  want must be a number (shape {});
--   a table   a (nested) Lua list, compared in row-major order; only the counts must match.
function golden.assert_close(got, want, what, rel, abs)
  assert.is_not_nil(got, what .. ": got nil")
  local gl
  if type(got) == "number" then
    gl = { got }
    assert.are.same(golden.shape_of(want), {}, what .. ": shape")
  elseif type(got) == "table" then
    gl = golden.flatten(got)
    assert.are.equal(#golden.flatten(want), #gl, what .. ": element count")
  else
    assert.are.equal("float64", got.dtype, what .. ": dtype")
    gl = golden.flatten(got:tolist())
    assert.are.same(golden.shape_of(want), got.shape, what .. ": shape")
  end
  local wl = golden.flatten(want)
  for i = 1, #wl do
    local g, w = gl[i], wl[i]
    local err = math.abs(g - w)
    if not (err <= math.max(rel * math.abs(w), abs)) then -- NaN fails too
      assert.is_true(false, string.format("%s: element %d is %.17g, PyTorch gives %.17g (error %.3g, allowed " ..
        "max(%g |want|, %g))", what, i, g, w, err, rel, abs))
    end
  end
end

return golden
