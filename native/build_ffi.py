"""Build the dataplane C shim with cffi (out-of-line API mode).

Every ``native/<module>.h`` is a public header written so cffi's cdef can
parse it (plain declarations, no includes or guards); every
``native/<module>.c`` is compiled into the one extension ``dataplane._native``.
Adding a module means adding that pair of files, nothing here.

``native/fast/`` holds the calls that never sleep (``stage.h``).  They are
built into a second extension, ``dataplane._native_fast``, whose wrappers
keep the GIL: cffi releases and re-takes it around every call, which costs
about 100 ns here, more than the ring operation itself.  That module shares
the main one's types (``ffi.include``) and links its own copy of the shim.
"""
from __future__ import annotations

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
HEADERS = sorted(HERE.glob("*.h"))
SOURCES = sorted(HERE.glob("*.c")) + sorted(HERE.glob("internal/*.c"))  # internal: no cdef
FAST_HEADERS = sorted(HERE.glob("fast/*.h"))
FAST_SOURCES = sorted(HERE.glob("fast/*.c"))

CFLAGS = ["-O2", "-std=gnu11", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]
PREAMBLE = "#include <stdint.h>\n#include <stddef.h>\n"


def _rel(paths: list[pathlib.Path]) -> list[str]:
    return [str(p.relative_to(HERE.parent)) for p in paths]


def _includes(headers: list[pathlib.Path]) -> str:
    return "\n".join(f'#include "{h.relative_to(HERE)}"' for h in headers)


ffibuilder = FFI()
ffibuilder.cdef("\n".join(h.read_text() for h in HEADERS))
ffibuilder.set_source(
    "dataplane._native",
    PREAMBLE + _includes(HEADERS),
    sources=_rel(SOURCES),
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=CFLAGS,
    libraries=["rt"],
)

# The wrappers cffi generates bracket each call with these macros and with
# errno save/restore; the fast calls make no system call whose errno matters.
_KEEP_GIL = """
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
#undef _cffi_restore_errno
#undef _cffi_save_errno
#define _cffi_restore_errno() ((void)0)
#define _cffi_save_errno() ((void)0)
"""

fastbuilder = FFI()
fastbuilder.include(ffibuilder)
fastbuilder.cdef("\n".join(h.read_text() for h in FAST_HEADERS))
fastbuilder.set_source(
    "dataplane._native_fast",
    _KEEP_GIL + PREAMBLE + _includes(HEADERS + FAST_HEADERS),
    sources=_rel(SOURCES + FAST_SOURCES),
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=CFLAGS,
    libraries=["rt"],
)

# ``native/verbs/`` is the RDMA data path (rdma_path.h): built only where
# libibverbs' header exists.  ibv_post_send and ibv_poll_cq are inline
# functions of that header calling through the provider's function table, so
# nothing is linked: the provider is the one pyverbs already loaded.
VERBS_HEADER = pathlib.Path("/usr/include/infiniband/verbs.h")
VERBS_HEADERS = sorted(HERE.glob("verbs/*.h"))
VERBS_SOURCES = sorted(HERE.glob("verbs/*.c"))


def have_verbs() -> bool:
    return VERBS_HEADER.exists()


verbsbuilder = FFI()
verbsbuilder.include(fastbuilder)
verbsbuilder.cdef("\n".join(h.read_text() for h in VERBS_HEADERS))
verbsbuilder.set_source(
    "dataplane._native_verbs",
    _KEEP_GIL + PREAMBLE + _includes(HEADERS + FAST_HEADERS + VERBS_HEADERS),
    sources=_rel(SOURCES + FAST_SOURCES + VERBS_SOURCES),
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    extra_compile_args=CFLAGS,
    libraries=["rt"],
)

if __name__ == "__main__":
    tmp = str(HERE.parent / "build" / "cffi")
    for b in (ffibuilder, fastbuilder) + ((verbsbuilder,) if have_verbs() else ()):
        b.compile(tmpdir=tmp, verbose=False)
