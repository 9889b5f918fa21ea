"""Gateway(native=True): admission and DRR in C must decide exactly what the
Python objects decide.  Each scenario runs twice through the discrete-event
simulator, once per path, and every outcome is compared: which requests were
admitted or refused (and why), the order they ran in, on which worker, when
they finished, what was shed."""
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataplane.clock import VirtualClock
from dataplane.control import (
    BreakerState,
    Gateway,
    InvalidRequest,
    Reason,
    Recorder,
    Rejected,
    Request,
    Service,
    ServiceEstimator,
    Stream,
    UnknownTenant,
    arrivals,
    simulate,
)
from dataplane._ffi import fast_ffi, fast_lib
from dataplane.control import AdmissionController, DRRScheduler
from dataplane.control.admission import Account
from dataplane.control.errors import QueueFull
from dataplane.control.native import AGAIN, EMPTY, FULL, REFUSED, NativeDRR

EXP = Service("exp", 1e-3)


def trace(native, streams, tenants, *, servers=8, duration=1.0, seed=1, weight_changes=(), slow=None, cut=None,
          **kw):
    """Run once; return everything observable, in order."""
    clock = VirtualClock()
    gw = Gateway(servers, clock=clock, native=native, estimator=ServiceEstimator(1e-3, 5e-3),
                 breaker={"p99_threshold": 10e-3}, **kw)
    for name, weight, slo, cap in tenants:
        gw.add_tenant(name, weight, slo=slo, capacity=cap)
    events = []
    gw.on_drop = lambda req, reason: events.append(("drop", req.payload[1], req.tenant, reason))
    changes = list(weight_changes)

    def service_time(req, worker, now):
        events.append(("start", req.payload[1], req.tenant, worker, now))
        while changes and changes[0][0] <= now:
            _, who, w = changes.pop(0)
            gw.set_weight(who, w)
        if cut is not None and now >= cut and gw.breaker(0).state is BreakerState.CLOSED:
            gw.breaker(0).force_open("test", now)  # half the pool gone mid-burst
            gw.breaker(1).force_open("test", now)
        s = req.payload[0]
        if slow is not None and worker == 0 and slow[0] <= now < slow[1]:
            s *= 7
        return s, True

    rec = simulate(gw, clock, arrivals(streams, duration, seed=seed), recorder=Recorder(),
                   service_time=service_time,
                   on_complete=lambda req, t: events.append(("done", req.payload[1], req.tenant, t)))
    per_tenant = {}
    for name, r in rec.tenants.items():
        per_tenant[name] = (r.offered, r.admitted, dict(r.rejected), r.completed, r.ontime, r.shed,
                            r.latency.get_total_count(), r.latency.get_value_at_percentile(99))
    stats = {t: gw.tenant_stats(t).as_dict() for t in gw.tenants}
    return events, per_tenant, stats, gw


def same(streams, tenants, **kw):
    py = trace(False, streams, tenants, **kw)
    nat = trace(True, streams, tenants, **kw)
    assert nat[1] == py[1]   # per-tenant outcomes
    assert nat[2] == py[2]   # the gateway's own counters
    assert nat[0] == py[0]   # every start (worker, time), completion and drop, in order
    return py, nat


@pytest.mark.parametrize("load", [0.5, 2, 5])
def test_overload_decisions_are_identical(load):
    (events, outcome, _, _), (_, _, _, gw) = same(
        [Stream("a", load * 4000, EXP), Stream("b", load * 4000, EXP)],
        [("a", 1.0, 0.02, 1024), ("b", 1.0, 0.05, 1024)])
    if load > 1:  # the scenario really refuses and sheds
        assert outcome["a"][2].get(Reason.OVERLOADED, 0) > 100
    assert gw.pending == 0 and gw.inflight == 0 and gw.admission.n == 0


def test_noisy_neighbour_and_run_time_weights_are_identical():
    same([Stream("A", 2000, EXP), Stream("B", 40000, EXP), Stream("C", 3000, EXP, start=0.3)],
         [("A", 1.0, 0.02, 1024), ("B", 1.0, 0.02, 1024), ("C", 2.0, 0.05, 1024)],
         weight_changes=[(0.4, "B", 4.0), (0.7, "A", 0.5)])


