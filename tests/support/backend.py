"""A recording HTTP/1.1 backend for proxy tests (nginx-semantics.md Appendix A).

Use it in-process::

    async with RecordingBackend("b1") as backend:
        ...  # point the proxy at 127.0.0.1:backend.port
        assert backend.heads[0].startswith(b"GET / HTTP/1.0\\r\\n")

or as a process, for a peer that runs elsewhere (prints ``ready`` once it listens; with
``--port 0`` a line ``port N`` comes first)::

    python -m tests.support.backend --port 8081 --name b1

Behaviour is chosen by the request path (the query string is ignored):

=====================  ================================================================
``/ws...`` + Upgrade   ``101 Switching Protocols`` with ``Sec-WebSocket-Accept`` for the
                       key, then every byte received is sent back as is until EOF
``/status/NNN``        status NNN (body = the request head, none for 1xx/204/304)
``/chunked``           200 with a chunked body of three chunks (:data:`CHUNKS`)
``/close-delimited``   ``HTTP/1.0 200 OK`` without ``Content-Length``; the body ends by close
``/426``               ``426 Upgrade Required`` with ``Upgrade: websocket``
``/sleep/SECONDS``     waits SECONDS (a float), then as the default
``/slam``              closes the connection without answering
``?location=URL``      (any path) ``302 Found`` with ``Location: URL`` (percent-decoded),
                       and ``Refresh: 0; url=URL`` too if the query has ``refresh=1``
anything else          200, body = the raw request head
=====================  ================================================================

Every response carries ``X-Backend: NAME``. Each request head is recorded byte for byte in
``heads`` (up to and including the blank line), and its body, de-chunked, in ``bodies``.
Connections are kept alive as HTTP/1.x says (``Connection: close``, HTTP/1.0 without
``keep-alive``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import signal
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

__all__ = ["CHUNKS", "RecordingBackend", "Request", "main", "websocket_accept"]

HEAD_LIMIT = 64 * 1024  # largest request head accepted; nginx sends far less
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
CHUNKS = (b"first chunk\n", b"second chunk\n", b"third chunk\n")
CLOSE_DELIMITED_BODY = b"body ended by close\n"
NO_BODY = frozenset({204, 304})
REASONS = {
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def websocket_accept(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.strip() + WS_GUID).digest())


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request head (names lower-cased; values as received, stripped)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, bytes], ...]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> bytes | None:
        """The first value of header ``name``, or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def has_token(self, name: str, token: str) -> bool:
        """Whether any ``name`` header lists ``token`` (comma-separated, any case)."""
        wanted = token.lower()
        return any(
            part.strip().decode("latin-1").lower() == wanted
            for key, value in self.headers
            if key == name
            for part in value.split(b",")
        )

    @property
    def keep_alive(self) -> bool:
        if self.has_token("connection", "close"):
            return False
        if self.version == "HTTP/1.0":
            return self.has_token("connection", "keep-alive")
        return True


def parse_head(head: bytes) -> Request:
    """Parse a request head ending in CRLFCRLF.

    Raises:
        ValueError: the request line or a header line is malformed.
    """
    lines = head[:-4].split(b"\r\n")
    # The target may hold a raw space: nginx sends decoded regex captures unescaped.
    method, rest = lines[0].decode("latin-1").split(" ", 1)
    target, version = rest.rsplit(" ", 1)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad header line {line!r}")
        headers.append((name.decode("latin-1").lower(), value.strip()))
    return Request(method, target, version, tuple(headers))


async def read_body(reader: asyncio.StreamReader, request: Request) -> bytes:
    """Read the request body (``Content-Length`` or chunked) and return it de-chunked."""
    if request.has_token("transfer-encoding", "chunked"):
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)  # CRLF after the chunk data
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields
            pass
        return bytes(body)
    length = request.header("content-length")
    if length is None:
        return b""
    return await reader.readexactly(int(length))


