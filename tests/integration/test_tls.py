"""TLS at the edge and towards peers, with certificates made at test time (trustme)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trustme
from websockets.asyncio.client import connect

from tests.support.backend import RecordingBackend
from tests.support.ports import free_port, free_ports
from tests.support.procs import wsgate_cmd
from tests.support.wsgate import proxy_in_process
from wsgate.echo.server import Mode, serve_echo
from wsgate.proxy.tunnel import Tunnel


def write_cert(ca: trustme.CA, tmp_path: Path, *names: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(*names)
    crt, key = tmp_path / f"{names[0]}.crt", tmp_path / f"{names[0]}.key"
    cert.cert_chain_pems[0].write_to_path(str(crt))
    cert.private_key_pem.write_to_path(str(key))
    return crt, key


def tls_conf(port: int, backend: int, crt: Path, key: Path, extra_server: str = "") -> str:
    return f"""events {{}}
error_log logs/error.log info;
http {{
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  log_format s '$scheme $https $status "$request"';
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    access_log logs/access.log s;
    {extra_server}
    location / {{
      proxy_pass http://127.0.0.1:{backend};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"""


def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def https_get(port: int, ctx: ssl.SSLContext, host: str = "localhost") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=host)
    writer.write(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_wss_end_to_end_and_scheme(tmp_path: Path) -> None:
    ca = trustme.CA()
    crt, key = write_cert(ca, tmp_path, "localhost")
    port, echo_port = free_ports(2)
    ready, stop = asyncio.Event(), asyncio.Event()
    echo = asyncio.create_task(
        serve_echo("127.0.0.1", [echo_port], mode=Mode.ECHO, quiet=True, ready=ready, stop=stop)
    )
    await ready.wait()
    try:
        async with proxy_in_process(tls_conf(port, echo_port, crt, key), tmp_path) as worker:
            async with connect(
                f"wss://localhost:{port}/", ssl=client_ctx(ca), host="127.0.0.1"
            ) as ws:
                for text in ("hello", "x" * 100_000):
                    await ws.send(text)
                    assert await ws.recv() == text
                # A TLS client stays on the Python relay: the C relay sees only ciphertext.
                (tunnel,) = worker.tunnels
                assert isinstance(tunnel, Tunnel)
                assert worker.native is None or worker.native.opened == 0
    finally:
        stop.set()
        await echo
    assert "https on 101" in (tmp_path / "logs" / "access.log").read_text()


async def test_x_forwarded_proto_is_https(tmp_path: Path) -> None:
    ca = trustme.CA()
    crt, key = write_cert(ca, tmp_path, "localhost")
    port = free_port()
    async with RecordingBackend("a") as backend:
        async with proxy_in_process(tls_conf(port, backend.port, crt, key), tmp_path):
            data = await https_get(port, client_ctx(ca))
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"\r\nX-Forwarded-Proto: https\r\n" in backend.heads[0]


async def test_sni_picks_the_server_and_its_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    a_crt, a_key = write_cert(ca, tmp_path, "a.test")
    b_crt, b_key = write_cert(ca, tmp_path, "b.test")
    port = free_port()
    conf = f"""events {{}}
http {{
  server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
           ssl_certificate {a_crt}; ssl_certificate_key {a_key};
           access_log off; location / {{ return 200 "server a"; }} }}
  server {{ listen 127.0.0.1:{port} ssl; server_name b.test;
           ssl_certificate {b_crt}; ssl_certificate_key {b_key};
           access_log off; location / {{ return 200 "server b"; }} }}
}}
"""
    async with proxy_in_process(conf, tmp_path):
        ctx = client_ctx(ca)  # checks the certificate's name against server_hostname
        assert (await https_get(port, ctx, "a.test")).endswith(b"server a")
        assert (await https_get(port, ctx, "b.test")).endswith(b"server b")


async def test_tls12_sessions_are_resumed(tmp_path: Path) -> None:
    ca = trustme.CA()
    crt, key = write_cert(ca, tmp_path, "localhost")
    port = free_port()
    async with RecordingBackend("a") as backend:
        conf = tls_conf(
            port,
            backend.port,
            crt,
            key,
            "ssl_protocols TLSv1.2; ssl_session_cache shared:SSL:10m; ssl_session_timeout 5m;",
        )
        async with proxy_in_process(conf, tmp_path):
            ctx = client_ctx(ca)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            loop = asyncio.get_running_loop()
            # Blocking sockets (asyncio cannot offer a session), off the proxy's loop.
            assert await loop.run_in_executor(None, resumed, port, ctx)


def resumed(port: int, ctx: ssl.SSLContext) -> bool:
    """Connect twice; whether the second handshake resumed the first one's session."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as first,
    ):
        assert first.version() == "TLSv1.2"
        session = first.session
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost", session=session) as second,
    ):
        return second.session_reused


@asynccontextmanager
async def tls_backend(ca: trustme.CA, name: str) -> AsyncIterator[tuple[int, list[str | None]]]:
    """An HTTPS peer answering 200; yields its port and the SNI names it was sent."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(server_ctx)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sslobj, sni, ctx: names.append(sni)  # type: ignore[assignment,func-returns-value,return-value]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    try:
        yield server.sockets[0].getsockname()[1], names
    finally:
        server.close()


def upstream_conf(port: int, peer: int, extra: str) -> str:
    return f"""events {{}}
error_log logs/error.log info;
http {{
  server {{
    listen 127.0.0.1:{port};
    access_log logs/access.log;
    location / {{ proxy_pass https://127.0.0.1:{peer}; {extra} }}
  }}
}}
"""


async def plain_get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_proxy_pass_https(tmp_path: Path) -> None:
    ca, other = trustme.CA(), trustme.CA()
    ca_file, other_file = tmp_path / "ca.pem", tmp_path / "other.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other.cert_pem.write_to_path(str(other_file))
    async with tls_backend(ca, "peer.test") as (peer, names):
        cases = [
            ("", b"secure", [None]),  # verify off, no SNI (nginx's defaults)
            ("proxy_ssl_server_name on; proxy_ssl_name peer.test;", b"secure", ["peer.test"]),
            (
                f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {ca_file}; "
                "proxy_ssl_name peer.test;",
                b"secure",
                ["peer.test"],
            ),
            (
                f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {other_file}; "
                "proxy_ssl_name peer.test;",
                b"502 Bad Gateway",
                ["peer.test"],
            ),
        ]
        for i, (extra, expected, sni) in enumerate(cases):
            names.clear()
            port = free_port()
            sub = tmp_path / f"case{i}"
            sub.mkdir()
            async with proxy_in_process(upstream_conf(port, peer, extra), sub):
                data = await plain_get(port)
                assert expected in data, (extra, data[:200])
                assert names == sni, extra
        log = (tmp_path / "case3" / "logs" / "error.log").read_text()
        assert "upstream SSL certificate verify error: (" in log
        assert "while SSL handshaking to upstream" in log


def test_listen_ssl_without_certificate_fails_the_test(tmp_path: Path) -> None:
    conf = tmp_path / "n.conf"
    conf.write_text(
        "events {}\nhttp {\n  server {\n    listen 127.0.0.1:1 ssl;\n    access_log off;\n  }\n}\n"
    )
    out = subprocess.run(
        wsgate_cmd("proxy", "-t", "-c", str(conf)), capture_output=True, text=True, check=False
    )
    assert out.returncode == 1
    # ngx_http_ssl_init names the line of the default server's "server {", before
    # "syntax is ok" (checked against nginx -t).
    assert (
        'wsgate: [emerg] no "ssl_certificate" is defined for the "listen ... ssl" directive '
        f"in {conf}:3"
    ) in out.stderr
    assert "syntax is ok" not in out.stderr


async def test_peer_closing_in_tls_handshake_is_logged_in_nginx_words(tmp_path: Path) -> None:
    """A peer that accepts and closes at once, behind proxy_pass https: 502, and the error
    log says what ngx_ssl_handshake says (not a bare "connect() failed")."""

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    peer = server.sockets[0].getsockname()[1]
    port = free_port()
    try:
        async with proxy_in_process(upstream_conf(port, peer, ""), tmp_path):
            data = await plain_get(port)
            assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
        log = (tmp_path / "logs" / "error.log").read_text()
        assert (
            "peer closed connection in SSL handshake while SSL handshaking to upstream" in log
            or "SSL_do_handshake() failed" in log
        ), log
        assert "(None: None)" not in log
    finally:
        server.close()
