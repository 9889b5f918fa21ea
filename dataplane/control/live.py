"""The live driver: the same gateway, on the monotonic clock, feeding real
worker processes that take each request's service time, either busy-spinning
(``work="spin"``: a CPU-bound handler, one worker per core makes sense) or
waiting (``work="wait"``: a handler bound by something else, such as an
inference request waiting on its GPU, so there can be more workers than
cores).

The parent process runs the gateway and an open-loop sender: every request
is submitted at its scheduled time (or as soon after as the parent gets
there) and its latency is measured from that *scheduled* time, so a parent
that falls behind shows up as latency instead of silently sending less
(no coordinated omission).

Two pools run the requests, behind the same three calls (``send``,
``collect``, ``close``): :class:`ExecutorPool`, the project's executor
(requests through the shared-memory work queues, answers through rings), and
:class:`WorkerPool`, plain ``multiprocessing`` pipes, the baseline.
"""
from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
import select
import struct
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from dataplane.control.errors import Rejected
from dataplane.control.gateway import Gateway
from dataplane.control.recorder import Recorder
from dataplane.control.request import Request
from dataplane.control.workload import Arrival, Service

_REQ = struct.Struct("<qd")    # request id, service seconds
_REP = struct.Struct("<qdd")   # request id, start, end (perf_counter, shared by all processes on Linux)
_next_id = 1


class Pool(Protocol):
    """What the live driver needs of a set of ``n`` workers."""

    n: int

    def send(self, worker: int, rid: int, service: float) -> None: ...
    def collect(self, timeout: float) -> list[tuple[int, float, float]]: ...
    def close(self) -> None: ...


def _spin(request: memoryview | bytes) -> bytes:
    """A worker's job: request (id, seconds) -> busy-spin that long ->
    answer (id, start, end)."""
    rid, service = _REQ.unpack(request)
    perf = time.perf_counter
    t0 = perf()
    end = t0 + service
    while perf() < end:
        pass
    return _REP.pack(rid, t0, perf())


def _wait(request: memoryview | bytes) -> bytes:
    """A worker's job when the work is elsewhere (a GPU, a backend): request
    (id, seconds) -> sleep that long, leaving the core to others -> answer."""
    rid, service = _REQ.unpack(request)
    t0 = time.perf_counter()
    time.sleep(service)
    return _REP.pack(rid, t0, time.perf_counter())


WORK = {"spin": _spin, "wait": _wait}


def _job(work: str):
    try:
        return WORK[work]
    except KeyError:
        raise ValueError(f"work must be one of {sorted(WORK)}, not {work!r}") from None


def _pipe_worker(conn, job: Callable[[bytes], bytes]) -> None:
    """WorkerPool's process: run ``job`` on each request that comes down the pipe."""
    recv, send = conn.recv_bytes, conn.send_bytes
    try:
        while True:
            msg = recv()
            if not msg:
                return
            send(job(msg))
    except (EOFError, OSError, KeyboardInterrupt):
        return


