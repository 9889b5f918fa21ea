"""RDMA latency and throughput: our transport against perftest, same run.

Runs inside the soft-RoCE VM (``make bench-rdma``, or
``tools/vm/run-in-vm.sh 'python -m dataplane.bench.rdma_lat'``):

* our pingpong: an echo process and this one, each pinned to its own vCPU,
  busy-polling, over ``rdma://127.0.0.1``; one-way latency = RTT / 2;
* ``ib_write_lat -d rxe_lo -x 1`` server and client on 127.0.0.1, pinned
  the same way; perftest reports one-way latency (RTT / 2) itself
  (t_typical is its median);
* the ratio of the two medians (target: ours <= 1.3x ib_write_lat's);
* throughput for 64 B and 1 MiB messages, ours (bursts for 64 B) and
  ``ib_write_bw``.

The rounds alternate (ours, perftest, ours, perftest ...) so both see the
same machine; the VM's 2 vCPUs run on a shared host, so compare medians.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

DEVICE = os.environ.get("DATAPLANE_RDMA_DEVICE", "rxe_lo")
TICK_MODE_US = 1000.0


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _cpus() -> tuple[list[int] | None, list[int] | None]:
    """(server cpus, client cpus): two different vCPUs when there are two."""
    try:
        avail = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(avail) < 2:
        return None, None
    return [avail[1]], [avail[0]]


def _pin(cpus: list[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


def _taskset(cpus: list[int] | None) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus and shutil.which("taskset") else []


# ------------------------------------------------------------- ours --

class _Ticks:
    """Round trips timed with dp_bench_ticks (the TSC), as perftest times
    them: in this guest a clock read (time.perf_counter_ns) costs ~5 us,
    which would be timed as latency.  Calibrated against the clock over the
    run."""

    def __init__(self) -> None:
        from dataplane._ffi import fast_lib

        self.now = fast_lib.dp_bench_ticks
        self._t0, self._n0 = self.now(), time.perf_counter_ns()

    def to_ns(self, ticks: list[int]) -> list[float]:
        t1, n1 = self.now(), time.perf_counter_ns()
        scale = (n1 - self._n0) / max(1, t1 - self._t0)
        return [x * scale for x in ticks]


# Each loop: ``iters`` round trips of ``size`` bytes over ``ch``; the
# initiator returns the round trips in dp_bench_ticks units (``now`` reads
# them), the echoing end returns [].

def _channel_loop(ch: Any, size: int, iters: int, initiator: bool, now: Any = None) -> list[int]:
    """Through the Channel API, what a user writes."""
    send, recv = ch.send, ch.recv
    if not initiator:
        for _ in range(iters):
            send(recv(60))
        return []
    msg = bytes(size)
    # One timestamp per round trip, the difference of consecutive ones (as
    # perftest does): a TSC read costs ~3.5 us in this guest.
    stamps = [0] * (iters + 1)
    stamps[0] = now()
    for i in range(1, iters + 1):
        send(msg)
        recv(60)
        stamps[i] = now()
    return [stamps[i] - stamps[i - 1] for i in range(1, iters + 1)]


def _native_loop(ch: Any, size: int, iters: int, initiator: bool, now: Any = None) -> list[int]:
    """The channel's own C pingpong loop (dp_rdma_bench_pingpong): the same
    data path with no Python per message."""
    from dataplane.transport.rdma_path import vffi, vlib

    rtts = vffi.new("uint64_t[]", max(iters, 1))
    rc = vlib.dp_rdma_bench_pingpong(ch._dpc, size, iters, 1 if initiator else 0, rtts)
    if rc < 0:
        raise RuntimeError(f"dp_rdma_bench_pingpong failed: {rc}")
    return list(rtts)[:iters] if initiator else []


def _direct_loop(ch: Any, size: int, iters: int, initiator: bool, now: Any = None) -> list[int]:
    """A Python loop calling the channel's C calls directly: stage copy, one
    call to send, one to receive, bytes out.  The floor of any Python-level
    API over this data path (the Channel methods add their checks to it)."""
    from dataplane.transport.rdma_path import vlib

    c, rx, tx, tl = ch._dpc, ch._rxbuf, ch._txbuf, ch._txlen
    recv, send = vlib.dp_rdma_recv, vlib.dp_rdma_send
    msg = bytes(size)
    stamps = [0] * (iters + 1)
    if now is not None:
        stamps[0] = now()
    for i in range(1, iters + 1):
        if initiator:
            tx[:size] = msg
            tl[0] = size
            send(c)
        n = recv(c)
        while n < 0:
            n = recv(c)
        m = rx[:n]
        if initiator:
            stamps[i] = now()
        else:
            tx[:n] = m
            tl[0] = n
            send(c)
    return [stamps[i] - stamps[i - 1] for i in range(1, iters + 1)] if initiator else []


_LOOPS = {"channel": _channel_loop, "c": _native_loop, "direct": _direct_loop}


def _echo_server(port: int, size: int, iters: int, cpus: list[int] | None, ready: Any, loop: str) -> None:
    _pin(cpus)
    from dataplane.transport import rdma

    lst = rdma.listen("127.0.0.1", port, DEVICE, capacity=1 << 16, busy_poll=True, timeout=60)
    ready.put(1)
    ch = lst.accept(120)
    lst.close()
    _LOOPS[loop](ch, size, iters, False)
    ch.close()


def ours_pingpong(size: int, iters: int, warmup: int, cpus: tuple, loop: str = "channel") -> list[int]:
    """RTTs in ns of ``iters`` round trips after ``warmup`` more, both ends
    running ``loop``: "channel" (the Channel API), "c" (the channel's own C
    loop) or "direct" (a Python loop calling the C calls directly)."""
    server_cpus, client_cpus = cpus
    port = _free_port()
    ctx = mp.get_context("fork")  # no verbs resources exist in this process yet
    ready = ctx.Queue()
    p = ctx.Process(target=_echo_server, args=(port, size, iters + warmup, server_cpus, ready, loop))
    p.start()
    old = os.sched_getaffinity(0)
    _pin(client_cpus)
    try:
        from dataplane.transport import rdma

        ready.get(timeout=120)
        ch = rdma.connect("127.0.0.1", port, DEVICE, capacity=1 << 16, busy_poll=True, timeout=60)
        ticks = _Ticks()
        rtts = _LOOPS[loop](ch, size, iters + warmup, True, ticks.now)[warmup:]
        ch.close()
        return ticks.to_ns(rtts)
    finally:
        os.sched_setaffinity(0, old)
        p.join(60)
        if p.is_alive():
            p.kill()


def _sink(port: int, size: int, count: int, capacity: int, cpus: list[int] | None, out: Any) -> None:
    _pin(cpus)
    from dataplane.transport import rdma

    lst = rdma.listen("127.0.0.1", port, DEVICE, capacity=capacity, busy_poll=True, timeout=60)
    ch = lst.accept(120)
    lst.close()
    got = 0
    t0 = None
    if size <= 4096:
        while got < count:
            batch = ch.recv_many(1024, 60)
            if t0 is None:
                t0 = time.perf_counter()
            got += len(batch)
    else:
        buf = bytearray(size)
        while got < count:
            ch.recv_into(buf, 60)
            if t0 is None:
                t0 = time.perf_counter()
            got += 1
    out.put((t0, time.perf_counter()))
    ch.close()


def ours_throughput(size: int, seconds: float, cpus: tuple, zero_copy: bool = False) -> dict:
    """Stream ``size``-byte messages one way; messages/s and MB/s at the
    receiver (from its first message to its last).  ``zero_copy``: large
    messages through reserve/commit, written in place (as ib_write_bw sends
    its registered buffer) instead of copied in by ``send``."""
    server_cpus, client_cpus = cpus
    capacity = 1 << 20 if size <= 4096 else 1 << (2 * size + 64).bit_length()
    # Calibrate the count to roughly ``seconds`` from a short probe rate.
    count = max(200, int(seconds * (40_000 if size <= 64 else 30)))
    port = _free_port()
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_sink, args=(port, size, count, capacity, server_cpus, out))
    p.start()
    old = os.sched_getaffinity(0)
    _pin(client_cpus)
    try:
        from dataplane.transport import rdma

        ch = rdma.connect("127.0.0.1", port, DEVICE, capacity=capacity, busy_poll=True, timeout=60)
        msg = bytes(size)
        sent = 0
        if size <= 4096:
            batch = [msg] * 256
            while sent < count:
                sent += ch.send_many(batch[: count - sent], 60)
        elif zero_copy:
            while sent < count:
                with ch.reserve(size, 60) as mv:
                    mv[:8] = sent.to_bytes(8, "little")
                sent += 1
        else:
            while sent < count:
                ch.send(msg, 60)
                sent += 1
        ch.flush(60)
        t0, t1 = out.get(timeout=300)
        ch.close()
    finally:
        os.sched_setaffinity(0, old)
        p.join(60)
        if p.is_alive():
            p.kill()
    dt = max(t1 - t0, 1e-9)
    # The receiver's clock starts at its first message: count-1 intervals.
    return {"size": size, "zero_copy": zero_copy, "messages": count, "seconds": dt, "msgs_per_s": (count - 1) / dt,
            "MB_per_s": (count - 1) * size / dt / 1e6}


# ------------------------------------------------ idle receiver --

def _late_sender(port: int, wakes: int, gap: float, stamps: Any) -> None:
    from dataplane.transport import rdma

    ch = rdma.connect("127.0.0.1", port, DEVICE, capacity=1 << 16, timeout=60)
    for _ in range(wakes):
        time.sleep(gap)
        stamps.put(time.monotonic())  # CLOCK_MONOTONIC: one clock for both processes
        ch.send(b"x")
        ch.flush(10)
    time.sleep(2 + gap)  # stay connected while the receiver measures idling
    ch.close()


def idle_receiver(wakes: int = 8, gap: float = 0.3, idle_s: float = 2.0) -> dict:
    """A receiver without busy_poll: the CPU it uses while nothing comes, and
    how long after a sender in another process starts its send it wakes
    (it sleeps on the CQ's completion channel)."""
    import resource

    port = _free_port()
    ctx = mp.get_context("fork")
    stamps = ctx.Queue()
    p = ctx.Process(target=_late_sender, args=(port, wakes, gap, stamps))
    p.start()
    try:
        from dataplane.transport import rdma

        lst = rdma.listen("127.0.0.1", port, DEVICE, capacity=1 << 16, timeout=60)
        ch = lst.accept(120)
        lst.close()
        wake_ms = []
        for _ in range(wakes):
            ch.recv(timeout=30)
            t1 = time.monotonic()
            wake_ms.append((t1 - stamps.get(timeout=30)) * 1e3)
        r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        try:
            ch.recv(timeout=idle_s)
        except Exception:  # noqa: BLE001 - Timeout expected; PeerGone if the sender left early
            pass
        r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        ch.close()
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"wake_ms": wake_ms, "wake_ms_p50": statistics.median(wake_ms[1:] or wake_ms),
            "idle_cpu_share": cpu / max(w1 - w0, 1e-9)}


