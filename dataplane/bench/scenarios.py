"""Shared machinery of ``bench overload`` and ``bench fairness``: the common
command-line options, running one scenario in virtual time or live, the
per-tenant summary, tables, plots and the overhead microbenchmark."""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from dataplane.clock import MonotonicClock, VirtualClock
from dataplane.control.estimator import ServiceEstimator
from dataplane.control.gateway import Gateway
from dataplane.control.recorder import Recorder, TenantRecord
from dataplane.control.request import Request
from dataplane.control.vtime import simulate
from dataplane.control.workload import Service, Stream, arrivals


# -- options -------------------------------------------------------------------
def add_common_arguments(p: argparse.ArgumentParser, *, sim_duration: float, live_duration: float) -> None:
    p.add_argument("--mode", choices=("sim", "live", "both"), default="both",
                   help="virtual time (deterministic), live worker processes, or both (default)")
    p.add_argument("--duration", type=float, default=sim_duration, metavar="S",
                   help=f"simulated seconds per scenario (default {sim_duration:g})")
    p.add_argument("--live-duration", type=float, default=live_duration, metavar="S",
                   help=f"wall seconds per live scenario (default {live_duration:g})")
    p.add_argument("--seed", type=int, default=1, help="arrival and service-time seed (default 1)")
    p.add_argument("--servers", type=int, default=8, help="simulated servers (default 8)")
    p.add_argument("--workers", type=int, default=2,
                   help="live worker processes (default 2: this project's CI machine has 2 cores)")
    p.add_argument("--slots", type=int, default=1,
                   help="requests in flight per live worker (default 1: a second one would wait behind the "
                        "first in the worker's pipe, hurting a light tenant; 2 hides the round trip)")
    p.add_argument("--pool", choices=("executor", "pipes"), default="executor",
                   help="live workers: the project's executor (shared-memory queues, response rings; default) "
                        "or multiprocessing pipes (the baseline)")
    p.add_argument("--work", choices=("spin", "wait"), default="spin",
                   help="what a live worker does for a request's service time: busy-spin (CPU-bound handler; "
                        "default) or wait (a handler waiting on a GPU or backend: more workers than cores)")
    p.add_argument("--native", action="store_true",
                   help="DRR gateways use the C data path (Gateway(native=True)); WFQ, FIFO and CoDel stay in Python")
    p.add_argument("--service", choices=Service.KINDS, default="exp", help="service-time law (default exp)")
    p.add_argument("--service-ms", type=float, default=1.0, help="mean service time in ms (default 1)")
    p.add_argument("--breaker-ms", type=float, default=10.0,
                   help="workers' circuit-breaker p99 threshold in ms (default 10; the library default is 5, "
                        "below an exponential 1 ms service's own p99 of 4.6 ms plus noise)")
    p.add_argument("--plot", metavar="FILE", help="draw goodput and latency against offered load into FILE (png, svg, pdf)")
    p.add_argument("--json", metavar="FILE", help="write every measured number to FILE")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-request overhead microbenchmark")


@dataclass
class Setup:
    modes: tuple[str, ...]
    servers: int      # simulated
    workers: int      # live
    service: Service
    seed: int
    duration: float
    live_duration: float
    breaker_ms: float
    slots: int = 1
    pool: str = "executor"  # live: "executor" or "pipes"
    work: str = "spin"      # live: "spin" or "wait"
    native: bool = False    # DRR gateways on the C data path

    def n(self, mode: str) -> int:
        """Servers in ``mode``."""
        return self.servers if mode == "sim" else self.workers

    def nominal_capacity(self, mode: str) -> float:
        return self.n(mode) / self.service.mean


def setup_from_args(args: argparse.Namespace) -> Setup:
    if args.workers < 1 or args.servers < 1 or args.slots < 1:
        raise SystemExit("--servers, --workers and --slots must be >= 1")
    if not (args.duration > 0 and args.live_duration > 0 and args.service_ms > 0):
        raise SystemExit("--duration, --live-duration and --service-ms must be > 0")
    modes = ("sim", "live") if args.mode == "both" else (args.mode,)
    return Setup(modes, args.servers, args.workers, Service(args.service, args.service_ms / 1e3), args.seed,
                 args.duration, args.live_duration, args.breaker_ms, args.slots, args.pool,
                 args.work, args.native)


