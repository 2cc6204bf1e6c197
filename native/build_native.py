"""cffi (API mode) builder for weightvault's C library.

Every C file under native/src/ is compiled into one extension module,
``weightvault.codec._native``; the declarations Python may call are the
concatenation of native/cdef/*.h, each header owned by one C module.
SIMD kernels are compiled with per-function ``target`` attributes and chosen
at run time, so the module itself is built for baseline x86-64.
"""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in (HERE / "src").glob("*.c"))
CDEFS = "\n".join(p.read_text() for p in sorted((HERE / "cdef").glob("*.h")))

ffibuilder = FFI()
ffibuilder.cdef(CDEFS)
ffibuilder.set_source(
    "weightvault.codec._native",
    '#include "wv.h"\n',
    sources=SOURCES,
    include_dirs=[str((HERE / "src").relative_to(HERE.parent))],
    extra_compile_args=["-O3", "-std=c99", "-Wall", "-Wextra", "-fno-strict-aliasing"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
