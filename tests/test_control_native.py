"""Gateway(native=True): admission and DRR in C must decide exactly what the
Python objects decide.  Each scenario runs twice through the discrete-event
simulator, once per path, and every outcome is compared: which requests were
admitted or refused (and why), the order they ran in, on which worker, when
they finished, what was shed."""
import math

import pytest
from hypothesis import given, settings
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
from dataplane.control.errors import QueueFull
from dataplane.control.native import NativeDRR

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
                   on_complete=lambda req, t: events.append(("done", req.payload[1], req.tenant, req.worker, t)))
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
    assert nat[0] == py[0]   # every completion and drop, in order, with its time and worker
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
