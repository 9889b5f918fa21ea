"""The ZeroMQ wire format from the outside: plain pyzmq sockets that know only
docs/wire-format.md talk to the channel, and hostile or broken peers get a
clear exception, never a hang or a silent loss.

The constants below are typed in from the document on purpose, not
imported from the implementation."""
import re
import secrets
import socket
import struct
import threading
import time

import pytest
import zmq

from dataplane import HandshakeError, PeerGone, Timeout
from dataplane.transport import ProtocolError, bind, connect

H = struct.Struct("<2sBBI")
BODY = struct.Struct("<IIQ")
DATA, LARGE, BATCH, HELLO, WELCOME, REJECT, BYE = 0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13


def frame(kind, payload=b"", version=1, magic=b"DP", length=None):
    return H.pack(magic, version, kind, len(payload) if length is None else length) + payload


def batch(msgs):
    return frame(BATCH, struct.pack(f"<I{len(msgs)}I", len(msgs), *map(len, msgs)) + b"".join(msgs))


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    _keep.clear()
    c.destroy(linger=0)


@pytest.fixture
def server():
    ch = bind("tcp://127.0.0.1:0", max_message=1 << 20)
    yield ch
    ch.close(linger=0)


def raw_client(ctx, url, max_message=1 << 20):
    """A DEALER that does the handshake by the document."""
    s = ctx.socket(zmq.DEALER)
    s.rcvtimeo = 5000
    s.connect(url)
    nonce = secrets.randbits(64)
    s.send(frame(HELLO, BODY.pack(max_message, 0, nonce)))
    return s, nonce


def accept(server, raw, nonce):
    server.accept(timeout=5)
    reply = raw.recv()
    magic, version, kind, n = H.unpack_from(reply)
    assert (magic, version, kind, n) == (b"DP", 1, WELCOME, 16)
    peer_max, flags, echoed = BODY.unpack_from(reply, 8)
    assert echoed == nonce and flags == 0 and peer_max == 1 << 20


# ---------------------------------------------------- a document-only peer --

def test_document_only_client_talks_to_the_channel(ctx, server):
    raw, nonce = raw_client(ctx, server.url)
    accept(server, raw, nonce)
    big = bytes(range(256)) * 1024  # 256 KiB
    raw.send(frame(DATA, b"a small message"))
    raw.send_multipart([H.pack(b"DP", 1, LARGE, len(big)), big], copy=False)
    raw.send(batch([b"one", b"two", b""]))
    raw.send(frame(DATA, b""))
    raw.send(frame(BYE))
    assert server.recv(timeout=5) == b"a small message"
    with server.recv_view(timeout=5) as v:
        assert v == big
    assert server.recv_many(3, timeout=5) == [b"one", b"two", b""]
    assert server.recv(timeout=5) == b""
    with pytest.raises(PeerGone, match="closed"):
        server.recv(timeout=5)


def test_channel_sends_what_the_document_says(ctx, server):
    raw, nonce = raw_client(ctx, server.url)
    accept(server, raw, nonce)
    server.send(b"hi")
    assert raw.recv() == frame(DATA, b"hi")
    big = bytes(100_000)
    server.send(big)
    parts = raw.recv_multipart()
    assert parts == [H.pack(b"DP", 1, LARGE, len(big)), big]
    assert server.send_many([b"a", b"bc", b""]) == 3
    assert raw.recv() == batch([b"a", b"bc", b""])
    server.close()
    assert raw.recv() == frame(BYE)


def test_document_only_server_serves_the_channel(ctx):
    r = ctx.socket(zmq.ROUTER)
    r.rcvtimeo = 5000
    r.bind("tcp://127.0.0.1:0")
    url = r.last_endpoint.decode()

    def serve():
        ident, hello = r.recv_multipart()
        magic, version, kind, n = H.unpack_from(hello)
        assert (magic, version, kind, n) == (b"DP", 1, HELLO, 16)
        client_max, _, nonce = BODY.unpack_from(hello, 8)
        r.send_multipart([ident, frame(WELCOME, BODY.pack(4096, 0, nonce))])
        for _ in range(2):  # echo two messages as they came
            r.send_multipart(r.recv_multipart())

    t = threading.Thread(target=serve)
    t.start()
    ch = connect(url, timeout=5)
    try:
        assert ch.max_message == 4096  # the server's limit applies to what we send
        ch.send(b"ping")
        assert ch.recv(timeout=5) == b"ping"
        ch.send(b"x" * 3000)
        assert ch.recv(timeout=5) == b"x" * 3000
        with pytest.raises(Exception, match="exceeds max_message 4096"):
            ch.send(b"x" * 4097)
    finally:
        t.join(5)
        ch.close(linger=0)


