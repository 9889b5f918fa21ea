"""The one place the compiled shim is imported.

``ffi``/``lib`` is the shim; ``fast_ffi``/``fast_lib`` is its non-sleeping
stage calls, built so that calling them keeps the GIL (native/build_ffi.py).
"""
from __future__ import annotations

try:
    from dataplane._native import ffi, lib
    from dataplane._native_fast import ffi as fast_ffi, lib as fast_lib
except ImportError as exc:  # pragma: no cover - a build problem, not a runtime one
    raise ImportError(
        "dataplane's native shim is not built; run `make build` or `pip install .` "
        f"(cffi out-of-line module dataplane._native): {exc}"
    ) from exc

__all__ = ["ffi", "lib", "fast_ffi", "fast_lib"]
