"""Partitioned FCFS (N×M/G/1) and central FCFS (M/G/N): no event loop needed."""
from __future__ import annotations

from heapq import heapreplace

import numpy as np

from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload

_NAN = float("nan")


def partitioned(w: Workload, cores: int) -> Trace:
    """Each request queues FCFS at its home core; cores never help each other.

    Per core this is Lindley's recursion in closed form: with C the cumulative
    service, request n starts at C[n-1] + max_{k<=n}(A[k] - C[k-1]), which
    numpy evaluates with one cumsum and one running maximum.
    """
    n = len(w)
    start = np.empty(n)
    order = np.argsort(w.home, kind="stable")  # stable: keeps arrival order within a core
    bounds = np.searchsorted(w.home[order], np.arange(cores + 1))
    for c in range(cores):
        idx = order[bounds[c] : bounds[c + 1]]
        if idx.size == 0:
            continue
        a = w.arrival_us[idx]
        before = np.empty(idx.size)  # work that arrived at this core before request n
        before[0] = 0.0
        np.cumsum(w.service_us[idx][:-1], out=before[1:])
        # max() with a guards against rounding putting a start before its arrival
        start[idx] = np.maximum(before + np.maximum.accumulate(a - before), a)
    return Trace(start, start + w.service_us, w.home.astype(np.int64), np.zeros(n, dtype=bool))


def central(w: Workload, cores: int) -> Trace:
    """One shared FCFS queue: request n starts at max(arrival, earliest free core).

    A heap of the cores' free times makes this O(R log N) with no events.
    """
    arr = w.arrival_us.tolist()
    svc = w.service_us.tolist()
    n = len(arr)
    start = [0.0] * n
    done = [_NAN] * n  # NaN until served, so a lost request shows
    core = [0] * n
    free = [(0.0, c) for c in range(cores)]  # already a heap
    for i in range(n):
        f, c = free[0]
        a = arr[i]
        s = a if a > f else f
        d = s + svc[i]
        start[i] = s
        done[i] = d
        core[i] = c
        heapreplace(free, (d, c))
    return Trace.from_lists(start, done, core, None)
