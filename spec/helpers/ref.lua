-- Slow, obviously-right reference helpers for the tensor specs.
--
-- Arrays are handled as "nd" values: { shape = {..}, data = {flat row-major values} }.
-- ref.nd(x) makes one from a tensor (through tolist and .shape), a nested table or a number.
-- Everything here is plain Lua loops over those flat lists: no cleverness, no luagrad.
local ref = {}
local assert = require "luassert"

-- ---- shapes and flat indices ----------------------------------------------------------------
function ref.shape(x)
  local s = {}
  while type(x) == "table" do
    s[#s + 1] = #x
    x = x[1]
  end
  return s
end

function ref.numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

function ref.shape_str(shape)
  local parts = {}
  for i, d in ipairs(shape) do parts[i] = tostring(d) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- flat position (1-based) -> index table (1-based per dim), row-major
function ref.unravel(pos, shape)
  local idx, r = {}, pos - 1
  for d = #shape, 1, -1 do
    idx[d] = r % shape[d] + 1
    r = r // shape[d]
  end
  return idx
end

function ref.ravel(idx, shape)
  local pos = 0
  for d = 1, #shape do pos = pos * shape[d] + (idx[d] - 1) end
  return pos + 1
end

local function flatten_into(x, out)
  if type(x) == "table" then
    for i = 1, #x do flatten_into(x[i], out) end
  else
    out[#out + 1] = x
  end
  return out
end

function ref.flatten(x) return flatten_into(x, {}) end

local function is_tensor(x) return type(x) == "userdata" end

function ref.nd(x)
  if type(x) == "table" and x.shape and x.data then return x end
  if is_tensor(x) then
    local list = x:tolist()
    return { shape = x.shape, data = type(list) == "table" and ref.flatten(list) or { list } }
  end
  if type(x) == "number" then return { shape = {}, data = { x } } end
  return { shape = ref.shape(x), data = ref.flatten(x) }
end

-- nested table of the given shape, element at idx = f(idx)  (0-d: the number itself)
function ref.build(shape, f)
  if #shape == 0 then return f({}) end
  local function rec(d, idx)
    local t = {}
    for i = 1, shape[d] do
      idx[d] = i
      if d == #shape then
        local copy = {}
        for k = 1, d do copy[k] = idx[k] end
        t[i] = f(copy)
      else
        t[i] = rec(d + 1, idx)
      end
    end
    return t
  end
  return rec(1, {})
end

-- ---- elementwise ----------------------------------------------------------------------------
function ref.map(a, f)
  a = ref.nd(a)
  local out = {}
  for i, v in ipairs(a.data) do out[i] = f(v) end
  return { shape = a.shape, data = out }
end

function ref.broadcast_shape(s1, s2)
  local n = math.max(#s1, #s2)
  local out = {}
  for k = 1, n do
    local a = s1[#s1 - n + k] or 1
    local b = s2[#s2 - n + k] or 1
    if a ~= b and a ~= 1 and b ~= 1 then return nil end
    out[k] = (a == 1) and b or a
  end
  return out
end

-- the element of a at the broadcast index idx of a result with n dims
local function bget(a, idx, n)
  local pos, off = 0, n - #a.shape
  for d = 1, #a.shape do
    local i = (a.shape[d] == 1) and 1 or idx[d + off]
    pos = pos * a.shape[d] + (i - 1)
  end
  return a.data[pos + 1]
end

-- f over any number of broadcast operands (tensors, nested tables or numbers)
function ref.mapn(f, ...)
  local args = { ... }
  local shape = {}
  for i = 1, #args do
    args[i] = ref.nd(args[i])
    shape = assert(ref.broadcast_shape(shape, args[i].shape), "reference: shapes do not broadcast")
  end
  local out, vals = {}, {}
  for pos = 1, ref.numel(shape) do
    local idx = ref.unravel(pos, shape)
    for i = 1, #args do vals[i] = bget(args[i], idx, #shape) end
    out[pos] = f(table.unpack(vals, 1, #args))
  end
  return { shape = shape, data = out }
end

function ref.map2(a, b, f) return ref.mapn(f, a, b) end

-- ---- reductions -----------------------------------------------------------------------------
-- f(list) -> value over dim (1-based or negative; nil = everything). keepdim as PyTorch.
function ref.reduce(a, dim, keepdim, f)
  a = ref.nd(a)
  if dim == nil then return { shape = {}, data = { f(a.data) } } end
  if dim < 0 then dim = #a.shape + 1 + dim end
  local oshape = {}
  for d = 1, #a.shape do oshape[d] = (d == dim) and 1 or a.shape[d] end
  local out = {}
  for pos = 1, ref.numel(oshape) do
    local idx = ref.unravel(pos, oshape)
    local list = {}
    for i = 1, a.shape[dim] do
      idx[dim] = i
      list[i] = a.data[ref.ravel(idx, a.shape)]
    end
    out[pos] = f(list)
  end
  if not keepdim then table.remove(oshape, dim) end
  return { shape = oshape, data = out }
end

local function isnan(v) return v ~= v end
ref.isnan = isnan

ref.fold = {}
function ref.fold.sum(l) local s = 0 for _, v in ipairs(l) do s = s + v end return s end
function ref.fold.prod(l) local s = 1 for _, v in ipairs(l) do s = s * v end return s end
function ref.fold.mean(l) return ref.fold.sum(l) / #l end
function ref.fold.var(l, correction)
  correction = correction or 1
  local m, s = ref.fold.mean(l), 0
  for _, v in ipairs(l) do s = s + (v - m) ^ 2 end
  return s / (#l - correction)
end
function ref.fold.std(l, correction) return math.sqrt(ref.fold.var(l, correction)) end
function ref.fold.norm(l, p)
  p = p or 2
  local s = 0
  if p == math.huge then
    for _, v in ipairs(l) do s = math.max(s, math.abs(v)) end
    return s
  end
  for _, v in ipairs(l) do s = s + math.abs(v) ^ p end
  return s ^ (1 / p)
end
function ref.fold.logsumexp(l)
  local m = -math.huge
  for _, v in ipairs(l) do m = math.max(m, v) end
  local s = 0
  for _, v in ipairs(l) do s = s + math.exp(v - m) end
  return m + math.log(s)
end
-- 1-based index of the first maximum / minimum (a NaN wins, as in PyTorch)
local function argbest(l, better)
  local bi = 1
  for i, v in ipairs(l) do
    if isnan(v) then return i end
    if better(v, l[bi]) then bi = i end
  end
  return bi
end
function ref.fold.argmax(l) return argbest(l, function(a, b) return a > b end) end
function ref.fold.argmin(l) return argbest(l, function(a, b) return a < b end) end
function ref.fold.max(l) return l[ref.fold.argmax(l)] end
function ref.fold.min(l) return l[ref.fold.argmin(l)] end

-- ---- matmul: a triple loop, with PyTorch's 1-d and batch-broadcast rules ----------------------
function ref.matmul(a, b)
  a, b = ref.nd(a), ref.nd(b)
  local as, bs = { table.unpack(a.shape) }, { table.unpack(b.shape) }
  local a1, b1 = #as == 1, #bs == 1
  if a1 then table.insert(as, 1, 1) end
  if b1 then table.insert(bs, 1) end
  local n, k, m = as[#as - 1], as[#as], bs[#bs]
  assert(bs[#bs - 1] == k, "reference matmul: inner sizes differ")
  local abatch = { table.unpack(as, 1, #as - 2) }
  local bbatch = { table.unpack(bs, 1, #bs - 2) }
  local batch = assert(ref.broadcast_shape(abatch, bbatch), "reference matmul: batch dims")
  local A = { shape = as, data = a.data }
  local B = { shape = bs, data = b.data }
  local oshape = { table.unpack(batch) }
  oshape[#oshape + 1] = n
  oshape[#oshape + 1] = m
  local nb, out = #batch, {}
  for pos = 1, ref.numel(oshape) do
    local idx = ref.unravel(pos, oshape)
    local i, j = idx[nb + 1], idx[nb + 2]
    local s = 0
    for p = 1, k do
      local ia = { table.unpack(idx, 1, nb) }
      ia[nb + 1], ia[nb + 2] = i, p
      local ib = { table.unpack(idx, 1, nb) }
      ib[nb + 1], ib[nb + 2] = p, j
      s = s + bget(A, ia, nb + 2) * bget(B, ib, nb + 2)
    end
    out[pos] = s
  end
  if b1 then table.remove(oshape, #oshape) end
  if a1 then table.remove(oshape, #oshape - (b1 and 0 or 1)) end
  return { shape = oshape, data = out }
end

-- ---- comparison -----------------------------------------------------------------------------
local function fmt(v)
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.17g", v)
end

function ref.same_shape(s1, s2)
  if #s1 ~= #s2 then return false end
  for i = 1, #s1 do if s1[i] ~= s2[i] then return false end end
  return true
end

-- ok, message. NaN matches NaN, infinities must match exactly; else |a-e| <= atol + rtol*|e|.
function ref.close(actual, expected, rtol, atol)
  rtol, atol = rtol or 0, atol or 0
  local a, e = ref.nd(actual), ref.nd(expected)
  if not ref.same_shape(a.shape, e.shape) then
    return false, "shape " .. ref.shape_str(a.shape) .. ", expected " .. ref.shape_str(e.shape)
  end
  for pos = 1, #e.data do
    local av, ev = a.data[pos], e.data[pos]
    local ok
    if type(av) ~= "number" then
      ok = false
    elseif isnan(ev) then
      ok = isnan(av)
    elseif ev == math.huge or ev == -math.huge then
      ok = av == ev
    else
      ok = math.abs(av - ev) <= atol + rtol * math.abs(ev)
    end
    if not ok then
      return false, string.format("at index %s (flat %d): got %s, expected %s (rtol %g, atol %g)",
        ref.shape_str(ref.unravel(pos, e.shape)), pos, type(av) == "number" and fmt(av) or tostring(av),
        fmt(ev), rtol, atol)
    end
  end
  return true, "ok"
end

function ref.assert_close(actual, expected, rtol, atol, what)
  local ok, msg = ref.close(actual, expected, rtol, atol)
  assert.is_true(ok, (what and (what .. ": ") or "") .. msg)
end

-- exact equality (NaN == NaN), with shape
function ref.assert_equal(actual, expected, what) ref.assert_close(actual, expected, 0, 0, what) end

-- ---- test inputs ----------------------------------------------------------------------------
-- Values exactly representable in float32: multiples of 1/8 in [-3, 3], never 0 when nonzero
-- is asked. idx -> value, deterministic and not periodic over small shapes.
function ref.gen_signed(idx)
  local h = 0
  for d, i in ipairs(idx) do h = h * 31 + i * (d + 6) end
  return ((h * 37) % 47 - 23) / 8
end
function ref.gen_nonzero(idx)
  local v = ref.gen_signed(idx)
  return v == 0 and 0.625 or v
end
function ref.gen_positive(idx) return math.abs(ref.gen_signed(idx)) + 0.25 end
function ref.gen_int(idx) return math.tointeger(ref.gen_signed(idx) * 8) // 4 end
-- Several layouts of a tensor with the same logical values gen(idx):
-- contiguous, transposed (last two dims), narrowed (last dim, with an offset) and expanded
-- (dim 1 broadcast from size 1: values then do not depend on idx[1]).
-- Returns a list of { name = ..., t = tensor, want = nd of the intended values }.
function ref.variants(lg, shape, gen, dtype)
  local opts = { dtype = dtype }
  local nd = #shape
  local out = {}
  local function want(f)
    local b = ref.build(shape, f)
    return { shape = { table.unpack(shape) }, data = type(b) == "table" and ref.flatten(b) or { b } }
  end
  local function add(name, t, f) out[#out + 1] = { name = name, t = t, want = want(f) } end
  if ref.numel(shape) == 0 then
    add("contiguous", lg.zeros(shape, opts), gen)
    return out
  end
  add("contiguous", lg.tensor(ref.build(shape, gen), opts), gen)
  if nd == 0 then return out end
  if nd >= 2 then
    local ts = { table.unpack(shape) }
    ts[nd - 1], ts[nd] = shape[nd], shape[nd - 1]
    local base = lg.tensor(ref.build(ts, function(idx)
      idx[nd - 1], idx[nd] = idx[nd], idx[nd - 1]
      return gen(idx)
    end), opts)
    add("transposed", base:transpose(nd - 1, nd), gen)
    if shape[nd - 1] > 1 and shape[nd] > 1 then
      assert.is_false(out[#out].t:is_contiguous(), "transposed variant should not be contiguous")
    end
  end
  local bs = { table.unpack(shape) }
  bs[nd] = shape[nd] + 3
  local big = lg.tensor(ref.build(bs, function(idx)
    local i = idx[nd]
    if i < 2 or i > shape[nd] + 1 then return 7 end
    idx[nd] = i - 1
    return gen(idx)
  end), opts)
  add("narrowed", big:narrow(nd, 2, shape[nd]), gen)
  local outer = 1
  for d = 1, nd - 1 do outer = math.max(outer, shape[d]) end
  if outer > 1 then
    assert.is_false(out[#out].t:is_contiguous(), "narrowed variant should not be contiguous")
  end
  if shape[1] > 1 then
    local ss = { table.unpack(shape) }
    ss[1] = 1
    local g1 = function(idx) idx[1] = 1 return gen(idx) end
    add("expanded", lg.tensor(ref.build(ss, g1), opts):expand(shape), g1)
    assert.are.equal(0, out[#out].t:stride(1), "expanded variant should have stride 0")
  end
  return out
end

-- x rounded to the nearest float32 (as a float32 tensor stores it), back as a Lua float
function ref.f32(x) return (string.unpack("<f", string.pack("<f", x))) end

return ref
