"""The C library under AddressSanitizer + UBSan: round trips through every C codec,
dtype and rANS kernel, then mutated frames through the decoder (tests/fuzz/fuzz_decode.c)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def test_decoder_under_asan_and_ubsan(tmp_path: Path) -> None:
    exe = tmp_path / "fuzz_decode"
    sources = sorted(str(p) for p in (ROOT / "native" / "src").glob("*.c"))
    subprocess.run(["gcc", "-O1", "-g", "-std=gnu99", "-DWV_STANDALONE", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-fno-strict-aliasing", "-Wall", "-Wextra",
                    "-I", str(ROOT / "native" / "src"), *sources, str(ROOT / "tests" / "fuzz" / "fuzz_decode.c"),
                    "-lm", "-o", str(exe)], check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe), "150000"], capture_output=True, text=True, timeout=300,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                              "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok:"), run.stdout
