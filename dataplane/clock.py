"""Clocks.  Every policy takes one, so the simulator can drive the same
objects in virtual time that run live against the monotonic clock."""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds, monotonic, arbitrary origin."""
        ...


class MonotonicClock:
    """Wall time from ``time.perf_counter``."""

    __slots__ = ()

    def now(self) -> float:
        return time.perf_counter()


class VirtualClock:
    """Time that moves only when told to (simulation and tests)."""

    __slots__ = ("_t",)

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def advance(self, dt: float) -> float:
        if not dt >= 0.0:  # also rejects NaN
            raise ValueError(f"cannot move a clock backwards or by NaN: {dt!r}")
        self._t += dt
        return self._t

    def set(self, t: float) -> None:
        if not t >= self._t:
            raise ValueError(f"cannot move a clock backwards: {t!r} < {self._t!r}")
        self._t = float(t)
