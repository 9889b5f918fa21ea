"""``python -m dataplane bench steal``: the live executor's p99 against load
for partitioned, stealing and central queues, next to the simulator's
prediction for the very same requests.

Each point is an open-loop run: Poisson arrivals at ``load · workers /
mean`` per second, each request asking its handler to spin for a service
time drawn from the simulator's distributions.  Latency is taken from each
request's *scheduled* send time, so a dispatcher that falls behind shows up
as latency instead of hiding it (no coordinated omission).

The run also measures what the simulator needs to know about the real
system: the dispatcher's cost per submit and per collected result, the
worker's cost between two requests (take, view, handler call, respond), and
the extra cost of a request taken by stealing.  The simulator is then fed
the live run's own arrival times, service times and home queues plus those
measured overheads (``service + worker overhead``, ``steal_cost_us``), so
live and simulated p99 differ only by what the model leaves out.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing as mp
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataplane.bench.stats import histogram, summarize

REQ = struct.Struct("<QQ")  # index, spin ns
RESP = struct.Struct("<Qddi")  # index, handler start, handler end (perf_counter s), pid
LIVE_POLICIES = ("partitioned", "steal", "central", "jbsq")
SIM_NAME = {"partitioned": "partitioned", "steal": "stealing", "central": "central", "jbsq": "jbsq"}
_PR_SET_TIMERSLACK = 29


def spin_handler(view: memoryview) -> bytes:
    """Spin until a wall-clock deadline: time the core loses to another
    process (the dispatcher shares these cores) is absorbed, not added."""
    i, ns = REQ.unpack(view)
    clock = time.perf_counter
    t0 = clock()
    end = t0 + ns * 1e-9
    while clock() < end:
        pass
    return RESP.pack(i, t0, clock(), os.getpid())


_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def _set_fair_slice(slice_ns: int) -> None:
    """Ask EEVDF (Linux >= 6.12) for a short time slice: a task with a short
    slice preempts on wake-up instead of waiting out the running task's
    slice.  Inherited across fork.  Best effort."""
    nr = _SYS_SCHED_SETATTR.get(os.uname().machine)
    if nr is None:
        return
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    # struct sched_attr (version 1, 56 bytes): size, policy, flags, nice,
    # priority, runtime, deadline, period, util_min, util_max.
    attr = ctypes.create_string_buffer(struct.pack("<IIQiIQQQII", 56, 0, 0, nice, 0, slice_ns, 0, 0, 0, 0))
    ctypes.CDLL(None, use_errno=True).syscall(nr, 0, attr, 0)


class _Priority:
    """Scheduling of the benchmark's own processes.  The simulator assumes
    cores that serve nothing else; a shared machine does not give that.

    ``nice``: this session's autogroup at nice -20 (with autogroups on, CFS
    first shares the CPUs equally between sessions and a task's own nice
    only counts inside its session, so on a busy machine the group's nice
    is what matters); inside it the dispatcher at nice -20 above workers at
    -15, all with a 100 µs EEVDF slice so they preempt on wake-up.  (Real-time classes
    were tried and are worse: a SCHED_FIFO dispatcher lands all its work on
    the workers' cores at once, and real-time workers near full load hit
    the kernel's real-time throttling, 50 ms stalls.)  Needs root or
    CAP_SYS_NICE; falls back to ``none`` with a note.  :meth:`restore`
    undoes the session-wide setting."""

    _AUTOGROUP = "/proc/self/autogroup"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._group_nice: str | None = None
        if mode == "nice":
            try:
                os.setpriority(os.PRIO_PROCESS, 0, -15)  # what the forked workers inherit
                _set_fair_slice(100_000)
                if os.path.exists(self._AUTOGROUP):
                    with open(self._AUTOGROUP) as f:
                        self._group_nice = f.read().split()[-1]
                    with open(self._AUTOGROUP, "w") as f:
                        f.write("-20")
            except OSError as exc:
                print(f"# --priority {mode}: {exc}; running at normal priority", file=sys.stderr)
                self.mode = "none"

    def workers_started(self) -> None:
        """The dispatcher above its workers: it must get a core as soon as
        it wakes, or requests leave late."""
        if self.mode == "nice":
            os.setpriority(os.PRIO_PROCESS, 0, -20)
            _set_fair_slice(100_000)

    def before_fork(self) -> None:
        if self.mode == "nice":
            os.setpriority(os.PRIO_PROCESS, 0, -15)
            _set_fair_slice(100_000)

    def restore(self) -> None:
        if self._group_nice is not None:
            try:
                with open(self._AUTOGROUP, "w") as f:
                    f.write(self._group_nice)
            except OSError:
                pass
            self._group_nice = None


def _busy_jiffies() -> int:
    """CPU time spent by everything on the machine (clock ticks)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait


def _proc_jiffies(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


class ForeignLoad:
    """CPUs kept busy by processes other than this benchmark's during a
    run: total busy time minus the dispatcher's and the workers' own."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.perf_counter()
        self.total0 = _busy_jiffies()
        self.ours0 = sum(_proc_jiffies(p) for p in pids)

    def cpus(self) -> float:
        hz = os.sysconf("SC_CLK_TCK")
        wall = time.perf_counter() - self.t0
        total = _busy_jiffies() - self.total0
        ours = sum(_proc_jiffies(p) for p in self.pids) - self.ours0
        return max(0.0, (total - ours) / hz / wall) if wall > 0 else float("nan")


def _tight_timers() -> None:
    """Timed waits wake within ~1 µs of their deadline instead of the
    default 50 µs slack, so requests leave on schedule."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------- workload --

@dataclass
class Workload:
    arrival_s: np.ndarray  # offsets from the run's start
    service_us: np.ndarray
    flow: np.ndarray
    home: np.ndarray  # the queue placement sends each request to


def make_workload(policy: str, load: float, workers: int, mean_us: float, dist: str, duration_s: float,
                  seed: int) -> Workload:
    from dataplane.executor.placement import flow_hash
    from dataplane.sim.distributions import get_distribution

    rng = np.random.default_rng(seed)
    rate = load * workers / (mean_us * 1e-6)
    n = max(100, int(rate * duration_s))
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    service = get_distribution(dist).sample(rng, n, mean_us)
    flow = rng.integers(0, 1 << 32, n, dtype=np.int64)
    if policy == "central":
        home = np.zeros(n, dtype=np.int64)
    else:
        home = np.fromiter((flow_hash(int(f)) % workers for f in flow), dtype=np.int64, count=n)
    return Workload(arrival, service, flow, home)


# ------------------------------------------------------------- live run --

@dataclass
class LiveRun:
    policy: str
    load: float
    requests: int
    sched: np.ndarray = field(repr=False)  # absolute perf_counter seconds
    sent: np.ndarray = field(repr=False)
    recv: np.ndarray = field(repr=False)
    start: np.ndarray = field(repr=False)
    end: np.ndarray = field(repr=False)
    worker: np.ndarray = field(repr=False)
    submit_us: float = 0.0
    collect_us: float = 0.0
    dispatcher_cpu_us: float = 0.0
    foreign_cpus: float = float("nan")
    failed: int = 0
    stolen: int = 0
    sleeps: int = 0
    wall_s: float = 0.0


def run_live(policy: str, load: float, wl: Workload, args: argparse.Namespace, prio: _Priority | None = None) -> LiveRun:
    """Drive one open-loop run through a fresh Executor."""
    from dataplane.executor import Executor

    n = len(wl.arrival_s)
    payloads = [REQ.pack(i, int(s * 1000)) for i, s in enumerate(wl.service_us)]
    flows = wl.flow.tolist()
    sent = np.zeros(n)
    recv = np.full(n, np.nan)
    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    worker = np.full(n, -1, dtype=np.int64)
    failed = 0
    submit_s = collect_s = 0.0
    if prio:
        prio.before_fork()
    with Executor(spin_handler, workers=args.workers, policy=policy, jbsq_depth=args.jbsq_depth,
                  spin_us=args.spin_us, max_request=REQ.size, max_response=RESP.size, queue_slots=4096) as ex:
        if prio:
            prio.workers_started()
        pid_index = {pid: w for w, pid in enumerate(ex.worker_pids)}
        for _ in range(50):  # warm the workers' code paths and caches
            ex.call(REQ.pack(0, 1000))
        clock = time.perf_counter
        submit, poll, wait, sleep = ex.submit, ex.poll, ex.wait, time.sleep
        lazy = getattr(args, "collect", "eager") == "lazy"
        resp_unpack = RESP.unpack
        t0 = clock() + 0.005
        sched = t0 + wl.arrival_s
        sched_l = sched.tolist()
        i = 0
        gc.disable()  # a collection pause would land on some request's latency
        try:
            c0 = ex.counters
            foreign = ForeignLoad([os.getpid(), *ex.worker_pids])
            cpu0 = time.process_time()
            while True:
                now = clock()
                while i < n and sched_l[i] <= now:
                    a = clock()
                    submit(payloads[i], flows[i])
                    b = clock()
                    sent[i] = a
                    submit_s += b - a
                    i += 1
                a = clock()
                got = poll()
                b = clock()
                if got:
                    collect_s += b - a
                    for r in got:
                        if not r.ok:
                            failed += 1
                            continue
                        k, ts, te, pid = resp_unpack(r.value)
                        recv[k], start[k], end[k] = b, ts, te
                        worker[k] = pid_index.get(pid, -1)
                if i >= n and not ex.pending:
                    break
                if i < n:
                    left = sched_l[i] - clock()
                    if left > 0:
                        if lazy:
                            sleep(left)  # no wake-up per response: answers wait for the next arrival
                        else:
                            wait(left)
                else:
                    wait(0.01)
                if clock() - t0 > wl.arrival_s[-1] + args.drain_timeout:
                    raise RuntimeError(f"{ex.pending} requests still pending {args.drain_timeout} s after the last send")
            cpu = time.process_time() - cpu0
            foreign_cpus = foreign.cpus()
            c1 = ex.counters
        finally:
            gc.enable()
        wall = clock() - t0
    return LiveRun(policy, load, n, sched, sent, recv, start, end, worker,
                   submit_us=submit_s / n * 1e6, collect_us=collect_s / max(1, n - failed) * 1e6,
                   dispatcher_cpu_us=cpu / n * 1e6, foreign_cpus=foreign_cpus, failed=failed,
                   stolen=c1.stolen - c0.stolen, sleeps=sum(c1.sleeps) - sum(c0.sleeps), wall_s=wall)


# ------------------------------------------------------------- analysis --

@dataclass
class Gaps:
    """Per-request worker costs seen in a run: the time between a handler's
    end and the next handler's start on the same worker when that next
    request was already queued (busy), split by whether it was stolen; and
    for requests that found their worker idle, send-to-start (wake-up)."""

    own_us: list[float] = field(default_factory=list)
    steal_us: list[float] = field(default_factory=list)
    pickup_us: list[float] = field(default_factory=list)


def worker_gaps(run: LiveRun, home: np.ndarray | None, gaps: Gaps) -> None:
    ok = ~np.isnan(run.start)
    for w in np.unique(run.worker[ok]):
        idx = np.nonzero(ok & (run.worker == w))[0]
        idx = idx[np.argsort(run.start[idx])]
        prev_end = run.end[idx[:-1]]
        nxt = idx[1:]
        queued = run.sent[nxt] < prev_end
        gap = (run.start[nxt] - prev_end) * 1e6
        if home is not None:
            stolen = home[nxt] != w
            gaps.own_us.extend(gap[queued & ~stolen].tolist())
            gaps.steal_us.extend(gap[queued & stolen].tolist())
        else:
            gaps.own_us.extend(gap[queued].tolist())
        idle = ~queued
        gaps.pickup_us.extend(((run.start[nxt][idle] - run.sent[nxt][idle]) * 1e6).tolist())


def _trimmed_mean(xs: list[float], cut: float = 0.01) -> float:
    """Mean without the top ``cut`` (preemptions by unrelated processes on
    a shared machine are not a cost of the executor)."""
    if not xs:
        return float("nan")
    a = np.sort(np.asarray(xs))
    return float(a[: max(1, int(len(a) * (1 - cut)))].mean())


def live_stats(run: LiveRun, warmup: float) -> dict[str, Any]:
    skip = int(run.requests * warmup)
    ok = ~np.isnan(run.end)
    ok[:skip] = False
    done = (run.end[ok] - run.sched[ok]) * 1e9
    e2e = (run.recv[ok] - run.sched[ok]) * 1e9
    late = (run.sent[ok] - run.sched[ok]) * 1e6
    d, e = summarize(histogram(done)), summarize(histogram(e2e))
    return {
        "policy": run.policy,
        "load": run.load,
        "requests": run.requests,
        "measured": int(ok.sum()),
        "failed": run.failed,
        "stolen": run.stolen,
        "sleeps": run.sleeps,
        "p50_us": d.p50_us,
        "p90_us": d.p90_us,
        "p99_us": d.p99_us,
        "p999_us": d.p999_us,
        "e2e_p50_us": e.p50_us,
        "e2e_p99_us": e.p99_us,
        "e2e_p999_us": e.p999_us,
        "send_late_p99_us": float(np.percentile(late, 99)) if late.size else float("nan"),
        "response_path_us": float(np.median((run.recv[ok] - run.end[ok]) * 1e6)) if ok.any() else float("nan"),
        "submit_us": run.submit_us,
        "collect_us": run.collect_us,
        "dispatcher_cpu_us": run.dispatcher_cpu_us,
        "foreign_cpus": run.foreign_cpus,
        "wall_s": run.wall_s,
    }


def simulate_same(policy: str, load: float, wl: Workload, args: argparse.Namespace, overhead_us: float,
                  steal_cost_us: float) -> tuple[float, float]:
    """(p90, p99) of the simulator on this run's own requests, with the
    measured per-request overhead added to every service time."""
    from dataplane.sim.config import SimConfig
    from dataplane.sim.policies import run_policy
    from dataplane.sim.result import summarize as sim_summarize
    from dataplane.sim.workload import Workload as SimWorkload

    n = len(wl.arrival_s)
    cfg = SimConfig(SIM_NAME[policy], args.workers, load, args.dist, args.mean_us, n, args.seed,
                    steal_cost_us=max(0.0, steal_cost_us), jbsq_depth=args.jbsq_depth, warmup=args.warmup)
    sw = SimWorkload(wl.arrival_s * 1e6, wl.service_us + overhead_us, wl.home.copy())
    res = sim_summarize(cfg, sw, run_policy(sw, cfg), 0.0)
    return res.p90_us, res.p99_us


def _fifo_done(arrival: np.ndarray, service: np.ndarray, setup: np.ndarray | None = None) -> np.ndarray:
    """Completion times of one FIFO server (Lindley's recursion); ``setup``
    is added to the service of a request that finds the server idle."""
    done = np.empty(len(arrival))
    free = -np.inf
    for j in range(len(arrival)):
        a = arrival[j]
        if a >= free:
            start = a + (setup[j] if setup is not None else 0.0)
        else:
            start = free
        free = done[j] = start + service[j]
    return done


def explain(runs: list[tuple[LiveRun, Workload, dict[str, Any]]], args: argparse.Namespace, overhead_us: float) -> None:
    """Where the live p99 of the partitioned runs comes from.  Each worker
    is a FIFO server, so its queue can be replayed exactly, adding one
    measured real-world effect at a time to the model's inputs:
    A the model (scheduled arrivals, drawn service + overhead);
    B + the dispatcher's actual send times (late sends);
    C + the handlers' actual durations (stretched past their deadline
      when the worker lost its core at the end of one);
    D + the actual start delay of requests that found their worker idle
      (wake-up of a sleeping or preempted worker).
    When D matches live, the model is right and the difference between A
    and live is these effects."""
    rows = [(lv, wl, st["seed"]) for lv, wl, st in runs if lv.policy == "partitioned"]
    if not rows:
        return
    print("\n# partitioned p99 (µs), replayed per worker: A model, +B late sends, +C real handler times,"
          " +D idle pick-up; live")
    print(f"  {'load':>5s} {'seed':>4s} {'A':>8s} {'B':>8s} {'C':>8s} {'D':>8s} {'live':>8s}")
    for lv, wl, seed in rows:
        n = lv.requests
        skip = int(n * args.warmup)
        ok = ~np.isnan(lv.end)
        t0 = lv.sched[0]
        sched, sent = (lv.sched - t0) * 1e6, (lv.sent - t0) * 1e6
        start, end = (lv.start - t0) * 1e6, (lv.end - t0) * 1e6
        lat = {k: np.full(n, np.nan) for k in "ABCD"}
        for w in range(args.workers):
            idx = np.nonzero((wl.home == w) & ok)[0]
            if idx.size == 0:
                continue
            nominal = wl.service_us[idx] + overhead_us
            real = end[idx] - start[idx] + overhead_us
            prev_end = np.concatenate([[-np.inf], np.maximum.accumulate(end[idx])[:-1]])
            pickup = np.where(sent[idx] >= prev_end, np.maximum(0.0, start[idx] - sent[idx]), 0.0)
            lat["A"][idx] = _fifo_done(sched[idx], nominal) - sched[idx]
            lat["B"][idx] = _fifo_done(sent[idx], nominal) - sched[idx]
            lat["C"][idx] = _fifo_done(sent[idx], real) - sched[idx]
            lat["D"][idx] = _fifo_done(sent[idx], real, pickup) - sched[idx]
        sel = np.zeros(n, dtype=bool)
        sel[skip:] = True
        sel &= ok
        p = {k: float(np.percentile(v[sel], 99)) for k, v in lat.items()}
        live = float(np.percentile((end - sched)[sel], 99))
        print(f"  {lv.load:5.2f} {seed:4d} {_fmt(p['A'])} {_fmt(p['B'])} {_fmt(p['C'])} {_fmt(p['D'])} {_fmt(live)}")


# --------------------------------------------------- isolated microbench --

def _micro_worker(seg: str, ring_name: str, n: int, go: Any, out: Any) -> None:
    from dataplane._ffi import ffi, lib
    from dataplane.executor.queues import StealQueues
    from dataplane.executor.worker import pin_to_core
    from dataplane.ring import Ring

    pin_to_core(1)
    q, ring = StealQueues.attach(seg), Ring.attach(ring_name)
    q.register(1)
    s, r, mv = q.handle, ring._live(), q.readonly_view
    item = ffi.new("dp_steal_item *")
    take, respond, release = lib.dp_steal_take, lib.dp_steal_respond, lib.dp_steal_release
    handler = bytes  # a trivial handler: copies the request
    times = {}
    for phase in ("own", "steal", "take-only"):
        go.wait(30)
        go.clear()
        t0 = time.perf_counter()
        for _ in range(n):
            take(s, 1, -1, item)
            off = item.offset
            view = mv[off : off + item.len]
            if phase == "take-only":
                release(s)
            else:
                res = handler(view)
                respond(s, r, 0, res, len(res))
        times[phase] = (time.perf_counter() - t0) / n * 1e6
        out.send(phase)
    out.send(times)


def micro_overheads(n: int = 20000) -> dict[str, float]:
    """Per-request worker costs with no Python dispatcher in the way: the
    queues are pre-filled from this process (on another core), then a worker
    process takes and answers n requests from its own queue, n by stealing
    from the other queue, and n taking only."""
    import uuid

    from dataplane.errors import PeerGone
    from dataplane.executor.queues import StealQueues
    from dataplane.executor.worker import pin_to_core
    from dataplane.ring import Ring

    ctx = mp.get_context("fork")
    tag = f"dpmicro-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    slots = 1 << max(1, (n - 1).bit_length())
    cpus = sorted(os.sched_getaffinity(0))
    with StealQueues.create(tag, 2, slots=slots, max_request=REQ.size) as q, \
            Ring.create(tag + "-r", capacity=1 << 22) as ring:
        go = ctx.Event()
        a, b = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_micro_worker, args=(tag, tag + "-r", n, go, b), daemon=True)
        p.start()
        try:
            pin_to_core(0)
            payload = REQ.pack(1, 2)
            push_us = []
            for phase, queue in (("own", 1), ("steal", 0), ("take-only", 1)):
                t0 = time.perf_counter()
                for i in range(n):
                    q.push(queue, i, payload, timeout=None)
                push_us.append((time.perf_counter() - t0) / n * 1e6)
                go.set()
                assert a.recv() == phase
                try:
                    while ring.try_recv() is not None:
                        pass
                except PeerGone:  # the worker already finished and exited
                    pass
            times = a.recv()
        finally:
            p.join(10)
            os.sched_setaffinity(0, set(cpus))
            q.unlink()
            ring.unlink()
    return {
        "push_us": float(np.median(push_us)),
        "take_respond_own_us": times["own"],
        "take_respond_steal_us": times["steal"],
        "steal_extra_us": times["steal"] - times["own"],
        "take_release_us": times["take-only"],
        "respond_us": times["own"] - times["take-only"],
    }


# ------------------------------------------------------------------ CLI --

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dataplane.sim.distributions import DISTRIBUTIONS

    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--policies", default="partitioned,steal,central",
                        help=f"comma-separated, of {','.join(LIVE_POLICIES)} (default partitioned,steal,central)")
    parser.add_argument("--loads", default="0.3:0.7:0.1", help="loads, e.g. 0.3,0.5 or 0.3:0.7:0.1 (default)")
    parser.add_argument("--mean-us", type=float, default=100.0, help="mean handler spin in µs (default 100)")
    parser.add_argument("--dist", default="exponential", choices=sorted(DISTRIBUTIONS),
                        help="service-time distribution (default exponential)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of arrivals per point (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per point, seeds seed..seed+R-1; the median is reported (default 3)")
    parser.add_argument("--spin-us", type=float, default=300.0,
                        help="idle workers spin this long, then sleep (default 300: on a shared machine a "
                             "sleeping worker waits for its core when woken)")
    parser.add_argument("--jbsq-depth", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=0.05, help="fraction of each run left out of the stats")
    parser.add_argument("--drain-timeout", type=float, default=20.0, help="give up on a point this long after its last send")
    parser.add_argument("--micro", type=int, default=20000, metavar="N",
                        help="requests per phase of the isolated overhead microbenchmark (0: skip)")
    parser.add_argument("--collect", choices=("eager", "lazy"), default="lazy",
                        help="lazy (default): the dispatcher sleeps until the next arrival and collects answers then; eager: it wakes for every answer "
                             "(more dispatcher CPU on the workers' cores; lazy e2e latency includes the wait for the next arrival)")
    parser.add_argument("--priority", choices=("none", "nice"), default="nice",
                        help="nice: this session's autogroup and processes at nice -20, short slices (default; needs root)")
    parser.add_argument("--explain", action="store_true",
                        help="replay the partitioned runs per worker to attribute the live p99 to late sends, "
                             "stretched handlers and idle pick-up")
    parser.add_argument("--no-sim", action="store_true", help="live runs only")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="plot p99 against load, live and simulated")


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:8.1f}"


