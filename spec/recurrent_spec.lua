-- The recurrent layers (lua/luagrad/nn/recurrent.lua): RNN, LSTM, GRU and their cells.
--
--   * spec/golden/breadth.json's LSTM, GRU and RNN cases (PyTorch 1.13, float64): from the given
--     state dict, the output y and the gradients of sum(y * upstream) for x and every parameter,
--     to 1e-9 relative; the state-dict keys are PyTorch's;
--   * gradcheck in float64 on small sizes for every module and cell (through input, initial
--     state and every parameter), forward mode (jvp) against reverse mode, and double backward;
--   * the layouts agree with each other: unbatched with a batch of one, batch_first with
--     time-major, h_n with the output's last step, a cell with one step of its layer, the
--     reverse direction with the forward one run on the flipped sequence;
--   * PyTorch's init bounds, errors that name the layer.
local lg = require "luagrad"
local nn = lg.nn
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"

local REL, ABS = 1e-9, 1e-15
local T, P = golden.T, golden.P
local F64 = { dtype = "float64" }

local function assert_golden(got, want, what) golden.assert_close(got, want, what, REL, ABS) end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function assert_near(a, b, what, tol)
  tol = tol or 1e-12
  assert.are.same(a.shape, b.shape, what .. ": shape")
  local err = (a - b):abs():max():item()
  assert.is_true(err <= tol, string.format("%s: max difference %.3g", what, err))
end

describe("recurrent golden values: breadth.json", function()
  local doc = golden.load("breadth.json")
  local found = 0
  for ci, case in ipairs(doc.cases) do
    if case.fn == "LSTM" or case.fn == "GRU" or case.fn == "RNN" then
      found = found + 1
      local o = case.options
      local label = string.format("case %d: %s(%d, %d, num_layers=%d, batch_first=%s)", ci, case.fn, o.input_size,
        o.hidden_size, o.num_layers, tostring(o.batch_first))
      it(label .. ": output, dx and every parameter's gradient", function()
        local m = nn[case.fn](o.input_size, o.hidden_size, { num_layers = o.num_layers, batch_first = o.batch_first,
          dtype = "float64" })
        assert.are.same(sorted_keys(case.state_dict), sorted_keys(m:state_dict()), "state-dict keys")
        local sd = {}
        for k, v in pairs(case.state_dict) do sd[k] = T(v) end
        m:load_state_dict(sd)
        local x = P(case.x)
        local y = m(x)
        assert_golden(y, case.y, label .. ": y")
        local loss = (y * T(case.upstream)):sum()
        loss:backward()
        assert_golden(x.grad, case.dx, label .. ": dx")
        for _, k in ipairs(sorted_keys(case.dparams)) do
          assert_golden(m[k].grad, case.dparams[k], label .. ": d" .. k)
        end
      end)
    end
  end

  it("holds the three recurrent cases", function() assert.are.equal(3, found) end)
end)

