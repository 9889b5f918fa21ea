"""Benchmarks of the Channel API over any transport, for
``python -m dataplane bench pingpong --transport zmq|rdma|shm``.

Building blocks (each runs a peer in a forked child process, this process
measures):

* :func:`pingpong_channel` -- round trips (ns) of ``size``-byte messages
  through a Channel; :func:`pingpong_raw_zmq` -- the same exchange written
  directly in pyzmq (DEALER/ROUTER, or PAIR), the baseline for the
  ZeroMQ transport's overhead.
* :func:`stream_channel` -- one-way msgs/s and GB/s through a Channel, per
  message, batched (send_many/recv_many) or zero-copy (recv_view);
  :func:`stream_raw_zmq` -- the pyzmq baseline.
* :func:`run_pingpong` -- the whole report for the CLI.

``python -m dataplane.transport.bench_support threshold`` measures the
copy/zero-copy crossover behind ``zmq_channel.COPY_THRESHOLD``.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

from dataplane.bench.procs import child, finish, pin, round_trips, unpin

def _busy(ch: Any, on: bool) -> None:
    # Rings (shm, and RDMA's receive rings) sleep on a futex by default;
    # latency figures are taken busy-polling, as the ring benchmark does.
    if on and hasattr(ch, "busy_poll"):
        ch.busy_poll = True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipc_url(tag: str = "bench") -> str:
    return "ipc://" + os.path.join(tempfile.gettempdir(), f"dp-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipc")


def shm_url(tag: str = "bench", capacity: int = 1 << 16) -> str:
    return f"shm://dp-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}?capacity={capacity}"


def _cleanup(url: str) -> None:
    if url.startswith("ipc://"):
        try:
            os.unlink(url[6:].split("?", 1)[0])
        except FileNotFoundError:
            pass


# ------------------------------------------------------------- latency --

def _channel_echo(url: str, n: int, busy: bool) -> None:
    from dataplane.transport import connect

    pin(1)
    ch = connect(url, timeout=30)
    _busy(ch, busy)
    send, recv = ch.send, ch.recv
    for _ in range(n):
        send(recv())
    ch.close()


def pingpong_channel(url: str, size: int, iters: int, warmup: int = 1000, *, busy_poll: bool = False,
                     **options: Any) -> list[int]:
    """Round trips (ns) of ``size``-byte messages: this process binds
    ``url`` and sends, a child connects and echoes."""
    from dataplane.transport import bind

    with bind(url, **options) as ch:
        _busy(ch, busy_poll)
        p = child(_channel_echo, ch.url, warmup + iters, busy_poll)
        try:
            pin(0)
            if hasattr(ch, "accept"):
                ch.accept(30)  # the handshake outside the measured loop
            out = round_trips(ch.send, ch.recv, b"x" * size, iters, warmup)
            finish(p)
        finally:
            unpin()
            if p.is_alive():
                p.kill()
    _cleanup(url)
    return out


def _raw_echo(addr: str, n: int, pair: bool) -> None:
    import zmq

    pin(1)
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR if pair else zmq.DEALER)
    s.connect(addr)
    s.send(b"hi")  # lets the ROUTER learn this peer's id, like the channel's HELLO
    send, recv = s.send, s.recv
    for _ in range(n):
        send(recv())
    s.close(linger=1000)
    ctx.term()


def pingpong_raw_zmq(addr: str, size: int, iters: int, warmup: int = 1000, *, pair: bool = False) -> list[int]:
    """The same exchange in plain pyzmq: this process binds a ROUTER (or a
    PAIR) and sends, a child's DEALER (or PAIR) echoes."""
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR if pair else zmq.ROUTER)
    s.bind(addr)
    bound = s.last_endpoint.decode()
    p = child(_raw_echo, bound, warmup + iters, pair)
    try:
        pin(0)
        msg = b"x" * size
        now = time.perf_counter_ns
        recv, send = s.recv, s.send
        out = [0] * iters
        if pair:
            recv()
            for _ in range(warmup):
                send(msg)
                recv()
            for i in range(iters):
                t0 = now()
                send(msg)
                recv()
                out[i] = now() - t0
        else:
            more = zmq.SNDMORE
            ident = recv()
            recv()
            for _ in range(warmup):
                send(ident, more)
                send(msg)
                recv()
                recv()
            for i in range(iters):
                t0 = now()
                send(ident, more)
                send(msg)
                recv()
                recv()
                out[i] = now() - t0
        finish(p)
    finally:
        unpin()
        if p.is_alive():
            p.kill()
        s.close(0)
        ctx.term()
        _cleanup(bound)
    return out


