"""The stage fast path (native/fast/stage.h): which messages take it, that
the general path still serves the rest, and that calls holding the GIL never
hold it for long."""
import multiprocessing as mp
import os
import signal
import struct
import threading
import time

import numpy as np
import pytest

from dataplane import InvalidState, PeerGone, Ring
from dataplane._ffi import fast_lib, lib
from dataplane.errors import DP_EAGAIN, DP_ESTATE
from dataplane.ring import COPY_THRESHOLD

CTX = mp.get_context("fork")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"x" * COPY_THRESHOLD,  # largest staged
        b"y" * (COPY_THRESHOLD + 1),  # smallest not staged
        bytearray(b"abc"),
        memoryview(b"0123456789")[2:7],
        memoryview(bytes(range(16))).cast("I"),  # len() counts items, not bytes
        np.arange(12, dtype=np.uint8).reshape(3, 4),  # len() counts rows
        np.arange(5, dtype=np.float64),
    ],
    ids=["empty", "stage-max", "stage-max+1", "bytearray", "slice", "cast-I", "2d-uint8", "float64"],
)
def test_every_bytes_like_arrives_whole(ring_name, payload):
    with Ring.create(ring_name, capacity=1 << 16) as r:
        want = bytes(memoryview(payload).cast("B")) if not isinstance(payload, np.ndarray) else payload.tobytes()
        r.send(payload)
        assert r.try_send(payload)
        assert r.recv() == want
        assert r.try_recv() == want
        assert r.try_recv() is None


