"""Slow clients, limits and arbitrary bytes: the proxy closes the bad ones at their
timeouts and keeps serving everybody else."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.backend import RecordingBackend
from tests.support.confs import article_conf
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process
from wsgate.conf.build import load
from wsgate.proxy.worker import Worker


async def get_ok(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_slowloris_is_closed_and_others_are_served(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(port, [backend.port], extra_http="client_header_timeout 2s;")
        async with proxy_in_process(conf, tmp_path):
            slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
            closed = asyncio.Event()
            done = 0

            async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                nonlocal done
                line = b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 1000
                try:
                    for byte in line:
                        writer.write(bytes([byte]))
                        await asyncio.sleep(0.1)
                        if reader.at_eof():
                            break
                except OSError:
                    pass
                # The proxy closed the connection at client_header_timeout.
                assert await asyncio.wait_for(reader.read(), 20) == b""
                done += 1
                if done == len(slow):
                    closed.set()

            drips = [asyncio.create_task(drip(r, w)) for r, w in slow]
            # Meanwhile ordinary clients are answered.
            served = [await get_ok(port) for _ in range(30)]
            assert all(served)
            await asyncio.wait_for(closed.wait(), 30)
            await asyncio.gather(*drips)
            for _, w in slow:
                w.close()


async def test_slow_reader_is_closed_at_send_timeout(tmp_path: Path) -> None:
    port = free_port()
    big = b"x" * (32 << 20)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"GET /big" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big))
            writer.write(big)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer_port = server.sockets[0].getsockname()[1]
    try:
        conf = article_conf(port, [peer_port], extra_http="send_timeout 1s;")
        async with proxy_in_process(conf, tmp_path) as worker:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            # Never read: others are served meanwhile, and the proxy drops this client
            # once a write has been blocked for send_timeout (what the kernel already
            # holds may still trickle out, as with nginx's reset_timedout_connection off).
            assert await get_ok(port)
            for _ in range(2000):
                if not worker.connections:
                    break
                await asyncio.sleep(0.01)
            assert not worker.connections
            assert await get_ok(port)
            sock.close()
        log = (tmp_path / "logs" / "error.log").read_text()
        assert "client timed out (110: Connection timed out)" in log
    finally:
        server.close()


# -- arbitrary bytes against a running proxy (hypothesis drives blocking sockets) ----------


@pytest.fixture(scope="module")
def threaded_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A proxy (and its backend) on an event loop in a thread; yields the proxy port."""
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "logs").mkdir()
    port = free_port()
    ready = threading.Event()
    loop = uvloop.new_event_loop()
    state: dict[str, object] = {}

    async def start() -> None:
        backend = RecordingBackend("fuzz")
        await backend.start()
        path = tmp / "wsgate.conf"
        path.write_text(article_conf(port, [backend.port], extra_http="client_header_timeout 2s;"))
        worker = Worker(load(str(path), prefix=str(tmp)))
        await worker.start()
        state.update(backend=backend, worker=worker)
        ready.set()

    def run() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(15)
    yield port

    async def stop() -> None:
        await state["worker"].stop(graceful=False)  # type: ignore[attr-defined]
        await state["backend"].close()  # type: ignore[attr-defined]

    asyncio.run_coroutine_threadsafe(stop(), loop).result(15)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(15)
    loop.close()


PIECES = st.sampled_from(
    [
        b"GET ",
        b"POST ",
        b"/ws",
        b"/",
        b"?a=%zz",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"\r\n",
        b"\n",
        b"Host: t",
        b"Content-Length: 3",
        b"Content-Length: x",
        b"Transfer-Encoding: chunked",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"3\r\nabc\r\n0\r\n\r\n",
        b": ",
        b"\x00",
        b"\xff",
        b" ",
    ]
)


