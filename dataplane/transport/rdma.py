"""``rdma://HOST:PORT``: a Channel over RDMA (RoCE, soft-RoCE in tests),
through pyverbs.

Design: peers write straight into our rings
-------------------------------------------
Each end owns a receive :class:`~dataplane.ring.Ring` in shared memory and
registers its data area (``capacity`` bytes) with LOCAL_WRITE | REMOTE_WRITE
only: no remote read, and the ring's header (indices, endpoints) is not
reachable at all.  The peer RDMA-WRITEs whole records straight into the data
area; our consumer is the ring's ordinary C consumer.

The sending side keeps a *shadow* of the peer's ring: a local ring of the same
geometry whose producer is us.  ``send`` formats the record into the shadow in
C (header, payload, padding, PAD record when it would wrap, exactly what the
peer's consumer expects), then posts RDMA-WRITEs of the bytes between the old
and the new head (one range, or two when the ring wrapped) to the same offsets
of the peer's data area.  The last WRITE of each push is a WRITE_WITH_IMM
whose immediate data is the byte count.  Bursts (``send_many``) are one push.

Publishing: the receiver keeps receives posted; a WRITE_WITH_IMM completes
one of them only once its data, and every earlier WRITE's on the QP, is
placed.  The receiver's poll of its CQ then moves its own ring's head by the
immediate value, a local release store.  So a consumer never sees half a
message, whatever order the NIC places bytes in: an RDMA WRITE is not atomic
even for 8 aligned bytes (rxe copies with memcpy, byte by byte under
emulation), which is why the head is not written remotely.  A killed sender
leaves at worst bytes without a completion: invisible.

Receives are bounded: the receiver advertises how many it keeps posted
(``rq_depth``) and the sender has at most that many pushes outstanding,
retiring one when the receiver's credit passes the end of its bytes (the
receiver polled its completion, and so re-posted its receive, before the
consumer read it).  A receiver therefore never answers with RNR.

Credits: the consumer's ``tail`` flows back as an RDMA atomic add on the
shadow ring's own ``tail`` word (8 bytes the sender registered with
REMOTE_ATOMIC), every quarter ring or quarter of the receives consumed, and on
demand: a blocked sender asks over the side channel (CREDIT_REQ) every couple
of milliseconds and the receiver's side-channel thread answers.

The per-message work -- format, post, poll, publish, credit -- runs in C
(:mod:`dataplane.transport.rdma_path`, native/verbs/rdma_path.h) on the QP and
CQ pyverbs created: each Python statement costs microseconds in the emulated
VM, where pyverbs' own ``post_send`` path measured 5.7x ``ib_write_lat``.

Set-up runs over TCP (:mod:`dataplane.transport.rdma_handshake`): every field
the peer sends is validated, and before any message flows each side adds 0 to
the peer's credit word and writes zeros at both ends of its data area, so a
wrong rkey or a capacity larger than what is registered is a
:class:`HandshakeError` at connect time.  A peer that closes (CLOSE after
flushing), dies (EOF) or makes a write fail (error completion) is
:class:`PeerGone`, after what it sent has been received.  ``send`` returns
once the writes are posted; ``flush`` waits until the peer's NIC acknowledged
all of them, and ``close`` flushes first, so nothing a sender saw
acknowledged is lost while the receiver lives.

Waiting: a receive polls the CQ in C for up to 50 us, then, on a
``busy_poll`` channel, keeps polling; otherwise it sleeps 0.2 ms between
polls (remote writes wake nothing).  Latency-sensitive users set
``busy_poll=True`` (the benchmarks do).
"""
from __future__ import annotations

import logging
import os
import mmap
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import pyverbs.device as _pvd
import pyverbs.enums as _e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ, CompChannel
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.pyverbs_error import PyverbsError
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import SGE, SendWR

from dataplane._ffi import ffi, lib
from dataplane.errors import (
    DataplaneError,
    HandshakeError,
    InvalidState,
    PeerGone,
    Timeout,
    WouldBlock,
    raise_for,
)
from dataplane.ring import _NOT_STAGED, DEFAULT_CAPACITY, RecvView, Reservation, Ring, max_message_for
from dataplane.transport import rdma_handshake as hs
from dataplane.transport import rdma_path
from dataplane.transport.base import check_timeout

log = logging.getLogger("dataplane.transport.rdma")

HEAD_OFF = lib.dp_ring_layout(lib.DP_LAYOUT_HEAD_OFFSET)
TAIL_OFF = lib.dp_ring_layout(lib.DP_LAYOUT_TAIL_OFFSET)
DATA_OFF = lib.dp_ring_layout(lib.DP_LAYOUT_DATA_OFFSET)
_EAGAIN, _EMSGSIZE, _EPEERGONE, _ESTATE, _ESYS = lib.DP_EAGAIN, lib.DP_EMSGSIZE, lib.DP_EPEERGONE, lib.DP_ESTATE, lib.DP_ESYS

DEFAULT_TIMEOUT = 10.0  # connect/accept handshake
SQ_DEPTH = 512  # send queue entries
SIGNAL_EVERY = 16  # posts between signaled work requests
RQ_DEPTH = 1024  # receives kept posted (one per unread WRITE_WITH_IMM of the peer)
CQ_DEPTH = RQ_DEPTH + SQ_DEPTH + 16  # every receive and send could complete at once
INLINE_WANT = 256
# A receive polls this long in C (holding the GIL) before Python looks at
# the clock again; a busy-polling channel polls longer, so that Python's own
# statements (microseconds each in an emulated guest) rarely sit between a
# message's arrival and its receipt.
RECV_SPIN_NS = 50_000
BUSY_SPIN_NS = 1_000_000
_SPIN_S = BUSY_SPIN_NS / 1e9  # recv(timeout) shorter than this does not spin in C
IDLE_SLICE = 0.02  # an idle receiver sleeps on completion events this long at most (then checks the peer)
BLOCKED_SLEEP = 0.001  # between polls of a sender waiting for credit without busy_poll
CREDIT_RETRY = 0.002  # a blocked sender re-asks for credit this often
CLOSE_FLUSH_TIMEOUT = 2.0

