"""Distance payloads in mode SPARSE (frame version 4, docs/FORMAT.md "Distance payload"): members
that are their base's cast but for a few elements list only those.  Round trips at every density,
by the encoder's rule and forced (``wv_ctx_set_sparse(ctx, 2)``), and hostile frames rejected."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from weightvault import codec
from weightvault.codec import CodecError, _lib
from weightvault.codec._native import lib

SYM_RANS, SYM_SPARSE = 2, 3
HDR = 32
SYM_BODY = HDR + 2 + 9  # after [count][flags] and [Sym_Mode][Sym_Size][Bits_Size]


@contextmanager
def sparse_mode(mode: int):
    """0: never SPARSE, 1: the encoder's rule (the default), 2: SPARSE whenever it fits."""
    ctx = _lib.context().ctx
    lib.wv_ctx_set_sparse(ctx, mode)
    try:
        yield
    finally:
        lib.wv_ctx_set_sparse(ctx, 1)


def member(dtype: str, n: int, moved: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(member, F32 base): the base cast to ``dtype`` with a share ``moved`` of the elements moved,
    most by one unit in the last place, some far (sign changes, NaN, inf among them)."""
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal(n) * 0.02).astype(np.float32)
    base[:4] = [np.nan, np.inf, -0.0, 1e-40][:min(n, 4)]
    if dtype == "F32":
        pred = base.view(np.uint32).copy()
    else:
        pred = np.empty(n, np.uint16)
        codec.cast(base, "F32", dtype, pred)
    width = pred.dtype.type
    step = np.where(rng.random(n) < 0.8, 1, rng.integers(1, 1 << (8 * pred.itemsize - 1), n, dtype=np.int64))
    out = np.where(rng.random(n) < moved, pred + step.astype(pred.dtype), pred).astype(pred.dtype)
    if n > 8 and moved:
        out[-1] = width(pred[-1] ^ 1)  # a move in the last element: the longest gap reaches the end
        out[5] = width(pred[5] ^ (1 << (8 * pred.itemsize - 1)))  # a sign change
    return out, base


def sym_modes(blob: bytes) -> set[int]:
    return {f[HDR + 2] for f in codec.iter_frames(blob) if f[4] == 3 and f[HDR + 1] == 4}


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("n", [1, 2, 31, 33, 1001, 70001])
@pytest.mark.parametrize("moved", [0.0, 0.0005, 0.01, 0.1, 0.5, 1.0])
def test_sparse_round_trips_at_every_density(dtype: str, n: int, moved: float) -> None:
    data, base = member(dtype, n, moved, seed=n)
    for mode in (1, 2):
        with sparse_mode(mode):
            blob = codec.encode(data, dtype, codec="xor", base=base, base_dtype="F32")
        assert bytes(codec.decode(blob, base=base)) == data.tobytes(), mode
        if dtype != "F32":  # the base already cast, as the base cache hands it over (one frame here)
            pre = np.empty(n, data.dtype)
            codec.cast(base, "F32", dtype, pre)
            (frame,) = codec.iter_frames(blob)
            assert bytes(codec.decode_frame(frame, base=pre, base_dtype=dtype)) == data.tobytes(), mode
        if mode == 2 and moved and n > 1000:  # smaller ones may be stored raw
            assert SYM_SPARSE in sym_modes(blob)


def test_encoder_picks_sparse_for_near_identical_members_only() -> None:
    near, base = member("BF16", 200003, 0.004)
    blob = codec.encode(near, "BF16", codec="xor", base=base, base_dtype="F32")
    assert sym_modes(blob) == {SYM_SPARSE}
    with sparse_mode(0):
        dense_coded = codec.encode(near, "BF16", codec="xor", base=base, base_dtype="F32")
    assert sym_modes(dense_coded) == {SYM_RANS} and len(blob) <= len(dense_coded)
    moved, base = member("BF16", 200003, 0.5)
    assert sym_modes(codec.encode(moved, "BF16", codec="xor", base=base, base_dtype="F32")) == {SYM_RANS}


def test_sparse_decodes_with_every_kernel() -> None:
    data, base = member("BF16", 70001, 0.01)
    blob = codec.encode(data, "BF16", codec="xor", base=base, base_dtype="F32")
    try:
        for k in [k for k in (0, 1, 2) if lib.wv_rans_select_kernel(k) == k]:
            assert bytes(codec.decode(blob, base=base)) == data.tobytes(), k
    finally:
        lib.wv_rans_select_kernel(-1)


def _sparse_frame(n: int = 3001) -> tuple[bytearray, np.ndarray, np.ndarray]:
    data, base = member("BF16", n, 0.02, seed=7)
    (frame,) = codec.encode_frames(data, "BF16", codec="xor", base=base, base_dtype="F32")
    assert frame[HDR + 2] == SYM_SPARSE
    return bytearray(frame), data, base


def _sealed(frame: bytearray) -> bytes:
    """The frame with its payload size, payload CRC and header CRC made to match again, so that a
    changed payload reaches the distance decoder."""
    frame[12:16] = (len(frame) - HDR).to_bytes(4, "little")
    frame[20:24] = lib.wv_crc32c(0, bytes(frame[HDR:]), len(frame) - HDR).to_bytes(4, "little")
    frame[28:32] = lib.wv_crc32c(0, bytes(frame[:28]), 28).to_bytes(4, "little")
    return bytes(frame)


def _sizes(frame: bytearray) -> tuple[int, int]:
    return int.from_bytes(frame[HDR + 3:HDR + 7], "little"), int.from_bytes(frame[HDR + 7:HDR + 11], "little")


def _rejected(frame: bytes, base: np.ndarray) -> None:
    with pytest.raises(CodecError):
        codec.decode_frame(frame, base=base)


@pytest.mark.parametrize("count", [0, 1, 3002, 0xFFFFFFFF])
def test_sparse_count_out_of_range_or_wrong_is_rejected(count: int) -> None:
    frame, _, base = _sparse_frame()
    frame[SYM_BODY:SYM_BODY + 4] = count.to_bytes(4, "little")
    _rejected(_sealed(frame), base)


def test_sparse_in_a_version_3_frame_is_rejected() -> None:
    frame, _, base = _sparse_frame()
    frame[3] = 3
    _rejected(_sealed(frame), base)


def test_sparse_bits_missing_or_left_over_are_rejected() -> None:
    frame, _, base = _sparse_frame()
    ssz, nbits = _sizes(frame)
    assert nbits > 1
    short = frame[:-1]
    short[HDR + 7:HDR + 11] = (nbits - 1).to_bytes(4, "little")
    _rejected(_sealed(short), base)
    longer = frame + b"\0"
    longer[HDR + 7:HDR + 11] = (nbits + 1).to_bytes(4, "little")
    _rejected(_sealed(longer), base)


def test_sparse_entries_past_the_end_are_rejected() -> None:
    """The same payload in a frame of fewer elements: its last entries point past the end."""
    frame, data, base = _sparse_frame()
    n = 2500
    frame[8:12] = (2 * n).to_bytes(4, "little")
    _rejected(_sealed(frame), base[:n])


def test_mutated_sparse_payloads_decode_exactly_or_fail_cleanly() -> None:
    frame, data, base = _sparse_frame()
    rng = np.random.default_rng(1)
    failed = 0
    for _ in range(400):
        bad = bytearray(frame)
        for _ in range(rng.integers(1, 4)):
            at = int(rng.integers(HDR + 2, len(bad)))
            bad[at] ^= 1 << int(rng.integers(0, 8))
        try:
            out = bytes(codec.decode_frame(_sealed(bad), base=base))
        except CodecError:
            failed += 1
            continue
        assert out == data.tobytes()
    assert failed > 300
