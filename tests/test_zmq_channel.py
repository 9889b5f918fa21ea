"""The Channel API over ZeroMQ, both ends in one process: the same semantics
as the ring (types, views, batches, timeouts, limits, close), over tcp://
and ipc://."""
import os
import threading
import time

import numpy as np
import pytest
import zmq

from dataplane import InvalidState, MessageTooLarge, PeerGone, Timeout, WouldBlock
from dataplane.transport import Channel, bind, connect
from dataplane.transport.zmq_channel import COPY_THRESHOLD


def open_pair(url, **opts):
    server = bind(url, **opts)
    t = threading.Thread(target=server.accept, args=(10,))
    t.start()
    try:
        client = connect(server.url, **opts)
    finally:
        t.join()
    return server, client


@pytest.fixture(params=["tcp", "ipc"])
def pair(request, tmp_path):
    url = "tcp://127.0.0.1:0" if request.param == "tcp" else f"ipc://{tmp_path}/ch.ipc"
    server, client = open_pair(url)
    yield server, client
    client.close(linger=0)
    server.close(linger=0)


SIZES = [0, 1, 100, COPY_THRESHOLD - 1, COPY_THRESHOLD, 1 << 20]


def test_handshake_and_attributes(pair):
    server, client = pair
    assert isinstance(server, Channel) and isinstance(client, Channel)
    assert server.transport == client.transport == "zmq"
    assert server.established and client.established
    assert server.peer_alive() is True and client.peer_alive() is True
    assert server.url.startswith(("tcp://127.0.0.1:", "ipc://")) and client.url == server.url


def test_roundtrip_every_size_both_ways(pair):
    server, client = pair
    rng = np.random.default_rng(0)
    for size in SIZES:
        m = rng.bytes(size)
        client.send(m)
        assert server.recv(timeout=5) == m
        server.send(m)
        assert client.recv(timeout=5) == m


def test_buffer_types_and_copy_semantics(pair):
    server, client = pair
    for payload in [bytearray(b"xyz"), memoryview(b"hello world")[6:], np.arange(10, dtype=np.int32)]:
        client.send(payload)
        assert server.recv(timeout=5) == bytes(memoryview(payload).cast("B"))
    # A large mutable buffer changed right after send: the peer gets what was sent.
    buf = bytearray(b"a" * (1 << 20))
    client.send(buf)
    buf[:] = b"b" * len(buf)
    assert server.recv(timeout=5) == b"a" * (1 << 20)


def test_large_recv_view_is_the_frame_itself(pair):
    server, client = pair
    big = os.urandom(1 << 20)
    client.send(big)
    view = server.recv_view(timeout=5)
    assert isinstance(view.view.obj, zmq.Frame)  # no copy out of ZeroMQ's message
    assert view.view.readonly and len(view) == len(big) and bytes(view) == big
    view.release()
    client.send(b"small")
    with server.recv_view(timeout=5) as v:
        assert v == b"small" and v.readonly


def test_recv_into_and_a_too_small_buffer_keeps_the_message(pair):
    server, client = pair
    client.send(b"0123456789")
    client.send(os.urandom(200_000))
    with pytest.raises(MessageTooLarge):
        server.recv_into(bytearray(4), timeout=5)
    buf = bytearray(300_000)
    assert server.recv_into(buf, timeout=5) == 10 and buf[:10] == b"0123456789"
    with pytest.raises(MessageTooLarge):
        server.recv_into(bytearray(1000), timeout=5)
    n = server.recv_into(memoryview(buf), timeout=5)
    assert n == 200_000
    with pytest.raises(TypeError):
        server.recv_into(b"read-only")


def test_batches_keep_order_and_boundaries(pair):
    server, client = pair
    rng = np.random.default_rng(1)
    msgs = [rng.bytes(int(n)) for n in rng.integers(0, 300, 20_000)]
    msgs[5000] = os.urandom(COPY_THRESHOLD + 5)  # a large one in the middle travels alone
    got, i = [], 0
    while len(got) < len(msgs):
        if i < len(msgs):
            i += client.send_many(msgs[i : i + 4000], timeout=5)
        got.extend(server.recv_many(1000, timeout=5))
    assert got == msgs
    assert client.send_many([]) == 0
    # max_bytes bounds a batch (at least one message always comes)
    client.send_all([b"x" * 100] * 10)
    out = server.recv_many(100, timeout=5, max_bytes=250)
    assert len(out) == 2
    rest = []
    while len(rest) < 8:
        rest.extend(server.recv_many(100, timeout=5))
    assert rest == [b"x" * 100] * 8


