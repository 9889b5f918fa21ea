"""`python -m dataplane bench pingpong` runs end to end (real processes,
real rings, real pyzmq) and writes every row it prints; no timing asserted."""
import json
import subprocess
import sys


def test_pingpong_quick_writes_every_peer(tmp_path):
    out = tmp_path / "pp.json"
    r = subprocess.run([sys.executable, "-m", "dataplane", "bench", "pingpong", "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert set(d["results"]) == {"cacheline", "ring-native", "ring", "ring-futex", "zmq", "pipe"}
    for key, row in d["results"].items():
        assert row["count"] > 0 and 0 < row["p50_us"] <= row["p99_us"] <= row["p999_us"], key
    assert 0 <= d["idle_consumer"]["cpu_fraction"] < 1
    assert "ring from Python (busy-poll)" in r.stdout


def test_pingpong_rejects_bad_arguments():
    r = subprocess.run([sys.executable, "-m", "dataplane", "bench", "pingpong", "--transport", "carrier-pigeon"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr
