"""The RDMA transport on real soft-RoCE (rxe_lo), no mocks: data integrity,
credits, close/death semantics and hostile handshakes."""
from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time

import pytest

rdma = pytest.importorskip("dataplane.transport.rdma", reason="pyverbs missing: run tools/venv-pyverbs.sh")

from dataplane import transport  # noqa: E402
from dataplane.errors import HandshakeError, MessageTooLarge, PeerGone, Timeout, WouldBlock  # noqa: E402
from dataplane.transport import rdma_handshake as hs  # noqa: E402

import rdma_peers as peers  # noqa: E402

DEV = "rxe_lo"


def _pair(capacity=1 << 16, **opts):
    """(bound end, connecting end) in this process."""
    lst = rdma.listen("127.0.0.1", 0, DEV, capacity=capacity, timeout=30, **opts)
    out: dict = {}

    def acc():
        try:
            out["ch"] = lst.accept(30)
        except BaseException as e:  # noqa: BLE001
            out["err"] = e

    t = threading.Thread(target=acc)
    t.start()
    c = rdma.connect("127.0.0.1", lst.port, DEV, capacity=capacity, timeout=30, **opts)
    t.join(60)
    lst.close()
    if "err" in out:
        raise out["err"]
    return out["ch"], c


def _get(q, kind, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        item = q.get(timeout=max(0.1, deadline - time.monotonic()))
        if item[0] == kind:
            return item[1]


def test_roundtrip_both_directions_and_api():
    a, b = _pair(capacity=1 << 12)
    try:
        assert a.transport == "rdma" and a.max_message == b.max_message == (1 << 11) - 8
        b.send(b"hello")
        assert a.recv(timeout=10) == b"hello"
        a.send(bytearray(b"back"))
        assert b.recv(timeout=10) == b"back"
        assert a.try_recv() is None
        with pytest.raises(Timeout):
            a.recv(timeout=0.05)
        b.send(b"")  # empty messages are messages
        assert a.recv(timeout=10) == b""
        b.send(b"x" * 1000)
        buf = bytearray(2000)
        assert a.recv_into(buf, timeout=10) == 1000 and bytes(buf[:1000]) == b"x" * 1000
        b.send(b"view me")
        with a.recv_view(timeout=10) as mv:
            assert bytes(mv) == b"view me"
        assert b.send_many([b"m%d" % i for i in range(50)], timeout=10) == 50
        got = []
        while len(got) < 50:
            got += a.recv_many(64, timeout=10)
        assert got == [b"m%d" % i for i in range(50)]
        with pytest.raises(MessageTooLarge):
            b.send(b"y" * (a.max_message + 1))
        # Many wraps of a 4 KiB ring through credits.
        for i in range(3000):
            b.send(struct.pack("<I", i) * (i % 50 + 1), timeout=10)
            assert a.recv(timeout=10) == struct.pack("<I", i) * (i % 50 + 1)
    finally:
        b.close()
        a.close()


def test_close_is_peergone_after_draining():
    a, b = _pair()
    b.send(b"one")
    b.send(b"two")
    b.close()
    assert a.recv(timeout=10) == b"one"
    assert a.recv(timeout=10) == b"two"
    with pytest.raises(PeerGone):
        a.recv(timeout=10)
    with pytest.raises(PeerGone):
        a.send(b"to nobody", timeout=10)
    a.close()


def test_credit_backpressure_and_request():
    """A full ring blocks the sender (Timeout / WouldBlock / False); a read
    of less than a quarter ring is enough once the sender asks for credit."""
    a, b = _pair(capacity=1 << 12)
    try:
        n = 0
        while b.try_send(b"z" * 200):
            n += 1
        assert 10 <= n <= 20  # 4096 / 208
        with pytest.raises(Timeout):
            b.send(b"z" * 200, timeout=0.2)
        with pytest.raises(WouldBlock):
            b.send(b"z" * 200, timeout=0)
        assert a.recv(timeout=5) == b"z" * 200  # frees 208 bytes, under a quarter
        b.send(b"w" * 200, timeout=5)  # gets through on a credit request
        for _ in range(n - 1):
            assert a.recv(timeout=5) == b"z" * 200
        assert a.recv(timeout=5) == b"w" * 200
    finally:
        b.close()
        a.close()


def test_url_dispatch_bind_and_connect():
    ch = transport.bind(f"rdma://127.0.0.1:0?device={DEV}&capacity=8192")
    port = int(ch.url.rsplit(":", 1)[1].split("?")[0])
    out: dict = {}

    def server():
        out["msg"] = ch.recv(timeout=30)
        ch.send(out["msg"][::-1], timeout=30)

    t = threading.Thread(target=server)
    t.start()
    c = transport.connect(f"rdma://127.0.0.1:{port}?device={DEV}", timeout=30)
    c.send(b"abc")
    assert c.recv(timeout=30) == b"cba"
    t.join(30)
    c.close()
    ch.close()


@pytest.mark.slow
def test_volume_100k_across_processes_no_loss_dup_or_reorder():
    """100,000 messages, 0-1000 bytes each with sequence number and CRC32,
    through a 64 KiB ring (hundreds of wraps, PADs, credit round trips),
    singly and in bursts, from another process."""
    n = 100_000
    lst = rdma.listen("127.0.0.1", 0, DEV, capacity=1 << 16, timeout=60)
    ctx = peers.context()
    q = ctx.Queue()
    p = ctx.Process(target=peers.sender, args=(lst.port, n, 1 << 16, 32, False, q))
    p.start()
    try:
        ch = lst.accept(120)
        seq = 0
        t0 = time.monotonic()
        while seq < n:
            for m in ch.recv_many(256, timeout=60):
                peers.check_message(m, seq)
                assert len(m) == peers.HDR.size + peers.size_of(seq)
                seq += 1
        dt = time.monotonic() - t0
        assert _get(q, "sent") == n
        with pytest.raises(PeerGone):
            ch.recv(timeout=30)  # the sender closed: nothing more, nothing duplicated
        print(f"\n100k messages in {dt:.1f} s ({n / dt:.0f} msg/s) in the VM")
        ch.close()
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
        lst.close()
    assert p.exitcode == 0


def test_killed_sender_mid_stream_gives_prefix_then_peergone():
    lst = rdma.listen("127.0.0.1", 0, DEV, capacity=1 << 16, timeout=60)
    ctx = peers.context()
    q = ctx.Queue()
    p = ctx.Process(target=peers.endless_sender, args=(lst.port, q))
    p.start()
    try:
        ch = lst.accept(120)
        pid = _get(q, "connected")
        seq = 0
        while seq < 500:
            peers.check_message(ch.recv(timeout=60), seq)
            seq += 1
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(PeerGone):
            while True:  # whatever arrived is whole and in order, then PeerGone
                peers.check_message(ch.recv(timeout=30), seq)
                seq += 1
        ch.close()
    finally:
        p.join(30)
        lst.close()


def test_flushed_messages_survive_a_killed_sender():
    """What the sender saw acknowledged (flush) is delivered even though the
    sender is SIGKILLed right after, without a close."""
    n = 2000
    lst = rdma.listen("127.0.0.1", 0, DEV, capacity=1 << 20, timeout=60)
    ctx = peers.context()
    q = ctx.Queue()
    p = ctx.Process(target=peers.sender, args=(lst.port, n, 1 << 20, 16, True, q))
    p.start()
    try:
        ch = lst.accept(120)
        pid = _get(q, "connected")
        assert _get(q, "sent") == n
        os.kill(pid, signal.SIGKILL)
        p.join(30)
        for seq in range(n):
            peers.check_message(ch.recv(timeout=30), seq)
        with pytest.raises(PeerGone):
            ch.recv(timeout=30)
        ch.close()
    finally:
        if p.is_alive():
            p.kill()
        lst.close()


def test_killed_receiver_is_peergone_for_the_sender():
    port = _free_port()
    ctx = peers.context()
    q = ctx.Queue()
    p = ctx.Process(target=peers.idle_receiver, args=(port, q))
    p.start()
    try:
        pid = _get(q, "bound")
        ch = rdma.connect("127.0.0.1", port, DEV, timeout=60)
        ch.send(b"first", timeout=10)
        assert _get(q, "got") == 5
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(PeerGone):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                ch.send(b"x" * 100, timeout=5)
                time.sleep(0.001)
        ch.close()
    finally:
        p.join(30)


# ------------------------------------------------------ hostile peers --

def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_garbage_handshake_is_rejected_and_listener_survives():
    lst = rdma.listen("127.0.0.1", 0, DEV, timeout=10)
    try:
        for junk in (os.urandom(64), b"H" + struct.pack("<I", 12) + b"short hello!", b"Z" * 5000):
            s = socket.create_connection(("127.0.0.1", lst.port))
            s.sendall(junk)
            with pytest.raises(HandshakeError):
                lst.accept(10)
            s.close()
        # A frame that claims to be enormous.
        s = socket.create_connection(("127.0.0.1", lst.port))
        s.sendall(b"H" + struct.pack("<I", 1 << 30))
        with pytest.raises(HandshakeError, match="exceeds"):
            lst.accept(10)
        s.close()
        # Then a real peer still gets through.
        out: dict = {}
        t = threading.Thread(target=lambda: out.setdefault("ch", lst.accept(30)))
        t.start()
        c = rdma.connect("127.0.0.1", lst.port, DEV, timeout=30)
        t.join(30)
        c.send(b"ok")
        assert out["ch"].recv(timeout=10) == b"ok"
        c.close()
        out["ch"].close()
    finally:
        lst.close()


def _hostile_connect(hook, lst_opts=None):
    lst = rdma.listen("127.0.0.1", 0, DEV, timeout=15, **(lst_opts or {}))
    out: dict = {}

    def acc():
        try:
            out["ch"] = lst.accept(30)
        except BaseException as e:  # noqa: BLE001
            out["err"] = e

    t = threading.Thread(target=acc)
    t.start()
    try:
        with pytest.raises(HandshakeError) as client_err:
            rdma.connect("127.0.0.1", lst.port, DEV, timeout=15, hello_hook=hook)
        t.join(30)
    finally:
        lst.close()
    assert isinstance(out.get("err"), HandshakeError), out
    return str(out["err"]), str(client_err.value)


def test_wrong_rkey_is_a_handshake_error():
    server, client = _hostile_connect(lambda h: h.replace(data_rkey=h.data_rkey ^ 0x00A5A500))
    # We fail the probe (remote access error); the peer's own probe or its
    # PROBE answer fails in turn: both ends refuse.
    assert "not writable" in server and "REM_ACCESS_ERR" in server
    assert client


def test_capacity_larger_than_registered_is_a_handshake_error():
    server, _ = _hostile_connect(lambda h: h.replace(capacity=h.capacity * 4))
    assert "larger than" in server


def test_lying_about_the_registered_length_is_caught_by_the_probe():
    # Claims 4x the capacity *and* 4x the registered length: only a write at
    # the far end of the claimed area can tell.
    server, _ = _hostile_connect(lambda h: h.replace(capacity=h.capacity * 4, data_len=h.data_len * 4))
    assert "not writable" in server


def test_non_loopback_gid_is_refused():
    server, _ = _hostile_connect(lambda h: h.replace(gid=b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 2])))
    assert "not a loopback" in server


