"""`python -m dataplane bench overload|fairness`: grammar, tables, JSON, plots."""
import json

import pytest

from dataplane.__main__ import main
from dataplane.bench.scenarios import jain, overhead


def test_overload_sim(tmp_path, capsys):
    js, png = tmp_path / "o.json", tmp_path / "o.png"
    rc = main(["bench", "overload", "--mode", "sim", "--duration", "0.3", "--servers", "2", "--loads", "2",
               "--sweep", "1", "--no-overhead", "--json", str(js), "--plot", str(png)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "goodput/s" in out and "check sim 2x admission" in out and "collapse" in out
    data = json.loads(js.read_text())
    labels = {(r["label"], r["facts"]["load"]) for r in data["results"]}
    assert labels == {("admission", 2.0), ("none", 2.0), ("admission", 1.0), ("none", 1.0)}
    assert png.stat().st_size > 10_000


def test_fairness_sim(tmp_path, capsys):
    js = tmp_path / "f.json"
    rc = main(["bench", "fairness", "--mode", "sim", "--duration", "0.25", "--servers", "4", "--no-overhead",
               "--json", str(js)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "noisy neighbour" in out and "Jain" in out and "w4 (0.5714)" in out
    data = json.loads(js.read_text())
    assert len(data["noisy"]) == 4 and len(data["weights"]) == 3 and len(data["equal"]) == 3


def test_native_flag_gives_the_same_simulated_tables(capsys):
    """``--native`` puts the DRR gateways on the C path: the simulated
    tables, deterministic, must not change by a digit."""
    args = ["bench", "fairness", "--mode", "sim", "--duration", "0.25", "--servers", "4", "--no-overhead",
            "--scenario", "noisy"]
    assert main(args) == 0
    python = capsys.readouterr().out
    assert main(args + ["--native"]) == 0
    assert capsys.readouterr().out == python and "A+B drr" in python
    # ... and the flag does reach the DRR gateways (only those).
    import argparse

    from dataplane.bench.scenarios import Tenant, add_common_arguments, make_gateway, setup_from_args
    from dataplane.clock import VirtualClock

    p = argparse.ArgumentParser()
    add_common_arguments(p, sim_duration=1, live_duration=1)
    setup = setup_from_args(p.parse_args(["--native"]))
    kinds = {k: type(make_gateway(VirtualClock(), setup, "sim", [Tenant("a")], scheduler=k).scheduler).__name__
             for k in ("drr", "wfq")}
    assert kinds == {"drr": "NativeDRR", "wfq": "WFQScheduler"}


def test_overload_live_smoke(capsys):
    rc = main(["bench", "overload", "--mode", "live", "--live-duration", "0.5", "--workers", "1",
               "--loads", "2", "--no-overhead"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "capacity measured" in out and "live  admission" in out


def test_bad_arguments():
    with pytest.raises(SystemExit):
        main(["bench", "overload", "--loads", "-1"])
    with pytest.raises(SystemExit):
        main(["bench", "fairness", "--mode", "sometimes"])


def test_overhead_microbenchmark_and_jain():
    r = overhead(n=2000, repeats=1)
    assert 0 < r["core_cpu_ns_best"] < r["gateway_cpu_ns_best"]
    assert 0 < r["native_core_cpu_ns_best"] < r["native_gateway_cpu_ns_best"]
    assert "native_core_cpu_ns_best" not in overhead(n=200, repeats=1, scheduler="wfq")  # DRR only
    assert jain([1, 1, 1, 1]) == pytest.approx(1.0) and jain([1, 0, 0, 0]) == pytest.approx(0.25)
