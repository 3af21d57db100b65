"""Open WebSocket tunnels count as connections for ``least_conn`` and ``max_conns``
(nginx-semantics.md §2.5; docs/behavior.md "Load balancing").

A tunnel holds its peer from the 101 until it closes, as in nginx, so new handshakes and
requests go to the backend with fewer open tunnels, and a backend with ``max_conns=N``
takes at most N tunnels. The counts are the worker's, read with
``wsgate.balancer.snapshot``. The differential test against nginx is in
``tests/interop/test_nginx_balancers.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.test_failover import addr, conf, errors
from tests.support.backend import RecordingBackend
from tests.support.lb import WsTunnel, get, open_tunnel
from tests.support.ports import free_port
from tests.support.wsgate import proxy_in_process
from wsgate.balancer import snapshot
from wsgate.proxy.worker import Worker


def load(worker: Worker) -> list[tuple[int, int]]:
    """(conns, tunnels) of each peer of ``backend``, in config order."""
    views = snapshot(worker.balancers["backend"], worker.loop.time())
    return [(v.conns, v.tunnels) for v in views]


async def close_and_wait(worker: Worker, tunnel: WsTunnel) -> None:
    """Close a tunnel from the client side and wait until the proxy freed its peer."""
    before = sum(conns for conns, _ in load(worker))
    await tunnel.close()
    delay = 0.002
    while sum(conns for conns, _ in load(worker)) >= before:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def test_least_conn_sends_new_handshakes_away_from_open_tunnels(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as a, RecordingBackend("b") as b:
        text = conf(port, [addr(a.port), addr(b.port)], upstream="        least_conn;")
        async with proxy_in_process(text, tmp_path) as worker:
            # Four tunnels spread over both; then the client closes every tunnel on b.
            tunnels = [await open_tunnel(port) for _ in range(4)]
            assert sorted(t.backend or "" for t in tunnels) == ["a", "a", "b", "b"]
            assert load(worker) == [(2, 2), (2, 2)]
            for t in [t for t in tunnels if t.backend == "b"]:
                await close_and_wait(worker, t)
            assert load(worker) == [(2, 2), (0, 0)]

            # a holds two open tunnels, b none: plain requests all go to b (round robin
            # would alternate), and so do the next two handshakes, until b has two too.
            replies = [await get(port, f"/r{i}") for i in range(5)]
            assert [r.backend for r in replies] == ["b"] * 5
            more = [await open_tunnel(port) for _ in range(2)]
            assert [t.backend for t in more] == ["b", "b"]
            assert load(worker) == [(2, 2), (2, 2)]
            for t in tunnels + more:
                if not t.writer.is_closing():
                    await close_and_wait(worker, t)
            assert load(worker) == [(0, 0), (0, 0)]


async def test_max_conns_caps_open_tunnels(tmp_path: Path) -> None:
    port = free_port()
    async with RecordingBackend("a") as a, RecordingBackend("b") as b:
        servers = [f"{addr(a.port)} max_conns=1", f"{addr(b.port)} max_conns=1"]
        async with proxy_in_process(conf(port, servers), tmp_path) as worker:
            t1 = await open_tunnel(port)
            t2 = await open_tunnel(port)
            assert [t1.backend, t2.backend] == ["a", "b"]
            # Both peers are at max_conns while their tunnels are open.
            refused = await open_tunnel(port)
            assert refused.reply.status == 502
            await refused.close()
            assert (await get(port, "/r")).status == 502
            assert errors(tmp_path).count("no live upstreams while connecting to upstream") == 2
            assert [v.full for v in snapshot(worker.balancers["backend"], 0.0)] == [True, True]

            await close_and_wait(worker, t1)
            t3 = await open_tunnel(port)
            assert (t3.reply.status, t3.backend) == (101, "a")
            for t in (t2, t3):
                await close_and_wait(worker, t)
