"""Per-tenant state and the tenant registry shared by the fair schedulers."""
from __future__ import annotations

from collections.abc import Hashable

from dataplane.control.errors import InvalidRequest, UnknownTenant, check_weight
from dataplane.control.queues import BoundedQueue, ShedPolicy, check_capacity, check_policy


class Flow(BoundedQueue):
    """One tenant's bounded queue plus its scheduling state."""

    __slots__ = ("tenant", "index", "weight", "quantum", "deficit", "active", "finish")

    def __init__(self, tenant: Hashable, index: int, weight: float, quantum: float, capacity: int, policy: ShedPolicy | str) -> None:
        super().__init__(capacity, policy)
        self.tenant = tenant
        self.index = index          # registration order: WFQ's tie-break
        self.weight = weight
        self.quantum = quantum      # DRR: credit per turn = base quantum * weight
        self.deficit = 0.0          # DRR deficit counter
        self.active = False         # DRR: in the active list / WFQ: in the heap
        self.finish = 0.0           # WFQ: virtual finish tag of the last tagged head


class TenantFlows:
    """The tenants of a fair scheduler, each with its own bounded queue.

    ``strict``: an unknown tenant is an error (:class:`UnknownTenant`);
    otherwise it is added with ``default_weight``, ``capacity`` and
    ``policy``.  Subclasses give a flow its ``quantum`` (:meth:`_quantum`)
    and own the data path."""

    FAIR = True

    def __init__(self, *, strict: bool, default_weight: float, capacity: int, policy: ShedPolicy | str) -> None:
        self.strict = bool(strict)
        self.default_weight = check_weight(default_weight)
        self.default_capacity = check_capacity(capacity)
        self.default_policy = check_policy(policy)
        self._flows: dict[Hashable, Flow] = {}
        self._len = 0
        self.active_weight = 0.0  # sum of the weights of tenants with queued requests

    def _quantum(self, weight: float) -> float:
        return 0.0

    def add_tenant(self, tenant: Hashable, weight: float = 1.0, *, capacity: int | None = None,
                   policy: ShedPolicy | str | None = None) -> None:
        """Register ``tenant`` with ``weight`` (> 0) and its own bounded queue."""
        w = check_weight(weight)
        if tenant in self._flows:
            raise InvalidRequest(f"tenant {tenant!r} already added")
        self._flows[tenant] = Flow(tenant, len(self._flows), w, self._quantum(w),
                                   self.default_capacity if capacity is None else capacity,
                                   self.default_policy if policy is None else policy)

    def weight(self, tenant: Hashable) -> float:
        return self._flow(tenant).weight

    @property
    def tenants(self) -> list:
        return list(self._flows)

    def backlog(self, tenant: Hashable) -> int:
        """Requests queued for ``tenant``."""
        return len(self._flow(tenant))

    def queue(self, tenant: Hashable) -> Flow:
        """The tenant's bounded queue (its ``free``/``full`` are the backpressure signal)."""
        return self._flow(tenant)

    def _flow(self, tenant: Hashable) -> Flow:
        f = self._flows.get(tenant)
        if f is None:
            if self.strict:
                raise UnknownTenant(f"unknown tenant {tenant!r} (strict policy: add_tenant first)")
            self.add_tenant(tenant, self.default_weight)
            f = self._flows[tenant]
        return f

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0
