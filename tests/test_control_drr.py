"""DRR: against the textbook algorithm, its fairness bound, weights, queues, bad input."""
import itertools
import math
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.control import (
    DRRScheduler,
    InvalidRequest,
    QueueFull,
    ShedPolicy,
    UnknownTenant,
)


class Item:
    __slots__ = ("tenant", "cost", "deadline", "n")
    counter = itertools.count()

    def __init__(self, tenant, cost=1.0, deadline=None):
        self.tenant, self.cost, self.deadline = tenant, cost, deadline
        self.n = next(Item.counter)

    def __repr__(self):
        return f"Item({self.tenant}, {self.cost}, #{self.n})"


class RefDRR:
    """Shreedhar & Varghese's DRR, per request: a turn starts by adding the
    tenant's quantum to its deficit counter, serves head requests while they
    fit, and ends when the next one does not fit (the tenant goes to the tail)
    or the queue empties (the tenant leaves the list, its counter reset)."""

    def __init__(self, quantum, weights):
        self.Q = {t: quantum * w for t, w in weights.items()}
        self.queue = {t: deque() for t in weights}
        self.DC = {t: 0.0 for t in weights}
        self.active = deque()
        self.in_turn = False

    def enqueue(self, item):
        if item.tenant not in self.active:
            self.active.append(item.tenant)
        self.queue[item.tenant].append(item)

    def dequeue(self):
        while self.active:
            i = self.active[0]
            if not self.in_turn:
                self.DC[i] += self.Q[i]
                self.in_turn = True
            if self.queue[i][0].cost <= self.DC[i]:
                item = self.queue[i].popleft()
                self.DC[i] -= item.cost
                if not self.queue[i]:
                    self.DC[i] = 0.0
                    self.active.popleft()
                    self.in_turn = False
                return item
            self.active.rotate(-1)
            self.in_turn = False
        return None


class RefDRRSparse:
    """DRR with RFC 8290's new/old lists: a tenant that becomes backlogged
    joins the new list with one quantum; the new list is served first; a new
    tenant that used its quantum goes to the old list's tail; one that empties
    is parked at the old list's tail (or leaves if that list is empty); an
    empty tenant found at the old list's head leaves."""

    def __init__(self, quantum, weights):
        self.Q = {t: quantum * w for t, w in weights.items()}
        self.queue = {t: deque() for t in weights}
        self.DC = {t: 0.0 for t in weights}
        self.new, self.old = deque(), deque()
        self.in_turn = False  # the old list's head has had its quantum

    def enqueue(self, item):
        t = item.tenant
        if t not in self.new and t not in self.old:
            self.new.append(t)
            self.DC[t] = self.Q[t]
        self.queue[t].append(item)

    def _to_old(self, t):
        self.old.append(t)

    def dequeue(self):
        while self.new:
            i = self.new[0]
            if self.queue[i] and self.queue[i][0].cost <= self.DC[i]:
                item = self.queue[i].popleft()
                self.DC[i] -= item.cost
                if not self.queue[i]:
                    self.new.popleft()
                    if self.old:
                        self._to_old(i)
                    else:
                        self.DC[i] = 0.0
                return item
            self.new.popleft()
            if not self.queue[i] and not self.old:
                self.DC[i] = 0.0
                continue
            self._to_old(i)
        while self.old:
            i = self.old[0]
            if not self.in_turn:
                self.DC[i] += self.Q[i]
                self.in_turn = True
            if not self.queue[i]:
                self.DC[i] = 0.0
                self.old.popleft()
                self.in_turn = False
                continue
            if self.queue[i][0].cost <= self.DC[i]:
                item = self.queue[i].popleft()
                self.DC[i] -= item.cost
                if not self.queue[i]:
                    self.DC[i] = 0.0
                    self.old.popleft()
                    self.in_turn = False
                return item
            self.old.rotate(-1)
            self.in_turn = False
        return None


weights_st = st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0]), min_size=1, max_size=4)
cost_st = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0])
ops_st = st.lists(st.one_of(st.tuples(st.just("enq"), st.integers(0, 3), cost_st), st.just(("deq",))),
                  max_size=120)


