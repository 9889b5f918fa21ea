"""Closed forms for M/M/1, M/M/N (Erlang C) and the M/G/1 mean.

Rates are per µs when times are in µs; any consistent unit works.
"""
from __future__ import annotations

import math

from dataplane.sim.errors import SimConfigError


def _check(servers: int, lam: float, mu: float) -> None:
    if servers < 1 or not (lam > 0 and mu > 0) or not math.isfinite(lam + mu):
        raise SimConfigError(f"need servers >= 1 and finite rates > 0 (servers={servers}, lam={lam}, mu={mu})")
    if lam >= servers * mu:
        raise SimConfigError(f"unstable queue: lam={lam} >= servers*mu={servers * mu}; no stationary sojourn time")


def mm1_sojourn_quantile(p: float, lam: float, mu: float) -> float:
    """p-quantile of the M/M/1 sojourn time, which is Exp(mu - lam)."""
    _check(1, lam, mu)
    if not 0.0 <= p < 1.0:
        raise SimConfigError(f"quantile p must be in [0, 1), got {p}")
    return -math.log1p(-p) / (mu - lam)


def mm1_mean_sojourn(lam: float, mu: float) -> float:
    """Mean M/M/1 sojourn, 1/(mu - lam)."""
    _check(1, lam, mu)
    return 1.0 / (mu - lam)


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/N, ``offered`` = lam/mu Erlangs.

    Via the Erlang B recursion, which neither overflows nor cancels for large N.
    """
    if not 0 < offered < servers:
        raise SimConfigError(f"need 0 < offered load < servers, got {offered} Erlangs on {servers} servers")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    return servers * b / (servers - offered * (1.0 - b))


def mmn_sojourn_survival(t: float, servers: int, lam: float, mu: float) -> float:
    """P(T > t) for the M/M/N FCFS sojourn T = W + S: W is 0 with
    probability 1 - C, else Exp(theta) with theta = N mu - lam; S is Exp(mu)."""
    _check(servers, lam, mu)
    if t <= 0:
        return 1.0
    c = erlang_c(servers, lam / mu)
    theta = servers * mu - lam
    delta = theta - mu
    if abs(delta) * t <= 1.0:
        # Exp(theta)+Exp(mu) written so that theta -> mu (Erlang-2) does not cancel
        x = delta * t
        g = -math.expm1(-x) / x if x != 0 else 1.0
        hypo = math.exp(-mu * t) * (1.0 + mu * t * g)
    else:
        hypo = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / delta
    return (1.0 - c) * math.exp(-mu * t) + c * hypo


def mmn_sojourn_quantile(p: float, servers: int, lam: float, mu: float) -> float:
    """p-quantile of the M/M/N sojourn, by bisection on its survival function."""
    _check(servers, lam, mu)
    if not 0.0 <= p < 1.0:
        raise SimConfigError(f"quantile p must be in [0, 1), got {p}")
    target = 1.0 - p
    lo, hi = 0.0, 1.0 / mu + 1.0 / (servers * mu - lam)
    while mmn_sojourn_survival(hi, servers, lam, mu) > target:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mmn_sojourn_survival(mid, servers, lam, mu) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


def mmn_mean_sojourn(servers: int, lam: float, mu: float) -> float:
    """Mean M/M/N sojourn, C/(N mu - lam) + 1/mu."""
    _check(servers, lam, mu)
    return erlang_c(servers, lam / mu) / (servers * mu - lam) + 1.0 / mu


def mg1_mean_sojourn(lam: float, mean: float, second_moment: float) -> float:
    """Pollaczek-Khinchine: mean M/G/1 FCFS sojourn, lam E[S^2] / (2(1 - rho)) + E[S]."""
    _check(1, lam, 1.0 / mean)
    return lam * second_moment / (2.0 * (1.0 - lam * mean)) + mean


def mmn_sojourn_us(cores: int, load: float, mean_us: float, p: float) -> float:
    """Convenience: M/M/N sojourn p-quantile in µs at per-core ``load``."""
    mu = 1.0 / mean_us
    return mmn_sojourn_quantile(p, cores, load * cores * mu, mu)