# -- one scenario ----------------------------------------------------------------
@dataclass(frozen=True)
class Tenant:
    name: Hashable
    weight: float = 1.0
    slo: float = 0.02
    rate: float | None = None   # token bucket, requests/s


@dataclass
class Outcome:
    """Per-tenant summaries of one run (``"*"`` is all tenants)."""

    mode: str
    label: str
    window: float
    capacity: float                 # requests/s the rates were scaled to
    tenants: dict[str, dict] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    def t(self, name: Hashable) -> dict:
        return self.tenants[str(name)]


def summarize(r: TenantRecord, window: float, slo: float | None) -> dict:
    h = r.latency
    done = r.completed
    q = (lambda p: h.get_value_at_percentile(p) / 1e6) if done else (lambda p: math.nan)
    return {
        "offered_per_s": r.offered / window,
        "admitted": r.admitted,
        "completed": done,
        "ontime": r.ontime,
        "late": done - r.ontime,
        "shed": r.shed,
        "rejected": {k.value: n for k, n in r.rejected.items()},
        "goodput_per_s": r.ontime / window,
        "throughput_per_s": done / window,
        "work_in_window": r.window_work,
        "p50_ms": q(50), "p99_ms": q(99), "max_ms": (h.get_max_value() / 1e6) if done else math.nan,
        "slo_ms": slo * 1e3 if slo is not None else math.nan,
    }


def make_gateway(clock, setup: Setup, mode: str, tenants: Sequence[Tenant], *, scheduler: str = "drr",
                 admission: bool = True, slots: int = 1, codel: dict | None = None,
                 concurrency: dict | None = None) -> Gateway:
    """The gateway every scenario uses; ``admission=False`` is the
    uncontrolled baseline (same bounded queues, no admission, no shedding).
    ``codel`` and ``concurrency`` are the gateway's optional controls."""
    gw = Gateway(
        setup.n(mode), clock=clock, scheduler=scheduler, admission=admission, shed_expired=admission,
        slots=slots, estimator=ServiceEstimator(setup.service.mean, 5 * setup.service.mean),
        breaker={"p99_threshold": setup.breaker_ms / 1e3, "window": 1.0},
        codel=codel, concurrency=concurrency,
        native=setup.native and scheduler == "drr" and codel is None,
    )
    for t in tenants:
        gw.add_tenant(t.name, t.weight, slo=t.slo, rate=t.rate)
    return gw


def run(setup: Setup, mode: str, label: str, tenants: Sequence[Tenant], streams: Sequence[Stream], *,
        capacity: float, scheduler: str = "drr", admission: bool = True, warmup_frac: float = 0.1,
        pool=None, live: "Live | None" = None, codel: dict | None = None,
        concurrency: dict | None = None) -> Outcome:
    """Run one scenario (``streams`` at absolute rates) in ``mode``.

    Live, ``capacity`` is the measurement the rates were scaled to; the pool is
    measured again right after the run, and the outcome's capacity is the mean
    of the two (both are kept in ``facts``): on a shared machine it drifts.
    """
    duration = setup.duration if mode == "sim" else setup.live_duration
    sched = arrivals(list(streams), duration, seed=setup.seed)
    t0 = duration * warmup_frac
    rec = Recorder(t0, duration)
    facts: dict = {"arrivals": len(sched)}
    wall = time.perf_counter()
    if mode == "sim":
        clock = VirtualClock()
        gw = make_gateway(clock, setup, mode, tenants, scheduler=scheduler, admission=admission,
                          codel=codel, concurrency=concurrency)
        simulate(gw, clock, sched, recorder=rec)
    else:
        from dataplane.control.live import run_live

        gw = make_gateway(MonotonicClock(), setup, mode, tenants, scheduler=scheduler, admission=admission,
                          slots=setup.slots, codel=codel, concurrency=concurrency)
        _, live_facts = run_live(gw, sched, live.pool if live is not None else pool, recorder=rec)
        facts.update(live_facts)
        if live is not None:
            facts["capacity_before"] = capacity
            facts["capacity_after"] = after = live.recalibrate()
            capacity = (capacity + after) / 2
    facts["run_wall_s"] = time.perf_counter() - wall
    facts["breaker_trips"] = sum(gw.breaker(w).trips for w in gw.workers)
    if codel is not None:
        facts["codel_drops"] = gw.codel_drops
    if gw.limiter is not None:
        facts["concurrency_limit_final"] = gw.limiter.limit
        facts["concurrency_decreases"] = gw.limiter.decreases
    window = duration - t0
    out = Outcome(mode, label, window, capacity, facts=facts)
    slos = {str(t.name): t.slo for t in tenants}
    for name, r in rec.tenants.items():
        out.tenants[str(name)] = summarize(r, window, slos.get(str(name)))
    out.tenants["*"] = summarize(rec.total(), window, None)
    return out


