"""NumPy .npy files and stored (uncompressed) .npz archives: each array's raw bytes as a tensor.

The header is read with numpy's own reader (numpy.lib.format), bounded to
MAX_HEADER bytes; object arrays, and arrays whose data does not fill the rest of
the file exactly, raise FormatError. savez_compressed archives are deflated: stored opaque.
"""
from __future__ import annotations

import io
import math

import numpy as np

from weightvault.errors import FormatError

from . import storedzip

MAGIC = b"\x93NUMPY"
#: numpy's own default bound on a header (numpy.lib.format, max_header_size).
MAX_HEADER = 10000

#: little-endian numpy type strings -> codec dtype names (others: typed opaque data)
_DTYPES = {"<f8": "F64", "<f4": "F32", "<f2": "F16", "<i8": "I64", "<i4": "I32", "<i2": "I16", "|i1": "I8",
           "|u1": "U8", "|b1": "BOOL", "<u2": "U16", "<u4": "U32", "<u8": "U64"}


def _array(view: memoryview, base: int, name: str) -> tuple:
    head = io.BytesIO(bytes(view[:MAX_HEADER + 16]))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(head, max_header_size=MAX_HEADER)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(head, max_header_size=MAX_HEADER)
    else:
        raise FormatError(f"npy: unsupported version {version}")
    if dtype.hasobject:
        raise FormatError("npy: object arrays are pickles, not raw data")
    start = head.tell()
    nbytes = math.prod(shape) * dtype.itemsize
    if start + nbytes != len(view):
        raise FormatError(f"npy: {name!r} holds {len(view) - start} data bytes, its header says {nbytes}")
    return name, _DTYPES.get(dtype.str), tuple(shape), base + start, base + start + nbytes


def parse(view: memoryview, name: str = "array") -> list[tuple]:
    """[(name, dtype, shape, start, end)] of the one array of an .npy file."""
    return [_array(view, 0, name)]


def parse_npz(view: memoryview) -> list[tuple]:
    """The arrays of a stored .npz (np.savez): one tensor per member."""
    out = []
    for e in storedzip.entries(bytes(view), "npz"):
        if e.name.endswith(".npy") and e.size:
            out.append(_array(view[e.data_offset:e.data_offset + e.size], e.data_offset, e.name[:-4]))
    return out
