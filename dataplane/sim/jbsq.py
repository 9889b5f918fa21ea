"""Join-bounded-shortest-queue: a central queue feeding short per-core queues."""
from __future__ import annotations

from collections import deque
from heapq import heappop, heappush, heapreplace

from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload

_INF = float("inf")
_NAN = float("nan")


def jbsq(w: Workload, cores: int, depth: int) -> Trace:
    """A dispatcher holds arrivals in one FCFS queue and pushes a request to
    the core with the fewest outstanding (queued + in service) as long as that
    core has fewer than ``depth``; each core serves its own queue FCFS.
    depth=1 is central FCFS; a larger depth hides the dispatch round trip in
    a real system but lets a request wait behind a long one while another core
    idles.  The dispatcher itself is modelled as free and instantaneous.
    """
    arr = w.arrival_us.tolist()
    svc = w.service_us.tolist()
    n = len(arr)
    start = [0.0] * n
    done = [_NAN] * n  # NaN until served, so a lost request shows
    core = [0] * n
    local = [deque() for _ in range(cores)]  # pushed to the core, not yet started
    outstanding = [0] * cores
    # by_count[k]: cores with exactly k < depth outstanding, so the shortest
    # non-full queue is found in O(depth) rather than O(cores).
    by_count = [set() for _ in range(depth)]
    by_count[0].update(range(cores))
    central: deque[int] = deque()  # non-empty only while every core is full
    busy: list[tuple[float, int]] = []
    i = 0
    while True:
        t = arr[i] if i < n else _INF
        while busy and busy[0][0] <= t:
            tf, c = busy[0]
            if central:
                local[c].append(central.popleft())  # refills c to depth at once
            else:
                m = outstanding[c] - 1
                outstanding[c] = m
                if m + 1 < depth:
                    by_count[m + 1].remove(c)
                by_count[m].add(c)
            q = local[c]
            if q:
                j = q.popleft()
                d = tf + svc[j]
                start[j] = tf
                done[j] = d
                core[j] = c
                heapreplace(busy, (d, c))
            else:
                heappop(busy)
        if i == n:
            break
        for k in range(depth):
            free = by_count[k]
            if free:
                c = free.pop()
                outstanding[c] = k + 1
                if k + 1 < depth:
                    by_count[k + 1].add(c)
                if k == 0:
                    d = t + svc[i]
                    start[i] = t
                    done[i] = d
                    core[i] = c
                    heappush(busy, (d, c))
                else:
                    local[c].append(i)
                break
        else:
            central.append(i)
        i += 1
    return Trace.from_lists(start, done, core, None)