# ------------------------------------------------------- hostile clients --

def test_garbage_handshake_is_rejected_and_the_server_keeps_listening(ctx, server):
    evil = ctx.socket(zmq.DEALER)
    evil.rcvtimeo = 5000
    evil.connect(server.url)
    for bad, why in [
        (b"GET / HTTP/1.1\r\n\r\n", "bad magic"),
        (frame(HELLO, b"short"), "malformed HELLO"),
        (frame(HELLO, BODY.pack(100, 0, 1), version=2), "version 2"),
        (frame(DATA, b"no hello"), "expected HELLO"),
    ]:
        evil.send(bad)
        with pytest.raises(HandshakeError, match=why):
            server.accept(timeout=5)
        reply = evil.recv()
        assert H.unpack_from(reply)[2] == REJECT and why.encode() in reply[8:]
    # A real client still gets in, and the stranger stays out.
    raw, nonce = raw_client(ctx, server.url)
    accept(server, raw, nonce)
    evil.send(frame(DATA, b"let me in"))
    raw.send(frame(DATA, b"legit"))
    assert server.recv(timeout=5) == b"legit"
    with pytest.raises(Timeout):
        server.recv(timeout=0.3)  # the stranger's message is read, refused, not delivered
    reply = evil.recv()
    assert H.unpack_from(reply)[2] == REJECT and b"expected HELLO" in reply[8:]
    assert server.rejected == 5


def test_non_zmtp_bytes_do_not_disturb_the_server(ctx, server):
    port = int(server.url.rsplit(":", 1)[1])
    junk = socket.create_connection(("127.0.0.1", port))
    junk.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"garbage" * 200)
    raw, nonce = raw_client(ctx, server.url)
    accept(server, raw, nonce)
    junk.close()
    time.sleep(0.2)  # its disconnect must not count as the peer's
    raw.send(frame(DATA, b"still here"))
    assert server.recv(timeout=5) == b"still here"
    assert server.peer_alive() is True


def test_second_client_is_refused(server):
    t = threading.Thread(target=server.accept, args=(5,))
    t.start()
    first = connect(server.url, timeout=5)
    t.join()
    try:
        def serve():  # the server must read to see the intruder's HELLO
            try:
                server.recv(timeout=2)
            except Timeout:
                pass

        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(HandshakeError, match="already has a peer"):
            connect(server.url, timeout=5)
        t.join()
        first.send(b"unaffected")
        assert server.recv(timeout=5) == b"unaffected"
    finally:
        first.close(linger=0)


MALFORMED = [
    ("too short", [b"DP\x01"], "too short"),
    ("bad magic", [frame(DATA, b"x", magic=b"XX")], "bad magic"),
    ("bad version", [frame(DATA, b"x", version=9)], "version 9"),
    ("unknown kind", [frame(0x7F, b"x")], "unknown message kind"),
    ("length mismatch", [frame(DATA, b"abc", length=5)], "says 5 bytes"),
    ("oversize DATA", [frame(DATA, bytes((1 << 20) + 1))], "exceeds max_message"),
    ("LARGE alone", [H.pack(b"DP", 1, LARGE, 10)], "without its payload"),
    ("LARGE wrong length", [H.pack(b"DP", 1, LARGE, 10), b"123"], "carries 3"),
    ("BATCH that does not add up", [frame(BATCH, struct.pack("<III", 2, 5, 5) + b"abc")], "add up"),
    ("BATCH of zero", [frame(BATCH, struct.pack("<I", 0))], "does not fit"),
    ("DATA with a trailing frame", [frame(DATA, b"ok"), b"trailing junk"], "beyond|too short|bad magic"),
    ("DATA with two trailing frames", [frame(DATA, b"ok"), b"junk1", b"junk2"], "beyond|too short|bad magic"),
    ("empty frame", [b""], "too short"),
    ("HELLO again", [frame(HELLO, BODY.pack(1, 0, 1))], "unexpected HELLO"),
]


def _until_after(ch):
    """Receive until b"after": (messages before it, ProtocolErrors raised).
    Ends with the channel usable and the valid message behind the bad one
    delivered."""
    got, errors = [], []
    for _ in range(5):
        try:
            m = ch.recv(timeout=5)
        except ProtocolError as e:
            errors.append(e)
            continue
        if m == b"after":
            return got, errors
        got.append(m)
    raise AssertionError(f"b'after' never came: {got} {errors}")


