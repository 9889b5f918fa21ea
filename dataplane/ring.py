"""Ring: a zero-copy single-producer/single-consumer message ring in shared
memory, shared by two unrelated processes by name.

The segment is mapped by Python (``mmap``) and driven by the C shim, so every
zero-copy view is a slice of that mapping: a view that outlives ``close()``
keeps the memory mapped instead of pointing at freed pages.
"""
from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterable, Sequence
from typing import Any

from dataplane._ffi import fast_ffi, fast_lib, ffi, lib
from dataplane.errors import (
    DP_EAGAIN,
    DP_EMSGSIZE,
    InvalidState,
    MessageTooLarge,
    RingCorrupt,
    RingNotFound,
    WouldBlock,
    raise_for,
)

SHM_DIR = "/dev/shm"
DEFAULT_CAPACITY = 1 << 20
# Small messages are copied through a per-ring scratch buffer in one C call;
# larger ones are copied straight out of the ring (peek + release).
COPY_THRESHOLD = 4096
_RECORD_OVERHEAD = 8
_MIN_CAPACITY = 64
_FOREVER = -1
# Longest a recv spins holding the GIL (the fast path); past it the wait goes
# to the shim's blocking call, which releases the GIL.
FAST_SPIN_NS = 20_000
_NOT_STAGED = (IndexError, TypeError, ValueError, BufferError)  # what staging a non-fitting object raises
_fast_send, _fast_recv, _fast_poll = fast_lib.dp_stage_send, fast_lib.dp_stage_recv, fast_lib.dp_stage_poll


def _ns(timeout: float | None) -> int:
    if timeout is None:
        return _FOREVER
    if not timeout >= 0:  # rejects NaN too
        raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout!r}")
    return int(timeout * 1e9)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or len(name) >= 200 or "\0" in name:
        raise ValueError(f"invalid ring name {name!r}: 1-199 characters, no '/' or NUL")
    return name


def _release(view: memoryview) -> None:
    # A caller that exported the view (np.frombuffer, ...) keeps it alive;
    # the mapping then outlives us rather than dangling.
    try:
        view.release()
    except BufferError:
        pass


def max_message_for(capacity: int) -> int:
    """The largest max_message a ring of ``capacity`` bytes accepts."""
    return capacity // 2 - _RECORD_OVERHEAD


def segment_path(name: str) -> str:
    return os.path.join(SHM_DIR, _check_name(name))


class Reservation:
    """A writable view into the ring, published by :meth:`commit`.

    Use as a context manager: leaving the block commits the whole view,
    an exception aborts it, and nothing becomes visible to the consumer.
    """

    __slots__ = ("_ring", "view", "_open")

    def __init__(self, ring: Ring, view: memoryview) -> None:
        self._ring = ring
        self.view = view
        self._open = True

    def commit(self, nbytes: int | None = None) -> None:
        """Publish the first ``nbytes`` (default: all) of the reservation."""
        if not self._open:
            raise InvalidState("reservation already committed or aborted")
        n = len(self.view) if nbytes is None else nbytes
        if not 0 <= n <= len(self.view):
            raise MessageTooLarge(f"commit of {n} bytes exceeds the {len(self.view)} reserved")
        self._open = False
        _release(self.view)
        rc = lib.dp_ring_commit(self._ring._r, n)
        if rc < 0:
            raise_for(rc, "commit")

    def abort(self) -> None:
        """Drop the reservation; the consumer never sees it."""
        if self._open:
            self._open = False
            _release(self.view)
            lib.dp_ring_abort(self._ring._r)

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            if self._open:
                self.commit()
        else:
            self.abort()


class RecvView:
    """A read-only view of the next message, inside the ring.

    The bytes stay valid, and the producer cannot reuse their space, until
    :meth:`release` (or the end of the ``with`` block)."""

    __slots__ = ("_ring", "view", "_open")

    def __init__(self, ring: Ring, view: memoryview) -> None:
        self._ring = ring
        self.view = view
        self._open = True

    def release(self) -> None:
        if self._open:
            self._open = False
            _release(self.view)
            lib.dp_ring_release(self._ring._r)

    def __len__(self) -> int:
        return len(self.view)

    def __bytes__(self) -> bytes:
        return bytes(self.view)

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _stage(ring: Any, cap: int) -> tuple[Any, mmap.mmap, Any]:
    """A dp_stage (native/fast/stage.h) over an mmap of ``cap`` bytes (slicing
    an mmap is the cheapest way from Python to bytes and back), and the
    pointer to that mmap, which must live as long as the stage."""
    buf = mmap.mmap(-1, cap)
    ptr = fast_ffi.from_buffer(buf)
    st = fast_ffi.new("dp_stage *", {"ring": ring, "data": ptr, "cap": cap, "spin_ns": FAST_SPIN_NS})
    return st, buf, ptr


