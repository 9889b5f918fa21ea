"""``python -m dataplane sim``, run as a user would, in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataplane", "sim", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_run_json_as_documented() -> None:
    p = sim("--policy", "stealing", "--cores", "16", "--load", "0.8", "--service", "bimodal-99",
            "--mean-us", "10", "--requests", "20000", "--seed", "3", "--steal-cost-us", "0.5", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("p50_us", "p99_us", "p999_us", "throughput_rps", "unstable", "mean_us", "completed"):
        assert key in out
    assert out["policy"] == "stealing" and out["cores"] == 16 and out["steal_cost_us"] == 0.5
    assert out["unstable"] is False and out["completed"] == 20000
    assert 0 < out["p50_us"] <= out["p99_us"] <= out["p999_us"]


def test_run_mode_matches_no_mode() -> None:
    args = ("--policy", "jbsq", "--jbsq-depth", "3", "--cores", "4", "--load", "0.6", "--requests", "5000", "--json")
    a, b = sim(*args), sim("run", *args)
    assert a.returncode == b.returncode == 0
    strip = lambda s: {k: v for k, v in json.loads(s).items() if k != "elapsed_s"}  # noqa: E731
    assert strip(a.stdout) == strip(b.stdout)
    assert json.loads(a.stdout)["jbsq_depth"] == 3


def test_overload_runs_and_is_flagged() -> None:
    p = sim("--policy", "central", "--cores", "2", "--load", "2", "--requests", "5000", "--json")
    assert p.returncode == 0
    assert json.loads(p.stdout)["unstable"] is True
    assert "unstable" in p.stderr
    text = sim("--policy", "central", "--cores", "2", "--load", "2", "--requests", "5000")
    assert text.returncode == 0 and "UNSTABLE" in text.stdout


@pytest.mark.parametrize("args, message", [
    (["--load", "0"], "load must be > 0"),
    (["--load", "nan"], "load must be finite"),
    (["--load", "-1"], "load must be > 0"),
    (["--cores", "0"], "cores must be >= 1"),
    (["--requests", "0"], "requests must be >= 1"),
    (["--service", "pareto"], "invalid choice: 'pareto'"),
    (["--policy", "lifo"], "invalid choice: 'lifo'"),
    (["--steal-cost-us", "-1"], "steal_cost_us must be >= 0"),
    (["--jbsq-depth", "0"], "jbsq_depth must be >= 1"),
    (["--mean-us", "0"], "mean service time"),
    (["--cores", "two"], "invalid int value: 'two'"),
    (["sweep", "--loads", "0.9:0.1:0.1"], "STOP >= START"),
    (["sweep", "--policies", "central", "fifo"], "unknown policy 'fifo'"),
    (["sweep", "--policies", "stealing:-1"], "steal_cost_us must be >= 0"),
    (["sweep", "--cores", "0"], "cores must be >= 1"),
    (["sweep", "--loads", "0,0.5"], "every load must be finite and > 0"),
])
def test_bad_arguments_exit_2_with_message(args: list[str], message: str) -> None:
    p = sim(*args, "--requests", "100") if args[0] != "--requests" else sim(*args)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_sweep_plot_and_json(tmp_path: Path) -> None:
    png, js = tmp_path / "p99.png", tmp_path / "sweep.json"
    p = sim("sweep", "--cores", "4", "--service", "bimodal-90", "--mean-us", "10", "--loads", "0.2:0.9:0.35",
            "--policies", "partitioned", "central", "stealing:0.5", "jbsq:2", "--requests", "20000",
            "--refine", "0.1", "--plot", str(png), "--json", str(js))
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["slo_us"] == 100.0
    assert set(data["curves"]) == {"partitioned", "central", "stealing(cost=0.5us)", "jbsq(2)"}
    for label, curve in data["curves"].items():
        loads = [pt["load"] for pt in curve["points"]]
        assert loads == sorted(loads) and {0.2, 0.55, 0.9} <= set(loads)
        best = data["max_load_meeting_slo"][label]
        ok = [pt["load"] for pt in curve["points"] if pt["p99_us"] <= 100.0]
        assert best == (max(ok) if ok else None)
        assert f"{label}" in p.stdout
    # the table printed matches the JSON
    assert "max load meeting SLO" in p.stdout


def test_sweep_json_to_stdout_is_pure_json() -> None:
    p = sim("sweep", "--cores", "2", "--loads", "0.5", "--policies", "central", "--requests", "2000", "--json", "-")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["curves"]["central"]["points"][0]["load"] == 0.5
