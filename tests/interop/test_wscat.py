"""``wsgate echo`` and ``wsgate cat`` against the real peers of the seed article.

* npm's ``wscat`` (run by ``node``) talks to ``wsgate echo``.
* ``wsgate cat`` talks to the article's ``server.js`` on npm's ``ws``.
* Both clients get the same arguments and must print the same bytes and exit codes.

Skipped when node or the npm packages are missing (failed with WSGATE_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.procs import REPO, node_module, running, wsgate_cmd

TIMEOUT = 30.0

# The article's server.js; only the port changed: from argv, else $PORT, else 8010.
SERVER_JS = """\
console.log("Server started");
var Msg = '';
var WebSocketServer = require('ws').Server
  , wss = new WebSocketServer({port: Number(process.argv[2] || process.env.PORT || 8010)});
  wss.on('connection', function(ws) {
    ws.on('message', function(message) {
    console.log('Received from client: %s', message);
    ws.send('Server received from client: ' + message);
  });
 });
"""


def wscat_cmd(*args: str) -> list[str]:
    return ["node", str(node_module("wscat") / "bin" / "wscat"), *args]


def run_client(cmd: Sequence[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run a client to completion; stdin stays open unless ``stdin`` is given.

    wscat quits as soon as its stdin reaches EOF (wscat#141), so it gets an open pipe.
    """
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        rc = proc.wait(timeout=TIMEOUT)
        return rc, proc.stdout.read().decode(), proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def stop_and_read(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM a server started by ``running`` and return its stdout."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=TIMEOUT)
    return out.decode()


@contextmanager
def wsgate_echo() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port))
    with running(cmd, port=port) as proc:
        yield port, proc


@contextmanager
def article_server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    node_module("ws")
    script = tmp_path / "server.js"
    script.write_text(SERVER_JS)
    port = free_port()
    env = {"NODE_PATH": str(REPO / "node_modules")}
    with running(["node", str(script)], port=port, env={**env, "PORT": str(port)}) as proc:
        yield port, proc


def test_wscat_against_wsgate_echo() -> None:
    wscat = wscat_cmd()  # skips before a server is started when the peer is missing
    with wsgate_echo() as (port, server):
        rc, out, err = run_client(
            [
                *wscat,
                "--connect",
                f"ws://127.0.0.1:{port}",
                "-x",
                "Hello",
                "-x",
                "Welcome to www.hi-linux.com",
                "-w",
                "1",
            ]
        )
        log = stop_and_read(server)
        assert server.returncode == 0  # SIGTERM stops wsgate echo cleanly
    assert (rc, err) == (0, "")
    assert out == (
        "Server received from client: Hello\n"
        "Server received from client: Welcome to www.hi-linux.com\n"
    )
    assert re.fullmatch(
        r"Server started\n"
        r"Client connected: 127\.0\.0\.1:(\d+) /\n"
        r"Received from client: Hello\n"
        r"Received from client: Welcome to www\.hi-linux\.com\n"
        r'Client disconnected: 127\.0\.0\.1:\1 \(code: 1005, reason: ""\)\n',
        log,
    ), log


def test_wsgate_cat_against_the_article_server(tmp_path: Path) -> None:
    with article_server(tmp_path) as (port, server):
        rc, out, err = run_client(wsgate_cmd("cat", "-c", f"ws://127.0.0.1:{port}", "-x", "hi"))
        assert (rc, out, err) == (0, "Server received from client: hi\n", "")
        rc, out, err = run_client(
            wsgate_cmd("cat", "-c", f"127.0.0.1:{port}"), stdin=b"Hello\nWelcome\n"
        )
        assert (rc, err) == (0, "")
        assert out == "Server received from client: Hello\nServer received from client: Welcome\n"
        log = stop_and_read(server)
    assert log.splitlines() == [
        "Server started",
        "Received from client: hi",
        "Received from client: Hello",
        "Received from client: Welcome",
    ]


def both_clients(*args: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """The same arguments given to npm's wscat and to ``wsgate cat`` (stdin left open)."""
    return run_client(wscat_cmd(*args)), run_client(wsgate_cmd("cat", *args))


def test_same_output_as_wscat_against_the_article_server(tmp_path: Path) -> None:
    with article_server(tmp_path) as (port, _):
        wscat, ours = both_clients("-c", f"127.0.0.1:{port}", "-x", "a", "-x", "b", "-w", "1")
    assert (
        wscat == ours == (0, "Server received from client: a\nServer received from client: b\n", "")
    )


@pytest.mark.parametrize(
    "case", ["refused", "subprotocol", "404", "bad-scheme"], ids=lambda case: case
)
def test_same_errors_as_wscat(case: str, tmp_path: Path) -> None:
    node_module("wscat")
    if case == "refused":
        port = free_port()
        wscat, ours = both_clients("-c", f"ws://127.0.0.1:{port}", "-x", "hi")
        expected = f"error: connect ECONNREFUSED 127.0.0.1:{port}\n"
    elif case == "subprotocol":
        with wsgate_echo() as (port, _):
            wscat, ours = both_clients("-c", f"ws://127.0.0.1:{port}", "-s", "chat", "-x", "hi")
        expected = "error: Server sent no subprotocol\n"
    elif case == "404":
        port = free_port()
        http = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        http += ["--directory", str(tmp_path)]
        with running(http, port=port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            wscat, ours = both_clients("-c", f"ws://127.0.0.1:{port}/missing", "-x", "hi")
        expected = "error: Unexpected server response: 404\n"
    else:
        wscat, ours = both_clients("-c", "ftp://127.0.0.1/", "-x", "hi")
        expected = (
            'error: The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", '
            'or "ws+unix:"\n'
        )
        # wscat lets ws' SyntaxError escape: a stack trace and exit code 1. Only ours is clean.
        assert wscat[0] == 1 and expected.removeprefix("error: ").strip() in wscat[2]
        assert ours == (255, "", expected)
        return
    assert wscat == ours == (255, "", expected)
