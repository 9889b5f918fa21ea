"""CoDel on the request queues (RFC 8289 adapted), in virtual time: the state
machine request by request, then through the gateway and the simulator."""
import math

import pytest

from dataplane.clock import VirtualClock
from dataplane.control import (
    CoDel,
    Gateway,
    InvalidRequest,
    Reason,
    Recorder,
    Request,
    Service,
    ServiceEstimator,
    Stream,
    arrivals,
    simulate,
)

MS = 1e-3
EXP = Service("exp", 1e-3)


def feed(cd, clock, sojourn, until, step=MS, backlog=1):
    """Dequeue one request every ``step`` until ``until``, each having waited
    ``sojourn`` (a number or a function of now); return the shed times."""
    shed = []
    while clock.now() + step <= until + 1e-12:
        clock.advance(step)
        now = clock.now()
        s = sojourn(now) if callable(sojourn) else sojourn
        if cd.should_shed(now - s, backlog=backlog):
            shed.append(now)
    return shed


def test_no_shedding_while_below_target():
    clock = VirtualClock()
    cd = CoDel(5 * MS, 100 * MS, clock=clock)
    # 4.9 ms, just under target, for two seconds: a burst-free queue is fine.
    assert feed(cd, clock, 4.9 * MS, 2.0) == []
    assert not cd.dropping and cd.drops == 0
    # Above target but for less than an interval, then back under: still nothing.
    assert feed(cd, clock, 50 * MS, clock.now() + 0.09) == []
    assert feed(cd, clock, 1 * MS, clock.now() + 0.01) == []
    assert feed(cd, clock, 50 * MS, clock.now() + 0.09) == []
    assert cd.drops == 0


def test_enters_after_a_full_interval_and_sheds_faster_by_the_control_law():
    clock = VirtualClock()
    interval = 100 * MS
    cd = CoDel(5 * MS, interval, ceiling=None, clock=clock)   # plain RFC 8289
    shed = feed(cd, clock, 8 * MS, 1.0)
    first_above = 1 * MS  # the first dequeue above target
    # Not one shed before the sojourn has been above target for an interval.
    assert shed[0] == pytest.approx(first_above + interval)
    assert cd.dropping
    # Then shed k+1 comes interval/sqrt(k) after shed k: 100, 70.7, 57.7,
    # 50 ms... (ideal times; a dequeue every 1 ms carries each one out up to
    # 1 ms late).
    ideal = shed[0]
    for k, t in enumerate(shed[1:], start=1):
        ideal += interval / math.sqrt(k)
        assert ideal - 1e-9 <= t < ideal + MS + 1e-9
    gaps = [b - a for a, b in zip(shed, shed[1:])]
    assert len(shed) >= 10
    assert gaps[0] > 0.099 and gaps[1] < 0.072 and gaps[-1] < 0.036
    assert all(b <= a + MS + 1e-9 for a, b in zip(gaps, gaps[1:]))  # never slower again
    assert cd.count == len(shed) == cd.law_drops


def test_leaves_when_delay_drops_and_resumes_the_old_rate():
    clock = VirtualClock()
    cd = CoDel(5 * MS, 100 * MS, ceiling=None, clock=clock)
    shed = feed(cd, clock, 20 * MS, 0.6)
    count = cd.count
    assert cd.dropping and count >= 5
    # One request under target ends the dropping state at once.
    assert feed(cd, clock, 2 * MS, clock.now() + MS) == []
    assert not cd.dropping
    t_back = clock.now()
    # Above target again: a whole interval passes before the next shed...
    again = feed(cd, clock, 20 * MS, clock.now() + 0.3)
    assert again[0] == pytest.approx(t_back + MS + 0.1)
    # ...and it resumes near the old rate (RFC 8289's count - lastcount),
    # not at one shed per interval.
    assert cd.count > 1
    assert again[1] - again[0] < 0.1 / math.sqrt(2) - 0.01
    assert len(shed) == count