# ---------------------------------------------------------- throughput --

def _channel_producer(url: str, size: int, count: int, batch: int, busy: bool) -> None:
    from dataplane.transport import connect

    pin(1)
    ch = connect(url, timeout=30)
    _busy(ch, busy)
    msg = b"x" * size
    if batch > 1:
        msgs = [msg] * batch
        left = count
        while left:
            left -= ch.send_many(msgs[: min(batch, left)])
    else:
        send = ch.send
        for _ in range(count):
            send(msg)
    ch.recv(timeout=60)  # the consumer's "done": closing earlier could outrun the data on a ring
    ch.close()


def stream_channel(url: str, size: int, count: int, *, batch: int = 0, mode: str | None = None,
                   busy_poll: bool = False, **options: Any) -> dict:
    """One-way throughput through a Channel: a child connects and sends
    ``count`` messages (``send_many`` in groups of ``batch`` when > 1); this
    process binds and receives with ``recv`` (``recv_many`` when batching,
    ``recv_view`` when ``mode="view"``).  The clock runs from the first
    message received to the last."""
    from dataplane.transport import bind

    mode = mode or ("batch" if batch > 1 else "message")
    with bind(url, **options) as ch:
        _busy(ch, busy_poll)
        p = child(_channel_producer, ch.url, size, count, batch, busy_poll)
        try:
            pin(0)
            now = time.perf_counter
            # No timeouts in the loops (a dead producer is PeerGone anyway):
            # the same calls a raw consumer would make.
            if mode == "batch":
                recv_many = ch.recv_many
                got = len(recv_many(batch, 60))
                t0 = now()
                first = got
                while got < count:
                    got += len(recv_many(batch))
                got -= first
            elif mode == "view":
                recv_view = ch.recv_view
                with recv_view(60) as v:
                    v[-1] if len(v) else None
                t0 = now()
                for _ in range(count - 1):
                    with recv_view() as v:
                        v[-1] if len(v) else None  # touch it, as a consumer would
                got = count - 1
            else:
                recv = ch.recv
                recv(60)
                t0 = now()
                for _ in range(count - 1):
                    recv()
                got = count - 1
            dt = now() - t0
            ch.send(b"done")
            finish(p)
        finally:
            unpin()
            if p.is_alive():
                p.kill()
        transport = ch.transport
    _cleanup(url)
    return {"transport": transport, "mode": mode, "size": size, "messages": got, "seconds": dt,
            "msgs_per_s": got / dt, "gb_per_s": got * size / dt / 1e9}


def _raw_producer(addr: str, size: int, count: int, copy_threshold: int) -> None:
    import zmq

    pin(1)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(addr)
    msg = b"x" * size
    copy = size < copy_threshold
    if not copy:
        s.copy_threshold = 0  # really zero-copy, even below pyzmq's own 64 KiB
    send = s.send
    for _ in range(count):
        send(msg, copy=copy)
    s.recv()
    s.close(linger=1000)
    ctx.term()


