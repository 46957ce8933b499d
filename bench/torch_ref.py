#!/usr/bin/python3
"""bench/torch_ref.py: the workloads W1-W6 of bench/workloads.lua in PyTorch (CPU, eager, float32).

Same shapes, losses, optimizers and learning rates; synthetic data with a fixed seed. Prints one
JSON line per workload: median ms per step after warm-up at 1 and 2 threads, first and final loss.

  /usr/bin/python3 bench/torch_ref.py [--only W2] [--threads 1,2] [--steps-scale 1]
  /usr/bin/python3 bench/torch_ref.py --rss W2 200      (200 steps of W2, then peak RSS)
  /usr/bin/python3 bench/torch_ref.py --breakdown W6    (where W6's 1-thread step goes, as bench/workloads.lua)
"""
import ctypes
import json
import math
import resource
import sys
import time

import torch
from torch import nn


def _loaded_openblas():
    """The OpenBLAS that this torch links (Debian's: through libblas.so.3), or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "libopenblas" in path:
                return ctypes.CDLL(path)
    return None


OPENBLAS = _loaded_openblas()


def set_threads(n):
    """torch.set_num_threads does not reach Debian's pthread OpenBLAS, which torch's matmul and
    Linear call (BLAS_INFO=generic): left alone it runs every GEMM on all cores, so a "1-thread"
    run would really use two. Set both."""
    torch.set_num_threads(n)
    if OPENBLAS is not None:
        OPENBLAS.openblas_set_num_threads(n)


def mlp(sizes, act, bn=False):
    layers = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            if bn:
                layers.append(nn.BatchNorm1d(sizes[k + 1]))
            layers.append(act())
    return nn.Sequential(*layers)


def w1():
    m = mlp([1, 64, 64, 1], nn.Tanh)
    x = torch.rand(64, 1) * 4 - 2
    y = x.sin()
    return m, torch.optim.Adam(m.parameters(), lr=1e-3), lambda: nn.functional.mse_loss(m(x), y)


def w2():
    m = mlp([784, 256, 128, 10], nn.ReLU, bn=True)
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))
    return m, torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2), lambda: nn.functional.cross_entropy(m(x), y)


def w3():
    m = mlp([1024, 4096, 4096, 1024], nn.ReLU)
    x = torch.randn(256, 1024)
    y = torch.randn(256, 1024)
    return m, torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9), lambda: nn.functional.mse_loss(m(x), y)


def w4():
    layers = []
    for k in range(20):
        layers.append(nn.Linear(128, 128))
        if k < 19:
            layers.append(nn.Sigmoid())
    m = nn.Sequential(*layers)
    x = torch.randn(64, 128)
    y = torch.randn(64, 128)
    return m, torch.optim.SGD(m.parameters(), lr=0.1), lambda: nn.functional.mse_loss(m(x), y)


def w5():
    m = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.randn(128, 1, 28, 28)
    y = torch.randint(0, 10, (128,))
    return m, torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2), lambda: nn.functional.cross_entropy(m(x), y)


class W6Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.width, self.heads = width, heads
        self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        T = 64
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.c_attn(x).split(C, 2))
        if hasattr(nn.functional, "scaled_dot_product_attention"):  # PyTorch >= 2.0
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # 1.13: composed, as PyTorch users wrote it before the fused op
            s = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(C // self.heads)) + self.mask[:T, :T]
            y = s.softmax(-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class W6Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(width), W6Attention(width, heads), nn.LayerNorm(width)
        self.c_fc, self.c_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class W6GPT(nn.Module):
    def __init__(self, vocab=128, context=64, width=128, layers=4, heads=4):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
        nn.init.normal_(self.wte.weight, 0, 0.02)
        nn.init.normal_(self.wpe.weight, 0, 0.02)
        self.h = nn.ModuleList([W6Block(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        return nn.functional.linear(self.ln_f(x), self.wte.weight)


def w6():
    m = W6GPT()
    data = torch.randint(0, 128, (32, 65))
    x, y = data[:, :64], data[:, 1:]
    return m, torch.optim.AdamW(m.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1), \
        lambda: nn.functional.cross_entropy(m(x).reshape(-1, 128), y.reshape(-1))


WORKLOADS = [("W1", w1, 2000, 100), ("W2", w2, 300, 20), ("W3", w3, 8, 2), ("W4", w4, 300, 20), ("W5", w5, 20, 3),
             ("W6", w6, 40, 5)]


def step(opt, lossf):
    opt.zero_grad()
    loss = lossf()
    loss.backward()
    opt.step()
    return loss


def run(build, steps, warm, threads):
    set_threads(threads)
    torch.manual_seed(0)
    _, opt, lossf = build()
    first = step(opt, lossf).item()
    for _ in range(warm - 1):
        step(opt, lossf)
    times = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        last = step(opt, lossf)
        times.append((time.perf_counter() - t0) * 1e3)
    cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)  # CPU seconds per wall second
    times.sort()
    return times[(len(times) - 1) // 2], first, last.item(), cores


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[(len(ts) - 1) // 2]


def fwd_bwd(f, *xs):
    xs = [x.detach().requires_grad_() if x.is_floating_point() else x for x in xs]
    g = torch.randn(f(*xs).shape)  # drawn once, outside the timing, as in bench/workloads.lua

    def run():
        f(*xs).backward(g)
    return run


def gemm_ms(layers, reps):
    """The products of bench/workloads.lua's GEMM floor: forward, weight and input gradient per entry."""
    mats = []
    for l in layers:
        B, K, N = l[0], l[1], l[2]
        P = l[3] if len(l) > 3 else None
        m = (lambda r, c: torch.randn(P, r, c)) if P else (lambda r, c: torch.randn(r, c))
        mats.append((m(B, K), m(N, K).transpose(-2, -1), m(B, N), m(N, K)))

    def run():
        for x, wt, g, w in mats:
            x @ wt
            g.transpose(-2, -1) @ x
            g @ w
    return time_ms(run, reps)


