"""Bounded queues, shedding policies and the token bucket, in virtual time."""
import math

import pytest

from dataplane.clock import VirtualClock
from dataplane.control import BoundedQueue, InvalidRequest, QueueFull, Reason, ShedPolicy, TokenBucket


class Item:
    def __init__(self, name, deadline=None):
        self.name, self.deadline = name, deadline

    def __repr__(self):
        return self.name


def test_reject_new_is_backpressure():
    q = BoundedQueue(2)
    assert q.push(Item("a")) == () and q.push(Item("b")) == ()
    assert q.full and q.free == 0
    with pytest.raises(QueueFull) as e:
        q.push(Item("c"))
    assert e.value.reason is Reason.OVERLOADED
    assert [i.name for i in q] == ["a", "b"]  # nothing queued was lost
    assert q.pop().name == "a" and q.free == 1


def test_drop_oldest_evicts_the_head():
    q = BoundedQueue(2, ShedPolicy.DROP_OLDEST)
    a, b, c = Item("a"), Item("b"), Item("c")
    q.push(a)
    q.push(b)
    assert q.push(c) == (a,)
    assert [i.name for i in q] == ["b", "c"]


def test_drop_expired_evicts_only_the_expired():
    q = BoundedQueue(3, "drop-expired")
    items = [Item("late1", 5.0), Item("fresh", 50.0), Item("late2", 9.0)]
    for it in items:
        q.push(it, now=0.0)
    new = Item("new", 60.0)
    assert q.push(new, now=10.0) == (items[0], items[2])
    assert [i.name for i in q] == ["fresh", "new"]
    q.push(Item("x", 70.0), now=10.0)
    with pytest.raises(QueueFull, match="nothing expired"):
        q.push(Item("y", 80.0), now=10.0)
    assert len(q) == 3


def test_queue_bad_input():
    with pytest.raises(InvalidRequest):
        BoundedQueue(0)
    with pytest.raises(InvalidRequest):
        BoundedQueue(True)
    with pytest.raises(InvalidRequest, match="shed policy"):
        BoundedQueue(4, "drop-newest")


def test_token_bucket_in_virtual_time():
    clock = VirtualClock(100.0)
    b = TokenBucket(rate=10.0, burst=5.0, clock=clock)
    assert all(b.try_take() for _ in range(5))  # the burst
    assert not b.try_take()
    assert b.retry_after() == pytest.approx(0.1)
    clock.advance(0.05)
    assert not b.try_take() and b.retry_after() == pytest.approx(0.05)
    clock.advance(0.05)
    assert b.try_take() and not b.try_take()
    clock.advance(10.0)
    assert b.tokens == pytest.approx(5.0)  # capped at the burst
    b.set_rate(1.0, burst=2.0)
    assert b.tokens == pytest.approx(2.0)
    with pytest.raises(InvalidRequest):
        b.retry_after(3.0)  # more than the burst can ever hold


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_token_bucket_bad_rate(bad):
    with pytest.raises(InvalidRequest, match="rate"):
        TokenBucket(bad, clock=VirtualClock())
