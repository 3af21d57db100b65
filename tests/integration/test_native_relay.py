"""The C relay of plain tunnels (``wsgate._relay``, ``proxy/native.py``), in process.

Each test checks that the tunnel really went to the C thread, then holds it to what the
Python relay does: early bytes first, back-pressure (a bounded buffer), EOF and RST each
way, the idle and send timeouts with nginx's error-log lines, ordering under load, and
the worker's graceful and fast stops. A seeded mix of 240 tunnels ending every way checks
that nothing is left behind: tunnels, descriptors, log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import pytest

from tests.support.backend import RecordingBackend, websocket_accept
from tests.support.confs import article_conf
from tests.support.lb import WsTunnel, open_tunnel
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process
from wsgate.conf.build import load
from wsgate.proxy import native
from wsgate.proxy.native import NativeTunnel
from wsgate.proxy.tunnel import Tunnel
from wsgate.proxy.worker import Worker

OFF = os.environ.get("WSGATE_NATIVE_RELAY", "1") == "0"
needs_native = pytest.mark.skipif(OFF, reason="WSGATE_NATIVE_RELAY=0")

Behave = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawPeer:
    """A backend that answers the upgrade with a 101 (plus ``early`` bytes in the same
    write), then gives the connection to ``behave``."""

    def __init__(self, behave: Behave, early: bytes = b"") -> None:
        self.behave = behave
        self.early = early
        self.port = 0
        self.server: asyncio.Server | None = None
        self.done: list[asyncio.Future[None]] = []

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self.done.append(done)
        try:
            with contextlib.suppress(ConnectionError):
                await self._serve(reader, writer)
        finally:
            writer.close()
            done.set_result(None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if True:
            head = await reader.readuntil(b"\r\n\r\n")
            key = re.search(rb"Sec-WebSocket-Key: *(\S+)", head, re.IGNORECASE)
            assert key is not None
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + websocket_accept(key.group(1))
                + b"\r\n\r\n"
                + self.early
            )
            await self.behave(reader, writer)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _until(what: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not what():
            await asyncio.sleep(0.01)


def _log(tmp_path: Path, name: str = "error.log") -> str:
    return (tmp_path / "logs" / name).read_text()


def _the_tunnel(worker: Worker) -> NativeTunnel:
    (tunnel,) = worker.tunnels
    assert isinstance(tunnel, NativeTunnel)
    return tunnel


def test_extension_is_built() -> None:
    """``pip install -e .`` compiled ``wsgate._relay`` (it is optional only for installs
    without a compiler)."""
    assert native._relay is not None, "wsgate._relay was not built"


@needs_native
async def test_plain_tunnels_use_the_native_relay(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            assert ws.reply.status == 101
            assert await ws.echo(b"hello") == b"hello"
            tunnel = _the_tunnel(worker)
            assert worker.native is not None and worker.native.opened == 1
            assert worker.native.relay.tunnels == 1
            await ws.close()
            await _until(lambda: not worker.tunnels)
            assert tunnel.closed and (tunnel.client.nbytes, tunnel.upstream.nbytes) == (5, 5)
            assert worker.native.relay.tunnels == 0
            assert worker.active_connections == 0
    access = _log(tmp_path, "access.log")
    assert '"GET /ws HTTP/1.1" 101 5 ' in access
    assert "recv() failed" not in _log(tmp_path)


async def test_native_relay_off_keeps_the_python_relay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSGATE_NATIVE_RELAY", "0")
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            assert await ws.echo(b"x") == b"x"
            (tunnel,) = worker.tunnels
            assert isinstance(tunnel, Tunnel)
            assert worker.native is None
            await ws.close()


@needs_native
async def test_early_bytes_go_first_both_ways(tmp_path: Path) -> None:
    port = free_port()
    async with RawPeer(_echo, early=b"peer-early;") as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path) as worker:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\nclient-early;"
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101 ")
            got = await asyncio.wait_for(reader.readexactly(24), 10)
            assert got == b"peer-early;client-early;"
            _the_tunnel(worker)
            writer.write(b"more")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"more"
            writer.close()
            await _until(lambda: not worker.tunnels)
    # 11 early bytes from the peer + 13 echoed + 4: what the client received.
    assert '"GET /ws HTTP/1.1" 101 28 ' in _log(tmp_path, "access.log")


@needs_native
async def test_large_transfer_both_ways_with_a_slow_reader_stays_bounded(
    tmp_path: Path,
) -> None:
    """64 MiB through an echo peer to a client that reads nothing for a second, then
    slowly: the bytes come back whole and in order, and the relay never keeps more than
    one read per direction (the kernel's socket buffers hold the rest of the stall)."""
    port = free_port()
    block = os.urandom(1 << 20)
    total = 64 << 20
    async with RawPeer(_echo) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            sock = ws.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            tunnel = _the_tunnel(worker)
            assert worker.native is not None
            relay = worker.native.relay
            sent = hashlib.sha256()

            async def write() -> None:
                for i in range(total // len(block)):
                    data = struct.pack("!I", i) + block[4:]
                    sent.update(data)
                    ws.writer.write(data)
                    await ws.writer.drain()

            writer = asyncio.create_task(write())
            await asyncio.sleep(1.0)  # the whole chain stalls on the client
            assert not writer.done()
            assert tunnel.buffered() <= 2 * native.READ_SIZE
            got = hashlib.sha256()
            n = 0
            async with asyncio.timeout(40):
                while n < total:
                    data = await ws.reader.read(1 << 16)
                    assert data
                    got.update(data)
                    n += len(data)
                    if n < (1 << 20):
                        await asyncio.sleep(0.001)  # slow at first
            await writer
            assert got.digest() == sent.digest()
            assert 0 < relay.peak_buffered <= 2 * native.READ_SIZE
            await ws.close()
            await _until(lambda: not worker.tunnels)
            assert (tunnel.client.nbytes, tunnel.upstream.nbytes) == (total, total)
            assert relay.buffered == 0


@needs_native
async def test_client_eof_closes_the_peer(tmp_path: Path) -> None:
    port = free_port()
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read())

    async with RawPeer(record) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            _the_tunnel(worker)
            ws.writer.write(b"last words")
            await ws.close()
            await _until(lambda: bool(peer.done) and peer.done[0].done())
            await _until(lambda: not worker.tunnels)
    assert seen == [b"last words"]
    assert "recv() failed" not in _log(tmp_path)


@needs_native
async def test_peer_eof_closes_the_client_after_its_last_bytes(tmp_path: Path) -> None:
    port = free_port()

    async def goodbye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(2)
        writer.write(b"bye" * 100_000)
        await writer.drain()

    async with RawPeer(goodbye) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            _the_tunnel(worker)
            ws.writer.write(b"go")
            data = await asyncio.wait_for(ws.reader.read(), 10)
            assert data == b"bye" * 100_000
            await _until(lambda: not worker.tunnels)
            await ws.close()
    assert '"GET /ws HTTP/1.1" 101 300000 ' in _log(tmp_path, "access.log")


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@needs_native
async def test_client_reset_closes_the_peer_and_is_logged(tmp_path: Path) -> None:
    port = free_port()
    async with RawPeer(_echo) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            assert await ws.echo(b"ping") == b"ping"
            _the_tunnel(worker)
            _reset(ws.writer.get_extra_info("socket"))
            ws.writer.transport.abort()
            await _until(lambda: bool(peer.done) and peer.done[0].done())
            await _until(lambda: not worker.tunnels)
    assert (
        "recv() failed (104: Connection reset by peer) while proxying upgraded connection"
        in _log(tmp_path)
    )


@needs_native
async def test_peer_reset_closes_the_client(tmp_path: Path) -> None:
    port = free_port()

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        _reset(writer.get_extra_info("socket"))
        writer.transport.abort()

    async with RawPeer(reset) as peer:
        async with proxy_in_process(article_conf(port, [peer.port]), tmp_path) as worker:
            ws = await open_tunnel(port)
            _the_tunnel(worker)
            ws.writer.write(b"!")
            assert await ws.eof()
            await _until(lambda: not worker.tunnels)
            await ws.close()
    assert "recv() failed (104: Connection reset by peer)" in _log(tmp_path)


@needs_native
async def test_idle_timeout_in_c(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], read_timeout="1s")
        async with proxy_in_process(conf, tmp_path) as worker:
            loop = asyncio.get_running_loop()
            ws = await open_tunnel(port)
            _the_tunnel(worker)
            # Traffic each way resets the idle time: client bytes (echoed back) for 2 s.
            end = loop.time() + 2.0
            while True:
                assert await ws.echo(b".") == b"."
                last = loop.time()
                if last >= end:
                    break
                await asyncio.sleep(0.3)
            assert await ws.eof()
            idle = loop.time() - last
            assert 0.95 <= idle < 1.8, idle
            await _until(lambda: not worker.tunnels)
            await ws.close()
    assert (
        "upstream timed out (110: Connection timed out) while proxying upgraded connection"
        in _log(tmp_path)
    )


