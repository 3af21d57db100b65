"""The tunnel is transparent: every scenario gives the same bytes through wsgate as directly.

Each test runs one scenario twice against the same server: directly, then through wsgate
(in process, the seed article's configuration). It then asserts that

* the client received the same bytes after the 101, byte for byte (server frames are
  unmasked, so a deterministic server sends the same bytes every time);
* the server saw the same things (messages by type, length and digest; pongs; errors; the
  close) and, for the raw client whose mask key is fixed, received exactly the bytes the
  client sent;
* the direct run itself is what RFC 6455 expects, so that a server (or a test) that does
  nothing cannot pass.

The servers are ``websockets`` on the test's loop and node's ``ws`` as a process
(``tests/support/ws_recording_server.js``; skipped without node, failed under
WSGATE_REQUIRE_PEERS=1). The clients are ``websockets`` and :mod:`tests.support.wsraw`,
which writes hand-built frames, valid or not, in the pieces it is given.

Known difference of the plain relay, not asserted for it: when a server fails the
connection (protocol errors, invalid UTF-8, bad close frames: both servers send their
Close and then half-close, FIN, while still reading), a direct client's answering Close
still reaches the server; through the plain relay it may not, because that tunnel closes
both directions at the first EOF (no half-close, as nginx, nginx-semantics.md §2.3). The
client may then also see a reset instead of an EOF after the same bytes. For those cases
only the bytes sent before the client answered the Close are required at the server, and
the way the stream ended is not compared. The frame-aware relay knows a Close went by: it
keeps the half-closed side writable until the answer has passed, and is held to the strict
comparison.

The relay is chosen by what the proxied location holds: nothing (``plain``: the byte
relay), frame-size limits (``frames``: the frame-aware relay) or an access log of
per-message variables (``frames-log``). The last two need the frame-aware relay; until it
exists they fail with a configuration error. Run::

    PYTHONPATH=src python -m pytest tests/interop/test_ws_transparency.py -k "not frames"
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.confs import article_conf
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process
from tests.support.wsraw import (
    IO_TIMEOUT,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    RawClient,
    close_code,
    close_payload,
    frame,
    header_length,
    messages,
    parse_frames,
)
from tests.support.wsservers import (
    KeepsBytes,
    PyRecordingServer,
    Recorder,
    ServerRecord,
    digest,
    node_recording_server,
)

SIZES = (0, 1, 125, 126, 65535, 65536, 1 << 20)
_TAGS = itertools.count()


# -- the three ways ---------------------------------------------------------------------


def relay_conf(relay: str, tmp_path: Path) -> tuple[str, str]:
    """``(location, http)`` configuration text for a relay id."""
    if relay == "plain":
        return "", ""
    if relay == "frames":
        return "websocket_max_message_size 64m; websocket_max_frame_size 64m;", ""
    assert relay == "frames-log"
    return (
        f"access_log {tmp_path / 'ws.log'} ws;",
        "log_format ws '$ws_messages_in $ws_messages_out $ws_close_code';",
    )


@pytest.fixture(params=["plain", "frames", "frames-log"])
def relay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def node_server() -> Iterator[Recorder]:
    with node_recording_server() as server:
        yield server


@pytest.fixture(params=["websockets", "node"])
def server(request: pytest.FixtureRequest) -> Recorder | None:
    """node's server (shared by the module), or ``None`` for one on the test's loop."""
    if request.param == "node":
        node: Recorder = request.getfixturevalue("node_server")
        return node
    return None


@dataclass(frozen=True, slots=True)
class Gate:
    server: Recorder
    direct: int  # the server's port
    proxy: int  # wsgate's port, proxying to it


@asynccontextmanager
async def gate(server: Recorder | None, relay: str, tmp_path: Path) -> AsyncIterator[Gate]:
    async with AsyncExitStack() as stack:
        if server is None:
            server = await stack.enter_async_context(PyRecordingServer())
        port = free_port()
        location, http = relay_conf(relay, tmp_path)
        conf = article_conf(port, [server.port], extra_location=location, extra_http=http)
        await stack.enter_async_context(proxy_in_process(conf, tmp_path))
        yield Gate(server, server.port, port)


# -- runs and their comparison --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a scenario, as the client and the server saw it."""

    received: bytes  # by the client, after the 101 head
    frames: tuple[Frame, ...]  # `received`, parsed
    sent: bytes | None  # by the raw client after its request head (None: library client)
    answered_at: int | None  # len(sent) when the raw client answered the server's Close
    server: ServerRecord
    end: str  # how the client's stream ended (raw client)
    extensions: str | None = None  # Sec-WebSocket-Extensions of the 101 (library client)
    result: Any = None  # what the library client's scenario returned


