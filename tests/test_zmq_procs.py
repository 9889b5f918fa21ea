"""ZeroMQ channels between real processes: a million messages, peers killed
or frozen mid-stream.  Nothing hangs, nothing acknowledged is lost."""
import multiprocessing as mp
import os
import signal
import struct
import time
import zlib

import numpy as np
import pytest

from dataplane import PeerGone
from dataplane.transport import bind, connect

CTX = mp.get_context("fork")
HDR = struct.Struct("<QI")  # sequence number, crc32 of the body
POOL = np.random.default_rng(3).bytes(1 << 16)


def _message(i):
    size = (i * 7919) % 49
    off = (i * 131) % (len(POOL) - 64)
    body = POOL[off : off + size]
    return HDR.pack(i, zlib.crc32(body)) + body


def _check(m, expect):
    seq, crc = HDR.unpack_from(m)
    assert seq == expect, f"expected message {expect}, got {seq}"
    body = m[HDR.size :]
    assert len(m) == HDR.size + (seq * 7919) % 49 and zlib.crc32(body) == crc, f"message {seq} corrupt"


# ---------------------------------------------------------------- volume --

def _produce(url, n, batch):
    ch = connect(url, timeout=10)
    i = 0
    while i < n:
        msgs = [_message(k) for k in range(i, min(n, i + batch))]
        ch.send_all(msgs, timeout=30)
        i += len(msgs)
    ch.close(linger=60)  # BYE goes after the last message


@pytest.mark.slow
def test_million_messages_between_processes(tmp_path):
    """1,000,000 messages of 12-60 bytes over ipc://, batched: no loss,
    duplicate, reorder or corruption, then PeerGone."""
    n = 1_000_000
    with bind(f"ipc://{tmp_path}/m.ipc") as ch:
        p = CTX.Process(target=_produce, args=(ch.url, n, 2000))
        p.start()
        t0 = time.monotonic()
        expect = 0
        recv_many = ch.recv_many
        while expect < n:
            for m in recv_many(8192, timeout=30):
                _check(m, expect)
                expect += 1
        with pytest.raises(PeerGone):
            ch.recv(timeout=10)  # and nothing after the last one
        elapsed = time.monotonic() - t0
        p.join(10)
        assert p.exitcode == 0
    assert elapsed < 60, f"{n} messages took {elapsed:.1f} s"


def test_hundred_thousand_messages_each_way_over_tcp():
    n = 100_000
    with bind("tcp://127.0.0.1:0") as ch:
        p = CTX.Process(target=_echo_batches, args=(ch.url, n))
        p.start()
        sent = got = 0
        while got < n:
            if sent < n:
                sent += ch.send_many([_message(k) for k in range(sent, min(n, sent + 500))], timeout=10)
            for m in ch.recv_many(1000, timeout=10):
                _check(m, got)
                got += 1
        p.join(10)
        assert p.exitcode == 0


def _echo_batches(url, n):
    ch = connect(url, timeout=10)
    done = 0
    while done < n:
        msgs = ch.recv_many(1000, timeout=10)
        ch.send_all(msgs, timeout=10)
        done += len(msgs)
    ch.close()


# ------------------------------------------------------- killed peers --

def _sender(url, acked, bind_side):
    ch = bind(url) if bind_side else connect(url, timeout=10)
    i = 0
    while True:
        i += ch.send_many([_message(k) for k in range(i, i + 200)], timeout=10)
        while (a := ch.try_recv()) is not None:
            acked.value = struct.unpack("<Q", a)[0]  # highest sequence the receiver confirmed


@pytest.mark.parametrize("sender_binds", [False, True], ids=["killed-client", "killed-server"])
def test_killed_sender_loses_nothing_acknowledged(tmp_path, sender_binds):
    """The receiver gets a gap-free prefix of the stream, covering every
    message the sender saw acknowledged, then PeerGone in bounded time."""
    url = f"ipc://{tmp_path}/k.ipc"
    acked = CTX.Value("q", -1)
    p = CTX.Process(target=_sender, args=(url, acked, sender_binds))
    if sender_binds:
        p.start()
        time.sleep(0.3)
        ch = connect(url, timeout=10)
    else:
        ch = bind(url)
        p.start()
    try:
        got = 0
        while got < 20_000:
            for m in ch.recv_many(500, timeout=10):
                _check(m, got)
                got += 1
            ch.send(struct.pack("<Q", got - 1))
        os.kill(p.pid, signal.SIGKILL)  # mid-stream: batches in flight
        p.join(5)
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            while True:
                for m in ch.recv_many(500, timeout=10):
                    _check(m, got)
                    got += 1
        assert time.monotonic() - t0 < 3.0, "PeerGone must come in bounded time"
        assert acked.value >= 0 and acked.value < got
        with pytest.raises(PeerGone):
            ch.send(b"anyone?", timeout=5)
    finally:
        ch.close(linger=0)
        p.kill()
        p.join(5)


