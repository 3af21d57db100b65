"""wscat's flags, without a terminal: npm wscat and ``wsgate cat`` get the same arguments.

Each test runs both clients as processes against servers on free ports and compares what
matters: stdout, stderr and exit code, and what reached the server (request heads recorded
byte for byte, CONNECT requests at a proxy, messages at a ``websockets`` client in listen
mode). Certificates are made by trustme at test time.

Skipped when node or the npm packages are missing (failed with WSGATE_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.interop.test_wscat import article_server, wscat_cmd
from tests.support.ports import free_port, wait_for_port_async
from tests.support.procs import running, wsgate_cmd

TIMEOUT = 20.0
Result = tuple[int, str, str]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def tools(*args: str) -> list[list[str]]:
    """The same arguments for npm's wscat and for ``wsgate cat``."""
    return [wscat_cmd(*args), wsgate_cmd("cat", *args)]


async def run_tool(cmd: Sequence[str], stdin: bytes = b"", *, close_stdin: bool = False) -> Result:
    """Run a client to completion; ``stdin`` is written, and the pipe stays open unless asked.

    wscat quits as soon as its stdin reaches EOF (wscat#141), so by default stdin stays open.
    """
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(stdin)
        if close_stdin:
            proc.stdin.close()
        async with asyncio.timeout(TIMEOUT):
            out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
            code = await proc.wait()
        return code, out.decode(), err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if not proc.stdin.is_closing():
            proc.stdin.close()


async def both(*args: str, stdin: bytes = b"") -> tuple[Result, Result]:
    wscat, ours = tools(*args)
    return await run_tool(wscat, stdin), await run_tool(ours, stdin)


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@contextmanager
def echo_process(*extra: str) -> Iterator[int]:
    port = free_port()
    cmd = wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port), *extra)
    with running(cmd, port=port, stdout=subprocess.DEVNULL):
        yield port