def stream_raw_zmq(addr: str, size: int, count: int, *, copy_threshold: int = 65536,
                   recv_copy: bool | None = None) -> dict:
    """The pyzmq baseline: DEALER sends ``count`` messages to a ROUTER,
    zero-copy from ``copy_threshold`` bytes up; the ROUTER receives bytes
    below 64 KiB and frames above (``recv_copy`` forces one)."""
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.bind(addr)
    bound = s.last_endpoint.decode()
    p = child(_raw_producer, bound, size, count, copy_threshold)
    try:
        pin(0)
        recv = s.recv
        copy = size < 65536 if recv_copy is None else recv_copy
        ident = recv()
        recv(copy=copy)
        t0 = time.perf_counter()
        for _ in range(count - 1):
            recv()
            recv(copy=copy)
        dt = time.perf_counter() - t0
        s.send_multipart([ident, b"done"])
        finish(p)
    finally:
        unpin()
        if p.is_alive():
            p.kill()
        s.close(0)
        ctx.term()
        _cleanup(bound)
    n = count - 1
    return {"transport": "pyzmq", "mode": "raw DEALER->ROUTER", "size": size, "messages": n, "seconds": dt,
            "msgs_per_s": n / dt, "gb_per_s": n * size / dt / 1e9}


# --------------------------------------------------------------- report --

def _summary(values: list[int]) -> dict:
    from dataplane.bench.stats import summarize

    return summarize(values).as_dict()


def _url_for(transport: str, tag: str) -> str:
    if transport == "zmq":
        return ipc_url(tag)
    if transport == "tcp":
        return f"tcp://127.0.0.1:{free_port()}"
    if transport == "shm":
        return shm_url(tag, capacity=1 << 22)
    if transport == "rdma":
        from dataplane.transport.auto import probe_rdma

        probe = probe_rdma(os.environ.get("DATAPLANE_RDMA_DEVICE"))
        if not probe.available:
            raise SystemExit(f"--transport rdma: {probe.reason}")
        return f"rdma://127.0.0.1:{free_port()}?device={probe.device}&capacity={1 << 22}"
    raise ValueError(f"unknown transport {transport!r}")


