"""``simulate``: parameters in, SimResult out."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from dataplane.sim.config import SimConfig
from dataplane.sim.distributions import Distribution
from dataplane.sim.policies import run_policy
from dataplane.sim.result import SimResult, summarize
from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload, generate


def simulate(
    policy: str,
    cores: int,
    load: float,
    service: str | Distribution = "exponential",
    mean_us: float = 10.0,
    requests: int = 100_000,
    seed: int | None = 1,
    *,
    steal_cost_us: float = 0.0,
    jbsq_depth: int = 2,
    warmup: float = 0.0,
    keep_sojourn: bool = False,
) -> SimResult:
    """Simulate ``requests`` Poisson arrivals at rate load·cores/mean_us served
    under ``policy``; raises SimConfigError (a ValueError) on bad parameters.

    ``seed=None`` draws fresh entropy; the seed used is in the result.
    """
    config = SimConfig(policy, cores, load, service, mean_us, requests, seed, steal_cost_us, jbsq_depth, warmup)
    return run(config, keep_sojourn=keep_sojourn)


def resolve_seed(config: SimConfig) -> SimConfig:
    """Replace seed None by a concrete one, so every result can be rerun."""
    if config.seed is not None:
        return config
    return replace(config, seed=int(np.random.SeedSequence().entropy))


def simulate_trace(config: SimConfig) -> tuple[Workload, Trace]:
    """The workload and what the policy did with every request (for checks
    and custom statistics)."""
    config = resolve_seed(config)
    w = generate(config)
    return w, run_policy(w, config)


def run(config: SimConfig, keep_sojourn: bool = False) -> SimResult:
    """Simulate a validated config."""
    config = resolve_seed(config)
    t0 = time.perf_counter()
    w = generate(config)
    trace = run_policy(w, config)
    elapsed = time.perf_counter() - t0
    return summarize(config, w, trace, elapsed, keep_sojourn)
