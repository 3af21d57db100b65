"""The frame-aware tunnel's features with npm ``ws`` on both sides (docs/websocket.md).

The client is ``tests/support/ws_client.js`` (node ``ws``, scripted by its arguments, one
JSON line per event); the backend is node ``ws`` too (``ws_recording_server.js``), which
reports what it saw on each connection: messages, Pings, Pongs and the close.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.support.confs import article_conf
from tests.support.ports import free_port
from tests.support.procs import REPO, node_module
from tests.support.wsgate import proxy_in_process
from tests.support.wsservers import Recorder, node_recording_server

CLIENT = REPO / "tests" / "support" / "ws_client.js"
WAIT = 25.0


async def node_client(url: str, *steps: str) -> list[dict[str, Any]]:
    """Run the node client to its close; its events, in order."""
    node_module("ws")
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        url,
        *steps,
        env={"NODE_PATH": str(REPO / "node_modules")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 0, (events, err.decode())
    return events


def close_of(events: list[dict[str, Any]]) -> int:
    (close,) = [e for e in events if e["event"] == "close"]
    return int(close["code"])


def server_events(record: Any, kind: str) -> list[tuple[Any, ...]]:
    return [e for e in record.events if e[0] == kind]


async def test_node_peers_answer_wsgate_pings_and_never_see_its_pongs(tmp_path: Path) -> None:
    with node_recording_server() as server:
        port = free_port()
        extra = (
            "websocket_ping_interval 200ms; websocket_ping_timeout 1s; websocket_ping_upstream on;"
        )
        conf = article_conf(port, [server.port], extra_location=extra, read_timeout="600ms")
        async with proxy_in_process(conf, tmp_path):
            # Quiet for twice proxy_read_timeout: the Pings (answered by ws on both
            # sides) are what keeps the tunnel up.
            events = await node_client(
                f"ws://127.0.0.1:{port}/pings",
                "send:a",
                "recv",
                "sleep:1300",
                "send:b",
                "recv",
                "close:1000",
                "end",
            )
            record = await server.record("pings")
    assert [e["text"] for e in events if e["event"] == "message"] == ["a", "b"]
    pings = [bytes.fromhex(e["data"]) for e in events if e["event"] == "ping"]
    assert pings and all(p.startswith(b"wsgate ") for p in pings)
    assert close_of(events) == 1000
    # The backend was pinged too, and the client's Pongs were not passed to it.
    assert any(bytes.fromhex(e[1]).startswith(b"wsgate ") for e in server_events(record, "ping"))
    assert server_events(record, "pong") == []
    assert [e[:2] for e in server_events(record, "text")] == [("text", 1), ("text", 1)]
    assert server_events(record, "close")[0][1] == 1000


async def test_node_client_over_the_limit_gets_1009_backend_1001(tmp_path: Path) -> None:
    with node_recording_server() as server:
        port = free_port()
        conf = article_conf(port, [server.port], extra_location="websocket_max_message_size 1k;")
        async with proxy_in_process(conf, tmp_path):
            events = await node_client(
                # The limit counts bytes on the wire: no compression for this one.
                f"ws://127.0.0.1:{port}/big",
                "--no-deflate",
                "sendsize:1024",
                "recv",
                "sendsize:2000",
                "end",
            )
            record = await server.record("big")
    assert [e["length"] for e in events if e["event"] == "message"] == [1024]
    assert close_of(events) == 1009
    assert [e[:2] for e in server_events(record, "text")] == [("text", 1024)]
    assert server_events(record, "close")[0][1] == 1001


async def test_node_peers_get_close_frames_on_drain(tmp_path: Path) -> None:
    with node_recording_server() as server:
        port = free_port()
        conf = article_conf(port, [server.port], extra_location="websocket_drain on reload=4100;")
        async with proxy_in_process(conf, tmp_path) as worker:
            client = asyncio.create_task(
                node_client(f"ws://127.0.0.1:{port}/drain", "send:hi", "recv", "end")
            )
            await wait_for_tunnel(worker, server, "drain")
            await asyncio.wait_for(worker.stop(graceful=True, timeout=0.2, reload=True), WAIT)
            events = await client
            record = await server.record("drain")
    assert close_of(events) == 4100
    assert server_events(record, "close")[0][1] == 4100


async def wait_for_tunnel(worker: Any, server: Recorder, tag: str) -> None:
    """Until the worker holds one tunnel that has carried the client's first echo."""
    async with asyncio.timeout(WAIT):
        while not any(t.upstream.nbytes for t in worker.tunnels):
            await asyncio.sleep(0.01)