class Live:
    """The worker pool and its measured capacity, opened once per benchmark."""

    def __init__(self, setup: Setup) -> None:
        from dataplane.control.live import ExecutorPool, WorkerPool, calibrate

        pool = ExecutorPool if setup.pool == "executor" else WorkerPool
        self.pool = pool(setup.workers, work=setup.work)
        self._service = setup.service
        self._slots = setup.slots
        calibrate(self.pool, setup.service, 0.2, slots=setup.slots)  # warm the processes and caches
        self.capacity = calibrate(self.pool, setup.service, 1.0, slots=setup.slots)

    def recalibrate(self, seconds: float = 0.5) -> float:
        """Measure again: on a shared machine the capacity drifts with the
        other load, so each scenario is scaled to a fresh measurement."""
        from dataplane.control.live import calibrate

        self.capacity = calibrate(self.pool, self._service, seconds, slots=self._slots)
        return self.capacity

    def close(self) -> None:
        self.pool.close()


# -- output ------------------------------------------------------------------------
def fmt(v, spec: str = ".1f") -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else format(v, spec)
    return str(v)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rejects(d: dict) -> str:
    short = {"overloaded": "ovl", "deadline": "ddl", "rate-limited": "rate", "circuit-open": "circ"}
    return " ".join(f"{short[k]}={n}" for k, n in d["rejected"].items() if n) or "0"


def jain(xs: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    xs = list(xs)
    sq = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * sq) if sq > 0 else math.nan


def write_json(path: str, payload: dict) -> None:
    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    with open(path, "w") as f:
        json.dump(clean(payload), f, indent=1)
    print(f"wrote {path}")


def outcome_dict(o: Outcome) -> dict:
    return {"mode": o.mode, "label": o.label, "window_s": o.window, "capacity_per_s": o.capacity,
            "tenants": o.tenants, "facts": o.facts}


