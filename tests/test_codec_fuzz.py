"""Runs the atheris decoder fuzz target (tests/fuzz/fuzz_codec.py) for a bounded time,
seeded with valid frames of every built-in codec and the golden frames."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weightvault import codec

FUZZ = Path(__file__).resolve().parent / "fuzz" / "fuzz_codec.py"
SECONDS = 30

pytest.importorskip("atheris")


def _seeds(corpus: Path) -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_normal(3000) * 0.05).astype(np.float32)
    bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)
    seeds = [
        codec.encode_frames(w, "F32")[0],
        codec.encode_frames(bf16, "BF16", codec="planes")[0],
        codec.encode_frames(bf16 ^ 1, "BF16", codec="xor", base=w, base_dtype="F32")[0],
        codec.encode_frames(np.arange(500), "I64")[0],
        codec.encode_frames(b"abc" * 100, None, codec="raw")[0],
    ]
    seeds += [p.read_bytes() for p in sorted((FUZZ.parent / "golden").glob("*.wvf"))]
    for i, frame in enumerate(seeds):
        # mode byte: atheris' ConsumeIntInRange(0, 2) reads one byte
        (corpus / f"frame{i}").write_bytes(b"\x00" + frame)
        (corpus / f"container{i}").write_bytes(b"\x02" + frame)


def test_decoder_fuzz_bounded(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _seeds(corpus)
    run = subprocess.run([sys.executable, str(FUZZ), f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
                          "-max_len=8192", "-seed=12345", f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
