-- t[i], t[{...}], t[mask], t[idx] (reading and assigning), index_select, gather, cat, stack, split, chunk.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"

local function i64(x) return lg.tensor(x, { dtype = "int64" }) end
local function base34() return lg.arange(12):view(3, 4):to("float32") end

describe("t[i]", function()
  it("is a view of dim 1's i-th slice", function()
    local b = base34()
    local r = b[2]
    assert.are.same({ 4 }, r.shape)
    assert.are.same({ 4, 5, 6, 7 }, r:tolist())
    r[1] = 40
    assert.are.equal(40, b[2][1])
    assert.are.same({ 8, 9, 10, 11 }, b[-1]:tolist())
    assert.are.same({ 0, 1, 2, 3 }, b[-3]:tolist())
  end)

  it("on a 1-d tensor is a number", function()
    local t = lg.tensor({ 1.5, 2, 3 })
    assert.are.equal("number", type(t[1]))
    assert.are.equal(1.5, t[1])
    assert.are.equal(3, t[-1])
    assert.are.equal("integer", math.type(i64({ 4, 5 })[2]))
  end)

  it("works on transposed and narrowed views", function()
    local b = base34()
    assert.are.same({ 1, 5, 9 }, b:t()[2]:tolist())
    assert.are.equal(6, b:t()[3][2])
    local n = b:narrow(2, 2, 2)
    assert.are.same({ 9, 10 }, n[3]:tolist())
    assert.are.equal(10, n[-1][-1])
  end)

  it("t[i] = number broadcasts over the slice", function()
    local b = base34()
    b[2] = -1
    assert.are.same({ { 0, 1, 2, 3 }, { -1, -1, -1, -1 }, { 8, 9, 10, 11 } }, b:tolist())
    b[-1] = 0.5
    assert.are.same({ 0.5, 0.5, 0.5, 0.5 }, b[3]:tolist())
    local v = lg.zeros(3)
    v[2] = 7
    v[-1] = 9
    assert.are.same({ 0, 7, 9 }, v:tolist())
  end)

  it("t[i] = tensor copies (with broadcasting) into the slice", function()
    local b = lg.zeros(2, 3)
    b[1] = lg.tensor({ 1, 2, 3 })
    b[2] = lg.tensor({ 5 })
    assert.are.same({ { 1, 2, 3 }, { 5, 5, 5 } }, b:tolist())
    local t = lg.zeros(3, 2)
    t:t()[2] = lg.tensor({ 4, 5, 6 })
    assert.are.same({ { 0, 4 }, { 0, 5 }, { 0, 6 } }, t:tolist())
  end)

  it("#t is the size of dim 1", function()
    assert.are.equal(3, #base34())
    assert.are.equal(4, #base34():t())
    assert.are.equal(0, #lg.zeros(0, 2))
  end)
end)

describe("index_select", function()
  it("picks rows and columns with 1-based int64 indices or a Lua table", function()
    local b = base34()
    assert.are.same({ { 8, 9, 10, 11 }, { 0, 1, 2, 3 } }, b:index_select(1, i64({ 3, 1 })):tolist())
    assert.are.same({ { 1, 1, 3 }, { 5, 5, 7 }, { 9, 9, 11 } },
      b:index_select(2, { 2, 2, 4 }):tolist())
    assert.are.same({ { 3 }, { 7 }, { 11 } }, b:index_select(-1, { 4 }):tolist())
    assert.are.same({ 0, 4 }, b:index_select(1, i64({})).shape)
  end)

  it("works on non-contiguous input and returns a copy", function()
    local b = base34()
    local s = b:t():index_select(1, i64({ 4, 1 }))
    assert.are.same({ { 3, 7, 11 }, { 0, 4, 8 } }, s:tolist())
    s[1][1] = 100
    assert.are.equal(3, b[1][4])
    local e = lg.tensor({ { 1, 2 } }):expand(3, 2):index_select(2, { 2 })
    assert.are.same({ { 2 }, { 2 }, { 2 } }, e:tolist())
  end)

  it("keeps int64 and float64 dtypes", function()
    assert.are.equal("int64", i64({ 5, 6, 7 }):index_select(1, { 3 }).dtype)
    assert.are.equal(7, i64({ 5, 6, 7 }):index_select(1, { 3 })[1])
    assert.are.equal("float64", lg.zeros(3, { dtype = "float64" }):index_select(1, { 1 }).dtype)
  end)
end)

describe("gather", function()
  it("along dim 2 picks one entry per row (class labels)", function()
    local logits = lg.tensor({ { 0.1, 0.2, 0.7 }, { 0.5, 0.3, 0.2 } })
    local g = logits:gather(2, i64({ { 3 }, { 1 } }))
    assert.are.same({ 2, 1 }, g.shape)
    ref.assert_close(g, { { 0.7 }, { 0.5 } }, 1e-6, 0)
  end)

  it("follows out[i][j] = t[idx[i][j]][j] along dim 1 and t[i][idx[i][j]] along dim 2", function()
    local b = base34()
    local idx1 = i64({ { 3, 1, 2, 3 }, { 1, 1, 1, 2 } })
    local g1 = b:gather(1, idx1)
    local want1 = ref.build({ 2, 4 }, function(i)
      return b[idx1[i[1]][i[2]]][i[2]]
    end)
    ref.assert_equal(g1, want1, "gather dim 1")
    local idx2 = i64({ { 4, 4 }, { 1, 2 }, { 3, 1 } })
    local g2 = b:t():t():gather(-1, idx2)
    ref.assert_equal(g2, { { 3, 3 }, { 4, 5 }, { 10, 8 } }, "gather dim 2")
    local g3 = b:t():gather(2, i64({ { 3 }, { 1 }, { 2 }, { 1 } }))
    ref.assert_equal(g3, { { 8 }, { 1 }, { 6 }, { 3 } }, "gather on a transposed input")
  end)
end)

describe("cat and stack", function()
  local a = lg.tensor({ { 1, 2 }, { 3, 4 } })
  local b = lg.tensor({ { 5, 6 } })

  it("cat joins along dim 1 by default and along any dim", function()
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, lg.cat({ a, b }):tolist())
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, lg.cat({ a, b }, 1):tolist())
    assert.are.same({ { 1, 2, 1, 3 }, { 3, 4, 2, 4 } }, lg.cat({ a, a:t() }, 2):tolist())
    assert.are.same({ { 1, 2, 5 }, { 3, 4, 6 } }, lg.cat({ a, b:t() }, -1):tolist())
    assert.are.same({ { 1, 2 } }, lg.cat({ a:narrow(1, 1, 1) }):tolist())
    local big = lg.cat({ lg.zeros(2, 3, 4), lg.ones(2, 1, 4), lg.full({ 2, 2, 4 }, 2) }, 2)
    assert.are.same({ 2, 6, 4 }, big.shape)
    assert.are.same({ 0, 0, 0, 1, 2, 2 }, big:select(1, 2):select(2, 4):tolist())
  end)

  it("cat of expanded inputs and int64", function()
    local e = lg.tensor({ 7 }):expand(3)
    assert.are.same({ 7, 7, 7, 1 }, lg.cat({ e, lg.ones(1) }):tolist())
    local c = lg.cat({ i64({ 1 }), i64({ 2, 3 }) })
    assert.are.equal("int64", c.dtype)
    assert.are.same({ 1, 2, 3 }, c:tolist())
  end)

  it("stack adds a new dim", function()
    local x, y = lg.tensor({ 1, 2, 3 }), lg.tensor({ 4, 5, 6 })
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, lg.stack({ x, y }):tolist())
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, lg.stack({ x, y }, 2):tolist())
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, lg.stack({ x, y }, -1):tolist())
    assert.are.same({ 2, 2, 2 }, lg.stack({ a, a:t() }, 1).shape)
    assert.are.same({ { 1, 2 }, { 3, 4 } }, lg.stack({ a, a:t() }, 1)[1]:tolist())
    assert.are.same({ { 1, 3 }, { 2, 4 } }, lg.stack({ a, a:t() }, 1)[2]:tolist())
  end)
