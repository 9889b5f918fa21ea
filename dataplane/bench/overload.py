"""``python -m dataplane bench overload``: admission control at 2x and 5x capacity.

Tenants with different SLOs (default 20 ms and 50 ms, equal weights and
traffic) offer Poisson load at multiples of capacity to N servers with
exponential service times.  Each load runs twice in the same invocation:
with the control plane (deadline-aware admission + DRR + shedding at
dequeue) and without admission control (the same bounded queues and DRR,
nothing refused early, nothing shed), which shows the collapse.  Goodput is
responses that met their deadline, per second.  ``--mode sim`` runs in
virtual time (deterministic for a seed), ``live`` on worker processes that
busy-spin for each service time, ``both`` (default) does both.

``--controls`` adds the gateway's optional controls as rows: ``codel``
(no admission control; CoDel on each tenant's queue, target 5 ms, interval
100 ms, instead) and ``aimd`` (admission control plus the adaptive AIMD
concurrency limit, latency target the ``--breaker-ms`` threshold).
"""
from __future__ import annotations

import argparse

from dataplane.bench.scenarios import (
    Live,
    Outcome,
    Tenant,
    add_common_arguments,
    fmt,
    outcome_dict,
    overhead,
    overhead_report,
    plot_setup,
    rejects,
    run as run_scenario,
    setup_from_args,
    table,
    write_json,
)
from dataplane.control.workload import Stream


def _floats(s: str) -> list[float]:
    try:
        xs = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None
    if not xs or any(not x > 0 for x in xs):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {s!r}")
    return xs


CONTROLS = ("admission", "none", "codel", "aimd")


def _controls(s: str) -> list[str]:
    xs = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in xs if x not in CONTROLS]
    if not xs or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(CONTROLS)}, got {s!r}")
    return list(dict.fromkeys(xs))


def _control_options(control: str, n: int, breaker_ms: float) -> dict:
    """The gateway options of one row; ``n`` requests can run at once."""
    if control == "admission":
        return {"admission": True}
    if control == "none":
        return {"admission": False}
    if control == "codel":
        return {"admission": False, "codel": {"target": 0.005, "interval": 0.1}}
    return {"admission": True, "concurrency": {"initial": n, "min_limit": 1, "max_limit": 4 * n,
                                               "latency_target": breaker_ms / 1e3}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.splitlines()[0]
    add_common_arguments(p, sim_duration=3.0, live_duration=3.0)
    p.add_argument("--loads", type=_floats, default=[2.0, 5.0], metavar="X,Y",
                   help="offered loads for the table, as multiples of capacity (default 2,5)")
    p.add_argument("--sweep", type=_floats, default=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0], metavar="X,Y",
                   help="loads plotted with --plot (simulated; live runs only --loads unless --live-sweep)")
    p.add_argument("--live-sweep", action="store_true", help="also run the --sweep loads live (slow)")
    p.add_argument("--scheduler", choices=("drr", "wfq"), default="drr", help="fair scheduler (default drr)")
    p.add_argument("--slo-ms", type=_floats, default=[20.0, 50.0], metavar="A,B",
                   help="one tenant per SLO, equal weights and traffic (default 20,50)")
    p.add_argument("--controls", type=_controls, default=["admission", "none"], metavar="C,D",
                   help="rows per load, from admission,none,codel,aimd (default admission,none): codel = "
                        "CoDel on the queues instead of admission control, aimd = admission + adaptive "
                        "concurrency limit")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if a simulated check fails (live numbers depend on the machine)")


def _tenants(args) -> list[Tenant]:
    return [Tenant(chr(ord("a") + i), 1.0, slo / 1e3) for i, slo in enumerate(args.slo_ms)]