def _first_difference(a: bytes, b: bytes) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def assert_same(direct: Run, proxied: Run, *, server_bytes: bool = True) -> None:
    """The proxied run is the direct run: client bytes, server events, server bytes."""
    if proxied.received != direct.received:
        at = _first_difference(direct.received, proxied.received)
        raise AssertionError(
            f"the client received different bytes through wsgate: direct {len(direct.received)}"
            f" bytes, proxied {len(proxied.received)}, first difference at offset {at}\n"
            f"direct:  {list(direct.frames)} (end: {direct.end})\n"
            f"proxied: {list(proxied.frames)} (end: {proxied.end})"
        )
    assert proxied.server.events == direct.server.events, "the server saw something else"
    assert proxied.extensions == direct.extensions
    assert proxied.result == direct.result
    for run in (direct, proxied):
        if run.sent is not None:
            # A server receives nothing but what the client sent, in order...
            assert run.sent.startswith(run.server.raw), "the server received other bytes"
            # ...at least all of it up to the client's answer to the server's Close...
            if run.answered_at is not None:
                assert len(run.server.raw) >= run.answered_at, "the server missed bytes"
    if server_bytes:
        # ...and all of it when the client ends the connection.
        if direct.sent is not None:
            assert direct.server.raw == direct.sent
        assert_same_frames(direct.server.raw, proxied.server.raw)
        assert proxied.end == direct.end


def assert_same_frames(direct: bytes, proxied: bytes) -> None:
    """Same frames (unmasked) and, for a fixed mask key, same bytes."""
    assert parse_frames(proxied) == parse_frames(direct), "the server received other frames"


def _tag() -> str:
    return f"t{os.getpid()}-{next(_TAGS)}"


Play = Callable[[RawClient], Awaitable[None]]


async def raw_run(g: Gate, port: int, play: Play, query: str = "", early: bytes = b"") -> Run:
    tag = _tag()
    client = await RawClient.connect(port, f"/{tag}{query}", early=early)
    try:
        await play(client)
    finally:
        client.writer.close()
    record = await g.server.record(tag)
    return Run(
        bytes(client.received),
        tuple(client.frames),
        bytes(client.sent),
        client.answered_at,
        record,
        client.eof,
    )


async def raw_both(
    g: Gate, play: Play, query: str = "", *, early: bytes = b"", server_bytes: bool = True
) -> Run:
    """Play directly, then through wsgate; assert both are the same; the direct run."""
    direct = await raw_run(g, g.direct, play, query, early)
    proxied = await raw_run(g, g.proxy, play, query, early)
    assert_same(direct, proxied, server_bytes=server_bytes)
    return direct


class _RecordingClient(KeepsBytes, ClientConnection):
    """A ``websockets`` client connection that keeps every byte it receives."""


LibPlay = Callable[[ClientConnection], Awaitable[Any]]


async def lib_run(
    g: Gate, port: int, play: LibPlay, query: str = "", compression: str | None = None
) -> Run:
    tag = _tag()
    async with connect(
        f"ws://127.0.0.1:{port}/{tag}{query}",
        create_connection=_RecordingClient,
        compression=compression,
        max_size=None,
        ping_interval=None,
        close_timeout=IO_TIMEOUT,
        open_timeout=IO_TIMEOUT,
    ) as ws:
        async with asyncio.timeout(IO_TIMEOUT):
            result = await play(ws)
    assert isinstance(ws, _RecordingClient) and ws.response is not None
    received = bytes(ws.raw_in).partition(b"\r\n\r\n")[2]
    record = await g.server.record(tag)
    frames, _ = parse_frames(received)
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    return Run(received, tuple(frames), None, None, record, "", extensions, result)


