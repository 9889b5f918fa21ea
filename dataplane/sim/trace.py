"""What a policy did with each request."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Trace:
    """Per request: when service started and ended, on which core, and
    whether it was stolen (then ``done - start`` includes the steal cost)."""

    start_us: np.ndarray
    done_us: np.ndarray
    core: np.ndarray
    stolen: np.ndarray

    @classmethod
    def from_lists(cls, start: list[float], done: list[float], core: list[int], stolen: bytearray | None) -> "Trace":
        n = len(start)
        return cls(
            np.asarray(start, dtype=np.float64),
            np.asarray(done, dtype=np.float64),
            np.asarray(core, dtype=np.int64),
            np.frombuffer(bytes(stolen), dtype=np.uint8).astype(bool) if stolen is not None else np.zeros(n, dtype=bool),
        )
