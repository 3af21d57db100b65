"""Upstream failures through the in-process proxy on real sockets (nginx-semantics.md
sections 3.3-3.5): refused, silent and 502-answering peers, retries and their limits,
``$upstream_addr`` / ``$upstream_status`` lists, and a backend killed under open tunnels.

Each test builds an ``upstream backend`` of stub peers (:class:`tests.support.lb.StubPeer`),
recording backends and refused ports, all on free ports, and reads the access log written
with ``$upstream_addr|$upstream_status|$status``. ``proxy_read_timeout`` is 1s where a peer
stays silent, so those tests take about a second; ``fail_timeout`` is 1s where recovery is
checked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.backend import RecordingBackend
from tests.support.lb import TRIED_FORMAT, StubPeer, Tried, get, open_tunnel, tried_lines
from tests.support.ports import free_port, free_ports
from tests.support.wsgate import proxy_in_process
from wsgate.balancer import snapshot
from wsgate.balancer.state import PeerStatus
from wsgate.proxy.worker import Worker


def conf(port: int, servers: list[str], *, location: str = "", upstream: str = "") -> str:
    """One ``upstream backend`` of ``servers`` ("127.0.0.1:P params") behind ``port``."""
    lines = "\n".join(f"        server {s};" for s in servers)
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
    upstream backend {{
{upstream}
{lines}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1s;
{location}
        }}
    }}
}}
"""


def addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def access(tmp_path: Path) -> list[Tried]:
    return tried_lines((tmp_path / "logs" / "access.log").read_text())


def errors(tmp_path: Path) -> str:
    return (tmp_path / "logs" / "error.log").read_text()


