"""``python -m dataplane bench pingpong``: the ring against the peers a user
would otherwise pick, in the same run.

Latency: two processes bounce a message; every round trip is recorded in an
HDR histogram.  Peers: the ring driven from Python (busy-poll and futex
modes), the ring's loop inside the shim (no Python), pyzmq REQ/REP over ipc,
and multiprocessing.Pipe.  Throughput (``--throughput``): one-way msgs/s and
GB/s for 64 B and 1 MiB messages, per-message, batch and zero-copy.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from dataplane.bench.procs import CTX, child, finish, pin, round_trips
from dataplane.bench.stats import histogram, percentile_curve, summarize



def _names() -> tuple[str, str]:
    tag = f"dpbench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return tag + "-ab", tag + "-ba"


# ---------------------------------------------------------- ring (Python) --

def _ring_echo(ab: str, ba: str, n: int, busy: bool, spin_s: float | None) -> None:
    from dataplane.ring import Ring

    pin(1)
    rx, tx = Ring.attach(ab, busy_poll=busy), Ring.attach(ba, busy_poll=busy)
    if spin_s is not None:
        rx.set_spin(spin_s)
    recv, send = rx.recv, tx.send
    for _ in range(n):
        send(recv())
    rx.close()
    tx.close()


def ring_latency(size: int, iters: int, warmup: int, busy: bool = True, spin_s: float | None = None) -> list[int]:
    """Round trips (ns) of ``size``-byte messages through two rings."""
    from dataplane.ring import Ring

    ab, ba = _names()
    with Ring.create(ab, capacity=1 << 16, busy_poll=busy) as tx, Ring.create(ba, capacity=1 << 16, busy_poll=busy) as rx:
        try:
            if spin_s is not None:
                rx.set_spin(spin_s)
            p = child(_ring_echo, ab, ba, warmup + iters, busy, spin_s)
            pin(0)
            out = round_trips(tx.send, rx.recv, b"x" * size, iters, warmup)
            finish(p)
            return out
        finally:
            tx.unlink()
            rx.unlink()


def _native_echo(ab: str, ba: str, size: int, n: int) -> None:
    from dataplane._ffi import ffi, lib
    from dataplane.ring import Ring

    pin(1)
    rx, tx = Ring.attach(ab, busy_poll=True), Ring.attach(ba, busy_poll=True)
    lib.dp_bench_pingpong(tx._r, rx._r, size, n, 0, ffi.NULL)
    rx.close()
    tx.close()


def native_latency(size: int, iters: int, warmup: int) -> list[int]:
    """Round trips (ns) with the loop inside the shim on both sides."""
    from dataplane._ffi import ffi, lib
    from dataplane.errors import raise_for
    from dataplane.ring import Ring

    ab, ba = _names()
    with Ring.create(ab, capacity=1 << 16, busy_poll=True) as tx, Ring.create(ba, capacity=1 << 16, busy_poll=True) as rx:
        try:
            p = child(_native_echo, ab, ba, size, warmup + iters)
            pin(0)
            rtt = ffi.new("uint64_t[]", warmup + iters)
            rc = lib.dp_bench_pingpong(tx._r, rx._r, size, warmup + iters, 1, rtt)
            if rc < 0:
                raise_for(rc, "native pingpong", ffi.errno)
            finish(p)
            return list(ffi.unpack(rtt, warmup + iters))[warmup:]
        finally:
            tx.unlink()
            rx.unlink()


def _cacheline_echo(word: Any, n: int) -> None:
    from dataplane._ffi import ffi, lib

    pin(1)
    lib.dp_bench_cacheline(ffi.cast("uint64_t *", ffi.from_buffer(word)), n, 0, ffi.NULL)


def cacheline_latency(iters: int, warmup: int) -> list[int]:
    """Round trips (ns) of one shared 8-byte word bounced between two
    processes by C loops: the floor the ring's own loop is compared with."""
    import mmap

    from dataplane._ffi import ffi, lib

    word = mmap.mmap(-1, 4096)  # MAP_SHARED: the forked child sees it
    p = child(_cacheline_echo, word, warmup + iters)
    pin(0)
    rtt = ffi.new("uint64_t[]", warmup + iters)
    lib.dp_bench_cacheline(ffi.cast("uint64_t *", ffi.from_buffer(word)), warmup + iters, 1, rtt)
    finish(p)
    return list(ffi.unpack(rtt, warmup + iters))[warmup:]


