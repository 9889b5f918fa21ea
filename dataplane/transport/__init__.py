"""One Channel API over shared memory, RDMA and ZeroMQ.

    ch = dataplane.transport.bind("shm://jobs")          # or tcp://, ipc://, rdma://, auto://
    peer = dataplane.transport.connect("shm://jobs")     # in another process
    peer.send(b"request"); ch.recv(timeout=1.0)

==========================  ==============================================
``shm://NAME``              two shared-memory rings (same host)
``rdma://HOST:PORT``        RDMA (``?device=rxe_lo`` picks the device)
``tcp://HOST:PORT``         ZeroMQ over TCP
``ipc://PATH``              ZeroMQ over a Unix socket
``auto://HOST:PORT``        RDMA if an active RDMA port exists, else tcp://
==========================  ==============================================

Options come as ``?key=value`` in the URL or as keyword arguments (which
win); unknown options are a ValueError.  See docs/transports.md.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

from dataplane.errors import DataplaneError
from dataplane.transport.base import BufferView, Channel, MessageView, ProtocolError
from dataplane.transport.url import Endpoint, parse

log = logging.getLogger("dataplane.transport")

__all__ = ["Channel", "MessageView", "BufferView", "ProtocolError", "Endpoint", "bind", "connect", "parse", "resolve"]


def _rdma() -> Any:
    try:
        return importlib.import_module("dataplane.transport.rdma")
    except ImportError as e:
        raise DataplaneError(f"the RDMA transport is unavailable here ({e}); it needs pyverbs and an RDMA device") from e


def resolve(url: str | Endpoint) -> Endpoint:
    """Parse ``url`` and turn ``auto://`` into ``rdma://`` or ``tcp://``,
    logging which was picked and why."""
    ep = url if isinstance(url, Endpoint) else parse(url)
    if ep.scheme != "auto":
        return ep
    from dataplane.transport.auto import probe_rdma

    probe = probe_rdma(ep.options.get("device"))
    if probe.available:
        opts = dict(ep.options)
        opts.setdefault("device", probe.device or "")
        chosen = Endpoint("rdma", host=ep.host, port=ep.port, options=opts)
    else:
        # ZeroMQ has no device option.
        chosen = Endpoint("tcp", host=ep.host, port=ep.port, options={k: v for k, v in ep.options.items() if k != "device"})
    log.info("%s: using %s (%s)", ep, chosen.scheme if chosen.scheme == "rdma" else "zmq", probe.reason)
    return chosen


def _open(url: str | Endpoint, side: str, options: dict[str, Any]) -> Channel:
    requested = url if isinstance(url, Endpoint) else parse(url)
    ep = resolve(requested)
    if ep.scheme == "shm":
        from dataplane.transport import shm

        ch = getattr(shm, side)(ep, options)
    elif ep.scheme in ("tcp", "ipc"):
        from dataplane.transport import zmq_channel

        ch = getattr(zmq_channel, side)(ep, options)
    else:  # rdma
        opts = {**ep.options, **options}
        device = opts.pop("device", None) or None
        ch = getattr(_rdma(), side)(ep.host, ep.port, device, **opts)
    if requested.scheme == "auto":
        try:
            ch.requested_url = str(requested)
        except AttributeError:
            pass  # a slotted RDMA channel: .transport still says what was picked
    return ch


def bind(url: str | Endpoint, **options: Any) -> Channel:
    """The listening/owning end of a channel.  ``shm://`` creates the rings
    (and removes them on close); ``tcp://``/``ipc://`` bind a socket (port 0:
    a free port, see ``.url``); returns without waiting for a peer."""
    return _open(url, "bind", options)


def connect(url: str | Endpoint, **options: Any) -> Channel:
    """The connecting end: waits up to ``timeout`` seconds (option, default
    10) for the bound end to exist and, over ZeroMQ, to answer the
    handshake."""
    return _open(url, "connect", options)