def _receiver(url, received, bind_side):
    ch = bind(url) if bind_side else connect(url, timeout=10)
    got = 0
    while True:
        for m in ch.recv_many(500, timeout=10):
            _check(m, got)
            got += 1
        received.value = got  # recorded before it is acknowledged
        ch.send(struct.pack("<Q", got - 1))


@pytest.mark.parametrize("receiver_binds", [False, True], ids=["killed-client", "killed-server"])
def test_killed_receiver_unblocks_the_sender(tmp_path, receiver_binds):
    """A sender streaming to a receiver that is killed gets PeerGone in
    bounded time, and everything it saw acknowledged had arrived."""
    url = f"ipc://{tmp_path}/r.ipc"
    received = CTX.Value("q", 0)
    p = CTX.Process(target=_receiver, args=(url, received, receiver_binds))
    if receiver_binds:
        p.start()
        time.sleep(0.3)
        ch = connect(url, timeout=10)
    else:
        ch = bind(url)
        p.start()
    acked = -1
    try:
        i = 0
        while acked < 20_000:
            i += ch.send_many([_message(k) for k in range(i, i + 200)], timeout=10)
            while (a := ch.try_recv()) is not None:
                acked = struct.unpack("<Q", a)[0]
        os.kill(p.pid, signal.SIGKILL)
        p.join(5)
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            while True:  # keeps sending into the dead peer until told
                i += ch.send_many([_message(k) for k in range(i, i + 200)], timeout=10)
        assert time.monotonic() - t0 < 3.0, "PeerGone must come in bounded time"
        assert acked < received.value
    finally:
        ch.close(linger=0)
        p.kill()
        p.join(5)


def _connect_and_freeze(url):
    ch = connect(url, timeout=10)
    ch.send(b"hello")
    ch.recv(timeout=10)  # "hello" has left this process: its I/O thread may freeze now
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(60)


def _stopped(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_frozen_peer_is_caught_by_heartbeats(tmp_path):
    """With ZMTP heartbeats switched on (off by default, see zmq_channel),
    a peer that stops answering altogether (SIGSTOP: even its ZeroMQ I/O
    thread) is PeerGone after the heartbeat timeout, not a hang."""
    with bind(f"ipc://{tmp_path}/f.ipc", heartbeat=0.2, heartbeat_timeout=0.6) as ch:
        p = CTX.Process(target=_connect_and_freeze, args=(ch.url,))
        p.start()
        try:
            assert ch.recv(timeout=10) == b"hello"
            ch.send(b"freeze")
            deadline = time.monotonic() + 10
            while not _stopped(p.pid):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            t0 = time.monotonic()
            with pytest.raises(PeerGone):
                ch.recv(timeout=10)
            assert time.monotonic() - t0 < 3.0
        finally:
            p.kill()
            p.join(5)


def _flood(url, n):
    ch = connect(url, timeout=10)
    ch.send_all([_message(k) for k in range(n)], timeout=30)
    ch.close(linger=30)


def test_a_stalled_receiver_keeps_its_connection(tmp_path):
    """A receiver that stops reading for seconds while its queue is full is
    slow, not gone: the producer waits (the queue is bounded) and
    everything arrives."""
    n = 300_000
    with bind(f"ipc://{tmp_path}/s.ipc", hwm=50) as ch:
        p = CTX.Process(target=_flood, args=(ch.url, n))
        p.start()
        _check(ch.recv(timeout=10), 0)
        time.sleep(2.0)  # the queue is full and the producer blocked all along
        got = 1
        while got < n:
            for m in ch.recv_many(4096, timeout=10):
                _check(m, got)
                got += 1
        with pytest.raises(PeerGone):
            ch.recv(timeout=10)
        p.join(10)
        assert p.exitcode == 0
