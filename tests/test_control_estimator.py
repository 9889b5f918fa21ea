"""Service-time estimates: prior, mean tracking, upper quantile, per class."""
import random

import pytest

from dataplane.control import InvalidRequest, ServiceEstimator


def test_prior_until_measured_then_tracks_the_mean():
    est = ServiceEstimator(1e-3, 4e-3, alpha=0.05, window=512, warmup=32)
    assert est.mean("x") == 1e-3 and est.upper("x") == 4e-3
    est.observe("x", 5e-3)
    assert est.mean("x") == 5e-3  # the first measurement replaces the prior
    rng = random.Random(3)
    for _ in range(3000):
        est.observe("x", rng.expovariate(1 / 2e-3))
    assert est.mean("x") == pytest.approx(2e-3, rel=0.3)
    # p99 of an exponential is 4.6 means.
    assert est.upper("x") == pytest.approx(4.6 * 2e-3, rel=0.35)
    assert est.mean("y") == 1e-3  # classes are separate


def test_adapts_when_service_changes():
    est = ServiceEstimator(1e-3)
    for _ in range(1000):
        est.observe("k", 1e-3)
    for _ in range(300):
        est.observe("k", 7e-3)
    assert est.mean("k") > 6e-3 and est.upper("k") >= 7e-3


def test_ignores_garbage_and_rejects_bad_settings():
    est = ServiceEstimator(1e-3)
    est.observe("k", float("nan"))
    est.observe("k", -1.0)
    assert est.get("k").count == 0
    for kw in ({"alpha": 0}, {"quantile": 1.0}, {"window": 2}, {"prior_mean": 0}):
        with pytest.raises(InvalidRequest):
            ServiceEstimator(**kw)
