-- luagrad.data: datasets and mini-batches.
--
--   local ds = lg.data.TensorDataset(x, y)          -- ds[i] is {x[i], y[i]}; #ds
--   local loader = lg.data.DataLoader(ds, {batch_size = 128, shuffle = true, drop_last = false})
--   for xb, yb in loader do ... end                  -- one epoch per loop; #loader batches
--
--   local a, b = lg.data.random_split(ds, {0.8, 0.2}, lg.data.Generator(0))   -- two Subsets
--   lg.data.Subset(ds, {1, 5, 9}), lg.data.ConcatDataset({a, b})
--   lg.data.FunctionDataset(1000, function(i) return {x_of(i), label_of(i)} end)  -- made on demand
--
-- Shuffling draws a permutation from luagrad's generator each epoch, so lg.manual_seed(n) fixes
-- the order of every epoch; a loader given its own generator (lg.data.Generator(seed)) draws from
-- that instead and leaves the global stream alone. A TensorDataset (and a Subset of one) is
-- batched with one index_select per tensor; any other dataset (a table with __len and __index
-- returning a tensor, a number or a list of those) by stacking items (integers become int64
-- tensors, as PyTorch's default collate makes them), or by the loader's collate_fn.
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

---ds[i] is fn(i), computed when asked; #ds is n.
---@class luagrad.data.FunctionDataset
---@field n integer the number of items
---@field fn fun(i: integer): any
local FunctionDataset = {}
FunctionDataset.__index = function(self, k)
  if type(k) == "number" then
    local n = rawget(self, "n")
    local i = math.tointeger(k)
    if i == nil then errors.raisef("FunctionDataset: index must be an integer, got %s", errors.describe(k)) end
    if i < 0 then i = i + n + 1 end
    if i < 1 or i > n then errors.raisef("FunctionDataset: index %d out of range 1..%d", k, n) end
    return rawget(self, "fn")(i)
  end
  return FunctionDataset[k]
end
FunctionDataset.__len = function(self) return rawget(self, "n") end

---FunctionDataset(n, fn): a dataset of n items made on demand, ds[i] = fn(i) for i in 1..n
---(negative i counts from the end). An item is what a DataLoader batches: a tensor, a number,
---or a list of those (a sample and its label).
---@param n integer
---@param fn fun(i: integer): any
---@return luagrad.data.FunctionDataset
function M.FunctionDataset(n, fn)
  local len = type(n) == "number" and math.tointeger(n)
  if not len or len < 0 then
    errors.raisef("FunctionDataset: n must be a non-negative integer, got %s",
      type(n) == "number" and tostring(n) or errors.describe(n))
  end
  errors.check("FunctionDataset", "fn", fn, "callable")
  return setmetatable({ n = len, fn = fn }, FunctionDataset)
end

-- ---- Generator: a random stream of its own ---------------------------------------------------

---A generator of its own: draws through it (a loader's shuffle, random_split) neither read nor
---move luagrad's global generator. It holds a state like lg.get_rng_state()'s and swaps it in for
---the duration of a draw.
---@class luagrad.data.Generator
local Generator = {}
Generator.__index = Generator

local DEFAULT_SEED = 67280421310721 -- PyTorch's default seed

---Generator(seed): a new generator seeded with seed (an integer; default PyTorch's default seed).
---@param seed? integer
---@return luagrad.data.Generator
-- seed as a Lua integer, or an error naming fname
local function check_seed(fname, seed)
  local s = math.tointeger(seed)
  if s == nil then errors.raisef("%s: seed must be an integer, got %s", fname, errors.describe(seed)) end
  return s
end

function M.Generator(seed)
  return setmetatable({}, Generator):_seed(check_seed("Generator", seed == nil and DEFAULT_SEED or seed))
end

function Generator:_seed(seed)
  local saved = core.get_rng_state()
  core.manual_seed(seed)
  self._state = core.get_rng_state()
  core.set_rng_state(saved)
  return self
end

-- fn(...) with this generator as luagrad's, which is restored afterwards (also on an error)
function Generator:_draw(fn, ...)
  local saved = core.get_rng_state()
  core.set_rng_state(self._state)
  local res = table.pack(pcall(fn, ...))
  self._state = core.get_rng_state()
  core.set_rng_state(saved)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

---Seeds the generator as lg.manual_seed seeds the global one; returns it.
---@param seed integer
---@return luagrad.data.Generator
function Generator:manual_seed(seed)
  return self:_seed(check_seed("Generator:manual_seed", seed))
end

---The generator's state (an int64 tensor of two elements, as lg.get_rng_state).
---@return luagrad.Tensor
function Generator:get_state() return self._state:clone() end

---Restores a state get_state returned.
---@param state luagrad.Tensor
function Generator:set_state(state)
  errors.check("Generator:set_state", "state", state, "tensor")
  if state.dtype ~= "int64" or state:numel() ~= 2 then
    errors.raise("Generator:set_state: expected the int64 tensor of 2 elements get_state returns")
  end
  self._state = state:clone()
end

local function is_generator(g) return getmetatable(g) == Generator end

-- a permutation of 1..n from the generator g, or from luagrad's when g is nil
local function randperm(n, g)
  if g then return g:_draw(core.randperm, n) end
  return core.randperm(n)
end

-- ---- Subset, ConcatDataset, random_split ------------------------------------------------------

---ds[i] is dataset[indices[i]]; #ds is #indices.
---@class luagrad.data.Subset
---@field dataset table
---@field indices luagrad.Tensor 1-based int64
local Subset = {}
Subset.__index = function(self, k)
  if type(k) == "number" then
    local indices = rawget(self, "indices")
    if math.type(k) ~= "integer" and k ~= math.floor(k) then
      errors.raisef("Subset: index must be an integer, got %s", tostring(k))
    end
    local n = indices:numel()
    local i = k < 0 and k + n + 1 or k
    if i < 1 or i > n then errors.raisef("Subset: index %d out of range 1..%d", k, n) end
    return rawget(self, "dataset")[indices[i]]
  end
  return Subset[k]
end
Subset.__len = function(self) return rawget(self, "indices"):numel() end

local function check_dataset(fname, ds)
  if type(ds) ~= "table" and type(ds) ~= "userdata" then
    errors.raisef("%s: dataset must be a table with # and integer indexing, got %s", fname, errors.describe(ds))
  end
  local ok, n = pcall(function() return #ds end)
  if not ok or math.type(n) ~= "integer" then errors.raisef("%s: the dataset has no length (#)", fname) end
  return n
end

-- a plain copy of a list's items, read raw: a table that answers every index through __index
-- (or a __len that lies) would make ipairs or # loop for ever
local function raw_list(t)
  local out = {}
  for i = 1, rawlen(t) do out[i] = rawget(t, i) end
  return out
end

---Subset(dataset, indices): the items of dataset at indices (a Lua list or a 1-d int64 tensor,
---1-based), in that order.
---@param dataset table
---@param indices integer[]|luagrad.Tensor
---@return luagrad.data.Subset
function M.Subset(dataset, indices)
  local n = check_dataset("Subset", dataset)
  if type(indices) == "table" then
    local list = raw_list(indices)
    for i, v in ipairs(list) do
      if math.type(v) ~= "integer" then errors.raisef("Subset: indices[%d] must be an integer, got %s", i, errors.describe(v)) end
    end
    indices = #list == 0 and core.zeros(0, { dtype = "int64" }) or core.tensor(list, { dtype = "int64" })
    if indices:dim() == 0 then indices = indices:view(0) end
  end
  errors.check("Subset", "indices", indices, "tensor")
  if indices.dtype ~= "int64" or indices:dim() ~= 1 then
    errors.raisef("Subset: indices must be a list of integers or a 1-d int64 tensor, got a %s tensor of %d dimensions",
      indices.dtype, indices:dim())
  end
  if indices:numel() > 0 and (indices:min():item() < 1 or indices:max():item() > n) then
    errors.raisef("Subset: an index is outside 1..%d (the dataset's length)", n)
  end
  return setmetatable({ dataset = dataset, indices = indices:clone() }, Subset)
end

---ds[i] runs through the datasets in order; #ds is the sum of their lengths.
---@class luagrad.data.ConcatDataset
---@field datasets table[]
---@field cumulative_sizes integer[] the running sums of the lengths
local ConcatDataset = {}
-- item k of a ConcatDataset: which of its datasets holds it, and where
local function locate(self, k)
  local sizes = rawget(self, "cumulative_sizes")
  local n = sizes[#sizes] or 0
  local i = k < 0 and k + n + 1 or k
  if math.type(i) ~= "integer" and i ~= math.floor(i) then
    errors.raisef("ConcatDataset: index must be an integer, got %s", tostring(k))
  end
  if i < 1 or i > n then errors.raisef("ConcatDataset: index %d out of range 1..%d", k, n) end
  local lo, hi = 1, #sizes -- the first dataset whose running sum reaches i
  while lo < hi do
    local mid = (lo + hi) // 2
    if sizes[mid] >= i then hi = mid else lo = mid + 1 end
  end
  return rawget(self, "datasets")[lo], math.tointeger(i - (sizes[lo - 1] or 0))
end
ConcatDataset.__index = function(self, k)
  if type(k) == "number" then
    local ds, i = locate(self, k)
    return ds[i]
  end
  return ConcatDataset[k]
end

-- The TensorDataset and row that item i of ds comes from, through Subsets and ConcatDatasets
-- (nil for any other dataset): their batches keep the tensors' dtypes.
local function resolve(ds, i)
  local mt = getmetatable(ds)
  if mt == TensorDataset then return ds, i end
  if mt == Subset then return resolve(rawget(ds, "dataset"), rawget(ds, "indices")[i]) end
  if mt == ConcatDataset then return resolve(locate(ds, i)) end
  return nil
end
ConcatDataset.__len = function(self)
  local sizes = rawget(self, "cumulative_sizes")
  return sizes[#sizes] or 0
end

---ConcatDataset(datasets): the datasets of the list one after another.
---@param datasets table[]
---@return luagrad.data.ConcatDataset
function M.ConcatDataset(datasets)
  errors.check("ConcatDataset", "datasets", datasets, "table")
  datasets = raw_list(datasets)
  if #datasets == 0 then errors.raise("ConcatDataset: needs at least one dataset") end
  local sizes, total = {}, 0
  for i, ds in ipairs(datasets) do
    total = total + check_dataset(string.format("ConcatDataset: datasets[%d]", i), ds)
    sizes[i] = total
  end
  local list = {}
  for i, ds in ipairs(datasets) do list[i] = ds end
  return setmetatable({ datasets = list, cumulative_sizes = sizes }, ConcatDataset)
end

---random_split(dataset, lengths, generator): Subsets of a random permutation of dataset, of the
---given lengths (integers summing to #dataset, or fractions summing to 1: each gets the floor of
---its share and what remains goes one by one to the first ones, as PyTorch does), returned as
---several values. The permutation comes from generator when given, else luagrad's generator.
---@param dataset table
---@param lengths number[]
---@param generator? luagrad.data.Generator
---@return luagrad.data.Subset ...
function M.random_split(dataset, lengths, generator)
  local n = check_dataset("random_split", dataset)
  errors.check("random_split", "lengths", lengths, "table")
  if generator ~= nil and not is_generator(generator) then
    errors.raisef("random_split: generator must be a lg.data.Generator, got %s", errors.describe(generator))
  end
  lengths = raw_list(lengths)
  if #lengths == 0 then errors.raise("random_split: lengths is empty") end
  local sum, fractions = 0, true
  for i, l in ipairs(lengths) do
    if type(l) ~= "number" or l < 0 or l ~= l then
      errors.raisef("random_split: lengths[%d] must be a non-negative number, got %s", i, tostring(l))
    end
    sum = sum + l
    fractions = fractions and l <= 1
  end
  local sizes = {}
  if fractions and math.abs(sum - 1) < 1e-9 and n ~= 1 then
    local given = 0
    for i, f in ipairs(lengths) do
      sizes[i] = math.floor(n * f)
      given = given + sizes[i]
    end
    for i = 0, n - given - 1 do
      local j = i % #sizes + 1
      sizes[j] = sizes[j] + 1
    end
  else
    for i, l in ipairs(lengths) do
      if math.type(l) ~= "integer" and l ~= math.floor(l) then
        errors.raisef("random_split: lengths must be integers summing to %d or fractions summing to 1, got %s at %d", n,
          tostring(l), i)
      end
      sizes[i] = math.tointeger(l)
    end
    if sum ~= n then
      errors.raisef("random_split: the lengths sum to %s, the dataset has %d items", tostring(sum), n)
    end
  end
  local perm, out, at = randperm(n, generator), {}, 0
  for i, size in ipairs(sizes) do
    out[i] = M.Subset(dataset, perm:narrow(1, at + 1, size))
    at = at + size
  end
  return table.unpack(out)
end

---@class luagrad.data.DataLoaderOptions
---@field batch_size? integer (default 1)
---@field shuffle? boolean a new order each epoch, drawn from luagrad's generator (default false)
---@field drop_last? boolean leave out a last, smaller batch (default false)
---@field sampler? function|integer[]|luagrad.Tensor|luagrad.data.DistributedSampler each epoch's order:
---a function returning it, the order itself, or a sampler object (its indices())
---@field generator? luagrad.data.Generator where a shuffle draws its permutation (default luagrad's generator)
---@field collate_fn? function(items) makes a batch from a list of dataset items; the loop gets what it returns
---@field num_workers? integer 0 only: batches are made in the calling thread

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
  opts = errors.options("DataLoader", opts,
    { "batch_size", "shuffle", "drop_last", "sampler", "generator", "collate_fn", "num_workers" })
  local bs = opts.batch_size or 1
  if math.type(bs) ~= "integer" or bs < 1 then
    errors.raise("DataLoader: batch_size must be a positive integer, got " .. tostring(bs))
  end
  if type(ds) ~= "table" and type(ds) ~= "userdata" then errors.raise("DataLoader: dataset must be a table, got " .. type(ds)) end
  local nw = opts.num_workers
  if nw ~= nil and (math.type(nw) ~= "integer" or nw < 0) then
    errors.raisef("DataLoader: num_workers must be a non-negative integer, got %s", tostring(nw))
  end
  if nw ~= nil and nw > 0 then
    errors.raisef("DataLoader: num_workers = %d is not supported: batches are made in the calling thread "
      .. "(leave num_workers out or pass 0)", nw)
  end
  local sampler = opts.sampler
  if sampler ~= nil and type(sampler) ~= "function" and type(sampler) ~= "table" and not core.is_tensor(sampler) then
    errors.raisef("DataLoader: sampler must be a function, a list of indices, an int64 tensor or a sampler " ..
      "(lg.data.DistributedSampler), got %s",
      errors.describe(sampler))
  end
  if sampler ~= nil and opts.shuffle then errors.raise("DataLoader: sampler and shuffle = true exclude each other") end
  if opts.generator ~= nil and not is_generator(opts.generator) then
    errors.raisef("DataLoader: generator must be a lg.data.Generator, got %s", errors.describe(opts.generator))
  end
  errors.check("DataLoader", "opts.collate_fn", opts.collate_fn, "callable?")
  local self = setmetatable({ dataset = ds, batch_size = bs, shuffle = opts.shuffle or false,
    drop_last = opts.drop_last or false, sampler = sampler, generator = opts.generator,
    collate_fn = opts.collate_fn, num_workers = 0 }, DataLoader)
  return self
end

-- the sampler's order for an epoch, checked: a 1-d int64 tensor of indices within 1..n
local function sampled(sampler, n)
  local order = sampler
  if type(sampler) == "function" then
    order = sampler(n)
  elseif type(sampler) == "table" and getmetatable(sampler) ~= nil and type(sampler.indices) == "function" then
    order = sampler:indices() -- a sampler object (DistributedSampler)
  end
  if type(order) == "table" then
    order = raw_list(order)
    for i, v in ipairs(order) do
      if math.type(v) ~= "integer" then errors.raisef("DataLoader: sampler's index %d is not an integer: %s", i, tostring(v)) end
    end
    order = #order == 0 and core.zeros(0, { dtype = "int64" }) or core.tensor(order, { dtype = "int64" })
  end
  if not core.is_tensor(order) or order.dtype ~= "int64" or order:dim() ~= 1 then
    errors.raisef("DataLoader: the sampler must give a list of indices or a 1-d int64 tensor, got %s",
      errors.describe(order))
  end
  if order:numel() > 0 and (order:min():item() < 1 or order:max():item() > n) then
    errors.raisef("DataLoader: the sampler gave an index outside 1..%d (the dataset's length)", n)
  end
  return order
end

-- the number of samples an epoch hands out
local function epoch_size(self)
  local s = self.sampler
  if s == nil or type(s) == "function" then return s and sampled(s, #self.dataset):numel() or #self.dataset end
  return core.is_tensor(s) and s:numel() or #s
end

function DataLoader:__len()
  local n = self._order and self._order:numel() or epoch_size(self)
  return self.drop_last and n // self.batch_size or (n + self.batch_size - 1) // self.batch_size
end

-- Starts an epoch: the order of the samples (1-based int64 indices).
function DataLoader:_start()
  local n = #self.dataset
  if self.sampler ~= nil then
    self._order = sampled(self.sampler, n)
  elseif self.shuffle then
    self._order = randperm(n, self.generator)
  else
    self._order = core.arange(1, n + 1)
  end
  self._pos = 0
end

-- one column of a batch: tensors stacked, integers into an int64 tensor (labels), other
-- numbers into one of the default dtype
local function collate(col)
  if core.is_tensor(col[1]) then return core.stack(col) end
  for _, v in ipairs(col) do
    if math.type(v) ~= "integer" then return core.tensor(col) end
  end
  return core.tensor(col, { dtype = "int64" })
end

local function batch_of(ds, idx, collate_fn)
  if collate_fn then
    local items = {}
    for k = 1, idx:numel() do items[k] = ds[idx[k]] end
    return table.pack(collate_fn(items))
  end
  while getmetatable(ds) == Subset do -- a Subset of a TensorDataset: its rows, one index_select each
    idx = rawget(ds, "indices"):index_select(1, idx)
    ds = rawget(ds, "dataset")
  end
  if getmetatable(ds) == TensorDataset then
    local out = {}
    for j, t in ipairs(ds.tensors) do out[j] = t:index_select(1, idx) end
    return out
  end
  local rows = {} -- items of TensorDatasets: each tensor's rows stacked, in its dtype
  for k = 1, idx:numel() do
    local tds, r = resolve(ds, idx[k])
    if tds == nil or (k > 1 and #tds.tensors ~= #rows[1][1].tensors) then
      rows = nil
      break
    end
    rows[k] = { tds, r }
  end
  if rows and #rows > 0 then
    local out = {}
    for j = 1, #rows[1][1].tensors do
      local col = {}
      for k, row in ipairs(rows) do col[k] = row[1].tensors[j]:select(1, row[2]) end
      out[j] = core.stack(col)
    end
    return out
  end
  local items = {}
  for k = 1, idx:numel() do items[k] = ds[idx[k]] end
  if core.is_tensor(items[1]) or type(items[1]) == "number" then return { collate(items) } end
  if type(items[1]) ~= "table" then
    errors.raisef("DataLoader: a dataset item must be a tensor, a number or a list of those (or pass a collate_fn), "
      .. "got %s", errors.describe(items[1]))
  end
  local out = {}
  for j = 1, #items[1] do
    local col = {}
    for k, item in ipairs(items) do col[k] = item[j] end
    out[j] = collate(col)
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
  local batch = batch_of(self.dataset, self._order:narrow(1, pos + 1, count), self.collate_fn)
  return table.unpack(batch, 1, batch.n or #batch)
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
  local n = #self.dataset -- a sampler's epoch may have another length: its saved order tells
  if self.sampler ~= nil and sd.order then n = sd.order:numel() end
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
