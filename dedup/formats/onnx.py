"""ONNX models: the raw data of the graph's initializers as tensors.

A bounded walk over the protobuf wire format (ModelProto.graph -> GraphProto.initializer ->
TensorProto.raw_data) that records where each initializer's bytes sit in the file: the onnx
package decodes a model but cannot say at which offsets its fields lie. Only the top graph's
initializers are split (subgraphs stay opaque bytes); initializers kept in external data files
leave those files to content-defined chunking, which finds the tensors they share with stored ones.
"""
from __future__ import annotations

import math

from weightvault.errors import FormatError


#: onnx.TensorProto.DataType -> codec dtype names (FLOAT=1, UINT8=2, INT8=3, UINT16=4, INT16=5,
#: INT32=6, INT64=7, BOOL=9, FLOAT16=10, DOUBLE=11, UINT32=12, UINT64=13, BFLOAT16=16)
_DTYPES = {1: ("F32", 4), 2: ("U8", 1), 3: ("I8", 1), 4: ("U16", 2), 5: ("I16", 2), 6: ("I32", 4),
           7: ("I64", 8), 9: ("BOOL", 1), 10: ("F16", 2), 11: ("F64", 8), 12: ("U32", 4), 13: ("U64", 8),
           16: ("BF16", 2)}
MAX_DIMS = 16
MAX_INITIALIZERS = 1 << 20
_GRAPH, _INITIALIZER = 7, 5  # ModelProto.graph, GraphProto.initializer
_DIMS, _DATA_TYPE, _NAME, _RAW_DATA = 1, 2, 8, 9  # TensorProto fields


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= end:
            raise FormatError(f"onnx: varint runs past its message at byte {pos}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
    raise FormatError(f"onnx: varint longer than 10 bytes at byte {pos}")


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise FormatError(f"onnx: field {field} ({n} bytes at {pos}) runs past its message")
            yield field, wire, (pos, pos + n)
            pos += n
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise FormatError(f"onnx: fixed field {field} runs past its message")
        else:
            raise FormatError(f"onnx: wire type {wire} of field {field} at byte {pos}")


def _tensor(buf: memoryview, start: int, end: int) -> tuple | None:
    dims, dtype_code, name, raw = [], 0, "", None
    for field, wire, value in _fields(buf, start, end):
        if field == _DIMS and wire == 0:
            dims.append(value)
        elif field == _DIMS and wire == 2:
            pos, stop = value
            while pos < stop:
                d, pos = _varint(buf, pos, stop)
                dims.append(d)
        elif field == _DATA_TYPE and wire == 0:
            dtype_code = value
        elif field == _NAME and wire == 2:
            name = bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
        elif field == _RAW_DATA and wire == 2:
            raw = value
        if len(dims) > MAX_DIMS:
            raise FormatError(f"onnx: initializer with more than {MAX_DIMS} dimensions")
    if raw is None or raw[1] == raw[0]:
        return None  # data in typed fields or in an external file: left in the opaque bytes
    dtype, size = _DTYPES.get(dtype_code, (None, 1))
    if dtype is not None and math.prod(dims) * size != raw[1] - raw[0]:
        dtype = None  # raw_data disagrees with its shape: typed opaque data
    return name, dtype, tuple(dims), raw[0], raw[1]


def parse(view: memoryview) -> list[tuple]:
    """[(name, dtype, shape, start, end)] of the top graph's initializers with raw data."""
    from . import check_layout

    tensors = []
    for field, wire, value in _fields(view, 0, len(view)):
        if field != _GRAPH or wire != 2:
            continue
        for gfield, gwire, gvalue in _fields(view, *value):
            if gfield == _INITIALIZER and gwire == 2:
                t = _tensor(view, *gvalue)
                if t is not None:
                    tensors.append(t)
                if len(tensors) > MAX_INITIALIZERS:
                    raise FormatError(f"onnx: more than {MAX_INITIALIZERS} initializers")
    return check_layout(tensors, len(view), "onnx")
