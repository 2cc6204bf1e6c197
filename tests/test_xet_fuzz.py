"""Runs the atheris Xet parser fuzz target (tests/fuzz/fuzz_xet.py) for a bounded time, seeded with
well-formed xorbs (every compression scheme, with and without hf_xet's footer) and shards."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

import xet_build

FUZZ = Path(__file__).resolve().parent / "fuzz" / "fuzz_xet.py"
SECONDS = 20

pytest.importorskip("atheris")


def _seeds(corpus: Path) -> None:
    floats = struct.pack("<300f", *[i / 7 for i in range(300)])
    chunks = [b"abc" * 50, floats, floats[:401]]
    for i, (schemes, footer) in enumerate([([0, 0, 0], False), ([1, 2, 2], True), ([2, 1, 0], True)]):
        name, body = xet_build.xorb(chunks, schemes, with_footer=footer)
        (corpus / f"xorb{i}").write_bytes(b"\x00" + body)
    name, _ = xet_build.xorb(chunks)
    shard = xet_build.shard([(b"".join(chunks), [(name, chunks, 0, 2), (name, chunks, 2, 3)])], [(name, chunks)])
    (corpus / "shard0").write_bytes(b"\x01" + shard)
    (corpus / "shard1").write_bytes(b"\x01" + xet_build.shard([]))


def test_xet_parsers_fuzz_bounded(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _seeds(corpus)
    run = subprocess.run([sys.executable, str(FUZZ), f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
                          "-max_len=16384", "-seed=12345", f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