@pytest.mark.parametrize("sparse", [False, True])
@settings(max_examples=60, deadline=None)
@given(weights=weights_st, quantum=st.sampled_from([0.5, 1.0, 3.0]), ops=ops_st)
def test_drr_matches_definition(sparse, weights, quantum, ops):
    """Any interleaving of arrivals and dequeues gives the reference's order."""
    ws = {t: w for t, w in enumerate(weights)}
    drr = DRRScheduler(quantum, sparse=sparse, capacity=10_000)
    ref = (RefDRRSparse if sparse else RefDRR)(quantum, ws)
    for t, w in ws.items():
        drr.add_tenant(t, w)
    for op in ops + [("deq",)] * 130:
        if op[0] == "enq":
            item = Item(op[1] % len(ws), op[2])
            drr.enqueue(item)
            ref.enqueue(item)
        else:
            assert drr.dequeue() is ref.dequeue()
        assert len(drr) == sum(len(q) for q in ref.queue.values())
    assert drr.dequeue() is None and len(drr) == 0 and drr.active_weight == pytest.approx(0.0)


def _filled(quantum, sparse, weights, costs):
    """A DRR with tenant t of weights[t] holding requests of costs[t]."""
    drr = DRRScheduler(quantum, sparse=sparse, capacity=1000)
    for t, w in enumerate(weights):
        drr.add_tenant(t, w)
    for t, cs in enumerate(costs[: len(weights)]):
        for c in cs:
            drr.enqueue(Item(t, c))
    return drr


def _backlogged_services(drr, n, limit=80):
    """Cumulative service per tenant after each dequeue, while all n stay backlogged."""
    served = [[0.0] * n]
    while len(served) < limit:
        it = drr.dequeue()
        row = list(served[-1])
        row[it.tenant] += it.cost
        served.append(row)
        if any(drr.backlog(t) == 0 for t in range(n)):
            break
    return served


def _worst_share_excess(served, weights, quantum, M):
    """max over intervals and tenants of |S_i - w_i/W * total| - (quantum*w_i + M)."""
    W, n, worst = sum(weights), len(weights), -math.inf
    for a in range(len(served)):
        for b in range(a + 1, len(served)):
            S = [served[b][t] - served[a][t] for t in range(n)]
            total = sum(S)
            for i in range(n):
                worst = max(worst, abs(S[i] - weights[i] / W * total) - (quantum * weights[i] + M))
    return worst


@pytest.mark.parametrize("sparse", [False, True])
@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=4),
       quantum=st.sampled_from([0.5, 1.0, 2.0]),
       costs=st.lists(st.lists(st.floats(0.05, 2.0), min_size=50, max_size=50), min_size=4, max_size=4))
def test_drr_fairness_bound(sparse, weights, quantum, costs):
    """Over every interval in which all tenants stay backlogged, per-weight
    services differ by less than quantum + M/w_i + M/w_j (M: largest cost),
    and each tenant's service is within its derived weighted-share bound."""
    n = len(weights)
    drr = _filled(quantum, sparse, weights, costs)
    M = max(max(costs[t]) for t in range(n))
    served = _backlogged_services(drr, n)
    W = sum(weights)
    for a in range(len(served)):
        for b in range(a + 1, len(served)):
            S = [served[b][t] - served[a][t] for t in range(n)]
            total = sum(S)
            for i in range(n):
                for j in range(n):
                    if i != j:
                        gap = abs(S[i] / weights[i] - S[j] / weights[j])
                        assert gap < quantum + M / weights[i] + M / weights[j] + 1e-9, (i, j, a, b)
                # Summing the pairwise bound, weighted: the share of the total.
                wi = weights[i]
                share_bound = (W - wi) / W * (quantum * wi + M) + (n - 1) * wi / W * M
                assert abs(S[i] - wi / W * total) < share_bound + 1e-9


