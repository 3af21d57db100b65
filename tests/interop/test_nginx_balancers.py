"""Differential: every balancing method in nginx 1.22.1 and in wsgate, request for request
(nginx-semantics.md sections 3.6-3.9).

One ``upstream backend`` block, recording backends (plus a refused port where a case
says so), and the same request sequence sent twice: through the real nginx
(``worker_processes 1``), then through wsgate running in process on the same backends
and the same ``upstream`` text (the consistent-hash ring depends on the server text, ports
included). For each request the peers tried come from ``$upstream_addr`` in the access log
and the peer that answered from ``X-Backend``. Both runs must be equal to each other and to
what the pure balancer (``wsgate.balancer.for_upstream``) does with the loaded
``UpstreamConf``.

* ``ip_hash``: requests come from many loopback source addresses (``127.a.b.c``); the
  first three octets are the key, so several /24s are used, and two addresses of one /24.
* ``hash``: keys through ``$request_uri`` or ``$arg_k``; some requests have no key (empty
  key: round robin).
* ``least_conn``: WebSocket tunnels and a slow request (``/sleep/N``) are held open while
  other requests arrive; the order of backends is compared step by step.
* ``random``: nginx's draws cannot be replayed, so the shares of 1:2:1 weights over many
  requests are compared with the exact expectation (a five-sigma band); wsgate runs with a
  seeded generator and must reproduce the model exactly. ``random two`` with one peer held
  by a tunnel is deterministic and compared request for request.

A refused peer fails once and is then skipped for ``fail_timeout`` (10s, longer than a
test), so the model runs at a fixed time 0 as the real runs do.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.backend import RecordingBackend
from tests.support.lb import TRIED_FORMAT, Reply, WsTunnel, get, open_tunnel, tried_lines
from tests.support.nginx import require_nginx, run_nginx_async
from tests.support.ports import free_ports
from tests.support.wsgate import proxy_in_process
from wsgate.balancer import Random, for_upstream
from wsgate.balancer.base import Outcome, PeerState, Pick, RequestInfo
from wsgate.conf.build import load
from wsgate.conf.model import UpstreamConf
from wsgate.proxy.worker import Worker

CONF = """\
worker_processes 1;
error_log logs/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format tried {log_format};
    access_log logs/access.log tried;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream backend {{
{upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Peer:
    """One server line: ``weight``, ``down``, or ``dead`` (nothing listens: refused)."""

    weight: int = 1
    down: bool = False
    dead: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    """One request: its path and the source address it comes from."""

    path: str
    source: str = "127.0.0.1"
    key: bytes = b""  # what the model hashes (the evaluated KEY)


@dataclass
class Group:
    """Backends for one case; ``names`` maps X-Backend to the peer name."""

    method: str
    peers: Sequence[Peer]
    ports: list[int]
    names: dict[str, str]
    backends: list[RecordingBackend]

    @property
    def upstream(self) -> str:
        lines = [f"        {self.method}"] if self.method else []
        for peer, port in zip(self.peers, self.ports, strict=True):
            line = f"        server 127.0.0.1:{port} weight={peer.weight}"
            lines.append(line + (" down;" if peer.down else ";"))
        return "\n".join(lines)

    def conf(self, port: int) -> str:
        return CONF.format(log_format=TRIED_FORMAT, upstream=self.upstream, port=port)

    def model_conf(self) -> UpstreamConf:
        """The ``UpstreamConf`` wsgate loads from this case's text."""
        http = load("/model/nginx.conf", text=self.conf(1)).http
        assert http is not None
        return http.upstreams["backend"]

    @property
    def dead(self) -> set[str]:
        return {
            f"127.0.0.1:{port}"
            for peer, port in zip(self.peers, self.ports, strict=True)
            if peer.dead
        }


@asynccontextmanager
async def backends(method: str, peers: Sequence[Peer]) -> AsyncIterator[Group]:
    """Recording backends for the live peers; refused ports for the dead ones."""
    ports = free_ports(len(peers))
    async with AsyncExitStack() as stack:
        names = {}
        live = []
        for i, (peer, port) in enumerate(zip(peers, ports, strict=True)):
            if not peer.dead:
                backend = RecordingBackend(f"b{i + 1}", port)
                await stack.enter_async_context(backend)
                names[backend.name] = f"127.0.0.1:{port}"
                live.append(backend)
        yield Group(method, peers, ports, names, live)


Scenario = Callable[[int, Path], Awaitable[list[str]]]  # (port, access log) -> observations


@dataclass(frozen=True, slots=True)
class Runs:
    """What the two runs of one scenario observed, and their access logs."""

    nginx: list[str]
    wsgate: list[str]
    nginx_log: str
    wsgate_log: str


async def through_both(
    tmp_path: Path,
    group: Group,
    scenario: Scenario,
    prepare: Callable[[Worker], None] | None = None,
) -> Runs:
    """Run ``scenario`` through nginx, then through wsgate (``prepare`` may adjust the
    in-process worker first, e.g. seed a balancer)."""
    require_nginx()
    nginx_port, wsgate_port = free_ports(2)
    async with run_nginx_async(group.conf(nginx_port), tmp_path, [nginx_port]) as nginx:
        seen_nginx = await scenario(nginx_port, nginx.access_log)
    wsgate_dir = tmp_path / "wsgate"
    wsgate_dir.mkdir()
    wsgate_log = wsgate_dir / "logs" / "access.log"
    async with proxy_in_process(group.conf(wsgate_port), wsgate_dir) as worker:
        if prepare is not None:
            prepare(worker)
        seen_wsgate = await scenario(wsgate_port, wsgate_log)
    return Runs(seen_nginx, seen_wsgate, nginx.access_text(), wsgate_log.read_text())


def requests_scenario(group: Group, sends: Sequence[Send]) -> Scenario:
    """Each request in turn on a new connection; observes ``X-Backend`` as a peer name."""

    async def scenario(port: int, log: Path) -> list[str]:
        del log
        seen = []
        for send in sends:
            reply = await get(port, send.path, source=send.source)
            assert reply.status == 200, (send, reply)
            assert reply.backend is not None
            seen.append(group.names[reply.backend])
        return seen

    return scenario


def model_tries(conf: UpstreamConf, dead: set[str], sends: Sequence[Send]) -> list[tuple[str, ...]]:
    """The peers the pure balancer tries for each request (``dead`` ones fail)."""
    balancer = for_upstream(conf)
    runs = []
    for send in sends:
        pick = balancer.pick(RequestInfo(remote_addr=send.source, hash_key=send.key))
        tried: list[str] = []
        while True:
            peer = pick.get(0)
            if peer is None:
                tried.append(conf.name)
                break
            tried.append(peer.conf.name)
            failed = peer.conf.name in dead
            pick.free(peer, Outcome.FAILED if failed else Outcome.SUCCESS, 0)
            if not failed or pick.tries == 0:
                break
        runs.append(tuple(tried))
    return runs


async def compare_requests(tmp_path: Path, group: Group, sends: Sequence[Send]) -> None:
    """The request-for-request comparison used by ``ip_hash`` and ``hash``."""
    runs = await through_both(tmp_path, group, requests_scenario(group, sends))
    expected = model_tries(group.model_conf(), group.dead, sends)
    assert [t.addrs for t in tried_lines(runs.nginx_log)] == expected
    assert [t.addrs for t in tried_lines(runs.wsgate_log)] == expected
    assert runs.nginx == runs.wsgate == [t[-1] for t in expected]
    assert len(set(runs.nginx)) > 1  # the sequence exercises more than one peer
    if group.dead:  # a refused peer was tried once, then retried elsewhere
        assert sum(len(t) > 1 for t in expected) == 1


# Source addresses: several /24s, and two addresses of one /24 (same key, same peer).
SOURCES = [
    "127.0.0.1",
    "127.0.0.2",
    *(f"127.0.{n}.1" for n in (1, 2, 3, 7, 42, 200)),
    *(f"127.{a}.{b}.9" for a in (1, 5, 17, 99, 250) for b in (0, 3, 128)),
]


@pytest.mark.parametrize(
    "peers",
    [
        [Peer(), Peer(), Peer()],
        [Peer(weight=2), Peer(down=True), Peer(dead=True), Peer(weight=3)],
    ],
    ids=["1:1:1", "2:down:dead:3"],
)
async def test_ip_hash_matches_nginx(tmp_path: Path, peers: list[Peer]) -> None:
    sends = [Send(f"/ip/{i}", source) for i, source in enumerate(SOURCES * 2)]
    async with backends("ip_hash;", peers) as group:
        await compare_requests(tmp_path, group, sends)


KEYS = ["alpha", "beta", "gamma", "delta", "user-1", "user-2", "user-42", "x", "", "session9"]


@pytest.mark.parametrize(
    ("method", "peers"),
    [
        ("hash $request_uri;", [Peer(), Peer(weight=2), Peer()]),
        ("hash $arg_k;", [Peer(), Peer(dead=True), Peer(weight=3), Peer(down=True)]),
        ("hash $arg_k consistent;", [Peer(), Peer(weight=2), Peer()]),
        ("hash $arg_k consistent;", [Peer(dead=True), Peer(weight=2), Peer(), Peer(down=True)]),
    ],
    ids=["uri-1:2:1", "arg-dead-down", "consistent-1:2:1", "consistent-dead-down"],
)
async def test_hash_matches_nginx(tmp_path: Path, method: str, peers: list[Peer]) -> None:
    sends = []
    for i, k in enumerate(KEYS * 3):
        if "request_uri" in method:
            path = f"/h/{k}" if k else "/h"
            sends.append(Send(path, key=path.encode()))
        else:
            # No k: an empty key, which nginx balances by round robin.
            sends.append(Send(f"/h/{i}?k={k}" if k else f"/h/{i}", key=k.encode()))
    async with backends(method, peers) as group:
        await compare_requests(tmp_path, group, sends)


# -- least_conn ------------------------------------------------------------------------------

SLOW = "/sleep/1.5"  # held while two quick requests go through


async def wait_log_lines(log: Path, count: int) -> None:
    """Until the access log has ``count`` lines: a tunnel's line is written when it has
    ended, after its peer was freed (nginx and wsgate both free, then log)."""
    delay = 0.002
    while not log.exists() or len(log.read_text().splitlines()) < count:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def heads_for(group: Group, path: str) -> int:
    """How many requests for ``path`` the recording backends have received so far."""
    wanted = f"GET {path} ".encode()
    return sum(h.startswith(wanted) for b in group.backends for h in b.heads)


async def wait_heads_for(group: Group, path: str, count: int) -> None:
    """Until the backends have received ``count`` requests for ``path`` (both runs use the
    same backends, so the caller counts from what was there before)."""
    delay = 0.002
    while heads_for(group, path) < count:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


# Steps: "open" a tunnel, "get" a quick request, "close N" the N-th tunnel opened,
# "slow" starts SLOW and "done" waits for its answer.
LEAST_CONN_STEPS = [
    "open",
    "open",
    "open",
    "open",
    "get",
    "get",
    "get",
    "slow",
    "get",
    "get",
    "done",
    "close 0",
    "close 2",
    "open",
    "open",
    "open",
    "get",
    "get",
    "get",
    "get",
    "close 1",
    "close 3",
    "close 4",
    "get",
    "get",
]


def least_conn_scenario(group: Group) -> Scenario:
    """Run :data:`LEAST_CONN_STEPS`; observe ``STEP:peer`` for every step that chose one."""

    async def scenario(port: int, log: Path) -> list[str]:
        seen: list[str] = []
        tunnels: list[WsTunnel] = []
        logged = 0
        slow: asyncio.Task[Reply] | None = None
        for step in LEAST_CONN_STEPS:
            if step == "open":
                t = await open_tunnel(port)
                assert t.reply.status == 101 and t.backend is not None
                assert await t.echo(b"ping") == b"ping"
                tunnels.append(t)
                seen.append("open:" + group.names[t.backend])
            elif step == "get":
                reply = await get(port, "/r")
                assert reply.status == 200 and reply.backend is not None
                seen.append("get:" + group.names[reply.backend])
                logged += 1
            elif step == "slow":
                before = heads_for(group, SLOW)
                slow = asyncio.create_task(get(port, SLOW))
                await wait_heads_for(group, SLOW, before + 1)
            elif step == "done":
                assert slow is not None
                reply = await slow
                assert reply.status == 200 and reply.backend is not None
                seen.append("slow:" + group.names[reply.backend])
                logged += 1
            else:
                await tunnels[int(step.split()[1])].close()
                logged += 1
                await wait_log_lines(log, logged)
        for t in tunnels:
            await t.close()
        return seen

    return scenario


def least_conn_model(conf: UpstreamConf) -> list[str]:
    """:data:`LEAST_CONN_STEPS` on the pure balancer: what each step chooses."""
    balancer = for_upstream(conf)
    seen = []
    held: list[tuple[Pick, PeerState]] = []
    slow: tuple[Pick, PeerState] | None = None

    def start() -> tuple[Pick, PeerState]:
        pick = balancer.pick(RequestInfo())
        peer = pick.get(0)
        assert peer is not None
        return pick, peer

    for step in LEAST_CONN_STEPS:
        if step == "open":
            held.append(start())
            seen.append("open:" + held[-1][1].conf.name)
        elif step == "get":
            pick, peer = start()
            pick.free(peer, Outcome.SUCCESS, 0)
            seen.append("get:" + peer.conf.name)
        elif step == "slow":
            slow = start()
        elif step == "done":
            assert slow is not None
            slow[0].free(slow[1], Outcome.SUCCESS, 0)
            seen.append("slow:" + slow[1].conf.name)
        else:
            pick, peer = held[int(step.split()[1])]
            pick.free(peer, Outcome.SUCCESS, 0)
    return seen


async def test_least_conn_counts_held_requests_and_tunnels(tmp_path: Path) -> None:
    async with backends("least_conn;", [Peer(), Peer(), Peer(weight=2)]) as group:
        runs = await through_both(tmp_path, group, least_conn_scenario(group))
    expected = least_conn_model(group.model_conf())
    assert runs.nginx == expected
    assert runs.wsgate == expected


# -- random --------------------------------------------------------------------------------

SAMPLES = 400
SEED = 20261124


def shares(weights: Sequence[int], two: bool) -> list[float]:
    """The exact probability of each peer being chosen by one idle request.

    One draw: weight / total. Two draws (distinct, the second wins ties since all are
    idle): P(j) = sum over i != j of P(first = i) * w_j / (W - w_i).
    """
    total = sum(weights)
    if not two:
        return [w / total for w in weights]
    return [
        sum(wi / total * wj / (total - wi) for i, wi in enumerate(weights) if i != j)
        for j, wj in enumerate(weights)
    ]


def within_five_sigma(counts: Sequence[int], probabilities: Sequence[float]) -> bool:
    n = sum(counts)
    return all(
        abs(c - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1
        for c, p in zip(counts, probabilities, strict=True)
    )


@pytest.mark.parametrize("method", ["random;", "random two least_conn;"])
async def test_random_shares_match_nginx(tmp_path: Path, method: str) -> None:
    weights = [1, 2, 1]
    two = "two" in method
    sends = [Send(f"/rnd/{i}") for i in range(SAMPLES)]

    def seed(worker: Worker) -> None:
        conf = worker.http.upstreams["backend"]
        worker.balancers["backend"] = Random(conf, rng=random.Random(SEED))

    async with backends(method, [Peer(weight=w) for w in weights]) as group:
        runs = await through_both(tmp_path, group, requests_scenario(group, sends), seed)
        order = [f"127.0.0.1:{port}" for port in group.ports]
        model = Random(group.model_conf(), rng=random.Random(SEED))
    replay = []
    for _ in sends:
        pick = model.pick(RequestInfo())
        peer = pick.get(0)
        assert peer is not None
        pick.free(peer, Outcome.SUCCESS, 0)
        replay.append(peer.conf.name)
    assert runs.wsgate == replay  # the seeded run is the model, draw for draw
    p = shares(weights, two)
    nginx_counts = [Counter(runs.nginx)[name] for name in order]
    wsgate_counts = [Counter(runs.wsgate)[name] for name in order]
    assert within_five_sigma(nginx_counts, p), (nginx_counts, p)
    assert within_five_sigma(wsgate_counts, p), (wsgate_counts, p)


async def test_random_two_avoids_the_peer_holding_a_tunnel(tmp_path: Path) -> None:
    """With two peers every request draws both; the one without the tunnel always wins."""

    async with backends("random two;", [Peer(), Peer()]) as group:

        async def scenario(port: int, log: Path) -> list[str]:
            del log
            t = await open_tunnel(port)
            assert t.reply.status == 101 and t.backend is not None
            seen = ["open:" + group.names[t.backend]]
            for _ in range(20):
                reply = await get(port, "/r")
                assert reply.backend is not None
                seen.append("get:" + group.names[reply.backend])
            await t.close()
            return seen

        runs = await through_both(tmp_path, group, scenario)
    for seen in (runs.nginx, runs.wsgate):
        held = seen[0].split(":", 1)[1]
        assert all(s.startswith("get:") and not s.endswith(held) for s in seen[1:]), seen
