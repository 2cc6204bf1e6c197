"""Containers parsed into tensors: one module per format, one result type for all.

``parse(view, path)`` returns where a file's tensors sit (``Parsed``) or None when the file is
no container we split (it is then stored as opaque, content-defined-chunked bytes). Every
parser is strict and bounded: sizes and offsets are checked against the file before anything
is trusted, and a file that fails to parse is stored opaque with a warning, never refused.
Bytes that are no tensor (headers, padding, metadata) are kept as they are, so every file
comes back bit-exact.
"""
from __future__ import annotations

from dataclasses import dataclass

from weightvault.errors import CompressedEntry, FormatError, SafetensorsError  # noqa: F401 (formats.FormatError)

from . import gguf, npy, onnx, safetensors, storedzip, torchzip


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str | None  # codec dtype name; None: typed opaque data (quantized blocks, unknown dtypes)
    shape: tuple[int, ...] | None
    start: int
    end: int


@dataclass(frozen=True)
class Parsed:
    format: str
    header_end: int  # bytes [0, header_end) kept inline as the header (safetensors); 0 otherwise
    tensors: list[Tensor]  # sorted by start, disjoint, inside the file


def storage_name(index: int) -> str:
    """How the n-th tensor storage of a torch zip is named in the catalog (and matched across checkpoints)."""
    return f"storage{index}"


def parse(view: memoryview, path: str) -> Parsed | None:
    """The tensors of the file at ``path`` (repo path), None when it is no container we split;
    FormatError when it looks like one but is malformed."""
    head = bytes(view[:8])
    try:
        if safetensors.looks_like_safetensors(path):
            layout = safetensors.parse(view, label=path)
            return Parsed("safetensors", layout.header_end, [Tensor(t.name, t.dtype, tuple(t.shape), t.start, t.end)
                                                            for t in layout.tensors])
        if head.startswith(gguf.MAGIC):
            return Parsed("gguf", 0, [Tensor(*t) for t in gguf.parse(view)])
        if head.startswith(npy.MAGIC):
            return Parsed("npy", 0, [Tensor(*t) for t in npy.parse(view, path.rsplit("/", 1)[-1])])
        if head.startswith(b"PK\x03\x04"):
            if path.endswith(".npz"):
                try:
                    return Parsed("npz", 0, [Tensor(*t) for t in npy.parse_npz(view)])
                except CompressedEntry:
                    return None  # savez_compressed: deflated members, stored as opaque bytes
            return _torch_zip(view)
        if path.endswith(".onnx"):
            return Parsed("onnx", 0, [Tensor(*t) for t in onnx.parse(view)])
    except (ValueError, SafetensorsError) as exc:
        raise FormatError(f"{path}: {exc}") from exc
    return None


def _torch_zip(view: memoryview) -> Parsed | None:
    try:
        segments = torchzip.parse_torch_zip(view)
    except ValueError:
        return None  # a zip, but no torch.save one that can be read safely: opaque, no warning
    tensors, index = [], 0
    for s in segments:
        if s.kind == "tensor":
            # Storages of unknown dtype are typed opaque data; only the others are numbered (the
            # names stored catalogs already use).
            name = storage_name(index) if s.dtype is not None else f"storage@{s.offset}"
            index += s.dtype is not None
            tensors.append(Tensor(name, s.dtype, None, s.offset, s.offset + s.length))
    return Parsed("torch-zip", 0, tensors)


def check_layout(tensors: list[tuple], size: int, what: str) -> list[tuple]:
    """Sort (name, dtype, shape, start, end) tuples by start; FormatError unless disjoint and inside ``size``."""
    spans = sorted(tensors, key=lambda t: t[3])
    pos = 0
    for t in spans:
        if t[3] < pos or t[4] < t[3] or t[4] > size:
            raise FormatError(f"{what}: tensor {t[0]!r} at {t[3]}..{t[4]} overlaps another or runs past the file ({size} bytes)")
        pos = t[4]
    return spans
