"""The status page's server-side WebSocket framing, checked against the websockets library."""

from __future__ import annotations

import pytest
from websockets.frames import Close, Frame, Opcode

from wsgate.http.wsframe import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    ClientFrames,
    Closed,
    close_frame,
    frame,
    frame_header,
    ping_frame,
    text_frame,
)


def client(opcode: Opcode, payload: bytes = b"") -> bytes:
    """A masked client frame, as a browser sends it (websockets' own serializer)."""
    return Frame(opcode, payload).serialize(mask=True)


def close_payload(code: int, reason: str = "") -> bytes:
    return Close(code, reason).serialize()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_matches_websockets(size: int) -> None:
    text = "é" * (size // 2) + "a" * (size % 2)
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


@pytest.mark.parametrize("code", [CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR])
def test_close_frame_matches_websockets(code: int) -> None:
    expected = Frame(Opcode.CLOSE, close_payload(code)).serialize(mask=False)
    assert close_frame(code) == expected


def test_open_client_feeds_nothing_back() -> None:
    frames = ClientFrames()
    assert frames.feed(b"") is None
    assert frames.feed(client(Opcode.PING, b"x")) is None
    assert frames.feed(client(Opcode.TEXT, b"hello" * 1000)) is None


def test_close_with_code_is_echoed() -> None:
    frames = ClientFrames()
    assert frames.feed(client(Opcode.CLOSE, close_payload(1001, "bye"))) == Closed(1001)


def test_close_without_code_is_answered_1000() -> None:
    assert ClientFrames().feed(client(Opcode.CLOSE)) == Closed(CLOSE_NORMAL)


def test_close_after_other_frames_one_byte_at_a_time() -> None:
    wire = (
        client(Opcode.TEXT, b"a" * 300)  # 16-bit length
        + client(Opcode.BINARY, b"b" * 70_000)  # 64-bit length
        + client(Opcode.PONG)
        + client(Opcode.CLOSE, close_payload(4000))
    )
    frames = ClientFrames()
    results = [frames.feed(wire[i : i + 1]) for i in range(len(wire))]
    assert results[:-1] == [None] * (len(wire) - 1)
    assert results[-1] == Closed(4000)


def test_many_frames_in_one_chunk() -> None:
    wire = client(Opcode.PING) * 20_000 + client(Opcode.CLOSE, close_payload(1000))
    assert ClientFrames().feed(wire) == Closed(1000)


def test_large_payload_is_skipped_not_kept() -> None:
    frames = ClientFrames()
    wire = client(Opcode.BINARY, b"z" * 1_000_000)
    assert frames.feed(wire[:1000]) is None
    assert len(frames._buf) == 0  # only the header was ever looked at
    assert frames.feed(wire[1000:]) is None
    assert frames.feed(client(Opcode.CLOSE)) == Closed(CLOSE_NORMAL)


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (Frame(Opcode.TEXT, b"hi").serialize(mask=False), "unmasked client frame"),
        (bytes([0xC1, 0x80]) + b"\0\0\0\0", "reserved bits set"),
        # websockets refuses to build these two: written by hand (mask of zeros)
        (bytes([0x89, 0x80 | 126, 0, 126]) + b"\0" * 4 + b"p" * 126, "bad control frame"),
        (bytes([0x09, 0x81]) + b"\0" * 4 + b"p", "bad control frame"),
        (client(Opcode.CLOSE, b"\x03"), "close frame with a one-byte payload"),
    ],
)
def test_protocol_errors(wire: bytes, error: str) -> None:
    assert ClientFrames().feed(wire) == Closed(CLOSE_PROTOCOL_ERROR, error)


def test_client_frames_are_masked_with_the_given_key() -> None:
    # "a" ^ 1, "b" ^ 2, "c" ^ 3 and "d" ^ 4 are all "`"
    key = b"\x01\x02\x03\x04"
    assert ping_frame(b"abcd", mask=True, key=key) == b"\x89\x84\x01\x02\x03\x04````"
    assert close_frame(1001, mask=True, key=b"\0\0\0\0") == b"\x88\x82\0\0\0\0\x03\xe9"
    # A random key otherwise, and the 16-bit length form past 125 bytes (§5.2).
    a = ping_frame(b"x", mask=True)
    assert a[:2] == b"\x89\x81" and len(a) == 7
    long = frame(0x2, b"y" * 126, mask=True, key=b"\0\0\0\0")
    assert long[:4] == b"\x82\xfe\x00\x7e" and long[8:] == b"y" * 126


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 1 << 32])
@pytest.mark.parametrize("mask", [False, True])
def test_frame_header_reads_every_length_form(size: int, mask: bool) -> None:
    # websockets' serializer writes the header (§5.2); only its header is needed here.
    wire = Frame(Opcode.BINARY, b"z" * min(size, 70_000)).serialize(mask=mask)
    header = wire[: len(wire) - min(size, 70_000)]
    if size > 70_000:  # the 64-bit form, written by hand
        header = bytes([0x82, (0x80 if mask else 0) | 127]) + size.to_bytes(8, "big")
        header += b"\1\2\3\4" if mask else b""
    expected_size = (2 if size < 126 else 4 if size < 65536 else 10) + (4 if mask else 0)
    assert len(header) == expected_size
    assert frame_header(header) == (size, expected_size)
    # Behind other bytes, with a payload after it.
    assert frame_header(b"??" + header + b"pp", 2) == (size, expected_size)
    # Incomplete at every cut: keep the bytes and wait.
    for cut in range(2, expected_size):
        assert frame_header(header[:cut]) is None
        assert frame_header(bytearray(b"x" + header[:cut]), 1) is None
