"""``python -m dataplane sim``: one simulation, or a sweep over load.

    sim [run] --policy P --cores N --load L --service D --mean-us S --requests R
              [--seed K] [--steal-cost-us C] [--jbsq-depth K] [--warmup F] [--json [FILE]]
    sim sweep --cores N --service D --mean-us S [--policies P[:ARG] ...]
              [--loads L|START:STOP:STEP[,...]] [--slo-factor F] [--requests R]
              [--refine STEP] [--jobs J] [--plot FILE.png] [--json FILE|-] [-v]

With no mode, ``sim`` runs one simulation.  Bad parameters exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from dataplane.sim.config import POLICIES, SimConfig
from dataplane.sim.distributions import DISTRIBUTIONS
from dataplane.sim.errors import SimConfigError
from dataplane.sim.runner import run as run_config
from dataplane.sim.sweep import parse_loads, parse_policy_spec, plot_sweep, sweep

_DEFAULT_SWEEP_POLICIES = ["partitioned", "central", "stealing", "jbsq:2"]


def _add_common(p: argparse.ArgumentParser, suppress: bool, cores: int, requests: int) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--cores", type=int, default=d(cores), help=f"number of cores N (default {cores})")
    p.add_argument("--service", choices=list(DISTRIBUTIONS), default=d("exponential"),
                   help="service-time distribution, mean --mean-us (default exponential)")
    p.add_argument("--mean-us", type=float, default=d(10.0), help="mean service time S in µs (default 10)")
    p.add_argument("--requests", type=int, default=d(requests), help=f"requests simulated (default {requests:,})")
    p.add_argument("--seed", type=int, default=d(1), help="random seed (default 1)")
    p.add_argument("--steal-cost-us", type=float, default=d(0.0),
                   help="extra µs a stolen request costs (stealing; default 0)")
    p.add_argument("--jbsq-depth", type=int, default=d(2), help="outstanding requests per core (jbsq; default 2)")
    p.add_argument("--warmup", type=float, default=d(0.0),
                   help="fraction of the earliest requests left out of the statistics (default 0)")


def _add_run(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--policy", choices=list(POLICIES), default=d("stealing"), help="queueing policy (default stealing)")
    p.add_argument("--load", type=float, default=d(0.7),
                   help="offered load per core, λ·S/N; >= 1 runs but is flagged unstable (default 0.7)")
    _add_common(p, suppress, cores=16, requests=1_000_000)
    p.add_argument("--json", nargs="?", const="-", default=d(None), metavar="FILE",
                   help="print the result as JSON (to FILE if given)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The whole ``sim`` grammar: run options on ``sim`` itself and on ``sim run``."""
    parser.description = "Discrete-event simulator of per-core, shared, work-stealing and JBSQ queueing."
    _add_run(parser, suppress=False)
    parser.set_defaults(mode="run", _parser=parser)
    modes = parser.add_subparsers(dest="mode", metavar="{run,sweep}")
    # The run options again, defaulting to SUPPRESS so that `sim run` does not
    # overwrite with defaults what was given before the mode.
    run_p = modes.add_parser("run", help="one simulation (the default)", description="Simulate one policy at one load.")
    _add_run(run_p, suppress=True)
    run_p.set_defaults(_parser=run_p)
    sw = modes.add_parser("sweep", help="p99 against load per policy; highest load meeting the SLO",
                          description="Simulate each policy over a grid of loads (same seed everywhere) and print, "
                                      "per policy, the highest load whose p99 sojourn <= SLO factor x mean service.")
    _add_common(sw, suppress=False, cores=16, requests=200_000)
    sw.add_argument("--policies", nargs="+", default=_DEFAULT_SWEEP_POLICIES, metavar="P[:ARG]",
                    help="policies; stealing:C sets steal cost C µs, jbsq:K depth K "
                         f"(default {' '.join(_DEFAULT_SWEEP_POLICIES)})")
    sw.add_argument("--loads", default="0.05:0.85:0.05,0.86:0.99:0.01",
                    help="comma-separated loads and START:STOP:STEP ranges (default 0.05:0.85:0.05,0.86:0.99:0.01)")
    sw.add_argument("--slo-factor", type=float, default=10.0, help="SLO: p99 <= FACTOR x mean service (default 10)")
    sw.add_argument("--refine", type=float, default=None, metavar="STEP",
                    help="add loads at STEP between each policy's last SLO-meeting grid load and the next")
    sw.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    sw.add_argument("--plot", metavar="FILE.png", help="plot p99 against load")
    sw.add_argument("--json", metavar="FILE", help="write every point as JSON ('-' for stdout)")
    sw.add_argument("-v", "--verbose", action="store_true", help="print every point")
    sw.set_defaults(_parser=sw)


