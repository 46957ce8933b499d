#!/usr/bin/env python3
"""Read and write safetensors files with the Python standard library only (struct, json, array).

An independent implementation used by spec/serialize_spec.lua to show that luagrad's files are
ordinary safetensors files and that luagrad reads files other tools wrote.

  safetensors_check.py dump FILE
      Validates FILE the way Python's safetensors does (header length, JSON, dtypes, shapes,
      data_offsets tiling the data with no gap or overlap) and prints one JSON document:
      {"header_len": N, "metadata": {...} or null, "names": [names in header order],
       "tensors": {name: {"dtype", "shape", "data_offsets", "hex": raw bytes in hex,
                          "values": flat list, floats as strings of repr() so NaN/inf survive}}}
      Exits with status 1 and a message on stderr when the file is invalid.

  safetensors_check.py write FILE < SPEC
      SPEC (JSON on stdin): {"tensors": {name: {"dtype": "F32"|"F64"|"I64", "shape": [..],
      "values": [flat row-major list]}}, "metadata": {str: str} (optional),
      "order": [names] (optional: data layout order; default is safetensors' own rule,
      larger dtypes first, then by name)}. Writes FILE as safetensors.save_file would.
"""
import array
import json
import struct
import sys

FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8)}
MAX_HEADER = 100_000_000


def fail(msg):
    sys.stderr.write("safetensors_check: %s\n" % msg)
    sys.exit(1)


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def to_array(code, raw):
    a = array.array(FORMATS[code][0])
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def dump(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        fail("bad header length %d" % n)
    text = blob[8 : 8 + n]
    if n % 8 != 0:
        fail("header length %d is not a multiple of 8" % n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        fail("invalid JSON header: %s" % e)
    if not isinstance(header, dict):
        fail("header is not an object")
    data = blob[8 + n :]
    metadata = header.get("__metadata__")
    names = [k for k in header if k != "__metadata__"]
    spans = []
    out = {}
    for name in names:
        info = header[name]
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if code not in FORMATS:
            fail("dtype %s not handled by this checker" % code)
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            fail("bad shape %r" % shape)
        b, e = offs
        if e - b != numel(shape) * FORMATS[code][1]:
            fail("tensor %s: shape and data_offsets disagree" % name)
        spans.append((b, e, name))
        raw = data[b:e]
        values = list(to_array(code, raw))
        if code != "I64":
            values = [repr(v) for v in values]
        out[name] = {
            "dtype": code,
            "shape": shape,
            "data_offsets": offs,
            "hex": raw.hex(),
            "values": values,
        }
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            fail("tensor %s: data_offsets do not follow on (gap or overlap)" % name)
        pos = e
    if pos != len(data):
        fail("data is %d bytes but the tensors cover %d" % (len(data), pos))
    json.dump(
        {"header_len": n, "metadata": metadata, "names": names, "tensors": out},
        sys.stdout,
        sort_keys=True,
    )
    sys.stdout.write("\n")


def write(path):
    spec = json.load(sys.stdin)
    tensors = spec["tensors"]
    if "order" in spec:
        order = spec["order"]
    else:
        order = sorted(tensors, key=lambda k: (-FORMATS[tensors[k]["dtype"]][1], k))
    header = {}
    if spec.get("metadata") is not None:
        header["__metadata__"] = spec["metadata"]
    chunks = []
    offset = 0
    for name in order:
        t = tensors[name]
        code, shape = t["dtype"], t["shape"]
        values = [float(v) for v in t["values"]] if code != "I64" else t["values"]
        if len(values) != numel(shape):
            fail("tensor %s: %d values for shape %r" % (name, len(values), shape))
        a = array.array(FORMATS[code][0], values)
        if sys.byteorder != "little":
            a.byteswap()
        raw = a.tobytes()
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("dump", "write"):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "dump":
        dump(argv[2])
    else:
        write(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
