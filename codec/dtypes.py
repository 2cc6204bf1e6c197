"""safetensors dtype names <-> the dtype codes stored in frame headers (docs/FORMAT.md)."""
from __future__ import annotations

# code -> (name, itemsize).  Codes are stored in frames: never renumber, only append.
_TABLE: dict[str, tuple[int, int]] = {
    "F64": (1, 8), "F32": (2, 4), "F16": (3, 2), "BF16": (4, 2),
    "F8_E4M3": (5, 1), "F8_E5M2": (6, 1), "I64": (7, 8), "I32": (8, 4), "I16": (9, 2),
    "I8": (10, 1), "U8": (11, 1), "BOOL": (12, 1), "U16": (13, 2), "U32": (14, 4),
    "U64": (15, 8), "F8_E8M0": (16, 1),
}
OPAQUE_CODE = 0

DTYPES: frozenset[str] = frozenset(_TABLE)
FLOAT_DTYPES: frozenset[str] = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0"})
_BY_CODE: dict[int, str] = {code: name for name, (code, _) in _TABLE.items()}


def itemsize(dtype: str | None) -> int:
    """Bytes per element of ``dtype``; 1 for None or a dtype coded as opaque bytes."""
    entry = _TABLE.get(dtype) if dtype is not None else None
    return entry[1] if entry else 1


def dtype_code(dtype: str | None) -> int:
    """Header code of ``dtype``; unknown names (and None) are opaque bytes, code 0."""
    entry = _TABLE.get(dtype) if dtype is not None else None
    return entry[0] if entry else OPAQUE_CODE


def dtype_name(code: int) -> str | None:
    """Inverse of :func:`dtype_code`; None for opaque bytes."""
    return _BY_CODE.get(code)
