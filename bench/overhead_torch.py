#!/usr/bin/python3
"""bench/overhead_torch.py: bench/overhead.lua's loops in PyTorch 1.13, for comparison.

  /usr/bin/python3 bench/overhead_torch.py [--n 1000000] [--sizes]

Prints the same JSON lines as bench/overhead.lua ("engine": "torch"): microseconds per op of
c = a + b on 1-element float32 tensors, the same with a requiring gradients (each add records a
node), and a.add_(b) in place; best of 5; --sizes adds c = a + b from 1 to 10^7 elements.
One thread (torch.set_num_threads(1)).
"""
import argparse
import time

import torch


def best(f, reps):
    b = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        f(reps)
        b = min(b, time.process_time() - t0)
    return b / reps * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000000)
    ap.add_argument("--sizes", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    a, b = torch.ones(1), torch.ones(1)
    ar = torch.ones(1, requires_grad=True)

    def empty(m):
        c = None
        for _ in range(m):
            c = m
        return c

    def add(m):
        c = None
        for _ in range(m):
            c = a + b
        return c

    def add_rec(m):
        c = None
        for _ in range(m):
            c = ar + b
        return c

    def add_(m):
        for _ in range(m):
            a.add_(b)

    for name, f in (("empty", empty), ("add", add), ("add_rec", add_rec), ("add_", add_)):
        print('{"engine": "torch", "op": "%s", "elements": 1, "us": %.4f}' % (name, best(f, args.n)), flush=True)
    if args.sizes:
        for e in range(8):
            k = 10 ** e
            x, y = torch.ones(k), torch.ones(k)
            reps = max(3, int(args.n / (1 + k / 100)))

            def big(m):
                c = None
                for _ in range(m):
                    c = x + y
                return c

            us = best(big, reps)
            print('{"engine": "torch", "op": "add", "elements": %d, "us": %.4f, "GB_per_s": %.2f}'
                  % (k, us, 12 * k / us / 1e3), flush=True)


if __name__ == "__main__":
    main()
