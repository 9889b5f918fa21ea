"""The Ring's API in one process: semantics, edges and bad input."""
import os
import stat
import struct

import numpy as np
import pytest

from dataplane import (
    InvalidState,
    MessageTooLarge,
    PeerGone,
    Ring,
    RingCorrupt,
    RingNotFound,
    Timeout,
)
from dataplane._ffi import lib


def test_segment_is_private_and_carries_header(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        st = os.stat(f"/dev/shm/{ring_name}")
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert r.owner_pid == os.getpid()
        raw = open(f"/dev/shm/{ring_name}", "rb").read(40)
        magic, version, hdr_size, cap, maxm, pid = struct.unpack("<QIIQQi", raw[:36])
        assert version == 1 and cap == 4096 and maxm == r.max_message and pid == os.getpid()
        assert st.st_size == hdr_size + cap


def test_roundtrip_and_types(ring_name):
    with Ring.create(ring_name, capacity=1 << 16) as r:
        for payload in [b"", b"a", bytearray(b"xyz"), memoryview(b"hello world")[6:], np.arange(10, dtype=np.int32)]:
            r.send(payload)
            assert r.recv() == bytes(memoryview(payload).cast("B"))
        assert r.try_recv() is None
        assert r.try_send(b"q") is True
        assert r.try_recv() == b"q"


def test_large_message_bypasses_scratch(ring_name):
    with Ring.create(ring_name, capacity=1 << 16) as r:
        big = os.urandom(r.max_message)
        r.send(big)
        assert r.recv() == big
        r.send(big)
        buf = bytearray(r.max_message)
        assert r.recv_into(buf) == len(big) and buf == big


def test_recv_into_too_small_keeps_message(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        r.send(b"0123456789")
        with pytest.raises(MessageTooLarge):
            r.recv_into(bytearray(4))
        assert r.recv() == b"0123456789"


def test_empty_ring_timeouts(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        with pytest.raises(Timeout):
            r.recv(timeout=0.01)
        with pytest.raises(Timeout):
            r.recv_view(timeout=0.01)
        assert r.try_recv() is None


def test_full_ring_rejects_then_recovers(ring_name):
    with Ring.create(ring_name, capacity=4096, max_message=56) as r:
        msg = b"m" * 56  # 64-byte records: exactly 64 fit
        sent = 0
        while r.try_send(msg):
            sent += 1
        assert sent == 4096 // 64
        assert r.used == 4096
        with pytest.raises(Timeout):
            r.send(msg, timeout=0.01)
        assert r.recv() == msg
        assert r.try_send(msg)
        assert not r.try_send(msg)
        for _ in range(sent):
            assert r.recv() == msg
        assert r.try_recv() is None and r.used == 0


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 63, 64, 65, 119, 120])
def test_wraparound_at_every_offset(ring_name, size):
    cap = 256
    maxm = 120
    for start in range(0, cap, 8):
        name = f"{ring_name}-{start}"
        with Ring.create(name, capacity=cap, max_message=maxm) as r:
            r.unlink()
            # Move head/tail to `start` with fillers (each 8-byte record = 0-byte message).
            for _ in range(start // 8):
                r.send(b"")
                assert r.recv() == b""
            for i in range(12):  # crosses the end several times
                payload = bytes([(start + i + k) & 0xFF for k in range(size)])
                r.send(payload)
                with r.recv_view() as v:
                    assert bytes(v) == payload
            assert r.used == 0


def test_wraparound_with_backlog(ring_name):
    """Several messages in flight across the wrap point keep their order."""
    with Ring.create(ring_name, capacity=512, max_message=200) as r:
        expect = []
        rng = np.random.default_rng(1)
        for step in range(5000):
            if rng.random() < 0.55:
                m = rng.integers(0, 256, rng.integers(0, 201), dtype=np.uint8).tobytes()
                if r.try_send(m):
                    expect.append(m)
            elif expect:
                assert r.recv() == expect.pop(0)
        while expect:
            assert r.recv() == expect.pop(0)


def test_oversized_message_leaves_ring_usable(ring_name):
    with Ring.create(ring_name, capacity=4096, max_message=100) as r:
        r.send(b"before")
        with pytest.raises(MessageTooLarge):
            r.send(b"x" * 101)
        with pytest.raises(MessageTooLarge):
            r.try_send(b"x" * 101)
        with pytest.raises(MessageTooLarge):
            r.reserve(101)
        with pytest.raises(MessageTooLarge):
            r.send_many([b"ok", b"x" * 101])
        r.send(b"after")
        assert r.recv() == b"before" and r.recv() == b"after"
        assert r.try_recv() is None


def test_reserve_commit_abort(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        with r.reserve(16) as view:
            view[:5] = b"hello"
            assert r.try_recv() is None  # not visible before commit
            res_view = view
        assert r.recv() == b"hello" + bytes(11)
        res = r.reserve(100)
        res.view[:3] = b"abc"
        res.commit(3)
        assert r.recv() == b"abc"
        with pytest.raises(ValueError):
            with r.reserve(8) as view:
                view[:] = b"discard!"
                raise ValueError("boom")
        assert r.try_recv() is None
        res = r.reserve(8)
        with pytest.raises(InvalidState):
            r.send(b"no: a reservation is open")
        res.abort()
        with pytest.raises(InvalidState):
            res.commit()
        with pytest.raises(MessageTooLarge):
            r.reserve(8).commit(9)


def test_recv_view_is_zero_copy_and_readonly(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        r.send(b"payload")
        v = r.recv_view()
        assert v.view.readonly and bytes(v) == b"payload"
        with pytest.raises(TypeError):
            v.view[0] = 1
        with pytest.raises(InvalidState):
            r.recv_view(timeout=0)  # the previous view is still held
        v.release()
        v.release()  # idempotent
        assert r.used == 0


def test_batch_calls(ring_name):
    with Ring.create(ring_name, capacity=1 << 16) as r:
        msgs = [bytes([i]) * i for i in range(100)]
        assert r.send_many(msgs) == 100
        got = []
        while len(got) < 100:
            got += r.recv_many(max_messages=33)
        assert got == msgs
        r.send_all(msgs[:10])
        assert r.recv_many(max_messages=100) == msgs[:10]
        # Burst sends what fits; bulk refuses unless all fit.
        big = [b"z" * 1000] * 100
        n = r.send_many(big, timeout=0)
        assert 0 < n < 100
        with pytest.raises(Timeout):
            r.send_all([b"y" * 1000] * 10, timeout=0.01)
        assert len(r.recv_many(max_messages=1000)) == n


def test_numpy_records(ring_name):
    with Ring.create(ring_name, capacity=1 << 16) as r:
        rec = np.dtype([("id", "<u8"), ("x", "<f4"), ("y", "<f4")])
        a = np.zeros(500, dtype=rec)
        a["id"] = np.arange(500)
        a["x"] = np.linspace(0, 1, 500)
        assert r.send_array(a) == 500
        out = np.empty(1000, dtype=rec)
        n = r.recv_array(out)
        assert n == 500 and (out[:n] == a).all()
        r.send(b"not a record")
        with pytest.raises(MessageTooLarge):
            r.recv_array(out)
        assert r.recv() == b"not a record"


def test_two_handles_one_process_roles(ring_name):
    with Ring.create(ring_name, capacity=4096) as prod, Ring.attach(ring_name) as cons:
        prod.send(b"1")
        assert cons.recv() == b"1"
        assert prod.peer_alive() is None or prod.peer_alive()


def test_closed_producer_is_peer_gone_after_drain(ring_name):
    prod = Ring.create(ring_name, capacity=4096)
    cons = Ring.attach(ring_name)
    # Separate handles in one process: roles are claimed per handle, liveness by flag.
    prod.send(b"last words")
    prod.close()
    assert cons.recv() == b"last words"
    with pytest.raises(PeerGone):
        cons.recv(timeout=1)
    cons.close()


def test_closed_ring_raises(ring_name):
    r = Ring.create(ring_name, capacity=4096)
    r.close()
    r.close()
    for call in (lambda: r.send(b"x"), r.recv, lambda: r.try_send(b"x"), r.try_recv, lambda: r.reserve(1)):
        with pytest.raises(InvalidState):
            call()


def test_bad_arguments(ring_name):
    for cap in (0, 63, 100, 4095, -1, 1.5):
        with pytest.raises(ValueError):
            Ring.create(ring_name, capacity=cap)
    for maxm in (0, -1, 4096, 2041):
        with pytest.raises(ValueError):
            Ring.create(ring_name, capacity=4096, max_message=maxm)
    for name in ("", "a/b", "..", "x" * 300, "nul\0"):
        with pytest.raises(ValueError):
            Ring.create(name)
    with Ring.create(ring_name, capacity=4096) as r:
        with pytest.raises(FileExistsError):
            Ring.create(ring_name)
        with pytest.raises(ValueError):
            r.recv(timeout=-1)
        with pytest.raises(ValueError):
            r.recv(timeout=float("nan"))


def test_attach_missing(ring_name):
    with pytest.raises(RingNotFound):
        Ring.attach(ring_name)


def _write_segment(name, data):
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(data)


def test_attach_random_bytes(ring_name):
    _write_segment(ring_name, os.urandom(4096 + 4096))
    with pytest.raises(RingCorrupt):
        Ring.attach(ring_name)


def test_attach_truncated(ring_name):
    with Ring.create(ring_name, capacity=1 << 16):
        pass
    path = f"/dev/shm/{ring_name}"
    for size in (0, 10, 4096, 4096 + 100, 4096 + (1 << 15)):
        os.truncate(path, size)
        with pytest.raises(RingCorrupt):
            Ring.attach(ring_name)


def test_attach_wrong_version_and_geometry(ring_name):
    with Ring.create(ring_name, capacity=4096):
        pass
    path = f"/dev/shm/{ring_name}"
    good = open(path, "rb").read()

    def patched(offset, fmt, value):
        b = bytearray(good)
        struct.pack_into(fmt, b, offset, value)
        _write_segment(ring_name, bytes(b))

    patched(8, "<I", 2)  # version
    with pytest.raises(RingCorrupt, match="version"):
        Ring.attach(ring_name)
    patched(16, "<Q", 4000)  # capacity not a power of two
    with pytest.raises(RingCorrupt):
        Ring.attach(ring_name)
    patched(24, "<Q", 4000)  # max_message too big for the capacity
    with pytest.raises(RingCorrupt):
        Ring.attach(ring_name)
    patched(lib.dp_ring_layout(0), "<Q", 1 << 20)  # head far beyond tail
    with pytest.raises(RingCorrupt):
        Ring.attach(ring_name)
    _write_segment(ring_name, good)
    Ring.attach(ring_name).close()


def test_corrupt_record_is_detected_not_followed(ring_name):
    with Ring.create(ring_name, capacity=4096) as r:
        r.send(b"a" * 16)
        data_off = lib.dp_ring_layout(2)
        with open(f"/dev/shm/{ring_name}", "r+b") as f:
            f.seek(data_off)
            f.write(struct.pack("<I", 1 << 30))  # a length beyond the segment
        with pytest.raises(RingCorrupt):
            r.recv(timeout=0)
