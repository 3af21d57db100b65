"""FrameScanner: frame boundaries from headers only (RFC 6455 §5.2), checked with frames
serialized by the websockets library and split at every possible place."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from wsgate.http.wsframe import (
    CLOSE_GOING_AWAY,
    CLOSE_MESSAGE_TOO_BIG,
    FrameScanner,
    close_frame,
    frame,
    ping_frame,
)


def ws(opcode: Opcode, payload: bytes = b"", fin: bool = True, mask: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=mask)


def run(scanner: FrameScanner, chunks: list[bytes]) -> bytes:
    return b"".join(scanner.feed(c) for c in chunks)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [c for c in out if c]


FRAMES = st.lists(
    st.tuples(
        st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG]),
        st.binary(max_size=70_000),
        st.booleans(),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(FRAMES, st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_transparent_and_counts_messages(
    frames: list[tuple[Opcode, bytes, bool]], cuts: list[int], mask: bool
) -> None:
    wire = b""
    messages = 0
    for opcode, payload, _ in frames:
        if opcode in (Opcode.PING, Opcode.PONG):
            payload = payload[:125]
        else:
            messages += 1
        wire += ws(opcode, payload, mask=mask)
    scanner = FrameScanner()
    assert run(scanner, split(wire, cuts)) == wire
    assert scanner.messages == messages
    assert not scanner.partial and scanner.remaining == 0


def test_whole_chunk_is_passed_without_copy() -> None:
    data = ws(Opcode.BINARY, b"x" * 1000)
    scanner = FrameScanner()
    first = data[:500]
    assert scanner.feed(first) is first
    rest = data[500:]
    assert scanner.feed(rest) is rest


def test_one_byte_at_a_time() -> None:
    wire = b"".join(
        [
            ws(Opcode.TEXT, b"a" * 126),
            ws(Opcode.BINARY, b"b" * 70_000),
            ws(Opcode.PING, b"p"),
            ws(Opcode.TEXT, b""),
        ]
    )
    scanner = FrameScanner()
    assert run(scanner, [wire[i : i + 1] for i in range(len(wire))]) == wire
    assert scanner.messages == 3


def test_fragmented_message_counts_once_with_control_frames_between() -> None:
    wire = b"".join(
        [
            ws(Opcode.TEXT, b"he", fin=False),
            ws(Opcode.PING, b"!"),
            ws(Opcode.CONT, b"ll", fin=False),
            ws(Opcode.PONG, b"?"),
            ws(Opcode.CONT, b"o", fin=True),
        ]
    )
    scanner = FrameScanner()
    assert scanner.feed(wire) == wire
    assert scanner.messages == 1


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (Close(1000, "").serialize(), 1000),
        (Close(4999, "r" * 123).serialize(), 4999),
        (b"", 1005),
        (b"\x03", 1005),
    ],
    ids=["1000", "4999-long-reason", "empty", "one-byte"],
)
@pytest.mark.parametrize("mask", [True, False], ids=["masked", "unmasked"])
def test_close_code_noted(payload: bytes, code: int, mask: bool) -> None:
    wire = ws(Opcode.TEXT, b"bye") + ws(Opcode.CLOSE, payload, mask=mask)
    seen: list[int] = []
    scanner = FrameScanner()
    scanner.on_close = seen.append
    assert run(scanner, [wire[i : i + 1] for i in range(len(wire))]) == wire
    assert scanner.close_code == code and seen == [code]


@pytest.mark.parametrize("mask", [True, False], ids=["client-pong", "server-pong"])
def test_own_pong_removed_others_pass(mask: bool) -> None:
    ours = b"wsgate-1"
    theirs = ws(Opcode.PONG, b"other!!!", mask=mask)  # same length, other payload
    mine = ws(Opcode.PONG, ours, mask=mask)
    text = ws(Opcode.TEXT, b"hi", mask=mask)
    pongs: list[int] = []
    scanner = FrameScanner()
    scanner.on_pong = pongs.append
    scanner.expect = ours
    wire = text + theirs + mine + text
    out = run(scanner, [wire[i : i + 3] for i in range(0, len(wire), 3)])
    assert out == text + theirs + text
    assert pongs == [len(mine)] and scanner.expect is None
    # Once answered, an identical Pong is not ours any more: it passes.
    assert scanner.feed(mine) == mine


def test_inject_waits_for_the_frame_boundary() -> None:
    big = ws(Opcode.BINARY, b"z" * 1000, mask=False)
    scanner = FrameScanner()
    assert scanner.feed(big[:10]) == big[:10]
    ping = ping_frame(b"p")
    assert scanner.inject(ping) is None  # mid-frame: queued
    after = ws(Opcode.TEXT, b"next", mask=False)
    assert scanner.feed(big[10:] + after) == big[10:] + ping + after
    assert scanner.inject(ping) == ping  # at a boundary: now


def test_inject_close_is_final() -> None:
    big = ws(Opcode.BINARY, b"z" * 100, mask=False)
    scanner = FrameScanner()
    scanner.feed(big[:5])
    close = close_frame(CLOSE_GOING_AWAY)
    assert scanner.inject(close, final=True) is None
    closes: list[int] = []
    scanner.on_close = closes.append
    later = ws(Opcode.TEXT, b"dropped", mask=False) + ws(
        Opcode.CLOSE, Close(1000, "").serialize(), mask=False
    )
    assert scanner.feed(big[5:] + later) == big[5:] + close
    assert closes == [1000]  # still seen while dropping


@pytest.mark.parametrize(
    ("limits", "frames", "passed"),
    [
        ((10, 0), [(Opcode.TEXT, 10, True), (Opcode.TEXT, 11, True)], 1),
        ((0, 10), [(Opcode.TEXT, 5, False), (Opcode.CONT, 5, True), (Opcode.TEXT, 3, True)], 3),
        ((0, 10), [(Opcode.TEXT, 5, False), (Opcode.CONT, 6, True)], 1),
        ((100, 100), [(Opcode.PING, 120, True), (Opcode.BINARY, 101, True)], 1),
    ],
    ids=["frame-over", "message-at-limit", "message-over", "control-not-counted"],
)
def test_size_limits(
    limits: tuple[int, int], frames: list[tuple[Opcode, int, bool]], passed: int
) -> None:
    encoded = [ws(op, b"m" * n, fin=fin) for op, n, fin in frames]
    scanner = FrameScanner(max_frame=limits[0], max_message=limits[1])
    violations: list[tuple[int, str]] = []
    scanner.on_violation = lambda code, why: violations.append((code, why))
    out = run(scanner, [b"".join(encoded)])
    assert out == b"".join(encoded[:passed])
    if passed < len(frames):
        assert [v[0] for v in violations] == [CLOSE_MESSAGE_TOO_BIG]
        assert scanner.dropping
    else:
        assert not violations


def test_built_frames_parse_with_websockets() -> None:
    from websockets.frames import Frame as WsFrame
    from websockets.streams import StreamReader

    for mask in (False, True):
        reader = StreamReader()
        reader.feed_data(frame(0x2, b"abc" * 100, mask) + close_frame(1012, mask))
        gen = WsFrame.parse(reader.read_exact, mask=mask)
        try:
            next(gen)
        except StopIteration as stop:
            got = stop.value
        assert got.opcode == Opcode.BINARY and got.data == b"abc" * 100
        gen = WsFrame.parse(reader.read_exact, mask=mask)
        try:
            next(gen)
        except StopIteration as stop:
            got = stop.value
        assert got.opcode == Opcode.CLOSE and struct.unpack("!H", got.data[:2]) == (1012,)


@pytest.mark.parametrize("rsv", [0, 0x40], ids=["plain", "rsv1-compressed"])
def test_single_frame_chunks_counted_and_limited(rsv: int) -> None:
    """One whole message per chunk (the fast path): counted, limited, passed uncopied."""
    scanner = FrameScanner(max_message=100)
    violations: list[int] = []
    scanner.on_violation = lambda code, why: violations.append(code)
    for n in (0, 1, 100):
        chunk = bytearray(ws(Opcode.BINARY, b"b" * n))
        chunk[0] |= rsv
        data = bytes(chunk)
        assert scanner.feed(data) is data
    assert scanner.messages == 3 and not violations
    over = ws(Opcode.TEXT, b"t" * 101)
    assert scanner.feed(over) == b""
    assert violations == [CLOSE_MESSAGE_TOO_BIG] and scanner.messages == 3