# ------------------------------------------- raw pyverbs floor --

def _raw_side(conn: Any, size: int, iters: int, initiator: bool, cpus: list[int] | None, out: Any) -> None:
    """One RDMA WRITE (inline) per hop, the sequence number in the last 8
    bytes, busy-polled from Python: the floor of any pyverbs transport."""
    _pin(cpus)
    import mmap as _mmap

    import pyverbs.device as d
    import pyverbs.enums as e
    from pyverbs.addr import GID, AHAttr, GlobalRoute
    from pyverbs.cq import CQ
    from pyverbs.mr import MR
    from pyverbs.pd import PD
    from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
    from pyverbs.wr import SGE, SendWR

    from dataplane._ffi import ffi

    ctx = d.Context(name=DEVICE)
    pd, cq = PD(ctx), CQ(ctx, 64)
    n = max(8, (size + 7) // 8 * 8)
    buf = _mmap.mmap(-1, 2 * 4096)
    p = ffi.from_buffer(buf)
    base = int(ffi.cast("uintptr_t", p))
    ffi.release(p)
    mr = MR(pd, len(buf), e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE, address=base)
    qp = QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, sq_sig_all=0,
                           cap=QPCap(max_send_wr=256, max_recv_wr=1, max_inline_data=256)))
    a = QPAttr(port_num=1)
    a.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE
    qp.to_init(a)
    gid = str(ctx.query_gid(1, 1))
    conn.send((qp.qp_num, gid, base, mr.rkey))
    rqpn, rgid, raddr, rkey = conn.recv()
    g = GID()
    g.gid = rgid
    a = QPAttr(port_num=1)
    a.path_mtu, a.dest_qp_num, a.rq_psn, a.max_dest_rd_atomic, a.min_rnr_timer = e.IBV_MTU_4096, rqpn, 0, 1, 12
    a.ah_attr = AHAttr(gr=GlobalRoute(dgid=g, sgid_index=1), is_global=1, port_num=1)
    qp.to_rtr(a)
    a.sq_psn, a.timeout, a.retry_cnt, a.rnr_retry, a.max_rd_atomic = 0, 14, 7, 7, 1
    qp.to_rts(a)
    conn.send("ready")
    conn.recv()
    sge = SGE(base + 4096, n, mr.lkey)
    wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[sge], send_flags=e.IBV_SEND_INLINE)
    wr.set_wr_rdma(rkey, raddr)
    sig = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[sge], send_flags=e.IBV_SEND_INLINE | e.IBV_SEND_SIGNALED)
    sig.set_wr_rdma(rkey, raddr)
    if os.environ.get("RAW_CHAIN"):  # experiment: data write + separate 8-byte seq write
        sge2 = SGE(base + 4096 + n - 8, 8, mr.lkey)
        w2 = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[sge2], send_flags=e.IBV_SEND_INLINE)
        w2.set_wr_rdma(rkey, raddr + n - 8)
        s2 = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[sge2], send_flags=e.IBV_SEND_INLINE | e.IBV_SEND_SIGNALED)
        s2.set_wr_rdma(rkey, raddr + n - 8)
        wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[sge], send_flags=e.IBV_SEND_INLINE, next_wr=w2)
        wr.set_wr_rdma(rkey, raddr)
        sig = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[sge], send_flags=e.IBV_SEND_INLINE, next_wr=s2)
        sig.set_wr_rdma(rkey, raddr)
    mine = memoryview(buf).cast("Q")
    seq_in, seq_out = (n - 8) // 8, (4096 + n - 8) // 8
    ticks = _Ticks()
    now, post = ticks.now, qp.post_send
    rtts = []
    t0 = now()
    for i in range(1, iters + 1):
        if initiator:
            mine[seq_out] = i
            post(sig if i % 64 == 0 else wr)
        while mine[seq_in] != i:
            pass
        if not initiator:
            mine[seq_out] = i
            post(sig if i % 64 == 0 else wr)
        else:
            t = now()
            rtts.append(t - t0)
            t0 = t
        if i % 64 == 0:
            while cq.poll(1)[0] == 0:
                pass
    out.put(ticks.to_ns(rtts) if initiator else None)
    time.sleep(0.5)
    ctx.close()


