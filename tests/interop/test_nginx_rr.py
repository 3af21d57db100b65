"""Differential: nginx's round robin against ``wsgate.balancer.RoundRobin`` (section 3.2/3.3).

Real nginx (``worker_processes 1``, one process) proxies to recording backends. Each request
uses a new client connection. For every request the peers nginx tried, in order, come from
``$upstream_addr`` in the access log, and the peer that answered from ``X-Backend``; both
must equal what the model does with the same ``UpstreamConf``.

All requests of a test run well inside ``fail_timeout`` (10s), so the model's clock stays
at 0: a disabled peer stays disabled for the whole test, as in nginx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.backend import RecordingBackend
from tests.support.nginx import NginxRun, require_nginx, run_nginx_async
from tests.support.ports import free_ports
from wsgate.balancer import RoundRobin
from wsgate.balancer.base import Outcome, RequestInfo
from wsgate.conf.model import PeerConf, UpstreamConf

REQUESTS = 14
IO_TIMEOUT = 10.0  # seconds for one request through nginx

CONF = """\
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    log_format tried "$upstream_addr|$upstream_status|$status";
    access_log logs/access.log tried;
    upstream backend {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request through nginx showed."""

    tried: tuple[str, ...]  # peer names from $upstream_addr
    status: int
    backend: str | None  # X-Backend of the response


def server_line(peer: PeerConf) -> str:
    return (
        f"        server {peer.name} weight={peer.weight} max_fails={peer.max_fails}"
        f" fail_timeout={int(peer.fail_timeout)}s;"
    )


def model(conf: UpstreamConf, dead: set[str], n: int) -> list[tuple[str, ...]]:
    """The peers ``RoundRobin`` tries for each of ``n`` requests (``dead`` ones fail)."""
    balancer = RoundRobin(conf)
    runs = []
    for _ in range(n):
        pick = balancer.pick(RequestInfo())
        tried: list[str] = []
        while True:
            peer = pick.get(0)
            if peer is None:
                tried.append(conf.name)  # nginx logs the group name for no live upstreams
                break
            tried.append(peer.conf.name)
            failed = peer.conf.name in dead
            pick.free(peer, Outcome.FAILED if failed else Outcome.SUCCESS, 0)
            if not failed or pick.tries == 0:
                break
        runs.append(tuple(tried))
    return runs


async def get(port: int, path: str) -> tuple[int, dict[str, str]]:
    """One ``GET`` on a fresh connection; the status and the response headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        response = await reader.read()  # nginx closes after the response: Connection: close
    finally:
        writer.close()
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


@dataclass(frozen=True, slots=True)
class Group:
    """An upstream group served by recording backends, with nginx in front."""

    conf: UpstreamConf
    nginx: NginxRun
    port: int  # where nginx listens
    names: dict[str, str]  # backend name (X-Backend) -> peer name

    async def drive(self, n: int) -> list[Answer]:
        """``n`` sequential requests through nginx; one :class:`Answer` per request."""
        replies = []
        for i in range(n):
            async with asyncio.timeout(IO_TIMEOUT):
                replies.append(await get(self.port, f"/req/{i}"))
        text = self.nginx.access_text()
        lines = text.splitlines()
        assert len(lines) == n, text
        answers = []
        for (status, headers), line in zip(replies, lines, strict=True):
            addrs, upstream_status, logged_status = line.rsplit("|", 2)
            assert int(logged_status) == status, line
            # One $upstream_status per attempt: 502 for a refused peer, the answer's status.
            assert len(upstream_status.split(", ")) == len(addrs.split(", ")), line
            answer = Answer(tuple(addrs.split(", ")), status, headers.get("x-backend"))
            if answer.backend is not None:  # the last peer tried is the one that answered
                assert self.names[answer.backend] == answer.tried[-1], line
            answers.append(answer)
        return answers


@asynccontextmanager
async def upstream_group(
    tmp_path: Path, weights: Sequence[int], max_fails: int, dead: Sequence[int] = ()
) -> AsyncIterator[Group]:
    """Backends (a refused port where ``dead`` says so) and nginx in front of them."""
    require_nginx()
    *peer_ports, listen = free_ports(len(weights) + 1)
    async with AsyncExitStack() as stack:
        names: dict[str, str] = {}
        peers = []
        for i, (port, weight) in enumerate(zip(peer_ports, weights, strict=True)):
            if i not in dead:
                backend = RecordingBackend(f"b{i + 1}", port)
                await stack.enter_async_context(backend)
                names[backend.name] = f"127.0.0.1:{port}"
            peers.append(
                PeerConf(
                    name=f"127.0.0.1:{port}",
                    host="127.0.0.1",
                    port=port,
                    server=f"127.0.0.1:{port}",
                    weight=weight,
                    max_fails=max_fails,
                    fail_timeout=10.0,
                )
            )
        conf = UpstreamConf(name="backend", peers=tuple(peers))
        servers = "\n".join(server_line(p) for p in peers)
        nginx = await stack.enter_async_context(
            run_nginx_async(CONF.format(servers=servers, port=listen), tmp_path, [listen])
        )
        yield Group(conf, nginx, listen, names)


@pytest.mark.parametrize(
    "weights",
    [(5, 1, 1), (1, 1, 1), (2, 3, 1)],
    ids=lambda w: ":".join(map(str, w)),
)
async def test_rotation_matches_nginx(tmp_path: Path, weights: tuple[int, ...]) -> None:
    async with upstream_group(tmp_path, weights, max_fails=1) as group:
        answers = await group.drive(REQUESTS)
    conf = group.conf
    expected = model(conf, set(), REQUESTS)
    assert [a.tried for a in answers] == expected
    assert all(a.status == 200 for a in answers)
    if weights == (5, 1, 1):
        order = {name: f"{i + 1}" for i, name in enumerate(p.name for p in conf.peers)}
        assert "".join(order[t[0]] for t in expected) == "11213111121311"


@pytest.mark.parametrize(
    ("weights", "max_fails", "dead"),
    [
        ((1, 1, 1), 1, 1),
        ((5, 1, 1), 1, 0),
        ((3, 2, 1), 2, 0),  # two failures to disable; each costs 3 // 2 of the weight
    ],
    ids=["1:1:1-dead2", "5:1:1-dead1", "3:2:1-dead1-max_fails2"],
)
async def test_refused_peer_matches_nginx(
    tmp_path: Path, weights: tuple[int, ...], max_fails: int, dead: int
) -> None:
    async with upstream_group(tmp_path, weights, max_fails, dead=[dead]) as group:
        answers = await group.drive(REQUESTS)
        error_log = group.nginx.error_text()
    conf = group.conf
    dead_name = conf.peers[dead].name
    expected = model(conf, {dead_name}, REQUESTS)
    assert [a.tried for a in answers] == expected
    assert all(a.status == 200 for a in answers)
    assert sum(t.count(dead_name) for t in expected) == max_fails
    assert error_log.count("connect() failed (111: Connection refused)") == max_fails
    assert error_log.count("upstream server temporarily disabled") == 1


async def test_all_refused_matches_nginx(tmp_path: Path) -> None:
    async with upstream_group(tmp_path, (1, 1), 1, dead=[0, 1]) as group:
        answers = await group.drive(3)
        error_log = group.nginx.error_text()
    conf = group.conf
    expected = model(conf, {p.name for p in conf.peers}, 3)
    assert [a.tried for a in answers] == expected
    assert expected[1:] == [("backend",), ("backend",)]
    assert [a.status for a in answers] == [502, 502, 502]
    assert error_log.count("no live upstreams while connecting to upstream") == 2
