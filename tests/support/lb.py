"""Clients and stub peers for load-balancing tests (wsgate or nginx in front).

* :func:`get` sends one request on a fresh connection, optionally from a chosen source
  address (``127.0.0.x``, ``127.x.y.z``: all of 127/8 is loopback on Linux, which is how
  ``ip_hash`` tests get many clients), and returns the status and ``X-Backend``.
* :func:`open_tunnel` performs a WebSocket handshake through the proxy to a
  :class:`~tests.support.backend.RecordingBackend` (which echoes after its 101) and
  returns the open :class:`WsTunnel`.
* :class:`StubPeer` is a peer that misbehaves on purpose: it accepts and never answers
  (``silent``), or answers every request with one status (``status=502``).
* :func:`tried_lines` parses access-log lines written with :data:`TRIED_FORMAT`.

Every read is bounded by :data:`IO_TIMEOUT`.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Self

__all__ = [
    "IO_TIMEOUT",
    "TRIED_FORMAT",
    "PeerServer",
    "Reply",
    "StubPeer",
    "Tried",
    "WsTunnel",
    "get",
    "open_tunnel",
    "tried_lines",
]

IO_TIMEOUT = 10.0  # seconds for one exchange with the proxy
TRIED_FORMAT = '"$upstream_addr|$upstream_status|$status"'  # a log_format value


@dataclass(frozen=True, slots=True)
class Reply:
    """A response head as the client saw it."""

    status: int
    headers: dict[str, str]  # names lower-cased; the last line of a name wins
    body: bytes

    @property
    def backend(self) -> str | None:
        """``X-Backend`` (the recording backend's name), or ``None``."""
        return self.headers.get("x-backend")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _connect(
    port: int, source: str | None, host: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = (source, 0) if source is not None else None
    return await asyncio.open_connection(host, port, local_addr=local)


async def get(
    port: int,
    path: str = "/",
    *,
    source: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Reply:
    """One request with ``Connection: close`` on a new connection; reads to EOF.

    The proxy writes its access-log line before it closes the connection, so the line
    is in the file when this returns.
    """
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await _connect(port, source)
        try:
            length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
            request = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{length}\r\n"
            writer.write(request.encode() + (body or b""))
            data = await reader.read(-1)
        finally:
            writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status, headers = _parse_head(head)
    return Reply(status, headers, rest)


@dataclass(slots=True)
class WsTunnel:
    """An upgraded connection through the proxy (bytes are echoed by the backend)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reply: Reply

    @property
    def backend(self) -> str | None:
        return self.reply.backend

    async def echo(self, data: bytes) -> bytes:
        """Send ``data`` and read as many bytes back."""
        self.writer.write(data)
        async with asyncio.timeout(IO_TIMEOUT):
            return await self.reader.readexactly(len(data))

    async def eof(self) -> bool:
        """Wait until the proxy closes the connection; ``True`` on a clean EOF."""
        async with asyncio.timeout(IO_TIMEOUT):
            try:
                return await self.reader.read(1) == b""
            except ConnectionError:
                return True

    async def close(self) -> None:
        """Close our side; the proxy then ends the tunnel and frees the peer."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def open_tunnel(port: int, path: str = "/ws", *, source: str | None = None) -> WsTunnel:
    """Handshake through the proxy; the reply is a 101 (or whatever came back)."""
    key = base64.b64encode(os.urandom(16)).decode()
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await _connect(port, source)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
    status, headers = _parse_head(head)
    return WsTunnel(reader, writer, Reply(status, headers, b""))


@dataclass(frozen=True, slots=True)
class Tried:
    """One access-log line of :data:`TRIED_FORMAT`."""

    addrs: tuple[str, ...]  # $upstream_addr, one per attempt
    statuses: tuple[str, ...]  # $upstream_status, one per attempt
    status: int  # $status


def tried_lines(text: str) -> list[Tried]:
    """Parse an access log written with :data:`TRIED_FORMAT`."""
    out = []
    for line in text.splitlines():
        addrs, statuses, status = line.rsplit("|", 2)
        out.append(Tried(tuple(addrs.split(", ")), tuple(statuses.split(", ")), int(status)))
    return out


class PeerServer(abc.ABC):
    """What the test peers share: a listener on 127.0.0.1 (a free port unless one is
    given) for the ``async with`` block, the connections and their tasks (so that the
    block's end stops them all), and ``_changed``, set whenever something a test waits
    on changed.

    A subclass writes :meth:`_serve`, calls :meth:`_track` first and :meth:`_untrack` in
    its ``finally``, and may override :meth:`_drop_connections` (default: reset them).
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port  # 0: a free one, chosen when the block starts
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _drop_connections(self) -> None:
        """At the block's end: reset every connection still open."""
        for writer in list(self._writers):
            writer.transport.abort()

    def _track(self, writer: asyncio.StreamWriter) -> asyncio.Task[None]:
        """Start of :meth:`_serve`: remember this connection and its task."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        return task

    def _untrack(self, writer: asyncio.StreamWriter, task: asyncio.Task[None]) -> None:
        """End of :meth:`_serve` (its ``finally``): close and forget the connection."""
        self._writers.discard(writer)
        writer.close()
        self._tasks.discard(task)

    @abc.abstractmethod
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Talk to one connection."""


class StubPeer(PeerServer):
    """A peer that misbehaves: ``silent`` reads requests and never answers; otherwise
    every request head gets ``status`` with ``X-Backend: NAME`` and an empty body.

    ``requests`` counts request heads received; :meth:`wait_requests` waits for a count.
    """

    def __init__(self, name: str, *, status: int | None = None) -> None:
        super().__init__()
        self.name = name
        self.status = status
        self.requests = 0

    async def wait_requests(self, count: int) -> None:
        """Return once ``count`` request heads have arrived (bounded by the caller)."""
        while self.requests < count:
            self._changed.clear()
            await self._changed.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = self._track(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                self._changed.set()
                if self.status is None:
                    await reader.read(-1)  # silent: hold the connection until the peer goes
                    return
                writer.write(
                    f"HTTP/1.1 {self.status} Stub\r\nX-Backend: {self.name}\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._untrack(writer, task)
