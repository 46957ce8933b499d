-- Reproduces spec/golden/normalization.json, spec/golden/losses.json and the loss and GroupNorm
-- cases of spec/golden/breadth.json (PyTorch 1.13, float64, CPU): every case, every value, to 1e-8
-- relative (breadth.json to 1e-9) (|got - want| <= 1e-8 |want|, with
-- an absolute floor of 1e-14 for entries that are zero up to rounding).
--
-- BatchNorm1d: three training passes (y = bn(x), backward with upstream dy; outputs, input /
-- weight / bias gradients and the running statistics after each pass), then one eval pass.
-- LayerNorm: forward and backward. Losses: the value and the input gradient, through both the
-- functional form and the module form. Targets in the files are zero-based: add 1.
local lg = require "luagrad"
local nn = lg.nn
local F = nn.functional
local json = require "dkjson"
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"

local REL, ABS = 1e-8, 1e-14
local load, shape_of, T, P = golden.load, golden.shape_of, golden.T, golden.P

local function labels(zero_based)
  local t = {}
  for i, v in ipairs(zero_based) do t[i] = v + 1 end
  return lg.tensor(t, { dtype = "int64" })
end

-- got: tensor or number; want: nested list or number. Checks the dtype, shape and every element.
local function assert_golden(got, want, what) golden.assert_close(got, want, what, REL, ABS) end

local function copy_into(t, nested) lg.no_grad(function() t:copy_(T(nested)) end) end