describe("recurrent parameters", function()
  it("are named and ordered as PyTorch registers them", function()
    local names = {}
    for name in nn.LSTM(3, 4, { num_layers = 2, bidirectional = true, proj_size = 2 }):named_parameters() do
      names[#names + 1] = name
    end
    local want = {}
    for k = 0, 1 do
      for _, sfx in ipairs({ "", "_reverse" }) do
        for _, p in ipairs({ "weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr" }) do
          want[#want + 1] = string.format("%s_l%d%s", p, k, sfx)
        end
      end
    end
    assert.are.same(want, names)
    local cell = {}
    for name in nn.GRUCell(3, 4):named_parameters() do cell[#cell + 1] = name end
    assert.are.same({ "weight_ih", "weight_hh", "bias_ih", "bias_hh" }, cell)
    local nobias = {}
    for name in nn.RNN(3, 4, { bias = false }):named_parameters() do nobias[#nobias + 1] = name end
    assert.are.same({ "weight_ih_l0", "weight_hh_l0" }, nobias)
  end)

  it("have PyTorch's shapes", function()
    local m = nn.LSTM(3, 4, { num_layers = 2, bidirectional = true, proj_size = 2 })
    assert.are.same({ 16, 3 }, m.weight_ih_l0.shape)
    assert.are.same({ 16, 2 }, m.weight_hh_l0.shape)
    assert.are.same({ 16 }, m.bias_ih_l0_reverse.shape)
    assert.are.same({ 2, 4 }, m.weight_hr_l0.shape)
    assert.are.same({ 16, 4 }, m.weight_ih_l1.shape) -- 2 directions of proj_size 2
    local g = nn.GRU(3, 5)
    assert.are.same({ 15, 3 }, g.weight_ih_l0.shape)
    assert.are.same({ 15, 5 }, g.weight_hh_l0.shape)
    assert.are.same({ 5, 3 }, nn.RNNCell(3, 5).weight_ih.shape)
    assert.are.same({ 20, 5 }, nn.LSTMCell(3, 5).weight_hh.shape)
  end)

  it("start in U(-1/sqrt(hidden), 1/sqrt(hidden)) and cover it", function()
    lg.manual_seed(7)
    for _, m in ipairs({ nn.LSTM(8, 16, { num_layers = 2 }), nn.GRUCell(8, 16) }) do
      local bound = 1 / math.sqrt(16)
      for _, p in ipairs(m:parameters()) do
        assert.is_true(p:abs():max():item() <= bound)
        assert.is_true(p:abs():max():item() > 0.9 * bound)
      end
    end
  end)

  it("follow the dtype option, and print as PyTorch's", function()
    assert.are.equal("float64", nn.GRU(2, 3, { dtype = "float64" }).weight_hh_l0.dtype)
    assert.are.equal("2, 3, num_layers=2, batch_first=true", nn.LSTM(2, 3, { num_layers = 2, batch_first = true }):extra_repr())
    assert.are.equal('RNN(2, 3, nonlinearity="relu", bias=false)',
      tostring(nn.RNN(2, 3, { nonlinearity = "relu", bias = false })))
    assert.are.equal("GRUCell(2, 3)", tostring(nn.GRUCell(2, 3)))
  end)
end)

-- ---- gradients: gradcheck through the input, the initial state and every parameter ----------

-- f(x, state..., params...) over m's parameters, in named_parameters order, through m:_run
local function through(m, nstate)
  local names = {}
  for name in m:named_parameters() do names[#names + 1] = name end
  local function f(...)
    local args = table.pack(...)
    local hx
    if nstate == 1 then hx = args[2] elseif nstate == 2 then hx = { args[2], args[3] } end
    local Pt = {}
    for i, name in ipairs(names) do Pt[name] = args[1 + nstate + i] end
    local y, h = m:_run(args[1], hx, Pt)
    local outs = { y }
    if lg.is_tensor(h) then
      outs[2] = h
    elseif type(h) == "table" then
      outs[2], outs[3] = h[1], h[2]
    end
    return outs
  end
  local inputs = {}
  for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p:detach():clone():requires_grad_(true) end
  return f, inputs
end

local function leaf(...) return lg.randn({ ... }, { dtype = "float64", requires_grad = true }) end

local MODULE_CASES = {
  { "RNN tanh, 2 layers", function() return nn.RNN(2, 3, { num_layers = 2, dtype = "float64" }) end, 1 },
  { "RNN relu, batch_first", function()
    return nn.RNN(2, 3, { nonlinearity = "relu", batch_first = true, dtype = "float64" })
  end, 1 },
  { "LSTM, 2 layers", function() return nn.LSTM(2, 3, { num_layers = 2, dtype = "float64" }) end, 2 },
  { "LSTM, bidirectional, proj_size", function()
    return nn.LSTM(2, 3, { bidirectional = true, proj_size = 2, dtype = "float64" })
  end, 2 },
  { "GRU, 2 layers, bidirectional", function()
    return nn.GRU(2, 2, { num_layers = 2, bidirectional = true, dtype = "float64" })
  end, 1 },
  { "GRU without bias", function() return nn.GRU(2, 3, { bias = false, dtype = "float64" }) end, 1 },
}

describe("recurrent gradcheck (float64)", function()
  for _, c in ipairs(MODULE_CASES) do
    it(c[1] .. ": input, initial state and every parameter", function()
      lg.manual_seed(1)
      local m, nstate = c[2](), c[3]
      local f, params = through(m, nstate)
      local L = m.num_layers * (m.bidirectional and 2 or 1)
      local out = m.proj_size > 0 and m.proj_size or m.hidden_size
      local x = m.batch_first and leaf(2, 3, 2) or leaf(3, 2, 2)
      local inputs = { x, leaf(L, 2, out) }
      if nstate == 2 then inputs[3] = leaf(L, 2, m.hidden_size) end
      for _, p in ipairs(params) do inputs[#inputs + 1] = p end
      assert.is_true(lg.autograd.gradcheck(f, inputs))
    end)
  end

  for _, c in ipairs({
    { "RNNCell", function() return nn.RNNCell(3, 2, { dtype = "float64" }) end, 1 },
    { "RNNCell relu", function() return nn.RNNCell(3, 2, { nonlinearity = "relu", dtype = "float64" }) end, 1 },
    { "LSTMCell", function() return nn.LSTMCell(3, 2, { dtype = "float64" }) end, 2 },
    { "GRUCell", function() return nn.GRUCell(3, 2, { dtype = "float64" }) end, 1 },
  }) do
    it(c[1] .. ": input, state and every parameter", function()
      lg.manual_seed(2)
      local m, nstate = c[2](), c[3]
      local f, params = through(m, nstate)
      local inputs = { leaf(2, 3), leaf(2, 2) }
      if nstate == 2 then inputs[3] = leaf(2, 2) end
      for _, p in ipairs(params) do inputs[#inputs + 1] = p end
      local function g(...)
        local outs = f(...)
        return type(outs[1]) == "table" and outs[1] or outs
      end
      assert.is_true(lg.autograd.gradcheck(g, inputs))
    end)
  end

  for _, name in ipairs({ "LSTM", "GRU", "RNN" }) do
    it(name .. ": double backward (gradcheck of the input gradient built with create_graph)", function()
      lg.manual_seed(3)
      local m = nn[name](2, 2, { num_layers = 2, dtype = "float64" })
      local u = lg.randn(3, 2, 2, F64)
      local function dx(x)
        -- gradcheck's finite differences call this under no_grad with a plain x: take the
        -- gradient anyway (the values are what is compared there)
        if not x.requires_grad then x = x:detach():requires_grad_(true) end
        return lg.autograd.with_grad_mode(true, function()
          local y = m(x)
          return lg.autograd.grad((y * u):sum(), { x }, { create_graph = true })[1]
        end)
      end
      assert.is_true(lg.autograd.gradcheck(dx, { leaf(3, 2, 2) }))
    end)

    it(name .. ": forward mode agrees with reverse mode (<u, J t> = <J^T u, t>)", function()
      lg.manual_seed(4)
      local m = nn[name](2, 3, { num_layers = 2, bidirectional = true, dtype = "float64" })
      local x, t = lg.randn(4, 2, 2, F64), lg.randn(4, 2, 2, F64)
      local function f(a) return (m(a)) end
      local y, jt = lg.autograd.jvp(f, x, t)
      local u = lg.randn(y.shape, F64)
      local _, vj = lg.autograd.vjp(f, x, u)
      local lhs, rhs = (u * jt):sum():item(), (vj * t):sum():item()
      assert.is_true(math.abs(lhs - rhs) <= 1e-10 * math.max(1, math.abs(lhs)), lhs .. " vs " .. rhs)
      assert_near(y, m(x), name .. ": jvp's primal output")
    end)
  end
end)

-- ---- layouts agree ----------------------------------------------------------------------------

describe("recurrent layouts", function()
  lg.manual_seed(5)

  it("batch_first gives the time-major results transposed", function()
    local tm = nn.GRU(3, 4, { num_layers = 2, bidirectional = true, dtype = "float64" })
    local bf = nn.GRU(3, 4, { num_layers = 2, bidirectional = true, batch_first = true, dtype = "float64" })
    bf:load_state_dict(tm:state_dict())
    local x, h0 = lg.randn(5, 2, 3, F64), lg.randn(4, 2, 4, F64)
    local y1, h1 = tm(x, h0)
    local y2, h2 = bf(x:transpose(1, 2), h0)
    assert_near(y1:transpose(1, 2), y2, "output")
    assert_near(h1, h2, "h_n (never batch-first)")
  end)

  it("an unbatched sequence is a batch of one", function()
    local m = nn.LSTM(3, 4, { num_layers = 2, dtype = "float64" })
    local x, h0, c0 = lg.randn(5, 3, F64), lg.randn(2, 4, F64), lg.randn(2, 4, F64)
    local y, hc = m(x, { h0, c0 })
    local yb, hcb = m(x:unsqueeze(2), { h0:unsqueeze(2), c0:unsqueeze(2) })
    assert.are.same({ 5, 4 }, y.shape)
    assert_near(y, yb:squeeze(2), "output")
    assert_near(hc[1], hcb[1]:squeeze(2), "h_n")
    assert_near(hc[2], hcb[2]:squeeze(2), "c_n")
  end)

  it("h_n holds each layer's last step; the top layer's is the output's", function()
    for _, name in ipairs({ "RNN", "LSTM", "GRU" }) do
      local m = nn[name](3, 4, { num_layers = 3, dtype = "float64" })
      local y, h = m(lg.randn(6, 2, 3, F64))
      if name == "LSTM" then h = h[1] end
      assert.are.same({ 3, 2, 4 }, h.shape)
      assert_near(h[3], y[6], name .. ": h_n[top]")
    end
  end)

  it("a cell is one step of a one-layer module with the same weights", function()
    for _, name in ipairs({ "RNN", "LSTM", "GRU" }) do
      local m = nn[name](3, 4, { dtype = "float64" })
      local cell = nn[name .. "Cell"](3, 4, { dtype = "float64" })
      cell:load_state_dict({ weight_ih = m.weight_ih_l0, weight_hh = m.weight_hh_l0, bias_ih = m.bias_ih_l0,
        bias_hh = m.bias_hh_l0 })
      local x = lg.randn(2, 2, 3, F64)
      local y, h = m(x)
      local s = nil
      for t = 1, 2 do
        s = cell(x[t], s)
        local ht = name == "LSTM" and s[1] or s
        assert_near(ht, y[t], name .. "Cell, step " .. t)
      end
      if name == "LSTM" then assert_near(s[2], h[2][1], "LSTMCell's c after two steps") end
      -- unbatched: (in) and (H)
      local one = cell(x[1][1])
      assert.are.same({ 4 }, (name == "LSTM" and one[1] or one).shape)
    end
  end)

  it("the reverse direction is the forward one run on the flipped sequence", function()
    local bi = nn.GRU(3, 4, { bidirectional = true, dtype = "float64" })
    local fw, bw = nn.GRU(3, 4, { dtype = "float64" }), nn.GRU(3, 4, { dtype = "float64" })
    local sd = bi:state_dict()
    fw:load_state_dict({ weight_ih_l0 = sd.weight_ih_l0, weight_hh_l0 = sd.weight_hh_l0, bias_ih_l0 = sd.bias_ih_l0,
      bias_hh_l0 = sd.bias_hh_l0 })
    bw:load_state_dict({ weight_ih_l0 = sd.weight_ih_l0_reverse, weight_hh_l0 = sd.weight_hh_l0_reverse,
      bias_ih_l0 = sd.bias_ih_l0_reverse, bias_hh_l0 = sd.bias_hh_l0_reverse })
    local x = lg.randn(5, 2, 3, F64)
    local flip = lg.tensor({ 5, 4, 3, 2, 1 }, { dtype = "int64" })
    local y, h = bi(x)
    local yf, hf = fw(x)
    local yb, hb = bw(x:index_select(1, flip))
    assert.are.same({ 5, 2, 8 }, y.shape)
    assert_near(y:narrow(3, 1, 4), yf, "forward half")
    assert_near(y:narrow(3, 5, 4), yb:index_select(1, flip), "reverse half")
    assert_near(h[1], hf[1], "h_n forward")
    assert_near(h[2], hb[1], "h_n reverse")
  end)

  it("a projected LSTM returns proj_size features and a full-size cell state", function()
    local m = nn.LSTM(3, 5, { proj_size = 2, num_layers = 2, batch_first = true })
    local y, hc = m(lg.randn(4, 6, 3))
    assert.are.same({ 4, 6, 2 }, y.shape)
    assert.are.same({ 2, 4, 2 }, hc[1].shape)
    assert.are.same({ 2, 4, 5 }, hc[2].shape)
  end)

  it("dropout acts between layers in training only", function()
    local m = nn.RNN(3, 4, { num_layers = 2, dropout = 1, dtype = "float64" })
    local x = lg.randn(3, 2, 3, F64)
    local y = m(x) -- the second layer sees zeros: its output is the same for any x
    assert_near(y, m(lg.randn(3, 2, 3, F64)), "dropout 1 in training")
    m:eval()
    local m0 = nn.RNN(3, 4, { num_layers = 2, dtype = "float64" })
    m0:load_state_dict(m:state_dict())
    assert_near(m(x), m0(x), "eval ignores dropout")
  end)

  it("trains: a few SGD steps lower the loss of an LSTM", function()
    lg.manual_seed(9)
    local m = nn.LSTM(2, 8, { batch_first = true })
    local head = nn.Linear(8, 1)
    local x = lg.randn(16, 5, 2)
    local target = x:sum(2):narrow(2, 1, 1) -- (16, 1): the sum of the first feature over time
    local params = m:parameters()
    for _, p in ipairs(head:parameters()) do params[#params + 1] = p end
    local opt = lg.optim.Adam(params, { lr = 0.02 })
    local first, last
    for step = 1, 60 do
      opt:zero_grad()
      local _, hc = m(x)
      local loss = nn.functional.mse_loss(head(hc[1][1]), target)
      loss:backward()
      opt:step()
      if step == 1 then first = loss:item() end
      last = loss:item()
    end
    assert.is_true(last < 0.3 * first, first .. " -> " .. last)
  end)
end)

-- ---- errors ---------------------------------------------------------------------------------

describe("recurrent errors", function()
  local function raises(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find(pattern), tostring(err))
  end

  it("name the layer and what is wrong", function()
    raises("LSTM: expected input with 3 features", nn.LSTM(3, 4), lg.randn(5, 2, 2))
    raises("GRU: expected input of 2 %(unbatched", nn.GRU(3, 4), lg.randn(3))
    raises("RNN: expected h0 of shape {2,2,4}, got {1,2,4}", nn.RNN(3, 4, { num_layers = 2 }), lg.randn(5, 2, 3),
      lg.zeros(1, 2, 4))
    raises("LSTM: the initial state must be a table {h0, c0}", nn.LSTM(3, 4), lg.randn(5, 2, 3), lg.zeros(1, 2, 4))
    raises("LSTM: the initial state {h0, c0} needs both", nn.LSTM(3, 4), lg.randn(5, 2, 3), { lg.zeros(1, 2, 4) })
    raises("LSTM: expected c0 of shape {1,4}", nn.LSTM(3, 4), lg.randn(5, 3), { lg.zeros(1, 4), lg.zeros(1, 2, 4) })
    raises("GRU: input is float64 but the parameters are float32", nn.GRU(3, 4), lg.randn(5, 2, 3, F64))
    raises("RNN: expected a sequence of at least one step", nn.RNN(3, 4), lg.zeros(0, 2, 3))
    raises("LSTMCell: the state must be a table {h, c}", nn.LSTMCell(3, 4), lg.randn(2, 3), lg.zeros(2, 4))
    raises("GRUCell: expected h of shape {2,4}", nn.GRUCell(3, 4), lg.randn(2, 3), lg.zeros(4))
    raises("RNNCell: expected input with 3 features", nn.RNNCell(3, 4), lg.randn(2, 2))
  end)

  it("reject bad constructor arguments and unknown options", function()
    raises("RNN: nonlinearity must be", nn.RNN, 3, 4, { nonlinearity = "sigmoid" })
    raises("GRU: hidden_size must be an integer >= 1", nn.GRU, 3, 0)
    raises("LSTM: num_layers must be an integer >= 1", nn.LSTM, 3, 4, { num_layers = 0 })
    raises("LSTM: dropout must be a probability", nn.LSTM, 3, 4, { dropout = 2 })
    raises("LSTM: proj_size %(4%) must be smaller than hidden_size %(4%)", nn.LSTM, 3, 4, { proj_size = 4 })
    raises("GRU", nn.GRU, 3, 4, { proj_size = 2 })
    raises("LSTM", nn.LSTM, 3, 4, { nonlinearity = "relu" })
    raises("RNN", nn.RNN, 3, 4, { num_layer = 2 })
    raises("RNNCell: nonlinearity must be", nn.RNNCell, 3, 4, { nonlinearity = 1 })
    raises("LSTMCell", nn.LSTMCell, 3, 4, { nonlinearity = "relu" })
    raises("GRU: batch_first must be a boolean", nn.GRU, 3, 4, { batch_first = 1 })
    raises("LSTMCell: hidden_size 4611686018427387904 is too large", nn.LSTMCell, 3, 1 << 62) -- 4 * 2^62 wraps to 0
    raises("^[^\n]*GRU: invalid shape", nn.GRU, 3, math.maxinteger // 4)
  end)
end)