class Ring:
    """One end (or both) of a shared-memory SPSC message ring.

    The first process to send becomes the producer, the first to receive the
    consumer; a third process claiming either end gets :class:`InvalidState`.
    Within a process, one thread may send and another receive on the same
    handle at once (each end has its own state and stage buffer); two
    threads sending, or two receiving, on one handle need a lock, as with
    any single-producer/single-consumer ring.
    Timeouts are in seconds: ``None`` waits forever, ``0`` tries once.
    """

    __slots__ = ("name", "_r", "_map", "_mv", "_base", "_ptr", "_capacity", "_max", "_busy_poll", "_batch",
                 "_stage_cap", "_txst", "_txbuf", "_txlen", "_txptr", "_rxst", "_rxbuf", "_rxptr", "__weakref__")

    def __init__(self, name: str | None, mapping: mmap.mmap, init: tuple[int, int] | None) -> None:
        self.name = name
        self._map = mapping
        self._mv = memoryview(mapping)
        self._base = ffi.from_buffer(mapping)
        out = ffi.new("dp_ring **")
        cap, maxm = init if init else (0, 0)
        rc = lib.dp_ring_open_mem(self._base, len(mapping), 1 if init else 0, cap, maxm, out)
        if rc < 0:
            ffi.release(self._base)
            self._mv.release()
            mapping.close()
            raise_for(rc, f"ring {name!r}", ffi.errno)
        self._r = out[0]
        self._capacity = lib.dp_ring_capacity(self._r)
        self._max = lib.dp_ring_max_message(self._r)
        # Messages up to _stage_cap go through the stages (one-argument calls
        # that keep the GIL); see native/fast/stage.h.
        self._stage_cap = min(self._max, COPY_THRESHOLD)
        self._txst, self._txbuf, self._txptr = _stage(self._r, self._stage_cap)
        self._rxst, self._rxbuf, self._rxptr = _stage(self._r, self._stage_cap)
        # The send side sets the message length through this view of the
        # stage's first field (a cdata attribute store costs twice as much).
        assert fast_ffi.offsetof("dp_stage", "len") == 0
        self._txlen = memoryview(fast_ffi.buffer(self._txst)).cast("I")
        self._ptr = ffi.new("char **")
        self._busy_poll = False
        self._batch: tuple[Any, Any] | None = None

    # -------------------------------------------------------- lifecycle --

    @classmethod
    def create(
        cls,
        name: str,
        capacity: int = DEFAULT_CAPACITY,
        max_message: int | None = None,
        *,
        busy_poll: bool = False,
    ) -> Ring:
        """Create the named segment (mode 0600); fails if it exists.

        ``capacity`` is the data area in bytes (a power of two);
        ``max_message`` defaults to the largest the capacity allows."""
        path = segment_path(name)
        if not isinstance(capacity, int) or capacity < _MIN_CAPACITY or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two >= {_MIN_CAPACITY}, not {capacity!r}")
        limit = max_message_for(capacity)
        if max_message is None:
            max_message = limit
        if not isinstance(max_message, int) or not 0 < max_message <= limit:
            raise ValueError(f"max_message must be in 1..{limit} for capacity {capacity}, not {max_message!r}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            size = lib.dp_ring_segment_size(capacity)
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        try:
            ring = cls(name, mapping, (capacity, max_message))
        except BaseException:
            os.unlink(path)
            raise
        ring.busy_poll = busy_poll
        return ring

    @classmethod
    def attach(cls, name: str, *, busy_poll: bool = False) -> Ring:
        """Map an existing segment, validating its header."""
        path = segment_path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingNotFound(errno.ENOENT, f"no ring named {name!r} ({path})") from None
        try:
            size = os.fstat(fd).st_size
            if size < lib.dp_ring_segment_size(0):
                raise RingCorrupt(f"ring {name!r}: segment of {size} bytes is too small to hold a header")
            mapping = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        finally:
            os.close(fd)
        ring = cls(name, mapping, None)
        ring.busy_poll = busy_poll
        return ring

    @classmethod
    def over(cls, buffer: Any, *, init: bool, capacity: int = 0, max_message: int | None = None) -> Ring:
        """A ring over caller-owned memory (an ``mmap``), e.g. memory an RDMA
        NIC writes into.  The buffer must be 64-byte aligned."""
        if init:
            max_message = max_message_for(capacity) if max_message is None else max_message
            return cls(None, buffer, (capacity, max_message))
        return cls(None, buffer, None)

    def close(self) -> None:
        """Close this end: the peer sees :class:`PeerGone` once it has drained
        what was sent.  Safe to call twice."""
        r = self._r
        if r is None:
            return
        self._r = None
        # The fast calls answer DP_ESTATE from now on.
        self._txst.ring = self._rxst.ring = fast_ffi.NULL
        lib.dp_ring_close(r)
        ffi.release(self._base)
        _release(self._mv)
        try:
            self._map.close()
        except BufferError:
            pass  # a caller still holds a view: the mapping lives until it goes

    def unlink(self) -> None:
        """Remove the name; mapped ends keep working."""
        if self.name is not None:
            unlink(self.name)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_r", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._r is None else f"capacity={self._capacity} max_message={self._max}"
        return f"<Ring {self.name!r} {state}>"

    # ------------------------------------------------------- properties --

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def max_message(self) -> int:
        return self._max

    @property
    def closed(self) -> bool:
        return self._r is None

    @property
    def owner_pid(self) -> int:
        return lib.dp_ring_owner_pid(self._live())

    @property
    def used(self) -> int:
        """Bytes committed and not yet released (records and padding)."""
        return lib.dp_ring_used(self._live())

    @property
    def busy_poll(self) -> bool:
        """True: waits spin forever (lowest latency, one core busy).
        False: spin briefly, then sleep on a futex."""
        return self._busy_poll

    @busy_poll.setter
    def busy_poll(self, on: bool) -> None:
        self._busy_poll = bool(on)
        lib.dp_ring_set_spin(self._live(), -1 if on else 50_000)

    def set_spin(self, seconds: float) -> None:
        """Spin this long before sleeping on a futex."""
        self._busy_poll = False
        lib.dp_ring_set_spin(self._live(), _ns(seconds))

    def peer_alive(self) -> bool | None:
        """True/False, or None while no peer has attached."""
        rc = lib.dp_ring_peer_alive(self._live())
        return None if rc == DP_EAGAIN else bool(rc)

    def mark_peer_gone(self) -> None:
        """Declare the peer gone (a transport saw it disconnect)."""
        lib.dp_ring_mark_peer_gone(self._live())

    def _fail(self, rc: int, what: str) -> None:
        self._live()  # a closed handle: InvalidState, not the stage's DP_ESTATE
        raise_for(rc, what)

    def _live(self) -> Any:
        r = self._r
        if r is None:
            raise InvalidState("ring is closed")
        return r

    # --------------------------------------------------------- producer --

    def send(self, data: Any, timeout: float | None = None) -> None:
        """Copy one message (any contiguous bytes-like object) into the ring,
        waiting for room."""
        if timeout is not None and not timeout >= 0:
            _ns(timeout)  # raises ValueError, before anything is sent
        try:
            # The stage takes a flat buffer of exactly n bytes that fits it;
            # anything else (too big, a str, no len(), a multi-byte format)
            # raises here and takes the general path below.
            n = len(data)
            self._txbuf[:n] = data
        except _NOT_STAGED:
            pass
        else:
            self._txlen[0] = n
            rc = _fast_send(self._txst)
            if rc == 0:
                return
            if rc != DP_EAGAIN or timeout == 0:
                self._fail(rc, "send")  # full and not to wait: WouldBlock, without trying again
        buf = ffi.from_buffer(data)
        rc = lib.dp_ring_send(self._live(), buf, len(buf), _ns(timeout))
        if rc < 0:
            raise_for(rc, "send", ffi.errno)

    def try_send(self, data: Any) -> bool:
        """Send without waiting; False when the ring is full."""
        try:
            self.send(data, 0)
        except WouldBlock:
            return False
        return True

    def reserve(self, nbytes: int, timeout: float | None = None) -> Reservation:
        """Reserve ``nbytes`` in the ring and return a writable view of them;
        the consumer sees nothing until ``commit``."""
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        if nbytes > self._max:
            raise MessageTooLarge(f"{nbytes} bytes exceeds max_message {self._max}")
        rc = lib.dp_ring_reserve(self._live(), nbytes, _ns(timeout), self._ptr)
        if rc < 0:
            raise_for(rc, "reserve", ffi.errno)
        off = self._ptr[0] - self._base
        return Reservation(self, self._mv[off : off + nbytes])

    def send_many(self, messages: Iterable[Any], timeout: float | None = None) -> int:
        """Burst: send as many of ``messages`` as fit (waiting for the first)
        in one C call; returns how many were sent."""
        msgs = messages if isinstance(messages, (list, tuple)) else list(messages)
        if not msgs:
            return 0
        lens = ffi.new("uint32_t[]", [len(m) for m in msgs])
        buf = b"".join(msgs)
        rc = lib.dp_ring_send_burst(self._live(), buf, lens, len(msgs), _ns(timeout))
        if rc < 0:
            raise_for(rc, "send_many", ffi.errno)
        return rc

    def send_all(self, messages: Sequence[Any], timeout: float | None = None) -> None:
        """Bulk: send every message or none, in one C call."""
        lens = ffi.new("uint32_t[]", [len(m) for m in messages])
        buf = b"".join(messages)
        rc = lib.dp_ring_send_bulk(self._live(), buf, lens, len(messages), _ns(timeout))
        if rc < 0:
            raise_for(rc, "send_all", ffi.errno)

    def send_array(self, records: Any, timeout: float | None = None) -> int:
        """Send the rows of a C-contiguous 2-D (or structured 1-D) NumPy array,
        one message per row; returns how many rows went (a burst)."""
        n = len(records)
        if n == 0:
            return 0
        rec = records.nbytes // n
        rc = lib.dp_ring_send_records(self._live(), ffi.from_buffer(records), rec, n, _ns(timeout))
        if rc < 0:
            raise_for(rc, "send_array", ffi.errno)
        return rc

    # --------------------------------------------------------- consumer --

    def recv(self, timeout: float | None = None) -> bytes:
        """Copy out the next message, waiting for one."""
        if timeout is None:
            n = _fast_recv(self._rxst)  # spins up to FAST_SPIN_NS holding the GIL
        else:
            ns = _ns(timeout)  # ValueError for a bad timeout, whatever is queued
            n = _fast_poll(self._rxst)  # a timeout is the caller's: no extra spin
        if n >= 0:
            return self._rxbuf[:n]
        if n == DP_EAGAIN:
            # Nothing yet: wait with the GIL released.
            n = lib.dp_ring_recv(self._live(), self._rxptr, self._stage_cap, -1 if timeout is None else ns)
            if n >= 0:
                return self._rxbuf[:n]
        return self._recv_slow(n, timeout)

    def try_recv(self) -> bytes | None:
        """The next message, or None when the ring is empty."""
        n = _fast_poll(self._rxst)
        if n >= 0:
            return self._rxbuf[:n]
        if n == DP_EAGAIN:
            return None
        return self._recv_slow(n, 0)

    def _recv_slow(self, rc: int, timeout: float | None) -> bytes:
        if rc != DP_EMSGSIZE:
            self._fail(rc, "recv")
        # Longer than the stage: copy it straight out of the ring.
        n = lib.dp_ring_peek(self._r, 0, self._ptr)
        if n < 0:
            raise_for(n, "recv", ffi.errno)
        data = ffi.unpack(self._ptr[0], n)
        lib.dp_ring_release(self._r)
        return data

    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        """Copy the next message into ``buffer``; returns its length.  A
        message larger than the buffer raises MessageTooLarge and stays."""
        buf = ffi.from_buffer(buffer, require_writable=True)
        rc = lib.dp_ring_recv(self._live(), buf, len(buf), _ns(timeout))
        if rc < 0:
            raise_for(rc, "recv_into", ffi.errno)
        return rc

    def recv_view(self, timeout: float | None = None) -> RecvView:
        """The next message as a read-only view inside the ring (no copy)."""
        n = lib.dp_ring_peek(self._live(), _ns(timeout), self._ptr)
        if n < 0:
            raise_for(n, "recv_view", ffi.errno)
        off = self._ptr[0] - self._base
        return RecvView(self, self._mv[off : off + n].toreadonly())

    def recv_many(self, max_messages: int = 256, timeout: float | None = None, max_bytes: int = 1 << 20) -> list[bytes]:
        """Up to ``max_messages`` messages (at least one, waiting for it) in
        one C call."""
        if max_messages <= 0:
            raise ValueError("max_messages must be > 0")
        cap = max(max_bytes, self._max)
        batch = self._batch
        if batch is None or len(batch[0]) < cap or len(batch[1]) < max_messages:
            # Reused across calls: allocating (and zeroing) it each time costs
            # more than the messages for small ones.
            batch = self._batch = (ffi.new("char[]", cap), ffi.new("uint32_t[]", max_messages))
        buf, lens = batch
        rc = lib.dp_ring_recv_burst(self._live(), buf, cap, lens, max_messages, _ns(timeout))
        if rc < 0:
            raise_for(rc, "recv_many", ffi.errno)
        out, off, mv = [], 0, ffi.buffer(buf, cap)
        for i in range(rc):
            n = lens[i]
            out.append(mv[off : off + n])
            off += n
        return out

    def recv_array(self, out: Any, timeout: float | None = None) -> int:
        """Fill rows of the C-contiguous NumPy array ``out`` with messages of
        exactly one row's size; returns the number of rows filled."""
        n = len(out)
        if n == 0:
            return 0
        rec = out.nbytes // n
        rc = lib.dp_ring_recv_records(self._live(), ffi.from_buffer(out, require_writable=True), rec, n, _ns(timeout))
        if rc < 0:
            raise_for(rc, "recv_array", ffi.errno)
        return rc


def unlink(name: str) -> None:
    """Remove a ring's name from /dev/shm (no error if it is gone)."""
    try:
        os.unlink(segment_path(name))
    except FileNotFoundError:
        pass