def raw_pingpong(size: int, iters: int, cpus: tuple) -> list[int]:
    ctx = mp.get_context("fork")
    c1, c2 = ctx.Pipe()
    out = ctx.Queue()
    ps = [ctx.Process(target=_raw_side, args=(c1, size, iters, True, cpus[1], out)),
          ctx.Process(target=_raw_side, args=(c2, size, iters, False, cpus[0], out))]
    for p in ps:
        p.start()
    # The two sides swap QP details through the pipe ends they hold.
    rtts = None
    for _ in range(2):
        r = out.get(timeout=600)
        if r is not None:
            rtts = r
    for p in ps:
        p.join(30)
    return rtts or []


# ---------------------------------------------------------- perftest --

_LAT_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
_BW_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def _perftest(tool: str, args: list[str], cpus: tuple, timeout: float = 180) -> str:
    if shutil.which(tool) is None:
        raise SystemExit(f"{tool} not found (apt-get install perftest; tools/install-system-deps.sh)")
    server_cpus, client_cpus = cpus
    port = str(_free_port())
    base = [tool, "-d", DEVICE, "-x", "1", "-p", port, *args]
    srv = subprocess.Popen(_taskset(server_cpus) + base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the server needs a moment to listen
            time.sleep(0.5)
            r = subprocess.run(_taskset(client_cpus) + base + ["127.0.0.1"], capture_output=True, text=True, timeout=timeout)
            out = r.stdout + r.stderr
            if r.returncode == 0:
                return out
            if "Couldn't connect" not in out and "Unable to" not in out:
                break
        raise RuntimeError(f"{tool} failed:\n{out}")
    finally:
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def perftest_lat(size: int, iters: int, cpus: tuple) -> dict:
    out = _perftest("ib_write_lat", ["-s", str(size), "-n", str(iters)], cpus)
    for line in out.splitlines():
        m = _LAT_LINE.match(line)
        if m:
            v = [float(x) for x in m.groups()]
            return {"bytes": int(v[0]), "iterations": int(v[1]), "min_us": v[2], "max_us": v[3], "typical_us": v[4],
                    "avg_us": v[5], "stdev_us": v[6], "p99_us": v[7], "p999_us": v[8]}
    raise RuntimeError(f"could not parse ib_write_lat output:\n{out}")


def perftest_bw(size: int, iters: int, cpus: tuple) -> dict:
    out = _perftest("ib_write_bw", ["-s", str(size), "-n", str(iters)], cpus)
    for line in out.splitlines():
        m = _BW_LINE.match(line)
        if m and int(m.group(1)) == size:
            bw_avg, rate = float(m.group(4)), float(m.group(5))
            return {"size": size, "MB_per_s": bw_avg * 1.048576, "msgs_per_s": rate * 1e6}
    raise RuntimeError(f"could not parse ib_write_bw output:\n{out}")


# ------------------------------------------------------------ report --

def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=64, help="latency message size (bytes)")
    p.add_argument("--iters", type=int, default=3000, help="round trips per round")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of ours and ib_write_lat")
    p.add_argument("--seconds", type=float, default=3.0, help="rough length of each throughput run")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-idle", action="store_true", help="skip the idle-receiver CPU and wake-up measurement")
    p.add_argument("--no-raw", action="store_true", help="skip the raw pyverbs single-write reference")
    p.add_argument("--no-native", action="store_true",
                   help="skip our data path's C loop (no Python per message) and the Python loop of direct C calls")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from dataplane.transport.auto import probe_rdma

    probe = probe_rdma(DEVICE)
    if not probe.available:
        print(f"no RDMA here ({probe.reason}); run it in the soft-RoCE VM: "
              "tools/vm/run-in-vm.sh 'python -m dataplane.bench.rdma_lat'", file=sys.stderr)
        return 2
    cpus = _cpus()
    print(f"device {DEVICE}, size {args.size} B, {args.iters} round trips x {args.rounds} rounds, "
          f"server cpus {cpus[0]}, client cpus {cpus[1]}", flush=True)
    ours_ow: list[float] = []
    ours_round_p50: list[float] = []
    perf: list[dict] = []
    raw_ow: list[float] = []
    native_ow: list[float] = []
    native_round_p50: list[float] = []
    direct_ow: list[float] = []
    for r in range(args.rounds):
        rtts = ours_pingpong(args.size, args.iters, args.warmup, cpus)
        ow = [x / 2000 for x in rtts]
        ours_ow += ow
        ours_round_p50.append(statistics.median(ow))
        print(f"  round {r + 1}: ours one-way p50 {statistics.median(ow):.1f} us p99 {_pct(ow, 99):.1f} us", flush=True)
        pl = perftest_lat(args.size, args.iters, cpus)
        perf.append(pl)
        print(f"  round {r + 1}: ib_write_lat one-way typical {pl['typical_us']:.1f} us p99 {pl['p99_us']:.1f} us", flush=True)
        if not args.no_raw:
            rw = [x / 2000 for x in raw_pingpong(args.size, args.iters, cpus)]
            raw_ow += rw
            print(f"  round {r + 1}: raw pyverbs one-way p50 {statistics.median(rw):.1f} us", flush=True)
        if not args.no_native:
            nw = [x / 2000 for x in ours_pingpong(args.size, args.iters, args.warmup, cpus, loop="c")]
            native_ow += nw
            native_round_p50.append(statistics.median(nw))
            print(f"  round {r + 1}: ours, C loop one-way p50 {statistics.median(nw):.1f} us", flush=True)
            dw = [x / 2000 for x in ours_pingpong(args.size, args.iters, args.warmup, cpus, loop="direct")]
            direct_ow += dw
            print(f"  round {r + 1}: ours, Python loop of direct C calls one-way p50 {statistics.median(dw):.1f} us",
                  flush=True)
    ours = {"p50_us": statistics.median(ours_ow), "p99_us": _pct(ours_ow, 99), "p999_us": _pct(ours_ow, 99.9),
            "min_us": min(ours_ow), "rounds_p50_us": ours_round_p50}
    theirs = {"typical_us": statistics.median([p["typical_us"] for p in perf]),
              "p99_us": statistics.median([p["p99_us"] for p in perf]),
              "min_us": min(p["min_us"] for p in perf), "rounds": perf}
    # A round where ib_write_lat itself is in the millisecond "tick mode"
    # (a vCPU starved until a scheduler tick, see docs/rdma.md) measures the
    # VM, not the transports: such rounds are reported but not compared.
    valid = [i for i, p in enumerate(perf) if p["typical_us"] < TICK_MODE_US and ours_round_p50[i] < TICK_MODE_US]
    round_ratios = [ours_round_p50[i] / perf[i]["typical_us"] for i in valid]
    ratio = statistics.median(round_ratios) if round_ratios else float("nan")
    if len(valid) < len(perf):
        print(f"  note: {len(perf) - len(valid)} of {len(perf)} rounds were in tick mode (>= {TICK_MODE_US} us) and are not compared")
    raw = {"p50_us": statistics.median(raw_ow), "p99_us": _pct(raw_ow, 99), "min_us": min(raw_ow)} if raw_ow else None
    native = ({"p50_us": statistics.median(native_ow), "p99_us": _pct(native_ow, 99), "min_us": min(native_ow),
               "rounds_p50_us": native_round_p50,
               "python_direct_calls_p50_us": statistics.median(direct_ow),
               "ratio_p50": statistics.median([native_round_p50[i] / perf[i]["typical_us"] for i in valid]) if valid else None}
              if native_ow else None)
    result: dict[str, Any] = {"device": DEVICE, "size": args.size, "iters": args.iters, "rounds": args.rounds,
                              "ours_one_way": ours, "ib_write_lat_one_way": theirs, "ratio_p50": ratio,
                              "target_ratio": 1.3, "raw_pyverbs_one_way": raw, "valid_rounds": valid,
                              "round_ratios": round_ratios, "ours_c_loop_one_way": native}
    print()
    print(f"one-way latency, {args.size} B      p50 (us)   p99 (us)   min (us)")
    print(f"  dataplane rdma://         {ours['p50_us']:9.1f}  {ours['p99_us']:9.1f}  {ours['min_us']:9.1f}")
    print(f"  ib_write_lat -x 1         {theirs['typical_us']:9.1f}  {theirs['p99_us']:9.1f}  {theirs['min_us']:9.1f}")
    if raw:
        print(f"  raw pyverbs, 1 write/hop  {raw['p50_us']:9.1f}  {raw['p99_us']:9.1f}  {raw['min_us']:9.1f}")
    if native:
        print(f"  ours, C loop (no Python)  {native['p50_us']:9.1f}  {native['p99_us']:9.1f}  {native['min_us']:9.1f}"
              f"   ratio {native['ratio_p50']:.2f}x")
        print(f"  ours, Python loop, direct C calls {statistics.median(direct_ow):9.1f}"
              "   (the floor of any Python API over this path)")
    print(f"  ratio (ours / perftest)   {ratio:9.2f}x   median of per-round p50 ratios over {len(valid)} valid rounds (target <= 1.3x)")
    if not args.no_throughput:
        tput = []
        for size in (64, 1 << 20):
            o = ours_throughput(size, args.seconds, cpus)
            t = perftest_bw(size, 5000 if size == 64 else 200, cpus)
            row = {"size": size, "ours": o, "ib_write_bw": t}
            if size > 4096:
                row["ours_zero_copy"] = ours_throughput(size, args.seconds, cpus, zero_copy=True)
            tput.append(row)
        result["throughput"] = tput
        print()
        print("throughput                msgs/s        MB/s")
        for row in tput:
            o, t = row["ours"], row["ib_write_bw"]
            label = "64 B" if row["size"] == 64 else "1 MiB"
            print(f"  ours {label:6}           {o['msgs_per_s']:10.0f}  {o['MB_per_s']:10.1f}")
            if "ours_zero_copy" in row:
                z = row["ours_zero_copy"]
                print(f"  ours {label:6} reserve    {z['msgs_per_s']:10.0f}  {z['MB_per_s']:10.1f}")
            print(f"  ib_write_bw {label:6}    {t['msgs_per_s']:10.0f}  {t['MB_per_s']:10.1f}")
    if not args.no_idle:
        idle = idle_receiver()
        result["idle_receiver"] = idle
        print()
        print(f"idle receiver (no busy_poll): {100 * idle['idle_cpu_share']:.1f}% of a CPU; woken "
              f"{idle['wake_ms_p50']:.2f} ms (median) after a sender in another process starts to send "
              f"(all: {' '.join(f'{x:.2f}' for x in idle['wake_ms'])} ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dataplane.bench.rdma_lat", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
