"""The Channel API: URLs, auto://, and the shm:// channel's semantics in one
process (the ring's tests, asked through the Channel)."""
import logging
import os
import uuid

import numpy as np
import pytest

from dataplane import InvalidState, MessageTooLarge, PeerGone, RingNotFound, Timeout, WouldBlock
from dataplane.ring import Ring, segment_path
from dataplane.transport import Channel, bind, connect, parse, resolve
from dataplane.transport.auto import _sysfs_active_ports, probe_rdma
from dataplane.transport.shm import ShmChannel, ring_names


@pytest.fixture
def shm_name():
    name = f"dpch-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    for n in ring_names(name):
        try:
            os.unlink(segment_path(n))
        except FileNotFoundError:
            pass


@pytest.fixture
def shm_pair(shm_name):
    """(binder, connector) ends of one shm channel, in this process."""
    server = bind(f"shm://{shm_name}?capacity=65536")
    client = connect(f"shm://{shm_name}")
    yield server, client
    client.close()
    server.close()


# ------------------------------------------------------------------ URLs --

@pytest.mark.parametrize("url, scheme, address, options", [
    ("shm://jobs", "shm", "jobs", {}),
    ("shm://jobs?capacity=4096&busy_poll=1", "shm", "jobs", {"capacity": "4096", "busy_poll": "1"}),
    ("tcp://127.0.0.1:5555", "tcp", "127.0.0.1:5555", {}),
    ("ipc:///tmp/dp.sock", "ipc", "/tmp/dp.sock", {}),
    ("rdma://10.0.0.2:7471?device=rxe_lo", "rdma", "10.0.0.2:7471", {"device": "rxe_lo"}),
    ("auto://[::1]:7000", "auto", "[::1]:7000", {}),
    ("TCP://localhost:1", "tcp", "localhost:1", {}),
])
def test_url_parsing(url, scheme, address, options):
    ep = parse(url)
    assert (ep.scheme, ep.address, ep.options) == (scheme, address, options)
    assert parse(str(ep)) == ep


@pytest.mark.parametrize("url", [
    "jobs", "udp://1.2.3.4:5", "shm://", "shm://a/b", "tcp://127.0.0.1", "tcp://127.0.0.1:99999",
    "tcp://:80", "tcp://::1:80", "rdma://host:port", "shm://x?capacity=1&capacity=2", "shm://x?a",
])
def test_bad_urls_are_rejected_with_the_reason(url):
    with pytest.raises(ValueError, match="bad channel URL"):
        parse(url)


def test_unknown_options_are_an_error(shm_name):
    with pytest.raises(ValueError, match="unknown option"):
        bind(f"shm://{shm_name}?capacty=4096")
    with pytest.raises(ValueError, match="unknown option"):
        bind("tcp://127.0.0.1:0", hwn=5)
    assert not os.path.exists(segment_path(shm_name + ".c2s"))


# ------------------------------------------------------------- auto:// --

def test_auto_picks_zmq_here_and_says_so(caplog):
    """No RDMA device on this host: auto:// is ZeroMQ over TCP, reported on
    the channel and in the log.  (In the soft-RoCE VM it must pick RDMA.)"""
    probe = probe_rdma()
    assert probe.reason
    expected = "rdma" if probe.available else "zmq"
    if not os.path.isdir("/sys/class/infiniband"):
        assert expected == "zmq"  # the development host
    with caplog.at_level(logging.INFO, logger="dataplane.transport"):
        ch = bind("auto://127.0.0.1:0")
    try:
        assert ch.transport == expected
        assert ch.url.startswith(("tcp://127.0.0.1:", "rdma://127.0.0.1:"))
        assert ch.requested_url == "auto://127.0.0.1:0"
    finally:
        ch.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "dataplane.transport"]
    assert any(f"auto://127.0.0.1:0: using {expected}" in line for line in lines), lines
    if expected == "zmq":
        assert resolve("auto://127.0.0.1:9?device=rxe0").scheme == "tcp"  # device dropped for ZeroMQ


def test_rdma_probe_reads_port_state_from_sysfs(tmp_path):
    for dev, port, state in [("rxe0", 1, "4: ACTIVE"), ("mlx5_0", 1, "1: DOWN"), ("mlx5_0", 2, "4: ACTIVE")]:
        d = tmp_path / dev / "ports" / str(port)
        d.mkdir(parents=True)
        (d / "state").write_text(state + "\n")
    assert _sysfs_active_ports(str(tmp_path)) == [("mlx5_0", 2), ("rxe0", 1)]
    # Active ports, but no usable RDMA transport here: the probe says no, never raises.
    probe = probe_rdma(sysfs=str(tmp_path))
    assert not probe.available
    assert not probe_rdma("nosuchdev", sysfs=str(tmp_path)).available
    assert "no active RDMA port" in probe_rdma("nosuchdev", sysfs=str(tmp_path)).reason


def test_rdma_urls_reach_the_rdma_transport():
    """rdma://HOST:PORT?device=… goes to dataplane.transport.rdma (imported
    only now); where it cannot load, the error says so."""
    from dataplane.errors import DataplaneError

    try:
        ch = bind("rdma://127.0.0.1:0?device=rxe_lo")
    except DataplaneError as e:
        assert "RDMA transport is unavailable" in str(e)
        return
    try:
        assert ch.transport == "rdma" and isinstance(ch, Channel)
        assert ch.url.startswith("rdma://127.0.0.1:") and "device=rxe_lo" in ch.url
    finally:
        ch.close()


# ------------------------------------------------------ the interface --

