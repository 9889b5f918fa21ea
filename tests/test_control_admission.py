"""Admission: it never admits a request whose deadline it already knows it
cannot meet, rejects only then, keeps exact work accounts, and turns bad input
into clear errors."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.clock import VirtualClock
from dataplane.control import (
    AdmissionController,
    DeadlineInPast,
    Gateway,
    InvalidRequest,
    Reason,
    Rejected,
    Request,
    ServiceEstimator,
    UnknownTenant,
)

WEIGHTS = {"a": 1.0, "b": 2.0, "c": 4.0}

op_st = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(sorted(WEIGHTS)), st.floats(1e-4, 0.05),
              st.sampled_from([None, "x", "y"])),
    st.tuples(st.just("advance"), st.floats(0.0, 0.01)),
    st.tuples(st.just("dispatch")),
    st.tuples(st.just("complete"), st.integers(0, 50), st.floats(1e-4, 8e-3)),
)


@pytest.mark.parametrize("scheduler", ["drr", "wfq", "fifo"])
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(op_st, max_size=150))
def test_admits_exactly_the_requests_predicted_to_meet_their_deadline(scheduler, ops):
    clock = VirtualClock(10.0)
    est = ServiceEstimator(1e-3, 3e-3, window=16, warmup=4)
    gw = Gateway(2, clock=clock, scheduler=scheduler, estimator=est, breaker=None)
    for t, w in WEIGHTS.items():
        gw.add_tenant(t, w, slo=0.02)
    queued: dict[Request, str] = {}  # the test's own books
    inflight: list[Request] = []
    gw.on_drop = lambda req, reason: queued.pop(req)
    fair = scheduler != "fifo"
    for op in ops:
        if op[0] == "submit":
            _, tenant, budget, klass = op
            now = clock.now()
            e = est.get(tenant if klass is None else klass)
            deadline = now + budget
            q_i = sum(r.est for r, t in queued.items() if t == tenant)
            n = len(queued) + len(inflight)
            work_inflight = sum(r.est for r in inflight)
            w = WEIGHTS[tenant]
            W = gw.scheduler.active_weight + (0.0 if q_i > 0 else w)
            if n < 2:
                finish = now + e.upper
            elif fair:
                finish = now + ((q_i + e.mean) * W / w - e.mean + work_inflight) / 2 + e.upper
            else:
                finish = now + (sum(r.est for r in queued) + work_inflight) / 2 + e.upper
            req = Request(tenant, 1.0, deadline, klass=klass)
            try:
                gw.submit(req)
            except Rejected as exc:
                assert finish > deadline - 1e-12, "rejected a request predicted to make it"
                if now + e.upper > deadline:
                    assert exc.reason is Reason.DEADLINE and exc.retry_after is None
                else:
                    assert exc.reason is Reason.OVERLOADED
                    assert exc.retry_after == pytest.approx(finish - deadline, rel=1e-6, abs=1e-12)
            else:
                assert finish <= deadline + 1e-12, "admitted a request it knew would be late"
                assert req.est == e.mean and req.upper == e.upper
                queued[req] = tenant
        elif op[0] == "advance":
            clock.advance(op[1])
        elif op[0] == "dispatch":
            r = gw.dispatch()
            if r is not None:
                assert clock.now() + r.upper <= r.deadline  # never dispatched to be late
                queued.pop(r)
                inflight.append(r)
        elif inflight:
            r = inflight.pop(op[1] % len(inflight))
            gw.complete(r, op[2])
        adm = gw.admission
        assert adm.n == len(queued) + len(inflight)
        assert adm.queued == pytest.approx(sum(r.est for r in queued), abs=1e-12)
        assert adm.inflight == pytest.approx(sum(r.est for r in inflight), abs=1e-12)
        assert len(gw.scheduler) == len(queued)


def test_reasons_the_caller_can_act_on():
    clock = VirtualClock()
    gw = Gateway(1, clock=clock, estimator=ServiceEstimator(1e-3, 2e-3), breaker=None)
    gw.add_tenant("t", slo=0.01)
    with pytest.raises(Rejected) as e:
        gw.submit(Request("t", deadline=clock.now() + 1.5e-3))
    assert e.value.reason is Reason.DEADLINE and e.value.retry_after is None
    assert "shorter than the estimated service time" in str(e.value)
    admitted = 0
    with pytest.raises(Rejected) as e:
        for _ in range(100):
            gw.submit(Request("t"))
            admitted += 1
    assert e.value.reason is Reason.OVERLOADED and e.value.retry_after > 0
    assert "misses the deadline" in str(e.value)
    # The queue then holds what one server can finish within the SLO.
    assert 5 <= admitted <= 10
    # Waiting as advised (and the work ahead being done) lets the next one in.
    clock.advance(e.value.retry_after)
    for _ in range(2):
        r = gw.dispatch()
        gw.complete(r, 1e-3)
    gw.submit(Request("t"))


def test_rate_limit_reason_and_retry_after():
    clock = VirtualClock()
    gw = Gateway(4, clock=clock, breaker=None)
    gw.add_tenant("t", slo=1.0, rate=100.0, burst=2.0)
    gw.submit(Request("t"))
    gw.submit(Request("t"))
    with pytest.raises(Rejected) as e:
        gw.submit(Request("t"))
    assert e.value.reason is Reason.RATE_LIMITED
    assert e.value.retry_after == pytest.approx(0.01)
    clock.advance(0.01)
    gw.submit(Request("t"))


@pytest.mark.parametrize("slo", [0.02, 0.2])
def test_a_noisy_backlog_does_not_make_a_light_tenant_look_late(slo):
    clock = VirtualClock()
    gw = Gateway(2, clock=clock, estimator=ServiceEstimator(1e-3, 2e-3), breaker=None)
    gw.add_tenant("noisy", slo=slo)
    gw.add_tenant("light", slo=0.01)
    with pytest.raises(Rejected):
        while True:
            gw.submit(Request("noisy"))
    gw.submit(Request("light"))  # its share of the servers is free for it


def test_bad_input_gets_clear_errors():
    clock = VirtualClock(5.0)
    gw = Gateway(1, clock=clock)
    gw.add_tenant("t")
    with pytest.raises(DeadlineInPast, match="in the past") as e:
        gw.submit(Request("t", deadline=4.0))
    assert isinstance(e.value, InvalidRequest) and isinstance(e.value, Rejected)
    assert e.value.reason is Reason.DEADLINE
    with pytest.raises(DeadlineInPast):
        gw.submit(Request("t", deadline=5.0))  # "now" is already too late
    for bad in (math.nan, "soon"):
        with pytest.raises(InvalidRequest, match="deadline must be a number"):
            gw.submit(Request("t", deadline=bad))
    for bad in (math.nan, -1.0, math.inf, "1"):
        with pytest.raises(InvalidRequest, match="cost"):
            gw.submit(Request("t", cost=bad))
    with pytest.raises(UnknownTenant, match="'nobody'"):
        gw.submit(Request("nobody"))
    for bad in (0, -1, math.nan):
        with pytest.raises(InvalidRequest, match="weight"):
            gw.add_tenant(f"w{bad}", bad)
        with pytest.raises(InvalidRequest, match="weight"):
            gw.set_weight("t", bad)
    with pytest.raises(InvalidRequest, match="slo"):
        gw.add_tenant("s", slo=0)
    assert len(gw.scheduler) == 0 and gw.admission.n == 0  # nothing half-admitted
    lenient = Gateway(1, clock=clock, strict=False, default_weight=2.0)
    lenient.submit(Request("newcomer"))
    assert lenient.weight("newcomer") == 2.0 and lenient.pending == 1
    with pytest.raises(InvalidRequest):
        AdmissionController(0)


def test_a_data_path_rejection_is_a_whole_rejected():
    """``rejection()`` skips ``__init__``: the object must still be a complete
    Rejected (reason, retry_after, lazy text, pickling) like the constructor's."""
    import pickle

    from dataplane.control.errors import Reason, rejection

    calls = []

    def text():
        calls.append(1)
        return "predicted late"

    fast = rejection(Reason.OVERLOADED, text, 0.002)
    slow = Rejected(Reason.OVERLOADED, "predicted late", retry_after=0.002)
    assert type(fast) is Rejected and fast.reason is Reason.OVERLOADED and fast.retry_after == 0.002
    assert not calls  # the text is built only when read
    assert str(fast) == str(slow) == "overloaded: predicted late (retry after 2 ms)"
    assert str(fast) == str(slow) and len(calls) == 1  # and only once
    back = pickle.loads(pickle.dumps(fast))
    assert back.reason is Reason.OVERLOADED and back.retry_after == 0.002 and str(back) == str(slow)
    assert str(rejection(Reason.DEADLINE)) == "deadline"


