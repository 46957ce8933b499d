#!/usr/bin/python3
"""bench/fashion_mnist_torch.py: examples/fashion_mnist.lua's recipe in PyTorch, for comparison.

Same data (Debian's dataset-fashion-mnist), standardization, model (784-256-128-10, Linear ->
BatchNorm1d -> ReLU), cross-entropy with label smoothing 0.05, AdamW (lr 2e-3, wd 0.05), linear
warmup over the first epoch then cosine decay stepped per batch, batch 128, 12 epochs, evaluation
on the 10,000 test images each epoch. Prints the per-epoch accuracy, the wall time and the final
test accuracy.

  /usr/bin/python3 bench/fashion_mnist_torch.py [--threads N] [--epochs 12]
"""
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


def main():
    args = sys.argv[1:]
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else torch.get_num_threads()
    epochs = int(args[args.index("--epochs") + 1]) if "--epochs" in args else 12
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    xtr = idx("train-images-idx3-ubyte").float().div(255).reshape(-1, 784)
    ytr = idx("train-labels-idx1-ubyte").long()
    xte = idx("t10k-images-idx3-ubyte").float().div(255).reshape(-1, 784)
    yte = idx("t10k-labels-idx1-ubyte").long()
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(),
                          nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    lr, bs = 2e-3, 128
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = (xtr.shape[0] + bs - 1) // bs
    total, warm = epochs * steps, steps
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.05, total_iters=warm),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=lr * 0.01)], milestones=[warm])
    t_train = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0])
        for s in range(0, xtr.shape[0], bs):
            idx_b = perm[s:s + bs]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[idx_b]), ytr[idx_b], label_smoothing=0.05)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print("epoch %d/%d: test accuracy %.4f" % (epoch + 1, epochs, acc), flush=True)
    train_time = time.perf_counter() - t_train
    print("training: %d epochs in %.1f s (%.2f ms/step); total %.1f s" % (
        epochs, train_time, train_time / (epochs * steps) * 1e3, time.perf_counter() - t_start))
    print("test accuracy: %.2f%%" % (acc * 100))


if __name__ == "__main__":
    main()