def test_try_calls_and_timeouts(pair):
    server, client = pair
    assert server.try_recv() is None and client.try_recv() is None
    t0 = time.monotonic()
    with pytest.raises(Timeout):
        server.recv(timeout=0.05)
    with pytest.raises(Timeout):
        client.recv_view(timeout=0.05)
    assert time.monotonic() - t0 < 1.0
    assert client.try_send(b"q")
    for _ in range(100):
        m = server.try_recv()
        if m is not None:
            break
        time.sleep(0.01)
    assert m == b"q"
    with pytest.raises(ValueError):
        server.recv(timeout=-1)
    # timeout=0 tries once; nothing there is WouldBlock, as on a ring.
    for call in (lambda: server.recv(timeout=0), lambda: server.recv_view(timeout=0),
                 lambda: server.recv_many(8, timeout=0), lambda: server.recv_into(bytearray(8), timeout=0)):
        with pytest.raises(WouldBlock):
            call()


def test_bounded_try_send_returns_false_at_the_high_water_mark(tmp_path):
    server, client = open_pair(f"ipc://{tmp_path}/hwm.ipc", hwm=2)
    try:
        big = bytes(256 << 10)
        sent = 0
        while True:  # fill until the socket buffers are full too and nothing moves
            before = sent
            while client.try_send(big):
                sent += 1
                assert sent < 500, "the HWM never pushed back"
            if sent == before:
                break
            time.sleep(0.2)
        with pytest.raises(Timeout):
            client.send(big, timeout=0.05)
        with pytest.raises(Timeout):
            client.send_many([b"x"] * 10, timeout=0.05)
        with pytest.raises(WouldBlock):
            client.send(big, timeout=0)
        with pytest.raises(WouldBlock):
            client.send_many([b"x"] * 10, timeout=0)
        for _ in range(sent):
            assert len(server.recv(timeout=5)) == len(big)
        assert client.try_send(b"room again") or client.send(b"room again", timeout=5) is None
    finally:
        client.close(linger=0)
        server.close(linger=0)


def test_limits_are_negotiated(tmp_path):
    server, client = open_pair(f"ipc://{tmp_path}/max.ipc", max_message=1000)
    try:
        assert client.max_message == server.max_message == 1000
        with pytest.raises(MessageTooLarge):
            client.send(b"x" * 1001)
        with pytest.raises(MessageTooLarge):
            server.send_many([b"ok", b"x" * 1001])
        client.send(b"x" * 1000)
        assert server.recv(timeout=5) == b"x" * 1000
    finally:
        client.close(linger=0)
        server.close(linger=0)
    # Different limits: each side sends at most what the other accepts.
    server = bind(f"ipc://{tmp_path}/max2.ipc", max_message=500)
    t = threading.Thread(target=server.accept, args=(10,))
    t.start()
    client = connect(server.url, max_message=2000)
    t.join()
    try:
        assert client.max_message == 500 and server.max_message == 500
    finally:
        client.close(linger=0)
        server.close(linger=0)


def test_close_delivers_then_peer_gone(pair):
    server, client = pair
    for i in range(3):
        client.send(b"m%d" % i)
    client.close()
    assert [server.recv(timeout=5) for _ in range(3)] == [b"m0", b"m1", b"m2"]
    t0 = time.monotonic()
    with pytest.raises(PeerGone, match="closed"):
        server.recv(timeout=5)
    with pytest.raises(PeerGone):
        server.try_recv()
    with pytest.raises(PeerGone):
        server.send(b"anyone?")
    assert time.monotonic() - t0 < 1.0
    assert server.peer_alive() is False
    with pytest.raises(InvalidState):
        client.recv(timeout=0)
    client.close()  # twice is fine


def test_server_waits_for_its_peer_within_the_timeout():
    with bind("tcp://127.0.0.1:0") as server:
        assert server.peer_alive() is None
        with pytest.raises(Timeout):
            server.accept(timeout=0.05)
        with pytest.raises(Timeout):
            server.recv(timeout=0.05)
        assert server.try_send(b"nobody") is False
        assert server.try_recv() is None


def test_context_manager_and_repr(tmp_path):
    server, client = open_pair(f"ipc://{tmp_path}/cm.ipc")
    with server, client:
        assert "open" in repr(client)
    assert server.closed and client.closed and "closed" in repr(server)
