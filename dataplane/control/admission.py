"""Deadline-aware admission control.

A request is admitted only if ``now + predicted wait + its own service``
fits its deadline.  The prediction is built from measured service times (a
:class:`ServiceEstimator`) and the work ahead of the request:

* the *work ahead* under a fair scheduler: tenant *i*'s queue drains at its
  weighted share ``w_i / W`` of the servers while the other backlogged
  tenants (total weight ``W`` including *i*) keep theirs, so the work served
  before its new request (mean service ``s``) completes is
  ``(q_i + s) * W / w_i - s``, where ``q_i`` is its queued work.  A noisy
  neighbour's backlog therefore does not make a light tenant's requests look
  late, and a heavy tenant is judged by its own share.  Under FIFO it is all
  queued work ``Q``.
* the in-flight work, and the whole is shared by the ``servers``.
* the wait is 0 when a server is free and nothing is queued.

The queued and in-flight work are the *mean* estimates (sums of many
services); the request's own service is the *upper* estimate (its p99),
since a single request misses its deadline through its own tail.

The controller only decides and keeps the work accounts; the gateway calls
``admit`` before queueing and ``dequeued``/``dropped``/``completed`` after.
"""
from __future__ import annotations

from collections.abc import Hashable

from dataplane.control.errors import InvalidRequest, Reason, Rejected, rejection

# Enum member lookups cost a descriptor call each; the refusal path runs for
# most requests under overload.
_DEADLINE = Reason.DEADLINE
_OVERLOADED = Reason.OVERLOADED


class Account:
    """One tenant's queued work (estimated seconds) as admission sees it.

    Any object with a float ``work`` attribute serves (the gateway uses its
    tenant records), so the data path needs no dictionary lookups."""

    __slots__ = ("tenant", "work")

    def __init__(self, tenant: Hashable = None) -> None:
        self.tenant = tenant
        self.work = 0.0


class AdmissionController:
    """Admits a request iff its deadline is predicted to be met.

    ``servers``: how many requests run at once (the gateway keeps it equal to
    its healthy workers).  ``fair``: whether the scheduler shares by weight
    (DRR, WFQ) or serves in arrival order (FIFO).
    """

    def __init__(self, servers: float = 1, *, fair: bool = True) -> None:
        self.servers = servers
        self.fair = bool(fair)
        self.queued = 0.0     # estimated seconds of work queued, all tenants
        self.inflight = 0.0   # estimated seconds of work dispatched, not completed
        self.n = 0            # requests queued or in flight
        self._accounts: dict[Hashable, Account] = {}

    @property
    def servers(self) -> float:
        return self._servers

    @servers.setter
    def servers(self, n: float) -> None:
        if not n > 0:
            raise InvalidRequest(f"servers must be > 0, got {n!r}")
        self._servers = float(n)

    def account(self, tenant: Hashable) -> Account:
        """A standing account for ``tenant`` (created on first use)."""
        a = self._accounts.get(tenant)
        if a is None:
            a = self._accounts[tenant] = Account(tenant)
        return a

    def predict_wait(self, acct: Account, est: float, weight: float = 1.0, active_weight: float = 0.0) -> float:
        """Seconds until a new request (mean service ``est``) of ``acct``'s
        tenant would start; ``active_weight`` is the backlogged tenants' total."""
        if self.n < self._servers:
            return 0.0
        q_i = acct.work
        if self.fair:
            # The tenant is among the backlogged iff it has queued work.
            W = active_weight if q_i > 0.0 else active_weight + weight
            ahead = (q_i + est) * W / weight - est
        else:
            ahead = self.queued
        return (ahead + self.inflight) / self._servers

    def admit(self, acct: Account, est: float, upper: float, deadline: float, now: float,
              weight: float = 1.0, active_weight: float = 0.0) -> None:
        """Admit (and account ``est`` as queued) or raise :class:`Rejected`.

        ``est``/``upper``: the request's mean and upper service estimates.
        Reason DEADLINE if even an idle server could not finish in time
        (retrying cannot help), else OVERLOADED with the predicted excess as
        ``retry_after``.
        """
        exc = self.try_admit(acct, est, upper, deadline, now, weight, active_weight)
        if exc is not None:
            raise exc

    def try_admit(self, acct: Account, est: float, upper: float, deadline: float, now: float,
                  weight: float = 1.0, active_weight: float = 0.0) -> Rejected | None:
        """``admit`` that returns the rejection instead of raising it (None:
        admitted), for callers that turn it into their own exception."""
        q_i = acct.work
        if self.n < self._servers:
            finish = now + upper
        elif self.fair:  # predict_wait(), inlined: this runs for every request
            W = active_weight if q_i > 0.0 else active_weight + weight
            finish = now + ((q_i + est) * W / weight - est + self.inflight) / self._servers + upper
        else:
            finish = now + (self.queued + self.inflight) / self._servers + upper
        if finish > deadline:
            return self._refusal(finish, deadline, now, upper)
        acct.work = q_i + est
        self.queued += est
        self.n += 1
        return None

    @staticmethod
    def _refusal(finish: float, deadline: float, now: float, upper: float) -> Rejected:
        if now + upper > deadline:
            return rejection(_DEADLINE, lambda: (
                f"deadline in {(deadline - now) * 1e3:.3g} ms is shorter than the "
                f"estimated service time ({upper * 1e3:.3g} ms)"))
        return rejection(_OVERLOADED, lambda: (
            f"predicted completion in {(finish - now) * 1e3:.3g} ms misses the deadline in "
            f"{(deadline - now) * 1e3:.3g} ms"), finish - deadline)

    def account_queued(self, acct: Account, est: float) -> None:
        """Count a request queued without a decision (admission disabled)."""
        acct.work += est
        self.queued += est
        self.n += 1

    def dequeued(self, acct: Account, est: float) -> None:
        """A queued request left the queue for a server."""
        left = acct.work - est
        # Sums of floats drift: an emptied account must read exactly 0.
        acct.work = left if left > 1e-9 * est else 0.0
        self.queued -= est
        self.inflight += est

    def dropped(self, acct: Account, est: float) -> None:
        """A queued request was shed or evicted."""
        left = acct.work - est
        acct.work = left if left > 1e-9 * est else 0.0
        self.queued -= est
        n = self.n = self.n - 1
        if not n:
            self.queued = self.inflight = 0.0

    def completed(self, est: float) -> None:
        """A dispatched request finished (or was abandoned)."""
        n = self.n = self.n - 1
        if n:
            self.inflight -= est
        else:
            self.queued = self.inflight = 0.0