async def lib_both(g: Gate, play: LibPlay, query: str = "", compression: str | None = None) -> Run:
    direct = await lib_run(g, g.direct, play, query, compression)
    proxied = await lib_run(g, g.proxy, play, query, compression)
    assert_same(direct, proxied)
    return direct


# -- RFC 6455 expectations for the direct run ---------------------------------------------


def server_frames_unmasked(run: Run) -> None:
    assert run.frames, "the server sent nothing"
    assert not any(f.masked for f in run.frames), "a server frame was masked (RFC 6455 §5.1)"


def client_closed_cleanly(run: Run, code: int = 1000) -> None:
    """The server answered the client's Close with a Close; the connection then ended."""
    assert run.frames[-1].opcode == OP_CLOSE, run.frames
    assert close_code(run.frames) == code
    assert run.server.events[-1][0] == "close"
    assert run.server.events[-1][1] == code


def text(n: int) -> bytes:
    """``n`` bytes of valid UTF-8 text (ASCII)."""
    pattern = b"wsgate transparency "
    return (pattern * (n // len(pattern) + 1))[:n]


def binary(n: int) -> bytes:
    return random.Random(n).randbytes(n)


# -- 1. messages of every size ------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size}B")
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY], ids=["text", "binary"])
async def test_echo_sizes(
    opcode: int, size: int, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    payload = text(size) if opcode == OP_TEXT else binary(size)

    async def play(c: RawClient) -> None:
        await c.write(frame(opcode, payload))
        await c.until_messages(1)
        await c.close()

    async with gate(server, relay, tmp_path) as g:
        direct = await raw_both(g, play)
    server_frames_unmasked(direct)
    assert messages(direct.frames) == [(opcode, payload)]
    kind = "text" if opcode == OP_TEXT else "binary"
    assert direct.server.events[0] == (kind, size, digest(payload))
    client_closed_cleanly(direct)


async def test_echo_sizes_library_client(
    server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    async def play(ws: ClientConnection) -> list[str | bytes]:
        got = []
        for size in SIZES:
            for message in (text(size).decode(), binary(size)):
                await ws.send(message)
                got.append(await ws.recv())
        return got

    async with gate(server, relay, tmp_path) as g:
        direct = await lib_both(g, play)
    server_frames_unmasked(direct)
    assert direct.result == [m for size in SIZES for m in (text(size).decode(), binary(size))]
    assert direct.server.events[-1][:2] == ("close", 1000)


# -- raw cases: pieces written, then what the server must answer -----------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """Write ``pieces`` (one write each); then either the server echoes ``echoes`` and
    answers ``pongs`` (and the client closes with ``client_close``), or, when ``fails``
    is set, the server fails the connection with that Close code."""

    id: str
    pieces: tuple[bytes, ...]
    echoes: tuple[tuple[int, bytes], ...] = ()
    pongs: tuple[bytes, ...] = ()
    fails: int | None = None
    early: bytes = b""  # sent in the same write as the request head


async def play_case(c: RawClient, case: Case) -> None:
    await c.write(*case.pieces)
    if case.fails is not None:
        await c.until_close()
        await c.close(None)  # echo the server's Close and read to the end
        return

    def answered(frames: list[Frame]) -> bool:
        pongs = [f for f in frames if f.opcode == OP_PONG]
        return len(messages(frames)) >= len(case.echoes) and len(pongs) >= len(case.pongs)

    await c.until(answered)
    await c.close()


async def run_case(server: Recorder | None, relay: str, tmp_path: Path, case: Case) -> Run:
    async def play(c: RawClient) -> None:
        await play_case(c, case)

    async with gate(server, relay, tmp_path) as g:
        # A server that fails the connection half-closes: see "Known difference" (the
        # frame-aware relay passes the answering Close; only the plain relay is excused).
        strict = case.fails is None or relay != "plain"
        direct = await raw_both(g, play, early=case.early, server_bytes=strict)
    server_frames_unmasked(direct)
    if case.fails is not None:
        assert close_code(direct.frames) == case.fails, direct.frames
        assert direct.frames[-1].opcode == OP_CLOSE
    else:
        assert messages(direct.frames) == list(case.echoes)
        assert [f.payload for f in direct.frames if f.opcode == OP_PONG] == list(case.pongs)
        client_closed_cleanly(direct)
    return direct


def fragments(opcode: int, *parts: bytes) -> tuple[bytes, ...]:
    """A message in fragments: ``opcode`` first, then continuations; the last has FIN."""
    return tuple(
        frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    )


# -- 2. fragmentation ---------------------------------------------------------------------

FRAGMENTATION = [
    Case(
        "text-in-3",
        fragments(OP_TEXT, b"Hello", b", frag", b"mented world"),
        ((OP_TEXT, b"Hello, fragmented world"),),
    ),
    Case(
        "binary-in-3",
        fragments(OP_BINARY, b"\x00\x01", b"\xff" * 200, b"\x80"),
        ((OP_BINARY, b"\x00\x01" + b"\xff" * 200 + b"\x80"),),
    ),
    Case(
        "empty-fragments",
        fragments(OP_TEXT, b"", b"a", b"", b"b", b""),
        ((OP_TEXT, b"ab"),),
    ),
    Case("empty-message-in-2", fragments(OP_BINARY, b"", b""), ((OP_BINARY, b""),)),
    Case(
        "ping-pong-between-fragments",
        (
            frame(OP_TEXT, b"one ", fin=False),
            frame(OP_PING, b"ping-1"),
            frame(OP_CONT, b"two ", fin=False),
            frame(OP_PONG, b"unsolicited"),
            frame(OP_PING, b""),
            frame(OP_CONT, b"three"),
        ),
        ((OP_TEXT, b"one two three"),),
        pongs=(b"ping-1", b""),
    ),
    Case(
        "large-fragments-16-and-64-bit",
        fragments(OP_BINARY, binary(70000)[:65536], binary(70000)[65536:], b""),
        ((OP_BINARY, binary(70000)),),
    ),
    Case(
        "two-messages-one-write",
        (b"".join(fragments(OP_TEXT, b"a", b"b") + fragments(OP_BINARY, b"c", b"d")),),
        ((OP_TEXT, b"ab"), (OP_BINARY, b"cd")),
    ),
]


@pytest.mark.parametrize("case", FRAGMENTATION, ids=lambda case: case.id)
async def test_fragmentation(
    case: Case, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    await run_case(server, relay, tmp_path, case)


# -- 3. frame headers split across TCP writes -----------------------------------------------


def bytewise(data: bytes) -> tuple[bytes, ...]:
    return tuple(data[i : i + 1] for i in range(len(data)))


def split_at_every_header_boundary(size: int) -> Case:
    """One frame per split point k of the header: bytes [:k] and [k:] in two writes."""
    payloads = [bytes([65 + k]) * size for k in range(1, 14)]
    pieces: list[bytes] = []
    echoes = []
    for k, payload in zip(range(1, 14), payloads, strict=True):
        data = frame(OP_BINARY, payload)
        if k >= header_length(data):
            break
        pieces += [data[:k], data[k:]]
        echoes.append((OP_BINARY, payload))
    return Case(f"header-split-everywhere-{size}B", tuple(pieces), tuple(echoes))


SPLITS = [
    Case("bytewise-7-bit-length", bytewise(frame(OP_TEXT, b"hello")), ((OP_TEXT, b"hello"),)),
    Case(
        "bytewise-16-bit-length",
        bytewise(frame(OP_BINARY, binary(300))),
        ((OP_BINARY, binary(300)),),
    ),
    Case(
        "bytewise-64-bit-header",
        (*bytewise(frame(OP_BINARY, binary(65536))[:14]), frame(OP_BINARY, binary(65536))[14:]),
        ((OP_BINARY, binary(65536)),),
    ),
    Case(
        "bytewise-ping-and-fragments",
        bytewise(
            frame(OP_TEXT, b"ab", fin=False)
            + frame(OP_PING, b"p")
            + frame(OP_CONT, b"cd")
            + frame(OP_CLOSE, close_payload(1000))
        ),
        ((OP_TEXT, b"abcd"),),
        pongs=(b"p",),
    ),
    split_at_every_header_boundary(5),
    split_at_every_header_boundary(300),
    split_at_every_header_boundary(65536),
    Case(
        "messages-with-the-request-head",
        (),
        ((OP_TEXT, b"early"), (OP_BINARY, b"bird")),
        early=frame(OP_TEXT, b"early") + frame(OP_BINARY, b"bird"),
    ),
    Case(
        "100-messages-one-write",
        (b"".join(frame(OP_TEXT, b"%d" % i) for i in range(100)),),
        tuple((OP_TEXT, b"%d" % i) for i in range(100)),
    ),
]


@pytest.mark.parametrize("case", SPLITS, ids=lambda case: case.id)
async def test_split_writes(
    case: Case, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    if case.id == "bytewise-ping-and-fragments":
        # The client's Close is among the pieces. It is written once the echo and the Pong
        # are back: a server that reads the last fragment and the Close in one chunk
        # answers the Close before its handler echoes (websockets does), and whether it
        # does depends on how the relay's reads fall, which TCP leaves free.
        close_at = len(case.pieces) - len(frame(OP_CLOSE, close_payload(1000)))

        async def play(c: RawClient) -> None:
            await c.write(*case.pieces[:close_at])
            await c.until(lambda fs: bool(messages(fs)) and any(f.opcode == OP_PONG for f in fs))
            await c.write(*case.pieces[close_at:])
            c.close_sent = True
            await c.close(None)

        async with gate(server, relay, tmp_path) as g:
            direct = await raw_both(g, play)
        assert messages(direct.frames) == list(case.echoes)
        assert [f.payload for f in direct.frames if f.opcode == OP_PONG] == [b"p"]
        client_closed_cleanly(direct)
        return
    await run_case(server, relay, tmp_path, case)


# -- 4. UTF-8 -------------------------------------------------------------------------------

VALID_TEXT = "\u0080 \u07ff \u0800 \uffff \U00010000 \U0010ffff".encode()
EMOJI = "a\U0001f600b".encode()  # a, F0 9F 98 80, b

UTF8 = [
    Case("valid-multibyte", (frame(OP_TEXT, VALID_TEXT),), ((OP_TEXT, VALID_TEXT),)),
    Case(
        "code-point-split-across-fragments",
        fragments(OP_TEXT, EMOJI[:2], EMOJI[2:3], EMOJI[3:5], EMOJI[5:]),
        ((OP_TEXT, EMOJI),),
    ),
    Case(
        "every-code-point-split",
        fragments(OP_TEXT, *bytewise(VALID_TEXT)),
        ((OP_TEXT, VALID_TEXT),),
    ),
    Case("invalid-byte-ff", (frame(OP_TEXT, b"ok \xff"),), fails=1007),
    Case("bad-continuation", (frame(OP_TEXT, b"\xc3\x28"),), fails=1007),
    Case("surrogate", (frame(OP_TEXT, b"\xed\xa0\x80"),), fails=1007),
    Case("overlong", (frame(OP_TEXT, b"\xc0\xaf"),), fails=1007),
    Case("above-u10ffff", (frame(OP_TEXT, b"\xf4\x90\x80\x80"),), fails=1007),
    Case("truncated-at-message-end", fragments(OP_TEXT, b"a\xf0\x9f", b"\x98"), fails=1007),
    Case("invalid-in-first-fragment", fragments(OP_TEXT, b"\xff", b"a"), fails=1007),
]


@pytest.mark.parametrize("case", UTF8, ids=lambda case: case.id)
async def test_utf8(case: Case, server: Recorder | None, relay: str, tmp_path: Path) -> None:
    await run_case(server, relay, tmp_path, case)


# -- 5. permessage-deflate ------------------------------------------------------------------

DEFLATE_MESSAGES: list[str | bytes] = [
    "compress me " * 500,
    "small",
    "",
    b"\x00" * 100_000,
    binary(5000),
    "compress me " * 500,  # context takeover: compresses better the second time
]


async def test_permessage_deflate(server: Recorder | None, relay: str, tmp_path: Path) -> None:
    async def play(ws: ClientConnection) -> list[str | bytes]:
        got = []
        for message in DEFLATE_MESSAGES:
            await ws.send(message)
            got.append(await ws.recv())
        return got

    async with gate(server, relay, tmp_path) as g:
        direct = await lib_both(g, play, compression="deflate")
    assert direct.extensions is not None and direct.extensions.startswith("permessage-deflate")
    assert direct.result == DEFLATE_MESSAGES
    assert any(f.rsv == 4 for f in direct.frames), "no compressed frame (RSV1) was received"
    server_frames_unmasked(direct)


# -- 6. close codes ---------------------------------------------------------------------------

REASON_123 = bytes(range(33, 33 + 94)) + b"x" * 29  # printable ASCII, 123 bytes

CLIENT_CLOSES = [
    ("1000", close_payload(1000)),
    ("1001-going-away", close_payload(1001, b"going away")),
    ("3000", close_payload(3000)),
    ("4999-reason", close_payload(4999, "räson".encode())),
    ("4000-123-byte-reason", close_payload(4000, REASON_123)),
    ("empty", b""),
]


@pytest.mark.parametrize(
    "payload", [p for _, p in CLIENT_CLOSES], ids=[i for i, _ in CLIENT_CLOSES]
)
async def test_client_close(
    payload: bytes, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    async def play(c: RawClient) -> None:
        await c.write(frame(OP_TEXT, b"before close"))
        await c.until_messages(1)
        await c.close(payload)

    async with gate(server, relay, tmp_path) as g:
        direct = await raw_both(g, play)
    server_frames_unmasked(direct)
    code = int.from_bytes(payload[:2], "big") if payload else 1005
    client_closed_cleanly(direct, code)
    if server is None:  # websockets records the reason as text
        assert direct.server.events[-1][2] == payload[2:].decode()
    else:
        assert direct.server.events[-1][2] == payload[2:].hex()


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "bye"), (3000, "x"), (4999, "r" * 123)],
    ids=["1000", "1001", "3000", "4999-123-byte-reason"],
)
async def test_client_close_library_client(
    code: int, reason: str, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    async def play(ws: ClientConnection) -> None:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.close(code, reason)

    async with gate(server, relay, tmp_path) as g:
        direct = await lib_both(g, play)
    client_closed_cleanly(direct, code)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (4000, "bye"), (1011, "r" * 123)],
    ids=["1000", "4000-reason", "1011-123-byte-reason"],
)
async def test_server_close(
    code: int, reason: str, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    async def play(c: RawClient) -> None:
        await c.until_close()
        await c.close(None)  # echoes the code

    async with gate(server, relay, tmp_path) as g:
        direct = await raw_both(g, play, f"?close={code}&reason={reason}")
    assert [f.opcode for f in direct.frames] == [OP_CLOSE]
    assert direct.frames[0].payload == close_payload(code, reason.encode())
    assert direct.server.events[-1][:2] == ("close", code)


BAD_CLOSES = [
    Case("code-999", (frame(OP_CLOSE, close_payload(999)),), fails=1002),
    Case("code-1004", (frame(OP_CLOSE, close_payload(1004)),), fails=1002),
    Case("code-1005-on-the-wire", (frame(OP_CLOSE, close_payload(1005)),), fails=1002),
    Case("code-1006-on-the-wire", (frame(OP_CLOSE, close_payload(1006)),), fails=1002),
    Case("code-1015-on-the-wire", (frame(OP_CLOSE, close_payload(1015)),), fails=1002),
    Case("code-5000", (frame(OP_CLOSE, close_payload(5000)),), fails=1002),
    Case("one-byte-payload", (frame(OP_CLOSE, b"\x03"),), fails=1002),
    Case("reason-not-utf8", (frame(OP_CLOSE, close_payload(1000, b"\xff")),), fails=1007),
]


@pytest.mark.parametrize("case", BAD_CLOSES, ids=lambda case: case.id)
async def test_bad_close(case: Case, server: Recorder | None, relay: str, tmp_path: Path) -> None:
    await run_case(server, relay, tmp_path, case)


# -- 7. protocol errors: the server rejects, the proxy passes through -------------------------

PROTOCOL_ERRORS = [
    Case("rsv1-without-extension", (frame(OP_TEXT, b"x", rsv=4),), fails=1002),
    Case("rsv2", (frame(OP_TEXT, b"x", rsv=2),), fails=1002),
    Case("rsv3", (frame(OP_BINARY, b"x", rsv=1),), fails=1002),
    Case("unmasked-client-frame", (frame(OP_TEXT, b"x", mask=None),), fails=1002),
    Case("opcode-3", (frame(0x3, b"x"),), fails=1002),
    Case("opcode-0xb", (frame(0xB, b"x"),), fails=1002),
    Case("ping-126-bytes", (frame(OP_PING, b"p" * 126),), fails=1002),
    Case("close-126-bytes", (frame(OP_CLOSE, close_payload(1000, b"r" * 124)),), fails=1002),
    Case("fragmented-ping", (frame(OP_PING, b"p", fin=False),), fails=1002),
    Case("continuation-without-start", (frame(OP_CONT, b"x"),), fails=1002),
    Case(
        "new-message-inside-fragmented",
        (frame(OP_TEXT, b"a", fin=False), frame(OP_BINARY, b"b")),
        fails=1002,
    ),
    Case(
        "non-minimal-length",  # accepted by both servers: RFC 6455 says MUST, they don't check
        (frame(OP_TEXT, b"16-bit", length_bytes=2), frame(OP_TEXT, b"64-bit", length_bytes=8)),
        ((OP_TEXT, b"16-bit"), (OP_TEXT, b"64-bit")),
    ),
]


@pytest.mark.parametrize("case", PROTOCOL_ERRORS, ids=lambda case: case.id)
async def test_protocol_errors(
    case: Case, server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    await run_case(server, relay, tmp_path, case)


# -- 8. ping and pong -------------------------------------------------------------------------

PINGS = [
    Case("client-ping-payload", (frame(OP_PING, b"are you there"),), pongs=(b"are you there",)),
    Case("client-ping-empty", (frame(OP_PING),), pongs=(b"",)),
    Case("client-ping-125-bytes", (frame(OP_PING, binary(125)),), pongs=(binary(125),)),
    Case(
        "client-pings-around-a-message",
        # One write: websockets answers Pings at once but echoes from its handler task,
        # so frames read apart could be answered in either order.
        (frame(OP_PING, b"1") + frame(OP_TEXT, b"m") + frame(OP_PING, b"2"),),
        ((OP_TEXT, b"m"),),
        pongs=(b"1", b"2"),
    ),
    Case(
        "unsolicited-pong",
        (frame(OP_PONG, b"heartbeat"), frame(OP_TEXT, b"after")),
        ((OP_TEXT, b"after"),),
    ),
]


@pytest.mark.parametrize("case", PINGS, ids=lambda case: case.id)
async def test_client_ping(case: Case, server: Recorder | None, relay: str, tmp_path: Path) -> None:
    await run_case(server, relay, tmp_path, case)


async def test_server_ping(server: Recorder | None, relay: str, tmp_path: Path) -> None:
    async def play(c: RawClient) -> None:
        frames = await c.until(lambda frames: any(f.opcode == OP_PING for f in frames))
        ping = next(f for f in frames if f.opcode == OP_PING)
        await c.write(frame(OP_PONG, ping.payload))
        await c.until_messages(1)
        await c.close()

    async with gate(server, relay, tmp_path) as g:
        direct = await raw_both(g, play, "?ping=knock")
    assert direct.frames[0].opcode == OP_PING and direct.frames[0].payload == b"knock"
    assert messages(direct.frames) == [(OP_TEXT, b"pong:knock")]
    assert ("pong", b"knock".hex()) in direct.server.events
    client_closed_cleanly(direct)


async def test_ping_pong_library_client(
    server: Recorder | None, relay: str, tmp_path: Path
) -> None:
    async def play(ws: ClientConnection) -> str | bytes:
        # The server's answer to the client's automatic Pong, then the client's own Ping.
        answer = await ws.recv()
        pong = await ws.ping(b"client ping")
        await pong  # the server's Pong came back through the proxy
        return answer

    async with gate(server, relay, tmp_path) as g:
        direct = await lib_both(g, play, "?ping=server%20ping")
    assert direct.result == "pong:server ping"
    assert ("pong", b"server ping".hex()) in direct.server.events
    pongs = [f.payload for f in direct.frames if f.opcode == OP_PONG]
    assert pongs == [b"client ping"]
