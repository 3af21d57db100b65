"""Recording WebSocket echo servers for the transparency tests: ``websockets`` and node ``ws``.

Both behave the same way (see ``ws_recording_server.js``):

* a WebSocket at ``/TAG`` echoes every message with its type; ``?close=CODE&reason=TEXT``
  makes the server start the closing handshake right after its 101, ``?ping=TEXT`` makes it
  send a Ping and answer the Pong with a text message ``pong:PAYLOAD``;
* :meth:`record` waits until connection ``TAG`` is over and returns what the server saw: its
  events (messages as ``(type, length, digest)``, pongs, errors, the close) and every byte
  it received after the request head.

:class:`PyRecordingServer` runs on the test's event loop; :func:`node_recording_server` runs
node as a process (its ``GET /events/TAG`` answers once the connection is closed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.support.ports import free_port
from tests.support.procs import REPO, node_module, running

__all__ = [
    "RECORD_TIMEOUT",
    "KeepsBytes",
    "PyRecordingServer",
    "Recorder",
    "ServerRecord",
    "digest",
    "node_recording_server",
]

RECORD_TIMEOUT = 10.0
NODE_SCRIPT = REPO / "tests" / "support" / "ws_recording_server.js"


def digest(data: bytes) -> str:
    """The digest both servers record for a message (16 hex digits of SHA-256)."""
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """What a server saw on one connection."""

    events: tuple[tuple[Any, ...], ...]
    raw: bytes  # received after the request head


class Recorder(Protocol):
    """A running recording server."""

    @property
    def port(self) -> int: ...

    async def record(self, tag: str) -> ServerRecord: ...


class KeepsBytes:
    """Mixed into a ``websockets`` connection class (before it): every byte the
    connection receives is kept in ``raw_in`` too."""

    raw_in: bytearray

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_in = bytearray()

    def data_received(self, data: bytes) -> None:
        self.raw_in += data
        super().data_received(data)


class _RecordingConnection(KeepsBytes, ServerConnection):
    """A ``websockets`` server connection that keeps every byte it receives."""


class PyRecordingServer:
    """The recording server on ``websockets`` (permessage-deflate accepted when offered)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: Server | None = None
        self._records: dict[str, ServerRecord] = {}
        self._done: dict[str, asyncio.Event] = {}

    def _event(self, tag: str) -> asyncio.Event:
        return self._done.setdefault(tag, asyncio.Event())

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            create_connection=_RecordingConnection,
            compression="deflate",
            max_size=None,
            ping_interval=None,
            close_timeout=RECORD_TIMEOUT,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def record(self, tag: str) -> ServerRecord:
        async with asyncio.timeout(RECORD_TIMEOUT):
            await self._event(tag).wait()
        return self._records[tag]

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _RecordingConnection) and ws.request is not None
        url = urllib.parse.urlsplit(ws.request.path)
        tag = url.path[1:]
        query = dict(urllib.parse.parse_qsl(url.query))
        events: list[tuple[Any, ...]] = []
        pong_task: asyncio.Task[None] | None = None
        try:
            if "ping" in query:
                pong = await ws.ping(query["ping"].encode())

                async def answer() -> None:
                    await pong
                    events.append(("pong", query["ping"].encode().hex()))
                    await ws.send("pong:" + query["ping"])

                pong_task = asyncio.create_task(answer())
            if "close" in query:
                await ws.close(int(query["close"]), query.get("reason", ""))
            async for message in ws:
                if isinstance(message, str):
                    data = message.encode()
                    events.append(("text", len(data), digest(data)))
                else:
                    events.append(("binary", len(message), digest(message)))
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            if pong_task is not None:
                pong_task.cancel()
                await asyncio.gather(pong_task, return_exceptions=True)
            rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
            events.append(
                (
                    "close",
                    None if rcvd is None else rcvd.code,
                    None if rcvd is None else rcvd.reason,
                    None if sent is None else sent.code,
                    None if sent is None else sent.reason,
                )
            )
            raw = bytes(ws.raw_in).partition(b"\r\n\r\n")[2]
            self._records[tag] = ServerRecord(tuple(events), raw)
            self._event(tag).set()


@dataclass(frozen=True, slots=True)
class _NodeServer:
    port: int

    async def record(self, tag: str) -> ServerRecord:
        async with asyncio.timeout(RECORD_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                writer.write(
                    f"GET /events/{tag} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = await reader.read(-1)
            finally:
                writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        answer = json.loads(body)
        events = tuple(tuple(event) for event in answer["events"])
        return ServerRecord(events, base64.b64decode(answer["raw"]))


@contextmanager
def node_recording_server() -> Iterator[Recorder]:
    """Run ``ws_recording_server.js`` on a free port (skips, or fails under
    WSGATE_REQUIRE_PEERS=1, when node or npm's ``ws`` is missing)."""
    node_module("ws")
    port = free_port()
    env = {"NODE_PATH": str(REPO / "node_modules")}
    with running(["node", str(NODE_SCRIPT), str(port)], port=port, env=env):
        yield _NodeServer(port)
