"""The exception family, and the one place C return codes become exceptions."""
from __future__ import annotations

import errno as _errno
import os


class DataplaneError(Exception):
    """Base of every error raised by dataplane."""


class Timeout(DataplaneError, TimeoutError):
    """The operation did not complete within its timeout."""


class WouldBlock(DataplaneError):
    """A non-blocking call found the ring full (send) or empty (recv)."""


class MessageTooLarge(DataplaneError, ValueError):
    """The message exceeds the ring's max_message or the caller's buffer."""


class PeerGone(DataplaneError, ConnectionError):
    """The other side closed, died or disconnected."""


class RingCorrupt(DataplaneError):
    """A segment or record failed validation (bad magic, version, size)."""


class RingNotFound(DataplaneError, FileNotFoundError):
    """No ring of that name exists."""


class HandshakeError(DataplaneError):
    """A transport peer sent an invalid or hostile connection handshake."""


class InvalidState(DataplaneError):
    """The call is not valid in the object's current state."""


# Mirrors the DP_E* codes of native/ring.h.
DP_EAGAIN, DP_ETIMEDOUT, DP_EMSGSIZE, DP_EPEERGONE = -1, -2, -3, -4
DP_ECORRUPT, DP_EVERSION, DP_ESYS, DP_EINVAL, DP_ESTATE, DP_EROLE = -5, -6, -7, -8, -9, -10

_BY_CODE: dict[int, tuple[type[Exception], str]] = {
    DP_EAGAIN: (WouldBlock, "would block"),
    DP_ETIMEDOUT: (Timeout, "timed out"),
    DP_EMSGSIZE: (MessageTooLarge, "message too large"),
    DP_EPEERGONE: (PeerGone, "peer closed or died"),
    DP_ECORRUPT: (RingCorrupt, "segment or record is corrupt"),
    DP_EVERSION: (RingCorrupt, "segment has an unsupported layout version"),
    DP_EINVAL: (ValueError, "invalid argument"),
    DP_ESTATE: (InvalidState, "invalid state for this call"),
    DP_EROLE: (InvalidState, "another process already holds this end of the ring"),
}


def raise_for(rc: int, what: str = "", err: int = 0) -> None:
    """Raise the exception for a negative C return code ``rc``.

    ``err`` is the errno captured right after the call (``ffi.errno``); it is
    used for DP_ESYS, where it becomes a FileNotFoundError, PermissionError …
    """
    prefix = f"{what}: " if what else ""
    if rc == DP_ESYS:
        exc = OSError(err, f"{prefix}{os.strerror(err) if err else 'system call failed'}")
        if err == _errno.ENOENT:
            exc = RingNotFound(err, f"{prefix}no such ring")
        raise exc
    cls, msg = _BY_CODE.get(rc, (DataplaneError, f"unknown error code {rc}"))
    raise cls(prefix + msg)
