"""Golden frames (tests/fuzz/golden/, also fuzz seeds): frames written by format version 1
must keep decoding to the same bytes.  Regenerate only for a deliberate format change:

    .venv/bin/python tests/test_codec_golden.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weightvault import codec

GOLDEN = Path(__file__).resolve().parent / "fuzz" / "golden"


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


@pytest.mark.parametrize("name", sorted(_cases()))
def test_golden_frame_decodes(name: str) -> None:
    data, dtype, kw = _cases()[name]
    frame = (GOLDEN / f"{name}.wvf").read_bytes()
    info = codec.frame_info(frame)
    assert info.dtype == dtype and info.raw_size == len(data)
    assert bytes(codec.decode_frame(frame, base=kw.get("base"))) == data


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name, (data, dtype, kw) in _cases().items():
        (frame,) = codec.encode_frames(data, dtype, **kw)
        (GOLDEN / f"{name}.wvf").write_bytes(frame)
        print(name, codec.frame_info(frame))
