"""Circuit breaker for one worker or backend, driven by latency and errors."""
from __future__ import annotations

import enum
import math
from collections.abc import Callable

from dataplane.clock import Clock
from dataplane.control.errors import InvalidRequest, check_positive

_BUCKETS = 20


class BreakerState(str, enum.Enum):
    CLOSED = "closed"        # healthy: takes traffic
    OPEN = "open"            # cut off until its back-off expires
    HALF_OPEN = "half-open"  # taking a few probe requests


_CLOSED = BreakerState.CLOSED


class CircuitBreaker:
    """Opens when the windowed p99 latency or the error rate is too high.

    The window slides over the last ``window`` seconds of results, in steps
    of ``window / 20``.  "p99 > ``p99_threshold``" is evaluated exactly and in
    O(1) per result: the ``quantile`` of the window exceeds the threshold iff
    more than ``1 - quantile`` of its samples do, so only counts of results,
    slow results and errors are kept.  Neither condition trips on fewer than
    ``min_samples`` results; both are checked as each bad result arrives, so a
    worker that turns slow is cut off long before a window has passed.

    Once open, after ``backoff`` seconds the breaker goes half-open and lets
    ``probe_concurrency`` requests through at a time; ``probes`` consecutive
    good ones (no error, latency ≤ threshold) close it, and one bad one opens
    it again with the back-off doubled (up to ``max_backoff``).  Closing resets
    the back-off and the window.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        window: float = 1.0,
        p99_threshold: float = 5e-3,
        quantile: float = 0.99,
        max_error_rate: float = 0.5,
        min_samples: int = 20,
        backoff: float = 0.25,
        max_backoff: float = 30.0,
        probes: int = 5,
        probe_concurrency: int = 1,
        on_change: Callable[[CircuitBreaker, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.window = check_positive("window", window)
        self.p99_threshold = check_positive("p99_threshold", p99_threshold, allow_inf=True)
        if not 0.0 < quantile < 1.0:
            raise InvalidRequest(f"quantile must be in (0, 1), got {quantile!r}")
        if not 0.0 <= max_error_rate <= 1.0:
            raise InvalidRequest(f"max_error_rate must be in [0, 1], got {max_error_rate!r}")
        if min_samples < 1 or probes < 1 or probe_concurrency < 1:
            raise InvalidRequest("min_samples, probes and probe_concurrency must be >= 1")
        self.quantile = quantile
        self._tail = 1.0 - quantile
        self.max_error_rate = max_error_rate
        self.min_samples = int(min_samples)
        self.base_backoff = check_positive("backoff", backoff)
        self.max_backoff = max(self.base_backoff, check_positive("max_backoff", max_backoff))
        self.probes = int(probes)
        self.probe_concurrency = int(probe_concurrency)
        self.on_change = on_change
        self._clock = clock
        self.state = BreakerState.CLOSED
        # The window is _BUCKETS buckets of window/_BUCKETS seconds: counts of
        # results, slow results and errors, so recording is O(1), no allocation.
        self._width = self.window / _BUCKETS
        self._cur = 0                    # absolute index of the newest bucket
        self._k = 0                      # its slot in the arrays
        self._t_lo = self._t_hi = 0.0    # the time span it covers
        self._bn = [0] * _BUCKETS
        self._bslow = [0] * _BUCKETS
        self._berr = [0] * _BUCKETS
        self._n = self._slow = self._errors = 0
        self.backoff = self.base_backoff
        self.reopen_at = -math.inf       # when OPEN becomes HALF_OPEN
        self._probing = 0                # probes in flight
        self._good_probes = 0
        self.trips = 0                   # times opened
        self.last_trip_reason = ""

    # -- decisions -----------------------------------------------------------
    def allow(self, now: float | None = None) -> bool:
        """May a request go to this worker now?  A True in half-open reserves a probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if now is None:
            now = self._clock.now()
        if state is BreakerState.OPEN:
            if now < self.reopen_at:
                return False
            self._set(BreakerState.HALF_OPEN)
            self._probing = 0
            self._good_probes = 0
        if self._probing < self.probe_concurrency:
            self._probing += 1
            return True
        return False

    def can_probe(self, now: float | None = None) -> bool:
        """Would ``allow`` say yes for a probe right now?  (No side effect.)"""
        if self.state is BreakerState.CLOSED:
            return False
        if self.state is BreakerState.OPEN:
            return (self._clock.now() if now is None else now) >= self.reopen_at
        return self._probing < self.probe_concurrency

    def release_probe(self) -> None:
        """Give back a probe reserved by ``allow`` that was never sent."""
        if self._probing > 0:
            self._probing -= 1

    def retry_after(self, now: float | None = None) -> float:
        """Seconds until this breaker will take traffic (0 if it does now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.reopen_at - (self._clock.now() if now is None else now))

    # -- feedback --------------------------------------------------------------
    def record(self, latency: float, ok: bool = True, now: float | None = None) -> None:
        """Feed one result: its latency (seconds) and whether it succeeded."""
        if now is None:
            now = self._clock.now()
        if self.state is _CLOSED:
            if not self._t_lo <= now < self._t_hi:
                self._advance(now)
            self._bn[self._k] += 1
            self._n += 1
            if ok and latency <= self.p99_threshold:
                return
            self._record_bad(latency, ok, now)  # NaN latency counts as slow
        elif self.state is BreakerState.HALF_OPEN:
            if self._probing > 0:
                self._probing -= 1
            if ok and latency <= self.p99_threshold:
                self._good_probes += 1
                if self._good_probes >= self.probes:
                    self._close()
            else:
                self.backoff = min(self.max_backoff, self.backoff * 2.0)
                self._trip(now, "probe failed")
        # OPEN: results of requests sent before it opened say nothing new.

    def _record_bad(self, latency: float, ok: bool, now: float) -> None:
        k = self._k
        if not ok:
            self._berr[k] += 1
            self._errors += 1
        if not (latency <= self.p99_threshold):
            self._bslow[k] += 1
            self._slow += 1
        n = self._n
        if n >= self.min_samples:
            if self._slow > self._tail * n:
                self._trip(now, f"p{self.quantile * 100:g} latency > {self.p99_threshold * 1e3:g} ms "
                                f"({self._slow}/{n} slow in {self.window:g} s)")
            elif self._errors > self.max_error_rate * n:
                self._trip(now, f"error rate {self._errors / n:.0%} > {self.max_error_rate:.0%} ({n} results)")

    def force_open(self, reason: str = "forced", now: float | None = None) -> None:
        """Open now (an operator's or a health check's decision)."""
        self._trip(self._clock.now() if now is None else now, reason)

    # -- state -----------------------------------------------------------------
    def _trip(self, now: float, reason: str) -> None:
        self.trips += 1
        self.last_trip_reason = reason
        self.reopen_at = now + self.backoff
        self._probing = 0
        self._good_probes = 0
        self._set(BreakerState.OPEN)

    def _advance(self, now: float) -> None:
        """Make the bucket holding ``now`` the newest, expiring those it passes."""
        idx = int(now // self._width)
        if idx - self._cur >= _BUCKETS or idx < self._cur:
            self._clear()
        else:
            bn, bs, be = self._bn, self._bslow, self._berr
            for j in range(self._cur + 1, idx + 1):
                k = j % _BUCKETS
                self._n -= bn[k]
                self._slow -= bs[k]
                self._errors -= be[k]
                bn[k] = bs[k] = be[k] = 0
        self._cur = idx
        self._k = idx % _BUCKETS
        self._t_lo = idx * self._width
        self._t_hi = self._t_lo + self._width

    def _clear(self) -> None:
        for arr in (self._bn, self._bslow, self._berr):
            arr[:] = [0] * _BUCKETS
        self._n = self._slow = self._errors = 0

    def _close(self) -> None:
        self.backoff = self.base_backoff
        self._clear()
        self._set(BreakerState.CLOSED)

    def _set(self, state: BreakerState) -> None:
        old = self.state
        if old is not state:
            self.state = state
            if self.on_change is not None:
                self.on_change(self, old, state)

    @property
    def window_samples(self) -> int:
        """Results in the current window (while closed)."""
        return self._n

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state.value}, trips={self.trips}, backoff={self.backoff:g})"
