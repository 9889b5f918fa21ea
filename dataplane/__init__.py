"""dataplane: a kernel-bypass, low-latency request dataplane for Python."""
from __future__ import annotations

from dataplane.errors import (
    DataplaneError,
    HandshakeError,
    InvalidState,
    MessageTooLarge,
    PeerGone,
    RingCorrupt,
    RingNotFound,
    Timeout,
    WouldBlock,
)
from dataplane.ring import Reservation, Ring, RecvView

__version__ = "0.1.0"

# Heavier subsystems load on first use, so `import dataplane` stays cheap and
# a missing optional dependency only affects the feature that needs it.
_LAZY = {
    "Channel": "dataplane.transport",
    "ProtocolError": "dataplane.transport",
    "bind": "dataplane.transport",
    "connect": "dataplane.transport",
    "Executor": "dataplane.executor",
    "Result": "dataplane.executor",
    "Counters": "dataplane.executor",
    "StealQueues": "dataplane.executor",
    "WorkerCrashed": "dataplane.executor",
    "HandlerError": "dataplane.executor",
    "Cancelled": "dataplane.executor",
    "POLICIES": "dataplane.executor",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dataplane' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = sorted(_LAZY) + [
    "DataplaneError",
    "HandshakeError",
    "InvalidState",
    "MessageTooLarge",
    "PeerGone",
    "RecvView",
    "Reservation",
    "Ring",
    "RingCorrupt",
    "RingNotFound",
    "Timeout",
    "WouldBlock",
]
