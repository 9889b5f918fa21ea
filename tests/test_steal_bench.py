"""``python -m dataplane bench steal`` end to end, kept tiny: it runs, every
request is accounted for, and the figures it writes hang together."""
import json
import math

import numpy as np

from dataplane.__main__ import main
from dataplane.bench import steal as bench


def test_bench_steal_smoke(tmp_path, capsys):
    out = tmp_path / "steal.json"
    png = tmp_path / "steal.png"
    rc = main(["bench", "steal", "--policies", "partitioned,steal", "--loads", "0.3", "--duration", "0.15",
               "--repeat", "1", "--micro", "300", "--priority", "none", "--json", str(out), "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "steal cost" in text and "live/sim" in text
    data = json.loads(out.read_text())
    assert png.stat().st_size > 1000
    assert {"push_us", "steal_extra_us", "respond_us"} <= set(data["micro"])
    ov = data["overheads"]
    assert ov["submit_us"] > 0 and ov["worker_gap_us"] > 0 and ov["steal_cost_us"] >= 0
    points = {p["policy"]: p for p in data["points"]}
    assert set(points) == {"partitioned", "steal"}
    for p in points.values():
        run = p["runs"][0]
        assert run["failed"] == 0
        assert run["measured"] == run["requests"] - int(run["requests"] * 0.05)  # every request answered
        assert p["p50_us"] <= p["p99_us"] <= run["p999_us"] <= run["e2e_p999_us"] * 1.001 + 1
        assert p["sim_p99_us"] > 0 and math.isfinite(p["error"])
        assert p["ideal_p99_us"] <= p["sim_p99_us"] + 1e-6  # overheads only add
    assert points["partitioned"]["stolen"] == 0


def test_workload_matches_the_policies_placement():
    from dataplane.executor.placement import flow_hash

    wl = bench.make_workload("steal", 0.5, 2, 100.0, "bimodal-90", 0.2, seed=3)
    assert len(wl.arrival_s) == int(0.5 * 2 / 100e-6 * 0.2)
    assert np.all(np.diff(wl.arrival_s) > 0)
    assert set(np.unique(wl.service_us).round(6)) == {50.0, 550.0}
    assert all(h == flow_hash(int(f)) % 2 for f, h in zip(wl.flow[:200], wl.home[:200]))
    central = bench.make_workload("central", 0.5, 2, 100.0, "exponential", 0.2, seed=3)
    assert not central.home.any()


def test_spin_handler_spins_for_the_asked_time():
    req = bench.REQ.pack(7, 300_000)  # 300 µs
    i, t0, t1, pid = bench.RESP.unpack(bench.spin_handler(memoryview(req)))
    assert i == 7 and 300e-6 <= t1 - t0 < 0.05