def test_full_queues_slots_and_a_slow_worker_are_identical():
    # Tiny queues (reject-new refusals), two slots per worker (shedding that
    # counts the wait on the worker), worker 0 slow for a while (its breaker
    # opens, servers change, probes).
    (_, outcome, stats, gw), _ = same(
        [Stream("a", 9000, EXP), Stream("b", 3000, Service("const", 2e-3))],
        [("a", 1.0, 0.03, 4), ("b", 3.0, 0.05, 2)], servers=4, slots=2, slow=(0.2, 0.6))
    assert gw.breaker(0).trips > 0 and stats["a"]["admitted"] > 100


def test_sheds_at_dispatch_are_identical():
    # Half the workers cut off mid-burst: requests admitted for the whole
    # pool can no longer all make it and are shed at dequeue.
    (_, outcome, stats, _), _ = same(
        [Stream("a", 7000, EXP), Stream("b", 2000, Service("const", 1e-3))],
        [("a", 1.0, 0.02, 1024), ("b", 2.0, 0.05, 1024)], servers=4, cut=0.1, duration=0.4)
    assert stats["a"]["shed"] + stats["b"]["shed"] > 20


def test_without_admission_decisions_only_expired_are_shed_identically():
    same([Stream("a", 12000, EXP)], [("a", 1.0, 0.01, 100_000)], servers=4, admission=False, duration=0.3)


@settings(max_examples=25, deadline=None)
@given(rates=st.lists(st.floats(100, 20000), min_size=1, max_size=4),
       weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=4, max_size=4),
       slos=st.lists(st.sampled_from([0.002, 0.01, 0.05]), min_size=4, max_size=4),
       caps=st.lists(st.integers(1, 64), min_size=4, max_size=4),
       servers=st.integers(1, 6), quantum=st.sampled_from([0.5, 1.0, 2.5]),
       costs=st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.0]), min_size=4, max_size=4), seed=st.integers(0, 99))
def test_random_scenarios_are_identical(rates, weights, slos, caps, servers, quantum, costs, seed):
    streams = [Stream(f"t{i}", r, EXP, cost=costs[i]) for i, r in enumerate(rates)]
    tenants = [(f"t{i}", weights[i], slos[i], caps[i]) for i in range(len(rates))]
    same(streams, tenants, servers=servers, duration=0.2, seed=seed, quantum=quantum)


def test_what_the_native_path_refuses_to_configure():
    for kw in ({"scheduler": "wfq"}, {"scheduler": "fifo"}, {"codel": {}}, {"shed_policy": "drop-oldest"}):
        with pytest.raises(InvalidRequest):
            Gateway(1, clock=VirtualClock(), native=True, **kw)
    gw = Gateway(1, clock=VirtualClock(), native=True)
    with pytest.raises(InvalidRequest):
        gw.add_tenant("x", 1.0, policy="drop-expired")
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(InvalidRequest):
            gw.add_tenant("y", bad)
    with pytest.raises(UnknownTenant):
        gw.submit(Request("nobody"))
    with pytest.raises(InvalidRequest):
        NativeDRR(max_pending=0)


def test_bad_requests_get_the_same_errors_on_both_paths():
    for native in (False, True):
        clock = VirtualClock()
        gw = Gateway(1, clock=clock, native=native)
        gw.add_tenant("a", slo=0.1, capacity=1)
        clock.set(1.0)
        for bad in (math.nan, -1.0, math.inf, "1"):
            with pytest.raises(InvalidRequest):
                gw.submit(Request("a", cost=bad))
        with pytest.raises(Rejected) as e:
            gw.submit(Request("a", deadline=0.5))
        assert e.value.reason is Reason.DEADLINE
        gw.submit(Request("a"))
        with pytest.raises(QueueFull):  # capacity 1, nothing dispatched yet
            gw.submit(Request("a"))
        assert gw.pending == 1 and gw.admission.n == 1


def test_numbers_beyond_a_double_are_refused_before_anything_is_charged():
    clock = VirtualClock()
    gw = Gateway(1, clock=clock, native=True)
    gw.add_tenant("a", slo=1.0, rate=10.0, burst=2.0)
    tokens = gw._tenants["a"].bucket.tokens  # noqa: SLF001 - what a refused call must not spend
    with pytest.raises(InvalidRequest, match="double"):
        gw.submit(Request("a", deadline=10**400))
    assert gw._tenants["a"].bucket.tokens == tokens and gw.pending == 0  # noqa: SLF001
    gw.submit(Request("a", deadline=2**60))  # an int that fits is fine
    assert gw.pending == 1


