"""Open-loop workloads: Poisson arrivals per tenant and service-time laws.

Both drivers (virtual time and live) consume the same arrival list, so a
scenario is the same requests in both.  Every tenant draws from its own
seeded stream, so adding a tenant does not change another's arrivals.
"""
from __future__ import annotations

import heapq
import math
import random
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from dataplane.control.errors import InvalidRequest, check_positive


class Service:
    """A service-time law with mean ``mean`` seconds: "exp", "const" or
    "lognormal" (``sigma`` is the log-space standard deviation)."""

    KINDS = ("exp", "const", "lognormal")

    def __init__(self, kind: str = "exp", mean: float = 1e-3, sigma: float = 0.5) -> None:
        if kind not in self.KINDS:
            raise InvalidRequest(f"unknown service law {kind!r}; one of {self.KINDS}")
        self.kind = kind
        self.mean = check_positive("mean", mean)
        self.sigma = check_positive("sigma", sigma)
        self._mu = math.log(self.mean) - self.sigma ** 2 / 2

    def draw(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.mean)
        if self.kind == "const":
            return self.mean
        return rng.lognormvariate(self._mu, self.sigma)

    def __repr__(self) -> str:
        return f"Service({self.kind!r}, mean={self.mean:g}" + (f", sigma={self.sigma:g})" if self.kind == "lognormal" else ")")


@dataclass(frozen=True)
class Stream:
    """Poisson arrivals of one tenant at ``rate`` requests/s between
    ``start`` and ``stop`` (seconds from the run's start)."""

    tenant: Hashable
    rate: float
    service: Service
    cost: float = 1.0
    deadline: float | None = None  # relative; None: the tenant's SLO
    start: float = 0.0
    stop: float = math.inf


class Arrival(NamedTuple):
    t: float                 # scheduled send time, seconds from the run's start
    tenant: Hashable
    service: float           # the service this request will really need
    cost: float
    deadline: float | None   # relative


def arrivals(streams: list[Stream], duration: float, seed: int = 1) -> list[Arrival]:
    """All arrivals of ``streams`` in [0, duration), in time order."""
    def one(i: int, s: Stream) -> Iterator[Arrival]:
        if s.rate <= 0:
            return
        rng = random.Random(f"{seed}/{i}/{s.tenant!r}")
        t = s.start
        end = min(s.stop, duration)
        while True:
            t += rng.expovariate(s.rate)
            if t >= end:
                return
            yield Arrival(t, s.tenant, s.service.draw(rng), s.cost, s.deadline)

    return list(heapq.merge(*(one(i, s) for i, s in enumerate(streams)), key=lambda a: a.t))
