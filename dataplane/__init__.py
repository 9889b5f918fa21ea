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

__all__ = [
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
