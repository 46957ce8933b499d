-- chain_rule.lua: the chain rule as an algorithm (chapter 1 of the reference text).
--
--   build/luagrad examples/chain_rule.lua [--quick] [--out DIR]
--
-- What it shows:
--   1. f(x, y) = sin(x*y) + exp(x)/y written as a computational graph of five nodes. For each
--      node: its forward value and its local derivatives. The backward pass done by hand
--      (adjoint = sum over children of upstream adjoint times local derivative), and
--      df/dx, df/dy as sums over paths through the graph, against the tape's backward():
--      equal to 1e-12 in float64.
--   2. The same on a sweep of x (a plot of f and df/dx, by hand and from the tape).
--   3. The multivariate chain rule as a product of Jacobians: for y = f(g(x)) with
--      g: R^3 -> R^4 and f: R^4 -> R^2, J_f(g(x)) J_g(x) equals the Jacobian of the
--      composition, computed by lg.autograd.jacobian in reverse and in forward mode.
-- It ends with one line "claim holds: ..." or raises an error with what was measured.
-- --quick uses a shorter sweep; --out DIR is where chain_rule.svg goes (default ".").
local lg = require "luagrad"

-- ---- options ----
local opts = lg.cli.options(arg, { quick = false, out = "." }, "chain_rule")
lg.manual_seed(1)
local f64 = { dtype = "float64" }
local TOL = 1e-12
local worst = 0 -- the largest |hand - tape| seen anywhere in this notebook
local function compare(a, b)
  local d = math.abs(a - b)
  if d > worst then worst = d end
  return d
end

-- ---- 1. the graph at one point ----
-- Nodes, in the order the forward pass computes them:
--   a = x * y       local derivatives  da/dx = y,        da/dy = x
--   b = sin(a)                         db/da = cos(a)
--   c = exp(x)                         dc/dx = exp(x)
--   d = c / y                          dd/dc = 1/y,      dd/dy = -c/y^2
--   f = b + d                          df/db = 1,        df/dd = 1
local x0, y0 = 0.7, 1.3
print(string.format("f(x, y) = sin(x*y) + exp(x)/y at x = %g, y = %g\n", x0, y0))

-- forward by hand, in plain Lua numbers
local a = x0 * y0
local b = math.sin(a)
local c = math.exp(x0)
local d = c / y0
local f = b + d

-- backward by hand: start from df/df = 1 and visit the nodes in reverse order; each node adds
-- (its adjoint) * (local derivative) into the adjoint of each of its inputs.
local fbar = 1
local bbar, dbar = fbar * 1, fbar * 1
local cbar = dbar * (1 / y0)
local ybar = dbar * (-c / y0 ^ 2)
local abar = bbar * math.cos(a)
local xbar = abar * y0 + cbar * math.exp(x0)
ybar = ybar + abar * x0

-- the same graph on the tape; retain_grad keeps the intermediate adjoints for the table
local X = lg.tensor(x0, { dtype = "float64", requires_grad = true })
local Y = lg.tensor(y0, { dtype = "float64", requires_grad = true })
local A = X * Y
local B = A:sin()
local C = X:exp()
local D = C / Y
local F = B + D
for _, t in ipairs({ A, B, C, D, F }) do t:retain_grad() end
F:backward()

print("node  op      forward value        local derivatives                    " ..
  "adjoint by hand       adjoint from tape     |diff|")
local rows = {
  { "x", "input", x0, "", xbar, X.grad:item() },
  { "y", "input", y0, "", ybar, Y.grad:item() },
  { "a", "x*y", a, string.format("da/dx = %.6f, da/dy = %.6f", y0, x0), abar, A.grad:item() },
  { "b", "sin a", b, string.format("db/da = %.6f", math.cos(a)), bbar, B.grad:item() },
  { "c", "exp x", c, string.format("dc/dx = %.6f", math.exp(x0)), cbar, C.grad:item() },
  { "d", "c/y", d, string.format("dd/dc = %.6f, dd/dy = %.6f", 1 / y0, -c / y0 ^ 2), dbar, D.grad:item() },
  { "f", "b+d", f, "df/db = 1, df/dd = 1", fbar, F.grad:item() },
}
for _, r in ipairs(rows) do
  print(string.format("%-5s %-7s %-20.15g %-36s %-21.15g %-21.15g %.1e", r[1], r[2], r[3], r[4], r[5], r[6],
    compare(r[5], r[6])))
end
local fwd_diff = compare(f, F:item())
print(string.format("forward value: by hand %.17g, tape %.17g, |diff| %.1e", f, F:item(), fwd_diff))

-- The same derivatives as sums over paths from the input to f, each path the product of the
-- local derivatives along it.
print("\ndf/dx and df/dy as sums over paths (product of local derivatives along each path)")
local px1 = y0 * math.cos(a) * 1 -- x -> a -> b -> f
local px2 = math.exp(x0) * (1 / y0) * 1 -- x -> c -> d -> f
local py1 = x0 * math.cos(a) * 1 -- y -> a -> b -> f
local py2 = (-c / y0 ^ 2) * 1 -- y -> d -> f
print(string.format("  df/dx = %.15f (x->a->b->f) + %.15f (x->c->d->f) = %.15f   tape %.15f", px1, px2, px1 + px2,
  X.grad:item()))