# --------------------------------------------------------------- peers --

def _zmq_echo(addr: str, n: int) -> None:
    import zmq

    pin(1)
    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    s.bind(addr)
    for _ in range(n):
        s.send(s.recv())
    s.close(linger=0)
    ctx.term()


def zmq_latency(size: int, iters: int, warmup: int) -> list[int]:
    """pyzmq REQ/REP over ipc, the usual Python choice."""
    import zmq

    path = os.path.join(tempfile.gettempdir(), f"dpbench-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipc")
    addr = "ipc://" + path
    p = child(_zmq_echo, addr, warmup + iters)
    pin(0)
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.connect(addr)
    out = round_trips(s.send, s.recv, b"x" * size, iters, warmup)
    s.close(linger=0)
    ctx.term()
    finish(p)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return out


def _pipe_echo(conn: Any, n: int) -> None:
    pin(1)
    recv, send = conn.recv_bytes, conn.send_bytes
    for _ in range(n):
        send(recv())


def pipe_latency(size: int, iters: int, warmup: int) -> list[int]:
    """multiprocessing.Pipe (duplex), the standard library's choice."""
    a, b = CTX.Pipe()
    p = child(_pipe_echo, b, warmup + iters)
    pin(0)
    out = round_trips(a.send_bytes, a.recv_bytes, b"x" * size, iters, warmup)
    finish(p)
    return out


# ---------------------------------------------------------- throughput --

def _tp_producer(name: str, mode: str, size: int, count: int, batch: int) -> None:
    import numpy as np

    from dataplane.ring import Ring

    pin(1)
    r = Ring.attach(name, busy_poll=True)
    if mode == "message":
        send, msg = r.send, b"x" * size
        for _ in range(count):
            send(msg)
    elif mode == "batch":
        arr = np.zeros((batch, size), dtype=np.uint8)
        send_array, left = r.send_array, count
        while left:
            left -= send_array(arr[: min(batch, left)])
    elif mode == "reserve":
        src = memoryview(np.random.default_rng(0).bytes(size))
        reserve = r.reserve
        for _ in range(count):
            with reserve(size) as view:
                view[:] = src
    r.close()


def ring_throughput(mode: str, size: int, count: int, batch: int = 256) -> dict:
    """One-way msgs/s and GB/s; the clock runs at the consumer from the
    first message to the last."""
    import numpy as np

    from dataplane.ring import Ring

    name = _names()[0]
    cap = max(1 << 20, 1 << (4 * size - 1).bit_length())
    with Ring.create(name, capacity=cap, busy_poll=True) as r:
        try:
            p = child(_tp_producer, name, mode, size, count, batch)
            pin(0)
            now = time.perf_counter
            if mode == "message":
                recv = r.recv
                recv()
                t0 = now()
                for _ in range(count - 1):
                    recv()
                got = count - 1
            elif mode == "batch":
                out = np.empty((batch, size), dtype=np.uint8)
                recv_array = r.recv_array
                got = recv_array(out)
                t0 = now()
                left = count - got
                while left:
                    left -= recv_array(out[: min(batch, left)])
                got = count - got
            else:  # reserve: zero-copy on both sides; the consumer reads a byte per message
                recv_view = r.recv_view
                with recv_view() as v:
                    v[0]
                t0 = now()
                for _ in range(count - 1):
                    with recv_view() as v:
                        v[-1]
                got = count - 1
            dt = now() - t0
            finish(p)
        finally:
            r.unlink()
    return {"mode": mode, "size": size, "messages": got, "seconds": dt, "msgs_per_s": got / dt, "gb_per_s": got * size / dt / 1e9}


