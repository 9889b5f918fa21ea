"""The one place the compiled shim is imported."""
from __future__ import annotations

try:
    from dataplane._native import ffi, lib
except ImportError as exc:  # pragma: no cover - a build problem, not a runtime one
    raise ImportError(
        "dataplane's native shim is not built; run `make build` or `pip install .` "
        f"(cffi out-of-line module dataplane._native): {exc}"
    ) from exc

__all__ = ["ffi", "lib"]