def test_handles_are_recycled_and_bounded():
    """``max_pending`` handles: with all of them queued or running a request
    is refused (OVERLOADED), and completing requests frees them for good."""
    clock = VirtualClock()
    gw = Gateway(1, clock=clock, native=True, max_pending=2)
    gw.add_tenant("a", slo=10.0)
    for _ in range(100):  # far more requests than handles, all accounted
        gw.submit(Request("a"))
        gw.submit(Request("a"))
        with pytest.raises(Rejected) as e:
            gw.submit(Request("a"))
        assert e.value.reason is Reason.OVERLOADED and "pending" in str(e.value)
        while (r := gw.dispatch()) is not None:
            clock.set(clock.now() + 1e-3)
            gw.complete(r, 1e-3)
    assert gw.pending == 0 and gw.admission.n == 0 and gw.admission.inflight == 0.0
    st = gw.tenant_stats("a")
    assert st.completed == 200 and st.rejected[Reason.OVERLOADED] == 100


class _Item:
    __slots__ = ("tenant", "cost", "est", "upper", "deadline")

    def __init__(self, tenant, cost, est, upper, deadline):
        self.tenant, self.cost, self.est, self.upper, self.deadline = tenant, cost, est, upper, deadline


_op = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 2), st.sampled_from([0.0, 0.3, 1.0, 2.5]),
              st.sampled_from([1e-3, 3e-4, 2.2e-3]), st.sampled_from([0.0, 5e-4, 4e-3]),
              st.sampled_from([1e-3, 5e-3, 2e-2, 1.0]), st.booleans()),
    st.tuples(st.just("next"), st.sampled_from([0.0, 1e-3, 3e-3]), st.booleans()),
    st.tuples(st.just("done"), st.integers(0, 50)),
    st.tuples(st.just("weight"), st.integers(0, 2), st.sampled_from([0.5, 1.0, 3.0])),
    st.tuples(st.just("servers"), st.sampled_from([1, 2, 3])),
    st.tuples(st.just("tick"), st.sampled_from([1e-4, 1e-3, 7e-3])),
)


@pytest.mark.parametrize("sparse", [True, False])
@settings(max_examples=300, deadline=None)
@given(quantum=st.sampled_from([0.5, 1.0, 2.0]), caps=st.lists(st.integers(1, 6), min_size=3, max_size=3),
       ops=st.lists(_op, min_size=1, max_size=120))
# Float residues: (1e-3 + 3e-4) - 1e-3 - 3e-4 is -2**-64, which the account
# must snap to 0 as Python does.
@example(quantum=1.0, caps=[6, 6, 6], ops=[("submit", 0, 0.3, 1e-3, 0.0, 1.0, False),
                                          ("submit", 0, 0.3, 3e-4, 0.0, 1.0, False),
                                          ("next", 0.0, False), ("next", 0.0, False)])
