"""``wsgate.http.probe``: the WebSocket handshake (and ping) of ``websocket_health_check``,
driven from tables. Every answer is fed in one piece and again one byte at a time."""

from __future__ import annotations

import struct

import pytest

from wsgate.http.probe import HEAD_LIMIT, Probe, ProbeState
from wsgate.http.upgrade import accept_value

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # ... and its accept value
PAYLOAD = b"\x01\x02\x03\x04\x05\x06\x07\x08"

OK_101 = (
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
).encode()


def frame(opcode: int, payload: bytes = b"", *, first: int = 0x80, mask: bool = False) -> bytes:
    """A server frame (unmasked unless ``mask``)."""
    n = len(payload)
    second = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first | opcode, second | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first | opcode, second | 126, n)
    else:
        head = struct.pack("!BBQ", first | opcode, second | 127, n)
    return head + (b"\0\0\0\0" if mask else b"") + payload


def unmask(data: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one masked client frame with a short payload."""
    assert data[0] & 0x80 and data[1] & 0x80  # FIN, MASK
    n = data[1] & 0x7F
    key = data[2:6]
    assert len(data) == 6 + n
    return data[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data[6:]))


def probe(ping: bool = False) -> Probe:
    p = Probe("/health?x=1", "127.0.0.1:8011", ping=ping, key=KEY, ping_payload=PAYLOAD)
    assert p.data_to_send() == (
        b"GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8011\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    return p


def run(p: Probe, data: bytes, *, bytewise: bool, eof: bool = False) -> bytes:
    """Feed ``data`` (whole or byte by byte) and return everything the probe sent back."""
    sent = b""
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        p.receive_data(chunk)
        sent += p.data_to_send()
    if eof:
        p.receive_eof()
        sent += p.data_to_send()
    return sent


def test_a_random_key_is_valid_and_differs_each_time() -> None:
    a, b = Probe("/", "h"), Probe("/", "h")
    key_a = a.data_to_send().split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
    key_b = b.data_to_send().split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
    assert len(key_a) == 24 and key_a != key_b
    assert accept_value(KEY) == ACCEPT


@pytest.mark.parametrize("bytewise", [False, True])
def test_101_with_the_right_accept_passes_and_closes(bytewise: bool) -> None:
    p = probe()
    sent = run(p, OK_101, bytewise=bytewise)
    assert (p.state, p.reason) == (ProbeState.PASSED, None)
    assert unmask(sent) == (0x8, struct.pack("!H", 1000))
    # input after the result is ignored
    p.receive_data(b"garbage")
    p.receive_eof()
    assert (p.state, p.data_to_send()) == (ProbeState.PASSED, b"")


BAD_ANSWERS = [
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "upstream returned 200 instead of 101",
    ),
    (
        b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
        "upstream returned 426 instead of 101",
    ),
    (
        OK_101.replace(ACCEPT.encode(), accept_value("x" * 24).encode()),
        'upstream sent 101 with a wrong "Sec-WebSocket-Accept"',
    ),
    (
        OK_101.replace(f"Sec-WebSocket-Accept: {ACCEPT}\r\n".encode(), b""),
        'upstream sent 101 with a wrong "Sec-WebSocket-Accept"',
    ),
    (
        OK_101.replace(b"Upgrade: websocket\r\n", b"Upgrade: h2c\r\n"),
        'upstream sent 101 without "Upgrade: websocket"',
    ),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "upstream sent no valid HTTP/1.0 header"),
    (b"x" * (HEAD_LIMIT + 1), "upstream sent too big header"),
]


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize(("answer", "reason"), BAD_ANSWERS)
def test_bad_answers_fail(answer: bytes, reason: str, bytewise: bool) -> None:
    p = probe()
    sent = run(p, answer, bytewise=bytewise)
    assert p.state is ProbeState.FAILED
    assert p.reason is not None and p.reason.startswith(reason)
    assert sent == b""  # nothing more is written: the caller closes the connection


@pytest.mark.parametrize("ping", [False, True])
def test_eof_before_the_head_fails(ping: bool) -> None:
    p = probe(ping)
    run(p, OK_101[:20], bytewise=False, eof=True)
    assert (p.state, p.reason) == (
        ProbeState.FAILED,
        "upstream prematurely closed connection while reading response header from upstream",
    )


PONG = frame(0xA, PAYLOAD)

PING_ANSWERS = [
    # (frames after the 101, final state, reason)
    (PONG, ProbeState.PASSED, None),
    # frames before the pong are skipped: data, the peer's own ping, an unsolicited pong
    (
        frame(0x1, b"hello") + frame(0x9, b"p") + frame(0xA, b"other") + PONG,
        ProbeState.PASSED,
        None,
    ),
    (frame(0x2, b"\xff" * 300) + frame(0x2, b"\0" * 70000) + PONG, ProbeState.PASSED, None),
    (frame(0x1, b"part", first=0) + frame(0x0, b"end") + PONG, ProbeState.PASSED, None),
    (
        frame(0x8, struct.pack("!H", 1011)),
        ProbeState.FAILED,
        "upstream closed the WebSocket (1011) while waiting for pong from upstream",
    ),
    (
        frame(0x8),
        ProbeState.FAILED,
        "upstream closed the WebSocket (1005) while waiting for pong from upstream",
    ),
    (frame(0xA, PAYLOAD, mask=True), ProbeState.FAILED, "upstream sent a masked WebSocket frame"),
    (
        frame(0xA, PAYLOAD, first=0xC0),
        ProbeState.FAILED,
        "upstream sent a WebSocket frame with reserved bits set",
    ),
    (frame(0x9, b"x" * 126), ProbeState.FAILED, "upstream sent a bad WebSocket control frame"),
    (
        frame(0xA, PAYLOAD, first=0),
        ProbeState.FAILED,
        "upstream sent a bad WebSocket control frame",
    ),
    (
        frame(0x1, b"no pong here"),
        ProbeState.FAILED,
        "upstream prematurely closed connection while waiting for pong from upstream",
    ),
]


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize(("frames", "state", "reason"), PING_ANSWERS)
def test_ping_waits_for_the_matching_pong(
    frames: bytes, state: ProbeState, reason: str | None, bytewise: bool
) -> None:
    p = probe(ping=True)
    sent = run(p, OK_101, bytewise=bytewise)
    assert p.state is ProbeState.PING
    assert p.action == "waiting for pong from upstream"
    assert unmask(sent) == (0x9, PAYLOAD)
    sent = run(p, frames, bytewise=bytewise, eof=True)
    assert (p.state, p.reason) == (state, reason)
    if state is ProbeState.PASSED:
        assert unmask(sent) == (0x8, struct.pack("!H", 1000))
    else:
        assert sent == b""


def test_the_101_and_the_pong_in_one_read() -> None:
    p = probe(ping=True)
    sent = run(p, OK_101 + frame(0x1, b"hi") + PONG, bytewise=False)
    assert p.state is ProbeState.PASSED
    ping, close = sent[:14], sent[14:]
    assert unmask(ping) == (0x9, PAYLOAD)
    assert unmask(close) == (0x8, struct.pack("!H", 1000))


def test_skipped_payloads_are_not_kept() -> None:
    p = probe(ping=True)
    run(p, OK_101, bytewise=False)
    p.receive_data(frame(0x2, b"\0" * 1_000_000)[:-10])
    assert len(p._buf) == 0 and p._skip == 10
    p.receive_data(b"\0" * 10 + PONG)
    assert p.state is ProbeState.PASSED
