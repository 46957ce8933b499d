-- Convolutional networks: F.conv1d / F.conv2d, the pools, F.pad's modes, and the layers Conv1d,
-- Conv2d, MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool2d, BatchNorm2d, Dropout2d, ModuleList and
-- ModuleDict.
--
--   * spec/golden/conv.json (PyTorch 1.13, float64): every case, outputs and every gradient, to
--     1e-9 relative (an absolute floor of 1e-12 for entries that are zero up to rounding), through
--     the functional form and the layer; BatchNorm2d over its two training passes and eval.
--   * slow, obviously-right loops written out here (nested Lua lists, no luagrad): convolutions
--     with their input, weight and bias gradients for many stride / padding / dilation / groups
--     combinations (depthwise, batch 1, unbatched, non-contiguous inputs, "same" padding with an
--     odd total), the pools (ceil_mode, padding, dilation, count_include_pad, divisor_override,
--     the max's indices) and the padding modes.
--   * the layers: PyTorch's parameter names, shapes, initialization bounds and state-dict keys;
--     printing; errors naming the op or layer and the shapes.
local lg = require "luagrad"
local nn = lg.nn
local F = nn.functional
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"
local message_of = require("helpers.util").message_of

local F64 = { dtype = "float64" }
local REL, ABS = 1e-9, 1e-12
local shape_of, T, P = golden.shape_of, golden.T, golden.P

local function assert_golden(got, want, what) golden.assert_close(got, want, what, REL, ABS) end
local function copy_into(t, nested) lg.no_grad(function() t:copy_(T(nested)) end) end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function options_str(o)
  local parts = {}
  for _, k in ipairs(sorted_keys(o)) do
    local v = o[k]
    parts[#parts + 1] = k .. "=" .. (type(v) == "table" and "{" .. table.concat(v, ",") .. "}" or tostring(v))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- ---- golden values ---------------------------------------------------------------------------

describe("conv golden values: conv.json", function()
  local doc = golden.load("conv.json")

  it("has the expected cases", function()
    assert.are.equal(11, #doc.cases)
    assert.matches("float64", doc.generator)
  end)

  -- the layer computing a conv case with its weight and bias copied in
  local function conv_layer(case)
    local ws, o = shape_of(case.weight), case.options
    local cls = case.fn == "conv2d" and nn.Conv2d or nn.Conv1d
    local k = case.fn == "conv2d" and { ws[3], ws[4] } or ws[3]
    local m = cls(ws[2] * o.groups, ws[1], k, {
      stride = o.stride, padding = o.padding, dilation = o.dilation, groups = o.groups, dtype = "float64" })
    copy_into(m.weight, case.weight)
    copy_into(m.bias, case.bias)
    return m
  end

  local function without(o, key)
    local c = {}
    for k, v in pairs(o) do
      if k ~= key then c[k] = v end
    end
    return c
  end

  -- pool cases: the functional form (both ways of passing kernel_size) and the layer
  local pools = {
    max_pool2d = {
      functional = function(x, o) return F.max_pool2d(x, o) end,
      layer = function(x, o) return nn.MaxPool2d(o)(x) end,
    },
    avg_pool2d = {
      functional = function(x, o) return F.avg_pool2d(x, o.kernel_size, without(o, "kernel_size")) end,
      layer = function(x, o) return nn.AvgPool2d(o)(x) end,
    },
    adaptive_avg_pool2d = {
      functional = function(x, o) return F.adaptive_avg_pool2d(x, o.output_size) end,
      layer = function(x, o) return nn.AdaptiveAvgPool2d(o.output_size)(x) end,
    },
  }

  for ci, case in ipairs(doc.cases) do
    local label = string.format("case %d: %s %s", ci, case.fn, options_str(case.options))
    if case.fn == "conv2d" or case.fn == "conv1d" then
      for _, form in ipairs({ "functional", "layer" }) do
        it(label .. ", " .. form .. " form: y, dx, dweight, dbias", function()
          local x = P(case.x)
          local w, b, y
          if form == "functional" then
            w, b = P(case.weight), P(case.bias)
            y = F[case.fn](x, w, b, case.options)
          else
            local m = conv_layer(case)
            w, b = m.weight, m.bias
            y = m(x)
          end
          y:backward(T(case.upstream))
          assert_golden(y, case.y, label .. ": y")
          assert_golden(x.grad, case.dx, label .. ": dx")
          assert_golden(w.grad, case.dweight, label .. ": dweight")
          assert_golden(b.grad, case.dbias, label .. ": dbias")
        end)
      end
    elseif pools[case.fn] then
      for _, form in ipairs({ "functional", "layer" }) do
        it(label .. ", " .. form .. " form: y, dx", function()
          local x = P(case.x)
          local y = pools[case.fn][form](x, case.options)
          y:backward(T(case.upstream))
          assert_golden(y, case.y, label .. ": y")
          assert_golden(x.grad, case.dx, label .. ": dx")
        end)
      end
    elseif case.fn == "batch_norm2d" then
      local C = #case.weight
      local momentum, eps = case.options.momentum, case.options.eps
      it(label .. ": BatchNorm2d, two training passes, then eval", function()
        local bn = nn.BatchNorm2d(C, { momentum = momentum, eps = eps, dtype = "float64" })
        copy_into(bn.weight, case.weight)
        copy_into(bn.bias, case.bias)
        for si, step in ipairs(case.train_steps) do
          local what = string.format("%s, pass %d", label, si)
          local x = P(step.x)
          local y = bn(x)
          y:backward(T(step.upstream))
          assert_golden(y, step.y, what .. ": y")
          assert_golden(x.grad, step.dx, what .. ": dx")
          assert_golden(bn.weight.grad, step.dweight, what .. ": dweight")
          assert_golden(bn.bias.grad, step.dbias, what .. ": dbias")
          assert_golden(bn.running_mean, step.running_mean, what .. ": running_mean")
          assert_golden(bn.running_var, step.running_var, what .. ": running_var")
          assert.are.equal(si, bn.num_batches_tracked:item())
          bn:zero_grad()
        end
        bn:eval()
        assert_golden(bn(T(case.eval_x)), case.eval_y, label .. ", eval: y")
        assert.are.equal(#case.train_steps, bn.num_batches_tracked:item(), "eval does not count batches")
      end)
      it(label .. ": F.batch_norm with running tensors, two training passes, then eval", function()
        local w, b = P(case.weight), P(case.bias)
        local rm, rv = lg.zeros(C, F64), lg.ones(C, F64)
        for si, step in ipairs(case.train_steps) do
          local what = string.format("%s, functional pass %d", label, si)
          local x = P(step.x)
          local y = F.batch_norm(x, rm, rv, { weight = w, bias = b, training = true, momentum = momentum, eps = eps })
          y:backward(T(step.upstream))
          assert_golden(y, step.y, what .. ": y")
          assert_golden(x.grad, step.dx, what .. ": dx")
          assert_golden(w.grad, step.dweight, what .. ": dweight")
          assert_golden(b.grad, step.dbias, what .. ": dbias")
          assert_golden(rm, step.running_mean, what .. ": running_mean")
          assert_golden(rv, step.running_var, what .. ": running_var")
          w.grad, b.grad = nil, nil
        end
        local y = F.batch_norm(T(case.eval_x), rm, rv, { weight = w, bias = b, eps = eps })
        assert_golden(y, case.eval_y, label .. ", functional eval: y")
      end)
    else
      error("conv.json: unknown fn " .. tostring(case.fn))
    end
  end
end)

-- ---- slow references ---------------------------------------------------------------------------
-- Nested Lua lists in, nested lists out; 1-based loops over every output element and every tap.

local function zeros(shape)
  local function rec(d)
    local t = {}
    for i = 1, shape[d] do t[i] = d == #shape and 0 or rec(d + 1) end
    return t
  end
  return rec(1)
end

-- conv2d_ref(x (N, C, H, W), w (O, C/G, kh, kw), b (O) or nil, u (upstream, N, O, Ho, Wo) or nil, o)
-- with o = {stride = {sh, sw}, before = {ph, pw}, after = {ph', pw'}, dilation = {dh, dw}, groups = G}
-- -> y, and with u: dx, dw, db (the gradients of sum(y * u))
local function conv2d_ref(x, w, b, u, o)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local O, Cg, kh, kw = #w, #w[1], #w[1][1], #w[1][1][1]
  local s, pb, pa, d, G = o.stride, o.before, o.after, o.dilation, o.groups
  local Og = O // G
  assert(Cg * G == C, "reference: channels")
  local Ho = (H + pb[1] + pa[1] - d[1] * (kh - 1) - 1) // s[1] + 1
  local Wo = (W + pb[2] + pa[2] - d[2] * (kw - 1) - 1) // s[2] + 1
  local y, dx, dw, db = zeros({ N, O, Ho, Wo }), zeros({ N, C, H, W }), zeros({ O, Cg, kh, kw }), zeros({ O })
  for n = 1, N do
    for oc = 1, O do
      local g = (oc - 1) // Og -- the group, 0-based
      for i = 1, Ho do
        for j = 1, Wo do
          local acc = b and b[oc] or 0
          local up = u and u[n][oc][i][j] or 0
          for c = 1, Cg do
            local cin = g * Cg + c
            for p = 1, kh do
              local h = (i - 1) * s[1] - pb[1] + (p - 1) * d[1] + 1
              if h >= 1 and h <= H then
                for q = 1, kw do
                  local v = (j - 1) * s[2] - pb[2] + (q - 1) * d[2] + 1
                  if v >= 1 and v <= W then
                    acc = acc + w[oc][c][p][q] * x[n][cin][h][v]
                    dx[n][cin][h][v] = dx[n][cin][h][v] + up * w[oc][c][p][q]
                    dw[oc][c][p][q] = dw[oc][c][p][q] + up * x[n][cin][h][v]
                  end
                end
              end
            end
          end
          y[n][oc][i][j] = acc
          db[oc] = db[oc] + up
        end
      end
    end
  end
  return y, dx, dw, db
end

-- a 1-d list of lists ... as 2-d with a height of 1, and back
local function lift(t, depth) -- wraps the innermost lists (at depth) in a list of one
  if depth == 1 then return { t } end
  local out = {}
  for i, v in ipairs(t) do out[i] = lift(v, depth - 1) end
  return out
end
local function lower(t, depth)
  if depth == 1 then return t[1] end
  local out = {}
  for i, v in ipairs(t) do out[i] = lower(v, depth - 1) end
  return out
end

local function conv1d_ref(x, w, b, u, o)
  local y, dx, dw, db = conv2d_ref(lift(x, 3), lift(w, 3), b, u and lift(u, 3), {
    stride = { 1, o.stride[1] }, before = { 0, o.before[1] }, after = { 0, o.after[1] },
    dilation = { 1, o.dilation[1] }, groups = o.groups })
  return lower(y, 3), lower(dx, 3), lower(dw, 3), db
end

-- |got - want| <= tol max(1, |want|) over two nested lists of the same shape
local function assert_lists_close(got, want, tol, what)
  assert.are.same(shape_of(want), shape_of(got), what .. ": shape")
  local g, w = golden.flatten(got), golden.flatten(want)
  for i = 1, #w do
    if not (math.abs(g[i] - w[i]) <= tol * math.max(1, math.abs(w[i]))) then
      assert.is_true(false, string.format("%s: element %d is %.17g, the reference gives %.17g", what, i, g[i], w[i]))
    end
  end
end

-- A float64 tensor of `shape` with random values, laid out as `layout`: "contiguous",
-- "transposed" (the last two dimensions stored swapped), "channels_last" (the channel dimension
-- stored last) or "narrowed" (a window of a wider tensor). The result is a leaf.
local function input(shape, layout)
  local nd = #shape
  if layout == "contiguous" then return lg.randn(shape, F64) end
  if layout == "transposed" then
    local s = { table.unpack(shape) }
    s[nd - 1], s[nd] = shape[nd], shape[nd - 1]
    local v = lg.randn(s, F64):transpose(nd - 1, nd)
    assert(not v:is_contiguous())
    return v
  end
  if layout == "channels_last" then
    local s, perm = { shape[1] }, { 1, nd }
    for d = 3, nd do s[#s + 1] = shape[d] end
    s[#s + 1] = shape[2]
    for d = 3, nd do perm[#perm + 1] = d - 1 end
    local v = lg.randn(s, F64):permute(perm)
    assert(not v:is_contiguous())
    return v
  end
  if layout == "narrowed" then
    local s = { table.unpack(shape) }
    s[nd] = shape[nd] + 3
    return lg.randn(s, F64):narrow(nd, 2, shape[nd])
  end
  error("unknown layout " .. layout)
end

-- the padding before and after each spatial dimension for an options table, as PyTorch
local function pads_of(o, kernel, n)
  local before, after = {}, {}
  for d = 1, n do
    local p = o.padding or 0
    if p == "same" then
      local dil = type(o.dilation) == "table" and o.dilation[d] or (o.dilation or 1)
      local total = dil * (kernel[d] - 1)
      before[d], after[d] = total // 2, total - total // 2
    elseif p == "valid" then
      before[d], after[d] = 0, 0
    else
      before[d] = type(p) == "table" and p[d] or p
      after[d] = before[d]
    end
  end
  return before, after
end
local function each(v, n, default)
  if v == nil then v = default end
  if type(v) == "table" then return v end
  local t = {}
  for d = 1, n do t[d] = v end
  return t
end

describe("conv2d and conv1d against the loop reference", function()
  -- {x shape, weight shape, options, layout, bias}
  local conv2d_cases = {
    { { 2, 3, 7, 6 }, { 4, 3, 3, 3 }, {}, "contiguous" },
    { { 1, 3, 8, 7 }, { 5, 3, 3, 2 }, { stride = { 2, 3 }, padding = { 1, 2 } }, "contiguous" },
    { { 2, 4, 9, 9 }, { 6, 2, 3, 3 }, { padding = 2, dilation = 2, groups = 2 }, "contiguous" },
    { { 2, 4, 6, 5 }, { 8, 1, 3, 3 }, { padding = 1, groups = 4 }, "contiguous", "depthwise, multiplier 2" },
    { { 1, 3, 7, 7 }, { 3, 1, 3, 3 }, { stride = 2, groups = 3 }, "contiguous", "depthwise, batch 1" },
    { { 2, 3, 6, 7 }, { 2, 3, 4, 2 }, { padding = "same", dilation = { 1, 2 } }, "contiguous", "same, odd totals" },
    { { 1, 2, 5, 6 }, { 3, 2, 3, 3 }, { padding = "same" }, "contiguous", "same, even totals" },
    { { 2, 2, 5, 6 }, { 3, 2, 2, 3 }, { padding = "valid" }, "contiguous", "no bias", false },
    { { 2, 3, 8, 6 }, { 4, 3, 3, 3 }, { stride = 2, padding = 1 }, "channels_last" },
    { { 1, 6, 7, 5 }, { 6, 2, 2, 3 }, { stride = { 1, 2 }, dilation = { 2, 1 }, groups = 3 }, "transposed" },
    { { 2, 6, 5, 5 }, { 4, 3, 1, 1 }, { stride = { 1, 2 }, groups = 2 }, "narrowed", "1 x 1 kernel" },
    { { 3, 7, 6 }, { 4, 3, 3, 3 }, { padding = 1 }, "contiguous", "unbatched (C, H, W)" },
    { { 3, 2, 4, 4 }, { 2, 2, 4, 4 }, {}, "contiguous", "the kernel covers the input" },
  }
  for ci, c in ipairs(conv2d_cases) do
    local xs, ws, o, layout, note, with_bias = c[1], c[2], c[3], c[4], c[5], c[6] ~= false
    local label = string.format("conv2d case %d: x {%s} (%s), weight {%s}, %s%s", ci, table.concat(xs, ","), layout,
      table.concat(ws, ","), options_str(o), note and (", " .. note) or "")
    it(label .. ": y and every gradient", function()
      lg.manual_seed(100 + ci)
      local x = input(xs, layout):requires_grad_(true)
      local w = lg.randn(ws, F64):requires_grad_(true)
      local b = with_bias and lg.randn(ws[1], F64):requires_grad_(true) or nil
      local y = F.conv2d(x, w, b, o)
      local u = lg.randn(y.shape, F64)
      y:backward(u)
      local before, after = pads_of(o, { ws[3], ws[4] }, 2)
      local ro = { stride = each(o.stride, 2, 1), before = before, after = after, dilation = each(o.dilation, 2, 1),
        groups = o.groups or 1 }
      local batched = #xs == 4
      local function b4(t) return batched and t or { t } end
      local ry, rdx, rdw, rdb = conv2d_ref(b4(x:tolist()), w:tolist(), b and b:tolist(), b4(u:tolist()), ro)
      if not batched then ry, rdx = ry[1], rdx[1] end
      assert_lists_close(y:tolist(), ry, 1e-12, label .. ": y")
      assert_lists_close(x.grad:tolist(), rdx, 1e-12, label .. ": dx")
      assert_lists_close(w.grad:tolist(), rdw, 1e-12, label .. ": dweight")
      if b then assert_lists_close(b.grad:tolist(), rdb, 1e-12, label .. ": dbias") end
    end)
  end

  local conv1d_cases = {
    { { 2, 3, 10 }, { 4, 3, 3 }, { padding = 1 }, "contiguous" },
    { { 1, 2, 11 }, { 3, 2, 3 }, { stride = 2, dilation = 2 }, "contiguous", "batch 1" },
    { { 2, 4, 9 }, { 4, 1, 5 }, { padding = 2, groups = 4 }, "contiguous", "depthwise" },
    { { 2, 4, 8 }, { 6, 2, 4 }, { padding = "same", groups = 2 }, "contiguous", "same, odd total" },
    { { 3, 3, 7 }, { 2, 3, 2 }, { stride = 3, padding = { 1 } }, "channels_last" },
    { { 2, 2, 9 }, { 2, 2, 3 }, { dilation = 3 }, "narrowed", "no bias", false },
    { { 3, 8 }, { 5, 3, 3 }, { stride = 2 }, "contiguous", "unbatched (C, L)" },
  }
  for ci, c in ipairs(conv1d_cases) do
    local xs, ws, o, layout, note, with_bias = c[1], c[2], c[3], c[4], c[5], c[6] ~= false
    local label = string.format("conv1d case %d: x {%s} (%s), weight {%s}, %s%s", ci, table.concat(xs, ","), layout,
      table.concat(ws, ","), options_str(o), note and (", " .. note) or "")
    it(label .. ": y and every gradient", function()
      lg.manual_seed(200 + ci)
      local x = input(xs, layout):requires_grad_(true)
      local w = lg.randn(ws, F64):requires_grad_(true)
      local b = with_bias and lg.randn(ws[1], F64):requires_grad_(true) or nil
      local y = F.conv1d(x, w, b, o)
      local u = lg.randn(y.shape, F64)
      y:backward(u)
      local before, after = pads_of({ padding = type(o.padding) == "table" and o.padding[1] or o.padding,
        dilation = o.dilation }, { ws[3] }, 1)
      local ro = { stride = each(o.stride, 1, 1), before = before, after = after, dilation = each(o.dilation, 1, 1),
        groups = o.groups or 1 }
      local batched = #xs == 3
      local function b3(t) return batched and t or { t } end
      local ry, rdx, rdw, rdb = conv1d_ref(b3(x:tolist()), w:tolist(), b and b:tolist(), b3(u:tolist()), ro)
      if not batched then ry, rdx = ry[1], rdx[1] end
      assert_lists_close(y:tolist(), ry, 1e-12, label .. ": y")
      assert_lists_close(x.grad:tolist(), rdx, 1e-12, label .. ": dx")
      assert_lists_close(w.grad:tolist(), rdw, 1e-12, label .. ": dweight")
      if b then assert_lists_close(b.grad:tolist(), rdb, 1e-12, label .. ": dbias") end
    end)
  end

  it("float32 agrees with the float64 reference", function()
    lg.manual_seed(7)
    local x, w, b = lg.randn(2, 5, 9, 8), lg.randn(6, 5, 3, 3), lg.randn(6)
    local o = { stride = { 2, 1 }, padding = 1, dilation = { 1, 2 } }
    local y = F.conv2d(x, w, b, o)
    assert.are.equal("float32", y.dtype)
    local ry = conv2d_ref(x:tolist(), w:tolist(), b:tolist(), nil, {
      stride = { 2, 1 }, before = { 1, 1 }, after = { 1, 1 }, dilation = { 1, 2 }, groups = 1 })
    assert_lists_close(y:tolist(), ry, 1e-5, "float32 conv2d")
  end)

  it("an empty batch gives an empty output", function()
    local y = F.conv2d(lg.zeros(0, 3, 5, 5, F64), lg.randn(4, 3, 3, 3, F64))
    assert.are.same({ 0, 4, 3, 3 }, y.shape)
  end)

  it("the options may take the bias's place", function()
    lg.manual_seed(8)
    local x, w = lg.randn(1, 2, 6, 6, F64), lg.randn(3, 2, 3, 3, F64)
    assert.are.equal(0, (F.conv2d(x, w, { stride = 2 }) - F.conv2d(x, w, nil, { stride = 2 })):abs():max():item())
    local x1, w1 = lg.randn(1, 2, 6, F64), lg.randn(3, 2, 3, F64)
    assert.are.equal(0, (F.conv1d(x1, w1, { padding = 1 }) - F.conv1d(x1, w1, nil, { padding = 1 })):abs():max():item())
  end)
end)

-- pool2d_ref(kind, x (N, C, H, W), u (upstream) or nil, o) -> y, dx, indices (max: 1-based, in
-- each H W plane). kind "max", "avg" or "adaptive"; o = {k, s, p, d, ceil, count_include_pad,
-- divisor} as tables of two numbers (adaptive: o.size).
local function ceil_div(a, b) return -((-a) // b) end
local function pool_out(n, k, s, p, d, ceil)
  local span = n + 2 * p - d * (k - 1) - 1
  local o = (ceil and ceil_div(span, s) or span // s) + 1
  if ceil and (o - 1) * s >= n + p then o = o - 1 end -- the last window starts inside the input or its left padding
  return o
end
local function pool2d_ref(kind, x, u, o)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local Ho, Wo
  if kind == "adaptive" then
    Ho, Wo = o.size[1], o.size[2]
  else
    Ho = pool_out(H, o.k[1], o.s[1], o.p[1], o.d[1], o.ceil)
    Wo = pool_out(W, o.k[2], o.s[2], o.p[2], o.d[2], o.ceil)
  end
  local y, idx, dx = zeros({ N, C, Ho, Wo }), zeros({ N, C, Ho, Wo }), zeros({ N, C, H, W })
  for n = 1, N do
    for c = 1, C do
      local plane, dplane = x[n][c], dx[n][c]
      for i = 1, Ho do
        for j = 1, Wo do
          local up = u and u[n][c][i][j] or 0
          if kind == "max" then
            local best, bh, bw
            for p = 1, o.k[1] do
              local h = (i - 1) * o.s[1] - o.p[1] + (p - 1) * o.d[1] + 1
              for q = 1, o.k[2] do
                local v = (j - 1) * o.s[2] - o.p[2] + (q - 1) * o.d[2] + 1
                if h >= 1 and h <= H and v >= 1 and v <= W and (best == nil or plane[h][v] > best) then
                  best, bh, bw = plane[h][v], h, v
                end
              end
            end
            y[n][c][i][j], idx[n][c][i][j] = best, (bh - 1) * W + bw
            dplane[bh][bw] = dplane[bh][bw] + up
          else
            local h0, h1, w0, w1, divisor -- 0-based, end exclusive
            if kind == "adaptive" then
              h0, h1 = (i - 1) * H // Ho, ceil_div(i * H, Ho)
              w0, w1 = (j - 1) * W // Wo, ceil_div(j * W, Wo)
              divisor = (h1 - h0) * (w1 - w0)
            else
              h0, w0 = (i - 1) * o.s[1] - o.p[1], (j - 1) * o.s[2] - o.p[2]
              h1, w1 = math.min(h0 + o.k[1], H + o.p[1]), math.min(w0 + o.k[2], W + o.p[2])
              local padded = (h1 - h0) * (w1 - w0)
              h0, w0, h1, w1 = math.max(h0, 0), math.max(w0, 0), math.min(h1, H), math.min(w1, W)
              divisor = o.divisor or (o.count_include_pad and padded or (h1 - h0) * (w1 - w0))
            end
            local sum = 0
            for h = h0 + 1, h1 do
              for v = w0 + 1, w1 do
                sum = sum + plane[h][v]
                dplane[h][v] = dplane[h][v] + up / divisor
              end
            end
            y[n][c][i][j] = sum / divisor
          end
        end
      end
    end
  end
  return y, dx, idx
end

describe("pooling against the loop reference", function()
  local function run(fname, n, xs, layout, opts, ref_opts, kind, label)
    lg.manual_seed(#label)
    local x = input(xs, layout):requires_grad_(true)
    local y, idx = F[fname](x, opts)
    local u = lg.randn(y.shape, F64)
    y:backward(u)
    local batched = #xs == n + 2
    local xl, ul = x:tolist(), u:tolist()
    if not batched then xl, ul = { xl }, { ul } end
    if n == 1 then xl, ul = lift(xl, 3), lift(ul, 3) end
    local ry, rdx, ridx = pool2d_ref(kind, xl, ul, ref_opts)
    if n == 1 then ry, rdx, ridx = lower(ry, 3), lower(rdx, 3), lower(ridx, 3) end
    if not batched then ry, rdx, ridx = ry[1], rdx[1], ridx[1] end
    assert_lists_close(y:tolist(), ry, 1e-13, label .. ": y")
    assert_lists_close(x.grad:tolist(), rdx, 1e-13, label .. ": dx")
    if idx then
      assert.are.equal("int64", idx.dtype)
      assert.are.same(ridx, idx:tolist(), label .. ": indices")
    end
  end

  local function ref_opts(n, o)
    local function two(v, default)
      if v == nil then v = default end
      if type(v) ~= "table" then v = { v, v } end
      if n == 1 and #v == 1 then v = { v[1], v[1] } end
      return v
    end
    local k = two(o.kernel_size)
    local r = { k = k, s = two(o.stride, k), p = two(o.padding, 0), d = two(o.dilation, 1), ceil = o.ceil_mode == true,
      count_include_pad = o.count_include_pad ~= false, divisor = o.divisor_override }
    if n == 1 then -- a height of 1: one row, no padding
      r.k, r.s, r.p, r.d = { 1, r.k[1] }, { 1, r.s[1] }, { 0, r.p[1] }, { 1, r.d[1] }
    end
    return r
  end

  local max2d = {
    { { 2, 3, 7, 7 }, { kernel_size = 3, stride = 2, padding = 1 } },
    { { 1, 2, 6, 6 }, { kernel_size = 3, stride = 2, padding = 1, ceil_mode = true }, "batch 1, ceil_mode" },
    { { 2, 2, 7, 8 }, { kernel_size = { 2, 3 }, stride = { 1, 2 }, padding = { 1, 0 }, dilation = { 2, 1 } } },
    { { 2, 2, 5, 5 }, { kernel_size = 2, stride = 2, ceil_mode = true }, "ceil_mode, a partial last window" },
    { { 3, 5, 6 }, { kernel_size = 2, return_indices = true }, "unbatched, indices" },
    { { 2, 3, 6, 5 }, { kernel_size = 3, stride = 1, padding = 1, return_indices = true }, "indices", "channels_last" },
    { { 1, 2, 9, 7 }, { kernel_size = 3, stride = 3, dilation = 2, padding = 1, ceil_mode = true, return_indices = true },
      "dilation, ceil_mode, indices", "transposed" },
  }
  for ci, c in ipairs(max2d) do
    local label = string.format("max_pool2d case %d: x {%s}, %s%s", ci, table.concat(c[1], ","), options_str(c[2]),
      c[3] and (", " .. c[3]) or "")
    it(label, function() run("max_pool2d", 2, c[1], c[4] or "contiguous", c[2], ref_opts(2, c[2]), "max", label) end)
  end

  it("max_pool2d's float32 2 x 2 fast path gives the float64 path's values and indices, ties and NaN included",
    function()
      -- widths past eight outputs reach the vector loop; an odd width leaves a column unread; few
      -- distinct values make ties, and a NaN in some windows must win wherever it sits
      lg.manual_seed(7)
      local x = lg.randint(0, 3, { 2, 3, 10, 37 }):double()
      local flat = x:view(-1)
      for _, at in ipairs({ 1, 2, 40, 75, 76, 300, 301, 302, 1111, 2000 }) do flat[at] = 0 / 0 end
      local y64, i64 = F.max_pool2d(x, { kernel_size = 2, return_indices = true })
      local y32, i32 = F.max_pool2d(x:float(), { kernel_size = 2, return_indices = true })
      assert.are.same({ 2, 3, 5, 18 }, y32.shape)
      assert.are.same(i64:tolist(), i32:tolist())
      local a, b = y64:view(-1):tolist(), y32:double():view(-1):tolist()
      for k = 1, #a do
        assert.is_true(a[k] == b[k] or (a[k] ~= a[k] and b[k] ~= b[k]), "element " .. k)
      end
    end)

  it("max_pool2d: padding never wins over negative inputs", function()
    local x = -lg.rand(1, 1, 4, 4, F64) - 1
    local y = F.max_pool2d(x, { kernel_size = 3, stride = 1, padding = 1 })
    assert.is_true(y:max():item() < -1)
  end)

  local avg2d = {
    { { 2, 3, 7, 7 }, { kernel_size = 3, stride = 2, padding = 1 } },
    { { 2, 3, 7, 7 }, { kernel_size = 3, stride = 2, padding = 1, count_include_pad = false } },
    { { 1, 2, 6, 6 }, { kernel_size = 3, stride = 2, padding = 1, ceil_mode = true }, "batch 1, ceil_mode" },
    { { 2, 2, 6, 5 }, { kernel_size = 3, stride = 2, padding = 1, ceil_mode = true, count_include_pad = false },
      "ceil_mode without the padding" },
    { { 2, 2, 5, 7 }, { kernel_size = { 2, 3 }, stride = { 1, 2 }, padding = 1 }, "channels_last", "channels_last" },
    { { 2, 2, 5, 5 }, { kernel_size = 3, padding = 1, divisor_override = 5 }, "divisor_override" },
    { { 3, 6, 5 }, { kernel_size = 2, stride = 1 }, "unbatched", "transposed" },
  }
  for ci, c in ipairs(avg2d) do
    local label = string.format("avg_pool2d case %d: x {%s}, %s%s", ci, table.concat(c[1], ","), options_str(c[2]),
      c[3] and (", " .. c[3]) or "")
    it(label, function() run("avg_pool2d", 2, c[1], c[4] or "contiguous", c[2], ref_opts(2, c[2]), "avg", label) end)
  end

  local pool1d = {
    { "max_pool1d", "max", { 2, 3, 11 }, { kernel_size = 3, stride = 2, padding = 1, dilation = 2, return_indices = true } },
    { "max_pool1d", "max", { 1, 2, 8 }, { kernel_size = 3, stride = 2, ceil_mode = true } },
    { "max_pool1d", "max", { 3, 9 }, { kernel_size = { 2 } }, "unbatched" },
    { "avg_pool1d", "avg", { 2, 3, 9 }, { kernel_size = 3, stride = 2, padding = 1, count_include_pad = false } },
    { "avg_pool1d", "avg", { 1, 2, 8 }, { kernel_size = 3, stride = 2, padding = 1, ceil_mode = true } },
    { "avg_pool1d", "avg", { 2, 2, 7 }, { kernel_size = 2 }, "narrowed", "narrowed" },
  }
  for ci, c in ipairs(pool1d) do
    local label = string.format("%s case %d: x {%s}, %s%s", c[1], ci, table.concat(c[3], ","), options_str(c[4]),
      c[5] and (", " .. c[5]) or "")
    it(label, function() run(c[1], 1, c[3], c[6] or "contiguous", c[4], ref_opts(1, c[4]), c[2], label) end)
  end

  local adaptive = {
    { { 2, 3, 7, 5 }, { 3, 2 }, "uneven windows" },
    { { 1, 2, 5, 5 }, { 4, 4 }, "overlapping windows" },
    { { 2, 2, 6, 6 }, 1, "global average" },
    { { 2, 2, 5, 3 }, { 8, 3 }, "larger than the input" },
    { { 3, 6, 4 }, { 2, 2 }, "unbatched" },
  }
  for ci, c in ipairs(adaptive) do
    local size = type(c[2]) == "table" and c[2] or { c[2], c[2] }
    local label = string.format("adaptive_avg_pool2d case %d: x {%s} to {%d,%d}, %s", ci, table.concat(c[1], ","),
      size[1], size[2], c[3])
    it(label, function()
      lg.manual_seed(300 + ci)
      local x = lg.randn(c[1], F64):requires_grad_(true)
      local y = F.adaptive_avg_pool2d(x, c[2])
      local u = lg.randn(y.shape, F64)
      y:backward(u)
      local batched = #c[1] == 4
      local xl, ul = x:tolist(), u:tolist()
      if not batched then xl, ul = { xl }, { ul } end
      local ry, rdx = pool2d_ref("adaptive", xl, ul, { size = size })
      if not batched then ry, rdx = ry[1], rdx[1] end
      assert_lists_close(y:tolist(), ry, 1e-13, label .. ": y")
      assert_lists_close(x.grad:tolist(), rdx, 1e-13, label .. ": dx")
    end)
  end
end)

describe("F.pad's modes", function()
  -- the padded list by its definition, one dimension at a time from the last
  local function source(mode, i, n) -- i: 1-based position in the padded dimension less the front amount
    if mode == "reflect" then
      if i < 1 then return 2 - i end
      if i > n then return 2 * n - i end
      return i
    elseif mode == "replicate" then
      return math.min(math.max(i, 1), n)
    end
    return (i - 1) % n + 1
  end
  local function pad_ref(t, pads, mode, depth, nd)
    -- t: nested list of nd dimensions; pads for the dimension at `depth` are pads[2 (nd - depth) + 1, + 2]
    local k = nd - depth
    local a, b = pads[2 * k + 1] or 0, pads[2 * k + 2] or 0
    local inner = t
    if depth < nd then
      inner = {}
      for i, v in ipairs(t) do inner[i] = pad_ref(v, pads, mode, depth + 1, nd) end
    end
    local out = {}
    for i = 1, #inner + a + b do out[i] = inner[source(mode, i - a, #inner)] end
    return out
  end

  for _, mode in ipairs({ "reflect", "replicate", "circular" }) do
    for _, c in ipairs({ { { 2, 3, 5, 4 }, { 1, 2, 3, 0 } }, { { 2, 3, 5 }, { 4, 2 } }, { { 3, 4 }, { 3, 3, 2, 1 } } }) do
      local shape, pads = c[1], c[2]
      if not (mode == "reflect" and (pads[1] >= shape[#shape] or pads[2] >= shape[#shape])) then
        it(string.format("%s: {%s} padded by {%s}", mode, table.concat(shape, ","), table.concat(pads, ",")), function()
          lg.manual_seed(17)
          local x = lg.randn(shape, F64)
          local y = F.pad(x, pads, { mode = mode })
          assert.are.same(pad_ref(x:tolist(), pads, mode, 1, #shape), y:tolist())
        end)
      end
    end
  end

  it("checks the amounts against the sizes and the mode", function()
    local x = lg.randn(1, 2, 3, 4)
    assert.are.equal("pad: reflect padding {4,0} of dimension 4 needs amounts smaller than its size (input {1,2,3,4})",
      message_of(F.pad, x, { 4, 0 }, { mode = "reflect" }))
    assert.are.equal("pad: circular padding {0,5} of dimension 4 needs amounts at most its size (input {1,2,3,4})",
      message_of(F.pad, x, { 0, 5 }, { mode = "circular" }))
    assert.are.equal('pad: mode "replicate" needs non-negative integer amounts, got -1',
      message_of(F.pad, x, { -1, 0 }, { mode = "replicate" }))
    assert.are.equal('pad: mode must be "constant", "reflect", "replicate" or "circular", got mirror',
      message_of(F.pad, x, { 1, 1 }, { mode = "mirror" }))
    assert.are.equal('pad: value is only for mode "constant", not "reflect"',
      message_of(F.pad, x, { 1, 1 }, { mode = "reflect", value = 2 }))
    assert.are.equal("pad: padding must hold a (before, after) pair for each of at most 4 dimensions of input " ..
      "{1,2,3,4}, got 3 numbers", message_of(F.pad, x, { 1, 1, 1 }, { mode = "circular" }))
  end)
end)

-- ---- layers ------------------------------------------------------------------------------------

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

describe("nn.Conv2d and nn.Conv1d", function()
  it("have PyTorch's parameters: weight (out, in / groups, k...) and bias (out)", function()
    local c = nn.Conv2d(4, 6, { 3, 2 }, { groups = 2 })
    assert.are.same({ 6, 2, 3, 2 }, c.weight.shape)
    assert.are.same({ 6 }, c.bias.shape)
    assert.are.equal("float32", c.weight.dtype)
    assert.is_true(c.weight.requires_grad and c.weight:grad_fn() == nil)
    assert.are.same({ "bias", "weight" }, sorted_keys(c:state_dict()))
    local c1 = nn.Conv1d(3, 5, 4, { bias = false, dtype = "float64" })
    assert.are.same({ 5, 3, 4 }, c1.weight.shape)
    assert.is_nil(c1.bias)
    assert.are.equal("float64", c1.weight.dtype)
    assert.are.same({ "weight" }, sorted_keys(c1:state_dict()))
    assert.are.same({ 4 }, c1.kernel_size)
    assert.are.same({ 1 }, c1.stride)
    assert.are.same({ 0 }, c1.padding)
    assert.are.equal("zeros", c1.padding_mode)
    assert.are.same({ 3, 2 }, c.kernel_size)
    assert.are.same({ 1, 1 }, c.dilation)
    assert.are.equal(2, c.groups)
    assert.are.equal(4, c.in_channels)
    assert.are.equal(6, c.out_channels)
  end)

  it("initialize as PyTorch: weight and bias in U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * k", function()
    lg.manual_seed(0)
    local c = nn.Conv2d(64, 96, 5, { groups = 4 }) -- fan_in = 16 * 25 = 400
    local bound = 1 / math.sqrt(400)
    local w = c.weight:to("float64")
    assert.is_true(w:abs():max():item() <= bound)
    assert.is_true(w:abs():max():item() > 0.99 * bound)
    assert.is_true(c.bias:abs():max():item() <= bound)
    assert.is_true(c.bias:abs():max():item() > 0.8 * bound) -- 96 draws: P(all below) = 0.8^96
    -- variance bound^2 / 3 from 96 * 16 * 25 = 38,400 draws: relative sd sqrt(0.8 / n); allow 5 sd
    assert.is_true(math.abs(w:var():item() / (bound * bound / 3) - 1) < 5 * math.sqrt(0.8 / 38400))
    local c1 = nn.Conv1d(10, 4, 3) -- fan_in 30
    assert.is_true(c1.weight:abs():max():item() <= 1 / math.sqrt(30))
    assert.is_true(c1.bias:abs():max():item() <= 1 / math.sqrt(30))
    lg.manual_seed(1)
    local before = c1.weight:clone()
    c1:reset_parameters()
    assert.is_true(max_abs_diff(before, c1.weight) > 0)
  end)

  it("compute F.conv2d / F.conv1d with their options, batched and unbatched", function()
    lg.manual_seed(3)
    local c = nn.Conv2d(4, 6, { 3, 2 }, { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 1, 2 }, groups = 2,
      dtype = "float64" })
    local x = lg.randn(2, 4, 7, 8, F64)
    local want = F.conv2d(x, c.weight, c.bias, { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 1, 2 }, groups = 2 })
    assert.are.equal(0, max_abs_diff(c(x), want))
    assert.are.equal(0, max_abs_diff(c(x[2]), want[2]))
    local c1 = nn.Conv1d(3, 2, 4, { padding = "same", dtype = "float64" })
    local x1 = lg.randn(2, 3, 9, F64)
    local y1 = c1(x1)
    assert.are.same({ 2, 2, 9 }, y1.shape)
    assert.are.equal(0, max_abs_diff(y1, F.conv1d(x1, c1.weight, c1.bias, { padding = "same" })))
    assert.are.equal(0, max_abs_diff(c1(x1[1]), y1[1]))
  end)

  for _, mode in ipairs({ "reflect", "replicate", "circular" }) do
    it("padding_mode " .. mode .. " pads with F.pad first, as PyTorch (also with \"same\")", function()
      lg.manual_seed(4)
      local c = nn.Conv2d(2, 3, { 3, 4 }, { padding = { 2, 1 }, padding_mode = mode, dtype = "float64" })
      local x = lg.randn(2, 2, 5, 6, F64)
      local want = F.conv2d(F.pad(x, { 1, 1, 2, 2 }, { mode = mode }), c.weight, c.bias)
      assert.are.same({ 2, 3, 7, 5 }, c(x).shape)
      assert.are.equal(0, max_abs_diff(c(x), want))
      local s = nn.Conv2d(2, 3, { 3, 4 }, { padding = "same", padding_mode = mode, dtype = "float64" })
      local ys = s(x) -- totals 2 and 3: one and one, one in front and two behind
      assert.are.same({ 2, 3, 5, 6 }, ys.shape)
      assert.are.equal(0, max_abs_diff(ys, F.conv2d(F.pad(x, { 1, 2, 1, 1 }, { mode = mode }), s.weight, s.bias)))
      local c1 = nn.Conv1d(2, 2, 3, { padding = 2, padding_mode = mode, dtype = "float64" })
      local x1 = lg.randn(1, 2, 5, F64)
      assert.are.equal(0, max_abs_diff(c1(x1), F.conv1d(F.pad(x1, { 2, 2 }, { mode = mode }), c1.weight, c1.bias)))
    end)
  end

  it("print as PyTorch does, with Lua tables for tuples", function()
    assert.are.equal("Conv2d(3, 16, kernel_size={3,3}, stride={1,1}, padding={1,1})",
      tostring(nn.Conv2d(3, 16, 3, { padding = 1 })))
    assert.are.equal("Conv2d(4, 8, kernel_size={3,5}, stride={2,2}, dilation={1,2}, groups=2, bias=false, " ..
      'padding_mode="circular")',
      tostring(nn.Conv2d(4, 8, { 3, 5 }, { stride = 2, dilation = { 1, 2 }, groups = 2, bias = false,
        padding_mode = "circular" })))
    assert.are.equal('Conv1d(4, 8, kernel_size={3}, stride={1}, padding="same")',
      tostring(nn.Conv1d(4, 8, 3, { padding = "same" })))
    assert.are.equal('Conv2d(2, 2, kernel_size={2,2}, stride={1,1}, padding="valid")',
      tostring(nn.Conv2d(2, 2, 2, { padding = "valid" })))
  end)

  it("check their arguments", function()
    assert.are.equal("Conv2d: in_channels (3) and out_channels (4) must be divisible by groups (2)",
      message_of(nn.Conv2d, 3, 4, 3, { groups = 2 }))
    assert.are.equal("Conv2d: in_channels must be a positive integer, got 0", message_of(nn.Conv2d, 0, 4, 3))
    assert.are.equal("Conv1d: out_channels must be a positive integer, got 2.5", message_of(nn.Conv1d, 3, 2.5, 3))
    assert.are.equal("Conv2d: kernel_size must be an integer or a table of 2 integers, got a table of 3",
      message_of(nn.Conv2d, 3, 4, { 1, 2, 3 }))
    assert.are.equal("Conv2d: kernel_size must be positive, got 0", message_of(nn.Conv2d, 3, 4, 0))
    assert.are.equal("Conv1d: stride must be positive, got 0", message_of(nn.Conv1d, 3, 4, 3, { stride = 0 }))
    assert.are.equal("Conv2d: padding must be non-negative, got -1", message_of(nn.Conv2d, 3, 4, 3, { padding = -1 }))
    assert.are.equal('Conv2d: padding = "same" needs stride 1, got stride {2,2}',
      message_of(nn.Conv2d, 3, 4, 3, { padding = "same", stride = 2 }))
    assert.are.equal('Conv2d: padding must be a number, a table of 2, "same" or "valid", got "full"',
      message_of(nn.Conv2d, 3, 4, 3, { padding = "full" }))
    assert.are.equal('Conv2d: padding_mode must be "zeros", "reflect", "replicate" or "circular", got mirror',
      message_of(nn.Conv2d, 3, 4, 3, { padding_mode = "mirror" }))
    assert.matches("^Conv2d: unknown option 'padding_type' %(accepted: stride, padding, dilation, groups, bias, " ..
      "padding_mode, dtype%)$", message_of(nn.Conv2d, 3, 4, 3, { padding_type = "zeros" }))
    assert.matches("^Conv1d: unknown option 'output_padding'", message_of(nn.Conv1d, 3, 4, 3, { output_padding = 1 }))
    assert.are.equal("Conv2d: groups must be a positive integer, got 0", message_of(nn.Conv2d, 3, 3, 3, { groups = 0 }))
  end)

  it("name the layer and the shapes for bad input", function()
    local c = nn.Conv2d(3, 4, 3)
    assert.are.equal("Conv2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {2,3}",
      message_of(c, lg.randn(2, 3)))
    assert.are.equal("Conv2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {1,1,3,5,5}",
      message_of(c, lg.randn(1, 1, 3, 5, 5)))
    assert.are.equal("Conv2d: weight {4,3,3,3} with 1 group expects 3 input channels, got input of shape {2,5,8,8}",
      message_of(c, lg.randn(2, 5, 8, 8)))
    assert.are.equal("Conv2d: the kernel {3,3} with dilation {1,1} is larger than the padded input {2,9} " ..
      "(input {1,3,2,9}, padding {0,0})", message_of(c, lg.randn(1, 3, 2, 9)))
    assert.are.equal("Conv1d: expected 2-d (C, L) or 3-d (N, C, L) input, got shape {4}",
      message_of(nn.Conv1d(4, 2, 3), lg.randn(4)))
    assert.are.equal("Conv1d: the kernel {3} with dilation {2} is larger than the padded input {4} " ..
      "(input {2,4,4}, padding {0})", message_of(nn.Conv1d(4, 2, 3, { dilation = 2 }), lg.randn(2, 4, 4)))
    assert.are.equal("Conv2d: expected a tensor input, got table", message_of(c, { 1, 2 }))
    assert.are.equal("Conv2d: needs a float input, got int64 of shape {1,3,4,4}",
      message_of(c, lg.ones(1, 3, 4, 4, { dtype = "int64" })))
  end)
end)

describe("F.conv2d and F.conv1d errors name the op and the shapes", function()
  local x = lg.randn(1, 3, 4, 4)
  local cases = {
    { "conv2d: the kernel {5,5} with dilation {1,1} is larger than the padded input {4,4} (input {1,3,4,4}, " ..
      "padding {0,0})", F.conv2d, x, lg.randn(2, 3, 5, 5) },
    { "conv2d: the kernel {3,3} with dilation {3,1} is larger than the padded input {6,6} (input {1,3,4,4}, " ..
      "padding {1,1})", F.conv2d, x, lg.randn(2, 3, 3, 3), nil, { padding = 1, dilation = { 3, 1 } } },
    { "conv2d: 3 input channels (input {1,3,4,4}) are not divisible by 2 groups", F.conv2d, x, lg.randn(4, 1, 3, 3),
      nil, { groups = 2 } },
    { "conv2d: 3 output channels (weight {3,2,3,3}) are not divisible by 2 groups", F.conv2d, lg.randn(1, 4, 4, 4),
      lg.randn(3, 2, 3, 3), nil, { groups = 2 } },
    { "conv2d: weight {2,2,3,3} with 1 group expects 2 input channels, got input of shape {1,3,4,4}", F.conv2d, x,
      lg.randn(2, 2, 3, 3) },
    { "conv2d: weight {6,2,3,3} with 3 groups expects 6 input channels, got input of shape {1,3,4,4}", F.conv2d, x,
      lg.randn(6, 2, 3, 3), nil, { groups = 3 } },
    { "conv2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {3,4}", F.conv2d, lg.randn(3, 4),
      lg.randn(2, 3, 3, 3) },
    { "conv2d: expected a 4-d weight (out, in/groups, kH, kW), got shape {2,3,3}", F.conv2d, x, lg.randn(2, 3, 3) },
    { "conv2d: bias of shape {3} does not match the 2 output channels of weight {2,3,3,3}", F.conv2d, x,
      lg.randn(2, 3, 3, 3), lg.randn(3) },
    { 'conv2d: padding = "same" needs stride 1, got stride {1,2}', F.conv2d, x, lg.randn(2, 3, 3, 3), nil,
      { padding = "same", stride = { 1, 2 } } },
    { "conv2d: unknown option 'group' (accepted: stride, padding, dilation, groups)", F.conv2d, x, lg.randn(2, 3, 3, 3),
      nil, { group = 1 } },
    { "conv1d: the kernel {5} with dilation {1} is larger than the padded input {4} (input {1,3,4}, padding {0})",
      F.conv1d, lg.randn(1, 3, 4), lg.randn(2, 3, 5) },
    { "conv1d: 3 input channels (input {1,3,4}) are not divisible by 2 groups", F.conv1d, lg.randn(1, 3, 4),
      lg.randn(2, 1, 3), nil, { groups = 2 } },
    { "conv1d: weight {2,2,3} with 1 group expects 2 input channels, got input of shape {1,3,4}", F.conv1d,
      lg.randn(1, 3, 4), lg.randn(2, 2, 3) },
    { "conv1d: expected 2-d (C, L) or 3-d (N, C, L) input, got shape {1,3,4,4}", F.conv1d, x, lg.randn(2, 3, 3) },
    { "conv1d: stride must be an integer, got a table of 2", F.conv1d, lg.randn(1, 3, 4), lg.randn(2, 3, 3), nil,
      { stride = { 1, 2 } } },
    { "conv2d: groups must be a positive integer, got 1.5", F.conv2d, x, lg.randn(2, 3, 3, 3), nil, { groups = 1.5 } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.are.equal(c[1], message_of(table.unpack(c, 2, 6))) end)
  end
end)

describe("pooling layers", function()
  it("default the stride to the kernel and print as PyTorch", function()
    local m = nn.MaxPool2d(2)
    assert.are.equal(2, m.stride)
    assert.are.equal("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=false)", tostring(m))
    assert.are.equal("MaxPool2d(kernel_size={3,2}, stride={2,1}, padding=1, dilation=1, ceil_mode=true)",
      tostring(nn.MaxPool2d({ 3, 2 }, { stride = { 2, 1 }, padding = 1, ceil_mode = true })))
    assert.are.equal("MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=false)",
      tostring(nn.MaxPool1d({ kernel_size = 3, stride = 2, padding = 1, dilation = 2 })))
    assert.are.equal("AvgPool2d(kernel_size=3, stride=1, padding=1)",
      tostring(nn.AvgPool2d(3, { stride = 1, padding = 1, count_include_pad = false })))
    assert.are.equal("AvgPool1d(kernel_size=2, stride=2, padding=0)", tostring(nn.AvgPool1d(2)))
    assert.are.equal("AdaptiveAvgPool2d(output_size=1)", tostring(nn.AdaptiveAvgPool2d(1)))
    assert.are.equal("AdaptiveAvgPool2d(output_size={5,7})", tostring(nn.AdaptiveAvgPool2d({ 5, 7 })))
    assert.are.equal(0, #nn.MaxPool2d(2):parameters())
  end)

  it("compute the functional forms", function()
    lg.manual_seed(5)
    local x = lg.randn(2, 3, 9, 8, F64)
    local o = { stride = { 2, 1 }, padding = 1, dilation = { 1, 2 }, ceil_mode = true }
    assert.are.equal(0, max_abs_diff(nn.MaxPool2d(3, o)(x), F.max_pool2d(x, 3, o)))
    local y, idx = nn.MaxPool2d(3, { return_indices = true })(x)
    local fy, fidx = F.max_pool2d(x, { kernel_size = 3, return_indices = true })
    assert.are.equal(0, max_abs_diff(y, fy))
    assert.are.same(fidx:tolist(), idx:tolist())
    local a = { stride = 2, padding = 1, ceil_mode = true, count_include_pad = false, divisor_override = 3 }
    assert.are.equal(0, max_abs_diff(nn.AvgPool2d(3, a)(x), F.avg_pool2d(x, 3, a)))
    assert.are.equal(0, max_abs_diff(nn.AdaptiveAvgPool2d({ 2, 3 })(x), F.adaptive_avg_pool2d(x, { 2, 3 })))
    assert.is_true(max_abs_diff(nn.AdaptiveAvgPool2d(1)(x), x:mean({ 3, 4 }, true)) < 1e-15)
    local x1 = lg.randn(2, 3, 11, F64)
    assert.are.equal(0, max_abs_diff(nn.MaxPool1d(3, { stride = 2 })(x1), F.max_pool1d(x1, 3, { stride = 2 })))
    assert.are.equal(0, max_abs_diff(nn.AvgPool1d(3, { padding = 1 })(x1), F.avg_pool1d(x1, { kernel_size = 3, padding = 1 })))
    assert.are.equal(0, max_abs_diff(nn.MaxPool2d(2)(x[1]), F.max_pool2d(x, 2)[1]))
  end)

  it("check their arguments and input", function()
    assert.matches("^MaxPool2d: unknown option 'strides'", message_of(nn.MaxPool2d, 2, { strides = 1 }))
    assert.matches("^AvgPool1d: unknown option 'divisor_override'", message_of(nn.AvgPool1d, 2, { divisor_override = 2 }))
    assert.matches("^AvgPool2d: unknown option 'dilation'", message_of(nn.AvgPool2d, 2, { dilation = 2 }))
    assert.are.equal("MaxPool2d: kernel_size is needed", message_of(nn.MaxPool2d, { stride = 2 }))
    assert.are.equal("MaxPool2d: kernel_size is given twice", message_of(nn.MaxPool2d, 2, { kernel_size = 2 }))
    assert.are.equal("MaxPool2d: kernel_size must be positive, got 0", message_of(nn.MaxPool2d, 0))
    assert.are.equal("MaxPool2d: ceil_mode must be a boolean, got number", message_of(nn.MaxPool2d, 2, { ceil_mode = 1 }))
    assert.are.equal("AvgPool2d: divisor_override must be a positive integer, got 0",
      message_of(nn.AvgPool2d, 2, { divisor_override = 0 }))
    assert.are.equal("AdaptiveAvgPool2d: output_size must be positive, got 0", message_of(nn.AdaptiveAvgPool2d, 0))
    assert.are.equal("MaxPool2d: the kernel {3,3} with dilation {1,1} is larger than the padded input {2,2} " ..
      "(input {1,1,2,2}, padding {0,0})", message_of(nn.MaxPool2d(3), lg.randn(1, 1, 2, 2)))
    assert.are.equal("MaxPool2d: padding {2,2} must be at most half the kernel size {3,3}",
      message_of(nn.MaxPool2d(3, { padding = 2 }), lg.randn(1, 1, 8, 8)))
    assert.are.equal("AvgPool1d: the kernel {4} is larger than the padded input {3} (input {2,3}, padding {0})",
      message_of(nn.AvgPool1d(4), lg.randn(2, 3)))
    assert.are.equal("MaxPool1d: expected 2-d (C, L) or 3-d (N, C, L) input, got shape {1,2,3,4}",
      message_of(nn.MaxPool1d(2), lg.randn(1, 2, 3, 4)))
    assert.are.equal("AdaptiveAvgPool2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {3,4}",
      message_of(nn.AdaptiveAvgPool2d(2), lg.randn(3, 4)))
    assert.are.equal("max_pool2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {4,4}",
      message_of(F.max_pool2d, lg.randn(4, 4), 2))
    assert.are.equal("avg_pool2d: kernel_size is needed", message_of(F.avg_pool2d, lg.randn(1, 1, 4, 4), { stride = 2 }))
    assert.are.equal("max_pool2d: needs a float input, got int64 of shape {1,1,4,4}",
      message_of(F.max_pool2d, lg.ones(1, 1, 4, 4, { dtype = "int64" }), 2))
  end)
end)

describe("nn.BatchNorm2d", function()
  it("has BatchNorm1d's parameters and buffers, with PyTorch's state-dict keys", function()
    local bn = nn.BatchNorm2d(3)
    assert.are.same({ 1, 1, 1 }, bn.weight:tolist())
    assert.are.same({ 0, 0, 0 }, bn.bias:tolist())
    assert.are.same({ 0, 0, 0 }, bn.running_mean:tolist())
    assert.are.same({ 1, 1, 1 }, bn.running_var:tolist())
    assert.are.equal("int64", bn.num_batches_tracked.dtype)
    assert.are.same({ "bias", "num_batches_tracked", "running_mean", "running_var", "weight" },
      sorted_keys(bn:state_dict()))
    assert.are.equal("BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)", tostring(bn))
    local plain = nn.BatchNorm2d(3, { affine = false, track_running_stats = false })
    assert.are.same({}, sorted_keys(plain:state_dict()))
  end)

  it("normalizes each channel over N, H and W; without running statistics it always uses the batch", function()
    lg.manual_seed(6)
    local x = lg.randn(4, 3, 5, 2, F64) * 2 + 1
    local flat = x:permute(2, 1, 3, 4):reshape(3, -1)
    local mean, var = flat:mean(2), flat:var({ dim = 2, unbiased = false })
    local want = (x - mean:view(1, 3, 1, 1)) / (var:view(1, 3, 1, 1) + 1e-5):sqrt()
    local bn = nn.BatchNorm2d(3, { dtype = "float64" })
    assert.is_true(max_abs_diff(bn(x), want) < 1e-12)
    assert.is_true(max_abs_diff(bn.running_var, flat:var(2) * 0.1 + 0.9) < 1e-14)
    local free = nn.BatchNorm2d(3, { track_running_stats = false, dtype = "float64" })
    free:eval()
    assert.is_true(max_abs_diff(free(x), want) < 1e-12)
    bn:reset_running_stats()
    assert.are.same({ 0, 0, 0 }, bn.running_mean:tolist())
    assert.are.equal(0, bn.num_batches_tracked:item())
  end)

  it("names the layer and the shape for bad input", function()
    local bn = nn.BatchNorm2d(3)
    assert.are.equal("BatchNorm2d: expected 4-d (N, C, H, W) input, got shape {2,3,4}", message_of(bn, lg.randn(2, 3, 4)))
    assert.are.equal("BatchNorm2d: expected 3 channels in dimension 2, got input of shape {2,4,3,3}",
      message_of(bn, lg.randn(2, 4, 3, 3)))
    assert.are.equal("BatchNorm2d: expected more than 1 value per channel when training, got input of shape {1,3,1,1}",
      message_of(bn, lg.randn(1, 3, 1, 1)))
    assert.matches("^BatchNorm2d: unknown option 'eps_'", message_of(nn.BatchNorm2d, 3, { eps_ = 1 }))
    assert.are.equal("BatchNorm2d: num_features must be a positive integer, got 0", message_of(nn.BatchNorm2d, 0))
    assert.are.equal("BatchNorm1d: expected 2-d (N, C) or 3-d (N, C, L) input, got shape {2,3,4,4}",
      message_of(nn.BatchNorm1d(3), lg.randn(2, 3, 4, 4)))
  end)
end)

describe("nn.Dropout2d", function()
  it("zeroes whole channels with probability p and scales the rest by 1 / (1 - p)", function()
    lg.manual_seed(0)
    local p = 0.3
    local x = lg.rand(200, 50, 3, 4, F64) + 1
    local y = nn.Dropout2d(p)(x)
    local per_channel = y:eq(0):sum({ 3, 4 }) -- 0 or 12 zeros in each channel
    assert.are.equal(0, (per_channel:eq(0) + per_channel:eq(12)):eq(0):sum():item())
    local dropped = per_channel:eq(12):sum():item()
    local n = 200 * 50
    assert.is_true(math.abs(dropped - n * p) < 5 * math.sqrt(n * p * (1 - p)))
    assert.is_true(max_abs_diff(y, x * y:ne(0) / (1 - p)) < 1e-14)
    local y3 = nn.Dropout2d(0.5)(lg.ones(6, 2, 2, F64)) -- (C, H, W)
    assert.are.equal(0, (y3:sum({ 2, 3 }):eq(0) + y3:sum({ 2, 3 }):eq(8)):eq(0):sum():item())
  end)

  it("is the identity in eval mode; prints and checks like Dropout", function()
    local d = nn.Dropout2d(0.4)
    d:eval()
    local x = lg.randn(2, 3, 4, 4)
    assert.are.equal(0, max_abs_diff(d(x), x))
    assert.are.equal("Dropout2d(p=0.4)", tostring(d))
    assert.are.equal("Dropout2d: p must be a probability between 0 and 1, got 2", message_of(nn.Dropout2d, 2))
    assert.are.equal("Dropout2d: expected 3-d (C, H, W) or 4-d (N, C, H, W) input, got shape {2,3}",
      message_of(nn.Dropout2d(), lg.randn(2, 3)))
  end)
end)

describe("nn.ModuleList", function()
  it("holds modules as children \"0\", \"1\", ... with 1-based indexing, #, ipairs", function()
    local a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    local ml = nn.ModuleList({ a, b, c })
    assert.are.equal(3, #ml)
    assert.are.equal(a, ml[1])
    assert.are.equal(c, ml[-1])
    assert.is_nil(ml[4])
    local seen = {}
    for i, m in ipairs(ml) do seen[i] = m end
    assert.are.same({ a, b, c }, seen)
    assert.are.same({ "0.bias", "0.weight", "2.bias", "2.weight" }, sorted_keys(ml:state_dict()))
    assert.are.equal(4, #ml:parameters())
    ml:eval()
    assert.is_false(a.training)
    assert.are.equal("ModuleList(\n  (0): Linear(in_features=2, out_features=3, bias=true)\n  (1): ReLU()\n" ..
      "  (2): Linear(in_features=3, out_features=1, bias=true)\n)", tostring(ml))
    assert.are.equal(0, #nn.ModuleList())
  end)

  it("append, extend, insert, pop and assignment keep the names in order", function()
    local m = {}
    for i = 1, 5 do m[i] = nn.Linear(i, 1) end
    local ml = nn.ModuleList():append(m[1]):extend({ m[2], m[3] })
    ml:insert(1, m[4]) -- 4 1 2 3
    ml:insert(-1, m[5]) -- 4 1 2 5 3
    local function order()
      local out = {}
      for i, x in ipairs(ml) do out[i] = x.in_features end
      return out
    end
    assert.are.same({ 4, 1, 2, 5, 3 }, order())
    local names = {}
    for name in ml:named_children() do names[#names + 1] = name end
    assert.are.same({ "0", "1", "2", "3", "4" }, names)
    assert.are.equal(m[1], ml:pop(2))
    assert.are.equal(m[3], ml:pop())
    assert.are.same({ 4, 2, 5 }, order())
    ml[2] = m[1]
    assert.are.same({ 4, 1, 5 }, order())
    ml:insert(4, m[3])
    assert.are.same({ 4, 1, 5, 3 }, order())
    local other = nn.ModuleList({ nn.Tanh() }):extend(ml)
    assert.are.equal(5, #other)
    assert.are.same({ "1.bias", "1.weight", "2.bias", "2.weight", "3.bias", "3.weight", "4.bias", "4.weight" },
      sorted_keys(other:state_dict()))
  end)

  it("registered in a module gives PyTorch's state-dict keys", function()
    local Net = nn.Module:extend("Net")
    function Net:init()
      self.convs = nn.ModuleList({ nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, { bias = false }) })
      self.norms = nn.ModuleDict({ first = nn.BatchNorm2d(2) })
    end
    function Net:forward(x)
      x = self.norms.first(self.convs[1](x))
      return self.convs[2](x)
    end
    local net = Net()
    assert.are.same({ "convs.0.bias", "convs.0.weight", "convs.1.weight", "norms.first.bias",
      "norms.first.num_batches_tracked", "norms.first.running_mean", "norms.first.running_var", "norms.first.weight" },
      sorted_keys(net:state_dict()))
    assert.are.same({ 2, 2, 4, 4 }, net(lg.randn(2, 1, 8, 8)).shape)
  end)

  it("checks its arguments", function()
    assert.are.equal("ModuleList.extend: element 2 is not a module (got number)", message_of(nn.ModuleList, { nn.ReLU(), 3 }))
    assert.are.equal("ModuleList.append: expected a module, got string", message_of(nn.ModuleList().append,
      nn.ModuleList(), "x"))
    local ml = nn.ModuleList({ nn.ReLU() })
    assert.are.equal("ModuleList.insert: index must be an integer from 1 to 2 (or negative), got 3",
      message_of(ml.insert, ml, 3, nn.ReLU()))
    assert.are.equal("ModuleList.pop: index 2 is out of range for 1 modules", message_of(ml.pop, ml, 2))
    assert.are.equal("ModuleList: index 3 is out of range for 1 modules", message_of(function() ml[3] = nn.ReLU() end))
    assert.are.equal("ModuleList: element 1 must be a module, got number", message_of(function() ml[1] = 5 end))
    assert.matches("^ModuleList: forward is not implemented", message_of(ml, lg.ones(1)))
  end)
end)

describe("nn.ModuleDict", function()
  it("holds modules by name: md[name], #, keys, values, items; a table's names in sorted order", function()
    local conv, act = nn.Conv2d(1, 2, 3), nn.ReLU()
    local md = nn.ModuleDict({ conv = conv, act = act })
    assert.are.equal(conv, md.conv)
    assert.are.equal(act, md["act"])
    assert.are.equal(2, #md)
    assert.are.same({ "act", "conv" }, md:keys())
    assert.are.same({ act, conv }, md:values())
    local seen = {}
    for name, m in md:items() do seen[#seen + 1] = { name, m } end
    assert.are.same({ { "act", act }, { "conv", conv } }, seen)
    assert.are.same({ "conv.bias", "conv.weight" }, sorted_keys(md:state_dict()))
    assert.are.equal("ModuleDict(\n  (act): ReLU()\n  (conv): Conv2d(1, 2, kernel_size={3,3}, stride={1,1})\n)",
      tostring(md))
  end)

  it("keeps insertion order: pairs lists, update, assignment, pop, clear", function()
    local a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    local md = nn.ModuleDict({ { "z", a }, { "y", b } })
    assert.are.same({ "z", "y" }, md:keys())
    md:update({ x = c, z = b }) -- z is replaced in place, x added at the end
    assert.are.same({ "z", "y", "x" }, md:keys())
    assert.are.equal(b, md.z)
    md.w = a
    assert.are.same({ "z", "y", "x", "w" }, md:keys())
    assert.are.equal(c, md:pop("x"))
    assert.is_nil(md:pop("x"))
    assert.are.same({ "z", "y", "w" }, md:keys())
    local copy = nn.ModuleDict(md)
    assert.are.same({ "z", "y", "w" }, copy:keys())
    md:clear()
    assert.are.equal(0, #md)
    assert.are.same({}, md:keys())
  end)

  it("checks names and values as PyTorch does", function()
    assert.are.equal("ModuleDict: key 'keys' is already the name of a field or method of ModuleDict",
      message_of(nn.ModuleDict, { keys = nn.ReLU() }))
    assert.are.equal("ModuleDict: key 'training' is already the name of a field or method of ModuleDict",
      message_of(nn.ModuleDict, { training = nn.ReLU() }))
    assert.are.equal("ModuleDict: a key must be a non-empty string without '.', got a.b",
      message_of(nn.ModuleDict, { ["a.b"] = nn.ReLU() }))
    assert.are.equal("ModuleDict: 'act' must be a module, got number", message_of(nn.ModuleDict, { act = 1 }))
    assert.are.equal("ModuleDict.update: element 1 must be a {name, module} pair",
      message_of(nn.ModuleDict, { { "a" } }))
    assert.are.equal("ModuleDict.update: expected a table of modules or a ModuleDict, got a ModuleList",
      message_of(nn.ModuleDict, nn.ModuleList()))
  end)
end)

describe("a small CNN", function()
  local function cnn()
    return nn.Sequential(
      nn.Conv2d(1, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(4, 8, 3, { bias = false }), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.1),
      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
  end

  it("has PyTorch's state-dict keys and shapes, and round-trips through lg.save and lg.load", function()
    local m = cnn()
    local sd = m:state_dict()
    assert.are.same({ "0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var",
      "1.weight", "10.bias", "10.weight", "4.weight", "5.bias", "5.num_batches_tracked", "5.running_mean",
      "5.running_var", "5.weight" }, sorted_keys(sd))
    assert.are.same({ 4, 1, 3, 3 }, sd["0.weight"].shape)
    assert.are.same({ 8, 4, 3, 3 }, sd["4.weight"].shape)
    assert.are.same({}, sd["5.num_batches_tracked"].shape)
    local dir = os.tmpname()
    os.remove(dir)
    local path = dir .. ".safetensors"
    lg.save(path, sd)
    local other = cnn()
    other:load_state_dict(lg.load(path))
    os.remove(path)
    m:eval()
    other:eval()
    local x = lg.randn(2, 1, 8, 8)
    assert.are.equal(0, max_abs_diff(m(x), other(x)))
  end)

  it("learns: a few SGD steps lower the loss on a fixed batch", function()
    lg.manual_seed(21)
    local m = cnn()
    local x, y = lg.randn(16, 1, 8, 8), lg.randint(1, 4, { 16 })
    local opt = lg.optim.SGD(m:parameters(), { lr = 0.1, momentum = 0.9 })
    local first, last
    for step = 1, 30 do
      opt:zero_grad()
      local loss = F.cross_entropy(m(x), y)
      loss:backward()
      opt:step()
      if step == 1 then first = loss:item() end
      last = loss:item()
    end
    assert.is_true(last < 0.5 * first, string.format("loss %g -> %g", first, last))
  end)
end)