def header_map(head: bytes) -> tuple[str, dict[str, list[str]]]:
    """Request line, and header values by lower-case name (the random key left out)."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            name = name.lower()
            if name == "sec-websocket-protocol":  # "a,b" (ws) and "a, b" (websockets)
                value = ",".join(item.strip() for item in value.split(","))
            if name != "sec-websocket-key":
                headers.setdefault(name, []).append(value.strip())
    return request_line, headers


class Recorder:
    """Answers every request with ``status`` (and ``Location`` for a redirect); keeps heads."""

    def __init__(self, status: str = "404 Not Found", location: str | None = None) -> None:
        self.status = status
        self.location = location
        self.heads: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            extra = f"Location: {self.location}\r\n" if self.location else ""
            writer.write(f"HTTP/1.1 {self.status}\r\n{extra}Content-Length: 0\r\n\r\n".encode())
            await writer.drain()
        writer.close()


@pytest.fixture(autouse=True)
def peers() -> None:
    wscat_cmd()  # skips (or fails in CI) when wscat is missing


@pytest.mark.parametrize("version", ["13", "8"])
async def test_same_handshake_request(version: str) -> None:
    recorder = Recorder()
    async with tcp_server(recorder) as port:
        args = [
            "-c",
            f"ws://127.0.0.1:{port}/path?q=1",
            "-H",
            "X-One: 1",
            "-H",
            "x-one:2",
            "-H",
            "Cookie: a=b",
            "-o",
            "http://origin.example",
            "--host",
            "virtual.example:81",
            "--auth",
            "alice:secret",
            "-s",
            "chat",
            "-s",
            "super.chat",
            "-p",
            version,
            "-x",
            "never sent",
        ]
        wscat, ours = await both(*args)
    assert wscat == ours == (255, "", "error: Unexpected server response: 404\n")
    assert len(recorder.heads) == 2
    assert header_map(recorder.heads[1]) == header_map(recorder.heads[0])
    _, headers = header_map(recorder.heads[0])
    assert headers["sec-websocket-version"] == [version]
    assert headers["x-one"] == ["2"]  # node's setHeader: the last one wins
    origin = "origin" if version == "13" else "sec-websocket-origin"
    assert headers[origin] == ["http://origin.example"]


async def test_unsupported_protocol_version() -> None:
    wscat, ours = await both("-c", "ws://127.0.0.1:9/", "-p", "7")
    message = "Unsupported protocol version: 7 (supported versions: 8, 13)"
    # wscat lets ws' RangeError escape: a stack trace and exit code 1. Ours is clean.
    assert wscat[0] == 1 and message in wscat[2]
    assert ours == (255, "", f"error: {message}\n")


async def test_protocol_version_8_against_the_article_server(tmp_path: Path) -> None:
    with article_server(tmp_path) as (port, _):
        wscat, ours = await both("-c", f"ws://127.0.0.1:{port}", "-p", "8", "-x", "v8", "-w", "1")
    assert wscat == ours == (0, "Server received from client: v8\n", "")


async def test_redirects() -> None:
    with echo_process() as echo_port:
        to_echo = Recorder("302 Found", f"ws://127.0.0.1:{echo_port}/")
        async with tcp_server(to_echo) as hop2:
            relative = Recorder("301 Moved Permanently", f"http://127.0.0.1:{hop2}/next")
            async with tcp_server(relative) as hop1:
                url = f"ws://127.0.0.1:{hop1}/"
                # Without -L a redirect is an error.
                wscat, ours = await both("-c", url, "-x", "hi")
                assert wscat == ours == (255, "", "error: Unexpected server response: 301\n")
                # -L follows both hops (http: means ws:).
                wscat, ours = await both("-c", url, "-L", "-x", "hi", "-w", "0.5")
                assert wscat == ours == (0, "Server received from client: hi\n", "")
                # ... but not more than --max-redirects.
                wscat, ours = await both("-c", url, "-L", "--max-redirects", "1", "-x", "hi")
                assert wscat == ours == (255, "", "error: Maximum redirects exceeded\n")


async def test_redirect_loop_stops_after_ten() -> None:
    loop = Recorder("302 Found", "/again")
    async with tcp_server(loop) as port:
        wscat = await run_tool(wscat_cmd("-c", f"ws://127.0.0.1:{port}/", "-L", "-x", "hi"))
        requests_by_wscat = len(loop.heads)
        ours = await run_tool(wsgate_cmd("cat", "-c", f"ws://127.0.0.1:{port}/", "-L", "-x", "x"))
    assert wscat == ours == (255, "", "error: Maximum redirects exceeded\n")
    assert requests_by_wscat == len(loop.heads) - requests_by_wscat == 11


async def test_redirect_to_another_host_drops_credentials() -> None:
    target = Recorder()
    async with tcp_server(target) as target_port:
        # 127.0.0.1 -> localhost: another host for ws, so Authorization and Host are dropped.
        away = Recorder("302 Found", f"ws://localhost:{target_port}/landed")
        async with tcp_server(away) as port:
            args = ["-c", f"ws://127.0.0.1:{port}/", "-L", "--auth", "a:b", "--host", "h.example"]
            wscat, ours = await both(*args, "-x", "hi")
    assert wscat == ours == (255, "", "error: Unexpected server response: 404\n")
    assert [header_map(head) for head in away.heads[1:]] == [header_map(away.heads[0])]
    line, headers = header_map(target.heads[0])
    assert header_map(target.heads[1]) == (line, headers)
    assert line == "GET /landed HTTP/1.1"
    assert "authorization" not in headers
    assert headers["host"] == [f"localhost:{target_port}"]


class ConnectProxy:
    """An HTTP CONNECT proxy that records each CONNECT head; ``refuse`` answers 407."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.heads: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            if self.refuse:
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                await writer.drain()
                return
            host, _, port = head.split(b" ")[1].decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_proxy() -> None:
    proxy = ConnectProxy()
    async with tcp_server(proxy) as proxy_port:
        with echo_process() as echo_port:
            wscat, ours = await both(
                "-c",
                f"ws://127.0.0.1:{echo_port}/",
                "--proxy",
                f"http://user:p%40ss@127.0.0.1:{proxy_port}",
                "-x",
                "tunnelled",
                "-w",
                "0.5",
            )
    assert wscat == ours == (0, "Server received from client: tunnelled\n", "")
    assert len(proxy.heads) == 2
    assert header_map(proxy.heads[1]) == header_map(proxy.heads[0])
    line, headers = header_map(proxy.heads[0])
    assert line == f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1"
    assert headers["proxy-authorization"] == ["Basic dXNlcjpwQHNz"]  # user:p@ss


async def test_proxy_refusal() -> None:
    async with tcp_server(ConnectProxy(refuse=True)) as proxy_port:
        proxy = f"http://127.0.0.1:{proxy_port}"
        wscat, ours = await both("-c", "ws://127.0.0.1:9/", "--proxy", proxy, "-x", "hi")
    assert wscat == ours == (255, "", "error: Unexpected server response: 407\n")


