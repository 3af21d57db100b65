"""``websocket_health_check`` through the in-process proxy on real sockets.

Peers: a ``websockets`` server in this process (it can be stopped and started again on
its port), npm's ``ws`` in a node process, and misbehaving peers written here (a 200, a
wrong ``Sec-WebSocket-Accept``, a handshake that never answers pings). Each WebSocket
peer sends its name as its first message, so a client session knows where it landed.
Checks run every 200 ms; every wait polls for its condition with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trustme
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.support.backend import RecordingBackend
from tests.support.lb import TRIED_FORMAT, tried_lines
from tests.support.ports import free_ports
from tests.support.procs import REPO, node_module, running
from tests.support.wsgate import proxy_in_process
from wsgate.balancer import snapshot
from wsgate.balancer.state import PeerStatus
from wsgate.proxy.worker import Worker

WAIT = 10.0  # bound on every wait for a state; checks run every 0.2 s

NODE_SERVER = """\
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2]) });
wss.on('connection', (ws) => {
  ws.send(process.argv[3]);
  ws.on('message', (m) => ws.send(m));
});
"""


def conf(port: int, upstreams: dict[str, tuple[list[int], str]], scheme: str = "http") -> str:
    """Upstream blocks NAME -> (peer ports, websocket_health_check line); location /NAME/
    proxies to each, ``/`` to the first, with ``proxy_pass SCHEME://NAME``."""
    blocks = []
    locations = []
    for i, (name, (ports, check)) in enumerate(upstreams.items()):
        servers = "\n".join(f"        server 127.0.0.1:{p};" for p in ports)
        blocks.append(f"    upstream {name} {{\n{servers}\n        {check}\n    }}")
        path = "/" if i == 0 else f"/{name}/"
        locations.append(f"""\
        location {path} {{
            proxy_pass {scheme}://{name};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}""")
    nl = "\n"
    return f"""\
worker_processes 1;
error_log logs/error.log info;
events {{ }}
http {{
    log_format tried {TRIED_FORMAT};
    access_log logs/access.log tried;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
{nl.join(blocks)}
    server {{
        listen 127.0.0.1:{port};
{nl.join(locations)}
    }}
}}
"""


def addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def errors(tmp_path: Path) -> str:
    return (tmp_path / "logs" / "error.log").read_text()


def level(log: str, text: str) -> str:
    """The level of the one error-log line that contains ``text`` ("warn", "notice"...)."""
    (line,) = [line for line in log.splitlines() if text in line]
    return line.split("[", 1)[1].split("]", 1)[0]


def state(worker: Worker, upstream: str, port: int) -> PeerStatus:
    views = snapshot(worker.balancers[upstream], worker.loop.time())
    return next(v.state for v in views if v.name == addr(port))


