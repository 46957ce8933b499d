#!/usr/bin/python3
"""bench/gpt_torch.py: examples/gpt.lua's model and recipe in PyTorch 1.13, for comparison.

The same data (every regular text file of Debian's fortunes in bytewise name order, skipping .dat
indexes, .u8 links and files holding a NUL byte, each ending with a newline; one token per byte
that occurs, sorted; the last 10% for validation), the same model (token + learned position
embeddings N(0, 0.02^2), pre-LayerNorm blocks of causal self-attention with one fused qkv Linear
and a 4x tanh-GELU MLP, final LayerNorm, head tied to the token embedding; Linear weights
N(0, 0.02^2), the residual projections N(0, 0.02^2 / (2 layers)), biases zero; nanoGPT's names, so
the state dicts match key for key), the same recipe (AdamW betas (0.9, 0.99), weight decay on the
Linear weights only, linear warmup then cosine to min-lr over the step or time budget, gradient
clipping to norm 1, random contiguous windows), the same evaluation windows and the same printed
lines ("val loss: X.XXX nats/char at N s (step S)"), so the two curves can be set side by side.
Random draws differ (each engine has its own generator).

  /usr/bin/python3 bench/gpt_torch.py [--time-limit 600] [--max-steps 0] [--context 128] [--width 192]
      [--layers 4] [--heads 6] [--batch-size 32] [--lr 2e-3] [--min-lr 1e-4] [--warmup 100]
      [--weight-decay 0.1] [--clip 1.0] [--eval-every 100] [--eval-batches 16] [--seed 0]
      [--threads N] [--prompt TEXT] [--length 500] [--temperature 0.8] [--top-k 20]
"""
import argparse
import ctypes
import math
import os
import stat
import time

import torch
from torch import nn
from torch.nn import functional as F

ROOT = "/usr/share/games/fortunes"


def _loaded_openblas():
    """The OpenBLAS that this torch links (Debian's: through libblas.so.3), or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "libopenblas" in path:
                return ctypes.CDLL(path)
    return None


def set_threads(n):
    """torch.set_num_threads does not reach Debian's pthread OpenBLAS (see bench/torch_ref.py)."""
    torch.set_num_threads(n)
    blas = _loaded_openblas()
    if blas is not None:
        blas.openblas_set_num_threads(n)


def fortunes(root=ROOT, val_fraction=0.1):
    """lg.datasets.fortunes: (train ids, val ids, vocab bytes), ids 0-based here."""
    names = sorted(os.listdir(os.fsencode(root)))  # bytewise, as luagrad sorts
    texts = []
    for name in names:
        if name.endswith(b".dat") or name.endswith(b".u8"):
            continue
        path = os.path.join(os.fsencode(root), name)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            continue
        with open(path, "rb") as f:
            s = f.read()
        if not s or b"\0" in s:
            continue
        texts.append(s if s.endswith(b"\n") else s + b"\n")
    if not texts:
        raise SystemExit("gpt_torch: no fortune files in %s; install Debian's package fortunes" % root)
    text = b"".join(texts)
    vocab = sorted(set(text))
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[torch.tensor(vocab)] = torch.arange(len(vocab))
    ids = lut[torch.frombuffer(bytearray(text), dtype=torch.uint8).long()]
    n_val = int(len(text) * val_fraction)
    return ids[:len(text) - n_val], ids[len(text) - n_val:], vocab


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(F, "scaled_dot_product_attention") \
            else attention(q, k, v)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


_masks = {}


