"""Peer responses that nginx reads in its own way, through the in-process proxy on real
sockets (the pieces ``tests/interop/test_nginx_response_fuzz.py`` found; docs/behavior.md
"Responses"). The peer is ``tests.support.scripted_peer.ScriptPlayer``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.lb import IO_TIMEOUT
from tests.support.ports import free_port
from tests.support.scripted_peer import Script, ScriptPlayer
from tests.support.wsgate import proxy_in_process

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SCRIPTS = {
    # An interim response and the response in one write, or in two.
    "/interim": Script((b"HTTP/1.1 100 Continue\r\n\r\n" + OK,), False),
    "/interim-split": Script((b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", OK), False),
    # A chunk-size line with a bare LF is refused at once, not waited on.
    "/bare-lf": Script(
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\n0\n\n",), False
    ),
    # nginx keeps a 204's Content-Length; the status line is the peer's from the code on.
    "/no-content": Script((b"HTTP/1.1 204\r\nContent-Length: 0\r\n\r\n",), False),
    "/bare-lf-head": Script((b"HTTP/1.1 200 Fine\nX-A: 1\nContent-Length: 2\n\nok",), False),
}


def conf(port: int, peer: int) -> str:
    return f"""\
events {{ }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{peer};
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


async def exchange(port: int, path: str) -> bytes:
    """One request with ``Connection: close``; everything until the proxy closes."""
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
    return data


async def test_responses_read_as_nginx_does(tmp_path: Path) -> None:
    port = free_port()
    async with ScriptPlayer(SCRIPTS, Script((OK,), True)) as peer:
        async with proxy_in_process(conf(port, peer.port), tmp_path):
            for path in ("/interim", "/interim-split"):
                data = await exchange(port, path)
                assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nok")
            data = await exchange(port, "/bare-lf")  # closed after the head, not at 30s
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n")
            data = await exchange(port, "/no-content")
            assert data.startswith(b"HTTP/1.1 204\r\n") and b"\r\nContent-Length: 0\r\n" in data
            data = await exchange(port, "/bare-lf-head")
            assert data.startswith(b"HTTP/1.1 200 Fine\r\n") and data.endswith(b"\r\n\r\nok")
            assert b"\r\nX-A: 1\r\n" in data
