"""Executor: N pinned worker processes running a Python handler, fed through
per-core work-stealing queues in shared memory, answering through one
response ring per worker.

The calling process is the dispatcher: :meth:`Executor.submit` places a
request on a core's queue (by flow hash, JBSQ or one central queue),
:meth:`~Executor.results`, :meth:`~Executor.poll` and :meth:`~Executor.call`
collect the answers.  Every submitted request ends as exactly one
:class:`Result`: the handler's bytes, a :class:`HandlerError`, a
:class:`WorkerCrashed` when its worker died under it, or :class:`Cancelled`
when the executor was closed without waiting.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from dataplane._ffi import ffi, lib
from dataplane.errors import DataplaneError, InvalidState, MessageTooLarge, PeerGone, Timeout, raise_for
from dataplane.executor.errors import Cancelled, HandlerError, WorkerCrashed
from dataplane.executor.placement import Policy, choose_queue, flow_hash
from dataplane.executor.queues import DEFAULT_SLOTS, RESPONDED, SLEEPS, STOLEN, TAKEN, StealQueues
from dataplane.executor.worker import Handler, decode_error, resolve_handler, worker_main
from dataplane.ring import Ring

_RESP = struct.Struct("<QII")  # id, status, worker: native/steal.h's response header
_HDR = _RESP.size
_OK = lib.DP_STEAL_OK
_LIVENESS_EVERY = 0.005  # seconds between checks that every worker lives
_WAIT_SLICE = 0.01  # a waiting dispatcher re-checks liveness at least this often
_START_TIMEOUT = 30.0


class Result(NamedTuple):
    """The outcome of one request: ``value`` when ``ok``, else ``error``.
    (A named tuple: the dispatcher makes one per request.)"""

    id: int
    ok: bool
    value: bytes | None = None
    error: DataplaneError | None = None

    def unwrap(self) -> bytes:
        """The value, or raise the error."""
        if self.ok:
            return self.value  # type: ignore[return-value]
        raise self.error  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Counters:
    """Requests submitted, placed on a core queue, taken from another core's
    queue, answered by the handler, failed (handler error, crash or cancel),
    and lost to crashes; per worker: taken and futex sleeps."""

    submitted: int
    dispatched: int
    stolen: int
    completed: int
    failed: int
    crashed: int
    taken: tuple[int, ...]
    sleeps: tuple[int, ...]


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Executor:
    """A pool of pinned worker processes behind per-core queues.

    ``handler(request: memoryview) -> bytes-like`` runs in the workers; the
    view is valid only during the call.  Give it as a callable (inherited by
    forked workers, pickled by reference otherwise) or ``"module:function"``.

    ``policy``: ``"steal"`` (flow hash, idle cores steal), ``"partitioned"``
    (flow hash, no stealing), ``"central"`` (one queue all workers take
    from) or ``"jbsq"`` (JBSQ(``jbsq_depth``); ``steal=True`` adds stealing).
    Workers spin ``spin_us`` microseconds when idle, then sleep on a futex.
    """

    def __init__(
        self,
        handler: str | Handler,
        workers: int = 2,
        policy: str = "steal",
        *,
        jbsq_depth: int = 2,
        steal: bool | None = None,
        max_request: int = 4096,
        max_response: int = 1 << 16,
        queue_slots: int = DEFAULT_SLOTS,
        pin: bool = True,
        spin_us: float = 50.0,
        dispatcher_spin_us: float | None = None,
        start_method: str = "fork",
        start_timeout: float = _START_TIMEOUT,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, not {workers!r}")
        if workers > lib.DP_STEAL_MAX_QUEUES:
            raise ValueError(f"workers must be <= {lib.DP_STEAL_MAX_QUEUES}, not {workers}")
        self._policy = Policy.parse(policy, jbsq_depth, steal)
        if not isinstance(max_request, int) or not 0 <= max_request <= lib.DP_STEAL_MAX_REQUEST:
            raise ValueError(f"max_request must be in 0..{lib.DP_STEAL_MAX_REQUEST}, not {max_request!r}")
        if not isinstance(max_response, int) or not 0 <= max_response <= 1 << 30:
            raise ValueError(f"max_response must be in 0..{1 << 30}, not {max_response!r}")
        if not isinstance(queue_slots, int) or queue_slots < 2 or queue_slots & (queue_slots - 1):
            raise ValueError(f"queue_slots must be a power of two >= 2, not {queue_slots!r}")
        if self._policy.name == "jbsq" and jbsq_depth > queue_slots:
            raise ValueError(f"jbsq_depth {jbsq_depth} exceeds queue_slots {queue_slots}")
        if not spin_us >= 0:
            raise ValueError(f"spin_us must be >= 0, not {spin_us!r}")
        if dispatcher_spin_us is None:
            # Sharing a core with a worker, a spinning dispatcher only delays
            # it: the dispatcher is woken by the very response it waits for.
            dispatcher_spin_us = 0.0 if workers >= len(os.sched_getaffinity(0)) else min(spin_us, 20.0)
        if not dispatcher_spin_us >= 0:
            raise ValueError(f"dispatcher_spin_us must be >= 0, not {dispatcher_spin_us!r}")
        if isinstance(handler, str):
            resolve_handler(handler)  # fail here, not in every worker
        elif not callable(handler):
            raise ValueError(f"handler must be a callable or a 'module:function' string, not {handler!r}")

        self._n = workers
        self._max_request = max_request
        self._max_response = max_response
        self._closed = True  # until the workers run
        self._next_id = 0
        self._where: dict[int, int] = {}  # outstanding id -> queue (-1: held back by JBSQ)
        self._ready: deque[Result] = deque()
        self._backlog: deque[tuple[int, int, bytes]] = deque()
        self._inflight = [0] * workers
        self._live = list(range(workers))
        self._dead: dict[int, str] = {}
        self._want = -1
        self._got: Result | None = None
        self._next_check = 0.0
        self._submitted = self._dispatched = self._completed = self._failed = self._crashed = 0
        self._procs: list[Any] = []
        self._rings: list[Ring] = []

        tag = f"dpx-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self._queues = StealQueues.create(tag, workers, slots=queue_slots, max_request=max_request,
                                          steal=self._policy.steal)
        try:
            self._s = self._queues.handle
            self._queues.set_spin(dispatcher_spin_us * 1e-6)
            ring_max = max_response + _RESP.size
            ring_cap = _pow2_at_least(max(1 << 18, 2 * (ring_max + 16)))
            for w in range(workers):
                self._rings.append(Ring.create(f"{tag}-r{w}", capacity=ring_cap, max_message=ring_max))
            self._ring_ptrs = ffi.new("dp_ring *[]", [r._live() for r in self._rings])
            self._ready_idx = ffi.new("uint32_t[]", workers)
            ctx = mp.get_context(start_method)
            for w in range(workers):
                p = ctx.Process(target=worker_main, name=f"dataplane-worker-{w}", daemon=True,
                                args=(tag, f"{tag}-r{w}", w, handler, pin, spin_us * 1e-6))
                p.start()
                self._procs.append(p)
            self._await_workers(start_timeout)
            self._closed = False
        except BaseException:
            self._teardown(kill=True)
            raise
        finally:
            # Every worker has mapped what it needs (or we are failing):
            # the names go, so nothing is left in /dev/shm whatever happens.
            self._queues.unlink()
            for r in self._rings:
                r.unlink()

    def _await_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(range(self._n))
        while waiting:
            for w in list(waiting):
                if self._queues.alive(w) is not None:
                    waiting.discard(w)
                elif self._procs[w].exitcode is not None:
                    raise RuntimeError(f"worker {w} exited with code {self._procs[w].exitcode} while starting "
                                       "(see its traceback above)")
            if time.monotonic() > deadline:
                raise Timeout(f"workers {sorted(waiting)} did not start within {timeout} s")
            if waiting:
                time.sleep(0.001)

    # ------------------------------------------------------- properties --

    @property
    def workers(self) -> int:
        return self._n

    @property
    def policy(self) -> str:
        return self._policy.name

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    @property
    def live_workers(self) -> list[int]:
        return list(self._live)

    @property
    def pending(self) -> int:
        """Requests submitted whose result has not been collected yet."""
        return len(self._where)

    @property
    def max_request(self) -> int:
        return self._max_request

    @property
    def counters(self) -> Counters:
        q = self._queues
        ws = range(self._n)
        return Counters(
            submitted=self._submitted,
            dispatched=self._dispatched,
            stolen=sum(q.counter(w, STOLEN) for w in ws),
            completed=self._completed,
            failed=self._failed,
            crashed=self._crashed,
            taken=tuple(q.counter(w, TAKEN) for w in ws),
            sleeps=tuple(q.counter(w, SLEEPS) for w in ws),
        )

    def responded(self, worker: int) -> int:
        return self._queues.counter(worker, RESPONDED)

    # ----------------------------------------------------------- submit --

    def submit(self, request: Any, flow: int | None = None, timeout: float | None = None, *,
               worker: int | None = None) -> int:
        """Queue ``request`` (bytes-like, up to ``max_request`` bytes) and
        return its id.  Requests of one ``flow`` go to one core's queue
        (policies steal/partitioned); ``flow=None`` spreads by request id.
        ``worker`` puts it on that worker's queue instead, for a caller that
        schedules itself (the control plane's gateway): under
        ``partitioned`` and ``jbsq`` that worker runs it (JBSQ's depth bound
        and backlog are the caller's business then); under ``steal`` and
        ``central`` another may take it, as it takes any request.
        Waits up to ``timeout`` (None: forever) while the queue is full,
        collecting results meanwhile; raises Timeout if it stays full."""
        if self._closed:
            raise InvalidState("executor is closed")
        data = request if type(request) is bytes else ffi.from_buffer(request)
        n = len(data)
        if n > self._max_request:
            raise MessageTooLarge(f"request of {n} bytes exceeds max_request {self._max_request}")
        live = self._live
        if not live:
            raise WorkerCrashed("no live workers left")
        rid = self._next_id
        key = rid if flow is None else flow
        kind = self._policy.name
        if worker is not None:
            if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < self._n:
                raise ValueError(f"worker must be an int in 0..{self._n - 1}, not {worker!r}")
            if worker not in live:
                raise WorkerCrashed(f"worker {worker} is not alive", worker=worker)
            q = worker
        elif kind == "jbsq":
            q = -1 if self._backlog else choose_queue(self._policy, live, key, self._inflight)
            if q < 0:
                self._backlog.append((rid, key, bytes(data)))
                self._next_id = rid + 1
                self._submitted += 1
                self._where[rid] = -1
                return rid
        elif kind == "central":
            q = live[0]
        else:
            q = live[flow_hash(key) % len(live)]
        if lib.dp_steal_push(self._s, q, rid, key & 0xFFFFFFFF, data, n, 0) < 0:
            q = self._push_slow(q, rid, key, data, timeout, pinned=worker is not None)
        self._where[rid] = q
        self._inflight[q] += 1
        self._dispatched += 1
        self._next_id = rid + 1
        self._submitted += 1
        return rid

    def _push_slow(self, q: int, rid: int, key: int, data: Any, timeout: float | None, pinned: bool = False) -> int:
        """The queue was full (or the push failed): retry until it takes the
        request, collecting answers meanwhile; returns the queue used.
        ``pinned``: the caller chose the worker, so its death is an error
        rather than a reason to place the request elsewhere."""
        push, s = lib.dp_steal_push, self._s
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = push(s, q, rid, key & 0xFFFFFFFF, data, len(data), 0)
            if rc == 0:
                return q
            if rc != lib.DP_EAGAIN:
                raise_for(rc, f"push to queue {q}", ffi.errno)
            # Answers must keep flowing or the workers stall on their
            # response rings, which would keep this queue full for ever.
            self._collect()
            if q not in self._live:  # its worker died meanwhile
                if pinned:
                    raise WorkerCrashed(f"worker {q} died before it took the request", worker=q)
                if not self._live:
                    raise WorkerCrashed("no live workers left")
                q = choose_queue(self._policy, self._live, key, self._inflight)
                if q < 0:
                    q = min(self._live, key=self._inflight.__getitem__)
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"queue {q} stayed full for {timeout} s")
            self._queues.wait_results(self._ring_ptrs, self._n, 50e-6)

    def _drain_backlog(self) -> None:
        backlog, live, inflight, depth = self._backlog, self._live, self._inflight, self._policy.jbsq_depth
        while backlog and live:
            q = min(live, key=inflight.__getitem__)
            if inflight[q] >= depth:
                return
            rid, key, data = backlog.popleft()
            if lib.dp_steal_push(self._s, q, rid, key & 0xFFFFFFFF, data, len(data), 0) < 0:
                backlog.appendleft((rid, key, data))  # full despite the bound: a dead worker's leftovers
                return
            self._where[rid] = q
            inflight[q] += 1
            self._dispatched += 1

    # ---------------------------------------------------------- collect --

    def _deliver(self, res: Result) -> None:
        if res.ok:
            self._completed += 1
        else:
            self._failed += 1
        if res.id == self._want:
            self._got = res
        else:
            self._ready.append(res)

    def _on_response(self, data: bytes) -> None:
        rid, status, _worker = _RESP.unpack_from(data)
        q = self._where.pop(rid, None)
        if q is None:  # cannot happen unless the shim breaks exactly-once
            raise DataplaneError(f"response for unknown or already finished request {rid}")
        if q >= 0:
            self._inflight[q] -= 1
        if status == _OK:
            self._completed += 1
            res = Result(rid, True, data[_HDR:])
            if rid == self._want:
                self._got = res
            else:
                self._ready.append(res)
        else:
            type_name, msg, tb = decode_error(data[_RESP.size:])
            err = HandlerError(f"handler raised {type_name}: {msg}", type_name=type_name, remote_traceback=tb)
            self._deliver(Result(rid, False, None, err))

    def _drain_ring(self, ring: Ring) -> int:
        n = 0
        recv = ring.try_recv
        while True:
            try:
                data = recv()
            except PeerGone:
                return n
            if data is None:
                return n
            self._on_response(data)
            n += 1

    def _collect(self) -> int:
        """Take every answer waiting in the response rings; check liveness
        now and then.  Returns how many answers arrived."""
        n = 0
        # One C call finds the rings with answers: draining each ring from
        # Python costs microseconds here, which a dispatcher of many mostly
        # idle workers paid on every look (an answer noticed 130 us after
        # it was sent with 8 workers, against 70 us with one).
        ready = self._ready_idx
        for i in range(lib.dp_steal_ready(self._ring_ptrs, self._n, ready)):
            n += self._drain_ring(self._rings[ready[i]])
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + _LIVENESS_EVERY
            self._check_workers()
        if self._backlog:
            self._drain_backlog()
        return n

    def _check_workers(self) -> None:
        # The workers are our children: waitpid (through exitcode) is exact
        # and costs a microsecond, where the shim's pid + /proc start-time
        # check (StealQueues.alive, for processes that are not children)
        # costs tens, on a core a worker may be waiting for.
        for w in list(self._live):
            if self._procs[w].exitcode is not None:
                self._on_worker_death(w)

    def _on_worker_death(self, w: int) -> None:
        proc = self._procs[w]
        proc.join(0.05)
        code = proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._live.remove(w)
        self._dead[w] = how
        # What it answered before dying counts; drain before failing anything.
        self._drain_ring(self._rings[w])
        for rid in self._queues.reap(w):
            q = self._where.pop(rid, None)
            if q is None:
                continue
            if q >= 0:
                self._inflight[q] -= 1
            self._crashed += 1
            err = WorkerCrashed(f"worker {w} (pid {proc.pid}, {how}) died while running request {rid}",
                                worker=w, pid=proc.pid, exitcode=code)
            self._deliver(Result(rid, False, None, err))
        if not self._live:
            self._fail_unrunnable(WorkerCrashed("no live workers left to run the request"))

    def _cancel_queued(self, err: DataplaneError) -> None:
        """Take what no worker has started out of the queues, and fail it."""
        s, item = self._queues.handle, ffi.new("dp_steal_item *")
        while lib.dp_steal_take(s, self._n, 0, item) == 0:
            lib.dp_steal_release(s)
            self._fail_id(item.id, err)
        while self._backlog:
            self._fail_id(self._backlog.popleft()[0], err)

    def _fail_unrunnable(self, err: DataplaneError) -> None:
        """Nobody will run anything more: fail every outstanding request."""
        self._cancel_queued(err)
        for rid in list(self._where):
            self._fail_id(rid, err)

    def _fail_id(self, rid: int, err: DataplaneError) -> None:
        q = self._where.pop(rid, None)
        if q is None:
            return
        if q >= 0:
            self._inflight[q] -= 1
        if isinstance(err, WorkerCrashed):
            self._crashed += 1
        self._deliver(Result(rid, False, None, err))

    def _wait(self, deadline: float | None) -> None:
        """Sleep until an answer may have arrived (the shim looks at the
        rings first), then collect.  Slices are short enough for liveness
        checks to run while nothing arrives."""
        slice_s = _WAIT_SLICE if deadline is None else max(0.0, min(_WAIT_SLICE, deadline - time.monotonic()))
        self._queues.wait_results(self._ring_ptrs, self._n, slice_s)
        self._collect()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a result is ready for poll() (True), or until
        ``timeout`` or nothing is outstanding (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            if self._closed or not (self._where or self._backlog):
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wait(deadline)
        return True

    def poll(self, max_results: int | None = None) -> list[Result]:
        """The results that have arrived, without waiting."""
        if not self._closed:
            self._collect()
        out = []
        ready = self._ready
        while ready and (max_results is None or len(out) < max_results):
            out.append(ready.popleft())
        return out

    def results(self, timeout: float | None = None) -> Iterator[Result]:
        """Yield results until every submitted request has one; raise
        Timeout if some are still outstanding after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while self._ready:
                yield self._ready.popleft()
            if not self._where or self._closed:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"{len(self._where)} requests still outstanding after {timeout} s")
            self._wait(deadline)

    def call(self, request: Any, flow: int | None = None, timeout: float | None = None) -> bytes:
        """Submit and wait for this one request's answer; raise its error.
        Other requests' results that arrive meanwhile stay for poll()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        rid = self.submit(request, flow, timeout)
        self._want, self._got = rid, None
        try:
            while self._got is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"request {rid} did not finish within {timeout} s; its result will go to poll()")
                self._wait(deadline)
            return self._got.unwrap()
        finally:
            self._want, self._got = -1, None

    # --------------------------------------------------------- shutdown --

    def close(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Shut down.  ``wait``: let the workers finish every submitted
        request first (its result stays available to poll()/results()).
        Otherwise queued requests end as Cancelled.  Workers that do not
        exit within ``timeout`` are killed.  Safe to call twice."""
        if self._closed:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if wait:
                while (self._where or self._backlog) and self._live:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    self._wait(deadline)
            else:
                self._cancel_queued(Cancelled("executor closed before the request ran"))
            self._queues.shutdown()
            for p in self._procs:
                left = None if deadline is None else max(0.1, deadline - time.monotonic())
                p.join(left)
            # Answers sent between the last collect and the workers' exit.
            for w in range(self._n):
                self._drain_ring(self._rings[w])
            self._check_workers()
            self._fail_unrunnable(Cancelled("executor closed before the request finished"))
        finally:
            self._closed = True
            self._teardown(kill=True)

    def _teardown(self, kill: bool) -> None:
        for p in self._procs:
            if p.is_alive() and kill:
                p.kill()
                p.join(5)
        for r in self._rings:
            r.close()
        if getattr(self, "_queues", None) is not None:
            self._queues.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(wait=exc_type is None)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self._closed = True
                self._teardown(kill=True)
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"live={self._live} pending={len(self._where)}"
        return f"<Executor policy={self._policy.name} workers={self._n} {state}>"