def test_every_account_is_bit_identical_after_every_step(sparse, quantum, caps, ops):
    """NativeDRR against AdmissionController + DRRScheduler, driven the way
    the gateway drives them, one random operation at a time: the same
    answers, and every account (queued, in flight, n, each tenant's work,
    the backlogged weight, the backlogs) equal to the last bit."""
    adm = AdmissionController(1)
    drr = DRRScheduler(quantum, sparse=sparse, capacity=100)
    nat = NativeDRR(quantum, sparse=sparse, capacity=100, max_pending=64)
    accts, weights = [Account(t) for t in range(3)], [1.0, 1.0, 1.0]
    for t in range(3):
        drr.add_tenant(t, 1.0, capacity=caps[t])
        nat.add_tenant(t, 1.0, capacity=caps[t])
    h, finish, gone = nat.handle, fast_ffi.new("double *"), fast_ffi.new("int64_t *")
    running_py, running_nat = [], []  # parallel lists: an item and its handle
    now = 1.0
    for op in ops:
        if op[0] == "tick":
            now += op[1]
        elif op[0] == "servers":
            adm.servers = nat.servers = op[1]
        elif op[0] == "weight":
            weights[op[1]] = op[2]
            drr.set_weight(op[1], op[2])
            nat.set_weight(op[1], op[2])
        elif op[0] == "submit":
            _, t, cost, est, upper, rel, decide = op
            it = _Item(t, cost, est, est + upper, now + rel)
            if decide:
                exc = adm.try_admit(accts[t], est, it.upper, it.deadline, now, weights[t], drr.active_weight)
                py = "refused" if exc is not None else None
            else:
                adm.account_queued(accts[t], est)
                py = None
            if py is None:
                try:
                    drr.enqueue(it, now)
                    py = "queued"
                except QueueFull:
                    adm.dropped(accts[t], est)
                    py = "full"
            rc = fast_lib.dp_fq_submit(h, t, cost, est, it.upper, it.deadline, now, decide, finish)
            got = "refused" if rc == REFUSED else "full" if rc == FULL else "queued" if rc >= 0 else rc
            assert got == py
            if py == "refused":  # the same refusal, down to the predicted finish
                mine = AdmissionController._refusal(finish[0], it.deadline, now, it.upper)
                assert mine.reason is exc.reason and repr(mine.retry_after) == repr(exc.retry_after)
        elif op[0] == "next":  # one call: a dequeue, or one shed (anything may come between two)
            _, ahead, shed = op
            it = drr.dequeue()
            rc = fast_lib.dp_fq_next(h, now, ahead, shed, gone)
            if it is None:
                assert rc == EMPTY
            elif shed and now + ahead + it.upper > it.deadline:
                drr.refund(it)
                adm.dropped(accts[it.tenant], it.est)
                assert rc == AGAIN
            else:
                adm.dequeued(accts[it.tenant], it.est)
                assert rc >= 0
                running_py.append(it)
                running_nat.append(rc)
        elif op[0] == "done" and running_py:
            i = op[1] % len(running_py)
            adm.completed(running_py.pop(i).est)
            assert fast_lib.dp_fq_done(h, running_nat.pop(i)) == 0
        assert (adm.queued.hex(), adm.inflight.hex(), adm.n) == (nat.queued.hex(), nat.inflight.hex(), nat.n)
        assert drr.active_weight.hex() == nat.active_weight.hex() and len(drr) == len(nat)
        for t in range(3):
            assert accts[t].work.hex() == nat.work(t).hex() and drr.backlog(t) == nat.backlog(t)
    # A handle that is not running is refused, and changes nothing.
    assert fast_lib.dp_fq_done(h, -1) < 0 and fast_lib.dp_fq_done(h, 64) < 0
    n = nat.n
    for spare in range(64):
        if spare not in running_nat:
            assert fast_lib.dp_fq_done(h, spare) < 0
    assert nat.n == n


