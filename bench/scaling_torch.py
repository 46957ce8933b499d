#!/usr/bin/python3
"""bench/scaling_torch.py: bench/scaling.lua's measurements in PyTorch 1.13 (JSON lines).

  /usr/bin/python3 bench/scaling_torch.py [--quick]

The same MLP steps (width-width-width-width, ReLU, MSE, SGD momentum 0.9) over the same batch and
width sweeps, at the same thread counts, and c = a + b from 1 to 10^7 float32 elements; the
same timing (median step after two warm-up steps; best of 5 loops for the adds).
"""
import json
import statistics
import sys
import time

import torch
from torch import nn

QUICK = "--quick" in sys.argv
OPENBLAS = None
try:
    import ctypes
    for line in open("/proc/self/maps"):
        if "libopenblas" in line:
            OPENBLAS = ctypes.CDLL(line.split()[-1])
            break
except OSError:
    OPENBLAS = None


def threads(n):
    torch.set_num_threads(n)
    if OPENBLAS is not None:
        OPENBLAS.openblas_set_num_threads(n)


def mlp_step(w, b, n):
    threads(n)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, w))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(b, w), torch.randn(b, w)

    def step():
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()

    step()
    step()
    times, spent, want = [], 0.0, 0.05 if QUICK else 0.5
    while (len(times) < 3 or spent < want) and len(times) < 2000:
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return statistics.median_low(times) * 1e3


def add_us(k):
    threads(1)
    a, b = torch.ones(k), torch.ones(k)
    reps = max(3, int((2e4 if QUICK else 2e5) / (1 + k / 100)))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            c = a + b
        best = min(best, (time.perf_counter() - t0) / reps)
        del c
    return best * 1e6


BATCHES = [8, 512] if QUICK else [8, 32, 128, 512, 2048, 4096]
WIDTHS = [8, 512] if QUICK else [8, 32, 128, 512, 1024, 2048, 4096]
SIZES = [1, 1000] if QUICK else [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000]
for b in BATCHES:
    for t in (1, 2):
        print(json.dumps({"kind": "batch", "w": 512, "b": b, "threads": t, "ms": mlp_step(512, b, t)}), flush=True)
for w in WIDTHS:
    print(json.dumps({"kind": "width", "w": w, "b": 64, "threads": 1, "ms": mlp_step(w, 64, 1)}), flush=True)
for k in SIZES:
    print(json.dumps({"kind": "add", "elements": k, "threads": 1, "us": add_us(k)}), flush=True)