@pytest.mark.parametrize("name, parts, match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_from_the_peer_raise_protocol_error(ctx, server, name, parts, match):
    raw, nonce = raw_client(ctx, server.url)
    accept(server, raw, nonce)
    raw.send(frame(DATA, b"before"))
    raw.send_multipart(parts)
    raw.send(frame(DATA, b"after"))
    assert server.recv(timeout=5) == b"before"
    got, errors = _until_after(server)
    assert errors and all(re.search(match, str(e)) for e in errors), errors
    assert got in ([], [b"ok"])  # a trailing frame is seen after the message it trails
    assert server.try_recv() is None


@pytest.mark.parametrize("name, parts, match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_from_a_server_raise_protocol_error(ctx, name, parts, match):
    r = ctx.socket(zmq.ROUTER)
    r.rcvtimeo = 5000
    r.bind("tcp://127.0.0.1:0")
    url = r.last_endpoint.decode()

    def serve():
        ident, hello = r.recv_multipart()
        r.send_multipart([ident, frame(WELCOME, BODY.pack(1 << 20, 0, BODY.unpack_from(hello, 8)[2]))])
        r.send_multipart([ident, frame(DATA, b"before")])
        r.send_multipart([ident, *parts])
        r.send_multipart([ident, frame(DATA, b"after")])

    t = threading.Thread(target=serve)
    t.start()
    ch = connect(url, timeout=5, max_message=1 << 20)
    try:
        t.join(5)
        assert ch.recv(timeout=5) == b"before"
        got, errors = _until_after(ch)
        assert errors and all(re.search(match, str(e)) for e in errors), errors
        assert got in ([], [b"ok"])
    finally:
        ch.close(linger=0)


def test_frame_over_the_hard_limit_drops_the_connection(ctx):
    with bind("tcp://127.0.0.1:0", max_message=1000) as server:
        raw, nonce = raw_client(ctx, server.url, max_message=1000)
        server.accept(timeout=5)
        raw.recv()
        raw.send(frame(DATA, b"fine"))
        raw.send(frame(DATA, bytes(3 << 20)))  # beyond max(2x, +1 MiB): libzmq hangs up
        assert server.recv(timeout=5) == b"fine"
        t0 = time.monotonic()
        with pytest.raises(PeerGone):
            server.recv(timeout=10)
        assert time.monotonic() - t0 < 2


# ------------------------------------------------------- hostile servers --

_keep = []


def _router(ctx, answer):
    r = ctx.socket(zmq.ROUTER)
    r.rcvtimeo = 5000
    r.bind("tcp://127.0.0.1:0")

    def serve():
        try:
            ident, hello = r.recv_multipart()
        except zmq.Again:
            return
        if answer is not None:
            r.send_multipart([ident, *answer(hello)])

    url = r.last_endpoint.decode()  # before the thread owns the socket
    threading.Thread(target=serve, daemon=True).start()
    _keep.append(r)  # a collected socket closes with linger 0, dropping its answer
    return url


@pytest.mark.parametrize("answer, match", [
    (lambda hello: [b"\x00garbage garbage"], "garbage answer"),
    (lambda hello: [frame(REJECT, b"go away")], "refused the handshake: go away"),
    (lambda hello: [frame(WELCOME, BODY.pack(100, 0, 12345))], "nonce"),
    (lambda hello: [frame(DATA, b"data first")], "expected WELCOME"),
    (lambda hello: [frame(WELCOME, BODY.pack(100, 0, BODY.unpack_from(hello, 8)[2]), version=3)], "version 3"),
], ids=["garbage", "reject", "wrong-nonce", "data-first", "other-version"])
def test_bad_handshake_answers_are_handshake_errors(ctx, answer, match):
    url = _router(ctx, answer)
    t0 = time.monotonic()
    with pytest.raises(HandshakeError, match=match):
        connect(url, timeout=5)
    assert time.monotonic() - t0 < 2


def test_server_that_never_answers_is_a_timeout(ctx):
    url = _router(ctx, None)
    t0 = time.monotonic()
    with pytest.raises(Timeout, match="no answer to HELLO"):
        connect(url, timeout=0.5)
    assert 0.4 < time.monotonic() - t0 < 2


def test_nobody_listening_is_a_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(Timeout, match="could not connect"):
        connect(f"tcp://127.0.0.1:{port}", timeout=0.3)


def test_non_zmtp_server_is_a_handshake_error():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()

    def serve():
        c, _ = ls.accept()
        c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" * 20)
        time.sleep(0.5)
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(HandshakeError):
            connect(f"tcp://127.0.0.1:{ls.getsockname()[1]}", timeout=3)
    finally:
        ls.close()
