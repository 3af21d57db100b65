"""The interpreter's floor: the least a Python proxy on uvloop does per request.

Not a product: a yardstick for issue 8's per-request targets. It is the issue's "70-line
uvloop Protocol relay" grown just enough to serve the benchmark's two per-request scenarios
(``session`` and ``http``): one process, ``asyncio.Protocol`` callbacks, httptools for the
request and response heads, round robin over the backends, one new upstream connection per
request as the article's configuration makes (no ``keepalive``), the article's five
``proxy_set_header`` lines, and, after a 101, bytes relayed as they come.

It leaves out everything the product does per request and a proxy needs: nginx's checks of
the request line and headers, server and location routing, variables, the balancer's
failure accounting and retries, timeouts, the response head rebuilt (it passes the
backend's head through, but for its ``Connection: close``), the access log, metrics. What
it costs per request is therefore below what any Python proxy with those features can
cost. The default ``python -m bench`` run measures it in the ``session`` and ``http``
scenarios (target ``floor-1w``).

Usage: ``python -m bench.floor PORT BACKEND_PORT [BACKEND_PORT ...]``; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import cast

import httptools
import uvloop

HOST = "127.0.0.1"
_SKIP = frozenset((b"host", b"connection", b"upgrade", b"x-real-ip", b"x-forwarded-for"))


class Balancer:
    """Round robin over the backends' ports."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.next = 0

    def pick(self) -> int:
        port = self.ports[self.next]
        self.next = (self.next + 1) % len(self.ports)
        return port


class Client(asyncio.Protocol):
    """One client connection: a request head at a time, or a tunnel after a 101."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.tunnel = False
        self.addr = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.addr = transport.get_extra_info("peername")[0].encode()

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            assert self.upstream is not None
            self.upstream.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # the upgrade's head is complete; the client waits for the 101
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.transport is not None
        host = b""
        upgrade = b""
        xff = b""
        lines = []
        for name, value in self.headers:
            low = name.lower()
            if low in _SKIP:
                if low == b"host":
                    host = value.split(b":", 1)[0]
                elif low == b"upgrade":
                    upgrade = value
                elif low == b"x-forwarded-for":
                    xff = value + b", "
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nX-Real-IP: %s\r\nX-Forwarded-For: %s%s\r\n" % (
            self.parser.get_method(),
            self.url,
            host,
            self.addr,
            xff,
            self.addr,
        )
        if upgrade:
            head += b"Upgrade: %s\r\nConnection: upgrade\r\n" % upgrade
        else:
            head += b"Connection: close\r\n"
        head += b"".join(lines) + b"\r\n"
        self.transport.pause_reading()
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_connection(lambda: Upstream(self), HOST, self.balancer.pick())
        )
        task.add_done_callback(lambda t: self.connected(t, head))

    def connected(
        self, task: asyncio.Task[tuple[asyncio.BaseTransport, Upstream]], head: bytes
    ) -> None:
        assert self.transport is not None
        if task.cancelled() or task.exception() is not None:
            self.transport.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return
        transport, _ = task.result()
        self.upstream = cast(asyncio.Transport, transport)
        self.upstream.write(head)

    def done(self) -> None:
        """The response went out whole: read the next request."""
        assert self.transport is not None
        self.upstream = None
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


class Upstream(asyncio.Protocol):
    """One upstream connection: the response passed through, or a tunnel after a 101."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.tunnel = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        client = self.client.transport
        assert client is not None
        if self.tunnel:
            client.write(data)
            return
        if not self.parser.get_status_code():  # the head's first chunk: the client stays
            data = data.replace(b"\r\nConnection: close\r\n", b"\r\n", 1)
        client.write(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.start_tunnel()
        except httptools.HttpParserError:
            client.close()

    def on_headers_complete(self) -> None:
        if self.parser.get_status_code() == 101:
            self.start_tunnel()

    def start_tunnel(self) -> None:
        if not self.tunnel:
            self.tunnel = True
            self.client.tunnel = True
            assert self.client.transport is not None
            self.client.transport.resume_reading()

    def on_message_complete(self) -> None:
        if not self.tunnel:
            assert self.transport is not None
            self.transport.close()
            self.client.done()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tunnel and self.client.transport is not None:
            self.client.transport.close()


async def serve(port: int, backends: Sequence[int]) -> None:
    """Listen on ``port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    balancer = Balancer(backends)
    server = await loop.create_server(lambda: Client(balancer), HOST, port, backlog=4096)
    async with server:
        await stop


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    uvloop.run(serve(int(args[0]), [int(a) for a in args[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
