"""Hypothesis: for any small workload, each policy serves every request exactly
once, never before it arrives, one at a time per core, charging exactly its
service (+ the steal cost when stolen), and follows its own rules."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.sim import DISTRIBUTIONS, POLICIES, SimConfig, Trace, Workload, simulate_trace

EPS = 1e-9


def tol(w: Workload) -> float:
    return EPS * max(1.0, float(w.arrival_us[-1]))


def check_common(cfg: SimConfig, w: Workload, tr: Trace) -> None:
    n, atol = len(w), tol(w)
    assert tr.done_us.shape == tr.start_us.shape == tr.core.shape == (n,)
    assert np.all(np.isfinite(tr.done_us)), "a request never completed"
    assert np.all((tr.core >= 0) & (tr.core < cfg.cores))
    assert np.all(tr.start_us >= w.arrival_us - atol), "served before it arrived"
    assert np.all(tr.done_us - w.arrival_us >= w.service_us - atol), "sojourn shorter than service"
    # each request costs exactly its service, plus the steal cost when stolen
    charged = w.service_us + cfg.steal_cost_us * tr.stolen
    np.testing.assert_allclose(tr.done_us - tr.start_us, charged, atol=atol)
    # one request at a time per core: the work a core did fits its busy intervals
    for c in range(cfg.cores):
        mine = np.flatnonzero(tr.core == c)
        order = mine[np.argsort(tr.start_us[mine], kind="stable")]
        assert np.all(tr.start_us[order][1:] >= tr.done_us[order][:-1] - atol), f"core {c} overlaps"
    total_busy = float(np.sum(tr.done_us - tr.start_us))
    assert abs(total_busy - float(np.sum(charged))) <= atol * n


def check_work_conserving(cfg: SimConfig, w: Workload, tr: Trace) -> None:
    """No core idles while a request waits: busy == min(cores, in system)
    after all events at each instant."""
    times = np.concatenate([w.arrival_us, tr.start_us, tr.done_us])
    d_sys = np.concatenate([np.ones(len(w)), np.zeros(len(w)), -np.ones(len(w))])
    d_busy = np.concatenate([np.zeros(len(w)), np.ones(len(w)), -np.ones(len(w))])
    order = np.argsort(times, kind="stable")
    times, d_sys, d_busy = times[order], d_sys[order], d_busy[order]
    last = np.r_[times[1:] != times[:-1], True]  # the last event at each instant
    in_sys, busy = np.cumsum(d_sys)[last], np.cumsum(d_busy)[last]
    assert np.all(busy == np.minimum(cfg.cores, in_sys))


def check_partitioned(cfg: SimConfig, w: Workload, tr: Trace) -> None:
    assert np.array_equal(tr.core, w.home) and not tr.stolen.any()
    # reference: Lindley's recursion, one core at a time, in plain Python
    free = [0.0] * cfg.cores
    for i in range(len(w)):
        c = int(w.home[i])
        s = max(float(w.arrival_us[i]), free[c])
        free[c] = s + float(w.service_us[i])
        assert abs(tr.start_us[i] - s) <= tol(w)


def check_fcfs(starts: np.ndarray) -> None:
    """Requests (given in arrival order) start in arrival order."""
    assert np.all(np.diff(starts) >= 0)


def check_stealing(cfg: SimConfig, w: Workload, tr: Trace) -> None:
    check_work_conserving(cfg, w, tr)
    assert np.array_equal(tr.stolen, tr.core != w.home), "served off its home core iff stolen"
    waited = tr.start_us > w.arrival_us
    for c in range(cfg.cores):
        # both the owner and thieves take the head of a queue: each queue is FIFO
        check_fcfs(tr.start_us[waited & (w.home == c)])
    for j in np.flatnonzero(waited & tr.stolen):
        t, c = tr.start_us[j], tr.core[j]
        queued_at_t = (w.arrival_us <= t) & (tr.start_us > t)
        assert not np.any(queued_at_t & (w.home == c)), "stole while its own queue was not empty"
        assert not np.any(queued_at_t & (w.arrival_us < w.arrival_us[j])), "did not steal the oldest request"


def check_jbsq(cfg: SimConfig, w: Workload, tr: Trace) -> None:
    assert not tr.stolen.any()
    for c in range(cfg.cores):
        check_fcfs(tr.start_us[tr.core == c])  # the central queue and each core queue are FIFO
    if cfg.jbsq_depth == 1:
        check_fcfs(tr.start_us)
        check_work_conserving(cfg, w, tr)


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    cores=st.integers(1, 6),
    load=st.floats(0.05, 2.5),
    service=st.sampled_from(list(DISTRIBUTIONS)),
    requests=st.integers(1, 150),
    seed=st.integers(0, 2**32 - 1),
    steal_cost=st.sampled_from([0.0, 0.3, 5.0]),
    depth=st.integers(1, 3),
)
def test_policy_invariants(policy, cores, load, service, requests, seed, steal_cost, depth) -> None:
    cfg = SimConfig(policy, cores, load, service, 10.0, requests, seed, steal_cost, depth)
    w, tr = simulate_trace(cfg)
    check_common(cfg, w, tr)
    if policy == "partitioned":
        check_partitioned(cfg, w, tr)
    elif policy == "central":
        assert not tr.stolen.any()
        check_fcfs(tr.start_us)
        check_work_conserving(cfg, w, tr)
    elif policy == "stealing":
        check_stealing(cfg, w, tr)
    else:
        check_jbsq(cfg, w, tr)
