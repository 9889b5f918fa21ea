"""One shared FIFO: the no-fairness baseline, with the schedulers' interface."""
from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

from dataplane.control.errors import InvalidRequest, UnknownTenant, check_cost, check_weight
from dataplane.control.queues import BoundedQueue, ShedPolicy

_INF = math.inf


class FIFOScheduler:
    """First come, first served across all tenants, in one bounded queue.

    Weights are recorded (so the interface matches) but ignored: this is what
    DRR and WFQ are measured against.
    """

    FAIR = False

    def __init__(self, *, strict: bool = True, capacity: int = 4096,
                 policy: ShedPolicy | str = ShedPolicy.REJECT_NEW) -> None:
        self.strict = bool(strict)
        self._q = BoundedQueue(capacity, policy)
        self._weights: dict[Hashable, float] = {}
        self._counts: dict[Hashable, int] = {}
        self.active_weight = 0.0

    def add_tenant(self, tenant: Hashable, weight: float = 1.0, *, capacity: int | None = None,
                   policy: ShedPolicy | str | None = None) -> None:
        if tenant in self._weights:
            raise InvalidRequest(f"tenant {tenant!r} already added")
        self._weights[tenant] = check_weight(weight)
        self._counts[tenant] = 0

    def set_weight(self, tenant: Hashable, weight: float) -> None:
        self._check(tenant)
        self._weights[tenant] = check_weight(weight)

    def weight(self, tenant: Hashable) -> float:
        self._check(tenant)
        return self._weights[tenant]

    @property
    def tenants(self) -> list:
        return list(self._weights)

    def backlog(self, tenant: Hashable) -> int:
        self._check(tenant)
        return self._counts[tenant]

    def queue(self, tenant: Hashable) -> BoundedQueue:
        self._check(tenant)
        return self._q

    def _check(self, tenant: Hashable) -> None:
        if tenant not in self._weights:
            if self.strict:
                raise UnknownTenant(f"unknown tenant {tenant!r} (strict policy: add_tenant first)")
            self.add_tenant(tenant)

    def enqueue(self, item: Any, now: float = 0.0) -> tuple:
        c = item.cost
        try:
            ok = 0.0 <= c < _INF
        except TypeError:
            ok = False
        if not ok:
            check_cost(c)
        if item.tenant not in self._counts:
            self._check(item.tenant)
        dropped = self._q.push(item, now)
        counts = self._counts
        counts[item.tenant] += 1
        for d in dropped:
            counts[d.tenant] -= 1
        return dropped

    def dequeue(self) -> Any | None:
        q = self._q
        if not q:
            return None
        item = q.pop()
        self._counts[item.tenant] -= 1
        return item

    def refund(self, item: Any) -> None:
        """Nothing to give back: FIFO keeps no shares."""

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:
        return bool(self._q)
