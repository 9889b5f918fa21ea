"""Circuit breakers in virtual time: cut-off within a window, probes with
exponential back-off, recovery, and the gateway routing around open workers."""
import pytest

from dataplane.clock import VirtualClock
from dataplane.control import (
    BreakerState,
    CircuitBreaker,
    Gateway,
    InvalidRequest,
    Reason,
    Rejected,
    Request,
    Service,
    ServiceEstimator,
    Stream,
    arrivals,
    simulate,
)
from dataplane.control.recorder import Recorder

WINDOW = 1.0


def feed(br, clock, latency, seconds, rate=1000.0, ok=True, until_state=None):
    """Results at ``rate``/s for ``seconds`` (only when the breaker lets
    traffic through, as a gateway would); return the time ``until_state`` was
    first seen, or None."""
    end = clock.now() + seconds
    while clock.now() < end:
        if br.allow():
            br.record(latency, ok)
        if until_state is not None and br.state is until_state:
            return clock.now()
        clock.advance(1.0 / rate)
    return None


def test_slow_worker_cut_off_within_one_window_then_probed_and_restored():
    clock = VirtualClock()
    changes = []
    br = CircuitBreaker(clock=clock, window=WINDOW, p99_threshold=5e-3, backoff=0.25, probes=5,
                        on_change=lambda b, old, new: changes.append((clock.now(), new)))
    assert feed(br, clock, 1e-3, 3.0, until_state=BreakerState.OPEN) is None  # healthy: stays closed
    jump = clock.now()
    opened = feed(br, clock, 7e-3, 2.0, until_state=BreakerState.OPEN)
    assert opened is not None and opened - jump <= WINDOW
    # p99 > 5 ms as soon as more than 1% of the window's ~1000 results are slow.
    assert opened - jump < 0.05
    assert "latency" in br.last_trip_reason
    # Still slow: every probe fails and the back-off doubles: 0.25, 0.5, 1, 2 s.
    feed(br, clock, 7e-3, 4.0)
    opens = [t for t, s in changes if s is BreakerState.OPEN]
    half = [t for t, s in changes if s is BreakerState.HALF_OPEN]
    assert len(opens) >= 4 and len(half) >= 3
    gaps = [h - o for o, h in zip(opens, half)]
    for g, want in zip(gaps, (0.25, 0.5, 1.0, 2.0)):
        assert g == pytest.approx(want, abs=2e-3)
    # It recovers: the next probes succeed and it closes, back-off reset.
    recovered = clock.now()
    closed = feed(br, clock, 1e-3, 10.0, until_state=BreakerState.CLOSED)
    assert closed is not None and closed - recovered <= br.max_backoff
    assert br.backoff == br.base_backoff and br.window_samples == 0
    assert feed(br, clock, 1e-3, 2.0, until_state=BreakerState.OPEN) is None  # and stays closed


def test_error_rate_trips_and_min_samples_guard():
    clock = VirtualClock()
    br = CircuitBreaker(clock=clock, max_error_rate=0.2, min_samples=50)
    for _ in range(20):  # all failing, but too few to judge
        br.record(1e-3, ok=False)
        clock.advance(0.001)
    assert br.state is BreakerState.CLOSED
    for _ in range(200):
        br.record(1e-3, ok=True)
        clock.advance(0.001)
        br.record(1e-3, ok=False)
        clock.advance(0.001)
    assert br.state is BreakerState.OPEN and "error rate" in br.last_trip_reason


def test_old_results_leave_the_window():
    clock = VirtualClock()
    br = CircuitBreaker(clock=clock, window=1.0, p99_threshold=5e-3, min_samples=10)
    for _ in range(5):  # 5 slow results, then quiet for two windows
        br.record(9e-3)
        clock.advance(0.01)
    clock.advance(2.0)
    for _ in range(100):
        br.record(1e-3)
        clock.advance(0.001)
    assert br.state is BreakerState.CLOSED and br.window_samples == 100


def test_bad_settings():
    with pytest.raises(InvalidRequest):
        CircuitBreaker(clock=VirtualClock(), window=0)
    with pytest.raises(InvalidRequest):
        CircuitBreaker(clock=VirtualClock(), quantile=1.5)


def test_gateway_routes_around_a_slow_worker_in_virtual_time():
    """4 workers; worker 0's latency jumps from 1 ms to 7 ms at t=1 s and
    recovers at t=3 s.  It is cut off within one window, the others take the
    traffic, and it is probed and brought back after it recovers."""
    clock = VirtualClock()
    svc = Service("const", 1e-3)
    gw = Gateway(4, clock=clock, estimator=ServiceEstimator(1e-3, 1.5e-3),
                 breaker={"window": WINDOW, "p99_threshold": 5e-3, "backoff": 0.1})
    gw.add_tenant("t", slo=0.05)
    br0 = gw.breaker(0)
    log = []
    inner = br0.on_change
    br0.on_change = lambda b, old, new: (log.append((clock.now(), new)), inner(b, old, new))
    slow = (1.0, 3.0)
    per_worker_in_outage = {w: 0 for w in range(4)}

    def service_time(req, worker, now):
        if worker == 0 and slow[0] <= now < slow[1]:
            return 7e-3, True
        if slow[0] + 0.2 <= now < slow[1]:
            per_worker_in_outage[worker] += 1
        return 1e-3, True

    sched = arrivals([Stream("t", 2000.0, svc)], 5.0, seed=3)  # 50% of 4 workers
    rec = simulate(gw, clock, sched, recorder=Recorder(), service_time=service_time)

    opened = [t for t, s in log if s is BreakerState.OPEN]
    closed = [t for t, s in log if s is BreakerState.CLOSED]
    assert opened and slow[0] <= opened[0] <= slow[0] + WINDOW
    assert closed and closed[-1] > slow[1] and closed[-1] < slow[1] + 2.0
    assert br0.state is BreakerState.CLOSED
    # While open, worker 0 saw only probes; the healthy workers took the rest.
    assert per_worker_in_outage[0] < 0.02 * sum(per_worker_in_outage.values())
    assert gw.healthy_workers == [0, 1, 2, 3]
    t = rec.total()
    assert t.ontime >= 0.99 * t.offered


def test_circuit_open_rejection_carries_retry_after():
    clock = VirtualClock()
    gw = Gateway(2, clock=clock, breaker={"min_samples": 5, "backoff": 0.5})
    gw.add_tenant("t", slo=1.0)
    with pytest.raises(Rejected) as e:
        for _ in range(100):  # both workers fail everything
            gw.submit(Request("t"))
            r = gw.dispatch()
            if r is not None:
                gw.complete(r, 1e-3, ok=False)
            clock.advance(0.001)
    assert e.value.reason is Reason.CIRCUIT_OPEN
    assert gw.healthy_workers == []
    assert 0 < e.value.retry_after <= 0.5
    assert gw.tenant_stats("t").rejected[Reason.CIRCUIT_OPEN] == 1
    clock.advance(e.value.retry_after)
    gw.submit(Request("t"))  # a probe may go now
    assert gw.dispatch() is not None