end)

describe("split and chunk", function()
  local function shapes(list)
    local out = {}
    for i, t in ipairs(list) do out[i] = t.shape end
    return out
  end

  it("split by a size keeps a short last piece", function()
    local parts = lg.arange(5):split(2)
    assert.are.equal(3, #parts)
    assert.are.same({ 0, 1 }, parts[1]:tolist())
    assert.are.same({ 2, 3 }, parts[2]:tolist())
    assert.are.same({ 4 }, parts[3]:tolist())
  end)

  it("split by a table of sizes, along a dim; pieces are views", function()
    local b = base34()
    local parts = b:split({ 1, 3 }, 2)
    assert.are.same({ { 3, 1 }, { 3, 3 } }, shapes(parts))
    assert.are.same({ { 1, 2, 3 }, { 5, 6, 7 }, { 9, 10, 11 } }, parts[2]:tolist())
    parts[2][1][1] = 100
    assert.are.equal(100, b[1][2])
    assert.are.same({ { 2, 4 }, { 1, 4 } }, shapes(b:split(2, 1)))
  end)

  it("chunk splits into n pieces of ceil(size/n)", function()
    assert.are.same({ { 2 }, { 2 }, { 2 } }, shapes(lg.arange(6):chunk(3)))
    assert.are.same({ { 2 }, { 2 }, { 1 } }, shapes(lg.arange(5):chunk(3)))
    local b = base34()
    local c = b:chunk(2, 2)
    assert.are.same({ { 3, 2 }, { 3, 2 } }, shapes(c))
    assert.are.same({ { 2, 3 }, { 6, 7 }, { 10, 11 } }, c[2]:tolist())
    c[2][3][1] = -8
    assert.are.same({ 8, 9, -8, 11 }, b[3]:tolist())
  end)
end)

-- ---- t[{...}], t[mask], t[idx]: Torch7's table indexing -----------------------------------------

-- The slow reference: t[key] computed from t:tolist() with plain loops, one dimension at a time.
local function ref_positions(e, size)
  local function at(i) return i < 0 and i + size + 1 or i end
  if #e == 0 then e = { 1, size } end
  local first, last, step = at(e[1]), at(e[2] or e[1]), e[3] or 1
  local ps = {}
  for p = first, last, step do ps[#ps + 1] = p end
  return ps
end
local function ref_index(list, key, k)
  k = k or 1
  local e = key[k]
  if type(list) ~= "table" then return list end
  if e == nil then return list end
  if type(e) == "number" then return ref_index(list[e < 0 and e + #list + 1 or e], key, k + 1) end
  local out = {}
  for _, p in ipairs(ref_positions(e, #list)) do out[#out + 1] = ref_index(list[p], key, k + 1) end
  return out
end
local function value_of(r) return lg.is_tensor(r) and r:tolist() or r end

describe("t[{...}]", function()
  it("follows Torch7's forms: integers, {}, {i}, {first, last}, negative indices", function()
    local b = base34()
    assert.are.same({ 4, 5, 6 }, b[{ 2, { 1, 3 } }]:tolist())
    assert.are.same({ 1, 5, 9 }, b[{ {}, 2 }]:tolist())
    assert.are.same({ 2, 6 }, b[{ { 1, 2 }, 3 }]:tolist())
    assert.are.same({ { 4, 5, 6, 7 } }, b[{ { 2 } }]:tolist())
    assert.are.same({ { 9, 10, 11 } }, b[{ { -1 }, { 2, -1 } }]:tolist())
    assert.are.same({ 3, 4 }, b[{}].shape)
    assert.are.equal(6, b[{ 2, 3 }]:item())
    assert.are.same({}, b[{ 2, 3 }].shape)
  end)

  it("takes a step as {first, last, step}", function()
    local b = base34()
    assert.are.same({ { 0, 3 }, { 8, 11 } }, b[{ { 1, 3, 2 }, { 1, 4, 3 } }]:tolist())
    assert.are.same({ 1, 3 }, b[{ 1, { 2, 4, 2 } }]:tolist())
    -- a strided (transposed) tensor: read from a contiguous copy
    assert.are.same({ { 0, 4, 8 }, { 2, 6, 10 } }, b:t()[{ { 1, 4, 2 } }]:tolist())
  end)

  it("agrees with a slow reference on random shapes and keys", function()
    local rng = 12345
    local function rand(n)
      rng = (rng * 1103515245 + 12345) % 2147483648
      return rng % n + 1
    end
    for _ = 1, 300 do
      local nd = rand(3)
      local shape = {}
      for d = 1, nd do shape[d] = rand(5) end
      local t = lg.arange(ref.numel(shape)):view(shape):float()
      if rand(3) == 1 and nd >= 2 then t = t:transpose(1, nd) end
      local key = {}
      for d = 1, rand(#t.shape + 1) - 1 do
        local size, form = t.shape[d], rand(5)
        local i, j = rand(size), rand(size)
        if i > j then i, j = j, i end
        local neg = rand(2) == 1 and -1 or 0
        if form == 1 then key[d] = i + neg * (size + 1)
        elseif form == 2 then key[d] = {}
        elseif form == 3 then key[d] = { i }
        elseif form == 4 then key[d] = { i + neg * (size + 1), j }
        else key[d] = { i, j, rand(3) } end
      end
      local want = ref_index(t:tolist(), key)
      assert.are.same(want, value_of(t[key]), "shape " .. ref.shape_str(t.shape))
    end
  end)

  it("returns views that share storage, with and without a step", function()
    local b = base34()
    local v = b[{ { 2, 3 }, { 2, 3 } }]
    v[1][1] = 100
    assert.are.equal(100, b[2][2])
    local s = b[{ { 1, 3, 2 }, { 1, 4, 3 } }]
    s[2][2] = -5
    assert.are.equal(-5, b[3][4])
    b[1][1] = 42
    assert.are.equal(42, s[1][1])
  end)

  it("t[{...}] = v writes a number or a broadcast tensor into the view", function()
    local b = base34()
    b[{ {}, 2 }] = -1
    b[{ 1, { 3, 4 } }] = lg.tensor({ 7, 8 })
    b[{ { 2, 3, 1 }, { 1, 4, 3 } }] = lg.tensor({ 50 })
    assert.are.same({ { 0, -1, 7, 8 }, { 50, -1, 6, 50 }, { 50, -1, 10, 50 } }, b:tolist())
    b[{}] = 0
    assert.are.equal(0, b:abs():sum():item())
  end)

  it("is differentiable, through the narrow/select views and the strided window", function()
    local x = lg.randn(4, 5, { dtype = "float64", requires_grad = true })
    local ok = lg.autograd.gradcheck(function(a)
      return a[{ { 2, -1 }, 3 }]:sum() * 2 + (a[{ { 1, 4, 2 }, { 1, 5, 2 } }] ^ 2):sum() + a[{ -1 }]:sum()
    end, { x })
    assert.is_true(ok)
    x[{}]:sum():backward()
    assert.are.same(lg.ones(4, 5, { dtype = "float64" }):tolist(), x.grad:tolist())
  end)

  it("carries forward-mode tangents through every reading form", function()
    local x = lg.randn(3, 4, { dtype = "float64" })
    local mask = x:gt(0)
    local _, t = lg.autograd.jvp(function(a)
      return a[{ { 1, 3, 2 }, { 2, -1 } }]:sum() + a[mask]:sum() + a[{ 2 }]:sum() + a[i64({ 3 })]:sum()
    end, { x }, { lg.ones(3, 4, { dtype = "float64" }) })
    assert.are.equal(6 + mask:sum():item() + 4 + 4, t:item())
  end)

  it("assignment under autograd is recorded like other in-place writes", function()
    local w = lg.randn(3, 3, { dtype = "float64", requires_grad = true })
    local y = w * 1
    y[{ { 1, 3, 2 }, {} }] = 0
    y:sum():backward()
    assert.are.same({ { 0, 0, 0 }, { 1, 1, 1 }, { 0, 0, 0 } }, w.grad:tolist())
  end)
end)

describe("t[mask] and t[idx]", function()
  it("t[mask] is masked_select: the selected elements in row-major order", function()
    local x = lg.tensor({ { 1, -2, 3 }, { -4, 5, -6 } })
    assert.are.same({ 1, 3, 5 }, x[x:gt(0)]:tolist())
    assert.are.same({ 1, 3, 5 }, x:masked_select(x:gt(0)):tolist())
    assert.are.same({ 1, 3, 5 }, lg.masked_select(x, x:gt(0)):tolist())
    -- any dtype, nonzero is true; the mask broadcasts to x's shape
    local m = lg.tensor({ { 0, 2, 0 }, { 0.5, 0, 0 } }, { dtype = "float64" })
    assert.are.same({ -2, -4 }, x[m]:tolist())
    assert.are.same({ -2, 5 }, x[lg.tensor({ 0, 1, 0 })]:tolist())
    assert.are.same({ 0 }, x[lg.zeros(2, 3)].shape)
    assert.are.equal("int64", lg.arange(4)[lg.tensor({ 1, 0, 1, 0 })].dtype)
  end)

  it("t[mask] agrees with a loop over the elements", function()
    lg.manual_seed(3)
    local x = lg.randn(4, 3, 2)
    local m = lg.rand(4, 3, 2):gt(0.5)
    local want = {}
    local xf, mf = x:flatten():tolist(), m:flatten():tolist()
    for i = 1, #xf do
      if mf[i] ~= 0 then want[#want + 1] = xf[i] end
    end
    assert.are.same(want, x[m]:tolist())
    assert.are.same(want, x:transpose(1, 3):contiguous():transpose(1, 3)[m]:tolist())
  end)

  it("t[mask] passes gradients to the selected elements", function()
    local x = lg.randn(3, 4, { dtype = "float64", requires_grad = true })
    local m = lg.tensor({ { 1, 0, 0, 1 }, { 0, 1, 0, 0 }, { 1, 1, 1, 0 } })
    assert.is_true(lg.autograd.gradcheck(function(a) return (a[m] ^ 2):sum() end, { x }))
    x[m]:sum():backward()
    assert.are.same(m:double():tolist(), x.grad:tolist())
  end)

  it("t[mask] = v is masked_fill_", function()
    local x = lg.tensor({ { 1, -2 }, { -3, 4 } })
    x[x:lt(0)] = 0
    assert.are.same({ { 1, 0 }, { 0, 4 } }, x:tolist())
    x[x:gt(3)] = lg.tensor(9)
    assert.are.same({ { 1, 0 }, { 0, 9 } }, x:tolist())
    -- a tensor of values: masked_scatter_, the selected places in row-major order
    x[x:eq(0)] = lg.tensor({ { 5, 6, 7 } })
    assert.are.same({ { 1, 5 }, { 6, 9 } }, x:tolist())
    assert.has_error(function() x[x:gt(0)] = lg.tensor({ 1, 2 }) end,
      "index assignment: t[mask] = v: the mask selects 4 elements, but source has 2")
  end)

  it("masked_scatter inverts masked_select and is differentiable in both inputs", function()
    lg.manual_seed(5)
    local x = lg.randn(3, 4)
    local m = lg.rand(3, 4):gt(0.4)
    assert.are.same(x:tolist(), x:masked_scatter(m, x:masked_select(m)):tolist())
    -- against a loop over the elements
    local src = lg.arange(1, 13):float() * 100
    local want, k = {}, 0
    local xf, mf = x:flatten():tolist(), m:flatten():tolist()
    for i = 1, 12 do
      if mf[i] ~= 0 then
        k = k + 1
        want[i] = src[k]
      else
        want[i] = xf[i]
      end
    end
    assert.are.same(want, x:masked_scatter(m, src):flatten():tolist())
    local w = lg.randn(3, 4, { dtype = "float64", requires_grad = true })
    local s = lg.randn(12, { dtype = "float64", requires_grad = true })
    assert.is_true(lg.autograd.gradcheck(function(a, b) return a:masked_scatter(m, b) end, { w, s }))
    local y = w * 1
    y[m] = s
    y:sum():backward()
    assert.are.same((1 - m:double()):tolist(), w.grad:tolist())
  end)

  it("t[idx] with a 1-d int64 tensor is index_select along dimension 1", function()
    local b = base34()
    assert.are.same(b:index_select(1, i64({ 3, 1, 3 })):tolist(), b[i64({ 3, 1, 3 })]:tolist())
    assert.are.same({ 7, 5 }, lg.tensor({ 5, 6, 7 })[i64({ 3, 1 })]:tolist())
    assert.are.same({ 8, 9, 10, 11 }, b[lg.tensor(3, { dtype = "int64" })]:tolist())
    local x = lg.randn(4, 2, { dtype = "float64", requires_grad = true })
    assert.is_true(lg.autograd.gradcheck(function(a) return a[i64({ 2, 2, 4 })]:sum() end, { x }))
  end)

  it("t[idx] = v writes each indexed slice", function()
    local b = base34()
    b[i64({ 3, 1 })] = 0
    assert.are.same({ { 0, 0, 0, 0 }, { 4, 5, 6, 7 }, { 0, 0, 0, 0 } }, b:tolist())
    b[i64({ 1, 3 })] = lg.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } })
    b[i64({ 2 })] = lg.tensor({ -1 })
    assert.are.same({ { 1, 2, 3, 4 }, { -1, -1, -1, -1 }, { 5, 6, 7, 8 } }, b:tolist())
  end)
end)

describe("indexing errors", function()
  -- every key that is not an index form raises an error naming indexing and what was passed
  local cases = {
    { "foo", "index: a tensor has no field or method 'foo'" },
    { true, "index: cannot index a tensor with boolean" },
    { 1.5, "index: index must be an integer, got 1.5" },
    { 4, "index: index 4 out of range for dimension 1 of size 3" },
    { {}, nil },
    { { 1, 2, 3 }, "index: 3 entries in the index table for a 2-d tensor {3,4}" },
    { { 4 }, "index: entry 1 of the index table: index 4 out of range for dimension 1 of size 3" },
    { { { 3, 1 } }, "index: entry 1 of the index table: range {3, 1} ends before it starts" },
    { { { 1, 2, 0 } }, "index: entry 1 of the index table: step 0 must be positive" },
    { { { 1, 2, 3, 4 } }, "index: entry 1 of the index table: a range is {}, {i}, {first, last} or {first, last, step}" },
    { { "a" }, "index: entry 1 of the index table must be an integer or a range table, got string" },
    { { 1.5 }, "index: entry 1 of the index table: an index must be an integer, got 1.5" },
    { { { 1, 2.5 } }, "index: entry 1 of the index table: a range's last index must be an integer, got 2.5" },
    { { x = 1 }, "index: an index table must be a list" },
    { { { { 1 } } }, "index: entry 1 of the index table: a range's first index must be an integer, got table" },
    { i64({ 4 }), "index: index 4 out of range 1..3 of dimension 1" },
    { lg.ones(2, 2), "index: mask of shape {2,2} does not broadcast to the tensor's shape {3,4}" },
    { print, "index: cannot index a tensor with function" },
  }
  for n, c in ipairs(cases) do
    it("case " .. n .. ": " .. tostring(c[2] or "t[{}] works"), function()
      local b = base34()
      if c[2] == nil then
        assert.are.same(b:tolist(), b[c[1]]:tolist())
        return
      end
      local ok, err = pcall(function() return b[c[1]] end)
      assert.is_false(ok)
      assert.truthy(err:find(c[2], 1, true), err)
      assert.truthy(err:find("tensor_index_spec.lua", 1, true), "blames the caller's line: " .. err)
    end)
  end

  it("assignment names itself and what was passed", function()
    local b = base34()
    assert.has_error(function() b[true] = 1 end, "index assignment: cannot index a tensor with boolean (use an "
      .. "integer, a table such as {2, {1, 3}}, a mask tensor or a 1-d int64 index tensor)")
    assert.has_error(function() b[{ 1 }] = "x" end, "index assignment: can only assign a number or a tensor, got string")
    assert.has_error(function() b[{ { 5 } }] = 1 end,
      "index assignment: entry 1 of the index table: index 5 out of range for dimension 1 of size 3")
    assert.has_error(function() b:t()[{ { 1, 4, 2 } }] = 1 end)
    assert.has_error(function() b.sahpe = 1 end)
  end)
end)
