-- Every differentiable op through the tape, table-driven.
--
-- For each op (one row of OPS below) and each input layout:
--   contiguous   plain tensors
--   transposed   non-contiguous views with the same values (last two dims swapped back; a 1-d
--                input is a column of a 2-d tensor, stride 2)
--   narrowed     views into a bigger tensor (the last dim narrowed, with an offset)
--   expanded     stride-0 leaves: the input is a size-1 dim expanded (the leaf itself is a view)
--   broadcast    binary ops: (3,1) with (1,4), and (3,4) with (4,); other ops: a leaf with a
--                size-1 dim that f expands (so the gradient is summed back through broadcasting)
-- the spec checks
--   * gradcheck (central differences in float64 against the tape) passes, and
--   * jacobian(f, x, {mode = "forward"}) equals jacobian(f, x, {mode = "reverse"}) to 1e-10
--     for every input (forward mode propagates tangents through each op's JVP rule, reverse mode
--     runs the VJP rules, so the two are independent implementations of the same derivative),
-- and, on contiguous and broadcast inputs, a second-order check: gradcheck of x -> grad(sum(w * f(x)), x) built
-- with create_graph (double backward).
--
-- Coverage by construction: each passing check records which op-table rows its graph went
-- through (lg.ops lists the rows; core._graph_ops(y) the ops recorded for y), and the last test
-- fails for any differentiable row that no gradcheck or no forward-vs-reverse check reached. A
-- new op therefore needs a row in OPS below before the suite passes.
--
-- Input values avoid kinks and singularities: |x| >= 0.3 for abs/relu/sign/norm, positive values
-- for log/sqrt/rsqrt/pow bases, no ties for max/min/maximum/minimum, a/b away from integers for
-- remainder.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local ref = require "helpers.ref"
local ag = lg.autograd
local graph_ops = require("luagrad.core")._graph_ops

local F64 = "float64"
local JAC_TOL = 1e-10

-- ---- deterministic input values, a function of the logical index ----------------------------
local PHASE = { 1.37, 2.71, 0.91, 1.93 }
local function wave(idx, seed)
  local p = seed * 2.3
  for d, i in ipairs(idx) do p = p + i * PHASE[d] * (1 + 0.17 * seed) end
  return math.sin(p)
end

local GEN = {}
-- in [-2.4, 2.4] with |v| >= 0.3
function GEN.signed(seed)
  return function(idx)
    local v = 2.4 * wave(idx, seed)
    if math.abs(v) < 0.3 then v = v + (v >= 0 and 0.35 or -0.35) end
    return v
  end
end
-- in [0.3, 2.5]
function GEN.positive(seed)
  return function(idx) return 0.3 + 1.1 * (wave(idx, seed) + 1) end
end
-- in (-0.7, 0.7): log1p's domain with margin
function GEN.small(seed)
  return function(idx) return 0.7 * wave(idx, seed) end
end
-- in [1.0, 2.0]: divisors for remainder whose quotients stay away from integers (checked below)
function GEN.divisor(seed)
  return function(idx) return 1.5 + 0.5 * wave(idx, seed) end
end
-- multiples of 1/8 in [-2.5, 2.5]: exact in float32 (for the cast op)
function GEN.eighths(seed)
  return function(idx) return math.floor(20 * wave(idx, seed)) / 8 end
end

-- ---- building tensors in each layout ---------------------------------------------------------
local nested = ref.build -- nested table of `shape`, element idx = f(idx)

local function copy(t) return { table.unpack(t) } end

local function shape_str(s)
  local p = {}
  for i, d in ipairs(s) do p[i] = tostring(d) end
  return "(" .. table.concat(p, ",") .. ")"
end

-- A float64 tensor of `shape`, element idx = f(idx), laid out as `layout`.
local function make(shape, f, layout)
  local o = { dtype = F64 }
  local nd = #shape
  if layout == "contiguous" or nd == 0 then
    return lg.tensor(nested(shape, f), o)
  elseif layout == "transposed" then
    if nd == 1 then -- column 2 of an (n, 2) tensor: stride 2
      local base = lg.tensor(nested({ shape[1], 2 }, function(idx)
        return idx[2] == 2 and f({ idx[1] }) or 99
      end), o)
      local v = base:select(2, 2)
      assert(not v:is_contiguous())
      return v
    end
    local ts = copy(shape)
    ts[nd - 1], ts[nd] = shape[nd], shape[nd - 1]
    local base = lg.tensor(nested(ts, function(idx)
      idx[nd - 1], idx[nd] = idx[nd], idx[nd - 1]
      return f(idx)
    end), o)
    return base:transpose(nd - 1, nd)
  elseif layout == "narrowed" then
    local bs = copy(shape)
    bs[nd] = shape[nd] + 3
    local big = lg.tensor(nested(bs, function(idx)
      local i = idx[nd]
      if i < 2 or i > shape[nd] + 1 then return 77 end
      idx[nd] = i - 1
      return f(idx)
    end), o)
    return big:narrow(nd, 2, shape[nd])
  end
  error("unknown layout " .. tostring(layout))
end

