"""Token bucket rate limiter."""
from __future__ import annotations

from dataplane.clock import Clock
from dataplane.control.errors import InvalidRequest, check_positive


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full.

    Refilled lazily from the injected clock, so it runs the same in virtual
    time.  ``try_take`` is O(1) and never blocks; ``retry_after`` tells a
    refused caller how long until enough tokens exist.
    """

    __slots__ = ("rate", "burst", "_tokens", "_t", "_clock")

    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock) -> None:
        self.rate = check_positive("rate", rate)
        self.burst = check_positive("burst", burst if burst is not None else max(1.0, self.rate * 0.01))
        self._clock = clock
        self._tokens = self.burst
        self._t = clock.now()

    def _refill(self, now: float) -> float:
        if now > self._t:
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
            self._t = now
        return self._tokens

    def try_take(self, n: float = 1.0, now: float | None = None) -> bool:
        """Take ``n`` tokens if available; False (taking none) otherwise."""
        tokens = self._refill(self._clock.now() if now is None else now)
        # A caller that waited exactly ``retry_after`` must get through,
        # whatever rounding the clock's float arithmetic did.
        if tokens >= n - 1e-9 * (n + 1.0):
            self._tokens = max(0.0, tokens - n)
            return True
        return False

    def retry_after(self, n: float = 1.0, now: float | None = None) -> float:
        """Seconds until ``n`` tokens will be available (0 if they are now)."""
        if n > self.burst:
            raise InvalidRequest(f"{n} tokens can never be available from a bucket of burst {self.burst}")
        tokens = self._refill(self._clock.now() if now is None else now)
        return max(0.0, (n - tokens) / self.rate)

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        return self._refill(self._clock.now())

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the rate (and burst) at run time; tokens earned so far are kept."""
        self._refill(self._clock.now())
        self.rate = check_positive("rate", rate)
        if burst is not None:
            self.burst = check_positive("burst", burst)
        self._tokens = min(self._tokens, self.burst)
