"""``auto://HOST:PORT``: RDMA when this host has an active RDMA port and the
RDMA transport can be loaded, ZeroMQ over TCP otherwise.

Detection must be cheap and must never take the process down, so it reads
sysfs first (no library loaded, a few small files) and only then asks
pyverbs to confirm; any failure on the way means "no RDMA".
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

log = logging.getLogger("dataplane.transport")

SYSFS = "/sys/class/infiniband"
_IBV_PORT_ACTIVE = 4


@dataclass(frozen=True)
class RdmaProbe:
    """What :func:`probe_rdma` found."""

    available: bool
    #: the device with an active port, when available
    device: str | None
    port: int | None
    #: why RDMA is or is not used, for the log line
    reason: str


def _sysfs_active_ports(root: str) -> list[tuple[str, int]]:
    found = []
    for dev in sorted(os.listdir(root)):
        ports = os.path.join(root, dev, "ports")
        try:
            names = sorted(os.listdir(ports), key=lambda p: int(p) if p.isdigit() else 0)
        except OSError:
            continue
        for port in names:
            try:
                with open(os.path.join(ports, port, "state")) as f:
                    state = f.read()  # e.g. "4: ACTIVE"
            except OSError:
                continue
            if state.split(":", 1)[0].strip() == str(_IBV_PORT_ACTIVE) and port.isdigit():
                found.append((dev, int(port)))
    return found


def _pyverbs_active_ports(wanted: str | None) -> list[tuple[str, int]]:
    import pyverbs.device as d  # only reached when the module exists

    found = []
    for dev in d.get_device_list():
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        if wanted and name != wanted:
            continue
        ctx = d.Context(name=name)
        try:
            for port in range(1, ctx.query_device().phys_port_cnt + 1):
                if ctx.query_port(port).state == _IBV_PORT_ACTIVE:
                    found.append((name, port))
        finally:
            ctx.close()
    return found


def probe_rdma(device: str | None = None, sysfs: str = SYSFS) -> RdmaProbe:
    """Is there an active RDMA port (on ``device``, if given) that the RDMA
    transport could use?  Never raises."""
    try:
        if os.path.isdir(sysfs):
            ports = [p for p in _sysfs_active_ports(sysfs) if device is None or p[0] == device]
            if not ports:
                where = f"device {device}" if device else sysfs
                return RdmaProbe(False, None, None, f"no active RDMA port on {where}")
        elif not os.path.exists("/dev/infiniband"):
            return RdmaProbe(False, None, None, f"no RDMA devices ({sysfs} missing)")
        if importlib.util.find_spec("pyverbs") is None:
            return RdmaProbe(False, None, None, "pyverbs is not installed")
        if importlib.util.find_spec("dataplane.transport.rdma") is None:
            return RdmaProbe(False, None, None, "the RDMA transport is not installed")
        ports = _pyverbs_active_ports(device)
        if not ports:
            return RdmaProbe(False, None, None, "pyverbs found no active port")
        dev, port = ports[0]
        return RdmaProbe(True, dev, port, f"active RDMA port {dev}:{port}")
    except Exception as e:  # any failure at all means: use ZeroMQ
        return RdmaProbe(False, None, None, f"RDMA probe failed: {type(e).__name__}: {e}")
