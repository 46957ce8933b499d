-- The ops sequence models need: F.embedding and nn.Embedding (with weight tying), masked_fill,
-- tril/triu, sort/topk, cumsum, multinomial, one_hot, argmax/argmin along any dimension, and
-- softmax/log_softmax along any dimension.
--
--   * spec/golden/attention.json's embedding case (PyTorch 1.13, float64; indices 0-based there,
--     1 added here): output and weight gradient to 1e-9 relative.
--   * slow, obviously-right references written out here over nested Lua lists (no luagrad):
--     every forward value, in float64 and float32, on several shapes and dimensions, and on
--     zero-size inputs.
--   * gradients beyond autograd_ops_spec's gradchecks: repeated indices summed, the padding row,
--     a tied embedding / output head against a hand calculation and central differences.
--   * multinomial: frequencies of 20000 draws within 4 standard errors of the probabilities,
--     reproducibility under lg.manual_seed, rows drawn independently, no repeats without
--     replacement.
--   * errors name the op and the shapes or values at fault.
local lg = require "luagrad"
local nn = lg.nn
local F = nn.functional
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"
local ref = require "helpers.ref"
local message_of = require("helpers.util").message_of

local F64 = { dtype = "float64" }
local I64 = { dtype = "int64" }

local function long(v) return lg.tensor(v, I64) end

-- a deterministic nested list of `shape` (values distinct enough to have no ties)
local function values(shape, seed)
  return ref.build(shape, function(idx)
    local p = seed
    for d, i in ipairs(idx) do p = p + i * (1.3 + 0.7 * d) end
    return math.floor(1000 * math.sin(p) + 0.5) / 250
  end)
end

-- element of a nested list at a 1-based multi-index
local function at(nested, idx)
  local v = nested
  for _, i in ipairs(idx) do v = v[i] end
  return v
end

