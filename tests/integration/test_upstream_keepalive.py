"""``keepalive N;`` in an ``upstream{}`` through the in-process proxy, on real sockets
(ngx_http_upstream_keepalive_module; docs/behavior.md "Upstream keep-alive").

The peer is ``tests.support.scripted_peer.ScriptedPeer``: it records which request paths
arrived on which of its connections, answers by path (framed or not, with or without
``Connection: close``, with extra bytes after the body...) and never closes a connection
on its own unless told to, so each test sees wsgate's own decision to reuse a connection
or not. The access log is written with
``$upstream_addr|$upstream_status|$status|$upstream_bytes_received``.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import trustme

from tests.support.backend import RecordingBackend
from tests.support.lb import IO_TIMEOUT, get, open_tunnel
from tests.support.ports import free_port
from tests.support.scripted_peer import OK, RESPONSES, ScriptedPeer
from tests.support.wsgate import proxy_in_process
from wsgate.proxy.worker import Worker

LOG = '"$upstream_addr|$upstream_status|$status|$upstream_bytes_received"'


def conf(
    port: int,
    peers: list[int],
    *,
    upstream: str = "keepalive 4;",
    location: str = 'proxy_http_version 1.1;\n            proxy_set_header Connection "";',
    http: str = "",
) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in peers)
    return f"""\
