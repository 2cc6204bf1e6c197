"""cffi (API mode) builder for weightvault's C library.

Every C file under native/src/ is compiled into one extension module,
``weightvault.codec._native``.  The declarations Python may call are derived from
the public header native/src/wv.h, not copied by hand: it is run through the C
preprocessor (with WV_CDEF defined, which hides struct bodies Python must not see,
and empty stand-ins for the standard headers, whose types cffi knows), static inline
helpers are dropped, and every integer macro WV_* of the headers is declared as
``#define NAME ...`` so cffi takes its value from the compiler.
SIMD kernels are compiled with per-function ``target`` attributes and chosen
at run time, so the module itself is built for baseline x86-64.
"""
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in SRC.glob("*.c"))
_MACRO = re.compile(r"^#define[ \t]+(WV_[A-Z0-9_]+)[ \t]+\S", re.M)


def _drop_static_functions(text: str) -> str:
    """The preprocessed header without its ``static`` (inline) function definitions."""
    out, i = [], 0
    for m in re.finditer(r"^static\b[^;{]*\{", text, re.M):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 0, m.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        i = j
    out.append(text[i:])
    return "".join(out)


def public_cdefs() -> str:
    cc = shlex.split(os.environ.get("CC", "cc"))
    with tempfile.TemporaryDirectory() as stubs:
        for name in ("stddef.h", "stdint.h", "string.h"):
            Path(stubs, name).write_text("")
        text = subprocess.run([*cc, "-E", "-P", "-nostdinc", "-DWV_CDEF", "-I", stubs, "-I", str(SRC),
                               str(SRC / "wv.h")], check=True, capture_output=True, text=True).stdout
    macros = sorted({m.group(1) for h in SRC.glob("*.h") for m in _MACRO.finditer(h.read_text())})
    return _drop_static_functions(text) + "".join(f"#define {name} ...\n" for name in macros)


ffibuilder = FFI()
ffibuilder.cdef(public_cdefs())
ffibuilder.set_source(
    "weightvault.codec._native",
    '#include "wv.h"\n',
    sources=SOURCES,
    include_dirs=[str(SRC.relative_to(HERE.parent))],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra", "-fno-strict-aliasing"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
