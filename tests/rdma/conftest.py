"""RDMA tests: skipped (with the command that runs them) where no RDMA
port exists; inside the soft-RoCE VM a missing device fails every test, and
a run in which no RDMA test passed fails the session."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rdma_base import IN_VM, RUN_HINT, find_device  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_state = {"probed": False, "device": None, "why": "", "passed": 0, "collected": 0}


def _probe():
    if not _state["probed"]:
        _state["device"], _state["why"] = find_device()
        _state["probed"] = True
    return _state["device"], _state["why"]


def _ours(item) -> bool:
    return os.path.abspath(str(item.fspath)).startswith(_HERE + os.sep)


def pytest_collection_modifyitems(config, items):
    mine = [it for it in items if _ours(it)]
    _state["collected"] = len(mine)
    if not mine:
        return
    dev, why = _probe()
    for it in mine:
        it.add_marker(pytest.mark.rdma)
        if dev is None and not IN_VM:
            it.add_marker(pytest.mark.skip(reason=f"no active RDMA port here ({why}); run them with: {RUN_HINT}"))


@pytest.fixture(scope="session")
def rdma_device():
    """The RDMA device the tests use (rxe_lo in the VM)."""
    dev, why = _probe()
    if dev is None:
        if IN_VM:
            pytest.fail(f"inside the soft-RoCE VM but no usable RDMA device: {why}", pytrace=False)
        pytest.skip(f"no active RDMA port here ({why}); run them with: {RUN_HINT}")
    return dev


@pytest.fixture(autouse=True)
def _needs_rdma(request, rdma_device):
    # Every test in tests/rdma needs the device; inside the VM its absence fails them.
    yield


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and os.path.abspath(report.fspath).startswith(_HERE + os.sep):
        _state["passed"] += 1


def pytest_sessionfinish(session, exitstatus):
    if IN_VM and _state["passed"] == 0 and session.exitstatus == 0:
        # Inside the VM the whole point is to run them: zero is a failure.
        session.exitstatus = 1
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"ERROR: DATAPLANE_IN_VM=1 but no RDMA test passed ({_state['collected']} collected)", red=True)
