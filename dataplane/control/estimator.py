"""Service-time estimates per request class, kept current from measurements."""
from __future__ import annotations

from collections.abc import Hashable

from dataplane.control.errors import InvalidRequest, check_positive


class Estimate:
    """The current estimate for one class: ``mean`` (an EWMA) and ``upper``
    (a high quantile, default p99, of the last ``window`` samples)."""

    __slots__ = ("mean", "upper", "count", "_buf", "_i")

    def __init__(self, mean: float, upper: float, window: int) -> None:
        self.mean = mean
        self.upper = upper
        self.count = 0
        self._buf = [0.0] * window
        self._i = 0

    def __repr__(self) -> str:
        return f"Estimate(mean={self.mean:.6g}, upper={self.upper:.6g}, count={self.count})"


class ServiceEstimator:
    """Service time per class: EWMA mean plus a windowed upper quantile.

    Until a class has ``warmup`` samples it uses the prior (``prior_mean``,
    ``prior_upper``).  The mean predicts the work ahead (a sum of many
    services, so the mean is what matters); the upper quantile bounds the
    request's own service, because one request's deadline is missed by its own
    tail, not by the average.  The quantile is recomputed every ``window // 4``
    samples (a sort of ``window`` floats), so ``observe`` is O(1) amortized.
    """

    def __init__(self, prior_mean: float = 1e-3, prior_upper: float | None = None, *,
                 alpha: float = 0.05, quantile: float = 0.99, window: int = 512, warmup: int = 32) -> None:
        self.prior_mean = check_positive("prior_mean", prior_mean)
        self.prior_upper = check_positive("prior_upper", prior_upper if prior_upper is not None else 5 * prior_mean)
        if not 0.0 < alpha <= 1.0:
            raise InvalidRequest(f"alpha must be in (0, 1], got {alpha!r}")
        if not 0.0 < quantile < 1.0:
            raise InvalidRequest(f"quantile must be in (0, 1), got {quantile!r}")
        if window < 8 or warmup < 1:
            raise InvalidRequest("window must be >= 8 and warmup >= 1")
        self.alpha = alpha
        self.quantile = quantile
        self.window = int(window)
        self.warmup = int(warmup)
        self._every = max(1, self.window // 4)
        self._by_key: dict[Hashable, Estimate] = {}

    def get(self, key: Hashable) -> Estimate:
        """The estimate for ``key`` (created from the prior on first use)."""
        e = self._by_key.get(key)
        if e is None:
            e = self._by_key[key] = Estimate(self.prior_mean, self.prior_upper, self.window)
        return e

    def mean(self, key: Hashable) -> float:
        return self.get(key).mean

    def upper(self, key: Hashable) -> float:
        return self.get(key).upper

    def observe(self, key: Hashable, seconds: float) -> None:
        """Record one measured service time (seconds, ≥ 0; others are ignored)."""
        if not seconds >= 0.0:
            return  # NaN or negative: a clock glitch, not a measurement
        e = self._by_key.get(key)
        if e is None:
            e = self.get(key)
        n = e.count = e.count + 1
        buf = e._buf
        buf[e._i] = seconds
        e._i = (e._i + 1) % self.window
        if n <= self.warmup:
            # Measurements replace the prior at once: a running mean first,
            # then the EWMA, so a bad prior cannot linger.
            e.mean = seconds if n == 1 else e.mean + (seconds - e.mean) / n
            if n == self.warmup:
                self._requantile(e, n)
            return
        e.mean += self.alpha * (seconds - e.mean)
        if n % self._every == 0:
            self._requantile(e, n)

    def _requantile(self, e: Estimate, n: int) -> None:
        vals = sorted(e._buf[: min(n, self.window)])
        e.upper = max(e.mean, vals[min(len(vals) - 1, int(self.quantile * len(vals)))])

    def keys(self) -> list:
        return list(self._by_key)
