"""WebSocket through the proxy: websockets client -> wsgate proxy -> wsgate echo, in process."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import socket
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.support.backend import RecordingBackend
from tests.support.confs import article_conf
from tests.support.ports import free_port, free_ports
from tests.support.procs import require_peer
from tests.support.wsgate import proxy_in_process
from wsgate.echo.server import Mode, serve_echo
from wsgate.proxy.stats import ACTIVE, WRITING


async def _echo_servers(
    ports: list[int], mode: Mode = Mode.ECHO
) -> tuple[asyncio.Task[None], asyncio.Event]:
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_echo("127.0.0.1", ports, mode=mode, quiet=True, ready=ready, stop=stop, max_size=None)
    )
    await ready.wait()
    return task, stop


async def test_text_and_binary_messages_of_every_size(tmp_path: Path) -> None:
    port, b1 = free_ports(2)
    task, stop = await _echo_servers([b1])
    try:
        async with proxy_in_process(article_conf(port, [b1]), tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
                for size in (1, 125, 126, 65535, 65536, 100_000, 1 << 20):
                    text = "x" * size
                    await ws.send(text)
                    assert await ws.recv() == text
                    data = os.urandom(size)
                    await ws.send(data)
                    assert await ws.recv() == data
    finally:
        stop.set()
        await task


async def test_article_reply_text(tmp_path: Path) -> None:
    port, b1 = free_ports(2)
    task, stop = await _echo_servers([b1], Mode.ARTICLE)
    try:
        async with proxy_in_process(article_conf(port, [b1]), tmp_path):
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("Hello")
                assert await ws.recv() == "Server received from client: Hello"
    finally:
        stop.set()
        await task


async def test_200_concurrent_connections_keep_order(tmp_path: Path) -> None:
    port, b1, b2 = free_ports(3)
    task, stop = await _echo_servers([b1, b2])
    messages = 20

    async def one(i: int) -> list[str]:
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            got = []
            for n in range(messages):
                await ws.send(f"{i}:{n}")
            for _ in range(messages):
                got.append(str(await ws.recv()))
            return got

    try:
        async with proxy_in_process(article_conf(port, [b1, b2]), tmp_path) as worker:
            results = await asyncio.gather(*(one(i) for i in range(200)))
            for i, got in enumerate(results):
                assert got == [f"{i}:{n}" for n in range(messages)]
            # Round robin spread the tunnels over both backends.
            balancer = worker.balancers["websocket"]
            assert all(p.tunnels == 0 for p in balancer.peers)
    finally:
        stop.set()
        await task


async def test_round_robin_alternates_backends(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as a, RecordingBackend("b") as b:
        async with proxy_in_process(article_conf(port, [a.port, b.port]), tmp_path):
            order = []
            for _ in range(6):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_handshake()[0])
                head = await _read_head(reader)
                order.append(head.split(b"X-Backend: ")[1].split(b"\r\n")[0].decode())
                writer.close()
            assert order == ["a", "b", "a", "b", "a", "b"]


def _handshake(path: str = "/ws") -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    head = (
        f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    return head, key


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)


async def test_bytes_after_the_handshake_are_not_lost(tmp_path: Path) -> None:
    """The first bytes sent in the same packet as the request head reach the backend."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head, _ = _handshake()
            writer.write(head + b"EARLY-BYTES")
            head_back = await _read_head(reader)
            assert head_back.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"\r\nConnection: upgrade\r\n" in head_back
            assert await asyncio.wait_for(reader.readexactly(11), 10) == b"EARLY-BYTES"
            writer.write(b"later")
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"later"
            writer.close()


