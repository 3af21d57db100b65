"""wsgate_status without a browser: the directive, the page, and the WebSocket protocol.

The browser test is tests/interop/test_status_page.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from websockets.frames import Close, Frame, Opcode

from tests.support.backend import RecordingBackend
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process
from wsgate.conf.build import load
from wsgate.errors import ConfigError
from wsgate.http.upgrade import accept_value
from wsgate.status_page import PAGE

CONF = """events {{}}
http {{
  upstream app {{ server 127.0.0.1:{backend}; server 127.0.0.1:{backend} backup; }}
  server {{
    listen 127.0.0.1:{port};
    access_log logs/access.log;
    location = /status {{ wsgate_status; }}
    location / {{ proxy_pass http://app; }}
  }}
}}
"""


# -- configuration ------------------------------------------------------------------------


def _conf(location_body: str, server_extra: str = "") -> str:
    return (
        "events {}\nhttp { server { listen 80; "
        + server_extra
        + " location /s { "
        + location_body
        + " } } }\n"
    )


def test_directive_sets_the_location_only() -> None:
    conf = load("/x/nginx.conf", text=_conf("wsgate_status; location /s/in { }"))
    assert conf.http is not None
    loc = conf.http.servers[0].locations[0]
    assert loc.wsgate_status
    assert not loc.locations[0].wsgate_status  # a nested location serves its own content
    assert not conf.http.servers[0].defaults.wsgate_status


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_conf("wsgate_status on;"), 'invalid number of arguments in "wsgate_status"'),
        (_conf("wsgate_status; wsgate_status;"), '"wsgate_status" directive is duplicate'),
        (_conf("", "wsgate_status;"), '"wsgate_status" directive is not allowed here'),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("/x/nginx.conf", text=text)


def test_page_is_self_contained() -> None:
    text = PAGE.decode()
    assert text.startswith("<!DOCTYPE html>")
    # No external assets: nothing is loaded from anywhere but the page's own WebSocket.
    assert not re.search(r"""(src|href)\s*=|@import|url\(|https?://""", text)


# -- the page and its WebSocket -------------------------------------------------------------


async def _request(port: int, head: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    return reader, writer


async def _upgrade(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer = await _request(
        port,
        "GET /status HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {accept_value(key)}\r\n".encode() in head
    return reader, writer, head


async def _frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    assert not second & 0x80  # a server never masks
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def _snapshot(reader: asyncio.StreamReader) -> dict[str, Any]:
    opcode, payload = await _frame(reader)
    assert opcode == Opcode.TEXT.value
    doc: dict[str, Any] = json.loads(payload)
    return doc


async def test_plain_get_serves_the_page(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend() as backend:
        async with proxy_in_process(CONF.format(backend=backend.port, port=port), tmp_path):
            reader, writer = await _request(
                port, "GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            data = await reader.read()
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/html; charset=utf-8\r\n" in head
    assert body == PAGE
    assert backend.heads == []


async def test_websocket_pushes_snapshots_until_the_client_closes(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend() as backend:
        async with proxy_in_process(CONF.format(backend=backend.port, port=port), tmp_path):
            reader, writer, _ = await _upgrade(port)
            first = await _snapshot(reader)
            assert first["pid"] == os.getpid()
            assert first["connections"]["requests"] == 1
            assert first["worker"] == {"tunnels": 0, "tunnels_opened": 0}
            [app] = first["upstreams"]
            assert app["name"] == "app"
            assert [(p["state"], p["backup"], p["conns"]) for p in app["peers"]] == [
                ("up", False, 0),
                ("up", True, 0),
            ]
            # Frames the client sends (pings, messages) are read past, not answered.
            writer.write(Frame(Opcode.PING, b"p").serialize(mask=True))
            writer.write(Frame(Opcode.TEXT, b"hello" * 100).serialize(mask=True))
            # Traffic shows in the next snapshot, pushed about a second later.
            for _ in range(3):
                get = "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                r2, w2 = await _request(port, get)
                await r2.read()
                w2.close()
            second = await asyncio.wait_for(_snapshot(reader), 3)
            assert second["connections"]["requests"] == 4
            assert 0.5 < second["time"] - first["time"] < 2.5
            writer.write(Frame(Opcode.CLOSE, Close(1000, "bye").serialize()).serialize(mask=True))
            opcode, payload = await asyncio.wait_for(_frame(reader), 3)
            while opcode == Opcode.TEXT.value:  # a snapshot that crossed our Close
                opcode, payload = await asyncio.wait_for(_frame(reader), 3)
            assert (opcode, payload) == (Opcode.CLOSE.value, struct.pack("!H", 1000))
            assert await asyncio.wait_for(reader.read(), 3) == b""
            writer.close()
    log = (tmp_path / "logs" / "access.log").read_text()
    assert '"GET /status HTTP/1.1" 101 ' in log


async def test_unmasked_client_frame_is_a_protocol_error(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend() as backend:
        async with proxy_in_process(CONF.format(backend=backend.port, port=port), tmp_path):
            reader, writer, _ = await _upgrade(port)
            await _snapshot(reader)
            writer.write(Frame(Opcode.TEXT, b"x").serialize(mask=False))
            opcode, payload = await asyncio.wait_for(_frame(reader), 3)
            while opcode == Opcode.TEXT.value:
                opcode, payload = await asyncio.wait_for(_frame(reader), 3)
            assert (opcode, payload) == (Opcode.CLOSE.value, struct.pack("!H", 1002))
            writer.close()


async def test_graceful_stop_closes_the_page_socket_with_1001(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend() as backend:
        async with proxy_in_process(
            CONF.format(backend=backend.port, port=port), tmp_path
        ) as worker:
            reader, writer, _ = await _upgrade(port)
            await _snapshot(reader)
            # A status socket is not a request to wait for: the stop returns at once.
            await asyncio.wait_for(worker.stop(graceful=True), 3)
            opcode, payload = await asyncio.wait_for(_frame(reader), 3)
            while opcode == Opcode.TEXT.value:
                opcode, payload = await asyncio.wait_for(_frame(reader), 3)
            assert (opcode, payload) == (Opcode.CLOSE.value, struct.pack("!H", 1001))
            writer.close()


async def test_tunnel_shows_in_the_snapshot(tmp_path: Path) -> None:
    port = free_port()
    conf = CONF.replace(
        "location / {{ proxy_pass http://app; }}",
        "location / {{ proxy_pass http://app; proxy_http_version 1.1;"
        ' proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; }}',
    )
    assert conf != CONF
    async with RecordingBackend() as backend:
        async with proxy_in_process(conf.format(backend=backend.port, port=port), tmp_path):
            reader, writer, _ = await _upgrade(port)
            await _snapshot(reader)
            key = base64.b64encode(os.urandom(16)).decode()
            tr, tw = await _request(
                port,
                "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            assert (await tr.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
            snap = await asyncio.wait_for(_snapshot(reader), 3)
            assert snap["worker"] == {"tunnels": 1, "tunnels_opened": 1}
            peers = snap["upstreams"][0]["peers"]
            assert [(p["conns"], p["tunnels"]) for p in peers] == [(1, 1), (0, 0)]
            tw.close()
            writer.close()
