"""Deficit Round Robin (Shreedhar & Varghese, 1995) with per-tenant weights.

Each backlogged tenant waits in a round-robin list.  When it reaches the
front its deficit grows by its quantum, ``quantum * weight``; it is served
while its head request's cost fits in the deficit, then goes to the back.  A
tenant whose queue empties leaves the list and forfeits its deficit, so idle
tenants bank no credit.  With every tenant's quantum ≥ the largest cost,
each turn serves at least one request and ``dequeue`` is O(1); smaller
quanta stay correct but can pass a tenant over for a few turns.

Fairness (tested in tests/test_control_drr.py): over any interval in which
tenants *i* and *j* stay backlogged, their services per unit weight differ by
less than ``quantum + max_cost / w_i + max_cost / w_j`` (``S_i / w_i`` vs
``S_j / w_j``), i.e. a tenant's service stays within one quantum plus one
largest request (its own, and one of the other's) of its weighted share.

``sparse=True`` (the default) adds the sparse-tenant rule of DRR++ and
FQ-CoDel (RFC 8290): a tenant that becomes backlogged after being idle joins
a *new* list served before the round-robin (*old*) list, for at most one
quantum, then continues in the old list.  A light tenant's request is then
served by the next free worker instead of waiting behind a turn of every
heavy tenant.  A tenant that empties while new is parked at the tail of the
old list until its turn comes round (dropped then if still empty), so a
tenant cannot stay "new" by sending one request at a time.  Continuously
backlogged tenants are all in the old list, so the bound above holds for
them unchanged.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from typing import Any

from dataplane.control._flows import Flow, TenantFlows
from dataplane.control.errors import check_cost, check_positive, check_weight
from dataplane.control.queues import ShedPolicy

_INF = math.inf
_NONE: tuple = ()


class DRRScheduler(TenantFlows):
    """Weighted DRR over per-tenant bounded queues.

    Items need ``tenant`` and ``cost`` (finite, ≥ 0) attributes, and
    ``deadline`` if a queue sheds expired items.  ``strict``: an unknown
    tenant is an error (:class:`UnknownTenant`); otherwise it is added with
    ``default_weight``.  ``sparse``: serve newly backlogged tenants first (see
    the module docstring).
    """

    def __init__(
        self,
        quantum: float = 1.0,
        *,
        sparse: bool = True,
        strict: bool = True,
        default_weight: float = 1.0,
        capacity: int = 1024,
        policy: ShedPolicy | str = ShedPolicy.REJECT_NEW,
    ) -> None:
        self.quantum = check_positive("quantum", quantum)
        self.sparse = bool(sparse)
        super().__init__(strict=strict, default_weight=default_weight, capacity=capacity, policy=policy)
        # Invariant: the head of the old list has been given this turn's
        # quantum (a flow gets it on becoming the head); new flows get theirs
        # on joining the new list.
        self._old: deque[Flow] = deque()
        self._new: deque[Flow] = deque()

    # -- tenants ---------------------------------------------------------
    def _quantum(self, weight: float) -> float:
        return self.quantum * weight

    def remove_tenant(self, tenant: Hashable) -> list:
        """Forget ``tenant``; return its queued items (the caller owns them now)."""
        f = self._flow(tenant)
        del self._flows[tenant]
        items = list(f)
        if items:
            self.active_weight -= f.weight
        if f.active:
            old = self._old
            if f in self._new:
                self._new.remove(f)
            else:
                was_head = old[0] is f
                old.remove(f)
                if was_head and old:
                    old[0].deficit += old[0].quantum
        self._len -= len(items)
        return items

    def set_weight(self, tenant: Hashable, weight: float) -> None:
        """Change a weight at run time; it applies from the tenant's next turn."""
        f = self._flow(tenant)
        w = check_weight(weight)
        if f._q:
            self.active_weight += w - f.weight
        f.weight, f.quantum = w, self.quantum * w

    # -- data path -------------------------------------------------------
    def enqueue(self, item: Any, now: float = 0.0) -> tuple:
        """Queue ``item`` behind its tenant's; return items evicted to make room.

        Raises QueueFull when the tenant's queue refuses it (backpressure).
        """
        c = item.cost
        try:
            ok = 0.0 <= c < _INF  # False for NaN
        except TypeError:
            ok = False
        if not ok:
            check_cost(c)  # raises InvalidRequest with the reason
        f = self._flows.get(item.tenant)
        if f is None:
            f = self._flow(item.tenant)
        q = f._q
        n = len(q)
        if n < f.capacity:
            q.append(item)
            self._len += 1
            dropped = _NONE
            if not n:
                self.active_weight += f.weight
        else:
            dropped = f._push_full(item, now)
            self._len += len(f._q) - n
        if not f.active:
            f.active = True
            if self.sparse:
                f.deficit = f.quantum
                self._new.append(f)
            else:
                old = self._old
                if not old:  # the head at once: its turn starts now
                    f.deficit = f.quantum
                old.append(f)
        return dropped

    def dequeue(self) -> Any | None:
        """The next item in DRR order, or None when every queue is empty."""
        if self._new:
            item = self._dequeue_new()
            if item is not None:
                return item
        old = self._old
        while old:
            f = old[0]
            q = f._q
            if not q:  # parked by the sparse rule and still empty: its turn is over
                self._leave(f)
                old.popleft()
                if old:
                    h = old[0]
                    h.deficit += h.quantum
                continue
            c = q[0].cost
            if c <= f.deficit:
                f.deficit -= c
                item = q.popleft()
                self._len -= 1
                if not q:  # an emptied tenant leaves the round and banks no credit
                    self.active_weight -= f.weight
                    self._leave(f)
                    old.popleft()
                    if old:
                        h = old[0]
                        h.deficit += h.quantum
                return item
            old.rotate(-1)
            h = old[0]
            h.deficit += h.quantum
        return None

    def _dequeue_new(self) -> Any | None:
        new, old = self._new, self._old
        while new:
            f = new[0]
            q = f._q
            if q:
                c = q[0].cost
                if c <= f.deficit:
                    f.deficit -= c
                    item = q.popleft()
                    self._len -= 1
                    if not q:
                        self.active_weight -= f.weight
                        new.popleft()
                        if old:  # park it: no second "new" turn before the others' turns
                            old.append(f)
                        else:
                            self._leave(f)
                    return item
            # Its quantum is spent (or it is empty): it continues as an old tenant.
            new.popleft()
            if not q and not old:
                self._leave(f)
                continue
            if not old:
                f.deficit += f.quantum  # the head of the old list at once
            old.append(f)
        return None

    def refund(self, item: Any) -> None:
        """Give back the charge for ``item``, just dequeued but not served
        (the gateway shed it): its tenant's share goes to requests it serves."""
        f = self._flows.get(item.tenant)
        if f is not None and f.active:
            f.deficit += item.cost

    def _leave(self, f: Flow) -> None:
        f.deficit = 0.0
        f.active = False
