"""stub_status: nginx's exact body, and numbers summed over every worker."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

from tests.support.nginx import require_nginx, run_nginx
from tests.support.ports import free_port
from tests.support.procs import running, wsgate_cmd

CONF = """worker_processes {workers};
pid logs/wsgate.pid;
events {{}}
http {{
  server {{
    listen 127.0.0.1:{port};
    access_log off;
    location = /status {{ stub_status; }}
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


def fetch(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def mask(response: bytes) -> list[bytes]:
    """Status line, headers without Date/Server, and the body with numbers as N."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.startswith((b"Date:", b"Server:"))]
    return [*lines, re.sub(rb"\d+", b"N", body)]


def test_same_body_as_nginx(tmp_path: Path) -> None:
    require_nginx()
    port = free_port()
    conf = CONF.format(workers=1, port=port)
    with run_nginx(conf, tmp_path / "n", [port]):
        fetch(port, "/")
        theirs = fetch(port, "/status")
    (tmp_path / "w" / "logs").mkdir(parents=True)
    (tmp_path / "w" / "wsgate.conf").write_text(conf)
    with running(wsgate_cmd("proxy", "-c", str(tmp_path / "w" / "wsgate.conf")), port=port):
        fetch(port, "/")
        ours = fetch(port, "/status")
    assert mask(ours) == mask(theirs)
    # After one request and the status request itself, on fresh servers (the readiness
    # probe counts as an accepted connection too):
    body = ours.partition(b"\r\n\r\n")[2].decode()
    accepts, handled, requests = map(int, body.splitlines()[2].split())
    assert accepts == handled and requests == 2
    assert "Reading: 0 Writing: 1 Waiting: 0" in body


def test_numbers_are_summed_over_workers(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "wsgate.conf"
    conf.write_text(CONF.format(workers=2, port=port))
    with running(wsgate_cmd("proxy", "-c", str(conf)), port=port):
        for _ in range(40):
            assert fetch(port, "/").endswith(b"ok\n")
        body = fetch(port, "/status").partition(b"\r\n\r\n")[2].decode()
        accepts, handled, requests = map(int, body.splitlines()[2].split())
        # 40 requests + the status request, whichever worker took each of them.
        assert requests == 41
        assert accepts >= 41 and handled == accepts
        # A reload keeps the totals (the new workers reuse the table).
        subprocess.run(wsgate_cmd("proxy", "-c", str(conf), "-s", "reload"), check=True)
        deadline = time.monotonic() + 20
        while True:
            later = fetch(port, "/status").partition(b"\r\n\r\n")[2].decode()
            total = int(later.splitlines()[2].split()[2])
            if total >= 42 or time.monotonic() > deadline:
                break
        assert total >= 42
        assert later.startswith("Active connections: ")