_ACCESS_REMOTE = _e.IBV_ACCESS_LOCAL_WRITE | _e.IBV_ACCESS_REMOTE_WRITE
# The credit word is updated with RDMA atomics only: an RDMA WRITE's data
# placement is not atomic (rxe copies with memcpy, which under emulation goes
# byte by byte), so a written index could be read torn.
_ACCESS_INDEX = _e.IBV_ACCESS_LOCAL_WRITE | _e.IBV_ACCESS_REMOTE_ATOMIC
_QP_ACCESS = _e.IBV_ACCESS_LOCAL_WRITE | _e.IBV_ACCESS_REMOTE_WRITE | _e.IBV_ACCESS_REMOTE_ATOMIC
_WR_FAA = _e.IBV_WR_ATOMIC_FETCH_AND_ADD
_WR_WRITE = _e.IBV_WR_RDMA_WRITE
_SIGNALED = _e.IBV_SEND_SIGNALED
_WC_OK = _e.IBV_WC_SUCCESS
_PORT_ACTIVE = _e.IBV_PORT_ACTIVE


def _addr_of(m: mmap.mmap) -> int:
    p = ffi.from_buffer(m)
    try:
        return int(ffi.cast("uintptr_t", p))
    finally:
        ffi.release(p)


_WC_NAMES = {getattr(_e, n): n[len("IBV_WC_"):] for n in dir(_e)
             if n.startswith("IBV_WC_") and (n.endswith("_ERR") or n == "IBV_WC_SUCCESS")}


def _status_name(status: int) -> str:
    return f"{_WC_NAMES.get(status, 'status')} ({status})"


_vlib = rdma_path.vlib
if _vlib is not None:
    _rdma_send, _rdma_push, _rdma_poll, _rdma_recv = _vlib.dp_rdma_send, _vlib.dp_rdma_push, _vlib.dp_rdma_poll, _vlib.dp_rdma_recv
    _rdma_room, _rdma_credit, _rdma_flush = _vlib.dp_rdma_room, _vlib.dp_rdma_credit, _vlib.dp_rdma_flush
    _rdma_try_recv = _vlib.dp_rdma_try_recv
    _rdma_arm, _rdma_event_fd = _vlib.dp_rdma_arm, _vlib.dp_rdma_event_fd


# ------------------------------------------------------------- device --

class _Device:
    """An opened device, port and loopback GID, with a PD and a CQ."""

    def __init__(self, name: str | None, ib_port: int = 1, gid_index: int | None = None, allow_remote: bool = False) -> None:
        try:
            names = [d.name.decode() for d in _pvd.get_device_list()]
        except PyverbsError as e:
            raise DataplaneError(f"no RDMA devices on this host ({e}); tests run in the soft-RoCE VM: make test-rdma") from None
        if not names:
            raise DataplaneError("no RDMA devices on this host")
        if name is None:
            name = names[0]
        elif name not in names:
            raise DataplaneError(f"no RDMA device {name!r} (have: {', '.join(names)})")
        self.name = name
        self.ctx = _pvd.Context(name=name)
        try:
            pattr = self.ctx.query_port(ib_port)
            if pattr.state != _PORT_ACTIVE:
                raise DataplaneError(f"{name} port {ib_port} is not active (state {pattr.state})")
            self.port = ib_port
            self.mtu = int(pattr.active_mtu)
            self.gid_index, self.gid = self._pick_gid(pattr.gid_tbl_len, gid_index, allow_remote)
            da = self.ctx.query_device()
            self.max_rd_atom = min(int(da.max_qp_rd_atom), int(da.max_qp_init_rd_atom))
            if not da.atomic_caps:
                raise DataplaneError(f"{name} has no RDMA atomics (the transport updates ring indices with them)")
            self.pd = PD(self.ctx)
            # The channel lets an idle receiver sleep until a completion.
            self.channel = CompChannel(self.ctx)
            self.cq = CQ(self.ctx, CQ_DEPTH, None, self.channel, 0)
        except BaseException:
            self.ctx.close()
            raise

    def _pick_gid(self, n: int, wanted: int | None, allow_remote: bool) -> tuple[int, bytes]:
        candidates = [wanted] if wanted is not None else range(n)
        for idx in candidates:
            try:
                raw = hs.gid_bytes(str(self.ctx.query_gid(self.port, idx)))
            except (PyverbsError, ValueError):
                continue
            if hs.is_loopback_gid(raw) or (allow_remote and wanted is not None and raw[10:12] == b"\xff\xff"):
                return idx, raw
        where = f"GID index {wanted}" if wanted is not None else "any GID index"
        raise DataplaneError(f"{self.name} port {self.port}: no IPv4-mapped loopback GID at {where} "
                             "(rxe on lo gives ::ffff:127.0.0.1 at index 1)")

    def close(self) -> None:
        ctx, self.ctx = self.ctx, None
        if ctx is not None:
            ctx.close()  # closes the PD, CQ, QP and MRs under it


# ------------------------------------------------------------ channel --

_LAZY_OPS = ("send", "try_send", "recv", "try_recv", "recv_into", "recv_view", "send_many", "recv_many", "send_all",
             "reserve")