def test_empty_queue_is_never_standing():
    clock = VirtualClock()
    cd = CoDel(5 * MS, 100 * MS, clock=clock)
    # However long each request waited, the last one in the queue is served.
    assert feed(cd, clock, 50 * MS, 1.0, backlog=0) == []
    shed = feed(cd, clock, 50 * MS, 1.2)
    # A fresh interval from the first request with a queue behind it.
    assert shed and shed[0] == pytest.approx(1.101, abs=1.5 * MS)
    cd.empty()
    assert not cd.dropping


def test_ceiling_caps_the_delay_while_dropping():
    clock = VirtualClock()
    cd = CoDel(5 * MS, 100 * MS, clock=clock)   # ceiling 2 x target
    assert cd.ceiling == pytest.approx(10 * MS)
    # 7 ms: above target, under the ceiling -- only the control law sheds,
    # exactly as plain RFC 8289 does.
    law = feed(cd, clock, 7 * MS, 0.5)
    clock2 = VirtualClock()
    assert law == feed(CoDel(5 * MS, 100 * MS, ceiling=None, clock=clock2), clock2, 7 * MS, 0.5)
    assert len(law) == 7 and cd.drops == cd.law_drops
    # 12 ms while dropping: every request is over the ceiling and is shed.
    n = cd.drops
    over = feed(cd, clock, 12 * MS, clock.now() + 0.05)
    assert len(over) == 50 and cd.drops == n + 50
    assert cd.count < 10   # ceiling sheds do not speed up the control law


@pytest.mark.parametrize("kw", [
    {"target": 0}, {"target": -1e-3}, {"target": math.nan}, {"target": math.inf},
    {"interval": 0}, {"interval": "x"}, {"target": 0.2, "interval": 0.1}, {"target": 0.1, "interval": 0.1},
    {"ceiling": 1e-3}, {"ceiling": -1.0},
])
def test_bad_arguments(kw):
    with pytest.raises(InvalidRequest):
        CoDel(clock=VirtualClock(), **kw)


def test_bad_arguments_need_a_clock_and_gateway_options():
    with pytest.raises(InvalidRequest):
        CoDel(5 * MS, 100 * MS, clock=None)
    with pytest.raises(InvalidRequest):
        Gateway(2, clock=VirtualClock(), codel={"target": -1})
    with pytest.raises(InvalidRequest):
        Gateway(2, clock=VirtualClock(), codel={"tagret": 0.005})
    with pytest.raises(InvalidRequest):
        Gateway(2, clock=VirtualClock(), codel=0.005)
    gw = Gateway(2, clock=VirtualClock())
    gw.add_tenant("a")
    assert gw.codel("a") is None and gw.codel_drops == 0   # off by default


def test_gateway_sheds_at_dequeue_with_reason_overloaded():
    clock = VirtualClock()
    drops = []
    gw = Gateway(1, clock=clock, admission=False, shed_expired=False, codel={"target": 5 * MS, "interval": 50 * MS},
                 on_drop=lambda r, why: drops.append((r, why)))
    gw.add_tenant("a", slo=10.0)
    for _ in range(100):
        gw.submit(Request("a"))
    served = 0
    while gw.pending:
        clock.advance(MS)
        r = gw.dispatch()
        if r is not None:
            served += 1
            gw.complete(r, MS)
    assert drops and {why for _, why in drops} == {Reason.OVERLOADED}
    assert len(drops) == gw.codel_drops == gw.tenant_stats("a").shed
    assert served + len(drops) == 100 == gw.tenant_stats("a").submitted
    assert gw.inflight == 0 and gw.pending == 0
    # The first 50 ms are the interval of grace: nothing shed before it.
    assert served >= 50


def simulate_overload(load, codel, *, servers=4, duration=1.5, scheduler="drr", admission=False):
    clock = VirtualClock()
    gw = Gateway(servers, clock=clock, scheduler=scheduler, admission=admission, shed_expired=admission,
                 estimator=ServiceEstimator(EXP.mean, 5 * EXP.mean), breaker={"p99_threshold": 10e-3}, codel=codel)
    gw.add_tenant("a", slo=0.02)
    gw.add_tenant("b", slo=0.05)
    delays = []   # queue delay of every served request: dispatch - arrival

    def service(req, worker, now):
        delays.append((now, now - req.arrival))
        return req.payload[0], True

    dropped = []
    gw.on_drop = lambda r, why: dropped.append(why)
    cap = servers / EXP.mean
    sched = arrivals([Stream(t, load * cap / 2, EXP) for t in "ab"], duration, seed=3)
    rec = simulate(gw, clock, sched, recorder=Recorder(0.0, math.inf), service_time=service)
    return rec, gw, delays, dropped, len(sched)


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