async def test_refused_peer_is_retried_then_skipped(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    async with RecordingBackend("live") as live:
        async with proxy_in_process(conf(port, [addr(dead), addr(live.port)]), tmp_path):
            replies = [await get(port, f"/r{i}") for i in range(4)]
    assert [r.status for r in replies] == [200] * 4
    assert [r.backend for r in replies] == ["live"] * 4
    lines = access(tmp_path)
    assert lines[0] == Tried((addr(dead), addr(live.port)), ("502", "200"), 200)
    # Disabled for fail_timeout (10s): later requests go straight to the live peer.
    assert [t.addrs for t in lines[1:]] == [(addr(live.port),)] * 3
    log = errors(tmp_path)
    assert log.count("connect() failed (111: Connection refused) while connecting to upstream") == 1
    assert log.count("[warn]") == 1 and "upstream server temporarily disabled" in log


async def test_silent_peer_times_out_and_the_request_moves_on(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("silent") as silent, RecordingBackend("live") as live:
        text = conf(port, [addr(silent.port), addr(live.port)])
        async with proxy_in_process(text, tmp_path) as worker:
            t0 = worker.loop.time()
            reply = await get(port, "/slow")
            elapsed = worker.loop.time() - t0
    assert (reply.status, reply.backend) == (200, "live")
    assert 1.0 <= elapsed < 5.0  # proxy_read_timeout 1s, then the retry
    assert access(tmp_path) == [Tried((addr(silent.port), addr(live.port)), ("504", "200"), 200)]
    log = errors(tmp_path)
    assert (
        "upstream timed out (110: Connection timed out) while reading response header "
        "from upstream" in log
    )
    # nginx logs the warn before the timeout error (section 3.5).
    assert log.index("temporarily disabled") < log.index("upstream timed out")


async def test_timeout_not_listed_answers_504(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("silent") as silent, RecordingBackend("live") as live:
        text = conf(
            port,
            [addr(silent.port), addr(live.port)],
            location="            proxy_next_upstream error;",
        )
        async with proxy_in_process(text, tmp_path):
            reply = await get(port, "/slow")
    assert reply.status == 504
    assert b"<title>504 Gateway Time-out</title>" in reply.body
    assert access(tmp_path) == [Tried((addr(silent.port),), ("504",), 504)]
    assert live.heads == []


async def test_502_is_retried_with_http_502_and_counts_as_a_failure(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("bad", status=502) as bad, RecordingBackend("live") as live:
        text = conf(
            port,
            [addr(bad.port), addr(live.port)],
            location="            proxy_next_upstream error timeout http_502;",
        )
        async with proxy_in_process(text, tmp_path):
            replies = [await get(port, f"/r{i}") for i in range(3)]
    assert [(r.status, r.backend) for r in replies] == [(200, "live")] * 3
    lines = access(tmp_path)
    assert lines[0] == Tried((addr(bad.port), addr(live.port)), ("502", "200"), 200)
    assert [t.addrs for t in lines[1:]] == [(addr(live.port),)] * 2  # bad is disabled
    assert bad.requests == 1
    assert "upstream server temporarily disabled" in errors(tmp_path)


async def test_502_without_http_502_is_passed_through_and_not_counted(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("bad", status=502) as bad, RecordingBackend("live") as live:
        async with proxy_in_process(conf(port, [addr(bad.port), addr(live.port)]), tmp_path):
            replies = [await get(port, f"/r{i}") for i in range(4)]
    # The peer's own 502 reaches the client; round robin keeps alternating (not disabled).
    assert [(r.status, r.backend) for r in replies] == [
        (502, "bad"),
        (200, "live"),
        (502, "bad"),
        (200, "live"),
    ]
    assert [(t.statuses, t.status) for t in access(tmp_path)] == [
        (("502",), 502),
        (("200",), 200),
        (("502",), 502),
        (("200",), 200),
    ]
    assert "temporarily disabled" not in errors(tmp_path)


async def test_502_on_the_last_try_is_passed_through(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("bad1", status=502) as bad1, StubPeer("bad2", status=502) as bad2:
        text = conf(
            port,
            [addr(bad1.port), addr(bad2.port)],
            location="            proxy_next_upstream error timeout http_502;",
        )
        async with proxy_in_process(text, tmp_path) as worker:
            reply = await get(port, "/r")
            views = snapshot(worker.balancers["backend"], worker.loop.time())
    assert (reply.status, reply.backend) == (502, "bad2")
    assert access(tmp_path) == [Tried((addr(bad1.port), addr(bad2.port)), ("502", "502"), 502)]
    # Only the first 502 was a counted failure; the one passed to the client was not.
    assert [(v.fails, v.state) for v in views] == [(1, PeerStatus.FAILED), (0, PeerStatus.UP)]


async def test_next_upstream_tries_1_gives_up_after_one_attempt(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    async with RecordingBackend("live") as live:
        text = conf(
            port,
            [addr(dead), addr(live.port)],
            location="            proxy_next_upstream_tries 1;",
        )
        async with proxy_in_process(text, tmp_path):
            reply = await get(port, "/r")
    assert reply.status == 502
    assert access(tmp_path) == [Tried((addr(dead),), ("502",), 502)]
    assert live.heads == []


async def test_post_is_not_retried_once_sent(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("silent") as silent, RecordingBackend("live") as live:
        text = conf(port, [addr(silent.port), addr(live.port)])
        async with proxy_in_process(text, tmp_path):
            reply = await get(port, "/p", method="POST", body=b"payload")
    assert reply.status == 504
    assert access(tmp_path) == [Tried((addr(silent.port),), ("504",), 504)]
    assert silent.requests == 1 and live.heads == []


async def test_post_is_retried_when_it_was_never_sent(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    async with RecordingBackend("live") as live:
        async with proxy_in_process(conf(port, [addr(dead), addr(live.port)]), tmp_path):
            reply = await get(port, "/p", method="POST", body=b"payload")
    assert (reply.status, reply.backend) == (200, "live")
    assert access(tmp_path) == [Tried((addr(dead), addr(live.port)), ("502", "200"), 200)]
    assert live.bodies == [b"payload"]


async def test_post_is_retried_with_non_idempotent(tmp_path: Path) -> None:
    port = free_port()
    async with StubPeer("silent") as silent, RecordingBackend("live") as live:
        text = conf(
            port,
            [addr(silent.port), addr(live.port)],
            location="            proxy_next_upstream error timeout non_idempotent;",
        )
        async with proxy_in_process(text, tmp_path):
            reply = await get(port, "/p", method="POST", body=b"payload")
    assert (reply.status, reply.backend) == (200, "live")
    assert access(tmp_path) == [Tried((addr(silent.port), addr(live.port)), ("504", "200"), 200)]
    assert live.bodies == [b"payload"]


async def _until_peer_state(worker: Worker, name: str, state: PeerStatus) -> None:
    """Poll the balancer's view (pure, cheap) until peer ``name`` is in ``state``."""
    delay = 0.005
    while True:
        views = snapshot(worker.balancers["backend"], worker.loop.time())
        if next(v for v in views if v.name == name).state is state:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def test_backend_killed_under_open_tunnels(tmp_path: Path) -> None:
    """Killing a backend closes its tunnels; handshakes go to the live one (a retry hides
    the dead one); after ``fail_timeout`` the restarted backend gets traffic again."""
    port = free_port()
    a = RecordingBackend("a")
    await a.start()
    async with RecordingBackend("b") as b:
        servers = [f"{addr(a.port)} fail_timeout=1s", f"{addr(b.port)} fail_timeout=1s"]
        async with proxy_in_process(conf(port, servers), tmp_path) as worker:
            t1 = await open_tunnel(port)
            t2 = await open_tunnel(port)
            assert [t1.backend, t2.backend] == ["a", "b"]
            assert await t1.echo(b"one") == b"one"

            await a.close()  # the backend dies with its connections
            assert await t1.eof()  # the client of the dead backend sees the close
            assert await t2.echo(b"still here") == b"still here"

            # Round robin's turn is a's: refused, retried on b; the client sees a 101.
            h1 = await open_tunnel(port)
            failed_at = worker.loop.time()
            assert (h1.reply.status, h1.backend) == (101, "b")
            views = snapshot(worker.balancers["backend"], failed_at)
            assert views[0].state is PeerStatus.FAILED
            assert views[0].failed_until is not None
            assert 1.0 < views[0].failed_until - failed_at <= 2.0
            assert (views[1].conns, views[1].tunnels) == (2, 2)
            others = [await open_tunnel(port) for _ in range(3)]
            assert [t.backend for t in others] == ["b"] * 3

            # The same port comes back; within fail_timeout it is still skipped.
            a2 = RecordingBackend("a2", a.port)
            await a2.start()
            try:
                await _until_peer_state(worker, addr(a.port), PeerStatus.UP)
                recovered_at = worker.loop.time()
                replies = [await get(port, f"/after/{i}") for i in range(4)]
                assert "a2" in [r.backend for r in replies]
            finally:
                await a2.close()
            for t in (t1, t2, h1, *others):
                await t.close()
    assert recovered_at - failed_at > 0.9  # fail_timeout=1s on whole seconds: (1, 2]
    lines = access(tmp_path)
    assert Tried((addr(a.port), addr(b.port)), ("502", "101"), 101) in lines
    assert "connect() failed (111: Connection refused) while connecting to upstream" in (
        errors(tmp_path)
    )
