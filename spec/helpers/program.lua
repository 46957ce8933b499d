-- spec/helpers/program.lua: random differentiable programs and the checks that need no outside
-- oracle (used by spec/properties_spec.lua and spec/helpers/run_properties.lua).
--
-- A program is a DAG of public differentiable ops over 1-3 float inputs, written as Lua source:
--
--   local P = { seed = 123, grad_api = "grad", fwd_api = "jvp", double_backward = true }
--   function P.inputs(DT)                  -- the inputs, in dtype DT, in their layouts
--     local o = { dtype = DT }
--     local x1 = lg.tensor({...}, o):reshape({4, 3}):transpose(1, 2)
--     return { x1 }
--   end
--   function P.f(x1)                       -- the program: one statement per node
--     local v1 = x1:exp()
--     local v2 = v1:sum(2, true)
--     return { v2, v1 }
--   end
--
-- The source text is the program: the generator writes it, load() turns it into P, and a
-- failure prints it as the reproducer. The generator is data-aware: it evaluates every candidate
-- statement in float64 on the actual inputs and keeps an op only where its arguments are away
-- from kinks, discontinuities and singularities by a margin (abs/relu/sign/leaky_relu/elu away
-- from 0, floor/ceil/round/remainder away from their jumps, no near ties for max/min/maximum
-- nor among the values sort and topk order, positive bases and arguments for log/sqrt/pow,
-- denominators away from 0, variance away from 0 for std/layer_norm/batch_norm), and where every
-- value stays finite and below LIMIT.
--
-- checks.run(P) then verifies, in float64 (the properties of spec/properties_spec.lua):
--   reverse_vs_fd      reverse mode (autograd.grad, backward() or vjp, as P.grad_api says) of
--                      L = sum_k sum(W_k * y_k), random W, against central differences of L
--   forward_vs_reverse forward mode (jvp, or jacobian mode="forward") against reverse mode:
--                      <W, J t> = sum_i <g_i, t_i> (or the two full Jacobians)
--   forward_vs_fd      J t against central differences of f along t
--   float32            the program on float32 inputs against float64 (values, gradients, J t)
--   views              the program on contiguous copies of the inputs against the views
--                      (values, gradients, J t)
--   double_backward    H d by double backward (create_graph) against central differences of
--                      the gradient along d (for programs with P.double_backward)
-- Anything raised on the way, and NaN/Inf in any result, is a failure too.
local lg = require "luagrad"
local F = lg.nn.functional
local core = require "luagrad.core" -- the adjoint ops' private bindings (T.conv)

local M = {}

-- Bugs the generator steers around while they are open, because hitting them would hide
-- everything else (each with its own test in spec/properties_spec.lua). Both that were here are
-- fixed and their flags are off, so programs go through them again:
--   forward_mode_leak: jvp through an op whose forward-mode rule uses its result leaked when that
--   result required grad; while on, programs hold no parameters.
--   hook_gc: a hook on an intermediate lived with the tensor's Lua value; while on, generated
--   hooks refer to their tensor, which keeps it alive.
M.AVOID = { forward_mode_leak = false, hook_gc = false }

local LIMIT = 100    -- largest |value| a node may hold
local MARGIN = 0.02  -- distance kept from kinks, jumps and ties
local CAP = 48       -- largest number of elements a node may hold
local GRID = 4096    -- input values, weights and tangents are multiples of 1/GRID (exact in float32)

-- ---- random numbers: splitmix64, independent of math.random ----------------------------------

local Rng = {}
Rng.__index = Rng

function M.rng(seed)
  return setmetatable({ s = math.tointeger(seed) or 0 }, Rng)
end

function Rng:next()
  self.s = self.s + 0x9E3779B97F4A7C15
  local z = self.s
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

-- an integer in [a, b]
function Rng:int(a, b)
  return a + (self:next() >> 11) % (b - a + 1)
end

function Rng:float() return (self:next() >> 11) / 2 ^ 53 end

function Rng:chance(p) return self:float() < p end

