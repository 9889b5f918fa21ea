"""Peer processes of the RDMA tests (started through a forkserver that has
already imported everything, so a peer costs a fork, not a Python start-up
under emulation)."""
from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time
import zlib

HDR = struct.Struct("<QI")  # sequence number, crc32 of the payload

_ctx = None


def context():
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(["dataplane.transport.rdma", "rdma_peers"])
    return _ctx


def make_message(seq: int, size: int) -> bytes:
    body = bytes((seq + i) & 0xFF for i in range(min(size, 64))) * (size // 64 + 1)
    body = body[:size]
    return HDR.pack(seq, zlib.crc32(body)) + body


def check_message(msg: bytes, expect_seq: int) -> None:
    seq, crc = HDR.unpack_from(msg)
    body = msg[HDR.size :]
    if seq != expect_seq:
        raise AssertionError(f"expected message {expect_seq}, got {seq}")
    if zlib.crc32(body) != crc:
        raise AssertionError(f"message {seq}: checksum mismatch")


def size_of(seq: int) -> int:
    # 0..1000 bytes, deterministic, so PADs and wraps happen often.
    return (seq * 7919) % 1001


def sender(port: int, n: int, capacity: int, batch: int, flush_and_wait: bool, q) -> None:
    from dataplane.transport import rdma

    ch = rdma.connect("127.0.0.1", port, "rxe_lo", capacity=capacity, timeout=60)
    q.put(("connected", os.getpid()))
    seq = 0
    while seq < n:
        if batch > 1 and seq % 3 != 0:
            msgs = [make_message(s, size_of(s)) for s in range(seq, min(n, seq + batch))]
            sent = ch.send_many(msgs, timeout=60)
            seq += sent
        else:
            ch.send(make_message(seq, size_of(seq)), timeout=60)
            seq += 1
    ch.flush(30)
    q.put(("sent", seq))
    if flush_and_wait:
        time.sleep(3600)  # killed by the test
    ch.close()


def endless_sender(port: int, q) -> None:
    from dataplane.transport import rdma

    ch = rdma.connect("127.0.0.1", port, "rxe_lo", capacity=1 << 16, timeout=60)
    q.put(("connected", os.getpid()))
    seq = 0
    while True:
        ch.send(make_message(seq, size_of(seq)), timeout=60)
        seq += 1
        if seq % 200 == 0:
            q.put(("progress", seq))


def idle_receiver(port: int, q) -> None:
    from dataplane.transport import rdma

    ch = rdma.bind("127.0.0.1", port, "rxe_lo", capacity=1 << 12, timeout=60)
    q.put(("bound", os.getpid()))
    m = ch.recv(timeout=60)  # accepts, then takes one message
    q.put(("got", len(m)))
    time.sleep(3600)  # killed by the test


def echo(port: int, n: int, busy: bool, q) -> None:
    from dataplane.transport import rdma

    ch = rdma.bind("127.0.0.1", port, "rxe_lo", capacity=1 << 16, timeout=60, busy_poll=busy)
    q.put(("bound", os.getpid()))
    for _ in range(n):
        ch.send(ch.recv(timeout=60), timeout=60)
    ch.close()
