"""The C data path under an rdma:// channel (native/verbs/rdma_path.h), on
real soft-RoCE: the verbs pointers it takes from pyverbs are checked, a
wrong one is refused without a crash, and the receives it keeps posted
bound the sender, which then waits for credit instead of overrunning them."""
from __future__ import annotations

import threading
import time

import pytest

rdma = pytest.importorskip("dataplane.transport.rdma", reason="pyverbs missing: run tools/venv-pyverbs.sh")

from dataplane.errors import DataplaneError, InvalidState, MessageTooLarge, PeerGone, Timeout  # noqa: E402
from dataplane.transport import rdma_path  # noqa: E402

DEV = "rxe_lo"


def _pair(capacity=1 << 16):
    lst = rdma.listen("127.0.0.1", 0, DEV, capacity=capacity, timeout=30)
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("ch", lst.accept(30)))
    t.start()
    c = rdma.connect("127.0.0.1", lst.port, DEV, capacity=capacity, timeout=30)
    t.join(60)
    lst.close()
    return out["ch"], c


def _addr(cdata) -> int:
    return int(rdma_path.vffi.cast("uintptr_t", cdata))


def test_channel_drives_the_qp_pyverbs_made_from_c():
    a, b = _pair()
    try:
        qp, cq = rdma_path.verbs_pointers(a._qp, a._dev.cq)
        assert (qp, cq) == (_addr(a._dpc.qp), _addr(a._dpc.cq))
        check = rdma_path.vlib.dp_rdma_check
        assert check(qp, cq, a._qp.qp_num, a._dev.cq.cqe) == 0
        # Wrong values, swapped objects, another channel's CQ, unmapped and
        # misaligned addresses: refused, and the process is still here.
        assert check(qp, cq, a._qp.qp_num + 1, a._dev.cq.cqe) != 0
        assert check(qp, cq, a._qp.qp_num, a._dev.cq.cqe + 1) != 0
        assert check(cq, qp, a._qp.qp_num, a._dev.cq.cqe) != 0
        assert check(qp, _addr(b._dpc.cq), a._qp.qp_num, a._dev.cq.cqe) != 0
        assert check(0x1000, cq, a._qp.qp_num, a._dev.cq.cqe) != 0
        assert check(qp + 4, cq, a._qp.qp_num, a._dev.cq.cqe) != 0
        with pytest.raises(DataplaneError, match="QP"):
            rdma_path.verbs_pointers(a._dev.cq, a._dev.cq)
        a.send(b"still fine")
        assert b.recv(timeout=10) == b"still fine"
    finally:
        a.close()
        b.close()


def test_closed_pyverbs_objects_are_refused():
    a, b = _pair()
    qp, cq = a._qp, a._dev.cq
    b.close()
    a.close()  # closes the context, and with it the QP and CQ
    with pytest.raises(DataplaneError):
        rdma_path.verbs_pointers(qp, cq)


def test_the_peers_receives_bound_the_sender_until_credit_returns():
    # A ring far larger than 1,025 small records: only the receives bound it.
    recv_end, send_end = _pair(capacity=1 << 20)
    try:
        n = 0
        while send_end.try_send(n.to_bytes(4, "little")):
            n += 1
            assert n <= rdma.RQ_DEPTH, "sent more unread pushes than the peer has receives"
        assert n == rdma.RQ_DEPTH
        with pytest.raises(Timeout):
            send_end.send(b"late", timeout=0.05)  # nobody reads: no credit comes
        got = [int.from_bytes(recv_end.recv(timeout=10), "little") for _ in range(300)]
        assert got == list(range(300))
        # Reading returned credit (asked for by the blocked sender, or due):
        # the sender goes on, and every message arrives once, in order.
        for i in range(n, n + 2000):
            send_end.send(i.to_bytes(4, "little"), timeout=10)
            if i % 100 == 0:  # the receiver reads now and then (one thread plays both)
                while (m := recv_end.try_recv()) is not None:
                    got.append(int.from_bytes(m, "little"))
        send_end.flush(10)
        while len(got) < n + 2000:
            got.append(int.from_bytes(recv_end.recv(timeout=10), "little"))
        assert got == list(range(n + 2000))
        assert recv_end.try_recv() is None
    finally:
        send_end.close()
        recv_end.close()


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan")])
def test_bad_timeouts_are_refused_before_anything_moves(bad):
    a, b = _pair()
    try:
        b.send(b"queued")
        b.flush(10)
        for call in (lambda: a.recv(timeout=bad), lambda: a.recv_into(bytearray(16), timeout=bad),
                     lambda: a.recv_many(4, timeout=bad), lambda: a.recv_view(timeout=bad),
                     lambda: b.send(b"not sent", timeout=bad), lambda: b.send_many([b"not sent"], timeout=bad)):
            with pytest.raises(ValueError, match="timeout"):
                call()
        assert a.recv(timeout=10) == b"queued"  # still there, and nothing else was sent
        assert a.try_recv() is None
    finally:
        a.close()
        b.close()


