"""WFQ (self-clocked virtual finish times): against its definition, shares, bad input."""
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.control import InvalidRequest, QueueFull, UnknownTenant, WFQScheduler


class Item:
    __slots__ = ("tenant", "cost", "deadline", "n")
    counter = itertools.count()

    def __init__(self, tenant, cost=1.0):
        self.tenant, self.cost, self.deadline = tenant, cost, None
        self.n = next(Item.counter)


class RefWFQ:
    """SCFQ by the book: on arrival, F = max(V, F_prev of the tenant) + cost/weight;
    serve the smallest F (ties: the tenant added first, then arrival order);
    V becomes the served request's F."""

    def __init__(self, weights):
        self.w = dict(weights)
        self.index = {t: k for k, t in enumerate(weights)}
        self.last = {t: 0.0 for t in weights}
        self.V = 0.0
        self.queued = []
        self.seq = itertools.count()

    def enqueue(self, item):
        t = item.tenant
        tag = max(self.V, self.last[t]) + item.cost / self.w[t]
        self.last[t] = tag
        self.queued.append((tag, self.index[t], next(self.seq), item))

    def dequeue(self):
        if not self.queued:
            return None
        best = min(self.queued, key=lambda e: e[:3])
        self.queued.remove(best)
        self.V = best[0]
        return best[3]


ops_st = st.lists(st.one_of(st.tuples(st.just("enq"), st.integers(0, 3),
                                      st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])),
                            st.just(("deq",))), max_size=120)


@settings(max_examples=80, deadline=None)
@given(weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0]), min_size=1, max_size=4), ops=ops_st)
def test_wfq_matches_definition(weights, ops):
    ws = dict(enumerate(weights))
    wfq = WFQScheduler(capacity=10_000)
    ref = RefWFQ(ws)
    for t, w in ws.items():
        wfq.add_tenant(t, w)
    for op in ops + [("deq",)] * 130:
        if op[0] == "enq":
            item = Item(op[1] % len(ws), op[2])
            wfq.enqueue(item)
            ref.enqueue(item)
        else:
            assert wfq.dequeue() is ref.dequeue()
            assert wfq.vtime == ref.V
    assert len(wfq) == 0 and wfq.active_weight == pytest.approx(0.0)


def test_shares_follow_weights_and_changes():
    wfq = WFQScheduler(capacity=100_000)
    for t, w in (("a", 1), ("b", 2), ("c", 4)):
        wfq.add_tenant(t, w)
        for _ in range(20_000):
            wfq.enqueue(Item(t))
    got = {"a": 0, "b": 0, "c": 0}
    for _ in range(7_000):
        got[wfq.dequeue().tenant] += 1
    assert all(abs(got[t] - n) <= 1 for t, n in (("a", 1000), ("b", 2000), ("c", 4000)))
    wfq.set_weight("a", 4)
    wfq.set_weight("c", 1)
    got = {"a": 0, "b": 0, "c": 0}
    for _ in range(7_000):
        got[wfq.dequeue().tenant] += 1
    assert abs(got["a"] - 4000) <= 8 and abs(got["b"] - 2000) <= 8 and abs(got["c"] - 1000) <= 8


def test_wfq_interleaves_finer_than_drr_bursts():
    # Weight 3 vs 1 with costs 1: WFQ never serves more than 3 of "a" in a row.
    wfq = WFQScheduler()
    wfq.add_tenant("a", 3)
    wfq.add_tenant("b", 1)
    for _ in range(30):
        wfq.enqueue(Item("a"))
        wfq.enqueue(Item("b"))
    order = "".join(wfq.dequeue().tenant for _ in range(40))
    assert "aaaa" not in order and "bb" not in order


def test_refund_undoes_the_charge():
    wfq = WFQScheduler()
    wfq.add_tenant("a")
    wfq.add_tenant("b")
    for _ in range(3):
        wfq.enqueue(Item("a"))
        wfq.enqueue(Item("b"))
    x = wfq.dequeue()
    assert x.tenant == "a" and wfq.vtime == 1.0
    wfq.refund(x)
    assert wfq.vtime == 0.0
    assert wfq.dequeue().tenant == "a"  # as if the shed one had never been queued


def test_bounded_queue_and_bad_input():
    wfq = WFQScheduler(capacity=1)
    wfq.add_tenant("a")
    wfq.enqueue(Item("a"))
    with pytest.raises(QueueFull):
        wfq.enqueue(Item("a"))
    with pytest.raises(UnknownTenant):
        wfq.enqueue(Item("zz"))
    for bad in (0, -2, math.nan):
        with pytest.raises(InvalidRequest, match="weight"):
            wfq.add_tenant(f"t{bad}", bad)
    for bad in (-1, math.nan, math.inf):
        with pytest.raises(InvalidRequest, match="cost"):
            wfq.enqueue(Item("a", bad))
    assert len(wfq) == 1