def _zmq_push(addr: str, size: int, count: int) -> None:
    import zmq

    pin(1)
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.connect(addr)
    msg = b"x" * size
    for _ in range(count):
        s.send(msg, copy=size < 65536)
    s.close(linger=-1)
    ctx.term()


def zmq_throughput(size: int, count: int) -> dict:
    import zmq

    path = os.path.join(tempfile.gettempdir(), f"dpbench-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipc")
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.bind("ipc://" + path)
    p = child(_zmq_push, "ipc://" + path, size, count)
    pin(0)
    copy = size < 65536
    s.recv(copy=copy)
    t0 = time.perf_counter()
    for _ in range(count - 1):
        s.recv(copy=copy)
    dt = time.perf_counter() - t0
    s.close(linger=0)
    ctx.term()
    finish(p)
    os.unlink(path)
    n = count - 1
    return {"mode": "pyzmq PUSH/PULL ipc", "size": size, "messages": n, "seconds": dt, "msgs_per_s": n / dt, "gb_per_s": n * size / dt / 1e9}


def _pipe_push(conn: Any, size: int, count: int) -> None:
    pin(1)
    msg = b"x" * size
    for _ in range(count):
        conn.send_bytes(msg)


def pipe_throughput(size: int, count: int) -> dict:
    a, b = CTX.Pipe(duplex=False)
    p = child(_pipe_push, b, size, count)
    pin(0)
    a.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(count - 1):
        a.recv_bytes()
    dt = time.perf_counter() - t0
    finish(p)
    n = count - 1
    return {"mode": "multiprocessing.Pipe", "size": size, "messages": n, "seconds": dt, "msgs_per_s": n / dt, "gb_per_s": n * size / dt / 1e9}


# ------------------------------------------------------------ wake-up --

def _idle_sender(name: str, delay: float) -> None:
    from dataplane.ring import Ring

    r = Ring.attach(name)
    time.sleep(delay)
    r.send(b"wake")
    r.close()


def idle_cpu(seconds: float = 1.0) -> dict:
    """CPU time a futex-mode consumer burns while waiting ``seconds``."""
    from dataplane.ring import Ring

    name = _names()[0]
    with Ring.create(name, capacity=4096) as r:
        try:
            p = child(_idle_sender, name, seconds)
            ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            r.recv(timeout=seconds + 10)
            ru1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
            finish(p)
        finally:
            r.unlink()
    cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "cpu_fraction": cpu / wall}


# ------------------------------------------------------------------ CLI --

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.splitlines()[0]
    p.add_argument("--size", type=int, default=64, help="message size in bytes (latency mode)")
    p.add_argument("--iters", type=int, default=200_000, help="round trips for the ring (peers scale down by their cost)")
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--transport", choices=["shm", "zmq", "rdma"], default="shm",
                   help="shm: the ring and its peers; zmq/rdma: the Channel API over that transport")
    p.add_argument("--throughput", action="store_true", help="one-way throughput, 64 B and 1 MiB, instead of latency")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke runs)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG percentile plot (latency mode)")


