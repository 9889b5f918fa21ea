"""The shim's work-stealing queues (native/steal.c) on their own: semantics
in one process, then several real processes consuming at once."""
import multiprocessing as mp
import os
import time
import uuid

import numpy as np
import pytest

from dataplane import InvalidState, MessageTooLarge, Ring, RingCorrupt, RingNotFound
from dataplane.executor import StealQueues
from dataplane.executor.queues import STOLEN, TAKEN

CTX = mp.get_context("fork")


@pytest.fixture
def seg_name():
    name = f"dptest-steal-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        os.unlink(f"/dev/shm/{name}")
    except FileNotFoundError:
        pass


# ----------------------------------------------------------- one process --

def test_fifo_per_queue_and_zero_copy_view(seg_name):
    with StealQueues.create(seg_name, 2, slots=8, max_request=64) as q:
        for i in range(5):
            assert q.push(1, 100 + i, b"req-%d" % i, flow=7)
        assert q.depth(1) == 5 and q.depth(0) == 0
        q.register(1)
        for i in range(5):
            item = q.take(1, timeout=0)
            assert (item.id, item.queue, item.flow, item.stolen) == (100 + i, 1, 7, 0)
            view = q.view(item)
            assert view.readonly and bytes(view) == b"req-%d" % i
            q.release()
        assert q.take(1, timeout=0) is None
        assert q.counter(1, TAKEN) == 5 and q.counter(1, STOLEN) == 0


def test_full_queue_and_slot_reuse_only_after_release(seg_name):
    with StealQueues.create(seg_name, 1, slots=4, max_request=16) as q:
        q.register(0)
        for i in range(4):
            assert q.push(0, i, b"%d" % i)
        assert not q.push(0, 99, b"x")  # full
        item = q.take(0, timeout=0)
        assert item.id == 0
        # Taken but not released: the handler may still be reading it.
        assert not q.push(0, 4, b"4")
        q.release()
        assert q.push(0, 4, b"4")
        ids = []
        while (it := q.take(0, timeout=0)) is not None:
            ids.append(it.id)
            q.release()
        assert ids == [1, 2, 3, 4]


def test_stealing_on_and_off(seg_name):
    with StealQueues.create(seg_name, 2, slots=8, max_request=16, steal=False) as q:
        q.push(0, 1, b"a")
        q.register(1)
        assert q.take(1, timeout=0) is None  # partitioned: not ours
    os.unlink(f"/dev/shm/{seg_name}")
    with StealQueues.create(seg_name, 2, slots=8, max_request=16, steal=True) as q:
        q.push(0, 1, b"a")
        q.register(1)
        item = q.take(1, timeout=0)
        assert (item.id, item.queue, item.stolen) == (1, 0, 1)
        q.release()
        assert q.counter(1, STOLEN) == 1


def test_dead_workers_queue_is_orphaned_and_its_slot_reaped(seg_name):
    with StealQueues.create(seg_name, 2, slots=8, max_request=16, steal=False) as q:
        for i in range(3):
            q.push(0, i, b"x")
        # A worker process takes request 0 and dies holding it.
        ready = CTX.Event()

        def victim():
            w = StealQueues.attach(seg_name)
            w.register(0)
            assert w.take(0, timeout=1).id == 0
            ready.set()
            time.sleep(60)

        p = CTX.Process(target=victim)
        p.start()
        assert ready.wait(10)
        assert q.alive(0) is True
        p.kill()
        p.join()
        assert q.alive(0) is False
        assert q.reap(0) == [0]  # exactly the request it was running
        assert q.reap(0) == []
        q.register(1)
        got = []
        while (it := q.take(1, timeout=0)) is not None:
            got.append((it.id, it.stolen))
            q.release()
        assert got == [(1, 1), (2, 1)]  # partitioned, yet the orphans are taken
        assert q.push(0, 3, b"y")  # the reaped slot is usable again


def test_argument_and_state_errors(seg_name):
    with pytest.raises(ValueError):
        StealQueues.create(seg_name, 0)
    with pytest.raises(ValueError):
        StealQueues.create(seg_name, 2, slots=3)
    with pytest.raises(RingNotFound):
        StealQueues.attach(seg_name)
    with StealQueues.create(seg_name, 2, slots=4, max_request=8) as q:
        with pytest.raises(MessageTooLarge):
            q.push(0, 1, b"123456789")
        with pytest.raises(ValueError):
            q.push(2, 1, b"x")  # no such queue
        with pytest.raises(InvalidState):
            q.take(0, timeout=0)  # not registered
        q.register(0)
        with pytest.raises(InvalidState):
            q.release()  # nothing taken
        q.push(0, 1, b"x")
        q.take(0, timeout=0)
        with pytest.raises(InvalidState):
            q.take(0, timeout=0)  # still holding one
        q.release()


def test_attach_rejects_a_corrupt_segment(seg_name):
    with StealQueues.create(seg_name, 1, slots=4, max_request=8):
        pass
    with open(f"/dev/shm/{seg_name}", "r+b") as f:
        f.write(b"garbage!")
    with pytest.raises(RingCorrupt):
        StealQueues.attach(seg_name)