@needs_native
async def test_peer_traffic_alone_keeps_the_tunnel_open(tmp_path: Path) -> None:
    port = free_port()

    async def tick(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(8):
            writer.write(b"t")
            await writer.drain()
            await asyncio.sleep(0.3)
        await reader.read()

    async with RawPeer(tick) as peer:
        conf = article_conf(port, [peer.port], read_timeout="1s")
        async with proxy_in_process(conf, tmp_path) as worker:
            ws = await open_tunnel(port)
            _the_tunnel(worker)
            got = await asyncio.wait_for(ws.reader.readexactly(8), 10)
            assert got == b"t" * 8  # 2.4 s of ticks, never idle for 1 s
            assert await ws.eof()  # then idle: closed
            await _until(lambda: not worker.tunnels)
            await ws.close()


@needs_native
async def test_send_timeout_closes_a_client_that_never_reads(tmp_path: Path) -> None:
    port = free_port()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"f" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):
                writer.write(chunk)
                await writer.drain()

    async with RawPeer(flood) as peer:
        conf = article_conf(port, [peer.port], extra_http="send_timeout 1s;")
        async with proxy_in_process(conf, tmp_path) as worker:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await _until(lambda: len(worker.tunnels) == 1)
            _the_tunnel(worker)
            await _until(lambda: not worker.tunnels, timeout=20)
            sock.close()
    assert (
        "client timed out (110: Connection timed out) while proxying upgraded connection"
        in _log(tmp_path)
    )


