"""``wsgate_metrics;`` in one process, and the access-log variables that go with it.

Traffic through the in-process proxy (plain requests, one refused peer, one WebSocket
tunnel), then one scrape parsed with prometheus-client's own parser; every number is
exact. The access log checks ``$upstream_bytes_sent``, ``$upstream_bytes_received``,
``$bytes_received``, ``$request_length``, ``$connection_requests`` and ``$tunnel_time``.
Several workers: tests/cli/test_metrics_workers.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.backend import RecordingBackend, websocket_accept
from tests.support.lb import get, open_tunnel
from tests.support.ports import free_ports
from tests.support.wsgate import proxy_in_process
from wsgate.proxy.stats import ACTIVE
from wsgate.proxy.worker import Worker

LOG = (
    "$upstream_addr|$upstream_bytes_sent|$upstream_bytes_received|$bytes_received"
    "|$request_length|$connection_requests|$tunnel_time|$status"
)


def conf(port: int, dead: int, live: int) -> str:
    return f"""\
worker_processes 1;
error_log logs/error.log info;
events {{ }}
http {{
    log_format obs '{LOG}';
    access_log logs/access.log obs;
    upstream backend {{
        server 127.0.0.1:{dead};
        server 127.0.0.1:{live};
    }}
    server {{
        listen 127.0.0.1:{port};
        location /metrics {{
            wsgate_metrics;
            location /metrics/inner {{ return 204; }}  # a content handler is not inherited
        }}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }}
    }}
}}
"""


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample as (name, sorted labels) -> value; the families' types are checked."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def settle(worker: Worker) -> None:
    """Wait until the proxy has seen every client connection go (bounded by the test)."""
    while worker.stats.table.totals()[ACTIVE] or worker.tunnels:
        await asyncio.sleep(0.01)


def response_head(status: str, headers: list[str]) -> bytes:
    """A head as RecordingBackend writes it."""
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode()


async def test_scrape_after_requests_a_failed_peer_and_a_tunnel(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    async with RecordingBackend("live") as live:
        async with proxy_in_process(conf(port, dead, live.port), tmp_path) as worker:
            replies = [await get(port, f"/r{i}") for i in range(3)]
            assert (await get(port, "/metrics/inner")).status == 204
            # A head nginx refuses (HTTP/1.1 without Host) is logged and counted too.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            assert (await reader.read(-1)).startswith(b"HTTP/1.1 400 ")
            writer.close()
            tunnel = await open_tunnel(port, "/ws")
            assert tunnel.reply.status == 101
            message = b"x" * 1000
            assert await tunnel.echo(message) == message
            await asyncio.sleep(0.05)  # a tunnel open for a measurable time
            await tunnel.close()
            await settle(worker)
            scrape = await get(port, "/metrics")
    assert [r.status for r in replies] == [200, 200, 200]
    assert scrape.status == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = parse(scrape.body.decode())
    up = (("peer", f"127.0.0.1:{live.port}"), ("upstream", "backend"))
    down = (("peer", f"127.0.0.1:{dead}"), ("upstream", "backend"))
    assert {k[1][0][1]: v for k, v in got.items() if k[0] == "wsgate_requests_total"} == {
        "1xx": 1.0,
        "2xx": 4.0,  # 204 included
        "3xx": 0.0,
        "4xx": 1.0,
        "5xx": 0.0,
    }
    assert got[("wsgate_connections_active", ())] == 1.0  # the scrape itself
    assert got[("wsgate_tunnels_active", ())] == 0.0
    assert got[("wsgate_tunnel_duration_seconds_count", ())] == 1.0
    assert 0.04 <= got[("wsgate_tunnel_duration_seconds_sum", ())] < 10
    assert got[("wsgate_tunnel_duration_seconds_bucket", (("le", "0.1"),))] == 1.0
    directions = {k[1][0][1]: v for k, v in got.items() if k[0] == "wsgate_tunnel_bytes_total"}
    assert directions == {"client_to_upstream": 1000.0, "upstream_to_client": 1000.0}
    assert got[("wsgate_upstream_peer_up", up)] == 1.0
    assert got[("wsgate_upstream_peer_up", down)] == 0.0  # refused once: max_fails=1
    # The first request tried the refused peer, then the live one; later ones (and the
    # handshake) went straight to the live peer.
    assert got[("wsgate_upstream_attempts_total", down)] == 1.0
    assert got[("wsgate_upstream_attempts_total", up)] == 4.0
    assert got[("wsgate_upstream_failures_total", down)] == 1.0
    assert ("wsgate_upstream_failures_total", up) not in got
    assert got[("wsgate_upstream_handshake_seconds_count", ())] == 1.0
    assert got[("wsgate_upstream_handshake_seconds_bucket", (("le", "+Inf"),))] == 1.0
    assert got[("wsgate_reloads_total", ())] == 0.0

    lines = [ln.split("|") for ln in (tmp_path / "logs/access.log").read_text().splitlines()]
    assert len(lines) == 7  # 3 requests, the 204, the 400, the tunnel, the scrape
    first, _, _, _, _, ws, metrics = lines
    # A plain request: the refused attempt sent and read nothing; the live peer got the
    # head and answered with a head and that head as the body.
    addrs, sent, received, bytes_received, length, conn_requests, tunnel_time, status = first
    assert addrs == f"127.0.0.1:{dead}, 127.0.0.1:{live.port}"
    n = len(live.heads[0])
    head = response_head("200 OK", ["X-Backend: live", "Content-Type: text/plain"])
    head = head.replace(b"\r\n\r\n", f"\r\nContent-Length: {n}\r\n\r\n".encode())
    assert sent == f"0, {n}"
    assert received == f"0, {len(head) + n}"
    assert bytes_received == length and int(length) > 0
    assert (conn_requests, tunnel_time, status) == ("1", "-", "200")
    # The tunnel: the handshake both ways plus the 1000 bytes each way; $bytes_received
    # counts what the client sent through the tunnel, $request_length only its head.
    _, sent, received, bytes_received, length, conn_requests, tunnel_time, status = ws
    key = [ln for ln in live.heads[3].split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")]
    accept = websocket_accept(key[0].split(b":", 1)[1].strip()).decode()
    head = response_head(
        "101 Switching Protocols",
        [
            "X-Backend: live",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}",
        ],
    )
    assert sent == str(len(live.heads[3]) + 1000)
    assert received == str(len(head) + 1000)
    assert int(bytes_received) == int(length) + 1000
    assert (conn_requests, status) == ("1", "101")
    assert 0.04 <= float(tunnel_time) < 10 and len(tunnel_time.split(".")[1]) == 3
    # Not proxied: no upstream numbers at all.
    assert metrics[1:3] == ["-", "-"] and metrics[6:] == ["-", "200"]


async def test_connection_requests_counts_keepalive_requests(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    async with RecordingBackend("live") as live:
        async with proxy_in_process(conf(port, dead, live.port), tmp_path):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                for path in ("/metrics", "/metrics"):
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
            finally:
                writer.close()
            while len((tmp_path / "logs/access.log").read_text().splitlines()) < 2:
                await asyncio.sleep(0.01)
    lines = [ln.split("|") for ln in (tmp_path / "logs/access.log").read_text().splitlines()]
    assert [ln[5] for ln in lines] == ["1", "2"]


def docs_json_format() -> str:
    """The ``log_format json`` block of docs/observability.md, as written there."""
    text = (Path(__file__).resolve().parents[2] / "docs/observability.md").read_text()
    block = text.split("log_format json escape=json", 1)[1].split(";", 1)[0]
    return "log_format json escape=json" + block + ";"


async def test_the_documented_json_log_format_writes_json(tmp_path: Path) -> None:
    port, dead = free_ports(2)
    text = conf(port, dead, 0).replace("log_format obs", docs_json_format() + "\n    # obs")
    async with RecordingBackend("live") as live:
        text = text.replace("127.0.0.1:0;", f"127.0.0.1:{live.port};")
        text = text.replace("access_log logs/access.log obs;", "access_log logs/access.json json;")
        async with proxy_in_process(text, tmp_path) as worker:
            plain = await get(port, "/r")
            tunnel = await open_tunnel(port, "/ws")
            assert await tunnel.echo(b"hello") == b"hello"
            await tunnel.close()
            await settle(worker)
    assert plain.status == 200

    lines = [json.loads(ln) for ln in (tmp_path / "logs/access.json").read_text().splitlines()]
    assert [ln["status"] for ln in lines] == [200, 101]
    first, ws = lines
    assert first["tunnel_time"] == "" and first["upstream_bytes_sent"].startswith("0, ")
    assert first["bytes_received"] == first["request_length"]
    assert ws["http_upgrade"] == "websocket" and float(ws["tunnel_time"]) >= 0
    assert ws["bytes_received"] == ws["request_length"] + 5
