"""Prometheus metrics (``wsgate_metrics;``) on the standard ``prometheus-client`` library.

Theory of operation:

* One process (``master_process off``, or a :class:`~wsgate.proxy.worker.Worker` in a
  test): every :class:`Metrics` has its own ``CollectorRegistry``; a scrape renders it.
* Several workers: the master calls :func:`enable_multiprocess` before it forks. It makes
  a private directory, puts it in ``PROMETHEUS_MULTIPROC_DIR`` and switches
  prometheus-client to its multiprocess values, so that each worker writes its numbers to
  files of its own in that directory. A scrape, served by whichever worker accepted it,
  reads every file with ``MultiProcessCollector``: counters and histograms are summed over
  all workers, the living and the dead (totals survive crashes and reloads); when the
  master reaps a worker it calls :func:`mark_dead`, which drops that worker's gauges.
* ``wsgate_connections_active`` is not kept by prometheus-client: it is read at scrape
  time from the ``stub_status`` table (:mod:`wsgate.proxy.stats`), which already sums the
  workers and forgets dead ones.

The proxy calls the ``on_*`` methods where it writes its logs (the end of a request, a
failed attempt, the end of a tunnel), never on the tunnel's per-chunk path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as mp
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wsgate.balancer.base import Balancer
from wsgate.balancer.state import PeerStatus, snapshot
from wsgate.proxy.stats import ACTIVE, Stats

__all__ = [
    "CONTENT_TYPE",
    "ENV",
    "Metrics",
    "disable_multiprocess",
    "enable_multiprocess",
    "mark_dead",
    "reloads_counter",
]

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
DIRECTIONS = ("client_to_upstream", "upstream_to_client")
# Tunnels live from seconds to days; handshakes take milliseconds to seconds.
TUNNEL_BUCKETS = (0.1, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def enable_multiprocess() -> str:
    """Make a private directory for the workers' metric files and switch prometheus-client
    to multiprocess values. The master calls it once, before its first fork; it returns
    the directory, which the master removes with :func:`disable_multiprocess` when it
    exits."""
    path = tempfile.mkdtemp(prefix="wsgate-metrics-")
    os.environ[ENV] = path
    # prometheus-client chooses its value class when it is imported; choose again.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def disable_multiprocess(path: str) -> None:
    """Undo :func:`enable_multiprocess` in the master after the last worker is gone."""
    if os.environ.get(ENV) == path:
        del os.environ[ENV]
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    shutil.rmtree(path, ignore_errors=True)


def mark_dead(pid: int) -> None:
    """The master reaped worker ``pid``: drop its gauges (its counters stay counted).
    Does nothing outside multiprocess mode."""
    if os.environ.get(ENV):
        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def reloads_counter(registry: CollectorRegistry | None) -> Counter:
    """``wsgate_reloads_total``: the master increments it after each good reload; a
    one-process proxy exposes it at 0."""
    return Counter("wsgate_reloads", "Configuration reloads done by the master.", registry=registry)


class _Connections(Collector):
    """``wsgate_connections_active`` from the shared stub_status table at scrape time."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        active = self.stats.table.totals()[ACTIVE]
        yield GaugeMetricFamily(
            "wsgate_connections_active", "Open client connections (all workers).", value=active
        )


