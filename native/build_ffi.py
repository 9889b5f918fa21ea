"""Build the dataplane C shim with cffi (out-of-line API mode).

Every ``native/<module>.h`` is a public header written so cffi's cdef can
parse it (plain declarations, no includes or guards); every
``native/<module>.c`` is compiled into the one extension ``dataplane._native``.
Adding a module means adding that pair of files, nothing here.
"""
from __future__ import annotations

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
HEADERS = sorted(HERE.glob("*.h"))
SOURCES = sorted(HERE.glob("*.c")) + sorted(HERE.glob("internal/*.c"))  # internal: no cdef

ffibuilder = FFI()
ffibuilder.cdef("\n".join(h.read_text() for h in HEADERS))
ffibuilder.set_source(
    "dataplane._native",
    "#include <stdint.h>\n#include <stddef.h>\n"
    + "\n".join(f'#include "{h.name}"' for h in HEADERS),
    sources=[str(s.relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
    libraries=["rt"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent / "build" / "cffi"), verbose=False)
