#!/usr/bin/python3
"""bench/fashion_mnist_cnn_torch.py: examples/fashion_mnist_cnn.lua's recipe in PyTorch, for comparison.

Same data (Debian's dataset-fashion-mnist), standardization, model (two blocks of Conv2d 3x3
padding 1 -> BatchNorm2d -> ReLU -> MaxPool2d(2), 32 then 64 channels; Flatten -> Linear(3136,
128) -> ReLU -> Dropout(0.2) -> Linear(128, 10)), cross-entropy with label smoothing 0.05, AdamW
(lr 3e-3, wd 0.05), linear warmup over half an epoch then cosine decay stepped per batch, batch
128, 8 epochs (--flip P mirrors each training image with probability P, as the Lua script's
option; off by default), evaluation on
the 10,000 test images (batches of 500) each epoch. Prints the per-epoch accuracy, the wall time
and the final test accuracy.

  /usr/bin/python3 bench/fashion_mnist_cnn_torch.py [--threads 2] [--epochs 8] [--flip 0]
"""
import ctypes
import gzip
import struct
import sys
import time

import torch
from torch import nn

ROOT = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open("%s/%s.gz" % (ROOT, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    sizes = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(sizes)


def set_threads(n):
    """torch.set_num_threads does not reach the OpenBLAS that Debian's torch calls for GEMM: set both
    (as bench/torch_ref.py does)."""
    torch.set_num_threads(n)
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "libopenblas" in path:
                ctypes.CDLL(path).openblas_set_num_threads(n)
                return


def main():
    args = sys.argv[1:]
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 2
    epochs = int(args[args.index("--epochs") + 1]) if "--epochs" in args else 8
    pflip = float(args[args.index("--flip") + 1]) if "--flip" in args else 0.0
    set_threads(threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    xtr = idx("train-images-idx3-ubyte").float().div(255).reshape(-1, 1, 28, 28)
    ytr = idx("train-labels-idx1-ubyte").long()
    xte = idx("t10k-images-idx3-ubyte").float().div(255).reshape(-1, 1, 28, 28)
    yte = idx("t10k-labels-idx1-ubyte").long()
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    lr, bs = 3e-3, 128
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = (xtr.shape[0] + bs - 1) // bs
    total, warm = epochs * steps, steps // 2
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.05, total_iters=warm),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=lr * 0.01)], milestones=[warm])
    t_train = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0])
        for s in range(0, xtr.shape[0], bs):
            idx_b = perm[s:s + bs]
            xb = xtr[idx_b]
            if pflip > 0:
                flip = torch.rand(xb.shape[0], 1, 1, 1) < pflip
                xb = torch.where(flip, xb.flip(3), xb)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), ytr[idx_b], label_smoothing=0.05)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, xte.shape[0], 500):
                correct += (model(xte[s:s + 500]).argmax(1) == yte[s:s + 500]).sum().item()
        acc = correct / xte.shape[0]
        print("epoch %d/%d: test accuracy %.4f" % (epoch + 1, epochs, acc), flush=True)
    train_time = time.perf_counter() - t_train
    print("training: %d epochs in %.1f s (%.2f ms/step); total %.1f s" % (
        epochs, train_time, train_time / (epochs * steps) * 1e3, time.perf_counter() - t_start))
    print("test accuracy: %.2f%%" % (acc * 100))


if __name__ == "__main__":
    main()
