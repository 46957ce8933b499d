-- Reproduces spec/golden/autodiff.json and spec/golden/activations.json (PyTorch 1.13,
-- float64, CPU) to 1e-9 relative: |got - want| <= 1e-9 * max(1, |want|).
--
-- Dimensions: the golden expressions name dimensions 1-based ("max(X,dim2)" is the max over the
-- last dimension of a 2-d X, PyTorch's dim=1), which is luagrad's numbering as it stands.
local lg = require "luagrad"
local ag = lg.autograd
package.path = "spec/?.lua;" .. package.path
local golden = require "helpers.golden"

local TOL = 1e-9 -- relative, with an absolute floor of the same size: 1e-9 * max(1, |want|)
local F64 = golden.F64
local load, flatten, T, P = golden.load, golden.flatten, golden.T, golden.P

-- got: tensor or number; want: nested list or number. Checks the dtype, shape and every element.
local function assert_golden(got, want, what) golden.assert_close(got, want, what, TOL, TOL) end

describe("golden autodiff.json", function()
  local doc = load("autodiff.json")
  local cases = {}
  for _, c in ipairs(doc.cases) do cases[c.name] = c end

  it("has the five cases this spec reproduces", function()
    local names = {}
    for _, c in ipairs(doc.cases) do names[#names + 1] = c.name end
    table.sort(names)
    assert.are.same({ "broadcast_mix", "matmul", "reductions", "rosenbrock_second_order", "tanh_affine_jvp_vjp" }, names)
  end)

  describe("broadcast_mix: sum(sin(a*b) + exp(a)/(1+b^2) - sqrt(abs(a-b)))", function()
    local c = cases.broadcast_mix
    local function f(a, b)
      return ((a * b):sin() + a:exp() / (1 + b ^ 2) - (a - b):abs():sqrt()):sum()
    end
    it("value and gradients (a (3,1), b (1,4), summed back to their shapes)", function()
      local a, b = P(c.a), P(c.b)
      local y = f(a, b)
      assert_golden(y:item(), c.value, "value")
      y:backward()
      assert_golden(a.grad, c.da, "da")
      assert_golden(b.grad, c.db, "db")
    end)
    it("the same through autograd.grad and vjp", function()
      local a, b = P(c.a), P(c.b)
      local g = ag.grad(f(a, b), { a, b })
      assert_golden(g[1], c.da, "grad da")
      assert_golden(g[2], c.db, "grad db")
      local y, gs = ag.vjp(f, { T(c.a), T(c.b) })
      assert_golden(y:item(), c.value, "vjp value")
      assert_golden(gs[1], c.da, "vjp da")
      assert_golden(gs[2], c.db, "vjp db")
    end)
    it("forward mode: jvp with one-hot tangents gives the gradient elements", function()
      -- d f / d a[i] by a jvp per element of a, with b's tangent zero (and vice versa)
      local a, b = T(c.a), T(c.b)
      local da = flatten(c.da)
      for i = 1, a:numel() do
        local ta = lg.zeros_like(a)
        ta:_set_flat(i, 1)
        local _, t = ag.jvp(f, { a, b }, { ta, lg.zeros_like(b) })
        assert_golden(t:item(), da[i], "jvp da[" .. i .. "]")
      end
      local db = flatten(c.db)
      for i = 1, b:numel() do
        local tb = lg.zeros_like(b)
        tb:_set_flat(i, 1)
        local _, t = ag.jvp(f, { a, b }, { lg.zeros_like(a), tb })
        assert_golden(t:item(), db[i], "jvp db[" .. i .. "]")
      end
    end)
  end)

  describe("matmul: A @ B with upstream G", function()
    local c = cases.matmul
    it("backward(G) gives dA = G B^T and dB = A^T G", function()
      local A, B = P(c.A), P(c.B)
      local Y = A:matmul(B)
      Y:backward(T(c.G))
      assert_golden(A.grad, c.dA, "dA")
      assert_golden(B.grad, c.dB, "dB")
    end)
    it("the same through autograd.grad with grad_outputs", function()
      local A, B = P(c.A), P(c.B)
      local g = ag.grad(lg.matmul(A, B), { A, B }, { grad_outputs = { T(c.G) } })
      assert_golden(g[1], c.dA, "dA")
      assert_golden(g[2], c.dB, "dB")
    end)
    it("on transposed views of A and B", function()
      local At = T(c.A):t():contiguous():requires_grad_(true) -- (3,4) storage
      local Bt = T(c.B):t():contiguous():requires_grad_(true)
      local Y = At:t():matmul(Bt:t())
      Y:backward(T(c.G))
      assert_golden(At.grad:t(), c.dA, "dA (through t)")
      assert_golden(Bt.grad:t(), c.dB, "dB (through t)")
    end)
  end)

  describe("reductions", function()
    local c = cases.reductions
    -- sum(max(X,dim2)) + sum(mean(X,dim1)^2) + sum(var(X,dim2,unbiased)) + sum(logsumexp(X,dim2))
    local function f(X)
      local m = X:max(2)
      return m:sum() + (X:mean(1) ^ 2):sum() + X:var(2, false, { unbiased = true }):sum() + X:logsumexp(2):sum()
    end
    it("value and dX", function()
      local X = P(c.X)
      local y = f(X)
      assert_golden(y:item(), c.value, "value")
      y:backward()
      assert_golden(X.grad, c.dX, "dX")
    end)
    it("dX in forward mode (jacobian of the scalar, column by column)", function()
      local J = ag.jacobian(f, T(c.X), { mode = "forward" })
      assert_golden(J, c.dX, "forward-mode dX")
    end)
  end)

  describe("rosenbrock_second_order", function()
    local c = cases.rosenbrock_second_order
    -- sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, i = 1..n-1
    local function f(x)
      local n = x:size(1)
      local lo, hi = x:narrow(1, 1, n - 1), x:narrow(1, 2, n - 1)
      return (100 * (hi - lo ^ 2) ^ 2 + (1 - lo) ^ 2):sum()
    end
    it("value and gradient", function()
      local x = P(c.x)
      local y = f(x)
      assert_golden(y:item(), c.value, "value")
      y:backward()
      assert_golden(x.grad, c.grad, "grad")
    end)
    it("Hessian-vector product (hvp)", function()
      local y, hv = ag.hvp(f, T(c.x), T(c.v))
      assert_golden(y:item(), c.value, "hvp value")
      assert_golden(hv, c.hvp, "hvp")
    end)
    it("Hessian-vector product by hand: grad of <grad f, v> with create_graph", function()
      local x = P(c.x)
      local g = ag.grad(f(x), x, { create_graph = true })[1]
      assert_golden(g:detach(), c.grad, "first gradient")
      local hv = ag.grad((g * T(c.v)):sum(), x)[1]
      assert_golden(hv, c.hvp, "hvp by hand")
    end)
    it("full Hessian", function()
      assert_golden(ag.hessian(f, T(c.x)), c.hessian, "hessian")
    end)
    it("Hessian as the forward-mode Jacobian of the gradient", function()
      local function gradf(x)
        local xl = x.requires_grad and x or x:detach():requires_grad_(true)
        return lg.enable_grad(function() return ag.grad(f(xl), xl, { create_graph = true })[1] end)
      end
      -- reverse over reverse, one row at a time
      assert_golden(ag.jacobian(gradf, T(c.x), { mode = "reverse" }), c.hessian, "jacobian of the gradient")
    end)
  end)

  describe("tanh_affine_jvp_vjp: f(x) = tanh(W @ x + b)", function()
    local c = cases.tanh_affine_jvp_vjp
    local W, b = T(c.W), T(c.b)
    local function f(x) return (W:matmul(x) + b):tanh() end
    it("jvp (forward mode)", function()
      local y, t = ag.jvp(f, T(c.x), T(c.tangent))
      assert_golden(y, c.y, "y")
      assert_golden(t, c.jvp, "jvp")
    end)
    it("jvp with lists of primals and tangents", function()
      local ys, ts = ag.jvp(function(x) return { f(x) } end, { T(c.x) }, { T(c.tangent) })
      assert_golden(ys[1], c.y, "y")
      assert_golden(ts[1], c.jvp, "jvp")
    end)
    it("vjp (reverse mode)", function()
      local y, g = ag.vjp(f, T(c.x), T(c.cotangent))
      assert_golden(y, c.y, "y")
      assert_golden(g, c.vjp, "vjp")
    end)
    it("jacobian in reverse mode", function()
      assert_golden(ag.jacobian(f, T(c.x), { mode = "reverse" }), c.jacobian, "reverse jacobian")
    end)
    it("jacobian in forward mode", function()
      assert_golden(ag.jacobian(f, T(c.x), { mode = "forward" }), c.jacobian, "forward jacobian")
    end)
    it("jacobian with respect to W and b (the parameters)", function()
      -- d y_i / d b_j = (1 - y_i^2) delta_ij, with y from the golden file
      local Jb = ag.jacobian(function(bb) return (W:matmul(T(c.x)) + bb):tanh() end, b, { mode = "forward" })
      local want = {}
      for i = 1, 3 do
        want[i] = {}
        for j = 1, 3 do want[i][j] = i == j and (1 - c.y[i] ^ 2) or 0 end
      end
      assert_golden(Jb, want, "jacobian wrt b")
    end)
  end)
end)

describe("golden activations.json", function()
  local doc = load("activations.json")
  local FN = {
    relu = function(x) return x:relu() end,
    sigmoid = function(x) return x:sigmoid() end,
    tanh = function(x) return x:tanh() end,
    gelu = function(x) return x:gelu() end,
    gelu_tanh = function(x) return x:gelu({ approximate = "tanh" }) end,
    leaky_relu = function(x) return x:leaky_relu() end,
    elu = function(x) return x:elu() end,
    softplus = function(x) return x:softplus() end,
    silu = function(x) return x:silu() end,
    exp = function(x) return x:exp() end,
    sin = function(x) return x:sin() end,
    abs = function(x) return x:abs() end,
    softmax_dim2 = function(x) return x:softmax(2) end,
    log_softmax_dim2 = function(x) return x:log_softmax(2) end,
  }

  it("names only functions this spec knows (every case is reproduced)", function()
    local n = 0
    for _, c in ipairs(doc.cases) do
      assert.is_function(FN[c.fn], "no luagrad form for golden fn " .. c.fn)
      n = n + 1
    end
    assert.are.equal(14, n)
  end)

  for _, c in ipairs(doc.cases) do
    local fn = FN[c.fn]
    describe(c.fn, function()
      if c.weights then
        -- the scalar is sum(y * weights), y = fn(x) along dim 2
        local function L(x) return (fn(x) * T(c.weights)):sum() end
        it("values", function() assert_golden(fn(T(c.x)), c.y, "y") end)
        it("gradient of sum(y * weights) by backward", function()
          local x = P(c.x)
          L(x):backward()
          assert_golden(x.grad, c.d_sum_y_times_weights_dx, "dx")
        end)
        it("the same gradient in forward mode", function()
          assert_golden(ag.jacobian(L, T(c.x), { mode = "forward" }), c.d_sum_y_times_weights_dx, "forward dx")
        end)
        it("the same gradient through vjp with the weights as cotangent", function()
          local _, g = ag.vjp(fn, T(c.x), T(c.weights))
          assert_golden(g, c.d_sum_y_times_weights_dx, "vjp dx")
        end)
      else
        it("values", function() assert_golden(fn(T(c.x)), c.y, "y") end)
        it("dy/dx = gradient of sum(fn(x)) by backward", function()
          local x = P(c.x)
          fn(x):sum():backward()
          assert_golden(x.grad, c.dy_dx, "dy_dx")
        end)
        it("dy/dx in forward mode (jvp with a tangent of ones; the Jacobian is diagonal)", function()
          local y, t = ag.jvp(fn, T(c.x), lg.ones(#c.x, F64))
          assert_golden(y, c.y, "jvp y")
          assert_golden(t, c.dy_dx, "jvp dy_dx")
        end)
      end
    end)
  end
end)
