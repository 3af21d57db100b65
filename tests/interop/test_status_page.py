"""wsgate_status in a real browser: Debian's chromium, driven by playwright-core from npm.

The page is loaded once; the test then sends HTTP requests and opens a WebSocket tunnel
through the proxy, and the numbers on the page must follow without a reload (they come
over the page's own WebSocket to wsgate). A screenshot is saved in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tests.support.backend import RecordingBackend
from tests.support.ports import free_port
from tests.support.procs import REPO, node_module, require_peer
from tests.support.wsgate import proxy_in_process

CHROMIUM = "/usr/bin/chromium"
SCRIPT = REPO / "tests" / "support" / "status_page_browser.js"
# Set WSGATE_UPDATE_DOCS=1 to refresh docs/status-page.png from this test's screenshot.
DOCS_PNG = REPO / "docs" / "status-page.png"

CONF = """events {{}}
http {{
  upstream app {{ server 127.0.0.1:{backend}; }}
  server {{
    listen 127.0.0.1:{port};
    access_log off;
    location = /status {{ wsgate_status; }}
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
    }}
  }}
}}
"""


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), 40)
    if not raw:
        stderr = await proc.stderr.read() if proc.stderr is not None else b""
        raise AssertionError(f"browser driver ended early: {stderr.decode(errors='replace')}")
    doc: dict[str, Any] = json.loads(raw)
    assert "error" not in doc, doc["error"]
    return doc


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data


async def _tunnel(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def test_page_follows_traffic_live(tmp_path: Path) -> None:
    require_peer("chromium (apt-get install chromium)", Path(CHROMIUM).exists())
    node_module("playwright-core")
    port = free_port()
    async with RecordingBackend("b1") as backend:
        conf = CONF.format(backend=backend.port, port=port)
        async with proxy_in_process(conf, tmp_path):
            png = tmp_path / "status-page.png"
            proc = await asyncio.create_subprocess_exec(
                shutil.which("node") or "node",
                str(SCRIPT),
                f"http://127.0.0.1:{port}/status",
                str(tmp_path / "profile"),
                str(png),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "NODE_PATH": str(REPO / "node_modules")},
            )
            tunnel = None
            try:
                ready = (await _line(proc))["ready"]
                assert ready["tunnels"] == 0 and ready["peers"] == 1
                before = ready["requests"]
                for _ in range(12):
                    assert b"X-Backend: b1" in await _get(port, "/hello")
                tunnel = await _tunnel(port)
                assert proc.stdin is not None
                proc.stdin.write(f"go {before + 12} 1\n".encode())
                await proc.stdin.drain()
                done = await _line(proc)
            finally:
                if tunnel is not None:
                    tunnel[1].close()
                if proc.returncode is None:
                    try:
                        await asyncio.wait_for(proc.wait(), 20)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
    final = done["final"]
    assert not done["reloaded"]
    assert final["requests"] >= before + 12 + 1  # + the tunnel's request
    assert final["tunnels"] == 1 and final["peerTunnels"] == [1]
    assert png.stat().st_size > 1000
    if os.environ.get("WSGATE_UPDATE_DOCS") == "1":
        shutil.copyfile(png, DOCS_PNG)
