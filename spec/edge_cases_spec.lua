-- Edge cases that once gave wrong answers, touched freed memory or raised internal errors, each
-- reproduced exactly: zero-size operands, in-place writes under autograd, forward mode through
-- broadcasting and views, the functional autograd helpers, dimension arguments, creation
-- functions, singular points of derivatives, overflowing sizes, float-to-int conversions, hooks
-- that re-enter the tape, and checks on what a script assigns. PyTorch 1.13's answer is the
-- expected value unless a comment says otherwise.
local lg = require "luagrad"
package.path = "spec/?.lua;" .. package.path
local util = require "helpers.util"
local F = lg.nn.functional
local ag = lg.autograd

local F64 = { dtype = "float64" }
local P64 = { dtype = "float64", requires_grad = true }

local function list(t) return t:detach():contiguous():tolist() end

describe("zero-size operands", function()
  it("F.linear with no input features gives the bias, and zeros for the input gradient", function()
    local y = F.linear(lg.zeros({ 2, 0 }, F64), lg.zeros({ 3, 0 }, F64), lg.tensor({ 1, 2, 3 }, F64))
    assert.are.same({ { 1, 2, 3 }, { 1, 2, 3 } }, list(y))
  end)

  it("F.linear with no output features gives a zero input gradient, also with create_graph", function()
    local x = lg.randn({ 2, 3 }, P64)
    F.linear(x, lg.zeros({ 0, 3 }, F64)):sum():backward()
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, list(x.grad))
    local g = ag.grad(F.linear(x, lg.zeros({ 0, 3 }, F64)):sum(), { x }, { create_graph = true })[1]
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, list(g))
  end)

  it("matmul with an empty inner dimension is zeros; an empty weight gradient is zeros", function()
    local a, b = lg.zeros({ 3, 0 }, P64), lg.zeros({ 0, 2 }, P64)
    local y = a:matmul(b)
    assert.are.same({ { 0, 0 }, { 0, 0 }, { 0, 0 } }, list(y))
    local w = lg.randn({ 4, 5 }, P64)
    F.linear(lg.zeros({ 0, 5 }, F64), w):sum():backward()
    assert.are.equal(0, w.grad:abs():sum():item())
  end)
end)

describe("in-place writes under autograd", function()
  it("a buffer that does not require grad records add_ of one that does", function()
    local x = lg.tensor({ 1, 2 }, { requires_grad = true })
    local w = lg.tensor({ 3, 4 })
    local buf = lg.zeros(2)
    buf:add_(x)
    assert.is_true(buf.requires_grad)
    assert.are.equal("add", buf:grad_fn())
    ;(buf * w):sum():backward()
    assert.are.same({ 3, 4 }, list(x.grad))
  end)

  it("sub_, mul_, div_ and copy_ record too, with gradients equal to the out-of-place forms", function()
    local function inplace(x)
      local b = lg.ones(2, F64)
      b:sub_(x)
      b:mul_(x)
      b:div_(x * x + 1)
      local c = lg.zeros(2, F64)
      c:copy_(b)
      return (c * c):sum()
    end
    local function outplace(x) local b = (1 - x) * x / (x * x + 1) return (b * b):sum() end
    local x = lg.tensor({ 0.3, -1.2 }, P64)
    local g1 = ag.grad(inplace(x), { x })[1]
    local g2 = ag.grad(outplace(x), { x })[1]
    assert.is_true((g1 - g2):abs():max():item() < 1e-14)
    assert.is_true(ag.gradcheck(inplace, { x }))
  end)

  it("a write through a view reaches the gradient, and the base's other views follow it", function()
    local x = lg.tensor({ 1, 2 }, P64)
    local buf = lg.zeros({ 2, 2 }, F64)
    local row2 = buf[2]
    buf[1]:add_(x) -- through a view
    buf:narrow(1, 2, 1):copy_((x * 10):unsqueeze(1))
    ;(row2 * lg.tensor({ 1, 1 }, F64) + buf[1] * 3):sum():backward()
    assert.are.same({ 13, 13 }, list(x.grad))
  end)

  it("a parameter (a leaf that requires grad) is refused, and so is a view of it", function()
    local p = lg.ones(2, { requires_grad = true })
    assert.matches("add_: cannot modify a leaf tensor that requires grad", util.error_of(function() p:add_(1) end))
    assert.matches("index assignment: cannot write in place through a view of a leaf",
      util.error_of(function() p[1] = 3 end))
    lg.no_grad(function() p:add_(1) end)
    assert.are.same({ 2, 2 }, list(p))
  end)

  it("an op that saved the overwritten value raises at backward", function()
    local x = lg.tensor({ 1, 2 }, P64)
    local y = x * 3
    local z = y * y
    y:add_(1)
    assert.matches("modified in place", util.error_of(function() z:sum():backward() end))
  end)
end)

describe("forward mode", function()
  it("layer_norm with a tangent on the bias alone", function()
    local x, w, b = lg.randn({ 2, 3 }, F64), lg.ones(3, F64), lg.zeros(3, F64)
    local tb = lg.tensor({ 1, 2, 3 }, F64)
    local _, t = ag.jvp(function(bb) return F.layer_norm(x, 3, { weight = w, bias = bb }) end, { b }, { tb })
    assert.are.same({ { 1, 2, 3 }, { 1, 2, 3 } }, list(t))
  end)

  it("(a + b):view(8) with a tangent only on the broadcast b", function()
    local a, b = lg.randn(2, 4), lg.randn(4)
    local _, t = ag.jvp(function(bb) return (a + bb):view(8) end, { b }, { lg.ones(4) })
    assert.are.same({ 1, 1, 1, 1, 1, 1, 1, 1 }, list(t))
  end)
end)
