"""The composition: rate limit → admission → fair scheduler → dispatch to
healthy workers, with feedback from completions.

The gateway does no I/O and owns no thread; a driver calls it:

* ``submit(req)`` when a request arrives: it is queued or refused with
  :class:`Rejected` (whose ``reason`` and ``retry_after`` are the backpressure);
* ``dispatch()`` whenever a worker may be free: it returns the next request,
  with ``req.worker`` chosen, or None.  Requests that can no longer meet their
  deadline are shed here, never served late;
* ``complete(req, service_time)`` when a worker finishes one: it feeds the
  service-time estimator and the worker's circuit breaker.

Two optional controls (off by default): ``codel`` sheds at dequeue when a
tenant's queue delay stays above a target (:mod:`dataplane.control.codel`),
and ``concurrency`` caps the requests in flight with an AIMD limit that
adapts to the completions' latency (:mod:`dataplane.control.concurrency`).

Shed and evicted requests are reported through ``on_drop(req, reason)``.
:mod:`dataplane.control.vtime` drives it in virtual time and
:mod:`dataplane.control.live` with real worker processes.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from dataplane._ffi import fast_ffi as _fast_ffi, fast_lib as _fast_lib
from dataplane.clock import Clock, MonotonicClock
from dataplane.control.admission import AdmissionController
from dataplane.control.breaker import BreakerState, CircuitBreaker
from dataplane.control.bucket import TokenBucket
from dataplane.control.codel import CoDel
from dataplane.control.concurrency import AIMDLimit
from dataplane.control.drr import DRRScheduler
from dataplane.control.errors import (
    DeadlineInPast,
    InvalidRequest,
    QueueFull,
    Reason,
    Rejected,
    UnknownTenant,
    check_cost,
    check_positive,
    check_weight,
    rejection,
)
from dataplane.control.estimator import ServiceEstimator
from dataplane.control.native import AGAIN as _FQ_AGAIN, FULL as _FQ_FULL, REFUSED as _FQ_REFUSED, NativeDRR
from dataplane.control.fifo import FIFOScheduler
from dataplane.control.queues import ShedPolicy
from dataplane.control.request import Request
from dataplane.control.wfq import WFQScheduler

_INF = math.inf
_fq_submit, _fq_next, _fq_done = _fast_lib.dp_fq_submit, _fast_lib.dp_fq_next, _fast_lib.dp_fq_done
_CLOSED = BreakerState.CLOSED


def _as_doubles(*values: Any) -> None:
    for v in values:
        try:
            float(v)
        except OverflowError:
            raise InvalidRequest(f"{v!r} is out of a double's range (the native path)") from None
_RATE_LIMITED = Reason.RATE_LIMITED


class TenantStats:
    """Counters for one tenant (also kept for the gateway as a whole)."""

    __slots__ = ("submitted", "admitted", "dispatched", "completed", "failed", "shed", "evicted", "rejected")

    def __init__(self) -> None:
        self.submitted = self.admitted = self.dispatched = self.completed = self.failed = 0
        self.shed = 0      # dropped at dequeue: could no longer meet its deadline
        self.evicted = 0   # dropped from a full queue (drop-oldest / drop-expired)
        self.rejected: dict[Reason, int] = {r: 0 for r in Reason}

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "rejected"}
        d["rejected"] = {r.value: n for r, n in self.rejected.items()}
        return d


class _Tenant:
    __slots__ = ("name", "weight", "slo", "bucket", "stats", "work", "codel", "queue", "index")

    def __init__(self, name: Hashable, weight: float, slo: float, bucket: TokenBucket | None,
                 codel: CoDel | None = None, queue: Any = None, index: int = -1) -> None:
        self.name = name
        self.index = index  # the native path's tenant number
        self.weight = weight
        self.slo = slo
        self.bucket = bucket
        self.stats = TenantStats()
        self.work = 0.0  # queued work: the tenant's admission account
        self.codel = codel  # the CoDel of the tenant's queue (None: off)
        self.queue = queue  # that queue, for its length (CoDel's backlog rule)


class _Worker:
    __slots__ = ("name", "slots", "busy", "work", "breaker", "dispatched", "completed")

    def __init__(self, name: Hashable, slots: int, breaker: CircuitBreaker | None) -> None:
        self.name = name
        self.slots = slots
        self.busy = 0
        # Seconds it may still take for what it holds (dispatched, not
        # completed), each at its upper estimate: a request queued behind
        # them has its deadline to keep at its own p99, and their remaining
        # times are unknown.
        self.work = 0.0
        self.breaker = breaker
        self.dispatched = 0
        self.completed = 0


def _make_scheduler(kind: str, quantum: float, capacity: int, policy: ShedPolicy | str):
    # The gateway enforces strictness itself, so the scheduler always is strict.
    if kind == "drr":
        return DRRScheduler(quantum, strict=True, capacity=capacity, policy=policy)
    if kind == "wfq":
        return WFQScheduler(strict=True, capacity=capacity, policy=policy)
    if kind == "fifo":
        return FIFOScheduler(strict=True, capacity=capacity, policy=policy)
    raise InvalidRequest(f"unknown scheduler {kind!r}; one of 'drr', 'wfq', 'fifo'")


class Gateway:
    """Admission, fair scheduling and dispatch over a set of workers.

    ``workers``: a count or the workers' names; each runs one request at a
    time and may hold ``slots`` dispatched requests (> 1 hides the round trip
    to a remote worker).  ``scheduler``: "drr", "wfq" or "fifo".
    ``admission=False`` and ``shed_expired=False`` give the uncontrolled
    baseline (bounded queues only).  ``strict``: unknown tenants are an error;
    otherwise they are added with the defaults.  ``breaker``: keyword
    arguments for each worker's :class:`CircuitBreaker`, or None for none.

    ``codel``: keyword arguments for :class:`CoDel` (``target``,
    ``interval``), or None (default: off).  Each tenant's queue gets its own
    CoDel (one shared one under FIFO, which has one queue), as in FQ-CoDel,
    so a tenant's standing queue costs that tenant, not its neighbours.  Its
    sheds are reported like the deadline sheds (``on_drop``, counted in
    ``shed``) with reason OVERLOADED: the queue is too long now, retry later.

    ``concurrency``: keyword arguments for :class:`AIMDLimit` (or one), or
    None (default: off).  ``dispatch()`` then holds requests in their queues
    while the limit's worth are in flight; ``complete()`` feeds it each
    request's dispatch-to-completion time and outcome.  Admission plans with
    at most ``limit`` servers.

    ``native=True``: admission's accounts and DRR run in C
    (:class:`dataplane.control.native.NativeDRR`), three calls per request,
    the same decisions as the Python objects (DRR over reject-new queues
    only; no CoDel).  ``max_pending`` bounds its requests queued or running;
    past it a request is refused OVERLOADED.
    """

    def __init__(
        self,
        workers: int | Sequence[Hashable] = 1,
        *,
        clock: Clock,
        scheduler: str = "drr",
        quantum: float = 1.0,
        admission: bool = True,
        shed_expired: bool = True,
        strict: bool = True,
        default_weight: float = 1.0,
        default_slo: float = 0.1,
        queue_capacity: int = 1024,
        shed_policy: ShedPolicy | str = ShedPolicy.REJECT_NEW,
        estimator: ServiceEstimator | None = None,
        slots: int = 1,
        breaker: dict[str, Any] | None = None,
        on_drop: Callable[[Request, Reason], None] | None = None,
        codel: dict[str, Any] | None = None,
        concurrency: AIMDLimit | dict[str, Any] | None = None,
        native: bool = False,
        max_pending: int = 1 << 16,
    ) -> None:
        names = list(range(workers)) if isinstance(workers, int) else list(workers)
        if not names:
            raise InvalidRequest("a gateway needs at least one worker")
        if len(set(names)) != len(names):
            raise InvalidRequest("worker names must be distinct")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidRequest(f"slots must be an int >= 1, got {slots!r}")
        self._clock = clock
        # MonotonicClock.now is perf_counter; calling it directly saves a
        # Python frame on every request.
        self._now = time.perf_counter if type(clock) is MonotonicClock else clock.now
        self.strict = bool(strict)
        self.default_weight = check_weight(default_weight)
        self.default_slo = check_positive("default_slo", default_slo)
        self._fq = None
        if native:
            if scheduler != "drr" or codel is not None:
                raise InvalidRequest("native=True runs DRR without CoDel; use the Python path for "
                                     f"scheduler={scheduler!r}, codel={codel!r}")
            # One C object is both the scheduler and admission's accounts.
            self._sched = NativeDRR(quantum, capacity=queue_capacity, policy=shed_policy, max_pending=max_pending)
            self.admission = self._sched
            self.admission.servers = len(names)
            self._fq = self._sched.handle
            self._items: list[Request | None] = [None] * self._sched.max_pending
            self._finish = _fast_ffi.new("double *")
            self._gone = _fast_ffi.new("int64_t *")
        else:
            self._sched = _make_scheduler(scheduler, quantum, queue_capacity, shed_policy)
            self.admission = AdmissionController(len(names), fair=self._sched.FAIR)
        self.scheduler_kind = scheduler
        self.estimator = estimator if estimator is not None else ServiceEstimator()
        self.admission_enabled = bool(admission)
        self.shed_expired = bool(shed_expired)
        self.on_drop = on_drop
        self._tenants: dict[Hashable, _Tenant] = {}
        self._workers: list[_Worker] = []
        self._by_name: dict[Hashable, _Worker] = {}
        for name in names:
            br = None
            if breaker is not None:
                br = CircuitBreaker(clock=clock, on_change=self._breaker_changed, **breaker)
            w = _Worker(name, slots, br)
            self._workers.append(w)
            self._by_name[name] = w
        self._n_closed = len(names)   # workers whose breaker is closed (or who have none)
        self._codel_args = self._check_codel(codel, clock)
        self._codel_shared: CoDel | None = None  # FIFO: one queue, one CoDel
        self._limiter = self._check_concurrency(concurrency)
        self._n_inflight = 0   # dispatched, not completed: what the limiter caps (kept only with one)
        if self._limiter is not None:
            self._update_servers()
        # Bound methods of the data path, looked up once.
        self._next = self._next_python if self._fq is None else self._next_native
        if self._fq is None:
            self._try_admit = self.admission.try_admit
            self._dequeued = self.admission.dequeued
            self._completed = self.admission.completed
            self._enqueue = self._sched.enqueue
            self._dequeue = self._sched.dequeue
            self._refund = self._sched.refund
        self._est_get = self.estimator.get
        self._observe = self.estimator.observe

    # -- configuration -------------------------------------------------------
    def add_tenant(self, tenant: Hashable, weight: float = 1.0, *, slo: float | None = None,
                   rate: float | None = None, burst: float | None = None,
                   capacity: int | None = None, policy: ShedPolicy | str | None = None) -> None:
        """Register a tenant: fair-share ``weight``, default relative deadline
        ``slo`` (seconds), optional token bucket (``rate`` cost units/s, ``burst``),
        and its queue's ``capacity`` and shedding ``policy``."""
        if tenant in self._tenants:
            raise InvalidRequest(f"tenant {tenant!r} already added")
        w = check_weight(weight)
        s = self.default_slo if slo is None else check_positive("slo", slo)
        bucket = TokenBucket(rate, burst, clock=self._clock) if rate is not None else None
        self._sched.add_tenant(tenant, w, capacity=capacity, policy=policy)
        cd = None
        if self._codel_args is not None:
            if not self._sched.FAIR:  # FIFO: every tenant shares the one queue
                if self._codel_shared is None:
                    self._codel_shared = CoDel(clock=self._clock, **self._codel_args)
                cd = self._codel_shared
            else:
                cd = CoDel(clock=self._clock, **self._codel_args)
        index = self._sched.index(tenant) if self._fq is not None else -1
        self._tenants[tenant] = _Tenant(tenant, w, s, bucket, cd, self._sched.queue(tenant), index)

    def set_weight(self, tenant: Hashable, weight: float) -> None:
        """Change a tenant's weight at run time."""
        t = self._tenant(tenant)
        self._sched.set_weight(tenant, weight)
        t.weight = check_weight(weight)

    def set_rate(self, tenant: Hashable, rate: float | None, burst: float | None = None) -> None:
        """Set, change or (``rate=None``) remove a tenant's token bucket."""
        t = self._tenant(tenant)
        if rate is None:
            t.bucket = None
        elif t.bucket is None:
            t.bucket = TokenBucket(rate, burst, clock=self._clock)
        else:
            t.bucket.set_rate(rate, burst)

    def set_slo(self, tenant: Hashable, slo: float) -> None:
        self._tenant(tenant).slo = check_positive("slo", slo)

    def _tenant(self, tenant: Hashable) -> _Tenant:
        t = self._tenants.get(tenant)
        if t is None:
            if self.strict:
                raise UnknownTenant(f"unknown tenant {tenant!r} (strict policy: add_tenant first)")
            self.add_tenant(tenant, self.default_weight)
            t = self._tenants[tenant]
        return t

    # -- data path -------------------------------------------------------------
    def submit(self, req: Request) -> None:
        """Queue ``req`` or raise :class:`Rejected` (or :class:`InvalidRequest`)."""
        fq = self._fq
        if fq is not None and req.handle != -1:
            raise InvalidRequest(f"{req!r} is already queued or running on a native gateway")
        t = self._tenants.get(req.tenant)
        if t is None:
            t = self._tenant(req.tenant)
        now = self._now()
        st = t.stats
        st.submitted += 1
        c = req.cost
        try:
            ok = 0.0 <= c < _INF  # False for NaN
        except TypeError:
            ok = False
        if not ok:
            check_cost(c)
        d = req.deadline
        if d is None:
            if req.arrival is None:
                req.arrival = now
            d = req.deadline = req.arrival + t.slo
        elif req.arrival is None:
            req.arrival = now
        try:
            ok = d > now
        except TypeError:
            ok = False
        if not ok:
            self._bad_deadline(d, now, st)
        if fq is not None and not (type(c) is float and type(d) is float):
            _as_doubles(c, d)  # before anything is charged: the C path takes doubles
        if t.bucket is not None and not t.bucket.try_take(c, now):
            self._rate_limited(t, c, now)
        if not self._n_closed and not self._any_probe_due(now):
            self._reject(st, Rejected(Reason.CIRCUIT_OPEN, "every worker's circuit breaker is open",
                                      retry_after=min(w.breaker.retry_after(now) for w in self._workers)))
        klass = req.klass
        e = self._est_get(req.tenant if klass is None else klass)
        est = req.est = e.mean
        upper = req.upper = e.upper
        if fq is not None:
            self._submit_native(req, t, st, c, est, upper, d, now)
            return
        if self.admission_enabled:
            exc = self._try_admit(t, est, upper, d, now, t.weight, self._sched.active_weight)
            if exc is not None:
                st.rejected[exc.reason] += 1
                raise exc
        else:
            self.admission.account_queued(t, est)
        req.started = now  # the enqueue time while queued (CoDel's sojourn); dispatch overwrites it
        try:
            dropped = self._enqueue(req, now)
        except Rejected as exc:  # the tenant's queue is full: backpressure
            self.admission.dropped(t, est)
            self._reject(st, exc)
        st.admitted += 1
        if dropped:
            for old in dropped:
                self._drop(old, Reason.DEADLINE if old.deadline <= now else Reason.OVERLOADED, evicted=True)

    def _submit_native(self, req: Request, t: _Tenant, st: TenantStats, c: float, est: float, upper: float,
                       d: float, now: float) -> None:
        # Admission and enqueue in one C call (native/fast/fairq.c).
        h = _fq_submit(self._fq, t.index, c, est, upper, d, now, self.admission_enabled, self._finish)
        if h < 0:
            if h == _FQ_REFUSED:
                exc = AdmissionController._refusal(self._finish[0], d, now, upper)
                st.rejected[exc.args[0]] += 1
                raise exc
            self._reject(st, QueueFull(f"queue full ({t.queue.capacity})" if h == _FQ_FULL else
                                       f"{self._sched.max_pending} requests pending: the native path is full"))
        req.started = now
        req.handle = h
        self._items[h] = req
        st.admitted += 1

    def _next_native(self, w: _Worker, now: float) -> Request | None:
        """dispatch()'s dequeue on the native path.  The C call sheds one
        expired request at a time (its accounts kept there) and returns, so
        each is reported, callbacks and all, before the next dequeue."""
        items, gone = self._items, self._gone
        while True:
            h = _fq_next(self._fq, now, w.work, self.shed_expired, gone)
            if h >= 0:
                return items[h]
            if h != _FQ_AGAIN:
                return None
            g = gone[0]
            req = items[g]
            items[g] = None
            req.handle = -1
            self._drop(req, Reason.DEADLINE, evicted=False)  # its accounts were kept in C
            if self.on_drop is not None and self._taken(w):
                return None

    def _next_python(self, w: _Worker, now: float) -> Request | None:
        """dispatch()'s dequeue on the Python path, shedding on the way;
        the request returned is accounted as dispatched."""
        dequeue, tenants, shed = self._dequeue, self._tenants, self.shed_expired
        while True:
            req = dequeue()
            if req is None:
                return None
            t = tenants[req.tenant]
            cd = t.codel
            # With slots > 1 it waits for what the worker already holds.
            if shed and now + w.work + req.upper > req.deadline:
                # It cannot finish in time: shed it instead of serving it
                # late, and give its tenant the share back.
                self._refund(req)
                self._drop(req, Reason.DEADLINE, evicted=False)
                if cd is not None and not t.queue:
                    cd.empty()  # CoDel never saw the queue run dry
            elif cd is not None and cd.should_shed(req.started, now, backlog=len(t.queue)):
                # A standing queue: shed it (reported like any shed, reason
                # OVERLOADED) and give its tenant the share back.
                self._refund(req)
                self._drop(req, Reason.OVERLOADED, evicted=False)
            else:
                self._dequeued(t, req.est)
                return req
            if self.on_drop is not None and self._taken(w):
                return None

    def _taken(self, w: _Worker) -> bool:
        """After a drop callback: did it dispatch (re-entering) what this
        call was about to?  Then this call stops, carrying nothing."""
        lim = self._limiter
        return w.busy >= w.slots or (lim is not None and self._n_inflight >= lim.limit)

    def dispatch(self) -> Request | None:
        """The next request to run, with ``req.worker`` set; None if no
        request is queued or no healthy worker has a free slot."""
        sched = self._sched
        if not sched:
            return None
        lim = self._limiter
        if lim is not None and self._n_inflight >= lim.limit:
            return None  # backpressure: the requests wait in their queues
        now = self._now()
        w = self._pick(now)
        if w is None:
            return None
        try:
            req = self._next(w, now)
        except BaseException:
            self._release_probe(w)  # a drop callback raised: this call carries nothing
            raise
        if req is None:
            self._release_probe(w)  # the reserved probe found nothing to carry
            return None
        t = self._tenants[req.tenant]
        w.busy += 1
        w.work += req.upper
        w.dispatched += 1
        if lim is not None:
            self._n_inflight += 1
        req.worker = w.name
        req.started = now
        t.stats.dispatched += 1
        return req

    @staticmethod
    def _release_probe(w: _Worker) -> None:
        if w.breaker is not None and w.breaker.state is not _CLOSED:
            w.breaker.release_probe()

    def complete(self, req: Request, service_time: float, *, ok: bool = True, latency: float | None = None) -> None:
        """Feedback for a dispatched request: its measured ``service_time``
        (seconds; trains the estimate), whether it succeeded, and the latency
        its worker showed (for the breaker; default ``service_time``)."""
        w = self._by_name.get(req.worker)
        if w is None:
            raise InvalidRequest(f"{req!r} is not in flight from this gateway")
        if self._fq is not None:
            # Checked, and accounted in C (which refuses a handle that is not
            # running), before anything else changes.
            h = req.handle
            if not (0 <= h < len(self._items) and self._items[h] is req) or _fq_done(self._fq, h) < 0:
                raise InvalidRequest(f"{req!r} is not in flight from this gateway")
            req.handle = -1
            self._items[h] = None
        else:
            self._completed(req.est)
        req.worker = None
        b = w.busy = w.busy - 1
        w.work = w.work - req.upper if b else 0.0  # an idle worker holds exactly nothing
        w.completed += 1
        st = self._tenants[req.tenant].stats
        if ok:
            st.completed += 1
            klass = req.klass
            self._observe(req.tenant if klass is None else klass, service_time)
        else:
            st.failed += 1
        lim = self._limiter
        if lim is not None:
            n = self._n_inflight = self._n_inflight - 1
            # The round trip as the gateway sees it (dispatch to completion):
            # it grows when the backend is congested, whatever the worker says.
            old = lim.limit
            if lim.on_complete(self._now() - req.started, ok, n) != old:
                self._update_servers()
        br = w.breaker
        if br is not None:
            br.record(service_time if latency is None else latency, ok, self._now())

    # -- internals -------------------------------------------------------------
    def _pick(self, now: float) -> _Worker | None:
        if self._n_closed < len(self._workers):
            # A worker due for a probe gets one, or it could never recover.
            for w in self._workers:
                br = w.breaker
                if br.state is not _CLOSED and w.busy < w.slots and br.can_probe(now) and br.allow(now):
                    return w
        best = None
        least = 1 << 30
        for w in self._workers:
            b = w.busy
            if b < least and b < w.slots and (w.breaker is None or w.breaker.state is _CLOSED):
                best, least = w, b
                if b == 0:
                    break
        return best

    def _any_probe_due(self, now: float) -> bool:
        return any(w.breaker.can_probe(now) for w in self._workers)

    def _breaker_changed(self, br: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if old is _CLOSED:
            self._n_closed -= 1
        elif new is _CLOSED:
            self._n_closed += 1
        self._update_servers()

    def _update_servers(self) -> None:
        # Admission plans with the healthy capacity; a probing worker counts
        # for one server only when nothing else is left.  Under a concurrency
        # limit no more than `limit` requests run at once.
        n = self._n_closed
        if self._limiter is not None and self._limiter.limit < n:
            n = self._limiter.limit
        self.admission.servers = max(1, n)

    @staticmethod
    def _check_codel(codel: dict[str, Any] | None, clock: Clock) -> dict[str, Any] | None:
        if codel is None:
            return None
        if not isinstance(codel, dict):
            raise InvalidRequest(f"codel must be a dict of CoDel arguments (target, interval) or None, got {codel!r}")
        try:
            CoDel(clock=clock, **codel)  # validate now, not at the first add_tenant
        except TypeError as e:
            raise InvalidRequest(f"bad codel arguments {codel!r}: {e}") from None
        return dict(codel)

    @staticmethod
    def _check_concurrency(c: AIMDLimit | dict[str, Any] | None) -> AIMDLimit | None:
        if c is None or isinstance(c, AIMDLimit):
            return c
        if not isinstance(c, dict):
            raise InvalidRequest(f"concurrency must be an AIMDLimit, a dict of its arguments or None, got {c!r}")
        try:
            return AIMDLimit(**c)
        except TypeError as e:
            raise InvalidRequest(f"bad concurrency arguments {c!r}: {e}") from None

    def _rate_limited(self, t: _Tenant, c: float, now: float) -> None:
        b = t.bucket
        self._reject(t.stats, rejection(_RATE_LIMITED,
                                        lambda name=t.name, rate=b.rate: f"tenant {name!r} is over its rate of {rate:g}/s",
                                        b.retry_after(c, now) if c <= b.burst else None))

    def _bad_deadline(self, d: Any, now: float, st: TenantStats) -> None:
        if not isinstance(d, (int, float)) or d != d:
            raise InvalidRequest(f"deadline must be a number (absolute, clock seconds), got {d!r}")
        st.rejected[Reason.DEADLINE] += 1
        raise DeadlineInPast(f"deadline {d!r} is {(now - d) * 1e3:.3g} ms in the past (now {now!r})")

    @staticmethod
    def _reject(st: TenantStats, exc: Rejected) -> None:
        st.rejected[exc.reason] += 1
        raise exc

    def _drop(self, req: Request, reason: Reason, *, evicted: bool) -> None:
        t = self._tenants[req.tenant]
        self.admission.dropped(t, req.est)
        st = t.stats
        if evicted:
            st.evicted += 1
        else:
            st.shed += 1
        if self.on_drop is not None:
            self.on_drop(req, reason)

    # -- introspection ---------------------------------------------------------
    @property
    def scheduler(self):
        return self._sched

    @property
    def pending(self) -> int:
        """Requests queued, not yet dispatched."""
        return len(self._sched)

    @property
    def inflight(self) -> int:
        """Requests dispatched, not yet completed."""
        return sum(w.busy for w in self._workers)

    @property
    def limiter(self) -> AIMDLimit | None:
        """The adaptive concurrency limit (None when off); fixed at construction."""
        return self._limiter

    @property
    def codel_drops(self) -> int:
        """Requests shed by CoDel (0 when it is off)."""
        seen = {id(t.codel): t.codel for t in self._tenants.values() if t.codel is not None}
        return sum(c.drops for c in seen.values())

    def codel(self, tenant: Hashable) -> CoDel | None:
        """The CoDel of ``tenant``'s queue (None when off)."""
        return self._tenant(tenant).codel

    @property
    def workers(self) -> list:
        return [w.name for w in self._workers]

    @property
    def healthy_workers(self) -> list:
        return [w.name for w in self._workers if w.breaker is None or w.breaker.state is _CLOSED]

    def breaker(self, worker: Hashable) -> CircuitBreaker | None:
        return self._by_name[worker].breaker

    def tenant_stats(self, tenant: Hashable) -> TenantStats:
        return self._tenant(tenant).stats

    def totals(self) -> TenantStats:
        """Counters summed over all tenants."""
        tot = TenantStats()
        for t in self._tenants.values():
            st = t.stats
            for k in TenantStats.__slots__:
                if k == "rejected":
                    for r, n in st.rejected.items():
                        tot.rejected[r] += n
                else:
                    setattr(tot, k, getattr(tot, k) + getattr(st, k))
        return tot

    @property
    def tenants(self) -> list:
        return list(self._tenants)

    def weight(self, tenant: Hashable) -> float:
        return self._tenant(tenant).weight

    def slo(self, tenant: Hashable) -> float:
        return self._tenant(tenant).slo
