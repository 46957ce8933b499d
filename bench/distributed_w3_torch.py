#!/usr/bin/python3
"""bench/distributed_w3_torch.py: bench/distributed_w3.lua in PyTorch 1.13, for comparison.

W3 (MLP 1024-4096-4096-1024, ReLU, MSE, SGD momentum 0.9, global batch 256) trained with
torch.nn.parallel.DistributedDataParallel over the Gloo backend on 2 processes of this machine
(each with 1 thread and a batch of 128), and alone in one process (batch 256, no DDP). Prints the
same line as the Lua script, for each world size asked:

  /usr/bin/python3 bench/distributed_w3_torch.py [--world 1,2] [--steps 8]
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


def run(rank, world, steps, warm, port, out):
    torch.set_num_threads(1)
    if world > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1024))
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    b = 256 // world
    torch.manual_seed(rank + 1)
    x, y = torch.randn(b, 1024), torch.randn(b, 1024)
    times, parts = [], [0.0, 0.0, 0.0]
    for s in range(warm + steps):
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        t1 = time.perf_counter()
        loss.backward()  # with DDP: bucketed all-reduces started from autograd hooks
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if s >= warm:
            times.append(t3 - t0)
            parts = [parts[0] + t1 - t0, parts[1] + t2 - t1, parts[2] + t3 - t2]
    times.sort()
    med = times[(len(times) - 1) // 2]
    if rank == 0:
        out.put("torch W3 %d rank(s) x 1 thread, batch %d per rank: %.1f ms/step, %.0f samples/s; "
                "mean forward %.0f ms, backward %.0f ms, optimizer %.0f ms"
                % (world, b, med * 1e3, 256 / med, parts[0] / steps * 1e3, parts[1] / steps * 1e3,
                   parts[2] / steps * 1e3))
    if world > 1:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default="1,2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    for w in [int(v) for v in a.world.split(",")]:
        q = ctx.Queue()
        mp.spawn(run, args=(w, a.steps, a.warm, a.port, q), nprocs=w, join=True)
        print(q.get(), flush=True)


if __name__ == "__main__":
    main()