async def test_refused_upgrade_is_not_tunnelled(tmp_path: Path) -> None:
    """Smuggling scenario 1: a 426 answer keeps the connection in HTTP (§1.7)."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head, _ = _handshake("/426")
            smuggled = b"GET /internal HTTP/1.1\r\nHost: test\r\n\r\n"
            writer.write(head + smuggled)
            first = await _read_head(reader)
            assert first.startswith(b"HTTP/1.1 426 ")
            length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 10)
            second = await _read_head(reader)
            assert second.startswith(b"HTTP/1.1 200 OK\r\n")
            # The second request went through the proxy's parser: it was re-framed with
            # the proxy's headers, not copied raw into a tunnel.
            await asyncio.wait_for(backend.wait_heads(2), 10)
            assert backend.heads[1].startswith(b"GET /internal HTTP/1.1\r\nHost: test\r\n")
            assert b"X-Real-IP: 127.0.0.1\r\n" in backend.heads[1]
            writer.close()


async def test_idle_tunnel_is_closed_after_proxy_read_timeout(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], read_timeout="1s")
        async with proxy_in_process(conf, tmp_path) as worker:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head, _ = _handshake()
            writer.write(head)
            await _read_head(reader)
            assert len(worker.tunnels) == 1
            # Nobody sends anything: the proxy closes both sides.
            assert await asyncio.wait_for(reader.read(), 20) == b""
            assert not worker.tunnels
            writer.close()
        log = (tmp_path / "logs" / "error.log").read_text()
        assert (
            "upstream timed out (110: Connection timed out) while proxying upgraded connection"
            in log
        )
        access = (tmp_path / "logs" / "access.log").read_text()
        assert '"GET /ws HTTP/1.1" 101 0 ' in access


async def test_client_traffic_keeps_the_tunnel_open(tmp_path: Path) -> None:
    """proxy_read_timeout is idle in both directions: client->server traffic counts (§2.2)."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], read_timeout="2s")
        async with proxy_in_process(conf, tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_handshake()[0])
            await _read_head(reader)
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            n = 0
            while loop.time() < end:
                writer.write(b"p")
                assert await asyncio.wait_for(reader.readexactly(1), 10) == b"p"
                n += 1
                await asyncio.sleep(0.3)
            assert n >= 5
            writer.close()


async def test_backend_close_closes_the_client(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path) as worker:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_handshake()[0])
            await _read_head(reader)
            await backend.close()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            for _ in range(100):
                if not worker.tunnels:
                    break
                await asyncio.sleep(0.01)
            assert not worker.tunnels


async def test_slow_reader_does_not_grow_proxy_memory(tmp_path: Path) -> None:
    """Back-pressure: a client that sends but never reads fills buffers up to a bound."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path) as worker:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(_handshake()[0])
            loop = asyncio.get_running_loop()
            buf = b""
            sock.setblocking(False)
            while b"\r\n\r\n" not in buf:
                buf += await loop.sock_recv(sock, 4096)
            chunk = b"z" * 65536
            sent = 0
            limit = 64 << 20
            # Push until the whole chain stalls (the echo backend cannot write back to us
            # because we never read): a send that makes no progress for 1 s ends it.
            while sent < limit:
                try:
                    await asyncio.wait_for(loop.sock_sendall(sock, chunk), 1.0)
                except TimeoutError:
                    break
                sent += len(chunk)
            assert sent < limit, "the proxy accepted 64 MiB from a client that never reads"
            (tunnel,) = worker.tunnels
            assert tunnel.buffered() < 4 << 20
            sock.close()


async def test_worker_connections_counts_a_tunnel_twice(tmp_path: Path) -> None:
    """worker_connections 3: one tunnel (2) plus one idle client (1) fill the worker."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port]).replace(
            "worker_connections 1024;", "worker_connections 3;"
        )
        async with proxy_in_process(conf, tmp_path) as worker:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_handshake()[0])
            await _read_head(reader)
            assert worker.active_connections == 2
            _idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
            # The idle connection is accepted (wait for the proxy to count it)...
            for _ in range(500):
                if worker.active_connections == 3:
                    break
                await asyncio.sleep(0.01)
            assert worker.active_connections == 3
            # ...and one more is refused at once.
            r3, w3 = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(r3.read(), 10) == b""
            for w in (writer, idle_w, w3):
                w.close()
        log = (tmp_path / "logs" / "error.log").read_text()
        assert "3 worker_connections are not enough" in log


async def test_idle_tunnels_share_one_idle_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """proxy_read_timeout: one timer per worker and timeout value, not one per tunnel; an
    idle tunnel closes between the timeout and one step (an eighth) after it (the Python
    relay: the C relay sweeps its own tunnels, tests/integration/test_native_relay.py)."""
    monkeypatch.setenv("WSGATE_NATIVE_RELAY", "0")
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], read_timeout="2s")
        async with proxy_in_process(conf, tmp_path) as worker:
            loop = asyncio.get_running_loop()
            clients = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(_handshake()[0])
                await _read_head(reader)
                clients.append((reader, writer, loop.time()))
            (sweep,) = worker.idle_sweeps.values()
            assert sweep.step == 0.25 and sweep.timer is not None
            assert sweep.tunnels == worker.tunnels and len(worker.tunnels) == 3
            for reader, writer, opened in clients:
                assert await asyncio.wait_for(reader.read(), 20) == b""
                # 2 s idle, plus a step of 0.25 s; the rest is slack for a busy machine.
                assert 1.95 <= loop.time() - opened < 3.5
                writer.close()
            for _ in range(500):
                if not worker.tunnels:
                    break
                await asyncio.sleep(0.01)
            assert not worker.tunnels and not sweep.tunnels and sweep.timer is None


