"""Per-core queues with work stealing (ZygOS semantics)."""
from __future__ import annotations

from collections import deque
from heapq import heappop, heappush, heapreplace

from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload

_INF = float("inf")
_NAN = float("nan")


def stealing(w: Workload, cores: int, steal_cost_us: float) -> Trace:
    """A request joins its home core's FCFS queue.  A core that is free takes
    the head of its own queue, else steals the oldest request queued anywhere,
    else idles; an arrival whose home core is busy is stolen at once by an
    idle core if there is one.  A stolen request costs ``steal_cost_us`` more.

    One event loop: arrivals come in order from the workload, completions from
    a heap of (time, core) of the busy cores; completions at the same instant
    as an arrival go first, so a freed core can take that arrival.
    """
    arr = w.arrival_us.tolist()
    svc = w.service_us.tolist()
    home = w.home.tolist()
    n = len(arr)
    cost = float(steal_cost_us)
    start = [0.0] * n
    done = [_NAN] * n  # NaN until served, so a lost request shows
    core = [0] * n
    stolen = bytearray(n)
    queues = [deque() for _ in range(cores)]
    # Every queued request in arrival order; entries a core took from its own
    # queue stay behind, marked in `taken`, and are skipped when stealing.  So
    # the oldest queued request is found in amortised O(1), not O(cores).
    oldest: deque[int] = deque()
    taken = bytearray(n)
    queued = 0
    idle = set(range(cores))
    busy: list[tuple[float, int]] = []
    i = 0
    while True:
        t = arr[i] if i < n else _INF
        while busy and busy[0][0] <= t:
            tf, c = busy[0]
            q = queues[c]
            if q:
                j = q.popleft()
                taken[j] = 1
                queued -= 1
                d = tf + svc[j]
            elif queued:
                j = oldest.popleft()
                while taken[j]:
                    j = oldest.popleft()
                queues[home[j]].popleft()  # the oldest queued request heads its queue
                taken[j] = 1
                queued -= 1
                stolen[j] = 1
                d = tf + svc[j] + cost
            else:
                heappop(busy)
                idle.add(c)
                continue
            start[j] = tf
            done[j] = d
            core[j] = c
            heapreplace(busy, (d, c))
        if i == n:
            break
        h = home[i]
        if h in idle:
            idle.remove(h)
            d = t + svc[i]
            start[i] = t
            done[i] = d
            core[i] = h
            heappush(busy, (d, h))
        elif idle:
            c = idle.pop()
            d = t + svc[i] + cost
            start[i] = t
            done[i] = d
            core[i] = c
            stolen[i] = 1
            heappush(busy, (d, c))
        else:
            queues[h].append(i)
            oldest.append(i)
            queued += 1
        i += 1
    return Trace.from_lists(start, done, core, stolen)
