"""Shared helpers of the RDMA tests, in the spirit of rdma-core's own pyverbs
test base: find a device with an active port, or explain why the tests
cannot run here.

The tests need a real RDMA port.  Developers and CI get one from the
soft-RoCE VM: ``make test-rdma`` boots it (``tools/vm/run-in-vm.sh``), adds
``rxe_lo`` on the loopback interface and runs ``pytest tests/rdma`` inside.
Outside that VM, with no device, the tests skip and say so; inside it
(``DATAPLANE_IN_VM=1``) a missing device is a failure, never a skip.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

RUN_HINT = "make test-rdma  (tools/vm/run-in-vm.sh '.venv/bin/python -m pytest tests/rdma')"
DEVICE = os.environ.get("DATAPLANE_RDMA_DEVICE", "rxe_lo")
LOOPBACK_GID = "0000:0000:0000:0000:0000:ffff:7f00:0001"  # ::ffff:127.0.0.1
IN_VM = os.environ.get("DATAPLANE_IN_VM") == "1"
_PORT_ACTIVE = 4


@dataclass(frozen=True)
class RdmaDevice:
    name: str
    port: int
    gid_index: int
    gid: str


def find_device(name: str = DEVICE) -> tuple[RdmaDevice | None, str]:
    """(device, "") when ``name`` has an active port with the IPv4-mapped
    loopback GID, else (None, why not)."""
    try:
        import pyverbs.device as d
        from pyverbs.pyverbs_error import PyverbsError
    except ImportError as e:
        return None, f"pyverbs is not importable ({e}); run tools/venv-pyverbs.sh"
    try:
        names = [dev.name.decode() for dev in d.get_device_list()]
    except PyverbsError as e:
        return None, f"no RDMA devices ({e})"
    if name not in names:
        return None, f"no RDMA device {name!r} (found: {', '.join(names) or 'none'})"
    ctx = d.Context(name=name)
    try:
        nports = ctx.query_device().phys_port_cnt
        for port in range(1, nports + 1):
            if ctx.query_port(port).state != _PORT_ACTIVE:
                continue
            for idx in range(ctx.query_port(port).gid_tbl_len):
                try:
                    gid = str(ctx.query_gid(port, idx))
                except PyverbsError:
                    continue
                if gid == LOOPBACK_GID:
                    return RdmaDevice(name, port, idx, gid), ""
            return None, f"{name} port {port} is active but has no ::ffff:127.0.0.1 GID"
        return None, f"{name} has no active port"
    finally:
        ctx.close()


def require_reason() -> str:
    """Why the RDMA tests cannot run here ("" when they can)."""
    dev, why = find_device()
    return "" if dev else why
