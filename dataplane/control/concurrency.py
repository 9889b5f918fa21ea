"""An adaptive concurrency limit: AIMD on the requests in flight.

The gateway dispatches only while fewer than ``limit`` requests are in flight
(dispatched, not completed); the rest wait in their queues (backpressure,
not loss).  Each completion feeds the limit:

* a completion within ``latency_target`` (and ok) adds ``increase / limit``,
  i.e. ``increase`` per limit's worth of completions, TCP's congestion
  avoidance: one step per "round trip" whatever the rate.  Only while the
  limit is in use (in flight at least half of it), or an idle system would
  talk itself into an arbitrarily high limit it never tested;
* a completion over ``latency_target``, or a failure, multiplies it by
  ``decrease``, at most once per limit's worth of completions: the requests
  in flight when the latency went up all report it, and one congestion
  episode must cost one back-off, not one per request.

The limit stays within [``min_limit``, ``max_limit``].  O(1) per completion.
"""
from __future__ import annotations

from dataplane.control.errors import InvalidRequest, check_positive


def _check_int(name: str, v: object, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise InvalidRequest(f"{name} must be an int >= {lo}, got {v!r}")
    return v


class AIMDLimit:
    """Additive-increase / multiplicative-decrease concurrency limit.

    ``initial``: starting limit; ``min_limit``/``max_limit``: bounds
    (ints, 1 <= min <= initial <= max); ``increase`` (> 0): added per limit's
    worth of good completions; ``decrease`` (in (0, 1)): the factor on a bad
    one; ``latency_target`` (seconds, > 0): a completion slower than this is
    bad.
    """

    __slots__ = ("_limit", "min_limit", "max_limit", "increase", "decrease", "latency_target",
                 "_hold", "increases", "decreases")

    def __init__(self, initial: int = 8, *, min_limit: int = 1, max_limit: int = 1024, increase: float = 1.0,
                 decrease: float = 0.9, latency_target: float = 0.010) -> None:
        self.min_limit = _check_int("min_limit", min_limit, 1)
        self.max_limit = _check_int("max_limit", max_limit, 1)
        _check_int("initial", initial, 1)
        if not self.min_limit <= initial <= self.max_limit:
            raise InvalidRequest(f"need min_limit <= initial <= max_limit, got {min_limit!r}, {initial!r}, {max_limit!r}")
        self.increase = check_positive("increase", increase)
        try:
            d = float(decrease)
        except (TypeError, ValueError):
            raise InvalidRequest(f"decrease must be a number, got {decrease!r}") from None
        if not 0.0 < d < 1.0:  # also rejects NaN
            raise InvalidRequest(f"decrease must be in (0, 1), got {decrease!r}")
        self.decrease = d
        self.latency_target = check_positive("latency_target", latency_target)
        self._limit = float(initial)
        self._hold = 0          # completions left before another decrease may happen
        self.increases = 0
        self.decreases = 0

    @property
    def limit(self) -> int:
        """Requests that may be in flight now."""
        return int(self._limit)

    def on_complete(self, latency: float, ok: bool = True, inflight: int | None = None) -> int:
        """Feed one completion (``latency`` in seconds; ``inflight`` the
        requests still in flight, None if unknown); return the new limit."""
        lim = self._limit
        hold = self._hold
        if hold:
            self._hold = hold - 1
        if ok and latency <= self.latency_target:
            # Grow only when the limit was what held the rate back.
            if inflight is None or 2 * (inflight + 1) >= lim:
                lim = lim + self.increase / lim
                if lim > self.max_limit:
                    lim = float(self.max_limit)
                self._limit = lim
                self.increases += 1
        elif not hold:
            lim = lim * self.decrease
            if lim < self.min_limit:
                lim = float(self.min_limit)
            self._limit = lim
            self.decreases += 1
            # The requests still in flight were sent under the old limit:
            # their verdicts belong to the same episode.
            self._hold = inflight if inflight is not None else int(lim)
        return int(lim)

    def __repr__(self) -> str:
        return (f"AIMDLimit(limit={self._limit:.2f}, min_limit={self.min_limit}, max_limit={self.max_limit}, "
                f"increase={self.increase}, decrease={self.decrease}, latency_target={self.latency_target})")