class Metrics:
    """One worker's metrics. Made by the worker at start; the proxy calls the ``on_*``
    methods as requests, attempts and tunnels end, and :meth:`render` for a scrape."""

    def __init__(self, stats: Stats) -> None:
        self.multiprocess = bool(os.environ.get(ENV)) and values.ValueClass._multiprocess
        # In multiprocess mode the metrics live in files, read by a fresh collector per
        # scrape; they must not be registered anywhere.
        own = None if self.multiprocess else CollectorRegistry()
        if own is not None:
            # The same series as multiprocess mode (which has no "_created" samples).
            disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = own
        self._connections = _Connections(stats)
        self.requests = Counter(
            "wsgate_requests",
            "Requests answered, by status class (as written to the access log).",
            ["status_class"],
            registry=own,
        )
        # Labelled children are looked up once: ``labels()`` validates and locks per call.
        self._requests = tuple(self.requests.labels(cls) for cls in STATUS_CLASSES)
        self.tunnels = Gauge(
            "wsgate_tunnels_active",
            "Open WebSocket tunnels.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.tunnel_duration = Histogram(
            "wsgate_tunnel_duration_seconds",
            "How long closed tunnels were open.",
            buckets=TUNNEL_BUCKETS,
            registry=own,
        )
        self.tunnel_bytes = Counter(
            "wsgate_tunnel_bytes",
            "Bytes relayed by closed tunnels, each way.",
            ["direction"],
            registry=own,
        )
        self._bytes_in, self._bytes_out = (self.tunnel_bytes.labels(d) for d in DIRECTIONS)
        self.peer_up = Gauge(
            "wsgate_upstream_peer_up",
            "1 if balancers may choose the peer, 0 if it is down, unhealthy or failed (0 "
            "if any worker sees it so).",
            ["upstream", "peer"],
            registry=own,
            multiprocess_mode="livemin",
        )
        self.attempts = Counter(
            "wsgate_upstream_attempts",
            "Connections tried to each peer.",
            ["upstream", "peer"],
            registry=own,
        )
        self.failures = Counter(
            "wsgate_upstream_failures",
            "Attempts that counted as a failure of the peer (max_fails).",
            ["upstream", "peer"],
            registry=own,
        )
        self.handshake = Histogram(
            "wsgate_upstream_handshake_seconds",
            "From the start of the upstream connect to its 101 answer.",
            buckets=HANDSHAKE_BUCKETS,
            registry=own,
        )
        # Children of the per-peer series by (upstream, peer); the last value written to
        # each peer's gauge; the groups whose peers were all written as up.
        self._attempts: dict[tuple[str, str], Counter] = {}
        self._failures: dict[tuple[str, str], Counter] = {}
        self._up: dict[tuple[str, str], tuple[Gauge, int]] = {}
        self._all_up: set[int] = set()  # id() of the balancers
        if own is not None:
            reloads_counter(own)
            own.register(self._connections)

    # -- updates: called where the logs are written ---------------------------------------

    def on_request(self, status: int) -> None:
        """A request's access-log line is written with ``status``."""
        if 100 <= status < 600:
            self._requests[status // 100 - 1].inc()

    def on_attempt(self, upstream: str, peer: str) -> None:
        """A connection to ``peer`` is about to be tried."""
        key = (upstream, peer)
        child = self._attempts.get(key)
        if child is None:
            child = self._attempts[key] = self.attempts.labels(upstream, peer)
        child.inc()

    def on_failure(self, upstream: str, peer: str) -> None:
        """An attempt to ``peer`` ended as a failure (``Outcome.FAILED``)."""
        key = (upstream, peer)
        child = self._failures.get(key)
        if child is None:
            child = self._failures[key] = self.failures.labels(upstream, peer)
        child.inc()

    def on_tunnel_open(self, handshake: float) -> None:
        """A tunnel opened ``handshake`` seconds after its upstream connect began."""
        self.handshake.observe(handshake)
        self.tunnels.inc()

    def on_tunnel_closed(self, duration: float, from_client: int, from_upstream: int) -> None:
        """A tunnel ended after ``duration`` seconds, having relayed these byte counts."""
        self.tunnels.dec()
        self.tunnel_duration.observe(duration)
        if from_client:
            self._bytes_in.inc(from_client)
        if from_upstream:
            self._bytes_out.inc(from_upstream)

    def update_peers(self, groups: Iterable[tuple[str, Balancer]], now: float) -> None:
        """Set ``wsgate_upstream_peer_up`` for every peer of ``groups`` ((upstream name,
        balancer) pairs) from this worker's balancer state at ``now``. The worker calls it
        for every group when it starts and before a scrape, and for one group after each
        attempt is released (:meth:`on_released`), so other workers' scrapes see its view.
        A gauge is written only when its value changes."""
        for name, balancer in groups:
            all_up = True
            for v in snapshot(balancer, now):
                value = 1 if v.state is PeerStatus.UP else 0
                all_up = all_up and value == 1
                key = (name, v.name)
                last = self._up.get(key)
                if last is None:
                    child = self.peer_up.labels(name, v.name)
                elif last[1] == value:
                    continue
                else:
                    child = last[0]
                child.set(value)
                self._up[key] = (child, value)
            if all_up:
                self._all_up.add(id(balancer))
            else:
                self._all_up.discard(id(balancer))

    def on_released(self, group: tuple[str, Balancer], failed: bool, now: float) -> None:
        """An attempt on a peer of ``group`` was given back to the balancer (``failed``:
        as a failure). Refresh the group's ``wsgate_upstream_peer_up``, unless every peer
        was last written as up and this was no failure: a peer turns down, unhealthy or
        failed only by configuration (written at start), by a health check (which
        refreshes its group) or by a failure, so nothing can have changed."""
        if failed or id(group[1]) not in self._all_up:
            self.update_peers((group,), now)

    # -- scrape ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """The body of a scrape, in the text format (:data:`CONTENT_TYPE`)."""
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._connections)
        return generate_latest(registry)