def test_an_idle_receiver_sleeps_on_completion_events():
    # Without busy_poll a waiting receive arms the CQ and sleeps on its
    # completion channel: far from the whole CPU a poll loop would burn
    # (a 0.2 ms sleep-and-poll loop measured 38% of a CPU in this guest).
    import resource

    a, b = _pair()
    try:
        def cpu():
            r = resource.getrusage(resource.RUSAGE_SELF)
            return r.ru_utime + r.ru_stime

        c0, w0 = cpu(), time.monotonic()
        with pytest.raises(Timeout):
            a.recv(timeout=1.5)
        share = (cpu() - c0) / (time.monotonic() - w0)
        assert share < 0.25, f"an idle receive used {share:.0%} of a CPU"
        # ... and a message still wakes it.
        t = threading.Timer(0.2, lambda: b.send(b"wake up"))
        t.start()
        assert a.recv(timeout=10) == b"wake up"
        t.join()
    finally:
        a.close()
        b.close()


def test_credit_only_after_the_receives_are_posted_again():
    # The receiver takes 300 messages (fewer than half its receives, so its
    # CQ poll has re-posted none), returns credit, and stops polling.
    # Everything the sender may send on that credit must find a posted
    # receive (no RNR), so flush completes with nobody polling.
    recv_end, send_end = _pair(capacity=1 << 20)
    try:
        for i in range(300):
            send_end.send(i.to_bytes(4, "little"), timeout=10)
        got = [int.from_bytes(recv_end.recv(timeout=10), "little") for _ in range(300)]
        n = 300
        while send_end.try_send(n.to_bytes(4, "little")):
            n += 1
        assert n - 300 >= rdma.RQ_DEPTH - 300 + 256, n - 300  # the credit for 256 came back
        send_end.flush(5)  # acknowledged by the peer's NIC, not its application
        while len(got) < n:
            got.append(int.from_bytes(recv_end.recv(timeout=10), "little"))
        assert got == list(range(n))
    finally:
        send_end.close()
        recv_end.close()


def test_a_sender_out_of_receives_sees_its_peer_go():
    recv_end, send_end = _pair(capacity=1 << 20)
    try:
        while send_end.try_send(b"x"):
            pass
        recv_end.close()
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            send_end.send(b"x", timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        send_end.close()
        recv_end.close()


def test_messages_behind_many_completions_are_drained_before_peergone():
    a, b = _pair(capacity=1 << 20)
    try:
        for i in range(700):  # leaves dozens of signaled send completions in a's CQ
            a.send(b"to b %d" % i)
        for i in range(10):
            b.send(b"to a %d" % i)
        b.close()  # flushes, then CLOSE: a's monitor marks the peer gone
        time.sleep(0.5)
        assert [a.recv(timeout=10) for _ in range(10)] == [b"to a %d" % i for i in range(10)]
        with pytest.raises(PeerGone):
            a.recv(timeout=10)
    finally:
        a.close()
        b.close()


def test_close_from_another_thread_ends_a_waiting_receive():
    a, b = _pair()
    out: dict = {}

    def wait():
        try:
            a.recv(timeout=30)
        except BaseException as e:  # noqa: BLE001
            out["err"] = e

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.5)  # asleep on completion events by now
    a.close()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(out.get("err"), (InvalidState, PeerGone)), out
    b.close()


def test_reserve_commit_writes_in_place_and_abort_sends_nothing():
    a, b = _pair(capacity=1 << 16)
    try:
        with b.reserve(1000, timeout=10) as mv:
            mv[:] = bytes(range(256)) * 3 + bytes(232)
        res = b.reserve(64, timeout=10)
        res.view[:5] = b"never"
        res.abort()
        res = b.reserve(64, timeout=10)
        res.view[:3] = b"cut"
        res.commit(3)
        assert a.recv(timeout=10) == bytes(range(256)) * 3 + bytes(232)
        assert a.recv(timeout=10) == b"cut"
        assert a.try_recv() is None
        with pytest.raises(MessageTooLarge):
            b.reserve(b.max_message + 1, timeout=1)
        for i in range(200):  # many wraps of the peer's ring through reservations
            with b.reserve(700, timeout=10) as mv:
                mv[:4] = i.to_bytes(4, "little")
            assert a.recv(timeout=10)[:4] == i.to_bytes(4, "little")
    finally:
        a.close()
        b.close()
    with pytest.raises(InvalidState):
        b.reserve(10, timeout=1)
