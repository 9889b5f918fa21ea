"""StealQueues: the shim's per-core work-stealing queues (native/steal.c)
over a named shared-memory segment.

One queue per worker; the creating process is the dispatcher and the only
producer.  Workers :meth:`register`, then :meth:`take` (own queue first,
then, when stealing is on or a worker died, the others), look at the request
through :meth:`view` and finish with :meth:`respond` or :meth:`release`.
"""
from __future__ import annotations

import mmap
import os
import errno
from typing import Any

from dataplane._ffi import ffi, lib
from dataplane.errors import DP_EAGAIN, DP_EPEERGONE, DP_ETIMEDOUT, RingCorrupt, RingNotFound, raise_for
from dataplane.ring import Ring, _check_name, _ns, segment_path

DEFAULT_SLOTS = 512
DEFAULT_MAX_REQUEST = 4096

TAKEN, STOLEN, SLEEPS, RESPONDED = (lib.DP_STEAL_C_TAKEN, lib.DP_STEAL_C_STOLEN, lib.DP_STEAL_C_SLEEPS,
                                     lib.DP_STEAL_C_RESPONDED)


class StealQueues:
    """A handle on the queue segment (one per process)."""

    __slots__ = ("name", "_s", "_map", "_mv", "_ro", "_base", "_item", "__weakref__")

    def __init__(self, name: str, mapping: mmap.mmap, init: tuple[int, int, int, int] | None) -> None:
        self.name = name
        self._map = mapping
        self._mv = memoryview(mapping)
        self._ro = self._mv.toreadonly()
        self._base = ffi.from_buffer(mapping)
        out = ffi.new("dp_steal **")
        nq, slots, max_request, flags = init or (0, 0, 0, 0)
        rc = lib.dp_steal_open_mem(self._base, len(mapping), 1 if init else 0, nq, slots, max_request, flags, out)
        if rc < 0:
            self._drop_mapping()
            raise_for(rc, f"steal segment {name!r}", ffi.errno)
        self._s = out[0]
        self._item = ffi.new("dp_steal_item *")

    # -------------------------------------------------------- lifecycle --

    @classmethod
    def create(cls, name: str, nqueues: int, *, slots: int = DEFAULT_SLOTS, max_request: int = DEFAULT_MAX_REQUEST,
               steal: bool = True) -> StealQueues:
        """Create the segment (mode 0600); this process becomes the dispatcher."""
        path = segment_path(name)
        if not isinstance(nqueues, int) or not 1 <= nqueues <= lib.DP_STEAL_MAX_QUEUES:
            raise ValueError(f"nqueues must be in 1..{lib.DP_STEAL_MAX_QUEUES}, not {nqueues!r}")
        if not isinstance(slots, int) or slots < 2 or slots > lib.DP_STEAL_MAX_SLOTS or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two in 2..{lib.DP_STEAL_MAX_SLOTS}, not {slots!r}")
        if not isinstance(max_request, int) or not 0 <= max_request <= lib.DP_STEAL_MAX_REQUEST:
            raise ValueError(f"max_request must be in 0..{lib.DP_STEAL_MAX_REQUEST}, not {max_request!r}")
        size = lib.dp_steal_segment_size(nqueues, slots, max_request)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        flags = lib.DP_STEAL_F_STEAL if steal else 0
        try:
            return cls(name, mapping, (nqueues, slots, max_request, flags))
        except BaseException:
            os.unlink(path)
            raise

    @classmethod
    def attach(cls, name: str) -> StealQueues:
        """Map an existing segment, validating its header."""
        path = segment_path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingNotFound(errno.ENOENT, f"no steal segment named {name!r} ({path})") from None
        try:
            size = os.fstat(fd).st_size
            if size < 4096:
                raise RingCorrupt(f"steal segment {name!r}: {size} bytes is too small")
            mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        finally:
            os.close(fd)
        return cls(name, mapping, None)

    def _drop_mapping(self) -> None:
        ffi.release(self._base)
        for v in (self._ro, self._mv):
            try:
                v.release()
            except BufferError:
                pass
        try:
            self._map.close()
        except BufferError:
            pass  # a request view is still exported: the mapping outlives us

    def close(self) -> None:
        s, self._s = getattr(self, "_s", None), None
        if s is not None:
            lib.dp_steal_close(s)
            self._drop_mapping()

    def unlink(self) -> None:
        try:
            os.unlink(segment_path(_check_name(self.name)))
        except FileNotFoundError:
            pass

    def __enter__(self) -> StealQueues:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------- properties --

    @property
    def handle(self) -> Any:
        """The C handle (``dp_steal *``) for hot loops that call the shim directly."""
        if self._s is None:
            raise ValueError("steal segment is closed")
        return self._s

    @property
    def nqueues(self) -> int:
        return lib.dp_steal_nqueues(self.handle)

    @property
    def slots(self) -> int:
        return lib.dp_steal_slots(self.handle)

    @property
    def max_request(self) -> int:
        return lib.dp_steal_max_request(self.handle)

    @property
    def steal(self) -> bool:
        return bool(lib.dp_steal_flags(self.handle) & lib.DP_STEAL_F_STEAL)

    @property
    def readonly_view(self) -> memoryview:
        """The whole segment, read-only; request payloads are slices of it."""
        return self._ro

    def set_spin(self, seconds: float) -> None:
        """Spin this long before sleeping on a futex (workers and dispatcher)."""
        lib.dp_steal_set_spin(self.handle, _ns(seconds))

    def depth(self, queue: int) -> int:
        return lib.dp_steal_depth(self.handle, queue)

    def counter(self, worker: int, which: int) -> int:
        return lib.dp_steal_counter(self.handle, worker, which)

    # ------------------------------------------------------- dispatcher --

    def push(self, queue: int, request_id: int, data: Any, flow: int = 0, timeout: float | None = 0) -> bool:
        """Copy a request into ``queue``; False when it stayed full for ``timeout``."""
        if type(data) is not bytes:
            data = ffi.from_buffer(data)
        rc = lib.dp_steal_push(self.handle, queue, request_id, flow & 0xFFFFFFFF, data, len(data), _ns(timeout))
        if rc < 0:
            if rc in (DP_EAGAIN, DP_ETIMEDOUT):
                return False
            raise_for(rc, f"push to queue {queue}", ffi.errno)
        return True

    def alive(self, worker: int) -> bool | None:
        """True/False, or None while the worker has not registered."""
        rc = lib.dp_steal_worker_alive(self.handle, worker)
        if rc == DP_EAGAIN:
            return None
        if rc < 0:
            raise_for(rc, f"worker {worker}")
        return bool(rc)

    def reap(self, worker: int) -> list[int]:
        """Declare ``worker`` dead: free the slots it held and return their
        request ids; its queue becomes everyone's."""
        ids = ffi.new("uint64_t[]", 16)
        n = lib.dp_steal_reap(self.handle, worker, ids, 16)
        if n < 0:
            raise_for(n, f"reap worker {worker}")
        return [ids[i] for i in range(min(n, 16))]

    def shutdown(self) -> None:
        """Workers finish what they may take, then their take ends."""
        lib.dp_steal_shutdown(self.handle)

    def wait_results(self, rings: Any, n: int, timeout: float | None) -> bool:
        """Wait until one of ``rings`` (a ``dp_ring *[]``) holds a message."""
        return lib.dp_steal_wait_results(self.handle, rings, n, _ns(timeout)) == 1

    # ----------------------------------------------------------- worker --

    def register(self, worker: int) -> None:
        rc = lib.dp_steal_register(self.handle, worker)
        if rc < 0:
            raise_for(rc, f"register worker {worker}")

    def take(self, worker: int, timeout: float | None = None) -> Any:
        """Claim the next request; returns the ``dp_steal_item`` (valid until
        the next take), or None once the segment is shut down and drained
        (or the timeout expired)."""
        item = self._item
        rc = lib.dp_steal_take(self.handle, worker, _ns(timeout), item)
        if rc < 0:
            if rc in (DP_EPEERGONE, DP_EAGAIN, DP_ETIMEDOUT):
                return None
            raise_for(rc, "take", ffi.errno)
        return item

    def view(self, item: Any) -> memoryview:
        """The taken request's payload, read-only and in place."""
        off = item.offset
        return self._ro[off : off + item.len]

    def release(self) -> None:
        rc = lib.dp_steal_release(self.handle)
        if rc < 0:
            raise_for(rc, "release")

    def respond(self, ring: Ring, data: Any, status: int = 0) -> None:
        """Send the response for the taken request on ``ring`` and free its slot."""
        if type(data) is not bytes:
            data = ffi.from_buffer(data)
        rc = lib.dp_steal_respond(self.handle, ring._live(), status, data, len(data))
        if rc < 0:
            raise_for(rc, "respond", ffi.errno)

    # ------------------------------------------------------ shim loops --

    def bench_produce(self, queue: int, first_id: int, n: int, length: int = 16, timeout: float | None = None) -> int:
        """Push ids ``first_id..`` from C (queue >= nqueues: round-robin)."""
        rc = lib.dp_steal_bench_produce(self.handle, queue, first_id, n, length, _ns(timeout))
        if rc < 0:
            raise_for(int(rc), "bench_produce", ffi.errno)
        return int(rc)

    def bench_consume(self, worker: int, max_ids: int, idle: float | None = None) -> list[int]:
        """Take and release from C until shut down (or idle), checking every
        payload; returns the ids taken in order."""
        ids = ffi.new("uint64_t[]", max_ids)
        rc = lib.dp_steal_bench_consume(self.handle, worker, ids, max_ids, _ns(idle))
        if rc < 0:
            raise_for(int(rc), "bench_consume", ffi.errno)
        return list(ffi.unpack(ids, int(rc)))
