"""The ring between real processes: volume, killed peers, idle waiting."""
import multiprocessing as mp
import os
import resource
import signal
import struct
import time
import zlib

import numpy as np
import pytest

from dataplane import PeerGone, Ring

CTX = mp.get_context("fork")
HDR = struct.Struct("<QI")  # sequence number, crc32 of the rest


def _sizes(n, max_message, seed):
    return np.random.default_rng(seed).integers(0, max_message + 1, n)


def _payload(pool, i, size):
    if size < HDR.size:
        off = (i * 31) % 4096
        return pool[off : off + size]
    off = (i * 7919) % (len(pool) - size)
    body = pool[off : off + size - HDR.size]
    return HDR.pack(i, zlib.crc32(body)) + body


def _produce(name, n, max_message, seed, pool):
    r = Ring.attach(name)
    sizes = _sizes(n, max_message, seed)
    send = r.send
    for i in range(n):
        send(_payload(pool, i, int(sizes[i])))
    r.close()


@pytest.mark.slow
def test_volume_million_messages_across_processes(ring_name):
    """1,000,000 messages of random sizes 0..max: no loss, duplicate,
    reorder or corruption."""
    n, max_message, seed = 1_000_000, 200, 7
    pool = np.random.default_rng(1).bytes(1 << 16)
    with Ring.create(ring_name, capacity=1 << 16, max_message=max_message) as r:
        p = CTX.Process(target=_produce, args=(ring_name, n, max_message, seed, pool))
        p.start()
        sizes = _sizes(n, max_message, seed)
        recv = r.recv
        for i in range(n):
            m = recv(timeout=30)
            size = int(sizes[i])
            assert len(m) == size, f"message {i}: length {len(m)} != {size}"
            if size >= HDR.size:
                seq, crc = HDR.unpack_from(m)
                assert seq == i, f"expected sequence {i}, got {seq}"
                assert zlib.crc32(memoryview(m)[HDR.size :]) == crc, f"message {i} corrupt"
            else:
                assert m == _payload(pool, i, size)
        with pytest.raises(PeerGone):
            r.recv(timeout=5)  # producer closed: nothing more, and no hang
        p.join(10)
        assert p.exitcode == 0


def _producer_dies_in_reservation(name, ready):
    r = Ring.attach(name)
    for i in range(3):
        r.send(b"committed %d" % i)
    res = r.reserve(64)
    res.view[:] = b"P" * 64  # written but never committed
    ready.set()
    time.sleep(60)


def test_killed_producer_holding_reservation(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        ready = CTX.Event()
        p = CTX.Process(target=_producer_dies_in_reservation, args=(ring_name, ready))
        p.start()
        assert ready.wait(10)
        os.kill(p.pid, signal.SIGKILL)
        got = [r.recv(timeout=5) for _ in range(3)]
        assert got == [b"committed 0", b"committed 1", b"committed 2"]
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            r.recv(timeout=10)
        assert time.monotonic() - t0 < 2.0, "PeerGone must come in bounded time"
        with pytest.raises(PeerGone):
            r.try_recv()  # the partial message never shows
        p.join(5)


def _consumer_takes_one_then_stalls(name, ready):
    r = Ring.attach(name)
    r.recv(timeout=10)
    ready.set()
    time.sleep(60)


def test_killed_consumer_unblocks_producer(ring_name):
    with Ring.create(ring_name, capacity=4096, max_message=1000) as r:
        ready = CTX.Event()
        p = CTX.Process(target=_consumer_takes_one_then_stalls, args=(ring_name, ready))
        p.start()
        r.send(b"first")
        assert ready.wait(10)
        while r.try_send(b"x" * 1000):
            pass
        killer = CTX.Process(target=_kill_later, args=(p.pid, 0.3))
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            r.send(b"x" * 1000, timeout=20)  # blocked on a full ring until the kill
        elapsed = time.monotonic() - t0
        assert 0.2 < elapsed < 3.0, elapsed
        with pytest.raises(PeerGone):
            r.try_send(b"x" * 1000)  # full: a dead consumer will never make room
        killer.join(5)
        p.join(5)


def _kill_later(pid, delay):
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)


def _send_after(name, delay, busy):
    r = Ring.attach(name)
    time.sleep(delay)
    r.send(b"wake")
    r.close()


def test_idle_consumer_sleeps_instead_of_spinning(ring_name):
    """In futex mode a consumer waiting 1.5 s for data uses almost no CPU."""
    with Ring.create(ring_name, capacity=4096) as r:
        p = CTX.Process(target=_send_after, args=(ring_name, 1.5, False))
        p.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        assert r.recv(timeout=10) == b"wake"
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        assert wall > 1.0
        assert cpu < 0.15 * wall, f"waiting used {cpu:.3f} s CPU in {wall:.3f} s"
        p.join(5)


def test_busy_poll_consumer_does_spin(ring_name):
    """The counterpart: busy-poll mode really polls (the test above can fail)."""
    with Ring.create(ring_name, capacity=4096, busy_poll=True) as r:
        p = CTX.Process(target=_send_after, args=(ring_name, 0.5, True))
        p.start()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        assert r.recv(timeout=10) == b"wake"
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        # Far above the futex waiter's few percent, with room for a busy machine.
        assert cpu > 0.2 * wall, f"busy-poll used only {cpu:.3f} s CPU in {wall:.3f} s"
        p.join(5)


def _echo(name_in, name_out, n):
    rin, rout = Ring.attach(name_in), Ring.attach(name_out)
    for _ in range(n):
        with rin.recv_view(timeout=10) as v:
            rout.send(v)
    rin.close()
    rout.close()


def test_zero_copy_echo_between_processes(ring_name):
    a, b = ring_name + "a", ring_name + "b"
    with Ring.create(a, capacity=1 << 16) as ra, Ring.create(b, capacity=1 << 16) as rb:
        try:
            p = CTX.Process(target=_echo, args=(a, b, 1000))
            p.start()
            for i in range(1000):
                m = os.urandom(i % 300)
                ra.send(m)
                assert rb.recv(timeout=10) == m
            p.join(10)
            assert p.exitcode == 0
        finally:
            ra.unlink()
            rb.unlink()


def test_third_process_cannot_take_an_end(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        r.send(b"claims the producer end")
        q = CTX.Queue()
        p = CTX.Process(target=_try_send, args=(ring_name, q))
        p.start()
        assert q.get(timeout=10) == "InvalidState"
        p.join(5)


def _try_send(name, q):
    r = Ring.attach(name)
    try:
        r.send(b"intruder")
        q.put("sent")
    except Exception as e:  # report the class to the parent
        q.put(type(e).__name__)


def _child_drops_inherited(ring):
    ring.close()  # the child's copy of the parent's handle
    os._exit(0)


def test_forked_child_closing_inherited_handle_leaves_parent_end_open(ring_name):
    with Ring.create(ring_name, capacity=4096) as prod, Ring.attach(ring_name) as cons:
        prod.send(b"before fork")
        p = CTX.Process(target=_child_drops_inherited, args=(prod,))
        p.start()
        p.join(10)
        assert p.exitcode == 0
        assert cons.recv(timeout=1) == b"before fork"
        prod.send(b"after the child closed its copy")
        assert cons.recv(timeout=1) == b"after the child closed its copy"
        assert cons.peer_alive() is not False
