"""The RDMA data path's pointer checks, on the host (no RDMA device needed):
whatever address it is given, a check reads it with process_vm_readv and
refuses what is not a live QP/CQ pair, never crashing; pyverbs objects
without a live verbs object are refused by layout before that."""
from __future__ import annotations

import ctypes

import pytest

from dataplane.errors import DataplaneError

rdma_path = pytest.importorskip("dataplane.transport.rdma_path")
if rdma_path.available():
    pytest.skip(rdma_path.available(), allow_module_level=True)
check = rdma_path.vlib.dp_rdma_check


def test_check_refuses_any_address_that_is_not_a_qp_and_cq():
    junk = ctypes.create_string_buffer(4096)  # mapped, readable, not a QP
    addr = ctypes.addressof(junk)
    for qp, cq in [(0, 0), (8, 16), (addr, addr), (addr + 4, addr), (1 << 47, addr), ((1 << 64) - 8, addr)]:
        assert check(qp, cq, 0, 0) != 0


@pytest.mark.parametrize("readable_context", [True, False])
def test_check_reads_the_fields_it_names(readable_context):
    # A forged pair whose fields match: accepted when its context is
    # readable memory with provider functions set (the check is a guard
    # against a wrong pointer, not against forgery), refused when the
    # context pointer leads nowhere readable.
    qp = ctypes.create_string_buffer(rdma_path.vlib.dp_rdma_abi(0))
    cq = ctypes.create_string_buffer(rdma_path.vlib.dp_rdma_abi(1))
    fake_ctx = ctypes.create_string_buffer(b"\x01" * 4096)
    qpa, cqa = ctypes.addressof(qp), ctypes.addressof(cq)
    ctx = ctypes.addressof(fake_ctx) if readable_context else 0x10
    ctypes.c_uint64.from_address(qpa).value = ctx           # qp->context
    ctypes.c_uint64.from_address(qpa + 24).value = cqa      # qp->send_cq
    ctypes.c_uint64.from_address(qpa + 32).value = cqa      # qp->recv_cq
    ctypes.c_uint32.from_address(qpa + 52).value = 7        # qp->qp_num
    ctypes.c_uint32.from_address(qpa + 60).value = 2        # qp->qp_type = IBV_QPT_RC
    ctypes.c_uint64.from_address(cqa).value = ctx           # cq->context
    ctypes.c_int32.from_address(cqa + 28).value = 5         # cq->cqe
    assert (check(qpa, cqa, 7, 5) == 0) is readable_context
    assert check(qpa, cqa, 8, 5) != 0


def test_pyverbs_objects_without_a_verbs_object_are_refused():
    qp_mod = pytest.importorskip("pyverbs.qp", reason="pyverbs missing: make system-deps")
    cq_mod = pytest.importorskip("pyverbs.cq")
    blank_qp = qp_mod.QP.__new__(qp_mod.QP)
    blank_cq = cq_mod.CQ.__new__(cq_mod.CQ)
    with pytest.raises(DataplaneError, match="no live verbs object"):
        rdma_path.verbs_pointers(blank_qp, blank_cq)
    with pytest.raises(DataplaneError, match="layout"):
        rdma_path.verbs_pointers(object(), blank_cq)
