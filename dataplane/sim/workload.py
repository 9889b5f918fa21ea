"""The random inputs of a run: Poisson arrivals, service times, home cores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataplane.sim.config import SimConfig


@dataclass(frozen=True)
class Workload:
    """``arrival_us`` is sorted; ``home`` is the core a flow hash (RSS) would pick."""

    arrival_us: np.ndarray
    service_us: np.ndarray
    home: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_us)


def generate(config: SimConfig) -> Workload:
    """Draw a workload.  The draws happen in the same order for every policy,
    so one seed gives every policy the same requests (common random numbers):
    policy comparisons are then not blurred by sampling noise."""
    rng = np.random.default_rng(config.seed)
    n = config.requests
    arrival = np.cumsum(rng.exponential(1.0 / config.arrival_rate_per_us, n))
    service = config.service.sample(rng, n, config.mean_us)
    home = rng.integers(0, config.cores, n, dtype=np.int64)
    return Workload(arrival, service, home)
