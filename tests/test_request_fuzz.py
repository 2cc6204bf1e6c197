"""Runs the atheris target for request parsers (tests/fuzz/fuzz_requests.py) for a bounded time, from
seeds of each kind: Range headers, NDJSON commit lines, repo paths, error messages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz" / "fuzz_requests.py"
SECONDS = 20

pytest.importorskip("atheris")


def test_request_parsers_fuzz_bounded(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    header = {"key": "header", "value": {"summary": "s", "parentCommit": "ab" * 20}}
    line = {"key": "file", "value": {"path": "a/b.txt", "content": "aGk=", "encoding": "base64"}}
    seeds = [b"\x00\x00\x00\x00\x00\x10\x00\x00bytes=0-99", b"\x00" + b"\x00" * 8 + b"bytes=-5",
             b"\x01" + "\n".join(json.dumps(x) for x in (header, line)).encode(),
             b"\x02\x02a/b\x03a/b/c", b"\x03caf\xc3\xa9\n"]
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    run = subprocess.run([sys.executable, str(FUZZ), f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
                          "-max_len=8192", "-seed=12345", f"-artifact_prefix={tmp_path}/", str(corpus)],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
