"""The RDMA transport's side channel: a TCP connection that carries the
connection set-up (GID, QPN, PSN, MTU, ring geometry, addresses and rkeys)
and, afterwards, the rare control messages (credit requests, close).

Every frame is ``type (1 byte) | length (u32 LE) | payload``.  Everything a
peer sends is validated before use; anything malformed, out of range or
unexpected raises :class:`~dataplane.errors.HandshakeError`, silence past the
deadline raises :class:`~dataplane.errors.Timeout`.

Set-up, both sides running the same steps (the connector speaks first where
order matters)::

    HELLO   (H)  our QP and receive ring: gid qpn psn mtu capacity max_message
                 data_addr data_len data_rkey rq_depth (receives we keep
                 posted: the most WRITE_WITH_IMMs the peer may have unread)
    CREDIT  (K)  where the peer writes its consumer index for the ring we
                 write to (our shadow producer's tail): addr rkey
    READY   (R)  our QP is in RTS
    PROBE   (P)  status, text: we added 0 to the peer's credit word (an RDMA
                 atomic) and wrote zeros at both ends of its data area,
                 and all of it completed (a wrong rkey, missing atomic access or
                 a capacity larger than what is registered fails here, before
                 any message flows)

Afterwards: CREDIT_REQ (Q, empty: "I am blocked, send me your consumer
index"), CLOSE (C, empty: "I flushed everything I sent and am going"),
ERROR (E, text) at any time.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, fields

from dataplane.errors import HandshakeError, PeerGone, Timeout

MAGIC = b"DPRDMA\x00\x01"
VERSION = 2  # 2: messages announced by WRITE_WITH_IMM, no remote head word

HELLO, CREDIT, READY, PROBE, CREDIT_REQ, CLOSE, ERROR = b"H", b"K", b"R", b"P", b"Q", b"C", b"E"
_KNOWN = {HELLO, CREDIT, READY, PROBE, CREDIT_REQ, CLOSE, ERROR}
_FRAME = struct.Struct("<cI")
MAX_FRAME = 4096

# Limits on what a peer may ask of us (we allocate a shadow of its ring).
MIN_CAPACITY = 64
DEFAULT_MAX_PEER_CAPACITY = 1 << 30
_ALIGN = 8
_RECORD_OVERHEAD = 8
MAX_RQ_DEPTH = 1 << 16  # we keep one word per outstanding WRITE_WITH_IMM of the peer's


@dataclass(frozen=True)
class Hello:
    gid: bytes  # 16 bytes
    qpn: int
    psn: int
    mtu: int  # enum ibv_mtu, 1..5
    capacity: int
    max_message: int
    data_addr: int
    data_len: int
    data_rkey: int
    rq_depth: int

    _S = struct.Struct("<8sHH16sIIIQQQQII")

    def pack(self) -> bytes:
        return self._S.pack(MAGIC, VERSION, 0, self.gid, self.qpn, self.psn, self.mtu, self.capacity,
                            self.max_message, self.data_addr, self.data_len, self.data_rkey,
                            self.rq_depth)

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        if len(payload) != cls._S.size:
            raise HandshakeError(f"HELLO of {len(payload)} bytes, expected {cls._S.size}")
        magic, version, flags, *rest = cls._S.unpack(payload)
        if magic != MAGIC:
            raise HandshakeError(f"bad magic {magic!r}: not a dataplane RDMA peer")
        if version != VERSION:
            raise HandshakeError(f"peer speaks version {version}, we speak {VERSION}")
        if flags != 0:
            raise HandshakeError(f"unknown HELLO flags {flags:#x}")
        return cls(*rest)

    def replace(self, **kw) -> Hello:
        vals = {f.name: getattr(self, f.name) for f in fields(self)}
        vals.update(kw)
        return Hello(**vals)


_CREDIT = struct.Struct("<QI")


def pack_credit(addr: int, rkey: int) -> bytes:
    return _CREDIT.pack(addr, rkey)


def unpack_credit(payload: bytes) -> tuple[int, int]:
    if len(payload) != _CREDIT.size:
        raise HandshakeError(f"CREDIT of {len(payload)} bytes, expected {_CREDIT.size}")
    addr, rkey = _CREDIT.unpack(payload)
    if addr == 0 or addr % _ALIGN:
        raise HandshakeError(f"credit address {addr:#x} is null or misaligned")
    return addr, rkey


def gid_bytes(gid_str: str) -> bytes:
    """pyverbs' "0000:0000:...:7f00:0001" -> 16 bytes."""
    raw = bytes.fromhex(gid_str.replace(":", ""))
    if len(raw) != 16:
        raise ValueError(f"bad GID {gid_str!r}")
    return raw


def gid_str(raw: bytes) -> str:
    h = raw.hex()
    return ":".join(h[i : i + 4] for i in range(0, 32, 4))


