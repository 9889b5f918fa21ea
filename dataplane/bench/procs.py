"""What every two-process benchmark needs: pinning each end to its own CPU,
starting and reaping the peer, and the timed round-trip loop."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

CTX = mp.get_context("fork")

# Taken once, at import: after the parent pins itself, a forked child
# inherits that one CPU, and two busy-pollers sharing a core wait a
# scheduler tick per hop.
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin(index: int) -> None:
    """Run this process on the ``index``-th CPU it started with (the two ends
    on two cores: the figures then measure the transport, not the scheduler)."""
    if len(_CPUS) > 1:
        os.sched_setaffinity(0, {_CPUS[index % len(_CPUS)]})


def unpin() -> None:
    """Back to every CPU this process started with."""
    if _CPUS:
        os.sched_setaffinity(0, _CPUS)


def child(target: Callable[..., None], *args: Any) -> mp.Process:
    """Start ``target(*args)`` in a forked daemon process."""
    p = CTX.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def finish(p: mp.Process, timeout: float = 60) -> None:
    """Reap a benchmark peer; a hung or failed peer is an error, not a figure."""
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join(5)
        raise RuntimeError("benchmark peer did not finish")
    if p.exitcode:
        raise RuntimeError(f"benchmark peer failed (exit code {p.exitcode})")


def round_trips(send: Callable[[bytes], Any], recv: Callable[[], Any], msg: bytes, iters: int, warmup: int) -> list[int]:
    """``warmup`` untimed, then ``iters`` timed send/recv round trips (ns)."""
    for _ in range(warmup):
        send(msg)
        recv()
    now = time.perf_counter_ns
    out = [0] * iters
    for i in range(iters):
        t0 = now()
        send(msg)
        recv()
        out[i] = now() - t0
    return out
