"""Service-time distributions, normalised to mean 1 and scaled by the caller.

The bimodal shapes are ZygOS's (SOSP'17, section 2): bimodal-90 is 90% at
0.5·S and 10% at 5.5·S, bimodal-99 is 99% at 0.5·S and 1% at 50.5·S; both
have mean S, so a load figure means the same thing for every distribution.

bimodal-999 (99.9% at 0.5·S, 0.1% at 500.5·S, also mean S) is an addition:
with bimodal-99 exactly the slowest 1% are long requests, so a p99 SLO
below 50.5·S hinges on whether a sample holds a few more or fewer than 1%
long requests (see docs/simulator.md); with 0.1% long requests the p99 is
decided by how long short requests wait.

bimodal-99-exact is bimodal-99 drawn with exactly 1% long requests (their
positions random): the same shape without the binomial luck of the count,
so the p99 question is decided by the short requests' waits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataplane.sim.errors import SimConfigError


@dataclass(frozen=True)
class Distribution:
    """A unit-mean service distribution: ``kind`` is fixed, exponential or
    bimodal; a bimodal one is ``short`` w.p. ``1 - p_long``, else ``long``."""

    name: str
    kind: str
    p_long: float = 0.0
    short: float = 1.0
    long: float = 1.0
    exact: bool = False  # bimodal: exactly round(p_long * n) long draws

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "exponential", "bimodal"):
            raise SimConfigError(f"distribution kind must be fixed, exponential or bimodal, not {self.kind!r}")
        if not (0.0 <= self.p_long <= 1.0) or not (0.0 <= self.short <= self.long):
            raise SimConfigError(f"{self.name}: need 0 <= p_long <= 1 and 0 <= short <= long")
        mean = (1 - self.p_long) * self.short + self.p_long * self.long
        if self.kind == "bimodal" and abs(mean - 1.0) > 1e-9:
            raise SimConfigError(f"{self.name}: a bimodal shape must have unit mean, this one has {mean:g}")

    def sample(self, rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
        """``n`` service times (float64) with mean ``mean``."""
        if self.kind == "fixed":
            return np.full(n, float(mean))
        if self.kind == "exponential":
            return rng.exponential(float(mean), n)
        if self.exact:
            is_long = np.zeros(n, dtype=bool)
            is_long[rng.permutation(n)[: round(self.p_long * n)]] = True
        else:
            is_long = rng.random(n) < self.p_long
        return np.where(is_long, self.long * mean, self.short * mean)

    @property
    def second_moment(self) -> float:
        """E[X²] of the unit-mean shape (used by the M/G/1 closed form)."""
        if self.kind == "fixed":
            return 1.0
        if self.kind == "exponential":
            return 2.0
        return (1 - self.p_long) * self.short**2 + self.p_long * self.long**2

    @property
    def scv(self) -> float:
        """Squared coefficient of variation."""
        return self.second_moment - 1.0


DISTRIBUTIONS: dict[str, Distribution] = {
    d.name: d
    for d in (
        Distribution("fixed", "fixed"),
        Distribution("exponential", "exponential"),
        Distribution("bimodal-90", "bimodal", p_long=0.10, short=0.5, long=5.5),
        Distribution("bimodal-99", "bimodal", p_long=0.01, short=0.5, long=50.5),
        Distribution("bimodal-99-exact", "bimodal", p_long=0.01, short=0.5, long=50.5, exact=True),
        Distribution("bimodal-999", "bimodal", p_long=0.001, short=0.5, long=500.5),
    )
}


def get_distribution(name: str | Distribution) -> Distribution:
    """Look a distribution up by name (a Distribution passes through)."""
    if isinstance(name, Distribution):
        return name
    try:
        return DISTRIBUTIONS[name]
    except (KeyError, TypeError):
        raise SimConfigError(
            f"unknown service distribution {name!r}; choose one of {', '.join(DISTRIBUTIONS)}"
        ) from None