class ExecutorPool:
    """``n`` workers of :class:`dataplane.executor.Executor`, one per core:
    each request goes to the queue of the worker the gateway chose (policy
    ``partitioned``: no stealing behind the gateway's back), answers come
    back through the workers' response rings.  ``slow[i]`` stretches worker
    *i*'s requests (a degraded worker).  ``work``: "spin" or "wait" (see the
    module docstring).  A context manager."""

    def __init__(self, n: int = 2, *, slow: Sequence[float] | None = None, spin_us: float | None = None,
                 work: str = "spin") -> None:
        from dataplane.executor import Executor

        if n < 1:
            raise ValueError("a pool needs at least one worker")
        job = _job(work)
        self.n = n
        self._slow = list(slow) if slow else [1.0] * n
        if spin_us is None:
            # Idle spinning workers spin a while before sleeping: on a shared
            # machine a sleeping worker waits for its core when woken.  Waiting
            # workers outnumber the cores, so none may spin.
            spin_us = 300.0 if work == "spin" else 0.0
        # Pinned, a waiting worker woken by its timer waits for its own core
        # even when the other is idle: 250 us instead of 70 (8 workers, 2 cores).
        self.ex = Executor(job, workers=n, policy="partitioned", max_request=_REQ.size,
                           max_response=_REP.size, spin_us=spin_us, pin=work == "spin")

    def send(self, worker: int, rid: int, service: float) -> None:
        self.ex.submit(_REQ.pack(rid, service * self._slow[worker]), worker=worker)

    def collect(self, timeout: float) -> list[tuple[int, float, float]]:
        ex = self.ex
        if timeout > 0.0 and not ex.wait(timeout) and not ex.pending:
            # Nothing in flight, so nothing to wait for: sleep like select()
            # would, rather than spin on a core the workers need.
            time.sleep(timeout)
        unpack = _REP.unpack
        return [unpack(r.unwrap()) for r in ex.poll()]

    def close(self) -> None:
        self.ex.close()

    def __enter__(self) -> ExecutorPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WorkerPool:
    """``n`` worker processes, each behind a duplex pipe; ``work`` as for
    :class:`ExecutorPool`.  A context manager."""

    def __init__(self, n: int = 2, *, slow: Sequence[float] | None = None, work: str = "spin") -> None:
        if n < 1:
            raise ValueError("a pool needs at least one worker")
        job = _job(work)
        self.n = n
        self._slow = list(slow) if slow else [1.0] * n
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.conns = []
        self.procs = []
        for i in range(n):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(target=_pipe_worker, args=(child, job), name=f"dataplane-worker-{i}", daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        self.fds = [c.fileno() for c in self.conns]
        self._recv = {c.fileno(): c.recv_bytes for c in self.conns}

    def send(self, worker: int, rid: int, service: float) -> None:
        """Run request ``rid`` on ``worker``: spin or wait ``service`` seconds
        (stretched by the worker's ``slow`` factor)."""
        self.conns[worker].send_bytes(_REQ.pack(rid, service * self._slow[worker]))

    def collect(self, timeout: float) -> list[tuple[int, float, float]]:
        """Finished requests, (id, start, end), waiting up to ``timeout`` for one."""
        ready, _, _ = select.select(self.fds, (), (), timeout)
        unpack, recv = _REP.unpack, self._recv
        return [unpack(recv[fd]()) for fd in ready]

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send_bytes(b"")
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(1.0)
        for c in self.conns:
            c.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_live(
    gateway: Gateway,
    schedule: Sequence[Arrival],
    pool: Pool,
    *,
    recorder: Recorder | None = None,
    lead: float = 0.05,
    drain: float = 2.0,
) -> tuple[Recorder, dict]:
    """Serve ``schedule`` through ``gateway`` on ``pool``'s workers, in real time.

    The gateway's workers must be named 0..n-1 (its ``Gateway(n, ...)``
    default) and its clock must be the monotonic one.  Returns the recorder
    and run facts: how late the sender ran, the wall time, what was left
    unfinished after ``drain`` seconds.
    """
    rec = recorder if recorder is not None else Recorder()
    perf = time.perf_counter
    send, collect = pool.send, pool.collect
    inflight: dict[int, Request] = {}
    last_end = [0.0] * pool.n
    counted = rec.counts

    user_drop = gateway.on_drop

    def dropped(req: Request, reason) -> None:
        if counted(req.payload[1]):
            rec.shed(req.tenant)
        if user_drop is not None:
            user_drop(req, reason)

    gateway.on_drop = dropped
    n = len(schedule)
    global _next_id
    base = _next_id  # ids never repeat across runs on one pool
    _next_id += n
    # The schedule and the recorder are a large, long-lived heap: a full
    # collection scanning it stopped the sender for 20-44 ms, which every
    # queued request then paid.  Frozen, the collector skips it (what a
    # latency-critical server does with its own long-lived state).  Done
    # before the start is set: the collection itself takes that long.
    thaw = gc.get_freeze_count() == 0  # a caller's own freeze stays
    gc.collect()
    gc.freeze()
    start = perf() + lead
    i = 0
    max_behind = 0.0
    sum_behind = 0.0
    dispatch = gateway.dispatch
    submit = gateway.submit
    complete = gateway.complete
    end_by = math.inf
    busy = 0.0
    try:
        while True:
            now = perf()
            # Open loop: everything whose time has come is sent now, however late.
            while i < n:
                a = schedule[i]
                t_s = start + a.t
                if t_s > now:
                    break
                i += 1
                behind = now - t_s
                sum_behind += behind
                if behind > max_behind:
                    max_behind = behind
                req = Request(a.tenant, a.cost, None if a.deadline is None else t_s + a.deadline,
                              payload=(a.service, a.t, base + i - 1), arrival=t_s)
                c = counted(a.t)
                if c:
                    rec.offered(a.tenant)
                try:
                    submit(req)
                except Rejected as exc:
                    if c:
                        rec.rejected(a.tenant, exc.reason)
                else:
                    if c:
                        rec.admitted(a.tenant)
            while True:
                r = dispatch()
                if r is None:
                    break
                rid = r.payload[2]
                inflight[rid] = r
                send(r.worker, rid, r.payload[0])
            if i >= n:
                if not inflight and not gateway.pending:
                    break
                if end_by == math.inf:
                    end_by = perf() + drain
                elif perf() > end_by:
                    break
                timeout = 0.05
            else:
                timeout = start + schedule[i].t - perf()
            if timeout > 0.0 or inflight:
                done = collect(timeout if timeout > 0.0 else 0.0)
                if done:
                    t_done = perf()
                    for rid, t0, t1 in done:
                        r = inflight.pop(rid, None)
                        if r is None:  # a straggler from an earlier run
                            continue
                        # The worker was occupied by this request from when it
                        # finished the previous one (if this was already waiting
                        # in its pipe) or from dispatch: that, not the spin alone,
                        # is the service rate admission must plan with.
                        w = r.worker
                        prev = last_end[w]
                        begin = prev if prev > r.started else r.started
                        last_end[w] = t1
                        busy += t1 - t0
                        complete(r, t1 - begin, latency=t1 - t0)
                        rec.served(r.tenant, t_done - start, r.cost)
                        if counted(r.payload[1]):
                            rec.completed(r.tenant, t_done - r.arrival, t_done <= r.deadline, r.cost)
        wall = perf() - start
        unfinished = len(inflight) + gateway.pending
        # Leave the pipes empty for the next run: collect what is still running.
        quiet_by = perf() + 5.0
        while inflight and perf() < quiet_by:
            for rid, t0, t1 in collect(0.1):
                r = inflight.pop(rid, None)
                if r is not None:  # the gateway's worker accounts stay exact for its next run
                    complete(r, t1 - t0)
    finally:
        if thaw:
            gc.unfreeze()
        gateway.on_drop = user_drop  # the caller's callback again
    facts = {
        "wall_s": wall,
        "sender_behind_max_ms": max_behind * 1e3,
        "sender_behind_mean_us": (sum_behind / n * 1e6) if n else 0.0,
        "unfinished": unfinished,
        # Share of the workers' wall time spent running requests: what the
        # parent (sender + gateway + pipes) failed to keep busy is the rest.
        "worker_utilization": busy / (pool.n * wall) if wall > 0 else 0.0,
    }
    return rec, facts


def calibrate(pool: Pool, service: Service, seconds: float = 1.0, slots: int = 2, seed: int = 7) -> float:
    """Measured capacity (requests/s) of ``pool`` for ``service``: every
    worker kept ``slots`` deep for ``seconds``, closed loop, no gateway."""
    import random

    rng = random.Random(seed)
    perf = time.perf_counter
    owner: dict[int, int] = {}  # request id -> worker
    done = 0
    t_end = perf() + seconds

    def start(worker: int) -> None:
        global _next_id
        rid = _next_id
        _next_id += 1
        owner[rid] = worker
        pool.send(worker, rid, service.draw(rng))

    for w in range(pool.n):
        for _ in range(slots):
            start(w)
    while owner:
        finished = pool.collect(0.1)
        now = perf()
        for rid, _, _ in finished:
            w = owner.pop(rid, None)
            if w is None:  # a straggler from an earlier run
                continue
            if now < t_end:
                done += 1
                start(w)
    return done / seconds


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
