"""dtype names <-> the dtype codes stored in frame headers (docs/FORMAT.md).

The codec speaks safetensors names (``BF16``); :func:`canonical` also takes numpy
(``bfloat16``, ``np.dtype("float32")``) and torch (``torch.bfloat16``) names and refuses
any other, so a misspelt dtype raises instead of being coded as opaque bytes.
"""
from __future__ import annotations

from .errors import UnknownDtype

# code -> (name, itemsize).  Codes are stored in frames: never renumber, only append.
_TABLE: dict[str, tuple[int, int]] = {
    "F64": (1, 8), "F32": (2, 4), "F16": (3, 2), "BF16": (4, 2),
    "F8_E4M3": (5, 1), "F8_E5M2": (6, 1), "I64": (7, 8), "I32": (8, 4), "I16": (9, 2),
    "I8": (10, 1), "U8": (11, 1), "BOOL": (12, 1), "U16": (13, 2), "U32": (14, 4),
    "U64": (15, 8), "F8_E8M0": (16, 1),
}
OPAQUE_CODE = 0

#: safetensors dtypes with no header code: coded as opaque bytes, by design.
OPAQUE_DTYPES: frozenset[str] = frozenset({"C64", "F4", "F6_E2M3", "F6_E3M2"})
#: numpy and torch spellings (lower case, without ``torch.``) -> safetensors names.
_ALIASES: dict[str, str] = {
    "float64": "F64", "double": "F64", "float32": "F32", "float": "F32", "float16": "F16", "half": "F16",
    "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
    "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16", "short": "I16",
    "int8": "I8", "uint8": "U8", "bool": "BOOL", "uint16": "U16", "uint32": "U32", "uint64": "U64",
    "complex64": "C64",
}

DTYPES: frozenset[str] = frozenset(_TABLE)
FLOAT_DTYPES: frozenset[str] = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0"})
_BY_CODE: dict[int, str] = {code: name for name, (code, _) in _TABLE.items()}


def canonical(dtype) -> str | None:
    """The safetensors name of ``dtype`` (a safetensors, numpy or torch name, or a numpy/torch
    dtype object); None stays None (opaque bytes). Raises UnknownDtype for anything else."""
    if dtype is None:
        return None
    name = str(dtype)
    if name in _TABLE or name in OPAQUE_DTYPES:
        return name
    alias = _ALIASES.get(name.lower().removeprefix("torch."))
    if alias is None:
        raise UnknownDtype(dtype=name)
    return alias


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
