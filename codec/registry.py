"""Codec registry: the names the store and the catalog use <-> the ids stored in frames.

Built-in ids (never renumber; docs/FORMAT.md "Codec ids"):

====  ========  =====================================================  ==========
 id    name      what                                                   coded in
====  ========  =====================================================  ==========
 0     raw       the raw bytes                                          C
 1     zstd      zstandard level 3 (python-zstandard)                   Python
 2     planes    byte planes, each raw / constant / rANS                C
 3     xor       planes of (member XOR base cast to member dtype)       C
 4     ckpt      checkpoint arithmetic coder (codec/ckpt.py)            C
====  ========  =====================================================  ==========

Adding a codec written in Python (this is how codec/ckpt.py plugs in)::

    class MyCodec:
        needs_base = True          # frames get the NEEDS_BASE flag when a base is given
        def encode(self, piece, dtype, base, base_dtype):  -> bytes | None
        def decode(self, payload, out, dtype, base, base_dtype) -> None

    register("ckpt", 4, MyCodec())

The frame layer (codec/frames.py) owns everything around the payload: the header,
both CRC32C checks, the fallback to raw, threads, and slicing the base per frame.
``encode`` gets one frame's raw bytes (``memoryview``, <= FRAME_SIZE, a whole number
of elements) and, when the caller gave one, the base bytes of the same elements;
it returns the payload, or None when it does not apply (the frame then falls back).
``decode`` must fill ``out`` (writable memoryview of exactly the raw size) from
``payload`` and raise CodecError on anything inconsistent; it must never read or
write outside the given buffers.  The raw CRC is checked after it returns.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from .errors import CodecError, CodecMisuse


class CodecImpl(Protocol):
    """A codec coded in Python: one frame piece <-> one payload."""

    needs_base: bool

    def encode(self, piece: memoryview, dtype: str | None, base: memoryview | None,
               base_dtype: str | None) -> bytes | None: ...

    def decode(self, payload: memoryview, out: memoryview, dtype: str | None,
               base: memoryview | None, base_dtype: str | None) -> None: ...


class NativeCodec:
    """Marker for codecs implemented whole-frame in C (raw, planes, xor)."""

    def __init__(self, needs_base: bool) -> None:
        self.needs_base = needs_base


class Registry(Mapping[str, int]):
    """``CODECS["zstd"] == 1``; ``CODECS.name(1) == "zstd"``; ``CODECS.impl("zstd")``."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._impls: dict[str, CodecImpl | NativeCodec] = {}

    def __getitem__(self, name: str) -> int:
        return self._ids[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def name(self, codec_id: int) -> str:
        """Registered name of ``codec_id``; CodecError if none (an unknown codec in a frame)."""
        try:
            return self._names[codec_id]
        except KeyError:
            raise CodecError(f"unknown codec id {codec_id}") from None

    def impl(self, name: str) -> CodecImpl | NativeCodec:
        """The implementation registered under ``name``; CodecError if none."""
        try:
            return self._impls[name]
        except KeyError:
            raise CodecError(f"unknown codec {name!r}") from None

    def add(self, name: str, codec_id: int, impl: CodecImpl | NativeCodec) -> None:
        if not 0 <= codec_id <= 255:
            raise CodecMisuse(f"codec id {codec_id} does not fit in a byte")
        if self._ids.get(name, codec_id) != codec_id or self._names.get(codec_id, name) != name:
            raise CodecMisuse(f"codec {name!r} / id {codec_id} clashes with a registered codec")
        self._ids[name] = codec_id
        self._names[codec_id] = name
        self._impls[name] = impl


CODECS = Registry()


def register(name: str, codec_id: int, impl: CodecImpl) -> None:
    """Register a Python codec under ``name`` and frame id ``codec_id`` (0..255).

    Re-registering the same name with the same id replaces the implementation;
    reusing a name or an id for something else raises ValueError.
    """
    CODECS.add(name, codec_id, impl)
