"""The ckpt decoder under AddressSanitizer + UBSan: random tensors round-trip, and
truncated / bit-flipped payloads (in exact-size heap buffers, so any over-read is
caught) decode to an error or to something, never out of bounds.  Compiles a small
C driver against native/src/ckpt.c; skipped without gcc or the sanitizer runtimes."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "native" / "src"

DRIVER = r"""
#include "ckpt.h"
#include <stdio.h>
#include <stdlib.h>
static uint32_t rs = 12345;
static uint32_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 17; rs ^= rs << 5; return rs; }
int main(void) {
    const unsigned dts[3] = {2, 3, 4};
    size_t errs = 0, oks = 0;
    for (int it = 0; it < 600; it++) {
        unsigned dt = dts[it % 3], k = dt == 2 ? 4 : 2;
        size_t n = (size_t)(rnd() % 5000) * k;
        uint8_t *src = malloc(n + 1), *base = malloc(n + 1), *dst = malloc(n + 1);
        for (size_t i = 0; i < n; i++) { src[i] = (uint8_t)rnd(); base[i] = (uint8_t)rnd(); }
        /* make src close to base for some iterations */
        if (it & 1) for (size_t i = 0; i < n; i++) src[i] = (i % k == 0) ? (uint8_t)rnd() : base[i];
        size_t cap = wv_ckpt_bound(n);
        uint8_t *pay = malloc(cap);
        unsigned modes[4] = {0, 1, 2, 6};
        size_t r = wv_ckpt_encode(pay, cap, src, base, n, dt, dt, modes[it % 4]);
        if (wv_isError(r)) { free(pay); free(src); free(base); free(dst); continue; }
        size_t d = wv_ckpt_decode(dst, n, pay, r, base, dt, dt);
        if (d != n || memcmp(dst, src, n)) { printf("roundtrip fail it=%d\n", it); return 1; }
        /* corrupt: exact-size heap copies so ASan sees any overread */
        for (int c = 0; c < 20; c++) {
            size_t len = r ? rnd() % (r + 1) : 0;
            uint8_t *bad = malloc(len ? len : 1);
            memcpy(bad, pay, len);
            for (int f = 0; f < 3 && len; f++) bad[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            if (len && (rnd() & 3) == 0) bad[0] = (uint8_t)(rnd() % 32);
            size_t q = wv_ckpt_decode(dst, n, bad, len, base, dt, dt);
            if (wv_isError(q)) errs++; else oks++;
            free(bad);
        }
        free(pay); free(src); free(base); free(dst);
    }
    printf("ok; corrupt payloads: %zu errors, %zu decoded\n", errs, oks);
    return 0;
}
"""


@pytest.mark.slow   # ~15 s of CPU (the sanitized build of the specialised loops is most of it)
def test_ckpt_decoder_under_asan_ubsan(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    (tmp_path / "fuzz.c").write_text(DRIVER)
    exe = tmp_path / "fuzz"
    build = subprocess.run(
        ["gcc", "-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
         f"-I{SRC}", str(tmp_path / "fuzz.c"), *(str(SRC / f) for f in ("ckpt.c", "cast.c", "errors.c", "dtype.c")),
         "-o", str(exe)], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"sanitizer build unavailable: {build.stderr[-300:]}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok;"), run.stdout
