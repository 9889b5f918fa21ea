"""p99 against load for several policies, and the highest load meeting an SLO."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from dataplane.sim.config import POLICIES, SimConfig
from dataplane.sim.distributions import Distribution, get_distribution
from dataplane.sim.errors import SimConfigError
from dataplane.sim.result import SimResult
from dataplane.sim.runner import run


@dataclass(frozen=True)
class PolicySpec:
    """A policy with its knobs, e.g. parsed from ``stealing:0.5`` or ``jbsq:2``."""

    policy: str
    steal_cost_us: float = 0.0
    jbsq_depth: int = 2

    @property
    def label(self) -> str:
        if self.policy == "stealing":
            return f"stealing(cost={self.steal_cost_us:g}us)"
        if self.policy == "jbsq":
            return f"jbsq({self.jbsq_depth})"
        return self.policy


def parse_policy_spec(text: str, steal_cost_us: float = 0.0, jbsq_depth: int = 2) -> PolicySpec:
    """``NAME`` or ``NAME:ARG``: the ARG of stealing is its steal cost in µs,
    that of jbsq its depth; the defaults fill in when ARG is absent."""
    name, sep, arg = text.partition(":")
    if name not in POLICIES:
        raise SimConfigError(f"unknown policy {name!r} in {text!r}; choose one of {', '.join(POLICIES)}")
    if sep and name not in ("stealing", "jbsq"):
        raise SimConfigError(f"policy {name!r} takes no argument, got {text!r}")
    try:
        if sep and name == "stealing":
            steal_cost_us = float(arg)
        elif sep:
            jbsq_depth = int(arg)
    except ValueError:
        raise SimConfigError(f"bad argument {arg!r} in policy {text!r}") from None
    spec = PolicySpec(name, steal_cost_us, jbsq_depth)
    SimConfig(name, 1, 0.5, "fixed", 1.0, 1, 1, spec.steal_cost_us, spec.jbsq_depth)  # validates the knobs
    return spec


def parse_loads(text: str) -> list[float]:
    """Comma-separated items, each a load or ``START:STOP:STEP`` (STOP
    included when the grid reaches it), e.g. ``0.05:0.85:0.05,0.86:0.99:0.01``."""
    loads: list[float] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            parts = [float(x) for x in item.split(":")]
        except ValueError:
            raise SimConfigError(f"bad load {item!r} in {text!r}: use L or START:STOP:STEP, comma-separated") from None
        if len(parts) == 3:
            start, stop, step = parts
            if not (step > 0 and math.isfinite(start + stop + step)) or stop < start:
                raise SimConfigError(f"load range {item!r} needs STEP > 0 and STOP >= START")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            loads += [round(start + k * step, 10) for k in range(count)]
        elif len(parts) == 1:
            loads.append(parts[0])
        else:
            raise SimConfigError(f"bad load {item!r} in {text!r}: use L or START:STOP:STEP, comma-separated")
    if not loads:
        raise SimConfigError(f"load list {text!r} is empty")
    for load in loads:
        if not (load > 0 and math.isfinite(load)):
            raise SimConfigError(f"every load must be finite and > 0, got {load} in {text!r}")
    return sorted(set(loads))


@dataclass
class SweepCurve:
    """One policy's points, in load order."""

    spec: PolicySpec
    points: list[SimResult] = field(default_factory=list)

    def max_load_meeting(self, slo_us: float) -> float | None:
        """Highest simulated load with p99 <= slo_us (unstable loads never count)."""
        ok = [p.load for p in self.points if p.p99_us <= slo_us and not p.unstable]
        return max(ok) if ok else None


