"""The frame-aware tunnel's features with real WebSocket peers (docs/websocket.md).

Clients and backends are the websockets library, or raw sockets where a peer must
misbehave (never answer a Ping, record the exact bytes it gets).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode

from tests.support.backend import websocket_accept
from tests.support.confs import article_conf
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process

WAIT = 10.0  # bound on every wait in this file


class Backend:
    """A websockets echo server that records what each connection saw."""

    def __init__(self, factor: int = 1) -> None:
        self.port = 0
        self.factor = factor  # the echo repeats each message this many times
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self.closed = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        try:
            async for message in ws:
                self.received.append(message)
                await ws.send(message * self.factor)
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        self.close_codes.append(rcvd.code if rcvd is not None else None)
        self.closed.set()


@asynccontextmanager
async def backend(factor: int = 1, compression: str | None = None) -> AsyncIterator[Backend]:
    b = Backend(factor)
    async with serve(
        b.handler, "127.0.0.1", 0, ping_interval=None, compression=compression, max_size=None
    ) as server:
        b.port = server.sockets[0].getsockname()[1] if server.sockets else 0
        yield b


class RawBackend:
    """Answers the handshake with a 101, then records every byte and sends nothing (a
    backend that never answers Pings); with ``answer_close`` it answers a Close frame
    with its own and closes."""

    def __init__(self, answer_close: bool = False) -> None:
        self.port = 0
        self.data = bytearray()
        self.got = asyncio.Event()
        self.answer_close = answer_close
        self.ended = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + websocket_accept(key) + b"\r\n\r\n"
        )
        while chunk := await reader.read(65536):
            self.data += chunk
            self.got.set()
            frames = parse_client_frames_lenient(bytes(self.data))
            if self.answer_close and any(op == Opcode.CLOSE.value for op, _ in frames):
                writer.write(Frame(Opcode.CLOSE, Close(1000, "").serialize()).serialize(mask=False))
                break
        self.ended.set()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def raw_client(
    port: int, path: str = "/"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A handshake by hand; returns the streams positioned after the 101 head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), WAIT)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await asyncio.wait_for(reader.readexactly(n), WAIT)


def masked(opcode: Opcode, payload: bytes = b"") -> bytes:
    return Frame(opcode, payload).serialize(mask=True)


def conf(
    port: int,
    backends: list[int],
    tmp_path: Path,
    extra: str,
    log: bool = False,
    read_timeout: str = "300s",
) -> str:
    extra_http = ""
    access = "logs/access.log"
    if log:
        extra_http = "log_format ws '$status $ws_messages_in $ws_messages_out $ws_close_code';"
        access = f"{tmp_path}/ws.log ws"
    return article_conf(
        port,
        backends,
        extra_location=extra,
        extra_http=extra_http,
        access_log=access,
        read_timeout=read_timeout,
    )


async def wait_for_line(path: Path, needle: str) -> str:
    async with asyncio.timeout(WAIT):
        while True:
            if path.exists():
                for line in path.read_text().splitlines():
                    if needle in line:
                        return line
            await asyncio.sleep(0.02)


# -- transparency with the features on --------------------------------------------------


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
async def test_echo_through_frame_aware_tunnel(tmp_path: Path, compression: str | None) -> None:
    port = free_port()
    async with backend(compression=compression) as b:
        extra = "websocket_max_message_size 4m; websocket_ping_interval 30s;"
        async with proxy_in_process(conf(port, [b.port], tmp_path, extra), tmp_path):
            async with connect(
                f"ws://127.0.0.1:{port}/", max_size=None, compression=compression
            ) as ws:
                for size in (0, 1, 125, 126, 65535, 65536, 1 << 20):
                    data = os.urandom(size)
                    await ws.send(data)
                    assert await ws.recv() == data
                await ws.send(["frag", "mented", " text"])
                assert await ws.recv() == "fragmented text"
                await asyncio.wait_for(await ws.ping(b"client-ping"), WAIT)


# -- pings -------------------------------------------------------------------------------


async def test_ping_is_answered_and_its_pong_consumed(tmp_path: Path) -> None:
    port = free_port()
    raw = RawBackend()
    await raw.start()
    try:
        extra = "websocket_ping_interval 200ms; websocket_ping_timeout 2s;"
        async with proxy_in_process(conf(port, [raw.port], tmp_path, extra), tmp_path):
            reader, writer = await raw_client(port)
            opcode, payload = await read_frame(reader)
            assert opcode == Opcode.PING.value and payload.startswith(b"wsgate ")
            writer.write(masked(Opcode.PONG, payload))
            # A Pong the proxy did not ask for passes, as does the data after it.
            writer.write(masked(Opcode.PONG, b"mine") + masked(Opcode.TEXT, b"after"))
            expected = masked(Opcode.PONG, b"mine")
            async with asyncio.timeout(WAIT):
                while len(raw.data) < 2 * len(expected) + 1:
                    raw.got.clear()
                    await raw.got.wait()
            # Masks differ per frame: compare the unmasked frames the backend got.
            frames = parse_client_frames(bytes(raw.data))
            assert frames[:2] == [(Opcode.PONG.value, b"mine"), (Opcode.TEXT.value, b"after")]
            # The client keeps answering: the tunnel stays up through several intervals.
            for _ in range(3):
                opcode, payload = await read_frame(reader)
                assert opcode == Opcode.PING.value
                writer.write(masked(Opcode.PONG, payload))
            assert all(op != Opcode.PONG.value or p == b"mine" for op, p in frames)
            writer.close()
    finally:
        await raw.close()


def parse_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        b0, b1 = data[0], data[1]
        n = b1 & 0x7F
        at = 2
        if n == 126:
            (n,) = struct.unpack_from("!H", data, 2)
            at = 4
        key = data[at : at + 4]
        at += 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[at : at + n]))
        out.append((b0 & 0x0F, payload))
        data = data[at + n :]
    return out


async def test_client_that_never_answers_is_cut_and_backend_gets_1001(tmp_path: Path) -> None:
    port = free_port()
    async with backend() as b:
        extra = "websocket_ping_interval 200ms; websocket_ping_timeout 300ms;"
        async with proxy_in_process(conf(port, [b.port], tmp_path, extra, log=True), tmp_path):
            reader, writer = await raw_client(port)
            opcode, _ = await read_frame(reader)
            assert opcode == Opcode.PING.value
            # Say nothing: the proxy cuts this connection...
            async with asyncio.timeout(WAIT):
                assert await reader.read() == b""
            # ...and closes the backend's side with 1001.
            await asyncio.wait_for(b.closed.wait(), WAIT)
            assert b.close_codes == [1001]
            line = await wait_for_line(tmp_path / "ws.log", "101 ")
            assert line == "101 0 0 1006"
            errors = (tmp_path / "logs" / "error.log").read_text()
            assert "client did not answer ping" in errors
            writer.close()


async def test_backend_that_never_answers_is_cut_and_client_gets_1001(tmp_path: Path) -> None:
    port = free_port()
    raw = RawBackend()
    await raw.start()
    try:
        extra = (
            "websocket_ping_interval 200ms; websocket_ping_timeout 300ms;"
            " websocket_ping_upstream on;"
        )
        async with proxy_in_process(conf(port, [raw.port], tmp_path, extra), tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            await asyncio.wait_for(raw.ended.wait(), WAIT)
            # The backend got a masked Ping (it is wsgate's client side) and nothing else.
            frames = parse_client_frames(bytes(raw.data))
            assert frames and frames[0][0] == Opcode.PING.value
    finally:
        await raw.close()


async def test_live_websockets_client_survives_many_intervals(tmp_path: Path) -> None:
    """A real client answers wsgate's Pings itself: the tunnel outlives proxy_read_timeout
    and the backend never sees a Pong."""
    port = free_port()
    async with backend() as b:
        extra = "websocket_ping_interval 100ms; websocket_ping_timeout 500ms;"
        text = conf(port, [b.port], tmp_path, extra, read_timeout="400ms")
        async with proxy_in_process(text, tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as ws:
                for i in range(4):
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"m{i}"
                    # Silent for longer than proxy_read_timeout: only Pings keep it up.
                    await asyncio.sleep(0.6)
                await ws.send("last")
                assert await ws.recv() == "last"
            assert b.received == ["m0", "m1", "m2", "m3", "last"]


# -- size limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("websocket_max_message_size 1k;", "x" * 1025),
        ("websocket_max_message_size 1k;", ["x" * 600, "x" * 600]),
        ("websocket_max_frame_size 1k;", "x" * 1025),
    ],
    ids=["message", "fragmented-message", "frame"],
)
async def test_too_big_closes_sender_1009_and_peer_1001(
    tmp_path: Path, extra: str, message: str | list[str]
) -> None:
    port = free_port()
    async with backend() as b:
        async with proxy_in_process(conf(port, [b.port], tmp_path, extra, log=True), tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("x" * 1024)  # at the limit: passes
                assert await ws.recv() == "x" * 1024
                await ws.send(message)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            await asyncio.wait_for(b.closed.wait(), WAIT)
            assert b.close_codes == [1001]
            # The backend never saw any part of the message over the limit.
            assert b.received == ["x" * 1024]
            line = await wait_for_line(tmp_path / "ws.log", "101 ")
            assert line == "101 1 1 1009"
            errors = (tmp_path / "logs" / "error.log").read_text()
            assert "client sent too large WebSocket" in errors


async def test_too_big_from_backend_closes_backend_1009_client_1001(tmp_path: Path) -> None:
    port = free_port()
    async with backend(factor=2) as b:
        extra = "websocket_max_message_size 100;"
        async with proxy_in_process(conf(port, [b.port], tmp_path, extra), tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("y" * 50)  # the backend answers with 100: at the limit
                assert await ws.recv() == "y" * 100
                await ws.send("y" * 60)  # the backend's 120 are over it
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            await asyncio.wait_for(b.closed.wait(), WAIT)
            assert b.close_codes == [1009]
            errors = (tmp_path / "logs" / "error.log").read_text()
            assert "upstream sent too large WebSocket message of more than 100 bytes" in errors


# -- close codes in the log --------------------------------------------------------------


async def test_messages_and_close_code_are_logged(tmp_path: Path) -> None:
    port = free_port()
    async with backend() as b:
        async with proxy_in_process(conf(port, [b.port], tmp_path, "", log=True), tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                for i in range(3):
                    await ws.send(f"{i}")
                    assert await ws.recv() == f"{i}"
                await ws.send(["a", "b", "c"])
                assert await ws.recv() == "abc"
                await ws.close(4321, "bye")
            line = await wait_for_line(tmp_path / "ws.log", "101 ")
            assert line == "101 4 4 4321"
            await asyncio.wait_for(b.closed.wait(), WAIT)
            assert b.close_codes == [4321]


async def test_plain_location_logs_dashes(tmp_path: Path) -> None:
    """Without the features the tunnel is the plain relay; $ws_* variables print "-"
    only where no frames were tracked (here, a plain HTTP request)."""
    port = free_port()
    async with backend() as b:
        async with proxy_in_process(conf(port, [b.port], tmp_path, "", log=True), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
            line = await wait_for_line(tmp_path / "ws.log", " - - -")
            assert line.endswith(" - - -")


# -- drain -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reload", "directive", "code"),
    [
        (False, "websocket_drain on;", 1001),
        (True, "websocket_drain on;", 1012),
        (False, "websocket_drain on quit=4000 reload=4001;", 4000),
        (True, "websocket_drain on quit=4000 reload=4001;", 4001),
    ],
    ids=["quit", "reload", "quit-code", "reload-code"],
)
async def test_drain_closes_both_sides_with_close_frames(
    tmp_path: Path, reload: bool, directive: str, code: int
) -> None:
    port = free_port()
    async with backend() as b:
        async with proxy_in_process(
            conf(port, [b.port], tmp_path, directive, log=True), tmp_path
        ) as worker:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                stopping = asyncio.create_task(
                    worker.stop(graceful=True, timeout=0.3, reload=reload)
                )
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert info.value.rcvd is not None and info.value.rcvd.code == code
                await asyncio.wait_for(stopping, WAIT)
            await asyncio.wait_for(b.closed.wait(), WAIT)
            assert b.close_codes == [code]
            line = await wait_for_line(tmp_path / "ws.log", "101 ")
            assert line == f"101 1 1 {code}"


async def test_reload_waits_for_shutdown_timeout_before_closing(tmp_path: Path) -> None:
    port = free_port()
    async with backend() as b:
        async with proxy_in_process(
            conf(port, [b.port], tmp_path, "websocket_drain on;"), tmp_path
        ) as worker:
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                stopping = asyncio.create_task(worker.stop(graceful=True, timeout=1.0, reload=True))
                # Until worker_shutdown_timeout passes, the tunnel works as before.
                for i in range(5):
                    await ws.send(f"still {i}")
                    assert await ws.recv() == f"still {i}"
                assert not stopping.done()
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), WAIT)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1012
                await asyncio.wait_for(stopping, WAIT)


async def test_upgrade_on_draining_worker_gets_503_retry_after(tmp_path: Path) -> None:
    port = free_port()
    async with backend() as b:
        directive = "websocket_drain on retry_after=7s;"
        async with proxy_in_process(conf(port, [b.port], tmp_path, directive), tmp_path) as worker:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            key = base64.b64encode(os.urandom(16)).decode()
            head = (
                f"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            writer.write(head[:20])  # a request in progress when the worker starts draining
            await writer.drain()
            async with connect(f"ws://127.0.0.1:{port}/") as ws:  # keeps the worker busy
                stopping = asyncio.create_task(worker.stop(graceful=True, timeout=WAIT))
                await asyncio.sleep(0)
                writer.write(head[20:])
                response = await asyncio.wait_for(reader.read(), WAIT)
                assert response.startswith(b"HTTP/1.1 503 Service Temporarily Unavailable\r\n")
                assert b"\r\nRetry-After: 7\r\n" in response
                assert b"\r\nConnection: close\r\n" in response
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), WAIT)
            await asyncio.wait_for(stopping, WAIT)
            writer.close()
            assert b.close_codes == [1001]


async def test_drain_waits_for_the_frame_boundary(tmp_path: Path) -> None:
    """A Close never lands inside a frame: a frame in progress toward the client is
    finished first, then the Close follows."""
    port = free_port()
    raw = RawBackend(answer_close=True)
    await raw.start()
    try:
        async with proxy_in_process(
            conf(port, [raw.port], tmp_path, "websocket_drain on;"), tmp_path
        ) as worker:
            # A frame toward the backend is in progress when the worker drains.
            reader, writer = await raw_client(port)
            frame = masked(Opcode.BINARY, b"q" * 1000)
            writer.write(frame[:100])
            async with asyncio.timeout(WAIT):
                while len(raw.data) < 100:
                    raw.got.clear()
                    await raw.got.wait()
            stopping = asyncio.create_task(worker.stop(graceful=True, timeout=WAIT))
            # The client gets its Close at once (nothing was in progress toward it)...
            opcode, payload = await read_frame(reader)
            assert (opcode, payload[:2]) == (Opcode.CLOSE.value, struct.pack("!H", 1001))
            # ...the backend only after the rest of the frame that was in progress.
            writer.write(frame[100:])
            writer.write(masked(Opcode.CLOSE, Close(1001, "").serialize()))
            async with asyncio.timeout(WAIT):
                while len(parse_client_frames_lenient(bytes(raw.data))) < 2:
                    raw.got.clear()
                    await raw.got.wait()
            frames = parse_client_frames_lenient(bytes(raw.data))
            assert frames[0] == (Opcode.BINARY.value, b"q" * 1000)
            assert frames[1][0] == Opcode.CLOSE.value and frames[1][1][:2] == b"\x03\xe9"
            await asyncio.wait_for(stopping, WAIT)
            writer.close()
    finally:
        await raw.close()


def parse_client_frames_lenient(data: bytes) -> list[tuple[int, bytes]]:
    """Whole masked frames at the start of ``data`` (an incomplete last one is left)."""
    out = []
    while len(data) >= 2:
        b1 = data[1]
        n = b1 & 0x7F
        at = 2
        if n == 126:
            if len(data) < 4:
                break
            (n,) = struct.unpack_from("!H", data, 2)
            at = 4
        if len(data) < at + 4 + n:
            break
        key = data[at : at + 4]
        at += 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[at : at + n]))
        out.append((data[0] & 0x0F, payload))
        data = data[at + n :]
    return out