def plot_setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- overhead ------------------------------------------------------------------------
def overhead(n: int = 100_000, tenants: int = 4, scheduler: str = "drr", repeats: int = 5) -> dict:
    """Per-request cost of the control plane on the monotonic clock, in ns.

    ``core``: reading the clock, the admission decision and its accounts,
    scheduler enqueue and dequeue -- what admission plus DRR add to a request.
    ``gateway``: the whole ``submit`` + ``dispatch`` + ``complete`` (also
    validation, token bucket check, worker choice, breaker and estimator
    feedback).  With DRR, ``native_core`` and ``native_gateway`` are the same
    on ``Gateway(native=True)``: the core is then its three C calls (submit,
    next, done) and the handle-to-request lookups, as the gateway makes them.  Queues are kept 64 deep per tenant so no empty-queue shortcut
    is measured; building the Request objects is not counted.  Both CPU time
    of this thread and wall time are reported, best and median of
    ``repeats``: on a shared machine wall time includes waiting for a CPU.
    """
    clock = MonotonicClock()
    names = [f"t{i}" for i in range(tenants)]
    far = 1e12

    def fresh_gateway(native: bool = False) -> Gateway:
        gw = Gateway(1, clock=clock, scheduler=scheduler, slots=1 << 30, queue_capacity=1 << 20,
                     estimator=ServiceEstimator(1e-6), breaker={"p99_threshold": 1.0}, native=native,
                     max_pending=1 << 20)
        for t in names:
            gw.add_tenant(t, 1.0, slo=3600.0)
        return gw

    def reqs(k: int) -> list[Request]:
        return [Request(names[i % tenants], 1.0, far) for i in range(k)]

    def core(batch: list[Request]):
        gw = fresh_gateway()
        adm, sched, e = gw.admission, gw.scheduler, gw.estimator.get(names[0])
        accts = {t: adm.account(t) for t in names}  # the gateway uses its tenant records
        admit, enqueue, dequeue = adm.try_admit, sched.enqueue, sched.dequeue  # as the gateway calls them
        dequeued, completed = adm.dequeued, adm.completed
        now = time.perf_counter
        for r in reqs(64 * tenants):
            admit(accts[r.tenant], e.mean, e.upper, far, 0.0, 1.0, sched.active_weight)
            r.est = e.mean
            enqueue(r, 0.0)

        def loop() -> None:
            for r in batch:
                t = now()
                admit(accts[r.tenant], e.mean, e.upper, far, t, 1.0, sched.active_weight)
                r.est = e.mean
                enqueue(r, t)
                x = dequeue()
                dequeued(accts[x.tenant], x.est)
                completed(x.est)
        return loop

    def gateway(batch: list[Request], native: bool = False):
        gw = fresh_gateway(native)
        submit, dispatch, complete = gw.submit, gw.dispatch, gw.complete
        for r in reqs(64 * tenants):
            submit(r)

        def loop() -> None:
            for r in batch:
                submit(r)
                complete(dispatch(), 1e-6)
        return loop

    def native_core(batch: list[Request]):
        from dataplane._ffi import fast_ffi, fast_lib

        gw = fresh_gateway(native=True)
        fq, e, items = gw.scheduler.handle, gw.estimator.get(names[0]), [None] * (1 << 20)
        index = {t: gw.scheduler.index(t) for t in names}
        submit, nxt, done = fast_lib.dp_fq_submit, fast_lib.dp_fq_next, fast_lib.dp_fq_done
        finish, gone = fast_ffi.new("double *"), fast_ffi.new("int64_t *")
        now = time.perf_counter
        for r in reqs(64 * tenants):
            items[submit(fq, index[r.tenant], r.cost, e.mean, e.upper, far, 0.0, 1, finish)] = r

        def loop() -> None:
            for r in batch:
                t = now()
                h = submit(fq, index[r.tenant], r.cost, e.mean, e.upper, far, t, 1, finish)
                if h < 0:
                    raise RuntimeError(f"dp_fq_submit refused ({h})")
                items[h] = r
                h = nxt(fq, t, 0.0, 1, gone)
                items[h]  # the lookup the gateway makes
                done(fq, h)
        return loop

    def native_gateway(batch: list[Request]):
        return gateway(batch, native=True)

    def empty(batch: list[Request]):
        def loop() -> None:
            for r in batch:
                pass
        return loop

    out = {"scheduler": scheduler, "tenants": tenants, "requests": n}
    # How fast this Python is, to compare machines: sum(range(1000)).
    ref = []
    for _ in range(repeats):
        c0 = time.thread_time_ns()
        for _ in range(200):
            sum(range(1000))
        ref.append((time.thread_time_ns() - c0) / 200)
    out["ref_sum_range_1000_us"] = min(ref) / 1e3
    paths = [("core", core), ("gateway", gateway), ("loop", empty)]
    if scheduler == "drr":
        paths[2:2] = [("native_core", native_core), ("native_gateway", native_gateway)]
    for name, make in paths:
        cpu, wall = [], []
        for _ in range(repeats):
            loop = make(reqs(n))
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            loop()
            cpu.append((time.thread_time_ns() - c0) / n)
            wall.append((time.perf_counter_ns() - w0) / n)
        out[f"{name}_cpu_ns_best"] = min(cpu)
        out[f"{name}_cpu_ns_median"] = statistics.median(cpu)
        out[f"{name}_wall_ns_best"] = min(wall)
        out[f"{name}_wall_ns_median"] = statistics.median(wall)
    return out


def overhead_report(results: list[dict]) -> str:
    rows = []
    for r in results:
        for part, what in (("core", "admit+enqueue+dequeue"), ("gateway", "submit+dispatch+complete"),
                           ("native_core", "native: admit+enqueue+dequeue"),
                           ("native_gateway", "native: submit+dispatch+complete")):
            if f"{part}_cpu_ns_best" not in r:
                continue
            rows.append([r["scheduler"], str(r["tenants"]), what,
                         fmt(r[f"{part}_cpu_ns_best"] / 1e3, ".2f"), fmt(r[f"{part}_cpu_ns_median"] / 1e3, ".2f"),
                         fmt(r[f"{part}_wall_ns_best"] / 1e3, ".2f"), fmt(r[f"{part}_wall_ns_median"] / 1e3, ".2f")])
    ref = min(r["ref_sum_range_1000_us"] for r in results)
    return (table(rows, ["scheduler", "tenants", "path", "CPU µs best", "CPU median", "wall µs best", "wall median"])
            + f"\n(speed of this Python for comparison: sum(range(1000)) takes {ref:.1f} µs of CPU)")