@dataclass
class SweepResult:
    cores: int
    service: str
    mean_us: float
    slo_us: float
    requests: int
    seed: int
    curves: list[SweepCurve]

    def max_loads(self) -> dict[str, float | None]:
        """Policy label -> highest load meeting the SLO (None: none did)."""
        return {c.spec.label: c.max_load_meeting(self.slo_us) for c in self.curves}

    def as_dict(self) -> dict:
        keep = ("load", "p50_us", "p99_us", "p999_us", "mean_us", "throughput_rps", "utilization", "stolen", "unstable", "elapsed_s")
        return {
            "cores": self.cores,
            "service": self.service,
            "mean_us": self.mean_us,
            "slo_us": self.slo_us,
            "requests": self.requests,
            "seed": self.seed,
            "max_load_meeting_slo": self.max_loads(),
            "curves": {
                c.spec.label: {
                    "policy": c.spec.policy,
                    "steal_cost_us": c.spec.steal_cost_us,
                    "jbsq_depth": c.spec.jbsq_depth,
                    "points": [{k: getattr(p, k) for k in keep} for p in c.points],
                }
                for c in self.curves
            },
        }


def _run_all(configs: Sequence[SimConfig], jobs: int) -> list[SimResult]:
    if jobs <= 1 or len(configs) <= 1:
        return [run(c) for c in configs]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run, configs))


def sweep(
    cores: int,
    service: str | Distribution,
    mean_us: float,
    policies: Iterable[PolicySpec | str],
    loads: Iterable[float],
    *,
    slo_factor: float = 10.0,
    requests: int = 200_000,
    seed: int = 1,
    refine: float | None = None,
    jobs: int = 1,
    warmup: float = 0.0,
) -> SweepResult:
    """Simulate every policy at every load (one seed for all: common random
    numbers), then, with ``refine``, fill in loads at that step between each
    policy's highest SLO-meeting grid load and the grid load above it."""
    service = get_distribution(service)
    specs = [p if isinstance(p, PolicySpec) else parse_policy_spec(p) for p in policies]
    if not specs:
        raise SimConfigError("no policies to sweep")
    if not (slo_factor > 0 and math.isfinite(slo_factor)):
        raise SimConfigError(f"slo_factor must be finite and > 0, got {slo_factor}")
    if refine is not None and not (refine > 0 and math.isfinite(refine)):
        raise SimConfigError(f"refine step must be finite and > 0, got {refine}")
    if jobs < 1:
        raise SimConfigError(f"jobs must be >= 1, got {jobs}")
    grid = sorted(set(float(x) for x in loads))
    if not grid:
        raise SimConfigError("no loads to sweep")
    slo_us = slo_factor * mean_us

    def config(spec: PolicySpec, load: float) -> SimConfig:
        return SimConfig(spec.policy, cores, load, service, mean_us, requests, seed,
                         spec.steal_cost_us, spec.jbsq_depth, warmup)

    curves = [SweepCurve(s) for s in specs]
    todo = [(curve, config(curve.spec, load)) for curve in curves for load in grid]  # validates up front
    for (curve, _), res in zip(todo, _run_all([c for _, c in todo], jobs)):
        curve.points.append(res)
    if refine is not None:
        todo = []
        for curve in curves:
            best = curve.max_load_meeting(slo_us)
            above = [x for x in grid if best is not None and x > best]
            if above:
                k = 1
                while best + k * refine < above[0] - 1e-9:
                    todo.append((curve, config(curve.spec, round(best + k * refine, 10))))
                    k += 1
        for (curve, _), res in zip(todo, _run_all([c for _, c in todo], jobs)):
            curve.points.append(res)
        for curve in curves:
            curve.points.sort(key=lambda p: p.load)
    return SweepResult(cores, service.name, float(mean_us), slo_us, requests, seed, curves)


def plot_sweep(result: SweepResult, path: str) -> None:
    """p99 against load, log y, with the SLO as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in result.curves:
        pts = [p for p in curve.points if not p.unstable]
        ax.plot([p.load for p in pts], [p.p99_us for p in pts], marker="o", markersize=3, label=curve.spec.label)
    ax.axhline(result.slo_us, color="black", linestyle="--", linewidth=1, label=f"SLO p99 <= {result.slo_us:g} us")
    ax.set_yscale("log")
    ax.set_xlabel("load (fraction of cores x 1/S)")
    ax.set_ylabel("p99 sojourn (us)")
    ax.set_title(f"{result.cores} cores, {result.service}, mean {result.mean_us:g} us, {result.requests:,} requests")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