async def until(what: str, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


async def rounds(worker: Worker, upstream: str, n: int) -> None:
    """Wait until the checker of ``upstream`` has finished ``n`` more rounds."""
    checker = next(c for c in worker.health_checkers if c.key == upstream)
    target = checker.rounds + n
    await until(f"{n} rounds of checks", lambda: checker.rounds >= target)


async def session(port: int, path: str = "/") -> str:
    """One WebSocket session through the proxy: the name the peer sends first."""
    async with asyncio.timeout(WAIT):
        async with connect(f"ws://127.0.0.1:{port}{path}") as ws:
            name = await ws.recv()
    assert isinstance(name, str)
    return name


@asynccontextmanager
async def py_peer(port: int, name: str, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """A ``websockets`` peer on ``port`` that sends ``name``, then echoes (over TLS with
    ``tls``)."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(name)
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", port, ssl=tls) as server:
        yield server


@contextmanager
def node_peer(tmp_path: Path, port: int, name: str) -> Iterator[None]:
    """npm's ``ws`` on ``port`` in a node process that sends ``name``, then echoes."""
    node_module("ws")
    script = tmp_path / "peer.js"
    script.write_text(NODE_SERVER)
    env = {"NODE_PATH": str(REPO / "node_modules")}
    with running(["node", str(script), str(port), name], port=port, env=env):
        yield


def _accept(key: str) -> str:
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
    return base64.b64encode(hashlib.sha1(key.encode() + guid).digest()).decode()


@asynccontextmanager
async def raw_peer(answer: Callable[[str], bytes]) -> AsyncIterator[int]:
    """A peer that reads a request head, writes ``answer(key)`` and then reads (and
    ignores) everything until the client goes: no pong, no close. Yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            writer.write(answer(key))
            while await reader.read(4096):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def handshake_101(accept: Callable[[str], str]) -> Callable[[str], bytes]:
    def answer(key: str) -> bytes:
        return (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept(key)}\r\n\r\n"
        ).encode()

    return answer


async def test_killed_peer_is_skipped_before_any_client_fails_then_comes_back(
    tmp_path: Path,
) -> None:
    port, py_port, node_port = free_ports(3)
    check = "websocket_health_check interval=200ms timeout=1s fails=2 passes=2 ping;"
    text = conf(port, {"backend": ([py_port, node_port], check)})
    with node_peer(tmp_path, node_port, "node"):
        async with proxy_in_process(text, tmp_path) as worker:
            py = py_peer(py_port, "py")
            await py.__aenter__()
            try:
                await rounds(worker, "backend", 1)
                assert {await session(port) for _ in range(4)} == {"py", "node"}

                await py.__aexit__(None, None, None)  # the peer goes away
                await until(
                    "py unhealthy",
                    lambda: state(worker, "backend", py_port) is PeerStatus.UNHEALTHY,
                )
                log = errors(tmp_path)
                reason = "connect() failed (111: Connection refused)"
                # fails=2: the first failed check is counted (info), the second marks it down.
                peer = f'peer {addr(py_port)} in upstream "backend"'
                failed = f"{peer} failed websocket_health_check ({reason})"
                down = f"{peer} is down by websocket_health_check ({reason})"
                assert level(log, failed) == "info"
                assert level(log, down) == "warn"
                assert log.index(failed) < log.index(down)
                assert state(worker, "backend", node_port) is PeerStatus.UP
                metrics = worker.metrics.render().decode()
                assert (
                    f'wsgate_upstream_peer_up{{peer="{addr(py_port)}",upstream="backend"}} 0.0'
                ) in metrics
                assert (
                    f'wsgate_upstream_peer_up{{peer="{addr(node_port)}",upstream="backend"}} 1.0'
                ) in metrics

                # Every new session goes to the live peer at the first attempt.
                sessions_before = len(tried_lines((tmp_path / "logs/access.log").read_text()))
                assert [await session(port) for _ in range(8)] == ["node"] * 8
                await until(
                    "8 access-log lines",
                    lambda: (
                        len(tried_lines((tmp_path / "logs/access.log").read_text()))
                        >= sessions_before + 8
                    ),
                )
                lines = tried_lines((tmp_path / "logs/access.log").read_text())[sessions_before:]
                assert {(t.addrs, t.statuses, t.status) for t in lines} == {
                    ((addr(node_port),), ("101",), 101)
                }
                assert "while connecting to upstream" not in errors(tmp_path)

                py = py_peer(py_port, "py")  # back on the same port
                await py.__aenter__()
                await until(
                    "py up again", lambda: state(worker, "backend", py_port) is PeerStatus.UP
                )
                assert level(errors(tmp_path), f"{peer} is up") == "notice"
                assert "py" in {await session(port) for _ in range(4)}
                metrics = worker.metrics.render().decode()
                assert (
                    f'wsgate_upstream_peer_up{{peer="{addr(py_port)}",upstream="backend"}} 1.0'
                ) in metrics
            finally:
                with contextlib.suppress(Exception):
                    await py.__aexit__(None, None, None)


async def test_a_killed_node_peer_is_down_until_it_is_restarted(tmp_path: Path) -> None:
    port, py_port, node_port = free_ports(3)
    check = "websocket_health_check interval=200ms fails=1 passes=1;"
    text = conf(port, {"backend": ([node_port, py_port], check)})
    async with py_peer(py_port, "py"), proxy_in_process(text, tmp_path) as worker:
        with node_peer(tmp_path, node_port, "node"):
            await until(
                "node seen up by a check",
                lambda: any(c.rounds for c in worker.health_checkers),
            )
            assert {await session(port) for _ in range(4)} == {"py", "node"}
        # The node process is gone (SIGTERM, waited for).
        await until(
            "node unhealthy", lambda: state(worker, "backend", node_port) is PeerStatus.UNHEALTHY
        )
        assert [await session(port) for _ in range(4)] == ["py"] * 4
        node = node_peer(tmp_path, node_port, "node")
        await asyncio.to_thread(node.__enter__)
        try:
            await until("node up", lambda: state(worker, "backend", node_port) is PeerStatus.UP)
            assert "node" in {await session(port) for _ in range(4)}
        finally:
            await asyncio.to_thread(node.__exit__, None, None, None)


async def test_200_and_a_wrong_accept_are_down(tmp_path: Path) -> None:
    port, good_port = free_ports(2)
    check = "websocket_health_check interval=200ms;"
    wrong = handshake_101(lambda key: _accept(key + "x"))
    async with (
        RecordingBackend("http") as http_peer,
        raw_peer(wrong) as wrong_port,
        py_peer(good_port, "py"),
    ):
        peers = [http_peer.port, wrong_port, good_port]
        async with proxy_in_process(conf(port, {"backend": (peers, check)}), tmp_path) as worker:
            await until(
                "both bad peers unhealthy",
                lambda: all(
                    state(worker, "backend", p) is PeerStatus.UNHEALTHY
                    for p in (http_peer.port, wrong_port)
                ),
            )
            await rounds(worker, "backend", 2)
            assert state(worker, "backend", good_port) is PeerStatus.UP
            assert [await session(port) for _ in range(6)] == ["py"] * 6
    log = errors(tmp_path)
    assert (
        f'peer {addr(http_peer.port)} in upstream "backend" is down by websocket_health_check '
        "(upstream returned 200 instead of 101)"
    ) in log
    assert (
        f'peer {addr(wrong_port)} in upstream "backend" is down by websocket_health_check '
        '(upstream sent 101 with a wrong "Sec-WebSocket-Accept")'
    ) in log
    # What the 200 peer received: the check's handshake, Host = the peer's address.
    head = http_peer.heads[0].decode()
    assert head.startswith(f"GET / HTTP/1.1\r\nHost: {addr(http_peer.port)}\r\n")
    assert "Upgrade: websocket\r\nConnection: Upgrade\r\n" in head
    assert "Sec-WebSocket-Version: 13\r\n" in head


async def test_with_ping_a_peer_that_never_answers_pings_is_down(tmp_path: Path) -> None:
    port, good_port = free_ports(2)
    mute = handshake_101(_accept)  # a correct handshake, then silence
    async with raw_peer(mute) as mute_port, py_peer(good_port, "py"):
        upstreams = {
            "pinged": (
                [mute_port, good_port],
                "websocket_health_check interval=200ms timeout=300ms ping;",
            ),
            "plain": ([mute_port], "websocket_health_check interval=200ms timeout=300ms;"),
        }
        async with proxy_in_process(conf(port, upstreams), tmp_path) as worker:
            await until(
                "the mute peer unhealthy with ping",
                lambda: state(worker, "pinged", mute_port) is PeerStatus.UNHEALTHY,
            )
            await rounds(worker, "plain", 3)
            await rounds(worker, "pinged", 2)
            # Without ping the handshake alone passes; the peer that pongs is up.
            assert state(worker, "plain", mute_port) is PeerStatus.UP
            assert state(worker, "pinged", good_port) is PeerStatus.UP
            assert [await session(port) for _ in range(4)] == ["py"] * 4
    assert (
        f'peer {addr(mute_port)} in upstream "pinged" is down by websocket_health_check '
        "(upstream timed out (110: Connection timed out) while waiting for pong from upstream)"
    ) in errors(tmp_path)
    assert 'in upstream "plain" is down' not in errors(tmp_path)


async def test_checks_stop_with_the_worker(tmp_path: Path) -> None:
    port, peer_port = free_ports(2)
    check = "websocket_health_check interval=200ms;"
    async with py_peer(peer_port, "py"):
        async with proxy_in_process(conf(port, {"backend": ([peer_port], check)}), tmp_path) as w:
            await rounds(w, "backend", 1)
            checkers = list(w.health_checkers)
        # proxy_in_process stopped the worker: every checker task is finished.
        assert checkers and all(c._task is not None and c._task.done() for c in checkers)


async def test_a_group_behind_proxy_pass_https_is_checked_over_tls(tmp_path: Path) -> None:
    port, tls_port, plain_port = free_ports(3)
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("peer.test").configure_cert(server_ctx)
    check = "websocket_health_check interval=200ms ping;"
    text = conf(port, {"secure": ([tls_port, plain_port], check)}, scheme="https")
    async with py_peer(tls_port, "tls", server_ctx), py_peer(plain_port, "plain"):
        async with proxy_in_process(text, tmp_path) as worker:
            await until(
                "the plain peer unhealthy",
                lambda: state(worker, "secure", plain_port) is PeerStatus.UNHEALTHY,
            )
            await rounds(worker, "secure", 2)
            assert state(worker, "secure", tls_port) is PeerStatus.UP
            assert [await session(port) for _ in range(4)] == ["tls"] * 4
    line = next(
        line
        for line in errors(tmp_path).splitlines()
        if "is down by websocket_health_check" in line
    )
    assert f'peer {addr(plain_port)} in upstream "secure" is down by' in line
    # The peer answers the ClientHello with an HTTP error, or closes (websockets chooses).
    assert (
        "(SSL_do_handshake() failed (WRONG_VERSION_NUMBER))" in line
        or "(peer closed connection in SSL handshake)" in line
    ), line
