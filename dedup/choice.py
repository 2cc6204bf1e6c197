"""Codec choice per tensor: the cheapest of delta against a base, plane coding, or raw.

(Duplicate references are decided before this point, by digest.) The choice is
made on the first slice of the tensor, then the rest is coded the same way;
every frame still falls back on its own to raw inside the codec when coding
does not pay.

The rule, with decode time in it: a tensor takes its base's delta codec
(``BaseCandidate.codec``) when that is smaller than plane coding, else plane coding.
Only one delta codec is tried per base, because the choice between them was settled
by measurement rather than per tensor: a delta codec must make the member restore at
>= 0.8x its base's speed, and among those the smallest wins.  Six shared repos
ingested in hub order, same session (stored/raw of all six; restore MB per CPU-second
of the fine-tunes next to the FP32 base's):

=================================================  ===============  ===========================
per tensor                                          six repos        fine-tunes' restore / base
=================================================  ===============  ===========================
smaller of xor (frame v2, XOR planes) and ckpt      0.2634           132-275 / 582 MB/cpu-s
xor, frame v2 (XOR planes)                          0.2700           294-363 / 651
xor, frame v3 (distances, what ingest writes now)   0.2613           392-447 / 522
=================================================  ===============  ===========================

Per repo, old choice -> v3: BF16 fine-tune 0.0885 -> 0.0728, frozen BF16 fine-tune
0.0456 -> 0.0451, FP32 fine-tune 0.3049 -> 0.3034, the rest unchanged: the distance
coder is smaller than ckpt on every shared member and decodes 3-8x faster, so family
members use xor only.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

from weightvault import codec

#: Bytes coded per call: a multiple of the frame size, small enough that a
#: slice's frames fit comfortably in memory, large enough to use both cores.
SLICE_BYTES = 64 * codec.FRAME_SIZE

#: The threads that code tensors for ingest and re-basing, one per core of the 2-core machine:
#: jobs of at most a slice each with one coding thread, so that tensors under a slice (most of
#: a model's) are coded two at a time, not one after the other on one core.
encode_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wv-encode")

#: Delta chains longer than this are not built: a member whose best base is
#: itself at this depth is plane-coded instead, so a restore follows at most
#: this many base references.
MAX_DEPTH = 4


@dataclass(frozen=True)
class BaseCandidate:
    """A base tensor to predict from: its digest, dtype, depth and its raw bytes, or what reads
    them (``loaded``): ingest then decodes a stored base on the encode thread that codes against it."""

    digest: str
    dtype: str | None
    depth: int
    data: memoryview | Callable[[], memoryview]
    #: The delta codec: "xor" for a family member (see the module docstring for the measurement),
    #: "ckpt" for a checkpoint against the previous one: a checkpoint is read once per resume, so
    #: there the coder built for optimizer moments (sign flips, dedup/series.py) keeps its place.
    codec: str = "xor"
    why: str = ""
    mechanism: str = "family_delta"  # or checkpoint_delta, for the report
    size: int | None = None  # its raw bytes, given when ``data`` is a reader

    @property
    def raw_size(self) -> int:
        return len(self.data) if self.size is None else self.size

    def loaded(self) -> "BaseCandidate":
        return dataclasses.replace(self, data=memoryview(self.data())) if callable(self.data) else self


@dataclass
class CodingChoice:
    """How a tensor is coded, decided on its first slice (whose frames it holds); ``encode_slice``
    codes any later slice the same way, on whichever thread calls it."""

    codec: str
    reason: str
    base_digest: str | None
    depth: int
    mechanism: str
    data: memoryview
    dtype: str | None
    first: list[bytes]  # the frames of the first slice
    _codec_name: str = "auto"  # what encode_frames is asked for: "auto", or the base's delta codec
    _base: BaseCandidate | None = None

    def slice_offsets(self) -> range:
        """Raw offsets of the slices after the first."""
        return range(SLICE_BYTES, len(self.data), SLICE_BYTES)

    def encode_slice(self, offset: int, threads: int = 1) -> list[bytes]:
        piece = self.data[offset:offset + SLICE_BYTES]
        kw = {}
        if self._base is not None:
            b_off, b_len = codec.base_range(offset, len(piece), self.dtype, self._base.dtype)
            kw = {"base": self._base.data[b_off:b_off + b_len], "base_dtype": self._base.dtype}
        return codec.encode_frames(piece, self.dtype, codec=self._codec_name, threads=threads, **kw)

    def frame_slices(self, threads: int = 2) -> Iterator[tuple[list[bytes], int]]:
        """(frames, raw offset of the first) per slice, coded lazily."""
        if self.first:
            yield self.first, 0
        for offset in self.slice_offsets():
            yield self.encode_slice(offset, threads), offset
        self.release()

    def release(self) -> None:
        """Drop the tensor's and its base's bytes and the first frames, once every slice is coded:
        an ingest keeps its choices until it lands (a member's decoded bases with them, else)."""
        self.data, self.first, self._base = memoryview(b""), [], None


def choose_and_encode(data: memoryview, dtype: str | None, base: BaseCandidate | None, *,
                      threads: int = 2) -> CodingChoice:
    """The choice for ``data``, made by coding its first slice (with ``threads``)."""
    if len(data) == 0:
        return CodingChoice("raw", "empty", None, 0, "plane_coding", data, dtype, [])
    if base is not None and base.depth < MAX_DEPTH:
        base = base.loaded()
    first_len = min(len(data), SLICE_BYTES)
    if base is not None and base.depth < MAX_DEPTH and base.codec == "xor":
        return _choose_xor(data, dtype, base, first_len, threads)
    plain = codec.encode_frames(data[:first_len], dtype, codec="auto", threads=threads)
    plain_size = sum(map(len, plain))
    plain_codec = _dominant_codec(plain)
    if base is not None and base.depth < MAX_DEPTH:
        b_off, b_len = codec.base_range(0, first_len, dtype, base.dtype)
        base_piece = base.data[b_off:b_off + b_len]
        name = base.codec
        delta = codec.encode_frames(data[:first_len], dtype, codec=name, threads=threads,
                                    base=base_piece, base_dtype=base.dtype)
        delta_size = sum(map(len, delta))
        if delta_size < plain_size:
            reason = (f"{name} delta against {base.why or 'base'}: "
                      f"{delta_size / first_len:.3f} of raw vs {plain_size / first_len:.3f} plain")
            return CodingChoice(name, reason, base.digest, base.depth + 1, base.mechanism, data, dtype, delta,
                                name, base)
        why = f"plain {plain_codec} {plain_size / first_len:.3f} beat {name} delta {delta_size / first_len:.3f}"
    else:
        why = f"{plain_codec}: {plain_size / first_len:.3f} of raw" + (" (delta chain at its depth limit)" if base else "")
    return CodingChoice(plain_codec, why, None, 0, "plane_coding", data, dtype, plain)


def _choose_xor(data: memoryview, dtype: str | None, base: BaseCandidate, first_len: int,
                threads: int) -> CodingChoice:
    """One xor encode of the first slice decides: an xor frame already falls back on its own to
    plain planes (or raw) where those are smaller (native/src/codec.c, XOR_RETRY_SHARE), so a
    slice with no frame left needing the base is exactly what plain coding gives, and one with
    such frames is smaller than plain. Coding the slice plain as well, to compare, was a second
    encode of most of every family member (its tensors are mostly under a slice)."""
    b_off, b_len = codec.base_range(0, first_len, dtype, base.dtype)
    first = codec.encode_frames(data[:first_len], dtype, codec="xor", threads=threads,
                                base=base.data[b_off:b_off + b_len], base_dtype=base.dtype)
    size = sum(map(len, first)) / first_len
    predicted = sum(codec.frame_info(f).needs_base for f in first)
    if predicted:
        reason = (f"xor delta against {base.why or 'base'}: {size:.3f} of raw "
                  f"({predicted} of {len(first)} frames predicted, the rest plain)")
        return CodingChoice("xor", reason, base.digest, base.depth + 1, base.mechanism, data, dtype, first,
                            "xor", base)
    plain_codec = _dominant_codec(first)
    why = f"plain {plain_codec} {size:.3f} of raw: no frame gained from the xor delta"
    return CodingChoice(plain_codec, why, None, 0, "plane_coding", data, dtype, first)


def _dominant_codec(frames: list[bytes]) -> str:
    counts: dict[str, int] = {}
    for f in frames:
        name = codec.frame_info(f).codec
        counts[name] = counts.get(name, 0) + 1
    return max(counts, key=counts.get)