class RecordingBackend:
    """An asyncio HTTP/1.1 backend that records what it receives (see the module docstring).

    Args:
        name: sent back in ``X-Backend``.
        port: 0 picks a free port; read :attr:`port` after start.
        host: address to listen on.
    """

    def __init__(self, name: str = "backend", port: int = 0, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = port
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._new_head = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        """Listen; on return :attr:`port` accepts connections."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=HEAD_LIMIT
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop every open connection (idempotent)."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Drop connections before wait_closed(): from Python 3.12 it waits for them.
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def wait_heads(self, count: int) -> None:
        """Return once at least ``count`` request heads were recorded (no timeout: wrap it)."""
        while len(self.heads) < count:
            self._new_head.clear()
            await self._new_head.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass  # the peer went away or sent garbage: just close
        except asyncio.CancelledError:
            # close() cancels us. Ending normally keeps asyncio's start_server callback from
            # logging the cancellation as an error (it calls task.exception()).
            if not self._closing:
                raise
        finally:
            self._writers.discard(writer)
            writer.close()
            self._tasks.discard(task)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; ``True`` to read another on this connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # EOF between requests
        self.heads.append(head)  # recorded even if it does not parse (then: close)
        self._new_head.set()
        request = parse_head(head)
        body = await read_body(reader, request)
        self.bodies.append(body)

        path = request.path
        if path.startswith("/ws") and request.header("upgrade") is not None:
            await self._upgrade(request, reader, writer)
            return False
        if path == "/slam":
            return False
        if path == "/close-delimited":
            writer.write(
                b"HTTP/1.0 200 OK\r\nX-Backend: "
                + self.name.encode()
                + b"\r\nContent-Type: text/plain\r\n\r\n"
                + CLOSE_DELIMITED_BODY
            )
            await writer.drain()
            return False
        if path == "/chunked":
            self._respond(writer, 200, [(b"Transfer-Encoding", b"chunked")], None, length=False)
            for chunk in CHUNKS:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif "location=" in request.target:
            query = urllib.parse.parse_qs(request.target.partition("?")[2])
            target = query.get("location", [""])[0].encode("latin-1")
            extra = [(b"Location", target)]
            if query.get("refresh") == ["1"]:
                extra.append((b"Refresh", b"0; url=" + target))
            self._respond(writer, 302, extra, head)
        elif path == "/426":
            self._respond(writer, 426, [(b"Upgrade", b"websocket")], head)
        elif path.startswith("/status/"):
            status = int(path[len("/status/") :])
            no_body = status < 200 or status in NO_BODY
            self._respond(writer, status, [], None if no_body else head, length=not no_body)
        else:
            if path.startswith("/sleep/"):
                await asyncio.sleep(float(path[len("/sleep/") :]))
            self._respond(writer, 200, [], head)
        await writer.drain()
        return request.keep_alive

    def _respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        length: bool = True,
    ) -> None:
        reason = REASONS.get(status, "Unknown")
        lines = [f"HTTP/1.1 {status} {reason}".encode(), b"X-Backend: " + self.name.encode()]
        lines += [name + b": " + value for name, value in headers]
        if body is not None:
            lines.append(b"Content-Type: text/plain")
        if body is not None or (length and status >= 200):
            lines.append(b"Content-Length: %d" % len(body or b""))
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))

    async def _upgrade(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        key = request.header("sec-websocket-key")
        if key is not None:
            headers.append((b"Sec-WebSocket-Accept", websocket_accept(key)))
        self._respond(writer, 101, headers, None, length=False)
        await writer.drain()
        # Bytes pipelined after the head are already in `reader`'s buffer: echoed first.
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _serve_forever(host: str, port: int, name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with RecordingBackend(name, port, host) as backend:
        if port == 0:
            print("port", backend.port, flush=True)
        print("ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.backend --port N --name NAME``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.backend")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="backend")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