class RdmaChannel:
    """One end of an RDMA channel: :func:`connect` or :func:`bind` it (or
    take it from :meth:`RdmaListener.accept`).  The Channel API, plus
    :meth:`flush`.  ``tx_ring``/``rx_ring`` (the shadow and receive rings)
    are there to inspect; receive through the channel, which is what polls
    the CQ and publishes arrivals into ``rx_ring``.  Use one thread per
    direction at most (a sender and a receiver may be different threads)."""

    transport = "rdma"

    def __init__(self, url: str = "", *, busy_poll: bool = False) -> None:
        self.url = url
        self._busy = busy_poll
        self._closed = False
        self._up = False
        self._gone: str | None = None
        self._lock = threading.Lock()  # the QP, its send accounting, slots
        self._sock_lock = threading.Lock()
        self._dev: _Device | None = None
        self._maps: list[mmap.mmap] = []
        self._views: list[memoryview] = []
        self.rx_ring: Ring | None = None
        self.tx_ring: Ring | None = None
        self._dp: rdma_path.DataPath | None = None
        self._dpc: Any = None  # the dp_rdma struct the per-message calls take; None until up
        self._sock: socket.socket | None = None
        self._monitor: threading.Thread | None = None
        self._listener: RdmaListener | None = None
        self.peer_max_message = 0

    # ---------------------------------------------------------- set-up --

    def _setup(self, sock: socket.socket, initiator: bool, deadline: float | None, dev_args: dict, capacity: int,
               max_message: int | None, allow_remote: bool, max_peer_capacity: int,
               hello_hook: Callable[[hs.Hello], hs.Hello] | None = None) -> None:
        """The handshake (module doc of rdma_handshake) and every resource.
        On failure everything is released and the peer told why."""
        self._sock = sock
        self._gone = None
        try:
            self._setup_inner(sock, initiator, deadline, dev_args, capacity, max_message, allow_remote,
                              max_peer_capacity, hello_hook)
        except BaseException as e:
            if isinstance(e, (HandshakeError, DataplaneError, PyverbsError, ValueError)):
                hs.send_error(sock, f"{type(e).__name__}: {e}")
            self._release()
            if isinstance(e, PyverbsError):
                raise HandshakeError(f"RDMA set-up failed: {e}") from e
            raise
        self._up = True
        self._monitor = threading.Thread(target=self._watch, name=f"rdma-monitor-{self.url}", daemon=True)
        self._monitor.start()

    def _setup_inner(self, sock, initiator, deadline, dev_args, capacity, max_message, allow_remote,
                     max_peer_capacity, hello_hook) -> None:
        if max_message is None:
            max_message = max_message_for(capacity)
        why = rdma_path.available()
        if why:
            raise DataplaneError(why)
        dev = self._dev = _Device(allow_remote=allow_remote, **dev_args)
        # Receive ring: anonymous shared memory (page aligned), data area and
        # head word registered for remote write.
        rx_map = mmap.mmap(-1, lib.dp_ring_segment_size(capacity))
        self.rx_ring = Ring.over(rx_map, init=True, capacity=capacity, max_message=max_message)
        rx_base = self._rx_base = _addr_of(rx_map)
        self._rx_data_mr = MR(dev.pd, capacity, _ACCESS_REMOTE, address=rx_base + DATA_OFF)
        # Where atomics return the old value (never read) and probes read
        # their zeros from.
        slots = mmap.mmap(-1, 4096)
        self._maps.append(slots)
        self._slots_addr = _addr_of(slots)
        self._slots = memoryview(slots).cast("Q")
        self._views.append(self._slots)
        self._slots_mr = MR(dev.pd, len(slots), _e.IBV_ACCESS_LOCAL_WRITE, address=self._slots_addr)
        # The QP.
        self._qp, self._inline = self._make_qp(dev)
        psn = random.randrange(1 << 24)
        mine = hs.Hello(gid=dev.gid, qpn=self._qp.qp_num, psn=psn, mtu=dev.mtu, capacity=capacity,
                        max_message=max_message, data_addr=rx_base + DATA_OFF, data_len=capacity,
                        data_rkey=self._rx_data_mr.rkey, rq_depth=RQ_DEPTH)
        if hello_hook is not None:
            mine = hello_hook(mine)  # tests: a hostile peer
        # 1. HELLO both ways (connector first).
        if initiator:
            hs.send_frame(sock, hs.HELLO, mine.pack())
            peer = hs.Hello.unpack(hs.expect(sock, hs.HELLO, deadline, "handshake (HELLO)"))
        else:
            peer = hs.Hello.unpack(hs.expect(sock, hs.HELLO, deadline, "handshake (HELLO)"))
            hs.validate_hello(peer, allow_remote=allow_remote, max_capacity=max_peer_capacity)
            hs.send_frame(sock, hs.HELLO, mine.pack())
        hs.validate_hello(peer, allow_remote=allow_remote, max_capacity=max_peer_capacity)
        self.peer = peer
        self.peer_max_message = peer.max_message
        # 2. The shadow of the peer's ring, and its tail word as credit MR.
        tx_map = mmap.mmap(-1, lib.dp_ring_segment_size(peer.capacity))
        self.tx_ring = Ring.over(tx_map, init=True, capacity=peer.capacity, max_message=peer.max_message)
        tx_base = _addr_of(tx_map)
        self._tx_base = tx_base
        self._tx_data_mr = MR(dev.pd, peer.capacity, _e.IBV_ACCESS_LOCAL_WRITE, address=tx_base + DATA_OFF)
        self._credit_mr = MR(dev.pd, 8, _ACCESS_INDEX, address=tx_base + TAIL_OFF)
        hs.send_frame(sock, hs.CREDIT, hs.pack_credit(tx_base + TAIL_OFF, self._credit_mr.rkey))
        self._peer_credit_addr, self._peer_credit_rkey = hs.unpack_credit(hs.expect(sock, hs.CREDIT, deadline, "handshake (CREDIT)"))
        # 3. QP to RTS, then READY both ways.
        self._connect_qp(dev, peer, psn)
        hs.send_frame(sock, hs.READY)
        hs.expect(sock, hs.READY, deadline, "handshake (READY)")
        # 4. Probe the peer's memory with writes that change nothing, then
        # post our receives before saying so: the peer sends once it knows.
        err = self._probe(deadline)
        if err:
            hs.send_frame(sock, hs.PROBE, b"\x01" + err.encode()[:500])
            raise HandshakeError(f"the peer's memory is not writable as advertised: {err}")
        self._start_data_path()
        hs.send_frame(sock, hs.PROBE, b"\x00")
        res = hs.expect(sock, hs.PROBE, deadline, "handshake (PROBE)")
        if res[:1] != b"\x00":
            raise HandshakeError(f"the peer could not write into our ring: {res[1:].decode('utf-8', 'replace')}")
        if self._busy:
            self.rx_ring.busy_poll = True
            self.tx_ring.busy_poll = True
        sock.settimeout(None)

    def _make_qp(self, dev: _Device) -> tuple[QP, int]:
        last: Exception | None = None
        for inline in (INLINE_WANT, 64, 0):
            cap = QPCap(max_send_wr=SQ_DEPTH, max_recv_wr=RQ_DEPTH, max_send_sge=2, max_recv_sge=1,
                        max_inline_data=inline)
            try:
                qp = QP(dev.pd, QPInitAttr(qp_type=_e.IBV_QPT_RC, scq=dev.cq, rcq=dev.cq, cap=cap, sq_sig_all=0))
            except PyverbsError as e:
                last = e
                continue
            attr = QPAttr(port_num=dev.port)
            attr.qp_access_flags = _QP_ACCESS
            qp.to_init(attr)
            return qp, inline
        raise DataplaneError(f"cannot create an RC QP on {dev.name}: {last}")

    def _connect_qp(self, dev: _Device, peer: hs.Hello, psn: int) -> None:
        gid = GID()
        gid.gid = hs.gid_str(peer.gid)
        attr = QPAttr(port_num=dev.port)
        attr.path_mtu = min(dev.mtu, peer.mtu)
        attr.dest_qp_num = peer.qpn
        attr.rq_psn = peer.psn
        rd_atom = max(1, min(16, dev.max_rd_atom))
        attr.max_dest_rd_atomic = rd_atom
        attr.min_rnr_timer = 12
        attr.ah_attr = AHAttr(gr=GlobalRoute(dgid=gid, sgid_index=dev.gid_index), is_global=1, port_num=dev.port)
        self._qp.to_rtr(attr)
        attr.sq_psn = psn
        attr.timeout = 14  # 4.096 us * 2^14 = 67 ms per try
        attr.retry_cnt = 7
        attr.rnr_retry = 7
        attr.max_rd_atomic = rd_atom
        self._qp.to_rts(attr)

    def _start_data_path(self) -> None:
        """Hand the QP, CQ and both rings to the C data path and post the
        receives."""
        peer = self.peer
        qp_ptr, cq_ptr = rdma_path.verbs_pointers(self._qp, self._dev.cq)
        dp = rdma_path.DataPath(peer.rq_depth, RQ_DEPTH)
        c = dp.c
        c.qp, c.cq = rdma_path.vffi.cast("void *", qp_ptr), rdma_path.vffi.cast("void *", cq_ptr)
        c.tx_stage, c.rx_stage = self.tx_ring._txst, self.rx_ring._rxst
        c.tx_head, c.tx_tail = dp.word(self._tx_base + HEAD_OFF), dp.word(self._tx_base + TAIL_OFF)
        c.rx_head, c.rx_tail = dp.word(self._rx_base + HEAD_OFF), dp.word(self._rx_base + TAIL_OFF)
        c.tx_data, c.tx_lkey = self._tx_base + DATA_OFF, self._tx_data_mr.lkey
        c.peer_data, c.peer_rkey = peer.data_addr, peer.data_rkey
        c.peer_credit, c.peer_credit_rkey = self._peer_credit_addr, self._peer_credit_rkey
        c.slot, c.slot_lkey = self._slots_addr + 16, self._slots_mr.lkey
        c.cap, c.max_inline, c.sq_depth, c.signal_every = peer.capacity, self._inline, SQ_DEPTH, SIGNAL_EVERY
        c.credit_bytes = max(self.rx_ring.capacity // 4, 8)
        c.spin_ns = BUSY_SPIN_NS if self._busy else RECV_SPIN_NS
        rc = rdma_path.vlib.dp_rdma_start(c)
        if rc < 0:
            raise DataplaneError(f"could not post receives: {os.strerror(c.err) if c.err else rc}")
        dp.keep(self.tx_ring, self.rx_ring)
        self._dp, self._dpc = dp, c
        self._txbuf, self._txlen, self._rxbuf = self.tx_ring._txbuf, self.tx_ring._txlen, self.rx_ring._rxbuf

    def _probe(self, deadline: float | None) -> str:
        """Write the first and last word of the peer's data area (0) and add
        0 to its credit word; '' when all completed."""
        peer = self.peer
        self._slots[1] = 0
        targets = [(_WR_WRITE, peer.data_rkey, peer.data_addr),
                   (_WR_WRITE, peer.data_rkey, peer.data_addr + peer.capacity - 8),
                   (_WR_FAA, self._peer_credit_rkey, self._peer_credit_addr)]
        for op, rkey, addr in targets:
            sge = SGE(self._slots_addr + 8, 8, self._slots_mr.lkey)
            wr = SendWR(wr_id=1, opcode=op, num_sge=1, sg=[sge], send_flags=_SIGNALED)
            if op == _WR_FAA:
                wr.set_wr_atomic(rkey, addr, 0)  # adds 0: changes nothing
            else:
                wr.set_wr_rdma(rkey, addr)
            self._qp.post_send(wr)
            while True:
                n, wcs = self._dev.cq.poll(1)
                if n:
                    wc = wcs[0]
                    if wc.status != _WC_OK:
                        return f"RDMA write to {addr:#x} (rkey {rkey:#x}) failed: {_status_name(wc.status)}"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise Timeout("handshake: probe write not acknowledged in time")
                time.sleep(0)
        return ""

    # ------------------------------------------------- side-channel thread --

    def _watch(self) -> None:
        sock = self._sock
        why = "the peer closed the connection"
        try:
            while True:
                try:
                    kind, _ = hs.recv_frame(sock, None, "side channel")
                except (PeerGone, OSError) as e:
                    why = f"side channel lost: {e}"
                    break
                except (HandshakeError, DataplaneError) as e:
                    why = f"protocol violation on the side channel: {e}"
                    break
                if kind == hs.CREDIT_REQ:
                    if self._closed or self._gone:
                        continue
                    c = self._dpc
                    rc = _rdma_credit(c, 1) if c is not None else 0
                    if rc < 0 and rc not in (_EAGAIN, _ESTATE):
                        why = f"could not return credit ({rc})"
                        break
                elif kind == hs.CLOSE:
                    why = "the peer closed the channel"
                    break
                else:
                    why = f"unexpected {kind!r} frame on the side channel"
                    break
        finally:
            self._mark_gone(why)

    def _mark_gone(self, why: str) -> None:
        if self._gone is None:
            self._gone = why
        for ring in (self.rx_ring, self.tx_ring):
            if ring is not None:
                try:
                    ring.mark_peer_gone()
                except (InvalidState, AttributeError):
                    pass

    def _request_credit(self) -> None:
        if self._gone or self._sock is None:
            return
        try:
            with self._sock_lock:
                hs.send_frame(self._sock, hs.CREDIT_REQ)
        except OSError as e:
            self._mark_gone(f"side channel lost: {e}")

    # ------------------------------------------------------- data path --

    def _fail(self, rc: int, what: str) -> None:
        """Raise for a data-path return code.  An error completion or a
        failed verbs call means the connection is gone."""
        if rc in (_ESTATE, _EPEERGONE, _ESYS):
            self._note(rc)
            raise PeerGone(f"{what}: {self._gone or 'the peer is gone'}")
        raise_for(rc, what)

    def _note(self, rc: int) -> None:
        """Record a data-path error without raising (a closed channel is
        InvalidState): the rings are marked gone, so what arrived is
        drained first, then PeerGone."""
        c = self._dpc
        if rc == _ESTATE or c is None:
            self._not_connected()
        if c.wc_status:
            self._mark_gone(f"an RDMA operation failed: {_status_name(c.wc_status)}")
        elif rc == _ESYS:
            self._mark_gone(f"a verbs call failed: {os.strerror(c.err) if c.err else 'error'}")
        elif rc == _EPEERGONE:
            self._mark_gone("the peer is gone")

    def _live_dpc(self) -> Any:
        c = self._dpc
        if c is None:
            self._not_connected()
        return c

    def _not_connected(self) -> NoReturn:
        self._check_open()  # closed: says so
        raise InvalidState("channel is not connected")

    def _no_room(self, what: str) -> NoReturn:
        """A call that may not wait found no room at the peer: ask for
        credit (the peer may have read everything) and say WouldBlock."""
        self._request_credit()
        raise WouldBlock(f"{what}: no room at the peer")

    def _poll_once(self, deadline: float | None, what: str) -> None:
        """One poll of the CQ while waiting for completions; PeerGone or
        Timeout end the wait."""
        rc = _rdma_poll(self._live_dpc())
        if rc < 0:
            self._fail(rc, what)
        if self._gone:
            raise PeerGone(f"{what}: {self._gone}")
        if deadline is not None and time.monotonic() > deadline:
            raise Timeout(f"{what}: RDMA writes not acknowledged in time")
        time.sleep(0)

    def _post_pending(self) -> None:
        """Post what the shadow ring holds beyond the last push: a message
        already accepted, so this waits for send-queue room (completions
        arrive without the peer's application doing anything)."""
        c = self._live_dpc()
        while True:
            rc = _rdma_push(c)
            if rc == 0:  # nothing left unposted
                return
            if rc < 0 and rc != _EAGAIN:
                self._fail(rc, "send")
            self._poll_once(None, "send")

    def _wait_room(self, timeout: float | None, what: str) -> None:
        """Wait until a push may post (the peer has a receive for it)."""
        c = self._live_dpc()
        if _rdma_room(c):
            return
        if timeout == 0:
            self._no_room(what)
        self._blocking(self._room_within, timeout, what)

    def _room_within(self, t: float) -> None:
        end = time.monotonic() + t
        while not _rdma_room(self._live_dpc()):
            self._poll_once(None, "send")
            if time.monotonic() >= end:
                raise Timeout("no room")

    def _credit_now(self, force: bool = False) -> None:
        c = self._dpc
        if c is not None:
            rc = _rdma_credit(c, 1 if force else 0)
            if rc < 0 and rc != _EAGAIN:
                self._note(rc)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write posted so far has been acknowledged by the
        peer (the data is in its ring)."""
        check_timeout(timeout)
        c = self._dpc
        if c is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = _rdma_flush(c)
            if rc == 0:
                break
            if rc != _EAGAIN:
                self._fail(rc, "flush")
            self._poll_once(deadline, "flush")
        # What was posted up to now ends with a signaled WR; credit that
        # another thread posts meanwhile is not ours to wait for.
        target = c.wqe
        while c.done < target:
            self._poll_once(deadline, "flush")

    # ------------------------------------------------------ Channel API --

    @property
    def max_message(self) -> int:
        if not self._up:
            return 0
        return min(self.peer_max_message, self.rx_ring.max_message)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy_poll(self) -> bool:
        return self._busy

    @busy_poll.setter
    def busy_poll(self, on: bool) -> None:
        self._busy = bool(on)
        if self._up:
            self.rx_ring.busy_poll = self._busy
            self.tx_ring.busy_poll = self._busy
        if self._dpc is not None:
            self._dpc.spin_ns = BUSY_SPIN_NS if self._busy else RECV_SPIN_NS

    def peer_alive(self) -> bool | None:
        if not self._up:
            return None
        return self._gone is None

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidState("channel is closed")

    def _blocking(self, op: Callable[[float], Any], timeout: float | None, what: str) -> Any:
        """Run ``op(slice)`` until it succeeds, asking the peer for credit
        between slices."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._request_credit()
            left = CREDIT_RETRY if deadline is None else min(CREDIT_RETRY, max(0.0, deadline - time.monotonic()))
            try:
                return op(left)
            except (Timeout, WouldBlock):
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"{what}: no room at the peer within {timeout} s") from None

    def send(self, data: Any, timeout: float | None = None) -> None:
        """Send one message, waiting up to ``timeout`` for room at the peer."""
        c = self._dpc
        if c is None or (timeout is not None and not timeout >= 0):
            return self._send_general(data, timeout)
        try:
            # Formats the record into the shadow ring and posts its write,
            # in one C call (the stage fast path, as Ring.send).
            n = len(data)
            self._txbuf[:n] = data
        except _NOT_STAGED:
            return self._send_general(data, timeout)
        self._txlen[0] = n
        rc = _rdma_send(c)
        if rc:
            self._send_again(rc, timeout)

    def _send_again(self, rc: int, timeout: float | None) -> None:
        """The staged message could not go at once (rc from dp_rdma_send)."""
        if rc == 1:
            return self._post_pending()
        if rc != _EAGAIN:
            self._fail(rc, "send")
        if timeout == 0:
            self._no_room("send")
        c = self._live_dpc()
        deadline = None if timeout is None else time.monotonic() + timeout
        ask = 0.0
        while True:
            now = time.monotonic()
            if now >= ask:
                self._request_credit()
                ask = now + CREDIT_RETRY
            p = _rdma_poll(c)
            if p < 0:
                self._fail(p, "send")
            rc = _rdma_send(c)  # the stage still holds the message
            if rc == 0:
                return
            if rc == 1:
                return self._post_pending()
            if rc != _EAGAIN:
                self._fail(rc, "send")
            if self._gone:  # waiting for credit from a peer that is gone
                raise PeerGone(f"send: {self._gone}")
            if deadline is not None and now >= deadline:
                raise Timeout(f"send: no room at the peer within {timeout} s")
            time.sleep(0 if self._busy else BLOCKED_SLEEP)

    def _into_shadow(self, op: Callable[[float], Any], timeout: float | None, what: str) -> Any:
        """``op(t)``, a producer call of the shadow ring, once the peer has a
        receive for the push, waiting up to ``timeout`` for ring room."""
        check_timeout(timeout)
        self._wait_room(timeout, what)
        try:
            return op(0)
        except WouldBlock:
            if timeout == 0:
                self._no_room(what)
            return self._blocking(op, timeout, what)

    def _send_general(self, data: Any, timeout: float | None) -> None:
        """Messages the stage does not take (large, not flat bytes), and
        the argument checks."""
        ring = self.tx_ring
        self._into_shadow(lambda t: ring.send(data, t), timeout, "send")
        self._post_pending()

    def try_send(self, data: Any) -> bool:
        try:
            self.send(data, 0)
        except WouldBlock:
            return False
        return True

    def send_many(self, messages: Iterable[Any], timeout: float | None = None) -> int:
        """As many of ``messages`` as fit (waiting for the first), formatted
        in one C call and written with one push."""
        msgs = messages if isinstance(messages, (list, tuple)) else list(messages)
        if not msgs:
            return 0
        ring = self.tx_ring
        n = self._into_shadow(lambda t: ring.send_many(msgs, t), timeout, "send_many")
        self._post_pending()
        return n

    def reserve(self, nbytes: int, timeout: float | None = None) -> Reservation:
        """Zero-copy send: a writable view into the shadow ring, waiting up
        to ``timeout`` for room at the peer; ``commit`` (or leaving the
        ``with`` block) writes it to the peer in one push, ``abort`` drops it."""
        ring = self.tx_ring
        return _PushOnCommit(self, self._into_shadow(lambda t: ring.reserve(nbytes, t), timeout, "reserve"))

    def send_all(self, messages: Iterable[Any], timeout: float | None = None) -> None:
        msgs = messages if isinstance(messages, (list, tuple)) else list(messages)
        i = 0
        while i < len(msgs):
            i += self.send_many(msgs[i:], timeout)

    def recv(self, timeout: float | None = None) -> bytes:
        c = self._dpc
        if c is not None:
            # Polls the CQ and the ring in C, for up to the channel's spin
            # unless the timeout is shorter.
            if timeout is None or timeout >= _SPIN_S:
                n = _rdma_recv(c)
            else:
                check_timeout(timeout)  # a bad one is refused whatever is queued
                n = _rdma_try_recv(c)
            if n >= 0:
                return self._rxbuf[:n]
        else:
            n = _ESTATE
        return self._recv_wait(n, timeout)

    def _recv_wait(self, rc: int, timeout: float | None) -> bytes:
        check_timeout(timeout)
        if rc == _ESTATE:
            self._fail(rc, "recv")
        c = self._live_dpc()
        deadline = None if timeout is None else time.monotonic() + timeout
        while rc < 0:
            if rc != _EAGAIN:
                if rc != _EMSGSIZE:
                    self._note(rc)
                # Too big for the stage, or the peer is gone: the ring's own
                # path (it drains what arrived before PeerGone).
                ring = self.rx_ring
                if ring is None:
                    self._not_connected()
                return self._rx(ring.recv, 0)
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"recv: no message within {timeout} s")
            if not self._busy:
                self._idle_wait(deadline)
            rc = _rdma_recv(c) if deadline is None or deadline - time.monotonic() >= _SPIN_S else _rdma_try_recv(c)
        return self._rxbuf[:rc]

    def _rx(self, op: Callable[[float], Any], timeout: float | None) -> Any:
        """``op(0)``, a receive of the ring, once the CQ says a message is
        there, within ``timeout``; then credit if due."""
        c = self._live_dpc()
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rc = _rdma_poll(c)
            if rc < 0:
                self._note(rc)
            try:
                out = self._rx_once(c, op)
            except (WouldBlock, Timeout):
                pass
            else:
                self._credit_now()
                return out
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"no message within {timeout} s")
            if not self._busy:
                self._idle_wait(deadline)

    @staticmethod
    def _rx_once(c: Any, op: Callable[[float], Any]) -> Any:
        try:
            return op(0)
        except PeerGone:
            # Marked gone after our poll: what the peer had acknowledged is
            # a completion by then.  Publish it and look once more.
            _rdma_poll(c)
            return op(0)

    def _idle_wait(self, deadline: float | None) -> None:
        """Sleep until a completion arrives (or the deadline, or IDLE_SLICE,
        after which the caller looks at the ring and the peer again)."""
        c, dev = self._dpc, self._dev
        if c is None or dev is None:
            return
        fd = _rdma_event_fd(c)  # the CQ is made with a completion channel (_Device)
        if _rdma_arm(c) != 0:  # something is there already (or an error, which the caller sees)
            return
        left = IDLE_SLICE if deadline is None else min(IDLE_SLICE, max(0.0, deadline - time.monotonic()))
        p = select.poll()
        p.register(fd, select.POLLIN)
        if p.poll(left * 1e3):
            # Under the lock that close() takes: destroying a CQ waits for
            # every event read from it to be acknowledged.
            with self._lock:
                if self._dpc is None:
                    return
                try:
                    dev.channel.get_cq_event(dev.cq)
                    dev.cq.ack_events(1)
                except PyverbsError as e:
                    log.debug("completion event: %s", e)

    def try_recv(self) -> bytes | None:
        c = self._live_dpc()
        # Polls the CQ, the ring and credit in one C call, as recv does.
        rc = _rdma_try_recv(c)
        if rc >= 0:
            return self._rxbuf[:rc]
        if rc == _EAGAIN:
            return None
        if rc != _EMSGSIZE:
            self._note(rc)
        # Too big for the stage, or the peer is gone: the ring's own path.
        ring = self.rx_ring
        data = self._rx_once(c, lambda t: ring.try_recv())
        if data is not None:
            self._credit_now()
        return data

    def recv_into(self, buffer: Any, timeout: float | None = None) -> int:
        ring = self.rx_ring
        return self._rx(lambda t: ring.recv_into(buffer, t), timeout)

    def recv_view(self, timeout: float | None = None) -> RecvView:
        """The next message in place, in the receive ring; credit for it
        goes back after it is released (with a later receive)."""
        self._credit_now()
        ring = self.rx_ring
        return self._rx(lambda t: ring.recv_view(t), timeout)

    def recv_many(self, max_messages: int = 256, timeout: float | None = None, max_bytes: int = 1 << 20) -> list[bytes]:
        ring = self.rx_ring
        return self._rx(lambda t: ring.recv_many(max_messages, t, max_bytes), timeout)

    # ---------------------------------------------------------- closing --

    def close(self) -> None:
        """Flush what was sent (bounded), tell the peer, release everything.
        The peer sees PeerGone once it has received what we sent."""
        if self._closed:
            return
        if self._up and not self._gone:
            try:
                self.flush(CLOSE_FLUSH_TIMEOUT)
            except PeerGone as e:  # it closed first: the usual end of a conversation
                log.debug("%s: close: %s", self.url, e)
            except (DataplaneError, PyverbsError) as e:
                log.warning("%s: close could not confirm that the peer has everything sent: %s", self.url, e)
        self._closed = True
        sock = self._sock
        if sock is not None and self._up and not self._gone:
            try:
                with self._sock_lock:
                    sock.settimeout(0.5)
                    hs.send_frame(sock, hs.CLOSE)
            except OSError:
                pass
        self._teardown()

    def _teardown(self) -> None:
        self._closed = True
        self._release()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _release(self) -> None:
        """Free the connection's resources (the object may set up again)."""
        self._up = False
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        mon = self._monitor
        if mon is not None and mon is not threading.current_thread():
            mon.join(2.0)
        with self._lock:
            # The DataPath (and the rings and stages it points into) stays
            # with this object: a thread still holding its struct gets
            # DP_ESTATE from every call, never freed memory.
            self._dpc = None
            if self._dp is not None:
                self._dp.stop()  # before the QP and CQ go
            if self._dev is not None:
                self._dev.close()  # deregisters every MR before the memory goes
                self._dev = None
        for v in self._views:
            try:
                v.release()
            except (BufferError, ValueError):
                pass
        self._views.clear()
        for ring in (self.rx_ring, self.tx_ring):
            if ring is not None:
                ring.close()
        self.rx_ring = self.tx_ring = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass
        self._maps.clear()
        self._monitor = None

    def __enter__(self) -> RdmaChannel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self._teardown()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._up else "waiting for its peer")
        return f"<RdmaChannel {self.url} {state}>"


