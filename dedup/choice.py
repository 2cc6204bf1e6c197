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

from dataclasses import dataclass
from typing import Iterator

from weightvault import codec

#: Bytes coded per call: a multiple of the frame size, small enough that a
#: slice's frames fit comfortably in memory, large enough to use both cores.
SLICE_BYTES = 64 * codec.FRAME_SIZE

#: Delta chains longer than this are not built: a member whose best base is
#: itself at this depth is plane-coded instead, so a restore follows at most
#: this many base references.
MAX_DEPTH = 4


@dataclass(frozen=True)
class BaseCandidate:
    """A base tensor to predict from: its digest, dtype, depth and its raw bytes."""

    digest: str
    dtype: str | None
    depth: int
    data: memoryview
    #: The delta codec: "xor" for a family member (see the module docstring for the measurement),
    #: "ckpt" for a checkpoint against the previous one: a checkpoint is read once per resume, so
    #: there the coder built for optimizer moments (sign flips, dedup/series.py) keeps its place.
    codec: str = "xor"
    why: str = ""
    mechanism: str = "family_delta"  # or checkpoint_delta, for the report


@dataclass
class CodingChoice:
    codec: str
    reason: str
    base_digest: str | None
    depth: int
    mechanism: str
    _slices: Iterator[tuple[list[bytes], int]]

    def frame_slices(self) -> Iterator[tuple[list[bytes], int]]:
        """(frames, raw offset of the first) per slice, coded lazily."""
        return self._slices


def _encode_slices(data: memoryview, dtype: str | None, codec_name: str, base: BaseCandidate | None,
                   threads: int, first: list[bytes] | None) -> Iterator[tuple[list[bytes], int]]:
    for offset in range(0, len(data), SLICE_BYTES):
        if offset == 0 and first is not None:
            yield first, 0
            continue
        piece = data[offset:offset + SLICE_BYTES]
        kw = {}
        if base is not None:
            b_off, b_len = codec.base_range(offset, len(piece), dtype, base.dtype)
            kw = {"base": base.data[b_off:b_off + b_len], "base_dtype": base.dtype}
        yield codec.encode_frames(piece, dtype, codec=codec_name, threads=threads, **kw), offset


def choose_and_encode(data: memoryview, dtype: str | None, base: BaseCandidate | None, *,
                      threads: int = 2) -> CodingChoice:
    if len(data) == 0:
        return CodingChoice("raw", "empty", None, 0, "plane_coding", iter(()))
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
            return CodingChoice(name, reason, base.digest, base.depth + 1, base.mechanism,
                                _encode_slices(data, dtype, name, base, threads, delta))
        why = f"plain {plain_codec} {plain_size / first_len:.3f} beat {name} delta {delta_size / first_len:.3f}"
    else:
        why = f"{plain_codec}: {plain_size / first_len:.3f} of raw" + (" (delta chain at its depth limit)" if base else "")
    return CodingChoice(plain_codec, why, None, 0, "plane_coding", _encode_slices(data, dtype, "auto", None, threads, plain))


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
        return CodingChoice("xor", reason, base.digest, base.depth + 1, base.mechanism,
                            _encode_slices(data, dtype, "xor", base, threads, first))
    plain_codec = _dominant_codec(first)
    why = f"plain {plain_codec} {size:.3f} of raw: no frame gained from the xor delta"
    return CodingChoice(plain_codec, why, None, 0, "plane_coding", _encode_slices(data, dtype, "auto", None, threads, first))


def _dominant_codec(frames: list[bytes]) -> str:
    counts: dict[str, int] = {}
    for f in frames:
        name = codec.frame_info(f).codec
        counts[name] = counts.get(name, 0) + 1
    return max(counts, key=counts.get)
