-- luagrad.nn.parallel: DistributedDataParallel, data parallelism over lg.distributed (MPI).
--
--   lg.distributed.init()
--   local model = nn.DistributedDataParallel(net, {bucket_mb = 25, broadcast_buffers = true})
--   local opt = lg.optim.SGD(model:parameters(), {lr = 0.1})
--   loss_fn(model(x_shard), y_shard):backward()   -- gradients are averaged over the ranks here
--   opt:step()
--
-- At construction every rank takes rank 1's parameters and buffers (broadcast). The gradients
-- are averaged in buckets of about bucket_mb megabytes, filled in reverse parameter order (the
-- order backward produces them): each parameter's gradient hook copies its gradient into its
-- bucket, and a full bucket starts an all-reduce on the communication thread of luagrad.mpi
-- while backward goes on computing the earlier layers. Buckets start in the same order on every rank (a bucket waits
-- for the ones before it), as MPI requires. At the end of the backward pass (a callback queued
-- with lg.autograd.queue_callback) the last buckets start, every all-reduce is waited for and
-- each .grad becomes the average: after backward() returns, the gradients are synchronized.
-- A parameter that got no gradient on a rank (an unused branch) counts as zeros there, so no
-- rank waits for a bucket another never starts; it then gets the average as its .grad.
--
-- ddp:no_sync(fn, ...) runs fn without synchronizing (gradient accumulation): the gradients
-- accumulate locally, and the next synchronized backward averages the accumulated sums.
-- With broadcast_buffers (default), each forward first copies rank 1's buffers (BatchNorm's
-- running statistics) to every rank, as PyTorch's DDP does.
--
-- ddp:state_dict() and ddp:load_state_dict() are the wrapped module's, with no "module."
-- prefix: a checkpoint loads into the bare model as well. ddp.module is the wrapped model.
-- ddp.stats holds the bytes all-reduced and the seconds spent waiting, per synchronized step.
local base = require "luagrad.nn.module"
local errors = require "luagrad.errors"
local autograd = require "luagrad.autograd"
local core = require "luagrad.core"

local Module, is_module = base.Module, base.is_module
local dist -- luagrad.distributed, required when a DDP is made (it requires luagrad.nn)

---@class luagrad.nn.DistributedDataParallel: luagrad.nn.Module
---@field module luagrad.nn.Module the wrapped model
local DDP = Module:extend("DistributedDataParallel")

local BYTES = { float32 = 4, float64 = 8 }