-- ---- the op table ----------------------------------------------------------------------------
-- Fields: name, fn(...) -> tensor, shapes (input shapes; default {{3,4}} or {{3,4},{3,4}} for
-- binary), gens (generator names per input, default "signed"), binary (elementwise broadcasting
-- op: broadcast layouts (3,1)x(1,4) and (3,4)x(4,)), bshapes (explicit broadcast input shapes),
-- expand_dim (which dim the expanded/broadcast layouts collapse to size 1; default 1),
-- no_expanded (reason the stride-0-leaf layout does not apply), no_forward (reason forward mode
-- cannot run through fn), eps (gradcheck step).
local OPS = {}
local function op(t) OPS[#OPS + 1] = t end
local function un(name, fn, gen, extra)
  local t = extra or {}
  t.name, t.fn, t.gens = name, fn, { gen or "signed" }
  op(t)
end
local function bin(name, fn, g1, g2, extra)
  local t = extra or {}
  t.name, t.fn, t.gens, t.binary = name, fn, { g1 or "signed", g2 or "signed" }, true
  op(t)
end

-- unary elementwise
un("neg", function(x) return -x end)
un("neg (method)", function(x) return x:neg() end)
un("exp", function(x) return x:exp() end)
un("log", function(x) return x:log() end, "positive")
un("sqrt", function(x) return x:sqrt() end, "positive")
un("rsqrt", function(x) return x:rsqrt() end, "positive")
un("abs", function(x) return x:abs() end)
un("sin", function(x) return x:sin() end)
un("cos", function(x) return x:cos() end)
un("tanh", function(x) return x:tanh() end)
un("sigmoid", function(x) return x:sigmoid() end)
un("relu", function(x) return x:relu() end)
un("sign", function(x) return x:sign() end)
un("floor", function(x) return x:floor() end)
un("ceil", function(x) return x:ceil() end)
un("round", function(x) return x:round() end)
un("log1p", function(x) return x:log1p() end, "small")
un("expm1", function(x) return x:expm1() end)
un("reciprocal", function(x) return x:reciprocal() end)
un("square", function(x) return x:square() end)
un("erf", function(x) return x:erf() end)
un("tan", function(x) return x:tan() end, "small")
un("atan", function(x) return x:atan() end)
un("sinh", function(x) return x:sinh() end)
un("cosh", function(x) return x:cosh() end)
un("log2", function(x) return x:log2() end, "positive")
un("log10", function(x) return x:log10() end, "positive")
un("trunc", function(x) return x:trunc() end)
un("gelu", function(x) return x:gelu() end)
un("gelu tanh", function(x) return x:gelu({ approximate = "tanh" }) end)
un("leaky_relu(0.1)", function(x) return x:leaky_relu(0.1) end)
un("leaky_relu{negative_slope=0.2}", function(x) return x:leaky_relu({ negative_slope = 0.2 }) end)
un("elu{alpha=1.5}", function(x) return x:elu({ alpha = 1.5 }) end)
un("elu", function(x) return x:elu() end)
un("softplus", function(x) return x:softplus() end)
un("softplus{beta=2,threshold=1}", function(x) return x:softplus({ beta = 2, threshold = 1 }) end)
un("silu", function(x) return x:silu() end)
un("softmax(1)", function(x) return x:softmax(1) end)
un("softmax(2)", function(x) return x:softmax(2) end)
un("log_softmax(1)", function(x) return x:log_softmax(1) end)
un("log_softmax(-1)", function(x) return x:log_softmax(-1) end)
un("clamp(-0.5, 0.7)", function(x) return x:clamp(-0.5, 0.7) end)
un("clamp(0.4)", function(x) return x:clamp(0.4) end)
un("clamp(nil, -0.4)", function(x) return x:clamp(nil, -0.4) end)

-- numbers on either side
un("2 + x", function(x) return 2 + x end)
un("x + 2", function(x) return x + 2 end)
un("1 - x", function(x) return 1 - x end)
un("x - 3", function(x) return x - 3 end)
un("1.5 * x", function(x) return 1.5 * x end)
un("x * -0.5", function(x) return x * -0.5 end)
un("2 / x", function(x) return 2 / x end)
un("x / 4", function(x) return x / 4 end)
un("x ^ 2", function(x) return x ^ 2 end)
un("x ^ 3", function(x) return x ^ 3 end)
un("x ^ 2.5", function(x) return x ^ 2.5 end, "positive")
un("x ^ -1.5", function(x) return x ^ -1.5 end, "positive")
un("2 ^ x", function(x) return 2 ^ x end)
un("maximum(x, 0.5)", function(x) return lg.maximum(x, 0.5) end)
un("minimum(0.5, x)", function(x) return lg.minimum(0.5, x) end)
un("x % 0.7", function(x) return x % 0.7 end)
un("remainder(5, x)", function(x) return lg.remainder(5.1, x) end, "divisor")
un("atan2(x, 1.5)", function(x) return lg.atan2(x, 1.5) end)
un("atan2(-1.5, x)", function(x) return lg.atan2(-1.5, x) end)
un("x // 0.7", function(x) return x // 0.7 end)
un("where(mask, x, 0.5)", function(x)
  local mask = lg.tensor({ { 1, 0, 1, 0 }, { 0, 0, 1, 1 }, { 1, 1, 0, 1 } }):gt(0)
  return lg.where(mask, x, 0.5)
end)

-- binary elementwise, with broadcasting
bin("add", function(a, b) return a + b end)
bin("add (method)", function(a, b) return a:add(b) end)
bin("sub", function(a, b) return a - b end)
bin("mul", function(a, b) return a * b end)
bin("div", function(a, b) return a / b end)
bin("pow", function(a, b) return a ^ b end, "positive", "signed")
bin("pow (method)", function(a, b) return a:pow(b) end, "positive", "signed")
bin("maximum", function(a, b) return lg.maximum(a, b) end)
bin("minimum", function(a, b) return a:minimum(b) end)
bin("max(a, b)", function(a, b) return a:max(b) end)
bin("remainder", function(a, b) return lg.remainder(a, b) end, "signed", "divisor")
bin("atan2", function(a, b) return lg.atan2(a, b) end)
bin("floor_divide", function(a, b) return lg.floor_divide(a, b) end, "signed", "divisor")
bin("where(mask, a, b)", function(a, b)
  local mask = lg.tensor({ { 1, 0, 1, 0 }, { 0, 0, 1, 1 }, { 1, 1, 0, 1 } }):gt(0)
  return lg.where(mask, a, b)
end)

-- reductions
un("sum()", function(x) return x:sum() end)
un("sum(1)", function(x) return x:sum(1) end)
un("sum(2, keepdim)", function(x) return x:sum(2, true) end)
un("sum({1,2})", function(x) return x:sum({ 1, 2 }) end)
un("mean()", function(x) return x:mean() end)
un("mean(2)", function(x) return x:mean(2) end)
un("mean(1, keepdim)", function(x) return x:mean(1, true) end)
un("var()", function(x) return x:var() end)
un("var(2)", function(x) return x:var(2) end)
un("var{dim=1, keepdim, unbiased=false}", function(x) return x:var({ dim = 1, keepdim = true, unbiased = false }) end,
  nil, { expand_dim = 2 })
un("std()", function(x) return x:std() end)
un("std(1)", function(x) return x:std(1) end, nil, { expand_dim = 2 })
un("std{dim=2, keepdim, unbiased=false}", function(x) return x:std({ dim = 2, keepdim = true, unbiased = false }) end)
un("prod()", function(x) return x:prod() end)
un("prod(1)", function(x) return x:prod(1) end)
un("prod(2, keepdim)", function(x) return x:prod(2, true) end)
un("norm()", function(x) return x:norm() end)
un("norm(2, 2)", function(x) return x:norm(2, 2) end)
un("norm(1, 1)", function(x) return x:norm(1, 1) end)
un("norm(3, 2, keepdim)", function(x) return x:norm(3, 2, true) end)
un("norm(inf)", function(x) return x:norm(math.huge) end, nil,
  { no_expanded = "|x| ties across the stride-0 copies: max is not differentiable there" })
un("norm(inf, 2)", function(x) return x:norm(math.huge, 2) end)
un("logsumexp()", function(x) return x:logsumexp() end)
un("logsumexp(2)", function(x) return x:logsumexp(2) end)
un("logsumexp(1, keepdim)", function(x) return x:logsumexp(1, true) end)
un("max()", function(x) return x:max() end, nil,
  { no_expanded = "ties across the stride-0 copies: max is not differentiable there" })
un("max(2) values", function(x) local v = x:max(2) return v end)
un("max(1, keepdim) values", function(x) local v = x:max(1, true) return v end, nil, { expand_dim = 2 })
un("min()", function(x) return x:min() end, nil,
  { no_expanded = "ties across the stride-0 copies: min is not differentiable there" })
un("min(2) values", function(x) local v = x:min(2) return v end)
un("min(-2, keepdim) values", function(x) local v = x:min(-2, true) return v end, nil, { expand_dim = 2 })

-- matmul: 1-d, 2-d, batched, with batch broadcasting
op({ name = "matmul 2-d x 2-d", fn = function(a, b) return a:matmul(b) end, shapes = { { 3, 4 }, { 4, 2 } },
  bshapes = { { { 2, 3, 4 }, { 4, 2 } }, { { 3, 4 }, { 2, 4, 2 } } } })
op({ name = "matmul 2-d x 1-d", fn = function(a, b) return lg.matmul(a, b) end, shapes = { { 3, 4 }, { 4 } },
  bshapes = { { { 2, 3, 4 }, { 4 } } } })
op({ name = "matmul 1-d x 2-d", fn = function(a, b) return a:matmul(b) end, shapes = { { 4 }, { 4, 3 } },
  bshapes = { { { 4 }, { 2, 4, 3 } } } })
op({ name = "matmul 1-d x 1-d", fn = function(a, b) return a:matmul(b) end, shapes = { { 4 }, { 4 } } })
op({ name = "matmul batched", fn = function(a, b) return a:matmul(b) end, shapes = { { 2, 3, 4 }, { 2, 4, 2 } },
  bshapes = { { { 2, 1, 2, 3 }, { 2, 3, 2 } } } })

-- indexing, joining, splitting
op({ name = "index_select(1, {3,1,3})", shapes = { { 3, 4 } },
  fn = function(x) return x:index_select(1, lg.tensor({ 3, 1, 3 }, { dtype = "int64" })) end })
op({ name = "index_select(2, {4,2})", shapes = { { 3, 4 } },
  fn = function(x) return lg.index_select(x, 2, lg.tensor({ 4, 2 }, { dtype = "int64" })) end })
op({ name = "gather(2, idx)", shapes = { { 3, 4 } },
  fn = function(x) return x:gather(2, lg.tensor({ { 2, 4 }, { 1, 1 }, { 3, 2 } }, { dtype = "int64" })) end })
op({ name = "gather(1, idx)", shapes = { { 3, 4 } },
  fn = function(x) return x:gather(1, lg.tensor({ { 3, 1, 1, 2 }, { 2, 2, 3, 1 } }, { dtype = "int64" })) end })
op({ name = "cat dim 1", shapes = { { 3, 4 }, { 2, 4 } }, fn = function(a, b) return lg.cat({ a, b }, 1) end })
op({ name = "cat dim 2", shapes = { { 3, 4 }, { 3, 2 } }, fn = function(a, b) return lg.cat({ a, b }, 2) end })
op({ name = "cat of three", shapes = { { 3, 4 }, { 3, 2 }, { 3, 1 } },
  fn = function(a, b, c) return lg.cat({ a, b * c, c }, 2) end })
op({ name = "stack dim 1", shapes = { { 3, 4 }, { 3, 4 } }, fn = function(a, b) return lg.stack({ a, b }, 1) end })
op({ name = "stack dim 3", shapes = { { 3, 4 }, { 3, 4 } }, fn = function(a, b) return lg.stack({ a, b }, 3) end })
op({ name = "split(2, 2)", shapes = { { 3, 4 } }, fn = function(x) local p = x:split(2, 2) return p[1] * p[2] end })
op({ name = "split({1,3}, 2)", shapes = { { 3, 4 } },
  fn = function(x) local p = x:split({ 1, 3 }, 2) return p[2] * p[1] end })
op({ name = "chunk(3, 1)", shapes = { { 3, 4 } }, fn = function(x) local p = x:chunk(3, 1) return p[1] * p[2] + p[3] end })

op({ name = "index_add(1, {3,1,3}, src)", shapes = { { 3, 4 }, { 3, 4 } },
  fn = function(x, src) return x:index_add(1, lg.tensor({ 3, 1, 3 }, { dtype = "int64" }), src) end })
op({ name = "scatter_add(2, idx, src)", shapes = { { 3, 4 }, { 3, 2 } },
  fn = function(x, src) return x:scatter_add(2, lg.tensor({ { 2, 4 }, { 1, 1 }, { 3, 2 } }, { dtype = "int64" }), src) end })

-- fused layers: batch_norm (training statistics; expand_dim 2 keeps channels' batches varied),
-- layer_norm, cross_entropy, linear
local F = lg.nn.functional
op({ name = "batch_norm (training)", shapes = { { 3, 4 }, { 4 }, { 4 } }, expand_dim = 2,
  fn = function(x, w, b) return F.batch_norm(x, nil, nil, { weight = w, bias = b, training = true }) end })
op({ name = "layer_norm", shapes = { { 3, 4 }, { 4 }, { 4 } },
  fn = function(x, w, b) return F.layer_norm(x, 4, { weight = w, bias = b }) end })
op({ name = "cross_entropy", shapes = { { 3, 4 } },
  fn = function(x) return F.cross_entropy(x, lg.tensor({ 2, 1, 4 }, { dtype = "int64" })) end })
op({ name = "cross_entropy (sum, label smoothing)", shapes = { { 3, 4 } },
  fn = function(x)
    return F.cross_entropy(x, lg.tensor({ 2, 1, 4 }, { dtype = "int64" }), { reduction = "sum", label_smoothing = 0.1 })
  end })
op({ name = "linear", shapes = { { 3, 4 }, { 2, 4 }, { 2 } }, fn = function(x, w, b) return F.linear(x, w, b) end })

-- scaled dot-product attention: q (2,3,4), k (2,5,4), v (2,5,3) (T ~= S, d ~= dv); causal, an int64
-- mask (nonzero: may attend; no row fully masked), a float mask added (as an input: its gradient
-- runs the composite backward; as a constant: the fused one), a scale, 4-d with broadcast heads
local SDPA_QKV = { { 2, 3, 4 }, { 2, 5, 4 }, { 2, 5, 3 } }
local function sdpa(opts) return function(q, k, v) return F.scaled_dot_product_attention(q, k, v, opts) end end
op({ name = "scaled_dot_product_attention", shapes = SDPA_QKV, fn = sdpa(),
  bshapes = { { { 2, 1, 3, 4 }, { 1, 2, 5, 4 }, { 2, 5, 3 } }, { { 3, 4 }, { 5, 4 }, { 2, 2, 5, 3 } } } })
op({ name = "scaled_dot_product_attention is_causal", shapes = SDPA_QKV, fn = sdpa({ is_causal = true }),
  bshapes = { { { 3, 4 }, { 2, 5, 4 }, { 1, 5, 3 } }, { { 3, 4 }, { 5, 4 }, { 2, 5, 3 } } } })
op({ name = "scaled_dot_product_attention is_causal, T = S", shapes = { { 2, 4, 3 }, { 2, 4, 3 }, { 2, 4, 2 } },
  fn = sdpa({ is_causal = true, scale = 0.7 }) })
op({ name = "scaled_dot_product_attention int64 mask", shapes = SDPA_QKV,
  fn = sdpa({ attn_mask = lg.tensor({ { 1, 0, 1, 1, 0 }, { 0, 0, 1, 0, 0 }, { 1, 1, 1, 1, 1 } }, { dtype = "int64" }) }) })
op({ name = "scaled_dot_product_attention float mask (constant), scale 0.9", shapes = SDPA_QKV,
  fn = sdpa({ scale = 0.9, attn_mask = lg.tensor({ { 0.5, -1, 0, 2, -0.25 }, { 0, 0, -1.5, 0.75, 1 }, { 1, 0, 0, 0, -2 } },
    { dtype = F64 }) }) })
op({ name = "scaled_dot_product_attention float mask (an input)", shapes = { { 2, 3, 4 }, { 2, 5, 4 }, { 2, 5, 3 }, { 3, 5 } },
  fn = function(q, k, v, m) return F.scaled_dot_product_attention(q, k, v, { attn_mask = m }) end })

-- convolution and pooling: odd sizes and batch 1 among them. The inputs are a function of the
-- index (sines), so max_pool2d's windows hold distinct values: no ties.
op({ name = "conv2d kernel {3,2}, padding 1", shapes = { { 2, 3, 5, 4 }, { 4, 3, 3, 2 }, { 4 } },
  fn = function(x, w, b) return F.conv2d(x, w, b, { padding = 1 }) end })
op({ name = "conv2d groups 2, stride {2,1}, dilation {1,2}, padding {1,2}, batch 1",
  shapes = { { 1, 4, 6, 7 }, { 6, 2, 3, 2 }, { 6 } },
  fn = function(x, w, b)
    return F.conv2d(x, w, b, { groups = 2, stride = { 2, 1 }, dilation = { 1, 2 }, padding = { 1, 2 } })
  end })
op({ name = "conv2d depthwise (groups = C = 3), stride 2, no bias", shapes = { { 2, 3, 5, 5 }, { 3, 1, 3, 3 } },
  fn = function(x, w) return F.conv2d(x, w, nil, { groups = 3, stride = 2 }) end })
op({ name = "conv2d padding \"same\" with odd totals", shapes = { { 1, 2, 5, 4 }, { 3, 2, 2, 2 }, { 3 } },
  fn = function(x, w, b) return F.conv2d(x, w, b, { padding = "same" }) end })
op({ name = "conv1d stride 2, padding 1", shapes = { { 2, 3, 7 }, { 4, 3, 3 }, { 4 } },
  fn = function(x, w, b) return F.conv1d(x, w, b, { stride = 2, padding = 1 }) end })
op({ name = "conv1d groups 2, dilation 2, batch 1", shapes = { { 1, 4, 9 }, { 2, 2, 3 } },
  fn = function(x, w) return F.conv1d(x, w, nil, { groups = 2, dilation = 2 }) end })
op({ name = "pad reflect, replicate and circular", shapes = { { 2, 3, 4 } },
  fn = function(x)
    return F.pad(x, { 1, 2, 2, 0 }, { mode = "reflect" }) + F.pad(x, { 1, 2, 2, 0 }, { mode = "replicate" })
      + F.pad(x, { 1, 2, 2, 0 }, { mode = "circular" })
  end })
op({ name = "max_pool2d kernel 3, stride 2, padding 1, ceil_mode", shapes = { { 2, 3, 7, 6 } },
  fn = function(x) return F.max_pool2d(x, 3, { stride = 2, padding = 1, ceil_mode = true }) end })
op({ name = "max_pool2d kernel {2,3}, dilation {2,1}, stride 1, batch 1", shapes = { { 1, 2, 6, 7 } },
  fn = function(x) return F.max_pool2d(x, { 2, 3 }, { stride = 1, dilation = { 2, 1 } }) end })
op({ name = "max_pool1d kernel 3, stride 2, padding 1", shapes = { { 2, 3, 8 } },
  fn = function(x) return F.max_pool1d(x, 3, { stride = 2, padding = 1 }) end })
op({ name = "avg_pool2d kernel 3, stride 2, padding 1 (count_include_pad)", shapes = { { 2, 3, 7, 6 } },
  fn = function(x) return F.avg_pool2d(x, 3, { stride = 2, padding = 1 }) end })
op({ name = "avg_pool2d count_include_pad = false, ceil_mode, batch 1", shapes = { { 1, 3, 6, 5 } },
  fn = function(x) return F.avg_pool2d(x, 3, { stride = 2, padding = 1, ceil_mode = true, count_include_pad = false }) end })
op({ name = "avg_pool2d kernel {2,3}, divisor_override 4", shapes = { { 2, 2, 5, 7 } },
  fn = function(x) return F.avg_pool2d(x, { 2, 3 }, { divisor_override = 4 }) end })
op({ name = "avg_pool1d ceil_mode, count_include_pad = false", shapes = { { 2, 3, 8 } },
  fn = function(x) return F.avg_pool1d(x, 3, { stride = 2, padding = 1, ceil_mode = true, count_include_pad = false }) end })
op({ name = "adaptive_avg_pool2d to {3,2}", shapes = { { 2, 3, 7, 5 } },
  fn = function(x) return F.adaptive_avg_pool2d(x, { 3, 2 }) end })
op({ name = "adaptive_avg_pool2d to {4,4} (overlapping windows), batch 1", shapes = { { 1, 2, 5, 6 } },
  fn = function(x) return F.adaptive_avg_pool2d(x, 4) end })
op({ name = "batch_norm 4-d (training)", shapes = { { 3, 2, 3, 4 }, { 2 }, { 2 } }, expand_dim = 3,
  fn = function(x, w, b) return F.batch_norm(x, nil, nil, { weight = w, bias = b, training = true }) end })
op({ name = "batch_norm 4-d (eval, running statistics)", shapes = { { 1, 2, 3, 5 }, { 2 }, { 2 } },
  fn = function(x, w, b)
    local rm, rv = lg.tensor({ 0.3, -0.2 }, { dtype = F64 }), lg.tensor({ 1.5, 0.7 }, { dtype = F64 })
    return F.batch_norm(x, rm, rv, { weight = w, bias = b })
  end })

-- The adjoint ops that conv2d's and avg_pool2d's backward rules apply (conv2d_grad_input,
-- conv2d_grad_weight, avg_pool2d_backward), called directly through luagrad.core's private
-- bindings, so gradcheck, double backward and forward mode all reach their own rules.
local core = require "luagrad.core"
local function pair(v) return type(v) == "table" and v or { v, v } end
local CONV = { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 1, 2 }, groups = 1 }
local CONV_G = { stride = 1, padding = 1, dilation = 1, groups = 2 }
local function adjoint(which, conv, size)
  return function(a, b)
    return core._conv2d_adjoint(which, a, b, pair(conv.stride), pair(conv.padding), pair(conv.dilation), conv.groups,
      size)
  end
end
-- x {2,3,5,4}, w {4,3,3,2}: y {2,4,3,2} with CONV; x {1,4,4,3}, w {6,2,3,3}: y {1,6,4,3} with CONV_G
op({ name = "conv2d_grad_input stride {2,1}, padding {1,0}, dilation {1,2}", shapes = { { 2, 4, 3, 2 }, { 4, 3, 3, 2 } },
  fn = adjoint("input", CONV, { 5, 4 }) })
op({ name = "conv2d_grad_input groups 2, padding 1, batch 1", shapes = { { 1, 6, 4, 3 }, { 6, 2, 3, 3 } },
  fn = adjoint("input", CONV_G, { 4, 3 }) })
op({ name = "conv2d_grad_weight stride {2,1}, padding {1,0}, dilation {1,2}", shapes = { { 2, 3, 5, 4 }, { 2, 4, 3, 2 } },
  fn = adjoint("weight", CONV, { 3, 2 }) })
op({ name = "conv2d_grad_weight groups 2, padding 1, batch 1", shapes = { { 1, 4, 4, 3 }, { 1, 6, 4, 3 } },
  fn = adjoint("weight", CONV_G, { 3, 3 }) })
op({ name = "avg_pool2d_backward kernel 3, stride 2, padding 1, ceil_mode, count_include_pad = false",
  shapes = { { 2, 3, 4, 4 } },
  fn = function(g) return core._avg_pool2d(g, { 3, 3 }, { 2, 2 }, { 1, 1 }, true, false, nil, false, { 7, 6 }) end })
op({ name = "avg_pool2d_backward adaptive to {3,2} from {7,5}", shapes = { { 2, 3, 3, 2 } },
  fn = function(g) return core._avg_pool2d(g, { 3, 2 }, nil, nil, false, false, nil, true, { 7, 5 }) end })

-- sequence ops: embedding (repeated indices, a padding row), masked_fill (a mask of any dtype,
-- broadcast), tril/triu, sort/topk (dims chosen so the stride-0 copies never tie within a sorted
-- row), cumsum both ways along each dim
local IDX = lg.tensor({ { 2, 5, 2 }, { 1, 2, 4 } }, { dtype = "int64" })
op({ name = "embedding, repeated indices", shapes = { { 5, 3 } }, fn = function(w) return F.embedding(IDX, w) end })
-- padding_idx makes the row a constant (no gradient, by definition rather than by calculus): w's
-- row 2 is zeroed before the lookup, so the true derivative agrees with that definition
local KEEP = lg.tensor({ { 1 }, { 0 }, { 1 }, { 1 }, { 1 } }, { dtype = F64 })
op({ name = "embedding, padding_idx 2", shapes = { { 5, 3 } },
  fn = function(w) return F.embedding(IDX, w * KEEP, { padding_idx = 2 }) end })
op({ name = "embedding of 0-d and 1-d indices", shapes = { { 5, 3 } },
  fn = function(w)
    return F.embedding(lg.tensor(4, { dtype = "int64" }), w) + F.embedding(lg.tensor({ 3 }, { dtype = "int64" }), w)
  end })
un("masked_fill(int64 mask, -1.5)", function(x)
  return x:masked_fill(lg.tensor({ { 1, 0, 3, 0 }, { 0, 0, 1, 1 }, { -2, 1, 0, 1 } }, { dtype = "int64" }), -1.5)
end)
un("masked_fill(broadcast float mask (4), 2)", function(x)
  return x:masked_fill(lg.tensor({ 0, 0.5, 0, 1 }, { dtype = F64 }), 2)
end)
un("masked_fill_ on a result", function(x)
  local y = x * 2
  y:masked_fill_(x:gt(0), 0.25)
  return y * x
end)
un("tril()", function(x) return x:tril() end)
un("tril(1)", function(x) return lg.tril(x, 1) end)
un("triu()", function(x) return x:triu() end)
un("triu(-1) of a batch", function(x) return x:reshape(2, 2, 3):triu(-1) end)
un("sort(2) values", function(x) local v = x:sort(2) return v end)
un("sort(1, descending) values", function(x) local v = x:sort(1, true) return v end, nil, { expand_dim = 2 })
un("sort values * indices", function(x) local v, i = x:sort({ dim = 2, descending = true }) return v * i end)
un("topk(2) values", function(x) local v = x:topk(2) return v end)
un("topk(2, 1, smallest) values", function(x) local v = x:topk(2, 1, false) return v end, nil, { expand_dim = 2 })
un("cumsum(1)", function(x) return x:cumsum(1) end)
un("cumsum(-1)", function(x) return lg.cumsum(x, -1) end)

-- in-place writes: on a result, through a view of a result (the base records strided_scatter,
-- the view as_strided), and into a buffer with a sibling view that must follow the write
op({ name = "add_ on a result", shapes = { { 3, 4 }, { 3, 4 } },
  fn = function(a, b) local y = a * 1; y:add_(b); return y * a end })
op({ name = "mul_ through a narrowed view", shapes = { { 3, 4 } },
  fn = function(x) local y = x * 1; y:narrow(2, 2, 2):mul_(x:narrow(2, 1, 2)); return y end })
op({ name = "index assignment and copy_ into a buffer, read through a sibling view", shapes = { { 3, 4 } },
  fn = function(x)
    local buf = lg.zeros(3, 4, { dtype = F64 })
    local col = buf:select(2, 1)
    buf[2] = x[1] * 2
    buf:narrow(1, 3, 1):copy_(x:narrow(1, 3, 1):exp())
    return buf * x + col:unsqueeze(2)
  end })
op({ name = "clamp_ then sub_ on a result", shapes = { { 3, 4 }, { 3, 4 } },
  fn = function(a, b) local y = a * b; y:clamp_(-0.5, 0.6); y:sub_(a); return y end })

-- views and copies
op({ name = "view", shapes = { { 3, 4 } }, fn = function(x) return x:contiguous():view(2, 6) end })
op({ name = "view(-1) of a contiguous result", shapes = { { 3, 4 } }, fn = function(x) return (x * 1):view(-1) end })
op({ name = "reshape", shapes = { { 3, 4 } }, fn = function(x) return x:reshape(4, 3) end })
op({ name = "reshape {2,2,3}", shapes = { { 3, 4 } }, fn = function(x) return x:reshape({ 2, 2, 3 }) * 2 end })
op({ name = "transpose", shapes = { { 3, 4 } }, fn = function(x) return x:transpose(1, 2) end })
op({ name = "t", shapes = { { 3, 4 } }, fn = function(x) return x:t() end })
op({ name = "permute", shapes = { { 2, 3, 4 } }, fn = function(x) return x:permute(3, 1, 2) end })
op({ name = "narrow", shapes = { { 3, 4 } }, fn = function(x) return x:narrow(2, 2, 2) end })
op({ name = "select", shapes = { { 3, 4 } }, fn = function(x) return x:select(2, 3) end })
op({ name = "t[i]", shapes = { { 3, 4 } }, fn = function(x) return x[2] end })
op({ name = "unsqueeze", shapes = { { 3, 4 } }, fn = function(x) return x:unsqueeze(2) end })
op({ name = "squeeze(2)", shapes = { { 3, 1, 4 } }, fn = function(x) return x:squeeze(2) end })
op({ name = "squeeze()", shapes = { { 3, 1, 4 } }, fn = function(x) return x:squeeze() end })
op({ name = "expand", shapes = { { 3, 1 } }, fn = function(x) return x:expand(3, 4) end })
op({ name = "expand with a new dim", shapes = { { 3, 1 } }, fn = function(x) return x:expand(2, 3, 4) end })
op({ name = "flatten", shapes = { { 2, 3, 4 } }, fn = function(x) return x:flatten() end })
op({ name = "flatten(2)", shapes = { { 2, 3, 4 } }, fn = function(x) return x:flatten(2) end })
op({ name = "clone", shapes = { { 3, 4 } }, fn = function(x) return x:clone() end })
op({ name = "contiguous", shapes = { { 3, 4 } }, fn = function(x) return x:contiguous() * 1 end })
op({ name = "to float32 and back", shapes = { { 3, 4 } }, gens = { "eighths" }, eps = 1 / 1024,
  fn = function(x) return x:to("float32"):to("float64") end })
op({ name = "pad {1, 2}", shapes = { { 3, 4 } }, fn = function(x) return F.pad(x, { 1, 2 }) end })
op({ name = "pad {0, 1, 2, 0} with value 1.5", shapes = { { 3, 4 } },
  fn = function(x) return F.pad(x, { 0, 1, 2, 0 }, { value = 1.5 }) end })
op({ name = "pad cropping {-1, 1}", shapes = { { 3, 4 } }, fn = function(x) return F.pad(x, { -1, 1 }) end })
op({ name = "to(float64) (no-op)", shapes = { { 3, 4 } }, fn = function(x) return x:to("float64") * 3 end })

-- ---- defaults and layouts --------------------------------------------------------------------
for i, o in ipairs(OPS) do
  o.seq = i
  if not o.shapes then o.shapes = o.binary and { { 3, 4 }, { 3, 4 } } or { { 3, 4 } } end
  if not o.gens then o.gens = {} end
  for k = 1, #o.shapes do o.gens[k] = o.gens[k] or "signed" end
  if o.binary and not o.bshapes then o.bshapes = { { { 3, 1 }, { 1, 4 } }, { { 3, 4 }, { 4 } } } end
end

local function gens_of(o)
  local g = {}
  for k, name in ipairs(o.gens) do g[k] = GEN[name](o.seq * 3 + k) end
  return g
end

-- the shape with dim d set to 1 (for a 1-d shape: {1})
local function collapsed(shape, d)
  local s = copy(shape)
  if #s > 0 then s[math.min(d, #s)] = 1 end
  return s
end

-- list of { name, xs (leaves requiring grad), fn }
local function cases(o)
  local g = gens_of(o)
  local out = {}
  for _, lay in ipairs({ "contiguous", "transposed", "narrowed" }) do
    local xs = {}
    for k, s in ipairs(o.shapes) do xs[k] = make(s, g[k], lay):requires_grad_(true) end
    out[#out + 1] = { name = lay, xs = xs, fn = o.fn }
  end
  local d = o.expand_dim or 1
  if not o.no_expanded then
    local xs = {}
    for k, s in ipairs(o.shapes) do
      xs[k] = make(collapsed(s, d), g[k], "contiguous"):expand(s):requires_grad_(true)
    end
    out[#out + 1] = { name = "expanded (stride-0 leaves)", xs = xs, fn = o.fn }
  end
  if o.bshapes then
    for _, shapes in ipairs(o.bshapes) do
      local xs, names = {}, {}
      for k, s in ipairs(shapes) do
        xs[k] = make(s, g[k], "contiguous"):requires_grad_(true)
        names[k] = shape_str(s)
      end
      out[#out + 1] = { name = "broadcast " .. table.concat(names, " with "), xs = xs, fn = o.fn }
    end
  else
    local xs, names = {}, {}
    for k, s in ipairs(o.shapes) do
      local c = collapsed(s, d)
      xs[k] = make(c, g[k], "contiguous"):requires_grad_(true)
      names[k] = shape_str(c) .. "->" .. shape_str(s)
    end
    out[#out + 1] = {
      name = "broadcast (f expands " .. table.concat(names, ", ") .. ")",
      xs = xs,
      fn = function(...)
        local args = { ... }
        for k, s in ipairs(o.shapes) do args[k] = args[k]:expand(s) end
        return o.fn(table.unpack(args, 1, #o.shapes))
      end,
    }
  end
  return out
end

-- ---- checks ----------------------------------------------------------------------------------
local function flat(t) return t:detach():contiguous():reshape(-1):tolist() end

local function assert_jacobians_agree(jf, jr, what)
  assert.are.same(jr.shape, jf.shape, what .. ": forward and reverse Jacobian shapes differ")
  local a, b = flat(jf), flat(jr)
  local worst, at = 0, 0
  for i = 1, #b do
    local err = math.abs(a[i] - b[i]) / math.max(1, math.abs(b[i]))
    if err ~= err or err > worst then worst, at = err, i end -- a NaN is reported too
    if worst ~= worst then break end
  end
  assert.is_true(worst <= JAC_TOL, string.format(
    "%s: forward-mode Jacobian differs from reverse-mode at flat element %d: forward %.17g, reverse %.17g",
    what, at, a[at] or 0 / 0, b[at] or 0 / 0))
end

-- the Jacobian of fn with respect to input k, the other inputs fixed
local function partial(fn, xs, k)
  return function(x)
    local args = {}
    for j, v in ipairs(xs) do args[j] = v:detach() end
    args[k] = x
    return fn(table.unpack(args, 1, #xs))
  end
end

-- covered[check][op name] = true once a passing check of that kind ran through the op
local covered = { gradcheck = {}, jacobian = {} }
local function record(check, outputs)
  for _, y in ipairs(outputs) do
    for name in pairs(graph_ops(y)) do covered[check][name] = true end
  end
end
local function outputs_of(fn, xs)
  local y = lg.enable_grad(fn, table.unpack(xs, 1, #xs))
  return lg.is_tensor(y) and { y } or y
end

local function check_gradcheck(o, c)
  assert.is_true(ag.gradcheck(c.fn, c.xs, { eps = o.eps }))
  record("gradcheck", outputs_of(c.fn, c.xs))
end

local function check_jacobians(c)
  record("jacobian", {}) -- recorded below, once every input's Jacobians agree
  local y = lg.no_grad(c.fn, table.unpack(c.xs, 1, #c.xs))
  for k, x in ipairs(c.xs) do
    local f = partial(c.fn, c.xs, k)
    local jr = ag.jacobian(f, x, { mode = "reverse" })
    local want = {}
    for _, s in ipairs(y.shape) do want[#want + 1] = s end
    for _, s in ipairs(x.shape) do want[#want + 1] = s end
    assert.are.same(want, jr.shape, "reverse-mode Jacobian shape for input " .. k)
    local jf = ag.jacobian(f, x, { mode = "forward" })
    assert_jacobians_agree(jf, jr, "input " .. k)
  end
  record("jacobian", outputs_of(c.fn, c.xs))
end

-- x -> grad(sum(w * f(x)), x) recorded with create_graph, as a function gradcheck can probe. The
-- numeric probes run under no_grad with plain tensors, so fresh leaves are made there. The 0 * x
-- keeps the result connected to x when the first derivative is constant.
local function gradient_fn(fn, w)
  return function(...)
    local ins = table.pack(...)
    return lg.enable_grad(function()
      local xs = {}
      for k = 1, ins.n do
        local x = ins[k]
        xs[k] = x.requires_grad and x or x:detach():requires_grad_(true)
      end
      local y = fn(table.unpack(xs, 1, ins.n))
      local gs = ag.grad((y * w):sum(), xs, { create_graph = true, allow_unused = true })
      local out = {}
      for k, x in ipairs(xs) do out[k] = (gs[k] or x * 0) + x * 0 end
      return out
    end)
  end
end

describe("autograd ops: gradcheck and forward == reverse Jacobians", function()
  for _, o in ipairs(OPS) do
    describe(o.name, function()
      for _, c in ipairs(cases(o)) do
        it("gradcheck, " .. c.name, function() check_gradcheck(o, c) end)
        if not o.no_forward then
          it("forward == reverse Jacobian, " .. c.name, function() check_jacobians(c) end)
        end
      end
      if o.no_forward then pending("forward == reverse Jacobian: " .. o.no_forward) end
      for _, c in ipairs(cases(o)) do
        if c.name == "contiguous" or c.name:find("^broadcast") then
          it("double backward (gradcheck of the create_graph gradient), " .. c.name, function()
            local y = lg.no_grad(c.fn, table.unpack(c.xs, 1, #c.xs))
            local w = make(y.shape, GEN.signed(o.seq + 101), "contiguous")
            assert.is_true(ag.gradcheck(gradient_fn(c.fn, w), c.xs, { eps = o.eps }))
            record("gradcheck", outputs_of(gradient_fn(c.fn, w), c.xs))
          end)
        end
      end
    end)
  end

  it("every differentiable row of the op table is reached by a gradcheck and a forward == reverse check", function()
    local missing = {}
    for _, row in ipairs(lg.ops) do
      if row.differentiable then
        for _, check in ipairs({ "gradcheck", "jacobian" }) do
          if not covered[check][row.name] then
            missing[#missing + 1] = row.name .. " (" .. check .. ")"
          end
        end
      end
    end
    assert.are.equal("", table.concat(missing, ", "),
      "differentiable ops that no check in this file reaches; add a row to OPS for each")
  end)

  it("input values for remainder keep a/b away from integers", function()
    -- the inputs used by the remainder rows above: quotients must not sit on a kink
    for _, o in ipairs(OPS) do
      if o.name == "remainder" then
        for _, c in ipairs(cases(o)) do
          local q = lg.no_grad(function() return c.xs[1] / c.xs[2] end)
          for _, v in ipairs(flat(q)) do
            local frac = v - math.floor(v)
            assert.is_true(frac > 1e-3 and frac < 1 - 1e-3, c.name .. ": quotient " .. v .. " near an integer")
          end
        end
      end
    end
  end)
end)