worker_processes 1;
error_log logs/error.log info;
events {{ }}
http {{
    log_format ka {LOG};
    access_log logs/access.log ka;
    {http}
    upstream backend {{
{servers}
        {upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_read_timeout 2s;
            {location}
        }}
    }}
}}
"""


def log_lines(tmp_path: Path) -> list[list[str]]:
    text = (tmp_path / "logs" / "access.log").read_text()
    return [line.split("|") for line in text.splitlines()]


async def requests(port: int, *paths: str) -> list[int]:
    """One request per path, one after the other; their statuses."""
    return [(await get(port, path)).status for path in paths]


async def test_requests_share_one_upstream_connection(tmp_path: Path) -> None:
    port = free_port()
    async with ScriptedPeer() as peer, proxy_in_process(conf(port, [peer.port]), tmp_path) as w:
        statuses = await requests(port, "/ok", "/chunked", "/empty", "/ok", "/ok")
        assert statuses == [200, 200, 204, 200, 200]
        assert peer.conns == [["/ok", "/chunked", "/empty", "/ok", "/ok"]]
        assert len(w.keepalive["backend"]) == 1
    lines = log_lines(tmp_path)
    addr = f"127.0.0.1:{peer.port}"
    # Per-attempt figures, not the connection's running totals.
    ok = str(len(OK))
    assert [line[0] for line in lines] == [addr] * 5
    assert [line[3] for line in lines] == [
        ok,
        str(len(RESPONSES["/chunked"])),
        str(len(RESPONSES["/empty"])),
        ok,
        ok,
    ]


async def test_statuses_through_reused_connection(tmp_path: Path) -> None:
    port = free_port()
    async with ScriptedPeer() as peer, proxy_in_process(conf(port, [peer.port]), tmp_path):
        assert await requests(port, "/ok", "/chunked", "/empty") == [200, 200, 204]
        replies = [await get(port, p) for p in ("/ok", "/chunked")]
        assert [r.body for r in replies] == [b"ok", b"2\r\nok\r\n0\r\n\r\n"]
        assert len(peer.conns) == 1


async def test_without_keepalive_a_connection_per_request(tmp_path: Path) -> None:
    port = free_port()
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], upstream=""), tmp_path) as w,
    ):
        assert await requests(port, "/ok", "/ok", "/ok") == [200, 200, 200]
        assert peer.conns == [["/ok"], ["/ok"], ["/ok"]]
        await peer.wait("peer.closed == 3")
        assert w.keepalive == {}


async def test_default_connection_close_defeats_reuse(tmp_path: Path) -> None:
    # nginx sends "Connection: close" by default: the peer closes after each response and
    # nothing is reused (the close is seen while the connection is idle).
    port = free_port()
    location = "proxy_http_version 1.1;"
    async with (
        RecordingBackend("b1") as backend,
        proxy_in_process(conf(port, [backend.port], location=location), tmp_path),
    ):
        assert await requests(port, "/", "/", "/") == [200, 200, 200]
        assert backend.connections == 3
        assert all(b"Connection: close\r\n" in h for h in backend.heads)
    assert [line[2] for line in log_lines(tmp_path)] == ["200"] * 3


async def test_recording_backend_reuse_with_connection_header_cleared(tmp_path: Path) -> None:
    port = free_port()
    async with (
        RecordingBackend("b1") as backend,
        proxy_in_process(conf(port, [backend.port]), tmp_path),
    ):
        assert await requests(port, "/", "/chunked", "/", "/status/204") == [200, 200, 200, 204]
        assert backend.connections == 1
        assert all(h.startswith(b"GET /") and b" HTTP/1.1\r\n" in h for h in backend.heads)
        assert not any(b"Connection:" in h for h in backend.heads)
    assert [line[2] for line in log_lines(tmp_path)] == ["200", "200", "200", "204"]


async def test_http10_request_is_reused_if_the_peer_keeps_it(tmp_path: Path) -> None:
    # nginx looks at the response only: HTTP/1.1 without "Connection: close" is reused,
    # whatever version the request was sent in.
    port = free_port()
    location = 'proxy_set_header Connection "";'  # proxy_http_version stays 1.0
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], location=location), tmp_path),
    ):
        assert await requests(port, "/ok", "/ok") == [200, 200]
        assert peer.conns == [["/ok", "/ok"]]


async def test_http10_peer_that_closes_is_not_reused(tmp_path: Path) -> None:
    # The recording backend answers an HTTP/1.0 request in HTTP/1.1 without "Connection:
    # close", then closes: the close is seen while the connection is idle, or, if the
    # next request is already on its way, that request is retried on a new connection.
    port = free_port()
    location = 'proxy_set_header Connection "";'
    async with (
        RecordingBackend("b1") as backend,
        proxy_in_process(conf(port, [backend.port], location=location), tmp_path),
    ):
        assert await requests(port, *["/"] * 5) == [200] * 5
        assert backend.connections >= 5
    assert [line[2] for line in log_lines(tmp_path)] == ["200"] * 5


async def test_responses_that_end_reuse(tmp_path: Path) -> None:
    # Not reused: close-delimited, "Connection: close", HTTP/1.0 (even with keep-alive),
    # bytes after the body. Each is followed by /ok, which must open a new connection.
    port = free_port()
    async with ScriptedPeer() as peer, proxy_in_process(conf(port, [peer.port]), tmp_path) as w:
        paths = ["/close-delimited", "/say-close", "/http10", "/http10-ka", "/extra"]
        for path in paths:
            assert await requests(port, path, "/ok") == [200, 200]
        assert peer.conns[0] == ["/close-delimited"]
        # Each /ok reused the connection of the /ok before it: it was cached.
        assert peer.conns[1:] == [
            ["/ok", "/say-close"],
            ["/ok", "/http10"],
            ["/ok", "/http10-ka"],
            ["/ok", "/extra"],
            ["/ok"],
        ]
        # The proxy closed each one it did not keep (the peer closed the first itself).
        await peer.wait("peer.closed == 4")
        assert len(w.keepalive["backend"]) == 1


async def test_cache_holds_at_most_n_and_closes_the_oldest(tmp_path: Path) -> None:
    port = free_port()
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], upstream="keepalive 2;"), tmp_path) as w,
    ):
        replies = await asyncio.gather(*(get(port, "/slow") for _ in range(3)))
        assert [r.status for r in replies] == [200, 200, 200]
        assert len(peer.conns) == 3
        await peer.wait("peer.closed == 1")  # the least recently cached one
        assert len(w.keepalive["backend"]) == 2
        assert w.active_connections == 2
        assert await requests(port, "/ok", "/ok", "/ok") == [200, 200, 200]
        assert len(peer.conns) == 3
        # The most recently cached connection takes every sequential request.
        assert sorted(len(c) for c in peer.conns) == [1, 1, 4]


async def test_idle_connection_closed_by_the_peer_is_not_used(tmp_path: Path) -> None:
    port = free_port()
    async with ScriptedPeer() as peer, proxy_in_process(conf(port, [peer.port]), tmp_path) as w:
        assert await requests(port, "/ok") == [200]
        cache = w.keepalive["backend"]
        peer.drop_all()
        async with asyncio.timeout(IO_TIMEOUT):
            while len(cache):  # the proxy notices the FIN while the connection is idle
                await asyncio.sleep(0.01)
        assert await requests(port, "/ok") == [200]
        assert peer.conns == [["/ok"], ["/ok"]]
    lines = log_lines(tmp_path)
    assert [line[1:3] for line in lines] == [["200", "200"], ["200", "200"]]


async def test_cached_connection_closed_as_it_is_reused_is_retried(tmp_path: Path) -> None:
    # ngx_http_upstream_next: an error on a cached connection gives the try back, so a
    # single peer is tried again, on a new connection.
    port = free_port()
    async with ScriptedPeer() as peer, proxy_in_process(conf(port, [peer.port]), tmp_path):
        assert await requests(port, "/ok") == [200]
        peer.slam_reused = True
        assert await requests(port, "/ok") == [200]
        assert peer.conns == [["/ok"], ["/ok"]]
        assert await requests(port, "/ok") == [200]
        assert peer.conns == [["/ok"], ["/ok", "/ok"]]
    addr = f"127.0.0.1:{peer.port}"
    lines = log_lines(tmp_path)
    assert lines[1][:3] == [f"{addr}, {addr}", "502, 200", "200"]
    error_log = (tmp_path / "logs" / "error.log").read_text()
    assert "upstream prematurely closed connection while reading response header" in error_log


async def test_keepalive_requests_limits_one_connection(tmp_path: Path) -> None:
    port = free_port()
    upstream = "keepalive 4; keepalive_requests 3;"
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], upstream=upstream), tmp_path),
    ):
        assert await requests(port, *["/ok"] * 7) == [200] * 7
        assert [len(c) for c in peer.conns] == [3, 3, 1]
        await peer.wait("peer.closed == 2")


async def test_keepalive_timeout_closes_an_idle_connection(tmp_path: Path) -> None:
    port = free_port()
    upstream = "keepalive 4; keepalive_timeout 300ms;"
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], upstream=upstream), tmp_path) as w,
    ):
        assert await requests(port, "/ok", "/ok") == [200, 200]
        assert len(peer.conns) == 1
        await peer.wait("peer.closed == 1")
        assert len(w.keepalive["backend"]) == 0
        assert await requests(port, "/ok") == [200]
        assert [len(c) for c in peer.conns] == [2, 1]


async def test_keepalive_time_limits_a_connections_age(tmp_path: Path) -> None:
    port = free_port()
    upstream = "keepalive 4; keepalive_time 200ms;"
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], upstream=upstream), tmp_path),
    ):
        assert await requests(port, "/ok", "/ok") == [200, 200]
        await asyncio.sleep(0.3)
        assert await requests(port, "/ok") == [200]  # served, then not cached: too old
        await peer.wait("peer.closed == 1")
        assert await requests(port, "/ok") == [200]
        assert [len(c) for c in peer.conns] == [3, 1]


async def test_each_peer_has_its_own_connections(tmp_path: Path) -> None:
    port = free_port()
    async with (
        ScriptedPeer() as a,
        ScriptedPeer() as b,
        proxy_in_process(conf(port, [a.port, b.port]), tmp_path),
    ):
        assert await requests(port, *["/ok"] * 6) == [200] * 6
        assert a.conns == [["/ok"] * 3]
        assert b.conns == [["/ok"] * 3]


async def test_websocket_upgrade_through_a_keepalive_upstream(tmp_path: Path) -> None:
    port = free_port()
    # The usual keep-alive form of the article's map: no Connection header unless upgrading.
    http = "map $http_upgrade $connection_upgrade { default upgrade; '' ''; }"
    location = (
        "proxy_http_version 1.1;\n"
        "            proxy_set_header Upgrade $http_upgrade;\n"
        "            proxy_set_header Connection $connection_upgrade;"
    )
    async with RecordingBackend("b1") as backend:
        text = conf(port, [backend.port], location=location, http=http)
        async with proxy_in_process(text, tmp_path) as w:
            assert await requests(port, "/") == [200]
            cache = w.keepalive["backend"]
            assert len(cache) == 1
            tunnel = await open_tunnel(port, "/ws")
            try:
                assert tunnel.reply.status == 101
                assert backend.connections == 1  # the upgrade went over the cached connection
                assert len(cache) == 0
                tunnel.writer.write(b"ping")
                async with asyncio.timeout(IO_TIMEOUT):
                    assert await tunnel.reader.readexactly(4) == b"ping"
            finally:
                tunnel.writer.close()
            async with asyncio.timeout(IO_TIMEOUT):
                while w.tunnels:
                    await asyncio.sleep(0.01)
            assert len(cache) == 0  # a tunnel's connection is never cached
            assert await requests(port, "/") == [200]
            assert backend.connections == 2


async def test_worker_stop_closes_idle_connections(tmp_path: Path) -> None:
    port = free_port()
    async with ScriptedPeer() as peer:
        worker: Worker
        async with proxy_in_process(conf(port, [peer.port]), tmp_path) as worker:
            assert await requests(port, "/ok") == [200]
            assert len(worker.keepalive["backend"]) == 1
        await peer.wait("peer.closed == 1")
        assert len(worker.keepalive["backend"]) == 0


async def test_client_keepalive_time_ends_an_old_client_connection(tmp_path: Path) -> None:
    # keepalive_time at http/server/location level is the client side's (nginx 1.19.10):
    # a request on a connection older than it is answered with "Connection: close".
    port = free_port()
    location = "keepalive_time 300ms;"
    async with (
        ScriptedPeer() as peer,
        proxy_in_process(conf(port, [peer.port], upstream="", location=location), tmp_path),
    ):
        async with asyncio.timeout(IO_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                heads = []
                for pause in (0.0, 0.4):
                    await asyncio.sleep(pause)
                    writer.write(b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n")
                    heads.append(await reader.readuntil(b"\r\n\r\n"))
                    assert await reader.readexactly(2) == b"ok"
                assert b"Connection: keep-alive\r\n" in heads[0]
                assert b"Connection: close\r\n" in heads[1]
                assert await reader.read() == b""
            finally:
                writer.close()


async def test_https_upstream_connections_are_reused(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("peer.test").configure_cert(server_ctx)
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(0)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                conns[-1] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    peer = server.sockets[0].getsockname()[1]
    port = free_port()
    text = conf(port, [peer]).replace("proxy_pass http://", "proxy_pass https://")
    try:
        async with proxy_in_process(text, tmp_path):
            replies = [await get(port, "/") for _ in range(3)]
            assert [r.body for r in replies] == [b"secure"] * 3
            assert conns == [3]
    finally:
        server.close()