def run(args) -> int:
    setup = setup_from_args(args)
    tenants = _tenants(args)
    table_loads = list(args.loads)
    sweep = sorted(set(args.sweep) | set(table_loads)) if args.plot else table_loads
    results: list[Outcome] = []
    live = None
    try:
        for mode in setup.modes:
            if mode == "live":
                live = Live(setup)
                cap = live.capacity
                print(f"live: {setup.workers} worker processes ({setup.work}), capacity measured {cap:.0f}/s "
                      f"(nominal {setup.nominal_capacity(mode):.0f}/s); each run is scaled to the latest measurement "
                      f"and judged against the mean of that and one taken right after it",
                      flush=True)
            else:
                cap = setup.nominal_capacity(mode)
            loads = sweep if (mode == "sim" or args.live_sweep) else table_loads
            for load in loads:
                for control in args.controls:
                    if mode == "live":
                        cap = live.capacity  # the latest measurement
                    streams = [Stream(t.name, load * cap / len(tenants), setup.service) for t in tenants]
                    n = setup.n(mode) * (setup.slots if mode == "live" else 1)
                    out = run_scenario(setup, mode, control, tenants, streams, capacity=cap,
                                       scheduler=args.scheduler, live=live,
                                       **_control_options(control, n, setup.breaker_ms))
                    out.facts["load"] = load
                    results.append(out)
                    print(f"  {mode} {control:9s} {load:g}x: goodput {out.t('*')['goodput_per_s'] / cap:.1%} "
                          f"of capacity", flush=True)
    finally:
        if live is not None:
            live.close()

    print()
    print(f"overload: {len(tenants)} tenants (SLO {', '.join(f'{t.name}={t.slo * 1e3:g} ms' for t in tenants)}), "
          f"service {setup.service}, scheduler {args.scheduler}; {setup.servers} simulated servers, "
          f"{setup.workers} live workers")
    rows = []
    for o in results:
        if o.facts["load"] not in table_loads:
            continue
        tot = o.t("*")
        p99 = " ".join(f"{t.name}:{fmt(o.t(t.name)['p99_ms'])}" for t in tenants)
        rows.append([o.mode, o.label, f"{o.facts['load']:g}x", f"{o.capacity:.0f}", f"{tot['offered_per_s']:.0f}",
                     f"{tot['goodput_per_s']:.0f}", f"{tot['goodput_per_s'] / o.capacity:.1%}",
                     str(tot["completed"]), str(tot["late"]), str(tot["shed"]), p99, rejects(tot)])
    print(table(rows, ["mode", "control", "load", "cap/s", "offered/s", "goodput/s", "of cap",
                       "served", "late", "shed", "p99 ms by tenant", "rejected"]))
    for o in results:
        if o.mode == "live" and o.facts["load"] in table_loads:
            f = o.facts
            print(f"  live {o.label} {f['load']:g}x: capacity {f['capacity_before']:.0f}/s before, "
                  f"{f['capacity_after']:.0f}/s after; sender behind schedule mean {f['sender_behind_mean_us']:.0f} µs, "
                  f"max {f['sender_behind_max_ms']:.1f} ms; workers busy {f['worker_utilization']:.0%}; "
                  f"unfinished at drain {f['unfinished']}; breaker trips {f['breaker_trips']}")

    print()
    failed = False
    for o in results:
        if o.facts["load"] not in table_loads or o.facts["load"] < 2:
            continue
        g = o.t("*")["goodput_per_s"] / o.capacity
        if o.label == "admission":
            ok_g = g >= 0.9
            bad_p99 = [t.name for t in tenants if not o.t(t.name)["p99_ms"] <= t.slo * 1e3]
            ok = ok_g and not bad_p99
            failed |= (not ok) and o.mode == "sim"
            print(f"check {o.mode} {o.facts['load']:g}x admission: goodput {g:.1%} of capacity (>= 90%: "
                  f"{'yes' if ok_g else 'NO'}); p99 <= deadline for every tenant: "
                  f"{'yes' if not bad_p99 else 'NO: ' + ','.join(bad_p99)}")
        elif o.label == "none":
            print(f"check {o.mode} {o.facts['load']:g}x no admission: goodput {g:.1%} of capacity (collapse)")
        else:  # the optional controls: reported, not required
            extra = (f"{o.facts['codel_drops']} shed by CoDel" if o.label == "codel" else
                     f"final limit {o.facts['concurrency_limit_final']}, "
                     f"{o.facts['concurrency_decreases']} decreases")
            print(f"info {o.mode} {o.facts['load']:g}x {o.label}: goodput {g:.1%} of capacity; p99 "
                  + " ".join(f"{t.name}:{fmt(o.t(t.name)['p99_ms'])} ms" for t in tenants) + f"; {extra}")

    over = []
    if not args.no_overhead:
        over = [overhead(scheduler=s) for s in (args.scheduler, "wfq" if args.scheduler == "drr" else "drr")]
        print()
        print("per-request control-plane overhead (MonotonicClock, 4 tenants, queues 64 deep):")
        print(overhead_report(over))

    if args.plot:
        _plot(args.plot, results, setup, tenants)
    if args.json:
        write_json(args.json, {"bench": "overload", "setup": vars(args) | {"plot": args.plot},
                               "results": [outcome_dict(o) for o in results], "overhead": over})
    return 1 if (failed and args.strict) else 0


def _plot(path: str, results: list[Outcome], setup, tenants) -> None:
    plt = plot_setup()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {("sim", "admission"): ("C0", "-", "o"), ("sim", "none"): ("C3", "-", "o"),
              ("live", "admission"): ("C0", ":", "s"), ("live", "none"): ("C3", ":", "s")}
    for (mode, control), (color, ls, marker) in styles.items():
        pts = sorted((o.facts["load"], o) for o in results if o.mode == mode and o.label == control)
        if not pts:
            continue
        xs = [x for x, _ in pts]
        label = f"{mode}, {'admission control' if control == 'admission' else 'no admission control'}"
        ax1.plot(xs, [o.t("*")["goodput_per_s"] / o.capacity for _, o in pts], ls, color=color, marker=marker, label=label)
        ax2.plot(xs, [o.t("*")["p99_ms"] for _, o in pts], ls, color=color, marker=marker, label=label)
    for t in tenants:
        ax2.axhline(t.slo * 1e3, color="grey", lw=0.8, ls="--")
    ax1.set_xlabel("offered load (x capacity)")
    ax1.set_ylabel("goodput (fraction of capacity)")
    top = max([o.t("*")["goodput_per_s"] / o.capacity for o in results] + [1.0])
    ax1.set_ylim(0, top + 0.1)
    ax1.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax1.legend(fontsize=8)
    ax1.set_title("goodput: responses within deadline")
    ax2.set_xlabel("offered load (x capacity)")
    ax2.set_ylabel("p99 latency of served requests (ms)")
    ax2.set_yscale("log")
    ax2.set_title(f"p99 latency (dashed: SLOs {', '.join(f'{t.slo * 1e3:g}' for t in tenants)} ms)")
    fig.suptitle(f"bench overload: {setup.service}; sim {setup.servers} servers, live {setup.workers} workers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
