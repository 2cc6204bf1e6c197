"""Strict parsing of safetensors headers: a file is split into header and tensors, or stored opaque.

Format: u64 little-endian header length N, N bytes of JSON, then the data
section. Every tensor's ``data_offsets`` must lie inside the data section, not
overlap another, and match ``shape`` x the dtype's size. Gaps are allowed (kept
as opaque bytes) so that any file the reference library accepts is stored.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

from weightvault.errors import SafetensorsError

#: The reference implementation refuses headers above 100 MB; so do we.
MAX_HEADER_BYTES = 100_000_000
#: Longest tensor name kept (the catalog's column); a file with a longer one is stored as opaque bytes.
MAX_NAME_CHARS = 512

DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorSpan:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset in the file
    end: int


@dataclass(frozen=True)
class Layout:
    header_end: int  # 8 + N: where the data section starts
    tensors: list[TensorSpan]  # sorted by start


def looks_like_safetensors(path: str) -> bool:
    return path.endswith(".safetensors")


def parse(data, file_size: int | None = None, label: str = "file") -> Layout:
    view = memoryview(data)
    size = len(view) if file_size is None else file_size
    if size < 8:
        raise SafetensorsError(f"{label}: {size} bytes is too short for a safetensors header")
    (n,) = struct.unpack("<Q", view[:8])
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{label}: header claims {n} bytes, above the {MAX_HEADER_BYTES} byte limit")
    if 8 + n > size:
        raise SafetensorsError(f"{label}: header claims {n} bytes but the file has only {size - 8} after the length")
    try:
        header = json.loads(bytes(view[8:8 + n]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{label}: header is not valid JSON ({exc})") from None
    except RecursionError:  # a header nested thousands deep: no tensor list looks like that
        raise SafetensorsError(f"{label}: header JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{label}: header is not a JSON object")
    data_start = 8 + n
    data_len = size - data_start
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise SafetensorsError(f"{label}: __metadata__ must be an object")
            continue
        spans.append(_span(label, name, info, data_start, data_len))
    spans.sort(key=lambda t: (t.start, t.end))
    for prev, cur in zip(spans, spans[1:]):
        if cur.start < prev.end:
            raise SafetensorsError(f"{label}: tensors {prev.name!r} and {cur.name!r} overlap")
    return Layout(data_start, spans)


def _span(label: str, name: str, info, data_start: int, data_len: int) -> TensorSpan:
    if len(name) > MAX_NAME_CHARS or "\x00" in name:
        # The catalog keeps tensor names (String(512); PostgreSQL text holds no NUL).
        raise SafetensorsError(f"{label}: a tensor name is longer than {MAX_NAME_CHARS} characters or holds NUL")
    if not isinstance(info, dict):
        raise SafetensorsError(f"{label}: entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise SafetensorsError(f"{label}: tensor {name!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise SafetensorsError(f"{label}: tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise SafetensorsError(f"{label}: tensor {name!r} has invalid data_offsets {offsets!r}")
    lo, hi = offsets
    if not 0 <= lo <= hi <= data_len:
        raise SafetensorsError(
            f"{label}: tensor {name!r} spans bytes {lo}..{hi} but the data section has {data_len} bytes"
        )
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if (bits + 7) // 8 != hi - lo:
        raise SafetensorsError(
            f"{label}: tensor {name!r} of shape {shape} and dtype {dtype} needs {(bits + 7) // 8} bytes, offsets give {hi - lo}"
        )
    return TensorSpan(name, dtype, tuple(shape), data_start + lo, data_start + hi)
