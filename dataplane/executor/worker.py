"""The worker process: pinned to one core, it takes requests from the
per-core queues, runs the handler on a zero-copy view and answers through
its response ring."""
from __future__ import annotations

import gc
import importlib
import os
import signal
import traceback
from collections.abc import Callable
from typing import Any

from dataplane._ffi import ffi, lib
from dataplane.errors import DP_EMSGSIZE, DP_EPEERGONE, raise_for

Handler = Callable[[memoryview], Any]

_OK = lib.DP_STEAL_OK
_ERROR = lib.DP_STEAL_ERROR
_SEP = "\x00"


def resolve_handler(spec: str | Handler) -> Handler:
    """A callable, or the callable named by ``"package.module:function"``."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"handler must be a callable or a 'module:function' string, not {spec!r}")
    mod_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"handler {spec!r} is not callable")
    return obj


def encode_error(exc: BaseException) -> bytes:
    """type name, message and traceback, for HandlerError on the other side."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return _SEP.join((type(exc).__qualname__, str(exc), tb)).encode("utf-8", "replace")


def decode_error(payload: bytes) -> tuple[str, str, str]:
    parts = payload.decode("utf-8", "replace").split(_SEP, 2)
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def pin_to_core(index: int) -> int | None:
    """Pin this process to one of the CPUs it may run on, round-robin."""
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[index % len(cpus)]
    os.sched_setaffinity(0, {cpu})
    return cpu


def serve(queues: Any, ring: Any, handler: Handler, index: int) -> int:
    """The request loop; returns how many requests it served.  Ends when the
    dispatcher shuts the queues down (after draining) or dies."""
    s, r = queues.handle, ring._live()
    segment = queues.readonly_view
    item = ffi.new("dp_steal_item *")
    take, respond = lib.dp_steal_take, lib.dp_steal_respond
    served = 0
    while True:
        rc = take(s, index, -1, item)
        if rc < 0:
            if rc == DP_EPEERGONE:
                return served
            raise_for(rc, f"worker {index}: take", ffi.errno)
        off = item.offset
        view = segment[off : off + item.len]
        try:
            out = handler(view)
            if out is None:
                out = b""
            elif type(out) is not bytes:
                try:
                    out = ffi.from_buffer(out)
                except TypeError:
                    raise TypeError(f"handler returned {type(out).__name__}, not a bytes-like object") from None
            status = _OK
        except Exception as exc:  # the caller gets it; this worker keeps serving
            out, status = encode_error(exc), _ERROR
        try:
            view.release()
        except BufferError:
            pass  # the handler kept an export of it; the slot is recycled anyway
        rc = respond(s, r, status, out, len(out))
        if rc == DP_EMSGSIZE:
            err = ValueError(f"response of {len(out)} bytes exceeds max_response {ring.max_message - 16}")
            out = encode_error(err)
            rc = respond(s, r, _ERROR, out, len(out))
        if rc < 0:
            if rc == DP_EPEERGONE:
                return served
            raise_for(rc, f"worker {index}: respond", ffi.errno)
        served += 1


def worker_main(segment: str, ring_name: str, index: int, handler: str | Handler, pin: bool, spin_s: float) -> None:
    """Entry point of a worker process."""
    from dataplane.executor.queues import StealQueues
    from dataplane.ring import Ring

    # Ctrl-C reaches the whole process group: the dispatcher decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the dispatcher's heap: keep the collector off
    # it, or a full collection walks (and copy-on-write faults in) all of it.
    gc.freeze()
    if pin:
        pin_to_core(index)
    fn = resolve_handler(handler)
    queues = StealQueues.attach(segment)
    ring = Ring.attach(ring_name)
    queues.set_spin(spin_s)
    queues.register(index)
    try:
        serve(queues, ring, fn, index)
    finally:
        ring.close()
        queues.close()
