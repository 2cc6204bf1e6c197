"""Split a torch.save zip (optimizer.pt, pytorch_model.bin) into tensor and raw segments.

A torch zip stores each tensor storage as one uncompressed entry
``<root>/data/<key>`` whose bytes are the storage's raw little-endian elements;
``<root>/data.pkl`` says which storage holds which dtype.  The store codes the
"tensor" segments with the float codecs (e.g. "ckpt" against the previous
checkpoint's same storage) and everything else (local headers, the pickle, the
central directory) as opaque bytes; concatenating every segment's bytes in order
gives the file back exactly.

Nothing is ever unpickled: dtypes come from reading the pickle's opcodes with
``pickletools.genops`` and a symbolic stack that only ever holds strings, ints,
tuples and global *names*.  The zip structure is checked before any segment is
trusted: an encrypted or compressed entry, a size or offset outside the file, or
entries that overlap raise FormatError.
"""
from __future__ import annotations

import pickletools
from typing import NamedTuple

from weightvault.codec.dtypes import itemsize
from weightvault.errors import FormatError

from .storedzip import entries


class Segment(NamedTuple):
    offset: int
    length: int
    kind: str            # "tensor" (a storage's raw bytes) or "raw"
    dtype: str | None    # safetensors dtype name of a tensor segment; None if unknown or raw


# torch's legacy storage class names, as the pickle names them -> safetensors dtypes
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL",
    "Float8_e4m3fnStorage": "F8_E4M3", "Float8_e5m2Storage": "F8_E5M2",
}

# ---- the pickle, read without executing it ----

_STRING_OPS = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
_INT_OPS = {"BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4"}


class _Mark:
    pass


_MARK = _Mark()


def storage_dtypes(pickle_bytes: bytes) -> dict[str, tuple[str | None, int | None]]:
    """Storage key -> (dtype, numel), from the ('storage', <class>, key, location, numel)
    persistent ids in a torch pickle.  Runs a symbolic stack over the opcodes:
    values it does not model become None, and nothing is ever imported or called."""
    stack: list = []
    memo: dict = {}
    found: dict[str, tuple[str | None, int | None]] = {}

    def pop_mark() -> list:
        items = []
        while stack:
            v = stack.pop()
            if v is _MARK:
                return items[::-1]
            items.append(v)
        raise FormatError("unbalanced MARK")

    for op, arg, _ in pickletools.genops(pickle_bytes):
        name = op.name
        if name in _STRING_OPS:
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in _INT_OPS:
            stack.append(arg)
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "GLOBAL":
            stack.append(("global", arg))
        elif name == "STACK_GLOBAL":
            qual, mod = stack.pop() if stack else None, stack.pop() if stack else None
            stack.append(("global", f"{mod} {qual}"))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            k = int(name[-1])
            items = stack[-k:] if len(stack) >= k else []
            del stack[-k:]
            stack.append(tuple(items))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else None
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        elif name in ("BINPERSID", "PERSID"):
            pid = stack.pop() if name == "BINPERSID" and stack else arg
            if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[2], str):
                cls = pid[1]
                dtype = None
                if isinstance(cls, tuple) and len(cls) == 2 and cls[0] == "global":
                    mod, _, qual = str(cls[1]).partition(" ")
                    if mod == "torch":
                        dtype = STORAGE_DTYPES.get(qual)
                numel = pid[4]
                if dtype is not None and not isinstance(numel, int):
                    dtype = None
                found[pid[2]] = (dtype, numel) if dtype else (None, None)
            stack.append(None)
        else:
            # generic stack effect from the opcode table: pop what it consumes, push unknowns
            before = op.stack_before
            if pickletools.markobject in before:
                pop_mark()
                before = before[:before.index(pickletools.markobject)]
            for _ in before:
                if stack:
                    stack.pop()
            stack.extend(None for _ in op.stack_after)
    return found


def parse_torch_zip(data: bytes) -> list[Segment]:
    """Ordered, gap-free segments covering every byte of a torch zip exactly once.

    "tensor" segments are the storages' raw bytes, with their dtype read from the
    pickle (None when the pickle does not say, or says something inconsistent with
    the storage's size); everything else is "raw".  FormatError if the zip is not
    one that can be split safely (see the module docstring).
    """
    data = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
    entries_ = entries(data, "torch zip")
    pickles = [e for e in entries_ if e.name.endswith("/data.pkl") or e.name == "data.pkl"]
    if len(pickles) != 1:
        raise FormatError(f"torch zip: expected one data.pkl, found {len(pickles)}")
    pkl = pickles[0]
    root = pkl.name[:-len("data.pkl")]
    try:
        dtypes = storage_dtypes(data[pkl.data_offset:pkl.data_offset + pkl.size])
    except Exception:   # a malformed pickle: storages stay tensors of unknown dtype
        dtypes = {}
    storages = []
    for e in entries_:
        if not e.name.startswith(root + "data/") or e.size == 0:
            continue
        key = e.name[len(root) + len("data/"):]
        dtype, numel = dtypes.get(key, (None, None))
        if dtype is not None and numel * itemsize(dtype) != e.size:
            dtype = None
        storages.append((e.data_offset, e.size, dtype))
    storages.sort()
    segments, pos = [], 0
    for offset, size, dtype in storages:
        if offset > pos:
            segments.append(Segment(pos, offset - pos, "raw", None))
        segments.append(Segment(offset, size, "tensor", dtype))
        pos = offset + size
    if pos < len(data):
        segments.append(Segment(pos, len(data) - pos, "raw", None))
    return segments