def test_respond_sends_header_and_frees_slot(seg_name, ring_name):
    with StealQueues.create(seg_name, 1, slots=2, max_request=8) as q, Ring.create(ring_name, 4096) as r:
        q.register(0)
        q.push(0, 42, b"ping")
        q.push(0, 43, b"ping")
        assert not q.push(0, 44, b"x")
        q.take(0, timeout=0)
        q.respond(r, b"pong")
        msg = r.recv(timeout=1)
        assert int.from_bytes(msg[:8], "little") == 42 and msg[16:] == b"pong"
        assert q.push(0, 44, b"x")
        assert q.take(0, timeout=0).id == 43
        with pytest.raises(MessageTooLarge):
            q.respond(r, b"z" * 5000)  # bigger than the ring allows: still held
        q.respond(r, b"", status=1)
        msg = r.recv(timeout=1)
        assert int.from_bytes(msg[:8], "little") == 43 and msg[8:12] == b"\x01\0\0\0" and msg[16:] == b""


# ------------------------------------------------------ several processes --

def _consume(name, worker, conn, release_at_start):
    q = StealQueues.attach(name)
    q.register(worker)
    release_at_start.wait(10)
    ids = q.bench_consume(worker, 2_000_000, idle=None)  # until shut down and drained
    conn.send_bytes(np.asarray(ids, dtype=np.uint64).tobytes())
    conn.send((q.counter(worker, TAKEN), q.counter(worker, STOLEN)))
    conn.close()


@pytest.mark.parametrize("target", ["one-queue", "round-robin"])
def test_several_processes_steal_at_once_exactly_once(seg_name, target):
    """4 consumer processes (C loops, so races are tight) on 2 cores drain
    300,000 requests pushed by this process, either all on queue 0 (the
    other three must steal) or spread.  Every id is taken exactly once and
    every payload arrives intact (the consumer checks each)."""
    n, workers = 300_000, 4
    with StealQueues.create(seg_name, workers, slots=1024, max_request=64, steal=True) as q:
        go = CTX.Event()
        pipes, procs = [], []
        for w in range(workers):
            a, b = CTX.Pipe(duplex=False)
            p = CTX.Process(target=_consume, args=(seg_name, w, b, go))
            p.start()
            pipes.append(a)
            procs.append(p)
        deadline = time.monotonic() + 10
        while any(q.alive(w) is None for w in range(workers)):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        go.set()
        queue = 0 if target == "one-queue" else workers
        assert q.bench_produce(queue, 1, n, length=48, timeout=30) == n
        q.shutdown()
        taken = []
        stats = []
        for a in pipes:
            taken.append(np.frombuffer(a.recv_bytes(), dtype=np.uint64))
            stats.append(a.recv())
        for p in procs:
            p.join(10)
            assert p.exitcode == 0
        every = np.concatenate(taken)
        assert len(every) == n, f"{len(every)} taken for {n} pushed"
        assert np.array_equal(np.sort(every), np.arange(1, n + 1, dtype=np.uint64)), "lost or duplicated ids"
        # Within one queue the claims follow positions: each consumer's
        # sequence from queue 0 is increasing.
        if target == "one-queue":
            for ids in taken:
                assert np.all(np.diff(ids.astype(np.int64)) > 0)
            assert sum(s for _, s in stats) == n - stats[0][0]  # all but the owner's were steals
            assert sum(1 for t, _ in stats if t > 0) >= 2, f"no stealing happened: {stats}"


def _hold_and_wait(name, ready):
    q = StealQueues.attach(name)
    q.register(0)
    ready.set()
    item = q.take(0, timeout=None)  # blocks: nothing is queued
    os._exit(0 if item is None else 1)


def _make_segment_then_die(name, made):
    q = StealQueues.create(name, 1, slots=4, max_request=8)
    made.set()
    time.sleep(60)


def test_sleeping_worker_notices_dead_dispatcher(seg_name):
    made = CTX.Event()
    disp = CTX.Process(target=_make_segment_then_die, args=(seg_name, made))
    disp.start()
    assert made.wait(10)
    ready = CTX.Event()
    w = CTX.Process(target=_hold_and_wait, args=(seg_name, ready))
    w.start()
    assert ready.wait(10)
    time.sleep(0.2)  # let it go to sleep on its futex
    t0 = time.monotonic()
    disp.kill()
    disp.join()
    w.join(5)
    assert w.exitcode == 0, "take did not end when the dispatcher died"
    assert time.monotonic() - t0 < 2


def test_shutdown_lets_workers_drain_first(seg_name):
    with StealQueues.create(seg_name, 1, slots=16, max_request=8) as q:
        q.bench_produce(0, 0, 10, length=8)
        q.shutdown()
        q.register(0)
        assert len(q.bench_consume(0, 100, idle=None)) == 10
        assert q.take(0, timeout=None) is None  # drained and shut down: no wait