def test_non_buffers_are_refused_and_the_ring_stays_usable(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        with pytest.raises(TypeError):
            r.send("text is not bytes")
        with pytest.raises(TypeError):
            r.try_send(12345)
        r.send(b"ok")
        assert r.recv() == b"ok"


def test_stage_calls_answer_estate_once_closed(ring_name):
    r = Ring.create(ring_name, capacity=4096)
    st_tx, st_rx = r._txst, r._rxst
    r.close()
    # The raw calls see the NULL ring the close left; the methods name it.
    assert fast_lib.dp_stage_send(st_tx) == DP_ESTATE
    assert fast_lib.dp_stage_recv(st_rx) == DP_ESTATE
    assert fast_lib.dp_stage_poll(st_rx) == DP_ESTATE
    for call in (lambda: r.send(b"x"), lambda: r.try_send(b"x"), lambda: r.recv(timeout=0.01), r.try_recv):
        with pytest.raises(InvalidState):
            call()


def test_recv_spin_is_bounded_by_the_handles_own_spin(ring_name):
    """A stage recv must never sleep on the futex while it holds the GIL: with
    the handle set to spin 0 it tries once."""
    with Ring.create(ring_name, capacity=4096) as r:
        r.set_spin(0)
        t0 = time.perf_counter()
        assert fast_lib.dp_stage_recv(r._rxst) == DP_EAGAIN
        assert time.perf_counter() - t0 < 0.005


def test_busy_poll_recv_lets_other_threads_run(ring_name):
    """recv(timeout=None) on a busy-polling handle waits without the GIL once
    its fast spin is over, so the thread that will send gets to run."""
    with Ring.create(ring_name, capacity=4096, busy_poll=True) as r:
        got = []
        t = threading.Thread(target=lambda: got.append(r.recv()), daemon=True)
        t.start()
        deadline = time.monotonic() + 0.3
        spins = 0
        while time.monotonic() < deadline:  # needs the GIL the whole time
            spins += 1
        r.send(b"from the other thread")
        t.join(5)
        assert not t.is_alive() and got == [b"from the other thread"]
        assert spins > 1000


def _send_one_and_die(name):
    r = Ring.attach(name, busy_poll=True)
    r.send(b"last words")
    os.kill(os.getpid(), signal.SIGKILL)  # no close(): only its pid tells


def _switch_then_recv(name, ready, out):
    r = Ring.attach(name, busy_poll=True)
    r.try_recv()  # becomes the consumer while busy-polling
    r.busy_poll = False
    r.set_spin(0)  # from now on it sleeps on the futex at once
    ready.set()
    t0 = time.monotonic()
    msg = r.recv(timeout=10)
    out.put((msg, time.monotonic() - t0))


def _cons_never_sleeps(name):
    off = lib.dp_ring_layout(0) + 16  # the producer's line: head, cons_sleeping, data_futex, then this flag
    with open(f"/dev/shm/{name}", "rb") as f:
        f.seek(off)
        return struct.unpack("<I", f.read(4))[0]


def test_consumer_advertises_whether_it_can_sleep(ring_name):
    with Ring.create(ring_name, capacity=4096) as prod, Ring.attach(ring_name, busy_poll=True) as cons:
        assert _cons_never_sleeps(ring_name) == 0  # no consumer yet: assume it may sleep
        cons.try_recv()
        assert _cons_never_sleeps(ring_name) == 1
        cons.busy_poll = False
        assert _cons_never_sleeps(ring_name) == 0
        cons.busy_poll = True
        prod.send(b"x")
        assert cons.recv() == b"x"


def test_consumer_leaving_busy_poll_is_still_woken(ring_name):
    """The producer skips the wake-up check while the consumer busy-polls; a
    consumer that switches to sleeping must still be woken promptly."""
    with Ring.create(ring_name, capacity=4096) as r:
        ready, out = CTX.Event(), CTX.Queue()
        p = CTX.Process(target=_switch_then_recv, args=(ring_name, ready, out))
        p.start()
        assert ready.wait(10)
        time.sleep(0.2)  # the consumer is asleep on the futex by now
        r.send(b"wake up")
        msg, waited = out.get(timeout=10)
        p.join(5)
        assert msg == b"wake up"
        assert waited < 0.2 + 0.05  # a futex wake, not a 10 ms sleep slice per try


def test_dead_peer_stays_dead_for_the_fast_path(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        p = CTX.Process(target=_send_one_and_die, args=(ring_name,))
        p.start()
        p.join(10)
        assert r.recv(timeout=5) == b"last words"  # drained first
        with pytest.raises(PeerGone):
            r.recv(timeout=5)
        for _ in range(3):  # not a one-off: every later call says so
            with pytest.raises(PeerGone):
                r.try_recv()


def test_one_thread_sends_while_another_receives_on_one_handle(ring_name):
    """Each end has its own stage: a sender thread and a receiver thread on
    the same handle never see each other's bytes."""
    n = 50_000
    with Ring.create(ring_name, capacity=1 << 12) as r:  # small: the sender blocks often
        got = []

        def consume():
            for _ in range(n):
                got.append(r.recv(timeout=10))

        t = threading.Thread(target=consume)
        t.start()
        for i in range(n):
            r.send(b"%d:" % i + b"z" * (i % 300))
        t.join(30)
        assert not t.is_alive()
        assert got == [b"%d:" % i + b"z" * (i % 300) for i in range(n)]


def test_buffers_without_len_still_send(ring_name):
    import ctypes
    import pickle

    with Ring.create(ring_name, capacity=4096) as r:
        r.send(pickle.PickleBuffer(b"pickled"))
        r.send(ctypes.c_int32(7))
        assert r.try_send(np.array(5, dtype=np.int16))  # 0-d: no len()
        assert r.recv() == b"pickled"
        assert r.recv() == (7).to_bytes(4, "little")
        assert r.recv() == (5).to_bytes(2, "little")


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan")])
def test_bad_timeouts_are_refused_even_when_no_wait_is_needed(ring_name, bad):
    with Ring.create(ring_name, capacity=4096) as r:
        with pytest.raises(ValueError):
            r.send(b"x", timeout=bad)
        assert r.try_recv() is None  # nothing was sent
        r.send(b"queued")
        with pytest.raises(ValueError):
            r.recv(timeout=bad)
        assert r.recv() == b"queued"  # nothing was taken
