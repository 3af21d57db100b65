"""Strict upgrades and WebSocket smuggling (peers.md "Security scenarios"), raw sockets.

Backends here are scripted: each connection gets fixed bytes back, so a test can make a
peer misbehave exactly (a wrong accept key, a 101 to a POST).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.support.backend import RecordingBackend
from tests.support.confs import article_conf
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process
from wsgate.http.upgrade import accept_value

INTERNAL = "location /internal { return 403; }"


class Scripted:
    """A peer that records each request head and answers it with ``reply(head)``."""

    def __init__(self, reply: object) -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        self.after: list[bytes] = []  # bytes received after the head, per connection
        self.port = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            writer.write(self.reply(head))  # type: ignore[operator]
            await writer.drain()
            rest = b""
            while chunk := await reader.read(65536):
                rest += chunk
            self.after.append(rest)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def scripted(reply: object) -> AsyncIterator[Scripted]:
    peer = Scripted(reply)
    peer.server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    peer.port = peer.server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        peer.server.close()


def handshake(path: str = "/ws", method: str = "GET", key: str | None = None) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: test",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def key_of(head: bytes) -> str:
    for line in head.decode().split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            return line.split(":", 1)[1].strip()
    return ""


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return head, body


async def test_missing_key_is_refused_before_the_peer(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(handshake())
            head, _ = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            assert backend.heads == []


async def test_wrong_accept_is_502_and_no_tunnel(tmp_path: Path) -> None:
    port = free_port()

    def reply(head: bytes) -> bytes:
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\nFROM-PEER"
        )

    async with scripted(reply) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(handshake(key=new_key()))
            head, body = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
            assert b"FROM-PEER" not in body
            writer.close()
    log = (tmp_path / "logs" / "error.log").read_text()
    assert 'upstream sent 101 with a wrong "Sec-WebSocket-Accept"' in log


async def test_correct_accept_opens_the_tunnel(tmp_path: Path) -> None:
    port = free_port()

    def reply(head: bytes) -> bytes:
        accept = accept_value(key_of(head)).encode()
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\nHELLO"
        )

    async with scripted(reply) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(handshake(key=new_key()))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"HELLO"
            writer.write(b"frames")
            writer.close()


async def test_refused_upgrade_then_smuggled_request_is_routed_by_wsgate(
    tmp_path: Path,
) -> None:
    """0ang3el scenario 1: the peer answers 426; the next request is wsgate's to route."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], extra_location="").replace(
            "  location / {", f"  {INTERNAL}\n  location / {{"
        )
        async with proxy_in_process(conf, tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                handshake("/426", key=new_key()) + b"GET /internal HTTP/1.1\r\nHost: test\r\n\r\n"
            )
            first, _ = await read_response(reader)
            assert first.startswith(b"HTTP/1.1 426 ")
            second, _ = await read_response(reader)
            assert second.startswith(b"HTTP/1.1 403 Forbidden\r\n")
            writer.close()
            assert [h.split(b" ")[1] for h in backend.heads] == [b"/426"]


async def test_post_with_upgrade_is_proxied_as_a_plain_request(tmp_path: Path) -> None:
    """0ang3el scenario 2: a peer that answers 101 to a POST never gets a tunnel."""
    port = free_port()

    def reply(head: bytes) -> bytes:
        return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"

    async with scripted(reply) as peer:
        conf = article_conf(port, [peer.port]).replace(
            "  location / {", f"  {INTERNAL}\n  location / {{"
        )
        async with proxy_in_process(conf, tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            body = b"url=http://attacker/"
            writer.write(
                handshake("/api/healthcheck", "POST", key=new_key())[:-2]
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
                + b"GET /internal HTTP/1.1\r\nHost: test\r\n\r\n"
            )
            first, _ = await read_response(reader)
            assert first.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
            writer.close()
    # The peer saw a plain POST: no Upgrade header, and the map made Connection: close.
    (head,) = peer.heads
    assert b"\r\nUpgrade:" not in head
    assert b"\r\nConnection: close\r\n" in head
    assert peer.after == [body]  # the body, re-framed; the smuggled GET never reached it


async def test_h2c_upgrade_is_not_forwarded(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /x HTTP/1.1\r\nHost: test\r\nUpgrade: h2c\r\n"
                b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
            )
            head, _ = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            writer.close()
            (sent,) = backend.heads
            assert b"Upgrade" not in sent.split(b"\r\nHTTP2-Settings")[0]
            assert b"\r\nConnection: close\r\n" in sent


async def test_upgrade_protocols_any_is_nginx_behaviour(tmp_path: Path) -> None:
    """With `proxy_upgrade_protocols any`, a 101 to any upgrade request tunnels (nginx)."""
    port = free_port()

    def reply(head: bytes) -> bytes:
        return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nRAW"

    async with scripted(reply) as peer:
        conf = article_conf(port, [peer.port], extra_location="proxy_upgrade_protocols any;")
        async with proxy_in_process(conf, tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(handshake("/p", "POST")[:-2] + b"Content-Length: 0\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await asyncio.wait_for(reader.readexactly(3), 10) == b"RAW"
            writer.close()
