-- Scaled dot-product attention (the fused op, src/engine/attention.c) and nn.MultiheadAttention.
--
--   golden      every scaled_dot_product_attention and multihead_attention case of
--               spec/golden/attention.json (PyTorch 1.13, float64) to 1e-9 relative: outputs and
--               gradients (the embedding case belongs to the embedding op's spec)
--   composite   the fused op equals the same math written with ordinary ops (matmul, where,
--               softmax: F._attention_weights(...):matmul(v)) in values and gradients, float32
--               and float64, on shapes with T = 1, S ~= T, d ~= dv, 3-d and 4-d, broadcasting
--               leading dimensions, transposed (B, T, H, d) -> (B, H, T, d) views, masks; and
--               with two threads equals one thread
--   causality   with is_causal, a model's output at position t does not move when the inputs
--               after t change, and does move at the positions after t
--   module      MultiheadAttention: state-dict keys, init, batch_first, unbatched input,
--               key_padding_mask, weights, dropout
--   errors      the op and the shapes named for mismatched d, bad masks, non-float inputs
-- (gradcheck and forward-vs-reverse Jacobians for the op are rows of spec/autograd_ops_spec.lua)
local lg = require "luagrad"
local nn = lg.nn
local F = nn.functional
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"
local util = require "helpers.util"

local F64 = { dtype = "float64" }
local REL, ABS = 1e-9, 1e-14
local T = golden.T
local function close(got, want, what) golden.assert_close(got, want, what, REL, ABS) end

-- the largest |a - b| / max(|b|, 1) over the elements (NaN counts as infinite)
local function max_err(a, b)
  local x, y = a:detach():to("float64"):reshape(-1):tolist(), b:detach():to("float64"):reshape(-1):tolist()
  assert.are.equal(#y, #x, "element count")
  local worst = 0
  for i = 1, #y do
    local e = math.abs(x[i] - y[i]) / math.max(math.abs(y[i]), 1)
    if e ~= e then return math.huge end
    if e > worst then worst = e end
  end
  return worst
end

-- the composite reference, by ordinary ops
local function composite(q, k, v, o)
  o = o or {}
  local scale = o.scale or 1 / math.sqrt(q:size(-1))
  return F._attention_weights(q, k, o.attn_mask, o.is_causal, scale):matmul(v)
end

describe("scaled dot-product attention: golden values (attention.json)", function()
  local doc = golden.load("attention.json")
  local n = 0
  for ci, c in ipairs(doc.cases) do
    if c.fn == "scaled_dot_product_attention" then
      n = n + 1
      local label = string.format("case %d: is_causal = %s", ci, tostring(c.options.is_causal))
      it(label .. ": output and q, k, v gradients", function()
        local q, k, v = golden.P(c.q), golden.P(c.k), golden.P(c.v)
        local y = F.scaled_dot_product_attention(q, k, v, { is_causal = c.options.is_causal })
        close(y, c.y, "y")
        y:backward(T(c.upstream))
        close(q.grad, c.dq, "dq")
        close(k.grad, c.dk, "dk")
        close(v.grad, c.dv, "dv")
      end)
      it(label .. ": the same through an explicit mask, int64 (nonzero: may attend) and float (0 or -inf)", function()
        local Tq, S = #c.q[1][1], #c.k[1][1]
        local keep = lg.ones(Tq, S, { dtype = "int64" })
        if c.options.is_causal then keep = F._causal_keep(Tq, S) end
        local additive = lg.where(keep, 0, lg.full({ Tq, S }, -math.huge, F64))
        for _, mask in ipairs({ keep, additive }) do
          local q, k, v = golden.P(c.q), golden.P(c.k), golden.P(c.v)
          local y = F.scaled_dot_product_attention(q, k, v, { attn_mask = mask })
          close(y, c.y, "y, " .. mask.dtype .. " mask")
          y:backward(T(c.upstream))
          close(q.grad, c.dq, "dq, " .. mask.dtype .. " mask")
          close(k.grad, c.dk, "dk, " .. mask.dtype .. " mask")
          close(v.grad, c.dv, "dv, " .. mask.dtype .. " mask")
        end
      end)
    end
  end

  for ci, c in ipairs(doc.cases) do
    if c.fn == "multihead_attention" then
      n = n + 1
      local o = c.options
      local function model()
        local m = nn.MultiheadAttention(o.embed_dim, o.num_heads, { batch_first = o.batch_first, dtype = "float64" })
        local sd = {}
        for key, val in pairs(c.state_dict) do sd[key] = T(val) end
        m:load_state_dict(sd)
        return m
      end
      local causal = { is_causal = true }
      local S = #c.x[1]
      local hidden = F._causal_keep(S, S):eq(0) -- PyTorch's boolean mask for the module: nonzero hides
      for _, how in ipairs({
        { "is_causal, need_weights = false (the fused op)", { is_causal = true, need_weights = false } },
        { "is_causal, need_weights (the composite)", causal },
        { "an int64 attn_mask (nonzero hides)", { attn_mask = hidden, need_weights = false } },
      }) do
        it(string.format("case %d: MultiheadAttention(%d, %d) causal self-attention, %s", ci, o.embed_dim,
          o.num_heads, how[1]), function()
          assert.is_true(o.causal_mask)
          local m = model()
          local x = golden.P(c.x)
          local y = m(x, x, x, how[2])
          close(y, c.y, "y")
          y:backward(T(c.upstream))
          close(x.grad, c.dx, "dx")
          local named = {}
          for name, p in m:named_parameters() do named[name] = p end
          for name, want in pairs(c.dparams) do close(named[name].grad, want, "d " .. name) end
        end)
      end
      it(string.format("case %d: state_dict keys are PyTorch's", ci), function()
        local keys, want = {}, {}
        for key in pairs(model():state_dict()) do keys[#keys + 1] = key end
        for key in pairs(c.state_dict) do want[#want + 1] = key end
        table.sort(keys)
        table.sort(want)
        assert.are.same(want, keys)
      end)
    end
  end

  it("covers every attention case of the file", function() assert.are.equal(3, n) end)
end)

-- a random tensor of shape, in DTYPE (float64 but where a test sets it)
local DTYPE = "float64"
local function randn(shape) return lg.randn(shape, { dtype = DTYPE }) end

-- (B, T, H, d) -> (B, H, T, d): the view a projection split into heads gives
local function heads_view(B, L, H, d) return randn({ B, L, H, d }):transpose(2, 3) end

-- an int64 mask of shape with at least one key allowed per row (column 1 always)
local function int_mask(shape)
  local m = lg.rand(shape):gt(0.4):to("int64")
  m:narrow(#shape, 1, 1):fill_(1)
  return m
end

local CASES = {
  { "T = 1, S = 5, d = 3, dv = 2 (3-d)", function() return randn({ 2, 1, 3 }), randn({ 2, 5, 3 }), randn({ 2, 5, 2 }) end },
  { "T = 4, S = 7, d = 5, dv = 3 (4-d)",
    function() return randn({ 2, 3, 4, 5 }), randn({ 2, 3, 7, 5 }), randn({ 2, 3, 7, 3 }) end },
  { "broadcast leading dims: q (2,3,T,d), k (3,S,d), v (2,1,S,dv)",
    function() return randn({ 2, 3, 4, 5 }), randn({ 3, 6, 5 }), randn({ 2, 1, 6, 3 }) end },
  { "2-d q, k, v", function() return randn({ 5, 4 }), randn({ 3, 4 }), randn({ 3, 6 }) end },
  { "2-d q and k, 4-d v (the scores broadcast against v's batch)",
    function() return randn({ 5, 4 }), randn({ 3, 4 }), randn({ 2, 2, 3, 6 }) end, { is_causal = true } },
  { "transposed views (B, T, H, d) -> (B, H, T, d)",
    function() return heads_view(2, 5, 3, 4), heads_view(2, 6, 3, 4), heads_view(2, 6, 3, 2) end },
  { "q k^T through a transposed k (k stored (d, S))",
    function() return randn({ 2, 3, 4 }), randn({ 2, 4, 5 }):transpose(2, 3), randn({ 2, 5, 4 }):narrow(3, 2, 2) end },
  { "is_causal, T < S", function() return randn({ 2, 3, 4 }), randn({ 2, 6, 4 }), randn({ 2, 6, 3 }) end,
    { is_causal = true } },
  { "is_causal, T > S", function() return randn({ 2, 6, 4 }), randn({ 2, 3, 4 }), randn({ 2, 3, 5 }) end,
    { is_causal = true } },
  { "is_causal, transposed views, T = S = 8",
    function() return heads_view(2, 8, 2, 4), heads_view(2, 8, 2, 4), heads_view(2, 8, 2, 4) end, { is_causal = true } },
  { "an int64 mask broadcast over batch and heads",
    function() return randn({ 2, 3, 4, 5 }), randn({ 2, 3, 6, 5 }), randn({ 2, 3, 6, 2 }) end,
    function() return { attn_mask = int_mask({ 2, 1, 4, 6 }) } end },
  { "a float mask (T, S) and a scale",
    function() return randn({ 2, 3, 4, 5 }), randn({ 2, 3, 6, 5 }), randn({ 2, 3, 6, 2 }) end,
    function() return { attn_mask = randn({ 4, 6 }), scale = 0.3 } end },
}

describe("scaled dot-product attention: the fused op equals the composite", function()
  for _, dtype in ipairs({ "float64", "float32" }) do
    local tol = dtype == "float64" and 1e-12 or 2e-5
    for ci, case in ipairs(CASES) do
      it(string.format("%s, %s: values and gradients", dtype, case[1]), function()
        lg.manual_seed(100 + ci)
        DTYPE = dtype
        local q0, k0, v0 = case[2]()
        local o = type(case[3]) == "function" and case[3]() or case[3] or {}
        DTYPE = "float64"
        local function leaves() -- the same views, as leaves of their own
          local function leaf(t) return t:detach():requires_grad_(true) end
          return leaf(q0), leaf(k0), leaf(v0)
        end
        local q1, k1, v1 = leaves()
        local q2, k2, v2 = leaves()
        local y1 = F.scaled_dot_product_attention(q1, k1, v1, o)
        local y2 = composite(q2, k2, v2, o)
        if case[1]:find("transposed") then assert.is_false(k1:is_contiguous(), "k is a strided view") end
        assert.are.same(y2.shape, y1.shape)
        assert.are.equal(dtype, y1.dtype)
        assert.is_true(max_err(y1, y2) <= tol, "output differs by " .. max_err(y1, y2))
        local g = lg.randn(y1.shape, { dtype = dtype })
        y1:backward(g)
        y2:backward(g)
        for _, p in ipairs({ { "q", q1, q2 }, { "k", k1, k2 }, { "v", v1, v2 } }) do
          assert.are.same(p[3].shape, p[2].grad.shape)
          local e = max_err(p[2].grad, p[3].grad)
          assert.is_true(e <= tol, string.format("d%s differs by %g", p[1], e))
        end
        -- with create_graph the op's backward is its composite form: the same gradients
        local q3, k3, v3 = leaves()
        local gs = lg.autograd.grad((F.scaled_dot_product_attention(q3, k3, v3, o) * g):sum(), { q3, k3, v3 },
          { create_graph = true })
        for i, p in ipairs({ { "q", q1 }, { "k", k1 }, { "v", v1 } }) do
          local e = max_err(gs[i], p[2].grad)
          assert.is_true(e <= tol, string.format("d%s with create_graph differs by %g", p[1], e))
        end
      end)
    end
  end

  it("the views are read in place: a (B, T, H, d) -> (B, H, T, d) transpose is not contiguous", function()
    assert.is_false(heads_view(2, 5, 3, 4):is_contiguous())
  end)

  it("two threads give the same values and gradients as one (blocks split across threads)", function()
    lg.manual_seed(7)
    local q0, k0, v0 = heads_view(8, 32, 4, 16), heads_view(8, 32, 4, 16), heads_view(8, 32, 4, 16)
    local g = randn({ 8, 4, 32, 16 })
    local function run(threads)
      local before = lg.get_num_threads()
      lg.set_num_threads(threads)
      local q, k, v = q0:detach():requires_grad_(), k0:detach():requires_grad_(), v0:detach():requires_grad_()
      local y = F.scaled_dot_product_attention(q, k, v, { is_causal = true })
      y:backward(g)
      lg.set_num_threads(before)
      return y, q.grad, k.grad, v.grad
    end
    local a, b = { run(1) }, { run(2) }
    for i = 1, 4 do assert.are.equal(0, max_err(a[i], b[i])) end
    -- and equal to the composite
    assert.is_true(max_err(a[1], composite(q0, k0, v0, { is_causal = true })) <= 1e-12)
  end)

  it("a row whose keys are all masked gives NaN, as PyTorch (its softmax has nothing to normalize)", function()
    local mask = lg.tensor({ { 0, 0, 0 }, { 1, 0, 1 } }, { dtype = "int64" })
    local y = F.scaled_dot_product_attention(randn({ 2, 4 }), randn({ 3, 4 }), randn({ 3, 2 }), { attn_mask = mask })
    local rows = y:tolist()
    assert.is_true(rows[1][1] ~= rows[1][1] and rows[1][2] ~= rows[1][2])
    assert.is_true(rows[2][1] == rows[2][1] and rows[2][2] == rows[2][2])
  end)

  it("gradients through the float mask itself (the composite backward) match the composite", function()
    lg.manual_seed(3)
    local q, k, v = randn({ 2, 3, 4 }), randn({ 2, 5, 4 }), randn({ 2, 5, 3 })
    local m1 = randn({ 3, 5 }):requires_grad_()
    local m2 = m1:detach():requires_grad_()
    local g = randn({ 2, 3, 3 })
    F.scaled_dot_product_attention(q, k, v, { attn_mask = m1 }):backward(g)
    composite(q, k, v, { attn_mask = m2 }):backward(g)
    assert.is_true(max_err(m1.grad, m2.grad) <= 1e-12)
    assert.is_true(m1.grad:abs():sum():item() > 1e-3)
  end)

  it("dropout_p > 0 draws from luagrad's generator: seeded runs agree, p = 1 gives zeros", function()
    local q, k, v = randn({ 2, 4, 3 }), randn({ 2, 4, 3 }), randn({ 2, 4, 3 })
    lg.manual_seed(11)
    local a = F.scaled_dot_product_attention(q, k, v, { dropout_p = 0.5 })
    lg.manual_seed(11)
    local b = F.scaled_dot_product_attention(q, k, v, { dropout_p = 0.5 })
    assert.are.equal(0, max_err(a, b))
    assert.is_true(max_err(a, F.scaled_dot_product_attention(q, k, v)) > 1e-3)
    assert.are.equal(0, F.scaled_dot_product_attention(q, k, v, { dropout_p = 1 }):abs():sum():item())
  end)
end)

describe("scaled dot-product attention: causality", function()
  -- two causal self-attention layers with a position-wise layer between them
  local function model(E, H)
    lg.manual_seed(5)
    local a1 = nn.MultiheadAttention(E, H, { dtype = "float64" })
    local mid = nn.Linear(E, E, { dtype = "float64" })
    local a2 = nn.MultiheadAttention(E, H, { dtype = "float64" })
    return function(x)
      local h = a1(x, x, x, { is_causal = true, need_weights = false })
      h = mid(h):tanh() + x
      return (a2(h, h, h, { is_causal = true, need_weights = false }))
    end
  end

  for _, t in ipairs({ 1, 4, 7 }) do
    it(string.format("changing the inputs after position %d leaves positions 1..%d unchanged and moves the rest", t, t),
      function()
        local f = model(8, 2)
        lg.manual_seed(9)
        local x = randn({ 3, 8, 8 })
        local x2 = x:clone()
        x2:narrow(2, t + 1, 8 - t):copy_(randn({ 3, 8 - t, 8 }))
        local y, y2 = f(x), f(x2)
        assert.are.equal(0, max_err(y:narrow(2, 1, t), y2:narrow(2, 1, t)))
        for pos = t + 1, 8 do
          assert.is_true(max_err(y:narrow(2, pos, 1), y2:narrow(2, pos, 1)) > 1e-6, "position " .. pos .. " did not move")
        end
      end)
  end

  it("without is_causal, changing a later input moves the earlier positions (the check can fail)", function()
    lg.manual_seed(5)
    local a = nn.MultiheadAttention(8, 2, { dtype = "float64" })
    local x = randn({ 2, 6, 8 })
    local x2 = x:clone()
    x2:narrow(2, 6, 1):copy_(randn({ 2, 1, 8 }))
    local y = a(x, x, x, { need_weights = false })
    local y2 = a(x2, x2, x2, { need_weights = false })
    assert.is_true(max_err(y:narrow(2, 1, 1), y2:narrow(2, 1, 1)) > 1e-6)
  end)
end)

describe("nn.MultiheadAttention", function()
  it("has PyTorch's parameters, shapes and initialization", function()
    lg.manual_seed(1)
    local m = nn.MultiheadAttention(16, 4)
    local names, shapes = {}, {}
    for name, p in m:named_parameters() do
      names[#names + 1] = name
      shapes[name] = p.shape
    end
    assert.are.same({ "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias" }, names)
    assert.are.same({ 48, 16 }, shapes.in_proj_weight)
    assert.are.same({ 48 }, shapes.in_proj_bias)
    assert.are.same({ 16, 16 }, shapes["out_proj.weight"])
    assert.are.equal(0, m.in_proj_bias:abs():sum():item())
    assert.are.equal(0, m.out_proj.bias:abs():sum():item())
    -- xavier_uniform_ over (3E, E): U(-a, a), a = sqrt(6 / (E + 3E)); the spread fills the range
    local a = math.sqrt(6 / (16 + 48))
    assert.is_true(m.in_proj_weight:abs():max():item() <= a)
    assert.is_true(m.in_proj_weight:abs():max():item() > 0.9 * a)
    -- out_proj.weight as a Linear's: U(-1/sqrt(E), 1/sqrt(E))
    assert.is_true(m.out_proj.weight:abs():max():item() <= 1 / math.sqrt(16))
    assert.are.equal(4, m.head_dim)
    local nb = nn.MultiheadAttention(16, 4, { bias = false })
    local keys = {}
    for key in pairs(nb:state_dict()) do keys[#keys + 1] = key end
    table.sort(keys)
    assert.are.same({ "in_proj_weight", "out_proj.weight" }, keys)
  end)

  it("returns head-averaged weights (rows summing to 1), per-head weights, or none", function()
    lg.manual_seed(2)
    local m = nn.MultiheadAttention(6, 3, { dtype = "float64" })
    local q, kv = randn({ 2, 4, 6 }), randn({ 2, 5, 6 })
    local y, w = m(q, kv, kv)
    assert.are.same({ 2, 4, 6 }, y.shape)
    assert.are.same({ 2, 4, 5 }, w.shape)
    assert.is_true(max_err(w:sum(3), lg.ones(2, 4, F64)) <= 1e-12)
    local y2, wh = m(q, kv, kv, { average_attn_weights = false })
    assert.are.same({ 2, 3, 4, 5 }, wh.shape)
    assert.is_true(max_err(wh:mean(2), w) <= 1e-12)
    local y3, none = m(q, kv, kv, { need_weights = false })
    assert.is_nil(none)
    assert.is_true(max_err(y2, y) <= 1e-12 and max_err(y3, y) <= 1e-12)
  end)

  it("batch_first = false takes (T, B, E); unbatched (T, E) input works", function()
    lg.manual_seed(3)
    local m = nn.MultiheadAttention(6, 2, { dtype = "float64" })
    local m2 = nn.MultiheadAttention(6, 2, { dtype = "float64", batch_first = false })
    m2:load_state_dict(m:state_dict())
    local x = randn({ 2, 4, 6 })
    local y = m(x, x, x, { need_weights = false })
    local xt = x:transpose(1, 2):contiguous()
    local yt = m2(xt, xt, xt, { need_weights = false })
    assert.is_true(max_err(yt:transpose(1, 2), y) <= 1e-12)
    local x1 = x[1]
    local y1, w1 = m(x1, x1, x1)
    assert.are.same({ 4, 6 }, y1.shape)
    assert.are.same({ 4, 4 }, w1.shape)
    assert.is_true(max_err(y1, y[1]) <= 1e-12)
  end)

  it("key_padding_mask hides keys (int64 nonzero, or float -inf), combined with is_causal", function()
    lg.manual_seed(4)
    local m = nn.MultiheadAttention(6, 3, { dtype = "float64" })
    local q, kv = randn({ 2, 3, 6 }), randn({ 2, 5, 6 })
    local pad = lg.tensor({ { 0, 0, 0, 1, 1 }, { 0, 0, 0, 0, 1 } }, { dtype = "int64" })
    local y, w = m(q, kv, kv, { key_padding_mask = pad })
    -- the weights on padded keys are zero
    assert.are.equal(0, w:select(1, 1):narrow(2, 4, 2):abs():sum():item())
    assert.are.equal(0, w:select(1, 2):narrow(2, 5, 1):abs():sum():item())
    -- the same as dropping those keys
    local y1 = m(q:narrow(1, 1, 1), kv:narrow(1, 1, 1):narrow(2, 1, 3), kv:narrow(1, 1, 1):narrow(2, 1, 3))
    assert.is_true(max_err(y:narrow(1, 1, 1), y1) <= 1e-12)
    local additive = lg.where(pad, -math.huge, lg.zeros(2, 5, F64))
    local y2 = m(q, kv, kv, { key_padding_mask = additive, need_weights = false })
    assert.is_true(max_err(y2, y) <= 1e-12)
    -- with is_causal: the fused path (need_weights = false) equals the composite one
    local x = randn({ 2, 5, 6 })
    local yc, wc = m(x, x, x, { key_padding_mask = pad, is_causal = true })
    local yf = m(x, x, x, { key_padding_mask = pad, is_causal = true, need_weights = false })
    assert.is_true(max_err(yf, yc) <= 1e-12)
    assert.are.equal(0, wc:select(1, 1):select(1, 2):narrow(1, 3, 3):abs():sum():item())
  end)

  it("a 3-d attn_mask (B * num_heads, T, S) masks each head on its own", function()
    lg.manual_seed(6)
    local m = nn.MultiheadAttention(4, 2, { dtype = "float64" })
    local x = randn({ 2, 3, 4 })
    local am = lg.randn({ 4, 3, 3 }, F64)
    local _, w = m(x, x, x, { attn_mask = am, average_attn_weights = false })
    local y = m(x, x, x, { attn_mask = am, need_weights = false })
    local y2 = m(x, x, x, { attn_mask = am })
    assert.are.same({ 2, 2, 3, 3 }, w.shape)
    assert.is_true(max_err(y, y2) <= 1e-12)
  end)

  it("dropout acts in training only", function()
    lg.manual_seed(8)
    local m = nn.MultiheadAttention(4, 2, { dtype = "float64", dropout = 0.5 })
    local x = randn({ 2, 5, 4 })
    m:eval()
    local ye = m(x, x, x, { need_weights = false })
    local ye2 = m(x, x, x, { need_weights = false })
    assert.are.equal(0, max_err(ye, ye2))
    m:train()
    local yt = m(x, x, x, { need_weights = false })
    assert.is_true(max_err(yt, ye) > 1e-6)
  end)
end)

describe("scaled dot-product attention: errors name the op and the shapes", function()
  local q, k, v = randn({ 2, 3, 4 }), randn({ 2, 5, 4 }), randn({ 2, 5, 3 })
  local sdpa = F.scaled_dot_product_attention

  it("mismatched d, S and batch dimensions", function()
    util.raises("scaled_dot_product_attention: q {2,3,4} and k {2,5,3} differ in the last dimension", sdpa, q,
      randn({ 2, 5, 3 }), v)
    util.raises("scaled_dot_product_attention: k {2,5,4} and v {2,4,3} differ in the sequence length", sdpa, q, k,
      randn({ 2, 4, 3 }))
    util.raises("scaled_dot_product_attention: the leading dimensions of q {2,3,4}, k {3,5,4} and v {2,5,3} do not",
      sdpa, q, randn({ 3, 5, 4 }), v)
    util.raises("scaled_dot_product_attention: q, k and v must be at least 2%-d", sdpa, randn({ 4 }), k, v)
  end)

  it("bad masks", function()
    util.raises("scaled_dot_product_attention: attn_mask {4,5} does not broadcast to the scores' shape {2,3,5}", sdpa,
      q, k, v, { attn_mask = randn({ 4, 5 }) })
    util.raises("scaled_dot_product_attention: give attn_mask or is_causal, not both", sdpa, q, k, v,
      { attn_mask = randn({ 3, 5 }), is_causal = true })
    util.raises("scaled_dot_product_attention: attn_mask must be a tensor", sdpa, q, k, v, { attn_mask = 1 })
    util.raises("scaled_dot_product_attention: dropout_p must be a probability", sdpa, q, k, v, { dropout_p = 2 })
    util.raises("scaled_dot_product_attention: unknown option", sdpa, q, k, v, { causal = true })
  end)

  it("non-float inputs", function()
    local qi = lg.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "int64" })
    util.raises("scaled_dot_product_attention: q, k and v must be float tensors, got q int64 {2,2}, k int64 {2,2} " ..
      "and v int64 {2,2}", sdpa, qi, qi, qi)
    -- as matmul does, a float among them sets the dtype: an int64 k is promoted
    local y = sdpa(q, lg.tensor({ { 1, 0, 2, 1 } }, { dtype = "int64" }), v:narrow(2, 1, 1))
    assert.are.equal("float64", y.dtype)
    assert.is_true(max_err(y, v:narrow(2, 1, 1):expand(2, 3, 3)) <= 1e-15) -- one key: P = 1
    util.raises("scaled_dot_product_attention: q must be a tensor", sdpa, "q", k, v)
  end)

  it("MultiheadAttention's arguments", function()
    util.raises("MultiheadAttention: embed_dim 6 is not divisible by num_heads 4", nn.MultiheadAttention, 6, 4)
    local m = nn.MultiheadAttention(6, 2)
    util.raises("MultiheadAttention: query must be %(B, L, 6%) or %(L, 6%), got shape {2,3,5}", m, lg.randn(2, 3, 5),
      lg.randn(2, 3, 6), lg.randn(2, 3, 6))
    local x = lg.randn(2, 3, 6)
    util.raises("MultiheadAttention: key_padding_mask must be %(2, 3%)", m, x, x, x,
      { key_padding_mask = lg.zeros(3, 2) })
    util.raises("MultiheadAttention: attn_mask must be %(3, 3%) or %(4, 3, 3%)", m, x, x, x,
      { attn_mask = lg.zeros(2, 2) })
  end)
end)
