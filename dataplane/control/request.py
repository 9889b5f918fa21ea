"""The unit of work the control plane schedules."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class Request:
    """One request.

    ``cost`` is the scheduling charge (DRR/WFQ share work in these units; the
    benchmarks use 1 per request).  ``deadline`` is absolute, in the
    gateway clock's time base; None inherits the tenant's SLO at submit.
    ``klass`` keys the service-time estimate (None: the tenant's).  The
    gateway fills ``arrival``, ``est`` (estimated service seconds) and
    ``worker``; ``payload`` is the caller's.
    """

    __slots__ = ("tenant", "cost", "deadline", "klass", "payload", "arrival", "est", "upper", "worker", "started",
                 "handle")

    def __init__(
        self,
        tenant: Hashable,
        cost: float = 1.0,
        deadline: float | None = None,
        klass: Hashable | None = None,
        payload: Any = None,
        arrival: float | None = None,
    ) -> None:
        self.tenant = tenant
        self.cost = cost
        self.deadline = deadline
        self.klass = klass
        self.payload = payload
        self.arrival = arrival
        self.est = 0.0
        self.upper = 0.0
        self.worker: Hashable | None = None
        self.started = 0.0
        self.handle = -1  # its slot in a native gateway while queued or running

    def __repr__(self) -> str:
        return f"Request(tenant={self.tenant!r}, cost={self.cost!r}, deadline={self.deadline!r}, klass={self.klass!r})"
