"""The same gateway objects, live: MonotonicClock and worker processes."""
import pytest

from dataplane.clock import MonotonicClock
from dataplane.control import Gateway, Recorder, Service, ServiceEstimator, Stream, arrivals
from dataplane.control.errors import Reason
from dataplane.control.live import ExecutorPool, WorkerPool, calibrate, run_live

SVC = Service("const", 1e-3)


@pytest.fixture(scope="module", params=["executor", "pipes"])
def pool(request):
    """The project's executor (queues + rings) and the pipe baseline."""
    p = ExecutorPool(2) if request.param == "executor" else WorkerPool(2)
    yield p
    p.close()


def gateway(n=2):
    gw = Gateway(n, clock=MonotonicClock(), slots=2, estimator=ServiceEstimator(1e-3, 1.5e-3),
                 breaker={"p99_threshold": 0.5})
    gw.add_tenant("a", slo=0.05)
    gw.add_tenant("b", slo=0.1)
    return gw


def test_light_load_is_all_served(pool):
    gw = gateway()
    sched = arrivals([Stream("a", 150, SVC), Stream("b", 150, SVC)], 1.0, seed=1)
    rec, facts = run_live(gw, sched, pool)
    assert facts["unfinished"] == 0
    tot = rec.total()
    assert tot.offered == len(sched)
    assert tot.completed + tot.shed + sum(tot.rejected.values()) == tot.offered
    # At 15% load nothing is refused for load.  On a shared 2-core machine the
    # sender itself can stall past a request's deadline (50 ms): such a request
    # is refused as DEADLINE, as it should be, so that is only excluded when the
    # sender kept up.
    assert tot.rejected[Reason.OVERLOADED] == tot.rejected[Reason.CIRCUIT_OPEN] == 0
    if facts["sender_behind_max_ms"] < 25:
        assert tot.completed == tot.offered
    assert tot.completed >= 0.5 * tot.offered
    # Nothing is faster than its service time, measured from the scheduled send.
    assert tot.latency.get_min_value() >= 0.9e6


def test_overload_is_refused_and_accounted(pool):
    cap = calibrate(pool, SVC, 0.3)
    assert cap > 0
    gw = gateway()
    sched = arrivals([Stream("a", 1.5 * cap, SVC), Stream("b", 1.5 * cap, SVC)], 1.0, seed=2)
    rec, facts = run_live(gw, sched, pool, recorder=Recorder())
    tot = rec.total()
    assert tot.rejected[Reason.OVERLOADED] > 0 and sum(tot.rejected.values()) > 0.3 * tot.offered
    assert tot.admitted + sum(tot.rejected.values()) == tot.offered
    assert tot.admitted == tot.completed + tot.shed + facts["unfinished"]
    assert facts["unfinished"] == 0 and gw.inflight == 0 and gw.pending == 0
    # Stats kept by the gateway agree with the driver's.
    assert sum(gw.tenant_stats(t).completed for t in ("a", "b")) == tot.completed


@pytest.mark.parametrize("kind", ["executor", "pipes"])
def test_slow_worker_stretches_its_requests(kind):
    """``slow[i]`` makes worker i a degraded worker: each of its requests
    spins that many times its service time (a lower bound, whatever the load)."""
    Pool = ExecutorPool if kind == "executor" else WorkerPool
    with Pool(2, slow=[1.0, 4.0]) as p:
        p.send(0, 1, 0.002)
        p.send(1, 2, 0.002)
        spans = {}
        while len(spans) < 2:
            for rid, t0, t1 in p.collect(1.0):
                spans[rid] = t1 - t0
        assert spans[1] >= 0.002 and spans[2] >= 0.008  # without the factor: 2 ms


@pytest.mark.parametrize("kind", ["executor", "pipes"])
def test_waiting_workers_outnumber_the_cores_without_using_them(kind):
    """``work="wait"``: 8 workers on this 2-core machine run 8 requests of
    100 ms at once (one batch, not four) and leave the CPUs idle meanwhile."""
    import os
    import time

    Pool = ExecutorPool if kind == "executor" else WorkerPool
    with Pool(8, work="wait") as p:
        for w in range(8):  # every process started and answering first
            p.send(w, 1000 + w, 0.0)
        got = 0
        while got < 8:
            got += len(p.collect(1.0))
        cpu0, t0 = os.times(), time.perf_counter()
        for w in range(8):
            p.send(w, w, 0.1)
        spans = {}
        while len(spans) < 8:
            for rid, s, e in p.collect(1.0):
                spans[rid] = (s, e)
        wall = time.perf_counter() - t0
    # The workers are children: their CPU time counts once they are reaped,
    # which closing the pool does.
    cpu1 = os.times()
    assert all(e - s >= 0.1 for s, e in spans.values())
    assert wall < 0.35, f"8 waits of 100 ms took {wall:.3f} s: they did not overlap"
    used = (cpu1.user + cpu1.system + cpu1.children_user + cpu1.children_system
            - cpu0.user - cpu0.system - cpu0.children_user - cpu0.children_system)
    assert used < 0.3 * wall * 8, f"waiting workers used {used:.3f} s of CPU in {wall:.3f} s"


def test_unknown_work_kind_is_refused():
    with pytest.raises(ValueError, match="work must be one of"):
        ExecutorPool(1, work="nap")
    with pytest.raises(ValueError, match="work must be one of"):
        WorkerPool(1, work="nap")


def test_the_live_driver_freezes_only_for_its_run_and_completes_what_it_drains():
    """run_live freezes the heap for the run and thaws only its own freeze;
    requests still running when the drain time ends are completed at the
    gateway, so it can serve another run with exact worker accounts."""
    import gc

    with ExecutorPool(1, work="wait") as pool:
        gw = gateway(1)
        sched = arrivals([Stream("a", 20, Service("const", 0.2))], 0.1, seed=3)
        assert sched, "the schedule must send something"
        assert gc.get_freeze_count() == 0
        rec, facts = run_live(gw, sched, pool, drain=0.0)
        assert gc.get_freeze_count() == 0
        assert facts["unfinished"] >= 1  # the drain time ended with one running
        assert gw.inflight == 0 and gw.admission.n == gw.pending
        gc.freeze()  # the caller's own freeze stays
        try:
            run_live(gw, arrivals([Stream("a", 20, SVC)], 0.05, seed=4), pool)
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()
