"""``shm://NAME``: a Channel made of two Rings, ``NAME.c2s`` (connector to
binder) and ``NAME.s2c`` (binder to connector).

``bind`` creates both rings and owns them (``close`` unlinks the names);
``connect`` attaches.  Each side claims its ends of both rings as soon as it
opens them, so that the death of either process is seen by the other
(``PeerGone``) even before a message has crossed, and a third process trying
to join gets :class:`~dataplane.errors.InvalidState`.
"""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

from dataplane._ffi import ffi, lib
from dataplane.errors import DP_EAGAIN, DP_EMSGSIZE, DP_EPEERGONE, RingNotFound, raise_for
from dataplane.ring import DEFAULT_CAPACITY, RecvView, Reservation, Ring, segment_path, unlink
from dataplane.transport.base import Channel, check_timeout
from dataplane.transport.url import Endpoint, pop_bool, pop_float, pop_int, reject_unknown

C2S, S2C = ".c2s", ".s2c"
DEFAULT_CONNECT_TIMEOUT = 10.0
_FORKED_COPIES: list[tuple[Ring, Ring]] = []


def ring_names(name: str) -> tuple[str, str]:
    """(connector→binder, binder→connector) ring names of channel ``name``."""
    return name + C2S, name + S2C


def _claim_producer(ring: Ring) -> None:
    # A zero-byte reservation claims the producer end without publishing
    # anything; a full ring (DP_EAGAIN) has still been claimed.
    ptr = ffi.new("char **")
    rc = lib.dp_ring_reserve(ring._r, 0, 0, ptr)
    if rc == 0:
        lib.dp_ring_abort(ring._r)
    elif rc not in (DP_EAGAIN, DP_EPEERGONE):
        raise_for(rc, f"claiming the producer end of {ring.name!r}", ffi.errno)


