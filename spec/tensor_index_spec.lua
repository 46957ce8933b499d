-- t[i], t[i] = v, index_select, gather, cat, stack, split, chunk.
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