def test_every_rejection_pickles_and_copies_with_its_text():
    """Rejections cross processes (a handler's error, a result): each kind,
    lazy text not yet read included, survives pickle and copy whole."""
    import copy
    import pickle

    from dataplane.control.errors import DeadlineInPast, QueueFull, Reason, rejection

    made = [rejection(Reason.OVERLOADED, lambda: "predicted late", 0.002),  # text never read
            Rejected(Reason.RATE_LIMITED, "over its rate", retry_after=0.5),
            QueueFull("queue full (4)", 0.25),
            DeadlineInPast("deadline 1.0 is 3 ms in the past")]
    for exc in made:
        for twin in (pickle.loads(pickle.dumps(exc)), copy.copy(exc)):
            assert type(twin) is type(exc)
            assert (twin.reason, twin.retry_after, str(twin)) == (exc.reason, exc.retry_after, str(exc))
            assert isinstance(twin, Rejected)
    assert str(made[0]) == "overloaded: predicted late (retry after 2 ms)"
    assert "predicted late" in repr(made[0]) and "lambda" not in repr(made[0])


def test_a_rate_limit_refusal_names_the_rate_it_was_refused_at():
    """The text is built lazily, from the rate at refusal time, not later."""
    from dataplane.clock import VirtualClock
    from dataplane.control import Gateway, Request

    gw = Gateway(1, clock=VirtualClock())
    gw.add_tenant("a", slo=1.0, rate=5.0, burst=1.0)
    gw.submit(Request("a"))
    with pytest.raises(Rejected) as e:
        gw.submit(Request("a"))
    gw.set_rate("a", 50.0)
    assert e.value.reason is Reason.RATE_LIMITED and "rate of 5/s" in str(e.value)