print(string.format("  df/dy = %.15f (y->a->b->f) + %.15f (y->d->f)    = %.15f   tape %.15f", py1, py2, py1 + py2,
  Y.grad:item()))
local path_dx, path_dy = compare(px1 + px2, X.grad:item()), compare(py1 + py2, Y.grad:item())

-- ---- 2. a sweep of x: one backward pass gives df/dx at every point ----
local n = opts.quick and 81 or 401
local xs = lg.linspace(-2, 2, n):to("float64"):requires_grad_(true)
local fs = (xs * y0):sin() + xs:exp() / y0
fs:sum():backward() -- each f_i depends only on x_i, so d(sum f)/dx_i = df_i/dx_i
local xl, fl, hand, tape = {}, {}, {}, {}
local sweep_diff = 0
for i = 1, n do
  local xv = xs[i]
  xl[i], fl[i] = xv, fs[i]
  hand[i] = y0 * math.cos(xv * y0) + math.exp(xv) / y0 -- the two paths above, at (xv, y0)
  tape[i] = xs.grad[i]
  sweep_diff = math.max(sweep_diff, compare(hand[i], tape[i]))
end
print(string.format("\nsweep of x over [-2, 2] at y = %g: %d points, max |df/dx by hand - tape| = %.1e", y0, n, sweep_diff))
local svg = opts.out .. "/chain_rule.svg"
lg.plot.line({
  { name = "f(x, 1.3)", x = xl, y = fl },
  { name = "df/dx by hand (two paths)", x = xl, y = hand },
  { name = "df/dx from the tape", x = xl, y = tape },
}, { title = "f(x, y) = sin(xy) + exp(x)/y and its chain-rule derivative", xlabel = "x", ylabel = "value",
  path = svg })
print("wrote " .. svg)

-- ---- 3. the multivariate chain rule: the Jacobian of a composition is a product ----
-- g(x) = tanh(A x)          R^3 -> R^4,  J_g = diag(1 - tanh^2(A x)) A
-- f(u) = M exp(u) + u1 u2   R^4 -> R^2   (u1 u2 added to both outputs, so f is not linear in exp u)
local Am = lg.randn(4, 3, f64)
local Mm = lg.randn(2, 4, f64)
local function g(v) return Am:matmul(v):tanh() end
local function fo(u) return Mm:matmul(u:exp()) + u:narrow(1, 1, 1) * u:narrow(1, 2, 1) end
local function fg(v) return fo(g(v)) end
local xv = lg.randn(3, f64)
local u = g(xv)
local Jg = lg.autograd.jacobian(g, xv)
local Jf = lg.autograd.jacobian(fo, u)
local product = Jf:matmul(Jg)
local Jrev = lg.autograd.jacobian(fg, xv, { mode = "reverse" })
local Jfwd = lg.autograd.jacobian(fg, xv, { mode = "forward" })
-- J_g by its formula, as a check on lg.autograd.jacobian itself
local Jg_formula = (1 - Am:matmul(xv):tanh() ^ 2):unsqueeze(2) * Am
local function maxdiff(p, q)
  local m = (p - q):abs():max():item()
  if m > worst then worst = m end
  return m
end
print("\nmultivariate chain rule, y = f(g(x)), g: R^3 -> R^4, f: R^4 -> R^2")
print("J_f(g(x)) (2x4) times J_g(x) (4x3):")
print(product)
print("Jacobian of the composition, reverse mode:")
print(Jrev)
local jd = {
  { "J_g from jacobian() vs its formula diag(1 - tanh^2) A", maxdiff(Jg, Jg_formula) },
  { "J_f J_g vs jacobian(f o g), reverse mode", maxdiff(product, Jrev) },
  { "J_f J_g vs jacobian(f o g), forward mode", maxdiff(product, Jfwd) },
}
print("comparison                                              max |diff|")
for _, r in ipairs(jd) do print(string.format("%-55s %.1e", r[1], r[2])) end

-- ---- the claim ----
if not (worst <= TOL) then
  error(string.format("claim fails: the chain rule by hand and the tape differ by %.3e (> %g): " ..
    "node adjoints/paths df/dx %.2e, df/dy %.2e, sweep %.2e, Jacobian product %.2e / %.2e", worst, TOL,
    path_dx, path_dy, sweep_diff, jd[2][2], jd[3][2]), 0)
end
print(string.format("claim holds: the chain rule by hand (upstream x local, summed over paths) equals the tape: " ..
  "df/dx = %.12f, df/dy = %.12f, and J_f J_g equals the Jacobian of f(g(x)) in both modes; max |diff| %.1e <= 1e-12",
  X.grad:item(), Y.grad:item(), worst))