function Rng:pick(list) return list[self:int(1, #list)] end

-- a multiple of 1/GRID in [lo, hi]
function Rng:value(lo, hi)
  return self:int(math.ceil(lo * GRID), math.floor(hi * GRID)) / GRID
end

-- a value in [lo, hi] with |v| >= away
function Rng:signed(lo, hi, away)
  for _ = 1, 100 do
    local v = self:value(lo, hi)
    if math.abs(v) >= away then return v end
  end
  return hi
end

-- a random permutation of 1..n
function Rng:perm(n)
  local p = {}
  for i = 1, n do p[i] = i end
  for i = n, 2, -1 do
    local j = self:int(1, i)
    p[i], p[j] = p[j], p[i]
  end
  return p
end

-- the seed of program k of a run seeded with `seed`
function M.program_seed(seed, k)
  local r = M.rng(seed * 1000003 + k * 7919)
  r:next()
  return r:next() & 0x7fffffffffff
end

-- ---- shapes and numbers as source text -------------------------------------------------------

local function numel(s)
  local n = 1
  for _, d in ipairs(s) do n = n * d end
  return n
end

local function copy(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  return c
end

local function num(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

local function list_src(vals)
  local p = {}
  for i, v in ipairs(vals) do p[i] = num(v) end
  return "{" .. table.concat(p, ", ") .. "}"
end

local function shape_src(s) return list_src(s) end

local function shape_str(s)
  local p = {}
  for i, d in ipairs(s) do p[i] = tostring(d) end
  return "{" .. table.concat(p, ",") .. "}"
end
M.shape_str = shape_str

-- numpy broadcasting of two shapes, or nil
local function broadcast(a, b)
  local r = math.max(#a, #b)
  local out = {}
  for i = 1, r do
    local x = a[#a - r + i] or 1
    local y = b[#b - r + i] or 1
    if x == y or y == 1 then out[i] = x
    elseif x == 1 then out[i] = y
    else return nil end
  end
  return out
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- ---- values of float64 tensors, as plain Lua numbers -----------------------------------------

local function flat(t)
  if t:numel() == 0 then return {} end
  local l = t:detach():contiguous():reshape(-1):tolist()
  if type(l) ~= "table" then l = { l } end
  return l
end
M.flat = flat

-- min, max, min |x|, max |x| of a list
local function stats(v)
  local mn, mx, mina, maxa = math.huge, -math.huge, math.huge, 0
  for _, x in ipairs(v) do
    if x ~= x then return { min = x, max = x, minabs = x, maxabs = math.huge, nan = true } end
    if x < mn then mn = x end
    if x > mx then mx = x end
    local a = math.abs(x)
    if a < mina then mina = a end
    if a > maxa then maxa = a end
  end
  return { min = mn, max = mx, minabs = mina, maxabs = maxa }
end

-- min distance of the values (after fn) to the points k + offset, k integer
local function dist_grid(v, offset, fn)
  local d = math.huge
  for _, x in ipairs(v) do
    if fn then x = fn(x) end
    local y = x - offset
    local e = math.abs(y - math.floor(y + 0.5))
    if e < d then d = e end
  end
  return d
end

-- min distance of the values to c
local function dist_to(v, c)
  local d = math.huge
  for _, x in ipairs(v) do
    local e = math.abs(x - c)
    if e < d then d = e end
  end
  return d
end

-- the flat indices of each slice along dimension d (all elements as one slice when d is nil)
local function slices(shape, d)
  local n = numel(shape)
  if d == nil then
    local s = {}
    for i = 1, n do s[i] = i end
    return { s }
  end
  local outer, inner = 1, 1
  for i = 1, d - 1 do outer = outer * shape[i] end
  for i = d + 1, #shape do inner = inner * shape[i] end
  local size = shape[d]
  local out = {}
  for o = 0, outer - 1 do
    for k = 0, inner - 1 do
      local s = {}
      for i = 0, size - 1 do s[#s + 1] = o * size * inner + i * inner + k + 1 end
      out[#out + 1] = s
    end
  end
  return out
end

-- true when each slice's largest (or smallest) value beats the runner-up by MARGIN
local function no_ties(v, shape, d, smallest, absolute)
  for _, s in ipairs(slices(shape, d)) do
    if #s == 0 then return false end
    local best, second = -math.huge, -math.huge
    for _, i in ipairs(s) do
      local x = v[i]
      if absolute then x = math.abs(x) end
      if smallest then x = -x end
      if x > best then best, second = x, best
      elseif x > second then second = x end
    end
    if best - second < MARGIN then return false end
  end
  return true
end

-- ---- inputs ----------------------------------------------------------------------------------

local SIZES = { 1, 2, 2, 3, 3, 4, 5 }

local function random_shape(rng, rank)
  local s = {}
  for i = 1, rank do s[i] = rng:pick(SIZES) end
  while numel(s) > 24 do
    local i = rng:int(1, rank)
    if s[i] > 1 then s[i] = s[i] - 1 end
  end
  return s
end

-- a shape related to `base` (so that ops can combine the inputs): the same, with some dims 1,
-- with leading dims dropped, or matmul-compatible
local function related_shape(rng, base)
  local r = #base
  local k = rng:int(1, 6)
  if r == 0 or k == 1 then return random_shape(rng, rng:int(0, 3)) end
  if k == 2 then return copy(base) end
  if k == 3 then
    local s = copy(base)
    s[rng:int(1, r)] = 1
    return s
  end
  if k == 4 then
    local s = {}
    for i = rng:int(math.min(2, r), r), r do s[#s + 1] = base[i] end
    if #s == 0 then s = { base[r] } end
    return s
  end
  if k == 5 then -- (last dim of base, n): matmul's right operand
    return { base[r], rng:pick(SIZES) }
  end
  return { base[r] } -- a vector along the last dim
end

-- The values of an input: "signed" in [-2, 2] away from 0, or "positive" in [0.3, 2.5].
local function input_values(rng, n, kind)
  local v = {}
  for i = 1, n do
    if kind == "positive" then v[i] = rng:value(0.3, 2.5) else v[i] = rng:signed(-2, 2, 0.15) end
  end
  return v
end

local LAYOUTS = { "contiguous", "transposed", "permuted", "narrowed", "strided", "expanded", "expanded" }

-- An input of `shape` in a random layout: returns its source expression (in terms of `o`, the
-- dtype options) and the layout's name.
local function make_input(rng, shape, kind, layout)
  local r = #shape
  if r == 0 then
    if layout == "contiguous" or rng:chance(0.5) then
      return string.format("lg.tensor(%s, o)", num(input_values(rng, 1, kind)[1])), "contiguous"
    end
    local vals = input_values(rng, 3, kind)
    return string.format("lg.tensor(%s, o):select(1, 2)", list_src(vals)), "narrowed"
  end
  if (layout == "transposed" or layout == "permuted") and r < 2 then layout = "strided" end
  if layout == "permuted" and r < 3 then layout = "transposed" end
  if layout == "contiguous" then
    return string.format("lg.tensor(%s, o):reshape(%s)", list_src(input_values(rng, numel(shape), kind)),
      shape_src(shape)), layout
  elseif layout == "transposed" or layout == "permuted" then
    -- base holds the dims in another order; permuting brings them back
    local p
    if layout == "transposed" then
      local a = rng:int(1, r - 1)
      local b = rng:int(a + 1, r)
      p = {}
      for i = 1, r do p[i] = i end
      p[a], p[b] = p[b], p[a]
    else
      p = rng:perm(r)
    end
    -- result dim i is base dim p[i], so base dim p[i] has size shape[i]
    local bs = {}
    for i = 1, r do bs[p[i]] = shape[i] end
    local src = string.format("lg.tensor(%s, o):reshape(%s)", list_src(input_values(rng, numel(bs), kind)),
      shape_src(bs))
    if layout == "transposed" then
      local a, b
      for i = 1, r do if p[i] ~= i then if a then b = i else a = i end end end
      return src .. string.format(":transpose(%d, %d)", a, b), layout
    end
    return src .. ":permute(" .. table.concat(p, ", ") .. ")", layout
  elseif layout == "narrowed" then
    local d = rng:int(1, r)
    local extra = rng:int(1, 3)
    local start = rng:int(1, extra + 1)
    local bs = copy(shape)
    bs[d] = shape[d] + extra
    -- fill the whole base with input values: the window is what the view sees
    return string.format("lg.tensor(%s, o):reshape(%s):narrow(%d, %d, %d)",
      list_src(input_values(rng, numel(bs), kind)), shape_src(bs), d, start, shape[d]), layout
  elseif layout == "strided" then
    -- every other element along a new trailing dim: stride 2 in the last dim
    local bs = copy(shape)
    bs[r + 1] = 2
    return string.format("lg.tensor(%s, o):reshape(%s):select(%d, %d)",
      list_src(input_values(rng, numel(bs), kind)), shape_src(bs), r + 1, rng:int(1, 2)), layout
  else -- expanded: some dims (of the leaf) are stride 0
    local bs = copy(shape)
    local any = false
    for i = 1, r do
      if shape[i] > 1 and rng:chance(0.5) then bs[i] = 1; any = true end
    end
    local lead = 0
    if not any then
      -- expand a new leading dim instead
      lead = 1
      bs = {}
      for i = 2, r do bs[#bs + 1] = shape[i] end
    end
    return string.format("lg.tensor(%s, o):reshape(%s):expand(%s)", list_src(input_values(rng, numel(bs), kind)),
      shape_src(bs), shape_src(shape)), (lead > 0) and "expanded (new dim)" or "expanded"
  end
end

-- ---- the generator ---------------------------------------------------------------------------

local Gen = {}
Gen.__index = Gen

local function env_for(g)
  local env = { lg = lg, F = F, core = core, math = math, select = select }
  for _, n in ipairs(g.nodes) do env[n.name] = n.value end
  return env
end

-- evaluates lines (with $ for the new node's name) for node `name`; returns the value or nil
-- and the error
local function eval_lines(g, lines, name)
  local src = table.concat(lines, "\n"):gsub("%$", name) .. "\nreturn " .. name
  local chunk, err = load(src, "=candidate", "t", env_for(g))
  if not chunk then error("generator wrote bad Lua: " .. err .. "\n" .. src) end
  return lg.no_grad(function() return pcall(chunk) end)
end

-- node stats, cached
local function st(n)
  if not n.stats then
    n.flat = n.flat or flat(n.value)
    n.stats = stats(n.flat)
  end
  return n.stats
end

local function fl(n)
  n.flat = n.flat or flat(n.value)
  return n.flat
end

-- A node, recent ones preferred, satisfying pred (nil when none does).
function Gen:node(pred)
  local cands, weights, total = {}, {}, 0
  for i, n in ipairs(self.nodes) do
    if not pred or pred(n) then
      cands[#cands + 1] = n
      local w = i * i + 1
      if not n.used then w = w * 2 end
      weights[#weights + 1] = w
      total = total + w
    end
  end
  if #cands == 0 then return nil end
  local x = self.rng:float() * total
  for i, w in ipairs(weights) do
    x = x - w
    if x <= 0 then return cands[i] end
  end
  return cands[#cands]
end

-- a dimension of a rank-r tensor: the positive one and its source text (sometimes negative)
function Gen:dim(r, extra)
  local d = self.rng:int(1, r + (extra or 0))
  local text = tostring(d)
  if self.rng:chance(0.25) then text = tostring(d - (r + (extra or 0)) - 1) end
  return d, text
end

-- a constant for a scalar operand
function Gen:const(lo, hi, away)
  return self.rng:signed(lo or -2, hi or 2, away or 0.25)
end

local function sub(form, names)
  return (form:gsub("@(%a)", function(k) return names[k] end))
end

-- ---- the op templates: each returns a candidate {lines = {...}, deps = {...}, tag = ...,
-- view = bool, post = function(value) -> bool} or nil when it does not apply ---------------------

local T = {}

local function cand(tag, line, deps, extra)
  local c = extra or {}
  c.tag, c.deps = tag, deps
  c.lines = type(line) == "table" and line or { "local $ = " .. line }
  return c
end

-- unary element-wise ops: {tag, condition on stats and values, forms}
local UNARY = {
  { "neg", nil, { "-@a", "@a:neg()", "lg.neg(@a)" } },
  { "exp", function(s) return s.max <= 4 end, { "@a:exp()", "lg.exp(@a)" } },
  { "log", function(s) return s.min >= 0.2 end, { "@a:log()", "lg.log(@a)", "@a:log2()", "@a:log10()", "lg.log2(@a)",
    "lg.log10(@a)" } },
  { "sqrt", function(s) return s.min >= 0.2 end, { "@a:sqrt()", "lg.sqrt(@a)", "@a:rsqrt()", "lg.rsqrt(@a)" } },
  { "abs", function(s) return s.minabs >= MARGIN end, { "@a:abs()", "lg.abs(@a)" } },
  { "relu", function(s) return s.minabs >= MARGIN end, { "@a:relu()", "F.relu(@a)", "lg.relu(@a)" } },
  { "sign", function(s) return s.minabs >= MARGIN end, { "@a:sign() * @a", "lg.sign(@a) + @a" } },
  { "sin/cos", nil, { "@a:sin()", "@a:cos()", "lg.sin(@a)", "lg.cos(@a)" } },
  { "tanh/sigmoid", nil, { "@a:tanh()", "F.tanh(@a)", "@a:sigmoid()", "F.sigmoid(@a)", "lg.sigmoid(@a)", "lg.tanh(@a)" } },
  { "erf/atan", nil, { "@a:erf()", "@a:atan()", "lg.erf(@a)", "lg.atan(@a)" } },
  { "silu/gelu/softplus", nil, { "@a:silu()", "F.silu(@a)", "@a:gelu()", "F.gelu(@a)", "@a:gelu('tanh')",
    "F.gelu(@a, {approximate = 'tanh'})", "@a:softplus()", "F.softplus(@a)", "lg.silu(@a)", "lg.gelu(@a)",
    "lg.softplus(@a)" } },
  { "softplus{beta=2,threshold=1}", function(_, v) return dist_to(v, 0.5) >= MARGIN end,
    { "@a:softplus({beta = 2, threshold = 1})", "F.softplus(@a, 2, 1)" } },
  { "floor", function(_, v) return dist_grid(v, 0) >= MARGIN end,
    { "@a:floor() + @a", "@a:ceil() * @a", "@a:trunc() + @a", "lg.floor(@a) - @a", "lg.ceil(@a) + @a" } },
  { "round", function(_, v) return dist_grid(v, 0.5) >= MARGIN end, { "@a:round() + @a", "lg.round(@a) * @a" } },
  { "log1p", function(s) return s.min >= -0.7 end, { "@a:log1p()", "lg.log1p(@a)" } },
  { "expm1", function(s) return s.maxabs <= 4 end, { "@a:expm1()", "@a:sinh()", "@a:cosh()", "lg.expm1(@a)" } },
  { "reciprocal", function(s) return s.minabs >= 0.3 end, { "@a:reciprocal()", "lg.reciprocal(@a)", "1 / @a" } },
  { "square", function(s) return s.maxabs <= 10 end, { "@a:square()", "@a ^ 2", "lg.square(@a)", "@a:pow(2)" } },
  { "cube", function(s) return s.maxabs <= 4 end, { "@a ^ 3", "lg.pow(@a, 3)" } },
  { "tan", function(s) return s.maxabs <= 1.2 end, { "@a:tan()", "lg.tan(@a)" } },
  { "leaky_relu", function(s) return s.minabs >= MARGIN end,
    { "@a:leaky_relu(0.1)", "F.leaky_relu(@a, {negative_slope = 0.2})", "lg.leaky_relu(@a)" } },
  { "elu", function(s) return s.minabs >= MARGIN end, { "@a:elu()", "@a:elu({alpha = 1.5})", "F.elu(@a, 0.5)" } },
  { "pow_frac", function(s) return s.min >= 0.3 and s.max <= 10 end,
    { "@a ^ 2.5", "@a ^ -1.5", "@a:pow(0.5)", "lg.pow(@a, 1.5)" } },
  { "exp_base", function(s) return s.max <= 5 end, { "2 ^ @a", "lg.pow(1.5, @a)" } },
  { "copy", nil, { "@a:contiguous()", "@a:clone()", "lg.clone(@a)", "@a:to(@a.dtype)", "@a:double():to(@a.dtype)",
    "@a:type(@a:type())", "F.dropout(@a, 0.5, {training = false})", "F.dropout(@a, 0)" } },
  { "module", nil, { "lg.nn.Tanh()(@a)", "lg.nn.Sigmoid()(@a)", "lg.nn.SiLU()(@a)", "lg.nn.GELU()(@a)",
    "lg.nn.Identity()(@a)", "lg.nn.Softplus()(@a)" } },
  { "module_kink", function(s) return s.minabs >= MARGIN end,
    { "lg.nn.ReLU()(@a)", "lg.nn.LeakyReLU(0.3)(@a)", "lg.nn.ELU(0.7)(@a)" } },
}

function T.unary(g)
  local a = g:node()
  local u = g.rng:pick(UNARY)
  if u[2] and not u[2](st(a), fl(a)) then return nil end
  return cand(u[1], sub(g.rng:pick(u[3]), { a = a.name }), { a.name })
end

function T.scalar(g)
  local a = g:node()
  local c = g:const()
  local s, v = st(a), fl(a)
  local C = num(c)
  local k = g.rng:int(1, 9)
  local n = { a = a.name }
  if k == 1 then
    return cand("scalar arith", sub(g.rng:pick({ "@a + " .. C, C .. " + @a", "@a - " .. C, C .. " - @a", "@a * " .. C,
      C .. " * @a", "@a / " .. C, "@a:add(" .. C .. ")", "lg.sub(" .. C .. ", @a)", "@a:mul(" .. C .. ")",
      "lg.div(@a, " .. C .. ")", "lg.add(" .. C .. ", @a)" }), n), { a.name })
  elseif k == 2 then
    if s.minabs < 0.3 then return nil end
    return cand("scalar / tensor", sub(g.rng:pick({ C .. " / @a", "lg.div(" .. C .. ", @a)" }), n), { a.name })
  elseif k == 3 then
    if dist_to(v, c) < MARGIN then return nil end
    return cand("maximum/minimum with a number", sub(g.rng:pick({ "lg.maximum(@a, " .. C .. ")",
      "lg.minimum(" .. C .. ", @a)", "@a:maximum(" .. C .. ")", "@a:minimum(" .. C .. ")" }), n), { a.name })
  elseif k == 4 then
    local d = math.abs(c) + 0.3
    if dist_grid(v, 0, function(x) return x / d end) < MARGIN then return nil end
    return cand("remainder by a number", sub(g.rng:pick({ "@a % " .. num(d), "lg.remainder(@a, " .. num(d) .. ")",
      "@a // " .. num(d) .. " + @a", "@a:remainder(" .. num(d) .. ")" }), n), { a.name })
  elseif k == 5 then
    if s.minabs < 0.3 or dist_grid(v, 0, function(x) return c / x end) < MARGIN then return nil end
    return cand("remainder of a number", sub("lg.remainder(" .. C .. ", @a)", n), { a.name })
  elseif k == 6 then
    -- atan2(y, x) jumps across y = 0 where x < 0
    if c < 0 and s.minabs < MARGIN then
      return cand("atan2 with a number", sub("lg.atan2(" .. C .. ", @a)", n), { a.name })
    end
    return cand("atan2 with a number", sub(g.rng:pick({ "lg.atan2(@a, " .. C .. ")", "lg.atan2(" .. C .. ", @a)" }), n),
      { a.name })
  elseif k == 7 then
    local t = g:const(-1, 1, 0)
    if dist_to(v, t) < MARGIN then return nil end
    return cand("where with a number", sub(g.rng:pick({ "lg.where(@a:gt(" .. num(t) .. "), @a, " .. C .. ")",
      "lg.where(@a:le(" .. num(t) .. "), " .. C .. ", @a * 2)" }), n), { a.name })
  elseif k == 8 then
    local lo, hi = g:const(-1.5, 0.5, 0), g:const(0.6, 2, 0)
    if dist_to(v, lo) < MARGIN or dist_to(v, hi) < MARGIN then return nil end
    local L, H = num(lo), num(hi)
    return cand("clamp", sub(g.rng:pick({ "@a:clamp(" .. L .. ", " .. H .. ")", "@a:clamp(" .. L .. ")",
      "@a:clamp(nil, " .. H .. ")", "@a:clamp({min = " .. L .. ", max = " .. H .. "})",
      "lg.clamp(@a, " .. L .. ", " .. H .. ")" }), n), { a.name })
  else
    local lo, hi = g:const(-1.5, 0.5, 0), g:const(0.6, 2, 0)
    if dist_to(v, lo) < MARGIN or dist_to(v, hi) < MARGIN then return nil end
    return cand("clamp_", { sub("local $ = @a * 1", n), "$:clamp_(" .. num(lo) .. ", " .. num(hi) .. ")" }, { a.name })
  end
end

-- two nodes whose shapes broadcast together (b may be a itself)
function Gen:pair()
  local a = self:node()
  local b = self:node(function(n)
    local s = broadcast(a.shape, n.shape)
    return s ~= nil and numel(s) <= CAP and (n ~= a or self.rng:chance(0.2))
  end)
  return a, b
end

local function pairwise(a, b, fn)
  local v = lg.no_grad(function() return fn(a.value, b.value) end)
  return flat(v)
end

function T.binary(g)
  local a, b = g:pair()
  if not b then return nil end
  local n = { a = a.name, b = b.name }
  local k = g.rng:int(1, 8)
  local deps = { a.name, b.name }
  if k <= 2 then
    return cand("add/sub/mul", sub(g.rng:pick({ "@a + @b", "@a:add(@b)", "lg.add(@a, @b)", "@a - @b", "@a:sub(@b)",
      "lg.sub(@a, @b)", "@a * @b", "lg.mul(@a, @b)", "@a:mul(@b)" }), n), deps)
  elseif k == 3 then
    if st(b).minabs < 0.3 then return nil end
    return cand("div", sub(g.rng:pick({ "@a / @b", "@a:div(@b)", "lg.div(@a, @b)" }), n), deps)
  elseif k == 4 then
    if st(a).min < 0.3 or st(a).max > 10 or st(b).maxabs > 3 then return nil end
    return cand("pow", sub(g.rng:pick({ "@a ^ @b", "@a:pow(@b)", "lg.pow(@a, @b)" }), n), deps)
  elseif k == 5 then
    if a == b then return nil end
    local d = pairwise(a, b, function(x, y) return (x - y):abs() end)
    if stats(d).min < MARGIN then return nil end
    return cand("maximum/minimum", sub(g.rng:pick({ "lg.maximum(@a, @b)", "@a:maximum(@b)", "@a:max(@b)",
      "lg.minimum(@a, @b)", "@a:min(@b)", "@a:minimum(@b)" }), n), deps)
  elseif k == 6 then
    if st(b).minabs < 0.3 then return nil end
    local q = pairwise(a, b, function(x, y) return x / y end)
    if dist_grid(q, 0) < MARGIN then return nil end
    return cand("remainder/floor_divide", sub(g.rng:pick({ "@a % @b", "lg.remainder(@a, @b)", "@a:remainder(@b)",
      "@a // @b + @a", "lg.floor_divide(@a, @b) * @b" }), n), deps)
  elseif k == 7 then
    local r = pairwise(a, b, function(x, y) return x * x + y * y end)
    if stats(r).min < 0.1 then return nil end
    -- atan2(y, x) jumps across y = 0 where x < 0: |y| + max(x, 0) stays away from 0
    local cut = pairwise(a, b, function(y, x) return y:abs() + x:clamp(0) end)
    if stats(cut).min < MARGIN then return nil end
    return cand("atan2", sub(g.rng:pick({ "lg.atan2(@a, @b)", "@a:atan2(@b)" }), n), deps)
  else
    local bs = broadcast(a.shape, b.shape)
    local c = g:node(function(x) return broadcast(bs, x.shape) ~= nil and numel(broadcast(bs, x.shape)) <= CAP end)
    if not c then return nil end
    local t = g.rng:pick({ 0, 0.5, -0.5, 1 })
    if dist_to(fl(c), t) < MARGIN then return nil end
    n.c = c.name
    local T_ = num(t)
    return cand("where", sub(g.rng:pick({ "lg.where(@c:gt(" .. T_ .. "), @a, @b)", "@a:where(@c:lt(" .. T_ .. "), @b)",
      "lg.where(@c:ge(" .. T_ .. "), @a, @b)", "lg.where(@c:le(" .. T_ .. "), @b, @a)" }), n), { a.name, b.name, c.name })
  end
end

-- reductions
function T.reduce(g)
  local a = g:node()
  local r = #a.shape
  local k = g.rng:int(1, 8)
  local n = { a = a.name }
  local deps = { a.name }
  local d, D, kd
  if r > 0 then d, D = g:dim(r) end
  kd = g.rng:chance(0.4)
  local KD = kd and ", true" or ""
  local function dimform(method, fnname)
    if r == 0 or g.rng:chance(0.25) then return "@a:" .. method .. "()" end
    local f = g.rng:int(1, 4)
    if f == 1 then return "@a:" .. method .. "(" .. D .. KD .. ")" end
    if f == 2 then return "@a:" .. method .. "({dim = " .. D .. ", keepdim = " .. tostring(kd) .. "})" end
    if f == 3 and fnname then return fnname .. "(@a, " .. D .. KD .. ")" end
    return "@a:" .. method .. "(" .. D .. ")"
  end
  if k <= 2 then
    if r >= 2 and g.rng:chance(0.3) then
      local p = g.rng:perm(r)
      return cand("sum/mean over dims", sub("@a:" .. g.rng:pick({ "sum", "mean" }) .. "({" .. p[1] .. ", " .. p[2] .. "}"
        .. (kd and ", true" or "") .. ")", n), deps)
    end
    local m = g.rng:pick({ "sum", "mean" })
    return cand(m, sub(dimform(m, "lg." .. m), n), deps)
  elseif k == 3 then
    local m = g.rng:pick({ "var", "std" })
    local form = dimform(m, "lg." .. m)
    if g.rng:chance(0.3) and r > 0 then
      form = "@a:" .. m .. "(" .. D .. ", " .. tostring(kd) .. ", " ..
        g.rng:pick({ "{unbiased = false}", "{correction = 0}", "{correction = 2}", "{unbiased = true}" }) .. ")"
    end
    return cand(m, sub(form, n), deps, {
      post = function(v) local s = stats(flat(v)); return s.min >= (m == "var" and 0.01 or 0.1) end })
  elseif k == 4 then
    if st(a).minabs < 0.2 then return nil end
    return cand("prod", sub(dimform("prod", "lg.prod"), n), deps)
  elseif k == 5 then
    local p = g.rng:pick({ "2", "1", "3", "math.huge", "'fro'" })
    if (p == "1" or p == "math.huge") and st(a).minabs < MARGIN then return nil end
    if p == "math.huge" and not no_ties(fl(a), a.shape, r > 0 and d or nil, false, true) then return nil end
    local form
    if r == 0 or g.rng:chance(0.3) then
      form = g.rng:pick({ "@a:norm(" .. p .. ")", "lg.norm(@a, " .. p .. ")" })
      if p == "math.huge" then
        if not no_ties(fl(a), a.shape, nil, false, true) then return nil end
      end
    else
      form = g.rng:pick({ "@a:norm(" .. p .. ", " .. D .. KD .. ")", "lg.norm(@a, " .. p .. ", " .. D .. ")" })
    end
    if p == "'fro'" and not form:find("norm%('fro'%)") then form = "@a:norm('fro')" end
    return cand("norm p=" .. p, sub(form, n), deps, {
      post = function(v) return stats(flat(v)).min >= 0.1 end })
  elseif k == 6 then
    return cand("logsumexp", sub(dimform("logsumexp", "lg.logsumexp"), n), deps)
  else
    local m = g.rng:pick({ "max", "min" })
    local whole = (r == 0) or g.rng:chance(0.3)
    if whole then
      if a.value:numel() == 0 or not no_ties(fl(a), a.shape, nil, m == "min") then return nil end
      return cand(m .. "()", sub(g.rng:pick({ "@a:" .. m .. "()", "lg." .. m .. "(@a)" }), n), deps)
    end
    if a.shape[d] == 0 or not no_ties(fl(a), a.shape, d, m == "min") then return nil end
    local arg = (m == "max") and "argmax" or "argmin"
    return cand(m .. "(dim)", sub(g.rng:pick({ "(@a:" .. m .. "(" .. D .. KD .. "))", "(lg." .. m .. "(@a, " .. D .. "))",
      "@a:gather(" .. D .. ", select(2, @a:" .. m .. "(" .. D .. ", true)))",
      "@a:gather(" .. D .. ", @a:" .. arg .. "(" .. D .. ", true))" }), n), deps)
  end
end

function T.matmul(g)
  local a = g:node(function(n) return #n.shape >= 1 end)
  if not a then return nil end
  local r = #a.shape
  local n = { a = a.name }
  local k = g.rng:int(1, 3)
  if k == 1 then
    -- a with a compatible node
    local b = g:node(function(x)
      if #x.shape == 0 then return false end
      local ak = a.shape[r]
      local bk = (#x.shape == 1) and x.shape[1] or x.shape[#x.shape - 1]
      if ak ~= bk then return false end
      if r == 1 and #x.shape == 1 then return true end
      -- batch dims must broadcast
      local ab, bb = {}, {}
      for i = 1, r - 2 do ab[#ab + 1] = a.shape[i] end
      for i = 1, #x.shape - 2 do bb[#bb + 1] = x.shape[i] end
      local s = broadcast(ab, bb)
      return s ~= nil and numel(s) * (r > 1 and a.shape[r - 1] or 1) * (#x.shape > 1 and x.shape[#x.shape] or 1) <= CAP
    end)
    if not b then return nil end
    n.b = b.name
    return cand("matmul", sub(g.rng:pick({ "@a:matmul(@b)", "lg.matmul(@a, @b)" }), n), { a.name, b.name })
  elseif k == 2 then
    if r == 1 then return cand("matmul dot", sub("@a:matmul(@a)", n), { a.name }) end
    if numel(a.shape) / a.shape[r] * a.shape[r - 1] > CAP then return nil end
    return cand("matmul with own transpose", sub(g.rng:pick({ "@a:matmul(@a:transpose(-1, -2))",
      "@a:transpose(-2, -1):matmul(@a)" }), n), { a.name })
  else
    -- F.linear(x, w, b): w (out, in) with in = a's last dim; w a node, or a itself when 2-d
    local inn = a.shape[r]
    local w = g:node(function(x) return #x.shape == 2 and x.shape[2] == inn end)
    if not w then return nil end
    local out = w.shape[1]
    if numel(a.shape) / inn * out > CAP then return nil end
    n.w = w.name
    local bias = g:node(function(x) return #x.shape == 1 and x.shape[1] == out end)
    if bias and g.rng:chance(0.6) then
      n.b = bias.name
      return cand("linear", sub("F.linear(@a, @w, @b)", n), { a.name, w.name, bias.name })
    end
    return cand("linear", sub("F.linear(@a, @w)", n), { a.name, w.name })
  end
end

-- a random shape of `total` elements (no zero dims unless total is 0)
local function reshape_target(rng, shape, total)
  if total == 0 then
    local s = { 0 }
    for _ = 1, rng:int(0, 2) do table.insert(s, rng:int(1, #s + 1), rng:int(1, 3)) end
    return s
  end
  local s = {}
  local rest = total
  while rest > 1 and #s < 4 do
    local divs = {}
    for k = 2, rest do if rest % k == 0 then divs[#divs + 1] = k end end
    local k = rng:pick(divs)
    s[#s + 1] = k
    rest = rest // k
    if rng:chance(0.3) then break end
  end
  if rest > 1 then s[#s + 1] = rest end
  if rng:chance(0.3) then table.insert(s, rng:int(1, #s + 1), 1) end
  if #s == 0 and rng:chance(0.5) then s = { 1 } end
  local _ = shape
  return s
end

function T.view(g)
  local a = g:node()
  local r = #a.shape
  local n = { a = a.name }
  local deps = { a.name }
  local k = g.rng:int(1, 11)
  if k == 1 and r >= 1 then
    local d, D = g:dim(r)
    local size = a.shape[d]
    local s = g.rng:int(1, size + 1)
    if s > size and size > 0 then s = size end
    local len = g.rng:int(0, size - s + 1)
    if size == 0 then s, len = 1, 0 end
    local S = tostring(s)
    if size > 0 and g.rng:chance(0.25) then S = tostring(s - size - 1) end
    return cand("narrow", sub(g.rng:pick({ "@a:narrow(" .. D .. ", " .. S .. ", " .. len .. ")",
      "lg.narrow(@a, " .. D .. ", " .. S .. ", " .. len .. ")" }), n), deps, { view = true })
  elseif k == 2 and r >= 1 then
    local d, D = g:dim(r)
    local size = a.shape[d]
    if size == 0 then return nil end
    local i = g.rng:int(1, size)
    local I = g.rng:chance(0.25) and tostring(i - size - 1) or tostring(i)
    local forms = { "@a:select(" .. D .. ", " .. I .. ")", "lg.select(@a, " .. D .. ", " .. I .. ")" }
    if d == 1 and r >= 2 then forms[#forms + 1] = "@a[" .. I .. "]" end
    return cand("select", sub(g.rng:pick(forms), n), deps, { view = true })
  elseif k == 3 and r >= 2 then
    local _, D1 = g:dim(r)
    local _, D2 = g:dim(r)
    local forms = { "@a:transpose(" .. D1 .. ", " .. D2 .. ")", "lg.transpose(@a, " .. D1 .. ", " .. D2 .. ")" }
    if r == 2 then forms[#forms + 1] = "@a:t()"; forms[#forms + 1] = "@a.T" end
    return cand("transpose", sub(g.rng:pick(forms), n), deps, { view = true })
  elseif k == 4 and r >= 2 then
    local p = g.rng:perm(r)
    local tag = "permute"
    if g.rng:chance(0.15) then
      tag = "permute (negative dims)"
      for i = 1, r do if g.rng:chance(0.5) then p[i] = p[i] - r - 1 end end
    end
    local P = table.concat(p, ", ")
    return cand(tag, sub(g.rng:pick({ "@a:permute(" .. P .. ")", "@a:permute({" .. P .. "})", "lg.permute(@a, " .. P .. ")" }),
      n), deps, { view = true })
  elseif k == 5 then
    -- expand size-1 dims and maybe add a leading dim
    local target = copy(a.shape)
    local text = {}
    for i, s in ipairs(target) do
      if s == 1 and g.rng:chance(0.7) then target[i] = g.rng:int(2, 3) end
      text[i] = (target[i] == s and g.rng:chance(0.3)) and "-1" or tostring(target[i])
    end
    if g.rng:chance(0.4) or r == 0 then
      table.insert(target, 1, g.rng:int(1, 3))
      table.insert(text, 1, tostring(target[1]))
    end
    if numel(target) > CAP or same_shape(target, a.shape) then return nil end
    local T_ = table.concat(text, ", ")
    return cand("expand", sub(g.rng:pick({ "@a:expand(" .. T_ .. ")", "@a:expand({" .. T_ .. "})" }), n), deps,
      { view = true })
  elseif k == 6 then
    local total = numel(a.shape)
    local s = reshape_target(g.rng, a.shape, total)
    local S = table.concat(s, ", ")
    local forms = { "@a:reshape(" .. S .. ")", "@a:reshape({" .. S .. "})", "lg.reshape(@a, {" .. S .. "})",
      "@a:contiguous():view(" .. S .. ")", "@a:flatten()" }
    if a.fresh then
      forms[#forms + 1] = "@a:view(" .. S .. ")"
      forms[#forms + 1] = "@a:view(-1)"
    end
    if total > 0 and #s > 0 then
      local i = g.rng:int(1, #s)
      local s2 = copy(s)
      s2[i] = -1
      forms[#forms + 1] = "@a:reshape(" .. table.concat(s2, ", ") .. ")"
    end
    if #s == 0 then forms = { "@a:reshape({})" } end
    local tag = "reshape"
    local f = g.rng:pick(forms)
    if f:find(":view%(") and not f:find("contiguous") then tag = "view of a fresh result" end
    return cand(tag, sub(f, n), deps, { view = true })
  elseif k == 7 and r >= 1 then
    local s, e = g.rng:int(1, r), g.rng:int(1, r)
    if s > e then s, e = e, s end
    return cand("flatten", sub(g.rng:pick({ "@a:flatten(" .. s .. ", " .. e .. ")", "lg.flatten(@a, " .. s .. ")",
      "lg.nn.Flatten(" .. s .. ", " .. e .. ")(@a)" }), n), deps, { view = true })
  elseif k == 8 then
    local _, D = g:dim(r, 1)
    local forms = { "@a:unsqueeze(" .. D .. ")", "lg.unsqueeze(@a, " .. D .. ")" }
    if r > 0 then
      local _, D2 = g:dim(r)
      forms[#forms + 1] = "@a:squeeze()"
      forms[#forms + 1] = "@a:squeeze(" .. D2 .. ")"
      forms[#forms + 1] = "lg.squeeze(@a, " .. D2 .. ")"
    end
    return cand("unsqueeze/squeeze", sub(g.rng:pick(forms), n), deps, { view = true })
  elseif k == 9 and r >= 1 then
    local d, D = g:dim(r)
    local size = a.shape[d]
    local tag, form
    local m = g.rng:int(1, 3)
    if m == 1 then
      local step = g.rng:int(1, math.max(1, size))
      local pieces = size == 0 and 1 or (size + step - 1) // step
      tag, form = "split", g.rng:pick({ "@a:split(" .. step .. ", " .. D .. ")", "lg.split(@a, " .. step .. ", " .. D .. ")" })
        .. "[" .. g.rng:int(1, pieces) .. "]"
    elseif m == 2 then
      if size == 0 then return nil end
      local s1 = g.rng:int(0, size)
      tag, form = "split by sizes", "@a:split({" .. s1 .. ", " .. (size - s1) .. "}, " .. D .. ")[" .. g.rng:int(1, 2) .. "]"
    else
      local c = g.rng:int(1, 4)
      local step = math.max(1, (size + c - 1) // c)
      local pieces = size == 0 and 1 or (size + step - 1) // step
      tag = size == 0 and "chunk (zero-size)" or "chunk"
      form = g.rng:pick({ "@a:chunk(" .. c .. ", " .. D .. ")", "lg.chunk(@a, " .. c .. ", " .. D .. ")" })
        .. "[" .. g.rng:int(1, pieces) .. "]"
    end
    return cand(tag, sub(form, n), deps, { view = true })
  elseif k == 10 and r >= 1 then
    -- F.pad over the last one or two dims; negative amounts crop
    local pads = {}
    local dims = math.min(r, g.rng:int(1, 2))
    for i = 1, dims do
      local size = a.shape[r - i + 1]
      local lo = g.rng:int(-math.min(1, size), 2)
      -- a crop takes from the input, whatever the other side pads (PyTorch refuses more)
      local hi = g.rng:int(-math.max(0, math.min(1, size + math.min(lo, 0))), 2)
      pads[#pads + 1] = lo
      pads[#pads + 1] = hi
    end
    local out = copy(a.shape)
    for i = 1, dims do out[r - i + 1] = out[r - i + 1] + pads[2 * i - 1] + pads[2 * i] end
    for i = 1, dims do
      local after = out[r - i + 1]
      if after < 0 or (after == 0 and (pads[2 * i - 1] < 0 or pads[2 * i] < 0)) then return nil end
    end
    if numel(out) > CAP then return nil end
    local P = table.concat(pads, ", ")
    return cand("pad", sub(g.rng:pick({ "F.pad(@a, {" .. P .. "})",
      "F.pad(@a, {" .. P .. "}, {value = " .. num(g:const()) .. "})" }), n), deps)
  elseif k == 11 then
    local b = g:node(function(x) return x ~= a and numel(x.shape) == numel(a.shape) end)
    if b then
      n.b = b.name
      return cand("reshape_as", sub(g.rng:pick({ "@a:reshape_as(@b)", "@a:contiguous():view_as(@b)" }), n),
        { a.name, b.name }, { view = true })
    end
    local c = g:node(function(x) return x ~= a and broadcast(a.shape, x.shape) ~= nil
      and same_shape(broadcast(a.shape, x.shape), x.shape) and numel(x.shape) <= CAP end)
    if not c then return nil end
    n.b = c.name
    return cand("expand_as", sub("@a:expand_as(@b)", n), { a.name, c.name }, { view = true })
  end
  return nil
end

function T.join(g)
  local a = g:node(function(n) return #n.shape >= 1 end)
  if not a then return nil end
  local r = #a.shape
  local n = { a = a.name }
  if g.rng:chance(0.6) then
    local d, D = g:dim(r)
    local b = g:node(function(x)
      if #x.shape ~= r then return false end
      for i = 1, r do if i ~= d and x.shape[i] ~= a.shape[i] then return false end end
      return numel(a.shape) + numel(x.shape) <= CAP
    end)
    local deps = { a.name }
    local other
    if b and g.rng:chance(0.8) then
      n.b = b.name
      other = "@b"
      deps[2] = b.name
    else
      if 2 * numel(a.shape) > CAP then return nil end
      other = g.rng:pick({ "@a * " .. num(g:const()), "@a:narrow(" .. D .. ", 1, " .. math.min(1, a.shape[d]) .. ")" })
    end
    local forms = { "lg.cat({@a, " .. other .. "}, " .. D .. ")", "lg.cat({" .. other .. ", @a}, " .. D .. ")" }
    if d == 1 then forms[#forms + 1] = "lg.cat({@a, " .. other .. "})" end
    if 3 * numel(a.shape) <= CAP then forms[#forms + 1] = "lg.cat({@a, " .. other .. ", @a}, " .. D .. ")" end
    if g.rng:chance(0.15) then
      forms = { "lg.cat({@a, lg.zeros(0, {dtype = @a.dtype}), " .. other .. "}, " .. D .. ")" }
    end
    return cand("cat", sub(g.rng:pick(forms), n), deps)
  end
  if 2 * numel(a.shape) > CAP then return nil end
  local _, D = g:dim(r, 1)
  local b = g:node(function(x) return x ~= a and same_shape(x.shape, a.shape) end)
  local deps = { a.name }
  local other
  if b and g.rng:chance(0.8) then
    n.b = b.name
    other = "@b"
    deps[2] = b.name
  else
    other = "@a * " .. num(g:const())
  end
  return cand("stack", sub(g.rng:pick({ "lg.stack({@a, " .. other .. "}, " .. D .. ")", "lg.stack({" .. other .. ", @a})" }), n),
    deps)
end

local function index_src(rng, vals, shape, as_list)
  if as_list then return list_src(vals) end
  local s = "lg.tensor(" .. list_src(vals) .. ", {dtype = 'int64'})"
  if shape and #shape ~= 1 then s = s .. ":reshape(" .. shape_src(shape) .. ")" end
  local _ = rng
  return s
end

function T.index(g)
  local a = g:node(function(n) return #n.shape >= 1 end)
  if not a then return nil end
  local r = #a.shape
  local d, D = g:dim(r)
  local size = a.shape[d]
  if size == 0 then return nil end
  local n = { a = a.name }
  local deps = { a.name }
  local k = g.rng:int(1, 4)
  if k == 1 then
    local m = g.rng:int(0, 4)
    local idx = {}
    for i = 1, m do idx[i] = g.rng:int(1, size) end
    if numel(a.shape) / size * m > CAP then return nil end
    local I = index_src(g.rng, idx, nil, g.rng:chance(0.3) and m > 0)
    return cand("index_select", sub(g.rng:pick({ "@a:index_select(" .. D .. ", " .. I .. ")",
      "lg.index_select(@a, " .. D .. ", " .. I .. ")" }), n), deps)
  elseif k == 2 then
    local ishape = {}
    for i = 1, r do ishape[i] = (i == d) and g.rng:int(1, 3) or g.rng:int(math.min(1, a.shape[i]), a.shape[i]) end
    if numel(ishape) > CAP then return nil end
    local idx = {}
    for i = 1, numel(ishape) do idx[i] = g.rng:int(1, size) end
    local I = "lg.tensor(" .. list_src(idx) .. ", {dtype = 'int64'}):reshape(" .. shape_src(ishape) .. ")"
    return cand("gather", sub(g.rng:pick({ "@a:gather(" .. D .. ", " .. I .. ")", "lg.gather(@a, " .. D .. ", " .. I .. ")" }),
      n), deps)
  elseif k == 3 then
    local m = g.rng:int(1, 4)
    local idx, idx2 = {}, {}
    for i = 1, m do idx[i] = g.rng:int(1, size); idx2[i] = g.rng:int(1, size) end
    local src = "@a:index_select(" .. D .. ", " .. index_src(g.rng, idx2) .. ") * " .. num(g:const())
    -- a node of the right shape, when there is one
    local want = copy(a.shape)
    want[d] = m
    local b = g:node(function(x) return same_shape(x.shape, want) end)
    if b then
      n.b = b.name
      src = "@b"
      deps[2] = b.name
    end
    return cand("index_add", sub(g.rng:pick({ "@a:index_add(" .. D .. ", " .. index_src(g.rng, idx) .. ", " .. src .. ")",
      "lg.index_add(@a, " .. D .. ", " .. index_src(g.rng, idx) .. ", " .. src .. ")" }), n), deps)
  else
    -- scatter_add(d, index, src): src of a's shape (or narrower), index of src's shape
    local sshape = {}
    for i = 1, r do sshape[i] = g.rng:int(math.min(1, a.shape[i]), a.shape[i]) end
    local idx = {}
    for i = 1, numel(sshape) do idx[i] = g.rng:int(1, size) end
    local src
    local b = g:node(function(x) return same_shape(x.shape, sshape) end)
    if b then
      n.b = b.name
      src = "@b"
      deps[2] = b.name
    else
      if not same_shape(sshape, a.shape) then return nil end
      src = "@a * " .. num(g:const())
    end
    local I = "lg.tensor(" .. list_src(idx) .. ", {dtype = 'int64'}):reshape(" .. shape_src(sshape) .. ")"
    return cand("scatter_add", sub(g.rng:pick({ "@a:scatter_add(" .. D .. ", " .. I .. ", " .. src .. ")",
      "lg.scatter_add(@a, " .. D .. ", " .. I .. ", " .. src .. ")" }), n), deps)
  end
end

function T.softmax(g)
  local a = g:node(function(n) return #n.shape >= 1 end)
  if not a then return nil end
  local _, D = g:dim(#a.shape)
  local forms = { "@a:softmax(" .. D .. ")", "F.softmax(@a, " .. D .. ")", "lg.softmax(@a, " .. D .. ")",
    "@a:softmax({dim = " .. D .. "})", "lg.nn.Softmax(" .. D .. ")(@a)" }
  local lforms = { "@a:log_softmax(" .. D .. ")", "F.log_softmax(@a, {dim = " .. D .. "})", "lg.log_softmax(@a, " .. D .. ")",
    "lg.nn.LogSoftmax(" .. D .. ")(@a)" }
  if g.rng:chance(0.5) then
    return cand("softmax", sub(g.rng:pick(forms), { a = a.name }), { a.name })
  end
  return cand("log_softmax", sub(g.rng:pick(lforms), { a = a.name }), { a.name })
end

-- a constant tensor of `shape` in a's dtype
local function const_tensor(g, a, shape, lo, hi)
  local vals = {}
  for i = 1, numel(shape) do vals[i] = g.rng:value(lo, hi) end
  local s = "lg.tensor(" .. list_src(vals) .. ", {dtype = " .. a.name .. ".dtype})"
  if #shape ~= 1 then s = s .. ":reshape(" .. shape_src(shape) .. ")" end
  return s
end

-- the leading (batch) dimensions of a shape of two or more
local function leading(shape)
  local out = {}
  for i = 1, #shape - 2 do out[i] = shape[i] end
  return out
end

-- scaled_dot_product_attention: q = a (..., T, d), k (..., S, d), v (..., S, dv) nodes whose
-- leading dimensions broadcast (k and v may be a itself: self-attention); causal or not, a scale
function T.attention(g)
  local a = g:node(function(x) return #x.shape >= 2 and #x.shape <= 4 end)
  if not a then return nil end
  local d = a.shape[#a.shape]
  local k = g:node(function(x)
    return #x.shape >= 2 and #x.shape <= 4 and x.shape[#x.shape] == d and broadcast(leading(a.shape), leading(x.shape)) ~= nil
  end)
  if not k then return nil end
  local S, lead = k.shape[#k.shape - 1], broadcast(leading(a.shape), leading(k.shape))
  local v = g:node(function(x)
    return #x.shape >= 2 and #x.shape <= 4 and x.shape[#x.shape - 1] == S and broadcast(lead, leading(x.shape)) ~= nil
  end)
  if not v then return nil end
  local out = broadcast(lead, leading(v.shape))
  if numel(out) * a.shape[#a.shape - 1] * v.shape[#v.shape] > CAP or numel(out) * a.shape[#a.shape - 1] * S > CAP then
    return nil
  end
  local opts = {}
  if g.rng:chance(0.4) then opts[#opts + 1] = "is_causal = true" end
  if g.rng:chance(0.3) then opts[#opts + 1] = "scale = 0.5" end
  local o = #opts > 0 and ", {" .. table.concat(opts, ", ") .. "}" or ""
  return cand("scaled_dot_product_attention", sub("F.scaled_dot_product_attention(@a, @k, @v" .. o .. ")",
    { a = a.name, k = k.name, v = v.name }), { a.name, k.name, v.name })
end

function T.nn(g)
  local k = g.rng:int(1, 7)
  if k == 1 then
    -- layer_norm over the last one or two dims
    local a = g:node(function(n) return #n.shape >= 1 end)
    if not a then return nil end
    local r = #a.shape
    local kk = math.min(r, g.rng:int(1, 2))
    local ns = {}
    for i = r - kk + 1, r do ns[#ns + 1] = a.shape[i] end
    local rows = numel(ns)
    if rows > 0 then
      -- every normalized group needs variance
      local v = fl(a)
      for base = 0, #v - rows, rows do
        local mean, sq = 0, 0
        for i = 1, rows do mean = mean + v[base + i] end
        mean = mean / rows
        for i = 1, rows do sq = sq + (v[base + i] - mean) ^ 2 end
        if sq / rows < 0.01 then return nil end
      end
    end
    local NS = (kk == 1 and g.rng:chance(0.5)) and tostring(ns[1]) or ("{" .. table.concat(ns, ", ") .. "}")
    local n = { a = a.name }
    local deps = { a.name }
    local opts = {}
    local w = g:node(function(x) return same_shape(x.shape, ns) end)
    if w and g.rng:chance(0.6) then n.w = w.name; opts[#opts + 1] = "weight = @w"; deps[#deps + 1] = w.name end
    local b = g:node(function(x) return same_shape(x.shape, ns) end)
    if b and g.rng:chance(0.6) then n.b = b.name; opts[#opts + 1] = "bias = @b"; deps[#deps + 1] = b.name end
    if g.rng:chance(0.3) then opts[#opts + 1] = "eps = 0.001" end
    local tag = rows == 0 and "layer_norm (zero-size)" or (numel(a.shape) == 0 and "layer_norm (zero-size)" or "layer_norm")
    return cand(tag, sub("F.layer_norm(@a, " .. NS .. (#opts > 0 and ", {" .. table.concat(opts, ", ") .. "}" or "") .. ")", n),
      deps)
  elseif k == 2 then
    local a = g:node(function(n)
      return (#n.shape == 2 or #n.shape == 3) and n.shape[1] >= 2 and n.shape[2] >= 1 and (#n.shape == 2 or n.shape[3] >= 1)
    end)
    if not a then return nil end
    local C = a.shape[2]
    local n = { a = a.name }
    local deps = { a.name }
    local opts = {}
    local w = g:node(function(x) return same_shape(x.shape, { C }) end)
    if w and g.rng:chance(0.6) then n.w = w.name; opts[#opts + 1] = "weight = @w"; deps[#deps + 1] = w.name end
    local b = g:node(function(x) return same_shape(x.shape, { C }) end)
    if b and g.rng:chance(0.6) then n.b = b.name; opts[#opts + 1] = "bias = @b"; deps[#deps + 1] = b.name end
    if g.rng:chance(0.5) then
      -- training: batch statistics; every channel needs variance
      local v = lg.no_grad(function()
        local x = a.value
        if #a.shape == 3 then x = x:transpose(2, 3):reshape(-1, C) end
        return x:var(1, false, { unbiased = false })
      end)
      if stats(flat(v)).min < 0.01 then return nil end
      opts[#opts + 1] = "training = true"
      return cand("batch_norm (training)", sub("F.batch_norm(@a, nil, nil, {" .. table.concat(opts, ", ") .. "})", n), deps)
    end
    local rm = const_tensor(g, a, { C }, -0.5, 0.5)
    local rv = const_tensor(g, a, { C }, 0.5, 2)
    return cand("batch_norm (eval)", sub("F.batch_norm(@a, " .. rm .. ", " .. rv ..
      (#opts > 0 and ", {" .. table.concat(opts, ", ") .. "}" or "") .. ")", n), deps)
  elseif k == 3 or k == 4 then
    local a = g:node(function(n) return (#n.shape == 2 or #n.shape == 1) and n.shape[#n.shape] >= 1 end)
    if not a then return nil end
    local C = a.shape[#a.shape]
    local N = #a.shape == 2 and a.shape[1] or nil
    local n = { a = a.name }
    local deps = { a.name }
    local labels = {}
    for i = 1, (N or 1) do labels[i] = g.rng:int(1, C) end
    local target
    if N == nil then
      target = g.rng:chance(0.5) and ("lg.tensor(" .. labels[1] .. ", {dtype = 'int64'})") or nil
      if not target then return nil end
    else
      target = g.rng:chance(0.3) and list_src(labels) or index_src(g.rng, labels)
    end
    local red = g.rng:pick({ "'mean'", "'sum'", "'none'" })
    if N == 0 and red == "'mean'" then red = "'sum'" end
    if k == 4 then
      return cand("nll_loss", sub("F.nll_loss(@a, " .. target .. ", {reduction = " .. red .. "})", n), deps)
    end
    local opts = { "reduction = " .. red }
    if g.rng:chance(0.4) then opts[#opts + 1] = "label_smoothing = " .. g.rng:pick({ "0.1", "0.25" }) end
    local tag = "cross_entropy (labels)"
    if g.rng:chance(0.35) then
      -- class probabilities, from a node of a's shape (differentiable) or constant
      local b = g:node(function(x) return same_shape(x.shape, a.shape) end)
      tag = "cross_entropy (probabilities)"
      n.b = b.name
      target = "@b:softmax(" .. (#a.shape) .. ")"
      if b ~= a then deps[#deps + 1] = b.name end
    end
    return cand(tag, sub("F.cross_entropy(@a, " .. target .. ", {" .. table.concat(opts, ", ") .. "})", n), deps)
  elseif k == 5 then
    local a = g:node()
    local b = g:node(function(x) return same_shape(x.shape, a.shape) end)
    local red = g.rng:pick({ "'mean'", "'sum'", "'none'" })
    if numel(a.shape) == 0 and red == "'mean'" then red = "'sum'" end
    return cand("mse_loss", sub("F.mse_loss(@a, @b, {reduction = " .. red .. "})", { a = a.name, b = b.name }),
      { a.name, b.name })
  elseif k == 6 then
    local a = g:node()
    local b = g:node(function(x) return same_shape(x.shape, a.shape) end)
    local red = g.rng:pick({ "'mean'", "'sum'", "'none'" })
    if numel(a.shape) == 0 and red == "'mean'" then red = "'sum'" end
    local opts = { "reduction = " .. red }
    if g.rng:chance(0.3) then opts[#opts + 1] = "pos_weight = 2" end
    if g.rng:chance(0.3) then opts[#opts + 1] = "weight = 0.5" end
    return cand("binary_cross_entropy_with_logits", sub("F.binary_cross_entropy_with_logits(@a, @b:sigmoid(), {" ..
      table.concat(opts, ", ") .. "})", { a = a.name, b = b.name }), { a.name, b.name })
  else
    -- modules with deterministic parameters
    local a = g:node(function(n) return #n.shape >= 1 and n.shape[#n.shape] >= 1 end)
    if not a then return nil end
    local C = a.shape[#a.shape]
    local v = fl(a)
    for base = 0, #v - C, C do
      local mean, sq = 0, 0
      for i = 1, C do mean = mean + v[base + i] end
      mean = mean / C
      for i = 1, C do sq = sq + (v[base + i] - mean) ^ 2 end
      if sq / C < 0.01 then return nil end
    end
    -- modules whose parameters require grad put leaves inside the program; while forward mode
    -- leaks with them (M.AVOID), the modules come without parameters
    local affine = M.AVOID.forward_mode_leak and ", elementwise_affine = false" or ""
    if #a.shape >= 2 and a.shape[1] >= 2 and #a.shape <= 3 and g.rng:chance(0.4) then
      local ch = a.shape[2]
      if ch < 1 or numel(a.shape) == 0 then return nil end
      local var = lg.no_grad(function()
        local x = a.value
        if #a.shape == 3 then x = x:transpose(2, 3):reshape(-1, ch) end
        return x:var(1, false, { unbiased = false })
      end)
      if ch < 1 or numel(a.shape) == 0 or stats(flat(var)).min < 0.01 then return nil end
      return cand("nn.BatchNorm1d", sub("lg.nn.BatchNorm1d(" .. ch .. ", {dtype = @a.dtype" ..
        (M.AVOID.forward_mode_leak and ", affine = false" or "") .. "})(@a)", { a = a.name }), { a.name })
    end
    return cand("nn.LayerNorm", sub("lg.nn.LayerNorm(" .. C .. ", {dtype = @a.dtype" .. affine .. "})(@a)", { a = a.name }),
      { a.name })
  end
end

-- (N, C, H, W) shapes of `total` elements with N <= 2, C <= 3, H and W >= 2
local function nchw_shapes(total)
  local out = {}
  for N = 1, 2 do
    for C = 1, 3 do
      if total > 0 and total % (N * C) == 0 then
        local hw = total // (N * C)
        for H = 2, hw // 2 do
          if hw % H == 0 then out[#out + 1] = { N, C, H, hw // H } end
        end
      end
    end
  end
  return out
end

-- the output length of a window of k (dilation d) sliding by s over n padded by p on each side
local function slide(n, k, s, p, d) return (n + 2 * p - d * (k - 1) - 1) // s + 1 end

-- whether every max_pool2d window of v (the flat values of an (N, C, H, W) tensor) has its
-- largest value away from the second largest: central differences break at ties
local function pool_no_ties(v, sh, k, s, p)
  local N, C, H, W = sh[1], sh[2], sh[3], sh[4]
  for plane = 0, N * C - 1 do
    for oh = 0, slide(H, k[1], s[1], p[1], 1) - 1 do
      for ow = 0, slide(W, k[2], s[2], p[2], 1) - 1 do
        local best, second = -math.huge, -math.huge
        for i = 0, k[1] - 1 do
          for j = 0, k[2] - 1 do
            local h, w = oh * s[1] - p[1] + i, ow * s[2] - p[2] + j
            if h >= 0 and h < H and w >= 0 and w < W then
              local x = v[plane * H * W + h * W + w + 1]
              if x > best then best, second = x, best elseif x > second then second = x end
            end
          end
        end
        if second > -math.huge and best - second < MARGIN then return false end
      end
    end
  end
  return true
end

-- convolutions, pooling and the adjoint ops their backward rules apply (reached directly through
-- luagrad.core's private bindings, as spec/autograd_ops_spec.lua does), on nodes viewed as
-- (N, C, H, W)
function T.conv(g)
  local a = g:node(function(n) return #nchw_shapes(numel(n.shape)) > 0 end)
  if not a then return nil end
  local sh = g.rng:pick(nchw_shapes(numel(a.shape)))
  local N, C, H, W = sh[1], sh[2], sh[3], sh[4]
  local n = { a = a.name }
  local x = sub("@a:reshape(" .. shape_src(sh) .. ")", n)
  local k = g.rng:int(1, 7)
  if k <= 4 then
    -- conv2d (k 1, 2), conv1d (k 3) or an adjoint (k 4); weight and bias nodes of the right size,
    -- else constants
    local groups = (C > 1 and g.rng:chance(0.3)) and C or 1
    local O = groups * g.rng:int(1, 2)
    local s, p, d = g.rng:int(1, 2), g.rng:int(0, 1), g.rng:pick({ 1, 1, 2 })
    local kh, kw = g.rng:int(1, math.min(3, H)), g.rng:int(1, math.min(3, W))
    local one = k == 3
    if one then
      H, W, kh = 1, H * W, 1
      x = sub("@a:reshape(" .. N .. ", " .. C .. ", " .. W .. ")", n)
    end
    local Ho, Wo = slide(H, kh, s, one and 0 or p, one and 1 or d), slide(W, kw, s, p, d)
    if Ho < 1 or Wo < 1 or N * O * Ho * Wo > CAP then return nil end
    local wshape = one and { O, C // groups, kw } or { O, C // groups, kh, kw }
    local deps = { a.name }
    local wsrc
    local wn = g:node(function(m) return numel(m.shape) == numel(wshape) end)
    if wn and g.rng:chance(0.7) then
      wsrc = wn.name .. ":reshape(" .. shape_src(wshape) .. ")"
      deps[#deps + 1] = wn.name
    else
      wsrc = const_tensor(g, a, wshape, -1, 1)
    end
    local pair = function(v1, v2) return one and tostring(v2) or ("{" .. v1 .. ", " .. v2 .. "}") end
    local opts = string.format("{stride = %d, padding = %s, dilation = %s, groups = %d}", s,
      one and tostring(p) or pair(p, p), one and "1" or pair(d, d), groups)
    if one then opts = string.format("{stride = %d, padding = %d, groups = %d}", s, p, groups) end
    if k == 4 and not one then
      -- the adjoints: conv2d_grad_input(gy, w) -> x's shape, conv2d_grad_weight(x, gy) -> w's
      local adj = "core._conv2d_adjoint"
      local args = string.format("{%d, %d}, {%d, %d}, {%d, %d}, %d", s, s, p, p, d, d, groups)
      local gy = const_tensor(g, a, { N, O, Ho, Wo }, -1, 1)
      if g.rng:chance(0.5) or wsrc:find("^lg%.tensor") then
        return cand("conv2d_grad_weight", string.format("%s(\"weight\", %s, %s, %s, {%d, %d})", adj, x, gy,
          args, kh, kw), { a.name })
      end
      return cand("conv2d_grad_input", string.format("%s(\"input\", %s, %s, %s, {%d, %d})", adj, gy, wsrc,
        args, H, W), { deps[2] })
    end
    local bias = "nil"
    local bn = g:node(function(m) return #m.shape == 1 and m.shape[1] == O end)
    if bn and g.rng:chance(0.5) then bias = bn.name; deps[#deps + 1] = bn.name end
    return cand(one and "conv1d" or "conv2d", string.format("F.%s(%s, %s, %s, %s)",
      one and "conv1d" or "conv2d", x, wsrc, bias, opts), deps)
  elseif k == 5 then
    -- max_pool2d away from ties
    local kk = { g.rng:int(1, math.min(2, H)), g.rng:int(1, math.min(2, W)) }
    if kk[1] * kk[2] == 1 then kk = { math.min(2, H), 2 } end
    local stride = { g.rng:int(1, 2), g.rng:int(1, 2) }
    local pd = { g.rng:int(0, kk[1] // 2), g.rng:int(0, kk[2] // 2) }
    if not pool_no_ties(fl(a), sh, kk, stride, pd) then return nil end
    local call = string.format("F.max_pool2d(%s, {%d, %d}, {stride = {%d, %d}, padding = {%d, %d}})", x, kk[1], kk[2],
      stride[1], stride[2], pd[1], pd[2])
    return cand("max_pool2d", call, { a.name })
  elseif k == 6 then
    -- avg_pool2d, adaptive_avg_pool2d
    if g.rng:chance(0.3) then
      return cand("adaptive_avg_pool2d", string.format("F.adaptive_avg_pool2d(%s, {%d, %d})", x,
        g.rng:int(1, H), g.rng:int(1, W)), { a.name })
    end
    local kk = { g.rng:int(1, math.min(3, H)), g.rng:int(1, math.min(3, W)) }
    local pd = { g.rng:int(0, kk[1] // 2), g.rng:int(0, kk[2] // 2) }
    return cand("avg_pool2d", string.format("F.avg_pool2d(%s, {%d, %d}, {stride = %d, padding = {%d, %d}, " ..
      "ceil_mode = %s, count_include_pad = %s})", x, kk[1], kk[2], g.rng:int(1, 2), pd[1], pd[2],
      tostring(g.rng:chance(0.3)), tostring(g.rng:chance(0.5))), { a.name })
  else
    -- avg_pool2d_backward: a's values as the gradient of a pooling of an (N, C, Hi, Wi) input
    local kk, stv = { g.rng:int(1, 3), g.rng:int(1, 3) }, g.rng:int(1, 2)
    local Hi, Wi = (H - 1) * stv + kk[1], (W - 1) * stv + kk[2]
    return cand("avg_pool2d_backward", string.format('core._avg_pool2d(%s, {%d, %d}, ' ..
      "{%d, %d}, {0, 0}, false, %s, nil, false, {%d, %d})", x, kk[1], kk[2], stv, stv, tostring(g.rng:chance(0.5)),
      Hi, Wi), { a.name })
  end
end

-- in-place writes into a fresh buffer (never into an input or a node another op saved), through
-- the buffer itself or through views of it, optionally read back through sibling views taken
-- before the writes
function T.inplace(g)
  local a = g:node()
  local r = #a.shape
  local s = st(a)
  local n = { a = a.name }
  local deps = { a.name }
  local base = g.rng:pick({ "local $ = @a * 1", "local $ = @a:clone()", "local $ = lg.zeros_like(@a); $:copy_(@a)",
    "local $ = lg.zeros(" .. shape_src(a.shape) .. ", {dtype = @a.dtype}); $:copy_(@a)",
    "local $ = lg.full(" .. shape_src(a.shape) .. ", 1, {dtype = @a.dtype}); $:mul_(@a)" })
  if r == 0 and base:find("lg%.full") then base = "local $ = @a * 1" end
  local lines = { base }
  local tags = {}
  -- sibling views, taken before the writes and read after them
  local siblings = {}
  if r >= 1 and a.shape[1] >= 1 and g.rng:chance(0.3) then
    local forms = { "$:select(1, " .. g.rng:int(1, a.shape[1]) .. ")", "$:narrow(1, 1, 1)" }
    if numel(a.shape) > 0 then forms[#forms + 1] = "$:view(-1):narrow(1, 1, 1)" end
    if r == 2 then forms[#forms + 1] = "$:t()" end
    local i = #siblings + 1
    lines[#lines + 1] = "local $_v" .. i .. " = " .. g.rng:pick(forms)
    siblings[i] = true
  end
  -- a view to write through: {source, shape of the view or nil for the whole buffer}
  local function target()
    local k = g.rng:int(1, 7)
    if k == 1 or r == 0 then return "$", a.shape end
    if k == 2 and a.shape[r] >= 1 then
      local st_ = g.rng:int(1, a.shape[r])
      local len = g.rng:int(1, a.shape[r] - st_ + 1)
      local sh = copy(a.shape)
      sh[r] = len
      return "$:narrow(" .. r .. ", " .. st_ .. ", " .. len .. ")", sh, "narrowed view"
    end
    if k == 3 and a.shape[1] >= 1 then
      local sh = {}
      for i = 2, r do sh[#sh + 1] = a.shape[i] end
      return "$:select(1, " .. g.rng:int(1, a.shape[1]) .. ")", sh, "selected view"
    end
    if k == 4 and r >= 2 then
      local sh = copy(a.shape)
      sh[1], sh[r] = sh[r], sh[1]
      return "$:transpose(1, " .. r .. ")", sh, "transposed view"
    end
    if k == 5 then
      return "$:view(-1)", { numel(a.shape) }, "flat view"
    end
    if k == 6 and r >= 2 and a.shape[1] >= 1 and a.shape[r] >= 1 then
      local sh = {}
      for i = 2, r do sh[#sh + 1] = a.shape[i] end
      sh[#sh] = 1
      return "$:select(1, " .. g.rng:int(1, a.shape[1]) .. "):narrow(" .. (r - 1) .. ", 1, 1)", sh, "view of a view"
    end
    if k == 7 then
      return "$:unsqueeze(1)", { 1, table.unpack(a.shape) }, "unsqueezed view"
    end
    return "$", a.shape
  end
  local writes = g.rng:int(1, 3)
  for _ = 1, writes do
    local tv, tshape, tname = target()
    tags[#tags + 1] = tname
    local k = g.rng:int(1, 8)
    if k == 1 then
      -- another node broadcast to the target's shape
      local b = g:node(function(x)
        local bs = broadcast(tshape, x.shape)
        return bs and same_shape(bs, tshape)
      end)
      if b then
        deps[#deps + 1] = b.name
        local op = g.rng:pick({ "add_", "sub_", "mul_", "copy_" })
        lines[#lines + 1] = tv .. ":" .. op .. "(" .. b.name .. ")"
        tags[#tags + 1] = op
      end
    elseif k == 2 then
      local op = g.rng:pick({ "mul_", "div_", "add_", "sub_" })
      lines[#lines + 1] = tv .. ":" .. op .. "(" .. num(g:const()) .. ")"
      tags[#tags + 1] = op .. " number"
    elseif k == 3 and s.maxabs <= 3 and writes == 1 then
      lines[#lines + 1] = tv .. ":pow_(2)"
      tags[#tags + 1] = "pow_"
    elseif k == 4 and writes == 1 then
      local lo, hi = g:const(-1.5, 0.5, 0), g:const(0.6, 2, 0)
      if dist_to(fl(a), lo) >= MARGIN and dist_to(fl(a), hi) >= MARGIN then
        lines[#lines + 1] = tv .. ":clamp_(" .. num(lo) .. ", " .. num(hi) .. ")"
        tags[#tags + 1] = "clamp_"
      end
    elseif k == 5 then
      lines[#lines + 1] = tv .. g.rng:pick({ ":fill_(" .. num(g:const()) .. ")", ":zero_()" })
      tags[#tags + 1] = "fill_/zero_"
    elseif k == 6 and r >= 1 and a.shape[1] >= 1 then
      local i, j = g.rng:int(1, a.shape[1]), g.rng:int(1, a.shape[1])
      lines[#lines + 1] = "$[" .. i .. "] = @a:select(1, " .. j .. ") * " .. num(g:const())
      tags[#tags + 1] = "index assignment"
    elseif k == 7 and r >= 1 and a.shape[1] >= 1 and s.max <= 4 then
      lines[#lines + 1] = "$:select(1, " .. g.rng:int(1, a.shape[1]) .. "):copy_(@a:select(1, " ..
        g.rng:int(1, a.shape[1]) .. "):exp())"
      tags[#tags + 1] = "copy_ through select"
    elseif k == 8 then
      lines[#lines + 1] = tv .. ":mul_(@a" .. (same_shape(tshape, a.shape) and "" or ":sum()") .. ")"
      tags[#tags + 1] = "mul_ by the source"
    end
  end
  local tag = "in-place"
  local seen = {}
  for _, t in ipairs(tags) do
    if t and not seen[t] then seen[t] = true; tag = tag .. " " .. t end
  end
  if #siblings > 0 then
    -- read the siblings back: added (broadcast) or summed in
    if g.rng:chance(0.5) then
      lines[#lines + 1] = "$ = $ + $_v1:sum()"
    else
      lines[#lines + 1] = "$ = $ * 1 + $_v1" .. ((r >= 2 and lines[2]:find(":t%(%)")) and ":t()" or "")
    end
    tag = tag .. " (with a sibling view)"
  end
  for i, l in ipairs(lines) do lines[i] = sub(l, n) end
  return { lines = lines, deps = deps, tag = tag }
end

-- hooks and retained gradients that must not change anything: a hook that returns nothing or
-- its gradient unchanged, retain_grad, a removed hook that would have doubled the gradient
function T.hook(g)
  local a = g:node(function(n) return not n.is_input end)
  if not a then return nil end
  local n = { a = a.name }
  local line = g.rng:pick({
    "if $.requires_grad then $:register_hook(function(gr) return gr * 1 end) end",
    "if $.requires_grad then $:register_hook(function() end) end",
    "if $.requires_grad then $:retain_grad() end",
    "if $.requires_grad then $:register_hook(function(gr) return gr * 2 end):remove() end",
  })
  if M.AVOID.hook_gc then
    -- the hook refers to its tensor, which keeps the tensor alive through backward
    line = line:gsub("function%(gr%) return", "function(gr) local _ = $; return"):gsub("function%(%) end",
      "function() local _ = $ end")
  end
  return { lines = { sub("local $ = @a * 1", n), line }, deps = { a.name }, tag = "hook" }
end

-- true when, in each slice along d (all elements when d is nil), the first k + 1 values in
-- sorted order (largest first, or smallest with `smallest`) are MARGIN apart: sort's and topk's
-- order is then the same under any small perturbation (k = nil: the whole slice)
local function apart(v, shape, d, k, smallest)
  for _, s in ipairs(slices(shape, d)) do
    local xs = {}
    for i, j in ipairs(s) do xs[i] = v[j] end
    table.sort(xs, function(x, y) if smallest then return x < y end return x > y end)
    local upto = math.min(#xs, (k or #xs) + 1)
    for i = 2, upto do
      if math.abs(xs[i] - xs[i - 1]) < MARGIN then return false end
    end
  end
  return true
end

-- a constant 0/1 mask of `shape`: int64, float, or a comparison's result
local function mask_src(rng, shape)
  local vals = {}
  for i = 1, numel(shape) do vals[i] = rng:chance(0.4) and 1 or 0 end
  local k = rng:int(1, 3)
  local s
  if k == 1 then
    s = "lg.tensor(" .. list_src(vals) .. ", {dtype = 'int64'})"
  elseif k == 2 then
    s = "lg.tensor(" .. list_src(vals) .. ")"
  else
    for i, x in ipairs(vals) do vals[i] = x == 1 and rng:pick({ 1, 2, 0.5 }) or rng:pick({ 0, -1, -0.5 }) end
    s = "lg.tensor(" .. list_src(vals) .. ", {dtype = 'float64'})"
    if #shape ~= 1 then s = s .. ":reshape(" .. shape_src(shape) .. ")" end
    return s .. ":gt(0)"
  end
  if #shape ~= 1 then s = s .. ":reshape(" .. shape_src(shape) .. ")" end
  return s
end

-- a mask shape that broadcasts with `shape`: the same, some dims 1, leading dims dropped, or
-- (when `grow`) a new leading dim that broadcasts the result wider
local function mask_shape(rng, shape, grow)
  local r = #shape
  local k = rng:int(1, grow and 5 or 4)
  if k == 1 or r == 0 then return copy(shape) end
  if k == 2 then
    local s = copy(shape)
    s[rng:int(1, r)] = 1
    return s
  end
  if k == 3 then
    local s = {}
    for i = rng:int(2, r + 1), r do s[#s + 1] = shape[i] end
    return s
  end
  if k == 4 then
    local s = {}
    for i = 1, r do s[i] = rng:chance(0.5) and 1 or shape[i] end
    return s
  end
  local s = copy(shape)
  table.insert(s, 1, rng:int(2, 3))
  return s
end

-- the sequence ops: embedding, masked_fill(_), tril/triu, sort/topk, cumsum
function T.seq(g)
  local k = g.rng:int(1, 7)
  if k == 1 then
    -- F.embedding(indices, weight): weight (num, dim) a node, indices int64 constants in 1..num;
    -- with padding_idx, the padding row is a constant row padded onto the node (its gradient is
    -- zero, and so is its finite difference), read when an index points at it
    local w = g:node(function(x) return #x.shape == 2 and x.shape[1] >= 1 end)
    if not w then return nil end
    local num_, dim = w.shape[1], w.shape[2]
    local ir = g.rng:pick({ 0, 1, 1, 2 })
    local ishape = {}
    for i = 1, ir do ishape[i] = g.rng:int(i == 1 and 0 or 1, 4) end
    if numel(ishape) * dim > CAP then return nil end
    local n = { w = w.name }
    local W, pad = "@w", nil
    local rows = num_
    if g.rng:chance(0.4) then
      local at_top = g.rng:chance(0.5)
      local value = g.rng:chance(0.5) and "" or (", {value = " .. num(g:const()) .. "}")
      W = "F.pad(@w, {0, 0, " .. (at_top and "1, 0" or "0, 1") .. "}" .. value .. ")"
      rows = num_ + 1
      pad = at_top and 1 or g.rng:pick({ rows, -1 })
    end
    local idx = {}
    for i = 1, numel(ishape) do idx[i] = g.rng:int(1, rows) end
    local I = "lg.tensor(" .. list_src(idx) .. ", {dtype = 'int64'})"
    if #ishape ~= 1 then I = I .. ":reshape(" .. shape_src(ishape) .. ")" end
    if pad then
      return cand("embedding (padding_idx)", sub("F.embedding(" .. I .. ", " .. W .. ", {padding_idx = " .. pad .. "})", n),
        { w.name })
    end
    return cand("embedding", sub("F.embedding(" .. I .. ", " .. W .. ")", n), { w.name })
  elseif k == 2 then
    -- masked_fill with a constant mask (broadcast either way) and a number or 0-d tensor value
    local a = g:node()
    local ms = mask_shape(g.rng, a.shape, true)
    local out = broadcast(a.shape, ms)
    if not out or numel(out) > CAP then return nil end
    local n = { a = a.name, m = mask_src(g.rng, ms) }
    local c = num(g:const())
    local V = g.rng:chance(0.3) and ("lg.tensor(" .. c .. ", {dtype = @a.dtype})") or c
    if #a.shape >= 1 and g.rng:chance(0.2) then
      -- the attention pattern: a huge negative value where masked, then softmax along a dim no
      -- mask row fills whole (-1e9, not -math.huge: one program in four runs with detect_anomaly,
      -- which refuses Inf in any forward result)
      local d, D = g:dim(#a.shape)
      local mv = flat(lg.no_grad(function()
        return load("local lg = ... return " .. n.m, "=mask", "t", { lg = lg })(lg):to("float64")
          :expand(out) end))
      for _, s in ipairs(slices(out, d)) do
        local all = #s > 0
        for _, j in ipairs(s) do if mv[j] == 0 then all = false end end
        if all then return nil end
      end
      return cand("masked_fill -1e9, softmax", sub("@a:masked_fill(@m, -1e9):softmax(" .. D .. ")", n), { a.name })
    end
    return cand("masked_fill", sub(g.rng:pick({ "@a:masked_fill(@m, " .. V .. ")", "lg.masked_fill(@a, @m, " .. V .. ")" }),
      n), { a.name })
  elseif k == 3 then
    -- masked_fill_ into a fresh buffer (or a view of one); the mask broadcasts to the target
    local a = g:node()
    local n = { a = a.name }
    local tv, tshape = "$", a.shape
    if #a.shape >= 2 and a.shape[1] >= 1 and g.rng:chance(0.4) then
      tshape = {}
      for i = 2, #a.shape do tshape[#tshape + 1] = a.shape[i] end
      tv = "$:select(1, " .. g.rng:int(1, a.shape[1]) .. ")"
    end
    n.m = mask_src(g.rng, mask_shape(g.rng, tshape, false))
    return cand("masked_fill_" .. (tv == "$" and "" or " through a view"), { sub(g.rng:pick({ "local $ = @a * 1",
      "local $ = @a:clone()" }), n), sub(tv .. ":masked_fill_(@m, " .. num(g:const()) .. ")", n) }, { a.name })
  elseif k == 4 then
    local a = g:node(function(x) return #x.shape >= 2 end)
    if not a then return nil end
    local r = #a.shape
    local K = tostring(g.rng:int(-a.shape[r - 1] - 1, a.shape[r] + 1))
    local m = g.rng:pick({ "tril", "triu" })
    return cand(m, sub(g.rng:pick({ "@a:" .. m .. "(" .. K .. ")", "lg." .. m .. "(@a, " .. K .. ")",
      "@a:" .. m .. "({diagonal = " .. K .. "})", "@a:" .. m .. "()" }), { a = a.name }), { a.name })
  elseif k == 5 then
    -- sort: the values, or the indices too (gathering another node, or undoing the sort)
    local a = g:node()
    local r = #a.shape
    local d, D = 1, "1"
    if r >= 1 then d, D = g:dim(r) end
    if not apart(fl(a), a.shape, r >= 1 and d or nil, nil, false) then return nil end
    local desc = g.rng:pick({ "", ", true", ", false" })
    local n = { a = a.name }
    local m = g.rng:int(1, 4)
    if m == 1 or r == 0 then
      return cand("sort", sub(g.rng:pick({ "(@a:sort(" .. D .. desc .. "))",
        "(lg.sort(@a, {dim = " .. D .. ", descending = " .. tostring(desc == ", true") .. "}))",
        r == 0 and "(@a:sort())" or "(@a:sort(" .. D .. desc .. "))" }), n), { a.name })
    elseif m == 2 then
      local b = g:node(function(x) return same_shape(x.shape, a.shape) end)
      n.b = b.name
      return cand("sort (indices gather)", { sub("local $_v, $_i = @a:sort(" .. D .. desc .. ")", n),
        sub("local $ = $_v * 0.5 + @b:gather(" .. D .. ", $_i)", n) }, { a.name, b.name })
    elseif m == 3 then
      return cand("sort (indices scatter back)", { sub("local $_v, $_i = lg.sort(@a, " .. D .. desc .. ")", n),
        sub("local $ = lg.zeros_like(@a):scatter_add(" .. D .. ", $_i, $_v:exp())", n) }, { a.name })
    end
    return cand("sort (stable)", sub("(@a:sort({dim = " .. D .. ", stable = true}))", n), { a.name })
  elseif k == 6 then
    local a = g:node(function(x) return #x.shape >= 1 end)
    if not a then return nil end
    local r = #a.shape
    local d, D = g:dim(r)
    local K = g.rng:int(0, a.shape[d])
    local largest = g.rng:chance(0.6)
    if not apart(fl(a), a.shape, d, K, not largest) then return nil end
    local n = { a = a.name }
    local forms
    if largest then
      forms = { "(@a:topk(" .. K .. ", " .. D .. "))", "(lg.topk(@a, " .. K .. ", {dim = " .. D .. "}))" }
      if d == r then forms[#forms + 1] = "(@a:topk(" .. K .. "))" end
    else
      forms = { "(@a:topk(" .. K .. ", " .. D .. ", false))", "(lg.topk(@a, " .. K .. ", {dim = " .. D ..
        ", largest = false}))" }
    end
    if g.rng:chance(0.3) then
      local v = g.rng:pick(forms):sub(2, -2)
      return cand("topk (indices)", { sub("local $_v, $_i = " .. v, n),
        sub("local $ = $_v + @a:gather(" .. D .. ", $_i) * 2", n) }, { a.name })
    end
    return cand("topk", sub(g.rng:pick(forms), n), { a.name })
  else
    local a = g:node()
    local r = #a.shape
    local _, D = g:dim(math.max(r, 1))
    if r == 0 then D = g.rng:pick({ "1", "-1" }) end
    return cand("cumsum", sub(g.rng:pick({ "@a:cumsum(" .. D .. ")", "lg.cumsum(@a, " .. D .. ")",
      "@a:cumsum({dim = " .. D .. "})" }), { a = a.name }), { a.name })
  end
end

local TEMPLATES = {
  { T.unary, 14 }, { T.scalar, 8 }, { T.binary, 12 }, { T.reduce, 10 }, { T.matmul, 6 }, { T.view, 16 },
  { T.join, 5 }, { T.index, 6 }, { T.softmax, 4 }, { T.nn, 6 }, { T.inplace, 6 }, { T.hook, 2 }, { T.attention, 2 },
  { T.conv, 4 }, { T.seq, 7 },
}

local function pick_template(rng)
  local total = 0
  for _, t in ipairs(TEMPLATES) do total = total + t[2] end
  local x = rng:int(1, total)
  for _, t in ipairs(TEMPLATES) do
    x = x - t[2]
    if x <= 0 then return t[1] end
  end
end

-- ---- programs --------------------------------------------------------------------------------

-- The program's source text (see the top of this file).
function M.source(p, outputs, keep)
  local out = {}
  out[#out + 1] = "local lg = require \"luagrad\""
  out[#out + 1] = "local F = lg.nn.functional"
  out[#out + 1] = "local core = require \"luagrad.core\""
  out[#out + 1] = string.format("local P = { seed = %d, grad_api = %q, fwd_api = %q, double_backward = %s }",
    p.seed, p.grad_api, p.fwd_api, tostring(p.double_backward))
  out[#out + 1] = "function P.inputs(DT)"
  out[#out + 1] = "  local o = { dtype = DT }"
  local names = {}
  for _, x in ipairs(p.inputs) do
    out[#out + 1] = string.format("  local %s = %s -- %s %s", x.name, x.src, shape_str(x.shape), x.layout)
    names[#names + 1] = x.name
  end
  out[#out + 1] = "  return { " .. table.concat(names, ", ") .. " }"
  out[#out + 1] = "end"
  out[#out + 1] = "function P.f(" .. table.concat(names, ", ") .. ")"
  for _, s in ipairs(p.stmts) do
    if not keep or keep[s.name] then
      for _, l in ipairs(s.lines) do out[#out + 1] = "  " .. l end
      out[#out - #s.lines + 1] = out[#out - #s.lines + 1] .. " -- " .. shape_str(s.shape)
    end
  end
  out[#out + 1] = "  return { " .. table.concat(outputs or p.outputs, ", ") .. " }"
  out[#out + 1] = "end"
  out[#out + 1] = "return P"
  return table.concat(out, "\n") .. "\n"
end

-- Loads a program's source into P (inputs, f and the options).
function M.load(src)
  local chunk, err = load(src, "=program", "t")
  if not chunk then error("program does not compile: " .. err) end
  return chunk()
end

-- Generates program number k of a run with seed `seed`. Returns the program: its inputs and
-- statements, its outputs, its source, and gen_failures (a valid-looking statement raised).
function M.generate(seed, k, opts)
  opts = opts or {}
  local pseed = M.program_seed(seed, k)
  local rng = M.rng(pseed)
  local g = setmetatable({ rng = rng, nodes = {} }, Gen)
  local p = {
    seed = pseed, run_seed = seed, index = k, inputs = {}, stmts = {}, gen_failures = {},
    grad_api = rng:pick({ "grad", "grad", "backward", "vjp", "backward_twice", "backward_each" }),
    fwd_api = rng:pick({ "jvp", "jvp", "jvp", "jacobian" }),
    double_backward = rng:chance(opts.double_backward_share or 0.35),
  }
  -- inputs
  local ninputs = rng:int(1, 3)
  local base = random_shape(rng, rng:pick({ 0, 1, 2, 2, 2, 3, 3, 4 }))
  for i = 1, ninputs do
    local shape = (i == 1) and base or related_shape(rng, base)
    if rng:chance(0.07) and #shape > 0 then shape[rng:int(1, #shape)] = 0 end
    local kind = rng:chance(0.3) and "positive" or "signed"
    local layout = rng:pick(LAYOUTS)
    local src, lay = make_input(rng, shape, kind, layout)
    local x = { name = "x" .. i, shape = shape, src = src, layout = lay, kind = kind, fresh = false }
    p.inputs[i] = x
    local chunk = assert(load("local o = { dtype = 'float64' }; return " .. src, "=input", "t", { lg = lg }))
    x.value = chunk()
    g.nodes[#g.nodes + 1] = x
  end
  -- statements
  local want = rng:int(opts.min_stmts or 2, opts.max_stmts or 12)
  local tries = 0
  while #p.stmts < want and tries < want * 12 do
    tries = tries + 1
    local c = pick_template(rng)(g)
    if c then
      local name = "v" .. (#p.stmts + 1)
      local ok, value = eval_lines(g, c.lines, name)
      local lines = {}
      for i, l in ipairs(c.lines) do lines[i] = (l:gsub("%$", name)) end
      if not ok then
        -- a call the generator believes valid raised: a finding (the spec reports it)
        p.gen_failures[#p.gen_failures + 1] = { tag = c.tag, lines = lines, deps = c.deps, err = tostring(value),
          stmts = #p.stmts }
      elseif lg.is_tensor(value) and value.dtype == "float64" then
        local s = stats(flat(value))
        local finite = s.maxabs == s.maxabs and s.maxabs <= LIMIT
        if finite and numel(value.shape) <= CAP and (not c.post or c.post(value)) then
          local node = { name = name, shape = value.shape, value = value, lines = lines, deps = c.deps, tag = c.tag,
            fresh = not c.view }
          p.stmts[#p.stmts + 1] = node
          g.nodes[#g.nodes + 1] = node
          for _, dname in ipairs(c.deps) do
            for _, m in ipairs(g.nodes) do if m.name == dname then m.used = true end end
          end
        end
      else
        p.gen_failures[#p.gen_failures + 1] = { tag = c.tag, lines = lines, deps = c.deps,
          err = "result is " .. (lg.is_tensor(value) and value.dtype or type(value)) .. ", expected a float64 tensor",
          stmts = #p.stmts }
      end
    end
  end
  -- outputs: the last node, and sometimes another one nothing used
  local outputs = {}
  if #p.stmts == 0 then
    outputs[1] = p.inputs[1].name
  else
    outputs[1] = p.stmts[#p.stmts].name
    local spare = {}
    for i = 1, #p.stmts - 1 do if not p.stmts[i].used then spare[#spare + 1] = p.stmts[i].name end end
    if #spare > 0 and rng:chance(0.5) then outputs[2] = rng:pick(spare) end
  end
  p.outputs = outputs
  p.tags = {}
  for _, s in ipairs(p.stmts) do p.tags[#p.tags + 1] = s.tag end
  p.src = M.source(p)
  return p
end

-- The statements output `names` needs (dead code removed): a set of statement names.
local function needed(p, names)
  local byname = {}
  for _, s in ipairs(p.stmts) do byname[s.name] = s end
  local keep = {}
  local function visit(name)
    local s = byname[name]
    if not s or keep[name] then return end
    keep[name] = true
    for _, d in ipairs(s.deps) do visit(d) end
  end
  for _, n in ipairs(names) do visit(n) end
  return keep
end
M.needed = needed

-- A program made of p's first `upto` statements plus the failing candidate `extra` (lines,
-- deps), dead code removed: the reproducer of a generator finding.
function M.source_with(p, extra, name)
  local q = { seed = p.seed, grad_api = p.grad_api, fwd_api = p.fwd_api, double_backward = p.double_backward,
    inputs = p.inputs, stmts = {} }
  for i = 1, extra.stmts do q.stmts[i] = p.stmts[i] end
  q.stmts[#q.stmts + 1] = { name = name, lines = extra.lines, deps = extra.deps, shape = { "?" } }
  local keep = needed(q, { name })
  return M.source(q, { name }, keep)
end

-- ---- the checks ------------------------------------------------------------------------------

local checks = {}
M.checks = checks

local function tensors_of(list, DT, rng, layout_rng)
  -- random tensors of the shapes of `list` on the grid in [-1, 1], contiguous or (with
  -- layout_rng) sometimes transposed or expanded views
  local out = {}
  for i, t in ipairs(list) do
    local shape = t.shape
    local r = #shape
    local n = numel(shape)
    local vals = {}
    for j = 1, n do vals[j] = rng:value(-1, 1) end
    local x = lg.tensor(vals, { dtype = DT }):reshape(shape)
    if layout_rng and r >= 2 and layout_rng:chance(0.4) then
      local ts = copy(shape)
      ts[r - 1], ts[r] = shape[r], shape[r - 1]
      x = lg.tensor(vals, { dtype = DT }):reshape(ts):transpose(r - 1, r)
    end
    out[i] = x
  end
  return out
end

local function as_list(y)
  if lg.is_tensor(y) then return { y } end
  return y
end

local function zeros_for(x) return lg.zeros_like(x:detach(), { dtype = x.dtype }) end

local function clone_all(xs, dtype)
  local out = {}
  for i, x in ipairs(xs) do
    local c = x:detach():contiguous():clone()
    if dtype and c.dtype ~= dtype then c = c:to(dtype) end
    out[i] = c
  end
  return out
end

local function leaves(xs)
  local out = {}
  for i, x in ipairs(xs) do out[i] = x:detach():requires_grad_(true) end
  return out
end

-- sum_k sum(W_k * y_k) as a number
local function loss_value(ys, W)
  local s = 0
  for k, y in ipairs(ys) do
    if y:numel() > 0 then s = s + (y:detach() * W[k]):sum():item() end
  end
  return s
end

-- |sum| of |W_k * y_k|: the scale of the loss's terms
local function loss_scale(ys, W)
  local s = 0
  for k, y in ipairs(ys) do
    if y:numel() > 0 then s = s + (y:detach() * W[k]):abs():sum():item() end
  end
  return s
end

local function max_abs(t)
  if t:numel() == 0 then return 0 end
  local v = t:detach():abs():max():item()
  return v
end

local function all_finite(t)
  if t:numel() == 0 then return true end
  local s = t:detach():sum():item()
  local m = t:detach():abs():max():item()
  return s == s and m < math.huge
end

local function fmt_idx(shape, j)
  local idx, k = {}, j - 1
  for d = #shape, 1, -1 do
    idx[d] = k % shape[d] + 1
    k = k // shape[d]
  end
  return "{" .. table.concat(idx, ",") .. "}"
end

-- elementwise comparison of two lists of tensors; returns nil or a message for the worst element
local function compare(what, got, want, atol, rtol, names)
  for k = 1, #want do
    local a, b = got[k], want[k]
    if a == nil or b == nil then
      if (a == nil) ~= (b == nil) then return string.format("%s %s: one side is missing", what, names and names[k] or k) end
    else
      if not same_shape(a.shape, b.shape) then
        return string.format("%s %s: shape %s, expected %s", what, names and names[k] or k, shape_str(a.shape),
          shape_str(b.shape))
      end
      local fa, fb = flat(a:double()), flat(b:double())
      local worst, at = -1, nil
      for j = 1, #fb do
        local err = math.abs(fa[j] - fb[j])
        local tol = atol + rtol * math.abs(fb[j])
        local excess = err / tol
        if err ~= err or fa[j] ~= fa[j] then excess = math.huge end
        if excess > worst then worst, at = excess, j end
      end
      if worst > 1 then
        return string.format("%s %s, element %s: got %.17g, expected %.17g (|diff| %.3g, tolerance %.3g)",
          what, names and names[k] or k, fmt_idx(b.shape, at), fa[at], fb[at], math.abs(fa[at] - fb[at]),
          atol + rtol * math.abs(fb[at]))
      end
    end
  end
  return nil
end

local function names_of(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. i end
  return t
end

-- reverse-mode gradients of L = sum_k sum(W_k * y_k) with respect to xs (views, made leaves)
local function reverse(P, xs, W, api, create_graph)
  if api == "vjp" and not create_graph then
    local ys, gs = lg.autograd.vjp(function(...) return P.f(...) end, xs, W)
    return as_list(ys), as_list(gs)
  end
  local ls = leaves(xs)
  local ys = as_list(lg.enable_grad(P.f, table.unpack(ls)))
  local any = false
  for _, y in ipairs(ys) do if y.requires_grad then any = true end end
  local gs = {}
  if not any then
    for i, x in ipairs(ls) do gs[i] = zeros_for(x) end
    return ys, gs, ls
  end
  if api == "backward" or api == "backward_twice" then
    -- L = sum_k sum(W_k * y_k), backward into the leaves' .grad (twice: .grad accumulates)
    local L
    for k, y in ipairs(ys) do
      local term = (y * W[k]):sum()
      L = L and (L + term) or term
    end
    if api == "backward_twice" then
      L:backward({ retain_graph = true })
      L:backward()
      for i, x in ipairs(ls) do gs[i] = x.grad and (x.grad / 2) or zeros_for(x) end
    else
      L:backward({ create_graph = create_graph })
      for i, x in ipairs(ls) do gs[i] = x.grad or (not create_graph and zeros_for(x)) or nil end
    end
    return ys, gs, ls
  end
  if api == "backward_each" then
    -- one backward per output, each with its weights as the gradient, accumulating in .grad
    for k, y in ipairs(ys) do
      if y.requires_grad then y:backward(W[k], { retain_graph = true }) end
    end
    for i, x in ipairs(ls) do gs[i] = x.grad or zeros_for(x) end
    return ys, gs, ls
  end
  local outs, gos = {}, {}
  for k, y in ipairs(ys) do
    if y.requires_grad then outs[#outs + 1] = y; gos[#gos + 1] = W[k] end
  end
  local r = lg.autograd.grad(outs, ls, { grad_outputs = gos, allow_unused = true, create_graph = create_graph })
  for i, x in ipairs(ls) do gs[i] = r[i] or (create_graph and nil) or zeros_for(x) end
  return ys, gs, ls
end

local function forward(P, xs, tangents)
  local ys, ts = lg.autograd.jvp(function(...) return P.f(...) end, xs, tangents)
  return as_list(ys), as_list(ts)
end

-- The checks on P; returns a list of failures {kind, msg} and a table of counts per check.
-- opts.only: run only this check; opts.fd_max: most elements probed by finite differences.
function checks.run(P, opts)
  opts = opts or {}
  local failures, ran = {}, {}
  -- reverse and forward run always (the other checks compare against them); opts.only skips
  -- the rest and reports only its own kind
  local function want(kind)
    return not opts.only or opts.only == kind or kind == "reverse" or kind == "forward_vs_reverse"
  end
  local function fail(kind, msg)
    if not opts.only or opts.only == kind then failures[#failures + 1] = { kind = kind, msg = msg } end
  end
  local function guarded(kind, fn)
    if not want(kind) then return end
    ran[kind] = true
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then fail(kind, "raised: " .. tostring(err)) end
  end

  local rng = M.rng(P.seed + 17)
  local X, Y, G, W, JT, Tn, S
  local reverse_ok = false
  -- the baseline: the program on its (view) inputs in float64
  local ok, err = xpcall(function()
    X = P.inputs("float64")
    Y = as_list(lg.no_grad(P.f, table.unpack(X)))
    for k, y in ipairs(Y) do
      if y.dtype ~= "float64" then error(string.format("output %d of the float64 program is %s", k, y.dtype)) end
    end
    W = tensors_of(Y, "float64", rng)
    Tn = tensors_of(X, "float64", rng, rng)
    S = loss_scale(Y, W)
  end, debug.traceback)
  if not ok then
    fail("forward", "raised: " .. tostring(err))
    return failures, ran
  end
  for k, y in ipairs(Y) do
    if not all_finite(y) then fail("nonfinite", "output " .. k .. " holds NaN or Inf") end
  end

  guarded("reverse", function()
    -- one program in four runs its reverse pass with anomaly detection on: finite programs must
    -- not trip it
    local anomaly = P.seed % 4 == 1
    if anomaly then lg.autograd.detect_anomaly(true) end
    local ok_, ys, gs = pcall(reverse, P, X, W, P.grad_api)
    if anomaly then lg.autograd.detect_anomaly(false) end
    if not ok_ then error(ys, 0) end
    local msg = compare("reverse-mode output", ys, Y, 1e-12, 1e-12, names_of("y", #Y))
    if msg then fail("reverse", msg) end
    for i, g in ipairs(gs) do
      if not same_shape(g.shape, X[i].shape) then
        fail("reverse", string.format("gradient of x%d has shape %s, input has %s", i, shape_str(g.shape), shape_str(X[i].shape)))
      elseif not all_finite(g) then
        fail("reverse", string.format("gradient of x%d holds NaN or Inf", i))
      end
    end
    G = gs
    reverse_ok = true
  end)
  if not G then
    -- the checks below compare against the reverse-mode gradients: without them only the
    -- forward-mode checks run
    local keep = { reverse = true, forward_vs_reverse = true, forward_vs_fd = true, jacobian = true, roundtrip = true }
    local inner = guarded
    guarded = function(kind, fn) if keep[kind] then return inner(kind, fn) end end
    G = {}
    for i, x in ipairs(X) do G[i] = zeros_for(x) end
  end

  -- (a) reverse mode against central differences of L, element by element
  guarded("reverse_vs_fd", function()
    local eps = 1e-6
    local xc = clone_all(X)
    local probes = {}
    for i, x in ipairs(xc) do
      for j = 1, x:numel() do probes[#probes + 1] = { i, j } end
    end
    local fd_max = opts.fd_max or 64
    local prng = M.rng(P.seed + 29)
    while #probes > fd_max do table.remove(probes, prng:int(1, #probes)) end
    for _, pr in ipairs(probes) do
      local i, j = pr[1], pr[2]
      local fx = xc[i]:view(-1)
      local orig = fx[j]
      fx[j] = orig + eps
      local lp = loss_value(as_list(lg.no_grad(P.f, table.unpack(xc))), W)
      fx[j] = orig - eps
      local lm = loss_value(as_list(lg.no_grad(P.f, table.unpack(xc))), W)
      fx[j] = orig
      local numeric = (lp - lm) / (2 * eps)
      local analytic = G[i]:contiguous():view(-1)[j]
      local tol = 1e-6 * (1 + S) + 1e-5 * math.abs(numeric)
      if not (math.abs(analytic - numeric) <= tol) then
        fail("reverse_vs_fd", string.format("dL/dx%d at element %s: reverse mode %.17g, central differences %.17g " ..
          "(|diff| %.3g, tolerance %.3g)", i, fmt_idx(X[i].shape, j), analytic, numeric, math.abs(analytic - numeric), tol))
        return
      end
    end
  end)

  -- (b) forward mode against reverse mode
  -- the full Jacobians by jacobian(mode = "forward") and jacobian(mode = "reverse")
  if P.fwd_api == "jacobian" and #X == 1 and #Y == 1 and X[1]:numel() * Y[1]:numel() <= 400 then
    guarded("jacobian", function()
      local f1 = function(x) return P.f(x)[1] end
      local jf = lg.autograd.jacobian(f1, X[1], { mode = "forward" })
      local jr = lg.autograd.jacobian(f1, X[1], { mode = "reverse" })
      local msg = compare("Jacobian (forward mode vs reverse mode)", { jf }, { jr }, 1e-10, 1e-10, { "J" })
      if msg then fail("jacobian", msg) end
    end)
  end

  guarded("forward_vs_reverse", function()
    local ys, ts = forward(P, X, Tn)
    local msg = compare("forward-mode output", ys, Y, 1e-12, 1e-12, names_of("y", #Y))
    if msg then fail("forward_vs_reverse", msg) return end
    JT = ts
    for k, t in ipairs(ts) do
      if not same_shape(t.shape, Y[k].shape) then
        fail("forward_vs_reverse", string.format("tangent of y%d has shape %s, output has %s", k, shape_str(t.shape),
          shape_str(Y[k].shape)))
        return
      end
    end
    if not reverse_ok then return end
    -- <W, J t> = sum_i <g_i, t_i>
    local lhs, rhs, scale = 0, 0, 1
    for k, t in ipairs(ts) do
      if t:numel() > 0 then
        lhs = lhs + (t * W[k]):sum():item()
        scale = scale + (t * W[k]):abs():sum():item()
      end
    end
    for i, g in ipairs(G) do
      if g:numel() > 0 then
        rhs = rhs + (g * Tn[i]):sum():item()
        scale = scale + (g * Tn[i]):abs():sum():item()
      end
    end
    if not (math.abs(lhs - rhs) <= 1e-9 * scale) then
      fail("forward_vs_reverse", string.format("<W, J t> by forward mode %.17g, sum <dL/dx_i, t_i> by reverse mode %.17g " ..
        "(|diff| %.3g, scale %.3g)", lhs, rhs, math.abs(lhs - rhs), scale))
    end
  end)

  -- J t against central differences of f along t
  guarded("forward_vs_fd", function()
    if not JT then return end
    local eps = 1e-6
    local xp, xm = clone_all(X), clone_all(X)
    for i = 1, #X do
      xp[i] = xp[i] + Tn[i] * eps
      xm[i] = xm[i] - Tn[i] * eps
    end
    local yp = as_list(lg.no_grad(P.f, table.unpack(xp)))
    local ym = as_list(lg.no_grad(P.f, table.unpack(xm)))
    local num_ = {}
    local scale = 0
    for k = 1, #Y do
      num_[k] = (yp[k] - ym[k]) / (2 * eps)
      scale = math.max(scale, max_abs(Y[k]), max_abs(num_[k]))
    end
    local msg = compare("J t (forward mode vs central differences)", JT, num_, 1e-6 * (1 + scale), 1e-5, names_of("y", #Y))
    if msg then fail("forward_vs_fd", msg) end
  end)

  -- (c) float32 against float64: values, gradients and J t
  guarded("float32", function()
    local X32 = P.inputs("float32")
    local Y32 = as_list(lg.no_grad(P.f, table.unpack(X32)))
    for k, y in ipairs(Y32) do
      if y.dtype ~= "float32" then fail("float32", string.format("output %d of the float32 program is %s", k, y.dtype)) return end
    end
    local scale = 0
    for _, y in ipairs(Y) do scale = math.max(scale, max_abs(y)) end
    local msg = compare("float32 value", Y32, Y, 2e-4 * (1 + scale), 2e-4, names_of("y", #Y))
    if msg then fail("float32", msg) return end
    local W32, T32 = {}, {}
    for k, w in ipairs(W) do W32[k] = w:float() end
    for i, t in ipairs(Tn) do T32[i] = t:float() end
    local _, g32 = reverse(P, X32, W32, P.grad_api)
    local gscale = 0
    for _, g in ipairs(G) do gscale = math.max(gscale, max_abs(g)) end
    msg = compare("float32 gradient", g32, G, 1e-3 * (1 + gscale), 1e-3, names_of("dL/dx", #G))
    if msg then fail("float32", msg) return end
    if JT then
      local _, t32 = forward(P, X32, T32)
      local tscale = 0
      for _, t in ipairs(JT) do tscale = math.max(tscale, max_abs(t)) end
      msg = compare("float32 J t", t32, JT, 1e-3 * (1 + tscale), 1e-3, names_of("y", #Y))
      if msg then fail("float32", msg) end
    end
  end)

  -- (d) contiguous copies of the inputs against the views
  guarded("views", function()
    local xc = clone_all(X)
    local yc = as_list(lg.no_grad(P.f, table.unpack(xc)))
    local scale = 1
    for _, y in ipairs(Y) do scale = math.max(scale, max_abs(y)) end
    local msg = compare("value on contiguous inputs vs on the views", yc, Y, 1e-12 * scale, 1e-10, names_of("y", #Y))
    if msg then fail("views", msg) return end
    local _, gc = reverse(P, xc, W, P.grad_api)
    local gscale = 1
    for _, g in ipairs(G) do gscale = math.max(gscale, max_abs(g)) end
    msg = compare("gradient on contiguous inputs vs on the views", gc, G, 1e-12 * gscale, 1e-10, names_of("dL/dx", #G))
    if msg then fail("views", msg) return end
    if JT then
      local Tc = clone_all(Tn)
      local _, tc = forward(P, xc, Tc)
      local tscale = 1
      for _, t in ipairs(JT) do tscale = math.max(tscale, max_abs(t)) end
      msg = compare("J t on contiguous inputs vs on the views", tc, JT, 1e-12 * tscale, 1e-10, names_of("y", #Y))
      if msg then fail("views", msg) end
    end
  end)

  -- the outputs survive lg.save/lg.load and tolist/lg.tensor bit for bit, whatever their layout
  guarded("roundtrip", function()
    local path = os.tmpname()
    local ok_, e = pcall(function()
      lg.save(path, Y)
      local back = lg.load(path)
      for k, y in ipairs(Y) do
        local b = back[k]
        if not lg.is_tensor(b) or not same_shape(b.shape, y.shape) or b.dtype ~= y.dtype then
          fail("roundtrip", string.format("lg.load(lg.save(y%d)) gives %s, expected a %s tensor of shape %s", k,
            lg.is_tensor(b) and (b.dtype .. " " .. shape_str(b.shape)) or type(b), y.dtype, shape_str(y.shape)))
          return
        end
        local msg = compare("save/load", { b }, { y }, 0, 0, { "y" .. k })
        if msg then fail("roundtrip", msg) return end
        if y:numel() > 0 then
          local t = lg.tensor(y:tolist(), { dtype = y.dtype })
          msg = compare("lg.tensor(y:tolist())", { t:reshape(y.shape) }, { y }, 0, 0, { "y" .. k })
          if msg then fail("roundtrip", msg) return end
        end
      end
    end)
    os.remove(path)
    if not ok_ then error(e, 0) end
  end)

  -- (e) double backward: H d against central differences of the gradient along d
  if P.double_backward then
    guarded("double_backward", function()
      local D = tensors_of(X, "float64", M.rng(P.seed + 41))
      -- the first-order graph from autograd.grad or from backward({create_graph = true})
      local _, gs, ls = reverse(P, X, W, P.seed % 2 == 0 and "grad" or "backward", true)
      local s2
      for i = 1, #X do
        local g = gs[i]
        if g and g.requires_grad then
          local term = (g * D[i]):sum()
          s2 = s2 and (s2 + term) or term
        end
      end
      local hd = {}
      if s2 then
        local r = lg.autograd.grad(s2, ls, { allow_unused = true })
        for i, x in ipairs(X) do hd[i] = r[i] or zeros_for(x) end
      else
        for i, x in ipairs(X) do hd[i] = zeros_for(x) end
      end
      local eps = 1e-5
      local xp, xm = clone_all(X), clone_all(X)
      for i = 1, #X do
        xp[i] = xp[i] + D[i] * eps
        xm[i] = xm[i] - D[i] * eps
      end
      local _, gp = reverse(P, xp, W, "grad")
      local _, gm = reverse(P, xm, W, "grad")
      local num_ = {}
      local scale = 0
      for i = 1, #X do
        num_[i] = (gp[i] - gm[i]) / (2 * eps)
        scale = math.max(scale, max_abs(num_[i]), max_abs(G[i]))
      end
      local msg = compare("H d (double backward vs central differences of the gradient)", hd, num_, 1e-5 * (1 + scale), 1e-4,
        names_of("x", #X))
      if msg then fail("double_backward", msg) end
    end)
  end
  return failures, ran
end

-- ---- shrinking a failure ---------------------------------------------------------------------

-- A smaller program that still fails check `kind`: the shortest prefix (single output, dead code
-- removed) that fails, then inputs made contiguous where that keeps the failure. Returns the
-- source and the failure, or nil when no smaller program fails.
function M.shrink(p, kind)
  local function fails(src)
    local ok, P = pcall(M.load, src)
    if not ok then return nil end
    local fs = checks.run(P, { only = kind })
    for _, f in ipairs(fs) do if f.kind == kind then return f end end
    -- a failing baseline counts for the checks that need it
    for _, f in ipairs(fs) do if f.kind == "forward" or f.kind == "nonfinite" then return nil end end
    return nil
  end
  local best_src, best_f, best_tag
  for i = 1, #p.stmts do
    local name = p.stmts[i].name
    local src = M.source(p, { name }, needed(p, { name }))
    local f = fails(src)
    if f then
      -- the tag of the failing statement first, then those of the statements it needs
      local keep, tags = needed(p, { name }), { p.stmts[i].tag }
      for j = 1, i - 1 do if keep[p.stmts[j].name] then tags[#tags + 1] = p.stmts[j].tag end end
      best_src, best_f, best_tag = src, f, table.concat(tags, "; ")
      break
    end
  end
  if not best_src then return nil end
  -- inputs: contiguous where the failure stays
  local q = {}
  for k, v in pairs(p) do q[k] = v end
  q.inputs = {}
  for i, x in ipairs(p.inputs) do q.inputs[i] = x end
  local out = best_src:match("function P%.f%(.*return { ([%w_, ]+) }\nend")
  local outs = {}
  for n in (out or ""):gmatch("[%w_]+") do outs[#outs + 1] = n end
  for i, x in ipairs(p.inputs) do
    if x.layout ~= "contiguous" then
      local vals = flat(x.value)
      local c = {}
      for k, v in pairs(x) do c[k] = v end
      c.src = string.format("lg.tensor(%s, o):reshape(%s)", list_src(vals), shape_src(x.shape))
      c.layout = "contiguous (shrunk from " .. x.layout .. ")"
      q.inputs[i] = c
      local src = M.source(q, outs, needed(q, outs))
      local f = fails(src)
      if f then best_src, best_f = src, f else q.inputs[i] = x end
    end
  end
  return best_src, best_f, best_tag
end

-- ---- reproducers and known bugs --------------------------------------------------------------

-- The text to paste into a file and run from the repository root with build/luagrad.
function M.reproducer(src, kind, msg, header)
  local body = src:gsub("return P\n$", "")
  local lines = {
    "-- luagrad property-check reproducer. Run from the repository root: build/luagrad repro.lua",
    "-- " .. (header or ""),
    "-- failing check: " .. kind,
    "-- " .. tostring(msg):gsub("\n", "\n-- "),
    body,
    "package.path = \"spec/?.lua;\" .. package.path",
    "local checks = require(\"helpers.program\").checks",
    string.format("local failures = checks.run(P, { only = %q })", kind),
    "for _, f in ipairs(failures) do print(f.kind .. \": \" .. f.msg) end",
    "print(#failures == 0 and \"check passes\" or \"check fails\")",
  }
  return table.concat(lines, "\n") .. "\n"
end

-- The known open bugs (being fixed elsewhere), and the bugs these checks found that are
-- reported and not yet fixed: a finding that matches one is reported as pending with this
-- reason instead of failing. Each has a test: fn(kind, message, source, tag), where tag names
-- the last statement of the shrunk program. Remove an entry when its bug is fixed.
M.KNOWN = {
}

function M.known(kind, msg, src, tag)
  msg = (msg or ""):match("^[^\n]*") -- the message, not the traceback after it
  for _, k in ipairs(M.KNOWN) do
    if k.test(kind, msg or "", src or "", tag) then return k.reason end
  end
  return nil
end

-- Runs program k of seed `seed` through every check; returns a list of findings, each with
-- kind, msg, reproducer text and known (the reason, for known bugs), and the checks' counts.
function M.run_one(seed, k, opts)
  opts = opts or {}
  local p = M.generate(seed, k, opts)
  local findings = {}
  local header = string.format("seed %d, program %d (LUAGRAD_PROPERTY_SEED=%d), program seed %d; inputs %s",
    seed, k, seed, p.seed, (function()
      local s = {}
      for _, x in ipairs(p.inputs) do s[#s + 1] = x.name .. " " .. shape_str(x.shape) .. " " .. x.layout end
      return table.concat(s, ", ")
    end)())
  for _, gf in ipairs(p.gen_failures) do
    local src = M.source_with(p, gf, "v" .. (gf.stmts + 1))
    local msg = "a valid call raised (" .. gf.tag .. "): " .. gf.err
    findings[#findings + 1] = { kind = "raises", tag = gf.tag, msg = msg,
      reproducer = M.reproducer(src, "forward", msg, header), known = M.known("raises", gf.err, src, gf.tag) }
  end
  local P = M.load(p.src)
  local failures, ran = checks.run(P, opts)
  if opts.graph_ops then
    -- the op-table rows the program's graph goes through (luagrad.core's private helper)
    local graph_ops = require("luagrad.core")._graph_ops
    pcall(function()
      local xs = P.inputs("float64")
      for _, x in ipairs(xs) do x:requires_grad_(true) end
      for _, y in ipairs(P.f(table.unpack(xs))) do
        for name in pairs(graph_ops(y)) do opts.graph_ops[name] = true end
      end
    end)
  end
  local seen = {}
  for _, f in ipairs(failures) do
    if not seen[f.kind] then
      seen[f.kind] = true
      local src, sf, tag = p.src, f, "(not shrunk)"
      if opts.shrink ~= false then
        local s2, f2, t2 = M.shrink(p, f.kind)
        if s2 then src, sf, tag = s2, f2, t2 end
      end
      findings[#findings + 1] = { kind = f.kind, msg = sf.msg, tag = tag:match("^[^;]*"),
        reproducer = M.reproducer(src, f.kind, sf.msg, header), known = M.known(f.kind, sf.msg, src, tag) }
    end
  end
  return findings, ran, p
end

return M
