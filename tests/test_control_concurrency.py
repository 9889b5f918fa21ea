"""The adaptive (AIMD) concurrency limit: the limiter on its own, then through
the gateway and the simulator against a backend that slows down when it is
given too much at once."""
import math

import pytest

from dataplane.clock import VirtualClock
from dataplane.control import (
    AIMDLimit,
    Gateway,
    InvalidRequest,
    Recorder,
    Request,
    Service,
    ServiceEstimator,
    Stream,
    arrivals,
    simulate,
)

MS = 1e-3


def test_additive_increase_under_good_latency():
    lim = AIMDLimit(10, max_limit=1000, increase=1.0, latency_target=10 * MS)
    seen = [lim.limit]
    for _ in range(100):
        seen.append(lim.on_complete(5 * MS))
    # +increase per limit's worth of completions: L' = L + 1/L, so L^2 grows
    # by about 2 per completion: sqrt(100 + 200) = 17.3 after 100.
    assert seen == sorted(seen)
    assert 17 <= lim.limit <= 18
    assert all(b - a <= 1 for a, b in zip(seen, seen[1:]))
    assert seen[10] == 10 and seen[11] == 11   # 10 x ~1/10 is just under one step
    assert lim.increases == 100 and lim.decreases == 0
    # A bigger step grows it faster, still additively.
    fast = AIMDLimit(10, max_limit=1000, increase=4.0, latency_target=10 * MS)
    for _ in range(100):
        fast.on_complete(5 * MS)
    assert fast.limit > lim.limit + 10


def test_multiplicative_decrease_on_bad_latency_or_error():
    lim = AIMDLimit(20, max_limit=100, decrease=0.9, latency_target=10 * MS)
    assert lim.on_complete(11 * MS, inflight=15) == 18
    # The other requests of the same episode do not cut it again...
    for _ in range(15):
        assert lim.on_complete(50 * MS, inflight=15) == 18
    # ...but the next bad one does, and so does an error at any latency.
    assert lim.on_complete(50 * MS, inflight=15) == 16      # 18 x 0.9 = 16.2
    for _ in range(15):
        lim.on_complete(1 * MS, inflight=15)                # good ones grow it by ~0.9
    assert lim.limit == 17
    assert lim.on_complete(1 * MS, ok=False, inflight=0) == 15
    assert lim.decreases == 3
    half = AIMDLimit(64, decrease=0.5, latency_target=MS)
    assert half.on_complete(2 * MS, inflight=0) == 32


def test_bounds_and_no_growth_when_the_limit_is_not_used():
    lim = AIMDLimit(10, min_limit=3, max_limit=12, latency_target=10 * MS)
    for _ in range(50):
        lim.on_complete(1.0, inflight=0)
    assert lim.limit == 3
    for _ in range(10_000):
        lim.on_complete(MS)
    assert lim.limit == 12
    # Only what is used is tested: with 2 of 12 in flight it does not grow.
    idle = AIMDLimit(10, max_limit=100, latency_target=10 * MS)
    for _ in range(1000):
        idle.on_complete(MS, inflight=2)
    assert idle.limit == 10
    for _ in range(100):
        idle.on_complete(MS, inflight=9)
    assert idle.limit > 10


@pytest.mark.parametrize("kw", [
    {"initial": 0}, {"initial": 2.5}, {"initial": True}, {"min_limit": 0}, {"min_limit": 20},
    {"max_limit": 4}, {"initial": 5, "min_limit": 6, "max_limit": 4},
    {"increase": 0}, {"increase": -1}, {"increase": math.nan}, {"increase": "x"},
    {"decrease": 1.0}, {"decrease": 0.0}, {"decrease": 1.5}, {"decrease": math.nan}, {"decrease": None},
    {"latency_target": 0}, {"latency_target": -1e-3}, {"latency_target": math.inf},
])
def test_bad_arguments(kw):
    args = {"initial": 8, "min_limit": 1, "max_limit": 16} | kw
    with pytest.raises(InvalidRequest):
        AIMDLimit(args.pop("initial"), **args)


def test_bad_gateway_options():
    with pytest.raises(InvalidRequest):
        Gateway(2, clock=VirtualClock(), concurrency={"initial": 0})
    with pytest.raises(InvalidRequest):
        Gateway(2, clock=VirtualClock(), concurrency={"limit": 4})
    with pytest.raises(InvalidRequest):
        Gateway(2, clock=VirtualClock(), concurrency=4)
    assert Gateway(2, clock=VirtualClock()).limiter is None   # off by default