def is_loopback_gid(raw: bytes) -> bool:
    """::ffff:127.x.y.z (RoCEv2 GID of an IPv4 loopback address)."""
    return raw[:10] == b"\0" * 10 and raw[10:12] == b"\xff\xff" and raw[12] == 127


def validate_hello(h: Hello, *, allow_remote: bool = False, max_capacity: int = DEFAULT_MAX_PEER_CAPACITY) -> None:
    """Raise HandshakeError unless everything in ``h`` is usable and sane."""
    if len(h.gid) != 16:
        raise HandshakeError("GID is not 16 bytes")
    if h.gid[:10] != b"\0" * 10 or h.gid[10:12] != b"\xff\xff":
        raise HandshakeError(f"GID {gid_str(h.gid)} is not an IPv4-mapped (RoCEv2) address")
    if not allow_remote and not is_loopback_gid(h.gid):
        raise HandshakeError(f"GID {gid_str(h.gid)} is not a loopback address (allow_remote is off)")
    if not 0 < h.qpn < (1 << 24):
        raise HandshakeError(f"QP number {h.qpn} out of range")
    if not 0 <= h.psn < (1 << 24):
        raise HandshakeError(f"PSN {h.psn} out of range")
    if not 1 <= h.mtu <= 5:
        raise HandshakeError(f"MTU enum {h.mtu} out of range")
    cap = h.capacity
    if cap < MIN_CAPACITY or cap & (cap - 1):
        raise HandshakeError(f"capacity {cap} is not a power of two >= {MIN_CAPACITY}")
    if cap > max_capacity:
        raise HandshakeError(f"capacity {cap} exceeds the {max_capacity} bytes we accept")
    if not 0 < h.max_message <= cap // 2 - _RECORD_OVERHEAD:
        raise HandshakeError(f"max_message {h.max_message} impossible for capacity {cap}")
    if h.data_len != cap:
        what = "larger than" if cap > h.data_len else "different from"
        raise HandshakeError(f"capacity {cap} is {what} the {h.data_len} bytes registered for it")
    if h.data_addr == 0 or h.data_addr % _ALIGN:
        raise HandshakeError(f"data_addr {h.data_addr:#x} is null or misaligned")
    if not 0 < h.rq_depth <= MAX_RQ_DEPTH or h.rq_depth & (h.rq_depth - 1):
        raise HandshakeError(f"rq_depth {h.rq_depth} is not a power of two in 1..{MAX_RQ_DEPTH}")
    if h.data_addr + h.data_len > 1 << 64:
        raise HandshakeError("data area wraps the address space")


# ---------------------------------------------------------------- frames --

def send_frame(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    if len(payload) > MAX_FRAME:
        raise ValueError("frame too large")
    sock.sendall(_FRAME.pack(kind, len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"{what}: the peer did not answer in time")
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            raise Timeout(f"{what}: the peer did not answer in time") from None
        except OSError as e:
            raise PeerGone(f"{what}: connection lost ({e})") from None
        if not chunk:
            raise PeerGone(f"{what}: the peer closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, deadline: float | None, what: str = "handshake") -> tuple[bytes, bytes]:
    """One frame: (kind, payload).  Unknown kinds and oversized lengths are
    HandshakeError; silence past ``deadline`` Timeout; EOF PeerGone."""
    kind, n = _FRAME.unpack(_recv_exact(sock, _FRAME.size, deadline, what))
    if kind not in _KNOWN:
        raise HandshakeError(f"{what}: unknown frame type {kind!r} (garbage from the peer?)")
    if n > MAX_FRAME:
        raise HandshakeError(f"{what}: frame of {n} bytes exceeds {MAX_FRAME}")
    payload = _recv_exact(sock, n, deadline, what) if n else b""
    if kind == ERROR:
        text = payload.decode("utf-8", "replace")[:500]
        raise HandshakeError(f"{what}: the peer refused: {text}")
    return kind, payload


def expect(sock: socket.socket, kind: bytes, deadline: float | None, what: str) -> bytes:
    """The next frame, which must be of ``kind``; during the handshake an
    EOF is a HandshakeError too (a half-finished set-up is not a peer)."""
    try:
        got, payload = recv_frame(sock, deadline, what)
    except PeerGone as e:
        raise HandshakeError(str(e)) from None
    if got != kind:
        raise HandshakeError(f"{what}: expected frame {kind!r}, got {got!r}")
    return payload


def send_error(sock: socket.socket, text: str) -> None:
    """Best effort: tell the peer why we give up."""
    try:
        sock.settimeout(0.5)
        send_frame(sock, ERROR, text.encode("utf-8", "replace")[:1000])
    except OSError:
        pass


__all__ = [
    "Hello", "validate_hello", "send_frame", "recv_frame", "expect", "send_error", "pack_credit", "unpack_credit",
    "gid_bytes", "gid_str", "is_loopback_gid", "HELLO", "CREDIT", "READY", "PROBE", "CREDIT_REQ", "CLOSE", "ERROR",
]
