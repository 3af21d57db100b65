"""Differential: the ``error_log`` lines users grep for, from nginx and from wsgate.

The same configuration and the same requests go through nginx, then through wsgate
(in process), on the same ports. For each request the lines it adds to
``error_log logs/error.log warn`` are compared after the parts that must differ are
masked: the time stamp, ``PID#TID`` and the connection number ``*N``
(nginx-semantics.md section 5.3). The scenarios:

* a peer that refuses connections: ``connect() failed (111: Connection refused) while
  connecting to upstream``;
* a peer that answers too late: ``upstream timed out (110: Connection timed out) while
  reading response header from upstream``;
* a group whose two peers refuse: both failures, each peer ``temporarily disabled``, then
  ``no live upstreams while connecting to upstream`` for the next request;
* the same failures for an HTTP/1.0 request without ``Host`` (no ``host:`` part).
"""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import uvloop

from tests.support.backend import RecordingBackend
from tests.support.nginx import require_nginx, run_nginx_async
from tests.support.ports import free_ports
from tests.support.wsgate import proxy_in_process

IO_TIMEOUT = 5.0  # seconds for one request; the slowest waits for a 0.3 s read timeout
RUN_TIMEOUT = 30.0  # seconds for all requests through one proxy
LOG_TIMEOUT = 2.0  # seconds for a line to reach the file after the response

CONF = """
error_log logs/error.log warn;
events {
    worker_connections 64;
}
http {
    access_log off;
    upstream two_dead {
        server 127.0.0.1:@D1@;
        server 127.0.0.1:@D2@;
    }
    server {
        listen 127.0.0.1:@P@;
        server_name example.com;
        location /refused/ { proxy_pass http://127.0.0.1:@D1@; }
        location /slow/ { proxy_pass http://127.0.0.1:@B@/; proxy_read_timeout 300ms; }
        location /dead/ { proxy_pass http://two_dead; }
    }
}
"""


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    request: bytes
    status: int
    lines: int  # error-log lines nginx writes for it (checked: the step means it)


def get(target: str, *, host: bool = True) -> bytes:
    if host:
        return f"GET {target} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n".encode()
    return f"GET {target} HTTP/1.0\r\n\r\n".encode()


STEPS = (
    Step("connect-refused", get("/refused/x?a=1"), 502, 1),
    Step("read-timeout", get("/slow/sleep/2"), 504, 1),
    Step("group-both-refuse", get("/dead/a"), 502, 4),
    Step("no-live-upstreams", get("/dead/b"), 502, 1),
    Step("no-live-upstreams-http10", get("/dead/c", host=False), 502, 1),
    Step("connect-refused-http10", get("/refused/y", host=False), 502, 1),
)

# 2026/11/25 16:40:28 [error] 1234#1234: *6 message...  (wsgate prints PID#0)
_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*\d+ )?")


def normalize(line: str) -> str:
    """``[level] message``: time, ``PID#TID`` and the connection number masked."""
    return _PREFIX.sub(lambda m: f"[{m[1]}] ", line)


async def _send(port: int, data: bytes) -> bytes:
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            await writer.drain()
            return await reader.read(-1)
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


async def _wait_lines(path: Path, count: int) -> list[str]:
    """The file's lines once it has ``count``, or what it has after LOG_TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOG_TIMEOUT
    while True:
        lines = _lines(path)
        if len(lines) >= count or loop.time() > deadline:
            return lines
        await asyncio.sleep(0.01)  # polling a file for a condition, bounded by the deadline


@dataclass(frozen=True, slots=True)
class Seen:
    status: int
    lines: list[str]


async def run(
    kind: Literal["nginx", "wsgate"], tmp: Path, ports: dict[str, int]
) -> dict[str, Seen]:
    conf = CONF
    for name, port in ports.items():
        conf = conf.replace(f"@{name}@", str(port))
    seen: dict[str, Seen] = {}
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(RecordingBackend("slow", ports["B"]))
        if kind == "nginx":
            nginx = await stack.enter_async_context(run_nginx_async(conf, tmp, [ports["P"]]))
            log = nginx.prefix / "logs" / "error.log"
        else:
            tmp.mkdir()
            await stack.enter_async_context(proxy_in_process(conf, tmp))
            log = tmp / "logs" / "error.log"
            # The probe run_nginx makes, so that connection numbers start alike.
            with socket.create_connection(("127.0.0.1", ports["P"]), timeout=IO_TIMEOUT):
                pass
        before = len(_lines(log))
        for step in STEPS:
            received = await _send(ports["P"], step.request)
            status = int(received.split(b" ", 2)[1]) if received.count(b" ") >= 2 else 0
            # Lines for this request: those nginx writes (a proxy writing fewer shows up as
            # a difference after LOG_TIMEOUT, not as a hang).
            lines = await _wait_lines(log, before + step.lines)
            seen[step.id] = Seen(status, lines[before:])
            before = len(lines)
    return seen


@dataclass(frozen=True, slots=True)
class Runs:
    nginx: dict[str, Seen]
    wsgate: dict[str, Seen]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    require_nginx()
    tmp = tmp_path_factory.mktemp("error_log")
    names = ("P", "B", "D1", "D2")
    ports = dict(zip(names, free_ports(len(names)), strict=True))

    async def both() -> Runs:
        async with asyncio.timeout(RUN_TIMEOUT):
            nginx = await run("nginx", tmp / "ng", ports)
        async with asyncio.timeout(RUN_TIMEOUT):
            wsgate = await run("wsgate", tmp / "ws", ports)
        return Runs(nginx, wsgate)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(both())


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_nginx_logs_what_the_step_says(runs: Runs, step: Step) -> None:
    ng = runs.nginx[step.id]
    assert ng.status == step.status
    assert len(ng.lines) == step.lines, ng.lines


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_same_error_log_lines(runs: Runs, step: Step) -> None:
    ng, ws = runs.nginx[step.id], runs.wsgate[step.id]
    assert ws.status == ng.status
    assert [normalize(x) for x in ws.lines] == [normalize(x) for x in ng.lines]


def test_lines_users_grep_for(runs: Runs) -> None:
    """The messages themselves, so a change on both sides cannot go unnoticed."""
    text = "\n".join(line for seen in runs.wsgate.values() for line in seen.lines)
    for message in (
        "[error] ",
        "connect() failed (111: Connection refused) while connecting to upstream, client: ",
        "upstream timed out (110: Connection timed out) while reading response header "
        "from upstream, client: ",
        "no live upstreams while connecting to upstream, client: ",
        "[warn] ",
        "upstream server temporarily disabled while connecting to upstream",
    ):
        assert message in text
