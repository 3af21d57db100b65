"""Differential: upstream ``keepalive`` in real nginx and in wsgate (in-process), behind
the same :class:`tests.support.scripted_peer.ScriptedPeer` configuration.

The same sequence of requests goes through each proxy, one after the other, each on a new
client connection. Compared: which request paths arrived on which upstream connection
(the peer's ``conns``), and the access-log lines
``$upstream_status|$status|$upstream_bytes_received|$upstream_bytes_sent``. The sequence
mixes responses that may be reused (Content-Length, chunked, 204) with ones that may not
(close-delimited, ``Connection: close``, HTTP/1.0 with or without keep-alive, bytes after
the body), with ``keepalive`` and without it, with nginx's default ``Connection: close``
to the peer and with it cleared.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.lb import IO_TIMEOUT, get
from tests.support.nginx import require_nginx, run_nginx_async
from tests.support.ports import free_port
from tests.support.scripted_peer import ScriptedPeer
from tests.support.wsgate import proxy_in_process

LOG = '"$upstream_status|$status|$upstream_bytes_received|$upstream_bytes_sent"'

SEQUENCE = (
    "/ok",
    "/chunked",
    "/empty",
    "/ok",
    "/say-close",
    "/ok",
    "/http10",
    "/ok",
    "/http10-ka",
    "/ok",
    "/extra",
    "/ok",
    "/close-delimited",
    "/ok",
    "/chunked",
    "/ok",
)

CLEARED = 'proxy_http_version 1.1;\n            proxy_set_header Connection "";'
VARIANTS = {
    "keepalive-cleared": ("keepalive 4;", CLEARED),
    "keepalive-requests-3": ("keepalive 4;\n        keepalive_requests 3;", CLEARED),
    "keepalive-default-connection-close": ("keepalive 4;", "proxy_http_version 1.1;"),
    "keepalive-http10": ("keepalive 4;", 'proxy_set_header Connection "";'),
    "no-keepalive": ("", CLEARED),
}


def conf(port: int, peer: int, upstream: str, location: str) -> str:
    return f"""\
events {{ }}
http {{
    log_format ka {LOG};
    access_log logs/ka.log ka;
    upstream backend {{
        server 127.0.0.1:{peer};
        {upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_read_timeout 5s;
            {location}
        }}
    }}
}}
"""


async def run_sequence(port: int, log: Path) -> list[str]:
    for path in SEQUENCE:
        await get(port, path)
    async with asyncio.timeout(IO_TIMEOUT):
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) >= len(SEQUENCE):
                return lines
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_same_connections_and_log_as_nginx(variant: str, tmp_path: Path) -> None:
    require_nginx()
    upstream, location = VARIANTS[variant]

    port = free_port()
    async with ScriptedPeer() as peer:
        text = conf(port, peer.port, upstream, location)
        async with run_nginx_async(text, tmp_path / "n", [port]) as run:
            nginx_lines = await run_sequence(port, run.prefix / "logs" / "ka.log")
        nginx_conns = peer.conns

    port = free_port()
    (tmp_path / "w").mkdir()
    async with ScriptedPeer() as peer:
        text = conf(port, peer.port, upstream, location)
        async with proxy_in_process(text, tmp_path / "w"):
            wsgate_lines = await run_sequence(port, tmp_path / "w" / "logs" / "ka.log")
        wsgate_conns = peer.conns

    assert wsgate_conns == nginx_conns
    assert wsgate_lines == nginx_lines


async def slammed_sequence(port: int, log: Path, peers: list[ScriptedPeer]) -> list[str]:
    """Two requests, then every peer drops the next request it gets on a used connection
    (closed just as the proxy reuses it), then three more requests."""
    await get(port, "/ok")
    await get(port, "/ok")
    for peer in peers:
        peer.slam_reused = True
    for _ in range(3):
        await get(port, "/ok")
    async with asyncio.timeout(IO_TIMEOUT):
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) >= 5:
                return lines
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("count", [1, 2])
async def test_stale_cached_connection_is_retried_as_nginx(count: int, tmp_path: Path) -> None:
    # ngx_http_upstream_next: an error on a cached connection gives the try back; with
    # one peer it is tried again, with two the other one is (and the failure counts).
    require_nginx()
    results = []
    for name in ("nginx", "wsgate"):
        port = free_port()
        async with ScriptedPeer() as a, ScriptedPeer() as b:
            peers = [a, b][:count]
            servers = "\n        ".join(f"server 127.0.0.1:{p.port};" for p in peers)
            text = conf(port, peers[0].port, "keepalive 4;", CLEARED).replace(
                f"server 127.0.0.1:{peers[0].port};", servers
            )
            text = text.replace(LOG, '"$upstream_addr|' + LOG[1:])
            if name == "nginx":
                async with run_nginx_async(text, tmp_path / "n", [port]) as run:
                    lines = await slammed_sequence(port, run.prefix / "logs" / "ka.log", peers)
            else:
                (tmp_path / "w").mkdir()
                async with proxy_in_process(text, tmp_path / "w"):
                    lines = await slammed_sequence(port, tmp_path / "w" / "logs" / "ka.log", peers)
            names = {f"127.0.0.1:{p.port}": f"peer{i}" for i, p in enumerate(peers)}
            for addr, label in names.items():
                lines = [line.replace(addr, label) for line in lines]
            results.append((lines, [p.conns for p in peers]))
    assert results[1] == results[0]