def attention(q, k, v):
    """Causal attention as PyTorch 1.13 (which has no F.scaled_dot_product_attention) composes it."""
    T = q.shape[-2]
    if T not in _masks:
        _masks[T] = torch.full((T, T), float("-inf")).triu(1)
    s = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1])) + _masks[T]
    return s.softmax(-1) @ v


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, context, width, layers, heads):
        super().__init__()
        self.context = context
        self.wte = nn.Embedding(vocab_size, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias") and not name.startswith("ln") and ".ln_" not in name:
                    nn.init.zeros_(p)
                elif name.endswith("c_proj.weight"):
                    nn.init.normal_(p, 0, 0.02 / math.sqrt(2 * layers))
                elif p.dim() == 2:
                    nn.init.normal_(p, 0, 0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


@torch.no_grad()
def generate(model, ids, n, temperature, top_k):
    model.eval()
    ctx, out = list(ids), []
    for _ in range(n):
        window = torch.tensor(ctx[-model.context:]).view(1, -1)
        logits = model(window)[:, -1, :] / temperature
        vals, idx = logits.topk(min(top_k, logits.shape[1]))
        pick = torch.multinomial(vals.softmax(1), 1)
        nxt = idx.gather(1, pick).item()
        out.append(nxt)
        ctx.append(nxt)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in [("time-limit", 600.0), ("max-steps", 0), ("context", 128), ("width", 192), ("layers", 4),
                          ("heads", 6), ("batch-size", 32), ("lr", 2e-3), ("min-lr", 1e-4), ("warmup", 100),
                          ("weight-decay", 0.1), ("clip", 1.0), ("eval-every", 100), ("eval-batches", 16),
                          ("seed", 0), ("threads", 0), ("length", 500), ("temperature", 0.8), ("top-k", 20)]:
        ap.add_argument("--" + name, type=type(default), default=default)
    ap.add_argument("--prompt", default="%\n")
    a = ap.parse_args()
    set_threads(a.threads or os.cpu_count())
    torch.manual_seed(a.seed)

    t_start = time.perf_counter()
    train, val, vocab = fortunes()
    V, T, B = len(vocab), a.context, a.batch_size
    print("fortunes: %d training and %d validation characters, vocabulary of %d bytes" % (len(train), len(val), V))
    offsets = torch.arange(T).view(1, T)

    def windows(data, starts):  # starts 0-based
        idx = starts.view(-1, 1) + offsets
        return data[idx], data[idx + 1]

    n_eval, last = a.eval_batches * B, len(val) - T  # the same windows as gpt.lua (0-based here)
    val_starts = torch.tensor([(i * (last - 1)) // max(1, n_eval - 1) for i in range(n_eval)])

    model = GPT(V, T, a.width, a.layers, a.heads)
    n_params = sum(p.numel() for p in model.parameters())
    print("GPT: %d layers, width %d, %d heads, context %d, %.2fM parameters" % (a.layers, a.width, a.heads, T,
                                                                                 n_params / 1e6))

    @torch.no_grad()
    def evaluate():
        model.eval()
        total, count = 0.0, 0
        for s in range(0, n_eval, B):
            x, y = windows(val, val_starts[s:s + B])
            total += F.cross_entropy(model(x).view(-1, V), y.view(-1), reduction="sum").item()
            count += y.numel()
        model.train()
        return total / count

    decayed = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    ids = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decayed, "weight_decay": a.weight_decay},
                             {"params": others, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.99))

    def lr_at(step, elapsed):
        if step <= a.warmup:
            return a.lr * step / a.warmup
        p = elapsed / a.time_limit
        if a.max_steps > 0:
            p = max(p, (step - a.warmup) / max(1, a.max_steps - a.warmup))
        p = min(1.0, p)
        return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * p))

    step, t_train = 0, time.perf_counter()
    val_curve = []

    def log_val(elapsed):
        v = evaluate()
        val_curve.append((step, elapsed, v))
        print("val loss: %.3f nats/char at %.0f s (step %d)" % (v, elapsed, step), flush=True)

    log_val(0)
    done = False
    while not done:
        n = a.eval_every if a.max_steps <= 0 else min(a.eval_every, a.max_steps - step)
        run = 0.0
        for k in range(1, n + 1):
            step += 1
            lr = lr_at(step, time.perf_counter() - t_train)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = windows(train, torch.randint(0, len(train) - T, (B,)))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x).view(-1, V), y.view(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            run += loss.item()
            if time.perf_counter() - t_train >= a.time_limit:
                done = True
                break
        print("steps to %d: loss=%.4f lr=%.3g" % (step, run / k, lr), flush=True)
        if a.max_steps > 0 and step >= a.max_steps:
            done = True
        log_val(time.perf_counter() - t_train)
    train_time = time.perf_counter() - t_train
    print("training: %d steps in %.1f s (%.0f ms/step, evaluation included); total %.1f s" % (
        step, train_time, train_time / step * 1e3, time.perf_counter() - t_start))
    print("final val loss: %.3f nats/char" % val_curve[-1][2])
    stoi = {b: i for i, b in enumerate(vocab)}
    prompt = [stoi[b] for b in a.prompt.encode()]
    out = generate(model, prompt, a.length, a.temperature, a.top_k)
    print('sample (%d characters, temperature %g, top-k %d) after "%s":' % (
        a.length, a.temperature, a.top_k, a.prompt.replace("\n", "\\n").replace("\t", "\\t")))
    print(a.prompt + bytes(vocab[i] for i in out).decode("utf-8", errors="replace"))


if __name__ == "__main__":
    main()
