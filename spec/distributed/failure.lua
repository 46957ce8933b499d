-- Run by spec/distributed_spec.lua under mpirun: rank 2 raises an error while rank 1 waits in a
-- barrier that rank 2 never reaches. The job must end (MPI_Abort), not hang.
local lg = require "luagrad"
local dist = lg.distributed
local rank = dist.init()
if rank == 2 then error("rank two fails on purpose") end
dist.barrier()
print("after the barrier")
