"""Policy name -> engine."""
from __future__ import annotations

from collections.abc import Callable

from dataplane.sim.config import POLICIES, SimConfig
from dataplane.sim.fcfs import central, partitioned
from dataplane.sim.jbsq import jbsq
from dataplane.sim.stealing import stealing
from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload

ENGINES: dict[str, Callable[[Workload, SimConfig], Trace]] = {
    "partitioned": lambda w, cfg: partitioned(w, cfg.cores),
    "central": lambda w, cfg: central(w, cfg.cores),
    "stealing": lambda w, cfg: stealing(w, cfg.cores, cfg.steal_cost_us),
    "jbsq": lambda w, cfg: jbsq(w, cfg.cores, cfg.jbsq_depth),
}
assert tuple(ENGINES) == POLICIES


def run_policy(w: Workload, config: SimConfig) -> Trace:
    """Serve workload ``w`` under ``config.policy``."""
    return ENGINES[config.policy](w, config)
