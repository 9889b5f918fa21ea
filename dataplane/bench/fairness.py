"""``python -m dataplane bench fairness``: noisy neighbour and weighted shares.

* noisy neighbour: tenant A offers half its fair share, tenant B ten times
  its share.  A's p99 and throughput are compared with A running alone, under
  DRR, WFQ and (for contrast) one shared FIFO.
* weights 1:2:4, every tenant backlogged: served shares against 1/7, 2/7, 4/7.
* equal weights, unequal demand (2, 4, 6, 8 times the share): Jain's index
  of the served throughput.

Each runs in virtual time (``--mode sim``, deterministic), live on worker
processes (``live``) or both (default); rates are fractions of the capacity
(nominal in the simulator, measured live).
"""
from __future__ import annotations

import argparse

from dataplane.bench.scenarios import (
    Live,
    Outcome,
    Tenant,
    add_common_arguments,
    fmt,
    jain,
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

SCHEDULERS = ("drr", "wfq", "fifo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.splitlines()[0]
    add_common_arguments(p, sim_duration=3.0, live_duration=3.0)
    p.add_argument("--scenario", choices=("noisy", "weights", "equal", "all"), default="all",
                   help="which scenario to run (default all)")
    p.add_argument("--noisy-factor", type=float, default=10.0,
                   help="B's offered load as a multiple of its share (default 10)")
    p.add_argument("--a-share", type=float, default=0.5,
                   help="A's offered load as a fraction of its share (default 0.5)")
    p.add_argument("--slo-ms", type=float, default=20.0, help="every tenant's SLO in ms (default 20)")
    p.add_argument("--sweep", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.5, 1, 2, 5, 10],
                   metavar="X,Y", help="B's load (x its share) plotted with --plot, simulated (default 0,0.5,1,2,5,10)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a simulated check fails")


def _capacity(mode: str, setup, live: Live | None) -> float:
    return setup.nominal_capacity(mode) if mode == "sim" else live.capacity


def run(args) -> int:
    setup = setup_from_args(args)
    slo = args.slo_ms / 1e3
    want = {"noisy", "weights", "equal"} if args.scenario == "all" else {args.scenario}
    noisy: list[Outcome] = []
    weights: list[Outcome] = []
    equal: list[Outcome] = []
    sweep: list[Outcome] = []
    live = None
    try:
        for mode in setup.modes:
            if mode == "live":
                live = Live(setup)
                print(f"live: {setup.workers} worker processes ({setup.work}), capacity measured {live.capacity:.0f}/s "
                      f"(nominal {setup.nominal_capacity(mode):.0f}/s); each scenario is scaled to the latest measurement",
                      flush=True)
            if "noisy" in want:
                ab = [Tenant("A", 1.0, slo), Tenant("B", 1.0, slo)]
                cap = _capacity(mode, setup, live)
                share = cap / 2
                a = Stream("A", args.a_share * share, setup.service)
                for label, sched, b_factor in [("A alone", "drr", 0.0)] + [(f"A+B {s}", s, args.noisy_factor) for s in SCHEDULERS]:
                    streams = [a] + ([Stream("B", b_factor * share, setup.service)] if b_factor else [])
                    o = run_scenario(setup, mode, label, ab, streams, capacity=cap, scheduler=sched, live=live)
                    o.facts.update(scheduler=sched, b_factor=b_factor)
                    noisy.append(o)
                    print(f"  {mode} noisy {label}: A p99 {fmt(o.t('A')['p99_ms'])} ms", flush=True)
                if args.plot and mode == "sim":
                    for sched in SCHEDULERS:
                        for f in args.sweep:
                            streams = [a] + ([Stream("B", f * share, setup.service)] if f else [])
                            o = run_scenario(setup, mode, sched, ab, streams, capacity=cap, scheduler=sched)
                            o.facts.update(scheduler=sched, b_factor=f)
                            sweep.append(o)
            if "weights" in want:
                ts = [Tenant("w1", 1.0, slo), Tenant("w2", 2.0, slo), Tenant("w4", 4.0, slo)]
                cap = _capacity(mode, setup, live)
                for sched in SCHEDULERS:
                    streams = [Stream(t.name, cap, setup.service) for t in ts]  # each alone would saturate
                    o = run_scenario(setup, mode, sched, ts, streams, capacity=cap, scheduler=sched, live=live)
                    o.facts.update(scheduler=sched)
                    weights.append(o)
                    print(f"  {mode} weights {sched} done", flush=True)
            if "equal" in want:
                ts = [Tenant(f"e{i}", 1.0, slo) for i in range(4)]
                cap = _capacity(mode, setup, live)
                for sched in SCHEDULERS:
                    streams = [Stream(t.name, (i + 1) * 2 * cap / 4, setup.service) for i, t in enumerate(ts)]
                    o = run_scenario(setup, mode, sched, ts, streams, capacity=cap, scheduler=sched, live=live)
                    o.facts.update(scheduler=sched)
                    equal.append(o)
                    print(f"  {mode} equal {sched} done", flush=True)
    finally:
        if live is not None:
            live.close()

    failed = False
    print()
    print(f"fairness: service {setup.service}, SLO {args.slo_ms:g} ms, admission control on; "
          f"{setup.servers} simulated servers, {setup.workers} live workers")
    if noisy:
        print()
        print(f"noisy neighbour: A offers {args.a_share:g}x its share, B {args.noisy_factor:g}x its share (weights 1:1)")
        rows = []
        alone = {}
        for o in noisy:
            A = o.t("A")
            if o.label == "A alone":
                alone[o.mode] = A
            base = alone.get(o.mode)
            B = o.tenants.get("B")
            rows.append([o.mode, o.label, f"{o.capacity:.0f}", f"{A['offered_per_s']:.0f}", f"{A['throughput_per_s']:.0f}",
                         f"{A['goodput_per_s']:.0f}", fmt(A["p50_ms"], ".2f"), fmt(A["p99_ms"], ".2f"),
                         fmt(A["p99_ms"] / base["p99_ms"], ".2f") if base else "-",
                         fmt(A["throughput_per_s"] / base["throughput_per_s"], ".3f") if base else "-",
                         rejects(A), f"{B['goodput_per_s']:.0f}" if B else "-"])
        print(table(rows, ["mode", "run", "cap/s", "A offered/s", "A served/s", "A goodput/s", "A p50 ms",
                           "A p99 ms", "p99/alone", "thru/alone", "A rejected", "B goodput/s"]))
        for o in noisy:
            if o.label == "A alone" or o.facts["scheduler"] == "fifo":
                continue
            base = alone[o.mode]
            A = o.t("A")
            r99 = A["p99_ms"] / base["p99_ms"]
            rt = A["throughput_per_s"] / base["throughput_per_s"]
            ok = r99 <= 1.2 and abs(rt - 1) <= 0.05
            failed |= (not ok) and o.mode == "sim"
            print(f"check {o.mode} {o.label}: A p99 {r99:.2f}x alone (<= 1.2: {'yes' if r99 <= 1.2 else 'NO'}), "
                  f"throughput {rt - 1:+.1%} (within 5%: {'yes' if abs(rt - 1) <= 0.05 else 'NO'})")
    if weights:
        print()
        print("weights 1:2:4, every tenant offered the whole capacity (backlogged); served share of the work "
              "completed in the measurement window")
        rows = []
        for o in weights:
            tot = sum(o.t(n)["work_in_window"] for n in ("w1", "w2", "w4"))
            shares = [o.t(n)["work_in_window"] / tot for n in ("w1", "w2", "w4")]
            errs = [abs(s - w / 7) / (w / 7) for s, w in zip(shares, (1, 2, 4))]
            o.facts["shares"] = shares
            o.facts["max_rel_err"] = max(errs)
            rows.append([o.mode, o.facts["scheduler"], f"{o.capacity:.0f}"] + [f"{s:.4f}" for s in shares]
                        + [f"{max(errs):.2%}", fmt(o.t('*')['p99_ms'], '.1f'), str(o.t('*')['shed'])])
        print(table(rows, ["mode", "sched", "cap/s", "w1 (0.1429)", "w2 (0.2857)", "w4 (0.5714)",
                           "max rel err", "p99 ms", "shed"]))
        for o in weights:
            if o.facts["scheduler"] == "fifo":
                continue
            ok = o.facts["max_rel_err"] <= 0.02
            failed |= (not ok) and o.mode == "sim"
            print(f"check {o.mode} weights {o.facts['scheduler']}: shares within 2% of 1/7, 2/7, 4/7: "
                  f"{'yes' if ok else 'NO'} (worst {o.facts['max_rel_err']:.2%})")
    if equal:
        print()
        print("equal weights, tenants offered 2x, 4x, 6x, 8x their share; Jain's index of served throughput")
        rows = []
        for o in equal:
            xs = [o.t(f"e{i}")["work_in_window"] / o.window for i in range(4)]
            o.facts["jain"] = j = jain(xs)
            rows.append([o.mode, o.facts["scheduler"], f"{o.capacity:.0f}"] + [f"{x:.0f}" for x in xs] + [f"{j:.4f}"])
        print(table(rows, ["mode", "sched", "cap/s", "e0 /s", "e1 /s", "e2 /s", "e3 /s", "Jain"]))
        for o in equal:
            if o.facts["scheduler"] == "fifo":
                continue
            ok = o.facts["jain"] >= 0.99
            failed |= (not ok) and o.mode == "sim"
            print(f"check {o.mode} equal {o.facts['scheduler']}: Jain {o.facts['jain']:.4f} >= 0.99: {'yes' if ok else 'NO'}")
    if any(o.mode == "live" for o in noisy + weights + equal):
        print()
        for o in noisy + weights + equal:
            if o.mode == "live":
                f = o.facts
                print(f"  live {o.label if o in noisy else o.facts['scheduler']}: sender behind mean "
                      f"{f['sender_behind_mean_us']:.0f} µs, max {f['sender_behind_max_ms']:.1f} ms; "
                      f"workers busy {f['worker_utilization']:.0%}; breaker trips {f['breaker_trips']}; "
                      f"unfinished {f['unfinished']}")

    over = []
    if not args.no_overhead:
        over = [overhead(scheduler=s) for s in ("drr", "wfq")]
        print()
        print("per-request control-plane overhead (MonotonicClock, 4 tenants, queues 64 deep):")
        print(overhead_report(over))
    if args.plot:
        _plot(args.plot, sweep, noisy, setup, args)
    if args.json:
        write_json(args.json, {"bench": "fairness", "setup": vars(args),
                               "noisy": [outcome_dict(o) for o in noisy],
                               "weights": [outcome_dict(o) for o in weights],
                               "equal": [outcome_dict(o) for o in equal],
                               "sweep": [outcome_dict(o) for o in sweep], "overhead": over})
    return 1 if (failed and args.strict) else 0


def _plot(path: str, sweep: list[Outcome], noisy: list[Outcome], setup, args) -> None:
    plt = plot_setup()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, sched in enumerate(SCHEDULERS):
        pts = sorted((o.facts["b_factor"], o) for o in sweep if o.facts["scheduler"] == sched)
        if not pts:
            continue
        xs = [(args.a_share + f) / 2 for f, _ in pts]  # total offered load, x capacity
        ax1.plot(xs, [o.t("A")["goodput_per_s"] / (o.capacity / 2) for _, o in pts], "-o", color=f"C{i}", label=f"sim {sched}")
        ax2.plot(xs, [o.t("A")["p99_ms"] for _, o in pts], "-o", color=f"C{i}", label=f"sim {sched}")
    for o in noisy:
        if o.mode == "live" and o.label != "A alone":
            i = SCHEDULERS.index(o.facts["scheduler"])
            x = (args.a_share + o.facts["b_factor"]) / 2
            ax1.plot([x], [o.t("A")["goodput_per_s"] / (o.capacity / 2)], "s", color=f"C{i}", mfc="none", label=f"live {o.facts['scheduler']}")
            ax2.plot([x], [o.t("A")["p99_ms"]], "s", color=f"C{i}", mfc="none", label=f"live {o.facts['scheduler']}")
    ax1.axhline(args.a_share, color="grey", lw=0.8, ls="--")
    ax1.set_xlabel("total offered load (x capacity); A fixed, B growing")
    ax1.set_ylabel("A's goodput (fraction of its share)")
    ax1.set_ylim(0, 1.05)
    ax1.set_title("well-behaved tenant A: goodput")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("total offered load (x capacity); A fixed, B growing")
    ax2.set_ylabel("A's p99 latency (ms)")
    ax2.set_yscale("log")
    ax2.axhline(args.slo_ms, color="grey", lw=0.8, ls="--")
    ax2.set_title(f"A's p99 (dashed: SLO {args.slo_ms:g} ms)")
    fig.suptitle(f"bench fairness, noisy neighbour: {setup.service}; sim {setup.servers} servers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