@needs_native
async def test_proxy_send_timeout_closes_a_peer_that_never_reads(tmp_path: Path) -> None:
    port = free_port()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        cast(asyncio.Transport, writer.transport).pause_reading()
        await asyncio.sleep(30)

    async with RawPeer(deaf) as peer:
        conf = article_conf(
            port, [peer.port], extra_location="proxy_send_timeout 1s;", read_timeout="60s"
        )
        async with proxy_in_process(conf, tmp_path) as worker:
            ws = await open_tunnel(port)
            _the_tunnel(worker)

            async def push() -> None:
                with contextlib.suppress(ConnectionError):
                    for _ in range(1024):
                        ws.writer.write(b"p" * 65536)
                        await ws.writer.drain()

            pusher = asyncio.create_task(push())
            await _until(lambda: not worker.tunnels, timeout=20)
            pusher.cancel()
            await ws.close()
    assert (
        "upstream timed out (110: Connection timed out) while proxying upgraded connection"
        in _log(tmp_path)
    )


@needs_native
async def test_300_tunnels_keep_their_messages_in_order(tmp_path: Path) -> None:
    port = free_port()
    count, messages = 300, 30
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path) as worker:
            tunnels: list[WsTunnel] = []
            for _ in range(count // 50):
                tunnels += await asyncio.gather(*(open_tunnel(port) for _ in range(50)))
            assert all(isinstance(t, NativeTunnel) for t in worker.tunnels)
            assert len(worker.tunnels) == count

            async def one(i: int, ws: WsTunnel) -> None:
                expected = b"".join(b"%d:%d;" % (i, n) for n in range(messages))
                for n in range(messages):
                    ws.writer.write(b"%d:%d;" % (i, n))
                    if n % 7 == 0:
                        await asyncio.sleep(0)
                got = await asyncio.wait_for(ws.reader.readexactly(len(expected)), 20)
                assert got == expected

            await asyncio.gather(*(one(i, ws) for i, ws in enumerate(tunnels)))
            for ws in tunnels:
                await ws.close()
            await _until(lambda: not worker.tunnels)
            assert worker.native is not None and worker.native.relay.tunnels == 0


async def _started_worker(conf: str, tmp_path: Path) -> Worker:
    path = tmp_path / "wsgate.conf"
    path.write_text(conf)
    (tmp_path / "logs").mkdir(exist_ok=True)
    worker = Worker(load(str(path), prefix=str(tmp_path)))
    await worker.start()
    return worker


@needs_native
async def test_graceful_stop_waits_for_native_tunnels(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        worker = await _started_worker(article_conf(port, [backend.port]), tmp_path)
        ws = await open_tunnel(port)
        _the_tunnel(worker)
        stopping = asyncio.create_task(worker.stop(graceful=True, timeout=20))
        await asyncio.sleep(0.3)
        assert not stopping.done()
        assert await ws.echo(b"still here") == b"still here"
        await ws.close()
        await asyncio.wait_for(stopping, 10)
        assert worker.native is not None and not worker.native.relay.running
    assert '"GET /ws HTTP/1.1" 101 10 ' in _log(tmp_path, "access.log")


@needs_native
async def test_fast_stop_closes_native_tunnels_at_once(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        worker = await _started_worker(article_conf(port, [backend.port]), tmp_path)
        tunnels = [await open_tunnel(port) for _ in range(5)]
        for ws in tunnels:
            assert await ws.echo(b"abc") == b"abc"
        assert len(worker.tunnels) == 5
        await asyncio.wait_for(worker.stop(graceful=False), 5)
        assert not worker.tunnels
        assert worker.native is not None and not worker.native.relay.running
        for ws in tunnels:
            assert await ws.eof()
            await ws.close()
    access = _log(tmp_path, "access.log")
    assert access.count('"GET /ws HTTP/1.1" 101 3 ') == 5


# -- many tunnels, each ending its own way ---------------------------------------------------

_WAYS = ("echo", "peer-eof", "peer-reset", "client-reset", "client-half-close", "bulk")
_BULK = 256 * 1024


_peers_done: list[int] = [0]  # connections _mixed_peer has finished with (and closed)


async def _mixed_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A backend whose path says how its tunnel ends: ``/WAY/N``."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        way, n = head.split(b" ", 2)[1].decode().split("/")[1:3]
        key = re.search(rb"Sec-WebSocket-Key: *(\S+)", head, re.IGNORECASE)
        assert key is not None
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + websocket_accept(key.group(1)) + b"\r\n\r\n"
        )
        if way == "peer-reset":
            await reader.readexactly(int(n))
            _reset(writer.get_extra_info("socket"))
            writer.transport.abort()
            return
        if way == "peer-eof":
            writer.write(await reader.readexactly(int(n)))
            return  # the finally closes: the client gets the echo, then EOF
        if way == "bulk":
            # Both directions at once: the client's bytes counted, a block of our own sent.
            writer.write(b"b" * _BULK)
            got = len(await reader.readexactly(_BULK))
            writer.write(got.to_bytes(8, "big"))
            await writer.drain()
        await _echo(reader, writer)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        _peers_done[0] += 1


async def _mixed_client(port: int, way: str, n: int) -> None:
    ws = await open_tunnel(port, f"/{way}/{n}")
    assert ws.reply.status == 101
    data = bytes(i % 251 for i in range(n))
    async with asyncio.timeout(20):
        if way == "echo":
            ws.writer.write(data)
            assert await ws.reader.readexactly(n) == data
            await ws.close()
        elif way == "peer-eof":
            ws.writer.write(data)
            assert await ws.reader.readexactly(n) == data
            assert await ws.reader.read() == b""  # the peer's EOF, passed on
            await ws.close()
        elif way == "peer-reset":
            ws.writer.write(data)
            assert await ws.eof()
            await ws.close()
        elif way == "client-reset":
            ws.writer.write(data)
            assert await ws.reader.readexactly(n) == data
            _reset(ws.writer.get_extra_info("socket"))
            ws.writer.transport.abort()
            with contextlib.suppress(ConnectionError):
                await ws.writer.wait_closed()
        elif way == "client-half-close":
            ws.writer.write(data)
            ws.writer.write_eof()  # nginx's tunnel closes both sides on the first EOF
            assert await ws.eof()
            await ws.close()
        else:  # bulk: a slow reader of 256 KiB while writing 256 KiB
            ws.writer.write(b"c" * _BULK)
            got = 0
            while got < _BULK:
                got += len(await ws.reader.read(4096))
                await asyncio.sleep(0)
            assert got == _BULK
            assert int.from_bytes(await ws.reader.readexactly(8), "big") == _BULK
            ws.writer.write(data)
            assert await ws.reader.readexactly(n) == data
            await ws.close()


def _sockets() -> set[str]:
    """The sockets this process holds (``socket:[INODE]``)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


@needs_native
async def test_240_tunnels_ending_every_way_leave_nothing_behind(tmp_path: Path) -> None:
    """A seeded mix of echoes, EOFs and resets from either side, half-closes and bulk
    transfers, 40 at a time: every tunnel ends with its bytes intact, the relay and the
    worker hold nothing afterwards, no descriptor is left open, every tunnel is logged,
    and the worker still opens tunnels."""
    rng = random.Random(20261125)
    plan = [(rng.choice(_WAYS), rng.randrange(1, 20_000)) for _ in range(240)]
    port = free_port()
    sockets_before = _sockets()
    _peers_done[0] = 0
    server = await asyncio.start_server(_mixed_peer, "127.0.0.1", 0)
    peer_port = server.sockets[0].getsockname()[1]
    try:
        async with proxy_in_process(article_conf(port, [peer_port]), tmp_path) as worker:
            for at in range(0, len(plan), 40):
                await asyncio.gather(*(_mixed_client(port, w, n) for w, n in plan[at : at + 40]))
            await _until(lambda: not worker.tunnels)
            assert worker.native is not None
            assert worker.native.opened == len(plan)
            assert worker.native.relay.tunnels == 0 and not worker.native.tunnels
            assert worker.active_connections == 0
            # Still serving.
            ws = await open_tunnel(port, "/echo/1")
            assert await ws.echo(b"after") == b"after"
            await ws.close()
            await _until(lambda: not worker.tunnels)
            await _until(lambda: _peers_done[0] == len(plan) + 1)
    finally:
        server.close()
        await server.wait_closed()
    # No socket of the test's is left open: neither the tunnels' nor the relay's duplicates.
    assert _sockets() <= sockets_before
    lines = _log(tmp_path, "access.log").splitlines()
    assert len([line for line in lines if '" 101 ' in line]) == len(plan) + 1
