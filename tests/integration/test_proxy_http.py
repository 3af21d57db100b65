"""Plain HTTP through the proxy: bodies, framing, keep-alive, pipelining, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.backend import CHUNKS, CLOSE_DELIMITED_BODY, RecordingBackend
from tests.support.confs import article_conf
from tests.support.ports import free_port, free_ports
from tests.support.wsgate import proxy_in_process


class Client:
    """A raw HTTP/1.1 client that reads responses exactly as framed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def response(self, head_request: bool = False) -> tuple[bytes, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(": ")
                headers[name.lower()] = value
        body = b""
        status = int(lines[0].split(" ")[1])
        if head_request or status in (204, 304) or status < 200:
            pass
        elif "content-length" in headers:
            body = await asyncio.wait_for(
                self.reader.readexactly(int(headers["content-length"])), 10
            )
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += data[:-2]
        else:
            body = await asyncio.wait_for(self.reader.read(), 10)
        return head, headers, body

    def close(self) -> None:
        self.writer.close()


async def test_get_keep_alive_and_pipelining(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            c = await Client.open(port)
            c.writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            head, headers, body = await c.response()
            assert head.startswith(b"HTTP/1.1 200 OK\r\nServer: wsgate/")
            assert headers["connection"] == "keep-alive"
            assert body.startswith(b"GET /one HTTP/1.1\r\nHost: x\r\n")
            # Two pipelined requests in one packet, answered in order.
            c.writer.write(
                b"GET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            _, _, body2 = await c.response()
            _, _, body3 = await c.response()
            assert body2.startswith(b"GET /two ")
            assert body3.startswith(b"GET /three ")
            c.close()
            # Non-upgrade requests get "Connection: close" upstream from the map.
            assert all(b"\r\nConnection: close\r\n" in h for h in backend.heads)


async def test_request_bodies_content_length_and_chunked(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            c = await Client.open(port)
            c.writer.write(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            await c.response()
            c.writer.write(
                b"PUT /q HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"
            )
            await c.response()
            c.close()
            assert backend.bodies[:2] == [b"hello", b"abcdefg"]
            # A chunked request body is sent upstream with a Content-Length (§1.4 item 7).
            assert b"\r\nContent-Length: 7\r\n" in backend.heads[1]
            assert b"Transfer-Encoding" not in backend.heads[1]


async def test_response_framings(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            c = await Client.open(port)
            c.writer.write(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
            _, headers, body = await c.response()
            assert headers["transfer-encoding"] == "chunked"
            assert body == b"".join(CHUNKS)
            # Close-delimited upstream body to an HTTP/1.1 client: re-chunked, kept alive.
            c.writer.write(b"GET /close-delimited HTTP/1.1\r\nHost: x\r\n\r\n")
            _, headers, body = await c.response()
            assert headers["transfer-encoding"] == "chunked"
            assert headers["connection"] == "keep-alive"
            assert body == CLOSE_DELIMITED_BODY
            c.writer.write(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
            _, headers, body = await c.response(head_request=True)
            assert int(headers["content-length"]) > 0
            c.writer.write(b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n")
            head, headers, body = await c.response()
            assert head.startswith(b"HTTP/1.1 204 No Content\r\n") and body == b""
            c.close()
            # HTTP/1.0 client: close-delimited body, then the proxy closes.
            c = await Client.open(port)
            c.writer.write(b"GET /close-delimited HTTP/1.0\r\n\r\n")
            _, headers, body = await c.response()
            assert headers["connection"] == "close"
            assert body == CLOSE_DELIMITED_BODY
            c.close()


async def test_dead_backend_is_skipped(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    async with RecordingBackend("live") as backend:
        conf = article_conf(port, [dead, backend.port])
        async with proxy_in_process(conf, tmp_path):
            for _ in range(4):
                c = await Client.open(port)
                c.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                head, _, _ = await c.response()
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                c.close()
        errors = (tmp_path / "logs" / "error.log").read_text()
        assert "connect() failed (111: Connection refused) while connecting to upstream" in errors
        assert "upstream server temporarily disabled" in errors
        access = (tmp_path / "logs" / "access.log").read_text().splitlines()
        assert len(access) == 4


async def test_all_backends_dead_gives_502_and_no_live_upstreams(tmp_path: Path) -> None:
    port, d1, d2 = free_ports(3)
    async with proxy_in_process(article_conf(port, [d1, d2]), tmp_path):
        for _ in range(2):
            c = await Client.open(port)
            c.writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, body = await c.response()
            assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
            assert b"<center><h1>502 Bad Gateway</h1></center>" in body
            c.close()
    errors = (tmp_path / "logs" / "error.log").read_text()
    assert "no live upstreams while connecting to upstream" in errors
    assert 'upstream: "http://websocket/x"' in errors


async def test_backend_that_never_answers_gives_504(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("slow") as backend:
        conf = article_conf(port, [backend.port], read_timeout="1s")
        async with proxy_in_process(conf, tmp_path):
            c = await Client.open(port)
            c.writer.write(b"GET /sleep/30 HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, _ = await c.response()
            assert head.startswith(b"HTTP/1.1 504 Gateway Time-out\r\n")
            c.close()
    errors = (tmp_path / "logs" / "error.log").read_text()
    assert "upstream timed out (110: Connection timed out) while reading response header" in errors


async def test_malformed_requests(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(article_conf(port, [backend.port]), tmp_path):
            cases = [
                (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
                (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400"),
                (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", b"400"),
                (
                    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n",
                    b"400",
                ),
                (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", b"413"),
                (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b"414"),
            ]
            for raw, status in cases:
                c = await Client.open(port)
                c.writer.write(raw)
                head, headers, _ = await c.response()
                assert head.split(b" ")[1] == status, (raw[:40], head)
                assert headers["connection"] == "close"
                c.close()
            assert backend.heads == []
