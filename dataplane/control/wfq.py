"""Weighted fair queuing by virtual finish times (self-clocked, SCFQ).

A request of cost ``c`` from a tenant of weight ``w`` gets the finish tag
``F = max(V, F_prev) + c / w``, where ``F_prev`` is the tag of the tenant's
previous request and ``V``, the system virtual time, is the tag of the
request last served (Golestani's self-clocked approximation of GPS, which
needs no fluid simulation).  The smallest tag is served first; ties go to
the tenant added first.

Only each tenant's head request is tagged, when it reaches the head, and
the heap holds one entry per backlogged tenant, so ``dequeue`` is
O(log tenants).  With fixed weights this gives exactly the tags above
(a backlogged tenant's ``F_prev`` ≥ ``V``); a weight change applies to the
tenant's requests tagged after it.  When a queue evicts its head (drop-oldest,
drop-expired) the next request inherits the evicted one's tag.

Compared with DRR: WFQ interleaves tenants at the granularity of one
request (lower latency for a light tenant) at a log-time heap cost; DRR is
O(1) but serves a tenant's quantum in a burst.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import Any

from dataplane.control._flows import Flow, TenantFlows
from dataplane.control.errors import check_cost, check_weight
from dataplane.control.queues import ShedPolicy

_INF = math.inf
_NONE: tuple = ()


class WFQScheduler(TenantFlows):
    """Self-clocked WFQ over per-tenant bounded queues; same interface as DRRScheduler."""

    def __init__(
        self,
        *,
        strict: bool = True,
        default_weight: float = 1.0,
        capacity: int = 1024,
        policy: ShedPolicy | str = ShedPolicy.REJECT_NEW,
    ) -> None:
        super().__init__(strict=strict, default_weight=default_weight, capacity=capacity, policy=policy)
        self._heap: list[tuple[float, int, Flow]] = []
        self.vtime = 0.0          # V: the finish tag of the request served last
        self._undo: tuple = (None, 0.0)  # (last dequeued item, V before it), for refund()

    # -- tenants ---------------------------------------------------------
    def remove_tenant(self, tenant: Hashable) -> list:
        """Forget ``tenant``; return its queued items."""
        f = self._flow(tenant)
        del self._flows[tenant]
        items = list(f)
        if f.active:
            self._heap = [e for e in self._heap if e[2] is not f]
            heapq.heapify(self._heap)
            self.active_weight -= f.weight
        self._len -= len(items)
        return items

    def set_weight(self, tenant: Hashable, weight: float) -> None:
        """Change a weight at run time; requests tagged from now on use it."""
        f = self._flow(tenant)
        w = check_weight(weight)
        if f.active:
            self.active_weight += w - f.weight
        f.weight = w

    # -- data path -------------------------------------------------------
    def enqueue(self, item: Any, now: float = 0.0) -> tuple:
        """Queue ``item``; return items evicted to make room (QueueFull to refuse)."""
        c = item.cost
        try:
            ok = 0.0 <= c < _INF
        except TypeError:
            ok = False
        if not ok:
            check_cost(c)
        f = self._flows.get(item.tenant)
        if f is None:
            f = self._flow(item.tenant)
        q = f._q
        if len(q) < f.capacity:
            q.append(item)
            self._len += 1
            dropped = _NONE
        else:
            n = len(q)
            dropped = f._push_full(item, now)
            self._len += len(f._q) - n
        if not f.active:
            f.active = True
            v = self.vtime
            fin = (f.finish if f.finish > v else v) + c / f.weight
            f.finish = fin
            heapq.heappush(self._heap, (fin, f.index, f))
            self.active_weight += f.weight
        return dropped

    def dequeue(self) -> Any | None:
        """The queued item with the smallest finish tag, or None."""
        heap = self._heap
        if not heap:
            return None
        fin, idx, f = heap[0]
        q = f._q
        item = q.popleft()
        self._len -= 1
        self._undo = (item, self.vtime)
        self.vtime = fin
        if q:
            # The new head's tag: max(V, F_prev) + c/w, and here V == F_prev.
            fin += q[0].cost / f.weight
            f.finish = fin
            heapq.heapreplace(heap, (fin, idx, f))
        else:
            heapq.heappop(heap)
            f.active = False
            self.active_weight -= f.weight
        return item

    def refund(self, item: Any) -> None:
        """Give back the charge for ``item``, just dequeued but not served
        (the gateway shed it): its tenant's later requests are tagged as if it
        had never been queued.  O(tenants); runs only for shed requests."""
        last, v = self._undo
        if item is last:
            self.vtime = v
            self._undo = (None, 0.0)
        f = self._flows.get(item.tenant)
        if f is None or not f.active:
            return
        back = item.cost / f.weight
        f.finish -= back
        heap = self._heap
        for k, (fin, idx, g) in enumerate(heap):
            if g is f:
                heap[k] = (fin - back, idx, f)
                heapq.heapify(heap)
                break
