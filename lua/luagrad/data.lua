-- luagrad.data: datasets and mini-batches.
--
--   local ds = lg.data.TensorDataset(x, y)          -- ds[i] is {x[i], y[i]}; #ds
--   local loader = lg.data.DataLoader(ds, {batch_size = 128, shuffle = true, drop_last = false})
--   for xb, yb in loader do ... end                  -- one epoch per loop; #loader batches
--
-- Shuffling draws a permutation from luagrad's generator each epoch, so lg.manual_seed(n) fixes
-- the order of every epoch. A TensorDataset is batched with one index_select per tensor; any other
-- dataset (a table with __len and __index returning a list of tensors) by stacking items.
local core = require "luagrad.core"
local errors = require "luagrad.errors"

local M = {}

---ds[i] is {t1[i], t2[i], ...}; #ds the number of rows.
---@class luagrad.data.TensorDataset
---@field tensors luagrad.Tensor[]
---@field n integer the number of rows
---@field [integer] luagrad.Tensor[]
local TensorDataset = {}
TensorDataset.__index = function(self, k)
  if type(k) == "number" then
    local item = {}
    for j, t in ipairs(rawget(self, "tensors")) do item[j] = t[k] end
    return item
  end
  return TensorDataset[k]
end
TensorDataset.__len = function(self) return rawget(self, "n") end

---TensorDataset(t1, t2, ...): tensors with the same first dimension, indexed together.
---@param ... luagrad.Tensor
---@return luagrad.data.TensorDataset
function M.TensorDataset(...)
  local ts = table.pack(...)
  if ts.n == 0 then errors.raise("TensorDataset: needs at least one tensor") end
  local n
  for i = 1, ts.n do
    local t = ts[i]
    if not core.is_tensor(t) then errors.raisef("TensorDataset: argument %d is a %s, not a tensor", i, type(t)) end
    if t:dim() == 0 then errors.raisef("TensorDataset: tensor %d is 0-d; it needs a first dimension", i) end
    if n and t:size(1) ~= n then
      errors.raisef("TensorDataset: tensor %d has %d rows, tensor 1 has %d", i, t:size(1), n)
    end
    n = n or t:size(1)
  end
  return setmetatable({ tensors = { table.unpack(ts, 1, ts.n) }, n = n }, TensorDataset)
end

---@class luagrad.data.DataLoaderOptions
---@field batch_size? integer (default 1)
---@field shuffle? boolean a new order each epoch, drawn from luagrad's generator (default false)
---@field drop_last? boolean leave out a last, smaller batch (default false)
---@field sampler? luagrad.data.DistributedSampler the samples to draw, in its order (instead of shuffle)

---for xb, yb in loader do ... end runs one epoch; #loader is the number of batches.
---@class luagrad.data.DataLoader
---@field dataset luagrad.data.TensorDataset|table
---@field batch_size integer
---@field shuffle boolean
---@field drop_last boolean
local DataLoader = {}
DataLoader.__index = DataLoader

---@param ds luagrad.data.TensorDataset|table a TensorDataset, or a table with __len and __index giving a list of tensors
---@param opts? luagrad.data.DataLoaderOptions
---@return luagrad.data.DataLoader
function M.DataLoader(ds, opts)
  opts = errors.options("DataLoader", opts, { "batch_size", "shuffle", "drop_last", "sampler" })
  local bs = opts.batch_size or 1
  if math.type(bs) ~= "integer" or bs < 1 then
    errors.raise("DataLoader: batch_size must be a positive integer, got " .. tostring(bs))
  end
  if type(ds) ~= "table" and type(ds) ~= "userdata" then errors.raise("DataLoader: dataset must be a table, got " .. type(ds)) end
  if opts.sampler ~= nil and (type(opts.sampler) ~= "table" or type(opts.sampler.indices) ~= "function") then
    errors.raise("DataLoader: sampler must be a sampler (lg.data.DistributedSampler), got " .. type(opts.sampler))
  end
  if opts.sampler and opts.shuffle then
    errors.raise("DataLoader: give shuffle or a sampler, not both (the sampler shuffles: DistributedSampler's shuffle)")
  end
  local self = setmetatable({ dataset = ds, batch_size = bs, shuffle = opts.shuffle or false,
    drop_last = opts.drop_last or false, sampler = opts.sampler }, DataLoader)
  return self
end

function DataLoader:__len()
  local n = self.sampler and #self.sampler or #self.dataset
  return self.drop_last and n // self.batch_size or (n + self.batch_size - 1) // self.batch_size
end

-- Starts an epoch: the order of the samples (1-based int64 indices).
function DataLoader:_start()
  local n = #self.dataset
  if self.sampler then
    self._order = self.sampler:indices()
  else
    self._order = self.shuffle and core.randperm(n) or core.arange(1, n + 1)
  end
  self._pos = 0
end

local function batch_of(ds, idx)
  if getmetatable(ds) == TensorDataset then
    local out = {}
    for j, t in ipairs(ds.tensors) do out[j] = t:index_select(1, idx) end
    return out
  end
  local items = {}
  for k = 1, idx:numel() do items[k] = ds[idx[k]] end
  local out = {}
  for j = 1, #items[1] do
    local col = {}
    for k, item in ipairs(items) do col[k] = item[j] end
    out[j] = core.is_tensor(col[1]) and core.stack(col) or core.tensor(col)
  end
  return out
end