@pytest.mark.parametrize("sparse", [False, True])
@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=5),
       factor=st.sampled_from([1.0, 1.5, 2.0]),
       costs=st.lists(st.lists(st.one_of(st.just(1.0), st.just(0.01), st.floats(0.01, 1.0)), min_size=40, max_size=40),
                      min_size=5, max_size=5))
def test_drr_share_bound_as_the_issue_words_it(sparse, weights, factor, costs):
    """The issue's wording: over any backlogged interval each tenant's
    service stays within one quantum (its own, quantum * w_i) plus one
    maximum request of its weighted share of the total.  It holds when every
    tenant's quantum covers the largest request (DRR's own precondition for
    serving one request per turn); the next test shows it can fail below."""
    n = len(weights)
    M = max(max(costs[t]) for t in range(n))
    quantum = factor * M / min(weights)
    drr = _filled(quantum, sparse, weights, costs)
    assert _worst_share_excess(_backlogged_services(drr, n), weights, quantum, M) <= 1e-9


def test_drr_share_bound_needs_each_quantum_to_cover_the_largest_request():
    """Weights 0.5 with base quantum 1 give each tenant 0.5 per turn, less
    than a request of 1: tenant 2 is passed over for a turn, and its share
    falls 0.005 further behind than one quantum plus one request (found by
    search; the pairwise bound above still holds)."""
    costs = [[0.01, 0.01, 1.0, 1.0, 1.0, 1.0, 1.0, 0.01, 0.01, 0.5],
             [0.01, 0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 0.01, 1.0],
             [1.0, 1.0, 0.01, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0],
             [0.5, 0.01, 0.01, 1.0, 0.01, 1.0, 0.01, 1.0, 1.0, 0.5]]
    weights = [0.5] * 4
    drr = _filled(1.0, True, weights, costs)
    excess = _worst_share_excess(_backlogged_services(drr, 4), weights, 1.0, 1.0)
    assert excess == pytest.approx(0.005, abs=1e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_long_run_shares_follow_weights_and_changes(sparse):
    drr = DRRScheduler(1.0, sparse=sparse, capacity=100_000)
    for t, w in (("a", 1), ("b", 2), ("c", 4)):
        drr.add_tenant(t, w)
        for _ in range(20_000):
            drr.enqueue(Item(t))
    got = {"a": 0, "b": 0, "c": 0}
    for _ in range(7_000):
        got[drr.dequeue().tenant] += 1
    assert got == {"a": 1000, "b": 2000, "c": 4000}
    drr.set_weight("a", 4)  # weights change at run time
    drr.set_weight("c", 1)
    assert drr.active_weight == pytest.approx(7.0)
    got = {"a": 0, "b": 0, "c": 0}
    for _ in range(7_000):
        got[drr.dequeue().tenant] += 1
    assert abs(got["a"] - 4000) <= 4 and abs(got["b"] - 2000) <= 4 and abs(got["c"] - 1000) <= 4


def test_sparse_tenant_goes_first():
    drr = DRRScheduler(1.0, sparse=True)
    drr.add_tenant("heavy")
    drr.add_tenant("light")
    for _ in range(10):
        drr.enqueue(Item("heavy"))
    assert drr.dequeue().tenant == "heavy"
    drr.enqueue(Item("light"))
    assert drr.dequeue().tenant == "light"  # served before heavy's next turn
    plain = DRRScheduler(1.0, sparse=False)
    plain.add_tenant("heavy")
    plain.add_tenant("light")
    for _ in range(10):
        plain.enqueue(Item("heavy", 0.5))
    assert plain.dequeue().tenant == "heavy"
    plain.enqueue(Item("light"))
    assert plain.dequeue().tenant == "heavy"  # heavy's turn still has 0.5 of credit


def test_a_tenant_cannot_stay_new_by_trickling():
    drr = DRRScheduler(1.0, sparse=True)
    drr.add_tenant("heavy")
    drr.add_tenant("trickle")
    for _ in range(100):
        drr.enqueue(Item("heavy"))
    order = []
    for _ in range(20):
        drr.enqueue(Item("trickle"))  # one request, served, then another...
        order.append(drr.dequeue().tenant)
        order.append(drr.dequeue().tenant)
    # Parked after its first request, it gets about one turn per round, not priority.
    assert 9 <= order.count("trickle") <= 21
    assert order.count("heavy") >= 19


def test_refund_gives_the_share_back():
    drr = DRRScheduler(1.0, sparse=False)
    drr.add_tenant("a")
    drr.add_tenant("b")
    for _ in range(10):
        drr.enqueue(Item("a"))
        drr.enqueue(Item("b"))
    x = drr.dequeue()
    assert x.tenant == "a"
    drr.refund(x)  # shed, not served: a's turn goes on
    assert drr.dequeue().tenant == "a"
    assert drr.dequeue().tenant == "b"


def test_zero_cost_and_quantum_smaller_than_cost():
    drr = DRRScheduler(0.5, sparse=False)
    drr.add_tenant("a")
    drr.add_tenant("b")
    drr.enqueue(Item("a", 2.0))  # needs four turns of credit
    drr.enqueue(Item("b", 0.0))
    drr.enqueue(Item("b", 0.0))
    assert [drr.dequeue().tenant for _ in range(3)] == ["b", "b", "a"]
    assert drr.dequeue() is None


def test_bounded_queues_per_tenant():
    drr = DRRScheduler(capacity=2)
    drr.add_tenant("a")
    drr.add_tenant("b", capacity=3, policy=ShedPolicy.DROP_OLDEST)
    drr.enqueue(Item("a"))
    drr.enqueue(Item("a"))
    assert drr.queue("a").full and drr.queue("a").free == 0
    with pytest.raises(QueueFull) as e:
        drr.enqueue(Item("a"))
    assert e.value.reason.value == "overloaded"
    bs = [Item("b") for _ in range(4)]
    for it in bs[:3]:
        assert drr.enqueue(it) == ()
    assert drr.enqueue(bs[3]) == (bs[0],)  # the oldest is evicted and handed back
    assert drr.backlog("b") == 3 and len(drr) == 5


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, "x", None])
def test_bad_weights(bad):
    drr = DRRScheduler()
    with pytest.raises(InvalidRequest, match="weight"):
        drr.add_tenant("a", bad)
    drr.add_tenant("a")
    with pytest.raises(InvalidRequest, match="weight"):
        drr.set_weight("a", bad)
    assert drr.weight("a") == 1.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1", None])
