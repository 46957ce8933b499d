"""The PyTorch half of examples/pytorch_interop.lua: a model goes from PyTorch to luagrad and back
through safetensors files, and the outputs must agree.

  python3 bench/pytorch_interop.py export DIR   # a seeded MLP's weights, an input and its output
  build/luagrad examples/pytorch_interop.lua --dir DIR
  python3 bench/pytorch_interop.py check DIR    # luagrad's weights back in PyTorch, outputs compared

Needs torch; safetensors (pip install safetensors) is used when installed, else the few lines of
the format written out below (8-byte header length, JSON header, raw data). `export --bf16` stores the weights
as bfloat16, as most published checkpoints are; luagrad reads them converted to float32, and the
reference output is computed from those same rounded weights.

Files in DIR:
  torch_model.safetensors     PyTorch's state_dict: 0.weight, 0.bias, 2.weight, 2.bias
  torch_io.safetensors        input (16 x 4) and PyTorch's output (16 x 3), float32
  luagrad_model.safetensors   written by the Lua half: the weights under PyTorch's names
  luagrad_io.safetensors      the input and luagrad's output
"""
import json
import os
import struct
import sys

import torch

try:
    from safetensors.torch import load_file, save_file
except ImportError:  # the format is small enough to write out here
    CODES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bfloat16: "BF16",
             torch.float16: "F16"}
    SAME_SIZE_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}

    def save_file(tensors, path):
        header, blobs, off = {}, [], 0
        for name in sorted(tensors):
            t = tensors[name].detach().contiguous()
            raw = t.view(SAME_SIZE_INT[t.element_size()]).numpy().tobytes()  # little-endian machine
            header[name] = {"dtype": CODES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
            blobs.append(raw)
            off += len(raw)
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

    def load_file(path):
        data = open(path, "rb").read()
        n = struct.unpack("<Q", data[:8])[0]
        header, base, out = json.loads(data[8:8 + n]), 8 + n, {}
        dtypes = {v: k for k, v in CODES.items()}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            b, end = e["data_offsets"]
            dt = dtypes[e["dtype"]]
            raw = bytearray(data[base + b:base + end])
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
            out[name] = t.reshape(e["shape"]).clone()
        return out


def model():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def export(d, bf16):
    torch.manual_seed(0)
    m = model()
    state = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    if bf16:
        state = {k: v.to(torch.bfloat16) for k, v in state.items()}
        m.load_state_dict({k: v.float() for k, v in state.items()})  # the output of what is stored
    x = torch.randn(16, 4)
    with torch.no_grad():
        y = m(x)
    os.makedirs(d, exist_ok=True)
    save_file(state, os.path.join(d, "torch_model.safetensors"))
    save_file({"input": x, "output": y}, os.path.join(d, "torch_io.safetensors"))
    print("wrote", d, "(weights as", "bfloat16)" if bf16 else "float32)")


def check(d):
    m = model()
    m.load_state_dict(load_file(os.path.join(d, "luagrad_model.safetensors")))
    io = load_file(os.path.join(d, "luagrad_io.safetensors"))
    with torch.no_grad():
        y = m(io["input"])
    diff = (y - io["output"]).abs().max().item()
    print("max |PyTorch - luagrad| on luagrad's weights: %.3g" % diff)
    if diff > 1e-5:
        sys.exit("outputs disagree")
    print("outputs agree")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("export", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "export":
        export(sys.argv[2], "--bf16" in sys.argv[3:])
    else:
        check(sys.argv[2])