-- The generic for calls the loader: each call returns the next batch's tensors, and nil at the
-- end of the epoch (the next loop starts a new epoch, reshuffled).
function DataLoader:__call()
  if self._order == nil then self:_start() end
  local n, pos = self._order:numel(), self._pos
  local count = math.min(self.batch_size, n - pos)
  if count <= 0 or (self.drop_last and count < self.batch_size) then
    self._order = nil
    return nil
  end
  self._pos = pos + count
  return table.unpack(batch_of(self.dataset, self._order:narrow(1, pos + 1, count)))
end

---The loader's place in its epoch, to resume exactly after a restart: the epoch's order of
---samples (nil between epochs) and how many were handed out. Save it with the model, the
---optimizer and lg.get_rng_state() (the next epoch's shuffle draws from the generator).
---@return {order: luagrad.Tensor|nil, pos: integer}
function DataLoader:state_dict()
  return { order = self._order and self._order:clone() or nil, pos = self._pos or 0 }
end

---Restores what state_dict returned: the next batch is the one that would have come next.
---@param sd {order: luagrad.Tensor|nil, pos: integer}
function DataLoader:load_state_dict(sd)
  errors.check("DataLoader:load_state_dict", "state", sd, "table")
  errors.check("DataLoader:load_state_dict", "state.order", sd.order, "tensor?")
  errors.check("DataLoader:load_state_dict", "state.pos", sd.pos, "integer")
  local n = self.sampler and #self.sampler or #self.dataset
  if sd.order and (sd.order:numel() ~= n or sd.order.dtype ~= "int64") then
    errors.raisef("DataLoader:load_state_dict: the saved order has %d int64 entries, the dataset %d samples",
      sd.order:numel(), n)
  end
  if sd.pos < 0 or sd.pos > n then errors.raisef("DataLoader:load_state_dict: position %d outside 0..%d", sd.pos, n) end
  self._order = sd.order and sd.order:clone() or nil
  self._pos = sd.pos
end

-- ---- DistributedSampler ----------------------------------------------------------------------

---Each rank's share of a dataset for data-parallel training (PyTorch's DistributedSampler):
---every epoch all ranks draw the same order (a permutation seeded with seed + epoch, from a
---generator of its own: luagrad's generator is left as it was), padded by repeating its first
---samples to a multiple of num_replicas (or, with drop_last, cut to one), and rank r takes the
---entries r, r + num_replicas, ...: the shards are disjoint and together cover the dataset.
---Call set_epoch(e) before each epoch, or every epoch has the same order.
---@class luagrad.data.DistributedSampler
---@field num_replicas integer
---@field rank integer 1-based
---@field epoch integer
local DistributedSampler = {}
DistributedSampler.__index = DistributedSampler

---DistributedSampler(dataset, {num_replicas = world_size(), rank = rank(), shuffle = true,
---seed = 0, drop_last = false}); num_replicas and rank default to lg.distributed's.
---@param ds table|integer a dataset (anything with #) or its number of samples
function M.DistributedSampler(ds, opts)
  opts = errors.options("DistributedSampler", opts, { "num_replicas", "rank", "shuffle", "seed", "drop_last" })
  local n = ds
  if type(ds) == "table" or type(ds) == "userdata" then
    local ok, len = pcall(function() return #ds end) -- (a 0-d tensor has no length)
    n = ok and len or nil
  end
  if math.type(n) ~= "integer" or n < 0 then
    errors.raise("DistributedSampler: argument #1 must be a dataset or its number of samples, got " .. type(ds))
  end
  local dist = require "luagrad.distributed"
  local R = opts.num_replicas or dist.world_size()
  local r = opts.rank or dist.rank()
  if math.type(R) ~= "integer" or R < 1 then errors.raise("DistributedSampler: num_replicas must be a positive integer") end
  if math.type(r) ~= "integer" or r < 1 or r > R then
    errors.raisef("DistributedSampler: rank must be an integer in 1..%d, got %s", R, tostring(r))
  end
  local drop = opts.drop_last or false
  local per = drop and n // R or (n + R - 1) // R
  return setmetatable({ n = n, num_replicas = R, rank = r, shuffle = opts.shuffle ~= false,
    seed = opts.seed or 0, drop_last = drop, per_rank = per, epoch = 0 }, DistributedSampler)
end

---The number of samples this rank draws per epoch.
function DistributedSampler:__len() return self.per_rank end

---Sets the epoch, which seeds the shuffle (the same on every rank).
function DistributedSampler:set_epoch(epoch)
  errors.check("DistributedSampler:set_epoch", "epoch", epoch, "integer")
  self.epoch = epoch
end

---This rank's 1-based sample indices for the current epoch (an int64 tensor).
function DistributedSampler:indices()
  local n, R = self.n, self.num_replicas
  local order
  if self.shuffle then
    local saved = core.get_rng_state()
    core.manual_seed(self.seed + self.epoch)
    order = core.randperm(n)
    core.set_rng_state(saved)
  else
    order = core.arange(1, n + 1)
  end
  local total = self.per_rank * R
  if total > n then -- pad by repeating the order from its start (several times if n < R)
    local parts, have = { order }, n
    while have < total do
      local k = math.min(n, total - have)
      parts[#parts + 1] = order:narrow(1, 1, k)
      have = have + k
    end
    order = core.cat(parts)
  elseif total < n then
    order = order:narrow(1, 1, total)
  end
  if self.per_rank == 0 then return core.zeros(0, { dtype = "int64" }) end
  -- entries rank, rank + R, ...: row `rank` of the order laid out as per_rank x R
  return order:reshape(self.per_rank, R):select(2, self.rank):contiguous()
end

M.Dataset = TensorDataset
return M
