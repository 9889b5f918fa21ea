"""What a run measured, per tenant: outcomes and latency histograms."""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from dataplane.control.errors import Reason

_LOW, _HIGH, _DIGITS = 1_000, 100_000_000_000, 3  # 1 µs .. 100 s, ns


def _hist() -> HdrHistogram:
    return HdrHistogram(_LOW, _HIGH, _DIGITS)


@dataclass
class TenantRecord:
    offered: int = 0
    admitted: int = 0
    rejected: dict = field(default_factory=lambda: {r: 0 for r in Reason})  # Reason -> count
    shed: int = 0            # dropped at dequeue or evicted: never served
    completed: int = 0
    ontime: int = 0          # completed within the deadline: goodput
    failed: int = 0
    work: float = 0.0        # cost units completed
    window_work: float = 0.0  # cost units completed *during* [t0, t1): the served share
    latency: HdrHistogram = field(default_factory=_hist)   # completed, from scheduled send time
    ontime_latency: HdrHistogram = field(default_factory=_hist)


class Recorder:
    """Counts every request's fate; latencies are measured from the request's
    scheduled (open-loop) send time, so a late sender cannot hide queueing.

    Only requests scheduled in [``t0``, ``t1``) are counted (a warm-up can be
    left out); their outcomes are counted whenever they happen.
    """

    def __init__(self, t0: float = 0.0, t1: float = float("inf")) -> None:
        self.t0, self.t1 = t0, t1
        self.tenants: dict[Hashable, TenantRecord] = {}

    def _rec(self, tenant: Hashable) -> TenantRecord:
        r = self.tenants.get(tenant)
        if r is None:
            r = self.tenants[tenant] = TenantRecord()
        return r

    def counts(self, t_sched: float) -> bool:
        return self.t0 <= t_sched < self.t1

    def offered(self, tenant: Hashable) -> None:
        self._rec(tenant).offered += 1

    def admitted(self, tenant: Hashable) -> None:
        self._rec(tenant).admitted += 1

    def rejected(self, tenant: Hashable, reason: Reason) -> None:
        self._rec(tenant).rejected[reason] += 1

    def shed(self, tenant: Hashable) -> None:
        self._rec(tenant).shed += 1

    def served(self, tenant: Hashable, t_done: float, cost: float) -> None:
        """Work completed at ``t_done`` (run-relative), whenever it was scheduled."""
        if self.t0 <= t_done < self.t1:
            self._rec(tenant).window_work += cost

    def completed(self, tenant: Hashable, latency: float, ontime: bool, cost: float, ok: bool = True) -> None:
        r = self._rec(tenant)
        if not ok:
            r.failed += 1
            return
        r.completed += 1
        r.work += cost
        ns = max(_LOW, min(int(latency * 1e9), _HIGH))
        r.latency.record_value(ns)
        if ontime:
            r.ontime += 1
            r.ontime_latency.record_value(ns)

    def total(self) -> TenantRecord:
        tot = TenantRecord()
        for r in self.tenants.values():
            tot.offered += r.offered
            tot.admitted += r.admitted
            for k, n in r.rejected.items():
                tot.rejected[k] += n
            tot.shed += r.shed
            tot.completed += r.completed
            tot.ontime += r.ontime
            tot.failed += r.failed
            tot.work += r.work
            tot.window_work += r.window_work
            tot.latency.add(r.latency)
            tot.ontime_latency.add(r.ontime_latency)
        return tot
