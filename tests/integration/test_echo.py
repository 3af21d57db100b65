"""``wsgate echo`` in-process: the article's strings, the other modes, several ports, limits,
connection lines, subprotocol selection and TLS (certificates made by trustme at test time).

Each test runs the server on the test's loop with ports chosen at run time and talks to it
with the ``websockets`` client. Readiness comes from the ``ready`` event or from the context
manager having returned, never from a sleep.
"""

from __future__ import annotations

import asyncio
import io
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from tests.support.ports import free_port, free_ports
from wsgate.echo.server import (
    DEFAULT_MAX_SIZE,
    REPLY_PREFIX,
    EchoServer,
    ListenError,
    Mode,
    open_echo_server,
    serve_echo,
    server_ssl_context,
)


class LogLines(io.StringIO):
    """A log stream that lets a test wait for a given line, without polling."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self.changed.set()
        return written

    async def wait_for(self, line: str) -> None:
        while line not in self.getvalue().splitlines():
            self.changed.clear()
            await self.changed.wait()


@asynccontextmanager
async def echo(
    mode: Mode = Mode.ARTICLE,
    *,
    quiet: bool = False,
    max_size: int | None = DEFAULT_MAX_SIZE,
    compression: bool = True,
) -> AsyncIterator[tuple[EchoServer, LogLines]]:
    """An echo server on a port picked by the kernel, logging into a :class:`LogLines`."""
    log = LogLines()
    async with open_echo_server(
        "127.0.0.1",
        [0],
        mode=mode,
        quiet=quiet,
        max_size=max_size,
        compression=compression,
        out=log,
    ) as server:
        yield server, log


def url(server: EchoServer, index: int = 0) -> str:
    return f"ws://127.0.0.1:{server.ports[index]}/"


def client(ws: ClientConnection) -> str:
    host, port = ws.local_address[:2]
    return f"{host}:{port}"


async def test_article_reply_and_log() -> None:
    async with echo() as (server, log):
        async with connect(url(server) + "chat?x=1") as ws:
            await ws.send("Hello")
            assert await ws.recv() == "Server received from client: Hello"
            await ws.send("Welcome to www.hi-linux.com")
            assert await ws.recv() == "Server received from client: Welcome to www.hi-linux.com"
            await ws.close(4000, "bye")
        await log.wait_for(f'Client disconnected: {client(ws)} (code: 4000, reason: "bye")')
    assert log.getvalue().splitlines() == [
        f"Client connected: {client(ws)} /chat?x=1",
        "Received from client: Hello",
        "Received from client: Welcome to www.hi-linux.com",
        f'Client disconnected: {client(ws)} (code: 4000, reason: "bye")',
    ]


async def test_article_binary_stays_binary() -> None:
    payload = bytes(range(256))
    async with echo() as (server, log), connect(url(server)) as ws:
        await ws.send(payload)
        assert await ws.recv() == REPLY_PREFIX.encode() + payload
    assert "Received from client: <binary 256 bytes>" in log.getvalue().splitlines()


async def test_lost_connection_is_logged_as_1006() -> None:
    async with echo() as (server, log), connect(url(server)) as ws:
        await ws.send("x")
        assert await ws.recv() == "Server received from client: x"
        ws.transport.abort()
        await log.wait_for(f'Client disconnected: {client(ws)} (code: 1006, reason: "")')


async def test_subprotocol_first_offered_that_the_server_supports() -> None:
    log = LogLines()
    async with open_echo_server(
        "127.0.0.1", [0], subprotocols=["b", "a"], out=log, compression=False
    ) as server:
        for offered, chosen in [(["a", "b"], "a"), (["c", "b"], "b"), (["c"], None)]:
            async with connect(url(server), subprotocols=offered) as ws:  # type: ignore[arg-type]
                assert ws.subprotocol == chosen
        async with connect(url(server)) as ws:
            assert ws.subprotocol is None
    lines = [line for line in log.getvalue().splitlines() if "connected:" in line]
    assert lines[0].endswith(" / (subprotocol: a)")
    assert lines[2].endswith(" / (subprotocol: b)")


async def test_tls_with_a_certificate_made_at_test_time(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    context = server_ssl_context(str(cert_file), str(key_file))
    async with open_echo_server("127.0.0.1", [0], ssl_context=context, out=LogLines()) as server:
        uri = f"wss://127.0.0.1:{server.ports[0]}/"
        async with connect(uri, ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "Server received from client: secret"
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(uri, ssl=ssl.create_default_context()):
                pass


async def test_echo_mode_returns_messages_unchanged() -> None:
    async with echo(Mode.ECHO) as (server, _), connect(url(server)) as ws:
        messages: list[str | bytes] = ["hi", "", "ünïcödé ✓", b"\x00\xff", b""]
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message


async def test_discard_mode_answers_nothing() -> None:
    async with echo(Mode.DISCARD) as (server, log), connect(url(server)) as ws:
        await ws.send("x")
        await ws.send("y")
        # "y" is logged only after the handler finished with "x" (a reply would have been
        # written by then); the pong comes after anything written before it.
        await log.wait_for("Received from client: y")
        await (await ws.ping())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await ws.recv()


async def test_quiet_logs_nothing() -> None:
    async with echo(quiet=True) as (server, log), connect(url(server)) as ws:
        await ws.send("hi")
        assert await ws.recv() == "Server received from client: hi"
    assert log.getvalue() == ""


async def test_several_ports_one_process() -> None:
    ports = free_ports(3)
    log = LogLines()
    ready = asyncio.Event()
    stop = asyncio.Event()
    task = asyncio.create_task(serve_echo("127.0.0.1", ports, ready=ready, stop=stop, out=log))
    await ready.wait()
    assert log.getvalue() == "Server started\n"
    for port in ports:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(f"to {port}")
            assert await ws.recv() == f"Server received from client: to {port}"
    stop.set()
    await task
    received = [line for line in log.getvalue().splitlines() if line.startswith("Received")]
    assert received == [f"Received from client: to {p}" for p in ports]


async def test_cancel_closes_open_connections_with_1001() -> None:
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_echo("127.0.0.1", [port], ready=ready, out=LogLines()))
    await ready.wait()
    async with connect(f"ws://127.0.0.1:{port}/") as ws:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ws.wait_closed()
        assert ws.close_code == 1001


async def test_default_host_localhost_binds_every_address() -> None:
    port = free_port()
    async with open_echo_server(ports=[port], out=LogLines()) as server:
        families = {sock.family for srv in server.servers for sock in srv.sockets}
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
        assert families == {info[0] for info in infos}
        async with connect(f"ws://localhost:{port}/") as ws:
            await ws.send("hi")
            assert await ws.recv() == "Server received from client: hi"


async def test_port_in_use_raises_listen_error() -> None:
    async with echo() as (server, _):
        busy = server.ports[0]
        with pytest.raises(ListenError) as info:
            async with open_echo_server("127.0.0.1", [busy], out=LogLines()):
                pass
        assert info.value.port == busy
        assert str(info.value).startswith(f"cannot listen on 127.0.0.1:{busy}: ")


async def test_max_size_closes_with_1009() -> None:
    # Without compression the frame size is the message size, so the limit is exact.
    async with echo(max_size=1000, compression=False) as (server, _), connect(url(server)) as ws:
        await ws.send("x" * 1000)
        assert await ws.recv() == "Server received from client: " + "x" * 1000
        await ws.send("x" * 1001)
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        assert ws.close_code == 1009


async def negotiated(ws: ClientConnection) -> list[str]:
    return [extension.name for extension in ws.protocol.extensions]


async def test_compression_on_by_default_and_switchable() -> None:
    async with echo() as (server, _), connect(url(server)) as ws:
        assert await negotiated(ws) == ["permessage-deflate"]
    async with echo(compression=False) as (server, _), connect(url(server)) as ws:
        assert await negotiated(ws) == []