def _claim_consumer(ring: Ring) -> None:
    # A record size no message can have claims the consumer end and leaves
    # any message already waiting where it is (DP_EMSGSIZE).
    rc = lib.dp_ring_recv_records(ring._r, ffi.NULL, 0xFFFFFFFF, 1, 0)
    if rc < 0 and rc not in (DP_EAGAIN, DP_EMSGSIZE, DP_EPEERGONE):
        raise_for(rc, f"claiming the consumer end of {ring.name!r}", ffi.errno)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ShmChannel(Channel):
    """A Channel over two shared-memory rings (see module doc).

    Besides the Channel API it offers the Ring's extras: :meth:`reserve`
    (zero-copy send), :meth:`send_array`/:meth:`recv_array` and the two
    rings themselves as ``tx`` and ``rx``."""

    transport = "shm"

    def __init__(self, name: str, tx: Ring, rx: Ring, owner: bool, url: str) -> None:
        self.name = name
        self.tx, self.rx = tx, rx
        self.url = url
        self._owner = owner
        self._closed = False
        self._pid = os.getpid()
        # Straight to the rings' methods: no Python frame in between.
        self.send = tx.send  # type: ignore[method-assign]
        self.try_send = tx.try_send  # type: ignore[method-assign]
        self.recv = rx.recv  # type: ignore[method-assign]
        self.try_recv = rx.try_recv  # type: ignore[method-assign]
        self.recv_into = rx.recv_into  # type: ignore[method-assign]
        self.recv_view = rx.recv_view  # type: ignore[method-assign]
        self.send_many = tx.send_many  # type: ignore[method-assign]
        self.recv_many = rx.recv_many  # type: ignore[method-assign]
        self.send_all = tx.send_all  # type: ignore[method-assign]
        self.reserve = tx.reserve  # type: ignore[method-assign]
        self.send_array = tx.send_array  # type: ignore[method-assign]
        self.recv_array = rx.recv_array  # type: ignore[method-assign]

    # ----------------------------------------------------------- opening --

    @classmethod
    def bind(cls, name: str, capacity: int = DEFAULT_CAPACITY, max_message: int | None = None, *,
             busy_poll: bool = False, url: str | None = None) -> ShmChannel:
        """Create the channel's two rings.  A leftover channel of that name
        whose creator has died is replaced; a live one is FileExistsError."""
        c2s, s2c = ring_names(name)
        _remove_stale(name)
        tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        rings: list[Ring] = []
        try:
            # Built under temporary names and linked into place, the
            # connector never sees a half-initialised segment; c2s goes last
            # because connect waits for it.
            for final, tx in ((s2c, True), (c2s, False)):
                ring = Ring.create(final + tag, capacity, max_message, busy_poll=busy_poll)
                rings.append(ring)
                if tx:
                    _claim_producer(ring)
                else:
                    _claim_consumer(ring)
                try:
                    # link(2) fails if the name exists: no check-then-rename race
                    os.link(segment_path(final + tag), segment_path(final))
                except FileExistsError:
                    raise FileExistsError(f"shm channel {name!r} already exists ({segment_path(final)})") from None
                unlink(final + tag)
                ring.name = final
        except BaseException:
            for ring in rings:
                n = ring.name
                ring.close()
                if n:
                    unlink(n)
            raise
        tx_ring, rx_ring = rings
        return cls(name, tx_ring, rx_ring, owner=True, url=url or f"shm://{name}")

    @classmethod
    def connect(cls, name: str, *, timeout: float | None = DEFAULT_CONNECT_TIMEOUT, busy_poll: bool = False,
                url: str | None = None) -> ShmChannel:
        """Attach to a bound channel, waiting up to ``timeout`` for it to
        appear (RingNotFound after that)."""
        check_timeout(timeout)
        c2s, s2c = ring_names(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                tx = Ring.attach(c2s, busy_poll=busy_poll)
                break
            except RingNotFound:
                if deadline is not None and time.monotonic() >= deadline:
                    raise RingNotFound(2, f"no shm channel {name!r} (waited {timeout} s for {segment_path(c2s)})") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        try:
            rx = Ring.attach(s2c, busy_poll=busy_poll)
        except BaseException:
            tx.close()
            raise
        try:
            _claim_producer(tx)
            _claim_consumer(rx)
        except BaseException:
            tx.close()
            rx.close()
            raise
        return cls(name, tx, rx, owner=False, url=url or f"shm://{name}")

    # -------------------------------------------------------- properties --

    @property
    def max_message(self) -> int:
        return min(self.tx.max_message, self.rx.max_message)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy_poll(self) -> bool:
        return self.rx.busy_poll

    @busy_poll.setter
    def busy_poll(self, on: bool) -> None:
        self.tx.busy_poll = on
        self.rx.busy_poll = on

    def peer_alive(self) -> bool | None:
        """True/False, or None while no peer has connected."""
        states = (self.tx.peer_alive(), self.rx.peer_alive())
        if False in states:
            return False
        return None if None in states else True

    # --------------------------------------------------- channel methods --
    # The instance attributes set in __init__ shadow these; they exist for
    # the ABC and for documentation.

    def send(self, data: Any, timeout: float | None = None) -> None:
        self.tx.send(data, timeout)

    def try_send(self, data: Any) -> bool:
        return self.tx.try_send(data)

    def recv(self, timeout: float | None = None) -> bytes:
        return self.rx.recv(timeout)

    def try_recv(self) -> bytes | None:
        return self.rx.try_recv()

    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        return self.rx.recv_into(buffer, timeout)

    def recv_view(self, timeout: float | None = None) -> RecvView:
        return self.rx.recv_view(timeout)

    def send_many(self, messages: Iterable[Any], timeout: float | None = None) -> int:
        return self.tx.send_many(messages, timeout)

    def recv_many(self, max_messages: int = 256, timeout: float | None = None, max_bytes: int = 1 << 20) -> list[bytes]:
        return self.rx.recv_many(max_messages, timeout, max_bytes)

    def reserve(self, nbytes: int, timeout: float | None = None) -> Reservation:
        """A writable view into the outgoing ring; see :meth:`Ring.reserve`."""
        return self.tx.reserve(nbytes, timeout)

    def send_array(self, records: Any, timeout: float | None = None) -> int:
        return self.tx.send_array(records, timeout)

    def recv_array(self, out: Any, timeout: float | None = None) -> int:
        return self.rx.recv_array(out, timeout)

    def close(self) -> None:
        """Close both rings (the peer sees PeerGone once drained); the
        binding side also removes the names."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._pid:
            # A forked child's copy: closing the rings would tell the peer
            # this end left.  Keep them referenced so that their own
            # finalizers never run here either.
            _FORKED_COPIES.append((self.tx, self.rx))
            return
        self.tx.close()
        self.rx.close()
        if self._owner:
            for n in ring_names(self.name):
                unlink(n)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


def _remove_stale(name: str) -> None:
    """Unlink a previous channel's rings if the process that created them
    is gone; refuse (FileExistsError) if it is alive."""
    for ring_name in ring_names(name):
        path = segment_path(ring_name)
        if not os.path.exists(path):
            continue
        try:
            with Ring.attach(ring_name) as old:
                pid = old.owner_pid
        except (RingNotFound, FileNotFoundError):
            continue
        except Exception:
            pid = 0  # unreadable: nobody can be using it as a channel
        if pid and _pid_alive(pid):
            raise FileExistsError(f"shm channel {name!r} is bound by live process {pid} ({path})")
        unlink(ring_name)


def bind(ep: Endpoint, options: dict[str, Any]) -> ShmChannel:
    opts = {**ep.options, **options}
    capacity = pop_int(opts, "capacity", DEFAULT_CAPACITY)
    max_message = pop_int(opts, "max_message", None)
    busy = pop_bool(opts, "busy_poll", False)
    reject_unknown(opts, str(ep))
    return ShmChannel.bind(ep.name, capacity, max_message, busy_poll=busy, url=str(ep))  # type: ignore[arg-type]


def connect(ep: Endpoint, options: dict[str, Any]) -> ShmChannel:
    opts = {**ep.options, **options}
    timeout = pop_float(opts, "timeout", DEFAULT_CONNECT_TIMEOUT)
    busy = pop_bool(opts, "busy_poll", False)
    # The binder fixed the geometry; the same URL may be used on both sides.
    pop_int(opts, "capacity", None)
    pop_int(opts, "max_message", None)
    reject_unknown(opts, str(ep))
    return ShmChannel.connect(ep.name, timeout=timeout, busy_poll=busy, url=str(ep))


__all__ = ["ShmChannel", "bind", "connect", "ring_names"]
