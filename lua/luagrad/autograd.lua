-- luagrad.autograd: differentiation built on the C tape.
--
--   grad(outputs, inputs, opts)        reverse mode: gradients of the outputs' sum (or of the
--                                      weighted sum with opts.grad_outputs) w.r.t. each input
--   vjp(f, primals, cotangents)        f's outputs and v^T J for each primal (reverse mode)
--   jvp(f, primals, tangents)          f's outputs and J t (forward mode: tangents propagate
--                                      through each op's JVP rule during one forward pass)
--   jacobian(f, x, {mode})             the full Jacobian: row by row in reverse mode, column by
--                                      column in forward mode
--   hessian(f, x), hvp(f, x, v)        second order, reverse over reverse (create_graph)
--   gradcheck(f, inputs, opts)         the tape against central differences in float64
--   detect_anomaly(on)                 the first op producing NaN/Inf raises, naming the op
--
-- Where f takes or returns a single tensor, these take and return single tensors.
local core = require "luagrad.core"
local errors = require "luagrad.errors"

local M = {}

local is_tensor = core.is_tensor
local MAX_DIMS = 16 -- LG_MAX_DIMS in include/luagrad.h

local function as_list(x, what)
  if is_tensor(x) then return { x }, true end
  if type(x) ~= "table" then
    errors.raisef("%s must be a tensor or a list of tensors, got %s", what, type(x))
  end
  for i, v in ipairs(x) do
    if not is_tensor(v) then errors.raisef("%s[%d] must be a tensor, got %s", what, i, type(v)) end
  end
  return x, false
end

local function unlist(list, single)
  if single then return list[1] end
  return list
end

---scoped(enter, leave, fn, ...): runs fn(...) between enter() and leave() (leave also when fn
---raises). Inside a coroutine, fn may yield: its scope is then left while it is suspended, so the
---code that resumed it does not run in fn's mode, and entered again when it is resumed. (Where
---nothing can yield, the plain call is taken.)
---@param enter fun()
---@param leave fun()
---@param fn function
---@return any ...
local function scoped(enter, leave, fn, ...)
  if not coroutine.isyieldable() then
    enter()
    local res = table.pack(pcall(fn, ...))
    leave()
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
  local co, args = coroutine.create(fn), table.pack(...)
  while true do
    enter()
    local res = table.pack(coroutine.resume(co, table.unpack(args, 1, args.n)))
    leave()
    if not res[1] then error(res[2], 0) end
    if coroutine.status(co) == "dead" then return table.unpack(res, 2, res.n) end
    args = table.pack(coroutine.yield(table.unpack(res, 2, res.n)))
  end
end
M._scoped = scoped

-- fn(...) with grad mode set to `on`, restoring the previous mode even when fn fails (and while fn
-- is suspended at a yield); fname is the public function whose errors these are.
local function in_grad_mode(fname, on, fn, ...)
  errors.check(fname, "fn", fn, "callable")
  local prev
  return scoped(function()
    prev = core.is_grad_enabled()
    core.set_grad_enabled(on)
  end, function() core.set_grad_enabled(prev) end, fn, ...)
end

---Runs fn with grad mode set to `on`, restoring the previous mode even when fn fails (and while
---fn is suspended at a yield).
---@param on boolean
---@param fn fun(...): any
---@return any ... what fn returns
local function with_grad_mode(on, fn, ...)
  errors.check("with_grad_mode", "on", on, "boolean")
  return in_grad_mode("with_grad_mode", on, fn, ...)
end
M.with_grad_mode = with_grad_mode

---Runs fn(...) without recording operations for autograd and returns its results.
---@param fn fun(...): any
---@return any ...
function M.no_grad(fn, ...) return in_grad_mode("no_grad", false, fn, ...) end
---Runs fn(...) with recording on (inside no_grad too) and returns its results.
---@param fn fun(...): any
---@return any ...
function M.enable_grad(fn, ...) return in_grad_mode("enable_grad", true, fn, ...) end

---@class luagrad.autograd.GradOptions
---@field grad_outputs? luagrad.Tensor|luagrad.Tensor[] weights for the outputs (default: ones)
---@field retain_graph? boolean keep the graph for another backward pass (default: create_graph)
---@field create_graph? boolean record the backward pass, for higher derivatives (default false)
---@field allow_unused? boolean nil for an input the outputs do not depend on, instead of an error

---Reverse mode: the gradient of the outputs' sum (weighted by grad_outputs) with respect to
---each input, in a list.
---@param outputs luagrad.Tensor|luagrad.Tensor[]
---@param inputs luagrad.Tensor|luagrad.Tensor[] tensors that require grad
---@param opts? luagrad.autograd.GradOptions
---@return (luagrad.Tensor|nil)[]
function M.grad(outputs, inputs, opts)
  return core._grad(outputs, inputs, opts)