def breakdown(scale):
    """W6's step split as bench/workloads.lua --breakdown splits luagrad's (see there)."""
    set_threads(1)
    torch.manual_seed(0)
    _, opt, lossf = w6()
    for _ in range(5):
        step(opt, lossf)
    tf, tb, to, ts = [], [], [], []
    for _ in range(max(3, int(40 * scale))):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = lossf()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        tf.append((t1 - t0) * 1e3), tb.append((t2 - t1) * 1e3), to.append((t3 - t2) * 1e3), ts.append((t3 - t0) * 1e3)
    med = lambda v: sorted(v)[(len(v) - 1) // 2]
    reps = max(5, int(20 * scale))
    block = [(2048, 128, 384), (2048, 128, 128), (2048, 128, 512), (2048, 512, 128)]
    attn = W6Attention(128, 4)
    q = torch.randn(32, 4, 64, 32)

    def attention(a, b, c):  # W6Attention's core: the part F.scaled_dot_product_attention fuses
        s = a @ b.transpose(-2, -1) * (1.0 / math.sqrt(32)) + attn.mask
        return s.softmax(-1) @ c
    ln = nn.LayerNorm(128)
    parts = {
        "gemm_linear": gemm_ms(block * 4 + [(2048, 128, 128)], reps),
        "gemm_attention": gemm_ms([(64, 32, 64, 128), (64, 64, 32, 128)] * 4, reps),
        "attention": 4 * time_ms(fwd_bwd(attention, q, q, q), reps),
        "layer_norm": 9 * time_ms(fwd_bwd(ln, torch.randn(32, 64, 128)), reps),
        "gelu": 4 * time_ms(fwd_bwd(lambda x: nn.functional.gelu(x, approximate="tanh"), torch.randn(32, 64, 512)),
                            reps),
        "embedding": time_ms(fwd_bwd(lambda e1, e2, i1, i2: nn.functional.embedding(i1, e1) + nn.functional.embedding(
            i2, e2), torch.randn(128, 128), torch.randn(64, 128), torch.randint(0, 128, (32, 64)), torch.arange(64)),
            reps),
        "cross_entropy": time_ms(fwd_bwd(nn.functional.cross_entropy, torch.randn(2048, 128),
                                         torch.randint(0, 128, (2048,))), reps),
        "optimizer": med(to),
    }
    res = {"name": "W6", "step": med(ts), "forward": med(tf), "backward": med(tb), "optimizer_step": med(to)}
    res.update(parts)
    res["rest"] = med(ts) - sum(v for k, v in parts.items() if k != "gemm_attention")
    print(json.dumps(res), flush=True)


def main():
    args = sys.argv[1:]
    if "--breakdown" in args:
        if args[args.index("--breakdown") + 1] != "W6":
            raise SystemExit("torch_ref: --breakdown knows W6 only")
        scale = float(args[args.index("--steps-scale") + 1]) if "--steps-scale" in args else 1.0
        breakdown(scale)
        return
    only, threads, scale = None, [1, 2], 1.0
    if "--rss" in args:
        k = args.index("--rss")
        name, n = args[k + 1], int(args[k + 2])
        set_threads(1)
        torch.manual_seed(0)
        build = dict((w[0], w[1]) for w in WORKLOADS)[name]
        _, opt, lossf = build()
        for _ in range(n):
            step(opt, lossf)
        print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
        return
    if "--only" in args:
        only = args[args.index("--only") + 1]
    if "--threads" in args:
        threads = [int(t) for t in args[args.index("--threads") + 1].split(",")]
    if "--steps-scale" in args:
        scale = float(args[args.index("--steps-scale") + 1])
    if OPENBLAS is not None:
        OPENBLAS.openblas_get_corename.restype = ctypes.c_char_p
        OPENBLAS.openblas_get_config.restype = ctypes.c_char_p
        print(json.dumps({"blas": "%s, kernels %s" % (OPENBLAS.openblas_get_config().decode(),
                                                      OPENBLAS.openblas_get_corename().decode())}), flush=True)
    for name, build, steps, warm in WORKLOADS:
        if only and only != name:
            continue
        res = {"name": name}
        for t in threads:
            ms, first, final, cores = run(build, max(2, int(steps * scale)), warm, t)
            res["ms%d" % t], res["cores%d" % t] = ms, cores
            res["first"], res["final"] = first, final
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
