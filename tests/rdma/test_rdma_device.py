"""The soft-RoCE device itself, through pyverbs: what the transport relies on."""
from __future__ import annotations

import ctypes
import mmap
import time

import pytest

pv = pytest.importorskip("pyverbs.device", reason="pyverbs missing: run tools/venv-pyverbs.sh")

import pyverbs.enums as e  # noqa: E402
from pyverbs.addr import AHAttr, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.mr import MR  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.pyverbs_error import PyverbsRDMAError  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr  # noqa: E402
from pyverbs.wr import SGE, SendWR  # noqa: E402


@pytest.fixture
def ctx(rdma_device):
    c = pv.Context(name=rdma_device.name)
    yield c
    c.close()


def _addr(m: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


def test_port_active_with_loopback_gid(ctx, rdma_device):
    assert ctx.query_port(rdma_device.port).state == e.IBV_PORT_ACTIVE
    assert str(ctx.query_gid(rdma_device.port, rdma_device.gid_index)) == "0000:0000:0000:0000:0000:ffff:7f00:0001"


def test_mr_on_mmap_memory_write_only(ctx):
    pd = PD(ctx)
    m = mmap.mmap(-1, 1 << 20)
    mr = MR(pd, len(m), e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE, address=_addr(m))
    assert mr.length == len(m) and mr.rkey
    mr.close()
    pd.close()


def _rc_qp(pd, cq):
    cap = QPCap(max_send_wr=16, max_recv_wr=1, max_send_sge=1, max_recv_sge=1)
    qp = QP(pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq, cap=cap, sq_sig_all=0))
    attr = QPAttr(port_num=1)
    attr.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE
    qp.to_init(attr)
    return qp


def _connect(qp, remote_qpn, gid, dev):
    attr = QPAttr(port_num=dev.port)
    attr.path_mtu = e.IBV_MTU_1024
    attr.dest_qp_num = remote_qpn
    attr.rq_psn = 0
    attr.max_dest_rd_atomic = 1
    attr.min_rnr_timer = 12
    attr.ah_attr = AHAttr(gr=GlobalRoute(dgid=gid, sgid_index=dev.gid_index), is_global=1, port_num=dev.port)
    qp.to_rtr(attr)
    attr.sq_psn = 0
    attr.timeout = 14
    attr.retry_cnt = 7
    attr.rnr_retry = 7
    attr.max_rd_atomic = 1
    qp.to_rts(attr)


def _wait(cq, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n, wcs = cq.poll(1)
        if n:
            return wcs[0]
    raise AssertionError("no completion")


def test_rc_rdma_write_on_loopback(ctx, rdma_device):
    """Two RC QPs on rxe_lo: an RDMA WRITE lands in the other's mmap'd MR;
    a write with a wrong rkey fails with a remote access error."""
    pd, cq = PD(ctx), CQ(ctx, 16)
    dst = mmap.mmap(-1, 4096)
    src = mmap.mmap(-1, 4096)
    dst_mr = MR(pd, 4096, e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE, address=_addr(dst))
    src_mr = MR(pd, 4096, e.IBV_ACCESS_LOCAL_WRITE, address=_addr(src))
    a, b = _rc_qp(pd, cq), _rc_qp(pd, cq)
    gid = ctx.query_gid(rdma_device.port, rdma_device.gid_index)
    _connect(a, b.qp_num, gid, rdma_device)
    _connect(b, a.qp_num, gid, rdma_device)
    src[0:11] = b"hello, rxe!"
    wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(_addr(src), 11, src_mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
    wr.set_wr_rdma(dst_mr.rkey, _addr(dst) + 100)
    a.post_send(wr)
    wc = _wait(cq)
    assert wc.status == e.IBV_WC_SUCCESS
    assert dst[100:111] == b"hello, rxe!"
    bad = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(_addr(src), 11, src_mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
    bad.set_wr_rdma(dst_mr.rkey ^ 0x5A5A00, _addr(dst))
    a.post_send(bad)
    wc = _wait(cq)
    assert wc.status == e.IBV_WC_REM_ACCESS_ERR
    # The QP is in the error state now: what is posted next is flushed (or refused).
    try:
        a.post_send(wr)
    except PyverbsRDMAError:
        return
    assert _wait(cq).status != e.IBV_WC_SUCCESS
