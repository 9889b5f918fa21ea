"""The per-message RDMA data path in C (native/verbs/rdma_path.h), over the
QP and CQ that pyverbs created.

pyverbs exposes no ``ibv_qp *`` or ``ibv_cq *`` (docs/rdma-c-path.md): it
keeps them as the first C field of its Cython objects, after the 40-byte
``PyverbsCM`` head.  We read that word, but only after checking that the
object layout is the one we know (type, size, and a blank object's field
pattern), and then that the pointer leads to a live verbs object whose
fields match what pyverbs reports (read with ``process_vm_readv``, so a
wrong pointer is an error, never a crash).  If any check fails the channel
refuses to start, naming the pyverbs version.
"""
from __future__ import annotations

import ctypes
from typing import Any

from dataplane.errors import DataplaneError

try:
    from dataplane._native_verbs import ffi as vffi, lib as vlib
except ImportError as exc:  # built only where libibverbs-dev's header exists
    vffi = vlib = None
    _IMPORT_ERROR: str | None = str(exc)
else:
    _IMPORT_ERROR = None

_PTR_OFFSET = 40  # PyverbsObject (32 bytes) + PyverbsCM's vtable pointer
_BASICSIZE = {"QP": 128, "CQ": 96}


def available() -> str | None:
    """None when the C data path is built, else why not."""
    if _IMPORT_ERROR is None:
        return None
    return ("rdma:// needs its C data path (dataplane._native_verbs), built where libibverbs' header "
            "exists: install libibverbs-dev (make system-deps) and rebuild (make build). "
            f"Import failed: {_IMPORT_ERROR}")


def _word(addr: int) -> int:
    return ctypes.c_uint64.from_address(addr).value


def _pointer_of(obj: Any, kind: str) -> int:
    cls = type(obj)
    if cls.__name__ != kind or cls.__basicsize__ != _BASICSIZE[kind]:
        raise DataplaneError(f"unexpected pyverbs {kind} layout ({cls.__module__}.{cls.__name__}, "
                             f"{cls.__basicsize__} bytes): this pyverbs is not the one the RDMA data path knows")
    blank = cls.__new__(cls)
    try:
        base = id(blank)
        none = id(None)
        fields = range(_PTR_OFFSET + 8 + (8 if kind == "QP" else 0), cls.__basicsize__, 8)
        if _word(base + _PTR_OFFSET) != 0 or any(_word(base + off) != none for off in fields):
            raise DataplaneError(f"pyverbs {kind} object layout differs from the one the RDMA data path knows")
    finally:
        del blank
    ptr = _word(id(obj) + _PTR_OFFSET)
    if ptr == 0 or ptr % 8:
        raise DataplaneError(f"pyverbs {kind} has no live verbs object (closed?)")
    return ptr


def verbs_pointers(qp: Any, cq: Any) -> tuple[int, int]:
    """The ``ibv_qp *`` and ``ibv_cq *`` behind pyverbs' ``qp`` and ``cq``,
    checked against the live objects."""
    why = available()
    if why:
        raise DataplaneError(why)
    q, c = _pointer_of(qp, "QP"), _pointer_of(cq, "CQ")
    if vlib.dp_rdma_check(q, c, qp.qp_num, cq.cqe) != 0:
        raise DataplaneError("the verbs objects behind pyverbs' QP and CQ do not match what pyverbs reports; "
                             "refusing to drive them from C")
    return q, c


class DataPath:
    """One channel's ``dp_rdma`` and the memory it points into.  Fields are
    set by the channel; calls go straight to ``vlib`` on :attr:`c`."""

    def __init__(self, peer_rq: int, rq_depth: int) -> None:
        self.c = vffi.new("dp_rdma *")
        self._imm_ends = vffi.new("uint64_t[]", peer_rq)
        self._rx_imm_ends = vffi.new("uint64_t[]", rq_depth)
        self.c.imm_ends, self.c.rx_imm_ends = self._imm_ends, self._rx_imm_ends
        self.c.peer_rq, self.c.rq_depth = peer_rq, rq_depth
        self._keep: list[Any] = []

    def keep(self, *objs: Any) -> None:
        """Keep objects whose memory the struct points into alive."""
        self._keep.extend(objs)

    def word(self, addr: int) -> Any:
        return vffi.cast("uint64_t *", addr)

    def stop(self) -> None:
        """Every later call returns DP_ESTATE (before the QP and CQ go)."""
        self.c.qp = vffi.NULL
        self.c.cq = vffi.NULL