def exchange(port: int, data: bytes, half_close: bool = True) -> bytes:
    """Send ``data`` (then half-close), read until the proxy closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(PIECES, max_size=25).map(b"".join))
def test_any_bytes_get_an_answer_or_a_close(threaded_proxy: int, data: bytes) -> None:
    out = exchange(threaded_proxy, data)
    # Whatever was sent, the connection ended (no half-parsed hang), and anything sent
    # back is HTTP.
    assert out == b"" or out.startswith(b"HTTP/1.1 ")
    # And the proxy still serves a normal request.
    ok = exchange(
        threaded_proxy,
        b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        half_close=False,
    )
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_limit_conn_counts_open_tunnels_per_address(tmp_path: Path) -> None:
    """limit_conn addr 2: two tunnels from one address fill it; the third gets 503 and a
    tunnel that ends gives its slot back."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(
            port,
            [backend.port],
            extra_http="limit_conn_zone $binary_remote_addr zone=addr:10m;",
            extra_location="limit_conn addr 2;",
        )
        async with proxy_in_process(conf, tmp_path):

            async def tunnel() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                return reader, writer, head

            first, second = await tunnel(), await tunnel()
            assert first[2].startswith(b"HTTP/1.1 101 ") and second[2].startswith(b"HTTP/1.1 101 ")
            third = await tunnel()
            assert third[2].startswith(b"HTTP/1.1 503 Service Temporarily Unavailable\r\n")
            third[1].close()
            # A tunnel ends: its slot is free again.
            first[1].close()
            for _ in range(500):
                again = await tunnel()
                again[1].close()
                if again[2].startswith(b"HTTP/1.1 101 "):
                    break
                await asyncio.sleep(0.01)
            assert again[2].startswith(b"HTTP/1.1 101 ")
            second[1].close()
    log = (tmp_path / "logs" / "error.log").read_text()
    assert 'limiting connections by zone "addr"' in log


async def test_body_keepalive_timeouts_and_keepalive_requests(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = article_conf(
            port,
            [backend.port],
            extra_http="client_body_timeout 1s; keepalive_timeout 1s; keepalive_requests 2;",
        )
        async with proxy_in_process(conf, tmp_path):
            # client_body_timeout: half a body, then silence -> closed, 408 in the log.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf")
            assert await asyncio.wait_for(reader.read(), 20) == b""
            writer.close()
            # keepalive_timeout: an idle keep-alive connection is closed.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /k HTTP/1.1\r\nHost: t\r\n\r\n")
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert b"Connection: keep-alive" in first
            length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert await asyncio.wait_for(reader.read(), 20) == b""
            writer.close()
            # keepalive_requests 2: the second response says close, and the proxy closes.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
            heads = []
            for _ in range(2):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                heads.append(head)
            assert b"Connection: keep-alive" in heads[0]
            assert b"Connection: close" in heads[1]
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
    log = (tmp_path / "logs" / "error.log").read_text()
    assert "client timed out (110: Connection timed out) while reading client request body" in log
    access = (tmp_path / "logs" / "access.log").read_text()
    assert '"POST /b HTTP/1.1" 408 ' in access


async def first_line(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return line


async def test_line_limits_and_refused_methods_as_nginx(tmp_path: Path) -> None:
    """A line must fit in a large header buffer with its CRLF (414 for the request line,
    400 for a header line); CONNECT and TRACE get 405 (ngx_http_process_request_header);
    nothing of it reaches the backend."""
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):

            def line(size: int) -> bytes:  # a request line of `size` bytes before CRLF
                return b"GET /" + b"a" * (size - 14) + b" HTTP/1.1"

            def header(size: int) -> bytes:
                return b"X-Fill: " + b"b" * (size - 8)

            expected = [
                (line(8190) + b"\r\nHost: t\r\n\r\n", b"HTTP/1.1 200 OK\r\n"),
                (line(8191) + b"\r\nHost: t\r\n\r\n", b"HTTP/1.1 414 Request-URI Too Large\r\n"),
                (b"\r\n" + line(8190) + b"\r\nHost: t\r\n\r\n", b"HTTP/1.1 200 OK\r\n"),
                (
                    b"GET / HTTP/1.1\r\nHost: t\r\n" + header(8190) + b"\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\n",
                ),
                (
                    b"GET / HTTP/1.1\r\nHost: t\r\n" + header(8191) + b"\r\n\r\n",
                    b"HTTP/1.1 400 Bad Request\r\n",
                ),
                (b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 405 Not Allowed\r\n"),
                (b"CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n", b"HTTP/1.1 405 Not Allowed\r\n"),
            ]
            got = [await first_line(port, data) for data, _ in expected]
            assert got == [status for _, status in expected]
            assert len(backend.heads) == 3