def run(args: argparse.Namespace) -> int:
    from dataplane.sim.sweep import parse_loads

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for p in policies:
        if p not in LIVE_POLICIES:
            print(f"unknown policy {p!r}: choose from {', '.join(LIVE_POLICIES)}", file=sys.stderr)
            return 2
    loads = parse_loads(args.loads)
    if args.workers < 1 or args.mean_us <= 0 or args.duration <= 0 or not 0 <= args.warmup < 1 or args.repeat < 1:
        print("need --workers >= 1, --mean-us > 0, --duration > 0, --repeat >= 1 and 0 <= --warmup < 1", file=sys.stderr)
        return 2
    _tight_timers()
    prio = _Priority(args.priority)
    try:
        return _run(args, policies, loads, prio)
    finally:
        prio.restore()


def _run(args: argparse.Namespace, policies: list[str], loads: list[float], prio: _Priority) -> int:
    print(f"# live executor: {args.workers} workers on {len(os.sched_getaffinity(0))} CPUs, {args.dist} service "
          f"mean {args.mean_us:g} µs, {args.duration:g} s of Poisson arrivals per point, priority {prio.mode}", flush=True)

    micro = micro_overheads(args.micro) if args.micro > 0 else {}
    if micro:
        print("# isolated per-request costs (µs): " + ", ".join(f"{k} {v:.2f}" for k, v in micro.items()), flush=True)

    runs: list[tuple[LiveRun, Workload, dict[str, Any]]] = []
    gaps = Gaps()
    # Repetitions go round all points before the next one starts, so a burst
    # of unrelated load on a shared machine spoils one repetition of a few
    # points rather than every repetition of one point; each point reports
    # its median.
    for rep in range(args.repeat):
        for policy in policies:
            for load in loads:
                seed = args.seed + rep
                wl = make_workload(policy, load, args.workers, args.mean_us, args.dist, args.duration, seed)
                live = run_live(policy, load, wl, args, prio)
                stats = live_stats(live, args.warmup)
                stats["repeat"], stats["seed"] = rep, seed
                worker_gaps(live, None if policy == "jbsq" else wl.home, gaps)
                runs.append((live, wl, stats))
                print(f"  [{rep + 1}/{args.repeat}] {policy:12s} load {load:.2f}: p99 {stats['p99_us']:8.1f} µs"
                      f"  e2e p99 {stats['e2e_p99_us']:8.1f} µs  stolen {stats['stolen']:6d}  ({stats['measured']} requests;"
                      f" other processes kept {stats['foreign_cpus']:.2f} CPUs busy)", flush=True)

    def _stat(xs: list[float], f: Any = np.median) -> float:
        return float(f(xs)) if xs else float("nan")

    overheads = {
        "submit_us": _stat([s["submit_us"] for _, _, s in runs], np.mean),
        "collect_us": _stat([s["collect_us"] for _, _, s in runs], np.mean),
        "dispatcher_cpu_us": _stat([s["dispatcher_cpu_us"] for _, _, s in runs], np.mean),
        "worker_gap_us": _trimmed_mean(gaps.own_us),
        "worker_gap_median_us": _stat(gaps.own_us),
        "steal_gap_us": _trimmed_mean(gaps.steal_us),
        "steal_gap_median_us": _stat(gaps.steal_us),
        "idle_pickup_median_us": _stat(gaps.pickup_us),
        "idle_pickup_p99_us": _stat(gaps.pickup_us, lambda a: np.percentile(a, 99)),
        "samples_own": len(gaps.own_us),
        "samples_steal": len(gaps.steal_us),
        "samples_pickup": len(gaps.pickup_us),
    }
    overhead_us = overheads["worker_gap_us"]
    steal_cost_us = max(0.0, overheads["steal_gap_us"] - overhead_us) if gaps.steal_us else 0.0
    overheads["steal_cost_us"] = steal_cost_us
    print("\n# measured per-request costs (µs)")
    print(f"  dispatch (submit, dispatcher)        {overheads['submit_us']:6.2f}")
    print(f"  response collection (dispatcher)     {overheads['collect_us']:6.2f}  per result")
    print(f"  dispatcher CPU, all in               {overheads['dispatcher_cpu_us']:6.2f}  (submit, collect, waits, wake-ups)")
    print(f"  worker, between two requests         {overhead_us:6.2f}  (median {overheads['worker_gap_median_us']:.2f};"
          f" take + view + call + respond)")
    print(f"  worker, when the next one is stolen  {overheads['steal_gap_us']:6.2f}  (median {overheads['steal_gap_median_us']:.2f})")
    print(f"  steal cost (difference, >= 0)        {steal_cost_us:6.2f}")
    print(f"  idle worker pickup (send to start)   {overheads['idle_pickup_median_us']:6.2f}  median,"
          f" p99 {overheads['idle_pickup_p99_us']:.1f} (futex wake-up; not in the model)")

    if not args.no_sim:
        for live, wl, stats in runs:
            stats["sim_p90_us"], stats["sim_p99_us"] = simulate_same(live.policy, live.load, wl, args, overhead_us,
                                                                     steal_cost_us)
            stats["ideal_p90_us"], stats["ideal_p99_us"] = simulate_same(live.policy, live.load, wl, args, 0.0, 0.0)
    table = []
    print(f"\n# p99 latency (µs), median of {args.repeat} runs; simulator on the same requests"
          f" + {overhead_us:.2f} µs/request + steal cost {steal_cost_us:.2f} µs")
    print(f"  {'policy':12s} {'load':>5s} {'live':>8s} {'(min':>8s} {'max)':>8s} {'live e2e':>8s} {'sim':>8s}"
          f" {'ideal':>8s} {'live/sim':>9s} {'other CPUs':>10s}")
    for policy in policies:
        for load in loads:
            reps = [s for lv, _, s in runs if lv.policy == policy and lv.load == load]
            p99s = [s["p99_us"] for s in reps]
            row: dict[str, Any] = {
                "policy": policy, "load": load,
                "p99_us": _stat(p99s), "p99_min_us": min(p99s), "p99_max_us": max(p99s),
                "e2e_p99_us": _stat([s["e2e_p99_us"] for s in reps]),
                "p50_us": _stat([s["p50_us"] for s in reps]),
                "p90_us": _stat([s["p90_us"] for s in reps]),
                "stolen": int(_stat([s["stolen"] for s in reps])),
                "foreign_cpus": _stat([s["foreign_cpus"] for s in reps]),
                "requests": int(sum(s["measured"] for s in reps)),
                "runs": reps,
            }
            if not args.no_sim:
                row["sim_p99_us"] = _stat([s["sim_p99_us"] for s in reps])
                row["sim_p90_us"] = _stat([s["sim_p90_us"] for s in reps])
                row["error_p90"] = row["p90_us"] / row["sim_p90_us"] - 1
                row["ideal_p99_us"] = _stat([s["ideal_p99_us"] for s in reps])
                row["error"] = row["p99_us"] / row["sim_p99_us"] - 1
            table.append(row)
            err = f"{row['error'] * 100:+8.1f}%" if "error" in row else "-"
            print(f"  {policy:12s} {load:5.2f} {_fmt(row['p99_us'])} {_fmt(row['p99_min_us'])} {_fmt(row['p99_max_us'])}"
                  f" {_fmt(row['e2e_p99_us'])} {_fmt(row.get('sim_p99_us', float('nan')))}"
                  f" {_fmt(row.get('ideal_p99_us', float('nan')))} {err:>9s} {row['foreign_cpus']:10.2f}")
    if not args.no_sim:
        worst = max(abs(r["error"]) for r in table)
        within = sum(abs(r["error"]) <= 0.25 for r in table)
        print(f"\n  {within} of {len(table)} points within 25% of the simulator; worst |live/sim - 1| {worst * 100:.1f}%")
        print("\n# p90 latency (µs), median of runs: live vs the same simulation")
        print(f"  {'policy':12s} {'load':>5s} {'live':>8s} {'sim':>8s} {'live/sim':>9s}")
        for r in table:
            print(f"  {r['policy']:12s} {r['load']:5.2f} {_fmt(r['p90_us'])} {_fmt(r['sim_p90_us'])}"
                  f" {r['error_p90'] * 100:+8.1f}%")
    if args.explain:
        explain(runs, args, overhead_us)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                       "cpus": len(os.sched_getaffinity(0)), "micro": micro, "overheads": overheads,
                       "points": table}, f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        _plot(table, args)
        print(f"wrote {args.plot}")
    return 0


def _plot(table: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, policy in enumerate(dict.fromkeys(r["policy"] for r in table)):
        rows = [r for r in table if r["policy"] == policy]
        color = f"C{i}"
        x, y = [r["load"] for r in rows], [r["p99_us"] for r in rows]
        spread = [[yy - r["p99_min_us"] for yy, r in zip(y, rows)], [r["p99_max_us"] - yy for yy, r in zip(y, rows)]]
        ax.errorbar(x, y, yerr=spread, fmt="o-", color=color, capsize=3, label=f"{policy} live (median, min-max)")
        if "sim_p99_us" in rows[0]:
            ax.plot([r["load"] for r in rows], [r["sim_p99_us"] for r in rows], "x--", color=color,
                    label=f"{policy} simulated")
    ax.set_xlabel("load (offered work per worker)")
    ax.set_yscale("log")  # one bad repetition on a shared machine spans decades
    ax.set_ylabel("p99 latency (µs)")
    ax.set_title(f"{args.workers} workers, {args.dist} service, mean {args.mean_us:g} µs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)
