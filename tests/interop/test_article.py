"""The seed article end to end with its real peers.

node's ``ws`` running the article's ``server.js`` on two ports, ``wsgate proxy`` with the
article's configuration in front (changed only in ports), and npm's ``wscat`` through it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.support.confs import article_conf
from tests.support.ports import free_ports
from tests.support.procs import REPO, node_module, require_peer, running
from tests.support.wsgate import proxy_process

# The article's server.js, with the port read from the command line.
SERVER_JS = """\
console.log("Server started");
var Msg = '';
var WebSocketServer = require('ws').Server
  , wss = new WebSocketServer({port: Number(process.argv[2])});
  wss.on('connection', function(ws) {
    ws.on('message', function(message) {
    console.log('Received from client: %s', message);
    ws.send('Server received from client: ' + message);
  });
 });
"""


@contextmanager
def article_backends(tmp_path: Path, ports: list[int]) -> Iterator[list[subprocess.Popen[bytes]]]:
    node_module("ws")
    script = tmp_path / "server.js"
    script.write_text(SERVER_JS)
    env = {"NODE_PATH": str(REPO / "node_modules")}
    with ExitStack() as stack:
        procs = [
            stack.enter_context(running(["node", str(script), str(p)], port=p, env=env))
            for p in ports
        ]
        yield procs


def wscat(*args: str) -> tuple[int, str, str]:
    """Run npm's wscat with stdin held open (wscat exits at once on stdin EOF, wscat#141)."""
    path = node_module("wscat") / "bin" / "wscat"
    proc = subprocess.Popen(
        ["node", str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        rc = proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        return rc, proc.stdout.read().decode(), proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_wscat_through_wsgate_to_the_article_servers(tmp_path: Path) -> None:
    require_peer("node", shutil.which("node") is not None)
    port, b1, b2 = free_ports(3)
    with (
        article_backends(tmp_path, [b1, b2]) as backends,
        proxy_process(article_conf(port, [b1, b2]), tmp_path, port),
    ):
        for i in range(4):
            rc, out, err = wscat(
                "--connect", f"ws://127.0.0.1:{port}", "-x", f"Hello {i}", "-w", "1"
            )
            assert rc == 0, err
            assert out.strip() == f"Server received from client: Hello {i}"
        for proc in backends:
            proc.terminate()
        logs = [proc.communicate(timeout=10)[0].decode() for proc in backends]
    # Round robin: connections alternate between the two servers, two each.
    assert [log.count("Received from client: Hello") for log in logs] == [2, 2]
    assert "Received from client: Hello 0" in logs[0]
    assert "Received from client: Hello 1" in logs[1]
    access = (tmp_path / "logs" / "access.log").read_text().splitlines()
    assert len(access) == 4
    assert all('"GET / HTTP/1.1" 101 ' in line for line in access)


def test_wsgate_cat_through_wsgate_to_the_article_servers(tmp_path: Path) -> None:
    port, b1, b2 = free_ports(3)
    with (
        article_backends(tmp_path, [b1, b2]),
        proxy_process(article_conf(port, [b1, b2]), tmp_path, port),
    ):
        out = subprocess.run(
            [os.sys.executable, "-m", "wsgate", "cat", "-c", f"ws://127.0.0.1:{port}"],
            input=b"Hello\nWelcome to www.hi-linux.com\n",
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == [
        "Server received from client: Hello",
        "Server received from client: Welcome to www.hi-linux.com",
    ]


def test_the_article_config_file_loads_unchanged_but_the_port(tmp_path: Path) -> None:
    """examples/article.conf is the article's text; `-t` accepts it as nginx does."""
    text = (REPO / "examples" / "article.conf").read_text()
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("/var/log/nginx/yourdomain.log", str(tmp_path / "y.log")))
    out = subprocess.run(
        [os.sys.executable, "-m", "wsgate", "proxy", "-t", "-c", str(conf)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.decode().splitlines() == [
        f"wsgate: the configuration file {conf} syntax is ok",
        f"wsgate: configuration file {conf} test is successful",
    ]