@pytest.mark.parametrize("load", [1.5, 3.0])
def test_overload_queue_delay_held_near_target_vs_growing_without(load):
    target = 5 * MS
    rec, gw, delays, dropped, n = simulate_overload(load, {"target": target, "interval": 0.1})
    after = [d for t, d in delays if t >= 0.3]          # past the first interval and its backlog
    assert quantile(after, 0.9) <= 2 * target + 0.5 * MS   # held at the ceiling, 2 x target
    assert quantile(after, 0.5) >= target                  # it is a standing queue, not an empty one
    # A dip below target ends the dropping state, and the next interval of
    # grace lets the delay climb by about interval x (1 - 1/load) before
    # shedding resumes: the worst case, never the typical one.
    assert max(after) <= 2 * target + 0.1 * (1 - 1 / load) + 5 * MS
    tot = rec.total()
    # Goodput: the served requests make their deadline.
    assert tot.ontime >= 0.95 * tot.completed
    # Every request accounted for: served + shed + rejected == submitted.
    st = gw.totals()
    assert st.completed + st.failed + st.shed + st.evicted + sum(st.rejected.values()) == st.submitted == n
    assert tot.completed + tot.failed + tot.shed + sum(tot.rejected.values()) == tot.offered == n
    assert gw.pending == 0 and gw.inflight == 0
    assert dropped.count(Reason.OVERLOADED) == gw.codel_drops > 0
    assert st.shed == len(dropped)

    # The same load without CoDel: the queue delay grows to the queues' bound.
    rec0, gw0, delays0, _, _ = simulate_overload(load, None)
    after0 = [d for t, d in delays0 if t >= 0.3]
    assert quantile(after0, 0.5) > 20 * quantile(after, 0.5)
    late = [d for t, d in delays0 if t >= 1.0]
    early = [d for t, d in delays0 if 0.1 <= t < 0.2]
    assert sum(late) / len(late) > 2 * sum(early) / len(early)   # and it grew over the run
    assert rec0.total().ontime < 0.3 * rec0.total().completed


def test_light_load_is_untouched():
    # Under capacity a queue forms only in bursts: CoDel never drops.
    rec, gw, delays, dropped, n = simulate_overload(0.7, {"target": 5 * MS, "interval": 0.1})
    assert gw.codel_drops == 0 and dropped == []
    assert rec.total().completed == n


@pytest.mark.parametrize("scheduler", ["wfq", "fifo"])
def test_other_schedulers_and_with_admission(scheduler):
    rec, gw, delays, dropped, n = simulate_overload(3.0, {"target": 5 * MS, "interval": 0.1}, scheduler=scheduler,
                                                    duration=1.0)
    after = [d for t, d in delays if t >= 0.3]
    assert quantile(after, 0.99) <= 10.5 * MS
    if scheduler == "fifo":   # one queue: one CoDel shared by the tenants
        assert gw.codel("a") is gw.codel("b")
    else:
        assert gw.codel("a") is not gw.codel("b")
    st = gw.totals()
    assert st.completed + st.shed + sum(st.rejected.values()) == st.submitted == n
    # Together with admission control (whose own sheds carry DEADLINE).
    rec, gw, delays, dropped, n = simulate_overload(3.0, {"target": 5 * MS, "interval": 0.1}, scheduler=scheduler,
                                                    duration=1.0, admission=True)
    st = gw.totals()
    assert st.completed + st.shed + sum(st.rejected.values()) == st.submitted == n
    assert set(dropped) <= {Reason.OVERLOADED, Reason.DEADLINE}
    assert st.shed == len(dropped)
