"""A run's summary statistics."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dataplane.sim.config import SimConfig
from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload


@dataclass(frozen=True)
class SimResult:
    """Latencies are sojourn times (arrival to completion) in µs, over the
    requests after the warm-up.  ``service_mean_us`` is the mean service time
    asked for; ``mean_us`` is the mean sojourn.  ``utilization`` is busy time
    (steal costs included) over cores × run length; ``stolen`` counts
    requests served by a core other than their home core via a steal."""

    policy: str
    cores: int
    load: float
    service: str
    service_mean_us: float
    requests: int
    seed: int
    steal_cost_us: float
    jbsq_depth: int
    warmup: float
    completed: int
    measured: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    max_us: float
    mean_wait_us: float
    throughput_rps: float
    offered_rps: float
    utilization: float
    stolen: int
    unstable: bool
    elapsed_s: float
    sojourn_us: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready fields (the sojourn array is left out)."""
        d = asdict(self)
        d.pop("sojourn_us")
        return d


def summarize(config: SimConfig, w: Workload, trace: Trace, elapsed_s: float, keep_sojourn: bool = False) -> SimResult:
    """Reduce a trace to a SimResult."""
    n = len(w)
    skip = int(n * config.warmup)
    sojourn = trace.done_us[skip:] - w.arrival_us[skip:]
    wait = trace.start_us[skip:] - w.arrival_us[skip:]
    p50, p90, p99, p999 = np.percentile(sojourn, [50, 90, 99, 99.9])
    span_us = float(trace.done_us.max() - w.arrival_us[0])
    busy_us = float(np.sum(trace.done_us - trace.start_us))
    return SimResult(
        policy=config.policy,
        cores=config.cores,
        load=config.load,
        service=config.service.name,
        service_mean_us=config.mean_us,
        requests=config.requests,
        seed=int(config.seed),
        steal_cost_us=config.steal_cost_us,
        jbsq_depth=config.jbsq_depth,
        warmup=config.warmup,
        completed=int(np.count_nonzero(np.isfinite(trace.done_us))),
        measured=int(sojourn.size),
        p50_us=float(p50),
        p90_us=float(p90),
        p99_us=float(p99),
        p999_us=float(p999),
        mean_us=float(sojourn.mean()),
        max_us=float(sojourn.max()),
        mean_wait_us=float(wait.mean()),
        throughput_rps=n / span_us * 1e6 if span_us > 0 else float("inf"),
        offered_rps=config.arrival_rate_per_us * 1e6,
        utilization=busy_us / (config.cores * span_us) if span_us > 0 else 0.0,
        stolen=int(np.count_nonzero(trace.stolen)),
        unstable=config.unstable,
        elapsed_s=elapsed_s,
        sojourn_us=sojourn if keep_sojourn else None,
    )
