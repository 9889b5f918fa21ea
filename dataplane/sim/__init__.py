"""Discrete-event simulator of the dataplane's queueing policies.

    >>> from dataplane.sim import simulate
    >>> r = simulate("stealing", cores=16, load=0.8, service="bimodal-99", mean_us=10, requests=10_000)
    >>> r.p99_us > 0
    True

Policies: ``partitioned`` (per-core FCFS, random core, no stealing),
``central`` (one shared FCFS queue), ``stealing`` (per-core queues, idle
cores steal the oldest request, ZygOS) and ``jbsq`` (a central queue pushing
to cores with fewer than ``jbsq_depth`` outstanding).  See docs/simulator.md.
"""
from __future__ import annotations

from dataplane.sim import theory
from dataplane.sim.config import POLICIES, SimConfig
from dataplane.sim.distributions import DISTRIBUTIONS, Distribution, get_distribution
from dataplane.sim.errors import SimConfigError
from dataplane.sim.policies import run_policy
from dataplane.sim.result import SimResult, summarize
from dataplane.sim.runner import run, simulate, simulate_trace
from dataplane.sim.sweep import PolicySpec, SweepCurve, SweepResult, parse_loads, parse_policy_spec, plot_sweep, sweep
from dataplane.sim.trace import Trace
from dataplane.sim.workload import Workload, generate

__all__ = [
    "DISTRIBUTIONS",
    "POLICIES",
    "Distribution",
    "PolicySpec",
    "SimConfig",
    "SimConfigError",
    "SimResult",
    "SweepCurve",
    "SweepResult",
    "Trace",
    "Workload",
    "generate",
    "get_distribution",
    "parse_loads",
    "parse_policy_spec",
    "plot_sweep",
    "run",
    "run_policy",
    "simulate",
    "simulate_trace",
    "summarize",
    "sweep",
    "theory",
]
