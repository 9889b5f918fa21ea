"""The closed forms themselves, checked against known values and each other."""
from __future__ import annotations

import math

import pytest

from dataplane.sim import theory


def test_erlang_c_known_values() -> None:
    assert theory.erlang_c(1, 0.7) == pytest.approx(0.7)           # M/M/1: P(wait) = ρ
    assert theory.erlang_c(2, 1.0) == pytest.approx(1 / 3)          # textbook
    # direct formula for N = 16, a = 12
    n, a = 16, 12.0
    top = a**n / math.factorial(n) * n / (n - a)
    direct = top / (sum(a**k / math.factorial(k) for k in range(n)) + top)
    assert theory.erlang_c(n, a) == pytest.approx(direct, rel=1e-12)
    assert 0 < theory.erlang_c(1000, 990.0) < 1                      # no overflow at large N


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("load", [0.1, 0.5, 0.9, 0.99])
def test_mmn_with_one_server_is_mm1(p: float, load: float) -> None:
    assert theory.mmn_sojourn_quantile(p, 1, load, 1.0) == pytest.approx(theory.mm1_sojourn_quantile(p, load, 1.0), rel=1e-9)
    assert theory.mmn_mean_sojourn(1, load, 1.0) == pytest.approx(theory.mm1_mean_sojourn(load, 1.0), rel=1e-12)


@pytest.mark.parametrize("servers, lam", [(4, 2.0), (16, 14.4), (16, 15.0), (4, 3.0)])
def test_quantile_inverts_survival_and_survival_integrates_to_mean(servers: int, lam: float) -> None:
    mu = 1.0
    for p in (0.5, 0.99, 0.999):
        t = theory.mmn_sojourn_quantile(p, servers, lam, mu)
        assert theory.mmn_sojourn_survival(t, servers, lam, mu) == pytest.approx(1 - p, rel=1e-9)
    # E[T] = ∫ P(T > t) dt, by the trapezoid rule; this also covers theta == mu (N=16, λ=15)
    step, total, t = 1e-3, 0.0, 0.0
    prev = 1.0
    while prev > 1e-12:
        t += step
        cur = theory.mmn_sojourn_survival(t, servers, lam, mu)
        total += 0.5 * (prev + cur) * step
        prev = cur
    assert total == pytest.approx(theory.mmn_mean_sojourn(servers, lam, mu), rel=1e-5)


def test_survival_is_monotone_near_theta_equal_mu() -> None:
    # theta = N mu - lam crosses mu at lam = 15: the branch switch must be seamless
    for lam in (14.999999, 15.0, 15.000001):
        prev = 1.0
        for k in range(1, 400):
            cur = theory.mmn_sojourn_survival(k * 0.05, 16, lam, 1.0)
            assert cur <= prev
            prev = cur