@pytest.mark.parametrize("kept", [False, True])
async def test_tunnel_log_line_rendered_at_the_101(tmp_path: Path, kept: bool) -> None:
    """A tunnel's access-log line is rendered when it opens but for what only its end
    knows. A map over such a variable keeps the whole request to the end instead (kept):
    the line is the same either way."""
    port = free_port()
    moved = "$moved" if kept else "$body_bytes_sent"
    fmt = (
        f'log_format t \'{moved}|$body_bytes_sent|$bytes_received|$http_x_test|$status|"$request"'
        "|$sent_http_upgrade|$upstream_http_upgrade|$connection_upgrade|$upstream_status';"
    )
    extra = fmt + " map $body_bytes_sent $moved { default $body_bytes_sent; }"
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], extra_http=extra, access_log="logs/access.log t")
        async with proxy_in_process(conf, tmp_path) as worker:
            (loc,) = worker.http.servers[0].locations
            assert worker.renders_tunnel_logs(loc) is not kept
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            head, _ = _handshake()
            writer.write(head.replace(b"\r\n\r\n", b"\r\nX-Test: a\xe9\r\n\r\n"))
            await _read_head(reader)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
            writer.close()
            for _ in range(500):
                if not worker.tunnels:
                    break
                await asyncio.sleep(0.01)
    line = (tmp_path / "logs" / "access.log").read_text().splitlines()
    length = len(head) + len(b"X-Test: a\xe9\r\n")
    assert line == [
        f'5|5|{length + 5}|a\\xE9|101|"GET /ws HTTP/1.1"|websocket|websocket|upgrade|101'
    ]


@pytest.mark.parametrize("native", ["0", "1"], ids=["python-relay", "c-relay"])
async def test_an_idle_tunnel_keeps_no_request_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    """After the 101 the client connection's protocol, the request, its variables and the
    upstream protocol are freed: an idle tunnel holds its Tunnel, sides and TunnelEnd."""
    monkeypatch.setenv("WSGATE_NATIVE_RELAY", native)
    from wsgate.proxy.downstream import Downstream, Request, TunnelEnd
    from wsgate.proxy.native import NativeTunnel
    from wsgate.proxy.native import available as native_available
    from wsgate.proxy.tunnel import Tunnel
    from wsgate.proxy.upstream import UpstreamProtocol
    from wsgate.vars.registry import RequestVars

    if native == "1":
        require_peer("the C relay (wsgate._relay built)", native_available())
    kinds = (Downstream, Request, RequestVars, UpstreamProtocol, Tunnel, NativeTunnel, TunnelEnd)

    def alive() -> dict[type, int]:
        gc.collect()
        counts = dict.fromkeys(kinds, 0)
        for obj in gc.get_objects():
            if type(obj) in counts:
                counts[type(obj)] += 1
        return counts

    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path) as worker:
            before = alive()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_handshake()[0])
            await _read_head(reader)
            assert len(worker.tunnels) == 1 and not worker.connections
            after = alive()
            grown = {k.__name__: after[k] - before[k] for k in kinds if after[k] != before[k]}
            relay = "NativeTunnel" if native == "1" else "Tunnel"
            assert grown == {relay: 1, "TunnelEnd": 1}
            (tunnel,) = worker.tunnels
            if isinstance(tunnel, Tunnel):
                for side in (tunnel.client, tunnel.upstream):  # set by the event loop
                    sock = side.transport.get_extra_info("socket")
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            # stub_status: one active connection, writing (nginx: until the request ends).
            totals = worker.stats.table.totals()
            assert (totals[ACTIVE], totals[WRITING]) == (1, 1)
            writer.close()
            for _ in range(500):
                if not worker.tunnels:
                    break
                await asyncio.sleep(0.01)
            totals = worker.stats.table.totals()
            assert (totals[ACTIVE], totals[WRITING]) == (0, 0)
