"""``tcp://HOST:PORT`` and ``ipc://PATH``: the Channel over ZeroMQ (pyzmq).

The binding end is a ROUTER socket and the connecting end a DEALER; the wire
format, handshake and limits are specified in ``docs/wire-format.md``, which
is all a foreign peer needs.  Why DEALER/ROUTER and not PAIR: a PAIR socket
silently gives its one slot to whichever connection handshakes first, so a
hostile or stray client could occupy the channel and nobody would be told.
The ROUTER sees every connection by identity, so the channel can pick the
first peer with a valid HELLO, answer strangers with REJECT, and a send to a
peer that is gone fails at once (ZMQ_ROUTER_MANDATORY) instead of vanishing.

Liveness: a socket monitor reports every dropped connection, and the
channel reads it whenever a wait has been idle for ``check_interval``
seconds, so a peer that dies (its kernel closes the connection) is
``PeerGone`` within about that time; what had arrived before the drop is
delivered first.  TCP keepalive catches a peer host that vanished.  ZMTP
heartbeats (``heartbeat=`` seconds) also catch a frozen peer process, but are
off by default: libzmq 4.3 drops a healthy connection, and can abort on
``!_io_error`` / ``_input_stopped``, when a heartbeat times out while the
receive queue is full (libzmq issues 3937, 4767), which is exactly what a
bounded channel under load looks like.

A channel is not thread-safe (neither is a ZeroMQ socket): one thread at a
time per channel.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import secrets
import struct
import sys
import time
import types
import weakref
from bisect import bisect_right
from collections import deque
from itertools import accumulate
from collections.abc import Iterable
from typing import Any

import zmq

from dataplane.errors import DataplaneError, HandshakeError, InvalidState, MessageTooLarge, PeerGone, Timeout, WouldBlock
from dataplane.transport.base import BufferView, Channel, ProtocolError, check_timeout
from dataplane.transport.url import Endpoint, pop_float, pop_int, reject_unknown

log = logging.getLogger("dataplane.transport.zmq")

# ------------------------------------------------------------ wire format --
# See docs/wire-format.md; keep the two in step.

VERSION = 1
MAGIC = b"DP"
HEADER = struct.Struct("<2sBBI")  # magic, version, kind, payload length
HEADER_SIZE = HEADER.size
DATA, LARGE, BATCH = 0x01, 0x02, 0x03
HELLO, WELCOME, REJECT, BYE = 0x10, 0x11, 0x12, 0x13
KIND_NAMES = {DATA: "DATA", LARGE: "LARGE", BATCH: "BATCH", HELLO: "HELLO", WELCOME: "WELCOME", REJECT: "REJECT", BYE: "BYE"}
HELLO_BODY = struct.Struct("<IIQ")  # max_message, flags (0), nonce
MAX_REASON = 1024

# The first 4 header bytes as one little-endian u32 make the hot-path test
# a single integer compare.
_TAG_LEN = struct.Struct("<II")
_COUNT = struct.Struct("<I")


def _tag(kind: int) -> int:
    return int.from_bytes(MAGIC + bytes((VERSION, kind)), "little")


_T_DATA, _T_LARGE, _T_BATCH, _T_BYE = _tag(DATA), _tag(LARGE), _tag(BATCH), _tag(BYE)
# DATA headers of small messages, built once: the hot paths index this
# instead of packing (send) and test one startswith instead of unpacking
# and comparing (recv).
_SMALL = 4096
_DATA_HEADERS = tuple(HEADER.pack(MAGIC, VERSION, DATA, n) for n in range(_SMALL))
_EVENT = struct.Struct("=HI")  # libzmq monitor event: u16 event, u32 value (host order)
# Plain ints: pyzmq's enum flags cost microseconds to combine.
_NOBLOCK, _SNDMORE, _RCVMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE), int(zmq.RCVMORE)

# ---------------------------------------------------------------- limits --

DEFAULT_MAX_MESSAGE = 8 << 20
#: Messages of at least this many bytes travel as their own frame, sent
#: without a copy when they are ``bytes``; smaller ones are copied behind
#: the header.  Chosen by measurement, see docs/transports.md.
COPY_THRESHOLD = 64 << 10
#: send_many packs small messages into BATCH frames of at most this size.
BATCH_BYTES = 64 << 10
DEFAULT_HWM = 1000
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_CHECK_INTERVAL = 0.1
DEFAULT_HEARTBEAT = 0.0  # off: see the module doc
DEFAULT_HEARTBEAT_TIMEOUT = 3.0
DEFAULT_KEEPALIVE_IDLE = 10  # seconds of silence before TCP keepalive probes
DEFAULT_LINGER = 10.0
_GONE_GRACE_MS = 20

_MONITOR_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def header(kind: int, length: int) -> bytes:
    """The 8-byte header of a message of ``kind`` with ``length`` payload bytes."""
    return HEADER.pack(MAGIC, VERSION, kind, length)


def _nbytes(data: Any) -> tuple[Any, int]:
    """(something ``bytes + x`` and pyzmq accept, its size in bytes)."""
    if type(data) is bytes:
        return data, len(data)
    mv = memoryview(data)
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")  # raises TypeError for non-contiguous buffers, as the ring does
    return mv, mv.nbytes


def _describe(buf: Any) -> str:
    head = bytes(buf[:16])
    return f"{len(buf)} bytes starting {head!r}"


def _ms(seconds: float | None) -> int:
    return -1 if seconds is None else int(math.ceil(seconds * 1000))


class ZmqChannel(Channel):
    """One end of a Channel over ZeroMQ; see the module doc.

    Obtained from :func:`connect` (DEALER) or :func:`bind` (ROUTER).  The
    binding end learns its peer from the first valid HELLO: call
    :meth:`accept` to wait for it, or just send/recv (they wait for it
    within their own timeout)."""

    transport = "zmq"

    def __init__(self, sock: zmq.Socket, ctx: zmq.Context, own_ctx: bool, *, server: bool, url: str,
                 max_message: int, check_interval: float, linger: float | None) -> None:
        self._sock = sock
        self._ctx = ctx
        self._own_ctx = own_ctx
        self._server = server
        self.url = url
        self._own_max = max_message
        self._peer_max = max_message
        self._check_ms = max(1, _ms(check_interval))
        self._linger = linger
        self._mon: zmq.Socket | None = sock.get_monitor_socket(_MONITOR_EVENTS)
        self._peer: bytes | None = None  # server: the peer's routing id
        self._peer_fd = -1
        self._established = False
        self._gone: str | None = None
        self._graced = False
        self._handshake_failure: str | None = None
        # Received messages not yet handed out (the rest of a BATCH, a
        # message too large for recv_into's buffer), and errors deferred by
        # recv_many, in order.
        self._pending: deque[Any] = deque()
        self._last = [False]  # server: was the last message read the peer's?
        self._closed = False
        self._pid = os.getpid()
        # Blocking calls wait in slices of check_interval, looking at the
        # monitor in between; the hot paths need these exact values set.
        sock.rcvtimeo = sock.sndtimeo = self._check_ms
        self._rcvtimeo = self._sndtimeo = self._check_ms
        #: established, peer not gone, not closed: the hot paths may run
        self._ready = False
        # _ready and the socket's timeout is the slice: a hot path may run
        self._fast_rx = self._fast_tx = False
        self._fast: tuple[Any, Any] | None = None
        self._check_s = self._check_ms / 1000
        self._send_max = max_message
        self._getsockopt = sock.getsockopt
        #: messages from connections other than the peer, answered with REJECT
        self.rejected = 0

    # -------------------------------------------------------- properties --

    @property
    def max_message(self) -> int:
        """The largest message this end may send: the smaller of its own
        limit and the one the peer announced."""
        return min(self._own_max, self._peer_max)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def established(self) -> bool:
        """True once the HELLO/WELCOME handshake completed."""
        return self._established

    @property
    def socket(self) -> zmq.Socket:
        """The underlying pyzmq socket (for polling; do not send on it)."""
        return self._sock

    def peer_alive(self) -> bool | None:
        """True/False, or None while no peer has completed the handshake."""
        if self._closed:
            raise InvalidState("channel is closed")
        self._poll_monitor()
        if self._gone:
            return False
        return True if self._established else None

    # ---------------------------------------------------------- liveness --

    def _poll_monitor(self) -> None:
        mon = self._mon
        if mon is None:
            return
        while True:
            try:
                parts = mon.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts[0]) != _EVENT.size:
                continue
            event, value = _EVENT.unpack(parts[0])
            if event == zmq.EVENT_DISCONNECTED:
                # Strangers and earlier attempts come and go; only the
                # connection the handshake came in on matters.  If its fd
                # could not be learned, any drop counts.
                if self._established and (self._peer_fd < 0 or value == self._peer_fd):
                    self._lost("the connection to the peer dropped (closed, killed, or unreachable)")
            elif event & _HANDSHAKE_FAILED:
                what = "not a ZMTP peer" if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL else "ZMTP handshake failed"
                if self._server:
                    log.info("%s: rejected a connection: %s", self.url, what)
                elif not self._established:
                    self._handshake_failure = what

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        self._fast_rx = ready and self._rcvtimeo == self._check_ms
        self._fast_tx = ready and self._sndtimeo == self._check_ms
        self._install()

    def _lost(self, reason: str) -> None:
        self._set_ready(False)
        if self._gone is None:
            self._gone = reason
            log.info("%s: peer gone: %s", self.url, reason)

    def _peer_gone(self) -> PeerGone:
        return PeerGone(f"{self.url}: {self._gone}")

    def _live(self) -> zmq.Socket:
        if self._closed:
            raise InvalidState("channel is closed")
        return self._sock

    # ------------------------------------------------------ raw receiving --

    def _wait_frame(self, deadline: float | None, copy: bool) -> Any:
        """The next frame off the socket, waiting until ``deadline``
        (monotonic seconds; None forever, 0 try once); None when it passed.
        Raises PeerGone once the peer is gone and nothing is left."""
        sock = self._sock
        while True:
            flags = 0
            if deadline == 0 or self._gone is not None:
                flags = _NOBLOCK
            else:
                ms = self._check_ms
                if deadline is not None:
                    ms = min(ms, max(0, _ms(deadline - time.monotonic())))
                if ms != self._rcvtimeo:
                    sock.setsockopt(zmq.RCVTIMEO, ms)
                    self._rcvtimeo = ms
                    self._fast_rx = self._ready and ms == self._check_ms
                    self._install()
            try:
                return sock.recv(flags, copy=copy)
            except zmq.Again:
                pass
            self._poll_monitor()
            if self._gone is not None:
                # What arrived before the drop still comes first; give frames
                # already on their way through the I/O thread one grace wait.
                if not self._graced:
                    self._graced = True
                    if sock.poll(_GONE_GRACE_MS, zmq.POLLIN):
                        continue
                raise self._peer_gone()
            if self._handshake_failure is not None and not self._established:
                return None
            if deadline is not None and (deadline == 0 or time.monotonic() >= deadline):
                return None

    def _rcvmore(self) -> bool:
        return bool(self._getsockopt(_RCVMORE))

    def _more(self, copy: bool) -> Any:
        """The next frame of a multipart message already being received."""
        if not self._getsockopt(_RCVMORE):
            return None
        return self._sock.recv(_NOBLOCK, copy=copy)

    def _drain(self) -> int:
        n = 0
        while self._getsockopt(_RCVMORE):
            self._sock.recv(_NOBLOCK)
            n += 1
        return n

    def _next_frame(self, deadline: float | None, copy: bool) -> Any:
        """The first frame of the next message from the peer (None when the
        deadline passed).  On the server, routing ids are checked and
        strangers answered here."""
        if not self._server:
            return self._wait_frame(deadline, copy)
        while True:
            if self._peer is None:
                self._accept(deadline)
                if self._peer is None:
                    return None
            ident = self._wait_frame(deadline, True)
            if ident is None:
                return None
            if ident == self._peer:
                frame = self._more(copy)
                if frame is not None:
                    self._last[0] = True
                    return frame
            self._other(ident)

    def _other(self, frame: bytes) -> None:
        """Server: a frame in routing-id position that is not the peer's id:
        a stranger's message, or frames the last message carried beyond
        what its header allows (the fast path does not look for them)."""
        if not self._getsockopt(_RCVMORE):
            # A real message is a routing id plus at least one frame, so a
            # lone frame can only be the tail of the previous message.
            self._tail(1)
            return
        body = self._sock.recv(_NOBLOCK, copy=False)
        self._stranger(frame, body)

    def _tail(self, extra: int) -> None:
        extra += self._drain()
        if self._last[0]:
            self._last[0] = False
            raise ProtocolError(f"{self.url}: the peer's message carried {extra} frame(s) beyond what its header allows")
        log.warning("%s: dropped %d stray frame(s) after a stranger's message", self.url, extra)

    # ------------------------------------------------------------ parsing --

    def _parse(self, frame: Any, copy: bool) -> Any:
        """The payload of one received message (bytes, or a memoryview that
        keeps its frame alive), or None for a control message."""
        buf = frame if copy else memoryview(frame)
        size = len(buf)
        if size >= HEADER_SIZE:
            tag, n = _TAG_LEN.unpack_from(buf)
            if tag == _T_DATA:
                # The DEALER end does not ask for RCVMORE (a sockopt call
                # per message): a stray extra frame is parsed, and refused,
                # as the next message.  The ROUTER end must, to keep routing
                # ids and payloads apart.
                if n == size - HEADER_SIZE and n <= self._own_max and not (self._server and self._rcvmore()):
                    return buf[HEADER_SIZE:]
            elif tag == _T_LARGE:
                return self._parse_large(buf, n, copy)
            elif tag == _T_BATCH:
                return self._parse_batch(buf, n)
            elif tag == _T_BYE:
                self._drain()
                self._lost("the peer closed the channel")
                return None
        self._reject_frame(buf, "")
        return None  # not reached

    def _reject_frame(self, buf: Any, extra: str) -> None:
        extra_frames = self._drain()
        size = len(buf)
        if size < HEADER_SIZE:
            raise ProtocolError(f"{self.url}: frame too short for the {HEADER_SIZE}-byte header ({_describe(buf)})")
        magic, version, kind, n = HEADER.unpack_from(buf)
        if magic != MAGIC:
            raise ProtocolError(f"{self.url}: bad magic {magic!r}, expected {MAGIC!r} ({_describe(buf)})")
        if version != VERSION:
            raise ProtocolError(f"{self.url}: wire version {version} not supported (this end speaks {VERSION})")
        name = KIND_NAMES.get(kind)
        if name is None:
            raise ProtocolError(f"{self.url}: unknown message kind 0x{kind:02x}")
        if kind == DATA:
            if n > self._own_max:
                raise ProtocolError(f"{self.url}: DATA of {n} bytes exceeds max_message {self._own_max}")
            if n != size - HEADER_SIZE:
                raise ProtocolError(f"{self.url}: DATA header says {n} bytes, frame carries {size - HEADER_SIZE}")
            if extra_frames:
                raise ProtocolError(f"{self.url}: DATA followed by {extra_frames} unexpected frame(s)")
        raise ProtocolError(f"{self.url}: unexpected {name} message{extra} ({_describe(buf)})")

    def _parse_large(self, buf: Any, n: int, copy: bool) -> Any:
        if len(buf) != HEADER_SIZE:
            self._drain()
            raise ProtocolError(f"{self.url}: LARGE header frame of {len(buf)} bytes, expected {HEADER_SIZE}")
        payload = self._more(copy)
        if payload is None:
            raise ProtocolError(f"{self.url}: LARGE header without its payload frame")
        extra = self._drain()
        pv = payload if copy else memoryview(payload)
        if extra:
            raise ProtocolError(f"{self.url}: LARGE message followed by {extra} unexpected frame(s)")
        if n != len(pv):
            raise ProtocolError(f"{self.url}: LARGE header says {n} bytes, payload frame carries {len(pv)}")
        if n > self._own_max:
            raise ProtocolError(f"{self.url}: LARGE message of {n} bytes exceeds max_message {self._own_max}")
        return pv

    def _parse_batch(self, buf: Any, n: int) -> None:
        extra = self._drain()
        size = len(buf)
        if extra:
            raise ProtocolError(f"{self.url}: BATCH followed by {extra} unexpected frame(s)")
        if n != size - HEADER_SIZE or n > self._own_max or n < 4:
            raise ProtocolError(f"{self.url}: BATCH header says {n} bytes, frame carries {size - HEADER_SIZE} (max_message {self._own_max})")
        (count,) = _COUNT.unpack_from(buf, HEADER_SIZE)
        body = HEADER_SIZE + 4 + 4 * count
        if count == 0 or body > size:
            raise ProtocolError(f"{self.url}: BATCH of {count} messages does not fit its {n}-byte payload")
        lens = struct.unpack_from(f"<{count}I", buf, HEADER_SIZE + 4)
        if body + sum(lens) != size:
            raise ProtocolError(f"{self.url}: BATCH lengths add up to {sum(lens)} bytes, payload has {size - body}")
        if type(buf) is not bytes:
            buf = bytes(buf)  # (recv_view) one copy; the items are bytes either way
        offs = list(accumulate(lens, initial=body))
        self._pending.append(_Batch(list(map(buf.__getitem__, map(slice, offs, offs[1:])))))
        return None

    # ------------------------------------------------------------ receive --

    def _next(self, timeout: float | None, copy: bool = True, first: Any = None, empty_ok: bool = False) -> Any:
        """The next message's payload.  ``timeout`` 0 and nothing waiting:
        None if ``empty_ok``, else WouldBlock (as a ring says it).
        ``first``: a frame from the peer the caller already took off the
        socket.  Raises Timeout, PeerGone, ProtocolError."""
        if first is None:
            if self._pending:
                return self._pop()
            self._live()
        if timeout is None:
            deadline = None
        elif timeout == 0:
            deadline = 0.0
        else:
            check_timeout(timeout)
            deadline = time.monotonic() + timeout
        frame = first
        while True:
            if frame is None:
                frame = self._next_frame(deadline, copy)
                if frame is None:
                    if timeout == 0:
                        if empty_ok:
                            return None
                        raise WouldBlock(f"{self.url}: no message waiting")
                    if self._handshake_failure is not None and not self._established:
                        raise HandshakeError(f"{self.url}: {self._handshake_failure}")
                    raise Timeout(f"{self.url}: recv timed out after {timeout} s")
            msg = self._parse(frame, copy)
            frame = None
            if msg is not None:
                return msg
            if self._pending:
                return self._pop()
            if self._gone is not None:
                raise self._peer_gone()

    def _pop(self) -> Any:
        pending = self._pending
        head = pending[0]
        if type(head) is _Batch:
            m = head.items[head.pos]
            head.pos += 1
            if head.pos == len(head.items):
                pending.popleft()
            return m
        pending.popleft()
        if isinstance(head, BaseException):
            raise head
        return head

    def recv(self, timeout: float | None = None) -> bytes:
        if self._fast_rx:
            return self._fast[1](timeout)  # type: ignore[index]
        return self._slow_recv(timeout)

    def _slow_recv(self, timeout: float | None) -> bytes:
        m = self._next(timeout)
        return m if type(m) is bytes else bytes(m)

    def _recv_after(self, e: zmq.ZMQError, timeout: float | None) -> bytes:
        """The hot path's recv failed: a whole slice without a message, or
        the socket is closed."""
        if e.errno != errno.EAGAIN:
            self._live()
            raise e
        return self._slow_recv(None if timeout is None else max(0.0, timeout - self._check_s))

    def _finish(self, timeout: float | None, frame: Any) -> bytes:
        """The hot path took a frame off the socket that is not a plain DATA
        message: parse it the long way."""
        m = self._next(timeout, True, frame)
        return m if type(m) is bytes else bytes(m)

    def _from_other(self, ident: bytes, timeout: float | None) -> bytes:
        self._other(ident)
        return self._slow_recv(timeout)

    def try_recv(self) -> bytes | None:
        m = self._next(0, empty_ok=True)
        if m is None or type(m) is bytes:
            return m
        return bytes(m)

    def recv_view(self, timeout: float | None = None) -> BufferView:
        """The next message as a read-only view; a LARGE message is viewed
        inside its ZeroMQ frame, without a copy."""
        m = self._next(timeout, copy=False)
        return BufferView(m if type(m) is memoryview else memoryview(m))

    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        out = memoryview(buffer)
        if out.readonly:
            raise TypeError("recv_into needs a writable buffer")
        if out.ndim != 1 or out.format != "B":
            out = out.cast("B")
        m = self._next(timeout, copy=False)
        n = len(m)
        if n > out.nbytes:
            self._pending.appendleft(m)  # stays for the next call, as on a ring
            raise MessageTooLarge(f"message of {n} bytes does not fit the {out.nbytes}-byte buffer")
        out[:n] = m
        return n

    def recv_many(self, max_messages: int = 256, timeout: float | None = None, max_bytes: int = 1 << 20) -> list[bytes]:
        if max_messages <= 0:
            raise ValueError("max_messages must be > 0")
        first = self._next(timeout)
        out = [first if type(first) is bytes else bytes(first)]
        total = len(first)
        pending = self._pending
        while len(out) < max_messages:
            if pending:
                head = pending[0]
                if type(head) is _Batch:
                    # Whole slices of an unpacked BATCH at a time.
                    chunk = head.items[head.pos : head.pos + max_messages - len(out)]
                    sizes = list(accumulate(map(len, chunk)))
                    k = bisect_right(sizes, max_bytes - total)
                    if k:
                        out += chunk[:k] if k < len(chunk) else chunk
                        total += sizes[k - 1]
                        head.pos += k
                        if head.pos == len(head.items):
                            pending.popleft()
                    if k < len(chunk):
                        break
                    continue
                if isinstance(head, BaseException) or total + len(head) > max_bytes:
                    break
                m = pending.popleft()
            else:
                try:
                    m = self._next(0, empty_ok=True)
                except PeerGone:
                    break  # the next call reports it
                except DataplaneError as e:
                    pending.append(e)  # deliver what we have; the next call raises
                    break
                if m is None:
                    break
                if total + len(m) > max_bytes:
                    pending.appendleft(m)
                    break
            out.append(m if type(m) is bytes else bytes(m))
            total += len(m)
        return out

    # --------------------------------------------------------------- send --

    def _send_first(self, frame: Any, flags: int, deadline: float | None, copy: bool = True) -> bool:
        """Send the first frame of a message, waiting for room until
        ``deadline`` (None forever, 0 try once); False when it passed."""
        sock = self._sock
        while True:
            if deadline == 0:
                f = flags | _NOBLOCK
            else:
                f = flags
                ms = self._check_ms
                if deadline is not None:
                    ms = min(ms, max(0, _ms(deadline - time.monotonic())))
                if ms != self._sndtimeo:
                    sock.setsockopt(zmq.SNDTIMEO, ms)
                    self._sndtimeo = ms
                    self._fast_tx = self._ready and ms == self._check_ms
                    self._install()
            try:
                sock.send(frame, f, copy=copy)
                return True
            except zmq.Again:
                pass
            except zmq.ZMQError as e:
                self._send_failed(e)
            self._poll_monitor()
            if self._gone is not None:
                raise self._peer_gone()
            if self._handshake_failure is not None and not self._established:
                return False
            if deadline is not None and (deadline == 0 or time.monotonic() >= deadline):
                return False

    def _send_failed(self, e: zmq.ZMQError) -> None:
        if e.errno == errno.EHOSTUNREACH:  # ROUTER_MANDATORY: no such peer any more
            self._lost("the peer's connection is gone")
            raise self._peer_gone() from None
        if e.errno == errno.ENOTSOCK:
            raise InvalidState("channel is closed") from None
        raise e

    def _send_parts(self, parts: tuple[Any, ...], deadline: float | None, zero_copy_last: bool = False) -> bool:
        if self._gone is not None:
            raise self._peer_gone()
        sock = self._live()
        if self._server:
            if self._peer is None:
                self._accept(deadline)
                if self._peer is None:
                    return False
            if not self._send_first(self._peer, _SNDMORE, deadline):
                return False
            first = 0
        else:
            more = _SNDMORE if len(parts) > 1 else 0
            if not self._send_first(parts[0], more, deadline):
                return False
            first = 1
        last = len(parts) - 1
        for i in range(first, last + 1):
            try:
                # The first frame got the message a place in the queue; the
                # rest go at once or the connection died under us.
                sock.send(parts[i], _NOBLOCK | (_SNDMORE if i < last else 0),
                          copy=not (zero_copy_last and i == last))
            except zmq.Again:
                self._lost("the connection dropped in the middle of a message")
                raise self._peer_gone() from None
        return True

    def _frames(self, data: Any) -> tuple[tuple[Any, ...], bool]:
        data, n = _nbytes(data)
        if n > self._send_max:
            raise MessageTooLarge(f"{n} bytes exceeds max_message {self.max_message}")
        if n < COPY_THRESHOLD:
            return (HEADER.pack(MAGIC, VERSION, DATA, n) + data,), False
        if type(data) is bytes:
            return (HEADER.pack(MAGIC, VERSION, LARGE, n), data), True  # immutable: safe to send in place
        # A mutable buffer could change after send() returns and before the
        # I/O thread wrote it: copy once, as the ring does.
        return (HEADER.pack(MAGIC, VERSION, LARGE, n), data), False

    def send(self, data: Any, timeout: float | None = None) -> None:
        # While the channel is ready, an instance attribute built by
        # _make_fast shadows this (and recv): a closure over the socket's
        # bound methods, the shortest path Python has.  A method bound
        # before that (ch.send taken before the handshake) gets there too.
        if self._fast_tx:
            return self._fast[0](data, timeout)  # type: ignore[index]
        self._send_generic(data, timeout)

    def _send_after(self, e: zmq.ZMQError, data: Any, timeout: float | None) -> None:
        """The hot path's send failed: full for a whole slice, or worse."""
        if e.errno != errno.EAGAIN:
            self._live()
            self._send_failed(e)
        self._send_generic(data, None if timeout is None else max(0.0, timeout - self._check_s))

    def _make_fast(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def _install(self) -> None:
        d = self.__dict__
        if (self._fast_rx or self._fast_tx) and self._fast is None:
            self._fast = self._make_fast()
        if self._fast_tx:
            d["send"] = self._fast[0]  # type: ignore[index]
        else:
            d.pop("send", None)
        if self._fast_rx:
            d["recv"] = self._fast[1]  # type: ignore[index]
        else:
            d.pop("recv", None)

    def _send_generic(self, data: Any, timeout: float | None) -> None:
        parts, zc = self._frames(data)
        if timeout is None:
            deadline = None
        else:
            check_timeout(timeout)
            deadline = 0.0 if timeout == 0 else time.monotonic() + timeout
        if not self._send_parts(parts, deadline, zc):
            if deadline == 0:
                raise WouldBlock(f"{self.url}: no room (high-water mark reached, or no peer)")
            raise Timeout(f"{self.url}: send timed out after {timeout} s (peer not reading, or not connected)")

    def try_send(self, data: Any) -> bool:
        parts, zc = self._frames(data)
        return self._send_parts(parts, 0.0, zc)

    def send_many(self, messages: Iterable[Any], timeout: float | None = None) -> int:
        """Send a prefix of ``messages``, waiting only for the first: small
        messages travel packed in BATCH frames; returns how many went."""
        msgs = messages if isinstance(messages, list) else list(messages)
        if not msgs:
            return 0
        if not all(type(m) is bytes for m in msgs):
            # Copied now, as send would: the caller may reuse its buffers.
            msgs = [m if type(m) is bytes else bytes(_nbytes(m)[0]) for m in msgs]
        lens = list(map(len, msgs))
        limit = self.max_message
        if max(lens) > limit:
            raise MessageTooLarge(f"{max(lens)} bytes exceeds max_message {limit}")
        if timeout is None:
            deadline: float | None = None
        else:
            check_timeout(timeout)
            deadline = 0.0 if timeout == 0 else time.monotonic() + timeout
        cap, thr = min(BATCH_BYTES, limit), COPY_THRESHOLD
        sent, i, total = 0, 0, len(msgs)
        while i < total:
            # The longest run of small messages whose packed size fits.
            j, size = i, 4
            while j < total:
                n = lens[j]
                if n >= thr or size + 4 + n > cap:
                    break
                size += 4 + n
                j += 1
            if j - i >= 2:
                k = j - i
                parts = [HEADER.pack(MAGIC, VERSION, BATCH, size), struct.pack(f"<I{k}I", k, *lens[i:j])]
                parts += msgs[i:j]
                ok = self._send_parts((b"".join(parts),), deadline)
            else:
                j = i + 1
                frames, zc = self._frames(msgs[i])
                ok = self._send_parts(frames, deadline, zc)
            if not ok:
                if sent == 0:
                    if timeout == 0:
                        raise WouldBlock(f"{self.url}: no room (high-water mark reached, or no peer)")
                    raise Timeout(f"{self.url}: send_many timed out after {timeout} s")
                break
            sent += j - i
            i = j
            deadline = 0.0  # only the first waits
        return sent

    # ---------------------------------------------------------- handshake --

    def accept(self, timeout: float | None = None) -> None:
        """Server: wait for a peer's valid HELLO and answer WELCOME.  A
        stranger's malformed handshake raises HandshakeError (and gets a
        REJECT); the channel keeps listening."""
        self._live()
        if not self._server or self._established:
            return
        check_timeout(timeout)
        deadline = None if timeout is None else (0.0 if timeout == 0 else time.monotonic() + timeout)
        self._accept(deadline)
        if self._peer is None:
            raise Timeout(f"{self.url}: no peer completed the handshake within {timeout} s")

    def _accept(self, deadline: float | None) -> None:
        while self._peer is None:
            ident = self._wait_frame(deadline, True)
            if ident is None:
                return
            frame = self._more(False)
            if frame is None:
                continue
            self._stranger(ident, frame)

    def _stranger(self, ident: bytes, frame: Any) -> None:
        """A message from a connection that is not (yet) the peer: a HELLO
        makes it the peer if there is none; anything else is REJECTed."""
        buf = memoryview(frame) if not isinstance(frame, bytes) else frame
        extra = self._drain()
        reason = None
        body = None
        if len(buf) >= HEADER_SIZE:
            magic, version, kind, n = HEADER.unpack_from(buf)
            if magic != MAGIC:
                reason = f"bad magic {bytes(magic)!r}"
            elif version != VERSION:
                reason = f"wire version {version} not supported (this end speaks {VERSION})"
            elif kind != HELLO:
                reason = f"expected HELLO, got {KIND_NAMES.get(kind, f'kind 0x{kind:02x}')}"
            elif extra or n != HELLO_BODY.size or len(buf) != HEADER_SIZE + n:
                reason = "malformed HELLO"
            else:
                body = HELLO_BODY.unpack_from(buf, HEADER_SIZE)
                if body[0] == 0:
                    reason = "HELLO with max_message 0"
        else:
            reason = f"frame too short for the {HEADER_SIZE}-byte header"
        if reason is None and self._peer is not None:
            reason = "this channel already has a peer"
        if reason is not None:
            if not self._send_reject(ident, reason) and self._peer is not None and not _auto_id(ident):
                # No connection has this "id": these are frames that trailed
                # the previous message, not a stranger's.
                self._tail(1 + extra)
                return
            self._last[0] = False
            self.rejected += 1
            where = _peer_address(frame)
            if self._peer is None:
                raise HandshakeError(f"{self.url}: rejected a handshake from {where}: {reason} ({_describe(buf)})")
            log.warning("%s: rejected a message from %s (not the peer): %s", self.url, where, reason)
            return
        peer_max, _flags, nonce = body  # type: ignore[misc]
        welcome = header(WELCOME, HELLO_BODY.size) + HELLO_BODY.pack(self._own_max, 0, nonce)
        try:
            self._sock.send_multipart([ident, welcome], zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.info("%s: a peer left before its WELCOME (%s)", self.url, e)
            return
        self._peer = ident
        self._establish(_src_fd(frame), peer_max)
        log.info("%s: peer connected from %s (max_message %d)", self.url, _peer_address(frame), peer_max)

    def _send_reject(self, ident: bytes, reason: str) -> bool:
        """Tell a connection why it is refused; False if no connection has
        routing id ``ident`` (gone, or never was)."""
        text = reason.encode()[:MAX_REASON]
        try:
            self._sock.send_multipart([ident, header(REJECT, len(text)) + text], _NOBLOCK)
        except zmq.ZMQError as e:
            return e.errno != errno.EHOSTUNREACH  # full: it exists but is not reading
        return True

    def _client_handshake(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        nonce = secrets.randbits(64)
        hello = header(HELLO, HELLO_BODY.size) + HELLO_BODY.pack(self._own_max, 0, nonce)
        if not self._send_first(hello, 0, deadline):
            if self._handshake_failure:
                raise HandshakeError(f"{self.url}: {self._handshake_failure}")
            raise Timeout(f"{self.url}: could not connect within {timeout} s")
        reply = self._wait_frame(deadline, False)
        if reply is None:
            if self._handshake_failure:
                raise HandshakeError(f"{self.url}: {self._handshake_failure}")
            raise Timeout(f"{self.url}: no answer to HELLO within {timeout} s")
        frame = reply.bytes
        extra = self._drain()
        if len(frame) < HEADER_SIZE:
            raise HandshakeError(f"{self.url}: garbage answer to HELLO ({_describe(frame)})")
        magic, version, kind, n = HEADER.unpack_from(frame)
        if magic != MAGIC or n != len(frame) - HEADER_SIZE or extra:
            raise HandshakeError(f"{self.url}: garbage answer to HELLO ({_describe(frame)})")
        if version != VERSION:
            raise HandshakeError(f"{self.url}: peer speaks wire version {version}, this end {VERSION}")
        if kind == REJECT:
            reason = frame[HEADER_SIZE:].decode("utf-8", "replace")
            raise HandshakeError(f"{self.url}: the peer refused the handshake: {reason}")
        if kind != WELCOME or n != HELLO_BODY.size:
            raise HandshakeError(f"{self.url}: expected WELCOME, got {KIND_NAMES.get(kind, f'kind 0x{kind:02x}')}")
        peer_max, _flags, echo = HELLO_BODY.unpack_from(frame, HEADER_SIZE)
        if echo != nonce:
            raise HandshakeError(f"{self.url}: WELCOME answers another HELLO (nonce mismatch)")
        if peer_max == 0:
            raise HandshakeError(f"{self.url}: WELCOME with max_message 0")
        self._establish(_src_fd(reply), peer_max)

    def _establish(self, fd: int, peer_max: int) -> None:
        # Drops of earlier connections (a stranger's, a failed attempt) may
        # still be queued on the monitor, possibly with the fd the peer now
        # has: they are read while they cannot count.
        self._poll_monitor()
        self._peer_fd = fd
        self._peer_max = peer_max
        self._established = True
        self._send_max = min(self._own_max, peer_max)
        self._set_ready(self._gone is None)

    # -------------------------------------------------------------- close --

    def close(self, linger: float | None = ...) -> None:  # type: ignore[assignment]
        """Say BYE and close.  Queued messages keep flowing for up to
        ``linger`` seconds (default: the channel's ``linger`` option, 10 s;
        None waits until they are all delivered)."""
        if self._closed:
            return
        if os.getpid() != self._pid:
            # A forked child's copy: the sockets and their I/O thread belong
            # to the parent; touching them here would corrupt or abort it.
            self._closed = True
            self._set_ready(False)
            return
        if linger is ...:
            linger = self._linger
        sock = self._sock
        if self._established and self._gone is None:
            try:
                bye = header(BYE, 0)
                if self._server:
                    sock.send_multipart([self._peer, bye], zmq.NOBLOCK)
                else:
                    sock.send(bye, zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # full or gone: the peer sees the connection drop instead
        self._closed = True
        self._set_ready(False)
        self._pending.clear()
        if self._mon is not None:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._mon.close(0)
            self._mon = None
        sock.close(0 if self._gone is not None else _ms(linger))
        if self._own_ctx:
            self._ctx.term()  # returns once the queue is flushed or linger expired

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        try:
            self.close(0 if sys.is_finalizing() else ...)  # type: ignore[arg-type]
        except Exception:
            pass


class ZmqClient(ZmqChannel):
    """The connecting (DEALER) end."""

    def _make_fast(self) -> tuple[Any, Any]:
        sock_send, sock_recv = _raw_send(self._sock), self._sock.recv
        pending, me = self._pending, weakref.ref(self)
        own_max, send_max, check_s = self._own_max, self._send_max, self._check_s
        pack, unpack, ZMQError, t_data = HEADER.pack, _TAG_LEN.unpack_from, zmq.ZMQError, _T_DATA
        headers, small = _DATA_HEADERS, _SMALL

        def send(data: Any, timeout: float | None = None) -> None:
            if type(data) is bytes and (timeout is None or timeout >= check_s):
                n = len(data)
                if n < COPY_THRESHOLD and n <= send_max:
                    try:
                        sock_send((headers[n] if n < small else pack(MAGIC, VERSION, DATA, n)) + data)
                        return
                    except ZMQError as e:
                        return _ch(me)._send_after(e, data, timeout)
            _ch(me)._send_generic(data, timeout)

        def recv(timeout: float | None = None) -> bytes:
            if not pending and (timeout is None or timeout >= check_s):
                try:
                    f = sock_recv()
                except ZMQError as e:
                    return _ch(me)._recv_after(e, timeout)
                n = len(f) - 8
                if 0 <= n < small:
                    if f.startswith(headers[n]) and n <= own_max:
                        return f[8:]
                elif n >= small:
                    tag, size = unpack(f)
                    if tag == t_data and size == n and n <= own_max:
                        return f[8:]
                return _ch(me)._finish(timeout, f)
            return _ch(me)._slow_recv(timeout)

        return send, recv


class ZmqServer(ZmqChannel):
    """The binding (ROUTER) end."""

    def _make_fast(self) -> tuple[Any, Any]:
        sock_send, sock_recv = _raw_send(self._sock), self._sock.recv
        pending, me, last, peer = self._pending, weakref.ref(self), self._last, self._peer
        own_max, send_max, check_s = self._own_max, self._send_max, self._check_s
        pack, unpack, ZMQError, t_data = HEADER.pack, _TAG_LEN.unpack_from, zmq.ZMQError, _T_DATA
        headers, small = _DATA_HEADERS, _SMALL

        def send(data: Any, timeout: float | None = None) -> None:
            if type(data) is bytes and (timeout is None or timeout >= check_s):
                n = len(data)
                if n < COPY_THRESHOLD and n <= send_max:
                    try:
                        sock_send(peer, _SNDMORE)
                    except ZMQError as e:
                        return _ch(me)._send_after(e, data, timeout)
                    try:
                        # The routing id got the message its place; the rest
                        # goes at once or the connection died under us.
                        sock_send((headers[n] if n < small else pack(MAGIC, VERSION, DATA, n)) + data, _NOBLOCK)
                    except ZMQError:
                        _ch(me)._lost("the connection dropped in the middle of a message")
                        raise _ch(me)._peer_gone() from None
                    return
            _ch(me)._send_generic(data, timeout)

        def recv(timeout: float | None = None) -> bytes:
            if not pending and (timeout is None or timeout >= check_s):
                try:
                    ident = sock_recv()
                except ZMQError as e:
                    return _ch(me)._recv_after(e, timeout)
                if ident != peer:
                    return _ch(me)._from_other(ident, timeout)
                f = sock_recv(_NOBLOCK)  # routing id and first frame arrive together
                last[0] = True
                # Frames beyond what the header allows are caught when they
                # show up in routing-id position (see _other).
                n = len(f) - 8
                if 0 <= n < small:
                    if f.startswith(headers[n]) and n <= own_max:
                        return f[8:]
                elif n >= small:
                    tag, size = unpack(f)
                    if tag == t_data and size == n and n <= own_max:
                        return f[8:]
                return _ch(me)._finish(timeout, f)
            return _ch(me)._slow_recv(timeout)

        return send, recv


def _raw_send(sock: zmq.Socket) -> Any:
    """``sock.send`` without pyzmq's pure-Python wrapper (which only adds
    the draft-API routing_id/group arguments): half the cost per call."""
    return types.MethodType(zmq.backend.Socket.send, sock)


def _ch(ref: Any) -> ZmqChannel:
    ch = ref()
    if ch is None:
        raise InvalidState("channel is closed")
    return ch


class _Batch:
    """The messages of one received BATCH, handed out from ``pos`` on; one
    entry of the pending queue however many messages it holds."""

    __slots__ = ("items", "pos")

    def __init__(self, items: list[bytes]) -> None:
        self.items = items
        self.pos = 0


def _auto_id(ident: bytes) -> bool:
    """Routing ids libzmq generates are 5 bytes starting with a zero byte
    (peers choosing their own may not start with zero)."""
    return len(ident) == 5 and ident[0] == 0


def _src_fd(frame: Any) -> int:
    try:
        return int(frame.get(zmq.SRCFD))
    except Exception:  # deprecated in libzmq; without it any drop counts
        return -1


def _peer_address(frame: Any) -> str:
    try:
        return frame.get("Peer-Address") or "?"
    except Exception:
        return "?"


# -------------------------------------------------------------- opening --

def _options(ep: Endpoint, options: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {**ep.options, **options}
    out = {
        "max_message": pop_int(opts, "max_message", DEFAULT_MAX_MESSAGE),
        "hwm": pop_int(opts, "hwm", DEFAULT_HWM),
        "timeout": pop_float(opts, "timeout", DEFAULT_CONNECT_TIMEOUT),
        "check_interval": pop_float(opts, "check_interval", DEFAULT_CHECK_INTERVAL),
        "heartbeat": pop_float(opts, "heartbeat", DEFAULT_HEARTBEAT),
        "heartbeat_timeout": pop_float(opts, "heartbeat_timeout", DEFAULT_HEARTBEAT_TIMEOUT),
        "linger": pop_float(opts, "linger", DEFAULT_LINGER),
        "context": opts.pop("context", None),
    }
    reject_unknown(opts, str(ep))
    if not 0 < out["max_message"] < 1 << 32:
        raise ValueError(f"max_message must be in 1..{(1 << 32) - 1}")
    if out["hwm"] < 0:
        raise ValueError("hwm must be >= 0 (0: unbounded)")
    if out["check_interval"] is None or out["check_interval"] <= 0:
        raise ValueError("check_interval must be > 0")
    return out


def _socket(kind: int, o: dict[str, Any]) -> tuple[zmq.Socket, zmq.Context, bool]:
    ctx = o["context"]
    own = ctx is None
    if own:
        # One context per channel: close() can then wait for the queue to
        # flush (term), and a forked child never shares the parent's.
        ctx = zmq.Context(io_threads=1)
    sock = ctx.socket(kind)
    try:
        sock.linger = _ms(o["linger"])
        sock.sndhwm = o["hwm"]
        sock.rcvhwm = o["hwm"]
        # Frames above this are refused by libzmq itself (the connection is
        # dropped) before any memory is spent on them; between max_message
        # and this the channel raises ProtocolError instead.
        sock.maxmsgsize = max(2 * o["max_message"], o["max_message"] + (1 << 20)) + HEADER_SIZE
        sock.copy_threshold = COPY_THRESHOLD
        # TCP keepalive is kernel-side: it cannot trip over a full queue.
        sock.tcp_keepalive = 1
        sock.tcp_keepalive_idle = DEFAULT_KEEPALIVE_IDLE
        sock.tcp_keepalive_intvl = 2
        sock.tcp_keepalive_cnt = 3
        if o["heartbeat"]:
            sock.heartbeat_ivl = _ms(o["heartbeat"])
            sock.heartbeat_timeout = _ms(o["heartbeat_timeout"])
            sock.heartbeat_ttl = _ms(o["heartbeat_timeout"])
    except BaseException:
        sock.close(0)
        if own:
            ctx.term()
        raise
    return sock, ctx, own


def bind(ep: Endpoint, options: dict[str, Any] | None = None) -> ZmqChannel:
    """Listen on ``tcp://HOST:PORT`` (port 0 picks a free one; see ``url``)
    or ``ipc://PATH``.  Returns at once; the peer's handshake is taken by
    :meth:`ZmqChannel.accept` or the first send/recv."""
    o = _options(ep, options or {})
    sock, ctx, own = _socket(zmq.ROUTER, o)
    try:
        sock.router_mandatory = 1
        sock.bind(ep.zmq_address())
        actual = sock.last_endpoint.decode()
    except BaseException:
        sock.close(0)
        if own:
            ctx.term()
        raise
    url = actual if ep.scheme != "auto" else "tcp://" + actual.split("://", 1)[1]
    ch = ZmqServer(sock, ctx, own, server=True, url=url, max_message=o["max_message"],
                    check_interval=o["check_interval"], linger=o["linger"])
    return ch


def connect(ep: Endpoint, options: dict[str, Any] | None = None) -> ZmqChannel:
    """Connect and handshake, waiting up to the ``timeout`` option (10 s)
    for the peer to be there and answer."""
    o = _options(ep, options or {})
    sock, ctx, own = _socket(zmq.DEALER, o)
    # No queue for a peer that is not connected: sends wait (and time out)
    # instead of piling up for a connection that may never come back.
    sock.immediate = 1
    url = ep.zmq_address()
    ch = ZmqClient(sock, ctx, own, server=False, url=url, max_message=o["max_message"],
                    check_interval=o["check_interval"], linger=o["linger"])
    try:
        sock.connect(url)
        ch._client_handshake(o["timeout"])
    except BaseException:
        ch._gone = ch._gone or "handshake failed"
        ch.close(0)
        raise
    return ch


__all__ = ["ZmqChannel", "ZmqClient", "ZmqServer", "ProtocolError", "bind", "connect", "header", "VERSION", "HEADER", "HELLO_BODY",
           "DATA", "LARGE", "BATCH", "HELLO", "WELCOME", "REJECT", "BYE", "COPY_THRESHOLD", "BATCH_BYTES"]
