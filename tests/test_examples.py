"""The examples run as a user would run them, end to end (real processes,
rings, executor), and account for every message."""
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> str:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_pingpong_example():
    out = run(str(EXAMPLES / "pingpong.py"), "64", "20000")
    assert "round trip" in out


@pytest.mark.parametrize("path", [[], ["--native"]], ids=["python", "native"])
def test_inference_gateway_answers_every_request_once(path):
    out = run(str(EXAMPLES / "inference_gateway.py"), "--seconds", "1", "--batch-rate", "3000", *path)
    rows = {m.group(1): (int(m.group(2)), int(m.group(3)), m.group(4))
            for m in re.finditer(r"^(interactive|batch)\s+(\d+)\s+(\d+)\s+\d+\s+\S+\s+\S+\s+\d+\s+(.*)$", out, re.M)}
    assert set(rows) == {"interactive", "batch"}, out
    for name, (sent, ok, refused) in rows.items():
        n_refused = sum(int(x) for x in re.findall(r"\d+", refused))
        assert sent > 0 and ok + n_refused == sent, (name, out)
    # The flood is turned away far more than the light tenant (which sends
    # a fraction of what the worker serves); the reasons are ones a caller
    # can act on.
    assert rows["batch"][2] != "-" and set(re.findall(r"[a-z-]+", rows["batch"][2])) <= {"overloaded", "deadline"}
    served = {name: ok / sent for name, (sent, ok, _) in rows.items()}
    assert served["interactive"] > served["batch"], out