def _latency(args: argparse.Namespace) -> dict:
    n = max(1000, args.iters // (20 if args.quick else 1))
    w = min(args.warmup, n)
    runs: dict[str, tuple[str, Callable[[], list[int]]]] = {
        "cacheline": ("C, one shared word, no ring (the floor)", lambda: cacheline_latency(n * 5, w)),
        "ring-native": ("ring, loop in the C shim (busy-poll)", lambda: native_latency(args.size, n * 5, w)),
        "ring": ("ring from Python (busy-poll)", lambda: ring_latency(args.size, n, w, busy=True)),
        "ring-futex": ("ring from Python (futex sleep, no spin)", lambda: ring_latency(args.size, max(1000, n // 20), w // 10, busy=False, spin_s=0.0)),
        "zmq": ("pyzmq REQ/REP ipc", lambda: zmq_latency(args.size, max(1000, n // 20), w // 10)),
        "pipe": ("multiprocessing.Pipe", lambda: pipe_latency(args.size, max(1000, n // 10), w // 10)),
    }
    results: dict[str, Any] = {}
    hists = {}
    for key, (label, fn) in runs.items():
        h = histogram(fn())
        hists[key] = (label, h)
        results[key] = {"label": label, **summarize(h).as_dict()}
    base = results["ring"]["p50_us"]
    print(f"\nround trip, {args.size} B messages, {os.cpu_count()} CPUs (µs; HdrHistogram)")
    print(f"{'peer':<42}{'count':>9}{'p50':>9}{'p99':>9}{'p99.9':>9}{'msgs/s':>11}{'p50 / ring':>12}")
    for key, r in results.items():
        rate = 1e6 / r["mean_us"] if r["mean_us"] else 0.0
        r["round_trips_per_s"] = rate
        r["p50_ratio_to_ring"] = r["p50_us"] / base
        print(f"{r['label']:<42}{r['count']:>9}{r['p50_us']:>9.2f}{r['p99_us']:>9.2f}{r['p999_us']:>9.2f}{rate:>11.0f}{r['p50_ratio_to_ring']:>11.1f}x")
    idle = idle_cpu(1.0)
    print(f"\nfutex wake-up: ring-futex round trip p50 {results['ring-futex']['p50_us']:.1f} µs (two wake-ups); "
          f"an idle futex-mode consumer used {idle['cpu_s'] * 1e3:.1f} ms CPU in {idle['wall_s']:.2f} s "
          f"({idle['cpu_fraction'] * 100:.2f}% of a core)")
    if args.plot:
        _plot(hists, args.plot, args.size)
        print(f"plot written to {args.plot}")
    return {"mode": "latency", "size": args.size, "results": results, "idle_consumer": idle}


def _throughput(args: argparse.Namespace) -> dict:
    k = 20 if args.quick else 1
    rows = [
        ring_throughput("message", 64, 2_000_000 // k),
        ring_throughput("batch", 64, 50_000_000 // k, batch=1024),
        ring_throughput("reserve", 1 << 20, 20_000 // k),
        zmq_throughput(64, 500_000 // k),
        zmq_throughput(1 << 20, 2_000 // k),
        pipe_throughput(64, 500_000 // k),
        pipe_throughput(1 << 20, 2_000 // k),
    ]
    labels = {"message": "ring, per-message send/recv", "batch": "ring, batch send_array/recv_array", "reserve": "ring, reserve/commit + recv_view"}
    print(f"\none-way throughput, {os.cpu_count()} CPUs")
    print(f"{'path':<40}{'size':>9}{'messages':>11}{'M msgs/s':>10}{'GB/s':>8}")
    for r in rows:
        r["label"] = labels.get(r["mode"], r["mode"])
        print(f"{r['label']:<40}{r['size']:>9}{r['messages']:>11}{r['msgs_per_s'] / 1e6:>10.2f}{r['gb_per_s']:>8.2f}")
    return {"mode": "throughput", "results": rows}


def _plot(hists: dict, path: str, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for key, (label, h) in hists.items():
        ps, vs = percentile_curve(h)
        ax.plot([1 / (1 - p / 100) for p in ps], vs, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("round trip (µs)")
    ax.set_title(f"dataplane pingpong, {size} B")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args: argparse.Namespace) -> int:
    if args.size < 0:
        raise SystemExit("--size must be >= 0")
    if args.transport != "shm":
        from dataplane.transport import bench_support  # the Channel API over zmq/rdma

        figures = bench_support.run_pingpong(args)
    else:
        figures = _throughput(args) if args.throughput else _latency(args)
    figures["command"] = "python -m dataplane bench pingpong " + " ".join(sys.argv[3:] if sys.argv[1:3] == ["bench", "pingpong"] else sys.argv[1:])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0
