"""Golden frames (tests/fuzz/golden/, also fuzz seeds): frames written by every format
version must keep decoding to the same bytes.  ``NAME.wvf`` were written by version 1 and
``NAME_v2.wvf`` and ``NAME_v3.wvf`` by versions 2 and 3 are frozen (no encoder writes them any
more); ``NAME_v4.wvf`` by version 4, the current one.  Regenerate the current version's files only
for a deliberate format change:

    .venv/bin/python tests/test_codec_golden.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weightvault import codec
from weightvault.codec import CodecError
from weightvault.codec._native import lib

GOLDEN = Path(__file__).resolve().parent / "fuzz" / "golden"
CURRENT = 4
PLANE_FLAGS_MAG = 4  # docs/FORMAT.md, "Distance payload"
PLANE_PAIRS = 3  # plane mode, docs/FORMAT.md
SYM_SPARSE = 3  # Sym_Mode of a distance payload, docs/FORMAT.md


def _cases() -> dict[str, tuple[bytes, str, dict]]:
    rng = np.random.default_rng(20261123)
    base = (rng.standard_normal(3000) * 0.04).astype(np.float32)
    base[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 3.0e38, 1.0]
    bf16 = ((base.view(np.uint32).astype(np.uint64) + 0x7FFF) >> 16).astype(np.uint16)
    tuned = bf16.copy()
    tuned[::7] ^= 1
    tuned[::131] ^= 0x40
    return {
        "planes_bf16": (bf16.tobytes(), "BF16", {"codec": "planes"}),
        "planes_f32": (base.tobytes(), "F32", {"codec": "planes"}),
        "xor_bf16_f32": (tuned.tobytes(), "BF16", {"codec": "xor", "base": base, "base_dtype": "F32"}),
        "zstd_i64": (np.arange(-500, 500, dtype=np.int64).tobytes(), "I64", {"codec": "zstd"}),
        "raw_opaque": (bytes(range(256)) * 3, None, {"codec": "raw"}),
        "const_u8": (bytes(5000), "U8", {"codec": "planes"}),
    }


def _cases_v2() -> dict[str, tuple[bytes, str, dict]]:
    """Version 2 adds PAIRS planes, which pay from ~40 Ki elements on (their table is
    bigger): one such frame, with an odd element count (padding code) and escapes."""
    cases = {f"{name}_v2": case for name, case in _cases().items()}
    w = (np.random.default_rng(20261203).standard_normal(40001) * 0.04).astype(np.float32)
    w[:4] = [np.nan, -np.inf, 0.0, 1e-40]
    bf16 = ((w.view(np.uint32).astype(np.uint64) + 0x7FFF) >> 16).astype(np.uint16)
    cases["pairs_bf16_v2"] = (bf16.tobytes(), "BF16", {"codec": "planes"})
    return cases


def _cases_v3() -> dict[str, tuple[bytes, str, dict]]:
    """Version 3 codes float members as distances (xor_bf16_f32_v3 is one); besides, an F32
    and an F16 member with large moves, sign changes, NaN and inf, and an unchanged frame."""
    cases = {name[:-3] + "_v3": case for name, case in _cases_v2().items()}
    rng = np.random.default_rng(20261204)
    base = (rng.standard_normal(4001) * 0.04).astype(np.float32)
    base[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40]
    with np.errstate(invalid="ignore", over="ignore"):
        tuned = (base + rng.standard_normal(4001).astype(np.float32) * 10.0 ** rng.integers(-9, 0, 4001)
                 ).astype(np.float32)
    tuned[6:9] = [-base[6], np.nan, np.inf]
    tuned[9::3] = base[9::3]
    with np.errstate(over="ignore"):
        cases["distance_f32_v3"] = (tuned.tobytes(), "F32", {"codec": "xor", "base": base, "base_dtype": "F32"})
        cases["distance_f16_f32_v3"] = (tuned.astype(np.float16).tobytes(), "F16",
                                        {"codec": "xor", "base": base, "base_dtype": "F32"})
    cases["distance_same_f32_v3"] = (base.tobytes(), "F32", {"codec": "xor", "base": base, "base_dtype": "F32"})
    return cases


def _near_identical(dtype: str, n: int, seed: int) -> tuple[bytes, str, dict]:
    """A member that is its F32 base's cast but for one element in 60: most moved by one unit in
    the last place, some far, one through zero, one to NaN, one in the last element."""
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal(n) * 0.04).astype(np.float32)
    base[:4] = [np.nan, np.inf, -0.0, 1e-40]
    width = np.uint32 if dtype == "F32" else np.uint16
    pred = base.view(np.uint32).copy() if dtype == "F32" else np.empty(n, width)
    if dtype != "F32":
        codec.cast(base, "F32", dtype, pred)
    moved = np.arange(7, n, 60)
    pred[moved] += np.where(moved % 7 == 0, 1000, 1).astype(width)
    pred[11] ^= width(1 << (8 * pred.itemsize - 1))
    pred[13] = width(0x7FC00000 if dtype == "F32" else 0x7E00 if dtype == "F16" else 0x7FC0)
    pred[-1] ^= width(1)
    return pred.tobytes(), dtype, {"codec": "xor", "base": base, "base_dtype": "F32"}


def _cases_v4() -> dict[str, tuple[bytes, str, dict]]:
    """Version 4 lists the moved elements of near-identical members (Sym_Mode SPARSE): a BF16, an
    F16 and an F32 one, odd element counts."""
    cases = {name[:-3] + "_v4": case for name, case in _cases_v3().items()}
    cases["sparse_bf16_f32_v4"] = _near_identical("BF16", 6001, 20261205)
    cases["sparse_f16_f32_v4"] = _near_identical("F16", 4003, 20261206)
    cases["sparse_f32_v4"] = _near_identical("F32", 3001, 20261207)
    return cases


def _golden() -> list[tuple[str, int, tuple]]:
    return ([(n, 1, c) for n, c in _cases().items()] + [(n, 2, c) for n, c in _cases_v2().items()]
            + [(n, 3, c) for n, c in _cases_v3().items()] + [(n, CURRENT, c) for n, c in _cases_v4().items()])


@pytest.mark.parametrize("name,version,case", _golden(), ids=[g[0] for g in _golden()])
def test_golden_frame_decodes(name: str, version: int, case: tuple) -> None:
    data, dtype, kw = case
    frame = (GOLDEN / f"{name}.wvf").read_bytes()
    assert frame[3] == version
    info = codec.frame_info(frame)
    assert info.dtype == dtype and info.raw_size == len(data)
    assert bytes(codec.decode_frame(frame, base=kw.get("base"))) == data


def test_golden_frame_uses_pairs() -> None:
    frame = (GOLDEN / "pairs_bf16_v3.wvf").read_bytes()
    assert frame[32 + 2] == PLANE_PAIRS  # plane 0's mode, after [count][flags]
    body = 32 + 2 + 5 * 2  # plane 0's body: [Dict_Count][Dict][Esc_Count u32]...
    assert int.from_bytes(frame[body + 1 + frame[body]:][:4], "little") > 0  # it has escapes


@pytest.mark.parametrize("name", ["xor_bf16_f32_v3", "distance_f32_v3", "distance_f16_f32_v3",
                                  "distance_same_f32_v3", "xor_bf16_f32_v4", "distance_f32_v4",
                                  "distance_f16_f32_v4", "distance_same_f32_v4"])
def test_golden_member_frames_are_distance_payloads(name: str) -> None:
    frame = (GOLDEN / f"{name}.wvf").read_bytes()
    assert codec.frame_info(frame).codec == "xor" and frame[32 + 1] == PLANE_FLAGS_MAG


@pytest.mark.parametrize("name", ["sparse_bf16_f32_v4", "sparse_f16_f32_v4", "sparse_f32_v4"])
def test_v4_golden_near_identical_members_are_sparse(name: str) -> None:
    frame = (GOLDEN / f"{name}.wvf").read_bytes()
    assert frame[32 + 1] == PLANE_FLAGS_MAG and frame[32 + 2] == SYM_SPARSE


def test_sparse_distance_payload_in_a_version_3_frame_is_rejected() -> None:
    frame = bytearray((GOLDEN / "sparse_bf16_f32_v4.wvf").read_bytes())
    frame[3] = 3
    frame[28:32] = lib.wv_crc32c(0, bytes(frame[:28]), 28).to_bytes(4, "little")
    with pytest.raises(CodecError, match="corrupt"):
        codec.decode_frame(bytes(frame), base=_cases_v4()["sparse_bf16_f32_v4"][2]["base"])


def test_distance_payload_in_a_version_2_frame_is_rejected() -> None:
    frame = bytearray((GOLDEN / "distance_f32_v3.wvf").read_bytes())
    frame[3] = 2
    frame[28:32] = lib.wv_crc32c(0, bytes(frame[:28]), 28).to_bytes(4, "little")
    base = _cases_v3()["distance_f32_v3"][2]["base"]
    with pytest.raises(CodecError, match="corrupt"):
        codec.decode_frame(bytes(frame), base=base)


def test_pairs_plane_in_a_version_1_frame_is_rejected() -> None:
    frame = bytearray((GOLDEN / "pairs_bf16_v2.wvf").read_bytes())
    frame[3] = 1
    frame[28:32] = lib.wv_crc32c(0, bytes(frame[:28]), 28).to_bytes(4, "little")
    with pytest.raises(CodecError, match="corrupt"):
        codec.decode_frame(bytes(frame))


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name, (data, dtype, kw) in _cases_v4().items():
        (frame,) = codec.encode_frames(data, dtype, **kw)
        assert frame[3] == CURRENT
        (GOLDEN / f"{name}.wvf").write_bytes(frame)
        print(name, codec.frame_info(frame))
