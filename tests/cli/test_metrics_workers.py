"""``wsgate_metrics;`` with two workers: the scrape sums every worker's files, whichever
worker serves it, and a worker killed with SIGKILL keeps its counts while its gauges go.

The proxy proxies ``/p`` to an upstream of a refused port and one of its own servers, so
the worker that serves ``/p`` marks the refused peer down (``wsgate_upstream_peer_up`` 0,
a ``livemin`` gauge) without any backend process. Every response says which worker wrote
it (``$pid`` in the body or in ``X-Pid``).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_ports
from tests.support.procs import running, wsgate_cmd

DEADLINE = 30.0  # seconds for each wait on the proxy

CONF = """worker_processes 2;
pid logs/wsgate.pid;
error_log logs/error.log notice;
events {{}}
http {{
  access_log off;
  upstream backend {{
    server 127.0.0.1:{dead};
    server 127.0.0.1:{inner};
  }}
  server {{
    listen 127.0.0.1:{port};
    location = /metrics {{ wsgate_metrics; }}
    location = /p {{ proxy_pass http://backend; add_header X-Pid $pid; }}
    location / {{ return 200 "$pid"; }}
  }}
  server {{
    listen 127.0.0.1:{inner};
    location / {{ return 200 "inner"; }}
  }}
}}
"""


def fetch(port: int, path: str) -> tuple[dict[str, str], str]:
    """One request on its own connection: (headers lower-cased, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 "), head
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics as (sample name, sorted labels) -> value."""
    _, body = fetch(port, "/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def requests_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "wsgate_requests_total")


def test_counts_are_summed_over_workers_and_survive_a_killed_worker(tmp_path: Path) -> None:
    port, inner, dead = free_ports(3)
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "wsgate.conf"
    conf.write_text(CONF.format(port=port, inner=inner, dead=dead))
    with running(wsgate_cmd("proxy", "-c", str(conf)), ports=[port, inner]):
        # Plain requests until both workers have answered some (the kernel chooses).
        pids: list[str] = []
        deadline = time.monotonic() + DEADLINE
        while len(set(pids)) < 2 or len(pids) < 20:
            assert time.monotonic() < deadline, f"one worker took every request: {set(pids)}"
            pids.append(fetch(port, "/")[1])
        sent = len(pids)
        first = scrape(port)
        # Scrapes are counted once answered, so each one sees only the requests before it.
        assert requests_total(first) == sent
        assert first[("wsgate_requests_total", (("status_class", "2xx"),))] == sent
        sent += 1  # that scrape

        # /p: the serving worker fails on the refused peer, then asks the inner server.
        headers, body = fetch(port, "/p")
        assert body == "inner"
        victim = int(headers["x-pid"])
        sent += 2  # /p and the inner request
        down = (("peer", f"127.0.0.1:{dead}"), ("upstream", "backend"))
        before = scrape(port)
        sent += 1
        assert requests_total(before) == sent - 1
        assert before[("wsgate_upstream_peer_up", down)] == 0.0
        assert before[("wsgate_upstream_failures_total", down)] == 1.0
        assert before[("wsgate_connections_active", ())] == 1.0

        # Kill the worker that saw the failure; wait until its replacement answers.
        os.kill(victim, signal.SIGKILL)
        old = {int(p) for p in pids} | {victim}
        deadline = time.monotonic() + DEADLINE
        while True:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            pid = int(fetch(port, "/")[1])
            sent += 1
            if pid not in old:
                break
        after = scrape(port)
        # Nothing counted is lost: the dead worker's counters are still in the sums...
        assert requests_total(after) == sent
        assert after[("wsgate_upstream_failures_total", down)] == 1.0
        assert after[("wsgate_upstream_attempts_total", down)] == 1.0
        # ...but its gauges are gone: no live worker sees the refused peer down.
        assert after[("wsgate_upstream_peer_up", down)] == 1.0
        assert after[("wsgate_connections_active", ())] == 1.0
        assert after[("wsgate_reloads_total", ())] == 0.0


def test_reloads_are_counted_and_totals_survive_them(tmp_path: Path) -> None:
    port, inner, dead = free_ports(3)
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "wsgate.conf"
    conf.write_text(CONF.format(port=port, inner=inner, dead=dead))
    with running(wsgate_cmd("proxy", "-c", str(conf)), ports=[port, inner]) as proc:
        for _ in range(10):
            fetch(port, "/")
        assert scrape(port)[("wsgate_reloads_total", ())] == 0.0
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + DEADLINE
        scrapes = 1
        while True:
            assert time.monotonic() < deadline, "the reload was not counted"
            samples = scrape(port)
            if samples[("wsgate_reloads_total", ())] == 1.0:
                break
            scrapes += 1
            time.sleep(0.05)
        # The old generation's counts stay in the sums (10 requests and earlier scrapes).
        assert requests_total(samples) == 10 + scrapes
