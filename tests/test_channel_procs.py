"""shm:// channels between real processes: echo, zero-copy, killed peers,
and a third process that tries to join."""
import multiprocessing as mp
import os
import signal
import time
import uuid

import pytest

from dataplane import InvalidState, PeerGone
from dataplane.ring import segment_path
from dataplane.transport import bind, connect
from dataplane.transport.shm import ring_names

CTX = mp.get_context("fork")


@pytest.fixture
def url():
    name = f"dpchp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield f"shm://{name}"
    for n in ring_names(name):
        try:
            os.unlink(segment_path(n))
        except FileNotFoundError:
            pass


def _echo(url, n, zero_copy):
    ch = connect(url, timeout=10)
    for _ in range(n):
        if zero_copy:
            with ch.recv_view(timeout=10) as v:
                ch.send(v)  # straight from one ring into the other
        else:
            ch.send(ch.recv(timeout=10))
    ch.close()


@pytest.mark.parametrize("zero_copy", [False, True])
def test_echo_between_processes(url, zero_copy):
    with bind(url + "?capacity=65536") as ch:
        p = CTX.Process(target=_echo, args=(url, 500, zero_copy))
        p.start()
        for i in range(500):
            m = os.urandom(i % 3000)
            ch.send(m, timeout=10)
            assert ch.recv(timeout=10) == m
        with pytest.raises(PeerGone):
            ch.recv(timeout=10)  # the child closed after its last echo
        p.join(10)
        assert p.exitcode == 0


def _connect_then_sleep(url, ready, send_first):
    ch = connect(url, timeout=10)
    if send_first:
        ch.send(b"hello")
    ready.set()
    time.sleep(60)


@pytest.mark.parametrize("send_first", [False, True])
def test_killed_connector_is_peer_gone_in_bounded_time(url, send_first):
    """Even a connector that never sent anything is watched: connect claims
    its ends of both rings."""
    with bind(url + "?capacity=4096") as ch:
        ready = CTX.Event()
        p = CTX.Process(target=_connect_then_sleep, args=(url, ready, send_first))
        p.start()
        assert ready.wait(10)
        if send_first:
            assert ch.recv(timeout=5) == b"hello"
        os.kill(p.pid, signal.SIGKILL)
        p.join(5)
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            ch.recv(timeout=10)
        assert time.monotonic() - t0 < 2.0
        # Sending to a dead consumer: refused once the ring is full, never a hang.
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            for _ in range(100):
                ch.send(b"x" * 1000, timeout=10)
        assert time.monotonic() - t0 < 3.0


def _bind_send_die(url, ready):
    ch = bind(url)
    ch.send(b"from the binder")
    ready.set()
    time.sleep(60)


def test_killed_binder_is_peer_gone_for_the_connector(url):
    ready = CTX.Event()
    p = CTX.Process(target=_bind_send_die, args=(url, ready))
    p.start()
    assert ready.wait(10)
    ch = connect(url, timeout=5)
    try:
        assert ch.recv(timeout=5) == b"from the binder"
        os.kill(p.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            ch.recv(timeout=10)
        assert time.monotonic() - t0 < 2.0
    finally:
        ch.close()
        p.join(5)


def _intruder(url, q):
    try:
        ch = connect(url, timeout=5)
        q.put("connected")
        ch.close()
    except Exception as e:  # report the class to the parent
        q.put(type(e).__name__)


def test_third_process_cannot_join(url):
    with bind(url) as ch:
        ready = CTX.Event()
        p = CTX.Process(target=_connect_then_sleep, args=(url, ready, False))
        p.start()
        try:
            assert ready.wait(10)
            q = CTX.Queue()
            intruder = CTX.Process(target=_intruder, args=(url, q))
            intruder.start()
            assert q.get(timeout=10) == InvalidState.__name__
            intruder.join(5)
            assert ch.peer_alive() is True
        finally:
            p.kill()
            p.join(5)