-- every multi-index of shape, row-major
local function indices_of(shape)
  local out, idx = {}, {}
  local function rec(d)
    if d > #shape then
      out[#out + 1] = { table.unpack(idx) }
      return
    end
    for i = 1, shape[d] do
      idx[d] = i
      rec(d + 1)
    end
  end
  rec(1)
  return out
end

local function assert_near(got, want, tol, what)
  local g, w = ref.flatten(got), ref.flatten(want)
  assert.are.equal(#w, #g, what .. ": element count")
  for i = 1, #w do
    local ok = (g[i] ~= g[i] and w[i] ~= w[i]) or g[i] == w[i] or math.abs(g[i] - w[i]) <= tol * math.max(1, math.abs(w[i]))
    if not ok then
      error(string.format("%s: element %d is %.17g, expected %.17g", what, i, g[i], w[i]), 2)
    end
  end
end

-- the rows of t along dim, each as a list, with the multi-index of its first element
local function rows_along(nested, shape, dim)
  local outer = {}
  for k, s in ipairs(shape) do outer[k] = k == dim and 1 or s end
  local rows = {}
  for _, idx in ipairs(indices_of(outer)) do
    local row = {}
    for i = 1, shape[dim] do
      idx[dim] = i
      row[i] = at(nested, idx)
    end
    idx[dim] = 1
    rows[#rows + 1] = { start = { table.unpack(idx) }, values = row }
  end
  return rows
end

-- ---- embedding ---------------------------------------------------------------------------------

describe("F.embedding and nn.Embedding", function()
  local case
  for _, c in ipairs(golden.load("attention.json").cases) do
    if c.fn == "embedding" then case = c end
  end
  local function one_based(nested)
    return ref.build(golden.shape_of(nested), function(idx) return at(nested, idx) + 1 end)
  end

  it("reproduces attention.json's embedding case (repeated indices): output and weight gradient", function()
    assert.is_not_nil(case, "attention.json has an embedding case")
    local idx = long(one_based(case.indices_zero_based))
    local w = golden.P(case.weight)
    local y = F.embedding(idx, w)
    golden.assert_close(y, case.y, "embedding output", 1e-9, 1e-12)
    lg.sum(y * golden.T(case.upstream)):backward()
    golden.assert_close(w.grad, case.dweight, "embedding weight gradient", 1e-9, 1e-12)
    -- the layer, with the same weight copied in
    local emb = nn.Embedding(#case.weight, #case.weight[1], { dtype = "float64" })
    lg.no_grad(function() emb.weight:copy_(golden.T(case.weight)) end)
    local ye = emb(idx)
    golden.assert_close(ye, case.y, "nn.Embedding output", 1e-9, 1e-12)
    lg.sum(ye * golden.T(case.upstream)):backward()
    golden.assert_close(emb.weight.grad, case.dweight, "nn.Embedding weight gradient", 1e-9, 1e-12)
  end)

  it("looks up rows for indices of any shape, in float32 and float64, and zero-size indices", function()
    for _, dt in ipairs({ "float32", "float64" }) do
      local W = values({ 6, 3 }, 1)
      local w = lg.tensor(W, { dtype = dt })
      for _, shape in ipairs({ {}, { 4 }, { 2, 3 }, { 2, 1, 2 } }) do
        local I = ref.build(shape, function(idx) local s = 0 for _, i in ipairs(idx) do s = s * 7 + i end return s % 6 + 1 end)
        local y = F.embedding(long(I), w)
        local want_shape = { table.unpack(shape) }
        want_shape[#want_shape + 1] = 3
        assert.are.same(want_shape, y.shape)
        local want = ref.build(want_shape, function(idx)
          local row = #shape == 0 and I or at(I, { table.unpack(idx, 1, #shape) })
          return W[row][idx[#idx]]
        end)
        assert_near(y:tolist(), want, dt == "float32" and 1e-6 or 0, "embedding " .. dt)
      end
      assert.are.same({ 0, 3 }, F.embedding(lg.zeros({ 0 }, I64), w).shape)
      assert.are.same({ 2, 0, 3 }, F.embedding(lg.zeros({ 2, 0 }, I64), w).shape)
    end
    -- a weight of zero rows with no indices, and a zero-width weight
    assert.are.same({ 0, 4 }, F.embedding(lg.zeros({ 0 }, I64), lg.zeros(0, 4)).shape)
    assert.are.same({ 2, 0 }, F.embedding(long({ 1, 2 }), lg.zeros(3, 0)).shape)
  end)

  it("sums the gradient over repeated indices and gives the padding row none (its value is still read)", function()
    local w = lg.tensor(values({ 4, 2 }, 2), { dtype = "float64", requires_grad = true })
    local idx = long({ { 3, 1, 3 }, { 3, 2, 4 } })
    local up = values({ 2, 3, 2 }, 3)
    local y = F.embedding(idx, w, { padding_idx = 3 })
    assert.are.same(w[3]:tolist(), y[1][1]:tolist()) -- the padding row's values are looked up
    lg.sum(y * lg.tensor(up, F64)):backward()
    local want = { { 0, 0 }, { 0, 0 }, { 0, 0 }, { 0, 0 } }
    local I = idx:tolist()
    for a = 1, 2 do
      for b = 1, 3 do
        local r = I[a][b]
        if r ~= 3 then
          for j = 1, 2 do want[r][j] = want[r][j] + up[a][b][j] end
        end
      end
    end
    assert_near(w.grad:tolist(), want, 1e-15, "weight gradient")
    -- negative padding_idx counts from the end
    local w2 = lg.tensor(values({ 4, 2 }, 2), { dtype = "float64", requires_grad = true })
    F.embedding(idx, w2, { padding_idx = -2 }):sum():backward()
    assert.are.same({ 0, 0 }, w2.grad[3]:tolist())
    assert.are.same({ 1, 1 }, w2.grad[1]:tolist())
  end)

  it("nn.Embedding: the weight parameter, N(0, 1) initialization, the padding row zeroed, printing", function()
    lg.manual_seed(5)
    local emb = nn.Embedding(2000, 8, { padding_idx = 4 })
    local names = {}
    for name, p in emb:named_parameters() do names[#names + 1] = name; assert.are.equal(emb.weight, p) end
    assert.are.same({ "weight" }, names)
    assert.are.same({ 2000, 8 }, emb.weight.shape)
    assert.are.equal(lg.get_default_dtype(), emb.weight.dtype)
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0 }, emb.weight[4]:tolist())
    local m, s = emb.weight:mean():item(), emb.weight:std():item()
    assert.is_true(math.abs(m) < 0.02 and math.abs(s - 1) < 0.02, string.format("mean %g, std %g", m, s))
    assert.are.equal(4, emb.padding_idx)
    assert.are.equal("Embedding(2000, 8, padding_idx=4)", tostring(emb))
    local keys = {}
    for key in pairs(emb:state_dict()) do keys[#keys + 1] = key end
    assert.are.same({ "weight" }, keys)
    assert.are.equal("float64", nn.Embedding(3, 2, { dtype = "float64" }).weight.dtype)
  end)

  it("weight tying: one parameter for the embedding and the output head, gradients of both uses summed", function()
    local V, D = 5, 3
    local Tied = nn.Module:extend("Tied")
    function Tied:init()
      self.emb = nn.Embedding(V, D, { dtype = "float64" })
      self.head = nn.Linear(D, V, { bias = false, dtype = "float64" })
      self.head.weight = self.emb.weight
    end
    function Tied:forward(idx) return self.head(self.emb(idx)) end
    lg.manual_seed(11)
    local model = Tied()
    local params = model:parameters()
    assert.are.equal(1, #params)
    assert.are.equal(model.emb.weight, params[1])
    local idx = long({ 2, 4, 2, 1 })
    local U = values({ 4, V }, 7)
    local function loss() return lg.sum(model(idx) * lg.tensor(U, F64)) end
    loss():backward()
    local g = model.emb.weight.grad:tolist()
    -- by hand: logits = H W^T with H = W[idx]; dW = U^T H (head) + rows of U W added at idx (embedding)
    local W, I = model.emb.weight:tolist(), idx:tolist()
    local want = {}
    for r = 1, V do want[r] = { 0, 0, 0 } end
    for n = 1, #I do
      local h = W[I[n]]
      for v = 1, V do
        for j = 1, D do
          want[v][j] = want[v][j] + U[n][v] * h[j] -- head
          want[I[n]][j] = want[I[n]][j] + U[n][v] * W[v][j] -- embedding
        end
      end
    end
    assert_near(g, want, 1e-12, "tied gradient against the hand calculation")
    -- and against central differences
    local eps = 1e-6
    for _, rc in ipairs({ { 2, 1 }, { 4, 3 }, { 3, 2 }, { 1, 1 } }) do
      local p = model.emb.weight
      local old = p[rc[1]][rc[2]]
      lg.no_grad(function() p[rc[1]][rc[2]] = old + eps end)
      local lp = lg.no_grad(function() return loss():item() end)
      lg.no_grad(function() p[rc[1]][rc[2]] = old - eps end)
      local lm = lg.no_grad(function() return loss():item() end)
      lg.no_grad(function() p[rc[1]][rc[2]] = old end)
      local fd = (lp - lm) / (2 * eps)
      assert.is_true(math.abs(fd - g[rc[1]][rc[2]]) < 1e-6,
        string.format("element {%d,%d}: central difference %.10g, gradient %.10g", rc[1], rc[2], fd, g[rc[1]][rc[2]]))
    end
    -- one optimizer entry for the shared parameter
    local opt = lg.optim.SGD(model:parameters(), { lr = 0.1 })
    local before = model.emb.weight:clone()
    opt:step()
    assert_near(model.head.weight:tolist(), (before - model.emb.weight.grad * 0.1):tolist(), 1e-15, "one SGD step")
  end)

  it("errors name embedding and the index, shape or dtype at fault", function()
    local w = lg.zeros(4, 2)
    assert.matches("embedding: index 5 out of range 1..4", message_of(F.embedding, long({ 1, 5 }), w), 1, true)
    assert.matches("embedding: index 0 out of range 1..4", message_of(F.embedding, long({ 0 }), w), 1, true)
    assert.matches("embedding: indices must be int64, got float32", message_of(F.embedding, lg.tensor({ 1 }), w), 1, true)
    assert.matches("embedding: weight must be 2-d", message_of(F.embedding, long({ 1 }), lg.zeros(4)), 1, true)
    assert.matches("embedding: weight must be float32 or float64, got int64",
      message_of(F.embedding, long({ 1 }), lg.zeros({ 4, 2 }, I64)), 1, true)
    assert.matches("embedding: padding_idx 5 out of range for 4 embeddings",
      message_of(F.embedding, long({ 1 }), w, { padding_idx = 5 }), 1, true)
    assert.matches("embedding: unknown option", message_of(F.embedding, long({ 1 }), w, { padding = 1 }), 1, true)
    assert.matches("Embedding: index 9 out of range 1..4", message_of(nn.Embedding(4, 2), long({ 9 })), 1, true)
    assert.matches("Embedding: padding_idx must be in 1..4", message_of(nn.Embedding, 4, 2, { padding_idx = 0 }), 1, true)
  end)
end)

-- ---- masked_fill, tril, triu -------------------------------------------------------------------

describe("masked_fill", function()
  it("fills where the mask is nonzero, for masks of every dtype, broadcast both ways", function()
    local X = values({ 3, 4 }, 4)
    local M = { { 1, 0, 2, 0 }, { 0, 0, -1, 1 }, { 0.5, 0, 0, 1 } }
    for _, dt in ipairs({ "float32", "float64", "int64" }) do
      local x = lg.tensor(X, F64):to(dt)
      local Xd = x:tolist()
      for _, mdt in ipairs({ "float32", "float64", "int64" }) do
        local m = lg.tensor(M, F64):to(mdt)
        local Md = m:tolist()
        local y = x:masked_fill(m, -7)
        assert.are.equal(dt, y.dtype)
        local want = ref.build({ 3, 4 }, function(i) return Md[i[1]][i[2]] ~= 0 and -7 or Xd[i[1]][i[2]] end)
        assert.are.same(want, y:tolist())
      end
    end
    -- mask (4) broadcast over rows; mask (3, 1) against x (1, 4) broadcasts the result to (3, 4)
    local x = lg.tensor(X, F64)
    local y = x:masked_fill(long({ 0, 1, 0, 1 }), 0.5)
    assert.are.same(ref.build({ 3, 4 }, function(i) return i[2] % 2 == 0 and 0.5 or X[i[1]][i[2]] end), y:tolist())
    local z = lg.masked_fill(lg.tensor({ { 1, 2, 3, 4 } }, F64), long({ { 1 }, { 0 }, { 1 } }), -1)
    assert.are.same({ { -1, -1, -1, -1 }, { 1, 2, 3, 4 }, { -1, -1, -1, -1 } }, z:tolist())
    -- the causal mask of attention: -inf above the diagonal, from a comparison's 0/1
    local s = lg.ones(3, 3, F64):masked_fill(lg.ones(3, 3):triu(1):gt(0), -math.huge)
    assert.are.same({ { 1, -math.huge, -math.huge }, { 1, 1, -math.huge }, { 1, 1, 1 } }, s:tolist())
    assert.are.same({ 0, 3 }, lg.zeros(0, 3):masked_fill(lg.ones(3), 1).shape)
  end)

  it("masked_fill_ writes in place and records: the gradient is zero where filled", function()
    local x = lg.tensor(values({ 2, 3 }, 5), { dtype = "float64", requires_grad = true })
    local y = x * 3
    local m = long({ { 1, 0, 0 }, { 0, 1, 1 } })
    assert.are.equal(y, y:masked_fill_(m, 9))
    assert.are.same({ 9, 9, 9 }, { y[1][1], y[2][2], y[2][3] })
    y:sum():backward()
    assert.are.same({ { 0, 3, 3 }, { 3, 0, 0 } }, x.grad:tolist())
    local leaf = lg.zeros(2, 3, { requires_grad = true })
    assert.matches("masked_fill_", message_of(function() leaf:masked_fill_(m, 1) end), 1, true)
  end)

  it("errors name masked_fill and the shapes or value at fault", function()
    assert.matches("masked_fill: mask {2} does not broadcast with the tensor {3,4}",
      message_of(lg.zeros(3, 4).masked_fill, lg.zeros(3, 4), lg.ones(2), 1), 1, true)
    assert.matches("masked_fill: value 1.5 does not fit an int64 tensor",
      message_of(lg.masked_fill, lg.zeros({ 2 }, I64), lg.ones(2), 1.5), 1, true)
    assert.matches("masked_fill", message_of(lg.masked_fill, lg.zeros(2), lg.ones(2), "x"), 1, true)
    assert.matches("masked_fill_: mask", message_of(function() lg.zeros(2):masked_fill_(lg.ones(3), 1) end), 1, true)
  end)
end)

describe("tril and triu", function()
  it("keep the triangles of the last two dimensions from any diagonal, for every dtype and batches", function()
    for _, shape in ipairs({ { 3, 5 }, { 4, 2 }, { 2, 3, 3 }, { 0, 3 }, { 2, 0, 4 } }) do
      local X = values(shape, 6)
      for _, dt in ipairs({ "float32", "float64", "int64" }) do
        local empty = shape[1] * shape[#shape - 1] == 0
        local x = empty and lg.zeros(shape, { dtype = dt }) or lg.tensor(X, F64):to(dt)
        local Xd = x:tolist()
        for _, k in ipairs({ -2, -1, 0, 1, 3 }) do
          local lo, hi = x:tril(k), lg.triu(x, { diagonal = k })
          local n = #shape
          assert.are.same(ref.build(shape, function(i) return i[n] - i[n - 1] <= k and at(Xd, i) or 0 end), lo:tolist())
          assert.are.same(ref.build(shape, function(i) return i[n] - i[n - 1] >= k and at(Xd, i) or 0 end), hi:tolist())
        end
      end
    end
    local x = lg.tensor(values({ 4, 3 }, 8), F64):t() -- non-contiguous
    assert.are.same(x:contiguous():tril(-1):tolist(), x:tril(-1):tolist())
  end)

  it("errors name the op and the shape", function()
    assert.matches("tril: needs a tensor of at least 2 dimensions, got {3}", message_of(lg.tril, lg.zeros(3)), 1, true)
    assert.matches("triu: needs a tensor of at least 2 dimensions, got {}", message_of(lg.triu, lg.tensor(1)), 1, true)
    assert.matches("tril", message_of(lg.tril, lg.zeros(2, 2), 0.5), 1, true)
  end)
end)

-- ---- sort, topk, cumsum ------------------------------------------------------------------------

-- the reference: positions sorted by value, NaN as the largest, ties in their original order
local function ref_sort(row, desc)
  local p = {}
  for i = 1, #row do p[i] = i end
  local function key_less(a, b)
    local x, y = row[a], row[b]
    local xn, yn = x ~= x, y ~= y
    if desc then
      if xn ~= yn then return xn end
      if not xn and x ~= y then return x > y end
    else
      if xn ~= yn then return yn end
      if not xn and x ~= y then return x < y end
    end
    return a < b
  end
  table.sort(p, key_less)
  local v = {}
  for i, k in ipairs(p) do v[i] = row[k] end
  return v, p
end

local function check_along(y, i, shape, dim, X, fn, k)
  local Y, Ii = y:tolist(), i and i:tolist()
  for _, r in ipairs(rows_along(X, shape, dim)) do
    local wv, wp = fn(r.values)
    for j = 1, k or #wv do
      local idx = { table.unpack(r.start) }
      idx[dim] = j
      local got, want = at(Y, idx), wv[j]
      assert.is_true(got == want or (got ~= got and want ~= want), string.format("value at %s: %s, want %s",
        table.concat(idx, ","), tostring(got), tostring(want)))
      if Ii then assert.are.equal(wp[j], at(Ii, idx)) end
    end
  end
end

describe("sort and topk", function()
  it("sort: values and 1-based indices along any dimension, stable, NaN as the largest", function()
    local X = {
      { { 3, 1, 2, 1 }, { 0 / 0, 5, -1, 5 }, { 2, 2, 2, -3 } },
      { { 1, 0 / 0, 0, 4 }, { 7, 7, 1, 0 }, { -1, 2, 0 / 0, 2 } },
    }
    for _, dt in ipairs({ "float32", "float64" }) do
      local x = lg.tensor(X, { dtype = dt })
      for dim = 1, 3 do
        for _, desc in ipairs({ false, true }) do
          local v, i = x:sort(dim, desc)
          assert.are.equal("int64", i.dtype)
          check_along(v, i, { 2, 3, 4 }, dim, X, function(row) return ref_sort(row, desc) end)
        end
      end
    end
    local xi = long({ { 5, -2, 5, 0 }, { 1, 1, 1, 1 } })
    local v, i = lg.sort(xi, { dim = -1, descending = true })
    assert.are.same({ { 5, 5, 0, -2 }, { 1, 1, 1, 1 } }, v:tolist())
    assert.are.same({ { 1, 3, 4, 2 }, { 1, 2, 3, 4 } }, i:tolist())
    local e, ei = lg.zeros(3, 0):sort(2)
    assert.are.same({ 3, 0 }, e.shape)
    assert.are.same({ 3, 0 }, ei.shape)
    local s, si = lg.tensor(2.5):sort()
    assert.are.same({ 2.5, 1 }, { s:item(), si:item() })
  end)

  it("topk: the k largest or smallest along any dimension, in order", function()
    local shape = { 3, 4, 5 }
    local X = values(shape, 9)
    local x = lg.tensor(X, F64)
    for dim = 1, 3 do
      for _, largest in ipairs({ true, false }) do
        for k = 0, shape[dim] do
          local v, i = x:topk(k, { dim = dim, largest = largest })
          local want_shape = { 3, 4, 5 }
          want_shape[dim] = k
          assert.are.same(want_shape, v.shape)
          check_along(v, i, shape, dim, X, function(row) return ref_sort(row, largest) end, k)
        end
      end
    end
    local v = lg.topk(lg.tensor({ 1, 9, 3, 7 }), 2)
    assert.are.same({ 9, 7 }, v:tolist())
    local _, i = lg.tensor({ 1, 9, 3, 7 }):topk(3, 1, false)
    assert.are.same({ 1, 3, 4 }, i:tolist())
  end)

  it("gradients go to the chosen positions", function()
    local x = lg.tensor({ { 0.5, -1, 2 }, { 3, 0, 1 } }, { dtype = "float64", requires_grad = true })
    local v = x:topk(2, 2)
    lg.sum(v * lg.tensor({ { 10, 20 }, { 30, 40 } }, F64)):backward()
    assert.are.same({ { 20, 0, 10 }, { 30, 0, 40 } }, x.grad:tolist())
  end)

  it("errors name the op and the values or shapes at fault", function()
    assert.matches("topk: k = 4 is out of range 0..3 (size of dimension 2 of {2,3})",
      message_of(lg.topk, lg.zeros(2, 3), 4), 1, true)
    assert.matches("topk: k = -1", message_of(lg.topk, lg.zeros(2, 3), -1), 1, true)
    assert.matches("sort: dimension 3 out of range", message_of(lg.sort, lg.zeros(2, 3), 3), 1, true)
    assert.matches("topk: dimension 0 out of range", message_of(lg.topk, lg.zeros(2, 3), 1, 0), 1, true)
    assert.matches("sort: unknown option 'stabel'", message_of(lg.sort, lg.zeros(2), { stabel = true }), 1, true)
  end)
end)

describe("cumsum", function()
  it("running sums along any dimension, float and int64, zero-size", function()
    local shape = { 2, 3, 4 }
    local X = values(shape, 10)
    for _, dt in ipairs({ "float32", "float64", "int64" }) do
      local x = lg.tensor(X, F64):mul(dt == "int64" and 250 or 1):to(dt)
      local Xd = x:tolist()
      for dim = 1, 3 do
        local y = x:cumsum(dim)
        assert.are.equal(dt, y.dtype)
        local Y = y:tolist()
        for _, r in ipairs(rows_along(Xd, shape, dim)) do
          local acc = 0
          for j, v in ipairs(r.values) do
            acc = acc + v
            local idx = { table.unpack(r.start) }
            idx[dim] = j
            local got = at(Y, idx)
            assert.is_true(math.abs(got - acc) <= (dt == "float32" and 1e-5 or 1e-12) * math.max(1, math.abs(acc)),
              string.format("%s cumsum(%d) at %s: %.10g, want %.10g", dt, dim, table.concat(idx, ","), got, acc))
          end
        end
      end
    end
    assert.are.same({ 2, 0 }, lg.zeros(2, 0):cumsum(2).shape)
    assert.are.same({ 0, 3 }, lg.cumsum(lg.zeros(0, 3), 1).shape)
    assert.matches("cumsum: a dimension is needed", message_of(lg.cumsum, lg.zeros(2)), 1, true)
    assert.matches("cumsum: dimension 2 out of range", message_of(lg.cumsum, lg.zeros(2), 2), 1, true)
    -- its gradient is the reverse cumsum
    local x = lg.zeros(4, { dtype = "float64", requires_grad = true })
    lg.sum(x:cumsum(1) * lg.tensor({ 1, 2, 3, 4 }, F64)):backward()
    assert.are.same({ 10, 9, 7, 4 }, x.grad:tolist())
  end)
end)

-- ---- multinomial, one_hot, argmax/argmin --------------------------------------------------------

describe("multinomial", function()
  it("draws with replacement at the given probabilities (20000 draws within 4 standard errors)", function()
    local p = { 0.1, 0.25, 0, 0.05, 0.6 }
    lg.manual_seed(123)
    local n = 20000
    local d = lg.multinomial(lg.tensor(p, F64), n, { replacement = true })
    assert.are.same({ n }, d.shape)
    assert.are.equal("int64", d.dtype)
    local counts = { 0, 0, 0, 0, 0 }
    for _, v in ipairs(d:tolist()) do counts[v] = counts[v] + 1 end
    for c, pc in ipairs(p) do
      local se = math.sqrt(pc * (1 - pc) / n)
      local f = counts[c] / n
      assert.is_true(math.abs(f - pc) <= 4 * se, string.format("category %d: frequency %.4f, probability %.4f", c, f, pc))
    end
    assert.are.equal(0, counts[3])
    -- unnormalised weights and float32 give the same distribution
    local w = lg.multinomial(lg.tensor({ 2, 5, 0, 1, 12 }), n, true)
    local c2 = { 0, 0, 0, 0, 0 }
    for _, v in ipairs(w:tolist()) do c2[v] = c2[v] + 1 end
    for c, pc in ipairs(p) do
      assert.is_true(math.abs(c2[c] / n - pc) <= 4 * math.sqrt(pc * (1 - pc) / n) + 1e-12)
    end
  end)

  it("is reproducible under manual_seed; rows of 2-d probabilities are drawn independently", function()
    local probs = lg.tensor({ { 0.2, 0.3, 0.5 }, { 0, 0, 1 }, { 0.5, 0.5, 0 } }, F64)
    lg.manual_seed(7)
    local a = probs:multinomial(50, true):tolist()
    local b = probs:multinomial(50, true):tolist()
    lg.manual_seed(7)
    assert.are.same(a, probs:multinomial(50, true):tolist())
    assert.are_not.same(a, b)
    for _, v in ipairs(a[2]) do assert.are.equal(3, v) end
    for _, v in ipairs(a[3]) do assert.is_true(v == 1 or v == 2) end
    assert.are_not.same(a[1], a[3])
  end)

  it("without replacement never repeats a category; first draws follow the probabilities", function()
    lg.manual_seed(3)
    local probs = lg.tensor({ 0.1, 0.2, 0.3, 0.4 }, F64)
    local first = { 0, 0, 0, 0 }
    local n = 4000
    for _ = 1, n do
      local d = lg.multinomial(probs, 4):tolist()
      local seen = {}
      for _, v in ipairs(d) do assert.is_nil(seen[v]); seen[v] = true end
      first[d[1]] = first[d[1]] + 1
    end
    for c, pc in ipairs({ 0.1, 0.2, 0.3, 0.4 }) do
      assert.is_true(math.abs(first[c] / n - pc) <= 4 * math.sqrt(pc * (1 - pc) / n))
    end
    assert.are.same({ 0 }, lg.multinomial(probs, 0).shape)
  end)

  it("errors name multinomial and the row or value at fault", function()
    assert.matches("multinomial: probability %-0%.1 at row 1, category 2",
      message_of(lg.multinomial, lg.tensor({ 0.5, -0.1 }), 1, true))
    assert.matches("multinomial: probability NaN at row 2, category 1",
      message_of(lg.multinomial, lg.tensor({ { 1, 1 }, { 0 / 0, 1 } }), 1, true), 1, true)
    assert.matches("multinomial: row 2 of {2,2} sums to 0",
      message_of(lg.multinomial, lg.tensor({ { 1, 1 }, { 0, 0 } }), 1, true), 1, true)
    assert.matches("multinomial: cannot draw 3 samples from 2 categories without replacement",
      message_of(lg.multinomial, lg.tensor({ 1, 1 }), 3), 1, true)
    assert.matches("has 1 nonzero categories, too few for 2 samples",
      message_of(lg.multinomial, lg.tensor({ 1, 0 }), 2), 1, true)
    assert.matches("multinomial: probabilities must be float32 or float64, got int64",
      message_of(lg.multinomial, long({ 1, 1 }), 1), 1, true)
    assert.matches("multinomial: probabilities must be 1-d or 2-d", message_of(lg.multinomial, lg.ones(1, 1, 2), 1), 1, true)
  end)
end)

describe("one_hot", function()
  it("turns 1-based int64 indices of any shape into int64 rows", function()
    local y = F.one_hot(long({ { 3, 1 }, { 2, 3 } }), 4)
    assert.are.equal("int64", y.dtype)
    assert.are.same({ { { 0, 0, 1, 0 }, { 1, 0, 0, 0 } }, { { 0, 1, 0, 0 }, { 0, 0, 1, 0 } } }, y:tolist())
    assert.are.same({ { 0, 1 }, { 1, 0 } }, F.one_hot(long({ 2, 1 })):tolist())
    assert.are.same({ 0, 0, 1 }, F.one_hot(long(3), 3):tolist())
    assert.are.same({ 0, 5 }, F.one_hot(lg.zeros({ 0 }, I64), 5).shape)
    assert.matches("one_hot: index 5 out of range 1..4", message_of(F.one_hot, long({ 1, 5 }), 4), 1, true)
    assert.matches("one_hot: index 0 out of range", message_of(F.one_hot, long({ 0 }), 4), 1, true)
    assert.matches("one_hot: indices must be int64", message_of(F.one_hot, lg.tensor({ 1 }), 4), 1, true)
    assert.matches("one_hot: cannot infer num_classes", message_of(F.one_hot, lg.zeros({ 0 }, I64)), 1, true)
  end)
end)

describe("argmax and argmin along a dimension", function()
  it("work on every dimension, with keepdim, the first extreme winning", function()
    local shape = { 2, 3, 4 }
    local X = values(shape, 12)
    X[1][2][3] = X[1][2][1] -- a tie: the first one wins
    local x = lg.tensor(X, F64)
    for dim = 1, 3 do
      for _, which in ipairs({ "argmax", "argmin" }) do
        local y = x[which](x, dim)
        local want_shape = { 2, 3, 4 }
        table.remove(want_shape, dim)
        assert.are.same(want_shape, y.shape)
        assert.are.equal("int64", y.dtype)
        local yk = x[which](x, dim, true)
        want_shape = { 2, 3, 4 }
        want_shape[dim] = 1
        assert.are.same(want_shape, yk.shape)
        local Y = yk:tolist()
        for _, r in ipairs(rows_along(X, shape, dim)) do
          local best = 1
          for j, v in ipairs(r.values) do
            if (which == "argmax" and v > r.values[best]) or (which == "argmin" and v < r.values[best]) then best = j end
          end
          assert.are.equal(best, at(Y, r.start), which .. " along " .. dim)
        end
      end
    end
    assert.are.equal(2, lg.tensor({ 1, 5, 5 }):argmax(-1):item())
  end)
end)

-- ---- softmax along any dimension ---------------------------------------------------------------

describe("softmax and log_softmax", function()
  it("match a direct computation along every dimension, in float32 and float64, non-contiguous too", function()
    local shape = { 3, 4, 5 }
    local X = values(shape, 13)
    for _, dt in ipairs({ "float64", "float32" }) do
      local tol = dt == "float32" and 2e-6 or 1e-14
      for _, layout in ipairs({ "contiguous", "transposed" }) do
        local x = lg.tensor(X, F64):to(dt)
        if layout == "transposed" then x = x:transpose(1, 3):contiguous():transpose(1, 3) end
        for dim = -3, 3 do
          if dim ~= 0 then
            local d = dim < 0 and dim + 4 or dim
            local s, ls = x:softmax(dim), F.log_softmax(x, dim)
            local S, LS = s:tolist(), ls:tolist()
            for _, r in ipairs(rows_along(X, shape, d)) do
              local m, sum = -math.huge, 0
              for _, v in ipairs(r.values) do m = math.max(m, v) end
              for _, v in ipairs(r.values) do sum = sum + math.exp(v - m) end
              for j, v in ipairs(r.values) do
                local idx = { table.unpack(r.start) }
                idx[d] = j
                local ws, wl = math.exp(v - m) / sum, v - m - math.log(sum)
                assert.is_true(math.abs(at(S, idx) - ws) <= tol, string.format("%s %s softmax(%d)", dt, layout, dim))
                assert.is_true(math.abs(at(LS, idx) - wl) <= tol * 4, string.format("%s %s log_softmax(%d)", dt, layout, dim))
              end
            end
          end
        end
      end
    end
    -- rows with -inf (masked attention scores) and a large row through the vectorized float32 path
    local m = lg.tensor({ { 0, -math.huge, 1 }, { -math.huge, -math.huge, 2 } }):softmax(2):tolist()
    assert.are.same(0, m[1][2])
    assert.are.same({ 0, 0, 1 }, m[2])
    local big = lg.arange(0, 1000):div(100):softmax(1)
    assert.is_true(math.abs(big:sum():item() - 1) < 1e-5)
    assert.are.same({ 0, 7 }, lg.zeros(0, 7):softmax(2).shape)
  end)
end)