class _PushOnCommit(Reservation):
    """A reservation in an RDMA channel's shadow ring: committing it also
    writes it to the peer."""

    __slots__ = ("_channel",)

    def __init__(self, channel: RdmaChannel, res: Reservation) -> None:
        super().__init__(res._ring, res.view)
        self._channel = channel

    def commit(self, nbytes: int | None = None) -> None:
        super().commit(nbytes)
        self._channel._post_pending()


# ---------------------------------------------------------- listening --

class RdmaListener:
    """Accepts RDMA channels on a TCP side channel bound to ``host:port``
    (port 0: a free port, see :attr:`port`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, device: str | None = None, *,
                 capacity: int = DEFAULT_CAPACITY, max_message: int | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 busy_poll: bool = False, ib_port: int = 1, gid_index: int | None = None, allow_remote: bool = False,
                 max_peer_capacity: int = hs.DEFAULT_MAX_PEER_CAPACITY, backlog: int = 16) -> None:
        _check_geometry(capacity, max_message)
        check_timeout(timeout)
        self.device = device
        self._opts = dict(capacity=capacity, max_message=max_message, busy_poll=busy_poll,
                          dev_args=dict(name=device, ib_port=ib_port, gid_index=gid_index),
                          allow_remote=allow_remote, max_peer_capacity=max_peer_capacity)
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(backlog)
        except BaseException:
            self._sock.close()
            raise
        self.host = host
        self.port = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        q = f"?device={self.device}" if self.device else ""
        return f"rdma://{h}:{self.port}{q}"

    def accept(self, timeout: float | None = None, *, hello_hook: Callable[[hs.Hello], hs.Hello] | None = None) -> RdmaChannel:
        """The next peer's channel.  Timeout if none connects in ``timeout``;
        HandshakeError if the one that does is not a valid peer (the listener
        stays usable)."""
        check_timeout(timeout)
        conn = self._accept_raw(timeout)
        ch = RdmaChannel(self.url, busy_poll=self._opts["busy_poll"])
        self._handshake(conn, ch, hello_hook)
        return ch

    def _handshake(self, conn: socket.socket, ch: RdmaChannel, hello_hook=None) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        o = self._opts
        ch._setup(conn, False, deadline, o["dev_args"], o["capacity"], o["max_message"], o["allow_remote"],
                  o["max_peer_capacity"], hello_hook)

    def _accept_raw(self, timeout: float | None) -> socket.socket:
        if self._sock is None:
            raise InvalidState("listener is closed")
        self._sock.settimeout(timeout)
        try:
            conn, _ = self._sock.accept()
        except socket.timeout:
            raise Timeout(f"no RDMA peer connected to {self.url} within {timeout} s") from None
        return conn

    def close(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            s.close()

    def __enter__(self) -> RdmaListener:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_geometry(capacity: int, max_message: int | None) -> None:
    if not isinstance(capacity, int) or capacity < hs.MIN_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two >= {hs.MIN_CAPACITY}, not {capacity!r}")
    if max_message is not None and not 0 < max_message <= max_message_for(capacity):
        raise ValueError(f"max_message must be in 1..{max_message_for(capacity)} for capacity {capacity}")


def _coerce(opts: dict[str, Any]) -> dict[str, Any]:
    """URL options arrive as strings."""
    from dataplane.transport.url import pop_bool, pop_float, pop_int, reject_unknown

    out: dict[str, Any] = {}
    o = dict(opts)
    for k in ("capacity", "max_message", "ib_port", "gid_index", "max_peer_capacity"):
        if k in o:
            out[k] = pop_int(o, k, None)
    if "timeout" in o:
        out["timeout"] = pop_float(o, "timeout", DEFAULT_TIMEOUT)
    for k in ("busy_poll", "allow_remote"):
        if k in o:
            out[k] = pop_bool(o, k, False)
    for k in ("hello_hook",):
        if k in o:
            out[k] = o.pop(k)
    reject_unknown(o, "rdma://")
    return out


def listen(host: str = "127.0.0.1", port: int = 0, device: str | None = None, **opts: Any) -> RdmaListener:
    """An :class:`RdmaListener` (options as for :func:`bind`)."""
    o = _coerce(opts)
    o.pop("hello_hook", None)
    return RdmaListener(host, port, device, **o)


class _BoundChannel(RdmaChannel):
    """``bind``: a channel whose peer is accepted on first use; hostile or
    broken connection attempts are dropped (logged) until a valid peer
    arrives or the operation's timeout expires."""

    def __init__(self, listener: RdmaListener) -> None:
        super().__init__(listener.url, busy_poll=listener._opts["busy_poll"])
        self._listener = listener
        for name in _LAZY_OPS:
            setattr(self, name, self._lazy(name))

    def _lazy(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            # A method fetched before the peer arrived (ch.send saved early)
            # stays this wrapper: once connected it goes straight through.
            if self._up or self._closed:
                return getattr(RdmaChannel, name)(self, *args, **kw)
            if name in ("try_send", "try_recv"):
                wait: float | None = 0.0
            else:
                wait = kw.get("timeout", _positional_timeout(name, args))
            if not self._accept(wait):
                return False if name == "try_send" else None
            return getattr(RdmaChannel, name)(self, *args, **kw)

        return call

    def _accept(self, timeout: float | None) -> bool:
        check_timeout(timeout)
        listener = self._listener
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(1e-6, deadline - time.monotonic())
            try:
                conn = listener._accept_raw(left)
            except Timeout:
                if timeout == 0:
                    return False
                raise
            try:
                listener._handshake(conn, self)
            except (HandshakeError, PeerGone, OSError) as e:
                log.warning("%s: dropped a connection attempt: %s", self.url, e)
                continue
            except Timeout as e:
                log.warning("%s: dropped a silent connection attempt: %s", self.url, e)
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            break
        for name in _LAZY_OPS:
            self.__dict__.pop(name, None)
        return True

    def close(self) -> None:
        super().close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _positional_timeout(name: str, args: tuple) -> float | None:
    idx = {"send": 1, "recv": 0, "recv_into": 1, "recv_view": 0, "send_many": 1, "recv_many": 1, "send_all": 1,
           "reserve": 1}[name]
    return args[idx] if len(args) > idx else None


def bind(host: str = "127.0.0.1", port: int = 0, device: str | None = None, **opts: Any) -> RdmaChannel:
    """The listening end of one channel: binds ``host:port`` now and accepts
    its peer on first use.  Options: capacity, max_message, timeout
    (handshake), busy_poll, ib_port, gid_index, allow_remote,
    max_peer_capacity."""
    o = _coerce(opts)
    o.pop("hello_hook", None)
    return _BoundChannel(RdmaListener(host, port, device, **o))


def connect(host: str, port: int, device: str | None = None, **opts: Any) -> RdmaChannel:
    """Connect to an RDMA listener, waiting up to ``timeout`` (default 10 s)
    for it to exist and complete the handshake."""
    o = _coerce(opts)
    timeout = o.pop("timeout", DEFAULT_TIMEOUT)
    hook = o.pop("hello_hook", None)
    capacity = o.pop("capacity", DEFAULT_CAPACITY)
    max_message = o.pop("max_message", None)
    busy = o.pop("busy_poll", False)
    allow_remote = o.pop("allow_remote", False)
    max_peer = o.pop("max_peer_capacity", hs.DEFAULT_MAX_PEER_CAPACITY)
    dev_args = dict(name=device, ib_port=o.pop("ib_port", 1), gid_index=o.pop("gid_index", None))
    _check_geometry(capacity, max_message)
    check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    url = f"rdma://{host}:{port}" + (f"?device={device}" if device else "")
    delay = 0.005
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise Timeout(f"no RDMA listener answered at {host}:{port} within {timeout} s")
        try:
            sock = socket.create_connection((host, port), timeout=left)
            break
        except ConnectionRefusedError:
            time.sleep(min(delay, left) if left is not None else delay)
            delay = min(delay * 2, 0.1)
        except socket.timeout:
            raise Timeout(f"no RDMA listener answered at {host}:{port} within {timeout} s") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ch = RdmaChannel(url, busy_poll=busy)
    ch._setup(sock, True, deadline, dev_args, capacity, max_message, allow_remote, max_peer, hook)
    return ch


__all__ = ["RdmaChannel", "RdmaListener", "bind", "connect", "listen"]