def test_dispatch_holds_requests_back_at_the_limit():
    clock = VirtualClock()
    gw = Gateway(4, clock=clock, concurrency={"initial": 2, "min_limit": 2, "max_limit": 2})
    gw.add_tenant("a", slo=1.0)
    for _ in range(5):
        gw.submit(Request("a"))
    r1, r2 = gw.dispatch(), gw.dispatch()
    assert r1 is not None and r2 is not None
    assert gw.dispatch() is None                      # two workers are free, but the limit is 2
    assert gw.pending == 3 and gw.inflight == 2       # held, not lost
    assert gw.admission.servers == 2                  # admission plans with what may run
    clock.advance(MS)
    gw.complete(r1, MS)
    r3 = gw.dispatch()
    assert r3 is not None and gw.dispatch() is None
    st = gw.tenant_stats("a")
    assert st.dispatched == 3 and st.shed == 0


def test_backpressure_is_not_loss():
    # A fixed small limit, no admission control or shedding: every request
    # is served in the end, never more than 2 at once.
    clock = VirtualClock()
    gw = Gateway(8, clock=clock, admission=False, shed_expired=False, queue_capacity=100_000,
                 concurrency={"initial": 2, "min_limit": 2, "max_limit": 2})
    gw.add_tenant("a", slo=100.0)
    peak = []

    def service(req, worker, now):
        peak.append(gw.inflight)
        return req.payload[0], True

    sched = arrivals([Stream("a", 4000, Service("exp", MS))], 0.5, seed=2)
    rec = simulate(gw, clock, sched, recorder=Recorder(0.0, math.inf), service_time=service)
    assert max(peak) == 2
    assert rec.total().completed == len(sched) == gw.totals().completed
    assert gw.pending == 0 and gw.inflight == 0


def congested(limit, *, load=1.5, duration=1.5, cores=4, workers=32, base=MS, fail=None, seed=1):
    """A backend with ``cores`` behind ``workers`` connections: a request's
    latency is ``base`` x max(1, in flight / cores) -- sending more at once
    only makes each slower.  Returns the recorder, gateway, the backend
    latencies (time, latency) and the (in flight, limit) at each dispatch."""
    clock = VirtualClock()
    gw = Gateway(workers, clock=clock, estimator=ServiceEstimator(base, 5 * base),
                 breaker=None, concurrency=limit)
    gw.add_tenant("a", slo=0.1)
    lat, seen = [], []

    def service(req, worker, now):
        n = gw.inflight
        seen.append((n, gw.limiter.limit if gw.limiter is not None else math.inf))
        s = base * max(1.0, n / cores)
        lat.append((now, s))
        ok = fail is None or not fail(now)
        return s, ok

    cap = cores / base
    sched = arrivals([Stream("a", load * cap, Service("const", base))], duration, seed=seed)
    rec = simulate(gw, clock, sched, recorder=Recorder(0.0, math.inf), service_time=service)
    return rec, gw, lat, seen, len(sched)


def accounted(rec, gw, n):
    st, tot = gw.totals(), rec.total()
    assert st.completed + st.failed + st.shed + st.evicted + sum(st.rejected.values()) == st.submitted == n
    assert tot.completed + tot.failed + tot.shed + sum(tot.rejected.values()) == tot.offered == n
    assert gw.pending == 0 and gw.inflight == 0


def test_limit_tracks_a_congested_backend_and_is_never_exceeded():
    limit = {"initial": 4, "min_limit": 1, "max_limit": 64, "latency_target": 2 * MS}
    rec, gw, lat, seen, n = congested(limit)
    assert all(k <= lim for k, lim in seen)           # in flight never above the limit
    accounted(rec, gw, n)
    # It found the backend's knee: latency <= 2 ms means <= 8 in flight.
    late = [s for t, s in lat if t >= 0.5]
    assert sorted(late)[int(0.99 * len(late))] <= 2.5 * MS
    assert 6 <= gw.limiter.limit <= 10
    assert gw.limiter.decreases > 0 and gw.limiter.increases > 0
    # Without the limit, 32 requests go at once and each takes ~8 ms.
    rec0, gw0, lat0, seen0, _ = congested(None)
    late0 = [s for t, s in lat0 if t >= 0.5]
    assert sorted(late0)[len(late0) // 2] >= 6 * MS
    assert max(k for k, _ in seen0) > 16
    accounted(rec0, gw0, n)
    # Same backend throughput either way (it has 4 cores), and the limited
    # gateway serves no fewer requests on time.
    assert rec.total().ontime >= 0.95 * rec0.total().ontime


def test_errors_cut_the_limit_and_it_recovers():
    limit = {"initial": 16, "min_limit": 2, "max_limit": 32, "latency_target": 5 * MS}

    def failing(now):
        return 0.3 <= now < 0.6

    rec, gw, lat, seen, n = congested(limit, load=0.9, duration=1.2, fail=failing)
    assert all(k <= lim for k, lim in seen)
    during = [lim for (k, lim), (t, _) in zip(seen, lat) if 0.45 <= t < 0.6]
    after = [lim for (k, lim), (t, _) in zip(seen, lat) if t >= 1.0]
    assert max(during) <= 3                 # failures drive it to the floor
    assert min(after) >= 8                  # and good completions bring it back
    accounted(rec, gw, n)
    assert rec.total().failed > 0
