-- luagrad.distributed (lg.distributed): data-parallel training over MPI.
--
--   mpirun -np 2 build/luagrad train.lua        (as root: add --allow-run-as-root --oversubscribe)
--
--   local dist = lg.distributed
--   dist.init()                              -- rank and size from the MPI launcher
--   dist.rank(), dist.world_size()           -- 1-based rank, as everything in luagrad
--   dist.all_reduce(t, {op = "mean"})        -- in place: sum, mean, max, min
--
-- The MPI part is a separate C module, luagrad.mpi (build/lib/luagrad/mpi.so), loaded by init()
-- and by nothing else: `require "luagrad"` never loads MPI. Every collective works in place on a
-- tensor of float32, float64 or int64, contiguous or not (a strided view goes through a
-- contiguous copy), and first checks with one small all-reduce that every rank passed the same
-- shape and dtype, so a mismatch is an error on every rank, not a hang.
--
-- After init() an error that ends a script run by the luagrad executable ends the whole job
-- (MPI_Abort) with the failing rank's message and a non-zero status. MPI ends at process exit:
-- finalized after exit status 0, the job aborted after any other (a stock lua5.4 whose script
-- failed), so that no rank waits in MPI_Finalize for ranks waiting for it.
local core = require "luagrad.core"
local errors = require "luagrad.errors"
local autograd = require "luagrad.autograd"

local M = {}

local mpi            -- the C module, once init() loaded it
local rank0, size = 0, 1

local UNAVAILABLE = "distributed training is unavailable: this luagrad was built without MPI " ..
  "(the C module luagrad.mpi was not found). Install Open MPI and rebuild: " ..
  "apt-get install openmpi-bin libopenmpi-dev && tools/setup.sh"

---Starts MPI (once): reads this process's rank and the number of processes from the launcher
---(mpirun); run without one it is a world of one. Returns rank(), world_size().
---@return integer rank, integer world_size
function M.init()
  if not mpi then
    local ok, m = pcall(require, "luagrad.mpi")
    if not ok then errors.raise("init: " .. UNAVAILABLE .. "\n" .. tostring(m)) end
    mpi = m
  end
  local r, s = mpi.init()
  rank0, size = r, s
  return r + 1, s
end

---Whether MPI was loaded (luagrad.mpi exists) without starting it: false in a build without MPI.
function M.is_available()
  if mpi then return true end
  local ok, m = pcall(require, "luagrad.mpi")
  if ok then mpi = m end
  return ok
end

function M.is_initialized() return mpi ~= nil and mpi.is_initialized() end

---This process's rank, 1..world_size() (1 before init()).
function M.rank() return rank0 + 1 end
---The number of processes in the job (1 before init()).
function M.world_size() return size end
---Whether this is rank 1, the one that writes checkpoints and prints.
function M.is_main() return rank0 == 0 end

local function need(fname)
  if not M.is_initialized() then
    errors.raise(fname .. ": call lg.distributed.init() first" .. (mpi and "" or " (" .. UNAVAILABLE .. ")"))
  end
end

function M.barrier()
  need("barrier")
  mpi.barrier()
end

---Ends MPI now (it also ends by itself when the process exits).
function M.finalize()
  if mpi then mpi.finalize() end
end

---Ends every process of the job now, printing msg; the exit status is non-zero.
function M.abort(msg)
  io.stderr:write("luagrad: ", tostring(msg or "abort"), "\n")
  if M.is_initialized() then mpi.abort(tostring(msg or "abort"), 1) end
  os.exit(1)
end

---Seconds since an arbitrary moment (MPI_Wtime), or os.clock's wall time without MPI.
function M.wtime() return mpi and mpi.wtime() or core.clock() end

-- ---- collectives ---------------------------------------------------------------------------

local DTYPES = { float32 = 1, float64 = 2, int64 = 3 }
local OPS = { sum = true, mean = true, max = true, min = true }
local MAXDIM = 8

local function check_tensor(fname, t, what)
  if not core.is_tensor(t) then
    errors.raisef("%s: %s must be a tensor, got %s", fname, what or "argument #1", type(t))
  end
  if not DTYPES[t.dtype] then errors.raisef("%s: dtype must be float32, float64 or int64, got %s", fname, t.dtype) end
end

local function shape_str(t)
  local s = t.shape
  return t.dtype .. " {" .. table.concat(s, ", ") .. "}"
end

