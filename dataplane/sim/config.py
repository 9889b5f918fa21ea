"""One simulation's parameters, validated in one place."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from dataplane.sim.distributions import Distribution, get_distribution
from dataplane.sim.errors import SimConfigError

POLICIES: tuple[str, ...] = ("partitioned", "central", "stealing", "jbsq")
"""partitioned: N×M/G/1, random core per request (RSS), no stealing.
central: M/G/N, one shared FCFS queue.
stealing: per-core FCFS queues, an idle core steals the oldest queued request (ZygOS).
jbsq: a central queue pushes to cores with fewer than ``jbsq_depth`` outstanding."""


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SimConfigError(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise SimConfigError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SimConfigError(f"{name} must be a number, not {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SimConfigError(f"{name} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class SimConfig:
    """Parameters of one run.  Times are in microseconds.

    ``load`` is the offered load per core, λ·S/N; load >= 1 is accepted (the
    run is then flagged unstable).  ``warmup`` is the fraction of the earliest
    arrivals left out of the statistics.
    """

    policy: str
    cores: int
    load: float
    service: Distribution
    mean_us: float
    requests: int
    seed: int | None = 1
    steal_cost_us: float = 0.0
    jbsq_depth: int = 2
    warmup: float = 0.0
    arrival_rate_per_us: float = field(init=False)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise SimConfigError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "cores", _int("cores", self.cores, 1))
        set_(self, "requests", _int("requests", self.requests, 1))
        set_(self, "jbsq_depth", _int("jbsq_depth", self.jbsq_depth, 1))
        if self.seed is not None:
            set_(self, "seed", _int("seed", self.seed, 0))
        load = _real("load", self.load)
        if load <= 0:
            raise SimConfigError(f"load must be > 0, got {load}")
        mean = _real("mean_us", self.mean_us)
        if mean <= 0:
            raise SimConfigError(f"mean_us (mean service time) must be > 0, got {mean}")
        steal = _real("steal_cost_us", self.steal_cost_us)
        if steal < 0:
            raise SimConfigError(f"steal_cost_us must be >= 0, got {steal}")
        warmup = _real("warmup", self.warmup)
        if not 0.0 <= warmup < 1.0:
            raise SimConfigError(f"warmup must be in [0, 1), got {warmup}")
        set_(self, "load", load)
        set_(self, "mean_us", mean)
        set_(self, "steal_cost_us", steal)
        set_(self, "warmup", warmup)
        set_(self, "service", get_distribution(self.service))
        set_(self, "arrival_rate_per_us", load * self.cores / mean)

    @property
    def unstable(self) -> bool:
        """Offered work reaches capacity: queues grow without bound."""
        return self.load >= 1.0