end

---Queues fn() to run once the backward pass running now (the outermost, when a hook starts
---another) has finished and every gradient has landed in .grad; called from gradient hooks
---(lg.nn.DistributedDataParallel waits for its all-reduces there). Dropped if the pass fails.
---@param fn fun()
function M.queue_callback(fn)
  errors.check("queue_callback", "argument #1 (fn)", fn, "function")
  core._queue_callback(fn)
end

---Turns anomaly detection on or off (the first op producing NaN or Inf raises, naming the op);
---returns whether it is on.
---@param on? boolean
---@return boolean
function M.detect_anomaly(on)
  return core._detect_anomaly(on)
end

-- core._grad for a helper (vjp, hessian, hvp): outputs that do not require grad contribute
-- nothing, so when none does every gradient is nil (the helper returns zeros); an error from the
-- tape is raised again naming the helper rather than "backward".
local function helper_grad(helper, outputs, inputs, opts)
  local outs, weights = {}, {}
  local given = opts and opts.grad_outputs
  for i, o in ipairs(outputs) do
    if o.requires_grad then
      outs[#outs + 1] = o
      if given then weights[#outs] = given[i] end
    end
  end
  if #outs == 0 then return {} end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.grad_outputs = given and weights or nil
  o.allow_unused = true
  local ok, res = pcall(core._grad, outs, inputs, o)
  if not ok then
    local msg = tostring(res):gsub("^[^:\n]*:%d+: ", ""):gsub("^backward: ", ""):gsub("^grad: ", "")
    errors.raise(helper .. ": " .. msg)
  end
  return res
end

-- Fresh leaves for vjp's inputs: detached copies that require grad.
local function leaves(primals)
  local xs = {}
  for i, p in ipairs(primals) do
    if not is_tensor(p) then errors.raisef("vjp: primal %d is not a tensor", i) end
    if p.dtype == "int64" then errors.raisef("vjp: primal %d is int64; differentiation needs float tensors", i) end
    xs[i] = p:detach():requires_grad_(true)
  end
  return xs
end

---f's outputs and v^T J for each primal (reverse mode).
---@param f fun(...: luagrad.Tensor): luagrad.Tensor|luagrad.Tensor[]
---@param primals luagrad.Tensor|luagrad.Tensor[]
---@param cotangents? luagrad.Tensor|luagrad.Tensor[] v, one per output (default: ones)
---@return luagrad.Tensor|luagrad.Tensor[] outputs
---@return luagrad.Tensor|luagrad.Tensor[] vjps one per primal
function M.vjp(f, primals, cotangents)
  errors.check("vjp", "f", f, "callable")
  local ps, single_in = as_list(primals, "vjp: primals")
  local xs = leaves(ps)
  local out = in_grad_mode("vjp", true, f, table.unpack(xs))
  local outs, single_out = as_list(out, "vjp: f's result")
  local cts = cotangents and as_list(cotangents, "vjp: cotangents") or nil
  if cts and #cts ~= #outs then errors.raisef("vjp: %d cotangents for %d outputs", #cts, #outs) end
  local gs = helper_grad("vjp", outs, xs, { grad_outputs = cts })
  for i, x in ipairs(xs) do
    if gs[i] == nil then gs[i] = core.zeros_like(x) end
  end
  local detached = {}
  for i, o in ipairs(outs) do detached[i] = o:detach() end
  return unlist(detached, single_out), unlist(gs, single_in)
end

---f's outputs and J t (forward mode: tangents propagate through each op's JVP rule).
---@param f fun(...: luagrad.Tensor): luagrad.Tensor|luagrad.Tensor[]
---@param primals luagrad.Tensor|luagrad.Tensor[]
---@param tangents luagrad.Tensor|luagrad.Tensor[] one per primal
---@return luagrad.Tensor|luagrad.Tensor[] outputs
---@return luagrad.Tensor|luagrad.Tensor[] jvps one per output
function M.jvp(f, primals, tangents)
  errors.check("jvp", "f", f, "callable")
  local ps = as_list(primals, "jvp: primals")
  local ts = as_list(tangents, "jvp: tangents")
  if #ts ~= #ps then errors.raisef("jvp: %d tangents for %d primals", #ts, #ps) end
  local duals = {}
  for i, p in ipairs(ps) do
    duals[i] = p:detach()
    duals[i]:_set_tangent(ts[i])
  end
  local res = table.pack(scoped(core._fw_push, core._fw_pop, f, table.unpack(duals)))
  local outs, single_out = as_list(res[1], "jvp: f's result")
  local ys, tys = {}, {}
  for i, o in ipairs(outs) do
    tys[i] = o:_tangent() or core.zeros_like(o)
    ys[i] = o:detach()
  end
  return unlist(ys, single_out), unlist(tys, single_out)
end

-- One-hot tensor shaped like t with a 1 at flat (1-based) index k.
local function one_hot(t, k)
  local e = core.zeros_like(t)
  e:_set_flat(k, 1)
  return e
end

---jacobian(f, x, {mode = "reverse" | "forward"}): for f: tensor -> tensor, a tensor of shape
---f(x).shape .. x.shape. Reverse mode makes one pass per output element (a row of J),
---forward mode one pass per input element (a column).
---@param f fun(x: luagrad.Tensor): luagrad.Tensor
---@param x luagrad.Tensor
---@param opts? {mode?: "reverse"|"forward"}
---@return luagrad.Tensor
function M.jacobian(f, x, opts)
  errors.check("jacobian", "f", f, "callable")
  errors.check("jacobian", "x", x, "tensor")
  local mode = errors.options("jacobian", opts, { "mode" }).mode or "reverse"
  if x.dtype == "int64" then errors.raise("jacobian: x must be a float tensor, got int64") end
  local y = in_grad_mode("jacobian", false, f, x:detach())
  if not is_tensor(y) then errors.raise("jacobian: f must return a tensor") end
  if y:dim() + x:dim() > MAX_DIMS then
    errors.raisef("jacobian: f(x) has %d dimensions and x %d, so the Jacobian would have %d (at most %d)", y:dim(),
      x:dim(), y:dim() + x:dim(), MAX_DIMS)
  end
  local n, m = x:numel(), y:numel()
  local J = core.zeros({ m, n }, { dtype = y.dtype })
  if mode == "reverse" then
    for i = 1, m do
      local _, row = M.vjp(f, x, one_hot(y, i))
      J[i] = row:reshape(n)
    end
  elseif mode == "forward" then
    local Jt = core.zeros({ n, m }, { dtype = y.dtype })
    for j = 1, n do
      local _, col = M.jvp(f, x, one_hot(x, j))
      Jt[j] = col:reshape(m)
    end
    J = Jt:t():contiguous()
  else
    errors.raisef('jacobian: mode must be "reverse" or "forward", got %q', tostring(mode))
  end
  local shape = {}
  for _, s in ipairs(y.shape) do shape[#shape + 1] = s end
  for _, s in ipairs(x.shape) do shape[#shape + 1] = s end
  return J:reshape(shape)
end

---hessian(f, x) for scalar f: reverse over reverse, one row per element of x.
---@param f fun(x: luagrad.Tensor): luagrad.Tensor a one-element tensor
---@param x luagrad.Tensor
---@return luagrad.Tensor H of shape x.shape .. x.shape
function M.hessian(f, x)
  errors.check("hessian", "f", f, "callable")
  errors.check("hessian", "x", x, "tensor")
  if x.dtype == "int64" then errors.raise("hessian: x must be a float tensor, got int64") end
  if 2 * x:dim() > MAX_DIMS then
    errors.raisef("hessian: x has %d dimensions, so the Hessian would have %d (at most %d)", x:dim(), 2 * x:dim(),
      MAX_DIMS)
  end
  local xl = x:detach():requires_grad_(true)
  local y = in_grad_mode("hessian", true, f, xl)
  if not is_tensor(y) or y:numel() ~= 1 then errors.raise("hessian: f must return a one-element tensor") end
  local n = x:numel()
  local H = errors.call_as("hessian", core.zeros, { n, n }, { dtype = x.dtype })
  local g = helper_grad("hessian", { y }, { xl }, { create_graph = true })[1] or core.zeros_like(xl)
  local gflat = g:reshape(n)
  for i = 1, gflat.requires_grad and n or 0 do -- a constant gradient has a zero Hessian
    local row = helper_grad("hessian", { gflat:select(1, i) }, { xl }, { retain_graph = true })[1]
    if row then H[i] = row:detach():reshape(n) end
  end
  local shape = {}
  for _, s in ipairs(x.shape) do shape[#shape + 1] = s end
  for _, s in ipairs(x.shape) do shape[#shape + 1] = s end
  return H:reshape(shape)
end

---hvp(f, x, v) -> f(x), H v: the gradient's directional derivative, in two reverse passes.
---@param f fun(x: luagrad.Tensor): luagrad.Tensor a one-element tensor
---@param x luagrad.Tensor
---@param v luagrad.Tensor of x's shape
---@return luagrad.Tensor y f(x)
---@return luagrad.Tensor hv
function M.hvp(f, x, v)
  errors.check("hvp", "f", f, "callable")
  errors.check("hvp", "x", x, "tensor")
  errors.check("hvp", "v", v, "tensor")
  if x.dtype == "int64" then errors.raise("hvp: x must be a float tensor, got int64") end
  local xs, vs = x.shape, v.shape
  local same = #xs == #vs
  for i = 1, #xs do same = same and xs[i] == vs[i] end
  if not same then
    errors.raisef("hvp: v has shape {%s}, but x has shape {%s}", table.concat(vs, ","), table.concat(xs, ","))
  end
  local xl = x:detach():requires_grad_(true)
  local y = in_grad_mode("hvp", true, f, xl)
  if not is_tensor(y) or y:numel() ~= 1 then errors.raise("hvp: f must return a one-element tensor") end
  local g = helper_grad("hvp", { y }, { xl }, { create_graph = true })[1]
  if not g then return y:detach(), core.zeros_like(x) end
  local gv = (g * v):sum()
  local hv = helper_grad("hvp", { gv }, { xl })[1]
  return y:detach(), hv or core.zeros_like(x)
end

local function index_string(t, k)
  -- flat 1-based index -> "{i,j,...}"
  local shape, idx = t.shape, {}
  k = k - 1
  for d = #shape, 1, -1 do
    idx[d] = k % shape[d] + 1
    k = k // shape[d]
  end
  return "{" .. table.concat(idx, ",") .. "}"
end

---gradcheck(f, inputs, {eps = 1e-6, atol = 1e-5, rtol = 1e-3}): compares the Jacobian the tape
---computes (one reverse pass per output element) with central differences
---(f(x + eps) - f(x - eps)) / 2 eps, for every element of every float64 input that requires
---grad. Returns true, or raises an error naming the input, the element and both values.
---@param f fun(...: luagrad.Tensor): luagrad.Tensor|luagrad.Tensor[]
---@param inputs luagrad.Tensor|luagrad.Tensor[]
---@param opts? {eps?: number, atol?: number, rtol?: number}
---@return true
function M.gradcheck(f, inputs, opts)
  errors.check("gradcheck", "f", f, "callable")
  opts = errors.options("gradcheck", opts, { "eps", "atol", "rtol" })
  for _, k in ipairs({ "eps", "atol", "rtol" }) do errors.check("gradcheck", "opts." .. k, opts[k], "number?") end
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  local xs = as_list(inputs, "gradcheck: inputs")
  for i, x in ipairs(xs) do
    if x.dtype ~= "float64" and x.requires_grad then
      errors.raisef("gradcheck: input %d is %s; use float64 inputs for finite differences", i, x.dtype)
    end
  end
  local function call(args)
    local out = f(table.unpack(args))
    local outs = as_list(out, "gradcheck: f's result")
    local flat = {}
    for _, o in ipairs(outs) do
      -- a copy: an output that views the probed input would change back with it
      if o.dtype == "float64" or o.dtype == "float32" then flat[#flat + 1] = o:reshape(-1):clone() end
    end
    if #flat == 0 then errors.raise("gradcheck: f returned no float tensor to check") end
    return #flat == 1 and flat[1] or core.cat(flat)
  end
  local leaves_ = {}
  for i, x in ipairs(xs) do leaves_[i] = x.requires_grad and x:detach():requires_grad_(true) or x end
  local y = with_grad_mode(true, call, leaves_)
  local m = y:numel()
  for i, x in ipairs(xs) do
    if x.requires_grad then
      local n = x:numel()
      -- analytic: row r of the Jacobian for input i
      local analytic = {}
      for r = 1, m do
        local gs = M.grad(y, leaves_, { grad_outputs = one_hot(y, r), retain_graph = true, allow_unused = true })
        analytic[r] = gs[i] and gs[i]:detach():reshape(-1) or core.zeros({ n }, { dtype = "float64" })
      end
      -- numeric: perturb each element of a private copy of input i
      local probe = x:detach():clone()
      local args = {}
      for k, v in ipairs(xs) do args[k] = v:detach() end
      args[i] = probe
      for j = 1, n do
        local orig = probe:_get_flat(j)
        probe:_set_flat(j, orig + eps)
        local yp = M.no_grad(call, args)
        probe:_set_flat(j, orig - eps)
        local ym = M.no_grad(call, args)
        probe:_set_flat(j, orig)
        for r = 1, m do
          local num = (yp:_get_flat(r) - ym:_get_flat(r)) / (2 * eps)
          local ana = analytic[r]:_get_flat(j)
          if not (math.abs(ana - num) <= atol + rtol * math.abs(num)) then
            errors.raisef("gradcheck: input %d, element %s, output element %d: analytic %.10g, numeric %.10g",
              i, index_string(x, j), r, ana, num)
          end
        end
      end
    end
  end
  return true
end

return M
