"""Hypothesis: the ring behaves like a bounded FIFO (a deque model whose
byte accounting follows the documented record layout)."""
import os
import uuid
from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dataplane import MessageTooLarge, Ring
from dataplane.ring import unlink

CAP = 512
MAXM = 200


def rec(n):
    return (8 + n + 7) // 8 * 8


class Model:
    """Free-running byte indices; a record never wraps (PAD to the end)."""

    def __init__(self):
        self.head = self.tail = 0
        self.q = deque()

    def footprint(self, n, head=None):
        head = self.head if head is None else head
        contig = CAP - head % CAP
        return rec(n) if rec(n) <= contig else contig + rec(n)

    def fits(self, n):
        return CAP - (self.head - self.tail) >= self.footprint(n)

    def push(self, m, n=None):
        self.head += self.footprint(len(m) if n is None else n)
        self.q.append((m, self.head))

    def pop(self):
        m, end = self.q.popleft()
        self.tail = end
        return m


class RingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.name = f"dphyp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.ring = Ring.create(self.name, capacity=CAP, max_message=MAXM)
        self.model = Model()

    def teardown(self):
        self.ring.close()
        unlink(self.name)

    @rule(data=st.binary(max_size=MAXM))
    def try_send(self, data):
        ok = self.ring.try_send(data)
        assert ok == self.model.fits(len(data))
        if ok:
            self.model.push(data)

    @rule(data=st.binary(min_size=MAXM + 1, max_size=MAXM + 50))
    def oversized(self, data):
        try:
            self.ring.try_send(data)
        except MessageTooLarge:
            return
        raise AssertionError("oversized message accepted")

    @rule(n=st.integers(0, MAXM), keep=st.integers(0, MAXM), fill=st.integers(0, 255))
    def reserve_commit(self, n, keep, fill):
        if not self.model.fits(n):
            return
        keep = min(keep, n)
        with self.ring.reserve(n, timeout=0) as view:
            view[:keep] = bytes([fill]) * keep
        # The whole reservation is committed; only the written prefix is known.
        self.model.push(("reserved", n, keep, fill), n)

    @rule(n=st.integers(0, MAXM))
    def reserve_abort(self, n):
        if not self.model.fits(n):
            return
        r = self.ring.reserve(n, timeout=0)
        r.abort()

    @rule(msgs=st.lists(st.binary(max_size=MAXM), max_size=8))
    def send_many(self, msgs):
        sent = self.ring.send_many(msgs, timeout=0) if msgs and self.model.fits(len(msgs[0])) else 0
        expect = 0
        for m in msgs:
            if not self.model.fits(len(m)):
                break
            self.model.push(m)
            expect += 1
        assert sent == expect

    def _check(self, got, want):
        if isinstance(want, tuple):
            _, n, keep, fill = want
            assert len(got) == n and got[:keep] == bytes([fill]) * keep
        else:
            assert got == want

    @precondition(lambda self: self.model.q)
    @rule()
    def recv(self):
        self._check(self.ring.recv(timeout=0), self.model.pop())

    @precondition(lambda self: self.model.q)
    @rule()
    def recv_view(self):
        with self.ring.recv_view(timeout=0) as v:
            self._check(bytes(v), self.model.pop())

    @precondition(lambda self: self.model.q)
    @rule(k=st.integers(1, 10))
    def recv_many(self, k):
        got = self.ring.recv_many(max_messages=k, timeout=0)
        assert 1 <= len(got) <= k
        for g in got:
            self._check(g, self.model.pop())

    @precondition(lambda self: not self.model.q)
    @rule()
    def empty(self):
        assert self.ring.try_recv() is None

    @invariant()
    def used_matches(self):
        assert self.ring.used == self.model.head - self.model.tail


RingMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestRingModel = RingMachine.TestCase