def test_a_refused_resubmit_or_stray_completion_changes_nothing():
    """Resubmitting a running request is refused before it is counted,
    charged to the bucket or re-estimated; completing a request that is only
    queued here (it carries another gateway's worker) is refused before any
    account moves."""
    clock = VirtualClock()
    est = ServiceEstimator(1e-3, 1e-3)
    gw = Gateway(1, clock=clock, native=True, slots=2, estimator=est)
    gw.add_tenant("a", slo=1.0, rate=100.0, burst=3.0)
    r = Request("a")
    gw.submit(r)
    running = gw.dispatch()
    for _ in range(40):  # the estimate moves on
        est.observe("a", 0.05)
    tokens = gw._tenants["a"].bucket.tokens  # noqa: SLF001 - what a refused call must not spend
    with pytest.raises(InvalidRequest, match="already queued"):
        gw.submit(running)
    assert gw.tenant_stats("a").submitted == 1 and running.upper == 1e-3
    assert gw._tenants["a"].bucket.tokens == tokens  # noqa: SLF001
    other = Gateway(1, clock=clock, estimator=ServiceEstimator(1e-3, 1e-3))
    other.add_tenant("a", slo=1.0)
    stray = Request("a")
    other.submit(stray)
    assert other.dispatch() is stray and stray.worker == 0
    stray.handle = -1
    gw.submit(stray)  # now queued here, still carrying the other's worker
    with pytest.raises(InvalidRequest, match="not in flight"):
        gw.complete(stray, 1e-3)
    assert gw.inflight == 1 and gw.pending == 1 and gw.admission.n == 2
    gw.complete(running, 1e-3)
    nxt = gw.dispatch()
    assert nxt is stray
    gw.complete(nxt, 1e-3)
    assert gw.admission.n == 0 and gw.admission.inflight == 0.0 and gw.inflight == 0


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_a_drop_callback_that_dispatches_or_raises_keeps_slots_and_probes(native):
    """A drop callback may call dispatch() itself: the outer call then stops
    rather than overfill the worker.  One that raises while the worker is
    being probed gives the probe back, so the breaker can still close."""
    clock = VirtualClock()
    gw = Gateway(1, clock=clock, native=native, estimator=ServiceEstimator(1e-3, 1e-3),
                 breaker={"backoff": 0.01, "max_backoff": 0.01, "probes": 1})
    gw.add_tenant("a", slo=1.0)
    gw.submit(Request("a", deadline=0.0101, payload="late"))
    gw.submit(Request("a", deadline=1.0, payload="ok"))
    gw.submit(Request("a", deadline=1.0, payload="ok2"))
    inner = []
    gw.on_drop = lambda req, why: inner.append(gw.dispatch())
    clock.set(0.01)
    assert gw.dispatch() is None and [r.payload for r in inner] == ["ok"]
    assert gw.inflight == 1  # one slot, one request
    gw.complete(inner[0], 1e-3)
    gw.on_drop = None
    gw.complete(gw.dispatch(), 1e-3)  # ok2

    gw.submit(Request("a", deadline=0.0125, payload="late"))
    gw.submit(Request("a", deadline=5.0, payload="probe"))
    gw.breaker(0).force_open("test", clock.now())
    clock.set(0.05)  # past the back-off: the worker may be probed, "late" is

    def boom(req, why):
        raise RuntimeError("callback failed")

    gw.on_drop = boom
    with pytest.raises(RuntimeError):
        gw.dispatch()
    gw.on_drop = None
    r = gw.dispatch()  # the probe was given back: it can go now
    assert r is not None and r.payload == "probe"
    gw.complete(r, 1e-3)
    assert gw.breaker(0).state is BreakerState.CLOSED


def test_a_request_is_in_one_native_gateway_once():
    """Submitting a queued request again, or completing one that is not
    running here, is refused before anything changes."""
    clock = VirtualClock()
    gw = Gateway(2, clock=clock, native=True)
    other = Gateway(2, clock=clock)
    for g in (gw, other):
        g.add_tenant("a", slo=1.0)
    r = Request("a")
    gw.submit(r)
    with pytest.raises(InvalidRequest, match="already queued"):
        gw.submit(r)
    s = Request("a")
    other.submit(s)
    stranger = other.dispatch()
    with pytest.raises(InvalidRequest, match="not in flight"):
        gw.complete(stranger, 1e-3)
    assert gw.pending == 1 and gw.admission.n == 1 and gw.inflight == 0
    mine = gw.dispatch()
    gw.complete(mine, 1e-3)
    with pytest.raises(InvalidRequest):
        gw.complete(mine, 1e-3)  # twice
    assert gw.admission.n == 0 and gw.admission.inflight == 0.0


def test_a_drop_callback_may_submit_again_or_raise():
    """Each shed request is reported before anything else is dequeued: a
    callback that resubmits (a retry) or raises leaves every account right."""
    clock = VirtualClock()
    gw = Gateway(1, clock=clock, native=True, estimator=ServiceEstimator(1e-3, 1e-3))
    gw.add_tenant("a", slo=1.0)
    for k in range(3):
        gw.submit(Request("a", deadline=0.0101 + k * 1e-4, payload=k))
    gw.submit(Request("a", deadline=1.0, payload="keep"))
    retried = []

    def retry(req, reason):
        retried.append(req.payload)
        if req.payload == 0:
            gw.submit(Request("a", deadline=5.0, payload="retry"))
        if req.payload == 1:
            raise RuntimeError("callback failed")

    gw.on_drop = retry
    clock.set(0.01)  # the first three can no longer finish in time
    with pytest.raises(RuntimeError):
        gw.dispatch()
    assert retried == [0, 1] and gw.pending == 3 and gw.admission.n == 3
    got = [gw.dispatch()]
    assert retried == [0, 1, 2] and got[0].payload == "keep"
    gw.complete(got[0], 1e-3)
    r = gw.dispatch()
    assert r.payload == "retry"
    gw.complete(r, 1e-3)
    assert gw.pending == 0 and gw.admission.n == 0 and gw.tenant_stats("a").shed == 3
