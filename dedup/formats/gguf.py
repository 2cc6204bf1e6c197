"""GGUF (llama.cpp) files: F32/F16/BF16 tensors as tensors, quantized blocks as typed opaque data.

Our own reader rather than gguf.GGUFReader: that one loops over whatever counts a header
declares (2^60 metadata entries, arrays of 2^60 strings) and trusts tensor offsets; here every
count is bounded by the bytes left and every tensor must lie inside the file, disjoint from the
others. The gguf package supplies the block sizes of the quantized types (GGML_QUANT_SIZES).
Little-endian GGUF v2 and v3.
"""
from __future__ import annotations

import math
import struct

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from weightvault.errors import FormatError


MAGIC = b"GGUF"
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 20
MAX_DIMS = 8
MAX_STRING = 1 << 20  # bytes of one key, name or metadata string
MAX_ARRAY_DEPTH = 4
DEFAULT_ALIGNMENT = 32

#: GGUF metadata value types -> fixed size in bytes (8: string, 9: array have none)
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_FLOATS = {GGMLQuantizationType.F32: "F32", GGMLQuantizationType.F16: "F16", GGMLQuantizationType.BF16: "BF16"}


class _Cursor:
    def __init__(self, view: memoryview) -> None:
        self.view, self.pos = view, 0

    def take(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.view):
            raise FormatError(f"gguf: {what} at byte {self.pos} runs past the end of the file")
        values = struct.unpack_from(fmt, self.view, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.view):
            raise FormatError(f"gguf: {what} ({n} bytes at {self.pos}) runs past the end of the file")
        self.pos += n

    def string(self, what: str) -> str:
        n = self.take("<Q", what)
        if n > MAX_STRING:
            raise FormatError(f"gguf: {what} of {n} bytes (limit {MAX_STRING})")
        start = self.pos
        self.skip(n, what)
        return bytes(self.view[start:self.pos]).decode("utf-8")

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in _SCALAR:
            start = self.pos
            self.skip(_SCALAR[vtype], what)
            return bytes(self.view[start:self.pos])
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY and depth < MAX_ARRAY_DEPTH:
            etype, count = self.take("<IQ", what)
            if etype in _SCALAR:
                self.skip(count * _SCALAR[etype], what)
                return None
            if count > (len(self.view) - self.pos) // 8:  # every element takes at least 8 bytes
                raise FormatError(f"gguf: {what}: array of {count} elements cannot fit in the file")
            for _ in range(count):
                self.value(etype, what, depth + 1)
            return None
        raise FormatError(f"gguf: {what}: unknown value type {vtype}")


def parse(view: memoryview) -> list[tuple]:
    """[(name, dtype, shape, start, end)] of every tensor; FormatError on anything malformed."""
    from . import check_layout

    c = _Cursor(view)
    magic, version, n_tensors, n_kv = c.take("<4sIQQ", "header")
    if magic != MAGIC or version not in (2, 3):
        raise FormatError(f"gguf: magic {magic!r} version {version} (little-endian v2/v3 only)")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise FormatError(f"gguf: {n_tensors} tensors / {n_kv} metadata entries (limits {MAX_TENSORS}/{MAX_KV})")
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_kv):
        key = c.string(f"metadata key {i}")
        vtype = c.take("<I", f"type of {key!r}")
        value = c.value(vtype, f"metadata {key!r}")
        if key == "general.alignment":
            if vtype != _UINT32:
                raise FormatError("gguf: general.alignment is not a uint32")
            alignment = int.from_bytes(value, "little")
            if alignment == 0 or alignment & (alignment - 1):
                raise FormatError(f"gguf: alignment {alignment} is not a power of two")
    infos = []
    for i in range(n_tensors):
        name = c.string(f"tensor name {i}")
        n_dims = c.take("<I", f"dimensions of {name!r}")
        if n_dims > MAX_DIMS:
            raise FormatError(f"gguf: tensor {name!r} has {n_dims} dimensions (limit {MAX_DIMS})")
        dims = [c.take("<Q", f"dimension of {name!r}") for _ in range(n_dims)]
        ggml_type, offset = c.take("<IQ", f"type and offset of {name!r}")
        infos.append((name, dims, ggml_type, offset))
    data_start = -(-c.pos // alignment) * alignment
    tensors = []
    for name, dims, ggml_type, offset in infos:
        try:
            qtype = GGMLQuantizationType(ggml_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise FormatError(f"gguf: tensor {name!r} has unknown type {ggml_type}") from None
        n = math.prod(dims)
        if n % block:
            raise FormatError(f"gguf: tensor {name!r}: {n} elements is no whole number of {block}-element blocks")
        if offset % alignment:
            raise FormatError(f"gguf: tensor {name!r} at offset {offset} is not {alignment}-aligned")
        start = data_start + offset
        # GGUF lists dimensions innermost first; shapes here are outermost first, like numpy.
        tensors.append((name, _FLOATS.get(qtype), tuple(reversed(dims)), start, start + n // block * type_size))
    return check_layout(tensors, len(view), "gguf")