def run(args: argparse.Namespace) -> int:
    """Run the chosen mode; parameter errors exit through argparse (status 2)."""
    try:
        return _sweep(args) if args.mode == "sweep" else _run(args)
    except SimConfigError as e:
        args._parser.error(str(e))  # exits with status 2
        return 2


def _write_json(obj: dict, dest: str) -> None:
    text = json.dumps(obj, indent=2)
    if dest == "-":
        print(text)
    else:
        with open(dest, "w") as f:
            f.write(text + "\n")


def _warn_unstable(load: float) -> None:
    print(f"warning: load {load:g} >= 1 is unstable: queues grow without bound, so the "
          "latencies grow with --requests and describe no steady state", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    config = SimConfig(args.policy, args.cores, args.load, args.service, args.mean_us, args.requests,
                       args.seed, args.steal_cost_us, args.jbsq_depth, args.warmup)
    r = run_config(config)
    if r.unstable:
        _warn_unstable(r.load)
    if args.json is not None:
        _write_json(r.as_dict(), args.json)
        if args.json == "-":
            return 0
    knob = {"stealing": f" steal cost {r.steal_cost_us:g} us", "jbsq": f" depth {r.jbsq_depth}"}.get(r.policy, "")
    print(f"{r.policy}{knob}: {r.cores} cores, load {r.load:g}{' (UNSTABLE)' if r.unstable else ''}, "
          f"{r.service} mean {r.service_mean_us:g} us, {r.requests:,} requests, seed {r.seed}")
    print(f"  sojourn us: p50 {r.p50_us:.2f}  p90 {r.p90_us:.2f}  p99 {r.p99_us:.2f}  "
          f"p99.9 {r.p999_us:.2f}  mean {r.mean_us:.2f}  max {r.max_us:.2f}")
    print(f"  throughput {r.throughput_rps:,.0f} rps (offered {r.offered_rps:,.0f}), "
          f"utilization {r.utilization:.3f}, stolen {r.stolen:,}, simulated in {r.elapsed_s:.2f} s")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    specs = [parse_policy_spec(p, args.steal_cost_us, args.jbsq_depth) for p in args.policies]
    loads = parse_loads(args.loads)
    # validate the shared parameters once, before any long work
    SimConfig("central", args.cores, loads[0], args.service, args.mean_us, args.requests, args.seed,
              args.steal_cost_us, args.jbsq_depth, args.warmup)
    if any(x >= 1 for x in loads):
        _warn_unstable(max(loads))
    res = sweep(args.cores, args.service, args.mean_us, specs, loads, slo_factor=args.slo_factor,
                requests=args.requests, seed=args.seed, refine=args.refine, jobs=args.jobs, warmup=args.warmup)
    out = sys.stderr if args.json == "-" else sys.stdout  # keep stdout pure JSON when asked for it
    print(f"sweep: {res.cores} cores, {res.service}, mean {res.mean_us:g} us, SLO p99 <= {res.slo_us:g} us, "
          f"{res.requests:,} requests per point, seed {res.seed}", file=out)
    width = max(len(c.spec.label) for c in res.curves) + 2
    for curve in res.curves:
        best = curve.max_load_meeting(res.slo_us)
        if best is None:
            line = "no load meets the SLO"
        else:
            p99 = next(p.p99_us for p in curve.points if p.load == best)
            line = f"max load meeting SLO {best:.2f}  (p99 {p99:.1f} us)"
        print(f"  {curve.spec.label:<{width}}{line}", file=out)
        if args.verbose:
            for p in curve.points:
                mark = "ok" if p.p99_us <= res.slo_us and not p.unstable else "--"
                print(f"      load {p.load:<6g} p50 {p.p50_us:9.2f}  p99 {p.p99_us:10.2f}  "
                      f"p99.9 {p.p999_us:10.2f} us  {mark}", file=out)
    if args.plot:
        plot_sweep(res, args.plot)
        print(f"plot: {args.plot}", file=out)
    if args.json:
        _write_json(res.as_dict(), args.json)
    return 0