-- One all-reduce of {v, -v} with max gives every rank the largest and smallest of each entry of
-- the tensor's signature (dtype, ndim, sizes): they differ exactly when some rank differs.
local function check_same(fname, t, extra)
  local v = { DTYPES[t.dtype], t:dim() }
  local s = t.shape
  for i = 1, MAXDIM do v[#v + 1] = s[i] or -1 end
  local folded = 0 -- dimensions past MAXDIM, folded into one number
  for i = MAXDIM + 1, #s do folded = (folded * 1000003 + s[i]) % 2147483647 end
  v[#v + 1] = folded
  for _, x in ipairs(extra or {}) do v[#v + 1] = x end
  local n = #v
  for i = 1, n do v[n + i] = -v[i] end
  local r = mpi.allreduce_ints(v, "max")
  for i = 1, n do
    if r[i] ~= -r[n + i] then
      errors.raisef("%s: the tensors differ across ranks (rank %d of %d has %s); every rank must pass " ..
        "the same shape and dtype%s", fname, rank0 + 1, size, shape_str(t),
        extra and " and the same source/destination rank" or "")
    end
  end
end

-- Runs f(address, count, dtype) on t's memory, or on a contiguous copy written back to t after
-- (when write is true).
local function on_buffer(t, write, f)
  if t:is_contiguous() then
    local p, n, dt = core._buffer(t)
    f(p, n, dt)
    return
  end
  local c = t:contiguous()
  local p, n, dt = core._buffer(c)
  f(p, n, dt)
  if write then autograd.no_grad(function() t:copy_(c) end) end
end

local function rank_opt(fname, opts, key)
  local r = opts[key] or 1
  if math.type(r) ~= "integer" or r < 1 or r > size then
    errors.raisef("%s: %s must be a rank in 1..%d, got %s", fname, key, size, tostring(r))
  end
  return r
end

local function op_opt(fname, opts)
  local op = opts.op or "sum"
  if not OPS[op] then errors.raisef("%s: op must be \"sum\", \"mean\", \"max\" or \"min\", got %s", fname, tostring(op)) end
  return op
end

-- mean = sum / world_size; int64 tensors divide rounding down (floor_divide).
local function divide_(t, n)
  if n == 1 then return end
  autograd.no_grad(function()
    if t.dtype == "int64" then t:copy_(t // n) else t:div_(n) end
  end)
end

---all_reduce(t, {op = "sum"}): every rank's t becomes the reduction of all ranks' t.
---@param t luagrad.Tensor
---@param opts? {op?: "sum"|"mean"|"max"|"min"}
---@return luagrad.Tensor t
function M.all_reduce(t, opts)
  opts = errors.options("all_reduce", opts, { "op" })
  need("all_reduce")
  check_tensor("all_reduce", t)
  local op = op_opt("all_reduce", opts)
  check_same("all_reduce", t)
  on_buffer(t, true, function(p, n, dt) mpi.allreduce(p, n, dt, op == "mean" and "sum" or op) end)
  if op == "mean" then divide_(t, size) end
  return t
end

---broadcast(t, {src = 1}): every rank's t becomes rank src's.
function M.broadcast(t, opts)
  opts = errors.options("broadcast", opts, { "src" })
  need("broadcast")
  check_tensor("broadcast", t)
  local src = rank_opt("broadcast", opts, "src")
  check_same("broadcast", t, { src })
  on_buffer(t, true, function(p, n, dt) mpi.bcast(p, n, dt, src - 1) end)
  return t
end

---reduce(t, {dst = 1, op = "sum"}): rank dst's t becomes the reduction; the others' are unchanged.
function M.reduce(t, opts)
  opts = errors.options("reduce", opts, { "dst", "op" })
  need("reduce")
  check_tensor("reduce", t)
  local dst, op = rank_opt("reduce", opts, "dst"), op_opt("reduce", opts)
  check_same("reduce", t, { dst })
  on_buffer(t, rank0 + 1 == dst, function(p, n, dt) mpi.reduce(p, n, dt, op == "mean" and "sum" or op, dst - 1) end)
  if op == "mean" and rank0 + 1 == dst then divide_(t, size) end
  return t
end

-- A contiguous tensor of world_size rows of t's shape, and a function giving row r as t's shape.
local function stacked(t)
  local shape = { size }
  for _, d in ipairs(t.shape) do shape[#shape + 1] = d end
  local all = core.zeros(shape, { dtype = t.dtype })
  return all, function(r) return all:select(1, r) end
end

local function fill_list(fname, list, rows)
  for r = 1, size do
    local row = rows(r)
    if list[r] == nil then
      list[r] = row:clone()
    else
      check_tensor(fname, list[r], "list[" .. r .. "]")
      autograd.no_grad(function() list[r]:copy_(row) end)
    end
  end
  for r = #list, size + 1, -1 do list[r] = nil end
  return list
end

---all_gather(list, t): list[r] becomes rank r's t on every rank (new tensors, or copied into
---the tensors list already holds). Returns list.
function M.all_gather(list, t)
  need("all_gather")
  errors.check("all_gather", "argument #1 (list)", list, "table")
  check_tensor("all_gather", t, "argument #2")
  check_same("all_gather", t)
  local all, rows = stacked(t)
  local ap = core._buffer(all)
  on_buffer(t, false, function(p, n, dt) mpi.allgather(p, ap, n, dt) end)
  return fill_list("all_gather", list, rows)
end

---gather(t, {dst = 1, gather_list = {}}): on rank dst, gather_list[r] becomes rank r's t.
function M.gather(t, opts)
  opts = errors.options("gather", opts, { "dst", "gather_list" })
  need("gather")
  check_tensor("gather", t)
  local dst = rank_opt("gather", opts, "dst")
  check_same("gather", t, { dst })
  local all, rows
  if rank0 + 1 == dst then all, rows = stacked(t) end
  on_buffer(t, false, function(p, n, dt) mpi.gather(p, all and core._buffer(all) or nil, n, dt, dst - 1) end)
  if all then return fill_list("gather", opts.gather_list or {}, rows) end
end

---scatter(t, {src = 1, scatter_list = {...}}): t becomes rank src's scatter_list[rank()].
function M.scatter(t, opts)
  opts = errors.options("scatter", opts, { "src", "scatter_list" })
  need("scatter")
  check_tensor("scatter", t)
  local src = rank_opt("scatter", opts, "src")
  check_same("scatter", t, { src })
  local all
  if rank0 + 1 == src then
    local list = opts.scatter_list
    if type(list) ~= "table" or #list ~= size then
      errors.raisef("scatter: scatter_list must be a list of %d tensors on the source rank", size)
    end
    all = stacked(t)
    autograd.no_grad(function()
      for r = 1, size do
        check_tensor("scatter", list[r], "scatter_list[" .. r .. "]")
        all:select(1, r):copy_(list[r])
      end
    end)
  end
  on_buffer(t, true, function(p, n, dt) mpi.scatter(all and core._buffer(all) or nil, p, n, dt, src - 1) end)
  return t
end

-- ---- for DistributedDataParallel -------------------------------------------------------------

---Starts an all-reduce (sum) of a contiguous tensor in place without waiting; the returned
---request's :wait() returns the seconds spent waiting. The tensor is held until then.
function M._iall_reduce_sum(t)
  local p, n, dt = core._buffer(t)
  return mpi.iallreduce(p, n, dt, "sum", t)
end
M._check_same = function(fname, t, extra) need(fname); check_same(fname, t, extra) end

---Broadcasts a list of tensors from rank src with one MPI call per dtype (packed into one flat
---buffer), without the shape check: for tensors already checked once (DDP's buffers each forward).
function M._broadcast_many(list, src)
  local by = {}
  for _, t in ipairs(list) do
    local g = by[t.dtype]
    if not g then g = {}; by[t.dtype] = g end
    g[#g + 1] = t
  end
  autograd.no_grad(function()
    for _, dt in ipairs({ "float32", "float64", "int64" }) do
      local g = by[dt]
      if g then
        local flat = {}
        for i, t in ipairs(g) do flat[i] = t:reshape(-1) end
        local buf = #flat == 1 and flat[1]:contiguous():clone() or core.cat(flat)
        local p, n = core._buffer(buf)
        mpi.bcast(p, n, dt, src - 1)
        local off = 0
        for _, t in ipairs(g) do
          local k = t:numel()
          t:copy_(buf:narrow(1, off + 1, k):view(t.shape))
          off = off + k
        end
      end
    end
  end)
end

-- ---- checkpoints and printing from rank 1 ----------------------------------------------------

---save(path, value): rank 1 writes (atomically, lg.save), then every rank waits for it, so a
---load that follows finds the file.
function M.save(path, value)
  if rank0 == 0 then require("luagrad.serialize").save(path, value) end
  if M.is_initialized() then mpi.barrier() end
end

---print(...) on rank 1 only.
function M.print(...)
  if rank0 == 0 then print(...) end
end

return M