---DistributedDataParallel(model, {bucket_mb = 25, broadcast_buffers = true})
function DDP:init(model, opts)
  if not is_module(model) then
    errors.raisef("DistributedDataParallel: argument #1 must be a module, got %s", type(model))
  end
  opts = errors.options("DistributedDataParallel", opts, { "bucket_mb", "broadcast_buffers" })
  dist = dist or require "luagrad.distributed"
  if not dist.is_initialized() then
    errors.raise("DistributedDataParallel: call lg.distributed.init() first")
  end
  self.module = model
  local bucket_bytes = (opts.bucket_mb or 25) * 1024 * 1024
  rawset(self, "_broadcast_buffers", opts.broadcast_buffers ~= false)
  rawset(self, "_sync", true)
  rawset(self, "stats", { bytes = 0, wait_seconds = 0, steps = 0, buckets = 0 })
  -- rank 1's state everywhere (the broadcast checks that every rank's model has the same shapes)
  for _, p in ipairs(model:parameters()) do dist.broadcast(p, { src = 1 }) end
  for _, b in ipairs(model:buffers()) do dist.broadcast(b, { src = 1 }) end
  -- buckets, in reverse parameter order, one dtype each
  local params = {}
  for _, p in ipairs(model:parameters()) do
    if p.requires_grad then
      if not BYTES[p.dtype] then
        errors.raisef("DistributedDataParallel: parameters must be float32 or float64, got %s", p.dtype)
      end
      params[#params + 1] = p
    end
  end
  local buckets, where, cur = {}, {}, nil
  for i = #params, 1, -1 do
    local p = params[i]
    local nbytes = p:numel() * BYTES[p.dtype]
    if not cur or cur.dtype ~= p.dtype or (cur.numel > 0 and (cur.numel * BYTES[p.dtype] + nbytes) > bucket_bytes) then
      cur = { dtype = p.dtype, numel = 0, slots = {} }
      buckets[#buckets + 1] = cur
    end
    cur.slots[#cur.slots + 1] = { param = p, offset = cur.numel, numel = p:numel() }
    where[p] = { #buckets, #cur.slots }
    cur.numel = cur.numel + p:numel()
  end
  for _, b in ipairs(buckets) do
    b.buffer = core.zeros(b.numel, { dtype = b.dtype })
    for _, s in ipairs(b.slots) do
      s.view = b.buffer:narrow(1, s.offset + 1, s.numel):view(s.param.shape)
    end
  end
  rawset(self, "_buckets", buckets)
  local handles = {}
  for _, p in ipairs(params) do
    local bi, k = where[p][1], where[p][2]
    handles[#handles + 1] = p:register_hook(function(g) self:_on_grad(bi, k, g) end)
  end
  rawset(self, "_hooks", handles)
end

function DDP:forward(...)
  if self._broadcast_buffers and dist.world_size() > 1 then
    local bufs = self.module:buffers()
    if #bufs > 0 then dist._broadcast_many(bufs, 1) end -- one call per dtype; shapes checked at construction
  end
  return self.module(...)
end

-- the state of one synchronized backward pass: which slots are filled, the next bucket to start
local function start_ready(self, pass)
  local buckets = self._buckets
  while pass.next <= #buckets and pass.filled[pass.next] == #buckets[pass.next].slots do
    local b = buckets[pass.next]
    pass.reqs[pass.next] = dist._iall_reduce_sum(b.buffer)
    pass.next = pass.next + 1
  end
end

function DDP:_on_grad(bi, k, g)
  if not self._sync or dist.world_size() == 1 then return end
  local pass = self._pass
  if not pass then
    pass = { filled = {}, seen = {}, next = 1, reqs = {}, fresh = {} }
    for i = 1, #self._buckets do pass.filled[i], pass.seen[i] = 0, {} end
    rawset(self, "_pass", pass)
    autograd.queue_callback(function() self:_finish() end)
  end
  local s = self._buckets[bi].slots[k]
  autograd.no_grad(function()
    s.view:copy_(g)
    local acc = s.param.grad -- gradients accumulated under no_sync: averaged with this one
    if acc ~= nil then s.view:add_(acc) end
    pass.fresh[s] = acc == nil
  end)
  if not pass.seen[bi][k] then
    pass.seen[bi][k] = true
    pass.filled[bi] = pass.filled[bi] + 1
  end
  start_ready(self, pass)
  -- the all-reduces run on luagrad.mpi's communication thread; without it (an MPI without
  -- MPI_THREAD_SERIALIZED) Open MPI moves MPI_Iallreduce along only inside MPI calls, so test
  -- the running ones from each hook
  for i = pass.tested or 1, pass.next - 1 do
    if pass.reqs[i]:test() then pass.tested = i + 1 else break end
  end
end

-- End of backward: slots no gradient reached count as zeros (or their accumulated .grad), the
-- rest of the buckets start, every all-reduce is waited for, and .grad becomes the average.
function DDP:_finish()
  local pass = self._pass
  rawset(self, "_pass", nil)
  local n = dist.world_size()
  autograd.no_grad(function()
    for i, b in ipairs(self._buckets) do
      if pass.filled[i] < #b.slots then
        for k, s in ipairs(b.slots) do
          if not pass.seen[i][k] then
            if s.param.grad ~= nil then s.view:copy_(s.param.grad) else s.view:zero_() end
          end
        end
        pass.filled[i] = #b.slots
      end
    end
    start_ready(self, pass)
    local stats = self.stats
    for i, b in ipairs(self._buckets) do
      stats.wait_seconds = stats.wait_seconds + pass.reqs[i]:wait()
      stats.bytes = stats.bytes + b.numel * BYTES[b.dtype]
      for _, s in ipairs(b.slots) do
        -- a .grad this backward made (nobody else can hold it) is replaced by the average, one
        -- pass over memory; an older one (no_sync, zero_grad(false)) is overwritten in place
        local p = s.param
        if pass.fresh[s] or p.grad == nil then p.grad = s.view / n else p.grad:copy_(s.view):div_(n) end
      end
    end
    stats.steps = stats.steps + 1
    stats.buckets = #self._buckets
  end)
end

---no_sync(fn, ...): runs fn(...) (forward and backward passes) without averaging gradients;
---they accumulate locally until the next synchronized backward. Returns fn's results.
function DDP:no_sync(fn, ...)
  errors.check("DistributedDataParallel:no_sync", "argument #1 (fn)", fn, "function")
  local was = self._sync
  rawset(self, "_sync", false)
  local res = table.pack(pcall(fn, ...))
  rawset(self, "_sync", was)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

---The wrapped module's state dict, without a "module." prefix.
function DDP:state_dict(opts) return self.module:state_dict(opts) end
---Loads a state dict saved from the wrapped module (or from a DDP: the keys are the same).
function DDP:load_state_dict(sd, opts) return self.module:load_state_dict(sd, opts) end

return { DistributedDataParallel = DDP }
