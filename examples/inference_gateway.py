"""An inference gateway in one file: a client process sends requests of two
tenants over a shared-memory channel; the gateway admits them against their
deadlines, orders them with DRR, and runs them on executor workers (a NumPy
model); every request gets exactly one answer: the model's output, or why it
was turned away.

    python examples/inference_gateway.py                  # ~3 s
    python examples/inference_gateway.py --batch-rate 10000 --seconds 5

"interactive" (weight 3, 20 ms SLO) sends at a steady rate; "batch" (weight
1, 200 ms SLO) floods at several times what the worker can serve.  The
table shows interactive keeping its latency while batch absorbs the
rejections, and that nothing is lost.
"""
from __future__ import annotations

import argparse
import os
import random
import struct
import time
import uuid

import numpy as np

import dataplane
from dataplane.clock import MonotonicClock
from dataplane.control import Gateway, Reason, Rejected, Request
from dataplane.executor import Executor

DIM = 128
LAYERS = 48
REQ = struct.Struct("<IBd")       # request id, tenant, client send time
REP = struct.Struct("<IBdBi")     # ... then status (0 ok, else a Reason code) and the model's answer
TENANTS = {0: ("interactive", 3.0, 0.020), 1: ("batch", 1.0, 0.200)}
REASONS = list(Reason)
_W = np.random.default_rng(0).standard_normal((DIM, DIM)).astype(np.float32) / np.sqrt(DIM)


def model(request: memoryview) -> bytes:
    """Runs in the executor's workers: a small MLP over the request's vector."""
    x = np.frombuffer(request, dtype=np.float32, offset=REQ.size, count=DIM)
    for _ in range(LAYERS):
        x = np.tanh(_W @ x)
    rid, tenant, t = REQ.unpack_from(request)
    return REP.pack(rid, tenant, t, 0, int(x.argmax()))


def refusal(msg: bytes, reason: Reason) -> bytes:
    rid, tenant, t = REQ.unpack_from(msg)
    return REP.pack(rid, tenant, t, 1 + REASONS.index(reason), -1)


def serve(url: str, expected: int, native: bool = False) -> None:
    """The gateway: channel in, control plane, executor, channel out."""
    with dataplane.bind(url, busy_poll=False) as ch, Executor(model, workers=1, policy="partitioned",
                                                             max_request=REQ.size + 4 * DIM) as ex:
        answered = 0

        def dropped(req: Request, reason: Reason) -> None:  # shed at dequeue: still answered
            nonlocal answered
            ch.send(refusal(req.payload, reason))
            answered += 1

        gw = Gateway(1, clock=MonotonicClock(), scheduler="drr", on_drop=dropped, native=native)
        for tenant, (_, weight, slo) in TENANTS.items():
            gw.add_tenant(tenant, weight, slo=slo)
        running: dict[int, tuple[Request, float]] = {}
        perf = time.perf_counter
        while answered < expected:
            busy = False
            while (msg := ch.try_recv()) is not None:
                busy = True
                req = Request(msg[4], payload=msg)
                try:
                    gw.submit(req)
                except Rejected as e:
                    ch.send(refusal(msg, e.reason))
                    answered += 1
            while (req := gw.dispatch()) is not None:
                running[ex.submit(req.payload, worker=req.worker)] = (req, perf())
            for res in ex.poll():
                busy = True
                req, t0 = running.pop(res.id)
                gw.complete(req, perf() - t0, ok=res.ok)
                ch.send(res.value if res.ok else refusal(req.payload, Reason.OVERLOADED))
                answered += 1
            if not busy:
                ex.wait(0.0002)  # a worker's answer, or time to look at the channel again


def make_schedule(seconds: float, rates: dict[int, float], seed: int) -> list[tuple[float, int]]:
    """(send time, tenant) of every request: Poisson arrivals per tenant."""
    rng = random.Random(seed)
    return sorted((t, tenant) for tenant, rate in rates.items() for t in _poisson(rng, rate, seconds))


def client(url: str, schedule: list[tuple[float, int]], seed: int) -> dict:
    """Sends on ``schedule`` (open loop) and collects every answer."""
    vec = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32).tobytes()
    stats = {tenant: {"sent": 0, "ok": 0, "late": 0, "refused": {}, "lat": []} for tenant in TENANTS}
    seen: set[int] = set()
    ch = dataplane.connect(url, timeout=10)
    perf = time.perf_counter
    start = perf() + 0.05

    def take(msg: bytes) -> None:
        rid, tenant, t, status, _ = REP.unpack(msg)
        assert rid not in seen, f"request {rid} answered twice"
        seen.add(rid)
        s = stats[tenant]
        if status == 0:
            lat = perf() - t
            s["ok"] += 1
            s["lat"].append(lat)
            s["late"] += lat > TENANTS[tenant][2]
        else:
            why = REASONS[status - 1].value
            s["refused"][why] = s["refused"].get(why, 0) + 1

    with ch:
        for rid, (t, tenant) in enumerate(schedule):
            while perf() < start + t:
                if (msg := ch.try_recv()) is not None:
                    take(msg)
            ch.send(REQ.pack(rid, tenant, start + t) + vec)  # latency counts from the scheduled time
            stats[tenant]["sent"] += 1
        while len(seen) < len(schedule):
            take(ch.recv(timeout=30))
    return stats


def _poisson(rng: random.Random, rate: float, seconds: float) -> list[float]:
    out, t = [], rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def report(stats: dict) -> None:
    print(f"{'tenant':<12}{'sent':>7}{'ok':>7}{'late':>6}{'p50 ms':>9}{'p99 ms':>9}{'SLO ms':>8}  refused")
    for tenant, s in stats.items():
        name, _, slo = TENANTS[tenant]
        lat = np.array(s["lat"]) * 1e3
        p50, p99 = (np.percentile(lat, [50, 99]) if len(lat) else (float("nan"),) * 2)
        refused = ", ".join(f"{k} {v}" for k, v in sorted(s["refused"].items())) or "-"
        print(f"{name:<12}{s['sent']:>7}{s['ok']:>7}{s['late']:>6}{p50:>9.2f}{p99:>9.2f}{slo * 1e3:>8.0f}  {refused}")
        assert s["sent"] == s["ok"] + sum(s["refused"].values()), "every request gets exactly one answer"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--interactive-rate", type=float, default=300.0, help="requests/s")
    p.add_argument("--batch-rate", type=float, default=6000.0, help="requests/s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--native", action="store_true", help="admission and DRR on the C data path")
    args = p.parse_args()
    url = f"shm://gw-demo-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    schedule = make_schedule(args.seconds, {0: args.interactive_rate, 1: args.batch_rate}, args.seed)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            report(client(url, schedule, args.seed))
            code = 0
        finally:
            os._exit(code)
    try:
        serve(url, len(schedule), args.native)
    finally:
        _, status = os.waitpid(pid, 0)
    raise SystemExit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
