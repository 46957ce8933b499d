-- Run by spec/distributed_spec.lua under mpirun: N SGD steps of a float64 MLP through
-- DistributedDataParallel, each rank on its B rows of a global batch of world_size * B, against
-- N steps of the same model on the whole batch in one process (run on every rank, for reference).
-- Prints "max_rel <x>" on rank 1: the largest relative difference of any parameter after any step.
-- arg[1] = "unused": a branch that only rank 2 leaves unused (its gradient is nil there);
-- "accumulate": each rank's rows in two micro-batches, the first under ddp:no_sync (gradient
-- accumulation); "zero_false": opt:zero_grad(false), so .grad exists before each backward.
local lg = require "luagrad"
local nn, F, dist = lg.nn, lg.nn.functional, lg.distributed
local rank, world = dist.init()
local mode = arg[1]
lg.set_default_dtype("float64")

local Net = nn.Module:extend("Net")
function Net:init()
  self.fc1, self.fc2, self.side = nn.Linear(6, 16), nn.Linear(16, 3), nn.Linear(6, 3)
end
function Net:forward(x, use_side)
  local y = self.fc2(F.relu(self.fc1(x)))
  if use_side then y = y + self.side(x) end
  return y
end

local B, N = 8, 5
lg.manual_seed(1234 + rank) -- different on each rank: DDP's broadcast must make them equal
local net = Net()
local ddp = nn.DistributedDataParallel(net, { bucket_mb = 0.001 }) -- several buckets
lg.manual_seed(7)
local ref = Net()
ref:load_state_dict(net:state_dict())
local opt = lg.optim.SGD(ddp:parameters(), { lr = 0.1, momentum = 0.9 })
local ropt = lg.optim.SGD(ref:parameters(), { lr = 0.1, momentum = 0.9 })

local max_rel = 0
for step = 1, N do
  lg.manual_seed(100 + step) -- the same global batch on every rank
  local x, y = lg.randn(world * B, 6), lg.randint(1, 4, { world * B })
  local xs, ys = x:narrow(1, (rank - 1) * B + 1, B), y:narrow(1, (rank - 1) * B + 1, B)
  -- the side branch: used by both halves in the reference; with "unused", rank 2's half skips it
  -- and the reference sees the gradient of the first half only (averaged over the 2 halves)
  local use_side = not (mode == "unused" and rank == 2)
  opt:zero_grad(mode ~= "zero_false" and nil or false)
  if mode == "accumulate" then
    local h = B // 2
    ddp:no_sync(function()
      local first = F.cross_entropy(ddp(xs:narrow(1, 1, h), true), ys:narrow(1, 1, h)) / 2
      first:backward()
    end)
    local second = F.cross_entropy(ddp(xs:narrow(1, h + 1, h), true), ys:narrow(1, h + 1, h)) / 2
    second:backward()
  else
    F.cross_entropy(ddp(xs, use_side), ys):backward()
  end
  opt:step()
  ropt:zero_grad()
  local l
  if mode == "unused" and world == 2 then
    local h = B
    l = (F.cross_entropy(ref(x:narrow(1, 1, h), true), y:narrow(1, 1, h)) +
         F.cross_entropy(ref(x:narrow(1, h + 1, h), false), y:narrow(1, h + 1, h))) / 2
  else
    l = F.cross_entropy(ref(x, true), y)
  end
  l:backward()
  ropt:step()
  local a, b = net:state_dict(), ref:state_dict()
  for k, v in pairs(a) do
    local d = ((v - b[k]):abs():max():item()) / math.max(b[k]:abs():max():item(), 1e-300)
    if d > max_rel then max_rel = d end
  end
end
if rank == 1 then
  print(string.format("max_rel %.3e", max_rel))
  local st = ddp.stats
  print(string.format("bytes_per_step %d wait_seconds %.6f buckets %d", st.bytes // N, st.wait_seconds, st.buckets))
end