@pytest.mark.parametrize("field,value,match", [
    ("qpn", 0, "QP number"), ("mtu", 9, "MTU"), ("capacity", 3000, "power of two"),
    ("max_message", 1 << 40, "max_message"), ("data_addr", 12, "misaligned"),
    ("rq_depth", 0, "rq_depth"), ("rq_depth", 1000, "rq_depth"), ("rq_depth", 1 << 20, "rq_depth"),
])
def test_out_of_range_hello_fields_are_refused(field, value, match):
    server, _ = _hostile_connect(lambda h: h.replace(**{field: value}))
    assert match in server


def test_never_answering_listener_is_a_timeout():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the kernel accepts; nobody ever answers
    try:
        t0 = time.monotonic()
        with pytest.raises(Timeout):
            rdma.connect("127.0.0.1", silent.getsockname()[1], DEV, timeout=1.5)
        assert time.monotonic() - t0 < 10
    finally:
        silent.close()


def test_silent_client_is_a_timeout_for_accept():
    lst = rdma.listen("127.0.0.1", 0, DEV, timeout=1.0)
    s = socket.create_connection(("127.0.0.1", lst.port))
    try:
        with pytest.raises(Timeout):
            lst.accept(10)
    finally:
        s.close()
        lst.close()


def test_nobody_listening_is_a_timeout():
    with pytest.raises(Timeout):
        rdma.connect("127.0.0.1", _free_port(), DEV, timeout=0.5)


def test_hello_roundtrip_and_validation_unit():
    h = hs.Hello(gid=hs.gid_bytes("0000:0000:0000:0000:0000:ffff:7f00:0001"), qpn=17, psn=5, mtu=5,
                 capacity=4096, max_message=100, data_addr=0x10000, data_len=4096, data_rkey=1,
                 rq_depth=1024)
    assert hs.Hello.unpack(h.pack()) == h
    hs.validate_hello(h)
    with pytest.raises(HandshakeError, match="magic"):
        hs.Hello.unpack(b"X" * len(h.pack()))
    with pytest.raises(HandshakeError, match="bytes"):
        hs.Hello.unpack(h.pack()[:-1])
