"""The Channel interface every transport implements.

A Channel is a point-to-point, bidirectional, message-oriented connection
with the Ring's semantics: message boundaries and order are preserved,
timeouts are in seconds (``None`` waits forever, ``0`` tries once), a full
or empty channel makes ``try_send``/``try_recv`` return False/None, and the
same exceptions come out of every transport (:class:`~dataplane.errors.Timeout`,
:class:`~dataplane.errors.PeerGone`, :class:`~dataplane.errors.MessageTooLarge`,
…).  A peer that closes is seen as ``PeerGone`` once what it sent has been
received.

Transports subclass :class:`Channel`, but any object with the same methods
and a ``transport`` attribute passes ``isinstance(obj, Channel)`` too, so a
transport module never has to import this one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

from dataplane.errors import DataplaneError

try:  # the family's home; defined here until errors.py has it
    from dataplane.errors import ProtocolError  # type: ignore[attr-defined]
except ImportError:

    class ProtocolError(DataplaneError):  # type: ignore[no-redef]
        """A peer sent something the wire format forbids: a bad header, an
        unknown kind, a frame over the size limit, garbage.  The offending
        message is discarded; the channel stays usable."""


class MessageView(Protocol):
    """What ``recv_view`` returns: a read-only view of one message.

    ``with ch.recv_view() as mv:`` yields a read-only ``memoryview``; the bytes
    stay valid until ``release()`` or the end of the block.  The Ring's
    :class:`~dataplane.ring.RecvView` is one."""

    view: memoryview

    def release(self) -> None: ...
    def __enter__(self) -> memoryview: ...
    def __exit__(self, *exc: Any) -> None: ...
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes: ...


class BufferView:
    """A :class:`MessageView` over memory the transport already owns (a
    ZeroMQ frame, a bytes object): releasing it drops the reference."""

    __slots__ = ("view", "_owner")

    def __init__(self, view: memoryview, owner: Any = None) -> None:
        self.view = view if view.readonly else view.toreadonly()
        self._owner = owner  # keeps the frame alive while the view is out

    def release(self) -> None:
        v = self.view
        if v is not None:
            self.view = None  # type: ignore[assignment]
            self._owner = None
            try:
                v.release()
            except BufferError:
                pass  # the caller exported it (np.frombuffer ...): it keeps the memory alive

    def __len__(self) -> int:
        return len(self.view)

    def __bytes__(self) -> bytes:
        return bytes(self.view)

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, *exc: Any) -> None:
        self.release()


_REQUIRED = ("send", "try_send", "recv", "try_recv", "recv_into", "recv_view", "send_many", "recv_many", "close", "transport")


class Channel(ABC):
    """One end of a point-to-point message channel.

    Obtain one with :func:`dataplane.transport.connect` or
    :func:`dataplane.transport.bind`; use it as a context manager."""

    #: "shm", "zmq" or "rdma"
    transport: str = ""
    #: the URL this channel was opened with (after ``auto://`` resolution)
    url: str = ""

    @property
    @abstractmethod
    def max_message(self) -> int:
        """The largest message this end may send (and accepts)."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once :meth:`close` ran."""

    @abstractmethod
    def send(self, data: Any, timeout: float | None = None) -> None:
        """Send one message (any bytes-like object), waiting for room."""

    @abstractmethod
    def try_send(self, data: Any) -> bool:
        """Send without waiting; False when the channel is full."""

    @abstractmethod
    def recv(self, timeout: float | None = None) -> bytes:
        """The next message, waiting for one."""

    @abstractmethod
    def try_recv(self) -> bytes | None:
        """The next message, or None when none is waiting."""

    @abstractmethod
    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        """Copy the next message into ``buffer``; returns its length.  A
        message larger than the buffer raises MessageTooLarge and stays."""

    @abstractmethod
    def recv_view(self, timeout: float | None = None) -> MessageView:
        """The next message as a read-only view, without a copy where the
        transport allows; release it (or leave its ``with`` block) soon."""

    @abstractmethod
    def send_many(self, messages: Iterable[Any], timeout: float | None = None) -> int:
        """Send as many of ``messages`` as fit, waiting only for the first;
        returns how many went (a prefix of ``messages``)."""

    @abstractmethod
    def recv_many(self, max_messages: int = 256, timeout: float | None = None, max_bytes: int = 1 << 20) -> list[bytes]:
        """Up to ``max_messages`` messages, at least one (waiting for it)."""

    @abstractmethod
    def close(self) -> None:
        """Close this end; safe to call twice."""

    def send_all(self, messages: Iterable[Any], timeout: float | None = None) -> None:
        """Send every message, waiting for room as needed (each wait gets
        the full ``timeout``)."""
        msgs = messages if isinstance(messages, (list, tuple)) else list(messages)
        i = 0
        while i < len(msgs):
            i += self.send_many(msgs[i:], timeout)

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        # Structural: the RDMA channel need not import this module to count.
        if cls is Channel:
            names = set()
            for klass in other.__mro__:
                names.update(klass.__dict__)
                names.update(getattr(klass, "__slots__", ()))
            if all(n in names for n in _REQUIRED):
                return True
        return NotImplemented  # type: ignore[return-value]

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} {self.url or self.transport} {state}>"


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:  # rejects NaN too
        raise ValueError(f"timeout must be None or >= 0 seconds, not {timeout!r}")
