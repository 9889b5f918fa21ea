"""A discrete-event driver: the gateway serving N virtual servers in virtual time.

It feeds a :class:`Gateway` (built on a :class:`VirtualClock`) an arrival
list, runs each dispatched request on its worker for the request's service
time, and reports completions back, moving the clock from event to event.
Same seed, same arrivals, same result: the run is deterministic.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Sequence

from dataplane.clock import VirtualClock
from dataplane.control.errors import Rejected
from dataplane.control.gateway import Gateway
from dataplane.control.recorder import Recorder
from dataplane.control.request import Request
from dataplane.control.workload import Arrival

# (request, worker, now) -> (service seconds, succeeded)
ServiceFn = Callable[[Request, Hashable, float], "tuple[float, bool]"]


def simulate(
    gateway: Gateway,
    clock: VirtualClock,
    schedule: Sequence[Arrival],
    *,
    recorder: Recorder | None = None,
    service_time: ServiceFn | None = None,
    until: float = math.inf,
    on_complete: Callable[[Request, float], None] | None = None,
) -> Recorder:
    """Run ``schedule`` (times relative to the clock's reading at the call)
    through ``gateway``; return what happened.

    ``service_time(req, worker, now)`` says how long the request really takes
    on that worker (default: the arrival's own service time), so a scenario
    can make a worker slow or failing.  Queued work is drained after the last
    arrival unless ``until`` (relative) stops the run earlier.
    """
    rec = recorder if recorder is not None else Recorder()
    origin = clock.now()
    end = origin + until
    events: list = []  # (t, seq, req or None, service, ok); None: a timer tick
    seq = 0
    # A worker runs one request at a time: with slots > 1 a dispatched
    # request starts when the ones before it on that worker have finished.
    free_at: dict = {}

    user_drop = gateway.on_drop

    def dropped(req: Request, reason) -> None:
        if rec.counts(req.payload[1]):
            rec.shed(req.tenant)
        if user_drop is not None:
            user_drop(req, reason)

    gateway.on_drop = dropped

    def fill(now: float) -> None:
        nonlocal seq
        while True:
            r = gateway.dispatch()
            if r is None:
                break
            if service_time is None:
                s, ok = r.payload[0], True
            else:
                s, ok = service_time(r, r.worker, now)
            start = free_at.get(r.worker, now)
            if start < now:
                start = now
            done = free_at[r.worker] = start + s
            heapq.heappush(events, (done, seq, r, s, ok))
            seq += 1
        if gateway.pending and not events:
            # Nothing will complete to wake us: wake when a breaker may probe.
            wake = min((gateway.breaker(w).reopen_at for w in gateway.workers
                        if gateway.breaker(w) is not None and gateway.breaker(w).reopen_at > now), default=None)
            if wake is not None:
                heapq.heappush(events, (wake, seq, None, 0.0, True))
                seq += 1

    try:
        i, n = 0, len(schedule)
        while i < n or events:
            ta = origin + schedule[i].t if i < n else math.inf
            if events and events[0][0] <= ta:
                t, _, r, s, ok = heapq.heappop(events)
                if t > end:
                    break
                clock.set(t)
                if r is not None:
                    gateway.complete(r, s, ok=ok)
                    if ok:
                        rec.served(r.tenant, t - origin, r.cost)
                    if rec.counts(r.payload[1]):
                        rec.completed(r.tenant, t - r.arrival, t <= r.deadline, r.cost, ok)
                    if on_complete is not None:
                        on_complete(r, t)
            else:
                if ta > end:
                    break
                a = schedule[i]
                i += 1
                clock.set(ta)
                req = Request(a.tenant, a.cost, None if a.deadline is None else ta + a.deadline,
                              payload=(a.service, a.t), arrival=ta)
                counted = rec.counts(a.t)
                if counted:
                    rec.offered(a.tenant)
                try:
                    gateway.submit(req)
                except Rejected as exc:
                    if counted:
                        rec.rejected(a.tenant, exc.reason)
                else:
                    if counted:
                        rec.admitted(a.tenant)
            fill(clock.now())
    finally:
        gateway.on_drop = user_drop  # the caller's callback again
    return rec