def test_bad_costs(bad):
    drr = DRRScheduler()
    drr.add_tenant("a")
    with pytest.raises(InvalidRequest, match="cost"):
        drr.enqueue(Item("a", bad))
    assert len(drr) == 0


def test_unknown_tenant_strict_and_lenient():
    strict = DRRScheduler()
    with pytest.raises(UnknownTenant, match="'ghost'"):
        strict.enqueue(Item("ghost"))
    with pytest.raises(KeyError):  # UnknownTenant is also a KeyError
        strict.set_weight("ghost", 2)
    lenient = DRRScheduler(strict=False, default_weight=3)
    lenient.enqueue(Item("ghost"))
    assert lenient.weight("ghost") == 3 and lenient.backlog("ghost") == 1
    with pytest.raises(InvalidRequest, match="already"):
        lenient.add_tenant("ghost")


def test_bad_construction():
    with pytest.raises(InvalidRequest):
        DRRScheduler(0)
    with pytest.raises(InvalidRequest):
        DRRScheduler(capacity=0)
    with pytest.raises(InvalidRequest):
        DRRScheduler(policy="drop-random")


def test_remove_tenant_hands_back_its_queue():
    drr = DRRScheduler(sparse=False)
    drr.add_tenant("a")
    drr.add_tenant("b")
    items = [Item("a"), Item("a")]
    for it in items:
        drr.enqueue(it)
    drr.enqueue(Item("b"))
    assert drr.remove_tenant("a") == items
    assert len(drr) == 1 and drr.active_weight == 1.0
    assert drr.dequeue().tenant == "b" and drr.dequeue() is None
