-- Autograd semantics: accumulation, broadcasting, requires_grad, leaves and non-leaves, detach,
-- grad modes, hooks, retain_graph, in-place safety, gradients of gradients, forward mode,
-- gradcheck's failure report, anomaly detection and the memory of a long training loop.
local lg = require "luagrad"
local ag = lg.autograd
local ref = require "spec.helpers.ref"
local util = require "spec.helpers.util"

local F64 = { dtype = "float64" }
local function T(x) return lg.tensor(x, F64) end
local function P(x) return lg.tensor(x, { dtype = "float64", requires_grad = true }) end

local function assert_close(got, want, what, tol)
  ref.assert_close(got, want, tol or 1e-12, tol or 1e-12, what)
end

local error_of = util.error_of

describe("autograd semantics", function()
  describe("accumulation", function()
    it("two backward calls add into the leaf's .grad", function()
      local x = P({ 1, 2, 3 })
      local loss = (x * x):sum()
      loss:backward()
      assert_close(x.grad, { 2, 4, 6 }, "after one backward")
      local loss2 = (x * x * x):sum()
      loss2:backward()
      assert_close(x.grad, { 2 + 3, 4 + 12, 6 + 27 }, "after two (2x + 3x^2)")
      x.grad = nil
      assert.is_nil(x.grad)
      x:exp():sum():backward()
      assert_close(x.grad, { math.exp(1), math.exp(2), math.exp(3) }, "after clearing .grad")
    end)

    it("fan-out: a tensor used twice gets the sum of both paths", function()
      local x = P({ 0.5, -1.5 })
      local y = x:sin()
      local loss = ((y * 3) + y:exp()):sum()
      loss:backward()
      local want = {}
      for i, v in ipairs({ 0.5, -1.5 }) do want[i] = math.cos(v) * (3 + math.exp(math.sin(v))) end
      assert_close(x.grad, want, "d/dx (3 sin x + exp(sin x))")
    end)
  end)

  describe("broadcasting", function()
    it("gradients are summed back to each input's shape", function()
      local a = P({ { 1 }, { 2 }, { 3 } }) -- (3,1)
      local b = P({ 10, 20, 30, 40 }) -- (4,)
      local c = P(2) -- 0-d
      local y = (a * b + c) -- (3,4)
      assert.are.same({ 3, 4 }, y.shape)
      local loss = (y * T({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10, 11, 12 } })):sum()
      loss:backward()
      -- da[i] = sum_j w[i][j] b[j]; db[j] = sum_i w[i][j] a[i]; dc = sum w
      assert.are.same({ 3, 1 }, a.grad.shape)
      assert_close(a.grad, { { 10 + 40 + 90 + 160 }, { 50 + 120 + 210 + 320 }, { 90 + 200 + 330 + 480 } }, "da")
      assert.are.same({ 4 }, b.grad.shape)
      assert_close(b.grad, { 1 + 10 + 27, 2 + 12 + 30, 3 + 14 + 33, 4 + 16 + 36 }, "db")
      assert.are.same({}, c.grad.shape)
      assert_close(c.grad, 78, "dc")
    end)

    it("numbers on either side broadcast and carry no gradient", function()
      local x = P({ { 1, 2 }, { 3, 4 } })
      local loss = ((1 - x) * 2 + x / 4 - 2 ^ x):sum()
      loss:backward()
      local want = {}
      for i, row in ipairs({ { 1, 2 }, { 3, 4 } }) do
        want[i] = {}
        for j, v in ipairs(row) do want[i][j] = -2 + 0.25 - math.log(2) * 2 ^ v end
      end
      assert_close(x.grad, want, "d/dx", 1e-12)
    end)
  end)

  describe("requires_grad", function()
    it("on creation, as a settable field, and through requires_grad_", function()
      local a = lg.tensor({ 1, 2 }, { dtype = "float64", requires_grad = true })
      assert.is_true(a.requires_grad)
      local b = T({ 1, 2 })
      assert.is_false(b.requires_grad)
      b.requires_grad = true
      assert.is_true(b.requires_grad)
      local c = T({ 3, 4 })
      assert.are.equal(c, c:requires_grad_(true))
      assert.is_true(c.requires_grad)
      c:requires_grad_(false)
      assert.is_false(c.requires_grad)
      local y = (a * b):sum()
      assert.is_true(y.requires_grad)
      y:backward()
      assert_close(a.grad, { 1, 2 }, "a.grad")
      assert_close(b.grad, { 1, 2 }, "b.grad")
      -- a result of tensors that do not require grad does not require grad
      assert.is_false((c * 2).requires_grad)
    end)

    it("only inputs that require grad receive a gradient", function()
      local a, b = P({ 1, 2 }), T({ 3, 4 })
      local loss = (a * b):sum()
      loss:backward()
      assert_close(a.grad, { 3, 4 }, "a.grad")
      assert.is_nil(b.grad)
    end)

    it("an int64 tensor cannot require grad", function()
      local e = error_of(function() lg.tensor({ 1, 2 }, { dtype = "int64" }):requires_grad_(true) end)
      assert.matches("int64", e)
    end)
  end)

  describe("leaves and non-leaves", function()
    it("a non-leaf has a grad_fn and no .grad unless retain_grad", function()
      local x = P({ 1, 2, 3 })
      assert.is_true(x.is_leaf)
      assert.is_nil(x:grad_fn())
      local h = x * 2
      local r = h:exp()
      assert.is_false(h.is_leaf)
      assert.are.equal("mul", h:grad_fn())
      assert.are.equal("exp", r:grad_fn())
      r:retain_grad()
      r:sum():backward()
      assert.is_nil(h.grad)
      assert_close(r.grad, { 1, 1, 1 }, "retained grad of r")
      assert_close(x.grad, { 2 * math.exp(2), 2 * math.exp(4), 2 * math.exp(6) }, "x.grad", 1e-12)
    end)

    it("retain_grad on an intermediate gives its gradient", function()
      local x = P({ 1, -2 })
      local h = x * x
      h:retain_grad()
      local loss = (h * T({ 5, 7 })):sum()
      loss:backward()
      assert_close(h.grad, { 5, 7 }, "h.grad")
      assert_close(x.grad, { 10, -28 }, "x.grad")
    end)
  end)

  describe("detach", function()
    it("stops gradients and shares values", function()
      local x = P({ 1, 2 })
      local d = x:detach()
      assert.is_false(d.requires_grad)
      assert.is_true(d.is_leaf)
      assert.are.same({ 1, 2 }, d:tolist())
      local y = (x * d * d):sum() -- d is a constant: dy/dx = d^2
      y:backward()
      assert_close(x.grad, { 1, 4 }, "gradient through detach")
      local z = (x * 3):detach()
      assert.is_nil(z:grad_fn())
      assert.is_false(z.requires_grad)
    end)
  end)

  describe("grad modes", function()
    it("no_grad records nothing and returns fn's results", function()
      local x = P({ 1, 2 })
      local a, b, c = lg.no_grad(function(u, k)
        assert.is_false(lg.is_grad_enabled())
        return u * k, u:exp(), "third"
      end, x, 3)
      assert.are.same({ 3, 6 }, a:tolist())
      assert.is_false(a.requires_grad)
      assert.is_nil(a:grad_fn())
      assert.is_false(b.requires_grad)
      assert.are.equal("third", c)
      assert.is_true(lg.is_grad_enabled())
    end)

    it("no_grad restores the mode when fn raises", function()
      local ok, e = pcall(lg.no_grad, function() error("inside no_grad") end)
      assert.is_false(ok)
      assert.matches("inside no_grad", tostring(e))
      assert.is_true(lg.is_grad_enabled())
    end)

    it("set_grad_enabled(false) records nothing until switched back", function()
      local x = P({ 1, 2 })
      lg.set_grad_enabled(false)
      local ok, y = pcall(function() return x * 2 end)
      local enabled = lg.is_grad_enabled()
      lg.set_grad_enabled(true)
      assert.is_true(ok)
      assert.is_false(enabled)
      assert.is_false(y.requires_grad)
      assert.is_nil(y:grad_fn())
      assert.is_true(lg.is_grad_enabled())
      local z = x * 2
      assert.is_true(z.requires_grad)
      assert.are.equal("mul", z:grad_fn())
    end)
  end)

  describe("hooks", function()
    it("a hook is called with the gradient", function()
      local x = P({ 1, 2, 3 })
      local h = x * x
      local seen
      h:register_hook(function(g) seen = g:tolist() end)
      local loss = (h * T({ 1, 10, 100 })):sum()
      loss:backward()
      assert.are.same({ 1, 10, 100 }, seen)
      assert_close(x.grad, { 2, 40, 600 }, "x.grad")
    end)

    it("a hook on a leaf sees the gradient before it is accumulated", function()
      local x = P({ 1, 2 })
      local seen
      x:register_hook(function(g) seen = g:tolist() end)
      local loss = (x * 4):sum()
      loss:backward()
      assert.are.same({ 4, 4 }, seen)
      assert_close(x.grad, { 4, 4 }, "x.grad")
    end)

    it("a returned tensor replaces the gradient", function()
      local x = P({ 1, 2 })
      local h = x:exp()
      h:register_hook(function(g) return g * 0 + T({ 3, -1 }) end)
      h:sum():backward()
      assert_close(x.grad, { 3 * math.exp(1), -math.exp(2) }, "x.grad with the replaced gradient")
    end)

    it("an error in a hook surfaces as a Lua error, and a fresh graph still works", function()
      local x = P({ 1, 2 })
      local h = x * 3
      h:register_hook(function() error("hook exploded on purpose") end)
      local e = error_of(function() h:sum():backward() end)
      assert.matches("hook exploded on purpose", e)
      x.grad = nil
      local y = (x * x):sum()
      y:backward()
      assert_close(x.grad, { 2, 4 }, "x.grad after the failed backward")
    end)

    it("handle:remove() stops the hook", function()
      local x = P({ 1, 2 })
      local calls = 0
      local handle = x:register_hook(function(g)
        calls = calls + 1
        return g * 10
      end)
      local loss = (x * 2):sum()
      loss:backward()
      assert.are.equal(1, calls)
      assert_close(x.grad, { 20, 20 }, "with the hook")
      handle:remove()
      x.grad = nil
      local loss2 = (x * 2):sum()
      loss2:backward()
      assert.are.equal(1, calls)
      assert_close(x.grad, { 2, 2 }, "after remove")
    end)
  end)

  describe("errors", function()
    it("a second backward without retain_graph raises, naming retain_graph", function()
      local x = P({ 1, 2 })
      local y = (x:exp() * x):sum()
      y:backward()
      local e = error_of(function() y:backward() end)
      assert.matches("retain_graph", e)
    end)

    it("retain_graph = true allows a second backward, which accumulates", function()
      local x = P({ 1, 2 })
      local y = (x:sin() * x):sum()
      y:backward(nil, { retain_graph = true })
      y:backward()
      local want = {}
      for i, v in ipairs({ 1, 2 }) do want[i] = 2 * (math.sin(v) + v * math.cos(v)) end
      assert_close(x.grad, want, "twice the gradient", 1e-12)
    end)

    it("backward of a non-scalar without a gradient raises; with one it works", function()
      local x = P({ 1, 2, 3 })
      local y = x * 2
      local e = error_of(function() y:backward() end)
      assert.matches("backward", e)
      assert.matches("one-element", e, nil, true)
      y:backward(T({ 1, 0.5, -1 }))
      assert_close(x.grad, { 2, 1, -2 }, "x.grad")
    end)

    it("in-place writes on a leaf that requires grad raise, and work inside no_grad", function()
      local x = P({ 1, 2, 3 })
      for name, fn in pairs({
        add_ = function() x:add_(1) end,
        fill_ = function() x:fill_(0) end,
        copy_ = function() x:copy_(T({ 7, 8, 9 })) end,
        ["t[i] = v"] = function() x[2] = 5 end,
        uniform_ = function() x:uniform_(0, 1) end,
        mul_ = function() x:mul_(2) end,
      }) do
        local e = error_of(fn)
        assert.matches("in place", e, nil, true, name)
        assert.matches("requires grad", e, nil, true, name)
      end
      assert.are.same({ 1, 2, 3 }, x:tolist())
      lg.no_grad(function()
        x:add_(1)
        x[1] = 10
        x:mul_(T({ 1, 2, 1 }))
      end)
      assert.are.same({ 10, 6, 4 }, x:tolist())
      assert.is_true(x.requires_grad)
      x:sum():backward()
      assert_close(x.grad, { 1, 1, 1 }, "x still a working leaf")
    end)

    it("the in-place error names the method that was called", function()
      -- API.md: an error message names the operation
      local x = P({ 1, 2, 3 })
      local wrong = {}
      for _, name in ipairs({ "add_", "sub_", "mul_", "div_", "fill_", "zero_", "copy_", "uniform_", "normal_", "clamp_" }) do
        local args = ({ add_ = { 1 }, sub_ = { 1 }, mul_ = { 2 }, div_ = { 2 }, fill_ = { 0 }, zero_ = {},
          copy_ = { T({ 7, 8, 9 }) }, uniform_ = { 0, 1 }, normal_ = { 0, 1 }, clamp_ = { 0, 1 } })[name]
        local e = error_of(function() x[name](x, table.unpack(args)) end)
        assert.matches("requires grad", e, nil, true)
        if not e:find(":%d+: " .. name .. ":") then wrong[#wrong + 1] = name .. " -> " .. e:match(":%d+: ([%w_]+):") end
      end
      assert.are.same({}, wrong, "methods whose in-place error names another op")
      assert.are.same({ 1, 2, 3 }, x:tolist())
    end)

    it("modifying a tensor an op saved makes backward raise 'modified in place'", function()
      -- a saved input that does not require grad
      local x = P({ 1, 2 })
      local a = T({ 3, 4 })
      local y = (x * a):sum() -- mul saves a
      a:add_(1)
      local e = error_of(function() y:backward() end)
      assert.matches("modified in place", e)
      -- a saved leaf modified inside no_grad
      local z = P({ 0.5, 1.5 })
      local s = z:sin():sum() -- sin saves z
      lg.no_grad(function() z:mul_(2) end)
      e = error_of(function() s:backward() end)
      assert.matches("modified in place", e)
      -- a saved output (exp saves its output)
      local w = P({ 1, 2 })
      local ew = w:exp()
      local q = (ew * 1):sum()
      lg.no_grad(function() ew:fill_(0) end)
      e = error_of(function() q:backward() end)
      assert.matches("modified in place", e)
    end)

    it("an in-place write that nothing saved does not break backward", function()
      local x = P({ 1, 2 })
      local a = T({ 3, 4 })
      local y = (x + a):sum() -- add saves nothing
      a:add_(1)
      y:backward()
      assert_close(x.grad, { 1, 1 }, "x.grad")
    end)
  end)

  describe("gradients of gradients", function()
    it("gradient penalty ||dL/dx||^2 of L = sum(w * sin(x)) differentiated again", function()
      -- g = w cos x; P = sum(w^2 cos^2 x); dP/dx = -2 w^2 cos x sin x
      local xs, ws = { 0.3, -1.2, 2.0 }, { 1.5, -0.5, 2.0 }
      local x, w = P(xs), T(ws)
      local L = (w * x:sin()):sum()
      local g = ag.grad(L, x, { create_graph = true })[1]
      assert.is_true(g.requires_grad)
      local pen = (g * g):sum()
      local want_pen, want = 0, {}
      for i = 1, 3 do
        want_pen = want_pen + (ws[i] * math.cos(xs[i])) ^ 2
        want[i] = -2 * ws[i] ^ 2 * math.cos(xs[i]) * math.sin(xs[i])
      end
      assert_close(pen:item(), want_pen, "penalty")
      pen:backward()
      assert_close(x.grad, want, "d penalty / dx")
    end)

    it("gradient penalty through a matrix: d/dx ||A^T A x||^2 = 2 (A^T A)^2 x, via backward(create_graph)", function()
      local A = T({ { 1, 2, 0 }, { -1, 0.5, 3 } })
      local x = P({ 0.5, -1, 2 })
      local L = 0.5 * ((A:matmul(x)) ^ 2):sum() -- dL/dx = A^T A x
      L:backward(nil, { create_graph = true })
      local g = x.grad
      assert.is_true(g.requires_grad)
      local M = A:t():matmul(A)
      assert_close(g:detach(), M:matmul(T({ 0.5, -1, 2 })), "first gradient", 1e-12)
      local pen = (g * g):sum()
      local d = ag.grad(pen, x)[1]
      assert_close(d, 2 * M:matmul(M:matmul(T({ 0.5, -1, 2 }))), "second-order gradient", 1e-12)
    end)

    it("hessian and hvp of 0.5 x^T A x give sym(A) and sym(A) v", function()
      local Am = { { 2, 1, 0 }, { 3, 4, -1 }, { 0.5, 2, 5 } }
      local A = T(Am)
      local f = function(x) return 0.5 * (x * A:matmul(x)):sum() end
      local S = {}
      for i = 1, 3 do
        S[i] = {}
        for j = 1, 3 do S[i][j] = 0.5 * (Am[i][j] + Am[j][i]) end
      end
      local x = T({ 1, -2, 0.5 })
      assert_close(ag.hessian(f, x), S, "hessian")
      local v = { 0.3, 1, -2 }
      local y, hv = ag.hvp(f, x, T(v))
      local want = {}
      for i = 1, 3 do
        want[i] = 0
        for j = 1, 3 do want[i] = want[i] + S[i][j] * v[j] end
      end
      assert_close(hv, want, "hvp")
      -- f(x) = 0.5 x^T A x
      local xs, fx = { 1, -2, 0.5 }, 0
      for i = 1, 3 do for j = 1, 3 do fx = fx + 0.5 * xs[i] * Am[i][j] * xs[j] end end
      assert_close(y:item(), fx, "f(x)")
    end)

    it("hessian and hvp are zero where the gradient is constant (linear f, relu)", function()
      -- PyTorch's autograd.functional.hessian/hvp return zeros here; the gradient does not depend on x
      local x, v = T({ 1, 2 }), T({ 1, -1 })
      local lin = function(u) return (u * 3):sum() end
      local ok, H = pcall(ag.hessian, lin, x)
      assert.is_true(ok, "hessian of a linear function: " .. tostring(H))
      assert_close(H, { { 0, 0 }, { 0, 0 } }, "hessian of 3 sum(x)")
      local ok2, y, hv = pcall(ag.hvp, lin, x, v)
      assert.is_true(ok2, "hvp of a linear function: " .. tostring(y))
      assert_close(y:item(), 9, "f(x)")
      assert_close(hv, { 0, 0 }, "hvp of 3 sum(x)")
      local ok3, H3 = pcall(ag.hessian, function(u) return u:relu():sum() end, x)
      assert.is_true(ok3, "hessian of sum(relu(x)): " .. tostring(H3))
      assert_close(H3, { { 0, 0 }, { 0, 0 } }, "hessian of sum(relu(x))")
    end)

    it("a rule under create_graph is itself differentiable: d^3/dx^3 sin = -cos", function()
      local x = P({ 0.7, -0.4 })
      local g1 = ag.grad(x:sin():sum(), x, { create_graph = true })[1]
      local g2 = ag.grad(g1:sum(), x, { create_graph = true })[1]
      local g3 = ag.grad(g2:sum(), x)[1]
      assert_close(g1:detach(), { math.cos(0.7), math.cos(-0.4) }, "first")
      assert_close(g2:detach(), { -math.sin(0.7), -math.sin(-0.4) }, "second")
      assert_close(g3, { -math.cos(0.7), -math.cos(-0.4) }, "third")
    end)
  end)

  describe("forward mode and vjp", function()
    local function f(x) return x:exp() * 2 end
    it("jvp with single tensors returns single tensors", function()
      local y, t = ag.jvp(f, T({ 0, 1 }), T({ 1, 3 }))
      assert.is_true(lg.is_tensor(y))
      assert_close(y, { 2, 2 * math.exp(1) }, "y")
      assert_close(t, { 2, 6 * math.exp(1) }, "J t")
    end)

    it("jvp with lists of primals and tangents returns lists", function()
      local g = function(a, b) return { a * b, a + b:sin() } end
      local ys, ts = ag.jvp(g, { T({ 1, 2 }), T({ 3, 0.5 }) }, { T({ 1, 0 }), T({ 0, 2 }) })
      assert.are.equal(2, #ys)
      assert_close(ys[1], { 3, 1 }, "a*b")
      assert_close(ys[2], { 1 + math.sin(3), 2 + math.sin(0.5) }, "a+sin b")
      -- d(a*b) = da*b + a*db; d(a + sin b) = da + cos b db
      assert_close(ts[1], { 3, 4 }, "tangent of a*b")
      assert_close(ts[2], { 1, 2 * math.cos(0.5) }, "tangent of a + sin b")
    end)

    it("jvp does not record on the tape and leaves the primals alone", function()
      local x = T({ 1, 2 })
      local y, t = ag.jvp(f, x, T({ 1, 1 }))
      assert.is_false(y.requires_grad)
      assert.is_false(t.requires_grad)
      assert.are.same({ 1, 2 }, x:tolist())
      -- a later ordinary op on x carries no tangent
      local _, t2 = ag.jvp(function(u) return u * 0 + x end, T({ 5, 5 }), T({ 1, 1 }))
      assert_close(t2, { 0, 0 }, "x has no tangent left over")
    end)

    it("vjp with single tensors", function()
      local y, g = ag.vjp(f, T({ 0, 1 }), T({ 1, -1 }))
      assert_close(y, { 2, 2 * math.exp(1) }, "y")
      assert_close(g, { 2, -2 * math.exp(1) }, "v^T J")
    end)

    it("vjp with lists, an unused primal giving zeros", function()
      local g = function(a, b, _) return { a * b, a:exp() } end
      local ys, gs = ag.vjp(g, { T({ 1, 2 }), T({ 3, 4 }), T({ 9, 9 }) }, { T({ 1, 1 }), T({ 2, 0 }) })
      assert.are.equal(2, #ys)
      assert_close(ys[1], { 3, 8 }, "a*b")
      assert.are.equal(3, #gs)
      assert_close(gs[1], { 3 + 2 * math.exp(1), 4 }, "d/da")
      assert_close(gs[2], { 1, 2 }, "d/db")
      assert_close(gs[3], { 0, 0 }, "d/dc (unused)")
    end)

    it("autograd.grad: unused inputs raise unless allow_unused, which gives nil", function()
      local a, b = P({ 1 }), P({ 2 })
      local e = error_of(function() ag.grad((a * 2):sum(), { a, b }) end)
      assert.matches("not used", e)
      local gs = ag.grad((a * 2):sum(), { a, b }, { allow_unused = true })
      assert_close(gs[1], { 2 }, "da")
      assert.is_nil(gs[2])
      assert.is_nil(a.grad) -- grad() does not accumulate into .grad
    end)
  end)

  describe("gradcheck", function()
    it("passes on a correct function", function()
      assert.is_true(ag.gradcheck(function(a, b) return (a * b):tanh() + a:exp() end,
        { P({ { 0.1, 0.2 }, { -0.3, 0.4 } }), P({ 1.5, -2 }) }))
    end)

    it("names input, element, analytic and numeric values when the backward is wrong", function()
      -- a hook doubles the gradient that flows through sin(x): the tape says 2 * 3 cos(x),
      -- finite differences say 3 cos(x)
      local f = function(a, x)
        local h = x:sin()
        if h.requires_grad then h:register_hook(function(g) return g * 2 end) end
        return a * 0 + h * 3
      end
      local xs = { { 0.5, 1.0, -0.25 }, { 0.75, 2.0, 0.1 } }
      local e = error_of(ag.gradcheck, f, { P({ 1 }), P(xs) })
      local i, el, oe, ana, num =
        e:match("gradcheck: input (%d+), element (%b{}), output element (%d+): analytic (%S+), numeric (%S+)")
      assert.is_not_nil(i, "unexpected message: " .. e)
      assert.are.equal("2", i)
      assert.are.equal("{1,1}", el)
      assert.are.equal("1", oe)
      ana, num = tonumber(ana), tonumber(num)
      assert.is_near(6 * math.cos(0.5), ana, 1e-8)
      assert.is_near(3 * math.cos(0.5), num, 1e-6)
    end)
  end)

  describe("anomaly detection", function()
    local function with_anomaly(fn)
      ag.detect_anomaly(true)
      local ok, e = pcall(fn)
      ag.detect_anomaly(false)
      return ok, e
    end

    it("detect_anomaly reports and sets the mode", function()
      assert.is_false(ag.detect_anomaly(false))
      assert.is_true(ag.detect_anomaly(true))
      assert.is_false(ag.detect_anomaly(false))
    end)

    -- Run in a child process: the op that raises leaves its Lua result slot pointing at the
    -- tensor it freed (a use-after-free when the slot is collected), which would take the
    -- whole busted run down with it. The child collects garbage and must still exit cleanly.
    it("log of a negative number (NaN in the forward pass) raises naming 'log' (child process)", function()
      local code = [[
local lg = require "luagrad"
lg.autograd.detect_anomaly(true)
local ok, e = pcall(function()
  local x = lg.tensor({ 1, -1 }, { dtype = "float64", requires_grad = true })
  return x:log()
end)
lg.autograd.detect_anomaly(false)
print("OK=" .. tostring(ok))
print("MSG=" .. tostring(e))
local y = lg.tensor({ 1, -1 }, { dtype = "float64", requires_grad = true }):log()
print(string.format("OFF=%g,%s", y[1], tostring(y[2] ~= y[2])))
collectgarbage()
collectgarbage()
print("GC done")
]]
      local out, ok = util.run(util.LUAGRAD .. " -e " .. util.shell_quote(code) .. " 2>&1")
      assert.matches("OK=false", out, nil, true)
      local msg = out:match("MSG=([^\n]*)")
      assert.is_not_nil(msg, out)
      assert.matches("'log'", msg, nil, true)
      assert.matches("NaN", msg, nil, true)
      -- off again: the same op just gives NaN
      assert.matches("OFF=0,true", out, nil, true)
      assert.matches("GC done", out, nil, true)
      assert.is_true(ok, "the child crashed after the anomaly error:\n" .. out)
    end)

    it("a backward producing Inf (sqrt at 0) raises naming 'sqrt'", function()
      local ok, e = with_anomaly(function()
        local x = P({ 0, 4 })
        local y = x:sqrt() -- forward is finite: 0, 2
        assert.are.same({ 0, 2 }, y:tolist())
        y:sum():backward()
      end)
      assert.is_false(ok)
      assert.matches("'sqrt'", tostring(e))
      assert.matches("backward", tostring(e))
      assert.is_false(ag.detect_anomaly(false))
      -- off: the same backward gives Inf without an error
      local x = P({ 0, 4 })
      x:sqrt():sum():backward()
      assert.are.equal(math.huge, x.grad[1])
      assert.are.equal(0.25, x.grad[2])
    end)

    it("finite computations pass with anomaly detection on", function()
      local ok, g = with_anomaly(function()
        local x = P({ 1, 2 })
        x:log():sum():backward()
        return x.grad:tolist()
      end)
      assert.is_true(ok, tostring(g))
      assert.are.same({ 1, 0.5 }, g)
    end)
  end)

  describe("memory", function()
    it("a 10,000-step training loop keeps a flat resident set (child process)", function()
      local code = [[
local lg = require "luagrad"
local function rss()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end
lg.manual_seed(1)
local X, Y = lg.randn({ 32, 8 }), lg.randn({ 32, 1 })
local W1 = (lg.randn({ 8, 16 }) * 0.3):requires_grad_(true)
local b1 = lg.zeros({ 16 }, { requires_grad = true })
local W2 = (lg.randn({ 16, 1 }) * 0.3):requires_grad_(true)
local b2 = lg.zeros({ 1 }, { requires_grad = true })
local params = { W1, b1, W2, b2 }
local first, last, r1000
for step = 1, 10000 do
  local h = (X:matmul(W1) + b1):relu()
  local loss = ((h:matmul(W2) + b2 - Y) ^ 2):mean()
  loss:backward()
  lg.no_grad(function()
    for _, p in ipairs(params) do
      p:sub_(p.grad * 0.01)
      p.grad = nil
    end
  end)
  if step == 1 then first = loss:item() end
  if step == 1000 then r1000 = rss() end
  last = loss:item()
end
print(string.format("RSS %d %d LOSS %.6f %.6f", r1000, rss(), first, last))
]]
      local t0 = os.time()
      -- under AddressSanitizer, its quarantine of freed blocks would fill during the run and
      -- look like growth: this measures our memory, so the child runs without it
      local asan = os.getenv("ASAN_OPTIONS")
      local env = asan and ("env ASAN_OPTIONS=" .. util.shell_quote(asan .. ":quarantine_size_mb=0") .. " ") or ""
      local out, ok = util.run(env .. util.LUAGRAD .. " -e " .. util.shell_quote(code) .. " 2>&1")
      assert.is_true(ok, "child failed: " .. out)
      local r1, r2, l1, l2 = out:match("RSS (%d+) (%d+) LOSS (%S+) (%S+)")
      assert.is_not_nil(r1, "unexpected child output: " .. out)
      r1, r2, l1, l2 = tonumber(r1), tonumber(r2), tonumber(l1), tonumber(l2)
      print(string.format("\n  memory: VmRSS after step 1000 = %.1f MB, after step 10000 = %.1f MB (growth %.2f MB); "
        .. "loss %.4f -> %.4f; %d s", r1 / 1024, r2 / 1024, (r2 - r1) / 1024, l1, l2, os.time() - t0))
      assert.is_true(r2 - r1 < 20 * 1024, string.format("VmRSS grew by %.1f MB", (r2 - r1) / 1024))
      assert.is_true(l2 < l1, "the loop should learn")
    end)
  end)
end)
