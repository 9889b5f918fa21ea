"""The control plane's per-request path in C, for ``Gateway(native=True)``.

:class:`NativeDRR` is admission control's accounts and the DRR scheduler
in one C object (``native/fast/fairq.c``), the same arithmetic as
:class:`AdmissionController` plus :class:`DRRScheduler`, in the same order,
so the two gateways make identical decisions (tests/test_control_native.py).
The gateway calls it three times per request (submit, next, done) instead
of five Python methods; everything else (validation, token buckets,
breakers, estimates, what a refusal says) stays in the Python gateway.

It plays both roles the gateway has for it: the scheduler (tenants,
weights, backlogs, ``len``) and the admission controller (``servers``,
``queued``, ``inflight``, ``n``).  Supported: DRR (plain or sparse) over
reject-new bounded queues; WFQ, FIFO, the other shed policies and CoDel
stay on the Python path.
"""
from __future__ import annotations

from collections.abc import Hashable

from dataplane._ffi import fast_ffi, fast_lib
from dataplane.control.admission import AdmissionController
from dataplane.control.errors import InvalidRequest, UnknownTenant, check_positive, check_weight
from dataplane.control.queues import ShedPolicy, check_capacity, check_policy

# fairq.h's return codes that callers act on.
EMPTY, REFUSED, FULL, AGAIN = fast_lib.DP_FQ_EMPTY, fast_lib.DP_FQ_REFUSED, fast_lib.DP_FQ_FULL, fast_lib.DP_FQ_AGAIN


def _reject_new_only(policy: ShedPolicy | str) -> None:
    if check_policy(policy) is not ShedPolicy.REJECT_NEW:
        raise InvalidRequest(f"the native path sheds by reject-new only, not {policy!r}")


class _QueueView:
    """A tenant as the gateway and callers see it: its number in C, its
    weight, and its queue's length and room."""

    __slots__ = ("_h", "index", "capacity", "weight")
    policy = ShedPolicy.REJECT_NEW

    def __init__(self, handle: object, index: int, capacity: int, weight: float) -> None:
        self._h, self.index, self.capacity, self.weight = handle, index, capacity, weight

    def __len__(self) -> int:
        return fast_lib.dp_fq_backlog(self._h, self.index)

    def __bool__(self) -> bool:
        return len(self) > 0

    @property
    def full(self) -> bool:
        return len(self) >= self.capacity

    @property
    def free(self) -> int:
        return self.capacity - len(self)


class NativeDRR:
    """Weighted DRR and admission accounts in C.  ``max_pending`` bounds the
    requests queued or running at once (a handle each, 48 bytes);
    ``max_tenants`` the tenants (past it, adding one is an InvalidRequest)."""

    FAIR = True

    def __init__(self, quantum: float = 1.0, *, sparse: bool = True, strict: bool = True,
                 default_weight: float = 1.0, capacity: int = 1024, policy: ShedPolicy | str = ShedPolicy.REJECT_NEW,
                 max_tenants: int = 4096, max_pending: int = 1 << 16) -> None:
        self.quantum = check_positive("quantum", quantum)
        self.sparse = bool(sparse)
        self.strict = bool(strict)
        self.default_weight = check_weight(default_weight)
        self.default_capacity = check_capacity(capacity)
        _reject_new_only(policy)
        for name, v in (("max_tenants", max_tenants), ("max_pending", max_pending)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 22:
                raise InvalidRequest(f"{name} must be an int in 1..2**22, got {v!r}")
        h = fast_lib.dp_fq_create(max_tenants, max_pending, self.quantum,
                                  fast_lib.DP_FQ_F_SPARSE if self.sparse else 0)
        if h == fast_ffi.NULL:
            raise MemoryError("dp_fq_create failed")
        self.handle = fast_ffi.gc(h, fast_lib.dp_fq_destroy)
        self.max_tenants = max_tenants
        self.max_pending = max_pending
        self._views: dict[Hashable, _QueueView] = {}
        self._servers = 1.0

    # -- the scheduler's side ------------------------------------------------
    def add_tenant(self, tenant: Hashable, weight: float = 1.0, *, capacity: int | None = None,
                   policy: ShedPolicy | str | None = None) -> None:
        """Register ``tenant`` with ``weight`` (> 0) and a reject-new queue of ``capacity``."""
        w = check_weight(weight)
        if tenant in self._views:
            raise InvalidRequest(f"tenant {tenant!r} already added")
        if policy is not None:
            _reject_new_only(policy)
        cap = self.default_capacity if capacity is None else check_capacity(capacity)
        if cap > 0xFFFFFFFF:
            raise InvalidRequest(f"queue capacity {cap} too large for the native path")
        i = len(self._views)
        if fast_lib.dp_fq_tenant(self.handle, i, w, cap) < 0:  # weight and capacity are checked: too many
            raise InvalidRequest(f"the native path was sized for {self.max_tenants} tenants")
        self._views[tenant] = _QueueView(self.handle, i, cap, w)

    def queue(self, tenant: Hashable) -> _QueueView:
        """The tenant's record (its ``index`` in C, ``weight``, queue length
        and room), added with the defaults unless ``strict``."""
        v = self._views.get(tenant)
        if v is None:
            if self.strict:
                raise UnknownTenant(f"unknown tenant {tenant!r} (strict policy: add_tenant first)")
            self.add_tenant(tenant, self.default_weight)
            v = self._views[tenant]
        return v

    def index(self, tenant: Hashable) -> int:
        return self.queue(tenant).index

    def set_weight(self, tenant: Hashable, weight: float) -> None:
        """Change a weight at run time; it applies from the tenant's next turn."""
        v = self.queue(tenant)
        w = check_weight(weight)
        fast_lib.dp_fq_tenant(self.handle, v.index, w, v.capacity)
        v.weight = w

    def weight(self, tenant: Hashable) -> float:
        return self.queue(tenant).weight

    @property
    def tenants(self) -> list:
        return list(self._views)

    def backlog(self, tenant: Hashable) -> int:
        return len(self.queue(tenant))

    @property
    def active_weight(self) -> float:
        return fast_lib.dp_fq_active_weight(self.handle)

    def __len__(self) -> int:
        return fast_lib.dp_fq_len(self.handle)

    def __bool__(self) -> bool:
        return fast_lib.dp_fq_len(self.handle) > 0

    # -- the admission controller's side --------------------------------------
    def _set_servers(self, n: float) -> None:
        AdmissionController.servers.fset(self, n)  # the same validation
        fast_lib.dp_fq_set_servers(self.handle, self._servers)

    servers = property(AdmissionController.servers.fget, _set_servers,
                       doc="How many requests run at once (admission plans with it).")

    @property
    def queued(self) -> float:
        return fast_lib.dp_fq_queued(self.handle)

    @property
    def inflight(self) -> float:
        return fast_lib.dp_fq_inflight(self.handle)

    @property
    def n(self) -> int:
        return fast_lib.dp_fq_n(self.handle)

    def dropped(self, acct: object, est: float) -> None:
        """A queued request was shed: C has accounted for it already."""

    def work(self, tenant: Hashable) -> float:
        """The tenant's queued work as admission sees it (estimated seconds)."""
        return fast_lib.dp_fq_work(self.handle, self.index(tenant))