def test_channel_is_structural():
    class Duck:
        transport = "duck"

        def send(self, data, timeout=None): ...
        def try_send(self, data): ...
        def recv(self, timeout=None): ...
        def try_recv(self): ...
        def recv_into(self, buffer, timeout=None): ...
        def recv_view(self, timeout=None): ...
        def send_many(self, messages, timeout=None): ...
        def recv_many(self, max_messages=256, timeout=None, max_bytes=1 << 20): ...
        def close(self): ...

    class NoBatch:  # one method short
        transport = "duck"
        send = try_send = recv = try_recv = recv_into = recv_view = send_many = close = Duck.send

    assert isinstance(Duck(), Channel)
    assert not isinstance(NoBatch(), Channel)
    assert not isinstance(object(), Channel)
    assert issubclass(ShmChannel, Channel)


# ------------------------------------------------------------ shm:// --

def test_shm_both_directions_and_types(shm_pair):
    server, client = shm_pair
    assert server.transport == client.transport == "shm"
    for payload in [b"", b"a", bytearray(b"xyz"), memoryview(b"hello world")[6:], np.arange(10, dtype=np.int32)]:
        client.send(payload)
        assert server.recv(timeout=1) == bytes(memoryview(payload).cast("B"))
        server.send(payload)
        assert client.recv(timeout=1) == bytes(memoryview(payload).cast("B"))
    assert client.try_recv() is None and server.try_recv() is None
    assert client.try_send(b"q") and server.recv() == b"q"


def test_shm_zero_copy_views(shm_pair):
    server, client = shm_pair
    client.send(b"abcdef")
    with server.recv_view(timeout=1) as v:
        assert v.readonly and bytes(v) == b"abcdef"
        with pytest.raises(TypeError):
            v[0] = 1
    with client.reserve(5) as w:  # zero-copy send on the ring's extra API
        w[:] = b"12345"
    view = server.recv_view()
    assert bytes(view) == b"12345" and len(view) == 5
    view.release()
    assert server.try_recv() is None


def test_shm_recv_into_and_too_small_buffer_keeps_message(shm_pair):
    server, client = shm_pair
    client.send(b"0123456789")
    with pytest.raises(MessageTooLarge):
        server.recv_into(bytearray(4))
    buf = bytearray(16)
    assert server.recv_into(buf, timeout=1) == 10 and buf[:10] == b"0123456789"


def test_shm_batches(shm_pair):
    server, client = shm_pair
    msgs = [bytes([i % 256]) * (i % 50) for i in range(300)]
    assert client.send_many(msgs[:100], timeout=1) == 100
    client.send_all(msgs[100:])
    got = []
    while len(got) < len(msgs):
        batch = server.recv_many(64, timeout=1)
        assert 1 <= len(batch) <= 64
        got.extend(batch)
    assert got == msgs
    assert client.send_many([]) == 0


def test_shm_batch_order_exact(shm_name):
    with bind(f"shm://{shm_name}?capacity=4096") as server, connect(f"shm://{shm_name}") as client:
        msgs = [os.urandom(i % 60) for i in range(2000)]
        out, i = [], 0
        while i < len(msgs) or len(out) < len(msgs):
            if i < len(msgs):
                i += client.send_many(msgs[i:], timeout=1)
            out.extend(server.recv_many(100, timeout=1))
        assert out == msgs


def test_shm_timeouts_and_full_channel(shm_name):
    with bind(f"shm://{shm_name}?capacity=4096&max_message=56") as server, connect(f"shm://{shm_name}") as client:
        with pytest.raises(Timeout):
            server.recv(timeout=0.01)
        with pytest.raises(Timeout):
            client.recv_view(timeout=0.01)
        with pytest.raises(WouldBlock):
            server.recv(timeout=0)
        n = 0
        while client.try_send(b"m" * 56):
            n += 1
        assert n == 4096 // 64
        with pytest.raises(Timeout):
            client.send(b"m", timeout=0.01)
        with pytest.raises(WouldBlock):
            client.send_many([b"m"], timeout=0)
        assert server.recv() == b"m" * 56
        assert client.try_send(b"m")
        with pytest.raises(MessageTooLarge):
            client.send(b"m" * 57)
        assert client.max_message == 56


def test_shm_close_is_seen_after_drain_and_bind_side_unlinks(shm_name):
    server = bind(f"shm://{shm_name}")
    client = connect(f"shm://{shm_name}")
    client.send(b"last words")
    client.close()
    client.close()  # twice is fine
    assert server.recv(timeout=1) == b"last words"
    with pytest.raises(PeerGone):
        server.recv(timeout=1)
    with pytest.raises(PeerGone):
        server.send(b"anyone?")
    assert os.path.exists(segment_path(shm_name + ".c2s"))
    server.close()
    assert not os.path.exists(segment_path(shm_name + ".c2s"))
    assert not os.path.exists(segment_path(shm_name + ".s2c"))
    with pytest.raises(InvalidState):
        server.recv(timeout=0)


def test_shm_connect_waits_then_gives_up(shm_name):
    with pytest.raises(RingNotFound):
        connect(f"shm://{shm_name}", timeout=0.05)


def test_shm_bind_refuses_a_live_channel_but_replaces_a_dead_ones(shm_name):
    with bind(f"shm://{shm_name}"):
        with pytest.raises(FileExistsError, match="live process"):
            bind(f"shm://{shm_name}")
    # Leftover rings whose creator is gone (faked: a pid that cannot exist).
    for n in ring_names(shm_name):
        r = Ring.create(n, capacity=4096)
        r._map[32:36] = (2**31 - 2).to_bytes(4, "little")  # owner_pid field of the header
        r.close()
    with bind(f"shm://{shm_name}") as again:
        assert again.try_recv() is None