def write_tls_files(tmp_path: Path, passphrase: bytes | None = None) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("client@example.com")
    files = {name: str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key", "ccert")}
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    client.cert_chain_pems[0].write_to_path(files["ccert"])
    files["ckey"] = str(tmp_path / "ckey.pem")
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    encryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    Path(files["ckey"]).write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return files


async def test_wss_against_wsgate_echo(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path)
    with echo_process("--cert", tls["cert"], "--key", tls["key"]) as port:
        url = f"wss://127.0.0.1:{port}"
        reply = "Server received from client: tls\n"
        for flags in (["--ca", tls["ca"]], ["-n"], ["--ca", tls["ca"], "--cert", tls["ccert"]]):
            if "--cert" in flags:
                flags += ["--key", tls["ckey"]]
            wscat, ours = await both("-c", url, *flags, "-x", "tls", "-w", "0.5")
            assert wscat == ours == (0, reply, ""), flags
        # Not trusted: both refuse (node and OpenSSL word the reason differently).
        wscat, ours = await both("-c", url, "-x", "tls")
    assert (wscat[0], wscat[1], ours[0], ours[1]) == (255, "", 255, "")
    assert "certificate" in wscat[2] and "certificate" in ours[2]


async def test_passphrase_read_from_stdin(tmp_path: Path) -> None:
    tls = write_tls_files(tmp_path, passphrase=b"s3cret")
    with echo_process("--cert", tls["cert"], "--key", tls["key"]) as port:
        wscat, ours = await both(
            "-c",
            f"wss://127.0.0.1:{port}",
            "--ca",
            tls["ca"],
            "--cert",
            tls["ccert"],
            "--key",
            tls["ckey"],
            "--passphrase",
            "-x",
            "unlocked",
            "-w",
            "0.5",
            stdin=b"s3cret\n",
        )
    # read() writes its prompt to stdout even when that is not a terminal.
    assert wscat == ours == (0, "Passphrase: Server received from client: unlocked\n", "")


async def listen_session(cmd: Sequence[str]) -> tuple[Result, list[str], int | None]:
    """Drive ``cmd -l PORT`` with a websockets client; return the tool's result, what the
    client received and the close code the dropped second client saw."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        "-l",
        str(port),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            await wait_for_port_async(port)
            received = []
            seen = b""
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send("hi from the client")
                seen += await proc.stdout.readline()
                assert seen.endswith(b"hi from the client\n")
                proc.stdin.write(b"first reply\nsecond reply\n")
                received += [await ws.recv(), await ws.recv()]
                async with connect(f"ws://127.0.0.1:{port}/") as second:
                    with pytest.raises(ConnectionClosed):
                        await second.recv()
                await ws.send(b"bytes")
                seen += await proc.stdout.readline()
                assert seen.endswith(b"bytes\n")
                await ws.close(4000, "bye")
            proc.stdin.close()  # no client, nothing queued: both tools exit
            out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
            code = await proc.wait()
        return (code, (seen + out).decode(), err.decode()), received, second.close_code
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_listen_mode_without_a_terminal() -> None:
    wscat, ours = tools()
    expected = (["first reply", "second reply"], 1006)
    (code, out, err), *rest = await listen_session(wscat)
    assert (code, err, tuple(rest)) == (0, "", expected)
    # wscat's readline writes its "> " prompt to stdout even off a terminal (once per client
    # and per line sent); wsgate keeps stdout to the messages (see wsgate.cat.client).
    assert out == "> hi from the client\n> > bytes\n"
    assert await listen_session(ours) == ((0, "hi from the client\nbytes\n", ""), *expected)


async def test_listen_port_in_use() -> None:
    async with tcp_server(Recorder()) as port:
        wscat, ours = await both("-l", str(port))
    # The listener binds every address, as node binds "::".
    message = f"error: listen EADDRINUSE: address already in use :::{port}\n"
    assert wscat == ours == (255, "", message)


async def test_listen_and_connect_together_or_neither() -> None:
    wscat, ours = await both("-l", "1", "-c", "ws://127.0.0.1:1/")
    assert wscat == ours == (255, "", "\x1b[33merror: Use either --listen or --connect\x1b[39m\n")
    wscat, ours = await both()
    assert wscat[0] == ours[0] == 0  # both print their help
    assert "--listen" in wscat[1] and "--listen" in ours[1]