describe("nn golden values: normalization.json", function()
  local doc = load("normalization.json")

  it("has the expected cases", function()
    assert.are.equal(3, #doc.cases)
  end)

  for ci, case in ipairs(doc.cases) do
    if case.module == "BatchNorm1d" then
      local label = string.format("case %d: BatchNorm1d(%d) on shape {%s}", ci, case.num_features,
        table.concat(shape_of(case.train_steps[1].x), ","))
      it(label .. ": three training passes, then eval", function()
        local momentum = case.momentum
        if momentum == nil or momentum == json.null then momentum = false end
        local bn = nn.BatchNorm1d(case.num_features, { eps = case.eps, momentum = momentum, dtype = "float64" })
        copy_into(bn.weight, case.weight)
        copy_into(bn.bias, case.bias)
        for si, step in ipairs(case.train_steps) do
          local what = string.format("%s, pass %d", label, si)
          local x = P(step.x)
          local y = bn(x)
          y:backward(T(step.dy))
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
        local x = P(case.eval.x)
        local y = bn(x)
        y:backward(T(case.eval.dy))
        assert_golden(y, case.eval.y, label .. ", eval: y")
        assert_golden(x.grad, case.eval.dx, label .. ", eval: dx")
        assert.are.equal(#case.train_steps, bn.num_batches_tracked:item(), "eval does not count batches")
      end)
    elseif case.module == "LayerNorm" then
      it(string.format("case %d: LayerNorm({%s}) forward and backward", ci, table.concat(case.normalized_shape, ",")),
        function()
          local ln = nn.LayerNorm(case.normalized_shape, { eps = case.eps, dtype = "float64" })
          copy_into(ln.weight, case.weight)
          copy_into(ln.bias, case.bias)
          local x = P(case.x)
          local y = ln(x)
          y:backward(T(case.dy))
          assert_golden(y, case.y, "LayerNorm: y")
          assert_golden(x.grad, case.dx, "LayerNorm: dx")
          assert_golden(ln.weight.grad, case.dweight, "LayerNorm: dweight")
          assert_golden(ln.bias.grad, case.dbias, "LayerNorm: dbias")
        end)
    else
      error("normalization.json: unknown module " .. tostring(case.module))
    end
  end
end)

describe("nn golden values: losses.json", function()
  local doc = load("losses.json")

  it("has the expected cases", function()
    assert.are.equal(8, #doc.cases)
  end)

  -- Each case as a functional call and as a module call: loss(input, case) -> scalar tensor.
  local forms = {
    cross_entropy = {
      functional = function(x, c)
        return F.cross_entropy(x, labels(c.target_zero_based), { reduction = c.reduction, label_smoothing = c.label_smoothing })
      end,
      module = function(x, c)
        local m = nn.CrossEntropyLoss({ reduction = c.reduction, label_smoothing = c.label_smoothing })
        return m(x, labels(c.target_zero_based))
      end,
    },
    mse = {
      functional = function(x, c) return F.mse_loss(x, T(c.target), { reduction = c.reduction }) end,
      module = function(x, c) return nn.MSELoss({ reduction = c.reduction })(x, T(c.target)) end,
    },
    binary_cross_entropy_with_logits = {
      functional = function(x, c) return F.binary_cross_entropy_with_logits(x, T(c.target), { reduction = c.reduction }) end,
      module = function(x, c) return nn.BCEWithLogitsLoss({ reduction = c.reduction })(x, T(c.target)) end,
    },
    nll_of_log_softmax = {
      functional = function(x, c)
        return F.nll_loss(F.log_softmax(x, 2), labels(c.target_zero_based), { reduction = c.reduction })
      end,
      module = function(x, c)
        local m = nn.Sequential(nn.LogSoftmax(2))
        return nn.NLLLoss({ reduction = c.reduction })(m(x), labels(c.target_zero_based))
      end,
    },
  }

  for ci, case in ipairs(doc.cases) do
    for _, form in ipairs({ "functional", "module" }) do
      local label = string.format("case %d: %s (%s, reduction %s%s), %s form", ci, case.loss,
        table.concat(shape_of(case.input), "x"), case.reduction,
        case.label_smoothing and string.format(", label_smoothing %g", case.label_smoothing) or "", form)
      it(label .. ": value and input gradient", function()
        local f = assert(forms[case.loss], "unknown loss " .. tostring(case.loss))[form]
        local x = P(case.input)
        local loss = f(x, case)
        assert.are.same({}, loss.shape)
        loss:backward()
        assert_golden(loss:item(), case.value, label .. ": value")
        assert_golden(x.grad, case.dinput, label .. ": dinput")
      end)
    end
  end

  -- The class-probability form of cross_entropy, fed one-hot targets, must agree with the
  -- label form on the same cases (PyTorch's smoothing of probability targets matches it).
  for ci, case in ipairs(doc.cases) do
    if case.loss == "cross_entropy" then
      it(string.format("case %d: cross_entropy with one-hot probability targets matches", ci), function()
        local C = #case.input[1]
        local probs = {}
        for i, k in ipairs(case.target_zero_based) do
          probs[i] = {}
          for j = 1, C do probs[i][j] = (j == k + 1) and 1 or 0 end
        end
        local x = P(case.input)
        local loss = F.cross_entropy(x, T(probs), { reduction = case.reduction, label_smoothing = case.label_smoothing })
        loss:backward()
        assert_golden(loss:item(), case.value, "probability targets: value")
        assert_golden(x.grad, case.dinput, "probability targets: dinput")
      end)
    end
  end
end)

-- breadth.json: the loss cases and GroupNorm (the LSTM, GRU and RNN cases belong to the
-- recurrent layers, still to come, and are only counted here). To 1e-9 relative.
describe("nn golden values: breadth.json (losses, GroupNorm)", function()
  local doc = load("breadth.json")
  local function assert9(got, want, what) golden.assert_close(got, want, what, 1e-9, 1e-15) end

  it("has the expected cases", function()
    local names = {}
    for i, c in ipairs(doc.cases) do names[i] = c.fn end
    assert.are.same({ "LSTM", "GRU", "RNN", "group_norm", "l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
      "binary_cross_entropy", "kl_div" }, names)
  end)

  -- fn -> the module class of the same loss; the case's options go to both forms
  local MODULE = { l1_loss = "L1Loss", smooth_l1_loss = "SmoothL1Loss", huber_loss = "HuberLoss", mse_loss = "MSELoss",
    binary_cross_entropy = "BCELoss", kl_div = "KLDivLoss" }

  local function opts_of(c)
    local o = {}
    for k, v in pairs(c.options) do o[k] = v end
    return o
  end

  for ci, c in ipairs(doc.cases) do
    if MODULE[c.fn] then
      for _, form in ipairs({ "functional", "module" }) do
        local label = string.format("case %d: %s %s, %s form", ci, c.fn, json.encode(c.options), form)
        it(label .. ": value and input gradient", function()
          local x = P(c.input)
          local loss
          if form == "functional" then
            loss = F[c.fn](x, T(c.target), opts_of(c))
          else
            loss = nn[MODULE[c.fn]](opts_of(c))(x, T(c.target))
          end
          assert.are.same({}, loss.shape)
          loss:backward()
          assert9(loss:item(), c.value, label .. ": value")
          assert9(x.grad, c.dinput, label .. ": dinput")
        end)
      end
    elseif c.fn == "group_norm" then
      local label = string.format("case %d: group_norm %s on {%s}", ci, json.encode(c.options),
        table.concat(shape_of(c.x), ","))
      it(label .. ", functional form: output and the gradients of x, weight and bias", function()
        local x, w, b = P(c.x), P(c.weight), P(c.bias)
        local y = F.group_norm(x, c.options.num_groups, { weight = w, bias = b, eps = c.options.eps })
        y:backward(T(c.upstream))
        assert9(y, c.y, label .. ": y")
        assert9(x.grad, c.dx, label .. ": dx")
        assert9(w.grad, c.dweight, label .. ": dweight")
        assert9(b.grad, c.dbias, label .. ": dbias")
      end)
      it(label .. ", module form", function()
        local C = #c.weight
        local gn = nn.GroupNorm(c.options.num_groups, C, { eps = c.options.eps, dtype = "float64" })
        copy_into(gn.weight, c.weight)
        copy_into(gn.bias, c.bias)
        local x = P(c.x)
        local y = gn(x)
        y:backward(T(c.upstream))
        assert9(y, c.y, label .. ": y")
        assert9(x.grad, c.dx, label .. ": dx")
        assert9(gn.weight.grad, c.dweight, label .. ": dweight")
        assert9(gn.bias.grad, c.dbias, label .. ": dbias")
      end)
    end
  end
end)