def latency_report(transport: str, size: int, iters: int, warmup: int, rounds: int = 6) -> dict:
    """Channel round trips over ``transport``; for zmq also the raw pyzmq
    exchange, interleaved round by round so both see the same machine."""
    runs: dict[str, list[int]] = {}
    p50s: dict[str, list[float]] = {}
    labels: dict[str, str] = {}

    def add(key: str, label: str, values: list[int]) -> None:
        labels[key] = label
        runs.setdefault(key, []).extend(values)
        p50s.setdefault(key, []).append(statistics.median(values) / 1e3)

    per = max(200, iters // rounds)
    for r in range(rounds):
        if transport == "zmq":
            # Channel and raw alternate, and swap order every round, so that
            # a neighbour's load on a shared machine hits both alike.
            pairs = [
                ("channel-ipc", "Channel zmq ipc://", lambda: pingpong_channel(ipc_url("pp"), size, per, warmup)),
                ("raw-ipc", "raw pyzmq DEALER/ROUTER ipc://", lambda: pingpong_raw_zmq(ipc_url("raw"), size, per, warmup)),
                ("channel-tcp", "Channel zmq tcp://127.0.0.1",
                 lambda: pingpong_channel(f"tcp://127.0.0.1:{free_port()}", size, per, warmup)),
                ("raw-tcp", "raw pyzmq DEALER/ROUTER tcp://127.0.0.1",
                 lambda: pingpong_raw_zmq("tcp://127.0.0.1:0", size, per, warmup)),
            ]
            for i in range(0, len(pairs), 2):
                a, b = pairs[i], pairs[i + 1]
                for key, label, fn in ((a, b) if r % 2 == 0 else (b, a)):
                    add(key, label, fn())
            add("raw-pair-ipc", "raw pyzmq PAIR ipc://", pingpong_raw_zmq(ipc_url("pair"), size, per, warmup, pair=True))
        else:
            url = _url_for(transport, "pp")
            add("channel", f"Channel {transport} (busy-poll)", pingpong_channel(url, size, per, warmup, busy_poll=True))
    results = {}
    for key, values in runs.items():
        results[key] = {"label": labels[key], **_summary(values), "round_p50_us": p50s[key]}
    if transport == "zmq":
        for net in ("ipc", "tcp"):
            ch, raw = results[f"channel-{net}"], results[f"raw-{net}"]
            ch["p50_ratio_to_raw"] = ch["p50_us"] / raw["p50_us"]
            ch["mean_ratio_to_raw"] = ch["mean_us"] / raw["mean_us"]
            # Round by round (the two ran back to back): robust to drift.
            ch["round_p50_ratios"] = [c / w for c, w in zip(ch["round_p50_us"], raw["round_p50_us"])]
            ch["median_round_ratio"] = statistics.median(ch["round_p50_ratios"])
    return {"mode": "latency", "transport": transport, "size": size, "results": results}


def throughput_report(transport: str, quick: bool = False) -> dict:
    """64 B and 1 MiB one way over ``transport`` (per message, batched,
    zero-copy view), plus the raw pyzmq baseline for zmq."""
    k = 10 if quick else 1
    mib = 1 << 20
    rows = []
    if transport == "zmq":
        rows.append(stream_channel(ipc_url("tp"), 64, 200_000 // k))
        rows.append(stream_channel(ipc_url("tp"), 64, 2_000_000 // k, batch=1024))
        rows.append(stream_channel(ipc_url("tp"), mib, 2_000 // k))
        rows.append(stream_channel(ipc_url("tp"), mib, 2_000 // k, mode="view"))
        rows.append(stream_channel(f"tcp://127.0.0.1:{free_port()}", 64, 2_000_000 // k, batch=1024))
        rows[-1]["mode"] += " (tcp)"
        rows.append(stream_channel(f"tcp://127.0.0.1:{free_port()}", mib, 2_000 // k))
        rows[-1]["mode"] += " (tcp)"
        rows.append(stream_raw_zmq(ipc_url("raw"), 64, 500_000 // k))
        rows.append(stream_raw_zmq(ipc_url("raw"), mib, 2_000 // k))
    else:
        busy = True
        rows.append(stream_channel(_url_for(transport, "tp"), 64, 500_000 // k, busy_poll=busy))
        rows.append(stream_channel(_url_for(transport, "tp"), 64, 5_000_000 // k, batch=1024, busy_poll=busy))
        rows.append(stream_channel(_url_for(transport, "tp"), mib, 5_000 // k, busy_poll=busy))
        rows.append(stream_channel(_url_for(transport, "tp"), mib, 5_000 // k, mode="view", busy_poll=busy))
    return {"mode": "throughput", "transport": transport, "results": rows}


def print_latency(fig: dict) -> None:
    print(f"\nround trip over the Channel API, transport {fig['transport']}, {fig['size']} B, "
          f"{os.cpu_count()} CPUs (µs; HdrHistogram)")
    print(f"{'path':<42}{'count':>8}{'p50':>9}{'p99':>9}{'p99.9':>9}{'mean':>9}{'vs raw p50':>12}")
    for r in fig["results"].values():
        ratio = f"{r['p50_ratio_to_raw']:.2f}x" if "p50_ratio_to_raw" in r else ""
        print(f"{r['label']:<42}{r['count']:>8}{r['p50_us']:>9.1f}{r['p99_us']:>9.1f}{r['p999_us']:>9.1f}"
              f"{r['mean_us']:>9.1f}{ratio:>12}")
    for r in fig["results"].values():
        if "round_p50_ratios" in r:
            rounds = " ".join(f"{x:.2f}" for x in r["round_p50_ratios"])
            print(f"  {r['label']}: p50 / raw p50 per round (back to back): {rounds}; median {r['median_round_ratio']:.2f}x")


def print_throughput(fig: dict) -> None:
    print(f"\none-way throughput over the Channel API, transport {fig['transport']}, {os.cpu_count()} CPUs")
    print(f"{'transport':<10}{'mode':<26}{'size':>9}{'messages':>11}{'M msgs/s':>10}{'GB/s':>8}")
    for r in fig["results"]:
        print(f"{r['transport']:<10}{r['mode']:<26}{r['size']:>9}{r['messages']:>11}"
              f"{r['msgs_per_s'] / 1e6:>10.3f}{r['gb_per_s']:>8.2f}")


def run_pingpong(args: argparse.Namespace) -> dict:
    """Entry point for ``python -m dataplane bench pingpong --transport X``
    (X other than the ring benchmark's shm): uses ``args.size``,
    ``args.iters``, ``args.warmup``, ``args.throughput``, ``args.quick``;
    prints a table and returns the figures for ``--json``."""
    transport = args.transport
    if args.throughput:
        fig = throughput_report(transport, quick=args.quick)
        print_throughput(fig)
        return fig
    n = max(1000, args.iters // (20 if args.quick else 1))
    if transport != "shm":
        n = max(1000, n // 20)  # a ZeroMQ round trip costs ~20 ring round trips
    fig = latency_report(transport, args.size, n, min(args.warmup, n))
    print_latency(fig)
    return fig


# ------------------------------------------------- copy/zero-copy threshold --

def threshold_report(sizes: list[int], seconds: float = 0.5) -> list[dict]:
    """One-way throughput of the ZeroMQ channel at each size with every
    message sent as DATA (copied behind the header) and as LARGE (its own
    frame, zero-copy), and of raw pyzmq copy/zero-copy sends: where LARGE
    starts to win is where ``zmq_channel.COPY_THRESHOLD`` belongs."""
    from dataplane.transport import zmq_channel

    saved = zmq_channel.COPY_THRESHOLD
    rows = []
    print(f"{'size':>9}  {'DATA GB/s':>10} {'LARGE GB/s':>11} {'LARGE/DATA':>11}   {'raw copy':>9} {'raw 0-copy':>11}")
    try:
        for size in sizes:
            count = max(300, int(seconds * 1.5e9 / max(size, 2000)))
            row: dict[str, Any] = {"size": size}
            for label, thr in (("data", 1 << 30), ("large", 0)):
                zmq_channel.COPY_THRESHOLD = thr  # the forked producer inherits it
                row[label] = stream_channel(ipc_url("thr"), size, count)["gb_per_s"]
            zmq_channel.COPY_THRESHOLD = saved
            for label, thr in (("raw_copy", 1 << 30), ("raw_zero_copy", 0)):
                row[label] = stream_raw_zmq(ipc_url("thr"), size, count, copy_threshold=thr, recv_copy=False)["gb_per_s"]
            rows.append(row)
            print(f"{size:>9}  {row['data']:>10.2f} {row['large']:>11.2f} {row['large'] / row['data']:>11.2f}   "
                  f"{row['raw_copy']:>9.2f} {row['raw_zero_copy']:>11.2f}", flush=True)
    finally:
        zmq_channel.COPY_THRESHOLD = saved
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dataplane.transport.bench_support")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("threshold", help="copy vs zero-copy pyzmq frames by size")
    t.add_argument("--sizes", default="4096,16384,32768,65536,131072,262144,1048576")
    pp = sub.add_parser("pingpong", help="same as python -m dataplane bench pingpong --transport ...")
    pp.add_argument("--transport", choices=["shm", "zmq", "rdma"], default="zmq")
    pp.add_argument("--size", type=int, default=64)
    pp.add_argument("--iters", type=int, default=200_000)
    pp.add_argument("--warmup", type=int, default=2_000)
    pp.add_argument("--throughput", action="store_true")
    pp.add_argument("--quick", action="store_true")
    pp.add_argument("--json")
    a = p.parse_args(argv)
    if a.cmd == "threshold":
        threshold_report([int(x) for x in a.sizes.split(",")])
        return 0
    fig = run_pingpong(a)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(fig, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
